//! Errors as resources report them: the one mapping from the domain error to a status, a message
//! and a detail, used by the HTTP edge (IDM's error body) and by the script host (the error a
//! script sees); and script failures turned into resource errors.

use ferridm_core::Error;
use ferridm_plugins::error::ScriptErrorKind;
use ferridm_plugins::{HostError, ScriptError};
use serde_json::Value;

/// An error's status, message and detail.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorParts {
    /// The status code.
    pub status: u16,
    /// The message.
    pub message: String,
    /// IDM's `detail`, when the error carries one.
    pub detail: Option<Value>,
}

/// The status, message and detail of a domain error.
pub fn parts(error: Error) -> ErrorParts {
    let (status, message, detail) = match error {
        Error::BadRequest(message) => (400, message, None),
        Error::Unauthorized => (401, "Access Denied".to_owned(), None),
        Error::Forbidden(message) => (403, message, None),
        Error::PolicyFailed { message, detail } => (403, message, Some(detail)),
        Error::NotFound(message) => (404, message, None),
        Error::MethodNotAllowed(message) => (405, message, None),
        Error::Conflict(message) => (409, message, None),
        Error::PreconditionFailed(message) => (412, message, None),
        Error::NotModified => (304, "Not Modified".to_owned(), None),
        Error::PayloadTooLarge(message) => (413, message, None),
        Error::NotSupported(message) => (501, message, None),
        Error::Unavailable(message) => (503, message, None),
        Error::Internal(message) => (500, message, None),
        Error::Custom { code, message, detail } => (code, message, detail),
    };
    ErrorParts {
        status,
        message,
        detail,
    }
}

/// A resource error as a script sees it (`#{code, message, detail}` when thrown).
pub fn to_host(error: Error) -> HostError {
    let message = error.to_string();
    let ErrorParts { status, detail, .. } = parts(error);
    HostError {
        code: status,
        message,
        detail,
    }
}

/// A script failure as the client sees it: a thrown `#{code, message, detail}` is exactly that
/// error, a thrown string a 400, anything else (a broken limit, a bug) a 500 with a log line
/// naming the script.
pub fn from_script(error: &ScriptError) -> Error {
    let thrown = match &error.kind {
        ScriptErrorKind::Thrown(value) => Some(value.as_ref()),
        _ => None,
    };
    match thrown {
        Some(Value::Object(thrown)) if thrown.get("code").and_then(Value::as_u64).is_some() => {
            let code = thrown
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|code| u16::try_from(code).ok())
                .filter(|code| (400..600).contains(code))
                .unwrap_or(500);
            Error::Custom {
                code,
                message: thrown
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("Script error")
                    .to_owned(),
                detail: thrown.get("detail").cloned(),
            }
        }
        Some(Value::String(message)) => Error::BadRequest(message.clone()),
        _ => {
            tracing::error!(script.name = %error.script, "script failed: {error}");
            Error::internal(format!("Script failed: {}", error.script))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policy_failures_keep_their_detail_for_clients_and_scripts() {
        let failure = || Error::PolicyFailed {
            message: "Policy validation failed".into(),
            detail: json!({"result": false}),
        };
        assert_eq!(parts(failure()).status, 403);
        let seen = to_host(failure());
        assert_eq!((seen.code, seen.detail), (403, Some(json!({"result": false}))));
        assert_eq!(to_host(Error::NotFound("x".into())).code, 404);
    }
}
