//! Edges between objects on every available backend: written with an object or on their own,
//! read from either end, one edge per pair however it was granted, removed with either object.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::sync::Barrier;

use ferridm_core::Object;
use ferridm_store::testing::TestDatabase;
use ferridm_store::{EdgeTarget, IndexSpec, NewObject, RelationshipSet, Store, StoreOptions};
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
