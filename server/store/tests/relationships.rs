//! Edges between objects on every available backend: written with an object or on their own,
//! read from either end, one edge per pair however it was granted, removed with either object.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::sync::Barrier;

use ferridm_core::Object;
use ferridm_core::filter::Filter;
use ferridm_core::query::SortKey;
use ferridm_store::testing::TestDatabase;
use ferridm_store::{Edge, EdgeTarget, IndexSpec, NewObject, ObjectQuery, RelationshipSet, Store, StoreOptions};
use serde_json::{Value, json};

fn object(value: Value) -> Object {
    value.as_object().cloned().unwrap()
}

fn insert(store: &Store, object_type: &str, id: &str, relationships: &[RelationshipSet]) {
    store
        .insert_related(
            NewObject {
                object_type,
                id,
                content: &object(json!({"name": id})),
                meta: &Object::new(),
                index: &IndexSpec::default(),
            },
            relationships,
        )
        .unwrap();
}

fn roles(targets: &[&str]) -> RelationshipSet {
    RelationshipSet {
        property: "roles".into(),
        reverse: Some("members".into()),
        reverse_single: false,
        targets: targets
            .iter()
            .map(|id| EdgeTarget {
                collection: "managed/role".into(),
                id: (*id).to_owned(),
                properties: Object::new(),
            })
            .collect(),
    }
}

fn members(targets: &[&str]) -> RelationshipSet {
    RelationshipSet {
        property: "members".into(),
        reverse: Some("roles".into()),
        reverse_single: false,
        targets: targets
            .iter()
            .map(|id| EdgeTarget {
                collection: "managed/user".into(),
                id: (*id).to_owned(),
                properties: object(json!({"grantedBy": "test"})),
            })
            .collect(),
    }
}

/// The far ends of what `property` of the objects `ids` holds, as `owner -> collection/id`.
fn ends(store: &Store, collection: &str, ids: &[&str], property: &str) -> Vec<String> {
    let mut ends: Vec<String> = store
        .edges(collection, ids, &[property])
        .unwrap()
        .into_iter()
        .map(|edge| format!("{} -> {}/{}", edge.owner_id, edge.collection, edge.target_id))
        .collect();
    ends.sort();
    ends
}

/// One page of `object_type` (`page_size` at a time from `cookie`, counted) with the edges
/// `properties` hold: the page's ids, its edges, and the next page's cookie.
fn page_with_edges(
    store: &Store,
    object_type: &str,
    sort: &[SortKey],
    cookie: Option<&str>,
    with_content: bool,
    properties: &[&str],
) -> (Vec<String>, Vec<Edge>, Option<String>) {
    let (page, edges) = store
        .query_with_edges(
            &ObjectQuery {
                object_type,
                filter: &Filter::True,
                sort,
                page_size: Some(2),
                offset: 0,
                cookie,
                count: true,
                with_content,
                limit: 100,
                index: &IndexSpec::default(),
                time_limit: None,
            },
            properties,
        )
        .unwrap();
    let ids = page.objects.into_iter().map(|object| object.id).collect();
    (ids, edges, page.cookie)
}

#[test]
fn a_query_page_carries_the_edges_of_its_objects_and_of_no_others() {
    for database in TestDatabase::all() {
        let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
        insert(&store, "role", "admin", &[]);
        insert(&store, "role", "staff", &[]);
        insert(&store, "role", "empty", &[]);
        insert(&store, "user", "alice", &[roles(&["admin", "staff"])]);
        insert(&store, "user", "bob", &[roles(&["staff"])]);
        insert(&store, "user", "dave", &[roles(&["admin"])]);
        insert(&store, "user", "carol", &[]);
        let expected = |collection: &str, ids: &[&str], property: &str| {
            let edges = store.edges(collection, ids, &[property]).unwrap();
            assert!(!edges.is_empty() || ids.contains(&"empty"));
            edges
        };

        // In creation order (objects and edges in one statement, on both backends): the object
        // read ahead to tell whether more follow (dave) brings none of its edges.
        let (ids, edges, cookie) = page_with_edges(&store, "user", &[], None, true, &["roles"]);
        assert_eq!(ids, ["alice", "bob"]);
        assert_eq!(edges, expected("managed/user", &["alice", "bob"], "roles"));
        assert_eq!(edges.len(), 3);
        assert!(edges.iter().all(|edge| edge.owner_id != "dave"));
        let (ids, edges, last) = page_with_edges(&store, "user", &[], cookie.as_deref(), true, &["roles"]);
        assert_eq!(ids, ["dave", "carol"]);
        assert_eq!(edges, expected("managed/user", &["dave"], "roles"));
        assert_eq!(last, None);
        // Ids only, and the edges all the same.
        let (ids, edges, _) = page_with_edges(&store, "user", &[], None, false, &["roles", "manager"]);
        assert_eq!(ids, ["alice", "bob"]);
        assert_eq!(edges, expected("managed/user", &["alice", "bob"], "roles"));
        // No property named: no edges.
        let (ids, edges, _) = page_with_edges(&store, "user", &[], None, true, &[]);
        assert_eq!((ids.len(), edges.len()), (2, 0));
        // The role's side of the same edges (the stored direction's other end).
        let (ids, edges, cookie) = page_with_edges(&store, "role", &[], None, true, &["members"]);
        assert_eq!(ids, ["admin", "staff"]);
        assert_eq!(edges, expected("managed/role", &["admin", "staff"], "members"));
        assert_eq!(edges.len(), 4);
        let (ids, edges, _) = page_with_edges(&store, "role", &[], cookie.as_deref(), true, &["members"]);
        assert_eq!((ids, edges.len()), (vec!["empty".to_owned()], 0));

        // Sorted on a property (the edges read after the page, on the same connection).
        let by_name = [SortKey {
            field: ferridm_core::JsonPointer::parse("name"),
            ascending: false,
        }];
        let (ids, edges, _) = page_with_edges(&store, "user", &by_name, None, true, &["roles"]);
        assert_eq!(ids, ["dave", "carol"]);
        assert_eq!(edges, expected("managed/user", &["dave", "carol"], "roles"));
    }
}

#[test]
fn edges_written_with_an_object_are_read_from_both_ends_and_go_with_it() {
    for database in TestDatabase::all() {
        let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
        insert(&store, "role", "admin", &[]);
        insert(&store, "role", "staff", &[]);
        insert(&store, "user", "alice", &[roles(&["admin", "staff"])]);
        insert(&store, "user", "bob", &[roles(&["staff"])]);

        assert_eq!(
            ends(&store, "managed/user", &["alice", "bob"], "roles"),
            [
                "alice -> managed/role/admin",
                "alice -> managed/role/staff",
                "bob -> managed/role/staff"
            ]
        );
        assert_eq!(
            ends(&store, "managed/role", &["staff"], "members"),
            ["staff -> managed/user/alice", "staff -> managed/user/bob"]
        );
        assert!(ends(&store, "managed/user", &["alice"], "manager").is_empty());

        // An object and its edges in one read; the edges as `edges` gives them.
        let (alice, edges) = store
            .get_with_edges("user", "alice", &["roles", "manager"])
            .unwrap()
            .unwrap();
        assert_eq!(alice.id, "alice");
        assert_eq!(Value::Object(alice.content), json!({"name": "alice"}));
        assert_eq!(
            edges,
            store.edges("managed/user", &["alice"], &["roles", "manager"]).unwrap()
        );
        assert_eq!(edges.len(), 2);
        let (_, none) = store.get_with_edges("user", "alice", &[]).unwrap().unwrap();
        assert!(none.is_empty());
        assert!(store.get_with_edges("user", "nobody", &["roles"]).unwrap().is_none());
        assert!(store.get_with_edges("role", "alice", &["roles"]).unwrap().is_none());

        // Granting from the role's side what the user's side already holds adds nothing, and
        // sets the edge's own properties (a new edge revision).
        let before = store.edges("managed/user", &["bob"], &["roles"]).unwrap();
        assert!(
            store
                .set_edges("managed/role", "staff", &[members(&["alice", "bob"])])
                .unwrap()
        );
        let after = store.edges("managed/user", &["bob"], &["roles"]).unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].id, before[0].id, "the same edge");
        assert_ne!(after[0].rev, before[0].rev);
        assert_eq!(Value::Object(after[0].properties.clone()), json!({"grantedBy": "test"}));
        assert!(
            !store
                .set_edges("managed/role", "staff", &[members(&["alice", "bob"])])
                .unwrap()
        );

        // Revoking from the role's side is seen from the user's.
        assert!(
            store
                .set_edges("managed/role", "staff", &[members(&["alice"])])
                .unwrap()
        );
        assert!(ends(&store, "managed/user", &["bob"], "roles").is_empty());

        // Deleting the role takes its edges with it.
        let role = store.get("role", "admin").unwrap().unwrap();
        store.delete("role", "admin", role.rev).unwrap();
        assert_eq!(
            ends(&store, "managed/user", &["alice"], "roles"),
            ["alice -> managed/role/staff"]
        );
    }
}

#[test]
fn concurrent_grants_of_one_role_from_both_sides_leave_one_edge() {
    for database in TestDatabase::all() {
        let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
        insert(&store, "role", "staff", &[]);
        insert(&store, "user", "alice", &[]);
        for round in 0..10 {
            let barrier = Barrier::new(4);
            std::thread::scope(|scope| {
                for writer in 0..4 {
                    let (store, barrier) = (&store, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        if writer % 2 == 0 {
                            store.set_edges("managed/user", "alice", &[roles(&["staff"])]).unwrap();
                        } else {
                            store
                                .set_edges("managed/role", "staff", &[members(&["alice"])])
                                .unwrap();
                        }
                    });
                }
            });
            assert_eq!(
                store.edges("managed/user", &["alice"], &["roles"]).unwrap().len(),
                1,
                "round {round} on {:?}",
                database.backend()
            );
            store.set_edges("managed/user", "alice", &[roles(&[])]).unwrap();
            assert!(
                store
                    .edges("managed/role", &["staff"], &["members"])
                    .unwrap()
                    .is_empty()
            );
        }
    }
}

#[test]
fn a_one_way_edge_is_read_only_from_its_owner() {
    for database in TestDatabase::all() {
        let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
        let authz = RelationshipSet {
            property: "authzRoles".into(),
            reverse: None,
            reverse_single: false,
            targets: vec![EdgeTarget {
                collection: "internal/role".into(),
                id: "openidm-authorized".into(),
                properties: Object::new(),
            }],
        };
        insert(&store, "user", "alice", &[authz]);
        assert_eq!(
            ends(&store, "managed/user", &["alice"], "authzRoles"),
            ["alice -> internal/role/openidm-authorized"]
        );
        assert!(
            store
                .edges("internal/role", &["openidm-authorized"], &[""])
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn a_create_returns_the_edges_its_object_has_as_they_are_read() {
    for database in TestDatabase::all() {
        let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
        insert(&store, "role", "admin", &[]);
        insert(&store, "role", "staff", &[]);
        let create = |id: &str, relationships: &[RelationshipSet]| {
            store
                .insert_related(
                    NewObject {
                        object_type: "user",
                        id,
                        content: &object(json!({"name": id})),
                        meta: &Object::new(),
                        index: &IndexSpec::default(),
                    },
                    relationships,
                )
                .unwrap()
                .1
        };
        let written = create("carol", &[roles(&["admin", "staff"])]);
        assert_eq!(written.len(), 2);
        assert_eq!(written, store.edges("managed/user", &["carol"], &["roles"]).unwrap());
        assert!(create("erin", &[]).is_empty());

        // An edge another writer made to the object before it existed is not written again:
        // the create answers the edges as stored, that one with its own id.
        insert(&store, "role", "ops", &[members(&["dave"])]);
        let made_before = store.edges("managed/role", &["ops"], &["members"]).unwrap();
        let written = create("dave", &[roles(&["ops", "admin"])]);
        assert_eq!(written, store.edges("managed/user", &["dave"], &["roles"]).unwrap());
        assert_eq!(written.len(), 2);
        assert!(
            written
                .iter()
                .any(|edge| edge.id == made_before[0].id && edge.target_id == "ops")
        );
    }
}
