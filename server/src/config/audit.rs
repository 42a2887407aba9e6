//! `audit.json` (IDM's format): which audit event handlers run, for which topics, what they may
//! record. Typed with the rest of a generation, so a broken file is refused at reload like any
//! other; without the file nothing is audited.
//!
//! Handlers ferridm runs, by IDM's class names: the JSON file handler
//! (`org.forgerock.audit.handlers.json.JsonAuditEventHandler`, one `<topic>.audit.json` file per
//! topic, rotated and retained per `fileRotation`/`fileRetention`), the repository handler
//! (`org.forgerock.openidm.audit.impl.RepositoryAuditEventHandler`, the database; it answers
//! `audit/<topic>` queries), syslog (`org.forgerock.audit.handlers.syslog.SyslogAuditEventHandler`,
//! RFC 5424 over UDP or TCP) and JSON on standard output
//! (`org.forgerock.audit.handlers.json.stdout.JsonStdoutAuditEventHandler`). Other IDM handlers
//! (CSV, JMS, Elasticsearch, Splunk, router) are named in a warning and skipped.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// The topics ferridm records.
pub const TOPICS: [&str; 4] = ["access", "activity", "authentication", "config"];

/// `audit.json`, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditConfig {
    /// The enabled handlers ferridm runs.
    pub handlers: Vec<Handler>,
    /// Handlers of `audit.json` ferridm does not run (their class names), for a warning.
    pub skipped: Vec<String>,
    /// Field paths (`/<topic>/<pointer>`) removed from every event (`filterPolicies.field.excludeIf`).
    pub excluded_fields: Vec<Vec<String>>,
    /// Field paths whose values are masked (`filterPolicies.value.excludeIf`).
    pub masked_values: Vec<Vec<String>>,
    /// Per topic, the operations recorded (`eventTopics.<topic>.filter.actions`, lower case);
    /// a topic not named records every operation.
    pub actions: BTreeMap<String, Vec<String>>,
    /// `eventTopics.activity.passwordFields`: changes to these set `passwordChanged`.
    pub password_fields: Vec<String>,
    /// `eventTopics.activity.watchedFields`: when set, `changedFields` reports only these.
    pub watched_fields: Vec<String>,
    /// The queue between requests and handlers.
    pub queue: QueueSettings,
}

impl AuditConfig {
    /// True when some enabled handler records `topic`.
    pub fn records(&self, topic: &str) -> bool {
        self.handlers
            .iter()
            .any(|handler| handler.topics.iter().any(|t| t == topic))
    }

    /// True when `topic` records operation `action` (`create`, `read`, …; any case).
    pub fn records_action(&self, topic: &str, action: &str) -> bool {
        self.records(topic)
            && self
                .actions
                .get(topic)
                .is_none_or(|actions| actions.iter().any(|a| a.eq_ignore_ascii_case(action)))
    }

    /// The handler that answers `audit/<topic>` queries: the repository handler recording it.
    pub fn query_handler(&self, topic: &str) -> Option<&Handler> {
        self.handlers.iter().find(|handler| {
            matches!(handler.kind, HandlerKind::Repository) && handler.topics.iter().any(|t| t == topic)
        })
    }
}

/// One enabled handler.
#[derive(Debug, Clone, PartialEq)]
pub struct Handler {
    /// Its `name`.
    pub name: String,
    /// The topics it records.
    pub topics: Vec<String>,
    /// What it writes to.
    pub kind: HandlerKind,
}

/// What a handler writes to.
#[derive(Debug, Clone, PartialEq)]
pub enum HandlerKind {
    /// JSON lines, one file per topic.
    JsonFile(JsonFileSettings),
    /// JSON lines on standard output.
    Stdout,
    /// The database.
    Repository,
    /// A syslog collector.
    Syslog(SyslogSettings),
}

/// The JSON file handler's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonFileSettings {
    /// `logDirectory`, as written (relative paths resolve against the project directory).
    pub log_directory: String,
    /// `fileRotation`.
    pub rotation: Rotation,
    /// `fileRetention`.
    pub retention: Retention,
}

/// When a topic's file is rotated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rotation {
    /// `rotationEnabled`.
    pub enabled: bool,
    /// `maxFileSize` in bytes (0: no size limit).
    pub max_file_size: u64,
    /// `rotationInterval` (`None`: no time limit).
    pub interval: Option<Duration>,
    /// `rotationFilePrefix`.
    pub prefix: String,
    /// `rotationFileSuffix` as a chrono format (from IDM's Java date pattern).
    pub suffix: String,
}

/// Which rotated files are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// `maxNumberOfHistoryFiles` (0: no limit).
    pub max_files: usize,
    /// `maxDiskSpaceToUse` in bytes, over the rotated files of a topic (0: no limit).
    pub max_bytes: u64,
}

/// The syslog handler's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogSettings {
    /// `UDP` or `TCP`.
    pub tcp: bool,
    /// The collector's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `connectTimeout`, in milliseconds.
    pub connect_timeout_millis: u64,
    /// The facility's code (`KERN` 0 … `LOCAL7` 23).
    pub facility: u8,
}

/// The queue between requests and handlers (`auditServiceConfig.queue`, ferridm's key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Events waiting at most.
    pub max_size: usize,
    /// What a full queue does to a new event.
    pub when_full: WhenFull,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            max_size: 100_000,
            when_full: WhenFull::Drop,
        }
    }
}

/// What a full queue does to a new event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WhenFull {
    /// The event is dropped and counted; the request goes on at once.
    Drop,
    /// The request waits until the handlers have made room (back-pressure).
    Block,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawAudit {
    audit_service_config: RawServiceConfig,
    event_handlers: Vec<RawHandler>,
    event_topics: BTreeMap<String, RawTopic>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawServiceConfig {
    filter_policies: RawFilterPolicies,
    queue: Option<RawQueue>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawFilterPolicies {
    field: RawFilter,
    value: RawFilter,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawFilter {
    exclude_if: Vec<String>,
    include_if: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawQueue {
    #[serde(default)]
    max_size: Option<usize>,
    #[serde(default)]
    when_full: Option<WhenFull>,
}

#[derive(Deserialize)]
struct RawHandler {
    class: String,
    #[serde(default)]
    config: serde_json::Map<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawTopic {
    filter: Option<RawActions>,
    password_fields: Vec<String>,
    watched_fields: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawActions {
    actions: Vec<String>,
}

const JSON_CLASS: &str = "org.forgerock.audit.handlers.json.JsonAuditEventHandler";
const STDOUT_CLASS: &str = "org.forgerock.audit.handlers.json.stdout.JsonStdoutAuditEventHandler";
const REPOSITORY_CLASS: &str = "org.forgerock.openidm.audit.impl.RepositoryAuditEventHandler";
const SYSLOG_CLASS: &str = "org.forgerock.audit.handlers.syslog.SyslogAuditEventHandler";

impl<'de> Deserialize<'de> for AuditConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawAudit::deserialize(deserializer)?;
        AuditConfig::from_raw(raw).map_err(serde::de::Error::custom)
    }
}

impl AuditConfig {
    fn from_raw(raw: RawAudit) -> Result<Self, String> {
        let mut config = AuditConfig::default();
        for handler in raw.event_handlers {
            let settings = &handler.config;
            if settings.get("enabled").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let name = settings
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("the handler {} has no config.name", handler.class))?
                .to_owned();
            let topics: Vec<String> = match settings.get("topics") {
                Some(topics) => serde_json::from_value(topics.clone())
                    .map_err(|_| format!("the handler {name}: topics must be a list of names"))?,
                None => Vec::new(),
            };
            let kind = match handler.class.as_str() {
                JSON_CLASS => HandlerKind::JsonFile(json_file_settings(&name, settings)?),
                STDOUT_CLASS => HandlerKind::Stdout,
                REPOSITORY_CLASS => HandlerKind::Repository,
                SYSLOG_CLASS => HandlerKind::Syslog(syslog_settings(&name, settings)?),
                other => {
                    config.skipped.push(other.to_owned());
                    continue;
                }
            };
            config.handlers.push(Handler { name, topics, kind });
        }
        let policies = raw.audit_service_config.filter_policies;
        if !policies.field.include_if.is_empty() || !policies.value.include_if.is_empty() {
            return Err("filterPolicies includeIf is not supported; list the fields to leave out in excludeIf".into());
        }
        config.excluded_fields = policies.field.exclude_if.iter().map(|path| split_path(path)).collect();
        config.masked_values = policies.value.exclude_if.iter().map(|path| split_path(path)).collect();
        if let Some(queue) = raw.audit_service_config.queue {
            let defaults = QueueSettings::default();
            config.queue = QueueSettings {
                max_size: queue.max_size.unwrap_or(defaults.max_size).max(1),
                when_full: queue.when_full.unwrap_or(defaults.when_full),
            };
        }
        for (topic, settings) in raw.event_topics {
            if let Some(filter) = settings.filter {
                config
                    .actions
                    .insert(topic.clone(), filter.actions.iter().map(|a| a.to_lowercase()).collect());
            }
            if topic == "activity" {
                config.password_fields = settings.password_fields;
                config.watched_fields = settings.watched_fields;
            }
        }
        Ok(config)
    }
}

/// `/access/http/request/headers/X-OpenIDM-Password` → its segments, header names lower case
/// (headers are recorded in lower case).
fn split_path(path: &str) -> Vec<String> {
    let segments: Vec<String> = path.trim_start_matches('/').split('/').map(str::to_owned).collect();
    let headers = segments.len() > 3 && segments[1] == "http" && segments[3] == "headers";
    segments
        .into_iter()
        .enumerate()
        .map(|(index, segment)| {
            if headers && index == 4 {
                segment.to_lowercase()
            } else {
                segment
            }
        })
        .collect()
}

fn json_file_settings(name: &str, settings: &serde_json::Map<String, Value>) -> Result<JsonFileSettings, String> {
    let log_directory = settings
        .get("logDirectory")
        .and_then(Value::as_str)
        .unwrap_or("audit")
        .to_owned();
    let rotation = settings.get("fileRotation").cloned().unwrap_or(Value::Null);
    let retention = settings.get("fileRetention").cloned().unwrap_or(Value::Null);
    let number = |value: &Value, key: &str| -> Result<u64, String> {
        match value.get(key) {
            None | Some(Value::Null) => Ok(0),
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| format!("the handler {name}: {key} must be a whole number")),
            Some(Value::String(text)) => text
                .parse()
                .map_err(|_| format!("the handler {name}: {key} must be a whole number")),
            Some(_) => Err(format!("the handler {name}: {key} must be a whole number")),
        }
    };
    let interval = match rotation.get("rotationInterval").and_then(Value::as_str) {
        None => None,
        Some(text) => parse_duration(text).map_err(|error| format!("the handler {name}: rotationInterval {error}"))?,
    };
    Ok(JsonFileSettings {
        log_directory,
        rotation: Rotation {
            enabled: rotation
                .get("rotationEnabled")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            max_file_size: number(&rotation, "maxFileSize")?,
            interval,
            prefix: rotation
                .get("rotationFilePrefix")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            suffix: java_date_pattern(
                rotation
                    .get("rotationFileSuffix")
                    .and_then(Value::as_str)
                    .unwrap_or("-yyyy.MM.dd-HH.mm.ss"),
            ),
        },
        retention: Retention {
            max_files: usize::try_from(number(&retention, "maxNumberOfHistoryFiles")?).unwrap_or(usize::MAX),
            max_bytes: number(&retention, "maxDiskSpaceToUse")?,
        },
    })
}

fn syslog_settings(name: &str, settings: &serde_json::Map<String, Value>) -> Result<SyslogSettings, String> {
    let protocol = settings.get("protocol").and_then(Value::as_str).unwrap_or("UDP");
    let tcp = match protocol.to_ascii_uppercase().as_str() {
        "UDP" => false,
        "TCP" => true,
        other => return Err(format!("the handler {name}: protocol {other} is neither UDP nor TCP")),
    };
    let host = settings
        .get("host")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the handler {name} has no host"))?
        .to_owned();
    let port = settings
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|port| u16::try_from(port).ok())
        .ok_or_else(|| format!("the handler {name} has no valid port"))?;
    let facility_name = settings.get("facility").and_then(Value::as_str).unwrap_or("USER");
    let facility = facility_code(facility_name)
        .ok_or_else(|| format!("the handler {name}: unknown syslog facility {facility_name}"))?;
    let connect_timeout_seconds = settings.get("connectTimeout").and_then(Value::as_u64).unwrap_or(30);
    Ok(SyslogSettings {
        tcp,
        host,
        port,
        connect_timeout_millis: connect_timeout_seconds.saturating_mul(1000),
        facility,
    })
}

/// RFC 5424's facility codes, by IDM's names.
fn facility_code(name: &str) -> Option<u8> {
    const NAMES: [&str; 24] = [
        "KERN", "USER", "MAIL", "DAEMON", "AUTH", "SYSLOG", "LPR", "NEWS", "UUCP", "CRON", "AUTHPRIV", "FTP", "NTP",
        "LOGAUDIT", "LOGALERT", "CLOCKD", "LOCAL0", "LOCAL1", "LOCAL2", "LOCAL3", "LOCAL4", "LOCAL5", "LOCAL6",
        "LOCAL7",
    ];
    let upper = name.to_ascii_uppercase();
    NAMES
        .iter()
        .position(|known| *known == upper)
        .and_then(|code| u8::try_from(code).ok())
}

/// IDM's durations: `5 seconds`, `1 day`, `100 millis`; `0` or `disabled` is none.
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text == "0" || text.eq_ignore_ascii_case("disabled") || text.eq_ignore_ascii_case("zero") {
        return Ok(None);
    }
    let (amount, unit) = text
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("'{text}' is not a duration such as '1 day'"))?;
    let amount: u64 = amount
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as '1 day'"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit_millis: u64 = match unit.as_str() {
        "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return Err(format!("'{text}' has an unknown unit")),
    };
    Ok((amount > 0).then(|| Duration::from_millis(amount.saturating_mul(unit_millis))))
}

/// A Java `SimpleDateFormat` pattern (`-yyyy.MM.dd-HH.mm.ss`) as a chrono format; letters other
/// than the date fields are kept literally.
fn java_date_pattern(pattern: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut index = 0;
    while index < chars.len() {
        let letter = chars[index];
        let mut run = 1;
        while index + run < chars.len() && chars[index + run] == letter {
            run += 1;
        }
        let field = match (letter, run) {
            ('y', 2) => Some("%y"),
            ('y', _) => Some("%Y"),
            ('M', _) => Some("%m"),
            ('d', _) => Some("%d"),
            ('H' | 'k', _) => Some("%H"),
            ('m', _) => Some("%M"),
            ('s', _) => Some("%S"),
            ('S', _) => Some("%3f"),
            _ => None,
        };
        match field {
            Some(field) => out.push_str(field),
            None => {
                for _ in 0..run {
                    if letter == '%' {
                        out.push_str("%%");
                    } else {
                        out.push(letter);
                    }
                }
            }
        }
        index += run;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn idm_audit_json_parses_into_handlers_and_filters() {
        let config: AuditConfig = serde_json::from_value(json!({
            "auditServiceConfig": {
                "handlerForQueries": "repo",
                "filterPolicies": {"field": {"excludeIf": ["/access/http/request/headers/X-Custom-Secret"], "includeIf": []}},
                "queue": {"maxSize": 10, "whenFull": "block"}
            },
            "eventHandlers": [
                {"class": JSON_CLASS, "config": {"name": "json", "topics": ["access"], "logDirectory": "audit",
                    "fileRotation": {"rotationEnabled": true, "maxFileSize": 1000, "rotationInterval": "1 day",
                        "rotationFilePrefix": "old-"},
                    "fileRetention": {"maxNumberOfHistoryFiles": 3}}},
                {"class": REPOSITORY_CLASS, "config": {"name": "repo", "topics": ["activity"]}},
                {"class": REPOSITORY_CLASS, "config": {"name": "off", "enabled": false, "topics": ["access"]}},
                {"class": "org.forgerock.audit.handlers.csv.CsvAuditEventHandler", "config": {"name": "csv", "topics": ["access"]}},
                {"class": SYSLOG_CLASS, "config": {"name": "syslog", "topics": ["config"], "protocol": "TCP",
                    "host": "127.0.0.1", "port": 514, "facility": "LOCAL0"}}
            ],
            "eventTopics": {"activity": {"filter": {"actions": ["CREATE", "delete"]}, "passwordFields": ["password"]}}
        }))
        .unwrap_or_default();
        assert_eq!(config.handlers.len(), 3);
        assert_eq!(
            config.skipped,
            ["org.forgerock.audit.handlers.csv.CsvAuditEventHandler"]
        );
        let HandlerKind::JsonFile(json) = &config.handlers[0].kind else {
            panic!("the JSON handler is first");
        };
        assert_eq!(json.rotation.max_file_size, 1000);
        assert_eq!(json.rotation.interval, Some(Duration::from_secs(86_400)));
        assert_eq!(json.rotation.suffix, "-%Y.%m.%d-%H.%M.%S");
        assert_eq!(json.retention.max_files, 3);
        assert_eq!(
            config.handlers[2].kind,
            HandlerKind::Syslog(SyslogSettings {
                tcp: true,
                host: "127.0.0.1".into(),
                port: 514,
                connect_timeout_millis: 30_000,
                facility: 16
            })
        );
        assert_eq!(
            config.excluded_fields,
            [vec!["access", "http", "request", "headers", "x-custom-secret"]]
        );
        assert_eq!(
            config.queue,
            QueueSettings {
                max_size: 10,
                when_full: WhenFull::Block
            }
        );
        assert!(config.records_action("activity", "create"));
        assert!(!config.records_action("activity", "patch"));
        assert!(config.records_action("access", "read"));
        assert!(
            config.records_action("activity", "CREATE"),
            "operations are matched in any case"
        );
        assert!(!config.records("authentication"));
        assert_eq!(config.password_fields, ["password"]);
        assert!(config.query_handler("activity").is_some());
        assert!(config.query_handler("access").is_none());
    }

    #[test]
    fn broken_handlers_are_refused_with_their_name() {
        let refused = |value: Value| {
            serde_json::from_value::<AuditConfig>(value)
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        assert!(
            refused(json!({"eventHandlers": [{"class": SYSLOG_CLASS, "config": {"name": "s", "host": "h"}}]}))
                .contains("the handler s has no valid port")
        );
        assert!(
            refused(json!({"eventHandlers": [{"class": JSON_CLASS, "config": {"name": "j",
                "fileRotation": {"rotationInterval": "often"}}}]}))
            .contains("rotationInterval")
        );
        assert!(refused(json!({"auditServiceConfig": {"queue": {"whenFull": "explode"}}})).contains("explode"));
    }

    #[test]
    fn durations_read_as_idm_writes_them() {
        assert_eq!(parse_duration("5 seconds"), Ok(Some(Duration::from_secs(5))));
        assert_eq!(parse_duration("100 millis"), Ok(Some(Duration::from_millis(100))));
        assert_eq!(parse_duration("2 hours"), Ok(Some(Duration::from_secs(7200))));
        assert_eq!(parse_duration("disabled"), Ok(None));
        assert!(parse_duration("soon").is_err());
    }
}
