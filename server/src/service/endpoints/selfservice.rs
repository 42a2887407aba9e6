//! `selfservice/<name>`: start a process (`GET`) and advance it (`submitRequirements`); and
//! `selfservice/profile/completeness[/managed/user/<id>]`.

use std::cell::RefCell;
use std::rc::Rc;

use ferridm_core::{Error, Result};
use serde_json::Value;

use crate::resource::{Operation, Reply, Request};
use crate::service::completeness;
use crate::service::context::RequestContext;
use crate::service::process::ProcessCall;

/// `GET /openidm/selfservice/profile/completeness[/managed/user/<id>]`: how complete a
/// profile is, `{_id, _rev, completeness}`.
pub fn read_completeness(ctx: &RequestContext, user_id: Option<&str>) -> Result<Reply> {
    completeness::read(ctx, user_id.map(|id| ("user", id))).map(Reply::ok)
}

/// `/openidm/selfservice/<name>` operations.
pub fn handle_process(ctx: &mut RequestContext, request: &Request, operation: &Operation, name: &str) -> Result<Reply> {
    let generation = std::sync::Arc::clone(&ctx.generation);
    let Some(process) = generation.processes.get(name) else {
        return Err(Error::NotFound(format!("Resource 'selfservice/{name}' not found")));
    };
    let body = match operation {
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
    let caller = ctx.client_caller()?;
    let context = &caller.session.context;
    let principal = context.is_managed_user().then(|| context.authorization.id.clone());
    let forms = Rc::new(RefCell::new(caller.session.forms_completed.clone()));
    let call = ProcessCall {
        ctx,
        process,
        principal,
        forms: Rc::clone(&forms),
    };
    let reply = match body {
        None => call.initial(),
        Some(body) => call.submit(&body),
    }?;
    let forms = forms.borrow().clone();
    ctx.client_caller_mut()?.session.forms_completed = forms;
    let etag = reply.get("_rev").and_then(Value::as_str).map(str::to_owned);
    Ok(match etag {
        Some(rev) => Reply::ok(reply).with_etag(rev),
        None => Reply::ok(reply),
    })
}
