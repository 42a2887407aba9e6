//! Self-service registration over HTTP (idm-api §9, ferridm §2.2 and §6, idm-cases §J): the
//! shipped `idmUserDetails → selfRegistration → localAutoLogin` process as anonymous, every
//! protocol error, the sealed process token (tampering, expiry, another process, a process whose
//! configuration changed), processes appearing and disappearing with their files, policy
//! revalidation (missing details, weak passwords, a taken userName asked again), and a flow
//! started on one node and finished on another. Also home of the helpers `stages.rs` shares.

use std::path::Path;
use std::time::Duration;

use ferridm_tests::{Actor, Reply, TestServer, on_postgres, unique};
use serde_json::{Value, json};

/// A password every shipped policy accepts (for users made by [`new_user`]).
pub const PASSWORD: &str = "Regist3rMe";
/// How long a test waits for a configuration change to be served.
pub const RELOAD: Duration = Duration::from_secs(15);
/// The login action.
pub const LOGIN: &str = "/openidm/authentication?_action=login";

/// `POST /openidm/selfservice/<process>?_action=submitRequirements` with `body`.
pub fn submit(actor: &Actor<'_>, process: &str, body: &Value) -> Reply {
    actor
        .post(
            &format!("/openidm/selfservice/{process}?_action=submitRequirements"),
            body,
        )
        .send()
}

/// `GET /openidm/selfservice/<process>`.
pub fn start(actor: &Actor<'_>, process: &str) -> Reply {
    actor.get(&format!("/openidm/selfservice/{process}")).send()
}

/// A registration `user` that satisfies the shipped schema and policies.
pub fn new_user(user_name: &str) -> Value {
    json!({
        "userName": user_name,
        "givenName": "Reggie",
        "sn": "Strar",
        "mail": format!("{user_name}@example.com"),
        "password": PASSWORD,
    })
}

/// `value` without the key `key` (a JSON object).
pub fn without(value: &Value, key: &str) -> Value {
    let mut copy = value.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove(key);
    }
    copy
}

/// Asserts a "more requirements" response of `stage` with `tag` and returns its token.
pub fn assert_asks(reply: &Reply, stage: &str, tag: &str) -> String {
    assert_eq!(reply.status, 200, "expected requirements from {stage}: {}", reply.text);
    assert_eq!(reply.body["type"], json!(stage), "{}", reply.text);
    assert_eq!(reply.body["tag"], json!(tag), "{}", reply.text);
    assert!(
        reply.body["requirements"].is_object(),
        "no requirements: {}",
        reply.text
    );
    assert!(reply.body.get("status").is_none(), "not the end yet: {}", reply.text);
    let token = reply.body["token"]
        .as_str()
        .unwrap_or_else(|| panic!("requirements without a token: {}", reply.text));
    assert!(!token.is_empty(), "empty token: {}", reply.text);
    token.to_owned()
}

/// Asserts the completion response of a process whose last stage is `stage`; returns `additions`.
pub fn assert_end(reply: &Reply, stage: &str) -> Value {
    assert_eq!(reply.status, 200, "expected the end of the process: {}", reply.text);
    let mut keys: Vec<&str> = reply
        .body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {}", reply.text))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["additions", "status", "tag", "type"], "{}", reply.text);
    assert_eq!(reply.body["type"], json!(stage), "{}", reply.text);
    assert_eq!(reply.body["tag"], json!("end"), "{}", reply.text);
    assert_eq!(reply.body["status"], json!({"success": true}), "{}", reply.text);
    assert!(reply.body["additions"].is_object(), "{}", reply.text);
    reply.body["additions"].clone()
}

/// Asserts a 400 with exactly `message`.
pub fn assert_bad_request(reply: &Reply, message: &str) {
    assert_eq!(reply.assert_error(400), message, "{}", reply.text);
}

/// The managed users named `user_name`, as the admin reads them (with `_meta`).
pub fn users_named(server: &TestServer, user_name: &str) -> Vec<Value> {
    let reply = server
        .admin()
        .get(&format!(
            "/openidm/managed/user?_queryFilter=userName+eq+%22{user_name}%22&_fields=_id"
        ))
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result: {}", reply.text))
        .iter()
        .map(|found| {
            let id = found["_id"].as_str().unwrap_or_default();
            read_user(server, id, "*,_meta")
        })
        .collect()
}

/// The one managed user named `user_name` (fails when there is none or more than one).
pub fn the_user(server: &TestServer, user_name: &str) -> Value {
    let mut found = users_named(server, user_name);
    assert_eq!(found.len(), 1, "expected one user {user_name}: {found:?}");
    found.remove(0)
}

/// Reads `managed/user/<id>` as the admin with `_fields=<fields>`.
pub fn read_user(server: &TestServer, id: &str, fields: &str) -> Value {
    let reply = server
        .admin()
        .get(&format!("/openidm/managed/user/{id}?_fields={fields}"))
        .send();
    assert_eq!(reply.status, 200, "reading {id}: {}", reply.text);
    reply.body
}

/// How many managed users exist.
pub fn user_count(server: &TestServer) -> usize {
    let reply = server
        .admin()
        .get("/openidm/managed/user?_queryFilter=true&_fields=_id")
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["result"].as_array().map_or(0, Vec::len)
}

/// Logs in with the IDM headers.
pub fn login(server: &TestServer, user_name: &str, password: &str) -> Reply {
    server.user(user_name, password).post_empty(LOGIN).send()
}

/// Asserts that `user_name` can log in with `password` as a managed user.
pub fn assert_can_log_in(server: &TestServer, user_name: &str, password: &str) -> Value {
    let reply = login(server, user_name, password);
    assert_eq!(reply.status, 200, "login of {user_name}: {}", reply.text);
    assert_eq!(reply.body["authenticationId"], json!(user_name), "{}", reply.text);
    assert_eq!(
        reply.body["authorization"]["component"],
        json!("managed/user"),
        "{}",
        reply.text
    );
    let roles = reply.body["authorization"]["roles"]
        .as_array()
        .unwrap_or_else(|| panic!("no roles: {}", reply.text));
    assert!(
        roles.contains(&json!("internal/role/openidm-authorized")),
        "{}",
        reply.text
    );
    reply.body
}

/// The names of the requirements `property` failed in a `failedPolicyRequirements` list.
pub fn failed_requirements(failures: &Value, property: &str) -> Vec<String> {
    failures
        .as_array()
        .unwrap_or_else(|| panic!("failedPolicyRequirements is not an array: {failures}"))
        .iter()
        .filter(|failure| failure["property"] == json!(property))
        .flat_map(|failure| failure["policyRequirements"].as_array().cloned().unwrap_or_default())
        .filter_map(|requirement| requirement["policyRequirement"].as_str().map(str::to_owned))
        .collect()
}

/// The properties named in a `failedPolicyRequirements` list (one entry per property and
/// failing policy), sorted and deduplicated.
pub fn failed_properties(failures: &Value) -> Vec<String> {
    let mut names: Vec<String> = failures
        .as_array()
        .unwrap_or_else(|| panic!("failedPolicyRequirements is not an array: {failures}"))
        .iter()
        .filter_map(|failure| failure["property"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A process file with these stages (and an optional token expiry).
pub fn process(stages: &Value) -> String {
    json!({"stageConfigs": stages}).to_string()
}

/// The shipped `idmUserDetails` stage config.
pub fn user_details() -> Value {
    json!({
        "name": "idmUserDetails",
        "identityEmailField": "mail",
        "socialRegistrationEnabled": false,
        "identityServiceUrl": "managed/user",
        "registrationProperties": ["userName", "givenName", "sn", "mail", "password"],
        "registrationPreferences": ["marketing", "updates"]
    })
}

/// The shipped `selfRegistration` stage config.
pub fn self_registration() -> Value {
    json!({"name": "selfRegistration", "identityServiceUrl": "managed/user"})
}

/// A scripted stage that needs nothing and publishes the whole process state as
/// `additions.state` (so tests can see what earlier stages kept).
pub fn probe() -> Value {
    json!({
        "name": "probe",
        "script": {
            "type": "text/rhai",
            "source": "fn requirements(context, config) { () }\n\
                       fn advance(context, config, input) {\n\
                           #{ complete: true, state: #{}, additions: #{ state: context.state } }\n\
                       }\n"
        }
    })
}

/// Writes a file atomically (written beside the conf directory, then renamed into place), so a
/// reload never sees half a file.
pub fn write_atomically(server: &TestServer, path: &Path, contents: &str) {
    let staging = server.project().join(format!(".staging-{}", unique("file")));
    std::fs::write(&staging, contents).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

/// Decodes base64 in either alphabet (standard or URL-safe), padding optional.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(((bits >> count) & 0xff) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

/// Asserts that a token reveals none of `secrets`, neither as text nor once base64-decoded.
pub fn assert_opaque(token: &str, secrets: &[&str]) {
    let decoded = base64_decode(token).unwrap_or_default();
    for secret in secrets {
        assert!(!token.contains(secret), "the token shows {secret:?} in clear: {token}");
        assert!(
            !decoded.windows(secret.len()).any(|window| window == secret.as_bytes()),
            "the token carries {secret:?} unencrypted"
        );
    }
}

/// The token with one character in the middle changed.
fn tamper(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// The shipped `conf/<name>.json`, parsed.
pub fn shipped_conf(name: &str) -> Value {
    let path = ferridm_tests::workspace_root()
        .join("conf")
        .join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Submits an incomplete user (no `sn`) on the shipped process and returns the token.
fn incomplete_registration(server: &TestServer, user_name: &str) -> String {
    let reply = submit(
        &server.anonymous(),
        "registration",
        &json!({"input": {"user": without(&new_user(user_name), "sn")}}),
    );
    let token = assert_asks(&reply, "idmUserDetails", "initial");
    assert_eq!(
        failed_requirements(&reply.body["requirements"]["failedPolicyRequirements"], "sn"),
        ["REQUIRED"],
        "{}",
        reply.text
    );
    token
}

// ---------------------------------------------------------------------------------------------
// The shipped process
// ---------------------------------------------------------------------------------------------

/// Fact 290 and §9.5.2: GET gives the first stage's requirements, `_id` "1", no token.
#[test]
fn get_starts_the_shipped_process_with_the_user_details_requirements() {
    let server = TestServer::start();
    let reply = start(&server.anonymous(), "registration");
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut keys: Vec<&str> = reply.body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["_id", "_rev", "requirements", "tag", "type"], "{}", reply.text);
    assert_eq!(reply.body["_id"], json!("1"));
    assert_eq!(reply.body["type"], json!("idmUserDetails"));
    assert_eq!(reply.body["tag"], json!("initial"));
    let rev = reply.body["_rev"].as_str().unwrap_or_default().to_owned();
    assert!(
        !rev.is_empty() && rev.bytes().all(|b| b.is_ascii_digit()),
        "_rev is an integer string: {rev:?}"
    );
    let requirements = &reply.body["requirements"];
    assert_eq!(
        requirements["$schema"],
        json!("http://json-schema.org/draft-04/schema#")
    );
    assert_eq!(requirements["description"], json!("New user details"));
    assert_eq!(requirements["type"], json!("object"));
    assert_eq!(
        requirements["properties"],
        json!({"user": {"description": "User Object", "type": "object", "default": {}}})
    );
    assert_eq!(requirements["socialRegistrationEnabled"], json!(false));
    assert_eq!(
        requirements.get("registrationForm"),
        Some(&Value::Null),
        "{requirements}"
    );
    assert_eq!(requirements["definitions"]["providers"]["type"], json!("array"));

    // registrationProperties: the schema's definitions, verbatim; required = the schema-required.
    let managed = shipped_conf("managed");
    let schema = &managed["objects"][0]["schema"];
    let properties = requirements["registrationProperties"]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no registrationProperties: {requirements}"));
    // The configured fields, in the configured order; the password travels in the same `user`
    // but is the UI's own (masked) field, not a listed one.
    let names: Vec<&str> = properties.keys().map(String::as_str).collect();
    assert_eq!(names, ["userName", "givenName", "sn", "mail"]);
    for name in names {
        assert_eq!(properties[name], schema["properties"][name], "{name} as in the schema");
    }
    let mut required: Vec<String> =
        serde_json::from_value(requirements["registrationProperties"]["required"].clone()).unwrap();
    required.sort();
    assert_eq!(required, ["givenName", "mail", "sn", "userName"]);
    assert_eq!(
        requirements["registrationPreferences"],
        json!({
            "marketing": {"description": "Send me special offers and services", "type": "boolean"},
            "updates": {"description": "Send me news and updates", "type": "boolean"}
        })
    );

    let again = start(&server.anonymous(), "registration");
    assert_eq!(again.body, reply.body, "the same requirements, the same _rev");
    assert_eq!(
        reply.header("etag"),
        Some(format!("\"{rev}\"").as_str()),
        "ETag follows _rev"
    );
}

/// The whole default flow as anonymous: one submit registers the user with the preferences,
/// `localAutoLogin` publishes a sealed `credentialJwt`, and the user can log in.
#[test]
fn anonymous_registers_through_the_shipped_flow_and_can_log_in() {
    let server = TestServer::start();
    let name = unique("reg");
    let mut user = new_user(&name);
    user["preferences"] = json!({"marketing": true, "updates": false});
    let reply = submit(&server.anonymous(), "registration", &json!({"input": {"user": user}}));
    let additions = assert_end(&reply, "localAutoLogin");
    let jwt = additions["credentialJwt"]
        .as_str()
        .unwrap_or_else(|| panic!("no credentialJwt: {}", reply.text));
    assert!(!jwt.is_empty());
    assert_opaque(jwt, &[PASSWORD]);
    assert!(additions.get("oauthLogin").is_none(), "{}", reply.text);

    let created = the_user(&server, &name);
    assert_eq!(created["givenName"], json!("Reggie"));
    assert_eq!(created["sn"], json!("Strar"));
    assert_eq!(created["mail"], json!(format!("{name}@example.com")));
    assert_eq!(created["preferences"], json!({"marketing": true, "updates": false}));
    assert_eq!(created["accountStatus"], json!("active"));
    assert!(
        created.get("password").is_none(),
        "the password is never returned: {created}"
    );
    assert!(created["_meta"]["createDate"].is_string(), "{created}");

    let session = assert_can_log_in(&server, &name, PASSWORD);
    assert_eq!(session["authorization"]["id"], created["_id"]);
    assert_eq!(login(&server, &name, "Wr0ngPassword").status, 401);
}

/// §9.5.10: the `credentialJwt` from `localAutoLogin` logs the new user in as
/// `X-OpenIDM-Jwt` on the login action; a forged one does not.
#[test]
fn the_auto_login_credential_logs_the_new_user_in() {
    let server = TestServer::start();
    let name = unique("auto");
    let reply = submit(
        &server.anonymous(),
        "registration",
        &json!({"input": {"user": new_user(&name)}}),
    );
    let additions = assert_end(&reply, "localAutoLogin");
    let jwt = additions["credentialJwt"].as_str().unwrap().to_owned();

    let logged_in = server
        .nobody()
        .with("X-OpenIDM-Jwt", &jwt)
        .with("X-OpenIDM-NoSession", "false")
        .with("X-Requested-With", "XMLHttpRequest")
        .post_empty(LOGIN)
        .send();
    assert_eq!(
        logged_in.status, 200,
        "login with the credentialJwt: {}",
        logged_in.text
    );
    assert_eq!(logged_in.body["authenticationId"], json!(name), "{}", logged_in.text);
    assert_eq!(
        logged_in.body["authorization"]["component"],
        json!("managed/user"),
        "{}",
        logged_in.text
    );

    let forged = server
        .nobody()
        .with("X-OpenIDM-Jwt", &tamper(&jwt))
        .with("X-Requested-With", "XMLHttpRequest")
        .post_empty(LOGIN)
        .send();
    assert_eq!(forged.status, 401, "a forged credentialJwt: {}", forged.text);
}

/// Fact 282: with `selfRegistration: false` in the UI configuration, anonymous registration is
/// refused (GET and submit) and nothing is created.
#[test]
fn registration_is_closed_to_anonymous_when_self_registration_is_off() {
    let server = TestServer::builder()
        .edit(|project| {
            let path = project.join("conf").join("ui-configuration.json");
            let mut ui: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            ui["configuration"]["selfRegistration"] = json!(false);
            std::fs::write(&path, ui.to_string()).unwrap();
        })
        .start();
    start(&server.anonymous(), "registration").assert_error(403);
    let name = unique("closed");
    submit(
        &server.anonymous(),
        "registration",
        &json!({"input": {"user": new_user(&name)}}),
    )
    .assert_error(403);
    assert_eq!(users_named(&server, &name).len(), 0);
    assert_eq!(
        start(&server.admin(), "registration").status,
        200,
        "the admin still may"
    );
}

// ---------------------------------------------------------------------------------------------
// Protocol errors
// ---------------------------------------------------------------------------------------------

/// Fact 285: a submit without input is 400 "No input provided", token or not.
#[test]
fn a_submit_without_input_is_refused() {
    let server = TestServer::start();
    let anonymous = server.anonymous();
    assert_bad_request(&submit(&anonymous, "registration", &json!({})), "No input provided");
    assert_bad_request(
        &submit(&anonymous, "registration", &json!({"input": null})),
        "No input provided",
    );
    let token = incomplete_registration(&server, &unique("noinput"));
    assert_bad_request(
        &submit(&anonymous, "registration", &json!({"token": token})),
        "No input provided",
    );
    let empty = anonymous
        .post_empty("/openidm/selfservice/registration?_action=submitRequirements")
        .send();
    assert_bad_request(&empty, "No input provided");
    assert_eq!(user_count(&server), 0);
}

/// Fact 286 ([DEV]): a token that is not a token at all is a 400.
#[test]
fn an_undecodable_token_is_a_400() {
    let server = TestServer::start();
    for garbage in ["garbage", "%%% not base64 %%%"] {
        let reply = submit(
            &server.anonymous(),
            "registration",
            &json!({"input": {}, "token": garbage}),
        );
        assert_bad_request(&reply, "Error deconstructing snapshot token");
    }
}

/// Fact 289: an unknown action is 501 (for a caller the access rules let through; anonymous
/// may only `submitRequirements`, so the access check refuses it first); an unknown process is 404.
#[test]
fn unknown_actions_and_processes_are_refused() {
    let server = TestServer::start();
    let reply = server
        .admin()
        .post("/openidm/selfservice/registration?_action=foo", &json!({"input": {}}))
        .send();
    assert_eq!(reply.assert_error(501), "Unknown action foo");
    let anonymous = server
        .anonymous()
        .post("/openidm/selfservice/registration?_action=foo", &json!({"input": {}}))
        .send();
    anonymous.assert_error(403);
    start(&server.admin(), "nosuchprocess").assert_error(404);
    submit(&server.admin(), "nosuchprocess", &json!({"input": {}})).assert_error(404);
}

// ---------------------------------------------------------------------------------------------
// The process token
// ---------------------------------------------------------------------------------------------

/// The token carries the collected user (password included) sealed: it shows nothing in clear,
/// a changed byte is refused ("Invalid snapshot token") with nothing created, and the genuine
/// token finishes the registration with what the first submit collected.
#[test]
fn a_tampered_token_is_refused_and_nothing_is_created() {
    let server = TestServer::start();
    let name = unique("tamper");
    let token = incomplete_registration(&server, &name);
    assert_opaque(&token, &[PASSWORD, &name]);

    let finish = |token: &str| {
        submit(
            &server.anonymous(),
            "registration",
            &json!({"token": token, "input": {"user": {"sn": "Strar"}}}),
        )
    };
    assert_bad_request(&finish(&tamper(&token)), "Invalid snapshot token");
    assert_eq!(users_named(&server, &name).len(), 0, "nothing created");

    assert_end(&finish(&token), "localAutoLogin");
    let created = the_user(&server, &name);
    assert_eq!(created["mail"], json!(format!("{name}@example.com")));
    assert_can_log_in(&server, &name, PASSWORD);
}

/// Fact 288: a token older than `tokenExpiry` seconds (a numeric string here) is refused with
/// "Snapshot token has expired"; before that it works.
#[test]
fn an_expired_token_is_refused() {
    let mut shipped = shipped_conf("selfservice-registration");
    shipped["snapshotToken"]["tokenExpiry"] = json!("2");
    let server = TestServer::builder()
        .conf_file("selfservice-registration.json", &shipped.to_string())
        .manual_clock()
        .start();
    let name = unique("expire");
    let token = incomplete_registration(&server, &name);
    let resubmit = |token: &str| {
        submit(
            &server.anonymous(),
            "registration",
            &json!({"token": token, "input": {}}),
        )
    };
    // Each answer carries the flow's next token (a token works once).
    let next = assert_asks(&resubmit(&token), "idmUserDetails", "initial");
    server.advance_clock(Duration::from_secs(1));
    let last = assert_asks(&resubmit(&next), "idmUserDetails", "initial");
    server.advance_clock(Duration::from_secs(2));
    assert_bad_request(&resubmit(&last), "Snapshot token has expired");
    let late = submit(
        &server.anonymous(),
        "registration",
        &json!({"token": token, "input": {"user": {"sn": "Strar"}}}),
    );
    assert_bad_request(&late, "Snapshot token has expired");
    assert_eq!(users_named(&server, &name).len(), 0);
}

/// Fact 287: a token issued before the process's file changed is "Invalid token" (nothing
/// created), while a change to another file leaves it valid; a new flow runs on the new config.
#[test]
fn a_token_from_before_the_process_changed_is_invalid() {
    let server = TestServer::start();
    let name = unique("changed");
    let token = incomplete_registration(&server, &name);
    let anonymous = server.anonymous();

    // Another process appears: this process's tokens are unaffected.
    write_atomically(
        &server,
        &server.conf().join("selfservice-other.json"),
        &process(&json!([{"name": "termsAndConditions"}])),
    );
    server.wait_until(RELOAD, "selfservice/other to appear", || {
        start(&server.admin(), "other").status == 200
    });
    let still = submit(&anonymous, "registration", &json!({"token": token, "input": {}}));
    assert_asks(&still, "idmUserDetails", "initial");

    // The process itself changes.
    let mut changed = shipped_conf("selfservice-registration");
    changed["stageConfigs"][0]["registrationPreferences"] = json!(["marketing"]);
    write_atomically(
        &server,
        &server.conf().join("selfservice-registration.json"),
        &changed.to_string(),
    );
    server.wait_until(RELOAD, "the changed registration process", || {
        let reply = start(&anonymous, "registration");
        reply.status == 200
            && reply.body["requirements"]["registrationPreferences"]
                .get("updates")
                .is_none()
    });
    let stale = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"user": {"sn": "Strar"}}}),
    );
    assert_bad_request(&stale, "Invalid token");
    assert_eq!(users_named(&server, &name).len(), 0, "nothing created");

    let fresh = submit(&anonymous, "registration", &json!({"input": {"user": new_user(&name)}}));
    assert_end(&fresh, "localAutoLogin");
    assert_eq!(users_named(&server, &name).len(), 1);
}

/// A token of one process is "Invalid token" on another, even with the same stages.
#[test]
fn a_token_of_another_process_is_invalid() {
    let shipped = shipped_conf("selfservice-registration").to_string();
    let server = TestServer::builder()
        .conf_file("selfservice-twin.json", &shipped)
        .start();
    let name = unique("twin");
    let reply = submit(
        &server.admin(),
        "twin",
        &json!({"input": {"user": without(&new_user(&name), "sn")}}),
    );
    let token = assert_asks(&reply, "idmUserDetails", "initial");
    let crossed = submit(
        &server.anonymous(),
        "registration",
        &json!({"token": token, "input": {"user": {"sn": "Strar"}}}),
    );
    assert_bad_request(&crossed, "Invalid token");
    assert_eq!(users_named(&server, &name).len(), 0);
}

// ---------------------------------------------------------------------------------------------
// Hot reload of processes
// ---------------------------------------------------------------------------------------------

/// Processes appear and disappear with their `conf/selfservice-<name>.json` files, and only the
/// documented ones are open to anonymous.
#[test]
fn processes_appear_and_disappear_with_their_files() {
    let server = TestServer::start();
    let admin = server.admin();
    start(&admin, "extra").assert_error(404);
    let path = server.conf().join("selfservice-extra.json");
    write_atomically(
        &server,
        &path,
        &process(&json!([{"name": "termsAndConditions"}, probe()])),
    );
    server.wait_until(RELOAD, "selfservice/extra to appear", || {
        start(&admin, "extra").status == 200
    });
    let reply = start(&admin, "extra");
    assert_eq!(reply.body["type"], json!("termsAndConditions"), "{}", reply.text);
    assert_eq!(reply.body["_id"], json!("1"));
    start(&server.anonymous(), "extra").assert_error(403);
    let ended = submit(&admin, "extra", &json!({"input": {"accept": "true"}}));
    assert_end(&ended, "probe");

    std::fs::remove_file(&path).unwrap();
    server.wait_until(RELOAD, "selfservice/extra to disappear", || {
        start(&admin, "extra").status == 404
    });
    submit(&admin, "extra", &json!({"input": {"accept": "true"}})).assert_error(404);
    assert_eq!(
        start(&server.anonymous(), "registration").status,
        200,
        "others keep serving"
    );
}

// ---------------------------------------------------------------------------------------------
// Policy revalidation in idmUserDetails
// ---------------------------------------------------------------------------------------------

/// Fact 293: a submit without `user` gets the same stage's requirements again, with a token
/// that continues the flow.
#[test]
fn a_submit_without_a_user_asks_again() {
    let server = TestServer::start();
    let anonymous = server.anonymous();
    let initial = start(&anonymous, "registration");
    let reply = submit(&anonymous, "registration", &json!({"input": {}}));
    let token = assert_asks(&reply, "idmUserDetails", "initial");
    assert_eq!(
        reply.body["requirements"], initial.body["requirements"],
        "the same requirements"
    );
    assert_eq!(user_count(&server), 0);
    let name = unique("later");
    let done = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"user": new_user(&name)}}),
    );
    assert_end(&done, "localAutoLogin");
    the_user(&server, &name);
}

/// Missing and invalid details are asked for again: `failedPolicyRequirements` says what failed,
/// `properties.user.default` holds what was collected (never the password); the next submit adds
/// the rest.
#[test]
fn missing_and_invalid_details_are_asked_again_with_what_was_collected() {
    let server = TestServer::start();
    let anonymous = server.anonymous();
    let name = unique("fix");
    let mut user = without(&new_user(&name), "sn");
    user["mail"] = json!("not-an-email");
    let reply = submit(&anonymous, "registration", &json!({"input": {"user": user}}));
    let token = assert_asks(&reply, "idmUserDetails", "initial");
    let requirements = &reply.body["requirements"];
    let failures = &requirements["failedPolicyRequirements"];
    assert_eq!(failed_properties(failures), ["mail", "sn"], "{failures}");
    assert_eq!(failed_requirements(failures, "sn"), ["REQUIRED"]);
    assert_eq!(failed_requirements(failures, "mail"), ["VALID_EMAIL_ADDRESS_FORMAT"]);
    assert_eq!(
        requirements["properties"]["user"]["default"],
        json!({"userName": name, "givenName": "Reggie", "mail": "not-an-email"}),
        "collected, without the password"
    );
    assert!(
        !reply.text.contains(PASSWORD),
        "the password is never echoed: {}",
        reply.text
    );
    assert_eq!(requirements["description"], json!("New user details"));
    assert!(requirements["registrationProperties"].is_object());
    assert_eq!(users_named(&server, &name).len(), 0);

    let fixed = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"user": {"sn": "Strar", "mail": format!("{name}@example.com")}}}),
    );
    assert_end(&fixed, "localAutoLogin");
    let created = the_user(&server, &name);
    assert_eq!(created["mail"], json!(format!("{name}@example.com")));
    assert_eq!(created["sn"], json!("Strar"));
    assert_can_log_in(&server, &name, PASSWORD);
}

/// Fact 292 as ferridm §6 settles it: a weak password fails the same policies as any create
/// (the same `failedPolicyRequirements` the admin's create gets with its 403), the stage asks
/// again, and no user is created.
#[test]
fn a_weak_password_is_asked_again_with_the_create_policies() {
    let server = TestServer::start();
    let name = unique("weak");
    let mut user = new_user(&name);
    user["password"] = json!("weak");

    let create = server
        .admin()
        .post("/openidm/managed/user?_action=create", &user)
        .send();
    assert_eq!(create.assert_error(403), "Policy validation failed");
    let create_failures = create.body["detail"]["failedPolicyRequirements"].clone();

    let reply = submit(&server.anonymous(), "registration", &json!({"input": {"user": user}}));
    assert_asks(&reply, "idmUserDetails", "initial");
    let failures = &reply.body["requirements"]["failedPolicyRequirements"];
    assert_eq!(failed_properties(failures), ["password"], "{failures}");
    let mut names = failed_requirements(failures, "password");
    names.sort();
    assert_eq!(
        names,
        ["AT_LEAST_X_CAPITAL_LETTERS", "AT_LEAST_X_NUMBERS", "MIN_LENGTH"],
        "{failures}"
    );
    assert_eq!(*failures, create_failures, "the same policies as any create");
    assert_eq!(
        reply.body["requirements"]["properties"]["user"]["default"],
        without(&user, "password")
    );
    assert!(
        !reply.text.contains("\"weak\""),
        "the password is never echoed: {}",
        reply.text
    );
    assert_eq!(users_named(&server, &name).len(), 0, "no user created");
}

/// A taken userName (or an internal user's) is asked again with VALID_USERNAME; nothing is
/// created or changed; a new name in the next submit completes the registration.
#[test]
fn a_duplicate_user_name_is_asked_again_with_valid_username() {
    let server = TestServer::start();
    let anonymous = server.anonymous();
    let taken = unique("dup");
    let existing = server.create_user(&taken, Some("Exist1ngPass"));

    let mut user = new_user(&taken);
    user["mail"] = json!(format!("other-{taken}@example.com"));
    let reply = submit(&anonymous, "registration", &json!({"input": {"user": user}}));
    let token = assert_asks(&reply, "idmUserDetails", "initial");
    let failures = &reply.body["requirements"]["failedPolicyRequirements"];
    assert_eq!(failed_properties(failures), ["userName"], "{failures}");
    assert_eq!(failed_requirements(failures, "userName"), ["VALID_USERNAME"]);
    assert_eq!(
        reply.body["requirements"]["properties"]["user"]["default"],
        without(&user, "password")
    );
    let still = the_user(&server, &taken);
    assert_eq!(still["_id"], existing["_id"]);
    assert_eq!(
        still["mail"],
        json!(format!("{taken}@example.com")),
        "the existing user is untouched"
    );
    assert_eq!(user_count(&server), 1);

    let mut internal = new_user("openidm-admin");
    internal["mail"] = json!("admin-clash@example.com");
    let clash = submit(&anonymous, "registration", &json!({"input": {"user": internal}}));
    assert_asks(&clash, "idmUserDetails", "initial");
    assert!(
        failed_requirements(&clash.body["requirements"]["failedPolicyRequirements"], "userName")
            .contains(&"VALID_USERNAME".to_owned()),
        "{}",
        clash.text
    );

    let fresh = unique("fresh");
    let done = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"user": {"userName": fresh}}}),
    );
    assert_end(&done, "localAutoLogin");
    let created = the_user(&server, &fresh);
    assert_eq!(created["mail"], json!(format!("other-{taken}@example.com")));
    assert_eq!(user_count(&server), 2);
    assert_can_log_in(&server, &fresh, PASSWORD);
}

/// A registering user cannot give themselves what a user may not edit (roles, status): the new
/// account is an ordinary active user either way.
#[test]
fn registration_cannot_grant_what_users_may_not_edit() {
    let server = TestServer::start();
    let name = unique("sneaky");
    let mut user = new_user(&name);
    user["accountStatus"] = json!("admin-approved");
    user["authzRoles"] = json!([{"_ref": "internal/role/openidm-admin"}]);
    let reply = submit(&server.anonymous(), "registration", &json!({"input": {"user": user}}));
    if reply.status == 200 {
        assert_end(&reply, "localAutoLogin");
        let created = the_user(&server, &name);
        assert_eq!(created["accountStatus"], json!("active"), "{created}");
        let session = assert_can_log_in(&server, &name, PASSWORD);
        assert_eq!(
            session["authorization"]["roles"],
            json!(["internal/role/openidm-authorized"]),
            "{session}"
        );
    } else {
        reply.assert_error(403);
        assert_eq!(users_named(&server, &name).len(), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Scale-out
// ---------------------------------------------------------------------------------------------

/// Two nodes on one PostgreSQL database: a flow started on one finishes on the other (the
/// token is self-contained), and the registered user logs in on either.
#[test]
fn a_flow_started_on_one_node_finishes_on_another() {
    on_postgres(|builder| {
        let first = builder.start();
        let second = TestServer::builder().sharing(&first).start();
        let name = unique("nodes");
        let token = incomplete_registration(&first, &name);

        assert_bad_request(
            &submit(
                &second.anonymous(),
                "registration",
                &json!({"token": tamper(&token), "input": {"user": {"sn": "Strar"}}}),
            ),
            "Invalid snapshot token",
        );
        let done = submit(
            &second.anonymous(),
            "registration",
            &json!({"token": token, "input": {"user": {"sn": "Strar"}}}),
        );
        let additions = assert_end(&done, "localAutoLogin");
        assert!(additions["credentialJwt"].is_string(), "{}", done.text);
        assert_eq!(the_user(&first, &name)["sn"], json!("Strar"));
        assert_can_log_in(&first, &name, PASSWORD);
        assert_can_log_in(&second, &name, PASSWORD);

        // And the other way round.
        let other = unique("nodes");
        let token = incomplete_registration(&second, &other);
        let done = submit(
            &first.anonymous(),
            "registration",
            &json!({"token": token, "input": {"user": {"sn": "Strar"}}}),
        );
        assert_end(&done, "localAutoLogin");
        assert_can_log_in(&second, &other, PASSWORD);
    });
}

/// A userName with "/" fails the shipped `cannot-contain-characters` policy (spec §6.4) — on
/// an administrator's create, on `validateObject` and in self-registration — instead of the
/// uniqueness check reading a path built from it.
#[test]
fn a_user_name_with_a_slash_is_a_policy_failure() {
    ferridm_tests::on_each_backend(|builder| {
        let server = builder.start();
        let name = format!("{}/b", unique("slash"));
        let expected = json!([{"policyRequirements": [{"policyRequirement": "CANNOT_CONTAIN_CHARACTERS",
        "params": {"forbiddenChars": "/"}}], "property": "userName"}]);

        let created = server
            .admin()
            .post("/openidm/managed/user?_action=create", &new_user(&name))
            .send();
        assert_eq!(created.assert_error(403), "Policy validation failed");
        assert_eq!(created.body["detail"]["failedPolicyRequirements"], expected);

        let validated = server
            .admin()
            .post(
                "/openidm/policy/managed/user/x?_action=validateObject",
                &new_user(&name),
            )
            .send();
        assert_eq!(validated.status, 200, "{}", validated.text);
        assert_eq!(
            validated.body,
            json!({"result": false, "failedPolicyRequirements": expected})
        );

        let registered = submit(
            &server.anonymous(),
            "registration",
            &json!({"input": {"user": new_user(&name)}}),
        );
        assert_asks(&registered, "idmUserDetails", "initial");
        assert_eq!(
            registered.body["requirements"]["failedPolicyRequirements"], expected,
            "{}",
            registered.text
        );
        assert_eq!(users_named(&server, &name).len(), 0);
    });
}
