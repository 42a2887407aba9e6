//! SQLite checkpoints off the write path. By default SQLite copies the write-ahead log back
//! into the database file (with an fsync) inside the commit that makes the log pass 1,000
//! pages, while the writer holds the write lock: every queued write waits for that copy. Here a
//! thread of its own, on a connection of its own, runs a passive checkpoint (one that never
//! blocks the writer or readers) after commits, at most once per [`PACE`]. The writer still
//! checkpoints by itself once the log holds [`BACKSTOP_PAGES`]: a log is started over only by a
//! write that finds every page of it copied, which the writer's own checkpoint guarantees, so
//! the log stays bounded under writes that never pause. Most of that log is copied already by
//! then, so little is left for the writer to copy.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::ManageConnection;

use crate::connection::{Manager, Session};

/// Shortest time between two background checkpoints. Each copies the pages changed since the
/// last one and ends with an fsync of the database file, which stalls the writer's own writes
/// to the log while it runs; a longer pace copies a page that many writes change (the end of
/// an index, the database header) fewer times, but makes for longer fsyncs. Measured on SQLite
/// creates (20k users, fresh copies, 10 s each, four or five rounds): 10 ms cost the
/// checkpointing thread 164–172 ticks, 50 ms 90–99, at creates per second and p99 latencies the
/// noise of the machine does not tell apart (10 ms: 1,477–1,955 a second, p99 67–103 ms;
/// 50 ms: 1,518–2,170, 69–92 ms); 200 ms cost 53–58 ticks at 1,773–1,803 a second. An earlier
/// machine had shown p99 rising with the pace (300 ms 110 ms, 100 ms 86 ms, 10 ms 50 ms).
const PACE: Duration = Duration::from_millis(50);

/// Log pages at which the writer checkpoints in its commit (SQLite's `wal_autocheckpoint`).
/// Lower values put more of the copying on the writer: on the same creates, 2,000 pages gave
/// 1,538 a second and 500 pages 1,362, against 1,802 with 10,000 (one round each).
pub(crate) const BACKSTOP_PAGES: u32 = 10_000;

/// The checkpointing thread; stopped and joined when dropped.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the thread waiting for a commit (or to stop).
    commits: Condvar,
    /// Wakes the thread pacing itself (to stop), and tests waiting for a checkpoint's end.
    progress: Condvar,
}

#[derive(Default)]
struct State {
    /// A commit happened since the last checkpoint began.
    pending: bool,
    stopping: bool,
    /// Checkpoints begun and ended so far.
    begun: u64,
    ended: u64,
}

impl Checkpointer {
    /// Starts the thread; it connects with `manager` when it first has a checkpoint to run.
    pub(crate) fn start(manager: Manager) -> Self {
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("ferridm-checkpoint".into())
                .spawn(move || checkpoint_after_commits(&shared, &manager))
                .ok()
        };
        if thread.is_none() {
            tracing::warn!("cannot start the checkpointing thread: the writer checkpoints alone");
        }
        Self { shared, thread }
    }

    /// Tells the thread that a commit has added to the log. Only the first commit since a
    /// checkpoint began wakes it; later ones find the flag already set.
    pub(crate) fn committed(&self) {
        let mut state = self.shared.lock();
        if !state.pending {
            state.pending = true;
            self.shared.commits.notify_one();
        }
    }

    /// Waits until a checkpoint that begins after this call has ended (tests: it copies every
    /// commit made before the call); panics when none has within ten seconds.
    #[cfg(test)]
    pub(crate) fn wait_for_the_next(&self) {
        let state = self.shared.lock();
        let next = state.begun + 1;
        let (state, waited) = self
            .shared
            .progress
            .wait_timeout_while(state, Duration::from_secs(10), |state| state.ended < next)
            .unwrap_or_else(PoisonError::into_inner);
        drop(state);
        assert!(!waited.timed_out(), "no checkpoint ran after the commits");
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.commits.notify_all();
        self.shared.progress.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The thread: a passive checkpoint after commits, [`PACE`] apart, until stopped.
fn checkpoint_after_commits(shared: &Shared, manager: &Manager) {
    let mut conn: Option<Session> = None;
    loop {
        {
            let mut state = shared
                .commits
                .wait_while(shared.lock(), |state| !state.pending && !state.stopping)
                .unwrap_or_else(PoisonError::into_inner);
            if state.stopping {
                return;
            }
            state.pending = false;
            state.begun += 1;
        }
        if conn.is_none() {
            conn = manager
                .connect()
                .inspect_err(|error| tracing::warn!(%error, "no connection for a background checkpoint"))
                .ok();
        }
        if let Some(session) = conn.as_mut()
            && let Err(error) = session.batch_execute("PRAGMA wal_checkpoint(PASSIVE)")
        {
            tracing::warn!(%error, "a background checkpoint failed");
            conn = None;
        }
        let mut state = shared.lock();
        state.ended += 1;
        shared.progress.notify_all();
        drop(
            shared
                .progress
                .wait_timeout_while(state, PACE, |state| !state.stopping)
                .unwrap_or_else(PoisonError::into_inner),
        );
    }
}
