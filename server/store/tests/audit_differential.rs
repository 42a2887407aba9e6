//! Audit queries against the reference: random filters and sorts over random events of one
//! topic. The SQL answer over `audit_events` must equal the core's in-memory evaluator over the
//! events (with missing values sorted last and ties in storage order), on every backend; a paged
//! walk with cookies must visit every match exactly once, in order; events of another topic
//! never show.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::cmp::Ordering;

use ferridm_core::filter::{self, ComparisonOp, Filter, Literal};
use ferridm_core::query::SortKey;
use ferridm_core::{JsonPointer, Object};
use ferridm_store::testing::TestDatabase;
use ferridm_store::{AuditColumn, AuditFields, AuditQuery, NewAuditEvent, Store, StoreOptions};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The queryable fields of the test topic, one per column (a nested one and a one-element
/// array among them).
const FIELDS: &AuditFields = &[
    ("timestamp", AuditColumn::Timestamp),
    ("eventName", AuditColumn::EventName),
    ("transactionId", AuditColumn::TransactionId),
    ("userId", AuditColumn::UserId),
    ("principal", AuditColumn::ObjectId),
    ("request/operation", AuditColumn::Operation),
    ("status", AuditColumn::Status),
];

fn string_value() -> impl Strategy<Value = String> {
    prop::sample::select(
        [
            "alice",
            "Alice",
            "al",
            "ALBERT",
            "bob",
            "",
            "b\"ob",
            "a%b",
            "a_b",
            "Émile",
            "zed",
            "2026-12-04T10:00:00Z",
        ]
        .map(str::to_owned)
        .to_vec(),
    )
}

/// A field's value: missing, JSON null or a string (audit events hold strings there).
fn field_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(Value::Null)),
        5 => string_value().prop_map(|text| Some(json!(text))),
    ]
}

fn event_strategy() -> impl Strategy<Value = Object> {
    prop::collection::vec(field_value(), FIELDS.len()).prop_map(|values| {
        let mut event = Object::new();
        for ((name, _), value) in FIELDS.iter().zip(values) {
            let Some(value) = value else { continue };
            match *name {
                // IDM's principal: an array of one name.
                "principal" if value.is_string() => {
                    event.insert((*name).to_owned(), json!([value]));
                }
                "principal" => {}
                "request/operation" => {
                    event.insert("request".to_owned(), json!({"operation": value, "protocol": "CREST"}));
                }
                _ => {
                    event.insert((*name).to_owned(), value);
                }
            }
        }
        event.insert("elapsedTime".to_owned(), json!(7));
        event
    })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        6 => prop::sample::select(
            ["alice", "AL", "a", "b", "", "bob", "\"", "%", "_", "émile", "2026", "ZED", "z"]
                .map(str::to_owned)
                .to_vec()
        )
        .prop_map(Literal::String),
        1 => (-3i64..3).prop_map(Literal::Integer),
        1 => any::<bool>().prop_map(Literal::Boolean),
        1 => Just(Literal::Null),
    ]
}

const OPERATORS: [ComparisonOp; 7] = [
    ComparisonOp::Eq,
    ComparisonOp::Co,
    ComparisonOp::Sw,
    ComparisonOp::Gt,
    ComparisonOp::Ge,
    ComparisonOp::Lt,
    ComparisonOp::Le,
];

fn field() -> impl Strategy<Value = JsonPointer> {
    let names: Vec<&str> = FIELDS.iter().map(|(name, _)| *name).chain(["_id"]).collect();
    prop::sample::select(names).prop_map(JsonPointer::parse)
}

fn filter_strategy() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        6 => (field(), prop::sample::select(OPERATORS.to_vec()), literal())
            .prop_map(|(field, op, value)| Filter::Comparison { field, op, value }),
        1 => field().prop_map(Filter::Present),
        1 => Just(Filter::True),
        1 => Just(Filter::False),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::And),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::Or),
            inner.prop_map(|child| Filter::Not(Box::new(child))),
        ]
    })
}

fn sort_strategy() -> impl Strategy<Value = Vec<SortKey>> {
    prop::collection::vec(
        (field(), any::<bool>()).prop_map(|(field, ascending)| SortKey { field, ascending }),
        0..3,
    )
}

/// The sort value of a field: its lower-cased string (the one string of an array).
fn sort_value(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.to_lowercase()),
        Value::Array(items) => items.first().and_then(Value::as_str).map(str::to_lowercase),
        _ => None,
    }
}

fn reference_order(events: &[(usize, Value)], keys: &[SortKey]) -> Vec<String> {
    let mut sorted: Vec<&(usize, Value)> = events.iter().collect();
    sorted.sort_by(|(ia, a), (ib, b)| {
        for key in keys {
            let ordering = match (sort_value(key.field.get(a)), sort_value(key.field.get(b))) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(ka), Some(kb)) if key.ascending => ka.as_bytes().cmp(kb.as_bytes()),
                (Some(ka), Some(kb)) => kb.as_bytes().cmp(ka.as_bytes()),
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        if keys.last().is_none_or(|key| key.ascending) {
            ia.cmp(ib)
        } else {
            ib.cmp(ia)
        }
    });
    sorted
        .iter()
        .map(|(_, event)| event["_id"].as_str().unwrap().to_owned())
        .collect()
}

/// An event's values of the columns, in the store's column order, read from the event as the
/// server does (a string, or the one string of a one-element array).
fn column_values(event: &Object) -> [Option<String>; AuditColumn::VALUES.len()] {
    let mut values: [Option<String>; AuditColumn::VALUES.len()] = Default::default();
    for (name, column) in FIELDS {
        let slot = AuditColumn::VALUES
            .iter()
            .position(|candidate| candidate == column)
            .unwrap();
        values[slot] = match JsonPointer::parse(name).get_in(event) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Array(items)) if items.len() == 1 => items[0].as_str().map(str::to_owned),
            _ => None,
        };
    }
    values
}

fn run_query(
    store: &Store,
    filter: &Filter,
    sort: &[SortKey],
    page_size: Option<u32>,
    cookie: Option<&str>,
) -> ferridm_store::AuditPage {
    store
        .query_audit(&AuditQuery {
            topic: "test",
            fields: FIELDS,
            filter,
            sort,
            page_size,
            offset: 0,
            cookie,
            count: true,
            limit: 10_000,
            time_limit: None,
        })
        .unwrap()
}

fn check_backend(database: &TestDatabase, events: &[Object], filters: &[Filter], sorts: &[Vec<SortKey>], page: u32) {
    let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
    let mut documents = Vec::new();
    let mut stored = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let mut document = event.clone();
        document.insert("_id".into(), json!(format!("id-{index:03}")));
        stored.push(document.clone());
        documents.push((index, Value::Object(document)));
    }
    let ids: Vec<String> = (0..events.len()).map(|index| format!("id-{index:03}")).collect();
    let texts: Vec<String> = stored.iter().map(|body| serde_json::to_string(body).unwrap()).collect();
    let values: Vec<_> = stored.iter().map(column_values).collect();
    // Each event also goes in under another topic, which no query of "test" may return.
    let rows: Vec<NewAuditEvent<'_>> = texts
        .iter()
        .zip(&ids)
        .zip(&values)
        .flat_map(|((body, id), values)| {
            ["test", "other"].map(|topic| NewAuditEvent {
                topic,
                id,
                body,
                values: values.each_ref().map(Option::as_deref),
            })
        })
        .collect();
    store.insert_audit_events(&rows).unwrap();
    for (filter, sort) in filters.iter().zip(sorts) {
        let matching: Vec<(usize, Value)> = documents
            .iter()
            .filter(|(_, document)| filter::matches(filter, document))
            .cloned()
            .collect();
        let expected = reference_order(&matching, sort);
        let all = run_query(&store, filter, sort, None, None);
        let got: Vec<String> = all.events.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(
            got,
            expected,
            "{:?} filter `{filter}` sort {sort:?}",
            database.backend()
        );
        assert_eq!(all.total, Some(expected.len() as u64));
        for (id, body) in &all.events {
            assert_eq!(body.get("_id"), Some(&json!(id)), "the stored event comes back whole");
        }
        let mut walked = Vec::new();
        let mut cookie: Option<String> = None;
        for _ in 0..=expected.len() + 1 {
            let result = run_query(&store, filter, sort, Some(page), cookie.as_deref());
            walked.extend(result.events.iter().map(|(id, _)| id.clone()));
            cookie = result.cookie;
            if cookie.is_none() {
                break;
            }
        }
        assert_eq!(
            walked,
            expected,
            "{:?} paged walk of `{filter}` sort {sort:?}",
            database.backend()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn audit_queries_equal_the_in_memory_evaluator(
        events in prop::collection::vec(event_strategy(), 0..14),
        filters in prop::collection::vec(filter_strategy(), 6),
        sorts in prop::collection::vec(sort_strategy(), 6),
        page in 1u32..4,
    ) {
        for database in TestDatabase::all() {
            check_backend(&database, &events, &filters, &sorts, page);
        }
    }
}

#[test]
fn an_event_is_read_by_topic_and_id_and_a_cookie_of_another_query_is_refused() {
    for database in TestDatabase::all() {
        let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
        let body: Object = serde_json::from_value(json!({"_id": "e-1", "userId": "Bob", "status": "SUCCESS"})).unwrap();
        let text = serde_json::to_string(&body).unwrap();
        let values = column_values(&body);
        let event = |topic| NewAuditEvent {
            topic,
            id: "e-1",
            body: &text,
            values: values.each_ref().map(Option::as_deref),
        };
        store.insert_audit_events(&[event("test")]).unwrap();
        assert_eq!(store.audit_event("test", "e-1").unwrap(), Some(body.clone()));
        assert_eq!(store.audit_event("other", "e-1").unwrap(), None);
        assert_eq!(store.audit_event("test", "E-1").unwrap(), None, "ids are exact");
        assert!(
            store.insert_audit_events(&[event("test")]).is_err(),
            "an id is stored once per topic"
        );
        let query = |cookie| AuditQuery {
            topic: "test",
            fields: FIELDS,
            filter: &Filter::True,
            sort: &[],
            page_size: Some(1),
            offset: 0,
            cookie,
            count: false,
            limit: 10,
            time_limit: None,
        };
        for cookie in ["not base64 ✗", "e30", "eyJrIjpbbnVsbF0sInAiOjF9"] {
            assert!(
                matches!(
                    store.query_audit(&query(Some(cookie))),
                    Err(ferridm_store::StoreError::InvalidCookie)
                ),
                "{cookie}"
            );
        }
    }
}
