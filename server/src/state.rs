//! Process-wide state shared by every request: the store, the current configuration generation
//! (swapped atomically on reload), the secrets and the credential cache.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use ferridm_store::Store;

use crate::auth::cache::CredentialCache;
use crate::auth::password::PasswordHasher;
use crate::config::{ConfigError, ConfigPaths, Generation};
use crate::secrets::Secrets;

/// Everything a request may need.
#[derive(Debug)]
pub struct AppState {
    /// Where configuration comes from.
    pub paths: ConfigPaths,
    /// The database.
    pub store: Store,
    /// Keys and the admin password hash.
    pub secrets: Secrets,
    /// Recently verified credentials.
    pub credentials: CredentialCache,
    generation: ArcSwap<Generation>,
    last_errors: Mutex<Vec<ConfigError>>,
    reloading: Mutex<()>,
}

impl AppState {
    /// State around a first generation.
    pub fn new(paths: ConfigPaths, store: Store, secrets: Secrets, generation: Generation) -> Self {
        let credentials = CredentialCache::new(secrets.cache_key.clone(), generation.settings.credential_cache);
        Self {
            paths,
            store,
            secrets,
            credentials,
            generation: ArcSwap::from_pointee(generation),
            last_errors: Mutex::new(Vec::new()),
            reloading: Mutex::new(()),
        }
    }

    /// The generation requests should run against now.
    pub fn generation(&self) -> Arc<Generation> {
        self.generation.load_full()
    }

    /// Swaps in a new generation.
    pub fn install(&self, generation: Generation) {
        self.credentials.configure(generation.settings.credential_cache);
        self.generation.store(Arc::new(generation));
        self.set_errors(Vec::new());
    }

    /// Records the problems of the last refused reload (empty after a good one).
    pub fn set_errors(&self, errors: Vec<ConfigError>) {
        *self
            .last_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = errors;
    }

    /// The problems of the last refused reload.
    pub fn errors(&self) -> Vec<ConfigError> {
        self.last_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Serialises reloads (file watcher and `PUT /openidm/config` may race).
    pub fn reload_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.reloading.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A password hasher with the current generation's cost.
    pub fn hasher(&self) -> PasswordHasher {
        PasswordHasher::new(self.generation().settings.password_hashing)
    }
}
