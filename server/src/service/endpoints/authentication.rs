//! `authentication` (login, logout, re-authentication, providers) and `info/login`.

use ferridm_core::{Error, Result};
use serde_json::json;

use crate::auth;
use crate::resource::{Operation, Reply};
use crate::service::context::RequestContext;
use crate::service::login;

/// `GET /openidm/info/login`: the caller's context (never `authLogin`).
pub fn read_login(ctx: &RequestContext) -> Result<Reply> {
    let caller = ctx.client_caller()?;
    Ok(Reply::ok(auth::login_json(
        &caller.session.context,
        false,
        &caller.ip,
        "authzRoles",
    )))
}

/// `/openidm/authentication` operations.
pub fn handle(ctx: &mut RequestContext, operation: &Operation) -> Result<Reply> {
    match operation {
        Operation::Read => Ok(Reply::ok(
            json!({"providers": crate::service::social::enabled_providers(ctx)}),
        )),
        Operation::Action(action) => match action.as_str() {
            "login" => {
                let caller = ctx.client_caller()?;
                Ok(Reply::ok(auth::login_json(
                    &caller.session.context,
                    caller.by_credentials,
                    &caller.ip,
                    "authzRoles",
                )))
            }
            "logout" => {
                let context = &ctx.client_caller()?.session.context;
                if context.is_managed_user() {
                    // Replaying the cookie after a logout must not work anywhere: every session
                    // of the account ends.
                    login::end_sessions(ctx, &context.own_path())?;
                }
                ctx.client_caller_mut()?.logout = true;
                Ok(Reply::ok(json!({"success": true})))
            }
            "reauthenticate" => {
                let caller = ctx.client_caller()?;
                let Some(password) = caller.reauth_password.as_deref().filter(|p| !p.is_empty()) else {
                    return Err(Error::Forbidden(
                        "Reauthentication failed, missing or empty headers".into(),
                    ));
                };
                if login::reverify(ctx, &caller.session.context, password)? {
                    Ok(Reply::ok(json!({"reauthenticated": true})))
                } else {
                    Err(Error::Forbidden(format!(
                        "Reauthentication failed for {}",
                        caller.session.context.authentication_id
                    )))
                }
            }
            other => Err(Error::bad_request(format!(
                "Action {other} on authentication service not supported"
            ))),
        },
        other => Err(Error::NotSupported(format!(
            "The operation {} is not supported on the authentication service",
            other.rule_name()
        ))),
    }
}
