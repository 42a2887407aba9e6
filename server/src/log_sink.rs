//! Where log lines go: request threads append each line to a shared buffer, and one thread
//! writes the buffer out in batches.
//!
//! A line costs its caller one uncontended lock and a copy. The writing thread is woken only by
//! the first line after it went idle or by a buffer past [`Limits::flush_at`]; otherwise it
//! lingers [`Limits::linger`] to gather the lines of that interval and writes them in one call.
//! Under load that is one wake-up and one `write` per interval rather than one of each per
//! request. Nothing is dropped: a caller finding [`Limits::capacity`] bytes pending waits for
//! the writer, and dropping the [`FlushGuard`] writes what is still pending.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a [`LogSink`] batches.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long the writer gathers lines after the first one before writing them.
    pub linger: Duration,
    /// Pending bytes at which the writer stops lingering and writes.
    pub flush_at: usize,
    /// Pending bytes at which a caller waits for the writer before adding its line.
    pub capacity: usize,
}

impl Default for Limits {
    /// 20 ms, 256 KiB, 4 MiB: a log line is seen within 20 ms, and a burst of requests never
    /// waits on the log unless the sink falls megabytes behind.
    fn default() -> Self {
        Self {
            linger: Duration::from_millis(20),
            flush_at: 256 * 1024,
            capacity: 4 * 1024 * 1024,
        }
    }
}

/// The appending side: cheap to clone, one per subscriber.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

/// Writes what is pending and stops the writing thread when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

struct Shared {
    limits: Limits,
    state: Mutex<State>,
    /// Signals the writer: a first line, a full buffer, or closing.
    wake: Condvar,
    /// Signals callers waiting for room.
    room: Condvar,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// The writer waits for a first line (so the next line must wake it).
    idle: bool,
    closed: bool,
}

impl LogSink {
    /// Starts the writing thread (named `thread_name`) over `out`.
    pub fn start(
        out: impl Write + Send + 'static,
        limits: Limits,
        thread_name: &str,
    ) -> io::Result<(Self, FlushGuard)> {
        let shared = Arc::new(Shared {
            limits,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            room: Condvar::new(),
        });
        let writer = std::thread::Builder::new().name(thread_name.to_owned()).spawn({
            let shared = Arc::clone(&shared);
            move || shared.write_out(out)
        })?;
        Ok((
            Self {
                shared: Arc::clone(&shared),
            },
            FlushGuard {
                shared,
                writer: Some(writer),
            },
        ))
    }

    fn append(&self, line: &[u8]) {
        let shared = &*self.shared;
        let mut state = shared.lock();
        while state.pending.len() >= shared.limits.capacity && !state.closed {
            state = shared.room.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        let before = state.pending.len();
        state.pending.extend_from_slice(line);
        let wake = std::mem::take(&mut state.idle)
            || (before < shared.limits.flush_at && state.pending.len() >= shared.limits.flush_at);
        drop(state);
        if wake {
            shared.wake.notify_one();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writing thread: waits for a first line, lingers, writes the batch; until closed and
    /// empty.
    fn write_out(&self, mut out: impl Write) {
        let mut batch = Vec::new();
        let mut state = self.lock();
        loop {
            // `append` clears `idle` when its line is the first since the writer went idle.
            state.idle = state.pending.is_empty();
            state = self
                .wake
                .wait_while(state, |state| state.pending.is_empty() && !state.closed)
                .unwrap_or_else(PoisonError::into_inner);
            if state.pending.is_empty() {
                return;
            }
            state = self
                .wake
                .wait_timeout_while(state, self.limits.linger, |state| {
                    !state.closed && state.pending.len() < self.limits.flush_at
                })
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            std::mem::swap(&mut state.pending, &mut batch);
            drop(state);
            self.room.notify_all();
            // A log that cannot be written has nowhere to report it; the lines are dropped and
            // the next batch tries again.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            // A backlog grew the buffer past what a batch written at `flush_at` needs; it is
            // not kept once written.
            if batch.capacity() > 2 * self.limits.flush_at {
                batch = Vec::new();
            }
            state = self.lock();
        }
    }
}

impl Write for LogSink {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogSink;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        self.shared.room.notify_all();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Instant;

    use super::*;

    /// An output the test reads back, optionally holding each write until the test releases it.
    #[derive(Clone, Default)]
    struct Recorded {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
        gate: Option<Arc<Mutex<mpsc::Receiver<()>>>>,
    }

    impl Write for Recorded {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if let Some(gate) = &self.gate {
                gate.lock().unwrap().recv().ok();
            }
            self.bytes.lock().unwrap().extend_from_slice(bytes);
            *self.writes.lock().unwrap() += 1;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines(recorded: &Recorded) -> Vec<String> {
        String::from_utf8(recorded.bytes.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_line_of_every_thread_is_written_once_in_each_threads_order() {
        let recorded = Recorded::default();
        let (sink, guard) = LogSink::start(recorded.clone(), Limits::default(), "test-log").unwrap();
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let mut sink = sink.clone();
                scope.spawn(move || {
                    for line in 0..500 {
                        sink.write_all(format!("{thread} {line}\n").as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(guard);
        let lines = lines(&recorded);
        assert_eq!(lines.len(), 2000);
        for thread in 0..4 {
            let own: Vec<usize> = lines
                .iter()
                .filter_map(|line| line.strip_prefix(&format!("{thread} ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(own, (0..500).collect::<Vec<_>>(), "thread {thread}");
        }
    }

    #[test]
    fn lines_of_one_linger_are_written_together() {
        let recorded = Recorded::default();
        let limits = Limits {
            linger: Duration::from_secs(3600),
            ..Limits::default()
        };
        let (mut sink, guard) = LogSink::start(recorded.clone(), limits, "test-log").unwrap();
        for line in 0..100 {
            writeln!(sink, "line {line}").unwrap();
        }
        // Closing cuts the linger short and writes the batch.
        drop(guard);
        assert_eq!(lines(&recorded).len(), 100);
        assert_eq!(*recorded.writes.lock().unwrap(), 1);
    }

    #[test]
    fn a_full_buffer_is_written_without_waiting_out_the_linger() {
        let recorded = Recorded::default();
        let limits = Limits {
            linger: Duration::from_secs(3600),
            flush_at: 64,
            capacity: 1024,
        };
        let (mut sink, guard) = LogSink::start(recorded.clone(), limits, "test-log").unwrap();
        sink.write_all(&[b'x'; 100]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while recorded.bytes.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the full buffer was not written");
            std::thread::yield_now();
        }
        assert_eq!(recorded.bytes.lock().unwrap().len(), 100);
        drop(guard);
    }

    #[test]
    fn a_backlogs_buffer_is_not_kept_once_written() {
        let recorded = Recorded::default();
        let limits = Limits {
            linger: Duration::ZERO,
            flush_at: 1024,
            capacity: 1024 * 1024,
        };
        let (mut sink, guard) = LogSink::start(recorded.clone(), limits, "test-log").unwrap();
        let wait_for = |bytes: usize| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while recorded.bytes.lock().unwrap().len() < bytes {
                assert!(Instant::now() < deadline, "{bytes} bytes were not written");
                std::thread::yield_now();
            }
        };
        sink.write_all(&[b'x'; 100 * 1024]).unwrap();
        wait_for(100 * 1024);
        // The next batch swaps the written buffer back in as the pending one.
        sink.write_all(b"y").unwrap();
        wait_for(100 * 1024 + 1);
        assert!(sink.shared.lock().pending.capacity() <= 1024);
        drop(guard);
    }

    #[test]
    fn a_caller_past_the_capacity_waits_for_the_writer_and_nothing_is_lost() {
        let (release, gate) = mpsc::channel();
        let recorded = Recorded {
            gate: Some(Arc::new(Mutex::new(gate))),
            ..Recorded::default()
        };
        let limits = Limits {
            linger: Duration::ZERO,
            flush_at: 16,
            capacity: 32,
        };
        let (sink, guard) = LogSink::start(recorded.clone(), limits, "test-log").unwrap();
        let (appended, appended_count) = mpsc::channel();
        let producer = std::thread::spawn({
            let mut sink = sink.clone();
            move || {
                for line in 0..20 {
                    sink.write_all(format!("{line:>15}\n").as_bytes()).unwrap();
                    appended.send(()).unwrap();
                }
            }
        });
        // The writer holds its first batch in the gated output: the producer fills the buffer
        // to its capacity and then waits rather than dropping or growing it.
        let mut accepted = 0;
        while appended_count.recv_timeout(Duration::from_millis(200)).is_ok() {
            accepted += 1;
        }
        assert!(accepted < 20, "the producer never waited ({accepted} lines accepted)");
        assert!(sink.shared.lock().pending.len() <= 32 + 16);
        for _ in 0..20 {
            release.send(()).unwrap();
        }
        producer.join().unwrap();
        drop(release);
        drop(guard);
        let written: Vec<usize> = lines(&recorded)
            .iter()
            .map(|line| line.trim().parse().unwrap())
            .collect();
        assert_eq!(written, (0..20).collect::<Vec<_>>());
    }
}
