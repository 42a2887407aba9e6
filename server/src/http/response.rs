//! Writing JSON responses the way IDM does: `application/json;charset=UTF-8`, `Cache-Control:
//! no-cache`, an `ETag` on resources with a revision, `Location` on creates, and
//! `_prettyPrint=true` indentation.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, LOCATION};
use serde_json::Value;

use crate::service::managed::Resource;

/// A response body with its status and headers.
#[derive(Debug, Clone)]
pub struct Reply {
    status: StatusCode,
    body: Option<Value>,
    etag: Option<String>,
    location: Option<String>,
    pretty: bool,
    headers: Vec<(String, String)>,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body: Some(body),
            etag: None,
            location: None,
            pretty: false,
            headers: Vec::new(),
        }
    }

    /// 200 with a resource (and its ETag).
    pub fn resource(resource: &Resource) -> Self {
        Self::ok(resource.to_json()).with_etag(resource.rev.to_string())
    }

    /// 201 with a created resource, its ETag and its `Location`.
    pub fn created(resource: &Resource, location: String) -> Self {
        let mut reply = Self::resource(resource);
        reply.status = StatusCode::CREATED;
        reply.location = Some(location);
        reply
    }

    /// 204 with no body (an action that returned nothing).
    pub fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            body: None,
            etag: None,
            location: None,
            pretty: false,
            headers: Vec::new(),
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

    /// The HTTP response.
    pub fn into_response(self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((CACHE_CONTROL, "no-cache"));
        if let Some(etag) = &self.etag {
            response.insert_header((ETAG, format!("\"{etag}\"")));
        }
        if let Some(location) = &self.location {
            response.insert_header((LOCATION, location.as_str()));
        }
        for (name, value) in &self.headers {
            response.append_header((name.as_str(), value.as_str()));
        }
        match self.body {
            None => response.finish(),
            Some(body) => {
                let text = if self.pretty {
                    serde_json::to_string_pretty(&body)
                } else {
                    serde_json::to_string(&body)
                }
                .unwrap_or_default();
                response
                    .insert_header((CONTENT_TYPE, "application/json;charset=UTF-8"))
                    .body(text)
            }
        }
    }
}
