//! The `_queryFilter` parser (idm-api §3.1).
//!
//! ```text
//! Expr        := OrExpr
//! OrExpr      := AndExpr ( "or" AndExpr )*
//! AndExpr     := NotExpr ( "and" NotExpr )*
//! NotExpr     := "!" PrimaryExpr | PrimaryExpr
//! PrimaryExpr := "(" OrExpr ")" | "true" | "false"
//!              | Pointer "pr"
//!              | Pointer Operator Value
//! Operator    := "eq" | "co" | "sw" | "gt" | "ge" | "lt" | "le" | ExtOp
//! ExtOp       := [a-zA-Z_0-9.]+            (any other word: extended match)
//! Value       := "\"" chars "\"" | "'" chars "'" | "true" | "false" | "null" | Number
//! ```
//!
//! Tokenizer, as upstream's:
//!
//! * only the space character separates tokens; tabs and newlines are ordinary characters;
//! * `(` and `)` are tokens by themselves; any other unquoted token runs until a space, `(`
//!   or `)` (so `!(a pr)` is `!`, `(`, `a`, `pr`, `)`, but `!a` is the single word `!a`);
//! * a token starting with `"` or `'` is a string closed by the same character; inside it a
//!   backslash is dropped and the next character taken literally (`\n` is `n`); the other
//!   quote character needs no escape; a backslash ending the input is an error.
//!
//! Keywords (`and`, `or`, `true`, `false`, `null`, `pr`) and operators are case-insensitive;
//! `!` is the only negation (the word `not` is a field name like any other). An unquoted value
//! is a boolean (`true`/`false`), `null` (our addition), a float when it contains a `.`, and
//! otherwise must be a 64-bit integer. `and` binds tighter than `or`; a chain of the same
//! connective flattens into one n-ary node, a single operand is not wrapped, and parentheses
//! around one expression add no node. Tokens left after a complete expression are an error.
//!
//! Deviation from upstream: a quoted string where a field or an operator is expected is an
//! error (upstream's tokenizer treats a leading `'` there as a field name).
//!
//! Limits: the text may be at most `max_length` bytes ([`FilterError::TooLong`]), and every
//! `(`…`)` group and every `!` counts as one nesting level, at most `max_depth` of them
//! ([`FilterError::TooDeep`]). The depth is checked before recursing, so the recursion is
//! bounded by `max_depth` whatever the input.

use std::iter::Peekable;
use std::vec::IntoIter;

use super::{ComparisonOp, Filter, Literal};
use crate::JsonPointer;

/// Longest filter text accepted, in bytes.
pub const MAX_FILTER_LENGTH: usize = 16 * 1024;
/// Deepest nesting accepted: every `(`…`)` group and every `!` is one level.
pub const MAX_FILTER_DEPTH: usize = 256;

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Not a valid filter (any syntax error).
    #[error("invalid query filter")]
    Invalid,
    /// The text is longer than the accepted maximum.
    #[error("query filter longer than {max} bytes")]
    TooLong {
        /// The maximum length, in bytes.
        max: usize,
    },
    /// The filter nests `(`…`)` groups and `!` deeper than the accepted maximum.
    #[error("query filter nested deeper than {max} levels")]
    TooDeep {
        /// The maximum depth.
        max: usize,
    },
}

/// Parses a filter with the default limits ([`MAX_FILTER_LENGTH`], [`MAX_FILTER_DEPTH`]).
pub fn parse(text: &str) -> Result<Filter, FilterError> {
    parse_with_limits(text, MAX_FILTER_LENGTH, MAX_FILTER_DEPTH)
}

/// Parses a filter with explicit limits: at most `max_length` bytes of text and at most
/// `max_depth` nesting levels (each `(`…`)` group and each `!` is one level).
///
/// The parser recurses once per nesting level, so `max_depth` also bounds its stack use;
/// callers should keep it in the hundreds.
pub fn parse_with_limits(text: &str, max_length: usize, max_depth: usize) -> Result<Filter, FilterError> {
    if text.len() > max_length {
        return Err(FilterError::TooLong { max: max_length });
    }
    let mut parser = Parser {
        tokens: tokenize(text)?.into_iter().peekable(),
        max_depth,
    };
    let filter = parser.or_expr(0)?;
    match parser.tokens.next() {
        None => Ok(filter),
        Some(_) => Err(FilterError::Invalid),
    }
}

/// One token of filter text.
#[derive(Debug, Clone, PartialEq)]
enum Token<'a> {
    /// `(`
    Open,
    /// `)`
    Close,
    /// An unquoted word, as written.
    Word(&'a str),
    /// A quoted string, with its escapes resolved.
    Quoted(String),
}

impl Token<'_> {
    /// True for an unquoted word equal to `keyword`, ignoring ASCII case.
    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self, Token::Word(word) if word.eq_ignore_ascii_case(keyword))
    }
}

/// Splits filter text into tokens.
fn tokenize(text: &str) -> Result<Vec<Token<'_>>, FilterError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        match c {
            ' ' => {}
            '(' => tokens.push(Token::Open),
            ')' => tokens.push(Token::Close),
            '"' | '\'' => {
                let mut string = String::new();
                loop {
                    match chars.next() {
                        None => return Err(FilterError::Invalid),
                        Some((_, '\\')) => match chars.next() {
                            Some((_, escaped)) => string.push(escaped),
                            None => return Err(FilterError::Invalid),
                        },
                        Some((_, ch)) if ch == c => break,
                        Some((_, ch)) => string.push(ch),
                    }
                }
                tokens.push(Token::Quoted(string));
            }
            _ => {
                let mut end = text.len();
                while let Some(&(index, ch)) = chars.peek() {
                    if matches!(ch, ' ' | '(' | ')') {
                        end = index;
                        break;
                    }
                    chars.next();
                }
                tokens.push(Token::Word(&text[start..end]));
            }
        }
    }
    // Outside a string a backslash is an ordinary character, but the input may never end
    // with one (upstream's rule; such a text could not be valid anyway).
    if text.ends_with('\\') {
        return Err(FilterError::Invalid);
    }
    Ok(tokens)
}

/// Recursive-descent parser over the token stream.
struct Parser<'a> {
    tokens: Peekable<IntoIter<Token<'a>>>,
    max_depth: usize,
}

impl<'a> Parser<'a> {
    /// The depth one level below `depth`, or [`FilterError::TooDeep`].
    fn enter(&self, depth: usize) -> Result<usize, FilterError> {
        let next = depth.saturating_add(1);
        if next > self.max_depth {
            Err(FilterError::TooDeep { max: self.max_depth })
        } else {
            Ok(next)
        }
    }

    /// Consumes the next token if it is the unquoted `keyword`.
    fn eat_keyword(&mut self, keyword: &str) -> bool {
        self.tokens.next_if(|token| token.is_keyword(keyword)).is_some()
    }

    /// `OrExpr := AndExpr ( "or" AndExpr )*`
    fn or_expr(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let first = self.and_expr(depth)?;
        if !self.eat_keyword("or") {
            return Ok(first);
        }
        let mut operands = vec![first, self.and_expr(depth)?];
        while self.eat_keyword("or") {
            operands.push(self.and_expr(depth)?);
        }
        Ok(Filter::Or(operands))
    }

    /// `AndExpr := NotExpr ( "and" NotExpr )*`
    fn and_expr(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let first = self.not_expr(depth)?;
        if !self.eat_keyword("and") {
            return Ok(first);
        }
        let mut operands = vec![first, self.not_expr(depth)?];
        while self.eat_keyword("and") {
            operands.push(self.not_expr(depth)?);
        }
        Ok(Filter::And(operands))
    }

    /// `NotExpr := "!" PrimaryExpr | PrimaryExpr`
    fn not_expr(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if self.eat_keyword("!") {
            let inner = self.enter(depth)?;
            Ok(Filter::Not(Box::new(self.primary_expr(inner)?)))
        } else {
            self.primary_expr(depth)
        }
    }

    /// `PrimaryExpr := "(" OrExpr ")" | "true" | "false" | Pointer "pr" | Pointer Operator Value`
    fn primary_expr(&mut self, depth: usize) -> Result<Filter, FilterError> {
        match self.tokens.next() {
            Some(Token::Open) => {
                let inner = self.enter(depth)?;
                let filter = self.or_expr(inner)?;
                match self.tokens.next() {
                    Some(Token::Close) => Ok(filter),
                    _ => Err(FilterError::Invalid),
                }
            }
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("true") => Ok(Filter::True),
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("false") => Ok(Filter::False),
            Some(Token::Word(field)) => self.assertion(JsonPointer::parse(field)),
            Some(Token::Close | Token::Quoted(_)) | None => Err(FilterError::Invalid),
        }
    }

    /// The rest of an assertion once its field has been read: `"pr"` or `Operator Value`.
    fn assertion(&mut self, field: JsonPointer) -> Result<Filter, FilterError> {
        let operator = match self.tokens.next() {
            Some(Token::Word(word)) => word,
            _ => return Err(FilterError::Invalid),
        };
        if operator.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(field));
        }
        let value = match self.tokens.next() {
            Some(token) => literal(token)?,
            None => return Err(FilterError::Invalid),
        };
        if let Some(op) = ComparisonOp::from_word(operator) {
            Ok(Filter::Comparison { field, op, value })
        } else if is_extended_operator(operator) {
            Ok(Filter::Extended {
                field,
                operator: operator.to_owned(),
                value,
            })
        } else {
            Err(FilterError::Invalid)
        }
    }
}

/// True when `word` may name an extended operator: `[a-zA-Z_0-9.]+`.
fn is_extended_operator(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// The literal a value token stands for.
fn literal(token: Token<'_>) -> Result<Literal, FilterError> {
    match token {
        Token::Quoted(string) => Ok(Literal::String(string)),
        Token::Word(word) if word.eq_ignore_ascii_case("true") => Ok(Literal::Boolean(true)),
        Token::Word(word) if word.eq_ignore_ascii_case("false") => Ok(Literal::Boolean(false)),
        Token::Word(word) if word.eq_ignore_ascii_case("null") => Ok(Literal::Null),
        Token::Word(word) if word.contains('.') => word
            .parse::<f64>()
            .map(Literal::Float)
            .map_err(|_| FilterError::Invalid),
        Token::Word(word) => word
            .parse::<i64>()
            .map(Literal::Integer)
            .map_err(|_| FilterError::Invalid),
        Token::Open | Token::Close => Err(FilterError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
    fn parsed(text: &str) -> Filter {
        match parse(text) {
            Ok(filter) => filter,
            Err(error) => panic!("{text:?} should parse, got {error:?}"),
        }
    }

    #[track_caller]
    fn assert_invalid(text: &str) {
        assert_eq!(parse(text), Err(FilterError::Invalid), "{text:?}");
    }

    // ---- A.1: rejected inputs ----

    #[test]
    fn rejects_empty_string() {
        assert_invalid("");
        assert_invalid("   ");
    }

    #[test]
    fn rejects_lone_open_parenthesis() {
        assert_invalid("(");
    }

    #[test]
    fn rejects_lone_close_parenthesis() {
        assert_invalid(")");
    }

    #[test]
    fn rejects_empty_parentheses() {
        assert_invalid("()");
    }

    #[test]
    fn rejects_bare_word_without_operator() {
        assert_invalid("xxx");
    }

    #[test]
    fn rejects_and_of_bare_words() {
        assert_invalid("x and y");
    }

    #[test]
    fn rejects_or_of_bare_words() {
        assert_invalid("x or y");
    }

    #[test]
    fn rejects_and_without_right_operand() {
        assert_invalid("true and");
    }

    #[test]
    fn rejects_or_without_right_operand() {
        assert_invalid("true or");
    }

    #[test]
    fn rejects_and_chain_without_last_operand() {
        assert_invalid("true and true and");
    }

    #[test]
    fn rejects_or_chain_without_last_operand() {
        assert_invalid("true or false or");
    }

    #[test]
    fn rejects_unknown_bare_word_nt() {
        assert_invalid("nt");
    }

    #[test]
    fn rejects_unquoted_string_value() {
        assert_invalid("foo eq bar");
    }

    #[test]
    fn rejects_unterminated_string() {
        assert_invalid("foo eq \"bar");
        assert_invalid("foo eq 'bar");
        assert_invalid("foo eq 'bar\"");
    }

    #[test]
    fn rejects_value_with_only_a_closing_quote() {
        assert_invalid("foo eq bar\"");
    }

    #[test]
    fn rejects_missing_value() {
        assert_invalid("foo eq");
    }

    #[test]
    fn rejects_trailing_token_after_presence() {
        assert_invalid("foo pr 123");
    }

    #[test]
    fn rejects_trailing_token_after_true() {
        assert_invalid("true foo");
    }

    #[test]
    fn rejects_operator_containing_bang() {
        assert_invalid("name op! 123");
    }

    #[test]
    fn rejects_input_ending_with_backslash() {
        assert_invalid("name op! 123\\");
        assert_invalid("name eq \"abc\\");
        assert_invalid("name eq 1\\");
    }

    #[test]
    fn rejects_word_not_as_negation() {
        assert_invalid("not (age eq 1)");
        assert_invalid("not x eq 1");
    }

    #[test]
    fn rejects_nesting_deeper_than_256_levels() {
        let deep = format!("{}a pr{}", "(".repeat(257), ")".repeat(257));
        assert_eq!(parse(&deep), Err(FilterError::TooDeep { max: 256 }));
    }

    #[test]
    fn rejects_number_with_two_dots() {
        assert_invalid("a eq 1.2.3");
    }

    #[test]
    fn rejects_integer_with_trailing_letters() {
        assert_invalid("a eq 12abc");
    }

    // ---- A.2: accepted inputs and their trees ----

    #[test]
    fn parses_true() {
        assert_eq!(parsed("true"), Filter::True);
    }

    #[test]
    fn parses_false() {
        assert_eq!(parsed("false"), Filter::False);
    }

    #[test]
    fn parses_double_quoted_string_equality() {
        assert_eq!(parsed("/name eq \"alice\""), eq("/name", string("alice")));
    }

    #[test]
    fn parses_single_quoted_string_equality() {
        assert_eq!(parsed("/name eq 'alice'"), eq("/name", string("alice")));
    }

    #[test]
    fn escaped_double_quote_inside_double_quotes() {
        assert_eq!(parsed(r#"/name eq "al\"ice""#), eq("/name", string("al\"ice")));
    }

    #[test]
    fn single_quote_inside_double_quotes_needs_no_escape() {
        assert_eq!(parsed(r#"/name eq "al'ice""#), eq("/name", string("al'ice")));
    }

    #[test]
    fn double_quote_inside_single_quotes_needs_no_escape() {
        assert_eq!(parsed(r#"/name eq 'al"ice'"#), eq("/name", string("al\"ice")));
    }

    #[test]
    fn escaped_single_quote_inside_single_quotes() {
        assert_eq!(parsed(r"/name eq 'al\'ice'"), eq("/name", string("al'ice")));
    }

    #[test]
    fn escaped_backslash_is_one_backslash() {
        assert_eq!(parsed(r#"/name eq "\\alice""#), eq("/name", string("\\alice")));
    }

    #[test]
    fn backslash_before_real_newline_keeps_the_newline() {
        assert_eq!(parsed("/name eq \"al\\\nice\""), eq("/name", string("al\nice")));
    }

    #[test]
    fn parses_integer_value() {
        assert_eq!(parsed("/age eq 1234"), eq("/age", Literal::Integer(1234)));
    }

    #[test]
    #[expect(clippy::approx_constant, reason = "3.14159 is the upstream test value, not pi")]
    fn parses_float_value() {
        assert_eq!(parsed("/balance eq 3.14159"), eq("/balance", Literal::Float(3.14159)));
    }

    #[test]
    fn parses_boolean_value() {
        assert_eq!(parsed("/isAdmin eq false"), eq("/isAdmin", Literal::Boolean(false)));
    }

    #[test]
    fn parses_ordering_operators() {
        for (word, op) in [
            ("lt", ComparisonOp::Lt),
            ("le", ComparisonOp::Le),
            ("gt", ComparisonOp::Gt),
            ("ge", ComparisonOp::Ge),
        ] {
            assert_eq!(
                parsed(&format!("/age {word} 1234")),
                comparison("/age", op, Literal::Integer(1234))
            );
        }
    }

    #[test]
    fn parses_contains_with_either_quote() {
        let expected = comparison("/name", ComparisonOp::Co, string("al"));
        assert_eq!(parsed("/name co \"al\""), expected);
        assert_eq!(parsed("/name co 'al'"), expected);
    }

    #[test]
    fn parses_starts_with_with_either_quote() {
        let expected = comparison("/name", ComparisonOp::Sw, string("al"));
        assert_eq!(parsed("/name sw \"al\""), expected);
        assert_eq!(parsed("/name sw 'al'"), expected);
    }

    #[test]
    fn parses_presence() {
        assert_eq!(parsed("/name pr"), Filter::Present(pointer("/name")));
    }

    #[test]
    fn parses_parenthesised_or() {
        assert_eq!(
            parsed("(/age lt 18 or /age gt 30)"),
            Filter::Or(vec![
                comparison("/age", ComparisonOp::Lt, Literal::Integer(18)),
                comparison("/age", ComparisonOp::Gt, Literal::Integer(30)),
            ])
        );
    }

    #[test]
    fn parses_parenthesised_and() {
        assert_eq!(
            parsed("(/age lt 18 and /age gt 30)"),
            Filter::And(vec![
                comparison("/age", ComparisonOp::Lt, Literal::Integer(18)),
                comparison("/age", ComparisonOp::Gt, Literal::Integer(30)),
            ])
        );
    }

    #[test]
    fn or_chain_flattens_to_one_node() {
        assert_eq!(
            parsed(r#"(/role eq "a" or /role eq "b" or /role eq "c")"#),
            Filter::Or(vec![
                eq("/role", string("a")),
                eq("/role", string("b")),
                eq("/role", string("c")),
            ])
        );
    }

    #[test]
    fn and_chain_flattens_to_one_node() {
        assert_eq!(
            parsed(r#"(/role eq "a" and /role eq "b" and /role eq "c")"#),
            Filter::And(vec![
                eq("/role", string("a")),
                eq("/role", string("b")),
                eq("/role", string("c")),
            ])
        );
    }

    #[test]
    fn parenthesised_and_nests_inside_or() {
        assert_eq!(
            parsed(r#"(/role eq "a" or (/role eq "b" and /role eq "c"))"#),
            Filter::Or(vec![
                eq("/role", string("a")),
                Filter::And(vec![eq("/role", string("b")), eq("/role", string("c"))]),
            ])
        );
    }

    #[test]
    fn parenthesised_or_nests_inside_and() {
        let expected = Filter::And(vec![
            eq("/role", string("a")),
            Filter::Or(vec![eq("/role", string("b")), eq("/role", string("c"))]),
        ]);
        assert_eq!(parsed(r#"(/role eq "a" and (/role eq "b" or /role eq "c"))"#), expected);
        assert_eq!(parsed("(/role eq 'a' and (/role eq 'b' or /role eq 'c'))"), expected);
    }

    #[test]
    fn parses_negation() {
        assert_eq!(parsed("! (/age eq 1234)"), not(eq("/age", Literal::Integer(1234))));
    }

    #[test]
    fn parses_double_negation() {
        assert_eq!(
            parsed("! (! (/age eq 1234))"),
            not(not(eq("/age", Literal::Integer(1234))))
        );
    }

    #[test]
    fn unknown_operator_word_is_extended_match() {
        let expected = Filter::Extended {
            field: pointer("/name"),
            operator: "regex".to_owned(),
            value: string("al.*"),
        };
        assert_eq!(parsed("/name regex \"al.*\""), expected);
        assert_eq!(parsed("/name regex 'al.*'"), expected);
    }

    #[test]
    fn field_without_leading_slash_is_the_same_pointer() {
        assert_eq!(parsed("name eq 'alice'"), parsed("/name eq 'alice'"));
        assert_eq!(parsed("name eq 'alice'"), eq("/name", string("alice")));
    }

    #[test]
    fn field_with_array_index_segment() {
        assert_eq!(parsed("admin/0 eq 'alice'"), eq("/admin/0", string("alice")));
    }

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            parsed(r#"userName eq "x" or givenName eq "y" and sn eq "z""#),
            Filter::Or(vec![
                eq("/userName", string("x")),
                Filter::And(vec![eq("/givenName", string("y")), eq("/sn", string("z"))]),
            ])
        );
    }

    #[test]
    fn bang_directly_followed_by_parenthesis() {
        assert_eq!(parsed(r#"!(userName eq "jdoe")"#), not(eq("/userName", string("jdoe"))));
    }

    #[test]
    fn operator_is_case_insensitive_and_field_case_preserved() {
        assert_eq!(parsed(r#"USERNAME EQ "x""#), eq("/USERNAME", string("x")));
    }

    #[test]
    fn unquoted_true_is_boolean_and_quoted_true_is_string() {
        assert_eq!(parsed("a eq TRUE"), eq("/a", Literal::Boolean(true)));
        assert_eq!(parsed(r#"a eq "true""#), eq("/a", string("true")));
    }

    #[test]
    fn true_and_false_keywords_are_case_insensitive() {
        assert_eq!(parsed("TRUE"), Filter::True);
        assert_eq!(parsed("False"), Filter::False);
    }

    #[test]
    fn negative_integer_and_float_with_zero_fraction() {
        assert_eq!(parsed("a eq -5"), eq("/a", Literal::Integer(-5)));
        assert_eq!(parsed("a eq 5.0"), eq("/a", Literal::Float(5.0)));
    }

    #[test]
    fn backslash_n_in_string_is_plain_n() {
        assert_eq!(parsed(r#"a eq "x\ny""#), eq("/a", string("xny")));
    }

    #[test]
    fn multiple_spaces_separate_tokens() {
        assert_eq!(parsed("a  eq   \"b\""), eq("/a", string("b")));
    }

    #[test]
    fn space_inside_string_is_kept() {
        assert_eq!(parsed("a eq \"b c\""), eq("/a", string("b c")));
    }

    #[test]
    fn parentheses_around_one_expression_add_no_node() {
        assert_eq!(parsed("(a pr)"), Filter::Present(pointer("/a")));
        assert_eq!(parsed("(((a pr)))"), Filter::Present(pointer("/a")));
    }

    #[test]
    fn trailing_space_is_allowed() {
        assert_eq!(parsed("a eq \"b\" "), eq("/a", string("b")));
    }

    // ---- Additions and edge cases ----

    #[test]
    fn unquoted_null_is_null_literal_in_any_case() {
        assert_eq!(parsed("a eq null"), eq("/a", Literal::Null));
        assert_eq!(parsed("a eq NULL"), eq("/a", Literal::Null));
        assert_eq!(parsed("a eq \"null\""), eq("/a", string("null")));
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(
            parsed("a PR AND b Pr OR c pR"),
            Filter::Or(vec![
                Filter::And(vec![Filter::Present(pointer("/a")), Filter::Present(pointer("/b")),]),
                Filter::Present(pointer("/c")),
            ])
        );
    }

    #[test]
    fn empty_quoted_string_is_empty_value() {
        assert_eq!(parsed("a eq \"\""), eq("/a", string("")));
        assert_eq!(parsed("a eq ''"), eq("/a", string("")));
    }

    #[test]
    fn parentheses_inside_strings_are_literal() {
        assert_eq!(parsed("a eq \"(x) \""), eq("/a", string("(x) ")));
    }

    #[test]
    fn tabs_and_newlines_do_not_separate_tokens() {
        assert_invalid("a\teq 1");
        assert_invalid("a eq\n1");
    }

    #[test]
    fn bang_glued_to_a_word_is_part_of_the_field() {
        assert_eq!(parsed("!a eq 1"), eq("/!a", Literal::Integer(1)));
    }

    #[test]
    fn negation_applies_to_an_unparenthesised_assertion() {
        assert_eq!(
            parsed("! a eq 1 and b pr"),
            Filter::And(vec![not(eq("/a", Literal::Integer(1))), Filter::Present(pointer("/b")),])
        );
    }

    #[test]
    fn double_bang_without_parentheses_is_invalid() {
        assert_invalid("! ! a pr");
    }

    #[test]
    fn parenthesised_chain_is_not_flattened_into_outer_chain() {
        assert_eq!(
            parsed("a pr and (b pr and c pr)"),
            Filter::And(vec![
                Filter::Present(pointer("/a")),
                Filter::And(vec![Filter::Present(pointer("/b")), Filter::Present(pointer("/c")),]),
            ])
        );
    }

    #[test]
    fn quoted_field_or_operator_is_invalid() {
        assert_invalid("\"name\" eq 1");
        assert_invalid("'name' eq 1");
        assert_invalid("name \"eq\" 1");
    }

    #[test]
    fn unbalanced_parentheses_are_invalid() {
        assert_invalid("(a pr");
        assert_invalid("a pr)");
        assert_invalid("(a pr))");
        assert_invalid("((a pr)");
    }

    #[test]
    fn parenthesis_in_operator_or_value_position_is_invalid() {
        assert_invalid("a ( 1");
        assert_invalid("a eq (1)");
    }

    #[test]
    fn extended_operator_may_contain_dots_digits_and_underscores() {
        assert_eq!(
            parsed("a my_op.v2 5"),
            Filter::Extended {
                field: pointer("/a"),
                operator: "my_op.v2".to_owned(),
                value: Literal::Integer(5),
            }
        );
    }

    #[test]
    fn extended_operator_keeps_its_spelling() {
        assert_eq!(
            parsed("a ReGeX null"),
            Filter::Extended {
                field: pointer("/a"),
                operator: "ReGeX".to_owned(),
                value: Literal::Null,
            }
        );
    }

    #[test]
    fn integer_out_of_range_is_invalid() {
        assert_eq!(parsed("a eq 9223372036854775807"), eq("/a", Literal::Integer(i64::MAX)));
        assert_eq!(
            parsed("a eq -9223372036854775808"),
            eq("/a", Literal::Integer(i64::MIN))
        );
        assert_invalid("a eq 9223372036854775808");
    }

    #[test]
    fn float_forms_with_a_dot() {
        assert_eq!(parsed("a eq .5"), eq("/a", Literal::Float(0.5)));
        assert_eq!(parsed("a eq 1.5e3"), eq("/a", Literal::Float(1500.0)));
        assert_eq!(parsed("a eq -0.25"), eq("/a", Literal::Float(-0.25)));
        assert_invalid("a eq 1e3");
        assert_invalid("a eq .");
    }

    #[test]
    fn multibyte_characters_in_strings_and_escapes() {
        assert_eq!(parsed("a eq \"é\\ü\""), eq("/a", string("éü")));
        assert_eq!(parsed("naïve eq 'ß'"), eq("/naïve", string("ß")));
    }

    #[test]
    fn percent_encoded_field_is_decoded() {
        assert_eq!(
            parsed("/a%20b eq 1"),
            Filter::Comparison {
                field: JsonPointer::from_segments(["a b"]),
                op: ComparisonOp::Eq,
                value: Literal::Integer(1),
            }
        );
    }

    // ---- Limits ----

    #[test]
    fn text_longer_than_the_maximum_is_too_long() {
        let text = format!("a eq \"{}\"", "x".repeat(MAX_FILTER_LENGTH));
        assert_eq!(parse(&text), Err(FilterError::TooLong { max: MAX_FILTER_LENGTH }));
    }

    #[test]
    fn text_of_exactly_the_maximum_length_is_accepted() {
        let padding = MAX_FILTER_LENGTH - "a eq \"\"".len();
        let text = format!("a eq \"{}\"", "x".repeat(padding));
        assert_eq!(text.len(), MAX_FILTER_LENGTH);
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn length_is_counted_in_bytes() {
        assert_eq!(
            parse_with_limits("a eq \"é\"", 8, 10),
            Err(FilterError::TooLong { max: 8 })
        );
        assert!(parse_with_limits("a eq \"é\"", 9, 10).is_ok());
    }

    #[test]
    fn exactly_256_nested_groups_are_accepted() {
        let text = format!("{}a pr{}", "(".repeat(256), ")".repeat(256));
        assert_eq!(parsed(&text), Filter::Present(pointer("/a")));
    }

    #[test]
    fn each_bang_counts_as_one_level() {
        // `! (` is two levels: 128 of them reach exactly 256.
        let ok = format!("{}a pr{}", "! (".repeat(128), ")".repeat(128));
        assert!(parse(&ok).is_ok());
        let too_deep = format!("({}a pr{})", "! (".repeat(128), ")".repeat(128));
        assert_eq!(parse(&too_deep), Err(FilterError::TooDeep { max: 256 }));
        assert_eq!(
            parse_with_limits("! a pr", 100, 0),
            Err(FilterError::TooDeep { max: 0 })
        );
        assert!(parse_with_limits("! a pr", 100, 1).is_ok());
    }

    #[test]
    fn custom_depth_limit_counts_groups() {
        assert!(parse_with_limits("((a pr))", 100, 2).is_ok());
        assert_eq!(
            parse_with_limits("(((a pr)))", 100, 2),
            Err(FilterError::TooDeep { max: 2 })
        );
    }

    #[test]
    fn chains_do_not_count_as_depth() {
        let text = vec!["a pr"; 1000].join(" and ");
        assert!(parse_with_limits(&text, usize::MAX, 0).is_ok());
    }

    #[test]
    fn hundred_thousand_open_parentheses_fail_without_overflow() {
        let text = "(".repeat(100_000);
        assert_eq!(parse(&text), Err(FilterError::TooLong { max: MAX_FILTER_LENGTH }));
        assert_eq!(
            parse_with_limits(&text, usize::MAX, MAX_FILTER_DEPTH),
            Err(FilterError::TooDeep { max: MAX_FILTER_DEPTH })
        );
        let bangs = "!(".repeat(100_000);
        assert_eq!(
            parse_with_limits(&bangs, usize::MAX, MAX_FILTER_DEPTH),
            Err(FilterError::TooDeep { max: MAX_FILTER_DEPTH })
        );
    }

    #[test]
    fn errors_have_readable_messages() {
        assert_eq!(FilterError::Invalid.to_string(), "invalid query filter");
        assert_eq!(
            FilterError::TooLong { max: 10 }.to_string(),
            "query filter longer than 10 bytes"
        );
        assert_eq!(
            FilterError::TooDeep { max: 3 }.to_string(),
            "query filter nested deeper than 3 levels"
        );
    }

    // ---- Properties ----

    /// Filter-looking text, to reach deeper into the parser than uniform noise does.
    fn filterish_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just(" ".to_owned()),
                Just("(".to_owned()),
                Just(")".to_owned()),
                Just("!".to_owned()),
                Just("\"".to_owned()),
                Just("'".to_owned()),
                Just("\\".to_owned()),
                Just("and".to_owned()),
                Just("or".to_owned()),
                Just("pr".to_owned()),
                Just("eq".to_owned()),
                Just("true".to_owned()),
                Just("null".to_owned()),
                "[a-z0-9./%_-]{1,4}",
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    /// One of `words`, each ASCII letter randomly upper- or lower-case.
    fn mixed_case(words: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
        (proptest::sample::select(words), any::<u64>()).prop_map(|(word, mask)| {
            word.chars()
                .enumerate()
                .map(|(i, c)| {
                    if mask >> (i % 64) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect()
        })
    }

    /// Valid filter text, built from the grammar, with assorted spellings.
    fn valid_filter_text() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            "/?[a-zA-Z_][a-zA-Z0-9_]{0,6}(/[a-zA-Z0-9_]{1,4}){0,2}"
                .prop_filter("a bare true/false is the constant, not a field", |f| !f
                    .eq_ignore_ascii_case("true")
                    && !f.eq_ignore_ascii_case("false"),),
            "/[a-z]{1,3}%20[a-z]{1,3}",
            "/[a-z]{1,3}%2[58F][a-z]{0,3}",
            "/[a-z]{1,3}%2[89][a-z]{0,3}",
            "/[a-z]{1,3}//[a-z]{1,3}",
            "/[a-z]{1,3}/[a-z]{1,3}//",
            Just("//".to_owned()),
            Just("/".to_owned()),
            "/[a-z]{1,3}[\"'!\\\\][a-z]{1,3}",
        ];
        let value = prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            "-?[0-9]{0,6}\\.[0-9]{1,6}",
            "-?[0-9]{1,6}\\.[0-9]{0,6}([eE]-?[0-9]{1,3})?",
            mixed_case(&["true", "false", "null"]),
            any::<String>().prop_map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))),
            "[^'\\\\]{0,8}".prop_map(|s| format!("'{s}'")),
        ];
        let operator = mixed_case(&["eq", "co", "sw", "gt", "ge", "lt", "le", "regex", "x_1.y"]);
        let leaf = prop_oneof![
            Just("true".to_owned()),
            Just("FALSE".to_owned()),
            field.clone().prop_map(|f| format!("{f} pr")),
            (field, operator, value).prop_map(|(f, o, v)| format!("{f} {o} {v}")),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 2..4).prop_map(|parts| format!("({})", parts.join(" and "))),
                proptest::collection::vec(inner.clone(), 2..4).prop_map(|parts| format!("({})", parts.join(" OR "))),
                proptest::collection::vec(inner.clone(), 2..4).prop_map(|parts| parts.join(" or ")),
                inner.clone().prop_map(|f| format!("! ({f})")),
                inner.prop_map(|f| format!("!({f})")),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn filterish_text_never_panics(text in filterish_text()) {
            let _ = parse(&text);
            let _ = parse_with_limits(&text, 64, 3);
        }

        #[test]
        fn generated_valid_filters_parse(text in valid_filter_text()) {
            prop_assert!(parse(&text).is_ok(), "{:?}", text);
        }

        #[test]
        fn canonical_form_reparses_to_an_equal_filter(text in valid_filter_text()) {
            let filter = parse(&text);
            prop_assert!(filter.is_ok(), "{:?}", text);
            if let Ok(filter) = filter {
                let canonical = filter.to_string();
                prop_assert_eq!(parse(&canonical), Ok(filter), "{:?} -> {:?}", text, canonical);
            }
        }

        #[test]
        fn canonical_form_of_noise_that_parses_reparses(text in filterish_text()) {
            if let Ok(filter) = parse(&text) {
                let canonical = filter.to_string();
                prop_assert_eq!(parse(&canonical), Ok(filter), "{:?} -> {:?}", text, canonical);
            }
        }
    }
}
