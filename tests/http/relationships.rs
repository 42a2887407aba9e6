//! Relationships (issue 15, idm-api.md §2.8, §2.9): the shipped `managed.json` relates users to
//! roles (`roles` ↔ `members`), to their manager (`manager` ↔ `reports`) and to internal roles
//! (`authzRoles`), and roles to assignments. References are stored as edges apart from the
//! objects: written on either side, read on both in IDM's shape, validated, removed with
//! either object, and followed by `effectiveRoles` and `effectiveAssignments`.

use ferridm_tests::{Reply, TestServer, on_each_backend, unique};
use serde_json::{Value, json};

use crate::crud::user_with;

fn create(server: &TestServer, object_type: &str, body: &Value) -> Reply {
    let reply = server
        .admin()
        .post(&format!("/openidm/managed/{object_type}?_action=create"), body)
        .send();
    assert_eq!(reply.status, 201, "creating a {object_type}: {}", reply.text);
    reply
}

fn role(server: &TestServer, name: &str) -> String {
    create(server, "role", &json!({"name": unique(name)})).body["_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn read(server: &TestServer, path: &str) -> Value {
    let reply = server.admin().get(path).send();
    assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    reply.body
}

/// The `_refResourceId`s of a relationship value, sorted.
fn ids(value: &Value) -> Vec<String> {
    let mut ids: Vec<String> = value
        .as_array()
        .unwrap_or_else(|| panic!("not an array of references: {value}"))
        .iter()
        .map(|reference| reference["_refResourceId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[test]
fn roles_granted_on_either_side_are_read_on_both_in_idm_shape() {
    on_each_backend(|builder| {
        let server = builder.start();
        let (admin_role, staff_role) = (role(&server, "admin"), role(&server, "staff"));
        let name = unique("rel");
        let user = create(
            &server,
            "user",
            &user_with(
                &name,
                &json!({"roles": [{"_ref": format!("managed/role/{admin_role}")}]}),
            ),
        );
        let id = user.body["_id"].as_str().unwrap().to_owned();
        assert!(user.body.get("roles").is_none(), "roles are not returned by default");
        assert_eq!(
            user.body["effectiveRoles"],
            json!([{"_refResourceCollection": "managed/role", "_refResourceId": admin_role,
                    "_ref": format!("managed/role/{admin_role}")}])
        );

        let with_roles = read(&server, &format!("/openidm/managed/user/{id}?_fields=roles"));
        let reference = &with_roles["roles"][0];
        assert_eq!(reference["_ref"], format!("managed/role/{admin_role}"));
        assert_eq!(reference["_refResourceCollection"], "managed/role");
        assert_eq!(reference["_refResourceId"], admin_role.as_str());
        let edge_id = reference["_refProperties"]["_id"].as_str().unwrap().to_owned();
        assert!(reference["_refProperties"]["_rev"].is_string(), "{reference}");
        assert_eq!(
            with_roles.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["_id", "_rev", "roles"]
        );

        // The reverse side holds the same edge.
        let members = read(&server, &format!("/openidm/managed/role/{admin_role}?_fields=members"));
        assert_eq!(ids(&members["members"]), [id.as_str()]);
        assert_eq!(members["members"][0]["_refProperties"]["_id"], edge_id.as_str());
        assert_eq!(members["members"][0]["_ref"], format!("managed/user/{id}"));

        // Granting from the role's side shows on the user's.
        let granted = server
            .admin()
            .patch(
                &format!("/openidm/managed/role/{staff_role}"),
                &json!([{"operation": "add", "field": "/members/-", "value": {"_ref": format!("managed/user/{id}")}}]),
            )
            .send();
        assert_eq!(granted.status, 200, "{}", granted.text);
        let user_now = read(
            &server,
            &format!("/openidm/managed/user/{id}?_fields=roles,effectiveRoles"),
        );
        assert_eq!(
            ids(&user_now["roles"]),
            sorted(vec![admin_role.clone(), staff_role.clone()])
        );
        assert_eq!(ids(&user_now["effectiveRoles"]), ids(&user_now["roles"]));
        assert_eq!(
            user_now["roles"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["_refResourceId"] == admin_role.as_str())
                .unwrap()["_refProperties"]["_id"],
            edge_id.as_str(),
            "the edge kept is the same edge"
        );

        // `*_ref` adds every relationship; a query page carries them too.
        let all = read(&server, &format!("/openidm/managed/user/{id}?_fields=*_ref"));
        assert_eq!(ids(&all["roles"]).len(), 2);
        assert!(all["authzRoles"].is_array(), "{all}");
        assert!(
            all.get("userName").is_none(),
            "*_ref alone selects references only: {all}"
        );
        let page = read(
            &server,
            "/openidm/managed/role?_queryFilter=true&_fields=name,members&_sortKeys=name",
        );
        let staff = page["result"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["_id"] == staff_role.as_str())
            .unwrap();
        assert_eq!(ids(&staff["members"]), [id.as_str()]);
    });
}

#[test]
fn patches_add_remove_and_clear_references_and_put_replaces_them() {
    on_each_backend(|builder| {
        let server = builder.start();
        let (first, second) = (role(&server, "first"), role(&server, "second"));
        let name = unique("patch");
        let id = create(&server, "user", &user_with(&name, &json!({}))).body["_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/openidm/managed/user/{id}");
        let patch = |operations: Value| {
            let reply = server
                .admin()
                .patch(&format!("{path}?_fields=roles"), &operations)
                .send();
            assert_eq!(reply.status, 200, "{operations}: {}", reply.text);
            reply.body
        };
        let reference = |role: &str| json!({"_ref": format!("managed/role/{role}")});
        let added = patch(json!([
            {"operation": "add", "field": "/roles/-", "value": reference(&first)},
            {"operation": "add", "field": "/roles/-", "value": reference(&second)}
        ]));
        assert_eq!(ids(&added["roles"]), sorted(vec![first.clone(), second.clone()]));
        let rev_after_add = added["_rev"].clone();

        // Adding a reference that is already there changes nothing: no new revision.
        let again = patch(json!([{"operation": "add", "field": "/roles/-", "value": reference(&first)}]));
        assert_eq!(ids(&again["roles"]).len(), 2);
        assert_eq!(again["_rev"], rev_after_add);

        // Removing by value needs only the `_ref`.
        let removed = patch(json!([{"operation": "remove", "field": "/roles", "value": reference(&first)}]));
        assert_eq!(ids(&removed["roles"]), [second.as_str()]);
        let members = read(&server, &format!("/openidm/managed/role/{first}?_fields=members"));
        assert_eq!(members["members"], json!([]), "the reverse side lost it too");

        // PUT without roles keeps them; with roles replaces them.
        let current = read(&server, &path);
        let mut body = current.clone();
        body.as_object_mut().unwrap().remove("effectiveRoles");
        body.as_object_mut().unwrap().remove("effectiveAssignments");
        body["description"] = json!("changed");
        let put = server
            .admin()
            .put(&format!("{path}?_fields=roles,description"), &body)
            .send();
        assert_eq!(put.status, 200, "{}", put.text);
        assert_eq!(ids(&put.body["roles"]), [second.as_str()]);
        body["roles"] = json!([reference(&first)]);
        let put = server.admin().put(&format!("{path}?_fields=roles"), &body).send();
        assert_eq!(put.status, 200, "{}", put.text);
        assert_eq!(ids(&put.body["roles"]), [first.as_str()]);

        // Removing the field clears them (a patch value of null is refused as missing, IDM's
        // rule for every patch).
        let cleared = patch(json!([{"operation": "remove", "field": "/roles"}]));
        assert_eq!(cleared["roles"], json!([]));
        assert_eq!(read(&server, &path)["effectiveRoles"], json!([]));
    });
}

#[test]
fn a_manager_is_one_reference_and_reports_are_its_reverse() {
    on_each_backend(|builder| {
        let server = builder.start();
        let boss = create(&server, "user", &user_with(&unique("boss"), &json!({}))).body["_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let name = unique("report");
        let report = create(
            &server,
            "user",
            &user_with(&name, &json!({"manager": {"_ref": format!("managed/user/{boss}")}})),
        );
        let report_id = report.body["_id"].as_str().unwrap().to_owned();
        let manager = read(&server, &format!("/openidm/managed/user/{report_id}?_fields=manager"));
        assert_eq!(manager["manager"]["_refResourceId"], boss.as_str(), "{manager}");
        assert!(
            manager["manager"].is_object(),
            "a singleton is one reference: {manager}"
        );
        let reports = read(&server, &format!("/openidm/managed/user/{boss}?_fields=reports"));
        assert_eq!(ids(&reports["reports"]), [report_id.as_str()]);

        // An array for a singleton is refused.
        let refused = server
            .admin()
            .patch(
                &format!("/openidm/managed/user/{report_id}"),
                &json!([{"operation": "replace", "field": "/manager", "value": [{"_ref": format!("managed/user/{boss}")}]}]),
            )
            .send();
        assert_eq!(refused.status, 400, "{}", refused.text);

        // Another manager replaces the first; removing the field clears it.
        let other = create(&server, "user", &user_with(&unique("other"), &json!({}))).body["_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let replaced = server
            .admin()
            .patch(
                &format!("/openidm/managed/user/{report_id}?_fields=manager"),
                &json!([{"operation": "replace", "field": "/manager", "value": {"_ref": format!("managed/user/{other}")}}]),
            )
            .send();
        assert_eq!(replaced.status, 200, "{}", replaced.text);
        assert_eq!(replaced.body["manager"]["_refResourceId"], other.as_str());
        let reports = read(&server, &format!("/openidm/managed/user/{boss}?_fields=reports"));
        assert_eq!(reports["reports"], json!([]));
        let cleared = server
            .admin()
            .patch(
                &format!("/openidm/managed/user/{report_id}?_fields=manager"),
                &json!([{"operation": "remove", "field": "/manager"}]),
            )
            .send();
        assert_eq!(cleared.status, 200, "{}", cleared.text);
        assert_eq!(cleared.body["manager"], Value::Null);
        let restored = server
            .admin()
            .patch(
                &format!("/openidm/managed/user/{report_id}"),
                &json!([{"operation": "add", "field": "/manager", "value": {"_ref": format!("managed/user/{boss}")}}]),
            )
            .send();
        assert_eq!(restored.status, 200, "{}", restored.text);

        // Adding the report from another manager's side moves it: a report has one manager.
        let taken = server
            .admin()
            .patch(
                &format!("/openidm/managed/user/{other}"),
                &json!([{"operation": "add", "field": "/reports/-", "value": {"_ref": format!("managed/user/{report_id}")}}]),
            )
            .send();
        assert_eq!(taken.status, 200, "{}", taken.text);
        let manager = read(&server, &format!("/openidm/managed/user/{report_id}?_fields=manager"));
        assert_eq!(manager["manager"]["_refResourceId"], other.as_str(), "{manager}");
        let reports = read(&server, &format!("/openidm/managed/user/{boss}?_fields=reports"));
        assert_eq!(reports["reports"], json!([]), "the first manager lost the report");
        let moved_back = server
            .admin()
            .patch(
                &format!("/openidm/managed/user/{report_id}"),
                &json!([{"operation": "replace", "field": "/manager", "value": {"_ref": format!("managed/user/{boss}")}}]),
            )
            .send();
        assert_eq!(moved_back.status, 200, "{}", moved_back.text);
        let reports = read(&server, &format!("/openidm/managed/user/{other}?_fields=reports"));
        assert_eq!(reports["reports"], json!([]));

        // Deleting the manager removes the edge from the report.
        let deleted = server.admin().delete(&format!("/openidm/managed/user/{boss}")).send();
        assert_eq!(deleted.status, 200, "{}", deleted.text);
        let manager = read(&server, &format!("/openidm/managed/user/{report_id}?_fields=manager"));
        assert_eq!(manager["manager"], Value::Null, "{manager}");
    });
}

#[test]
fn references_to_missing_objects_or_other_collections_are_refused_and_store_nothing() {
    on_each_backend(|builder| {
        let server = builder.start();
        let name = unique("invalid");
        let missing = server
            .admin()
            .post(
                "/openidm/managed/user?_action=create",
                &user_with(&name, &json!({"roles": [{"_ref": "managed/role/no-such-role"}]})),
            )
            .send();
        assert_eq!(missing.status, 400, "{}", missing.text);
        assert_eq!(
            missing.body["message"], "The referenced relationship &#39;managed/role/no-such-role&#39;, does not exist",
            "messages are HTML-escaped as IDM's are"
        );
        let found = read(
            &server,
            &format!("/openidm/managed/user?_queryFilter=userName+eq+%22{name}%22"),
        );
        assert_eq!(found["resultCount"], 0, "nothing was created");

        for (value, why, status) in [
            (json!([{"_ref": "managed/user/someone"}]), "another collection", 400),
            (json!([{"ref": "managed/role/x"}]), "no _ref", 400),
            (json!(["managed/role/x"]), "not an object", 400),
            (
                json!({"_ref": "managed/role/x"}),
                "not an array (the valid-type policy)",
                403,
            ),
        ] {
            let reply = server
                .admin()
                .post(
                    "/openidm/managed/user?_action=create",
                    &user_with(&unique("invalid"), &json!({"roles": value})),
                )
                .send();
            assert_eq!(reply.status, status, "{why}: {}", reply.text);
        }
    });
}

#[test]
fn effective_assignments_follow_the_roles_of_a_user() {
    on_each_backend(|builder| {
        let server = builder.start();
        let assignment = create(
            &server,
            "assignment",
            &json!({"name": unique("assign"), "description": "d", "mapping": "managedUser_systemLdapAccounts",
                    "attributes": [{"name": "employeeType", "value": ["staff"]}]}),
        );
        let assignment_id = assignment.body["_id"].as_str().unwrap().to_owned();
        let with_assignment = create(
            &server,
            "role",
            &json!({"name": unique("assigned"), "assignments": [{"_ref": format!("managed/assignment/{assignment_id}")}]}),
        );
        let role_id = with_assignment.body["_id"].as_str().unwrap().to_owned();
        let roles = read(
            &server,
            &format!("/openidm/managed/assignment/{assignment_id}?_fields=roles"),
        );
        assert_eq!(ids(&roles["roles"]), [role_id.as_str()]);

        let user = create(
            &server,
            "user",
            &user_with(
                &unique("eff"),
                &json!({"roles": [{"_ref": format!("managed/role/{role_id}")}]}),
            ),
        );
        let assignments = user.body["effectiveAssignments"].as_array().unwrap();
        assert_eq!(assignments.len(), 1, "{}", user.text);
        assert_eq!(assignments[0]["_id"], assignment_id.as_str());
        assert_eq!(assignments[0]["mapping"], "managedUser_systemLdapAccounts");
        assert_eq!(assignments[0]["attributes"][0]["name"], "employeeType");

        // Deleting the role takes it out of the user's effective roles and assignments.
        let deleted = server
            .admin()
            .delete(&format!("/openidm/managed/role/{role_id}"))
            .send();
        assert_eq!(deleted.status, 200, "{}", deleted.text);
        let id = user.body["_id"].as_str().unwrap();
        let after = read(&server, &format!("/openidm/managed/user/{id}"));
        assert_eq!(after["effectiveRoles"], json!([]));
        assert_eq!(after["effectiveAssignments"], json!([]));
    });
}

#[test]
fn concurrent_grants_and_revokes_of_one_role_leave_one_edge_or_none() {
    on_each_backend(|builder| {
        let server = builder.start();
        let role_id = role(&server, "race");
        let id = create(&server, "user", &user_with(&unique("race"), &json!({}))).body["_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let reference = json!({"_ref": format!("managed/role/{role_id}")});
        let member = json!({"_ref": format!("managed/user/{id}")});
        for round in 0..4 {
            std::thread::scope(|scope| {
                for writer in 0..6 {
                    let (server, id, role_id, reference, member) = (&server, &id, &role_id, &reference, &member);
                    scope.spawn(move || {
                        let (path, operations) = if writer % 2 == 0 {
                            (
                                format!("/openidm/managed/user/{id}"),
                                json!([{"operation": "add", "field": "/roles/-", "value": reference}]),
                            )
                        } else {
                            (
                                format!("/openidm/managed/role/{role_id}"),
                                json!([{"operation": "add", "field": "/members/-", "value": member}]),
                            )
                        };
                        let reply = server.admin().patch(&path, &operations).send();
                        assert_eq!(reply.status, 200, "{}", reply.text);
                    });
                }
            });
            let roles = read(&server, &format!("/openidm/managed/user/{id}?_fields=roles"));
            assert_eq!(ids(&roles["roles"]), [role_id.as_str()], "round {round}: one edge");
            let revoked = server
                .admin()
                .patch(
                    &format!("/openidm/managed/user/{id}"),
                    &json!([{"operation": "remove", "field": "/roles", "value": reference}]),
                )
                .send();
            assert_eq!(revoked.status, 200, "{}", revoked.text);
            let members = read(&server, &format!("/openidm/managed/role/{role_id}?_fields=members"));
            assert_eq!(members["members"], json!([]), "round {round}: revoked");
        }
    });
}

#[test]
fn queries_filter_on_relationships_from_either_side() {
    on_each_backend(|builder| {
        let server = builder.start();
        let (granted, other) = (role(&server, "queried"), role(&server, "other"));
        let prefix = unique("q");
        let mut holders = Vec::new();
        for index in 0..3 {
            let roles = if index < 2 {
                json!([{"_ref": format!("managed/role/{granted}")}])
            } else {
                json!([{"_ref": format!("managed/role/{other}")}])
            };
            let user = create(
                &server,
                "user",
                &user_with(&format!("{prefix}-{index}"), &json!({"roles": roles})),
            );
            holders.push(user.body["_id"].as_str().unwrap().to_owned());
        }
        // One of them granted from the role's side.
        let lone = create(&server, "user", &user_with(&format!("{prefix}-3"), &json!({}))).body["_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let granted_from_role = server
            .admin()
            .patch(
                &format!("/openidm/managed/role/{granted}"),
                &json!([{"operation": "add", "field": "/members/-", "value": {"_ref": format!("managed/user/{lone}")}}]),
            )
            .send();
        assert_eq!(granted_from_role.status, 200, "{}", granted_from_role.text);

        let query = |filter: &str| -> Vec<String> {
            let encoded = ferridm_tests::url_encode(&format!("userName sw \"{prefix}\" and ({filter})"));
            let page = read(
                &server,
                &format!("/openidm/managed/user?_queryFilter={encoded}&_fields=_id"),
            );
            sorted(
                page["result"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|user| user["_id"].as_str().unwrap().to_owned())
                    .collect(),
            )
        };
        let expected = sorted(vec![holders[0].clone(), holders[1].clone(), lone.clone()]);
        assert_eq!(query(&format!("roles/_refResourceId eq \"{granted}\"")), expected);
        assert_eq!(query(&format!("roles/_ref eq \"managed/role/{granted}\"")), expected);
        assert_eq!(
            query(&format!("roles/_refResourceId eq \"{other}\"")),
            [holders[2].clone()]
        );
        assert_eq!(
            query(&format!("!(roles/_refResourceId eq \"{granted}\")")),
            [holders[2].clone()]
        );
        assert_eq!(query("roles pr").len(), 4);
        assert_eq!(query("roles/_refResourceCollection eq \"managed/role\"").len(), 4);
        assert!(query("roles/_refResourceId eq \"no-such-role\"").is_empty());

        // And from the role's side: its members.
        let encoded = ferridm_tests::url_encode(&format!("members/_refResourceId eq \"{lone}\""));
        let roles = read(
            &server,
            &format!("/openidm/managed/role?_queryFilter={encoded}&_fields=_id"),
        );
        assert_eq!(
            roles["result"],
            json!([{"_id": granted, "_rev": roles["result"][0]["_rev"]}])
        );
    });
}

#[test]
fn a_relationship_is_a_sub_resource_to_query_create_read_and_delete() {
    on_each_backend(|builder| {
        let server = builder.start();
        let (first, second) = (role(&server, "sub1"), role(&server, "sub2"));
        let id = create(&server, "user", &user_with(&unique("sub"), &json!({}))).body["_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let roles = format!("/openidm/managed/user/{id}/roles");
        let made = server
            .admin()
            .post(
                &format!("{roles}?_action=create"),
                &json!({"_ref": format!("managed/role/{first}"), "_refProperties": {"note": "granted"}}),
            )
            .send();
        assert_eq!(made.status, 201, "{}", made.text);
        let edge = made.body["_id"].as_str().unwrap().to_owned();
        assert_eq!(made.body["_refResourceId"], first.as_str());
        assert_eq!(made.body["_refProperties"]["note"], "granted");
        assert_eq!(made.body["_refProperties"]["_id"], edge.as_str());
        assert_eq!(made.body["_rev"], made.body["_refProperties"]["_rev"]);
        assert!(
            made.header("location")
                .is_some_and(|l| l.ends_with(&format!("/roles/{edge}")))
        );

        // The same target again is refused; a missing one too.
        let again = server
            .admin()
            .post(
                &format!("{roles}?_action=create"),
                &json!({"_ref": format!("managed/role/{first}")}),
            )
            .send();
        assert_eq!(again.status, 412, "{}", again.text);
        let missing = server
            .admin()
            .post(
                &format!("{roles}?_action=create"),
                &json!({"_ref": "managed/role/none"}),
            )
            .send();
        assert_eq!(missing.status, 400, "{}", missing.text);
        let second_made = server
            .admin()
            .post(
                &format!("{roles}?_action=create"),
                &json!({"_ref": format!("managed/role/{second}")}),
            )
            .send();
        assert_eq!(second_made.status, 201, "{}", second_made.text);

        let all = read(&server, &format!("{roles}?_queryFilter=true"));
        assert_eq!(all["resultCount"], 2, "{all}");
        let granted = read(
            &server,
            &format!(
                "{roles}?_queryFilter={}",
                ferridm_tests::url_encode("_refProperties/note eq \"granted\"")
            ),
        );
        assert_eq!(granted["result"].as_array().unwrap().len(), 1, "{granted}");
        assert_eq!(granted["result"][0]["_id"], edge.as_str());

        let one = read(&server, &format!("{roles}/{edge}"));
        assert_eq!(one["_refResourceId"], first.as_str());
        assert_eq!(server.admin().get(&format!("{roles}/no-such-edge")).send().status, 404);
        assert_eq!(
            server
                .admin()
                .get("/openidm/managed/user/no-such-user/roles?_queryFilter=true")
                .send()
                .status,
            404
        );

        let deleted = server.admin().delete(&format!("{roles}/{edge}")).send();
        assert_eq!(deleted.status, 200, "{}", deleted.text);
        assert_eq!(deleted.body["_refResourceId"], first.as_str());
        assert_eq!(server.admin().get(&format!("{roles}/{edge}")).send().status, 404);
        let members = read(&server, &format!("/openidm/managed/role/{first}?_fields=members"));
        assert_eq!(members["members"], json!([]));
        let user = read(&server, &format!("/openidm/managed/user/{id}"));
        assert_eq!(ids(&user["effectiveRoles"]), [second.as_str()]);

        // A property that is no relationship is no sub-resource.
        let not_one = server
            .admin()
            .get(&format!("/openidm/managed/user/{id}/mail?_queryFilter=true"))
            .send();
        assert_eq!(not_one.assert_error(403), "Sub-objects are not supported");
    });
}

#[test]
fn a_user_cannot_grant_themselves_a_role() {
    let server = TestServer::start();
    let role_id = role(&server, "self");
    let name = unique("selfgrant");
    let user = server.create_user(&name, Some("Passw0rd"));
    let id = user["_id"].as_str().unwrap();
    let me = server.user(&name, "Passw0rd");
    let reference = json!({"_ref": format!("managed/role/{role_id}")});
    let patched = me
        .patch(
            &format!("/openidm/managed/user/{id}"),
            &json!([{"operation": "add", "field": "/roles/-", "value": reference}]),
        )
        .send();
    assert_eq!(patched.status, 403, "{}", patched.text);
    let created = me
        .post(&format!("/openidm/managed/user/{id}/roles?_action=create"), &reference)
        .send();
    assert_eq!(created.status, 403, "{}", created.text);
    let authz = me
        .patch(
            &format!("/openidm/managed/user/{id}"),
            &json!([{"operation": "add", "field": "/authzRoles/-", "value": {"_ref": "internal/role/openidm-admin"}}]),
        )
        .send();
    assert_eq!(authz.status, 403, "{}", authz.text);
    let after = read(&server, &format!("/openidm/managed/user/{id}?_fields=roles,authzRoles"));
    assert_eq!(after["roles"], json!([]));
    assert_eq!(ids(&after["authzRoles"]), ["openidm-authorized"]);

    // Their own relationships they may read (ownDataOnly); another user's they may not.
    let own = me
        .get(&format!("/openidm/managed/user/{id}/authzRoles?_queryFilter=true"))
        .send();
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(
        own.body["result"][0]["_refResourceId"], "openidm-authorized",
        "{}",
        own.text
    );
    let edge = own.body["result"][0]["_id"].as_str().unwrap();
    let one = me.get(&format!("/openidm/managed/user/{id}/authzRoles/{edge}")).send();
    assert_eq!(one.status, 200, "{}", one.text);
    let other = server.create_user(&unique("other"), Some("Passw0rd"));
    let other_id = other["_id"].as_str().unwrap();
    for path in [
        format!("/openidm/managed/user/{other_id}/authzRoles?_queryFilter=true"),
        format!("/openidm/managed/user/{other_id}/roles?_queryFilter=true"),
    ] {
        let refused = me.get(&path).send();
        assert_eq!(refused.status, 403, "{path}: {}", refused.text);
    }
    let removed = me
        .delete(&format!("/openidm/managed/user/{id}/authzRoles/{edge}"))
        .send();
    assert_eq!(
        removed.status, 403,
        "a user cannot drop their own grants: {}",
        removed.text
    );
}

/// `_fields` below a relationship expands its references with the referenced objects' fields
/// (idm-api.md §2.9): `roles/name`, `manager/userName`, on reads and query pages; a reference
/// to an object that cannot be read carries `_refError`.
#[test]
fn fields_below_a_relationship_expand_its_references() {
    on_each_backend(|builder| {
        let server = builder.start();
        let (first, second) = (role(&server, "first"), role(&server, "second"));
        let boss = create(&server, "user", &user_with(&unique("boss"), &json!({}))).body;
        let boss_id = boss["_id"].as_str().unwrap();
        let user = create(
            &server,
            "user",
            &user_with(
                &unique("expanded"),
                &json!({"roles": [{"_ref": format!("managed/role/{first}")}, {"_ref": format!("managed/role/{second}")}],
                        "manager": {"_ref": format!("managed/user/{boss_id}")}}),
            ),
        )
        .body;
        let id = user["_id"].as_str().unwrap();

        let read_back = read(
            &server,
            &format!("/openidm/managed/user/{id}?_fields=roles/name,roles/_id,manager/userName,userName"),
        );
        let names: Vec<&str> = read_back["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|role| role["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{read_back}");
        for role in read_back["roles"].as_array().unwrap() {
            assert!(
                role["name"]
                    .as_str()
                    .unwrap()
                    .starts_with(if role["_refResourceId"] == first.as_str() {
                        "first"
                    } else {
                        "second"
                    })
            );
            assert_eq!(role["_id"], role["_refResourceId"], "{role}");
            assert!(
                role["_refProperties"]["_id"].is_string(),
                "the reference itself stays: {role}"
            );
            assert!(role.get("description").is_none(), "only the fields asked for: {role}");
        }
        assert_eq!(read_back["manager"]["userName"], boss["userName"], "{read_back}");
        assert_eq!(read_back["manager"]["_ref"], format!("managed/user/{boss_id}"));
        assert!(read_back["manager"].get("password").is_none());
        assert_eq!(read_back["userName"], user["userName"]);

        // The reverse side and a query page expand too.
        let reports = read(
            &server,
            &format!("/openidm/managed/user/{boss_id}?_fields=reports/userName"),
        );
        assert_eq!(reports["reports"][0]["userName"], user["userName"], "{reports}");
        let page = read(
            &server,
            &format!(
                "/openidm/managed/user?_queryFilter={}&_fields=manager/userName",
                ferridm_tests::url_encode(&format!("_id eq \"{id}\""))
            ),
        );
        assert_eq!(page["result"][0]["manager"]["userName"], boss["userName"], "{page}");

        // A reference whose object is gone (written past validation) reports the error.
        server
            .state()
            .store
            .set_edges(
                "managed/user",
                id,
                &[ferridm_store::RelationshipSet {
                    property: "roles".into(),
                    reverse: Some("members".into()),
                    reverse_single: false,
                    targets: vec![ferridm_store::EdgeTarget {
                        collection: "managed/role".into(),
                        id: "gone".into(),
                        properties: Default::default(),
                    }],
                }],
            )
            .unwrap();
        let dangling = read(&server, &format!("/openidm/managed/user/{id}?_fields=roles/name"));
        assert_eq!(dangling["roles"][0]["_refError"], true, "{dangling}");
        assert_eq!(
            dangling["roles"][0]["_refErrorMessage"],
            "Object managed/role/gone not found in managed/role"
        );
        assert!(dangling["roles"][0].get("name").is_none());
    });
}

/// Relationship properties go through the policies like any other (issue 15, point 7): a
/// reference that is no object fails `valid-type` (a relationship is an object) with IDM's
/// policy failure, before any edge is written.
#[test]
fn a_reference_that_is_no_object_fails_the_type_policy() {
    on_each_backend(|builder| {
        let server = builder.start();
        let name = unique("typed");
        let refused = server
            .admin()
            .post(
                "/openidm/managed/user?_action=create",
                &user_with(&name, &json!({"manager": "managed/user/boss"})),
            )
            .send();
        assert_eq!(refused.status, 403, "{}", refused.text);
        assert_eq!(refused.body["message"], "Policy validation failed");
        let failed = &refused.body["detail"]["failedPolicyRequirements"];
        assert_eq!(failed[0]["property"], "manager", "{failed}");
        assert_eq!(
            failed[0]["policyRequirements"][0]["policyRequirement"], "VALID_TYPE",
            "{failed}"
        );
        let found = read(
            &server,
            &format!(
                "/openidm/managed/user?_queryFilter={}",
                ferridm_tests::url_encode(&format!("userName eq \"{name}\""))
            ),
        );
        assert_eq!(found["result"], json!([]), "nothing was stored");
    });
}
