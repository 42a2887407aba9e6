//! The script limits at every place ferridm runs a script (issue 20, point 5): object triggers
//! (`onCreate`, `onValidate`, `onUpdate`, `onDelete`, `onRead`, `postCreate`, `postUpdate`,
//! `postDelete`), self-service stage scripts, scripted progressive-profile conditions, the
//! completeness script, patch `transform` scripts and `customAuthz` access conditions. (Policy
//! validators are covered the same way in `sandbox.rs`.)
//!
//! Each entry point gets a script that runs away in one of four ways, chosen by the request:
//! an endless loop (the operation budget stops it), a loop whose every step is slow (only the
//! wall clock stops it within the budget), endless recursion (the call depth) and a string that
//! doubles forever (the string size). Every request must be answered with a clear IDM error in
//! bounded time, change nothing, and leave the server answering at once; where the entry point
//! reports its script calls, the Prometheus counter of the limit that stopped it moves.

use std::path::Path;
use std::time::{Duration, Instant};

use ferridm_tests::{Reply, ServerBuilder, TestServer, on_each_backend, unique};
use serde_json::{Value, json};

use crate::crud::{assert_alive, count, user_with};

/// The wall-clock budget of one script call in these tests.
const BUDGET_MILLIS: u64 = 400;

/// A runaway request is answered within this time: the budget plus the time it takes to notice
/// (the clock is checked every 256 operations) and to answer. Without the wall clock the slow
/// loop runs for many seconds before the operation budget ends it.
const BOUNDED: Duration = Duration::from_millis(2_500);

/// A ping after a runaway request is answered within this time.
const PROMPT: Duration = Duration::from_secs(1);

/// The ways a script runs away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runaway {
    /// `loop { i += 1; }`.
    Spin,
    /// A loop copying a 768 KiB string per step: slow steps, few operations.
    Slow,
    /// Endless recursion.
    Deep,
    /// A string doubling until it is too large.
    Huge,
}

impl Runaway {
    const ALL: [Self; 4] = [Self::Spin, Self::Slow, Self::Deep, Self::Huge];

    /// The value that selects it in the request.
    fn mode(self) -> &'static str {
        match self {
            Self::Spin => "spin",
            Self::Slow => "slow",
            Self::Deep => "deep",
            Self::Huge => "huge",
        }
    }

    /// The `limit` label of `ferridm_script_limit_hits_total` it must hit.
    fn limit(self) -> &'static str {
        match self {
            Self::Spin => "operations",
            Self::Slow => "time",
            Self::Deep => "call_depth",
            Self::Huge => "size",
        }
    }
}

/// Rhai statements that run away as `mode` (a Rhai expression) says, and do nothing for any
/// other value. Defines `deeper`, so it must sit at a script's top level.
fn runaway_code(mode: &str) -> String {
    format!(
        r#"fn deeper(n) {{ deeper(n + 1) }}
let mode = {mode};
if mode == "spin" {{ let i = 0; loop {{ i += 1; }} }}
if mode == "slow" {{ let s = "x"; while s.len < 200000 {{ s += s; }} loop {{ let t = s + s + s; }} }}
if mode == "deep" {{ deeper(0); }}
if mode == "huge" {{ let s = "x"; loop {{ s += s; }} }}
"#
    )
}

/// Cheap hashing, quick reloads, and script limits the runaways reach quickly: an operation
/// budget an endless loop spends in a fraction of the wall-clock budget.
fn settings() -> String {
    json!({
        "passwordHashing": {"memoryKib": 256, "iterations": 1, "parallelism": 1},
        "watch": {"mode": "native", "debounceMillis": 50, "pollMillis": 100},
        "scriptLimits": {"maxOperations": 200_000, "maxMillis": BUDGET_MILLIS}
    })
    .to_string()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, value.to_string()).unwrap();
}

/// `conf/managed.json` with the user type changed by `edit`.
fn managed_with(project: &Path, edit: impl FnOnce(&mut Value)) -> Value {
    ferridm_tests::managed_with_user(&project.join("conf/managed.json"), edit)
}

/// How many calls `limit` has stopped, from the Prometheus page.
fn limit_hits(server: &TestServer, limit: &str) -> u64 {
    let page = server.admin().get("/openidm/metrics/prometheus").send();
    assert_eq!(page.status, 200, "{}", page.text);
    let series = format!("ferridm_script_limit_hits_total{{limit=\"{limit}\"}} ");
    page.text
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.trim().parse().unwrap())
}

/// Whether the entry point's script calls show up in the script metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    Yes,
    No,
}

/// Runs `drive` once for each of `runaways` and checks what every runaway request must hold:
/// answered within [`BOUNDED`] (`check` judges status and body), the limit's counter moved when
/// the entry point is `counted`, and a ping answered within [`PROMPT`] right after.
fn each_runaway(
    server: &TestServer,
    runaways: &[Runaway],
    counted: Counted,
    mut drive: impl FnMut(Runaway) -> Reply,
    mut check: impl FnMut(Runaway, &Reply),
) {
    for &runaway in runaways {
        let before = limit_hits(server, runaway.limit());
        let started = Instant::now();
        let reply = drive(runaway);
        let took = started.elapsed();
        assert!(took < BOUNDED, "{runaway:?} answered after {took:?}: {}", reply.text);
        check(runaway, &reply);
        if counted == Counted::Yes {
            assert!(
                limit_hits(server, runaway.limit()) > before,
                "{runaway:?} stopped by the {} limit",
                runaway.limit()
            );
        }
        let started = Instant::now();
        assert_alive(server);
        assert!(
            started.elapsed() < PROMPT,
            "ping after {runaway:?}: {:?}",
            started.elapsed()
        );
    }
}

/// IDM's 500 for a failed script: `Script failed: <the script's name>`.
fn assert_script_failed(runaway: Runaway, reply: &Reply) {
    assert_eq!(reply.status, 500, "{runaway:?}: {}", reply.text);
    assert_eq!(reply.body["code"], 500, "{runaway:?}: {}", reply.text);
    assert_eq!(reply.body["reason"], "Internal Server Error", "{runaway:?}");
    let message = reply.body["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("Script failed: "), "{runaway:?}: {message}");
}

// ---------------------------------------------------------------------------------------------
// Object triggers
// ---------------------------------------------------------------------------------------------

/// A server whose user type runs the runaway script (on `object.description`) as `hook`.
fn with_trigger(builder: ServerBuilder, hook: &'static str) -> TestServer {
    builder
        .conf_file("ferridm.json", &settings())
        .edit(move |project| {
            let managed = managed_with(project, |user| {
                user[hook] = json!({"type": "text/rhai", "source": runaway_code("object.description")});
            });
            write_json(&project.join("conf/managed.json"), &managed);
        })
        .start()
}

fn create_with_description(server: &TestServer, name: &str, description: &str) -> Reply {
    server
        .admin()
        .post(
            "/openidm/managed/user?_action=create",
            &user_with(name, &json!({"description": description})),
        )
        .send()
}

/// Creates a user whose description the triggers ignore; returns its id and revision.
fn calm_user(server: &TestServer, name: &str, description: &str) -> (String, String) {
    let reply = create_with_description(server, name, description);
    assert_eq!(reply.status, 201, "{}", reply.text);
    (
        reply.body["_id"].as_str().unwrap().to_owned(),
        reply.body["_rev"].as_str().unwrap().to_owned(),
    )
}

fn users_named(server: &TestServer, name: &str) -> u64 {
    count(server, &format!("userName+eq+%22{name}%22"))
}

fn read_user(server: &TestServer, id: &str) -> Reply {
    server.admin().get(&format!("/openidm/managed/user/{id}")).send()
}

/// A trigger that runs before a create (`onCreate`, `onValidate`): the create fails and
/// nothing is stored.
fn a_create_trigger_fails_its_create(hook: &'static str) {
    on_each_backend(|builder| {
        let server = with_trigger(builder, hook);
        let names: Vec<String> = Runaway::ALL.iter().map(|runaway| unique(runaway.mode())).collect();
        each_runaway(
            &server,
            &Runaway::ALL,
            Counted::Yes,
            |runaway| create_with_description(&server, &names[index(runaway)], runaway.mode()),
            |runaway, reply| {
                assert_script_failed(runaway, reply);
                assert_eq!(
                    users_named(&server, &names[index(runaway)]),
                    0,
                    "{hook} {runaway:?}: nothing stored"
                );
            },
        );
        assert_eq!(count(&server, "true"), 0, "{hook}: nothing stored");
    });
}

fn index(runaway: Runaway) -> usize {
    Runaway::ALL.iter().position(|known| *known == runaway).unwrap()
}

#[test]
fn an_on_create_trigger_that_runs_away_fails_the_create() {
    a_create_trigger_fails_its_create("onCreate");
}

#[test]
fn an_on_validate_trigger_that_runs_away_fails_the_create() {
    a_create_trigger_fails_its_create("onValidate");
}

#[test]
fn an_on_update_trigger_that_runs_away_fails_the_update_and_changes_nothing() {
    on_each_backend(|builder| {
        let server = with_trigger(builder, "onUpdate");
        let name = unique("upd");
        let (id, rev) = calm_user(&server, &name, "calm");
        each_runaway(
            &server,
            &Runaway::ALL,
            Counted::Yes,
            |runaway| {
                server
                    .admin()
                    .put(
                        &format!("/openidm/managed/user/{id}"),
                        &user_with(&name, &json!({"description": runaway.mode()})),
                    )
                    .send()
            },
            |runaway, reply| {
                assert_script_failed(runaway, reply);
                let stored = read_user(&server, &id);
                assert_eq!(stored.body["_rev"], rev.as_str(), "{runaway:?}: {}", stored.text);
                assert_eq!(stored.body["description"], "calm", "{runaway:?}");
            },
        );
    });
}

#[test]
fn an_on_delete_trigger_that_runs_away_fails_the_delete_and_keeps_the_object() {
    on_each_backend(|builder| {
        let server = with_trigger(builder, "onDelete");
        for runaway in Runaway::ALL {
            let (id, rev) = calm_user(&server, &unique(runaway.mode()), runaway.mode());
            each_runaway(
                &server,
                &[runaway],
                Counted::Yes,
                |_| server.admin().delete(&format!("/openidm/managed/user/{id}")).send(),
                |runaway, reply| {
                    assert_script_failed(runaway, reply);
                    let stored = read_user(&server, &id);
                    assert_eq!(stored.status, 200, "{runaway:?}: {}", stored.text);
                    assert_eq!(stored.body["_rev"], rev.as_str(), "{runaway:?}");
                },
            );
        }
    });
}

#[test]
fn an_on_read_trigger_that_runs_away_fails_the_read() {
    on_each_backend(|builder| {
        let server = builder.conf_file("ferridm.json", &settings()).start();
        let users: Vec<(String, String)> = Runaway::ALL
            .iter()
            .map(|runaway| calm_user(&server, &unique(runaway.mode()), runaway.mode()))
            .collect();
        // Installed once the users exist, so that only reads run it.
        let managed = managed_with(server.project(), |user| {
            user["onRead"] = json!({"type": "text/rhai", "source": runaway_code("object.description")});
        });
        let put = server.admin().put("/openidm/config/managed", &managed).send();
        assert_eq!(put.status, 200, "{}", put.text);
        each_runaway(
            &server,
            &Runaway::ALL,
            Counted::Yes,
            |runaway| read_user(&server, &users[index(runaway)].0),
            assert_script_failed,
        );
        // Internal reads (no onRead) see every user unchanged.
        let state = server.state();
        for (id, rev) in &users {
            let stored = state.store.get("user", id).unwrap().expect("the user is still stored");
            assert_eq!(stored.rev.to_string(), *rev);
        }
    });
}

/// A `post*` trigger runs after the write, which stands (IDM's contract): its runaway is stopped
/// by the limits, logged, and the request still answers in bounded time.
#[test]
fn post_triggers_that_run_away_are_stopped_and_the_write_stands() {
    for hook in ["postCreate", "postUpdate", "postDelete"] {
        on_each_backend(|builder| {
            let server = with_trigger(builder, hook);
            for runaway in Runaway::ALL {
                let name = unique(runaway.mode());
                let (id, _) = if hook == "postCreate" {
                    (String::new(), String::new())
                } else {
                    calm_user(
                        &server,
                        &name,
                        if hook == "postDelete" { runaway.mode() } else { "calm" },
                    )
                };
                each_runaway(
                    &server,
                    &[runaway],
                    Counted::Yes,
                    |runaway| match hook {
                        "postCreate" => create_with_description(&server, &name, runaway.mode()),
                        "postUpdate" => server
                            .admin()
                            .put(
                                &format!("/openidm/managed/user/{id}"),
                                &user_with(&name, &json!({"description": runaway.mode()})),
                            )
                            .send(),
                        _ => server.admin().delete(&format!("/openidm/managed/user/{id}")).send(),
                    },
                    |runaway, reply| {
                        let expected = if hook == "postCreate" { 201 } else { 200 };
                        assert_eq!(reply.status, expected, "{hook} {runaway:?}: {}", reply.text);
                        let stored = users_named(&server, &name);
                        assert_eq!(stored, u64::from(hook != "postDelete"), "{hook} {runaway:?}");
                    },
                );
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Self-service: stage scripts and scripted conditions
// ---------------------------------------------------------------------------------------------

/// A stage that runs away as `input.mode` says, and otherwise creates `input.user`.
fn limits_stage() -> String {
    format!(
        r#"fn requirements(context, config) {{
    #{{ description: "Limits probe", type: "object", required: ["mode"],
        properties: #{{ mode: #{{ type: "string" }}, user: #{{ type: "object" }} }} }}
}}

fn advance(context, config, input) {{
    run_away(input.mode);
    openidm::create("managed/user", input.user);
    #{{ complete: true, state: #{{}}, additions: #{{}} }}
}}

fn run_away(chosen) {{
{}
}}
"#,
        runaway_code("chosen").replace("fn deeper(n) { deeper(n + 1) }\n", "")
    ) + "\nfn deeper(n) { deeper(n + 1) }\n"
}

#[test]
fn a_stage_script_that_runs_away_fails_the_step_and_creates_nothing() {
    on_each_backend(|builder| {
        let server = builder
            .conf_file("ferridm.json", &settings())
            .conf_file(
                "selfservice-limits.json",
                &json!({"stageConfigs": [{"name": "limitsProbe",
                                          "script": {"type": "text/rhai", "file": "scripts/stages/limitsProbe.rhai"}}],
                        "snapshotToken": {"type": "jwt", "tokenExpiry": 300}, "storage": "stateless"})
                .to_string(),
            )
            .edit(|project| std::fs::write(project.join("scripts/stages/limitsProbe.rhai"), limits_stage()).unwrap())
            .start();
        let started = server.admin().get("/openidm/selfservice/limits").send();
        assert_eq!(started.status, 200, "{}", started.text);
        assert_eq!(started.body["requirements"]["description"], "Limits probe");
        let names: Vec<String> = Runaway::ALL.iter().map(|runaway| unique(runaway.mode())).collect();
        let submit = |mode: &str, name: &str| {
            server
                .admin()
                .post(
                    "/openidm/selfservice/limits?_action=submitRequirements",
                    &json!({"input": {"mode": mode, "user": user_with(name, &json!({}))}}),
                )
                .send()
        };
        each_runaway(
            &server,
            &Runaway::ALL,
            Counted::Yes,
            |runaway| submit(runaway.mode(), &names[index(runaway)]),
            |runaway, reply| {
                assert_script_failed(runaway, reply);
                assert!(
                    reply.body["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("limitsProbe.rhai"),
                    "{}",
                    reply.text
                );
            },
        );
        assert_eq!(count(&server, "true"), 0, "no runaway step created its user");
        // The same stage, not running away, completes and creates.
        let calm = unique("calm");
        let done = submit("calm", &calm);
        assert_eq!(done.status, 200, "{}", done.text);
        assert_eq!(done.body["status"]["success"], true, "{}", done.text);
        assert_eq!(users_named(&server, &calm), 1);
    });
}

/// A progressive-profile process whose `conditionaluser` condition is the runaway script on
/// the user's description.
fn profile_with_runaway_condition() -> String {
    let form = |display: &str, property: &str| {
        json!({"name": "attributecollection", "identityServiceUrl": "managed/user",
               "uiConfig": {"displayName": display, "purpose": "Testing", "buttonText": "Save"},
               "attributes": [{"name": property, "isRequired": true}]})
    };
    let source = format!("{}\nmode == \"calm\"\n", runaway_code("user.description"));
    json!({"stageConfigs": [{
        "name": "conditionaluser",
        "identityServiceUrl": "managed/user",
        "condition": {"type": "scripted", "script": {"type": "text/rhai", "source": source}},
        "evaluateConditionOnField": "user",
        "onConditionTrue": form("when true", "telephoneNumber"),
        "onConditionFalse": form("when false", "city")
    }]})
    .to_string()
}

#[test]
fn a_scripted_profile_condition_that_runs_away_fails_the_step() {
    on_each_backend(|builder| {
        let server = builder
            .conf_file("ferridm.json", &settings())
            .conf_file("selfservice-profile.json", &profile_with_runaway_condition())
            .start();
        let password = "Passw0rdLimits";
        let person = |description: &str| {
            let name = unique(description);
            let mut body = user_with(&name, &json!({"description": description}));
            body["password"] = json!(password);
            let created = server
                .admin()
                .post("/openidm/managed/user?_action=create", &body)
                .send();
            assert_eq!(created.status, 201, "{}", created.text);
            (
                name,
                created.body["_rev"].as_str().unwrap().to_owned(),
                created.body["_id"].as_str().unwrap().to_owned(),
            )
        };
        let calm = person("calm");
        let asked = server
            .user(&calm.0, password)
            .get("/openidm/selfservice/profile")
            .send();
        assert_eq!(asked.status, 200, "{}", asked.text);
        assert_eq!(
            asked.body["requirements"]["uiConfig"]["displayName"], "when true",
            "{}",
            asked.text
        );
        let people: Vec<(String, String, String)> = Runaway::ALL.iter().map(|runaway| person(runaway.mode())).collect();
        each_runaway(
            &server,
            &Runaway::ALL,
            Counted::Yes,
            |runaway| {
                let (name, _, _) = &people[index(runaway)];
                server.user(name, password).get("/openidm/selfservice/profile").send()
            },
            |runaway, reply| {
                assert_script_failed(runaway, reply);
                let (_, rev, id) = &people[index(runaway)];
                let stored = read_user(&server, id);
                assert_eq!(stored.body["description"], runaway.mode(), "{runaway:?}");
                assert_eq!(stored.body["_rev"], rev.as_str(), "{runaway:?}: nothing written");
            },
        );
    });
}

#[test]
fn a_completeness_script_that_runs_away_fails_the_figure_not_the_write() {
    on_each_backend(|builder| {
        let mut profile: Value = serde_json::from_str(
            &std::fs::read_to_string(ferridm_tests::workspace_root().join("conf/selfservice-profile.json")).unwrap(),
        )
        .unwrap();
        profile["completeness"] =
            json!({"script": {"type": "text/rhai", "source": format!("{}\n50\n", runaway_code("user.description"))}});
        let server = builder
            .conf_file("ferridm.json", &settings())
            .conf_file("selfservice-profile.json", &profile.to_string())
            .start();
        let mut ids = Vec::new();
        // A write scores the user: a runaway score is logged and left out, and the write stands.
        each_runaway(
            &server,
            &Runaway::ALL,
            Counted::No,
            |runaway| create_with_description(&server, &unique(runaway.mode()), runaway.mode()),
            |runaway, reply| {
                assert_eq!(reply.status, 201, "{runaway:?}: {}", reply.text);
                ids.push(reply.body["_id"].as_str().unwrap().to_owned());
            },
        );
        // Asking for the figure is the script's failure.
        each_runaway(
            &server,
            &Runaway::ALL,
            Counted::No,
            |runaway| {
                server
                    .admin()
                    .get(&format!(
                        "/openidm/selfservice/profile/completeness/managed/user/{}",
                        ids[index(runaway)]
                    ))
                    .send()
            },
            assert_script_failed,
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Patch transforms and access conditions
// ---------------------------------------------------------------------------------------------

#[test]
fn a_patch_transform_that_runs_away_is_400_and_changes_nothing() {
    on_each_backend(|builder| {
        let server = builder.conf_file("ferridm.json", &settings()).start();
        let (id, rev) = calm_user(&server, &unique("tr"), "calm");
        each_runaway(
            &server,
            &Runaway::ALL,
            Counted::No,
            |runaway| {
                let source = runaway_code(&format!("\"{}\"", runaway.mode()));
                server
                    .admin()
                    .patch(
                        &format!("/openidm/managed/user/{id}"),
                        &json!([{"operation": "transform", "field": "/description",
                                 "value": {"script": {"type": "text/rhai", "source": source}}}]),
                    )
                    .send()
            },
            |runaway, reply| {
                let message = reply.assert_error(400);
                assert!(message.starts_with("Failed to eval script"), "{runaway:?}: {message}");
                let stored = read_user(&server, &id);
                assert_eq!(stored.body["_rev"], rev.as_str(), "{runaway:?}");
                assert_eq!(stored.body["description"], "calm", "{runaway:?}");
            },
        );
    });
}

/// `customAuthz` may call only its named checks, so it cannot recurse; it can still loop.
#[test]
fn an_access_condition_that_runs_away_denies_the_request() {
    on_each_backend(|builder| {
        let runaways = [Runaway::Spin, Runaway::Slow, Runaway::Huge];
        let server = builder
            .conf_file("ferridm.json", &settings())
            .edit(move |project| {
                let path = project.join("conf/access.json");
                let mut access = read_json(&path);
                let rules = access["configs"].as_array_mut().unwrap();
                for runaway in runaways {
                    let condition = runaway_code(&format!("\"{}\"", runaway.mode()))
                        .replace("fn deeper(n) { deeper(n + 1) }\n", "")
                        .replace("if mode == \"deep\" { deeper(0); }\n", "")
                        + "true";
                    rules.insert(
                        0,
                        json!({"pattern": format!("managed/user/{}", runaway.mode()), "roles": "*",
                               "methods": "read", "actions": "*", "customAuthz": condition}),
                    );
                }
                write_json(&path, &access);
            })
            .start();
        each_runaway(
            &server,
            &runaways,
            Counted::No,
            |runaway| {
                server
                    .anonymous()
                    .get(&format!("/openidm/managed/user/{}", runaway.mode()))
                    .send()
            },
            |runaway, reply| {
                assert_eq!(reply.assert_error(403), "Access denied", "{runaway:?}");
            },
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Loading: policy registration and imported modules
// ---------------------------------------------------------------------------------------------

/// A policy script's top level and the modules it imports run when the configuration loads: a
/// runaway there refuses the change with a clear error, and the running configuration serves on.
#[test]
fn a_runaway_while_loading_refuses_the_change() {
    on_each_backend(|builder| {
        let server = builder
            .conf_file("ferridm.json", &settings())
            .edit(|project| {
                std::fs::create_dir_all(project.join("scripts/lib")).unwrap();
                for runaway in Runaway::ALL {
                    let mode = runaway.mode();
                    std::fs::write(
                        project.join(format!("scripts/policies/{mode}.rhai")),
                        runaway_code(&format!("\"{mode}\"")),
                    )
                    .unwrap();
                    std::fs::write(
                        project.join(format!("scripts/lib/{mode}.rhai")),
                        runaway_code(&format!("\"{mode}\"")),
                    )
                    .unwrap();
                    std::fs::write(
                        project.join(format!("scripts/policies/import-{mode}.rhai")),
                        format!("import \"lib/{mode}\" as runaway;\n"),
                    )
                    .unwrap();
                }
            })
            .start();
        let policy = read_json(&server.conf().join("policy.json"));
        for file in ["", "import-"] {
            for runaway in Runaway::ALL {
                let mut changed = policy.clone();
                let script = format!("scripts/policies/{file}{}.rhai", runaway.mode());
                changed["additionalFiles"].as_array_mut().unwrap().push(json!(script));
                let started = Instant::now();
                let reply = server.admin().put("/openidm/config/policy", &changed).send();
                let took = started.elapsed();
                assert!(took < BOUNDED, "{script}: answered after {took:?}");
                let message = reply.assert_error(400);
                assert!(
                    message.contains(&format!("{}.rhai", runaway.mode())),
                    "{script}: {message}"
                );
                let started = Instant::now();
                assert_alive(&server);
                assert!(started.elapsed() < PROMPT);
            }
        }
        assert_eq!(
            read_json(&server.conf().join("policy.json")),
            policy,
            "nothing was written"
        );
        let created = server.create_user(&unique("after"), None);
        assert_eq!(
            created["userName"].as_str().map(|name| name.starts_with("after")),
            Some(true)
        );
    });
}
