//! The HTTP edge: every request under `/openidm` goes through [`dispatch`], which reads the body
//! (capped), turns the request into a CREST request, authenticates it and routes it by resource
//! path. The `match` in [`route`] is the one route table.

mod authentication;
mod caller;
mod client;
mod config;
mod error;
mod info;
mod managed;
mod policy;
mod request;
mod response;
mod selfservice;
pub mod ui;
pub mod wire;

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use ferridm_core::{Error, Result};
use futures_util::StreamExt as _;

pub use caller::Caller;
pub use error::{ApiError, html_escape, reason_phrase};
pub use request::{CrestRequest, Operation, Params};
pub use response::Reply;

use crate::config::Generation;
use crate::state::AppState;

/// Registers the `/openidm` routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/openidm").route(web::route().to(dispatch)))
        .service(web::resource("/openidm/{tail:.*}").route(web::route().to(dispatch)));
}

/// Logs one line per request: method, path (no query string: it may carry personal data),
/// status and duration.
pub async fn log_request(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> std::result::Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.path().to_owned();
    let response = next.call(request).await?;
    tracing::info!(
        http.method = %method,
        http.path = %path,
        http.status = response.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(response)
}

/// Most bytes of an over-limit body read and dropped before answering 413; past this the
/// connection is simply closed.
const DISCARD_LIMIT: usize = 64 * 1024 * 1024;

/// Reads the body up to `limit` bytes. An over-limit body is read to its end and dropped (up to
/// [`DISCARD_LIMIT`]) so that the client, still sending, reads the 413 rather than a reset.
async fn read_body(request: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Bytes> {
    let too_large = || Error::PayloadTooLarge(format!("The request body is larger than the limit of {limit} bytes"));
    if let Some(length) = request
        .headers()
        .get("content-length")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok())
        && length > limit
    {
        if length <= DISCARD_LIMIT {
            discard(&mut payload).await;
        }
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|error| Error::bad_request(format!("The request body could not be read: {error}")))?;
        if body.len() + chunk.len() > limit {
            drop(body);
            discard(&mut payload).await;
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads and drops the rest of a body, stopping after [`DISCARD_LIMIT`] bytes or an error.
async fn discard(payload: &mut web::Payload) {
    let mut discarded = 0;
    while let Some(Ok(chunk)) = payload.next().await {
        discarded += chunk.len();
        if discarded > DISCARD_LIMIT {
            break;
        }
    }
}

/// Handles every `/openidm` request.
async fn dispatch(http: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let state = state.into_inner();
    match handle(&http, payload, state).await {
        Ok(reply) => reply.into_response(),
        Err(error) => actix_web::ResponseError::error_response(&ApiError::from(error)),
    }
}

async fn handle(http: &HttpRequest, payload: web::Payload, state: Arc<AppState>) -> Result<Reply> {
    let generation = state.generation();
    let limit = generation.settings.max_body_bytes;
    let body = read_body(http, payload, limit).await?;
    let request = CrestRequest::from_http(http, body)?;
    let operation = request.operation()?;
    request.check_conditions(&operation)?;
    if request.path == ["info", "ping"] && operation == Operation::Read {
        return Ok(info::read_ping().pretty(request.pretty()));
    }
    let mut caller = caller::authenticate(http, &state, &generation).await?;
    let is_login = request.path == ["authentication"] && operation == Operation::Action("login".to_owned());
    profile_on_request(http, &state, &generation, &mut caller, is_login).await?;
    let is_read = matches!(operation, Operation::Read | Operation::Query);
    caller::check_csrf(http, &caller, is_read)?;
    let reauth = http
        .headers()
        .get("x-openidm-reauth-password")
        .and_then(|value| value.to_str().ok())
        .map(crate::auth::decode_rfc5987);
    authorize(&state, &generation, &caller, &request, &operation, reauth.clone()).await?;
    let pretty = request.pretty();
    let reply = route(http, Arc::clone(&state), request, operation, &mut caller, reauth).await?;
    let reply = match caller.cookie(&state, &generation) {
        Some(cookie) => reply.with_header("set-cookie", cookie),
        None => reply,
    };
    Ok(reply.pretty(pretty))
}

/// Progressive profile (IDM §10.5): a credential login counts (`_meta.loginCount`) and checks
/// the profile processes; while some are pending the authorization role is withheld, and every
/// request re-checks until none are.
async fn profile_on_request(
    http: &HttpRequest,
    state: &Arc<AppState>,
    generation: &Arc<Generation>,
    caller: &mut Caller,
    is_login: bool,
) -> Result<()> {
    let context = &caller.session.context;
    if !context.is_managed_user() {
        return Ok(());
    }
    let counted_login = is_login && caller.by_credentials;
    if !counted_login && context.authorization.processes_required != Some(true) {
        return Ok(());
    }
    let (state, generation) = (Arc::clone(state), Arc::clone(generation));
    let mut context = context.clone();
    let forms = caller.session.forms_completed.clone();
    let locales = selfservice::locales(http);
    let context = managed::blocking(move || {
        if counted_login {
            let type_name = context
                .authorization
                .component
                .trim_start_matches("managed/")
                .to_owned();
            state
                .store
                .increment_login_count(&type_name, &context.authorization.id)
                .map_err(crate::service::storage_error)?;
        }
        let pending = crate::service::profile::pending_processes(&state, &generation, &context, &forms, &locales);
        crate::service::profile::apply_pending(&generation.auth_profile, &mut context, pending);
        Ok(context)
    })
    .await?;
    caller.session.context = context;
    Ok(())
}

/// Applies the access rules: inline for administrators (their rule needs no I/O), on the
/// blocking pool for everyone else (checks may read the store or verify a password).
async fn authorize(
    state: &Arc<AppState>,
    generation: &Arc<Generation>,
    caller: &Caller,
    request: &CrestRequest,
    operation: &Operation,
    reauth: Option<String>,
) -> Result<()> {
    let context = &caller.session.context;
    if context.is_admin() {
        return crate::auth::access::authorize(state, generation, context, request, operation, reauth);
    }
    let (state, generation, context, request, operation) = (
        Arc::clone(state),
        Arc::clone(generation),
        context.clone(),
        request.clone(),
        operation.clone(),
    );
    managed::blocking(move || {
        crate::auth::access::authorize(&state, &generation, &context, &request, &operation, reauth)
    })
    .await
}

/// The route table.
async fn route(
    http: &HttpRequest,
    state: Arc<AppState>,
    request: CrestRequest,
    operation: Operation,
    caller: &mut Caller,
    reauth: Option<String>,
) -> Result<Reply> {
    let path: Vec<String> = request.path.clone();
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["info", "ping"] => Ok(info::read_ping()),
        ["info", "version"] if operation == Operation::Read => Ok(info::read_version()),
        ["info", "login"] if operation == Operation::Read => Ok(authentication::read_login(caller)),
        ["info", "uiconfig"] if operation == Operation::Read => Ok(client::read_uiconfig(&state.generation())),
        ["info", "features"] if operation == Operation::Query => Ok(client::query_features(&state.generation())),
        ["schema", "managed", type_name] if operation == Operation::Read => {
            client::read_schema(&state.generation(), type_name)
        }
        ["privilege"] => client::list_privileges(&operation),
        ["identityProviders"] if operation == Operation::Read => Ok(client::read_identity_providers()),
        ["selfservice", "kba"] if operation == Operation::Read => client::read_kba(&state.generation()),
        ["consent"] if operation == Operation::Query => Ok(client::query_consent()),
        ["authentication"] => authentication::handle_authentication(state, operation, caller, reauth).await,
        ["managed", type_name] => {
            managed::handle_collection(state, http, request, operation, (*type_name).to_owned()).await
        }
        ["managed", type_name, id] => {
            managed::handle_instance(
                state,
                http,
                request,
                operation,
                (*type_name).to_owned(),
                (*id).to_owned(),
            )
            .await
        }
        ["managed", _, _, ..] => Err(managed::sub_object()),
        ["selfservice", "profile", "completeness"] if operation == Operation::Read => {
            selfservice::read_completeness(state, caller, None).await
        }
        ["selfservice", "profile", "completeness", "managed", "user", id] if operation == Operation::Read => {
            selfservice::read_completeness(state, caller, Some((*id).to_owned())).await
        }
        ["selfservice", name] => {
            selfservice::handle_process(state, http, request, operation, caller, (*name).to_owned()).await
        }
        ["config", rest @ ..] => config::handle_config(state, request, operation, rest.join("/")).await,
        ["policy", rest @ ..] => policy::handle_policy(state, request, operation, rest.join("/")).await,
        _ => Err(Error::NotFound(format!("Resource '{}' not found", path.join("/")))),
    }
}
