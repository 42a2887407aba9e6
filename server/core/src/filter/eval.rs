//! The reference in-memory evaluator (idm-api §3.3, idm-cases §A.6).
//!
//! This is the semantics every backend must agree with; the SQL compiler is checked against it
//! by a differential test. Precisely:
//!
//! * **Field value.** `pointer.get(object)` ([`JsonPointer::get`](crate::JsonPointer::get)):
//!   object keys by name, array elements by numeric segment. `_id` is an ordinary key.
//! * **Candidates.** If the field value is an array, its elements (one level only); otherwise the
//!   value itself. A comparison holds if **any** candidate satisfies it. Candidates that are
//!   arrays or objects never satisfy a comparison.
//! * **Kinds never mix.** A string literal only matches string candidates, a number literal
//!   (integer or float) only number candidates, a boolean literal only boolean candidates
//!   (`age eq "30"` does not match the number 30).
//! * **Strings** compare case-insensitively: both sides are lower-cased with
//!   [`str::to_lowercase`] and the results compared by byte order (`Ord for str`) for `eq`,
//!   `gt`, `ge`, `lt`, `le`; `co` is "lower-cased candidate contains lower-cased literal", `sw`
//!   "starts with".
//! * **Numbers** compare as `f64` (integers are converted), booleans with `false < true`; for
//!   both, `co` and `sw` mean equality.
//! * **Null literal.** `eq null` holds when the field is missing, is JSON `null`, or is an array
//!   with a `null` element; any other operator with a `null` literal never holds.
//! * **Presence.** `pr` holds when the field exists and is not JSON `null` (an empty array or
//!   object is present).
//! * **Missing field.** Every comparison except `eq null` is false, so its negation is true.
//! * **Extended match.** An extended operator evaluates to IDM's "undefined": the node is false
//!   and so is `!` applied directly to it. Every other `!` is plain negation (so `! (! (x))` of
//!   an extended `x` is true).
//! * **Constants and junctions.** `true` matches everything and `false` nothing; `and` needs
//!   every operand (an empty `and` is true), `or` some operand (an empty `or` is false).

use std::cmp::Ordering;

use serde_json::Value;

use super::{ComparisonOp, Filter, Literal};

/// True when `object` satisfies `filter`, by the rules in the module documentation.
pub fn matches(filter: &Filter, object: &Value) -> bool {
    match filter {
        Filter::True => true,
        Filter::False => false,
        Filter::Comparison { field, op, value } => compare(field.get(object), *op, value),
        Filter::Present(field) => field.get(object).is_some_and(|value| !value.is_null()),
        Filter::Extended { .. } => false,
        Filter::And(operands) => operands.iter().all(|operand| matches(operand, object)),
        Filter::Or(operands) => operands.iter().any(|operand| matches(operand, object)),
        Filter::Not(inner) => match inner.as_ref() {
            Filter::Extended { .. } => false,
            other => !matches(other, object),
        },
    }
}

/// Evaluates `<field> <op> <literal>` against the field's value (`None` when missing).
fn compare(found: Option<&Value>, op: ComparisonOp, literal: &Literal) -> bool {
    if let Literal::Null = literal {
        return op == ComparisonOp::Eq
            && match found {
                None | Some(Value::Null) => true,
                Some(Value::Array(items)) => items.iter().any(Value::is_null),
                Some(_) => false,
            };
    }
    match found {
        None => false,
        Some(Value::Array(items)) => items.iter().any(|item| satisfies(item, op, literal)),
        Some(value) => satisfies(value, op, literal),
    }
}

/// True when one candidate value satisfies `<op> <literal>` (`literal` is not null).
fn satisfies(candidate: &Value, op: ComparisonOp, literal: &Literal) -> bool {
    match (literal, candidate) {
        (Literal::String(expected), Value::String(actual)) => compare_strings(actual, op, expected),
        (Literal::Integer(expected), Value::Number(actual)) => compare_numbers(actual.as_f64(), op, *expected as f64),
        (Literal::Float(expected), Value::Number(actual)) => compare_numbers(actual.as_f64(), op, *expected),
        (Literal::Boolean(expected), Value::Bool(actual)) => ordering_holds(actual.cmp(expected), op),
        _ => false,
    }
}

/// Case-insensitive string comparison: both sides lower-cased, then byte order.
fn compare_strings(actual: &str, op: ComparisonOp, expected: &str) -> bool {
    let actual = actual.to_lowercase();
    let expected = expected.to_lowercase();
    match op {
        ComparisonOp::Co => actual.contains(&expected),
        ComparisonOp::Sw => actual.starts_with(&expected),
        _ => ordering_holds(actual.as_str().cmp(expected.as_str()), op),
    }
}

/// Numeric comparison as `f64`; an incomparable pair (NaN) never matches.
fn compare_numbers(actual: Option<f64>, op: ComparisonOp, expected: f64) -> bool {
    actual
        .and_then(|actual| actual.partial_cmp(&expected))
        .is_some_and(|ordering| ordering_holds(ordering, op))
}

/// Whether `actual.cmp(expected) == ordering` satisfies `op`; `co` and `sw` mean equality.
fn ordering_holds(ordering: Ordering, op: ComparisonOp) -> bool {
    match op {
        ComparisonOp::Eq | ComparisonOp::Co | ComparisonOp::Sw => ordering == Ordering::Equal,
        ComparisonOp::Gt => ordering == Ordering::Greater,
        ComparisonOp::Ge => ordering != Ordering::Less,
        ComparisonOp::Lt => ordering == Ordering::Less,
        ComparisonOp::Le => ordering != Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::parse;
    use super::*;
    use crate::JsonPointer;

    /// The object of idm-cases §A.6.
    fn alice() -> Value {
        json!({
            "name": "Alice",
            "age": 30,
            "tags": ["a", "B"],
            "nick": null,
            "score": 2.5,
            "admin": false
        })
    }

    #[track_caller]
    fn eval_on(text: &str, object: &Value) -> bool {
        match parse(text) {
            Ok(filter) => matches(&filter, object),
            Err(error) => panic!("{text:?} should parse, got {error:?}"),
        }
    }

    #[track_caller]
    fn eval(text: &str) -> bool {
        eval_on(text, &alice())
    }

    // ---- A.6 ----

    #[test]
    fn string_equality_ignores_case() {
        assert!(eval(r#"name eq "alice""#));
        assert!(eval(r#"name eq "ALICE""#));
    }

    #[test]
    fn contains_and_starts_with_ignore_case() {
        assert!(eval(r#"name co "LIC""#));
        assert!(eval(r#"name sw "al""#));
        assert!(!eval(r#"name sw "li""#));
    }

    #[test]
    fn integer_float_and_string_literals_against_a_number() {
        assert!(eval("age eq 30"));
        assert!(eval("age eq 30.0"));
        assert!(!eval(r#"age eq "30""#));
    }

    #[test]
    fn number_ordering() {
        assert!(eval("age gt 29"));
        assert!(eval("age ge 30"));
        assert!(!eval("age lt 30"));
        assert!(eval("age le 30"));
        assert!(!eval("age gt 30"));
        assert!(eval("age lt 30.5"));
    }

    #[test]
    fn array_matches_when_any_element_matches() {
        assert!(eval(r#"tags eq "b""#));
        assert!(eval(r#"tags eq "A""#));
        assert!(!eval(r#"tags eq "c""#));
    }

    #[test]
    fn presence_requires_a_non_null_value() {
        assert!(!eval("nick pr"));
        assert!(eval("name pr"));
        assert!(!eval("missing pr"));
    }

    #[test]
    fn missing_field_comparison_is_false_and_its_negation_true() {
        assert!(!eval(r#"missing eq "x""#));
        assert!(eval(r#"!(missing eq "x")"#));
    }

    #[test]
    fn boolean_literal_matches_only_booleans() {
        assert!(eval("admin eq false"));
        assert!(!eval(r#"admin eq "false""#));
    }

    #[test]
    fn contains_on_numbers_is_equality() {
        assert!(eval("score co 2.5"));
        assert!(eval("score sw 2.5"));
        assert!(!eval("score co 2"));
    }

    #[test]
    fn string_ordering_ignores_case() {
        assert!(!eval(r#"name gt "ALICE""#));
        assert!(eval(r#"name lt "bob""#));
        assert!(eval(r#"name ge "ALICE""#));
        assert!(eval(r#"name le "alice""#));
        assert!(eval(r#"name gt "ALBERT""#));
    }

    #[test]
    fn id_is_an_ordinary_field() {
        let object = json!({"_id": "abc-123", "name": "x"});
        assert!(eval_on(r#"_id eq "abc-123""#, &object));
        assert!(eval_on(r#"/_id eq "ABC-123""#, &object));
        assert!(!eval_on(r#"_id eq "other""#, &object));
    }

    // ---- Null literal ----

    #[test]
    fn eq_null_matches_missing_null_and_arrays_with_null() {
        assert!(eval("missing eq null"));
        assert!(eval("nick eq null"));
        assert!(eval_on("list eq null", &json!({"list": [1, null]})));
        assert!(!eval_on("list eq null", &json!({"list": [1, 2]})));
        assert!(!eval_on("list eq null", &json!({"list": []})));
        assert!(!eval("name eq null"));
        assert!(!eval("admin eq null"));
        assert!(!eval_on("o eq null", &json!({"o": {}})));
    }

    #[test]
    fn other_operators_with_null_never_match() {
        for op in ["co", "sw", "gt", "ge", "lt", "le"] {
            assert!(!eval(&format!("nick {op} null")), "{op}");
            assert!(!eval(&format!("missing {op} null")), "{op}");
        }
    }

    #[test]
    fn negated_eq_null_matches_present_values() {
        assert!(eval("!(name eq null)"));
        assert!(!eval("!(nick eq null)"));
    }

    #[test]
    fn string_null_is_not_json_null() {
        assert!(!eval(r#"nick eq "null""#));
    }

    // ---- Presence ----

    #[test]
    fn empty_array_and_object_are_present() {
        let object = json!({"list": [], "map": {}, "zero": 0, "empty": ""});
        for field in ["list", "map", "zero", "empty"] {
            assert!(eval_on(&format!("{field} pr"), &object), "{field}");
        }
    }

    #[test]
    fn nested_presence_follows_the_pointer() {
        let object = json!({"a": {"b": null, "c": 1}, "list": [null, 2]});
        assert!(!eval_on("a/b pr", &object));
        assert!(eval_on("a/c pr", &object));
        assert!(!eval_on("a/d pr", &object));
        assert!(!eval_on("list/0 pr", &object));
        assert!(eval_on("list/1 pr", &object));
        assert!(!eval_on("list/2 pr", &object));
    }

    // ---- Kinds and candidates ----

    #[test]
    fn kinds_never_mix() {
        let object = json!({"n": 1, "s": "1", "b": true, "t": "true"});
        assert!(!eval_on(r#"n eq "1""#, &object));
        assert!(!eval_on("s eq 1", &object));
        assert!(!eval_on("b eq 1", &object));
        assert!(!eval_on(r#"b eq "true""#, &object));
        assert!(!eval_on("t eq true", &object));
        assert!(!eval_on("n eq true", &object));
        assert!(!eval_on(r#"s gt "0""#, &json!({"s": 5})));
    }

    #[test]
    fn integer_and_float_compare_as_doubles() {
        let object = json!({"i": 2, "f": 2.0, "big": 9_007_199_254_740_993_i64});
        assert!(eval_on("i eq 2.0", &object));
        assert!(eval_on("f eq 2", &object));
        assert!(eval_on("f ge 2", &object));
        assert!(eval_on("i lt 2.000001", &object));
        // Both sides become the same double.
        assert!(eval_on("big eq 9007199254740992", &object));
    }

    #[test]
    fn boolean_ordering_has_false_below_true() {
        let object = json!({"yes": true, "no": false});
        assert!(eval_on("yes gt false", &object));
        assert!(eval_on("no lt true", &object));
        assert!(!eval_on("yes lt true", &object));
        assert!(eval_on("yes ge true", &object));
        assert!(eval_on("no le false", &object));
        assert!(eval_on("yes co true", &object));
        assert!(!eval_on("yes sw false", &object));
    }

    #[test]
    fn array_candidates_are_one_level_and_containers_never_match() {
        let object = json!({"list": [["x"], {"k": "x"}, 3, "Y"]});
        assert!(!eval_on(r#"list eq "x""#, &object));
        assert!(eval_on(r#"list eq "y""#, &object));
        assert!(eval_on("list gt 2", &object));
        assert!(!eval_on("list gt 3", &object));
        assert!(eval_on(r#"list/0/0 eq "x""#, &object));
        assert!(eval_on(r#"list/1/k eq "X""#, &object));
    }

    #[test]
    fn object_valued_field_never_matches_a_comparison() {
        let object = json!({"o": {"a": 1}});
        assert!(!eval_on("o eq 1", &object));
        assert!(!eval_on(r#"o co "a""#, &object));
    }

    #[test]
    fn array_ordering_matches_if_any_element_does() {
        let object = json!({"scores": [1, 10]});
        assert!(eval_on("scores gt 5", &object));
        assert!(eval_on("scores lt 5", &object));
        assert!(!eval_on("scores gt 10", &object));
        assert!(eval_on("(scores gt 5 and scores lt 5)", &object));
    }

    #[test]
    fn strings_compare_by_byte_order_of_lowercase() {
        let object = json!({"s": "Zeta", "u": "ÄRGER", "d": "a10"});
        assert!(eval_on(r#"s gt "alpha""#, &object));
        assert!(eval_on(r#"s lt "{""#, &object));
        // Unicode lower-casing, not just ASCII.
        assert!(eval_on(r#"u eq "ärger""#, &object));
        assert!(eval_on(r#"u sw "äR""#, &object));
        // Byte order: "ä" (0xC3…) sorts after every ASCII letter.
        assert!(eval_on(r#"u gt "zzz""#, &object));
        assert!(eval_on(r#"d lt "a9""#, &object));
    }

    #[test]
    fn contains_and_starts_with_edge_cases() {
        let object = json!({"s": "Hello", "e": ""});
        assert!(eval_on(r#"s co """#, &object));
        assert!(eval_on(r#"s sw """#, &object));
        assert!(eval_on(r#"e co """#, &object));
        assert!(!eval_on(r#"e co "x""#, &object));
        assert!(eval_on(r#"s co "hello""#, &object));
        assert!(!eval_on(r#"s co "hello!""#, &object));
    }

    #[test]
    fn numeric_segment_on_object_is_a_key() {
        let object = json!({"m": {"0": "zero"}});
        assert!(eval_on(r#"m/0 eq "ZERO""#, &object));
    }

    // ---- Extended, negation, junctions ----

    #[test]
    fn extended_match_is_false_and_so_is_its_negation() {
        assert!(!eval(r#"name regex "al.*""#));
        assert!(!eval(r#"!(name regex "al.*")"#));
        assert!(!eval(r#"(name regex "x" or name eq "bob")"#));
        assert!(eval(r#"(name regex "x" or name eq "alice")"#));
    }

    #[test]
    fn double_negation_of_extended_is_plain_negation_of_false() {
        assert!(eval(r#"!(!(name regex "al.*"))"#));
    }

    #[test]
    fn constants_match_everything_or_nothing() {
        assert!(eval("true"));
        assert!(!eval("false"));
        assert!(eval_on("true", &json!({})));
        assert!(eval("!(false)"));
    }

    #[test]
    fn empty_junctions() {
        let object = alice();
        assert!(matches(&Filter::And(vec![]), &object));
        assert!(!matches(&Filter::Or(vec![]), &object));
    }

    #[test]
    fn junctions_combine_operands() {
        assert!(eval(r#"name eq "alice" and age eq 30"#));
        assert!(!eval(r#"name eq "alice" and age eq 31"#));
        assert!(eval(r#"name eq "bob" or age eq 30"#));
        assert!(!eval(r#"name eq "bob" or age eq 31"#));
        assert!(eval(r#"name eq "bob" or name eq "x" and age eq 31 or admin eq false"#));
    }

    #[test]
    fn root_pointer_addresses_the_whole_object() {
        assert!(eval("/ pr"));
        assert!(!eval(r#"/ eq "x""#));
        assert!(eval_on(r#"/ eq "x""#, &json!("X")));
    }

    #[test]
    fn float_and_integer_literals_built_directly() {
        let filter = Filter::Comparison {
            field: JsonPointer::parse("/score"),
            op: ComparisonOp::Eq,
            value: Literal::Float(2.5),
        };
        assert!(matches(&filter, &alice()));
        let nan = Filter::Comparison {
            field: JsonPointer::parse("/score"),
            op: ComparisonOp::Le,
            value: Literal::Float(f64::NAN),
        };
        assert!(!matches(&nan, &alice()));
    }
}
