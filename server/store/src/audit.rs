//! Audit events the repository handler keeps, in `audit_events`: one row per event with the
//! event as JSON text, and the fields audit queries filter and sort on as columns, folded like
//! the property index (lower-cased, so comparisons follow the filter semantics of managed
//! objects). Storing an event writes that one row, not an index row per field, which keeps the
//! audit trail of every request cheap.
//!
//! A query's filter is compiled to one SQL condition over the columns (each leaf is false for a
//! missing value, so `!` and junctions keep the reference evaluator's meaning); sorting puts
//! missing values last and breaks ties by storage order in the direction of the last sort key;
//! cookies carry the last row's sort values and key, so a walk sees every event once while
//! others are appended.

use diesel::RunQueryDsl;
use diesel::sql_types::{BigInt, Text};
use ferridm_core::filter::{ComparisonOp, Filter, Literal};
use ferridm_core::query::SortKey;
use ferridm_core::{JsonPointer, Object};
use serde_json::Value;

use crate::connection::{Deadline, rows_per_insert};
use crate::flatten::fold_string;
use crate::query::{Cookie, like_escape, prefix_successor};
use crate::sql::{Bind, Sql};
use crate::{Store, StoreError};

/// Events per `INSERT` statement where [`rows_per_insert`] allows several (each binds 11 values).
const EVENTS_PER_INSERT: usize = 64;

/// A column of `audit_events` that audit queries filter and sort on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditColumn {
    /// `_id`.
    Id,
    /// `timestamp`.
    Timestamp,
    /// `eventName`.
    EventName,
    /// `transactionId`.
    TransactionId,
    /// `userId`.
    UserId,
    /// `objectId` (`principal` of authentication events).
    ObjectId,
    /// The operation (`request/operation` of access events).
    Operation,
    /// The outcome (`response/status` of access events, `result` of authentication events).
    Status,
}

impl AuditColumn {
    /// Every column an event fills besides `Id`, in the table's order.
    pub const VALUES: [Self; 7] = [
        Self::Timestamp,
        Self::EventName,
        Self::TransactionId,
        Self::UserId,
        Self::ObjectId,
        Self::Operation,
        Self::Status,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Id => "event_id",
            Self::Timestamp => "event_ts",
            Self::EventName => "event_name",
            Self::TransactionId => "transaction_id",
            Self::UserId => "user_id",
            Self::ObjectId => "object_id",
            Self::Operation => "operation",
            Self::Status => "status",
        }
    }
}

/// Where a topic's events hold the value of each queryable column: `(field, column)` pairs.
pub type AuditFields = [(&'static str, AuditColumn)];

/// An audit event to store.
#[derive(Debug, Clone, Copy)]
pub struct NewAuditEvent<'a> {
    /// Its topic (`access`, `activity`, …).
    pub topic: &'a str,
    /// Its id.
    pub id: &'a str,
    /// The event as JSON text.
    pub body: &'a str,
    /// Its values of the columns in [`AuditColumn::VALUES`] order, as the event holds them (the
    /// store folds them); `None` where it lacks the field.
    pub values: [Option<&'a str>; AuditColumn::VALUES.len()],
}

/// A query over the events of one topic.
#[derive(Debug, Clone, Copy)]
pub struct AuditQuery<'a> {
    /// The topic.
    pub topic: &'a str,
    /// Where the topic's events hold the queryable columns; the filter and sort keys must name
    /// only these fields (a comparison of any other field matches nothing).
    pub fields: &'a AuditFields,
    /// The filter.
    pub filter: &'a Filter,
    /// Sort keys (may be empty: storage order).
    pub sort: &'a [SortKey],
    /// Page size, or `None` for every match up to `limit`.
    pub page_size: Option<u32>,
    /// Results to skip (only without a cookie).
    pub offset: u64,
    /// A cookie from a previous page.
    pub cookie: Option<&'a str>,
    /// Whether to count every match.
    pub count: bool,
    /// Most rows an unpaged query may return; one more is fetched to detect overflow.
    pub limit: u64,
    /// How long the query may run before it is cancelled (`None`: no limit).
    pub time_limit: Option<std::time::Duration>,
}

/// One page of audit events.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    /// The events (id and event), in order.
    pub events: Vec<(String, Object)>,
    /// The cookie for the next page, when paging and the page was full.
    pub cookie: Option<String>,
    /// Total matches, when counted.
    pub total: Option<u64>,
}

/// The column a field is kept in, if any.
pub fn column_of(fields: &AuditFields, field: &JsonPointer) -> Option<AuditColumn> {
    if let [only] = field.segments()
        && only == "_id"
    {
        return Some(AuditColumn::Id);
    }
    fields
        .iter()
        .find(|(name, _)| field.segments().iter().map(String::as_str).eq(name.split('/')))
        .map(|(_, column)| *column)
}

/// The string an event holds at `path` (`a` or `a/b`), or the one string of a one-element array
/// there (IDM's `principal`): what a queryable field's column keeps. `None` when it lacks the
/// field or holds anything else.
pub fn field_string<'a>(body: &'a Object, path: &str) -> Option<&'a str> {
    let mut segments = path.split('/');
    let first = body.get(segments.next()?)?;
    match segments.try_fold(first, |value, segment| value.get(segment))? {
        Value::String(text) => Some(text),
        Value::Array(items) if items.len() == 1 => items[0].as_str(),
        _ => None,
    }
}

/// The folded value an event holds for `column` ([`field_string`]).
fn column_value(body: &Object, id: &str, fields: &AuditFields, column: AuditColumn) -> Option<String> {
    if column == AuditColumn::Id {
        return Some(id.to_owned());
    }
    let (name, _) = fields.iter().find(|(_, candidate)| *candidate == column)?;
    field_string(body, name).map(fold_string)
}

impl Store {
    /// Stores events in one transaction.
    pub fn insert_audit_events(&self, events: &[NewAuditEvent<'_>]) -> Result<(), StoreError> {
        self.audit_store().write(|conn| {
            for chunk in events.chunks(rows_per_insert(conn, EVENTS_PER_INSERT)) {
                // The text depends on the chunk length only, so its shapes are bounded.
                let mut insert = Sql::cached(
                    "INSERT INTO audit_events (topic, event_id, event_ts, event_name, transaction_id, user_id, \
                     object_id, operation, status, body) VALUES ",
                );
                for (index, event) in chunk.iter().enumerate() {
                    insert
                        .push(if index == 0 { "(" } else { ", (" })
                        .bind_text(event.topic)
                        .push(", ")
                        .bind_text(event.id);
                    for value in event.values {
                        insert.push(", ").bind(Bind::NullableText(value.map(fold_string)));
                    }
                    insert.push(", ").bind_text(event.body).push(")");
                }
                insert.execute(conn)?;
            }
            Ok(())
        })
    }

    /// One stored event of `topic` by id.
    pub fn audit_event(&self, topic: &str, id: &str) -> Result<Option<Object>, StoreError> {
        self.audit_store().read(|conn| {
            let mut select = Sql::cached("SELECT body FROM audit_events WHERE topic = ");
            select.bind_text(topic).push(" AND event_id = ").bind_text(id);
            let bodies: Vec<String> = select.typed::<Text>().load(conn)?;
            bodies.first().map(|body| Ok(serde_json::from_str(body)?)).transpose()
        })
    }

    /// Runs a query over the events of one topic and returns one page.
    pub fn query_audit(&self, query: &AuditQuery<'_>) -> Result<AuditPage, StoreError> {
        let cookie = query
            .cookie
            .map(|text| Cookie::<String>::decode(text, query.sort.len()))
            .transpose()?;
        let deadline = query.time_limit.and_then(Deadline::after);
        self.audit_store().read_within(deadline.as_ref(), |conn| {
            let look_ahead = u64::from(query.count && query.page_size.is_some());
            let limit = query
                .page_size
                .map_or(query.limit.saturating_add(1), |size| u64::from(size) + look_ahead);
            let mut select = Sql::uncached("SELECT pk, event_id, body FROM audit_events WHERE ");
            push_matching(&mut select, query);
            if let Some(cookie) = &cookie {
                select.push(" AND ");
                push_after(&mut select, query, cookie);
            }
            push_order(&mut select, query);
            select.push_limit(limit, if cookie.is_none() { query.offset } else { 0 });
            let rows: Vec<(i64, String, String)> = select.typed::<(BigInt, Text, Text)>().load(conn)?;
            let total = if query.count {
                if let Some(deadline) = &deadline {
                    deadline.bound_next_statements(conn)?;
                }
                let mut count = Sql::uncached("SELECT COUNT(*) FROM audit_events WHERE ");
                push_matching(&mut count, query);
                let counted: i64 = count.typed::<BigInt>().get_result(conn)?;
                Some(u64::try_from(counted).unwrap_or_default())
            } else {
                None
            };
            let mut events = rows
                .into_iter()
                .map(|(pk, id, body)| Ok((pk, id, serde_json::from_str::<Object>(&body)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            let more_beyond = match query.page_size {
                Some(size) if look_ahead == 1 => {
                    let more = events.len() > size as usize;
                    events.truncate(size as usize);
                    more
                }
                _ => true,
            };
            let next = match (query.page_size, events.last()) {
                (Some(size), Some((pk, id, body))) if events.len() >= size as usize && more_beyond => {
                    let k = query
                        .sort
                        .iter()
                        .map(|key| {
                            column_of(query.fields, &key.field)
                                .and_then(|column| column_value(body, id, query.fields, column))
                        })
                        .collect();
                    Some(Cookie { k, p: *pk }.encode()?)
                }
                _ => None,
            };
            Ok(AuditPage {
                events: events.into_iter().map(|(_, id, body)| (id, body)).collect(),
                cookie: next,
                total,
            })
        })
    }
}

/// `topic = ? AND (<filter>)`.
fn push_matching(sql: &mut Sql, query: &AuditQuery<'_>) {
    sql.push("topic = ").bind_text(query.topic).push(" AND ");
    push_condition(sql, query.filter, query.fields);
}

/// The filter as a condition that is never SQL `NULL`: every leaf is false for a missing value,
/// so `NOT` negates exactly as the reference evaluator does.
fn push_condition(sql: &mut Sql, filter: &Filter, fields: &AuditFields) {
    match filter {
        Filter::True => {
            sql.push("1 = 1");
        }
        Filter::False | Filter::Extended { .. } => {
            sql.push("1 = 0");
        }
        Filter::Not(child) if matches!(**child, Filter::Extended { .. }) => {
            sql.push("1 = 0");
        }
        Filter::Not(child) => {
            sql.push("NOT (");
            push_condition(sql, child, fields);
            sql.push(")");
        }
        Filter::And(children) | Filter::Or(children) if children.is_empty() => {
            sql.push(if matches!(filter, Filter::And(_)) {
                "1 = 1"
            } else {
                "1 = 0"
            });
        }
        Filter::And(children) | Filter::Or(children) => {
            let joiner = if matches!(filter, Filter::And(_)) {
                " AND "
            } else {
                " OR "
            };
            sql.push("(");
            for (index, child) in children.iter().enumerate() {
                if index > 0 {
                    sql.push(joiner);
                }
                push_condition(sql, child, fields);
            }
            sql.push(")");
        }
        Filter::Present(field) => match column_of(fields, field) {
            Some(column) => {
                sql.push(&format!("{} IS NOT NULL", column.name()));
            }
            None => {
                sql.push("1 = 0");
            }
        },
        Filter::Comparison { field, op, value } => match column_of(fields, field) {
            Some(column) => push_comparison(sql, column.name(), *op, value),
            None => {
                sql.push("1 = 0");
            }
        },
    }
}

fn push_comparison(sql: &mut Sql, column: &str, op: ComparisonOp, value: &Literal) {
    let text = match value {
        Literal::Null if op == ComparisonOp::Eq => {
            sql.push(&format!("{column} IS NULL"));
            return;
        }
        Literal::String(text) => fold_string(text),
        // The columns hold strings only, and kinds never mix.
        _ => {
            sql.push("1 = 0");
            return;
        }
    };
    sql.push(&format!("({column} IS NOT NULL AND {column}"));
    match op {
        ComparisonOp::Eq => sql.push(" = ").bind_text(text),
        ComparisonOp::Gt => sql.push(" > ").bind_text(text),
        ComparisonOp::Ge => sql.push(" >= ").bind_text(text),
        ComparisonOp::Lt => sql.push(" < ").bind_text(text),
        ComparisonOp::Le => sql.push(" <= ").bind_text(text),
        ComparisonOp::Co => sql
            .push(" LIKE ")
            .bind_text(format!("%{}%", like_escape(&text)))
            .push(" ESCAPE '\\'"),
        ComparisonOp::Sw => match prefix_successor(&text) {
            Some(successor) => sql
                .push(" >= ")
                .bind_text(text)
                .push(&format!(" AND {column} < "))
                .bind_text(successor),
            None => sql.push(" >= ").bind_text(text),
        },
    };
    sql.push(")");
}

/// Missing values last in either direction, then storage order in the direction of the last
/// key.
fn push_order(sql: &mut Sql, query: &AuditQuery<'_>) {
    sql.push(" ORDER BY ");
    for key in query.sort {
        if let Some(column) = column_of(query.fields, &key.field) {
            let name = column.name();
            let direction = if key.ascending { "ASC" } else { "DESC" };
            sql.push(&format!("{name} IS NULL, {name} {direction}, "));
        }
    }
    sql.push(if last_ascending(query.sort) {
        "pk ASC"
    } else {
        "pk DESC"
    });
}

fn last_ascending(sort: &[SortKey]) -> bool {
    sort.last().is_none_or(|key| key.ascending)
}

/// The rows after the cookie's row in the query's order.
fn push_after(sql: &mut Sql, query: &AuditQuery<'_>, cookie: &Cookie<String>) {
    let keys: Vec<(Option<&str>, bool, Option<&String>)> = query
        .sort
        .iter()
        .zip(&cookie.k)
        .map(|(key, last)| {
            (
                column_of(query.fields, &key.field).map(AuditColumn::name),
                key.ascending,
                last.as_ref(),
            )
        })
        .collect();
    sql.push("(");
    for position in 0..=keys.len() {
        if position > 0 {
            sql.push(" OR ");
        }
        sql.push("(1 = 1");
        // Equal on every earlier key…
        for (column, _, last) in &keys[..position] {
            match (column, last) {
                (Some(column), Some(value)) => {
                    sql.push(&format!(" AND {column} = ")).bind_text(value.as_str());
                }
                (Some(column), None) => {
                    sql.push(&format!(" AND {column} IS NULL"));
                }
                (None, _) => {}
            }
        }
        // …and after it on this one (a missing value is last: nothing comes after it).
        match keys.get(position) {
            Some((Some(column), ascending, Some(value))) => {
                let op = if *ascending { ">" } else { "<" };
                sql.push(&format!(" AND ({column} IS NULL OR {column} {op} "))
                    .bind_text(value.as_str())
                    .push(")");
            }
            Some(_) => {
                sql.push(" AND 1 = 0");
            }
            None => {
                let op = if last_ascending(query.sort) { ">" } else { "<" };
                sql.push(&format!(" AND pk {op} ")).bind_i64(cookie.p);
            }
        }
        sql.push(")");
    }
    sql.push(")");
}
