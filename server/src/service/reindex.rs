//! Keeps each managed type's property index in line with its rule (which properties it holds,
//! `IndexSpec::indexed`). At start, after a reload and on every heartbeat, a type whose recorded
//! coverage differs from its rule first loses, at once, the properties the rule no longer
//! holds (writes stop maintaining their rows), and is then reindexed in the background under a
//! work lease: one node at a time, resumed by another if its holder stops. Until the new rule's
//! coverage is recorded, queries read what the index does not cover from the objects, so their
//! answers stay exact meanwhile.

use std::sync::{Arc, PoisonError};

use ferridm_store::{Indexed, StoreError};

use crate::state::AppState;

/// Objects reindexed per transaction.
const PAGE: u32 = 200;

/// How long a reindexing lease lasts unless its holder renews it (after every page).
const LEASE_MILLIS: i64 = 30_000;

fn job_name(type_name: &str) -> String {
    format!("reindex/{type_name}")
}

/// Narrows each type's recorded coverage to its current rule and, when a type's index must be
/// rewritten (its rule holds more than the coverage, or a narrower rule left rows behind),
/// starts doing so in the background.
pub fn reconcile(state: &Arc<AppState>) {
    state.store.forget_index_coverage();
    let mut growing = false;
    let mut narrowed = Vec::new();
    for managed_type in state.generation().managed.all() {
        let (name, rule) = (managed_type.name(), &managed_type.index.indexed);
        match narrow_coverage(state, name, rule) {
            Ok((coverage, was_narrowed)) => {
                growing |= coverage != *rule;
                if was_narrowed {
                    narrowed.push(name.to_owned());
                }
            }
            Err(error) => {
                tracing::error!(%error, managed.type = name, "cannot read the property index's coverage");
            }
        }
    }
    if !growing && narrowed.is_empty() {
        return;
    }
    let shared = Arc::clone(state);
    let spawned = std::thread::Builder::new()
        .name("ferridm-reindex".to_owned())
        .spawn(move || reindex_if_needed(&shared, &narrowed));
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start reindexing");
    }
}

/// Drops from the recorded coverage of `type_name` what `rule` does not hold; the coverage
/// after that, and whether this call narrowed it.
fn narrow_coverage(state: &AppState, type_name: &str, rule: &Indexed) -> Result<(Indexed, bool), StoreError> {
    loop {
        let coverage = state.store.index_coverage(type_name)?;
        let kept = coverage.intersect(rule);
        if kept == *coverage {
            return Ok((kept, false));
        }
        if state.store.replace_index_coverage(type_name, &coverage, &kept)? {
            return Ok((kept, true));
        }
    }
}

/// Reindexes, one after the other, the types whose coverage is not their rule and those in
/// `narrowed` (whose rows of the properties their rule dropped are removed). Narrowed types
/// wait for other background work to finish; otherwise the next reconciliation tries again.
fn reindex_if_needed(state: &AppState, narrowed: &[String]) {
    let _running = if narrowed.is_empty() {
        match state.work_running.try_lock() {
            Ok(running) => running,
            Err(_) => return,
        }
    } else {
        state.work_running.lock().unwrap_or_else(PoisonError::into_inner)
    };
    let generation = state.generation();
    let holder = state.node_id.get().map_or("local", String::as_str);
    for managed_type in generation.managed.all() {
        let name = managed_type.name();
        let rule = &managed_type.index.indexed;
        let coverage = match narrow_coverage(state, name, rule) {
            Ok((coverage, _)) if coverage == *rule && !narrowed.iter().any(|type_name| type_name == name) => continue,
            Ok((coverage, _)) => coverage,
            Err(error) => {
                tracing::error!(%error, managed.type = name, "cannot read the property index's coverage");
                continue;
            }
        };
        match reindex(state, managed_type, holder) {
            Ok(Some(done)) => {
                // Recorded only if no rule applied meanwhile narrowed the coverage: rows it
                // stopped maintaining may be stale, and the next reconciliation starts over.
                match state.store.replace_index_coverage(name, &coverage, rule) {
                    Ok(true) => {
                        tracing::info!(managed.type = name, objects = done, "property index rewritten for the type's rule")
                    }
                    Ok(false) => {
                        tracing::info!(managed.type = name, "the index rule changed while reindexing; reindexing again")
                    }
                    Err(error) => {
                        tracing::error!(%error, managed.type = name, "cannot record the property index's coverage")
                    }
                }
                if let Err(error) = state.store.finish_work(&job_name(name), holder) {
                    tracing::warn!(%error, "cannot release the reindexing lease");
                }
            }
            Ok(None) => tracing::info!(managed.type = name, "another node is reindexing"),
            Err(error) => tracing::error!(%error, managed.type = name, "reindexing stopped"),
        }
    }
}

/// Rewrites the index rows of every object of `managed_type` under a lease (resuming where a
/// previous holder stopped); how many objects were done, or `None` when another node holds or
/// took the lease.
fn reindex(
    state: &AppState,
    managed_type: &crate::config::ManagedType,
    holder: &str,
) -> Result<Option<i64>, StoreError> {
    let name = managed_type.name();
    let job = job_name(name);
    let target = serde_json::to_string(&managed_type.index.indexed)?;
    let now = state.clock.now_millis();
    let Some(lease) = state.store.claim_work(&job, &target, holder, now, now + LEASE_MILLIS)? else {
        return Ok(None);
    };
    let mut after = lease
        .progress
        .and_then(|progress| progress.parse().ok())
        .unwrap_or(i64::MIN);
    let mut done = lease.done;
    while let Some((count, last)) = state.store.reindex_page(name, &managed_type.index, after, PAGE)? {
        after = last;
        done += i64::try_from(count).unwrap_or(i64::MAX);
        let expires = state.clock.now_millis() + LEASE_MILLIS;
        if !state
            .store
            .record_work_progress(&job, holder, (&last.to_string(), done), expires)?
        {
            return Ok(None);
        }
    }
    Ok(Some(done))
}
