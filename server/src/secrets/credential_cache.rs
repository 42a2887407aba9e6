//! The verified-credential cache: header authentication must not run argon2 on every request.
//! An entry is keyed by an HMAC (with a per-process random key) over the user name, the password
//! and the stored password hash, so a password change on any node makes old entries unreachable;
//! entries also expire after a short time and the cache is bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::settings::CredentialCacheSettings;
use crate::secrets::Key;

type Digest = [u8; 32];

#[derive(Debug, Default)]
struct Entries {
    expiry: HashMap<Digest, Instant>,
    order: VecDeque<Digest>,
}

/// Remembers credentials that verified recently.
#[derive(Debug)]
pub struct CredentialCache {
    key: Key,
    settings: Mutex<CredentialCacheSettings>,
    entries: Mutex<Entries>,
}

impl CredentialCache {
    /// An empty cache.
    pub fn new(key: Key, settings: CredentialCacheSettings) -> Self {
        Self {
            key,
            settings: Mutex::new(settings),
            entries: Mutex::new(Entries::default()),
        }
    }

    /// Applies new settings (after a reload).
    pub fn configure(&self, settings: CredentialCacheSettings) {
        *self.settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = settings;
    }

    fn digest(&self, username: &str, password: &str, stored_hash: &str) -> Digest {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key.0).unwrap_or_else(|_| unreachable_key());
        for part in [username, password, stored_hash] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    /// True when these exact credentials verified against this stored hash recently.
    pub fn contains(&self, username: &str, password: &str, stored_hash: &str) -> bool {
        let digest = self.digest(username, password, stored_hash);
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match entries.expiry.get(&digest) {
            Some(expiry) if *expiry > Instant::now() => true,
            Some(_) => {
                entries.expiry.remove(&digest);
                false
            }
            None => false,
        }
    }

    /// Records credentials that just verified.
    pub fn insert(&self, username: &str, password: &str, stored_hash: &str) {
        let settings = *self.settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if settings.max_entries == 0 || settings.ttl_seconds == 0 {
            return;
        }
        let digest = self.digest(username, password, stored_hash);
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while entries.expiry.len() >= settings.max_entries {
            match entries.order.pop_front() {
                Some(oldest) => {
                    entries.expiry.remove(&oldest);
                }
                None => break,
            }
        }
        let expiry = Instant::now() + Duration::from_secs(settings.ttl_seconds);
        if entries.expiry.insert(digest, expiry).is_none() {
            entries.order.push_back(digest);
        }
        // Drop order entries whose digest was already evicted or expired out.
        if entries.order.len() > settings.max_entries.saturating_mul(2) {
            let Entries { expiry, order } = &mut *entries;
            order.retain(|digest| expiry.contains_key(digest));
        }
    }

    /// Forgets every entry (e.g. after the admin password or hashing settings change).
    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.expiry.clear();
        entries.order.clear();
    }

    /// Entries currently held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .expiry
            .len()
    }
}

#[expect(clippy::panic, reason = "HMAC-SHA256 accepts keys of any length; this cannot happen")]
fn unreachable_key() -> Hmac<Sha256> {
    panic!("HMAC rejected a 32-byte key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: usize) -> CredentialCache {
        CredentialCache::new(
            Key([1; 32]),
            CredentialCacheSettings {
                max_entries,
                ttl_seconds: 60,
            },
        )
    }

    #[test]
    fn remembers_exact_credentials_only() {
        let cache = cache(10);
        cache.insert("bjensen", "Passw0rd", "$argon2id$a");
        assert!(cache.contains("bjensen", "Passw0rd", "$argon2id$a"));
        assert!(!cache.contains("bjensen", "passw0rd", "$argon2id$a"));
        assert!(
            !cache.contains("bjensen", "Passw0rd", "$argon2id$b"),
            "a changed hash must miss"
        );
        assert!(
            !cache.contains("bjensenP", "assw0rd", "$argon2id$a"),
            "fields are length-delimited"
        );
    }

    #[test]
    fn is_bounded() {
        let cache = cache(3);
        for i in 0..10 {
            cache.insert(&format!("user{i}"), "pw", "h");
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.contains("user9", "pw", "h"));
        assert!(!cache.contains("user0", "pw", "h"));
    }

    #[test]
    fn zero_capacity_disables_it() {
        let cache = cache(0);
        cache.insert("a", "b", "c");
        assert!(!cache.contains("a", "b", "c"));
    }
}
