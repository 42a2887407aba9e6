//! The policy service (idm-api.md §6, idm-cases.md §G facts 234–264): `GET /openidm/policy`,
//! `GET /openidm/policy/<path>`, `validateObject` / `validateProperty`, the
//! `failedPolicyRequirements` shape and order, the schema-derived policy lists, every shipped
//! policy passing and failing with its parameters, and enforcement on create, update and patch
//! (with patch's different wording). Uniqueness holds under concurrency on both backends.

use std::sync::Barrier;
use std::time::Duration;

use ferridm_tests::{Reply, ServerBuilder, TestServer, on_each_backend, unique};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::crud::{count, keys, user_body, user_with};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `POST /openidm/policy/<path>?_action=validateObject` as the administrator; asserts 200 and
/// the `{result, failedPolicyRequirements}` shape, returns the body.
pub fn validate_object(server: &TestServer, path: &str, object: &Value) -> Value {
    let reply = server
        .admin()
        .post(&format!("/openidm/policy/{path}?_action=validateObject"), object)
        .send();
    assert_eq!(reply.status, 200, "validateObject {path} {object}: {}", reply.text);
    assert_result_shape(&reply);
    reply.body
}

/// `POST /openidm/policy/<path>?_action=validateProperty` as the administrator.
pub fn validate_property(server: &TestServer, path: &str, values: &Value) -> Value {
    let reply = server
        .admin()
        .post(&format!("/openidm/policy/{path}?_action=validateProperty"), values)
        .send();
    assert_eq!(reply.status, 200, "validateProperty {path} {values}: {}", reply.text);
    assert_result_shape(&reply);
    reply.body
}

/// `result` first, then `failedPolicyRequirements`; `result` is true exactly when nothing failed;
/// every entry is `{policyRequirements:[…], property}` in that key order.
fn assert_result_shape(reply: &Reply) {
    assert_eq!(
        keys(&reply.body),
        ["result", "failedPolicyRequirements"],
        "{}",
        reply.text
    );
    let failed = reply.body["failedPolicyRequirements"]
        .as_array()
        .unwrap_or_else(|| panic!("failedPolicyRequirements is not an array: {}", reply.text));
    assert_eq!(reply.body["result"], json!(failed.is_empty()), "{}", reply.text);
    for entry in failed {
        assert_eq!(keys(entry), ["policyRequirements", "property"], "entry {entry}");
        for requirement in entry["policyRequirements"].as_array().expect("policyRequirements") {
            assert_eq!(
                keys(requirement).first(),
                Some(&"policyRequirement"),
                "policyRequirement comes first: {requirement}"
            );
        }
    }
}

/// One `failedPolicyRequirements` entry with a single requirement.
fn entry(property: &str, requirement: Value) -> Value {
    json!({"policyRequirements": [requirement], "property": property})
}

/// A requirement without parameters.
fn bare(name: &str) -> Value {
    json!({"policyRequirement": name})
}

/// A requirement with parameters.
fn with_params(name: &str, params: Value) -> Value {
    json!({"policyRequirement": name, "params": params})
}

/// `{"result": false, "failedPolicyRequirements": entries}`, or the passing result when empty.
fn outcome(entries: Vec<Value>) -> Value {
    json!({"result": entries.is_empty(), "failedPolicyRequirements": entries})
}

/// Adds an object type to the project's `managed.json`.
pub fn add_managed_type(project: &std::path::Path, object_type: &Value) {
    let path = project.join("conf/managed.json");
    let mut managed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    managed["objects"].as_array_mut().unwrap().push(object_type.clone());
    std::fs::write(&path, serde_json::to_string_pretty(&managed).unwrap()).unwrap();
}

/// A managed type whose properties each carry exactly one shipped policy (and no `type`, so no
/// derived `valid-type`), to look at one policy at a time.
fn probe_type() -> Value {
    let one = |policy_id: &str, params: Value| json!({"policies": [{"policyId": policy_id, "params": params}]});
    json!({
        "name": "probe",
        "schema": {
            "type": "object",
            "properties": {
                "req": one("required", json!({})),
                "notEmpty": one("not-empty", json!({})),
                "str": one("valid-type", json!({"types": ["string"]})),
                "strOrNull": one("valid-type", json!({"types": ["string", "null"]})),
                "int": {"type": "integer"},
                "minLen": one("minimum-length", json!({"minLength": 8})),
                "mustMinLen": {"policies": [
                    {"policyId": "not-empty"},
                    {"policyId": "minimum-length", "params": {"minLength": 8}},
                    {"policyId": "at-least-X-capitals", "params": {"numCaps": 1}}
                ]},
                "maxLen": one("maximum-length", json!({"maxLength": 5})),
                "caps": one("at-least-X-capitals", json!({"numCaps": 1})),
                "twoCaps": one("at-least-X-capitals", json!({"numCaps": 2})),
                "nums": one("at-least-X-numbers", json!({"numNums": 1})),
                "email": one("valid-email-address-format", json!({})),
                "phone": one("valid-phone-format", json!({})),
                "name": one("valid-name-format", json!({})),
                "slash": one("cannot-contain-characters", json!({"forbiddenChars": ["/"]})),
                "slashStar": one("cannot-contain-characters", json!({"forbiddenChars": ["/", "*"]})),
                "secret": one("cannot-contain-others", json!({"disallowedFields": ["userName", "givenName", "sn"]})),
                "list": one("cannot-contain-duplicates", json!({})),
                "letters": one("regexpMatches", json!({"regexp": "^[a-z]+$", "flags": "i"})),
                "date": one("valid-date", json!({})),
                "attempts": one("max-attempts-triggers-lock-cooldown",
                                json!({"max": 3, "numMinutes": 5, "dateTimeField": "lastFailed"})),
                "internal": one("no-internal-user-conflict", json!({})),
                "items": one("valid-array-items",
                             json!({"properties": [{"policies": [{"policyId": "minimum-length", "params": {"minLength": 3}}]}]})),
                "temporal": one("valid-temporal-constraints", json!({})),
                "manager": {"type": "relationship"},
                "multi": {"type": ["string", "number"]},
                "tags": {"type": "array"},
                "nickname": {"type": ["string", "null"]}
            }
        }
    })
}

fn probe_server() -> TestServer {
    TestServer::builder()
        .edit(|project| add_managed_type(project, &probe_type()))
        .start()
}

/// The failed requirements of a probe object holding `property: value` (plus `req`, whose
/// `required` policy would otherwise fail).
fn probe(server: &TestServer, property: &str, value: &Value) -> Value {
    let mut object = json!({"req": "present"});
    object[property] = value.clone();
    validate_object(server, "managed/probe/*", &object)
}

/// Asserts that `property: value` fails with exactly `requirement` and nothing else.
fn assert_fails(server: &TestServer, property: &str, value: &Value, requirement: &Value) {
    assert_eq!(
        probe(server, property, value),
        outcome(vec![entry(property, requirement.clone())]),
        "{property} = {value}"
    );
}

/// Asserts that `property: value` passes.
fn assert_passes(server: &TestServer, property: &str, value: &Value) {
    assert_eq!(probe(server, property, value), outcome(vec![]), "{property} = {value}");
}

/// An ISO-8601 UTC date-time `minutes` ago.
fn iso_minutes_ago(minutes: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = i64::try_from(now - minutes * 60).unwrap();
    let (days, seconds) = (at.div_euclid(86_400), at.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

/// The policy list of one property in a `GET /openidm/policy/<path>` body, as
/// `(policyId, params)` pairs.
fn described_policies(described: &Value, property: &str) -> Vec<(String, Value)> {
    let found = described["properties"]
        .as_array()
        .expect("properties")
        .iter()
        .find(|p| p["name"] == property)
        .unwrap_or_else(|| panic!("no property {property} in {described}"));
    found["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|p| {
            (
                p["policyId"].as_str().expect("policyId").to_owned(),
                p["params"].clone(),
            )
        })
        .collect()
}

fn ids(policies: &[(String, Value)]) -> Vec<&str> {
    policies.iter().map(|(id, _)| id.as_str()).collect()
}

fn params_of<'a>(policies: &'a [(String, Value)], id: &str) -> &'a Value {
    &policies
        .iter()
        .find(|(policy_id, _)| policy_id == id)
        .unwrap_or_else(|| panic!("no {id} in {policies:?}"))
        .1
}

/// A valid user with a password.
fn user_with_password(user_name: &str, password: &str) -> Value {
    user_with(user_name, &json!({"password": password}))
}

// ---------------------------------------------------------------------------------------------
// Describing policies (§6.1, §6.3, facts 254–259)
// ---------------------------------------------------------------------------------------------

#[test]
fn get_policy_lists_every_resource() {
    let server = TestServer::start();
    let reply = server.admin().get("/openidm/policy").send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(keys(&reply.body), ["_id", "resources"]);
    assert_eq!(reply.body["_id"], "");
    let resources = reply.body["resources"].as_array().expect("resources");
    let find = |pattern: &str| {
        resources
            .iter()
            .find(|r| r["resource"] == pattern)
            .unwrap_or_else(|| panic!("no resource {pattern} in {}", reply.text))
    };
    let internal = find("internal/user/*");
    let names: Vec<&str> = internal["properties"]
        .as_array()
        .expect("properties")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["_id", "password"], "policy.json's internal/user/* properties");
    assert_eq!(
        ids(&described_policies(internal, "password")),
        ["required", "not-empty", "minimum-length"]
    );
    assert_eq!(
        params_of(&described_policies(internal, "password"), "minimum-length"),
        &json!({"minLength": 8})
    );
    let managed = find("managed/user/*");
    assert!(
        managed["properties"].as_array().is_some_and(|p| !p.is_empty()),
        "managed/user/* carries the schema-derived properties: {managed}"
    );
    find("managed/role/*");
}

#[test]
fn get_policy_of_managed_user_merges_the_schema_in_schema_order() {
    let server = TestServer::start();
    for (path, id) in [("managed/user/*", "*"), ("managed/user", "user")] {
        let reply = server.admin().get(&format!("/openidm/policy/{path}")).send();
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_eq!(keys(&reply.body), ["_id", "resource", "properties"], "{path}");
        assert_eq!(reply.body["_id"], id, "{path}");
        assert_eq!(reply.body["resource"], path);
    }
    let described = server.admin().get("/openidm/policy/managed/user/*").send().body;
    let names: Vec<&str> = described["properties"]
        .as_array()
        .expect("properties")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    let managed: Value =
        serde_json::from_str(&std::fs::read_to_string(server.conf().join("managed.json")).unwrap()).unwrap();
    let schema_order: Vec<&str> = managed["objects"][0]["schema"]["properties"]
        .as_object()
        .expect("user properties")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, schema_order, "properties follow the schema's order");

    // Fact 254.
    let user_name = described_policies(&described, "userName");
    assert_eq!(
        ids(&user_name),
        [
            "required",
            "not-empty",
            "minimum-length",
            "valid-type",
            "valid-username",
            "cannot-contain-characters"
        ]
    );
    assert_eq!(params_of(&user_name, "minimum-length"), &json!({"minLength": 1}));
    assert_eq!(params_of(&user_name, "valid-type"), &json!({"types": ["string"]}));
    assert_eq!(
        params_of(&user_name, "cannot-contain-characters"),
        &json!({"forbiddenChars": ["/"]})
    );
    // Fact 255 (password is not required in IDM's schema, nor here).
    let password = described_policies(&described, "password");
    assert_eq!(
        ids(&password),
        [
            "not-empty",
            "minimum-length",
            "valid-type",
            "at-least-X-capitals",
            "at-least-X-numbers",
            "cannot-contain-others"
        ]
    );
    assert_eq!(params_of(&password, "minimum-length"), &json!({"minLength": 8}));
    assert_eq!(params_of(&password, "at-least-X-capitals"), &json!({"numCaps": 1}));
    assert_eq!(params_of(&password, "at-least-X-numbers"), &json!({"numNums": 1}));
    assert_eq!(
        params_of(&password, "cannot-contain-others"),
        &json!({"disallowedFields": ["userName", "givenName", "sn"]})
    );
    // Fact 256.
    assert_eq!(
        ids(&described_policies(&described, "mail")),
        ["required", "valid-type", "valid-email-address-format"]
    );
    // Fact 257.
    let telephone = described_policies(&described, "telephoneNumber");
    assert_eq!(ids(&telephone), ["regexpMatches", "valid-type"]);
    assert_eq!(
        params_of(&telephone, "regexpMatches")["regexp"],
        r"^\+?([0-9\- \(\)])*$"
    );
    // Fact 259.
    assert_eq!(ids(&described_policies(&described, "roles")), ["valid-type"]);
    assert_eq!(
        params_of(&described_policies(&described, "roles"), "valid-type"),
        &json!({"types": ["array"]})
    );
}

#[test]
fn described_properties_carry_requirements_and_null_conditionals() {
    let server = TestServer::start();
    let described = server.admin().get("/openidm/policy/managed/user/*").send().body;
    let password = described["properties"]
        .as_array()
        .expect("properties")
        .iter()
        .find(|p| p["name"] == "password")
        .expect("password")
        .clone();
    assert_eq!(password["conditionalPolicies"], Value::Null);
    assert_eq!(password["fallbackPolicies"], Value::Null);
    assert_eq!(
        password["policyRequirements"],
        json!([
            "REQUIRED",
            "MIN_LENGTH",
            "VALID_TYPE",
            "AT_LEAST_X_CAPITAL_LETTERS",
            "AT_LEAST_X_NUMBERS",
            "CANNOT_CONTAIN_OTHERS"
        ])
    );
    let capitals = password["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .find(|p| p["policyId"] == "at-least-X-capitals")
        .expect("at-least-X-capitals");
    assert_eq!(capitals["params"], json!({"numCaps": 1}));
    assert_eq!(capitals["policyRequirements"], json!(["AT_LEAST_X_CAPITAL_LETTERS"]));
}

#[test]
fn schema_derived_lists_for_relationships_type_lists_and_nullable_types() {
    let server = probe_server();
    let described = server.admin().get("/openidm/policy/managed/probe/*").send();
    assert_eq!(described.status, 200, "{}", described.text);
    // Fact 258: a relationship is validated as an object.
    let manager = described_policies(&described.body, "manager");
    assert_eq!(ids(&manager), ["valid-type"]);
    assert_eq!(params_of(&manager, "valid-type"), &json!({"types": ["object"]}));
    // Fact 259: a list of types without "null" adds not-empty; "array" alone does not.
    let multi = described_policies(&described.body, "multi");
    assert_eq!(ids(&multi), ["not-empty", "valid-type"]);
    assert_eq!(params_of(&multi, "valid-type"), &json!({"types": ["string", "number"]}));
    assert_eq!(ids(&described_policies(&described.body, "tags")), ["valid-type"]);
    assert_eq!(ids(&described_policies(&described.body, "nickname")), ["valid-type"]);
}

#[test]
fn policy_of_an_unknown_resource_is_404() {
    let server = TestServer::start();
    let reply = server.admin().get("/openidm/policy/managed/nosuchtype/*").send();
    reply.assert_error(404);
}

#[test]
fn an_unknown_policy_action_is_400() {
    let server = TestServer::start();
    let reply = server
        .admin()
        .post("/openidm/policy/managed/user/*?_action=frobnicate", &json!({}))
        .send();
    assert_eq!(reply.assert_error(400), "Unsupported action: frobnicate");
}

// ---------------------------------------------------------------------------------------------
// Result format and order (§6.2, facts 260–262)
// ---------------------------------------------------------------------------------------------

#[test]
fn validate_object_reports_one_entry_per_failing_policy_in_definition_order() {
    let server = TestServer::start();
    // Fact 260 (givenName and sn are required in the shipped schema).
    let body = validate_object(
        &server,
        "managed/user/*",
        &json!({"userName": "bj", "mail": "x", "password": "abc"}),
    );
    assert_eq!(
        body,
        outcome(vec![
            entry("password", with_params("MIN_LENGTH", json!({"minLength": 8}))),
            entry(
                "password",
                with_params("AT_LEAST_X_CAPITAL_LETTERS", json!({"numCaps": 1}))
            ),
            entry("password", with_params("AT_LEAST_X_NUMBERS", json!({"numNums": 1}))),
            entry("givenName", bare("REQUIRED")),
            entry("sn", bare("REQUIRED")),
            entry("mail", bare("VALID_EMAIL_ADDRESS_FORMAT")),
        ])
    );
}

#[test]
fn a_valid_object_passes_on_every_path_form() {
    let server = TestServer::start();
    let object = user_with_password("vobj", "Passw0rdX");
    // Fact 261; the id segment of managed/user/<id> matches `*`, and the collection path too.
    for path in ["managed/user/*", "managed/user/someone", "managed/user"] {
        assert_eq!(
            validate_object(&server, path, &object),
            json!({"result": true, "failedPolicyRequirements": []}),
            "{path}"
        );
    }
    let failing = json!({"userName": "x"});
    let expected = validate_object(&server, "managed/user/*", &failing);
    assert_eq!(expected["result"], false);
    assert_eq!(validate_object(&server, "managed/user/someone", &failing), expected);
    assert_eq!(validate_object(&server, "managed/user", &failing), expected);
}

#[test]
fn validate_object_writes_nothing() {
    let server = TestServer::start();
    let name = unique("dry");
    let body = validate_object(&server, "managed/user/*", &user_body(&name));
    assert_eq!(body["result"], true);
    assert_eq!(count(&server, "true"), 0);
}

#[test]
fn an_empty_password_fails_every_judging_policy_once_required_failed() {
    let server = TestServer::start();
    let body = validate_object(&server, "managed/user/*", &user_with_password("emptypw", ""));
    assert_eq!(
        body,
        outcome(vec![
            entry("password", bare("REQUIRED")),
            entry("password", with_params("MIN_LENGTH", json!({"minLength": 8}))),
            entry(
                "password",
                with_params("AT_LEAST_X_CAPITAL_LETTERS", json!({"numCaps": 1}))
            ),
            entry("password", with_params("AT_LEAST_X_NUMBERS", json!({"numNums": 1}))),
        ])
    );
}

#[test]
fn policy_json_properties_come_before_schema_properties() {
    let server = TestServer::builder()
        .edit(|project| {
            let path = project.join("conf/policy.json");
            let mut policy: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            policy["resources"].as_array_mut().unwrap().push(json!(
                {"resource": "managed/user/*", "properties": [
                    {"name": "description", "policies": [{"policyId": "maximum-length", "params": {"maxLength": 3}}]}
                ]}
            ));
            std::fs::write(&path, policy.to_string()).unwrap();
        })
        .start();
    let body = validate_object(
        &server,
        "managed/user/*",
        &json!({"userName": "order", "sn": "S", "mail": "o@example.com", "description": "abcdef"}),
    );
    assert_eq!(
        body,
        outcome(vec![
            entry("description", with_params("MAX_LENGTH", json!({"maxLength": 3}))),
            entry("givenName", bare("REQUIRED")),
        ]),
        "policy.json entries first, then the schema's properties"
    );
    let described = server.admin().get("/openidm/policy/managed/user/*").send().body;
    assert_eq!(described["properties"][0]["name"], "description");
    // The derived valid-type is appended after the explicit policy.
    assert_eq!(
        ids(&described_policies(&described, "description")),
        ["maximum-length", "valid-type"]
    );
}

#[test]
fn validate_property_checks_only_the_listed_properties_against_the_stored_object() {
    let server = TestServer::start();
    let name = unique("vprop");
    let created = server
        .admin()
        .post(
            "/openidm/managed/user?_action=create",
            &json!({"userName": name, "givenName": "Barbara", "sn": "Jensen", "mail": "b@example.com",
                    "password": "Passw0rdX"}),
        )
        .send();
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["_id"].as_str().expect("_id").to_owned();
    let path = format!("managed/user/{id}");

    // Fact 262.
    assert_eq!(
        validate_property(&server, &path, &json!({"password": "1NewPassword"})),
        outcome(vec![])
    );
    assert_eq!(
        validate_property(&server, &path, &json!({"password": "12345"})),
        outcome(vec![
            entry("password", with_params("MIN_LENGTH", json!({"minLength": 8}))),
            entry(
                "password",
                with_params("AT_LEAST_X_CAPITAL_LETTERS", json!({"numCaps": 1}))
            ),
        ])
    );
    // Unlisted required properties are not checked.
    assert_eq!(
        validate_property(&server, &path, &json!({"mail": "nope"})),
        outcome(vec![entry("mail", bare("VALID_EMAIL_ADDRESS_FORMAT"))])
    );
    // cannot-contain-others compares with the stored object's values (§6.5).
    assert_eq!(
        validate_property(&server, &path, &json!({"password": "Jensen123"})),
        outcome(vec![entry(
            "password",
            with_params("CANNOT_CONTAIN_OTHERS", json!({"disallowedFields": ["sn"]}))
        )])
    );
}

/// A server whose `policy.json` adds `resource_properties` to `managed/user/*`.
fn with_user_policy_properties(resource_properties: Value) -> TestServer {
    TestServer::builder()
        .edit(move |project| {
            let path = project.join("conf/policy.json");
            let mut policy: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            policy["resources"]
                .as_array_mut()
                .unwrap()
                .push(json!({"resource": "managed/user/*", "properties": resource_properties}));
            std::fs::write(&path, policy.to_string()).unwrap();
        })
        .start()
}

#[test]
fn array_element_properties_report_each_index() {
    // §6.2: array-element properties named `x[*]` report `x[0]`, `x[1]`, ….
    let server = with_user_policy_properties(json!([
        {"name": "aliases[*]", "policies": [{"policyId": "minimum-length", "params": {"minLength": 3}}]}
    ]));
    let body = validate_object(
        &server,
        "managed/user/*",
        &user_with("arr", &json!({"aliases": ["abcd", "ab", "x", "abc"]})),
    );
    assert_eq!(
        body,
        outcome(vec![
            entry("aliases[1]", with_params("MIN_LENGTH", json!({"minLength": 3}))),
            entry("aliases[2]", with_params("MIN_LENGTH", json!({"minLength": 3}))),
        ])
    );
    assert_eq!(
        validate_object(
            &server,
            "managed/user/*",
            &user_with("arr", &json!({"aliases": ["abcd", "abc"]}))
        ),
        outcome(vec![])
    );
}

#[test]
fn conditional_policies_apply_when_their_condition_holds_else_the_fallback() {
    // §6.5: conditional policies whose dependencies are present and whose condition holds are
    // added; when none applied, the fallback policies are.
    let server = with_user_policy_properties(json!([
        {"name": "postalCode",
         "conditionalPolicies": [
             {"condition": {"type": "queryFilter", "filter": "country eq \"NO\""},
              "dependencies": ["country"],
              "policies": [{"policyId": "maximum-length", "params": {"maxLength": 4}}]}
         ],
         "fallbackPolicies": [{"policyId": "minimum-length", "params": {"minLength": 5}}]}
    ]));
    let check = |extra: Value| validate_object(&server, "managed/user/*", &user_with("cond", &extra));
    assert_eq!(
        check(json!({"country": "NO", "postalCode": "12345"})),
        outcome(vec![entry(
            "postalCode",
            with_params("MAX_LENGTH", json!({"maxLength": 4}))
        )])
    );
    assert_eq!(check(json!({"country": "NO", "postalCode": "0150"})), outcome(vec![]));
    // The condition does not hold, or its dependency is missing: the fallback applies.
    for extra in [
        json!({"country": "SE", "postalCode": "114"}),
        json!({"postalCode": "114"}),
    ] {
        assert_eq!(
            check(extra.clone()),
            outcome(vec![entry(
                "postalCode",
                with_params("MIN_LENGTH", json!({"minLength": 5}))
            )]),
            "{extra}"
        );
    }
    assert_eq!(check(json!({"country": "SE", "postalCode": "11455"})), outcome(vec![]));
    let described = server.admin().get("/openidm/policy/managed/user/*").send().body;
    let postal = described["properties"]
        .as_array()
        .expect("properties")
        .iter()
        .find(|p| p["name"] == "postalCode")
        .expect("postalCode")
        .clone();
    assert_eq!(postal["conditionalPolicies"][0]["dependencies"], json!(["country"]));
    assert_eq!(
        postal["fallbackPolicies"],
        json!([{"policyId": "minimum-length", "params": {"minLength": 5}}])
    );
}

// ---------------------------------------------------------------------------------------------
// Each shipped policy, passing and failing (facts 234–253, §6.4)
// ---------------------------------------------------------------------------------------------

#[test]
fn required() {
    let server = probe_server();
    // Fact 234.
    assert_eq!(
        validate_object(&server, "managed/probe/*", &json!({})),
        outcome(vec![entry("req", bare("REQUIRED"))])
    );
    assert_eq!(
        validate_object(&server, "managed/probe/*", &json!({"req": null})),
        outcome(vec![])
    );
    assert_eq!(
        validate_object(&server, "managed/probe/*", &json!({"req": ""})),
        outcome(vec![])
    );
}

#[test]
fn not_empty() {
    let server = probe_server();
    // Fact 235.
    for value in [json!(""), json!([]), json!(null), json!(5), json!(true)] {
        assert_fails(&server, "notEmpty", &value, &bare("REQUIRED"));
    }
    assert_passes(&server, "notEmpty", &json!("x"));
    assert_passes(&server, "notEmpty", &json!(["x"]));
    assert_eq!(
        validate_object(&server, "managed/probe/*", &json!({"req": 1})),
        outcome(vec![]),
        "absent: skipped"
    );
}

#[test]
fn valid_type() {
    let server = probe_server();
    // Fact 236.
    for (value, invalid) in [
        (json!(null), "null"),
        (json!(5), "number"),
        (json!(2.5), "number"),
        (json!([]), "array"),
        (json!({}), "object"),
        (json!(true), "boolean"),
    ] {
        assert_fails(
            &server,
            "str",
            &value,
            &with_params("VALID_TYPE", json!({"invalidType": invalid, "validTypes": ["string"]})),
        );
    }
    assert_passes(&server, "str", &json!("s"));
    // Fact 237.
    assert_passes(&server, "strOrNull", &json!(null));
    assert_passes(&server, "strOrNull", &json!("s"));
    assert_fails(
        &server,
        "strOrNull",
        &json!(1),
        &with_params(
            "VALID_TYPE",
            json!({"invalidType": "number", "validTypes": ["string", "null"]}),
        ),
    );
    // [DECISION] schema type "integer": numbers without a fractional part.
    assert_passes(&server, "int", &json!(3));
    assert_fails(
        &server,
        "int",
        &json!(3.5),
        &with_params(
            "VALID_TYPE",
            json!({"invalidType": "number", "validTypes": ["integer"]}),
        ),
    );
}

#[test]
fn minimum_length() {
    let server = probe_server();
    // Fact 238.
    assert_fails(
        &server,
        "minLen",
        &json!("abc"),
        &with_params("MIN_LENGTH", json!({"minLength": 8})),
    );
    assert_passes(&server, "minLen", &json!(""));
    assert_passes(&server, "minLen", &json!("abcdefgh"));
    // Once REQUIRED failed on the property, the empty string is judged too.
    assert_eq!(
        probe(&server, "mustMinLen", &json!("")),
        outcome(vec![
            entry("mustMinLen", bare("REQUIRED")),
            entry("mustMinLen", with_params("MIN_LENGTH", json!({"minLength": 8}))),
            entry(
                "mustMinLen",
                with_params("AT_LEAST_X_CAPITAL_LETTERS", json!({"numCaps": 1}))
            ),
        ])
    );
}

#[test]
fn maximum_length() {
    let server = probe_server();
    assert_fails(
        &server,
        "maxLen",
        &json!("abcdef"),
        &with_params("MAX_LENGTH", json!({"maxLength": 5})),
    );
    assert_passes(&server, "maxLen", &json!("abcde"));
}

#[test]
fn at_least_x_capitals() {
    let server = probe_server();
    // Fact 239.
    assert_fails(
        &server,
        "caps",
        &json!("password1"),
        &with_params("AT_LEAST_X_CAPITAL_LETTERS", json!({"numCaps": 1})),
    );
    assert_passes(&server, "caps", &json!("Password1"));
    assert_passes(&server, "caps", &json!("pass(word"));
    assert_fails(
        &server,
        "twoCaps",
        &json!("Password"),
        &with_params("AT_LEAST_X_CAPITAL_LETTERS", json!({"numCaps": 2})),
    );
    assert_passes(&server, "twoCaps", &json!("PassWord"));
    assert_passes(&server, "caps", &json!(""));
}

#[test]
fn at_least_x_numbers() {
    let server = probe_server();
    // Fact 240.
    assert_fails(
        &server,
        "nums",
        &json!("Password"),
        &with_params("AT_LEAST_X_NUMBERS", json!({"numNums": 1})),
    );
    assert_passes(&server, "nums", &json!("Passw0rd"));
}

#[test]
fn valid_email_address_format() {
    let server = probe_server();
    // Fact 241.
    for value in ["bjensen", "a@b"] {
        assert_fails(&server, "email", &json!(value), &bare("VALID_EMAIL_ADDRESS_FORMAT"));
    }
    assert_passes(&server, "email", &json!("a@b.c"));
    assert_passes(&server, "email", &json!("A@B.COM"));
    assert_passes(&server, "email", &json!(""));
}

#[test]
fn valid_phone_format() {
    let server = probe_server();
    // Fact 242.
    assert_passes(&server, "phone", &json!("+1 (555) 123-4567"));
    assert_fails(&server, "phone", &json!("555-CALL"), &bare("VALID_PHONE_FORMAT"));
    assert_passes(&server, "phone", &json!(""));
}

#[test]
fn valid_name_format() {
    let server = probe_server();
    // Fact 243.
    for value in ["Jean-Luc O'Neil", "R2D2", "Łukasz Żółć", "Ærøskøbing"] {
        assert_passes(&server, "name", &json!(value));
    }
    for value in ["a&b", "a!b"] {
        assert_fails(&server, "name", &json!(value), &bare("VALID_NAME_FORMAT"));
    }
}

#[test]
fn cannot_contain_characters() {
    let server = probe_server();
    // Fact 244.
    assert_fails(
        &server,
        "slash",
        &json!("a/b"),
        &with_params("CANNOT_CONTAIN_CHARACTERS", json!({"forbiddenChars": "/"})),
    );
    assert_passes(&server, "slash", &json!("ab"));
    assert_fails(
        &server,
        "slashStar",
        &json!("a*b"),
        &with_params("CANNOT_CONTAIN_CHARACTERS", json!({"forbiddenChars": "/, *"})),
    );
    assert_passes(&server, "slashStar", &json!("a-b"));
}

#[test]
fn cannot_contain_others() {
    let server = TestServer::start();
    // Fact 245 (6.5 params: every matching field, as an array).
    let bjensen = json!({"userName": "bjensen", "givenName": "Barbara", "sn": "Jensen", "mail": "b@example.com"});
    let mut object = bjensen.clone();
    object["password"] = json!("Xbjensen1");
    assert_eq!(
        validate_object(&server, "managed/user/*", &object),
        outcome(vec![entry(
            "password",
            with_params("CANNOT_CONTAIN_OTHERS", json!({"disallowedFields": ["userName"]}))
        )])
    );
    object["password"] = json!("BarbaraJensen1");
    assert_eq!(
        validate_object(&server, "managed/user/*", &object),
        outcome(vec![entry(
            "password",
            with_params(
                "CANNOT_CONTAIN_OTHERS",
                json!({"disallowedFields": ["givenName", "sn"]})
            )
        )])
    );
    // Fact 246: case-sensitive.
    object["password"] = json!("JENSEN1a");
    assert_eq!(validate_object(&server, "managed/user/*", &object), outcome(vec![]));
}

#[test]
fn cannot_contain_duplicates() {
    let server = probe_server();
    // Fact 247.
    assert_fails(
        &server,
        "list",
        &json!(["a", "b", "a"]),
        &with_params("CANNOT_CONTAIN_DUPLICATES", json!({"duplicateValue": "a"})),
    );
    assert_passes(&server, "list", &json!(["a", "b"]));
}

#[test]
fn regexp_matches_from_the_schema_pattern() {
    let server = TestServer::start();
    let pattern = r"^\+?([0-9\- \(\)])*$";
    // Fact 248.
    let body = validate_object(
        &server,
        "managed/user/*",
        &user_with("tel", &json!({"telephoneNumber": "abc"})),
    );
    assert_eq!(body["result"], false);
    let failed = body["failedPolicyRequirements"].as_array().expect("failed");
    assert_eq!(failed.len(), 1, "{body}");
    assert_eq!(failed[0]["property"], "telephoneNumber");
    let requirement = &failed[0]["policyRequirements"][0];
    assert_eq!(requirement["policyRequirement"], "MATCH_REGEXP");
    assert_eq!(requirement["regexp"], pattern, "the regexp is echoed at the top level");
    assert_eq!(requirement["params"]["regexp"], pattern);
    for passing in ["", "+1 (555) 123-4567"] {
        assert_eq!(
            validate_object(
                &server,
                "managed/user/*",
                &user_with("tel", &json!({"telephoneNumber": passing}))
            ),
            outcome(vec![]),
            "{passing:?}"
        );
    }
}

#[test]
fn regexp_matches_with_flags() {
    let server = probe_server();
    assert_passes(&server, "letters", &json!("AbC"));
    let failed = probe(&server, "letters", &json!("ab1"));
    assert_eq!(failed["result"], false);
    let requirement = &failed["failedPolicyRequirements"][0]["policyRequirements"][0];
    assert_eq!(requirement["policyRequirement"], "MATCH_REGEXP");
    assert_eq!(requirement["regexp"], "^[a-z]+$");
    assert_eq!(requirement["flags"], "i");
    assert_eq!(requirement["params"]["regexp"], "^[a-z]+$");
}

#[test]
fn valid_date() {
    let server = probe_server();
    // Fact 252.
    assert_passes(&server, "date", &json!("2017-01-01"));
    assert_passes(&server, "date", &json!("2017-01-01T10:00:00Z"));
    assert_fails(&server, "date", &json!("not a date"), &bare("VALID_DATE"));
}

#[test]
fn max_attempts_triggers_lock_cooldown() {
    let server = probe_server();
    // Fact 253.
    let recent = validate_object(
        &server,
        "managed/probe/*",
        &json!({"req": 1, "attempts": 4, "lastFailed": iso_minutes_ago(1)}),
    );
    assert_eq!(
        recent,
        outcome(vec![entry(
            "attempts",
            with_params(
                "NO_MORE_THAN_X_ATTEMPTS_WITHIN_Y_MINUTES",
                json!({"max": 3, "numMinutes": 5})
            )
        )])
    );
    let old = validate_object(
        &server,
        "managed/probe/*",
        &json!({"req": 1, "attempts": 4, "lastFailed": iso_minutes_ago(10)}),
    );
    assert_eq!(old, outcome(vec![]));
    let few = validate_object(
        &server,
        "managed/probe/*",
        &json!({"req": 1, "attempts": 3, "lastFailed": iso_minutes_ago(1)}),
    );
    assert_eq!(few, outcome(vec![]));
}

#[test]
fn no_internal_user_conflict() {
    let server = probe_server();
    // Fact 251.
    assert_fails(&server, "internal", &json!("openidm-admin"), &bare("UNIQUE"));
    assert_fails(&server, "internal", &json!("anonymous"), &bare("UNIQUE"));
    assert_passes(&server, "internal", &json!("somebody"));
}

#[test]
fn valid_array_items() {
    let server = probe_server();
    assert_passes(&server, "items", &json!(["abcd", "abc"]));
    let body = probe(&server, "items", &json!(["abcd", "ab"]));
    assert_eq!(body["result"], false, "{body}");
    let failed = body["failedPolicyRequirements"].as_array().expect("failed");
    assert_eq!(failed.len(), 1, "{body}");
    assert_eq!(failed[0]["property"], "items");
    let requirement = &failed[0]["policyRequirements"][0];
    assert_eq!(requirement["policyRequirement"], "VALID_ARRAY_ITEMS");
    let invalid = requirement["params"]["invalidArrayItems"]
        .as_array()
        .expect("invalidArrayItems");
    assert_eq!(invalid.len(), 1, "{body}");
    assert_eq!(invalid[0]["arrayIndex"], 1);
    assert_eq!(
        invalid[0]["failedPolicyRequirements"][0]["policyRequirements"],
        json!([{"policyRequirement": "MIN_LENGTH", "params": {"minLength": 3}}])
    );
}

#[test]
fn valid_temporal_constraints() {
    let server = probe_server();
    assert_passes(
        &server,
        "temporal",
        &json!([{"duration": "2017-01-01T00:00:00Z/2018-01-01T00:00:00Z"}]),
    );
    for value in [
        json!("x"),
        json!([{"duration": "nope"}]),
        json!([{"start": "2017-01-01"}]),
    ] {
        assert_fails(&server, "temporal", &value, &bare("TEMPORAL_CONSTRAINT_FORMAT"));
    }
}

#[test]
fn valid_username_refuses_taken_and_internal_names() {
    let server = TestServer::start();
    let name = unique("taken");
    let created = server
        .admin()
        .post("/openidm/managed/user?_action=create", &user_body(&name))
        .send();
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["_id"].as_str().expect("_id").to_owned();
    let expected = outcome(vec![entry("userName", bare("VALID_USERNAME"))]);
    // Fact 250.
    for user_name in [name.as_str(), "openidm-admin"] {
        assert_eq!(
            validate_object(&server, "managed/user/*", &user_body(user_name)),
            expected,
            "{user_name}"
        );
        let refused = server
            .admin()
            .post("/openidm/managed/user?_action=create", &user_body(user_name))
            .send();
        assert_eq!(refused.assert_error(403), "Policy validation failed");
        assert_eq!(refused.body["detail"], expected);
    }
    // The user itself keeps its own name (fact 249's update case).
    assert_eq!(
        validate_object(&server, &format!("managed/user/{id}"), &user_body(&name)),
        outcome(vec![])
    );
    let updated = server
        .admin()
        .put(
            &format!("/openidm/managed/user/{id}"),
            &user_with(&name, &json!({"description": "kept"})),
        )
        .header("If-Match", "*")
        .send();
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(count(&server, "true"), 1);
}

#[test]
fn unique_refuses_a_second_role_with_the_same_name() {
    on_each_backend(|builder| {
        let server = builder.start();
        // Fact 249.
        let first = server
            .admin()
            .post("/openidm/managed/role?_action=create", &json!({"name": "auditors"}))
            .send();
        assert_eq!(first.status, 201, "{}", first.text);
        let id = first.body["_id"].as_str().expect("_id").to_owned();
        let second = server
            .admin()
            .post("/openidm/managed/role?_action=create", &json!({"name": "auditors"}))
            .send();
        assert_eq!(second.assert_error(403), "Policy validation failed");
        assert_eq!(second.body["detail"], outcome(vec![entry("name", bare("UNIQUE"))]));
        let kept = server
            .admin()
            .put(
                &format!("/openidm/managed/role/{id}"),
                &json!({"name": "auditors", "description": "same name"}),
            )
            .header("If-Match", "*")
            .send();
        assert_eq!(kept.status, 200, "{}", kept.text);
        let roles = server
            .admin()
            .get("/openidm/managed/role?_queryFilter=true&_fields=_id")
            .send();
        assert_eq!(roles.body["resultCount"], 1, "{}", roles.text);
    });
}

// ---------------------------------------------------------------------------------------------
// Enforcement (§6.6, §4.2, facts 263–264)
// ---------------------------------------------------------------------------------------------

#[test]
fn create_failing_policy_is_403_with_the_validate_object_result() {
    on_each_backend(|builder| {
        let server = builder.start();
        let body = json!({"userName": "bj", "mail": "x", "password": "abc"});
        let expected = validate_object(&server, "managed/user/*", &body);
        // Fact 263, by POST and by PUT with If-None-Match.
        let posted = server
            .admin()
            .post("/openidm/managed/user?_action=create", &body)
            .send();
        assert_eq!(posted.assert_error(403), "Policy validation failed");
        assert_eq!(
            posted.body,
            json!({"code": 403, "reason": "Forbidden", "message": "Policy validation failed", "detail": expected})
        );
        let put = server
            .admin()
            .put("/openidm/managed/user/bj", &body)
            .header("If-None-Match", "*")
            .send();
        assert_eq!(put.assert_error(403), "Policy validation failed");
        assert_eq!(put.body["detail"], expected);
        assert_eq!(count(&server, "true"), 0, "nothing was created");
    });
}

#[test]
fn update_failing_policy_is_403_and_changes_nothing() {
    let server = TestServer::start();
    let name = unique("upd");
    let created = server.create_user(&name, Some("Passw0rdX"));
    let id = created["_id"].as_str().expect("_id").to_owned();
    let path = format!("/openidm/managed/user/{id}");
    let mut body = user_body(&name);
    body.as_object_mut().expect("object").remove("sn");
    body["mail"] = json!("not-an-address");
    let refused = server.admin().put(&path, &body).header("If-Match", "*").send();
    assert_eq!(refused.assert_error(403), "Policy validation failed");
    assert_eq!(
        refused.body["detail"],
        outcome(vec![
            entry("sn", bare("REQUIRED")),
            entry("mail", bare("VALID_EMAIL_ADDRESS_FORMAT")),
        ])
    );
    let read = server.admin().get(&path).send();
    assert_eq!(read.body["_rev"], created["_rev"], "the refused update changed nothing");
    assert_eq!(read.body["sn"], "User");
}

#[test]
fn patch_failing_policy_says_failed_policy_validation() {
    on_each_backend(|builder| {
        let server = builder.start();
        let name = unique("pat");
        let created = server.create_user(&name, Some("Passw0rdX"));
        let id = created["_id"].as_str().expect("_id").to_owned();
        let path = format!("/openidm/managed/user/{id}");
        // Fact 264.
        let refused = server
            .admin()
            .patch(
                &path,
                &json!([{"operation": "replace", "field": "/password", "value": "abc"}]),
            )
            .send();
        assert_eq!(refused.assert_error(403), "Failed policy validation");
        assert_eq!(
            refused.body,
            json!({"code": 403, "reason": "Forbidden", "message": "Failed policy validation",
            "detail": outcome(vec![
                entry("password", with_params("MIN_LENGTH", json!({"minLength": 8}))),
                entry("password", with_params("AT_LEAST_X_CAPITAL_LETTERS", json!({"numCaps": 1}))),
                entry("password", with_params("AT_LEAST_X_NUMBERS", json!({"numNums": 1}))),
            ])})
        );
        // Only the touched properties are validated: removing the required mail fails on mail
        // alone.
        let removed_mail = server
            .admin()
            .patch(&path, &json!([{"operation": "remove", "field": "/mail"}]))
            .send();
        assert_eq!(removed_mail.assert_error(403), "Failed policy validation");
        assert_eq!(
            removed_mail.body["detail"],
            outcome(vec![entry("mail", bare("REQUIRED"))])
        );
        // A password containing the stored given name (cross-field, from the patched object).
        let contains = server
            .admin()
            .patch(
                &path,
                &json!([{"operation": "replace", "field": "/password", "value": "Test12345"}]),
            )
            .send();
        assert_eq!(contains.assert_error(403), "Failed policy validation");
        assert_eq!(
            contains.body["detail"],
            outcome(vec![entry(
                "password",
                with_params("CANNOT_CONTAIN_OTHERS", json!({"disallowedFields": ["givenName"]}))
            )])
        );
        let read = server.admin().get(&path).send();
        assert_eq!(
            read.body["_rev"], created["_rev"],
            "the refused patches changed nothing"
        );
        let good = server
            .admin()
            .patch(
                &path,
                &json!([{"operation": "replace", "field": "/password", "value": "N3wPassword"}]),
            )
            .send();
        assert_eq!(good.status, 200, "{}", good.text);
    });
}

#[test]
fn patch_action_failing_policy_says_failed_policy_validation() {
    let server = TestServer::start();
    let name = unique("pact");
    let created = server.create_user(&name, None);
    let id = created["_id"].as_str().expect("_id").to_owned();
    let refused = server
        .admin()
        .post(
            &format!("/openidm/managed/user/{id}?_action=patch"),
            &json!([{"operation": "replace", "field": "/telephoneNumber", "value": "call me"}]),
        )
        .send();
    assert_eq!(refused.assert_error(403), "Failed policy validation");
    assert_eq!(
        refused.body["detail"]["failedPolicyRequirements"][0]["property"],
        "telephoneNumber"
    );
    assert_eq!(
        refused.body["detail"]["failedPolicyRequirements"][0]["policyRequirements"][0]["policyRequirement"],
        "MATCH_REGEXP"
    );
}

#[test]
fn a_valid_create_passes_every_policy() {
    on_each_backend(|builder| {
        let server = builder.start();
        let name = unique("ok");
        let created = server
            .admin()
            .post(
                "/openidm/managed/user?_action=create",
                &user_with(
                    &name,
                    &json!({"password": "Passw0rdX", "telephoneNumber": "+1 555 0100"}),
                ),
            )
            .send();
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(created.body["userName"], name.as_str());
        assert!(created.body.get("password").is_none(), "private: {}", created.text);
    });
}

// ---------------------------------------------------------------------------------------------
// Uniqueness under concurrency (scripts/README.md: backed by a unique index)
// ---------------------------------------------------------------------------------------------

/// Sends `n` identical creates to `path` at once; returns the replies.
fn race_creates(server: &TestServer, n: usize, path: &str, body: &Value) -> Vec<(u16, Value)> {
    let client = Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let url = format!("{}{path}", server.base());
    let barrier = Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (client, url, barrier) = (&client, &url, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let response = client
                        .post(url.as_str())
                        .header("X-OpenIDM-Username", "openidm-admin")
                        .header("X-OpenIDM-Password", "openidm-admin")
                        .json(body)
                        .send()
                        .unwrap();
                    let status = response.status().as_u16();
                    let text = response.text().unwrap_or_default();
                    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    })
}

fn assert_one_winner(replies: &[(u16, Value)], property: &str, requirement: &str, what: &str) {
    let winners = replies.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(winners, 1, "{what}: exactly one create wins: {replies:?}");
    for (status, body) in replies.iter().filter(|(status, _)| *status != 201) {
        assert_eq!(*status, 403, "{what}: the losers are refused by policy: {body}");
        assert_eq!(
            body,
            &json!({"code": 403, "reason": "Forbidden", "message": "Policy validation failed",
                    "detail": outcome(vec![entry(property, bare(requirement))])}),
            "{what}"
        );
    }
}

#[test]
fn parallel_creates_with_one_user_name_have_one_winner() {
    on_each_backend(|builder: ServerBuilder| {
        let server = builder.start();
        let name = unique("racer");
        let replies = race_creates(&server, 16, "/openidm/managed/user?_action=create", &user_body(&name));
        assert_one_winner(
            &replies,
            "userName",
            "VALID_USERNAME",
            &format!("{:?}", server.backend()),
        );
        assert_eq!(count(&server, &format!("userName+eq+%22{name}%22")), 1);
    });
}

#[test]
fn parallel_creates_with_one_role_name_have_one_winner() {
    on_each_backend(|builder: ServerBuilder| {
        let server = builder.start();
        let name = unique("role");
        let replies = race_creates(
            &server,
            16,
            "/openidm/managed/role?_action=create",
            &json!({"name": name}),
        );
        assert_one_winner(&replies, "name", "UNIQUE", &format!("{:?}", server.backend()));
        let roles = server
            .admin()
            .get("/openidm/managed/role?_queryFilter=true&_fields=_id")
            .send();
        assert_eq!(roles.body["resultCount"], 1, "{}", roles.text);
    });
}
