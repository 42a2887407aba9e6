//! The `ferridm` binary as a process (ferridm.md §1, §3; scripts/README.md "Reloading and
//! checking"): `ferridm check` accepts the shipped configuration and lists every problem of a
//! broken one as `file:line:column: message` with a non-zero exit; a conf directory that cannot
//! load stops `ferridm` with a non-zero exit naming the file; a running server drains and exits 0
//! on SIGTERM.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_ferridm");

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()));
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

/// A temporary project directory with copies of the shipped `conf/` and `scripts/`.
fn shipped_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    copy_dir(&workspace_root().join("conf"), &dir.path().join("conf"));
    copy_dir(&workspace_root().join("scripts"), &dir.path().join("scripts"));
    dir
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Starts `ferridm <args>` in `project` with no `FERRIDM_*` settings from the environment and
/// its output captured.
fn spawn(args: &[&str], project: &Path) -> Child {
    Command::new(BINARY)
        .args(args)
        .current_dir(project)
        .env_remove("FERRIDM_CONF")
        .env_remove("FERRIDM_LISTEN")
        .env_remove("FERRIDM_DB")
        .env_remove("FERRIDM_SESSION_KEY")
        .env_remove("FERRIDM_TOKEN_KEY")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BINARY}: {e}"))
}

/// Runs `ferridm <args>` to completion (failing after a minute).
fn run(args: &[&str], project: &Path) -> Output {
    wait_output(spawn(args, project), Duration::from_secs(60))
}

/// Waits for a child with a deadline (killing it if it does not finish) and collects its output.
fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
                panic!(
                    "ferridm did not finish within {limit:?}; stderr:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Err(error) => panic!("waiting for ferridm: {error}"),
        }
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A free local port (bound, then released).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
}

/// Sends one raw HTTP/1.1 request and returns (status, body).
fn http(port: u16, request: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request.as_bytes())?;
    read_response(&mut stream)
}

fn read_response(stream: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn ping(port: u16) -> std::io::Result<(u16, String)> {
    http(
        port,
        "GET /openidm/info/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
    assert!(status.success(), "kill -TERM failed: {status}");
}

/// Waits for a child to exit (killing it after `limit`).
fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ferridm did not exit within {limit:?} after SIGTERM");
            }
            Err(error) => panic!("waiting for ferridm: {error}"),
        }
    }
}

/// A `ferridm` serving the shipped configuration on a free port, ready (ping answers
/// ACTIVE_READY). Kills the process when dropped, if it is still running.
struct Serving {
    child: Child,
    port: u16,
    _project: tempfile::TempDir,
}

impl Serving {
    fn start() -> Self {
        let project = shipped_project();
        let port = free_port();
        let db = format!("sqlite://{}", project.path().join("data/x.db").display());
        let conf = project.path().join("conf");
        let child = Command::new(BINARY)
            .arg("--conf")
            .arg(&conf)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--db")
            .arg(&db)
            .arg("--workers")
            .arg("2")
            .current_dir(project.path())
            .env_remove("FERRIDM_CONF")
            .env_remove("FERRIDM_LISTEN")
            .env_remove("FERRIDM_DB")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BINARY}: {e}"));
        let mut serving = Self {
            child,
            port,
            _project: project,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, body)) = ping(port)
                && body.contains("\"ACTIVE_READY\"")
            {
                break;
            }
            if let Ok(Some(status)) = serving.child.try_wait() {
                panic!("ferridm exited before it was ready: {status}");
            }
            assert!(Instant::now() < deadline, "ferridm was not ready within a minute");
            std::thread::sleep(Duration::from_millis(50));
        }
        serving
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ferridm check
// ---------------------------------------------------------------------------------------------

#[test]
fn check_accepts_the_shipped_configuration() {
    let project = shipped_project();
    let output = run(&["check", "--conf", "conf"], project.path());
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(
        text(&output.stdout).contains("configuration OK"),
        "{}",
        text(&output.stdout)
    );
    // The default conf directory is ./conf.
    let default = run(&["check"], project.path());
    assert_eq!(default.status.code(), Some(0), "{}", text(&default.stdout));
}

/// The `file:line:column: message` lines of `stdout` about a file named `name`.
fn problems_about<'a>(stdout: &'a str, name: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter(|line| line.contains(&format!("{name}:")))
        .collect()
}

/// Asserts `line` is `<path ending in name>:<line>:<column>: <message>` and returns
/// (line, column).
fn position(line: &str, name: &str) -> (usize, usize) {
    let at = line
        .find(&format!("{name}:"))
        .unwrap_or_else(|| panic!("{name} is not named in {line:?}"));
    let rest = &line[at + name.len() + 1..];
    let mut parts = rest.splitn(3, ':');
    let row = parts.next().and_then(|p| p.parse().ok());
    let column = parts.next().and_then(|p| p.parse().ok());
    let message = parts.next().unwrap_or_default();
    match (row, column) {
        (Some(row), Some(column)) if message.starts_with(' ') && message.trim().len() > 1 => (row, column),
        _ => panic!("not file:line:column: message: {line:?}"),
    }
}

#[test]
fn check_prints_every_problem_with_file_and_position() {
    let project = shipped_project();
    let conf = project.path().join("conf");
    // A JSON syntax error on line 3 of an optional file …
    write(
        &conf.join("ui-configuration.json"),
        "{\n    \"configuration\": {\n        \"selfRegistration\": true,,\n    }\n}\n",
    );
    // … and a script that does not compile, line 4.
    let strings = project.path().join("scripts/policies/strings.rhai");
    let original = std::fs::read_to_string(&strings).unwrap_or_else(|e| panic!("{e}"));
    write(
        &strings,
        &format!("// broken\n// on\n// purpose\nlet broken = ;\n{original}"),
    );
    let output = run(&["check", "--conf", conf.to_str().unwrap_or_default()], project.path());
    let stdout = text(&output.stdout);
    assert_ne!(output.status.code(), Some(0), "stdout:\n{stdout}");
    assert!(output.status.code().is_some(), "exited normally: {:?}", output.status);

    let json_problems = problems_about(&stdout, "ui-configuration.json");
    assert!(!json_problems.is_empty(), "the JSON problem is listed:\n{stdout}");
    let (row, _) = position(json_problems[0], "ui-configuration.json");
    assert_eq!(row, 3, "{}", json_problems[0]);

    let script_problems = problems_about(&stdout, "strings.rhai");
    assert!(!script_problems.is_empty(), "the script problem is listed:\n{stdout}");
    let (row, _) = position(script_problems[0], "strings.rhai");
    assert_eq!(row, 4, "{}", script_problems[0]);
}

#[test]
fn check_reports_a_broken_managed_json() {
    let project = shipped_project();
    let conf = project.path().join("conf");
    let managed = std::fs::read_to_string(conf.join("managed.json")).unwrap_or_else(|e| panic!("{e}"));
    // Cut the file in the middle of line 5.
    let cut: String = managed
        .lines()
        .take(4)
        .map(|line| format!("{line}\n"))
        .collect::<String>()
        + "        \"name\": ";
    write(&conf.join("managed.json"), &cut);
    let output = run(&["check", "--conf", "conf"], project.path());
    let stdout = text(&output.stdout);
    assert_ne!(output.status.code(), Some(0), "stdout:\n{stdout}");
    let problems = problems_about(&stdout, "managed.json");
    assert_eq!(problems.len(), 1, "one problem, not also 'missing':\n{stdout}");
    let (row, _) = position(problems[0], "managed.json");
    assert_eq!(row, 5, "{}", problems[0]);
}

#[test]
fn check_reports_an_unknown_policy_id() {
    let project = shipped_project();
    let conf = project.path().join("conf");
    let managed = std::fs::read_to_string(conf.join("managed.json")).unwrap_or_else(|e| panic!("{e}"));
    write(
        &conf.join("managed.json"),
        &managed.replacen("\"valid-email-address-format\"", "\"no-such-policy\"", 1),
    );
    let output = run(&["check", "--conf", "conf"], project.path());
    let stdout = text(&output.stdout);
    assert_ne!(output.status.code(), Some(0), "stdout:\n{stdout}");
    assert!(
        stdout
            .lines()
            .any(|line| line.contains("managed.json") && line.contains("no-such-policy")),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------------

#[test]
fn a_conf_directory_that_cannot_load_stops_ferridm_naming_the_file() {
    let project = shipped_project();
    let conf = project.path().join("conf");
    write(&conf.join("policy.json"), "{ \"additionalFiles\": [ }");
    let db = format!("sqlite://{}", project.path().join("x.db").display());
    let output = run(
        &[
            "--conf",
            conf.to_str().unwrap_or_default(),
            "--listen",
            "127.0.0.1:0",
            "--db",
            &db,
        ],
        project.path(),
    );
    let stderr = text(&output.stderr);
    assert!(
        output.status.code().is_some_and(|code| code != 0),
        "{:?}\n{stderr}",
        output.status
    );
    assert!(stderr.contains("policy.json"), "the file is named:\n{stderr}");
}

#[test]
fn a_missing_script_stops_ferridm_naming_it() {
    let project = shipped_project();
    std::fs::remove_file(project.path().join("scripts/policies/lockout.rhai")).unwrap_or_else(|e| panic!("{e}"));
    let db = format!("sqlite://{}", project.path().join("x.db").display());
    let output = run(
        &["--conf", "conf", "--listen", "127.0.0.1:0", "--db", &db],
        project.path(),
    );
    let stderr = text(&output.stderr);
    assert!(
        output.status.code().is_some_and(|code| code != 0),
        "{:?}\n{stderr}",
        output.status
    );
    assert!(stderr.contains("lockout.rhai"), "the script is named:\n{stderr}");
}

#[test]
fn sigterm_makes_a_running_ferridm_exit_0() {
    let mut serving = Serving::start();
    let (status, body) = ping(serving.port).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200);
    assert!(body.contains("\"state\":\"ACTIVE_READY\""), "{body}");
    sigterm(&serving.child);
    let status = wait_exit(&mut serving.child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(ping(serving.port).is_err(), "nothing listens any more");
}

#[test]
fn sigterm_drains_a_request_in_flight() {
    let mut serving = Serving::start();
    let body = r#"{"userName":"drained","givenName":"Dee","sn":"Rain","mail":"dee@example.com"}"#;
    let head = format!(
        "POST /openidm/policy/managed/user/*?_action=validateObject HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         X-OpenIDM-Username: openidm-admin\r\nX-OpenIDM-Password: openidm-admin\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", serving.port)).unwrap_or_else(|e| panic!("{e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("{e}"));
    // Send the head and half the body, then ask the server to stop.
    let (first, second) = body.split_at(body.len() / 2);
    stream
        .write_all(format!("{head}{first}").as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&serving.child);
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(second.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let (status, reply) = read_response(&mut stream).unwrap_or_else(|e| panic!("the request was cut off: {e}"));
    assert_eq!(status, 200, "{reply}");
    assert!(
        reply.contains("\"result\":true"),
        "the in-flight request completed: {reply}"
    );
    let exit = wait_exit(&mut serving.child, Duration::from_secs(30));
    assert_eq!(exit.code(), Some(0), "{exit}");
}

/// The resident memory of a process, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("{e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

/// Issue 22, point 6: each argon2id check takes about 19 MiB; a burst of wrong passwords from
/// 64 clients at once must not leave the server holding gigabytes (the allocator gives the
/// memory back, and hashing runs a bounded number of checks at once).
#[test]
fn memory_taken_by_a_burst_of_password_checks_is_given_back() {
    let serving = Serving::start();
    let before = resident_kib(serving.child.id());
    let port = serving.port;
    let clients: Vec<_> = (0..64)
        .map(|client| {
            std::thread::spawn(move || {
                let request = format!(
                    "GET /openidm/info/login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-OpenIDM-Username: openidm-admin\r\n\
                     X-OpenIDM-Password: wrong-{client}\r\nConnection: close\r\n\r\n"
                );
                http(port, &request).map(|(status, _)| status)
            })
        })
        .collect();
    for client in clients {
        let status = client.join().unwrap_or_else(|_| panic!("client panicked"));
        // 401, or 503 for a check that found no turn within the hashing queue's timeout.
        assert!(matches!(status, Ok(401 | 503)), "{status:?}");
    }
    let after = resident_kib(serving.child.id());
    assert!(
        after < before + 256 * 1024,
        "resident memory grew from {before} KiB to {after} KiB"
    );
}

/// Issue 22, point 15: the log names files relative to the project directory, never where
/// the server's files live (here: the generated keys on a first start).
#[test]
fn the_startup_log_names_files_relative_to_the_project() {
    let project = shipped_project();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = spawn(
        &["--conf", "conf", "--listen", &listen, "--workers", "1"],
        project.path(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(ping(port), Ok((200, _))) {
        assert!(Instant::now() < deadline, "ferridm was not ready within a minute");
        std::thread::sleep(Duration::from_millis(50));
    }
    sigterm(&child);
    let output = wait_output(child, Duration::from_secs(30));
    let log = format!("{}{}", text(&output.stdout), text(&output.stderr));
    // Written to a pipe, not a terminal: plain text, without colour sequences.
    assert!(!log.contains('\u{1b}'), "colour sequences in the log:\n{log}");
    assert!(log.contains("path=data/secrets.json"), "{log}");
    let root = project.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !log.contains(&*root.to_string_lossy()),
        "an absolute path in the log:\n{log}"
    );
    assert!(
        !log.contains(&*project.path().to_string_lossy()),
        "an absolute path in the log:\n{log}"
    );
}
