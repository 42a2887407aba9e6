//! `GET /openidm/metrics/prometheus`: who may read it (IDM's metrics principal, a `STATIC_USER`
//! with the `openidm-prometheus` role, reads it and nothing else) and what it counts. Every page
//! is read by the official Python client's parser (`prometheus-client`, pinned in
//! `tests/support/metrics-requirements.txt`), so a page it cannot parse fails the test; the
//! checks compare values before and after concrete actions.

use std::io::Write as _;
use std::process::{Command, Stdio};

use ferridm_tests::python::Venv;
use ferridm_tests::{ServerBuilder, TestServer, on_each_backend, unique, workspace_root};
use serde_json::{Value, json};

use crate::auth::lockout_conf;
use crate::registration::{process, submit};

const METRICS: &str = "/openidm/metrics/prometheus";
const SCRAPER: &str = "prometheus";
const SCRAPER_PASSWORD: &str = "Scrape-2-metrics";
/// The shipped metrics module's password: unset, so the principal is off until it is set.
const UNSET_PASSWORD: &str = "&{openidm.prometheus.password|}";

const VENV: Venv = Venv {
    name: "metrics-venv",
    requirements: "tests/support/metrics-requirements.txt",
    module: "prometheus_client",
};

/// `authentication.json` (the shipped one unless given) with the metrics principal's password set.
fn with_scraper(builder: ServerBuilder, authentication: Option<String>) -> ServerBuilder {
    let conf = authentication
        .unwrap_or_else(|| std::fs::read_to_string(workspace_root().join("conf/authentication.json")).unwrap());
    assert!(conf.contains(UNSET_PASSWORD), "the shipped metrics module: {conf}");
    builder.conf_file("authentication.json", &conf.replace(UNSET_PASSWORD, SCRAPER_PASSWORD))
}

/// One parsed metrics page.
struct Page(Vec<Value>);

impl Page {
    /// The sum of the samples named `name` whose labels include `labels` (0 when none).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|sample| sample["name"] == name)
            .filter(|sample| labels.iter().all(|(key, value)| sample["labels"][key] == *value))
            .map(|sample| sample["value"].as_f64().unwrap())
            .sum()
    }

    fn type_of(&self, family: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|sample| sample["family"] == family)
            .and_then(|sample| sample["type"].as_str())
    }
}

/// Reads the metrics page as the metrics principal and parses it.
fn scrape(server: &TestServer) -> Page {
    let reply = server.user(SCRAPER, SCRAPER_PASSWORD).get(METRICS).send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&reply.text)
}

fn parse(text: &str) -> Page {
    let python = VENV
        .bin()
        .unwrap_or_else(|e| panic!("cannot prepare the metrics virtualenv: {e}"))
        .join("python");
    let mut child = Command::new(python)
        .arg(workspace_root().join("tests/support/prom_parse.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the parser refused the page: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    Page(serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap())
}

#[test]
fn only_the_metrics_principal_and_administrators_read_the_metrics() {
    on_each_backend(|builder| {
        let server = with_scraper(builder, None).start();
        let name = unique("watcher");
        server.create_user(&name, Some("Passw0rd!"));

        assert_eq!(server.nobody().get(METRICS).send().status, 401);
        assert_eq!(server.user(SCRAPER, "wrong").get(METRICS).send().status, 401);
        assert_eq!(server.anonymous().get(METRICS).send().status, 403);
        assert_eq!(server.user(&name, "Passw0rd!").get(METRICS).send().status, 403);
        assert_eq!(server.admin().get(METRICS).send().status, 200);
        let page = scrape(&server);
        assert_eq!(page.type_of("ferridm_config_generation"), Some("gauge"));
        assert_eq!(page.type_of("ferridm_http_request_duration_seconds"), Some("histogram"));

        // Nothing else, not even what access.json grants every role.
        let scraper = server.user(SCRAPER, SCRAPER_PASSWORD);
        for path in [
            "/openidm/managed/user?_queryFilter=true",
            "/openidm/config",
            "/openidm/info/login",
            "/openidm/info/version",
            "/openidm/config/ui/themeconfig",
        ] {
            let reply = scraper.get(path).send();
            assert_eq!(reply.status, 403, "{path}: {}", reply.text);
        }
        assert_eq!(
            scraper
                .post_empty("/openidm/authentication?_action=login")
                .send()
                .status,
            403
        );
        assert_eq!(scraper.method("DELETE", METRICS).send().status, 403);
    });
}

#[test]
fn the_metrics_principal_is_off_until_its_password_is_set() {
    let server = TestServer::start();
    for password in ["prometheus", UNSET_PASSWORD, "x"] {
        assert_eq!(server.user(SCRAPER, password).get(METRICS).send().status, 401);
    }
}

#[test]
fn requests_are_counted_by_family_method_and_status() {
    let server = with_scraper(TestServer::builder(), None).start();
    let admin = server.admin();
    let missing = format!("/openidm/managed/user/{}", unique("missing"));
    let before = scrape(&server);
    assert_eq!(admin.get(&missing).send().status, 404);
    assert_eq!(admin.get(&missing).send().status, 404);
    assert_eq!(admin.method("DELETE", &missing).send().status, 404);
    let after = scrape(&server);

    let delta = |name: &str, labels: &[(&str, &str)]| after.value(name, labels) - before.value(name, labels);
    let requests = "ferridm_http_requests_total";
    let managed_404 = [("family", "managed"), ("status", "404")];
    assert_eq!(
        delta(requests, &[("method", "GET"), managed_404[0], managed_404[1]]),
        2.0
    );
    assert_eq!(
        delta(requests, &[("method", "DELETE"), managed_404[0], managed_404[1]]),
        1.0
    );
    assert_eq!(delta("ferridm_http_request_duration_seconds_count", &managed_404), 3.0);
    assert_eq!(
        delta(
            "ferridm_http_request_duration_seconds_bucket",
            &[managed_404[0], managed_404[1], ("le", "+Inf")]
        ),
        3.0
    );
    // The first scrape is counted once it has been answered, so the second one sees it.
    let scrapes = [("family", "metrics"), ("method", "GET"), ("status", "200")];
    assert_eq!(delta(requests, &scrapes), 1.0);
}

#[test]
fn failed_logins_and_lockouts_are_counted() {
    on_each_backend(|builder| {
        let lockout = lockout_conf(&json!({"enabled": true, "maxFailures": 3, "windowMinutes": 5, "lockMinutes": 15}));
        let server = with_scraper(builder, Some(lockout)).start();
        let (locked, fine) = (unique("locked"), unique("fine"));
        server.create_user(&locked, Some("Passw0rd!"));
        server.create_user(&fine, Some("Passw0rd!"));

        let before = scrape(&server);
        for _ in 0..3 {
            assert_eq!(
                server
                    .user(&locked, "Wrong-pa55")
                    .get("/openidm/info/login")
                    .send()
                    .status,
                401
            );
        }
        // The right password no longer helps: the account is locked.
        assert_eq!(
            server
                .user(&locked, "Passw0rd!")
                .get("/openidm/info/login")
                .send()
                .status,
            401
        );
        assert_eq!(
            server.user(&fine, "Passw0rd!").get("/openidm/info/login").send().status,
            200
        );
        let after = scrape(&server);

        let delta = |name: &str, labels: &[(&str, &str)]| after.value(name, labels) - before.value(name, labels);
        let authentications = "ferridm_authentications_total";
        assert_eq!(delta(authentications, &[("result", "failure")]), 4.0);
        assert_eq!(
            delta(authentications, &[("result", "success"), ("module", "MANAGED_USER")]),
            1.0
        );
        // The second scrape's own authentication.
        assert_eq!(
            delta(authentications, &[("result", "success"), ("module", "STATIC_USER")]),
            1.0
        );
        assert_eq!(delta("ferridm_account_lockouts_total", &[]), 1.0);
        assert_eq!(delta("ferridm_login_refused_locked_total", &[]), 1.0);
    });
}

#[test]
fn cached_credentials_are_renewed_by_one_request_before_they_expire() {
    let server = TestServer::builder().manual_clock().start();
    // Read as the administrator, whose credentials are the cached ones (the metrics principal
    // would add a decoy check of its own per scrape).
    let hashings = || {
        let reply = server.admin().get(METRICS).send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        parse(&reply.text).value("ferridm_password_hashings_total", &[])
    };
    let admin_get = || {
        let reply = server.admin().get("/openidm/info/login").send();
        assert_eq!(reply.status, 200, "{}", reply.text);
    };
    let seconds = |n| std::time::Duration::from_secs(n);
    admin_get();
    let first = hashings();
    admin_get();
    admin_get();
    assert_eq!(hashings(), first, "checked once, then cached");
    // In the last quarter of the cache's 60 s, one request checks the password again...
    server.advance_clock(seconds(46));
    admin_get();
    assert_eq!(hashings(), first + 1.0);
    admin_get();
    admin_get();
    assert_eq!(hashings(), first + 1.0, "one renewal, not one per request");
    // ...so that past the first check's expiry the credentials are still cached.
    server.advance_clock(seconds(20));
    admin_get();
    assert_eq!(hashings(), first + 1.0);
    // Unused past the renewed entry's end, they are checked again.
    server.advance_clock(seconds(60));
    admin_get();
    assert_eq!(hashings(), first + 2.0);
}

#[test]
fn policy_failures_are_counted_by_requirement() {
    let server = with_scraper(TestServer::builder(), None).start();
    let before = scrape(&server);
    let body =
        json!({"userName": unique("weak"), "givenName": "W", "sn": "Eak", "mail": "weak@example.com", "password": "a"});
    let reply = server
        .admin()
        .post("/openidm/managed/user?_action=create", &body)
        .send();
    assert_eq!(reply.status, 403, "{}", reply.text);
    let after = scrape(&server);

    let mut refused: Vec<&str> = reply.body["detail"]["failedPolicyRequirements"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|failure| failure["policyRequirements"].as_array().unwrap())
        .map(|requirement| requirement["policyRequirement"].as_str().unwrap())
        .collect();
    assert!(refused.contains(&"MIN_LENGTH"), "{}", reply.text);
    refused.sort_unstable();
    for requirement in &refused {
        let count = refused.iter().filter(|other| *other == requirement).count();
        let labels = [("requirement", *requirement)];
        let delta = after.value("ferridm_policy_failures_total", &labels)
            - before.value("ferridm_policy_failures_total", &labels);
        assert_eq!(delta, count as f64, "{requirement}");
    }
    let total = after.value("ferridm_policy_failures_total", &[]) - before.value("ferridm_policy_failures_total", &[]);
    assert_eq!(total, refused.len() as f64);
}

#[test]
fn selfservice_stage_outcomes_are_counted() {
    let server = with_scraper(TestServer::builder(), None)
        .conf_file(
            "selfservice-metricsterms.json",
            &process(&json!([{"name": "termsAndConditions"}])),
        )
        .start();
    let admin = server.admin();
    let before = scrape(&server);
    let asked = submit(&admin, "metricsterms", &json!({"input": {}}));
    assert_eq!(asked.status, 200, "{}", asked.text);
    let token = asked.body["token"].as_str().unwrap().to_owned();
    let refused = submit(
        &admin,
        "metricsterms",
        &json!({"token": token, "input": {"accept": "false"}}),
    );
    assert_eq!(refused.status, 400, "{}", refused.text);
    let accepted = submit(
        &admin,
        "metricsterms",
        &json!({"token": token, "input": {"accept": "true"}}),
    );
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    let after = scrape(&server);

    for outcome in ["requirements", "failed", "completed"] {
        let labels = [
            ("process", "metricsterms"),
            ("stage", "termsAndConditions"),
            ("outcome", outcome),
        ];
        let name = "ferridm_selfservice_stage_outcomes_total";
        assert_eq!(
            after.value(name, &labels) - before.value(name, &labels),
            1.0,
            "{outcome}"
        );
    }
}

/// `config/status`'s generation.
fn status_generation(server: &TestServer) -> f64 {
    let reply = server.admin().get("/openidm/config/status").send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["generation"].as_f64().unwrap()
}

#[test]
fn reloads_set_the_generation_and_count_refusals() {
    let server = with_scraper(TestServer::builder(), None).start();
    let admin = server.admin();
    let before = scrape(&server);
    assert_eq!(
        before.value("ferridm_config_generation", &[]),
        status_generation(&server)
    );

    let put = admin
        .put("/openidm/config/ui/themeconfig", &json!({"theme": "metrics"}))
        .send();
    assert_eq!(put.status, 200, "{}", put.text);
    let refused = admin
        .put("/openidm/config/managed", &json!({"objects": "not a list"}))
        .send();
    assert!(refused.status >= 400, "{}", refused.text);
    // The file watcher may reload the written file once more: wait until the page and
    // config/status agree, then check that every installed reload moved the generation.
    let mut after = scrape(&server);
    server.wait_until(std::time::Duration::from_secs(10), "the generation on the page", || {
        after = scrape(&server);
        after.value("ferridm_config_generation", &[]) == status_generation(&server)
    });
    let delta = |name: &str, labels: &[(&str, &str)]| after.value(name, labels) - before.value(name, labels);
    let generations = delta("ferridm_config_generation", &[]);
    assert!(generations >= 1.0, "generation moved by {generations}");
    assert_eq!(
        delta("ferridm_config_reloads_total", &[("result", "installed")]),
        generations
    );
    assert_eq!(delta("ferridm_config_reloads_total", &[("result", "refused")]), 1.0);
}

#[test]
fn script_calls_and_limit_hits_are_counted() {
    let on_read = json!({"type": "text/rhai", "source":
        "fn deeper(n) { deeper(n + 1) }\nif object.description == \"deep\" { deeper(0); }"});
    let server = with_scraper(TestServer::builder(), None)
        .edit(move |project| {
            let path = project.join("conf/managed.json");
            let managed = ferridm_tests::managed_with_user(&path, |user| user["onRead"] = on_read);
            std::fs::write(&path, managed.to_string()).unwrap();
        })
        .start();
    let admin = server.admin();
    let create = |description: &str| {
        let body = json!({"userName": unique("scripted"), "givenName": "S", "sn": "Cript",
            "mail": "s@example.com", "password": "Passw0rd!", "description": description});
        let reply = admin.post("/openidm/managed/user?_action=create", &body).send();
        let expected = if description == "deep" { 500 } else { 201 };
        assert_eq!(reply.status, expected, "{}", reply.text);
        reply.body["_id"].as_str().map(str::to_owned).unwrap_or_default()
    };
    let plain = create("plain");
    assert!(!plain.is_empty());
    let before = scrape(&server);
    let read = admin.get(&format!("/openidm/managed/user/{plain}")).send();
    assert_eq!(read.status, 200, "{}", read.text);
    let after_plain = scrape(&server);
    let delta = |after: &Page, before: &Page, name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let runs = "ferridm_script_executions_total";
    assert_eq!(delta(&after_plain, &before, runs, &[("outcome", "completed")]), 1.0);
    assert_eq!(delta(&after_plain, &before, runs, &[]), 1.0);
    assert_eq!(
        delta(&after_plain, &before, "ferridm_script_duration_seconds_count", &[]),
        1.0
    );

    // Creating an object whose onRead recurses without end (the created object is read back
    // for the reply) is stopped at the call-depth limit.
    let before = scrape(&server);
    assert_eq!(create("deep"), "");
    let after = scrape(&server);
    assert_eq!(delta(&after, &before, runs, &[("outcome", "limit")]), 1.0);
    assert_eq!(
        delta(
            &after,
            &before,
            "ferridm_script_limit_hits_total",
            &[("limit", "call_depth")]
        ),
        1.0
    );
    assert_eq!(delta(&after, &before, "ferridm_script_limit_hits_total", &[]), 1.0);
}

#[test]
fn database_work_and_the_audit_queue_are_reported() {
    on_each_backend(|builder| {
        let server = with_scraper(builder, None).start();
        let id = server.create_user(&unique("stored"), Some("Passw0rd!"))["_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let before = scrape(&server);
        let read = server.admin().get(&format!("/openidm/managed/user/{id}")).send();
        assert_eq!(read.status, 200, "{}", read.text);
        let after = scrape(&server);

        let reads = [("kind", "read")];
        let operations = "ferridm_db_operation_duration_seconds_count";
        assert!(after.value(operations, &reads) > before.value(operations, &reads));
        let waits = "ferridm_db_pool_wait_seconds_count";
        assert!(after.value(waits, &[]) > before.value(waits, &[]));
        assert_eq!(after.value("ferridm_db_pool_max_connections", &[]), 16.0);
        let open = after.value("ferridm_db_pool_connections", &[]);
        assert!((1.0..=16.0).contains(&open), "{open} connections");

        let state = server.state();
        assert_eq!(
            after.value("ferridm_audit_events_dropped_total", &[]),
            state.audit.dropped() as f64
        );
        assert!(after.type_of("ferridm_audit_queue_depth") == Some("gauge"));
    });
}
