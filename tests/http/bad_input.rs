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

/// One response read off a raw connection: status, lower-cased headers and body.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Sends `request` as is over a new connection and reads until the server closes it (failing
/// after 30 s); returns every response in order (bodies framed by `Content-Length`).
fn raw_exchange(server: &TestServer, request: &[u8]) -> Vec<RawResponse> {
    use std::io::{Read as _, Write as _};
    let address = server.base().trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    // The server may answer and close before reading everything: a failed write is fine.
    let _ = stream.write_all(request);
    let mut received = Vec::new();
    let mut chunk = [0; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => received.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset && !received.is_empty() => break,
            Err(error) => panic!("the connection was not closed cleanly: {error}; got {received:?}"),
        }
    }
    let mut responses = Vec::new();
    let mut rest = received.as_slice();
    while !rest.is_empty() {
        let text = String::from_utf8_lossy(rest).into_owned();
        let (head, _) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete response head in {text:?}"));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .map_or(0, |(_, value)| value.parse().unwrap());
        let start = head.len() + 4;
        let body = String::from_utf8_lossy(&rest[start..start + length]).into_owned();
        responses.push(RawResponse { status, headers, body });
        rest = &rest[start + length..];
    }
    responses
}

/// The only response on a connection.
fn only_response(mut responses: Vec<RawResponse>) -> RawResponse {
    assert_eq!(responses.len(), 1, "one response expected");
    responses.remove(0)
}

const BARE_LF: &str = "The request is malformed: the request line and header lines must end with CRLF";

/// Issue 22, point 5: a request line or header line ending in a bare LF is refused with IDM's
/// 400 body and the connection is closed; requests before it on the connection are answered.
#[test]
fn a_bare_line_feed_in_the_request_head_is_400_and_closes_the_connection() {
    let server = TestServer::start();
    let expected = json!({"code": 400, "reason": "Bad Request", "message": BARE_LF});
    for request in [
        "GET /openidm/info/ping HTTP/1.1\nHost: x\n\n",
        "GET /openidm/info/ping HTTP/1.1\nHost: x\r\n\r\n",
        "GET /openidm/info/ping HTTP/1.1\r\nHost: x\n\r\n",
        "GET /openidm/info/ping HTTP/1.1\r\nHost: x\r\n\n",
        "GET /openidm/info/ping HTTP/1.0\n\n",
    ] {
        let response = only_response(raw_exchange(&server, request.as_bytes()));
        assert_eq!(response.status, 400, "{request:?}: {}", response.body);
        assert_eq!(response.json(), expected, "{request:?}");
        assert_eq!(response.header("content-type"), Some("application/json;charset=UTF-8"));
        assert_eq!(response.header("connection"), Some("close"), "{request:?}");
    }

    // A good request before it is answered first, then the refusal, then the connection ends.
    let responses = raw_exchange(
        &server,
        b"GET /openidm/info/ping HTTP/1.1\r\nHost: x\r\n\r\nGET /openidm/info/ping HTTP/1.1\nHost: x\n\n",
    );
    let statuses: Vec<u16> = responses.iter().map(|response| response.status).collect();
    assert_eq!(statuses, [200, 400]);
    assert_eq!(responses[0].json()["state"], "ACTIVE_READY");
    assert_eq!(responses[1].json(), expected);
    assert_alive(&server);
}

/// CRLF heads keep working over a raw connection, and bodies may hold bare LFs: only the head
/// is judged.
#[test]
fn crlf_heads_work_and_bodies_may_contain_bare_line_feeds() {
    let server = TestServer::start();
    let response = only_response(raw_exchange(
        &server,
        b"GET /openidm/info/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ));
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["state"], "ACTIVE_READY");

    let name = unique("lf-body");
    let body = format!(
        "{{\n\"userName\": \"{name}\",\n\"givenName\": \"Test\",\n\"sn\": \"User\",\n\"mail\": \"{name}@example.com\"\n}}\n"
    );
    let request = format!(
        "POST /openidm/managed/user?_action=create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-OpenIDM-Username: openidm-admin\r\nX-OpenIDM-Password: openidm-admin\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let response = only_response(raw_exchange(&server, request.as_bytes()));
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.json()["userName"], name.as_str());
}

/// Issue 22, point 15a: over-long request lines and heads are refused with IDM's error body
/// (414 for the request line, 431 for the headers) instead of an empty one.
#[test]
fn over_long_request_lines_and_headers_get_an_idm_error_body() {
    let server = TestServer::start();
    let long_target = format!("/openidm/info/ping?x={}", "a".repeat(70_000));
    let long_header = format!("X-Long: {}", "b".repeat(100_000));
    let many_headers: String = (0..100).map(|index| format!("X-H{index}: v\r\n")).collect();
    for (request, status, reason) in [
        (
            format!("GET {long_target} HTTP/1.1\r\nHost: x\r\n\r\n"),
            414,
            "Request-URI Too Large",
        ),
        (
            format!("GET /openidm/info/ping HTTP/1.1\r\nHost: x\r\n{long_header}\r\n\r\n"),
            431,
            "Request Header Fields Too Large",
        ),
        (
            format!("GET /openidm/info/ping HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"),
            431,
            "Request Header Fields Too Large",
        ),
        // Still refused when the line never ends.
        (
            format!("GET /openidm/info/ping HTTP/1.1\r\nHost: x\r\n{long_header}"),
            431,
            "Request Header Fields Too Large",
        ),
    ] {
        let response = only_response(raw_exchange(&server, request.as_bytes()));
        let what = &request[..60];
        assert_eq!(response.status, status, "{what}: {}", response.body);
        let body = response.json();
        assert_eq!(body["code"], status, "{what}");
        assert_eq!(body["reason"], reason, "{what}");
        assert!(
            body["message"].as_str().is_some_and(|message| !message.is_empty()),
            "{what}: {body}"
        );
        assert_eq!(response.header("connection"), Some("close"), "{what}");
    }
    // Long but within the limits: served.
    let fine = format!(
        "GET /openidm/info/ping?x={} HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20_000),
        "b".repeat(60_000)
    );
    assert_eq!(only_response(raw_exchange(&server, fine.as_bytes())).status, 200);
    assert_alive(&server);
}

/// Issue 22, point 15b: a userName too long for the uniqueness check to look up (the check's
/// query holds at most 16384 bytes) is refused as the property it is — a policy failure,
/// MAX_LENGTH on `userName` — not as an over-long `_queryFilter`, on create, update and patch;
/// names up to the limit are still checked for uniqueness.
#[test]
fn an_over_long_user_name_is_a_policy_failure_not_a_query_error() {
    on_each_backend(|builder| {
        let server = builder.start();
        let too_long = json!({"result": false, "failedPolicyRequirements": [
            {"policyRequirements": [{"policyRequirement": "MAX_LENGTH", "params": {"maxLength": 2048}}],
             "property": "userName"}
        ]});
        let huge = "a".repeat(1_000_000);

        let created = server
            .admin()
            .post("/openidm/managed/user?_action=create", &user_body(&huge))
            .send();
        assert_eq!(created.assert_error(403), "Policy validation failed");
        assert_eq!(created.body["detail"], too_long);
        let put = server
            .admin()
            .put(&user_path("huge"), &user_body(&huge))
            .header("If-None-Match", "*")
            .send();
        assert_eq!(put.assert_error(403), "Policy validation failed");
        assert_eq!(put.body["detail"], too_long);
        assert_nothing_stored(&server);

        // Up to the limit a name is looked up: a second account cannot take it.
        let longest = format!("{}{}", unique("b"), "b".repeat(2048 - 10));
        assert_eq!(longest.chars().count(), 2048);
        let first = server
            .admin()
            .post("/openidm/managed/user?_action=create", &user_body(&longest))
            .send();
        assert_eq!(first.status, 201, "{}", first.text);
        let second = server
            .admin()
            .post(
                "/openidm/managed/user?_action=create",
                &user_body(&longest.to_uppercase()),
            )
            .send();
        assert_eq!(second.assert_error(403), "Policy validation failed");
        assert_eq!(
            second.body["detail"]["failedPolicyRequirements"],
            json!([{"policyRequirements": [{"policyRequirement": "VALID_USERNAME"}], "property": "userName"}])
        );

        // Growing a name past the limit by update or patch is refused the same way.
        let id = first.body["_id"].as_str().unwrap().to_owned();
        let longer = format!("{longest}b");
        let patched = server
            .admin()
            .patch(
                &user_path(&id),
                &json!([{"operation": "replace", "field": "/userName", "value": longer}]),
            )
            .send();
        assert_eq!(patched.assert_error(403), "Failed policy validation");
        assert_eq!(patched.body["detail"], too_long);
        let updated = server.admin().put(&user_path(&id), &user_body(&huge)).send();
        assert_eq!(updated.assert_error(403), "Policy validation failed");
        assert_eq!(updated.body["detail"], too_long);
        let read = server.admin().get(&user_path(&id)).send();
        assert_eq!(read.body["userName"], longest.as_str(), "nothing changed");
    });
}
