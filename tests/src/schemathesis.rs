//! Runs [schemathesis](https://schemathesis.io) (pinned with everything it pulls in, in
//! `tests/support/schemathesis-requirements.txt`, installed into `<target dir>/schemathesis-venv`
//! on first use) against a running server with an OpenAPI document, as one child process with
//! a hard time limit.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::python::Venv;

/// schemathesis's virtualenv.
const VENV: Venv = Venv {
    name: "schemathesis-venv",
    requirements: "tests/support/schemathesis-requirements.txt",
    module: "schemathesis",
};

/// How often a run is checked for having ended.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A finished run.
#[derive(Debug)]
pub struct Run {
    /// How schemathesis exited (0: every check passed).
    pub status: ExitStatus,
    /// What it printed (standard output, then standard error).
    pub output: String,
    /// How long it took.
    pub elapsed: Duration,
}

/// The `schemathesis` executable, installing it first if needed.
fn executable() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(|| VENV.bin()) {
        Ok(bin) => bin.join("schemathesis"),
        Err(error) => panic!("cannot prepare schemathesis's virtualenv: {error}"),
    }
}

/// Runs `schemathesis --config-file <config> run <document> --url <url> <arguments>` (`config`:
/// the text of a `schemathesis.toml`), killing it and failing the test if it outlives `limit`.
pub fn run(document: &Value, config: &str, url: &str, arguments: &[&str], limit: Duration) -> Run {
    let executable = executable();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a directory for schemathesis: {e}"));
    let schema = dir.path().join("openapi.json");
    std::fs::write(&schema, document.to_string()).unwrap_or_else(|e| panic!("cannot write {}: {e}", schema.display()));
    let config_file = dir.path().join("schemathesis.toml");
    std::fs::write(&config_file, config).unwrap_or_else(|e| panic!("cannot write {}: {e}", config_file.display()));
    let stdout = dir.path().join("stdout.log");
    let stderr = dir.path().join("stderr.log");
    let create =
        |path: &PathBuf| File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    let started = Instant::now();
    let mut child = Command::new(&executable)
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(&config_file)
        .arg("run")
        .arg(&schema)
        .args(["--url", url, "--no-color"])
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(create(&stdout))
        .stderr(create(&stderr))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", executable.display()));
    let output = || {
        let read = |path: &PathBuf| String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
        format!("{}{}", read(&stdout), read(&stderr))
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Run {
                    status,
                    output: output(),
                    elapsed: started.elapsed(),
                };
            }
            Ok(None) if started.elapsed() < limit => std::thread::sleep(POLL_INTERVAL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "schemathesis ran longer than {limit:?} and was stopped; its output:\n{}",
                    output()
                );
            }
            Err(error) => panic!("cannot wait for schemathesis: {error}"),
        }
    }
}
