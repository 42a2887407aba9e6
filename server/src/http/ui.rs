//! Serving a browser UI (`ferridm --ui DIR`): a single-page app from DIR at `/`, on the same
//! origin as `/openidm`. Files get their content type from their extension; client-side routes
//! (paths without a file extension, or HTML requests for missing files) fall back to
//! `index.html`; fingerprinted assets (`index-DiwrgTda.js`, `main.3f2a1b9c.css`) are cacheable
//! for a year, everything else must be revalidated.

use std::path::PathBuf;

use actix_files::{Files, NamedFile};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse, fn_service};
use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::middleware::Next;

/// The static-file service for `dir`.
pub fn files(dir: PathBuf) -> Files {
    let index = dir.join("index.html");
    Files::new("/", dir)
        .index_file("index.html")
        .prefer_utf8(true)
        .default_handler(fn_service(move |request: ServiceRequest| {
            let index = index.clone();
            async move {
                let (request, _) = request.into_parts();
                let wants_page = is_client_route(request.path())
                    || request
                        .headers()
                        .get("accept")
                        .and_then(|accept| accept.to_str().ok())
                        .is_some_and(|accept| accept.contains("text/html"));
                let response = if wants_page {
                    NamedFile::open_async(&index).await?.into_response(&request)
                } else {
                    actix_web::HttpResponse::NotFound().finish()
                };
                Ok(ServiceResponse::new(request, response))
            }
        }))
}

/// True for paths an SPA router handles (no file extension in the last segment).
fn is_client_route(path: &str) -> bool {
    path.rsplit('/').next().is_none_or(|last| !last.contains('.'))
}

/// True for file names carrying a content hash (`name-<hash>.ext`, `name.<hash>.ext`).
pub fn is_fingerprinted(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((stem, _extension)) = name.rsplit_once('.') else {
        return false;
    };
    stem.split(['.', '-']).skip(1).any(|segment| {
        let long = segment.len() >= 8 && segment.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let digits = segment.chars().any(|c| c.is_ascii_digit());
        let mixed_case =
            segment.chars().any(|c| c.is_ascii_uppercase()) && segment.chars().any(|c| c.is_ascii_lowercase());
        long && (digits || mixed_case)
    })
}

/// Sets `Cache-Control` on UI responses (the `/openidm` API sets its own).
pub async fn cache_headers(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let api = request.path().starts_with("/openidm");
    let immutable = is_fingerprinted(request.path());
    let mut response = next.call(request).await?;
    // A 304 repeats the header its 200 would carry (RFC 9111 §4.3.4).
    let cacheable = response.status().is_success() || response.status() == actix_web::http::StatusCode::NOT_MODIFIED;
    if !api && cacheable {
        let value = if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static(value));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_asset_names_are_recognised() {
        assert!(is_fingerprinted("/assets/index-DiwrgTda.js"));
        assert!(is_fingerprinted("/static/main.3f2a1b9c.css"));
        assert!(!is_fingerprinted("/index.html"));
        assert!(!is_fingerprinted("/js/some-component.js"));
        assert!(!is_fingerprinted("/favicon.ico"));
    }

    #[test]
    fn client_routes_have_no_extension() {
        assert!(is_client_route("/profile/edit"));
        assert!(is_client_route("/"));
        assert!(!is_client_route("/assets/app.js"));
    }
}
