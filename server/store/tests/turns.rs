//! Turns on one object among the nodes sharing a PostgreSQL database: a turn waits for the one
//! before it, and its connection goes back to the pool ready for the next.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::sync::atomic::{AtomicBool, Ordering};

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use ferridm_store::testing::TestDatabase;
use ferridm_store::{Store, StoreOptions};

/// How many advisory locks sessions of the database are waiting for.
fn waiting_for_advisory_locks(conn: &mut PgConnection) -> i64 {
    diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted)",
    ))
    .get_result(conn)
    .unwrap()
}

#[test]
fn a_turn_waits_for_the_one_before_it_on_another_node() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let node_a = Store::open(database.url(), &StoreOptions::default()).unwrap();
    let node_b = Store::open(database.url(), &StoreOptions::default()).unwrap();
    // Advisory locks are per database, not per schema: an id no other test uses.
    let id = uuid::Uuid::new_v4().to_string();

    // More turns one after another than the turn pool holds connections: each ends its
    // transaction and leaves its connection fit for the next.
    for _ in 0..40 {
        assert!(node_a.object_turn("user", &id).unwrap().is_some());
    }

    let mut observer = PgConnection::establish(database.url()).unwrap();
    let first = node_a.object_turn("user", &id).unwrap().unwrap();
    let released = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let second = scope.spawn(|| {
            let turn = node_b.object_turn("user", &id).unwrap();
            assert!(turn.is_some());
            released.load(Ordering::SeqCst)
        });
        // Node B's turn is queued behind node A's lock…
        while waiting_for_advisory_locks(&mut observer) == 0 {
            assert!(!second.is_finished(), "the second turn did not wait for the first");
        }
        // … and granted once node A's turn ends.
        released.store(true, Ordering::SeqCst);
        drop(first);
        assert!(second.join().unwrap(), "the second turn began before the first ended");
    });
    // Another object's turn never waits for this one.
    let _held = node_a.object_turn("user", &id).unwrap().unwrap();
    assert!(node_b.object_turn("user", &format!("{id}-other")).unwrap().is_some());
}
