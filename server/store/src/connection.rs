//! Connections: the backend is chosen from the URL scheme (`sqlite://…` or `postgres://…`;
//! anything else is refused), connections come from an r2d2 pool behind one
//! `MultiConnection` type, SQLite gets its pragmas on every connection, and migrations for the
//! chosen backend run once at open.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, R2D2Connection};

use crate::StoreError;
use crate::migrate;

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
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            connection_timeout: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(10),
        }
    }
}

pub(crate) struct Manager {
    target: DbTarget,
    busy_timeout_ms: u128,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.target {
            DbTarget::Sqlite(path) => {
                let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy())
                    .map_err(r2d2::Error::ConnectionError)?;
                let pragmas = format!(
                    "PRAGMA busy_timeout = {}; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                    self.busy_timeout_ms
                );
                conn.batch_execute(&pragmas).map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
            DbTarget::Postgres(url) => diesel::PgConnection::establish(url)
                .map(DbConnection::Postgres)
                .map_err(r2d2::Error::ConnectionError),
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// The store: a pool of connections to one database with its migrations applied.
pub struct Store {
    pool: r2d2::Pool<Manager>,
    backend: Backend,
    /// SQLite has one writer: our own writers queue here rather than in SQLite's busy wait.
    /// PostgreSQL needs no such lock.
    sqlite_writer: Option<Mutex<()>>,
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
        };
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(options.connection_timeout)
            .build(manager)?;
        Ok(Self {
            pool,
            backend,
            sqlite_writer: (backend == Backend::Sqlite).then(|| Mutex::new(())),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn connection(&self) -> Result<PooledConnection, StoreError> {
        Ok(self.pool.get()?)
    }

    /// Runs `work` as one write transaction (serialised with other writers on SQLite).
    pub(crate) fn write<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _guard: Option<MutexGuard<'_, ()>> = self
            .sqlite_writer
            .as_ref()
            .map(|lock| lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let mut pooled = self.connection()?;
        let conn: &mut DbConnection = &mut pooled;
        begin_write(conn)?;
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

    /// Runs `work` on a pooled connection without an explicit transaction.
    pub(crate) fn read<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut pooled = self.connection()?;
        work(&mut pooled)
    }
}

/// Opens a write transaction. On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken up
/// front, so a writer in another process (another server on the same file) makes this one wait
/// out the busy timeout instead of failing a read-to-write lock upgrade with SQLITE_BUSY.
fn begin_write(conn: &mut DbConnection) -> QueryResult<()> {
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

    #[test]
    fn unknown_schemes_and_bare_paths_are_refused() {
        assert!(DbTarget::parse("mysql://x").is_err());
        assert!(DbTarget::parse("data/ferridm.db").is_err());
        assert!(DbTarget::parse("sqlite://").is_err());
    }
}
