//! Scripts configured in conf files (`{"type": "text/rhai", "file": …}` or `{"source": …}`):
//! where their source is, and compiling them for a generation with problems reported as
//! configuration errors (file and position kept).

use std::sync::Arc;

use ferridm_plugins::{CompiledScript, ScriptError, ScriptLimits, ScriptSource};
use serde_json::Value;

use super::{ConfigError, ConfigPaths, file_name_in_project};

/// Compiles a script config found at `location` in `file`; its top level may use `variables`.
pub fn compile_config(
    paths: &ConfigPaths,
    limits: &ScriptLimits,
    config: &Value,
    file: &std::path::Path,
    location: &str,
    variables: &[&str],
) -> Result<Arc<CompiledScript>, ConfigError> {
    let source = script_source(paths, config, file, location)?;
    CompiledScript::compile_with(limits, &source, variables)
        .map(Arc::new)
        .map_err(|error| config_error(&error))
}

/// The source a script config names.
pub fn script_source(
    paths: &ConfigPaths,
    config: &Value,
    file: &std::path::Path,
    location: &str,
) -> Result<ScriptSource, ConfigError> {
    if let Value::String(source) = config {
        return Ok(ScriptSource::Inline {
            name: format!("{} ({location})", file_name_in_project(file)),
            source: source.clone(),
        });
    }
    match config.get("type").and_then(Value::as_str) {
        None | Some("text/rhai") => {}
        Some(other) => {
            return Err(ConfigError::new(
                file,
                format!("{location}: scripts of type {other} cannot run here; ferridm runs text/rhai scripts"),
            ));
        }
    }
    if let Some(path) = config.get("file").and_then(Value::as_str) {
        return Ok(paths.script(path));
    }
    if let Some(source) = config.get("source").and_then(Value::as_str) {
        return Ok(ScriptSource::Inline {
            name: format!("{} ({location})", file_name_in_project(file)),
            source: source.to_owned(),
        });
    }
    Err(ConfigError::new(
        file,
        format!("{location}: a script needs \"file\" or \"source\""),
    ))
}

/// A script problem as a configuration problem (file and position kept).
pub fn config_error(error: &ScriptError) -> ConfigError {
    ConfigError {
        file: error.script.clone(),
        position: error.line.map(|line| (line, error.column.unwrap_or(0))),
        message: error.message.clone(),
    }
}

/// Most distinct transform scripts one generation keeps compiled.
const MAX_TRANSFORM_SCRIPTS: usize = 256;

/// Patch `transform` scripts (IDM's `{"operation": "transform", "value": {"script": …}}`),
/// compiled once per generation: each distinct script is compiled on first use and reused until
/// the next reload. Past [`MAX_TRANSFORM_SCRIPTS`] distinct scripts, new ones are compiled per
/// use and not kept.
#[derive(Debug, Default)]
pub struct TransformScripts {
    compiled: std::sync::Mutex<std::collections::HashMap<String, Arc<CompiledScript>>>,
}

impl TransformScripts {
    /// The compiled form of a transform's `script` value (with `content` in scope). File scripts
    /// must live in the scripts directory.
    pub fn get_or_compile(
        &self,
        paths: &ConfigPaths,
        limits: &ScriptLimits,
        script: &Value,
    ) -> Result<Arc<CompiledScript>, String> {
        let key = script.to_string();
        let lock = || self.compiled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = lock().get(&key) {
            return Ok(Arc::clone(found));
        }
        let source =
            script_source(paths, script, std::path::Path::new("patch"), "transform").map_err(|error| error.message)?;
        if let ScriptSource::File { path, .. } = &source {
            let scripts = limits.scripts_dir.canonicalize().map_err(|error| error.to_string())?;
            if !path.canonicalize().is_ok_and(|resolved| resolved.starts_with(&scripts)) {
                return Err("transform scripts must live in the scripts directory".to_owned());
            }
        }
        let compiled =
            Arc::new(CompiledScript::compile_with(limits, &source, &["content"]).map_err(|error| error.to_string())?);
        let mut compiled_scripts = lock();
        if compiled_scripts.len() < MAX_TRANSFORM_SCRIPTS {
            compiled_scripts.insert(key, Arc::clone(&compiled));
        }
        Ok(compiled)
    }

    /// How many scripts are kept compiled.
    pub fn len(&self) -> usize {
        self.compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transform_scripts_compile_once_per_generation() {
        let project = tempfile::tempdir().unwrap();
        let scripts_dir = project.path().join("scripts");
        std::fs::create_dir_all(&scripts_dir).unwrap();
        std::fs::write(scripts_dir.join("upper.rhai"), "content.to_upper()").unwrap();
        std::fs::write(project.path().join("outside.rhai"), "content").unwrap();
        let paths = ConfigPaths::new(project.path().join("conf"));
        let limits = ScriptLimits::new(&scripts_dir);
        let transforms = TransformScripts::default();

        let inline = json!({"type": "text/rhai", "source": "content + 1"});
        let first = transforms.get_or_compile(&paths, &limits, &inline).unwrap();
        let again = transforms.get_or_compile(&paths, &limits, &inline).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the same script is compiled once");
        let file = json!({"type": "text/rhai", "file": "scripts/upper.rhai"});
        let from_file = transforms.get_or_compile(&paths, &limits, &file).unwrap();
        assert!(!Arc::ptr_eq(&first, &from_file));
        assert_eq!(transforms.len(), 2);

        let outside = json!({"file": "outside.rhai"});
        assert_eq!(
            transforms.get_or_compile(&paths, &limits, &outside).unwrap_err(),
            "transform scripts must live in the scripts directory"
        );
        assert!(transforms.get_or_compile(&paths, &limits, &json!("content +")).is_err());
        assert_eq!(transforms.len(), 2, "refused scripts are not kept");
    }
}
