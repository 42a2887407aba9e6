//! The audit trail's plumbing: events wait in a bounded [`AuditQueue`] between the requests that
//! make them and one writer thread, which hands each batch to the handlers `audit.json` enables
//! ([`Handlers`]): JSON files, standard output, the database and syslog. A request never waits
//! for a handler; when the queue is full, a new event is dropped and counted, or (configured
//! `whenFull: block`) the request waits for room.

mod json_file;
mod pick;
mod syslog;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use ferridm_core::Object;
use ferridm_store::{AuditColumn, AuditFields, NewAuditEvent, Store, field_string};
use serde_json::Value;

use crate::config::ConfigPaths;
use crate::config::audit::{AuditConfig, HandlerKind, QueueSettings, WhenFull};

/// One audit event as the handlers get it: its topic and IDM's JSON body (with `_id` and
/// `timestamp`) as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// `access`, `activity`, `authentication` or `config`.
    pub topic: &'static str,
    /// The event as handlers write it.
    pub text: Cow<'a, str>,
    /// The values of its queryable fields as the request gave them, while `text` is unchanged
    /// (a field filter that rewrites the text drops them: they are read from the text again).
    pub columns: Option<Columns<'a>>,
}

/// An event's id and the values of its topic's [`queryable_fields`], in the store's column
/// order ([`AuditColumn::VALUES`]): what the repository handler stores beside its text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Columns<'a> {
    /// `_id`.
    pub id: &'a str,
    /// The values, `None` where the event lacks the field.
    pub values: [Option<&'a str>; AuditColumn::VALUES.len()],
}

impl<'a> Columns<'a> {
    /// The columns of an event of `topic` with id `id`, each queryable field's value looked up
    /// by its name (`request/operation`) with `value_of`.
    pub fn of(topic: &str, id: &'a str, mut value_of: impl FnMut(&str) -> Option<&'a str>) -> Self {
        let mut values = [None; AuditColumn::VALUES.len()];
        for (field, column) in queryable_fields(topic) {
            if let Some(slot) = AuditColumn::VALUES.iter().position(|candidate| candidate == column) {
                values[slot] = value_of(field);
            }
        }
        Self { id, values }
    }

    /// The columns of an event of `topic` held as a JSON object: strings at the fields' paths,
    /// or the one string of a one-element array there (IDM's `principal`).
    pub fn of_object(topic: &str, id: &'a str, body: &'a Object) -> Self {
        Self::of(topic, id, |field| field_string(body, field))
    }
}

/// Where one queued event's parts end in a [`Batch`]'s buffers.
#[derive(Debug, Clone, Copy)]
struct Queued {
    topic: &'static str,
    /// The end of its text in `text`.
    text_end: usize,
    /// Its id's and values' ranges in `columns`.
    id: (usize, usize),
    values: [Option<(usize, usize)>; AuditColumn::VALUES.len()],
}

/// Events queued together: their texts one after the other in one buffer. Requests append to
/// it and the writer hands emptied batches back, so queuing an event allocates nothing and
/// nothing a request allocated is freed by the writer's thread.
#[derive(Debug, Default)]
pub struct Batch {
    text: String,
    /// The events' column values, one after the other.
    columns: String,
    queued: Vec<Queued>,
}

impl Batch {
    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Its events, in order.
    pub fn events(&self) -> impl Iterator<Item = Event<'_>> {
        let mut start = 0;
        self.queued.iter().map(move |queued| {
            let text = &self.text[start..queued.text_end];
            start = queued.text_end;
            let slice = |(from, to): (usize, usize)| &self.columns[from..to];
            Event {
                topic: queued.topic,
                text: Cow::Borrowed(text),
                columns: Some(Columns {
                    id: slice(queued.id),
                    values: queued.values.map(|range| range.map(slice)),
                }),
            }
        })
    }

    fn push(&mut self, topic: &'static str, text: &str, columns: &Columns<'_>) {
        self.text.push_str(text);
        let mut keep = |value: &str| {
            let start = self.columns.len();
            self.columns.push_str(value);
            (start, self.columns.len())
        };
        let id = keep(columns.id);
        let values = columns.values.map(|value| value.map(&mut keep));
        self.queued.push(Queued {
            topic,
            text_end: self.text.len(),
            id,
            values,
        });
    }

    fn clear(&mut self) {
        self.text.clear();
        self.columns.clear();
        self.queued.clear();
    }
}

/// A recycled batch buffer larger than this is dropped rather than kept (after a burst).
const MAX_SPARE_BYTES: usize = 4 << 20;

thread_local! {
    /// Each thread's buffer that events are serialized into before they are queued.
    static SERIALIZED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
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
    pending: Batch,
    /// An emptied batch the writer handed back, taken next.
    spare: Batch,
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

    /// Queues an event of `topic` whose body serializes as `body` and holds the values
    /// `columns`; a full queue drops it (counted) or waits for room, as configured.
    pub fn submit(
        &self,
        topic: &'static str,
        body: &impl serde::Serialize,
        columns: &Columns<'_>,
    ) -> serde_json::Result<()> {
        SERIALIZED.with_borrow_mut(|buffer| {
            buffer.clear();
            serde_json::to_writer(&mut *buffer, body)?;
            // serde_json writes UTF-8 only.
            let text = std::str::from_utf8(buffer).map_err(serde::ser::Error::custom)?;
            self.push(topic, text, columns);
            Ok(())
        })
    }

    fn push(&self, topic: &'static str, text: &str, columns: &Columns<'_>) {
        let mut state = self.lock();
        while state.pending.len() >= state.settings.max_size && !self.closed.load(Ordering::Relaxed) {
            if state.settings.when_full == WhenFull::Drop {
                drop(state);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            state = self.room.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.pending.push(topic, text, columns);
        let wake = state.writer_waiting || state.pending.len() >= state.settings.max_size;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Everything queued, waiting up to `wait` for a first event; `None` once closed and empty.
    /// Hand the batch back with [`recycle`](Self::recycle) once written.
    pub fn take(&self, wait: Duration) -> Option<Batch> {
        let mut state = self.lock();
        if state.pending.is_empty() && !self.closed.load(Ordering::Relaxed) {
            state.writer_waiting = true;
            state = self
                .ready
                .wait_timeout(state, wait)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            state.writer_waiting = false;
        }
        if state.pending.is_empty() && self.closed.load(Ordering::Relaxed) {
            return None;
        }
        let spare = std::mem::take(&mut state.spare);
        let batch = std::mem::replace(&mut state.pending, spare);
        drop(state);
        self.room.notify_all();
        Some(batch)
    }

    /// Takes back a written batch, emptied, for requests to fill again.
    pub fn recycle(&self, mut batch: Batch) {
        if batch.text.capacity() + batch.columns.capacity() > MAX_SPARE_BYTES {
            return;
        }
        batch.clear();
        self.lock().spare = batch;
    }

    /// Lets events gather for up to `linger` (ended early by [`close`](Self::close) or a full
    /// queue), so the writer handles them in batches: one database transaction and one file
    /// write for many events, and requests seldom have to wake the writer.
    pub fn gather(&self, linger: Duration) {
        let state = self.lock();
        if state.pending.len() < state.settings.max_size && !self.closed.load(Ordering::Relaxed) {
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
        self.lock().pending.len()
    }

    /// Events dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Where events of `topic` hold the fields audit queries filter and sort on (the store keeps
/// them as columns; `_id` always is one). IDM's names; other fields are returned, not queried.
pub fn queryable_fields(topic: &str) -> &'static AuditFields {
    use AuditColumn::{EventName, ObjectId, Operation, Status, Timestamp, TransactionId, UserId};
    match topic {
        "access" => &[
            ("timestamp", Timestamp),
            ("eventName", EventName),
            ("transactionId", TransactionId),
            ("userId", UserId),
            ("request/operation", Operation),
            ("response/status", Status),
        ],
        "authentication" => &[
            ("timestamp", Timestamp),
            ("eventName", EventName),
            ("transactionId", TransactionId),
            ("userId", UserId),
            ("principal", ObjectId),
            ("result", Status),
        ],
        _ => &[
            ("timestamp", Timestamp),
            ("eventName", EventName),
            ("transactionId", TransactionId),
            ("userId", UserId),
            ("objectId", ObjectId),
            ("operation", Operation),
            ("status", Status),
        ],
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
    pub fn write(&mut self, batch: &Batch, config: &AuditConfig, paths: &ConfigPaths, store: &Store, now_millis: i64) {
        let batch: Vec<Event<'_>> = batch
            .events()
            .map(|mut event| {
                if let Err(error) = filter_fields(&mut event, config) {
                    tracing::error!(topic = event.topic, %error, "an audit event is not JSON; it is written as it is");
                }
                event
            })
            .collect();
        for handler in &config.handlers {
            let events: Vec<&Event<'_>> = batch
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

fn write_stdout(events: &[&Event<'_>]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for event in events {
        out.write_all(event.text.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

fn write_repository(store: &Store, events: &[&Event<'_>]) -> std::io::Result<()> {
    // An event rewritten by a field filter carries no columns: they are read from its text.
    let picked: Vec<Option<PickedColumns>> = events
        .iter()
        .map(|event| match event.columns {
            Some(_) => Ok(None),
            None => PickedColumns::read(event).map(Some),
        })
        .collect::<std::io::Result<_>>()?;
    let rows: Vec<NewAuditEvent<'_>> = events
        .iter()
        .zip(&picked)
        .map(|(event, picked)| {
            let columns = picked
                .as_ref()
                .map_or_else(|| event.columns.unwrap_or_default(), PickedColumns::columns);
            NewAuditEvent {
                topic: event.topic,
                id: columns.id,
                body: &event.text,
                values: columns.values,
            }
        })
        .collect();
    store.insert_audit_events(&rows).map_err(std::io::Error::other)
}

/// The columns of an event read from its text.
struct PickedColumns {
    id: String,
    values: [Option<String>; AuditColumn::VALUES.len()],
}

impl PickedColumns {
    fn read(event: &Event<'_>) -> std::io::Result<Self> {
        let fields = queryable_fields(event.topic);
        let paths: Vec<&str> = std::iter::once("_id")
            .chain(fields.iter().map(|(name, _)| *name))
            .collect();
        let mut found = pick::strings(&event.text, &paths).map_err(std::io::Error::other)?;
        let id = found[0].take().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut values: [Option<String>; AuditColumn::VALUES.len()] = Default::default();
        for ((_, column), value) in fields.iter().zip(found.into_iter().skip(1)) {
            if let Some(slot) = AuditColumn::VALUES.iter().position(|candidate| candidate == column) {
                values[slot] = value;
            }
        }
        Ok(Self { id, values })
    }

    fn columns(&self) -> Columns<'_> {
        Columns {
            id: &self.id,
            values: self.values.each_ref().map(Option::as_deref),
        }
    }
}

/// Applies `filterPolicies`: excluded fields are removed, masked values replaced. Only an event
/// of a topic with filters is parsed and written again.
fn filter_fields<'a>(event: &mut Event<'_>, config: &'a AuditConfig) -> serde_json::Result<()> {
    let topic = event.topic;
    let of_topic = |paths: &'a [Vec<String>]| -> Vec<&'a [String]> {
        paths
            .iter()
            .filter_map(|path| path.split_first())
            .filter(|(first, _)| *first == topic)
            .map(|(_, rest)| rest)
            .collect()
    };
    let (excluded, masked) = (of_topic(&config.excluded_fields), of_topic(&config.masked_values));
    if excluded.is_empty() && masked.is_empty() {
        return Ok(());
    }
    let mut body: Object = serde_json::from_str(&event.text)?;
    for path in excluded {
        remove_path(&mut body, path);
    }
    for path in masked {
        if let Some(value) = find_path(&mut body, path) {
            *value = Value::String(MASK.to_owned());
        }
    }
    event.text = Cow::Owned(serde_json::to_string(&body)?);
    event.columns = None;
    Ok(())
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

    fn submit(queue: &AuditQueue, n: i64) {
        queue.submit("access", &json!({"n": n}), &Columns::default()).unwrap();
    }

    /// The texts of a batch's events.
    fn texts(batch: &Batch) -> Vec<String> {
        batch.events().map(|event| event.text.into_owned()).collect()
    }

    fn text(n: i64) -> String {
        format!("{{\"n\":{n}}}")
    }

    #[test]
    fn a_full_queue_drops_and_counts_or_waits_for_room() {
        let queue = AuditQueue::default();
        queue.configure(QueueSettings {
            max_size: 2,
            when_full: WhenFull::Drop,
        });
        for n in 0..5 {
            submit(&queue, n);
        }
        assert_eq!(queue.depth(), 2);
        assert_eq!(queue.dropped(), 3);
        let taken = queue.take(Duration::ZERO).unwrap_or_default();
        assert_eq!(texts(&taken), [text(0), text(1)]);
        // A recycled batch is filled again from its start.
        queue.recycle(taken);
        submit(&queue, 7);
        assert_eq!(texts(&queue.take(Duration::ZERO).unwrap_or_default()), [text(7)]);

        queue.configure(QueueSettings {
            max_size: 1,
            when_full: WhenFull::Block,
        });
        submit(&queue, 10);
        let queue = std::sync::Arc::new(queue);
        let waiting = {
            let queue = std::sync::Arc::clone(&queue);
            std::thread::spawn(move || submit(&queue, 11))
        };
        // The second event waits for room: taking the first lets it in; nothing is dropped.
        let mut seen = Vec::new();
        while seen.len() < 2 {
            seen.extend(texts(&queue.take(Duration::from_millis(50)).unwrap_or_default()));
        }
        let _ = waiting.join();
        assert_eq!(seen, [text(10), text(11)]);
        assert_eq!(queue.dropped(), 3);
        queue.close();
        assert!(queue.take(Duration::from_secs(5)).is_none());
    }

    #[test]
    fn the_writer_does_not_linger_over_a_full_or_closed_queue() {
        let linger = Duration::from_secs(600);
        let queue = std::sync::Arc::new(AuditQueue::default());
        queue.configure(QueueSettings {
            max_size: 1,
            when_full: WhenFull::Block,
        });
        submit(&queue, 1);
        let started = std::time::Instant::now();
        queue.gather(linger);
        assert!(started.elapsed() < linger / 10, "a full queue is written at once");

        let _ = queue.take(Duration::ZERO);
        let gathering = {
            let queue = std::sync::Arc::clone(&queue);
            std::thread::spawn(move || queue.gather(linger))
        };
        // The queue filling up ends the gathering early.
        submit(&queue, 2);
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
        let body = json!({"userId": "bob", "http": {"request": {"secret": "x", "method": "GET"}}});
        let mut access = Event {
            topic: "access",
            text: body.to_string().into(),
            columns: Some(Columns::default()),
        };
        filter_fields(&mut access, &config).unwrap();
        // Rewritten, its columns are read from the new text.
        assert_eq!(access.columns, None);
        assert_eq!(
            serde_json::from_str::<Value>(&access.text).unwrap(),
            json!({"userId": MASK, "http": {"request": {"method": "GET"}}})
        );
        // A topic without filters keeps its text as it is.
        let mut activity = Event {
            topic: "authentication",
            text: body.to_string().into(),
            columns: Some(Columns::default()),
        };
        let text = activity.text.clone();
        filter_fields(&mut activity, &config).unwrap();
        assert_eq!(activity.text, text);
        assert_eq!(activity.columns, Some(Columns::default()));
    }

    #[test]
    fn events_keep_the_columns_they_were_queued_with_and_they_match_their_text() {
        let events = [
            (
                "access",
                json!({"_id": "a1", "timestamp": "2026-12-05T10:00:00.000Z", "eventName": "access",
                "transactionId": "t-1", "userId": "bob", "request": {"operation": "READ"},
                "response": {"status": "SUCCESSFUL", "statusCode": "200"}}),
            ),
            (
                "authentication",
                json!({"_id": "b2", "timestamp": "2026-12-05T10:00:01.000Z",
                "eventName": "authentication", "transactionId": "t-2", "userId": "bob",
                "principal": ["bob"], "result": "FAILED"}),
            ),
            (
                "activity",
                json!({"_id": "c3", "timestamp": "2026-12-05T10:00:02.000Z", "eventName": "activity",
                "transactionId": "t-3", "userId": "", "objectId": "managed/user/1", "operation": "PATCH",
                "status": "SUCCESS", "before": {"objectId": "other"}}),
            ),
        ];
        let queue = AuditQueue::default();
        queue.configure(QueueSettings {
            max_size: 10,
            when_full: WhenFull::Drop,
        });
        let bodies: Vec<(&'static str, Object)> = events
            .into_iter()
            .map(|(topic, body)| (topic, body.as_object().cloned().unwrap_or_default()))
            .collect();
        for (topic, body) in &bodies {
            let id = body["_id"].as_str().unwrap_or_default();
            queue.submit(topic, body, &Columns::of_object(topic, id, body)).unwrap();
        }
        let batch = queue.take(Duration::ZERO).unwrap_or_default();
        let taken: Vec<Event<'_>> = batch.events().collect();
        assert_eq!(taken.len(), 3);
        for event in &taken {
            let read = PickedColumns::read(event).unwrap();
            assert_eq!(event.columns, Some(read.columns()), "{}", event.topic);
        }
        let columns: Vec<Columns<'_>> = taken.iter().filter_map(|event| event.columns).collect();
        assert_eq!(
            columns[0],
            Columns {
                id: "a1",
                values: [
                    Some("2026-12-05T10:00:00.000Z"),
                    Some("access"),
                    Some("t-1"),
                    Some("bob"),
                    None,
                    Some("READ"),
                    Some("SUCCESSFUL")
                ],
            }
        );
        assert_eq!(columns[1].values[4], Some("bob"), "the principal, as the object column");
        assert_eq!(columns[1].values[6], Some("FAILED"));
        assert_eq!(columns[2].values[4], Some("managed/user/1"));
        assert_eq!(columns[2].values[3], Some(""));
    }
}
