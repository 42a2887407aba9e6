//! Profile completeness (idm-api.md §10.8, ferridm.md §2.3 and §6, idm-cases.md facts 317–320,
//! seeds/progressive-profile.txt "Viewing profile completeness"): IDM's formula over the 14
//! slots of the default user schema (rendered like IDM's 32-bit floats: 4/14 → 28.571428,
//! 5/14 → 35.714287, 6/14 → 42.857143), the endpoints for the caller and for an administrator,
//! attribute lists and weights, a scripted rule changed at runtime, and the score kept in
//! `_meta.profileCompleteness` so an administrator can query by it.

use std::time::Duration;

use ferridm_tests::{TestServer, on_each_backend, workspace_root};
use serde_json::{Value, json};

use crate::profile::{Person, admin_patch, keys, person, person_with, read_user, save_conf};

const OWN: &str = "/openidm/selfservice/profile/completeness";
const RELOAD: Duration = Duration::from_secs(20);

/// `…/completeness/managed/user/<id>` (administrators).
fn of_user(id: &str) -> String {
    format!("/openidm/selfservice/profile/completeness/managed/user/{id}")
}

/// The caller's own completeness (credentials in the headers).
fn own(server: &TestServer, person: &Person) -> Value {
    let reply = person.actor(server).get(OWN).send();
    assert_eq!(reply.status, 200, "own completeness of {}: {}", person.name, reply.text);
    reply.body
}

/// The completeness figure of a user as the admin reads it.
fn figure(server: &TestServer, id: &str) -> Value {
    let reply = server.admin().get(&of_user(id)).send();
    assert_eq!(reply.status, 200, "completeness of {id}: {}", reply.text);
    reply.body["completeness"].clone()
}

/// Asserts the whole body: `{"_id": "managed/user/<id>", "_rev": <the user's rev>, "completeness": n}`
/// (in that order), and that the figure renders as `rendered`.
fn assert_body(server: &TestServer, body: &Value, text: &str, person: &Person, rendered: &str) {
    let rev = read_user(server, &person.id)["_rev"].clone();
    let expected: Value = serde_json::from_str(rendered).unwrap();
    assert_eq!(
        *body,
        json!({"_id": format!("managed/user/{}", person.id), "_rev": rev, "completeness": expected}),
        "{text}"
    );
    assert_eq!(keys(body), ["_id", "_rev", "completeness"]);
    let compact = text.split_whitespace().collect::<String>();
    assert!(
        compact.contains(&format!("\"completeness\":{rendered}")),
        "the figure renders as {rendered}: {text}"
    );
}

/// `_meta/profileCompleteness` of a user.
fn stored_score(server: &TestServer, id: &str) -> Value {
    let reply = server
        .admin()
        .get(&format!("/openidm/managed/user/{id}?_fields=_meta/profileCompleteness"))
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["_meta"]["profileCompleteness"].clone()
}

/// The ids of users matching `filter` (URL-encoded by the caller), sorted.
fn query_ids(server: &TestServer, encoded_filter: &str) -> Vec<String> {
    let reply = server
        .admin()
        .get(&format!(
            "/openidm/managed/user?_queryFilter={encoded_filter}&_fields=_id"
        ))
        .send();
    assert_eq!(reply.status, 200, "query {encoded_filter}: {}", reply.text);
    let mut ids: Vec<String> = reply.body["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result: {}", reply.text))
        .iter()
        .map(|item| item["_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&Person]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|person| person.id.clone()).collect();
    ids.sort();
    ids
}

/// The shipped managed.json with `edit` applied to the user type.
fn managed_with(edit: impl FnOnce(&mut Value)) -> String {
    ferridm_tests::managed_with_user(&workspace_root().join("conf/managed.json"), edit).to_string()
}

/// The shipped profile process with a `completeness` rule.
fn profile_with_rule(rule: &Value) -> String {
    let mut profile: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join("conf/selfservice-profile.json")).unwrap())
            .unwrap();
    profile["completeness"] = rule.clone();
    profile.to_string()
}

// ---------------------------------------------------------------------------------------------
// IDM's formula over the default schema
// ---------------------------------------------------------------------------------------------

#[test]
fn four_of_fourteen_slots_is_28_571428() {
    let server = TestServer::start();
    let user = person(&server);
    let reply = user.actor(&server).get(OWN).send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_body(&server, &reply.body, &reply.text, &user, "28.571428");
}

#[test]
fn five_of_fourteen_with_one_preference_is_35_714287() {
    let server = TestServer::start();
    let user = person_with(&server, &json!({"preferences": {"marketing": true}}));
    let reply = user.actor(&server).get(OWN).send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_body(&server, &reply.body, &reply.text, &user, "35.714287");
}

#[test]
fn the_seeds_42_857143_for_six_of_fourteen_read_by_the_admin() {
    let server = TestServer::start();
    let user = person_with(&server, &json!({"telephoneNumber": "555-1234", "city": "Paris"}));
    let reply = server
        .admin()
        .with("Accept-API-Version", "resource=1.0")
        .get(&of_user(&user.id))
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_body(&server, &reply.body, &reply.text, &user, "42.857143");
    // The caller's own endpoint answers the same.
    assert_eq!(own(&server, &user), reply.body);
}

#[test]
fn every_slot_counts_once_up_to_one_hundred() {
    let server = TestServer::start();
    let cases = [
        (json!({"description": "d"}), json!(35.714287)),
        (
            json!({"description": "d", "postalAddress": "1 Main St", "address2": "Flat 2"}),
            json!(50.0),
        ),
        (
            json!({"preferences": {"updates": false, "marketing": false}}),
            json!(42.857143),
        ),
        (
            json!({"description": "d", "telephoneNumber": "555", "postalAddress": "1 Main St", "address2": "Flat 2",
                   "city": "Oslo", "postalCode": "0150", "country": "NO", "stateProvince": "Oslo",
                   "preferences": {"updates": true, "marketing": false}}),
            json!(100.0),
        ),
    ];
    for (extra, expected) in cases {
        let user = person_with(&server, &extra);
        let figure = own(&server, &user)["completeness"].clone();
        assert_eq!(
            figure.as_f64(),
            expected.as_f64(),
            "{extra}: false counts as filled, each slot once"
        );
    }
}

#[test]
fn null_values_non_editable_and_non_viewable_properties_do_not_count() {
    let server = TestServer::start();
    // 5 filled slots each time (userName, givenName, sn, mail, city). accountStatus (viewable,
    // not userEditable) never counts; password and kbaInfo are not viewable; an undeclared
    // property is no slot; an empty preferences object fills none of its two slots.
    let user = person_with(
        &server,
        &json!({"city": "Oslo", "accountStatus": "active", "kbaInfo": [], "nickname": "Bee", "preferences": {}}),
    );
    assert_eq!(own(&server, &user)["completeness"], json!(35.714287));
    let no_password = {
        let reply = server
            .admin()
            .post(
                "/openidm/managed/user?_action=create",
                &json!({"userName": "nopw", "givenName": "No", "sn": "Password", "mail": "nopw@example.com",
                        "city": "Oslo"}),
            )
            .send();
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.body["_id"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        figure(&server, &no_password),
        json!(35.714287),
        "with or without a password"
    );
}

#[test]
fn object_properties_contribute_one_slot_per_sub_property() {
    let managed = managed_with(|user| {
        let properties = &mut user["schema"]["properties"];
        properties["address"] = json!({
            "type": "object", "title": "Address", "viewable": true, "userEditable": true,
            "properties": {
                "street": {"type": "string"},
                "zip": {"type": "string", "viewable": false, "userEditable": false},
                "geo": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}}
            }
        });
        properties["nickname"] = json!({"type": "string", "title": "Nickname", "viewable": true});
        properties["badge"] = json!({"type": "string", "title": "Badge", "userEditable": true});
    });
    let server = TestServer::builder().conf_file("managed.json", &managed).start();
    // 14 + street, zip, geo/lat, geo/lon = 18 slots; nickname and badge lack one of the flags.
    let base = person_with(&server, &json!({"nickname": "Bee", "badge": "B1"}));
    assert_eq!(own(&server, &base)["completeness"].as_f64(), Some(idm(4.0, 18.0)));
    let nested = person_with(
        &server,
        &json!({"address": {"street": "Main St", "zip": "0150", "geo": {"lat": 59.9}}}),
    );
    assert_eq!(
        own(&server, &nested)["completeness"].as_f64(),
        Some(idm(7.0, 18.0)),
        "nested properties count whatever their flags"
    );
}

/// IDM's figure for `filled` of `slots` (weights summed): `filled × 100 / slots` in 32-bit
/// floating point, rendered as the shortest decimal of that float (4 of 14 → 28.571428).
fn idm(filled: f32, slots: f32) -> f64 {
    (filled * 100.0 / slots).to_string().parse().unwrap()
}

#[test]
fn a_schema_without_qualifying_properties_scores_zero() {
    let managed = managed_with(|user| {
        for (_, property) in user["schema"]["properties"].as_object_mut().unwrap() {
            property["userEditable"] = json!(false);
        }
    });
    let server = TestServer::builder().conf_file("managed.json", &managed).start();
    let user = person_with(&server, &json!({"telephoneNumber": "555"}));
    let body = own(&server, &user);
    assert_eq!(body["completeness"].as_f64(), Some(0.0), "{body}");
    assert_eq!(body["_id"], format!("managed/user/{}", user.id));
}

// ---------------------------------------------------------------------------------------------
// The endpoints
// ---------------------------------------------------------------------------------------------

#[test]
fn the_endpoints_are_for_the_caller_and_for_administrators() {
    let server = TestServer::start();
    let alice = person(&server);
    let bob = person_with(&server, &json!({"city": "Oslo"}));
    let anonymous = server.nobody().get(OWN).send();
    assert_eq!(anonymous.status, 401, "{}", anonymous.text);
    let other = alice.actor(&server).get(&of_user(&bob.id)).send();
    assert_eq!(other.status, 403, "a user reading someone else's: {}", other.text);
    let missing = server.admin().get(&of_user("no-such-user")).send();
    assert_eq!(missing.status, 404, "{}", missing.text);
    assert_eq!(missing.body["code"], 404, "{}", missing.text);
    assert_eq!(own(&server, &alice)["_id"], format!("managed/user/{}", alice.id));
    assert_eq!(figure(&server, &bob.id), json!(35.714287));
    // Writes are not served.
    let write = server
        .admin()
        .put(&of_user(&bob.id), &json!({"completeness": 100}))
        .send();
    assert!(write.status >= 400, "{}", write.text);
    assert_eq!(figure(&server, &bob.id), json!(35.714287));
}

#[test]
fn the_rev_follows_the_users_revision() {
    let server = TestServer::start();
    let user = person(&server);
    let before = own(&server, &user);
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "add", "field": "city", "value": "Oslo"}]),
    );
    let after = user.actor(&server).get(OWN).send();
    assert_body(&server, &after.body, &after.text, &user, "35.714287");
    assert_ne!(before["_rev"], after.body["_rev"], "a write changes the revision");
}

#[test]
fn the_endpoint_is_served_without_a_profile_process() {
    let server = TestServer::builder()
        .edit(|project| std::fs::remove_file(project.join("conf/selfservice-profile.json")).unwrap())
        .start();
    let user = person_with(&server, &json!({"city": "Oslo"}));
    assert_eq!(own(&server, &user)["completeness"], json!(35.714287));
    let process = user.actor(&server).get("/openidm/selfservice/profile").send();
    assert_eq!(process.status, 404, "{}", process.text);
}

// ---------------------------------------------------------------------------------------------
// Configured rules
// ---------------------------------------------------------------------------------------------

#[test]
fn attributes_and_weights_replace_the_default_slots() {
    let rule = json!({"attributes": ["userName", "telephoneNumber", "city", "preferences/marketing"],
                      "weights": {"telephoneNumber": 2}});
    let server = TestServer::builder()
        .conf_file("selfservice-profile.json", &profile_with_rule(&rule))
        .start();
    let user = person(&server);
    assert_eq!(
        own(&server, &user)["completeness"].as_f64(),
        Some(20.0),
        "userName: 1 of 5"
    );
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "add", "field": "preferences", "value": {"marketing": false}}]),
    );
    assert_eq!(own(&server, &user)["completeness"].as_f64(), Some(40.0), "2 of 5");
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "add", "field": "telephoneNumber", "value": "555"}]),
    );
    assert_eq!(
        own(&server, &user)["completeness"].as_f64(),
        Some(80.0),
        "weight 2: 4 of 5"
    );
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "add", "field": "city", "value": "Oslo"}]),
    );
    assert_eq!(own(&server, &user)["completeness"].as_f64(), Some(100.0));
    assert_eq!(stored_score(&server, &user.id).as_f64(), Some(100.0));
    // The default attributes with a weight.
    let weighted = TestServer::builder()
        .conf_file(
            "selfservice-profile.json",
            &profile_with_rule(&json!({"weights": {"telephoneNumber": 2}})),
        )
        .start();
    let user = person_with(&weighted, &json!({"telephoneNumber": "555"}));
    assert_eq!(
        own(&weighted, &user)["completeness"].as_f64(),
        Some(idm(6.0, 15.0)),
        "14 slots, telephoneNumber weighing 2: 6 of 15"
    );
    // userName and the double-weighted telephoneNumber: 3 of 5, exactly 60.
    let second = person_with(&server, &json!({"telephoneNumber": "555"}));
    assert_eq!(own(&server, &second)["completeness"], json!(60.0), "weight 2: 3 of 5");
}

#[test]
fn an_inline_script_computes_the_score() {
    let rule = json!({"script": {"type": "text/rhai",
        "source": "if user.telephoneNumber != () && user.city != () { 90.5 } else if user.telephoneNumber != () { 45 } else { 12.25 }"}});
    let server = TestServer::builder()
        .conf_file("selfservice-profile.json", &profile_with_rule(&rule))
        .start();
    let user = person(&server);
    assert_eq!(own(&server, &user)["completeness"].as_f64(), Some(12.25));
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "add", "field": "telephoneNumber", "value": "555"}]),
    );
    assert_eq!(own(&server, &user)["completeness"].as_f64(), Some(45.0));
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "add", "field": "city", "value": "Oslo"}]),
    );
    assert_eq!(own(&server, &user)["completeness"].as_f64(), Some(90.5));
    assert_eq!(stored_score(&server, &user.id).as_f64(), Some(90.5));
}

#[test]
fn a_script_rule_changed_at_runtime_is_used_and_stored_scores_follow() {
    const SCRIPT: &str = "scripts/completeness.rhai";
    let rule = json!({"script": {"type": "text/rhai", "file": SCRIPT}});
    let server = TestServer::builder()
        .edit(|project| {
            std::fs::write(
                project.join(SCRIPT),
                "// first rule\nif user.telephoneNumber != () { 80.0 } else { 10.0 }\n",
            )
            .unwrap();
        })
        .conf_file("selfservice-profile.json", &profile_with_rule(&rule))
        .start();
    let with_phone = person_with(&server, &json!({"telephoneNumber": "555"}));
    let without = person(&server);
    assert_eq!(own(&server, &with_phone)["completeness"].as_f64(), Some(80.0));
    assert_eq!(own(&server, &without)["completeness"].as_f64(), Some(10.0));
    assert_eq!(stored_score(&server, &without.id).as_f64(), Some(10.0));

    let path = server.project().join(SCRIPT);
    let temporary = server.project().join("scripts/.completeness.rhai.saving");
    std::fs::write(
        &temporary,
        "// second rule\nif user.telephoneNumber != () { 95.0 } else { 20.0 }\n",
    )
    .unwrap();
    std::fs::rename(&temporary, &path).unwrap();
    server.wait_until(RELOAD, "the endpoint to answer the new rule", || {
        own(&server, &without)["completeness"].as_f64() == Some(20.0)
    });
    assert_eq!(own(&server, &with_phone)["completeness"].as_f64(), Some(95.0));
    // The stored scores are recomputed in the background: queries see the new figures.
    server.wait_until(RELOAD, "the stored scores to follow the new rule", || {
        stored_score(&server, &without.id).as_f64() == Some(20.0)
            && stored_score(&server, &with_phone.id).as_f64() == Some(95.0)
    });
    assert_eq!(
        query_ids(&server, "/_meta/profileCompleteness%20eq%2020"),
        sorted(&[&without])
    );
}

// ---------------------------------------------------------------------------------------------
// The stored score and queries
// ---------------------------------------------------------------------------------------------

#[test]
fn the_stored_score_follows_every_write() {
    let server = TestServer::start();
    let user = person_with(&server, &json!({"city": "Oslo"}));
    assert_eq!(stored_score(&server, &user.id), json!(35.714287), "on create");
    // The user's own patch.
    let own_patch = user
        .actor(&server)
        .patch(
            &format!("/openidm/managed/user/{}", user.id),
            &json!([{"operation": "replace", "field": "/description", "value": "me"}]),
        )
        .send();
    assert_eq!(own_patch.status, 200, "{}", own_patch.text);
    assert_eq!(
        stored_score(&server, &user.id),
        json!(42.857143),
        "on the user's own patch"
    );
    admin_patch(
        &server,
        &user.id,
        &json!([{"operation": "add", "field": "telephoneNumber", "value": "555"}]),
    );
    assert_eq!(
        stored_score(&server, &user.id).as_f64(),
        Some(50.0),
        "on an admin patch"
    );
    let mut body = read_user(&server, &user.id);
    body.as_object_mut().unwrap().remove("telephoneNumber");
    body.as_object_mut().unwrap().remove("city");
    let put = server
        .admin()
        .put(&format!("/openidm/managed/user/{}", user.id), &body)
        .send();
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(stored_score(&server, &user.id), json!(35.714287), "on update");
}

#[test]
fn a_profile_form_updates_the_stored_score() {
    let server = TestServer::builder()
        .conf_file(
            "selfservice-profile.json",
            r#"{"stageConfigs": [{"name": "conditionaluser", "identityServiceUrl": "managed/user",
                "condition": {"type": "profileCompleteness", "percentLessThan": 30},
                "evaluateConditionOnField": "user",
                "onConditionTrue": {"name": "attributecollection", "identityServiceUrl": "managed/user",
                    "uiConfig": {"displayName": "More about you", "purpose": "p", "buttonText": "Save"},
                    "attributes": [{"name": "telephoneNumber", "isRequired": true}]}}]}"#,
        )
        .start();
    let user = person(&server);
    let ended = user
        .actor(&server)
        .post(
            "/openidm/selfservice/profile?_action=submitRequirements",
            &json!({"input": {"attributes": {"telephoneNumber": "555"}}}),
        )
        .send();
    assert_eq!(ended.body["tag"], "end", "{}", ended.text);
    assert_eq!(stored_score(&server, &user.id), json!(35.714287));
    assert_eq!(own(&server, &user)["completeness"], json!(35.714287));
    let again = user.actor(&server).get("/openidm/selfservice/profile").send();
    assert_eq!(
        again.body["requirements"],
        json!({}),
        "35.7 is not < 30: {}",
        again.text
    );
}

#[test]
fn administrators_query_users_by_completeness() {
    let server = TestServer::start();
    let low = person(&server); // 28.571428
    let middle = person_with(&server, &json!({"telephoneNumber": "555", "city": "Oslo"})); // 42.857143
    let high = person_with(
        &server,
        &json!({"telephoneNumber": "555", "city": "Oslo", "country": "NO", "postalCode": "0150",
                "description": "d"}),
    ); // 9/14 = 64.28571
    let below_60 = "%2F_meta%2FprofileCompleteness%20lt%2060";
    assert_eq!(query_ids(&server, below_60), sorted(&[&low, &middle]));
    assert_eq!(
        query_ids(&server, "/_meta/profileCompleteness%20ge%2060"),
        sorted(&[&high])
    );
    assert_eq!(
        query_ids(
            &server,
            "/_meta/profileCompleteness%20gt%2030%20and%20/_meta/profileCompleteness%20lt%2060"
        ),
        sorted(&[&middle])
    );
    // A write moves a user across the line.
    admin_patch(
        &server,
        &middle.id,
        &json!([{"operation": "add", "field": "country", "value": "NO"},
                {"operation": "add", "field": "postalCode", "value": "0150"},
                {"operation": "add", "field": "description", "value": "d"}]),
    );
    assert_eq!(query_ids(&server, below_60), sorted(&[&low]));
}

#[test]
fn a_changed_rule_recomputes_the_stored_scores() {
    let server = TestServer::start();
    let first = person(&server);
    let second = person_with(&server, &json!({"telephoneNumber": "555"}));
    let below_60 = "/_meta/profileCompleteness%20lt%2060";
    assert_eq!(query_ids(&server, below_60), sorted(&[&first, &second]));
    save_conf(
        &server,
        "selfservice-profile.json",
        &profile_with_rule(&json!({"attributes": ["userName", "telephoneNumber"]})),
    );
    server.wait_until(RELOAD, "the new rule on the endpoint", || {
        figure(&server, &second.id).as_f64() == Some(100.0)
    });
    server.wait_until(RELOAD, "the stored scores to be recomputed", || {
        query_ids(&server, below_60) == sorted(&[&first])
    });
    assert_eq!(stored_score(&server, &first.id).as_f64(), Some(50.0));
    assert_eq!(stored_score(&server, &second.id).as_f64(), Some(100.0));
}

#[test]
fn a_rule_changed_while_stopped_is_applied_at_the_next_start() {
    on_each_backend(|builder| {
        let mut before = builder.start();
        let first = person(&before);
        let second = person_with(&before, &json!({"telephoneNumber": "555"}));
        let below_60 = "/_meta/profileCompleteness%20lt%2060";
        assert_eq!(query_ids(&before, below_60), sorted(&[&first, &second]));
        before.stop();
        save_conf(
            &before,
            "selfservice-profile.json",
            &profile_with_rule(&json!({"attributes": ["userName", "telephoneNumber"]})),
        );
        let after = TestServer::builder().sharing(&before).start();
        after.wait_until(RELOAD, "the stored scores to be recomputed at start", || {
            query_ids(&after, below_60) == sorted(&[&first])
        });
        assert_eq!(stored_score(&after, &first.id).as_f64(), Some(50.0));
        assert_eq!(stored_score(&after, &second.id).as_f64(), Some(100.0));
    });
}

/// The stored scores of `people`, as `figure`s.
fn stored_scores(server: &TestServer, people: &[Person]) -> Vec<Option<f64>> {
    people
        .iter()
        .map(|person| stored_score(server, &person.id).as_f64())
        .collect()
}

/// Issue 21, point 3: three nodes see the rule change at once; exactly one rescores (every
/// user's metadata is written once), through the rescoring lease in the database.
#[test]
fn a_changed_rule_is_rescored_once_across_three_nodes() {
    ferridm_tests::on_postgres(|builder| {
        let first = builder.start();
        let second = TestServer::builder().sharing(&first).start();
        let third = TestServer::builder().sharing(&first).start();
        let people: Vec<Person> = (0..6).map(|_| person(&first)).collect();
        let store = &first.state().store;
        let writes = |people: &[Person]| -> Vec<i64> {
            people
                .iter()
                .map(|person| store.metadata_writes("user", &person.id))
                .collect()
        };
        let before = writes(&people);
        save_conf(
            &first,
            "selfservice-profile.json",
            &profile_with_rule(&json!({"attributes": ["userName", "telephoneNumber"]})),
        );
        for node in [&first, &second, &third] {
            node.wait_until(RELOAD, "every node to rescore or leave it to another", || {
                stored_scores(node, &people).iter().all(|score| *score == Some(50.0))
                    && !ferridm::service::completeness::rule_changed(&node.state())
            });
        }
        let after: Vec<i64> = writes(&people);
        let once: Vec<i64> = before.iter().map(|count| count + 1).collect();
        assert_eq!(after, once, "each user's score was written exactly once");
    });
}

/// Issue 21, point 3: a rescoring whose node died (its lease runs out with progress recorded)
/// is resumed by another node from that progress, on a heartbeat.
#[test]
fn a_rescoring_left_by_a_dead_node_is_resumed_where_it_stopped() {
    on_each_backend(|builder| {
        let server = builder
            .manual_clock()
            .conf_file("ferridm.json", r#"{"cluster": {"heartbeatMillis": 20}}"#)
            .start();
        let people: Vec<Person> = (0..6).map(|_| person(&server)).collect();
        let state = server.state();
        let old_scores = stored_scores(&server, &people);

        // A node that died after the first three users: its lease, for the new rule, with its
        // progress (the cookie after three users in creation order).
        let rule = json!({"attributes": ["userName", "telephoneNumber"]});
        let staged = tempfile::tempdir().unwrap();
        let staged_conf = staged.path().join("conf");
        std::fs::create_dir_all(&staged_conf).unwrap();
        for entry in std::fs::read_dir(server.conf()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), staged_conf.join(entry.file_name())).unwrap();
        }
        std::fs::write(staged_conf.join("selfservice-profile.json"), profile_with_rule(&rule)).unwrap();
        std::os::unix::fs::symlink(server.project().join("scripts"), staged.path().join("scripts")).unwrap();
        let fingerprint = ferridm::check(&staged_conf).unwrap().completeness.fingerprint();
        let generation = state.generation();
        let index = &generation.managed.get("user").unwrap().index;
        let three = state
            .store
            .query(&ferridm_store::ObjectQuery::walk(
                "user",
                &ferridm_core::filter::Filter::True,
                index,
                3,
                None,
                false,
            ))
            .unwrap();
        let now = state.clock.now_millis();
        let job = "completeness-rescoring";
        state
            .store
            .claim_work(job, &fingerprint, "gone:1", now, now + 30_000)
            .unwrap()
            .unwrap();
        assert!(
            state
                .store
                .record_work_progress(job, "gone:1", (&three.cookie.unwrap(), 3), now + 30_000)
                .unwrap()
        );
        let work = server.admin().get("/openidm/cluster/work?_queryFilter=true").send();
        assert_eq!(work.status, 200, "{}", work.text);
        assert_eq!(work.body["result"][0]["_id"], json!(job));
        assert_eq!(work.body["result"][0]["holder"], json!("gone:1"));
        assert_eq!(work.body["result"][0]["done"], json!(3));

        // The rule arrives; the dead node's lease still runs, so nobody rescores yet.
        save_conf(&server, "selfservice-profile.json", &profile_with_rule(&rule));
        server.wait_until(RELOAD, "the new rule on the endpoint", || {
            figure(&server, &people[0].id).as_f64() == Some(50.0)
        });
        assert_eq!(
            stored_scores(&server, &people),
            old_scores,
            "the lease is another node's"
        );

        // Its lease runs out: the next heartbeat resumes after the third user.
        server.advance_clock(Duration::from_secs(31));
        server.wait_until(RELOAD, "the rescoring to be resumed and finished", || {
            !ferridm::service::completeness::rule_changed(&state)
        });
        // The rule is recorded just before the lease is released: wait for the release too.
        server.wait_until(RELOAD, "the finished job's lease to be gone", || {
            let work = server.admin().get("/openidm/cluster/work?_queryFilter=true").send();
            work.body["resultCount"] == json!(0)
        });
        let scores = stored_scores(&server, &people);
        assert_eq!(scores[..3], old_scores[..3], "the dead node's part is not redone");
        assert_eq!(scores[3..], [Some(50.0); 3], "the rest is rescored");
    });
}
