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
    /// The condition as a tree of checks, when it is only checks with literal arguments
    /// combined by `&&`, `||`, `!` and parentheses (every shipped rule): evaluated without the
    /// script engine, with the same answers and errors.
    plan: Option<Plan>,
    text: String,
}

/// A condition made of checks only.
#[derive(Debug, Clone, PartialEq)]
enum Plan {
    /// `true` or `false`.
    Constant(bool),
    /// A named check with literal arguments, at its 1-based line and column.
    Check {
        name: &'static str,
        arguments: Vec<Value>,
        line: usize,
        column: usize,
    },
    Not(Box<Plan>),
    And(Box<Plan>, Box<Plan>),
    Or(Box<Plan>, Box<Plan>),
}

impl Plan {
    fn evaluate(&self, script: &str, checks: &dyn AccessChecks) -> Result<bool, ScriptError> {
        match self {
            Self::Constant(value) => Ok(*value),
            Self::Check {
                name,
                arguments,
                line,
                column,
            } => checks.check(name, arguments.clone()).map_err(|message| ScriptError {
                script: script.to_owned(),
                line: Some(*line),
                column: Some(*column),
                kind: ScriptErrorKind::Thrown(Box::new(Value::String(message.clone()))),
                message,
            }),
            Self::Not(operand) => Ok(!operand.evaluate(script, checks)?),
            Self::And(left, right) => Ok(left.evaluate(script, checks)? && right.evaluate(script, checks)?),
            Self::Or(left, right) => Ok(left.evaluate(script, checks)? || right.evaluate(script, checks)?),
        }
    }
}

/// Reads a condition into a [`Plan`]; `None` for anything beyond checks with literal arguments
/// (which the script engine then evaluates).
struct PlanReader<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    column: usize,
}

impl<'a> PlanReader<'a> {
    fn read(text: &'a str) -> Option<Plan> {
        let mut reader = Self {
            chars: text.chars().peekable(),
            line: 1,
            column: 1,
        };
        let plan = reader.or()?;
        reader.skip_space();
        reader.chars.peek().is_none().then_some(plan)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn skip_space(&mut self) {
        while self.chars.peek().is_some_and(|c| c.is_whitespace()) {
            self.bump();
        }
    }

    /// Consumes `token` (after spaces) when it comes next.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        let ahead: String = self.chars.clone().take(token.chars().count()).collect();
        if ahead != token {
            return false;
        }
        for _ in token.chars() {
            self.bump();
        }
        true
    }

    fn or(&mut self) -> Option<Plan> {
        let mut plan = self.and()?;
        while self.eat("||") {
            plan = Plan::Or(Box::new(plan), Box::new(self.and()?));
        }
        Some(plan)
    }

    fn and(&mut self) -> Option<Plan> {
        let mut plan = self.unary()?;
        while self.eat("&&") {
            plan = Plan::And(Box::new(plan), Box::new(self.unary()?));
        }
        Some(plan)
    }

    fn unary(&mut self) -> Option<Plan> {
        if self.eat("!") {
            return Some(Plan::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let plan = self.or()?;
            return self.eat(")").then_some(plan);
        }
        let (line, column) = (self.line, self.column);
        let word = self.word();
        match word.as_str() {
            "true" => return Some(Plan::Constant(true)),
            "false" => return Some(Plan::Constant(false)),
            _ => {}
        }
        let (name, arity) = VOCABULARY.into_iter().find(|(known, _)| *known == word)?;
        if !self.eat("(") {
            return None;
        }
        let mut arguments = Vec::new();
        if !self.eat(")") {
            loop {
                arguments.push(self.literal()?);
                if self.eat(")") {
                    break;
                }
                if !self.eat(",") {
                    return None;
                }
            }
        }
        (arguments.len() == arity).then_some(Plan::Check {
            name,
            arguments,
            line,
            column,
        })
    }

    fn word(&mut self) -> String {
        self.skip_space();
        let mut word = String::new();
        while let Some(&c) = self.chars.peek()
            && (c.is_alphanumeric() || c == '_')
        {
            word.push(c);
            self.bump();
        }
        word
    }

    /// A string (without escapes or the other quote inside) or an array of literals.
    fn literal(&mut self) -> Option<Value> {
        self.skip_space();
        match self.bump()? {
            quote @ ('\'' | '"') => {
                let mut text = String::new();
                loop {
                    match self.bump()? {
                        c if c == quote => return Some(Value::String(text)),
                        '\\' | '\'' | '"' => return None,
                        c => text.push(c),
                    }
                }
            }
            '[' => {
                let mut items = Vec::new();
                if self.eat("]") {
                    return Some(Value::Array(items));
                }
                loop {
                    items.push(self.literal()?);
                    if self.eat("]") {
                        return Some(Value::Array(items));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            _ => None,
        }
    }
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
            plan: PlanReader::read(expression),
            text: expression.to_owned(),
        })
    }

    /// The condition as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates the condition with `checks` answering the named checks.
    pub fn evaluate(&self, limits: &ScriptLimits, checks: Rc<dyn AccessChecks>) -> Result<bool, ScriptError> {
        if let Some(plan) = &self.plan {
            return plan.evaluate(self.script.name(), checks.as_ref());
        }
        self.evaluate_script(limits, checks)
    }

    /// Evaluates the condition as a script.
    fn evaluate_script(&self, limits: &ScriptLimits, checks: Rc<dyn AccessChecks>) -> Result<bool, ScriptError> {
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

    /// Answers every check from a table keyed by name, failing those it does not know.
    struct Table(Vec<(&'static str, bool)>);

    impl AccessChecks for Table {
        fn check(&self, name: &str, arguments: Vec<Value>) -> Result<bool, String> {
            let answer = self
                .0
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, answer)| *answer);
            answer.ok_or_else(|| format!("{name} refused {}", Value::Array(arguments)))
        }
    }

    #[test]
    fn checks_with_literal_arguments_are_planned_and_answer_as_the_script_does() {
        let planned = [
            "ownDataOnly() && !disallowCommandAction()",
            "(checkIfUIIsEnabled('forgotUsername') || checkIfUIIsEnabled(\"passwordReset\")) && isSelfServiceRequest()",
            "!!isSelfServiceRequest() || false",
            "onlyEditableManagedObjectProperties('user', ['a', []]) && true",
            "ownDataOnly()\n  && isQueryOneOf(['query-all'])",
            "disallowQueryExpression() || ownDataOnly() && isSelfServiceRequest()",
        ];
        let tables = [
            vec![
                ("ownDataOnly", true),
                ("disallowCommandAction", false),
                ("isSelfServiceRequest", true),
            ],
            vec![
                ("ownDataOnly", false),
                ("checkIfUIIsEnabled", true),
                ("disallowQueryExpression", false),
            ],
            vec![
                ("isSelfServiceRequest", false),
                ("onlyEditableManagedObjectProperties", true),
            ],
            vec![
                ("disallowQueryExpression", true),
                ("isQueryOneOf", true),
                ("ownDataOnly", true),
            ],
            vec![],
        ];
        for expression in planned {
            let condition = AccessCondition::compile(&limits(), "access.json", expression).unwrap();
            assert!(condition.plan.is_some(), "{expression}");
            for table in &tables {
                let checks: Rc<dyn AccessChecks> = Rc::new(Table(table.clone()));
                let native = condition.evaluate(&limits(), Rc::clone(&checks));
                let script = condition.evaluate_script(&limits(), checks);
                assert_eq!(
                    format!("{native:?}"),
                    format!("{script:?}"),
                    "{expression} with {table:?}"
                );
            }
        }
        let scripted = [
            "let x = ownDataOnly(); x",
            "checkIfUIIsEnabled('a\\'b')",
            "ownDataOnly() == true",
            "isQueryOneOf([1])",
            "checkIfUIIsEnabled()",
        ];
        for expression in scripted {
            let condition = AccessCondition::compile(&limits(), "access.json", expression).unwrap();
            assert!(condition.plan.is_none(), "{expression}");
        }
    }

    #[test]
    fn quotes_are_rewritten() {
        assert_eq!(rhai_quotes("f('a', \"b\")"), "f(\"a\", \"b\")");
        assert_eq!(rhai_quotes("f('say \"hi\"')"), "f(\"say \\\"hi\\\"\")");
    }
}
