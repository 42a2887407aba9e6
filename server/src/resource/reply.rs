//! A response as resources produce it, before any transport: status, JSON body, revision,
//! location and extra headers. The HTTP edge renders it (`http::response`).

use serde_json::Value;

/// A response body with its status and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The JSON body (`None`: no content).
    pub body: Option<Value>,
    /// The revision sent as `ETag`.
    pub etag: Option<String>,
    /// For creates: the new resource's path below `/openidm`, already percent-encoded.
    pub location: Option<String>,
    /// Whether the body is indented (`_prettyPrint=true`).
    pub pretty: bool,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// A body that is not JSON, with its content type (replaces `body`).
    pub text: Option<(&'static str, String)>,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn ok(body: Value) -> Self {
        Self {
            status: 200,
            body: Some(body),
            etag: None,
            location: None,
            pretty: false,
            headers: Vec::new(),
            text: None,
        }
    }

    /// 200 with a body that is not JSON.
    pub fn text(content_type: &'static str, text: String) -> Self {
        Self {
            body: None,
            text: Some((content_type, text)),
            ..Self::ok(Value::Null)
        }
    }

    /// 200 with a resource and its revision.
    pub fn resource(body: Value, rev: String) -> Self {
        Self::ok(body).with_etag(rev)
    }

    /// 201 with a created resource, its revision and its location below `/openidm`.
    pub fn created(body: Value, rev: String, location: String) -> Self {
        Self {
            status: 201,
            location: Some(location),
            ..Self::resource(body, rev)
        }
    }

    /// 204 with no body (an action that returned nothing).
    pub fn no_content() -> Self {
        Self {
            status: 204,
            body: None,
            ..Self::ok(Value::Null)
        }
    }

    /// Sets the `ETag`.
    pub fn with_etag(mut self, rev: String) -> Self {
        self.etag = Some(rev);
        self
    }

    /// Indents the body.
    pub fn pretty(mut self, pretty: bool) -> Self {
        self.pretty = pretty;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.to_owned(), value));
        self
    }
}
