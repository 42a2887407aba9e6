//! Social sign-in as IDM's End User UI drives it (`identityProviders`): `getAuthRedirect` starts
//! a round trip to a configured provider, `handlePostAuth` finishes it and hands the client a
//! sealed token standing for the verified identity, which the login (`X-OpenIDM-OAuth-Login`),
//! registration (`oauthRegister`) and account claiming turn back into the provider's profile.
//! The client never supplies a profile itself.
//!
//! A round trip is bound to the browser that started it (a random value in an HttpOnly cookie,
//! also sealed in the start token) and is a flow in the store: the start token works once, on
//! any node; the identity token logs in once. The protocol itself (discovery, the code exchange,
//! the ID token's checks) is `crate::oidc`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferridm_core::fields::FieldSelection;
use ferridm_core::filter::{ComparisonOp, Filter, Literal};
use ferridm_core::{Error, JsonPointer, Result};
use ferridm_plugins::convert::{to_dynamic, to_json};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use super::context::RequestContext;
use super::managed::{ManagedObjects, QueryRequest};
use super::storage_error;
use crate::config::identity_providers::{PropertyMapping, ProviderConfig};
use crate::oidc::SocialError;
use crate::resource::{Method, Params, Reply, Request, ResourcePath};
use crate::sealed;

/// The purpose start tokens (`getAuthRedirect`) are sealed for.
const START_PURPOSE: &str = "ferridm-social-start";
/// The purpose identity tokens (`handlePostAuth`) are sealed for.
const IDENTITY_PURPOSE: &str = "ferridm-social-identity";
/// The cookie binding a round trip to the browser that started it.
pub const BINDING_COOKIE: &str = "ferridm-social";
/// How long a round trip at the provider may take, in seconds.
const START_TTL: u64 = 600;
/// How long a verified identity may be used to log in or register, in seconds.
const IDENTITY_TTL: u64 = 600;
/// The flow step of a start token and of the identity token that follows it.
const STARTED: i64 = 1;
const VERIFIED: i64 = 2;

/// The metadata property recording, per provider, the subject a user is linked to.
const LINKS_META: &str = "idps";

/// OpenID Connect's standard claims onto IDM's user, for providers without a `propertyMap`.
const STANDARD_MAP: [(&str, &str); 4] = [
    ("given_name", "givenName"),
    ("family_name", "sn"),
    ("email", "mail"),
    ("preferred_username", "userName"),
];

/// What a start token carries (sealed: it holds the PKCE verifier).
#[derive(Serialize, Deserialize)]
struct PendingSignIn {
    flow: String,
    provider: String,
    state: String,
    nonce: String,
    verifier: String,
    binding: String,
}

/// A provider identity verified by a round trip, as an identity token carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifiedIdentity {
    flow: String,
    /// The provider's name.
    pub provider: String,
    /// The account at the provider (its `authenticationIdKey` claim).
    pub subject: String,
    /// The profile normalized to user properties (`propertyMap`, then the mapping script).
    pub user: Map<String, Value>,
    /// The provider's claims as verified.
    pub claims: Map<String, Value>,
}

impl VerifiedIdentity {
    /// The `_ref` of the user's `idps` link to this identity.
    pub fn link_ref(&self) -> String {
        link_ref(&self.provider, &self.subject)
    }

    /// The `idps` entry linking a user to this identity (IDM's relationship shape).
    pub fn link(&self) -> Value {
        json!({
            "_ref": self.link_ref(),
            "_refResourceCollection": format!("managed/{}", self.provider),
            "_refResourceId": self.subject,
            "_refProperties": {"provider": self.provider, "subject": self.subject}
        })
    }

    /// The e-mail address the provider vouches for (`email` with `email_verified: true`).
    pub fn verified_email(&self) -> Option<&str> {
        let verified = self.claims.get("email_verified").is_some_and(|flag| {
            flag.as_bool() == Some(true) || flag.as_str().is_some_and(|text| text.eq_ignore_ascii_case("true"))
        });
        verified
            .then(|| self.claims.get("email").and_then(Value::as_str))
            .flatten()
    }
}

fn link_ref(provider: &str, subject: &str) -> String {
    format!("managed/{provider}/{subject}")
}

/// `GET identityProviders` and the `providers` of `GET authentication`: the enabled providers
/// without secrets.
pub fn enabled_providers(ctx: &RequestContext) -> Vec<Value> {
    ctx.generation
        .identity_providers
        .all_enabled()
        .map(ProviderConfig::public_view)
        .collect()
}

fn provider<'a>(ctx: &'a RequestContext, body: &Value) -> Result<&'a ProviderConfig> {
    let name = body
        .get("provider")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::bad_request("provider is required"))?;
    ctx.generation
        .identity_providers
        .enabled(name)
        .ok_or_else(|| Error::bad_request(format!("Identity provider {name} is not configured")))
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The client-facing error for a failed provider call. Details of a refused token go to the
/// log; the client learns which check failed, never a token.
fn provider_error(provider: &str, error: SocialError) -> Error {
    tracing::warn!(provider, %error, "social sign-in failed");
    match error {
        SocialError::Unreachable(_) => Error::Unavailable(format!("Identity provider {provider} cannot be reached")),
        SocialError::Refused(reason) => Error::bad_request(format!("Identity provider {provider} refused: {reason}")),
        SocialError::Malformed(reason) => Error::Unavailable(format!(
            "Identity provider {provider} answered something unusable: {reason}"
        )),
        SocialError::InvalidToken(reason) => Error::Custom {
            code: 401,
            message: format!("The ID token from {provider} is not valid: {reason}"),
            detail: None,
        },
        SocialError::HostNotAllowed(host) => Error::Unavailable(format!(
            "Identity provider {provider} names a host that is not allowed ({host}): list it in allowedHosts"
        )),
    }
}

/// `identityProviders?_action=getAuthRedirect`: the provider's authorization URL (`redirect`)
/// and the start token the client keeps (`token`); the response binds the round trip to the
/// browser with a cookie.
pub fn get_auth_redirect(ctx: &RequestContext, body: &Value) -> Result<Reply> {
    let provider = provider(ctx, body)?;
    let now = ctx.state.clock.now_seconds();
    let begun = ctx
        .state
        .social
        .begin(provider, now)
        .map_err(|error| provider_error(&provider.provider, error))?;
    let pending = PendingSignIn {
        flow: uuid::Uuid::new_v4().to_string(),
        provider: provider.provider.clone(),
        state: begun.state,
        nonce: begun.nonce,
        verifier: begun.verifier,
        binding: random_token(),
    };
    let expires = now + START_TTL;
    let token = sealed::seal(&ctx.state.secrets.token_key, START_PURPOSE, &pending, expires)
        .ok_or_else(|| Error::Internal("cannot seal the sign-in".into()))?;
    ctx.state
        .store
        .record_flow_step(&pending.flow, STARTED, expires as i64, now as i64)
        .map_err(storage_error)?;
    let mut reply = Reply::ok(json!({"redirect": begun.url, "token": token}));
    reply.headers.push((
        "Set-Cookie".to_owned(),
        format!(
            "{BINDING_COOKIE}={}; Path=/openidm; Max-Age={START_TTL}; SameSite=Lax; HttpOnly",
            pending.binding
        ),
    ));
    Ok(reply)
}

/// A parameter of the provider's return: the UI posts each as an array of strings.
fn parameter<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    match body.get(name)? {
        Value::String(text) => Some(text),
        Value::Array(values) => values.first().and_then(Value::as_str),
        _ => None,
    }
}

/// `identityProviders?_action=handlePostAuth`: checks the return against the start token
/// (`X-OpenIDM-DataStoreToken`) and the browser's cookie, spends the start token, exchanges the
/// code, verifies the identity and answers with the identity token (`token`).
pub fn handle_post_auth(ctx: &RequestContext, body: &Value) -> Result<Reply> {
    let caller = ctx.client_caller()?;
    let invalid = || Error::bad_request("The sign-in is not valid or has expired; start it again");
    let token = caller
        .data_store_token
        .as_deref()
        .ok_or_else(|| Error::bad_request("X-OpenIDM-DataStoreToken is required"))?;
    let now = ctx.state.clock.now_seconds();
    let pending: PendingSignIn =
        sealed::open(&ctx.state.secrets.token_key, START_PURPOSE, token, now).map_err(|_| invalid())?;
    if !caller
        .social_binding
        .as_deref()
        .is_some_and(|binding| same(binding, &pending.binding))
    {
        return Err(Error::bad_request("The sign-in was started in another browser"));
    }
    let provider = ctx
        .generation
        .identity_providers
        .enabled(&pending.provider)
        .ok_or_else(|| Error::bad_request(format!("Identity provider {} is not configured", pending.provider)))?;
    if !parameter(body, "state").is_some_and(|state| same(state, &pending.state)) {
        return Err(Error::bad_request("The sign-in state does not match"));
    }
    // From here on the start token is spent, whatever the outcome.
    let claimed = ctx
        .state
        .store
        .claim_flow_step(&pending.flow, STARTED)
        .map_err(storage_error)?;
    if !claimed {
        return Err(Error::bad_request("The sign-in has already been completed"));
    }
    if let Some(error) = parameter(body, "error") {
        let description = parameter(body, "error_description").map_or_else(String::new, |text| format!(": {text}"));
        return Err(Error::bad_request(format!(
            "Identity provider {} refused: {error}{description}",
            provider.provider
        )));
    }
    let code = parameter(body, "code").ok_or_else(|| Error::bad_request("The provider's return has no code"))?;
    let profile = ctx
        .state
        .social
        .complete(provider, code, &pending.verifier, &pending.nonce, now)
        .map_err(|error| provider_error(&provider.provider, error))?;
    let user = normalize(ctx, provider, &profile.claims)?;
    let identity = VerifiedIdentity {
        flow: pending.flow,
        provider: provider.provider.clone(),
        subject: profile.subject,
        user,
        claims: profile.claims,
    };
    let expires = now + IDENTITY_TTL;
    ctx.state
        .store
        .record_flow_step(&identity.flow, VERIFIED, expires as i64, now as i64)
        .map_err(storage_error)?;
    let token = sealed::seal(&ctx.state.secrets.token_key, IDENTITY_PURPOSE, &identity, expires)
        .ok_or_else(|| Error::Internal("cannot seal the identity".into()))?;
    tracing::info!(provider = %identity.provider, "social identity verified");
    let mut reply = Reply::ok(json!({"token": token}));
    reply.headers.push((
        "Set-Cookie".to_owned(),
        format!("{BINDING_COOKIE}=; Path=/openidm; Max-Age=0; SameSite=Lax; HttpOnly"),
    ));
    Ok(reply)
}

/// The provider's claims as user properties: its `propertyMap` (OpenID Connect's standard claims
/// when it has none), then its mapping script's `normalize(profile, claims)`.
fn normalize(
    ctx: &RequestContext,
    provider: &ProviderConfig,
    claims: &Map<String, Value>,
) -> Result<Map<String, Value>> {
    let standard: Vec<PropertyMapping>;
    let mappings = if provider.property_map.is_empty() {
        standard = STANDARD_MAP
            .iter()
            .map(|(source, target)| PropertyMapping {
                source: (*source).to_owned(),
                target: (*target).to_owned(),
            })
            .collect();
        &standard
    } else {
        &provider.property_map
    };
    let mut user = Map::new();
    for mapping in mappings {
        if let Some(value) = claims.get(&mapping.source).filter(|value| !value.is_null()) {
            user.insert(mapping.target.clone(), value.clone());
        }
    }
    let Some(script) = ctx.generation.social_scripts.get(&provider.provider) else {
        return Ok(user);
    };
    let arguments = vec![
        to_dynamic(&Value::Object(user)),
        to_dynamic(&Value::Object(claims.clone())),
    ];
    let mapped = script
        .call(&ctx.generation.script_limits, "normalize", arguments)
        .map_err(|error| {
            tracing::error!(provider = %provider.provider, %error, "social mapping script failed");
            Error::Internal(format!("The mapping script of {} failed", provider.provider))
        })?;
    match to_json(&mapped) {
        Value::Object(user) => Ok(user),
        other => {
            tracing::error!(provider = %provider.provider, returned = %other, "social mapping script returned no map");
            Err(Error::Internal(format!(
                "The mapping script of {} must return a map",
                provider.provider
            )))
        }
    }
}

/// Opens an identity token (`X-OpenIDM-DataStoreToken` or a registration's `clientToken`).
pub fn open_identity(ctx: &RequestContext, token: &str) -> Result<VerifiedIdentity> {
    sealed::open(
        &ctx.state.secrets.token_key,
        IDENTITY_PURPOSE,
        token,
        ctx.state.clock.now_seconds(),
    )
    .map_err(|_| Error::bad_request("The social identity is not valid or has expired; sign in with the provider again"))
}

/// Spends an identity token's login: true for exactly one login per verified identity.
pub fn spend_login(ctx: &RequestContext, identity: &VerifiedIdentity) -> Result<bool> {
    ctx.state
        .store
        .claim_flow_step(&identity.flow, VERIFIED)
        .map_err(storage_error)
}

/// The users of `type_name` linked to `identity` (at most `limit`), with `fields`. The lookup
/// goes through the subject each user's metadata records per provider (`_meta/idps/<provider>`,
/// one indexed scalar, see [`record_link`]); a user counts only while its `idps` still holds the
/// link, so removing the link unlinks the identity.
pub fn linked_users(
    ctx: &RequestContext,
    identity: &VerifiedIdentity,
    type_name: &str,
    fields: &[&str],
    limit: u32,
) -> Result<Vec<Value>> {
    let objects = ManagedObjects::new(ctx, type_name)?;
    let request = QueryRequest {
        filter: Filter::Comparison {
            field: JsonPointer::from_segments(["_meta", LINKS_META, identity.provider.as_str()]),
            op: ComparisonOp::Eq,
            value: Literal::String(identity.subject.clone()),
        },
        ids_only: false,
        sort: Vec::new(),
        paging: ferridm_core::query::Paging {
            page_size: Some(limit),
            ..Default::default()
        },
    };
    let asked_for_links = fields.contains(&"idps");
    let selection = FieldSelection::parse(fields.iter().copied().chain(["idps"]));
    let link = identity.link_ref();
    let mut linked = objects.query(&request, &selection)?.result;
    linked.retain(|user| linked_refs(user).contains(&link.as_str()));
    if !asked_for_links {
        for user in &mut linked {
            if let Some(user) = user.as_object_mut() {
                user.remove("idps");
            }
        }
    }
    Ok(linked)
}

/// Records in the metadata of `managed/<type_name>/<id>` that the user is linked to `identity`
/// (`_meta/idps/<provider>` = subject), which is how [`linked_users`] finds it.
pub fn record_link(ctx: &RequestContext, type_name: &str, id: &str, identity: &VerifiedIdentity) -> Result<()> {
    let object_type = ctx
        .generation
        .managed
        .get(type_name)
        .ok_or_else(|| Error::NotFound(format!("Managed object type {type_name} not found")))?;
    ctx.state
        .store
        .update_meta(type_name, id, &object_type.index, |meta| {
            let links = meta.entry(LINKS_META).or_insert_with(|| json!({}));
            if !links.is_object() {
                *links = json!({});
            }
            links[identity.provider.as_str()] = json!(identity.subject);
        })
        .map(|_| ())
        .map_err(storage_error)
}

/// For registration (`openidm::service("socialIdentity", #{token})`): the verified identity of
/// an identity token that no user is linked to yet, as `{provider, subject, user, link,
/// email}` (`email`: the address the provider vouches for, or null).
pub fn unlinked_identity(ctx: &RequestContext, token: &str) -> Result<Value> {
    let identity = open_identity(ctx, token)?;
    if !linked_users(ctx, &identity, "user", &["_id"], 1)?.is_empty() {
        return Err(Error::Conflict(format!(
            "This {} identity is already linked to an account: sign in with it",
            identity.provider
        )));
    }
    Ok(json!({
        "provider": identity.provider,
        "subject": identity.subject,
        "user": identity.user,
        "link": identity.link(),
        "email": identity.verified_email(),
    }))
}

/// `identityProviders?_action=normalizeProfile`: a linked identity's profile (the body's
/// claims, with `provider`) as user properties, for display.
pub fn normalize_profile(ctx: &RequestContext, body: &Value) -> Result<Value> {
    let provider = provider(ctx, body)?;
    let mut claims = body.as_object().cloned().unwrap_or_default();
    claims.remove("provider");
    normalize(ctx, provider, &claims).map(Value::Object)
}

/// The one active account of `type_name` whose e-mail is the address the identity's provider
/// verified, for account claiming (with its password hash and links, read internally).
fn claimable_account(ctx: &RequestContext, identity: &VerifiedIdentity, type_name: &str) -> Result<Value> {
    let email = identity.verified_email().ok_or_else(|| {
        Error::bad_request(format!(
            "Identity provider {} did not verify an e-mail address: register instead",
            identity.provider
        ))
    })?;
    let objects = ManagedObjects::new(ctx, type_name)?;
    let request = QueryRequest {
        filter: Filter::Comparison {
            field: JsonPointer::from_segments(["mail"]),
            op: ComparisonOp::Eq,
            value: Literal::String(email.to_owned()),
        },
        ids_only: false,
        sort: Vec::new(),
        paging: ferridm_core::query::Paging {
            page_size: Some(2),
            ..Default::default()
        },
    };
    let fields = FieldSelection::parse(["*", "password", "idps", "accountStatus"]);
    let found = objects.query(&request, &fields)?.result;
    match found.as_slice() {
        [account]
            if account
                .get("accountStatus")
                .and_then(Value::as_str)
                .is_none_or(|status| status == "active") =>
        {
            Ok(account.clone())
        }
        _ => Err(Error::bad_request(format!(
            "No account to claim with {email}: register instead"
        ))),
    }
}

fn linked_refs(account: &Value) -> Vec<&str> {
    account
        .get("idps")
        .and_then(Value::as_array)
        .map(|links| {
            links
                .iter()
                .filter_map(|link| link.get("_ref").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

fn refuse_linked(ctx: &RequestContext, identity: &VerifiedIdentity) -> Result<()> {
    if linked_users(ctx, identity, "user", &["_id"], 1)?.is_empty() {
        Ok(())
    } else {
        Err(Error::Conflict(format!(
            "This {} identity is already linked to an account: sign in with it",
            identity.provider
        )))
    }
}

/// For account claiming (`openidm::service("socialClaimCandidate", #{token, path})`): what the
/// account with the identity's verified e-mail must prove: `{mail, hasPassword, providers}`
/// (`providers`: the providers already linked to it, `{provider}` each).
pub fn claim_candidate(ctx: &RequestContext, token: &str, type_name: &str) -> Result<Value> {
    let identity = open_identity(ctx, token)?;
    refuse_linked(ctx, &identity)?;
    let account = claimable_account(ctx, &identity, type_name)?;
    let providers: Vec<Value> = linked_refs(&account)
        .into_iter()
        .filter_map(|link| link.strip_prefix("managed/")?.split('/').next())
        .map(|provider| json!({"provider": provider}))
        .collect();
    Ok(json!({
        "mail": identity.verified_email(),
        "hasPassword": account.get("password").is_some_and(|password| !password.is_null()),
        "providers": providers,
    }))
}

/// The proof an account offers in a claim.
#[derive(Debug, Clone, Copy)]
pub enum ClaimProof<'a> {
    /// The account's password.
    Password(&'a str),
    /// The identity token of a round trip with a provider already linked to the account.
    LinkedIdentity(&'a str),
}

/// For account claiming (`openidm::service("socialClaim", …)`): links the identity to the
/// account with its verified e-mail once the account proved itself. A wrong password counts
/// against the account's lockout like a failed login.
pub fn claim(ctx: &RequestContext, token: &str, type_name: &str, proof: ClaimProof<'_>) -> Result<()> {
    let identity = open_identity(ctx, token)?;
    refuse_linked(ctx, &identity)?;
    let account = claimable_account(ctx, &identity, type_name)?;
    let id = account.get("_id").and_then(Value::as_str).unwrap_or_default();
    let refused = || Error::Forbidden("The account could not be verified".into());
    let proven = match proof {
        ClaimProof::Password(password) => {
            let user_name = account.get("userName").and_then(Value::as_str).unwrap_or_default();
            super::login::verified_user_id(ctx, user_name, password)?.as_deref() == Some(id)
        }
        ClaimProof::LinkedIdentity(linked) => {
            let linked = open_identity(ctx, linked).map_err(|_| refused())?;
            linked_refs(&account).contains(&linked.link_ref().as_str()) && spend_login(ctx, &linked)?
        }
    };
    if !proven {
        return Err(refused());
    }
    let request = Request::internal(
        Method::Patch,
        ResourcePath::parse(&format!("managed/{type_name}/{id}")),
        Params::default(),
        Some(json!([{"operation": "add", "field": "/idps/-", "value": identity.link()}])),
    );
    let operation = request.operation()?;
    super::router::dispatch(&mut ctx.as_internal(), &request, &operation)?;
    record_link(ctx, type_name, id, &identity)?;
    tracing::info!(provider = %identity.provider, user = %id, "social identity linked to an existing account");
    Ok(())
}
