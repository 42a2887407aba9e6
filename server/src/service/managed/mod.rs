//! Managed objects (`managed/<type>`): IDM's create, read, update, upsert, patch, delete, query
//! and patch-by-query semantics over the store — schema defaults, private and virtual
//! properties, hashed secrets, revisions and conditional writes, metadata, policies and
//! triggers. The view a caller gets is shaped in [`view`], scripts run in [`triggers`], and the
//! conditional-write loop is [`write`]'s.

mod grants;
pub mod query;
mod relationships;
mod triggers;
pub mod view;
mod write;

use std::rc::Rc;

use ferridm_core::fields::FieldSelection;
use ferridm_core::patch::{self, PatchOperation};
use ferridm_core::query::{Paging, QueryResponse};
use ferridm_core::{Error, Object, Result};
use ferridm_store::{Edge, NewObject, ObjectQuery, ObjectUpdate, StoreError, StoredObject};
use serde_json::{Value, json};

pub use query::QueryRequest;
pub use view::Resource;

use self::triggers::ScriptTransformer;
use self::write::Attempt;
use crate::config::ManagedType;
use crate::policy::{PolicyFailure, PolicyResult};
use crate::resource::error::from_script;
use crate::secrets::password::argon2id_crypto;
use crate::service::context::{Caller, RequestContext};
use crate::service::host::ServerHost;
use crate::service::storage_error;

/// Message of a create/update refused by policy.
const POLICY_FAILED_WRITE: &str = "Policy validation failed";
/// Message of a patch refused by policy.
const POLICY_FAILED_PATCH: &str = "Failed policy validation";
/// The property whose change (like a credential's) ends an account's sessions.
const ACCOUNT_STATUS: &str = "accountStatus";
/// Longest object id accepted.
const MAX_ID_LENGTH: usize = 255;

/// The 400 for an id that can name no object.
fn invalid_id(id: &str) -> Error {
    Error::bad_request(format!(
        "The object id '{}' is not valid: ids are 1 to {MAX_ID_LENGTH} characters without '/' or control characters, and not '.' or '..'",
        id.escape_debug()
    ))
}

/// Checks a client-chosen object id.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LENGTH || id.contains('/') || id == "." || id == ".." {
        return Err(invalid_id(id));
    }
    check_requested_id(id)
}

/// Checks the id a request addresses, for every operation: control characters (a NUL among
/// them) can name no object, and no database should see them.
pub fn check_requested_id(id: &str) -> Result<()> {
    if id.chars().any(char::is_control) {
        return Err(invalid_id(id));
    }
    Ok(())
}

/// A server-assigned object id: a UUID, like IDM's, but of version 7 (time-ordered), so that the
/// indexes keyed by id take new objects at their end instead of on a random page each.
fn new_object_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The error of a request for a sub-object that is no relationship (`managed/<type>/<id>/…`).
pub fn sub_object() -> Error {
    Error::Forbidden("Sub-objects are not supported".into())
}

fn strip_reserved(content: &mut Object) {
    content.remove("_id");
    content.remove("_rev");
    content.remove("_meta");
}

/// Managed-object operations on one type, in one request's context (its generation and caller).
pub struct ManagedObjects<'a> {
    ctx: &'a RequestContext,
    object_type: &'a ManagedType,
}

impl<'a> ManagedObjects<'a> {
    /// Operations on `managed/<type_name>`; unknown types are a 404.
    pub fn new(ctx: &'a RequestContext, type_name: &str) -> Result<Self> {
        let object_type = ctx
            .generation
            .managed
            .get(type_name)
            .ok_or_else(|| Error::NotFound(format!("Resource 'managed/{type_name}' not found")))?;
        Ok(Self { ctx, object_type })
    }

    /// True when the caller is a client with the administrator role.
    fn caller_is_admin(&self) -> bool {
        matches!(&self.ctx.caller, Caller::Client(caller) if caller.session.context.is_admin())
    }

    fn collection(&self) -> String {
        self.object_type.collection()
    }

    fn not_found(&self, id: &str) -> Error {
        Error::object_not_found(&self.collection(), id)
    }

    /// The object as stored (no view applied), for services that work on stored content.
    pub fn stored(&self, id: &str) -> Result<StoredObject> {
        self.load(id)
    }

    fn load(&self, id: &str) -> Result<StoredObject> {
        self.ctx
            .state
            .store
            .get(self.object_type.name(), id)
            .map_err(storage_error)?
            .ok_or_else(|| self.not_found(id))
    }

    fn resource_path(&self, id: Option<&str>) -> String {
        format!("{}/{}", self.collection(), id.unwrap_or("*"))
    }

    fn host(&self, resource: &str) -> Rc<dyn ferridm_plugins::Host> {
        Rc::new(ServerHost::new(self.ctx.as_internal(), Some(resource.to_owned())))
    }

    /// Stores secrets as argon2id hashes. Values already in `$crypto` form (ferridm's, or an
    /// IDM salted hash an administrator brings along) are stored as given, as IDM does.
    fn hash_secrets(&self, content: &mut Object, previous: Option<&Object>) -> Result<()> {
        for property in &self.object_type.hashed {
            let Some(Value::String(plain)) = content.get(property) else {
                continue;
            };
            // A client echoing the stored form back changes nothing.
            if previous.and_then(|p| p.get(property)) == content.get(property) {
                continue;
            }
            let phc = self.ctx.hash_password(plain)?;
            content.insert(property.clone(), argon2id_crypto(phc));
        }
        Ok(())
    }

    fn policy_outcome(&self, outcome: std::result::Result<PolicyResult, PolicyFailure>, message: &str) -> Result<()> {
        match outcome {
            Ok(result) if result.passed() => Ok(()),
            Ok(result) => Err(Error::PolicyFailed {
                message: message.to_owned(),
                detail: result.to_json(),
            }),
            Err(PolicyFailure(error)) => Err(from_script(&error)),
        }
    }

    /// Refuses content beyond what one object may add to the property index (400), before any
    /// policy, trigger or hashing works on it.
    fn check_size(&self, content: &Object) -> Result<()> {
        ferridm_store::check_index_limits(content, &self.object_type.index)
            .map_err(|limit| Error::bad_request(limit.to_string()))
    }

    /// Runs `validateObject` on a whole new object (create, update).
    fn enforce_object(&self, id: Option<&str>, content: &Object) -> Result<()> {
        self.check_role_condition(content, POLICY_FAILED_WRITE)?;
        self.policy_outcome(self.validate_object(id, content), POLICY_FAILED_WRITE)
    }

    /// What `validateObject` says of a whole object as a write would submit it (passed when
    /// this generation does not enforce policies).
    fn validate_object(&self, id: Option<&str>, content: &Object) -> std::result::Result<PolicyResult, PolicyFailure> {
        let policies = &self.ctx.generation.policies;
        if !policies.enforced {
            return Ok(PolicyResult { failed: Vec::new() });
        }
        let path = self.resource_path(id);
        let mut object = content.clone();
        if let Some(id) = id {
            object.insert("_id".to_owned(), Value::String(id.to_owned()));
        }
        policies.validate_object(&self.host(&path), &path, &object)
    }

    /// What this generation's policies say of a stored object written back as it is (an update
    /// that keeps every value), without writing: the check an update runs, with the stored
    /// secrets left out as an update leaves out unchanged ones.
    pub fn revalidate(&self, stored: &StoredObject) -> Result<PolicyResult> {
        let checked = self.without_hashed_secrets(&stored.content, Some(&stored.content));
        self.validate_object(Some(&stored.id), &checked)
            .map_err(|PolicyFailure(error)| from_script(&error))
    }

    /// Runs `validateProperty` on the top-level properties a patch touched.
    fn enforce_patch(&self, id: &str, patched: &Object, touched: &[String]) -> Result<()> {
        self.check_role_condition(patched, POLICY_FAILED_PATCH)?;
        let policies = &self.ctx.generation.policies;
        if !policies.enforced {
            return Ok(());
        }
        let path = self.resource_path(Some(id));
        let outcome = policies.validate_properties(&self.host(&path), &path, patched, touched, patched);
        self.policy_outcome(outcome, POLICY_FAILED_PATCH)
    }

    /// The object a policy sees: secrets that did not change, and secrets an administrator
    /// submits already hashed (a `$crypto` value), are left out: a hash cannot be checked for
    /// length or content. Anyone else's `$crypto` value is checked like any value (and fails a
    /// `string` type), so a user cannot skip the password policies by hashing a weak password.
    fn without_hashed_secrets(&self, next: &Object, previous: Option<&Object>) -> Object {
        let admin = self.caller_is_admin();
        self.secrets_unchecked(next, previous, admin)
    }

    /// [`Self::without_hashed_secrets`] for a caller who is (`admin`) or is not trusted with
    /// `$crypto` values.
    fn secrets_unchecked(&self, next: &Object, previous: Option<&Object>, admin: bool) -> Object {
        let mut checked = next.clone();
        for property in &self.object_type.hashed {
            let Some(value) = checked.get(property) else {
                continue;
            };
            let unchanged = previous.and_then(|p| p.get(property)) == Some(value);
            if unchanged || (admin && value.get("$crypto").is_some()) {
                checked.remove(property);
            }
        }
        checked
    }

    /// A unique-index conflict reported like the policy that guards the property.
    fn unique_conflict(&self, id: Option<&str>, property: &str, message: &str) -> Error {
        let requirement = self
            .ctx
            .generation
            .policies
            .uniqueness_requirement(&self.resource_path(id), property);
        Error::PolicyFailed {
            message: message.to_owned(),
            detail: json!({"result": false, "failedPolicyRequirements": [
                {"policyRequirements": [{"policyRequirement": requirement}], "property": property}
            ]}),
        }
    }

    /// Stores a changed object (update and patch): the `onUpdate` trigger, hashing, metadata,
    /// and the edges of the relationship properties `next` holds (which leave its content).
    fn store_update(&self, id: &str, current: &StoredObject, mut next: Object) -> Result<Attempt> {
        if let Some(on_update) = &self.object_type.triggers.on_update {
            next = self.run_trigger(on_update, id, &next, Some(&current.content))?;
            strip_reserved(&mut next);
        }
        self.hash_secrets(&mut next, Some(&current.content))?;
        let mut relationships = self.take_relationships(&mut next)?;
        let meta = self.changed_meta(&current.meta, &next);
        self.grant_conditional_roles(
            id,
            &next,
            meta.as_ref().unwrap_or(&current.meta),
            Some(current),
            &mut relationships,
        )?;
        Ok(Attempt::Stored(self.ctx.state.store.update_read(
            self.object_type.name(),
            current,
            ObjectUpdate {
                content: &next,
                meta: meta.as_ref(),
                index: &self.object_type.index,
            },
            &relationships,
        )))
    }

    /// True when `next` (a replacement of `current`, relationship properties inline) changes
    /// nothing: the same content, and the relationships it names hold the references they hold
    /// now (`related`: their current values, as [`Self::related`] read them).
    fn unchanged(&self, current: &StoredObject, next: &Object, related: &Object) -> Result<bool> {
        if !self
            .object_type
            .relationships
            .iter()
            .any(|r| next.contains_key(&r.name))
        {
            return Ok(*next == current.content);
        }
        let mut content = next.clone();
        let relationships = self.take_relationships_unchecked(&mut content)?;
        Ok(content == current.content && !self.relationships_change(&relationships, related)?)
    }

    /// Ends the sessions of an account whose credentials (hashed properties) or
    /// `accountStatus` changed, or that was deleted (`after` is `None`), so no cookie issued
    /// before keeps working, on any node, nor for an account re-created under the same id.
    /// Objects of a type without credentials cannot log in, so they have no sessions to end.
    fn end_sessions_on_change(&self, id: &str, before: &Object, after: Option<&Object>) -> Result<()> {
        if self.object_type.hashed.is_empty() {
            return Ok(());
        }
        let changed = after.is_none_or(|after| {
            self.object_type
                .hashed
                .iter()
                .map(String::as_str)
                .chain([ACCOUNT_STATUS])
                .any(|property| before.get(property) != after.get(property))
        });
        if changed {
            crate::service::login::end_sessions(self.ctx, &self.resource_path(Some(id)))?;
        }
        Ok(())
    }

    /// Records a write in the audit trail's activity topic.
    fn audit_write(&self, operation: &str, id: &str, before: Option<&StoredObject>, after: Option<&StoredObject>) {
        let revision = after
            .or(before)
            .map(|stored| stored.rev.to_string())
            .unwrap_or_default();
        self.audit_contents(
            operation,
            id,
            (
                before.map(|stored| &stored.content),
                after.map(|stored| &stored.content),
            ),
            revision,
        );
    }

    /// Records a write of an update or patch that named relationships: the audit's before and
    /// after carry those relationships' references (`related_before`, and as they are now), so
    /// a change of references alone shows in `changedFields`.
    fn audit_related_write(
        &self,
        operation: &str,
        written: (&StoredObject, &StoredObject),
        related_before: Object,
    ) -> Result<()> {
        let (before, after) = written;
        if related_before.is_empty() {
            self.audit_write(operation, &after.id, Some(before), Some(after));
            return Ok(());
        }
        let names: Vec<&str> = related_before.keys().map(String::as_str).collect();
        let related_after = self
            .related([(after.id.as_str(), &after.content)], &names)?
            .remove(&after.id)
            .unwrap_or_default();
        let mut before_content = before.content.clone();
        before_content.extend(related_before);
        let mut after_content = after.content.clone();
        after_content.extend(related_after);
        self.audit_contents(
            operation,
            &after.id,
            (Some(&before_content), Some(&after_content)),
            after.rev.to_string(),
        );
        Ok(())
    }

    /// Records a write's contents (before, after) in the audit trail's activity topic.
    fn audit_contents(
        &self,
        operation: &str,
        id: &str,
        contents: (Option<&Object>, Option<&Object>),
        revision: String,
    ) {
        let hidden: Vec<String> = self
            .object_type
            .private
            .iter()
            .chain(&self.object_type.hashed)
            .cloned()
            .collect();
        crate::service::audit::activity(
            self.ctx,
            &crate::service::audit::ActivityRecord {
                object_id: &self.resource_path(Some(id)),
                operation,
                before: contents.0,
                after: contents.1,
                revision,
                hidden: &hidden,
                password_fields: &self.object_type.hashed,
            },
        );
    }

    /// The response to an update or patch: the new object after its `postUpdate` trigger, or
    /// the object as it was when nothing changed.
    /// `related_before` holds the references of the relationships the write named, as they were.
    fn updated(
        &self,
        operation: &str,
        id: &str,
        written: write::Written,
        fields: &FieldSelection,
        related_before: Object,
    ) -> Result<Resource> {
        match written.after {
            None => self.view(written.before, fields),
            Some(stored) => {
                self.audit_related_write(operation, (&written.before, &stored), related_before)?;
                self.role_written(Some(&written.before.content), Some(&stored.content));
                self.end_sessions_on_change(id, &written.before.content, Some(&stored.content))?;
                self.run_post_trigger(
                    self.object_type.triggers.post_update.as_ref(),
                    id,
                    &stored.content,
                    Some(&written.before.content),
                );
                self.view(stored, fields)
            }
        }
    }

    /// Creates an object. An `_id` in the content overrides `id` (as in IDM); without either
    /// the server assigns a UUID.
    pub fn create(&self, id: Option<String>, content: Object, fields: &FieldSelection) -> Result<Resource> {
        let chosen = match content.get("_id") {
            Some(Value::String(body_id)) => Some(body_id.clone()),
            _ => id,
        };
        let admin = self.caller_is_admin();
        let (id, mut content) = self.validate_new(chosen, content, admin)?;
        for (property, default) in &self.object_type.defaults {
            if !content.contains_key(property) {
                content.insert(property.clone(), default.clone());
            }
        }
        if let Some(on_create) = &self.object_type.triggers.on_create {
            content = self.run_trigger(on_create, &id, &content, None)?;
            strip_reserved(&mut content);
        }
        self.hash_secrets(&mut content, None)?;
        let mut relationships = self.take_relationships(&mut content)?;
        let meta = self.new_meta(&content);
        self.grant_conditional_roles(&id, &content, &meta, None, &mut relationships)?;
        let (stored, edges) = self
            .ctx
            .state
            .store
            .insert_related(
                NewObject {
                    object_type: self.object_type.name(),
                    id: &id,
                    content: &content,
                    meta: &meta,
                    index: &self.object_type.index,
                },
                &relationships,
            )
            .map_err(|error| match error {
                StoreError::UniqueViolation { property } => {
                    self.unique_conflict(Some(&id), &property, POLICY_FAILED_WRITE)
                }
                other => storage_error(other),
            })?;
        self.audit_write("CREATE", &id, None, Some(&stored));
        self.role_written(None, Some(&stored.content));
        let post_create = self.object_type.triggers.post_create.as_ref();
        self.run_post_trigger(post_create, &id, &stored.content, None);
        if post_create.is_some() {
            // The trigger may have changed the object's relationships.
            return self.view(stored, fields);
        }
        self.view_with_edges(stored, fields, &edges)
    }

    /// The checks a create makes before it changes anything: the id, the index limits,
    /// `onValidate` and the policies (with `$crypto` values left out of them when the caller is
    /// `admin`). Returns the id (a new UUID when none was chosen) and the content without
    /// reserved and virtual properties.
    fn validate_new(&self, chosen: Option<String>, mut content: Object, admin: bool) -> Result<(String, Object)> {
        if let Some(chosen) = &chosen {
            check_id(chosen)?;
        }
        strip_reserved(&mut content);
        for virtual_property in &self.object_type.virtuals {
            content.remove(&virtual_property.name);
        }
        self.check_size(&content)?;
        let id = chosen.clone().unwrap_or_else(new_object_id);
        if let Some(on_validate) = &self.object_type.triggers.on_validate {
            self.run_trigger(on_validate, &id, &content, None)?;
        }
        self.enforce_object(chosen.as_deref(), &self.secrets_unchecked(&content, None, admin))?;
        Ok((id, content))
    }

    /// Validates an object an administrator imports under `id` exactly as a create would (see
    /// [`Self::create`]; `$crypto` values are taken as given), without writing anything.
    /// Returns its content as a create would store it when `complete` (schema defaults added,
    /// plain secrets hashed; `onCreate` does not run), else as given.
    pub fn validate_import(&self, id: &str, content: Object, complete: bool) -> Result<Object> {
        let (_, mut content) = self.validate_new(Some(id.to_owned()), content, true)?;
        if complete {
            for (property, default) in &self.object_type.defaults {
                if !content.contains_key(property) {
                    content.insert(property.clone(), default.clone());
                }
            }
            self.hash_secrets(&mut content, None)?;
        }
        Ok(content)
    }

    /// The metadata a create gives `content` now (`createDate`, `lastChanged`, completeness).
    pub fn import_meta(&self, content: &Object) -> Object {
        self.new_meta(content)
    }

    /// The declared type these operations work on.
    pub fn managed_type(&self) -> &ManagedType {
        self.object_type
    }

    /// Reads an object, with the relationships the response carries read on the same
    /// connection; `If-None-Match` naming the current revision answers 304.
    pub fn read(&self, id: &str, fields: &FieldSelection, if_none_match: Option<&str>) -> Result<Resource> {
        let shown = self.relationships_shown(fields);
        let (stored, edges) = self
            .ctx
            .state
            .store
            .get_with_edges(self.object_type.name(), id, &shown)
            .map_err(storage_error)?
            .ok_or_else(|| self.not_found(id))?;
        if if_none_match.is_some_and(|rev| rev == stored.rev.to_string()) {
            return Err(Error::NotModified);
        }
        let mut related = self.assemble(vec![(stored.id.as_str(), &stored.content)], &shown, &edges);
        self.add_effective_assignments(&mut related, fields)?;
        self.expand_references(&mut related, fields)?;
        let related = related.remove(&stored.id).unwrap_or_default();
        self.view_related(stored, fields, related)
    }

    /// Replaces an object. `if_match` is a revision, `*`, or `None` (unconditional, as after an
    /// upsert's failed create).
    pub fn update(
        &self,
        id: &str,
        if_match: Option<&str>,
        mut content: Object,
        fields: &FieldSelection,
    ) -> Result<Resource> {
        if let Some(Value::String(body_id)) = content.get("_id")
            && body_id != id
        {
            return Err(Error::bad_request(format!(
                "The object id in the content ({body_id}) differs from the id in the path ({id})"
            )));
        }
        strip_reserved(&mut content);
        for virtual_property in &self.object_type.virtuals {
            content.remove(&virtual_property.name);
        }
        self.check_size(&content)?;
        let related_before = std::cell::RefCell::new(Object::new());
        let written = self.write_loop(id, if_match, "Update", POLICY_FAILED_WRITE, |current| {
            let mut next = content.clone();
            // Relationships the new content does not name keep their edges; references an
            // older write left inline move into edges, with those. Those it names are read to
            // tell whether they change.
            let named = self.relationships_among_keys(&next);
            let related = self
                .related(
                    [(current.id.as_str(), &current.content)],
                    &self.relationships_kept(&current.content, &named),
                )?
                .remove(&current.id)
                .unwrap_or_default();
            related_before.replace(related.clone());
            for (name, value) in &related {
                if !next.contains_key(name) {
                    next.insert(name.clone(), value.clone());
                }
            }
            for private in &self.object_type.private {
                if !next.contains_key(private)
                    && let Some(value) = current.content.get(private)
                {
                    next.insert(private.clone(), value.clone());
                }
            }
            if self.unchanged(current, &next, &related)? {
                return Ok(Attempt::Unchanged);
            }
            if let Some(on_validate) = &self.object_type.triggers.on_validate {
                self.run_trigger(on_validate, id, &next, Some(&current.content))?;
            }
            self.enforce_object(Some(id), &self.without_hashed_secrets(&next, Some(&current.content)))?;
            self.store_update(id, current, next)
        })?;
        self.updated("UPDATE", id, written, fields, related_before.into_inner())
    }

    /// PUT without conditions: create, or update when the id exists. Returns whether it created.
    pub fn upsert(&self, id: &str, content: Object, fields: &FieldSelection) -> Result<(bool, Resource)> {
        match self.create(Some(id.to_owned()), content.clone(), fields) {
            Ok(resource) => Ok((true, resource)),
            Err(Error::PreconditionFailed(_)) => self.update(id, None, content, fields).map(|r| (false, r)),
            Err(other) => Err(other),
        }
    }

    /// Applies a patch. Without `if_match` (or with `*`) a lost race is retried.
    pub fn patch(
        &self,
        id: &str,
        if_match: Option<&str>,
        operations: &[PatchOperation],
        fields: &FieldSelection,
    ) -> Result<Resource> {
        let transformer = ScriptTransformer { ctx: self.ctx };
        let touched = patch::touched_properties(operations);
        let patched_relationships = self.relationships_among(&touched);
        let related_before = std::cell::RefCell::new(Object::new());
        let written = self.write_loop(id, if_match, "Patch", POLICY_FAILED_PATCH, |current| {
            // The relationships the patch touches are patched as the references a read shows.
            let relationships = self.relationships_kept(&current.content, &patched_relationships);
            let related = self
                .related([(current.id.as_str(), &current.content)], &relationships)?
                .remove(&current.id)
                .unwrap_or_default();
            related_before.replace(related.clone());
            let matched = relationships::matching_removals(operations, &related);
            let mut working = current.content.clone();
            working.extend(related.iter().map(|(name, value)| (name.clone(), value.clone())));
            let mut working = Value::Object(working);
            let modified = patch::apply_patch(&mut working, &matched, &transformer).map_err(Error::from)?;
            let Value::Object(mut next) = working else {
                return Err(Error::bad_request("The patched object is no longer a JSON object"));
            };
            strip_reserved(&mut next);
            for virtual_property in &self.object_type.virtuals {
                next.remove(&virtual_property.name);
            }
            // A relationship the patch removed loses its edges (policies see it absent).
            let removed: Vec<&str> = relationships
                .iter()
                .copied()
                .filter(|name| !next.contains_key(*name))
                .collect();
            next.extend(removed.iter().map(|name| ((*name).to_owned(), Value::Null)));
            if !modified || self.unchanged(current, &next, &related)? {
                return Ok(Attempt::Unchanged);
            }
            self.check_size(&next)?;
            let mut checked = self.without_hashed_secrets(&next, Some(&current.content));
            for name in &removed {
                checked.remove(*name);
            }
            self.enforce_patch(id, &checked, &touched)?;
            self.store_update(id, current, next)
        })?;
        self.updated("PATCH", id, written, fields, related_before.into_inner())
    }

    /// Clears an object's failed logins and lock (administrators' `unlock` action).
    pub fn unlock(&self, id: &str, fields: &FieldSelection) -> Result<Resource> {
        let stored = self.load(id)?;
        let principal = format!("{}/{id}", self.collection());
        self.ctx
            .state
            .store
            .clear_login_failures(&principal)
            .map_err(storage_error)?;
        tracing::info!(principal = %principal, "account unlocked");
        self.view(stored, fields)
    }

    /// Deletes an object and returns it as it was.
    pub fn delete(&self, id: &str, if_match: Option<&str>, fields: &FieldSelection) -> Result<Resource> {
        let written = self.write_loop(id, if_match, "Delete", POLICY_FAILED_WRITE, |current| {
            if let Some(on_delete) = &self.object_type.triggers.on_delete {
                self.run_trigger(on_delete, id, &current.content, None)?;
            }
            Ok(Attempt::Stored(self.ctx.state.store.delete(
                self.object_type.name(),
                id,
                current.rev,
            )))
        })?;
        let deleted = written.after.unwrap_or(written.before);
        self.audit_write("DELETE", id, Some(&deleted), None);
        self.role_written(Some(&deleted.content), None);
        self.end_sessions_on_change(id, &deleted.content, None)?;
        self.run_post_trigger(
            self.object_type.triggers.post_delete.as_ref(),
            id,
            &deleted.content,
            None,
        );
        self.view(deleted, fields)
    }

    fn run_query(
        &self,
        request: &QueryRequest,
        page_size: Option<u32>,
        with_content: bool,
        relationships: &[&str],
    ) -> Result<(ferridm_store::QueryPage, Vec<Edge>)> {
        let limit = self.ctx.generation.settings.max_unpaged_query_results;
        let filter = self.effective_roles_as_grants(&request.filter);
        let query = ObjectQuery {
            object_type: self.object_type.name(),
            filter: &filter,
            sort: &request.sort,
            page_size,
            // Offsets apply only when paging (IDM §3.5).
            offset: if page_size.is_some() { request.paging.offset } else { 0 },
            cookie: request.paging.cookie.as_deref(),
            count: page_size.is_some() && request.paging.count != ferridm_core::query::CountPolicy::None,
            with_content,
            limit,
            index: &self.object_type.index,
            // A query pinned to one object is one index probe, like a read by id, and runs
            // without a limit as reads do (on PostgreSQL, setting one costs two more round
            // trips: the limit, and the reset before the connection's next use).
            time_limit: if query::pins_one_object(&filter, self.object_type) {
                None
            } else {
                self.ctx.generation.settings.queries.time_limit()
            },
        };
        let (page, edges) = self
            .ctx
            .state
            .store
            .query_with_edges(&query, relationships)
            .map_err(storage_error)?;
        if page_size.is_none() && page.objects.len() as u64 > limit {
            return Err(Error::bad_request(format!(
                "The query matches more than {limit} objects; page through the results with _pageSize"
            )));
        }
        Ok((page, edges))
    }

    /// Runs a query and builds IDM's response envelope.
    pub fn query(&self, request: &QueryRequest, fields: &FieldSelection) -> Result<QueryResponse> {
        let ids_only = FieldSelection::parse(["_id"]);
        let fields = if request.ids_only { &ids_only } else { fields };
        // `_fields=_id` shows nothing of the content, which then is not read, unless an
        // `onRead` trigger is to see it.
        let content_unseen =
            request.ids_only || (fields.selects_only_the_id() && self.object_type.triggers.on_read.is_none());
        let shown = self.relationships_shown(fields);
        let (page, edges) = self.run_query(request, request.paging.page_size, !content_unseen, &shown)?;
        let mut related = self.assemble(
            page.objects
                .iter()
                .map(|stored| (stored.id.as_str(), &stored.content))
                .collect(),
            &shown,
            &edges,
        );
        self.add_effective_assignments(&mut related, fields)?;
        self.expand_references(&mut related, fields)?;
        Ok(QueryResponse {
            result: page
                .objects
                .into_iter()
                .map(|stored| {
                    let relationships = related.remove(&stored.id).unwrap_or_default();
                    self.view_related(stored, fields, relationships)
                        .map(Resource::into_json)
                })
                .collect::<Result<Vec<_>>>()?,
            paged_results_cookie: page.cookie,
            total: page.total,
        })
    }

    /// Patch-by-query: exactly one match is patched (unconditionally) and returned.
    pub fn patch_by_query(
        &self,
        request: &QueryRequest,
        operations: &[PatchOperation],
        fields: &FieldSelection,
    ) -> Result<Resource> {
        let probe = QueryRequest {
            ids_only: true,
            paging: Paging::default(),
            ..request.clone()
        };
        let (page, _) = self.run_query(&probe, Some(2), false, &[])?;
        match page.objects.as_slice() {
            [] => Err(Error::NotFound("Query returned no results".into())),
            [only] => self.patch(&only.id, None, operations, fields),
            _ => Err(Error::internal("Query result must yield one matching object")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_slashes_or_control_characters_are_refused() {
        assert!(check_id("bjensen").is_ok());
        assert!(check_id("a/b").is_err());
        assert!(check_id("a\u{7}b").is_err());
        assert!(check_id("").is_err());
        assert!(check_id(&"x".repeat(256)).is_err());
        assert!(check_id(".").is_err() && check_id("..").is_err() && check_id("...").is_ok());
        assert!(check_requested_id("a\u{0}b").is_err() && check_requested_id("a/b").is_ok());
    }
}
