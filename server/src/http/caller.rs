//! Who a request comes from, established once per request: a valid `session-jwt` cookie first,
//! then credentials through the authentication modules. Also decides whether the response
//! (re-)issues or clears the session cookie.

use std::sync::Arc;

use actix_web::HttpRequest;
use ferridm_core::{Error, Result};

use super::managed::blocking;
use crate::auth::session::{self, Session, now_seconds};
use crate::auth::{self, login};
use crate::config::Generation;
use crate::state::AppState;

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The session this request runs in (new for credential logins).
    pub session: Session,
    /// True when credentials (not the cookie) authenticated this request.
    pub by_credentials: bool,
    /// The client address.
    pub ip: String,
    /// Set by the logout action: the cookie is cleared.
    pub logout: bool,
    /// `X-OpenIDM-NoSession: true`: no cookie is issued.
    pub no_session: bool,
}

impl Caller {
    /// The `Set-Cookie` value the response should carry, if any.
    pub fn cookie(&self, state: &AppState, generation: &Generation) -> Option<String> {
        if self.logout {
            return Some(session::clear_cookie());
        }
        if self.no_session {
            return None;
        }
        let settings = &generation.authentication.session;
        let now = now_seconds();
        let token = self.session.issue(&state.secrets.session_key, settings, now)?;
        Some(session::cookie(&token, settings, self.session.expires, now))
    }
}

fn header<'a>(http: &'a HttpRequest, name: &str) -> Option<&'a str> {
    http.headers().get(name).and_then(|value| value.to_str().ok())
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

/// Authenticates a request; no usable session and no valid credentials is a 401.
pub async fn authenticate(http: &HttpRequest, state: &Arc<AppState>, generation: &Arc<Generation>) -> Result<Caller> {
    let ip = client_ip(http, generation);
    let no_session = header(http, "x-openidm-nosession").is_some_and(|value| value.eq_ignore_ascii_case("true"));
    let now = now_seconds();
    if let Some(session) = http
        .cookie(session::COOKIE_NAME)
        .and_then(|cookie| Session::open(&state.secrets.session_key, cookie.value(), now))
    {
        return Ok(Caller {
            session,
            by_credentials: false,
            ip,
            logout: false,
            no_session,
        });
    }
    let credentials = match header(http, "x-openidm-jwt") {
        Some(token) => crate::sealed::open::<auth::Credentials>(
            &state.secrets.token_key,
            crate::service::services::CREDENTIAL_PURPOSE,
            token,
            now,
        )
        .map_err(|_| Error::Unauthorized)?,
        None => auth::credentials(http).ok_or(Error::Unauthorized)?,
    };
    let verified = match login::try_without_blocking(state, generation, &credentials) {
        Some(decided) => decided,
        None => {
            let (state, generation) = (Arc::clone(state), Arc::clone(generation));
            blocking(move || login::verify_credentials(&state, &generation, &credentials)).await?
        }
    };
    let context = verified.ok_or(Error::Unauthorized)?;
    Ok(Caller {
        session: Session::start(context, &generation.authentication.session, now),
        by_credentials: true,
        ip,
        logout: false,
        no_session,
    })
}

/// IDM's CSRF rule: a write authenticated only by the cookie needs `X-Requested-With`.
pub fn check_csrf(http: &HttpRequest, caller: &Caller, is_read: bool) -> Result<()> {
    if is_read || caller.by_credentials {
        return Ok(());
    }
    let has_header = |name: &str| http.headers().contains_key(name);
    let requested_with =
        header(http, "x-requested-with").is_some_and(|value| !value.to_ascii_lowercase().contains("shockwaveflash"));
    if requested_with || has_header("authorization") || has_header("x-openidm-username") {
        Ok(())
    } else {
        Err(Error::Forbidden(crate::auth::access::ACCESS_DENIED.to_owned()))
    }
}
