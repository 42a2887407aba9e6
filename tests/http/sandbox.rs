//! The script sandbox (scripts/README.md "Limits", ferridm.md §2): a policy or trigger script
//! that loops forever, recurses too deep, or builds a huge string, array or map fails only the
//! request that ran it — cleanly, with an IDM error body, within bounded time — and the server
//! keeps serving. Limits come from `conf/ferridm.json` → `scriptLimits`; scripts have no `eval`
//! and import only from `scripts/`.

use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use ferridm_tests::{Reply, TestServer, unique};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::crud::{assert_alive, count, user_body, user_with};

/// A request that breaks a limit must be answered within this time (the default time budget is
/// two seconds; the operation budget is reached much sooner).
const BOUNDED: Duration = Duration::from_secs(10);

/// The harness's own settings (cheap hashing, quick reloads), plus `scriptLimits`.
fn settings(script_limits: &Value) -> String {
    json!({
        "passwordHashing": {"memoryKib": 256, "iterations": 1, "parallelism": 1},
        "watch": {"mode": "native", "debounceMillis": 50, "pollMillis": 100},
        "scriptLimits": script_limits
    })
    .to_string()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Installs `scripts/policies/sandbox.rhai` with policy `sandbox` whose check function has
/// `body`, registered in policy.json and attached to the user's `description` (only when
/// present, so users without a description never run it).
fn install_sandbox_policy(project: &Path, body: &str) {
    let script = format!(
        r#"addPolicy(#{{
    policyId: "sandbox",
    policyExec: "check",
    policyRequirements: ["SANDBOX"],
    validateOnlyIfPresent: true
}});

fn check(fullObject, value, params, property) {{
{body}
}}
"#
    );
    std::fs::write(project.join("scripts/policies/sandbox.rhai"), script).unwrap();
    let policy_path = project.join("conf/policy.json");
    let mut policy = read_json(&policy_path);
    policy["additionalFiles"]
        .as_array_mut()
        .unwrap()
        .push(json!("scripts/policies/sandbox.rhai"));
    std::fs::write(&policy_path, policy.to_string()).unwrap();
    let managed_path = project.join("conf/managed.json");
    let managed = ferridm_tests::managed_with_user(&managed_path, |user| {
        user["schema"]["properties"]["description"]["policies"] = json!([{"policyId": "sandbox"}]);
    });
    std::fs::write(&managed_path, managed.to_string()).unwrap();
}

fn sandboxed(body: &'static str) -> TestServer {
    TestServer::builder()
        .edit(move |project| install_sandbox_policy(project, body))
        .start()
}

fn sandboxed_with(body: &'static str, script_limits: &Value) -> TestServer {
    TestServer::builder()
        .conf_file("ferridm.json", &settings(script_limits))
        .edit(move |project| install_sandbox_policy(project, body))
        .start()
}

/// Creates a user with a description (so the sandbox policy runs); returns the reply and how
/// long it took.
fn create_running_the_policy(server: &TestServer) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = server
        .admin()
        .post(
            "/openidm/managed/user?_action=create",
            &user_with(&unique("runs"), &json!({"description": "run the sandbox"})),
        )
        .send();
    (reply, started.elapsed())
}

/// The request failed cleanly: an IDM 500 body naming the script, in bounded time, nothing was
/// written, and the server still serves (including writes that do not run the script).
fn assert_failed_cleanly(server: &TestServer, reply: &Reply, took: Duration) {
    let message = reply.assert_error(500);
    assert_eq!(reply.body["reason"], "Internal Server Error");
    assert!(
        message.contains("sandbox.rhai"),
        "the error names the script: {message}"
    );
    assert!(took < BOUNDED, "answered in {took:?}");
    assert_eq!(count(server, "true"), 0, "nothing was written");
    assert_alive(server);
    let created = server
        .admin()
        .post("/openidm/managed/user?_action=create", &user_body(&unique("after")))
        .send();
    assert_eq!(created.status, 201, "the server keeps serving: {}", created.text);
    // The same failing request fails the same way again (the worker is not poisoned).
    let (again, took) = create_running_the_policy(server);
    assert_eq!(again.status, 500, "{}", again.text);
    assert!(took < BOUNDED, "answered in {took:?}");
}

#[test]
fn an_endless_loop_hits_the_operation_budget() {
    let server = sandboxed("    let i = 0;\n    loop { i += 1; }\n");
    let (reply, took) = create_running_the_policy(&server);
    assert_failed_cleanly(&server, &reply, took);
}

#[test]
fn an_endless_loop_hits_the_time_budget() {
    // An operation budget far beyond reach: only the wall clock can stop this loop.
    let server = sandboxed_with(
        "    let i = 0;\n    loop { i += 1; }\n",
        &json!({"maxOperations": 1_000_000_000_000_u64, "maxMillis": 300}),
    );
    let (reply, took) = create_running_the_policy(&server);
    assert!(took < Duration::from_secs(5), "the 300 ms budget stopped it: {took:?}");
    assert_failed_cleanly(&server, &reply, took);
}

#[test]
fn deep_recursion_hits_the_call_depth() {
    let server = sandboxed("    deeper(0)\n}\n\nfn deeper(n) {\n    deeper(n + 1)\n");
    let (reply, took) = create_running_the_policy(&server);
    assert_failed_cleanly(&server, &reply, took);
}

const TWENTY_DEEP: &str = "    if depth(20) == 20 { [] } else { [#{ policyRequirement: \"SANDBOX\" }] }\n}\n\nfn depth(n) {\n    if n == 0 { 0 } else { 1 + depth(n - 1) }\n";

#[test]
fn the_call_depth_is_configurable() {
    // Twenty levels are fine under the default depth of 48 …
    let roomy = sandboxed(TWENTY_DEEP);
    let (reply, _) = create_running_the_policy(&roomy);
    assert_eq!(reply.status, 201, "{}", reply.text);
    // … and too deep under a configured depth of 8.
    let tight = sandboxed_with(TWENTY_DEEP, &json!({"maxCallLevels": 8}));
    let (reply, took) = create_running_the_policy(&tight);
    assert_failed_cleanly(&tight, &reply, took);
}

#[test]
fn a_huge_string_hits_the_string_size() {
    let server = sandboxed("    let s = \"x\";\n    loop { s += s; }\n");
    let (reply, took) = create_running_the_policy(&server);
    assert_failed_cleanly(&server, &reply, took);
}

#[test]
fn a_huge_array_hits_the_array_size() {
    let server = sandboxed("    let a = [1];\n    loop { a += a; }\n");
    let (reply, took) = create_running_the_policy(&server);
    assert_failed_cleanly(&server, &reply, took);
}

#[test]
fn a_huge_map_hits_the_map_size() {
    let server = sandboxed("    let m = #{};\n    let i = 0;\n    loop { m[`k${i}`] = i; i += 1; }\n");
    let (reply, took) = create_running_the_policy(&server);
    assert_failed_cleanly(&server, &reply, took);
}

#[test]
fn sizes_below_the_limits_are_fine() {
    let server = sandboxed(
        "    let s = \"x\";\n    for n in 0..10 { s += s; }\n    let a = [];\n    for n in 0..1000 { a.push(n); }\n    if s.len() == 1024 && a.len() == 1000 { [] } else { [#{ policyRequirement: \"SANDBOX\" }] }\n",
    );
    let (reply, _) = create_running_the_policy(&server);
    assert_eq!(reply.status, 201, "{}", reply.text);
}

#[test]
fn validate_object_fails_cleanly_too() {
    let server = sandboxed("    let i = 0;\n    loop { i += 1; }\n");
    let started = Instant::now();
    let reply = server
        .admin()
        .post(
            "/openidm/policy/managed/user/*?_action=validateObject",
            &user_with("v", &json!({"description": "run"})),
        )
        .send();
    let message = reply.assert_error(500);
    assert!(message.contains("sandbox.rhai"), "{message}");
    assert!(started.elapsed() < BOUNDED);
    assert_alive(&server);
}

#[test]
fn many_failing_requests_at_once_do_not_stop_the_server() {
    let server = sandboxed("    let i = 0;\n    loop { i += 1; }\n");
    let client = Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let url = format!("{}/openidm/managed/user?_action=create", server.base());
    let n = 8;
    let barrier = Barrier::new(n);
    let started = Instant::now();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (client, url, barrier) = (&client, &url, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    client
                        .post(url.as_str())
                        .header("X-OpenIDM-Username", "openidm-admin")
                        .header("X-OpenIDM-Password", "openidm-admin")
                        .json(&user_with(&format!("crowd-{i}"), &json!({"description": "run"})))
                        .send()
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    assert_eq!(statuses, vec![500; n]);
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    assert_alive(&server);
    assert_eq!(count(&server, "true"), 0);
}

#[test]
fn a_trigger_that_loops_forever_fails_its_request_only() {
    let server = TestServer::builder()
        .edit(|project| {
            let path = project.join("conf/managed.json");
            let mut managed = read_json(&path);
            let user = managed["objects"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|o| o["name"] == "user")
                .unwrap();
            user["onCreate"] = json!({"type": "text/rhai",
                "source": "if object.description == \"spin\" { let i = 0; loop { i += 1; } }"});
            std::fs::write(&path, managed.to_string()).unwrap();
        })
        .start();
    let started = Instant::now();
    let reply = server
        .admin()
        .post(
            "/openidm/managed/user?_action=create",
            &user_with(&unique("spin"), &json!({"description": "spin"})),
        )
        .send();
    reply.assert_error(500);
    assert!(started.elapsed() < BOUNDED, "{:?}", started.elapsed());
    assert_eq!(count(&server, "true"), 0);
    let fine = server
        .admin()
        .post(
            "/openidm/managed/user?_action=create",
            &user_with(&unique("calm"), &json!({"description": "calm"})),
        )
        .send();
    assert_eq!(fine.status, 201, "{}", fine.text);
}

#[test]
fn a_patch_transform_that_loops_forever_is_400_and_changes_nothing() {
    let server = TestServer::start();
    let created = server.create_user(&unique("tr"), None);
    let id = created["_id"].as_str().expect("_id").to_owned();
    let started = Instant::now();
    let reply = server
        .admin()
        .patch(
            &format!("/openidm/managed/user/{id}"),
            &json!([{"operation": "transform", "field": "/description",
                     "value": {"script": {"type": "text/rhai", "source": "let i = 0; loop { i += 1; }"}}}]),
        )
        .send();
    let message = reply.assert_error(400);
    assert!(message.starts_with("Failed to eval script"), "{message}");
    assert!(started.elapsed() < BOUNDED, "{:?}", started.elapsed());
    let read = server.admin().get(&format!("/openidm/managed/user/{id}")).send();
    assert_eq!(read.body["_rev"], created["_rev"]);
}

#[test]
fn a_patch_transform_sees_the_value_as_content() {
    // scripts/README.md: a transform's top level runs with `content` in scope.
    let server = TestServer::start();
    let created = server.create_user(&unique("tr"), None);
    let id = created["_id"].as_str().expect("_id").to_owned();
    let ok = server
        .admin()
        .patch(
            &format!("/openidm/managed/user/{id}"),
            &json!([{"operation": "transform", "field": "/sn",
                     "value": {"script": {"type": "text/rhai", "source": "content.to_upper()"}}}]),
        )
        .send();
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body["sn"], "USER");
}

#[test]
fn a_failing_host_call_in_a_policy_fails_with_the_host_error() {
    // scripts/README.md: a host call that fails throws #{code, message, detail}; uncaught, the
    // request fails with exactly that status and body.
    let server = sandboxed("    openidm::query(\"managed/user\", \"this is ((( not a filter\");\n    []\n");
    let (reply, took) = create_running_the_policy(&server);
    let message = reply.assert_error(400);
    assert!(message.contains("could not be parsed"), "{message}");
    assert!(took < BOUNDED);
    assert_eq!(count(&server, "true"), 0);
}

// ---------------------------------------------------------------------------------------------
// What a script cannot do at all: refused when the configuration loads
// ---------------------------------------------------------------------------------------------

/// Adds a policy script at runtime and returns the refusal reported by config/status.
fn refused_at_reload(server: &TestServer, name: &str, script: &str) -> Value {
    std::fs::write(server.project().join(format!("scripts/policies/{name}")), script).unwrap();
    let policy_path = server.conf().join("policy.json");
    let mut policy = read_json(&policy_path);
    policy["additionalFiles"]
        .as_array_mut()
        .unwrap()
        .push(json!(format!("scripts/policies/{name}")));
    let temporary = server.conf().join(".policy.json.saving");
    std::fs::write(&temporary, policy.to_string()).unwrap();
    std::fs::rename(&temporary, &policy_path).unwrap();
    server.wait_until(Duration::from_secs(15), "the refusal in config/status", || {
        let status = server.admin().get("/openidm/config/status").send().body;
        status["errors"].as_array().is_some_and(|errors| !errors.is_empty())
    });
    let status = server.admin().get("/openidm/config/status").send().body;
    status["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .find(|error| error["file"].as_str().is_some_and(|file| file.ends_with(name)))
        .unwrap_or_else(|| panic!("no error about {name}: {status}"))
        .clone()
}

fn policy_script(body: &str) -> String {
    format!(
        "addPolicy(#{{ policyId: \"refused\", policyExec: \"check\", policyRequirements: [\"X\"] }});\n\nfn check(fullObject, value, params, property) {{\n{body}\n}}\n"
    )
}

#[test]
fn eval_does_not_exist() {
    let server = TestServer::start();
    let error = refused_at_reload(&server, "evil.rhai", &policy_script("    eval(\"[]\")"));
    assert!(
        error["message"].as_str().is_some_and(|m| m.contains("evil.rhai:")),
        "{error}"
    );
    assert_alive(&server);
}

#[test]
fn too_deep_expression_nesting_does_not_compile() {
    let server = TestServer::start();
    let nested = format!("    let x = {}1{};\n    []", "(".repeat(80), ")".repeat(80));
    let error = refused_at_reload(&server, "nested.rhai", &policy_script(&nested));
    assert!(
        error["message"].as_str().is_some_and(|m| m.contains("nested.rhai:")),
        "{error}"
    );
    assert_alive(&server);
}

#[test]
fn imports_resolve_only_inside_the_scripts_directory() {
    let server = TestServer::builder()
        .edit(|project| {
            std::fs::create_dir_all(project.join("scripts/lib")).unwrap();
            std::fs::write(
                project.join("scripts/lib/digits.rhai"),
                "fn has(text) { text::matches(text, \"[0-9]\") }\n",
            )
            .unwrap();
            std::fs::write(project.join("outside.rhai"), "fn has(text) { false }\n").unwrap();
        })
        .start();
    // Inside scripts/: fine, and the imported function runs.
    let inside = "addPolicy(#{ policyId: \"lib-digits\", policyExec: \"check\", policyRequirements: [\"NO_DIGITS\"], validateOnlyIfPresent: true });\n\nfn check(fullObject, value, params, property) {\n    import \"lib/digits\" as digits;\n    if digits::has(value) { [#{ policyRequirement: \"NO_DIGITS\" }] } else { [] }\n}\n";
    std::fs::write(server.project().join("scripts/policies/libDigits.rhai"), inside).unwrap();
    let policy_path = server.conf().join("policy.json");
    let mut policy = read_json(&policy_path);
    policy["additionalFiles"]
        .as_array_mut()
        .unwrap()
        .push(json!("scripts/policies/libDigits.rhai"));
    let put = server.admin().put("/openidm/config/policy", &policy).send();
    assert_eq!(put.status, 200, "{}", put.text);
    let managed_path = server.conf().join("managed.json");
    let mut managed = read_json(&managed_path);
    managed["objects"][0]["schema"]["properties"]["city"]["policies"] = json!([{"policyId": "lib-digits"}]);
    let put = server.admin().put("/openidm/config/managed", &managed).send();
    assert_eq!(put.status, 200, "{}", put.text);
    let refused = server
        .admin()
        .post(
            "/openidm/managed/user?_action=create",
            &user_with(&unique("imp"), &json!({"city": "Oslo 1"})),
        )
        .send();
    assert_eq!(refused.assert_error(403), "Policy validation failed");
    assert_eq!(
        refused.body["detail"]["failedPolicyRequirements"],
        json!([{"policyRequirements": [{"policyRequirement": "NO_DIGITS"}], "property": "city"}])
    );

    // Outside scripts/: refused.
    let error = refused_at_reload(
        &server,
        "escape.rhai",
        &policy_script(
            "    import \"../outside\" as outside;\n    if outside::has(value) { [#{ policyRequirement: \"X\" }] } else { [] }",
        ),
    );
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
    assert_alive(&server);
}
