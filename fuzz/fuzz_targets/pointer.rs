//! JSON pointers as requests carry them: resource paths and patch fields, `_fields` and
//! `_sortKeys`.
//!
//! Input: text (invalid UTF-8 replaced); for `_fields` and `_sortKeys` each line is one repeated
//! parameter value. Asserts, besides "no panic":
//! * a pointer prints (`Display`) as text that parses back to the same pointer (unless its last
//!   segment is empty, which the parser drops by design), and `get` agrees with `get_in`;
//! * a field selection picks only fields of the object (nested ones under their leaf name, as
//!   IDM does), and a sort-key list is either refused as a bad request or has between 1 and
//!   `MAX_SORT_KEYS` keys, none of them the root or deeper than `MAX_POINTER_DEPTH`.

#![no_main]

use std::sync::LazyLock;

use ferridm_core::fields::{FieldCatalog, FieldSelection};
use ferridm_core::query::{MAX_POINTER_DEPTH, MAX_SORT_KEYS, parse_sort_keys};
use ferridm_core::{Error, JsonPointer, Object};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

static OBJECT: LazyLock<Object> = LazyLock::new(|| {
    let value = json!({
        "_id": "u1", "userName": "bjensen", "a": {"b": [{"c": 1}, "x", null], "": {"": 2}, "%2F": 3, "~1": 4},
        "roles": [{"_ref": "managed/role/r1", "_refProperties": {"x": 1}}], "n": null, "*": 5,
    });
    match value {
        Value::Object(object) => object,
        _ => unreachable!("a JSON object literal"),
    }
});

struct Catalog;

impl FieldCatalog for Catalog {
    fn returned_by_default(&self, field: &str) -> bool {
        field != "a"
    }

    fn is_reference(&self, field: &str) -> bool {
        field == "roles"
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    let pointer = JsonPointer::parse(&text);
    let printed = pointer.to_string();
    if pointer.leaf() != Some("") {
        assert_eq!(JsonPointer::parse(&printed), pointer, "printed as {printed:?}");
    }
    let whole = Value::Object(OBJECT.clone());
    if !pointer.is_root() {
        assert_eq!(pointer.get(&whole), pointer.get_in(&OBJECT), "{pointer:?}");
    }
    let _ = (
        pointer.parent(),
        pointer.relative(),
        pointer.child("x"),
        pointer.first(),
    );

    let values: Vec<&str> = text.lines().collect();
    let selection = FieldSelection::parse(values.iter().copied());
    let selected = selection.select(&OBJECT, &Catalog);
    // Nested selections come out under their leaf name, as IDM does.
    let leaves: Vec<&str> = selection.pointers().iter().filter_map(JsonPointer::leaf).collect();
    for key in selected.keys() {
        assert!(
            OBJECT.contains_key(key) || leaves.contains(&key.as_str()),
            "selected {selected:?}"
        );
    }
    let _ = (selection.max_depth(), selection.mentions("a"));

    match parse_sort_keys(values.iter().copied()) {
        Ok(keys) => {
            assert!(keys.len() <= MAX_SORT_KEYS, "{} sort keys", keys.len());
            assert_eq!(values.is_empty(), keys.is_empty(), "{values:?} gave {keys:?}");
            for key in keys {
                assert!(!key.field.is_root() && key.field.len() <= MAX_POINTER_DEPTH, "{key:?}");
            }
        }
        Err(error) => assert!(matches!(error, Error::BadRequest(_)), "{error:?}"),
    }
});
