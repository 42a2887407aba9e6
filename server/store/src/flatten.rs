//! How an object is mirrored into the `object_props` index. Every value reachable by a JSON
//! pointer under a property the type indexes ([`Indexed`]) gets a row under that pointer's
//! text (`/a/b`), with its kind and a comparable form:
//! numbers and booleans in `num`, strings lower-cased in `str` (so comparisons are
//! case-insensitive and byte-ordered, identically on both backends). An array's scalar elements
//! are listed under the array's own pointer (element-wise matching) and again under their
//! positional pointers (`/a/0`). The core's in-memory evaluator defines the semantics this
//! layout must reproduce.
//!
//! Index keys are bounded so that every row fits a B-tree entry on both backends: a string of
//! more than [`SHORT_CHARS`] characters is keyed by its first `SHORT_CHARS + 1` characters (so
//! keys still order exactly like the strings, except among strings that agree on all of them)
//! with the whole text kept beside the key for exact comparisons. What one object may add to
//! the index is bounded too ([`IndexLimitExceeded`]), so that no single write holds the writer
//! for long.

use ferridm_core::{JsonPointer, Object};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Row kinds, ordered as sorting orders them (booleans, then numbers, then strings).
pub(crate) const KIND_NULL: i16 = 0;
pub(crate) const KIND_BOOLEAN: i16 = 1;
pub(crate) const KIND_NUMBER: i16 = 2;
pub(crate) const KIND_STRING: i16 = 3;
pub(crate) const KIND_OBJECT: i16 = 4;
pub(crate) const KIND_ARRAY: i16 = 5;

/// Which top-level properties of a type are left out of the index (private ones: they must not
/// be queryable), which are indexed at all, and which must hold unique values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexSpec {
    /// Top-level properties never indexed.
    pub hidden: Vec<String>,
    /// Top-level properties whose (lower-cased string) values are unique per type.
    pub unique: Vec<String>,
    /// Top-level relationship properties: their filters read the edges.
    pub relationships: Vec<String>,
    /// The top-level properties the index holds rows for (filters on the others are answered
    /// by reading the objects).
    pub indexed: Indexed,
}

/// Which top-level properties of a type the property index holds rows for. `_id` and the
/// metadata (`_meta`: login counts, completeness scores, social links are queried there) always
/// have theirs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Indexed {
    /// Every property.
    #[default]
    All,
    /// These properties only (with `_id` and `_meta`).
    Only(Vec<String>),
}

impl Indexed {
    /// Whether the index holds the rows of top-level property `key`.
    pub fn holds(&self, key: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(keys) => key == "_id" || key == "_meta" || keys.iter().any(|held| held == key),
        }
    }

    /// Whether every property `other` holds is held here too.
    pub fn covers(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::All, _) => true,
            (Self::Only(_), Self::All) => false,
            (Self::Only(_), Self::Only(keys)) => keys.iter().all(|key| self.holds(key)),
        }
    }

    /// The properties both hold.
    pub fn intersect(&self, other: &Self) -> Self {
        match (self, other) {
            (Self::All, other) => other.clone(),
            (this, Self::All) => this.clone(),
            (Self::Only(keys), other) => Self::Only(keys.iter().filter(|key| other.holds(key)).cloned().collect()),
        }
    }
}

/// Strings of at most this many characters are their own index key; longer ones are keyed by
/// their first `SHORT_CHARS + 1` characters, so that no key of a long string equals a short one.
pub(crate) const SHORT_CHARS: usize = 256;

/// Most index rows one object may have (each scalar is a row; array elements two).
pub const MAX_INDEX_ROWS: usize = 20_000;
/// Most elements one array may hold.
pub const MAX_ARRAY_ITEMS: usize = 5_000;
/// Deepest nesting of objects and arrays.
pub const MAX_DEPTH: usize = 32;
/// Longest JSON pointer (as text) of a stored property, in bytes.
pub const MAX_POINTER_BYTES: usize = 1_024;

/// Why an object cannot be stored: it would add more to the index than one write may.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexLimitExceeded {
    /// An array holds too many elements.
    #[error("The array {pointer} holds {items} elements; at most {MAX_ARRAY_ITEMS} are accepted")]
    ArrayItems {
        /// The array's JSON pointer.
        pointer: String,
        /// How many elements it holds.
        items: usize,
    },
    /// Objects and arrays are nested too deeply.
    #[error("The value at {pointer} is nested more than {MAX_DEPTH} levels deep")]
    Depth {
        /// The first pointer that is too deep.
        pointer: String,
    },
    /// A property path is too long.
    #[error("The property path {pointer}… is longer than {MAX_POINTER_BYTES} bytes")]
    PointerLength {
        /// The start of the pointer.
        pointer: String,
    },
    /// The object holds too many values altogether.
    #[error("The object holds more than {MAX_INDEX_ROWS} values")]
    Values,
}

/// The comparable form of a string value: lower-cased, then [`index_text`].
pub fn fold_string(text: &str) -> String {
    index_text(&text.to_lowercase())
}

/// Splits folded text into its index key and, when the text is longer than [`SHORT_CHARS`]
/// characters, the whole text, which is kept beside the key.
pub(crate) fn split_key(folded: String) -> (String, Option<String>) {
    if folded.len() <= SHORT_CHARS || folded.char_indices().nth(SHORT_CHARS).is_none() {
        return (folded, None);
    }
    let end = folded
        .char_indices()
        .nth(SHORT_CHARS + 1)
        .map_or(folded.len(), |(index, _)| index);
    (folded[..end].to_owned(), Some(folded))
}

/// The value `unique_values` holds for folded text: the text itself, or for text longer than
/// [`SHORT_CHARS`] characters its start and a SHA-256 digest of the whole (`\u{1}\u{3}` never
/// occurs in [`index_text`] output, so the two forms cannot collide).
pub(crate) fn unique_key(folded: &str) -> String {
    let Some((end, _)) = folded.char_indices().nth(SHORT_CHARS) else {
        return folded.to_owned();
    };
    let digest = Sha256::digest(folded.as_bytes());
    let mut key = String::with_capacity(end + 2 + 64);
    key.push_str(&folded[..end]);
    key.push_str("\u{1}\u{3}");
    for byte in digest {
        key.push_str(&format!("{byte:02x}"));
    }
    key
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
    /// The string's key (see [`split_key`]).
    pub(crate) str: String,
    /// The whole string, when it is longer than its key.
    pub(crate) full_str: Option<String>,
    pub(crate) sorted: bool,
}

impl PropRow {
    fn scalar(prop: &str, value: &Value, sorted: bool) -> Option<Self> {
        let (kind, num, text) = scalar_value(value)?;
        let (str, full_str) = split_key(text);
        Some(Self {
            prop: prop.to_owned(),
            kind,
            num,
            str,
            full_str,
            sorted: sorted && kind != KIND_NULL,
        })
    }

    fn marker(prop: &str, kind: i16) -> Self {
        Self {
            prop: prop.to_owned(),
            kind,
            num: 0.0,
            str: String::new(),
            full_str: None,
            sorted: false,
        }
    }
}

/// The `(kind, num, folded text)` of a scalar; `None` for objects and arrays.
fn scalar_value(value: &Value) -> Option<(i16, f64, String)> {
    match value {
        Value::Null => Some((KIND_NULL, 0.0, String::new())),
        Value::Bool(flag) => Some((KIND_BOOLEAN, f64::from(u8::from(*flag)), String::new())),
        Value::Number(number) => Some((KIND_NUMBER, number.as_f64().unwrap_or_default(), String::new())),
        Value::String(text) => Some((KIND_STRING, 0.0, fold_string(text))),
        Value::Object(_) | Value::Array(_) => None,
    }
}

/// The `(kind, num, str)` key of a scalar as the index orders it; `None` for objects and arrays.
pub(crate) fn scalar_key(value: &Value) -> Option<(i16, f64, String)> {
    scalar_value(value).map(|(kind, num, text)| (kind, num, split_key(text).0))
}

/// Whether [`index_rows`] refuses objects beyond the limits (content writes) or indexes what it
/// is given (objects already stored, whose metadata changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limits {
    /// Refuse objects beyond the limits.
    Enforced,
    /// Index whatever is stored.
    Waived,
}

/// Every index row for an object: its id, its content (minus hidden properties and those the
/// index does not hold) and its metadata under `/_meta`.
pub(crate) fn index_rows(
    id: &str,
    content: &Object,
    meta: &Object,
    spec: &IndexSpec,
    limits: Limits,
) -> Result<Vec<PropRow>, IndexLimitExceeded> {
    rows_of(id, content, meta, &spec.hidden, |key| spec.indexed.holds(key), limits)
}

/// The rows an object would have if its type indexed every property (what sorting compares,
/// whichever properties the index holds).
pub(crate) fn rows_of_every_property(id: &str, content: &Object, meta: &Object, hidden: &[String]) -> Vec<PropRow> {
    rows_of(id, content, meta, hidden, |_| true, Limits::Waived).unwrap_or_default()
}

/// The rows of an object's id, of the top-level properties that are not `hidden` and that
/// `indexed` accepts, and of its metadata.
fn rows_of(
    id: &str,
    content: &Object,
    meta: &Object,
    hidden: &[String],
    indexed: impl Fn(&str) -> bool,
    limits: Limits,
) -> Result<Vec<PropRow>, IndexLimitExceeded> {
    let mut flattener = Flattener {
        rows: Vec::with_capacity(content.len() + meta.len() + 4),
        counted: 0,
        collect: true,
        limits,
    };
    let (str, full_str) = split_key(fold_string(id));
    flattener.push(|| {
        Some(PropRow {
            prop: "/_id".to_owned(),
            kind: KIND_STRING,
            num: 0.0,
            str,
            full_str,
            sorted: true,
        })
    })?;
    flattener.content(content, |key| !hidden.iter().any(|name| name == key) && indexed(key))?;
    if !meta.is_empty() {
        flattener.value(&JsonPointer::from_segments(["_meta"]), &Value::Object(meta.clone()), 1)?;
    }
    Ok(flattener.rows)
}

/// Checks that an object's content is within what one object may add to the index, without
/// building its rows (so a write can be refused before any costly work on it). Properties the
/// index does not hold count too: the limits bound what any write may store.
pub fn check_index_limits(content: &Object, spec: &IndexSpec) -> Result<(), IndexLimitExceeded> {
    Flattener {
        rows: Vec::new(),
        counted: 1,
        collect: false,
        limits: Limits::Enforced,
    }
    .content(content, |key| !spec.hidden.iter().any(|hidden| hidden == key))
}

/// Collects (or only counts) index rows, checking the limits as it goes, so a huge object is
/// refused before its rows are built.
struct Flattener {
    rows: Vec<PropRow>,
    counted: usize,
    collect: bool,
    limits: Limits,
}

impl Flattener {
    /// Adds the top-level properties of `content` that `include` accepts.
    fn content(&mut self, content: &Object, include: impl Fn(&str) -> bool) -> Result<(), IndexLimitExceeded> {
        for (key, value) in content {
            if key == "_id" || key == "_rev" || key == "_meta" || !include(key) {
                continue;
            }
            self.value(&JsonPointer::from_segments([key.as_str()]), value, 1)?;
        }
        Ok(())
    }

    fn push(&mut self, row: impl FnOnce() -> Option<PropRow>) -> Result<(), IndexLimitExceeded> {
        if self.limits == Limits::Enforced && self.counted >= MAX_INDEX_ROWS {
            return Err(IndexLimitExceeded::Values);
        }
        if self.collect {
            let Some(row) = row() else { return Ok(()) };
            self.rows.push(row);
        }
        self.counted += 1;
        Ok(())
    }

    fn value(&mut self, pointer: &JsonPointer, value: &Value, depth: usize) -> Result<(), IndexLimitExceeded> {
        let prop = prop_key(pointer);
        if self.limits == Limits::Enforced {
            check_limits(&prop, value, depth)?;
        }
        match value {
            Value::Object(map) => {
                self.push(|| Some(PropRow::marker(&prop, KIND_OBJECT)))?;
                for (key, child) in map {
                    self.value(&pointer.child(key.as_str()), child, depth + 1)?;
                }
            }
            Value::Array(items) => {
                self.push(|| Some(PropRow::marker(&prop, KIND_ARRAY)))?;
                let smallest = if self.collect {
                    items
                        .iter()
                        .enumerate()
                        .filter_map(|(index, item)| scalar_key(item).map(|key| (index, key)))
                        .filter(|(_, (kind, _, _))| *kind != KIND_NULL)
                        .min_by(|(_, a), (_, b)| compare_keys(a, b))
                        .map(|(index, _)| index)
                } else {
                    None
                };
                for (index, item) in items.iter().enumerate() {
                    if !item.is_object() && !item.is_array() {
                        self.push(|| PropRow::scalar(&prop, item, Some(index) == smallest))?;
                    }
                    self.value(&pointer.child(index.to_string()), item, depth + 1)?;
                }
            }
            scalar => self.push(|| PropRow::scalar(&prop, scalar, true))?,
        }
        Ok(())
    }
}

/// The limits one value is checked against before it is indexed.
fn check_limits(prop: &str, value: &Value, depth: usize) -> Result<(), IndexLimitExceeded> {
    if prop.len() > MAX_POINTER_BYTES {
        let mut end = 64;
        while !prop.is_char_boundary(end) {
            end -= 1;
        }
        return Err(IndexLimitExceeded::PointerLength {
            pointer: prop[..end].to_owned(),
        });
    }
    if depth > MAX_DEPTH {
        return Err(IndexLimitExceeded::Depth {
            pointer: prop.to_owned(),
        });
    }
    match value {
        Value::Array(items) if items.len() > MAX_ARRAY_ITEMS => Err(IndexLimitExceeded::ArrayItems {
            pointer: prop.to_owned(),
            items: items.len(),
        }),
        _ => Ok(()),
    }
}

/// Orders two comparable keys the way the database orders `(kind, num, str)`.
pub(crate) fn compare_keys(a: &(i16, f64, String), b: &(i16, f64, String)) -> std::cmp::Ordering {
    a.0.cmp(&b.0)
        .then(a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
        .then_with(|| a.2.as_bytes().cmp(b.2.as_bytes()))
}

/// The unique-property values of an object as `unique_values` holds them (non-empty strings
/// only; see [`unique_key`]).
pub(crate) fn unique_values(content: &Object, spec: &IndexSpec) -> Vec<(String, String)> {
    spec.unique
        .iter()
        .filter_map(|property| match content.get(property) {
            Some(Value::String(text)) if !text.is_empty() => Some((property.clone(), unique_key(&fold_string(text)))),
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
            relationships: vec![],
            indexed: Indexed::All,
        };
        index_rows("Id1", &content, &Object::new(), &spec, Limits::Enforced)
            .unwrap()
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
    fn only_the_properties_the_index_holds_get_rows() {
        let content = json!({"userName": "a", "city": "b", "prefs": {"x": 1}})
            .as_object()
            .cloned()
            .unwrap();
        let meta = json!({"createDate": "2026"}).as_object().cloned().unwrap();
        let props = |indexed: Indexed| -> Vec<String> {
            let spec = IndexSpec {
                indexed,
                ..IndexSpec::default()
            };
            let rows = index_rows("Id1", &content, &meta, &spec, Limits::Enforced).unwrap();
            rows.into_iter().map(|row| row.prop).collect()
        };
        assert_eq!(
            props(Indexed::Only(vec!["userName".into()])),
            ["/_id", "/userName", "/_meta", "/_meta/createDate"]
        );
        assert_eq!(
            props(Indexed::Only(vec!["prefs".into()])),
            ["/_id", "/prefs", "/prefs/x", "/_meta", "/_meta/createDate"]
        );
        assert_eq!(props(Indexed::All).len(), 7);
    }

    #[test]
    fn coverage_is_compared_and_intersected_by_property() {
        let only = |keys: &[&str]| Indexed::Only(keys.iter().map(|key| (*key).to_owned()).collect());
        assert!(Indexed::All.covers(&only(&["a"])));
        assert!(!only(&["a"]).covers(&Indexed::All));
        assert!(only(&["a", "b"]).covers(&only(&["b"])));
        assert!(!only(&["a"]).covers(&only(&["a", "b"])));
        assert_eq!(only(&["a", "b"]).intersect(&only(&["b", "c"])), only(&["b"]));
        assert_eq!(Indexed::All.intersect(&only(&["c"])), only(&["c"]));
        assert!(only(&[]).holds("_id"));
        assert!(only(&[]).holds("_meta"));
        assert!(!only(&["a"]).holds("b"));
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
