//! Differential tests of filters over relationships: random edges from random objects, random
//! filters mixing relationship leaves (`links/_refResourceId`, `links/_ref`,
//! `links/_refResourceCollection`, `links/_refProperties/<name>`, `links pr`) with ordinary
//! ones. The SQL answer must equal a model of the documented semantics on every backend: a
//! relationship leaf holds when some edge's field satisfies the comparison, strings comparing
//! exactly (byte-wise, case included), an edge property only when it holds a string (for `pr`,
//! any value but null); other literals and other fields below a reference match nothing; `pr`
//! means at least one edge. Ordinary leaves follow the core's in-memory evaluator.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use ferridm_core::filter::{self, ComparisonOp, Filter, Literal};
use ferridm_core::{JsonPointer, Object};
use ferridm_store::testing::TestDatabase;
use ferridm_store::{EdgeTarget, IndexSpec, Indexed, NewObject, ObjectQuery, RelationshipSet, Store, StoreOptions};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The relationship under test.
const LINKS: &str = "links";
/// Ids at the far end: mixed case, `LIKE` wildcards, shared prefixes.
const TARGET_IDS: [&str; 8] = ["p1", "P2", "p_3", "p%4", "q10", "Q", "p", "pa"];
/// Collections at the far end.
const COLLECTIONS: [&str; 2] = ["managed/peer", "managed/Other"];
/// Fields filters name.
const FIELDS: [&str; 10] = [
    "links",
    "links/_ref",
    "links/_refResourceId",
    "links/_refResourceCollection",
    "links/_refProperties",
    "links/_refProperties/kind",
    "links/_refProperties/flag",
    "links/_refProperties/kind/x",
    "links/x",
    "name",
];
/// The properties an edge may carry.
fn edge_properties(choice: usize) -> Object {
    let value = match choice {
        0 => json!({}),
        1 => json!({"kind": "p1"}),
        2 => json!({"kind": "P"}),
        3 => json!({"kind": "pa", "flag": true}),
        4 => json!({"kind": null, "flag": "p"}),
        _ => json!({"kind": 3, "other": {"kind": "p1"}}),
    };
    value.as_object().unwrap().clone()
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

/// The type's index rules: every property indexed, or none but the relationship (so that
/// filters naming `name` are answered by reading the objects and their relationship leaves by
/// the edges).
fn indexes() -> [IndexSpec; 2] {
    let every = IndexSpec {
        relationships: vec![LINKS.to_owned()],
        ..IndexSpec::default()
    };
    let none = IndexSpec {
        indexed: Indexed::Only(Vec::new()),
        ..every.clone()
    };
    [every, none]
}

/// An object: a name and the (collection, id, edge properties) it links to.
type Thing = (Option<String>, Vec<(usize, usize, usize)>);

fn thing_strategy() -> impl Strategy<Value = Thing> {
    (
        prop::option::of(prop::sample::select(vec!["p1", "alice", "P", "q"]).prop_map(str::to_owned)),
        prop::collection::vec((0..COLLECTIONS.len(), 0..TARGET_IDS.len(), 0..6usize), 0..4),
    )
}

/// One edge as the model sees it: the far end and the edge's properties.
type ModelEdge = (&'static str, &'static str, Object);

fn literal() -> impl Strategy<Value = Literal> {
    let strings: Vec<String> = [
        "p1",
        "P1",
        "p",
        "P",
        "p_",
        "p%",
        "_",
        "%",
        "",
        "q",
        "Q",
        "pa",
        "p2",
        "managed/peer/p1",
        "managed/peer/P2",
        "managed/peer/",
        "managed/Other/Q",
        "managed/other",
        "managed/Other",
        "managed",
        "peer",
        "zzz",
    ]
    .map(str::to_owned)
    .to_vec();
    prop_oneof![
        8 => prop::sample::select(strings).prop_map(Literal::String),
        1 => (0i64..3).prop_map(Literal::Integer),
        1 => any::<bool>().prop_map(Literal::Boolean),
        1 => Just(Literal::Null),
    ]
}

fn leaf() -> impl Strategy<Value = Filter> {
    let field = prop::sample::select(FIELDS.to_vec()).prop_map(JsonPointer::parse);
    prop_oneof![
        6 => (field.clone(), prop::sample::select(OPERATORS.to_vec()), literal())
            .prop_map(|(field, op, value)| Filter::Comparison { field, op, value }),
        2 => field.prop_map(Filter::Present),
        1 => Just(Filter::True),
    ]
}

fn filter_strategy() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(3, 10, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::And),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::Or),
            inner.prop_map(|child| Filter::Not(Box::new(child))),
        ]
    })
}

/// One edge's field as the model compares it: a string, or (edge properties) any value.
fn edge_field(rest: &[String], (collection, id, properties): &ModelEdge) -> Option<Value> {
    match rest {
        [] => Some(json!(format!("{collection}/{id}"))),
        [field] => match field.as_str() {
            "_ref" => Some(json!(format!("{collection}/{id}"))),
            "_refResourceId" => Some(json!(id)),
            "_refResourceCollection" => Some(json!(collection)),
            _ => None,
        },
        [properties_field, name] if properties_field == "_refProperties" => properties.get(name).cloned(),
        _ => None,
    }
}

fn exact(actual: &str, op: ComparisonOp, expected: &str) -> bool {
    match op {
        ComparisonOp::Eq => actual == expected,
        ComparisonOp::Co => actual.contains(expected),
        ComparisonOp::Sw => actual.starts_with(expected),
        ComparisonOp::Gt => actual.as_bytes() > expected.as_bytes(),
        ComparisonOp::Ge => actual.as_bytes() >= expected.as_bytes(),
        ComparisonOp::Lt => actual.as_bytes() < expected.as_bytes(),
        ComparisonOp::Le => actual.as_bytes() <= expected.as_bytes(),
    }
}

/// The model: what `filter` says of an object with `document` content and `edges`.
fn model(filter: &Filter, document: &Value, edges: &[ModelEdge]) -> bool {
    let relationship = |field: &JsonPointer| field.first() == Some(LINKS);
    match filter {
        Filter::And(children) => children.iter().all(|child| model(child, document, edges)),
        Filter::Or(children) => children.iter().any(|child| model(child, document, edges)),
        Filter::Not(child) => !model(child, document, edges),
        Filter::Comparison { field, op, value } if relationship(field) => {
            let Literal::String(text) = value else {
                return false;
            };
            let rest = &field.segments()[1..];
            edges
                .iter()
                .filter_map(|edge| edge_field(rest, edge))
                .any(|actual| actual.as_str().is_some_and(|actual| exact(actual, *op, text)))
        }
        Filter::Present(field) if relationship(field) => {
            let rest = &field.segments()[1..];
            edges
                .iter()
                .any(|edge| edge_field(rest, edge).is_some_and(|value| !value.is_null()))
        }
        other => filter::matches(other, document),
    }
}

fn check_backend(database: &TestDatabase, index: &IndexSpec, things: &[Thing], filters: &[Filter]) {
    let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
    let mut documents = Vec::new();
    for (position, (name, links)) in things.iter().enumerate() {
        let id = format!("T-{position}");
        let mut content = Object::new();
        if let Some(name) = name {
            content.insert("name".into(), json!(name));
        }
        let mut targets: Vec<EdgeTarget> = Vec::new();
        let mut edges: Vec<ModelEdge> = Vec::new();
        for (collection, target, properties) in links {
            let (collection, target) = (COLLECTIONS[*collection], TARGET_IDS[*target]);
            if !targets.iter().any(|t| t.collection == collection && t.id == target) {
                targets.push(EdgeTarget {
                    collection: collection.to_owned(),
                    id: target.to_owned(),
                    properties: edge_properties(*properties),
                });
                edges.push((collection, target, edge_properties(*properties)));
            }
        }
        store
            .insert_related(
                NewObject {
                    object_type: "thing",
                    id: &id,
                    content: &content,
                    meta: &Object::new(),
                    index,
                },
                &[RelationshipSet {
                    property: LINKS.to_owned(),
                    reverse: Some("linkedFrom".to_owned()),
                    reverse_single: false,
                    targets,
                }],
            )
            .unwrap();
        let mut document = content;
        document.insert("_id".into(), json!(id));
        documents.push((id, Value::Object(document), edges));
    }
    for filter in filters {
        let expected: Vec<String> = documents
            .iter()
            .filter(|(_, document, edges)| model(filter, document, edges))
            .map(|(id, _, _)| id.clone())
            .collect();
        let page = store
            .query(&ObjectQuery {
                object_type: "thing",
                filter,
                sort: &[],
                page_size: None,
                offset: 0,
                cookie: None,
                count: false,
                with_content: false,
                limit: 10_000,
                index,
                time_limit: None,
            })
            .unwrap();
        let got: Vec<String> = page.objects.iter().map(|o| o.id.clone()).collect();
        assert_eq!(
            got,
            expected,
            "{:?} {:?} filter `{filter}`",
            database.backend(),
            index.indexed
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn sql_answers_over_relationships_equal_the_model(
        things in prop::collection::vec(thing_strategy(), 0..16),
        filters in prop::collection::vec(filter_strategy(), 16),
    ) {
        for index in indexes() {
            for database in TestDatabase::all() {
                check_backend(&database, &index, &things, &filters);
            }
        }
    }
}

/// Every leaf over every literal, on a fixed set of edges covering every id and collection:
/// pins the exact (case- and wildcard-sensitive) comparisons.
#[test]
fn every_relationship_comparison_is_exact() {
    let things: Vec<Thing> = (0..TARGET_IDS.len())
        .map(|id| (None, vec![(id % COLLECTIONS.len(), id, id % 6)]))
        .chain([(Some("p1".to_owned()), Vec::new())])
        .collect();
    let mut filters = Vec::new();
    for field in FIELDS {
        for op in OPERATORS {
            for text in [
                "p",
                "P",
                "p_",
                "p%",
                "_",
                "",
                "managed/peer/p",
                "managed/Other/Q",
                "managed/other",
            ] {
                filters.push(Filter::Comparison {
                    field: JsonPointer::parse(field),
                    op,
                    value: Literal::String(text.to_owned()),
                });
            }
        }
        filters.push(Filter::Present(JsonPointer::parse(field)));
    }
    for index in indexes() {
        for database in TestDatabase::all() {
            check_backend(&database, &index, &things, &filters);
        }
    }
}
