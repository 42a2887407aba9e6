//! Profile completeness (IDM §10.8, ferridm.md §2.3). By default IDM's formula: every top-level
//! property of the user schema that is explicitly `viewable` and `userEditable` is a slot (an
//! `object` property contributes one slot per sub-property), and the score is the share of slots
//! holding a non-null value. `selfservice-profile.json` may instead name the attributes and
//! weights, or a Rhai script that returns 0–100. Like IDM the division is done in 32-bit
//! floating point, so 6 of 14 slots is the seed's `42.857143`.
//!
//! The score is kept in each user's `_meta.profileCompleteness` on every write, so it can be
//! queried (`_queryFilter=/_meta/profileCompleteness lt 60`).
//!
//! Also `auth.profile.json`: the progressive-profile processes a login must complete.

use std::sync::Arc;

use ferridm_core::schema::{ObjectSchema, PropertySchema};
use ferridm_core::{Error, JsonPointer, Result};
use ferridm_plugins::{CompiledScript, ScriptLimits};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{ConfigError, ConfigFile, ConfigPaths, ManagedTypes};

/// `auth.profile.json`: which processes must be completed after login, and the roles swapped
/// while they are pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthProfile {
    /// Process paths (`selfservice/profile`, …), checked in order.
    pub processes: Vec<String>,
    /// The role withheld while processes are pending.
    pub authorization_role: String,
    /// A role granted while processes are pending, if any.
    pub authentication_role: Option<String>,
}

/// The role withheld while processes are pending, unless `auth.profile.json` names another.
pub const ROLE_AUTHORIZED: &str = "internal/role/openidm-authorized";

fn role(name: &str) -> String {
    if name.contains('/') {
        name.to_owned()
    } else {
        format!("internal/role/{name}")
    }
}

impl Default for AuthProfile {
    fn default() -> Self {
        Self {
            processes: Vec::new(),
            authorization_role: ROLE_AUTHORIZED.to_owned(),
            authentication_role: None,
        }
    }
}

impl AuthProfile {
    /// Reads `auth.profile.json`.
    pub fn from_json(document: &Value) -> std::result::Result<Self, String> {
        let processes = match document.get("profileEnhancementProcesses") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_owned)
                        .ok_or("profileEnhancementProcesses must list process paths")
                })
                .collect::<std::result::Result<_, _>>()?,
            Some(_) => return Err("profileEnhancementProcesses must be an array".to_owned()),
        };
        Ok(Self {
            processes,
            authorization_role: document
                .get("authorizationRole")
                .and_then(Value::as_str)
                .map_or_else(|| ROLE_AUTHORIZED.to_owned(), role),
            authentication_role: document
                .get("authenticationRole")
                .and_then(Value::as_str)
                .filter(|name| !name.is_empty())
                .map(role),
        })
    }
}

/// How completeness is computed.
#[derive(Debug, Clone)]
pub enum CompletenessRule {
    /// Weighted slots (IDM's formula: every slot weighs 1).
    Slots(Vec<(JsonPointer, f32)>),
    /// A script with `user` in scope returning 0–100.
    Script(Arc<CompiledScript>, ScriptLimits),
}

fn explicitly(property: &PropertySchema, keyword: &str) -> bool {
    property.raw.get(keyword).and_then(Value::as_bool) == Some(true)
}

fn object_slots(prefix: &JsonPointer, schema: &ObjectSchema, out: &mut Vec<JsonPointer>) {
    for property in &schema.properties {
        let pointer = prefix.child(property.name.as_str());
        match &property.object {
            Some(nested) if property.has_type("object") => object_slots(&pointer, nested, out),
            _ => out.push(pointer),
        }
    }
}

/// IDM's default slots for the user schema.
pub fn default_slots(schema: &ObjectSchema) -> Vec<JsonPointer> {
    let mut slots = Vec::new();
    for property in &schema.properties {
        if !(explicitly(property, "viewable") && explicitly(property, "userEditable")) {
            continue;
        }
        let pointer = JsonPointer::from_segments([property.name.as_str()]);
        match &property.object {
            Some(nested) if property.has_type("object") => object_slots(&pointer, nested, &mut slots),
            _ => slots.push(pointer),
        }
    }
    slots
}

/// Reads the completeness rule of a generation (`selfservice-profile.json` → `completeness`).
pub fn load(
    paths: &ConfigPaths,
    limits: &ScriptLimits,
    files: &std::collections::BTreeMap<String, ConfigFile>,
    managed: &ManagedTypes,
) -> std::result::Result<CompletenessRule, ConfigError> {
    let schema = managed
        .get("user")
        .map(|user| user.schema.schema.clone())
        .unwrap_or_default();
    let profile = files.get("selfservice/profile");
    let config = profile.and_then(|file| file.resolved.get("completeness"));
    let Some(config) = config else {
        return Ok(CompletenessRule::Slots(
            default_slots(&schema).into_iter().map(|p| (p, 1.0)).collect(),
        ));
    };
    let file = profile.map_or_else(
        || paths.conf_dir.join("selfservice-profile.json"),
        |file| file.path.clone(),
    );
    if let Some(script) = config.get("script") {
        let compiled = super::scripts::compile_config(paths, limits, script, &file, "completeness.script", &["user"])?;
        return Ok(CompletenessRule::Script(compiled, limits.clone()));
    }
    let attributes: Vec<JsonPointer> = match config.get("attributes") {
        None | Some(Value::Null) => default_slots(&schema),
        Some(Value::Array(names)) => names
            .iter()
            .map(|name| {
                name.as_str()
                    .map(JsonPointer::parse)
                    .ok_or_else(|| ConfigError::new(&file, "completeness.attributes must list property names"))
            })
            .collect::<std::result::Result<_, _>>()?,
        Some(_) => return Err(ConfigError::new(&file, "completeness.attributes must be an array")),
    };
    let weights = config
        .get("weights")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut slots = Vec::with_capacity(attributes.len());
    for pointer in attributes {
        let key = pointer.to_string();
        let key = key.trim_start_matches('/');
        #[expect(clippy::cast_possible_truncation, reason = "weights are small numbers")]
        let weight = match weights.get(key) {
            None => 1.0,
            Some(value) => value.as_f64().filter(|weight| *weight >= 0.0).ok_or_else(|| {
                ConfigError::new(
                    &file,
                    format!("completeness.weights.{key} must be a non-negative number"),
                )
            })? as f32,
        };
        slots.push((pointer, weight));
    }
    Ok(CompletenessRule::Slots(slots))
}

/// A score as IDM renders it: the 32-bit value's shortest decimal form.
fn rendered(score: f32) -> f64 {
    score.to_string().parse::<f64>().unwrap_or(0.0)
}

impl CompletenessRule {
    /// The completeness of `user` (0–100).
    pub fn score(&self, user: &Value) -> Result<f64> {
        match self {
            Self::Slots(slots) => {
                let total: f32 = slots.iter().map(|(_, weight)| weight).sum();
                if total <= 0.0 {
                    return Ok(0.0);
                }
                let filled: f32 = slots
                    .iter()
                    .filter(|(pointer, _)| pointer.get(user).is_some_and(|value| !value.is_null()))
                    .map(|(_, weight)| weight)
                    .sum();
                Ok(rendered(filled * 100.0 / total))
            }
            Self::Script(script, limits) => {
                let result = script
                    .run(limits, vec![("user", ferridm_plugins::convert::to_dynamic(user))])
                    .map_err(|error| crate::resource::error::from_script(&error))?;
                let value = ferridm_plugins::convert::to_json(&result);
                value
                    .as_f64()
                    .map(|score| score.clamp(0.0, 100.0))
                    .ok_or_else(|| Error::internal(format!("{} must return a number from 0 to 100", script.name())))
            }
        }
    }
}

impl CompletenessRule {
    /// A digest that changes when the rule does.
    pub fn fingerprint(&self) -> String {
        let text = match self {
            Self::Slots(slots) => slots
                .iter()
                .map(|(pointer, weight)| format!("{pointer}={weight}"))
                .collect::<Vec<_>>()
                .join(","),
            Self::Script(script, _) => script.digest().iter().map(|b| format!("{b:02x}")).collect(),
        };
        Sha256::digest(text.as_bytes())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user_schema() -> ObjectSchema {
        let managed = ferridm_core::schema::ManagedConfig::from_json(
            &serde_json::from_str::<Value>(
                &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/managed.json")).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        managed.object_type("user").unwrap().schema.clone()
    }

    #[test]
    fn the_default_user_schema_has_idms_fourteen_slots() {
        let slots: Vec<String> = default_slots(&user_schema()).iter().map(ToString::to_string).collect();
        assert_eq!(
            slots,
            [
                "/userName",
                "/givenName",
                "/sn",
                "/mail",
                "/description",
                "/telephoneNumber",
                "/postalAddress",
                "/address2",
                "/city",
                "/postalCode",
                "/country",
                "/stateProvince",
                "/preferences/updates",
                "/preferences/marketing"
            ]
        );
    }

    #[test]
    fn scores_render_like_idm() {
        let rule = CompletenessRule::Slots(default_slots(&user_schema()).into_iter().map(|p| (p, 1.0)).collect());
        let four = json!({"userName": "a", "givenName": "b", "sn": "c", "mail": "d", "accountStatus": "active"});
        assert_eq!(rule.score(&four).unwrap(), 28.571428);
        let five =
            json!({"userName": "a", "givenName": "b", "sn": "c", "mail": "d", "preferences": {"marketing": true}});
        assert_eq!(rule.score(&five).unwrap(), 35.714287);
        let six =
            json!({"userName": "a", "givenName": "b", "sn": "c", "mail": "d", "city": "x", "telephoneNumber": "1"});
        assert_eq!(rule.score(&six).unwrap(), 42.857143);
        assert_eq!(serde_json::to_string(&rule.score(&six).unwrap()).unwrap(), "42.857143");
        let nulls = json!({"userName": "a", "givenName": null});
        assert_eq!(rule.score(&nulls).unwrap(), rendered(100.0 / 14.0));
    }

    #[test]
    fn no_slots_is_zero_and_weights_count() {
        assert_eq!(CompletenessRule::Slots(Vec::new()).score(&json!({})).unwrap(), 0.0);
        let weighted = CompletenessRule::Slots(vec![(JsonPointer::parse("a"), 3.0), (JsonPointer::parse("b"), 1.0)]);
        assert_eq!(weighted.score(&json!({"a": 1})).unwrap(), 75.0);
    }
}
