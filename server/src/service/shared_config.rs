//! Configuration across the nodes of a PostgreSQL database, modelled on IDM keeping its
//! configuration in the repository: a change made over REST is validated on the node that takes
//! it, recorded in the database with the next version, and written to every node's conf files
//! and reloaded there (woken by the database's announcement, with polling behind it). At start a
//! node first applies every recorded change its files lack, so the database wins over stale
//! files. Edits of the files themselves stay local to their node. On SQLite (one node) nothing
//! is recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ferridm_core::{Error, Result};
use ferridm_store::{Backend, ConfigListener};

use super::reload;
use crate::config::file_name;
use crate::generation::Overrides;
use crate::state::AppState;

/// How long one wait for an announcement lasts before the follower looks at its stop flag.
const WAIT_STEP: Duration = Duration::from_millis(100);

/// How many waits pass between two polls of the database when no announcement came.
const WAITS_PER_POLL: u32 = 10;

/// Records a REST change (`None`: the file is removed) for every node; the version it got, or
/// `None` on SQLite. A database that cannot take it is a 503 and nothing changes.
pub fn publish(state: &AppState, id: &str, text: Option<&str>) -> Result<Option<i64>> {
    if state.store.backend() != Backend::Postgres {
        return Ok(None);
    }
    state.store.put_config_entry(id, text).map(Some).map_err(|error| {
        tracing::error!(%error, id, "cannot record a configuration change for the other nodes");
        Error::Unavailable("The configuration could not be shared with the other nodes".into())
    })
}

/// Applies the recorded changes this node has not seen yet: each file that differs is written
/// (or removed), then the configuration is reloaded once. A change the node refuses is logged
/// and the last good configuration keeps serving.
pub fn catch_up(state: &Arc<AppState>) {
    // Serialised with reloads and with this node's own REST changes, which write the same files.
    let _serialised = state.reload_lock();
    let seen = state.config_version.load(Ordering::SeqCst);
    let entries = match state.store.config_entries_after(seen) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(%error, "cannot read the shared configuration");
            return;
        }
    };
    let Some(newest) = entries.iter().map(|entry| entry.version).max() else {
        return;
    };
    let mut changed = false;
    for entry in &entries {
        let path = state.paths.conf_dir.join(file_name(&entry.id));
        let current = std::fs::read_to_string(&path).ok();
        if current == entry.content {
            continue;
        }
        let written = match &entry.content {
            Some(text) => reload::write_text_atomically(&path, text).is_ok(),
            None => std::fs::remove_file(&path).is_ok(),
        };
        if written {
            changed = true;
        } else {
            tracing::error!(id = %entry.id, "cannot apply a shared configuration change to the conf files");
        }
    }
    if changed {
        // Refusals are logged by the reload itself.
        let _ = reload::reload_serialised(
            state,
            &Overrides::new(),
            super::audit::ConfigActor::Server("shared configuration"),
        );
    }
    state.config_version.fetch_max(newest, Ordering::SeqCst);
}

/// The thread applying other nodes' changes as they are announced; stops when dropped.
#[derive(Debug)]
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Starts following the shared configuration (PostgreSQL; `None` on SQLite).
pub fn follow(state: &Arc<AppState>) -> Option<Follower> {
    if state.store.backend() != Backend::Postgres {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (following, stopping) = (Arc::clone(state), Arc::clone(&stop));
    let thread = std::thread::Builder::new()
        .name("ferridm-config-follower".to_owned())
        .spawn(move || {
            let mut listener = listen(&following);
            let mut waits = 0;
            while !stopping.load(Ordering::SeqCst) {
                let announced = match &mut listener {
                    Some(listening) => listening.wait(WAIT_STEP).unwrap_or_else(|error| {
                        tracing::warn!(%error, "lost the configuration announcements; polling");
                        listener = None;
                        false
                    }),
                    None => {
                        std::thread::sleep(WAIT_STEP);
                        false
                    }
                };
                waits += 1;
                if announced || waits >= WAITS_PER_POLL {
                    waits = 0;
                    catch_up(&following);
                    if listener.is_none() {
                        listener = listen(&following);
                    }
                }
            }
        })
        .map_err(|error| tracing::error!(%error, "cannot follow the shared configuration"))
        .ok();
    Some(Follower { stop, thread })
}

fn listen(state: &AppState) -> Option<ConfigListener> {
    state
        .store
        .config_listener()
        .map_err(|error| tracing::warn!(%error, "cannot listen for configuration changes; polling"))
        .ok()
        .flatten()
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
