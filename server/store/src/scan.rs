//! Queries the property index cannot answer alone: a filter or sort key on a property the index
//! does not hold for every object (the type's rule leaves it out, or its rows are still being
//! written: `coverage.rs`). The index narrows the candidates where it can (the filter with every
//! leaf it cannot answer widened to "any object"); the candidates are read in key order and the
//! whole filter is evaluated on each by core's evaluator, the semantics the index reproduces,
//! with relationship leaves answered by their edge lookups. Sorting, paging and cookies follow
//! the index's own order, so a walk may move between the two paths.

use std::cmp::Ordering;
use std::collections::HashSet;

use diesel::RunQueryDsl;
use diesel::sql_types::BigInt;
use ferridm_core::filter::{self, Filter};
use ferridm_core::query::SortKey;
use ferridm_core::{JsonPointer, Object};
use serde_json::Value;

use crate::StoreError;
use crate::connection::{Backend, DbConnection, Deadline};
use crate::flatten::{IndexSpec, Indexed, compare_keys};
use crate::objects::{OBJECT_COLUMNS, StoredObject};
use crate::query::{ObjectCookie, ObjectQuery, SortValue, load, push_condition, sort_values};
use crate::sql::Sql;

/// Objects read per statement while scanning.
const SCAN_BATCH: u64 = 256;

/// Which fields the index answers for one query: those of the top-level properties both the
/// type's rule and the coverage hold, `_id`, relationships (their edges) and hidden properties
/// (never indexed, never matched).
pub(crate) struct Answerable<'a> {
    pub(crate) spec: &'a IndexSpec,
    pub(crate) coverage: &'a Indexed,
}

impl Answerable<'_> {
    fn field(&self, field: &JsonPointer) -> bool {
        field.first().is_none_or(|first| {
            (self.spec.indexed.holds(first) && self.coverage.holds(first))
                || self.spec.relationships.iter().any(|name| name == first)
                || self.spec.hidden.iter().any(|name| name == first)
        })
    }

    /// Whether the index answers every leaf of `query`'s filter and every sort key.
    pub(crate) fn query(&self, query: &ObjectQuery<'_>) -> bool {
        let mut answered = query.sort.iter().all(|key| self.field(&key.field));
        query.filter.for_each_leaf(&mut |leaf| {
            answered &= leaf_field(leaf).is_none_or(|field| self.field(field));
        });
        answered
    }

    /// A filter the index answers that every match of `filter` satisfies: each leaf it cannot
    /// answer becomes `True` (or, under an odd number of negations, `False`).
    fn widen(&self, filter: &Filter, outer: bool) -> Filter {
        match filter {
            Filter::And(children) => all_of(children.iter().map(|child| self.widen(child, outer))),
            Filter::Or(children) => any_of(children.iter().map(|child| self.widen(child, outer))),
            Filter::Not(child) if matches!(**child, Filter::Extended { .. }) => filter.clone(),
            Filter::Not(child) => match self.widen(child, !outer) {
                Filter::True => Filter::False,
                Filter::False => Filter::True,
                widened => Filter::Not(Box::new(widened)),
            },
            leaf if leaf_field(leaf).is_some_and(|field| !self.field(field)) => {
                if outer {
                    Filter::True
                } else {
                    Filter::False
                }
            }
            other => other.clone(),
        }
    }
}

fn leaf_field(leaf: &Filter) -> Option<&JsonPointer> {
    match leaf {
        Filter::Comparison { field, .. } | Filter::Present(field) | Filter::Extended { field, .. } => Some(field),
        _ => None,
    }
}

fn all_of(children: impl Iterator<Item = Filter>) -> Filter {
    let mut kept = Vec::new();
    for child in children {
        match child {
            Filter::True => {}
            Filter::False => return Filter::False,
            other => kept.push(other),
        }
    }
    match kept.len() {
        0 => Filter::True,
        1 => kept.remove(0),
        _ => Filter::And(kept),
    }
}

fn any_of(children: impl Iterator<Item = Filter>) -> Filter {
    let mut kept = Vec::new();
    for child in children {
        match child {
            Filter::False => {}
            Filter::True => return Filter::True,
            other => kept.push(other),
        }
    }
    match kept.len() {
        0 => Filter::False,
        1 => kept.remove(0),
        _ => Filter::Or(kept),
    }
}

/// The matches of relationship leaves, read from the edges: per leaf, the keys of the objects
/// it holds for.
struct EdgeMatches<'q> {
    relationships: &'q [String],
    keys: Vec<(&'q Filter, HashSet<i64>)>,
}

impl<'q> EdgeMatches<'q> {
    fn read(conn: &mut DbConnection, query: &ObjectQuery<'q>, backend: Backend) -> Result<Self, StoreError> {
        let mut matches = Self {
            relationships: &query.index.relationships,
            keys: Vec::new(),
        };
        let mut leaves = Vec::new();
        query.filter.for_each_leaf(&mut |leaf| {
            if matches.is_relationship_leaf(leaf) && !leaves.contains(&leaf) {
                leaves.push(leaf);
            }
        });
        for leaf in leaves {
            let mut sql = Sql::uncached("SELECT o.pk FROM objects o WHERE ");
            push_condition(&mut sql, leaf, &query.scope(backend));
            let keys: Vec<i64> = sql.typed::<BigInt>().load(conn)?;
            matches.keys.push((leaf, keys.into_iter().collect()));
        }
        Ok(matches)
    }

    fn is_relationship_leaf(&self, leaf: &Filter) -> bool {
        matches!(leaf, Filter::Comparison { .. } | Filter::Present(_))
            && leaf_field(leaf)
                .and_then(JsonPointer::first)
                .is_some_and(|first| self.relationships.iter().any(|name| name == first))
    }

    /// Whether the object `pk` (as `document`) satisfies `filter`.
    fn holds(&self, filter: &Filter, document: &Value, pk: i64) -> bool {
        match filter {
            Filter::And(children) => children.iter().all(|child| self.holds(child, document, pk)),
            Filter::Or(children) => children.iter().any(|child| self.holds(child, document, pk)),
            Filter::Not(child) if matches!(**child, Filter::Extended { .. }) => false,
            Filter::Not(child) => !self.holds(child, document, pk),
            leaf if self.is_relationship_leaf(leaf) => self
                .keys
                .iter()
                .find(|(read, _)| *read == leaf)
                .is_some_and(|(_, keys)| keys.contains(&pk)),
            leaf => filter::matches(leaf, document),
        }
    }
}

/// An object as a filter sees it through the index: its id, its content without hidden
/// properties, and its metadata under `_meta`.
fn document(object: &StoredObject, spec: &IndexSpec) -> Value {
    let mut document = Object::new();
    for (key, value) in &object.content {
        if key == "_id" || key == "_rev" || key == "_meta" || spec.hidden.contains(key) {
            continue;
        }
        document.insert(key.clone(), value.clone());
    }
    document.insert("_id".to_owned(), Value::String(object.id.clone()));
    if !object.meta.is_empty() {
        document.insert("_meta".to_owned(), Value::Object(object.meta.clone()));
    }
    Value::Object(document)
}

/// Orders two rows (their sort values and keys) as the index's pages do: by each key, missing
/// values last, then by creation order in the direction of the last key.
fn page_order(a: (&[SortValue], i64), b: (&[SortValue], i64), keys: &[SortKey]) -> Ordering {
    for (index, key) in keys.iter().enumerate() {
        let ordering = match (&a.0[index], &b.0[index]) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(left), Some(right)) => {
                let natural = compare_keys(left, right);
                if key.ascending { natural } else { natural.reverse() }
            }
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    let creation = a.1.cmp(&b.1);
    if keys.last().is_none_or(|key| key.ascending) {
        creation
    } else {
        creation.reverse()
    }
}

/// One page of `query` (at most `limit` objects, after `cookie` or the query's offset) read by
/// scanning its candidates, and the number of matches when the query counts them.
pub(crate) fn scan_page(
    conn: &mut DbConnection,
    query: &ObjectQuery<'_>,
    answerable: &Answerable<'_>,
    cookie: Option<&ObjectCookie>,
    limit: u64,
    deadline: Option<&Deadline>,
) -> Result<(Vec<StoredObject>, Option<u64>), StoreError> {
    let backend = match conn {
        DbConnection::Sqlite(_) => Backend::Sqlite,
        DbConnection::Postgres(_) => Backend::Postgres,
    };
    let candidates = answerable.widen(query.filter, true);
    let edges = EdgeMatches::read(conn, query, backend)?;
    let offset = if cookie.is_some() { 0 } else { query.offset };
    let wanted = usize::try_from(offset.saturating_add(limit)).unwrap_or(usize::MAX);
    // In creation order without a count, the walk stops once the page is full.
    let stream = query.sort.is_empty() && !query.count;
    let position = cookie.map(|cookie| (cookie.k.clone(), cookie.p));
    let mut kept: Vec<(Vec<SortValue>, StoredObject)> = Vec::new();
    let mut total: u64 = 0;
    let mut after = if stream {
        position.as_ref().map_or(i64::MIN, |(_, pk)| *pk)
    } else {
        i64::MIN
    };
    loop {
        if let Some(deadline) = deadline {
            deadline.bound_next_statements(conn)?;
        }
        let mut sql = Sql::uncached(&format!("SELECT {OBJECT_COLUMNS} FROM objects o WHERE "));
        push_condition(&mut sql, &candidates, &query.scope(backend));
        sql.push(" AND o.pk > ").bind_i64(after).push(" ORDER BY o.pk");
        sql.push_limit(SCAN_BATCH, 0);
        let batch = load(conn, sql)?;
        let Some(last) = batch.last() else { break };
        after = last.pk;
        let last_batch = (batch.len() as u64) < SCAN_BATCH;
        for object in batch {
            if !edges.holds(query.filter, &document(&object, query.index), object.pk) {
                continue;
            }
            total += 1;
            let values = sort_values(&object, query.sort, &query.index.hidden);
            if !stream
                && let Some((cookie_values, cookie_pk)) = &position
                && page_order((&values, object.pk), (cookie_values, *cookie_pk), query.sort) != Ordering::Greater
            {
                continue;
            }
            kept.push((values, object));
            if !stream && kept.len() >= wanted.saturating_mul(2).max(64) {
                kept.sort_by(|a, b| page_order((&a.0, a.1.pk), (&b.0, b.1.pk), query.sort));
                kept.truncate(wanted);
            }
        }
        if last_batch || (stream && kept.len() >= wanted) {
            break;
        }
    }
    if !stream {
        kept.sort_by(|a, b| page_order((&a.0, a.1.pk), (&b.0, b.1.pk), query.sort));
    }
    let objects = kept
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(|(_, mut object)| {
            if !query.loads_content() {
                object.content = Object::new();
                object.meta.retain(|key, _| key == "loginCount");
            }
            object
        })
        .collect();
    Ok((objects, query.count.then_some(total)))
}
