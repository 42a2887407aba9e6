//! Services: everything behind the HTTP edge, as plain synchronous functions over the store and
//! one request's context (no actix types; the edge runs them on the blocking pool). The
//! [`router`] serves every request — HTTP clients', scripts' and the access checks' alike — by
//! calling the [`endpoints`], which call the services: managed objects, the login, access
//! rules, self-service processes, progressive profile and completeness, mail, the script host,
//! configuration changes and reloads.

pub mod access;
pub mod api;
pub mod audit;
pub mod cluster;
pub mod completeness;
pub mod context;
pub mod endpoints;
pub mod host;
pub mod host_services;
pub mod impact;
pub mod login;
pub mod mail;
pub mod managed;
pub mod process;
pub mod profile;
pub mod reindex;
pub mod reload;
pub mod roles;
pub mod router;
pub mod shared_config;
pub mod social;
pub mod transfer;
pub mod validation;

use ferridm_core::Error;
use ferridm_store::StoreError;

pub use context::{Caller, ClientCaller, RequestContext};

/// Turns a storage failure that the caller did not handle itself into a resource error,
/// logging the cause of internal failures (never the data).
pub fn storage_error(error: StoreError) -> Error {
    match error {
        StoreError::NotFound => Error::NotFound("Not Found".into()),
        StoreError::AlreadyExists => {
            Error::PreconditionFailed("Create rejected as Object with same ID already exists and was detected.".into())
        }
        StoreError::RevisionMismatch => Error::PreconditionFailed(
            "Update rejected as current Object revision is different than expected by caller, the object has changed since retrieval.".into(),
        ),
        StoreError::UniqueViolation { property } => Error::PolicyFailed {
            message: "Policy validation failed".into(),
            detail: serde_json::json!({"result": false, "failedPolicyRequirements": [
                {"policyRequirements": [{"policyRequirement": "UNIQUE"}], "property": property}
            ]}),
        },
        StoreError::InvalidCookie => Error::bad_request("Invalid paged results cookie"),
        StoreError::TimedOut { limit } => {
            tracing::warn!(limit_ms = limit.as_millis(), "query cancelled at its time limit");
            Error::Unavailable(format!("The query exceeded its time limit of {} ms", limit.as_millis()))
        }
        StoreError::TooLarge(limit) => Error::bad_request(limit.to_string()),
        StoreError::Pool(cause) => {
            tracing::error!(error = %cause, "no database connection available");
            Error::Unavailable("The database is unavailable".into())
        }
        other => {
            tracing::error!(error = %other, "storage failure");
            Error::internal("Internal Server Error")
        }
    }
}
