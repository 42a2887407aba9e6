//! Password hashing: argon2id PHC strings with the cost from `ferridm.json`.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::settings::PasswordHashSettings;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_strings_that_verify() {
        let hasher = PasswordHasher::new(PasswordHashSettings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        });
        let phc = hasher.hash("Passw0rd").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$"));
        assert!(hasher.verify("Passw0rd", &phc));
        assert!(!hasher.verify("passw0rd", &phc));
        assert!(!hasher.verify("Passw0rd", "not a hash"));
        assert_ne!(phc, hasher.hash("Passw0rd").unwrap());
    }
}
