//! `ferridm export` and `ferridm import`, run as the real binary against the databases of test
//! servers: a round trip into a fresh database keeps every field (ids, revisions, metadata,
//! stored hashes) and the users log in; an export taken while writers work is one snapshot; an
//! IDM file with invalid users is refused whole (its dry run reports the same); an encrypted IDM
//! password is refused naming the user, and opens with IDM's key (`--idm-key`) to be stored
//! hashed; an import killed after a committed batch resumes and ends with every user exactly
//! once.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ferridm_store::testing::TestDatabase;
use ferridm_store::{Backend, Store, StoreOptions};
use ferridm_tests::python::Venv;
use ferridm_tests::{TestServer, ferridm_binary, on_each_backend, unique, workspace_root};
use serde_json::{Value, json};

use crate::auth::INFO_LOGIN;

/// `ferridm <args>` with `conf` and `db`, its output captured.
fn ferridm(conf: &Path, db: &str, args: &[&str]) -> Output {
    command(conf, db, args).output().unwrap()
}

fn command(conf: &Path, db: &str, args: &[&str]) -> Command {
    let mut command = Command::new(ferridm_binary());
    command
        .args(args)
        .arg("--conf")
        .arg(conf)
        .args(["--db", db])
        .env("RUST_LOG", "warn")
        .env_remove("FERRIDM_CONF")
        .env_remove("FERRIDM_DB");
    command
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fresh, empty database on `backend`.
fn fresh_database(backend: Backend) -> TestDatabase {
    match backend {
        Backend::Sqlite => TestDatabase::sqlite(),
        Backend::Postgres => TestDatabase::postgres().unwrap(),
    }
}

/// Every managed object of the database at `url` by type and id: revision, metadata and
/// content.
fn stored_objects(url: &str) -> BTreeMap<(String, String), (String, Value, Value)> {
    let store = Store::open(url, &StoreOptions::default()).unwrap();
    store
        .snapshot(|snapshot| {
            let mut all = BTreeMap::new();
            let mut after = 0;
            loop {
                let page = snapshot.objects_after(after, 500)?;
                let Some(last) = page.last() else { break };
                after = last.object.pk;
                for item in page {
                    all.insert(
                        (item.object_type, item.object.id),
                        (
                            item.object.rev.to_string(),
                            Value::Object(item.object.meta),
                            Value::Object(item.object.content),
                        ),
                    );
                }
            }
            Ok::<_, ferridm_store::StoreError>(all)
        })
        .unwrap()
}

/// Every edge of the database at `url`, from each object holding it: (type, id, property,
/// far end, edge properties), sorted.
fn stored_edges(url: &str) -> Vec<(String, String, String, String, Value)> {
    let objects = stored_objects(url);
    let store = Store::open(url, &StoreOptions::default()).unwrap();
    let mut edges: Vec<_> = store
        .snapshot(|snapshot| {
            let mut edges = Vec::new();
            for (object_type, id) in objects.keys() {
                for edge in snapshot.edges_of(object_type, &[id.as_str()])? {
                    edges.push((
                        object_type.clone(),
                        id.clone(),
                        edge.property,
                        format!("{}/{}", edge.collection, edge.target_id),
                        Value::Object(edge.properties),
                    ));
                }
            }
            Ok::<_, ferridm_store::StoreError>(edges)
        })
        .unwrap();
    edges.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    edges
}

/// How many users the database at `url` holds.
fn user_count(url: &str) -> i64 {
    let store = Store::open(url, &StoreOptions::default()).unwrap();
    store
        .snapshot(|snapshot| Ok::<_, ferridm_store::StoreError>(snapshot.counts()?.get("user").copied().unwrap_or(0)))
        .unwrap()
}

/// The records of a JSON-lines export.
fn records(text: &str) -> Vec<Value> {
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// A user as IDM returns it from a query.
fn idm_user(id: &str, password: Value) -> Value {
    json!({"_id": id, "_rev": "3", "userName": id, "givenName": "Imported", "sn": "User",
        "mail": format!("{id}@example.com"), "accountStatus": "active", "password": password})
}

/// IDM's salted SHA-256 of `password` (`base64(sha256(password ‖ salt) ‖ salt)`), made by
/// Python's hashlib.
fn idm_sha256(password: &str) -> Value {
    let program = format!(
        "import base64, hashlib, os\nsalt = os.urandom(16)\nprint(base64.b64encode(hashlib.sha256({password:?}.encode() + salt).digest() + salt).decode())"
    );
    let output = Command::new("python3").args(["-c", &program]).output().unwrap();
    assert!(output.status.success(), "python3: {}", stderr(&output));
    let data = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    json!({"$crypto": {"type": "salted-hash", "value": {"algorithm": "SHA-256", "data": data}}})
}

/// The Python environment with `cryptography`, IDM's encryption's reference here.
const CRYPTO_VENV: Venv = Venv {
    name: "crypto-venv",
    requirements: "tests/support/crypto-requirements.txt",
    module: "cryptography",
};

/// `value` as IDM encrypts it with the AES key `key_base64` under `alias` (salted and MACed,
/// or the form without either when `legacy`), made by Python's `cryptography`.
fn idm_encrypted(key_base64: &str, alias: &str, value: &Value, legacy: bool) -> Value {
    let script = workspace_root().join("tests/support/idm-encryption/make_vectors.py");
    let mut command = Command::new(CRYPTO_VENV.bin().unwrap().join("python"));
    command.arg(script).args([key_base64, alias, &value.to_string()]);
    if legacy {
        command.arg("--legacy");
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "make_vectors.py: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn logs_in(server: &TestServer, user_name: &str, password: &str) -> u16 {
    server.user(user_name, password).get(INFO_LOGIN).send().status
}

#[test]
fn export_then_import_into_a_fresh_database_keeps_every_field_and_the_users_log_in() {
    on_each_backend(|builder| {
        let server = builder.start();
        let role = server
            .admin()
            .post("/openidm/managed/role?_action=create", &json!({"name": unique("role")}))
            .send();
        assert_eq!(role.status, 201, "{}", role.text);
        let role_id = role.body["_id"].as_str().unwrap().to_owned();
        let mut users = Vec::new();
        for index in 0..3 {
            let name = unique(&format!("round{index}"));
            let created = server.create_user(&name, Some("Passw0rd"));
            users.push((name, created["_id"].as_str().unwrap().to_owned()));
        }
        // A relationship, a changed object (revision 2) and a login (loginCount 1).
        let (first_name, first_id) = &users[0];
        let patched = server
            .admin()
            .patch(
                &format!("/openidm/managed/user/{first_id}"),
                &json!([{"operation": "add", "field": "/roles/-", "value": {"_ref": format!("managed/role/{role_id}")}}]),
            )
            .send();
        assert_eq!(patched.status, 200, "{}", patched.text);
        let second_id = &users[1].1;
        let managed = server
            .admin()
            .patch(
                &format!("/openidm/managed/user/{second_id}"),
                &json!([{"operation": "add", "field": "/manager", "value": {"_ref": format!("managed/user/{first_id}")}}]),
            )
            .send();
        assert_eq!(managed.status, 200, "{}", managed.text);
        let logged_in = crate::auth::login(&server.user(first_name, "Passw0rd"));
        assert_eq!(logged_in.status, 200, "{}", logged_in.text);
        let before = stored_objects(server.db_url());
        assert_eq!(before.len(), 4, "3 users and a role: {before:?}");
        let first = &before[&("user".to_owned(), first_id.clone())];
        assert!(first.2.get("roles").is_none(), "relationships are edges, not content");
        let edges_before = stored_edges(server.db_url());
        assert_eq!(
            edges_before
                .iter()
                .filter(|edge| edge.0 == "user" && edge.1 == *first_id)
                .map(|edge| format!("{} {}", edge.2, edge.3))
                .collect::<Vec<_>>(),
            [
                "authzRoles internal/role/openidm-authorized".to_owned(),
                format!("reports managed/user/{second_id}"),
                format!("roles managed/role/{role_id}")
            ]
        );
        assert_eq!(first.1["loginCount"], json!(1));
        assert_eq!(first.2["password"]["$crypto"]["type"], json!("argon2id"));

        let dir = tempfile::tempdir().unwrap();
        let exported = dir.path().join("backup");
        let export = ferridm(
            &server.conf(),
            server.db_url(),
            &["export", "--output", exported.to_str().unwrap()],
        );
        assert!(
            export.status.success(),
            "export: {:?} {}",
            export.status,
            stderr(&export)
        );
        assert!(
            exported.join("conf/managed.json").is_file(),
            "the conf directory is exported"
        );
        assert!(exported.join("objects.jsonl").is_file());

        let target = fresh_database(server.backend());
        let import = ferridm(&server.conf(), target.url(), &["import", exported.to_str().unwrap()]);
        assert!(
            import.status.success(),
            "import: {}\n{}",
            stdout(&import),
            stderr(&import)
        );
        assert_eq!(
            stored_objects(target.url()),
            before,
            "every id, _rev, _meta and content"
        );
        assert_eq!(stored_edges(target.url()), edges_before, "every relationship");

        let restored = TestServer::builder().on_database(target.url()).start();
        for (name, _) in &users {
            assert_eq!(
                logs_in(&restored, name, "Passw0rd"),
                200,
                "{name} logs in after the restore"
            );
            assert_eq!(logs_in(&restored, name, "Passw0rt"), 401, "{name}: wrong password");
        }
    });
}

#[test]
fn an_export_taken_while_writers_work_is_one_snapshot() {
    on_each_backend(|builder| {
        let server = builder.start();
        let dir = tempfile::tempdir().unwrap();
        // 2500 users to start with: the export reads them in several pages.
        let seed = dir.path().join("seed.jsonl");
        let lines: Vec<String> = (0..2500)
            .map(|index| idm_user(&format!("seed{index}"), json!("Passw0rd")).to_string())
            .collect();
        std::fs::write(&seed, lines.join("\n")).unwrap();
        let seeded = ferridm(&server.conf(), server.db_url(), &["import", seed.to_str().unwrap()]);
        assert!(seeded.status.success(), "{}", stderr(&seeded));

        let stop = AtomicBool::new(false);
        let written = AtomicU64::new(0);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut index = 0;
                while !stop.load(Ordering::Relaxed) {
                    let reply = server
                        .admin()
                        .post(
                            "/openidm/managed/user?_action=create",
                            &idm_user(&format!("late{index}"), json!("Passw0rd")),
                        )
                        .send();
                    assert_eq!(reply.status, 201, "{}", reply.text);
                    index += 1;
                    written.store(index, Ordering::Relaxed);
                }
            });
            server.wait_until(std::time::Duration::from_secs(30), "the first writes", || {
                written.load(Ordering::Relaxed) > 0
            });
            let before = written.load(Ordering::Relaxed);
            let export = ferridm(&server.conf(), server.db_url(), &["export"]);
            let after = written.load(Ordering::Relaxed);
            stop.store(true, Ordering::Relaxed);
            assert!(export.status.success(), "{}", stderr(&export));
            assert!(after > before, "writes went on during the export ({before} → {after})");
            let records = records(&stdout(&export));
            let header = &records[0];
            let end = records.last().unwrap();
            let users = records
                .iter()
                .filter(|record| record["kind"] == "object" && record["type"] == "user")
                .count() as u64;
            assert_eq!(header["counts"]["user"].as_u64(), Some(users), "header {header}");
            assert_eq!(end["counts"]["user"].as_u64(), Some(users));
            assert_eq!(end["objects"].as_u64(), Some(users));
            assert!(
                users >= 2500 + before && users <= 2500 + after,
                "{users} users: the count when the snapshot began"
            );
            assert!(
                records
                    .iter()
                    .any(|record| record["kind"] == "file" && record["path"] == "conf/managed.json"),
                "the conf files travel in the stream"
            );
        });
    });
}

#[test]
fn an_idm_file_with_invalid_users_is_refused_whole_and_its_dry_run_reports_the_same() {
    on_each_backend(|builder| {
        let server = builder.start();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.json");
        let mut no_mail = idm_user("nomail", json!("Passw0rd"));
        no_mail.as_object_mut().unwrap().remove("mail");
        let mut bad_mail = idm_user("badmail", json!("Passw0rd"));
        bad_mail["mail"] = json!("not-an-address");
        let pages = [
            json!({"result": [idm_user("hashed", idm_sha256("Secr3tPass")), no_mail],
                "resultCount": 2, "pagedResultsCookie": "abc", "totalPagedResults": -1}),
            json!({"result": [idm_user("weak", json!("weak")), idm_user("plain", json!("Plain1Pass")), bad_mail],
                "resultCount": 3, "pagedResultsCookie": null, "totalPagedResults": -1}),
        ];
        let text = format!("{}\n{}\n", pages[0], pages[1]);
        std::fs::write(&file, &text).unwrap();
        let expected_failures = [
            ("nomail", "property \"mail\" fails REQUIRED"),
            (
                "weak",
                "property \"password\" fails MIN_LENGTH, AT_LEAST_X_CAPITAL_LETTERS, AT_LEAST_X_NUMBERS",
            ),
            ("badmail", "property \"mail\" fails VALID_EMAIL_ADDRESS_FORMAT"),
        ];
        for dry_run in [true, false] {
            let mut args = vec!["import", file.to_str().unwrap()];
            if dry_run {
                args.push("--dry-run");
            }
            let refused = ferridm(&server.conf(), server.db_url(), &args);
            assert_eq!(
                refused.status.code(),
                Some(1),
                "dry run {dry_run}: {}",
                stderr(&refused)
            );
            let report = stdout(&refused);
            assert_eq!(report.lines().count(), 3, "one line per invalid user:\n{report}");
            for (user, failure) in expected_failures {
                let line = report
                    .lines()
                    .find(|line| line.starts_with(&format!("managed/user/{user} (userName \"{user}\")")))
                    .unwrap_or_else(|| panic!("{user} is not reported:\n{report}"));
                assert!(line.contains(failure), "{user}: {line}");
            }
            assert!(stderr(&refused).contains("3 of 5 objects fail validation; nothing was written"));
            assert_eq!(user_count(server.db_url()), 0, "nothing written (dry run {dry_run})");
        }

        // The valid users alone go in: the IDM hash as given, the plain password hashed.
        let valid =
            json!({"result": [idm_user("hashed", idm_sha256("Secr3tPass")), idm_user("plain", json!("Plain1Pass"))]});
        std::fs::write(&file, valid.to_string()).unwrap();
        let dry = ferridm(
            &server.conf(),
            server.db_url(),
            &["import", "--dry-run", file.to_str().unwrap()],
        );
        assert!(dry.status.success(), "{}", stderr(&dry));
        assert_eq!(user_count(server.db_url()), 0, "a dry run writes nothing");
        let imported = ferridm(&server.conf(), server.db_url(), &["import", file.to_str().unwrap()]);
        assert!(imported.status.success(), "{}{}", stdout(&imported), stderr(&imported));
        let stored = stored_objects(server.db_url());
        let hashed = &stored[&("user".to_owned(), "hashed".to_owned())];
        assert_eq!(hashed.2["password"], valid["result"][0]["password"], "stored as given");
        let plain = &stored[&("user".to_owned(), "plain".to_owned())];
        assert_eq!(plain.2["password"]["$crypto"]["type"], json!("argon2id"));
        assert!(
            hashed.1["createDate"].is_string(),
            "metadata as a create gives it: {}",
            hashed.1
        );
        assert_eq!(logs_in(&server, "hashed", "Secr3tPass"), 200);
        assert_eq!(logs_in(&server, "hashed", "Secr3tPasz"), 401);
        assert_eq!(logs_in(&server, "plain", "Plain1Pass"), 200);

        // Importing the same users again is refused (ids and user names are stored already).
        let again = ferridm(&server.conf(), server.db_url(), &["import", file.to_str().unwrap()]);
        assert_eq!(again.status.code(), Some(1));
        assert!(
            stdout(&again).contains(
                "managed/user/plain (userName \"plain\") (object 2): an object with this id is stored already"
            ),
            "{}",
            stdout(&again)
        );
    });
}

#[test]
fn an_idm_encrypted_password_is_refused_naming_the_user() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.json");
    let encrypted = json!({"$crypto": {"type": "x-simple-encryption",
        "value": {"cipher": "AES/CBC/PKCS5Padding", "data": "abc", "iv": "def", "key": "openidm-sym-default"}}});
    let users = json!([idm_user("clear", json!("Passw0rd")), idm_user("sealed", encrypted)]);
    std::fs::write(&file, users.to_string()).unwrap();
    let refused = ferridm(&server.conf(), server.db_url(), &["import", file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let report = stdout(&refused);
    assert_eq!(report.lines().count(), 1, "{report}");
    assert!(
        report.starts_with("managed/user/sealed (userName \"sealed\") (object 2): property \"password\" cannot be imported: its password is encrypted with IDM's keys"),
        "{report}"
    );
    assert_eq!(user_count(server.db_url()), 0);
}

#[test]
fn idm_encrypted_passwords_open_with_the_idm_key_and_are_stored_hashed() {
    const KEY: &str = "q7bA0nUQ3fC1sHk2Wv9yXg==";
    const OTHER_KEY: &str = "AAECAwQFBgcICQoLDA0ODw==";
    on_each_backend(|builder| {
        let server = builder.start();
        let dir = tempfile::tempdir().unwrap();
        let key_file = |name: &str, key: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("{key}\n")).unwrap();
            path.display().to_string()
        };
        let (key, other_key) = (key_file("sym.key", KEY), key_file("other.key", OTHER_KEY));
        let file = dir.path().join("users.json");
        let users = json!({"result": [
            idm_user("sealed", idm_encrypted(KEY, "openidm-sym-default", &json!("Sealed1Pass"), false)),
            idm_user("legacy", idm_encrypted(KEY, "openidm-sym-default", &json!("Legacy1Pass"), true)),
        ]});
        std::fs::write(&file, users.to_string()).unwrap();
        let path = file.to_str().unwrap();

        // Another key opens nothing: the salted value fails its MAC; nothing is written.
        let wrong_key = format!("openidm-sym-default={other_key}");
        let refused = ferridm(
            &server.conf(),
            server.db_url(),
            &["import", "--idm-key", &wrong_key, path],
        );
        assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
        let report = stdout(&refused);
        assert!(
            report.contains("managed/user/sealed (userName \"sealed\") (object 1): property \"password\" cannot be decrypted: its MAC does not match"),
            "{report}"
        );
        assert!(report.contains("managed/user/legacy"), "{report}");
        assert_eq!(user_count(server.db_url()), 0);
        // A key for another alias does not apply.
        let other_alias = format!("another-alias={key}");
        let refused = ferridm(
            &server.conf(),
            server.db_url(),
            &["import", "--idm-key", &other_alias, path],
        );
        assert!(
            stdout(&refused).contains("no key was given for its key alias \"openidm-sym-default\""),
            "{}",
            stdout(&refused)
        );
        // A key file that is no AES key stops the import before it reads anything.
        let broken = key_file("broken.key", "c2hvcnQ=");
        let refused = ferridm(&server.conf(), server.db_url(), &["import", "--idm-key", &broken, path]);
        assert_eq!(refused.status.code(), Some(2));
        assert!(
            stderr(&refused).contains("an AES key has 16, 24 or 32 bytes"),
            "{}",
            stderr(&refused)
        );

        // IDM's key opens both forms; the passwords are stored as argon2id and log in.
        let imported = ferridm(&server.conf(), server.db_url(), &["import", "--idm-key", &key, path]);
        assert!(imported.status.success(), "{}{}", stdout(&imported), stderr(&imported));
        let stored = stored_objects(server.db_url());
        for (user, password) in [("sealed", "Sealed1Pass"), ("legacy", "Legacy1Pass")] {
            let content = &stored[&("user".to_owned(), user.to_owned())].2;
            assert_eq!(content["password"]["$crypto"]["type"], json!("argon2id"), "{user}");
            assert!(!content.to_string().contains(password), "{user}: {content}");
            assert_eq!(logs_in(&server, user, password), 200, "{user}");
            assert_eq!(logs_in(&server, user, "Wrong1Pass"), 401, "{user}");
        }
    });
}

#[test]
fn an_import_killed_after_a_committed_batch_resumes_and_stores_every_user_once() {
    on_each_backend(|builder| {
        let server = builder.start();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.jsonl");
        let hash = idm_sha256("Passw0rd");
        let total = 3000;
        let lines: Vec<String> = (0..total)
            .map(|index| idm_user(&format!("bulk{index:05}"), hash.clone()).to_string())
            .collect();
        std::fs::write(&file, lines.join("\n")).unwrap();
        let path = file.to_str().unwrap();

        let mut child = command(&server.conf(), server.db_url(), &["import", path, "--batch-size", "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut progress = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                progress.read_line(&mut line).unwrap() > 0,
                "the import ended without progress"
            );
            if line.contains("committed") {
                break;
            }
        }
        assert!(line.starts_with("import: committed 10/3000 objects"), "{line}");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let interrupted = user_count(server.db_url());
        assert!(
            interrupted >= 10 && interrupted < total,
            "killed part way: {interrupted} users written"
        );
        assert_eq!(interrupted % 10, 0, "whole batches only");

        let without_resume = ferridm(&server.conf(), server.db_url(), &["import", path]);
        assert_eq!(without_resume.status.code(), Some(2));
        assert!(
            stderr(&without_resume).contains(&format!("stopped after {interrupted} objects: rerun with --resume")),
            "{}",
            stderr(&without_resume)
        );
        assert_eq!(
            user_count(server.db_url()),
            interrupted,
            "a refused rerun writes nothing"
        );

        let resumed = ferridm(&server.conf(), server.db_url(), &["import", path, "--resume"]);
        assert!(resumed.status.success(), "{}{}", stdout(&resumed), stderr(&resumed));
        assert!(
            stderr(&resumed).contains(&format!("{interrupted} written by an earlier run")),
            "{}",
            stderr(&resumed)
        );
        let stored = stored_objects(server.db_url());
        let ids: Vec<&str> = stored.keys().map(|(_, id)| id.as_str()).collect();
        let expected: Vec<String> = (0..total).map(|index| format!("bulk{index:05}")).collect();
        assert_eq!(ids, expected, "every user exactly once");
        assert_eq!(logs_in(&server, "bulk02999", "Passw0rd"), 200);
        assert_eq!(logs_in(&server, "bulk00000", "Passw0rd"), 200);

        // Finished: the checkpoint is gone, so importing the file again is refused object by
        // object rather than resumed.
        let again = ferridm(&server.conf(), server.db_url(), &["import", path, "--dry-run"]);
        assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    });
}
