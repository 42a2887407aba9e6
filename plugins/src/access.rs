//! The `customAuthz` vocabulary of access rules. A rule's condition is a Rhai expression over a
//! fixed set of named checks (`ownDataOnly() && reauthIfProtectedAttributeChange()`); the checks
//! themselves are answered by the server for the request being authorised, through the
//! [`AccessChecks`] installed for the evaluation. IDM's single-quoted strings are accepted.

use std::cell::RefCell;
use std::rc::Rc;

use rhai::{Dynamic, Engine, EvalAltResult, Position};
use serde_json::Value;

use crate::convert::to_json;
use crate::engine::ScriptLimits;
use crate::error::{ScriptError, ScriptErrorKind};
use crate::script::CompiledScript;

/// The named checks an access rule may use, with their parameter counts.
pub const VOCABULARY: [(&str, usize); 10] = [
    ("ownDataOnly", 0),
    ("onlyEditableManagedObjectProperties", 2),
    ("reauthIfProtectedAttributeChange", 0),
    ("checkIfUIIsEnabled", 1),
    ("checkIfProgressiveProfileIsEnabled", 0),
    ("isSelfServiceRequest", 0),
    ("disallowQueryExpression", 0),
    ("disallowCommandAction", 0),
    ("isQueryOneOf", 1),
    ("restrictPatchToFields", 1),
];

/// Answers the named checks for one request. An `Err` refuses the request with that message.
pub trait AccessChecks {
    /// Evaluates check `name` with its arguments.
    fn check(&self, name: &str, arguments: Vec<Value>) -> Result<bool, String>;
}

thread_local! {
    static CHECKS: RefCell<Vec<Rc<dyn AccessChecks>>> = const { RefCell::new(Vec::new()) };
}

fn call(name: &str, arguments: Vec<Dynamic>) -> Result<bool, Box<EvalAltResult>> {
    let checks = CHECKS.with(|checks| checks.borrow().last().cloned());
    let fail = |message: String| Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(message), Position::NONE));
    let checks = checks.ok_or_else(|| fail(format!("{name}() is only available in access rules")))?;
    checks
        .check(name, arguments.iter().map(to_json).collect())
        .map_err(fail)
}

/// Registers the vocabulary in an engine (called by the engine builder).
pub(crate) fn register(engine: &mut Engine) {
    for (name, arity) in VOCABULARY {
        match arity {
            0 => {
                engine.register_fn(name, move || call(name, Vec::new()));
            }
            1 => {
                engine.register_fn(name, move |a: Dynamic| call(name, vec![a]));
            }
            _ => {
                engine.register_fn(name, move |a: Dynamic, b: Dynamic| call(name, vec![a, b]));
            }
        }
    }
}

/// Rewrites IDM's single-quoted strings as Rhai double-quoted strings.
fn rhai_quotes(expression: &str) -> String {
    let mut out = String::with_capacity(expression.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expression.chars() {
        match quote {
            Some(open) if escaped => {
                escaped = false;
                if open == '\'' && c == '\'' {
                    out.push('\'');
                } else {
                    out.push('\\');
                    out.push(c);
                }
            }
            Some(_) if c == '\\' => escaped = true,
            Some(open) if c == open => {
                quote = None;
                out.push('"');
            }
            Some('\'') if c == '"' => out.push_str("\\\""),
            Some(_) => out.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push('"');
            }
            None => out.push(c),
        }
    }
    out
}

/// A compiled `customAuthz` condition.
#[derive(Debug, Clone)]
pub struct AccessCondition {
    script: CompiledScript,
    text: String,
}

impl AccessCondition {
    /// Compiles a condition; calls to anything outside the vocabulary are refused.
    pub fn compile(limits: &ScriptLimits, name: &str, expression: &str) -> Result<Self, ScriptError> {
        let mut chars = expression.char_indices().peekable();
        let mut word = String::new();
        let mut in_string: Option<char> = None;
        while let Some((_, c)) = chars.next() {
            if let Some(open) = in_string {
                if c == '\\' {
                    chars.next();
                } else if c == open {
                    in_string = None;
                }
                continue;
            }
            if c == '\'' || c == '"' {
                in_string = Some(c);
                word.clear();
            } else if c.is_alphanumeric() || c == '_' {
                word.push(c);
            } else {
                if c == '(' && !word.is_empty() && !VOCABULARY.iter().any(|(known, _)| *known == word) {
                    return Err(ScriptError::new(
                        name,
                        ScriptErrorKind::Compile,
                        format!(
                            "customAuthz may only use {}; \"{word}\" is not one of them",
                            VOCABULARY.map(|(known, _)| known).join(", ")
                        ),
                    ));
                }
                if !c.is_whitespace() {
                    word.clear();
                }
            }
        }
        let script = CompiledScript::compile_text(limits, name, &rhai_quotes(expression))?;
        Ok(Self {
            script,
            text: expression.to_owned(),
        })
    }

    /// The condition as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates the condition with `checks` answering the named checks.
    pub fn evaluate(&self, limits: &ScriptLimits, checks: Rc<dyn AccessChecks>) -> Result<bool, ScriptError> {
        CHECKS.with(|stack| stack.borrow_mut().push(checks));
        let result = self.script.run(limits, Vec::new());
        CHECKS.with(|stack| stack.borrow_mut().pop());
        let value = result?;
        value.as_bool().map_err(|kind| {
            ScriptError::new(
                self.script.name(),
                ScriptErrorKind::Runtime,
                format!("customAuthz must evaluate to a boolean, not {kind}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(bool);

    impl AccessChecks for Fixed {
        fn check(&self, name: &str, arguments: Vec<Value>) -> Result<bool, String> {
            match name {
                "checkIfUIIsEnabled" => Ok(arguments == [Value::from("selfRegistration")]),
                "reauthIfProtectedAttributeChange" => Err("Reauthentication failed, missing or empty headers".into()),
                _ => Ok(self.0),
            }
        }
    }

    fn limits() -> ScriptLimits {
        ScriptLimits::new(std::env::temp_dir())
    }

    #[test]
    fn conditions_combine_named_checks() {
        let condition =
            AccessCondition::compile(&limits(), "access.json", "ownDataOnly() && !disallowCommandAction()").unwrap();
        assert!(!condition.evaluate(&limits(), Rc::new(Fixed(true))).unwrap());
        let condition =
            AccessCondition::compile(&limits(), "access.json", "(ownDataOnly() || isSelfServiceRequest())").unwrap();
        assert!(condition.evaluate(&limits(), Rc::new(Fixed(true))).unwrap());
    }

    #[test]
    fn single_quoted_arguments_are_strings() {
        let condition = AccessCondition::compile(&limits(), "a", "checkIfUIIsEnabled('selfRegistration')").unwrap();
        assert!(condition.evaluate(&limits(), Rc::new(Fixed(false))).unwrap());
        let condition =
            AccessCondition::compile(&limits(), "a", "onlyEditableManagedObjectProperties('user', [])").unwrap();
        assert!(condition.evaluate(&limits(), Rc::new(Fixed(true))).unwrap());
    }

    #[test]
    fn checks_can_refuse_with_their_own_message() {
        let condition = AccessCondition::compile(&limits(), "a", "reauthIfProtectedAttributeChange()").unwrap();
        let error = condition.evaluate(&limits(), Rc::new(Fixed(true))).unwrap_err();
        assert_eq!(error.message, "Reauthentication failed, missing or empty headers");
    }

    #[test]
    fn unknown_checks_are_refused_at_compile_time() {
        let error =
            AccessCondition::compile(&limits(), "access.json", "ownDataOnly() && deleteEverything()").unwrap_err();
        assert!(error.message.contains("deleteEverything"), "{error}");
        assert!(AccessCondition::compile(&limits(), "a", "ownDataOnly() &&").is_err());
    }

    #[test]
    fn quotes_are_rewritten() {
        assert_eq!(rhai_quotes("f('a', \"b\")"), "f(\"a\", \"b\")");
        assert_eq!(rhai_quotes("f('say \"hi\"')"), "f(\"say \\\"hi\\\"\")");
    }
}
