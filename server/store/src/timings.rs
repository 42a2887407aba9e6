//! How long the store's database work takes, for the server's metrics: every read, bounded
//! query and write transaction (waiting for a connection included), and the wait for a pooled
//! connection alone. Recording is a few atomic operations; the server registers the
//! histograms once ([`crate::Store::metric_collectors`]).

use std::time::Instant;

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, HistogramVec};

/// Upper bounds (seconds) of the buckets: 0.25 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The store's histograms, with the label sets recorded into resolved once.
#[derive(Clone)]
pub(crate) struct Timings {
    operations: HistogramVec,
    pool_wait: Histogram,
    read: Histogram,
    query: Histogram,
    write: Histogram,
}

impl Timings {
    #[expect(clippy::expect_used, reason = "the names and labels are constants, and valid")]
    pub(crate) fn new() -> Self {
        let operations = HistogramVec::new(
            HistogramOpts::new(
                "ferridm_db_operation_duration_seconds",
                "Database work by kind (read, query: a bounded client query, write: a transaction), waiting for a connection included.",
            )
            .buckets(BUCKETS.to_vec()),
            &["kind"],
        )
        .expect("valid histogram");
        let pool_wait = Histogram::with_opts(
            HistogramOpts::new(
                "ferridm_db_pool_wait_seconds",
                "Time spent waiting for a pooled database connection.",
            )
            .buckets(BUCKETS.to_vec()),
        )
        .expect("valid histogram");
        Self {
            read: operations.with_label_values(&["read"]),
            query: operations.with_label_values(&["query"]),
            write: operations.with_label_values(&["write"]),
            operations,
            pool_wait,
        }
    }

    /// The histograms, to register with a registry.
    pub(crate) fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![Box::new(self.operations.clone()), Box::new(self.pool_wait.clone())]
    }

    pub(crate) fn read(&self, started: Instant) {
        self.read.observe(started.elapsed().as_secs_f64());
    }

    pub(crate) fn query(&self, started: Instant) {
        self.query.observe(started.elapsed().as_secs_f64());
    }

    pub(crate) fn write(&self, started: Instant) {
        self.write.observe(started.elapsed().as_secs_f64());
    }

    pub(crate) fn pool_wait(&self, started: Instant) {
        self.pool_wait.observe(started.elapsed().as_secs_f64());
    }
}

/// The main connection pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Connections open (idle or in use).
    pub connections: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max_size: u32,
}
