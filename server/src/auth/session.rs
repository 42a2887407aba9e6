//! Session cookies: a signed JWT (HS256, the shared `sessionKey`) carrying the security context,
//! an absolute expiry (`maxTokenLifeMinutes`) and an idle expiry (`tokenIdleTimeMinutes`) that
//! slides each time the cookie is re-issued. Any node with the same key accepts it; a tampered
//! or expired cookie is simply not a session. A managed user's session also records the
//! account's session epoch when it started; the login refuses it once the epoch has moved.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::SecurityContext;
use crate::config::authentication::{SessionSettings, minutes_to_seconds};
use crate::secrets::Key;

/// The cookie's name, as IDM's.
pub const COOKIE_NAME: &str = "session-jwt";

/// What a session holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Who.
    pub context: SecurityContext,
    /// Progressive-profile forms completed in this session (their identifiers).
    pub forms_completed: Vec<String>,
    /// Absolute expiry (seconds since the epoch).
    pub expires: u64,
    /// The account's session epoch when the session started (managed users).
    pub epoch: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    ctx: SecurityContext,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    forms: Vec<String>,
    iat: u64,
    exp: u64,
    idle: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ep: Option<i64>,
}

/// The last token this thread issued and what it was issued for.
struct Issued {
    key: Key,
    session: Session,
    now: u64,
    idle_minutes: f64,
    token: String,
}

thread_local! {
    static LAST_ISSUED: std::cell::RefCell<Option<Issued>> = const { std::cell::RefCell::new(None) };
}

impl Session {
    /// A new session for `context` starting now.
    pub fn start(context: SecurityContext, settings: &SessionSettings, now: u64) -> Self {
        Self {
            context,
            forms_completed: Vec::new(),
            expires: now + minutes_to_seconds(settings.max_token_life_minutes),
            epoch: None,
        }
    }

    /// The signed token, with the idle expiry moved to `now + idle`. The same session issued
    /// again within the same second (with the same key and idle time) gets the same token, which
    /// is reused rather than signed again: a caller sending many requests a second pays for one.
    pub fn issue(&self, key: &Key, settings: &SessionSettings, now: u64) -> Option<String> {
        let idle_minutes = settings.token_idle_time_minutes;
        let reused = LAST_ISSUED.with(|last| {
            last.borrow()
                .as_ref()
                .filter(|issued| {
                    issued.now == now
                        && issued.idle_minutes == idle_minutes
                        && issued.key == *key
                        && issued.session == *self
                })
                .map(|issued| issued.token.clone())
        });
        if reused.is_some() {
            return reused;
        }
        let token = self.sign(key, settings, now)?;
        LAST_ISSUED.with(|last| {
            *last.borrow_mut() = Some(Issued {
                key: key.clone(),
                session: self.clone(),
                now,
                idle_minutes,
                token: token.clone(),
            });
        });
        Some(token)
    }

    fn sign(&self, key: &Key, settings: &SessionSettings, now: u64) -> Option<String> {
        let claims = Claims {
            sub: self.context.authentication_id.clone(),
            ctx: self.context.clone(),
            forms: self.forms_completed.clone(),
            iat: now,
            exp: self.expires,
            idle: (now + minutes_to_seconds(settings.token_idle_time_minutes)).min(self.expires),
            ep: self.epoch,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&key.0),
        )
        .map_err(|error| tracing::error!(%error, "cannot sign a session"))
        .ok()
    }

    /// The session in `token`, if it is authentic and neither expired nor idle too long.
    pub fn open(key: &Key, token: &str, now: u64) -> Option<Self> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&key.0), &validation)
            .ok()?
            .claims;
        (claims.exp > now && claims.idle > now).then_some(Self {
            context: claims.ctx,
            forms_completed: claims.forms,
            expires: claims.exp,
            epoch: claims.ep,
        })
    }
}

/// The `Set-Cookie` value carrying `token`.
pub fn cookie(token: &str, settings: &SessionSettings, expires: u64, now: u64) -> String {
    let mut cookie = format!("{COOKIE_NAME}={token}; Path=/; SameSite=Lax");
    if settings.is_http_only {
        cookie.push_str("; HttpOnly");
    }
    if settings.is_secure {
        cookie.push_str("; Secure");
    }
    if !settings.session_only {
        cookie.push_str(&format!("; Max-Age={}", expires.saturating_sub(now)));
    }
    cookie
}

/// The `Set-Cookie` value that removes the session.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; Max-Age=0; SameSite=Lax; HttpOnly")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Authorization;

    fn context() -> SecurityContext {
        SecurityContext {
            authentication_id: "bjensen".into(),
            authorization: Authorization {
                id: "u1".into(),
                component: "managed/user".into(),
                roles: vec!["internal/role/openidm-authorized".into()],
                module_id: "MANAGED_USER".into(),
                query_id: Some("credential-query".into()),
                protected_attribute_list: Some(vec!["password".into()]),
                processes_required: None,
                required_profile_processes: None,
            },
        }
    }

    #[test]
    fn sessions_round_trip_with_the_same_key_only() {
        let settings = SessionSettings::default();
        let session = Session::start(context(), &settings, 1_000);
        let token = session.issue(&Key([1; 32]), &settings, 1_000).unwrap();
        assert_eq!(Session::open(&Key([1; 32]), &token, 1_001), Some(session));
        assert_eq!(Session::open(&Key([2; 32]), &token, 1_001), None);
    }

    #[test]
    fn a_token_is_reused_only_for_the_same_session_key_and_second() {
        let settings = SessionSettings::default();
        let key = Key([1; 32]);
        let session = Session::start(context(), &settings, 1_000);
        let first = session.issue(&key, &settings, 1_000).unwrap();
        assert_eq!(session.issue(&key, &settings, 1_000).unwrap(), first);
        let later = session.issue(&key, &settings, 1_001).unwrap();
        assert_ne!(later, first, "the idle expiry slides");
        assert_eq!(Session::open(&key, &later, 1_001), Some(session.clone()));
        let other_key = session.issue(&Key([2; 32]), &settings, 1_001).unwrap();
        assert_eq!(Session::open(&Key([2; 32]), &other_key, 1_001), Some(session.clone()));
        let mut other = session.clone();
        other.forms_completed.push("profile".into());
        let token = other.issue(&Key([2; 32]), &settings, 1_001).unwrap();
        assert_eq!(Session::open(&Key([2; 32]), &token, 1_001), Some(other));
        let shorter = SessionSettings {
            token_idle_time_minutes: 1.0,
            ..SessionSettings::default()
        };
        let token = session.issue(&key, &shorter, 1_001).unwrap();
        assert_ne!(token, later);
        assert_eq!(
            Session::open(&key, &token, 1_062),
            None,
            "idle for longer than a minute"
        );
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let settings = SessionSettings::default();
        let token = Session::start(context(), &settings, 1_000)
            .issue(&Key([1; 32]), &settings, 1_000)
            .unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert_eq!(Session::open(&Key([1; 32]), &parts.join("."), 1_001), None);
        assert_eq!(Session::open(&Key([1; 32]), "garbage", 1_001), None);
    }

    #[test]
    fn idle_and_absolute_expiry_end_the_session() {
        let settings = SessionSettings {
            max_token_life_minutes: 10.0,
            token_idle_time_minutes: 2.0,
            ..SessionSettings::default()
        };
        let session = Session::start(context(), &settings, 0);
        let token = session.issue(&Key([1; 32]), &settings, 0).unwrap();
        assert!(Session::open(&Key([1; 32]), &token, 119).is_some());
        assert!(Session::open(&Key([1; 32]), &token, 121).is_none(), "idle too long");
        let refreshed = session.issue(&Key([1; 32]), &settings, 540).unwrap();
        assert!(Session::open(&Key([1; 32]), &refreshed, 599).is_some());
        assert!(
            Session::open(&Key([1; 32]), &refreshed, 601).is_none(),
            "past the absolute life"
        );
    }

    #[test]
    fn cookies_carry_the_configured_attributes() {
        let settings = SessionSettings::default();
        assert_eq!(
            cookie("t", &settings, 100, 0),
            "session-jwt=t; Path=/; SameSite=Lax; HttpOnly"
        );
        let persistent = SessionSettings {
            session_only: false,
            is_secure: true,
            ..settings
        };
        assert_eq!(
            cookie("t", &persistent, 100, 40),
            "session-jwt=t; Path=/; SameSite=Lax; HttpOnly; Secure; Max-Age=60"
        );
    }
}
