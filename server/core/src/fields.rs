//! `_fields` response selection (IDM §2.9): which properties a read, query or write response
//! carries. No `_fields`, an empty pointer or `*` means "the default fields"; `*_ref` adds every
//! reference field; a top-level name selects that field; a nested pointer copies the value under
//! its leaf name (CREST's flattening), except below reference-like fields such as `_meta`, where
//! the selected sub-fields stay nested under the field (IDM's relationship expansion).

use serde_json::Value;

use crate::{JsonPointer, Object};

/// What the selection needs to know about an object's top-level fields.
pub trait FieldCatalog {
    /// True when the field appears in responses without being asked for.
    fn returned_by_default(&self, field: &str) -> bool;
    /// True for reference-like fields (relationships, `_meta`): nested selections stay nested.
    fn is_reference(&self, field: &str) -> bool;
}

/// A parsed `_fields` parameter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelection {
    pointers: Vec<JsonPointer>,
    defaults: bool,
    references: bool,
}

impl FieldSelection {
    /// The selection when no `_fields` was given: every default field.
    pub fn defaults() -> Self {
        Self {
            pointers: Vec::new(),
            defaults: true,
            references: false,
        }
    }

    /// Parses the (possibly repeated) `_fields` values, each a comma-separated pointer list.
    /// No values at all means the defaults.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut selection = Self::default();
        let mut any = false;
        for value in values {
            any = true;
            for field in value.split(',') {
                let field = field.trim();
                match field {
                    "*" => selection.defaults = true,
                    "*_ref" => selection.references = true,
                    _ => {
                        let pointer = JsonPointer::parse(field);
                        if pointer.is_root() {
                            selection.defaults = true;
                        } else if !selection.pointers.contains(&pointer) {
                            selection.pointers.push(pointer);
                        }
                    }
                }
            }
        }
        if !any {
            selection.defaults = true;
        }
        selection
    }

    /// True when the selection includes every default field.
    pub fn includes_defaults(&self) -> bool {
        self.defaults
    }

    /// True when the selection includes every reference field (`*_ref`).
    pub fn includes_references(&self) -> bool {
        self.references
    }

    /// The explicitly selected pointers.
    pub fn pointers(&self) -> &[JsonPointer] {
        &self.pointers
    }

    /// True when the selection is `_id` alone: a response shows `_id` and `_rev` and nothing
    /// of the content.
    pub fn selects_only_the_id(&self) -> bool {
        !self.defaults
            && !self.references
            && matches!(self.pointers.as_slice(), [only] if only.len() == 1 && only.first() == Some("_id"))
    }

    /// True when the selection explicitly names `field` or something below it.
    pub fn mentions(&self, field: &str) -> bool {
        self.pointers.iter().any(|pointer| pointer.first() == Some(field))
    }

    /// The longest pointer, in segments (used to bound hostile selections).
    pub fn max_depth(&self) -> usize {
        self.pointers.iter().map(JsonPointer::len).max().unwrap_or(0)
    }

    /// [`FieldSelection::select`] taking the content: the default selection keeps what it
    /// selects without copying it.
    pub fn select_owned(&self, mut visible: Object, catalog: &dyn FieldCatalog) -> Object {
        if !self.pointers.is_empty() || self.references {
            return self.select(&visible, catalog);
        }
        if !self.defaults {
            return Object::new();
        }
        visible.retain(|key, _| catalog.returned_by_default(key));
        visible
    }

    /// Builds the response content from `visible`: everything the caller may see, including
    /// fields that are only returned on request. `_id` and `_rev` are left to the caller.
    pub fn select(&self, visible: &Object, catalog: &dyn FieldCatalog) -> Object {
        let mut out = Object::new();
        if self.defaults || self.references {
            for (key, value) in visible {
                let wanted = (self.defaults && catalog.returned_by_default(key))
                    || (self.references && catalog.is_reference(key));
                if wanted {
                    out.insert(key.clone(), value.clone());
                }
            }
        }
        for pointer in &self.pointers {
            let Some(first) = pointer.first() else {
                continue;
            };
            let Some(top) = visible.get(first) else {
                continue;
            };
            if pointer.len() == 1 || (pointer.len() == 2 && pointer.leaf() == Some("*")) {
                out.insert(first.to_owned(), top.clone());
            } else if catalog.is_reference(first) && is_expanded(top) {
                // The caller expanded the references with the fields asked for.
                out.insert(first.to_owned(), top.clone());
            } else if catalog.is_reference(first) {
                let rest = pointer.relative();
                if let Some(value) = rest.get(top) {
                    let slot = out
                        .entry(first.to_owned())
                        .or_insert_with(|| Value::Object(Object::new()));
                    if !slot.is_object() {
                        *slot = Value::Object(Object::new());
                    }
                    if let (Value::Object(map), Some(leaf)) = (slot, rest.leaf()) {
                        map.insert(leaf.to_owned(), value.clone());
                    }
                }
            } else if let (Some(value), Some(leaf)) = (pointer.get_in(visible), pointer.leaf()) {
                out.insert(leaf.to_owned(), value.clone());
            }
        }
        out
    }
}

/// True for relationship references (`{_ref, …}`, or an array of them), which a `rel/field`
/// pointer expands with the referenced object's fields rather than selecting within.
fn is_expanded(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().all(|item| item.get("_ref").is_some()),
        Value::Object(map) => map.contains_key("_ref"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Catalog;
    impl FieldCatalog for Catalog {
        fn returned_by_default(&self, field: &str) -> bool {
            field != "_meta" && field != "manager"
        }
        fn is_reference(&self, field: &str) -> bool {
            field == "_meta" || field == "manager"
        }
    }

    fn visible() -> Object {
        json!({
            "userName": "bjensen",
            "preferences": {"marketing": true, "updates": false},
            "manager": {"_ref": "managed/user/x"},
            "_meta": {"loginCount": 3, "createDate": "2026-01-01T00:00:00.000Z"}
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    #[test]
    fn only_the_id_is_the_id_alone() {
        let only_the_id = |fields: &[&str]| FieldSelection::parse(fields.iter().copied()).selects_only_the_id();
        assert!(only_the_id(&["_id"]));
        assert!(only_the_id(&["/_id", "_id"]));
        for other in [
            &[][..],
            &["_id,*"],
            &["_id,*_ref"],
            &["_id/x"],
            &["_id,userName"],
            &["_rev"],
            &[""],
        ] {
            assert!(!only_the_id(other), "{other:?}");
        }
    }

    #[test]
    fn no_fields_means_defaults_only() {
        let out = FieldSelection::parse([]).select(&visible(), &Catalog);
        assert_eq!(
            Value::Object(out),
            json!({"userName": "bjensen", "preferences": {"marketing": true, "updates": false}})
        );
    }

    #[test]
    fn star_and_empty_pointer_mean_defaults() {
        assert!(FieldSelection::parse(["*"]).includes_defaults());
        assert!(FieldSelection::parse([""]).includes_defaults());
        assert!(FieldSelection::parse(["/"]).includes_defaults());
        assert!(!FieldSelection::parse(["userName"]).includes_defaults());
    }

    #[test]
    fn named_fields_select_only_those() {
        let out = FieldSelection::parse(["userName,missing"]).select(&visible(), &Catalog);
        assert_eq!(Value::Object(out), json!({"userName": "bjensen"}));
    }

    #[test]
    fn nested_pointers_flatten_to_their_leaf() {
        let out = FieldSelection::parse(["preferences/marketing"]).select(&visible(), &Catalog);
        assert_eq!(Value::Object(out), json!({"marketing": true}));
    }

    #[test]
    fn reference_sub_fields_stay_nested() {
        let out = FieldSelection::parse(["_meta/loginCount", "_meta/createDate"]).select(&visible(), &Catalog);
        assert_eq!(
            Value::Object(out),
            json!({"_meta": {"loginCount": 3, "createDate": "2026-01-01T00:00:00.000Z"}})
        );
    }

    #[test]
    fn a_star_below_a_field_selects_all_of_it() {
        let out = FieldSelection::parse(["_meta/*"]).select(&visible(), &Catalog);
        assert_eq!(
            Value::Object(out),
            json!({"_meta": {"loginCount": 3, "createDate": "2026-01-01T00:00:00.000Z"}})
        );
    }

    #[test]
    fn star_ref_adds_reference_fields() {
        let out = FieldSelection::parse(["*_ref"]).select(&visible(), &Catalog);
        assert_eq!(
            Value::Object(out),
            json!({"manager": {"_ref": "managed/user/x"}, "_meta": {"loginCount": 3, "createDate": "2026-01-01T00:00:00.000Z"}})
        );
    }

    #[test]
    fn repeated_parameters_accumulate() {
        let selection = FieldSelection::parse(["userName", "_meta"]);
        assert!(selection.mentions("_meta"));
        let out = selection.select(&visible(), &Catalog);
        assert_eq!(out.len(), 2);
    }
}
