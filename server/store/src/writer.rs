//! SQLite's one writer, shared by concurrent writes as a group commit. A write that finds others
//! queued behind it leaves its transaction open for them: each runs in a savepoint of the shared
//! transaction (so a failing write undoes only its own changes), and the last of the group —
//! the one that finds nobody queued, or the one that fills the group — commits for all. Every
//! write of the group returns only once that commit has succeeded, so an acknowledged write is
//! as durable as a write committed alone; when the commit fails, every write of the group fails
//! with it. Alone, a write commits at once, as before.
//!
//! The writer has a connection of its own, outside the pool and kept from group to group. In
//! WAL mode a connection drops its whole page cache when it finds that another connection has
//! committed since its last transaction; the writer's own commits never do that to it, so the
//! index pages writes touch stay in its cache instead of being read again for every write.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

use diesel::connection::{Connection, TransactionManager};
use diesel::r2d2::ManageConnection;

use crate::StoreError;
use crate::connection::{DbConnection, Manager, Session, begin_write};

/// Most writes one group commit holds, which bounds how long the first of them waits.
const MAX_GROUP: usize = 64;

/// The writer lock, the writer's connection and the state of the open group.
pub(crate) struct GroupWriter {
    /// Makes the writer's connection (again, after one failed).
    manager: Manager,
    state: Mutex<GroupState>,
    committed: Condvar,
    /// Writes waiting for the lock.
    queued: AtomicUsize,
}

#[derive(Default)]
struct GroupState {
    /// The connection holding the open transaction, between writes of a group.
    open: Option<Session>,
    /// The writer's connection between groups.
    idle: Option<Session>,
    /// Writes in the open group so far.
    members: usize,
    /// How the open group ended, once it has: `None` committed, `Some` why the commit failed.
    outcome: Arc<OnceLock<Option<String>>>,
}

impl GroupWriter {
    /// A writer whose connection `manager` makes.
    pub(crate) fn new(manager: Manager) -> Self {
        Self {
            manager,
            state: Mutex::default(),
            committed: Condvar::new(),
            queued: AtomicUsize::new(0),
        }
    }

    /// Runs `work` in the open group's transaction (beginning one when none is open) and
    /// returns its outcome once the group is committed.
    pub(crate) fn write<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let conn = match state.open.take() {
            Some(conn) => conn,
            None => self.begin(state.idle.take())?,
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

    /// Begins a write transaction on the writer's connection (`kept`, or a new one).
    fn begin(&self, kept: Option<Session>) -> Result<Session, StoreError> {
        let mut conn = match kept {
            Some(conn) => conn,
            None => self.manager.connect().map_err(|error| match error {
                diesel::r2d2::Error::ConnectionError(error) => StoreError::Connection(error),
                diesel::r2d2::Error::QueryError(error) => StoreError::Database(error),
            })?,
        };
        begin_write(&mut conn)?;
        Ok(conn)
    }

    /// Commits the open group, records how that went for its writes and wakes those waiting;
    /// the next write opens a new group. The connection is kept unless the commit failed.
    fn finish_group(&self, state: &mut GroupState) {
        let failure = match state.open.take() {
            Some(mut conn) => match <DbConnection as Connection>::TransactionManager::commit_transaction(&mut conn) {
                Ok(()) => {
                    state.idle = Some(conn);
                    None
                }
                // diesel rolls the transaction back itself when its commit fails.
                Err(error) => Some(error.to_string()),
            },
            None => None,
        };
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
