//! Process-wide state shared by every request: the store, the current configuration generation
//! (swapped atomically on reload), the secrets, the credential cache and the clock.

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use ferridm_store::Store;

use crate::audit::AuditQueue;
use crate::clock::Clock;
use crate::config::{ConfigError, ConfigPaths};
use crate::gate::{Gate, per_core_or};
use crate::generation::Generation;
use crate::metrics::Metrics;
use crate::oidc::ProviderClient;
use crate::secrets::{CredentialCache, HashingGate, Secrets};

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
    /// The bound on concurrent password hashing.
    pub hashing: HashingGate,
    /// The bound on concurrent client queries.
    pub queries: Gate,
    /// Turns for unconditional writes to one object.
    pub write_turns: WriteTurns,
    /// The time everything that expires goes by.
    pub clock: Arc<dyn Clock>,
    /// This node's id among the nodes sharing the database (set once it has joined them).
    pub node_id: OnceLock<String>,
    /// Held while this node runs work that must run once across the nodes (rescoring).
    pub work_running: Mutex<()>,
    /// The newest shared configuration change this node has applied (PostgreSQL; 0 before any).
    pub config_version: AtomicI64,
    /// Audit events on their way to the handlers.
    pub audit: Arc<AuditQueue>,
    /// The thread writing them (`service::audit`).
    pub audit_writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// What `GET /openidm/metrics/prometheus` serves.
    pub metrics: Metrics,
    /// The roles with a condition or temporal constraints (`service::roles`).
    pub roles: crate::role_catalog::RoleCatalogCache,
    /// The client of the social identity providers (discovery and key sets cached).
    pub social: ProviderClient,
    generation: ArcSwap<Generation>,
    last_errors: Mutex<Vec<ConfigError>>,
    reloading: Mutex<()>,
}

impl AppState {
    /// State around a first generation.
    pub fn new(
        paths: ConfigPaths,
        store: Store,
        secrets: Secrets,
        generation: Generation,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let credentials = CredentialCache::new(secrets.cache_key.clone(), generation.settings.credential_cache);
        let hashing = HashingGate::new(per_core_or(generation.settings.password_hashing.max_concurrent));
        let queries = Gate::new(per_core_or(generation.settings.queries.max_concurrent));
        let audit = Arc::new(AuditQueue::default());
        audit.configure(generation.audit.queue);
        let metrics = Metrics::new(&store);
        Self {
            paths,
            store,
            secrets,
            credentials,
            hashing,
            queries,
            write_turns: WriteTurns::default(),
            clock,
            node_id: OnceLock::new(),
            work_running: Mutex::new(()),
            config_version: AtomicI64::new(0),
            audit,
            audit_writer: Mutex::new(None),
            metrics,
            social: ProviderClient::new(),
            roles: crate::role_catalog::RoleCatalogCache::default(),
            generation: ArcSwap::from_pointee(generation),
            last_errors: Mutex::new(Vec::new()),
            reloading: Mutex::new(()),
        }
    }

    /// The generation a new request should run against: taken once per request (the request
    /// context keeps it to the end) and by background work.
    pub fn generation(&self) -> Arc<Generation> {
        self.generation.load_full()
    }

    /// Swaps in a new generation.
    pub fn install(&self, generation: Generation) {
        self.credentials.configure(generation.settings.credential_cache);
        self.hashing
            .configure(per_core_or(generation.settings.password_hashing.max_concurrent));
        self.queries
            .configure(per_core_or(generation.settings.queries.max_concurrent));
        self.audit.configure(generation.audit.queue);
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
}

/// How many locks the objects' write turns are spread over.
const TURN_STRIPES: usize = 256;

thread_local! {
    /// True while this thread holds a write turn (nested writes made by scripts during it
    /// take none, so a thread never waits for a second turn while holding one).
    static HOLDS_TURN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Per-object turns for unconditional writes on this node: writers of one object (an increment
/// from forty clients at once) queue here instead of racing and retrying on the revision. The
/// objects share [`TURN_STRIPES`] locks by hash. Writers on other nodes of a PostgreSQL
/// database take turns there too (`Store::object_turn`).
#[derive(Debug)]
pub struct WriteTurns {
    stripes: Vec<Mutex<()>>,
}

impl Default for WriteTurns {
    fn default() -> Self {
        Self {
            stripes: (0..TURN_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }
}

/// A held write turn (released when dropped).
#[derive(Debug)]
pub struct WriteTurn<'a> {
    guard: Option<std::sync::MutexGuard<'a, ()>>,
}

impl WriteTurn<'_> {
    /// Whether this turn holds the object's lock (false for a write nested in another write on
    /// the same thread).
    pub fn is_held(&self) -> bool {
        self.guard.is_some()
    }
}

impl Drop for WriteTurn<'_> {
    fn drop(&mut self) {
        if self.guard.take().is_some() {
            HOLDS_TURN.with(|holds| holds.set(false));
        }
    }
}

impl WriteTurns {
    /// Waits for the turn of the object `type_name`/`id`; a thread already holding a turn gets
    /// an empty one.
    pub fn take(&self, type_name: &str, id: &str) -> WriteTurn<'_> {
        if HOLDS_TURN.with(std::cell::Cell::get) {
            return WriteTurn { guard: None };
        }
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&(type_name, id), &mut hasher);
        let stripe = (std::hash::Hasher::finish(&hasher) % TURN_STRIPES as u64) as usize;
        let guard = self.stripes[stripe]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        HOLDS_TURN.with(|holds| holds.set(true));
        WriteTurn { guard: Some(guard) }
    }
}
