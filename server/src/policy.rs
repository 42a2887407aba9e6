//! The policy service (IDM §6): which policies apply to which properties of which resources,
//! and running them. Policies come from three places, merged per resource: `policy.json`
//! resources, the policies derived from each managed type's schema (§6.3), and the scripts that
//! register them (`additionalFiles`). Unknown policy ids refuse the configuration.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use ferridm_core::filter::Filter;
use ferridm_core::schema::{ObjectType, PropertySchema};
use ferridm_core::{JsonPointer, Object};
use ferridm_plugins::convert::to_dynamic;
use ferridm_plugins::host::{Capability, Host, with_host};
use ferridm_plugins::policy::PolicyRegistry;
use ferridm_plugins::{CompiledScript, ScriptError, ScriptLimits};
use serde_json::{Value, json};

use crate::config::{ConfigError, ConfigPaths, ManagedTypes};

/// One policy applied to a property, with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyUse {
    /// The policy id.
    pub policy_id: String,
    /// Its parameters.
    pub params: Object,
}

/// When a conditional policy set applies.
#[derive(Debug, Clone)]
enum Condition {
    /// A query filter evaluated on the object.
    Filter(Filter),
    /// A Rhai expression with `object` in scope, returning a bool.
    Script(Arc<CompiledScript>),
}

#[derive(Debug, Clone)]
struct ConditionalPolicies {
    condition: Condition,
    dependencies: Vec<String>,
    policies: Vec<PolicyUse>,
    raw: Value,
}

/// The policies of one property of a resource.
#[derive(Debug, Clone)]
pub struct PropertyPolicies {
    /// The property name (a pointer relative to the object, e.g. `userName`; `aliases[*]` for
    /// every element of an array).
    pub name: String,
    pointer: JsonPointer,
    /// True for `name[*]`: the policies apply to each element, reported as `name[<index>]`.
    elements: bool,
    /// Policies that always apply.
    pub policies: Vec<PolicyUse>,
    conditional: Vec<ConditionalPolicies>,
    fallback: Vec<PolicyUse>,
    has_fallback: bool,
}

/// The policies of one resource pattern (`managed/user/*`).
#[derive(Debug, Clone)]
pub struct ResourcePolicies {
    /// The pattern.
    pub resource: String,
    /// Its properties, in evaluation order.
    pub properties: Vec<PropertyPolicies>,
    /// For a derived resource (`selfservice/registration`): the resource its objects become,
    /// which cross-object policies such as `unique` look at.
    pub backing: Option<String>,
}

/// The outcome of a validation: `{result, failedPolicyRequirements}`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyResult {
    /// One entry per (property, failing policy).
    pub failed: Vec<Value>,
}

impl PolicyResult {
    /// True when nothing failed.
    pub fn passed(&self) -> bool {
        self.failed.is_empty()
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        json!({"result": self.passed(), "failedPolicyRequirements": self.failed})
    }
}

/// One validation: the object as JSON (for conditions) and as the Rhai value every policy
/// receives (converted once).
struct Call<'a> {
    object: &'a Value,
    full: rhai::Dynamic,
}

/// A failure while running policies (a script broke); the request fails with 500.
#[derive(Debug, Clone)]
pub struct PolicyFailure(pub ScriptError);

/// Every policy of a generation, ready to run.
#[derive(Debug, Clone)]
pub struct PolicyEngine {
    registry: PolicyRegistry,
    limits: ScriptLimits,
    resources: Vec<ResourcePolicies>,
    /// Whether writes are checked (`policyEnforcement` in `ferridm.json`).
    pub enforced: bool,
}

/// Do two `/`-separated paths match segment by segment (`*` matches any one segment)?
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_matches('/').split('/').collect();
    pattern.len() == path.len() && pattern.iter().zip(&path).all(|(a, b)| a == b || *a == "*" || *b == "*")
}

fn policy_uses(value: Option<&Value>, file: &std::path::Path, location: &str) -> Result<Vec<PolicyUse>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let items = value
        .as_array()
        .ok_or_else(|| ConfigError::new(file, format!("{location}: expected an array of policies")))?;
    items
        .iter()
        .map(|item| {
            let policy_id = item
                .get("policyId")
                .and_then(Value::as_str)
                .ok_or_else(|| ConfigError::new(file, format!("{location}: a policy needs a \"policyId\"")))?;
            let params = match item.get("params") {
                None | Some(Value::Null) => Object::new(),
                Some(Value::Object(params)) => params.clone(),
                Some(_) => {
                    return Err(ConfigError::new(
                        file,
                        format!("{location}: \"params\" must be an object"),
                    ));
                }
            };
            Ok(PolicyUse {
                policy_id: policy_id.to_owned(),
                params,
            })
        })
        .collect()
}

/// The policies the schema implies for a property, in IDM's order (§6.3).
fn derived_policies(property: &PropertySchema, required: bool) -> Vec<PolicyUse> {
    let uses = |id: &str, params: Value| PolicyUse {
        policy_id: id.to_owned(),
        params: params.as_object().cloned().unwrap_or_default(),
    };
    let mut policies = Vec::new();
    if required {
        policies.push(uses("required", json!({})));
    }
    let list_without_null = property.type_is_list && !property.has_type("null");
    if list_without_null || property.min_length.is_some_and(|min| min > 0) {
        policies.push(uses("not-empty", json!({})));
    }
    if property.has_type("string") {
        if let Some(min) = property.min_length {
            policies.push(uses("minimum-length", json!({"minLength": min})));
        }
        if let Some(max) = property.max_length {
            policies.push(uses("maximum-length", json!({"maxLength": max})));
        }
        if let Some(pattern) = &property.pattern {
            policies.push(uses("regexpMatches", json!({"regexp": pattern, "flags": ""})));
        }
    }
    if !property.types.is_empty() {
        let types: Vec<&str> = property
            .types
            .iter()
            .map(|t| if t == "relationship" { "object" } else { t.as_str() })
            .collect();
        policies.push(uses("valid-type", json!({"types": types})));
    }
    policies.extend(property.policies.iter().map(|policy| PolicyUse {
        policy_id: policy.policy_id.clone(),
        params: policy.params.clone(),
    }));
    policies
}

fn schema_resource(object_type: &ObjectType) -> ResourcePolicies {
    ResourcePolicies {
        backing: None,
        resource: format!("managed/{}/*", object_type.name),
        properties: object_type
            .schema
            .properties
            .iter()
            .map(|property| PropertyPolicies {
                name: property.name.clone(),
                pointer: JsonPointer::from_segments([property.name.as_str()]),
                elements: false,
                policies: derived_policies(property, object_type.schema.is_required(&property.name)),
                conditional: Vec::new(),
                fallback: Vec::new(),
                has_fallback: false,
            })
            .collect(),
    }
}

/// Merges schema-derived policies into a `policy.json` resource of the same pattern: explicit
/// entries with a derived policy id are replaced by the derived entry, other derived ones are
/// appended, and derived properties not listed come last in schema order.
fn merge(mut explicit: ResourcePolicies, derived: ResourcePolicies) -> ResourcePolicies {
    for derived_property in derived.properties {
        match explicit.properties.iter_mut().find(|p| p.name == derived_property.name) {
            Some(property) => {
                for derived_use in derived_property.policies {
                    match property
                        .policies
                        .iter_mut()
                        .find(|p| p.policy_id == derived_use.policy_id)
                    {
                        Some(existing) => *existing = derived_use,
                        None => property.policies.push(derived_use),
                    }
                }
            }
            None => explicit.properties.push(derived_property),
        }
    }
    explicit
}

impl PolicyEngine {
    /// Builds the engine from `policy.json` (already parsed), the managed types and the scripts.
    pub fn load(
        paths: &ConfigPaths,
        policy_file: Option<(&std::path::Path, &Value)>,
        managed: &ManagedTypes,
        managed_path: &std::path::Path,
        limits: &ScriptLimits,
        enforced: bool,
        registration: Option<&[String]>,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let (file, document) = match policy_file {
            Some((file, document)) => (file.to_path_buf(), document.clone()),
            None => (paths.conf_dir.join("policy.json"), json!({})),
        };
        let mut script_paths: Vec<String> = Vec::new();
        match document.get("type").and_then(Value::as_str) {
            None | Some("text/rhai") => {}
            Some(other) => errors.push(ConfigError::new(
                &file,
                format!("policy scripts of type {other} cannot run here: ferridm runs text/rhai policy scripts (see scripts/README.md)"),
            )),
        }
        if let Some(main) = document.get("file").and_then(Value::as_str) {
            script_paths.push(main.to_owned());
        }
        match document.get("additionalFiles") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    match item.as_str() {
                        Some(path) => script_paths.push(path.to_owned()),
                        None => errors.push(ConfigError::new(&file, "additionalFiles must list script paths")),
                    }
                }
            }
            Some(_) => errors.push(ConfigError::new(
                &file,
                "additionalFiles must be an array of script paths",
            )),
        }
        let mut scripts = Vec::new();
        for path in &script_paths {
            match CompiledScript::compile(limits, &paths.script(path)) {
                Ok(script) => scripts.push(Arc::new(script)),
                Err(error) => errors.push(script_error(&error)),
            }
        }
        let registry = match PolicyRegistry::load(limits, &scripts) {
            Ok(registry) => registry,
            Err(error) => {
                errors.push(script_error(&error));
                PolicyRegistry::default()
            }
        };
        let mut explicit: Vec<ResourcePolicies> = Vec::new();
        if let Some(resources) = document.get("resources") {
            match resources.as_array() {
                Some(resources) => {
                    for (index, resource) in resources.iter().enumerate() {
                        match parse_resource(resource, &file, &format!("resources[{index}]"), limits) {
                            Ok(Some(parsed)) => explicit.push(parsed),
                            Ok(None) => {}
                            Err(error) => errors.push(error),
                        }
                    }
                }
                None => errors.push(ConfigError::new(&file, "resources must be an array")),
            }
        }
        let mut resources = Vec::new();
        for object_type in &managed.config.objects {
            let derived = schema_resource(object_type);
            match explicit.iter().position(|r| r.resource == derived.resource) {
                Some(index) => resources.push(merge(explicit.remove(index), derived)),
                None => resources.push(derived),
            }
        }
        if let (Some(names), Some(users)) = (registration, resources.iter().find(|r| r.resource == "managed/user/*")) {
            let required: Vec<String> = managed
                .get("user")
                .map(|user| user.schema.schema.required.clone())
                .unwrap_or_default();
            let properties = users
                .properties
                .iter()
                .filter(|property| names.contains(&property.name) || required.contains(&property.name))
                .cloned()
                .collect();
            resources.push(ResourcePolicies {
                resource: "selfservice/registration".to_owned(),
                properties,
                backing: Some("managed/user/*".to_owned()),
            });
        }
        let mut all = explicit;
        all.extend(resources);
        // A script that failed to load already explains its missing policies.
        let scripts_failed = !errors.is_empty();
        for resource in all.iter().filter(|_| !scripts_failed) {
            for property in &resource.properties {
                let uses = property
                    .policies
                    .iter()
                    .chain(&property.fallback)
                    .chain(property.conditional.iter().flat_map(|c| &c.policies));
                for policy in uses {
                    if registry.get(&policy.policy_id).is_none() {
                        let from_schema = resource.resource.starts_with("managed/");
                        errors.push(ConfigError::new(
                            if from_schema { managed_path } else { &file },
                            format!(
                                "unknown policyId \"{}\" on {} property {} (no policy script registers it)",
                                policy.policy_id, resource.resource, property.name
                            ),
                        ));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(Self {
                registry,
                limits: limits.clone(),
                resources: all,
                enforced,
            })
        } else {
            Err(errors)
        }
    }

    /// The resources whose pattern matches `path`, in evaluation order.
    fn matching<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a ResourcePolicies> + 'a {
        let normalised = normalise(path);
        self.resources
            .iter()
            .filter(move |resource| path_matches(&resource.resource, &normalised))
    }

    fn applicable(&self, property: &PropertyPolicies, object: &Value) -> Vec<PolicyUse> {
        let mut uses = property.policies.clone();
        let mut any_conditional = false;
        for conditional in &property.conditional {
            let dependencies_present = conditional
                .dependencies
                .iter()
                .all(|dependency| JsonPointer::parse(dependency).get(object).is_some_and(|v| !v.is_null()));
            if dependencies_present && self.condition_holds(&conditional.condition, object) {
                any_conditional = true;
                uses.extend(conditional.policies.iter().cloned());
            }
        }
        if !any_conditional && property.has_fallback {
            uses.extend(property.fallback.iter().cloned());
        }
        uses
    }

    fn condition_holds(&self, condition: &Condition, object: &Value) -> bool {
        match condition {
            Condition::Filter(filter) => ferridm_core::filter::matches(filter, object),
            Condition::Script(script) => script
                .run(&self.limits, vec![("object", to_dynamic(object))])
                .ok()
                .and_then(|result| result.as_bool().ok())
                .unwrap_or(false),
        }
    }

    /// Checks one property (each element, for `name[*]`).
    fn check_property(
        &self,
        call: &Call<'_>,
        property: &PropertyPolicies,
        value: Option<&Value>,
        out: &mut Vec<Value>,
    ) -> Result<(), PolicyFailure> {
        if !property.elements {
            return self.check(call, property, &property.name, value, out);
        }
        let base = property.name.trim_end_matches("[*]");
        if let Some(Value::Array(items)) = value {
            for (index, item) in items.iter().enumerate() {
                self.check(call, property, &format!("{base}[{index}]"), Some(item), out)?;
            }
        }
        Ok(())
    }

    /// Runs `work` once with the host and the registry installed for every policy it calls.
    fn validating<R>(&self, host: &Rc<dyn Host>, path: &str, work: impl FnOnce() -> R) -> R {
        with_host(Rc::clone(host), Capability::Read, path, || {
            self.registry.with_installed(&self.limits, work)
        })
    }

    fn check(
        &self,
        call: &Call<'_>,
        property: &PropertyPolicies,
        reported: &str,
        value: Option<&Value>,
        out: &mut Vec<Value>,
    ) -> Result<(), PolicyFailure> {
        let checked = value.map_or(rhai::Dynamic::UNIT, to_dynamic);
        let mut required_failed = false;
        for policy_use in self.applicable(property, call.object) {
            let Some(policy) = self.registry.get(&policy_use.policy_id) else {
                continue;
            };
            if policy.validate_only_if_present && value.is_none() {
                continue;
            }
            let failed = policy
                .validate(
                    &self.limits,
                    call.full.clone(),
                    checked.clone(),
                    to_dynamic(&Value::Object(policy_use.params.clone())),
                    reported,
                    required_failed,
                    value.is_some(),
                )
                .map_err(PolicyFailure)?;
            if failed.iter().any(|f| f["policyRequirement"] == "REQUIRED") {
                required_failed = true;
            }
            if !failed.is_empty() {
                out.push(json!({"policyRequirements": failed, "property": reported}));
            }
        }
        Ok(())
    }

    /// `validateObject`: every property of every matching resource, read from `object`.
    pub fn validate_object(
        &self,
        host: &Rc<dyn Host>,
        path: &str,
        object: &Object,
    ) -> Result<PolicyResult, PolicyFailure> {
        let full = Value::Object(object.clone());
        let call = Call {
            object: &full,
            full: to_dynamic(&full),
        };
        let mut failed = Vec::new();
        self.validating(host, path, || {
            for resource in self.matching(path) {
                for property in &resource.properties {
                    self.check_property(&call, property, property.pointer.get(&full), &mut failed)?;
                }
            }
            Ok(PolicyResult { failed })
        })
    }

    /// `validateProperty`: only the properties whose top-level name is in `names`, with values
    /// read from `values` (a named property missing there is checked as absent) and
    /// `full_object` as the object cross-field policies look at.
    pub fn validate_properties(
        &self,
        host: &Rc<dyn Host>,
        path: &str,
        full_object: &Object,
        names: &[String],
        values: &Object,
    ) -> Result<PolicyResult, PolicyFailure> {
        let full = Value::Object(full_object.clone());
        let call = Call {
            object: &full,
            full: to_dynamic(&full),
        };
        let checked = Value::Object(values.clone());
        let mut failed = Vec::new();
        self.validating(host, path, || {
            for resource in self.matching(path) {
                for property in &resource.properties {
                    let named = property
                        .pointer
                        .first()
                        .is_some_and(|first| names.iter().any(|n| n == first));
                    if named {
                        self.check_property(&call, property, property.pointer.get(&checked), &mut failed)?;
                    }
                }
            }
            Ok(PolicyResult { failed })
        })
    }

    fn describe_resource(&self, resource: &ResourcePolicies) -> Value {
        let properties: Vec<Value> = resource
            .properties
            .iter()
            .map(|property| {
                let mut requirements: Vec<String> = Vec::new();
                let policies: Vec<Value> = property
                    .policies
                    .iter()
                    .map(|policy_use| {
                        let defined = self
                            .registry
                            .get(&policy_use.policy_id)
                            .map(|policy| policy.requirements.clone())
                            .unwrap_or_default();
                        for requirement in &defined {
                            if !requirements.contains(requirement) {
                                requirements.push(requirement.clone());
                            }
                        }
                        json!({"policyId": policy_use.policy_id, "params": policy_use.params, "policyRequirements": defined})
                    })
                    .collect();
                let conditional: Option<Vec<Value>> =
                    (!property.conditional.is_empty()).then(|| property.conditional.iter().map(|c| c.raw.clone()).collect());
                let fallback: Option<Vec<Value>> = property.has_fallback.then(|| {
                    property
                        .fallback
                        .iter()
                        .map(|f| json!({"policyId": f.policy_id, "params": f.params}))
                        .collect()
                });
                json!({
                    "name": property.name,
                    "policies": policies,
                    "conditionalPolicies": conditional,
                    "fallbackPolicies": fallback,
                    "policyRequirements": requirements,
                })
            })
            .collect();
        json!({"resource": resource.resource, "properties": properties})
    }

    /// `GET /openidm/policy`: every resource.
    pub fn describe_all(&self) -> Value {
        let resources: Vec<Value> = self.resources.iter().map(|r| self.describe_resource(r)).collect();
        json!({"_id": "", "resources": resources})
    }

    /// `GET /openidm/policy/<path>`: the merged properties of every matching resource, or
    /// `None` when no resource matches.
    pub fn describe(&self, path: &str) -> Option<Value> {
        let matching: Vec<&ResourcePolicies> = self.matching(path).collect();
        if matching.is_empty() {
            return None;
        }
        let mut properties = Vec::new();
        for resource in matching {
            if let Some(described) = self.describe_resource(resource)["properties"].as_array() {
                properties.extend(described.iter().cloned());
            }
        }
        let id = path.trim_matches('/').rsplit('/').next().unwrap_or_default().to_owned();
        Some(json!({"_id": id, "resource": path, "properties": properties}))
    }

    /// The requirement a unique index violation on `property` of `path` reports
    /// (`VALID_USERNAME` when the property uses `valid-username`, else `UNIQUE`).
    pub fn uniqueness_requirement(&self, path: &str, property: &str) -> &'static str {
        let uses_valid_username = self.matching(path).any(|resource| {
            resource
                .properties
                .iter()
                .any(|p| p.name == property && p.policies.iter().any(|u| u.policy_id == "valid-username"))
        });
        if uses_valid_username {
            "VALID_USERNAME"
        } else {
            "UNIQUE"
        }
    }

    /// The resource policy scripts should see for `path` (a derived resource is checked as the
    /// objects it creates).
    pub fn host_resource(&self, path: &str) -> String {
        self.matching(path)
            .find_map(|resource| resource.backing.clone())
            .unwrap_or_else(|| path.to_owned())
    }

    /// The script limits policies run under.
    pub fn limits(&self) -> &ScriptLimits {
        &self.limits
    }

    /// Every loaded policy id (for diagnostics and docs).
    pub fn policy_ids(&self) -> Vec<String> {
        self.registry.iter().map(|policy| policy.policy_id.clone()).collect()
    }

    /// The script each policy id lives in.
    pub fn scripts(&self) -> HashMap<String, String> {
        self.registry
            .iter()
            .map(|policy| (policy.policy_id.clone(), policy.script.name().to_owned()))
            .collect()
    }
}

/// `managed/user` addresses the same policies as `managed/user/*`.
fn normalise(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    let segments: Vec<&str> = trimmed.split('/').collect();
    if segments.len() == 2 && segments[0] == "managed" {
        format!("{trimmed}/*")
    } else {
        trimmed.to_owned()
    }
}

fn script_error(error: &ScriptError) -> ConfigError {
    ConfigError {
        file: error.script.clone(),
        position: error.line.map(|line| (line, error.column.unwrap_or(0))),
        message: error.message.clone(),
    }
}

fn parse_resource(
    value: &Value,
    file: &std::path::Path,
    location: &str,
    limits: &ScriptLimits,
) -> Result<Option<ResourcePolicies>, ConfigError> {
    let resource = value
        .get("resource")
        .and_then(Value::as_str)
        .ok_or_else(|| ConfigError::new(file, format!("{location}: a resource needs a \"resource\" pattern")))?;
    let Some(properties) = value.get("properties") else {
        // Resources with only calculated properties are served by their own endpoints.
        return Ok(None);
    };
    let properties = properties
        .as_array()
        .ok_or_else(|| ConfigError::new(file, format!("{location}.properties: expected an array")))?;
    let mut parsed = Vec::new();
    for (index, property) in properties.iter().enumerate() {
        let here = format!("{location}.properties[{index}]");
        let name = property
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ConfigError::new(file, format!("{here}: a property needs a \"name\"")))?;
        let mut conditional = Vec::new();
        if let Some(items) = property.get("conditionalPolicies").and_then(Value::as_array) {
            for (c, item) in items.iter().enumerate() {
                let where_ = format!("{here}.conditionalPolicies[{c}]");
                let condition = parse_condition(item.get("condition"), file, &where_, limits)?;
                let dependencies = item
                    .get("dependencies")
                    .and_then(Value::as_array)
                    .map(|deps| deps.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default();
                conditional.push(ConditionalPolicies {
                    condition,
                    dependencies,
                    policies: policy_uses(item.get("policies"), file, &where_)?,
                    raw: item.clone(),
                });
            }
        }
        let fallback = policy_uses(
            property.get("fallbackPolicies"),
            file,
            &format!("{here}.fallbackPolicies"),
        )?;
        let (base, elements) = match name.strip_suffix("[*]") {
            Some(base) => (base, true),
            None => (name, false),
        };
        parsed.push(PropertyPolicies {
            name: name.to_owned(),
            pointer: JsonPointer::parse(base),
            elements,
            policies: policy_uses(property.get("policies"), file, &format!("{here}.policies"))?,
            conditional,
            has_fallback: property.get("fallbackPolicies").is_some_and(Value::is_array),
            fallback,
        });
    }
    Ok(Some(ResourcePolicies {
        resource: resource.to_owned(),
        properties: parsed,
        backing: None,
    }))
}

fn parse_condition(
    value: Option<&Value>,
    file: &std::path::Path,
    location: &str,
    limits: &ScriptLimits,
) -> Result<Condition, ConfigError> {
    let value = value.ok_or_else(|| ConfigError::new(file, format!("{location}: a condition is required")))?;
    match value.get("type").and_then(Value::as_str) {
        Some("queryFilter") => {
            let text = value.get("filter").and_then(Value::as_str).ok_or_else(|| {
                ConfigError::new(file, format!("{location}: a queryFilter condition needs \"filter\""))
            })?;
            ferridm_core::filter::parse(text)
                .map(Condition::Filter)
                .map_err(|error| ConfigError::new(file, format!("{location}: invalid filter: {error}")))
        }
        Some("text/rhai") => {
            let source = value
                .get("source")
                .and_then(Value::as_str)
                .ok_or_else(|| ConfigError::new(file, format!("{location}: a text/rhai condition needs \"source\"")))?;
            CompiledScript::compile_text_with(limits, &format!("{} ({location})", file.display()), source, &["object"])
                .map(|script| Condition::Script(Arc::new(script)))
                .map_err(|error| script_error(&error))
        }
        other => Err(ConfigError::new(
            file,
            format!("{location}: unsupported condition type {other:?} (use queryFilter or text/rhai)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_segment_by_segment() {
        assert!(path_matches("managed/user/*", "managed/user/bjensen"));
        assert!(path_matches("managed/user/*", "managed/user/*"));
        assert!(!path_matches("managed/user/*", "managed/user"));
        assert!(!path_matches("managed/user/*", "managed/role/x"));
        assert!(path_matches("selfservice/registration", "selfservice/registration"));
        assert_eq!(normalise("managed/user"), "managed/user/*");
    }

    #[test]
    fn derived_policies_follow_idm_order() {
        let managed = ferridm_core::schema::ManagedConfig::from_json(&json!({"objects": [{"name": "user", "schema": {
            "required": ["userName"],
            "properties": {
                "userName": {"type": "string", "minLength": 1, "policies": [{"policyId": "valid-username"}]},
                "telephoneNumber": {"type": "string", "pattern": "^[0-9]*$"},
                "roles": {"type": "array"},
                "multi": {"type": ["string", "number"]},
                "manager": {"type": "relationship"}
            }
        }}]}))
        .unwrap();
        let resource = schema_resource(&managed.objects[0]);
        let ids = |name: &str| -> Vec<String> {
            resource
                .properties
                .iter()
                .find(|p| p.name == name)
                .unwrap()
                .policies
                .iter()
                .map(|p| p.policy_id.clone())
                .collect()
        };
        assert_eq!(
            ids("userName"),
            [
                "required",
                "not-empty",
                "minimum-length",
                "valid-type",
                "valid-username"
            ]
        );
        assert_eq!(ids("telephoneNumber"), ["regexpMatches", "valid-type"]);
        assert_eq!(ids("roles"), ["valid-type"]);
        assert_eq!(ids("multi"), ["not-empty", "valid-type"]);
        let manager = &resource
            .properties
            .iter()
            .find(|p| p.name == "manager")
            .unwrap()
            .policies[0];
        assert_eq!(manager.params.get("types"), Some(&json!(["object"])));
    }
}
