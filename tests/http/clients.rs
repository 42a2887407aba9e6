//! What IDM's own clients (the End User UI, the JavaScript SDK) rely on, over HTTP: the session
//! cookie taking precedence over the anonymous headers (idm-api §7.1), logging in with the
//! `credentialJwt` a registration hands back (§9.5.10) as `X-OpenIDM-Jwt`, trailing slashes and
//! `charset` parameters, PATCH `add` on a scalar, the endpoints the UI reads (object schema,
//! privileges, UI configuration, features, dashboard, providers, KBA questions, consent,
//! notifications, the registration policy), the default registration ending logged in, serving a
//! single-page app with `--ui`, and a headless-browser run of a small app through all of it
//! (and on through a password reset by mail).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferridm_tests::smtp::SmtpServer;
use ferridm_tests::{Actor, Reply, ServerBuilder, TestServer, on_each_backend, unique, workspace_root};
use serde_json::{Value, json};

/// The password of users made here (satisfies the shipped password policy).
const PASSWORD: &str = "Cl1entsPass";
/// The login action.
const LOGIN: &str = "/openidm/authentication?_action=login";
/// The full-access role of end users.
const AUTHORIZED: &str = "internal/role/openidm-authorized";
/// How long a configuration change may take to be served.
const RELOAD: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A managed user made for a test (password [`PASSWORD`]).
struct Member {
    id: String,
    name: String,
}

impl Member {
    fn path(&self) -> String {
        format!("/openidm/managed/user/{}", self.id)
    }

    fn actor<'a>(&self, server: &'a TestServer) -> Actor<'a> {
        server.user(&self.name, PASSWORD)
    }
}

fn member(server: &TestServer) -> Member {
    let name = unique("cl");
    let created = server.create_user(&name, Some(PASSWORD));
    Member {
        id: created["_id"].as_str().expect("created user without _id").to_owned(),
        name,
    }
}

/// The `session-jwt` a credential login of `member` sets.
fn session_of(server: &TestServer, member: &Member) -> String {
    let reply = member
        .actor(server)
        .with("X-OpenIDM-NoSession", "false")
        .post_empty(LOGIN)
        .send();
    assert_eq!(reply.status, 200, "login of {}: {}", member.name, reply.text);
    fresh_cookie(&reply)
}

/// The non-empty `session-jwt` value `reply` sets (fails when there is none).
fn fresh_cookie(reply: &Reply) -> String {
    reply
        .session_cookie()
        .filter(|token| !token.is_empty())
        .unwrap_or_else(|| panic!("no session-jwt cookie was set; headers: {:?}", reply.headers))
}

/// Asserts that `reply` set no (non-empty) session cookie.
fn assert_no_session(reply: &Reply, what: &str) {
    assert_eq!(
        reply.session_cookie().filter(|token| !token.is_empty()),
        None,
        "{what} set a session cookie"
    );
}

/// The `Cookie` header carrying a session.
fn cookie_header(token: &str) -> String {
    format!("session-jwt={token}")
}

/// Someone sending only the session cookie.
fn by_cookie<'a>(server: &'a TestServer, token: &str) -> Actor<'a> {
    server.nobody().with("Cookie", &cookie_header(token))
}

/// A registration `user` the shipped schema and policies accept.
fn registrant(user_name: &str) -> Value {
    json!({
        "userName": user_name,
        "givenName": "Regina",
        "sn": "Client",
        "mail": format!("{user_name}@example.com"),
        "password": "Sunfl0werSeed",
    })
}

/// Registers `user_name` through the shipped process as anonymous; returns the final response.
fn register(server: &TestServer, user_name: &str) -> Reply {
    server
        .anonymous()
        .post(
            "/openidm/selfservice/registration?_action=submitRequirements",
            &json!({"input": {"user": registrant(user_name)}}),
        )
        .send()
}

/// The `credentialJwt` of a registration that ended with `localAutoLogin`.
fn credential_jwt(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "registration: {}", reply.text);
    assert_eq!(reply.body["type"], json!("localAutoLogin"), "{}", reply.text);
    assert_eq!(reply.body["tag"], json!("end"), "{}", reply.text);
    assert_eq!(reply.body["status"], json!({"success": true}), "{}", reply.text);
    let jwt = reply.body["additions"]["credentialJwt"]
        .as_str()
        .unwrap_or_else(|| panic!("no additions.credentialJwt: {}", reply.text));
    assert!(!jwt.is_empty(), "an empty credentialJwt: {}", reply.text);
    jwt.to_owned()
}

/// The ids of the managed users named `user_name`.
fn ids_named(server: &TestServer, user_name: &str) -> Vec<String> {
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
        .map(|user| user["_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A user as the admin reads it.
fn read_user(server: &TestServer, id: &str) -> Value {
    let reply = server.admin().get(&format!("/openidm/managed/user/{id}")).send();
    assert_eq!(reply.status, 200, "reading {id}: {}", reply.text);
    reply.body
}

/// A conf file of the running server.
fn conf_json(server: &TestServer, name: &str) -> Value {
    let path = server.conf().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A builder whose `conf/<name>` JSON file is changed by `change` before start.
fn edit_conf(builder: ServerBuilder, name: &'static str, change: impl FnOnce(&mut Value) + 'static) -> ServerBuilder {
    builder.edit(move |project| {
        let path = project.join("conf").join(name);
        let mut value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        change(&mut value);
        std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    })
}

/// A builder with `configuration.<flag>` of `ui-configuration.json` set to `value`.
fn ui_flag(builder: ServerBuilder, flag: &'static str, value: bool) -> ServerBuilder {
    edit_conf(builder, "ui-configuration.json", move |ui| {
        ui["configuration"][flag] = Value::Bool(value);
    })
}

/// The keys of a JSON object, sorted.
fn sorted_keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort_unstable();
    keys
}

/// Asserts the query envelope and returns its `result`.
fn query_result(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.text);
    let result = reply.body["result"]
        .as_array()
        .unwrap_or_else(|| panic!("a query answer without result: {}", reply.text))
        .clone();
    assert_eq!(reply.body["resultCount"], json!(result.len()), "{}", reply.text);
    assert_eq!(reply.body["pagedResultsCookie"], Value::Null, "{}", reply.text);
    assert_eq!(reply.body["remainingPagedResults"], json!(-1), "{}", reply.text);
    result
}

/// `token` with one character in its middle changed.
fn tamper(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let middle = chars.len() / 2;
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// The names of the policy requirements in a `failedPolicyRequirements`/`properties` entry.
fn requirement_names(entry: &Value) -> Vec<String> {
    entry["policyRequirements"]
        .as_array()
        .unwrap_or_else(|| panic!("no policyRequirements: {entry}"))
        .iter()
        .map(|requirement| match requirement {
            Value::String(name) => name.clone(),
            other => other["policyRequirement"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// `(property, policyRequirement, params)` of every failure in a `failedPolicyRequirements`
/// (params `{}` when absent).
fn failed_requirements(failures: &Value) -> Vec<(String, String, Value)> {
    failures
        .as_array()
        .unwrap_or_else(|| panic!("failedPolicyRequirements is not an array: {failures}"))
        .iter()
        .flat_map(|failure| {
            let property = failure["property"].as_str().unwrap_or_default().to_owned();
            failure["policyRequirements"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |requirement| {
                    let params = requirement.get("params").cloned().unwrap_or_else(|| json!({}));
                    (
                        property.clone(),
                        requirement["policyRequirement"].as_str().unwrap_or_default().to_owned(),
                        params,
                    )
                })
        })
        .collect()
}

/// The entry of `property` in an array of `{name|property, …}` objects.
fn entry_for<'a>(entries: &'a Value, key: &str, property: &str) -> Option<&'a Value> {
    entries
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {entries}"))
        .iter()
        .find(|entry| entry[key] == json!(property))
}

// ---------------------------------------------------------------------------------------------
// 1. Session precedence
// ---------------------------------------------------------------------------------------------

/// IDM runs the session module before the credential modules: a valid cookie authenticates the
/// request even when it also carries `anonymous`/`anonymous` (as the End User UI's requests do).
#[test]
fn a_session_cookie_wins_over_anonymous_headers() {
    on_each_backend(|builder| {
        let server = builder.start();
        let member = member(&server);
        let token = session_of(&server, &member);
        let both = || server.anonymous().with("Cookie", &cookie_header(&token));

        let context = both().get("/openidm/info/login").send();
        assert_eq!(context.status, 200, "{}", context.text);
        assert_eq!(context.body["authenticationId"], json!(member.name), "{}", context.text);
        let authorization = &context.body["authorization"];
        assert_eq!(authorization["component"], json!("managed/user"), "{}", context.text);
        assert_eq!(authorization["id"], json!(member.id), "{}", context.text);
        assert_eq!(authorization["moduleId"], json!("MANAGED_USER"), "{}", context.text);
        assert!(
            authorization["roles"].as_array().unwrap().contains(&json!(AUTHORIZED)),
            "{}",
            context.text
        );

        // The user's own object: readable with the cookie, not as anonymous alone.
        let own = both().get(&member.path()).send();
        assert_eq!(own.status, 200, "{}", own.text);
        assert_eq!(own.body["userName"], json!(member.name), "{}", own.text);
        server.anonymous().get(&member.path()).send().assert_error(403);

        // The login action answers the session's context (not a credential login).
        let login = both().post_empty(LOGIN).send();
        assert_eq!(login.status, 200, "{}", login.text);
        assert_eq!(login.body["authenticationId"], json!(member.name), "{}", login.text);
        assert_eq!(login.body["authorization"]["authLogin"], json!(false), "{}", login.text);
        // Only the credential login counted (idm-api §7.3).
        let count = server
            .admin()
            .get(&format!("{}?_fields=_meta/loginCount", member.path()))
            .send();
        assert_eq!(count.body["_meta"]["loginCount"], json!(1), "{}", count.text);

        // A write as the session's user.
        let patched = both()
            .patch(
                &member.path(),
                &json!([{"operation": "replace", "field": "/givenName", "value": "Cookied"}]),
            )
            .send();
        assert_eq!(patched.status, 200, "{}", patched.text);
        assert_eq!(patched.body["givenName"], json!("Cookied"), "{}", patched.text);
        assert_eq!(read_user(&server, &member.id)["givenName"], json!("Cookied"));

        // A tampered cookie is ignored: the anonymous headers authenticate.
        let tampered = server
            .anonymous()
            .with("Cookie", &cookie_header(&tamper(&token)))
            .get("/openidm/info/login")
            .send();
        assert_eq!(tampered.status, 200, "{}", tampered.text);
        assert_eq!(
            tampered.body["authenticationId"],
            json!("anonymous"),
            "{}",
            tampered.text
        );
    });
}

/// The login action with neither credentials nor a cookie is 401 and opens no session.
#[test]
fn logging_in_with_neither_credentials_nor_a_cookie_is_401() {
    on_each_backend(|builder| {
        let server = builder.start();
        let member = member(&server);
        let token = session_of(&server, &member);
        let attempts = [
            ("nothing", server.nobody().post_empty(LOGIN).send()),
            (
                "X-Requested-With only",
                server
                    .nobody()
                    .with("X-Requested-With", "XMLHttpRequest")
                    .with("X-OpenIDM-NoSession", "false")
                    .post_empty(LOGIN)
                    .send(),
            ),
            (
                "an empty JSON body",
                server
                    .nobody()
                    .with("X-Requested-With", "XMLHttpRequest")
                    .post(LOGIN, &json!({}))
                    .send(),
            ),
            (
                "a tampered cookie",
                by_cookie(&server, &tamper(&token))
                    .with("X-Requested-With", "XMLHttpRequest")
                    .post_empty(LOGIN)
                    .send(),
            ),
            (
                "a user name without a password",
                server
                    .nobody()
                    .with("X-OpenIDM-Username", &member.name)
                    .post_empty(LOGIN)
                    .send(),
            ),
        ];
        for (what, reply) in attempts {
            assert_eq!(reply.assert_error(401), "Access Denied", "{what}: {}", reply.text);
            assert_eq!(reply.body["reason"], json!("Unauthorized"), "{what}: {}", reply.text);
            assert_no_session(&reply, what);
        }
    });
}

/// Only writes need `X-Requested-With` when the cookie alone authenticates: a cookie-only GET
/// is answered, a cookie-only PATCH without the header is refused (and changes nothing).
#[test]
fn a_cookie_only_read_needs_no_requested_with_header() {
    on_each_backend(|builder| {
        let server = builder.start();
        let member = member(&server);
        let token = session_of(&server, &member);

        let own = by_cookie(&server, &token).get(&member.path()).send();
        assert_eq!(own.status, 200, "{}", own.text);
        assert_eq!(own.body["userName"], json!(member.name), "{}", own.text);
        assert_eq!(own.body["_id"], json!(member.id), "{}", own.text);

        let context = by_cookie(&server, &token).get("/openidm/info/login").send();
        assert_eq!(context.status, 200, "{}", context.text);
        assert_eq!(context.body["authenticationId"], json!(member.name), "{}", context.text);

        let schema = by_cookie(&server, &token).get("/openidm/schema/managed/user").send();
        assert_eq!(schema.status, 200, "{}", schema.text);

        let change = json!([{"operation": "replace", "field": "/sn", "value": "Changed"}]);
        by_cookie(&server, &token)
            .patch(&member.path(), &change)
            .send()
            .assert_error(403);
        assert_eq!(read_user(&server, &member.id)["sn"], json!("User"));
        let allowed = by_cookie(&server, &token)
            .with("X-Requested-With", "XMLHttpRequest")
            .patch(&member.path(), &change)
            .send();
        assert_eq!(allowed.status, 200, "{}", allowed.text);
        assert_eq!(read_user(&server, &member.id)["sn"], json!("Changed"));
    });
}

// ---------------------------------------------------------------------------------------------
// 2. X-OpenIDM-Jwt
// ---------------------------------------------------------------------------------------------

/// The `credentialJwt` alone (no other header) logs the new user in and opens a session.
#[test]
fn the_credential_jwt_alone_logs_in_and_sets_the_session_cookie() {
    on_each_backend(|builder| {
        let server = builder.start();
        let name = unique("jwt");
        let jwt = credential_jwt(&register(&server, &name));
        let ids = ids_named(&server, &name);
        assert_eq!(ids.len(), 1, "registered users named {name}: {ids:?}");

        let reply = server.nobody().with("X-OpenIDM-Jwt", &jwt).post_empty(LOGIN).send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["_id"], json!("login"), "{}", reply.text);
        assert_eq!(reply.body["authenticationId"], json!(name), "{}", reply.text);
        let authorization = &reply.body["authorization"];
        assert_eq!(authorization["authLogin"], json!(true), "{}", reply.text);
        assert_eq!(authorization["component"], json!("managed/user"), "{}", reply.text);
        assert_eq!(authorization["id"], json!(ids[0]), "{}", reply.text);
        assert_eq!(authorization["moduleId"], json!("MANAGED_USER"), "{}", reply.text);
        let set_cookie = reply
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|cookie| cookie.starts_with("session-jwt="))
            .unwrap_or_else(|| panic!("no session-jwt cookie: {:?}", reply.headers))
            .to_owned();
        assert!(set_cookie.contains("Path=/"), "{set_cookie}");
        assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
        let token = fresh_cookie(&reply);

        let context = by_cookie(&server, &token).get("/openidm/info/login").send();
        assert_eq!(context.status, 200, "{}", context.text);
        assert_eq!(context.body["authenticationId"], json!(name), "{}", context.text);
        assert_eq!(context.body["authorization"]["id"], json!(ids[0]), "{}", context.text);
        let own = by_cookie(&server, &token)
            .get(&format!("/openidm/managed/user/{}", ids[0]))
            .send();
        assert_eq!(own.status, 200, "{}", own.text);
        assert_eq!(own.body["userName"], json!(name), "{}", own.text);
    });
}

/// A garbage, tampered or truncated `X-OpenIDM-Jwt` is 401 and opens no session; the genuine
/// token still works afterwards.
#[test]
fn a_garbage_or_tampered_credential_jwt_is_401() {
    on_each_backend(|builder| {
        let server = builder.start();
        let name = unique("jwt");
        let jwt = credential_jwt(&register(&server, &name));
        let bad = [
            ("garbage", "garbage".to_owned()),
            (
                "a JWT-looking string",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl".to_owned(),
            ),
            ("tampered", tamper(&jwt)),
            ("truncated", jwt[..jwt.len() - 6].to_owned()),
        ];
        for (what, token) in bad {
            let reply = server
                .nobody()
                .with("X-OpenIDM-Jwt", &token)
                .with("X-OpenIDM-NoSession", "false")
                .with("X-Requested-With", "XMLHttpRequest")
                .post_empty(LOGIN)
                .send();
            assert_eq!(reply.assert_error(401), "Access Denied", "{what}: {}", reply.text);
            assert_no_session(&reply, what);
        }
        let genuine = server.nobody().with("X-OpenIDM-Jwt", &jwt).post_empty(LOGIN).send();
        assert_eq!(genuine.status, 200, "{}", genuine.text);
        assert_eq!(genuine.body["authenticationId"], json!(name), "{}", genuine.text);
    });
}

// ---------------------------------------------------------------------------------------------
// 3. Paths, content types, PATCH add
// ---------------------------------------------------------------------------------------------

/// `…/registration/?_action=…` and `…/managed/user/<id>/?_action=…` address the same resources
/// as without the slash.
#[test]
fn a_trailing_slash_before_the_query_addresses_the_same_resource() {
    on_each_backend(|builder| {
        let server = builder.start();

        let started = server.anonymous().get("/openidm/selfservice/registration/").send();
        assert_eq!(started.status, 200, "{}", started.text);
        assert_eq!(started.body["type"], json!("idmUserDetails"), "{}", started.text);
        assert_eq!(started.body["tag"], json!("initial"), "{}", started.text);

        let name = unique("slash");
        let registered = server
            .anonymous()
            .post(
                "/openidm/selfservice/registration/?_action=submitRequirements",
                &json!({"input": {"user": registrant(&name)}}),
            )
            .send();
        credential_jwt(&registered);
        assert_eq!(ids_named(&server, &name).len(), 1, "the user was not registered");

        let member = member(&server);
        let patched = server
            .admin()
            .post(
                &format!("{}/?_action=patch", member.path()),
                &json!([{"operation": "replace", "field": "/sn", "value": "Slashed"}]),
            )
            .send();
        assert_eq!(patched.status, 200, "{}", patched.text);
        assert_eq!(patched.body["_id"], json!(member.id), "{}", patched.text);
        assert_eq!(patched.body["sn"], json!("Slashed"), "{}", patched.text);

        let plain = server.admin().get(&member.path()).send();
        let slashed = server.admin().get(&format!("{}/", member.path())).send();
        assert_eq!(plain.status, 200, "{}", plain.text);
        assert_eq!(slashed.status, 200, "{}", slashed.text);
        assert_eq!(slashed.body, plain.body);
        assert_eq!(plain.body["sn"], json!("Slashed"));

        let own = member
            .actor(&server)
            .post(
                &format!("{}/?_action=patch", member.path()),
                &json!([{"operation": "replace", "field": "/givenName", "value": "Own"}]),
            )
            .send();
        assert_eq!(own.status, 200, "{}", own.text);
        assert_eq!(own.body["givenName"], json!("Own"), "{}", own.text);

        let login = member
            .actor(&server)
            .post_empty("/openidm/authentication/?_action=login")
            .send();
        assert_eq!(login.status, 200, "{}", login.text);
        assert_eq!(login.body["authorization"]["authLogin"], json!(true), "{}", login.text);
    });
}

/// `Content-Type: application/json; charset=UTF-8` (as browsers and SDKs send it) is JSON.
#[test]
fn json_with_a_charset_parameter_is_accepted() {
    on_each_backend(|builder| {
        let server = builder.start();
        for content_type in ["application/json; charset=UTF-8", "application/json;charset=utf-8"] {
            let name = unique("cs");
            let created = server
                .admin()
                .post_empty("/openidm/managed/user?_action=create")
                .header("Content-Type", content_type)
                .body(
                    json!({"userName": name, "givenName": "Ch", "sn": "Arset", "mail": format!("{name}@example.com"),
                           "password": PASSWORD})
                    .to_string(),
                )
                .send();
            assert_eq!(created.status, 201, "{content_type}: {}", created.text);
            assert_eq!(created.body["userName"], json!(name), "{}", created.text);
            let id = created.body["_id"].as_str().unwrap().to_owned();

            let patched = server
                .admin()
                .method("PATCH", &format!("/openidm/managed/user/{id}"))
                .header("Content-Type", content_type)
                .body(json!([{"operation": "replace", "field": "/sn", "value": "Ütf"}]).to_string())
                .send();
            assert_eq!(patched.status, 200, "{content_type}: {}", patched.text);
            assert_eq!(patched.body["sn"], json!("Ütf"), "{}", patched.text);

            let registrant_name = unique("csr");
            let registered = server
                .anonymous()
                .post_empty("/openidm/selfservice/registration?_action=submitRequirements")
                .header("Content-Type", content_type)
                .body(json!({"input": {"user": registrant(&registrant_name)}}).to_string())
                .send();
            credential_jwt(&registered);

            let validated = server
                .anonymous()
                .post_empty("/openidm/policy/selfservice/registration?_action=validateObject")
                .header("Content-Type", content_type)
                .body(registrant(&unique("csv")).to_string())
                .send();
            assert_eq!(validated.status, 200, "{content_type}: {}", validated.text);
            assert_eq!(validated.body["result"], json!(true), "{}", validated.text);
        }
    });
}

/// PATCH `add` on a scalar that already has a value replaces it (no array, no error), for the
/// admin and for the user on their own object.
#[test]
fn patch_add_on_an_existing_scalar_replaces_it() {
    on_each_backend(|builder| {
        let server = builder.start();
        let member = member(&server);

        let by_admin = server
            .admin()
            .patch(
                &member.path(),
                &json!([{"operation": "add", "field": "/givenName", "value": "Added"}]),
            )
            .send();
        assert_eq!(by_admin.status, 200, "{}", by_admin.text);
        assert_eq!(by_admin.body["givenName"], json!("Added"), "{}", by_admin.text);

        let token = session_of(&server, &member);
        let by_user = by_cookie(&server, &token)
            .with("X-Requested-With", "XMLHttpRequest")
            .patch(
                &member.path(),
                &json!([
                    {"operation": "add", "field": "sn", "value": "Selfadded"},
                    {"operation": "add", "field": "/telephoneNumber", "value": "+1 555 0199"}
                ]),
            )
            .send();
        assert_eq!(by_user.status, 200, "{}", by_user.text);
        assert_eq!(by_user.body["sn"], json!("Selfadded"), "{}", by_user.text);
        assert_eq!(
            by_user.body["telephoneNumber"],
            json!("+1 555 0199"),
            "{}",
            by_user.text
        );

        let stored = read_user(&server, &member.id);
        assert_eq!(stored["givenName"], json!("Added"));
        assert_eq!(stored["sn"], json!("Selfadded"));
        assert_eq!(stored["telephoneNumber"], json!("+1 555 0199"));
        assert_eq!(stored["userName"], json!(member.name));
    });
}

// ---------------------------------------------------------------------------------------------
// 4. Endpoints the clients read
// ---------------------------------------------------------------------------------------------

/// `schema/managed/<type>` is the object schema of `managed.json`: `order`, `required`,
/// `properties` with each property's `type`, `title`, `viewable`, `userEditable` — including a
/// property added to the file; authorized users read it, anonymous cannot; unknown types 404.
#[test]
fn the_managed_object_schema_comes_from_managed_json() {
    on_each_backend(|builder| {
        let server = edit_conf(builder, "managed.json", |managed| {
            let schema = &mut managed["objects"][0]["schema"];
            schema["properties"]["nickname"] = json!({
                "title": "Nickname", "description": "What friends call you", "type": "string",
                "viewable": true, "userEditable": true, "searchable": false
            });
            schema["order"].as_array_mut().unwrap().push(json!("nickname"));
        })
        .start();
        let managed = conf_json(&server, "managed.json");
        let member = member(&server);

        for (type_name, index) in [("user", 0), ("role", 1)] {
            let declared = &managed["objects"][index]["schema"];
            let reply = member
                .actor(&server)
                .get(&format!("/openidm/schema/managed/{type_name}"))
                .send();
            assert_eq!(reply.status, 200, "{type_name}: {}", reply.text);
            let schema = &reply.body;
            assert!(schema["order"].is_array(), "{}", reply.text);
            assert_eq!(schema["order"], declared["order"], "{type_name} order");
            assert_eq!(schema["required"], declared["required"], "{type_name} required");
            assert_eq!(schema["title"], declared["title"], "{type_name} title");
            assert_eq!(schema["type"], json!("object"), "{type_name} type");
            assert_eq!(
                sorted_keys(&schema["properties"]),
                sorted_keys(&declared["properties"]),
                "{type_name} properties"
            );
            for (name, property) in declared["properties"].as_object().unwrap() {
                for key in ["type", "title", "description", "viewable", "userEditable"] {
                    assert_eq!(
                        schema["properties"][name].get(key),
                        property.get(key),
                        "{type_name}.{name}.{key}"
                    );
                }
            }
        }

        let user = member.actor(&server).get("/openidm/schema/managed/user").send().body;
        assert_eq!(user["order"].as_array().unwrap().last(), Some(&json!("nickname")));
        assert_eq!(user["order"][1], json!("userName"));
        assert_eq!(user["required"], json!(["userName", "givenName", "sn", "mail"]));
        assert_eq!(user["properties"]["nickname"]["title"], json!("Nickname"));
        assert_eq!(user["properties"]["givenName"]["title"], json!("First Name"));
        assert_eq!(user["properties"]["givenName"]["viewable"], json!(true));
        assert_eq!(user["properties"]["givenName"]["userEditable"], json!(true));
        assert_eq!(user["properties"]["password"]["viewable"], json!(false));
        assert_eq!(user["properties"]["accountStatus"]["userEditable"], json!(false));

        let admin = server.admin().get("/openidm/schema/managed/user").send();
        assert_eq!(admin.status, 200, "{}", admin.text);
        assert_eq!(admin.body["order"], user["order"]);

        member
            .actor(&server)
            .get("/openidm/schema/managed/nosuch")
            .send()
            .assert_error(404);
        server
            .admin()
            .get("/openidm/schema/managed/nosuch")
            .send()
            .assert_error(404);
        server
            .anonymous()
            .get("/openidm/schema/managed/user")
            .send()
            .assert_error(403);
        server
            .nobody()
            .get("/openidm/schema/managed/user")
            .send()
            .assert_error(401);
    });
}

/// `privilege?_action=listPrivileges` is `[]` (no delegated administration), for everyone the
/// UI asks for.
#[test]
fn list_privileges_is_an_empty_array() {
    on_each_backend(|builder| {
        let server = builder.start();
        let member = member(&server);
        let token = session_of(&server, &member);
        let path = "/openidm/privilege?_action=listPrivileges";
        let replies = [
            ("a user", member.actor(&server).post_empty(path).send()),
            (
                "a user's session",
                by_cookie(&server, &token)
                    .with("X-Requested-With", "XMLHttpRequest")
                    .post(path, &json!({}))
                    .send(),
            ),
            ("anonymous", server.anonymous().post_empty(path).send()),
            ("the admin", server.admin().post_empty(path).send()),
        ];
        for (who, reply) in replies {
            assert_eq!(reply.status, 200, "{who}: {}", reply.text);
            assert_eq!(reply.body, json!([]), "{who}: {}", reply.text);
        }
    });
}

/// `info/uiconfig` is `{"_id":"","configuration":{…ui-configuration.json…}}`, for anonymous.
#[test]
fn uiconfig_is_the_ui_configuration_for_anonymous() {
    on_each_backend(|builder| {
        let server = edit_conf(builder, "ui-configuration.json", |ui| {
            ui["configuration"]["lang"] = json!("fr");
            ui["configuration"]["platformSettings"] = json!({"adminOauthClient": "idm-admin-ui"});
        })
        .start();
        let file = conf_json(&server, "ui-configuration.json");
        for (who, actor) in [("anonymous", server.anonymous()), ("the admin", server.admin())] {
            let reply = actor.get("/openidm/info/uiconfig").send();
            assert_eq!(reply.status, 200, "{who}: {}", reply.text);
            assert_eq!(
                reply.body,
                json!({"_id": "", "configuration": file["configuration"]}),
                "{who}"
            );
        }
        let reply = server.anonymous().get("/openidm/info/uiconfig").send();
        assert_eq!(reply.body["configuration"]["lang"], json!("fr"));
        assert_eq!(reply.body["configuration"]["selfRegistration"], json!(true));
        assert_eq!(
            reply.body["configuration"]["platformSettings"],
            json!({"adminOauthClient": "idm-admin-ui"})
        );

        // A changed file is served once reloaded.
        let mut changed = file.clone();
        changed["configuration"]["lang"] = json!("de");
        changed["configuration"]["forgotUsername"] = json!(true);
        std::fs::write(
            server.conf().join("ui-configuration.json"),
            serde_json::to_string_pretty(&changed).unwrap(),
        )
        .unwrap();
        server.wait_until(RELOAD, "the changed ui-configuration.json", || {
            server.anonymous().get("/openidm/info/uiconfig").send().body["configuration"]["lang"] == json!("de")
        });
        let reply = server.anonymous().get("/openidm/info/uiconfig").send();
        assert_eq!(
            reply.body,
            json!({"_id": "", "configuration": changed["configuration"]})
        );
    });
}

/// The feature entries in a features answer, by name.
fn features(server: &TestServer) -> Vec<Value> {
    let reply = server
        .anonymous()
        .get("/openidm/info/features?_queryFilter=true")
        .send();
    let result = query_result(&reply);
    for feature in &result {
        assert_eq!(
            sorted_keys(feature),
            ["_id", "enabled", "endpoints", "name"],
            "{feature}"
        );
        assert_eq!(feature["_id"], feature["name"], "{feature}");
        assert!(feature["enabled"].is_boolean(), "{feature}");
        assert!(feature["endpoints"].is_array(), "{feature}");
    }
    result
}

fn feature(features: &[Value], name: &str) -> Value {
    features
        .iter()
        .find(|feature| feature["name"] == json!(name))
        .cloned()
        .unwrap_or_else(|| panic!("no feature {name} in {features:?}"))
}

/// `info/features?_queryFilter=true`: one `{_id,name,enabled,endpoints}` per feature, derived
/// from the loaded `selfservice-*.json` files (password reset and username retrieval also from
/// `ui-configuration.json`'s flags), following them when they come and go.
#[test]
fn features_follow_the_loaded_selfservice_files() {
    on_each_backend(|builder| {
        let server = builder.start();
        let shipped = features(&server);
        assert_eq!(
            feature(&shipped, "registration"),
            json!({"_id": "registration", "name": "registration", "enabled": true,
                   "endpoints": ["selfservice/registration"]})
        );
        assert_eq!(
            feature(&shipped, "passwordReset"),
            json!({"_id": "passwordReset", "name": "passwordReset", "enabled": true,
                   "endpoints": ["selfservice/reset"]})
        );
        assert_eq!(
            feature(&shipped, "retrieveUsername"),
            json!({"_id": "retrieveUsername", "name": "retrieveUsername", "enabled": true,
                   "endpoints": ["selfservice/username"]})
        );
        assert_eq!(
            feature(&shipped, "profile"),
            json!({"_id": "profile", "name": "profile", "enabled": true, "endpoints": ["selfservice/profile"]})
        );
        for disabled in shipped.iter().filter(|feature| feature["enabled"] == json!(false)) {
            assert_eq!(disabled["endpoints"], json!([]), "{disabled}");
        }

        std::fs::remove_file(server.conf().join("selfservice-reset.json")).unwrap();
        server.wait_until(RELOAD, "passwordReset to be disabled", || {
            feature(&features(&server), "passwordReset")
                == json!({"_id": "passwordReset", "name": "passwordReset", "enabled": false, "endpoints": []})
        });
        let ui_path = server.conf().join("ui-configuration.json");
        let mut ui: Value = serde_json::from_slice(&std::fs::read(&ui_path).unwrap()).unwrap();
        ui["configuration"]["forgotUsername"] = json!(false);
        std::fs::write(&ui_path, ui.to_string()).unwrap();
        server.wait_until(RELOAD, "retrieveUsername to follow forgotUsername", || {
            feature(&features(&server), "retrieveUsername")
                == json!({"_id": "retrieveUsername", "name": "retrieveUsername", "enabled": false, "endpoints": []})
        });
        assert_eq!(feature(&features(&server), "registration")["enabled"], json!(true));

        std::fs::remove_file(server.conf().join("selfservice-registration.json")).unwrap();
        server.wait_until(RELOAD, "registration to be disabled", || {
            feature(&features(&server), "registration")
                == json!({"_id": "registration", "name": "registration", "enabled": false, "endpoints": []})
        });
        let now = features(&server);
        assert_eq!(feature(&now, "passwordReset")["enabled"], json!(false));
        assert_eq!(feature(&now, "profile")["enabled"], json!(true));
        assert_eq!(now.len(), shipped.len(), "the same features are listed");
    });
}

/// A `conf/ui-dashboard.json` for the tests (the shape of IDM's).
const DASHBOARD: &str = r#"{
    "dashboard": {"widgets": [{"type": "Welcome", "size": "large"}, {"type": "MyAccount", "size": "small"}]},
    "adminDashboards": [{"name": "Quick Start", "isDefault": true, "widgets": [{"type": "quickStart", "size": "large"}]}]
}"#;

/// `config/ui/dashboard` is `conf/ui-dashboard.json`, for authorized users but not anonymous.
#[test]
fn the_ui_dashboard_is_for_authorized_users() {
    on_each_backend(|builder| {
        let server = builder.conf_file("ui-dashboard.json", DASHBOARD).start();
        let member = member(&server);
        let mut expected: Value = serde_json::from_str(DASHBOARD).unwrap();
        expected["_id"] = json!("ui/dashboard");

        let reply = member.actor(&server).get("/openidm/config/ui/dashboard").send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body, expected, "{}", reply.text);
        let token = session_of(&server, &member);
        let by_session = by_cookie(&server, &token).get("/openidm/config/ui/dashboard").send();
        assert_eq!(by_session.status, 200, "{}", by_session.text);
        assert_eq!(by_session.body, expected);

        server
            .anonymous()
            .get("/openidm/config/ui/dashboard")
            .send()
            .assert_error(403);
        server
            .nobody()
            .get("/openidm/config/ui/dashboard")
            .send()
            .assert_error(401);
        // An end user reads the dashboard, not the rest of the configuration.
        member
            .actor(&server)
            .get("/openidm/config/managed")
            .send()
            .assert_error(403);
    });
}

/// The shipped configuration carries a dashboard for the End User UI.
#[test]
fn the_shipped_conf_has_a_ui_dashboard() {
    on_each_backend(|builder| {
        let server = builder.start();
        let member = member(&server);
        let reply = member.actor(&server).get("/openidm/config/ui/dashboard").send();
        assert_eq!(
            reply.status, 200,
            "conf/ui-dashboard.json is not shipped: {}",
            reply.text
        );
        assert_eq!(reply.body["_id"], json!("ui/dashboard"), "{}", reply.text);
        // Only widgets ferridm serves: the Workflow widget would read `endpoint/getprocessesforuser`
        // and `endpoint/gettasksview`, which exist only with IDM's workflow engine (issue 19).
        assert_eq!(
            reply.body["dashboard"]["widgets"],
            json!([{"type": "Welcome", "size": "large"}]),
            "{}",
            reply.text
        );
    });
}

/// `GET authentication` is `{"providers":[]}` and `GET identityProviders` is
/// `{"_id":"","providers":[]}` (no social providers).
#[test]
fn authentication_and_identity_providers_list_no_providers() {
    on_each_backend(|builder| {
        let server = builder.start();
        let member = member(&server);
        for (who, actor) in [("anonymous", server.anonymous()), ("a user", member.actor(&server))] {
            let reply = actor.get("/openidm/authentication").send();
            assert_eq!(reply.status, 200, "{who}: {}", reply.text);
            assert_eq!(reply.body, json!({"providers": []}), "{who}");
        }
        for (who, actor) in [("a user", member.actor(&server)), ("the admin", server.admin())] {
            let reply = actor.get("/openidm/identityProviders").send();
            assert_eq!(reply.status, 200, "{who}: {}", reply.text);
            assert_eq!(reply.body, json!({"_id": "", "providers": []}), "{who}");
        }
        server
            .anonymous()
            .get("/openidm/identityProviders")
            .send()
            .assert_error(403);
    });
}

/// `selfservice/kba` is for authorized users: the questions of `selfservice.kba.json` while
/// `kbaEnabled` is true; while it is false (the shipped conf) or the file is absent, KBA settings
/// with no questions and nothing to define, so the End User UI's profile page, which reads them
/// on every visit, gets no error and offers no security questions (issue 19).
#[test]
fn kba_questions_need_kba_enabled() {
    on_each_backend(|builder| {
        let server = ui_flag(builder, "kbaEnabled", true).start();
        let member = member(&server);
        let kba = conf_json(&server, "selfservice.kba.json");
        let reply = member.actor(&server).get("/openidm/selfservice/kba").send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["questions"], kba["questions"], "{}", reply.text);
        assert_eq!(reply.body["kbaPropertyName"], json!("kbaInfo"), "{}", reply.text);
        assert_eq!(reply.body["minimumAnswersToDefine"], json!(2), "{}", reply.text);
        assert_eq!(reply.body["minimumAnswersToVerify"], json!(1), "{}", reply.text);
        assert_eq!(reply.body["questions"]["1"]["en"], json!("What's your favorite color?"));
        server
            .anonymous()
            .get("/openidm/selfservice/kba")
            .send()
            .assert_error(403);
    });
    on_each_backend(|builder| {
        let server = builder.start();
        assert_eq!(
            conf_json(&server, "ui-configuration.json")["configuration"]["kbaEnabled"],
            json!(false)
        );
        let member = member(&server);
        let off = json!({"_id": "kba", "kbaPropertyName": "kbaInfo", "questions": {},
            "minimumAnswersToDefine": 0, "minimumAnswersToVerify": 0});
        let token = session_of(&server, &member);
        for (who, actor) in [
            ("a user", member.actor(&server)),
            ("a user's session", by_cookie(&server, &token)),
        ] {
            let reply = actor.get("/openidm/selfservice/kba").send();
            assert_eq!(reply.status, 200, "{who}: {}", reply.text);
            assert_eq!(reply.body, off, "{who}");
        }
        server
            .anonymous()
            .get("/openidm/selfservice/kba")
            .send()
            .assert_error(403);
    });
    on_each_backend(|builder| {
        let server = ui_flag(builder, "kbaEnabled", true)
            .edit(|project| std::fs::remove_file(project.join("conf/selfservice.kba.json")).unwrap())
            .start();
        let reply = member(&server).actor(&server).get("/openidm/selfservice/kba").send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["questions"], json!({}), "{}", reply.text);
        assert_eq!(reply.body["minimumAnswersToDefine"], json!(0), "{}", reply.text);
    });
}

/// `consent?_queryFilter=true` is an empty query answer for authorized users.
#[test]
fn the_consent_query_is_empty_for_authorized_users() {
    on_each_backend(|builder| {
        let server = builder.start();
        let member = member(&server);
        let token = session_of(&server, &member);
        for (who, actor) in [
            ("a user", member.actor(&server)),
            ("a user's session", by_cookie(&server, &token)),
        ] {
            let reply = actor.get("/openidm/consent?_queryFilter=true").send();
            assert_eq!(query_result(&reply), Vec::<Value>::new(), "{who}");
            assert_eq!(reply.body["resultCount"], json!(0), "{who}");
        }
        server
            .anonymous()
            .get("/openidm/consent?_queryFilter=true")
            .send()
            .assert_error(403);
    });
}

/// `_fields=_notifications/*` on a user is `"_notifications": []` (no notifications service).
#[test]
fn notifications_of_a_user_are_an_empty_array() {
    on_each_backend(|builder| {
        let server = builder.start();
        let member = member(&server);
        let token = session_of(&server, &member);
        let path = format!("{}?_fields=_notifications/*", member.path());
        for (who, actor) in [
            ("the user's session", by_cookie(&server, &token)),
            ("the user", member.actor(&server)),
            ("the admin", server.admin()),
        ] {
            let reply = actor.get(&path).send();
            assert_eq!(reply.status, 200, "{who}: {}", reply.text);
            assert_eq!(reply.body["_notifications"], json!([]), "{who}: {}", reply.text);
            assert_eq!(reply.body["_id"], json!(member.id), "{who}: {}", reply.text);
            assert_eq!(
                sorted_keys(&reply.body),
                ["_id", "_notifications", "_rev"],
                "{who}: {}",
                reply.text
            );
        }
        let with_name = member
            .actor(&server)
            .get(&format!("{}?_fields=userName,_notifications/*", member.path()))
            .send();
        assert_eq!(with_name.status, 200, "{}", with_name.text);
        assert_eq!(with_name.body["userName"], json!(member.name), "{}", with_name.text);
        assert_eq!(with_name.body["_notifications"], json!([]), "{}", with_name.text);
    });
}

/// `GET policy/selfservice/registration` (anonymous, with self-registration on) lists the
/// registration form's properties with their policies, the password's included.
#[test]
fn the_registration_policy_is_readable_by_anonymous() {
    on_each_backend(|builder| {
        let server = builder.start();
        let reply = server
            .anonymous()
            .get("/openidm/policy/selfservice/registration")
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        // idm-api §6.1: `_id` is the last segment, `resource` the path.
        assert_eq!(reply.body["_id"], json!("registration"), "{}", reply.text);
        assert_eq!(
            reply.body["resource"],
            json!("selfservice/registration"),
            "{}",
            reply.text
        );
        let properties = &reply.body["properties"];
        let mut names: Vec<&str> = properties
            .as_array()
            .unwrap_or_else(|| panic!("no properties: {}", reply.text))
            .iter()
            .map(|property| property["name"].as_str().unwrap_or_default())
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["givenName", "mail", "password", "sn", "userName"],
            "{}",
            reply.text
        );

        let password = entry_for(properties, "name", "password").unwrap();
        let requirements = requirement_names(password);
        for expected in [
            "MIN_LENGTH",
            "AT_LEAST_X_CAPITAL_LETTERS",
            "AT_LEAST_X_NUMBERS",
            "CANNOT_CONTAIN_OTHERS",
        ] {
            assert!(
                requirements.iter().any(|name| name == expected),
                "password lacks {expected}: {password}"
            );
        }
        let policy_ids: Vec<&str> = password["policies"]
            .as_array()
            .unwrap_or_else(|| panic!("password without policies: {password}"))
            .iter()
            .map(|policy| policy["policyId"].as_str().unwrap_or_default())
            .collect();
        for expected in ["minimum-length", "at-least-X-capitals", "at-least-X-numbers"] {
            assert!(policy_ids.contains(&expected), "password lacks {expected}: {password}");
        }
        let user_name = entry_for(properties, "name", "userName").unwrap();
        assert!(
            requirement_names(user_name).iter().any(|name| name == "VALID_USERNAME"),
            "{user_name}"
        );
        assert!(
            requirement_names(user_name).iter().any(|name| name == "REQUIRED"),
            "{user_name}"
        );
        let mail = entry_for(properties, "name", "mail").unwrap();
        assert!(
            requirement_names(mail)
                .iter()
                .any(|name| name == "VALID_EMAIL_ADDRESS_FORMAT"),
            "{mail}"
        );
    });
    on_each_backend(|builder| {
        let server = ui_flag(builder, "selfRegistration", false).start();
        server
            .anonymous()
            .get("/openidm/policy/selfservice/registration")
            .send()
            .assert_error(403);
        server
            .anonymous()
            .post(
                "/openidm/policy/selfservice/registration?_action=validateObject",
                &registrant(&unique("off")),
            )
            .send()
            .assert_error(403);
    });
}

/// The names of the properties `policy/selfservice/registration` lists, sorted.
fn registration_policy_names(server: &TestServer) -> Vec<String> {
    let reply = server
        .anonymous()
        .get("/openidm/policy/selfservice/registration")
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut names: Vec<String> = reply.body["properties"]
        .as_array()
        .unwrap_or_else(|| panic!("no properties: {}", reply.text))
        .iter()
        .map(|property| property["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort_unstable();
    names
}

/// The registration policy follows the registration form (`registrationProperties`) as the
/// file changes: a property added to the form is listed and validated.
#[test]
fn the_registration_policy_follows_the_registration_form() {
    on_each_backend(|builder| {
        let server = builder.start();
        assert_eq!(
            registration_policy_names(&server),
            ["givenName", "mail", "password", "sn", "userName"]
        );
        let mut registration = conf_json(&server, "selfservice-registration.json");
        registration["stageConfigs"][0]["registrationProperties"]
            .as_array_mut()
            .unwrap()
            .push(json!("telephoneNumber"));
        std::fs::write(
            server.conf().join("selfservice-registration.json"),
            serde_json::to_string_pretty(&registration).unwrap(),
        )
        .unwrap();
        server.wait_until(RELOAD, "telephoneNumber in the registration policy", || {
            registration_policy_names(&server).contains(&"telephoneNumber".to_owned())
        });
        assert_eq!(
            registration_policy_names(&server),
            ["givenName", "mail", "password", "sn", "telephoneNumber", "userName"]
        );

        let mut user = registrant(&unique("tel"));
        user["telephoneNumber"] = json!("not a number!");
        let reply = server
            .anonymous()
            .post("/openidm/policy/selfservice/registration?_action=validateObject", &user)
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["result"], json!(false), "{}", reply.text);
        let failed = failed_requirements(&reply.body["failedPolicyRequirements"]);
        assert_eq!(failed.len(), 1, "{}", reply.text);
        assert_eq!(failed[0].0, "telephoneNumber", "{}", reply.text);
    });
}

/// `policy/selfservice/registration?_action=validateObject` (anonymous): a weak password fails
/// with its requirements, a taken userName with VALID_USERNAME, a good object passes — and
/// nothing is created.
#[test]
fn the_registration_policy_validates_objects_for_anonymous() {
    on_each_backend(|builder| {
        let server = builder.start();
        let path = "/openidm/policy/selfservice/registration?_action=validateObject";
        let name = unique("val");

        let good = server.anonymous().post(path, &registrant(&name)).send();
        assert_eq!(good.status, 200, "{}", good.text);
        assert_eq!(
            good.body,
            json!({"result": true, "failedPolicyRequirements": []}),
            "{}",
            good.text
        );

        let mut weak = registrant(&name);
        weak["password"] = json!("weak");
        let reply = server.anonymous().post(path, &weak).send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["result"], json!(false), "{}", reply.text);
        // idm-api §6.2: one entry per (property, failing policy), in the policies' order.
        assert_eq!(
            failed_requirements(&reply.body["failedPolicyRequirements"]),
            [
                ("password".to_owned(), "MIN_LENGTH".to_owned(), json!({"minLength": 8})),
                (
                    "password".to_owned(),
                    "AT_LEAST_X_CAPITAL_LETTERS".to_owned(),
                    json!({"numCaps": 1})
                ),
                (
                    "password".to_owned(),
                    "AT_LEAST_X_NUMBERS".to_owned(),
                    json!({"numNums": 1})
                ),
            ],
            "{}",
            reply.text
        );

        let member = member(&server);
        let mut taken = registrant(&member.name);
        taken["mail"] = json!(format!("{name}@example.com"));
        let reply = server.anonymous().post(path, &taken).send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["result"], json!(false), "{}", reply.text);
        assert_eq!(
            failed_requirements(&reply.body["failedPolicyRequirements"]),
            [("userName".to_owned(), "VALID_USERNAME".to_owned(), json!({}))],
            "{}",
            reply.text
        );

        assert_eq!(
            ids_named(&server, &name),
            Vec::<String>::new(),
            "validation created a user"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// 5. Registration ends logged in
// ---------------------------------------------------------------------------------------------

/// The shipped registration ends with `localAutoLogin`: its `credentialJwt` on the login action
/// (as the End User UI sends it) logs the new user in with a session.
#[test]
fn the_default_registration_ends_with_the_new_user_logged_in() {
    on_each_backend(|builder| {
        let server = builder.start();
        let registration = conf_json(&server, "selfservice-registration.json");
        assert_eq!(
            registration["stageConfigs"].as_array().unwrap().last().unwrap()["name"],
            json!("localAutoLogin")
        );
        let name = unique("auto");
        let jwt = credential_jwt(&register(&server, &name));
        let ids = ids_named(&server, &name);
        assert_eq!(ids.len(), 1, "{ids:?}");

        let logout = server
            .anonymous()
            .with("X-Requested-With", "XMLHttpRequest")
            .post_empty("/openidm/authentication?_action=logout")
            .send();
        assert_eq!(logout.status, 200, "{}", logout.text);
        assert_eq!(logout.body, json!({"success": true}));

        let login = server
            .nobody()
            .with("X-OpenIDM-Jwt", &jwt)
            .with("X-OpenIDM-NoSession", "false")
            .with("X-Requested-With", "XMLHttpRequest")
            .post_empty(LOGIN)
            .send();
        assert_eq!(login.status, 200, "{}", login.text);
        assert_eq!(login.body["authenticationId"], json!(name), "{}", login.text);
        assert_eq!(login.body["authorization"]["authLogin"], json!(true), "{}", login.text);
        assert_eq!(login.body["authorization"]["id"], json!(ids[0]), "{}", login.text);
        assert_eq!(
            login.body["authorization"]["roles"],
            json!([AUTHORIZED]),
            "{}",
            login.text
        );
        let token = fresh_cookie(&login);

        let context = by_cookie(&server, &token).get("/openidm/info/login").send();
        assert_eq!(context.status, 200, "{}", context.text);
        assert_eq!(context.body["authenticationId"], json!(name), "{}", context.text);
        let own = by_cookie(&server, &token)
            .get(&format!("/openidm/managed/user/{}", ids[0]))
            .send();
        assert_eq!(own.status, 200, "{}", own.text);
        assert_eq!(own.body["givenName"], json!("Regina"), "{}", own.text);
        let count = server
            .admin()
            .get(&format!("/openidm/managed/user/{}?_fields=_meta/loginCount", ids[0]))
            .send();
        assert_eq!(count.body["_meta"]["loginCount"], json!(1), "{}", count.text);
    });
}

// ---------------------------------------------------------------------------------------------
// 6. Serving a UI
// ---------------------------------------------------------------------------------------------

const INDEX: &str = "<!doctype html><html><head><title>spa</title></head><body><div id=app></div></body></html>\n";
const SCRIPT: &str = "console.log('fingerprinted');\n";
const STYLE: &str = "body { color: black; }\n";
const PLAIN_SCRIPT: &str = "console.log('plain');\n";

const SECRET: &str = "not-for-the-browser-7f3a";

/// A UI directory `<tmp>/ui` with an index, fingerprinted assets, an unfingerprinted script and
/// a hidden file, next to `<tmp>/secret.txt` (outside the UI).
fn ui_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ui");
    std::fs::create_dir_all(root.join("assets")).unwrap();
    std::fs::create_dir_all(root.join("static/css")).unwrap();
    std::fs::write(root.join("index.html"), INDEX).unwrap();
    std::fs::write(root.join("assets/index-DiwrgTda.js"), SCRIPT).unwrap();
    std::fs::write(root.join("static/css/main.3f2a1b9c.css"), STYLE).unwrap();
    std::fs::write(root.join("app.js"), PLAIN_SCRIPT).unwrap();
    std::fs::write(root.join(".env"), SECRET).unwrap();
    std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
    (dir, root)
}

/// Sends `GET <target>` exactly as written (no URL normalisation); returns status and the raw
/// response.
fn raw_get(server: &TestServer, target: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let address = server.base().trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {address}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {target}: {text:?}"));
    (status, text)
}

fn assert_index(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {}", reply.text);
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/html"),
        "{what}: content type {content_type}"
    );
    assert_eq!(reply.text, INDEX, "{what}");
    assert_eq!(reply.header("cache-control"), Some("no-cache"), "{what}");
}

/// `--ui DIR` serves the app at `/`: the index (no-cache) at `/` and for client routes,
/// fingerprinted assets with their content types and a year of immutable caching, 404 for a
/// missing file with an extension — and `/openidm` is still the API.
#[test]
fn the_ui_is_served_beside_the_api() {
    let (_dir, ui) = ui_dir();
    let server = TestServer::builder().ui(&ui).start();

    assert_index(&server.nobody().get("/").send(), "/");
    assert_index(&server.nobody().get("/index.html").send(), "/index.html");
    assert_index(&server.nobody().get("/profile/edit").send(), "/profile/edit");
    assert_index(
        &server
            .nobody()
            .get("/profile/edit")
            .header("Accept", "text/html")
            .send(),
        "/profile/edit as a page",
    );
    assert_index(&server.nobody().get("/register").send(), "/register");

    let script = server.nobody().get("/assets/index-DiwrgTda.js").send();
    assert_eq!(script.status, 200, "{}", script.text);
    assert_eq!(script.text, SCRIPT);
    let content_type = script.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/javascript") || content_type.starts_with("text/javascript"),
        "script content type {content_type}"
    );
    assert_eq!(
        script.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    // A revalidation answers 304 with the same caching rule.
    let etag = script.header("etag").expect("static files carry an ETag").to_owned();
    let revalidated = server
        .nobody()
        .get("/assets/index-DiwrgTda.js")
        .header("If-None-Match", &etag)
        .send();
    assert_eq!(revalidated.status, 304, "{}", revalidated.text);
    assert_eq!(
        revalidated.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    let style = server.nobody().get("/static/css/main.3f2a1b9c.css").send();
    assert_eq!(style.status, 200, "{}", style.text);
    assert_eq!(style.text, STYLE);
    let content_type = style.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/css"),
        "style content type {content_type}"
    );
    assert_eq!(
        style.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    let plain = server.nobody().get("/app.js").send();
    assert_eq!(plain.status, 200, "{}", plain.text);
    assert_eq!(plain.text, PLAIN_SCRIPT);
    let cache = plain.header("cache-control").unwrap_or_default();
    assert!(
        !cache.contains("immutable"),
        "an unfingerprinted file is immutable: {cache}"
    );

    for missing in ["/assets/nope.js", "/assets/index-Zz9yXw8v.js", "/nope.css"] {
        let reply = server.nobody().get(missing).send();
        assert_eq!(reply.status, 404, "{missing}: {}", reply.text);
        assert_ne!(reply.text, INDEX, "{missing} answered with the index");
    }

    let ping = server.nobody().get("/openidm/info/ping").send();
    assert_eq!(ping.status, 200, "{}", ping.text);
    assert_eq!(
        ping.body,
        json!({"_id": "", "shortDesc": "OpenIDM ready", "state": "ACTIVE_READY"})
    );
    let uiconfig = server.anonymous().get("/openidm/info/uiconfig").send();
    assert_eq!(uiconfig.status, 200, "{}", uiconfig.text);
    assert_eq!(uiconfig.body["configuration"]["selfRegistration"], json!(true));
    assert!(
        uiconfig
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "{:?}",
        uiconfig.headers
    );
    // API errors are API errors, not the app's index.
    server.admin().get("/openidm/nosuch").send().assert_error(404);
    server.nobody().get("/openidm/managed/user").send().assert_error(401);
    let admin_login = server.admin().post_empty(LOGIN).send();
    assert_eq!(admin_login.status, 200, "{}", admin_login.text);
    assert_eq!(admin_login.body["authenticationId"], json!("openidm-admin"));

    // Nothing outside DIR, and no hidden files, whatever the spelling of the path.
    for target in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/static/../../secret.txt",
        "/.env",
        "/%2eenv",
    ] {
        let (status, response) = raw_get(&server, target);
        assert!(
            !response.contains(SECRET),
            "{target} served a file it must not: {response}"
        );
        assert!(
            status == 404 || status == 400 || (status == 200 && response.ends_with(INDEX)),
            "{target}: unexpected {response}"
        );
    }
}

/// Without `--ui` nothing but the API is served.
#[test]
fn without_a_ui_only_the_api_is_served() {
    let server = TestServer::start();
    let root = server.nobody().get("/").send();
    assert_eq!(root.status, 404, "{}", root.text);
    let route = server.nobody().get("/profile/edit").send();
    assert_eq!(route.status, 404, "{}", route.text);
    assert_eq!(server.nobody().get("/openidm/info/ping").send().status, 200);
}

// ---------------------------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------------------------

/// Progressive profile on the first login: ask for the telephone number at every login count.
const PROFILE_ON_FIRST_LOGIN: &str = r#"{
    "stageConfigs": [{
        "name": "conditionaluser",
        "identityServiceUrl": "managed/user",
        "condition": {"type": "loginCount", "interval": "every", "amount": 1},
        "evaluateConditionOnField": "user",
        "onConditionTrue": {
            "name": "attributecollection",
            "identityServiceUrl": "managed/user",
            "uiConfig": {"displayName": "Add your telephone number", "purpose": "Help us verify your identity",
                         "buttonText": "Save"},
            "attributes": [{"name": "telephoneNumber", "isRequired": true}]
        }
    }]
}"#;

/// How long one browser run may take.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);
/// The password the browser registers its user with.
const BROWSER_PASSWORD: &str = "Sunfl0werSeed";
/// The password the browser's reset sets.
const BROWSER_NEW_PASSWORD: &str = "N3wSunfl0wer";

/// Why the browser test cannot run here, if it cannot.
fn browser_missing(e2e: &Path, chromium: &Path) -> Option<String> {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|status| status.success()) {
        return Some("`node` is not installed (apt-get install -y nodejs npm)".to_owned());
    }
    if !chromium.is_file() {
        return Some(format!(
            "no Chromium at {} (apt-get install -y chromium, or set CHROMIUM)",
            chromium.display()
        ));
    }
    if !e2e.join("node_modules/playwright-core").is_dir() {
        return Some(format!(
            "{} is missing (cd tests/ui-e2e && npm ci)",
            e2e.join("node_modules/playwright-core").display()
        ));
    }
    None
}

/// Points the links the password reset mails (`verificationLink`) at the app's `/passwordreset`
/// route (`<base>/passwordreset#&token=…&code=…`), changing nothing else of the shipped
/// `selfservice-reset.json`. The port is known only once the server runs, so the change goes
/// through the config API, which serves it as soon as it answers.
fn reset_links_to_the_app(server: &TestServer) {
    let mut conf = conf_json(server, "selfservice-reset.json");
    let link = format!("{}/passwordreset#", server.base());
    let stages = conf["stageConfigs"].as_array_mut().expect("stageConfigs");
    let email = stages
        .iter_mut()
        .find(|stage| stage["name"] == json!("emailValidation"))
        .expect("an emailValidation stage in selfservice-reset.json");
    email["verificationLink"] = json!(link);
    let reply = server.admin().put("/openidm/config/selfservice/reset", &conf).send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(conf_json(server, "selfservice-reset.json"), conf, "written as sent");
}

/// A real browser loads `tests/ui-e2e/app` through `--ui` and drives registration → auto-login
/// → progressive profile → dashboard and profile page (preference toggle, password change with
/// re-authentication, download) → profile edit → log out → "Forgot password?" → the mailed link (read
/// from the SMTP server's mailbox) → a new password checked as it is typed → signing in with it,
/// → the profile page again → deleting the account, with the End User UI's calls (see
/// tests/ui-e2e/run.mjs), and no `/openidm` answer of 400 or more but the login probes. Skipped with a notice when node,
/// Chromium or playwright-core is missing, unless `FERRIDM_REQUIRE_BROWSER=1`.
#[test]
fn browser_drives_registration_to_profile_edit() {
    let root = workspace_root();
    let e2e = root.join("tests/ui-e2e");
    let Some(chromium) = chromium_or_skip("browser_drives_registration_to_profile_edit", &e2e) else {
        return;
    };
    on_each_backend(|builder| {
        let smtp = SmtpServer::start();
        let server = builder
            .ui(&e2e.join("app"))
            .conf_file("selfservice-profile.json", PROFILE_ON_FIRST_LOGIN)
            .conf_file("external.email.json", &smtp.email_conf())
            .start();
        reset_links_to_the_app(&server);
        let user_name = unique("e2e");
        let (success, output) = run_browser_script(
            &server,
            &root,
            "tests/ui-e2e/run.mjs",
            &chromium,
            &[
                ("FERRIDM_E2E_USER", user_name.as_ref()),
                ("FERRIDM_E2E_PASSWORD", BROWSER_PASSWORD.as_ref()),
                ("FERRIDM_E2E_NEW_PASSWORD", BROWSER_NEW_PASSWORD.as_ref()),
                ("FERRIDM_E2E_MAILBOX", smtp.mailbox_path().as_os_str()),
            ],
        );
        println!("{output}");
        assert!(success, "the browser run failed on {:?}:\n{output}", server.backend());
        assert!(output.contains("ui-e2e: password reset passed"), "{output}");
        assert!(output.contains("ui-e2e: all steps passed"), "{output}");
        assert!(output.contains("ui-e2e: account deleted"), "{output}");
        assert!(
            output.contains("/openidm responses, none 400 or more but 4 login probes"),
            "the session probes of the two tabs, the refused sign-in and the probe after the deletion: {output}"
        );
        // What the server stored the browser read back in its steps (the profile page's
        // download, run.mjs); the account is gone now.
        assert!(
            output.contains(&format!(
                "download: ok {user_name} givenName=Edited sn=Tester mail={user_name}@example.com \
                 telephoneNumber=+1 555 0100 preferences={{\"marketing\":true}} loginCount=2"
            )),
            "{output}"
        );
        assert_eq!(
            ids_named(&server, &user_name),
            Vec::<String>::new(),
            "deleted from the profile page"
        );

        // The reset, as the mail server and the server saw it.
        let mails = smtp.messages();
        let [mail] = mails.as_slice() else {
            panic!("one message (the reset link) expected: {mails:#?}")
        };
        assert_eq!(mail.rcpt_tos, [format!("{user_name}@example.com")], "{mail:#?}");
        assert_eq!(mail.subject, "Reset your password", "{mail:#?}");
        let link = mail.link().unwrap_or_else(|| panic!("no link: {mail:#?}"));
        assert!(
            link.starts_with(&format!("{}/passwordreset#&token=", server.base())),
            "{link}"
        );
        assert!(
            mail.query_param("code")
                .is_some_and(|code| code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit())),
            "{link}"
        );
        let new = server.user(&user_name, BROWSER_NEW_PASSWORD).post_empty(LOGIN).send();
        assert_eq!(new.status, 401, "the deleted account: {}", new.text);
    });
}

/// The social provider's name in ferridm in the browser's "sign up with" run.
const SOCIAL_PROVIDER: &str = "loopback";
/// ferridm's client at that provider.
const SOCIAL_CLIENT_ID: &str = "ferridm-e2e";
const SOCIAL_CLIENT_SECRET: &str = "e2e-Cl1ent-S3cret";
/// The given name the provider has for the account (its profile has no family name).
const SOCIAL_GIVEN_NAME: &str = "Grace";
/// The family name the browser types when the registration asks for it.
const SOCIAL_SN: &str = "Hopper";

/// The shipped `selfservice-registration.json` with social registration on.
fn social_registration_conf() -> String {
    let path = workspace_root().join("conf/selfservice-registration.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut process: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    process["stageConfigs"][0]["socialRegistrationEnabled"] = json!(true);
    serde_json::to_string_pretty(&process).unwrap()
}

/// Writes `conf/identityProviders.json` of the running `server` (written aside, then moved in,
/// so the reload never reads half a file) and waits until `GET authentication` offers
/// [`SOCIAL_PROVIDER`].
fn offer_provider(server: &TestServer, providers: &Value) {
    let aside = server.project().join("identityProviders.json.new");
    std::fs::write(&aside, serde_json::to_string_pretty(providers).unwrap()).unwrap();
    std::fs::rename(&aside, server.conf().join("identityProviders.json")).unwrap();
    server.wait_until(RELOAD, "GET authentication to offer the provider", || {
        let reply = server.anonymous().get("/openidm/authentication").send();
        reply.status == 200
            && reply.body["providers"]
                .as_array()
                .is_some_and(|listed| listed.iter().any(|entry| entry["provider"] == json!(SOCIAL_PROVIDER)))
    });
}

/// The Chromium the browser tests drive, or `None` (after a notice naming `test`) when node,
/// Chromium or playwright-core is missing and `FERRIDM_REQUIRE_BROWSER` is not `1`.
fn chromium_or_skip(test: &str, e2e: &Path) -> Option<PathBuf> {
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()));
    let Some(reason) = browser_missing(e2e, &chromium) else {
        return Some(chromium);
    };
    let required = std::env::var("FERRIDM_REQUIRE_BROWSER").is_ok_and(|value| value == "1");
    assert!(!required, "FERRIDM_REQUIRE_BROWSER=1 but {reason}");
    println!("skipped: {test}: {reason}");
    None
}

/// Runs `node <script>` (relative to `root`) against `server` with the extra `env`; returns
/// (success, output).
fn run_browser_script(
    server: &TestServer,
    root: &Path,
    script: &str,
    chromium: &Path,
    env: &[(&str, &OsStr)],
) -> (bool, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new("node")
        .arg(root.join(script))
        .current_dir(root)
        .env("FERRIDM_URL", server.base())
        .env("CHROMIUM", chromium)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        std::fs::read_to_string(out.path()).unwrap_or_default(),
        std::fs::read_to_string(err.path()).unwrap_or_default()
    );
    match status {
        Some(status) => (status.success(), format!("{status}\n{output}")),
        None => (false, format!("timed out after {BROWSER_TIMEOUT:?}\n{output}")),
    }
}

/// A real browser signs up with a social provider (idm-api §13) through `tests/ui-e2e/app`: the
/// registration page's "Sign up with Loopback" → a real OpenID Provider on loopback (its login
/// step done non-interactively) → the app's `/oauthReturn/` → `handlePostAuth` → the OAuth login
/// (401: nobody linked yet) → registration through the identity, typing only the family name the
/// provider's profile lacks → the OAuth login → dashboard and profile page (see
/// tests/ui-e2e/social.mjs). The user is stored once, linked to the provider's subject. Skipped
/// like [`browser_drives_registration_to_profile_edit`].
#[test]
fn browser_signs_up_with_a_social_provider() {
    let root = workspace_root();
    let e2e = root.join("tests/ui-e2e");
    let Some(chromium) = chromium_or_skip("browser_signs_up_with_a_social_provider", &e2e) else {
        return;
    };
    on_each_backend(|builder| {
        let server = builder
            .ui(&e2e.join("app"))
            .conf_file("selfservice-registration.json", &social_registration_conf())
            .start();
        let return_page = format!("{}/oauthReturn/", server.base());
        let user_name = unique("social");
        let sub = format!("{user_name}-subject");
        let mail = format!("{user_name}@example.com");
        let provider = ferridm_tests::oidc::OidcProvider::start(&json!({
            "clients": [{"client_id": SOCIAL_CLIENT_ID, "client_secret": SOCIAL_CLIENT_SECRET,
                         "redirect_uris": [return_page]}],
            "accounts": [{"sub": sub, "email": mail, "email_verified": true,
                          "given_name": SOCIAL_GIVEN_NAME, "preferred_username": user_name}],
        }));
        offer_provider(
            &server,
            &json!({"providers": [{
                "provider": SOCIAL_PROVIDER,
                "clientId": SOCIAL_CLIENT_ID,
                "clientSecret": SOCIAL_CLIENT_SECRET,
                "wellKnownEndpoint": format!("{}/.well-known/openid-configuration", provider.issuer()),
                "redirectUri": return_page,
                "scope": ["openid", "profile", "email"],
                "propertyMap": [
                    {"source": "given_name", "target": "givenName"},
                    {"source": "family_name", "target": "sn"},
                    {"source": "email", "target": "mail"},
                    {"source": "preferred_username", "target": "userName"}
                ],
                "uiConfig": {"buttonDisplayName": "Loopback"}
            }]}),
        );

        let (success, output) = run_browser_script(
            &server,
            &root,
            "tests/ui-e2e/social.mjs",
            &chromium,
            &[
                ("FERRIDM_E2E_PROVIDER", SOCIAL_PROVIDER.as_ref()),
                ("FERRIDM_E2E_ISSUER", provider.issuer().as_ref()),
                ("FERRIDM_E2E_ACCOUNT", sub.as_ref()),
                ("FERRIDM_E2E_SN", SOCIAL_SN.as_ref()),
                ("FERRIDM_E2E_GIVEN_NAME", SOCIAL_GIVEN_NAME.as_ref()),
            ],
        );
        println!("{output}");
        assert!(
            success,
            "the browser run failed on {:?}:\n{output}\nprovider stderr:\n{}",
            server.backend(),
            provider.stderr()
        );
        assert!(output.contains("ui-e2e-social: all steps passed"), "{output}");
        assert!(
            output.contains("/openidm responses, none 400 or more but 3 login probes"),
            "the session probes of the two page loads and the OAuth login before the registration: {output}"
        );
        assert!(
            output.contains(&format!(
                "social user: {user_name} {SOCIAL_GIVEN_NAME} {SOCIAL_SN} {mail}"
            )),
            "{output}"
        );

        // Stored once, linked to the provider's subject, with the family name the browser typed.
        let ids = ids_named(&server, &user_name);
        let [id] = ids.as_slice() else {
            panic!("one user named {user_name} expected: {ids:?}")
        };
        let linked = server
            .admin()
            .get(&format!("/openidm/managed/user/{id}?_fields=idps"))
            .send();
        assert_eq!(linked.status, 200, "{}", linked.text);
        let idps = linked.body["idps"]
            .as_array()
            .unwrap_or_else(|| panic!("no idps: {}", linked.text));
        let [idp] = idps.as_slice() else {
            panic!("one linked identity expected: {}", linked.text)
        };
        assert_eq!(
            idp["_ref"],
            json!(format!("managed/{SOCIAL_PROVIDER}/{sub}")),
            "{}",
            linked.text
        );
        let user = server.admin().get(&format!("/openidm/managed/user/{id}")).send();
        assert_eq!(user.status, 200, "{}", user.text);
        assert_eq!(
            (&user.body["givenName"], &user.body["sn"], &user.body["mail"]),
            (&json!(SOCIAL_GIVEN_NAME), &json!(SOCIAL_SN), &json!(mail)),
            "{}",
            user.text
        );
    });
}
