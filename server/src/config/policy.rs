//! `policy.json` and the schema read into a [`PolicySet`] (IDM §6): which policies apply to
//! which properties of which resources. Policies come from three places, merged per resource:
//! `policy.json` resources, the policies derived from each managed type's schema (§6.3), and
//! the scripts that register them (`additionalFiles`). Unknown policy ids refuse the
//! configuration. The top-level policy module runs them.

use std::sync::Arc;

use ferridm_core::filter::Filter;
use ferridm_core::schema::{ObjectType, PropertySchema};
use ferridm_core::{JsonPointer, Object};
use ferridm_plugins::policy::PolicyRegistry;
use ferridm_plugins::{CompiledScript, ScriptLimits};
use serde_json::{Value, json};

use super::scripts::config_error;
use super::{ConfigError, ConfigPaths, ManagedTypes, file_name_in_project};

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
pub(crate) enum Condition {
    /// A query filter evaluated on the object.
    Filter(Filter),
    /// A Rhai expression with `object` in scope, returning a bool.
    Script(Arc<CompiledScript>),
}

#[derive(Debug, Clone)]
pub(crate) struct ConditionalPolicies {
    pub(crate) condition: Condition,
    pub(crate) dependencies: Vec<String>,
    pub(crate) policies: Vec<PolicyUse>,
    pub(crate) raw: Value,
}

/// The policies of one property of a resource.
#[derive(Debug, Clone)]
pub struct PropertyPolicies {
    /// The property name (a pointer relative to the object, e.g. `userName`; `aliases[*]` for
    /// every element of an array).
    pub name: String,
    pub(crate) pointer: JsonPointer,
    /// True for `name[*]`: the policies apply to each element, reported as `name[<index>]`.
    pub(crate) elements: bool,
    /// Policies that always apply.
    pub policies: Vec<PolicyUse>,
    pub(crate) conditional: Vec<ConditionalPolicies>,
    pub(crate) fallback: Vec<PolicyUse>,
    pub(crate) has_fallback: bool,
}

/// The policies of one resource pattern (`managed/user/*`).
#[derive(Debug, Clone)]
pub struct ResourcePolicies {
    /// The pattern.
    pub resource: String,
    /// Its properties, in evaluation order.
    pub properties: Vec<PropertyPolicies>,
    /// For a derived resource (`selfservice/registration`, `selfservice/reset`): the resource its objects become,
    /// which cross-object policies such as `unique` look at.
    pub backing: Option<String>,
}

/// What the self-service processes need validated without writing: the registration form's
/// fields (`selfservice/registration`) and the password a reset sets (`selfservice/reset`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DerivedResources<'a> {
    /// The registration's `registrationProperties`, when registration is configured.
    pub registration: Option<&'a [String]>,
    /// The reset's password field, when a reset is configured.
    pub reset_password_field: Option<&'a str>,
}

/// Every policy of a generation, loaded and checked; the policy module runs them.
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub(crate) registry: PolicyRegistry,
    pub(crate) limits: ScriptLimits,
    pub(crate) resources: Vec<ResourcePolicies>,
    /// Whether writes are checked (`policyEnforcement` in `ferridm.json`).
    pub enforced: bool,
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

impl PolicySet {
    /// Builds the engine from `policy.json` (already parsed), the managed types and the scripts.
    pub fn load(
        paths: &ConfigPaths,
        policy_file: Option<(&std::path::Path, &Value)>,
        managed: &ManagedTypes,
        managed_path: &std::path::Path,
        limits: &ScriptLimits,
        enforced: bool,
        derived: DerivedResources<'_>,
    ) -> Result<Self, Vec<ConfigError>> {
        let DerivedResources {
            registration,
            reset_password_field,
        } = derived;
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
                Err(error) => errors.push(config_error(&error)),
            }
        }
        let registry = match PolicyRegistry::load(limits, &scripts) {
            Ok(registry) => registry,
            Err(error) => {
                errors.push(config_error(&error));
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
        // What self-service validates without writing: the registration form's fields, what the
        // schema requires and the password (IDM computes this from the user schema so that
        // anonymous UIs can validate), and the new password of a reset.
        if let (Some(users), Some(user_type)) = (
            resources.iter().find(|r| r.resource == "managed/user/*"),
            managed.get("user"),
        ) {
            let derive = |resource: &str, keep: &dyn Fn(&str) -> bool| ResourcePolicies {
                resource: resource.to_owned(),
                properties: users
                    .properties
                    .iter()
                    .filter(|property| keep(&property.name))
                    .cloned()
                    .collect(),
                backing: Some("managed/user/*".to_owned()),
            };
            let mut derived = Vec::new();
            if let Some(names) = registration {
                let required = &user_type.schema.schema.required;
                derived.push(derive("selfservice/registration", &|name| {
                    names.iter().any(|n| n == name) || required.iter().any(|r| r == name) || user_type.is_hashed(name)
                }));
            }
            if let Some(field) = reset_password_field {
                derived.push(derive("selfservice/reset", &|name| name == field));
            }
            resources.extend(derived);
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
            CompiledScript::compile_text_with(
                limits,
                &format!("{} ({location})", file_name_in_project(file)),
                source,
                &["object"],
            )
            .map(|script| Condition::Script(Arc::new(script)))
            .map_err(|error| config_error(&error))
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
