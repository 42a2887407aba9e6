//! Differential tests: random filters and sorts over random objects. The SQL answer must equal
//! the core's in-memory evaluator (and the reference sort order) on every backend, and a paged
//! walk with cookies must visit every match exactly once, in order.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::cmp::Ordering;

use ferridm_core::filter::{self, ComparisonOp, Filter, Literal};
use ferridm_core::query::SortKey;
use ferridm_core::{JsonPointer, Object};
use ferridm_store::testing::TestDatabase;
use ferridm_store::{IndexSpec, Indexed, NewObject, ObjectQuery, ObjectUpdate, Store, StoreOptions};
use proptest::prelude::*;
use serde_json::{Value, json};

const FIELDS: [&str; 10] = [
    "name", "age", "tags", "admin", "nested/x", "nested/y", "tags/0", "_id", "missing", "nested",
];

/// Long strings around the index key's length (256 characters; longer strings are keyed by
/// their first 257 and compared whole beside the key), agreeing on long prefixes.
fn long_strings() -> Vec<String> {
    let x = |n: usize| "x".repeat(n);
    vec![
        x(256),
        x(257),
        x(300),
        format!("{}a", x(300)),
        format!("{}B", x(300)),
        format!("{}b%", x(300)),
        format!("{}émile", x(255)),
        format!("{}Zed", x(100)),
        format!("w{}", x(400)),
    ]
}

fn string_value() -> impl Strategy<Value = Value> {
    let short = [
        "alice", "Alice", "al", "ALBERT", "bob", "BOB", "", "b\"ob", "a%b", "a_b", "Émile", "zed",
    ]
    .map(str::to_owned);
    prop::sample::select([short.to_vec(), long_strings()].concat()).prop_map(|s| json!(s))
}

fn scalar_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        string_value(),
        (-3i64..40).prop_map(|n| json!(n)),
        prop::sample::select(vec![2.5f64, 30.0, -0.5]).prop_map(|f| json!(f)),
        any::<bool>().prop_map(|b| json!(b)),
        Just(Value::Null),
    ]
}

fn field_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        2 => Just(None),
        4 => scalar_value().prop_map(Some),
        2 => prop::collection::vec(scalar_value(), 0..4).prop_map(|items| Some(Value::Array(items))),
    ]
}

fn object_strategy() -> impl Strategy<Value = Object> {
    (
        field_value(),
        field_value(),
        field_value(),
        field_value(),
        field_value(),
        field_value(),
    )
        .prop_map(|(name, age, tags, admin, x, y)| {
            let mut object = Object::new();
            for (key, value) in [("name", name), ("age", age), ("tags", tags), ("admin", admin)] {
                if let Some(value) = value {
                    object.insert(key.to_owned(), value);
                }
            }
            if x.is_some() || y.is_some() {
                let mut nested = Object::new();
                if let Some(x) = x {
                    nested.insert("x".into(), x);
                }
                if let Some(y) = y {
                    nested.insert("y".into(), y);
                }
                object.insert("nested".into(), Value::Object(nested));
            }
            object
        })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        prop::sample::select(
            [
                [
                    "alice", "AL", "a", "b", "", "bob", "\"", "%", "_", "émile", "id-3", "ID-1"
                ]
                .map(str::to_owned)
                .to_vec(),
                long_strings(),
                vec![
                    "X".repeat(200),
                    format!("{}B", "x".repeat(299)),
                    "xa".to_owned(),
                    "b%".to_owned()
                ],
            ]
            .concat()
        )
        .prop_map(Literal::String),
        (-3i64..40).prop_map(Literal::Integer),
        prop::sample::select(vec![2.5f64, 30.0, -0.5]).prop_map(Literal::Float),
        any::<bool>().prop_map(Literal::Boolean),
        Just(Literal::Null),
    ]
}

/// Every comparison operator the index answers.
const OPERATORS: [ComparisonOp; 7] = [
    ComparisonOp::Eq,
    ComparisonOp::Co,
    ComparisonOp::Sw,
    ComparisonOp::Gt,
    ComparisonOp::Ge,
    ComparisonOp::Lt,
    ComparisonOp::Le,
];

fn leaf() -> impl Strategy<Value = Filter> {
    let field = prop::sample::select(FIELDS.to_vec()).prop_map(JsonPointer::parse);
    let op = prop::sample::select(OPERATORS.to_vec());
    prop_oneof![
        6 => (field.clone(), op, literal()).prop_map(|(field, op, value)| Filter::Comparison { field, op, value }),
        1 => field.prop_map(Filter::Present),
        1 => Just(Filter::True),
        1 => Just(Filter::False),
    ]
}

fn filter_strategy() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::And),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::Or),
            inner.prop_map(|child| Filter::Not(Box::new(child))),
        ]
    })
}

fn sort_strategy() -> impl Strategy<Value = Vec<SortKey>> {
    prop::collection::vec(
        (prop::sample::select(FIELDS.to_vec()), any::<bool>()).prop_map(|(field, ascending)| SortKey {
            field: JsonPointer::parse(field),
            ascending,
        }),
        0..3,
    )
}

/// The comparable form of a value for sorting: the value itself, or an array's smallest scalar.
/// Strings sort by their first 257 characters (README: values that agree on all of them stay
/// in creation order).
fn sort_key(value: Option<&Value>) -> Option<(i16, f64, String)> {
    fn scalar(value: &Value) -> Option<(i16, f64, String)> {
        match value {
            Value::Bool(b) => Some((1, f64::from(u8::from(*b)), String::new())),
            Value::Number(n) => Some((2, n.as_f64().unwrap(), String::new())),
            Value::String(s) => Some((3, 0.0, s.to_lowercase().chars().take(257).collect())),
            _ => None,
        }
    }
    fn order(a: &(i16, f64, String), b: &(i16, f64, String)) -> Ordering {
        a.0.cmp(&b.0)
            .then(a.1.partial_cmp(&b.1).unwrap())
            .then_with(|| a.2.as_bytes().cmp(b.2.as_bytes()))
    }
    match value? {
        Value::Array(items) => items.iter().filter_map(scalar).min_by(order),
        other => scalar(other),
    }
}

fn reference_order(objects: &[(usize, Value)], keys: &[SortKey]) -> Vec<String> {
    let mut sorted: Vec<&(usize, Value)> = objects.iter().collect();
    sorted.sort_by(|(ia, a), (ib, b)| {
        for key in keys {
            let (ka, kb) = (sort_key(key.field.get(a)), sort_key(key.field.get(b)));
            let ordering = match (ka, kb) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(ka), Some(kb)) => {
                    let natural =
                        ka.0.cmp(&kb.0)
                            .then(ka.1.partial_cmp(&kb.1).unwrap())
                            .then_with(|| ka.2.as_bytes().cmp(kb.2.as_bytes()));
                    if key.ascending { natural } else { natural.reverse() }
                }
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        // Ties: creation order, in the direction of the last sort key.
        if keys.last().is_none_or(|key| key.ascending) {
            ia.cmp(ib)
        } else {
            ib.cmp(ia)
        }
    });
    sorted
        .iter()
        .map(|(_, object)| object["_id"].as_str().unwrap().to_owned())
        .collect()
}

fn run_query(
    store: &Store,
    index: &IndexSpec,
    filter: &Filter,
    sort: &[SortKey],
    page: Option<u32>,
    cookie: Option<&str>,
    count: bool,
) -> ferridm_store::QueryPage {
    store
        .query(&ObjectQuery {
            object_type: "thing",
            filter,
            sort,
            page_size: page,
            offset: 0,
            cookie,
            count,
            with_content: true,
            limit: 10_000,
            index,
            time_limit: None,
        })
        .unwrap()
}

/// `base` with the members of `top` written over it, merging objects both hold.
fn overlay(base: &Object, top: &Object) -> Object {
    let mut blend = base.clone();
    for (key, value) in top {
        let merged = match (blend.get(key), value) {
            (Some(Value::Object(under)), Value::Object(over)) => Value::Object(overlay(under, over)),
            _ => value.clone(),
        };
        blend.insert(key.clone(), merged);
    }
    blend
}

/// How much the index holds: its rule for the type, and (when not everything) what its rows
/// are complete for.
struct Indexing {
    index: IndexSpec,
    coverage: Option<Indexed>,
}

impl Indexing {
    /// Every property, as before the index followed the schema.
    fn everything() -> Self {
        Self {
            index: IndexSpec::default(),
            coverage: None,
        }
    }

    /// Every way a query can be answered: from the index alone, with `age`, `admin` and
    /// `nested` left out by the rule (read from the objects), and with every property indexed
    /// but only `tags` complete (a rule that is still being applied).
    fn all() -> [Self; 3] {
        let only = |keys: &[&str]| Indexed::Only(keys.iter().map(|key| (*key).to_owned()).collect());
        [
            Self::everything(),
            Self {
                index: IndexSpec {
                    indexed: only(&["name", "tags"]),
                    ..IndexSpec::default()
                },
                coverage: None,
            },
            Self {
                index: IndexSpec::default(),
                coverage: Some(only(&["tags"])),
            },
        ]
    }
}

/// Stores `objects` (the first ones as updates of `earlier` objects, so that the index rows an
/// update rewrites are checked too) and compares every query's answer with the evaluator's.
fn check_backend(
    database: &TestDatabase,
    indexing: &Indexing,
    (earlier, objects): (&[Object], &[Object]),
    filters: &[Filter],
    sorts: &[Vec<SortKey>],
    page: u32,
) {
    let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
    let spec = &indexing.index;
    if let Some(coverage) = &indexing.coverage {
        assert!(store.replace_index_coverage("thing", &Indexed::All, coverage).unwrap());
    }
    let mut documents = Vec::new();
    for (index, content) in objects.iter().enumerate() {
        let id = format!("ID-{index}");
        let first = earlier.get(index).unwrap_or(content);
        let created = store
            .insert(NewObject {
                object_type: "thing",
                id: &id,
                content: first,
                meta: &Object::new(),
                index: spec,
            })
            .unwrap();
        if index < earlier.len() {
            // First to a blend of the two (so that some values, nested ones too, stay as they
            // were and others change), then to the object itself.
            let blend = overlay(first, content);
            let mut rev = created.rev;
            for step in [&blend, content] {
                let update = ObjectUpdate {
                    content: step,
                    meta: None,
                    index: spec,
                };
                rev = store.update("thing", &id, rev, update).unwrap().rev;
            }
        }
        let mut document = content.clone();
        document.insert("_id".into(), json!(id));
        documents.push((index, Value::Object(document)));
    }
    for (filter, sort) in filters.iter().zip(sorts) {
        let matching: Vec<(usize, Value)> = documents
            .iter()
            .filter(|(_, document)| filter::matches(filter, document))
            .cloned()
            .collect();
        let expected = reference_order(&matching, sort);
        let page_all = run_query(&store, spec, filter, sort, None, None, true);
        let got: Vec<String> = page_all.objects.iter().map(|o| o.id.clone()).collect();
        assert_eq!(
            got,
            expected,
            "{:?} {:?} filter `{filter}` sort {sort:?}",
            database.backend(),
            indexing.index.indexed,
        );
        assert_eq!(page_all.total, Some(expected.len() as u64));
        // Walk the same result in pages, without a count (so a scan in creation order stops
        // at each full page).
        let mut walked = Vec::new();
        let mut cookie: Option<String> = None;
        for _ in 0..=expected.len() + 1 {
            let result = run_query(&store, spec, filter, sort, Some(page), cookie.as_deref(), false);
            walked.extend(result.objects.iter().map(|o| o.id.clone()));
            cookie = result.cookie;
            if cookie.is_none() {
                break;
            }
        }
        assert_eq!(
            walked,
            expected,
            "{:?} {:?} paged walk of `{filter}` sort {sort:?}",
            database.backend(),
            indexing.index.indexed,
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sql_answers_equal_the_in_memory_evaluator(
        objects in prop::collection::vec(object_strategy(), 0..24),
        earlier in prop::collection::vec(object_strategy(), 0..12),
        filters in prop::collection::vec(filter_strategy(), 12),
        sorts in prop::collection::vec(sort_strategy(), 12),
        page in 1u32..5,
    ) {
        for indexing in Indexing::all() {
            for database in TestDatabase::all() {
                check_backend(&database, &indexing, (&earlier, &objects), &filters, &sorts, page);
            }
        }
    }
}

/// Every comparison of every long (and near-long) string against every other, on `name` and
/// inside an array: the key alone cannot answer them, so these pin the exact comparisons.
#[test]
fn long_strings_compare_exactly() {
    let strings: Vec<String> = [long_strings(), vec!["xa".into(), "b%".into(), "X".repeat(200)]].concat();
    let objects: Vec<Object> = strings
        .iter()
        .map(|text| {
            let mut object = Object::new();
            object.insert("name".into(), json!(text));
            object.insert("tags".into(), json!(["short", text]));
            object
        })
        .collect();
    let mut filters = Vec::new();
    for field in ["name", "tags"] {
        for op in OPERATORS {
            for text in &strings {
                filters.push(Filter::Comparison {
                    field: JsonPointer::parse(field),
                    op,
                    value: Literal::String(text.to_uppercase()),
                });
            }
        }
    }
    let sorts = vec![
        vec![SortKey {
            field: JsonPointer::parse("name"),
            ascending: true
        }];
        filters.len()
    ];
    for indexing in Indexing::all() {
        for database in TestDatabase::all() {
            check_backend(&database, &indexing, (&[], &objects), &filters, &sorts, 3);
        }
    }
}

/// A page sorted on one key is read from the matches when they are few (each one's sort row
/// looked up) and by walking the key's rows otherwise: enough objects for both, filters on either
/// side of the bound (a thousand index rows), arrays holding a value twice (two index rows, one
/// match: `tags eq "once"` has 1,600 rows for 800 objects), both directions and creation order,
/// whole and in pages.
#[test]
fn sorted_pages_agree_for_few_and_many_matches() {
    let objects: Vec<Object> = (0..1200usize)
        .map(|index| {
            let mut object = Object::new();
            object.insert("name".into(), json!(format!("n{:04}", (index * 7919) % 1200)));
            let tags = if index % 3 == 0 {
                json!(["Twice", "twice"])
            } else {
                json!(["once", "ONCE", "x"])
            };
            object.insert("tags".into(), tags);
            object
        })
        .collect();
    let filters: Vec<Filter> = [
        r#"name sw "n""#,
        r#"name sw "n01""#,
        r#"tags eq "twice""#,
        r#"tags eq "once""#,
        r#"tags eq "twice" and name lt "n0100""#,
        r#"name eq "n0042""#,
    ]
    .iter()
    .map(|text| filter::parse(text).unwrap())
    .collect();
    // Creation order too: an equality with a string is read by joining the objects to its rows.
    for sort in [Some(true), Some(false), None] {
        let keys: Vec<SortKey> = sort
            .map(|ascending| SortKey {
                field: JsonPointer::parse("name"),
                ascending,
            })
            .into_iter()
            .collect();
        let sorts = vec![keys; filters.len()];
        for database in TestDatabase::all() {
            check_backend(
                &database,
                &Indexing::everything(),
                (&[], &objects),
                &filters,
                &sorts,
                97,
            );
        }
    }
}
