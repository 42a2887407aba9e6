//! Embedded migrations, one set per backend under the same names, applied at open by one node
//! at a time: under a PostgreSQL advisory lock (per schema), or a lock on a file beside the
//! SQLite database, so nodes started together on a fresh database all come up. A database
//! migrated by a newer ferridm is refused. SQLite's audit trail lives in a file of its own
//! ([`sqlite_audit_path`]), prepared beside the migrations.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use diesel::backend::Backend;
use diesel::connection::SimpleConnection;
use diesel::migration::{MigrationSource, MigrationVersion};
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::connection::DbConnection;
use crate::flatten::{SHORT_CHARS, unique_key};
use crate::sql::Sql;
use crate::{DbTarget, StoreError};

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The migration that bounds index keys; unique values stored before it are re-keyed by
/// [`rekey_long_unique_values`] once it has run.
const BOUNDED_KEYS: &str = "2026-12-04-000005";

/// How long an SQLite migration waits for another process's lock on the file.
const SQLITE_BUSY_MILLIS: u32 = 60_000;

/// Applies every pending migration of the target's backend (and the one-time work that
/// follows one), one node at a time; on SQLite the audit file is prepared first, under the
/// same lock (processes opening a new file at once would otherwise race to set its journal
/// mode, and one could find it locked).
pub(crate) fn run(target: &DbTarget) -> Result<(), StoreError> {
    match target {
        DbTarget::Sqlite(path) => {
            let _lock = lock_file(path)?;
            prepare_sqlite_audit(&sqlite_audit_path(path))?;
            let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy())?;
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {SQLITE_BUSY_MILLIS}; PRAGMA journal_mode = WAL;"
            ))?;
            let rekey = apply(&mut conn, SQLITE)?;
            let mut conn = DbConnection::Sqlite(conn);
            move_sqlite_audit_events(&mut conn, &sqlite_audit_path(path))?;
            finish(rekey, conn)
        }
        DbTarget::Postgres(url) => {
            let mut conn = diesel::PgConnection::establish(url)?;
            // Held by this session until it ends with the connection, after `finish`.
            conn.batch_execute(
                "SELECT pg_advisory_lock(hashtextextended('ferridm-migrations/' || current_schema(), 0))",
            )?;
            let rekey = apply(&mut conn, POSTGRES)?;
            finish(rekey, DbConnection::Postgres(conn))
        }
    }
}

/// The SQLite file that holds the audit trail of the database at `database`:
/// `<name>-audit.<extension>` beside it (`data/ferridm.db` → `data/ferridm-audit.db`).
pub(crate) fn sqlite_audit_path(database: &Path) -> PathBuf {
    let mut name = database.file_stem().unwrap_or_default().to_owned();
    name.push("-audit");
    if let Some(extension) = database.extension() {
        name.push(".");
        name.push(extension);
    }
    database.with_file_name(name)
}

/// The layout of the SQLite audit file, as `PRAGMA user_version` records it.
const SQLITE_AUDIT_VERSION: i64 = 1;

/// The SQLite audit file's table: as `audit_events` in the PostgreSQL migrations (one row per
/// event, the queryable fields as folded columns).
const SQLITE_AUDIT_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_events (
    pk             INTEGER PRIMARY KEY,
    topic          TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    event_ts       TEXT,
    event_name     TEXT,
    transaction_id TEXT,
    user_id        TEXT,
    object_id      TEXT,
    operation      TEXT,
    status         TEXT,
    body           TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_events_id ON audit_events (topic, event_id);
CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events (topic, event_ts);
CREATE INDEX IF NOT EXISTS audit_events_transaction ON audit_events (topic, transaction_id);
CREATE INDEX IF NOT EXISTS audit_events_user ON audit_events (topic, user_id);
CREATE INDEX IF NOT EXISTS audit_events_object ON audit_events (topic, object_id) WHERE object_id IS NOT NULL;
";

/// The columns an audit row is copied with.
const AUDIT_COLUMNS: &str =
    "topic, event_id, event_ts, event_name, transaction_id, user_id, object_id, operation, status, body";

/// Creates the SQLite audit file and its table where missing and refuses one laid out by a
/// newer ferridm. It is kept in WAL mode like the database: a batch then costs appends to the
/// log and no `fsync` (a rollback journal cost two, and a file created and removed, per batch,
/// which took more of the server's time than the pages a checkpoint writes again).
fn prepare_sqlite_audit(path: &Path) -> Result<(), StoreError> {
    let mut conn = DbConnection::Sqlite(diesel::SqliteConnection::establish(&path.to_string_lossy())?);
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {SQLITE_BUSY_MILLIS}; PRAGMA journal_mode = WAL;"
    ))?;
    let version: i64 = Sql::uncached("PRAGMA user_version")
        .typed::<BigInt>()
        .get_result(&mut conn)?;
    if version > SQLITE_AUDIT_VERSION {
        return Err(StoreError::Migration(format!(
            "the audit database {} was laid out by a newer ferridm (version {version}); run a version that knows it",
            path.display()
        )));
    }
    conn.batch_execute(SQLITE_AUDIT_SCHEMA)?;
    conn.batch_execute(&format!("PRAGMA user_version = {SQLITE_AUDIT_VERSION}"))?;
    Ok(())
}

/// Copies audit events the migrations set aside (`audit_events_moving`) into the audit file,
/// then drops them from the database. Safe to repeat: an event already copied is kept once.
fn move_sqlite_audit_events(conn: &mut DbConnection, audit_path: &Path) -> Result<(), StoreError> {
    let pending: i64 =
        Sql::uncached("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_events_moving'")
            .typed::<BigInt>()
            .get_result(conn)?;
    if pending == 0 {
        return Ok(());
    }
    let mut attach = Sql::uncached("ATTACH DATABASE ");
    attach.bind_text(audit_path.to_string_lossy()).push(" AS audit_file");
    attach.execute(conn)?;
    let moved = conn.transaction(|conn| {
        conn.batch_execute(&format!(
            "INSERT OR IGNORE INTO audit_file.audit_events ({AUDIT_COLUMNS}) \
             SELECT {AUDIT_COLUMNS} FROM main.audit_events_moving ORDER BY pk; \
             DROP TABLE main.audit_events_moving;"
        ))
    });
    conn.batch_execute("DETACH DATABASE audit_file")?;
    Ok(moved?)
}

/// An exclusive lock on `<database>.lock`, held until dropped (other processes wait for it).
fn lock_file(database: &Path) -> Result<std::fs::File, StoreError> {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    let io_error = |source| StoreError::Io {
        path: Path::new(&name).display().to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)
        .map_err(io_error)?;
    file.lock().map_err(io_error)?;
    Ok(file)
}

/// Refuses a database with migrations this build does not know, then applies the pending
/// ones; true when the bounded-keys migration was among them.
fn apply<C, DB>(conn: &mut C, migrations: EmbeddedMigrations) -> Result<bool, StoreError>
where
    DB: Backend,
    C: MigrationHarness<DB> + Connection<Backend = DB>,
    EmbeddedMigrations: MigrationSource<DB>,
{
    let failed = |error: Box<dyn std::error::Error + Send + Sync>| StoreError::Migration(error.to_string());
    let known: BTreeSet<String> = MigrationSource::<DB>::migrations(&migrations)
        .map_err(failed)?
        .iter()
        .map(|migration| migration.name().version().to_string())
        .collect();
    let unknown: Vec<String> = conn
        .applied_migrations()
        .map_err(failed)?
        .iter()
        .map(MigrationVersion::to_string)
        .filter(|version| !known.contains(version))
        .collect();
    if !unknown.is_empty() {
        return Err(StoreError::Migration(format!(
            "the database was migrated by a newer ferridm (migrations {} are unknown to this one); \
             run a version that includes them",
            unknown.join(", ")
        )));
    }
    let applied = conn.run_pending_migrations(migrations).map_err(failed)?;
    Ok(applied
        .iter()
        .any(|version| version.to_string().starts_with(BOUNDED_KEYS)))
}

/// The one-time work after the migrations, still under the lock.
fn finish(rekey: bool, mut conn: DbConnection) -> Result<(), StoreError> {
    if rekey {
        rekey_long_unique_values(&mut conn)?;
    }
    Ok(())
}

/// Gives every unique value longer than an index key its bounded form (SQL cannot compute the
/// digest the key ends in, so this step follows the migration in code).
fn rekey_long_unique_values(conn: &mut DbConnection) -> Result<(), StoreError> {
    conn.transaction(|conn| {
        let long: Vec<(String, String, String)> = Sql::uncached(&format!(
            "SELECT otype, prop, value FROM unique_values WHERE length(value) > {SHORT_CHARS}"
        ))
        .typed::<(Text, Text, Text)>()
        .load(conn)?;
        for (object_type, property, value) in long {
            let mut rekey = Sql::uncached("UPDATE unique_values SET value = ");
            rekey
                .bind_text(unique_key(&value))
                .push(" WHERE otype = ")
                .bind_text(object_type)
                .push(" AND prop = ")
                .bind_text(property)
                .push(" AND value = ")
                .bind_text(value);
            rekey.execute(conn)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    fn names(backend: &str) -> BTreeSet<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn both_backends_have_the_same_migrations() {
        let sqlite = names("sqlite");
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, names("postgres"));
    }
}
