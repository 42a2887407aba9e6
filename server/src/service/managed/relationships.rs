//! Relationship properties of managed objects (IDM §2.9, §2.11): references written in an
//! object's content are taken out of it and stored as edges (`ferridm_store::Edge`); reads put
//! them back in IDM's wire shape, `{_ref, _refResourceCollection, _refResourceId,
//! _refProperties: {_id, _rev, …}}`, for the relationships a response carries, one query for a
//! whole page of objects. `effectiveRoles` and `effectiveAssignments` are computed from the
//! `roles` edges natively.
//!
//! Objects written before relationships had edges may still hold references inline; they are
//! shown with the edges and move into edges on the object's next write.

use std::borrow::Cow;
use std::collections::HashMap;

use ferridm_core::fields::FieldSelection;
use ferridm_core::patch::{PatchOp, PatchOperation};
use ferridm_core::query::QueryResponse;
use ferridm_core::{Error, JsonPointer, Object, Result};
use ferridm_store::{Edge, EdgeTarget, RelationshipSet};
use serde_json::{Value, json};

use super::{ManagedObjects, QueryRequest};
use crate::config::RelationshipProperty;
use crate::service::roles::{ROLE_COLLECTION, ROLES, RoleCatalog, TEMPORAL_CONSTRAINTS, within};
use crate::service::storage_error;

/// The relationship of roles to their assignments.
const ASSIGNMENTS: &str = "assignments";
/// The virtual property listing a user's roles.
pub(super) const EFFECTIVE_ROLES: &str = "effectiveRoles";
/// The virtual property listing the assignments of a user's roles.
pub(super) const EFFECTIVE_ASSIGNMENTS: &str = "effectiveAssignments";

/// The wire form of an edge, seen from its owner.
fn reference(edge: &Edge) -> Value {
    let mut properties = edge.properties.clone();
    properties.insert("_id".to_owned(), Value::String(edge.id.clone()));
    properties.insert("_rev".to_owned(), Value::String(edge.rev.to_string()));
    json!({
        "_ref": format!("{}/{}", edge.collection, edge.target_id),
        "_refResourceCollection": edge.collection,
        "_refResourceId": edge.target_id,
        "_refProperties": properties,
    })
}

/// The target a reference names: its `_ref` split into collection and id, and its
/// `_refProperties` without the edge's `_id` and `_rev`.
fn target_of(property: &RelationshipProperty, reference: &Value) -> Result<EdgeTarget> {
    let invalid = |why: &str| {
        Error::bad_request(format!(
            "The value of relationship property '{}' is not valid: {why}",
            property.name
        ))
    };
    let Value::Object(reference) = reference else {
        return Err(invalid("each reference must be an object with a _ref"));
    };
    let Some(Value::String(path)) = reference.get("_ref") else {
        return Err(invalid("a reference has no _ref"));
    };
    let Some((collection, id)) = path.rsplit_once('/').filter(|(c, id)| !c.is_empty() && !id.is_empty()) else {
        return Err(invalid(&format!("'{path}' names no object")));
    };
    if !property.collections.is_empty() && !property.collections.iter().any(|c| c == collection) {
        return Err(invalid(&format!(
            "'{path}' is not in its resource collections ({})",
            property.collections.join(", ")
        )));
    }
    let mut properties = match reference.get("_refProperties") {
        None | Some(Value::Null) => Object::new(),
        Some(Value::Object(properties)) => properties.clone(),
        Some(_) => return Err(invalid("_refProperties must be an object")),
    };
    properties.remove("_id");
    properties.remove("_rev");
    if !properties
        .get(TEMPORAL_CONSTRAINTS)
        .is_none_or(crate::service::roles::valid_constraints)
    {
        return Err(invalid(
            "temporalConstraints must be an array of {\"duration\": \"<start>/<end>\"} with ISO-8601 dates",
        ));
    }
    Ok(EdgeTarget {
        collection: collection.to_owned(),
        id: id.to_owned(),
        properties,
    })
}

/// The targets a property's value names, each once (the first mention wins).
pub(super) fn targets_of(property: &RelationshipProperty, value: &Value) -> Result<Vec<EdgeTarget>> {
    let references: Vec<&Value> = match value {
        Value::Null => Vec::new(),
        Value::Array(items) if property.many => items.iter().collect(),
        Value::Array(_) => {
            return Err(Error::bad_request(format!(
                "The relationship property '{}' holds one reference, not an array",
                property.name
            )));
        }
        single if !property.many => vec![single],
        _ => {
            return Err(Error::bad_request(format!(
                "The relationship property '{}' holds an array of references",
                property.name
            )));
        }
    };
    let mut targets: Vec<EdgeTarget> = Vec::with_capacity(references.len());
    for reference in references {
        let target = target_of(property, reference)?;
        if !targets
            .iter()
            .any(|t| t.collection == target.collection && t.id == target.id)
        {
            targets.push(target);
        }
    }
    Ok(targets)
}

/// The targets in a comparable order.
fn sorted(mut targets: Vec<EdgeTarget>) -> Vec<EdgeTarget> {
    targets.sort_by(|a, b| (&a.collection, &a.id).cmp(&(&b.collection, &b.id)));
    targets
}

impl ManagedObjects<'_> {
    /// Takes the relationship properties `content` holds out of it and returns the edges each
    /// must hold after the write. A reference to a missing object of a `validate`d
    /// relationship is refused (400), as is a value that is no reference.
    pub(super) fn take_relationships(&self, content: &mut Object) -> Result<Vec<RelationshipSet>> {
        let sets = self.take_relationships_unchecked(content)?;
        for set in &sets {
            if self.object_type.relationship(&set.property).is_some_and(|p| p.validate) {
                for target in &set.targets {
                    self.check_target_exists(target)?;
                }
            }
        }
        Ok(sets)
    }

    /// True when the objects `property` refers to hold its reverse as one reference (each of a
    /// user's `reports` has one `manager`).
    fn reverse_is_single(&self, property: &RelationshipProperty) -> bool {
        let Some(reverse) = &property.reverse else {
            return false;
        };
        property
            .collections
            .iter()
            .filter_map(|collection| collection.strip_prefix("managed/"))
            .filter_map(|name| self.ctx.generation.managed.get(name))
            .filter_map(|target_type| target_type.relationship(reverse))
            .any(|reverse| !reverse.many)
    }

    /// [`Self::take_relationships`] without looking the referenced objects up.
    pub(super) fn take_relationships_unchecked(&self, content: &mut Object) -> Result<Vec<RelationshipSet>> {
        let mut sets = Vec::new();
        for property in &self.object_type.relationships {
            let Some(value) = content.shift_remove(&property.name) else {
                continue;
            };
            let targets = targets_of(property, &value)?;
            sets.push(RelationshipSet {
                property: property.name.clone(),
                reverse: property.reverse.clone(),
                reverse_single: self.reverse_is_single(property),
                targets,
            });
        }
        Ok(sets)
    }

    /// The relationships of an object being imported, taken out of it: as a write takes them,
    /// except that a single reference may come as an array of one (as an export writes every
    /// relationship), and the referenced objects are not looked up (they may come later in
    /// the same import).
    pub fn take_imported_relationships(&self, content: &mut Object) -> Result<Vec<RelationshipSet>> {
        for property in self.object_type.relationships.iter().filter(|p| !p.many) {
            if let Some(Value::Array(items)) = content.get_mut(&property.name)
                && items.len() <= 1
            {
                let single = items.pop().unwrap_or(Value::Null);
                content.insert(property.name.clone(), single);
            }
        }
        self.take_relationships_unchecked(content)
    }

    /// Refuses a reference to a managed object that does not exist.
    fn check_target_exists(&self, target: &EdgeTarget) -> Result<()> {
        let Some(type_name) = target.collection.strip_prefix("managed/") else {
            return Ok(());
        };
        let exists = self.ctx.generation.managed.get(type_name).is_some()
            && self
                .ctx
                .state
                .store
                .get(type_name, &target.id)
                .map_err(storage_error)?
                .is_some();
        if exists {
            Ok(())
        } else {
            Err(Error::bad_request(format!(
                "The referenced relationship '{}/{}', does not exist",
                target.collection, target.id
            )))
        }
    }

    /// True when `sets` would change the edges described by `current` (relationship values as
    /// [`Self::related`] gives them).
    pub(super) fn relationships_change(&self, sets: &[RelationshipSet], current: &Object) -> Result<bool> {
        for set in sets {
            let Some(property) = self.object_type.relationship(&set.property) else {
                continue;
            };
            let before = targets_of(property, current.get(&set.property).unwrap_or(&Value::Null))?;
            if sorted(before) != sorted(set.targets.clone()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The relationship properties and their values, of each object of `stored` (by id),
    /// among `names`: the edges in wire shape (a singleton as one reference or null), with any
    /// references an older write left inline in the content. One query for all of them.
    pub(super) fn related<'s>(
        &self,
        stored: impl IntoIterator<Item = (&'s str, &'s Object)>,
        names: &[&str],
    ) -> Result<HashMap<String, Object>> {
        let stored: Vec<(&str, &Object)> = stored.into_iter().collect();
        if names.is_empty() || stored.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<&str> = stored.iter().map(|(id, _)| *id).collect();
        let edges = self
            .ctx
            .state
            .store
            .edges(&self.collection(), &ids, names)
            .map_err(storage_error)?;
        Ok(self.assemble(stored, names, &edges))
    }

    /// The relationship values of each object of `stored` among `names`, from `edges` (read for
    /// them) and the references an older write left inline: see [`Self::related`].
    pub(super) fn assemble(
        &self,
        stored: Vec<(&str, &Object)>,
        names: &[&str],
        edges: &[Edge],
    ) -> HashMap<String, Object> {
        let mut by_owner: HashMap<&str, Vec<&Edge>> = HashMap::new();
        for edge in edges {
            by_owner.entry(edge.owner_id.as_str()).or_default().push(edge);
        }
        let mut related = HashMap::with_capacity(stored.len());
        for (id, content) in stored {
            let owned = by_owner.get(id).map(Vec::as_slice).unwrap_or_default();
            let mut values = Object::new();
            for name in names {
                let Some(property) = self.object_type.relationship(name) else {
                    continue;
                };
                let mut references: Vec<Value> = owned
                    .iter()
                    .filter(|edge| edge.property == *name)
                    .map(|edge| reference(edge))
                    .collect();
                for legacy in references_in(content.get(*name)).into_iter().cloned() {
                    let reference = legacy.get("_ref").cloned();
                    if !references.iter().any(|r| r.get("_ref") == reference.as_ref()) {
                        references.push(legacy);
                    }
                }
                let value = if property.many {
                    Value::Array(references)
                } else {
                    references.into_iter().next().unwrap_or(Value::Null)
                };
                values.insert((*name).to_owned(), value);
            }
            related.insert(id.to_owned(), values);
        }
        related
    }

    /// The relationship properties a response with `fields` carries (or needs, for the
    /// virtual properties computed from them).
    pub(super) fn relationships_shown(&self, fields: &FieldSelection) -> Vec<&str> {
        let needs_roles =
            self.shows_virtual(fields, EFFECTIVE_ROLES) || self.shows_virtual(fields, EFFECTIVE_ASSIGNMENTS);
        self.object_type
            .relationships
            .iter()
            .filter(|property| {
                fields.mentions(&property.name)
                    || fields.includes_references()
                    || (fields.includes_defaults() && !self.object_type.hidden_relationships.contains(&property.name))
                    || (needs_roles && property.name == ROLES)
            })
            .map(|property| property.name.as_str())
            .collect()
    }

    /// The relationship properties a write replacing `current` must read to keep: those in
    /// `wanted`, and those an older write left inline in its content (which move into edges
    /// now, with the edges already there).
    pub(super) fn relationships_kept<'n>(&'n self, current: &Object, wanted: &[&'n str]) -> Vec<&'n str> {
        self.object_type
            .relationships
            .iter()
            .map(|property| property.name.as_str())
            .filter(|name| wanted.contains(name) || current.contains_key(*name))
            .collect()
    }

    /// The relationship properties `content` names.
    pub(super) fn relationships_among_keys(&self, content: &Object) -> Vec<&str> {
        self.object_type
            .relationships
            .iter()
            .map(|property| property.name.as_str())
            .filter(|name| content.contains_key(*name))
            .collect()
    }

    /// The relationship properties among `touched`.
    pub(super) fn relationships_among(&self, touched: &[String]) -> Vec<&str> {
        self.object_type
            .relationships
            .iter()
            .map(|property| property.name.as_str())
            .filter(|name| touched.iter().any(|t| t == name))
            .collect()
    }

    /// The relationship property `name` of this type, or the 403 of any other sub-object.
    fn relationship_named(&self, name: &str) -> Result<&RelationshipProperty> {
        self.object_type.relationship(name).ok_or_else(super::sub_object)
    }

    /// [`Self::relationship_named`] for a change of its references: a client other than an
    /// administrator may change only the relationships users may edit (as a patch of them).
    fn editable_relationship(&self, name: &str) -> Result<&RelationshipProperty> {
        let property = self.relationship_named(name)?;
        let admin = self.caller_is_admin();
        let editable = self
            .object_type
            .schema
            .property(name)
            .is_some_and(|schema| schema.user_editable);
        if self.ctx.is_client() && !admin && !editable {
            return Err(Error::Forbidden("Access denied".into()));
        }
        Ok(property)
    }

    /// The references relationship `name` of object `id` holds, each as a sub-resource: with
    /// its edge's `_id` and `_rev` beside the reference.
    fn relationship_items(&self, id: &str, name: &str) -> Result<Vec<Object>> {
        let stored = self.load(id)?;
        let related = self
            .related([(stored.id.as_str(), &stored.content)], &[name])?
            .remove(&stored.id)
            .unwrap_or_default();
        Ok(references_in(related.get(name))
            .into_iter()
            .filter_map(|reference| match reference {
                Value::Object(reference) => Some(as_item(reference.clone())),
                _ => None,
            })
            .collect())
    }

    /// `GET managed/<type>/<id>/<relationship>?_queryFilter=…`: the object's references that
    /// match, paged (an object's references are read at once, as a read of it would).
    pub fn query_relationship(&self, id: &str, name: &str, request: &QueryRequest) -> Result<QueryResponse> {
        self.relationship_named(name)?;
        let matching: Vec<Value> = self
            .relationship_items(id, name)?
            .into_iter()
            .map(Value::Object)
            .filter(|item| ferridm_core::filter::matches(&request.filter, item))
            .collect();
        let offset = usize::try_from(request.paging.offset).unwrap_or(usize::MAX);
        let page_size = request
            .paging
            .page_size
            .map_or(usize::MAX, |size| usize::try_from(size).unwrap_or(usize::MAX));
        let total = matching.len() as u64;
        Ok(QueryResponse {
            result: matching.into_iter().skip(offset).take(page_size).collect(),
            paged_results_cookie: None,
            total: request.paging.page_size.map(|_| total),
        })
    }

    /// `GET managed/<type>/<id>/<relationship>/<edge id>`: one reference.
    pub fn read_relationship(&self, id: &str, name: &str, edge_id: &str) -> Result<Object> {
        self.relationship_named(name)?;
        self.relationship_items(id, name)?
            .into_iter()
            .find(|item| item.get("_id").and_then(Value::as_str) == Some(edge_id))
            .ok_or_else(|| Error::object_not_found(&format!("{}/{id}/{name}", self.collection()), edge_id))
    }

    /// `POST managed/<type>/<id>/<relationship>?_action=create`: adds a reference (replaces it,
    /// for a single one) as a patch of the object would, with the same checks; returns it.
    pub fn create_relationship(&self, id: &str, name: &str, reference: Object) -> Result<Object> {
        let property = self.editable_relationship(name)?;
        let target = target_of(property, &Value::Object(reference.clone()))?;
        let path = format!("{}/{}", target.collection, target.id);
        let same_target = |item: &Object| item.get("_ref").and_then(Value::as_str) == Some(path.as_str());
        if self.relationship_items(id, name)?.iter().any(same_target) {
            return Err(Error::PreconditionFailed(format!(
                "{}/{id} already holds a {name} relationship to {path}",
                self.collection()
            )));
        }
        let field = if property.many {
            format!("/{name}/-")
        } else {
            format!("/{name}")
        };
        let operation = if property.many { "add" } else { "replace" };
        self.patch_relationship(
            id,
            json!([{"operation": operation, "field": field, "value": reference}]),
        )?;
        self.relationship_items(id, name)?
            .into_iter()
            .find(same_target)
            .ok_or_else(|| Error::internal("the new relationship was not stored"))
    }

    /// `DELETE managed/<type>/<id>/<relationship>/<edge id>`: removes a reference as a patch
    /// of the object would; returns it as it was.
    pub fn delete_relationship(&self, id: &str, name: &str, edge_id: &str) -> Result<Object> {
        let property = self.editable_relationship(name)?;
        let item = self.read_relationship(id, name, edge_id)?;
        let operation = if property.many {
            json!([{"operation": "remove", "field": format!("/{name}"), "value": {"_ref": item.get("_ref")}}])
        } else {
            json!([{"operation": "remove", "field": format!("/{name}")}])
        };
        self.patch_relationship(id, operation)?;
        Ok(item)
    }

    fn patch_relationship(&self, id: &str, operations: Value) -> Result<()> {
        let operations = ferridm_core::patch::parse_patch(&operations).map_err(Error::from)?;
        self.patch(id, None, &operations, &FieldSelection::parse(["_id"]))?;
        Ok(())
    }

    /// Adds `effectiveAssignments` to the related values of each object of `related` when a
    /// response with `fields` carries it: the assignments of every role of the objects, read
    /// at once (the roles' `assignments` edges in one query, each assignment once), each object
    /// as stored.
    pub(super) fn add_effective_assignments(
        &self,
        related: &mut HashMap<String, Object>,
        fields: &FieldSelection,
    ) -> Result<()> {
        if !self.shows_virtual(fields, EFFECTIVE_ASSIGNMENTS) || self.ctx.generation.managed.get("assignment").is_none()
        {
            return Ok(());
        }
        let catalog = crate::service::roles::catalog(&self.ctx.state)?;
        let now = self.ctx.now_millis();
        let roles_of: HashMap<&str, Vec<String>> = related
            .iter()
            .map(|(id, values)| (id.as_str(), managed_role_ids(&effective_roles(values, &catalog, now))))
            .collect();
        let mut all_roles: Vec<&str> = roles_of.values().flatten().map(String::as_str).collect();
        all_roles.sort_unstable();
        all_roles.dedup();
        if all_roles.is_empty() {
            return Ok(());
        }
        let store = &self.ctx.state.store;
        let edges = store
            .edges("managed/role", &all_roles, &[ASSIGNMENTS])
            .map_err(storage_error)?;
        let mut assignments: HashMap<&str, Value> = HashMap::new();
        for edge in edges.iter().filter(|edge| edge.collection == "managed/assignment") {
            if assignments.contains_key(edge.target_id.as_str()) {
                continue;
            }
            if let Some(stored) = store.get("assignment", &edge.target_id).map_err(storage_error)? {
                let mut assignment = Object::with_capacity(stored.content.len() + 2);
                assignment.insert("_id".to_owned(), Value::String(stored.id));
                assignment.insert("_rev".to_owned(), Value::String(stored.rev.to_string()));
                assignment.extend(stored.content);
                assignments.insert(&edge.target_id, Value::Object(assignment));
            }
        }
        let mut effective: Vec<(String, Value)> = Vec::with_capacity(roles_of.len());
        for (id, roles) in &roles_of {
            let mut seen: Vec<&str> = Vec::new();
            let mut list = Vec::new();
            for edge in edges.iter().filter(|edge| roles.contains(&edge.owner_id)) {
                if let Some(assignment) = assignments.get(edge.target_id.as_str())
                    && !seen.contains(&edge.target_id.as_str())
                {
                    seen.push(&edge.target_id);
                    list.push(assignment.clone());
                }
            }
            effective.push(((*id).to_owned(), Value::Array(list)));
        }
        for (id, list) in effective {
            if let Some(values) = related.get_mut(&id) {
                values.insert(EFFECTIVE_ASSIGNMENTS.to_owned(), list);
            }
        }
        Ok(())
    }

    /// Expands the references `fields` asks into (`roles/name`, `manager/userName`, `roles/*`)
    /// in each object's related values: each reference gets the fields named below the
    /// relationship, read from the object it refers to (the objects of a whole page read at
    /// once, one statement per collection; private properties stay hidden from clients). A
    /// reference to an object that cannot be read gets `_refError` and `_refErrorMessage`.
    pub(super) fn expand_references(
        &self,
        related: &mut HashMap<String, Object>,
        fields: &FieldSelection,
    ) -> Result<()> {
        let mut expansions: Vec<(&str, Vec<JsonPointer>)> = Vec::new();
        for pointer in fields.pointers() {
            let Some(name) = pointer
                .first()
                .filter(|name| self.object_type.relationship(name).is_some())
            else {
                continue;
            };
            if pointer.len() < 2 {
                continue;
            }
            let rest = pointer.relative();
            match expansions.iter_mut().find(|(n, _)| *n == name) {
                Some((_, wanted)) => wanted.push(rest),
                None => expansions.push((name, vec![rest])),
            }
        }
        if expansions.is_empty() {
            return Ok(());
        }
        let mut wanted: HashMap<String, Vec<String>> = HashMap::new();
        for values in related.values() {
            for (name, _) in &expansions {
                for reference in references_in(values.get(*name)) {
                    if let Some((collection, id)) = reference_target(reference) {
                        let ids = wanted.entry(collection.to_owned()).or_default();
                        if !ids.iter().any(|known| known == id) {
                            ids.push(id.to_owned());
                        }
                    }
                }
            }
        }
        let mut found: HashMap<(String, String), Object> = HashMap::new();
        for (collection, ids) in &wanted {
            for (id, object) in self.referenced_objects(collection, ids)? {
                found.insert((collection.clone(), id), object);
            }
        }
        for values in related.values_mut() {
            for (name, pointers) in &expansions {
                let Some(value) = values.get_mut(*name) else {
                    continue;
                };
                let items: Vec<&mut Value> = match value {
                    Value::Array(items) => items.iter_mut().collect(),
                    Value::Null => Vec::new(),
                    single => vec![single],
                };
                for item in items {
                    let Some((collection, id)) = reference_target(item).map(|(c, i)| (c.to_owned(), i.to_owned()))
                    else {
                        continue;
                    };
                    let Value::Object(reference) = item else {
                        continue;
                    };
                    match found.get(&(collection.clone(), id.clone())) {
                        Some(target) => merge_fields(reference, target, pointers),
                        None => {
                            reference.insert("_refError".to_owned(), Value::Bool(true));
                            reference.insert(
                                "_refErrorMessage".to_owned(),
                                Value::String(Error::object_not_found(&collection, &id).to_string()),
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The objects of `collection` among `ids` that can be read, each as a client may see it
    /// (with `_id` and `_rev`), by id. Internal roles are named by their ids.
    fn referenced_objects(&self, collection: &str, ids: &[String]) -> Result<Vec<(String, Object)>> {
        if collection == "internal/role" {
            return Ok(ids
                .iter()
                .map(|id| {
                    let mut role = Object::new();
                    role.insert("_id".to_owned(), Value::String(id.clone()));
                    role.insert("name".to_owned(), Value::String(id.clone()));
                    (id.clone(), role)
                })
                .collect());
        }
        let Some(target_type) = collection
            .strip_prefix("managed/")
            .and_then(|name| self.ctx.generation.managed.get(name))
        else {
            return Ok(Vec::new());
        };
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let stored = self
            .ctx
            .state
            .store
            .get_many(target_type.name(), &ids)
            .map_err(storage_error)?;
        Ok(stored
            .into_iter()
            .map(|object| {
                let mut visible = Object::with_capacity(object.content.len() + 2);
                visible.insert("_id".to_owned(), Value::String(object.id.clone()));
                visible.insert("_rev".to_owned(), Value::String(object.rev.to_string()));
                visible.extend(object.content);
                if self.ctx.is_client() {
                    for private in target_type.private.iter().chain(&target_type.hashed) {
                        visible.remove(private);
                    }
                }
                (object.id, visible)
            })
            .collect())
    }

    /// True when a response with `fields` carries the virtual property `name`.
    fn shows_virtual(&self, fields: &FieldSelection, name: &str) -> bool {
        self.object_type
            .virtuals
            .iter()
            .any(|v| v.name == name && (fields.mentions(name) || (fields.includes_defaults() && v.return_by_default)))
    }
}

/// The references a relationship value holds (an array of them, one, or none).
fn references_in(value: Option<&Value>) -> Vec<&Value> {
    match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(single) => vec![single],
    }
}

/// The collection and id a reference names.
fn reference_target(reference: &Value) -> Option<(&str, &str)> {
    reference.get("_ref")?.as_str()?.rsplit_once('/')
}

/// Merges into `reference` the fields of `target` that `pointers` name (each under its first
/// segment; `*` merges every field).
fn merge_fields(reference: &mut Object, target: &Object, pointers: &[JsonPointer]) {
    for pointer in pointers {
        match pointer.first() {
            Some("*") => {
                for (key, value) in target {
                    reference.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
            Some(first) => {
                if let Some(value) = target.get(first) {
                    reference.insert(first.to_owned(), value.clone());
                }
            }
            None => {}
        }
    }
}

/// A reference as a relationship sub-resource: its edge's `_id` and `_rev` first.
fn as_item(reference: Object) -> Object {
    let mut item = Object::with_capacity(reference.len() + 2);
    for key in ["_id", "_rev"] {
        if let Some(value) = reference.get("_refProperties").and_then(|p| p.get(key)) {
            item.insert(key.to_owned(), value.clone());
        }
    }
    item.extend(reference);
    item
}

/// The patch with each `remove` of a reference from a relationship array (`{"_ref": …}`, as
/// clients send it) made to name the reference as a read shows it (with `_refProperties`,
/// `_refResourceId`, …), so that it matches: IDM removes references by `_ref`. A patch
/// touching no relationship is used as it is.
pub(super) fn matching_removals<'o>(operations: &'o [PatchOperation], related: &Object) -> Cow<'o, [PatchOperation]> {
    if related.is_empty() {
        return Cow::Borrowed(operations);
    }
    operations
        .iter()
        .map(|operation| {
            let mut operation = operation.clone();
            if operation.op == PatchOp::Remove
                && operation.field.len() == 1
                && let (Some(Value::Array(current)), Some(removed)) = (
                    operation.field.first().and_then(|name| related.get(name)),
                    operation.value.as_ref(),
                )
                && let Some(path) = removed.get("_ref")
                && let Some(shown) = current.iter().find(|reference| reference.get("_ref") == Some(path))
            {
                operation.value = Some(shown.clone());
            }
            operation
        })
        .collect()
}

/// The ids of the managed roles among `effective_roles`.
fn managed_role_ids(effective_roles: &Value) -> Vec<String> {
    effective_roles
        .as_array()
        .map(|roles| {
            roles
                .iter()
                .filter(|role| role.get("_refResourceCollection").and_then(Value::as_str) == Some(ROLE_COLLECTION))
                .filter_map(|role| role.get("_refResourceId").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `effectiveRoles`: a reference for every role of the `roles` relationship in `related` that
/// is effective at `now`: neither the grant's temporal constraints nor the role's (in
/// `catalog`) exclude it.
pub(super) fn effective_roles(related: &Object, catalog: &RoleCatalog, now: i64) -> Value {
    let roles = related
        .get(ROLES)
        .and_then(Value::as_array)
        .map(|roles| {
            roles
                .iter()
                .filter(|role| {
                    let grant = role.get("_refProperties").and_then(|p| p.get(TEMPORAL_CONSTRAINTS));
                    let role_id = role.get("_refResourceId").and_then(Value::as_str).unwrap_or_default();
                    let managed = role.get("_refResourceCollection").and_then(Value::as_str) == Some(ROLE_COLLECTION);
                    within(grant, now) && (!managed || catalog.effective_at(role_id, now))
                })
                .filter_map(|role| role.get("_ref").and_then(Value::as_str))
                .filter_map(|path| path.rsplit_once('/').map(|(collection, id)| (path, collection, id)))
                .map(|(path, collection, id)| {
                    json!({"_refResourceCollection": collection, "_refResourceId": id, "_ref": path})
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    Value::Array(roles)
}
