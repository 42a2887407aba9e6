//! `ferridm.json`: ferridm's own settings (IDM has no equivalent). Every key is optional; unknown
//! keys are errors because we own the format.

use serde::Deserialize;

/// Limits applied to every script engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptLimitSettings {
    /// Operations one script call may run.
    pub max_operations: u64,
    /// Function call depth.
    pub max_call_levels: usize,
    /// Longest string a script may build, in bytes.
    pub max_string_size: usize,
    /// Largest array.
    pub max_array_size: usize,
    /// Largest map.
    pub max_map_size: usize,
    /// Wall-clock budget of one call, in milliseconds.
    pub max_millis: u64,
}

impl Default for ScriptLimitSettings {
    /// The engine's own defaults (`ScriptLimits::new`), so they are written in one place.
    fn default() -> Self {
        let limits = ferridm_plugins::ScriptLimits::new(std::path::PathBuf::new());
        Self {
            max_operations: limits.max_operations,
            max_call_levels: limits.max_call_levels,
            max_string_size: limits.max_string_size,
            max_array_size: limits.max_array_size,
            max_map_size: limits.max_map_size,
            max_millis: u64::try_from(limits.max_duration.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Argon2id cost for stored passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordHashSettings {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Passwords hashed or verified at once (0: one per core); each takes `memoryKib`.
    pub max_concurrent: u32,
    /// How long a password check waits for its turn before the request is a 503.
    pub queue_timeout_millis: u64,
}

impl Default for PasswordHashSettings {
    fn default() -> Self {
        // OWASP's recommended minimum for argon2id.
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 0,
            queue_timeout_millis: 5_000,
        }
    }
}

/// How the conf and script directories are watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum WatchMode {
    /// Native file-system events (inotify, …).
    #[default]
    Native,
    /// Polling, for file systems without events (NFS, some container mounts).
    Poll,
    /// No watching: reload only through `PUT /openidm/config/<id>`.
    Off,
}

/// Watching for changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct WatchSettings {
    /// Native events or polling.
    pub mode: WatchMode,
    /// Quiet time after the last change before a reload, in milliseconds.
    pub debounce_millis: u64,
    /// Poll interval, in milliseconds (poll mode).
    pub poll_millis: u64,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            mode: WatchMode::Native,
            debounce_millis: 150,
            poll_millis: 500,
        }
    }
}

/// Nodes sharing a database: how often each records that it is alive, and after how long
/// without a heartbeat the others list it as down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSettings {
    /// Milliseconds between heartbeats.
    pub heartbeat_millis: u64,
    /// Milliseconds without a heartbeat after which a node is down.
    pub down_after_millis: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            heartbeat_millis: 5_000,
            down_after_millis: 15_000,
        }
    }
}

/// The verified-credential cache (header authentication without a KDF run per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialCacheSettings {
    /// Entries kept at most.
    pub max_entries: usize,
    /// Seconds an entry stays valid.
    pub ttl_seconds: u64,
}

impl Default for CredentialCacheSettings {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            ttl_seconds: 60,
        }
    }
}

/// Client queries of managed objects: how many run at once, so that cheap requests stay fast
/// however many expensive queries arrive, and how long each may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct QuerySettings {
    /// Queries run at once (0: one per core); the others queue.
    pub max_concurrent: u32,
    /// How long a query waits for its turn before the request is a 503.
    pub queue_timeout_millis: u64,
    /// How long a query may run before it is cancelled and the request is a 503 (0: no limit).
    pub time_limit_millis: u64,
}

impl QuerySettings {
    /// The time limit of one query, if there is one.
    pub fn time_limit(&self) -> Option<std::time::Duration> {
        (self.time_limit_millis > 0).then(|| std::time::Duration::from_millis(self.time_limit_millis))
    }
}

impl Default for QuerySettings {
    fn default() -> Self {
        Self {
            max_concurrent: 0,
            queue_timeout_millis: 10_000,
            time_limit_millis: 10_000,
        }
    }
}

/// Connections at the edge: how many, how long they may idle or take to send a request head,
/// and how large a head may be. Read when the server starts (the head bounds also at every
/// reload, for new connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSettings {
    /// Connections each worker serves at once; beyond that new connections wait to be accepted.
    pub max_connections: usize,
    /// How long an idle kept-alive connection stays open, in milliseconds (0: no keep-alive).
    pub keep_alive_millis: u64,
    /// How long a new connection may take to send its first request head, in milliseconds,
    /// before it gets a 408 and is closed (0: no limit).
    pub request_head_timeout_millis: u64,
    /// How long closing a connection may take before it is dropped, in milliseconds (0: no
    /// limit).
    pub disconnect_timeout_millis: u64,
    /// Longest request line in bytes (414 beyond it).
    #[serde(deserialize_with = "head_bytes")]
    pub max_request_line_bytes: usize,
    /// Longest request head in bytes, request line and header lines (431 beyond it).
    #[serde(deserialize_with = "head_bytes")]
    pub max_header_bytes: usize,
    /// Most header lines a request may have (431 beyond it).
    #[serde(deserialize_with = "header_count")]
    pub max_headers: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_connections: 25_000,
            keep_alive_millis: 5_000,
            request_head_timeout_millis: 5_000,
            disconnect_timeout_millis: 1_000,
            max_request_line_bytes: MAX_HEAD_BYTES,
            max_header_bytes: MAX_HEAD_BYTES,
            max_headers: MAX_HEADER_LINES,
        }
    }
}

/// The largest head bound that may be configured (the HTTP library refuses larger heads with
/// an empty body).
pub const MAX_HEAD_BYTES: usize = 96 * 1024;

/// The most header lines that may be allowed (the HTTP library's own bound).
pub const MAX_HEADER_LINES: usize = 96;

fn bounded<'de, D: serde::Deserializer<'de>>(deserializer: D, low: usize, high: usize) -> Result<usize, D::Error> {
    let value = usize::deserialize(deserializer)?;
    if (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format!(
            "{value} is out of range: it must be from {low} to {high}"
        )))
    }
}

fn head_bytes<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    bounded(deserializer, 64, MAX_HEAD_BYTES)
}

fn header_count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    bounded(deserializer, 1, MAX_HEADER_LINES)
}

/// The whole of `ferridm.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Largest request body, in bytes (5 MB by default).
    pub max_body_bytes: usize,
    /// Longest wait for the next part of a request body, in milliseconds (10 s by default): a
    /// client that stops sending gets a 408 and its connection closed.
    pub body_timeout_millis: u64,
    /// Most results an unpaged query may return before it is refused.
    pub max_unpaged_query_results: u64,
    /// Script engine limits.
    pub script_limits: ScriptLimitSettings,
    /// Password hashing cost.
    pub password_hashing: PasswordHashSettings,
    /// Client queries.
    pub queries: QuerySettings,
    /// Conf and script watching.
    pub watch: WatchSettings,
    /// Cluster membership.
    pub cluster: ClusterSettings,
    /// Verified-credential cache.
    pub credential_cache: CredentialCacheSettings,
    /// Connections and request heads.
    pub http: HttpSettings,
    /// Whether policies are enforced on writes (IDM's `openidm.policy.enforcement.enabled`).
    pub policy_enforcement: bool,
    /// Directory (relative to the project directory) for data such as generated secrets and the
    /// mail outbox.
    pub data_dir: String,
    /// Whether a client's `X-ForgeRock-TransactionId` is taken as the request's transaction id
    /// (IDM's `org.forgerock.http.TrustTransactionHeader`); otherwise a new one is made.
    pub trust_transaction_header: bool,
    /// Managed types (by name) whose property index holds every property, not only those
    /// their schema marks `searchable`: filters and sorts on the others then read the index
    /// instead of the objects, and every write indexes more.
    pub index_every_property: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_body_bytes: 5 * 1024 * 1024,
            body_timeout_millis: 10_000,
            max_unpaged_query_results: 20_000,
            script_limits: ScriptLimitSettings::default(),
            password_hashing: PasswordHashSettings::default(),
            queries: QuerySettings::default(),
            watch: WatchSettings::default(),
            cluster: ClusterSettings::default(),
            credential_cache: CredentialCacheSettings::default(),
            http: HttpSettings::default(),
            policy_enforcement: true,
            data_dir: "data".to_owned(),
            trust_transaction_header: false,
            index_every_property: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_optional() {
        let settings: Settings = serde_json::from_str("{}").unwrap();
        assert_eq!(settings, Settings::default());
        assert_eq!(settings.max_body_bytes, 5 * 1024 * 1024);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(serde_json::from_str::<Settings>(r#"{"maxBodyByte": 1}"#).is_err());
        assert!(serde_json::from_str::<Settings>(r#"{"watch": {"mode": "sometimes"}}"#).is_err());
    }

    #[test]
    fn head_bounds_stay_within_what_the_http_library_takes() {
        let settings: Settings =
            serde_json::from_str(r#"{"http": {"maxHeaderBytes": 4096, "maxHeaders": 10}}"#).unwrap();
        assert_eq!((settings.http.max_header_bytes, settings.http.max_headers), (4096, 10));
        assert_eq!(settings.http.max_request_line_bytes, MAX_HEAD_BYTES);
        for refused in [
            r#"{"http": {"maxHeaderBytes": 200000}}"#,
            r#"{"http": {"maxRequestLineBytes": 10}}"#,
            r#"{"http": {"maxHeaders": 0}}"#,
            r#"{"http": {"maxHeaders": 97}}"#,
        ] {
            let error = serde_json::from_str::<Settings>(refused).unwrap_err().to_string();
            assert!(error.contains("out of range"), "{refused}: {error}");
        }
    }
}
