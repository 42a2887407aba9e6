//! Writing replies the way IDM does: `application/json;charset=UTF-8`, `Cache-Control:
//! no-cache`, an `ETag` on resources with a revision, an absolute `Location` on creates, and
//! `_prettyPrint=true` indentation.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, LOCATION};
use actix_web::{HttpRequest, HttpResponse};

use crate::resource::Reply;

/// The HTTP response for a reply to `http`.
pub fn render(http: &HttpRequest, reply: Reply) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    response.insert_header((CACHE_CONTROL, "no-cache"));
    if let Some(etag) = &reply.etag {
        response.insert_header((ETAG, format!("\"{etag}\"")));
    }
    if let Some(location) = &reply.location {
        let info = http.connection_info();
        response.insert_header((
            LOCATION,
            format!("{}://{}/openidm/{location}", info.scheme(), info.host()),
        ));
    }
    for (name, value) in &reply.headers {
        response.append_header((name.as_str(), value.as_str()));
    }
    if let Some((content_type, text)) = reply.text {
        return response.insert_header((CONTENT_TYPE, content_type)).body(text);
    }
    match reply.body {
        None => response.finish(),
        Some(body) => {
            let text = if reply.pretty {
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
