//! The resource error every layer speaks: one variant per CREST failure class, carrying the
//! client-facing message. The HTTP edge turns each variant into IDM's `{code, reason, message,
//! detail}` body; nothing here knows status codes.

use serde_json::Value;

/// Result of a domain operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A CREST resource failure. The `String` is the message shown to the client (never a secret).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Malformed request: bad JSON, bad parameter, invalid patch or filter (400).
    #[error("{0}")]
    BadRequest(String),
    /// No or wrong credentials (401).
    #[error("Access Denied")]
    Unauthorized,
    /// Authenticated but not allowed, or a rule such as re-authentication refused it (403).
    #[error("{0}")]
    Forbidden(String),
    /// A policy refused the object (403 with the `failedPolicyRequirements` detail).
    #[error("{message}")]
    PolicyFailed {
        /// "Policy validation failed" (create/update) or "Failed policy validation" (patch).
        message: String,
        /// The `{result:false, failedPolicyRequirements:[...]}` body.
        detail: Value,
    },
    /// Unknown resource or object (404).
    #[error("{0}")]
    NotFound(String),
    /// Method not allowed on this resource (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Conflicting request, e.g. `If-Modified-Since` (409).
    #[error("{0}")]
    Conflict(String),
    /// Revision mismatch, existing id on create, or a conditional header misuse (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// `If-None-Match` named the current revision on a read (304).
    #[error("Not Modified")]
    NotModified,
    /// Body larger than the configured cap (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Operation or method not implemented (501).
    #[error("{0}")]
    NotSupported(String),
    /// Temporarily unable to serve, e.g. the database pool is exhausted (503).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (500). The message is generic; the cause is logged where it happened.
    #[error("{0}")]
    Internal(String),
    /// A failure with an explicit code, e.g. a script that threw `{code, message, detail}`.
    #[error("{message}")]
    Custom {
        /// HTTP-style status code.
        code: u16,
        /// Client-facing message.
        message: String,
        /// Optional detail object.
        detail: Option<Value>,
    },
}

impl Error {
    /// A 400 with the given message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// A 404 naming a missing object the way IDM does.
    pub fn object_not_found(collection: &str, id: &str) -> Self {
        Self::NotFound(format!("Object {collection}/{id} not found in {collection}"))
    }

    /// A 500 with a generic message; callers log the cause themselves.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }
}
