//! Audit events in IDM's shapes, for the topics `access` (every client request), `authentication`
//! (every credential check and lockout), `activity` (every write of a managed object) and `config`
//! (every configuration generation installed or refused), and the writer thread that hands them
//! to the handlers. Secrets never enter an event: credentials and cookies are not recorded,
//! hashed and private properties are left out of object states, and configuration secrets are
//! withheld as configuration reads withhold them.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use ferridm_core::Object;
use serde_json::{Value, json};

use super::context::{Caller, RequestContext};
use crate::audit::{Columns, Handlers};
use crate::config::audit::AuditConfig;
use crate::state::AppState;

/// How long the writer waits for events before looking again.
const WRITER_WAIT: Duration = Duration::from_millis(500);

/// How long the writer lets events gather after a batch: at most this late on disk, and
/// under load every write (a database transaction, a file append) carries many events.
const WRITER_LINGER: Duration = Duration::from_millis(100);

/// Starts the thread that writes audit events (one per server).
pub fn start_writer(state: &Arc<AppState>) {
    let queue = Arc::clone(&state.audit);
    let weak = Arc::downgrade(state);
    let spawned = std::thread::Builder::new()
        .name("ferridm-audit".to_owned())
        .spawn(move || {
            let mut handlers = Handlers::default();
            while let Some(batch) = queue.take(WRITER_WAIT) {
                if batch.is_empty() {
                    queue.recycle(batch);
                    continue;
                }
                let Some(state) = weak.upgrade() else {
                    break;
                };
                let generation = state.generation();
                handlers.write(
                    &batch,
                    &generation.audit,
                    &state.paths,
                    &state.store,
                    state.clock.now_millis(),
                );
                drop(state);
                queue.recycle(batch);
                queue.gather(WRITER_LINGER);
            }
        });
    match spawned {
        Ok(thread) => {
            *state
                .audit_writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(thread);
        }
        Err(error) => tracing::error!(%error, "cannot start the audit writer; no audit events will be written"),
    }
}

/// Writes what is queued and stops the writer (at shutdown).
pub fn stop_writer(state: &AppState) {
    state.audit.close();
    let thread = state
        .audit_writer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(thread) = thread {
        let _ = thread.join();
    }
}

/// Queues an event of `topic` with IDM's common fields first.
fn submit(state: &AppState, topic: &'static str, event_name: &str, transaction_id: &str, user_id: &str, rest: Object) {
    let mut body = Object::new();
    // Time-ordered ids: the repository's id index grows at its end instead of everywhere.
    body.insert("_id".to_owned(), Value::String(uuid::Uuid::now_v7().to_string()));
    body.insert("timestamp".to_owned(), Value::String(state.clock.now_iso()));
    body.insert("eventName".to_owned(), Value::String(event_name.to_owned()));
    body.insert("transactionId".to_owned(), Value::String(transaction_id.to_owned()));
    body.insert("userId".to_owned(), Value::String(user_id.to_owned()));
    body.extend(rest);
    let id = body.get("_id").and_then(Value::as_str).unwrap_or_default();
    queue(state, topic, &body, &Columns::of_object(topic, id, &body));
}

/// Queues an event holding the values `columns` (or logs why it cannot be written).
fn queue(state: &AppState, topic: &'static str, body: &impl serde::Serialize, columns: &Columns<'_>) {
    if let Err(error) = state.audit.submit(topic, body, columns) {
        tracing::error!(%error, topic, "an audit event cannot be written as JSON; it is lost");
    }
}

fn object(value: Value) -> Object {
    match value {
        Value::Object(map) => map,
        _ => Object::new(),
    }
}

/// The request headers an access event records: never credentials or cookies.
const SECRET_HEADERS: [&str; 6] = [
    "authorization",
    "cookie",
    "x-openidm-password",
    "x-openidm-reauth-password",
    "x-openidm-jwt",
    "x-openidm-username",
];

/// True for a header an access event may record.
pub fn recordable_header(name: &str) -> bool {
    !SECRET_HEADERS.iter().any(|secret| name.eq_ignore_ascii_case(secret))
}

/// A finished client request, as the HTTP edge saw it.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    /// The request's transaction id.
    pub transaction_id: &'a str,
    /// Who it was (`None` when authentication failed).
    pub user_id: Option<&'a str>,
    /// Their roles.
    pub roles: &'a [String],
    /// The client address and port.
    pub client: (&'a str, u16),
    /// This server's address and port.
    pub server: (&'a str, u16),
    /// The CREST operation (`READ`, `QUERY`, `ACTION`, …), if the request got that far.
    pub operation: Option<&'a str>,
    /// The action's name for actions.
    pub action: Option<&'a str>,
    /// HTTP method, full path and query parameters.
    pub method: &'a str,
    /// The path (`/openidm/managed/user/1`).
    pub path: &'a str,
    /// Query parameters, decoded.
    pub query: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Recordable request headers (lower-case names).
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The response status.
    pub status: u16,
    /// Its reason phrase.
    pub reason: &'a str,
    /// How long the request took.
    pub elapsed_millis: u64,
}

/// Records an access event (topic `access`) for a finished client request, under `config`.
/// Every request makes one, so it is written as JSON text straight from the record (no
/// intermediate JSON tree), in IDM's shape.
pub fn access(state: &AppState, config: &AuditConfig, record: &AccessRecord<'_>) {
    let operation = record.operation.unwrap_or(record.method);
    if !config.records_action("access", operation) {
        return;
    }
    let succeeded = record.status < 400;
    let event = AccessEvent {
        common: Common {
            id: uuid::Uuid::now_v7(),
            timestamp: state.clock.now_iso(),
            event_name: "access",
            transaction_id: record.transaction_id,
            user_id: record.user_id.unwrap_or(""),
        },
        tracking_ids: [],
        server: Address {
            ip: record.server.0,
            port: record.server.1,
        },
        client: Address {
            ip: record.client.0,
            port: record.client.1,
        },
        request: AccessRequest {
            protocol: "CREST",
            operation,
            detail: record.action.map(|action| ActionDetail { action }),
        },
        http: HttpPart {
            request: HttpRequestPart {
                secure: false,
                method: record.method,
                path: record.path,
                query_parameters: Grouped(&record.query),
                headers: Grouped(&record.headers),
            },
        },
        response: AccessResponse {
            status: if succeeded { "SUCCESSFUL" } else { "FAILED" },
            status_code: record.status,
            elapsed_time: record.elapsed_millis,
            elapsed_time_units: "MILLISECONDS",
            detail: (!succeeded).then_some(ReasonDetail { reason: record.reason }),
        },
        roles: record.roles,
    };
    queue_typed(state, "access", &event, &event.common, |field| match field {
        "request/operation" => Some(event.request.operation),
        "response/status" => Some(event.response.status),
        _ => None,
    });
}

/// IDM's fields every typed event starts with, in its field order.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Common<'a> {
    #[serde(rename = "_id", serialize_with = "hyphenated")]
    id: uuid::Uuid,
    timestamp: String,
    event_name: &'a str,
    transaction_id: &'a str,
    user_id: &'a str,
}

/// Queues a typed event with its column values: the common fields from `common`, the topic's
/// other queryable fields from `other`.
fn queue_typed<'a>(
    state: &AppState,
    topic: &'static str,
    event: &impl serde::Serialize,
    common: &'a Common<'a>,
    other: impl Fn(&str) -> Option<&'a str>,
) {
    let mut id_text = uuid::Uuid::encode_buffer();
    let id = common.id.hyphenated().encode_lower(&mut id_text);
    let columns = Columns::of(topic, id, |field| match field {
        "timestamp" => Some(common.timestamp.as_str()),
        "eventName" => Some(common.event_name),
        "transactionId" => Some(common.transaction_id),
        "userId" => Some(common.user_id),
        _ => other(field),
    });
    queue(state, topic, event, &columns);
}

/// IDM's access event, serialized in its field order.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AccessEvent<'a> {
    #[serde(flatten)]
    common: Common<'a>,
    tracking_ids: [&'a str; 0],
    server: Address<'a>,
    client: Address<'a>,
    request: AccessRequest<'a>,
    http: HttpPart<'a>,
    response: AccessResponse<'a>,
    roles: &'a [String],
}

#[derive(serde::Serialize)]
struct Address<'a> {
    ip: &'a str,
    port: u16,
}

#[derive(serde::Serialize)]
struct AccessRequest<'a> {
    protocol: &'a str,
    operation: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<ActionDetail<'a>>,
}

#[derive(serde::Serialize)]
struct ActionDetail<'a> {
    action: &'a str,
}

#[derive(serde::Serialize)]
struct HttpPart<'a> {
    request: HttpRequestPart<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpRequestPart<'a> {
    secure: bool,
    method: &'a str,
    path: &'a str,
    query_parameters: Grouped<'a>,
    headers: Grouped<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AccessResponse<'a> {
    status: &'a str,
    #[serde(serialize_with = "as_text")]
    status_code: u16,
    elapsed_time: u64,
    elapsed_time_units: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<ReasonDetail<'a>>,
}

#[derive(serde::Serialize)]
struct ReasonDetail<'a> {
    reason: &'a str,
}

/// An event id in its usual form, written without allocating.
fn hyphenated<S: serde::Serializer>(id: &uuid::Uuid, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()))
}

/// IDM writes the status code as a string.
fn as_text<S: serde::Serializer>(code: &u16, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(code)
}

/// Name/value pairs as IDM records query parameters and headers: each name once (in order of
/// first appearance) with the array of its values.
struct Grouped<'a>(&'a [(Cow<'a, str>, Cow<'a, str>)]);

impl serde::Serialize for Grouped<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut names: Vec<&str> = Vec::with_capacity(self.0.len());
        for (name, _) in self.0 {
            if !names.contains(&name.as_ref()) {
                names.push(name);
            }
        }
        let mut map = serializer.serialize_map(Some(names.len()))?;
        for name in names {
            let values: Vec<&str> = self
                .0
                .iter()
                .filter(|(candidate, _)| candidate == name)
                .map(|(_, value)| value.as_ref())
                .collect();
            map.serialize_entry(name, &values)?;
        }
        map.end()
    }
}

/// One credential check, for the `authentication` topic.
#[derive(Debug)]
pub struct AuthenticationRecord<'a> {
    /// The request's transaction id.
    pub transaction_id: &'a str,
    /// The name the caller gave.
    pub principal: &'a str,
    /// The authenticated user's id and component, roles and module, when it succeeded.
    pub authenticated: Option<&'a crate::auth::SecurityContext>,
    /// The client address.
    pub ip: &'a str,
    /// Why it failed (`None` when it succeeded).
    pub failure: Option<&'a str>,
}

/// Records an authentication event (topic `authentication`). Header logins make one per
/// request, so it is written as JSON text straight from the record, like access events.
pub fn authentication(state: &AppState, record: &AuthenticationRecord<'_>) {
    if !state.generation().audit.records("authentication") {
        return;
    }
    let result = if record.failure.is_none() {
        "SUCCESSFUL"
    } else {
        "FAILED"
    };
    let authorization = record.authenticated.map(|context| &context.authorization);
    let method = authorization.map_or("", |authorization| authorization.module_id.as_str());
    let event = AuthenticationEvent {
        common: Common {
            id: uuid::Uuid::now_v7(),
            timestamp: state.clock.now_iso(),
            event_name: "authentication",
            transaction_id: record.transaction_id,
            user_id: authorization.map_or(record.principal, |authorization| authorization.id.as_str()),
        },
        principal: [record.principal],
        result,
        method,
        entries: [AuthenticationEntry {
            module_id: method,
            result,
            info: EntryInfo {
                principal: record.principal,
                reason: record.failure,
            },
        }],
        tracking_ids: [],
        context: AuthenticationContext {
            authorization,
            ip_address: record.ip,
        },
    };
    queue_typed(state, "authentication", &event, &event.common, |field| match field {
        "principal" => Some(record.principal),
        "result" => Some(event.result),
        _ => None,
    });
}

/// IDM's authentication event, serialized in its field order.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationEvent<'a> {
    #[serde(flatten)]
    common: Common<'a>,
    principal: [&'a str; 1],
    result: &'a str,
    method: &'a str,
    entries: [AuthenticationEntry<'a>; 1],
    tracking_ids: [&'a str; 0],
    context: AuthenticationContext<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationEntry<'a> {
    module_id: &'a str,
    result: &'a str,
    info: EntryInfo<'a>,
}

#[derive(serde::Serialize)]
struct EntryInfo<'a> {
    #[serde(rename = "org.forgerock.authentication.principal")]
    principal: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// Who authenticated (when it succeeded: id, component, roles and module) and from where.
struct AuthenticationContext<'a> {
    authorization: Option<&'a crate::auth::Authorization>,
    ip_address: &'a str,
}

impl serde::Serialize for AuthenticationContext<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(None)?;
        if let Some(authorization) = self.authorization {
            map.serialize_entry("id", &authorization.id)?;
            map.serialize_entry("component", &authorization.component)?;
            map.serialize_entry("roles", &authorization.roles)?;
            map.serialize_entry("moduleId", &authorization.module_id)?;
        }
        map.serialize_entry("ipAddress", self.ip_address)?;
        map.end()
    }
}

/// The user a request runs for (`""` for the server's own work).
fn user_of(ctx: &RequestContext) -> String {
    match &ctx.caller {
        Caller::Client(caller) => caller.session.context.authorization.id.clone(),
        Caller::Internal => ctx.on_behalf_of.clone().unwrap_or_default(),
    }
}

/// Who an operation ran as: the client, or the server itself on its behalf.
fn run_as(ctx: &RequestContext) -> String {
    match &ctx.caller {
        Caller::Client(caller) => caller.session.context.authorization.id.clone(),
        Caller::Internal => "openidm-system".to_owned(),
    }
}

/// A write of a managed object, for the `activity` topic.
#[derive(Debug)]
pub struct ActivityRecord<'a> {
    /// `managed/<type>/<id>`.
    pub object_id: &'a str,
    /// `CREATE`, `UPDATE`, `PATCH` or `DELETE`.
    pub operation: &'a str,
    /// The object before (not for creates), as stored.
    pub before: Option<&'a Object>,
    /// The object after (not for deletes), as stored.
    pub after: Option<&'a Object>,
    /// The revision after the write (before it, for deletes).
    pub revision: String,
    /// Properties never recorded (private and hashed ones).
    pub hidden: &'a [String],
    /// Properties whose change sets `passwordChanged` (the type's hashed ones and
    /// `eventTopics.activity.passwordFields`).
    pub password_fields: &'a [String],
}

/// Records an activity event (topic `activity`).
pub fn activity(ctx: &RequestContext, record: &ActivityRecord<'_>) {
    let config = &ctx.generation.audit;
    if !config.records_action("activity", record.operation) {
        return;
    }
    let empty = Object::new();
    let (before, after) = (record.before.unwrap_or(&empty), record.after.unwrap_or(&empty));
    let password_changed = record
        .password_fields
        .iter()
        .chain(&config.password_fields)
        .any(|field| {
            before.get(field) != after.get(field) && (before.contains_key(field) || after.contains_key(field))
        });
    let mut changed: Vec<Value> = before
        .keys()
        .chain(after.keys().filter(|key| !before.contains_key(*key)))
        .filter(|key| before.get(*key) != after.get(*key))
        .filter(|key| !record.hidden.contains(key))
        .filter(|key| config.watched_fields.is_empty() || config.watched_fields.contains(key))
        .map(|key| Value::String(format!("/{key}")))
        .collect();
    changed.dedup();
    let state = |content: Option<&Object>| content.map_or(Value::Null, |content| scrubbed(content, record.hidden));
    let rest = object(json!({
        "runAs": run_as(ctx),
        "objectId": record.object_id,
        "operation": record.operation,
        "before": state(record.before),
        "after": state(record.after),
        "changedFields": changed,
        "revision": record.revision,
        "passwordChanged": password_changed,
        "message": record.operation.to_lowercase(),
        "status": "SUCCESS",
    }));
    submit(
        &ctx.state,
        "activity",
        "activity",
        &ctx.transaction_id,
        &user_of(ctx),
        rest,
    );
}

/// An object's state as recorded: without `hidden` properties and without any hashed or
/// encrypted value (`{"$crypto": …}`) wherever it is.
fn scrubbed(content: &Object, hidden: &[String]) -> Value {
    fn scrub(value: &Value) -> Option<Value> {
        match value {
            Value::Object(map) if map.contains_key("$crypto") => None,
            Value::Object(map) => Some(Value::Object(
                map.iter()
                    .filter_map(|(key, value)| scrub(value).map(|value| (key.clone(), value)))
                    .collect(),
            )),
            Value::Array(items) => Some(Value::Array(items.iter().filter_map(scrub).collect())),
            other => Some(other.clone()),
        }
    }
    Value::Object(
        content
            .iter()
            .filter(|(key, _)| !hidden.contains(key))
            .filter_map(|(key, value)| scrub(value).map(|value| (key.clone(), value)))
            .collect(),
    )
}

/// Who changed configuration, for the `config` topic.
#[derive(Debug, Clone, Copy)]
pub enum ConfigActor<'a> {
    /// A client over REST, in this request.
    Request(&'a RequestContext),
    /// The server itself: a file changed on disk, or another node shared a change.
    Server(&'a str),
}

/// One configuration change tried, for the `config` topic: installed (`refused` empty) or
/// refused with its problems.
#[derive(Debug)]
pub struct ConfigRecord<'a> {
    /// Who changed it.
    pub actor: ConfigActor<'a>,
    /// The config ids whose content changed, each before and after (`None`: absent).
    pub changes: Vec<(String, Option<&'a Value>, Option<&'a Value>)>,
    /// The generation number installed, or the one that kept serving.
    pub generation: u64,
    /// The problems that refused it.
    pub refused: Vec<String>,
}

/// Records a config event per changed config id (topic `config`); a refused change is one event
/// for `*`, and a reload that changed nothing none.
pub fn config(state: &AppState, record: &ConfigRecord<'_>) {
    let audit = Arc::clone(&state.generation().audit);
    let (transaction_id, user_id, run_as_id) = match record.actor {
        ConfigActor::Request(ctx) => (ctx.transaction_id.clone(), user_of(ctx), run_as(ctx)),
        ConfigActor::Server(cause) => (
            super::context::new_transaction_id(),
            cause.to_owned(),
            "openidm-system".to_owned(),
        ),
    };
    if record.changes.is_empty() && record.refused.is_empty() {
        // A reload that changed nothing (a file rewritten as it was).
        return;
    }
    let status = if record.refused.is_empty() {
        "SUCCESS"
    } else {
        "FAILURE"
    };
    let mut changes: Vec<(String, Option<&Value>, Option<&Value>)> = record.changes.clone();
    if changes.is_empty() {
        changes.push(("*".to_owned(), None, None));
    }
    for (id, before, after) in changes {
        let operation = match (before, after) {
            (None, Some(_)) => "CREATE",
            (Some(_), None) => "DELETE",
            _ => "UPDATE",
        };
        if !audit.records_action("config", operation) {
            continue;
        }
        let changed: Vec<Value> = match (before, after) {
            (Some(Value::Object(before)), Some(Value::Object(after))) => before
                .keys()
                .chain(after.keys().filter(|key| !before.contains_key(*key)))
                .filter(|key| before.get(*key) != after.get(*key))
                .map(|key| Value::String(format!("/{key}")))
                .collect(),
            _ => Vec::new(),
        };
        let rest = object(json!({
            "runAs": run_as_id,
            "objectId": id,
            "operation": operation,
            "before": before.map_or(Value::Null, |before| super::endpoints::config::masked(&id, before)),
            "after": after.map_or(Value::Null, |after| super::endpoints::config::masked(&id, after)),
            "changedFields": changed,
            "revision": record.generation.to_string(),
            "status": status,
            "message": record.refused.join("; "),
        }));
        submit(state, "config", "CONFIG", &transaction_id, &user_id, rest);
    }
}
