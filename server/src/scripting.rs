//! Scripts configured in conf files (`{"type": "text/rhai", "file": …}` or `{"source": …}`):
//! compiling them for a generation, and turning their failures into resource errors — a script
//! that throws `#{code, message, detail}` produces exactly that error, a thrown string a 400,
//! and anything else (a broken limit, a bug) a 500 with a log line naming the script.

use std::sync::Arc;

use ferridm_core::Error;
use ferridm_plugins::error::ScriptErrorKind;
use ferridm_plugins::{CompiledScript, ScriptError, ScriptLimits, ScriptSource};
use serde_json::Value;

use crate::config::{ConfigError, ConfigPaths};

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
            name: format!("{} ({location})", file.display()),
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
            name: format!("{} ({location})", file.display()),
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

/// A script failure as the client sees it.
pub fn resource_error(error: &ScriptError) -> Error {
    let thrown = match &error.kind {
        ScriptErrorKind::Thrown(value) => Some(value.as_ref()),
        _ => None,
    };
    match thrown {
        Some(Value::Object(thrown)) if thrown.get("code").and_then(Value::as_u64).is_some() => {
            let code = thrown
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|code| u16::try_from(code).ok())
                .filter(|code| (400..600).contains(code))
                .unwrap_or(500);
            Error::Custom {
                code,
                message: thrown
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("Script error")
                    .to_owned(),
                detail: thrown.get("detail").cloned(),
            }
        }
        Some(Value::String(message)) => Error::BadRequest(message.clone()),
        _ => {
            tracing::error!(script.name = %error.script, "script failed: {error}");
            Error::internal(format!("Script failed: {}", error.script))
        }
    }
}
