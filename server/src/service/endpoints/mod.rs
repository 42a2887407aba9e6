//! Resource handlers, one file per resource family, with no transport: each extracts what it
//! needs from the request, calls one service function and maps the result to a reply. The
//! router (`service::router`) picks the handler.

pub mod audit;
pub mod authentication;
pub mod client;
pub mod cluster;
pub mod config;
pub mod health;
pub mod identity_providers;
pub mod info;
pub mod managed;
pub mod metrics;
pub mod policy;
pub mod selfservice;

/// A catalog for documents whose every field is returned by default and none is a reference
/// (configuration objects, audit events).
pub(crate) struct EveryField;

impl ferridm_core::fields::FieldCatalog for EveryField {
    fn returned_by_default(&self, _field: &str) -> bool {
        true
    }

    fn is_reference(&self, _field: &str) -> bool {
        false
    }
}
