//! The property index follows the schema (issue 16): a write indexes the properties
//! `managed.json` marks `searchable` (every property of a type named in `ferridm.json`'s
//! `indexEveryProperty`); queries on the others read the objects and answer exactly the same;
//! a changed rule is applied to the objects stored before it, in the background, while queries
//! stay exact. Every test runs on both backends.

use std::path::Path;
use std::time::Duration;

use ferridm_tests::{TestServer, on_each_backend};
use serde_json::{Value, json};

use crate::profile::save_conf;

/// How long a reload and the reindexing after it may take.
const RELOAD: Duration = Duration::from_secs(30);

/// Users with values in properties the shipped schema does not mark searchable (`city`,
/// `telephoneNumber`, `preferences`), in creation order; their ids.
fn seed(server: &TestServer) -> Vec<String> {
    let people = [
        ("ann", Some("Oslo"), "+47 1"),
        ("ben", Some("bergen"), "+47 2"),
        ("cid", Some("oslo"), "+46 3"),
        ("dee", None, "+47 4"),
        ("eli", Some("Athens"), "+30 5"),
    ];
    people
        .iter()
        .map(|(name, city, phone)| {
            let mut body = json!({"userName": name, "givenName": name, "sn": "Test", "mail": format!("{name}@example.com"),
                "telephoneNumber": phone, "preferences": {"updates": *name == "ben", "marketing": false}});
            if let Some(city) = city {
                body["city"] = json!(city);
            }
            let reply = server.admin().post("/openidm/managed/user?_action=create", &body).send();
            assert_eq!(reply.status, 201, "{}", reply.body);
            reply.body["_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// The user names a query answers, in order, and its total when counted.
fn query(server: &TestServer, parameters: &str) -> (Vec<String>, Value) {
    query_field(server, parameters, "userName")
}

/// `field` of every user a query answers, in order, and its total when counted.
fn query_field(server: &TestServer, parameters: &str, field: &str) -> (Vec<String>, Value) {
    let reply = server
        .admin()
        .get(&format!("/openidm/managed/user?{parameters}"))
        .send();
    assert_eq!(reply.status, 200, "{parameters}: {}", reply.body);
    let values = reply.body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user[field].as_str().unwrap().to_owned())
        .collect();
    (values, reply.body["totalPagedResults"].clone())
}

/// Every user name a query walks to (sorted by `sort`, or in creation order when it is empty),
/// following its cookies `page` at a time.
fn walk(server: &TestServer, filter: &str, sort: &str, page: u32) -> Vec<String> {
    let mut query = format!("_queryFilter={filter}");
    if !sort.is_empty() {
        query.push_str(&format!("&_sortKeys={sort}"));
    }
    walk_field(server, &query, page, "userName")
}

/// `field` of every user the query `query` walks to, following its cookies `page` at a time.
fn walk_field(server: &TestServer, query: &str, page: u32, field: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut cookie: Option<String> = None;
    for _ in 0..20 {
        let mut path = format!("/openidm/managed/user?{query}&_pageSize={page}");
        if let Some(cookie) = &cookie {
            path.push_str(&format!("&_pagedResultsCookie={cookie}"));
        }
        let reply = server.admin().get(&path).send();
        assert_eq!(reply.status, 200, "{}", reply.body);
        for user in reply.body["result"].as_array().unwrap() {
            values.push(user[field].as_str().unwrap().to_owned());
        }
        match reply.body["pagedResultsCookie"].as_str() {
            Some(next) => cookie = Some(next.to_owned()),
            None => return values,
        }
    }
    panic!("the walk of {query} did not end");
}

fn names(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|name| (*name).to_owned()).collect()
}

/// `conf/managed.json` with `searchable` set on the user properties `changes` names.
fn with_searchable(conf: &Path, changes: &[(&str, bool)]) -> String {
    ferridm_tests::managed_with_user(&conf.join("managed.json"), |user| {
        for (property, searchable) in changes {
            user["schema"]["properties"][*property]["searchable"] = json!(searchable);
        }
    })
    .to_string()
}

/// Whether the recorded coverage of the user index is what the running rule indexes (the
/// background reindexing is done).
fn reindexed(server: &TestServer) -> bool {
    let state = server.state();
    let rule = state.generation().managed.get("user").unwrap().index.indexed.clone();
    state
        .store
        .index_coverage("user")
        .is_ok_and(|coverage| *coverage == rule)
}

#[test]
fn a_write_indexes_the_searchable_properties_and_the_metadata() {
    on_each_backend(|builder| {
        let server = builder.start();
        let ids = seed(&server);
        let props = server.state().store.index_properties("user", &ids[0]);
        for indexed in [
            "/_id",
            "/userName",
            "/givenName",
            "/sn",
            "/mail",
            "/accountStatus",
            "/_meta/createDate",
        ] {
            assert!(props.iter().any(|prop| prop == indexed), "{indexed} in {props:?}");
        }
        for left_out in ["/city", "/telephoneNumber", "/preferences", "/preferences/updates"] {
            assert!(!props.iter().any(|prop| prop == left_out), "{left_out} in {props:?}");
        }
        // A patch of a property left out writes no row for it either.
        let patch = json!([{"operation": "replace", "field": "/city", "value": "Rome"}]);
        let reply = server
            .admin()
            .patch(&format!("/openidm/managed/user/{}", ids[0]), &patch)
            .send();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(
            !server
                .state()
                .store
                .index_properties("user", &ids[0])
                .iter()
                .any(|prop| prop == "/city")
        );
    });
}

#[test]
fn queries_on_properties_the_index_leaves_out_answer_exactly() {
    on_each_backend(|builder| {
        let server = builder.start();
        seed(&server);
        let exact = "_totalPagedResultsPolicy=EXACT&_pageSize=10";
        assert_eq!(
            query(&server, &format!("_queryFilter=city%20eq%20%22OSLO%22&{exact}")),
            (names(&["ann", "cid"]), json!(2))
        );
        assert_eq!(
            query(
                &server,
                "_queryFilter=telephoneNumber%20sw%20%22%2B47%22%20and%20!(city%20pr)"
            ),
            (names(&["dee"]), json!(-1))
        );
        // An indexed leaf narrows, the rest is read from the objects.
        assert_eq!(
            query(
                &server,
                "_queryFilter=userName%20eq%20%22ben%22%20and%20preferences/updates%20eq%20true"
            )
            .0,
            names(&["ben"])
        );
        assert_eq!(
            query(
                &server,
                "_queryFilter=userName%20eq%20%22ann%22%20and%20preferences/updates%20eq%20true"
            )
            .0,
            names(&[])
        );
        assert_eq!(
            query(
                &server,
                "_queryFilter=!(city%20eq%20%22oslo%22)%20or%20userName%20eq%20%22ann%22"
            )
            .0,
            names(&["ann", "ben", "dee", "eli"])
        );
        // Sorted by a left-out property, missing values last, ties in creation order; paged
        // by cookies and by offset, counted.
        let sorted = names(&["eli", "ben", "ann", "cid", "dee"]);
        assert_eq!(walk(&server, "true", "city", 2), sorted);
        assert_eq!(
            walk(&server, "true", "-city", 3),
            names(&["cid", "ann", "ben", "eli", "dee"])
        );
        assert_eq!(
            query(
                &server,
                "_queryFilter=true&_sortKeys=city,userName&_pageSize=2&_pagedResultsOffset=2&_totalPagedResultsPolicy=EXACT"
            ),
            (names(&["ann", "cid"]), json!(5))
        );
        // In creation order, a page at a time (a walk that stops at each full page).
        assert_eq!(walk(&server, "city%20pr", "", 1), names(&["ann", "ben", "cid", "eli"]));
    });
}

#[test]
fn a_property_made_searchable_is_indexed_for_the_objects_stored_before() {
    on_each_backend(|builder| {
        let server = builder.start();
        let ids = seed(&server);
        let before = server.state().generation().number;
        save_conf(
            &server,
            "managed.json",
            &with_searchable(&server.conf(), &[("city", true)]),
        );
        server.wait_until(RELOAD, "the new rule to be served", || {
            server.state().generation().number > before
        });
        // Exact while the index is being rewritten and after.
        assert_eq!(
            query(&server, "_queryFilter=city%20eq%20%22oslo%22").0,
            names(&["ann", "cid"])
        );
        server.wait_until(RELOAD, "the stored users to be reindexed", || reindexed(&server));
        for id in &ids[..3] {
            assert!(
                server
                    .state()
                    .store
                    .index_properties("user", id)
                    .iter()
                    .any(|prop| prop == "/city")
            );
        }
        assert_eq!(
            query(&server, "_queryFilter=city%20eq%20%22oslo%22").0,
            names(&["ann", "cid"])
        );
        assert_eq!(
            walk(&server, "true", "city", 2),
            names(&["eli", "ben", "ann", "cid", "dee"])
        );
    });
}

#[test]
fn every_property_is_indexed_for_a_type_the_settings_name_and_the_rows_go_when_they_stop() {
    on_each_backend(|builder| {
        let server = builder
            .edit(|project| {
                let path = project.join("conf").join("ferridm.json");
                let mut settings: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                settings["indexEveryProperty"] = json!(["user"]);
                std::fs::write(path, settings.to_string()).unwrap();
            })
            .start();
        let ids = seed(&server);
        let has = |prop: &str| {
            server
                .state()
                .store
                .index_properties("user", &ids[1])
                .iter()
                .any(|p| p == prop)
        };
        assert!(has("/city") && has("/preferences/updates"));
        let path = server.conf().join("ferridm.json");
        let mut settings: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        settings.as_object_mut().unwrap().remove("indexEveryProperty");
        save_conf(&server, "ferridm.json", &settings.to_string());
        server.wait_until(RELOAD, "the narrower rule to be applied to the stored users", || {
            reindexed(&server) && !has("/city")
        });
        assert!(has("/userName") && !has("/preferences/updates"));
        assert_eq!(
            query(&server, "_queryFilter=city%20eq%20%22oslo%22").0,
            names(&["ann", "cid"])
        );
    });
}

/// `query-all-ids` sorted and paged walks every object once, by the index (`userName`) or by
/// reading the objects (`city`): its cookies carry the sort values of the last object although
/// the page shows ids only.
#[test]
fn an_ids_only_query_sorted_and_paged_walks_every_object() {
    on_each_backend(|builder| {
        let server = builder.start();
        let ids = seed(&server);
        for (sort, order) in [("userName", [0, 1, 2, 3, 4]), ("-city", [2, 0, 1, 4, 3])] {
            let walked = walk_field(&server, &format!("_queryId=query-all-ids&_sortKeys={sort}"), 2, "_id");
            let expected: Vec<String> = order.iter().map(|index: &usize| ids[*index].clone()).collect();
            assert_eq!(walked, expected, "sorted by {sort}");
        }
    });
}

/// `_fields=_id` reads no content (unless an `onRead` trigger is to see it), yet selects, sorts
/// and pages as the same query with every field does, on indexed and left-out properties alike.
#[test]
fn a_query_for_ids_alone_answers_as_the_query_for_everything_does() {
    on_each_backend(|builder| {
        let server = builder.start();
        seed(&server);
        let ids_of = |parameters: &str| query_field(&server, parameters, "_id").0;
        let queries = [
            "_queryFilter=true",
            "_queryFilter=userName%20sw%20%22c%22%20or%20userName%20eq%20%22ann%22",
            "_queryFilter=city%20eq%20%22oslo%22",
            "_queryFilter=telephoneNumber%20sw%20%22%2B47%22%20and%20!(city%20pr)",
            "_queryFilter=userName%20gt%20%22a%22%20and%20preferences/updates%20eq%20false&_sortKeys=-city",
            "_queryFilter=true&_sortKeys=city,-userName&_pageSize=2&_pagedResultsOffset=1",
            "_queryFilter=city%20pr&_pageSize=3",
        ];
        for parameters in queries {
            let everything = ids_of(parameters);
            assert!(!everything.is_empty(), "{parameters}");
            assert_eq!(ids_of(&format!("{parameters}&_fields=_id")), everything, "{parameters}");
        }
        let walked = walk_field(&server, "_queryFilter=city%20pr&_sortKeys=-city&_fields=_id", 2, "_id");
        let expected = walk_field(&server, "_queryFilter=city%20pr&_sortKeys=-city", 2, "_id");
        assert_eq!((walked.len(), &walked), (4, &expected));

        let reply = server
            .admin()
            .get("/openidm/managed/user?_queryFilter=city%20eq%20%22bergen%22&_fields=_id")
            .send();
        let result = reply.body["result"].as_array().unwrap();
        let keys: Vec<&str> = result[0].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!((result.len(), keys), (1, vec!["_id", "_rev"]), "{}", reply.body);
    });
}
