//! Managed-object CRUD as IDM's managed-users examples show it: the create → read → update →
//! delete life cycle, revisions, the 404/412 refusals, and who may use `managed/*` at all
//! (only `openidm-admin`, for now). Also home of the small helpers the other managed-object
//! modules share (`assert_rev`, `keys`, `user_body`, `count`, `assert_alive`).

use ferridm_tests::{Reply, TestServer, on_each_backend, unique};
use serde_json::{Value, json};

/// Asserts that `rev` is a revision as ferridm writes it (16 lower-case hex digits) and
/// returns it.
pub fn assert_rev(rev: &Value) -> String {
    let text = rev.as_str().unwrap_or_else(|| panic!("_rev is not a string: {rev}"));
    assert!(
        text.len() == 16 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "_rev is not 16 lower-case hex digits: {text:?}"
    );
    text.to_owned()
}

/// The keys of a JSON object in the order the server wrote them.
pub fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// A user body that satisfies the shipped schema (required fields, valid e-mail).
pub fn user_body(user_name: &str) -> Value {
    json!({
        "userName": user_name,
        "givenName": "Test",
        "sn": "User",
        "mail": format!("{user_name}@example.com"),
    })
}

/// `user_body` plus extra top-level properties.
pub fn user_with(user_name: &str, extra: &Value) -> Value {
    let mut body = user_body(user_name);
    if let (Some(map), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            map.insert(key.clone(), value.clone());
        }
    }
    body
}

/// Creates a user with a client-chosen id (`PUT` + `If-None-Match: *`) and returns the reply.
pub fn put_new(server: &TestServer, id: &str, body: &Value) -> Reply {
    let reply = server
        .admin()
        .put(&format!("/openidm/managed/user/{id}"), body)
        .header("If-None-Match", "*")
        .send();
    assert_eq!(reply.status, 201, "creating {id}: {}", reply.text);
    reply
}

/// How many managed users match `filter` (an already URL-encoded `_queryFilter` value).
pub fn count(server: &TestServer, filter: &str) -> u64 {
    let reply = server
        .admin()
        .get(&format!("/openidm/managed/user?_queryFilter={filter}&_fields=_id"))
        .send();
    assert_eq!(reply.status, 200, "query {filter}: {}", reply.text);
    let result_count = reply.body["resultCount"].as_u64().expect("resultCount");
    assert_eq!(
        reply.body["result"].as_array().map(Vec::len),
        usize::try_from(result_count).ok(),
        "resultCount disagrees with result: {}",
        reply.text
    );
    result_count
}

/// Asserts the server still answers ping.
pub fn assert_alive(server: &TestServer) {
    let ping = server.nobody().get("/openidm/info/ping").send();
    assert_eq!(ping.status, 200, "ping after a refusal: {}", ping.text);
    assert_eq!(ping.body["state"], "ACTIVE_READY");
}

/// The body without `_id` and `_rev` (to compare two objects created under different ids).
pub fn content_of(body: &Value) -> Value {
    let mut map = body.as_object().cloned().unwrap_or_default();
    map.remove("_id");
    map.remove("_rev");
    Value::Object(map)
}

#[test]
fn ping_is_open_and_ready() {
    let server = TestServer::start();
    let reply = server.nobody().get("/openidm/info/ping").send();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!({"_id": "", "shortDesc": "OpenIDM ready", "state": "ACTIVE_READY"})
    );
}

#[test]
fn put_with_if_none_match_creates_then_refuses_the_same_id() {
    on_each_backend(|builder| {
        let server = builder.start();
        let body = json!({"userName": "bjackson", "sn": "Jackson", "givenName": "Barbara",
                          "mail": "bjackson@example.com", "telephoneNumber": "082082082", "password": "Passw0rd"});
        let created = server
            .admin()
            .put("/openidm/managed/user/bjackson", &body)
            .header("If-None-Match", "*")
            .send();
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(
            created.without_revisions(),
            json!({"_id": "bjackson", "userName": "bjackson", "sn": "Jackson", "givenName": "Barbara",
                   "mail": "bjackson@example.com", "telephoneNumber": "082082082", "accountStatus": "active",
                   "effectiveAssignments": [], "effectiveRoles": []})
        );
        let again = server
            .admin()
            .put("/openidm/managed/user/bjackson", &body)
            .header("If-None-Match", "*")
            .send();
        again.assert_error(412);
    });
}

#[test]
fn create_read_update_delete_life_cycle() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("cycle");
        let path = format!("/openidm/managed/user/{id}");
        let body = user_with(&id, &json!({"description": "first", "city": "Oslo"}));

        let created = put_new(&server, &id, &body);
        let first_rev = assert_rev(&created.body["_rev"]);
        assert_eq!(keys(&created.body)[..2], ["_id", "_rev"]);
        assert_eq!(created.body["_id"], id.as_str());

        let read = server.admin().get(&path).send();
        assert_eq!(read.status, 200, "{}", read.text);
        assert_eq!(
            read.body, created.body,
            "a read right after create returns the created resource"
        );

        // A full replacement: `city` and the defaulted `accountStatus` are not in the new body, so
        // they are gone afterwards.
        let replacement = user_with(&id, &json!({"description": "second"}));
        let updated = server
            .admin()
            .put(&path, &replacement)
            .header("If-Match", &first_rev)
            .send();
        assert_eq!(updated.status, 200, "{}", updated.text);
        let second_rev = assert_rev(&updated.body["_rev"]);
        assert_ne!(second_rev, first_rev, "an update that changes content bumps _rev");
        assert_eq!(
            updated.without_revisions(),
            json!({"_id": id, "userName": id, "givenName": "Test", "sn": "User", "mail": format!("{id}@example.com"),
                   "description": "second", "effectiveAssignments": [], "effectiveRoles": []})
        );
        assert_eq!(server.admin().get(&path).send().body, updated.body);

        let deleted = server.admin().delete(&path).send();
        assert_eq!(deleted.status, 200, "{}", deleted.text);
        assert_eq!(deleted.body, updated.body, "delete returns the object as it was");

        let gone = server.admin().get(&path).send();
        assert_eq!(
            gone.assert_error(404),
            format!("Object managed/user/{id} not found in managed/user")
        );
        assert_eq!(count(&server, "true"), 0);
    });
}

#[test]
fn every_operation_on_a_missing_id_is_404() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("ghost");
        let path = format!("/openidm/managed/user/{id}");
        let expected = format!("Object managed/user/{id} not found in managed/user");
        let patch = json!([{"operation": "replace", "field": "/description", "value": "x"}]);

        let replies = [
            ("read", server.admin().get(&path).send()),
            (
                "update If-Match *",
                server
                    .admin()
                    .put(&path, &user_body(&id))
                    .header("If-Match", "*")
                    .send(),
            ),
            (
                "update If-Match rev",
                server
                    .admin()
                    .put(&path, &user_body(&id))
                    .header("If-Match", "0000000000000001")
                    .send(),
            ),
            ("patch", server.admin().patch(&path, &patch).send()),
            (
                "patch action",
                server.admin().post(&format!("{path}?_action=patch"), &patch).send(),
            ),
            ("delete", server.admin().delete(&path).send()),
        ];
        for (what, reply) in replies {
            assert_eq!(reply.assert_error(404), expected, "{what}");
        }
        assert_eq!(count(&server, "true"), 0, "nothing was created along the way");
    });
}

#[test]
fn creating_an_existing_id_is_412_not_409() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("dup");
        let original = put_new(&server, &id, &user_with(&id, &json!({"description": "original"})));

        let by_put = server
            .admin()
            .put(
                &format!("/openidm/managed/user/{id}"),
                &user_with(&format!("{id}-put"), &json!({"description": "put"})),
            )
            .header("If-None-Match", "*")
            .send();
        let message = by_put.assert_error(412);
        assert!(
            message.starts_with("Create rejected as Object with same ID already exists"),
            "{message}"
        );

        let mut body = user_with(&format!("{id}-post"), &json!({"description": "post"}));
        body["_id"] = json!(id);
        let by_post = server
            .admin()
            .post("/openidm/managed/user?_action=create", &body)
            .send();
        let message = by_post.assert_error(412);
        assert!(
            message.starts_with("Create rejected as Object with same ID already exists"),
            "{message}"
        );

        let read = server.admin().get(&format!("/openidm/managed/user/{id}")).send();
        assert_eq!(read.body, original.body, "the refused creates changed nothing");
        assert_eq!(count(&server, "true"), 1);
    });
}

#[test]
fn post_create_takes_the_id_from_the_body() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("chosen");
        let mut body = user_body(&id);
        body["_id"] = json!(id);
        let created = server
            .admin()
            .post("/openidm/managed/user?_action=create", &body)
            .send();
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(created.body["_id"], id.as_str());
        assert_eq!(keys(&created.body)[..2], ["_id", "_rev"]);
        assert_eq!(
            created
                .body
                .as_object()
                .map(|map| map.keys().filter(|key| *key == "_id").count()),
            Some(1),
            "_id is not repeated from the body"
        );
        let read = server.admin().get(&format!("/openidm/managed/user/{id}")).send();
        assert_eq!(read.body, created.body);
    });
}

#[test]
fn a_body_id_overrides_the_put_url_on_create() {
    on_each_backend(|builder| {
        let server = builder.start();
        let url_id = unique("url");
        let body_id = unique("body");
        let mut body = user_body(&body_id);
        body["_id"] = json!(body_id);
        let created = server
            .admin()
            .put(&format!("/openidm/managed/user/{url_id}"), &body)
            .header("If-None-Match", "*")
            .send();
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(created.body["_id"], body_id.as_str());
        assert_eq!(
            server
                .admin()
                .get(&format!("/openidm/managed/user/{body_id}"))
                .send()
                .status,
            200
        );
        server
            .admin()
            .get(&format!("/openidm/managed/user/{url_id}"))
            .send()
            .assert_error(404);
    });
}

#[test]
fn revisions_change_only_when_content_changes() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("rev");
        let path = format!("/openidm/managed/user/{id}");
        let created = put_new(&server, &id, &user_body(&id));
        let first = assert_rev(&created.body["_rev"]);

        let body = user_with(&id, &json!({"description": "same", "accountStatus": "active"}));
        let updated = server.admin().put(&path, &body).header("If-Match", &first).send();
        assert_eq!(updated.status, 200, "{}", updated.text);
        let rev = assert_rev(&updated.body["_rev"]);
        assert_ne!(rev, first);

        // Re-sending the stored content is not a change: same _rev.
        let same = server.admin().put(&path, &body).header("If-Match", &rev).send();
        assert_eq!(same.status, 200, "{}", same.text);
        assert_eq!(same.body["_rev"], rev.as_str());
        assert_eq!(same.body, updated.body);
        assert_eq!(same.header("etag"), Some(format!("\"{rev}\"").as_str()));

        // `_rev` inside the body is ignored; only If-Match counts.
        let mut with_rev = user_with(&id, &json!({"description": "changed"}));
        with_rev["_rev"] = json!("ffffffffffffffff");
        let changed = server.admin().put(&path, &with_rev).header("If-Match", &rev).send();
        assert_eq!(changed.status, 200, "{}", changed.text);
        let next = assert_rev(&changed.body["_rev"]);
        assert_ne!(next, rev);
        assert_ne!(next, "ffffffffffffffff");
        assert_eq!(changed.body["description"], "changed");

        // Every change gives a revision never seen before for this object.
        let mut seen = vec![first, rev, next.clone()];
        let mut current = next;
        for n in 0..5 {
            let reply = server
                .admin()
                .patch(
                    &path,
                    &json!([{"operation": "replace", "field": "/description", "value": format!("v{n}")}]),
                )
                .send();
            assert_eq!(reply.status, 200, "{}", reply.text);
            current = assert_rev(&reply.body["_rev"]);
            assert!(!seen.contains(&current), "revision {current} repeated");
            seen.push(current.clone());
        }
        assert_eq!(server.admin().get(&path).send().body["_rev"], current.as_str());
    });
}

#[test]
fn undeclared_properties_are_stored_returned_and_queryable() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("extra");
        let extra = json!({"active": "true", "nested": {"level": 2, "tags": ["a", "b"]}, "score": 1.5});
        put_new(&server, &id, &user_with(&id, &extra));
        put_new(&server, &unique("plain"), &user_body(&unique("plain")));

        let read = server.admin().get(&format!("/openidm/managed/user/{id}")).send();
        assert_eq!(read.body["active"], "true");
        assert_eq!(read.body["nested"], json!({"level": 2, "tags": ["a", "b"]}));
        assert_eq!(read.body["score"], json!(1.5));

        let found = server
            .admin()
            .get("/openidm/managed/user?_queryFilter=active+eq+%22true%22&_fields=_id")
            .send();
        assert_eq!(found.status, 200, "{}", found.text);
        assert_eq!(found.without_revisions()["result"], json!([{"_id": id}]));
        assert_eq!(count(&server, "nested%2Flevel+eq+2"), 1);
    });
}

#[test]
fn only_the_administrator_may_use_managed_objects() {
    let server = TestServer::start();
    let id = unique("auth");
    let path = format!("/openidm/managed/user/{id}");
    let body = user_body(&id);
    let patch = json!([{"operation": "replace", "field": "/description", "value": "x"}]);

    let assert_denied = |reply: Reply, what: &str| {
        assert_eq!(reply.status, 401, "{what}: {}", reply.text);
        assert_eq!(reply.body["code"], 401, "{what}");
        assert_eq!(reply.body["reason"], "Unauthorized", "{what}");
        assert_eq!(reply.body["message"], "Access Denied", "{what}");
    };
    for (who, actor) in [
        ("no credentials", server.nobody()),
        ("wrong admin password", server.user("openidm-admin", "not-the-password")),
        ("empty admin password", server.user("openidm-admin", "")),
    ] {
        assert_denied(actor.get(&path).send(), &format!("{who}: read"));
        assert_denied(
            actor.get("/openidm/managed/user?_queryFilter=true").send(),
            &format!("{who}: query"),
        );
        assert_denied(
            actor.post("/openidm/managed/user?_action=create", &body).send(),
            &format!("{who}: create"),
        );
        assert_denied(actor.put(&path, &body).send(), &format!("{who}: upsert"));
        assert_denied(actor.patch(&path, &patch).send(), &format!("{who}: patch"));
        assert_denied(actor.delete(&path).send(), &format!("{who}: delete"));
    }
    assert_eq!(count(&server, "true"), 0, "no refused request stored anything");
}

#[test]
fn basic_authorization_with_the_admin_credentials_works() {
    let server = TestServer::start();
    let id = unique("basic");
    // base64("openidm-admin:openidm-admin")
    let good = "Basic b3BlbmlkbS1hZG1pbjpvcGVuaWRtLWFkbWlu";
    let created = server
        .nobody()
        .with("Authorization", good)
        .post("/openidm/managed/user?_action=create", &user_body(&id))
        .send();
    assert_eq!(created.status, 201, "{}", created.text);
    let read = server
        .nobody()
        .with("Authorization", good)
        .get(&format!(
            "/openidm/managed/user/{}",
            created.body["_id"].as_str().unwrap()
        ))
        .send();
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["userName"], id.as_str());

    // base64("openidm-admin:wrong")
    let bad = server
        .nobody()
        .with("Authorization", "Basic b3BlbmlkbS1hZG1pbjp3cm9uZw==")
        .get("/openidm/managed/user?_queryFilter=true")
        .send();
    assert_eq!(bad.assert_error(401), "Access Denied");
}

/// Issue 22, point 4: every spelling of an array index follows one rule. Only canonical
/// decimal indexes (and `-` where the operation writes) address an element; `01`, `+1`, `-1`,
/// `1.0`, ` 1`, `1e0` and names are refused with one message naming the segment, by every
/// operation, and the stored object is left alone.
#[test]
fn patch_array_indexes_follow_one_rule() {
    on_each_backend(|builder| {
        let server = builder.start();
        let name = unique("indexes");
        let created = server
            .admin()
            .post(
                "/openidm/managed/user?_action=create",
                &user_with(&name, &json!({"tags": ["only"], "nickname": "nick"})),
            )
            .send();
        assert_eq!(created.status, 201, "{}", created.text);
        let path = format!("/openidm/managed/user/{}", created.body["_id"].as_str().unwrap());
        let stored = server.admin().get(&path).send().body;
        let refused = |operation: Value| -> String {
            let reply = server.admin().patch(&path, &json!([operation])).send();
            let message = reply.assert_error(400);
            assert_eq!(
                server.admin().get(&path).send().body,
                stored,
                "{operation} changed the user"
            );
            message
        };

        for segment in ["01", "00", "+1", "+0", "-1", "1.0", " 1", "1e0", "x"] {
            let field = format!("/tags/{segment}");
            let expected = format!("/tags: List index is not valid: {segment}");
            for operation in [
                json!({"operation": "add", "field": field, "value": "z"}),
                json!({"operation": "replace", "field": field, "value": "z"}),
                json!({"operation": "remove", "field": field}),
                json!({"operation": "increment", "field": field, "value": 1}),
                json!({"operation": "copy", "from": field, "field": "/copied"}),
                json!({"operation": "move", "from": field, "field": "/moved"}),
                json!({"operation": "copy", "from": "/nickname", "field": field}),
                json!({"operation": "move", "from": "/nickname", "field": field}),
            ] {
                assert_eq!(refused(operation.clone()), expected, "{operation}");
            }
        }

        // `-` is the end only where something is written.
        for operation in [
            json!({"operation": "remove", "field": "/tags/-"}),
            json!({"operation": "increment", "field": "/tags/-", "value": 1}),
            json!({"operation": "copy", "from": "/tags/-", "field": "/copied"}),
        ] {
            assert_eq!(
                refused(operation.clone()),
                "/tags: List index is not valid: -",
                "{operation}"
            );
        }
        // The position rule and IDM's out-of-range wording stay as they were.
        assert_eq!(
            refused(json!({"operation": "add", "field": "/tags/1", "value": "z"})),
            "Position-based operation is not allowed: /tags/1"
        );
        assert_eq!(
            refused(json!({"operation": "add", "field": "/tags/12", "value": "z"})),
            "/tags: List index out of range: 12"
        );

        let appended = server
            .admin()
            .patch(
                &path,
                &json!([{"operation": "add", "field": "/tags/-", "value": "two"}]),
            )
            .send();
        assert_eq!(appended.status, 200, "{}", appended.text);
        assert_eq!(appended.body["tags"], json!(["only", "two"]));
    });
}
