//! Password hashing: argon2id PHC strings with the cost from `ferridm.json`, the stored forms a
//! password is read from (ferridm's argon2id, IDM's salted hashes), and the gate that bounds how
//! many checks run at once (each argon2id run takes `memoryKib` of memory and a core, so a burst
//! of guesses must queue rather than exhaust the machine).

pub mod idm_encryption;
pub mod idm_hash;

use std::sync::{Mutex, PoisonError};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde_json::{Value, json};

use self::idm_encryption::IDM_ENCRYPTION;
use self::idm_hash::{IdmHash, SALTED_HASH};
use crate::config::settings::PasswordHashSettings;
use crate::gate::Gate;

/// The `$crypto` type of ferridm's own password hashes.
pub const ARGON2ID: &str = "argon2id";

/// ferridm's stored form of an argon2id PHC string.
pub fn argon2id_crypto(phc: String) -> Value {
    json!({"$crypto": {"type": ARGON2ID, "value": phc}})
}

/// A stored password, as read from its `$crypto` value.
#[derive(Debug, Clone)]
pub enum StoredPassword {
    /// ferridm's argon2id PHC string.
    Argon2id(String),
    /// A hash IDM made; after a successful login it is replaced by argon2id.
    Idm(IdmHash),
    /// A value no password can match here, with the reason (IDM's encryption, whose keys
    /// ferridm does not hold, or a form it does not know).
    Unusable(String),
}

impl StoredPassword {
    /// Reads a stored value; `None` when it is not a `$crypto` object.
    pub fn from_crypto(value: &Value) -> Option<Self> {
        let crypto = value.get("$crypto")?;
        let kind = crypto.get("type").and_then(Value::as_str).unwrap_or_default();
        let inner = crypto.get("value").unwrap_or(&Value::Null);
        Some(match (kind, inner) {
            (SALTED_HASH, _) => match IdmHash::parse(inner) {
                Ok(hash) => Self::Idm(hash),
                Err(reason) => Self::Unusable(format!("its IDM salted hash cannot be read: {reason}")),
            },
            (IDM_ENCRYPTION, _) => {
                Self::Unusable("its password is encrypted with IDM's keys, which ferridm does not hold".to_owned())
            }
            (_, Value::String(phc)) => Self::Argon2id(phc.clone()),
            _ => Self::Unusable(format!("its password is stored as an unknown $crypto type \"{kind}\"")),
        })
    }
}

/// Hashes and verifies passwords.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    settings: PasswordHashSettings,
}

impl PasswordHasher {
    /// A hasher with the given cost.
    pub fn new(settings: PasswordHashSettings) -> Self {
        Self { settings }
    }

    fn argon2(&self) -> Result<Argon2<'static>, String> {
        let params = Params::new(
            self.settings.memory_kib,
            self.settings.iterations,
            self.settings.parallelism,
            None,
        )
        .map_err(|error| format!("invalid password hashing parameters: {error}"))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// The argon2id PHC string of `password` with a fresh salt.
    pub fn hash(&self, password: &str) -> Result<String, String> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| format!("cannot hash a password: {error}"))
    }

    /// True when `password` matches the PHC string (whatever cost it was made with).
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
    }
}

/// Bounds concurrent password hashing (a [`Gate`]), and keeps a decoy hash so that checking a
/// password for an unknown account costs what checking a real one does.
#[derive(Debug)]
pub struct HashingGate {
    gate: Gate,
    decoy: Mutex<Option<(PasswordHashSettings, String)>>,
}

impl std::ops::Deref for HashingGate {
    type Target = Gate;

    fn deref(&self) -> &Gate {
        &self.gate
    }
}

impl HashingGate {
    /// A gate letting `limit` runs through at once.
    pub fn new(limit: usize) -> Self {
        Self {
            gate: Gate::new(limit),
            decoy: Mutex::new(None),
        }
    }

    /// A hash of a random password made with `settings`, made once per cost.
    pub fn decoy(&self, settings: PasswordHashSettings) -> Result<String, String> {
        let mut decoy = self.decoy.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((cost, hash)) = decoy.as_ref()
            && *cost == settings
        {
            return Ok(hash.clone());
        }
        let random: [u8; 16] = rand::random();
        let hash = PasswordHasher::new(settings).hash(&format!("{random:?}"))?;
        *decoy = Some((settings, hash.clone()));
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_strings_that_verify() {
        let hasher = PasswordHasher::new(PasswordHashSettings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            ..PasswordHashSettings::default()
        });
        let phc = hasher.hash("Passw0rd").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$"));
        assert!(hasher.verify("Passw0rd", &phc));
        assert!(!hasher.verify("passw0rd", &phc));
        assert!(!hasher.verify("Passw0rd", "not a hash"));
        assert_ne!(phc, hasher.hash("Passw0rd").unwrap());
    }

    #[test]
    fn stored_forms_are_told_apart() {
        let read = |value: Value| StoredPassword::from_crypto(&value);
        assert!(matches!(
            read(json!({"$crypto": {"type": "argon2id", "value": "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA"}})),
            Some(StoredPassword::Argon2id(phc)) if phc.starts_with("$argon2id$")
        ));
        let sha256 = json!({"$crypto": {"type": "salted-hash", "value": {"algorithm": "SHA-256",
            "data": "OUuixco3XpxtAVzkkfVlyHGcrgNUUokF+XdMUL2CVmYAAQIDBAUGBwgJCgsMDQ4P"}}});
        assert!(matches!(read(sha256), Some(StoredPassword::Idm(hash)) if hash.verify("Passw0rd")));
        let encrypted =
            json!({"$crypto": {"type": "x-simple-encryption", "value": {"cipher": "AES/CBC/PKCS5Padding"}}});
        assert!(matches!(read(encrypted), Some(StoredPassword::Unusable(why)) if why.contains("IDM's keys")));
        let broken = json!({"$crypto": {"type": "salted-hash", "value": {"algorithm": "SHA-256"}}});
        assert!(matches!(read(broken), Some(StoredPassword::Unusable(why)) if why.contains("data")));
        assert!(read(json!("Passw0rd")).is_none());
    }

    #[test]
    fn the_decoy_is_made_once_per_cost() {
        let gate = HashingGate::new(1);
        let cheap = PasswordHashSettings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            ..PasswordHashSettings::default()
        };
        let decoy = gate.decoy(cheap).unwrap();
        assert_eq!(gate.decoy(cheap).unwrap(), decoy);
        assert!(decoy.contains("m=64,t=1,p=1"), "{decoy}");
        let other = gate.decoy(PasswordHashSettings { iterations: 2, ..cheap }).unwrap();
        assert!(other.contains("m=64,t=2,p=1"), "{other}");
    }
}
