//! Two ferridm nodes on one PostgreSQL database and one project directory (so one generated
//! session key): a session cookie issued by either node authenticates on the other, failed
//! logins and locks are counted in the database so both nodes agree, and a password changed on
//! one node is what the other checks, and every node lists the others (`openidm/cluster`). Skipped quietly when no PostgreSQL is reachable
//! (set `FERRIDM_TEST_REQUIRE_POSTGRES=1` to make that a failure).

use ferridm_tests::{TestServer, on_postgres};
use serde_json::json;

use crate::auth::{
    INFO_LOGIN, PASSWORD, assert_locked_until, assert_managed_context, assert_unauthorized, failed_logins,
    lockout_conf, login, login_count, meta, new_user, session_for, session_of, tamper_payload, with_cookie,
};

#[test]
fn nodes_accept_each_others_session_cookies() {
    on_postgres(|builder| {
        let first = builder.start();
        let second = TestServer::builder().sharing(&first).start();
        assert_ne!(first.base(), second.base(), "two nodes");
        let user = new_user(&first);

        // Issued by the first node, used on the second.
        let token = session_for(&user.actor(&first));
        let info = with_cookie(&second, &token).get(INFO_LOGIN).send();
        assert_eq!(info.status, 200, "{}", info.text);
        assert_managed_context(&info.body, &user, false);
        // The second node's re-issued cookie works back on the first.
        let refreshed = session_of(&info);
        let back = with_cookie(&first, &refreshed).get(&user.path()).send();
        assert_eq!(back.status, 200, "{}", back.text);
        assert_eq!(back.body["userName"], user.name.as_str());

        // Issued by the second node, used on the first: an admin session writes there.
        let admin = session_for(&second.admin());
        let reply = with_cookie(&first, &admin)
            .with("X-Requested-With", "XMLHttpRequest")
            .patch(
                &user.path(),
                &json!([{"operation": "replace", "field": "/description", "value": "via node 1"}]),
            )
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        let read = second.admin().get(&user.path()).send();
        assert_eq!(read.body["description"], "via node 1", "both nodes share the database");

        // The CSRF rule and tampering hold on either node.
        let refused = with_cookie(&second, &admin)
            .patch(
                &user.path(),
                &json!([{"operation": "replace", "field": "/description", "value": "csrf"}]),
            )
            .send();
        assert_eq!(refused.status, 403, "{}", refused.text);
        assert_unauthorized(
            &with_cookie(&second, &tamper_payload(&token)).get(INFO_LOGIN).send(),
            "a tampered cookie on the other node",
        );

        // Logins on both nodes count on one record.
        assert_eq!(login(&user.actor(&second)).status, 200);
        assert_eq!(login_count(&first, &user.id), 2);
        assert_eq!(login_count(&second, &user.id), 2);
    });
}

#[test]
fn nodes_share_failed_logins_and_locks() {
    on_postgres(|builder| {
        let conf = lockout_conf(&json!({"enabled": true, "maxFailures": 3, "windowMinutes": 5, "lockMinutes": 15}));
        let first = builder.conf_file("authentication.json", &conf).start();
        let second = TestServer::builder().sharing(&first).start();
        let user = new_user(&first);
        let wrong = |server: &TestServer| {
            assert_unauthorized(&login(&server.user(&user.name, "Wr0ngPassword")), "wrong password");
        };

        wrong(&first);
        wrong(&second);
        assert_eq!(
            failed_logins(&meta(&first, &user.id)),
            2,
            "failures from both nodes add up"
        );
        assert_eq!(failed_logins(&meta(&second, &user.id)), 2);
        assert!(meta(&second, &user.id).get("lockedUntil").is_none());

        // The third failure, on either node, locks the account on both.
        wrong(&first);
        assert_unauthorized(&login(&user.actor(&first)), "locked, node 1");
        assert_unauthorized(&login(&user.actor(&second)), "locked, node 2");
        assert_locked_until(&meta(&second, &user.id));
        assert_locked_until(&meta(&first, &user.id));

        // Unlocked on one node, usable on the other.
        let unlock = second
            .admin()
            .post_empty(&format!("{}?_action=unlock", user.path()))
            .send();
        assert_eq!(unlock.status, 200, "{}", unlock.text);
        assert!(meta(&first, &user.id).get("lockedUntil").is_none());
        let reply = login(&user.actor(&first));
        assert_eq!(reply.status, 200, "after an unlock on the other node: {}", reply.text);
    });
}

#[test]
fn a_password_changed_on_one_node_is_checked_on_the_other() {
    on_postgres(|builder| {
        let first = builder.start();
        let second = TestServer::builder().sharing(&first).start();
        let user = new_user(&first);
        // The second node has verified (and may remember) the old password.
        assert_eq!(login(&user.actor(&second)).status, 200);
        assert_eq!(login(&user.actor(&second)).status, 200);

        let reply = first
            .admin()
            .patch(
                &user.path(),
                &json!([{"operation": "replace", "field": "/password", "value": "N3wSecret"}]),
            )
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);

        assert_unauthorized(&login(&second.user(&user.name, PASSWORD)), "the old password on node 2");
        assert_eq!(login(&second.user(&user.name, "N3wSecret")).status, 200);
        assert_eq!(login(&first.user(&user.name, "N3wSecret")).status, 200);
    });
}

/// Parallel guesses spread over two nodes still stop at the limit: the count and the lock are
/// taken atomically in the shared database.
#[test]
fn parallel_guesses_on_two_nodes_stop_at_the_limit() {
    on_postgres(|builder| {
        let conf = lockout_conf(&json!({"enabled": true, "maxFailures": 5, "windowMinutes": 5, "lockMinutes": 15}));
        let first = builder.conf_file("authentication.json", &conf).start();
        let second = TestServer::builder().sharing(&first).start();
        let user = new_user(&first);
        let statuses = crate::auth::parallel_guesses(&[first.base(), second.base()], &user, 40);
        assert!(statuses.iter().all(|status| *status == 401), "{statuses:?}");
        let seen = meta(&second, &user.id);
        assert_eq!(failed_logins(&seen), 5, "{seen}");
        assert_locked_until(&seen);
        assert_unauthorized(&login(&user.actor(&first)), "the right password on the first node");
        assert_unauthorized(&login(&user.actor(&second)), "the right password on the second node");
    });
}

/// The cluster view as a node lists it: instance id → (state, shutdown).
fn cluster_states(server: &TestServer) -> std::collections::BTreeMap<String, (String, String)> {
    let reply = server.admin().get("/openidm/cluster?_queryFilter=true").send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            (
                node["instanceId"].as_str().unwrap().to_owned(),
                (
                    node["state"].as_str().unwrap().to_owned(),
                    node["shutdown"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

/// A node's default id: the host name and the port it serves.
fn node_id(server: &TestServer) -> String {
    let port = server.base().rsplit(':').next().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    format!("{}:{port}", host.trim())
}

/// Issue 21, point 4: every node lists the nodes of the database with their state; a node that
/// stops is down with its shutdown time, and one whose heartbeat is older than
/// `cluster.downAfterMillis` by the reader's clock is down too.
#[test]
fn the_cluster_view_lists_the_nodes_and_marks_stopped_and_silent_ones_down() {
    on_postgres(|builder| {
        let first = builder.manual_clock().start();
        let mut second = TestServer::builder().sharing(&first).start();
        let third = TestServer::builder().sharing(&first).start();
        let (first_id, second_id, third_id) = (node_id(&first), node_id(&second), node_id(&third));
        let running = (String::from("running"), String::new());
        for server in [&first, &second, &third] {
            let states = cluster_states(server);
            for id in [&first_id, &second_id, &third_id] {
                assert_eq!(
                    states.get(id),
                    Some(&running),
                    "{id} as {} sees it: {states:?}",
                    server.base()
                );
            }
        }
        let one = first.admin().get(&format!("/openidm/cluster/{second_id}")).send();
        assert_eq!(one.status, 200, "{}", one.text);
        assert_eq!(one.body["_id"], json!(second_id));
        assert_eq!(one.body["state"], json!("running"));
        assert!(one.body["startup"].as_str().unwrap().ends_with('Z'), "{}", one.text);
        assert_eq!(one.body["configGeneration"], json!(1));

        second.stop();
        let states = cluster_states(&first);
        assert_eq!(states[&second_id].0, "down", "{states:?}");
        assert!(
            states[&second_id].1.ends_with('Z'),
            "the shutdown is recorded: {states:?}"
        );

        // The third node's heartbeats go by the system clock; the first node's clock moves on
        // past `downAfterMillis` (15 s by default), so by it the third has gone silent.
        first.advance_clock(std::time::Duration::from_secs(60));
        let states = cluster_states(&first);
        assert_eq!(states[&third_id], (String::from("down"), String::new()), "{states:?}");
        assert_eq!(states[&first_id], running, "a node always sees itself running");
        assert_eq!(
            first.admin().get("/openidm/cluster/nowhere:1").send().assert_error(404),
            "Node nowhere:1 not found"
        );
        assert_eq!(
            first
                .anonymous()
                .get("/openidm/cluster?_queryFilter=true")
                .send()
                .status,
            403
        );
    });
}

/// A single node on either backend lists itself, running, serving its generation.
#[test]
fn a_single_node_lists_itself() {
    ferridm_tests::on_each_backend(|builder| {
        let server = builder.start();
        let reply = server
            .admin()
            .get("/openidm/cluster?_queryFilter=state+eq+\"running\"")
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["resultCount"], json!(1), "{}", reply.text);
        let node = &reply.body["result"][0];
        assert_eq!(node["_id"], json!(node_id(&server)));
        assert_eq!(node["shutdown"], json!(""));
        assert_eq!(node["configGeneration"], json!(1));
    });
}

/// `GET /openidm/config/<id>` on `server`.
fn config(server: &TestServer, id: &str) -> serde_json::Value {
    let reply = server.admin().get(&format!("/openidm/config/{id}")).send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

fn config_version(server: &TestServer) -> serde_json::Value {
    server.admin().get("/openidm/config/status").send().body["configVersion"].clone()
}

/// Issue 21, point 2: nodes with conf directories of their own on one PostgreSQL database. A
/// change over REST on one node is live on the others (and in their files); a refused change
/// is refused everywhere; a node started later with stale files starts with the change.
#[test]
fn a_configuration_change_over_rest_reaches_every_node() {
    on_postgres(|builder| {
        let first = builder.start();
        let second = TestServer::builder().sharing_database(&first).start();
        let third = TestServer::builder().sharing_database(&first).start();
        let mut ui = config(&first, "ui/configuration");
        assert_eq!(ui["configuration"]["passwordReset"], json!(true));
        ui["configuration"]["passwordReset"] = json!(false);
        let reply = first.admin().put("/openidm/config/ui/configuration", &ui).send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        let version = config_version(&first);
        assert!(version.as_i64().is_some_and(|version| version > 0), "{version}");
        for node in [&second, &third] {
            node.wait_until(std::time::Duration::from_secs(10), "the change on every node", || {
                config(node, "ui/configuration")["configuration"]["passwordReset"] == json!(false)
                    && config_version(node) == version
            });
            let file = std::fs::read_to_string(node.conf().join("ui-configuration.json")).unwrap();
            let on_disk: serde_json::Value = serde_json::from_str(&file).unwrap();
            assert_eq!(
                on_disk["configuration"]["passwordReset"],
                json!(false),
                "written to its files"
            );
        }

        // A change the first node refuses is stored nowhere and changes no node.
        let reply = first
            .admin()
            .put("/openidm/config/managed", &json!({"objects": "not a list"}))
            .send();
        assert_eq!(reply.status, 400, "{}", reply.text);
        for node in [&first, &second, &third] {
            assert_eq!(config_version(node), version);
            assert!(config(node, "managed")["objects"].is_array());
        }

        // A node whose files never saw the change starts with it.
        let fourth = TestServer::builder().sharing_database(&first).start();
        assert_eq!(
            config(&fourth, "ui/configuration")["configuration"]["passwordReset"],
            json!(false)
        );
        assert_eq!(config_version(&fourth), version);
    });
}

/// Issue 21, point 1: three nodes started at the same instant on a fresh database all come up
/// (one applies the migrations while the others wait) and serve it.
#[test]
fn three_nodes_started_together_on_a_fresh_database_all_come_up() {
    let Some(database) = ferridm_store::testing::TestDatabase::postgres() else {
        return;
    };
    let starts = std::sync::Barrier::new(3);
    let nodes: Vec<TestServer> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let (starts, url) = (&starts, database.url());
                scope.spawn(move || {
                    starts.wait();
                    TestServer::builder().on_database(url).start()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a node failed to start"))
            .collect()
    });
    let user = nodes[0].create_user(&ferridm_tests::unique("together"), None);
    for node in &nodes {
        let path = format!("/openidm/managed/user/{}", user["_id"].as_str().unwrap());
        assert_eq!(node.admin().get(&path).send().status, 200, "{}", node.base());
        assert_eq!(cluster_states(node).len(), 3, "{}", node.base());
    }
}
