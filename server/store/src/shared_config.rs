//! Configuration shared by the nodes of a PostgreSQL database (`config_entries`): a change made
//! over REST on one node is recorded with the next version and announced on the
//! `ferridm_config` channel; every node follows the versions (woken by the announcement, or by
//! polling) and applies the changes it has not seen.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Connection, RunQueryDsl};

use crate::connection::DbConnection;
use crate::sql::{Bind, Sql};
use crate::{Store, StoreError};

/// The notification channel of configuration changes.
const CHANNEL: &str = "ferridm_config";

/// How often a waiting listener looks for announcements.
const LISTEN_STEP: Duration = Duration::from_millis(20);

/// One recorded change: a config id's content (`None`: removed) as of `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The config id (`managed`, `selfservice-registration`).
    pub id: String,
    /// The file's text, or `None` when the file was removed.
    pub content: Option<String>,
    /// The version this change was given.
    pub version: i64,
}

impl Store {
    /// Records a configuration change for every node and returns its version (one more than
    /// any before it). On PostgreSQL the change is announced when it commits.
    pub fn put_config_entry(&self, id: &str, content: Option<&str>) -> Result<i64, StoreError> {
        self.write(|conn| {
            if let DbConnection::Postgres(postgres) = conn {
                // Versions are handed out one change at a time across the nodes.
                postgres.batch_execute(&format!(
                    "SELECT pg_advisory_xact_lock(hashtextextended('{CHANNEL}/' || current_schema(), 0))"
                ))?;
            }
            let version: i64 = Sql::cached("SELECT COALESCE(MAX(version), 0) + 1 FROM config_entries")
                .typed::<BigInt>()
                .get_result(conn)?;
            let mut upsert = Sql::cached("INSERT INTO config_entries (id, content, version) VALUES (");
            upsert
                .bind_text(id)
                .push(", ")
                .bind(Bind::NullableText(content.map(str::to_owned)))
                .push(", ")
                .bind_i64(version)
                .push(") ON CONFLICT (id) DO UPDATE SET content = excluded.content, version = excluded.version");
            upsert.execute(conn)?;
            if let DbConnection::Postgres(postgres) = conn {
                postgres.batch_execute(&format!("NOTIFY {CHANNEL}"))?;
            }
            Ok(version)
        })
    }

    /// The changes recorded after `version`, oldest first.
    pub fn config_entries_after(&self, version: i64) -> Result<Vec<ConfigEntry>, StoreError> {
        let mut sql = Sql::cached("SELECT id, content, version FROM config_entries WHERE version > ");
        sql.bind_i64(version).push(" ORDER BY version");
        let rows: Vec<(String, Option<String>, i64)> =
            self.read(|conn| Ok(sql.typed::<(Text, Nullable<Text>, BigInt)>().load(conn)?))?;
        Ok(rows
            .into_iter()
            .map(|(id, content, version)| ConfigEntry { id, content, version })
            .collect())
    }

    /// A connection listening for configuration announcements (PostgreSQL only).
    pub fn config_listener(&self) -> Result<Option<ConfigListener>, StoreError> {
        let Some(url) = &self.postgres_url else {
            return Ok(None);
        };
        let mut conn = diesel::PgConnection::establish(url)?;
        conn.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        Ok(Some(ConfigListener { conn }))
    }
}

/// A PostgreSQL session listening on the configuration channel.
pub struct ConfigListener {
    conn: diesel::PgConnection,
}

impl std::fmt::Debug for ConfigListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigListener").finish_non_exhaustive()
    }
}

impl ConfigListener {
    /// Waits up to `timeout` for an announcement; true when one (or more) arrived. An error
    /// means the session is gone (the caller falls back to polling or listens anew).
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut announced = false;
            for notification in self.conn.notifications_iter() {
                notification?;
                announced = true;
            }
            if announced {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(LISTEN_STEP);
        }
    }
}
