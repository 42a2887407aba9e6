//! Resource handlers, one file per resource family, with no transport: each extracts what it
//! needs from the request, calls one service function and maps the result to a reply. The
//! router (`service::router`) picks the handler.

pub mod authentication;
pub mod client;
pub mod cluster;
pub mod config;
pub mod info;
pub mod managed;
pub mod policy;
pub mod selfservice;
