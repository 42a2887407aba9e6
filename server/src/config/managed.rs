//! What the server derives from `managed.json` for each object type: which properties are private,
//! hashed, protected, virtual or defaulted, how the type is indexed, and which fields a response
//! carries by default.

use std::sync::Arc;

use ferridm_core::fields::FieldCatalog;
use ferridm_core::schema::{ManagedConfig, ObjectType, PropertySchema};
use ferridm_plugins::{CompiledScript, ScriptLimits};
use ferridm_store::{IndexSpec, Indexed};
use serde_json::Value;

use super::scripts::compile_config;
use super::{ConfigError, ConfigPaths, file_name_in_project};

/// The trigger hooks of a type, as compiled scripts.
#[derive(Debug, Clone, Default)]
pub struct Triggers {
    /// Before a create is stored (`object` may be changed).
    pub on_create: Option<Arc<CompiledScript>>,
    /// Before an update is stored (`object`, `oldObject`).
    pub on_update: Option<Arc<CompiledScript>>,
    /// Before a delete (throw to refuse).
    pub on_delete: Option<Arc<CompiledScript>>,
    /// After a create.
    pub post_create: Option<Arc<CompiledScript>>,
    /// After an update.
    pub post_update: Option<Arc<CompiledScript>>,
    /// After a delete.
    pub post_delete: Option<Arc<CompiledScript>>,
    /// Before policies run on a write (throw to refuse).
    pub on_validate: Option<Arc<CompiledScript>>,
    /// On every read by an HTTP caller (`object` may be changed).
    pub on_read: Option<Arc<CompiledScript>>,
}

/// Object-level hooks ferridm knows of IDM's `managed.json`, and those it warns about.
const TRIGGER_KEYS: [&str; 8] = [
    "onCreate",
    "onUpdate",
    "onDelete",
    "postCreate",
    "postUpdate",
    "postDelete",
    "onValidate",
    "onRead",
];
const UNSUPPORTED_KEYS: [&str; 5] = ["onRetrieve", "onStore", "onSync", "actions", "notifications"];

/// Policies whose checks must also hold under concurrency, so a unique index backs them.
const UNIQUE_POLICIES: [&str; 2] = ["unique", "valid-username"];

/// A virtual property and how it is produced.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualProperty {
    /// Property name.
    pub name: String,
    /// Value when nothing computes it (the schema `default`, else null).
    pub default: Value,
    /// Whether responses carry it without `_fields`.
    pub return_by_default: bool,
}

/// A relationship property (`type: relationship`, or an array of them), as `managed.json`
/// declares it. Its edges are stored apart from the object (see `ferridm_store::Edge`).
#[derive(Debug, Clone, PartialEq)]
pub struct RelationshipProperty {
    /// Property name (`roles`).
    pub name: String,
    /// True for an array of references, false for a single one (`manager`).
    pub many: bool,
    /// The collections a reference may name (`resourceCollection[].path`).
    pub collections: Vec<String>,
    /// The property holding the edge on the referenced objects (`reversePropertyName`, when
    /// `reverseRelationship` is true).
    pub reverse: Option<String>,
    /// `validate`: a reference to an object that does not exist is refused.
    pub validate: bool,
}

impl RelationshipProperty {
    /// Reads the relationship settings of `property`: those of its `items` for an array, with
    /// the property's own keys as a fallback (IDM writes them at either level).
    fn of(property: &PropertySchema) -> Option<Self> {
        if !property.is_relationship() {
            return None;
        }
        let items = property.raw.get("items").and_then(Value::as_object);
        let many = property.has_type("array") || (!property.has_type("relationship") && items.is_some());
        let setting = |key: &str| {
            items
                .filter(|_| many)
                .and_then(|items| items.get(key))
                .or_else(|| property.raw.get(key))
        };
        let collections = setting("resourceCollection")
            .and_then(Value::as_array)
            .map(|collections| {
                collections
                    .iter()
                    .filter_map(|collection| collection.get("path").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let reverse = setting("reverseRelationship")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .then(|| {
                setting("reversePropertyName")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .flatten();
        Some(Self {
            name: property.name.clone(),
            many,
            collections,
            reverse,
            validate: setting("validate").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

/// One managed object type, ready to serve.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedType {
    /// The schema as declared.
    pub schema: ObjectType,
    /// How the store indexes it.
    pub index: IndexSpec,
    /// Properties stored as argon2id hashes (`secureHash` or `encryption` in the schema).
    pub hashed: Vec<String>,
    /// Private properties (never returned to HTTP callers).
    pub private: Vec<String>,
    /// Protected properties (owner re-authentication needed to change them).
    pub protected: Vec<String>,
    /// Virtual properties, in schema order.
    pub virtuals: Vec<VirtualProperty>,
    /// Defaults applied on create to absent, non-virtual properties.
    pub defaults: Vec<(String, Value)>,
    /// Relationship properties not returned by default.
    pub hidden_relationships: Vec<String>,
    /// Relationship properties, in schema order.
    pub relationships: Vec<RelationshipProperty>,
    /// Trigger scripts.
    pub triggers: Triggers,
}

impl PartialEq for Triggers {
    fn eq(&self, other: &Self) -> bool {
        let digest = |script: &Option<Arc<CompiledScript>>| script.as_ref().map(|s| s.digest());
        digest(&self.on_create) == digest(&other.on_create)
            && digest(&self.on_update) == digest(&other.on_update)
            && digest(&self.on_delete) == digest(&other.on_delete)
            && digest(&self.post_create) == digest(&other.post_create)
            && digest(&self.post_update) == digest(&other.post_update)
            && digest(&self.post_delete) == digest(&other.post_delete)
            && digest(&self.on_validate) == digest(&other.on_validate)
            && digest(&self.on_read) == digest(&other.on_read)
    }
}

impl ManagedType {
    /// The serving information of `schema`; its property index holds only the properties the
    /// schema marks `searchable` unless `index_every_property` (or the schema marks none).
    pub(crate) fn new(schema: ObjectType, triggers: Triggers, index_every_property: bool) -> Self {
        let properties = &schema.schema.properties;
        let names = |keep: &dyn Fn(&PropertySchema) -> bool| -> Vec<String> {
            properties.iter().filter(|p| keep(p)).map(|p| p.name.clone()).collect()
        };
        let private = names(&|p| p.private);
        let unique = names(&|p| {
            p.policies
                .iter()
                .any(|policy| UNIQUE_POLICIES.contains(&policy.policy_id.as_str()))
        });
        let hashed = names(&|p| p.raw.contains_key("secureHash") || p.raw.contains_key("encryption"));
        let protected = names(&|p| p.protected);
        let virtuals = properties
            .iter()
            .filter(|p| p.is_virtual)
            .map(|p| VirtualProperty {
                name: p.name.clone(),
                default: p.default.clone().unwrap_or(Value::Null),
                return_by_default: p.return_by_default,
            })
            .collect();
        let defaults = properties
            .iter()
            .filter(|p| !p.is_virtual)
            .filter_map(|p| p.default.clone().map(|value| (p.name.clone(), value)))
            .collect();
        let hidden_relationships = names(&|p| p.is_relationship() && !p.return_by_default);
        let relationships: Vec<RelationshipProperty> = properties.iter().filter_map(RelationshipProperty::of).collect();
        let mut hidden = private.clone();
        hidden.extend(properties.iter().filter(|p| p.is_virtual).map(|p| p.name.clone()));
        let mut searchable = names(&|p| p.searchable);
        // In one order, so that rules compare equal whatever order the schema lists them in.
        searchable.sort();
        let indexed = if index_every_property || searchable.is_empty() {
            Indexed::All
        } else {
            Indexed::Only(searchable)
        };
        Self {
            index: IndexSpec {
                hidden,
                unique,
                relationships: relationships.iter().map(|r| r.name.clone()).collect(),
                indexed,
            },
            hashed,
            private,
            protected,
            virtuals,
            defaults,
            hidden_relationships,
            relationships,
            triggers,
            schema,
        }
    }

    /// The type name.
    pub fn name(&self) -> &str {
        &self.schema.name
    }

    /// The collection path (`managed/user`).
    pub fn collection(&self) -> String {
        format!("managed/{}", self.schema.name)
    }

    /// True for a private property.
    pub fn is_private(&self, name: &str) -> bool {
        self.private.iter().any(|p| p == name)
    }

    /// True for a virtual property.
    pub fn is_virtual(&self, name: &str) -> bool {
        self.virtuals.iter().any(|v| v.name == name)
    }

    /// The relationship property `name`.
    pub fn relationship(&self, name: &str) -> Option<&RelationshipProperty> {
        self.relationships.iter().find(|r| r.name == name)
    }

    /// True for a hashed property.
    pub fn is_hashed(&self, name: &str) -> bool {
        self.hashed.iter().any(|p| p == name)
    }
}

impl FieldCatalog for ManagedType {
    fn returned_by_default(&self, field: &str) -> bool {
        if field == "_meta" || field == "_notifications" || self.hidden_relationships.iter().any(|r| r == field) {
            return false;
        }
        self.virtuals
            .iter()
            .find(|v| v.name == field)
            .is_none_or(|v| v.return_by_default)
    }

    fn is_reference(&self, field: &str) -> bool {
        field == "_meta" || self.schema.property(field).is_some_and(PropertySchema::is_relationship)
    }
}

/// Every managed type of a generation.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedTypes {
    /// The parsed `managed.json`.
    pub config: ManagedConfig,
    types: Vec<ManagedType>,
}

impl ManagedTypes {
    /// Derives the serving information of every declared type and compiles its triggers; the
    /// types named in `index_every_property` index all their properties.
    pub fn new(
        config: ManagedConfig,
        paths: &ConfigPaths,
        limits: &ScriptLimits,
        file: &std::path::Path,
        index_every_property: &[String],
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut types = Vec::with_capacity(config.objects.len());
        for (index, object) in config.objects.iter().enumerate() {
            let mut triggers = Triggers::default();
            for key in TRIGGER_KEYS {
                let Some(script) = object.raw.get(key) else {
                    continue;
                };
                let location = format!("objects[{index}].{key}");
                match compile_config(
                    paths,
                    limits,
                    script,
                    file,
                    &location,
                    &["object", "oldObject", "resourceName"],
                ) {
                    Ok(compiled) => {
                        let slot = match key {
                            "onCreate" => &mut triggers.on_create,
                            "onUpdate" => &mut triggers.on_update,
                            "onDelete" => &mut triggers.on_delete,
                            "postCreate" => &mut triggers.post_create,
                            "postUpdate" => &mut triggers.post_update,
                            "postDelete" => &mut triggers.post_delete,
                            "onValidate" => &mut triggers.on_validate,
                            _ => &mut triggers.on_read,
                        };
                        *slot = Some(compiled);
                    }
                    Err(error) => errors.push(error),
                }
            }
            for key in UNSUPPORTED_KEYS.iter().filter(|key| object.raw.contains_key(**key)) {
                tracing::warn!(file = %file_name_in_project(file), "ignoring objects[{index}].{key}: not implemented by ferridm");
            }
            let index_everything = index_every_property.contains(&object.name);
            types.push(ManagedType::new(object.clone(), triggers, index_everything));
        }
        if errors.is_empty() {
            Ok(Self { config, types })
        } else {
            Err(errors)
        }
    }

    /// The type with this name.
    pub fn get(&self, name: &str) -> Option<&ManagedType> {
        self.types.iter().find(|t| t.schema.name == name)
    }

    /// Every type.
    pub fn all(&self) -> &[ManagedType] {
        &self.types
    }
}
