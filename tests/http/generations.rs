//! A request keeps the configuration generation it started with (ARCHITECTURE.md, "A
//! request"): the access rules that authorized it, the triggers and policies that run for it and
//! every script host call nested inside them all come from that one generation, even when a
//! reload installs another one while the request is in flight.

use std::path::Path;
use std::sync::Arc;

use ferridm::auth::session::Session;
use ferridm::auth::{Authorization, ROLE_ADMIN, ROLE_AUTHORIZED, SecurityContext};
use ferridm::config::authentication::SessionSettings;
use ferridm::generation::Overrides;
use ferridm::resource::{Method, Operation, Params, Request, ResourcePath};
use ferridm::service::audit::ConfigActor;
use ferridm::service::reload::reload;
use ferridm::service::{ClientCaller, RequestContext, router};
use ferridm::state::AppState;
use ferridm_core::Error;
use ferridm_tests::{on_each_backend, unique};
use serde_json::{Value, json};

/// Writes `managed.json` with `onCreate` triggers that stamp `stamp` on users and roles; the
/// user trigger also creates a role through the script host.
fn stamping_managed(project: &Path, stamp: u32) {
    let path = project.join("conf").join("managed.json");
    let mut managed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for object in managed["objects"].as_array_mut().unwrap() {
        let source = if object["name"] == "user" {
            format!(
                "object.stamp = {stamp}; let role = openidm::create(\"managed/role\", #{{name: \"made-for-\" + object.userName}}); object.madeRole = role._id;"
            )
        } else {
            format!("object.stamp = {stamp};")
        };
        object["onCreate"] = json!({"type": "text/rhai", "source": source});
    }
    std::fs::write(&path, serde_json::to_string_pretty(&managed).unwrap()).unwrap();
}

/// Writes `access.json` with the administrators' rule limited to reads and queries.
fn admins_read_only(project: &Path) {
    let path = project.join("conf").join("access.json");
    let mut access: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for rule in access["configs"].as_array_mut().unwrap() {
        if rule["roles"].as_str().is_some_and(|roles| roles.contains(ROLE_ADMIN)) {
            rule["methods"] = json!("read,query");
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&access).unwrap()).unwrap();
}

fn admin_context(state: &Arc<AppState>) -> RequestContext {
    let admin = SecurityContext {
        authentication_id: "openidm-admin".to_owned(),
        authorization: Authorization {
            id: "openidm-admin".to_owned(),
            component: "internal/user".to_owned(),
            roles: vec![ROLE_ADMIN.to_owned(), ROLE_AUTHORIZED.to_owned()],
            module_id: "INTERNAL_USER".to_owned(),
            query_id: None,
            protected_attribute_list: None,
            processes_required: None,
            required_profile_processes: None,
        },
    };
    let caller = ClientCaller {
        session: Session::start(admin, &SessionSettings::default(), state.clock.now_seconds()),
        by_credentials: true,
        ip: "127.0.0.1".to_owned(),
        reauth_password: None,
        logout: false,
        no_session: true,
        data_store_token: None,
        social_binding: None,
    };
    RequestContext::client(Arc::clone(state), state.generation(), caller, None, Vec::new())
}

fn create_user(ctx: &mut RequestContext) -> Result<Value, Error> {
    let name = unique("gen");
    let request = Request::internal(
        Method::Post,
        ResourcePath::parse("managed/user"),
        Params::default(),
        Some(json!({"userName": name, "givenName": "G", "sn": "N", "mail": format!("{name}@example.com")})),
    );
    router::serve_client(ctx, &request, &Operation::Create).map(|reply| reply.body.unwrap())
}

fn read(ctx: &mut RequestContext, path: &str) -> Value {
    let request = Request::internal(Method::Get, ResourcePath::parse(path), Params::default(), None);
    router::dispatch(ctx, &request, &Operation::Read).unwrap().body.unwrap()
}

#[test]
fn a_request_spanning_a_reload_sees_one_generation_throughout() {
    on_each_backend(|builder| {
        let server = builder.edit(|project| stamping_managed(project, 1)).start();
        let state = server.state();
        let project = state.paths.project_dir.clone();

        // The request starts: it takes the running generation.
        let mut started = admin_context(&state);
        let first = started.generation.number;

        // A reload lands while it is in flight: new triggers, and administrators may no longer
        // create anything.
        stamping_managed(&project, 2);
        admins_read_only(&project);
        let installed = reload(&state, &Overrides::new(), ConfigActor::Server("test")).unwrap();
        assert!(installed.number > first, "a new generation is running");

        // Authorized, executed and scripted on the generation it started with: the access rule
        // of generation 1 lets it through, its trigger stamps 1, and the role that trigger
        // creates through the script host is stamped by generation 1's role trigger too.
        let user = create_user(&mut started).unwrap();
        assert_eq!(user["stamp"], 1, "{user}");
        let role_path = format!("managed/role/{}", user["madeRole"].as_str().unwrap());
        let role = read(&mut started, &role_path);
        assert_eq!(role["stamp"], 1, "the nested script call ran on generation 1: {role}");

        // A request that starts now runs entirely on the new generation (or a later one: the
        // file watcher may reload the same files once more after the explicit reload).
        let mut now = admin_context(&state);
        assert!(now.generation.number >= installed.number);
        assert_eq!(
            create_user(&mut now).unwrap_err(),
            Error::Forbidden("Access denied".to_owned()),
            "generation {}'s access rules apply",
            installed.number
        );
    });
}
