//! The HTTP edge: every request under `/openidm` goes through [`dispatch`], which reads the body
//! (capped), turns the actix request into a CREST [`Request`], takes the configuration
//! generation once, identifies the caller and hands the request to the service layer's router
//! on the blocking pool — one hop for everything the request does. The reply is rendered back
//! with IDM's headers, and the session cookie (re-)issued or cleared.

mod caller;
mod error;
mod health;
mod response;
pub mod ui;
pub mod wire;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use ferridm_core::{Error, Result};
use futures_util::StreamExt as _;

pub use error::{ApiError, html_escape, reason_phrase};

use crate::generation::Generation;
use crate::resource::{Operation, Reply, Request};
use crate::service::context::ClientCaller;
use crate::service::login::{self, Identified};
use crate::service::{self, RequestContext, router};
use crate::state::AppState;

/// Registers the `/openidm` routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config.configure(health::configure);
    // A scope matches its prefix by comparing text; a `{tail:.*}` pattern would run a regular
    // expression on every request.
    config.service(web::scope("/openidm").default_service(web::to(dispatch)));
}

/// Logs one line per request: method, path (no query string: it may carry personal data),
/// status and duration; and counts it in the metrics.
pub async fn log_request(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> std::result::Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.path().to_owned();
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let response = next.call(request).await?;
    if let Some(state) = &state {
        let status = response.status().as_u16();
        state
            .metrics
            .http_request(method.as_str(), &path, status, started.elapsed());
    }
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

/// A request body read with an idle timeout: each part must arrive within `idle` of the last.
struct IncomingBody {
    payload: web::Payload,
    idle: Duration,
}

impl IncomingBody {
    /// The next part; `None` at the end. A client that sends nothing for `idle` gets a 408.
    async fn next(&mut self) -> Option<Result<Bytes>> {
        match actix_web::rt::time::timeout(self.idle, self.payload.next()).await {
            Ok(part) => part.map(|part| {
                part.map_err(|error| Error::bad_request(format!("The request body could not be read: {error}")))
            }),
            Err(_) => Some(Err(Error::Custom {
                code: 408,
                message: format!(
                    "The request body did not arrive: nothing was received for {} ms",
                    self.idle.as_millis()
                ),
                detail: None,
            })),
        }
    }
}

/// Reads the body up to `limit` bytes. An over-limit body is read to its end and dropped (up to
/// [`DISCARD_LIMIT`]) so that the client, still sending, reads the 413 rather than a reset.
async fn read_body(request: &HttpRequest, mut payload: IncomingBody, limit: usize) -> Result<Bytes> {
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
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            drop(body);
            discard(&mut payload).await;
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads and drops the rest of a body, stopping after [`DISCARD_LIMIT`] bytes, an error or the
/// idle timeout.
async fn discard(payload: &mut IncomingBody) {
    let mut discarded = 0;
    while let Some(Ok(chunk)) = payload.next().await {
        discarded += chunk.len();
        if discarded > DISCARD_LIMIT {
            break;
        }
    }
}

/// The liveness probe's path, answered without a caller.
const PING_PATH: &str = "/openidm/info/ping";

/// Runs blocking service work on the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    web::block(work)
        .await
        .map_err(|_| Error::internal("Internal Server Error"))?
}

/// Whether a request reads at most one managed object, by id or by a query pinned to one
/// value of a unique property: short, bounded work that runs on the worker itself when the
/// store can read without waiting ([`ferridm_store::Store::reads_without_waiting`]), sparing
/// it the hand-off to the blocking pool and back.
fn reads_at_most_one_object(generation: &Generation, request: &Request, operation: &Operation) -> bool {
    let Some(managed) = request.path.managed() else {
        return false;
    };
    match (operation, managed.id) {
        (Operation::Read, Some(_)) => managed.rest.is_empty(),
        (Operation::Query, None) => {
            let Some(object_type) = generation.managed.get(managed.type_name) else {
                return false;
            };
            request
                .params
                .get("_queryfilter")
                .and_then(|text| ferridm_core::filter::parse(text).ok())
                .is_some_and(|filter| service::managed::query::pins_one_object(&filter, object_type))
        }
        _ => false,
    }
}

/// The address the server listens on (recorded in access events).
#[derive(Debug, Clone, Copy)]
pub struct ListenAddress(pub std::net::SocketAddr);

/// What a request's access event records beyond the HTTP request itself, filled in as the
/// request goes.
#[derive(Debug, Default)]
struct Trace {
    transaction_id: String,
    user: Option<(String, Vec<String>)>,
    operation: Option<String>,
    action: Option<String>,
}

/// Handles every `/openidm` request, then records its access event.
async fn dispatch(http: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let state = state.into_inner();
    let started = Instant::now();
    let transaction_id = match caller::transaction_id(&http) {
        Some(id) if state.generation().settings.trust_transaction_header => id,
        _ => service::context::new_transaction_id(),
    };
    let mut trace = Trace {
        transaction_id,
        ..Trace::default()
    };
    let mut response = match handle(&http, payload, Arc::clone(&state), &mut trace).await {
        Ok(reply) => response::render(&http, reply),
        Err(error) => actix_web::ResponseError::error_response(&ApiError::from(error)),
    };
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&trace.transaction_id) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-forgerock-transactionid"),
            value,
        );
    }
    record_access(&http, &state, &trace, response.status().as_u16(), started);
    response
}

/// Queues the access event of a finished request, when the access topic is recorded.
fn record_access(http: &HttpRequest, state: &AppState, trace: &Trace, status: u16, started: Instant) {
    let generation = state.generation();
    if !generation.audit.records("access") {
        return;
    }
    let (user_id, roles) = match &trace.user {
        Some((id, roles)) => (Some(id.as_str()), roles.as_slice()),
        None => (None, &[][..]),
    };
    let peer = http.peer_addr();
    let local = http
        .app_data::<ListenAddress>()
        .map_or_else(|| http.app_config().local_addr(), |listening| listening.0);
    let client_ip = peer
        .map(|address| crate::auth::format_ip(address.ip()))
        .unwrap_or_default();
    let server_ip = crate::auth::format_ip(local.ip());
    let headers = http
        .headers()
        .iter()
        .filter(|(name, _)| service::audit::recordable_header(name.as_str()))
        .filter_map(|(name, value)| Some((Cow::Borrowed(name.as_str()), Cow::Borrowed(value.to_str().ok()?))))
        .collect();
    let query = form_urlencoded::parse(http.query_string().as_bytes()).collect();
    service::audit::access(
        state,
        &generation.audit,
        &service::audit::AccessRecord {
            transaction_id: &trace.transaction_id,
            user_id,
            roles,
            client: (&client_ip, peer.map_or(0, |address| address.port())),
            server: (&server_ip, local.port()),
            operation: trace.operation.as_deref(),
            action: trace.action.as_deref(),
            method: http.method().as_str(),
            path: http.path(),
            query,
            headers,
            status,
            reason: reason_phrase(status),
            elapsed_millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        },
    );
}

/// Identifies the caller ([`login::identify`]) and records the outcome of presented
/// credentials in the authentication topic.
fn identify(state: &AppState, generation: &Generation, http: &HttpRequest, transaction_id: &str) -> Result<Identified> {
    let presented = caller::presented(http, generation);
    let attempted = presented
        .credentials
        .as_ref()
        .map(|credentials| credentials.username.clone());
    let ip = presented.ip.clone();
    let identified = login::identify(state, generation, presented);
    let principal = attempted.as_deref().unwrap_or("");
    match &identified {
        Err(Error::Unauthorized) if attempted.is_some() => {
            authentication_event(state, transaction_id, principal, None, &ip)
        }
        Ok(Identified::Known(known)) if known.by_credentials => {
            authentication_event(state, transaction_id, principal, Some(known), &ip);
        }
        _ => {}
    }
    identified
}

fn authentication_event(
    state: &AppState,
    transaction_id: &str,
    principal: &str,
    authenticated: Option<&ClientCaller>,
    ip: &str,
) {
    let module = authenticated.map(|caller| caller.session.context.authorization.module_id.as_str());
    state.metrics.authentication(module);
    service::audit::authentication(
        state,
        &service::audit::AuthenticationRecord {
            transaction_id,
            principal,
            authenticated: authenticated.map(|caller| &caller.session.context),
            ip,
            failure: authenticated
                .is_none()
                .then_some("invalid credentials or locked account"),
        },
    );
}

async fn handle(http: &HttpRequest, payload: web::Payload, state: Arc<AppState>, trace: &mut Trace) -> Result<Reply> {
    let generation = state.generation();
    let settings = &generation.settings;
    // Who is calling is decided from the headers before the body is read, so a caller without
    // credentials cannot hold a connection open by sending a body slowly (ping needs no caller).
    let early = (http.path() != PING_PATH)
        .then(|| identify(&state, &generation, http, &trace.transaction_id))
        .transpose()?;
    let body = IncomingBody {
        payload,
        idle: Duration::from_millis(settings.body_timeout_millis.max(1)),
    };
    let body = read_body(http, body, settings.max_body_bytes).await?;
    let request = caller::crest_request(http, body)?;
    let operation = request.operation()?;
    trace.operation = Some(operation.rule_name().to_uppercase());
    trace.action = operation.action().map(str::to_owned);
    request.check_conditions(&operation)?;
    let pretty = request.pretty();
    if request.path.segments() == ["info", "ping"] && operation == Operation::Read {
        let state = Arc::clone(&state);
        return Ok(blocking(move || Ok(service::endpoints::health::read_ping(&state)))
            .await?
            .pretty(pretty));
    }
    let identified = match early {
        Some(identified) => identified,
        None => identify(&state, &generation, http, &trace.transaction_id)?,
    };
    if let Identified::Known(known) = &identified {
        let is_read = matches!(operation, Operation::Read | Operation::Query);
        caller::check_csrf(http, known, is_read)?;
    }
    let transaction_id = trace.transaction_id.clone();
    let locales = caller::locales(http);
    // The store is asked first: on PostgreSQL no query filter is parsed here as well.
    let inline = matches!(identified, Identified::Known(_))
        && state.store.reads_without_waiting()
        && reads_at_most_one_object(&generation, &request, &operation);
    let work = move || {
        let client = match identified {
            Identified::Known(known) => {
                login::check_session(&state, &known)?;
                known
            }
            Identified::Unverified(unverified) => {
                let principal = unverified.username().to_owned();
                let ip = unverified.ip().to_owned();
                let verified = login::verify(&state, &generation, unverified, &transaction_id);
                match &verified {
                    Ok(client) => {
                        // A social login names its user only once verified.
                        let principal = if principal.is_empty() {
                            &client.session.context.authentication_id
                        } else {
                            &principal
                        };
                        authentication_event(&state, &transaction_id, principal, Some(client), &ip);
                    }
                    Err(Error::Unauthorized) => authentication_event(&state, &transaction_id, &principal, None, &ip),
                    Err(_) => {}
                }
                verified?
            }
        };
        let mut ctx = RequestContext::client(state, generation, client, Some(transaction_id), locales);
        let reply = router::serve_client(&mut ctx, &request, &operation);
        Ok((reply, ctx))
    };
    let (reply, ctx) = if inline { work()? } else { blocking(work).await? };
    let authorization = &ctx.client_caller()?.session.context.authorization;
    trace.user = Some((authorization.id.clone(), authorization.roles.clone()));
    let reply = reply?;
    let reply = match caller::cookie(&ctx) {
        Some(cookie) => reply.with_header("set-cookie", cookie),
        None => reply,
    };
    Ok(reply.pretty(pretty))
}
