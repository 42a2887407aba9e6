//! A failure rendered as IDM's error body: `{code, reason, message, detail?}` with the status
//! `resource::error::parts` gives it. Messages are HTML-escaped as IDM does; causes are logged
//! where they happen.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpResponse, ResponseError};
use ferridm_core::Error;
use serde_json::{Value, json};

use crate::resource::error::{ErrorParts, parts};

/// A failure on its way to the client.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    status: u16,
    message: String,
    detail: Option<Value>,
}

impl ApiError {
    /// An error with an explicit status.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            detail: None,
        }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The IDM error body.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "code": self.status,
            "reason": reason_phrase(self.status),
            "message": html_escape(&self.message),
        });
        if let (Some(detail), Some(map)) = (&self.detail, body.as_object_mut()) {
            map.insert("detail".to_owned(), detail.clone());
        }
        body
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let ErrorParts {
            status,
            message,
            detail,
        } = parts(error);
        Self {
            status,
            message,
            detail,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response
            .insert_header((CONTENT_TYPE, "application/json;charset=UTF-8"))
            .insert_header((CACHE_CONTROL, "no-cache"));
        if self.status == 304 {
            return response.finish();
        }
        response.body(self.body().to_string())
    }
}

/// IDM's reason phrase for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Time-out",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        415 => "Unsupported Media Type",
        416 => "Requested range not satisfiable",
        417 => "Expectation Failed",
        428 => "Precondition Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Time-out",
        505 => "HTTP Version not supported",
        _ => "Resource Exception",
    }
}

/// Escapes a message the way IDM does before sending it.
pub fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_html_escaped() {
        let error = ApiError::from(Error::bad_request(
            "The value 'foo' for parameter '_queryFilter' could not be parsed as a valid query filter",
        ));
        assert_eq!(
            error.body(),
            json!({"code": 400, "reason": "Bad Request",
                   "message": "The value &#39;foo&#39; for parameter &#39;_queryFilter&#39; could not be parsed as a valid query filter"})
        );
        assert_eq!(html_escape("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }

    #[test]
    fn policy_failures_carry_their_detail() {
        let error = ApiError::from(Error::PolicyFailed {
            message: "Policy validation failed".into(),
            detail: json!({"result": false, "failedPolicyRequirements": []}),
        });
        assert_eq!(error.status(), 403);
        assert_eq!(error.body()["detail"]["result"], json!(false));
    }

    #[test]
    fn unknown_codes_have_the_generic_reason() {
        assert_eq!(ApiError::new(499, "x").body()["reason"], json!("Resource Exception"));
    }
}
