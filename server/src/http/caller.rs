//! Reading an HTTP request: the CREST request it carries, what it presents to prove who is
//! calling (session cookie, `X-OpenIDM-Jwt`, credentials), its transaction id and locales, the
//! CSRF rule for cookie sessions, and the session cookie the response carries.

use actix_web::HttpRequest;
use actix_web::web::Bytes;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ferridm_core::{Error, Result};

use crate::auth::session::{self, COOKIE_NAME};
use crate::auth::{self, Credentials, decode_rfc5987};
use crate::generation::Generation;
use crate::resource::request::{check_api_version, unquote};
use crate::resource::{Body, Method, Params, Request, ResourcePath};
use crate::service::login::Presented;
use crate::service::{Caller, ClientCaller, RequestContext};

fn header<'a>(http: &'a HttpRequest, name: &str) -> Option<&'a str> {
    http.headers().get(name).and_then(|value| value.to_str().ok())
}

/// The CREST request an HTTP request carries (method override, refused conditional headers,
/// `Accept-API-Version`, path, parameters, conditions and body).
pub fn crest_request(http: &HttpRequest, body: Bytes) -> Result<Request> {
    let mut method = http.method().as_str();
    if method == "POST"
        && let Some(override_method) = header(http, "x-http-method-override")
    {
        method = override_method.trim();
        let token = |byte: u8| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte);
        if method.is_empty() || !method.bytes().all(token) {
            return Err(Error::bad_request(format!("Invalid method override {override_method}")));
        }
    }
    let upper = method.to_ascii_uppercase();
    let method =
        Method::from_name(&upper).ok_or_else(|| Error::NotSupported(format!("Method {upper} not supported")))?;
    if http.headers().contains_key("if-modified-since") {
        return Err(Error::Conflict("Header If-Modified-Since not supported".into()));
    }
    if http.headers().contains_key("if-unmodified-since") {
        return Err(Error::Conflict("Header If-Unmodified-Since not supported".into()));
    }
    if let Some(version) = header(http, "accept-api-version") {
        check_api_version(version)?;
    }
    Ok(Request {
        method,
        path: ResourcePath::from_url_path(http.path()),
        params: Params::parse(http.query_string())?,
        if_match: header(http, "if-match").map(unquote),
        if_none_match: header(http, "if-none-match").map(unquote),
        body: Body::Raw {
            content_type: header(http, "content-type").map(str::to_owned),
            bytes: body,
        },
    })
}

fn client_ip(http: &HttpRequest, generation: &Generation) -> String {
    if let Some(forwarded) = generation
        .authentication
        .client_ip_header
        .as_deref()
        .and_then(|name| header(http, name))
    {
        return forwarded.split(',').next().unwrap_or_default().trim().to_owned();
    }
    http.peer_addr()
        .map(|address| auth::format_ip(address.ip()))
        .unwrap_or_default()
}

/// What the request presents to prove who is calling.
pub fn presented(http: &HttpRequest, generation: &Generation) -> Presented {
    Presented {
        session_token: http.cookie(COOKIE_NAME).map(|cookie| cookie.value().to_owned()),
        credential_token: header(http, "x-openidm-jwt").map(str::to_owned),
        credentials: credentials(http),
        ip: client_ip(http, generation),
        peer_ip: http
            .peer_addr()
            .map(|address| auth::format_ip(address.ip()))
            .unwrap_or_default(),
        no_session: header(http, "x-openidm-nosession").is_some_and(|value| value.eq_ignore_ascii_case("true")),
        reauth_password: header(http, "x-openidm-reauth-password").map(decode_rfc5987),
        oauth_login: header(http, "x-openidm-oauth-login").is_some_and(|value| value.eq_ignore_ascii_case("true")),
        data_store_token: header(http, "x-openidm-datastoretoken").map(str::to_owned),
        social_binding: http
            .cookie(crate::service::social::BINDING_COOKIE)
            .map(|cookie| cookie.value().to_owned()),
    }
}

/// The client's transaction id (`X-ForgeRock-TransactionId`), if it sent one.
pub fn transaction_id(http: &HttpRequest) -> Option<String> {
    header(http, "x-forgerock-transactionid")
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .map(str::to_owned)
}

/// IDM's CSRF rule: a write authenticated only by the cookie needs `X-Requested-With`.
pub fn check_csrf(http: &HttpRequest, caller: &ClientCaller, is_read: bool) -> Result<()> {
    if is_read || caller.by_credentials {
        return Ok(());
    }
    let has_header = |name: &str| http.headers().contains_key(name);
    let requested_with =
        header(http, "x-requested-with").is_some_and(|value| !value.to_ascii_lowercase().contains("shockwaveflash"));
    if requested_with || has_header("authorization") || has_header("x-openidm-username") {
        Ok(())
    } else {
        Err(Error::Forbidden(crate::service::access::ACCESS_DENIED.to_owned()))
    }
}

/// The `Set-Cookie` value the response should carry, if any.
pub fn cookie(ctx: &RequestContext) -> Option<String> {
    let Caller::Client(caller) = &ctx.caller else {
        return None;
    };
    if caller.logout {
        return Some(session::clear_cookie());
    }
    if caller.no_session {
        return None;
    }
    let settings = &ctx.generation.authentication.session;
    let now = ctx.now_seconds();
    let token = caller.session.issue(&ctx.state.secrets.session_key, settings, now)?;
    Some(session::cookie(&token, settings, caller.session.expires, now))
}

/// The client's preferred locales from `Accept-Language`, best first.
pub fn locales(http: &HttpRequest) -> Vec<String> {
    let Some(header) = http.headers().get("accept-language").and_then(|v| v.to_str().ok()) else {
        return Vec::new();
    };
    let mut weighted: Vec<(f32, String)> = header
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let tag = pieces.next()?.trim();
            if tag.is_empty() || tag == "*" {
                return None;
            }
            let quality = pieces
                .find_map(|piece| piece.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((quality, tag.to_owned()))
        })
        .collect();
    weighted.sort_by(|a, b| b.0.total_cmp(&a.0));
    weighted.into_iter().map(|(_, tag)| tag).collect()
}

/// The credentials of a request: the IDM headers first, then HTTP Basic.
fn credentials(request: &HttpRequest) -> Option<Credentials> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(decode_rfc5987)
    };
    if let (Some(username), Some(password)) = (header("x-openidm-username"), header("x-openidm-password")) {
        if !username.is_empty() && !password.is_empty() {
            return Some(Credentials { username, password });
        }
        return None;
    }
    let authorization = request.headers().get("authorization")?.to_str().ok()?.trim();
    let (scheme, basic) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let basic = basic.trim().to_owned();
    let decoded = String::from_utf8(STANDARD.decode(basic).ok()?).ok()?;
    let (username, password) = decoded.split_once(':')?;
    (!username.is_empty() && !password.is_empty()).then(|| Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn headers_win_over_basic() {
        let request = TestRequest::default()
            .insert_header(("X-OpenIDM-Username", "a"))
            .insert_header(("X-OpenIDM-Password", "b"))
            .insert_header(("Authorization", "Basic Yzpk"))
            .to_http_request();
        assert_eq!(credentials(&request).unwrap().username, "a");
    }

    #[test]
    fn basic_credentials_are_read() {
        let request = TestRequest::default()
            .insert_header((
                "Authorization",
                format!("Basic {}", STANDARD.encode("bjensen:Pass:w0rd")),
            ))
            .to_http_request();
        let creds = credentials(&request).unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("bjensen", "Pass:w0rd")
        );
    }

    #[test]
    fn empty_values_are_no_credentials() {
        let request = TestRequest::default()
            .insert_header(("X-OpenIDM-Username", ""))
            .insert_header(("X-OpenIDM-Password", "x"))
            .to_http_request();
        assert!(credentials(&request).is_none());
        assert!(credentials(&TestRequest::default().to_http_request()).is_none());
    }

    #[test]
    fn method_overrides_and_refused_methods() {
        let overridden = TestRequest::post()
            .uri("/openidm/managed/user/x")
            .insert_header(("X-HTTP-Method-Override", "patch"))
            .to_http_request();
        assert_eq!(crest_request(&overridden, Bytes::new()).unwrap().method, Method::Patch);
        let head = TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .to_http_request();
        assert_eq!(
            crest_request(&head, Bytes::new()).unwrap_err(),
            Error::NotSupported("Method HEAD not supported".into())
        );
    }
}
