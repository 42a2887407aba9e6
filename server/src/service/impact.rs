//! The impact of a configuration on stored data (`ferridm check --against <db>`): every stored
//! managed object of every type of the new configuration is read page by page from a database
//! opened read-only, checked with the policies as an update that keeps its values would check
//! it ([`ManagedObjects::revalidate`]), and users are scored with the new profile-completeness
//! rule. Nothing is written: the store cannot write, and nothing here asks it to.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferridm_core::filter::Filter;
use ferridm_store::{ObjectQuery, Store, StoreOptions, StoredObject};
use serde::Serialize;
use serde_json::Value;

use super::context::RequestContext;
use super::managed::ManagedObjects;
use crate::clock::SystemClock;
use crate::config::ConfigPaths;
use crate::generation::Generation;
use crate::secrets::Secrets;
use crate::state::AppState;

/// Objects read per page.
const PAGE: u32 = 500;

/// The type whose objects have a profile completeness.
const SCORED_TYPE: &str = "user";

/// Upper bounds (exclusive) of the completeness buckets but the last, which is exactly 100.
const BUCKET_LIMITS: [f64; 4] = [25.0, 50.0, 75.0, 100.0];

/// The names of the completeness buckets, in order.
const BUCKET_NAMES: [&str; 5] = ["0-24", "25-49", "50-74", "75-99", "100"];

/// What one configuration would do to the stored data.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImpactReport {
    /// One entry per managed type of the configuration, in `managed.json`'s order.
    pub types: Vec<TypeImpact>,
    /// Profile completeness of `managed/user`, when the configuration declares users.
    pub completeness: Option<CompletenessImpact>,
    /// Conditional roles are not implemented yet, so nothing about them can change.
    pub conditional_roles: &'static str,
}

/// The policy check of one managed type.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeImpact {
    /// `managed/<type>`.
    pub resource: String,
    /// Objects checked.
    pub checked: u64,
    /// Objects an update would refuse.
    pub rejected: u64,
    /// Each failing (property, requirement), most frequent first.
    pub failures: Vec<Failure>,
}

/// One failing policy requirement of one property.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The property (as the policy reports it, `name[2]` for an array element).
    pub property: String,
    /// IDM's requirement name (`MIN_LENGTH`, `REQUIRED`, …), or `POLICY_ERROR: <message>`
    /// when a policy script failed (the update would fail with a 500).
    pub requirement: String,
    /// Objects failing it.
    pub count: u64,
    /// The first ids failing it, in creation order.
    pub sample: Vec<String>,
}

/// How the users' profile completeness would change.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletenessImpact {
    /// Users scored.
    pub users: u64,
    /// Users whose score would change (a user without a stored score counts as changed).
    pub changed: u64,
    /// Average of the stored scores (users without one left out), if any.
    pub average_before: Option<f64>,
    /// Average of the new scores, if any user.
    pub average_after: Option<f64>,
    /// Users per bucket of stored score (`0-24`, …, `100`); users without one are not counted.
    pub before: BTreeMap<&'static str, u64>,
    /// Users per bucket of new score.
    pub after: BTreeMap<&'static str, u64>,
    /// The first ids whose score would change, in creation order.
    pub sample: Vec<String>,
}

impl ImpactReport {
    /// Objects an update would refuse, over every type.
    pub fn rejected(&self) -> u64 {
        self.types.iter().map(|impact| impact.rejected).sum()
    }

    /// The report for a terminal, one finding a line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for impact in &self.types {
            out.push_str(&format!(
                "{}: {} checked, {} would be rejected\n",
                impact.resource, impact.checked, impact.rejected
            ));
            for failure in &impact.failures {
                out.push_str(&format!(
                    "  {} {}: {} (sample: {})\n",
                    failure.property,
                    failure.requirement,
                    failure.count,
                    failure.sample.join(", ")
                ));
            }
        }
        if let Some(completeness) = &self.completeness {
            let average = |value: Option<f64>| value.map_or_else(|| "none".to_owned(), |value| format!("{value:.1}"));
            let buckets = |counts: &BTreeMap<&'static str, u64>| {
                BUCKET_NAMES
                    .iter()
                    .map(|name| format!("{name}: {}", counts.get(name).copied().unwrap_or(0)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push_str(&format!(
                "profile completeness of managed/{SCORED_TYPE}: {} of {} would change, average {} -> {}\n",
                completeness.changed,
                completeness.users,
                average(completeness.average_before),
                average(completeness.average_after)
            ));
            out.push_str(&format!("  before: {}\n", buckets(&completeness.before)));
            out.push_str(&format!("  after: {}\n", buckets(&completeness.after)));
            if !completeness.sample.is_empty() {
                out.push_str(&format!("  sample: {}\n", completeness.sample.join(", ")));
            }
        }
        out.push_str(&format!("conditional roles: {}\n", self.conditional_roles));
        out
    }
}

/// Checks every stored managed object of `generation`'s types in the database at `db_url`,
/// opened read-only, keeping up to `sample` ids per finding.
pub fn assess(paths: ConfigPaths, generation: Generation, db_url: &str, sample: usize) -> anyhow::Result<ImpactReport> {
    let store = Store::open_read_only(
        db_url,
        &StoreOptions {
            pool_size: 2,
            idle_connections: 0,
            ..StoreOptions::default()
        },
    )?;
    let state = Arc::new(AppState::new(
        paths,
        store,
        Secrets::ephemeral(),
        generation,
        Arc::new(SystemClock),
    ));
    let generation = state.generation();
    let ctx = RequestContext::internal(Arc::clone(&state), Arc::clone(&generation));
    let mut types = Vec::new();
    let mut completeness = None;
    for object_type in generation.managed.all() {
        let name = object_type.schema.name.as_str();
        let objects = ManagedObjects::new(&ctx, name).map_err(|error| anyhow::anyhow!("{error}"))?;
        let mut policies = PolicyTally::default();
        let mut scores = (name == SCORED_TYPE).then(ScoreTally::default);
        let mut cookie: Option<String> = None;
        loop {
            let page = state.store.query(&ObjectQuery::walk(
                name,
                &Filter::True,
                &object_type.index,
                PAGE,
                cookie.as_deref(),
                true,
            ))?;
            for stored in &page.objects {
                policies.add(stored, objects.revalidate(stored), sample);
                if let Some(scores) = &mut scores {
                    scores.add(stored, &generation, sample)?;
                }
            }
            match page.cookie {
                Some(next) if !page.objects.is_empty() => cookie = Some(next),
                _ => break,
            }
        }
        types.push(policies.finish(format!("managed/{name}")));
        if let Some(scores) = scores {
            completeness = Some(scores.finish());
        }
    }
    Ok(ImpactReport {
        types,
        completeness,
        conditional_roles: "not implemented by ferridm yet (issue 15): nothing to compare",
    })
}

/// Failures counted over one type.
#[derive(Default)]
struct PolicyTally {
    checked: u64,
    rejected: u64,
    failures: BTreeMap<(String, String), (u64, Vec<String>)>,
}

impl PolicyTally {
    fn add(
        &mut self,
        stored: &StoredObject,
        outcome: ferridm_core::Result<crate::policy::PolicyResult>,
        sample: usize,
    ) {
        self.checked += 1;
        let mut keys: Vec<(String, String)> = match outcome {
            Ok(result) => result
                .failed
                .iter()
                .flat_map(|entry| {
                    let property = entry["property"].as_str().unwrap_or_default().to_owned();
                    entry["policyRequirements"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(move |requirement| {
                            let name = requirement["policyRequirement"].as_str().unwrap_or_default();
                            (property.clone(), name.to_owned())
                        })
                })
                .collect(),
            Err(error) => vec![("*".to_owned(), format!("POLICY_ERROR: {error}"))],
        };
        if keys.is_empty() {
            return;
        }
        self.rejected += 1;
        keys.sort();
        keys.dedup();
        for key in keys {
            let (count, ids) = self.failures.entry(key).or_default();
            *count += 1;
            if ids.len() < sample {
                ids.push(stored.id.clone());
            }
        }
    }

    fn finish(self, resource: String) -> TypeImpact {
        let mut failures: Vec<Failure> = self
            .failures
            .into_iter()
            .map(|((property, requirement), (count, sample))| Failure {
                property,
                requirement,
                count,
                sample,
            })
            .collect();
        failures.sort_by_key(|failure| std::cmp::Reverse(failure.count));
        TypeImpact {
            resource,
            checked: self.checked,
            rejected: self.rejected,
            failures,
        }
    }
}

/// Completeness scores counted over the users.
#[derive(Default)]
struct ScoreTally {
    users: u64,
    changed: u64,
    scored_before: u64,
    sum_before: f64,
    sum_after: f64,
    before: BTreeMap<&'static str, u64>,
    after: BTreeMap<&'static str, u64>,
    sample: Vec<String>,
}

fn bucket(score: f64) -> &'static str {
    BUCKET_LIMITS
        .iter()
        .position(|limit| score < *limit)
        .map_or(BUCKET_NAMES[4], |index| BUCKET_NAMES[index])
}

impl ScoreTally {
    fn add(&mut self, stored: &StoredObject, generation: &Generation, sample: usize) -> anyhow::Result<()> {
        let after = generation
            .completeness
            .score(&Value::Object(stored.content.clone()))
            .map_err(|error| anyhow::anyhow!("cannot score managed/{SCORED_TYPE}/{}: {error}", stored.id))?;
        let before = stored.meta.get("profileCompleteness").and_then(Value::as_f64);
        self.users += 1;
        self.sum_after += after;
        *self.after.entry(bucket(after)).or_default() += 1;
        if let Some(before) = before {
            self.scored_before += 1;
            self.sum_before += before;
            *self.before.entry(bucket(before)).or_default() += 1;
        }
        if before != Some(after) {
            self.changed += 1;
            if self.sample.len() < sample {
                self.sample.push(stored.id.clone());
            }
        }
        Ok(())
    }

    #[expect(clippy::cast_precision_loss, reason = "averages of counts far below 2^52")]
    fn finish(self) -> CompletenessImpact {
        CompletenessImpact {
            users: self.users,
            changed: self.changed,
            average_before: (self.scored_before > 0).then(|| self.sum_before / self.scored_before as f64),
            average_after: (self.users > 0).then(|| self.sum_after / self.users as f64),
            before: self.before,
            after: self.after,
            sample: self.sample,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_fall_in_quarter_buckets_and_a_full_one() {
        assert_eq!(bucket(0.0), "0-24");
        assert_eq!(bucket(24.9), "0-24");
        assert_eq!(bucket(25.0), "25-49");
        assert_eq!(bucket(74.99), "50-74");
        assert_eq!(bucket(99.9), "75-99");
        assert_eq!(bucket(100.0), "100");
    }
}
