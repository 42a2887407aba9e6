//! The API document (`GET /openidm/?_api`, OpenAPI 3.1): built from the router's route
//! descriptors (`service::api::ROUTES`) and the managed types of `managed.json`, so it follows a
//! reload; every described operation is served by the router; and schemathesis, run against a
//! server with the document, finds no server error and no response that breaks it.

use std::time::Duration;

use ferridm::resource::{Body, Method, Operation, Params, Request, ResourcePath};
use ferridm::service::RequestContext;
use ferridm::service::api::{Op, ROUTES, Shape};
use ferridm::service::router;
use ferridm_core::Error;
use ferridm_tests::{TestServer, schemathesis, unique};
use serde_json::{Value, json};

const RELOAD: Duration = Duration::from_secs(20);

fn document(server: &TestServer, path: &str) -> Value {
    let reply = server.admin().get(&format!("{path}?_api")).send();
    assert_eq!(reply.status, 200, "{path}?_api: {}", reply.text);
    reply.body
}

fn path_keys(document: &Value) -> Vec<&str> {
    document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn the_document_describes_managed_types_and_follows_reload() {
    let server = TestServer::start();
    let api = document(&server, "/openidm/");
    assert_eq!(api["openapi"], "3.1.0");
    assert_eq!(api["servers"], json!([{"url": "/openidm"}]));
    let keys = path_keys(&api);
    for path in [
        "/",
        "/info/ping",
        "/health/ready",
        "/managed/user",
        "/managed/user/{id}",
        "/managed/role",
        "/managed/role/{id}",
        "/schema/managed/user",
        "/selfservice/registration",
        "/selfservice/reset",
        "/policy/managed/user",
        "/config/{id}",
    ] {
        assert!(keys.contains(&path), "{path} missing from {keys:?}");
    }
    assert_eq!(api["paths"]["/health/ready"]["get"]["security"], json!([]));
    assert_eq!(
        api["paths"]["/managed/user"]["post"]["requestBody"]["content"]["application/json"]["schema"],
        json!({"anyOf": [
            {"$ref": "#/components/schemas/managed.user.write"},
            {"$ref": "#/components/schemas/PatchOperations"},
        ]}),
        "create, or patch by query"
    );
    assert_eq!(
        api["paths"]["/managed/user/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"],
        json!({"$ref": "#/components/schemas/managed.user"})
    );

    // managed.json's properties as JSON schema: for writes with `required`, for reads without
    // the private ones and with `_id` and `_rev`.
    let schemas = &api["components"]["schemas"];
    let write = &schemas["managed.user.write"];
    assert_eq!(write["required"], json!(["userName", "givenName", "sn", "mail"]));
    assert_eq!(
        write["properties"]["userName"],
        json!({"title": "Username", "description": "Username", "type": "string", "minLength": 1})
    );
    assert_eq!(
        write["properties"]["telephoneNumber"]["pattern"],
        "^\\+?([0-9\\- \\(\\)])*$"
    );
    assert_eq!(
        write["properties"]["preferences"]["properties"]["marketing"]["type"],
        "boolean"
    );
    assert_eq!(
        write["properties"]["roles"]["items"]["anyOf"][0]["properties"]["_ref"],
        json!({"type": "string"})
    );
    assert_eq!(write["properties"]["password"]["minLength"], 8);
    assert!(
        write["properties"].get("effectiveRoles").is_none(),
        "virtual: not written"
    );
    let read = &schemas["managed.user"];
    assert!(read["properties"].get("password").is_none(), "private: never read");
    assert_eq!(read["properties"]["_rev"], json!({"type": "string"}));
    assert_eq!(read["properties"]["effectiveRoles"]["type"], "array");
    assert!(read.get("required").is_none());
    assert_eq!(schemas["managed.role.write"]["properties"]["name"]["type"], "string");

    // Below a path: the routes under it; nothing there is a 404; credentials are needed.
    let role = document(&server, "/openidm/managed/role");
    assert_eq!(
        path_keys(&role),
        [
            "/managed/role",
            "/managed/role/{id}",
            "/managed/role/{id}/{relationship}",
            "/managed/role/{id}/{relationship}/{edge}"
        ]
    );
    let message = server.admin().get("/openidm/nothing?_api").send().assert_error(404);
    assert_eq!(message, "Resource &#39;nothing&#39; not found");
    server.nobody().get("/openidm/?_api").send().assert_error(401);

    // A new type in managed.json appears once the file is reloaded.
    let file = server.conf().join("managed.json");
    let mut managed: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    managed["objects"].as_array_mut().unwrap().push(json!({
        "name": "device",
        "schema": {
            "title": "Device",
            "required": ["serial"],
            "properties": {
                "serial": {"type": "string", "maxLength": 32, "searchable": true},
                "owner": {"type": ["string", "null"], "viewable": true},
                "holder": {"type": "relationship", "resourceCollection": [{"path": "managed/user"}]},
            },
        },
    }));
    std::fs::write(&file, serde_json::to_string_pretty(&managed).unwrap()).unwrap();
    server.wait_until(RELOAD, "the new managed type in the API document", || {
        path_keys(&document(&server, "/openidm/")).contains(&"/managed/device/{id}")
    });
    let api = document(&server, "/openidm/");
    let device = &api["components"]["schemas"]["managed.device.write"];
    assert_eq!(
        device,
        &json!({
            "type": "object",
            "title": "Device",
            "required": ["serial"],
            "properties": {
                "serial": {"type": "string", "maxLength": 32},
                "owner": {"type": ["string", "null"]},
                "holder": {"anyOf": [{"type": "object", "properties": {
                    "_ref": {"type": "string"}, "_refProperties": {"type": "object"}}}]},
            },
        })
    );
    assert!(path_keys(&api).contains(&"/schema/managed/device"));
    assert!(path_keys(&api).contains(&"/policy/managed/device"));
}

/// The HTTP method an operation is documented under.
fn method_of(op: Op) -> (&'static str, Method, Operation) {
    match op {
        Op::Read => ("get", Method::Get, Operation::Read),
        Op::Query => ("get", Method::Get, Operation::Query),
        Op::Create => ("post", Method::Post, Operation::Create),
        Op::Update => ("put", Method::Put, Operation::Update),
        Op::Patch => ("patch", Method::Patch, Operation::Patch),
        Op::Delete => ("delete", Method::Delete, Operation::Delete),
        Op::Action(name) => ("post", Method::Post, Operation::Action(name.to_owned())),
    }
}

#[test]
fn every_described_operation_is_documented_and_served_by_the_router() {
    let server = TestServer::start();
    let user = server.create_user(&unique("routes"), None);
    let user_id = user["_id"].as_str().unwrap().to_owned();
    let reply = server.admin().put("/openidm/config/apiroutes", &json!({"x": 1})).send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut event_id = String::new();
    server.wait_until(RELOAD, "an activity event to read", || {
        let events = server.admin().get("/openidm/audit/activity?_queryFilter=true").send();
        event_id = events.body["result"][0]["_id"].as_str().unwrap_or_default().to_owned();
        !event_id.is_empty()
    });
    let api = document(&server, "/openidm/");

    let state = server.state();
    let mut operations: Vec<(&str, Op, Shape)> = ROUTES
        .iter()
        .flat_map(|route| route.operations.iter().map(|op| (route.path, *op, route.shape)))
        .collect();
    // Deletes last: they remove the samples the others use.
    operations.sort_by_key(|(_, op, _)| *op == Op::Delete);
    for (template, op, shape) in operations {
        let path = template
            .replace("{type}", "user")
            .replace("{process}", "registration")
            .replace("{topic}", "activity")
            .replace("{node}", "a-node")
            .replace("{relationship}", "roles")
            .replace("{edge}", "an-edge");
        let path = match template {
            "config/{id}" => path.replace("{id}", "apiroutes"),
            "audit/{topic}/{id}" => path.replace("{id}", &event_id),
            _ => path.replace("{id}", &user_id),
        };
        assert!(!path.contains('{'), "no sample for a parameter of {template}");
        let (http_method, method, operation) = method_of(op);

        // The document lists it, under the template's path with managed types filled in.
        let key = format!(
            "/{}",
            template.replace("{type}", "user").replace("{process}", "registration")
        );
        let documented = &api["paths"][&key][http_method];
        assert!(
            documented.is_object(),
            "{http_method} {key} ({op:?}) is not in the document"
        );
        if let Op::Action(name) = op {
            let actions = documented["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|parameter| parameter["name"] == "_action")
                .map(|parameter| parameter["schema"]["enum"].clone());
            assert!(
                actions
                    .as_ref()
                    .and_then(Value::as_array)
                    .is_some_and(|names| names.contains(&json!(name))),
                "{key}: _action={name} is not documented"
            );
        }

        // The router serves it: neither its fallback 404 nor "not supported".
        let mut params = Vec::new();
        match &operation {
            Operation::Query => params.push(("_queryfilter", "true")),
            Operation::Action(name) => params.push(("_action", name.as_str())),
            _ => {}
        }
        if shape == Shape::Document {
            params.push(("_api", ""));
        }
        let request = Request {
            method,
            path: ResourcePath::parse(&path),
            params: Params::from_pairs(params),
            if_match: None,
            if_none_match: None,
            body: Body::Json(json!("a body every handler refuses")),
        };
        let mut ctx = RequestContext::internal(state.clone(), state.generation());
        let result = router::dispatch(&mut ctx, &request, &operation);
        let fallback = format!("Resource '{}' not found", request.path);
        match result {
            Err(Error::NotFound(message)) if message == fallback => {
                panic!("{op:?} {path}: described but not routed")
            }
            Err(Error::NotSupported(message) | Error::MethodNotAllowed(message)) => {
                panic!("{op:?} {path}: described but not supported: {message}")
            }
            _ => {}
        }
    }
}

/// IDM answers an operation or HTTP method that a resource does not support with 501
/// (`idm-api.md` §1.2, e.g. `POST` without `_action` on an action-only resource, `TRACE`): that
/// is its wire contract, not a server failure. Every other 5xx fails the run.
const SCHEMATHESIS_CONFIG: &str = r#"
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "501"]
"#;

/// How long schemathesis may run before the test fails (the whole run takes well under it).
const SCHEMATHESIS_LIMIT: Duration = Duration::from_secs(240);

#[test]
fn schemathesis_finds_no_server_errors_and_no_response_breaking_the_document() {
    let server = TestServer::start();
    let api = document(&server, "/openidm/");
    let url = format!("{}/openidm", server.base());
    let run = schemathesis::run(
        &api,
        SCHEMATHESIS_CONFIG,
        &url,
        &[
            "--header",
            "X-OpenIDM-Username: openidm-admin",
            "--header",
            "X-OpenIDM-Password: openidm-admin",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            "40",
            "--seed",
            "99",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--generation-with-security-parameters",
            "false",
            "--generation-database",
            "none",
            // Writing random configuration would change the server under test.
            "--exclude-path",
            "/config/{id}",
        ],
        SCHEMATHESIS_LIMIT,
    );
    assert!(
        run.status.success(),
        "schemathesis failed ({}) after {:?}:\n{}",
        run.status,
        run.elapsed,
        run.output
    );
    assert!(
        run.output.contains("passed") && !run.output.contains("No operations"),
        "schemathesis tested nothing:\n{}",
        run.output
    );
    println!("schemathesis passed in {:?}:\n{}", run.elapsed, run.output);
}
