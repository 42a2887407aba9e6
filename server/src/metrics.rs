//! The server's metrics, served at `GET /openidm/metrics/prometheus` in the Prometheus text
//! format: one registry per server (so servers sharing a process count apart). Recording on the
//! request path costs a few atomic operations: every label set it uses is created once, on first
//! use, into a slot reached without a lock.

use std::sync::OnceLock;
use std::time::Duration;

use ferridm_plugins::host::{ScriptLimit, ScriptOutcome};
use ferridm_store::Store;
use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The resource families requests are counted by: the first segment after `/openidm/`.
/// Anything else under `/openidm` is `other`; paths outside it are `ui`.
const FAMILIES: &[&str] = &[
    "audit",
    "authentication",
    "cluster",
    "config",
    "consent",
    "endpoint",
    "health",
    "identityProviders",
    "info",
    "internal",
    "managed",
    "metrics",
    "openapi",
    "policy",
    "privilege",
    "recon",
    "schema",
    "selfservice",
    "sync",
    "system",
    "other",
    "ui",
];
const OTHER_FAMILY: usize = FAMILIES.len() - 2;
const UI_FAMILY: usize = FAMILIES.len() - 1;

/// Methods requests are counted by; the last slot is `other`.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "other"];

/// Status codes requests are counted by; the last slot is `other`.
const STATUSES: &[u16] = &[
    200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 406, 408, 409, 410, 412, 413, 414, 415, 416, 422, 428,
    429, 431, 500, 501, 502, 503, 504, 0,
];

/// Request durations: 1 ms to 10 s.
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Script durations: 0.1 ms to 10 s.
const SCRIPT_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];

/// Authentication modules successes are counted by; the last slot is `other`.
const MODULES: &[&str] = &["STATIC_USER", "MANAGED_USER", "INTERNAL_USER", "other"];

/// Script limits, in [`limit_index`] order.
const LIMITS: &[ScriptLimit] = &[
    ScriptLimit::Time,
    ScriptLimit::Operations,
    ScriptLimit::CallDepth,
    ScriptLimit::Size,
];

/// How a self-service stage step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageOutcome {
    /// The stage asked for (more) requirements.
    Requirements,
    /// The stage completed.
    Completed,
    /// The stage failed (the request got an error).
    Failed,
}

impl StageOutcome {
    fn name(self) -> &'static str {
        match self {
            Self::Requirements => "requirements",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// What a scrape reads from the rest of the server.
#[derive(Debug, Clone, Copy)]
pub struct Scrape {
    /// The configuration generation serving requests.
    pub generation: u64,
    /// Audit events waiting for the writer.
    pub audit_queue_depth: usize,
    /// Audit events dropped because the queue was full, since start.
    pub audit_dropped: u64,
}

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_slots: Box<[OnceLock<IntCounter>]>,
    durations: HistogramVec,
    duration_slots: Box<[OnceLock<Histogram>]>,
    authentications: Box<[IntCounter]>,
    authentication_failures: IntCounter,
    lockouts: IntCounter,
    locked_refusals: IntCounter,
    password_hashings: IntCounter,
    policy_failures: IntCounterVec,
    stage_outcomes: IntCounterVec,
    reloads_installed: IntCounter,
    reloads_refused: IntCounter,
    generation: IntGauge,
    script_runs: [IntCounter; 3],
    script_durations: Histogram,
    script_limits: Box<[IntCounter]>,
    pool_connections: [IntGauge; 2],
    pool_max: IntGauge,
    audit_depth: IntGauge,
    audit_dropped: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with every metric, the store's histograms included.
    #[expect(clippy::expect_used, reason = "the names and labels are constants, and valid")]
    pub fn new(store: &Store) -> Self {
        let registry = Registry::new();
        let register = |collector: Box<dyn Collector>| registry.register(collector).expect("a valid, unique metric");
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("a valid counter");
            register(Box::new(counter.clone()));
            counter
        };
        let counters = |name: &str, help: &str, labels: &[&str]| {
            let counters = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counters");
            register(Box::new(counters.clone()));
            counters
        };
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("a valid gauge");
            register(Box::new(gauge.clone()));
            gauge
        };

        let requests = counters(
            "ferridm_http_requests_total",
            "HTTP requests by resource family (the first segment after /openidm/), method and status.",
            &["family", "method", "status"],
        );
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "ferridm_http_request_duration_seconds",
                "HTTP request durations by resource family and status.",
            )
            .buckets(REQUEST_BUCKETS.to_vec()),
            &["family", "status"],
        )
        .expect("valid histograms");
        register(Box::new(durations.clone()));
        let authentication = counters(
            "ferridm_authentications_total",
            "Credential authentications (sessions not included) by result and, on success, the module that accepted them.",
            &["result", "module"],
        );
        let authentications = MODULES
            .iter()
            .map(|module| authentication.with_label_values(&["success", *module]))
            .collect();
        let authentication_failures = authentication.with_label_values(&["failure", "none"]);
        let lockouts = counter(
            "ferridm_account_lockouts_total",
            "Accounts locked after repeated failed logins.",
        );
        let locked_refusals = counter(
            "ferridm_login_refused_locked_total",
            "Logins refused because the account was locked.",
        );
        let password_hashings = counter(
            "ferridm_password_hashings_total",
            "Runs of the password hash function: checks the credential cache could not answer (or renews), and new hashes.",
        );
        let policy_failures = counters(
            "ferridm_policy_failures_total",
            "Failed policy requirements of refused requests, by requirement.",
            &["requirement"],
        );
        let stage_outcomes = counters(
            "ferridm_selfservice_stage_outcomes_total",
            "Self-service stage steps by process, stage and outcome (requirements, completed, failed).",
            &["process", "stage", "outcome"],
        );
        let reloads = counters(
            "ferridm_config_reloads_total",
            "Configuration reloads by result (installed, refused).",
            &["result"],
        );
        let generation = gauge(
            "ferridm_config_generation",
            "The number of the configuration generation serving new requests.",
        );
        let scripts = counters(
            "ferridm_script_executions_total",
            "Script calls by outcome (completed, failed, limit).",
            &["outcome"],
        );
        let script_durations = Histogram::with_opts(
            HistogramOpts::new(
                "ferridm_script_duration_seconds",
                "Script call durations (a call nested in another counts in both).",
            )
            .buckets(SCRIPT_BUCKETS.to_vec()),
        )
        .expect("a valid histogram");
        register(Box::new(script_durations.clone()));
        let limits = counters(
            "ferridm_script_limit_hits_total",
            "Script calls stopped by an engine limit, by limit (time, operations, call_depth, size).",
            &["limit"],
        );
        let pool = IntGaugeVec::new(
            Opts::new(
                "ferridm_db_pool_connections",
                "Open connections of the main database pool, by state (idle, active).",
            ),
            &["state"],
        )
        .expect("valid gauges");
        register(Box::new(pool.clone()));
        let pool_max = gauge(
            "ferridm_db_pool_max_connections",
            "The most connections the main database pool opens.",
        );
        let audit_depth = gauge("ferridm_audit_queue_depth", "Audit events waiting to be written.");
        let audit_dropped = counter(
            "ferridm_audit_events_dropped_total",
            "Audit events dropped because the queue was full.",
        );
        for collector in store.metric_collectors() {
            register(collector);
        }

        Self {
            request_slots: slots(FAMILIES.len() * METHODS.len() * STATUSES.len()),
            duration_slots: slots(FAMILIES.len() * STATUSES.len()),
            requests,
            durations,
            authentications,
            authentication_failures,
            lockouts,
            locked_refusals,
            password_hashings,
            policy_failures,
            stage_outcomes,
            reloads_installed: reloads.with_label_values(&["installed"]),
            reloads_refused: reloads.with_label_values(&["refused"]),
            generation,
            script_runs: ["completed", "failed", "limit"].map(|outcome| scripts.with_label_values(&[outcome])),
            script_durations,
            script_limits: LIMITS
                .iter()
                .map(|limit| limits.with_label_values(&[limit.name()]))
                .collect(),
            pool_connections: ["idle", "active"].map(|state| pool.with_label_values(&[state])),
            pool_max,
            audit_depth,
            audit_dropped,
            registry,
        }
    }

    /// Counts a finished HTTP request (`path` is the request's path, without its query).
    pub fn http_request(&self, method: &str, path: &str, status: u16, elapsed: Duration) {
        let family = family_index(path);
        let method = METHODS
            .iter()
            .position(|known| *known == method)
            .unwrap_or(METHODS.len() - 1);
        let status_slot = STATUSES
            .iter()
            .position(|known| *known == status)
            .unwrap_or(STATUSES.len() - 1);
        let status_label = || match STATUSES[status_slot] {
            0 => "other".to_owned(),
            code => code.to_string(),
        };
        self.request_slots[(family * METHODS.len() + method) * STATUSES.len() + status_slot]
            .get_or_init(|| {
                self.requests
                    .with_label_values(&[FAMILIES[family], METHODS[method], status_label().as_str()])
            })
            .inc();
        self.duration_slots[family * STATUSES.len() + status_slot]
            .get_or_init(|| {
                self.durations
                    .with_label_values(&[FAMILIES[family], status_label().as_str()])
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a credential authentication: the accepting module's id, or `None` when refused.
    pub fn authentication(&self, module: Option<&str>) {
        match module {
            Some(module) => {
                let slot = MODULES
                    .iter()
                    .position(|known| *known == module)
                    .unwrap_or(MODULES.len() - 1);
                self.authentications[slot].inc();
            }
            None => self.authentication_failures.inc(),
        }
    }

    /// Counts an account locked after repeated failed logins.
    pub fn account_locked(&self) {
        self.lockouts.inc();
    }

    /// Counts a run of the password hash function.
    pub fn password_hashing(&self) {
        self.password_hashings.inc();
    }

    /// Counts a login refused because the account is locked.
    pub fn login_refused_locked(&self) {
        self.locked_refusals.inc();
    }

    /// Counts one failed policy requirement (`REQUIRED`, `MIN_LENGTH`, …) of a refused request.
    pub fn policy_failure(&self, requirement: &str) {
        self.policy_failures.with_label_values(&[requirement]).inc();
    }

    /// Counts one step of a self-service stage.
    pub fn selfservice_stage(&self, process: &str, stage: &str, outcome: StageOutcome) {
        self.stage_outcomes
            .with_label_values(&[process, stage, outcome.name()])
            .inc();
    }

    /// Counts a configuration reload, installed or refused.
    pub fn reload(&self, installed: bool) {
        if installed {
            self.reloads_installed.inc();
        } else {
            self.reloads_refused.inc();
        }
    }

    /// Counts a finished script call.
    pub fn script(&self, elapsed: Duration, outcome: ScriptOutcome) {
        self.script_durations.observe(elapsed.as_secs_f64());
        match outcome {
            ScriptOutcome::Completed => self.script_runs[0].inc(),
            ScriptOutcome::Failed => self.script_runs[1].inc(),
            ScriptOutcome::Limit(limit) => {
                self.script_runs[2].inc();
                self.script_limits[limit_index(limit)].inc();
            }
        }
    }

    /// Sets the audit queue's metrics: its depth now and the events dropped since start.
    pub fn audit_queue(&self, depth: usize, dropped_total: u64) {
        self.audit_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
        let counted = self.audit_dropped.get();
        if dropped_total > counted {
            self.audit_dropped.inc_by(dropped_total - counted);
        }
    }

    /// Every metric in the Prometheus text format, with the values read at scrape time.
    pub fn render(&self, store: &Store, scrape: &Scrape) -> String {
        self.generation
            .set(i64::try_from(scrape.generation).unwrap_or(i64::MAX));
        self.audit_queue(scrape.audit_queue_depth, scrape.audit_dropped);
        let pool = store.pool_state();
        self.pool_connections[0].set(i64::from(pool.idle));
        self.pool_connections[1].set(i64::from(pool.connections.saturating_sub(pool.idle)));
        self.pool_max.set(i64::from(pool.max_size));
        let mut text = String::new();
        if let Err(error) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut text) {
            tracing::error!(%error, "cannot encode the metrics");
        }
        text
    }
}

/// `count` empty slots.
fn slots<T>(count: usize) -> Box<[OnceLock<T>]> {
    (0..count).map(|_| OnceLock::new()).collect()
}

/// The slot of `path`'s resource family.
fn family_index(path: &str) -> usize {
    let Some(rest) = path.strip_prefix("/openidm") else {
        return UI_FAMILY;
    };
    if !rest.is_empty() && !rest.starts_with('/') {
        return UI_FAMILY;
    }
    let first = rest.trim_start_matches('/').split('/').next().unwrap_or("");
    FAMILIES[..OTHER_FAMILY]
        .iter()
        .position(|family| *family == first)
        .unwrap_or(OTHER_FAMILY)
}

fn limit_index(limit: ScriptLimit) -> usize {
    match limit {
        ScriptLimit::Time => 0,
        ScriptLimit::Operations => 1,
        ScriptLimit::CallDepth => 2,
        ScriptLimit::Size => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_resource_family() {
        let name = |path| FAMILIES[family_index(path)];
        assert_eq!(name("/openidm/managed/user/x"), "managed");
        assert_eq!(name("/openidm/info/ping"), "info");
        assert_eq!(name("/openidm/metrics/prometheus"), "metrics");
        assert_eq!(name("/openidm/nothing-here"), "other");
        assert_eq!(name("/openidm"), "other");
        assert_eq!(name("/openidmx/managed"), "ui");
        assert_eq!(name("/index.html"), "ui");
        assert_eq!(name("/openidm/ui"), "other");
    }

    #[test]
    fn limits_are_indexed_in_order() {
        for (index, limit) in LIMITS.iter().enumerate() {
            assert_eq!(limit_index(*limit), index);
        }
    }
}
