//! Hot reload and the configuration endpoints (idm-api.md §11, ferridm.md §2.1, §3,
//! scripts/README.md "Reloading and checking", "Policies", "Triggers"): an administrator's own
//! policy script enforced without restart, a broken script or JSON file refused with its file
//! and position while the last good generation keeps serving, `GET /openidm/config`,
//! `…/config/status`, `GET/PUT/PATCH /openidm/config/<id>`, and object triggers from
//! `managed.json`.

use std::path::Path;
use std::time::Duration;

use ferridm_tests::{TestServer, unique};
use serde_json::{Value, json};

use crate::crud::{assert_alive, count, keys, user_body, user_with};
use crate::policies::validate_object;

/// How long a reload may take to show (the harness debounces 50 ms).
const RELOAD: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Replaces a file the way an editor's atomic save does (hidden temporary file, then rename),
/// so the watcher never sees it half-written.
fn save(path: &Path, contents: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let temporary = path.with_file_name(format!(".{}.saving", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn save_json(path: &Path, value: &Value) {
    save(path, &serde_json::to_string_pretty(value).unwrap());
}

/// Changes the user type in a `managed.json` value.
fn user_type(managed: &mut Value) -> &mut Value {
    managed["objects"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|object| object["name"] == "user")
        .unwrap()
}

/// `GET /openidm/config/status`.
fn status(server: &TestServer) -> Value {
    let reply = server.admin().get("/openidm/config/status").send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body
}

fn generation(server: &TestServer) -> u64 {
    status(server)["generation"].as_u64().expect("generation is a number")
}

fn wait_for_generation_after(server: &TestServer, before: u64) {
    // Errors already shown belong to an earlier refusal; only a new one ends the wait early.
    let earlier_errors = status(server)["errors"].clone();
    server.wait_until(RELOAD, "a new configuration generation or a refusal", || {
        let now = status(server);
        now["generation"].as_u64().is_some_and(|g| g > before)
            || (now["errors"] != earlier_errors && now["errors"].as_array().is_some_and(|errors| !errors.is_empty()))
    });
    let now = status(server);
    assert_eq!(now["errors"], json!([]), "the change was refused: {now}");
    assert!(now["generation"].as_u64().is_some_and(|g| g > before), "{now}");
}

fn wait_for_errors(server: &TestServer) -> Value {
    server.wait_until(RELOAD, "the refused reload to show in config/status", || {
        status(server)["errors"]
            .as_array()
            .is_some_and(|errors| !errors.is_empty())
    });
    status(server)
}

/// The error of `status` about a file whose name ends with `file`.
fn error_about<'a>(status: &'a Value, file: &str) -> &'a Value {
    status["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .find(|error| error["file"].as_str().is_some_and(|f| f.ends_with(file)))
        .unwrap_or_else(|| panic!("no error about {file} in {status}"))
}

const NO_DIGITS: &str = r#"// scripts/policies/noDigits.rhai
addPolicy(#{
    policyId: "no-digits",
    policyExec: "noDigits",
    policyRequirements: ["NO_DIGITS"],
    validateOnlyIfPresent: true,
    clientValidation: true
});

fn noDigits(fullObject, value, params, property) {
    if type_of(value) == "string" && text::matches(value, "[0-9]") {
        return [#{ policyRequirement: "NO_DIGITS", params: #{ property: property } }];
    }
    []
}
"#;

/// Lists a script in `policy.json`'s `additionalFiles`.
fn register_script(project: &Path, script: &str) {
    let path = project.join("conf/policy.json");
    let mut policy = read_json(&path);
    policy["additionalFiles"].as_array_mut().unwrap().push(json!(script));
    save_json(&path, &policy);
}

/// Attaches a policy to a user property in `managed.json`.
fn attach_policy(project: &Path, property: &str, policy_id: &str) {
    let path = project.join("conf/managed.json");
    let mut managed = read_json(&path);
    let schema_property = &mut user_type(&mut managed)["schema"]["properties"][property];
    if schema_property.get("policies").is_none() {
        schema_property["policies"] = json!([]);
    }
    schema_property["policies"]
        .as_array_mut()
        .unwrap()
        .push(json!({"policyId": policy_id}));
    save_json(&path, &managed);
}

/// Installs the README's `no-digits` example on `sn` (script first, then policy.json, then
/// managed.json, so every intermediate state is a valid configuration).
fn install_no_digits(project: &Path) {
    save(&project.join("scripts/policies/noDigits.rhai"), NO_DIGITS);
    register_script(project, "scripts/policies/noDigits.rhai");
    attach_policy(project, "sn", "no-digits");
}

fn no_digits_refusal(message: &str) -> Value {
    json!({"code": 403, "reason": "Forbidden", "message": message,
    "detail": {"result": false, "failedPolicyRequirements": [
        {"policyRequirements": [{"policyRequirement": "NO_DIGITS", "params": {"property": "sn"}}], "property": "sn"}
    ]}})
}

fn create(server: &TestServer, body: &Value) -> ferridm_tests::Reply {
    server.admin().post("/openidm/managed/user?_action=create", body).send()
}

fn with_sn(name: &str, sn: &str) -> Value {
    user_with(name, &json!({"sn": sn}))
}

/// Sets a trigger on the user type of a project's `managed.json`.
fn set_trigger(project: &Path, hook: &str, script: &Value) {
    let path = project.join("conf/managed.json");
    let mut managed = read_json(&path);
    user_type(&mut managed)[hook] = script.clone();
    save_json(&path, &managed);
}

fn inline(source: &str) -> Value {
    json!({"type": "text/rhai", "source": source})
}

fn server_with_trigger(hook: &'static str, script: Value) -> TestServer {
    TestServer::builder()
        .edit(move |project| set_trigger(project, hook, &script))
        .start()
}

// ---------------------------------------------------------------------------------------------
// A policy script added at runtime
// ---------------------------------------------------------------------------------------------

#[test]
fn an_administrators_policy_script_is_enforced_without_restart() {
    let server = TestServer::start();
    let before = generation(&server);
    let early = create(&server, &with_sn(&unique("early"), "Jensen2"));
    assert_eq!(early.status, 201, "no such policy yet: {}", early.text);
    let early_id = early.body["_id"].as_str().expect("_id").to_owned();

    install_no_digits(server.project());
    server.wait_until(RELOAD, "no-digits on sn", || {
        validate_object(&server, "managed/user/*", &with_sn("probe", "Jensen2"))["result"] == false
    });

    let refused = create(&server, &with_sn(&unique("late"), "Jensen2"));
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(refused.body, no_digits_refusal("Policy validation failed"));
    let patched = server
        .admin()
        .patch(
            &format!("/openidm/managed/user/{early_id}"),
            &json!([{"operation": "replace", "field": "/sn", "value": "Jensen3"}]),
        )
        .send();
    assert_eq!(patched.status, 403, "{}", patched.text);
    assert_eq!(patched.body, no_digits_refusal("Failed policy validation"));
    let fine = create(&server, &with_sn(&unique("fine"), "Jensen"));
    assert_eq!(fine.status, 201, "{}", fine.text);

    let described = server.admin().get("/openidm/policy/managed/user/*").send().body;
    let sn = described["properties"]
        .as_array()
        .expect("properties")
        .iter()
        .find(|p| p["name"] == "sn")
        .expect("sn")
        .clone();
    let no_digits = sn["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .find(|p| p["policyId"] == "no-digits")
        .unwrap_or_else(|| panic!("no-digits is listed on sn: {sn}"));
    assert_eq!(no_digits["policyRequirements"], json!(["NO_DIGITS"]));
    assert!(
        sn["policyRequirements"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("NO_DIGITS")))
    );

    let now = status(&server);
    assert!(now["generation"].as_u64().expect("generation") > before, "{now}");
    assert_eq!(now["errors"], json!([]));
}

#[test]
fn polling_picks_up_changes_too() {
    let server = TestServer::builder()
        .conf_file(
            "ferridm.json",
            &json!({
                "passwordHashing": {"memoryKib": 256, "iterations": 1, "parallelism": 1},
                "watch": {"mode": "poll", "debounceMillis": 50, "pollMillis": 100}
            })
            .to_string(),
        )
        .start();
    install_no_digits(server.project());
    server.wait_until(RELOAD, "no-digits on sn (polling)", || {
        validate_object(&server, "managed/user/*", &with_sn("probe", "Jensen2"))["result"] == false
    });
    let refused = create(&server, &with_sn(&unique("poll"), "Jensen2"));
    assert_eq!(refused.body, no_digits_refusal("Policy validation failed"));
}

#[test]
fn a_later_script_overrides_a_shipped_policy() {
    let server = TestServer::start();
    save(
        &server.project().join("scripts/policies/corporateMail.rhai"),
        r#"
addPolicy(#{
    policyId: "valid-email-address-format",
    policyExec: "corporateMail",
    policyRequirements: ["VALID_EMAIL_ADDRESS_FORMAT"],
    validateOnlyIfPresent: true
});

fn corporateMail(fullObject, value, params, property) {
    if type_of(value) == "string" && !value.ends_with("@example.com") {
        return [#{ policyRequirement: "VALID_EMAIL_ADDRESS_FORMAT" }];
    }
    []
}
"#,
    );
    let foreign = user_with("mailer", &json!({"mail": "mailer@example.org"}));
    assert_eq!(validate_object(&server, "managed/user/*", &foreign)["result"], true);
    register_script(server.project(), "scripts/policies/corporateMail.rhai");
    server.wait_until(RELOAD, "the overriding e-mail policy", || {
        validate_object(&server, "managed/user/*", &foreign)["result"] == false
    });
    assert_eq!(
        validate_object(&server, "managed/user/*", &foreign),
        json!({"result": false, "failedPolicyRequirements": [
            {"policyRequirements": [{"policyRequirement": "VALID_EMAIL_ADDRESS_FORMAT"}], "property": "mail"}
        ]})
    );
    assert_eq!(
        validate_object(&server, "managed/user/*", &user_body("mailer"))["result"],
        true
    );
}

// ---------------------------------------------------------------------------------------------
// Refused changes: the last good generation keeps serving
// ---------------------------------------------------------------------------------------------

#[test]
fn a_broken_policy_script_is_refused_and_the_old_one_keeps_serving() {
    let server = TestServer::builder().edit(install_no_digits).start();
    let refused = create(&server, &with_sn(&unique("a"), "Jensen2"));
    assert_eq!(refused.body, no_digits_refusal("Policy validation failed"));
    let before = status(&server);
    assert_eq!(before["errors"], json!([]));

    let script = server.project().join("scripts/policies/noDigits.rhai");
    save(
        &script,
        "// broken on purpose\naddPolicy(#{ policyId: \"no-digits\", policyExec: \"noDigits\" });\nfn noDigits(fullObject, value, params, property) { let x = ; [] }\n",
    );
    let after = wait_for_errors(&server);
    let error = error_about(&after, "noDigits.rhai");
    assert_eq!(keys(error), ["file", "message"]);
    let message = error["message"].as_str().expect("message");
    assert!(
        message.contains("noDigits.rhai:3:"),
        "the message gives the file, line and column: {message}"
    );
    assert_eq!(
        after["generation"], before["generation"],
        "the generation was not replaced"
    );
    assert_eq!(after["loadedAt"], before["loadedAt"]);

    // The last good script keeps serving.
    let still = create(&server, &with_sn(&unique("b"), "Jensen2"));
    assert_eq!(still.body, no_digits_refusal("Policy validation failed"));
    let fine = create(&server, &with_sn(&unique("c"), "Jensen"));
    assert_eq!(fine.status, 201, "{}", fine.text);

    // A fixed script replaces it and clears the errors.
    save(&script, &NO_DIGITS.replace("\"NO_DIGITS\"", "\"NO_NUMBERS\""));
    wait_for_generation_after(&server, before["generation"].as_u64().expect("generation"));
    assert_ne!(
        status(&server)["loadedAt"],
        before["loadedAt"],
        "a new generation, a new load time"
    );
    let renamed = create(&server, &with_sn(&unique("d"), "Jensen2"));
    assert_eq!(renamed.status, 403, "{}", renamed.text);
    assert_eq!(
        renamed.body["detail"]["failedPolicyRequirements"][0]["policyRequirements"][0]["policyRequirement"],
        "NO_NUMBERS"
    );
}

#[test]
fn broken_json_is_refused_with_its_position() {
    let server = TestServer::start();
    let before = status(&server);
    let managed_path = server.conf().join("managed.json");
    let original = std::fs::read_to_string(&managed_path).unwrap();
    save(
        &managed_path,
        "{\n    \"objects\": [\n        {\"name\": \"user\",}\n    ]\n}\n",
    );

    let after = wait_for_errors(&server);
    let error = error_about(&after, "managed.json");
    let message = error["message"].as_str().expect("message");
    assert!(message.contains("managed.json:3:"), "line 3 and a column: {message}");
    assert_eq!(after["generation"], before["generation"]);

    // The old schema keeps serving: required properties are still enforced, valid users land,
    // and the config endpoint still shows the running configuration.
    let missing = create(
        &server,
        &json!({"userName": unique("nosn"), "givenName": "A", "mail": "a@example.com"}),
    );
    assert_eq!(missing.assert_error(403), "Policy validation failed");
    assert_eq!(
        missing.body["detail"]["failedPolicyRequirements"],
        json!([{"policyRequirements": [{"policyRequirement": "REQUIRED"}], "property": "sn"}])
    );
    let good = create(&server, &user_body(&unique("good")));
    assert_eq!(good.status, 201, "{}", good.text);
    let config = server.admin().get("/openidm/config/managed").send();
    assert_eq!(config.status, 200, "{}", config.text);
    assert_eq!(config.body["objects"][0]["name"], "user");
    assert!(config.body["objects"][0]["schema"].is_object());

    save(&managed_path, &original);
    wait_for_generation_after(&server, before["generation"].as_u64().expect("generation"));
    assert_eq!(status(&server)["errors"], json!([]));
}

#[test]
fn a_broken_mail_configuration_is_refused_at_reload() {
    let server = TestServer::start();
    let before = status(&server);
    let features = |server: &TestServer| {
        let reply = server.admin().get("/openidm/info/features?_queryFilter=true").send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.body["result"]
            .as_array()
            .expect("result")
            .iter()
            .find(|feature| feature["_id"] == "email")
            .expect("the email feature")["enabled"]
            .clone()
    };
    assert_eq!(features(&server), json!(false), "no mail server configured");
    let email_path = server.conf().join("external.email.json");

    save(&email_path, r#"{"host": "127.0.0.1", "port": "not a port"}"#);
    let after = wait_for_errors(&server);
    let message = error_about(&after, "external.email.json")["message"]
        .as_str()
        .expect("message");
    assert!(message.contains("port"), "the message names the bad key: {message}");
    assert_eq!(
        after["generation"], before["generation"],
        "the last good generation keeps serving"
    );
    assert_eq!(features(&server), json!(false));

    save(&email_path, r#"{"host": "127.0.0.1", "port": 2525}"#);
    wait_for_generation_after(&server, before["generation"].as_u64().expect("generation"));
    assert_eq!(features(&server), json!(true), "a valid mail server is live");
}

#[test]
fn an_unknown_policy_id_refuses_the_configuration() {
    let server = TestServer::start();
    let before = generation(&server);
    attach_policy(server.project(), "sn", "no-such-policy");
    let after = wait_for_errors(&server);
    let error = error_about(&after, "managed.json");
    assert!(
        error["message"].as_str().is_some_and(|m| m.contains("no-such-policy")),
        "{error}"
    );
    assert_eq!(after["generation"], before);
    let created = create(&server, &with_sn(&unique("u"), "Anything1"));
    assert_eq!(created.status, 201, "{}", created.text);
}

#[test]
fn a_policy_script_without_its_exec_function_is_refused() {
    let server = TestServer::start();
    let before = generation(&server);
    save(
        &server.project().join("scripts/policies/lonely.rhai"),
        "addPolicy(#{ policyId: \"lonely\", policyExec: \"missing\", policyRequirements: [\"X\"] });\n",
    );
    register_script(server.project(), "scripts/policies/lonely.rhai");
    let after = wait_for_errors(&server);
    let error = error_about(&after, "lonely.rhai");
    assert!(
        error["message"].as_str().is_some_and(|m| m.contains("missing")),
        "{error}"
    );
    assert_eq!(after["generation"], before);
    assert_alive(&server);
}

// ---------------------------------------------------------------------------------------------
// /openidm/config
// ---------------------------------------------------------------------------------------------

#[test]
fn config_lists_every_configuration_but_secrets() {
    let server = TestServer::start();
    let reply = server.admin().get("/openidm/config").send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(keys(&reply.body), ["_id", "configurations"]);
    assert_eq!(reply.body["_id"], "");
    let configurations = reply.body["configurations"].as_array().expect("configurations");
    for id in ["managed", "policy", "access", "authentication"] {
        assert!(
            configurations.contains(&json!({"_id": id, "pid": id, "factoryPid": null})),
            "{id} in {}",
            reply.text
        );
    }
    let ui = configurations
        .iter()
        .find(|c| c["_id"] == "ui/configuration")
        .unwrap_or_else(|| panic!("ui/configuration in {}", reply.text));
    assert_eq!(ui["factoryPid"], "ui");
    assert!(
        configurations.iter().all(|c| c["_id"] != "boot"),
        "boot.json holds secrets: {}",
        reply.text
    );
    server.admin().get("/openidm/config/boot").send().assert_error(404);
}

/// Issue 19: `config?_queryFilter=…` answers as IDM 7 does (what frodo-lib's
/// `readConfigEntities` / `readConfigEntitiesByType` read): the query envelope with whole
/// configuration objects, each with its `_id`, filtered on ids and content, sorted, paged,
/// counted and narrowed by `_fields`; `boot` never appears; the plain read keeps its shape.
#[test]
fn config_queries_return_whole_entities_in_the_query_envelope() {
    let server = TestServer::start();
    let admin = server.admin();
    let all = admin.get("/openidm/config?_queryFilter=true").send();
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(
        keys(&all.body),
        [
            "result",
            "resultCount",
            "pagedResultsCookie",
            "totalPagedResultsPolicy",
            "totalPagedResults",
            "remainingPagedResults"
        ]
    );
    let result = all.body["result"].as_array().expect("result");
    assert_eq!(all.body["resultCount"], json!(result.len()));
    let managed = result
        .iter()
        .find(|entity| entity["_id"] == "managed")
        .unwrap_or_else(|| panic!("managed in {}", all.text));
    let read = admin.get("/openidm/config/managed").send();
    assert_eq!(managed, &read.body, "the whole entity, as a read gives it");
    assert!(result.iter().all(|entity| entity["_id"] != "boot"), "{}", all.text);

    let selfservice = admin
        .get("/openidm/config?_queryFilter=_id sw \"selfservice\"&_sortKeys=-_id&_fields=_id")
        .send();
    assert_eq!(selfservice.status, 200, "{}", selfservice.text);
    let ids: Vec<&str> = selfservice.body["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|entity| entity["_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        ids,
        [
            "selfservice/username",
            "selfservice/socialUserClaim",
            "selfservice/reset",
            "selfservice/registration",
            "selfservice/profile",
            "selfservice.terms",
            "selfservice.kba"
        ]
    );
    assert_eq!(selfservice.body["result"][0], json!({"_id": "selfservice/username"}));

    let by_content = admin
        .get("/openidm/config?_queryFilter=configuration/selfRegistration eq true")
        .send();
    assert_eq!(by_content.body["resultCount"], json!(1), "{}", by_content.text);
    assert_eq!(by_content.body["result"][0]["_id"], json!("ui/configuration"));

    let first = admin
        .get("/openidm/config?_queryFilter=_id sw \"selfservice\"&_pageSize=4&_totalPagedResultsPolicy=EXACT")
        .send();
    assert_eq!(first.body["resultCount"], json!(4), "{}", first.text);
    assert_eq!(first.body["totalPagedResults"], json!(7));
    let cookie = first.body["pagedResultsCookie"].as_str().expect("a cookie").to_owned();
    let second = admin
        .get(&format!(
            "/openidm/config?_queryFilter=_id sw \"selfservice\"&_pageSize=4&_pagedResultsCookie={cookie}"
        ))
        .send();
    assert_eq!(second.body["resultCount"], json!(3), "{}", second.text);
    assert_eq!(second.body["pagedResultsCookie"], Value::Null);
    assert_eq!(second.body["result"][2]["_id"], json!("selfservice/username"));

    let plain = admin.get("/openidm/config").send();
    assert_eq!(keys(&plain.body), ["_id", "configurations"]);
    admin
        .get("/openidm/config?_queryFilter=nonsense eq")
        .send()
        .assert_error(400);
    server
        .user("openidm-admin", "wrong")
        .get("/openidm/config?_queryFilter=true")
        .send()
        .assert_error(401);
}

#[test]
fn config_read_returns_the_file_with_its_id_first() {
    let server = TestServer::start();
    for id in ["managed", "policy", "access"] {
        let reply = server.admin().get(&format!("/openidm/config/{id}")).send();
        assert_eq!(reply.status, 200, "{id}: {}", reply.text);
        assert_eq!(keys(&reply.body)[0], "_id");
        assert_eq!(reply.body["_id"], id);
        let mut content = reply.body.clone();
        content.as_object_mut().expect("object").remove("_id");
        assert_eq!(content, read_json(&server.conf().join(format!("{id}.json"))), "{id}");
    }
    let ui = server.admin().get("/openidm/config/ui/configuration").send();
    assert_eq!(ui.status, 200, "{}", ui.text);
    assert_eq!(ui.body["_id"], "ui/configuration");
    let missing = server.admin().get("/openidm/config/nosuchconfig").send();
    missing.assert_error(404);
}

#[test]
fn config_is_for_administrators_only() {
    let server = TestServer::start();
    let name = unique("plain");
    server.create_user(&name, Some("Passw0rdX"));
    for path in ["/openidm/config", "/openidm/config/managed", "/openidm/config/status"] {
        server.anonymous().get(path).send().assert_error(403);
        server.user(&name, "Passw0rdX").get(path).send().assert_error(403);
        server.nobody().get(path).send().assert_error(401);
    }
    let put = server
        .user(&name, "Passw0rdX")
        .put("/openidm/config/managed", &json!({"objects": []}))
        .send();
    put.assert_error(403);
    assert!(
        read_json(&server.conf().join("managed.json"))["objects"]
            .as_array()
            .is_some_and(|o| !o.is_empty()),
        "nothing was written"
    );
}

#[test]
fn config_status_reports_generation_load_time_and_no_errors() {
    let server = TestServer::start();
    let body = status(&server);
    assert_eq!(keys(&body), ["generation", "loadedAt", "errors", "configVersion"]);
    assert_eq!(
        body["configVersion"],
        json!(0),
        "no configuration shared through SQLite"
    );
    assert!(body["generation"].as_u64().is_some_and(|g| g >= 1), "{body}");
    let loaded_at = body["loadedAt"].as_str().expect("loadedAt");
    assert!(
        loaded_at.len() >= 20 && loaded_at.as_bytes()[10] == b'T' && loaded_at.ends_with('Z'),
        "ISO-8601 UTC: {loaded_at}"
    );
    assert_eq!(body["errors"], json!([]));
}

#[test]
fn put_of_a_valid_config_is_live_immediately() {
    let server = TestServer::start();
    let before = generation(&server);
    let mut managed = read_json(&server.conf().join("managed.json"));
    user_type(&mut managed)["schema"]["required"]
        .as_array_mut()
        .unwrap()
        .push(json!("description"));
    let reply = server.admin().put("/openidm/config/managed", &managed).send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["_id"], "managed");
    let mut echoed = reply.body.clone();
    echoed.as_object_mut().expect("object").remove("_id");
    assert_eq!(echoed, managed);

    // No waiting: the reply means the new generation is serving.
    let refused = create(&server, &user_body(&unique("nodesc")));
    assert_eq!(refused.assert_error(403), "Policy validation failed");
    assert_eq!(
        refused.body["detail"]["failedPolicyRequirements"],
        json!([{"policyRequirements": [{"policyRequirement": "REQUIRED"}], "property": "description"}])
    );
    let accepted = create(&server, &user_with(&unique("desc"), &json!({"description": "here"})));
    assert_eq!(accepted.status, 201, "{}", accepted.text);

    assert_eq!(
        read_json(&server.conf().join("managed.json")),
        managed,
        "written to the file"
    );
    let read = server.admin().get("/openidm/config/managed").send();
    assert_eq!(read.body, reply.body);
    assert!(generation(&server) > before);
    assert_eq!(status(&server)["errors"], json!([]));
}

/// Config ids are IDM's (`selfservice/registration`): the file-name form is no resource, for
/// writes as for reads, and the live process is left alone.
#[test]
fn config_writes_by_file_name_are_404() {
    let server = TestServer::start();
    let path = server.conf().join("selfservice-registration.json");
    let before = std::fs::read_to_string(&path).unwrap();
    let generation_before = generation(&server);
    let body =
        json!({"stageConfigs": [], "snapshotToken": {"type": "jwt", "tokenExpiry": 300}, "storage": "stateless"});
    for (method, reply) in [
        (
            "GET",
            server.admin().get("/openidm/config/selfservice-registration").send(),
        ),
        (
            "PUT",
            server
                .admin()
                .put("/openidm/config/selfservice-registration", &body)
                .send(),
        ),
        (
            "DELETE",
            server.admin().delete("/openidm/config/selfservice-registration").send(),
        ),
    ] {
        assert_eq!(
            reply.assert_error(404),
            "Resource &#39;config/selfservice-registration&#39; not found",
            "{method}"
        );
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before, "the file is unchanged");
    assert_eq!(generation(&server), generation_before);
    let live = server.anonymous().get("/openidm/selfservice/registration").send();
    assert_eq!(live.body["type"], "idmUserDetails", "{}", live.text);
    let by_id = server.admin().get("/openidm/config/selfservice/registration").send();
    assert_eq!(by_id.status, 200, "{}", by_id.text);
}

/// A PUT that echoes `_id` first writes the body's other keys in the order it sent them.
#[test]
fn a_put_keeps_the_key_order_of_its_body() {
    let server = TestServer::start();
    let current = server.admin().get("/openidm/config/selfservice/registration").send();
    assert_eq!(current.status, 200, "{}", current.text);
    let keys: Vec<String> = current.body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys[0], "_id", "the read puts _id first: {keys:?}");
    assert!(keys.len() >= 4, "enough keys to see an order: {keys:?}");
    let reply = server
        .admin()
        .put("/openidm/config/selfservice/registration", &current.body)
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    let written = read_json(&server.conf().join("selfservice-registration.json"));
    let written_keys: Vec<&String> = written.as_object().unwrap().keys().collect();
    assert_eq!(
        written_keys,
        keys[1..].iter().collect::<Vec<_>>(),
        "the file keeps the body's order"
    );
}

/// A script reading a path with segments past an object gets "not found", as for any absent
/// object, not an error.
#[test]
fn a_host_read_past_an_object_is_not_found() {
    let server = server_with_trigger(
        "onCreate",
        inline(
            "object.description = `${openidm::read(\"managed/user/a/b\") == ()} ${openidm::read(\"internal/user/openidm-admin/x\") == ()} ${openidm::read(\"internal/user/openidm-admin\") != ()}`;",
        ),
    );
    let created = create(&server, &user_body(&unique("reader")));
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["description"], "true true true");
}

/// Scripts read and follow relationships (issue 15, point 7): a read shows an object's
/// references, the referenced object reads by its `_ref`, and a relationship's references are
/// queried and read one by one as sub-resources.
#[test]
fn a_script_follows_relationships() {
    let server = server_with_trigger(
        "onCreate",
        inline(
            r#"if object.manager != () {
                let boss = openidm::read(object.manager._ref);
                let grants = openidm::query(`managed/user/${boss._id}/roles`, "true");
                let grant = openidm::read(`managed/user/${boss._id}/roles/${grants[0]._id}`);
                let role = openidm::read(grant._ref);
                object.description = `${boss.userName} ${grants.len()} ${role.name} ${boss.roles.len()}`;
            }"#,
        ),
    );
    let role_name = unique("followed");
    let role = server
        .admin()
        .post("/openidm/managed/role?_action=create", &json!({"name": role_name}))
        .send();
    assert_eq!(role.status, 201, "{}", role.text);
    let boss_name = unique("boss");
    let boss = create(
        &server,
        &user_with(
            &boss_name,
            &json!({"roles": [{"_ref": format!("managed/role/{}", role.body["_id"].as_str().unwrap())}]}),
        ),
    );
    assert_eq!(boss.status, 201, "{}", boss.text);
    let report = create(
        &server,
        &user_with(
            &unique("report"),
            &json!({"manager": {"_ref": format!("managed/user/{}", boss.body["_id"].as_str().unwrap())}}),
        ),
    );
    assert_eq!(report.status, 201, "{}", report.text);
    assert_eq!(report.body["description"], format!("{boss_name} 1 {role_name} 1"));
}

#[test]
fn put_of_an_invalid_config_is_400_and_changes_nothing() {
    let server = TestServer::start();
    let managed_path = server.conf().join("managed.json");
    let policy_path = server.conf().join("policy.json");
    let managed_text = std::fs::read_to_string(&managed_path).unwrap();
    let policy_text = std::fs::read_to_string(&policy_path).unwrap();
    let before = generation(&server);
    let original = read_json(&managed_path);

    let mut unknown_policy = original.clone();
    user_type(&mut unknown_policy)["schema"]["properties"]["sn"]["policies"] = json!([{"policyId": "no-such-policy"}]);
    let mut broken_trigger = original.clone();
    user_type(&mut broken_trigger)["onCreate"] = inline("let x = ;");
    let mut also_required = original.clone();
    user_type(&mut also_required)["schema"]["required"]
        .as_array_mut()
        .unwrap()
        .push(json!("description"));
    also_required["objects"] = json!("not an array");
    let mut javascript = read_json(&policy_path);
    javascript["type"] = json!("text/javascript");

    let cases = [
        ("managed", unknown_policy, "no-such-policy"),
        ("managed", broken_trigger, "managed.json"),
        ("managed", also_required, "managed.json"),
        ("policy", javascript, "text/javascript"),
    ];
    for (id, body, mentioned) in cases {
        let reply = server.admin().put(&format!("/openidm/config/{id}"), &body).send();
        let message = reply.assert_error(400);
        assert!(message.contains(mentioned), "{id}: {message}");
        assert_eq!(std::fs::read_to_string(&managed_path).unwrap(), managed_text, "{id}");
        assert_eq!(std::fs::read_to_string(&policy_path).unwrap(), policy_text, "{id}");
    }
    assert_eq!(generation(&server), before, "no generation was installed");
    let read = server.admin().get("/openidm/config/managed").send();
    let mut content = read.body.clone();
    content.as_object_mut().expect("object").remove("_id");
    assert_eq!(content, original);
    let created = create(&server, &with_sn(&unique("still"), "Jensen2"));
    assert_eq!(created.status, 201, "the old configuration serves: {}", created.text);
}

#[test]
fn patch_of_a_config_applies_and_is_live() {
    let server = TestServer::start();
    let reply = server
        .admin()
        .patch(
            "/openidm/config/managed",
            &json!([{"operation": "add", "field": "/objects/0/schema/required/-", "value": "description"}]),
        )
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["_id"], "managed");
    assert!(
        reply.body["objects"][0]["schema"]["required"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("description"))),
        "{}",
        reply.text
    );
    let refused = create(&server, &user_body(&unique("nodesc")));
    assert_eq!(refused.assert_error(403), "Policy validation failed");
    assert_eq!(
        read_json(&server.conf().join("managed.json"))["objects"][0]["schema"]["required"],
        reply.body["objects"][0]["schema"]["required"]
    );

    let text = std::fs::read_to_string(server.conf().join("managed.json")).unwrap();
    let invalid = server
        .admin()
        .patch(
            "/openidm/config/managed",
            &json!([{"operation": "replace", "field": "/objects/0/schema/properties/sn/policies",
                     "value": [{"policyId": "no-such-policy"}]}]),
        )
        .send();
    let message = invalid.assert_error(400);
    assert!(message.contains("no-such-policy"), "{message}");
    assert_eq!(
        std::fs::read_to_string(server.conf().join("managed.json")).unwrap(),
        text
    );
}

#[test]
fn deleting_a_required_config_is_refused() {
    let server = TestServer::start();
    let reply = server.admin().delete("/openidm/config/managed").send();
    reply.assert_error(400);
    assert!(server.conf().join("managed.json").is_file());
    let created = create(&server, &user_body(&unique("kept")));
    assert_eq!(created.status, 201, "{}", created.text);
}

// ---------------------------------------------------------------------------------------------
// Object triggers (scripts/README.md "Triggers")
// ---------------------------------------------------------------------------------------------

#[test]
fn on_create_changes_the_stored_object() {
    let server = server_with_trigger(
        "onCreate",
        inline("object.description = \"created by \" + resourceName;"),
    );
    let id = unique("trig");
    let created = server
        .admin()
        .put(&format!("/openidm/managed/user/{id}"), &user_body(&id))
        .header("If-None-Match", "*")
        .send();
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["description"], format!("created by managed/user/{id}"));
    let read = server.admin().get(&format!("/openidm/managed/user/{id}")).send();
    assert_eq!(read.body["description"], format!("created by managed/user/{id}"));

    let posted = create(&server, &user_body(&unique("trig")));
    assert_eq!(posted.status, 201, "{}", posted.text);
    let posted_id = posted.body["_id"].as_str().expect("_id");
    assert_eq!(
        posted.body["description"],
        format!("created by managed/user/{posted_id}")
    );
}

#[test]
fn on_create_from_a_script_file() {
    let server = TestServer::builder()
        .edit(|project| {
            save(
                &project.join("scripts/triggers/stamp.rhai"),
                "object.city = \"Oslo\";\nobject.postalCode = object.userName.to_upper();\n",
            );
            set_trigger(
                project,
                "onCreate",
                &json!({"type": "text/rhai", "file": "scripts/triggers/stamp.rhai"}),
            );
        })
        .start();
    let created = create(&server, &user_body("stamped"));
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["city"], "Oslo");
    assert_eq!(created.body["postalCode"], "STAMPED");
}

#[test]
fn on_delete_throwing_refuses_the_delete() {
    let server = server_with_trigger(
        "onDelete",
        inline(
            r#"
if object.userName == "keeper" {
    throw #{ code: 403, message: "keeper cannot be deleted", detail: #{ userName: object.userName } };
}
if object.userName == "plain" {
    throw "plain cannot be deleted";
}
"#,
        ),
    );
    for name in ["keeper", "plain", "other"] {
        assert_eq!(create(&server, &user_body(name)).status, 201, "{name}");
    }
    let id_of = |name: &str| {
        let reply = server
            .admin()
            .get(&format!(
                "/openidm/managed/user?_queryFilter=userName+eq+%22{name}%22&_fields=_id"
            ))
            .send();
        reply.body["result"][0]["_id"].as_str().expect("_id").to_owned()
    };
    let keeper = id_of("keeper");
    let refused = server.admin().delete(&format!("/openidm/managed/user/{keeper}")).send();
    assert_eq!(
        refused.body,
        json!({"code": 403, "reason": "Forbidden", "message": "keeper cannot be deleted",
               "detail": {"userName": "keeper"}})
    );
    assert_eq!(refused.status, 403);
    let plain = id_of("plain");
    let refused = server.admin().delete(&format!("/openidm/managed/user/{plain}")).send();
    assert_eq!(refused.assert_error(400), "plain cannot be deleted");
    let other = id_of("other");
    let deleted = server.admin().delete(&format!("/openidm/managed/user/{other}")).send();
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(count(&server, "true"), 2, "only the unguarded user is gone");
    assert_eq!(
        server
            .admin()
            .get(&format!("/openidm/managed/user/{keeper}"))
            .send()
            .status,
        200
    );
}

#[test]
fn on_update_sees_the_old_object() {
    let server = server_with_trigger(
        "onUpdate",
        inline("object.description = \"was \" + oldObject.sn + \", now \" + object.sn;"),
    );
    let name = unique("upd");
    let created = create(&server, &user_body(&name));
    let id = created.body["_id"].as_str().expect("_id").to_owned();
    assert!(
        created.body.get("description").is_none(),
        "onUpdate does not run on create"
    );
    let updated = server
        .admin()
        .put(&format!("/openidm/managed/user/{id}"), &with_sn(&name, "Jensen"))
        .header("If-Match", "*")
        .send();
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.body["description"], "was User, now Jensen");
    let patched = server
        .admin()
        .patch(
            &format!("/openidm/managed/user/{id}"),
            &json!([{"operation": "replace", "field": "/sn", "value": "Smith"}]),
        )
        .send();
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["description"], "was Jensen, now Smith");
}

#[test]
fn on_validate_throwing_refuses_the_write() {
    let server = server_with_trigger(
        "onValidate",
        inline("if object.sn == \"Forbidden\" { throw \"sn Forbidden is not allowed\"; }"),
    );
    let refused = create(&server, &with_sn(&unique("v"), "Forbidden"));
    assert_eq!(refused.assert_error(400), "sn Forbidden is not allowed");
    assert_eq!(count(&server, "true"), 0);
    let created = create(&server, &with_sn(&unique("v"), "Allowed"));
    assert_eq!(created.status, 201, "{}", created.text);
}

#[test]
fn post_create_failures_do_not_undo_the_write_and_post_create_may_write() {
    let server = server_with_trigger(
        "postCreate",
        inline(
            r#"
openidm::create("managed/role", #{ name: "role-of-" + object.userName });
throw "postCreate failed after its write";
"#,
        ),
    );
    let name = unique("post");
    let created = create(&server, &user_body(&name));
    assert_eq!(
        created.status, 201,
        "a failing post trigger is only logged: {}",
        created.text
    );
    assert_eq!(count(&server, "true"), 1);
    let roles = server
        .admin()
        .get(&format!(
            "/openidm/managed/role?_queryFilter=name+eq+%22role-of-{name}%22"
        ))
        .send();
    assert_eq!(roles.body["resultCount"], 1, "{}", roles.text);
}

#[test]
fn on_read_changes_what_callers_see() {
    let server = server_with_trigger("onRead", inline("object.description = \"seen\";"));
    let created = create(&server, &user_body(&unique("r")));
    let id = created.body["_id"].as_str().expect("_id").to_owned();
    let read = server.admin().get(&format!("/openidm/managed/user/{id}")).send();
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["description"], "seen");
}

#[test]
fn a_trigger_added_at_runtime_applies_without_restart() {
    let server = TestServer::start();
    let before = generation(&server);
    set_trigger(
        server.project(),
        "onCreate",
        &inline("object.description = \"stamped at runtime\";"),
    );
    wait_for_generation_after(&server, before);
    let created = create(&server, &user_body(&unique("rt")));
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["description"], "stamped at runtime");
}

#[test]
fn a_broken_trigger_file_is_refused_and_the_old_one_keeps_serving() {
    let server = TestServer::builder()
        .edit(|project| {
            save(
                &project.join("scripts/triggers/stamp.rhai"),
                "object.description = \"good\";\n",
            );
            set_trigger(
                project,
                "onCreate",
                &json!({"type": "text/rhai", "file": "scripts/triggers/stamp.rhai"}),
            );
        })
        .start();
    let before = generation(&server);
    save(
        &server.project().join("scripts/triggers/stamp.rhai"),
        "object.description = \"bad\"\nlet = 5;\n",
    );
    let after = wait_for_errors(&server);
    let error = error_about(&after, "stamp.rhai");
    assert!(
        error["message"].as_str().is_some_and(|m| m.contains("stamp.rhai:")),
        "{error}"
    );
    assert_eq!(after["generation"], before);
    let created = create(&server, &user_body(&unique("t")));
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["description"], "good");
}

#[test]
fn a_javascript_trigger_is_refused_naming_the_file() {
    let server = TestServer::start();
    let mut managed = read_json(&server.conf().join("managed.json"));
    user_type(&mut managed)["onCreate"] = json!({"type": "text/javascript", "source": "object.x = 1;"});
    let reply = server.admin().put("/openidm/config/managed", &managed).send();
    let message = reply.assert_error(400);
    assert!(message.contains("managed.json"), "{message}");
    assert!(message.contains("text/javascript"), "{message}");
}

#[test]
fn a_trigger_throwing_an_error_object_fails_with_exactly_that_error() {
    let server = server_with_trigger(
        "onCreate",
        inline("throw #{ code: 409, message: \"no <new> users\", detail: #{ reason: \"frozen\" } };"),
    );
    let refused = create(&server, &user_body(&unique("x")));
    assert_eq!(
        refused.body,
        json!({"code": 409, "reason": "Conflict", "message": "no &lt;new&gt; users", "detail": {"reason": "frozen"}})
    );
    assert_eq!(refused.status, 409);
    assert_eq!(count(&server, "true"), 0);
}

/// Issue 22, point 15c: every configuration problem names its file one way — relative to the
/// project directory, as conf files name scripts — whether it is a conf file, a script or an
/// inline script in a conf file, in `config/status` and in a refused `PUT /openidm/config`.
/// No absolute path is reported.
#[test]
fn config_errors_name_files_relative_to_the_project_directory() {
    let server = TestServer::builder().edit(install_no_digits).start();
    let project = server.project().display().to_string();
    let managed_path = server.conf().join("managed.json");
    let original = std::fs::read_to_string(&managed_path).unwrap();
    // Every error of a refused reload, as (file, message); the first one is about the change.
    let errors_of = |status: &Value| -> Vec<(String, String)> {
        assert!(!status.to_string().contains(&project), "an absolute path: {status}");
        let errors = status["errors"].as_array().expect("errors");
        assert!(!errors.is_empty(), "{status}");
        errors
            .iter()
            .map(|error| {
                (
                    error["file"].as_str().expect("file").to_owned(),
                    error["message"].as_str().expect("message").to_owned(),
                )
            })
            .collect()
    };
    let fix = |server: &TestServer| {
        let before = generation(server);
        save(&managed_path, &original);
        save(&server.project().join("scripts/policies/noDigits.rhai"), NO_DIGITS);
        wait_for_generation_after(server, before);
    };

    // A conf file that is not JSON.
    save(
        &managed_path,
        "{\n    \"objects\": [\n        {\"name\": \"user\",}\n    ]\n}\n",
    );
    let errors = errors_of(&wait_for_errors(&server));
    assert!(errors[0].1.starts_with("conf/managed.json:3:"), "{errors:?}");
    for (file, message) in &errors {
        assert_eq!(file, "conf/managed.json");
        assert!(message.starts_with("conf/managed.json:"), "{message}");
    }
    fix(&server);

    // A conf file that is JSON but wrong.
    attach_policy(server.project(), "givenName", "no-such-policy");
    // (Reported for the schema, and for the registration resource that derives from it.)
    let errors = errors_of(&wait_for_errors(&server));
    assert_eq!(errors[0].0, "conf/managed.json", "{errors:?}");
    for (file, message) in &errors {
        assert!(
            ["conf/managed.json", "conf/policy.json"].contains(&file.as_str()),
            "{file}"
        );
        assert!(message.starts_with(&format!("{file}: ")), "{message}");
    }
    fix(&server);

    // A script file.
    save(
        &server.project().join("scripts/policies/noDigits.rhai"),
        "addPolicy(#{ policyId: \"no-digits\", policyExec: \"noDigits\" });\nfn noDigits(a, b, c, d) { let x = ; [] }\n",
    );
    let errors = errors_of(&wait_for_errors(&server));
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (file, message) = &errors[0];
    assert_eq!(file, "scripts/policies/noDigits.rhai");
    assert!(message.starts_with("scripts/policies/noDigits.rhai:2:"), "{message}");
    fix(&server);

    // An inline script in a conf file.
    set_trigger(server.project(), "onCreate", &inline("let x = ;"));
    let errors = errors_of(&wait_for_errors(&server));
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (file, message) = &errors[0];
    assert!(file.starts_with("conf/managed.json ("), "{file}");
    assert!(message.starts_with(file.as_str()), "{message}");
    fix(&server);

    // A refused change through the config endpoint.
    let mut managed = read_json(&managed_path);
    user_type(&mut managed)["onCreate"] = json!({"type": "text/rhai", "source": "let x = ;"});
    managed["objects"][0]["schema"]["properties"]["sn"]["policies"] = json!([{"policyId": "no-such-policy"}]);
    let reply = server.admin().put("/openidm/config/managed", &managed).send();
    reply.assert_error(400);
    assert!(!reply.text.contains(&project), "an absolute path: {}", reply.text);
    let errors = reply.body["detail"]["errors"].as_array().expect("errors");
    assert!(!errors.is_empty(), "{}", reply.text);
    for error in errors {
        let file = error["file"].as_str().expect("file");
        assert!(
            file == "conf/managed.json" || file.starts_with("conf/managed.json ("),
            "{error}"
        );
    }
    assert_eq!(status(&server)["errors"], json!([]));
}
