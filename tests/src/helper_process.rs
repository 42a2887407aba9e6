//! What the programs the tests start beside ferridm (the SMTP sink, the OpenID Provider) share:
//! a child process that announces on a stdout line that it is ready and is stopped with the
//! test, and for their one-time installs the target directory, a lock in it and a command
//! runner.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::Duration;

use crate::workspace_root;

/// A started helper program, killed and reaped on drop. Its standard input is held open: the
/// programs exit when it closes, so none outlives the test process even if that one dies.
pub(crate) struct HelperProcess {
    child: Mutex<Child>,
    _stdin: Option<ChildStdin>,
}

impl HelperProcess {
    /// Takes over `child` (spawned with piped stdin and stdout) once a line of its stdout is
    /// accepted by `ready`, within `timeout`; returns what `ready` made of it. Stdout is read to
    /// its end on a thread of its own, so the program never blocks on a full pipe. A program
    /// that is not ready in time is killed; the error says why and how it ended.
    pub(crate) fn await_ready<T: Send + 'static>(
        mut child: Child,
        timeout: Duration,
        ready: impl Fn(&str) -> Option<T> + Send + 'static,
    ) -> Result<(Self, T), String> {
        let (sender, receiver) = mpsc::channel();
        let stdout = child.stdout.take();
        std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            let mut sender = Some(sender);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(value) = ready(&line)
                    && let Some(sender) = sender.take()
                {
                    let _ = sender.send(value);
                }
            }
        });
        match receiver.recv_timeout(timeout) {
            Ok(value) => Ok((
                Self {
                    _stdin: child.stdin.take(),
                    child: Mutex::new(child),
                },
                value,
            )),
            Err(error) => {
                let _ = child.kill();
                let status = child.wait().map_or_else(|e| e.to_string(), |status| status.to_string());
                Err(format!("{error}; {status}"))
            }
        }
    }

    /// How it ended, if it has.
    pub(crate) fn exited(&self) -> Option<ExitStatus> {
        self.child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_wait()
            .ok()
            .flatten()
    }
}

impl Drop for HelperProcess {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `CARGO_TARGET_DIR` (relative to the workspace root), else `<workspace root>/target`.
pub(crate) fn target_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty());
    workspace_root().join(dir.map_or_else(|| PathBuf::from("target"), PathBuf::from))
}

/// An exclusive lock on `<target dir>/<name>.lock`, so that concurrent test processes wait for
/// one installer. Released when dropped, or by the OS if this process dies.
pub(crate) fn lock_in_target(name: &str) -> Result<File, String> {
    let target = target_dir();
    std::fs::create_dir_all(&target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let lock_path = target.join(format!("{name}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    Ok(lock)
}

/// Runs `command` to its end; an error carries its status and output.
pub(crate) fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}
