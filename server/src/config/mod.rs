//! Configuration files: each conf file read (placeholders resolved) and parsed into its typed
//! form, with every problem reported as a [`ConfigError`] naming the file. The generation module
//! assembles them into one checked generation.

pub mod access;
pub mod audit;
pub mod authentication;
pub mod email;
mod files;
pub mod gaps;
pub mod identity_providers;
pub mod managed;
pub mod policy;
pub mod profile;
pub mod scripts;
pub mod settings;
pub mod ui;

use std::fmt;
use std::path::{Path, PathBuf};

pub use files::{ConfigFile, config_id, file_name, is_config_id, read_dir, resolve_placeholders};
pub use managed::{ManagedType, ManagedTypes, RelationshipProperty};
pub use settings::Settings;

/// A problem with one conf file (or script), with its position when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file concerned, named relative to the project directory (see [`file_name_in_project`]).
    pub file: String,
    /// Line and column (1-based), when known.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// A problem with a whole file (a conf file, or a script named as a conf file names it).
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file_name_in_project(file),
            position: None,
            message: message.into(),
        }
    }

    /// A problem at a position in a file.
    pub fn at(file: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        Self {
            file: file_name_in_project(file),
            position: Some((line, column)),
            message: message.into(),
        }
    }
}

/// How configuration problems, logs and inline script names name a file: relative to the
/// project directory, the way conf files name scripts (`conf/managed.json`,
/// `scripts/policies/noDigits.rhai`), so that every report uses one form and none reveals where
/// the server's files live.
///
/// A relative path is a script path as a conf file wrote it and is kept (without a leading
/// `./`). An absolute path is a conf file: conf files are read from the conf directory itself,
/// which is the project directory's child ([`ConfigPaths`]), so relative to the project the
/// file is the conf directory's name and its own.
pub fn file_name_in_project(file: &Path) -> String {
    if file.is_relative() {
        let name = file.display().to_string();
        return name.strip_prefix("./").map(str::to_owned).unwrap_or(name);
    }
    let mut names: Vec<String> = file
        .components()
        .rev()
        .filter_map(|component| match component {
            std::path::Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
            _ => None,
        })
        .take(2)
        .collect();
    names.reverse();
    names.join("/")
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Where configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPaths {
    /// The conf directory.
    pub conf_dir: PathBuf,
    /// The project directory (the conf directory's parent): relative paths in conf files
    /// (scripts, the data directory) resolve against it.
    pub project_dir: PathBuf,
}

impl ConfigPaths {
    /// Paths for a conf directory.
    pub fn new(conf_dir: impl Into<PathBuf>) -> Self {
        let conf_dir: PathBuf = conf_dir.into();
        let absolute = std::path::absolute(&conf_dir).unwrap_or_else(|_| conf_dir.clone());
        let project_dir = absolute.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Self {
            conf_dir: absolute,
            project_dir,
        }
    }

    /// A path from a conf file, resolved against the project directory.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.project_dir.join(relative)
    }

    /// A script file from a conf file: read from the project directory, named as written (so
    /// messages do not reveal where the server's files live; see [`file_name_in_project`]).
    pub fn script(&self, relative: &str) -> ferridm_plugins::ScriptSource {
        ferridm_plugins::ScriptSource::File {
            path: self.resolve(relative),
            name: relative.trim_start_matches("./").to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_relative_to_the_project_directory() {
        let paths = ConfigPaths::new(std::env::temp_dir().join("project").join("conf"));
        let managed = paths.conf_dir.join("managed.json");
        assert!(managed.is_absolute());
        assert_eq!(file_name_in_project(&managed), "conf/managed.json");
        let elsewhere = ConfigPaths::new(std::env::temp_dir().join("etc-idm"));
        assert_eq!(
            file_name_in_project(&elsewhere.conf_dir.join("access.json")),
            "etc-idm/access.json"
        );
        assert_eq!(
            file_name_in_project(Path::new("scripts/policies/noDigits.rhai")),
            "scripts/policies/noDigits.rhai"
        );
        assert_eq!(file_name_in_project(Path::new("./scripts/a.rhai")), "scripts/a.rhai");
        assert_eq!(file_name_in_project(Path::new("conf")), "conf");
    }

    #[test]
    fn config_errors_carry_the_relative_name() {
        let paths = ConfigPaths::new(std::env::temp_dir().join("project").join("conf"));
        let error = ConfigError::at(&paths.conf_dir.join("managed.json"), 3, 25, "invalid JSON");
        assert_eq!(error.file, "conf/managed.json");
        assert_eq!(error.to_string(), "conf/managed.json:3:25: invalid JSON");
        let error = ConfigError::new(&paths.conf_dir.join("policy.json"), "bad");
        assert_eq!(error.to_string(), "conf/policy.json: bad");
    }
}
