//! The test harness: [`TestServer`] starts a real ferridm on a free port with its own copy of
//! `conf/` and `scripts/` and its own database, and hands out actors (`admin()`, `anonymous()`,
//! `user(..)`, `nobody()`) whose requests go over HTTP. [`on_each_backend`] runs a test body on
//! SQLite and, when reachable, PostgreSQL.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use ferridm::clock::ManualClock;
use ferridm::{RunningServer, ServerOptions};
use ferridm_store::Backend;
use ferridm_store::testing::TestDatabase;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::HeaderMap;
use serde_json::Value;

mod helper_process;
pub mod oidc;
pub mod python;
pub mod schemathesis;
pub mod smtp;

/// The workspace root (where the shipped `conf/` and `scripts/` live).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// The `ferridm` binary beside the running test binary (`target/<profile>/ferridm`), built once
/// per run (a no-op under `cargo test --workspace`, which builds it) so it matches the sources.
pub fn ferridm_binary() -> &'static Path {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        let test_binary = std::env::current_exe().unwrap_or_else(|e| panic!("no test binary path: {e}"));
        let profile_dir = test_binary
            .parent()
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("unexpected test binary path {}", test_binary.display()))
            .to_path_buf();
        let target_dir = profile_dir.parent().unwrap_or(&profile_dir).to_path_buf();
        let mut build = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
        build
            .args(["build", "-p", "ferridm", "--bin", "ferridm"])
            .current_dir(workspace_root())
            .env("CARGO_TARGET_DIR", target_dir);
        if profile_dir.file_name().is_some_and(|name| name == "release") {
            build.arg("--release");
        }
        let built = build.status().is_ok_and(|status| status.success());
        assert!(built, "cargo build -p ferridm failed");
        profile_dir.join("ferridm")
    })
}

/// Copies the directory tree `from` into `to` (created as needed; a missing `from` copies nothing).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap_or_else(|e| panic!("cannot copy {}: {e}", path.display()));
        }
    }
}

/// `text` percent-encoded for a query parameter (everything but unreserved characters).
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The `managed.json` at `path` with its `user` type changed by `edit`.
pub fn managed_with_user(path: &Path, edit: impl FnOnce(&mut Value)) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut managed: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let user = managed["objects"]
        .as_array_mut()
        .and_then(|objects| objects.iter_mut().find(|object| object["name"] == "user"))
        .unwrap_or_else(|| panic!("{} declares no user type", path.display()));
    edit(user);
    managed
}

/// A unique name for test objects (`prefix-<8 hex>`).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Settings that keep tests fast: cheap password hashing (still argon2id) and quick reloads.
const TEST_SETTINGS: &str = r#"{
    "passwordHashing": {"memoryKib": 256, "iterations": 1, "parallelism": 1},
    "watch": {"mode": "native", "debounceMillis": 50, "pollMillis": 100}
}"#;

/// A change to a test server's project directory before it starts.
type ProjectEdit = Box<dyn FnOnce(&Path)>;

/// Builds a [`TestServer`].
pub struct ServerBuilder {
    database: Option<TestDatabase>,
    edits: Vec<ProjectEdit>,
    settings: Option<String>,
    project: Option<(PathBuf, tempfile::TempDir)>,
    shared_url: Option<String>,
    ui_dir: Option<PathBuf>,
    clock: Option<Arc<ManualClock>>,
}

impl ServerBuilder {
    fn new(database: TestDatabase) -> Self {
        Self {
            database: Some(database),
            edits: Vec::new(),
            settings: Some(TEST_SETTINGS.to_owned()),
            project: None,
            shared_url: None,
            ui_dir: None,
            clock: None,
        }
    }

    /// Runs the server on a clock that stands still until [`TestServer::advance_clock`] moves
    /// it, so windows and expiries are tested without waiting.
    pub fn manual_clock(mut self) -> Self {
        self.clock = Some(Arc::new(ManualClock::starting_now()));
        self
    }

    /// Changes the copied project directory (its `conf/` and `scripts/`) before start.
    pub fn edit(mut self, edit: impl FnOnce(&Path) + 'static) -> Self {
        self.edits.push(Box::new(edit));
        self
    }

    /// Writes `conf/<name>` with `contents` before start.
    pub fn conf_file(self, name: &str, contents: &str) -> Self {
        let name = name.to_owned();
        let contents = contents.to_owned();
        self.edit(move |project| {
            std::fs::write(project.join("conf").join(&name), contents).unwrap_or_else(|e| panic!("{e}"));
        })
    }

    /// Keeps the shipped `ferridm.json` (no test overrides).
    pub fn shipped_settings(mut self) -> Self {
        self.settings = None;
        self
    }

    /// Serves a browser UI from `dir` at `/` (`ferridm --ui DIR`).
    pub fn ui(mut self, dir: &Path) -> Self {
        self.ui_dir = Some(dir.to_path_buf());
        self
    }

    /// Starts a second server on the same database and project directory as `other`.
    pub fn sharing(mut self, other: &TestServer) -> Self {
        self.project = Some((
            other.project.clone(),
            tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        ));
        self.database = None;
        self.shared_url = Some(other.db_url.clone());
        self
    }

    /// Starts a second server on the same database as `other`, with a project directory of its
    /// own (a separate node with its own conf files).
    pub fn sharing_database(self, other: &TestServer) -> Self {
        self.on_database(&other.db_url)
    }

    /// Starts the server on the database at `url` (kept by the caller), with a project
    /// directory of its own.
    pub fn on_database(mut self, url: &str) -> Self {
        self.database = None;
        self.shared_url = Some(url.to_owned());
        self
    }

    /// Starts the server.
    pub fn start(self) -> TestServer {
        let (project, dir) = match self.project {
            Some((project, dir)) => (project, dir),
            None => {
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
                let project = dir.path().to_path_buf();
                copy_dir(&workspace_root().join("conf"), &project.join("conf"));
                copy_dir(&workspace_root().join("scripts"), &project.join("scripts"));
                if let Some(settings) = &self.settings {
                    std::fs::write(project.join("conf").join("ferridm.json"), settings)
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                for edit in self.edits {
                    edit(&project);
                }
                (project, dir)
            }
        };
        let (db_url, backend) = match (&self.database, &self.shared_url) {
            (Some(database), _) => (database.url().to_owned(), database.backend()),
            (None, Some(url)) => (
                url.clone(),
                if url.starts_with("sqlite") {
                    Backend::Sqlite
                } else {
                    Backend::Postgres
                },
            ),
            (None, None) => panic!("a test server needs a database"),
        };
        let server = ferridm::start(&ServerOptions {
            conf_dir: project.join("conf"),
            listen: "127.0.0.1:0".to_owned(),
            db: db_url.clone(),
            workers: Some(2),
            ui_dir: self.ui_dir,
            clock: self.clock.clone().map(|clock| clock as Arc<dyn ferridm::clock::Clock>),
            node_id: None,
            ..ServerOptions::default()
        })
        .unwrap_or_else(|error| panic!("the test server did not start: {error:#}"));
        let client = Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        TestServer {
            base: server.url(),
            server: Some(server),
            client,
            project,
            backend,
            db_url,
            clock: self.clock,
            _database: self.database,
            _dir: dir,
        }
    }
}

/// A running ferridm for one test.
pub struct TestServer {
    base: String,
    server: Option<RunningServer>,
    client: Client,
    project: PathBuf,
    backend: Backend,
    db_url: String,
    clock: Option<Arc<ManualClock>>,
    _database: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// The running server's shared state (for tests that call the service layer directly).
    pub fn state(&self) -> Arc<ferridm::state::AppState> {
        Arc::clone(
            &self
                .server
                .as_ref()
                .unwrap_or_else(|| panic!("the server was stopped"))
                .state,
        )
    }

    /// Moves the server's clock forward (servers built with [`ServerBuilder::manual_clock`]).
    pub fn advance_clock(&self, by: Duration) {
        self.clock
            .as_ref()
            .unwrap_or_else(|| panic!("advance_clock needs a server built with manual_clock()"))
            .advance(by);
    }

    /// A server with the shipped configuration on SQLite.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// A builder on SQLite.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new(TestDatabase::sqlite())
    }

    /// The base URL (`http://127.0.0.1:<port>`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The backend this server runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The project directory (holding `conf/`, `scripts/`, `data/`).
    pub fn project(&self) -> &Path {
        &self.project
    }

    /// The database URL this server runs on.
    pub fn db_url(&self) -> &str {
        &self.db_url
    }

    /// The conf directory.
    pub fn conf(&self) -> PathBuf {
        self.project.join("conf")
    }

    /// The running server (for its state).
    pub fn running(&self) -> &RunningServer {
        self.server.as_ref().unwrap_or_else(|| panic!("the server was stopped"))
    }

    /// Stops the server (drains and joins).
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }

    fn actor(&self, headers: Vec<(String, String)>) -> Actor<'_> {
        Actor { server: self, headers }
    }

    /// `openidm-admin` with its default password.
    pub fn admin(&self) -> Actor<'_> {
        self.user("openidm-admin", "openidm-admin")
    }

    /// The anonymous static user.
    pub fn anonymous(&self) -> Actor<'_> {
        self.user("anonymous", "anonymous")
    }

    /// Any user name and password, sent in the IDM headers.
    pub fn user(&self, username: &str, password: &str) -> Actor<'_> {
        self.actor(vec![
            ("X-OpenIDM-Username".to_owned(), username.to_owned()),
            ("X-OpenIDM-Password".to_owned(), password.to_owned()),
        ])
    }

    /// No credentials at all.
    pub fn nobody(&self) -> Actor<'_> {
        self.actor(Vec::new())
    }

    /// Creates a managed user as the admin and returns the created body.
    pub fn create_user(&self, user_name: &str, password: Option<&str>) -> Value {
        let mut body = serde_json::json!({
            "userName": user_name,
            "givenName": "Test",
            "sn": "User",
            "mail": format!("{user_name}@example.com"),
        });
        if let (Some(password), Some(map)) = (password, body.as_object_mut()) {
            map.insert("password".into(), Value::String(password.to_owned()));
        }
        let reply = self.admin().post("/openidm/managed/user?_action=create", &body).send();
        assert_eq!(reply.status, 201, "creating {user_name}: {}", reply.body);
        reply.body
    }

    /// Waits until `check` holds (polling), failing after `timeout`.
    pub fn wait_until(&self, timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `test` once per available backend (SQLite always, PostgreSQL when reachable), each with
/// a fresh database.
pub fn on_each_backend(test: impl Fn(ServerBuilder)) {
    for database in TestDatabase::all() {
        test(ServerBuilder::new(database));
    }
}

/// Runs `test` once on a fresh PostgreSQL database; does nothing when no PostgreSQL is
/// reachable (unless `FERRIDM_TEST_REQUIRE_POSTGRES=1`, which makes that a failure).
pub fn on_postgres(test: impl FnOnce(ServerBuilder)) {
    if let Some(database) = TestDatabase::postgres() {
        test(ServerBuilder::new(database));
    }
}

/// Someone sending requests with fixed headers.
pub struct Actor<'a> {
    server: &'a TestServer,
    headers: Vec<(String, String)>,
}

impl Actor<'_> {
    /// Adds a header to every request of this actor.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> Call {
        let mut builder = self
            .server
            .client
            .request(method, format!("{}{path}", self.server.base));
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        Call { builder }
    }

    /// GET.
    pub fn get(&self, path: &str) -> Call {
        self.request(reqwest::Method::GET, path)
    }

    /// DELETE.
    pub fn delete(&self, path: &str) -> Call {
        self.request(reqwest::Method::DELETE, path)
    }

    /// POST with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Call {
        self.request(reqwest::Method::POST, path).json(body)
    }

    /// POST without a body.
    pub fn post_empty(&self, path: &str) -> Call {
        self.request(reqwest::Method::POST, path)
    }

    /// PUT with a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> Call {
        self.request(reqwest::Method::PUT, path).json(body)
    }

    /// PATCH with a JSON body.
    pub fn patch(&self, path: &str, body: &Value) -> Call {
        self.request(reqwest::Method::PATCH, path).json(body)
    }

    /// Any method, no body.
    pub fn method(&self, method: &str, path: &str) -> Call {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        self.request(method, path)
    }
}

/// A request being built.
pub struct Call {
    builder: RequestBuilder,
}

impl Call {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    /// Sets a JSON body (and `Content-Type: application/json`).
    pub fn json(mut self, body: &Value) -> Self {
        self.builder = self.builder.json(body);
        self
    }

    /// Sets a raw body.
    pub fn body(mut self, body: impl Into<reqwest::blocking::Body>) -> Self {
        self.builder = self.builder.body(body);
        self
    }

    /// Sends it and reads the whole response.
    pub fn send(self) -> Reply {
        let response = self.builder.send().unwrap_or_else(|e| panic!("request failed: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().unwrap_or_default();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        Reply {
            status,
            headers,
            body,
            text,
        }
    }
}

/// A response.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as JSON (`Null` when empty, a string when not JSON).
    pub body: Value,
    /// Body as text.
    pub text: String,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The `session-jwt` cookie value set by this response, if any.
    pub fn session_cookie(&self) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(|cookie| cookie.strip_prefix("session-jwt="))
            .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
    }

    /// The body with `_rev` values removed everywhere (for comparisons "revisions aside").
    pub fn without_revisions(&self) -> Value {
        fn strip(value: &Value) -> Value {
            match value {
                Value::Object(map) => Value::Object(
                    map.iter()
                        .filter(|(key, _)| key.as_str() != "_rev")
                        .map(|(key, value)| (key.clone(), strip(value)))
                        .collect(),
                ),
                Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
                other => other.clone(),
            }
        }
        strip(&self.body)
    }

    /// Asserts the IDM error shape with `code` and returns the message.
    pub fn assert_error(&self, code: u16) -> String {
        assert_eq!(self.status, code, "unexpected status; body: {}", self.text);
        assert_eq!(self.body["code"], Value::from(code), "error body: {}", self.text);
        assert!(
            self.body["reason"].is_string(),
            "error body without reason: {}",
            self.text
        );
        self.body["message"].as_str().unwrap_or_default().to_owned()
    }
}
