//! The object repository on every available backend: inserts, conditional writes, uniqueness,
//! metadata and login counting.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use ferridm_core::{Object, Revision};
use ferridm_store::testing::TestDatabase;
use ferridm_store::{
    IndexLimitExceeded, IndexSpec, Indexed, MAX_ARRAY_ITEMS, MAX_DEPTH, MAX_INDEX_ROWS, MAX_POINTER_BYTES, NewObject,
    ObjectUpdate, Store, StoreError, StoreOptions, StoredObject,
};
use serde_json::{Value, json};

fn object(value: Value) -> Object {
    value.as_object().cloned().unwrap()
}

fn spec() -> IndexSpec {
    IndexSpec {
        hidden: vec!["password".into()],
        unique: vec!["userName".into()],
        ..IndexSpec::default()
    }
}

fn on_every_backend(test: impl Fn(&Store)) {
    for database in TestDatabase::all() {
        let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
        test(&store);
    }
}

fn insert(store: &Store, id: &str, content: Value) -> Result<ferridm_store::StoredObject, StoreError> {
    let content = object(content);
    store.insert(NewObject {
        object_type: "user",
        id,
        content: &content,
        meta: &object(json!({"createDate": "2026-01-01T00:00:00.000Z"})),
        index: &spec(),
    })
}

#[test]
fn insert_then_get_returns_the_object() {
    on_every_backend(|store| {
        let created = insert(store, "bjensen", json!({"userName": "bjensen", "sn": "Jensen"})).unwrap();
        let read = store.get("user", "bjensen").unwrap().unwrap();
        assert_eq!(read.rev, created.rev);
        assert_eq!(read.content, object(json!({"userName": "bjensen", "sn": "Jensen"})));
        assert_eq!(read.meta.get("loginCount"), Some(&json!(0)));
        assert_eq!(read.meta.get("createDate"), Some(&json!("2026-01-01T00:00:00.000Z")));
        assert!(store.get("user", "nobody").unwrap().is_none());
        assert!(store.get("role", "bjensen").unwrap().is_none());
    });
}

#[test]
fn duplicate_ids_and_unique_values_are_refused_and_store_nothing() {
    on_every_backend(|store| {
        insert(store, "a", json!({"userName": "Alice"})).unwrap();
        assert!(matches!(
            insert(store, "a", json!({"userName": "x"})),
            Err(StoreError::AlreadyExists)
        ));
        // Neither its index rows nor its unique value were written.
        assert!(found(store, "/userName eq \"x\"").is_empty());
        insert(store, "x", json!({"userName": "x"})).unwrap();
        let taken = insert(store, "b", json!({"userName": "ALICE"}));
        assert!(matches!(taken, Err(StoreError::UniqueViolation { ref property }) if property == "userName"));
        assert!(store.get("user", "b").unwrap().is_none());
        insert(store, "c", json!({"userName": "carol"})).unwrap();
    });
}

#[test]
fn updates_need_the_current_revision_and_move_it_on() {
    on_every_backend(|store| {
        let created = insert(store, "u", json!({"userName": "u1"})).unwrap();
        let content = object(json!({"userName": "u2"}));
        let update = ObjectUpdate {
            content: &content,
            meta: None,
            index: &spec(),
        };
        let updated = store.update("user", "u", created.rev, update).unwrap();
        assert_ne!(updated.rev, created.rev);
        assert!(matches!(
            store.update("user", "u", created.rev, update),
            Err(StoreError::RevisionMismatch)
        ));
        assert!(matches!(
            store.update("user", "missing", created.rev, update),
            Err(StoreError::NotFound)
        ));
        // The old unique value is free again, the new one is taken.
        insert(store, "v", json!({"userName": "u1"})).unwrap();
        assert!(matches!(
            insert(store, "w", json!({"userName": "u2"})),
            Err(StoreError::UniqueViolation { .. })
        ));
    });
}

#[test]
fn delete_needs_the_current_revision_and_returns_the_object() {
    on_every_backend(|store| {
        let created = insert(store, "d", json!({"userName": "d"})).unwrap();
        let stale = Revision::initial(1).next(2);
        assert!(matches!(
            store.delete("user", "d", stale),
            Err(StoreError::RevisionMismatch)
        ));
        let deleted = store.delete("user", "d", created.rev).unwrap();
        assert_eq!(deleted.content, created.content);
        assert!(store.get("user", "d").unwrap().is_none());
        assert!(matches!(
            store.delete("user", "d", created.rev),
            Err(StoreError::NotFound)
        ));
        insert(store, "d2", json!({"userName": "d"})).unwrap();
    });
}

#[test]
fn login_counts_and_metadata_change_without_a_new_revision() {
    on_every_backend(|store| {
        let created = insert(store, "m", json!({"userName": "m"})).unwrap();
        assert_eq!(store.increment_login_count("user", "m").unwrap(), 1);
        assert_eq!(store.increment_login_count("user", "m").unwrap(), 2);
        let changed = store
            .update_meta("user", "m", &spec(), |meta| {
                meta.insert("termsAccepted".into(), json!({"termsVersion": "1"}));
            })
            .unwrap();
        assert_eq!(changed.rev, created.rev);
        let read = store.get("user", "m").unwrap().unwrap();
        assert_eq!(read.meta.get("loginCount"), Some(&json!(2)));
        assert_eq!(read.meta.get("termsAccepted"), Some(&json!({"termsVersion": "1"})));
        assert!(matches!(
            store.increment_login_count("user", "zz"),
            Err(StoreError::NotFound)
        ));
    });
}

#[test]
fn concurrent_updates_with_the_same_revision_let_exactly_one_win() {
    on_every_backend(|store| {
        let created = insert(store, "race", json!({"userName": "race"})).unwrap();
        let wins = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    scope.spawn(move || {
                        let content = object(json!({"userName": "race", "n": i}));
                        store
                            .update(
                                "user",
                                "race",
                                created.rev,
                                ObjectUpdate {
                                    content: &content,
                                    meta: None,
                                    index: &spec(),
                                },
                            )
                            .is_ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|won| *won)
                .count()
        });
        assert_eq!(wins, 1);
    });
}

#[test]
fn writers_in_two_stores_on_one_database_all_land() {
    // Two stores are two servers on one database: on SQLite their writers cannot share the
    // in-process writer lock, so each write transaction must take the lock up front and wait.
    for database in TestDatabase::all() {
        let stores = [
            Store::open(database.url(), &StoreOptions::default()).unwrap(),
            Store::open(database.url(), &StoreOptions::default()).unwrap(),
        ];
        insert(&stores[0], "shared", json!({"userName": "shared"})).unwrap();
        std::thread::scope(|scope| {
            for (s, store) in stores.iter().enumerate() {
                for t in 0..4 {
                    scope.spawn(move || {
                        for n in 0..20 {
                            let id = format!("w{s}-{t}-{n}");
                            let created = insert(store, &id, json!({"userName": id})).unwrap();
                            store.increment_login_count("user", "shared").unwrap();
                            // An update reads the row before it writes: the case a deferred
                            // transaction loses to a writer in the other store.
                            let content = object(json!({"userName": id, "touched": true}));
                            let update = ObjectUpdate {
                                content: &content,
                                meta: None,
                                index: &spec(),
                            };
                            store.update("user", &id, created.rev, update).unwrap();
                        }
                    });
                }
            }
        });
        let shared = stores[1].get("user", "shared").unwrap().unwrap();
        assert_eq!(shared.meta.get("loginCount"), Some(&json!(160)));
        for s in 0..2 {
            for t in 0..4 {
                for n in 0..20 {
                    let stored = stores[0].get("user", &format!("w{s}-{t}-{n}")).unwrap().unwrap();
                    assert_eq!(stored.content.get("touched"), Some(&json!(true)));
                }
            }
        }
    }
}

#[test]
fn concurrent_writes_all_land_and_a_failing_one_undoes_only_its_own() {
    // On SQLite, concurrent writes share transactions (a group commit): each must still be all
    // or nothing on its own, whatever the writes it shared a transaction with did.
    on_every_backend(|store| {
        insert(store, "owner", json!({"userName": "taken"})).unwrap();
        std::thread::scope(|scope| {
            for t in 0..16 {
                scope.spawn(move || {
                    for n in 0..30 {
                        let id = format!("c{t}-{n}");
                        if n % 3 == 0 {
                            let refused = insert(store, &id, json!({"userName": "Taken", "sn": id}));
                            assert!(
                                matches!(refused, Err(StoreError::UniqueViolation { ref property }) if property == "userName"),
                                "{refused:?}"
                            );
                        } else {
                            insert(store, &id, json!({"userName": id, "sn": id})).unwrap();
                        }
                    }
                });
            }
        });
        for t in 0..16 {
            for n in 0..30 {
                let id = format!("c{t}-{n}");
                if n % 3 == 0 {
                    assert!(store.get("user", &id).unwrap().is_none(), "{id} was refused");
                    // Nothing of the refused write is left: its id is free.
                    insert(store, &id, json!({"userName": format!("later-{id}")})).unwrap();
                } else {
                    let stored = store.get("user", &id).unwrap().unwrap();
                    assert_eq!(stored.content.get("sn"), Some(&json!(id)));
                    // Its unique value was committed with it.
                    let again = insert(store, &format!("again-{id}"), json!({"userName": id.to_uppercase()}));
                    assert!(matches!(again, Err(StoreError::UniqueViolation { .. })), "{again:?}");
                }
            }
        }
    });
}

#[test]
fn failed_logins_lock_after_the_limit_and_unlock_after_the_lock() {
    use ferridm_store::LockoutRule;
    let rule = LockoutRule {
        max_failures: 3,
        window_ms: 60_000,
        lock_ms: 600_000,
    };
    on_every_backend(|store| {
        let start = 1_000_000;
        assert!(store.login_failure("managed/user/x").unwrap().is_none());
        let attempt = |principal: &str, at: i64| store.begin_login_attempt(principal, at, rule).unwrap();
        assert_eq!(attempt("managed/user/x", start).unwrap().failures, 1);
        assert_eq!(attempt("managed/user/x", start + 1).unwrap().failures, 2);
        let locked = attempt("managed/user/x", start + 2).unwrap();
        assert!(locked.locked_at(start + 3));
        assert!(!locked.locked_at(start + 2 + 600_000));
        let read = store.login_failure("managed/user/x").unwrap().unwrap();
        assert_eq!(read.locked_until, start + 2 + 600_000);
        assert_eq!(read.failures, 3, "administrators see the failures behind a lock");
        assert_eq!(attempt("managed/user/x", start + 3), None, "no attempt while locked");
        assert_eq!(store.login_failure("managed/user/x").unwrap().unwrap().failures, 3);
        // Failures spread wider than the window do not lock...
        for at in [0, 40_000, 80_000, 120_000] {
            let state = attempt("managed/user/y", start + at).unwrap();
            assert!(!state.locked_at(start + at), "failure at +{at} ms must not lock");
        }
        // ...but any three within one window do, whatever came before.
        let state = attempt("managed/user/y", start + 130_000).unwrap();
        assert!(state.locked_at(start + 130_001));
        store.clear_login_failures("managed/user/x").unwrap();
        assert!(store.login_failure("managed/user/x").unwrap().is_none());
    });
}

#[test]
fn concurrent_attempts_are_all_counted_until_the_lock() {
    use ferridm_store::LockoutRule;
    let rule = |max_failures| LockoutRule {
        max_failures,
        window_ms: 60_000,
        lock_ms: 600_000,
    };
    on_every_backend(|store| {
        let race = |principal: &str, max_failures: i64| -> usize {
            std::thread::scope(|scope| {
                let threads: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            (0..5)
                                .filter(|_| {
                                    store
                                        .begin_login_attempt(principal, 5_000, rule(max_failures))
                                        .unwrap()
                                        .is_some()
                                })
                                .count()
                        })
                    })
                    .collect();
                threads.into_iter().map(|thread| thread.join().unwrap()).sum()
            })
        };
        assert_eq!(race("managed/user/c", 1000), 40, "below the limit every attempt counts");
        assert_eq!(store.login_failure("managed/user/c").unwrap().unwrap().failures, 40);
        assert_eq!(race("managed/user/d", 5), 5, "40 racing attempts, 5 allowed");
        assert_eq!(store.login_failure("managed/user/d").unwrap().unwrap().failures, 5);
    });
}

#[test]
fn bulk_inserts_are_all_or_nothing() {
    on_every_backend(|store| {
        let contents: Vec<Object> = (0..3)
            .map(|i| object(json!({"userName": format!("bulk{i}")})))
            .collect();
        let ids = ["b0", "b1", "b2"];
        let meta = Object::new();
        let spec = spec();
        let batch: Vec<NewObject<'_>> = ids
            .iter()
            .zip(&contents)
            .map(|(id, content)| NewObject {
                object_type: "user",
                id,
                content,
                meta: &meta,
                index: &spec,
            })
            .collect();
        assert_eq!(store.insert_many(&batch).unwrap(), 3);
        assert!(store.get("user", "b2").unwrap().is_some());
        let again = store.insert_many(&batch[1..]);
        assert!(matches!(again, Err(StoreError::AlreadyExists)));
        let clash = [NewObject {
            object_type: "user",
            id: "b9",
            content: &contents[0],
            meta: &meta,
            index: &spec,
        }];
        assert!(matches!(
            store.insert_many(&clash),
            Err(StoreError::UniqueViolation { .. })
        ));
        assert!(store.get("user", "b9").unwrap().is_none());
    });
}

#[test]
fn long_strings_are_stored_and_unique_values_compare_whole() {
    on_every_backend(|store| {
        // Far beyond PostgreSQL's B-tree entry limit (2,704 bytes), in multi-byte text too.
        let description = "é".repeat(3_000);
        let long_name = |last: char| format!("{}{last}", "u".repeat(2_047));
        let first = insert(
            store,
            "long-1",
            json!({"userName": long_name('1'), "description": description}),
        )
        .unwrap();
        assert_eq!(first.content["description"], json!(description));
        // Differs from the first only in its last character: not a duplicate.
        insert(store, "long-2", json!({"userName": long_name('2')})).unwrap();
        // The same name in other case is.
        assert!(matches!(
            insert(store, "long-3", json!({"userName": long_name('1').to_uppercase()})),
            Err(StoreError::UniqueViolation { property }) if property == "userName"
        ));
        assert!(store.get("user", "long-3").unwrap().is_none());
        // Once the holder is gone, the value is free again.
        store.delete("user", "long-1", first.rev).unwrap();
        insert(store, "long-3", json!({"userName": long_name('1').to_uppercase()})).unwrap();
    });
}

#[test]
fn objects_beyond_the_index_limits_are_refused_and_store_nothing() {
    on_every_backend(|store| {
        let at_limit: Vec<usize> = (0..MAX_ARRAY_ITEMS).collect();
        let stored = insert(store, "big", json!({"userName": "big", "tags": at_limit})).unwrap();

        let refused = |content: Value| match insert(store, "too-big", content) {
            Err(StoreError::TooLarge(limit)) => limit,
            other => panic!("expected TooLarge, got {other:?}"),
        };
        let over: Vec<usize> = (0..=MAX_ARRAY_ITEMS).collect();
        assert_eq!(
            refused(json!({"prefs": {"list": over}})),
            IndexLimitExceeded::ArrayItems {
                pointer: "/prefs/list".into(),
                items: MAX_ARRAY_ITEMS + 1
            }
        );
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!({"a": deep});
        }
        assert!(matches!(
            refused(json!({"deep": deep})),
            IndexLimitExceeded::Depth { .. }
        ));
        let long_key = "k".repeat(MAX_POINTER_BYTES);
        assert!(matches!(
            refused(json!({ long_key: 1 })),
            IndexLimitExceeded::PointerLength { pointer } if pointer.len() == 64
        ));
        // Each array is within its limit; together they hold more values than one object may.
        let part: Vec<usize> = (0..MAX_ARRAY_ITEMS.min(MAX_INDEX_ROWS / 5)).collect();
        assert_eq!(
            refused(json!({"a": part, "b": part, "c": part})),
            IndexLimitExceeded::Values
        );
        assert!(store.get("user", "too-big").unwrap().is_none());

        // An update beyond the limits leaves the object as it was.
        let update = object(json!({"userName": "big", "tags": over}));
        assert!(matches!(
            store.update(
                "user",
                "big",
                stored.rev,
                ObjectUpdate {
                    content: &update,
                    meta: None,
                    index: &spec()
                }
            ),
            Err(StoreError::TooLarge(IndexLimitExceeded::ArrayItems { .. }))
        ));
        assert_eq!(
            store.get("user", "big").unwrap().unwrap().content["tags"],
            json!(at_limit)
        );
    });
}

/// The ids `filter` finds among users, in creation order.
fn found(store: &Store, filter: &str) -> Vec<String> {
    let filter = ferridm_core::filter::parse(filter).unwrap();
    let page = store
        .query(&ferridm_store::ObjectQuery {
            object_type: "user",
            filter: &filter,
            sort: &[],
            page_size: None,
            offset: 0,
            cookie: None,
            count: false,
            with_content: false,
            limit: 100,
            index: &spec(),
            time_limit: None,
        })
        .unwrap();
    page.objects.into_iter().map(|object| object.id).collect()
}

#[test]
fn an_update_rewrites_the_index_of_what_changed_inside_objects_and_metadata() {
    on_every_backend(|store| {
        let created = insert(
            store,
            "n",
            json!({"userName": "n", "address": {"city": "Oslo", "zip": "0150"}, "tags": ["a", "b"]}),
        )
        .unwrap();
        let mut rev = created.rev;
        let steps = [
            (
                json!({"userName": "n", "address": {"city": "Bergen", "zip": "0150"}, "tags": ["a"]}),
                json!({"createDate": "2026-01-01T00:00:00.000Z", "lastChanged": {"date": "2026-02-01T00:00:00.000Z"}}),
            ),
            (
                json!({"userName": "n", "address": {"zip": "5003"}, "tags": ["a"]}),
                json!({"createDate": "2026-01-01T00:00:00.000Z", "lastChanged": {"date": "2026-03-01T00:00:00.000Z"}}),
            ),
            (
                json!({"userName": "n", "address": "none", "tags": ["a"]}),
                json!({"createDate": "2026-01-01T00:00:00.000Z"}),
            ),
        ];
        let mut states = Vec::new();
        for (content, meta) in &steps {
            let (content, meta) = (object(content.clone()), object(meta.clone()));
            let update = ObjectUpdate {
                content: &content,
                meta: Some(&meta),
                index: &spec(),
            };
            rev = store.update("user", "n", rev, update).unwrap().rev;
            states.push((
                found(store, "/address/city eq \"bergen\""),
                found(store, "/address/city pr"),
                found(store, "/address/zip eq \"0150\""),
                found(store, "/address/zip eq \"5003\""),
                found(store, "/address eq \"none\""),
                found(store, "/tags eq \"b\""),
                found(store, "/_meta/lastChanged/date eq \"2026-02-01T00:00:00.000Z\""),
                found(store, "/_meta/lastChanged/date eq \"2026-03-01T00:00:00.000Z\""),
                found(store, "/_meta/lastChanged pr"),
                found(store, "/_meta/createDate eq \"2026-01-01T00:00:00.000Z\""),
            ));
        }
        let n = || vec!["n".to_owned()];
        let none = Vec::<String>::new;
        assert_eq!(
            states,
            vec![
                (n(), n(), n(), none(), none(), none(), n(), none(), n(), n()),
                (none(), none(), none(), n(), none(), none(), none(), n(), n(), n()),
                (none(), none(), none(), none(), n(), none(), none(), none(), none(), n()),
            ]
        );
    });
}

#[test]
fn an_update_of_the_object_as_read_needs_its_revision_and_keeps_metadata_changed_since() {
    on_every_backend(|store| {
        insert(store, "r", json!({"userName": "r1", "sn": "Old"})).unwrap();
        let read = store.get("user", "r").unwrap().unwrap();
        // Metadata and the login count move on after the read, without a new revision.
        store
            .update_meta("user", "r", &spec(), |meta| {
                meta.insert("termsAccepted".into(), json!({"termsVersion": "2"}));
            })
            .unwrap();
        store.increment_login_count("user", "r").unwrap();
        let content = object(json!({"userName": "r2", "sn": "New"}));
        let update = ObjectUpdate {
            content: &content,
            meta: None,
            index: &spec(),
        };
        let updated = store.update_read("user", &read, update, &[]).unwrap();
        assert_ne!(updated.rev, read.rev);
        let stored = store.get("user", "r").unwrap().unwrap();
        assert_eq!((stored.rev, &stored.content), (updated.rev, &content));
        assert_eq!(stored.meta.get("termsAccepted"), Some(&json!({"termsVersion": "2"})));
        assert_eq!(stored.meta.get("loginCount"), Some(&json!(1)));
        assert_eq!(found(store, "/sn eq \"new\""), vec!["r".to_owned()]);
        assert!(found(store, "/sn eq \"old\"").is_empty());
        assert_eq!(
            found(store, "/_meta/termsAccepted/termsVersion eq \"2\""),
            vec!["r".to_owned()]
        );
        // The read is stale now: refused, and nothing changes.
        let again = object(json!({"userName": "r3"}));
        let stale = ObjectUpdate {
            content: &again,
            meta: None,
            index: &spec(),
        };
        assert!(matches!(
            store.update_read("user", &read, stale, &[]),
            Err(StoreError::RevisionMismatch)
        ));
        assert_eq!(store.get("user", "r").unwrap().unwrap().content, content);
        // So is a stale change of one plain property (one statement on PostgreSQL): its index
        // rows are neither removed nor added.
        let plain = object(json!({"userName": "r1", "sn": "Stale"}));
        let stale_plain = ObjectUpdate {
            content: &plain,
            meta: Some(&object(json!({"lastChanged": {"date": "stale"}}))),
            index: &spec(),
        };
        assert!(matches!(
            store.update_read("user", &read, stale_plain, &[]),
            Err(StoreError::RevisionMismatch)
        ));
        assert_eq!(store.get("user", "r").unwrap().unwrap().content, content);
        assert_eq!(found(store, "/sn eq \"new\""), vec!["r".to_owned()]);
        assert!(found(store, "/sn eq \"stale\"").is_empty());
        assert!(found(store, "/_meta/lastChanged/date eq \"stale\"").is_empty());
        assert_eq!(
            found(store, "/_meta/termsAccepted/termsVersion eq \"2\""),
            vec!["r".to_owned()]
        );
        // The old unique value is free, the new one taken.
        insert(store, "s", json!({"userName": "r1"})).unwrap();
        assert!(matches!(
            insert(store, "t", json!({"userName": "R2"})),
            Err(StoreError::UniqueViolation { .. })
        ));
        // Gone since the read: refused the same way.
        store.delete("user", "r", updated.rev).unwrap();
        let current = StoredObject {
            rev: updated.rev,
            ..read
        };
        assert!(matches!(
            store.update_read("user", &current, stale, &[]),
            Err(StoreError::RevisionMismatch)
        ));
    });
}

/// A rule that indexes some properties writes rows for those alone; reindexing rewrites the
/// rows of stored objects, a page at a time in creation order, for a new rule; the recorded
/// coverage is replaced only from what it still is.
#[test]
fn reindexing_follows_a_new_rule_and_coverage_is_replaced_only_from_what_it_was() {
    let only = |keys: &[&str]| Indexed::Only(keys.iter().map(|key| (*key).to_owned()).collect());
    on_every_backend(|store| {
        let narrow = IndexSpec {
            indexed: only(&["userName"]),
            ..spec()
        };
        for n in 0..3 {
            store
                .insert(NewObject {
                    object_type: "user",
                    id: &format!("u{n}"),
                    content: &object(json!({"userName": format!("user{n}"), "city": "Oslo", "password": "x"})),
                    meta: &Object::new(),
                    index: &narrow,
                })
                .unwrap();
        }
        let narrow_rows = ["/_id", "/_meta", "/_meta/loginCount", "/userName"];
        assert_eq!(store.index_properties("user", "u0"), narrow_rows);
        let wide = IndexSpec {
            indexed: only(&["userName", "city"]),
            ..spec()
        };
        let reindexed = ["/_id", "/_meta", "/_meta/loginCount", "/city", "/userName"];
        let (count, last) = store.reindex_page("user", &wide, i64::MIN, 2).unwrap().unwrap();
        assert_eq!(count, 2);
        assert_eq!(store.index_properties("user", "u1"), reindexed);
        assert_eq!(store.index_properties("user", "u2"), narrow_rows);
        let (count, last) = store.reindex_page("user", &wide, last, 2).unwrap().unwrap();
        assert_eq!(count, 1);
        assert_eq!(store.reindex_page("user", &wide, last, 2).unwrap(), None);
        assert_eq!(store.index_properties("user", "u2"), reindexed);
        // Unique values are written again with the rows.
        assert!(matches!(
            store.insert(NewObject {
                object_type: "user",
                id: "other",
                content: &object(json!({"userName": "USER2"})),
                meta: &Object::new(),
                index: &wide,
            }),
            Err(StoreError::UniqueViolation { .. })
        ));

        assert_eq!(*store.index_coverage("user").unwrap(), Indexed::All);
        assert!(
            store
                .replace_index_coverage("user", &Indexed::All, &only(&["userName"]))
                .unwrap()
        );
        assert!(
            !store
                .replace_index_coverage("user", &Indexed::All, &only(&["city"]))
                .unwrap()
        );
        assert_eq!(*store.index_coverage("user").unwrap(), only(&["userName"]));
        assert!(
            store
                .replace_index_coverage("user", &only(&["userName"]), &only(&["userName", "city"]))
                .unwrap()
        );
        // Read back from the database (a replacement forgets what was cached).
        assert_eq!(*store.index_coverage("user").unwrap(), only(&["userName", "city"]));
    });
}

/// On PostgreSQL, where writers run side by side, an object deleted while a reindexing page
/// reads it gets no index rows back: the page waits for the delete and skips the object, so its
/// unique value is free again. (SQLite runs one write at a time.)
#[test]
fn a_reindexing_page_does_not_write_back_the_rows_of_an_object_deleted_meanwhile() {
    use diesel::connection::SimpleConnection;
    use diesel::sql_types::{Bool, Integer};
    use diesel::{Connection, PgConnection, RunQueryDsl};

    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
    insert(&store, "gone", json!({"userName": "taken"})).unwrap();
    insert(&store, "kept", json!({"userName": "kept"})).unwrap();

    // Another node's delete of `gone`, as `Store::delete` writes it, not yet committed.
    let mut deleter = PgConnection::establish(database.url()).unwrap();
    deleter
        .batch_execute(
            "BEGIN;
             DELETE FROM objects WHERE oid = 'gone';
             DELETE FROM object_props WHERE obj_pk NOT IN (SELECT pk FROM objects);
             DELETE FROM unique_values WHERE obj_pk NOT IN (SELECT pk FROM objects);",
        )
        .unwrap();
    let deleter_pid: i32 = diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()"))
        .get_result(&mut deleter)
        .unwrap();

    std::thread::scope(|scope| {
        let reindexing = scope.spawn(|| store.reindex_page("user", &spec(), i64::MIN, 10).unwrap());
        let mut observer = PgConnection::establish(database.url()).unwrap();
        let waits_for_the_delete =
            format!("EXISTS (SELECT 1 FROM pg_stat_activity WHERE {deleter_pid} = ANY (pg_blocking_pids(pid)))");
        while !diesel::select(diesel::dsl::sql::<Bool>(&waits_for_the_delete))
            .get_result::<bool>(&mut observer)
            .unwrap()
        {
            assert!(!reindexing.is_finished(), "the page did not wait for the delete");
            std::thread::yield_now();
        }
        deleter.batch_execute("COMMIT").unwrap();
        let (count, _) = reindexing.join().unwrap().unwrap();
        assert_eq!(count, 1, "only the object still there is reindexed");
    });
    assert_eq!(
        store.index_properties("user", "kept"),
        ["/_id", "/_meta", "/_meta/createDate", "/_meta/loginCount", "/userName"]
    );
    insert(&store, "again", json!({"userName": "taken"})).unwrap();
}
