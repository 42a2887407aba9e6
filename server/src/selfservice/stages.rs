//! The native meta-stages: `allInOneRegistration` (several registration stages answered in one
//! form) and `conditionaluser` (a progressive-profile form shown when a condition on the
//! logged-in user holds, at most once per session or, for `timeSince`, once ever).

use std::path::Path;
use std::sync::Arc;

use ferridm_core::JsonPointer;
use ferridm_core::filter::{self, Filter};
use ferridm_plugins::error::ScriptErrorKind;
use ferridm_plugins::host::current;
use ferridm_plugins::stage::{Stage, StageContext, StageOutcome};
use ferridm_plugins::{CompiledScript, ScriptError};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::config::{Compiler as StageCompiler, ConfiguredStage};
use crate::config::ConfigError;

fn stage_error(stage: &str, message: impl Into<String>) -> ScriptError {
    ScriptError::new(
        stage,
        ScriptErrorKind::Thrown(Box::new(Value::String(message.into()))),
        "",
    )
}

fn thrown(stage: &str, code: u16, message: &str) -> ScriptError {
    let message = message.to_owned();
    ScriptError {
        message: message.clone(),
        ..ScriptError::new(
            stage,
            ScriptErrorKind::Thrown(Box::new(json!({"code": code, "message": message}))),
            "",
        )
    }
}

/// Order in which all-in-one merges its sub-stages' requirements (IDM's fixed order).
const MERGE_ORDER: [&str; 5] = [
    "captcha",
    "termsAndConditions",
    "kbaSecurityAnswerDefinitionStage",
    "idmUserDetails",
    "consent",
];

/// Merges `from` into `into`: keys united, first writer wins for scalars, objects merged,
/// arrays concatenated; mismatched kinds are an error.
fn merge(into: &mut Map<String, Value>, from: &Map<String, Value>) -> Result<(), ()> {
    for (key, value) in from {
        match (into.get_mut(key), value) {
            (None, _) => {
                into.insert(key.clone(), value.clone());
            }
            (Some(Value::Object(existing)), Value::Object(incoming)) => merge(existing, incoming)?,
            (Some(Value::Array(existing)), Value::Array(incoming)) => {
                for item in incoming {
                    if !existing.contains(item) {
                        existing.push(item.clone());
                    }
                }
            }
            (Some(existing), incoming)
                if std::mem::discriminant(existing) == std::mem::discriminant(incoming)
                    || existing.is_null()
                    || incoming.is_null() => {}
            _ => return Err(()),
        }
    }
    Ok(())
}

/// True for a stage refusing its input (`throw "message"`, or a thrown 400), as opposed to a
/// failure that should end the request (limits, bugs, a 403 from a policy backstop).
fn is_refusal(error: &ScriptError) -> bool {
    match &error.kind {
        ScriptErrorKind::Thrown(value) => match value.as_ref() {
            Value::String(_) => true,
            Value::Object(thrown) => thrown.get("code").and_then(Value::as_u64) == Some(400),
            _ => false,
        },
        _ => false,
    }
}

/// Several registration stages answered with one form.
pub struct AllInOne {
    stages: Vec<ConfiguredStage>,
}

impl AllInOne {
    /// Groups `stages` (in configuration order).
    pub fn new(stages: Vec<ConfiguredStage>) -> Self {
        Self { stages }
    }

    fn done_key(stage: &ConfiguredStage) -> String {
        format!("{}-complete", stage.name)
    }

    fn merged(&self, pending: &[(&ConfiguredStage, Value)]) -> Result<Value, ScriptError> {
        let mut ordered: Vec<&(&ConfiguredStage, Value)> = pending.iter().collect();
        ordered.sort_by_key(|(stage, _)| {
            MERGE_ORDER
                .iter()
                .position(|name| *name == stage.name)
                .unwrap_or(MERGE_ORDER.len())
        });
        let mut requirements = Map::new();
        for (_, stage_requirements) in &ordered {
            if let Some(object) = stage_requirements.as_object() {
                merge(&mut requirements, object)
                    .map_err(|()| stage_error("allInOneRegistration", "Unknown data type or data types mismatch"))?;
            }
        }
        let names: Vec<Value> = pending
            .iter()
            .map(|(stage, _)| Value::String(stage.name.clone()))
            .collect();
        requirements.insert("stages".to_owned(), Value::Array(names));
        Ok(Value::Object(requirements))
    }
}

impl Stage for AllInOne {
    fn requirements(&self, context: &StageContext, _config: &Value) -> Result<Option<Value>, ScriptError> {
        let mut pending = Vec::new();
        for stage in &self.stages {
            if context.state.contains_key(&Self::done_key(stage)) {
                continue;
            }
            if let Some(requirements) = stage.stage.requirements(context, &stage.config)? {
                pending.push((stage, requirements));
            }
        }
        if pending.is_empty() {
            return Ok(None);
        }
        self.merged(&pending).map(Some)
    }

    fn advance(&self, context: &StageContext, _config: &Value, input: &Value) -> Result<StageOutcome, ScriptError> {
        let mut working = context.clone();
        let mut additions = Map::new();
        let mut pending = Vec::new();
        let mut tag = None;
        for stage in &self.stages {
            if working.state.contains_key(&Self::done_key(stage)) {
                continue;
            }
            let mut sub_context = working.clone();
            sub_context.tag = "initial".to_owned();
            let advanced = match stage.stage.advance(&sub_context, &stage.config, input) {
                // A sub-stage refusing its part of the input is asked again (IDM §9.5.12).
                Err(error) if is_refusal(&error) => {
                    let requirements = stage
                        .stage
                        .requirements(&sub_context, &stage.config)?
                        .unwrap_or_else(|| json!({}));
                    pending.push((stage, requirements));
                    continue;
                }
                other => other?,
            };
            match advanced {
                StageOutcome::Complete { state, additions: more } => {
                    working.state.extend(state);
                    working.state.insert(Self::done_key(stage), Value::Bool(true));
                    additions.extend(more);
                }
                StageOutcome::Ask {
                    requirements,
                    tag: asked,
                    state,
                    ..
                } => {
                    working.state.extend(state);
                    if stage.name == "idmUserDetails" {
                        tag = asked;
                    }
                    pending.push((stage, requirements));
                }
            }
        }
        if pending.is_empty() {
            let mut state = working.state;
            state.insert("_successAdditions".to_owned(), Value::Object(additions.clone()));
            return Ok(StageOutcome::Complete { state, additions });
        }
        Ok(StageOutcome::Ask {
            requirements: self.merged(&pending)?,
            tag,
            state: working.state,
            notify: None,
        })
    }
}

/// A condition on the logged-in user (IDM §10.3).
enum Condition {
    LoginCount {
        every: bool,
        amount: i64,
    },
    TimeSince {
        property: JsonPointer,
        minutes: i64,
        months: i64,
    },
    ProfileCompleteness {
        percent_less_than: f64,
    },
    Filter(Filter),
    Terms,
    KbaQuestions {
        minimum: usize,
        property: String,
    },
    Scripted(Arc<CompiledScript>),
}

impl Condition {
    fn parse(
        compiler: &mut StageCompiler<'_>,
        file: &Path,
        location: &str,
        config: &Value,
        stage: &Value,
    ) -> Result<Self, String> {
        let kind = config
            .get("type")
            .and_then(Value::as_str)
            .ok_or("a condition needs a \"type\"")?;
        match kind {
            "loginCount" => {
                let every = match config.get("interval").and_then(Value::as_str) {
                    Some("at") => false,
                    Some("every") => true,
                    other => return Err(format!("Invalid interval type: {}", other.unwrap_or("(none)"))),
                };
                let amount = config.get("amount").and_then(Value::as_i64).unwrap_or(0);
                if amount <= 0 {
                    return Err("Login count amount cannot be less than or equal to zero".to_owned());
                }
                Ok(Self::LoginCount { every, amount })
            }
            "timeSince" => {
                let field = |name: &str| config.get(name).and_then(Value::as_i64);
                let given: Vec<i64> = ["years", "months", "weeks", "days", "hours", "minutes"]
                    .iter()
                    .filter_map(|name| field(name))
                    .collect();
                if given.is_empty() {
                    return Err(
                        "timeSince needs at least one of years, months, weeks, days, hours, minutes".to_owned(),
                    );
                }
                let minutes = field("weeks").unwrap_or(0) * 7 * 24 * 60
                    + field("days").unwrap_or(0) * 24 * 60
                    + field("hours").unwrap_or(0) * 60
                    + field("minutes").unwrap_or(0);
                let months = field("years").unwrap_or(0) * 12 + field("months").unwrap_or(0);
                let property = config
                    .get("property")
                    .and_then(Value::as_str)
                    .unwrap_or("/_meta/createDate");
                Ok(Self::TimeSince {
                    property: JsonPointer::parse(property),
                    minutes,
                    months,
                })
            }
            "profileCompleteness" => Ok(Self::ProfileCompleteness {
                percent_less_than: config
                    .get("percentLessThan")
                    .and_then(Value::as_f64)
                    .ok_or("profileCompleteness needs percentLessThan")?,
            }),
            "propertyValue" => {
                let operation = config
                    .get("operation")
                    .and_then(Value::as_str)
                    .ok_or("propertyValue needs operation")?;
                let attribute = config
                    .get("attribute")
                    .and_then(Value::as_str)
                    .ok_or("propertyValue needs attribute")?;
                let value = match config.get("value") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(text)) => format!(" \"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")),
                    Some(Value::Number(number)) => format!(" {number}"),
                    Some(_) => return Err("propertyValue value must be a string, a number or null".to_owned()),
                };
                let (negated, op) = match operation.strip_prefix('!') {
                    Some(op) => (true, op),
                    None => (false, operation),
                };
                if !["eq", "co", "sw", "gt", "ge", "lt", "le", "pr"].contains(&op) {
                    return Err(format!("propertyValue: unsupported operation {operation}"));
                }
                let text = format!("{attribute} {op}{}", if op == "pr" { "" } else { value.as_str() });
                let text = if negated { format!("!({text})") } else { text };
                // An expression that does not parse simply never holds.
                Ok(Self::Filter(filter::parse(&text).unwrap_or(Filter::False)))
            }
            "queryFilter" => {
                let text = config
                    .get("filter")
                    .and_then(Value::as_str)
                    .ok_or("queryFilter needs filter")?;
                filter::parse(text)
                    .map(Self::Filter)
                    .map_err(|error| format!("invalid filter: {error}"))
            }
            "terms" => Ok(Self::Terms),
            "kbaQuestions" => Ok(Self::KbaQuestions {
                minimum: stage
                    .get("numberOfAnswersUserMustSet")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(1),
                property: stage
                    .get("kbaConfig")
                    .and_then(|kba| kba.get("kbaPropertyName"))
                    .and_then(Value::as_str)
                    .unwrap_or("kbaInfo")
                    .to_owned(),
            }),
            "scripted" | "script" => {
                let script = config.get("script").ok_or("a scripted condition needs \"script\"")?;
                compiler
                    .script(file, &format!("{location}.condition.script"), script)
                    .map(Self::Scripted)
                    .ok_or_else(String::new)
            }
            other => Err(format!("unknown condition type {other}")),
        }
    }
}

/// A progressive-profile form guarded by a condition on the logged-in user.
pub struct ConditionalUser {
    condition: Condition,
    identity_service: String,
    on_true: Option<(ConfiguredStage, String)>,
    on_false: Option<(ConfiguredStage, String)>,
    active_terms: Option<String>,
    limits: ferridm_plugins::ScriptLimits,
}

/// A stable identifier for a branch config (completion tracking).
fn branch_identifier(config: &Value) -> String {
    let digest = Sha256::digest(config.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn host_error(error: ferridm_plugins::HostError) -> ScriptError {
    ScriptError {
        message: error.message.clone(),
        ..ScriptError::new(
            "conditionaluser",
            ScriptErrorKind::Thrown(Box::new(error.to_json())),
            "",
        )
    }
}

impl ConditionalUser {
    /// Builds the stage from its config; problems are recorded in the compiler.
    pub(super) fn new(compiler: &mut StageCompiler<'_>, file: &Path, location: &str, config: &Value) -> Option<Self> {
        let Some(condition_config) = config.get("condition") else {
            compiler.problem(ConfigError::new(
                file,
                format!("{location}: conditionaluser needs a \"condition\""),
            ));
            return None;
        };
        let condition = match Condition::parse(compiler, file, location, condition_config, config) {
            Ok(condition) => condition,
            Err(message) if message.is_empty() => return None,
            Err(message) => {
                compiler.problem(ConfigError::new(file, format!("{location}.condition: {message}")));
                return None;
            }
        };
        let mut branch = |key: &str| -> Option<Option<(ConfiguredStage, String)>> {
            match config.get(key) {
                None | Some(Value::Null) => Some(None),
                Some(branch) => {
                    let identifier = branch_identifier(branch);
                    compiler
                        .nested(file, &format!("{location}.{key}"), branch)
                        .map(|stage| Some((stage, identifier)))
                }
            }
        };
        let on_true = branch("onConditionTrue")?;
        let on_false = branch("onConditionFalse")?;
        let active_terms = compiler.active_terms_version();
        let limits = compiler.limits().clone();
        Some(Self {
            limits,
            condition,
            identity_service: config
                .get("identityServiceUrl")
                .and_then(Value::as_str)
                .unwrap_or("managed/user")
                .to_owned(),
            on_true,
            on_false,
            active_terms,
        })
    }

    fn user(&self, context: &StageContext) -> Result<Value, ScriptError> {
        let principal = context
            .principal
            .as_deref()
            .ok_or_else(|| thrown("conditionaluser", 403, "Access denied"))?;
        let (host, _) = current().ok_or_else(|| stage_error("conditionaluser", "no host"))?;
        host.read(&format!("{}/{principal}", self.identity_service))
            .map_err(host_error)?
            .ok_or_else(|| thrown("conditionaluser", 500, "Cannot read user"))
    }

    fn holds(&self, user: &Value) -> Result<bool, ScriptError> {
        Ok(match &self.condition {
            Condition::LoginCount { every, amount } => {
                match user.pointer("/_meta/loginCount").and_then(Value::as_i64) {
                    Some(count) if *every => count % amount == 0,
                    Some(count) => count == *amount,
                    None => false,
                }
            }
            Condition::TimeSince {
                property,
                minutes,
                months,
            } => {
                let Some(since) = property
                    .get(user)
                    .and_then(Value::as_str)
                    .and_then(ferridm_core::time::parse_iso)
                else {
                    return Ok(false);
                };
                let due = since
                    .checked_add_months(chrono::Months::new(u32::try_from(*months).unwrap_or(0)))
                    .and_then(|due| due.checked_add_signed(chrono::Duration::minutes(*minutes)));
                let truncate = |time: chrono::DateTime<chrono::Utc>| time.timestamp() / 60;
                due.is_some_and(|due| truncate(chrono::Utc::now()) >= truncate(due))
            }
            Condition::ProfileCompleteness { percent_less_than } => {
                let (host, _) = current().ok_or_else(|| stage_error("conditionaluser", "no host"))?;
                let score = host
                    .service("profileCompleteness", json!({"user": user}))
                    .map_err(host_error)?
                    .as_f64()
                    .unwrap_or(0.0);
                score < *percent_less_than
            }
            Condition::Filter(filter) => filter::matches(filter, user),
            Condition::Terms => {
                let accepted = user
                    .pointer("/_meta/termsAccepted/termsVersion")
                    .and_then(Value::as_str);
                match &self.active_terms {
                    Some(active) => accepted != Some(active.as_str()),
                    None => false,
                }
            }
            Condition::KbaQuestions { minimum, property } => user
                .get(property)
                .and_then(Value::as_array)
                .is_some_and(|answers| answers.len() >= *minimum),
            Condition::Scripted(script) => {
                let (host, capability) = current().ok_or_else(|| stage_error("conditionaluser", "no host"))?;
                let result = ferridm_plugins::host::with_host(host, capability, script.name(), || {
                    script.run(&self.limits, vec![("user", ferridm_plugins::convert::to_dynamic(user))])
                })?;
                result.as_bool().unwrap_or(false)
            }
        })
    }

    /// The branch to run now, with its identifier; `None` when the stage passes through.
    fn choose(&self, context: &StageContext) -> Result<Option<&(ConfiguredStage, String)>, ScriptError> {
        let user = self.user(context)?;
        let branch = if self.holds(&user)? {
            &self.on_true
        } else {
            &self.on_false
        };
        let Some(chosen) = branch else {
            return Ok(None);
        };
        let identifier = &chosen.1;
        let done = if matches!(self.condition, Condition::TimeSince { .. }) {
            user.pointer("/_meta/stagesCompleted")
                .and_then(Value::as_array)
                .is_some_and(|done| {
                    done.iter()
                        .any(|entry| entry.get("identifier").and_then(Value::as_str) == Some(identifier))
                })
        } else {
            let (host, _) = current().ok_or_else(|| stage_error("conditionaluser", "no host"))?;
            host.service("formsCompleted", json!({}))
                .map_err(host_error)?
                .as_array()
                .is_some_and(|forms| forms.iter().any(|form| form.as_str() == Some(identifier)))
        };
        Ok((!done).then_some(chosen))
    }
}

impl Stage for ConditionalUser {
    fn requirements(&self, context: &StageContext, _config: &Value) -> Result<Option<Value>, ScriptError> {
        match self.choose(context)? {
            None => Ok(None),
            Some((stage, _)) => stage.stage.requirements(context, &stage.config),
        }
    }

    fn advance(&self, context: &StageContext, _config: &Value, input: &Value) -> Result<StageOutcome, ScriptError> {
        let Some((stage, identifier)) = self.choose(context)? else {
            return Ok(StageOutcome::Complete {
                state: Map::new(),
                additions: Map::new(),
            });
        };
        let outcome = stage.stage.advance(context, &stage.config, input)?;
        if let StageOutcome::Complete { .. } = outcome {
            let (host, _) = current().ok_or_else(|| stage_error("conditionaluser", "no host"))?;
            host.service("completeForm", json!({"identifier": identifier}))
                .map_err(host_error)?;
        }
        Ok(outcome)
    }
}
