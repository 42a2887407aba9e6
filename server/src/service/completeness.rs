//! Profile completeness over the store: reading a user's score, and rescoring every user when
//! the rule changes, once across the nodes sharing the database (the rule itself is
//! `config::profile`'s).

use ferridm_core::filter::Filter;
use ferridm_core::{Error, Result};
use ferridm_store::{ObjectQuery, Store, StoreError, WorkLease};
use serde_json::{Value, json};

use super::context::RequestContext;
use super::managed::ManagedObjects;
use crate::generation::Generation;
use crate::resource::path::managed_type;
use crate::state::AppState;

/// How complete a profile is: `{_id, _rev, completeness}` — of the managed object `target`
/// names (`(type, id)`), or the caller's own.
pub fn read(ctx: &RequestContext, target: Option<(&str, &str)>) -> Result<Value> {
    let caller = ctx.client_caller()?;
    let context = &caller.session.context;
    let (type_name, id) = match target {
        Some(target) => target,
        None => match managed_type(&context.authorization.component) {
            Some(type_name) => (type_name, context.authorization.id.as_str()),
            None => return Err(Error::Forbidden("Access denied".into())),
        },
    };
    let stored = ManagedObjects::new(&ctx.as_internal(), type_name)?.stored(id)?;
    let score = ctx.generation.completeness.score(&Value::Object(stored.content))?;
    Ok(json!({"_id": format!("managed/{type_name}/{id}"), "_rev": stored.rev.to_string(), "completeness": score}))
}

/// Rows rescored per page when the completeness rule changes.
const RESCORE_PAGE: u32 = 500;

/// The store setting naming the completeness rule the stored scores follow.
const RULE_SETTING: &str = "completeness-rule";

/// The job name of rescoring among the nodes' leases.
const RESCORING_JOB: &str = "completeness-rescoring";

/// How long a rescoring lease lasts unless its holder renews it (after every page).
const LEASE_MILLIS: i64 = 30_000;

/// Records that every stored score follows `generation`'s rule. Kept in the database, so the
/// nodes sharing it agree and a new node does not rescore what is current.
pub fn record_rule(store: &Store, generation: &Generation) -> std::result::Result<(), StoreError> {
    store.put_setting(RULE_SETTING, &generation.completeness.fingerprint())
}

/// Whether the stored scores follow another rule than the running one.
pub fn rule_changed(state: &AppState) -> bool {
    let rule = state.generation().completeness.fingerprint();
    match state.store.setting(RULE_SETTING) {
        Ok(recorded) => recorded.as_deref() != Some(rule.as_str()),
        Err(error) => {
            tracing::error!(%error, "cannot read which completeness rule the stored scores follow");
            false
        }
    }
}

/// Brings the stored scores in line with the running rule, once across the nodes sharing the
/// database: this node claims the rescoring lease (or leaves the work to the node holding it),
/// rescores page by page from where the previous holder stopped, recording its progress and
/// renewing the lease after every page, and finally records the rule. Every node retries on
/// its heartbeat, so the work resumes when its holder dies.
pub fn rescore_if_needed(state: &AppState) {
    let Ok(_running) = state.work_running.try_lock() else {
        return;
    };
    if !rule_changed(state) {
        return;
    }
    let generation = state.generation();
    let rule = generation.completeness.fingerprint();
    let holder = state.node_id.get().map_or("local", String::as_str);
    let now = state.clock.now_millis();
    let lease = match state
        .store
        .claim_work(RESCORING_JOB, &rule, holder, now, now + LEASE_MILLIS)
    {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            tracing::debug!("another node is rescoring profile completeness");
            return;
        }
        Err(error) => {
            tracing::error!(%error, "cannot claim the rescoring of profile completeness");
            return;
        }
    };
    if !rule_changed(state) {
        // Another node finished while this one was claiming.
        if let Err(error) = state.store.finish_work(RESCORING_JOB, holder) {
            tracing::warn!(%error, "cannot release the rescoring lease");
        }
        return;
    }
    if lease.progress.is_some() {
        tracing::info!("resuming the rescoring of profile completeness where another node stopped");
    }
    match rescore(state, &generation, holder, lease) {
        Ok(Some(updated)) => {
            if let Err(error) = record_rule(&state.store, &generation) {
                tracing::warn!(%error, "cannot record the completeness rule");
            }
            if let Err(error) = state.store.finish_work(RESCORING_JOB, holder) {
                tracing::warn!(%error, "cannot release the rescoring lease");
            }
            tracing::info!(
                users.updated = updated,
                "profile completeness recomputed for the new rule"
            );
        }
        Ok(None) => tracing::info!("another node took over rescoring profile completeness"),
        Err(error) => tracing::error!(%error, "rescoring profile completeness stopped"),
    }
}

/// Rescores every user after the lease's progress (a page cookie); the number of users updated,
/// or `None` when the lease was lost to another node.
fn rescore(
    state: &AppState,
    generation: &Generation,
    holder: &str,
    lease: WorkLease,
) -> std::result::Result<Option<u64>, StoreError> {
    let Some(user_type) = generation.managed.get("user") else {
        return Ok(Some(0));
    };
    let (mut progress, mut done) = (lease.progress, lease.done);
    let mut updated = 0_u64;
    loop {
        let page = state.store.query(&ObjectQuery::walk(
            "user",
            &Filter::True,
            &user_type.index,
            RESCORE_PAGE,
            progress.as_deref(),
            true,
        ))?;
        for user in &page.objects {
            let Ok(score) = generation.completeness.score(&Value::Object(user.content.clone())) else {
                continue;
            };
            if user.meta.get("profileCompleteness").and_then(Value::as_f64) == Some(score) {
                continue;
            }
            let changed = state.store.update_meta("user", &user.id, &user_type.index, |meta| {
                meta.insert("profileCompleteness".to_owned(), Value::from(score));
            });
            if changed.is_ok() {
                updated += 1;
            }
        }
        let Some(next) = page.cookie else {
            return Ok(Some(updated));
        };
        done += i64::try_from(page.objects.len()).unwrap_or(i64::MAX);
        let expires = state.clock.now_millis() + LEASE_MILLIS;
        if !state
            .store
            .record_work_progress(RESCORING_JOB, holder, (&next, done), expires)?
        {
            return Ok(None);
        }
        tracing::info!(
            users.done = done,
            users.updated = updated,
            "rescoring profile completeness"
        );
        progress = Some(next);
    }
}
