//! `ui-configuration.json`: the UI feature flags access rules consult (`selfRegistration`,
//! `passwordReset`, `forgotUsername`, `kbaEnabled`) and the settings served at `info/uiconfig`.

use serde_json::{Map, Value};

/// The parsed UI configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UiConfiguration {
    /// The `configuration` object as written.
    pub configuration: Map<String, Value>,
}

impl UiConfiguration {
    /// Reads the document (`{"configuration": {…}}`).
    pub fn from_json(document: &Value) -> Result<Self, String> {
        match document.get("configuration") {
            Some(Value::Object(configuration)) => Ok(Self {
                configuration: configuration.clone(),
            }),
            _ => Err("expected a \"configuration\" object".to_owned()),
        }
    }

    /// True when the named feature flag is truthy.
    pub fn enabled(&self, flag: &str) -> bool {
        match self.configuration.get(flag) {
            Some(Value::Bool(value)) => *value,
            Some(Value::String(value)) => value.eq_ignore_ascii_case("true"),
            Some(Value::Number(value)) => value.as_f64().is_some_and(|n| n != 0.0),
            _ => false,
        }
    }
}
