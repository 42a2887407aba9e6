//! Turns on one object across every node of a PostgreSQL database: a transaction-scoped
//! advisory lock keyed by the object's type and id, held on a connection of the store's turn
//! pool while a read-modify-write of the object runs, so writers on several nodes take turns instead of
//! racing on the revision check. SQLite needs none: its writers are one process's and take
//! turns in that process.

use std::time::Duration;

use diesel::Connection;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use sha2::{Digest, Sha256};

use crate::connection::{DbConnection, PooledConnection};
use crate::{Store, StoreError};

/// How long a writer waits for another node's turn on the same object before giving up.
const LOCK_TIMEOUT_MILLIS: u64 = 10_000;

/// How long a writer waits for a free turn connection before writing without a turn.
const TURN_CHECKOUT: Duration = Duration::from_millis(100);

/// A held turn on one object; dropping it ends the turn.
pub struct ObjectTurn {
    conn: PooledConnection,
}

impl std::fmt::Debug for ObjectTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectTurn").finish_non_exhaustive()
    }
}

impl Drop for ObjectTurn {
    fn drop(&mut self) {
        // Ending the transaction releases the lock; a connection whose commit failed is marked
        // broken and the pool drops it. One whose commit succeeded goes back without needing
        // a ping before its next turn.
        let conn: &mut DbConnection = &mut self.conn;
        let committed =
            <DbConnection as Connection>::TransactionManager::commit_transaction(conn).map_err(StoreError::from);
        self.conn.vouch(&committed);
    }
}

/// The advisory-lock key of an object: the first eight bytes of a SHA-256 digest of its type
/// and id (the same on every node).
fn lock_key(object_type: &str, id: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(object_type.as_bytes())
        .chain_update([0])
        .chain_update(id.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

impl Store {
    /// Waits for this object's turn among the writers of every node (PostgreSQL). `None` on
    /// SQLite, where the caller's own turns suffice, and when every turn connection is busy
    /// (the write then meets others through the revision check alone).
    pub fn object_turn(&self, object_type: &str, id: &str) -> Result<Option<ObjectTurn>, StoreError> {
        let Some(turn_pool) = &self.turn_pool else {
            return Ok(None);
        };
        let Some(mut conn) = turn_pool
            .try_get()
            .or_else(|| turn_pool.get_timeout(TURN_CHECKOUT).ok())
        else {
            tracing::debug!("no connection free for a writer's turn");
            return Ok(None);
        };
        let db: &mut DbConnection = &mut conn;
        let DbConnection::Postgres(postgres) = db else {
            return Ok(None);
        };
        let key = lock_key(object_type, id);
        // One round trip: the transaction, its lock timeout and the lock. The key is a number
        // computed here, so it is written into the statement as is.
        let locked = AnsiTransactionManager::begin_transaction_sql(
            postgres,
            &format!("BEGIN; SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MILLIS}ms'; SELECT pg_advisory_xact_lock({key})"),
        );
        if let Err(error) = locked {
            // The transaction may have begun before the lock timed out: end it, so that the
            // connection goes back to the pool outside one (and is pinged before its next use).
            let _ = postgres.batch_execute("ROLLBACK");
            return Err(error.into());
        }
        Ok(Some(ObjectTurn { conn }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_type_and_id_only() {
        assert_eq!(lock_key("user", "a"), lock_key("user", "a"));
        assert_ne!(lock_key("user", "a"), lock_key("user", "b"));
        assert_ne!(lock_key("user", "ab"), lock_key("userab", ""));
        assert_ne!(lock_key("user", "a"), lock_key("role", "a"));
    }
}
