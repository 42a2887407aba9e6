//! ferridm-core: the CREST domain shared by every other crate — resource errors, JSON pointers,
//! the `_queryFilter` language (parser, canonical form, in-memory evaluator), JSON patch, `_fields`
//! selection, query parameters and the `managed.json` schema model.
//!
//! Nothing here knows about HTTP, SQL or scripts; CI checks that diesel, actix and rhai stay out.

pub mod error;
pub mod fields;
pub mod filter;
pub mod patch;
pub mod pointer;
pub mod query;
pub mod revision;
pub mod schema;
pub mod time;

pub use error::{Error, Result};
pub use pointer::JsonPointer;
pub use revision::Revision;

/// A JSON object as ferridm keeps it: insertion-ordered, so responses list fields in stored order.
pub type Object = serde_json::Map<String, serde_json::Value>;
