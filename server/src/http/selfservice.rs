//! `selfservice/<name>`: start a process (`GET`) and advance it (`submitRequirements`).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::HttpRequest;
use ferridm_core::{Error, Result};
use serde_json::Value;

use super::caller::Caller;
use super::managed::blocking;
use super::request::{CrestRequest, Operation};
use super::response::Reply;
use crate::selfservice::engine::ProcessCall;
use crate::state::AppState;

/// The client's preferred locales from `Accept-Language`, best first.
pub fn locales(http: &HttpRequest) -> Vec<String> {
    let Some(header) = http.headers().get("accept-language").and_then(|v| v.to_str().ok()) else {
        return Vec::new();
    };
    let mut weighted: Vec<(f32, String)> = header
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let tag = pieces.next()?.trim();
            if tag.is_empty() || tag == "*" {
                return None;
            }
            let quality = pieces
                .find_map(|piece| piece.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((quality, tag.to_owned()))
        })
        .collect();
    weighted.sort_by(|a, b| b.0.total_cmp(&a.0));
    weighted.into_iter().map(|(_, tag)| tag).collect()
}

/// `GET /openidm/selfservice/profile/completeness[/managed/user/<id>]`: how complete a
/// profile is, `{_id, _rev, completeness}` — the caller's own, or (administrators) any user's.
pub async fn read_completeness(state: Arc<AppState>, caller: &Caller, user_id: Option<String>) -> Result<Reply> {
    let context = &caller.session.context;
    let id = match user_id {
        Some(id) => id,
        None if context.is_managed_user() => context.authorization.id.clone(),
        None => return Err(Error::Forbidden("Access denied".into())),
    };
    let body = blocking(move || {
        let generation = state.generation();
        let stored = state
            .store
            .get("user", &id)
            .map_err(crate::service::storage_error)?
            .ok_or_else(|| Error::object_not_found("managed/user", &id))?;
        let score = crate::service::profile::completeness(&generation, &Value::Object(stored.content))?;
        Ok(serde_json::json!({"_id": format!("managed/user/{id}"), "_rev": stored.rev.to_string(), "completeness": score}))
    })
    .await?;
    Ok(Reply::ok(body))
}

/// `/openidm/selfservice/<name>` operations.
pub async fn handle_process(
    state: Arc<AppState>,
    http: &HttpRequest,
    request: CrestRequest,
    operation: Operation,
    caller: &mut Caller,
    name: String,
) -> Result<Reply> {
    let generation = state.generation();
    if generation.processes.get(&name).is_none() {
        return Err(Error::NotFound(format!("Resource 'selfservice/{name}' not found")));
    }
    let body = match &operation {
        Operation::Read => None,
        Operation::Action(action) if action == "submitRequirements" => Some(match request.action_content()? {
            Value::Null => Value::Object(serde_json::Map::new()),
            other => other,
        }),
        Operation::Action(action) => return Err(Error::NotSupported(format!("Unknown action {action}"))),
        other => {
            return Err(Error::NotSupported(format!(
                "The operation {} is not supported on self-service processes",
                other.rule_name()
            )));
        }
    };
    let context = &caller.session.context;
    let principal = context.is_managed_user().then(|| context.authorization.id.clone());
    let forms = caller.session.forms_completed.clone();
    let locales = locales(http);
    let (reply, forms) = blocking(move || {
        let process = generation
            .processes
            .get(&name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("Resource 'selfservice/{name}' not found")))?;
        let forms = Rc::new(RefCell::new(forms));
        let call = ProcessCall {
            state: &state,
            generation: &generation,
            process: &process,
            principal,
            locales,
            forms: Rc::clone(&forms),
        };
        let reply = match body {
            None => call.initial(),
            Some(body) => call.submit(&body),
        }?;
        let forms = forms.borrow().clone();
        Ok((reply, forms))
    })
    .await?;
    caller.session.forms_completed = forms;
    let etag = reply.get("_rev").and_then(Value::as_str).map(str::to_owned);
    Ok(match etag {
        Some(rev) => Reply::ok(reply).with_etag(rev),
        None => Reply::ok(reply),
    })
}
