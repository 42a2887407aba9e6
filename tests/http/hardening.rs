//! Defects found by adversarial testing (issue 22): callers refused before their bodies are
//! read, password hashing bounded and queued, unknown accounts checked like real ones, and
//! `openidm-admin` under the lockout except from the exempt addresses.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use ferridm_tests::{TestServer, on_each_backend, unique};
use serde_json::{Value, json};

use crate::auth::lockout_conf;

/// Cheap hashing with one turn at a time and a short queue.
const ONE_AT_A_TIME: &str = r#"{"passwordHashing": {"memoryKib": 256, "iterations": 1, "parallelism": 1, "maxConcurrent": 1, "queueTimeoutMillis": 100}}"#;

fn login_status(server: &TestServer, username: &str, password: &str) -> u16 {
    server
        .user(username, password)
        .post_empty("/openidm/authentication?_action=login")
        .send()
        .status
}

/// Point 7: a request without valid credentials is answered 401 from its headers, without
/// waiting for a body that never comes (the body timeout is set far beyond the test's patience).
#[test]
fn a_caller_without_credentials_is_refused_before_its_body_is_read() {
    let server = TestServer::builder()
        .conf_file(
            "ferridm.json",
            r#"{"passwordHashing": {"memoryKib": 256, "iterations": 1, "parallelism": 1}, "bodyTimeoutMillis": 600000}"#,
        )
        .start();
    let address = server.base().trim_start_matches("http://").to_owned();
    for credentials in ["", "X-OpenIDM-Username: anonymous\r\nX-OpenIDM-Password: wrong\r\n"] {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            stream,
            "PUT /openidm/managed/user/stalled HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n{credentials}\r\n{{\"userName\""
        )
        .unwrap();
        let mut response = [0u8; 4096];
        let read = stream
            .read(&mut response)
            .unwrap_or_else(|error| panic!("no answer before the body ({credentials:?}): {error}"));
        let text = String::from_utf8_lossy(&response[..read]);
        assert!(text.starts_with("HTTP/1.1 401"), "{credentials:?}: {text}");
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
        assert_eq!(
            body,
            json!({"code": 401, "reason": "Unauthorized", "message": "Access Denied"})
        );
    }
    assert_eq!(
        server.admin().get("/openidm/managed/user/stalled").send().status,
        404,
        "nothing was written"
    );
}

/// Point 6: password hashing takes turns. While every turn is taken, a login that must check a
/// password, and a write that must hash one, wait at most `queueTimeoutMillis` and then answer
/// IDM's 503; once a turn is free they go through. Requests that need no hashing are not held.
#[test]
fn password_hashing_takes_turns_and_a_full_queue_is_a_503() {
    on_each_backend(|builder| {
        let server = builder.conf_file("ferridm.json", ONE_AT_A_TIME).start();
        let name = unique("turns");
        server.create_user(&name, Some("Passw0rdTurns"));
        let state = server.state();
        let permit = state.hashing.acquire(Duration::ZERO).expect("the only turn");

        let login = server
            .user(&name, "Passw0rdTurns")
            .post_empty("/openidm/authentication?_action=login")
            .send();
        assert_eq!(login.status, 503, "{}", login.text);
        assert_eq!(login.body["reason"], json!("Service Unavailable"), "{}", login.text);
        assert_eq!(
            login.body["message"],
            json!("Too many password checks at once; try again later")
        );
        let write = server
            .admin()
            .post(
                "/openidm/managed/user?_action=create",
                &json!({"userName": format!("{name}-2"), "givenName": "A", "sn": "B",
                        "mail": "b@example.com", "password": "Passw0rdTurns"}),
            )
            .send();
        assert_eq!(write.status, 503, "{}", write.text);
        assert_eq!(
            server.admin().get("/openidm/info/ping").send().status,
            200,
            "no hashing, no wait"
        );

        drop(permit);
        assert_eq!(login_status(&server, &name, "Passw0rdTurns"), 200);
        let users = server
            .admin()
            .get(&format!(
                "/openidm/managed/user?_queryFilter=userName eq \"{name}-2\"&_fields=_id"
            ))
            .send();
        assert_eq!(users.body["resultCount"], json!(0), "the refused write stored nothing");
    });
}

/// Point 3: a login for an account that does not exist checks the password against a decoy
/// hash, so it costs (and queues for a turn) exactly like a wrong password for a real account.
#[test]
fn an_unknown_account_is_checked_like_a_real_one() {
    let server = TestServer::builder().conf_file("ferridm.json", ONE_AT_A_TIME).start();
    let name = unique("real");
    server.create_user(&name, Some("Passw0rdReal"));
    let state = server.state();
    let permit = state.hashing.acquire(Duration::ZERO).expect("the only turn");
    for user in [name.as_str(), "nobody-at-all"] {
        let reply = server
            .user(user, "Wr0ngPassword")
            .post_empty("/openidm/authentication?_action=login")
            .send();
        assert_eq!(reply.status, 503, "{user} waits for a hashing turn: {}", reply.text);
    }
    drop(permit);
    assert_eq!(login_status(&server, &name, "Wr0ngPassword"), 401);
    assert_eq!(login_status(&server, "nobody-at-all", "Wr0ngPassword"), 401);
}

/// Point 6: `openidm-admin` is locked out like a managed user when it connects from an address
/// that is not exempt, across nodes' shared store; from an exempt address (by default the
/// loopback ones) it can always get in, however many wrong guesses came before.
#[test]
fn the_admin_is_locked_out_except_from_exempt_addresses() {
    on_each_backend(|builder| {
        let mut conf: Value = serde_json::from_str(&lockout_conf(&json!({
            "enabled": true, "maxFailures": 3, "windowMinutes": 5, "lockMinutes": 1,
            "internalUserExemptAddresses": []
        })))
        .unwrap();
        let server = builder
            .conf_file("authentication.json", &conf.to_string())
            .manual_clock()
            .start();
        for _ in 0..3 {
            assert_eq!(login_status(&server, "openidm-admin", "wrong"), 401);
        }
        assert_eq!(
            login_status(&server, "openidm-admin", "openidm-admin"),
            401,
            "locked after three wrong guesses"
        );
        server.advance_clock(Duration::from_secs(61));
        assert_eq!(
            login_status(&server, "openidm-admin", "openidm-admin"),
            200,
            "after the lock"
        );

        conf["serverAuthContext"]["accountLockout"]["internalUserExemptAddresses"] = json!(["127.0.0.1", "::1"]);
        let exempt = TestServer::builder()
            .conf_file("authentication.json", &conf.to_string())
            .start();
        for _ in 0..5 {
            assert_eq!(login_status(&exempt, "openidm-admin", "wrong"), 401);
        }
        assert_eq!(
            login_status(&exempt, "openidm-admin", "openidm-admin"),
            200,
            "the way in from the host stays open"
        );
    });
}

/// Point 9: client queries take turns (`queries.maxConcurrent`), so that however many
/// expensive queries arrive, cheap requests do not wait behind them: while every query turn is
/// taken, a query waits at most `queueTimeoutMillis` and answers 503, and reads by id, writes
/// and ping are served at once, as are queries pinned to one value of a unique string (one
/// index probe, like a read by id). Queries that scripts run inside a request need no turn.
#[test]
fn queries_take_turns_and_cheap_requests_never_wait_for_them() {
    on_each_backend(|builder| {
        let server = builder
            .conf_file(
                "ferridm.json",
                r#"{"passwordHashing": {"memoryKib": 256, "iterations": 1, "parallelism": 1}, "queries": {"maxConcurrent": 1, "queueTimeoutMillis": 100}}"#,
            )
            .start();
        let name = unique("turns");
        let id = server.create_user(&name, None)["_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let state = server.state();
        let turn = state.queries.acquire(Duration::ZERO).expect("the only query turn");

        let query = server.admin().get("/openidm/managed/user?_queryFilter=true").send();
        assert_eq!(query.status, 503, "{}", query.text);
        assert_eq!(
            query.body["message"],
            json!("Too many queries at once; try again later")
        );
        assert_eq!(
            server.admin().get(&format!("/openidm/managed/user/{id}")).send().status,
            200
        );
        assert_eq!(server.admin().get("/openidm/info/ping").send().status, 200);
        // A query pinned to one value of a unique string reads what a read by id does.
        let pinned = server
            .admin()
            .get(&format!(
                "/openidm/managed/user?_queryFilter=userName eq \"{name}\"&_fields=_id"
            ))
            .send();
        assert_eq!(pinned.status, 200, "{}", pinned.text);
        assert_eq!(pinned.body["result"][0]["_id"], json!(id));
        let conjunction = server
            .admin()
            .get(&format!(
                "/openidm/managed/user?_queryFilter=userName eq \"{name}\" and sn co \"x\"&_fields=_id"
            ))
            .send();
        assert_eq!(
            conjunction.status, 503,
            "an and computes each operand: {}",
            conjunction.text
        );
        // A create runs the uniqueness policy's internal query without a turn of its own.
        let created = server
            .admin()
            .post(
                "/openidm/managed/user?_action=create",
                &json!({"userName": format!("{name}-2"), "givenName": "A", "sn": "B", "mail": "b@example.com"}),
            )
            .send();
        assert_eq!(created.status, 201, "{}", created.text);

        drop(turn);
        let query = server
            .admin()
            .get(&format!(
                "/openidm/managed/user?_queryFilter=userName sw \"{name}\"&_fields=_id"
            ))
            .send();
        assert_eq!(query.status, 200, "{}", query.text);
        assert_eq!(query.body["resultCount"], json!(2));
    });
}
