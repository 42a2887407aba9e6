//! The CREST layer on managed objects (idm-api.md §1, §2, §4): how methods and conditional
//! headers map to operations (upsert, If-Match / If-None-Match, If-Modified-Since), every PATCH
//! operation through both `PATCH` and `POST ?_action=patch`, patch by query, conditional
//! deletes, the response envelope (`_id`/`_rev` first, `ETag`, `Location`, `_fields`,
//! `_prettyPrint`), private and virtual properties, and the collection-path and unknown-path
//! refusals.

use ferridm_tests::{Reply, TestServer, on_each_backend, unique};
use serde_json::{Value, json};

use crate::crud::{assert_rev, content_of, count, keys, put_new, user_body, user_with};

fn user_path(id: &str) -> String {
    format!("/openidm/managed/user/{id}")
}

// ----- PUT: upsert, If-Match, If-None-Match ---------------------------------------------------

#[test]
fn put_without_conditions_creates_then_updates() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("upsert");
        let created = server
            .admin()
            .put(&user_path(&id), &user_with(&id, &json!({"description": "one"})))
            .send();
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(created.body["_id"], id.as_str());
        assert_eq!(created.body["description"], "one");
        let first = assert_rev(&created.body["_rev"]);
        assert!(created.header("location").is_some(), "a create carries Location");

        let updated = server
            .admin()
            .put(&user_path(&id), &user_with(&id, &json!({"description": "two"})))
            .send();
        assert_eq!(updated.status, 200, "{}", updated.text);
        assert_eq!(updated.body["_id"], id.as_str());
        assert_eq!(updated.body["description"], "two");
        assert_ne!(assert_rev(&updated.body["_rev"]), first);
        assert_eq!(updated.header("location"), None, "an update carries no Location");
        assert_eq!(
            count(&server, "true"),
            1,
            "the second PUT did not create another object"
        );
    });
}

#[test]
fn put_with_if_match_updates_only_the_current_revision() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("ifmatch");
        let created = put_new(&server, &id, &user_body(&id));
        let first = assert_rev(&created.body["_rev"]);

        // The current revision, quoted as an entity tag.
        let updated = server
            .admin()
            .put(&user_path(&id), &user_with(&id, &json!({"description": "quoted"})))
            .header("If-Match", &format!("\"{first}\""))
            .send();
        assert_eq!(updated.status, 200, "{}", updated.text);
        let second = assert_rev(&updated.body["_rev"]);
        assert_ne!(second, first);

        // The current revision, bare.
        let again = server
            .admin()
            .put(&user_path(&id), &user_with(&id, &json!({"description": "bare"})))
            .header("If-Match", &second)
            .send();
        assert_eq!(again.status, 200, "{}", again.text);
        let third = assert_rev(&again.body["_rev"]);

        // A stale revision.
        let stale = server
            .admin()
            .put(&user_path(&id), &user_with(&id, &json!({"description": "stale"})))
            .header("If-Match", &first)
            .send();
        assert_eq!(
            stale.assert_error(412),
            format!(
                "Update rejected as current Object revision {third} is different than expected by caller ({first}), \
                 the object has changed since retrieval."
            )
        );
        let read = server.admin().get(&user_path(&id)).send();
        assert_eq!(read.body["description"], "bare");
        assert_eq!(read.body["_rev"], third.as_str());

        // `*` is unconditional.
        let star = server
            .admin()
            .put(&user_path(&id), &user_with(&id, &json!({"description": "star"})))
            .header("If-Match", "*")
            .send();
        assert_eq!(star.status, 200, "{}", star.text);
        assert_eq!(star.body["description"], "star");
    });
}

#[test]
fn put_with_if_match_star_on_a_missing_id_is_404() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("missing");
        let reply = server
            .admin()
            .put(&user_path(&id), &user_body(&id))
            .header("If-Match", "*")
            .send();
        assert_eq!(
            reply.assert_error(404),
            format!("Object managed/user/{id} not found in managed/user")
        );
        assert_eq!(count(&server, "true"), 0);
    });
}

#[test]
fn put_with_if_match_and_if_none_match_is_412() {
    let server = TestServer::start();
    let id = unique("both");
    let reply = server
        .admin()
        .put(&user_path(&id), &user_body(&id))
        .header("If-Match", "*")
        .header("If-None-Match", "*")
        .send();
    assert_eq!(
        reply.assert_error(412),
        "Simultaneous use of If-Match and If-None-Match not supported for PUT requests"
    );
    assert_eq!(count(&server, "true"), 0);
}

#[test]
fn put_with_if_none_match_other_than_star_is_400() {
    let server = TestServer::start();
    let id = unique("inm");
    let reply = server
        .admin()
        .put(&user_path(&id), &user_body(&id))
        .header("If-None-Match", "\"3\"")
        .send();
    // The message quotes the value, and quotes are HTML-escaped.
    assert_eq!(
        reply.assert_error(400),
        "&quot;3&quot; is not a supported value for If-None-Match on PUT"
    );
    assert_eq!(count(&server, "true"), 0);
}

#[test]
fn put_whose_body_id_differs_from_the_url_is_400() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("keep");
        let other = unique("other");
        let created = put_new(&server, &id, &user_body(&id));
        let rev = assert_rev(&created.body["_rev"]);
        for if_match in ["*", rev.as_str()] {
            let mut body = user_with(&id, &json!({"description": "renamed?"}));
            body["_id"] = json!(other);
            let reply = server
                .admin()
                .put(&user_path(&id), &body)
                .header("If-Match", if_match)
                .send();
            reply.assert_error(400);
        }
        assert_eq!(server.admin().get(&user_path(&id)).send().body, created.body);
        server.admin().get(&user_path(&other)).send().assert_error(404);
        assert_eq!(count(&server, "true"), 1);
    });
}

// ----- POST create ----------------------------------------------------------------------------

#[test]
fn post_without_action_creates() {
    on_each_backend(|builder| {
        let server = builder.start();
        let name = unique("noaction");
        let reply = server.admin().post("/openidm/managed/user", &user_body(&name)).send();
        assert_eq!(reply.status, 201, "{}", reply.text);
        let id = reply.body["_id"].as_str().expect("_id");
        assert!(
            uuid::Uuid::parse_str(id).is_ok() && id.len() == 36,
            "server-assigned id: {id}"
        );
        assert_eq!(reply.body["userName"], name.as_str());
        assert_eq!(server.admin().get(&user_path(id)).send().body, reply.body);
    });
}

/// Server-assigned object and edge ids are UUIDs of version 7: ordered by creation, so the
/// indexes keyed by them grow at their end (a random id costs a random index page per write).
#[test]
fn server_assigned_ids_are_uuids_in_creation_order() {
    on_each_backend(|builder| {
        let server = builder.start();
        let mut previous: Option<uuid::Uuid> = None;
        for n in 0..3 {
            let reply = server
                .admin()
                .post(
                    "/openidm/managed/user?_action=create",
                    &user_body(&unique(&format!("ordered{n}"))),
                )
                .send();
            assert_eq!(reply.status, 201, "{}", reply.text);
            let id = uuid::Uuid::parse_str(reply.body["_id"].as_str().expect("_id")).expect("a UUID");
            assert_eq!(id.get_version_num(), 7, "object id {id}");
            assert!(previous.is_none_or(|previous| previous < id), "{previous:?} then {id}");
            previous = Some(id);
            let read = server
                .admin()
                .get(&format!("{}?_fields=authzRoles", user_path(&id.to_string())))
                .send();
            let edge = read.body["authzRoles"][0]["_refProperties"]["_id"]
                .as_str()
                .unwrap_or_else(|| panic!("an authzRoles edge: {}", read.text));
            let edge = uuid::Uuid::parse_str(edge).expect("a UUID");
            assert_eq!(edge.get_version_num(), 7, "edge id {edge}");
        }
    });
}

#[test]
fn the_create_action_is_matched_case_insensitively() {
    let server = TestServer::start();
    for (n, query) in ["_action=CREATE", "_ACTION=create", "_Action=Create"]
        .into_iter()
        .enumerate()
    {
        let name = unique(&format!("case{n}"));
        let reply = server
            .admin()
            .post(&format!("/openidm/managed/user?{query}"), &user_body(&name))
            .send();
        assert_eq!(reply.status, 201, "{query}: {}", reply.text);
        assert_eq!(reply.body["userName"], name.as_str());
    }
    assert_eq!(count(&server, "true"), 3);
}

#[test]
fn post_create_with_conditional_headers_is_412() {
    let server = TestServer::start();
    let name = unique("cond");
    let reply = server
        .admin()
        .post("/openidm/managed/user?_action=create", &user_body(&name))
        .header("If-Match", "*")
        .send();
    assert_eq!(reply.assert_error(412), "If-Match not supported for POST requests");
    let reply = server
        .admin()
        .post("/openidm/managed/user?_action=create", &user_body(&name))
        .header("If-None-Match", "*")
        .send();
    reply.assert_error(412);
    assert_eq!(count(&server, "true"), 0);
}

// ----- GET conditional headers, If-Modified-Since -------------------------------------------

#[test]
fn get_with_conditional_headers() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("get");
        let created = put_new(&server, &id, &user_body(&id));
        let rev = assert_rev(&created.body["_rev"]);

        let reply = server.admin().get(&user_path(&id)).header("If-Match", &rev).send();
        assert_eq!(reply.assert_error(412), "If-Match not supported for GET requests");

        let reply = server.admin().get(&user_path(&id)).header("If-None-Match", "*").send();
        assert_eq!(
            reply.assert_error(412),
            "If-None-Match * not appropriate for GET requests"
        );

        for tag in [rev.clone(), format!("\"{rev}\"")] {
            let reply = server.admin().get(&user_path(&id)).header("If-None-Match", &tag).send();
            assert_eq!(reply.status, 304, "If-None-Match {tag}: {}", reply.text);
        }

        // Another revision: a normal read.
        let reply = server
            .admin()
            .get(&user_path(&id))
            .header("If-None-Match", "\"0000000000000000\"")
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body, created.body);

        let query = server
            .admin()
            .get("/openidm/managed/user?_queryFilter=true")
            .header("If-Match", "*")
            .send();
        query.assert_error(412);
    });
}

#[test]
fn if_modified_since_is_a_409_conflict() {
    let server = TestServer::start();
    let id = unique("ims");
    let reply = server
        .admin()
        .put(&user_path(&id), &user_body(&id))
        .header("If-Modified-Since", "Wed, 21 Oct 2015 07:28:00 GMT")
        .send();
    assert_eq!(reply.assert_error(409), "Header If-Modified-Since not supported");
    assert_eq!(count(&server, "true"), 0, "the refused PUT stored nothing");

    put_new(&server, &id, &user_body(&id));
    let reply = server
        .admin()
        .get(&user_path(&id))
        .header("If-Modified-Since", "Wed, 21 Oct 2015 07:28:00 GMT")
        .send();
    assert_eq!(reply.assert_error(409), "Header If-Modified-Since not supported");
    let reply = server
        .admin()
        .get(&user_path(&id))
        .header("If-Unmodified-Since", "Wed, 21 Oct 2015 07:28:00 GMT")
        .send();
    reply.assert_error(409);
}

// ----- PATCH ----------------------------------------------------------------------------------

/// A patch applied the two ways IDM offers on an instance, to two identical users.
struct Patched {
    /// The user as created (through PATCH's twin it is the same content).
    before: Value,
    /// The response of `PATCH /managed/user/<id>`.
    after: Value,
}

impl Patched {
    /// The patched content without `_id`/`_rev`.
    fn content(&self) -> Value {
        content_of(&self.after)
    }

    /// True when the patch bumped the revision.
    fn modified(&self) -> bool {
        self.before["_rev"] != self.after["_rev"]
    }
}

/// Creates two users holding `start` and patches one with `PATCH`, the other with
/// `POST ?_action=patch`; both answers must agree (status, message or patched content, and
/// whether the revision moved). Returns the users as created and the two replies.
fn patch_both_ways(server: &TestServer, start: &Value, operations: &Value) -> (Vec<Value>, Reply, Reply) {
    let name = unique("patch");
    let twin = format!("{name}-twin");
    let before = [&name, &twin].map(|id| put_new(server, id, &user_with(id, start)).body);
    let by_patch = server.admin().patch(&user_path(&name), operations).send();
    let by_action = server
        .admin()
        .post(&format!("{}?_action=patch", user_path(&twin)), operations)
        .send();
    assert_eq!(
        by_patch.status, by_action.status,
        "PATCH answered {}, the patch action {}",
        by_patch.text, by_action.text
    );
    if by_patch.status == 200 {
        let mut patched_twin = content_of(&by_action.body);
        if let Some(map) = patched_twin.as_object_mut() {
            // The twin differs only in its names.
            for key in ["userName", "mail"] {
                map.insert(key.to_owned(), content_of(&by_patch.body)[key].clone());
            }
        }
        assert_eq!(content_of(&by_patch.body), patched_twin, "both ways patch the same way");
        assert_eq!(
            before[0]["_rev"] == by_patch.body["_rev"],
            before[1]["_rev"] == by_action.body["_rev"],
            "both ways agree on whether something changed"
        );
    } else {
        assert_eq!(by_patch.body, by_action.body, "both ways refuse the same way");
    }
    (before.to_vec(), by_patch, by_action)
}

/// A patch both ways that must succeed; returns the `PATCH` outcome.
fn patched(server: &TestServer, start: &Value, operations: &Value) -> Patched {
    let (before, reply, _) = patch_both_ways(server, start, operations);
    assert_eq!(reply.status, 200, "{}", reply.text);
    let rev = assert_rev(&reply.body["_rev"]);
    assert_eq!(reply.header("etag"), Some(format!("\"{rev}\"").as_str()));
    assert_eq!(keys(&reply.body)[..2], ["_id", "_rev"]);
    let read = server
        .admin()
        .get(&user_path(reply.body["_id"].as_str().expect("_id")))
        .send();
    assert_eq!(read.body, reply.body, "the patch response is what was stored");
    Patched {
        before: before[0].clone(),
        after: reply.body,
    }
}

/// A patch both ways that must be refused with 400; returns the message after checking that
/// neither user changed.
fn refused(server: &TestServer, start: &Value, operations: &Value) -> String {
    let (before, reply, _) = patch_both_ways(server, start, operations);
    let message = reply.assert_error(400);
    for user in before {
        let read = server
            .admin()
            .get(&user_path(user["_id"].as_str().expect("_id")))
            .send();
        assert_eq!(read.body, user, "a refused patch changes nothing");
    }
    message
}

#[test]
fn patch_add_sets_overwrites_appends_and_creates_parents() {
    on_each_backend(|builder| {
        let server = builder.start();
        let start = json!({"description": "old", "tags": ["apple", "kiwi"], "preferences": {"updates": true}});

        let set = patched(
            &server,
            &start,
            &json!([{"operation": "add", "field": "/city", "value": "Oslo"}]),
        );
        assert_eq!(set.after["city"], "Oslo");
        assert!(set.modified());

        let overwrite = patched(
            &server,
            &start,
            &json!([{"operation": "add", "field": "/description", "value": "new"}]),
        );
        assert_eq!(overwrite.after["description"], "new");

        let append = patched(
            &server,
            &start,
            &json!([{"operation": "add", "field": "/tags/-", "value": "pear"}]),
        );
        assert_eq!(append.after["tags"], json!(["apple", "kiwi", "pear"]));

        let new_array = patched(
            &server,
            &start,
            &json!([{"operation": "add", "field": "/nicknames/-", "value": "x"}]),
        );
        assert_eq!(new_array.after["nicknames"], json!(["x"]));

        let nested = patched(
            &server,
            &start,
            &json!([{"operation": "add", "field": "/preferences/marketing", "value": false}]),
        );
        assert_eq!(
            nested.after["preferences"],
            json!({"updates": true, "marketing": false})
        );

        let parents = patched(
            &server,
            &start,
            &json!([{"operation": "add", "field": "/extra/child", "value": 1}]),
        );
        assert_eq!(parents.after["extra"], json!({"child": 1}));

        // add replaces a whole array with a scalar.
        let replaced = patched(
            &server,
            &start,
            &json!([{"operation": "add", "field": "/tags", "value": "one"}]),
        );
        assert_eq!(replaced.after["tags"], "one");

        assert_eq!(
            refused(
                &server,
                &start,
                &json!([{"operation": "add", "field": "/tags/1", "value": "x"}])
            ),
            "Position-based operation is not allowed: /tags/1"
        );
    });
}

#[test]
fn patch_remove_deletes_fields_and_every_equal_element() {
    on_each_backend(|builder| {
        let server = builder.start();
        let start = json!({"description": "gone soon", "tags": ["a", "b", "a", "c"],
                           "favorites": [{"type": "candy", "flavor": "lemon"}, {"type": "candy", "flavor": "cherry"}]});

        let field = patched(
            &server,
            &start,
            &json!([{"operation": "remove", "field": "/description"}]),
        );
        assert!(field.after.get("description").is_none(), "{}", field.after);
        assert!(field.modified());

        let by_value = patched(
            &server,
            &start,
            &json!([{"operation": "remove", "field": "/tags", "value": "a"}]),
        );
        assert_eq!(by_value.after["tags"], json!(["b", "c"]));

        let deep = patched(
            &server,
            &start,
            &json!([{"operation": "remove", "field": "/favorites", "value": {"type": "candy", "flavor": "cherry"}}]),
        );
        assert_eq!(deep.after["favorites"], json!([{"type": "candy", "flavor": "lemon"}]));

        let scalar = patched(
            &server,
            &start,
            &json!([{"operation": "remove", "field": "/description", "value": "gone soon"}]),
        );
        assert!(scalar.after.get("description").is_none());

        // Nothing to remove: unchanged, same revision.
        for operation in [
            json!({"operation": "remove", "field": "/nothing"}),
            json!({"operation": "remove", "field": "/description", "value": "another value"}),
            json!({"operation": "remove", "field": "/tags", "value": "z"}),
        ] {
            let unchanged = patched(&server, &start, &json!([operation]));
            assert!(!unchanged.modified(), "{operation} changed the revision");
            assert_eq!(unchanged.after, unchanged.before, "{operation}");
        }

        assert_eq!(
            refused(
                &server,
                &start,
                &json!([{"operation": "remove", "field": "/favorites/1"}])
            ),
            "Position-based operation is not allowed: /favorites/1"
        );
        // A name inside an array is not an index: refused like every other spelling (issue 22).
        assert_eq!(
            refused(&server, &start, &json!([{"operation": "remove", "field": "/tags/zzz"}])),
            "/tags: List index is not valid: zzz"
        );
    });
}

#[test]
fn patch_replace_sets_and_creates() {
    on_each_backend(|builder| {
        let server = builder.start();
        let start = json!({"telephoneNumber": "12345", "tags": ["x", "y", "z"]});
        let phone = patched(
            &server,
            &start,
            &json!([{"operation": "replace", "field": "/telephoneNumber", "value": "0763483726"}]),
        );
        assert_eq!(phone.after["telephoneNumber"], "0763483726");
        assert!(phone.modified());

        let array = patched(
            &server,
            &start,
            &json!([{"operation": "replace", "field": "/tags", "value": ["a"]}]),
        );
        assert_eq!(array.after["tags"], json!(["a"]));

        let created = patched(
            &server,
            &start,
            &json!([{"operation": "replace", "field": "/city", "value": "Bergen"}]),
        );
        assert_eq!(created.after["city"], "Bergen");

        // Operation names are case-insensitive.
        let upper = patched(
            &server,
            &start,
            &json!([{"operation": "REPLACE", "field": "/city", "value": "Molde"}]),
        );
        assert_eq!(upper.after["city"], "Molde");

        assert_eq!(
            refused(
                &server,
                &start,
                &json!([{"operation": "replace", "field": "/tags/1", "value": "q"}])
            ),
            "Position-based operation is not allowed: /tags/1"
        );
    });
}

#[test]
fn patch_increment_keeps_the_number_kind() {
    on_each_backend(|builder| {
        let server = builder.start();
        let start = json!({"logins": 1, "ratio": 1.5, "counts": [1, 2, 3], "description": "text"});

        let integer = patched(
            &server,
            &start,
            &json!([{"operation": "increment", "field": "/logins", "value": 1}]),
        );
        assert_eq!(integer.after["logins"], json!(2), "an integer stays an integer");
        assert!(integer.modified());

        let float = patched(
            &server,
            &start,
            &json!([{"operation": "increment", "field": "/ratio", "value": 1.0}]),
        );
        assert_eq!(float.after["ratio"], json!(2.5));

        let negative = patched(
            &server,
            &start,
            &json!([{"operation": "increment", "field": "/logins", "value": -3}]),
        );
        assert_eq!(negative.after["logins"], json!(-2));

        let each = patched(
            &server,
            &start,
            &json!([{"operation": "increment", "field": "/counts", "value": 1}]),
        );
        assert_eq!(each.after["counts"], json!([2, 3, 4]));

        assert_eq!(
            refused(
                &server,
                &start,
                &json!([{"operation": "increment", "field": "/missing", "value": 1}])
            ),
            "The field &#39;/missing&#39; does not exist"
        );
        assert_eq!(
            refused(
                &server,
                &start,
                &json!([{"operation": "increment", "field": "/description", "value": 1}])
            ),
            "The field &#39;/description&#39; is not a number"
        );
        assert_eq!(
            refused(
                &server,
                &start,
                &json!([{"operation": "increment", "field": "/counts/2", "value": 2}])
            ),
            "Position-based operation is not allowed: /counts/2"
        );
    });
}

#[test]
fn patch_copy_and_move() {
    on_each_backend(|builder| {
        let server = builder.start();
        let start = json!({"description": "hello", "tags": ["apple", "banana"]});

        let copy = patched(
            &server,
            &start,
            &json!([{"operation": "copy", "from": "/description", "field": "/note"}]),
        );
        assert_eq!(copy.after["note"], "hello");
        assert_eq!(copy.after["description"], "hello");
        assert!(copy.modified());

        let moved = patched(
            &server,
            &start,
            &json!([{"operation": "move", "from": "/description", "field": "/note"}]),
        );
        assert_eq!(moved.after["note"], "hello");
        assert!(moved.after.get("description").is_none(), "{}", moved.after);

        // A missing source changes nothing.
        for operation in ["copy", "move"] {
            let unchanged = patched(
                &server,
                &start,
                &json!([{"operation": operation, "from": "/nothing", "field": "/note"}]),
            );
            assert!(!unchanged.modified(), "{operation} of a missing field");
            assert_eq!(unchanged.after, unchanged.before);
        }

        // The position rule applies to `from`.
        assert_eq!(
            refused(
                &server,
                &start,
                &json!([{"operation": "move", "from": "/tags/1", "field": "/first"}])
            ),
            "Position-based operation is not allowed: /tags/1"
        );
    });
}

#[test]
fn patch_operations_apply_in_order() {
    on_each_backend(|builder| {
        let server = builder.start();
        let start = json!({"nickname": "alice", "age": 20, "role": "sales"});
        let outcome = patched(
            &server,
            &start,
            &json!([
                {"operation": "replace", "field": "/nickname", "value": "bob"},
                {"operation": "increment", "field": "/age", "value": 10},
                {"operation": "remove", "field": "/role"},
                {"operation": "add", "field": "/role", "value": "it"}
            ]),
        );
        assert_eq!(outcome.after["nickname"], "bob");
        assert_eq!(outcome.after["age"], json!(30));
        assert_eq!(outcome.after["role"], "it");
        let content = outcome.content();
        assert_eq!(content["givenName"], "Test", "untouched fields stay");
        assert_eq!(content["accountStatus"], "active");
        assert_eq!(content["effectiveRoles"], json!([]));

        // A failing operation in the middle leaves the object untouched.
        let message = refused(
            &server,
            &start,
            &json!([
                {"operation": "replace", "field": "/nickname", "value": "carol"},
                {"operation": "increment", "field": "/role", "value": 1}
            ]),
        );
        assert_eq!(message, "The field &#39;/role&#39; is not a number");
    });
}

#[test]
fn patch_that_changes_nothing_keeps_the_revision() {
    on_each_backend(|builder| {
        let server = builder.start();
        let start = json!({"description": "same"});
        let outcome = patched(
            &server,
            &start,
            &json!([{"operation": "replace", "field": "/description", "value": "same"}]),
        );
        assert!(!outcome.modified(), "setting the current value is not a change");
        assert_eq!(outcome.after, outcome.before);
        let empty = patched(&server, &start, &json!([]));
        assert!(!empty.modified(), "an empty patch is not a change");
    });
}

#[test]
fn patch_honours_if_match_and_refuses_if_none_match() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("condpatch");
        let created = put_new(&server, &id, &user_body(&id));
        let first = assert_rev(&created.body["_rev"]);
        let set = |value: &str| json!([{"operation": "replace", "field": "/description", "value": value}]);

        let current = server
            .admin()
            .patch(&user_path(&id), &set("one"))
            .header("If-Match", &first)
            .send();
        assert_eq!(current.status, 200, "{}", current.text);
        let second = assert_rev(&current.body["_rev"]);

        let stale = server
            .admin()
            .patch(&user_path(&id), &set("two"))
            .header("If-Match", &first)
            .send();
        assert_eq!(
            stale.assert_error(412),
            format!(
                "Patch rejected as current Object revision {second} is different than expected by caller ({first}), \
                 the object has changed since retrieval."
            )
        );

        let none_match = server
            .admin()
            .patch(&user_path(&id), &set("three"))
            .header("If-None-Match", "*")
            .send();
        assert_eq!(
            none_match.assert_error(412),
            "Use of If-None-Match not supported for PATCH requests"
        );

        let star = server
            .admin()
            .patch(&user_path(&id), &set("four"))
            .header("If-Match", "*")
            .send();
        assert_eq!(star.status, 200, "{}", star.text);
        assert_eq!(star.body["description"], "four");

        // The patch action takes no conditions.
        let action = server
            .admin()
            .post(&format!("{}?_action=patch", user_path(&id)), &set("five"))
            .header("If-Match", "*")
            .send();
        action.assert_error(412);
        assert_eq!(server.admin().get(&user_path(&id)).send().body["description"], "four");
    });
}

#[test]
fn http_method_override_on_post_replaces_the_method() {
    let server = TestServer::start();
    let id = unique("override");
    put_new(&server, &id, &user_body(&id));
    let reply = server
        .admin()
        .post(
            &user_path(&id),
            &json!([{"operation": "replace", "field": "/description", "value": "via override"}]),
        )
        .header("X-HTTP-Method-Override", "PATCH")
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["description"], "via override");
    let deleted = server
        .admin()
        .post_empty(&user_path(&id))
        .header("X-HTTP-Method-Override", "DELETE")
        .send();
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    server.admin().get(&user_path(&id)).send().assert_error(404);
}

#[test]
fn the_patch_action_needs_no_content_type() {
    let server = TestServer::start();
    let id = unique("actionct");
    put_new(&server, &id, &user_body(&id));
    let reply = server
        .admin()
        .post_empty(&format!("{}?_action=patch", user_path(&id)))
        .body(r#"[{"operation": "replace", "field": "/description", "value": "no content type"}]"#)
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["description"], "no content type");
}

#[test]
fn unknown_actions_are_400() {
    let server = TestServer::start();
    let id = unique("action");
    let created = put_new(&server, &id, &user_body(&id));
    let reply = server
        .admin()
        .post_empty(&format!("{}?_action=frobnicate", user_path(&id)))
        .send();
    assert_eq!(reply.assert_error(400), "Action frobnicate is not supported.");
    let reply = server
        .admin()
        .post(
            "/openidm/managed/user?_action=frobnicate",
            &user_body(&unique("action")),
        )
        .send();
    reply.assert_error(400);
    assert_eq!(server.admin().get(&user_path(&id)).send().body, created.body);
    assert_eq!(count(&server, "true"), 1);
}

// ----- patch by query -------------------------------------------------------------------------

#[test]
fn patch_by_query_needs_exactly_one_match() {
    on_each_backend(|builder| {
        let server = builder.start();
        let city = unique("city");
        let first = unique("pbq");
        let second = unique("pbq");
        let before: Vec<Value> = [&first, &second]
            .iter()
            .map(|id| put_new(&server, id, &user_with(id, &json!({"city": city}))).body)
            .collect();
        let operations = json!([{"operation": "replace", "field": "/description", "value": "patched"}]);

        let none = server
            .admin()
            .post(
                "/openidm/managed/user?_action=patch&_queryFilter=userName+eq+%22nobody%22",
                &operations,
            )
            .send();
        assert_eq!(none.assert_error(404), "Query returned no results");

        let many = server
            .admin()
            .post(
                &format!("/openidm/managed/user?_action=patch&_queryFilter=city+eq+%22{city}%22"),
                &operations,
            )
            .send();
        assert_eq!(many.assert_error(500), "Query result must yield one matching object");
        for user in &before {
            let read = server
                .admin()
                .get(&user_path(user["_id"].as_str().expect("_id")))
                .send();
            assert_eq!(&read.body, user, "nothing was patched");
        }

        let one = server
            .admin()
            .post(
                &format!("/openidm/managed/user?_action=patch&_queryId=for-userName&uid={first}"),
                &operations,
            )
            .send();
        assert_eq!(one.status, 200, "{}", one.text);
        assert_eq!(one.body["_id"], first.as_str());
        assert_eq!(one.body["description"], "patched");
        assert_eq!(keys(&one.body).last(), Some(&"_id"));
        let read = server.admin().get(&user_path(&first)).send();
        assert_eq!(read.body["description"], "patched");
        assert_eq!(read.body["_rev"], one.body["_rev"]);
        assert_eq!(server.admin().get(&user_path(&second)).send().body, before[1]);
    });
}

// ----- DELETE ---------------------------------------------------------------------------------

#[test]
fn delete_honours_if_match() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("del");
        let created = put_new(&server, &id, &user_body(&id));
        let first = assert_rev(&created.body["_rev"]);
        let updated = server
            .admin()
            .patch(
                &user_path(&id),
                &json!([{"operation": "replace", "field": "/description", "value": "changed"}]),
            )
            .send();
        let current = assert_rev(&updated.body["_rev"]);

        let stale = server.admin().delete(&user_path(&id)).header("If-Match", &first).send();
        assert_eq!(
            stale.assert_error(412),
            format!(
                "Delete rejected as current Object revision {current} is different than expected by caller ({first}), \
                 the object has changed since retrieval."
            )
        );
        assert_eq!(
            server.admin().get(&user_path(&id)).send().body,
            updated.body,
            "still there"
        );

        let none_match = server
            .admin()
            .delete(&user_path(&id))
            .header("If-None-Match", "*")
            .send();
        none_match.assert_error(412);
        assert_eq!(server.admin().get(&user_path(&id)).send().status, 200, "still there");

        let deleted = server
            .admin()
            .delete(&user_path(&id))
            .header("If-Match", &format!("\"{current}\""))
            .send();
        assert_eq!(deleted.status, 200, "{}", deleted.text);
        assert_eq!(deleted.body, updated.body);
        assert_eq!(deleted.header("etag"), Some(format!("\"{current}\"").as_str()));

        server.admin().get(&user_path(&id)).send().assert_error(404);
        server.admin().delete(&user_path(&id)).send().assert_error(404);
        assert_eq!(count(&server, "true"), 0);
    });
}

// ----- response envelope ----------------------------------------------------------------------

#[test]
fn responses_carry_etag_location_and_json_headers() {
    on_each_backend(|builder| {
        let server = builder.start();
        let etag_of = |reply: &Reply| format!("\"{}\"", assert_rev(&reply.body["_rev"]));
        let assert_envelope = |reply: &Reply, what: &str| {
            assert_eq!(reply.header("etag"), Some(etag_of(reply).as_str()), "{what}: ETag");
            assert_eq!(
                reply.header("content-type"),
                Some("application/json;charset=UTF-8"),
                "{what}: Content-Type"
            );
            assert_eq!(reply.header("cache-control"), Some("no-cache"), "{what}: Cache-Control");
            assert_eq!(keys(&reply.body)[..2], ["_id", "_rev"], "{what}: _id and _rev first");
        };

        let name = unique("envelope");
        let posted = server
            .admin()
            .post("/openidm/managed/user?_action=create", &user_body(&name))
            .send();
        assert_eq!(posted.status, 201, "{}", posted.text);
        assert_envelope(&posted, "POST create");
        let id = posted.body["_id"].as_str().expect("_id").to_owned();

        let put_id = unique("envelope");
        let put = put_new(&server, &put_id, &user_body(&put_id));
        assert_envelope(&put, "PUT create");

        let read = server.admin().get(&user_path(&id)).send();
        assert_eq!(read.status, 200);
        assert_envelope(&read, "read");
        assert_eq!(read.header("location"), None);

        let update = server
            .admin()
            .put(&user_path(&id), &user_with(&name, &json!({"city": "Oslo"})))
            .header("If-Match", "*")
            .send();
        assert_eq!(update.status, 200);
        assert_envelope(&update, "update");

        let patch = server
            .admin()
            .patch(
                &user_path(&id),
                &json!([{"operation": "add", "field": "/city", "value": "Rome"}]),
            )
            .send();
        assert_eq!(patch.status, 200);
        assert_envelope(&patch, "patch");

        let delete = server.admin().delete(&user_path(&id)).send();
        assert_eq!(delete.status, 200);
        assert_envelope(&delete, "delete");

        let query = server.admin().get("/openidm/managed/user?_queryFilter=true").send();
        assert_eq!(query.header("content-type"), Some("application/json;charset=UTF-8"));
        for item in query.body["result"].as_array().expect("result") {
            assert_eq!(keys(item)[..2], ["_id", "_rev"], "query items begin with _id and _rev");
        }

        let error = server.admin().get(&user_path("nobody-here")).send();
        error.assert_error(404);
        assert_eq!(error.header("content-type"), Some("application/json;charset=UTF-8"));
        assert_eq!(keys(&error.body), ["code", "reason", "message"]);
    });
}

#[test]
fn location_names_the_created_object() {
    let server = TestServer::start();
    let location = |id: &str| format!("{}/openidm/managed/user/{id}", server.base());

    let posted = server
        .admin()
        .post("/openidm/managed/user?_action=create", &user_body(&unique("located")))
        .send();
    assert_eq!(posted.status, 201, "{}", posted.text);
    let id = posted.body["_id"].as_str().expect("_id");
    assert_eq!(
        posted.header("location"),
        Some(location(id).as_str()),
        "server-assigned id"
    );

    let put_id = unique("located");
    let put = put_new(&server, &put_id, &user_body(&put_id));
    assert_eq!(put.header("location"), Some(location(&put_id).as_str()), "PUT create");

    let upserted_id = unique("located");
    let upserted = server
        .admin()
        .put(&user_path(&upserted_id), &user_body(&upserted_id))
        .send();
    assert_eq!(upserted.status, 201, "{}", upserted.text);
    assert_eq!(
        upserted.header("location"),
        Some(location(&upserted_id).as_str()),
        "upsert create"
    );

    // A character that cannot appear raw in a path is percent-encoded.
    let spaced = put_new(&server, "space%20x", &user_body(&unique("spaced")));
    assert_eq!(spaced.body["_id"], "space x");
    assert_eq!(spaced.header("location"), Some(location("space%20x").as_str()));
}

#[test]
fn fields_select_what_a_response_carries() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("fields");
        let body = user_with(
            &id,
            &json!({"password": "Passw0rd", "city": "Oslo", "preferences": {"updates": true, "marketing": false}}),
        );

        // On create.
        let created = server
            .admin()
            .put(&format!("{}?_fields=userName,city", user_path(&id)), &body)
            .header("If-None-Match", "*")
            .send();
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(
            created.without_revisions(),
            json!({"_id": id, "userName": id, "city": "Oslo"})
        );
        assert_eq!(keys(&created.body)[..2], ["_id", "_rev"]);
        put_new(&server, &unique("fields"), &user_body(&unique("other")));

        let read = |fields: &str| server.admin().get(&format!("{}?{fields}", user_path(&id))).send();

        let two = read("_fields=userName,mail");
        assert_eq!(two.status, 200, "{}", two.text);
        assert_eq!(
            two.without_revisions(),
            json!({"_id": id, "userName": id, "mail": format!("{id}@example.com")})
        );
        assert_eq!(keys(&two.body)[..2], ["_id", "_rev"]);
        assert_rev(&two.body["_rev"]);

        let repeated = read("_fields=userName&_fields=mail");
        assert_eq!(repeated.body, two.body, "_fields may be repeated");

        let only_id = read("_fields=_id");
        assert_eq!(keys(&only_id.body), ["_id", "_rev"]);

        let nested = read("_fields=preferences/marketing");
        assert_eq!(nested.without_revisions(), json!({"_id": id, "marketing": false}));

        let missing = read("_fields=noSuchField");
        assert_eq!(keys(&missing.body), ["_id", "_rev"]);

        let all = read("");
        for defaults in ["_fields=*", "_fields="] {
            assert_eq!(read(defaults).body, all.body, "{defaults} means the default fields");
        }

        // On a query.
        let query = server
            .admin()
            .get(&format!(
                "/openidm/managed/user?_queryFilter=userName+eq+%22{id}%22&_fields=userName,city"
            ))
            .send();
        assert_eq!(query.status, 200, "{}", query.text);
        assert_eq!(
            query.without_revisions()["result"],
            json!([{"_id": id, "userName": id, "city": "Oslo"}])
        );

        // On a patch and a delete.
        let patched = server
            .admin()
            .patch(
                &format!("{}?_fields=city", user_path(&id)),
                &json!([{"operation": "replace", "field": "/city", "value": "Rome"}]),
            )
            .send();
        assert_eq!(patched.without_revisions(), json!({"_id": id, "city": "Rome"}));
        let deleted = server.admin().delete(&format!("{}?_fields=sn", user_path(&id))).send();
        assert_eq!(deleted.without_revisions(), json!({"_id": id, "sn": "User"}));
    });
}

#[test]
fn pretty_print_indents_only_when_true() {
    let server = TestServer::start();
    let id = unique("pretty");
    put_new(&server, &id, &user_body(&id));
    let compact = server.admin().get(&user_path(&id)).send();
    assert!(!compact.text.contains('\n'), "{}", compact.text);

    for query in ["_prettyPrint=true", "_prettyPrint=TRUE", "_PRETTYPRINT=true"] {
        let pretty = server.admin().get(&format!("{}?{query}", user_path(&id))).send();
        assert_eq!(pretty.status, 200, "{query}");
        assert!(pretty.text.starts_with("{\n  \"_id\": "), "{query}: {}", pretty.text);
        assert_eq!(pretty.body, compact.body, "{query}: same content");
        assert_eq!(keys(&pretty.body), keys(&compact.body));
    }
    for query in ["_prettyPrint=yes", "_prettyPrint=false", "_prettyPrint="] {
        let plain = server.admin().get(&format!("{}?{query}", user_path(&id))).send();
        assert_eq!(plain.status, 200, "{query}: not an error");
        assert_eq!(plain.text, compact.text, "{query}: compact");
    }
    let query = server
        .admin()
        .get("/openidm/managed/user?_queryFilter=true&_prettyPrint=true")
        .send();
    assert!(query.text.starts_with("{\n  \"result\": ["), "{}", query.text);
}

// ----- private, virtual and default properties ------------------------------------------------

#[test]
fn the_password_is_never_returned() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("secret");
        let path = user_path(&id);
        let assert_hidden = |reply: &Reply, what: &str| {
            assert!(reply.status < 300, "{what}: {}", reply.text);
            for needle in ["password", "Passw0rd", "$crypto", "argon2"] {
                assert!(!reply.text.contains(needle), "{what} reveals {needle}: {}", reply.text);
            }
        };

        let created = put_new(&server, &id, &user_with(&id, &json!({"password": "Passw0rd"})));
        assert_hidden(&created, "create");
        let posted = server
            .admin()
            .post(
                "/openidm/managed/user?_action=create",
                &user_with(&unique("secret"), &json!({"password": "Passw0rd"})),
            )
            .send();
        assert_hidden(&posted, "POST create");
        assert_hidden(&server.admin().get(&path).send(), "read");

        let only_password = server.admin().get(&format!("{path}?_fields=password")).send();
        assert_hidden(&only_password, "read with _fields=password");
        assert_eq!(keys(&only_password.body), ["_id", "_rev"]);

        assert_hidden(
            &server.admin().get("/openidm/managed/user?_queryFilter=true").send(),
            "query",
        );
        let query = server
            .admin()
            .get("/openidm/managed/user?_queryFilter=true&_fields=password,userName")
            .send();
        assert_hidden(&query, "query with _fields=password");
        assert_eq!(query.body["resultCount"], 2);

        // A PUT that omits the password keeps the stored one (and still shows none).
        let replaced = server
            .admin()
            .put(&path, &user_with(&id, &json!({"description": "replaced"})))
            .header("If-Match", "*")
            .send();
        assert_hidden(&replaced, "update without password");
        let patched = server
            .admin()
            .patch(
                &path,
                &json!([{"operation": "replace", "field": "/city", "value": "Oslo"}]),
            )
            .send();
        assert_hidden(&patched, "patch of another field");
        assert_eq!(patched.body["description"], "replaced");

        let new_password = server
            .admin()
            .patch(
                &path,
                &json!([{"operation": "replace", "field": "/password", "value": "Newpassw0rd"}]),
            )
            .send();
        assert_hidden(&new_password, "patch of the password");
        assert!(!new_password.text.contains("Newpassw0rd"));

        assert_hidden(&server.admin().delete(&path).send(), "delete");
    });
}

#[test]
fn virtual_and_default_properties() {
    on_each_backend(|builder| {
        let server = builder.start();
        let plain = unique("defaults");
        let created = put_new(&server, &plain, &user_body(&plain));
        assert_eq!(created.body["accountStatus"], "active");
        assert_eq!(created.body["effectiveRoles"], json!([]));
        assert_eq!(created.body["effectiveAssignments"], json!([]));
        assert!(
            created.body.get("authzRoles").is_none(),
            "authzRoles is not returned by default"
        );

        // A given accountStatus is kept; virtual properties are computed, not taken from the body.
        let given = unique("given");
        let created = put_new(
            &server,
            &given,
            &user_with(
                &given,
                &json!({"accountStatus": "inactive", "effectiveRoles": [{"_ref": "managed/role/fake"}],
                        "effectiveAssignments": [{"name": "fake"}]}),
            ),
        );
        assert_eq!(created.body["accountStatus"], "inactive");
        assert_eq!(created.body["effectiveRoles"], json!([]));
        assert_eq!(created.body["effectiveAssignments"], json!([]));

        // Virtual properties are in every read and query item.
        let query = server
            .admin()
            .get(&format!("/openidm/managed/user?_queryFilter=userName+eq+%22{plain}%22"))
            .send();
        let item = &query.body["result"][0];
        assert_eq!(item["effectiveRoles"], json!([]));
        assert_eq!(item["effectiveAssignments"], json!([]));
        assert_eq!(item["accountStatus"], "active");
    });
}

// ----- collection paths, unknown paths, unsupported methods ----------------------------------

#[test]
fn instance_operations_on_the_collection_path_are_400() {
    let server = TestServer::start();
    let collection = "/openidm/managed/user";
    let patch = json!([{"operation": "replace", "field": "/description", "value": "x"}]);
    let cases = [
        ("read", server.admin().get(collection).send(), "cannot be read"),
        (
            "update",
            server.admin().put(collection, &user_body("x")).send(),
            "cannot be updated",
        ),
        (
            "update with If-Match",
            server
                .admin()
                .put(collection, &user_body("x"))
                .header("If-Match", "*")
                .send(),
            "cannot be updated",
        ),
        (
            "patch",
            server.admin().patch(collection, &patch).send(),
            "cannot be patched",
        ),
        ("delete", server.admin().delete(collection).send(), "cannot be deleted"),
    ];
    for (what, reply, ending) in cases {
        assert_eq!(
            reply.assert_error(400),
            format!("The resource collection managed/user {ending}"),
            "{what}"
        );
    }
    assert_eq!(count(&server, "true"), 0);

    // The other way round: a query on an instance.
    let id = unique("inst");
    put_new(&server, &id, &user_body(&id));
    server
        .admin()
        .get(&format!("{}?_queryFilter=true", user_path(&id)))
        .send()
        .assert_error(400);
}

#[test]
fn unknown_types_and_paths_are_404() {
    let server = TestServer::start();
    let widget = server.admin().get("/openidm/managed/widget/abc").send();
    widget.assert_error(404);
    let create = server
        .admin()
        .post("/openidm/managed/widget?_action=create", &json!({"name": "w"}))
        .send();
    create.assert_error(404);
    let query = server.admin().get("/openidm/managed/widget?_queryFilter=true").send();
    query.assert_error(404);

    let unknown = server.admin().get("/openidm/nothing/here").send();
    assert_eq!(unknown.assert_error(404), "Resource &#39;nothing/here&#39; not found");
    assert_eq!(
        unknown.body,
        json!({"code": 404, "reason": "Not Found", "message": "Resource &#39;nothing/here&#39; not found"})
    );
    let trailing = server.admin().get("/openidm/nothing/here/").send();
    assert_eq!(trailing.assert_error(404), "Resource &#39;nothing/here&#39; not found");
}

#[test]
fn head_and_options_are_501() {
    let server = TestServer::start();
    let id = unique("methods");
    put_new(&server, &id, &user_body(&id));
    let head = server.admin().method("HEAD", &user_path(&id)).send();
    assert_eq!(head.status, 501);
    let options = server.admin().method("OPTIONS", &user_path(&id)).send();
    assert_eq!(options.assert_error(501), "Method OPTIONS not supported");
    assert_eq!(options.body["reason"], "Not Implemented");
    let trace = server.admin().method("TRACE", "/openidm/managed/user").send();
    assert_eq!(trace.assert_error(501), "Method TRACE not supported");
}

#[test]
fn unsupported_api_versions_are_400() {
    let server = TestServer::start();
    let ok = server
        .admin()
        .get("/openidm/managed/user?_queryFilter=true")
        .header("Accept-API-Version", "protocol=2.1,resource=1.0")
        .send();
    assert_eq!(ok.status, 200, "{}", ok.text);
    let major = server
        .admin()
        .get("/openidm/managed/user?_queryFilter=true")
        .header("Accept-API-Version", "protocol=3.0,resource=1.0")
        .send();
    assert_eq!(major.assert_error(400), "Unsupported major version: 3");
    let minor = server
        .admin()
        .get("/openidm/managed/user?_queryFilter=true")
        .header("Accept-API-Version", "protocol=2.2,resource=1.0")
        .send();
    assert_eq!(minor.assert_error(400), "Unsupported minor version: 2");
}
