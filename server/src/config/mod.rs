//! Configuration files: each conf file read (placeholders resolved) and parsed into its typed
//! form, with every problem reported as a [`ConfigError`] naming the file. The generation module
//! assembles them into one checked generation.

pub mod access;
pub mod authentication;
pub mod email;
mod files;
pub mod managed;
pub mod policy;
pub mod profile;
pub mod scripts;
pub mod settings;
pub mod ui;

use std::fmt;
use std::path::{Path, PathBuf};

pub use files::{ConfigFile, config_id, file_name, is_config_id, read_dir, resolve_placeholders};
pub use managed::{ManagedType, ManagedTypes};
pub use settings::Settings;

/// A problem with one conf file (or script), with its position when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file concerned.
    pub file: String,
    /// Line and column (1-based), when known.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// A problem with a whole file.
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.display().to_string(),
            position: None,
            message: message.into(),
        }
    }

    /// A problem at a position in a file.
    pub fn at(file: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        Self {
            file: file.display().to_string(),
            position: Some((line, column)),
            message: message.into(),
        }
    }
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
    /// messages do not reveal where the server's files live).
    pub fn script(&self, relative: &str) -> ferridm_plugins::ScriptSource {
        ferridm_plugins::ScriptSource::File {
            path: self.resolve(relative),
            name: relative.trim_start_matches("./").to_owned(),
        }
    }
}
