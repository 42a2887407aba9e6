//! Script failures, always naming the script and, when known, the line and column.

use std::fmt;

use serde_json::Value;

/// What went wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptErrorKind {
    /// The script does not compile.
    Compile,
    /// A limit was hit (operations, depth, size, time).
    Limit,
    /// The script threw a value (`throw "message"` or `throw #{code, message, detail}`).
    Thrown(Box<Value>),
    /// Any other runtime failure.
    Runtime,
}

/// A script failure.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptError {
    /// The script's name (its path, or `<inline>`).
    pub script: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What happened.
    pub message: String,
    /// The class of failure.
    pub kind: ScriptErrorKind,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{}:{line}:{column}: {}", self.script, self.message),
            (Some(line), None) => write!(f, "{}:{line}: {}", self.script, self.message),
            _ => write!(f, "{}: {}", self.script, self.message),
        }
    }
}

impl std::error::Error for ScriptError {}

impl ScriptError {
    /// A failure not tied to a position.
    pub fn new(script: &str, kind: ScriptErrorKind, message: impl Into<String>) -> Self {
        Self {
            script: script.to_owned(),
            line: None,
            column: None,
            message: message.into(),
            kind,
        }
    }

    /// Converts a Rhai evaluation error. Errors raised inside called functions and imported
    /// modules are unwrapped to the innermost one, so a `throw` keeps its meaning.
    pub fn from_eval(script: &str, error: &rhai::EvalAltResult) -> Self {
        use rhai::EvalAltResult as E;
        let mut error = error;
        while let E::ErrorInFunctionCall(_, _, inner, _) | E::ErrorInModule(_, inner, _) = error {
            error = inner;
        }
        let position = error.position();
        let kind = match error {
            E::ErrorTooManyOperations(_)
            | E::ErrorStackOverflow(_)
            | E::ErrorDataTooLarge(..)
            | E::ErrorTooManyModules(_)
            | E::ErrorTooManyVariables(_)
            | E::ErrorTerminated(..) => ScriptErrorKind::Limit,
            E::ErrorRuntime(value, _) => ScriptErrorKind::Thrown(Box::new(crate::convert::to_json(value))),
            _ => ScriptErrorKind::Runtime,
        };
        let message = match error {
            E::ErrorTerminated(..) => "the script ran longer than its time budget".to_owned(),
            E::ErrorTooManyOperations(_) => "the script exceeded its operation budget".to_owned(),
            E::ErrorStackOverflow(_) => "the script exceeded its call depth".to_owned(),
            E::ErrorRuntime(value, _) => value.clone().try_cast::<String>().unwrap_or_else(|| error.to_string()),
            other => other.to_string(),
        };
        Self {
            script: script.to_owned(),
            line: position.line(),
            column: position.position(),
            message,
            kind,
        }
    }

    /// Converts a Rhai parse error.
    pub fn from_parse(script: &str, error: &rhai::ParseError) -> Self {
        Self {
            script: script.to_owned(),
            line: error.1.line(),
            column: error.1.position(),
            message: error.0.to_string(),
            kind: ScriptErrorKind::Compile,
        }
    }
}
