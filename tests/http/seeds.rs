//! Every example of the PingIDM "Managed users" page (`seeds/managed-users.txt`), replayed over
//! HTTP with the same headers, asserting the documented response bodies — revisions aside (ours
//! are 16 lower-case hex digits like the seed's) and server-assigned ids aside — and the key
//! order the seed shows. The examples that put raw quote characters into the URL are sent over
//! a plain TCP connection, byte for byte as curl sends them.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use ferridm_tests::{Actor, TestServer, on_each_backend};
use serde_json::{Value, json};

use crate::crud::{assert_rev, keys};

/// The admin as the seed's curl commands present themselves.
fn seed_admin(server: &TestServer) -> Actor<'_> {
    server.admin().with("Accept-API-Version", "resource=1.0")
}

/// Creates bjensen and scarter (client-assigned ids, as in the examples). scarter carries the
/// undeclared property `"active": "true"`, which must be stored and returned as given.
fn create_seed_users(server: &TestServer) {
    let bjensen = json!({"userName": "bjensen", "givenName": "Barbara", "sn": "Jensen",
                         "telephoneNumber": "1234567", "mail": "bjensen@example.com", "password": "Passw0rd"});
    let scarter = json!({"userName": "scarter", "givenName": "Sam", "sn": "Carter", "telephoneNumber": "12345678",
                         "active": "true", "mail": "scarter@example.com", "password": "Passw0rd"});
    for (id, body) in [("bjensen", bjensen), ("scarter", scarter)] {
        let reply = seed_admin(server)
            .put(&format!("/openidm/managed/user/{id}"), &body)
            .header("If-None-Match", "*")
            .send();
        assert_eq!(reply.status, 201, "creating {id}: {}", reply.text);
    }
}

/// scarter as every read and query of the seed shows her.
fn scarter() -> Value {
    json!({"_id": "scarter", "userName": "scarter", "givenName": "Sam", "sn": "Carter",
           "telephoneNumber": "12345678", "active": "true", "mail": "scarter@example.com",
           "accountStatus": "active", "effectiveAssignments": [], "effectiveRoles": []})
}

const SCARTER_KEYS: [&str; 11] = [
    "_id",
    "_rev",
    "userName",
    "givenName",
    "sn",
    "telephoneNumber",
    "active",
    "mail",
    "accountStatus",
    "effectiveAssignments",
    "effectiveRoles",
];

/// A response read off a raw HTTP/1.1 exchange.
struct RawReply {
    status: u16,
    head: String,
    text: String,
    body: Value,
}

/// Sends `request_line` (method and target, sent verbatim) with the seed's admin headers and an
/// optional JSON body over a fresh TCP connection.
fn raw_request(server: &TestServer, request_line: &str, body: Option<&str>) -> RawReply {
    let host = server.base().trim_start_matches("http://");
    let mut request = format!(
        "{request_line} HTTP/1.1\r\nHost: {host}\r\nX-OpenIDM-Username: openidm-admin\r\n\
         X-OpenIDM-Password: openidm-admin\r\nAccept-API-Version: resource=1.0\r\nConnection: close\r\n"
    );
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    let mut stream = TcpStream::connect(host).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, text) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head}"));
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "expected a sized body: {head}"
    );
    RawReply {
        status,
        head: head.to_owned(),
        text: text.to_owned(),
        body: serde_json::from_str(text).unwrap_or(Value::Null),
    }
}

/// `_rev` removed from every object of a JSON value.
fn without_revisions(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| key.as_str() != "_rev")
                .map(|(key, value)| (key.clone(), without_revisions(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_revisions).collect()),
        other => other.clone(),
    }
}

#[test]
fn retrieve_the_ids_of_all_managed_users() {
    on_each_backend(|builder| {
        let server = builder.start();
        create_seed_users(&server);
        let reply = seed_admin(&server)
            .get("/openidm/managed/user?_queryFilter=true&_fields=_id")
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        let result = reply.body["result"].as_array().expect("result");
        let mut ids: Vec<&str> = result.iter().filter_map(|item| item["_id"].as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["bjensen", "scarter"]);
        for item in result {
            assert_eq!(keys(item), ["_id", "_rev"], "only _id and _rev: {item}");
            assert_rev(&item["_rev"]);
        }
        assert_eq!(reply.body["resultCount"], 2);
    });
}

#[test]
fn query_for_a_user_name_with_url_encoded_quotes() {
    on_each_backend(|builder| {
        let server = builder.start();
        create_seed_users(&server);
        let reply = seed_admin(&server)
            .get("/openidm/managed/user?_queryFilter=userName+eq+%22scarter%22")
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.without_revisions()["result"], json!([scarter()]));
        assert_eq!(keys(&reply.body["result"][0]), SCARTER_KEYS);
        assert_rev(&reply.body["result"][0]["_rev"]);
        assert_eq!(reply.body["resultCount"], 1);
    });
}

#[test]
fn query_for_a_user_name_with_raw_double_quotes() {
    on_each_backend(|builder| {
        let server = builder.start();
        create_seed_users(&server);
        let reply = raw_request(
            &server,
            r#"GET /openidm/managed/user?_queryFilter=userName+eq+"scarter""#,
            None,
        );
        assert_eq!(reply.status, 200, "{}|{}", reply.head, reply.text);
        assert_eq!(without_revisions(&reply.body["result"]), json!([scarter()]));
        assert_eq!(keys(&reply.body["result"][0]), SCARTER_KEYS);
        assert_rev(&reply.body["result"][0]["_rev"]);
        assert_eq!(reply.body["resultCount"], 1);
    });
}

#[test]
fn retrieve_a_managed_user_by_id() {
    on_each_backend(|builder| {
        let server = builder.start();
        create_seed_users(&server);
        let reply = seed_admin(&server).get("/openidm/managed/user/scarter").send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.without_revisions(), scarter());
        assert_eq!(keys(&reply.body), SCARTER_KEYS);
        let rev = assert_rev(&reply.body["_rev"]);
        assert_eq!(reply.header("etag"), Some(format!("\"{rev}\"").as_str()));
    });
}

#[test]
fn add_update_and_delete_bjackson() {
    on_each_backend(|builder| {
        let server = builder.start();
        create_seed_users(&server);

        // Add a user with a specific user ID.
        let created = seed_admin(&server)
            .put(
                "/openidm/managed/user/bjackson",
                &json!({"userName": "bjackson", "sn": "Jackson", "givenName": "Barbara",
                        "mail": "bjackson@example.com", "telephoneNumber": "082082082", "password": "Passw0rd"}),
            )
            .header("If-None-Match", "*")
            .send();
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(
            created.without_revisions(),
            json!({"_id": "bjackson", "userName": "bjackson", "sn": "Jackson", "givenName": "Barbara",
                   "mail": "bjackson@example.com", "telephoneNumber": "082082082", "accountStatus": "active",
                   "effectiveAssignments": [], "effectiveRoles": []})
        );
        assert_eq!(
            keys(&created.body),
            [
                "_id",
                "_rev",
                "userName",
                "sn",
                "givenName",
                "mail",
                "telephoneNumber",
                "accountStatus",
                "effectiveAssignments",
                "effectiveRoles"
            ]
        );
        let created_rev = assert_rev(&created.body["_rev"]);

        // Update a user: patch by query, the literal quoted with single quotes as curl sends it.
        let patched = raw_request(
            &server,
            "POST /openidm/managed/user?_action=patch&_queryFilter=userName+eq+'bjackson'",
            Some(r#"[{"operation": "replace", "field": "/telephoneNumber", "value": "0763483726"}]"#),
        );
        assert_eq!(patched.status, 200, "{}", patched.text);
        assert_eq!(
            without_revisions(&patched.body),
            json!({"userName": "bjackson", "sn": "Jackson", "givenName": "Barbara", "mail": "bjackson@example.com",
                   "telephoneNumber": "0763483726", "accountStatus": "active",
                   "effectiveAssignments": [], "effectiveRoles": [], "_id": "bjackson"})
        );
        // As the seed shows, this response lists `_rev` and `_id` last.
        assert_eq!(
            keys(&patched.body),
            [
                "userName",
                "sn",
                "givenName",
                "mail",
                "telephoneNumber",
                "accountStatus",
                "effectiveAssignments",
                "effectiveRoles",
                "_rev",
                "_id"
            ]
        );
        assert!(patched.text.ends_with(r#""_id":"bjackson"}"#), "{}", patched.text);
        let patched_rev = assert_rev(&patched.body["_rev"]);
        assert_ne!(patched_rev, created_rev);

        // Delete a user: the response is the user as it was, with the patched revision.
        let deleted = seed_admin(&server).delete("/openidm/managed/user/bjackson").send();
        assert_eq!(deleted.status, 200, "{}", deleted.text);
        assert_eq!(
            deleted.without_revisions(),
            json!({"_id": "bjackson", "userName": "bjackson", "sn": "Jackson", "givenName": "Barbara",
                   "mail": "bjackson@example.com", "telephoneNumber": "0763483726", "accountStatus": "active",
                   "effectiveAssignments": [], "effectiveRoles": []})
        );
        assert_eq!(keys(&deleted.body)[..2], ["_id", "_rev"]);
        assert_eq!(deleted.body["_rev"], patched_rev.as_str());
        let gone = seed_admin(&server).get("/openidm/managed/user/bjackson").send();
        gone.assert_error(404);

        // The other seed users are untouched.
        let reply = seed_admin(&server).get("/openidm/managed/user/scarter").send();
        assert_eq!(reply.without_revisions(), scarter());
    });
}

#[test]
fn add_a_user_with_a_system_generated_id() {
    on_each_backend(|builder| {
        let server = builder.start();
        create_seed_users(&server);
        let reply = seed_admin(&server)
            .post(
                "/openidm/managed/user?_action=create",
                &json!({"userName": "pjensen", "sn": "Jensen", "givenName": "Pam", "mail": "pjensen@example.com",
                        "telephoneNumber": "082082082", "password": "Passw0rd"}),
            )
            .send();
        assert_eq!(reply.status, 201, "{}", reply.text);
        let id = reply.body["_id"].as_str().expect("_id").to_owned();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id, id.to_lowercase(), "{id}");
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "not a UUID: {id}");
        assert_ne!(id, "pjensen");
        assert_rev(&reply.body["_rev"]);
        assert_eq!(
            reply.without_revisions(),
            json!({"_id": id, "userName": "pjensen", "sn": "Jensen", "givenName": "Pam",
                   "mail": "pjensen@example.com", "telephoneNumber": "082082082", "accountStatus": "active",
                   "effectiveAssignments": [], "effectiveRoles": []})
        );
        assert_eq!(
            keys(&reply.body),
            [
                "_id",
                "_rev",
                "userName",
                "sn",
                "givenName",
                "mail",
                "telephoneNumber",
                "accountStatus",
                "effectiveAssignments",
                "effectiveRoles"
            ]
        );
        let read = seed_admin(&server).get(&format!("/openidm/managed/user/{id}")).send();
        assert_eq!(read.body, reply.body);
    });
}

#[test]
fn the_undeclared_active_property_is_queryable() {
    on_each_backend(|builder| {
        let server = builder.start();
        create_seed_users(&server);
        let reply = seed_admin(&server)
            .get("/openidm/managed/user?_queryFilter=active+eq+%22true%22")
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.without_revisions()["result"], json!([scarter()]));
        let none = seed_admin(&server)
            .get("/openidm/managed/user?_queryFilter=active+eq+%22false%22")
            .send();
        assert_eq!(none.status, 200, "{}", none.text);
        assert_eq!(none.body["result"], json!([]));
    });
}
