//! `authentication` (login, logout, re-authentication, providers) and `info/login`.

use std::sync::Arc;

use ferridm_core::{Error, Result};
use serde_json::json;

use super::caller::Caller;
use super::managed::blocking;
use super::request::Operation;
use super::response::Reply;
use crate::auth::{self, login};
use crate::state::AppState;

/// `GET /openidm/info/login`: the caller's context (never `authLogin`).
pub fn read_login(caller: &Caller) -> Reply {
    Reply::ok(auth::login_json(
        &caller.session.context,
        false,
        &caller.ip,
        "authzRoles",
    ))
}

/// `/openidm/authentication` operations.
pub async fn handle_authentication(
    state: Arc<AppState>,
    operation: Operation,
    caller: &mut Caller,
    reauth_password: Option<String>,
) -> Result<Reply> {
    match operation {
        Operation::Read => Ok(Reply::ok(json!({"providers": []}))),
        Operation::Action(action) => match action.as_str() {
            "login" => Ok(Reply::ok(auth::login_json(
                &caller.session.context,
                caller.by_credentials,
                &caller.ip,
                "authzRoles",
            ))),
            "logout" => {
                caller.logout = true;
                Ok(Reply::ok(json!({"success": true})))
            }
            "reauthenticate" => {
                let Some(password) = reauth_password.filter(|p| !p.is_empty()) else {
                    return Err(Error::Forbidden(
                        "Reauthentication failed, missing or empty headers".into(),
                    ));
                };
                let context = caller.session.context.clone();
                let verified = blocking(move || {
                    let generation = state.generation();
                    login::reverify(&state, &generation, &context, &password)
                })
                .await?;
                if verified {
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
