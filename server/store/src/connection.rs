//! Connections: the backend is chosen from the URL scheme (`sqlite://…` or `postgres://…`;
//! anything else is refused), connections come from an r2d2 pool behind one
//! `MultiConnection` type, SQLite gets its pragmas on every connection, and migrations for the
//! chosen backend run once at open.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, R2D2Connection};
use diesel::sqlite::ProgressDecision;

use crate::StoreError;
use crate::migrate;
use crate::timings::{PoolState, Timings};
use crate::writer::GroupWriter;

/// One connection to whichever backend the store runs on.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// PostgreSQL.
    Postgres(diesel::PgConnection),
    /// SQLite.
    Sqlite(diesel::SqliteConnection),
}

/// The two supported database engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (the default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Where the data lives, parsed from a database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTarget {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl DbTarget {
    /// Parses `sqlite://<path>` (relative or absolute, `sqlite:///var/x.db`) or
    /// `postgres://…` / `postgresql://…`. Any other scheme is refused.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::BadTarget("sqlite:// needs a file path".into()));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        let scheme = url.split("://").next().unwrap_or(url);
        Err(StoreError::BadTarget(format!(
            "unsupported database URL scheme \"{scheme}\": use sqlite://<path> or postgres://…"
        )))
    }

    /// The backend this target runs on.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Tuning for the connection pool.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most pooled connections.
    pub pool_size: u32,
    /// How long a request waits for a connection before giving up (then 503).
    pub connection_timeout: Duration,
    /// How long SQLite waits on a locked database before failing a statement.
    pub busy_timeout: Duration,
    /// Connections the pool keeps open and ready, replenished by its background threads. A
    /// one-shot command sets 0: it then connects only on demand, in its own thread, so no
    /// background connect is in flight when the process exits (libpq and OpenSSL clean up at
    /// exit and crash a thread still connecting).
    pub idle_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            connection_timeout: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(10),
            idle_connections: 1,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Manager {
    target: DbTarget,
    busy_timeout_ms: u128,
    /// Connections that cannot write: SQLite opened with `mode=ro`, PostgreSQL sessions whose
    /// transactions are all read-only.
    read_only: bool,
    /// SQLite pragmas every connection runs after the common ones.
    sqlite_pragmas: &'static str,
}

/// A pooled connection with what the store has set on its database session.
pub struct Session {
    conn: DbConnection,
    /// PostgreSQL: the session's `statement_timeout` in milliseconds as the store last set it
    /// (0: none, PostgreSQL's default; [`UNKNOWN_TIMEOUT`]: changed by a bounded read's work).
    statement_timeout_ms: u64,
    /// PostgreSQL: until when the connection is handed out again without a ping, set when work
    /// on it has just succeeded ([`Session::vouch`]).
    trusted_until: Option<Instant>,
}

/// How long after work on a PostgreSQL connection succeeded it is taken from the pool without a
/// ping: a busy pool's connections are pinged only after a failure, an idle one's before use.
const TRUST_AFTER_SUCCESS: Duration = Duration::from_secs(2);

/// A session timeout the store cannot vouch for: it is set again before the next use.
const UNKNOWN_TIMEOUT: u64 = u64::MAX;

impl Session {
    fn new(conn: DbConnection) -> Self {
        Self {
            conn,
            statement_timeout_ms: 0,
            trusted_until: None,
        }
    }

    /// Notes how work on the connection ended: after a success it is handed out again without
    /// a ping for a while; after a failure (perhaps of the connection itself) it is pinged first.
    pub(crate) fn vouch<T>(&mut self, outcome: &Result<T, StoreError>) {
        self.trusted_until = outcome.is_ok().then(|| Instant::now() + TRUST_AFTER_SUCCESS);
    }

    /// Sets the session's `statement_timeout` (PostgreSQL) unless it is already `millis`.
    fn set_statement_timeout(&mut self, millis: u64) -> Result<(), StoreError> {
        if self.statement_timeout_ms != millis
            && let DbConnection::Postgres(postgres) = &mut self.conn
        {
            // Marked unknown first: a failed SET leaves the session's value in doubt.
            self.statement_timeout_ms = UNKNOWN_TIMEOUT;
            postgres.batch_execute(&format!("SET statement_timeout = {millis}"))?;
            self.statement_timeout_ms = millis;
        }
        Ok(())
    }
}

impl std::ops::Deref for Session {
    type Target = DbConnection;

    fn deref(&self) -> &DbConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut DbConnection {
        &mut self.conn
    }
}

#[cfg(test)]
impl Manager {
    /// A manager of writable connections to the SQLite file at `path`.
    pub(crate) fn sqlite(path: PathBuf) -> Self {
        Self {
            target: DbTarget::Sqlite(path),
            busy_timeout_ms: 10_000,
            read_only: false,
            sqlite_pragmas: "",
        }
    }
}

impl ManageConnection for Manager {
    type Connection = Session;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<Session, r2d2::Error> {
        match &self.target {
            DbTarget::Sqlite(path) => {
                let location = if self.read_only {
                    read_only_uri(path)
                } else {
                    path.to_string_lossy().into_owned()
                };
                let mut conn = diesel::SqliteConnection::establish(&location).map_err(r2d2::Error::ConnectionError)?;
                // The default `temp_store` on purpose: statement journals (what undoes a failed
                // statement inside a write's savepoint) stay in memory up to SQLite's spill size
                // and then move to a temporary file. Kept in memory whatever their size, each
                // statement's release walks the whole journal of its savepoint, which made a
                // write's cost grow with the square of its size (a 2,000-object batch: 94 % of
                // the time in `sqlite3BtreeSavepoint`).
                let pragmas = format!(
                    "PRAGMA busy_timeout = {}; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; {}",
                    self.busy_timeout_ms, self.sqlite_pragmas
                );
                conn.batch_execute(&pragmas).map_err(r2d2::Error::QueryError)?;
                Ok(Session::new(DbConnection::Sqlite(conn)))
            }
            DbTarget::Postgres(url) => {
                let mut conn = diesel::PgConnection::establish(url).map_err(r2d2::Error::ConnectionError)?;
                if self.read_only {
                    conn.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                        .map_err(r2d2::Error::QueryError)?;
                }
                Ok(Session::new(DbConnection::Postgres(conn)))
            }
        }
    }

    /// SQLite connections (to a local file) stay valid; a PostgreSQL one is pinged unless work
    /// on it has just succeeded.
    fn is_valid(&self, session: &mut Session) -> Result<(), r2d2::Error> {
        let trusted = session.trusted_until.take().is_some_and(|until| Instant::now() < until);
        match &mut session.conn {
            DbConnection::Postgres(postgres) if !trusted => postgres.ping().map_err(r2d2::Error::QueryError),
            _ => Ok(()),
        }
    }

    fn has_broken(&self, session: &mut Session) -> bool {
        std::thread::panicking() || session.conn.is_broken()
    }
}

/// The store: a pool of connections to one database with its migrations applied.
pub struct Store {
    pool: r2d2::Pool<Manager>,
    backend: Backend,
    /// SQLite has one writer: our own writers queue here rather than in SQLite's busy wait,
    /// and commit together when they find others queued ([`GroupWriter`]). PostgreSQL needs no
    /// such lock.
    sqlite_writer: Option<GroupWriter>,
    /// PostgreSQL: connections that hold writers' turns on objects across the nodes, apart from
    /// the main pool so that a turn never waits for a connection its own write needs.
    pub(crate) turn_pool: Option<r2d2::Pool<Manager>>,
    /// PostgreSQL: the URL, for connections of their own (configuration notifications).
    pub(crate) postgres_url: Option<String>,
    /// How long database work takes (for metrics).
    timings: Timings,
    /// SQLite: the audit trail's own file beside the database
    /// ([`migrate::sqlite_audit_path`]), so its steady appends stay out of the main file's WAL,
    /// checkpoints and page caches. `None` where the audit table is in this database.
    audit: Option<Box<Store>>,
    /// What the property index holds complete rows for, per type (`coverage.rs`).
    pub(crate) coverage: crate::coverage::CoverageCache,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// A pooled connection.
pub(crate) type PooledConnection = r2d2::PooledConnection<Manager>;

impl Store {
    /// Opens the database at `url`: creates an SQLite file's directory, applies pending
    /// migrations for the backend and fills the pool.
    pub fn open(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let target = DbTarget::parse(url)?;
        let backend = target.backend();
        if let DbTarget::Sqlite(path) = &target
            && let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        migrate::run(&target)?;
        let manager = Manager {
            target,
            busy_timeout_ms: options.busy_timeout.as_millis(),
            read_only: false,
            // 16 MB of pages per connection (the default is 2 MB), so that the index pages a
            // write or a query walks are found in memory rather than read from the file.
            sqlite_pragmas: "PRAGMA cache_size = -16000;",
        };
        let postgres_url = match &manager.target {
            DbTarget::Postgres(url) => Some(url.clone()),
            DbTarget::Sqlite(_) => None,
        };
        let turn_pool = match &manager.target {
            DbTarget::Postgres(_) => Some(
                r2d2::Pool::builder()
                    .max_size(TURN_CONNECTIONS)
                    .min_idle(Some(0))
                    .connection_timeout(options.connection_timeout)
                    .build_unchecked(Manager {
                        target: manager.target.clone(),
                        busy_timeout_ms: manager.busy_timeout_ms,
                        read_only: false,
                        sqlite_pragmas: "",
                    }),
            ),
            DbTarget::Sqlite(_) => None,
        };
        let timings = Timings::new();
        let audit = match &manager.target {
            DbTarget::Sqlite(path) => Some(Box::new(Self::sqlite_audit(
                migrate::sqlite_audit_path(path),
                options,
                false,
                timings.clone(),
            )?)),
            DbTarget::Postgres(_) => None,
        };
        let sqlite_writer = (backend == Backend::Sqlite).then(|| GroupWriter::new(manager.clone()));
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(Some(options.idle_connections))
            .connection_timeout(options.connection_timeout)
            .build(manager)?;
        Ok(Self {
            timings,
            pool,
            backend,
            sqlite_writer,
            turn_pool,
            postgres_url,
            audit,
            coverage: Default::default(),
        })
    }

    /// The store of an SQLite audit file (prepared by the migrations, [`migrate::run`]): a
    /// small pool of its own, sharing the main store's timings.
    fn sqlite_audit(
        path: PathBuf,
        options: &StoreOptions,
        read_only: bool,
        timings: Timings,
    ) -> Result<Self, StoreError> {
        let manager = Manager {
            target: DbTarget::Sqlite(path),
            busy_timeout_ms: options.busy_timeout.as_millis(),
            read_only,
            // Room for a batch of several thousand events, so that its transaction does
            // not spill (and journal) pages before the commit writes them.
            sqlite_pragmas: "PRAGMA cache_size = -8192;",
        };
        let sqlite_writer = Some(GroupWriter::new(manager.clone()));
        let pool = r2d2::Pool::builder()
            .max_size(AUDIT_CONNECTIONS)
            .min_idle(Some(options.idle_connections.min(AUDIT_CONNECTIONS)))
            .connection_timeout(options.connection_timeout)
            .build(manager)?;
        Ok(Self {
            timings,
            pool,
            backend: Backend::Sqlite,
            sqlite_writer,
            turn_pool: None,
            postgres_url: None,
            audit: None,
            coverage: Default::default(),
        })
    }

    /// Where the audit trail is stored: the SQLite audit file's store, or this one.
    pub(crate) fn audit_store(&self) -> &Self {
        self.audit.as_deref().unwrap_or(self)
    }

    /// Opens an existing database without the means to change it: no directory is created, no
    /// migration runs, SQLite is opened with `mode=ro` and every PostgreSQL transaction is
    /// read-only, so any write fails in the database itself. For reports over stored data
    /// (`ferridm check --against`).
    pub fn open_read_only(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let target = DbTarget::parse(url)?;
        let backend = target.backend();
        if let DbTarget::Sqlite(path) = &target
            && !path.is_file()
        {
            return Err(StoreError::BadTarget(format!(
                "no SQLite database at {}",
                path.display()
            )));
        }
        let postgres_url = match &target {
            DbTarget::Postgres(url) => Some(url.clone()),
            DbTarget::Sqlite(_) => None,
        };
        let timings = Timings::new();
        let audit = match &target {
            DbTarget::Sqlite(path) => {
                let audit_path = migrate::sqlite_audit_path(path);
                audit_path
                    .is_file()
                    .then(|| Self::sqlite_audit(audit_path, options, true, timings.clone()))
                    .transpose()?
                    .map(Box::new)
            }
            DbTarget::Postgres(_) => None,
        };
        let manager = Manager {
            target,
            busy_timeout_ms: options.busy_timeout.as_millis(),
            read_only: true,
            sqlite_pragmas: "",
        };
        let sqlite_writer = (backend == Backend::Sqlite).then(|| GroupWriter::new(manager.clone()));
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(Some(options.idle_connections))
            .connection_timeout(options.connection_timeout)
            .build(manager)?;
        Ok(Self {
            timings,
            pool,
            backend,
            sqlite_writer,
            turn_pool: None,
            postgres_url,
            audit,
            coverage: Default::default(),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// True when the database answers a ping on a pooled connection obtained within `wait`
    /// (readiness probes).
    pub fn is_reachable(&self, wait: Duration) -> bool {
        self.pool
            .get_timeout(wait)
            .is_ok_and(|mut connection| connection.ping().is_ok())
    }

    /// True when a read would neither block on the network nor wait for a connection: SQLite
    /// (a local file, whose WAL readers never wait for writers) with an idle pooled connection.
    /// Short reads may then run on an event-loop thread.
    pub fn reads_without_waiting(&self) -> bool {
        self.backend == Backend::Sqlite && self.pool.state().idle_connections > 0
    }

    /// The main pool's connections now.
    pub fn pool_state(&self) -> PoolState {
        let state = self.pool.state();
        PoolState {
            connections: state.connections,
            idle: state.idle_connections,
            max_size: self.pool.max_size(),
        }
    }

    /// The histograms of database work (`ferridm_db_operation_duration_seconds`,
    /// `ferridm_db_pool_wait_seconds`), for the server to register once.
    pub fn metric_collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        self.timings.collectors()
    }

    /// A pooled connection whose statements run without a time limit.
    pub(crate) fn connection(&self) -> Result<PooledConnection, StoreError> {
        let mut session = self.pooled()?;
        session.set_statement_timeout(0)?;
        Ok(session)
    }

    /// A pooled connection as it comes from the pool.
    fn pooled(&self) -> Result<PooledConnection, StoreError> {
        let started = Instant::now();
        let connection = self.pool.get();
        self.timings.pool_wait(started);
        Ok(connection?)
    }

    /// Runs `work` as one write transaction; on SQLite, in a transaction it may share with
    /// concurrent writes ([`GroupWriter`]), returning once that is committed. `work` may run
    /// more than once there: again when a write of its group failed after changing something.
    pub(crate) fn write<T>(
        &self,
        work: impl FnMut(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let outcome = match &self.sqlite_writer {
            Some(writer) => writer.write(work),
            None => self.on_pooled(|conn| {
                begin_write(conn)?;
                finish_transaction(conn, work)
            }),
        };
        self.timings.write(started);
        outcome
    }

    /// Runs `work`, which writes with a single statement on PostgreSQL, on a pooled connection
    /// without an explicit transaction there (a statement is atomic alone: that saves `BEGIN`
    /// and `COMMIT`, two round trips). On SQLite it runs as [`Store::write`] runs work.
    pub(crate) fn write_one_statement<T>(
        &self,
        work: impl FnMut(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.sqlite_writer.is_some() {
            return self.write(work);
        }
        let started = Instant::now();
        let outcome = self.on_pooled(work);
        self.timings.write(started);
        outcome
    }

    /// Runs `work` on a pooled connection without an explicit transaction.
    pub(crate) fn read<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let outcome = self.on_pooled(work);
        self.timings.read(started);
        outcome
    }

    /// Runs `work` on a pooled connection, which goes back to the pool vouched for by the
    /// outcome (pinged before its next use only after a failure).
    fn on_pooled<T>(&self, work: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut pooled = self.connection()?;
        let outcome = work(&mut pooled);
        pooled.vouch(&outcome);
        outcome
    }

    /// Runs `work` like [`Store::read`], but within `deadline` when there is one. On PostgreSQL
    /// the session's `statement_timeout` is what remains of the budget (set only when the
    /// connection's differs, so a steady stream of reads with one limit sets it once per
    /// connection): the server cancels a statement that outlives it, and a statement failing
    /// once the deadline has passed is reported as [`StoreError::TimedOut`]. On SQLite a
    /// progress handler interrupts a statement once the deadline passes; it is removed again
    /// before the connection goes back to the pool.
    pub(crate) fn read_within<T>(
        &self,
        deadline: Option<&Deadline>,
        work: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Some(deadline) = deadline else {
            return self.read(work);
        };
        let started = Instant::now();
        let mut session = self.pooled()?;
        let outcome = deadline.bound_session(&mut session).and_then(|()| {
            let outcome = work(&mut session);
            if deadline.rebound.get() {
                session.statement_timeout_ms = UNKNOWN_TIMEOUT;
            }
            outcome
        });
        if let DbConnection::Sqlite(sqlite) = &mut session.conn {
            sqlite.remove_progress_handler();
        }
        session.vouch(&outcome);
        self.timings.query(started);
        outcome.map_err(|error| match error {
            StoreError::Database(_) if deadline.has_passed() => deadline.exceeded(),
            other => other,
        })
    }
}

/// An SQLite URI opening `path` read-only (`%`, `?` and `#` are the characters SQLite's URI
/// parser would otherwise read as escapes or delimiters).
fn read_only_uri(path: &std::path::Path) -> String {
    let mut uri = String::from("file:");
    for character in path.to_string_lossy().chars() {
        match character {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3F"),
            '#' => uri.push_str("%23"),
            other => uri.push(other),
        }
    }
    uri.push_str("?mode=ro");
    uri
}

/// Most connections to the SQLite audit file: its writer and a few audit queries.
const AUDIT_CONNECTIONS: u32 = 4;

/// Most connections holding writers' turns on objects at once (PostgreSQL).
const TURN_CONNECTIONS: u32 = 8;

/// How many SQLite virtual-machine steps run between two looks at the clock.
const SQLITE_PROGRESS_STEPS: NonZeroU32 = NonZeroU32::new(10_000).unwrap();

/// A time budget for one read, counted from when it was made.
#[derive(Debug)]
pub(crate) struct Deadline {
    limit: Duration,
    at: Instant,
    /// Whether the read's work set the session's timeout itself
    /// ([`Deadline::bound_next_statements`]).
    rebound: std::cell::Cell<bool>,
}

impl Deadline {
    /// A budget of `limit` from now (none when `limit` reaches beyond what the clock can tell).
    pub(crate) fn after(limit: Duration) -> Option<Self> {
        Instant::now().checked_add(limit).map(|at| Self {
            limit,
            at,
            rebound: std::cell::Cell::new(false),
        })
    }

    /// What remains of the budget in whole milliseconds, rounded up (0 would mean no timeout to
    /// PostgreSQL); an error once it is spent.
    fn remaining_millis(&self) -> Result<u64, StoreError> {
        let remaining = self.at.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(self.exceeded());
        }
        // Capped at PostgreSQL's largest value.
        Ok(remaining.as_micros().div_ceil(1000).min(i32::MAX as u128) as u64)
    }

    /// Bounds the first statements of a read on `session`. On PostgreSQL the session keeps a
    /// timeout it already has when that is at most 1/32 longer than what remains (a fresh
    /// budget on a connection last used with the same limit), and is set to the remainder
    /// otherwise.
    fn bound_session(&self, session: &mut Session) -> Result<(), StoreError> {
        let remaining = self.remaining_millis()?;
        match &mut session.conn {
            DbConnection::Postgres(_) => {
                let current = session.statement_timeout_ms;
                if current < remaining || current - remaining > remaining / 32 {
                    session.set_statement_timeout(remaining)?;
                }
            }
            DbConnection::Sqlite(sqlite) => self.interrupt_at_deadline(sqlite),
        }
        Ok(())
    }

    /// Bounds the statements `conn` runs next by what remains of the budget: an error once it is
    /// spent; on PostgreSQL the remainder becomes the session's `statement_timeout`; on SQLite a
    /// progress handler interrupts the statement running when the deadline passes.
    pub(crate) fn bound_next_statements(&self, conn: &mut DbConnection) -> Result<(), StoreError> {
        let remaining = self.remaining_millis()?;
        match conn {
            DbConnection::Postgres(postgres) => {
                self.rebound.set(true);
                postgres.batch_execute(&format!("SET statement_timeout = {remaining}"))?;
            }
            DbConnection::Sqlite(sqlite) => self.interrupt_at_deadline(sqlite),
        }
        Ok(())
    }

    /// Has SQLite interrupt the statement running when the deadline passes.
    fn interrupt_at_deadline(&self, sqlite: &mut diesel::SqliteConnection) {
        let at = self.at;
        sqlite.on_progress(SQLITE_PROGRESS_STEPS, move || {
            if Instant::now() >= at {
                ProgressDecision::Interrupt
            } else {
                ProgressDecision::Continue
            }
        });
    }

    fn has_passed(&self) -> bool {
        Instant::now() >= self.at
    }

    fn exceeded(&self) -> StoreError {
        StoreError::TimedOut { limit: self.limit }
    }
}

/// Ends the transaction `conn` has begun around `work`: committed when `work` succeeds, rolled
/// back when it fails.
fn finish_transaction<T>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match work(conn) {
        Ok(value) => {
            <DbConnection as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(error) => {
            // A failed rollback leaves the connection broken; the pool then drops it.
            let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(conn);
            Err(error)
        }
    }
}

/// Runs `work`, whose statements read together, in one read transaction on SQLite: they see
/// one snapshot, and the WAL read lock is taken once rather than once per statement. On
/// PostgreSQL `work` runs as it is.
pub(crate) fn in_read_snapshot<T>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match conn {
        DbConnection::Sqlite(sqlite) => {
            AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN DEFERRED")?;
            finish_transaction(conn, work)
        }
        DbConnection::Postgres(_) => work(conn),
    }
}

/// Rows one `INSERT` statement writes on `conn` when it may write up to `on_postgres`. On
/// SQLite one: a statement that may write several rows first copies every page it touches into
/// a statement journal (so that it can undo itself alone; a temporary file past 64 KiB), which
/// a one-row insert skips. On PostgreSQL many rows per statement save round trips.
pub(crate) fn rows_per_insert(conn: &DbConnection, on_postgres: usize) -> usize {
    match conn {
        DbConnection::Sqlite(_) => 1,
        DbConnection::Postgres(_) => on_postgres,
    }
}

/// Opens a write transaction. On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken up
/// front, so a writer in another process (another server on the same file) makes this one wait
/// out the busy timeout instead of failing a read-to-write lock upgrade with SQLITE_BUSY.
pub(crate) fn begin_write(conn: &mut DbConnection) -> QueryResult<()> {
    match conn {
        DbConnection::Sqlite(sqlite) => AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE"),
        DbConnection::Postgres(postgres) => AnsiTransactionManager::begin_transaction(postgres),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend_by_scheme() {
        assert_eq!(
            DbTarget::parse("sqlite://data/ferridm.db").unwrap(),
            DbTarget::Sqlite(PathBuf::from("data/ferridm.db"))
        );
        assert_eq!(
            DbTarget::parse("sqlite:///var/x.db").unwrap(),
            DbTarget::Sqlite(PathBuf::from("/var/x.db"))
        );
        assert_eq!(
            DbTarget::parse("postgres://u@h/db").unwrap().backend(),
            Backend::Postgres
        );
        assert_eq!(
            DbTarget::parse("postgresql://u@h/db").unwrap().backend(),
            Backend::Postgres
        );
    }

    /// Counting to a hundred million: many seconds of SQLite work in one statement.
    const SQLITE_SLOW: &str =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) SELECT count(*) FROM n";

    /// A statement that runs for seconds on `backend`.
    fn slow_statement(backend: Backend) -> &'static str {
        match backend {
            Backend::Postgres => "SELECT pg_sleep(10)",
            Backend::Sqlite => SQLITE_SLOW,
        }
    }

    /// The `statement_timeout` a plain read on `store`'s next connection runs with (PostgreSQL).
    fn statement_timeout(store: &Store) -> String {
        store
            .read(|conn| {
                Ok(crate::sql::Sql::uncached("SELECT current_setting('statement_timeout')")
                    .typed::<diesel::sql_types::Text>()
                    .get_result::<String>(conn)?)
            })
            .unwrap()
    }

    /// A store on `database` with a pool of one connection, which every use then shares.
    fn one_connection_store(database: &crate::testing::TestDatabase) -> Store {
        let options = StoreOptions {
            pool_size: 1,
            ..StoreOptions::default()
        };
        Store::open(database.url(), &options).unwrap()
    }

    #[test]
    fn a_read_past_its_deadline_times_out_and_leaves_the_connection_clean() {
        for database in crate::testing::TestDatabase::all() {
            // One connection, so every read below runs on the one the timed-out read used.
            let store = one_connection_store(&database);
            let backend = store.backend();
            let limit = Duration::from_millis(1);
            let deadline = Deadline::after(limit).unwrap();
            let started = Instant::now();
            let outcome = store.read_within(Some(&deadline), |conn| {
                conn.batch_execute(slow_statement(backend))?;
                deadline.bound_next_statements(conn)?;
                conn.batch_execute("SELECT 1")?;
                Ok(())
            });
            assert!(
                matches!(outcome, Err(StoreError::TimedOut { limit: reported }) if reported == limit),
                "{backend:?}: {outcome:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{backend:?}: the database interrupted the statement itself"
            );
            match backend {
                Backend::Postgres => assert_eq!(statement_timeout(&store), "0"),
                Backend::Sqlite => {
                    // The progress handler went with the read: an unbounded read runs on.
                    let counted = store.read(|conn| {
                        Ok(crate::sql::Sql::uncached(&SQLITE_SLOW.replace("100000000", "300000"))
                            .typed::<diesel::sql_types::BigInt>()
                            .get_result::<i64>(conn)?)
                    });
                    assert_eq!(counted.unwrap(), 300_000);
                }
            }
            let count = store
                .read_within(Deadline::after(Duration::from_secs(60)).as_ref(), |conn| {
                    Ok(crate::sql::Sql::uncached("SELECT COUNT(*) FROM objects")
                        .typed::<diesel::sql_types::BigInt>()
                        .get_result::<i64>(conn)?)
                })
                .unwrap();
            assert_eq!(count, 0, "{backend:?}");
            if backend == Backend::Postgres {
                assert_eq!(statement_timeout(&store), "0", "after a read that kept its limit");
            }
        }
    }

    /// The `statement_timeout` a bounded read with `limit` runs its first statement with, and
    /// whether its work then sets the timeout itself.
    fn bounded_timeout(store: &Store, limit: Duration, rebind: bool) -> String {
        let deadline = Deadline::after(limit).unwrap();
        store
            .read_within(Some(&deadline), |conn| {
                let setting = crate::sql::Sql::uncached("SELECT current_setting('statement_timeout')")
                    .typed::<diesel::sql_types::Text>()
                    .get_result::<String>(conn)?;
                if rebind {
                    deadline.bound_next_statements(conn)?;
                }
                Ok(setting)
            })
            .unwrap()
    }

    #[test]
    fn bounded_reads_keep_a_session_timeout_that_fits_and_set_one_that_does_not() {
        let Some(database) = crate::testing::TestDatabase::postgres() else {
            return;
        };
        let store = one_connection_store(&database);
        // The session is opened first, so that the first bounded read's budget is not spent on
        // connecting (a millisecond less would set "59999ms").
        assert_eq!(statement_timeout(&store), "0", "a new session runs without one");
        let minute = Duration::from_secs(60);
        assert_eq!(bounded_timeout(&store, minute, false), "1min");
        assert_eq!(
            bounded_timeout(&store, minute, false),
            "1min",
            "kept for the same limit"
        );
        assert_eq!(bounded_timeout(&store, Duration::from_secs(2), false), "2s", "lowered");
        assert_eq!(bounded_timeout(&store, minute, true), "1min", "raised");
        // That read's work set a remainder of its own: the next read sets its limit again.
        let after_rebind = bounded_timeout(&store, Duration::from_millis(59_990), false);
        assert_eq!(after_rebind, "59990ms");
        assert_eq!(statement_timeout(&store), "0", "an unbounded read runs without one");
        assert_eq!(bounded_timeout(&store, Duration::from_secs(2), false), "2s");
    }

    /// The PostgreSQL backend serving the store's next connection.
    fn backend_pid(store: &Store) -> Result<i32, StoreError> {
        store.read(|conn| {
            Ok(crate::sql::Sql::uncached("SELECT pg_backend_pid()")
                .typed::<diesel::sql_types::Integer>()
                .get_result::<i32>(conn)?)
        })
    }

    #[test]
    fn a_connection_that_failed_is_pinged_and_replaced_before_its_next_use() {
        let Some(database) = crate::testing::TestDatabase::postgres() else {
            return;
        };
        let store = one_connection_store(&database);
        let first = backend_pid(&store).unwrap();
        assert_eq!(backend_pid(&store).unwrap(), first, "one pooled connection, reused");
        let mut admin = diesel::PgConnection::establish(database.url()).unwrap();
        admin
            .batch_execute(&format!("SELECT pg_terminate_backend({first}, 10000)"))
            .unwrap();
        // Work that has just succeeded vouches for its connection, so the read right after the
        // backend went away finds out itself; the failure has the connection pinged next time.
        assert!(backend_pid(&store).is_err(), "a read on the terminated session");
        let replaced = backend_pid(&store).unwrap();
        assert_ne!(replaced, first);
        assert_eq!(backend_pid(&store).unwrap(), replaced);
    }

    #[test]
    fn only_sqlite_with_an_idle_connection_reads_without_waiting() {
        for database in crate::testing::TestDatabase::all() {
            let store = one_connection_store(&database);
            let sqlite = store.backend() == Backend::Sqlite;
            assert_eq!(store.reads_without_waiting(), sqlite);
            let held = store.connection().unwrap();
            assert!(!store.reads_without_waiting(), "the only connection is taken");
            drop(held);
            assert_eq!(store.reads_without_waiting(), sqlite);
        }
    }

    /// How many settings rows `conn` sees.
    fn settings_count(conn: &mut DbConnection) -> Result<i64, StoreError> {
        Ok(crate::sql::Sql::uncached("SELECT COUNT(*) FROM store_settings")
            .typed::<diesel::sql_types::BigInt>()
            .get_result::<i64>(conn)?)
    }

    fn add_setting(store: &Store, name: &str) {
        store
            .write(|conn| {
                let mut insert = crate::sql::Sql::uncached("INSERT INTO store_settings (name, value) VALUES (");
                insert.bind_text(name).push(", 'x')");
                Ok(insert.execute(conn)?)
            })
            .unwrap();
    }

    #[test]
    fn reads_in_one_snapshot_miss_a_write_committed_between_them_and_leave_the_connection_current() {
        let database = crate::testing::TestDatabase::sqlite();
        let store = one_connection_store(&database);
        let before = store.read(settings_count).unwrap();
        let (first, second) = store
            .read(|conn| {
                in_read_snapshot(conn, |conn| {
                    let first = settings_count(conn)?;
                    add_setting(&store, "written-between-the-reads");
                    Ok((first, settings_count(conn)?))
                })
            })
            .unwrap();
        assert_eq!(
            (first, second),
            (before, before),
            "both reads see the snapshot of the first"
        );
        // The snapshot ended with the work: the same connection now sees the write.
        assert_eq!(store.read(settings_count).unwrap(), before + 1);

        // Work that fails ends its snapshot too.
        let failed = store.read(|conn| {
            in_read_snapshot(conn, |conn| {
                settings_count(conn)?;
                add_setting(&store, "written-before-the-failure");
                Err::<(), _>(StoreError::NotFound)
            })
        });
        assert!(matches!(failed, Err(StoreError::NotFound)), "{failed:?}");
        assert_eq!(store.read(settings_count).unwrap(), before + 2);
    }

    #[test]
    fn unknown_schemes_and_bare_paths_are_refused() {
        assert!(DbTarget::parse("mysql://x").is_err());
        assert!(DbTarget::parse("data/ferridm.db").is_err());
        assert!(DbTarget::parse("sqlite://").is_err());
    }
}
