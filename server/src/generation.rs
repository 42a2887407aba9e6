//! Configuration generations: the whole conf directory read into one immutable [`Generation`],
//! every file parsed into its typed form and every script compiled, or refused whole with every
//! problem named. Requests keep the generation they started with to the end; a reload builds a
//! whole new one and swaps it in only if it passes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ferridm_core::schema::ManagedConfig;
use ferridm_plugins::{CompiledScript, ScriptLimits};
use serde_json::Value;

use crate::config::access::AccessRules;
use crate::config::audit::AuditConfig;
use crate::config::authentication::AuthenticationConfig;
use crate::config::email::EmailConfig;
use crate::config::identity_providers::IdentityProviders;
use crate::config::policy::{DerivedResources, PolicySet};
use crate::config::profile::{AuthProfile, CompletenessRule};
use crate::config::scripts::TransformScripts;
use crate::config::ui::UiConfiguration;
use crate::config::{
    ConfigError, ConfigFile, ConfigPaths, ManagedTypes, Settings, file_name, read_dir, resolve_placeholders,
};
use crate::selfservice::Processes;

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
    pub policies: PolicySet,
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
    /// `external.email.json`.
    pub email: EmailConfig,
    /// `identityProviders.json` and `identityProvider-<name>.json`.
    pub identity_providers: IdentityProviders,
    /// `scripts/social/<provider>.rhai`: each enabled provider's mapping script, if it has one.
    pub social_scripts: BTreeMap<String, Arc<CompiledScript>>,
    /// `audit.json`: the audit handlers and what they record.
    pub audit: Arc<AuditConfig>,
    /// `selfservice.kba.json` as served at `selfservice/kba`, if present.
    pub kba: Option<serde_json::Map<String, Value>>,
    /// True when a `selfservice/profile` process with at least one stage is configured.
    pub progressive_profile: bool,
    /// Patch transform scripts compiled for this generation.
    pub transforms: TransformScripts,
}

impl Generation {
    /// The resolved JSON of a config id, if the file exists.
    pub fn file(&self, id: &str) -> Option<&Value> {
        self.files.get(id).map(|file| &file.resolved)
    }

    /// True when a `selfservice/profile` process with at least one stage is configured.
    pub fn progressive_profile_enabled(&self) -> bool {
        self.progressive_profile
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
                    format!("missing: {} is required", crate::config::file_name_in_project(path)),
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
    let mut files = read_dir(&paths.conf_dir, &mut errors);
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
            // A managed.json that could not be read has its own error already.
            let missing = ConfigError::new(
                &paths.conf_dir.join("managed.json"),
                "missing: managed.json declares the managed object types",
            );
            if !errors.iter().any(|error| error.file == missing.file) {
                errors.push(missing);
            }
            None
        }
        Some(file) => match ManagedConfig::from_json(&file.resolved) {
            Ok(config) => ManagedTypes::new(
                config,
                paths,
                &script_limits(paths, &settings),
                &file.path,
                &settings.index_every_property,
            )
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
        let reset_password_field = reset_password_field(&files);
        PolicySet::load(
            paths,
            policy_file,
            managed,
            &managed_path,
            &script_limits,
            settings.policy_enforcement,
            DerivedResources {
                registration: registration.as_deref(),
                reset_password_field: reset_password_field.as_deref(),
            },
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
        crate::config::profile::load(paths, &script_limits, &files, managed)
            .map_err(|problem| errors.push(problem))
            .ok()
    });
    let auth_profile = parsed(&files, "auth.profile", None, &mut errors, |file| {
        AuthProfile::from_json(&file.resolved).map_err(|message| ConfigError::new(&file.path, message))
    })
    .unwrap_or_default();
    let email: EmailConfig = typed(&files, "external.email", &mut errors);
    let identity_providers = IdentityProviders::from_files(&files)
        .map_err(|error| errors.push(error))
        .unwrap_or_default();
    let social_scripts = social_scripts(paths, &script_limits, &identity_providers, &mut errors);
    let audit: AuditConfig = typed(&files, "audit", &mut errors);
    let kba = parsed(&files, "selfservice.kba", None, &mut errors, |file| {
        match &file.resolved {
            Value::Object(kba) => Ok(kba.clone()),
            _ => Err(ConfigError::new(&file.path, "expected a JSON object")),
        }
    });
    let progressive_profile = files
        .get("selfservice/profile")
        .and_then(|profile| profile.resolved.get("stageConfigs"))
        .and_then(Value::as_array)
        .is_some_and(|stages| !stages.is_empty());
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
                email,
                identity_providers,
                social_scripts,
                audit: Arc::new(audit),
                kba,
                progressive_profile,
                transforms: TransformScripts::default(),
            })
        }
        _ => Err(errors),
    }
}

/// The mapping script of each enabled provider that has one (`scripts/social/<provider>.rhai`,
/// which must define `normalize(profile, claims)`).
fn social_scripts(
    paths: &ConfigPaths,
    limits: &ScriptLimits,
    providers: &IdentityProviders,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, Arc<CompiledScript>> {
    let mut scripts = BTreeMap::new();
    for provider in providers.all_enabled() {
        let relative = format!("scripts/social/{}.rhai", provider.provider);
        if !paths.resolve(&relative).is_file() {
            continue;
        }
        let compiled = CompiledScript::compile(limits, &paths.script(&relative))
            .and_then(|script| script.require_functions(&[("normalize", 2)]).map(|()| script));
        match compiled {
            Ok(script) => {
                scripts.insert(provider.provider.clone(), Arc::new(script));
            }
            Err(error) => errors.push(crate::config::scripts::config_error(&error)),
        }
    }
    scripts
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

/// The password field a configured reset process sets (its `resetStage`'s
/// `identityPasswordField`, `password` by default).
fn reset_password_field(files: &BTreeMap<String, ConfigFile>) -> Option<String> {
    let stages = files
        .get("selfservice/reset")?
        .resolved
        .get("stageConfigs")?
        .as_array()?;
    let reset = stages
        .iter()
        .find(|stage| stage.get("name").and_then(Value::as_str) == Some("resetStage"))?;
    Some(
        reset
            .get("identityPasswordField")
            .and_then(Value::as_str)
            .unwrap_or("password")
            .to_owned(),
    )
}

/// The limits scripts run under, from `ferridm.json`, with imports rooted at `<project>/scripts`.
pub fn script_limits(paths: &ConfigPaths, settings: &Settings) -> ScriptLimits {
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
