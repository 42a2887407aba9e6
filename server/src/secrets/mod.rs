//! Secrets from `conf/boot.json`: the `openidm-admin` password (kept only as an argon2id hash)
//! and the keys that sign sessions and seal self-service tokens. Keys may come from placeholders
//! (`&{FERRIDM_SESSION_KEY|}`); a key left empty is generated once into `<data>/secrets.json`
//! with a warning, so one node works out of the box and several nodes can be given the same keys.

pub mod credential_cache;
pub mod password;

pub use credential_cache::CredentialCache;
pub use password::{HashingGate, PasswordHasher};

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::ConfigError;

/// The admin password IDM ships with; ferridm warns while it is in use.
pub const DEFAULT_ADMIN_PASSWORD: &str = "openidm-admin";

/// A 256-bit key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    fn random() -> Self {
        Self(rand::random())
    }

    fn parse(text: &str) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|error| format!("not base64: {error}"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must decode to exactly 32 bytes".to_owned())?;
        Ok(Self(bytes))
    }

    fn encode(&self) -> String {
        STANDARD.encode(self.0)
    }
}

/// The secrets a node runs with.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// argon2id PHC string of the `openidm-admin` password.
    pub admin_password_hash: String,
    /// True while the admin password is still IDM's default.
    pub admin_password_is_default: bool,
    /// Signs session cookies and credential tokens.
    pub session_key: Key,
    /// Encrypts and authenticates self-service process tokens.
    pub token_key: Key,
    /// Keys the verified-credential cache (per process; never shared).
    pub cache_key: Key,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct BootFile {
    admin_password: Option<String>,
    session_key: Option<String>,
    token_key: Option<String>,
}

impl Secrets {
    /// Secrets for work that authenticates no one and issues nothing (reports over stored
    /// data): fresh random keys, and no admin password that could ever match.
    pub fn ephemeral() -> Self {
        Self {
            admin_password_hash: String::new(),
            admin_password_is_default: false,
            session_key: Key::random(),
            token_key: Key::random(),
            cache_key: Key::random(),
        }
    }
}

/// Loads the secrets: `boot.json` (already placeholder-resolved) first, then the generated file.
pub fn load(
    boot: Option<&Value>,
    boot_path: &Path,
    data_dir: &Path,
    hasher: &PasswordHasher,
) -> Result<Secrets, ConfigError> {
    let boot: BootFile = match boot {
        Some(value) => {
            serde_json::from_value(value.clone()).map_err(|error| ConfigError::new(boot_path, error.to_string()))?
        }
        None => BootFile::default(),
    };
    let admin_password = boot
        .admin_password
        .filter(|password| !password.is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_PASSWORD.to_owned());
    let configured = |value: Option<String>, name: &str| -> Result<Option<Key>, ConfigError> {
        match value.filter(|text| !text.trim().is_empty()) {
            Some(text) => Key::parse(&text)
                .map(Some)
                .map_err(|message| ConfigError::new(boot_path, format!("{name}: {message}"))),
            None => Ok(None),
        }
    };
    let session_key = configured(boot.session_key, "sessionKey")?;
    let token_key = configured(boot.token_key, "tokenKey")?;
    let (session_key, token_key) = match (session_key, token_key) {
        (Some(session), Some(token)) => (session, token),
        (session, token) => {
            let generated = generated_keys(data_dir)?;
            (session.unwrap_or(generated.0), token.unwrap_or(generated.1))
        }
    };
    let admin_password_hash = hasher
        .hash(&admin_password)
        .map_err(|message| ConfigError::new(boot_path, message))?;
    Ok(Secrets {
        admin_password_hash,
        admin_password_is_default: admin_password == DEFAULT_ADMIN_PASSWORD,
        session_key,
        token_key,
        cache_key: Key::random(),
    })
}

/// Reads `<data>/secrets.json`, creating it with fresh keys when absent.
fn generated_keys(data_dir: &Path) -> Result<(Key, Key), ConfigError> {
    let path = data_dir.join("secrets.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let value: Value = serde_json::from_str(&text).map_err(|error| ConfigError::new(&path, error.to_string()))?;
        let key = |name: &str| -> Result<Key, ConfigError> {
            value
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{name} is missing"))
                .and_then(Key::parse)
                .map_err(|message| ConfigError::new(&path, message))
        };
        return Ok((key("sessionKey")?, key("tokenKey")?));
    }
    let keys = (Key::random(), Key::random());
    std::fs::create_dir_all(data_dir).map_err(|error| ConfigError::new(data_dir, error.to_string()))?;
    let body = json!({"sessionKey": keys.0.encode(), "tokenKey": keys.1.encode()});
    write_private(&path, &body.to_string()).map_err(|error| ConfigError::new(&path, error.to_string()))?;
    tracing::warn!(
        path = %crate::config::file_name_in_project(&path),
        "no sessionKey/tokenKey configured in boot.json: generated keys into the data directory; \
         give every node the same keys (FERRIDM_SESSION_KEY, FERRIDM_TOKEN_KEY) to share sessions"
    );
    Ok(keys)
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::PasswordHashSettings;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(PasswordHashSettings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            ..PasswordHashSettings::default()
        })
    }

    #[test]
    fn missing_keys_are_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load(None, Path::new("boot.json"), dir.path(), &hasher()).unwrap();
        let second = load(None, Path::new("boot.json"), dir.path(), &hasher()).unwrap();
        assert_eq!(first.session_key, second.session_key);
        assert_eq!(first.token_key, second.token_key);
        assert_ne!(first.session_key, first.token_key);
        assert!(first.admin_password_is_default);
    }

    #[test]
    fn configured_keys_and_password_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let key = STANDARD.encode([7u8; 32]);
        let boot = json!({"adminPassword": "S3cret!", "sessionKey": key, "tokenKey": key});
        let secrets = load(Some(&boot), Path::new("boot.json"), dir.path(), &hasher()).unwrap();
        assert_eq!(secrets.session_key, Key([7; 32]));
        assert!(!secrets.admin_password_is_default);
        assert!(hasher().verify("S3cret!", &secrets.admin_password_hash));
        assert!(!dir.path().join("secrets.json").exists());
    }

    #[test]
    fn malformed_keys_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let boot = json!({"sessionKey": "short"});
        let error = load(Some(&boot), Path::new("conf/boot.json"), dir.path(), &hasher()).unwrap_err();
        assert_eq!(error.file, "conf/boot.json");
        assert!(error.message.starts_with("sessionKey"));
    }
}
