//! The canonical string form of a filter (`Display`), used in logs and tests (idm-api §3.1,
//! idm-cases §A.3).
//!
//! * `true` / `false`;
//! * `<ptr> <op> <value>` and `<ptr> pr`, where the operator of an extended match is printed as
//!   written (`/name regex "al.*"`);
//! * And/Or as `(a and b and c)` / `(a or b)`; an empty And prints `true`, an empty Or `false`,
//!   and a single-operand And/Or prints just its operand;
//! * Not as `! (<sub>)`.
//!
//! Values: strings double-quoted with `"` and `\` backslash-escaped; integers bare; floats in
//! Rust's shortest round-trip form, always with a `.` (`5.0`, `3.14159`, `1.0e300`) so they
//! re-parse as floats, infinities as `1.0e999` / `-1.0e999` (which re-parse to the same
//! infinity) and NaN, which no filter text can produce, as `NaN`; booleans bare; null as `null`.
//!
//! Pointers print through [`JsonPointer`]'s `Display` (leading `/`, `%` and `/` inside a segment
//! escaped), with two additions so that the canonical form of any parsed filter re-parses to an
//! equal filter: a space, `(` or `)` inside a segment is percent-encoded (`%20`, `%28`, `%29`),
//! since the tokenizer would split there, and a pointer whose last segment is empty gets an
//! extra trailing `/`, since the pointer parser drops one trailing empty segment. Ordinary
//! pointers print exactly as `JsonPointer`'s `Display`.

use std::fmt::{self, Display, Formatter, Write as _};

use super::{Filter, Literal};
use crate::JsonPointer;

impl Display for Filter {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Filter::True => f.write_str("true"),
            Filter::False => f.write_str("false"),
            Filter::Comparison { field, op, value } => {
                write!(f, "{} {} {value}", Field(field), op.as_str())
            }
            Filter::Present(field) => write!(f, "{} pr", Field(field)),
            Filter::Extended { field, operator, value } => write!(f, "{} {operator} {value}", Field(field)),
            Filter::And(operands) => write_junction(f, operands, "and", "true"),
            Filter::Or(operands) => write_junction(f, operands, "or", "false"),
            Filter::Not(inner) => write!(f, "! ({inner})"),
        }
    }
}

/// Writes an n-ary And/Or: `empty` for no operand, the operand alone for one, otherwise the
/// operands joined by ` <connective> ` in parentheses.
fn write_junction(f: &mut Formatter<'_>, operands: &[Filter], connective: &str, empty: &str) -> fmt::Result {
    match operands {
        [] => f.write_str(empty),
        [only] => only.fmt(f),
        [first, rest @ ..] => {
            write!(f, "({first}")?;
            for operand in rest {
                write!(f, " {connective} {operand}")?;
            }
            f.write_str(")")
        }
    }
}

impl Display for Literal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(text) => write_quoted(f, text),
            Literal::Integer(number) => write!(f, "{number}"),
            Literal::Float(number) => write_float(f, *number),
            Literal::Boolean(flag) => write!(f, "{flag}"),
            Literal::Null => f.write_str("null"),
        }
    }
}

/// Writes `text` double-quoted, with `"` and `\` backslash-escaped.
fn write_quoted(f: &mut Formatter<'_>, text: &str) -> fmt::Result {
    f.write_char('"')?;
    for ch in text.chars() {
        if matches!(ch, '"' | '\\') {
            f.write_char('\\')?;
        }
        f.write_char(ch)?;
    }
    f.write_char('"')
}

/// Writes a float so that it re-parses as the same float: always with a `.` when finite.
fn write_float(f: &mut Formatter<'_>, number: f64) -> fmt::Result {
    if number.is_nan() {
        return f.write_str("NaN");
    }
    if number.is_infinite() {
        return f.write_str(if number > 0.0 { "1.0e999" } else { "-1.0e999" });
    }
    // `Debug` is the shortest text that round-trips; it has a `.` except in exponent form.
    let text = format!("{number:?}");
    if text.contains('.') {
        f.write_str(&text)
    } else if let Some((mantissa, exponent)) = text.split_once('e') {
        write!(f, "{mantissa}.0e{exponent}")
    } else {
        write!(f, "{text}.0")
    }
}

/// A pointer as printed in a filter (see the module documentation).
struct Field<'a>(&'a JsonPointer);

impl Display for Field<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for ch in self.0.to_string().chars() {
            match ch {
                ' ' => f.write_str("%20")?,
                '(' => f.write_str("%28")?,
                ')' => f.write_str("%29")?,
                _ => f.write_char(ch)?,
            }
        }
        if self.0.leaf() == Some("") {
            f.write_char('/')?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ComparisonOp, parse};
    use super::*;

    fn pointer(text: &str) -> JsonPointer {
        JsonPointer::parse(text)
    }

    fn string(text: &str) -> Literal {
        Literal::String(text.to_owned())
    }

    fn comparison(field: &str, op: ComparisonOp, value: Literal) -> Filter {
        Filter::Comparison {
            field: pointer(field),
            op,
            value,
        }
    }

    fn eq(field: &str, value: Literal) -> Filter {
        comparison(field, ComparisonOp::Eq, value)
    }

    fn not(filter: Filter) -> Filter {
        Filter::Not(Box::new(filter))
    }

    #[track_caller]
    fn assert_reparses(filter: &Filter) {
        let text = filter.to_string();
        assert_eq!(parse(&text).as_ref(), Ok(filter), "{text:?}");
    }

    // ---- A.3 ----

    #[test]
    fn true_and_false_print_as_keywords() {
        assert_eq!(Filter::True.to_string(), "true");
        assert_eq!(Filter::False.to_string(), "false");
    }

    #[test]
    #[expect(clippy::approx_constant, reason = "3.14159 is the upstream test value, not pi")]
    fn equality_prints_each_value_kind() {
        assert_eq!(eq("/name", string("alice")).to_string(), "/name eq \"alice\"");
        assert_eq!(eq("/age", Literal::Integer(1234)).to_string(), "/age eq 1234");
        assert_eq!(
            eq("/balance", Literal::Float(3.14159)).to_string(),
            "/balance eq 3.14159"
        );
        assert_eq!(eq("/isAdmin", Literal::Boolean(false)).to_string(), "/isAdmin eq false");
    }

    #[test]
    fn every_operator_prints_its_word() {
        let cases = [
            (ComparisonOp::Lt, "/age lt 1234"),
            (ComparisonOp::Le, "/age le 1234"),
            (ComparisonOp::Gt, "/age gt 1234"),
            (ComparisonOp::Ge, "/age ge 1234"),
            (ComparisonOp::Co, "/age co 1234"),
            (ComparisonOp::Sw, "/age sw 1234"),
        ];
        for (op, expected) in cases {
            assert_eq!(comparison("/age", op, Literal::Integer(1234)).to_string(), expected);
        }
        assert_eq!(
            comparison("/name", ComparisonOp::Sw, string("al")).to_string(),
            "/name sw \"al\""
        );
    }

    #[test]
    fn presence_prints_pr() {
        assert_eq!(Filter::Present(pointer("/name")).to_string(), "/name pr");
    }

    #[test]
    fn empty_or_prints_false_and_empty_and_prints_true() {
        assert_eq!(Filter::Or(vec![]).to_string(), "false");
        assert_eq!(Filter::And(vec![]).to_string(), "true");
    }

    #[test]
    fn single_operand_junction_prints_just_the_operand() {
        let only = eq("/age", Literal::Integer(1));
        assert_eq!(Filter::Or(vec![only.clone()]).to_string(), "/age eq 1");
        assert_eq!(Filter::And(vec![only]).to_string(), "/age eq 1");
    }

    #[test]
    fn or_and_and_print_parenthesised() {
        let operands = vec![
            comparison("/age", ComparisonOp::Lt, Literal::Integer(18)),
            comparison("/age", ComparisonOp::Gt, Literal::Integer(30)),
        ];
        assert_eq!(Filter::Or(operands.clone()).to_string(), "(/age lt 18 or /age gt 30)");
        assert_eq!(Filter::And(operands).to_string(), "(/age lt 18 and /age gt 30)");
    }

    #[test]
    fn nested_junctions_print_nested_parentheses() {
        let filter = Filter::Or(vec![
            eq("/role", string("a")),
            Filter::And(vec![eq("/role", string("b")), eq("/role", string("c"))]),
        ]);
        assert_eq!(
            filter.to_string(),
            "(/role eq \"a\" or (/role eq \"b\" and /role eq \"c\"))"
        );
    }

    #[test]
    fn negation_prints_bang_and_parentheses() {
        let inner = eq("/age", Literal::Integer(1234));
        assert_eq!(not(inner.clone()).to_string(), "! (/age eq 1234)");
        assert_eq!(not(not(inner)).to_string(), "! (! (/age eq 1234))");
    }

    #[test]
    fn extended_match_prints_its_operator_word() {
        let regex = Filter::Extended {
            field: pointer("/name"),
            operator: "regex".to_owned(),
            value: string("al.*"),
        };
        assert_eq!(regex.to_string(), "/name regex \"al.*\"");
        let extended_eq = Filter::Extended {
            field: pointer("/name"),
            operator: "eq".to_owned(),
            value: string("alice"),
        };
        assert_eq!(extended_eq.to_string(), eq("/name", string("alice")).to_string());
    }

    // ---- Values ----

    #[test]
    fn strings_escape_quote_and_backslash_only() {
        assert_eq!(string("a\"b\\c'd\ne").to_string(), "\"a\\\"b\\\\c'd\ne\"");
        assert_eq!(string("").to_string(), "\"\"");
    }

    #[test]
    fn floats_always_print_with_a_dot() {
        let cases = [
            (5.0, "5.0"),
            (-5.0, "-5.0"),
            (0.0, "0.0"),
            (1.25, "1.25"),
            (0.3, "0.3"),
            (0.1, "0.1"),
            (1e300, "1.0e300"),
            (1.5e300, "1.5e300"),
            (1e-7, "1.0e-7"),
            (-2.5e-10, "-2.5e-10"),
            (f64::INFINITY, "1.0e999"),
            (f64::NEG_INFINITY, "-1.0e999"),
            (f64::NAN, "NaN"),
        ];
        for (number, expected) in cases {
            assert_eq!(Literal::Float(number).to_string(), expected, "{number:?}");
        }
    }

    #[test]
    fn integers_booleans_and_null_print_bare() {
        assert_eq!(Literal::Integer(-42).to_string(), "-42");
        assert_eq!(Literal::Integer(i64::MIN).to_string(), "-9223372036854775808");
        assert_eq!(Literal::Boolean(true).to_string(), "true");
        assert_eq!(Literal::Null.to_string(), "null");
    }

    #[test]
    fn floats_reparse_as_equal_floats() {
        for number in [5.0, 0.1 + 0.2, 1e300, 1e-7, f64::MAX, f64::MIN_POSITIVE, 1e16] {
            assert_reparses(&eq("/x", Literal::Float(number)));
        }
        assert_reparses(&eq("/x", Literal::Float(f64::INFINITY)));
        assert_reparses(&eq("/x", Literal::Float(f64::NEG_INFINITY)));
    }

    // ---- Pointers ----

    #[test]
    fn root_pointer_prints_as_slash() {
        assert_eq!(Filter::Present(pointer("")).to_string(), "/ pr");
        assert_reparses(&Filter::Present(pointer("")));
    }

    #[test]
    fn pointer_escapes_match_json_pointer_display() {
        let field = JsonPointer::from_segments(["a/b", "c%d"]);
        assert_eq!(Filter::Present(field.clone()).to_string(), format!("{field} pr"));
        assert_reparses(&Filter::Present(field));
    }

    #[test]
    fn pointer_with_space_or_parenthesis_is_percent_encoded() {
        let field = JsonPointer::from_segments(["a b", "(c)"]);
        assert_eq!(Filter::Present(field.clone()).to_string(), "/a%20b/%28c%29 pr");
        assert_reparses(&Filter::Present(field));
    }

    #[test]
    fn pointer_ending_with_empty_segment_keeps_it() {
        for segments in [vec!["a", ""], vec![""], vec!["", ""], vec!["", "a"]] {
            assert_reparses(&Filter::Present(JsonPointer::from_segments(segments)));
        }
        assert_eq!(
            Filter::Present(JsonPointer::from_segments(["a", ""])).to_string(),
            "/a// pr"
        );
    }

    #[test]
    fn parsed_filters_print_canonically() {
        let cases = [
            ("name eq 'alice'", "/name eq \"alice\""),
            ("NAME EQ 'al\"ice'", "/NAME eq \"al\\\"ice\""),
            ("a pr AND b pr OR c pr", "((/a pr and /b pr) or /c pr)"),
            ("!(a eq 5.0)", "! (/a eq 5.0)"),
            ("! (a pr and b pr)", "! ((/a pr and /b pr))"),
            ("a REGEX null", "/a REGEX null"),
            ("(((TRUE)))", "true"),
        ];
        for (text, expected) in cases {
            match parse(text) {
                Ok(filter) => assert_eq!(filter.to_string(), expected, "{text:?}"),
                Err(error) => panic!("{text:?} should parse, got {error:?}"),
            }
        }
    }
}
