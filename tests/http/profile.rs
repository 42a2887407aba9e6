//! Progressive profile completion (idm-api.md §10.1–10.7, §10.9, §7.2–7.4; ferridm.md §2.3, §6;
//! idm-cases.md §K; seeds/progressive-profile.txt): the seed's 25th-login flow replayed over
//! HTTP, the login-time role swap driven by `auth.profile.json`, every `conditionaluser`
//! condition type both ways, `onConditionTrue`/`onConditionFalse`, completion tracked per
//! session and (for `timeSince`) persistently, the `attributecollection`, `patchObject` and
//! `kbaUpdateStage` stages, and the user metadata they read and write. Also home of the helpers
//! `completeness` shares (`Person`, `Session`, `login_*`, `meta_of`).

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferridm_tests::{Actor, Reply, TestServer, unique, workspace_root};
use serde_json::{Value, json};

/// The password of every test user (satisfies the shipped password policy).
pub const PASSWORD: &str = "Passw0rd";
/// The login action.
pub const LOGIN: &str = "/openidm/authentication?_action=login";
/// The profile process.
pub const PROFILE: &str = "/openidm/selfservice/profile";
/// Advancing the profile process.
pub const PROFILE_SUBMIT: &str = "/openidm/selfservice/profile?_action=submitRequirements";
/// The full-access role withheld while profile processes are pending.
pub const AUTHORIZED: &str = "internal/role/openidm-authorized";
/// How long a hot reload may take to show.
pub const RELOAD: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The keys of a JSON object, in order.
pub fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// A managed user created for a test, with [`PASSWORD`].
#[derive(Debug, Clone)]
pub struct Person {
    /// Its `_id`.
    pub id: String,
    /// Its `userName`.
    pub name: String,
}

impl Person {
    /// The user with its credentials in the IDM headers.
    pub fn actor<'a>(&self, server: &'a TestServer) -> Actor<'a> {
        server.user(&self.name, PASSWORD)
    }

    /// `/openidm/managed/user/<id>`.
    pub fn path(&self) -> String {
        format!("/openidm/managed/user/{}", self.id)
    }
}

/// Creates a user (userName, givenName, sn, mail and the password) as the admin.
pub fn person(server: &TestServer) -> Person {
    person_named(server, &unique("pp"))
}

/// Creates a user with the given name.
pub fn person_named(server: &TestServer, name: &str) -> Person {
    let body = server.create_user(name, Some(PASSWORD));
    Person {
        id: body["_id"].as_str().expect("created user without _id").to_owned(),
        name: name.to_owned(),
    }
}

/// Creates a user with extra properties (on top of userName, givenName, sn, mail, password).
pub fn person_with(server: &TestServer, extra: &Value) -> Person {
    let name = unique("pp");
    let mut body = json!({"userName": name, "givenName": "Test", "sn": "User",
                          "mail": format!("{name}@example.com"), "password": PASSWORD});
    for (key, value) in extra.as_object().expect("extra properties are an object") {
        body[key] = value.clone();
    }
    let reply = server
        .admin()
        .post("/openidm/managed/user?_action=create", &body)
        .send();
    assert_eq!(reply.status, 201, "creating {name}: {}", reply.text);
    Person {
        id: reply.body["_id"].as_str().expect("created user without _id").to_owned(),
        name,
    }
}

/// A credential login that does not open a session (`X-OpenIDM-NoSession: true`); it counts.
pub fn login_counted(server: &TestServer, person: &Person) -> Reply {
    let reply = person
        .actor(server)
        .with("X-OpenIDM-NoSession", "true")
        .post_empty(LOGIN)
        .send();
    assert_eq!(reply.status, 200, "login of {}: {}", person.name, reply.text);
    assert_eq!(
        reply.session_cookie().filter(|token| !token.is_empty()),
        None,
        "X-OpenIDM-NoSession: true issued a session"
    );
    reply
}

/// A credential login that opens a session (`X-OpenIDM-NoSession: false`).
pub fn login_session<'a>(server: &'a TestServer, person: &Person) -> (Reply, Session<'a>) {
    let reply = person
        .actor(server)
        .with("X-OpenIDM-NoSession", "false")
        .post_empty(LOGIN)
        .send();
    assert_eq!(reply.status, 200, "login of {}: {}", person.name, reply.text);
    let cookie = reply
        .session_cookie()
        .filter(|token| !token.is_empty())
        .unwrap_or_else(|| panic!("the login set no session-jwt cookie; headers: {:?}", reply.headers));
    (
        reply,
        Session {
            server,
            cookie: RefCell::new(cookie),
        },
    )
}

/// A browser-like session: sends only the `session-jwt` cookie and keeps the latest cookie the
/// server sets (the cookie carries the forms completed in the session).
pub struct Session<'a> {
    server: &'a TestServer,
    cookie: RefCell<String>,
}

impl Session<'_> {
    fn actor(&self) -> Actor<'_> {
        self.server
            .nobody()
            .with("Cookie", &format!("session-jwt={}", self.cookie.borrow()))
    }

    fn keep(&self, reply: Reply) -> Reply {
        if let Some(cookie) = reply.session_cookie().filter(|token| !token.is_empty()) {
            *self.cookie.borrow_mut() = cookie;
        }
        reply
    }

    /// GET with the cookie.
    pub fn get(&self, path: &str) -> Reply {
        self.keep(self.actor().get(path).send())
    }

    /// POST with the cookie and `X-Requested-With` (a cookie-only write needs it).
    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.keep(
            self.actor()
                .with("X-Requested-With", "XMLHttpRequest")
                .post(path, body)
                .send(),
        )
    }

    /// POST with the cookie but without `X-Requested-With`.
    pub fn post_without_requested_with(&self, path: &str, body: &Value) -> Reply {
        self.keep(self.actor().post(path, body).send())
    }

    /// The login action with the cookie (and `X-Requested-With`): the refreshed context.
    pub fn login(&self) -> Reply {
        let reply = self.keep(
            self.actor()
                .with("X-Requested-With", "XMLHttpRequest")
                .post_empty(LOGIN)
                .send(),
        );
        assert_eq!(reply.status, 200, "cookie login: {}", reply.text);
        reply
    }
}

/// `_meta` of a user as the admin reads it through `_fields`.
pub fn meta_of(server: &TestServer, id: &str, fields: &str) -> Value {
    let reply = server
        .admin()
        .get(&format!("/openidm/managed/user/{id}?_fields={fields}"))
        .send();
    assert_eq!(reply.status, 200, "reading {fields}: {}", reply.text);
    reply.body["_meta"].clone()
}

/// `_meta/loginCount` of a user.
pub fn login_count(server: &TestServer, id: &str) -> i64 {
    meta_of(server, id, "_meta/loginCount")["loginCount"]
        .as_i64()
        .unwrap_or_else(|| panic!("no _meta/loginCount for {id}"))
}

/// A user as the admin reads it.
pub fn read_user(server: &TestServer, id: &str) -> Value {
    let reply = server.admin().get(&format!("/openidm/managed/user/{id}")).send();
    assert_eq!(reply.status, 200, "reading {id}: {}", reply.text);
    reply.body
}

/// Admin patch of a user.
pub fn admin_patch(server: &TestServer, id: &str, operations: &Value) {
    let reply = server
        .admin()
        .patch(&format!("/openidm/managed/user/{id}"), operations)
        .send();
    assert_eq!(reply.status, 200, "patching {id}: {}", reply.text);
}

/// A process file with these stages.
pub fn process(stages: &Value) -> String {
    json!({ "stageConfigs": stages }).to_string()
}

/// An `attributecollection` form whose `uiConfig.displayName` is `display`.
fn form(display: &str, attributes: &Value) -> Value {
    json!({
        "name": "attributecollection",
        "identityServiceUrl": "managed/user",
        "uiConfig": {"displayName": display, "purpose": "Testing", "buttonText": "Save"},
        "attributes": attributes
    })
}

/// The form shown when the condition holds (asks for the telephone number, required).
fn phone_form() -> Value {
    form("when true", &json!([{"name": "telephoneNumber", "isRequired": true}]))
}

/// The form shown when the condition does not hold (asks for the city, required).
fn city_form() -> Value {
    form("when false", &json!([{"name": "city", "isRequired": true}]))
}

/// A `conditionaluser` stage.
fn conditional(condition: &Value, on_true: Option<Value>, on_false: Option<Value>) -> Value {
    let mut stage = json!({
        "name": "conditionaluser",
        "identityServiceUrl": "managed/user",
        "condition": condition,
        "evaluateConditionOnField": "user"
    });
    if let Some(branch) = on_true {
        stage["onConditionTrue"] = branch;
    }
    if let Some(branch) = on_false {
        stage["onConditionFalse"] = branch;
    }
    stage
}

/// A profile process of one `conditionaluser` with `condition`, the phone form when it holds
/// and the city form when it does not.
fn both_ways(condition: &Value) -> String {
    process(&json!([conditional(condition, Some(phone_form()), Some(city_form()))]))
}

/// A server whose profile process is `both_ways(condition)`.
fn server_for(condition: &Value) -> TestServer {
    TestServer::builder()
        .conf_file("selfservice-profile.json", &both_ways(condition))
        .start()
}

/// Which branch the profile process picks for `person` now: `Some(true)` (the phone form),
/// `Some(false)` (the city form) or `None` (nothing asked). Checked through both the GET and
/// a first `submitRequirements` with empty input, which must agree.
fn branch(server: &TestServer, person: &Person) -> Option<bool> {
    let started = person.actor(server).get(PROFILE).send();
    assert_eq!(started.status, 200, "GET profile: {}", started.text);
    assert_eq!(started.body["type"], "conditionaluser", "{}", started.text);
    assert_eq!(started.body["tag"], "initial", "{}", started.text);
    let by_get = match started.body["requirements"]["uiConfig"]["displayName"].as_str() {
        Some("when true") => Some(true),
        Some("when false") => Some(false),
        Some(other) => panic!("unexpected form {other}: {}", started.text),
        None => {
            assert_eq!(started.body["requirements"], json!({}), "{}", started.text);
            None
        }
    };
    let submitted = person.actor(server).post(PROFILE_SUBMIT, &json!({"input": {}})).send();
    assert_eq!(submitted.status, 200, "submit profile: {}", submitted.text);
    let by_submit = if submitted.body["tag"] == "end" {
        assert_eq!(
            submitted.body,
            json!({"type": "conditionaluser", "tag": "end", "status": {"success": true}, "additions": {}})
        );
        None
    } else {
        assert_eq!(submitted.body["type"], "conditionaluser", "{}", submitted.text);
        assert_eq!(submitted.body["tag"], "initial", "{}", submitted.text);
        assert!(submitted.body["token"].is_string(), "no token: {}", submitted.text);
        assert_eq!(
            submitted.body["requirements"], started.body["requirements"],
            "the first submit asks what the GET showed"
        );
        by_get
    };
    assert_eq!(
        by_get, by_submit,
        "GET and submit disagree: {} / {}",
        started.text, submitted.text
    );
    by_get
}

/// The authorization map of a login reply.
fn authorization(reply: &Reply) -> &Value {
    &reply.body["authorization"]
}

/// Asserts a login context with full access and no pending-process keys.
fn assert_full_access(reply: &Reply, what: &str) {
    let authorization = authorization(reply);
    assert!(
        authorization["roles"]
            .as_array()
            .is_some_and(|roles| roles.contains(&json!(AUTHORIZED))),
        "{what}: roles without {AUTHORIZED}: {}",
        reply.text
    );
    assert_eq!(authorization.get("processesRequired"), None, "{what}: {}", reply.text);
    assert_eq!(
        authorization.get("requiredProfileProcesses"),
        None,
        "{what}: {}",
        reply.text
    );
}

/// Asserts a login context with `processes` pending and the authorized role withheld.
fn assert_pending(reply: &Reply, processes: &[&str], what: &str) {
    let authorization = authorization(reply);
    assert_eq!(authorization["processesRequired"], true, "{what}: {}", reply.text);
    assert_eq!(
        authorization["requiredProfileProcesses"],
        json!(processes),
        "{what}: {}",
        reply.text
    );
    assert!(
        !authorization["roles"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no roles: {}", reply.text))
            .contains(&json!(AUTHORIZED)),
        "{what}: the authorized role was not withheld: {}",
        reply.text
    );
}

/// The seconds since the epoch.
fn now_seconds() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// A time as an ISO-8601 string with the given offset suffix (`Z`, `+02:00`); `seconds` is the
/// wall-clock time in that offset.
fn iso(seconds: i64, suffix: &str) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000{suffix}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Waits until the current minute has at least ten seconds left (so "to the minute" checks
/// cannot straddle a minute boundary).
fn away_from_minute_end() {
    while now_seconds() % 60 >= 50 {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asserts an ISO-8601 UTC timestamp with milliseconds and `Z`.
fn assert_iso(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    assert!(
        text.len() == 24 && text.ends_with('Z') && text.as_bytes()[19] == b'.',
        "{what} is not ISO-8601 with milliseconds and Z: {text}"
    );
    assert!(
        ferridm_core::time::parse_iso(text).is_some(),
        "{what} does not parse: {text}"
    );
}

/// The seed's telephoneNumber schema (as in the shipped managed.json).
fn seed_telephone_schema() -> Value {
    json!({
        "type": "string",
        "title": "Telephone Number",
        "description": "Telephone Number",
        "viewable": true,
        "userEditable": true,
        "pattern": "^\\+?([0-9\\- \\(\\)])*$",
        "usageDescription": "",
        "isPersonal": true
    })
}

/// The shipped managed.json's user property `name`.
fn shipped_user_property(name: &str) -> Value {
    let managed: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join("conf/managed.json")).unwrap()).unwrap();
    managed["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|object| object["name"] == "user")
        .unwrap()["schema"]["properties"][name]
        .clone()
}

/// `GET /openidm/config/status`.
fn config_status(server: &TestServer) -> Value {
    let reply = server.admin().get("/openidm/config/status").send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

/// Writes a conf file the way an editor's atomic save does.
pub fn save_conf(server: &TestServer, name: &str, contents: &str) {
    let path = server.conf().join(name);
    let temporary = server.conf().join(format!(".{name}.saving"));
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, &path).unwrap();
}

/// Writes a bad `selfservice-profile.json`, waits until the reload is refused with an error
/// about that file (whose message contains `message`, when given), checks that the last good
/// configuration keeps serving, then puts the shipped file back and waits for a clean reload.
fn assert_refused(server: &TestServer, contents: &str, message: Option<&str>) {
    let user = person(server);
    save_conf(server, "selfservice-profile.json", contents);
    server.wait_until(RELOAD, &format!("a refused reload ({message:?}) of {contents}"), || {
        config_status(server)["errors"].as_array().is_some_and(|errors| {
            errors.iter().any(|error| {
                error["file"]
                    .as_str()
                    .is_some_and(|file| file.ends_with("selfservice-profile.json"))
                    && message
                        .is_none_or(|message| error["message"].as_str().is_some_and(|text| text.contains(message)))
            })
        })
    });
    // The shipped process (loginCount at 25) keeps serving: nothing to ask a new user.
    let started = user.actor(server).get(PROFILE).send();
    assert_eq!(started.status, 200, "{}", started.text);
    assert_eq!(started.body["type"], "conditionaluser", "{}", started.text);
    assert_eq!(started.body["requirements"], json!({}), "{}", started.text);
    save_conf(
        server,
        "selfservice-profile.json",
        &std::fs::read_to_string(workspace_root().join("conf/selfservice-profile.json")).unwrap(),
    );
    server.wait_until(RELOAD, "a clean reload", || {
        config_status(server)["errors"] == json!([])
    });
}

const TERMS_PROCESS: &str = r#"{"stageConfigs": [
    {"name": "conditionaluser", "identityServiceUrl": "managed/user", "condition": {"type": "terms"},
     "evaluateConditionOnField": "user", "onConditionTrue": {"name": "termsAndConditions"}},
    {"name": "patchObject", "identityServiceUrl": "managed/user"}
]}"#;

/// kbaUpdateStage shown on every login (independently of the kbaQuestions condition).
const KBA_ALWAYS_PROCESS: &str = r#"{"stageConfigs": [
    {"name": "conditionaluser", "identityServiceUrl": "managed/user",
     "condition": {"type": "loginCount", "interval": "every", "amount": 1}, "evaluateConditionOnField": "user",
     "onConditionTrue": {"name": "kbaUpdateStage", "kbaConfig": null, "identityServiceUrl": "managed/user",
        "uiConfig": {"displayName": "Update your security questions", "purpose": "Keep your account safe",
                     "buttonText": "Update"}}}
]}"#;

const KBA_PROCESS: &str = r#"{"stageConfigs": [
    {"name": "conditionaluser", "identityServiceUrl": "managed/user", "condition": {"type": "kbaQuestions"},
     "evaluateConditionOnField": "user",
     "onConditionFalse": {"name": "kbaUpdateStage", "kbaConfig": null, "identityServiceUrl": "managed/user",
        "uiConfig": {"displayName": "Update your security questions", "purpose": "Keep your account safe",
                     "buttonText": "Update"}}}
]}"#;

/// Two terms versions, `active` chosen.
fn terms_conf(active: &str) -> String {
    json!({
        "versions": [
            {"version": "1.5", "termsTranslations": {"en": "Old terms"}, "createDate": "2026-01-01T00:00:00.000Z"},
            {"version": "2.0", "termsTranslations": {"en": "New terms", "fr": "Nouvelles conditions"},
             "createDate": "2026-06-01T00:00:00.000Z"}
        ],
        "active": active,
        "uiConfig": {"displayName": "We've updated our terms", "purpose": "Accept them to proceed", "buttonText": "Accept"}
    })
    .to_string()
}

/// A stored-looking KBA entry for system question `id`.
fn kba_entry(id: &str) -> Value {
    json!({"questionId": id, "answer": {"$crypto": {"type": "salted-hash",
        "value": {"algorithm": "SHA-256", "data": "c2FsdGVkaGFzaHNhbHRlZGhhc2hzYWx0ZWRoYXNo"}}}})
}

// ---------------------------------------------------------------------------------------------
// The seed
// ---------------------------------------------------------------------------------------------

#[test]
fn the_seeds_profile_flow_on_the_twenty_fifth_login() {
    let server = TestServer::start();
    let bjensen = person_named(&server, "bjensen");
    for login in 1..=24 {
        let reply = login_counted(&server, &bjensen);
        assert_eq!(
            authorization(&reply)["roles"],
            json!([AUTHORIZED]),
            "login {login}: {}",
            reply.text
        );
        assert_full_access(&reply, &format!("login {login}"));
    }
    assert_eq!(login_count(&server, &bjensen.id), 24);

    // 1. The 25th login: the authorization context of the seed, field by field and in its order.
    let (reply, session) = login_session(&server, &bjensen);
    assert_eq!(
        reply.body,
        json!({
            "_id": "login",
            "authorization": {
                "userRolesProperty": "authzRoles",
                "processesRequired": true,
                "component": "managed/user",
                "authLogin": true,
                "authenticationIdProperty": "username",
                "roles": [],
                "ipAddress": "127.0.0.1",
                "protectedAttributeList": ["password"],
                "requiredProfileProcesses": ["selfservice/profile"],
                "id": bjensen.id,
                "moduleId": "MANAGED_USER",
                "queryId": "credential-query"
            },
            "authenticationId": "bjensen"
        }),
        "the 25th login"
    );
    assert_eq!(keys(&reply.body), ["_id", "authorization", "authenticationId"]);
    assert_eq!(
        keys(&reply.body["authorization"]),
        [
            "userRolesProperty",
            "processesRequired",
            "component",
            "authLogin",
            "authenticationIdProperty",
            "roles",
            "ipAddress",
            "protectedAttributeList",
            "requiredProfileProcesses",
            "id",
            "moduleId",
            "queryId"
        ]
    );
    assert_eq!(login_count(&server, &bjensen.id), 25);

    // Without the authorized role the normal API is closed.
    let own = session.get(&bjensen.path());
    assert_eq!(
        own.status, 403,
        "reading oneself while the profile is pending: {}",
        own.text
    );

    // 2. The profile GET: conditionaluser, tag initial, the seed's requirements.
    let started = session.get(PROFILE);
    assert_eq!(started.status, 200, "{}", started.text);
    assert_eq!(keys(&started.body), ["_id", "_rev", "type", "tag", "requirements"]);
    assert_eq!(started.body["_id"], "1");
    let rev = started.body["_rev"].as_str().expect("_rev is a string");
    assert!(
        !rev.is_empty() && rev.bytes().all(|b| b.is_ascii_digit()),
        "_rev is an integer string like the seed's: {rev}"
    );
    assert_eq!(started.body["type"], "conditionaluser");
    assert_eq!(started.body["tag"], "initial");
    assert_eq!(
        started.body["requirements"],
        json!({
            "$schema": "",
            "description": "Attribute Details",
            "type": "object",
            "properties": {},
            "attributes": [{
                "name": "telephoneNumber",
                "isRequired": true,
                "schema": seed_telephone_schema(),
                "value": null
            }],
            "uiConfig": {
                "displayName": "Add your telephone number",
                "purpose": "Help us verify your identity",
                "buttonText": "Save"
            }
        })
    );
    assert_eq!(
        started.body["requirements"]["attributes"][0]["schema"],
        shipped_user_property("telephoneNumber"),
        "the schema is managed.json's"
    );

    // 3. Submitting the number ends the process.
    let ended = session.post(
        PROFILE_SUBMIT,
        &json!({"input": {"attributes": {"telephoneNumber": "555-1234"}}}),
    );
    assert_eq!(ended.status, 200, "{}", ended.text);
    assert_eq!(
        ended.body,
        json!({"type": "conditionaluser", "tag": "end", "status": {"success": true}, "additions": {}})
    );
    assert_eq!(read_user(&server, &bjensen.id)["telephoneNumber"], "555-1234");

    // 4. The next login (cookie) has full access.
    let refreshed = session.login();
    assert_full_access(&refreshed, "the login after the profile was completed");
    assert_eq!(
        authorization(&refreshed)["roles"],
        json!([AUTHORIZED]),
        "{}",
        refreshed.text
    );
    assert_eq!(authorization(&refreshed)["authLogin"], false, "{}", refreshed.text);
    assert_eq!(authorization(&refreshed)["id"], bjensen.id.as_str());
    assert_eq!(login_count(&server, &bjensen.id), 25, "a cookie login does not count");
    let own = session.get(&bjensen.path());
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(own.body["_id"], bjensen.id.as_str());
    assert_eq!(own.body["telephoneNumber"], "555-1234");

    // The 26th login: `at 25` no longer holds.
    let reply = login_counted(&server, &bjensen);
    assert_eq!(authorization(&reply)["roles"], json!([AUTHORIZED]), "{}", reply.text);
    assert_full_access(&reply, "the 26th login");
}

// ---------------------------------------------------------------------------------------------
// Login-time evaluation and role swap
// ---------------------------------------------------------------------------------------------

#[test]
fn a_pending_process_withholds_the_authorized_role_until_it_ends() {
    let server = TestServer::builder()
        .conf_file(
            "selfservice-profile.json",
            &process(&json!([conditional(
                &json!({"type": "loginCount", "interval": "at", "amount": 2}),
                Some(phone_form()),
                None
            )])),
        )
        .start();
    let user = person(&server);
    let first = login_counted(&server, &user);
    assert_eq!(authorization(&first)["roles"], json!([AUTHORIZED]), "{}", first.text);
    assert_full_access(&first, "the first login");

    let (second, session) = login_session(&server, &user);
    assert_pending(&second, &["selfservice/profile"], "the second login");
    assert_eq!(authorization(&second)["roles"], json!([]), "{}", second.text);

    // Every later request of the session re-checks and stays restricted.
    let info = session.get("/openidm/info/login");
    assert_eq!(info.status, 200, "{}", info.text);
    assert_pending(&info, &["selfservice/profile"], "info/login while pending");
    let own = session.get(&user.path());
    assert_eq!(own.status, 403, "{}", own.text);
    let completeness = session.get("/openidm/selfservice/profile/completeness");
    assert_eq!(completeness.status, 403, "{}", completeness.text);
    let again = session.login();
    assert_pending(&again, &["selfservice/profile"], "a cookie login while pending");
    assert_eq!(authorization(&again)["authLogin"], false, "{}", again.text);

    // A cookie-only write needs X-Requested-With.
    let refused = session.post_without_requested_with(
        PROFILE_SUBMIT,
        &json!({"input": {"attributes": {"telephoneNumber": "555-0000"}}}),
    );
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(read_user(&server, &user.id).get("telephoneNumber"), None);

    let ended = session.post(
        PROFILE_SUBMIT,
        &json!({"input": {"attributes": {"telephoneNumber": "555-0000"}}}),
    );
    assert_eq!(
        ended.body,
        json!({"type": "conditionaluser", "tag": "end", "status": {"success": true}, "additions": {}}),
        "{}",
        ended.text
    );
    // Any request of the session now gets the role back, the login action included.
    let own = session.get(&user.path());
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(own.body["telephoneNumber"], "555-0000");
    let refreshed = session.login();
    assert_full_access(&refreshed, "the cookie login after completion");
    assert_eq!(authorization(&refreshed)["roles"], json!([AUTHORIZED]));
    assert_eq!(login_count(&server, &user.id), 2, "only credential logins count");

    let third = login_counted(&server, &user);
    assert_full_access(&third, "the third login");
}

#[test]
fn the_pending_list_is_rechecked_on_every_request_of_the_session() {
    // The form is wanted while the user has no telephone number; the admin adding one ends it.
    let condition = json!({"type": "propertyValue", "operation": "!pr", "attribute": "telephoneNumber"});
    let server = TestServer::builder()
        .conf_file(
            "selfservice-profile.json",
            &process(&json!([conditional(&condition, Some(phone_form()), None)])),
        )
        .start();
    let user = person(&server);
    let (reply, session) = login_session(&server, &user);
    assert_pending(&reply, &["selfservice/profile"], "login without a telephone number");
    assert_eq!(session.get(&user.path()).status, 403);
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "add", "field": "telephoneNumber", "value": "555-7777"}]),
    );
    let own = session.get(&user.path());
    assert_eq!(
        own.status, 200,
        "the next request of the session re-checked: {}",
        own.text
    );
    let info = session.get("/openidm/info/login");
    assert_full_access(&info, "info/login after the condition stopped holding");
}

#[test]
fn the_authentication_role_stands_in_while_processes_are_pending() {
    let server = TestServer::builder()
        .conf_file(
            "auth.profile.json",
            r#"{"profileEnhancementProcesses": ["selfservice/profile"],
                "authorizationRole": "openidm-authorized", "authenticationRole": "profile-pending"}"#,
        )
        .conf_file(
            "selfservice-profile.json",
            &process(&json!([conditional(
                &json!({"type": "loginCount", "interval": "every", "amount": 1}),
                Some(phone_form()),
                None
            )])),
        )
        .start();
    let user = person(&server);
    let (reply, session) = login_session(&server, &user);
    assert_pending(&reply, &["selfservice/profile"], "the login");
    assert_eq!(
        authorization(&reply)["roles"],
        json!(["internal/role/profile-pending"]),
        "a role name without / is an internal role: {}",
        reply.text
    );
    let ended = session.post(
        PROFILE_SUBMIT,
        &json!({"input": {"attributes": {"telephoneNumber": "555-1111"}}}),
    );
    assert_eq!(ended.body["tag"], "end", "{}", ended.text);
    let refreshed = session.login();
    assert_full_access(&refreshed, "after completion");
    assert_eq!(
        authorization(&refreshed)["roles"],
        json!([AUTHORIZED]),
        "the authentication role is removed again: {}",
        refreshed.text
    );
}

#[test]
fn several_processes_are_required_in_order_and_released_one_by_one() {
    let server = TestServer::builder()
        .conf_file("selfservice-termsAndConditions.json", TERMS_PROCESS)
        .conf_file("selfservice-kbaUpdate.json", KBA_PROCESS)
        .start();
    let user = person(&server);
    let (reply, session) = login_session(&server, &user);
    assert_pending(
        &reply,
        &["selfservice/termsAndConditions", "selfservice/kbaUpdate"],
        "a new user without accepted terms or security questions",
    );
    assert_eq!(authorization(&reply)["roles"], json!([]), "{}", reply.text);

    // Terms: the conditionaluser shows the active terms; accepting them records the acceptance.
    let terms = session.get("/openidm/selfservice/termsAndConditions");
    assert_eq!(terms.status, 200, "{}", terms.text);
    assert_eq!(terms.body["type"], "conditionaluser");
    assert_eq!(terms.body["requirements"]["description"], "Accept Terms and Conditions");
    assert_eq!(terms.body["requirements"]["termsVersion"], "1.0");
    assert_eq!(terms.body["requirements"]["required"], json!(["accept"]));
    let refused = session.post(
        "/openidm/selfservice/termsAndConditions?_action=submitRequirements",
        &json!({"input": {"accept": "false"}}),
    );
    assert_eq!(refused.assert_error(400), "Must accept terms and conditions");
    let accepted = session.post(
        "/openidm/selfservice/termsAndConditions?_action=submitRequirements",
        &json!({"input": {"accept": "true"}}),
    );
    assert_eq!(
        accepted.body,
        json!({"type": "patchObject", "tag": "end", "status": {"success": true}, "additions": {}}),
        "{}",
        accepted.text
    );
    let meta = meta_of(&server, &user.id, "_meta/termsAccepted");
    assert_eq!(meta["termsAccepted"]["termsVersion"], "1.0", "{meta}");
    assert_iso(&meta["termsAccepted"]["acceptDate"], "termsAccepted.acceptDate");
    let between = session.login();
    assert_pending(&between, &["selfservice/kbaUpdate"], "after the terms");

    // Security questions.
    let kba = session.post(
        "/openidm/selfservice/kbaUpdate?_action=submitRequirements",
        &json!({"input": {"kba": [{"questionId": "1", "answer": "Red"},
                                   {"customQuestion": "Name of my first pet?", "answer": "Rex"}]}}),
    );
    assert_eq!(
        kba.body,
        json!({"type": "conditionaluser", "tag": "end", "status": {"success": true}, "additions": {}}),
        "{}",
        kba.text
    );
    let refreshed = session.login();
    assert_full_access(&refreshed, "after both processes");
    assert_eq!(authorization(&refreshed)["roles"], json!([AUTHORIZED]));

    // A new login session finds nothing pending either (terms accepted, two answers stored).
    let (fresh, _) = login_session(&server, &user);
    assert_full_access(&fresh, "a later login");
}

// ---------------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------------

#[test]
fn login_count_at_holds_only_at_that_count() {
    let server = server_for(&json!({"type": "loginCount", "interval": "at", "amount": 2}));
    let user = person(&server);
    assert_eq!(login_count(&server, &user.id), 0, "a new user has loginCount 0");
    assert_eq!(branch(&server, &user), Some(false), "count 0");
    let first = login_counted(&server, &user);
    assert_pending(&first, &["selfservice/profile"], "count 1 (the city form)");
    assert_eq!(branch(&server, &user), Some(false), "count 1");
    login_counted(&server, &user);
    assert_eq!(login_count(&server, &user.id), 2);
    assert_eq!(branch(&server, &user), Some(true), "count 2");
    login_counted(&server, &user);
    assert_eq!(branch(&server, &user), Some(false), "count 3");
}

#[test]
fn login_count_at_25_holds_at_25_only() {
    let server = server_for(&json!({"type": "loginCount", "interval": "at", "amount": 25}));
    let user = person(&server);
    for _ in 0..24 {
        login_counted(&server, &user);
    }
    assert_eq!(branch(&server, &user), Some(false), "count 24");
    login_counted(&server, &user);
    assert_eq!(branch(&server, &user), Some(true), "count 25");
    login_counted(&server, &user);
    assert_eq!(branch(&server, &user), Some(false), "count 26");
}

#[test]
fn login_count_every_holds_at_multiples_including_zero() {
    let server = server_for(&json!({"type": "loginCount", "interval": "every", "amount": 5}));
    let user = person(&server);
    assert_eq!(branch(&server, &user), Some(true), "count 0");
    let mut count = 0;
    for (target, expected) in [(1, false), (4, false), (5, true), (9, false), (10, true), (11, false)] {
        while count < target {
            login_counted(&server, &user);
            count += 1;
        }
        assert_eq!(login_count(&server, &user.id), target);
        assert_eq!(branch(&server, &user), Some(expected), "count {target}");
    }
}

#[test]
fn every_interval_prompts_at_each_multiple_in_a_new_session() {
    let server = TestServer::builder()
        .conf_file(
            "selfservice-profile.json",
            &process(&json!([conditional(
                &json!({"type": "loginCount", "interval": "every", "amount": 2}),
                Some(form(
                    "every second login",
                    &json!([{"name": "city", "isRequired": false}])
                )),
                None
            )])),
        )
        .start();
    let user = person(&server);
    for login in 1..=6 {
        let (reply, session) = login_session(&server, &user);
        if login % 2 == 0 {
            assert_pending(&reply, &["selfservice/profile"], &format!("login {login}"));
            let ended = session.post(
                PROFILE_SUBMIT,
                &json!({"input": {"attributes": {"city": format!("City {login}")}}}),
            );
            assert_eq!(ended.body["tag"], "end", "login {login}: {}", ended.text);
            assert_full_access(&session.login(), &format!("login {login} after the form"));
        } else {
            assert_full_access(&reply, &format!("login {login}"));
        }
    }
    assert_eq!(read_user(&server, &user.id)["city"], "City 6");
}

#[test]
fn login_count_conditions_are_validated() {
    let server = TestServer::start();
    for (condition, message) in [
        (
            json!({"type": "loginCount", "interval": "at", "amount": 0}),
            "Login count amount cannot be less than or equal to zero",
        ),
        (
            json!({"type": "loginCount", "interval": "every", "amount": -3}),
            "Login count amount cannot be less than or equal to zero",
        ),
        (
            json!({"type": "loginCount", "interval": "sometimes", "amount": 2}),
            "Invalid interval type: sometimes",
        ),
    ] {
        assert_refused(&server, &both_ways(&condition), Some(message));
    }
}

#[test]
fn a_bad_condition_stops_the_server_from_starting() {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        TestServer::builder()
            .conf_file(
                "selfservice-profile.json",
                &both_ways(&json!({"type": "loginCount", "interval": "sometimes", "amount": 2})),
            )
            .start()
    }));
    let payload = match outcome {
        Ok(_) => panic!("a server started with interval \"sometimes\""),
        Err(payload) => payload,
    };
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|text| (*text).to_owned()))
        .unwrap_or_default();
    assert!(
        message.contains("selfservice-profile.json") && message.contains("Invalid interval type: sometimes"),
        "the start failure names the file and the problem: {message}"
    );
}

#[test]
fn time_since_counts_from_the_property_to_the_minute() {
    let server = server_for(&json!({"type": "timeSince", "property": "/reviewedAt", "days": 7}));
    let user = person(&server);
    assert_eq!(branch(&server, &user), Some(false), "property missing");
    let null = person_with(&server, &json!({"reviewedAt": null}));
    assert_eq!(branch(&server, &null), Some(false), "property null");
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "replace", "field": "reviewedAt", "value": "soon"}]),
    );
    assert_eq!(branch(&server, &user), Some(false), "not a date-time");

    let week = 7 * 86_400;
    away_from_minute_end();
    let now = now_seconds();
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "replace", "field": "reviewedAt", "value": iso(now - week + 60, "Z")}]),
    );
    assert_eq!(branch(&server, &user), Some(false), "6 days 23 h 59 min ago");
    away_from_minute_end();
    let now = now_seconds();
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "replace", "field": "reviewedAt", "value": iso(now - week, "Z")}]),
    );
    assert_eq!(branch(&server, &user), Some(true), "7 days ago to the minute");
    // The same instant written with an offset.
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "replace", "field": "reviewedAt",
                 "value": iso(now - week + 2 * 3600, "+02:00")}]),
    );
    assert_eq!(branch(&server, &user), Some(true), "7 days ago, written in +02:00");
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "replace", "field": "reviewedAt", "value": iso(now - 30 * 86_400, "Z")}]),
    );
    assert_eq!(branch(&server, &user), Some(true), "30 days ago");
}

#[test]
fn time_since_adds_years_months_weeks_hours_and_minutes() {
    let day = 86_400;
    let cases = [
        (json!({"years": 1}), 367 * day, true),
        (json!({"years": 1}), 330 * day, false),
        (json!({"months": 1}), 32 * day, true),
        (json!({"months": 1}), 27 * day, false),
        (json!({"weeks": 2}), 15 * day, true),
        (json!({"weeks": 2}), 13 * day, false),
        (json!({"hours": 5}), 5 * 3600 + 120, true),
        (json!({"hours": 5}), 4 * 3600, false),
        (json!({"days": 1, "hours": 1, "minutes": 30}), day + 5400 + 120, true),
        (json!({"days": 1, "hours": 1, "minutes": 30}), day + 3600, false),
    ];
    for (offsets, ago, expected) in cases {
        let mut condition = json!({"type": "timeSince", "property": "/reviewedAt"});
        for (key, value) in offsets.as_object().unwrap() {
            condition[key] = value.clone();
        }
        let server = server_for(&condition);
        let user = person_with(&server, &json!({"reviewedAt": iso(now_seconds() - ago, "Z")}));
        assert_eq!(
            branch(&server, &user),
            Some(expected),
            "{offsets} with the property {ago} s ago"
        );
    }
}

#[test]
fn time_since_defaults_to_the_creation_date() {
    let server = server_for(&json!({"type": "timeSince", "days": 1}));
    let user = person(&server);
    assert_eq!(branch(&server, &user), Some(false), "created just now, one day wanted");
    let server = server_for(&json!({"type": "timeSince", "minutes": 0}));
    let user = person(&server);
    assert_eq!(branch(&server, &user), Some(true), "created just now, no delay");
}

#[test]
fn time_since_needs_a_time_field() {
    let server = TestServer::start();
    assert_refused(
        &server,
        &both_ways(&json!({"type": "timeSince", "property": "/_meta/createDate"})),
        None,
    );
}

#[test]
fn profile_completeness_condition_compares_with_percent_less_than() {
    let server = server_for(&json!({"type": "profileCompleteness", "percentLessThan": 50}));
    // 6 of 14 slots: 42.857143 < 50.
    let six = person_with(&server, &json!({"telephoneNumber": "555", "city": "Paris"}));
    assert_eq!(branch(&server, &six), Some(true), "42.857143 < 50");
    // 7 of 14 slots: exactly 50.
    let seven = person_with(
        &server,
        &json!({"telephoneNumber": "555", "city": "Paris", "country": "FR"}),
    );
    assert_eq!(branch(&server, &seven), Some(false), "50 is not < 50");
    let four = person(&server);
    assert_eq!(branch(&server, &four), Some(true), "28.571428 < 50");
}

#[test]
fn property_value_eq_is_case_insensitive_and_negatable() {
    let eq = server_for(&json!({"type": "propertyValue", "operation": "eq", "attribute": "country", "value": "US"}));
    let us = person_with(&eq, &json!({"country": "us"}));
    assert_eq!(branch(&eq, &us), Some(true), "country us eq US");
    let fr = person_with(&eq, &json!({"country": "FR"}));
    assert_eq!(branch(&eq, &fr), Some(false), "country FR eq US");
    let none = person(&eq);
    assert_eq!(branch(&eq, &none), Some(false), "no country");

    let not_eq =
        server_for(&json!({"type": "propertyValue", "operation": "!eq", "attribute": "country", "value": "US"}));
    let us = person_with(&not_eq, &json!({"country": "us"}));
    assert_eq!(branch(&not_eq, &us), Some(false), "country us !eq US");
    let fr = person_with(&not_eq, &json!({"country": "FR"}));
    assert_eq!(branch(&not_eq, &fr), Some(true), "country FR !eq US");
}

#[test]
fn property_value_presence_and_other_operations() {
    let pr = server_for(&json!({"type": "propertyValue", "operation": "pr", "attribute": "telephoneNumber"}));
    let without = person(&pr);
    assert_eq!(branch(&pr, &without), Some(false), "pr without the property");
    let with = person_with(&pr, &json!({"telephoneNumber": "555"}));
    assert_eq!(branch(&pr, &with), Some(true), "pr with the property");

    let not_pr = server_for(&json!({"type": "propertyValue", "operation": "!pr", "attribute": "telephoneNumber"}));
    let without = person(&not_pr);
    assert_eq!(branch(&not_pr, &without), Some(true), "!pr without the property");
    let with = person_with(&not_pr, &json!({"telephoneNumber": "555"}));
    assert_eq!(branch(&not_pr, &with), Some(false), "!pr with the property");

    let cases = [
        (
            json!({"operation": "co", "attribute": "mail", "value": "EXAMPLE"}),
            json!({}),
            true,
        ),
        (
            json!({"operation": "sw", "attribute": "city", "value": "Par"}),
            json!({"city": "Paris"}),
            true,
        ),
        (
            json!({"operation": "sw", "attribute": "city", "value": "Lyo"}),
            json!({"city": "Paris"}),
            false,
        ),
        (
            json!({"operation": "gt", "attribute": "/level", "value": 3}),
            json!({"level": 5}),
            true,
        ),
        (
            json!({"operation": "gt", "attribute": "/level", "value": 3}),
            json!({"level": 3}),
            false,
        ),
        (
            json!({"operation": "ge", "attribute": "/level", "value": 3}),
            json!({"level": 3}),
            true,
        ),
        (
            json!({"operation": "lt", "attribute": "/level", "value": 3}),
            json!({"level": 2}),
            true,
        ),
        (
            json!({"operation": "le", "attribute": "/level", "value": 3}),
            json!({"level": 4}),
            false,
        ),
        (
            json!({"operation": "!gt", "attribute": "/level", "value": 3}),
            json!({"level": 4}),
            false,
        ),
        (
            json!({"operation": "eq", "attribute": "/_meta/loginCount", "value": 0}),
            json!({}),
            true,
        ),
    ];
    for (mut condition, extra, expected) in cases {
        condition["type"] = json!("propertyValue");
        let server = server_for(&condition);
        let user = person_with(&server, &extra);
        assert_eq!(branch(&server, &user), Some(expected), "{condition} on {extra}");
    }
}

#[test]
fn property_value_rejects_an_object_or_array_value() {
    let server = TestServer::start();
    for value in [json!({"a": 1}), json!(["US"])] {
        assert_refused(
            &server,
            &both_ways(&json!({"type": "propertyValue", "operation": "eq", "attribute": "country", "value": value})),
            None,
        );
    }
}

#[test]
fn query_filter_condition_is_evaluated_on_the_user() {
    let server = server_for(&json!({"type": "queryFilter",
                                    "filter": "city eq \"Paris\" and (telephoneNumber pr or /_meta/loginCount ge 1)"}));
    let paris = person_with(&server, &json!({"city": "Paris"}));
    assert_eq!(
        branch(&server, &paris),
        Some(false),
        "Paris, no telephone, never logged in"
    );
    login_counted(&server, &paris);
    assert_eq!(branch(&server, &paris), Some(true), "Paris, logged in once");
    let phone = person_with(&server, &json!({"city": "paris", "telephoneNumber": "555"}));
    assert_eq!(branch(&server, &phone), Some(true), "paris with a telephone");
    let lyon = person_with(&server, &json!({"city": "Lyon", "telephoneNumber": "555"}));
    assert_eq!(branch(&server, &lyon), Some(false), "Lyon");
}

#[test]
fn terms_condition_holds_until_the_active_version_is_accepted() {
    let server = TestServer::builder()
        .conf_file("selfservice.terms.json", &terms_conf("1.5"))
        .conf_file("selfservice-profile.json", TERMS_PROCESS)
        .start();
    let user = person(&server);
    // Absent acceptance → the terms are asked.
    let started = user.actor(&server).get(PROFILE).send();
    assert_eq!(started.status, 200, "{}", started.text);
    assert_eq!(started.body["type"], "conditionaluser");
    assert_eq!(started.body["requirements"]["termsVersion"], "1.5", "{}", started.text);
    assert_eq!(started.body["requirements"]["terms"], "Old terms", "{}", started.text);
    let accepted = user
        .actor(&server)
        .post(PROFILE_SUBMIT, &json!({"input": {"accept": "true"}}))
        .send();
    assert_eq!(accepted.body["tag"], "end", "{}", accepted.text);
    let meta = meta_of(&server, &user.id, "_meta/termsAccepted");
    assert_eq!(meta["termsAccepted"]["termsVersion"], "1.5", "{meta}");
    // Accepted "1.5" while "1.5" is active → nothing to ask.
    let started = user.actor(&server).get(PROFILE).send();
    assert_eq!(started.body["requirements"], json!({}), "{}", started.text);

    // Version 2.0 becomes active: accepted "1.5" ≠ "2.0" → asked again.
    save_conf(&server, "selfservice.terms.json", &terms_conf("2.0"));
    server.wait_until(RELOAD, "the new terms to be asked", || {
        user.actor(&server).get(PROFILE).send().body["requirements"]["termsVersion"] == "2.0"
    });
    let started = user.actor(&server).get(PROFILE).send();
    assert_eq!(started.body["requirements"]["terms"], "New terms", "{}", started.text);
    let accepted = user
        .actor(&server)
        .post(PROFILE_SUBMIT, &json!({"input": {"accept": "true"}}))
        .send();
    assert_eq!(accepted.body["tag"], "end", "{}", accepted.text);
    let meta = meta_of(&server, &user.id, "_meta/termsAccepted");
    assert_eq!(meta["termsAccepted"]["termsVersion"], "2.0", "{meta}");
    assert_iso(&meta["termsAccepted"]["acceptDate"], "acceptDate");
    let started = user.actor(&server).get(PROFILE).send();
    assert_eq!(
        started.body["requirements"],
        json!({}),
        "2.0 accepted: {}",
        started.text
    );
}

#[test]
fn kba_questions_condition_counts_answers_against_the_minimum() {
    // selfservice.kba.json (shipped): minimumAnswersToDefine 2.
    let server = TestServer::builder()
        .conf_file("selfservice-kbaUpdate.json", KBA_PROCESS)
        .start();
    let asked = |user: &Person| {
        let reply = user.actor(&server).get("/openidm/selfservice/kbaUpdate").send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.body["requirements"] != json!({})
    };
    let none = person(&server);
    assert!(
        asked(&none),
        "no kbaInfo: the condition is false, onConditionFalse asks"
    );
    let one = person_with(&server, &json!({"kbaInfo": [kba_entry("1")]}));
    assert!(asked(&one), "1 answer of 2: false → asked");
    let two = person_with(&server, &json!({"kbaInfo": [kba_entry("1"), kba_entry("2")]}));
    assert!(!asked(&two), "2 answers of 2: true → no onConditionTrue → passes");
    let ended = two
        .actor(&server)
        .post(
            "/openidm/selfservice/kbaUpdate?_action=submitRequirements",
            &json!({"input": {}}),
        )
        .send();
    assert_eq!(
        ended.body,
        json!({"type": "conditionaluser", "tag": "end", "status": {"success": true}, "additions": {}}),
        "{}",
        ended.text
    );
}

#[test]
fn scripted_conditions_see_the_user() {
    let file_condition = json!({"type": "scripted",
                                "script": {"type": "text/rhai", "file": "scripts/conditions/paris.rhai"}});
    let server = TestServer::builder()
        .edit(|project| {
            std::fs::create_dir_all(project.join("scripts/conditions")).unwrap();
            std::fs::write(
                project.join("scripts/conditions/paris.rhai"),
                "// true for users living in Paris\nuser.city == \"Paris\"\n",
            )
            .unwrap();
        })
        .conf_file("selfservice-profile.json", &both_ways(&file_condition))
        .start();
    let paris = person_with(&server, &json!({"city": "Paris"}));
    assert_eq!(branch(&server, &paris), Some(true), "file script, Paris");
    let lyon = person_with(&server, &json!({"city": "Lyon"}));
    assert_eq!(branch(&server, &lyon), Some(false), "file script, Lyon");
    let nowhere = person(&server);
    assert_eq!(branch(&server, &nowhere), Some(false), "file script, no city");

    // An inline script reading the metadata.
    let inline = json!({"type": "scripted",
                        "script": {"type": "text/rhai", "source": "user._meta.loginCount >= 2"}});
    let server = server_for(&inline);
    let user = person(&server);
    login_counted(&server, &user);
    assert_eq!(branch(&server, &user), Some(false), "one login");
    login_counted(&server, &user);
    assert_eq!(branch(&server, &user), Some(true), "two logins");
}

#[test]
fn unknown_condition_types_are_refused() {
    let server = TestServer::start();
    assert_refused(
        &server,
        &both_ways(&json!({"type": "moonPhase", "phase": "full"})),
        None,
    );
    assert_refused(&server, &both_ways(&json!({"percentLessThan": 50})), None);
}

#[test]
fn an_absent_branch_passes_and_the_process_ends_in_the_same_submit() {
    let server = TestServer::builder()
        .conf_file(
            "selfservice-profile.json",
            &process(&json!([
                conditional(
                    &json!({"type": "propertyValue", "operation": "pr", "attribute": "city"}),
                    None,
                    Some(city_form())
                ),
                conditional(
                    &json!({"type": "propertyValue", "operation": "pr", "attribute": "telephoneNumber"}),
                    None,
                    Some(phone_form())
                )
            ])),
        )
        .start();
    let complete = person_with(&server, &json!({"city": "Paris", "telephoneNumber": "555"}));
    let started = complete.actor(&server).get(PROFILE).send();
    assert_eq!(started.body["requirements"], json!({}), "{}", started.text);
    let ended = complete
        .actor(&server)
        .post(PROFILE_SUBMIT, &json!({"input": {}}))
        .send();
    assert_eq!(
        ended.body,
        json!({"type": "conditionaluser", "tag": "end", "status": {"success": true}, "additions": {}}),
        "both conditions true, no onConditionTrue: {}",
        ended.text
    );

    // The first passes, the second asks: its requirements come with type conditionaluser.
    let no_phone = person_with(&server, &json!({"city": "Paris"}));
    let asked = no_phone
        .actor(&server)
        .post(PROFILE_SUBMIT, &json!({"input": {}}))
        .send();
    assert_eq!(asked.status, 200, "{}", asked.text);
    assert_eq!(asked.body["type"], "conditionaluser");
    assert_eq!(asked.body["tag"], "initial");
    assert_eq!(asked.body["requirements"]["uiConfig"]["displayName"], "when true");
    let token = asked.body["token"].as_str().expect("a token").to_owned();
    let ended = no_phone
        .actor(&server)
        .post(
            PROFILE_SUBMIT,
            &json!({"token": token, "input": {"attributes": {"telephoneNumber": "555-2222"}}}),
        )
        .send();
    assert_eq!(ended.body["tag"], "end", "{}", ended.text);
    assert_eq!(read_user(&server, &no_phone.id)["telephoneNumber"], "555-2222");
}

#[test]
fn consecutive_forms_are_asked_one_after_the_other() {
    let always = json!({"type": "loginCount", "interval": "every", "amount": 1});
    let server = TestServer::builder()
        .conf_file(
            "selfservice-profile.json",
            &process(&json!([
                conditional(&always, Some(phone_form()), None),
                conditional(&always, Some(city_form()), None)
            ])),
        )
        .start();
    let user = person(&server);
    let (reply, session) = login_session(&server, &user);
    assert_pending(&reply, &["selfservice/profile"], "login");
    let started = session.get(PROFILE);
    assert_eq!(started.body["requirements"]["uiConfig"]["displayName"], "when true");
    let next = session.post(
        PROFILE_SUBMIT,
        &json!({"input": {"attributes": {"telephoneNumber": "555-3333"}}}),
    );
    assert_eq!(next.status, 200, "{}", next.text);
    assert_eq!(next.body["type"], "conditionaluser");
    assert_eq!(next.body["tag"], "initial");
    assert_eq!(next.body["requirements"]["uiConfig"]["displayName"], "when false");
    assert_eq!(next.body["requirements"]["attributes"][0]["name"], "city");
    // Half-way the session still lacks the role.
    assert_pending(
        &session.get("/openidm/info/login"),
        &["selfservice/profile"],
        "half-way",
    );
    let ended = session.post(
        PROFILE_SUBMIT,
        &json!({"token": next.body["token"], "input": {"attributes": {"city": "Oslo"}}}),
    );
    assert_eq!(ended.body["tag"], "end", "{}", ended.text);
    assert_full_access(&session.login(), "both forms done");
    let stored = read_user(&server, &user.id);
    assert_eq!(stored["telephoneNumber"], "555-3333");
    assert_eq!(stored["city"], "Oslo");
}

// ---------------------------------------------------------------------------------------------
// Completion tracking
// ---------------------------------------------------------------------------------------------

#[test]
fn a_non_time_since_form_is_done_for_the_session_only() {
    let server = TestServer::builder()
        .conf_file(
            "selfservice-profile.json",
            &process(&json!([conditional(
                &json!({"type": "loginCount", "interval": "every", "amount": 1}),
                Some(phone_form()),
                None
            )])),
        )
        .start();
    let user = person(&server);
    let (reply, first) = login_session(&server, &user);
    assert_pending(&reply, &["selfservice/profile"], "the first session");
    let ended = first.post(
        PROFILE_SUBMIT,
        &json!({"input": {"attributes": {"telephoneNumber": "555-4444"}}}),
    );
    assert_eq!(ended.body["tag"], "end", "{}", ended.text);
    // Same session: skipped.
    let again = first.get(PROFILE);
    assert_eq!(
        again.body["requirements"],
        json!({}),
        "same session, GET: {}",
        again.text
    );
    let again = first.post(PROFILE_SUBMIT, &json!({"input": {}}));
    assert_eq!(
        again.body,
        json!({"type": "conditionaluser", "tag": "end", "status": {"success": true}, "additions": {}}),
        "same session, submit"
    );
    assert_full_access(&first.login(), "the first session after the form");

    let meta = meta_of(&server, &user.id, "_meta/stagesCompleted");
    let done = meta["stagesCompleted"].as_array().expect("stagesCompleted");
    assert_eq!(done.len(), 1, "{meta}");

    // A new login session: the condition still holds → asked again.
    let (reply, second) = login_session(&server, &user);
    assert_pending(&reply, &["selfservice/profile"], "the second session");
    let asked = second.get(PROFILE);
    assert_eq!(asked.body["requirements"]["uiConfig"]["displayName"], "when true");
    assert_eq!(
        asked.body["requirements"]["attributes"][0]["value"], "555-4444",
        "the current value is shown"
    );
    // Header credentials without a session are a new session every time: asked as well.
    assert_eq!(branch(&server, &user), Some(true));
    // The first session keeps its record.
    assert_eq!(first.get(PROFILE).body["requirements"], json!({}));
}

#[test]
fn a_time_since_form_is_never_asked_again() {
    let server = TestServer::builder()
        .conf_file(
            "selfservice-profile.json",
            &process(&json!([conditional(
                &json!({"type": "timeSince", "property": "/_meta/createDate", "minutes": 0}),
                Some(phone_form()),
                None
            )])),
        )
        .start();
    let user = person(&server);
    let (reply, session) = login_session(&server, &user);
    assert_pending(&reply, &["selfservice/profile"], "the first login");
    let ended = session.post(
        PROFILE_SUBMIT,
        &json!({"input": {"attributes": {"telephoneNumber": "555-5555"}}}),
    );
    assert_eq!(ended.body["tag"], "end", "{}", ended.text);

    let meta = meta_of(&server, &user.id, "_meta/stagesCompleted");
    let done = meta["stagesCompleted"].as_array().expect("stagesCompleted");
    assert_eq!(done.len(), 1, "{meta}");
    let identifier = done[0]["identifier"].as_str().expect("identifier");
    assert!(
        identifier.len() == 64 && identifier.bytes().all(|b| b.is_ascii_hexdigit()),
        "the identifier is a SHA-256: {identifier}"
    );
    assert_iso(&done[0]["dateCompleted"], "dateCompleted");

    // New sessions, header credentials, even with the number removed: never again.
    let (reply, other) = login_session(&server, &user);
    assert_full_access(&reply, "a new login session");
    assert_eq!(other.get(PROFILE).body["requirements"], json!({}));
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "remove", "field": "telephoneNumber"}]),
    );
    assert_eq!(branch(&server, &user), None, "header credentials");
    let reply = login_counted(&server, &user);
    assert_full_access(&reply, "yet another login");
    let meta = meta_of(&server, &user.id, "_meta/stagesCompleted");
    assert_eq!(meta["stagesCompleted"].as_array().map(Vec::len), Some(1), "{meta}");
}

// ---------------------------------------------------------------------------------------------
// attributecollection
// ---------------------------------------------------------------------------------------------

/// A server whose profile process always asks `attributes` (form "collect").
fn collecting(attributes: &Value) -> TestServer {
    TestServer::builder()
        .conf_file(
            "selfservice-profile.json",
            &process(&json!([conditional(
                &json!({"type": "loginCount", "interval": "every", "amount": 1}),
                Some(form("collect", attributes)),
                None
            )])),
        )
        .start()
}

#[test]
fn submitting_without_attributes_asks_again() {
    let server = collecting(&json!([{"name": "telephoneNumber", "isRequired": true}]));
    let user = person(&server);
    let started = user.actor(&server).get(PROFILE).send();
    for input in [json!({}), json!({"other": 1})] {
        let again = user
            .actor(&server)
            .post(PROFILE_SUBMIT, &json!({"input": input}))
            .send();
        assert_eq!(again.status, 200, "{}", again.text);
        assert_eq!(again.body["type"], "conditionaluser");
        assert_eq!(again.body["tag"], "initial");
        assert_eq!(
            again.body["requirements"], started.body["requirements"],
            "input {input}"
        );
        assert!(again.body["token"].is_string());
        // The token continues the same stage.
        let token = again.body["token"].clone();
        let still = user
            .actor(&server)
            .post(PROFILE_SUBMIT, &json!({"token": token, "input": {}}))
            .send();
        assert_eq!(
            still.body["requirements"], started.body["requirements"],
            "{}",
            still.text
        );
    }
    assert_eq!(read_user(&server, &user.id).get("telephoneNumber"), None);
}

#[test]
fn a_required_attribute_must_be_given() {
    let server = collecting(&json!([{"name": "telephoneNumber", "isRequired": true}]));
    let user = person(&server);
    let started = user.actor(&server).get(PROFILE).send();
    for attributes in [json!({}), json!({"telephoneNumber": null}), json!({"city": "Paris"})] {
        let again = user
            .actor(&server)
            .post(PROFILE_SUBMIT, &json!({"input": {"attributes": attributes}}))
            .send();
        assert_eq!(again.status, 200, "{}", again.text);
        assert_eq!(again.body["tag"], "initial", "{attributes}: {}", again.text);
        assert_eq!(again.body["requirements"], started.body["requirements"], "{attributes}");
    }
    let stored = read_user(&server, &user.id);
    assert_eq!(stored.get("telephoneNumber"), None);
    assert_eq!(stored.get("city"), None, "nothing is patched while asking again");

    let ended = user
        .actor(&server)
        .post(
            PROFILE_SUBMIT,
            &json!({"input": {"attributes": {"telephoneNumber": "555"}}}),
        )
        .send();
    assert_eq!(
        ended.body,
        json!({"type": "conditionaluser", "tag": "end", "status": {"success": true}, "additions": {}}),
        "{}",
        ended.text
    );
    assert_eq!(read_user(&server, &user.id)["telephoneNumber"], "555");
}

#[test]
fn an_invalid_value_fails_policy_validation_and_stores_nothing() {
    let server = collecting(&json!([{"name": "telephoneNumber", "isRequired": true},
                                     {"name": "city", "isRequired": false}]));
    let user = person(&server);
    let (_, session) = login_session(&server, &user);
    let refused = session.post(
        PROFILE_SUBMIT,
        &json!({"input": {"attributes": {"telephoneNumber": "call me maybe", "city": "Paris"}}}),
    );
    assert_eq!(
        refused.assert_error(403),
        "Failed policy validation",
        "{}",
        refused.text
    );
    let failed = refused.body["detail"]["failedPolicyRequirements"]
        .as_array()
        .unwrap_or_else(|| panic!("no failedPolicyRequirements: {}", refused.text));
    assert!(
        failed.iter().any(|failure| failure["property"] == "telephoneNumber"),
        "{}",
        refused.text
    );
    let stored = read_user(&server, &user.id);
    assert_eq!(stored.get("telephoneNumber"), None, "{stored}");
    assert_eq!(stored.get("city"), None, "{stored}");
    let meta = meta_of(&server, &user.id, "_meta/stagesCompleted");
    assert!(
        meta.get("stagesCompleted")
            .is_none_or(|done| done == &json!([]) || done.is_null()),
        "a refused form is not completed: {meta}"
    );
    // Still asked in the same session.
    let asked = session.get(PROFILE);
    assert_eq!(
        asked.body["requirements"]["uiConfig"]["displayName"], "collect",
        "{}",
        asked.text
    );
    assert_pending(
        &session.get("/openidm/info/login"),
        &["selfservice/profile"],
        "after the refusal",
    );
}

#[test]
fn an_unknown_attribute_is_refused() {
    let server = collecting(&json!([{"name": "telephoneNumber", "isRequired": false}]));
    let user = person(&server);
    let refused = user
        .actor(&server)
        .post(
            PROFILE_SUBMIT,
            &json!({"input": {"attributes": {"telephoneNumber": "555", "favouriteColour": "red"}}}),
        )
        .send();
    assert_eq!(
        refused.body,
        json!({"code": 400, "reason": "Bad Request", "message": "Unable to patch the unknown attribute: favouriteColour"}),
        "{}",
        refused.text
    );
    let stored = read_user(&server, &user.id);
    assert_eq!(stored.get("telephoneNumber"), None, "{stored}");
    assert_eq!(stored.get("favouriteColour"), None, "{stored}");
    let nested = user
        .actor(&server)
        .post(
            PROFILE_SUBMIT,
            &json!({"input": {"attributes": {"preferences/colour": "red"}}}),
        )
        .send();
    assert_eq!(
        nested.assert_error(400),
        "Unable to patch the unknown attribute: preferences/colour"
    );
}

#[test]
fn requirements_carry_schema_value_and_ui_config_and_null_removes() {
    let server = collecting(&json!([
        {"name": "city", "isRequired": false},
        {"name": "preferences/marketing", "isRequired": false},
        {"name": "telephoneNumber"}
    ]));
    let user = person_with(&server, &json!({"city": "Paris", "preferences": {"marketing": true}}));
    let started = user.actor(&server).get(PROFILE).send();
    assert_eq!(started.status, 200, "{}", started.text);
    let requirements = &started.body["requirements"];
    assert_eq!(requirements["description"], "Attribute Details");
    assert_eq!(requirements["type"], "object");
    assert_eq!(requirements["properties"], json!({}));
    assert_eq!(
        requirements["uiConfig"],
        json!({"displayName": "collect", "purpose": "Testing", "buttonText": "Save"})
    );
    assert_eq!(
        requirements["attributes"],
        json!([
            {"name": "city", "isRequired": false, "schema": shipped_user_property("city"), "value": "Paris"},
            {"name": "preferences/marketing", "isRequired": false,
             "schema": shipped_user_property("preferences")["properties"]["marketing"], "value": true},
            {"name": "telephoneNumber", "isRequired": false, "schema": seed_telephone_schema(), "value": null}
        ]),
        "{}",
        started.text
    );
    let ended = user
        .actor(&server)
        .post(
            PROFILE_SUBMIT,
            &json!({"input": {"attributes": {"city": null, "preferences/marketing": false, "telephoneNumber": "555"}}}),
        )
        .send();
    assert_eq!(ended.body["tag"], "end", "{}", ended.text);
    let stored = read_user(&server, &user.id);
    assert_eq!(stored.get("city"), None, "null removes: {stored}");
    assert_eq!(stored["preferences"]["marketing"], false, "{stored}");
    assert_eq!(stored["telephoneNumber"], "555", "{stored}");
}

#[test]
fn an_empty_attribute_list_has_only_the_description() {
    let server = collecting(&json!([]));
    let user = person(&server);
    let started = user.actor(&server).get(PROFILE).send();
    assert_eq!(started.status, 200, "{}", started.text);
    assert_eq!(
        started.body["requirements"],
        json!({"description": "Attribute Details"})
    );
}

#[test]
fn an_optional_form_completes_with_nothing_filled() {
    let server = collecting(&json!([{"name": "city", "isRequired": false}]));
    let user = person(&server);
    let (reply, session) = login_session(&server, &user);
    assert_pending(
        &reply,
        &["selfservice/profile"],
        "an optional form is still pending at login",
    );
    // Skipping (no attributes) is not done.
    let skipped = session.post(PROFILE_SUBMIT, &json!({"input": {}}));
    assert_eq!(skipped.body["tag"], "initial", "{}", skipped.text);
    assert_pending(&session.login(), &["selfservice/profile"], "after skipping");
    // Submitting the form empty completes it.
    let ended = session.post(PROFILE_SUBMIT, &json!({"input": {"attributes": {}}}));
    assert_eq!(ended.body["tag"], "end", "{}", ended.text);
    assert_full_access(&session.login(), "after the empty form");
    assert_eq!(read_user(&server, &user.id).get("city"), None);
}

// ---------------------------------------------------------------------------------------------
// kbaUpdateStage
// ---------------------------------------------------------------------------------------------

#[test]
fn kba_update_shows_existing_questions_and_stores_hashed_answers() {
    let server = TestServer::builder()
        .conf_file("selfservice-kbaUpdate.json", KBA_ALWAYS_PROCESS)
        .start();
    let user = person_with(&server, &json!({"kbaInfo": [kba_entry("2")]}));
    const KBA: &str = "/openidm/selfservice/kbaUpdate?_action=submitRequirements";
    let started = user.actor(&server).get("/openidm/selfservice/kbaUpdate").send();
    assert_eq!(started.status, 200, "{}", started.text);
    assert_eq!(started.body["type"], "conditionaluser");
    let requirements = &started.body["requirements"];
    assert_eq!(
        requirements["description"], "Knowledge based questions",
        "{}",
        started.text
    );
    assert_eq!(requirements["type"], "object");
    assert_eq!(requirements["required"], json!(["kba"]));
    assert_eq!(requirements["properties"]["kba"]["type"], "array");
    assert_eq!(
        requirements["properties"]["kba"]["minItems"], 2,
        "minimumAnswersToDefine"
    );
    assert_eq!(
        requirements["properties"]["kba"]["questions"],
        json!([
            {"id": "1", "question": {"en": "What's your favorite color?", "fr": "Quelle est votre couleur préférée ?"}},
            {"id": "2", "question": {"en": "Who was your first employer?", "fr": "Quel a été votre premier employeur ?"}}
        ])
    );
    assert_eq!(
        requirements["existingKba"],
        json!([{"questionId": "2"}]),
        "questions only, never answers"
    );
    assert_eq!(
        requirements["uiConfig"],
        json!({"displayName": "Update your security questions", "purpose": "Keep your account safe",
               "buttonText": "Update"})
    );
    let refused = user
        .actor(&server)
        .post(
            KBA,
            &json!({"input": {"kba": [{"questionId": "1", "answer": "Red"}], "user": {"userName": "x"}}}),
        )
        .send();
    assert_eq!(
        refused.assert_error(400),
        "Input other than &#39;kba&#39; is not allowed",
        "the message is HTML-escaped"
    );
    let too_few = user
        .actor(&server)
        .post(KBA, &json!({"input": {"kba": [{"questionId": "1", "answer": "Red"}]}}))
        .send();
    too_few.assert_error(400);
    assert_eq!(
        read_user(&server, &user.id)["kbaInfo"],
        json!([kba_entry("2")]),
        "unchanged"
    );

    let ended = user
        .actor(&server)
        .post(
            KBA,
            &json!({"input": {"kba": [{"questionId": "1", "answer": "Crimson Red"},
                                       {"customQuestion": "Name of my first pet?", "answer": "Rexosaurus"}]}}),
        )
        .send();
    assert_eq!(
        ended.body,
        json!({"type": "conditionaluser", "tag": "end", "status": {"success": true}, "additions": {}}),
        "{}",
        ended.text
    );
    let stored = server.admin().get(&format!("{}?_fields=kbaInfo", user.path())).send();
    assert_eq!(stored.status, 200, "{}", stored.text);
    let kba = stored.body["kbaInfo"].as_array().expect("kbaInfo");
    assert_eq!(kba.len(), 2, "{}", stored.text);
    assert_eq!(kba[0]["questionId"], "1");
    assert_eq!(kba[1]["customQuestion"], "Name of my first pet?");
    for entry in kba {
        assert_eq!(entry["answer"]["$crypto"]["type"], "salted-hash", "{entry}");
        assert_eq!(entry["answer"]["$crypto"]["value"]["algorithm"], "SHA-256", "{entry}");
        assert!(entry["answer"]["$crypto"]["value"]["data"].is_string(), "{entry}");
    }
    let text = stored.text.to_lowercase();
    assert!(
        !text.contains("crimson") && !text.contains("rexosaurus"),
        "answers are stored hashed: {}",
        stored.text
    );
    // Asked again in a new session: the questions now defined are listed, never the answers.
    let after = user.actor(&server).get("/openidm/selfservice/kbaUpdate").send();
    assert_eq!(
        after.body["requirements"]["existingKba"],
        json!([{"questionId": "1"}, {"customQuestion": "Name of my first pet?"}]),
        "{}",
        after.text
    );
    // Like the definition stage: items reference the two question definitions.
    assert_eq!(
        started.body["requirements"]["properties"]["kba"]["items"],
        json!({"type": "object", "oneOf": [{"$ref": "#/definitions/systemQuestion"},
                                             {"$ref": "#/definitions/userQuestion"}]}),
        "{}",
        started.text
    );
    assert_eq!(
        started.body["requirements"]["definitions"]["systemQuestion"]["required"],
        json!(["questionId", "answer"])
    );
    assert_eq!(
        started.body["requirements"]["definitions"]["userQuestion"]["required"],
        json!(["customQuestion", "answer"])
    );
}

// ---------------------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------------------

#[test]
fn metadata_is_kept_and_read_through_fields() {
    let server = TestServer::builder()
        .conf_file("selfservice-termsAndConditions.json", TERMS_PROCESS)
        .manual_clock()
        .start();
    let user = person(&server);
    let plain = read_user(&server, &user.id);
    assert_eq!(plain.get("_meta"), None, "_meta is not returned by default: {plain}");
    let created = meta_of(&server, &user.id, "_meta/createDate,_meta/lastChanged,_meta/loginCount");
    assert_iso(&created["createDate"], "createDate");
    assert_iso(&created["lastChanged"]["date"], "lastChanged.date");
    assert_eq!(created["loginCount"], 0);

    server.advance_clock(Duration::from_secs(1));
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "add", "field": "city", "value": "Rome"}]),
    );
    let changed = meta_of(&server, &user.id, "_meta/createDate,_meta/lastChanged");
    assert_eq!(changed["createDate"], created["createDate"], "createDate does not move");
    assert!(
        changed["lastChanged"]["date"].as_str() > created["lastChanged"]["date"].as_str(),
        "lastChanged moves on update: {created} → {changed}"
    );

    login_counted(&server, &user);
    let accepted = user
        .actor(&server)
        .post(
            "/openidm/selfservice/termsAndConditions?_action=submitRequirements",
            &json!({"input": {"accept": "true"}}),
        )
        .send();
    assert_eq!(accepted.body["tag"], "end", "{}", accepted.text);
    let all = meta_of(
        &server,
        &user.id,
        "_meta/createDate,_meta/lastChanged,_meta/loginCount,_meta/stagesCompleted,_meta/termsAccepted",
    );
    assert_eq!(all["loginCount"], 1, "{all}");
    assert_eq!(all["termsAccepted"]["termsVersion"], "1.0", "{all}");
    assert_iso(&all["termsAccepted"]["acceptDate"], "acceptDate");
    let done = all["stagesCompleted"].as_array().expect("stagesCompleted");
    assert_eq!(done.len(), 1, "the terms form was recorded: {all}");
    assert_iso(&done[0]["dateCompleted"], "dateCompleted");
    // One field alone.
    let one = server
        .admin()
        .get(&format!("{}?_fields=_meta/loginCount", user.path()))
        .send();
    assert_eq!(one.body["_meta"], json!({"loginCount": 1}), "{}", one.text);
}
