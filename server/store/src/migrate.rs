//! Embedded migrations, one set per backend under the same names, applied at open by one node
//! at a time: under a PostgreSQL advisory lock (per schema), or a lock on a file beside the
//! SQLite database, so nodes started together on a fresh database all come up. A database
//! migrated by a newer ferridm is refused.

use std::collections::BTreeSet;
use std::path::Path;

use diesel::backend::Backend;
use diesel::connection::SimpleConnection;
use diesel::migration::{MigrationSource, MigrationVersion};
use diesel::sql_types::Text;
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
/// follows one), one node at a time.
pub(crate) fn run(target: &DbTarget) -> Result<(), StoreError> {
    match target {
        DbTarget::Sqlite(path) => {
            let _lock = lock_file(path)?;
            let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy())?;
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {SQLITE_BUSY_MILLIS}; PRAGMA journal_mode = WAL;"
            ))?;
            let rekey = apply(&mut conn, SQLITE)?;
            finish(rekey, DbConnection::Sqlite(conn))
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
