//! Configuration: the conf directory read into one immutable [`Generation`] (every file parsed,
//! typed and checked). Requests run against the generation they started with; a reload builds a
//! whole new one and swaps it in only if it passes.

pub mod access;
pub mod authentication;
mod files;
pub mod managed;
pub mod settings;
pub mod ui;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ferridm_core::schema::ManagedConfig;
use ferridm_plugins::ScriptLimits;
use serde_json::Value;

use crate::policy::PolicyEngine;
use crate::selfservice::Processes;
use crate::service::profile::{AuthProfile, CompletenessRule};

pub use files::{ConfigFile, config_id, file_name, resolve_placeholders};
pub use managed::{ManagedType, ManagedTypes};
pub use settings::Settings;

use self::access::AccessRules;
use self::authentication::AuthenticationConfig;
use self::ui::UiConfiguration;

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

/// One complete, checked configuration.
#[derive(Debug)]
pub struct Generation {
    /// Sequence number (1 at start, +1 per successful reload).
    pub number: u64,
    /// When it was loaded (ISO-8601).
    pub loaded_at: String,
    /// Every conf file by config id.
    pub files: BTreeMap<String, ConfigFile>,
    /// `ferridm.json`.
    pub settings: Settings,
    /// `managed.json`.
    pub managed: ManagedTypes,
    /// Policies (`policy.json`, schema-derived, and their scripts).
    pub policies: PolicyEngine,
    /// Limits every script of this generation runs under.
    pub script_limits: ScriptLimits,
    /// `authentication.json`.
    pub authentication: AuthenticationConfig,
    /// `access.json`.
    pub access: AccessRules,
    /// `ui-configuration.json`.
    pub ui: UiConfiguration,
    /// Self-service processes (`selfservice-<name>.json`).
    pub processes: Processes,
    /// How profile completeness is computed.
    pub completeness: CompletenessRule,
    /// `auth.profile.json`.
    pub auth_profile: AuthProfile,
}

impl Generation {
    /// The resolved JSON of a config id, if the file exists.
    pub fn file(&self, id: &str) -> Option<&Value> {
        self.files.get(id).map(|file| &file.resolved)
    }

    /// True when a `selfservice/profile` process with at least one stage is configured.
    pub fn progressive_profile_enabled(&self) -> bool {
        self.file("selfservice/profile")
            .and_then(|profile| profile.get("stageConfigs"))
            .and_then(Value::as_array)
            .is_some_and(|stages| !stages.is_empty())
    }
}

fn parsed<T>(
    files: &BTreeMap<String, ConfigFile>,
    id: &str,
    required: Option<&Path>,
    errors: &mut Vec<ConfigError>,
    parse: impl FnOnce(&ConfigFile) -> Result<T, ConfigError>,
) -> Option<T> {
    match files.get(id) {
        Some(file) => parse(file).map_err(|error| errors.push(error)).ok(),
        None => {
            if let Some(path) = required {
                errors.push(ConfigError::new(
                    path,
                    format!("missing: {} is required", path.display()),
                ));
            }
            None
        }
    }
}

fn typed<T: serde::de::DeserializeOwned + Default>(
    files: &BTreeMap<String, ConfigFile>,
    id: &str,
    errors: &mut Vec<ConfigError>,
) -> T {
    let Some(file) = files.get(id) else {
        return T::default();
    };
    match serde_json::from_value(file.resolved.clone()) {
        Ok(value) => value,
        Err(error) => {
            errors.push(ConfigError::new(&file.path, error.to_string()));
            T::default()
        }
    }
}

/// Config files to replace (`Some`) or remove (`None`) in memory before checking a generation,
/// so that a change can be validated before it is written.
pub type Overrides = BTreeMap<String, Option<Value>>;

/// Reads, parses and checks the whole conf directory. Every problem found is reported.
pub fn load(paths: &ConfigPaths, number: u64) -> Result<Generation, Vec<ConfigError>> {
    load_with(paths, number, &Overrides::new())
}

/// Like [`load`], with some files replaced or removed in memory.
pub fn load_with(paths: &ConfigPaths, number: u64, overrides: &Overrides) -> Result<Generation, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut files = files::read_dir(&paths.conf_dir, &mut errors);
    for (id, replacement) in overrides {
        match replacement {
            None => {
                files.remove(id);
            }
            Some(raw) => {
                let path = paths.conf_dir.join(file_name(id));
                match resolve_placeholders(raw) {
                    Ok(resolved) => {
                        files.insert(
                            id.clone(),
                            ConfigFile {
                                id: id.clone(),
                                path,
                                raw: raw.clone(),
                                resolved,
                            },
                        );
                    }
                    Err(message) => errors.push(ConfigError::new(&path, message)),
                }
            }
        }
    }
    let settings: Settings = typed(&files, "ferridm", &mut errors);
    let managed = match files.get("managed") {
        None => {
            errors.push(ConfigError::new(
                &paths.conf_dir.join("managed.json"),
                "missing: managed.json declares the managed object types",
            ));
            None
        }
        Some(file) => match ManagedConfig::from_json(&file.resolved) {
            Ok(config) => ManagedTypes::new(config, paths, &script_limits(paths, &settings), &file.path)
                .map_err(|problems| errors.extend(problems))
                .ok(),
            Err(error) => {
                errors.push(ConfigError::new(&file.path, error.to_string()));
                None
            }
        },
    };
    let script_limits = script_limits(paths, &settings);
    let policies = managed.as_ref().and_then(|managed| {
        let policy_file = files.get("policy").map(|file| (file.path.as_path(), &file.resolved));
        let managed_path = paths.conf_dir.join("managed.json");
        let registration = registration_properties(&files);
        PolicyEngine::load(
            paths,
            policy_file,
            managed,
            &managed_path,
            &script_limits,
            settings.policy_enforcement,
            registration.as_deref(),
        )
        .map_err(|problems| errors.extend(problems))
        .ok()
    });
    let authentication = parsed(&files, "authentication", None, &mut errors, |file| {
        let (config, ignored) =
            AuthenticationConfig::from_json(&file.resolved).map_err(|message| ConfigError::new(&file.path, message))?;
        for key in ignored {
            tracing::warn!(file = %file.path.display(), "ignoring {key}: not implemented by ferridm");
        }
        Ok(config)
    })
    .unwrap_or_default();
    let access_path = paths.conf_dir.join("access.json");
    let access = parsed(&files, "access", Some(&access_path), &mut errors, |file| {
        AccessRules::from_json(&file.resolved, &file.path, &script_limits)
    });
    let ui = parsed(&files, "ui/configuration", None, &mut errors, |file| {
        UiConfiguration::from_json(&file.resolved).map_err(|message| ConfigError::new(&file.path, message))
    })
    .unwrap_or_default();
    let processes = crate::selfservice::config::load(&crate::selfservice::config::LoadContext {
        paths,
        limits: &script_limits,
        files: &files,
    })
    .map_err(|problems| errors.extend(problems))
    .ok();
    let completeness = managed.as_ref().and_then(|managed| {
        crate::service::profile::load(paths, &script_limits, &files, managed)
            .map_err(|problem| errors.push(problem))
            .ok()
    });
    let auth_profile = parsed(&files, "auth.profile", None, &mut errors, |file| {
        AuthProfile::from_json(&file.resolved).map_err(|message| ConfigError::new(&file.path, message))
    })
    .unwrap_or_default();
    match (managed, policies, access, processes, completeness) {
        (Some(managed), Some(policies), Some(access), Some(processes), Some(completeness)) if errors.is_empty() => {
            Ok(Generation {
                number,
                loaded_at: ferridm_core::time::now_iso(),
                files,
                settings,
                managed,
                policies,
                script_limits,
                authentication,
                access,
                ui,
                processes,
                completeness,
                auth_profile,
            })
        }
        _ => Err(errors),
    }
}

/// The properties the registration process collects (its `idmUserDetails` stage), if any.
fn registration_properties(files: &BTreeMap<String, ConfigFile>) -> Option<Vec<String>> {
    let stages = files
        .get("selfservice/registration")?
        .resolved
        .get("stageConfigs")?
        .as_array()?;
    let details = stages
        .iter()
        .find(|stage| stage.get("name").and_then(Value::as_str) == Some("idmUserDetails"))?;
    Some(
        details
            .get("registrationProperties")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default(),
    )
}

/// The limits scripts run under, from `ferridm.json`, with imports rooted at `<project>/scripts`.
fn script_limits(paths: &ConfigPaths, settings: &Settings) -> ScriptLimits {
    let configured = &settings.script_limits;
    ScriptLimits {
        max_operations: configured.max_operations,
        max_call_levels: configured.max_call_levels,
        max_string_size: configured.max_string_size,
        max_array_size: configured.max_array_size,
        max_map_size: configured.max_map_size,
        max_duration: std::time::Duration::from_millis(configured.max_millis),
        scripts_dir: paths.project_dir.join("scripts"),
    }
}
