//! The roles that compute themselves, as one node last read them: those with a `condition` or
//! `temporalConstraints` (`service::roles` reads and uses them), and the temporal constraints'
//! arithmetic. Kept apart from the service so that the shared state can hold the cache.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use ferridm_core::filter::Filter;
use serde_json::Value;

/// One `<start>/<end>` interval, in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Interval {
    start: i64,
    end: i64,
}

/// Parses temporal constraints: an array of `{"duration": "<start>/<end>"}`; `None` when any is
/// not of that form.
fn intervals(constraints: &Value) -> Option<Vec<Interval>> {
    constraints
        .as_array()?
        .iter()
        .map(|constraint| {
            let (start, end) = constraint.get("duration")?.as_str()?.split_once('/')?;
            let instant = |text: &str| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .ok()
                    .map(|t| t.timestamp_millis())
            };
            Some(Interval {
                start: instant(start)?,
                end: instant(end)?,
            })
        })
        .collect()
}

/// True when temporal constraints (`None`: none) hold at `now`: some interval contains it.
/// Constraints that cannot be read never hold (policies refuse them on write).
pub fn within(constraints: Option<&Value>, now: i64) -> bool {
    match constraints {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) if items.is_empty() => true,
        Some(constraints) => {
            intervals(constraints).is_some_and(|intervals| intervals.iter().any(|i| i.start <= now && now < i.end))
        }
    }
}

/// True when temporal constraints can be read (see [`within`]).
pub fn valid_constraints(constraints: &Value) -> bool {
    constraints.is_null() || intervals(constraints).is_some()
}

/// A role with a condition or temporal constraints.
#[derive(Debug)]
pub struct CatalogRole {
    /// The role's id.
    pub id: String,
    /// Its condition, as written and parsed.
    pub condition: Option<(String, Filter)>,
    /// Its temporal constraints.
    pub temporal: Option<Value>,
}

/// The roles with a condition or temporal constraints, as read at one time.
#[derive(Debug, Default)]
pub struct RoleCatalog {
    roles: Vec<CatalogRole>,
}

impl RoleCatalog {
    /// A catalog of `roles`.
    pub fn new(roles: Vec<CatalogRole>) -> Self {
        Self { roles }
    }

    /// The roles with a condition.
    pub fn conditional(&self) -> impl Iterator<Item = &CatalogRole> {
        self.roles.iter().filter(|role| role.condition.is_some())
    }

    /// The condition of role `id`, if it has one.
    pub fn condition_of(&self, id: &str) -> Option<&Filter> {
        self.roles
            .iter()
            .find(|role| role.id == id)
            .and_then(|role| role.condition.as_ref().map(|(_, filter)| filter))
    }

    /// True unless role `id` has temporal constraints that do not hold at `now`.
    pub fn effective_at(&self, id: &str, now: i64) -> bool {
        self.roles
            .iter()
            .find(|role| role.id == id)
            .is_none_or(|role| within(role.temporal.as_ref(), now))
    }
}

/// A catalog and when it was read.
#[derive(Debug)]
struct LoadedCatalog {
    read_at: i64,
    catalog: Arc<RoleCatalog>,
}

/// This node's [`RoleCatalog`], read again when a role is written here or it is older than a
/// cluster heartbeat.
#[derive(Debug, Default)]
pub struct RoleCatalogCache {
    current: ArcSwapOption<LoadedCatalog>,
}

impl RoleCatalogCache {
    /// Forgets the catalog: the next use reads it again.
    pub fn invalidate(&self) {
        self.current.store(None);
    }

    /// The catalog, when one was read at most `max_age` milliseconds before `now`.
    pub fn fresh(&self, now: i64, max_age: i64) -> Option<Arc<RoleCatalog>> {
        self.current
            .load_full()
            .filter(|loaded| loaded.read_at <= now && now.saturating_sub(loaded.read_at) < max_age)
            .map(|loaded| Arc::clone(&loaded.catalog))
    }

    /// Keeps `catalog`, read at `now`.
    pub fn keep(&self, now: i64, catalog: Arc<RoleCatalog>) {
        self.current
            .store(Some(Arc::new(LoadedCatalog { read_at: now, catalog })));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn temporal_constraints_hold_within_their_intervals_only() {
        let constraints = json!([{"duration": "2026-01-01T00:00:00.000Z/2026-02-01T00:00:00.000Z"}]);
        let at = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.timestamp_millis())
                .unwrap_or_default()
        };
        assert!(within(Some(&constraints), at("2026-01-15T00:00:00Z")));
        assert!(within(Some(&constraints), at("2026-01-01T00:00:00Z")));
        assert!(!within(Some(&constraints), at("2026-02-01T00:00:00Z")));
        assert!(!within(Some(&constraints), at("2025-12-31T23:59:59Z")));
        assert!(within(None, 0) && within(Some(&json!([])), 0));
        assert!(!within(Some(&json!([{"duration": "yesterday/tomorrow"}])), 0));
        assert!(!valid_constraints(&json!({"duration": "x"})));
    }
}
