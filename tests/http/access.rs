//! Access rules of the shipped `access.json`, each both ways: administrators may do everything
//! but `_queryExpression`; an authorized managed user reads its own record and changes only its
//! `userEditable` properties (the password only after re-authentication); anonymous reaches only
//! ping, info, the login endpoint and the self-service endpoints whose UI flag is on. An
//! unauthenticated caller gets 401, an authenticated but refused one 403 "Access denied".

use ferridm_tests::{TestServer, on_each_backend, unique};
use serde_json::json;

use crate::auth::{
    INFO_LOGIN, LOGIN, LOGOUT, PASSWORD, REAUTHENTICATE, assert_forbidden, assert_unauthorized, login, new_user,
    session_for, with_cookie,
};
use crate::crud::count;

const DENIED: &str = "Access denied";

fn replace(field: &str, value: &serde_json::Value) -> serde_json::Value {
    json!([{"operation": "replace", "field": field, "value": value}])
}

#[test]
fn a_user_reads_its_own_record_only() {
    on_each_backend(|builder| {
        let server = builder.start();
        let me = new_user(&server);
        let other = new_user(&server);

        let own = me.actor(&server).get(&me.path()).send();
        assert_eq!(own.status, 200, "{}", own.text);
        assert_eq!(own.body["_id"], me.id.as_str());
        assert_eq!(own.body["userName"], me.name.as_str());
        assert!(
            own.body.get("password").is_none(),
            "the password is private: {}",
            own.text
        );

        assert_forbidden(
            &me.actor(&server).get(&other.path()).send(),
            DENIED,
            "reading another user",
        );
        assert_forbidden(
            &me.actor(&server)
                .get(&format!("/openidm/managed/user/{}", unique("missing")))
                .send(),
            DENIED,
            "reading a user that does not exist",
        );
        for query in [
            "_queryFilter=true",
            &format!("_queryFilter=userName+eq+%22{}%22", me.name),
            "_queryId=query-all-ids",
        ] {
            assert_forbidden(
                &me.actor(&server).get(&format!("/openidm/managed/user?{query}")).send(),
                DENIED,
                &format!("a user querying the collection ({query})"),
            );
        }

        // The same through the session cookie.
        let token = session_for(&me.actor(&server));
        let own = with_cookie(&server, &token).get(&me.path()).send();
        assert_eq!(own.status, 200, "{}", own.text);
        assert_eq!(own.body["userName"], me.name.as_str());
        assert_forbidden(
            &with_cookie(&server, &token).get(&other.path()).send(),
            DENIED,
            "reading another user with a cookie",
        );
    });
}

#[test]
fn a_user_patches_only_user_editable_properties_of_its_own_record() {
    on_each_backend(|builder| {
        let server = builder.start();
        let me = new_user(&server);
        let other = new_user(&server);
        let new_mail = format!("{}-new@example.com", me.name);

        let reply = me
            .actor(&server)
            .patch(&me.path(), &replace("/mail", &json!(new_mail)))
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["mail"], new_mail.as_str());
        let reply = me
            .actor(&server)
            .patch(&me.path(), &replace("/description", &json!("mine")))
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        let stored = server.admin().get(&me.path()).send();
        assert_eq!(stored.body["mail"], new_mail.as_str());
        assert_eq!(stored.body["description"], "mine");

        for (what, operations) in [
            ("accountStatus", replace("/accountStatus", &json!("inactive"))),
            (
                "authzRoles",
                json!([{"operation": "add", "field": "/authzRoles/-",
                        "value": {"_ref": "internal/role/openidm-admin"}}]),
            ),
            (
                "an editable and a non-editable property together",
                json!([{"operation": "replace", "field": "/mail", "value": "sneaky@example.com"},
                       {"operation": "replace", "field": "/accountStatus", "value": "inactive"}]),
            ),
        ] {
            assert_forbidden(
                &me.actor(&server).patch(&me.path(), &operations).send(),
                DENIED,
                &format!("patching own {what}"),
            );
        }
        let stored = server
            .admin()
            .get(&format!("{}?_fields=*,authzRoles", me.path()))
            .send();
        assert_eq!(stored.status, 200, "{}", stored.text);
        assert_eq!(stored.body["accountStatus"], "active", "{}", stored.text);
        assert_eq!(
            stored.body["mail"],
            new_mail.as_str(),
            "a refused patch changed nothing"
        );
        assert!(
            !stored.text.contains("internal/role/openidm-admin"),
            "no role was added: {}",
            stored.text
        );
        // Still only an ordinary user.
        let info = me.actor(&server).get(INFO_LOGIN).send();
        assert_eq!(
            info.body["authorization"]["roles"],
            json!(["internal/role/openidm-authorized"])
        );

        // The patch action is the same operation.
        let action = format!("{}?_action=patch", me.path());
        let reply = me
            .actor(&server)
            .post(&action, &replace("/telephoneNumber", &json!("555-0100")))
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["telephoneNumber"], "555-0100");
        assert_forbidden(
            &me.actor(&server)
                .post(&action, &replace("/accountStatus", &json!("inactive")))
                .send(),
            DENIED,
            "patch action on own accountStatus",
        );
        assert_forbidden(
            &me.actor(&server)
                .post(&action, &replace("/password", &json!("N3wSecret")))
                .send(),
            "Reauthentication failed, missing or empty headers",
            "patch action on own password without reauth",
        );
        // A PUT of what the user can read would drop authzRoles (not user-editable).
        let own = me.actor(&server).get(&me.path()).send();
        let mut body = own.body.clone();
        body["description"] = json!("via put");
        assert_forbidden(
            &me.actor(&server).put(&me.path(), &body).header("If-Match", "*").send(),
            DENIED,
            "an update that would clear own authzRoles",
        );

        assert_forbidden(
            &me.actor(&server)
                .patch(&other.path(), &replace("/description", &json!("not yours")))
                .send(),
            DENIED,
            "patching another user's editable property",
        );
        let theirs = server.admin().get(&other.path()).send();
        assert!(theirs.body.get("description").is_none(), "{}", theirs.text);

        // The administrator may change what the user may not.
        let reply = server
            .admin()
            .patch(&me.path(), &replace("/accountStatus", &json!("inactive")))
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["accountStatus"], "inactive");
    });
}

#[test]
fn the_own_password_changes_only_after_reauthentication() {
    on_each_backend(|builder| {
        let server = builder.start();
        let me = new_user(&server);
        let new_password = "N3wSecret";
        let change = replace("/password", &json!(new_password));

        let missing = me.actor(&server).patch(&me.path(), &change).send();
        assert_forbidden(
            &missing,
            "Reauthentication failed, missing or empty headers",
            "no reauth header",
        );
        let empty = me
            .actor(&server)
            .with("X-OpenIDM-Reauth-Password", "")
            .patch(&me.path(), &change)
            .send();
        assert_forbidden(
            &empty,
            "Reauthentication failed, missing or empty headers",
            "empty reauth header",
        );
        let wrong = me
            .actor(&server)
            .with("X-OpenIDM-Reauth-Password", "Wr0ngPassword")
            .patch(&me.path(), &change)
            .send();
        assert_forbidden(
            &wrong,
            &format!("Reauthentication failed for {}", me.name),
            "wrong reauth password",
        );
        assert_eq!(login(&me.actor(&server)).status, 200, "the old password still works");
        assert_eq!(
            login(&server.user(&me.name, new_password)).status,
            401,
            "the refused change did not happen"
        );

        let right = me
            .actor(&server)
            .with("X-OpenIDM-Reauth-Password", PASSWORD)
            .patch(&me.path(), &change)
            .send();
        assert_eq!(right.status, 200, "{}", right.text);
        assert!(right.body.get("password").is_none(), "{}", right.text);
        assert_eq!(right.body["_id"], me.id.as_str());

        let reply = login(&server.user(&me.name, new_password));
        assert_eq!(reply.status, 200, "the new password works: {}", reply.text);
        assert_unauthorized(&login(&me.actor(&server)), "the old password after the change");

        // Through a cookie session the same rule holds, re-authenticating with the current password.
        let token = session_for(&server.user(&me.name, new_password));
        let third = "Th1rdSecret";
        let refused = with_cookie(&server, &token)
            .with("X-Requested-With", "XMLHttpRequest")
            .patch(&me.path(), &replace("/password", &json!(third)))
            .send();
        assert_forbidden(
            &refused,
            "Reauthentication failed, missing or empty headers",
            "cookie session without reauth",
        );
        let accepted = with_cookie(&server, &token)
            .with("X-Requested-With", "XMLHttpRequest")
            .with("X-OpenIDM-Reauth-Password", new_password)
            .patch(&me.path(), &replace("/password", &json!(third)))
            .send();
        assert_eq!(accepted.status, 200, "{}", accepted.text);
        assert_eq!(login(&server.user(&me.name, third)).status, 200);

        // Changes that do not touch the password need no re-authentication.
        let reply = server
            .user(&me.name, third)
            .patch(&me.path(), &replace("/description", &json!("no reauth needed")))
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);

        // The administrator is exempt.
        let reply = server
            .admin()
            .patch(&me.path(), &replace("/password", &json!("Adm1nChosen")))
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(login(&server.user(&me.name, "Adm1nChosen")).status, 200);
    });
}

#[test]
fn a_user_may_not_create_or_delete_others_but_may_delete_itself() {
    let server = TestServer::start();
    let me = new_user(&server);
    let other = new_user(&server);
    let name = unique("u");
    let body = json!({"userName": name, "givenName": "Test", "sn": "User", "mail": format!("{name}@example.com"),
                      "password": PASSWORD});
    assert_forbidden(
        &me.actor(&server)
            .post("/openidm/managed/user?_action=create", &body)
            .send(),
        DENIED,
        "a user creating a user",
    );
    assert_forbidden(
        &me.actor(&server)
            .put(&format!("/openidm/managed/user/{name}"), &body)
            .header("If-None-Match", "*")
            .send(),
        DENIED,
        "a user creating a user with PUT",
    );
    assert_eq!(count(&server, "true"), 2, "nothing was created");
    assert_forbidden(
        &me.actor(&server).delete(&other.path()).send(),
        DENIED,
        "a user deleting another",
    );
    assert_eq!(server.admin().get(&other.path()).send().status, 200);

    let reply = me.actor(&server).delete(&me.path()).send();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["_id"], me.id.as_str());
    assert_unauthorized(&login(&me.actor(&server)), "a deleted user");
}

#[test]
fn anonymous_reaches_only_the_open_endpoints() {
    on_each_backend(|builder| {
        let server = builder.start();
        let user = new_user(&server);
        let anonymous = server.anonymous();

        let ping = anonymous.get("/openidm/info/ping").send();
        assert_eq!(ping.status, 200, "{}", ping.text);
        assert_eq!(ping.body["state"], "ACTIVE_READY");
        let info = anonymous.get(INFO_LOGIN).send();
        assert_eq!(info.status, 200, "{}", info.text);
        assert_eq!(info.body["authorization"]["id"], "anonymous");
        let version = anonymous.get("/openidm/info/version").send();
        assert_eq!(version.status, 200, "{}", version.text);
        let reply = login(&anonymous);
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["authorization"]["moduleId"], "STATIC_USER");
        assert_eq!(anonymous.get("/openidm/authentication").send().status, 200);
        let logout = anonymous.post_empty(LOGOUT).send();
        assert_eq!(logout.status, 200, "{}", logout.text);
        assert_eq!(logout.body, json!({"success": true}));

        let name = unique("u");
        let body = json!({"userName": name, "givenName": "Test", "sn": "User", "mail": format!("{name}@example.com"),
                          "password": PASSWORD});
        for (what, reply) in [
            (
                "query managed/user",
                anonymous.get("/openidm/managed/user?_queryFilter=true").send(),
            ),
            (
                "query managed/user by id",
                anonymous.get("/openidm/managed/user?_queryId=query-all-ids").send(),
            ),
            ("read a user", anonymous.get(&user.path()).send()),
            (
                "create a user",
                anonymous.post("/openidm/managed/user?_action=create", &body).send(),
            ),
            (
                "create a user with PUT",
                anonymous
                    .put(&format!("/openidm/managed/user/{name}"), &body)
                    .header("If-None-Match", "*")
                    .send(),
            ),
            (
                "patch a user",
                anonymous
                    .patch(&user.path(), &replace("/description", &json!("anon")))
                    .send(),
            ),
            ("delete a user", anonymous.delete(&user.path()).send()),
            ("read config", anonymous.get("/openidm/config/authentication").send()),
            ("read a policy", anonymous.get("/openidm/policy/managed/user").send()),
            (
                "validate outside self-service",
                anonymous
                    .post("/openidm/policy/managed/user?_action=validateObject", &body)
                    .send(),
            ),
            (
                "re-authenticate",
                server
                    .anonymous()
                    .with("X-OpenIDM-Reauth-Password", "anonymous")
                    .post_empty(REAUTHENTICATE)
                    .send(),
            ),
            (
                "read the dashboard config",
                anonymous.get("/openidm/config/ui/dashboard").send(),
            ),
        ] {
            assert_forbidden(&reply, DENIED, &format!("anonymous: {what}"));
        }
        assert_eq!(count(&server, "true"), 1, "anonymous created nothing");
        let stored = server.admin().get(&user.path()).send();
        assert_eq!(stored.status, 200, "anonymous deleted nothing");
        assert!(stored.body.get("description").is_none(), "{}", stored.text);
    });
}

#[test]
fn self_registration_is_open_to_anonymous_only_when_enabled() {
    let enabled = TestServer::start();
    let reply = enabled.anonymous().get("/openidm/selfservice/registration").send();
    assert_eq!(
        reply.status, 200,
        "selfRegistration true: anonymous reads the registration process: {}",
        reply.text
    );

    let path = ferridm_tests::workspace_root()
        .join("conf")
        .join("ui-configuration.json");
    let mut ui: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("ui-configuration.json")).expect("JSON");
    ui["configuration"]["selfRegistration"] = json!(false);
    let disabled = TestServer::builder()
        .conf_file("ui-configuration.json", &ui.to_string())
        .start();
    let reply = disabled.anonymous().get("/openidm/selfservice/registration").send();
    assert_forbidden(&reply, DENIED, "selfRegistration false");
    let reply = disabled
        .anonymous()
        .post(
            "/openidm/selfservice/registration?_action=submitRequirements",
            &json!({"input": {}}),
        )
        .send();
    assert_forbidden(&reply, DENIED, "selfRegistration false: submitting");
}

#[test]
fn administrators_may_not_use_query_expressions() {
    on_each_backend(|builder| {
        let server = builder.start();
        new_user(&server);
        let reply = server
            .admin()
            .get("/openidm/managed/user?_queryExpression=select+*+from+managedobjects")
            .send();
        assert_forbidden(&reply, DENIED, "admin _queryExpression");
        let reply = server.admin().get("/openidm/managed/user?_queryFilter=true").send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["resultCount"], 1);
    });
}

#[test]
fn administrators_may_use_managed_config_and_policy() {
    on_each_backend(|builder| {
        let server = builder.start();
        let admin = server.admin();
        let name = unique("adm");
        let body = json!({"userName": name, "givenName": "Test", "sn": "User", "mail": format!("{name}@example.com"),
                          "password": PASSWORD});
        let created = admin.post("/openidm/managed/user?_action=create", &body).send();
        assert_eq!(created.status, 201, "{}", created.text);
        let path = format!("/openidm/managed/user/{}", created.body["_id"].as_str().expect("_id"));
        assert_eq!(admin.get(&path).send().status, 200);
        let query = admin.get("/openidm/managed/user?_queryFilter=true").send();
        assert_eq!(query.status, 200, "{}", query.text);
        assert_eq!(query.body["resultCount"], 1);
        let patched = admin
            .patch(&path, &replace("/accountStatus", &json!("inactive")))
            .send();
        assert_eq!(patched.status, 200, "{}", patched.text);
        let meta = admin.get(&format!("{path}?_fields=_meta/loginCount")).send();
        assert_eq!(meta.status, 200, "{}", meta.text);

        for config in ["authentication", "access", "managed", "ui/configuration"] {
            let reply = admin.get(&format!("/openidm/config/{config}")).send();
            assert_eq!(reply.status, 200, "config/{config}: {}", reply.text);
            assert_eq!(reply.body["_id"], config, "config/{config}");
        }
        let policy = admin.get("/openidm/policy/managed/user").send();
        assert_eq!(policy.status, 200, "{}", policy.text);
        let fresh = unique("adm");
        let fresh = json!({"userName": fresh, "givenName": "Test", "sn": "User", "mail": format!("{fresh}@example.com"),
                           "password": PASSWORD});
        let validated = admin
            .post("/openidm/policy/managed/user?_action=validateObject", &fresh)
            .send();
        assert_eq!(validated.status, 200, "{}", validated.text);
        assert_eq!(validated.body["result"], true, "{}", validated.text);

        let deleted = admin.delete(&path).send();
        assert_eq!(deleted.status, 200, "{}", deleted.text);
    });
}

#[test]
fn a_user_may_read_policies_but_not_configuration() {
    let server = TestServer::start();
    let me = new_user(&server);
    let policy = me.actor(&server).get("/openidm/policy/managed/user").send();
    assert_eq!(policy.status, 200, "{}", policy.text);
    assert_forbidden(
        &me.actor(&server).get("/openidm/config/authentication").send(),
        DENIED,
        "a user reading config",
    );
    let reauth = me
        .actor(&server)
        .with("X-OpenIDM-Reauth-Password", PASSWORD)
        .post_empty(REAUTHENTICATE)
        .send();
    assert_eq!(reauth.status, 200, "{}", reauth.text);
    assert_eq!(reauth.body, json!({"reauthenticated": true}));
}

#[test]
fn unauthenticated_is_401_and_refused_is_403() {
    on_each_backend(|builder| {
        let server = builder.start();
        let me = new_user(&server);
        let other = new_user(&server);
        let target = other.path();

        assert_unauthorized(&server.nobody().get(&target).send(), "no credentials");
        assert_unauthorized(
            &server.user(&me.name, "Wr0ngPassword").get(&target).send(),
            "wrong password",
        );
        assert_unauthorized(
            &with_cookie(&server, "garbage").get(&target).send(),
            "a cookie that is no session",
        );
        assert_forbidden(&server.anonymous().get(&target).send(), DENIED, "anonymous");
        assert_forbidden(&me.actor(&server).get(&target).send(), DENIED, "another user");
        let admin = server.admin().get(&target).send();
        assert_eq!(admin.status, 200, "{}", admin.text);
        let own = other.actor(&server).get(&target).send();
        assert_eq!(own.status, 200, "{}", own.text);

        // A 401 is not softened to anonymous access where anonymous would be allowed.
        assert_unauthorized(
            &server.nobody().get(INFO_LOGIN).send(),
            "info/login without credentials",
        );
        assert_unauthorized(&server.nobody().post_empty(LOGIN).send(), "login without credentials");
    });
}
