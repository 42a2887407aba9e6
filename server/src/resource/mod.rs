//! The CREST resource layer, with no transport: resource paths, requests and operations, replies
//! and the error → status mapping. The HTTP edge translates actix requests into these; the
//! router (`service::router`) serves them for HTTP clients, scripts and access checks alike.

pub mod error;
pub mod path;
pub mod reply;
pub mod request;

pub use path::{ManagedPath, ResourcePath};
pub use reply::Reply;
pub use request::{Body, Method, Operation, Params, Request};
