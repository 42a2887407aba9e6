//! The HTTP edge: every request under `/openidm` goes through [`dispatch`], which reads the body
//! (capped), turns the actix request into a CREST [`Request`], takes the configuration
//! generation once, identifies the caller and hands the request to the service layer's router
//! on the blocking pool — one hop for everything the request does. The reply is rendered back
//! with IDM's headers, and the session cookie (re-)issued or cleared.

mod caller;
mod error;
mod response;
pub mod ui;
pub mod wire;

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

use crate::resource::{Operation, Reply};
use crate::service::endpoints::info;
use crate::service::login::{self, Identified};
use crate::service::{RequestContext, router};
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

/// Handles every `/openidm` request.
async fn dispatch(http: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let state = state.into_inner();
    match handle(&http, payload, state).await {
        Ok(reply) => response::render(&http, reply),
        Err(error) => actix_web::ResponseError::error_response(&ApiError::from(error)),
    }
}

async fn handle(http: &HttpRequest, payload: web::Payload, state: Arc<AppState>) -> Result<Reply> {
    let generation = state.generation();
    let settings = &generation.settings;
    // Who is calling is decided from the headers before the body is read, so a caller without
    // credentials cannot hold a connection open by sending a body slowly (ping needs no caller).
    let early = (http.path() != PING_PATH)
        .then(|| login::identify(&state, &generation, caller::presented(http, &generation)))
        .transpose()?;
    let body = IncomingBody {
        payload,
        idle: Duration::from_millis(settings.body_timeout_millis.max(1)),
    };
    let body = read_body(http, body, settings.max_body_bytes).await?;
    let request = caller::crest_request(http, body)?;
    let operation = request.operation()?;
    request.check_conditions(&operation)?;
    let pretty = request.pretty();
    if request.path.segments() == ["info", "ping"] && operation == Operation::Read {
        return Ok(info::read_ping().pretty(pretty));
    }
    let identified = match early {
        Some(identified) => identified,
        None => login::identify(&state, &generation, caller::presented(http, &generation))?,
    };
    if let Identified::Known(known) = &identified {
        let is_read = matches!(operation, Operation::Read | Operation::Query);
        caller::check_csrf(http, known, is_read)?;
    }
    let transaction_id = caller::transaction_id(http);
    let locales = caller::locales(http);
    let (reply, ctx) = blocking(move || {
        let client = match identified {
            Identified::Known(known) => {
                login::check_session(&state, &known)?;
                known
            }
            Identified::Unverified(unverified) => login::verify(&state, &generation, unverified)?,
        };
        let mut ctx = RequestContext::client(state, generation, client, transaction_id, locales);
        let reply = router::serve_client(&mut ctx, &request, &operation)?;
        Ok((reply, ctx))
    })
    .await?;
    let reply = match caller::cookie(&ctx) {
        Some(cookie) => reply.with_header("set-cookie", cookie),
        None => reply,
    };
    Ok(reply.pretty(pretty))
}
