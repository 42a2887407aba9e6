//! `config`: the configuration as REST resources. `config/status` reports the running
//! generation and the problems of the last refused reload; `config/<id>` reads a conf file and
//! replaces, patches or removes it — validated as a whole new generation before the file is
//! written, so a refused change leaves both the file and the running configuration untouched.

use std::sync::Arc;

use ferridm_core::{Error, Object, Result, patch};
use serde_json::{Value, json};

use super::managed::blocking;
use super::request::{CrestRequest, Operation};
use super::response::Reply;
use crate::config::{ConfigError, Overrides, file_name};
use crate::reload;
use crate::state::AppState;

/// Config ids never served over REST (they hold secrets).
const HIDDEN: [&str; 1] = ["boot"];

fn with_id(id: &str, content: &Value) -> Value {
    let mut out = Object::new();
    out.insert("_id".to_owned(), Value::String(id.to_owned()));
    if let Value::Object(map) = content {
        for (key, value) in map {
            if key != "_id" {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

fn refused(errors: &[ConfigError]) -> Error {
    Error::Custom {
        code: 400,
        message: format!(
            "The configuration was refused: {}",
            errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        ),
        detail: Some(
            json!({"errors": errors.iter().map(|e| json!({"file": e.file, "message": e.to_string()})).collect::<Vec<_>>()}),
        ),
    }
}

fn write_atomically(path: &std::path::Path, content: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(content).map_err(|_| Error::internal("Internal Server Error"))?;
    let temporary = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|name| name.to_str()).unwrap_or("config")
    ));
    std::fs::write(&temporary, text + "\n")
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|error| {
            tracing::error!(path = %path.display(), %error, "cannot write a config file");
            Error::internal("The configuration file could not be written")
        })
}

fn status(state: &AppState) -> Value {
    let generation = state.generation();
    let errors: Vec<Value> = state
        .errors()
        .iter()
        .map(|error| json!({"file": error.file, "message": error.to_string()}))
        .collect();
    json!({"generation": generation.number, "loadedAt": generation.loaded_at, "errors": errors})
}

/// `/openidm/config[/<id>]` operations.
pub async fn handle_config(
    state: Arc<AppState>,
    request: CrestRequest,
    operation: Operation,
    id: String,
) -> Result<Reply> {
    if id.is_empty() {
        return match operation {
            Operation::Read | Operation::Query => {
                let generation = state.generation();
                let configurations: Vec<Value> = generation
                    .files
                    .keys()
                    .filter(|id| !HIDDEN.contains(&id.as_str()))
                    .map(|id| {
                        let factory = id.split_once('/').map(|(factory, _)| factory.to_owned());
                        json!({"_id": id, "pid": id, "factoryPid": factory})
                    })
                    .collect();
                Ok(Reply::ok(json!({"_id": "", "configurations": configurations})))
            }
            _ => Err(Error::NotSupported(
                "Only read is supported on the configuration collection".into(),
            )),
        };
    }
    if id == "status" && operation == Operation::Read {
        return Ok(Reply::ok(status(&state)));
    }
    if HIDDEN.contains(&id.as_str()) {
        return Err(Error::NotFound(format!("Resource 'config/{id}' not found")));
    }
    let generation = state.generation();
    let current = generation.files.get(&id).map(|file| file.raw.clone());
    let not_found = || Error::NotFound(format!("Resource 'config/{id}' not found"));
    let replacement: Option<Value> = match &operation {
        Operation::Read => return current.map(|raw| Reply::ok(with_id(&id, &raw))).ok_or_else(not_found),
        Operation::Update | Operation::Upsert | Operation::Create => {
            let mut body = request.object_content(&operation)?;
            body.remove("_id");
            Some(Value::Object(body))
        }
        Operation::Patch => {
            let operations = patch::parse_patch(&request.content(&operation)?)?;
            let mut working = current.clone().ok_or_else(not_found)?;
            patch::apply_patch(&mut working, &operations, &NoScripts)?;
            Some(working)
        }
        Operation::Delete => {
            current.as_ref().ok_or_else(not_found)?;
            None
        }
        Operation::Query | Operation::Action(_) => {
            return Err(Error::NotSupported(format!(
                "The operation {} is not supported on configuration objects",
                operation.rule_name()
            )));
        }
    };
    let path = state.paths.conf_dir.join(file_name(&id));
    let deleted = current.clone();
    let reply = blocking(move || {
        let mut overrides = Overrides::new();
        overrides.insert(id.clone(), replacement.clone());
        // Validate first: nothing is written unless the whole generation passes.
        crate::config::load_with(&state.paths, 0, &overrides).map_err(|errors| refused(&errors))?;
        match &replacement {
            Some(content) => write_atomically(&path, content)?,
            None => std::fs::remove_file(&path)
                .map_err(|_| Error::internal("The configuration file could not be removed"))?,
        }
        reload::reload(&state, &Overrides::new(), "config endpoint").map_err(|errors| refused(&errors))?;
        Ok(with_id(
            &id,
            replacement.as_ref().or(deleted.as_ref()).unwrap_or(&Value::Null),
        ))
    })
    .await?;
    Ok(Reply::ok(reply))
}

/// Config patches cannot run transform scripts.
struct NoScripts;

impl patch::Transformer for NoScripts {
    fn transform(&self, _script: &Value, _content: Value) -> std::result::Result<Value, String> {
        Err("transform is not supported on configuration".to_owned())
    }
}
