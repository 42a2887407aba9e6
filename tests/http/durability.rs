//! An acknowledged write survives the server being killed: the real `ferridm` binary takes
//! creates from several clients at once (on SQLite they share group commits), is killed with
//! SIGKILL in the middle of that load, and every create it answered 201 is in the database
//! afterwards, whole.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferridm_store::testing::TestDatabase;
use ferridm_store::{Store, StoreOptions};
use ferridm_tests::{copy_dir, ferridm_binary, workspace_root};
use serde_json::{Value, json};

/// Clients creating users at once.
const CLIENTS: usize = 8;
/// Acknowledged creates after which the server is killed.
const KILL_AFTER: usize = 300;

/// The server binary on `db`, in a project directory of its own, listening on a free port.
fn start_server(project: &std::path::Path, db: &str) -> (Child, String) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(ferridm_binary())
        .current_dir(project)
        .args(["--conf", "conf", "--db", db, "--workers", "2"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .env_remove("FERRIDM_CONF")
        .env_remove("FERRIDM_DB")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/openidm");
    let client = reqwest::blocking::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/info/ping")).send().is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, base)
}

#[test]
fn every_acknowledged_create_survives_a_kill_under_load() {
    for database in TestDatabase::all() {
        let project = tempfile::tempdir().unwrap();
        copy_dir(&workspace_root().join("conf"), &project.path().join("conf"));
        copy_dir(&workspace_root().join("scripts"), &project.path().join("scripts"));
        let (mut server, base) = start_server(project.path(), database.url());
        let (acknowledge, acknowledgements) = mpsc::channel::<(String, String)>();
        let killed = AtomicBool::new(false);
        let mut acknowledged = Vec::new();
        std::thread::scope(|scope| {
            for client_number in 0..CLIENTS {
                let (base, killed, acknowledge) = (&base, &killed, acknowledge.clone());
                scope.spawn(move || {
                    let client = reqwest::blocking::Client::new();
                    for n in 0.. {
                        if killed.load(Ordering::SeqCst) {
                            break;
                        }
                        let user_name = format!("durable-{client_number}-{n}");
                        let sent = client
                            .post(format!("{base}/managed/user?_action=create"))
                            .header("X-OpenIDM-Username", "openidm-admin")
                            .header("X-OpenIDM-Password", "openidm-admin")
                            .json(&json!({"userName": user_name, "givenName": "Dur", "sn": "Able",
                                          "mail": format!("{user_name}@example.com")}))
                            .send();
                        let Ok(reply) = sent else { break };
                        if reply.status() != 201 {
                            break;
                        }
                        let Ok(body) = reply.json::<Value>() else { break };
                        let id = body["_id"].as_str().unwrap().to_owned();
                        acknowledge.send((id, user_name)).unwrap();
                    }
                });
            }
            while acknowledged.len() < KILL_AFTER {
                let next = acknowledgements.recv_timeout(Duration::from_secs(120));
                acknowledged.push(next.unwrap_or_else(|_| panic!("the load did not reach {KILL_AFTER} creates")));
            }
            server.kill().unwrap(); // SIGKILL, with creates in flight
            killed.store(true, Ordering::SeqCst);
            server.wait().unwrap();
        });
        drop(acknowledge);
        acknowledged.extend(acknowledgements.iter());
        let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
        for (id, user_name) in &acknowledged {
            let stored = store
                .get("user", id)
                .unwrap()
                .unwrap_or_else(|| panic!("{user_name} ({id}) was acknowledged but is not stored"));
            assert_eq!(stored.content.get("userName"), Some(&json!(user_name)));
            assert_eq!(
                stored.content.get("mail"),
                Some(&json!(format!("{user_name}@example.com")))
            );
        }
    }
}
