//! Policies registered by scripts. A policy script calls, at top level,
//!
//! ```text
//! addPolicy(#{ policyId: "no-digits", policyExec: "noDigits",
//!              policyRequirements: ["NO_DIGITS"], validateOnlyIfPresent: true });
//! fn noDigits(fullObject, value, params, property) { … }   // [] = pass
//! ```
//!
//! Loading runs each script's top level once to collect its registrations; a later script may
//! override a policy by registering the same id. Validating calls the `policyExec` function,
//! which returns the failed requirements (`[#{policyRequirement, params?}]`).

pub mod shipped;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, Map, Position};
use serde_json::Value;

use crate::convert::to_json;
use crate::engine::ScriptLimits;
use crate::error::{ScriptError, ScriptErrorKind};
use crate::script::CompiledScript;
use shipped::NativeCheck;

thread_local! {
    static COLLECTING: RefCell<Option<Vec<Map>>> = const { RefCell::new(None) };
    static REQUIRED_FAILED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static VALUE_PRESENT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static REGISTRY: RefCell<Vec<(std::rc::Rc<PolicyRegistry>, ScriptLimits)>> = const { RefCell::new(Vec::new()) };
}

/// `context::valuePresent()`: true when the checked property is present in the object (JSON
/// `null` counts as present; Rhai sees both `null` and "absent" as `()`).
pub(crate) fn value_present() -> bool {
    VALUE_PRESENT.with(std::cell::Cell::get)
}

/// `context::checkPolicy(policyId, fullObject, value, params, property)`: runs another
/// registered policy from inside a policy (used by `valid-array-items`).
pub(crate) fn check_policy(
    policy_id: &str,
    full_object: Dynamic,
    value: Dynamic,
    params: Dynamic,
    property: &str,
) -> Result<Dynamic, Box<EvalAltResult>> {
    let found = REGISTRY.with(|registry| {
        registry
            .borrow()
            .last()
            .map(|(registry, limits)| (registry.get(policy_id).cloned(), limits.clone()))
    });
    let fail = |message: String| Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(message), Position::NONE));
    let Some((Some(policy), limits)) = found else {
        return Err(fail(format!("unknown policy {policy_id}")));
    };
    let present = !value.is_unit();
    let failed = policy
        .validate(&limits, full_object, value, params, property, false, present)
        .map_err(|error| fail(error.to_string()))?;
    Ok(crate::convert::to_dynamic(&Value::Array(failed)))
}

/// `context::requiredFailed()`: true when an earlier policy on the same property reported
/// `REQUIRED` in this evaluation (IDM's "REQUIRED already failed").
pub(crate) fn required_failed() -> bool {
    REQUIRED_FAILED.with(std::cell::Cell::get)
}

/// The `addPolicy` function scripts call.
pub(crate) fn register_policy(definition: Map) -> Result<(), Box<EvalAltResult>> {
    COLLECTING.with(|collecting| match &mut *collecting.borrow_mut() {
        Some(found) => {
            found.push(definition);
            Ok(())
        }
        None => Err(Box::new(EvalAltResult::ErrorRuntime(
            Dynamic::from("addPolicy may only be called while policy scripts load"),
            Position::NONE,
        ))),
    })
}

/// One registered policy.
#[derive(Debug, Clone)]
pub struct PolicyDefinition {
    /// Its id (`minimum-length`, …).
    pub policy_id: String,
    /// The function that checks it.
    pub exec: String,
    /// Requirement names it may report.
    pub requirements: Vec<String>,
    /// Skipped when the property is absent.
    pub validate_only_if_present: bool,
    /// Also meant for client-side validation.
    pub client_validation: bool,
    /// The script defining `exec`.
    pub script: Arc<CompiledScript>,
    /// The same check without the script engine, while `script` is the shipped one.
    pub native: Option<NativeCheck>,
}

impl PolicyDefinition {
    /// Runs the check; returns the failed requirements (empty when it passes).
    /// `required_failed` says whether `REQUIRED` already failed for this property, `present`
    /// whether the property exists in the object.
    #[expect(
        clippy::too_many_arguments,
        reason = "the policy contract's four values plus two flags"
    )]
    pub fn validate(
        &self,
        limits: &ScriptLimits,
        full_object: Dynamic,
        value: Dynamic,
        params: Dynamic,
        property: &str,
        required_failed: bool,
        present: bool,
    ) -> Result<Vec<Value>, ScriptError> {
        let previous = (
            REQUIRED_FAILED.with(|flag| flag.replace(required_failed)),
            VALUE_PRESENT.with(|flag| flag.replace(present)),
        );
        let result = self.script.call(
            limits,
            &self.exec,
            vec![full_object, value, params, Dynamic::from(property.to_owned())],
        );
        REQUIRED_FAILED.with(|flag| flag.set(previous.0));
        VALUE_PRESENT.with(|flag| flag.set(previous.1));
        let result = result?;
        if result.is_unit() {
            return Ok(Vec::new());
        }
        match to_json(&result) {
            Value::Array(items)
                if items
                    .iter()
                    .all(|item| item.get("policyRequirement").is_some_and(Value::is_string)) =>
            {
                Ok(items.into_iter().map(requirement_first).collect())
            }
            other => Err(ScriptError::new(
                self.script.name(),
                ScriptErrorKind::Runtime,
                format!(
                    "{} must return an array of #{{policyRequirement, params}} maps, not {other}",
                    self.exec
                ),
            )),
        }
    }
}

/// Puts `policyRequirement` first, as IDM writes it (Rhai maps come back sorted by key).
fn requirement_first(item: Value) -> Value {
    match item {
        Value::Object(mut map) => {
            let mut ordered = serde_json::Map::with_capacity(map.len());
            if let Some(requirement) = map.remove("policyRequirement") {
                ordered.insert("policyRequirement".to_owned(), requirement);
            }
            ordered.extend(map);
            Value::Object(ordered)
        }
        other => other,
    }
}

/// Every policy known to a configuration generation.
#[derive(Debug, Clone, Default)]
pub struct PolicyRegistry {
    policies: HashMap<String, Arc<PolicyDefinition>>,
    order: Vec<String>,
}

impl PolicyRegistry {
    /// The policy with this id.
    pub fn get(&self, policy_id: &str) -> Option<&Arc<PolicyDefinition>> {
        self.policies.get(policy_id)
    }

    /// Every policy, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<PolicyDefinition>> {
        self.order.iter().filter_map(|id| self.policies.get(id))
    }

    /// Runs `work` with this registry reachable from `context::checkPolicy` (install it once
    /// around a whole validation, not per policy).
    pub fn with_installed<R>(&self, limits: &ScriptLimits, work: impl FnOnce() -> R) -> R {
        REGISTRY.with(|registry| {
            registry
                .borrow_mut()
                .push((std::rc::Rc::new(self.clone()), limits.clone()))
        });
        let result = work();
        REGISTRY.with(|registry| registry.borrow_mut().pop());
        result
    }

    /// Runs each script's top level to collect its `addPolicy` registrations, in order.
    pub fn load(limits: &ScriptLimits, scripts: &[Arc<CompiledScript>]) -> Result<Self, ScriptError> {
        let mut registry = Self::default();
        for script in scripts {
            COLLECTING.with(|collecting| *collecting.borrow_mut() = Some(Vec::new()));
            let ran = script.run(limits, Vec::new());
            let found = COLLECTING
                .with(|collecting| collecting.borrow_mut().take())
                .unwrap_or_default();
            ran.map(|_| ())?;
            for definition in found {
                let policy = parse_definition(script, &definition)?;
                if !registry.policies.contains_key(&policy.policy_id) {
                    registry.order.push(policy.policy_id.clone());
                }
                registry.policies.insert(policy.policy_id.clone(), Arc::new(policy));
            }
        }
        Ok(registry)
    }
}

fn parse_definition(script: &Arc<CompiledScript>, definition: &Map) -> Result<PolicyDefinition, ScriptError> {
    let invalid = |message: String| ScriptError::new(script.name(), ScriptErrorKind::Compile, message);
    let text = |key: &str| -> Result<String, ScriptError> {
        definition
            .get(key)
            .and_then(|value| value.clone().try_cast::<rhai::ImmutableString>())
            .map(|value| value.to_string())
            .ok_or_else(|| invalid(format!("addPolicy needs a string {key}")))
    };
    let flag = |key: &str| {
        definition
            .get(key)
            .and_then(|value| value.as_bool().ok())
            .unwrap_or(false)
    };
    let policy_id = text("policyId")?;
    let exec = text("policyExec")?;
    if !script.has_function(&exec, 4) {
        return Err(invalid(format!(
            "policy {policy_id}: the script must define fn {exec}(fullObject, value, params, property)"
        )));
    }
    let requirements = match definition.get("policyRequirements").map(to_json) {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(name) => Ok(name),
                other => Err(invalid(format!(
                    "policy {policy_id}: requirement {other} is not a string"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
        Some(other) => {
            return Err(invalid(format!(
                "policy {policy_id}: policyRequirements must be an array, not {other}"
            )));
        }
    };
    let native = NativeCheck::of(script, &exec);
    Ok(PolicyDefinition {
        policy_id,
        native,
        exec,
        requirements,
        validate_only_if_present: flag("validateOnlyIfPresent"),
        client_validation: flag("clientValidation"),
        script: Arc::clone(script),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::to_dynamic;
    use serde_json::json;

    const NO_DIGITS: &str = r#"
        addPolicy(#{ policyId: "no-digits", policyExec: "noDigits",
                     policyRequirements: ["NO_DIGITS"], validateOnlyIfPresent: true });
        fn noDigits(fullObject, value, params, property) {
            if type_of(value) == "string" && text::matches(value, "[0-9]") {
                return [#{ policyRequirement: "NO_DIGITS" }];
            }
            []
        }
    "#;

    fn load(sources: &[&str]) -> Result<PolicyRegistry, ScriptError> {
        let limits = ScriptLimits::new(std::env::temp_dir());
        let scripts: Vec<_> = sources
            .iter()
            .enumerate()
            .map(|(i, text)| Arc::new(CompiledScript::compile_text(&limits, &format!("p{i}.rhai"), text).unwrap()))
            .collect();
        PolicyRegistry::load(&limits, &scripts)
    }

    #[test]
    fn scripts_register_and_run_policies() {
        let registry = load(&[NO_DIGITS]).unwrap();
        let policy = registry.get("no-digits").unwrap();
        assert!(policy.validate_only_if_present);
        assert_eq!(policy.requirements, ["NO_DIGITS"]);
        let limits = ScriptLimits::new(std::env::temp_dir());
        let object = to_dynamic(&json!({"sn": "x1"}));
        let failed = policy
            .validate(
                &limits,
                object.clone(),
                Dynamic::from("x1"),
                Dynamic::from(rhai::Map::new()),
                "sn",
                false,
                true,
            )
            .unwrap();
        assert_eq!(failed, vec![json!({"policyRequirement": "NO_DIGITS"})]);
        let passed = policy
            .validate(
                &limits,
                object,
                Dynamic::from("xy"),
                Dynamic::from(rhai::Map::new()),
                "sn",
                false,
                true,
            )
            .unwrap();
        assert!(passed.is_empty());
    }

    #[test]
    fn a_later_script_overrides_the_same_id() {
        let override_source = r#"
            addPolicy(#{ policyId: "no-digits", policyExec: "never", policyRequirements: ["X"] });
            fn never(a, b, c, d) { [] }
        "#;
        let registry = load(&[NO_DIGITS, override_source]).unwrap();
        assert_eq!(registry.get("no-digits").unwrap().exec, "never");
        assert_eq!(registry.iter().count(), 1);
    }

    #[test]
    fn a_missing_exec_function_is_refused() {
        let error = load(&[r#"addPolicy(#{ policyId: "p", policyExec: "missing" });"#]).unwrap_err();
        assert!(error.message.contains("fn missing"), "{error}");
    }

    #[test]
    fn add_policy_outside_loading_fails() {
        let limits = ScriptLimits::new(std::env::temp_dir());
        let script = CompiledScript::compile_text(&limits, "x", "fn f() { addPolicy(#{}) }").unwrap();
        assert!(script.call(&limits, "f", vec![]).is_err());
    }

    #[test]
    fn malformed_results_are_errors() {
        let registry = load(&[r#"
            addPolicy(#{ policyId: "p", policyExec: "bad" });
            fn bad(a, b, c, d) { 42 }
        "#])
        .unwrap();
        let limits = ScriptLimits::new(std::env::temp_dir());
        let error = registry
            .get("p")
            .unwrap()
            .validate(&limits, Dynamic::UNIT, Dynamic::UNIT, Dynamic::UNIT, "x", false, true)
            .unwrap_err();
        assert!(error.message.contains("must return an array"));
    }
}
