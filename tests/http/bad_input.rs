//! Refusals of malformed requests on managed objects (idm-api.md §1.3, §1.4, §1.7, §4.1): bad
//! JSON, wrong or missing content types, bodies of the wrong shape, invalid patches, oversized
//! bodies, bad ids and paths, unparsable filters and repeated parameters. Each refusal is an
//! IDM error body with the exact message (HTML-escaped), stores nothing, and leaves the server
//! answering.

use ferridm_tests::{TestServer, on_each_backend, unique};
use serde_json::{Value, json};

use crate::crud::{assert_alive, count, put_new, user_body, user_with};

const NOT_JSON: &str = "The request could not be processed because the provided content is not valid JSON";
const TRAILING: &str = "The request could not be processed because there is trailing data after the JSON content";
const NO_CONTENT: &str = "The request could not be processed because it did not contain any JSON content";
const NOT_OBJECT: &str = "The request could not be processed because the provided content is not a JSON object";
const NO_CONTENT_TYPE: &str =
    "The request could not be processed because the  content-type was not specified and is required";
const NOT_PATCH_ARRAY: &str =
    "The request could not be processed because the provided content is not a JSON array of patch operations";
const INVALID_PATCH: &str = "The request could not be processed because the provided content is not a valid JSON patch";

fn user_path(id: &str) -> String {
    format!("/openidm/managed/user/{id}")
}

/// Asserts that no managed user exists and the server still answers.
fn assert_nothing_stored(server: &TestServer) {
    assert_eq!(count(server, "true"), 0, "a refused request stored something");
    assert_alive(server);
}

/// A raw-bodied create (`POST ?_action=create`) with the given Content-Type.
fn post_raw(server: &TestServer, content_type: Option<&str>, body: &str) -> ferridm_tests::Reply {
    let mut call = server.admin().post_empty("/openidm/managed/user?_action=create");
    if let Some(content_type) = content_type {
        call = call.header("Content-Type", content_type);
    }
    call.body(body.to_owned()).send()
}

/// A raw-bodied `PUT` create with the given Content-Type.
fn put_raw(server: &TestServer, id: &str, content_type: Option<&str>, body: &str) -> ferridm_tests::Reply {
    let mut call = server
        .admin()
        .method("PUT", &user_path(id))
        .header("If-None-Match", "*");
    if let Some(content_type) = content_type {
        call = call.header("Content-Type", content_type);
    }
    call.body(body.to_owned()).send()
}

/// A raw-bodied `PATCH`.
fn patch_raw(server: &TestServer, id: &str, content_type: Option<&str>, body: &str) -> ferridm_tests::Reply {
    let mut call = server.admin().method("PATCH", &user_path(id));
    if let Some(content_type) = content_type {
        call = call.header("Content-Type", content_type);
    }
    call.body(body.to_owned()).send()
}

fn valid_user_text(name: &str) -> String {
    user_body(name).to_string()
}

#[test]
fn malformed_json_is_400_with_the_parser_detail() {
    let server = TestServer::start();
    let id = unique("broken");
    for body in [r#"{"userName": "#, "{oops}", r#"{"userName": "a",}"#, "nul"] {
        let reply = post_raw(&server, Some("application/json"), body);
        assert_eq!(reply.assert_error(400), NOT_JSON, "POST {body}");
        assert!(
            reply.body["detail"].is_string(),
            "detail carries the parser message: {}",
            reply.text
        );
        let reply = put_raw(&server, &id, Some("application/json"), body);
        assert_eq!(reply.assert_error(400), NOT_JSON, "PUT {body}");
    }
    assert_nothing_stored(&server);
}

#[test]
fn trailing_data_after_the_json_is_400() {
    let server = TestServer::start();
    let name = unique("trailing");
    for suffix in [" x", "{}", " []", "\n1"] {
        let body = format!("{}{suffix}", valid_user_text(&name));
        let reply = post_raw(&server, Some("application/json"), &body);
        assert_eq!(reply.assert_error(400), TRAILING, "{body:?}");
        let reply = put_raw(&server, &name, Some("application/json"), &body);
        assert_eq!(reply.assert_error(400), TRAILING, "{body:?}");
    }
    // Trailing whitespace is fine.
    let reply = post_raw(
        &server,
        Some("application/json"),
        &format!("{}  \n", valid_user_text(&name)),
    );
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(count(&server, "true"), 1);
    assert_alive(&server);
}

#[test]
fn a_create_body_must_be_a_json_object() {
    let server = TestServer::start();
    let id = unique("shape");
    for body in ["[1]", "\"text\"", "42", "true", "null", "[]"] {
        let reply = post_raw(&server, Some("application/json"), body);
        assert_eq!(reply.assert_error(400), NOT_OBJECT, "POST {body}");
        let reply = put_raw(&server, &id, Some("application/json"), body);
        assert_eq!(reply.assert_error(400), NOT_OBJECT, "PUT {body}");
    }
    assert_nothing_stored(&server);
}

#[test]
fn an_empty_create_body_is_400() {
    let server = TestServer::start();
    let id = unique("empty");
    for body in ["", "   ", "\r\n"] {
        let reply = post_raw(&server, Some("application/json"), body);
        assert_eq!(reply.assert_error(400), NO_CONTENT, "POST {body:?}");
        let reply = put_raw(&server, &id, Some("application/json"), body);
        assert_eq!(reply.assert_error(400), NO_CONTENT, "PUT {body:?}");
    }
    let reply = server
        .admin()
        .post_empty("/openidm/managed/user")
        .header("Content-Type", "application/json")
        .send();
    assert_eq!(
        reply.assert_error(400),
        NO_CONTENT,
        "POST without _action and without a body"
    );
    assert_nothing_stored(&server);
}

#[test]
fn a_create_update_or_patch_without_content_type_is_400() {
    let server = TestServer::start();
    let name = unique("noct");
    let reply = post_raw(&server, None, &valid_user_text(&name));
    assert_eq!(reply.assert_error(400), NO_CONTENT_TYPE, "POST create");
    let reply = put_raw(&server, &name, None, &valid_user_text(&name));
    assert_eq!(reply.assert_error(400), NO_CONTENT_TYPE, "PUT create");
    assert_nothing_stored(&server);

    let created = put_new(&server, &name, &user_body(&name));
    let update = server
        .admin()
        .method("PUT", &user_path(&name))
        .header("If-Match", "*")
        .body(user_with(&name, &json!({"description": "x"})).to_string())
        .send();
    assert_eq!(update.assert_error(400), NO_CONTENT_TYPE, "PUT update");
    let patch = patch_raw(
        &server,
        &name,
        None,
        r#"[{"operation": "replace", "field": "/description", "value": "x"}]"#,
    );
    assert_eq!(patch.assert_error(400), NO_CONTENT_TYPE, "PATCH");
    assert_eq!(server.admin().get(&user_path(&name)).send().body, created.body);
    assert_alive(&server);
}

#[test]
fn only_json_content_types_are_accepted() {
    let server = TestServer::start();
    let name = unique("ctype");
    for content_type in ["text/plain", "application/xml", "application/json;charset=iso-8859-1"] {
        let reply = post_raw(&server, Some(content_type), &valid_user_text(&name));
        assert_eq!(
            reply.assert_error(400),
            format!(
                "The request could not be processed because it specified the content-type &#39;{content_type}&#39; \
                 when only the content-type &#39;application/json&#39; and &#39;multipart/form-data&#39; are supported"
            ),
            "{content_type}"
        );
    }
    assert_nothing_stored(&server);

    for (n, content_type) in ["application/json; charset=utf-8", "APPLICATION/JSON;charset=UTF-8"]
        .into_iter()
        .enumerate()
    {
        let reply = post_raw(&server, Some(content_type), &valid_user_text(&format!("{name}{n}")));
        assert_eq!(reply.status, 201, "{content_type}: {}", reply.text);
    }
    assert_eq!(count(&server, "true"), 2);
}

#[test]
fn patch_bodies_must_be_arrays_of_valid_operations() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("badpatch");
        let created = put_new(&server, &id, &user_with(&id, &json!({"description": "keep"})));
        let cases: Vec<(Value, String)> = vec![
            (
                json!({"operation": "replace", "field": "/description", "value": "x"}),
                NOT_PATCH_ARRAY.to_owned(),
            ),
            (json!("replace"), NOT_PATCH_ARRAY.to_owned()),
            (json!(["replace"]), INVALID_PATCH.to_owned()),
            (
                json!([[{"operation": "remove", "field": "/description"}]]),
                INVALID_PATCH.to_owned(),
            ),
            (
                json!([{"operation": "frobnicate", "field": "/description", "value": "x"}]),
                format!("{INVALID_PATCH}: Invalid patch operation type frobnicate"),
            ),
            (
                json!([{"operation": "add", "field": "/description"}]),
                format!("{INVALID_PATCH}: No value field provided for &#39;add&#39; operation"),
            ),
            (
                json!([{"operation": "replace", "field": "/description", "value": null}]),
                format!("{INVALID_PATCH}: No value field provided for &#39;replace&#39; operation"),
            ),
            (
                json!([{"operation": "increment", "field": "/description"}]),
                format!("{INVALID_PATCH}: No value field provided for &#39;increment&#39; operation"),
            ),
            (
                json!([{"operation": "add", "field": "/description", "value": "x", "from": "/sn"}]),
                format!("{INVALID_PATCH}: &#39;add&#39; does not accept from field"),
            ),
            (
                json!([{"operation": "remove", "field": "/description", "from": "/sn"}]),
                format!("{INVALID_PATCH}: &#39;remove&#39; does not accept from field"),
            ),
            (
                json!([{"operation": "increment", "field": "/description", "value": "fourty-two"}]),
                format!("{INVALID_PATCH}: Non-numeric value provided for increment operation"),
            ),
            (
                json!([{"operation": "copy", "field": "/note"}]),
                format!("{INVALID_PATCH}: No from field provided for &#39;copy&#39; operation"),
            ),
            (
                json!([{"operation": "move", "field": "/note", "from": ""}]),
                format!("{INVALID_PATCH}: No from field provided for &#39;move&#39; operation"),
            ),
            (
                json!([{"operation": "copy", "field": "/note", "from": "/sn", "value": "x"}]),
                format!("{INVALID_PATCH}: &#39;copy&#39; does not accept value field"),
            ),
            (
                json!([{"operation": "move", "field": "/note", "from": "/sn", "value": "x"}]),
                format!("{INVALID_PATCH}: &#39;move&#39; does not accept value field"),
            ),
            // A valid operation before an invalid one does not get applied either.
            (
                json!([{"operation": "replace", "field": "/description", "value": "changed"}, {"operation": "nope", "field": "/x"}]),
                format!("{INVALID_PATCH}: Invalid patch operation type nope"),
            ),
        ];
        for (body, expected) in &cases {
            let reply = server.admin().patch(&user_path(&id), body).send();
            assert_eq!(&reply.assert_error(400), expected, "PATCH {body}");
            let reply = server
                .admin()
                .post(&format!("{}?_action=patch", user_path(&id)), body)
                .send();
            assert_eq!(&reply.assert_error(400), expected, "patch action {body}");
        }
        // Missing members: the reason is ours to word, the prefix is IDM's.
        for body in [
            json!([{"field": "/description", "value": "x"}]),
            json!([{"operation": "replace", "value": "x"}]),
        ] {
            let message = server.admin().patch(&user_path(&id), &body).send().assert_error(400);
            assert!(message.starts_with(&format!("{INVALID_PATCH}: ")), "{body}: {message}");
        }
        // A patch by query whose body is not an array.
        let reply = server
            .admin()
            .post(
                &format!("/openidm/managed/user?_action=patch&_queryFilter=userName+eq+%22{id}%22"),
                &json!({"operation": "replace", "field": "/description", "value": "x"}),
            )
            .send();
        assert_eq!(
            reply.assert_error(400),
            "The request could not be processed because the provided content is not a JSON array"
        );

        assert_eq!(
            server.admin().get(&user_path(&id)).send().body,
            created.body,
            "nothing was patched"
        );
        assert_alive(&server);
    });
}

#[test]
fn a_body_over_five_megabytes_is_413() {
    let server = TestServer::start();
    let name = unique("huge");
    let mut body = user_body(&name);
    body["description"] = json!("x".repeat(5 * 1024 * 1024 + 1));
    let reply = server
        .admin()
        .post("/openidm/managed/user?_action=create", &body)
        .send();
    assert_eq!(reply.status, 413, "{}", reply.text);
    reply.assert_error(413);
    assert_eq!(reply.body["reason"], "Request Entity Too Large");
    assert_nothing_stored(&server);

    // The same body sent chunked (no Content-Length) is cut off while it is read.
    let bytes = serde_json::to_vec(&body).expect("serializable");
    let reply = server
        .admin()
        .post_empty("/openidm/managed/user?_action=create")
        .header("Content-Type", "application/json")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(bytes)))
        .send();
    assert_eq!(reply.status, 413, "{}", reply.text);
    reply.assert_error(413);
    assert_nothing_stored(&server);

    // A body just under the cap is accepted.
    let mut body = user_body(&name);
    body["description"] = json!("x".repeat(4 * 1024 * 1024));
    let reply = server
        .admin()
        .post("/openidm/managed/user?_action=create", &body)
        .send();
    assert_eq!(reply.status, 201, "a 4 MB body is within the cap");
}

#[test]
fn ids_with_slashes_or_control_characters_are_400() {
    on_each_backend(|builder| {
        let server = builder.start();
        for id in ["a%2Fb", "a%07b", "a%0Ab", "%00"] {
            let reply = server
                .admin()
                .put(&user_path(id), &user_body(&unique("badid")))
                .header("If-None-Match", "*")
                .send();
            reply.assert_error(400);
            let reply = server.admin().put(&user_path(id), &user_body(&unique("badid"))).send();
            reply.assert_error(400);
        }
        for id in ["a/b", "a\u{7}b", "tab\there"] {
            let mut body = user_body(&unique("badid"));
            body["_id"] = json!(id);
            let reply = server
                .admin()
                .post("/openidm/managed/user?_action=create", &body)
                .send();
            reply.assert_error(400);
        }
        assert_nothing_stored(&server);
    });
}

#[test]
fn sub_object_paths_are_403() {
    let server = TestServer::start();
    let id = unique("parent");
    let created = put_new(&server, &id, &user_body(&id));
    let patch = json!([{"operation": "replace", "field": "/description", "value": "x"}]);
    let path = format!("{}/a/b", user_path(&id));
    let reply = server.admin().patch(&path, &patch).send();
    assert_eq!(reply.assert_error(403), "Sub-objects are not supported");
    let reply = server.admin().put("/openidm/managed/user/a/b", &user_body("ab")).send();
    assert_eq!(reply.assert_error(403), "Sub-objects are not supported");
    let reply = server.admin().patch("/openidm/managed/user/a/b", &patch).send();
    assert_eq!(reply.assert_error(403), "Sub-objects are not supported");
    assert_eq!(server.admin().get(&user_path(&id)).send().body, created.body);
    assert_eq!(count(&server, "true"), 1);
    assert_alive(&server);
}

#[test]
fn an_unparsable_query_filter_is_400_with_an_escaped_message() {
    let server = TestServer::start();
    let id = unique("filter");
    let created = put_new(&server, &id, &user_body(&id));
    let cases = [
        ("foo+eq+bar", "foo eq bar"),
        ("userName+eq+%22x%22+extra", "userName eq &quot;x&quot; extra"),
        ("not+userName+eq+%27x%27", "not userName eq &#39;x&#39;"),
        ("(userName+pr", "(userName pr"),
    ];
    for (raw, escaped) in cases {
        let expected = format!(
            "The value &#39;{escaped}&#39; for parameter &#39;_queryFilter&#39; could not be parsed as a valid query filter"
        );
        let reply = server
            .admin()
            .get(&format!("/openidm/managed/user?_queryFilter={raw}"))
            .send();
        assert_eq!(reply.assert_error(400), expected, "query {raw}");
        let reply = server
            .admin()
            .post(
                &format!("/openidm/managed/user?_action=patch&_queryFilter={raw}"),
                &json!([{"operation": "replace", "field": "/description", "value": "x"}]),
            )
            .send();
        assert_eq!(reply.assert_error(400), expected, "patch by query {raw}");
    }
    assert_eq!(server.admin().get(&user_path(&id)).send().body, created.body);
    assert_alive(&server);
}

#[test]
fn single_valued_parameters_may_not_repeat() {
    let server = TestServer::start();
    let name = unique("repeat");
    for query in ["_action=create&_action=create", "_action=create&_ACTION=create"] {
        let reply = server
            .admin()
            .post(&format!("/openidm/managed/user?{query}"), &user_body(&name))
            .send();
        assert_eq!(
            reply.assert_error(400),
            "Multiple values provided for the single-valued request parameter &#39;_action&#39;",
            "{query}"
        );
    }
    let reply = server
        .admin()
        .get("/openidm/managed/user?_queryFilter=true&_queryFilter=false")
        .send();
    assert_eq!(
        reply.assert_error(400),
        "Multiple values provided for the single-valued request parameter &#39;_queryFilter&#39;"
    );
    let reply = server
        .admin()
        .get("/openidm/managed/user?_queryFilter=true&_queryId=query-all-ids")
        .send();
    assert_eq!(
        reply.assert_error(400),
        "The parameters _queryId and _queryFilter are mutually exclusive"
    );
    assert_nothing_stored(&server);
}

/// Ids that can name no object are refused with a 400 on every operation, on both backends: a
/// NUL (PostgreSQL used to answer 500) or any control character, and `.` or `..` on create.
#[test]
fn ids_with_control_characters_or_dots_are_400() {
    on_each_backend(|builder| {
        let server = builder.start();
        let admin = server.admin();
        let path = "/openidm/managed/user/a%00b";
        for (method, reply) in [
            ("GET", admin.get(path).send()),
            ("DELETE", admin.delete(path).send()),
            (
                "PATCH",
                admin
                    .patch(path, &json!([{"operation": "add", "field": "/sn", "value": "x"}]))
                    .send(),
            ),
            ("PUT", admin.put(path, &user_body(&unique("nul"))).send()),
        ] {
            let message = reply.assert_error(400);
            assert!(message.contains("is not valid"), "{method}: {message}");
        }
        for id in [".", ".."] {
            let mut body = user_body(&unique("dot"));
            body["_id"] = json!(id);
            let reply = admin.post("/openidm/managed/user?_action=create", &body).send();
            let message = reply.assert_error(400);
            assert!(message.contains("is not valid"), "{id}: {message}");
        }
        let plain = admin.get("/openidm/managed/user/no-such-user").send();
        assert_eq!(plain.status, 404, "an ordinary unknown id is still 404");
    });
}

/// A body that stops arriving is not held forever: after `bodyTimeoutMillis` of silence the
/// client gets IDM's 408 body and the connection closes, and the server keeps serving.
#[test]
fn a_stalled_body_times_out_with_a_408() {
    use std::io::{Read as _, Write as _};
    let server = TestServer::builder()
        .conf_file(
            "ferridm.json",
            r#"{"passwordHashing": {"memoryKib": 256, "iterations": 1, "parallelism": 1}, "bodyTimeoutMillis": 300}"#,
        )
        .start();
    let address = server.base().trim_start_matches("http://").to_owned();
    let stalled: Vec<std::net::TcpStream> = (0..20)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
            write!(
                stream,
                "PUT /openidm/managed/user/stalled HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 100\r\nX-OpenIDM-Username: openidm-admin\r\nX-OpenIDM-Password: openidm-admin\r\n\r\n{{\"userName\""
            )
            .unwrap();
            stream
        })
        .collect();
    for mut stream in stalled {
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
        assert_eq!(body["code"], 408, "{text}");
        assert_eq!(body["reason"], "Request Time-out", "{text}");
    }
    assert_eq!(server.admin().get("/openidm/info/ping").send().status, 200);
    assert_eq!(
        server.admin().get("/openidm/managed/user/stalled").send().status,
        404,
        "nothing was written"
    );
}
