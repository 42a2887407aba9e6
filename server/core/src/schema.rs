//! The managed-object schema model read from `managed.json` (IDM's format): object types, their
//! properties and the keywords ferridm honours (`required`, `viewable`, `userEditable`,
//! `searchable`, `returnByDefault`, `isVirtual`, `scope`, `isProtected`, `default`, length and
//! pattern constraints, explicit `policies`). Every property keeps its verbatim JSON so schema
//! responses and self-service requirements can echo it; unknown keywords are preserved.

use serde_json::Value;

use crate::Object;

/// Why a `managed.json` document was refused; the message names the JSON location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct SchemaError {
    /// Where in the document, e.g. `objects[0].schema.properties.mail.type`.
    pub location: String,
    /// What is wrong there.
    pub message: String,
}

fn schema_error(location: &str, message: impl Into<String>) -> SchemaError {
    SchemaError {
        location: location.to_owned(),
        message: message.into(),
    }
}

/// The whole `managed.json`: every managed object type, in declaration order.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedConfig {
    /// The declared types.
    pub objects: Vec<ObjectType>,
}

impl ManagedConfig {
    /// Parses and checks a `managed.json` document.
    pub fn from_json(document: &Value) -> Result<Self, SchemaError> {
        let root = document
            .as_object()
            .ok_or_else(|| schema_error("$", "expected an object with an \"objects\" array"))?;
        let objects = root
            .get("objects")
            .and_then(Value::as_array)
            .ok_or_else(|| schema_error("objects", "expected an array of object types"))?;
        let mut parsed: Vec<ObjectType> = Vec::with_capacity(objects.len());
        for (index, object) in objects.iter().enumerate() {
            let location = format!("objects[{index}]");
            let object_type = ObjectType::from_json(object, &location)?;
            if parsed.iter().any(|known| known.name == object_type.name) {
                return Err(schema_error(
                    &location,
                    format!("the type \"{}\" is declared twice", object_type.name),
                ));
            }
            parsed.push(object_type);
        }
        Ok(Self { objects: parsed })
    }

    /// The type with this name, if declared.
    pub fn object_type(&self, name: &str) -> Option<&ObjectType> {
        self.objects.iter().find(|object| object.name == name)
    }
}

/// One managed object type (`managed/<name>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectType {
    /// The type name, `[a-zA-Z0-9_]+`.
    pub name: String,
    /// Its schema.
    pub schema: ObjectSchema,
    /// The whole object-type config as written (triggers, actions, meta, …).
    pub raw: Object,
}

impl ObjectType {
    fn from_json(value: &Value, location: &str) -> Result<Self, SchemaError> {
        let raw = value
            .as_object()
            .ok_or_else(|| schema_error(location, "expected an object"))?;
        let name = raw
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| schema_error(&format!("{location}.name"), "expected a string"))?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(schema_error(
                &format!("{location}.name"),
                format!("\"{name}\" is not a valid type name (letters, digits and _ only)"),
            ));
        }
        let schema = match raw.get("schema") {
            Some(schema) => ObjectSchema::from_json(schema, &format!("{location}.schema"))?,
            None => ObjectSchema::default(),
        };
        Ok(Self {
            name: name.to_owned(),
            schema,
            raw: raw.clone(),
        })
    }

    /// The property with this top-level name, if declared.
    pub fn property(&self, name: &str) -> Option<&PropertySchema> {
        self.schema.property(name)
    }
}

/// An object schema: the top level of a type, or a nested `object` property.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectSchema {
    /// Properties in declaration order.
    pub properties: Vec<PropertySchema>,
    /// The `order` array (for UIs).
    pub order: Vec<String>,
    /// Names of required properties.
    pub required: Vec<String>,
    /// The schema as written.
    pub raw: Object,
}

impl ObjectSchema {
    fn from_json(value: &Value, location: &str) -> Result<Self, SchemaError> {
        let raw = value
            .as_object()
            .ok_or_else(|| schema_error(location, "expected an object"))?;
        let mut properties = Vec::new();
        if let Some(declared) = raw.get("properties") {
            let declared = declared
                .as_object()
                .ok_or_else(|| schema_error(&format!("{location}.properties"), "expected an object"))?;
            for (name, property) in declared {
                let property_location = format!("{location}.properties.{name}");
                properties.push(PropertySchema::from_json(name, property, &property_location)?);
            }
        }
        Ok(Self {
            properties,
            order: string_list(raw.get("order"), &format!("{location}.order"))?,
            required: string_list(raw.get("required"), &format!("{location}.required"))?,
            raw: raw.clone(),
        })
    }

    /// The property with this name, if declared.
    pub fn property(&self, name: &str) -> Option<&PropertySchema> {
        self.properties.iter().find(|property| property.name == name)
    }

    /// True when the property is listed in `required`.
    pub fn is_required(&self, name: &str) -> bool {
        self.required.iter().any(|required| required == name)
    }
}

/// An explicit policy attached to a property: `{"policyId": …, "params": {…}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRef {
    /// The policy id, e.g. `unique`.
    pub policy_id: String,
    /// Its parameters.
    pub params: Object,
}

/// One property of an object schema.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertySchema {
    /// The property name.
    pub name: String,
    /// Declared types (`string`, `number`, …); empty when `type` is absent.
    pub types: Vec<String>,
    /// True when `type` was written as an array.
    pub type_is_list: bool,
    /// `title`.
    pub title: Option<String>,
    /// `viewable` (default true).
    pub viewable: bool,
    /// `userEditable` (default false).
    pub user_editable: bool,
    /// `searchable` (default false).
    pub searchable: bool,
    /// `returnByDefault` (default false; matters for virtual and relationship properties).
    pub return_by_default: bool,
    /// `isVirtual` (default false).
    pub is_virtual: bool,
    /// `scope: "private"`: never returned to external callers.
    pub private: bool,
    /// `isProtected`: the owner needs re-authentication to change it.
    pub protected: bool,
    /// `minLength`.
    pub min_length: Option<i64>,
    /// `maxLength`.
    pub max_length: Option<i64>,
    /// `pattern`.
    pub pattern: Option<String>,
    /// Explicit `policies`, in order.
    pub policies: Vec<PolicyRef>,
    /// `default`: applied on create when the property is absent.
    pub default: Option<Value>,
    /// Nested schema of an `object` property.
    pub object: Option<ObjectSchema>,
    /// The property as written.
    pub raw: Object,
}

const KNOWN_TYPES: [&str; 8] = [
    "string",
    "number",
    "integer",
    "boolean",
    "object",
    "array",
    "null",
    "relationship",
];

impl PropertySchema {
    fn from_json(name: &str, value: &Value, location: &str) -> Result<Self, SchemaError> {
        let raw = value
            .as_object()
            .ok_or_else(|| schema_error(location, "expected an object"))?;
        let (types, type_is_list) = match raw.get("type") {
            None => (Vec::new(), false),
            Some(Value::String(single)) => (vec![single.clone()], false),
            Some(Value::Array(_)) => (string_list(raw.get("type"), &format!("{location}.type"))?, true),
            Some(_) => {
                return Err(schema_error(
                    &format!("{location}.type"),
                    "expected a type name or an array of type names",
                ));
            }
        };
        if let Some(unknown) = types.iter().find(|t| !KNOWN_TYPES.contains(&t.as_str())) {
            return Err(schema_error(
                &format!("{location}.type"),
                format!(
                    "unknown type \"{unknown}\" (expected one of {})",
                    KNOWN_TYPES.join(", ")
                ),
            ));
        }
        let flag = |key: &str, default: bool| -> Result<bool, SchemaError> {
            match raw.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(value)) => Ok(*value),
                Some(_) => Err(schema_error(&format!("{location}.{key}"), "expected true or false")),
            }
        };
        let integer = |key: &str| -> Result<Option<i64>, SchemaError> {
            match raw.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(value) => value
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| schema_error(&format!("{location}.{key}"), "expected an integer")),
            }
        };
        let scope = raw.get("scope").and_then(Value::as_str).unwrap_or("public");
        if scope != "public" && scope != "private" {
            return Err(schema_error(
                &format!("{location}.scope"),
                "expected \"public\" or \"private\"",
            ));
        }
        let pattern = match raw.get("pattern") {
            None | Some(Value::Null) => None,
            Some(Value::String(pattern)) => Some(pattern.clone()),
            Some(_) => return Err(schema_error(&format!("{location}.pattern"), "expected a string")),
        };
        let object = if types.iter().any(|t| t == "object") && raw.contains_key("properties") {
            Some(ObjectSchema::from_json(value, location)?)
        } else {
            None
        };
        Ok(Self {
            name: name.to_owned(),
            types,
            type_is_list,
            title: raw.get("title").and_then(Value::as_str).map(str::to_owned),
            viewable: flag("viewable", true)?,
            user_editable: flag("userEditable", false)?,
            searchable: flag("searchable", false)?,
            return_by_default: flag("returnByDefault", false)?,
            is_virtual: flag("isVirtual", false)?,
            private: scope == "private",
            protected: flag("isProtected", false)?,
            min_length: integer("minLength")?,
            max_length: integer("maxLength")?,
            pattern,
            policies: policy_refs(raw.get("policies"), &format!("{location}.policies"))?,
            default: raw.get("default").cloned(),
            object,
            raw: raw.clone(),
        })
    }

    /// True when one of the declared types is `name`.
    pub fn has_type(&self, name: &str) -> bool {
        self.types.iter().any(|t| t == name)
    }

    /// True for relationship properties (`type: "relationship"` or an array of them).
    pub fn is_relationship(&self) -> bool {
        self.has_type("relationship")
            || self
                .raw
                .get("items")
                .and_then(|items| items.get("type"))
                .and_then(Value::as_str)
                == Some("relationship")
    }
}

fn string_list(value: Option<&Value>, location: &str) -> Result<Vec<String>, SchemaError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| schema_error(location, "expected an array of strings"))
            })
            .collect(),
        Some(_) => Err(schema_error(location, "expected an array of strings")),
    }
}

fn policy_refs(value: Option<&Value>, location: &str) -> Result<Vec<PolicyRef>, SchemaError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let items = value
        .as_array()
        .ok_or_else(|| schema_error(location, "expected an array of {\"policyId\", \"params\"}"))?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let item_location = format!("{location}[{index}]");
            let policy_id = item
                .get("policyId")
                .and_then(Value::as_str)
                .ok_or_else(|| schema_error(&item_location, "expected a \"policyId\" string"))?;
            let params = match item.get("params") {
                None | Some(Value::Null) => Object::new(),
                Some(Value::Object(params)) => params.clone(),
                Some(_) => return Err(schema_error(&format!("{item_location}.params"), "expected an object")),
            };
            Ok(PolicyRef {
                policy_id: policy_id.to_owned(),
                params,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user_type() -> ManagedConfig {
        ManagedConfig::from_json(&json!({"objects": [{
            "name": "user",
            "schema": {
                "required": ["userName"],
                "order": ["userName", "password", "preferences"],
                "properties": {
                    "userName": {"type": "string", "searchable": true, "userEditable": true, "minLength": 1,
                                 "policies": [{"policyId": "unique"}]},
                    "password": {"type": "string", "scope": "private", "isProtected": true, "viewable": false},
                    "preferences": {"type": "object", "properties": {"updates": {"type": "boolean"}}},
                    "effectiveRoles": {"type": "array", "isVirtual": true, "returnByDefault": true, "default": []},
                    "x-custom": {"type": ["string", "null"], "somethingNew": 1}
                }
            }
        }]}))
        .unwrap()
    }

    #[test]
    fn properties_keep_declaration_order_and_keywords() {
        let managed = user_type();
        let user = managed.object_type("user").unwrap();
        let names: Vec<_> = user.schema.properties.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["userName", "password", "preferences", "effectiveRoles", "x-custom"]
        );
        let user_name = user.property("userName").unwrap();
        assert!(user_name.searchable && user_name.user_editable && user_name.viewable);
        assert_eq!(user_name.min_length, Some(1));
        assert_eq!(user_name.policies[0].policy_id, "unique");
        assert!(user.schema.is_required("userName"));
        let password = user.property("password").unwrap();
        assert!(password.private && password.protected && !password.viewable);
        let roles = user.property("effectiveRoles").unwrap();
        assert!(roles.is_virtual && roles.return_by_default);
        assert_eq!(roles.default, Some(json!([])));
    }

    #[test]
    fn nested_object_properties_are_parsed() {
        let managed = user_type();
        let preferences = managed.object_type("user").unwrap().property("preferences").unwrap();
        let nested = preferences.object.as_ref().unwrap();
        assert_eq!(nested.properties[0].name, "updates");
    }

    #[test]
    fn unknown_keywords_are_preserved() {
        let managed = user_type();
        let custom = managed.object_type("user").unwrap().property("x-custom").unwrap();
        assert!(custom.type_is_list);
        assert_eq!(custom.raw.get("somethingNew"), Some(&json!(1)));
    }

    #[test]
    fn bad_documents_name_the_location() {
        let err = ManagedConfig::from_json(&json!({"objects": [{"name": "user", "schema": {"properties": {
            "mail": {"type": "text"}}}}]}))
        .unwrap_err();
        assert_eq!(err.location, "objects[0].schema.properties.mail.type");
        let err = ManagedConfig::from_json(&json!({"objects": [{"name": "bad/name"}]})).unwrap_err();
        assert_eq!(err.location, "objects[0].name");
        let err = ManagedConfig::from_json(&json!({"objects": [{"name": "a"}, {"name": "a"}]})).unwrap_err();
        assert!(err.message.contains("declared twice"));
        let err = ManagedConfig::from_json(&json!({"objects": [{"name": "a", "schema": {"properties": {
            "p": {"type": "string", "viewable": "yes"}}}}]}))
        .unwrap_err();
        assert_eq!(err.location, "objects[0].schema.properties.p.viewable");
    }
}
