//! Migrations at open (issue 21, point 1): nodes started at the same instant on a fresh
//! database all come up (one migrates, the others wait for it), and a database migrated by a
//! newer ferridm is refused with a clear message instead of being served half-understood.

use std::sync::Barrier;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use ferridm_core::Object;
use ferridm_store::testing::TestDatabase;
use ferridm_store::{Backend, IndexSpec, NewObject, Store, StoreError, StoreOptions};

#[test]
fn nodes_started_together_on_a_fresh_database_all_come_up() {
    for database in TestDatabase::all() {
        let starts = Barrier::new(4);
        let stores: Vec<Result<Store, StoreError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (starts, url) = (&starts, database.url());
                    scope.spawn(move || {
                        starts.wait();
                        Store::open(url, &StoreOptions::default())
                    })
                })
                .collect();
            handles.into_iter().map(|handle| handle.join().unwrap()).collect()
        });
        for (node, store) in stores.iter().enumerate() {
            let store = store
                .as_ref()
                .unwrap_or_else(|error| panic!("{:?} node {node}: {error}", database.backend()));
            let id = format!("n{node}");
            store
                .insert(NewObject {
                    object_type: "user",
                    id: &id,
                    content: &Object::new(),
                    meta: &Object::new(),
                    index: &IndexSpec::default(),
                })
                .unwrap();
        }
        assert!(stores[0].as_ref().unwrap().get("user", "n3").unwrap().is_some());
    }
}

#[test]
fn a_database_migrated_by_a_newer_ferridm_is_refused() {
    for database in TestDatabase::all() {
        drop(Store::open(database.url(), &StoreOptions::default()).unwrap());
        let future = "INSERT INTO __diesel_schema_migrations (version) VALUES ('2099-01-01-000001')";
        match database.backend() {
            Backend::Sqlite => {
                let path = database.url().trim_start_matches("sqlite://");
                diesel::SqliteConnection::establish(path)
                    .unwrap()
                    .batch_execute(future)
                    .unwrap();
            }
            Backend::Postgres => {
                diesel::PgConnection::establish(database.url())
                    .unwrap()
                    .batch_execute(future)
                    .unwrap();
            }
        }
        match Store::open(database.url(), &StoreOptions::default()) {
            Err(StoreError::Migration(message)) => assert_eq!(
                message,
                "the database was migrated by a newer ferridm (migrations 2099-01-01-000001 are unknown \
                 to this one); run a version that includes them",
                "{:?}",
                database.backend()
            ),
            other => panic!(
                "{:?}: expected a refusal, got {:?}",
                database.backend(),
                other.map(|_| ())
            ),
        }
    }
}
