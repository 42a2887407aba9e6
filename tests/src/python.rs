//! Python tools the tests run (the SMTP sink's `aiosmtpd`, `schemathesis`), each from its own
//! virtualenv under the target directory, built once from a pinned requirements file in
//! `tests/support/` and rebuilt when that file changes.

use std::path::PathBuf;
use std::process::Command;

use crate::helper_process::{lock_in_target, run, target_dir};
use crate::workspace_root;

/// A virtualenv the tests use: its directory name under the target directory, the
/// requirements file (relative to the workspace root) and a module that must import.
#[derive(Debug, Clone, Copy)]
pub struct Venv {
    /// The directory under the target directory (`smtp-venv`).
    pub name: &'static str,
    /// The pinned requirements, relative to the workspace root.
    pub requirements: &'static str,
    /// A module the environment must be able to import.
    pub module: &'static str,
}

impl Venv {
    /// The environment's `bin/` directory, building the environment first unless it already
    /// has these requirements. Concurrent test processes wait for one builder (an exclusive
    /// lock on `<name>.lock`); the copy of the requirements that marks a finished build is
    /// written last, so an interrupted build is redone.
    pub fn bin(&self) -> Result<PathBuf, String> {
        let target = target_dir();
        let venv = target.join(self.name);
        let python = venv.join("bin/python");
        let stamp = venv.join("ferridm-requirements.txt");
        let requirements_path = workspace_root().join(self.requirements);
        let requirements = std::fs::read_to_string(&requirements_path)
            .map_err(|e| format!("cannot read {}: {e}", requirements_path.display()))?;
        let _lock = lock_in_target(self.name)?;
        let current = std::fs::read_to_string(&stamp).is_ok_and(|stamp| stamp == requirements)
            && run(Command::new(&python).args(["-c", &format!("import {}", self.module)])).is_ok();
        if !current {
            run(Command::new("python3").args(["-m", "venv", "--clear"]).arg(&venv))?;
            run(Command::new(&python)
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"])
                .arg(&requirements_path))?;
            std::fs::write(&stamp, &requirements).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
        }
        Ok(venv.join("bin"))
    }
}
