//! SQLite's one writer, shared by concurrent writes as a group commit. A write that finds others
//! queued behind it leaves its transaction open for them: each runs in a savepoint of the shared
//! transaction (so a failing write undoes only its own changes), and the last of the group —
//! the one that finds nobody queued, or the one that fills the group — commits for all. Every
//! write of the group returns only once that commit has succeeded, so an acknowledged write is
//! as durable as a write committed alone; when the commit fails, every write of the group fails
//! with it. Alone, a write commits at once, as before.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

use diesel::connection::{Connection, TransactionManager};

use crate::StoreError;
use crate::connection::{DbConnection, PooledConnection};

/// Most writes one group commit holds, which bounds how long the first of them waits.
const MAX_GROUP: usize = 64;

/// The writer lock and the state of the open group.
#[derive(Default)]
pub(crate) struct GroupWriter {
    state: Mutex<GroupState>,
    committed: Condvar,
    /// Writes waiting for the lock.
    queued: AtomicUsize,
}

#[derive(Default)]
struct GroupState {
    /// The connection holding the open transaction, between writes of a group.
    open: Option<PooledConnection>,
    /// Writes in the open group so far.
    members: usize,
    /// How the open group ended, once it has: `None` committed, `Some` why the commit failed.
    outcome: Arc<OnceLock<Option<String>>>,
}

impl GroupWriter {
    /// Runs `work` in the open group's transaction (opening one with `open`, which returns a
    /// connection in a write transaction, when none is open) and returns its outcome once the
    /// group is committed.
    pub(crate) fn write<T>(
        &self,
        open: impl FnOnce() -> Result<PooledConnection, StoreError>,
        work: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let conn = match state.open.take() {
            Some(conn) => conn,
            None => open()?,
        };
        let group = Arc::clone(&state.outcome);
        let outcome = in_savepoint(state.open.insert(conn), work);
        state.members += 1;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(panic) => {
                self.finish_group(&mut state);
                drop(state);
                resume_unwind(panic);
            }
        };
        let waited_for = self.queued.load(Ordering::SeqCst) > 0 && state.members < MAX_GROUP;
        if outcome.is_err() {
            // A failed write changed nothing, so it need not wait for the commit.
            if !waited_for {
                self.finish_group(&mut state);
            }
            return outcome;
        }
        if waited_for {
            drop(
                self.committed
                    .wait_while(state, |_| group.get().is_none())
                    .unwrap_or_else(PoisonError::into_inner),
            );
        } else {
            self.finish_group(&mut state);
            drop(state);
        }
        match group.get() {
            Some(Some(reason)) => Err(StoreError::GroupCommit(reason.clone())),
            _ => outcome,
        }
    }

    /// Commits the open group, records how that went for its writes and wakes those waiting;
    /// the next write opens a new group.
    fn finish_group(&self, state: &mut GroupState) {
        // diesel rolls the transaction back itself when its commit fails.
        let failure = state.open.take().and_then(|mut conn| {
            <DbConnection as Connection>::TransactionManager::commit_transaction(&mut conn)
                .err()
                .map(|error| error.to_string())
        });
        let _ = std::mem::take(&mut state.outcome).set(failure);
        state.members = 0;
        self.committed.notify_all();
    }
}

/// Runs `work` in a savepoint of the open transaction (diesel's nested transaction: released
/// when it succeeds, rolled back to when it fails). A panic is caught, after rolling the
/// savepoint back, so that the group can still be finished, and returned.
fn in_savepoint<T>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<Result<T, StoreError>, Box<dyn std::any::Any + Send>> {
    catch_unwind(AssertUnwindSafe(|| conn.transaction(work))).inspect_err(|_| {
        let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(conn);
    })
}
