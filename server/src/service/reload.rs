//! Reloading configuration: a change — a file on disk, or one written over REST — builds a
//! whole new generation (every file parsed and checked, every script compiled, every policy and
//! stage name resolved); only one that passes replaces the running one, atomically. A refused
//! generation is logged, one ERROR line per problem naming the file and position, and the last
//! good one keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferridm_core::{Error, Result};
use ferridm_plugins::watch::{self, DirectoryWatch, WatchMode};
use serde_json::{Value, json};

use super::audit::{self, ConfigActor};
use super::context::RequestContext;
use crate::config::settings::WatchMode as ConfiguredMode;
use crate::config::{ConfigError, file_name};
use crate::generation::{self, Generation, Overrides};
use crate::state::AppState;

/// Builds and, if it passes, installs a new generation with `overrides` applied in memory.
pub fn reload(
    state: &Arc<AppState>,
    overrides: &Overrides,
    actor: ConfigActor<'_>,
) -> std::result::Result<Arc<Generation>, Vec<ConfigError>> {
    let _serialised = state.reload_lock();
    reload_serialised(state, overrides, actor)
}

/// [`reload`], for a caller that holds the reload lock.
pub(super) fn reload_serialised(
    state: &Arc<AppState>,
    overrides: &Overrides,
    actor: ConfigActor<'_>,
) -> std::result::Result<Arc<Generation>, Vec<ConfigError>> {
    let current = state.generation();
    let cause = match actor {
        ConfigActor::Request(_) => "config endpoint",
        ConfigActor::Server(cause) => cause,
    };
    match generation::load_with(&state.paths, current.number + 1, overrides) {
        Ok(generation) => {
            let number = generation.number;
            let rule_changed = generation.completeness.fingerprint() != current.completeness.fingerprint();
            let mut ids: Vec<&String> = current.files.keys().chain(generation.files.keys()).collect();
            ids.sort();
            ids.dedup();
            let changes: Vec<(String, Option<Value>, Option<Value>)> = ids
                .into_iter()
                .map(|id| {
                    (
                        id,
                        current.files.get(id).map(|f| &f.raw),
                        generation.files.get(id).map(|f| &f.raw),
                    )
                })
                .filter(|(id, before, after)| before != after && id.as_str() != "boot")
                .map(|(id, before, after)| (id.clone(), before.cloned(), after.cloned()))
                .collect();
            state.install(generation);
            super::reindex::reconcile(state);
            state.metrics.reload(true);
            tracing::info!(generation = number, cause, "configuration reloaded");
            audit::config(
                state,
                &audit::ConfigRecord {
                    actor,
                    changes: changes
                        .iter()
                        .map(|(id, b, a)| (id.clone(), b.as_ref(), a.as_ref()))
                        .collect(),
                    generation: number,
                    refused: Vec::new(),
                },
            );
            if rule_changed {
                reconcile_completeness(state);
            }
            Ok(state.generation())
        }
        Err(errors) => {
            for problem in &errors {
                tracing::error!(
                    file = %problem.file,
                    generation = current.number,
                    "configuration refused, keeping generation {}: {problem}",
                    current.number
                );
            }
            state.set_errors(errors.clone());
            state.metrics.reload(false);
            refused_event(state, actor, current.number, &errors);
            Err(errors)
        }
    }
}

/// Rescores stored completeness in the background when the stored scores follow another rule
/// than the running one (at start, after a reload, and on every heartbeat, so a rescoring left
/// by a node that died is resumed).
pub fn reconcile_completeness(state: &Arc<AppState>) {
    if !super::completeness::rule_changed(state) {
        return;
    }
    let shared = Arc::clone(state);
    let spawned = std::thread::Builder::new()
        .name("ferridm-completeness".to_owned())
        .spawn(move || super::completeness::rescore_if_needed(&shared));
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start rescoring profile completeness");
    }
}

/// Starts watching the conf and scripts directories, reloading on every change.
pub fn watch(state: &Arc<AppState>) -> Option<DirectoryWatch> {
    let settings = state.generation().settings.watch;
    let mode = match settings.mode {
        ConfiguredMode::Off => return None,
        ConfiguredMode::Native => WatchMode::Native,
        ConfiguredMode::Poll => WatchMode::Poll(Duration::from_millis(settings.poll_millis.max(10))),
    };
    let directories: Vec<PathBuf> = vec![state.paths.conf_dir.clone(), state.paths.project_dir.join("scripts")];
    let watching = Arc::clone(state);
    match watch::watch(
        &directories,
        mode,
        Duration::from_millis(settings.debounce_millis),
        move |paths| {
            let names: Vec<String> = paths.iter().map(|path| path.display().to_string()).collect();
            tracing::debug!(changed = ?names, "configuration files changed");
            let _ = reload(&watching, &Overrides::new(), ConfigActor::Server("file change"));
        },
    ) {
        Ok(watch) => {
            tracing::info!(mode = watch.mode(), "watching conf and scripts for changes");
            Some(watch)
        }
        Err(error) => {
            tracing::error!(%error, "cannot watch the configuration; changes need a restart or PUT /openidm/config");
            None
        }
    }
}

/// Replaces (`Some`) or removes (`None`) the conf file of config `id`: the whole generation is
/// validated with the change first, so a refused change leaves both the file and the running
/// configuration untouched; then the file is written atomically and the generation reloaded.
///
/// On PostgreSQL the change is recorded in the database first, for every node to apply
/// (`service::shared_config`); a change the database cannot take changes nothing.
pub fn change_file(ctx: &RequestContext, id: &str, replacement: Option<&Value>) -> Result<()> {
    let state = &ctx.state;
    let path = state.paths.conf_dir.join(file_name(id));
    let mut overrides = Overrides::new();
    overrides.insert(id.to_owned(), replacement.cloned());
    generation::load_with(&state.paths, 0, &overrides).map_err(|errors| {
        state.metrics.reload(false);
        refused_event(state, ConfigActor::Request(ctx), ctx.generation.number, &errors);
        refused(&errors)
    })?;
    let text = replacement.map(file_text).transpose()?;
    // Held from publishing to the reload, so neither the file watcher nor this node's follower
    // of the shared configuration writes or installs this change first (and records it as
    // theirs rather than this caller's).
    let _serialised = state.reload_lock();
    let version = super::shared_config::publish(state, id, text.as_deref())?;
    match &text {
        Some(text) => write_text_atomically(&path, text)?,
        None => {
            std::fs::remove_file(&path).map_err(|_| Error::internal("The configuration file could not be removed"))?
        }
    }
    reload_serialised(state, &Overrides::new(), ConfigActor::Request(ctx)).map_err(|errors| refused(&errors))?;
    if let Some(version) = version {
        state
            .config_version
            .fetch_max(version, std::sync::atomic::Ordering::SeqCst);
    }
    Ok(())
}

/// Records a refused configuration change in the audit trail.
fn refused_event(state: &AppState, actor: ConfigActor<'_>, serving: u64, errors: &[ConfigError]) {
    audit::config(
        state,
        &audit::ConfigRecord {
            actor,
            changes: Vec::new(),
            generation: serving,
            refused: errors.iter().map(ToString::to_string).collect(),
        },
    );
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

/// A conf file's text as the config endpoint writes it.
fn file_text(content: &Value) -> Result<String> {
    serde_json::to_string_pretty(content)
        .map(|text| text + "\n")
        .map_err(|_| Error::internal("Internal Server Error"))
}

/// Writes a conf file through a temporary file and a rename, so no reader sees half of it.
pub(super) fn write_text_atomically(path: &std::path::Path, text: &str) -> Result<()> {
    let temporary = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|name| name.to_str()).unwrap_or("config")
    ));
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|error| {
            tracing::error!(path = %path.display(), %error, "cannot write a config file");
            Error::internal("The configuration file could not be written")
        })
}
