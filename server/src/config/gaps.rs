//! What ferridm does not implement of a conf directory written for IDM 7.x: every file and key
//! its loaders would skip, one finding each (`sync.json: not implemented (synchronization
//! mappings)`, `managed.json: objects[user].schema.properties.roles.items.resourceCollection:
//! not implemented`), so a team moving from IDM sees the gap before it ships.
//!
//! The catalog below lists, per file, the keys the loaders in this module's siblings read (the
//! `managed`, `policy`, `access`, `authentication`, `audit`, `email`, `profile` and self-service
//! loaders) and the keys that only describe (titles, icons), which change nothing. A unit test
//! checks that ferridm's own shipped `conf/` is reported as fully implemented, so a key the
//! loaders learn must be added here.

use std::path::Path;

use serde_json::Value;

/// Which keys of a JSON value are implemented.
#[derive(Debug)]
enum Node {
    /// Any value, whatever it holds.
    Any,
    /// An object with these keys (each with what its value may hold); others are gaps.
    Fields(&'static [(&'static str, &'static Node)]),
    /// Every element of an array, or every value of an object.
    Each(&'static Node),
    /// Array elements whose `key` names one of `implemented` (others are a gap as a whole),
    /// each read as `node`.
    Select {
        key: &'static str,
        implemented: &'static [&'static str],
        node: &'static Node,
    },
}

/// Keys that describe a schema or property for people and UIs and change no behaviour.
const DESCRIPTIVE: [&str; 9] = [
    "$schema",
    "title",
    "description",
    "icon",
    "mat-icon",
    "usageDescription",
    "isPersonal",
    "order",
    "id",
];

static ANY: Node = Node::Any;
static LIST_OF_ANY: Node = Node::Each(&ANY);

static POLICY_REF: Node = Node::Fields(&[("policyId", &ANY), ("params", &ANY)]);
static POLICY_REFS: Node = Node::Each(&POLICY_REF);
static PROPERTIES: Node = Node::Each(&PROPERTY);
static PROPERTY: Node = Node::Fields(&[
    ("type", &ANY),
    ("viewable", &ANY),
    ("userEditable", &ANY),
    ("searchable", &ANY),
    ("returnByDefault", &ANY),
    ("isVirtual", &ANY),
    ("scope", &ANY),
    ("isProtected", &ANY),
    ("minLength", &ANY),
    ("maxLength", &ANY),
    ("pattern", &ANY),
    ("policies", &POLICY_REFS),
    ("default", &ANY),
    ("items", &PROPERTY),
    ("properties", &PROPERTIES),
    ("required", &ANY),
    ("encryption", &ANY),
    ("secureHash", &ANY),
    // Relationships: stored as edges; `resourceCollection` also serves UIs picking objects.
    ("resourceCollection", &ANY),
    ("reverseRelationship", &ANY),
    ("reversePropertyName", &ANY),
    ("validate", &ANY),
    // A role's `condition` (`service::roles`) grants it to the users that match.
    ("isConditional", &ANY),
]);
static OBJECT_SCHEMA: Node = Node::Fields(&[("type", &ANY), ("required", &ANY), ("properties", &PROPERTIES)]);
static MANAGED_OBJECT: Node = Node::Fields(&[
    ("name", &ANY),
    ("schema", &OBJECT_SCHEMA),
    (
        "meta",
        &Node::Fields(&[
            ("property", &ANY),
            ("resourceCollection", &ANY),
            ("trackedProperties", &ANY),
        ]),
    ),
    ("onCreate", &ANY),
    ("onUpdate", &ANY),
    ("onDelete", &ANY),
    ("postCreate", &ANY),
    ("postUpdate", &ANY),
    ("postDelete", &ANY),
    ("onValidate", &ANY),
    ("onRead", &ANY),
]);
static MANAGED: Node = Node::Fields(&[("objects", &Node::Each(&MANAGED_OBJECT))]);

static CONDITIONAL_POLICY: Node =
    Node::Fields(&[("condition", &ANY), ("dependencies", &ANY), ("policies", &POLICY_REFS)]);
static POLICY_PROPERTY: Node = Node::Fields(&[
    ("name", &ANY),
    ("policies", &POLICY_REFS),
    ("conditionalPolicies", &Node::Each(&CONDITIONAL_POLICY)),
    ("fallbackPolicies", &POLICY_REFS),
]);
static POLICY_RESOURCE: Node = Node::Fields(&[("resource", &ANY), ("properties", &Node::Each(&POLICY_PROPERTY))]);
static POLICY: Node = Node::Fields(&[
    ("type", &ANY),
    ("file", &ANY),
    ("source", &ANY),
    ("additionalFiles", &ANY),
    ("resources", &Node::Each(&POLICY_RESOURCE)),
]);

static ACCESS_RULE: Node = Node::Fields(&[
    ("pattern", &ANY),
    ("roles", &ANY),
    ("methods", &ANY),
    ("actions", &ANY),
    ("customAuthz", &ANY),
    ("excludePatterns", &ANY),
]);
static ACCESS: Node = Node::Fields(&[("configs", &Node::Each(&ACCESS_RULE))]);

static SESSION_PROPERTIES: Node = Node::Fields(&[
    ("maxTokenLifeMinutes", &ANY),
    ("tokenIdleTimeMinutes", &ANY),
    ("sessionOnly", &ANY),
    ("isHttpOnly", &ANY),
    ("isSecure", &ANY),
]);
static MODULE_PROPERTIES: Node = Node::Fields(&[
    ("queryOnResource", &ANY),
    ("queryId", &ANY),
    (
        "propertyMapping",
        &Node::Fields(&[
            ("userRoles", &ANY),
            ("userCredential", &ANY),
            ("authenticationId", &ANY),
        ]),
    ),
    ("defaultUserRoles", &ANY),
    ("username", &ANY),
    ("password", &ANY),
    ("augmentSecurityContext", &ANY),
    ("clientIPHeader", &ANY),
]);
static AUTH_MODULE: Node = Node::Fields(&[("name", &ANY), ("enabled", &ANY), ("properties", &MODULE_PROPERTIES)]);
static AUTHENTICATION: Node = Node::Fields(&[(
    "serverAuthContext",
    &Node::Fields(&[
        (
            "sessionModule",
            &Node::Fields(&[("name", &ANY), ("properties", &SESSION_PROPERTIES)]),
        ),
        ("accountLockout", &ANY),
        (
            "authModules",
            &Node::Select {
                key: "name",
                implemented: &["STATIC_USER", "MANAGED_USER", "INTERNAL_USER"],
                node: &AUTH_MODULE,
            },
        ),
    ]),
)]);

static AUDIT_FILTER: Node = Node::Fields(&[("excludeIf", &ANY), ("includeIf", &ANY)]);
static AUDIT: Node = Node::Fields(&[
    (
        "auditServiceConfig",
        &Node::Fields(&[
            ("handlerForQueries", &ANY),
            ("availableAuditEventHandlers", &ANY),
            (
                "filterPolicies",
                &Node::Fields(&[("field", &AUDIT_FILTER), ("value", &AUDIT_FILTER)]),
            ),
            ("queue", &ANY),
        ]),
    ),
    (
        "eventHandlers",
        &Node::Select {
            key: "class",
            implemented: &[
                "org.forgerock.audit.handlers.json.JsonAuditEventHandler",
                "org.forgerock.audit.handlers.json.stdout.JsonStdoutAuditEventHandler",
                "org.forgerock.openidm.audit.impl.RepositoryAuditEventHandler",
                "org.forgerock.audit.handlers.syslog.SyslogAuditEventHandler",
            ],
            node: &Node::Fields(&[("class", &ANY), ("config", &ANY)]),
        },
    ),
    (
        "eventTopics",
        &Node::Each(&Node::Fields(&[
            ("filter", &Node::Fields(&[("actions", &ANY)])),
            ("passwordFields", &ANY),
            ("watchedFields", &ANY),
        ])),
    ),
]);

static TOGGLE: Node = Node::Fields(&[("enable", &ANY)]);
static EMAIL: Node = Node::Fields(&[
    ("host", &ANY),
    ("port", &ANY),
    ("from", &ANY),
    (
        "auth",
        &Node::Fields(&[("enable", &ANY), ("username", &ANY), ("password", &ANY)]),
    ),
    ("starttls", &TOGGLE),
    ("ssl", &TOGGLE),
]);

static PROCESS: Node = Node::Fields(&[
    ("stageConfigs", &LIST_OF_ANY),
    ("snapshotToken", &ANY),
    ("storage", &ANY),
    ("revealAccountExistence", &ANY),
    ("rateLimit", &ANY),
    ("completeness", &ANY),
]);

/// How ferridm treats one IDM conf file.
enum Coverage {
    /// Read by ferridm: its keys are checked against the node.
    Keys(&'static Node),
    /// Served as written (`GET /openidm/config/<id>`, the UI's endpoints): every key is kept.
    Whole,
    /// Not implemented; what the file configures in IDM.
    Missing(&'static str),
}

/// IDM 7.x conf files by name: an exact name, or a prefix ending in `-`/`.` matched with any
/// rest. The first match wins.
const FILES: &[(&str, Coverage)] = &[
    ("managed.json", Coverage::Keys(&MANAGED)),
    ("policy.json", Coverage::Keys(&POLICY)),
    ("access.json", Coverage::Keys(&ACCESS)),
    ("authentication.json", Coverage::Keys(&AUTHENTICATION)),
    ("audit.json", Coverage::Keys(&AUDIT)),
    ("external.email.json", Coverage::Keys(&EMAIL)),
    ("selfservice.kba.json", Coverage::Whole),
    ("selfservice.terms.json", Coverage::Whole),
    ("selfservice-", Coverage::Keys(&PROCESS)),
    ("consent.json", Coverage::Whole),
    ("ui-configuration.json", Coverage::Whole),
    ("ui-dashboard.json", Coverage::Whole),
    ("auth.profile.json", Coverage::Whole),
    ("identityProviders.json", Coverage::Whole),
    ("identityProvider-", Coverage::Whole),
    ("boot.json", Coverage::Whole),
    ("ferridm.json", Coverage::Whole),
    (
        "boot/boot.properties",
        Coverage::Missing("boot properties: use boot.json and FERRIDM_* variables"),
    ),
    ("sync.json", Coverage::Missing("synchronization mappings")),
    ("provisioner.openicf-", Coverage::Missing("connectors")),
    (
        "provisioner.openicf.connectorinfoprovider.json",
        Coverage::Missing("remote connector servers"),
    ),
    ("repo.ds.json", Coverage::Missing("DS repository: use --db")),
    ("repo.jdbc.json", Coverage::Missing("JDBC repository: use --db")),
    ("repo.init.json", Coverage::Missing("repository initialisation")),
    ("datasource.jdbc-", Coverage::Missing("JDBC data source: use --db")),
    ("router.json", Coverage::Missing("router filters")),
    (
        "script.json",
        Coverage::Missing("script engines: ferridm runs Rhai scripts"),
    ),
    ("jsonstore.json", Coverage::Missing("JSON token store")),
    ("logging.properties", Coverage::Missing("logging: use RUST_LOG")),
    (
        "metrics.json",
        Coverage::Missing("metrics settings: /openidm/metrics/prometheus is always served"),
    ),
    ("notificationFactory.json", Coverage::Missing("notifications")),
    ("scheduler.json", Coverage::Missing("scheduler")),
    ("scheduler-", Coverage::Missing("scheduler")),
    ("schedule-", Coverage::Missing("scheduled jobs")),
    ("servletfilter-", Coverage::Missing("servlet filters")),
    ("webserver", Coverage::Missing("web server settings: use --listen")),
    ("workflow.json", Coverage::Missing("workflow engine")),
    ("info-", Coverage::Missing("info endpoints")),
    ("endpoint-", Coverage::Missing("custom script endpoints")),
    (
        "cluster.json",
        Coverage::Missing("clustering: see ferridm.json cluster"),
    ),
    ("secrets.json", Coverage::Missing("secret stores: use boot.json")),
    ("emailTemplate-", Coverage::Missing("e-mail templates")),
    ("ui.context-", Coverage::Missing("UI contexts: use --ui")),
    ("ui-", Coverage::Missing("UI settings not read by ferridm")),
    (
        "selfservice.",
        Coverage::Missing("self-service settings not read by ferridm"),
    ),
    (
        "authentication.",
        Coverage::Missing("authentication settings not read by ferridm"),
    ),
];

fn coverage(name: &str) -> Option<&'static Coverage> {
    FILES.iter().find_map(|(pattern, coverage)| {
        let matched = if pattern.ends_with('-') || pattern.ends_with('.') || *pattern == "webserver" {
            name.starts_with(pattern)
        } else {
            name == *pattern
        };
        matched.then_some(coverage)
    })
}

/// Every gap of the conf directory, one line each (`<file>: <what>: not implemented`), files
/// in name order. Files that are not valid JSON are left to the loader's errors.
pub fn report(conf_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(conf_dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_file())
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .collect();
    if conf_dir.join("boot").join("boot.properties").is_file() {
        names.push("boot/boot.properties".to_owned());
    }
    names.sort();
    let mut gaps = Vec::new();
    for name in names {
        match coverage(&name) {
            Some(Coverage::Whole) => {}
            Some(Coverage::Missing(what)) => gaps.push(format!("{name}: not implemented ({what})")),
            Some(Coverage::Keys(node)) => {
                let Ok(text) = std::fs::read_to_string(conf_dir.join(&name)) else {
                    continue;
                };
                let Ok(document) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let mut paths = Vec::new();
                walk(node, &document, "", &mut paths);
                gaps.extend(paths.into_iter().map(|path| format!("{name}: {path}: not implemented")));
            }
            None if name.ends_with(".json") => {
                gaps.push(format!(
                    "{name}: not implemented (unknown to ferridm; served as config only)"
                ));
            }
            None => gaps.push(format!("{name}: not implemented")),
        }
    }
    gaps
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// How an array element is named in a path: its `name`, else its `class`'s last segment, else
/// its index.
fn element_name(element: &Value, index: usize) -> String {
    if let Some(name) = element.get("name").and_then(Value::as_str) {
        return name.to_owned();
    }
    if let Some(class) = element.get("class").and_then(Value::as_str) {
        return class.rsplit('.').next().unwrap_or(class).to_owned();
    }
    index.to_string()
}

fn walk(node: &Node, value: &Value, path: &str, gaps: &mut Vec<String>) {
    match (node, value) {
        (Node::Fields(fields), Value::Object(map)) => {
            for (key, child) in map {
                match fields.iter().find(|(name, _)| name == key) {
                    Some((_, node)) => walk(node, child, &join(path, key), gaps),
                    None if DESCRIPTIVE.contains(&key.as_str()) => {}
                    None => gaps.push(join(path, key)),
                }
            }
        }
        (Node::Each(node), Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                walk(node, item, &format!("{path}[{}]", element_name(item, index)), gaps);
            }
        }
        (Node::Each(node), Value::Object(map)) => {
            for (key, child) in map {
                walk(node, child, &join(path, key), gaps);
            }
        }
        (Node::Select { key, implemented, node }, Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                let element = format!("{path}[{}]", element_name(item, index));
                let chosen = item.get(*key).and_then(Value::as_str);
                if chosen.is_some_and(|chosen| implemented.contains(&chosen)) {
                    walk(node, item, &element, gaps);
                } else {
                    gaps.push(element);
                }
            }
        }
        // Any value, or a value of another shape, which the loader reports if it matters.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_conf_has_no_gaps() {
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
        assert!(conf.join("managed.json").is_file());
        assert_eq!(report(&conf), Vec::<String>::new());
    }

    #[test]
    fn unread_keys_and_unknown_modules_are_gaps() {
        let document = serde_json::json!({"rsFilter": {"subjectMapping": []}, "serverAuthContext": {
            "authModules": [
                {"name": "MANAGED_USER", "properties": {"queryId": "q", "propertyMapping": {"userRoles": "r", "extra": 1}}},
                {"name": "CLIENT_CERT", "properties": {}}
            ]
        }});
        let mut gaps = Vec::new();
        walk(&AUTHENTICATION, &document, "", &mut gaps);
        assert_eq!(
            gaps,
            [
                "rsFilter",
                "serverAuthContext.authModules[MANAGED_USER].properties.propertyMapping.extra",
                "serverAuthContext.authModules[CLIENT_CERT]",
            ]
        );
    }
}
