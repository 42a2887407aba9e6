//! The login: who a request's caller is. A valid `session-jwt` cookie wins; then a sealed
//! `X-OpenIDM-Jwt`; then the presented credentials, checked against the authentication modules
//! in their configured order — the static anonymous user, managed users through the credential
//! query (active accounts only, with lockout counted in the store), and internal users.
//! Verified credentials are cached so that header authentication does not run argon2 on every
//! request. Re-authentication checks a logged-in caller's password again.

use std::sync::Arc;

use ferridm_core::fields::FieldSelection;
use ferridm_core::{Error, Result};
use ferridm_store::LockoutRule;
use serde_json::Value;

use super::context::{ClientCaller, RequestContext};
use super::managed::query::predefined_query;
use super::managed::{ManagedObjects, QueryRequest};
use super::storage_error;
use crate::auth::session::Session;
use crate::auth::{
    ADMIN_USER, ANONYMOUS_USER, Authorization, Credentials, ROLE_ADMIN, ROLE_AUTHORIZED, SecurityContext,
};
use crate::config::authentication::{AuthModule, ModuleKind};
use crate::generation::Generation;
use crate::resource::path::managed_type;
use crate::secrets::credential_cache::Lookup;
use crate::secrets::password::{StoredPassword, argon2id_crypto};
use crate::state::AppState;

/// The purpose auto-login credential tokens (`X-OpenIDM-Jwt`) are sealed for.
pub const CREDENTIAL_PURPOSE: &str = "ferridm-credential";

/// What a request presents to prove who it is (read from its headers by the edge).
#[derive(Debug, Clone, Default)]
pub struct Presented {
    /// The `session-jwt` cookie.
    pub session_token: Option<String>,
    /// `X-OpenIDM-Jwt`: sealed credentials from an auto-login.
    pub credential_token: Option<String>,
    /// The IDM headers or HTTP Basic credentials.
    pub credentials: Option<Credentials>,
    /// The client address (from the configured forwarding header when there is one).
    pub ip: String,
    /// The address of the connection's peer.
    pub peer_ip: String,
    /// `X-OpenIDM-NoSession: true`.
    pub no_session: bool,
    /// `X-OpenIDM-Reauth-Password`, decoded.
    pub reauth_password: Option<String>,
    /// `X-OpenIDM-OAuth-Login: true`: log in as the user linked to the social identity in
    /// `data_store_token`.
    pub oauth_login: bool,
    /// `X-OpenIDM-DataStoreToken`: a social sign-in's start or identity token.
    pub data_store_token: Option<String>,
    /// The cookie binding a social sign-in to this browser.
    pub social_binding: Option<String>,
}

/// What an unverified caller offers as proof.
#[derive(Debug)]
enum Proof {
    /// A user name and password.
    Password(Credentials),
    /// A social identity token (`X-OpenIDM-OAuth-Login`).
    SocialIdentity(String),
}

/// A caller still to be verified (blocking work: the store and argon2).
#[derive(Debug)]
pub struct Unverified {
    presented: Presented,
    proof: Proof,
}

impl Unverified {
    /// The user name the credentials carry (empty for a social login, whose user is known only
    /// once verified).
    pub fn username(&self) -> &str {
        match &self.proof {
            Proof::Password(credentials) => &credentials.username,
            Proof::SocialIdentity(_) => "",
        }
    }

    /// The client address.
    pub fn ip(&self) -> &str {
        &self.presented.ip
    }
}

/// What the login decided without blocking.
#[derive(Debug)]
pub enum Identified {
    /// The caller is known.
    Known(ClientCaller),
    /// Credentials must be checked ([`verify`]).
    Unverified(Unverified),
}

fn client(presented: Presented, session: Session, by_credentials: bool) -> ClientCaller {
    ClientCaller {
        session,
        by_credentials,
        ip: presented.ip,
        reauth_password: presented.reauth_password,
        logout: false,
        no_session: presented.no_session,
        data_store_token: presented.data_store_token,
        social_binding: presented.social_binding,
    }
}

/// Identifies a caller as far as possible without blocking: a valid session cookie, the static
/// user, or an internal user whose credentials are cached. No usable session and no valid
/// credentials is a 401.
pub fn identify(state: &AppState, generation: &Generation, presented: Presented) -> Result<Identified> {
    let now = state.clock.now_seconds();
    if let Some(session) = presented
        .session_token
        .as_deref()
        .and_then(|token| Session::open(&state.secrets.session_key, token, now))
    {
        return Ok(Identified::Known(client(presented, session, false)));
    }
    if presented.oauth_login {
        let token = presented.data_store_token.clone().ok_or(Error::Unauthorized)?;
        return Ok(Identified::Unverified(Unverified {
            presented,
            proof: Proof::SocialIdentity(token),
        }));
    }
    let credentials = match &presented.credential_token {
        Some(token) => crate::sealed::open::<Credentials>(&state.secrets.token_key, CREDENTIAL_PURPOSE, token, now)
            .map_err(|_| Error::Unauthorized)?,
        None => presented.credentials.clone().ok_or(Error::Unauthorized)?,
    };
    match try_without_blocking(state, generation, &credentials, &presented.peer_ip) {
        Some(Some(context)) => {
            let session = Session::start(context, &generation.authentication.session, now);
            Ok(Identified::Known(client(presented, session, true)))
        }
        Some(None) => Err(Error::Unauthorized),
        None => Ok(Identified::Unverified(Unverified {
            presented,
            proof: Proof::Password(credentials),
        })),
    }
}

/// Checks credentials [`identify`] could not decide (blocking: may query the store and run
/// argon2); refused credentials are a 401.
pub fn verify(
    state: &Arc<AppState>,
    generation: &Arc<Generation>,
    unverified: Unverified,
    transaction_id: &str,
) -> Result<ClientCaller> {
    let mut ctx = RequestContext::internal(Arc::clone(state), Arc::clone(generation));
    transaction_id.clone_into(&mut ctx.transaction_id);
    let context = match &unverified.proof {
        Proof::Password(credentials) => verify_credentials(&ctx, credentials, Some(&unverified.presented.peer_ip))?,
        Proof::SocialIdentity(token) => social_user(&ctx, token)?,
    }
    .ok_or(Error::Unauthorized)?;
    let mut session = Session::start(context, &generation.authentication.session, state.clock.now_seconds());
    if !unverified.presented.no_session {
        session.epoch = session_epoch(state, &session.context)?;
    }
    Ok(client(unverified.presented, session, true))
}

/// The current session epoch of a managed user's account (`None` for other callers, whose
/// sessions are not bound to an account).
pub fn session_epoch(state: &AppState, context: &SecurityContext) -> Result<Option<i64>> {
    if !context.is_managed_user() {
        return Ok(None);
    }
    state
        .store
        .session_epoch(&context.own_path())
        .map(Some)
        .map_err(storage_error)
}

/// Refuses (401) a session cookie of a managed user whose account's session epoch has moved
/// since the session started: the password changed, the account was deactivated, deleted (and
/// perhaps re-created under the same id), or logged out.
pub fn check_session(state: &AppState, caller: &ClientCaller) -> Result<()> {
    if caller.by_credentials {
        return Ok(());
    }
    let current = session_epoch(state, &caller.session.context)?;
    if current.is_some() && current != Some(caller.session.epoch.unwrap_or(0)) {
        return Err(Error::Unauthorized);
    }
    Ok(())
}

/// Ends every session of the account at `path` (`managed/<type>/<id>`), on every node.
pub fn end_sessions(ctx: &RequestContext, path: &str) -> Result<i64> {
    ctx.state.store.advance_session_epoch(path).map_err(storage_error)
}

/// Internal user names are reserved: the managed-user module never looks them up.
fn is_internal_user(name: &str) -> bool {
    name == ADMIN_USER || name == ANONYMOUS_USER
}

fn static_user(module: &AuthModule, credentials: &Credentials) -> Option<SecurityContext> {
    let username = module.username.as_deref()?;
    let password = module.password.as_deref()?;
    (credentials.username == username && credentials.password == password).then(|| SecurityContext {
        authentication_id: credentials.username.clone(),
        authorization: Authorization {
            id: username.to_owned(),
            component: module.resource.clone(),
            roles: module.default_roles.clone(),
            module_id: ModuleKind::StaticUser.module_id().to_owned(),
            query_id: None,
            protected_attribute_list: None,
            processes_required: None,
            required_profile_processes: None,
        },
    })
}

fn admin_context(module: &AuthModule, credentials: &Credentials) -> SecurityContext {
    let mut roles = vec![ROLE_ADMIN.to_owned(), ROLE_AUTHORIZED.to_owned()];
    roles.extend(
        module
            .default_roles
            .iter()
            .filter(|r| !roles.contains(r))
            .cloned()
            .collect::<Vec<_>>(),
    );
    SecurityContext {
        authentication_id: credentials.username.clone(),
        authorization: Authorization {
            id: ADMIN_USER.to_owned(),
            component: module.resource.clone(),
            roles,
            module_id: ModuleKind::InternalUser.module_id().to_owned(),
            query_id: module.query_id.clone(),
            protected_attribute_list: None,
            processes_required: None,
            required_profile_processes: None,
        },
    }
}

/// IDM's `internal/user/anonymous` (password `anonymous`), for deployments that disable the
/// static user module.
fn anonymous_internal(module: &AuthModule, credentials: &Credentials) -> Option<SecurityContext> {
    (credentials.username == ANONYMOUS_USER && credentials.password == ANONYMOUS_USER).then(|| SecurityContext {
        authentication_id: credentials.username.clone(),
        authorization: Authorization {
            id: ANONYMOUS_USER.to_owned(),
            component: module.resource.clone(),
            roles: vec![crate::auth::ROLE_REG.to_owned()],
            module_id: ModuleKind::InternalUser.module_id().to_owned(),
            query_id: module.query_id.clone(),
            protected_attribute_list: None,
            processes_required: None,
            required_profile_processes: None,
        },
    })
}

/// What can be decided without blocking: the static user, and an internal user whose
/// credentials are cached (and who is exempt from the lockout at this peer address). `None`
/// means the blocking check must run.
fn try_without_blocking(
    state: &AppState,
    generation: &Generation,
    credentials: &Credentials,
    peer: &str,
) -> Option<Option<SecurityContext>> {
    for module in &generation.authentication.modules {
        match module.kind {
            ModuleKind::StaticUser => {
                if let Some(context) = static_user(module, credentials) {
                    return Some(Some(context));
                }
            }
            ModuleKind::ManagedUser if !is_internal_user(&credentials.username) => return None,
            ModuleKind::ManagedUser => {}
            ModuleKind::InternalUser => {
                if credentials.username == ANONYMOUS_USER {
                    match anonymous_internal(module, credentials) {
                        Some(context) => return Some(Some(context)),
                        None => continue,
                    }
                }
                if credentials.username != ADMIN_USER {
                    continue;
                }
                if generation.authentication.lockout.counts_internal_user_from(peer) {
                    return None;
                }
                let stored = &state.secrets.admin_password_hash;
                // A renewal is left to the full check, which claims it.
                let lookup = state.credentials.peek(
                    &credentials.username,
                    &credentials.password,
                    stored,
                    state.clock.now_millis(),
                );
                if lookup == Lookup::Verified {
                    return Some(Some(admin_context(module, credentials)));
                }
                return None;
            }
        }
    }
    Some(None)
}

/// Checks `credentials` against `stored` for `principal` (no stored password, or one that
/// cannot be checked, costs a decoy check and fails), under the lockout when
/// `lockout_applies`: credentials that verified recently need no new check; any other check
/// counts as a failed attempt first, atomically, so parallel guesses cannot outrun the lockout,
/// and a success clears the count.
fn check_password(
    ctx: &RequestContext,
    principal: &str,
    credentials: &Credentials,
    stored: Option<&StoredPassword>,
    lockout_applies: bool,
) -> Result<bool> {
    let (state, lockout) = (&ctx.state, &ctx.generation.authentication.lockout);
    let counted = lockout_applies && lockout.enabled;
    let failures = if counted {
        state.store.login_failure(principal).map_err(storage_error)?
    } else {
        None
    };
    if failures.is_some_and(|failures| failures.locked_at(ctx.now_millis())) {
        tracing::info!(principal = %principal, "login refused: account locked");
        state.metrics.login_refused_locked();
        return Ok(false);
    }
    let cache = &state.credentials;
    let phc = match stored {
        Some(StoredPassword::Argon2id(phc)) => Some(phc.as_str()),
        _ => None,
    };
    // A renewal checks the password like a miss, and inserts it again.
    let cached = phc.is_some_and(|phc| {
        cache.lookup(&credentials.username, &credentials.password, phc, ctx.now_millis()) == Lookup::Verified
    });
    let mut attempt = None;
    if counted && !cached {
        let rule = LockoutRule {
            max_failures: i64::from(lockout.max_failures.max(1)),
            window_ms: lockout.window_ms(),
            lock_ms: lockout.lock_ms(),
        };
        match state
            .store
            .begin_login_attempt(principal, ctx.now_millis(), rule)
            .map_err(storage_error)?
        {
            Some(after) => attempt = Some(after),
            None => {
                tracing::info!(principal = %principal, "login refused: account locked");
                state.metrics.login_refused_locked();
                return Ok(false);
            }
        }
    }
    let verified = cached
        || match stored {
            Some(StoredPassword::Argon2id(phc)) => ctx.verify_password(&credentials.password, phc)?,
            Some(StoredPassword::Idm(hash)) => ctx.verify_idm_hash(hash, &credentials.password)?,
            Some(StoredPassword::Unusable(_)) | None => {
                ctx.verify_decoy(&credentials.password)?;
                false
            }
        };
    if !verified {
        if attempt.is_some_and(|after| after.locked_at(ctx.now_millis())) {
            tracing::warn!(principal = %principal, "account locked after repeated failed logins");
            state.metrics.account_locked();
            super::audit::authentication(
                state,
                &super::audit::AuthenticationRecord {
                    transaction_id: &ctx.transaction_id,
                    principal: &credentials.username,
                    authenticated: None,
                    ip: "",
                    failure: Some("account locked after repeated failed logins"),
                },
            );
        }
        return Ok(false);
    }
    if let Some(phc) = phc.filter(|_| !cached) {
        cache.insert(&credentials.username, &credentials.password, phc, ctx.now_millis());
    }
    if failures.is_some() || attempt.is_some() {
        state.store.clear_login_failures(principal).map_err(storage_error)?;
    }
    Ok(true)
}

/// The managed user the credential query finds for `username` (active accounts only).
fn find_managed_user(ctx: &RequestContext, module: &AuthModule, username: &str) -> Result<Option<Value>> {
    let type_name = managed_type(&module.resource).unwrap_or("user");
    let objects = ManagedObjects::new(ctx, type_name)?;
    let query_id = module.query_id.as_deref().unwrap_or("credential-query");
    let (filter, _) = predefined_query(query_id, |name| {
        (name == "username" || name == "uid").then_some(username)
    })?;
    let request = QueryRequest {
        filter,
        ids_only: false,
        sort: Vec::new(),
        paging: ferridm_core::query::Paging {
            page_size: Some(2),
            ..Default::default()
        },
    };
    let fields = FieldSelection::parse(["*", module.roles_property.as_str(), module.credential_property.as_str()]);
    let found = objects.query(&request, &fields)?;
    Ok(match found.result.as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    })
}

fn managed_user(
    ctx: &RequestContext,
    module: &AuthModule,
    credentials: &Credentials,
) -> Result<Option<SecurityContext>> {
    let Some(user) = find_managed_user(ctx, module, &credentials.username)? else {
        // An unknown account costs what a real one does.
        ctx.verify_decoy(&credentials.password)?;
        return Ok(None);
    };
    let id = user.get("_id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let principal = format!("{}/{id}", module.resource);
    let stored_value = user.get(&module.credential_property);
    let stored = stored_value.and_then(StoredPassword::from_crypto);
    if let Some(StoredPassword::Unusable(reason)) = &stored {
        tracing::warn!(user = %principal, "login refused: {reason}; the password must be set again");
    }
    if !check_password(ctx, &principal, credentials, stored.as_ref(), true)? {
        return Ok(None);
    }
    if let (Some(StoredPassword::Idm(_)), Some(previous)) = (&stored, stored_value) {
        upgrade_idm_hash(ctx, module, &id, previous, credentials);
    }
    Ok(Some(managed_context(
        ctx,
        module,
        &user,
        id,
        credentials.username.clone(),
        ModuleKind::ManagedUser.module_id(),
    )))
}

/// The security context of a verified managed user: the roles stored on the user plus the
/// module's defaults, and the type's protected properties.
fn managed_context(
    ctx: &RequestContext,
    module: &AuthModule,
    user: &Value,
    id: String,
    authentication_id: String,
    module_id: &str,
) -> SecurityContext {
    let mut roles: Vec<String> = user
        .get(&module.roles_property)
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("_ref").and_then(Value::as_str).or_else(|| r.as_str()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for role in &module.default_roles {
        if !roles.contains(role) {
            roles.push(role.clone());
        }
    }
    let protected = ctx
        .generation
        .managed
        .get(managed_type(&module.resource).unwrap_or("user"))
        .map(|object_type| object_type.protected.clone())
        .unwrap_or_default();
    SecurityContext {
        authentication_id,
        authorization: Authorization {
            id,
            component: module.resource.clone(),
            roles,
            module_id: module_id.to_owned(),
            query_id: module.query_id.clone(),
            protected_attribute_list: Some(protected),
            processes_required: None,
            required_profile_processes: None,
        },
    }
}

/// The module id of logins through a social identity provider (IDM's).
const SOCIAL_MODULE_ID: &str = "SOCIAL_PROVIDERS";

/// Logs in the active managed user linked to a verified social identity (the identity token of
/// `identityProviders?_action=handlePostAuth`), once per token. An identity linked to no user
/// (or to several) logs nobody in: the client goes on to registration or account claiming.
fn social_user(ctx: &RequestContext, token: &str) -> Result<Option<SecurityContext>> {
    let Ok(identity) = super::social::open_identity(ctx, token) else {
        return Ok(None);
    };
    let Some(module) = ctx
        .generation
        .authentication
        .modules
        .iter()
        .find(|module| module.kind == ModuleKind::ManagedUser)
    else {
        return Ok(None);
    };
    let fields = ["*", module.roles_property.as_str(), "accountStatus"];
    let type_name = managed_type(&module.resource).unwrap_or("user");
    let found = super::social::linked_users(ctx, &identity, type_name, &fields, 2)?;
    let [user] = found.as_slice() else {
        tracing::info!(provider = %identity.provider, linked = found.len(), "social login refused: no single linked user");
        return Ok(None);
    };
    if user
        .get("accountStatus")
        .and_then(Value::as_str)
        .is_some_and(|status| status != "active")
    {
        tracing::info!(provider = %identity.provider, "social login refused: account not active");
        return Ok(None);
    }
    if !super::social::spend_login(ctx, &identity)? {
        tracing::info!(provider = %identity.provider, "social login refused: identity token already used");
        return Ok(None);
    }
    let id = user.get("_id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let name = user
        .get("userName")
        .and_then(Value::as_str)
        .map_or_else(|| id.clone(), str::to_owned);
    Ok(Some(managed_context(ctx, module, user, id, name, SOCIAL_MODULE_ID)))
}

/// Replaces a verified IDM hash with an argon2id hash of the same password, leaving the
/// revision alone (the user did not change). A concurrent change of the password wins: the
/// replacement only lands while the stored value is still `previous`. The login stands either
/// way; a replacement that fails is logged and tried again at the next login.
fn upgrade_idm_hash(ctx: &RequestContext, module: &AuthModule, id: &str, previous: &Value, credentials: &Credentials) {
    let type_name = managed_type(&module.resource).unwrap_or("user");
    let Some(object_type) = ctx.generation.managed.get(type_name) else {
        return;
    };
    let user = format!("{}/{id}", module.resource);
    let store = &ctx.state.store;
    let replaced = ctx.hash_password(&credentials.password).and_then(|phc| {
        let replacement = argon2id_crypto(phc.clone());
        let property = &module.credential_property;
        let replaced = store
            .replace_secret(type_name, id, property, previous, &replacement, &object_type.index)
            .map_err(storage_error)?;
        Ok(replaced.then_some(phc))
    });
    match replaced {
        Ok(Some(phc)) => {
            tracing::info!(user = %user, "IDM password hash replaced by argon2id");
            ctx.state
                .credentials
                .insert(&credentials.username, &credentials.password, &phc, ctx.now_millis());
        }
        Ok(None) => tracing::info!(user = %user, "IDM password hash changed meanwhile; left as it is"),
        Err(error) => tracing::warn!(user = %user, %error, "IDM password hash kept until the next login"),
    }
}

/// Checks `openidm-admin`'s password, locked out like a managed user unless the connection
/// comes from one of `internalUserExemptAddresses` (`peer` is `None` for re-authentication of
/// an already authenticated caller, which is never counted).
fn internal_admin(
    ctx: &RequestContext,
    module: &AuthModule,
    credentials: &Credentials,
    peer: Option<&str>,
) -> Result<Option<SecurityContext>> {
    let lockout = &ctx.generation.authentication.lockout;
    let lockout_applies = peer.is_some_and(|peer| lockout.counts_internal_user_from(peer));
    let principal = format!("{}/{ADMIN_USER}", module.resource);
    let stored = StoredPassword::Argon2id(ctx.state.secrets.admin_password_hash.clone());
    Ok(
        check_password(ctx, &principal, credentials, Some(&stored), lockout_applies)?
            .then(|| admin_context(module, credentials)),
    )
}

/// Tries every module in order (blocking: may query the store and run argon2).
fn verify_credentials(
    ctx: &RequestContext,
    credentials: &Credentials,
    peer: Option<&str>,
) -> Result<Option<SecurityContext>> {
    for module in &ctx.generation.authentication.modules {
        let found = match module.kind {
            ModuleKind::StaticUser => static_user(module, credentials),
            ModuleKind::ManagedUser if is_internal_user(&credentials.username) => None,
            ModuleKind::ManagedUser => managed_user(ctx, module, credentials)?,
            ModuleKind::InternalUser if credentials.username == ADMIN_USER => {
                internal_admin(ctx, module, credentials, peer)?
            }
            ModuleKind::InternalUser => anonymous_internal(module, credentials),
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The id of the managed user `user_name` when `password` is theirs, checked as a login is
/// (active accounts only, lockout counted).
pub fn verified_user_id(ctx: &RequestContext, user_name: &str, password: &str) -> Result<Option<String>> {
    let credentials = Credentials {
        username: user_name.to_owned(),
        password: password.to_owned(),
    };
    for module in &ctx.generation.authentication.modules {
        if module.kind == ModuleKind::ManagedUser
            && let Some(context) = managed_user(ctx, module, &credentials)?
        {
            return Ok(Some(context.authorization.id));
        }
    }
    Ok(None)
}

/// Verifies the password of an already authenticated caller (re-authentication).
pub fn reverify(ctx: &RequestContext, context: &SecurityContext, password: &str) -> Result<bool> {
    let credentials = Credentials {
        username: context.authentication_id.clone(),
        password: password.to_owned(),
    };
    Ok(verify_credentials(&ctx.as_internal(), &credentials, None)?
        .is_some_and(|verified| verified.authorization.id == context.authorization.id))
}
