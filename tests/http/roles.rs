//! Roles that compute themselves (issue 15, point 5): conditional roles granted to exactly the
//! users matching their `condition` (on the users' own writes, and for every user in the
//! background when the condition changes), and temporal constraints on roles and on grants
//! honoured by `effectiveRoles` around the server's clock.

use std::time::Duration;

use ferridm_tests::{Reply, TestServer, on_each_backend, unique};
use serde_json::{Value, json};

use crate::crud::user_with;

/// How long a background re-evaluation may take in a test.
const REEVALUATION: Duration = Duration::from_secs(30);

fn create(server: &TestServer, object_type: &str, body: &Value) -> String {
    let reply = server
        .admin()
        .post(&format!("/openidm/managed/{object_type}?_action=create"), body)
        .send();
    assert_eq!(reply.status, 201, "creating a {object_type}: {}", reply.text);
    reply.body["_id"].as_str().unwrap().to_owned()
}

fn patch(server: &TestServer, path: &str, operations: &Value) -> Reply {
    let reply = server.admin().patch(path, operations).send();
    assert_eq!(reply.status, 200, "patching {path}: {}", reply.text);
    reply
}

/// The ids of a user's effective roles, sorted.
fn effective_roles(server: &TestServer, user: &str) -> Vec<String> {
    let reply = server.admin().get(&format!("/openidm/managed/user/{user}")).send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut ids: Vec<String> = reply.body["effectiveRoles"]
        .as_array()
        .unwrap_or_else(|| panic!("no effectiveRoles: {}", reply.text))
        .iter()
        .map(|role| role["_refResourceId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// A user's grant of `role` as `_fields=roles` shows it.
fn grant_of(server: &TestServer, user: &str, role: &str) -> Option<Value> {
    let reply = server
        .admin()
        .get(&format!("/openidm/managed/user/{user}?_fields=roles"))
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|grant| grant["_refResourceId"] == role)
        .cloned()
}

fn user_in(server: &TestServer, city: &str) -> String {
    create(server, "user", &user_with(&unique("cond"), &json!({"city": city})))
}

#[test]
fn a_conditional_role_follows_each_users_own_writes() {
    on_each_backend(|builder| {
        let server = builder.start();
        let role = create(
            &server,
            "role",
            &json!({"name": unique("portland"), "condition": "/city eq \"Portland\""}),
        );
        let direct = create(&server, "role", &json!({"name": unique("direct")}));

        // Created matching: granted, as a conditional grant.
        let user = user_in(&server, "Portland");
        assert_eq!(effective_roles(&server, &user), vec![role.clone()]);
        let grant = grant_of(&server, &user, &role).expect("a conditional grant");
        assert_eq!(grant["_refProperties"]["_grantType"], "conditional", "{grant}");
        // Members list the conditional grant from the role's side too.
        let members = server
            .admin()
            .get(&format!("/openidm/managed/role/{role}?_fields=members"))
            .send();
        assert_eq!(
            members.body["members"][0]["_refResourceId"],
            user.as_str(),
            "{}",
            members.text
        );

        // A direct grant beside it is kept through every change of the condition's outcome.
        patch(
            &server,
            &format!("/openidm/managed/user/{user}"),
            &json!([{"operation": "add", "field": "/roles/-", "value": {"_ref": format!("managed/role/{direct}")}}]),
        );
        let mut both = vec![role.clone(), direct.clone()];
        both.sort();
        assert_eq!(effective_roles(&server, &user), both);

        // Moving away revokes it; moving back grants it again.
        patch(
            &server,
            &format!("/openidm/managed/user/{user}"),
            &json!([{"operation": "replace", "field": "/city", "value": "Seattle"}]),
        );
        assert_eq!(effective_roles(&server, &user), vec![direct.clone()]);
        assert!(grant_of(&server, &user, &role).is_none());
        let mut body = user_with(&unique("cond"), &json!({"city": "Portland"}));
        body["userName"] = server.admin().get(&format!("/openidm/managed/user/{user}")).send().body["userName"].clone();
        let replaced = server
            .admin()
            .put(&format!("/openidm/managed/user/{user}"), &body)
            .header("If-Match", "*")
            .send();
        assert_eq!(replaced.status, 200, "{}", replaced.text);
        assert_eq!(effective_roles(&server, &user), both);

        // A client cannot drop a grant the condition still makes: it comes back.
        patch(
            &server,
            &format!("/openidm/managed/user/{user}"),
            &json!([{"operation": "remove", "field": "/roles", "value": {"_ref": format!("managed/role/{role}")}}]),
        );
        assert_eq!(effective_roles(&server, &user), both);

        // A user that never matched is never granted it.
        let elsewhere = user_in(&server, "Boston");
        assert!(effective_roles(&server, &elsewhere).is_empty());
    });
}

#[test]
fn a_changed_condition_is_re_evaluated_for_every_user_in_the_background() {
    on_each_backend(|builder| {
        let server = builder.start();
        let portland: Vec<String> = (0..3).map(|_| user_in(&server, "Portland")).collect();
        let boston: Vec<String> = (0..2).map(|_| user_in(&server, "Boston")).collect();

        // A new conditional role reaches the users that already match.
        let role = create(
            &server,
            "role",
            &json!({"name": unique("city"), "condition": "/city eq \"Portland\""}),
        );
        server.wait_until(REEVALUATION, "the new role to reach every Portland user", || {
            portland
                .iter()
                .all(|user| effective_roles(&server, user) == vec![role.clone()])
        });
        assert!(boston.iter().all(|user| effective_roles(&server, user).is_empty()));

        // Its condition changes: the old matches lose it, the new ones get it.
        patch(
            &server,
            &format!("/openidm/managed/role/{role}"),
            &json!([{"operation": "replace", "field": "/condition", "value": "/city eq \"Boston\""}]),
        );
        server.wait_until(REEVALUATION, "the changed condition to move the grants", || {
            boston
                .iter()
                .all(|user| effective_roles(&server, user) == vec![role.clone()])
                && portland.iter().all(|user| effective_roles(&server, user).is_empty())
        });

        // A direct grant survives the condition being removed; conditional ones do not.
        patch(
            &server,
            &format!("/openidm/managed/user/{}", portland[0]),
            &json!([{"operation": "add", "field": "/roles/-", "value": {"_ref": format!("managed/role/{role}")}}]),
        );
        patch(
            &server,
            &format!("/openidm/managed/role/{role}"),
            &json!([{"operation": "remove", "field": "/condition"}]),
        );
        server.wait_until(REEVALUATION, "the removed condition to revoke its grants", || {
            boston.iter().all(|user| effective_roles(&server, user).is_empty())
        });
        assert_eq!(effective_roles(&server, &portland[0]), vec![role.clone()]);
        assert_eq!(effective_roles(&server, &portland[1]), Vec::<String>::new());
    });
}

#[test]
fn profile_completeness_can_drive_a_conditional_role() {
    on_each_backend(|builder| {
        let server = builder.start();
        let role = create(
            &server,
            "role",
            &json!({"name": unique("complete"), "condition": "/_meta/profileCompleteness ge 50"}),
        );
        let sparse = create(
            &server,
            "user",
            &json!({"userName": unique("sparse"), "givenName": "S", "sn": "P", "mail": "s@example.com"}),
        );
        let before = effective_roles(&server, &sparse);
        let completeness = |user: &str| {
            server
                .admin()
                .get(&format!("/openidm/managed/user/{user}?_fields=_meta"))
                .send()
                .body["_meta"]["profileCompleteness"]
                .as_f64()
                .unwrap()
        };
        assert_eq!(
            before.is_empty(),
            completeness(&sparse) < 50.0,
            "granted iff complete enough"
        );
        let full = create(
            &server,
            "user",
            &user_with(
                &unique("full"),
                &json!({"telephoneNumber": "555", "postalAddress": "1 Main St", "city": "Portland",
                        "postalCode": "97201", "country": "US", "stateProvince": "OR", "description": "d"}),
            ),
        );
        assert!(completeness(&full) >= 50.0);
        assert_eq!(effective_roles(&server, &full), [role]);
    });
}

#[test]
fn a_condition_that_is_no_query_filter_is_refused() {
    on_each_backend(|builder| {
        let server = builder.start();
        let reply = server
            .admin()
            .post(
                "/openidm/managed/role?_action=create",
                &json!({"name": unique("bad"), "condition": "/city eq"}),
            )
            .send();
        assert_eq!(reply.status, 403, "{}", reply.text);
        assert_eq!(
            reply.body["detail"]["failedPolicyRequirements"],
            json!([{"policyRequirements": [{"policyRequirement": "VALID_QUERY_FILTER"}], "property": "condition"}])
        );
        let role = create(&server, "role", &json!({"name": unique("good")}));
        let patched = server
            .admin()
            .patch(
                &format!("/openidm/managed/role/{role}"),
                &json!([{"operation": "replace", "field": "/condition", "value": "((("}]),
            )
            .send();
        assert_eq!(patched.status, 403, "{}", patched.text);
        assert_eq!(patched.body["message"], "Failed policy validation");
    });
}

/// An ISO-8601 interval from `from` to `to` seconds away from now (by the server's clock).
fn interval(from: i64, to: i64) -> Value {
    let now = chrono::Utc::now();
    let at =
        |seconds: i64| (now + chrono::Duration::seconds(seconds)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!([{"duration": format!("{}/{}", at(from), at(to))}])
}

#[test]
fn temporal_constraints_on_roles_and_grants_hold_around_now() {
    on_each_backend(|builder| {
        let server = builder.manual_clock().start();
        // Effective for the next hour; effective from an hour on for an hour.
        let current = create(
            &server,
            "role",
            &json!({"name": unique("now"), "temporalConstraints": interval(-60, 3600)}),
        );
        let later = create(
            &server,
            "role",
            &json!({"name": unique("later"), "temporalConstraints": interval(3600, 7200)}),
        );
        let plain = create(&server, "role", &json!({"name": unique("plain")}));
        let user = create(
            &server,
            "user",
            &user_with(
                &unique("temporal"),
                &json!({"roles": [
                    {"_ref": format!("managed/role/{current}")},
                    {"_ref": format!("managed/role/{later}")},
                    {"_ref": format!("managed/role/{plain}"),
                     "_refProperties": {"temporalConstraints": interval(-60, 1800)}},
                ]}),
            ),
        );
        let mut now_effective = vec![current.clone(), plain.clone()];
        now_effective.sort();
        assert_eq!(effective_roles(&server, &user), now_effective);

        // Half an hour on, the grant of `plain` has ended.
        server.advance_clock(Duration::from_secs(1900));
        assert_eq!(effective_roles(&server, &user), vec![current.clone()]);
        // An hour on, `current` has ended and `later` has begun.
        server.advance_clock(Duration::from_secs(1800));
        assert_eq!(effective_roles(&server, &user), vec![later.clone()]);
        // Past both, nothing is effective, though every grant is still held.
        server.advance_clock(Duration::from_secs(3700));
        assert!(effective_roles(&server, &user).is_empty());
        let held = server
            .admin()
            .get(&format!("/openidm/managed/user/{user}?_fields=roles"))
            .send();
        assert_eq!(held.body["roles"].as_array().unwrap().len(), 3, "{}", held.text);

        // Constraints that are no intervals are refused, on a role and on a grant.
        let bad_role = server
            .admin()
            .post(
                "/openidm/managed/role?_action=create",
                &json!({"name": unique("bad"), "temporalConstraints": [{"duration": "soon"}]}),
            )
            .send();
        assert_eq!(bad_role.status, 403, "{}", bad_role.text);
        assert_eq!(
            bad_role.body["detail"]["failedPolicyRequirements"][0]["policyRequirements"][0]["policyRequirement"],
            "TEMPORAL_CONSTRAINT_FORMAT"
        );
        let bad_grant = server
            .admin()
            .patch(
                &format!("/openidm/managed/user/{user}"),
                &json!([{"operation": "add", "field": "/roles/-", "value": {
                    "_ref": format!("managed/role/{current}"),
                    "_refProperties": {"temporalConstraints": [{"duration": "2026-01-01/never"}]}}}]),
            )
            .send();
        assert_eq!(bad_grant.status, 400, "{}", bad_grant.text);
    });
}

/// A re-evaluation whose node died (its lease runs out with progress recorded) is resumed by
/// another node from that progress, on a heartbeat: the users the dead node had judged are not
/// judged again.
#[test]
fn a_re_evaluation_left_by_a_dead_node_is_resumed_where_it_stopped() {
    on_each_backend(|builder| {
        let server = builder
            .manual_clock()
            .conf_file("ferridm.json", r#"{"cluster": {"heartbeatMillis": 20}}"#)
            .start();
        let users: Vec<String> = (0..6).map(|_| user_in(&server, "Portland")).collect();
        let state = server.state();
        let generation = state.generation();
        let three = state
            .store
            .query(&ferridm_store::ObjectQuery::walk(
                "user",
                &ferridm_core::filter::Filter::True,
                &generation.managed.get("user").unwrap().index,
                3,
                None,
                false,
            ))
            .unwrap();
        let (role, condition) = (unique("resumed"), "/city eq \"Portland\"");
        let now = state.clock.now_millis();
        let job = "conditional-roles";
        let target = format!("{role}/{condition}");
        state
            .store
            .claim_work(job, &target, "gone:1", now, now + 30_000)
            .unwrap()
            .unwrap();
        assert!(
            state
                .store
                .record_work_progress(job, "gone:1", (&three.cookie.unwrap(), 3), now + 30_000)
                .unwrap()
        );

        // The role arrives while the dead node's lease still runs: nobody re-evaluates yet.
        let created = server
            .admin()
            .put(
                &format!("/openidm/managed/role/{role}"),
                &json!({"name": role, "condition": condition}),
            )
            .header("If-None-Match", "*")
            .send();
        assert_eq!(created.status, 201, "{}", created.text);
        let work = server.admin().get("/openidm/cluster/work?_queryFilter=true").send();
        assert_eq!(work.body["result"][0]["holder"], json!("gone:1"), "{}", work.text);
        assert!(users.iter().all(|user| effective_roles(&server, user).is_empty()));

        // Its lease runs out: this node resumes after the three users the dead one judged.
        server.advance_clock(Duration::from_secs(31));
        server.wait_until(REEVALUATION, "the re-evaluation to be resumed and finished", || {
            users[3..]
                .iter()
                .all(|user| effective_roles(&server, user) == vec![role.clone()])
        });
        assert!(users[..3].iter().all(|user| effective_roles(&server, user).is_empty()));
        server.wait_until(REEVALUATION, "the lease to be released", || {
            let work = server.admin().get("/openidm/cluster/work?_queryFilter=true").send();
            work.body["result"].as_array().is_some_and(Vec::is_empty)
        });
    });
}

/// `effectiveRoles` is queryable: a filter on it is answered from the grants it is computed
/// from, direct and conditional alike.
#[test]
fn effective_roles_are_queryable() {
    on_each_backend(|builder| {
        let server = builder.start();
        let role = create(
            &server,
            "role",
            &json!({"name": unique("q"), "condition": "/city eq \"Portland\""}),
        );
        let conditional = user_in(&server, "Portland");
        let direct = create(
            &server,
            "user",
            &user_with(
                &unique("direct"),
                &json!({"roles": [{"_ref": format!("managed/role/{role}")}]}),
            ),
        );
        let _neither = user_in(&server, "Boston");
        let path = |filter: &str| {
            format!(
                "/openidm/managed/user?_queryFilter={}&_fields=_id",
                ferridm_tests::url_encode(filter)
            )
        };
        let found = |filter: &str| -> Vec<String> {
            let reply = server.admin().get(&path(filter)).send();
            assert_eq!(reply.status, 200, "{filter}: {}", reply.text);
            let mut ids: Vec<String> = reply.body["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|user| user["_id"].as_str().unwrap().to_owned())
                .collect();
            ids.sort();
            ids
        };
        let mut both = vec![conditional.clone(), direct.clone()];
        both.sort();
        assert_eq!(found(&format!("effectiveRoles/_refResourceId eq \"{role}\"")), both);
        assert_eq!(found(&format!("effectiveRoles/_ref eq \"managed/role/{role}\"")), both);
        assert_eq!(
            found(&format!(
                "effectiveRoles/_refResourceId eq \"{role}\" and city eq \"Portland\""
            )),
            vec![conditional.clone()]
        );
        // Edge properties filter too: how each was granted.
        assert_eq!(
            found("roles/_refProperties/_grantType eq \"conditional\""),
            vec![conditional.clone()]
        );
        assert_eq!(
            found("roles pr and !(roles/_refProperties/_grantType pr)"),
            vec![direct.clone()]
        );
    });
}
