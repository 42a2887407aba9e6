//! How an object is mirrored into the `object_props` index. Every value reachable by a JSON
//! pointer gets a row under that pointer's text (`/a/b`), with its kind and a comparable form:
//! numbers and booleans in `num`, strings lower-cased in `str` (so comparisons are
//! case-insensitive and byte-ordered, identically on both backends). An array's scalar elements
//! are listed under the array's own pointer (element-wise matching) and again under their
//! positional pointers (`/a/0`). The core's in-memory evaluator defines the semantics this
//! layout must reproduce.

use ferridm_core::{JsonPointer, Object};
use serde_json::Value;

/// Row kinds, ordered as sorting orders them (booleans, then numbers, then strings).
pub(crate) const KIND_NULL: i16 = 0;
pub(crate) const KIND_BOOLEAN: i16 = 1;
pub(crate) const KIND_NUMBER: i16 = 2;
pub(crate) const KIND_STRING: i16 = 3;
pub(crate) const KIND_OBJECT: i16 = 4;
pub(crate) const KIND_ARRAY: i16 = 5;

/// Which top-level properties of a type are left out of the index (private ones: they must not
/// be queryable) and which must hold unique values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexSpec {
    /// Top-level properties never indexed.
    pub hidden: Vec<String>,
    /// Top-level properties whose (lower-cased string) values are unique per type.
    pub unique: Vec<String>,
}

/// The comparable form of a string value: lower-cased, then [`index_text`].
pub fn fold_string(text: &str) -> String {
    index_text(&text.to_lowercase())
}

/// Text as the index stores it. PostgreSQL text cannot hold NUL, so NUL becomes `\u{1}\u{1}`
/// and U+0001 becomes `\u{1}\u{2}` on both backends: the mapping is one-to-one and keeps byte
/// order, so equality, ranges, prefixes and sorting stay exact. (A `co` whose value starts with
/// U+0000–U+0002 may also match text where those characters sit next to an escaped one.)
pub fn index_text(text: &str) -> String {
    if !text.contains(['\0', '\u{1}']) {
        return text.to_owned();
    }
    let mut escaped = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        match c {
            '\0' => escaped.push_str("\u{1}\u{1}"),
            '\u{1}' => escaped.push_str("\u{1}\u{2}"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// The index key of a property: its JSON pointer, escaped like text.
pub(crate) fn prop_key(pointer: &JsonPointer) -> String {
    index_text(&pointer.to_string())
}

/// One row of the property index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PropRow {
    pub(crate) prop: String,
    pub(crate) kind: i16,
    pub(crate) num: f64,
    pub(crate) str: String,
    pub(crate) sorted: bool,
}

impl PropRow {
    fn scalar(prop: &str, value: &Value, sorted: bool) -> Option<Self> {
        let (kind, num, str) = scalar_key(value)?;
        Some(Self {
            prop: prop.to_owned(),
            kind,
            num,
            str,
            sorted: sorted && kind != KIND_NULL,
        })
    }

    fn marker(prop: &str, kind: i16) -> Self {
        Self {
            prop: prop.to_owned(),
            kind,
            num: 0.0,
            str: String::new(),
            sorted: false,
        }
    }
}

/// The `(kind, num, str)` of a scalar; `None` for objects and arrays.
pub(crate) fn scalar_key(value: &Value) -> Option<(i16, f64, String)> {
    match value {
        Value::Null => Some((KIND_NULL, 0.0, String::new())),
        Value::Bool(flag) => Some((KIND_BOOLEAN, f64::from(u8::from(*flag)), String::new())),
        Value::Number(number) => Some((KIND_NUMBER, number.as_f64().unwrap_or_default(), String::new())),
        Value::String(text) => Some((KIND_STRING, 0.0, fold_string(text))),
        Value::Object(_) | Value::Array(_) => None,
    }
}

/// Every index row for an object: its id, its content (minus hidden properties) and its
/// metadata under `/_meta`.
pub(crate) fn index_rows(id: &str, content: &Object, meta: &Object, spec: &IndexSpec) -> Vec<PropRow> {
    let mut rows = Vec::with_capacity(content.len() + meta.len() + 4);
    rows.push(PropRow {
        prop: "/_id".to_owned(),
        kind: KIND_STRING,
        num: 0.0,
        str: fold_string(id),
        sorted: true,
    });
    for (key, value) in content {
        if key == "_id" || key == "_rev" || key == "_meta" || spec.hidden.iter().any(|hidden| hidden == key) {
            continue;
        }
        flatten_value(&JsonPointer::from_segments([key.as_str()]), value, &mut rows);
    }
    if !meta.is_empty() {
        flatten_value(
            &JsonPointer::from_segments(["_meta"]),
            &Value::Object(meta.clone()),
            &mut rows,
        );
    }
    rows
}

fn flatten_value(pointer: &JsonPointer, value: &Value, rows: &mut Vec<PropRow>) {
    let prop = prop_key(pointer);
    match value {
        Value::Object(map) => {
            rows.push(PropRow::marker(&prop, KIND_OBJECT));
            for (key, child) in map {
                flatten_value(&pointer.child(key.as_str()), child, rows);
            }
        }
        Value::Array(items) => {
            rows.push(PropRow::marker(&prop, KIND_ARRAY));
            let smallest = items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| scalar_key(item).map(|key| (index, key)))
                .filter(|(_, (kind, _, _))| *kind != KIND_NULL)
                .min_by(|(_, a), (_, b)| compare_keys(a, b))
                .map(|(index, _)| index);
            for (index, item) in items.iter().enumerate() {
                if let Some(row) = PropRow::scalar(&prop, item, Some(index) == smallest) {
                    rows.push(row);
                }
                flatten_value(&pointer.child(index.to_string()), item, rows);
            }
        }
        scalar => {
            if let Some(row) = PropRow::scalar(&prop, scalar, true) {
                rows.push(row);
            }
        }
    }
}

/// Orders two comparable keys the way the database orders `(kind, num, str)`.
pub(crate) fn compare_keys(a: &(i16, f64, String), b: &(i16, f64, String)) -> std::cmp::Ordering {
    a.0.cmp(&b.0)
        .then(a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
        .then_with(|| a.2.as_bytes().cmp(b.2.as_bytes()))
}

/// The unique-property values of an object, lower-cased (non-empty strings only).
pub(crate) fn unique_values(content: &Object, spec: &IndexSpec) -> Vec<(String, String)> {
    spec.unique
        .iter()
        .filter_map(|property| match content.get(property) {
            Some(Value::String(text)) if !text.is_empty() => Some((property.clone(), fold_string(text))),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows_for(content: Value) -> Vec<(String, i16, f64, String, bool)> {
        let content = content.as_object().cloned().unwrap();
        let spec = IndexSpec {
            hidden: vec!["password".into()],
            unique: vec![],
        };
        index_rows("Id1", &content, &Object::new(), &spec)
            .into_iter()
            .map(|row| (row.prop, row.kind, row.num, row.str, row.sorted))
            .collect()
    }

    #[test]
    fn scalars_are_lower_cased_and_sorted() {
        let rows = rows_for(json!({"userName": "BJensen", "age": 30, "admin": true, "nick": null}));
        assert_eq!(rows[0], ("/_id".into(), KIND_STRING, 0.0, "id1".into(), true));
        assert!(rows.contains(&("/userName".into(), KIND_STRING, 0.0, "bjensen".into(), true)));
        assert!(rows.contains(&("/age".into(), KIND_NUMBER, 30.0, String::new(), true)));
        assert!(rows.contains(&("/admin".into(), KIND_BOOLEAN, 1.0, String::new(), true)));
        assert!(rows.contains(&("/nick".into(), KIND_NULL, 0.0, String::new(), false)));
    }

    #[test]
    fn hidden_properties_are_not_indexed() {
        let rows = rows_for(json!({"password": "secret"}));
        assert!(rows.iter().all(|row| row.0 != "/password"));
    }

    #[test]
    fn arrays_are_listed_element_wise_and_by_position() {
        let rows = rows_for(json!({"tags": ["b", "A", null]}));
        let tags: Vec<_> = rows.iter().filter(|row| row.0 == "/tags").collect();
        assert_eq!(tags.len(), 4);
        assert_eq!(tags[0].1, KIND_ARRAY);
        let sorted: Vec<_> = rows.iter().filter(|row| row.4 && row.0 == "/tags").collect();
        assert_eq!(sorted.len(), 1);
        assert_eq!(sorted[0].3, "a");
        assert!(rows.contains(&("/tags/0".into(), KIND_STRING, 0.0, "b".into(), true)));
        assert!(rows.contains(&("/tags/2".into(), KIND_NULL, 0.0, String::new(), false)));
    }

    #[test]
    fn nested_objects_get_markers_and_paths() {
        let rows = rows_for(json!({"preferences": {"marketing": false}, "a/b": 1}));
        assert!(rows.contains(&("/preferences".into(), KIND_OBJECT, 0.0, String::new(), false)));
        assert!(rows.contains(&("/preferences/marketing".into(), KIND_BOOLEAN, 0.0, String::new(), true)));
        assert!(rows.contains(&("/a%2Fb".into(), KIND_NUMBER, 1.0, String::new(), true)));
    }

    #[test]
    fn nul_and_u0001_are_escaped_one_to_one_and_in_order() {
        assert_eq!(fold_string("A\0b"), "a\u{1}\u{1}b");
        assert_eq!(fold_string("\u{1}"), "\u{1}\u{2}");
        let mut ordered = ["a", "a\0", "a\u{1}", "a\u{2}", "a\0b", "a\u{1}\0"].map(fold_string);
        ordered.sort();
        assert_eq!(
            ordered,
            ["a", "a\0", "a\0b", "a\u{1}", "a\u{1}\0", "a\u{2}"].map(fold_string)
        );
    }
}
