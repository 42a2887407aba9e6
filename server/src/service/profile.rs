//! Progressive profile at login (IDM §10.5): a credential login counts (`_meta.loginCount`)
//! and checks `auth.profile.json`'s processes; while some are pending the authorization role is
//! withheld, and every request re-checks until none are.

use std::cell::RefCell;
use std::rc::Rc;

use ferridm_core::Result;
use serde_json::{Value, json};

use super::context::RequestContext;
use super::process::ProcessCall;
use super::storage_error;
use crate::auth::SecurityContext;
use crate::config::profile::AuthProfile;
use crate::resource::path::managed_type;

/// Counts a managed user's credential login and withholds or restores the authorization role
/// by the pending profile processes (only when a login is counted or processes were pending).
pub fn on_request(ctx: &mut RequestContext, is_login: bool) -> Result<()> {
    let Ok(caller) = ctx.client_caller() else {
        return Ok(());
    };
    let context = &caller.session.context;
    if !context.is_managed_user() {
        return Ok(());
    }
    let counted_login = is_login && caller.by_credentials;
    if !counted_login && context.authorization.processes_required != Some(true) {
        return Ok(());
    }
    let mut context = context.clone();
    let forms = caller.session.forms_completed.clone();
    if counted_login {
        let type_name = managed_type(&context.authorization.component).unwrap_or("user");
        ctx.state
            .store
            .increment_login_count(type_name, &context.authorization.id)
            .map_err(storage_error)?;
    }
    let pending = pending_processes(ctx, &context, &forms);
    apply_pending(&ctx.generation.auth_profile, &mut context, pending);
    ctx.client_caller_mut()?.session.context = context;
    Ok(())
}

/// The profile processes still pending for a managed user: each configured process is run with
/// empty input, as the user; one that does not end is pending. Returns them with the session's
/// completed forms (which running may not change, but a caller keeps them together).
fn pending_processes(ctx: &RequestContext, context: &SecurityContext, forms: &[String]) -> Vec<String> {
    let generation = &ctx.generation;
    let mut pending = Vec::new();
    for path in &generation.auth_profile.processes {
        let Some(process) = path
            .strip_prefix("selfservice/")
            .and_then(|name| generation.processes.get(name))
        else {
            continue;
        };
        let call = ProcessCall {
            ctx,
            process,
            principal: Some(context.authorization.id.clone()),
            forms: Rc::new(RefCell::new(forms.to_vec())),
        };
        match call.submit(&json!({"input": {}})) {
            Ok(response) if response.get("tag").and_then(Value::as_str) == Some("end") => {}
            Ok(_) => pending.push(path.clone()),
            Err(error) => {
                tracing::error!(process = %path, "checking a profile process failed: {error}");
            }
        }
    }
    pending
}

/// Withholds the authorization role while processes are pending, and gives it back (dropping
/// the pending markers) once none are (IDM §10.5).
fn apply_pending(profile: &AuthProfile, context: &mut SecurityContext, pending: Vec<String>) {
    let roles = &mut context.authorization.roles;
    if pending.is_empty() {
        if context.authorization.processes_required == Some(true) {
            if let Some(authentication) = &profile.authentication_role {
                roles.retain(|r| r != authentication);
            }
            if !roles.contains(&profile.authorization_role) {
                roles.push(profile.authorization_role.clone());
            }
        }
        context.authorization.processes_required = None;
        context.authorization.required_profile_processes = None;
        return;
    }
    roles.retain(|r| *r != profile.authorization_role);
    if let Some(authentication) = &profile.authentication_role
        && !roles.contains(authentication)
    {
        roles.push(authentication.clone());
    }
    context.authorization.processes_required = Some(true);
    context.authorization.required_profile_processes = Some(pending);
}
