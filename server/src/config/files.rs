//! Reading the conf directory: every `*.json` file becomes a config id (`selfservice-registration.json`
//! → `selfservice/registration`), `&{NAME}` / `&{NAME|default}` placeholders in string values are
//! replaced from the environment, and parse errors keep their line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ConfigError;

/// One conf file as read.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    /// The config id (`managed`, `selfservice/registration`, …).
    pub id: String,
    /// The file's path.
    pub path: PathBuf,
    /// The JSON as written (placeholders unresolved), for `GET /openidm/config/<id>`.
    pub raw: Value,
    /// The JSON with placeholders resolved, for use.
    pub resolved: Value,
}

/// The config id of a conf file name (`None` for files that are not JSON config).
pub fn config_id(file_name: &str) -> Option<String> {
    let stem = file_name.strip_suffix(".json")?;
    if stem.is_empty() || stem.starts_with('.') {
        return None;
    }
    Some(stem.replacen('-', "/", 1))
}

/// True when `id` is a config id as IDM names it (`selfservice/registration`, not the file-name
/// form `selfservice-registration`): one that a conf file directly in the conf directory maps to.
pub fn is_config_id(id: &str) -> bool {
    let name = file_name(id);
    !name.contains('/') && config_id(&name).as_deref() == Some(id)
}

/// The file name for a config id (the inverse of [`config_id`]).
pub fn file_name(id: &str) -> String {
    format!("{}.json", id.replacen('/', "-", 1))
}

/// Reads every JSON file of the conf directory, collecting every problem.
pub fn read_dir(conf_dir: &Path, errors: &mut Vec<ConfigError>) -> BTreeMap<String, ConfigFile> {
    let mut files = BTreeMap::new();
    let entries = match std::fs::read_dir(conf_dir) {
        Ok(entries) => entries,
        Err(error) => {
            // Relative to the project directory the conf directory is just its own name.
            let name = conf_dir
                .file_name()
                .map_or_else(|| conf_dir.to_path_buf(), PathBuf::from);
            errors.push(ConfigError::new(
                &name,
                format!("cannot read the conf directory: {error}"),
            ));
            return files;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    for path in paths {
        let Some(id) = path.file_name().and_then(|name| name.to_str()).and_then(config_id) else {
            continue;
        };
        if let Some(file) = read_file(&path, &id, errors) {
            files.insert(id, file);
        }
    }
    files
}

/// Reads and resolves one conf file.
pub fn read_file(path: &Path, id: &str, errors: &mut Vec<ConfigError>) -> Option<ConfigFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            errors.push(ConfigError::new(path, format!("cannot read: {error}")));
            return None;
        }
    };
    let raw: Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(error) => {
            errors.push(ConfigError::at(
                path,
                error.line(),
                error.column(),
                format!("invalid JSON: {error}"),
            ));
            return None;
        }
    };
    let resolved = match resolve_placeholders(&raw) {
        Ok(resolved) => resolved,
        Err(message) => {
            errors.push(ConfigError::new(path, message));
            return None;
        }
    };
    Some(ConfigFile {
        id: id.to_owned(),
        path: path.to_owned(),
        raw,
        resolved,
    })
}

/// Replaces `&{NAME}` and `&{NAME|default}` in every string with the environment variable
/// `NAME` (or the default). A missing variable without a default is an error.
pub fn resolve_placeholders(value: &Value) -> Result<Value, String> {
    Ok(match value {
        Value::String(text) => Value::String(substitute(text)?),
        Value::Array(items) => Value::Array(items.iter().map(resolve_placeholders).collect::<Result<_, _>>()?),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| Ok((key.clone(), resolve_placeholders(value)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn substitute(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("&{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated placeholder in \"{text}\""))?;
        let expression = &after[..end];
        let (name, default) = match expression.split_once('|') {
            Some((name, default)) => (name.trim(), Some(default)),
            None => (expression.trim(), None),
        };
        match (std::env::var(name), default) {
            (Ok(value), _) => out.push_str(&value),
            (Err(_), Some(default)) => out.push_str(default),
            (Err(_), None) => {
                return Err(format!(
                    "the placeholder &{{{name}}} has no value: set the environment variable {name} or write &{{{name}|default}}"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn file_names_map_to_config_ids() {
        assert_eq!(config_id("managed.json").as_deref(), Some("managed"));
        assert_eq!(
            config_id("selfservice-registration.json").as_deref(),
            Some("selfservice/registration")
        );
        assert_eq!(
            config_id("selfservice.terms.json").as_deref(),
            Some("selfservice.terms")
        );
        assert_eq!(config_id("ui-configuration.json").as_deref(), Some("ui/configuration"));
        assert_eq!(config_id("notes.txt"), None);
        assert_eq!(config_id(".hidden.json"), None);
        assert_eq!(file_name("selfservice/registration"), "selfservice-registration.json");
        assert!(is_config_id("selfservice/registration"));
        assert!(is_config_id("managed") && is_config_id("ui/configuration") && is_config_id("selfservice.kba"));
        assert!(
            !is_config_id("selfservice-registration"),
            "the file-name form is not an id"
        );
        assert!(!is_config_id("a/b/c") && !is_config_id("../x") && !is_config_id(".hidden") && !is_config_id(""));
    }

    #[test]
    fn placeholders_use_the_environment_or_the_default() {
        let value = json!({"a": "x-&{FERRIDM_TEST_SURELY_UNSET|fallback}-y", "b": ["&{FERRIDM_TEST_SURELY_UNSET|}"]});
        assert_eq!(
            resolve_placeholders(&value).unwrap(),
            json!({"a": "x-fallback-y", "b": [""]})
        );
        assert!(resolve_placeholders(&json!("&{FERRIDM_TEST_SURELY_UNSET}")).is_err());
        assert!(resolve_placeholders(&json!("&{OPEN")).is_err());
        assert_eq!(resolve_placeholders(&json!(3)).unwrap(), json!(3));
    }
}
