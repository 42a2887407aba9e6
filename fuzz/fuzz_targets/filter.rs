//! The `_queryFilter` grammar and its compilation to SQL.
//!
//! Input: the filter text (as a decoded query parameter; invalid UTF-8 replaced). Asserts, besides
//! "no panic, no hang, no stack overflow" (parsing, evaluating and compiling):
//! * the canonical form (`Display`) of a parsed filter parses back to an equal filter;
//! * the compiled SQL text consists of the compiler's own keywords, column names and operators
//!   only: every value the filter carries (strings, numbers, field names, the object type) is a
//!   bound parameter, and no quote, comment or statement separator reaches the text.

#![no_main]

use std::sync::LazyLock;

use ferridm_core::filter::{self, Filter, Literal, MAX_FILTER_DEPTH};
use ferridm_store::fold_string;
use ferridm_store::testing::compile_filter;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

/// An object with values of every JSON type to evaluate filters against.
static OBJECT: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "_id": "u1", "userName": "bjensen", "givenName": "Barbara", "age": 42, "score": 3.5,
        "active": true, "manager": null, "emails": ["b@example.com", "x@example.com"],
        "address": {"city": "Zoë \"q\"", "zip": "01234"}, "tags": [1, "2", null, {"k": "v"}],
    })
});

/// Words the filter compiler writes into SQL text.
const SQL_WORDS: &[&str] = &[
    "SELECT",
    "AS",
    "FROM",
    "WHERE",
    "AND",
    "IN",
    "IS",
    "NOT",
    "NULL",
    "LIKE",
    "ESCAPE",
    "INTERSECT",
    "UNION",
    "EXCEPT",
    "objects",
    "object_props",
    "pk",
    "obj_pk",
    "otype",
    "prop",
    "kind",
    "num",
    "str",
    "full_str",
    "v",
    "o",
    "nn",
    "nl",
    "0",
    "1",
];

fn check_sql(filter: &Filter) {
    let object_type = "managed/user'; DROP TABLE objects; --";
    let compiled = compile_filter(filter, object_type);
    assert_eq!(compiled.text.matches('?').count(), compiled.binds, "{}", compiled.text);
    let type_binds = compiled.texts.iter().filter(|text| *text == object_type).count();
    assert!(
        type_binds >= compiled.text.matches("otype = ?").count(),
        "the object type is not bound"
    );
    // `ESCAPE '\'` is the only quoted text the compiler writes.
    let text = compiled.text.replace("ESCAPE '\\'", "ESCAPE");
    for forbidden in ["'", "\"", "\\", ";", "--", "/*", "$", "`"] {
        assert!(
            !text.contains(forbidden),
            "{forbidden} in the SQL text: {}",
            compiled.text
        );
    }
    for word in text
        .split(|c: char| c.is_whitespace() || "()=<>?.,".contains(c))
        .filter(|word| !word.is_empty())
    {
        let alias = word
            .strip_prefix('s')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        assert!(
            alias || SQL_WORDS.contains(&word),
            "{word:?} in the SQL text: {}",
            compiled.text
        );
    }
    // Every string literal the filter compares with is bound (folded, perhaps split or wrapped
    // in a LIKE pattern), never dropped: some bound text holds its first folded character.
    filter.for_each_leaf(&mut |leaf| {
        if let Filter::Comparison {
            value: Literal::String(literal),
            ..
        } = leaf
            && let Some(first) = fold_string(literal).chars().next()
        {
            assert!(
                compiled.texts.iter().any(|text| text.contains(first)),
                "the literal {literal:?} is not bound: {:?}",
                compiled.texts
            );
        }
    });
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(parsed) = filter::parse(&text) else {
        return;
    };
    let canonical = parsed.to_string();
    // The canonical form adds parentheses and escapes: allow it more length and depth.
    match filter::parse_with_limits(&canonical, usize::MAX, 4 * MAX_FILTER_DEPTH) {
        Ok(reparsed) => assert_eq!(reparsed, parsed, "canonical form {canonical:?}"),
        Err(error) => panic!("the canonical form {canonical:?} does not parse: {error}"),
    }
    filter::matches(&parsed, &OBJECT);
    check_sql(&parsed);
});
