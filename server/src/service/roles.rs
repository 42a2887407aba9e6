//! Roles that compute themselves (IDM's conditional roles and temporal constraints).
//!
//! - A role with a `condition` (a query filter over a user, `_meta` included) is granted to
//!   exactly the users that match it: a user's own writes grant and revoke it as they go
//!   (`service::managed`), and a changed condition is re-evaluated for every user in the
//!   background, once across the nodes sharing the database, resumable from its recorded
//!   progress. Such grants are edges whose `_refProperties` say `_grantType: "conditional"`.
//! - A role's `temporalConstraints`, and those of one grant (`_refProperties`), make it
//!   effective only within their intervals (`<start>/<end>`, ISO-8601): `effectiveRoles`
//!   leaves it out at any other time.
//!
//! The roles that have either are kept in a [`RoleCatalog`], read again after a role is
//! written on this node and at least once per cluster heartbeat (another node's role writes
//! reach this one within it).

use std::collections::BTreeMap;
use std::sync::Arc;

use ferridm_core::filter::{self, Filter};
use ferridm_core::{Object, Result, Revision};
use ferridm_store::{EdgeTarget, GrantChange, ObjectQuery, RelationshipSet, StoreError, WorkLease};
use serde_json::{Value, json};

use crate::role_catalog::CatalogRole;
pub use crate::role_catalog::{RoleCatalog, valid_constraints, within};
use crate::state::AppState;

/// The property of `_refProperties` telling how a role was granted.
pub const GRANT_TYPE: &str = "_grantType";
/// The grant type of a role granted by its condition.
pub const CONDITIONAL: &str = "conditional";
/// The collection of managed roles.
pub const ROLE_COLLECTION: &str = "managed/role";
/// The user property holding role grants.
pub const ROLES: &str = "roles";
/// The role property naming its condition.
const CONDITION: &str = "condition";
/// The property naming temporal constraints (on a role, and in a grant's `_refProperties`).
pub const TEMPORAL_CONSTRAINTS: &str = "temporalConstraints";
/// The managed type conditional roles apply to.
const USER_TYPE: &str = "user";
/// The managed type of roles.
const ROLE_TYPE: &str = "role";

/// The store setting recording, per conditional role, the condition its grants follow.
const GRANTS_SETTING: &str = "conditional-role-grants";
/// The job name of re-evaluating conditional roles among the nodes' leases.
const JOB: &str = "conditional-roles";
/// Users judged per page of a re-evaluation.
const PAGE: u32 = 500;
/// How long a re-evaluation lease lasts unless its holder renews it (after every page).
const LEASE_MILLIS: i64 = 30_000;
/// Pages between two progress lines in the log.
const PAGES_PER_LOG_LINE: u64 = 20;

/// Reads the roles with a condition or temporal constraints.
fn load_catalog(state: &AppState) -> std::result::Result<RoleCatalog, StoreError> {
    let generation = state.generation();
    let Some(role_type) = generation.managed.get(ROLE_TYPE) else {
        return Ok(RoleCatalog::default());
    };
    let wanted = Filter::Or(vec![
        Filter::Present(ferridm_core::JsonPointer::from_segments([CONDITION])),
        Filter::Present(ferridm_core::JsonPointer::from_segments([TEMPORAL_CONSTRAINTS])),
    ]);
    let mut roles = Vec::new();
    let mut cookie: Option<String> = None;
    loop {
        let page = state.store.query(&ObjectQuery::walk(
            ROLE_TYPE,
            &wanted,
            &role_type.index,
            PAGE,
            cookie.as_deref(),
            true,
        ))?;
        for role in page.objects {
            let condition = match role.content.get(CONDITION) {
                Some(Value::String(text)) if !text.trim().is_empty() => match filter::parse(text) {
                    Ok(parsed) => Some((text.clone(), parsed)),
                    Err(error) => {
                        tracing::warn!(role = %role.id, %error, "a role's condition is no query filter; it grants nothing");
                        None
                    }
                },
                _ => None,
            };
            let temporal = role.content.get(TEMPORAL_CONSTRAINTS).filter(|v| !v.is_null()).cloned();
            roles.push(CatalogRole {
                id: role.id,
                condition,
                temporal,
            });
        }
        match page.cookie {
            Some(next) => cookie = Some(next),
            None => return Ok(RoleCatalog::new(roles)),
        }
    }
}

/// The current role catalog.
pub fn catalog(state: &AppState) -> Result<Arc<RoleCatalog>> {
    let now = state.clock.now_millis();
    let max_age = i64::try_from(state.generation().settings.cluster.heartbeat_millis).unwrap_or(i64::MAX);
    if let Some(catalog) = state.roles.fresh(now, max_age) {
        return Ok(catalog);
    }
    let catalog = Arc::new(load_catalog(state).map_err(super::storage_error)?);
    state.roles.keep(now, Arc::clone(&catalog));
    Ok(catalog)
}

/// The target of a conditional grant of role `id`.
pub fn conditional_target(id: &str) -> EdgeTarget {
    let mut properties = Object::new();
    properties.insert(GRANT_TYPE.to_owned(), Value::String(CONDITIONAL.to_owned()));
    EdgeTarget {
        collection: ROLE_COLLECTION.to_owned(),
        id: id.to_owned(),
        properties,
    }
}

/// True when an edge's properties say its role was granted by condition.
pub fn is_conditional(properties: &Object) -> bool {
    properties.get(GRANT_TYPE).and_then(Value::as_str) == Some(CONDITIONAL)
}

/// A user as a condition sees it: its content with `_id` and `_meta`.
pub fn as_judged(id: &str, content: &Object, meta: &Object) -> Value {
    let mut judged = content.clone();
    judged.insert("_id".to_owned(), Value::String(id.to_owned()));
    judged.insert("_meta".to_owned(), Value::Object(meta.clone()));
    Value::Object(judged)
}

/// The conditions the stored grants follow, by role id.
fn recorded_grants(state: &AppState) -> std::result::Result<BTreeMap<String, String>, StoreError> {
    Ok(state
        .store
        .setting(GRANTS_SETTING)?
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default())
}

/// True when the stored grants of role `id` follow `condition` (its re-evaluation for that
/// condition has finished).
pub fn grants_follow(state: &AppState, id: &str, condition: &str) -> Result<bool> {
    let recorded = recorded_grants(state).map_err(super::storage_error)?;
    Ok(recorded.get(id).is_some_and(|followed| followed == condition))
}

/// A role whose grants do not follow its condition: its id and the condition to follow
/// (`None`: it has none any more).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingRole {
    id: String,
    condition: Option<String>,
}

/// The roles whose stored grants follow another condition than their own.
fn pending(state: &AppState) -> Result<Vec<PendingRole>> {
    state.roles.invalidate();
    let catalog = catalog(state)?;
    let recorded = recorded_grants(state).map_err(super::storage_error)?;
    let mut pending: Vec<PendingRole> = catalog
        .conditional()
        .filter_map(|role| {
            let (text, _) = role.condition.as_ref()?;
            (recorded.get(&role.id) != Some(text)).then(|| PendingRole {
                id: role.id.clone(),
                condition: Some(text.clone()),
            })
        })
        .collect();
    pending.extend(
        recorded
            .keys()
            .filter(|id| catalog.condition_of(id).is_none())
            .map(|id| PendingRole {
                id: id.clone(),
                condition: None,
            }),
    );
    Ok(pending)
}

/// Starts re-evaluating conditional roles in the background when some role's grants follow
/// another condition than its own (after a role is written, at start, and on every heartbeat,
/// so a re-evaluation left by a node that died is resumed).
pub fn reconcile(state: &Arc<AppState>) {
    match pending(state) {
        Ok(pending) if pending.is_empty() => return,
        Ok(_) => {}
        Err(error) => {
            tracing::error!(%error, "cannot tell whether conditional roles need re-evaluating");
            return;
        }
    }
    let shared = Arc::clone(state);
    let spawned = std::thread::Builder::new()
        .name("ferridm-conditional-roles".to_owned())
        .spawn(move || reevaluate_pending(&shared));
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start re-evaluating conditional roles");
    }
}

/// Re-evaluates every pending conditional role, one at a time, under this node's lease.
fn reevaluate_pending(state: &AppState) {
    let Ok(_running) = state.work_running.try_lock() else {
        return;
    };
    let holder = state.node_id.get().map_or("local", String::as_str);
    loop {
        let pending = match pending(state) {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!(%error, "cannot read which conditional roles need re-evaluating");
                return;
            }
        };
        let Some(role) = pending.into_iter().next() else {
            return;
        };
        // Ids hold no '/': the role and the condition its grants are to follow.
        let target = format!("{}/{}", role.id, role.condition.as_deref().unwrap_or(""));
        let now = state.clock.now_millis();
        let lease = match state.store.claim_work(JOB, &target, holder, now, now + LEASE_MILLIS) {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                tracing::debug!("another node is re-evaluating conditional roles");
                return;
            }
            Err(error) => {
                tracing::error!(%error, "cannot claim the re-evaluation of conditional roles");
                return;
            }
        };
        if lease.progress.is_some() {
            tracing::info!(role = %role.id, "resuming the re-evaluation of a conditional role where it stopped");
        }
        match reevaluate(state, &role, holder, lease) {
            Ok(Some(outcome)) => {
                let recorded = recorded_grants(state).and_then(|mut recorded| {
                    match &role.condition {
                        Some(condition) => recorded.insert(role.id.clone(), condition.clone()),
                        None => recorded.remove(&role.id),
                    };
                    let text = serde_json::to_string(&recorded).map_err(StoreError::from)?;
                    state.store.put_setting(GRANTS_SETTING, &text)
                });
                if let Err(error) = recorded {
                    tracing::error!(%error, "cannot record a re-evaluated conditional role");
                    return;
                }
                if let Err(error) = state.store.finish_work(JOB, holder) {
                    tracing::warn!(%error, "cannot release the conditional roles lease");
                }
                state.roles.invalidate();
                tracing::info!(
                    role = %role.id,
                    users.done = outcome.done,
                    users.granted = outcome.granted,
                    users.revoked = outcome.revoked,
                    "conditional role re-evaluated"
                );
            }
            Ok(None) => {
                tracing::info!("another node took over re-evaluating conditional roles");
                return;
            }
            Err(error) => {
                tracing::error!(%error, role = %role.id, "re-evaluating a conditional role stopped");
                return;
            }
        }
    }
}

/// What a re-evaluation did.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    done: i64,
    granted: u64,
    revoked: u64,
}

/// Judges every user after the lease's progress (a page cookie) against `role`'s condition,
/// granting it to those that match and revoking its conditional grants from those that do
/// not, a page per transaction; `None` when the lease was lost to another node.
fn reevaluate(
    state: &AppState,
    role: &PendingRole,
    holder: &str,
    lease: WorkLease,
) -> std::result::Result<Option<Outcome>, StoreError> {
    let generation = state.generation();
    let Some(user_type) = generation.managed.get(USER_TYPE) else {
        return Ok(Some(Outcome::default()));
    };
    let Some(property) = user_type.relationship(ROLES) else {
        return Ok(Some(Outcome::default()));
    };
    let condition = match role.condition.as_deref().map(filter::parse) {
        Some(Ok(parsed)) => Some(parsed),
        Some(Err(_)) | None => None,
    };
    let set = RelationshipSet {
        property: ROLES.to_owned(),
        reverse: property.reverse.clone(),
        reverse_single: false,
        targets: vec![conditional_target(&role.id)],
    };
    let user_collection = format!("managed/{USER_TYPE}");
    let mut outcome = Outcome {
        done: lease.done,
        ..Outcome::default()
    };
    // A role without a condition keeps no conditional grants: only its holders are judged.
    let judged_users = match condition {
        Some(_) => Filter::True,
        None => Filter::Comparison {
            field: ferridm_core::JsonPointer::from_segments([ROLES, "_refResourceId"]),
            op: filter::ComparisonOp::Eq,
            value: filter::Literal::String(role.id.clone()),
        },
    };
    let mut progress = lease.progress;
    let mut pages = 0_u64;
    loop {
        let page = state.store.query(&ObjectQuery::walk(
            USER_TYPE,
            &judged_users,
            &user_type.index,
            PAGE,
            progress.as_deref(),
            condition.is_some(),
        ))?;
        let ids: Vec<&str> = page.objects.iter().map(|user| user.id.as_str()).collect();
        let edges = state.store.edges(&user_collection, &ids, &[ROLES])?;
        let mut changes: Vec<GrantChange<'_>> = Vec::new();
        for user in &page.objects {
            let held = edges.iter().find(|edge| {
                edge.owner_id == user.id && edge.collection == ROLE_COLLECTION && edge.target_id == role.id
            });
            let matches = condition
                .as_ref()
                .is_some_and(|condition| filter::matches(condition, &as_judged(&user.id, &user.content, &user.meta)));
            let revision: Revision = user.rev;
            match held {
                None if matches => changes.push(GrantChange {
                    id: &user.id,
                    revision,
                    revoked_edge: None,
                }),
                Some(edge) if !matches && is_conditional(&edge.properties) => changes.push(GrantChange {
                    id: &user.id,
                    revision,
                    revoked_edge: Some(&edge.id),
                }),
                _ => {}
            }
        }
        let granted = changes.iter().filter(|c| c.revoked_edge.is_none()).count() as u64;
        let revoked = changes.len() as u64 - granted;
        if state.store.apply_grants(USER_TYPE, &set, &changes)? > 0 {
            outcome.granted += granted;
            outcome.revoked += revoked;
        }
        outcome.done += i64::try_from(page.objects.len()).unwrap_or(i64::MAX);
        let Some(next) = page.cookie else {
            return Ok(Some(outcome));
        };
        let expires = state.clock.now_millis() + LEASE_MILLIS;
        if !state
            .store
            .record_work_progress(JOB, holder, (&next, outcome.done), expires)?
        {
            return Ok(None);
        }
        pages += 1;
        if pages.is_multiple_of(PAGES_PER_LOG_LINE) {
            tracing::info!(
                role = %role.id,
                users.done = outcome.done,
                users.granted = outcome.granted,
                users.revoked = outcome.revoked,
                "re-evaluating a conditional role"
            );
        }
        progress = Some(next);
    }
}

/// The 403 of a role whose condition is no query filter, as IDM's `VALID_QUERY_FILTER`.
pub fn check_condition(content: &Object, message: &str) -> Result<()> {
    match content.get(CONDITION) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(text)) if filter::parse(text).is_ok() => Ok(()),
        Some(_) => Err(ferridm_core::Error::PolicyFailed {
            message: message.to_owned(),
            detail: json!({"result": false, "failedPolicyRequirements": [
                {"policyRequirements": [{"policyRequirement": "VALID_QUERY_FILTER"}], "property": CONDITION}
            ]}),
        }),
    }
}
