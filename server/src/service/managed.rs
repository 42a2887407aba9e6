//! Managed objects (`managed/<type>`): IDM's create, read, update, upsert, patch, delete, query
//! and patch-by-query semantics over the store — schema defaults, private and virtual
//! properties, hashed secrets, revisions and conditional writes, metadata, and the response view
//! each caller may see.

use std::rc::Rc;
use std::sync::Arc;

use ferridm_core::fields::FieldSelection;
use ferridm_core::filter::{self, ComparisonOp, Filter, FilterError, Literal};
use ferridm_core::patch::{self, PatchOperation, Transformer};
use ferridm_core::query::{Paging, QueryResponse, SortKey};
use ferridm_core::{Error, JsonPointer, Object, Result, Revision};
use ferridm_store::{NewObject, ObjectQuery, ObjectUpdate, StoreError, StoredObject};
use serde_json::{Value, json};

use crate::config::{Generation, ManagedType};
use crate::service::host::ServerHost;
use crate::service::storage_error;
use crate::state::AppState;

/// Message of a create/update refused by policy.
const POLICY_FAILED_WRITE: &str = "Policy validation failed";
/// Message of a patch refused by policy.
const POLICY_FAILED_PATCH: &str = "Failed policy validation";

/// How many times an unconditional write retries after losing a race with another writer.
const WRITE_RETRIES: usize = 16;
/// Longest object id accepted.
const MAX_ID_LENGTH: usize = 255;

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
    pub fn to_json(&self) -> Value {
        let mut out = Object::with_capacity(self.content.len() + 2);
        out.insert("_id".to_owned(), Value::String(self.id.clone()));
        out.insert("_rev".to_owned(), Value::String(self.rev.to_string()));
        for (key, value) in &self.content {
            out.insert(key.clone(), value.clone());
        }
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

/// A parsed query request (`_queryFilter` or `_queryId`, sorting, paging, fields).
#[derive(Debug, Clone)]
pub struct QueryRequest {
    /// The filter to run.
    pub filter: Filter,
    /// Ids and revisions only (`query-all-ids`).
    pub ids_only: bool,
    /// Sort keys.
    pub sort: Vec<SortKey>,
    /// Paging.
    pub paging: Paging,
}

/// The filter for a `_queryFilter` value, with IDM's 400 messages.
pub fn parse_filter(text: &str) -> Result<Filter> {
    let filter = filter::parse(text).map_err(|error| match error {
        FilterError::Invalid => Error::bad_request(format!(
            "The value '{text}' for parameter '_queryFilter' could not be parsed as a valid query filter"
        )),
        FilterError::TooLong { max } => Error::bad_request(format!(
            "The value for parameter '_queryFilter' is longer than {max} characters"
        )),
        FilterError::TooDeep { max } => Error::bad_request(format!(
            "The value for parameter '_queryFilter' is nested deeper than {max} levels"
        )),
    })?;
    if let Some(operator) = filter.first_extended_operator() {
        return Err(Error::bad_request(format!("Unsupported operator {operator}")));
    }
    Ok(filter)
}

/// The filter and shape of a predefined `_queryId` with its arguments.
pub fn predefined_query<'a>(query_id: &str, argument: impl Fn(&str) -> Option<&'a str>) -> Result<(Filter, bool)> {
    let required = |name: &str| {
        argument(name).ok_or_else(|| Error::bad_request(format!("The query {query_id} needs the parameter {name}")))
    };
    let equals = |field: &str, value: &str| Filter::Comparison {
        field: JsonPointer::parse(field),
        op: ComparisonOp::Eq,
        value: Literal::String(value.to_owned()),
    };
    match query_id {
        "query-all-ids" => Ok((Filter::True, true)),
        "query-all" => Ok((Filter::True, false)),
        "for-userName" => Ok((equals("userName", required("uid")?), false)),
        "get-by-field-value" => Ok((equals(required("field")?, required("value")?), false)),
        "credential-query" => Ok((
            Filter::And(vec![
                equals("userName", required("username")?),
                equals("accountStatus", "active"),
            ]),
            false,
        )),
        other => Err(Error::bad_request(format!(
            "The passed query identifier {other} does not match any configured queries on the JDBC repository service."
        ))),
    }
}

/// Checks a client-chosen object id.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LENGTH || id.contains('/') || id.chars().any(char::is_control) {
        return Err(Error::bad_request(format!(
            "The object id '{id}' is not valid: ids are 1 to {MAX_ID_LENGTH} characters without '/' or control characters"
        )));
    }
    Ok(())
}

fn strip_reserved(content: &mut Object) {
    content.remove("_id");
    content.remove("_rev");
    content.remove("_meta");
}

/// Runs a patch `transform` script: Rhai source (a string, or `{"type": "text/rhai",
/// "source": …}`) or a file under the scripts directory, with the field's value as `content`.
/// The script has no host access; its last value replaces the field.
struct ScriptTransformer<'a> {
    generation: &'a Generation,
    paths: &'a crate::config::ConfigPaths,
}

impl Transformer for ScriptTransformer<'_> {
    fn transform(&self, script: &Value, content: Value) -> std::result::Result<Value, String> {
        let here = std::path::Path::new("patch");
        let source =
            crate::scripting::script_source(self.paths, script, here, "transform").map_err(|error| error.message)?;
        if let ferridm_plugins::ScriptSource::File { path, .. } = &source {
            let scripts = self
                .generation
                .script_limits
                .scripts_dir
                .canonicalize()
                .map_err(|e| e.to_string())?;
            if !path.canonicalize().is_ok_and(|resolved| resolved.starts_with(&scripts)) {
                return Err("transform scripts must live in the scripts directory".to_owned());
            }
        }
        let limits = &self.generation.script_limits;
        let compiled = ferridm_plugins::CompiledScript::compile_with(limits, &source, &["content"])
            .map_err(|error| error.to_string())?;
        compiled
            .run(
                limits,
                vec![("content", ferridm_plugins::convert::to_dynamic(&content))],
            )
            .map(|result| ferridm_plugins::convert::to_json(&result))
            .map_err(|error| error.to_string())
    }
}

/// Managed-object operations for one type, as one caller.
pub struct ManagedObjects<'a> {
    state: &'a Arc<AppState>,
    generation: &'a Arc<Generation>,
    object_type: &'a ManagedType,
    external: bool,
}

impl<'a> ManagedObjects<'a> {
    /// Operations on `managed/<type_name>`; unknown types are a 404.
    pub fn new(
        state: &'a Arc<AppState>,
        generation: &'a Arc<Generation>,
        type_name: &str,
        external: bool,
    ) -> Result<Self> {
        let object_type = generation
            .managed
            .get(type_name)
            .ok_or_else(|| Error::NotFound(format!("Resource 'managed/{type_name}' not found")))?;
        Ok(Self {
            state,
            generation,
            object_type,
            external,
        })
    }

    fn collection(&self) -> String {
        self.object_type.collection()
    }

    fn not_found(&self, id: &str) -> Error {
        Error::object_not_found(&self.collection(), id)
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

    /// Stores secrets as argon2id hashes (values already in `$crypto` form are kept).
    fn hash_secrets(&self, content: &mut Object, previous: Option<&Object>) -> Result<()> {
        for property in &self.object_type.hashed {
            let Some(Value::String(plain)) = content.get(property) else {
                continue;
            };
            // A client echoing the stored form back changes nothing.
            if previous.and_then(|p| p.get(property)) == content.get(property) {
                continue;
            }
            let phc = self.state.hasher().hash(plain).map_err(|message| {
                tracing::error!(%message, "password hashing failed");
                Error::internal("Internal Server Error")
            })?;
            content.insert(property.clone(), json!({"$crypto": {"type": "argon2id", "value": phc}}));
        }
        Ok(())
    }

    /// The content a caller may see: private properties removed for HTTP callers, virtual
    /// properties computed, `_meta` when asked for, then `_fields` applied.
    fn view(&self, stored: &StoredObject, fields: &FieldSelection) -> Result<Resource> {
        let mut visible = stored.content.clone();
        if self.external {
            for private in &self.object_type.private {
                visible.remove(private);
            }
            if let Some(on_read) = &self.object_type.triggers.on_read {
                visible = self.run_trigger(on_read, &stored.id, &visible, None)?;
            }
        }
        for virtual_property in &self.object_type.virtuals {
            let value = match virtual_property.name.as_str() {
                "effectiveRoles" => effective_roles(&stored.content),
                _ => virtual_property.default.clone(),
            };
            visible.insert(virtual_property.name.clone(), value);
        }
        if fields.mentions("_notifications") {
            visible.insert("_notifications".to_owned(), Value::Array(Vec::new()));
        }
        if fields.mentions("_meta") {
            let mut meta = stored.meta.clone();
            let principal = format!("{}/{}", self.collection(), stored.id);
            if let Some(failure) = self.state.store.login_failure(&principal).map_err(storage_error)? {
                meta.insert("failedLogins".to_owned(), Value::from(failure.failures));
                if failure.locked_at(chrono::Utc::now().timestamp_millis()) {
                    let until = chrono::DateTime::from_timestamp_millis(failure.locked_until).unwrap_or_default();
                    meta.insert(
                        "lockedUntil".to_owned(),
                        Value::String(ferridm_core::time::format_iso(until)),
                    );
                }
            }
            visible.insert("_meta".to_owned(), Value::Object(meta));
        }
        Ok(Resource {
            id: stored.id.clone(),
            rev: stored.rev,
            content: fields.select(&visible, self.object_type),
        })
    }

    /// Runs a trigger with `object` (and `oldObject`) in scope; returns `object` as the script
    /// left it. Triggers may read and write through the host API.
    fn run_trigger(
        &self,
        script: &ferridm_plugins::CompiledScript,
        id: &str,
        object: &Object,
        old: Option<&Object>,
    ) -> Result<Object> {
        use ferridm_plugins::convert::{to_dynamic, to_json};
        let resource = self.resource_path(Some(id));
        let mut with_id = object.clone();
        with_id.insert("_id".to_owned(), Value::String(id.to_owned()));
        let variables = vec![
            ("object", to_dynamic(&Value::Object(with_id))),
            (
                "oldObject",
                old.map_or(rhai::Dynamic::UNIT, |old| to_dynamic(&Value::Object(old.clone()))),
            ),
            ("resourceName", rhai::Dynamic::from(resource.clone())),
        ];
        let host = self.host(&resource);
        let outcome =
            ferridm_plugins::host::with_host(host, ferridm_plugins::Capability::ReadWrite, script.name(), || {
                script.run_keeping(&self.generation.script_limits, variables, &["object"])
            });
        let (_, kept) = outcome.map_err(|error| crate::scripting::resource_error(&error))?;
        match kept.first().map(to_json) {
            Some(Value::Object(mut changed)) => {
                changed.remove("_id");
                Ok(changed)
            }
            _ => Err(crate::scripting::resource_error(&ferridm_plugins::ScriptError::new(
                script.name(),
                ferridm_plugins::error::ScriptErrorKind::Runtime,
                "the trigger left `object` not an object",
            ))),
        }
    }

    /// Runs an after-the-fact trigger; failures are logged (the write already happened).
    fn run_post_trigger(
        &self,
        script: Option<&Arc<ferridm_plugins::CompiledScript>>,
        id: &str,
        object: &Object,
        old: Option<&Object>,
    ) {
        if let Some(script) = script
            && let Err(error) = self.run_trigger(script, id, object, old)
        {
            tracing::error!(
                script.name = script.name(),
                object.id = id,
                "post trigger failed: {error}"
            );
        }
    }

    /// `profileCompleteness` kept current in the metadata of users.
    fn track_completeness(&self, meta: &mut Object, content: &Object) {
        if self.object_type.name() != "user" {
            return;
        }
        match self.generation.completeness.score(&Value::Object(content.clone())) {
            Ok(score) => {
                meta.insert("profileCompleteness".to_owned(), Value::from(score));
            }
            Err(error) => tracing::error!("profile completeness could not be computed: {error}"),
        }
    }

    fn new_meta(&self, content: &Object) -> Object {
        let now = ferridm_core::time::now_iso();
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

    fn changed_meta(&self, current: &Object, content: &Object) -> Option<Object> {
        let mut meta = current.clone();
        if self.tracked("lastChanged") {
            meta.insert("lastChanged".to_owned(), json!({"date": ferridm_core::time::now_iso()}));
        }
        self.track_completeness(&mut meta, content);
        (meta != *current).then_some(meta)
    }

    fn load(&self, id: &str) -> Result<StoredObject> {
        self.state
            .store
            .get(self.object_type.name(), id)
            .map_err(storage_error)?
            .ok_or_else(|| self.not_found(id))
    }

    fn resource_path(&self, id: Option<&str>) -> String {
        format!("{}/{}", self.collection(), id.unwrap_or("*"))
    }

    fn host(&self, resource: &str) -> Rc<dyn ferridm_plugins::Host> {
        Rc::new(ServerHost::new(
            Arc::clone(self.state),
            Arc::clone(self.generation),
            Some(resource.to_owned()),
        ))
    }

    fn policy_outcome(
        &self,
        outcome: std::result::Result<crate::policy::PolicyResult, crate::policy::PolicyFailure>,
        message: &str,
    ) -> Result<()> {
        match outcome {
            Ok(result) if result.passed() => Ok(()),
            Ok(result) => Err(Error::PolicyFailed {
                message: message.to_owned(),
                detail: result.to_json(),
            }),
            Err(crate::policy::PolicyFailure(error)) => Err(crate::scripting::resource_error(&error)),
        }
    }

    /// Runs `validateObject` on a whole new object (create, update).
    fn enforce_object(&self, id: Option<&str>, content: &Object) -> Result<()> {
        let policies = &self.generation.policies;
        if !policies.enforced {
            return Ok(());
        }
        let path = self.resource_path(id);
        let mut object = content.clone();
        if let Some(id) = id {
            object.insert("_id".to_owned(), Value::String(id.to_owned()));
        }
        let outcome = policies.validate_object(&self.host(&path), &path, &object);
        self.policy_outcome(outcome, POLICY_FAILED_WRITE)
    }

    /// Runs `validateProperty` on the top-level properties a patch touched.
    fn enforce_patch(&self, id: &str, patched: &Object, touched: &[String]) -> Result<()> {
        let policies = &self.generation.policies;
        if !policies.enforced {
            return Ok(());
        }
        let path = self.resource_path(Some(id));
        let outcome = policies.validate_properties(&self.host(&path), &path, patched, touched, patched);
        self.policy_outcome(outcome, POLICY_FAILED_PATCH)
    }

    /// The object a policy sees: hashed values that did not change are left out (they cannot
    /// be checked again once hashed).
    fn without_unchanged_secrets(&self, next: &Object, previous: &Object) -> Object {
        let mut checked = next.clone();
        for property in &self.object_type.hashed {
            if checked.get(property).is_some() && checked.get(property) == previous.get(property) {
                checked.remove(property);
            }
        }
        checked
    }

    /// A unique-index conflict reported like the policy that guards the property.
    fn unique_conflict(&self, id: Option<&str>, property: &str, message: &str) -> Error {
        let requirement = self
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

    /// Creates an object. An `_id` in the content overrides `id` (as in IDM); without either
    /// the server assigns a UUID.
    pub fn create(&self, id: Option<String>, mut content: Object, fields: &FieldSelection) -> Result<Resource> {
        let chosen = match content.get("_id") {
            Some(Value::String(body_id)) => Some(body_id.clone()),
            _ => id,
        };
        if let Some(chosen) = &chosen {
            check_id(chosen)?;
        }
        strip_reserved(&mut content);
        for virtual_property in &self.object_type.virtuals {
            content.remove(&virtual_property.name);
        }
        let id = chosen.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let Some(on_validate) = &self.object_type.triggers.on_validate {
            self.run_trigger(on_validate, &id, &content, None)?;
        }
        self.enforce_object(chosen.as_deref(), &content)?;
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
        let meta = self.new_meta(&content);
        let stored = self
            .state
            .store
            .insert(NewObject {
                object_type: self.object_type.name(),
                id: &id,
                content: &content,
                meta: &meta,
                index: &self.object_type.index,
            })
            .map_err(|error| match error {
                StoreError::UniqueViolation { property } => {
                    self.unique_conflict(Some(&id), &property, POLICY_FAILED_WRITE)
                }
                other => storage_error(other),
            })?;
        self.run_post_trigger(
            self.object_type.triggers.post_create.as_ref(),
            &id,
            &stored.content,
            None,
        );
        self.view(&stored, fields)
    }

    /// Reads an object; `If-None-Match` naming the current revision answers 304.
    pub fn read(&self, id: &str, fields: &FieldSelection, if_none_match: Option<&str>) -> Result<Resource> {
        let stored = self.load(id)?;
        if if_none_match.is_some_and(|rev| rev == stored.rev.to_string()) {
            return Err(Error::NotModified);
        }
        self.view(&stored, fields)
    }

    fn revision_mismatch(&self, verb: &str, current: Revision, expected: &str) -> Error {
        Error::PreconditionFailed(format!(
            "{verb} rejected as current Object revision {current} is different than expected by caller ({expected}), the object has changed since retrieval."
        ))
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
        let conditional = if_match.filter(|rev| *rev != "*");
        for _ in 0..WRITE_RETRIES {
            let current = self.load(id)?;
            if let Some(expected) = conditional
                && expected != current.rev.to_string()
            {
                return Err(self.revision_mismatch("Update", current.rev, expected));
            }
            let mut next = content.clone();
            for private in &self.object_type.private {
                if !next.contains_key(private)
                    && let Some(value) = current.content.get(private)
                {
                    next.insert(private.clone(), value.clone());
                }
            }
            if next == current.content {
                return self.view(&current, fields);
            }
            if let Some(on_validate) = &self.object_type.triggers.on_validate {
                self.run_trigger(on_validate, id, &next, Some(&current.content))?;
            }
            self.enforce_object(Some(id), &self.without_unchanged_secrets(&next, &current.content))?;
            if let Some(on_update) = &self.object_type.triggers.on_update {
                next = self.run_trigger(on_update, id, &next, Some(&current.content))?;
                strip_reserved(&mut next);
            }
            self.hash_secrets(&mut next, Some(&current.content))?;
            let meta = self.changed_meta(&current.meta, &next);
            match self.state.store.update(
                self.object_type.name(),
                id,
                current.rev,
                ObjectUpdate {
                    content: &next,
                    meta: meta.as_ref(),
                    index: &self.object_type.index,
                },
            ) {
                Ok(stored) => {
                    self.run_post_trigger(
                        self.object_type.triggers.post_update.as_ref(),
                        id,
                        &stored.content,
                        Some(&current.content),
                    );
                    return self.view(&stored, fields);
                }
                Err(StoreError::RevisionMismatch) if conditional.is_none() => {}
                Err(StoreError::RevisionMismatch) => {
                    let now = self.load(id)?;
                    return Err(self.revision_mismatch("Update", now.rev, conditional.unwrap_or("*")));
                }
                Err(StoreError::NotFound) => return Err(self.not_found(id)),
                Err(StoreError::UniqueViolation { property }) => {
                    return Err(self.unique_conflict(Some(id), &property, POLICY_FAILED_WRITE));
                }
                Err(error) => return Err(storage_error(error)),
            }
        }
        Err(Error::Unavailable("Too many concurrent writers; try again".into()))
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
        let conditional = if_match.filter(|rev| *rev != "*");
        for _ in 0..WRITE_RETRIES {
            let current = self.load(id)?;
            if let Some(expected) = conditional
                && expected != current.rev.to_string()
            {
                return Err(self.revision_mismatch("Patch", current.rev, expected));
            }
            let mut working = Value::Object(current.content.clone());
            let transformer = ScriptTransformer {
                generation: self.generation,
                paths: &self.state.paths,
            };
            let modified = patch::apply_patch(&mut working, operations, &transformer).map_err(Error::from)?;
            let Value::Object(mut next) = working else {
                return Err(Error::bad_request("The patched object is no longer a JSON object"));
            };
            strip_reserved(&mut next);
            for virtual_property in &self.object_type.virtuals {
                next.remove(&virtual_property.name);
            }
            if !modified || next == current.content {
                return self.view(&current, fields);
            }
            let touched = patch::touched_properties(operations);
            self.enforce_patch(id, &self.without_unchanged_secrets(&next, &current.content), &touched)?;
            if let Some(on_update) = &self.object_type.triggers.on_update {
                next = self.run_trigger(on_update, id, &next, Some(&current.content))?;
                strip_reserved(&mut next);
            }
            self.hash_secrets(&mut next, Some(&current.content))?;
            let meta = self.changed_meta(&current.meta, &next);
            match self.state.store.update(
                self.object_type.name(),
                id,
                current.rev,
                ObjectUpdate {
                    content: &next,
                    meta: meta.as_ref(),
                    index: &self.object_type.index,
                },
            ) {
                Ok(stored) => {
                    self.run_post_trigger(
                        self.object_type.triggers.post_update.as_ref(),
                        id,
                        &stored.content,
                        Some(&current.content),
                    );
                    return self.view(&stored, fields);
                }
                Err(StoreError::RevisionMismatch) if conditional.is_none() => {}
                Err(StoreError::RevisionMismatch) => {
                    let now = self.load(id)?;
                    return Err(self.revision_mismatch("Patch", now.rev, conditional.unwrap_or("*")));
                }
                Err(StoreError::NotFound) => return Err(self.not_found(id)),
                Err(StoreError::UniqueViolation { property }) => {
                    return Err(self.unique_conflict(Some(id), &property, POLICY_FAILED_PATCH));
                }
                Err(error) => return Err(storage_error(error)),
            }
        }
        Err(Error::Unavailable("Too many concurrent writers; try again".into()))
    }

    /// Clears an object's failed logins and lock (administrators' `unlock` action).
    pub fn unlock(&self, id: &str, fields: &FieldSelection) -> Result<Resource> {
        let stored = self.load(id)?;
        let principal = format!("{}/{id}", self.collection());
        self.state
            .store
            .clear_login_failures(&principal)
            .map_err(storage_error)?;
        tracing::info!(principal = %principal, "account unlocked");
        self.view(&stored, fields)
    }

    /// Deletes an object and returns it as it was.
    pub fn delete(&self, id: &str, if_match: Option<&str>, fields: &FieldSelection) -> Result<Resource> {
        let conditional = if_match.filter(|rev| *rev != "*");
        for _ in 0..WRITE_RETRIES {
            let current = self.load(id)?;
            if let Some(expected) = conditional
                && expected != current.rev.to_string()
            {
                return Err(self.revision_mismatch("Delete", current.rev, expected));
            }
            if let Some(on_delete) = &self.object_type.triggers.on_delete {
                self.run_trigger(on_delete, id, &current.content, None)?;
            }
            match self.state.store.delete(self.object_type.name(), id, current.rev) {
                Ok(deleted) => {
                    self.run_post_trigger(
                        self.object_type.triggers.post_delete.as_ref(),
                        id,
                        &deleted.content,
                        None,
                    );
                    return self.view(&deleted, fields);
                }
                Err(StoreError::RevisionMismatch) if conditional.is_none() => {}
                Err(StoreError::RevisionMismatch) => {
                    let now = self.load(id)?;
                    return Err(self.revision_mismatch("Delete", now.rev, conditional.unwrap_or("*")));
                }
                Err(StoreError::NotFound) => return Err(self.not_found(id)),
                Err(error) => return Err(storage_error(error)),
            }
        }
        Err(Error::Unavailable("Too many concurrent writers; try again".into()))
    }

    fn run_query(&self, request: &QueryRequest, page_size: Option<u32>) -> Result<ferridm_store::QueryPage> {
        let limit = self.generation.settings.max_unpaged_query_results;
        let page = self
            .state
            .store
            .query(&ObjectQuery {
                object_type: self.object_type.name(),
                filter: &request.filter,
                sort: &request.sort,
                page_size,
                // Offsets apply only when paging (IDM §3.5).
                offset: if page_size.is_some() { request.paging.offset } else { 0 },
                cookie: request.paging.cookie.as_deref(),
                count: page_size.is_some() && request.paging.count != ferridm_core::query::CountPolicy::None,
                with_content: !request.ids_only,
                limit,
                index: &self.object_type.index,
            })
            .map_err(storage_error)?;
        if page_size.is_none() && page.objects.len() as u64 > limit {
            return Err(Error::bad_request(format!(
                "The query matches more than {limit} objects; page through the results with _pageSize"
            )));
        }
        Ok(page)
    }

    /// Runs a query and builds IDM's response envelope.
    pub fn query(&self, request: &QueryRequest, fields: &FieldSelection) -> Result<QueryResponse> {
        let page = self.run_query(request, request.paging.page_size)?;
        let ids_only = FieldSelection::parse(["_id"]);
        let fields = if request.ids_only { &ids_only } else { fields };
        Ok(QueryResponse {
            result: page
                .objects
                .iter()
                .map(|stored| self.view(stored, fields).map(|resource| resource.to_json()))
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
        let page = self.run_query(&probe, Some(2))?;
        match page.objects.as_slice() {
            [] => Err(Error::NotFound("Query returned no results".into())),
            [only] => self.patch(&only.id, None, operations, fields),
            _ => Err(Error::internal("Query result must yield one matching object")),
        }
    }
}

/// `effectiveRoles`: a reference for every role in the `roles` property.
fn effective_roles(content: &Object) -> Value {
    let roles = content
        .get("roles")
        .and_then(Value::as_array)
        .map(|roles| {
            roles
                .iter()
                .filter_map(|role| role.get("_ref").and_then(Value::as_str))
                .map(|reference| json!({"_ref": reference}))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    Value::Array(roles)
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
    }

    #[test]
    fn predefined_queries_build_filters() {
        let (filter, ids_only) = predefined_query("query-all-ids", |_| None).unwrap();
        assert_eq!((filter, ids_only), (Filter::True, true));
        let (filter, _) = predefined_query("for-userName", |name| (name == "uid").then_some("bjensen")).unwrap();
        assert_eq!(filter.to_string(), "/userName eq \"bjensen\"");
        assert!(predefined_query("for-userName", |_| None).is_err());
        assert!(predefined_query("nope", |_| None).is_err());
    }

    #[test]
    fn extended_operators_are_refused() {
        assert_eq!(
            parse_filter("name regex \"a\"").unwrap_err(),
            Error::bad_request("Unsupported operator regex")
        );
        assert!(matches!(parse_filter("foo eq bar"), Err(Error::BadRequest(m)) if m.contains("could not be parsed")));
    }
}
