//! Migrations at open (issue 21, point 1): nodes started at the same instant on a fresh
//! database all come up (one migrates, the others wait for it), a database migrated by a
//! newer ferridm is refused with a clear message instead of being served half-understood,
//! audit events stored as objects by earlier versions move to their own table, and on SQLite
//! that table lives in a file of its own beside the database.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::sync::Barrier;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use ferridm_core::Object;
use ferridm_core::filter::Filter;
use ferridm_store::testing::TestDatabase;
use ferridm_store::{
    AuditColumn, AuditQuery, Backend, IndexSpec, NewAuditEvent, NewObject, Store, StoreError, StoreOptions,
};
use serde_json::json;

/// A connection of this test's own to the SQLite file at `path`. It waits for locks rather
/// than failing at once: a store just dropped may still be closing a connection it was
/// opening in the background, and that close checkpoints the file.
fn sqlite_connection(path: &str) -> diesel::SqliteConnection {
    let mut conn = diesel::SqliteConnection::establish(path).unwrap();
    conn.batch_execute("PRAGMA busy_timeout = 10000").unwrap();
    conn
}

/// Runs `sql` on the database directly.
fn execute(database: &TestDatabase, sql: &str) {
    match database.backend() {
        Backend::Sqlite => {
            let path = database.url().trim_start_matches("sqlite://");
            sqlite_connection(path).batch_execute(sql).unwrap();
        }
        Backend::Postgres => {
            diesel::PgConnection::establish(database.url())
                .unwrap()
                .batch_execute(sql)
                .unwrap();
        }
    }
}

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
        execute(
            &database,
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('2099-01-01-000001')",
        );
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

#[test]
fn audit_events_stored_as_objects_move_to_their_table() {
    for database in TestDatabase::all() {
        // The layout before the audit table: events were objects of type `audit/<topic>`.
        let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
        let access = json!({"timestamp": "2026-12-01T10:00:00.000Z", "eventName": "access", "transactionId": "T-1",
            "userId": "openidm-admin", "request": {"protocol": "CREST", "operation": "READ"},
            "response": {"status": "SUCCESSFUL", "elapsedTime": 3}});
        let authentication = json!({"timestamp": "2026-12-01T10:00:01.000Z", "eventName": "authentication",
            "transactionId": "T-2", "userId": "u-1", "principal": ["Bob"], "result": "FAILED"});
        let user = json!({"userName": "bob"});
        for (object_type, id, content) in [
            ("audit/access", "a-1", &access),
            ("audit/authentication", "n-1", &authentication),
            ("user", "u-1", &user),
        ] {
            store
                .insert(NewObject {
                    object_type,
                    id,
                    content: content.as_object().unwrap(),
                    meta: &Object::new(),
                    index: &IndexSpec::default(),
                })
                .unwrap();
        }
        drop(store);
        // Before the audit table: no `audit_events` (on SQLite it has moved to its own file,
        // empty there) and neither migration applied.
        let forget = "DELETE FROM __diesel_schema_migrations \
             WHERE version LIKE '2026%12%05%000009' OR version LIKE '2026%12%05%000010'";
        match database.backend() {
            Backend::Sqlite => execute(&database, forget),
            Backend::Postgres => execute(&database, &format!("DROP TABLE audit_events; {forget}")),
        }

        let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
        assert_eq!(
            store
                .audit_event("access", "a-1")
                .unwrap()
                .map(serde_json::Value::Object),
            Some(access),
            "{:?}",
            database.backend()
        );
        assert!(store.get("audit/access", "a-1").unwrap().is_none(), "moved, not copied");
        assert!(store.get("user", "u-1").unwrap().is_some(), "managed objects stay");
        let find = |topic, field: &'static str, column, value: &str| {
            let fields = [(field, column)];
            let filter = Filter::Comparison {
                field: ferridm_core::JsonPointer::parse(field),
                op: ferridm_core::filter::ComparisonOp::Eq,
                value: ferridm_core::filter::Literal::String(value.to_owned()),
            };
            let page = store
                .query_audit(&AuditQuery {
                    topic,
                    fields: &fields,
                    filter: &filter,
                    sort: &[],
                    page_size: None,
                    offset: 0,
                    cookie: None,
                    count: false,
                    limit: 10,
                    time_limit: None,
                })
                .unwrap();
            page.events.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
        };
        assert_eq!(
            find("access", "request/operation", AuditColumn::Operation, "read"),
            ["a-1"]
        );
        assert_eq!(
            find("access", "transactionId", AuditColumn::TransactionId, "t-1"),
            ["a-1"]
        );
        assert_eq!(
            find("authentication", "principal", AuditColumn::ObjectId, "BOB"),
            ["n-1"]
        );
        assert_eq!(find("authentication", "result", AuditColumn::Status, "failed"), ["n-1"]);
    }
}

/// Runs `sql` on the SQLite audit file beside `database` and returns the first column of the
/// first row, as text.
fn audit_file_value(database: &TestDatabase, sql: &str) -> String {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    use diesel::RunQueryDsl as _;
    let path = database
        .url()
        .trim_start_matches("sqlite://")
        .replace(".db", "-audit.db");
    let mut conn = sqlite_connection(&path);
    diesel::sql_query(sql).get_result::<Row>(&mut conn).unwrap().value
}

#[test]
fn sqlite_keeps_audit_events_in_a_file_of_its_own() {
    let database = TestDatabase::sqlite();
    let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
    let event = |id| NewAuditEvent {
        topic: "access",
        id,
        body: r#"{"eventName":"access"}"#,
        values: [None; AuditColumn::VALUES.len()],
    };
    store.insert_audit_events(&[event("e-1")]).unwrap();
    drop(store);
    assert_eq!(
        audit_file_value(&database, "SELECT group_concat(event_id) AS value FROM audit_events"),
        "e-1"
    );
    let in_main = || {
        let path = database.url().trim_start_matches("sqlite://");
        let mut conn = sqlite_connection(path);
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        use diesel::RunQueryDsl as _;
        diesel::sql_query("SELECT count(*) AS n FROM sqlite_master WHERE name LIKE 'audit_events%'")
            .get_result::<Count>(&mut conn)
            .unwrap()
            .n
    };
    assert_eq!(in_main(), 0, "no audit table left in the main file");

    // A move cut short (the rows copied, the old table not yet dropped) is finished at the next
    // open, each event kept once.
    execute(
        &database,
        "CREATE TABLE audit_events_moving (pk INTEGER PRIMARY KEY, topic TEXT NOT NULL, event_id TEXT NOT NULL, \
         event_ts TEXT, event_name TEXT, transaction_id TEXT, user_id TEXT, object_id TEXT, operation TEXT, \
         status TEXT, body TEXT NOT NULL); \
         INSERT INTO audit_events_moving (topic, event_id, body) VALUES ('access', 'e-1', '{}'), ('access', 'e-2', '{\"n\":2}');",
    );
    let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
    assert_eq!(
        store
            .audit_event("access", "e-2")
            .unwrap()
            .map(serde_json::Value::Object),
        Some(json!({"n": 2}))
    );
    assert_eq!(
        store
            .audit_event("access", "e-1")
            .unwrap()
            .map(serde_json::Value::Object),
        Some(json!({"eventName": "access"})),
        "the copy already made is kept"
    );
    drop(store);
    assert_eq!(in_main(), 0);
    assert_eq!(
        audit_file_value(&database, "SELECT CAST(count(*) AS TEXT) AS value FROM audit_events"),
        "2"
    );

    // An audit file laid out by a newer ferridm is refused, not written.
    let path = database
        .url()
        .trim_start_matches("sqlite://")
        .replace(".db", "-audit.db");
    sqlite_connection(&path)
        .batch_execute("PRAGMA user_version = 99")
        .unwrap();
    match Store::open(database.url(), &StoreOptions::default()) {
        Err(StoreError::Migration(message)) => assert!(message.contains("newer ferridm"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The bundled SQLite is compiled (`.cargo/config.toml`) without memory statistics (with them,
/// every allocation SQLite makes takes one process-wide mutex, which request threads contend
/// for) and with the query planner stability guarantee (without it, a cached statement whose plan
/// looked at a bound value, such as a join's, is prepared again on every use).
#[test]
fn the_bundled_sqlite_keeps_no_memory_statistics_and_stable_plans() {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        compile_options: String,
    }
    use diesel::RunQueryDsl as _;
    let mut conn = sqlite_connection(":memory:");
    let options: Vec<String> = diesel::sql_query("PRAGMA compile_options")
        .load::<Row>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|row| row.compile_options)
        .collect();
    for expected in ["DEFAULT_MEMSTATUS=0", "ENABLE_QPSG"] {
        assert!(
            options.iter().any(|option| option == expected),
            "{expected} missing: {options:?}"
        );
    }
}
