//! What IDM's own clients (the End User UI, the JavaScript SDK) read beyond the core API: the
//! managed object schema, delegated-admin privileges, UI configuration and features, identity
//! providers, KBA questions and consent mappings — each answered from the loaded configuration.

use ferridm_core::query::QueryResponse;
use ferridm_core::{Error, Result};
use serde_json::{Value, json};

use crate::generation::Generation;
use crate::resource::{Operation, Reply};

/// `GET /openidm/schema/managed/<type>`: the object schema as declared in `managed.json`.
pub fn read_schema(generation: &Generation, type_name: &str) -> Result<Reply> {
    let object_type = generation
        .managed
        .get(type_name)
        .ok_or_else(|| Error::NotFound(format!("Resource 'schema/managed/{type_name}' not found")))?;
    let mut schema = serde_json::Map::new();
    schema.insert("_id".to_owned(), Value::String(format!("managed/{type_name}")));
    for (key, value) in &object_type.schema.schema.raw {
        schema.insert(key.clone(), value.clone());
    }
    Ok(Reply::ok(Value::Object(schema)))
}

/// `POST /openidm/privilege?_action=listPrivileges`: delegated-admin privileges of the caller
/// (ferridm has none to delegate, so always an empty list).
pub fn list_privileges(operation: &Operation) -> Result<Reply> {
    match operation.action() {
        Some("listPrivileges") => Ok(Reply::ok(json!([]))),
        Some(other) => Err(Error::bad_request(format!("Action {other} is not supported."))),
        None => Err(Error::NotSupported(
            "Only listPrivileges is supported on privilege".into(),
        )),
    }
}

/// `GET /openidm/info/uiconfig`: the UI configuration (`ui-configuration.json`).
pub fn read_uiconfig(generation: &Generation) -> Reply {
    Reply::ok(json!({"_id": "", "configuration": generation.ui.configuration}))
}

/// `GET /openidm/info/features?_queryFilter=true`: which self-service features are enabled
/// (their process is configured, and for password reset and username retrieval switched on by
/// `ui-configuration.json`'s `passwordReset` / `forgotUsername`) and where.
pub fn query_features(generation: &Generation) -> Reply {
    let process = |name: &str| generation.processes.get(name).is_some();
    let switched = |name: &str, flag: &str| process(name) && generation.ui.enabled(flag);
    let email_configured = generation.email.has_server();
    let features: Vec<(&str, bool, Vec<&str>)> = vec![
        (
            "registration",
            process("registration"),
            vec!["selfservice/registration"],
        ),
        (
            "passwordReset",
            switched("reset", "passwordReset"),
            vec!["selfservice/reset"],
        ),
        (
            "retrieveUsername",
            switched("username", "forgotUsername"),
            vec!["selfservice/username"],
        ),
        ("profile", process("profile"), vec!["selfservice/profile"]),
        (
            "termsAndConditions",
            process("termsAndConditions"),
            vec!["selfservice/termsAndConditions"],
        ),
        ("kbaUpdate", process("kbaUpdate"), vec!["selfservice/kbaUpdate"]),
        ("identityProviders", true, vec!["identityProviders"]),
        ("email", email_configured, vec!["external/email"]),
        ("workflow", false, vec![]),
    ];
    let result: Vec<Value> = features
        .into_iter()
        .map(|(name, enabled, endpoints)| {
            json!({"_id": name, "name": name, "enabled": enabled, "endpoints": if enabled { endpoints } else { vec![] }})
        })
        .collect();
    Reply::ok(unpaged(result))
}

/// `GET /openidm/selfservice/kba`: the security questions (`selfservice.kba.json`) while
/// `ui-configuration.json`'s `kbaEnabled` is on. While it is off (or the file is absent) the
/// answer says so in the same shape: no questions, none to define or verify — the End User UI
/// reads this on every profile page and offers no security questions for it.
pub fn read_kba(generation: &Generation) -> Reply {
    let mut body = serde_json::Map::new();
    body.insert("_id".to_owned(), Value::String("kba".to_owned()));
    match generation.kba.as_ref().filter(|_| generation.ui.enabled("kbaEnabled")) {
        Some(kba) => body.extend(kba.iter().map(|(key, value)| (key.clone(), value.clone()))),
        None => {
            let property = generation
                .kba
                .as_ref()
                .and_then(|kba| kba.get("kbaPropertyName").cloned())
                .unwrap_or_else(|| Value::String("kbaInfo".to_owned()));
            body.insert("kbaPropertyName".to_owned(), property);
            body.insert("questions".to_owned(), json!({}));
            body.insert("minimumAnswersToDefine".to_owned(), json!(0));
            body.insert("minimumAnswersToVerify".to_owned(), json!(0));
        }
    }
    Reply::ok(Value::Object(body))
}

/// `GET /openidm/consent?_queryFilter=…`: mappings a user may consent to (ferridm has no sync
/// mappings, so none).
pub fn query_consent() -> Reply {
    Reply::ok(unpaged(Vec::new()))
}

/// The built-in internal users as scripts see them (`{_id, userName}`).
fn internal_users() -> impl Iterator<Item = Value> {
    [crate::auth::ADMIN_USER, crate::auth::ANONYMOUS_USER]
        .into_iter()
        .map(|name| json!({"_id": name, "userName": name}))
}

/// `internal/user/<name>` for scripts: one of the built-in internal users.
pub fn read_internal_user(name: &str) -> Result<Reply> {
    internal_users()
        .find(|user| user["_id"] == name)
        .map(Reply::ok)
        .ok_or_else(|| Error::NotFound(format!("Resource 'internal/user/{name}' not found")))
}

/// `internal/user?_queryFilter=…` for scripts: the built-in internal users the filter matches.
pub fn query_internal_users(params: &crate::resource::Params) -> Result<Reply> {
    let filter = crate::service::managed::query::parse_filter(params.get("_queryfilter").unwrap_or("true"))?;
    let result: Vec<Value> = internal_users()
        .filter(|user| ferridm_core::filter::matches(&filter, user))
        .collect();
    Ok(Reply::ok(unpaged(result)))
}

/// An unpaged query's envelope around `result` (IDM's, with no count).
fn unpaged(result: Vec<Value>) -> Value {
    QueryResponse {
        result,
        paged_results_cookie: None,
        total: None,
    }
    .to_json()
}
