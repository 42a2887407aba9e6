//! Health probes answered beside the CREST pipeline, without credentials and without audit
//! events (as IDM's `openidm/health` endpoints): `GET /openidm/health`, `/openidm/health/live`
//! and `/openidm/health/ready`, and the same probes at `/health/live` and `/health/ready` for
//! container orchestrators. Other methods on the `/openidm` paths go through the pipeline.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{ApiError, blocking, response};
use crate::resource::Reply;
use crate::service::endpoints::health;
use crate::state::AppState;

/// Registers the probe routes (before the `/openidm` catch-all, which serves their other
/// methods through `dispatch`).
pub fn configure(config: &mut web::ServiceConfig) {
    let pipeline = || web::route().to(super::dispatch);
    config
        .service(web::resource("/health/live").route(web::get().to(read_live)))
        .service(web::resource("/health/ready").route(web::get().to(read_ready)))
        .service(
            web::resource("/openidm/health")
                .route(web::get().to(read_state))
                .default_service(pipeline()),
        )
        .service(
            web::resource("/openidm/health/live")
                .route(web::get().to(read_live))
                .default_service(pipeline()),
        )
        .service(
            web::resource("/openidm/health/ready")
                .route(web::get().to(read_ready))
                .default_service(pipeline()),
        );
}

fn render(http: &HttpRequest, reply: ferridm_core::Result<Reply>) -> HttpResponse {
    match reply {
        Ok(reply) => response::render(http, reply),
        Err(error) => actix_web::ResponseError::error_response(&ApiError::from(error)),
    }
}

async fn read_live(http: HttpRequest) -> HttpResponse {
    render(&http, Ok(health::read_live()))
}

async fn read_ready(http: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let state = state.into_inner();
    render(&http, blocking(move || health::read_ready(&state)).await)
}

async fn read_state(http: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let state = state.into_inner();
    render(&http, blocking(move || Ok(health::read_ping(&state))).await)
}
