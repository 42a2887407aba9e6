//! The context one request runs in, built once — by the HTTP edge for a client, by the script
//! host or the server itself for internal calls — and passed to every handler and service: the
//! configuration generation it started with (kept to the end, whatever reloads happen meanwhile),
//! who is calling, the transaction id and the client's locales.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferridm_core::{Error, Result};

use crate::auth::session::Session;
use crate::generation::Generation;
use crate::secrets::PasswordHasher;
use crate::secrets::password::idm_hash::IdmHash;
use crate::state::AppState;

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The server itself (scripts, the login's lookups, background work): no access rules, and
    /// it sees private properties.
    Internal,
    /// A client over HTTP: access rules apply, private properties are hidden and `onRead`
    /// triggers run.
    Client(Box<ClientCaller>),
}

/// An authenticated client.
#[derive(Debug, Clone)]
pub struct ClientCaller {
    /// The session this request runs in (new for credential logins).
    pub session: Session,
    /// True when credentials (not the cookie) authenticated this request.
    pub by_credentials: bool,
    /// The client address.
    pub ip: String,
    /// `X-OpenIDM-Reauth-Password`, decoded.
    pub reauth_password: Option<String>,
    /// Set by the logout action: the cookie is cleared.
    pub logout: bool,
    /// `X-OpenIDM-NoSession: true`: no cookie is issued.
    pub no_session: bool,
    /// `X-OpenIDM-DataStoreToken`: a social sign-in's start or identity token.
    pub data_store_token: Option<String>,
    /// The cookie binding a social sign-in to this browser.
    pub social_binding: Option<String>,
}

/// Everything a handler or service needs about the request it serves.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Shared state (store, secrets, clock).
    pub state: Arc<AppState>,
    /// The configuration generation, taken once when the request started.
    pub generation: Arc<Generation>,
    /// Who is calling.
    pub caller: Caller,
    /// The transaction id (`X-ForgeRock-TransactionId`, or one made for the request).
    pub transaction_id: String,
    /// `Accept-Language`, best first.
    pub locales: Vec<String>,
    /// The client user this request serves, kept when the server continues it internally
    /// (`None` for the server's own work).
    pub on_behalf_of: Option<String>,
}

/// How many transaction ids this process has made.
static TRANSACTIONS: AtomicU64 = AtomicU64::new(0);

/// A new transaction id: a per-process random prefix and a counter.
pub fn new_transaction_id() -> String {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string());
    format!("{prefix}-{}", TRANSACTIONS.fetch_add(1, Ordering::Relaxed))
}

impl RequestContext {
    /// The context of an internal call on `generation` (background work, the login's lookups).
    pub fn internal(state: Arc<AppState>, generation: Arc<Generation>) -> Self {
        Self {
            state,
            generation,
            caller: Caller::Internal,
            transaction_id: new_transaction_id(),
            locales: Vec::new(),
            on_behalf_of: None,
        }
    }

    /// The context of a client request; `transaction_id` is the client's, if it sent one.
    pub fn client(
        state: Arc<AppState>,
        generation: Arc<Generation>,
        caller: ClientCaller,
        transaction_id: Option<String>,
        locales: Vec<String>,
    ) -> Self {
        let on_behalf_of = Some(caller.session.context.authorization.id.clone());
        Self {
            state,
            generation,
            caller: Caller::Client(Box::new(caller)),
            transaction_id: transaction_id.unwrap_or_else(new_transaction_id),
            locales,
            on_behalf_of,
        }
    }

    /// The same request, continued by the server itself (a script's host call): same
    /// generation, transaction and locales, internal caller.
    pub fn as_internal(&self) -> Self {
        Self {
            caller: Caller::Internal,
            ..self.clone()
        }
    }

    /// True for a client caller.
    pub fn is_client(&self) -> bool {
        matches!(self.caller, Caller::Client(_))
    }

    /// The client caller; internal callers are refused (these resources serve clients only).
    pub fn client_caller(&self) -> Result<&ClientCaller> {
        match &self.caller {
            Caller::Client(caller) => Ok(caller),
            Caller::Internal => Err(Error::Forbidden("Access denied".into())),
        }
    }

    /// The client caller, to change what the response carries (logout, completed forms).
    pub fn client_caller_mut(&mut self) -> Result<&mut ClientCaller> {
        match &mut self.caller {
            Caller::Client(caller) => Ok(caller),
            Caller::Internal => Err(Error::Forbidden("Access denied".into())),
        }
    }

    /// Runs password work (argon2id) in turn with every other request: no more than the
    /// configured number at once; a request that gets no turn within `queueTimeoutMillis` is a
    /// 503.
    fn hashing<T>(&self, work: impl FnOnce(PasswordHasher) -> T) -> Result<T> {
        let settings = self.generation.settings.password_hashing;
        let _turn = self.state.hashing.turn(
            settings.queue_timeout_millis,
            "Too many password checks at once; try again later",
        )?;
        self.state.metrics.password_hashing();
        Ok(work(PasswordHasher::new(settings)))
    }

    /// The argon2id PHC string of `plain`, with this generation's cost.
    pub fn hash_password(&self, plain: &str) -> Result<String> {
        self.hashing(|hasher| hasher.hash(plain))?.map_err(|message| {
            tracing::error!(%message, "password hashing failed");
            Error::internal("Internal Server Error")
        })
    }

    /// True when `plain` matches the stored PHC string.
    pub fn verify_password(&self, plain: &str, phc: &str) -> Result<bool> {
        self.hashing(|hasher| hasher.verify(plain, phc))
    }

    /// True when `plain` matches a password hash imported from IDM (checked in turn like
    /// argon2id: some of IDM's algorithms cost as much).
    pub fn verify_idm_hash(&self, hash: &IdmHash, plain: &str) -> Result<bool> {
        self.hashing(|_| hash.verify(plain))
    }

    /// Spends on `plain` what checking a real account's password costs (for accounts that do
    /// not exist, so that the time of a refusal does not tell them apart).
    pub fn verify_decoy(&self, plain: &str) -> Result<()> {
        let decoy = self
            .state
            .hashing
            .decoy(self.generation.settings.password_hashing)
            .map_err(|message| {
                tracing::error!(%message, "cannot make the decoy password hash");
                Error::internal("Internal Server Error")
            })?;
        self.verify_password(plain, &decoy).map(|_| ())
    }

    /// Milliseconds since the epoch, by the server's clock.
    pub fn now_millis(&self) -> i64 {
        self.state.clock.now_millis()
    }

    /// Seconds since the epoch, by the server's clock.
    pub fn now_seconds(&self) -> u64 {
        self.state.clock.now_seconds()
    }

    /// Now as IDM writes dates, by the server's clock.
    pub fn now_iso(&self) -> String {
        self.state.clock.now_iso()
    }
}
