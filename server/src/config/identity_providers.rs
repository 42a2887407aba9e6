//! Social identity providers in IDM's format: `identityProviders.json` (`{"providers": [...]}`)
//! and IDM 6/7's one file per provider, `identityProvider-<name>.json`. Each provider is an
//! OpenID Connect provider (endpoints by discovery from `wellKnownEndpoint`, or written out) or
//! a plain OAuth 2.0 provider that only has a user-info endpoint. Keys IDM has and ferridm does
//! not use (`configClass`, `schema`, `icon`, …) are accepted and ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ConfigError;
use super::files::ConfigFile;

/// How long an outbound call to a provider may take unless the provider says otherwise.
const DEFAULT_TIMEOUT_SECONDS: u64 = 10;

/// The protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenID Connect: an ID token, verified against the provider's keys.
    OpenIdConnect,
    /// OAuth 2.0 with a user-info endpoint and no ID token.
    OAuth2,
}

/// `propertyMap` entry: a provider claim copied to a user property.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PropertyMapping {
    /// The claim (a top-level name of the provider's profile).
    pub source: String,
    /// The user property.
    pub target: String,
}

/// One provider, as configured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfig {
    /// Its name (`provider`): in URLs, in `idps` links and in `scripts/social/<name>.rhai`.
    pub provider: String,
    /// `OPENID_CONNECT` or `OAUTH2` (when absent: by `configClass`, else OpenID Connect when
    /// `scope` has `openid`).
    #[serde(rename = "type")]
    pub type_name: Option<String>,
    /// IDM's client class name (only read to tell the protocol).
    pub config_class: Option<String>,
    /// Shown and usable.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// The OAuth client id.
    pub client_id: String,
    /// The client secret (from the environment through `&{…}`).
    #[serde(default)]
    pub client_secret: String,
    /// OpenID Connect discovery (`…/.well-known/openid-configuration`).
    pub well_known_endpoint: Option<String>,
    /// The authorization endpoint (overrides discovery).
    pub authorization_endpoint: Option<String>,
    /// The token endpoint (overrides discovery).
    pub token_endpoint: Option<String>,
    /// The user-info endpoint (overrides discovery).
    pub user_info_endpoint: Option<String>,
    /// The key set's URL (overrides discovery's `jwks_uri`).
    #[serde(alias = "jwksUri")]
    pub jwks_uri_endpoint: Option<String>,
    /// The expected `iss` (overrides discovery's `issuer`).
    pub issuer: Option<String>,
    /// Where the provider sends the browser back to (the UI's return page).
    pub redirect_uri: String,
    /// The scopes asked for.
    #[serde(default)]
    pub scope: Vec<String>,
    /// The claim that names the account at the provider (`sub`).
    #[serde(default = "subject_claim")]
    pub authentication_id_key: String,
    /// Client authentication at the token endpoint: HTTP Basic when true, form fields otherwise.
    #[serde(default)]
    pub basic_auth: bool,
    /// Provider claims → user properties.
    #[serde(default)]
    pub property_map: Vec<PropertyMapping>,
    /// What the UI shows for the provider (passed through).
    #[serde(default)]
    pub ui_config: Map<String, Value>,
    /// Hosts besides those of the configured URLs that discovery may name (ferridm's addition:
    /// a provider whose keys live on another host lists it here).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// How long one outbound call may take, in seconds (ferridm's addition; 10 by default).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn enabled_by_default() -> bool {
    true
}

fn subject_claim() -> String {
    "sub".to_owned()
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECONDS
}

impl ProviderConfig {
    /// The protocol the provider speaks.
    pub fn kind(&self) -> ProviderKind {
        let named = self
            .type_name
            .as_deref()
            .or(self.config_class.as_deref())
            .map(str::to_ascii_lowercase);
        match named {
            Some(name) if name.contains("oauth2") || name.contains("oauth_2") || name == "oauth" => {
                ProviderKind::OAuth2
            }
            Some(name) if name.contains("openid") || name.contains("oidc") => ProviderKind::OpenIdConnect,
            _ if self.scope.iter().any(|scope| scope == "openid") => ProviderKind::OpenIdConnect,
            _ => ProviderKind::OAuth2,
        }
    }

    /// The entry `GET identityProviders` and the UI's buttons show: the configuration without
    /// its secret.
    pub fn public_view(&self) -> Value {
        let mut view = Map::new();
        view.insert("provider".to_owned(), Value::String(self.provider.clone()));
        view.insert("uiConfig".to_owned(), Value::Object(self.ui_config.clone()));
        view.insert("enabled".to_owned(), Value::Bool(self.enabled));
        view.insert(
            "scope".to_owned(),
            self.scope.iter().cloned().map(Value::String).collect(),
        );
        view.insert("redirectUri".to_owned(), Value::String(self.redirect_uri.clone()));
        view.insert("clientId".to_owned(), Value::String(self.client_id.clone()));
        view.insert(
            "authenticationIdKey".to_owned(),
            Value::String(self.authentication_id_key.clone()),
        );
        Value::Object(view)
    }

    fn check(&self) -> Result<(), String> {
        let name = &self.provider;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "provider name {name:?}: use letters, digits, '_' and '-' (it names URLs and scripts/social/<name>.rhai)"
            ));
        }
        if self.client_id.is_empty() {
            return Err(format!("provider {name}: clientId is required"));
        }
        if self.redirect_uri.is_empty() {
            return Err(format!("provider {name}: redirectUri is required"));
        }
        for (key, url) in self.urls() {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!("provider {name}: {key} must be an http(s) URL, not {url:?}"));
            }
        }
        let has = |endpoint: &Option<String>| endpoint.as_deref().is_some_and(|url| !url.is_empty());
        let discovered = has(&self.well_known_endpoint);
        match self.kind() {
            ProviderKind::OpenIdConnect
                if !(discovered
                    || has(&self.authorization_endpoint)
                        && has(&self.token_endpoint)
                        && has(&self.jwks_uri_endpoint)
                        && has(&self.issuer)) =>
            {
                return Err(format!(
                    "provider {name}: an OpenID Connect provider needs wellKnownEndpoint, or authorizationEndpoint, tokenEndpoint, jwksUriEndpoint and issuer"
                ));
            }
            ProviderKind::OAuth2
                if !has(&self.authorization_endpoint)
                    || !has(&self.token_endpoint)
                    || !has(&self.user_info_endpoint) =>
            {
                return Err(format!(
                    "provider {name}: an OAuth 2.0 provider needs authorizationEndpoint, tokenEndpoint and userInfoEndpoint"
                ));
            }
            _ => {}
        }
        if self.timeout_seconds == 0 || self.timeout_seconds > 120 {
            return Err(format!("provider {name}: timeoutSeconds must be between 1 and 120"));
        }
        Ok(())
    }

    /// The configured URLs, by key.
    pub fn urls(&self) -> Vec<(&'static str, &str)> {
        [
            ("wellKnownEndpoint", &self.well_known_endpoint),
            ("authorizationEndpoint", &self.authorization_endpoint),
            ("tokenEndpoint", &self.token_endpoint),
            ("userInfoEndpoint", &self.user_info_endpoint),
            ("jwksUriEndpoint", &self.jwks_uri_endpoint),
        ]
        .into_iter()
        .filter_map(|(key, url)| url.as_deref().filter(|url| !url.is_empty()).map(|url| (key, url)))
        .collect()
    }
}

/// Every configured provider, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdentityProviders {
    providers: BTreeMap<String, ProviderConfig>,
}

impl IdentityProviders {
    /// Reads `identityProviders` and every `identityProvider/<name>` file; a provider named twice
    /// is an error.
    pub fn from_files(files: &BTreeMap<String, ConfigFile>) -> Result<Self, ConfigError> {
        let mut providers = BTreeMap::new();
        let mut add = |file: &ConfigFile, value: &Value, location: String| -> Result<(), ConfigError> {
            let provider: ProviderConfig = serde_json::from_value(value.clone())
                .map_err(|error| ConfigError::new(&file.path, format!("{location}: {error}")))?;
            provider
                .check()
                .map_err(|message| ConfigError::new(&file.path, format!("{location}: {message}")))?;
            if providers.contains_key(&provider.provider) {
                return Err(ConfigError::new(
                    &file.path,
                    format!("{location}: provider {} is configured twice", provider.provider),
                ));
            }
            providers.insert(provider.provider.clone(), provider);
            Ok(())
        };
        if let Some(file) = files.get("identityProviders") {
            let list = match file.resolved.get("providers") {
                None => &Vec::new(),
                Some(Value::Array(list)) => list,
                Some(_) => return Err(ConfigError::new(&file.path, "providers must be an array")),
            };
            for (index, provider) in list.iter().enumerate() {
                add(file, provider, format!("providers[{index}]"))?;
            }
        }
        for (id, file) in files {
            if let Some(name) = id.strip_prefix("identityProvider/") {
                add(file, &file.resolved, format!("identityProvider {name}"))?;
            }
        }
        Ok(Self { providers })
    }

    /// An enabled provider by name.
    pub fn enabled(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.get(name).filter(|provider| provider.enabled)
    }

    /// The enabled providers, in name order.
    pub fn all_enabled(&self) -> impl Iterator<Item = &ProviderConfig> {
        self.providers.values().filter(|provider| provider.enabled)
    }

    /// True when no provider is enabled.
    pub fn is_empty(&self) -> bool {
        self.all_enabled().next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(id: &str, value: Value) -> (String, ConfigFile) {
        (
            id.to_owned(),
            ConfigFile {
                id: id.to_owned(),
                path: format!("conf/{id}.json").into(),
                raw: value.clone(),
                resolved: value,
            },
        )
    }

    fn oidc(name: &str) -> Value {
        json!({
            "provider": name, "clientId": "ferridm", "clientSecret": "s3cret",
            "wellKnownEndpoint": "http://127.0.0.1:9/.well-known/openid-configuration",
            "redirectUri": "http://127.0.0.1:8080/oauthReturn/", "scope": ["openid", "email"],
            "propertyMap": [{"source": "given_name", "target": "givenName"}],
            "uiConfig": {"buttonDisplayName": "Example"}, "configClass": "org.forgerock.oauth.clients.oidc.OpenIDConnectClientConfiguration"
        })
    }

    #[test]
    fn both_file_layouts_are_read_and_checked() {
        let files: BTreeMap<_, _> = [
            file("identityProviders", json!({"providers": [oidc("first")]})),
            file("identityProvider/second", oidc("second")),
        ]
        .into_iter()
        .collect();
        let providers = IdentityProviders::from_files(&files).unwrap();
        let names: Vec<_> = providers.all_enabled().map(|p| p.provider.as_str()).collect();
        assert_eq!(names, ["first", "second"]);
        let first = providers.enabled("first").unwrap();
        assert_eq!(first.kind(), ProviderKind::OpenIdConnect);
        assert_eq!(first.authentication_id_key, "sub");
        assert_eq!(first.property_map[0].target, "givenName");
        assert!(!first.public_view().to_string().contains("s3cret"));

        let twice: BTreeMap<_, _> = [
            file("identityProviders", json!({"providers": [oidc("first")]})),
            file("identityProvider/first", oidc("first")),
        ]
        .into_iter()
        .collect();
        let error = IdentityProviders::from_files(&twice).unwrap_err();
        assert!(error.message.contains("configured twice"), "{}", error.message);
    }

    #[test]
    fn incomplete_providers_are_refused_with_what_is_missing() {
        let refused = |change: Value| {
            let mut provider = oidc("p");
            for (key, value) in change.as_object().unwrap() {
                provider[key] = value.clone();
            }
            let files: BTreeMap<_, _> = [file("identityProvider/p", provider)].into_iter().collect();
            IdentityProviders::from_files(&files).unwrap_err().message
        };
        assert!(refused(json!({"clientId": ""})).contains("clientId is required"));
        assert!(refused(json!({"wellKnownEndpoint": null})).contains("needs wellKnownEndpoint"));
        assert!(refused(json!({"tokenEndpoint": "file:///etc/passwd"})).contains("must be an http(s) URL"));
        assert!(refused(json!({"provider": "a/b"})).contains("use letters"));
        assert!(
            refused(json!({"type": "OAUTH2"}))
                .contains("needs authorizationEndpoint, tokenEndpoint and userInfoEndpoint")
        );
        assert!(refused(json!({"scope": "openid"})).contains("invalid type"));
    }

    #[test]
    fn disabled_providers_are_not_offered() {
        let mut provider = oidc("off");
        provider["enabled"] = json!(false);
        let files: BTreeMap<_, _> = [file("identityProvider/off", provider)].into_iter().collect();
        let providers = IdentityProviders::from_files(&files).unwrap();
        assert!(providers.enabled("off").is_none());
        assert!(providers.is_empty());
    }
}
