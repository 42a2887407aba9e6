//! What a caller sees of a managed object: the wire form of a resource, private properties
//! hidden from clients, `onRead` triggers, virtual properties, `_meta` (with lockout state) when
//! asked for, and `_fields`.

use std::collections::HashMap;

use ferridm_core::fields::FieldSelection;
use ferridm_core::{Object, Result, Revision};
use ferridm_store::{Edge, StoredObject};
use serde_json::{Value, json};

use super::ManagedObjects;
use super::relationships::{EFFECTIVE_ASSIGNMENTS, EFFECTIVE_ROLES, effective_roles};
use crate::service::storage_error;

/// A resource as returned: id, revision and the filtered content.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// `_id`.
    pub id: String,
    /// `_rev`.
    pub rev: Revision,
    /// Content the caller may see, already `_fields`-filtered.
    pub content: Object,
}

impl Resource {
    /// The wire form: `_id` and `_rev` first, then the content in stored order.
    pub fn into_json(self) -> Value {
        let mut out = Object::with_capacity(self.content.len() + 2);
        out.insert("_id".to_owned(), Value::String(self.id));
        out.insert("_rev".to_owned(), Value::String(self.rev.to_string()));
        out.extend(self.content);
        Value::Object(out)
    }

    /// The wire form of an action result, as IDM writes patch-by-query: content first, then
    /// `_rev` and `_id`.
    pub fn to_json_trailing(&self) -> Value {
        let mut out = self.content.clone();
        out.insert("_rev".to_owned(), Value::String(self.rev.to_string()));
        out.insert("_id".to_owned(), Value::String(self.id.clone()));
        Value::Object(out)
    }
}

impl ManagedObjects<'_> {
    /// The content a caller may see: private properties removed and `onRead` run for clients,
    /// the relationships it carries read, virtual properties computed, `_meta` when asked for,
    /// then `_fields` applied.
    pub(super) fn view(&self, stored: StoredObject, fields: &FieldSelection) -> Result<Resource> {
        let shown = self.relationships_shown(fields);
        let related = self.related([(stored.id.as_str(), &stored.content)], &shown)?;
        self.view_of_related(stored, fields, related)
    }

    /// [`Self::view`] of an object whose edges are `edges` (all of them: a create knows what it
    /// wrote), without reading them.
    pub(super) fn view_with_edges(
        &self,
        stored: StoredObject,
        fields: &FieldSelection,
        edges: &[Edge],
    ) -> Result<Resource> {
        let shown = self.relationships_shown(fields);
        let related = self.assemble(vec![(stored.id.as_str(), &stored.content)], &shown, edges);
        self.view_of_related(stored, fields, related)
    }

    /// The view of `stored` with `related`, the values of its relationships shown, by object id.
    fn view_of_related(
        &self,
        stored: StoredObject,
        fields: &FieldSelection,
        mut related: HashMap<String, Object>,
    ) -> Result<Resource> {
        self.add_effective_assignments(&mut related, fields)?;
        self.expand_references(&mut related, fields)?;
        let related = related.remove(&stored.id).unwrap_or_default();
        self.view_related(stored, fields, related)
    }

    /// [`Self::view`] with the object's relationships already read (a query reads those of a
    /// whole page at once).
    pub(super) fn view_related(
        &self,
        stored: StoredObject,
        fields: &FieldSelection,
        related: Object,
    ) -> Result<Resource> {
        let StoredObject {
            id,
            rev,
            content: mut visible,
            meta,
            ..
        } = stored;
        let mut virtuals: Vec<(String, Value)> = Vec::with_capacity(self.object_type.virtuals.len());
        for virtual_property in &self.object_type.virtuals {
            let value = match virtual_property.name.as_str() {
                EFFECTIVE_ROLES => {
                    let catalog = crate::service::roles::catalog(&self.ctx.state)?;
                    effective_roles(&related, &catalog, self.ctx.now_millis())
                }
                EFFECTIVE_ASSIGNMENTS => related
                    .get(EFFECTIVE_ASSIGNMENTS)
                    .cloned()
                    .unwrap_or_else(|| virtual_property.default.clone()),
                _ => virtual_property.default.clone(),
            };
            virtuals.push((virtual_property.name.clone(), value));
        }
        visible.extend(related);
        if self.ctx.is_client() {
            for private in &self.object_type.private {
                visible.remove(private);
            }
            if let Some(on_read) = &self.object_type.triggers.on_read {
                visible = self.run_trigger(on_read, &id, &visible, None)?;
            }
        }
        visible.extend(virtuals);
        if fields.mentions("_notifications") {
            visible.insert("_notifications".to_owned(), Value::Array(Vec::new()));
        }
        if fields.mentions("_meta") {
            visible.insert("_meta".to_owned(), Value::Object(self.meta_with_lockout(&id, meta)?));
        }
        Ok(Resource {
            content: fields.select_owned(visible, self.object_type),
            id,
            rev,
        })
    }

    /// The stored metadata of object `id` plus its failed logins and lock, when it has any.
    fn meta_with_lockout(&self, id: &str, mut meta: Object) -> Result<Object> {
        let principal = format!("{}/{}", self.collection(), id);
        if let Some(failure) = self.ctx.state.store.login_failure(&principal).map_err(storage_error)? {
            meta.insert("failedLogins".to_owned(), Value::from(failure.failures));
            if failure.locked_at(self.ctx.now_millis()) {
                let until = chrono::DateTime::from_timestamp_millis(failure.locked_until).unwrap_or_default();
                meta.insert(
                    "lockedUntil".to_owned(),
                    Value::String(ferridm_core::time::format_iso(until)),
                );
            }
        }
        Ok(meta)
    }

    /// Metadata of a new object: dates of the tracked properties, profile completeness.
    pub(super) fn new_meta(&self, content: &Object) -> Object {
        let now = self.ctx.now_iso();
        let mut meta = Object::new();
        if self.tracked("createDate") {
            meta.insert("createDate".to_owned(), Value::String(now.clone()));
        }
        if self.tracked("lastChanged") {
            meta.insert("lastChanged".to_owned(), json!({"date": now}));
        }
        self.track_completeness(&mut meta, content);
        meta
    }

    /// Metadata after a change, or `None` when it stays as it was.
    pub(super) fn changed_meta(&self, current: &Object, content: &Object) -> Option<Object> {
        let mut meta = current.clone();
        if self.tracked("lastChanged") {
            meta.insert("lastChanged".to_owned(), json!({"date": self.ctx.now_iso()}));
        }
        self.track_completeness(&mut meta, content);
        (meta != *current).then_some(meta)
    }

    fn tracked(&self, property: &str) -> bool {
        self.object_type
            .schema
            .raw
            .get("meta")
            .and_then(|meta| meta.get("trackedProperties"))
            .and_then(Value::as_array)
            .is_some_and(|tracked| tracked.iter().any(|p| p.as_str() == Some(property)))
    }

    /// `profileCompleteness` kept current in the metadata of users.
    fn track_completeness(&self, meta: &mut Object, content: &Object) {
        if self.object_type.name() != "user" {
            return;
        }
        match self.ctx.generation.completeness.score(&Value::Object(content.clone())) {
            Ok(score) => {
                meta.insert("profileCompleteness".to_owned(), Value::from(score));
            }
            Err(error) => tracing::error!("profile completeness could not be computed: {error}"),
        }
    }
}
