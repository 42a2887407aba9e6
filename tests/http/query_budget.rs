//! The time budget of a query (issue 22 point 9, issue 20 point 4): a query that outlives
//! `ferridm.json`'s `queries.timeLimitMillis` is cancelled and answered 503 with IDM's error body,
//! while the same server goes on answering other queries and reads. (That PostgreSQL itself
//! cancels the statement is checked in the store's own tests.)

use ferridm_core::Object;
use ferridm_store::NewObject;
use ferridm_tests::{TestServer, on_each_backend};
use serde_json::{Value, json};

use crate::queries::{enc, users};

/// Users seeded for the heavy query.
const USERS: usize = 10_000;

/// A limit cheap queries keep easily and the heavy query cannot.
const TIGHT_LIMIT_MILLIS: u64 = 100;

fn settings(time_limit_millis: u64) -> Value {
    json!({
        "passwordHashing": {"memoryKib": 256, "iterations": 1, "parallelism": 1},
        "queries": {"timeLimitMillis": time_limit_millis}
    })
}

fn user(i: usize) -> Value {
    json!({
        "userName": format!("budget{i}"),
        "givenName": format!("Given{i}"),
        "sn": format!("Surname{i}"),
        "mail": format!("budget{i}@example.com"),
    })
}

/// Seeds [`USERS`] users straight into the store, indexed as the server indexes users.
fn seed(server: &TestServer) {
    let state = server.state();
    let generation = state.generation();
    let index = &generation.managed.get("user").expect("a user type").index;
    let contents: Vec<(String, Object)> = (0..USERS)
        .map(|i| match user(i) {
            Value::Object(content) => (format!("budget{i}"), content),
            _ => unreachable!("a user is an object"),
        })
        .collect();
    let meta = Object::new();
    let objects: Vec<NewObject<'_>> = contents
        .iter()
        .map(|(id, content)| NewObject {
            object_type: "user",
            id,
            content,
            meta: &meta,
            index,
        })
        .collect();
    assert_eq!(state.store.insert_many(&objects).unwrap(), USERS);
}

/// Every two- to six-letter piece of each seeded value's constant part as a `co` leaf (each
/// scans its property's whole index and matches every user), and with the users whose number
/// holds a 7; paged with an exact count, so every leaf runs twice.
fn heavy_query() -> String {
    let mut leaves = vec![r#"userName co "7""#.to_owned()];
    for (property, constant) in [
        ("userName", "budget"),
        ("givenName", "Given"),
        ("sn", "Surname"),
        ("mail", "@example.com"),
    ] {
        for length in 2..=6 {
            for piece in constant.as_bytes().windows(length) {
                leaves.push(format!(r#"{property} co "{}""#, String::from_utf8_lossy(piece)));
            }
        }
    }
    format!(
        "_queryFilter={}&_pageSize=5&_totalPagedResultsPolicy=EXACT&_fields=_id",
        enc(&leaves.join(" and "))
    )
}

fn heavy_total() -> usize {
    (0..USERS).filter(|i| i.to_string().contains('7')).count()
}

fn set_time_limit(server: &TestServer, millis: u64) {
    let reply = server.admin().put("/openidm/config/ferridm", &settings(millis)).send();
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[test]
fn a_query_past_its_time_limit_is_cancelled_and_the_server_goes_on() {
    on_each_backend(|builder| {
        let server = builder
            .conf_file("ferridm.json", &settings(TIGHT_LIMIT_MILLIS).to_string())
            .start();
        let backend = server.backend();
        seed(&server);

        let heavy = users(&server, &heavy_query());
        assert_eq!(heavy.status, 503, "{backend:?}: {}", heavy.text);
        assert_eq!(
            heavy.body,
            json!({
                "code": 503,
                "reason": "Service Unavailable",
                "message": format!("The query exceeded its time limit of {TIGHT_LIMIT_MILLIS} ms"),
            }),
            "{backend:?}"
        );

        // Under the same limit, the same server answers a cheap query and a read by id.
        let cheap = users(
            &server,
            &format!("_queryFilter={}&_fields=userName", enc(r#"userName eq "budget7""#)),
        );
        assert_eq!(cheap.status, 200, "{backend:?}: {}", cheap.text);
        assert_eq!(cheap.body["result"][0]["userName"], "budget7", "{backend:?}");
        assert_eq!(cheap.body["resultCount"], 1, "{backend:?}");
        let read = server.admin().get("/openidm/managed/user/budget7").send();
        assert_eq!(read.status, 200, "{backend:?}: {}", read.text);
        assert_eq!(read.body["mail"], "budget7@example.com", "{backend:?}");

        // Without a limit, the same heavy query runs to its end.
        set_time_limit(&server, 0);
        let unlimited = users(&server, &heavy_query());
        assert_eq!(unlimited.status, 200, "{backend:?}: {}", unlimited.text);
        assert_eq!(unlimited.body["totalPagedResults"], heavy_total(), "{backend:?}");
        assert_eq!(unlimited.body["resultCount"], 5, "{backend:?}");
    });
}
