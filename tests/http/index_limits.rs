//! Issue 22, points 8 and 12: what one object may add to the property index is bounded (a
//! clear 400 before any policy, trigger or hashing works on it, and nothing changes), and long
//! strings are stored and queried exactly on both backends (PostgreSQL's B-tree entries hold
//! at most 2,704 bytes, so the index keeps a bounded key beside the whole text).

use ferridm_tests::{on_each_backend, unique, url_encode};
use serde_json::{Value, json};

fn query_ids(server: &ferridm_tests::TestServer, filter: &str) -> Vec<String> {
    let path = format!(
        "/openidm/managed/user?_queryFilter={}&_fields=_id&_sortKeys=description",
        url_encode(filter)
    );
    let reply = server.admin().get(&path).send();
    assert_eq!(reply.status, 200, "{filter}: {}", reply.text);
    reply.body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn long_strings_are_stored_and_queried_exactly() {
    on_each_backend(|builder| {
        let server = builder.start();
        let head = "Ünïcode ".repeat(300);
        let create = |suffix: &str| {
            let name = unique("long");
            let body = json!({
                "userName": name, "givenName": "L", "sn": "S", "mail": format!("{name}@example.com"),
                "description": format!("{head}{suffix}"),
            });
            let reply = server
                .admin()
                .post("/openidm/managed/user?_action=create", &body)
                .send();
            assert_eq!(reply.status, 201, "{}", reply.text);
            assert_eq!(reply.body["description"], body["description"]);
            reply.body["_id"].as_str().unwrap().to_owned()
        };
        // 2,400 characters, 3,000 bytes: beyond a B-tree entry, differing only at the end.
        let first = create("first tail");
        let second = create("second tail");
        let read = server.admin().get(&format!("/openidm/managed/user/{first}")).send();
        assert_eq!(read.body["description"], json!(format!("{head}first tail")));

        assert_eq!(
            query_ids(&server, &format!("description eq \"{head}FIRST tail\"")),
            [first.as_str()]
        );
        assert_eq!(query_ids(&server, "description co \"second t\""), [second.as_str()]);
        assert_eq!(
            query_ids(&server, &format!("description sw \"{head}sec\"")),
            [second.as_str()]
        );
        assert_eq!(
            query_ids(&server, &format!("description gt \"{head}first tail\"")),
            [second.as_str()]
        );
        assert_eq!(
            query_ids(&server, &format!("description ge \"{head}first tail\"")),
            [first.as_str(), second.as_str()]
        );
        assert_eq!(
            query_ids(&server, &format!("description lt \"{head}second\"")),
            [first.as_str()]
        );
        assert!(query_ids(&server, &format!("description eq \"{head}first tai\"")).is_empty());
        assert_eq!(
            query_ids(&server, &format!("description sw \"{}\"", &head[..40])),
            [first.as_str(), second.as_str()]
        );
    });
}

#[test]
fn an_object_beyond_the_index_limits_is_a_400_and_changes_nothing() {
    on_each_backend(|builder| {
        let server = builder.start();
        let name = unique("big");
        let created = server.create_user(&name, Some("Passw0rd!"));
        let path = format!("/openidm/managed/user/{}", created["_id"].as_str().unwrap());
        let user = server.user(&name, "Passw0rd!");
        let before = user.get(&path).send();
        assert_eq!(before.status, 200);

        // The user's own patch of a huge array: refused before its answers would be hashed.
        let answers: Vec<Value> = (0..=ferridm_store::MAX_ARRAY_ITEMS)
            .map(|index| json!({"questionId": "1", "customQuestion": format!("q{index}"), "answer": "a"}))
            .collect();
        let reply = user
            .patch(
                &path,
                &json!([{"operation": "replace", "field": "/kbaInfo", "value": answers}]),
            )
            .send();
        assert_eq!(
            reply.body,
            json!({"code": 400, "reason": "Bad Request", "message": "The array /kbaInfo holds 5001 elements; at most 5000 are accepted"}),
            "{}",
            reply.text
        );
        let huge: Vec<u32> = (0..=5_000).collect();
        let reply = user
            .patch(
                &path,
                &json!([{"operation": "add", "field": "/preferences/list", "value": huge}]),
            )
            .send();
        assert_eq!(
            reply.assert_error(400),
            "The array /preferences/list holds 5001 elements; at most 5000 are accepted"
        );
        assert_eq!(user.get(&path).send().body, before.body, "nothing changed");

        // Too deep, on create and on update.
        let mut deep = json!("bottom");
        for _ in 0..ferridm_store::MAX_DEPTH {
            deep = json!({"n": deep});
        }
        let deep_user = json!({"userName": unique("deep"), "givenName": "D", "sn": "D", "mail": "d@example.com", "preferences": deep});
        let reply = server
            .admin()
            .post("/openidm/managed/user?_action=create", &deep_user)
            .send();
        let message = reply.assert_error(400);
        assert!(
            message.starts_with("The value at /preferences/n/n/")
                && message.ends_with(" is nested more than 32 levels deep"),
            "{message}"
        );
        let mut replaced = before.body.clone();
        replaced["preferences"] = deep;
        let reply = server.admin().put(&path, &replaced).send();
        reply.assert_error(400);
        assert_eq!(user.get(&path).send().body, before.body, "nothing changed");
    });
}
