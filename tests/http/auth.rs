//! Authentication as IDM clients see it: credentials on every request (the IDM headers, RFC 5987
//! encoded values, HTTP Basic), the login/logout/reauthenticate actions and `info/login` with
//! the login context shaped exactly as the progressive-profile seed shows it, the `session-jwt`
//! cookie (attributes, reuse, tampering, absolute and idle expiry, CSRF), login counting in
//! `_meta/loginCount`, and account lockout (window, cooldown, visibility, unlock). Also home of
//! the helpers `access` and `multinode` share (`new_user`, `with_cookie`, `assert_unauthorized`, …).

use std::fmt::Write as _;
use std::time::Duration;

use ferridm_tests::{Actor, Reply, TestServer, on_each_backend, unique};
use serde_json::{Value, json};

use crate::crud::{count, keys};

/// The password every test user gets (satisfies the shipped password policy).
pub const PASSWORD: &str = "Passw0rd";
/// The login action.
pub const LOGIN: &str = "/openidm/authentication?_action=login";
/// The logout action.
pub const LOGOUT: &str = "/openidm/authentication?_action=logout";
/// The re-authentication action.
pub const REAUTHENTICATE: &str = "/openidm/authentication?_action=reauthenticate";
/// The caller's context.
pub const INFO_LOGIN: &str = "/openidm/info/login";

const AUTHORIZED: &str = "internal/role/openidm-authorized";
const ADMIN: &str = "internal/role/openidm-admin";
const REG: &str = "internal/role/openidm-reg";

/// A managed user created for a test.
#[derive(Debug, Clone)]
pub struct User {
    /// Its `_id`.
    pub id: String,
    /// Its `userName`.
    pub name: String,
}

impl User {
    /// `managed/user/<id>` under `/openidm`.
    pub fn path(&self) -> String {
        format!("/openidm/managed/user/{}", self.id)
    }

    /// The user with its password in the IDM headers.
    pub fn actor<'a>(&self, server: &'a TestServer) -> Actor<'a> {
        server.user(&self.name, PASSWORD)
    }
}

/// Creates a managed user (as the admin) with [`PASSWORD`].
pub fn new_user(server: &TestServer) -> User {
    let name = unique("u");
    let body = server.create_user(&name, Some(PASSWORD));
    User {
        id: body["_id"].as_str().expect("created user without _id").to_owned(),
        name,
    }
}

/// Someone presenting only the `session-jwt` cookie.
pub fn with_cookie<'a>(server: &'a TestServer, token: &str) -> Actor<'a> {
    server.nobody().with("Cookie", &format!("session-jwt={token}"))
}

/// `POST authentication?_action=login` (no body).
pub fn login(actor: &Actor<'_>) -> Reply {
    actor.post_empty(LOGIN).send()
}

/// The non-empty session cookie a reply set (fails when there is none).
pub fn session_of(reply: &Reply) -> String {
    let token = reply
        .session_cookie()
        .unwrap_or_else(|| panic!("no session-jwt cookie was set; headers: {:?}", reply.headers));
    assert!(!token.is_empty(), "the session-jwt cookie is empty");
    token
}

/// Logs in with credentials and returns the session cookie.
pub fn session_for(actor: &Actor<'_>) -> String {
    let reply = login(actor);
    assert_eq!(reply.status, 200, "login: {}", reply.text);
    session_of(&reply)
}

/// Every `Set-Cookie` header of a reply that concerns `session-jwt`.
pub fn session_set_cookies(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter(|cookie| cookie.starts_with("session-jwt="))
        .map(str::to_owned)
        .collect()
}

/// The attributes after `name=value` of a `Set-Cookie` value, trimmed.
fn cookie_attributes(cookie: &str) -> Vec<String> {
    cookie.split(';').skip(1).map(|part| part.trim().to_owned()).collect()
}

fn has_attribute(attributes: &[String], name: &str) -> bool {
    attributes.iter().any(|attribute| {
        attribute
            .split('=')
            .next()
            .is_some_and(|key| key.eq_ignore_ascii_case(name))
    })
}

/// Asserts IDM's 401 exactly (`{"code":401,"reason":"Unauthorized","message":"Access Denied"}`,
/// a `detail` being tolerated) and that no session cookie came with it.
pub fn assert_unauthorized(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.text);
    assert_eq!(reply.body["code"], 401, "{what}: {}", reply.text);
    assert_eq!(reply.body["reason"], "Unauthorized", "{what}: {}", reply.text);
    assert_eq!(reply.body["message"], "Access Denied", "{what}: {}", reply.text);
    assert_eq!(
        reply.session_cookie().filter(|token| !token.is_empty()),
        None,
        "{what}: a refused request issued a session"
    );
}

/// Asserts a 403 with `message`.
pub fn assert_forbidden(reply: &Reply, message: &str, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {}", reply.text);
    assert_eq!(
        reply.body,
        json!({"code": 403, "reason": "Forbidden", "message": message}),
        "{what}"
    );
}

/// The `_meta` of a managed user as the admin sees it (`_fields=_meta`).
pub fn meta(server: &TestServer, id: &str) -> Value {
    let reply = server
        .admin()
        .get(&format!("/openidm/managed/user/{id}?_fields=_meta"))
        .send();
    assert_eq!(reply.status, 200, "reading _meta: {}", reply.text);
    assert_eq!(reply.body["_id"], id, "{}", reply.text);
    assert!(reply.body["_meta"].is_object(), "no _meta object: {}", reply.text);
    reply.body["_meta"].clone()
}

/// `_meta/loginCount` of a managed user.
pub fn login_count(server: &TestServer, id: &str) -> u64 {
    let reply = server
        .admin()
        .get(&format!("/openidm/managed/user/{id}?_fields=_meta/loginCount"))
        .send();
    assert_eq!(reply.status, 200, "reading loginCount: {}", reply.text);
    reply.body["_meta"]["loginCount"]
        .as_u64()
        .unwrap_or_else(|| panic!("no _meta/loginCount: {}", reply.text))
}

/// `_meta/failedLogins` (0 when absent).
pub fn failed_logins(meta: &Value) -> u64 {
    match meta.get("failedLogins") {
        None | Some(Value::Null) => 0,
        Some(value) => value
            .as_u64()
            .unwrap_or_else(|| panic!("failedLogins is not a count: {meta}")),
    }
}

/// Asserts `_meta/lockedUntil` is an ISO-8601 UTC timestamp with milliseconds.
pub fn assert_locked_until(meta: &Value) {
    let until = meta["lockedUntil"]
        .as_str()
        .unwrap_or_else(|| panic!("no lockedUntil while locked: {meta}"));
    let bytes = until.as_bytes();
    assert!(
        until.len() == 24
            && bytes[4] == b'-'
            && bytes[10] == b'T'
            && bytes[19] == b'.'
            && until.ends_with('Z')
            && until[..4].bytes().all(|b| b.is_ascii_digit()),
        "lockedUntil is not YYYY-MM-DDTHH:MM:SS.mmmZ: {until:?}"
    );
}

/// `authentication.json` as shipped, changed by `edit`.
pub fn authentication_conf(edit: impl FnOnce(&mut Value)) -> String {
    let path = ferridm_tests::workspace_root().join("conf").join("authentication.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut conf: Value = serde_json::from_str(&text).expect("authentication.json is JSON");
    edit(&mut conf);
    conf.to_string()
}

/// `authentication.json` with the session properties merged with `properties`.
pub fn session_conf(properties: &Value) -> String {
    authentication_conf(|conf| {
        let target = conf["serverAuthContext"]["sessionModule"]["properties"]
            .as_object_mut()
            .expect("sessionModule.properties");
        for (key, value) in properties.as_object().expect("an object") {
            target.insert(key.clone(), value.clone());
        }
    })
}

/// `authentication.json` with `accountLockout` replaced.
pub fn lockout_conf(lockout: &Value) -> String {
    authentication_conf(|conf| {
        conf["serverAuthContext"]["accountLockout"] = lockout.clone();
    })
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64url without padding (JWT segments).
fn base64url(bytes: &[u8]) -> String {
    base64(bytes).trim_end_matches('=').replace('+', "-").replace('/', "_")
}

/// Decodes base64url (padding optional).
fn base64url_decode(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            other => panic!("not base64url: {:?}", char::from(other)),
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(((bits >> count) & 0xff) as u8);
        }
    }
    out
}

/// `Authorization: Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// An RFC 5987 `UTF-8''…` header value.
pub fn rfc5987(value: &str) -> String {
    let mut out = String::from("UTF-8''");
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The token with one character of its payload (the middle JWT segment) changed.
pub fn tamper_payload(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "the session cookie is not a JWS: {token}");
    let mut payload: Vec<char> = parts[1].chars().collect();
    let middle = payload.len() / 2;
    payload[middle] = if payload[middle] == 'A' { 'B' } else { 'A' };
    let payload: String = payload.into_iter().collect();
    assert_ne!(payload, parts[1]);
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// `GET info/login` with only the cookie.
fn info_with_cookie(server: &TestServer, token: &str) -> Reply {
    with_cookie(server, token).get(INFO_LOGIN).send()
}

/// The seed's authorization keys, in its order (progressive-profile keys aside).
const MANAGED_AUTHORIZATION_KEYS: [&str; 10] = [
    "userRolesProperty",
    "component",
    "authLogin",
    "authenticationIdProperty",
    "roles",
    "ipAddress",
    "protectedAttributeList",
    "id",
    "moduleId",
    "queryId",
];

fn authorization_keys(body: &Value) -> Vec<&str> {
    keys(&body["authorization"])
        .into_iter()
        .filter(|key| !matches!(*key, "processesRequired" | "requiredProfileProcesses"))
        .collect()
}

/// Asserts a managed user's login context field by field as the progressive-profile seed
/// shows it (step 1), with `authLogin` as given.
pub fn assert_managed_context(body: &Value, user: &User, auth_login: bool) {
    assert_eq!(keys(body), ["_id", "authorization", "authenticationId"], "{body}");
    assert_eq!(body["_id"], "login", "{body}");
    assert_eq!(body["authenticationId"], user.name.as_str(), "{body}");
    let authorization = &body["authorization"];
    assert_eq!(authorization["userRolesProperty"], "authzRoles", "{body}");
    assert_eq!(authorization["component"], "managed/user", "{body}");
    assert_eq!(authorization["authLogin"], auth_login, "{body}");
    assert_eq!(authorization["authenticationIdProperty"], "username", "{body}");
    assert_eq!(authorization["roles"], json!([AUTHORIZED]), "{body}");
    assert_eq!(authorization["ipAddress"], "127.0.0.1", "{body}");
    assert_eq!(authorization["protectedAttributeList"], json!(["password"]), "{body}");
    assert_eq!(authorization["id"], user.id.as_str(), "{body}");
    assert_eq!(authorization["moduleId"], "MANAGED_USER", "{body}");
    assert_eq!(authorization["queryId"], "credential-query", "{body}");
    assert_eq!(authorization_keys(body), MANAGED_AUTHORIZATION_KEYS, "{body}");
}

/// Asserts `openidm-admin`'s login context.
fn assert_admin_context(body: &Value, auth_login: bool) {
    assert_eq!(
        *body,
        json!({
            "_id": "login",
            "authorization": {
                "userRolesProperty": "authzRoles",
                "component": "internal/user",
                "authLogin": auth_login,
                "authenticationIdProperty": "username",
                "roles": [ADMIN, AUTHORIZED],
                "ipAddress": "127.0.0.1",
                "id": "openidm-admin",
                "moduleId": "INTERNAL_USER",
                "queryId": "credential-internaluser-query"
            },
            "authenticationId": "openidm-admin"
        })
    );
    assert_eq!(keys(body), ["_id", "authorization", "authenticationId"]);
    assert_eq!(
        keys(&body["authorization"]),
        [
            "userRolesProperty",
            "component",
            "authLogin",
            "authenticationIdProperty",
            "roles",
            "ipAddress",
            "id",
            "moduleId",
            "queryId"
        ]
    );
}

// --- credentials ---------------------------------------------------------------------------

#[test]
fn no_credentials_and_no_cookie_is_401() {
    let server = TestServer::start();
    let user = new_user(&server);
    for (what, reply) in [
        ("info/login", server.nobody().get(INFO_LOGIN).send()),
        ("login action", login(&server.nobody())),
        (
            "authentication read",
            server.nobody().get("/openidm/authentication").send(),
        ),
        ("managed read", server.nobody().get(&user.path()).send()),
        (
            "managed query",
            server.nobody().get("/openidm/managed/user?_queryFilter=true").send(),
        ),
        (
            "config read",
            server.nobody().get("/openidm/config/authentication").send(),
        ),
    ] {
        assert_unauthorized(&reply, what);
        assert_eq!(
            reply.body,
            json!({"code": 401, "reason": "Unauthorized", "message": "Access Denied"}),
            "{what}"
        );
    }
}

#[test]
fn admin_login_returns_the_internal_user_context() {
    on_each_backend(|builder| {
        let server = builder.start();
        let reply = login(&server.admin());
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_admin_context(&reply.body, true);
        session_of(&reply);
    });
}

#[test]
fn anonymous_login_is_the_static_user() {
    let server = TestServer::start();
    let reply = login(&server.anonymous());
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["_id"], "login");
    assert_eq!(reply.body["authenticationId"], "anonymous");
    let authorization = &reply.body["authorization"];
    assert_eq!(authorization["roles"], json!([REG]), "{}", reply.text);
    assert_eq!(authorization["moduleId"], "STATIC_USER", "{}", reply.text);
    assert_eq!(authorization["component"], "internal/user", "{}", reply.text);
    assert_eq!(authorization["id"], "anonymous", "{}", reply.text);
    assert_eq!(authorization["authLogin"], true, "{}", reply.text);
    assert_eq!(authorization["userRolesProperty"], "authzRoles", "{}", reply.text);
    assert_eq!(authorization["authenticationIdProperty"], "username", "{}", reply.text);
    assert_eq!(authorization["ipAddress"], "127.0.0.1", "{}", reply.text);
    assert!(
        authorization.get("protectedAttributeList").is_none(),
        "only managed users have protected attributes: {}",
        reply.text
    );

    let wrong = login(&server.user("anonymous", "not-anonymous"));
    assert_unauthorized(&wrong, "anonymous with a wrong password");
}

#[test]
fn managed_user_login_matches_the_seed_field_by_field() {
    on_each_backend(|builder| {
        let server = builder.start();
        let user = new_user(&server);
        // The seed sends `X-OpenIDM-NoSession: false`: a session is still issued.
        let reply = login(&user.actor(&server).with("X-OpenIDM-NoSession", "false"));
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_managed_context(&reply.body, &user, true);
        session_of(&reply);
    });
}

#[test]
fn info_login_reports_the_context_without_auth_login() {
    let server = TestServer::start();
    let user = new_user(&server);
    let reply = user.actor(&server).get(INFO_LOGIN).send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_managed_context(&reply.body, &user, false);

    let admin = server.admin().get(INFO_LOGIN).send();
    assert_eq!(admin.status, 200, "{}", admin.text);
    assert_admin_context(&admin.body, false);

    let anonymous = server.anonymous().get(INFO_LOGIN).send();
    assert_eq!(anonymous.status, 200, "{}", anonymous.text);
    assert_eq!(anonymous.body["authorization"]["authLogin"], false);
    assert_eq!(anonymous.body["authorization"]["moduleId"], "STATIC_USER");
}

#[test]
fn an_inactive_account_cannot_log_in() {
    on_each_backend(|builder| {
        let server = builder.start();
        let user = new_user(&server);
        let set_status = |status: &str| {
            let reply = server
                .admin()
                .patch(
                    &user.path(),
                    &json!([{"operation": "replace", "field": "/accountStatus", "value": status}]),
                )
                .send();
            assert_eq!(reply.status, 200, "{}", reply.text);
            assert_eq!(reply.body["accountStatus"], status);
        };
        set_status("inactive");
        assert_unauthorized(&login(&user.actor(&server)), "inactive user, right password");
        assert_unauthorized(
            &user.actor(&server).get(&user.path()).send(),
            "inactive user reading itself",
        );
        set_status("active");
        let reply = login(&user.actor(&server));
        assert_eq!(reply.status, 200, "reactivated: {}", reply.text);
        assert_managed_context(&reply.body, &user, true);
    });
}

#[test]
fn an_account_created_inactive_cannot_log_in() {
    let server = TestServer::start();
    let name = unique("u");
    let created = server
        .admin()
        .post(
            "/openidm/managed/user?_action=create",
            &json!({"userName": name, "givenName": "Test", "sn": "User", "mail": format!("{name}@example.com"),
                    "password": PASSWORD, "accountStatus": "inactive"}),
        )
        .send();
    assert_eq!(created.status, 201, "{}", created.text);
    assert_unauthorized(&login(&server.user(&name, PASSWORD)), "created inactive");
}

#[test]
fn wrong_or_incomplete_credentials_are_401() {
    on_each_backend(|builder| {
        // Lockout off: this test is about each refusal, not about counting them.
        let conf = lockout_conf(&json!({"enabled": false, "maxFailures": 5, "windowMinutes": 5, "lockMinutes": 15}));
        let server = builder.conf_file("authentication.json", &conf).start();
        let user = new_user(&server);
        let cases = [
            ("managed user, wrong password", server.user(&user.name, "Wr0ngPassword")),
            (
                "managed user, password in the wrong case",
                server.user(&user.name, &PASSWORD.to_uppercase()),
            ),
            ("unknown user", server.user(&unique("nobody"), PASSWORD)),
            ("admin, wrong password", server.user("openidm-admin", "openidm-admin2")),
            ("empty password", server.user(&user.name, "")),
            ("empty user name", server.user("", PASSWORD)),
            ("user name only", server.nobody().with("X-OpenIDM-Username", &user.name)),
            ("password only", server.nobody().with("X-OpenIDM-Password", PASSWORD)),
            ("the user's id instead of its name", server.user(&user.id, PASSWORD)),
        ];
        for (what, actor) in cases {
            assert_unauthorized(&login(&actor), what);
            assert_unauthorized(&actor.get(INFO_LOGIN).send(), what);
        }
        // Both ways: the right password still works after all that.
        let reply = login(&user.actor(&server));
        assert_eq!(reply.status, 200, "{}", reply.text);
    });
}

#[test]
fn a_refused_login_and_a_wrong_password_look_alike() {
    let server = TestServer::start();
    let user = new_user(&server);
    let wrong = login(&server.user(&user.name, "Wr0ngPassword"));
    let unknown = login(&server.user(&unique("ghost"), PASSWORD));
    assert_unauthorized(&wrong, "wrong password");
    assert_unauthorized(&unknown, "unknown user");
    assert_eq!(wrong.body, unknown.body, "an unknown user must not be distinguishable");
}

#[test]
fn rfc5987_encoded_credentials_are_decoded() {
    on_each_backend(|builder| {
        let server = builder.start();
        let suffix = unique("x");
        let name = format!("b\u{e9}a-{suffix}");
        let password = "P\u{e4}ssw0rd";
        let created = server
            .admin()
            .post(
                "/openidm/managed/user?_action=create",
                &json!({"userName": name, "givenName": "Bea", "sn": "Accent",
                        "mail": format!("bea-{suffix}@example.com"), "password": password}),
            )
            .send();
        assert_eq!(created.status, 201, "{}", created.text);
        let user = User {
            id: created.body["_id"].as_str().expect("_id").to_owned(),
            name: name.clone(),
        };
        assert!(rfc5987(&name).starts_with("UTF-8''b%C3%A9a-"), "{}", rfc5987(&name));

        let encoded = server
            .nobody()
            .with("X-OpenIDM-Username", &rfc5987(&name))
            .with("X-OpenIDM-Password", &rfc5987(password));
        let reply = login(&encoded);
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_managed_context(&reply.body, &user, true);

        // A language tag and a lower-case charset are allowed too.
        let tagged = server
            .nobody()
            .with(
                "X-OpenIDM-Username",
                &rfc5987(&name).replacen("UTF-8''", "utf-8'en'", 1),
            )
            .with("X-OpenIDM-Password", &rfc5987(password));
        let reply = tagged.get(INFO_LOGIN).send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["authenticationId"], name.as_str());

        // Encoded ASCII is the same as plain.
        let admin = server
            .nobody()
            .with("X-OpenIDM-Username", &rfc5987("openidm-admin"))
            .with("X-OpenIDM-Password", "UTF-8''openidm%2Dadmin");
        assert_eq!(login(&admin).status, 200);

        // Refused both ways: a wrongly encoded password and a different name.
        let wrong = server
            .nobody()
            .with("X-OpenIDM-Username", &rfc5987(&name))
            .with("X-OpenIDM-Password", &rfc5987("Passw0rd"));
        assert_unauthorized(&login(&wrong), "encoded name, wrong password");
        let other = server
            .nobody()
            .with("X-OpenIDM-Username", &rfc5987(&format!("bea-{suffix}")))
            .with("X-OpenIDM-Password", &rfc5987(password));
        assert_unauthorized(&login(&other), "the name without the accent");
    });
}

#[test]
fn basic_authorization_authenticates_like_the_headers() {
    on_each_backend(|builder| {
        let server = builder.start();
        let user = new_user(&server);
        let reply = login(&server.nobody().with("Authorization", &basic(&user.name, PASSWORD)));
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_managed_context(&reply.body, &user, true);
        session_of(&reply);

        let admin = login(
            &server
                .nobody()
                .with("Authorization", &basic("openidm-admin", "openidm-admin")),
        );
        assert_eq!(admin.status, 200, "{}", admin.text);
        assert_admin_context(&admin.body, true);

        let anonymous = server
            .nobody()
            .with("Authorization", &basic("anonymous", "anonymous"))
            .get(INFO_LOGIN)
            .send();
        assert_eq!(anonymous.status, 200, "{}", anonymous.text);
        assert_eq!(anonymous.body["authorization"]["moduleId"], "STATIC_USER");

        let read = server
            .nobody()
            .with("Authorization", &basic(&user.name, PASSWORD))
            .get(&user.path())
            .send();
        assert_eq!(read.status, 200, "{}", read.text);
        assert_eq!(read.body["userName"], user.name.as_str());

        for (what, value) in [
            ("wrong password", basic(&user.name, "Wr0ngPassword")),
            ("unknown user", basic(&unique("ghost"), PASSWORD)),
            ("no colon", format!("Basic {}", base64(user.name.as_bytes()))),
            ("empty password", basic(&user.name, "")),
            ("not base64", "Basic !!!not-base64!!!".to_owned()),
            ("another scheme", format!("Bearer {}", base64(b"x"))),
        ] {
            let actor = server.nobody().with("Authorization", &value);
            assert_unauthorized(&login(&actor), what);
        }
    });
}

#[test]
fn basic_passwords_may_contain_colons_and_utf8() {
    let server = TestServer::start();
    let name = unique("u");
    let password = "P\u{e4}ss:w0rd";
    let created = server
        .admin()
        .post(
            "/openidm/managed/user?_action=create",
            &json!({"userName": name, "givenName": "Test", "sn": "User",
                    "mail": format!("{name}@example.com"), "password": password}),
        )
        .send();
    assert_eq!(created.status, 201, "{}", created.text);
    let reply = login(&server.nobody().with("Authorization", &basic(&name, password)));
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["authenticationId"], name.as_str());
    assert_unauthorized(
        &login(&server.nobody().with("Authorization", &basic(&name, "P\u{e4}ss"))),
        "the password cut at its colon",
    );
}

#[test]
fn roles_come_from_authz_roles_plus_the_module_default_roles() {
    on_each_backend(|builder| {
        let conf = authentication_conf(|conf| {
            conf["serverAuthContext"]["authModules"][1]["properties"]["defaultUserRoles"] =
                json!(["internal/role/openidm-tasks-manager"]);
        });
        let server = builder.conf_file("authentication.json", &conf).start();
        let user = new_user(&server);
        let reply = login(&user.actor(&server));
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(
            reply.body["authorization"]["roles"],
            json!([AUTHORIZED, "internal/role/openidm-tasks-manager"]),
            "{}",
            reply.text
        );
        assert_forbidden(
            &user
                .actor(&server)
                .get("/openidm/managed/user?_queryFilter=true")
                .send(),
            "Access denied",
            "an ordinary user querying users",
        );

        // Granting the admin role through authzRoles makes the user an administrator.
        let granted = server
            .admin()
            .patch(
                &user.path(),
                &json!([{"operation": "add", "field": "/authzRoles/-", "value": {"_ref": ADMIN}}]),
            )
            .send();
        assert_eq!(granted.status, 200, "{}", granted.text);
        let reply = login(&user.actor(&server));
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(
            reply.body["authorization"]["roles"],
            json!([AUTHORIZED, ADMIN, "internal/role/openidm-tasks-manager"]),
            "{}",
            reply.text
        );
        let query = user
            .actor(&server)
            .get("/openidm/managed/user?_queryFilter=true&_fields=_id")
            .send();
        assert_eq!(query.status, 200, "an administrator by authzRoles: {}", query.text);
        assert_eq!(query.body["resultCount"], 1);
    });
}

#[test]
fn the_client_ip_header_sets_the_reported_address() {
    let conf = authentication_conf(|conf| {
        conf["serverAuthContext"]["authModules"][1]["properties"]["clientIPHeader"] = json!("X-Forwarded-For");
    });
    let server = TestServer::builder().conf_file("authentication.json", &conf).start();
    let user = new_user(&server);
    let reply = login(&user.actor(&server).with("X-Forwarded-For", "203.0.113.7"));
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.body["authorization"]["ipAddress"], "203.0.113.7",
        "{}",
        reply.text
    );
    let reply = login(&user.actor(&server));
    assert_eq!(
        reply.body["authorization"]["ipAddress"], "127.0.0.1",
        "without the header"
    );
}

#[test]
fn disabled_modules_are_not_tried() {
    let conf = authentication_conf(|conf| {
        conf["serverAuthContext"]["authModules"][1]["enabled"] = json!(false);
    });
    let server = TestServer::builder().conf_file("authentication.json", &conf).start();
    let user = new_user(&server);
    assert_unauthorized(&login(&user.actor(&server)), "MANAGED_USER disabled");
    let admin = login(&server.admin());
    assert_eq!(admin.status, 200, "INTERNAL_USER still enabled: {}", admin.text);
    let anonymous = login(&server.anonymous());
    assert_eq!(anonymous.status, 200, "STATIC_USER still enabled: {}", anonymous.text);
}

#[test]
fn anonymous_is_also_an_internal_user() {
    // Without the STATIC_USER module, `anonymous` is still the default internal user
    // (`internal/user/anonymous`, password `anonymous`, role openidm-reg) and authenticates
    // through INTERNAL_USER.
    let conf = authentication_conf(|conf| {
        conf["serverAuthContext"]["authModules"][0]["enabled"] = json!(false);
    });
    let server = TestServer::builder().conf_file("authentication.json", &conf).start();
    let reply = login(&server.anonymous());
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["authenticationId"], "anonymous");
    let authorization = &reply.body["authorization"];
    assert_eq!(authorization["component"], "internal/user", "{}", reply.text);
    assert_eq!(authorization["id"], "anonymous", "{}", reply.text);
    assert_eq!(authorization["roles"], json!([REG]), "{}", reply.text);
    assert_eq!(authorization["moduleId"], "INTERNAL_USER", "{}", reply.text);
    assert_eq!(
        authorization["queryId"], "credential-internaluser-query",
        "{}",
        reply.text
    );
    assert_unauthorized(
        &login(&server.user("anonymous", "wrong")),
        "internal anonymous, wrong password",
    );
}

// --- the authentication endpoint ---------------------------------------------------------

#[test]
fn logout_clears_the_session_cookie() {
    on_each_backend(|builder| {
        let server = builder.start();
        let user = new_user(&server);
        let reply = user.actor(&server).post_empty(LOGOUT).send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body, json!({"success": true}));
        let cookies = session_set_cookies(&reply);
        assert_eq!(cookies.len(), 1, "exactly one session cookie header: {cookies:?}");
        assert_eq!(reply.session_cookie().as_deref(), Some(""), "{cookies:?}");
        let attributes = cookie_attributes(&cookies[0]);
        assert!(
            attributes.iter().any(|a| a.eq_ignore_ascii_case("Max-Age=0")),
            "the cleared cookie must expire now: {cookies:?}"
        );
        assert!(
            attributes.iter().any(|a| a == "Path=/"),
            "the cleared cookie must have the session's path: {cookies:?}"
        );

        // From a cookie session (a browser sends X-Requested-With).
        let token = session_for(&user.actor(&server));
        let reply = with_cookie(&server, &token)
            .with("X-Requested-With", "XMLHttpRequest")
            .post_empty(LOGOUT)
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body, json!({"success": true}));
        assert_eq!(reply.session_cookie().as_deref(), Some(""));

        // Logging out needs someone to log out.
        assert_unauthorized(&server.nobody().post_empty(LOGOUT).send(), "logout without credentials");
    });
}

#[test]
fn the_authentication_resource_and_its_unknown_actions() {
    let server = TestServer::start();
    let user = new_user(&server);
    for (what, actor) in [
        ("admin", server.admin()),
        ("anonymous", server.anonymous()),
        ("user", user.actor(&server)),
    ] {
        let reply = actor.get("/openidm/authentication").send();
        assert_eq!(reply.status, 200, "{what}: {}", reply.text);
        assert_eq!(reply.body, json!({"providers": []}), "{what}");
    }
    let unknown = server
        .admin()
        .post_empty("/openidm/authentication?_action=frobnicate")
        .send();
    assert_eq!(
        unknown.assert_error(400),
        "Action frobnicate on authentication service not supported"
    );
    // Not an action the rules open to users.
    assert_forbidden(
        &user
            .actor(&server)
            .post_empty("/openidm/authentication?_action=frobnicate")
            .send(),
        "Access denied",
        "user, unknown action",
    );
    let put = server
        .admin()
        .put("/openidm/authentication", &json!({"providers": []}))
        .header("If-Match", "*")
        .send();
    put.assert_error(501);
    let patch = server
        .admin()
        .patch(
            "/openidm/authentication",
            &json!([{"operation": "replace", "field": "/providers", "value": []}]),
        )
        .send();
    patch.assert_error(501);
}

#[test]
fn the_reauthenticate_action_checks_the_current_password() {
    on_each_backend(|builder| {
        let server = builder.start();
        let user = new_user(&server);
        let missing = user.actor(&server).post_empty(REAUTHENTICATE).send();
        assert_forbidden(
            &missing,
            "Reauthentication failed, missing or empty headers",
            "no reauth header",
        );
        let empty = user
            .actor(&server)
            .with("X-OpenIDM-Reauth-Password", "")
            .post_empty(REAUTHENTICATE)
            .send();
        assert_forbidden(
            &empty,
            "Reauthentication failed, missing or empty headers",
            "empty reauth header",
        );
        let wrong = user
            .actor(&server)
            .with("X-OpenIDM-Reauth-Password", "Wr0ngPassword")
            .post_empty(REAUTHENTICATE)
            .send();
        assert_forbidden(
            &wrong,
            &format!("Reauthentication failed for {}", user.name),
            "wrong reauth password",
        );
        let right = user
            .actor(&server)
            .with("X-OpenIDM-Reauth-Password", PASSWORD)
            .post_empty(REAUTHENTICATE)
            .send();
        assert_eq!(right.status, 200, "{}", right.text);
        assert_eq!(right.body, json!({"reauthenticated": true}));
        let encoded = user
            .actor(&server)
            .with("X-OpenIDM-Reauth-Password", &rfc5987(PASSWORD))
            .post_empty(REAUTHENTICATE)
            .send();
        assert_eq!(encoded.status, 200, "an RFC 5987 reauth password: {}", encoded.text);

        // From a cookie session, too.
        let token = session_for(&user.actor(&server));
        let reply = with_cookie(&server, &token)
            .with("X-Requested-With", "XMLHttpRequest")
            .with("X-OpenIDM-Reauth-Password", PASSWORD)
            .post_empty(REAUTHENTICATE)
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body, json!({"reauthenticated": true}));

        // Another user's password does not re-authenticate this one.
        let other_password = "0ther-Secret9";
        server.create_user(&unique("u"), Some(other_password));
        let reply = user
            .actor(&server)
            .with("X-OpenIDM-Reauth-Password", other_password)
            .post_empty(REAUTHENTICATE)
            .send();
        assert_forbidden(
            &reply,
            &format!("Reauthentication failed for {}", user.name),
            "another user's password",
        );

        // The administrator re-authenticates with its own password.
        let admin = server
            .admin()
            .with("X-OpenIDM-Reauth-Password", "openidm-admin")
            .post_empty(REAUTHENTICATE)
            .send();
        assert_eq!(admin.status, 200, "{}", admin.text);
        assert_eq!(admin.body, json!({"reauthenticated": true}));
    });
}

// --- sessions --------------------------------------------------------------------------------

#[test]
fn a_credential_login_issues_a_session_cookie_unless_told_not_to() {
    on_each_backend(|builder| {
        let server = builder.start();
        let user = new_user(&server);
        let reply = login(&user.actor(&server));
        assert_eq!(reply.status, 200, "{}", reply.text);
        let cookies = session_set_cookies(&reply);
        assert_eq!(cookies.len(), 1, "{cookies:?}");
        let token = session_of(&reply);
        assert_eq!(token.split('.').count(), 3, "a JWT has three segments: {token}");
        let attributes = cookie_attributes(&cookies[0]);
        assert!(attributes.iter().any(|a| a == "Path=/"), "{cookies:?}");
        assert!(has_attribute(&attributes, "HttpOnly"), "{cookies:?}");
        assert!(has_attribute(&attributes, "SameSite"), "{cookies:?}");
        assert!(!has_attribute(&attributes, "Secure"), "isSecure is false: {cookies:?}");
        assert!(
            !has_attribute(&attributes, "Max-Age") && !has_attribute(&attributes, "Expires"),
            "sessionOnly: a browser-session cookie has no expiry: {cookies:?}"
        );

        // Any successful credential authentication issues one, not only the login action.
        let read = user.actor(&server).get(&user.path()).send();
        assert_eq!(read.status, 200, "{}", read.text);
        session_of(&read);

        for actor in [
            user.actor(&server).with("X-OpenIDM-NoSession", "true"),
            server.admin().with("X-OpenIDM-NoSession", "true"),
        ] {
            let reply = login(&actor);
            assert_eq!(reply.status, 200, "{}", reply.text);
            assert_eq!(reply.body["authorization"]["authLogin"], true);
            assert!(
                session_set_cookies(&reply).is_empty(),
                "X-OpenIDM-NoSession: true must not set a cookie: {:?}",
                reply.headers
            );
        }
        let read = user
            .actor(&server)
            .with("X-OpenIDM-NoSession", "true")
            .get(&user.path())
            .send();
        assert_eq!(read.status, 200);
        assert!(session_set_cookies(&read).is_empty());
    });
}

#[test]
fn cookie_attributes_follow_the_session_module() {
    let conf = session_conf(&json!({"sessionOnly": false, "isHttpOnly": false, "isSecure": true}));
    let server = TestServer::builder().conf_file("authentication.json", &conf).start();
    let reply = login(&server.admin());
    assert_eq!(reply.status, 200, "{}", reply.text);
    let cookies = session_set_cookies(&reply);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let attributes = cookie_attributes(&cookies[0]);
    assert!(has_attribute(&attributes, "Secure"), "isSecure: {cookies:?}");
    assert!(!has_attribute(&attributes, "HttpOnly"), "isHttpOnly false: {cookies:?}");
    let max_age: u64 = attributes
        .iter()
        .find_map(|a| a.split_once('=').filter(|(k, _)| k.eq_ignore_ascii_case("Max-Age")))
        .map(|(_, v)| v.parse().expect("Max-Age is a number"))
        .unwrap_or_else(|| panic!("sessionOnly false: the cookie needs Max-Age: {cookies:?}"));
    assert!(
        (120 * 60 - 5..=120 * 60).contains(&max_age),
        "Max-Age is the remaining life of 120 minutes: {max_age}"
    );
}

#[test]
fn the_cookie_alone_authenticates_later_requests() {
    on_each_backend(|builder| {
        let server = builder.start();
        let user = new_user(&server);
        let token = session_for(&user.actor(&server));

        let info = info_with_cookie(&server, &token);
        assert_eq!(info.status, 200, "{}", info.text);
        assert_managed_context(&info.body, &user, false);
        // The cookie is re-issued to slide the idle timeout.
        session_of(&info);

        let read = with_cookie(&server, &token).get(&user.path()).send();
        assert_eq!(read.status, 200, "{}", read.text);
        assert_eq!(read.body["userName"], user.name.as_str());

        // The login action through the cookie alone: authLogin false, the recorded module.
        let again = with_cookie(&server, &token)
            .with("X-Requested-With", "XMLHttpRequest")
            .post_empty(LOGIN)
            .send();
        assert_eq!(again.status, 200, "{}", again.text);
        assert_managed_context(&again.body, &user, false);

        // The admin's session keeps the admin's rights.
        let admin = session_for(&server.admin());
        let info = info_with_cookie(&server, &admin);
        assert_eq!(info.status, 200, "{}", info.text);
        assert_admin_context(&info.body, false);
        let query = with_cookie(&server, &admin)
            .get("/openidm/managed/user?_queryFilter=true&_fields=_id")
            .send();
        assert_eq!(query.status, 200, "{}", query.text);
        assert_eq!(query.body["resultCount"], 1);

        // The user's session does not carry the admin's rights.
        let query = with_cookie(&server, &token)
            .get("/openidm/managed/user?_queryFilter=true")
            .send();
        assert_forbidden(&query, "Access denied", "user session querying users");

        // With X-OpenIDM-NoSession the session is used but not refreshed.
        let quiet = with_cookie(&server, &token)
            .with("X-OpenIDM-NoSession", "true")
            .get(INFO_LOGIN)
            .send();
        assert_eq!(quiet.status, 200, "{}", quiet.text);
        assert!(session_set_cookies(&quiet).is_empty(), "{:?}", quiet.headers);
    });
}

#[test]
fn a_session_cookie_does_not_survive_tampering() {
    on_each_backend(|builder| {
        let server = builder.start();
        let user = new_user(&server);
        let token = session_for(&user.actor(&server));
        assert_eq!(
            info_with_cookie(&server, &token).status,
            200,
            "the untouched cookie works"
        );

        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");

        // A payload claiming the administrator role, with the original signature.
        let mut claims = base64url_decode(parts[1]);
        let text = String::from_utf8_lossy(&claims).into_owned();
        if text.contains(AUTHORIZED) {
            claims = text.replace(AUTHORIZED, ADMIN).into_bytes();
        } else {
            let middle = claims.len() / 2;
            claims[middle] ^= 0x01;
        }
        let forged = format!("{}.{}.{}", parts[0], base64url(&claims), parts[2]);

        let mut signature: Vec<char> = parts[2].chars().collect();
        signature[0] = if signature[0] == 'A' { 'B' } else { 'A' };
        let signature: String = signature.into_iter().collect();

        let cases = [
            ("one payload character flipped", tamper_payload(&token)),
            ("payload rewritten to the admin role", forged),
            ("signature changed", format!("{}.{}.{signature}", parts[0], parts[1])),
            ("signature removed", format!("{}.{}.", parts[0], parts[1])),
            (
                "alg none",
                format!("{}.{}.", base64url(br#"{"alg":"none","typ":"JWT"}"#), parts[1]),
            ),
            ("truncated", token[..token.len() - 3].to_owned()),
            ("garbage", "not-a-jwt".to_owned()),
            ("empty", String::new()),
        ];
        for (what, bad) in cases {
            assert_unauthorized(&info_with_cookie(&server, &bad), what);
            assert_unauthorized(
                &with_cookie(&server, &bad)
                    .get("/openidm/managed/user?_queryFilter=true")
                    .send(),
                what,
            );
            // A bad cookie is ignored, not fatal: credentials still work next to it.
            let reply = with_cookie(&server, &bad)
                .with("X-OpenIDM-Username", &user.name)
                .with("X-OpenIDM-Password", PASSWORD)
                .get(INFO_LOGIN)
                .send();
            assert_eq!(reply.status, 200, "{what} with credentials: {}", reply.text);
            assert_eq!(reply.body["authenticationId"], user.name.as_str());
        }
        assert_eq!(
            info_with_cookie(&server, &token).status,
            200,
            "the real cookie still works"
        );
    });
}

#[test]
fn a_cookie_signed_by_another_deployment_is_refused() {
    let first = TestServer::start();
    let second = TestServer::start();
    let token = session_for(&first.admin());
    assert_eq!(info_with_cookie(&first, &token).status, 200);
    assert_unauthorized(
        &info_with_cookie(&second, &token),
        "a session from a server with another key",
    );
}

#[test]
fn a_session_ends_at_its_maximum_life_even_while_used() {
    on_each_backend(|builder| {
        // 0.1 minutes = 6 seconds of absolute life; the idle timeout stays long.
        let conf = session_conf(&json!({"maxTokenLifeMinutes": 0.1, "tokenIdleTimeMinutes": 30}));
        let server = builder.conf_file("authentication.json", &conf).manual_clock().start();
        let user = new_user(&server);
        let first = session_for(&user.actor(&server));
        let info = info_with_cookie(&server, &first);
        assert_eq!(info.status, 200, "a fresh session works: {}", info.text);

        // Keep using the freshest cookie: re-issuing must not extend the absolute life.
        let mut token = session_of(&info);
        for second in 1..=5 {
            server.advance_clock(Duration::from_secs(1));
            let reply = info_with_cookie(&server, &token);
            assert_eq!(reply.status, 200, "still alive after {second} s: {}", reply.text);
            token = session_of(&reply);
        }
        server.advance_clock(Duration::from_millis(1500));
        assert_unauthorized(
            &info_with_cookie(&server, &token),
            "the freshest cookie past the maximum life",
        );
        assert_unauthorized(&info_with_cookie(&server, &first), "the first cookie after expiry");

        // Credentials next to an expired cookie still work, and give a new session.
        let reply = with_cookie(&server, &first)
            .with("X-OpenIDM-Username", &user.name)
            .with("X-OpenIDM-Password", PASSWORD)
            .post_empty(LOGIN)
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["authorization"]["authLogin"], true);
        let fresh = session_of(&reply);
        assert_eq!(info_with_cookie(&server, &fresh).status, 200);
    });
}

#[test]
fn an_idle_session_expires_and_a_used_one_slides() {
    // 0.1 minutes = 6 seconds of idle time; the absolute life stays long.
    let conf = session_conf(&json!({"maxTokenLifeMinutes": 120, "tokenIdleTimeMinutes": 0.1}));
    let server = TestServer::builder()
        .conf_file("authentication.json", &conf)
        .manual_clock()
        .start();
    let user = new_user(&server);
    let idle = session_for(&user.actor(&server));
    let mut used = idle.clone();
    for step in 1..=4 {
        server.advance_clock(Duration::from_secs(4));
        let reply = info_with_cookie(&server, &used);
        assert_eq!(
            reply.status,
            200,
            "a session used every 4 s must stay alive ({} s): {}",
            step * 4,
            reply.text
        );
        used = session_of(&reply);
    }
    assert_unauthorized(
        &info_with_cookie(&server, &idle),
        "a cookie unused for longer than the idle timeout",
    );
    server.advance_clock(Duration::from_secs(5));
    assert_eq!(info_with_cookie(&server, &used).status, 200, "5 s idle is within 6 s");
    let used = session_of(&info_with_cookie(&server, &used));
    server.advance_clock(Duration::from_secs(7));
    assert_unauthorized(&info_with_cookie(&server, &used), "7 s idle is past the idle timeout");
}

#[test]
fn cookie_only_writes_need_x_requested_with() {
    on_each_backend(|builder| {
        let server = builder.start();
        let token = session_for(&server.admin());
        let name = unique("csrf");
        let body = json!({"userName": name, "givenName": "Test", "sn": "User", "mail": format!("{name}@example.com")});
        let create = "/openidm/managed/user?_action=create";

        let refused = with_cookie(&server, &token).post(create, &body).send();
        assert_forbidden(&refused, "Access denied", "cookie-only create");
        let flash = with_cookie(&server, &token)
            .with("X-Requested-With", "ShockwaveFlash/32.0.0.465")
            .post(create, &body)
            .send();
        assert_forbidden(&flash, "Access denied", "X-Requested-With from Flash");
        assert_eq!(count(&server, "true"), 0, "a refused create stored nothing");

        let created = with_cookie(&server, &token)
            .with("X-Requested-With", "XMLHttpRequest")
            .post(create, &body)
            .send();
        assert_eq!(created.status, 201, "{}", created.text);
        let path = format!("/openidm/managed/user/{}", created.body["_id"].as_str().expect("_id"));

        // Reads and queries need no header.
        let read = with_cookie(&server, &token).get(&path).send();
        assert_eq!(read.status, 200, "{}", read.text);
        let query = with_cookie(&server, &token)
            .get("/openidm/managed/user?_queryFilter=true")
            .send();
        assert_eq!(query.status, 200, "{}", query.text);

        let patch = json!([{"operation": "replace", "field": "/description", "value": "csrf"}]);
        assert_forbidden(
            &with_cookie(&server, &token).patch(&path, &patch).send(),
            "Access denied",
            "cookie-only patch",
        );
        assert_forbidden(
            &with_cookie(&server, &token).delete(&path).send(),
            "Access denied",
            "cookie-only delete",
        );
        assert_forbidden(
            &with_cookie(&server, &token).post_empty(LOGIN).send(),
            "Access denied",
            "cookie-only login action",
        );
        assert_forbidden(
            &with_cookie(&server, &token).post_empty(LOGOUT).send(),
            "Access denied",
            "cookie-only logout",
        );
        let unchanged = server.admin().get(&path).send();
        assert_eq!(unchanged.status, 200, "a refused delete deleted nothing");
        assert!(unchanged.body.get("description").is_none(), "{}", unchanged.text);

        let patched = with_cookie(&server, &token)
            .with("X-Requested-With", "XMLHttpRequest")
            .patch(&path, &patch)
            .send();
        assert_eq!(patched.status, 200, "{}", patched.text);
        assert_eq!(patched.body["description"], "csrf");
        let deleted = with_cookie(&server, &token)
            .with("X-Requested-With", "anything")
            .delete(&path)
            .send();
        assert_eq!(deleted.status, 200, "{}", deleted.text);

        // Credentials in headers are no CSRF risk.
        let name = unique("csrf");
        let body = json!({"userName": name, "givenName": "Test", "sn": "User", "mail": format!("{name}@example.com")});
        let reply = server.admin().post(create, &body).send();
        assert_eq!(reply.status, 201, "{}", reply.text);
        let reply = server
            .nobody()
            .with("Authorization", &basic("openidm-admin", "openidm-admin"))
            .post_empty(LOGIN)
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
    });
}

// --- login counting --------------------------------------------------------------------------

#[test]
fn only_credential_logins_through_the_login_action_count() {
    on_each_backend(|builder| {
        let server = builder.start();
        let user = new_user(&server);
        assert_eq!(login_count(&server, &user.id), 0, "a new user has not logged in");

        // Header credentials elsewhere do not count.
        assert_eq!(user.actor(&server).get(&user.path()).send().status, 200);
        assert_eq!(user.actor(&server).get(INFO_LOGIN).send().status, 200);
        assert_eq!(login_count(&server, &user.id), 0, "reads are not logins");

        let reply = login(&user.actor(&server));
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(login_count(&server, &user.id), 1, "one login");
        let token = session_of(&reply);

        assert_eq!(
            login(&user.actor(&server).with("X-OpenIDM-NoSession", "true")).status,
            200
        );
        assert_eq!(
            login_count(&server, &user.id),
            2,
            "a login without a session still counts"
        );

        let basic_login = login(&server.nobody().with("Authorization", &basic(&user.name, PASSWORD)));
        assert_eq!(basic_login.status, 200);
        assert_eq!(login_count(&server, &user.id), 3, "Basic credentials count the same");

        // The cookie alone on the login action does not count.
        let again = with_cookie(&server, &token)
            .with("X-Requested-With", "XMLHttpRequest")
            .post_empty(LOGIN)
            .send();
        assert_eq!(again.status, 200, "{}", again.text);
        assert_eq!(again.body["authorization"]["authLogin"], false);
        assert_eq!(login_count(&server, &user.id), 3, "a cookie login is not a new login");

        // Failed logins do not count.
        assert_unauthorized(&login(&server.user(&user.name, "Wr0ngPassword")), "wrong password");
        assert_eq!(login_count(&server, &user.id), 3, "a failed login is not a login");

        // Another user's and the admin's logins leave this count alone.
        let other = new_user(&server);
        assert_eq!(login(&other.actor(&server)).status, 200);
        assert_eq!(login(&server.admin()).status, 200);
        assert_eq!(login_count(&server, &user.id), 3);
        assert_eq!(login_count(&server, &other.id), 1);

        // The count is metadata, not content: a plain read shows no _meta.
        let plain = server.admin().get(&user.path()).send();
        assert!(plain.body.get("_meta").is_none(), "{}", plain.text);
    });
}

// --- lockout ---------------------------------------------------------------------------------

fn wrong_login(server: &TestServer, user: &User) -> Reply {
    let reply = login(&server.user(&user.name, "Wr0ngPassword"));
    assert_unauthorized(&reply, "wrong password");
    reply
}

#[test]
fn failed_logins_lock_the_account_until_the_cooldown_ends() {
    on_each_backend(|builder| {
        // 3 failures within a minute lock for 0.1 minutes (6 seconds).
        let conf = lockout_conf(&json!({"enabled": true, "maxFailures": 3, "windowMinutes": 1, "lockMinutes": 0.1}));
        let server = builder.conf_file("authentication.json", &conf).manual_clock().start();
        let user = new_user(&server);

        wrong_login(&server, &user);
        wrong_login(&server, &user);
        let seen = meta(&server, &user.id);
        assert_eq!(failed_logins(&seen), 2, "two failures are visible: {seen}");
        assert!(seen.get("lockedUntil").is_none(), "not locked below the limit: {seen}");

        // Below the limit the right password works, and it clears the failures.
        let reply = login(&user.actor(&server));
        assert_eq!(reply.status, 200, "{}", reply.text);
        let seen = meta(&server, &user.id);
        assert_eq!(failed_logins(&seen), 0, "a success clears the failures: {seen}");
        assert!(seen.get("lockedUntil").is_none(), "{seen}");

        // The counter started over: two more failures do not lock either.
        wrong_login(&server, &user);
        wrong_login(&server, &user);
        let wrong = wrong_login(&server, &user);

        let refused = login(&user.actor(&server));
        assert_unauthorized(&refused, "the right password while locked");
        assert_eq!(refused.body, wrong.body, "a lock must look like a wrong password");
        assert_unauthorized(
            &server
                .nobody()
                .with("Authorization", &basic(&user.name, PASSWORD))
                .get(&user.path())
                .send(),
            "Basic credentials while locked",
        );
        assert_unauthorized(
            &user.actor(&server).get(&user.path()).send(),
            "header credentials on another endpoint while locked",
        );
        let seen = meta(&server, &user.id);
        assert_locked_until(&seen);
        assert!(seen.get("failedLogins").is_some(), "failedLogins is shown: {seen}");

        // Another account is not affected.
        let other = new_user(&server);
        assert_eq!(login(&other.actor(&server)).status, 200);

        server.advance_clock(Duration::from_secs(5));
        assert_unauthorized(&login(&user.actor(&server)), "the right password 5 s into a 6 s lock");
        server.advance_clock(Duration::from_millis(1500));
        assert_eq!(login(&user.actor(&server)).status, 200, "the lock of 6 s is over");
        let seen = meta(&server, &user.id);
        assert!(seen.get("lockedUntil").is_none(), "no lock after the cooldown: {seen}");
        assert_eq!(failed_logins(&seen), 0, "{seen}");
        assert_eq!(
            login_count(&server, &user.id),
            2,
            "the refused attempts did not count as logins"
        );
    });
}

#[test]
fn failures_outside_the_window_do_not_add_up() {
    // 2 failures within 0.05 minutes (3 s) lock for 15 minutes.
    let conf = lockout_conf(&json!({"enabled": true, "maxFailures": 2, "windowMinutes": 0.05, "lockMinutes": 15}));
    let server = TestServer::builder()
        .conf_file("authentication.json", &conf)
        .manual_clock()
        .start();
    let user = new_user(&server);

    wrong_login(&server, &user);
    server.advance_clock(Duration::from_millis(3600));
    wrong_login(&server, &user);
    let reply = login(&user.actor(&server));
    assert_eq!(
        reply.status, 200,
        "two failures 3.6 s apart must not lock: {}",
        reply.text
    );

    wrong_login(&server, &user);
    server.advance_clock(Duration::from_millis(2500));
    wrong_login(&server, &user);
    assert_unauthorized(&login(&user.actor(&server)), "two failures 2.5 s apart lock");
    assert_locked_until(&meta(&server, &user.id));
    server.advance_clock(Duration::from_secs(14 * 60));
    assert_unauthorized(&login(&user.actor(&server)), "14 minutes into a 15-minute lock");
}

#[test]
fn any_max_failures_within_one_window_lock() {
    // 3 failures within 0.1 minutes (6 s) lock for 15 minutes. The failures at 4 s, 7 s and
    // 7.1 s lie within 6 s of each other, so they lock, whatever happened before them.
    let conf = lockout_conf(&json!({"enabled": true, "maxFailures": 3, "windowMinutes": 0.1, "lockMinutes": 15}));
    let server = TestServer::builder()
        .conf_file("authentication.json", &conf)
        .manual_clock()
        .start();
    let user = new_user(&server);
    wrong_login(&server, &user);
    server.advance_clock(Duration::from_secs(4));
    wrong_login(&server, &user);
    server.advance_clock(Duration::from_secs(3));
    wrong_login(&server, &user);
    server.advance_clock(Duration::from_millis(100));
    wrong_login(&server, &user);
    assert_unauthorized(
        &login(&user.actor(&server)),
        "3 failures within 6 s (the 2nd, 3rd and 4th) must lock",
    );
    assert_locked_until(&meta(&server, &user.id));
}

#[test]
fn an_administrator_sees_and_lifts_a_lock() {
    on_each_backend(|builder| {
        // The shipped settings: 5 failures within 5 minutes lock for 15 minutes.
        let server = builder.start();
        let user = new_user(&server);
        let other = new_user(&server);
        for _ in 0..4 {
            wrong_login(&server, &user);
        }
        assert_eq!(login(&user.actor(&server)).status, 200, "4 failures do not lock");
        for _ in 0..5 {
            wrong_login(&server, &user);
        }
        assert_unauthorized(&login(&user.actor(&server)), "locked after 5 failures");
        let seen = meta(&server, &user.id);
        assert_locked_until(&seen);
        let plain = server.admin().get(&user.path()).send();
        assert!(plain.body.get("_meta").is_none(), "{}", plain.text);

        let unlock = format!("{}?_action=unlock", user.path());
        assert_forbidden(
            &other.actor(&server).post_empty(&unlock).send(),
            "Access denied",
            "a user unlocking another",
        );
        assert_forbidden(
            &server.anonymous().post_empty(&unlock).send(),
            "Access denied",
            "anonymous unlocking",
        );
        assert_unauthorized(
            &server.nobody().post_empty(&unlock).send(),
            "unlock without credentials",
        );
        assert_unauthorized(&login(&user.actor(&server)), "still locked after refused unlocks");

        let reply = server.admin().post_empty(&unlock).send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["_id"], user.id.as_str());
        let seen = meta(&server, &user.id);
        assert!(seen.get("lockedUntil").is_none(), "unlocked: {seen}");
        assert_eq!(failed_logins(&seen), 0, "{seen}");
        let reply = login(&user.actor(&server));
        assert_eq!(reply.status, 200, "after unlock: {}", reply.text);

        let missing = server
            .admin()
            .post_empty(&format!("/openidm/managed/user/{}?_action=unlock", unique("none")))
            .send();
        missing.assert_error(404);
    });
}

#[test]
fn disabled_lockout_never_locks() {
    let conf = lockout_conf(&json!({"enabled": false, "maxFailures": 2, "windowMinutes": 5, "lockMinutes": 15}));
    let server = TestServer::builder().conf_file("authentication.json", &conf).start();
    let user = new_user(&server);
    for _ in 0..6 {
        wrong_login(&server, &user);
    }
    let reply = login(&user.actor(&server));
    assert_eq!(reply.status, 200, "lockout is disabled: {}", reply.text);
}

/// Sends `n` wrong-password `info/login` requests for `user` at once, spread round-robin over
/// `bases` (one or several nodes); returns their statuses.
pub fn parallel_guesses(bases: &[&str], user: &User, n: usize) -> Vec<u16> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (client, barrier, base) = (&client, &barrier, bases[i % bases.len()]);
                scope.spawn(move || {
                    barrier.wait();
                    client
                        .get(format!("{base}{INFO_LOGIN}"))
                        .header("X-OpenIDM-Username", &user.name)
                        .header("X-OpenIDM-Password", format!("Wr0ng{i}"))
                        .send()
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().unwrap()).collect()
    })
}

/// 40 parallel wrong guesses against a limit of 5: exactly 5 are checked and counted, the rest
/// are refused as locked without a check, and the right password is then refused too.
#[test]
fn parallel_guesses_cannot_outrun_the_lockout() {
    on_each_backend(|builder| {
        let conf = lockout_conf(&json!({"enabled": true, "maxFailures": 5, "windowMinutes": 5, "lockMinutes": 15}));
        let server = builder.conf_file("authentication.json", &conf).start();
        let user = new_user(&server);
        let statuses = parallel_guesses(&[server.base()], &user, 40);
        assert!(statuses.iter().all(|status| *status == 401), "{statuses:?}");
        let seen = meta(&server, &user.id);
        assert_eq!(
            failed_logins(&seen),
            5,
            "only the limit's worth of guesses was checked: {seen}"
        );
        assert_locked_until(&seen);
        assert_unauthorized(&login(&user.actor(&server)), "the right password after the burst");
    });
}
