//! `policy` and `policy/<path>`: describe the policies of resources, and validate objects or
//! properties against them without writing anything.

use std::rc::Rc;
use std::sync::Arc;

use ferridm_core::{Error, Object, Result};
use serde_json::Value;

use super::managed::blocking;
use super::request::{CrestRequest, Operation};
use super::response::Reply;
use crate::policy::PolicyFailure;
use crate::service::host::ServerHost;
use crate::state::AppState;

fn object_body(request: &CrestRequest) -> Result<Object> {
    match request.action_content()? {
        Value::Object(object) => Ok(object),
        Value::Null => Ok(Object::new()),
        _ => Err(Error::bad_request(
            "The request could not be processed because the provided content is not a JSON object",
        )),
    }
}

fn script_failure(PolicyFailure(error): PolicyFailure) -> Error {
    crate::scripting::resource_error(&error)
}

/// `GET /openidm/policy` and `…/policy/<path>`, `POST …?_action=validateObject|validateProperty`.
pub async fn handle_policy(
    state: Arc<AppState>,
    request: CrestRequest,
    operation: Operation,
    path: String,
) -> Result<Reply> {
    let pretty = request.pretty();
    match operation {
        Operation::Read => {
            let generation = state.generation();
            if path.is_empty() {
                return Ok(Reply::ok(generation.policies.describe_all()).pretty(pretty));
            }
            generation
                .policies
                .describe(&path)
                .map(|body| Reply::ok(body).pretty(pretty))
                .ok_or_else(|| Error::NotFound(format!("Resource 'policy/{path}' not found")))
        }
        Operation::Action(action) if action == "validateObject" || action == "validateProperty" => {
            let body = object_body(&request)?;
            let result = blocking(move || {
                let generation = state.generation();
                let host: Rc<dyn ferridm_plugins::Host> = Rc::new(ServerHost::new(
                    Arc::clone(&state),
                    Arc::clone(&generation),
                    Some(generation.policies.host_resource(&path)),
                ));
                let outcome = if action == "validateObject" {
                    generation.policies.validate_object(&host, &path, &body)
                } else {
                    let stored = host.read(&path).ok().flatten().and_then(|v| v.as_object().cloned());
                    let full = stored.unwrap_or_default();
                    let names: Vec<String> = body.keys().cloned().collect();
                    generation
                        .policies
                        .validate_properties(&host, &path, &full, &names, &body)
                };
                outcome.map_err(script_failure)
            })
            .await?;
            Ok(Reply::ok(result.to_json()).pretty(pretty))
        }
        Operation::Action(action) => Err(Error::bad_request(format!("Unsupported action: {action}"))),
        _ => Err(Error::NotSupported(format!(
            "The operation {} is not supported on policy resources",
            operation.rule_name()
        ))),
    }
}
