//! Two ferridm nodes on one PostgreSQL database and one project directory (so one generated
//! session key): a session cookie issued by either node authenticates on the other, failed
//! logins and locks are counted in the database so both nodes agree, and a password changed on
//! one node is what the other checks. Skipped quietly when no PostgreSQL is reachable (set
//! `FERRIDM_TEST_REQUIRE_POSTGRES=1` to make that a failure).

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
