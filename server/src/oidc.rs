//! The outbound OpenID Connect / OAuth 2.0 client for social sign-in: builds the authorization
//! request (with `state`, `nonce` and a PKCE S256 challenge), redeems the code at the token
//! endpoint, verifies the ID token against the provider's key set and reads the user-info
//! endpoint.
//!
//! Endpoints come from the provider's configuration, the rest from discovery (cached for an
//! hour). Calls go only to the hosts of the configured URLs and the provider's `allowedHosts`,
//! never follow redirects, time out after the provider's `timeoutSeconds` and read at most
//! [`MAX_BODY_BYTES`]. Error messages never carry the client secret, the code, the verifier or
//! tokens.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::identity_providers::{ProviderConfig, ProviderKind};

/// The most a provider's answer may weigh.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
/// How long a discovery document is used before it is fetched again, in seconds.
const DISCOVERY_TTL_SECONDS: u64 = 3600;
/// How long a key set is used before it is fetched again, in seconds.
const JWKS_TTL_SECONDS: u64 = 3600;
/// The least time between two fetches of a key set prompted by an unknown `kid`, in seconds.
const JWKS_REFETCH_INTERVAL_SECONDS: u64 = 10;
/// Clock skew tolerated on `exp` and `iat`, in seconds.
const LEEWAY_SECONDS: u64 = 60;
/// ID token claims about the token itself, left out of the profile.
const TOKEN_CLAIMS: [&str; 10] = [
    "iss",
    "aud",
    "exp",
    "iat",
    "nonce",
    "azp",
    "at_hash",
    "auth_time",
    "jti",
    "sid",
];
/// Characters left as they are in a query value: RFC 3986's unreserved set.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Why a sign-in with a provider failed.
#[derive(Debug, thiserror::Error)]
pub enum SocialError {
    /// The provider could not be reached or answered 5xx / timed out.
    #[error("the identity provider is unreachable: {0}")]
    Unreachable(String),
    /// The provider refused (an OAuth error response such as `invalid_grant`).
    #[error("the identity provider refused: {0}")]
    Refused(String),
    /// The provider answered something malformed (not JSON, no access token or ID token, …).
    #[error("the identity provider answered something malformed: {0}")]
    Malformed(String),
    /// The ID token failed verification (the message names the check).
    #[error("the ID token is invalid: {0}")]
    InvalidToken(String),
    /// A URL (from discovery) points at a host that is not allowed.
    #[error("the identity provider named a host that is not allowed: {0}")]
    HostNotAllowed(String),
}

/// A started sign-in: where to send the browser and what to keep until it comes back.
#[derive(Debug)]
pub struct Begun {
    /// The authorization request URL.
    pub url: String,
    /// The `state` sent (check it on return).
    pub state: String,
    /// The `nonce` sent (OpenID Connect; expected in the ID token).
    pub nonce: String,
    /// The PKCE code verifier (sent at the token endpoint).
    pub verifier: String,
}

/// The account at the provider after a completed sign-in.
#[derive(Debug, Clone)]
pub struct VerifiedProfile {
    /// The value of the provider's `authenticationIdKey` claim.
    pub subject: String,
    /// The ID token's claims about the user merged with the user-info claims (user-info wins).
    pub claims: Map<String, Value>,
}

/// The provider's discovery document (the parts used).
#[derive(Debug, Clone, Default, Deserialize)]
struct Discovery {
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    jwks_uri: Option<String>,
}

#[derive(Debug)]
struct CachedDiscovery {
    fetched_at: u64,
    document: Discovery,
}

#[derive(Debug, Default)]
struct CachedJwks {
    /// The last set fetched, with when.
    set: Option<(u64, Arc<JwkSet>)>,
    /// When a fetch prompted by an unknown `kid` last started.
    refetched_at: Option<u64>,
}

/// The endpoints of one provider, configuration over discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoints {
    authorization: String,
    token: String,
    user_info: Option<String>,
    jwks_uri: Option<String>,
    issuer: Option<String>,
}

/// Per-process client for social identity providers, with its discovery and key-set caches.
#[derive(Debug, Default)]
pub struct ProviderClient {
    discovery: Mutex<HashMap<String, CachedDiscovery>>,
    jwks: Mutex<HashMap<String, CachedJwks>>,
}

impl ProviderClient {
    /// A client with empty caches.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a sign-in: fresh `state`, `nonce` and PKCE verifier, and the authorization request
    /// URL (`response_type=code`, S256 challenge; the nonce only for OpenID Connect).
    pub fn begin(&self, provider: &ProviderConfig, now: u64) -> Result<Begun, SocialError> {
        let endpoints = self.endpoints(provider, now)?;
        let state = random_token();
        let nonce = random_token();
        let verifier = random_token();
        let challenge = pkce_challenge(&verifier);
        let scope = provider.scope.join(" ");
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", provider.client_id.as_str()),
            ("redirect_uri", provider.redirect_uri.as_str()),
            ("scope", scope.as_str()),
            ("state", state.as_str()),
        ];
        if provider.kind() == ProviderKind::OpenIdConnect {
            params.push(("nonce", nonce.as_str()));
        }
        params.extend([
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]);
        let url = authorization_url(&endpoints.authorization, &params)?;
        Ok(Begun {
            url,
            state,
            nonce,
            verifier,
        })
    }

    /// Completes a sign-in: redeems `code` (with the PKCE `verifier`), verifies the ID token
    /// (OpenID Connect, against `nonce`) and reads the user-info endpoint when there is one.
    pub fn complete(
        &self,
        provider: &ProviderConfig,
        code: &str,
        verifier: &str,
        nonce: &str,
        now: u64,
    ) -> Result<VerifiedProfile, SocialError> {
        let secrets = [provider.client_secret.as_str(), code, verifier, nonce];
        self.complete_inner(provider, code, verifier, nonce, now)
            .map_err(|error| redact(error, &secrets))
    }

    fn complete_inner(
        &self,
        provider: &ProviderConfig,
        code: &str,
        verifier: &str,
        nonce: &str,
        now: u64,
    ) -> Result<VerifiedProfile, SocialError> {
        let endpoints = self.endpoints(provider, now)?;
        let agent = agent(provider);
        let tokens = redeem_code(&agent, provider, &endpoints.token, code, verifier)?;
        let access_token = match tokens.get("access_token") {
            Some(Value::String(token)) if !token.is_empty() => token.as_str(),
            _ => {
                return Err(SocialError::Malformed(
                    "the token endpoint answered without an access_token".into(),
                ));
            }
        };
        if let Some(kind) = tokens.get("token_type")
            && !kind.as_str().is_some_and(|kind| kind.eq_ignore_ascii_case("bearer"))
        {
            return Err(SocialError::Malformed(format!(
                "the token endpoint answered token_type {kind}, not Bearer"
            )));
        }
        let token_claims = match provider.kind() {
            ProviderKind::OAuth2 => None,
            ProviderKind::OpenIdConnect => {
                let Some(Value::String(id_token)) = tokens.get("id_token") else {
                    return Err(SocialError::Malformed(
                        "the token endpoint answered without an id_token".into(),
                    ));
                };
                Some(self.verify_id_token(provider, &endpoints, id_token, nonce, now)?)
            }
        };
        let user_info = match &endpoints.user_info {
            Some(url) => Some(fetch_json(&agent, "the user-info endpoint", url, Some(access_token))?),
            None => None,
        };
        if let (Some(claims), Some(info)) = (&token_claims, &user_info)
            && info.get("sub") != claims.get("sub")
        {
            return Err(SocialError::InvalidToken(
                "the user-info sub is not the ID token's sub".into(),
            ));
        }
        let claims = merge_claims(token_claims, user_info);
        let subject = subject(&claims, &provider.authentication_id_key)?;
        Ok(VerifiedProfile { subject, claims })
    }

    /// The provider's endpoints: configured values, the rest from discovery; every URL on an
    /// allowed host.
    fn endpoints(&self, provider: &ProviderConfig, now: u64) -> Result<Endpoints, SocialError> {
        let configured = |value: &Option<String>| value.as_deref().filter(|url| !url.is_empty()).map(str::to_owned);
        let oidc = provider.kind() == ProviderKind::OpenIdConnect;
        let mut authorization = configured(&provider.authorization_endpoint);
        let mut token = configured(&provider.token_endpoint);
        let mut user_info = configured(&provider.user_info_endpoint);
        let mut jwks_uri = configured(&provider.jwks_uri_endpoint);
        let mut issuer = configured(&provider.issuer);
        let incomplete = authorization.is_none()
            || token.is_none()
            || user_info.is_none()
            || oidc && (jwks_uri.is_none() || issuer.is_none());
        if let (true, Some(well_known)) = (incomplete, configured(&provider.well_known_endpoint)) {
            let allowed = allowed_hosts(provider);
            let document = self.discover(provider, &allowed, &well_known, now)?;
            let discovered = |slot: &mut Option<String>, value: &Option<String>, name: &str| {
                if slot.is_none()
                    && let Some(url) = value.as_deref().filter(|url| !url.is_empty())
                {
                    check_url(&allowed, url).map_err(|error| match error {
                        SocialError::HostNotAllowed(why) => {
                            SocialError::HostNotAllowed(format!("discovery's {name}: {why}"))
                        }
                        other => other,
                    })?;
                    *slot = Some(url.to_owned());
                }
                Ok::<_, SocialError>(())
            };
            discovered(
                &mut authorization,
                &document.authorization_endpoint,
                "authorization_endpoint",
            )?;
            discovered(&mut token, &document.token_endpoint, "token_endpoint")?;
            discovered(&mut user_info, &document.userinfo_endpoint, "userinfo_endpoint")?;
            discovered(&mut jwks_uri, &document.jwks_uri, "jwks_uri")?;
            if issuer.is_none() {
                issuer = document.issuer.filter(|issuer| !issuer.is_empty());
            }
        }
        let missing = |name: &str| SocialError::Malformed(format!("provider {} has no {name}", provider.provider));
        let endpoints = Endpoints {
            authorization: authorization.ok_or_else(|| missing("authorization endpoint"))?,
            token: token.ok_or_else(|| missing("token endpoint"))?,
            user_info,
            jwks_uri,
            issuer,
        };
        if oidc {
            if endpoints.jwks_uri.is_none() {
                return Err(missing("jwks_uri"));
            }
            if endpoints.issuer.is_none() {
                return Err(missing("issuer"));
            }
        } else if endpoints.user_info.is_none() {
            return Err(missing("user-info endpoint"));
        }
        Ok(endpoints)
    }

    /// The discovery document at `url`, from the cache when fetched less than an hour ago.
    fn discover(
        &self,
        provider: &ProviderConfig,
        allowed: &[AllowedHost],
        url: &str,
        now: u64,
    ) -> Result<Discovery, SocialError> {
        {
            let cache = self.discovery.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(cached) = cache.get(url)
                && now.saturating_sub(cached.fetched_at) < DISCOVERY_TTL_SECONDS
            {
                return Ok(cached.document.clone());
            }
        }
        check_url(allowed, url)?;
        tracing::debug!(provider = %provider.provider, url, "fetching the discovery document");
        let document = fetch_json(&agent(provider), "discovery", url, None)?;
        let document: Discovery = serde_json::from_value(Value::Object(document))
            .map_err(|error| SocialError::Malformed(format!("the discovery document at {url}: {error}")))?;
        self.discovery.lock().unwrap_or_else(PoisonError::into_inner).insert(
            url.to_owned(),
            CachedDiscovery {
                fetched_at: now,
                document: document.clone(),
            },
        );
        Ok(document)
    }

    /// The provider's key set; `refresh` when the one at hand lacks the wanted key (at most once
    /// per [`JWKS_REFETCH_INTERVAL_SECONDS`]). `None` when a refresh was wanted but is not due.
    fn key_set(
        &self,
        provider: &ProviderConfig,
        url: &str,
        refresh: bool,
        now: u64,
    ) -> Result<Option<Arc<JwkSet>>, SocialError> {
        {
            let mut cache = self.jwks.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = cache.entry(url.to_owned()).or_default();
            match (&entry.set, refresh) {
                (Some((fetched_at, set)), false) if now.saturating_sub(*fetched_at) < JWKS_TTL_SECONDS => {
                    return Ok(Some(Arc::clone(set)));
                }
                (_, true) => {
                    if entry
                        .refetched_at
                        .is_some_and(|at| now.saturating_sub(at) < JWKS_REFETCH_INTERVAL_SECONDS)
                    {
                        return Ok(None);
                    }
                    entry.refetched_at = Some(now);
                }
                _ => {}
            }
        }
        tracing::debug!(provider = %provider.provider, url, refresh, "fetching the key set");
        let document = fetch_json(&agent(provider), "the key set", url, None)?;
        let set = Arc::new(parse_key_set(&document)?);
        let mut cache = self.jwks.lock().unwrap_or_else(PoisonError::into_inner);
        cache.entry(url.to_owned()).or_default().set = Some((now, Arc::clone(&set)));
        Ok(Some(set))
    }

    /// Verifies an ID token (signature, algorithm, issuer, audience, `azp`, expiry, `iat`,
    /// nonce) and returns its claims.
    fn verify_id_token(
        &self,
        provider: &ProviderConfig,
        endpoints: &Endpoints,
        id_token: &str,
        nonce: &str,
        now: u64,
    ) -> Result<Map<String, Value>, SocialError> {
        let invalid = |why: String| SocialError::InvalidToken(why);
        let header =
            decode_header(id_token).map_err(|error| invalid(format!("its header cannot be read ({error})")))?;
        if !asymmetric(header.alg) {
            return Err(invalid(format!(
                "algorithm {:?} is not allowed (only asymmetric signatures are)",
                header.alg
            )));
        }
        let (Some(jwks_uri), Some(issuer)) = (&endpoints.jwks_uri, &endpoints.issuer) else {
            return Err(SocialError::Malformed("the provider has no jwks_uri or issuer".into()));
        };
        let mut refreshed = false;
        let key = loop {
            let Some(set) = self.key_set(provider, jwks_uri, refreshed, now)? else {
                return Err(invalid("it is signed by an unknown key".into()));
            };
            match select_key(&set, header.kid.as_deref(), header.alg) {
                Ok(Some(jwk)) => {
                    break DecodingKey::from_jwk(jwk)
                        .map_err(|error| invalid(format!("its key cannot be used ({error})")))?;
                }
                Ok(None) if !refreshed => refreshed = true,
                Ok(None) => return Err(invalid("it is signed by an unknown key".into())),
                Err(why) => return Err(invalid(why)),
            }
        };

        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["iss", "aud", "sub"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[&provider.client_id]);
        let claims = decode::<Map<String, Value>>(id_token, &key, &validation)
            .map_err(|error| invalid(describe_jwt_error(&error)))?
            .claims;
        check_claims(&claims, issuer, &provider.client_id, nonce, now).map_err(invalid)?;
        Ok(claims)
    }
}

/// The claims checks `jsonwebtoken` leaves to us (it has checked the signature, and `iss` and
/// `aud` loosely).
fn check_claims(
    claims: &Map<String, Value>,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: u64,
) -> Result<(), String> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err("wrong issuer".into());
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&client_id) {
        return Err("wrong audience".into());
    }
    match claims.get("azp") {
        None => {}
        Some(Value::String(azp)) if azp == client_id => {}
        Some(_) => return Err("wrong audience (azp is another client)".into()),
    }
    if claims
        .get("sub")
        .is_none_or(|sub| sub.as_str().is_none_or(str::is_empty))
    {
        return Err("sub is missing or not a string".into());
    }
    let now = now as f64;
    match claims.get("exp").and_then(Value::as_f64) {
        Some(exp) if exp + LEEWAY_SECONDS as f64 >= now => {}
        Some(_) => return Err("it has expired".into()),
        None => return Err("exp is missing or not a number".into()),
    }
    match claims.get("iat") {
        None => {}
        Some(iat) => match iat.as_f64() {
            Some(iat) if iat <= now + LEEWAY_SECONDS as f64 => {}
            Some(_) => return Err("it is issued in the future (iat)".into()),
            None => return Err("iat is not a number".into()),
        },
    }
    match claims.get("nonce").and_then(Value::as_str) {
        Some(got) if bool::from(got.as_bytes().ct_eq(nonce.as_bytes())) => Ok(()),
        Some(_) => Err("wrong nonce".into()),
        None => Err("nonce is missing".into()),
    }
}

/// What went wrong in `jsonwebtoken`'s part of the verification, by check.
fn describe_jwt_error(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::InvalidAlgorithm => "algorithm not allowed".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("{claim} is missing"),
        ErrorKind::InvalidClaimFormat(claim) => format!("{claim} is malformed"),
        ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidEddsaKey => {
            "its key is unusable".into()
        }
        _ => format!("it cannot be verified ({error})"),
    }
}

/// Whether `alg` is a public-key signature algorithm (not HMAC).
fn asymmetric(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    )
}

/// Whether `jwk` can verify `alg` signatures: key type (and curve), `use` and `alg` agree.
fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let type_fits = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512) => true,
        (AlgorithmParameters::RSA(_), Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512) => true,
        (AlgorithmParameters::EllipticCurve(key), Algorithm::ES256) => key.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(key), Algorithm::ES384) => key.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(key), Algorithm::EdDSA) => key.curve == EllipticCurve::Ed25519,
        _ => false,
    };
    let use_fits = matches!(jwk.common.public_key_use, None | Some(PublicKeyUse::Signature));
    let alg_fits = jwk
        .common
        .key_algorithm
        .is_none_or(|key_alg| Algorithm::from_str(&key_alg.to_string()).is_ok_and(|key_alg| key_alg == alg));
    type_fits && use_fits && alg_fits
}

/// The key of `set` that verifies the token: by `kid`, or the only fitting key when the token
/// names none. `Ok(None)` when the set lacks it (refetch), `Err` when it cannot be used.
fn select_key<'a>(set: &'a JwkSet, kid: Option<&str>, alg: Algorithm) -> Result<Option<&'a Jwk>, String> {
    match kid {
        Some(kid) => match set.find(kid) {
            Some(jwk) if key_fits(jwk, alg) => Ok(Some(jwk)),
            Some(_) => Err(format!("key {kid} does not fit algorithm {alg:?}")),
            None => Ok(None),
        },
        None => {
            let mut fitting = set.keys.iter().filter(|jwk| key_fits(jwk, alg));
            match (fitting.next(), fitting.next()) {
                (Some(jwk), None) => Ok(Some(jwk)),
                (None, _) => Ok(None),
                (Some(_), Some(_)) => Err(format!(
                    "it names no key (kid) and the key set has several {alg:?} keys"
                )),
            }
        }
    }
}

/// A key set from its JSON, keeping only public keys of the asymmetric kinds (RSA, EC, OKP)
/// that `jsonwebtoken` reads.
fn parse_key_set(document: &Map<String, Value>) -> Result<JwkSet, SocialError> {
    let Some(Value::Array(keys)) = document.get("keys") else {
        return Err(SocialError::Malformed("the key set has no keys array".into()));
    };
    let keys = keys
        .iter()
        .filter(|key| matches!(key.get("kty").and_then(Value::as_str), Some("RSA" | "EC" | "OKP")))
        .filter_map(|key| serde_json::from_value::<Jwk>(key.clone()).ok())
        .collect();
    Ok(JwkSet { keys })
}

/// Exchanges `code` at the token endpoint with the client's credentials.
fn redeem_code(
    agent: &ureq::Agent,
    provider: &ProviderConfig,
    url: &str,
    code: &str,
    verifier: &str,
) -> Result<Map<String, Value>, SocialError> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", &provider.redirect_uri)
        .append_pair("code_verifier", verifier);
    let mut request = agent
        .post(url)
        .header("Accept", "application/json")
        .content_type("application/x-www-form-urlencoded");
    if provider.basic_auth {
        request = request.header(
            "Authorization",
            basic_credentials(&provider.client_id, &provider.client_secret),
        );
    } else {
        form.append_pair("client_id", &provider.client_id)
            .append_pair("client_secret", &provider.client_secret);
    }
    let what = "the token endpoint";
    let response = request.send(form.finish()).map_err(|error| call_error(what, error))?;
    read_json(what, response)
}

/// `Authorization: Basic` for client credentials: each part form-urlencoded first (RFC 6749
/// 2.3.1).
fn basic_credentials(client_id: &str, client_secret: &str) -> String {
    let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(client_secret));
    format!("Basic {}", STANDARD.encode(pair))
}

/// GETs a JSON object, with a bearer token when given.
fn fetch_json(
    agent: &ureq::Agent,
    what: &str,
    url: &str,
    bearer: Option<&str>,
) -> Result<Map<String, Value>, SocialError> {
    let mut request = agent.get(url).header("Accept", "application/json");
    if let Some(token) = bearer {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = request.call().map_err(|error| call_error(what, error))?;
    read_json(what, response)
}

/// A failed call, by what went wrong.
fn call_error(what: &str, error: ureq::Error) -> SocialError {
    tracing::warn!(%error, "call to {what} failed");
    match error {
        ureq::Error::BodyExceedsLimit(_) => SocialError::Malformed(format!("{what} answered more than 1 MiB")),
        error => SocialError::Unreachable(format!("{what}: {error}")),
    }
}

/// A provider's answer: a JSON object on success, an OAuth error otherwise.
fn read_json(what: &str, mut response: ureq::http::Response<ureq::Body>) -> Result<Map<String, Value>, SocialError> {
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_vec()
        .map_err(|error| call_error(what, error))?;
    interpret(what, status, &body)
}

/// Classifies an answer: 2xx JSON object → the object; 4xx → refused (with the OAuth `error`
/// and `error_description` when there are); 5xx → unreachable; anything else → malformed.
fn interpret(what: &str, status: u16, body: &[u8]) -> Result<Map<String, Value>, SocialError> {
    let json = serde_json::from_slice::<Value>(body).ok();
    match (status, json) {
        (200..=299, Some(Value::Object(object))) => Ok(object),
        (200..=299, _) => Err(SocialError::Malformed(format!(
            "{what} answered something that is not a JSON object"
        ))),
        (400..=499, Some(Value::Object(object))) if object.get("error").is_some_and(Value::is_string) => {
            let error = object.get("error").and_then(Value::as_str).unwrap_or_default();
            let description = object.get("error_description").and_then(Value::as_str);
            Err(SocialError::Refused(match description {
                Some(description) => format!("{}: {}", clean(error), clean(description)),
                None => clean(error),
            }))
        }
        (400..=499, _) => Err(SocialError::Refused(format!("{what} answered {status}"))),
        (500..=599, _) => Err(SocialError::Unreachable(format!("{what} answered {status}"))),
        _ => Err(SocialError::Malformed(format!("{what} answered {status}"))),
    }
}

/// Provider text fit for a message: printable and at most 200 characters.
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// `error` with each of `secrets` (when not trivially short) blotted out, in case a provider
/// echoed one back.
fn redact(error: SocialError, secrets: &[&str]) -> SocialError {
    let scrub = |mut message: String| {
        for secret in secrets.iter().filter(|secret| secret.len() >= 4) {
            message = message.replace(secret, "[redacted]");
        }
        message
    };
    match error {
        SocialError::Unreachable(message) => SocialError::Unreachable(scrub(message)),
        SocialError::Refused(message) => SocialError::Refused(scrub(message)),
        SocialError::Malformed(message) => SocialError::Malformed(scrub(message)),
        SocialError::InvalidToken(message) => SocialError::InvalidToken(scrub(message)),
        SocialError::HostNotAllowed(message) => SocialError::HostNotAllowed(scrub(message)),
    }
}

/// The agent for one provider: its timeout, no redirects, statuses as answers.
fn agent(provider: &ProviderConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(provider.timeout_seconds)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent()
}

/// 32 random bytes, base64url without padding.
fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 4.2).
fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `endpoint` with `params` added to its query, each value percent-encoded.
fn authorization_url(endpoint: &str, params: &[(&str, &str)]) -> Result<String, SocialError> {
    if endpoint.contains('#') {
        return Err(SocialError::Malformed(
            "the authorization endpoint has a fragment".into(),
        ));
    }
    let mut url = endpoint.to_owned();
    if !url.contains('?') {
        url.push('?');
    } else if !url.ends_with('?') && !url.ends_with('&') {
        url.push('&');
    }
    let query: Vec<String> = params
        .iter()
        .map(|(name, value)| {
            format!(
                "{}={}",
                utf8_percent_encode(name, QUERY_VALUE),
                utf8_percent_encode(value, QUERY_VALUE)
            )
        })
        .collect();
    url.push_str(&query.join("&"));
    Ok(url)
}

/// A host calls may go to; `port: None` means the default port of the URL's scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    host: String,
    port: Option<u16>,
}

/// A URL's scheme is `https` (or `http`), host (lower case) and port (the scheme's default when
/// none is written).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

/// The origin of an `http(s)` URL; `None` when it is not one or its authority is unusual
/// (user info, characters a host does not have).
fn origin(url: &str) -> Option<Origin> {
    let (scheme, rest) = url.split_once("://")?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = split_host_port(authority)?;
    Some(Origin {
        https,
        host,
        port: port.unwrap_or(if https { 443 } else { 80 }),
    })
}

/// `host[:port]` (IPv6 in brackets) into its lower-case host and port.
fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '[' | ']');
    if authority.is_empty() || !authority.chars().all(valid) {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (format!("[{inside}]"), port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || host.contains(['[', ']']) && !host.starts_with('[') {
        return None;
    }
    let port = match port {
        Some(port) => Some(port.parse::<u16>().ok()?),
        None => None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// The hosts `provider` may be called on: those of its configured URLs and its `allowedHosts`.
fn allowed_hosts(provider: &ProviderConfig) -> Vec<AllowedHost> {
    let configured = provider
        .urls()
        .into_iter()
        .filter_map(|(_, url)| origin(url))
        .map(|origin| AllowedHost {
            host: origin.host,
            port: Some(origin.port),
        });
    let listed = provider
        .allowed_hosts
        .iter()
        .filter_map(|entry| split_host_port(entry.trim()))
        .map(|(host, port)| AllowedHost { host, port });
    configured.chain(listed).collect()
}

/// Fails unless `url` is an `http(s)` URL on an allowed host.
fn check_url(allowed: &[AllowedHost], url: &str) -> Result<(), SocialError> {
    let Some(origin) = origin(url) else {
        return Err(SocialError::HostNotAllowed(format!("{url} is not a plain http(s) URL")));
    };
    let default_port = if origin.https { 443 } else { 80 };
    let permitted = allowed
        .iter()
        .any(|entry| entry.host == origin.host && entry.port.unwrap_or(default_port) == origin.port);
    if permitted {
        Ok(())
    } else {
        Err(SocialError::HostNotAllowed(format!(
            "{}:{} (in {url}) is neither a configured URL's host nor in allowedHosts",
            origin.host, origin.port
        )))
    }
}

/// The profile: the ID token's claims about the user, overridden by the user-info claims.
fn merge_claims(token_claims: Option<Map<String, Value>>, user_info: Option<Map<String, Value>>) -> Map<String, Value> {
    let mut claims = token_claims.unwrap_or_default();
    claims.retain(|name, _| !TOKEN_CLAIMS.contains(&name.as_str()));
    claims.extend(user_info.unwrap_or_default());
    claims
}

/// The account's id at the provider: claim `key` as a string (a whole number is written out).
fn subject(claims: &Map<String, Value>, key: &str) -> Result<String, SocialError> {
    match claims.get(key) {
        Some(Value::String(subject)) if !subject.is_empty() => Ok(subject.clone()),
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => Ok(number.to_string()),
        Some(_) => Err(SocialError::Malformed(format!(
            "the profile's {key} claim is not a string or a whole number"
        ))),
        None => Err(SocialError::Malformed(format!("the profile has no {key} claim"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider(change: Value) -> ProviderConfig {
        let mut config = json!({
            "provider": "example", "clientId": "ferridm", "clientSecret": "s3cret",
            "wellKnownEndpoint": "https://id.example.com/.well-known/openid-configuration",
            "redirectUri": "http://127.0.0.1:8080/oauthReturn/", "scope": ["openid", "email"],
        });
        for (key, value) in change.as_object().unwrap() {
            config[key] = value.clone();
        }
        serde_json::from_value(config).unwrap()
    }

    fn query_param(url: &str, name: &str) -> Option<String> {
        let query = url.split_once('?')?.1;
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let token = random_token();
        assert_eq!(token.len(), 43);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(random_token(), token);
    }

    #[test]
    fn authorization_url_encodes_values_and_keeps_an_existing_query() {
        let params = [
            ("scope", "openid email"),
            ("redirect_uri", "http://h/a?b=c&d"),
            ("x", "é+~"),
        ];
        let url = authorization_url("https://id.example.com/auth", &params).unwrap();
        assert_eq!(
            url,
            "https://id.example.com/auth?scope=openid%20email&redirect_uri=http%3A%2F%2Fh%2Fa%3Fb%3Dc%26d&x=%C3%A9%2B~"
        );
        let url = authorization_url("https://id.example.com/auth?tenant=a", &[("state", "s")]).unwrap();
        assert_eq!(url, "https://id.example.com/auth?tenant=a&state=s");
        let url = authorization_url("https://id.example.com/auth?", &[("state", "s")]).unwrap();
        assert_eq!(url, "https://id.example.com/auth?state=s");
        assert!(matches!(
            authorization_url("https://id.example.com/auth#x", &[]),
            Err(SocialError::Malformed(_))
        ));
    }

    #[test]
    fn begin_builds_the_request_from_configured_endpoints() {
        let client = ProviderClient::new();
        let explicit = json!({
            "wellKnownEndpoint": null,
            "authorizationEndpoint": "https://id.example.com/authorize?prompt=login",
            "tokenEndpoint": "https://id.example.com/token",
            "userInfoEndpoint": "https://id.example.com/userinfo",
            "jwksUriEndpoint": "https://id.example.com/jwks",
            "issuer": "https://id.example.com",
        });
        let begun = client.begin(&provider(explicit.clone()), 0).unwrap();
        assert!(
            begun
                .url
                .starts_with("https://id.example.com/authorize?prompt=login&response_type=code&")
        );
        assert_eq!(query_param(&begun.url, "client_id").as_deref(), Some("ferridm"));
        assert_eq!(query_param(&begun.url, "scope").as_deref(), Some("openid email"));
        assert_eq!(
            query_param(&begun.url, "redirect_uri").as_deref(),
            Some("http://127.0.0.1:8080/oauthReturn/")
        );
        assert_eq!(query_param(&begun.url, "state"), Some(begun.state.clone()));
        assert_eq!(query_param(&begun.url, "nonce"), Some(begun.nonce.clone()));
        assert_eq!(
            query_param(&begun.url, "code_challenge"),
            Some(pkce_challenge(&begun.verifier))
        );
        assert_eq!(
            query_param(&begun.url, "code_challenge_method").as_deref(),
            Some("S256")
        );
        assert!(begun.state != begun.nonce && begun.nonce != begun.verifier);

        let mut oauth = explicit;
        oauth["type"] = json!("OAUTH2");
        oauth["scope"] = json!(["user:email"]);
        let begun = client.begin(&provider(oauth), 0).unwrap();
        assert_eq!(query_param(&begun.url, "nonce"), None);
        assert_eq!(query_param(&begun.url, "scope").as_deref(), Some("user:email"));
    }

    #[test]
    fn hosts_are_allowed_by_configuration_only() {
        let config = provider(json!({
            "tokenEndpoint": "http://127.0.0.1:9000/token",
            "allowedHosts": ["keys.example.net", "Other.Example.org:8443", "[::1]:9"],
        }));
        let allowed = allowed_hosts(&config);
        let ok = |url: &str| check_url(&allowed, url).is_ok();
        assert!(ok("https://id.example.com/jwks"));
        assert!(ok("HTTPS://ID.EXAMPLE.COM:443/jwks"));
        assert!(!ok("https://id.example.com:8443/jwks"), "another port");
        assert!(!ok("http://id.example.com/jwks"), "configured https: port 443, not 80");
        assert!(ok("http://127.0.0.1:9000/userinfo"));
        assert!(!ok("http://127.0.0.1:9001/userinfo"));
        assert!(
            ok("https://keys.example.net/jwks"),
            "an allowedHosts entry without port: default port"
        );
        assert!(!ok("https://keys.example.net:444/jwks"));
        assert!(ok("https://other.example.org:8443/x"));
        assert!(!ok("https://other.example.org/x"));
        assert!(ok("http://[::1]:9/x"));
        assert!(!ok("https://evil.example.com/jwks"));
        assert!(!ok("https://id.example.com.evil.example.com/jwks"));
        assert!(
            !ok("https://id.example.com@evil.example.com/jwks"),
            "user info is refused"
        );
        assert!(!ok("https://evil.example.com\\@id.example.com/jwks"));
        assert!(!ok("ftp://id.example.com/jwks"));
        assert!(!ok("file:///etc/passwd"));
        assert!(!ok("//id.example.com/jwks"));
        assert!(matches!(
            check_url(&allowed, "https://evil.example.com/"),
            Err(SocialError::HostNotAllowed(_))
        ));
    }

    #[test]
    fn subject_is_a_string_or_a_whole_number() {
        let claims = json!({"sub": "alice", "id": 12345, "big": 18446744073709551615u64, "f": 1.5, "e": ""});
        let claims = claims.as_object().unwrap();
        assert_eq!(subject(claims, "sub").unwrap(), "alice");
        assert_eq!(subject(claims, "id").unwrap(), "12345");
        assert_eq!(subject(claims, "big").unwrap(), "18446744073709551615");
        assert!(matches!(subject(claims, "f"), Err(SocialError::Malformed(_))));
        assert!(matches!(subject(claims, "e"), Err(SocialError::Malformed(_))));
        assert!(matches!(subject(claims, "missing"), Err(SocialError::Malformed(_))));
    }

    #[test]
    fn claims_merge_without_token_claims_and_user_info_wins() {
        let token = json!({
            "iss": "https://id.example.com", "aud": "ferridm", "exp": 2, "iat": 1, "nonce": "n",
            "azp": "ferridm", "at_hash": "h", "auth_time": 1, "jti": "j", "sid": "s",
            "sub": "alice", "email": "old@example.com", "given_name": "Alice",
        });
        let info = json!({"sub": "alice", "email": "alice@example.com", "locale": "fr"});
        let merged = merge_claims(
            Some(token.as_object().unwrap().clone()),
            Some(info.as_object().unwrap().clone()),
        );
        assert_eq!(
            Value::Object(merged),
            json!({"sub": "alice", "email": "alice@example.com", "given_name": "Alice", "locale": "fr"})
        );
        let only_info = merge_claims(None, Some(info.as_object().unwrap().clone()));
        assert_eq!(Value::Object(only_info), info);
    }

    #[test]
    fn id_token_claims_are_checked_against_the_clock_and_the_nonce() {
        let good = json!({
            "iss": "https://id.example.com", "aud": ["ferridm", "other"], "azp": "ferridm",
            "sub": "alice", "exp": 1000, "iat": 900, "nonce": "n-1",
        });
        let check = |change: Value, now: u64| {
            let mut claims = good.as_object().unwrap().clone();
            for (key, value) in change.as_object().unwrap() {
                if value.is_null() {
                    claims.remove(key);
                } else {
                    claims.insert(key.clone(), value.clone());
                }
            }
            check_claims(&claims, "https://id.example.com", "ferridm", "n-1", now)
        };
        assert_eq!(check(json!({}), 1000), Ok(()));
        assert_eq!(check(json!({}), 1060), Ok(()), "60 s leeway on exp");
        assert_eq!(check(json!({}), 1061).unwrap_err(), "it has expired");
        assert_eq!(
            check(json!({"exp": null}), 950).unwrap_err(),
            "exp is missing or not a number"
        );
        assert_eq!(
            check(json!({"iat": 1500}), 950).unwrap_err(),
            "it is issued in the future (iat)"
        );
        assert_eq!(check(json!({"iat": 1000}), 950), Ok(()));
        assert_eq!(check(json!({"iat": null}), 950), Ok(()));
        assert_eq!(check(json!({"nonce": "n-2"}), 950).unwrap_err(), "wrong nonce");
        assert_eq!(check(json!({"nonce": null}), 950).unwrap_err(), "nonce is missing");
        assert_eq!(
            check(json!({"iss": ["https://id.example.com"]}), 950).unwrap_err(),
            "wrong issuer"
        );
        assert_eq!(check(json!({"aud": "other"}), 950).unwrap_err(), "wrong audience");
        assert!(
            check(json!({"azp": "other"}), 950)
                .unwrap_err()
                .starts_with("wrong audience")
        );
        assert_eq!(check(json!({"azp": null, "aud": "ferridm"}), 950), Ok(()));
    }

    #[test]
    fn only_asymmetric_keys_that_fit_are_selected() {
        let set: JwkSet = serde_json::from_value(json!({"keys": [
            {"kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": "AQAB", "y": "AQAB"},
        ]}))
        .unwrap();
        assert!(!asymmetric(Algorithm::HS256));
        assert!(asymmetric(Algorithm::EdDSA));
        assert_eq!(
            select_key(&set, Some("r1"), Algorithm::RS256)
                .unwrap()
                .unwrap()
                .common
                .key_id
                .as_deref(),
            Some("r1")
        );
        assert!(
            select_key(&set, Some("r1"), Algorithm::PS256).is_err(),
            "alg of the key is RS256"
        );
        assert!(select_key(&set, Some("enc"), Algorithm::RS256).is_err());
        assert!(select_key(&set, Some("e1"), Algorithm::ES384).is_err(), "wrong curve");
        assert!(select_key(&set, Some("unknown"), Algorithm::RS256).unwrap().is_none());
        assert_eq!(
            select_key(&set, None, Algorithm::ES256)
                .unwrap()
                .unwrap()
                .common
                .key_id
                .as_deref(),
            Some("e1")
        );
        assert!(select_key(&set, None, Algorithm::EdDSA).unwrap().is_none());
        let parsed = parse_key_set(
            json!({"keys": [{"kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB"}, {"kty": "weird"}, 7]})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(parsed.keys.len(), 1);
    }

    #[test]
    fn answers_are_classified_and_secrets_redacted() {
        let refused = interpret(
            "the token endpoint",
            400,
            br#"{"error": "invalid_grant", "error_description": "grant request is invalid"}"#,
        );
        assert!(matches!(refused, Err(SocialError::Refused(m)) if m == "invalid_grant: grant request is invalid"));
        assert!(matches!(interpret("x", 401, b""), Err(SocialError::Refused(_))));
        assert!(matches!(interpret("x", 502, b"{}"), Err(SocialError::Unreachable(_))));
        assert!(matches!(interpret("x", 200, b"<html>"), Err(SocialError::Malformed(_))));
        assert!(matches!(interpret("x", 302, b""), Err(SocialError::Malformed(_))));
        assert_eq!(interpret("x", 200, br#"{"a": 1}"#).unwrap()["a"], 1);

        let echoed = SocialError::Refused("code abcd1234 is invalid for s3cret".into());
        let redacted = redact(echoed, &["s3cret", "abcd1234", ""]).to_string();
        assert!(
            !redacted.contains("s3cret") && !redacted.contains("abcd1234"),
            "{redacted}"
        );
        assert_eq!(
            basic_credentials("my client", "p:ss%"),
            format!("Basic {}", STANDARD.encode("my+client:p%3Ass%25"))
        );
    }
}
