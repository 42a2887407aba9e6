//! Running policies (IDM §6): validating objects and properties against a generation's
//! [`PolicySet`] (loaded by `config::policy`), and describing them to clients.

use std::collections::HashMap;
use std::rc::Rc;

use ferridm_core::{JsonPointer, Object};
use ferridm_plugins::ScriptError;
use ferridm_plugins::ScriptLimits;
use ferridm_plugins::convert::to_dynamic;
use ferridm_plugins::host::{Capability, Host, with_host};
use ferridm_plugins::policy::shipped::CheckInput;
use serde_json::{Value, json};

use crate::config::policy::{Condition, PolicySet, PolicyUse, PropertyPolicies, ResourcePolicies};

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

/// One validation: the object as JSON (for conditions) and as the Rhai value every scripted
/// policy receives (converted once, when the first of them runs).
struct Call<'a> {
    object: &'a Value,
    full: std::cell::OnceCell<rhai::Dynamic>,
}

impl<'a> Call<'a> {
    fn new(object: &'a Value) -> Self {
        Self {
            object,
            full: std::cell::OnceCell::new(),
        }
    }

    fn full(&self) -> &rhai::Dynamic {
        self.full.get_or_init(|| to_dynamic(self.object))
    }
}

/// A failure while running policies (a script broke); the request fails with 500.
#[derive(Debug, Clone)]
pub struct PolicyFailure(pub ScriptError);

/// Do two `/`-separated paths match segment by segment (`*` matches any one segment)?
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_matches('/').split('/').collect();
    pattern.len() == path.len() && pattern.iter().zip(&path).all(|(a, b)| a == b || *a == "*" || *b == "*")
}

impl PolicySet {
    /// The resources whose pattern matches `path`, in evaluation order.
    fn matching<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a ResourcePolicies> + 'a {
        let normalised = normalise(path);
        self.resources
            .iter()
            .filter(move |resource| path_matches(&resource.resource, &normalised))
    }

    fn applicable<'a>(&self, property: &'a PropertyPolicies, object: &Value) -> Vec<&'a PolicyUse> {
        let mut uses: Vec<&PolicyUse> = property.policies.iter().collect();
        let mut any_conditional = false;
        for conditional in &property.conditional {
            let dependencies_present = conditional
                .dependencies
                .iter()
                .all(|dependency| JsonPointer::parse(dependency).get(object).is_some_and(|v| !v.is_null()));
            if dependencies_present && self.condition_holds(&conditional.condition, object) {
                any_conditional = true;
                uses.extend(&conditional.policies);
            }
        }
        if !any_conditional && property.has_fallback {
            uses.extend(&property.fallback);
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
        let checked = std::cell::OnceCell::new();
        let mut required_failed = false;
        for policy_use in self.applicable(property, call.object) {
            let Some(policy) = self.registry.get(&policy_use.policy_id) else {
                continue;
            };
            if policy.validate_only_if_present && value.is_none() {
                continue;
            }
            let answered = policy.native.and_then(|check| {
                check.run(CheckInput {
                    value,
                    params: &policy_use.params,
                    required_failed,
                    property: reported,
                })
            });
            let failed = match answered {
                Some(failed) => failed,
                None => policy
                    .validate(
                        &self.limits,
                        call.full().clone(),
                        checked
                            .get_or_init(|| value.map_or(rhai::Dynamic::UNIT, to_dynamic))
                            .clone(),
                        to_dynamic(&Value::Object(policy_use.params.clone())),
                        reported,
                        required_failed,
                        value.is_some(),
                    )
                    .map_err(PolicyFailure)?,
            };
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
        let call = Call::new(&full);
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
        let call = Call::new(&full);
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
}
