//! Values cross between JSON and Rhai as plain maps and arrays (serde).

use rhai::Dynamic;
use serde_json::Value;

/// JSON to a Rhai value.
pub fn to_dynamic(value: &Value) -> Dynamic {
    rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT)
}

/// A Rhai value to JSON (`()` becomes `null`; values JSON cannot hold become strings).
pub fn to_json(value: &Dynamic) -> Value {
    if value.is_unit() {
        return Value::Null;
    }
    rhai::serde::from_dynamic::<Value>(value).unwrap_or_else(|_| Value::String(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips() {
        let value = json!({"a": [1, 2.5, "x", true, null], "b": {"c": {}}});
        assert_eq!(to_json(&to_dynamic(&value)), value);
        assert_eq!(to_json(&Dynamic::UNIT), Value::Null);
    }
}
