//! `access.json` (IDM 7's format): the ordered access rules. Each rule names a resource pattern,
//! roles, CREST methods, actions and an optional `customAuthz` condition compiled once per
//! generation.

use std::path::Path;

use ferridm_plugins::ScriptLimits;
use ferridm_plugins::access::AccessCondition;
use serde_json::Value;

use super::{ConfigError, file_name_in_project};

/// A comma list in a rule: `*` (anything) or the listed names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameSet {
    /// `*`.
    Any,
    /// The listed names (possibly none, for `""`).
    Only(Vec<String>),
}

impl NameSet {
    fn parse(value: Option<&Value>, default_any: bool) -> Self {
        match value.and_then(Value::as_str) {
            None if default_any => Self::Any,
            None => Self::Only(Vec::new()),
            Some(text) if text.trim() == "*" => Self::Any,
            Some(text) => Self::Only(
                text.split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
        }
    }

    /// True when `name` is in the set (case-insensitive).
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(names) => names.iter().any(|known| known.eq_ignore_ascii_case(name)),
        }
    }

    /// True when any of `names` is in the set.
    pub fn contains_any<'a>(&self, mut names: impl Iterator<Item = &'a String>) -> bool {
        match self {
            Self::Any => true,
            Self::Only(_) => names.any(|name| self.contains(name)),
        }
    }
}

/// One access rule.
#[derive(Debug, Clone)]
pub struct AccessRule {
    /// Resource pattern (`*`, exact, or `prefix/*`).
    pub pattern: String,
    /// Patterns that disqualify the rule.
    pub exclude: Vec<String>,
    /// Roles that may use it.
    pub roles: NameSet,
    /// CREST operations it grants.
    pub methods: NameSet,
    /// Action names it grants (checked for actions only).
    pub actions: NameSet,
    /// Extra condition.
    pub condition: Option<AccessCondition>,
}

/// True when a rule pattern covers a resource path (IDM's matching).
pub fn pattern_matches(pattern: &str, path: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('/') => path.starts_with(prefix),
        _ => pattern == path,
    }
}

impl AccessRule {
    /// True when the rule's pattern covers `path` and no exclusion does.
    pub fn covers(&self, path: &str) -> bool {
        pattern_matches(&self.pattern, path) && !self.exclude.iter().any(|exclude| pattern_matches(exclude, path))
    }
}

/// The parsed `access.json`.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    /// Rules in order; the first that matches in every respect grants access.
    pub rules: Vec<AccessRule>,
}

impl AccessRules {
    /// Parses and compiles the rules.
    pub fn from_json(document: &Value, file: &Path, limits: &ScriptLimits) -> Result<Self, ConfigError> {
        let configs = document
            .get("configs")
            .and_then(Value::as_array)
            .ok_or_else(|| ConfigError::new(file, "expected a \"configs\" array of access rules"))?;
        let mut rules = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let pattern = config
                .get("pattern")
                .and_then(Value::as_str)
                .ok_or_else(|| ConfigError::new(file, format!("configs[{index}]: a rule needs a \"pattern\"")))?;
            let condition = match config.get("customAuthz").and_then(Value::as_str) {
                Some(text) if !text.trim().is_empty() => Some(
                    AccessCondition::compile(
                        limits,
                        &format!("{} (configs[{index}].customAuthz)", file_name_in_project(file)),
                        text,
                    )
                    .map_err(|error| {
                        ConfigError::new(file, format!("configs[{index}].customAuthz: {}", error.message))
                    })?,
                ),
                _ => None,
            };
            rules.push(AccessRule {
                pattern: pattern.to_owned(),
                exclude: config
                    .get("excludePatterns")
                    .and_then(Value::as_str)
                    .map(|text| {
                        text.split(',')
                            .map(str::trim)
                            .filter(|p| !p.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                roles: NameSet::parse(config.get("roles"), false),
                methods: NameSet::parse(config.get("methods"), true),
                actions: NameSet::parse(config.get("actions"), false),
                condition,
            });
        }
        Ok(Self { rules })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_match_like_idm() {
        assert!(pattern_matches("*", "anything/at/all"));
        assert!(pattern_matches("managed/*", "managed/user"));
        assert!(pattern_matches("managed/*", "managed/user/x"));
        assert!(!pattern_matches("managed/*", "managed"));
        assert!(pattern_matches("info/ping", "info/ping"));
        assert!(!pattern_matches("info/ping", "info/login"));
    }

    #[test]
    fn rules_parse_lists_and_conditions() {
        let limits = ScriptLimits::new(std::env::temp_dir());
        let rules = AccessRules::from_json(
            &json!({"configs": [
                {"pattern": "*", "roles": "internal/role/openidm-admin", "methods": "*", "actions": "*",
                 "excludePatterns": "repo,repo/*", "customAuthz": "disallowQueryExpression()"},
                {"pattern": "authentication", "roles": "*", "methods": "read,action", "actions": "login,logout"}
            ]}),
            Path::new("access.json"),
            &limits,
        )
        .unwrap();
        assert!(!rules.rules[0].covers("repo/x"));
        assert!(rules.rules[0].covers("managed/user"));
        assert!(rules.rules[1].actions.contains("LOGIN"));
        assert!(!rules.rules[1].actions.contains("reauthenticate"));
        assert!(rules.rules[1].roles.contains("whatever"));
        let error = AccessRules::from_json(
            &json!({"configs": [{"pattern": "*", "customAuthz": "rm()"}]}),
            Path::new("access.json"),
            &limits,
        )
        .unwrap_err();
        assert!(error.message.contains("rm"));
    }
}
