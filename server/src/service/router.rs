//! The one internal router: every request — from an HTTP client, from a script through the host
//! API, from an access check reading what a write would change — is served here, by resource
//! path and operation, in its request context. [`serve_client`] adds what a client request goes
//! through first: progressive profile and the access rules.

use ferridm_core::{Error, Result};

use super::context::{Caller, RequestContext};
use super::endpoints::metrics;
use super::endpoints::{
    audit, authentication, client, cluster, config, health, identity_providers, info, managed, policy, selfservice,
};
use super::{access, api, login, profile};
use crate::resource::{Operation, Reply, Request};

/// A client request: progressive profile on login, the access rules, then the route.
pub fn serve_client(ctx: &mut RequestContext, request: &Request, operation: &Operation) -> Result<Reply> {
    let is_login = request.path.segments() == ["authentication"] && operation.action() == Some("login");
    profile::on_request(ctx, is_login)?;
    if !metrics::authorize_metrics_principal(ctx, request, operation)? {
        access::authorize(ctx, request, operation)?;
    }
    let reply = dispatch(ctx, request, operation)
        .inspect_err(|error| metrics::count_policy_failures(&ctx.state.metrics, error))?;
    keep_own_session(ctx, request, operation)?;
    Ok(reply)
}

/// A managed user who changes their own password through their session keeps that session:
/// it moves to the account's new session epoch (every other session of the account has ended).
fn keep_own_session(ctx: &mut RequestContext, request: &Request, operation: &Operation) -> Result<()> {
    let writes = matches!(operation, Operation::Update | Operation::Patch | Operation::Action(_));
    let Caller::Client(caller) = &ctx.caller else {
        return Ok(());
    };
    let context = &caller.session.context;
    if !writes || !context.is_managed_user() || request.path.to_string() != context.own_path() {
        return Ok(());
    }
    let epoch = login::session_epoch(&ctx.state, context)?;
    ctx.client_caller_mut()?.session.epoch = epoch;
    Ok(())
}

/// Serves a request by its resource path and operation (the route table).
pub fn dispatch(ctx: &mut RequestContext, request: &Request, operation: &Operation) -> Result<Reply> {
    let read = *operation == Operation::Read;
    let query = *operation == Operation::Query;
    let parts = request.path.parts();
    match parts.as_slice() {
        _ if read && request.params.has("_api") => api::read_document(&ctx.generation, &request.path),
        ["info", "ping"] => Ok(health::read_ping(&ctx.state)),
        ["health"] if read => Ok(health::read_ping(&ctx.state)),
        ["health", "live"] if read => Ok(health::read_live()),
        ["health", "ready"] if read => health::read_ready(&ctx.state),
        ["info", "version"] if read => Ok(info::read_version()),
        ["info", "login"] if read => authentication::read_login(ctx),
        ["info", "uiconfig"] if read => Ok(client::read_uiconfig(&ctx.generation)),
        ["info", "features"] if query => Ok(client::query_features(&ctx.generation)),
        ["schema", "managed", type_name] if read => client::read_schema(&ctx.generation, type_name),
        ["privilege"] => client::list_privileges(operation),
        ["identityProviders"] => identity_providers::handle(ctx, request, operation),
        ["selfservice", "kba"] if read => Ok(client::read_kba(&ctx.generation)),
        ["consent"] if query => Ok(client::query_consent()),
        ["authentication"] => authentication::handle(ctx, operation),
        ["metrics", "prometheus"] if read => Ok(metrics::read_prometheus(ctx)),
        ["audit", topic] if query => audit::query(ctx, request, topic),
        ["audit", topic, id] if read => audit::read(ctx, request, topic, id),
        ["cluster"] if query => cluster::query(ctx, request),
        ["cluster", "work"] if query => cluster::query_work(ctx, request),
        ["cluster", node] if read => cluster::read(ctx, node),
        ["managed", type_name] => managed::collection(ctx, request, operation, type_name),
        ["managed", type_name, id] => managed::instance(ctx, request, operation, type_name, id),
        ["managed", type_name, id, name] => {
            managed::relationship_collection(ctx, request, operation, (type_name, id, name))
        }
        ["managed", type_name, id, name, edge] => {
            managed::relationship_instance(ctx, operation, (type_name, id, name, edge))
        }
        ["managed", _, _, ..] => Err(crate::service::managed::sub_object()),
        ["internal", "user"] if query && !ctx.is_client() => client::query_internal_users(&request.params),
        ["internal", "user", name] if read && !ctx.is_client() => client::read_internal_user(name),
        ["selfservice", "profile", "completeness"] if read => selfservice::read_completeness(ctx, None),
        ["selfservice", "profile", "completeness", "managed", "user", id] if read => {
            selfservice::read_completeness(ctx, Some(id))
        }
        ["selfservice", name] => selfservice::handle_process(ctx, request, operation, name),
        ["config", ..] => config::handle(ctx, request, operation, &request.path.rest_after_first()),
        ["policy", ..] => policy::handle(ctx, request, operation, &request.path.rest_after_first()),
        _ => Err(Error::NotFound(format!("Resource '{}' not found", request.path))),
    }
}
