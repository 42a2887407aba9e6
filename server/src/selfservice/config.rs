//! Loading self-service processes: each stage resolved to its implementation and compiled,
//! IDM's configuration amendments applied (KBA questions, the active terms, consent), the
//! all-in-one grouping rewritten, and a version computed so tokens from an older configuration
//! are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferridm_plugins::stage::{RhaiStage, Stage};
use ferridm_plugins::{CompiledScript, ScriptLimits, ScriptSource};
use ferridm_store::RateLimit;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::stages::{AllInOne, ConditionalUser};
use crate::config::scripts::config_error;
use crate::config::{ConfigError, ConfigFile, ConfigPaths};

/// Stages that `allInOneRegistration: true` groups into one.
const GROUPED: [&str; 4] = ["idmUserDetails", "captcha", "termsAndConditions", "consent"];
/// Seconds a process token lives when the config does not say.
const DEFAULT_TOKEN_EXPIRY: u64 = 300;

/// A stage of a process, ready to run.
#[derive(Clone)]
pub struct ConfiguredStage {
    /// The stage name (`idmUserDetails`, …), which is the `type` clients see.
    pub name: String,
    /// Its configuration, amended.
    pub config: Value,
    /// The implementation.
    pub stage: Arc<dyn Stage>,
}

impl std::fmt::Debug for ConfiguredStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredStage")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One self-service process.
#[derive(Debug, Clone)]
pub struct Process {
    /// The name (`registration`).
    pub name: String,
    /// Stages in order.
    pub stages: Vec<ConfiguredStage>,
    /// A digest of the effective configuration; tokens carry it.
    pub version: String,
    /// Token lifetime in seconds.
    pub token_expiry: u64,
    /// True when the process works on the logged-in user (profile processes).
    pub needs_principal: bool,
    /// `revealAccountExistence` (default false): when false, a query that finds no usable
    /// account answers exactly as one that does, and no mail is sent; when true, IDM's literal
    /// `400 "Unable to find account"` and the stages' own refusals.
    pub reveal_account_existence: bool,
    /// `rateLimit`: how often the process may be started per account and per client address.
    pub rate_limits: RateLimits,
}

/// A process's `rateLimit`: `{"perAccount": {"requests": n, "periodSeconds": s},
/// "perClientAddress": {…}}`, counted by every node through the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Starts that may name one account per period (beyond it: no mail, same answer).
    pub per_account: Option<RateLimit>,
    /// Starts one client address may make per period (beyond it: 429).
    pub per_client_address: Option<RateLimit>,
}

fn rate_limit(document: &Value, key: &str) -> Result<Option<RateLimit>, String> {
    let Some(rule) = document.get("rateLimit").and_then(|limits| limits.get(key)) else {
        return Ok(None);
    };
    let number = |name: &str| {
        rule.get(name)
            .and_then(Value::as_i64)
            .filter(|value| *value > 0)
            .ok_or_else(|| format!("rateLimit.{key}.{name} must be a positive integer"))
    };
    Ok(Some(RateLimit {
        limit: number("requests")?,
        window_ms: number("periodSeconds")?.saturating_mul(1000),
    }))
}

fn rate_limits(document: &Value) -> Result<RateLimits, String> {
    if document.get("rateLimit").is_some_and(|limits| !limits.is_object()) {
        return Err("rateLimit must be an object".to_owned());
    }
    Ok(RateLimits {
        per_account: rate_limit(document, "perAccount")?,
        per_client_address: rate_limit(document, "perClientAddress")?,
    })
}

/// Every process of a generation.
#[derive(Debug, Clone, Default)]
pub struct Processes {
    by_name: BTreeMap<String, Arc<Process>>,
}

impl Processes {
    /// The process with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<Process>> {
        self.by_name.get(name)
    }

    /// Every process name.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.by_name.keys()
    }
}

/// What loading needs from the rest of the conf directory.
pub struct LoadContext<'a> {
    /// Paths.
    pub paths: &'a ConfigPaths,
    /// Script limits.
    pub limits: &'a ScriptLimits,
    /// Every conf file.
    pub files: &'a BTreeMap<String, ConfigFile>,
}

/// Stages whose work is on the logged-in user.
const PRINCIPAL_STAGES: [&str; 4] = [
    "conditionaluser",
    "attributecollection",
    "patchObject",
    "kbaUpdateStage",
];

/// Compiles stages for one generation (shared by the native stages that nest others).
pub(super) struct Compiler<'a> {
    context: &'a LoadContext<'a>,
    compiled: BTreeMap<PathBuf, Arc<RhaiStage>>,
    errors: Vec<ConfigError>,
}

impl Compiler<'_> {
    fn script_stage(&mut self, location: &str, source: ScriptSource) -> Option<Arc<dyn Stage>> {
        if let ScriptSource::File { path, .. } = &source
            && let Some(known) = self.compiled.get(path)
        {
            return Some(Arc::clone(known) as Arc<dyn Stage>);
        }
        let compiled = CompiledScript::compile(self.context.limits, &source)
            .and_then(|script| RhaiStage::new(Arc::new(script), self.context.limits.clone()));
        match compiled {
            Ok(stage) => {
                let stage = Arc::new(stage);
                if let ScriptSource::File { path, .. } = source {
                    self.compiled.insert(path, Arc::clone(&stage));
                }
                Some(stage as Arc<dyn Stage>)
            }
            Err(error) => {
                let mut problem = config_error(&error);
                if problem.position.is_none() && problem.file == source.name() {
                    problem.message = format!("{location}: {}", problem.message);
                }
                self.errors.push(problem);
                None
            }
        }
    }

    /// Resolves one stage config to its implementation.
    fn stage(&mut self, file: &Path, location: &str, config: &Value) -> Option<ConfiguredStage> {
        let Some(name) = config.get("name").and_then(Value::as_str) else {
            self.errors
                .push(ConfigError::new(file, format!("{location}: a stage needs a \"name\"")));
            return None;
        };
        let stage: Arc<dyn Stage> = match (name, config.get("script")) {
            ("allInOneRegistration", _) => {
                let configs = config
                    .get("configs")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let mut inner = Vec::new();
                for (index, sub) in configs.iter().enumerate() {
                    inner.extend(self.stage(file, &format!("{location}.configs[{index}]"), sub));
                }
                Arc::new(AllInOne::new(inner))
            }
            ("conditionaluser", _) => match ConditionalUser::new(self, file, location, config) {
                Some(stage) => Arc::new(stage),
                None => return None,
            },
            (_, Some(script)) => {
                let source = match crate::config::scripts::script_source(self.context.paths, script, file, location) {
                    Ok(source) => source,
                    Err(error) => {
                        self.errors.push(error);
                        return None;
                    }
                };
                self.script_stage(location, source)?
            }
            (name, None) => {
                let relative = format!("scripts/stages/{name}.rhai");
                if !self.context.paths.resolve(&relative).is_file() {
                    self.errors.push(ConfigError::new(
                        file,
                        format!(
                            "{location}: unknown stage \"{name}\" (no built-in stage and no scripts/stages/{name}.rhai; give a \"script\" to use your own)"
                        ),
                    ));
                    return None;
                }
                self.script_stage(location, self.context.paths.script(&relative))?
            }
        };
        Some(ConfiguredStage {
            name: name.to_owned(),
            config: config.clone(),
            stage,
        })
    }

    /// Compiles a condition or completeness script (used by `conditionaluser`).
    pub(super) fn script(&mut self, file: &Path, location: &str, config: &Value) -> Option<Arc<CompiledScript>> {
        match crate::config::scripts::compile_config(
            self.context.paths,
            self.context.limits,
            config,
            file,
            location,
            &["user"],
        ) {
            Ok(script) => Some(script),
            Err(error) => {
                self.errors.push(error);
                None
            }
        }
    }

    /// The active terms version, if terms are configured.
    pub(super) fn active_terms_version(&self) -> Option<String> {
        active_terms(self.context.files)
            .and_then(|terms| terms.get("termsVersion").and_then(Value::as_str).map(str::to_owned))
    }

    /// The script limits of the generation.
    pub(super) fn limits(&self) -> &ScriptLimits {
        self.context.limits
    }

    /// Records a problem found while building a native stage.
    pub(super) fn problem(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    /// Builds a nested stage (a `conditionaluser` branch).
    pub(super) fn nested(&mut self, file: &Path, location: &str, config: &Value) -> Option<ConfiguredStage> {
        let amended = amend_stage(self.context, config.clone());
        self.stage(file, location, &amended)
    }
}

fn resolved<'a>(context: &'a LoadContext<'_>, id: &str) -> Option<&'a Value> {
    context.files.get(id).map(|file| &file.resolved)
}

/// The active terms from `selfservice.terms.json`: version, translations, date, UI texts.
pub fn active_terms(files: &BTreeMap<String, ConfigFile>) -> Option<Value> {
    let terms = &files.get("selfservice.terms")?.resolved;
    let active = terms.get("active")?.as_str()?;
    let version = terms
        .get("versions")?
        .as_array()?
        .iter()
        .find(|version| version.get("version").and_then(Value::as_str) == Some(active))?;
    Some(json!({
        "termsVersion": active,
        "termsTranslations": version.get("termsTranslations").cloned().unwrap_or(json!({})),
        "createDate": version.get("createDate").cloned().unwrap_or(Value::Null),
        "uiConfig": terms.get("uiConfig").cloned().unwrap_or(json!({})),
    }))
}

/// IDM's per-stage amendments (§9.1): KBA questions, terms, consent flag.
fn amend_stage(context: &LoadContext<'_>, mut config: Value) -> Value {
    let Some(map) = config.as_object_mut() else {
        return config;
    };
    let name = map.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let kba = resolved(context, "selfservice.kba").cloned();
    let kba_condition = name == "conditionaluser"
        && map
            .get("condition")
            .and_then(|condition| condition.get("type"))
            .and_then(Value::as_str)
            == Some("kbaQuestions");
    if map.contains_key("kbaConfig")
        || kba_condition
        || name == "kbaSecurityAnswerDefinitionStage"
        || name == "kbaUpdateStage"
        || name == "kbaSecurityAnswerVerificationStage"
    {
        let kba = kba.clone().unwrap_or_else(|| json!({"kbaPropertyName": "kbaInfo", "minimumAnswersToDefine": 1, "minimumAnswersToVerify": 1, "questions": {}}));
        let define = kba.get("minimumAnswersToDefine").cloned().unwrap_or(json!(1));
        let verify = kba.get("minimumAnswersToVerify").cloned().unwrap_or(json!(1));
        map.insert("kbaConfig".to_owned(), kba);
        map.insert("numberOfAnswersUserMustSet".to_owned(), define);
        if name == "kbaSecurityAnswerVerificationStage" {
            map.insert("numberOfQuestionsUserMustAnswer".to_owned(), verify);
        }
    }
    if name == "termsAndConditions"
        && let Some(terms) = active_terms(context.files)
    {
        map.insert("activeTerms".to_owned(), terms);
    }
    if name == "consent" {
        let enabled = resolved(context, "consent")
            .and_then(|consent| consent.get("enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        map.insert("consentEnabled".to_owned(), Value::Bool(enabled));
    }
    if name == "allInOneRegistration"
        && let Some(Value::Array(configs)) = map.get_mut("configs")
    {
        let amended: Vec<Value> = configs.drain(..).map(|c| amend_stage(context, c)).collect();
        *configs = amended;
    }
    config
}

/// `allInOneRegistration: true`: groups the registration stages into one synthetic stage.
fn group_all_in_one(stages: Vec<Value>) -> Vec<Value> {
    let grouped = |stage: &Value| {
        stage
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|name| GROUPED.contains(&name))
            || stage.get("kbaConfig").is_some()
    };
    if !stages.iter().any(grouped) {
        return stages;
    }
    let (inner, rest): (Vec<Value>, Vec<Value>) = stages.into_iter().partition(grouped);
    let (parameters, others): (Vec<Value>, Vec<Value>) = rest
        .into_iter()
        .partition(|stage| stage.get("name").and_then(Value::as_str) == Some("parameters"));
    let mut result = parameters;
    result.push(json!({"name": "allInOneRegistration", "configs": inner}));
    result.extend(others);
    result
}

fn token_expiry(document: &Value) -> u64 {
    match document.get("snapshotToken").and_then(|token| token.get("tokenExpiry")) {
        Some(Value::Number(seconds)) => seconds.as_u64().unwrap_or(DEFAULT_TOKEN_EXPIRY),
        Some(Value::String(seconds)) => seconds.trim().parse().unwrap_or(DEFAULT_TOKEN_EXPIRY),
        _ => DEFAULT_TOKEN_EXPIRY,
    }
}

/// Loads every `selfservice-<name>.json`.
pub fn load(context: &LoadContext<'_>) -> Result<Processes, Vec<ConfigError>> {
    let mut compiler = Compiler {
        context,
        compiled: BTreeMap::new(),
        errors: Vec::new(),
    };
    let mut by_name = BTreeMap::new();
    for (id, file) in context.files {
        let Some(name) = id.strip_prefix("selfservice/") else {
            continue;
        };
        let document = &file.resolved;
        let Some(stage_configs) = document.get("stageConfigs").and_then(Value::as_array) else {
            compiler
                .errors
                .push(ConfigError::new(&file.path, "expected a \"stageConfigs\" array"));
            continue;
        };
        let reveal_account_existence = document
            .get("revealAccountExistence")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let rate_limits = match rate_limits(document) {
            Ok(limits) => limits,
            Err(message) => {
                compiler.errors.push(ConfigError::new(&file.path, message));
                continue;
            }
        };
        let mut configs: Vec<Value> = stage_configs
            .iter()
            .cloned()
            .map(|config| amend_stage(context, config))
            .map(|mut config| {
                if let Some(map) = config.as_object_mut() {
                    map.insert(
                        "revealAccountExistence".to_owned(),
                        Value::Bool(reveal_account_existence),
                    );
                }
                config
            })
            .collect();
        if document.get("allInOneRegistration").and_then(Value::as_bool) == Some(true) {
            configs = group_all_in_one(configs);
        }
        let mut stages = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            stages.extend(compiler.stage(&file.path, &format!("stageConfigs[{index}]"), config));
        }
        let version = {
            let mut digest = Sha256::new();
            digest.update(name.as_bytes());
            digest.update(Value::Array(configs.clone()).to_string().as_bytes());
            let bytes = digest.finalize();
            bytes.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>()
        };
        let needs_principal = configs.iter().any(|config| {
            config
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| PRINCIPAL_STAGES.contains(&name))
        });
        by_name.insert(
            name.to_owned(),
            Arc::new(Process {
                name: name.to_owned(),
                stages,
                version,
                token_expiry: token_expiry(document),
                needs_principal,
                reveal_account_existence,
                rate_limits,
            }),
        );
    }
    if compiler.errors.is_empty() {
        Ok(Processes { by_name })
    } else {
        Err(compiler.errors)
    }
}

/// A config object's value as an object map (for native stages).
pub fn object(value: Option<&Value>) -> Map<String, Value> {
    value.and_then(Value::as_object).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_in_one_groups_registration_stages() {
        let stages = vec![
            json!({"name": "parameters"}),
            json!({"name": "idmUserDetails"}),
            json!({"name": "termsAndConditions"}),
            json!({"name": "emailValidation"}),
            json!({"name": "kbaSecurityAnswerDefinitionStage", "kbaConfig": null}),
            json!({"name": "selfRegistration"}),
        ];
        let grouped = group_all_in_one(stages);
        let names: Vec<&str> = grouped.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "parameters",
                "allInOneRegistration",
                "emailValidation",
                "selfRegistration"
            ]
        );
        let inner: Vec<&str> = grouped[1]["configs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            inner,
            [
                "idmUserDetails",
                "termsAndConditions",
                "kbaSecurityAnswerDefinitionStage"
            ]
        );
    }

    #[test]
    fn nothing_to_group_leaves_stages_alone() {
        let stages = vec![json!({"name": "emailValidation"}), json!({"name": "selfRegistration"})];
        assert_eq!(group_all_in_one(stages.clone()), stages);
    }

    #[test]
    fn token_expiry_accepts_numbers_and_strings() {
        assert_eq!(token_expiry(&json!({"snapshotToken": {"tokenExpiry": 60}})), 60);
        assert_eq!(token_expiry(&json!({"snapshotToken": {"tokenExpiry": "90"}})), 90);
        assert_eq!(token_expiry(&json!({})), DEFAULT_TOKEN_EXPIRY);
    }
}
