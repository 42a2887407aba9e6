//! `ferridm-bench`: measures ferridm over loopback HTTP against a bare actix-web handler in the
//! same run, so figures read as ratios that do not depend on the machine.
//!
//! For each user count it seeds the users straight through the store (no passwords), starts
//! ferridm in this process, and drives each scenario with a fixed number of concurrent
//! keep-alive connections for a fixed time, authenticating every request with the IDM headers
//! as curl clients do. It reports requests per second, p50 and p99 latency, and the ratio to
//! the bare handler's throughput.
//!
//! ```text
//! cargo run --release -p ferridm-tests --bin ferridm-bench -- --users 100000
//! cargo run --release -p ferridm-tests --bin ferridm-bench -- --users 10000 --users 1000000 --scenarios query-eq
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use ferridm::ServerOptions;
use ferridm::config::ConfigPaths;
use ferridm::generation::load;
use ferridm_store::{EdgeTarget, NewObject, RelationshipSet, Store, StoreOptions};
use rand::Rng as _;
use serde_json::{Value, json};

/// Benchmark ferridm against a bare actix handler.
#[derive(Debug, Parser)]
#[command(about)]
struct Options {
    /// Users to seed (repeat for several sizes, e.g. --users 10000 --users 1000000).
    #[arg(long = "users", default_values_t = [100_000u64])]
    users: Vec<u64>,
    /// Seconds each scenario runs (after a one-second warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Server worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Database: `sqlite` (a temporary file) or a PostgreSQL URL whose database is emptied.
    #[arg(long, default_value = "sqlite")]
    db: String,
    /// Scenarios to run (default: all). One of: bare, get, query-eq, query-sw, query-compound,
    /// sorted-walk, create, patch, get-nocache, create-nopolicy, register, get-roles, query-roles.
    #[arg(long = "scenarios", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

const ALL: [&str; 14] = [
    "bare",
    "get",
    "query-eq",
    "query-sw",
    "query-compound",
    "sorted-walk",
    "create",
    "patch",
    "get-nocache",
    "create-nopolicy",
    "register",
    "get-roles",
    "query-roles",
    "conditional-role",
];

/// The condition of the role the `conditional-role` scenario creates: every user whose
/// name starts with `user1` (user1, user10…, user100…: about one in nine).
const CONDITION: &str = "/userName sw \"user1\"";

/// Roles seeded (`role0`…), each granted to every one of the first [`USERS_WITH_ROLES`] users.
const ROLES: u64 = 10;
/// Users seeded with every role (`user0`…).
const USERS_WITH_ROLES: u64 = 1_000;

const GIVEN: [&str; 16] = [
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Niaj", "Olivia",
    "Peggy", "Rupert", "Sybil",
];

fn surname(i: u64) -> String {
    const STEMS: [&str; 20] = [
        "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson", "Wright",
        "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson", "Clarke",
    ];
    format!("{}{}", STEMS[(i % 20) as usize], i % 997)
}

fn user(i: u64) -> Value {
    json!({
        "userName": format!("user{i}"),
        "givenName": GIVEN[(i % 16) as usize],
        "sn": surname(i),
        "mail": format!("user{i}@example.com"),
        "telephoneNumber": format!("555-{:04}", i % 10_000),
        "accountStatus": "active",
        "authzRoles": [{"_ref": "internal/role/openidm-authorized"}]
    })
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// A project directory (conf + scripts) with extra `ferridm.json` settings.
fn project(root: &Path, name: &str, settings: &Value) -> anyhow::Result<PathBuf> {
    let dir = root.join(name);
    copy_dir(&ferridm_tests::workspace_root().join("conf"), &dir.join("conf"))?;
    copy_dir(&ferridm_tests::workspace_root().join("scripts"), &dir.join("scripts"))?;
    let mut all = json!({"watch": {"mode": "off"}});
    if let (Some(all), Some(extra)) = (all.as_object_mut(), settings.as_object()) {
        all.extend(extra.clone());
    }
    std::fs::write(dir.join("conf/ferridm.json"), all.to_string())?;
    Ok(dir)
}

fn seed(db: &str, conf: &Path, users: u64) -> anyhow::Result<()> {
    let generation = load(&ConfigPaths::new(conf), 1).map_err(|errors| anyhow::anyhow!("{errors:?}"))?;
    let index = generation.managed.get("user").context("no user type")?.index.clone();
    let store = Store::open(db, &StoreOptions::default())?;
    let started = Instant::now();
    let batch = 2_000;
    let mut next = 0;
    while next < users {
        let end = (next + batch).min(users);
        // Users as a create stores them: with their completeness score.
        let contents = (next..end)
            .map(|i| {
                let content = user(i);
                let mut meta = ferridm_core::Object::new();
                meta.insert(
                    "profileCompleteness".to_owned(),
                    Value::from(generation.completeness.score(&content)?),
                );
                let Value::Object(content) = content else {
                    bail!("a seeded user is not a JSON object");
                };
                Ok((format!("user{i}"), content, meta))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let objects: Vec<NewObject<'_>> = contents
            .iter()
            .map(|(id, content, meta)| NewObject {
                object_type: "user",
                id,
                content,
                meta,
                index: &index,
            })
            .collect();
        store.insert_many(&objects)?;
        next = end;
        if next % 100_000 == 0 || next == users {
            eprintln!(
                "  seeded {next}/{users} users ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    ferridm::service::completeness::record_rule(&store, &generation)?;
    seed_roles(&store, &generation, users)
}

/// Seeds [`ROLES`] roles and grants each to the first [`USERS_WITH_ROLES`] users, as edges.
fn seed_roles(store: &Store, generation: &ferridm::generation::Generation, users: u64) -> anyhow::Result<()> {
    let index = generation.managed.get("role").context("no role type")?.index.clone();
    let roles: Vec<(String, ferridm_core::Object)> = (0..ROLES)
        .map(|i| {
            let mut content = ferridm_core::Object::new();
            content.insert("name".to_owned(), Value::String(format!("Role {i}")));
            (format!("role{i}"), content)
        })
        .collect();
    let meta = ferridm_core::Object::new();
    let objects: Vec<NewObject<'_>> = roles
        .iter()
        .map(|(id, content)| NewObject {
            object_type: "role",
            id,
            content,
            meta: &meta,
            index: &index,
        })
        .collect();
    store.insert_many(&objects)?;
    let granted = RelationshipSet {
        property: "roles".to_owned(),
        reverse: Some("members".to_owned()),
        reverse_single: false,
        targets: (0..ROLES)
            .map(|i| EdgeTarget {
                collection: "managed/role".to_owned(),
                id: format!("role{i}"),
                properties: ferridm_core::Object::new(),
            })
            .collect(),
    };
    for user in 0..USERS_WITH_ROLES.min(users) {
        store.set_edges("managed/user", &format!("user{user}"), std::slice::from_ref(&granted))?;
    }
    Ok(())
}

/// One scenario's measurements.
#[derive(Debug, Clone)]
struct Outcome {
    scenario: String,
    users: u64,
    requests: u64,
    /// Failed requests by status (0: no response).
    errors: BTreeMap<u16, u64>,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Outcome {
    /// All failed requests.
    fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[derive(Clone)]
struct Target {
    base: String,
    users: u64,
    run: u64,
}

fn admin(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request
        .header("X-OpenIDM-Username", "openidm-admin")
        .header("X-OpenIDM-Password", "openidm-admin")
        .header("X-OpenIDM-NoSession", "true")
}

async fn one_request(
    client: &reqwest::Client,
    scenario: &str,
    target: &Target,
    task: usize,
    n: u64,
    cookie: &mut Option<String>,
) -> anyhow::Result<u16> {
    let base = &target.base;
    let pick = rand::rng().random_range(0..target.users.max(1));
    let response = match scenario {
        "bare" => client.get(format!("{base}/ping")).send().await?,
        "get" | "get-nocache" => admin(client.get(format!("{base}/openidm/managed/user/user{pick}"))).send().await?,
        "get-roles" => admin(client.get(format!(
            "{base}/openidm/managed/user/user{}?_fields=*,roles",
            pick % USERS_WITH_ROLES.min(target.users).max(1)
        )))
        .send()
        .await?,
        "query-roles" => admin(client.get(format!(
            "{base}/openidm/managed/user?_queryFilter=roles/_refResourceId%20eq%20%22role{}%22&_pageSize=50",
            pick % ROLES
        )))
        .send()
        .await?,
        "query-eq" => {
            admin(client.get(format!("{base}/openidm/managed/user?_queryFilter=userName%20eq%20%22user{pick}%22")))
                .send()
                .await?
        }
        "query-sw" => {
            let prefix = surname(pick);
            admin(client.get(format!(
                "{base}/openidm/managed/user?_queryFilter=sn%20sw%20%22{}%22&_pageSize=20",
                &prefix[..prefix.len().min(6)]
            )))
            .send()
            .await?
        }
        "query-compound" => admin(client.get(format!(
            "{base}/openidm/managed/user?_queryFilter=(userName%20eq%20%22user{pick}%22%20and%20accountStatus%20eq%20%22active%22)%20or%20(sn%20eq%20%22{}%22%20and%20givenName%20eq%20%22{}%22)&_pageSize=20",
            surname(pick + 1),
            GIVEN[((pick + 1) % 16) as usize]
        )))
        .send()
        .await?,
        "sorted-walk" => {
            let mut url = format!("{base}/openidm/managed/user?_queryFilter=true&_sortKeys=userName&_pageSize=50&_fields=userName");
            if let Some(next) = cookie.as_deref() {
                url.push_str("&_pagedResultsCookie=");
                url.push_str(next);
            }
            let response = admin(client.get(url)).send().await?;
            let status = response.status().as_u16();
            let body: Value = response.json().await?;
            *cookie = body["pagedResultsCookie"].as_str().map(str::to_owned);
            return Ok(status);
        }
        "create" | "create-nopolicy" => admin(client.post(format!("{base}/openidm/managed/user?_action=create")))
            .json(&json!({
                "userName": format!("{scenario}-{}-{task}-{n}", target.run),
                "givenName": "Bench",
                "sn": "Mark",
                "mail": format!("{scenario}-{}-{task}-{n}@example.com", target.run),
            }))
            .send()
            .await?,
        "patch" => admin(client.patch(format!("{base}/openidm/managed/user/user{pick}")))
            .json(&json!([{"operation": "replace", "field": "/telephoneNumber", "value": format!("555-{n}")}]))
            .send()
            .await?,
        "register" => client
            .post(format!("{base}/openidm/selfservice/registration?_action=submitRequirements"))
            .header("X-OpenIDM-Username", "anonymous")
            .header("X-OpenIDM-Password", "anonymous")
            .header("X-OpenIDM-NoSession", "true")
            .json(&json!({"input": {"user": {
                "userName": format!("reg-{}-{task}-{n}", target.run),
                "givenName": "Regis",
                "sn": "Tration",
                "mail": format!("reg-{}-{task}-{n}@example.com", target.run),
                "password": "Passw0rd!x",
                "preferences": {"marketing": false, "updates": true}
            }}}))
            .send()
            .await?,
        other => bail!("unknown scenario {other}"),
    };
    let status = response.status().as_u16();
    let _ = response.bytes().await?;
    Ok(status)
}

fn percentile(sorted: &[u64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)] as f64 / 1_000_000.0
}

fn drive(scenario: &str, target: &Target, concurrency: usize, seconds: u64) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(60))
        .build()?;
    let (latencies, errors, elapsed) = runtime.block_on(async {
        let warm_up = Instant::now() + Duration::from_secs(1);
        let deadline = warm_up + Duration::from_secs(seconds);
        let mut tasks = Vec::with_capacity(concurrency);
        for task in 0..concurrency {
            let client = client.clone();
            let target = target.clone();
            let scenario = scenario.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = BTreeMap::<u16, u64>::new();
                let mut cookie = None;
                let mut n = 0u64;
                loop {
                    let started = Instant::now();
                    if started >= deadline {
                        break;
                    }
                    n += 1;
                    let status = one_request(&client, &scenario, &target, task, n, &mut cookie)
                        .await
                        .unwrap_or(0);
                    if started >= warm_up {
                        latencies.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
                        if !(200..300).contains(&status) {
                            *errors.entry(status).or_default() += 1;
                        }
                    }
                }
                (latencies, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = BTreeMap::<u16, u64>::new();
        for task in tasks {
            if let Ok((latencies, task_errors)) = task.await {
                all.extend(latencies);
                for (status, count) in task_errors {
                    *errors.entry(status).or_default() += count;
                }
            }
        }
        (all, errors, Duration::from_secs(seconds))
    });
    let mut sorted = latencies;
    sorted.sort_unstable();
    let requests = sorted.len() as u64;
    Ok(Outcome {
        scenario: scenario.to_owned(),
        users: target.users,
        requests,
        errors,
        per_second: requests as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&sorted, 0.50),
        p99_ms: percentile(&sorted, 0.99),
    })
}

/// Creates a role with [`CONDITION`] and times its re-evaluation over every user in the
/// background, while GETs by id run beside it for `seconds`. Returns the re-evaluation
/// (`conditional-role`: users judged per second; p50 and p99 are its whole time) and the GETs
/// (`get-during-reevaluation`).
fn conditional_role(
    server: &ferridm::RunningServer,
    target: &Target,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<Vec<Outcome>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let created: Value = runtime.block_on(async {
        let reply = admin(reqwest::Client::new().post(format!("{}/openidm/managed/role?_action=create", target.base)))
            .json(&json!({"name": format!("conditional{}", target.run), "condition": CONDITION}))
            .send()
            .await?;
        anyhow::Ok(reply.json().await?)
    })?;
    let role = created["_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the role was not created: {created}"))?
        .to_owned();
    let started = Instant::now();
    let beside = {
        let target = target.clone();
        std::thread::spawn(move || drive("get", &target, concurrency, seconds))
    };
    while !ferridm::service::roles::grants_follow(&server.state, &role, CONDITION)? {
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed();
    let members = server
        .state
        .store
        .edges("managed/role", &[role.as_str()], &["members"])?;
    eprintln!(
        "  conditional role over {} users: {} granted in {:.1} s",
        target.users,
        members.len(),
        elapsed.as_secs_f64()
    );
    let mut gets = beside
        .join()
        .map_err(|_| anyhow::anyhow!("the GETs beside the re-evaluation panicked"))??;
    gets.scenario = "get-during-reevaluation".to_owned();
    let whole_ms = elapsed.as_secs_f64() * 1000.0;
    Ok(vec![
        Outcome {
            scenario: "conditional-role".to_owned(),
            users: target.users,
            requests: members.len() as u64,
            errors: BTreeMap::new(),
            per_second: target.users as f64 / elapsed.as_secs_f64(),
            p50_ms: whole_ms,
            p99_ms: whole_ms,
        },
        gets,
    ])
}

/// A bare actix-web server answering a fixed JSON body: the baseline.
fn bare_server(workers: usize) -> anyhow::Result<(String, actix_web::dev::ServerHandle)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(|| {
                actix_web::App::new().route(
                    "/ping",
                    actix_web::web::get().to(|| async {
                        actix_web::HttpResponse::Ok()
                            .content_type("application/json")
                            .body(r#"{"_id":"","shortDesc":"OpenIDM ready","state":"ACTIVE_READY"}"#)
                    }),
                )
            })
            .workers(workers)
            .listen(listener);
            match server {
                Ok(server) => {
                    let server = server.run();
                    let _ = sender.send(server.handle());
                    let _ = server.await;
                }
                Err(error) => eprintln!("bare server failed: {error}"),
            }
        });
    });
    Ok((base, receiver.recv()?))
}

/// The median time of one argon2id hash with the shipped cost.
fn hash_cost(conf: &Path) -> anyhow::Result<f64> {
    let generation = load(&ConfigPaths::new(conf), 1).map_err(|errors| anyhow::anyhow!("{errors:?}"))?;
    let hasher = ferridm::secrets::PasswordHasher::new(generation.settings.password_hashing);
    let mut times: Vec<f64> = (0..9)
        .map(|_| {
            let started = Instant::now();
            let _ = hasher.hash("Passw0rd!x");
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let scenarios: Vec<String> = if options.scenarios.is_empty() {
        ALL.iter().map(|s| (*s).to_owned()).collect()
    } else {
        options.scenarios.clone()
    };
    let workers = options
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get));
    let mut outcomes = Vec::new();
    for (run, users) in options.users.iter().copied().enumerate() {
        let root = tempfile::tempdir()?;
        let default = project(root.path(), "default", &json!({}))?;
        let nocache = project(root.path(), "nocache", &json!({"credentialCache": {"maxEntries": 0}}))?;
        let nopolicy = project(root.path(), "nopolicy", &json!({"policyEnforcement": false}))?;
        let db = if options.db == "sqlite" {
            format!("sqlite://{}", root.path().join("bench.db").display())
        } else {
            options.db.clone()
        };
        eprintln!(
            "seeding {users} users into {}",
            if options.db == "sqlite" { "SQLite" } else { "PostgreSQL" }
        );
        seed(&db, &default.join("conf"), users)?;
        let start = |dir: &Path| {
            ferridm::start(&ServerOptions {
                conf_dir: dir.join("conf"),
                listen: "127.0.0.1:0".to_owned(),
                db: db.clone(),
                workers: Some(workers),
                ui_dir: None,
                clock: None,
                node_id: None,
                ..ServerOptions::default()
            })
        };
        let servers = [
            ("default", start(&default)?),
            ("nocache", start(&nocache)?),
            ("nopolicy", start(&nopolicy)?),
        ];
        let (bare, bare_handle) = bare_server(workers)?;
        for scenario in &scenarios {
            if scenario == "conditional-role" {
                eprintln!("  re-evaluating a new conditional role over {users} users");
                let target = Target {
                    base: servers[0].1.url(),
                    users,
                    run: run as u64,
                };
                outcomes.extend(conditional_role(
                    &servers[0].1,
                    &target,
                    options.concurrency,
                    options.seconds,
                )?);
                continue;
            }
            let base = match scenario.as_str() {
                "bare" => bare.clone(),
                "get-nocache" => servers[1].1.url(),
                "create-nopolicy" => servers[2].1.url(),
                _ => servers[0].1.url(),
            };
            let target = Target {
                base,
                users,
                run: run as u64,
            };
            eprintln!("  running {scenario} for {} s", options.seconds);
            let outcome = drive(scenario, &target, options.concurrency, options.seconds)?;
            outcomes.push(outcome);
        }
        if scenarios.iter().any(|s| s == "register") {
            let cost = hash_cost(&default.join("conf"))?;
            eprintln!("  one argon2id hash (shipped cost): {cost:.1} ms");
            outcomes.push(Outcome {
                scenario: "argon2id-hash".to_owned(),
                users,
                requests: 0,
                errors: BTreeMap::new(),
                per_second: 1000.0 / cost,
                p50_ms: cost,
                p99_ms: cost,
            });
        }
        actix_web::rt::System::new().block_on(bare_handle.stop(true));
        for (_, server) in servers {
            server.stop();
        }
    }
    report(&outcomes, &options, workers)?;
    Ok(())
}

fn report(outcomes: &[Outcome], options: &Options, workers: usize) -> anyhow::Result<()> {
    println!(
        "\nferridm-bench: {} s per scenario, {} connections, {} server workers, {} CPUs",
        options.seconds,
        options.concurrency,
        workers,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!(
        "{:<16} {:>9} {:>10} {:>9} {:>9} {:>8} {:>7}",
        "scenario", "users", "req/s", "p50 ms", "p99 ms", "vs bare", "errors"
    );
    let mut json_rows = Vec::new();
    for outcome in outcomes {
        let bare = outcomes
            .iter()
            .find(|o| o.scenario == "bare" && o.users == outcome.users)
            .map(|o| o.per_second);
        let ratio = bare.map(|bare| outcome.per_second / bare * 100.0);
        println!(
            "{:<16} {:>9} {:>10.0} {:>9.3} {:>9.3} {:>7} {:>7}",
            outcome.scenario,
            outcome.users,
            outcome.per_second,
            outcome.p50_ms,
            outcome.p99_ms,
            ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}%")),
            outcome.failed()
        );
        json_rows.push(json!({
            "scenario": outcome.scenario, "users": outcome.users, "requests": outcome.requests,
            "errors": outcome.failed(),
            "errorsByStatus": outcome.errors.iter().map(|(status, count)| (status.to_string(), json!(count))).collect::<serde_json::Map<_, _>>(),
            "perSecond": outcome.per_second, "p50Ms": outcome.p50_ms,
            "p99Ms": outcome.p99_ms, "percentOfBare": ratio,
        }));
    }
    for outcome in outcomes.iter().filter(|o| !o.errors.is_empty()) {
        let by_status: Vec<String> = outcome
            .errors
            .iter()
            .map(|(status, count)| match status {
                0 => format!("no response ×{count}"),
                status => format!("{status} ×{count}"),
            })
            .collect();
        println!(
            "errors in {} ({} users): {}",
            outcome.scenario,
            outcome.users,
            by_status.join(", ")
        );
    }
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&json_rows)?)?;
    }
    Ok(())
}
