//! `policy` and `policy/<path>`: describe the policies of resources, and validate objects or
//! properties against them without writing anything.

use ferridm_core::{Error, Object, Result};
use serde_json::Value;

use crate::resource::{Operation, Reply, Request};
use crate::service::context::RequestContext;
use crate::service::validation::{self, Scope};

fn object_body(request: &Request) -> Result<Object> {
    match request.action_content()? {
        Value::Object(object) => Ok(object),
        Value::Null => Ok(Object::new()),
        _ => Err(Error::bad_request(
            "The request could not be processed because the provided content is not a JSON object",
        )),
    }
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
            let scope = if action == "validateObject" {
                Scope::Object
            } else {
                Scope::Properties
            };
            let result = validation::validate(ctx, path, &object_body(request)?, scope)?;
            Ok(Reply::ok(result.to_json()))
        }
        Operation::Action(action) => Err(Error::bad_request(format!("Unsupported action: {action}"))),
        _ => Err(Error::NotSupported(format!(
            "The operation {} is not supported on policy resources",
            operation.rule_name()
        ))),
    }
}
