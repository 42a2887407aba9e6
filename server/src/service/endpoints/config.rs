//! `config`: the configuration as REST resources. `config/status` reports the running
//! generation and the problems of the last refused reload; `config/<id>` reads a conf file and
//! replaces, patches or removes it through `service::reload::change_file`, which validates a
//! whole new generation before the file is written.

use ferridm_core::{Error, Object, Result, patch};
use serde_json::{Value, json};

use crate::config::is_config_id;
use crate::resource::{Operation, Reply, Request};
use crate::service::context::RequestContext;
use crate::service::reload;

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

fn status(ctx: &RequestContext) -> Value {
    let generation = &ctx.generation;
    let errors: Vec<Value> = ctx
        .state
        .errors()
        .iter()
        .map(|error| json!({"file": error.file, "message": error.to_string()}))
        .collect();
    json!({"generation": generation.number, "loadedAt": generation.loaded_at, "errors": errors})
}

/// `/openidm/config[/<id>]` operations.
pub fn handle(ctx: &RequestContext, request: &Request, operation: &Operation, id: &str) -> Result<Reply> {
    if id.is_empty() {
        return match operation {
            Operation::Read | Operation::Query => {
                let generation = &ctx.generation;
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
    if id == "status" && *operation == Operation::Read {
        return Ok(Reply::ok(status(ctx)));
    }
    if HIDDEN.contains(&id) || !is_config_id(id) {
        return Err(Error::NotFound(format!("Resource 'config/{id}' not found")));
    }
    let current = ctx.generation.files.get(id).map(|file| file.raw.clone());
    let not_found = || Error::NotFound(format!("Resource 'config/{id}' not found"));
    let replacement: Option<Value> = match operation {
        Operation::Read => return current.map(|raw| Reply::ok(with_id(id, &raw))).ok_or_else(not_found),
        Operation::Update | Operation::Upsert | Operation::Create => {
            let mut body = request.object_content(operation)?;
            // Keep the body's key order in the file (the file may be under version control).
            body.shift_remove("_id");
            Some(Value::Object(body))
        }
        Operation::Patch => {
            let operations = patch::parse_patch(&request.content(operation)?)?;
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
    reload::change_file(&ctx.state, id, replacement.as_ref())?;
    Ok(Reply::ok(with_id(
        id,
        replacement.as_ref().or(current.as_ref()).unwrap_or(&Value::Null),
    )))
}

/// Config patches cannot run transform scripts.
struct NoScripts;

impl patch::Transformer for NoScripts {
    fn transform(&self, _script: &Value, _content: Value) -> std::result::Result<Value, String> {
        Err("transform is not supported on configuration".to_owned())
    }
}
