//! `policy` and `policy/<path>`: describe the policies of resources, and validate objects or
//! properties against them without writing anything.

use std::rc::Rc;

use ferridm_core::{Error, Object, Result};
use ferridm_plugins::Host;
use serde_json::Value;

use crate::policy::PolicyFailure;
use crate::resource::error::from_script;
use crate::resource::{Operation, Reply, Request};
use crate::service::context::RequestContext;
use crate::service::host::ServerHost;

fn object_body(request: &Request) -> Result<Object> {
    match request.action_content()? {
        Value::Object(object) => Ok(object),
        Value::Null => Ok(Object::new()),
        _ => Err(Error::bad_request(
            "The request could not be processed because the provided content is not a JSON object",
        )),
    }
}

fn script_failure(PolicyFailure(error): PolicyFailure) -> Error {
    from_script(&error)
}

/// `GET /openidm/policy` and `…/policy/<path>`, `POST …?_action=validateObject|validateProperty`.
pub fn handle(ctx: &RequestContext, request: &Request, operation: &Operation, path: &str) -> Result<Reply> {
    let policies = &ctx.generation.policies;
    match operation {
        Operation::Read => {
            if path.is_empty() {
                return Ok(Reply::ok(policies.describe_all()));
            }
            policies
                .describe(path)
                .map(Reply::ok)
                .ok_or_else(|| Error::NotFound(format!("Resource 'policy/{path}' not found")))
        }
        Operation::Action(action) if action == "validateObject" || action == "validateProperty" => {
            let body = object_body(request)?;
            let host: Rc<dyn Host> = Rc::new(ServerHost::new(ctx.as_internal(), Some(policies.host_resource(path))));
            let outcome = if action == "validateObject" {
                policies.validate_object(&host, path, &body)
            } else {
                let stored = host.read(path).ok().flatten().and_then(|v| v.as_object().cloned());
                let full = stored.unwrap_or_default();
                let names: Vec<String> = body.keys().cloned().collect();
                policies.validate_properties(&host, path, &full, &names, &body)
            };
            Ok(Reply::ok(outcome.map_err(script_failure)?.to_json()))
        }
        Operation::Action(action) => Err(Error::bad_request(format!("Unsupported action: {action}"))),
        _ => Err(Error::NotSupported(format!(
            "The operation {} is not supported on policy resources",
            operation.rule_name()
        ))),
    }
}
