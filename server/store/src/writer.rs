//! SQLite's one writer, shared by concurrent writes as a group commit. A write that finds others
//! queued behind it leaves its transaction open for them, and the last of the group — the one
//! that finds nobody queued, or the one that fills the group — commits for all. Every write of
//! the group returns only once that commit has succeeded, so an acknowledged write is as durable
//! as a write committed alone; when the commit fails, every write of the group fails with it.
//! Alone, a write commits at once.
//!
//! Writes run straight in the shared transaction, without a savepoint each: a savepoint makes
//! SQLite copy every page the write touches into a statement journal first (which spills to a
//! temporary file past 64 KiB), about 15 % of a create's CPU. A write that fails
//! without having changed a row (SQLite's change counter says so) leaves the group as it was.
//! One that fails after changing rows, or panics, rolls the whole group back: the other writes
//! of the group run again, each in a savepoint of a new group this time, and so does the failed
//! one, since what made it fail may have been a write that is now undone. The writes that join
//! a group after a write run again run in savepoints too, so that group is not rolled back.
//!
//! The writer has a connection of its own, outside the pool and kept from group to group. In
//! WAL mode a connection drops its whole page cache when it finds that another connection has
//! committed since its last transaction; the writer's own commits never do that to it, so the
//! index pages writes touch stay in its cache instead of being read again for every write.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use diesel::RunQueryDsl;
use diesel::connection::{Connection, SimpleConnection, TransactionManager, TransactionManagerStatus};
use diesel::r2d2::ManageConnection;
use diesel::sql_types::BigInt;

use crate::StoreError;
use crate::checkpoint::{BACKSTOP_PAGES, Checkpointer};
use crate::connection::{DbConnection, Manager, Session, begin_write};
use crate::sql::Sql;

/// Most writes one group commit holds, which bounds how long the first of them waits.
const MAX_GROUP: usize = 64;

/// The writer lock, the writer's connection and the state of the open group.
pub(crate) struct GroupWriter {
    /// Makes the writer's connection (again, after one failed).
    manager: Manager,
    state: Mutex<GroupState>,
    /// Writes waiting for the lock.
    queued: AtomicUsize,
    /// Copies the log into the database file after commits, outside the lock.
    checkpointer: Checkpointer,
}

#[derive(Default)]
struct GroupState {
    /// The connection holding the open transaction, between writes of a group.
    open: Option<Session>,
    /// The writer's connection between groups.
    idle: Option<Session>,
    /// Writes in the open group so far.
    members: usize,
    /// Whether a write run again has joined the open group: the writes after it run in
    /// savepoints too, so that nothing rolls its group back again.
    guarded: bool,
    /// How the open group ended, once it has.
    end: Arc<GroupSignal>,
}

/// How one group ended, for the writes waiting on it. They wait on this lock of their group's,
/// not on the writer's: woken on the writer's lock, every write of the group would queue
/// behind the next group's work only to let go of that lock at once.
#[derive(Default)]
struct GroupSignal {
    end: Mutex<Option<GroupEnd>>,
    ended: Condvar,
}

impl GroupSignal {
    /// Records how the group ended and wakes the writes waiting on it.
    fn set(&self, end: GroupEnd) {
        *self.end.lock().unwrap_or_else(PoisonError::into_inner) = Some(end);
        self.ended.notify_all();
    }

    /// How the group ended, once it has.
    fn wait(&self) -> GroupEnd {
        let mut end = self.end.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(end) = end.as_ref() {
                return end.clone();
            }
            end = self.ended.wait(end).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// How a group ended, for the writes waiting on it.
#[derive(Debug, Clone, PartialEq)]
enum GroupEnd {
    Committed,
    /// The commit failed, for this reason.
    Failed(String),
    /// A write of the group failed after changing rows: its writes must run again.
    RolledBack,
}

/// How one write of a group ended.
enum Member<T> {
    Succeeded(T),
    /// It failed and left the transaction as it found it.
    Refused(StoreError),
    /// It panicked in a savepoint, which was rolled back.
    Panicked(Box<dyn Any + Send>),
    /// It failed (with the panic when it panicked) after changing rows outside a savepoint.
    Tainted(Option<Box<dyn Any + Send>>),
}

impl GroupWriter {
    /// A writer whose connection `manager` makes.
    pub(crate) fn new(manager: Manager) -> Self {
        Self {
            checkpointer: Checkpointer::start(manager.clone()),
            manager,
            state: Mutex::default(),
            queued: AtomicUsize::new(0),
        }
    }

    /// Runs `work` in the open group's transaction (beginning one when none is open) and
    /// returns its outcome once the group is committed. `work` runs again, in a savepoint, when
    /// a write of its group failed after changing rows.
    pub(crate) fn write<T>(
        &self,
        mut work: impl FnMut(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut in_savepoint = false;
        loop {
            match self.write_once(&mut work, in_savepoint) {
                Some(outcome) => return outcome,
                None => in_savepoint = true,
            }
        }
    }

    /// One attempt at [`GroupWriter::write`]: `None` when its group was rolled back.
    fn write_once<T>(
        &self,
        work: &mut impl FnMut(&mut DbConnection) -> Result<T, StoreError>,
        in_savepoint: bool,
    ) -> Option<Result<T, StoreError>> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let conn = match state.open.take() {
            Some(conn) => conn,
            None => match self.begin(state.idle.take()) {
                Ok(conn) => conn,
                Err(error) => return Some(Err(error)),
            },
        };
        let group = Arc::clone(&state.end);
        state.guarded |= in_savepoint;
        let guarded = state.guarded;
        let conn = state.open.insert(conn);
        let member = if guarded {
            run_in_savepoint(conn, work)
        } else {
            run_in_transaction(conn, work)
        };
        state.members += 1;
        let waits_for_others = self.queued.load(Ordering::SeqCst) > 0 && state.members < MAX_GROUP;
        let outcome = match member {
            Member::Succeeded(outcome) => outcome,
            Member::Refused(error) => {
                // It changed nothing, so it need not wait for the commit.
                if !waits_for_others {
                    self.end_group(&mut state, Ending::Commit);
                }
                return Some(Err(error));
            }
            Member::Panicked(panic) => {
                self.end_group(&mut state, Ending::Commit);
                drop(state);
                resume_unwind(panic);
            }
            Member::Tainted(panic) => {
                self.end_group(&mut state, Ending::RollBack);
                drop(state);
                return match panic {
                    Some(panic) => resume_unwind(panic),
                    None => None,
                };
            }
        };
        if !waits_for_others {
            self.end_group(&mut state, Ending::Commit);
        }
        drop(state);
        match group.wait() {
            GroupEnd::RolledBack => None,
            GroupEnd::Failed(reason) => Some(Err(StoreError::GroupCommit(reason))),
            GroupEnd::Committed => Some(Ok(outcome)),
        }
    }

    /// Begins a write transaction on the writer's connection (`kept`, or a new one).
    fn begin(&self, kept: Option<Session>) -> Result<Session, StoreError> {
        let mut conn = match kept {
            Some(conn) => conn,
            None => {
                let mut conn = self.manager.connect().map_err(|error| match error {
                    diesel::r2d2::Error::ConnectionError(error) => StoreError::Connection(error),
                    diesel::r2d2::Error::QueryError(error) => StoreError::Database(error),
                })?;
                conn.batch_execute(&format!("PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}"))?;
                conn
            }
        };
        begin_write(&mut conn)?;
        Ok(conn)
    }

    /// Commits or rolls back the open group, records how that went for its writes and wakes
    /// those waiting; the next write opens a new group. The connection is kept when its
    /// transaction ended cleanly.
    fn end_group(&self, state: &mut GroupState, ending: Ending) {
        let end = match (state.open.take(), ending) {
            (None, _) => GroupEnd::Committed,
            (Some(mut conn), Ending::Commit) => {
                match <DbConnection as Connection>::TransactionManager::commit_transaction(&mut conn) {
                    Ok(()) => {
                        state.idle = Some(conn);
                        self.checkpointer.committed();
                        GroupEnd::Committed
                    }
                    // diesel rolls the transaction back itself when its commit fails.
                    Err(error) => GroupEnd::Failed(error.to_string()),
                }
            }
            (Some(mut conn), Ending::RollBack) => {
                if roll_back_entirely(&mut conn) {
                    state.idle = Some(conn);
                }
                GroupEnd::RolledBack
            }
        };
        std::mem::take(&mut state.end).set(end);
        state.members = 0;
        state.guarded = false;
    }
}

/// What ends a group.
#[derive(Clone, Copy)]
enum Ending {
    Commit,
    RollBack,
}

/// Runs `work` straight in the open transaction, telling by SQLite's count of changed rows
/// whether a failure left anything behind.
fn run_in_transaction<T>(
    conn: &mut DbConnection,
    work: &mut impl FnMut(&mut DbConnection) -> Result<T, StoreError>,
) -> Member<T> {
    let Ok(before) = changed_rows(conn) else {
        return run_in_savepoint(conn, work);
    };
    match catch_unwind(AssertUnwindSafe(|| work(conn))) {
        Ok(Ok(outcome)) => Member::Succeeded(outcome),
        Ok(Err(error)) if changed_rows(conn).is_ok_and(|after| after == before) && depth(conn) == Some(1) => {
            Member::Refused(error)
        }
        Ok(Err(_)) => Member::Tainted(None),
        Err(panic) => Member::Tainted(Some(panic)),
    }
}

/// Runs `work` in a savepoint of the open transaction (diesel's nested transaction: released
/// when it succeeds, rolled back to when it fails). A panic is caught, after rolling the
/// savepoint back, so that the group can still be finished.
fn run_in_savepoint<T>(
    conn: &mut DbConnection,
    work: &mut impl FnMut(&mut DbConnection) -> Result<T, StoreError>,
) -> Member<T> {
    match catch_unwind(AssertUnwindSafe(|| conn.transaction(&mut *work))) {
        Ok(Ok(outcome)) => Member::Succeeded(outcome),
        Ok(Err(error)) => Member::Refused(error),
        Err(panic) => {
            if <DbConnection as Connection>::TransactionManager::rollback_transaction(conn).is_ok() {
                Member::Panicked(panic)
            } else {
                Member::Tainted(Some(panic))
            }
        }
    }
}

/// Rows the connection's statements have inserted, updated or deleted since it was opened.
fn changed_rows(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(Sql::cached("SELECT total_changes()")
        .typed::<BigInt>()
        .get_result(conn)?)
}

/// How many transactions diesel has open on the connection (the group's, and savepoints
/// within it), `None` when it cannot tell.
fn depth(conn: &mut DbConnection) -> Option<u32> {
    match <DbConnection as Connection>::TransactionManager::transaction_manager_status_mut(conn) {
        TransactionManagerStatus::Valid(status) => Some(status.transaction_depth().map_or(0, |depth| depth.get())),
        TransactionManagerStatus::InError => None,
    }
}

/// Rolls back every transaction open on the connection; `false` when it could not, and the
/// connection must not be used again.
fn roll_back_entirely(conn: &mut DbConnection) -> bool {
    while let Some(open) = depth(conn) {
        if open == 0 {
            return true;
        }
        if <DbConnection as Connection>::TransactionManager::rollback_transaction(conn).is_err() {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::sync::mpsc;

    use diesel::connection::SimpleConnection;
    use diesel::sql_types::Text;

    use super::*;

    /// A writer on a new SQLite file with one table `t (k TEXT PRIMARY KEY)`.
    fn writer() -> (GroupWriter, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut setup = diesel::SqliteConnection::establish(&path.to_string_lossy()).unwrap();
        setup
            .batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY)")
            .unwrap();
        (GroupWriter::new(Manager::sqlite(path)), dir)
    }

    fn insert(conn: &mut DbConnection, key: &str) -> Result<(), StoreError> {
        let mut sql = Sql::cached("INSERT INTO t (k) VALUES (");
        sql.bind_text(key).push(")");
        sql.execute(conn)?;
        Ok(())
    }

    fn keys(writer: &GroupWriter) -> Vec<String> {
        writer
            .write(|conn| Ok(Sql::cached("SELECT k FROM t ORDER BY k").typed::<Text>().load(conn)?))
            .unwrap()
    }

    /// A test's write.
    type TestWrite<'w> = Box<dyn FnMut(&mut DbConnection) -> Result<(), StoreError> + Send + 'w>;

    /// Runs `first` (a write that inserts "a") so that it holds the writer while `others` queue
    /// behind it, then lets it finish: all of them share its group. Returns how often `first`'s
    /// work ran and the outcome of each of the others.
    fn grouped_behind_a_first_write(
        writer: &GroupWriter,
        others: Vec<TestWrite<'_>>,
    ) -> (u32, Vec<std::thread::Result<Result<(), StoreError>>>) {
        let runs = AtomicU32::new(0);
        let (holding, held) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        std::thread::scope(|scope| {
            let runs = &runs;
            let first = scope.spawn(move || {
                writer.write(|conn| {
                    insert(conn, "a")?;
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        holding.send(()).unwrap();
                        released.recv().unwrap();
                    }
                    Ok(())
                })
            });
            held.recv().unwrap();
            let count = others.len();
            let others: Vec<_> = others
                .into_iter()
                .map(|mut work| scope.spawn(move || writer.write(|conn| work(conn))))
                .collect();
            while writer.queued.load(Ordering::SeqCst) < count {
                std::thread::yield_now();
            }
            release.send(()).unwrap();
            first.join().unwrap().unwrap();
            let outcomes = others.into_iter().map(|other| other.join()).collect();
            (runs.load(Ordering::SeqCst), outcomes)
        })
    }

    #[test]
    fn a_write_failing_before_changing_anything_leaves_its_group_alone() {
        let (writer, _dir) = writer();
        let (first_runs, outcomes) = grouped_behind_a_first_write(
            &writer,
            vec![
                Box::new(|_| Err(StoreError::NotFound)),
                Box::new(|conn| insert(conn, "c")),
            ],
        );
        assert_eq!(first_runs, 1, "nothing had to run again");
        assert!(matches!(outcomes[0], Ok(Err(StoreError::NotFound))));
        assert!(matches!(outcomes[1], Ok(Ok(()))));
        assert_eq!(keys(&writer), ["a", "c"]);
    }

    /// The keys in the database file alone (a copy of it without its log).
    fn keys_in_the_file(dir: &tempfile::TempDir) -> Vec<String> {
        let copy = dir.path().join("copy.db");
        std::fs::copy(dir.path().join("w.db"), &copy).unwrap();
        let mut conn = DbConnection::Sqlite(diesel::SqliteConnection::establish(&copy.to_string_lossy()).unwrap());
        Sql::cached("SELECT k FROM t ORDER BY k")
            .typed::<Text>()
            .load(&mut conn)
            .unwrap()
    }

    #[test]
    fn commits_reach_the_database_file_in_the_background() {
        let (writer, dir) = writer();
        writer.write(|conn| insert(conn, "a")).unwrap();
        writer.write(|conn| insert(conn, "b")).unwrap();
        writer.checkpointer.wait_for_the_next();
        assert_eq!(keys_in_the_file(&dir), ["a", "b"]);
        writer.write(|conn| insert(conn, "c")).unwrap();
        writer.checkpointer.wait_for_the_next();
        assert_eq!(keys_in_the_file(&dir), ["a", "b", "c"]);
    }

    #[test]
    fn a_write_failing_after_changing_rows_undoes_them_and_its_group_runs_again() {
        let (writer, _dir) = writer();
        let failed_runs = AtomicU32::new(0);
        let (first_runs, outcomes) = grouped_behind_a_first_write(
            &writer,
            vec![
                Box::new(|conn| {
                    failed_runs.fetch_add(1, Ordering::SeqCst);
                    insert(conn, "b")?;
                    Err(StoreError::RevisionMismatch)
                }),
                Box::new(|conn| insert(conn, "c")),
            ],
        );
        assert_eq!(
            first_runs, 2,
            "the first write's group was rolled back and it ran again"
        );
        assert_eq!(
            failed_runs.load(Ordering::SeqCst),
            2,
            "the failed write ran again, in a savepoint"
        );
        assert!(matches!(outcomes[0], Ok(Err(StoreError::RevisionMismatch))));
        assert!(matches!(outcomes[1], Ok(Ok(()))));
        assert_eq!(keys(&writer), ["a", "c"], "nothing of the failed write is left");
    }

    #[test]
    fn a_write_panicking_after_changing_rows_undoes_them_and_the_others_still_land() {
        let (writer, _dir) = writer();
        let (first_runs, outcomes) = grouped_behind_a_first_write(
            &writer,
            vec![
                Box::new(|conn| {
                    insert(conn, "b")?;
                    panic!("a bug in a write");
                }),
                Box::new(|conn| insert(conn, "c")),
            ],
        );
        assert_eq!(first_runs, 2);
        assert!(outcomes[0].is_err(), "the panic reaches its caller");
        assert!(matches!(outcomes[1], Ok(Ok(()))));
        assert_eq!(keys(&writer), ["a", "c"]);
    }
}
