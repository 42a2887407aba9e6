//! The verified-credential cache: header authentication must not run argon2 on every request.
//! An entry is keyed by an HMAC (with a per-process random key) over the user name, the password
//! and the stored password hash, so a password change on any node makes old entries unreachable;
//! entries also expire after a short time and the cache is bounded.
//!
//! An entry in use is renewed before it expires: in the last quarter of its life, one caller is
//! told to check the password again (and [`CredentialCache::insert`] it) while the others go on
//! using the entry. So a client sending many requests at once with the same credentials does not
//! see them all miss together at expiry and each run argon2.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::settings::CredentialCacheSettings;
use crate::secrets::Key;

type Digest = [u8; 32];

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// When it expires, in milliseconds since the epoch.
    expires_at: i64,
    /// When it begins to be renewed.
    renew_from: i64,
    /// Whether a caller was told to renew it.
    renewing: bool,
}

#[derive(Debug, Default)]
struct Entries {
    by_digest: HashMap<Digest, Entry>,
    order: VecDeque<Digest>,
}

/// What the cache knows of presented credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// They verified recently: no check is needed.
    Verified,
    /// They verified recently, but the entry is about to expire and this caller renews it: check
    /// the password and insert the credentials again when it matches.
    Renew,
    /// Not known (or expired): check the password.
    Unknown,
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

    /// Whether these exact credentials verified against this stored hash recently, at `now`
    /// (milliseconds since the epoch). The caller answered [`Lookup::Renew`] is the one that
    /// renews the entry.
    pub fn lookup(&self, username: &str, password: &str, stored_hash: &str, now: i64) -> Lookup {
        self.find(username, password, stored_hash, now, true)
    }

    /// Like [`lookup`](Self::lookup), but [`Lookup::Renew`] leaves the renewal to the caller
    /// that looks the credentials up next (for a check that hands renewals on to the full one).
    pub fn peek(&self, username: &str, password: &str, stored_hash: &str, now: i64) -> Lookup {
        self.find(username, password, stored_hash, now, false)
    }

    fn find(&self, username: &str, password: &str, stored_hash: &str, now: i64, claim: bool) -> Lookup {
        let digest = self.digest(username, password, stored_hash);
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(entry) = entries.by_digest.get_mut(&digest) else {
            return Lookup::Unknown;
        };
        if entry.expires_at <= now {
            entries.by_digest.remove(&digest);
            return Lookup::Unknown;
        }
        if entry.renew_from <= now && !entry.renewing {
            entry.renewing = claim;
            return Lookup::Renew;
        }
        Lookup::Verified
    }

    /// Records credentials that just verified, at `now`.
    pub fn insert(&self, username: &str, password: &str, stored_hash: &str, now: i64) {
        let settings = *self.settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if settings.max_entries == 0 || settings.ttl_seconds == 0 {
            return;
        }
        let digest = self.digest(username, password, stored_hash);
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while entries.by_digest.len() >= settings.max_entries && !entries.by_digest.contains_key(&digest) {
            match entries.order.pop_front() {
                Some(oldest) => {
                    entries.by_digest.remove(&oldest);
                }
                None => break,
            }
        }
        let ttl = i64::try_from(settings.ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        let entry = Entry {
            expires_at: now.saturating_add(ttl),
            renew_from: now.saturating_add(ttl - ttl / 4),
            renewing: false,
        };
        if entries.by_digest.insert(digest, entry).is_none() {
            entries.order.push_back(digest);
        }
        // Drop order entries whose digest was already evicted or expired out.
        if entries.order.len() > settings.max_entries.saturating_mul(2) {
            let Entries { by_digest, order } = &mut *entries;
            order.retain(|digest| by_digest.contains_key(digest));
        }
    }

    /// Forgets every entry (e.g. after the admin password or hashing settings change).
    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.by_digest.clear();
        entries.order.clear();
    }

    /// Entries currently held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_digest
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

    /// A time to look things up at.
    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn remembers_exact_credentials_only() {
        let cache = cache(10);
        cache.insert("bjensen", "Passw0rd", "$argon2id$a", NOW);
        assert_eq!(
            cache.lookup("bjensen", "Passw0rd", "$argon2id$a", NOW),
            Lookup::Verified
        );
        assert_eq!(cache.lookup("bjensen", "passw0rd", "$argon2id$a", NOW), Lookup::Unknown);
        assert_eq!(
            cache.lookup("bjensen", "Passw0rd", "$argon2id$b", NOW),
            Lookup::Unknown,
            "a changed hash must miss"
        );
        assert_eq!(
            cache.lookup("bjensenP", "assw0rd", "$argon2id$a", NOW),
            Lookup::Unknown,
            "fields are length-delimited"
        );
    }

    #[test]
    fn one_caller_renews_an_entry_before_it_expires_while_the_others_use_it() {
        let cache = cache(10);
        let lookup = |at: i64| cache.lookup("bjensen", "Passw0rd", "h", at);
        cache.insert("bjensen", "Passw0rd", "h", NOW);
        assert_eq!(lookup(NOW + 44_999), Lookup::Verified);
        // The last quarter of the 60 s: the first caller renews, the others still pass. A peek
        // leaves the renewal to the next lookup.
        assert_eq!(cache.peek("bjensen", "Passw0rd", "h", NOW + 45_000), Lookup::Renew);
        assert_eq!(cache.peek("bjensen", "Passw0rd", "h", NOW + 45_000), Lookup::Renew);
        assert_eq!(lookup(NOW + 45_000), Lookup::Renew);
        assert_eq!(cache.peek("bjensen", "Passw0rd", "h", NOW + 45_000), Lookup::Verified);
        assert_eq!(lookup(NOW + 45_001), Lookup::Verified);
        assert_eq!(lookup(NOW + 59_999), Lookup::Verified);
        // Renewed: valid for another full period, renewed again near its new end.
        cache.insert("bjensen", "Passw0rd", "h", NOW + 50_000);
        assert_eq!(lookup(NOW + 94_999), Lookup::Verified);
        assert_eq!(lookup(NOW + 95_000), Lookup::Renew);
        // A renewal that never came: the entry expires on time.
        assert_eq!(lookup(NOW + 109_999), Lookup::Verified);
        assert_eq!(lookup(NOW + 110_000), Lookup::Unknown);
        assert_eq!(lookup(NOW + 110_001), Lookup::Unknown);
        assert_eq!(cache.len(), 0, "an expired entry is dropped");
    }

    #[test]
    fn is_bounded() {
        let cache = cache(3);
        for i in 0..10 {
            cache.insert(&format!("user{i}"), "pw", "h", NOW);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.lookup("user9", "pw", "h", NOW), Lookup::Verified);
        assert_eq!(cache.lookup("user0", "pw", "h", NOW), Lookup::Unknown);
        // Renewing a held entry evicts nothing.
        cache.insert("user9", "pw", "h", NOW + 1);
        assert_eq!(cache.lookup("user8", "pw", "h", NOW), Lookup::Verified);
    }

    #[test]
    fn zero_capacity_disables_it() {
        let cache = cache(0);
        cache.insert("a", "b", "c", NOW);
        assert_eq!(cache.lookup("a", "b", "c", NOW), Lookup::Unknown);
    }
}
