//! Self-service stages. A stage gives its initial requirements and advances with the client's
//! input, either asking for more (`Ask`) or completing with state to merge and additions for
//! the client (`Complete`). Stages written in Rhai implement [`Stage`] through [`RhaiStage`];
//! the server's meta-stages (all-in-one registration, conditional user) implement it natively.
//!
//! A stage script defines `fn requirements(context, config)` and
//! `fn advance(context, config, input)`; see `scripts/README.md`.

use std::sync::Arc;

use rhai::Dynamic;
use serde_json::{Map, Value, json};

use crate::convert::{to_dynamic, to_json};
use crate::engine::ScriptLimits;
use crate::error::{ScriptError, ScriptErrorKind};
use crate::script::CompiledScript;

/// What a stage sees of the process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageContext {
    /// The process state shared between stages (e.g. `user`).
    pub state: Map<String, Value>,
    /// The logged-in user's id (profile processes), if any.
    pub principal: Option<String>,
    /// The stage's current tag (`initial` when it starts).
    pub tag: String,
    /// The client's preferred locales (`Accept-Language`), best first.
    pub locales: Vec<String>,
}

impl StageContext {
    /// The context as the script receives it.
    pub fn to_json(&self) -> Value {
        json!({
            "state": self.state,
            "principal": self.principal,
            "tag": self.tag,
            "locales": self.locales,
        })
    }
}

/// The result of advancing a stage.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutcome {
    /// Ask the client (again).
    Ask {
        /// The requirements to answer.
        requirements: Value,
        /// A new tag for the stage (`None`: unchanged).
        tag: Option<String>,
        /// State to merge before asking.
        state: Map<String, Value>,
        /// A message to send once the continuation token exists: `#{to, subject, body}` in
        /// which `{{token}}` is replaced by the token (e-mail verification links).
        notify: Option<Value>,
    },
    /// The stage is done.
    Complete {
        /// State to merge.
        state: Map<String, Value>,
        /// Values published to the client when the process ends.
        additions: Map<String, Value>,
    },
}

/// A self-service stage.
pub trait Stage: Send + Sync {
    /// The stage's requirements when it starts; `None` (or `{}`) when it needs no input.
    fn requirements(&self, context: &StageContext, config: &Value) -> Result<Option<Value>, ScriptError>;
    /// Advances the stage with the client's input.
    fn advance(&self, context: &StageContext, config: &Value, input: &Value) -> Result<StageOutcome, ScriptError>;
}

/// A stage written in Rhai.
#[derive(Debug, Clone)]
pub struct RhaiStage {
    script: Arc<CompiledScript>,
    limits: ScriptLimits,
}

/// The entry points a stage script must define.
pub const STAGE_ENTRY_POINTS: [(&str, usize); 2] = [("requirements", 2), ("advance", 3)];

impl RhaiStage {
    /// A stage from a compiled script (its entry points are checked).
    pub fn new(script: Arc<CompiledScript>, limits: ScriptLimits) -> Result<Self, ScriptError> {
        script.require_functions(&STAGE_ENTRY_POINTS)?;
        Ok(Self { script, limits })
    }

    /// The script's name.
    pub fn name(&self) -> &str {
        self.script.name()
    }

    fn invalid(&self, message: String) -> ScriptError {
        ScriptError::new(self.script.name(), ScriptErrorKind::Runtime, message)
    }
}

fn object(value: Option<&Value>) -> Map<String, Value> {
    value.and_then(Value::as_object).cloned().unwrap_or_default()
}

/// True for "no requirements": `()`/null or an empty object.
pub fn is_empty_requirements(value: &Value) -> bool {
    value.is_null() || value.as_object().is_some_and(Map::is_empty)
}

impl Stage for RhaiStage {
    fn requirements(&self, context: &StageContext, config: &Value) -> Result<Option<Value>, ScriptError> {
        let result = self.script.call(
            &self.limits,
            "requirements",
            vec![to_dynamic(&context.to_json()), to_dynamic(config)],
        )?;
        let value = to_json(&result);
        Ok((!is_empty_requirements(&value)).then_some(value))
    }

    fn advance(&self, context: &StageContext, config: &Value, input: &Value) -> Result<StageOutcome, ScriptError> {
        let result: Dynamic = self.script.call(
            &self.limits,
            "advance",
            vec![to_dynamic(&context.to_json()), to_dynamic(config), to_dynamic(input)],
        )?;
        let Value::Object(outcome) = to_json(&result) else {
            return Err(self.invalid(
                "advance must return #{requirements: …} or #{complete: true, state: …, additions: …}".to_owned(),
            ));
        };
        if outcome.get("complete").and_then(Value::as_bool) == Some(true) {
            return Ok(StageOutcome::Complete {
                state: object(outcome.get("state")),
                additions: object(outcome.get("additions")),
            });
        }
        match outcome.get("requirements") {
            Some(requirements) if requirements.is_object() => Ok(StageOutcome::Ask {
                requirements: requirements.clone(),
                tag: outcome.get("tag").and_then(Value::as_str).map(str::to_owned),
                state: object(outcome.get("state")),
                notify: outcome.get("notify").filter(|notify| notify.is_object()).cloned(),
            }),
            _ => Err(self.invalid(
                "advance must return #{requirements: …} or #{complete: true, state: …, additions: …}".to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(source: &str) -> Result<RhaiStage, ScriptError> {
        let limits = ScriptLimits::new(std::env::temp_dir());
        let script = CompiledScript::compile_text(&limits, "stage.rhai", source)?;
        RhaiStage::new(Arc::new(script), limits)
    }

    const COLOUR: &str = r#"
        fn requirements(context, config) {
            #{ description: "Pick a colour", required: ["colour"] }
        }
        fn advance(context, config, input) {
            if input.colour == () { return #{ requirements: requirements(context, config) }; }
            if input.colour == "" { throw "colour must not be empty"; }
            #{ complete: true, state: #{ colour: input.colour, seen: context.state.seen ?? 0 }, additions: #{ ok: config.flag } }
        }
    "#;

    #[test]
    fn scripts_without_both_entry_points_are_refused() {
        assert!(stage("fn requirements(context, config) { () }").is_err());
        assert!(stage(COLOUR).is_ok());
    }

    #[test]
    fn requirements_and_outcomes_cross_as_json() {
        let stage = stage(COLOUR).unwrap();
        let mut context = StageContext::default();
        context.state.insert("seen".into(), json!(3));
        let config = json!({"flag": true});
        assert_eq!(
            stage.requirements(&context, &config).unwrap(),
            Some(json!({"description": "Pick a colour", "required": ["colour"]}))
        );
        match stage.advance(&context, &config, &json!({})).unwrap() {
            StageOutcome::Ask { tag, .. } => assert_eq!(tag, None),
            other => panic!("expected to ask again, got {other:?}"),
        }
        match stage.advance(&context, &config, &json!({"colour": "blue"})).unwrap() {
            StageOutcome::Complete { state, additions } => {
                assert_eq!(state.get("colour"), Some(&json!("blue")));
                assert_eq!(state.get("seen"), Some(&json!(3)));
                assert_eq!(additions.get("ok"), Some(&json!(true)));
            }
            other => panic!("expected completion, got {other:?}"),
        }
        let error = stage.advance(&context, &config, &json!({"colour": ""})).unwrap_err();
        assert_eq!(error.message, "colour must not be empty");
    }

    #[test]
    fn malformed_outcomes_are_errors() {
        let stage = stage("fn requirements(c, k) { () } fn advance(c, k, i) { 42 }").unwrap();
        assert!(
            stage
                .requirements(&StageContext::default(), &json!({}))
                .unwrap()
                .is_none()
        );
        assert!(stage.advance(&StageContext::default(), &json!({}), &json!({})).is_err());
    }
}
