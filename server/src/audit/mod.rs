//! The audit trail's plumbing: events wait in a bounded [`AuditQueue`] between the requests that
//! make them and one writer thread, which hands each batch to the handlers `audit.json` enables
//! ([`Handlers`]): JSON files, standard output, the database and syslog. A request never waits
//! for a handler; when the queue is full, a new event is dropped and counted, or (configured
//! `whenFull: block`) the request waits for room.

mod json_file;
mod syslog;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use ferridm_core::Object;
use ferridm_store::{IndexSpec, NewObject, Store};
use serde_json::Value;

use crate::config::ConfigPaths;
use crate::config::audit::{AuditConfig, HandlerKind, QueueSettings, WhenFull};

/// One audit event: its topic and IDM's JSON body (with `_id` and `timestamp`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `access`, `activity`, `authentication` or `config`.
    pub topic: &'static str,
    /// The event as handlers write it.
    pub body: Object,
}

/// The bounded queue between requests and the writer.
#[derive(Debug, Default)]
pub struct AuditQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
    room: Condvar,
    dropped: AtomicU64,
    closed: AtomicBool,
}

#[derive(Debug, Default)]
struct QueueState {
    events: VecDeque<Event>,
    settings: QueueSettings,
    writer_waiting: bool,
}

impl AuditQueue {
    /// Applies a generation's queue settings (size and what a full queue does).
    pub fn configure(&self, settings: QueueSettings) {
        self.lock().settings = settings;
        self.room.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues an event; a full queue drops it (counted) or waits for room, as configured.
    pub fn submit(&self, event: Event) {
        let mut state = self.lock();
        while state.events.len() >= state.settings.max_size && !self.closed.load(Ordering::Relaxed) {
            if state.settings.when_full == WhenFull::Drop {
                drop(state);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            state = self.room.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.events.push_back(event);
        let wake = state.writer_waiting || state.events.len() >= state.settings.max_size;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Everything queued, waiting up to `wait` for a first event; `None` once closed and empty.
    pub fn take(&self, wait: Duration) -> Option<Vec<Event>> {
        let mut state = self.lock();
        if state.events.is_empty() && !self.closed.load(Ordering::Relaxed) {
            state.writer_waiting = true;
            state = self
                .ready
                .wait_timeout(state, wait)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            state.writer_waiting = false;
        }
        if state.events.is_empty() && self.closed.load(Ordering::Relaxed) {
            return None;
        }
        let batch: Vec<Event> = state.events.drain(..).collect();
        drop(state);
        self.room.notify_all();
        Some(batch)
    }

    /// Lets events gather for up to `linger` (ended early by [`close`](Self::close) or a full
    /// queue), so the writer handles them in batches: one database transaction and one file
    /// write for many events, and requests seldom have to wake the writer.
    pub fn gather(&self, linger: Duration) {
        let state = self.lock();
        if state.events.len() < state.settings.max_size && !self.closed.load(Ordering::Relaxed) {
            drop(self.ready.wait_timeout(state, linger));
        }
    }

    /// Stops taking new waits: the writer drains what is queued and ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let _state = self.lock();
        self.ready.notify_all();
        self.room.notify_all();
    }

    /// Events waiting now.
    pub fn depth(&self) -> usize {
        self.lock().events.len()
    }

    /// Events dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The object type audit events of `topic` are stored under in the database.
pub fn repository_type(topic: &str) -> String {
    format!("audit/{topic}")
}

/// True for the object types audit events are stored under (not managed objects).
pub fn is_repository_type(object_type: &str) -> bool {
    object_type.starts_with("audit/")
}

/// What of an event the database indexes for queries: everything but the bulky object states
/// and raw HTTP details.
pub fn repository_index() -> IndexSpec {
    IndexSpec {
        hidden: vec!["before".into(), "after".into(), "http".into()],
        unique: Vec::new(),
    }
}

/// The writer's open handlers (files, sockets), reused from batch to batch.
#[derive(Debug, Default)]
pub struct Handlers {
    files: json_file::JsonFiles,
    syslog: syslog::SyslogSenders,
    /// Handlers whose last write failed, so a broken handler is logged once, not per batch.
    failing: BTreeMap<String, bool>,
}

impl Handlers {
    /// Writes a batch to every handler `config` enables for each event's topic, after the
    /// configured field filters. A handler that fails logs the failure; the others still write.
    pub fn write(
        &mut self,
        batch: Vec<Event>,
        config: &AuditConfig,
        paths: &ConfigPaths,
        store: &Store,
        now_millis: i64,
    ) {
        let batch: Vec<Event> = batch
            .into_iter()
            .map(|mut event| {
                filter_fields(&mut event, config);
                event
            })
            .collect();
        for handler in &config.handlers {
            let events: Vec<&Event> = batch
                .iter()
                .filter(|event| handler.topics.iter().any(|topic| topic == event.topic))
                .collect();
            if events.is_empty() {
                continue;
            }
            let outcome = match &handler.kind {
                HandlerKind::JsonFile(settings) => self.files.write(
                    &handler.name,
                    settings,
                    &paths.resolve(&settings.log_directory),
                    &events,
                    now_millis,
                ),
                HandlerKind::Stdout => write_stdout(&events),
                HandlerKind::Repository => write_repository(store, &events),
                HandlerKind::Syslog(settings) => self.syslog.write(&handler.name, settings, &events),
            };
            let was_failing = self.failing.get(&handler.name).copied().unwrap_or(false);
            match outcome {
                Ok(()) if was_failing => {
                    tracing::info!(handler = %handler.name, "audit handler writes again");
                    self.failing.insert(handler.name.clone(), false);
                }
                Ok(()) => {}
                Err(error) => {
                    if !was_failing {
                        tracing::error!(handler = %handler.name, %error, events = events.len(), "audit handler cannot write; its events are lost until it recovers");
                    }
                    self.failing.insert(handler.name.clone(), true);
                }
            }
        }
    }
}

fn write_stdout(events: &[&Event]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for event in events {
        serde_json::to_writer(&mut out, &event.body)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

fn write_repository(store: &Store, events: &[&Event]) -> std::io::Result<()> {
    let index = repository_index();
    let types: Vec<String> = events.iter().map(|event| repository_type(event.topic)).collect();
    let empty = Object::new();
    let contents: Vec<(String, Object)> = events
        .iter()
        .map(|event| {
            let mut content = event.body.clone();
            let id = match content.shift_remove("_id") {
                Some(Value::String(id)) => id,
                _ => uuid::Uuid::now_v7().to_string(),
            };
            (id, content)
        })
        .collect();
    let objects: Vec<NewObject<'_>> = contents
        .iter()
        .zip(&types)
        .map(|((id, content), object_type)| NewObject {
            object_type,
            id,
            content,
            meta: &empty,
            index: &index,
        })
        .collect();
    store.insert_many(&objects).map(|_| ()).map_err(std::io::Error::other)
}

/// Applies `filterPolicies`: excluded fields are removed, masked values replaced.
fn filter_fields(event: &mut Event, config: &AuditConfig) {
    for path in &config.excluded_fields {
        if let Some((topic, rest)) = path.split_first()
            && topic == event.topic
        {
            remove_path(&mut event.body, rest);
        }
    }
    for path in &config.masked_values {
        if let Some((topic, rest)) = path.split_first()
            && topic == event.topic
            && let Some(value) = find_path(&mut event.body, rest)
        {
            *value = Value::String(MASK.to_owned());
        }
    }
}

/// What a masked value reads as.
pub const MASK: &str = "********";

fn remove_path(object: &mut Object, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            object.shift_remove(last);
        }
        [first, rest @ ..] => {
            if let Some(Value::Object(inner)) = object.get_mut(first) {
                remove_path(inner, rest);
            }
        }
    }
}

fn find_path<'a>(object: &'a mut Object, path: &[String]) -> Option<&'a mut Value> {
    let (first, rest) = path.split_first()?;
    let value = object.get_mut(first)?;
    if rest.is_empty() {
        return Some(value);
    }
    match value {
        Value::Object(inner) => find_path(inner, rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(n: i64) -> Event {
        let Value::Object(body) = json!({"n": n}) else {
            unreachable!()
        };
        Event { topic: "access", body }
    }

    #[test]
    fn a_full_queue_drops_and_counts_or_waits_for_room() {
        let queue = AuditQueue::default();
        queue.configure(QueueSettings {
            max_size: 2,
            when_full: WhenFull::Drop,
        });
        for n in 0..5 {
            queue.submit(event(n));
        }
        assert_eq!(queue.depth(), 2);
        assert_eq!(queue.dropped(), 3);
        let taken = queue.take(Duration::ZERO).unwrap_or_default();
        assert_eq!(taken, vec![event(0), event(1)]);

        queue.configure(QueueSettings {
            max_size: 1,
            when_full: WhenFull::Block,
        });
        queue.submit(event(10));
        let queue = std::sync::Arc::new(queue);
        let waiting = {
            let queue = std::sync::Arc::clone(&queue);
            std::thread::spawn(move || queue.submit(event(11)))
        };
        // The second event waits for room: taking the first lets it in; nothing is dropped.
        let mut seen = Vec::new();
        while seen.len() < 2 {
            seen.extend(queue.take(Duration::from_millis(50)).unwrap_or_default());
        }
        let _ = waiting.join();
        assert_eq!(seen, vec![event(10), event(11)]);
        assert_eq!(queue.dropped(), 3);
        queue.close();
        assert_eq!(queue.take(Duration::from_secs(5)), None);
    }

    #[test]
    fn the_writer_does_not_linger_over_a_full_or_closed_queue() {
        let linger = Duration::from_secs(600);
        let queue = std::sync::Arc::new(AuditQueue::default());
        queue.configure(QueueSettings {
            max_size: 1,
            when_full: WhenFull::Block,
        });
        queue.submit(event(1));
        let started = std::time::Instant::now();
        queue.gather(linger);
        assert!(started.elapsed() < linger / 10, "a full queue is written at once");

        let _ = queue.take(Duration::ZERO);
        let gathering = {
            let queue = std::sync::Arc::clone(&queue);
            std::thread::spawn(move || queue.gather(linger))
        };
        // The queue filling up ends the gathering early.
        queue.submit(event(2));
        let _ = gathering.join();
        assert!(started.elapsed() < linger / 10, "a queue filling up wakes the writer");

        queue.close();
        queue.gather(linger);
        assert!(started.elapsed() < linger / 10, "a closed queue is drained at once");
    }

    #[test]
    fn field_filters_remove_and_mask_by_topic() {
        let config = AuditConfig {
            excluded_fields: vec![vec!["access".into(), "http".into(), "request".into(), "secret".into()]],
            masked_values: vec![
                vec!["access".into(), "userId".into()],
                vec!["activity".into(), "n".into()],
            ],
            ..AuditConfig::default()
        };
        let Value::Object(body) = json!({"userId": "bob", "http": {"request": {"secret": "x", "method": "GET"}}})
        else {
            unreachable!()
        };
        let mut access = Event { topic: "access", body };
        filter_fields(&mut access, &config);
        assert_eq!(
            Value::Object(access.body),
            json!({"userId": MASK, "http": {"request": {"method": "GET"}}})
        );
    }
}
