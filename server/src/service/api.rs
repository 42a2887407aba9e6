//! The API descriptor: [`ROUTES`] lists every route the router serves to clients with its
//! operations, and [`document`] turns it, the generation's managed types (their `managed.json`
//! properties as JSON schema) and its self-service processes into an OpenAPI 3.1 document,
//! served at `GET /openidm/?_api` (IDM's convention; below a path, the routes under it). A test
//! here checks that every route pattern of the router is described, and the HTTP suite that the
//! router serves every described operation.

use ferridm_core::schema::{ObjectType, PropertySchema};
use ferridm_core::{Error, Result};
use serde_json::{Map, Value, json};

use crate::generation::Generation;
use crate::resource::{Reply, ResourcePath};

/// A CREST operation a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read (GET).
    Read,
    /// Query (GET with `_queryFilter`).
    Query,
    /// Create (POST without an action or with `_action=create`).
    Create,
    /// Update, or create with `If-None-Match: *` (PUT).
    Update,
    /// Patch (PATCH with IDM's patch operations).
    Patch,
    /// Delete.
    Delete,
    /// An action (POST `_action=<name>`).
    Action(&'static str),
}

/// What a route's resources look like (their schema in the document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A managed object of the path's `{type}`.
    Managed,
    /// IDM's server state (`_id`, `shortDesc`, `state`).
    ServerState,
    /// An empty object (the probes).
    Empty,
    /// This document.
    Document,
    /// A JSON object.
    Object,
    /// Any JSON value.
    Any,
    /// Plain text (the Prometheus exposition format).
    Text,
}

/// One route: a path below `/openidm` whose `{name}` segments are parameters (`{type}` stands
/// for each managed type, `{process}` for each self-service process), the operations served
/// there, and what its resources look like.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The path template, e.g. `managed/{type}/{id}`.
    pub path: &'static str,
    /// One line saying what it is.
    pub summary: &'static str,
    /// The operations served.
    pub operations: &'static [Op],
    /// What a read returns.
    pub shape: Shape,
    /// Answered without credentials.
    pub public: bool,
}

const fn route(path: &'static str, summary: &'static str, operations: &'static [Op], shape: Shape) -> Route {
    Route {
        path,
        summary,
        operations,
        shape,
        public: false,
    }
}

const fn public(path: &'static str, summary: &'static str, shape: Shape) -> Route {
    Route {
        path,
        summary,
        operations: &[Op::Read],
        shape,
        public: true,
    }
}

/// Every route the router serves to clients, in the router's order.
pub const ROUTES: &[Route] = &[
    route("", "This API document (`?_api`)", &[Op::Read], Shape::Document),
    public(
        "info/ping",
        "Server state (ACTIVE_READY when ready)",
        Shape::ServerState,
    ),
    public("health", "Server state, without an audit event", Shape::ServerState),
    public("health/live", "Liveness probe", Shape::Empty),
    public(
        "health/ready",
        "Readiness probe: the database answers, a configuration is installed",
        Shape::Empty,
    ),
    route("info/version", "Product version", &[Op::Read], Shape::Object),
    route(
        "info/login",
        "The caller's authentication and authorization",
        &[Op::Read],
        Shape::Object,
    ),
    route("info/uiconfig", "UI configuration", &[Op::Read], Shape::Object),
    route("info/features", "UI features", &[Op::Query], Shape::Object),
    route(
        "schema/managed/{type}",
        "A managed type's schema",
        &[Op::Read],
        Shape::Object,
    ),
    route(
        "privilege",
        "The caller's privileges",
        &[Op::Action("listPrivileges")],
        Shape::Any,
    ),
    route(
        "identityProviders",
        "Social identity providers",
        &[Op::Read],
        Shape::Object,
    ),
    route("selfservice/kba", "Security questions", &[Op::Read], Shape::Object),
    route("consent", "Consent mappings", &[Op::Query], Shape::Object),
    route(
        "authentication",
        "Session login, logout and re-authentication",
        &[
            Op::Read,
            Op::Action("login"),
            Op::Action("logout"),
            Op::Action("reauthenticate"),
        ],
        Shape::Object,
    ),
    route(
        "metrics/prometheus",
        "Metrics in the Prometheus text format",
        &[Op::Read],
        Shape::Text,
    ),
    route("audit/{topic}", "Audit events of a topic", &[Op::Query], Shape::Object),
    route("audit/{topic}/{id}", "One audit event", &[Op::Read], Shape::Object),
    route("cluster", "The nodes sharing the database", &[Op::Query], Shape::Object),
    route("cluster/work", "Run-once work in progress", &[Op::Query], Shape::Object),
    route("cluster/{node}", "One node", &[Op::Read], Shape::Object),
    route(
        "managed/{type}",
        "Managed objects of a type",
        &[Op::Create, Op::Query, Op::Action("patch")],
        Shape::Managed,
    ),
    route(
        "managed/{type}/{id}",
        "One managed object",
        &[Op::Read, Op::Update, Op::Patch, Op::Delete],
        Shape::Managed,
    ),
    route(
        "managed/{type}/{id}/{relationship}",
        "The references of one relationship of a managed object",
        &[Op::Query, Op::Create],
        Shape::Object,
    ),
    route(
        "managed/{type}/{id}/{relationship}/{edge}",
        "One reference of a relationship",
        &[Op::Read, Op::Delete],
        Shape::Object,
    ),
    route(
        "selfservice/profile/completeness",
        "The caller's profile completeness",
        &[Op::Read],
        Shape::Object,
    ),
    route(
        "selfservice/profile/completeness/managed/user/{id}",
        "A user's profile completeness",
        &[Op::Read],
        Shape::Object,
    ),
    route(
        "selfservice/{process}",
        "A self-service process",
        &[Op::Read, Op::Action("submitRequirements")],
        Shape::Object,
    ),
    route("config", "Configuration objects", &[Op::Read, Op::Query], Shape::Object),
    route(
        "config/status",
        "The installed configuration generation",
        &[Op::Read],
        Shape::Object,
    ),
    route(
        "config/{id}",
        "One configuration object (its conf file)",
        &[Op::Read, Op::Update, Op::Patch, Op::Delete],
        Shape::Object,
    ),
    route("policy", "Every resource's policies", &[Op::Read], Shape::Any),
    route(
        "policy/managed/{type}",
        "A managed type's policies, and validation against them",
        &[Op::Read, Op::Action("validateObject"), Op::Action("validateProperty")],
        Shape::Object,
    ),
];

/// `GET /openidm/<path>?_api`: the document, limited to the routes at or below `path`.
pub fn read_document(generation: &Generation, path: &ResourcePath) -> Result<Reply> {
    let mut document = document(generation);
    if !path.segments().is_empty() {
        let paths = document
            .get_mut("paths")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| Error::internal("Internal Server Error"))?;
        paths.retain(|key, _| below(key, path.segments()));
        if paths.is_empty() {
            return Err(Error::NotFound(format!("Resource '{path}' not found")));
        }
    }
    Ok(Reply::ok(document))
}

/// True when the document path `key` (`/managed/user/{id}`) is `prefix` or below it.
fn below(key: &str, prefix: &[String]) -> bool {
    let segments: Vec<&str> = key.split('/').filter(|segment| !segment.is_empty()).collect();
    segments.len() >= prefix.len()
        && segments
            .iter()
            .zip(prefix)
            .all(|(template, given)| template == given || template.starts_with('{'))
}

/// The OpenAPI 3.1 document of every route, for this generation.
pub fn document(generation: &Generation) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert("Error".into(), error_schema());
    schemas.insert("PatchOperations".into(), patch_schema());
    for object_type in &generation.managed.config.objects {
        schemas.insert(
            format!("managed.{}", object_type.name),
            managed_schema(object_type, false),
        );
        schemas.insert(
            format!("managed.{}.write", object_type.name),
            managed_schema(object_type, true),
        );
    }
    let types: Vec<&str> = generation
        .managed
        .config
        .objects
        .iter()
        .map(|object| object.name.as_str())
        .collect();
    let processes: Vec<&str> = generation.processes.names().map(String::as_str).collect();
    for route in ROUTES {
        for (path, managed_type) in expand(route.path, &types, &processes) {
            paths.insert(format!("/{path}"), path_item(route, &path, managed_type));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ferridm",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The PingIDM / ForgeRock IDM REST API as ferridm serves it. Authenticate \
                with X-OpenIDM-Username and X-OpenIDM-Password, HTTP Basic or the session-jwt cookie.",
        },
        "servers": [{"url": "/openidm"}],
        "security": [{"username": [], "password": []}, {"basic": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "username": {"type": "apiKey", "in": "header", "name": "X-OpenIDM-Username"},
                "password": {"type": "apiKey", "in": "header", "name": "X-OpenIDM-Password"},
                "basic": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": "session-jwt"},
            },
            "responses": {
                "Error": {
                    "description": "IDM's error body",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        },
    })
}

/// The concrete paths of a template: one per managed type for `{type}`, one per process for
/// `{process}` (with the managed type each names); other parameters stay.
fn expand<'a>(template: &str, types: &[&'a str], processes: &[&str]) -> Vec<(String, Option<&'a str>)> {
    if template.contains("{type}") {
        types
            .iter()
            .map(|name| (template.replace("{type}", name), Some(*name)))
            .collect()
    } else if template.contains("{process}") {
        processes
            .iter()
            .map(|name| (template.replace("{process}", name), None))
            .collect()
    } else {
        vec![(template.to_owned(), None)]
    }
}

fn path_item(route: &Route, path: &str, managed_type: Option<&str>) -> Value {
    let resource = match (route.shape, managed_type) {
        (Shape::Managed, Some(name)) => json!({"$ref": format!("#/components/schemas/managed.{name}")}),
        _ => shape_schema(route.shape),
    };
    let write = match (route.shape, managed_type) {
        (Shape::Managed, Some(name)) => json!({"$ref": format!("#/components/schemas/managed.{name}.write")}),
        _ => json!({"type": "object"}),
    };
    let has = |op: Op| route.operations.contains(&op);
    let actions: Vec<&str> = route
        .operations
        .iter()
        .filter_map(|op| match op {
            Op::Action(name) => Some(*name),
            _ => None,
        })
        .collect();
    let mut item = Map::new();
    let path_parameters: Vec<Value> = path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if !path_parameters.is_empty() {
        item.insert("parameters".into(), Value::Array(path_parameters));
    }
    let revision = || json!({"name": "If-Match", "in": "header", "required": false, "schema": {"type": "string"}});
    if has(Op::Read) || has(Op::Query) {
        let mut parameters = vec![fields()];
        let mut success = resource.clone();
        if route.shape == Shape::Document {
            parameters.push(
                json!({"name": "_api", "in": "query", "required": true, "allowEmptyValue": true,
                "schema": {"type": "string"}}),
            );
        }
        if has(Op::Query) {
            parameters.extend(query_parameters(!has(Op::Read)));
            let result = query_result(&resource);
            success = if has(Op::Read) {
                json!({"anyOf": [resource.clone(), result]})
            } else {
                result
            };
        }
        let summary = if has(Op::Read) { "Read" } else { "Query" };
        item.insert(
            "get".into(),
            operation(route, summary, parameters, None, ("200", success)),
        );
    }
    if has(Op::Create) || !actions.is_empty() {
        let mut names: Vec<&str> = actions.clone();
        if has(Op::Create) {
            names.insert(0, "create");
        }
        let mut parameters = vec![json!({"name": "_action", "in": "query", "required": !has(Op::Create),
            "schema": {"type": "string", "enum": names}})];
        let mut bodies = Vec::new();
        if has(Op::Create) {
            bodies.push(write.clone());
        }
        if actions.contains(&"patch") {
            parameters.extend(query_parameters(false));
            bodies.push(json!({"$ref": "#/components/schemas/PatchOperations"}));
        }
        if actions.iter().any(|name| *name != "patch") {
            bodies.push(json!({"type": "object"}));
        }
        let body = match bodies.len() {
            1 => bodies.remove(0),
            _ => json!({"anyOf": bodies}),
        };
        let status = if has(Op::Create) { "201" } else { "200" };
        let mut post = operation(route, "Create or action", parameters, Some(body), (status, json!({})));
        if has(Op::Create)
            && !actions.is_empty()
            && let Some(responses) = post.get_mut("responses").and_then(Value::as_object_mut)
        {
            responses.insert("200".into(), response(json!({})));
        }
        item.insert("post".into(), post);
    }
    if has(Op::Update) {
        let parameters = vec![
            revision(),
            json!({"name": "If-None-Match", "in": "header", "required": false, "schema": {"type": "string"}}),
        ];
        let mut put = operation(
            route,
            "Update (or create)",
            parameters,
            Some(write),
            ("200", resource.clone()),
        );
        if let Some(responses) = put.get_mut("responses").and_then(Value::as_object_mut) {
            responses.insert("201".into(), response(resource.clone()));
        }
        item.insert("put".into(), put);
    }
    if has(Op::Patch) {
        let body = json!({"$ref": "#/components/schemas/PatchOperations"});
        item.insert(
            "patch".into(),
            operation(route, "Patch", vec![revision()], Some(body), ("200", resource.clone())),
        );
    }
    if has(Op::Delete) {
        item.insert(
            "delete".into(),
            operation(route, "Delete", vec![revision()], None, ("200", resource)),
        );
    }
    Value::Object(item)
}

fn operation(route: &Route, verb: &str, parameters: Vec<Value>, body: Option<Value>, success: (&str, Value)) -> Value {
    let mut operation = json!({
        "summary": format!("{verb}: {}", route.summary),
        "parameters": parameters,
        "responses": {
            success.0: response_as(media_type(route.shape), success.1),
            "default": {"$ref": "#/components/responses/Error"},
        },
    });
    if let Some(object) = operation.as_object_mut() {
        if let Some(schema) = body {
            object.insert(
                "requestBody".into(),
                json!({"required": false, "content": {"application/json": {"schema": schema}}}),
            );
        }
        if route.public {
            object.insert("security".into(), json!([]));
        }
    }
    operation
}

fn response(schema: Value) -> Value {
    response_as("application/json", schema)
}

fn response_as(media_type: &str, schema: Value) -> Value {
    json!({"description": "Success", "content": {media_type: {"schema": schema}}})
}

fn media_type(shape: Shape) -> &'static str {
    match shape {
        Shape::Text => "text/plain",
        _ => "application/json",
    }
}

fn fields() -> Value {
    json!({"name": "_fields", "in": "query", "required": false, "schema": {"type": "string"}})
}

/// A query's parameters; `_queryFilter` is required where a GET can only be a query.
fn query_parameters(filter_required: bool) -> Vec<Value> {
    let integer = json!({"type": "integer", "minimum": 0});
    vec![
        json!({"name": "_queryFilter", "in": "query", "required": filter_required, "schema": {"type": "string"}}),
        json!({"name": "_pageSize", "in": "query", "required": false, "schema": integer}),
        json!({"name": "_pagedResultsOffset", "in": "query", "required": false, "schema": integer}),
        json!({"name": "_pagedResultsCookie", "in": "query", "required": false, "schema": {"type": "string"}}),
        json!({"name": "_sortKeys", "in": "query", "required": false, "schema": {"type": "string"}}),
        json!({"name": "_totalPagedResultsPolicy", "in": "query", "required": false,
            "schema": {"type": "string", "enum": ["NONE", "EXACT", "ESTIMATE"]}}),
    ]
}

fn query_result(item: &Value) -> Value {
    json!({
        "type": "object",
        "required": ["result", "resultCount"],
        "properties": {
            "result": {"type": "array", "items": item},
            "resultCount": {"type": "integer"},
            "pagedResultsCookie": {"type": ["string", "null"]},
            "totalPagedResultsPolicy": {"type": "string"},
            "totalPagedResults": {"type": "integer"},
            "remainingPagedResults": {"type": "integer"},
        },
    })
}

fn shape_schema(shape: Shape) -> Value {
    match shape {
        Shape::ServerState => json!({
            "type": "object",
            "required": ["_id", "shortDesc", "state"],
            "properties": {
                "_id": {"type": "string"},
                "shortDesc": {"type": "string"},
                "state": {"type": "string", "enum": ["ACTIVE_READY", "ACTIVE_NOT_READY"]},
            },
        }),
        Shape::Empty => json!({"type": "object", "maxProperties": 0}),
        Shape::Document => json!({"type": "object", "required": ["openapi", "paths"]}),
        Shape::Object | Shape::Managed => json!({"type": "object"}),
        Shape::Any => json!({}),
        Shape::Text => json!({"type": "string"}),
    }
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["code", "reason", "message"],
        "properties": {
            "code": {"type": "integer", "minimum": 400, "maximum": 599},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "detail": {},
        },
    })
}

fn patch_schema() -> Value {
    json!({
        "type": "array",
        "items": {
            "type": "object",
            "required": ["operation", "field"],
            "properties": {
                "operation": {"type": "string", "enum": ["add", "remove", "replace", "increment", "copy", "move", "transform"]},
                "field": {"type": "string"},
                "from": {"type": "string"},
                "value": {},
            },
        },
    })
}

/// A managed type as JSON schema: for writes its properties less the virtual ones, with
/// `required`; for reads its properties less the private ones, with `_id` and `_rev`.
fn managed_schema(object_type: &ObjectType, write: bool) -> Value {
    let schema = &object_type.schema;
    let mut properties = Map::new();
    for property in &schema.properties {
        let skipped = if write { property.is_virtual } else { property.private };
        if !skipped {
            properties.insert(property.name.clone(), property_schema(property));
        }
    }
    if !write {
        properties.insert("_id".into(), json!({"type": "string"}));
        properties.insert("_rev".into(), json!({"type": "string"}));
    }
    let mut result = json!({"type": "object", "properties": properties});
    if let Some(object) = result.as_object_mut() {
        copy_annotations(&schema.raw, object);
        let required: Vec<&String> = schema
            .required
            .iter()
            .filter(|name| schema.property(name).is_some_and(|property| !property.is_virtual))
            .collect();
        if write && !required.is_empty() {
            object.insert("required".into(), json!(required));
        }
    }
    result
}

fn property_schema(property: &PropertySchema) -> Value {
    json_schema(&Value::Object(property.raw.clone()))
}

/// IDM's schema keywords as JSON schema: standard keywords kept, `relationship` as a
/// reference object, IDM's own keywords (`viewable`, `policies`, …) left out.
fn json_schema(raw: &Value) -> Value {
    let Some(raw) = raw.as_object() else {
        return json!({});
    };
    let mut schema = Map::new();
    copy_annotations(raw, &mut schema);
    for key in [
        "minLength",
        "maxLength",
        "pattern",
        "enum",
        "format",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
    ] {
        if let Some(value) = raw.get(key) {
            schema.insert(key.into(), value.clone());
        }
    }
    if let Some(items) = raw.get("items") {
        schema.insert("items".into(), json_schema(items));
    }
    if let Some(Value::Object(properties)) = raw.get("properties") {
        let converted: Map<String, Value> = properties
            .iter()
            .map(|(name, property)| (name.clone(), json_schema(property)))
            .collect();
        schema.insert("properties".into(), Value::Object(converted));
    }
    let types: Vec<&str> = match raw.get("type") {
        Some(Value::String(single)) => vec![single.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.contains(&"relationship") {
        let mut alternatives = vec![json!({
            "type": "object",
            "properties": {"_ref": {"type": "string"}, "_refProperties": {"type": "object"}},
        })];
        if types.contains(&"null") {
            alternatives.push(json!({"type": "null"}));
        }
        schema.insert("anyOf".into(), Value::Array(alternatives));
    } else if let [single] = types.as_slice() {
        schema.insert("type".into(), json!(single));
    } else if !types.is_empty() {
        schema.insert("type".into(), json!(types));
    }
    Value::Object(schema)
}

fn copy_annotations(raw: &Map<String, Value>, schema: &mut Map<String, Value>) {
    for key in ["title", "description"] {
        if let Some(value) = raw.get(key).filter(|value| value.is_string()) {
            schema.insert(key.into(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Router patterns deliberately left out of the document: internal callers only, and
    /// deeper paths below managed objects (always refused).
    const UNDESCRIBED: &[&str] = &["internal/user", "internal/user/{}", "managed/{}/{}/.."];

    /// The slice patterns of the router's match arms, as templates (`{}` for a binding, `..`).
    fn router_patterns() -> Vec<String> {
        let source = include_str!("router.rs");
        let body = source
            .split("pub fn dispatch(")
            .nth(1)
            .unwrap_or_else(|| panic!("router.rs has no dispatch"));
        body.lines()
            .map(str::trim)
            .filter(|line| line.starts_with('[') && line.contains("=>"))
            .filter_map(|line| line.get(1..line.find(']')?))
            .map(|pattern| {
                pattern
                    .split(',')
                    .map(str::trim)
                    .map(
                        |element| match element.strip_prefix('"').and_then(|e| e.strip_suffix('"')) {
                            Some(literal) => literal.to_owned(),
                            None if element == ".." => "..".to_owned(),
                            None => "{}".to_owned(),
                        },
                    )
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect()
    }

    /// True when the described template serves what the router pattern matches.
    fn describes(template: &str, pattern: &str) -> bool {
        let template: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
        let pattern: Vec<&str> = pattern.split('/').collect();
        let open = pattern.last() == Some(&"..");
        let fixed = if open {
            &pattern[..pattern.len() - 1]
        } else {
            &pattern[..]
        };
        let length_fits = if open {
            template.len() >= fixed.len()
        } else {
            template.len() == fixed.len()
        };
        length_fits
            && fixed
                .iter()
                .zip(&template)
                .all(|(element, segment)| (*element == "{}" && segment.starts_with('{')) || element == segment)
    }

    #[test]
    fn every_router_pattern_is_described() {
        let patterns = router_patterns();
        assert!(
            patterns.len() > 20,
            "the router's patterns were not found: {patterns:?}"
        );
        for pattern in patterns {
            let described = ROUTES.iter().any(|route| describes(route.path, &pattern));
            assert!(
                described || UNDESCRIBED.contains(&pattern.as_str()),
                "the router serves {pattern} but ROUTES does not describe it (service/api.rs)"
            );
        }
    }

    #[test]
    fn described_templates_match_router_patterns_literally() {
        assert!(describes("managed/{type}/{id}", "managed/{}/{}"));
        assert!(describes("config/{id}", "config/.."));
        assert!(!describes("managed/{type}", "managed/{}/{}"));
        assert!(!describes("info/version", "info/{}"));
    }
}
