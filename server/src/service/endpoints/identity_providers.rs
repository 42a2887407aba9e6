//! `identityProviders`: the enabled social providers (`GET`) and the sign-in round trip
//! (`getAuthRedirect`, `handlePostAuth`, `normalizeProfile`), served by `service::social`.

use ferridm_core::{Error, Result};
use serde_json::{Value, json};

use crate::resource::{Operation, Reply, Request};
use crate::service::context::RequestContext;
use crate::service::social;

/// `/openidm/identityProviders` operations.
pub fn handle(ctx: &RequestContext, request: &Request, operation: &Operation) -> Result<Reply> {
    match operation {
        Operation::Read => Ok(Reply::ok(
            json!({"_id": "", "providers": social::enabled_providers(ctx)}),
        )),
        Operation::Action(action) => {
            let body = match request.action_content()? {
                Value::Null => json!({}),
                body => body,
            };
            match action.as_str() {
                "getAuthRedirect" => social::get_auth_redirect(ctx, &body),
                "handlePostAuth" => social::handle_post_auth(ctx, &body),
                "normalizeProfile" => social::normalize_profile(ctx, &body).map(Reply::ok),
                other => Err(Error::bad_request(format!(
                    "Action {other} on identityProviders not supported"
                ))),
            }
        }
        other => Err(Error::NotSupported(format!(
            "The operation {} is not supported on identityProviders",
            other.rule_name()
        ))),
    }
}
