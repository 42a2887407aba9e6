//! `config`: the configuration as REST resources. `GET config` lists the configuration ids;
//! `config?_queryFilter=…` queries the configuration objects themselves. `config/status` reports the running
//! generation and the problems of the last refused reload; `config/<id>` reads a conf file and
//! replaces, patches or removes it through `service::reload::change_file`, which validates a
//! whole new generation before the file is written.
//!
//! Secrets are withheld as IDM withholds them: the values IDM encrypts in configuration
//! (`external.email`'s `auth/password`, each identity provider's `clientSecret`, a self-service
//! stage's `clientSecret` or `recaptchaSecretKey`) are never returned in clear. IDM returns its
//! `$crypto` ciphertext there; ferridm, which keeps them as written, returns
//! [`WITHHELD`] instead. A `&{…}` placeholder is returned as written unless it carries a default
//! (`&{NAME|default}`: the secret itself), and a value that is already a `$crypto` object as
//! stored. A write that carries [`WITHHELD`] back keeps the current value.

use ferridm_core::fields::FieldSelection;
use ferridm_core::filter;
use ferridm_core::query::{CountPolicy, QueryResponse};
use ferridm_core::{Error, Object, Result, patch};
use serde_json::{Value, json};

use crate::config::is_config_id;
use crate::resource::{Operation, Reply, Request};
use crate::service::context::RequestContext;
use crate::service::reload;

/// Config ids never served over REST (they hold secrets).
const HIDDEN: [&str; 1] = ["boot"];

/// The `$crypto` type of a secret withheld from a config read.
pub const WITHHELD: &str = "ferridm-withheld";

/// Where each config holds secrets (`*`: every element or member).
fn secret_paths(id: &str) -> &'static [&'static [&'static str]] {
    match id {
        "external.email" => &[&["auth", "password"]],
        "identityProviders" => &[&["providers", "*", "clientSecret"]],
        _ if id.starts_with("selfservice/") => &[
            &["stageConfigs", "*", "clientSecret"],
            &["stageConfigs", "*", "recaptchaSecretKey"],
        ],
        _ => &[],
    }
}

/// The value that stands for a withheld secret.
fn withheld() -> Value {
    json!({"$crypto": {"type": WITHHELD}})
}

/// True for a secret written in clear (not already `$crypto`, not a placeholder without a
/// default).
fn is_clear_secret(value: &Value) -> bool {
    match value {
        Value::String(text) => match text.strip_prefix("&{") {
            Some(placeholder) => placeholder
                .split_once('|')
                .is_some_and(|(_, default)| !default.trim_end_matches('}').is_empty()),
            None => !text.is_empty(),
        },
        Value::Null | Value::Object(_) => false,
        _ => true,
    }
}

/// Calls `visit` with the value at `path` in `value` (and, for `*`, in every element or
/// member), with the matching value of `current` when it has one at the same place.
fn visit_path(
    value: &mut Value,
    current: Option<&Value>,
    path: &[&str],
    visit: &mut dyn FnMut(&mut Value, Option<&Value>),
) {
    let Some((first, rest)) = path.split_first() else {
        visit(value, current);
        return;
    };
    match (value, *first) {
        (Value::Array(items), "*") => {
            for (index, item) in items.iter_mut().enumerate() {
                visit_path(item, current.and_then(|c| c.get(index)), rest, visit);
            }
        }
        (Value::Object(map), "*") => {
            for (key, item) in map.iter_mut() {
                visit_path(item, current.and_then(|c| c.get(key)), rest, visit);
            }
        }
        (Value::Object(map), key) => {
            if let Some(item) = map.get_mut(key) {
                visit_path(item, current.and_then(|c| c.get(key)), rest, visit);
            }
        }
        _ => {}
    }
}

/// `content` of config `id` as clients see it: its secrets withheld.
pub(crate) fn masked(id: &str, content: &Value) -> Value {
    let mut out = content.clone();
    for path in secret_paths(id) {
        visit_path(&mut out, None, path, &mut |value, _| {
            if is_clear_secret(value) {
                *value = withheld();
            }
        });
    }
    out
}

/// A replacement of config `id` with every withheld secret it carries back restored from
/// `current`; a withheld secret with nothing to restore is a 400.
fn restore_secrets(id: &str, mut replacement: Value, current: Option<&Value>) -> Result<Value> {
    let mut missing = false;
    for path in secret_paths(id) {
        visit_path(&mut replacement, current, path, &mut |value, current| {
            if *value == withheld() {
                match current.filter(|current| **current != withheld()) {
                    Some(current) => *value = current.clone(),
                    None => missing = true,
                }
            }
        });
    }
    if missing {
        return Err(Error::bad_request(format!(
            "config/{id} carries a withheld secret ($crypto type {WITHHELD}) where it has no current value"
        )));
    }
    Ok(replacement)
}

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
    let shared = ctx.state.config_version.load(std::sync::atomic::Ordering::SeqCst);
    json!({"generation": generation.number, "loadedAt": generation.loaded_at, "errors": errors, "configVersion": shared})
}

/// `/openidm/config[/<id>]` operations.
pub fn handle(ctx: &RequestContext, request: &Request, operation: &Operation, id: &str) -> Result<Reply> {
    if id.is_empty() {
        return match operation {
            Operation::Query => query(ctx, request),
            Operation::Read => {
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
        Operation::Read => {
            return current
                .map(|raw| Reply::ok(with_id(id, &masked(id, &raw))))
                .ok_or_else(not_found);
        }
        Operation::Update | Operation::Upsert | Operation::Create => {
            let mut body = request.object_content(operation)?;
            // Keep the body's key order in the file (the file may be under version control).
            body.shift_remove("_id");
            Some(restore_secrets(id, Value::Object(body), current.as_ref())?)
        }
        Operation::Patch => {
            let operations = patch::parse_patch(&request.content(operation)?)?;
            let mut working = current.clone().ok_or_else(not_found)?;
            patch::apply_patch(&mut working, &operations, &NoScripts)?;
            Some(restore_secrets(id, working, current.as_ref())?)
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
    reload::change_file(ctx, id, replacement.as_ref())?;
    Ok(Reply::ok(with_id(
        id,
        &masked(id, replacement.as_ref().or(current.as_ref()).unwrap_or(&Value::Null)),
    )))
}

/// `GET /openidm/config?_queryFilter=…` (IDM 7): the configuration objects whose id and content
/// match (secrets withheld before matching, so a filter cannot probe them), each whole with its `_id`, in the query envelope; sorted by `_sortKeys` (by id
/// otherwise), paged by `_pageSize` with `_pagedResultsOffset` or the returned cookie, counted
/// with `_totalPagedResultsPolicy=EXACT`, and narrowed by `_fields`.
fn query(ctx: &RequestContext, request: &Request) -> Result<Reply> {
    let params = &request.params;
    let query = crate::service::managed::query::from_params(params)?;
    let mut matched: Vec<Value> = ctx
        .generation
        .files
        .iter()
        .filter(|(id, _)| !HIDDEN.contains(&id.as_str()))
        .map(|(id, file)| with_id(id, &masked(id, &file.raw)))
        .filter(|entity| filter::matches(&query.filter, entity))
        .collect();
    for key in query.sort.iter().rev() {
        matched.sort_by(|a, b| {
            let order = compare(key.field.get(a), key.field.get(b));
            if key.ascending { order } else { order.reverse() }
        });
    }
    let total = matched.len();
    let paging = &query.paging;
    let start = match &paging.cookie {
        Some(cookie) => cookie
            .parse::<usize>()
            .map_err(|_| Error::bad_request(format!("Invalid paged results cookie {cookie}")))?,
        None => usize::try_from(paging.offset).unwrap_or(usize::MAX),
    };
    let page: Vec<Value> = match paging.page_size {
        Some(size) => matched.into_iter().skip(start).take(size as usize).collect(),
        None => matched.into_iter().skip(start).collect(),
    };
    let next = start + page.len();
    let cookie = (paging.page_size.is_some() && next < total).then(|| next.to_string());
    let fields = FieldSelection::parse(request.fields());
    let result = page
        .into_iter()
        .map(|entity| match entity {
            Value::Object(object) => Value::Object(fields.select(&object, &super::EveryField)),
            other => other,
        })
        .collect();
    let counted = paging.count != CountPolicy::None;
    Ok(Reply::ok(
        QueryResponse {
            result,
            paged_results_cookie: cookie,
            total: counted.then_some(total as u64),
        }
        .to_json(),
    ))
}

/// Orders JSON values for sorting: absent and null first, then booleans, numbers, strings (as
/// written), then anything else by its text.
fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    fn rank(value: Option<&Value>) -> u8 {
        match value {
            None | Some(Value::Null) => 0,
            Some(Value::Bool(_)) => 1,
            Some(Value::Number(_)) => 2,
            Some(Value::String(_)) => 3,
            Some(_) => 4,
        }
    }
    match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(std::cmp::Ordering::Equal)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)).then_with(|| {
            let text = |value: Option<&Value>| value.map(Value::to_string).unwrap_or_default();
            text(a).cmp(&text(b))
        }),
    }
}

/// Config patches cannot run transform scripts.
struct NoScripts;

impl patch::Transformer for NoScripts {
    fn transform(&self, _script: &Value, _content: Value) -> std::result::Result<Value, String> {
        Err("transform is not supported on configuration".to_owned())
    }
}
