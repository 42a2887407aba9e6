//! A real OpenID Provider on loopback for social-login tests: [`OidcProvider`] runs
//! `tests/support/oidc-provider/provider.mjs` (panva's certified `oidc-provider` on Node.js) as a
//! child process, and [`OidcProvider::login`] plays the browser through its login and consent
//! without a browser.
//!
//! `node` must be on `PATH`. The npm packages come from `npm ci` in that directory (CI runs it);
//! when they are missing or not the pinned version, the first provider started runs `npm ci`
//! there, once, under a lock shared by concurrent test processes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::Url;
use reqwest::blocking::Client;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::Value;

use crate::helper_process::{HelperProcess, lock_in_target, run};
use crate::{url_encode, workspace_root};

/// The provider's npm package, relative to the workspace root.
const PACKAGE_DIR: &str = "tests/support/oidc-provider";
/// How long the provider may take to start listening.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one request to the provider may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How many requests one [`OidcProvider::login`] may make before giving up.
const MAX_STEPS: usize = 20;

/// An OpenID Provider on 127.0.0.1 (issuer `http://127.0.0.1:<port>`); stopped on drop.
///
/// Its setup is JSON (see `provider.mjs`): `clients` (`client_id`, `client_secret`,
/// `redirect_uris`, optional `token_endpoint_auth_method`; both `client_secret_basic` and
/// `client_secret_post` are accepted), `accounts` (`sub` or `id` plus claims such as `email`,
/// `email_verified`, `given_name`, `family_name`, `name`, `preferred_username`) and optionally
/// `idTokenTtlSeconds`, `pkceRequired` (default `true`, S256 only) and `conformIdTokenClaims`
/// (default `false`: the `profile`/`email` claims are in the ID token as well as at userinfo).
pub struct OidcProvider {
    /// The provider (it exits when its standard input closes, even if this process dies).
    process: HelperProcess,
    issuer: String,
    http: Client,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

/// What the driver does at the provider's login step.
#[derive(Clone, Copy)]
enum Step<'a> {
    Login(&'a str),
    Abort,
}

impl OidcProvider {
    /// Starts a provider with `setup` and waits until it listens.
    pub fn start(setup: &Value) -> Self {
        ensure_packages();
        let package = workspace_root().join(PACKAGE_DIR);
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a directory for the provider: {e}"));
        let setup_path = dir.path().join("setup.json");
        std::fs::write(&setup_path, setup.to_string())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", setup_path.display()));
        let stderr = dir.path().join("stderr.log");
        let stderr_file = File::create(&stderr).unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr.display()));
        let child = Command::new("node")
            .arg(package.join("provider.mjs"))
            .arg(&setup_path)
            .current_dir(&package)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `node` (is Node.js on PATH?): {e}"));

        let ready = |line: &str| {
            let ready: Value = serde_json::from_str(line).ok()?;
            ready.get("issuer")?.as_str().map(str::to_owned)
        };
        let (process, issuer) = HelperProcess::await_ready(child, READY_TIMEOUT, ready).unwrap_or_else(|why| {
            panic!(
                "the OpenID Provider did not start ({why}); stderr:\n{}",
                read_lossy(&stderr)
            )
        });
        let http = Client::builder()
            .redirect(Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        Self {
            process,
            issuer,
            http,
            stderr,
            _dir: dir,
        }
    }

    /// The issuer, `http://127.0.0.1:<port>` (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The provider's discovery document (`/.well-known/openid-configuration`).
    pub fn discovery(&self) -> Value {
        self.get_json(&format!("{}/.well-known/openid-configuration", self.issuer))
    }

    /// The plain OAuth 2.0 profile API (`GET` with a bearer access token), which, unlike the
    /// userinfo endpoint, also serves tokens granted without the `openid` scope.
    pub fn profile_endpoint(&self) -> String {
        format!("{}/profile", self.issuer)
    }

    /// Replaces the signing keys with a new RS256 key (so relying parties must refetch the
    /// JWKS) and returns the new key ids. Sessions, codes and tokens stay valid.
    pub fn rotate_keys(&self) -> Vec<String> {
        let reply = self.post_test("rotate-keys", &Value::Null);
        reply
            .get("kids")
            .and_then(Value::as_array)
            .map(|kids| kids.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_else(|| panic!("unexpected rotate-keys reply: {reply}"))
    }

    /// Adds an account, or replaces the one with the same `sub` (as in the setup's `accounts`).
    pub fn add_account(&self, account: &Value) {
        self.post_test("accounts", account);
    }

    /// Makes the next token response carry an ID token with `claims` merged in, signed again by
    /// the provider's key or, with `rogue_key`, by a key outside its key set under the same key
    /// id: the relying party's ID token checks are then each broken on their own.
    pub fn tamper_next_id_token(&self, claims: &Value, rogue_key: bool) {
        self.post_test(
            "next-id-token",
            &serde_json::json!({"claims": claims, "rogueKey": rogue_key}),
        );
    }

    /// Follows `authorization_url` through the provider as a browser would (carrying its
    /// cookies), logs `account` in and consents to everything requested, and returns the URL the
    /// provider finally redirects to at the client's `redirect_uri` (with `code`, `state` and
    /// `iss`, or `error`), without fetching it. Panics when the provider answers anything but a
    /// redirect or its login step.
    pub fn login(&self, authorization_url: &str, account: &str) -> String {
        self.drive(authorization_url, Step::Login(account))
    }

    /// Like [`OidcProvider::login`], but the user cancels at the login step: the returned URL
    /// carries `error=access_denied`.
    pub fn deny(&self, authorization_url: &str) -> String {
        self.drive(authorization_url, Step::Abort)
    }

    /// What the provider wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr)
    }

    fn drive(&self, authorization_url: &str, step: Step<'_>) -> String {
        let issuer = Url::parse(&self.issuer).unwrap_or_else(|e| panic!("bad issuer {}: {e}", self.issuer));
        let mut url =
            Url::parse(authorization_url).unwrap_or_else(|e| panic!("bad authorization URL {authorization_url}: {e}"));
        let redirect_uri = url
            .query_pairs()
            .find(|(name, _)| name == "redirect_uri")
            .map(|(_, value)| value.into_owned());
        let mut jar = CookieJar::default();
        for _ in 0..MAX_STEPS {
            let mut request = self.http.get(url.clone());
            if let Some(cookies) = jar.header_for(&url) {
                request = request.header(COOKIE, cookies);
            }
            let response = request
                .send()
                .unwrap_or_else(|e| panic!("GET {url} failed: {e}{}", self.diagnostics()));
            jar.store(response.headers());
            let status = response.status();
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|location| location.to_str().ok())
                .map(str::to_owned);
            if let (true, Some(location)) = (status.is_redirection(), location) {
                let next = url
                    .join(&location)
                    .unwrap_or_else(|e| panic!("bad redirect {location} from {url}: {e}"));
                let at_client = redirect_uri
                    .as_deref()
                    .is_some_and(|redirect_uri| next.as_str().starts_with(redirect_uri));
                if at_client || next.origin() != issuer.origin() {
                    return if Url::parse(&location).is_ok() {
                        location
                    } else {
                        next.into()
                    };
                }
                url = next;
            } else if let (true, Some(uid)) = (status.is_success(), interaction_uid(&url)) {
                let action = match step {
                    Step::Login(account) => format!("login?account={}", url_encode(account)),
                    Step::Abort => "abort".to_owned(),
                };
                url = Url::parse(&format!("{}/interaction/{uid}/{action}", self.issuer))
                    .unwrap_or_else(|e| panic!("bad interaction URL: {e}"));
            } else {
                let body = response.text().unwrap_or_default();
                panic!(
                    "the OpenID Provider answered {status} to GET {url}: {body}{}",
                    self.diagnostics()
                );
            }
        }
        panic!(
            "no redirect to the client after {MAX_STEPS} requests, last at {url}{}",
            self.diagnostics()
        );
    }

    fn get_json(&self, url: &str) -> Value {
        let response = self
            .http
            .get(url)
            .send()
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}{}", self.diagnostics()));
        let status = response.status();
        let body = response.text().unwrap_or_default();
        assert!(status.is_success(), "GET {url}: {status} {body}{}", self.diagnostics());
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
    }

    fn post_test(&self, knob: &str, body: &Value) -> Value {
        let url = format!("{}/test/{knob}", self.issuer);
        let response = self
            .http
            .post(&url)
            .json(body)
            .send()
            .unwrap_or_else(|e| panic!("POST {url} failed: {e}{}", self.diagnostics()));
        let status = response.status();
        let text = response.text().unwrap_or_default();
        assert!(status.is_success(), "POST {url}: {status} {text}{}", self.diagnostics());
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// The provider's exit status (if it exited) and stderr, for failure messages.
    fn diagnostics(&self) -> String {
        let exited = self
            .process
            .exited()
            .map(|status| format!("\nthe provider exited ({status})"));
        format!("{}\nprovider stderr:\n{}", exited.unwrap_or_default(), self.stderr())
    }
}

/// The `uid` when `url` is the provider's login step, `/interaction/<uid>`.
fn interaction_uid(url: &Url) -> Option<String> {
    let mut segments = url.path_segments()?;
    match (segments.next(), segments.next(), segments.next()) {
        (Some("interaction"), Some(uid), None) if !uid.is_empty() => Some(uid.to_owned()),
        _ => None,
    }
}

/// The cookies one provider sets during one login, sent back by path (all on its origin).
#[derive(Default)]
struct CookieJar {
    /// `(name, path, value)`.
    cookies: Vec<(String, String, String)>,
}

impl CookieJar {
    /// Takes in the `Set-Cookie` headers of a response (an expired cookie is removed).
    fn store(&mut self, headers: &HeaderMap) {
        for header in headers.get_all(SET_COOKIE) {
            let Ok(text) = header.to_str() else { continue };
            let mut parts = text.split(';').map(str::trim);
            let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else {
                continue;
            };
            let mut path = "/".to_owned();
            let mut expired = false;
            for attribute in parts {
                let (key, attribute_value) = attribute.split_once('=').unwrap_or((attribute, ""));
                match key.to_ascii_lowercase().as_str() {
                    "path" if attribute_value.starts_with('/') => path = attribute_value.to_owned(),
                    "expires" => expired |= attribute_value.contains(" 1970 "),
                    "max-age" => expired |= attribute_value.parse::<i64>().is_ok_and(|age| age <= 0),
                    _ => {}
                }
            }
            self.cookies
                .retain(|(kept_name, kept_path, _)| !(kept_name == name && *kept_path == path));
            if !expired {
                self.cookies.push((name.to_owned(), path, value.to_owned()));
            }
        }
    }

    /// The `Cookie` header for a request to `url`, if any cookie applies.
    fn header_for(&self, url: &Url) -> Option<String> {
        let request_path = url.path();
        let cookies: Vec<String> = self
            .cookies
            .iter()
            .filter(|(_, path, _)| {
                request_path == path
                    || request_path
                        .strip_prefix(path.as_str())
                        .is_some_and(|rest| path.ends_with('/') || rest.starts_with('/'))
            })
            .map(|(name, _, value)| format!("{name}={value}"))
            .collect();
        (!cookies.is_empty()).then(|| cookies.join("; "))
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// Installs the provider's npm packages unless `node_modules` already has the pinned version.
fn ensure_packages() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(error) = INSTALLED.get_or_init(install_packages) {
        panic!("cannot install the OpenID Provider's npm packages: {error}");
    }
}

/// Runs `npm ci` in the package directory when needed; concurrent test processes wait for one
/// installer (an exclusive lock on `<target dir>/oidc-provider-npm.lock`).
fn install_packages() -> Result<(), String> {
    let package = workspace_root().join(PACKAGE_DIR);
    if installed(&package)? {
        return Ok(());
    }
    let _lock = lock_in_target("oidc-provider-npm")?;
    if installed(&package)? {
        return Ok(());
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&package))?;
    if installed(&package)? {
        Ok(())
    } else {
        Err(format!(
            "`npm ci` in {} did not install oidc-provider",
            package.display()
        ))
    }
}

/// Whether `node_modules` holds the `oidc-provider` version that `package.json` pins.
fn installed(package: &Path) -> Result<bool, String> {
    let read_json = |path: PathBuf| -> Option<Value> { serde_json::from_slice(&std::fs::read(path).ok()?).ok() };
    let manifest = package.join("package.json");
    let pinned = read_json(manifest.clone())
        .and_then(|manifest| {
            manifest
                .get("dependencies")?
                .get("oidc-provider")?
                .as_str()
                .map(str::to_owned)
        })
        .ok_or_else(|| format!("{} pins no oidc-provider version", manifest.display()))?;
    let present = read_json(package.join("node_modules/oidc-provider/package.json"))
        .and_then(|manifest| manifest.get("version")?.as_str().map(str::to_owned));
    Ok(present.as_deref() == Some(pinned.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;
    use sha2::{Digest, Sha256};

    const CLIENT_ID: &str = "ferridm";
    const CLIENT_SECRET: &str = "s3cret";
    /// Never fetched: the driver stops at the redirect to it.
    const REDIRECT_URI: &str = "http://127.0.0.1:9/openidm/oauthReturn";

    fn provider() -> OidcProvider {
        OidcProvider::start(&json!({
            "clients": [{
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [REDIRECT_URI],
                "token_endpoint_auth_method": "client_secret_post",
            }],
            "accounts": [alice()],
        }))
    }

    /// The test account: its id and every claim the provider releases for it.
    fn alice() -> Value {
        json!({
            "sub": "alice",
            "email": "alice@example.com",
            "email_verified": true,
            "given_name": "Alice",
            "family_name": "Liddell",
            "name": "Alice Liddell",
            "preferred_username": "alice",
        })
    }

    fn http() -> Client {
        Client::builder()
            .redirect(Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap()
    }

    /// A PKCE code verifier and its S256 challenge.
    fn pkce() -> (String, String) {
        let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        (verifier, challenge)
    }

    /// An authorization request for [`CLIENT_ID`] built from the discovery document.
    fn authorization_url(discovery: &Value, scope: &str, extra: &[(&str, &str)]) -> String {
        let endpoint = discovery["authorization_endpoint"].as_str().unwrap();
        let mut url = Url::parse(endpoint).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", CLIENT_ID)
            .append_pair("redirect_uri", REDIRECT_URI)
            .append_pair("scope", scope)
            .extend_pairs(extra);
        url.into()
    }

    /// The query parameter `name` of `url`.
    fn param(url: &str, name: &str) -> Option<String> {
        Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The decoded JSON of part `index` (0 header, 1 payload) of a JWT.
    fn jwt_part(token: &str, index: usize) -> Value {
        let part = token.split('.').nth(index).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    /// Redeems `code` at the token endpoint, authenticating with the secret in the body or in
    /// HTTP Basic; returns the status and the JSON reply.
    fn redeem(discovery: &Value, code: &str, verifier: &str, basic: bool) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ];
        let mut request = http().post(discovery["token_endpoint"].as_str().unwrap());
        if basic {
            request = request.basic_auth(CLIENT_ID, Some(CLIENT_SECRET));
        } else {
            form.extend([("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)]);
        }
        let response = request.form(&form).send().unwrap();
        (response.status().as_u16(), response.json().unwrap())
    }

    fn get_with_token(url: &str, access_token: &str) -> (u16, Value) {
        let response = http().get(url).bearer_auth(access_token).send().unwrap();
        (response.status().as_u16(), response.json().unwrap())
    }

    fn kids(discovery: &Value) -> Vec<String> {
        let jwks: Value = http()
            .get(discovery["jwks_uri"].as_str().unwrap())
            .send()
            .unwrap()
            .json()
            .unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        for key in keys {
            assert_eq!((&key["kty"], &key["alg"]), (&json!("RSA"), &json!("RS256")), "{key}");
            assert!(key.get("d").is_none(), "the JWKS must not carry private parts: {key}");
        }
        keys.iter().map(|key| key["kid"].as_str().unwrap().to_owned()).collect()
    }

    /// Logs `account` in with `openid profile email`, PKCE and a nonce, redeems the code and
    /// returns the token response, the code and its verifier.
    fn sign_in(provider: &OidcProvider, discovery: &Value, account: &str) -> (Value, String, String) {
        let (verifier, challenge) = pkce();
        let state = crate::unique("state");
        let nonce = crate::unique("nonce");
        let url = authorization_url(
            discovery,
            "openid profile email",
            &[
                ("state", &state),
                ("nonce", &nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        );
        let callback = provider.login(&url, account);
        assert!(callback.starts_with(&format!("{REDIRECT_URI}?")), "{callback}");
        assert_eq!(param(&callback, "state"), Some(state), "{callback}");
        assert_eq!(
            param(&callback, "iss").as_deref(),
            Some(provider.issuer()),
            "{callback}"
        );
        let code = param(&callback, "code").unwrap_or_else(|| panic!("no code: {callback}"));

        let (status, tokens) = redeem(discovery, &code, &verifier, false);
        assert_eq!(status, 200, "{tokens}");
        assert_eq!(tokens["token_type"], "Bearer", "{tokens}");
        let id_token = tokens["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no id_token: {tokens}"));
        let claims = jwt_part(id_token, 1);
        assert_eq!(claims["iss"], provider.issuer());
        assert_eq!(claims["aud"], CLIENT_ID);
        assert_eq!(claims["sub"], account);
        assert_eq!(claims["nonce"], nonce.as_str());

        (tokens, code, verifier)
    }

    #[test]
    fn serves_discovery_for_its_issuer() {
        let provider = provider();
        assert!(
            provider.issuer().starts_with("http://127.0.0.1:"),
            "{}",
            provider.issuer()
        );
        let discovery = provider.discovery();
        assert_eq!(discovery["issuer"], provider.issuer());
        for endpoint in [
            "authorization_endpoint",
            "token_endpoint",
            "userinfo_endpoint",
            "jwks_uri",
        ] {
            let url = discovery[endpoint]
                .as_str()
                .unwrap_or_else(|| panic!("no {endpoint}: {discovery}"));
            assert!(url.starts_with(provider.issuer()), "{endpoint}: {url}");
        }
        assert_eq!(discovery["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(discovery["id_token_signing_alg_values_supported"], json!(["RS256"]));
        let methods = discovery["token_endpoint_auth_methods_supported"].as_array().unwrap();
        assert!(methods.contains(&json!("client_secret_basic")) && methods.contains(&json!("client_secret_post")));
        assert_eq!(kids(&discovery).len(), 1);
    }

    #[test]
    fn authorization_code_with_pkce_round_trip() {
        let provider = provider();
        let discovery = provider.discovery();
        let (tokens, code, verifier) = sign_in(&provider, &discovery, "alice");

        let id_token = tokens["id_token"].as_str().unwrap();
        let kid = jwt_part(id_token, 0)["kid"].as_str().unwrap().to_owned();
        assert_eq!(kids(&discovery), [kid]);
        let claims = jwt_part(id_token, 1);
        assert_eq!(claims["email"], "alice@example.com");
        assert_eq!(claims["email_verified"], true);

        let access_token = tokens["access_token"].as_str().unwrap();
        let userinfo_endpoint = discovery["userinfo_endpoint"].as_str().unwrap();
        let (status, userinfo) = get_with_token(userinfo_endpoint, access_token);
        assert_eq!(status, 200, "{userinfo}");
        assert_eq!(userinfo, alice());
        let (status, _) = get_with_token(userinfo_endpoint, "not-a-token");
        assert_eq!(status, 401);

        // A code is single-use: redeeming it again also revokes what it was exchanged for.
        let (status, again) = redeem(&discovery, &code, &verifier, false);
        assert_eq!((status, &again["error"]), (400, &json!("invalid_grant")), "{again}");
        let (status, _) = get_with_token(userinfo_endpoint, access_token);
        assert_eq!(status, 401);
    }

    #[test]
    fn errors_reach_the_redirect_uri() {
        let provider = provider();
        let discovery = provider.discovery();
        let (_, challenge) = pkce();
        let pkce = [
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];

        let denied = provider.deny(&authorization_url(
            &discovery,
            "openid email",
            &[&[("state", "s1")][..], &pkce].concat(),
        ));
        assert!(denied.starts_with(&format!("{REDIRECT_URI}?")), "{denied}");
        assert_eq!(param(&denied, "error").as_deref(), Some("access_denied"), "{denied}");
        assert_eq!(param(&denied, "state").as_deref(), Some("s1"), "{denied}");
        assert_eq!(param(&denied, "code"), None, "{denied}");

        let without_pkce = provider.login(
            &authorization_url(&discovery, "openid email", &[("state", "s2")]),
            "alice",
        );
        assert_eq!(
            param(&without_pkce, "error").as_deref(),
            Some("invalid_request"),
            "{without_pkce}"
        );
        assert_eq!(param(&without_pkce, "state").as_deref(), Some("s2"), "{without_pkce}");
    }

    #[test]
    fn rotate_keys_replaces_the_jwks() {
        let provider = provider();
        let discovery = provider.discovery();
        let before = kids(&discovery);
        let (earlier, _, _) = sign_in(&provider, &discovery, "alice");
        let rotated = provider.rotate_keys();
        let after = kids(&discovery);
        assert_eq!(after, rotated);
        assert!(after.iter().all(|kid| !before.contains(kid)), "{before:?} {after:?}");

        let userinfo_endpoint = discovery["userinfo_endpoint"].as_str().unwrap();
        let (status, userinfo) = get_with_token(userinfo_endpoint, earlier["access_token"].as_str().unwrap());
        assert_eq!(status, 200, "tokens from before the rotation stay valid: {userinfo}");

        let (tokens, _, _) = sign_in(&provider, &discovery, "alice");
        let header = jwt_part(tokens["id_token"].as_str().unwrap(), 0);
        assert_eq!(
            header["kid"],
            after[0].as_str(),
            "new ID tokens are signed with the new key"
        );
    }

    #[test]
    fn the_next_id_token_can_be_tampered_with_once() {
        let provider = provider();
        let discovery = provider.discovery();
        provider.tamper_next_id_token(&json!({"email": "mallory@example.com"}), false);
        let (tampered, _, _) = sign_in(&provider, &discovery, "alice");
        let id_token = tampered["id_token"].as_str().unwrap();
        assert_eq!(jwt_part(id_token, 1)["email"], "mallory@example.com");
        assert_eq!(jwt_part(id_token, 1)["given_name"], "Alice", "the other claims stay");
        assert_eq!(kids(&discovery), [jwt_part(id_token, 0)["kid"].as_str().unwrap()]);

        provider.tamper_next_id_token(&json!({}), true);
        let (rogue, _, _) = sign_in(&provider, &discovery, "alice");
        let (honest, _, _) = sign_in(&provider, &discovery, "alice");
        let signature = |tokens: &Value| tokens["id_token"].as_str().unwrap().split('.').nth(2).unwrap().len();
        assert_eq!(signature(&rogue), signature(&honest), "both RS256 with 2048-bit keys");
        assert_eq!(
            jwt_part(honest["id_token"].as_str().unwrap(), 1)["email"],
            "alice@example.com"
        );
        assert_eq!(
            jwt_part(rogue["id_token"].as_str().unwrap(), 0)["kid"],
            jwt_part(honest["id_token"].as_str().unwrap(), 0)["kid"],
            "the rogue key poses under the provider's key id"
        );
    }

    #[test]
    fn plain_oauth_without_the_openid_scope() {
        let provider = provider();
        provider.add_account(&json!({"id": "bob", "email": "bob@example.com", "name": "Bob", "locale": "fr"}));
        let discovery = provider.discovery();
        let (verifier, challenge) = pkce();
        let url = authorization_url(
            &discovery,
            "profile email",
            &[
                ("state", "plain"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        );
        let callback = provider.login(&url, "bob");
        let code = param(&callback, "code").unwrap_or_else(|| panic!("no code: {callback}"));

        let (status, tokens) = redeem(&discovery, &code, &verifier, true);
        assert_eq!(status, 200, "{tokens}");
        assert_eq!(tokens["scope"], "profile email");
        assert!(tokens.get("id_token").is_none(), "{tokens}");
        let access_token = tokens["access_token"].as_str().unwrap();

        // oidc-provider's userinfo endpoint serves only tokens with the openid scope…
        let (status, reply) = get_with_token(discovery["userinfo_endpoint"].as_str().unwrap(), access_token);
        assert_eq!(
            (status, &reply["error"]),
            (403, &json!("insufficient_scope")),
            "{reply}"
        );
        // …so plain OAuth 2.0 clients read the account from the profile API.
        let (status, profile) = get_with_token(&provider.profile_endpoint(), access_token);
        assert_eq!(status, 200, "{profile}");
        assert_eq!(
            profile,
            json!({"sub": "bob", "email": "bob@example.com", "name": "Bob", "locale": "fr"})
        );
        let (status, _) = get_with_token(&provider.profile_endpoint(), "not-a-token");
        assert_eq!(status, 401);
    }
}
