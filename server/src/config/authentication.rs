//! `authentication.json` (IDM's format): the session module, the authentication modules in the
//! order they are tried, and ferridm's account lockout. Keys IDM knows but ferridm does not
//! implement are named in a warning rather than silently dropped.

use serde::Deserialize;
use serde_json::Value;

/// Session cookie settings (`sessionModule.properties`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SessionSettings {
    /// Absolute lifetime (fractions allowed).
    pub max_token_life_minutes: f64,
    /// Idle timeout (fractions allowed).
    pub token_idle_time_minutes: f64,
    /// A session cookie (no `Max-Age`) when true.
    pub session_only: bool,
    /// `HttpOnly` on the cookie.
    pub is_http_only: bool,
    /// `Secure` on the cookie.
    pub is_secure: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            max_token_life_minutes: 120.0,
            token_idle_time_minutes: 30.0,
            session_only: true,
            is_http_only: true,
            is_secure: false,
        }
    }
}

/// Failed-login lockout (ferridm's addition to `serverAuthContext`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct LockoutSettings {
    /// Whether failed logins lock accounts.
    pub enabled: bool,
    /// Failures within the window that lock the account.
    pub max_failures: u32,
    /// The counting window (fractions allowed).
    pub window_minutes: f64,
    /// How long the account stays locked (fractions allowed).
    pub lock_minutes: f64,
    /// Internal users (`openidm-admin`) are locked out like managed users, except when they
    /// connect from one of these addresses (the socket's peer, never a forwarded header), so an
    /// operator on the host always has a way in. Default: the loopback addresses.
    pub internal_user_exempt_addresses: Vec<String>,
}

impl LockoutSettings {
    /// True when failed logins of an internal user connecting from `peer` count towards the
    /// lockout (the lockout is on and `peer` is not one of the exempt addresses).
    pub fn counts_internal_user_from(&self, peer: &str) -> bool {
        self.enabled
            && !self
                .internal_user_exempt_addresses
                .iter()
                .any(|address| address == peer)
    }

    /// The counting window in milliseconds.
    pub fn window_ms(&self) -> i64 {
        minutes_to_ms(self.window_minutes)
    }

    /// The lock length in milliseconds.
    pub fn lock_ms(&self) -> i64 {
        minutes_to_ms(self.lock_minutes)
    }
}

#[expect(clippy::cast_possible_truncation, reason = "minutes are small, positive and rounded")]
fn minutes_to_ms(minutes: f64) -> i64 {
    (minutes.max(0.0) * 60_000.0).round() as i64
}

/// Minutes as whole seconds (fractions allowed, negatives are zero).
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "rounded, clamped to zero"
)]
pub fn minutes_to_seconds(minutes: f64) -> u64 {
    (minutes.max(0.0) * 60.0).round() as u64
}

impl Default for LockoutSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_failures: 5,
            window_minutes: 5.0,
            lock_minutes: 15.0,
            internal_user_exempt_addresses: vec!["127.0.0.1".to_owned(), "::1".to_owned()],
        }
    }
}

/// Which credential check a module performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// A fixed user name and password (the anonymous user).
    StaticUser,
    /// Managed users through the credential query.
    ManagedUser,
    /// Internal users (`openidm-admin`).
    InternalUser,
}

impl ModuleKind {
    /// The module id reported in security contexts.
    pub fn module_id(self) -> &'static str {
        match self {
            Self::StaticUser => "STATIC_USER",
            Self::ManagedUser => "MANAGED_USER",
            Self::InternalUser => "INTERNAL_USER",
        }
    }
}

/// One enabled authentication module.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthModule {
    /// What it checks.
    pub kind: ModuleKind,
    /// `queryOnResource` (`managed/user`, `internal/user`).
    pub resource: String,
    /// `queryId`.
    pub query_id: Option<String>,
    /// Roles every principal of this module gets.
    pub default_roles: Vec<String>,
    /// `propertyMapping.userRoles`.
    pub roles_property: String,
    /// `propertyMapping.userCredential`.
    pub credential_property: String,
    /// `propertyMapping.authenticationId` (as reported).
    pub authentication_id_property: String,
    /// STATIC_USER's user name.
    pub username: Option<String>,
    /// STATIC_USER's password.
    pub password: Option<String>,
}

/// The parsed `authentication.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticationConfig {
    /// Session cookie settings.
    pub session: SessionSettings,
    /// Enabled modules, in order.
    pub modules: Vec<AuthModule>,
    /// Lockout settings.
    pub lockout: LockoutSettings,
    /// Header carrying the client address (`clientIPHeader`), if configured.
    pub client_ip_header: Option<String>,
}

impl Default for AuthenticationConfig {
    fn default() -> Self {
        let module = |kind: ModuleKind, resource: &str, query_id: Option<&str>, roles: &[&str]| AuthModule {
            kind,
            resource: resource.to_owned(),
            query_id: query_id.map(str::to_owned),
            default_roles: roles.iter().map(|role| (*role).to_owned()).collect(),
            roles_property: "authzRoles".to_owned(),
            credential_property: "password".to_owned(),
            authentication_id_property: "username".to_owned(),
            username: (kind == ModuleKind::StaticUser).then(|| "anonymous".to_owned()),
            password: (kind == ModuleKind::StaticUser).then(|| "anonymous".to_owned()),
        };
        Self {
            session: SessionSettings::default(),
            modules: vec![
                module(
                    ModuleKind::StaticUser,
                    "internal/user",
                    None,
                    &["internal/role/openidm-reg"],
                ),
                module(ModuleKind::ManagedUser, "managed/user", Some("credential-query"), &[]),
                module(
                    ModuleKind::InternalUser,
                    "internal/user",
                    Some("credential-internaluser-query"),
                    &[],
                ),
            ],
            lockout: LockoutSettings::default(),
            client_ip_header: None,
        }
    }
}

/// `authentication.json` as written (IDM's keys); unknown keys are collected to be named in a
/// warning.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    server_auth_context: ServerAuthContext,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerAuthContext {
    #[serde(default)]
    session_module: Option<SessionModule>,
    #[serde(default)]
    account_lockout: Option<LockoutSettings>,
    auth_modules: Vec<DeclaredModule>,
}

#[derive(Debug, Deserialize)]
struct SessionModule {
    #[serde(default)]
    properties: Option<SessionSettings>,
}

#[derive(Debug, Deserialize)]
struct DeclaredModule {
    name: String,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    #[serde(default)]
    properties: ModuleProperties,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModuleProperties {
    query_on_resource: Option<String>,
    query_id: Option<String>,
    #[serde(default)]
    property_mapping: PropertyMapping,
    #[serde(default)]
    default_user_roles: Vec<String>,
    username: Option<String>,
    password: Option<String>,
    /// Accepted as IDM writes it; ferridm builds the context itself.
    #[serde(default, rename = "augmentSecurityContext")]
    _augment_security_context: Option<serde_json::Value>,
    #[serde(rename = "clientIPHeader")]
    client_ip_header: Option<String>,
    #[serde(flatten)]
    unknown: serde_json::Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PropertyMapping {
    user_roles: Option<String>,
    user_credential: Option<String>,
    authentication_id: Option<String>,
}

impl AuthenticationConfig {
    /// Parses the document; returns the configuration and the names of keys it ignores.
    pub fn from_json(document: &Value) -> Result<(Self, Vec<String>), String> {
        let document = Document::deserialize(document).map_err(|error| error.to_string())?;
        let context = document.server_auth_context;
        let mut ignored = Vec::new();
        let mut modules = Vec::new();
        let mut client_ip_header = None;
        for (index, declared) in context.auth_modules.into_iter().enumerate() {
            let location = format!("serverAuthContext.authModules[{index}]");
            if !declared.enabled {
                continue;
            }
            let kind = match declared.name.as_str() {
                "STATIC_USER" => ModuleKind::StaticUser,
                "MANAGED_USER" => ModuleKind::ManagedUser,
                "INTERNAL_USER" => ModuleKind::InternalUser,
                other => {
                    ignored.push(format!("{location} ({other}: not implemented)"));
                    continue;
                }
            };
            let properties = declared.properties;
            ignored.extend(
                properties
                    .unknown
                    .keys()
                    .map(|key| format!("{location}.properties.{key}")),
            );
            if properties.client_ip_header.is_some() {
                client_ip_header.clone_from(&properties.client_ip_header);
            }
            if kind == ModuleKind::StaticUser && (properties.username.is_none() || properties.password.is_none()) {
                return Err(format!(
                    "{location}: STATIC_USER needs properties.username and properties.password"
                ));
            }
            let mapping = properties.property_mapping;
            modules.push(AuthModule {
                kind,
                resource: properties.query_on_resource.unwrap_or_else(|| match kind {
                    ModuleKind::ManagedUser => "managed/user".to_owned(),
                    ModuleKind::StaticUser | ModuleKind::InternalUser => "internal/user".to_owned(),
                }),
                query_id: properties.query_id,
                default_roles: properties.default_user_roles,
                roles_property: mapping.user_roles.unwrap_or_else(|| "authzRoles".to_owned()),
                credential_property: mapping.user_credential.unwrap_or_else(|| "password".to_owned()),
                authentication_id_property: mapping.authentication_id.unwrap_or_else(|| "username".to_owned()),
                username: properties.username,
                password: properties.password,
            });
        }
        Ok((
            Self {
                session: context
                    .session_module
                    .and_then(|module| module.properties)
                    .unwrap_or_default(),
                modules,
                lockout: context.account_lockout.unwrap_or_default(),
                client_ip_header,
            },
            ignored,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn modules_keep_their_order_and_disabled_ones_are_skipped() {
        let (config, ignored) = AuthenticationConfig::from_json(&json!({"serverAuthContext": {
            "sessionModule": {"name": "JWT_SESSION", "properties": {"maxTokenLifeMinutes": 60}},
            "authModules": [
                {"name": "STATIC_USER", "enabled": true, "properties": {"username": "anonymous", "password": "anonymous",
                    "defaultUserRoles": ["internal/role/openidm-reg"]}},
                {"name": "INTERNAL_USER", "enabled": false, "properties": {}},
                {"name": "MANAGED_USER", "properties": {"queryId": "credential-query", "augmentSecurityContext": {}}},
                {"name": "SOCIAL_PROVIDERS", "properties": {}}
            ],
            "accountLockout": {"maxFailures": 3}
        }}))
        .unwrap();
        let kinds: Vec<_> = config.modules.iter().map(|m| m.kind).collect();
        assert_eq!(kinds, [ModuleKind::StaticUser, ModuleKind::ManagedUser]);
        assert!((config.session.max_token_life_minutes - 60.0).abs() < f64::EPSILON);
        assert!((config.session.token_idle_time_minutes - 30.0).abs() < f64::EPSILON);
        assert_eq!(config.lockout.max_failures, 3);
        assert_eq!(
            ignored,
            ["serverAuthContext.authModules[3] (SOCIAL_PROVIDERS: not implemented)"]
        );
    }

    #[test]
    fn malformed_documents_are_refused() {
        assert!(AuthenticationConfig::from_json(&json!({})).is_err());
        assert!(
            AuthenticationConfig::from_json(&json!({"serverAuthContext": {"authModules": [{"name": "STATIC_USER"}]}}))
                .is_err()
        );
        assert!(
            AuthenticationConfig::from_json(
                &json!({"serverAuthContext": {"authModules": [], "accountLockout": {"x": 1}}})
            )
            .is_err()
        );
    }
}
