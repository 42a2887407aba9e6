//! The audit trail (`audit.json`): access, authentication, activity and config events field by
//! field, the repository handler's `audit/<topic>` queries on both backends, the JSON file
//! handler's rotation and retention, syslog over UDP and TCP, transaction ids, and no secret in
//! any event of a whole registration, login and reset.

use std::io::Read as _;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::time::Duration;

use ferridm_tests::smtp::SmtpServer;
use ferridm_tests::{ServerBuilder, TestServer, on_each_backend, unique, url_encode};
use serde_json::{Value, json};

use crate::auth::lockout_conf;
use crate::recovery::{by_user_name, continue_with, find, next_mail, with_mail};
use crate::registration::{assert_asks, assert_end, login, new_user, process, self_registration, submit, user_details};

/// How long a test waits for the audit writer.
const WRITTEN: Duration = Duration::from_secs(15);

const JSON_CLASS: &str = "org.forgerock.audit.handlers.json.JsonAuditEventHandler";
const REPO_CLASS: &str = "org.forgerock.openidm.audit.impl.RepositoryAuditEventHandler";
const SYSLOG_CLASS: &str = "org.forgerock.audit.handlers.syslog.SyslogAuditEventHandler";
const TOPICS: [&str; 4] = ["access", "activity", "authentication", "config"];

/// `audit.json` with every topic on the JSON file and repository handlers, plus `extra`
/// handlers.
fn audit_conf(extra: &[Value]) -> String {
    let mut handlers = vec![
        json!({"class": JSON_CLASS, "config": {"name": "json", "topics": TOPICS, "logDirectory": "data/audit"}}),
        json!({"class": REPO_CLASS, "config": {"name": "repo", "topics": TOPICS}}),
    ];
    handlers.extend(extra.iter().cloned());
    json!({"auditServiceConfig": {"handlerForQueries": "repo"}, "eventHandlers": handlers}).to_string()
}

fn audited(builder: ServerBuilder) -> ServerBuilder {
    builder.conf_file("audit.json", &audit_conf(&[]))
}

/// The events of `topic` matching `filter`, once there are at least `count` of them.
fn events(server: &TestServer, topic: &str, filter: &str, count: usize) -> Vec<Value> {
    let path = format!(
        "/openidm/audit/{topic}?_queryFilter={}&_sortKeys=timestamp",
        url_encode(filter)
    );
    let mut found = Vec::new();
    server.wait_until(WRITTEN, &format!("{count} {topic} events matching {filter}"), || {
        let reply = server.admin().get(&path).send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        found = reply.body["result"].as_array().cloned().unwrap_or_default();
        found.len() >= count
    });
    found
}

/// Every line of a topic's JSON file, parsed.
fn file_events(project: &Path, topic: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(project.join(format!("data/audit/{topic}.audit.json"))).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[test]
fn access_events_record_every_request_with_its_outcome() {
    on_each_backend(|builder| {
        let server = audited(builder).start();
        let user = server.create_user(&unique("access"), Some("Passw0rd!"));
        let id = user["_id"].as_str().unwrap_or_default();

        let read = server
            .admin()
            .get(&format!("/openidm/managed/user/{id}?_fields=userName"))
            .header("X-ForgeRock-TransactionId", "client-chosen")
            .send();
        assert_eq!(read.status, 200);
        let transaction = read.header("x-forgerock-transactionid").unwrap_or_default().to_owned();
        assert!(
            !transaction.is_empty() && transaction != "client-chosen",
            "an untrusted client id is replaced: {transaction}"
        );
        let found = events(&server, "access", &format!("transactionId eq \"{transaction}\""), 1);
        assert_eq!(found.len(), 1, "{found:#?}");
        let event = &found[0];
        // Every queryable field of the event finds it.
        let by_every_field = format!(
            "transactionId eq \"{transaction}\" and eventName eq \"access\" and userId eq \"openidm-admin\" \
             and request/operation eq \"READ\" and response/status eq \"SUCCESSFUL\" and timestamp eq \"{}\" \
             and _id eq \"{}\"",
            event["timestamp"].as_str().unwrap_or_default(),
            event["_id"].as_str().unwrap_or_default()
        );
        assert_eq!(events(&server, "access", &by_every_field, 1), found);
        assert_eq!(event["eventName"], json!("access"));
        assert_eq!(event["userId"], json!("openidm-admin"));
        assert_eq!(event["request"], json!({"protocol": "CREST", "operation": "READ"}));
        assert_eq!(event["response"]["status"], json!("SUCCESSFUL"));
        assert_eq!(event["response"]["statusCode"], json!("200"));
        assert_eq!(event["response"]["elapsedTimeUnits"], json!("MILLISECONDS"));
        assert!(event["response"]["elapsedTime"].is_u64(), "{event}");
        assert_eq!(event["http"]["request"]["method"], json!("GET"));
        assert_eq!(
            event["http"]["request"]["path"],
            json!(format!("/openidm/managed/user/{id}"))
        );
        assert_eq!(
            event["http"]["request"]["queryParameters"],
            json!({"_fields": ["userName"]})
        );
        let headers = event["http"]["request"]["headers"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            headers.get("x-forgerock-transactionid"),
            Some(&json!(["client-chosen"]))
        );
        assert!(
            !headers.contains_key("x-openidm-password") && !headers.contains_key("x-openidm-username"),
            "credentials are never recorded: {headers:?}"
        );
        assert_eq!(event["client"]["ip"], json!("127.0.0.1"));
        let port = server.base().rsplit(':').next().and_then(|p| p.parse::<u64>().ok());
        assert_eq!(event["server"]["port"].as_u64(), port);
        assert!(
            event["roles"]
                .as_array()
                .is_some_and(|roles| roles.contains(&json!("internal/role/openidm-admin"))),
            "{event}"
        );
        assert!(
            file_events(server.project(), "access")
                .iter()
                .any(|line| line["_id"] == event["_id"]),
            "the JSON file holds the same event"
        );

        let missing = server.admin().get("/openidm/managed/user/nobody-here").send();
        assert_eq!(missing.status, 404);
        let transaction = missing.header("x-forgerock-transactionid").unwrap_or_default();
        let filter = format!("transactionId eq \"{transaction}\" and response/status eq \"FAILED\"");
        let event = &events(&server, "access", &filter, 1)[0];
        assert_eq!(
            event["response"],
            json!({"status": "FAILED", "statusCode": "404", "elapsedTime": event["response"]["elapsedTime"],
                   "elapsedTimeUnits": "MILLISECONDS", "detail": {"reason": "Not Found"}})
        );

        let refused = server
            .user("openidm-admin", "wrong")
            .get("/openidm/managed/user/x")
            .send();
        assert_eq!(refused.status, 401);
        let transaction = refused.header("x-forgerock-transactionid").unwrap_or_default();
        let event = &events(&server, "access", &format!("transactionId eq \"{transaction}\""), 1)[0];
        assert_eq!(event["userId"], json!(""));
        assert_eq!(event["response"]["statusCode"], json!("401"));
    });
}

#[test]
fn a_trusted_transaction_id_follows_the_request_into_every_topic() {
    let server = audited(TestServer::builder())
        .edit(|project| {
            let path = project.join("conf/ferridm.json");
            let mut settings: Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap_or_default()).unwrap_or_default();
            settings["trustTransactionHeader"] = json!(true);
            std::fs::write(&path, settings.to_string()).unwrap_or_else(|e| panic!("{e}"));
        })
        .start();
    let created = server
        .admin()
        .post(
            "/openidm/managed/user?_action=create",
            &json!({"userName": unique("tx"), "givenName": "T", "sn": "X", "mail": "tx@example.com"}),
        )
        .header("X-ForgeRock-TransactionId", "tx-from-client")
        .send();
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.header("x-forgerock-transactionid"), Some("tx-from-client"));
    let filter = "transactionId eq \"tx-from-client\"";
    for topic in ["access", "authentication", "activity"] {
        let found = events(&server, topic, filter, 1);
        assert_eq!(found.len(), 1, "{topic}: {found:#?}");
    }
}

#[test]
fn authentication_events_record_successes_failures_and_lockouts() {
    on_each_backend(|builder| {
        let conf = lockout_conf(&json!({"enabled": true, "maxFailures": 2, "windowMinutes": 5, "lockMinutes": 15}));
        let server = audited(builder).conf_file("authentication.json", &conf).start();
        let name = unique("authn");
        let user = server.create_user(&name, Some("Passw0rd!"));
        let id = user["_id"].as_str().unwrap_or_default().to_owned();

        assert_eq!(login(&server, &name, "Passw0rd!").status, 200);
        let by_name = format!("principal eq \"{name}\"");
        let found = events(
            &server,
            "authentication",
            &format!(
                "{by_name} and result eq \"SUCCESSFUL\" and userId eq \"{id}\" and eventName eq \"authentication\""
            ),
            1,
        );
        assert_eq!(found.len(), 1, "{found:#?}");
        let success = &found[0];
        assert_eq!(success["result"], json!("SUCCESSFUL"));
        assert_eq!(success["userId"], json!(id));
        assert_eq!(success["principal"], json!([name]));
        assert_eq!(success["method"], json!("MANAGED_USER"));
        assert_eq!(success["eventName"], json!("authentication"));
        assert_eq!(success["trackingIds"], json!([]));
        let roles = success["context"]["roles"].clone();
        assert!(
            roles
                .as_array()
                .is_some_and(|roles| roles.contains(&json!("internal/role/openidm-authorized"))),
            "{success:#}"
        );
        assert_eq!(
            success["context"],
            json!({"id": id, "component": "managed/user", "roles": roles, "moduleId": "MANAGED_USER",
                "ipAddress": "127.0.0.1"})
        );
        assert_eq!(
            success["entries"],
            json!([{"moduleId": "MANAGED_USER", "result": "SUCCESSFUL",
                "info": {"org.forgerock.authentication.principal": name}}])
        );

        assert_eq!(login(&server, &name, "wrong-1").status, 401);
        assert_eq!(login(&server, &name, "wrong-2").status, 401);
        assert_eq!(login(&server, &name, "Passw0rd!").status, 401, "locked");
        let found = events(
            &server,
            "authentication",
            &format!("{by_name} and result eq \"FAILED\""),
            4,
        );
        assert_eq!(
            found.len(),
            4,
            "two failures, the lock and the refused login: {found:#?}"
        );
        let reasons: Vec<&str> = found
            .iter()
            .map(|event| event["entries"][0]["info"]["reason"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            reasons
                .iter()
                .filter(|reason| **reason == "account locked after repeated failed logins")
                .count(),
            1,
            "{reasons:?}"
        );
        for event in &found {
            assert_eq!(event["userId"], json!(name));
            assert_eq!(event["entries"][0]["result"], json!("FAILED"));
            assert_eq!(
                event["entries"][0]["info"]["org.forgerock.authentication.principal"],
                json!(name)
            );
            // Nothing authenticated: only where the attempt came from (the lock is recorded
            // where the failure count is kept, without the address).
            let locked = event["entries"][0]["info"]["reason"] == json!("account locked after repeated failed logins");
            let ip = if locked { "" } else { "127.0.0.1" };
            assert_eq!(event["context"], json!({"ipAddress": ip}), "{event:#}");
        }
        let text = serde_json::to_string(&found).unwrap_or_default();
        assert!(!text.contains("wrong-1") && !text.contains("Passw0rd!"), "{text}");
    });
}

#[test]
fn a_change_of_references_alone_is_an_audited_change() {
    on_each_backend(|builder| {
        let server = audited(builder).start();
        let user = server.create_user(&unique("granted"), None);
        let id = user["_id"].as_str().unwrap_or_default().to_owned();
        let role = server
            .admin()
            .post(
                "/openidm/managed/role?_action=create",
                &json!({"name": unique("audited")}),
            )
            .send();
        assert_eq!(role.status, 201, "{}", role.text);
        let role_id = role.body["_id"].as_str().unwrap_or_default().to_owned();
        let granted = server
            .admin()
            .patch(
                &format!("/openidm/managed/user/{id}"),
                &json!([{"operation": "add", "field": "/roles/-", "value": {"_ref": format!("managed/role/{role_id}")}}]),
            )
            .send();
        assert_eq!(granted.status, 200, "{}", granted.text);
        let found = events(
            &server,
            "activity",
            &format!("objectId eq \"managed/user/{id}\" and operation eq \"PATCH\""),
            1,
        );
        assert_eq!(found[0]["changedFields"], json!(["/roles"]), "{}", found[0]);
        assert_eq!(found[0]["before"]["roles"], json!([]));
        assert_eq!(found[0]["after"]["roles"][0]["_refResourceId"], json!(role_id));
        assert_eq!(found[0]["revision"], granted.body["_rev"]);
    });
}

#[test]
fn activity_events_record_writes_without_secrets() {
    on_each_backend(|builder| {
        let server = audited(builder).start();
        let name = unique("activity");
        let user = server.create_user(&name, Some("Passw0rd!"));
        let id = user["_id"].as_str().unwrap_or_default().to_owned();
        let object_id = format!("managed/user/{id}");
        let patch = |operations: Value| {
            let reply = server
                .admin()
                .post(&format!("/openidm/managed/user/{id}?_action=patch"), &operations)
                .send();
            assert_eq!(reply.status, 200, "{}", reply.text);
        };
        patch(json!([{"operation": "replace", "field": "mail", "value": "new@example.com"}]));
        patch(json!([{"operation": "replace", "field": "password", "value": "An0therPass!"}]));
        assert_eq!(
            server
                .admin()
                .delete(&format!("/openidm/managed/user/{id}"))
                .send()
                .status,
            200
        );

        let found = events(&server, "activity", &format!("objectId eq \"{object_id}\""), 4);
        let operations: Vec<&Value> = found.iter().map(|event| &event["operation"]).collect();
        assert_eq!(
            operations,
            [&json!("CREATE"), &json!("PATCH"), &json!("PATCH"), &json!("DELETE")]
        );
        let (create, mail, password, delete) = (&found[0], &found[1], &found[2], &found[3]);
        assert_eq!(create["before"], Value::Null);
        assert_eq!(create["after"]["userName"], json!(name));
        assert_eq!(create["passwordChanged"], json!(true));
        assert_eq!(create["userId"], json!("openidm-admin"));
        assert_eq!(create["runAs"], json!("openidm-admin"));
        assert_eq!(mail["changedFields"], json!(["/mail"]));
        assert_eq!(mail["before"]["mail"], json!(format!("{name}@example.com")));
        assert_eq!(mail["after"]["mail"], json!("new@example.com"));
        assert_eq!(mail["passwordChanged"], json!(false));
        assert_eq!(password["passwordChanged"], json!(true));
        assert_eq!(password["changedFields"], json!([]), "hashed fields are not named");
        assert_eq!(delete["after"], Value::Null);
        assert_eq!(delete["before"]["mail"], json!("new@example.com"));
        for event in &found {
            assert_eq!(event["eventName"], json!("activity"));
            assert!(event["revision"].as_str().is_some_and(|rev| !rev.is_empty()), "{event}");
            assert!(event["before"].get("password").is_none() && event["after"].get("password").is_none());
        }
        let text = serde_json::to_string(&found).unwrap_or_default();
        assert!(!text.contains("$crypto") && !text.contains("$argon2"), "{text}");
    });
}

#[test]
fn config_events_record_each_generation_with_who_changed_it() {
    let server = audited(TestServer::builder()).start();
    let changed = server
        .admin()
        .put("/openidm/config/ui/themeconfig", &json!({"theme": "audit-test"}))
        .send();
    assert_eq!(changed.status, 200, "{}", changed.text);
    let found = events(&server, "config", "objectId eq \"ui/themeconfig\"", 1);
    let event = &found[0];
    assert_eq!(event["eventName"], json!("CONFIG"));
    assert_eq!(event["userId"], json!("openidm-admin"));
    assert_eq!(event["status"], json!("SUCCESS"));
    assert_eq!(event["after"], json!({"theme": "audit-test"}));
    assert_eq!(
        event["transactionId"].as_str(),
        changed.header("x-forgerock-transactionid")
    );

    let refused = server
        .admin()
        .put("/openidm/config/managed", &json!({"objects": "not a list"}))
        .send();
    assert_eq!(refused.status, 400, "{}", refused.text);
    let found = events(&server, "config", "status eq \"FAILURE\"", 1);
    assert_eq!(found[0]["userId"], json!("openidm-admin"));
    assert!(
        found[0]["message"].as_str().is_some_and(|m| m.contains("managed")),
        "{}",
        found[0]
    );

    let email = json!({"host": "127.0.0.1", "port": 2525, "auth": {"enable": true, "username": "u", "password": "smtp-secret"}});
    std::fs::write(server.conf().join("external.email.json"), email.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let found = events(&server, "config", "objectId eq \"external.email\"", 1);
    assert_eq!(found[0]["userId"], json!("file change"));
    assert_eq!(found[0]["runAs"], json!("openidm-system"));
    assert_eq!(
        found[0]["after"]["auth"]["password"],
        json!({"$crypto": {"type": "ferridm-withheld"}}),
        "{}",
        found[0]
    );
    assert!(!found[0].to_string().contains("smtp-secret"));
}

#[test]
fn audit_queries_filter_sort_page_and_are_for_administrators() {
    on_each_backend(|builder| {
        let server = audited(builder).start();
        let prefix = unique("q");
        for n in 0..5 {
            server.create_user(&format!("{prefix}-{n}"), None);
        }
        let filter_ok = "operation eq \"CREATE\"".to_owned();
        let all = events(&server, "activity", &filter_ok, 5);
        assert_eq!(all.len(), 5);
        let page = |extra: &str| {
            let reply = server
                .admin()
                .get(&format!(
                    "/openidm/audit/activity?_queryFilter={}&_sortKeys=-timestamp,_id&_pageSize=2&_totalPagedResultsPolicy=EXACT&_fields=objectId,timestamp{extra}",
                    url_encode(&filter_ok)
                ))
                .send();
            assert_eq!(reply.status, 200, "{}", reply.text);
            reply.body
        };
        let first = page("");
        assert_eq!(first["resultCount"], json!(2));
        assert_eq!(first["totalPagedResults"], json!(5));
        assert_eq!(
            first["result"][0]
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["_id".to_owned(), "objectId".to_owned(), "timestamp".to_owned()])
        );
        let newest = all.last().map(|event| event["objectId"].clone()).unwrap_or_default();
        assert_eq!(first["result"][0]["objectId"], newest, "newest first");
        let cookie = first["pagedResultsCookie"].as_str().unwrap_or_default().to_owned();
        let second = page(&format!("&_pagedResultsCookie={cookie}"));
        assert_eq!(second["resultCount"], json!(2));
        assert_ne!(second["result"][0]["_id"], first["result"][0]["_id"]);

        let one = &all[0];
        let id = one["_id"].as_str().unwrap_or_default();
        let read = server.admin().get(&format!("/openidm/audit/activity/{id}")).send();
        assert_eq!(read.status, 200);
        assert_eq!(read.body, *one);
        assert_eq!(
            server
                .admin()
                .get("/openidm/audit/activity/no-such-event")
                .send()
                .status,
            404
        );
        server
            .admin()
            .get("/openidm/audit/nonsense?_queryFilter=true")
            .send()
            .assert_error(404);
        // Fields the store does not keep as columns are refused by name, not silently missed.
        let unqueryable = server
            .admin()
            .get(&format!(
                "/openidm/audit/activity?_queryFilter={}",
                url_encode("changedFields eq \"/mail\"")
            ))
            .send()
            .assert_error(400);
        assert_eq!(
            unqueryable,
            "Audit events of the topic activity cannot be queried or sorted by changedFields; these fields can: _id, timestamp, eventName, transactionId, userId, objectId, operation, status"
        );
        let unsortable = server
            .admin()
            .get("/openidm/audit/activity?_queryFilter=true&_sortKeys=timestamp,-before/mail")
            .send()
            .assert_error(400);
        assert!(
            unsortable.contains("sorted by before/mail; these fields can: _id,"),
            "{unsortable}"
        );

        let name = unique("reader");
        server.create_user(&name, Some("Passw0rd!"));
        let user = server.user(&name, "Passw0rd!");
        user.get("/openidm/audit/activity?_queryFilter=true")
            .send()
            .assert_error(403);
        server
            .anonymous()
            .get("/openidm/audit/access?_queryFilter=true")
            .send()
            .assert_error(403);
    });
}

#[test]
fn a_topic_without_a_query_handler_is_not_queryable() {
    let conf = json!({"eventHandlers": [{"class": JSON_CLASS, "config": {"name": "json", "topics": ["access"]}}]});
    let server = TestServer::builder().conf_file("audit.json", &conf.to_string()).start();
    let message = server
        .admin()
        .get("/openidm/audit/access?_queryFilter=true")
        .send()
        .assert_error(501);
    assert!(message.contains("repository handler"), "{message}");
}

#[test]
fn json_files_rotate_by_size_and_age_and_keep_the_newest() {
    let conf = json!({"eventHandlers": [{"class": JSON_CLASS, "config": {
        "name": "json", "topics": ["access"], "logDirectory": "data/audit",
        "fileRotation": {"rotationEnabled": true, "maxFileSize": 3000, "rotationInterval": "1 hour",
                         "rotationFilePrefix": "old-"},
        "fileRetention": {"maxNumberOfHistoryFiles": 2}}}]});
    let server = TestServer::builder()
        .manual_clock()
        .conf_file("audit.json", &conf.to_string())
        .start();
    let dir = server.project().join("data/audit");
    let rotated = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok())
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.starts_with("old-access.audit.json"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let ping = || {
        let reply = server.admin().get("/openidm/info/ping").send();
        assert_eq!(reply.status, 200);
        reply.header("x-forgerock-transactionid").unwrap_or_default().to_owned()
    };
    let first = ping();
    server.wait_until(WRITTEN, "the first event", || {
        file_events(server.project(), "access")
            .iter()
            .any(|e| e["transactionId"] == json!(first))
    });
    assert!(rotated().is_empty());
    server.advance_clock(Duration::from_secs(2 * 3600));
    let second = ping();
    server.wait_until(WRITTEN, "rotation by age", || {
        file_events(server.project(), "access")
            .iter()
            .any(|e| e["transactionId"] == json!(second))
    });
    let after_age = rotated();
    assert_eq!(after_age.len(), 1, "{after_age:?}");
    let old = std::fs::read_to_string(dir.join(&after_age[0])).unwrap_or_default();
    assert!(
        old.contains(&first) && !old.contains(&second),
        "the old file holds the old event"
    );

    let mut last = String::new();
    for _ in 0..40 {
        last = ping();
    }
    server.wait_until(WRITTEN, "the last event", || {
        file_events(server.project(), "access")
            .iter()
            .any(|e| e["transactionId"] == json!(last))
    });
    let kept = rotated();
    assert_eq!(kept.len(), 2, "only the newest two rotated files are kept: {kept:?}");
    for name in &kept {
        let size = std::fs::metadata(dir.join(name)).map(|m| m.len()).unwrap_or_default();
        assert!(size <= 3000, "{name}: {size} bytes");
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        for line in text.lines() {
            serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}"));
        }
    }
    for name in &kept {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(
            !text.contains(&first),
            "the oldest file was removed, {name} holds its event"
        );
    }
}

#[test]
fn syslog_receives_rfc5424_messages_over_udp_and_tcp() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    udp.set_read_timeout(Some(WRITTEN)).unwrap_or_else(|e| panic!("{e}"));
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = |address: std::io::Result<std::net::SocketAddr>| address.map(|a| a.port()).unwrap_or_default();
    let handlers = [
        json!({"class": SYSLOG_CLASS, "config": {"name": "udp", "topics": ["access"], "protocol": "UDP",
            "host": "127.0.0.1", "port": port(udp.local_addr()), "facility": "LOCAL0"}}),
        json!({"class": SYSLOG_CLASS, "config": {"name": "tcp", "topics": ["access"], "protocol": "TCP",
            "host": "127.0.0.1", "port": port(tcp.local_addr()), "facility": "AUTH", "connectTimeout": 5}}),
    ];
    let conf = json!({"eventHandlers": handlers});
    let server = TestServer::builder().conf_file("audit.json", &conf.to_string()).start();
    let reply = server.admin().get("/openidm/info/version").send();
    assert_eq!(reply.status, 200);
    let transaction = reply.header("x-forgerock-transactionid").unwrap_or_default().to_owned();

    let parse = |message: &str, priority: &str| {
        let rest = message
            .strip_prefix(&format!("<{priority}>1 "))
            .unwrap_or_else(|| panic!("priority {priority}: {message}"));
        let fields: Vec<&str> = rest.splitn(7, ' ').collect();
        assert_eq!(fields.len(), 7, "{message}");
        assert_eq!(
            (fields[2], fields[4], fields[5]),
            ("ferridm", "access", "-"),
            "{message}"
        );
        let event: Value = serde_json::from_str(fields[6]).unwrap_or_else(|e| panic!("{e}: {message}"));
        assert_eq!(event["timestamp"], json!(fields[0]));
        event
    };
    // UDP: every access event is a datagram; find the one of this request.
    let mut buffer = vec![0u8; 65_536];
    let mut udp_event = Value::Null;
    while udp_event.is_null() {
        let size = udp.recv(&mut buffer).unwrap_or_else(|e| panic!("no datagram: {e}"));
        let event = parse(&String::from_utf8_lossy(&buffer[..size]), "134");
        if event["transactionId"] == json!(transaction) {
            udp_event = event;
        }
    }
    assert_eq!(udp_event["http"]["request"]["path"], json!("/openidm/info/version"));

    // TCP: octet-counted frames on one connection.
    let (mut stream, _) = tcp.accept().unwrap_or_else(|e| panic!("{e}"));
    stream.set_read_timeout(Some(WRITTEN)).unwrap_or_else(|e| panic!("{e}"));
    let mut received = Vec::new();
    let mut tcp_event = Value::Null;
    while tcp_event.is_null() {
        let mut chunk = [0u8; 4096];
        let size = stream.read(&mut chunk).unwrap_or_else(|e| panic!("{e}"));
        assert!(size > 0, "the connection closed");
        received.extend_from_slice(&chunk[..size]);
        while let Some(space) = received.iter().position(|b| *b == b' ') {
            let length: usize = String::from_utf8_lossy(&received[..space])
                .parse()
                .unwrap_or_else(|e| panic!("{e}"));
            if received.len() < space + 1 + length {
                break;
            }
            let frame = String::from_utf8_lossy(&received[space + 1..space + 1 + length]).into_owned();
            received.drain(..space + 1 + length);
            let event = parse(&frame, "38");
            if event["transactionId"] == json!(transaction) {
                tcp_event = event;
            }
        }
    }
    assert_eq!(tcp_event["_id"], udp_event["_id"]);
}

/// A whole registration (with security answers), logins by headers and by session, and a
/// password reset through the mailed link: no event in any topic, in the files or the database,
/// holds a password, a hash, a security answer, a token, a code or a session cookie.
#[test]
fn no_secret_enters_the_audit_trail() {
    let smtp = SmtpServer::start();
    let mut reset = crate::registration::shipped_conf("selfservice-reset");
    if let Some(stages) = reset["stageConfigs"].as_array_mut() {
        stages.insert(
            3,
            json!({"name": "kbaSecurityAnswerVerificationStage", "kbaPropertyName": "kbaInfo",
                   "identityServiceUrl": "managed/user", "numberOfQuestionsUserMustAnswer": "2", "kbaConfig": null}),
        );
    }
    let server = audited(with_mail(TestServer::builder(), &smtp))
        .conf_file("selfservice-reset.json", &reset.to_string())
        .conf_file(
            "selfservice-registration.json",
            &process(&json!([user_details(), {"name": "kbaSecurityAnswerDefinitionStage", "kbaConfig": null}, self_registration()])),
        )
        .start();
    let name = unique("secret");
    let mut user = new_user(&name);
    let first_password = "F1rstSecretPass";
    user["password"] = json!(first_password);
    let asked = submit(&server.anonymous(), "registration", &json!({"input": {"user": user}}));
    let token = assert_asks(&asked, "kbaSecurityAnswerDefinitionStage", "initial");
    let (color, employer) = ("Ultramarine-Answer", "Initech-Answer");
    let registered = continue_with(
        &server,
        "registration",
        &token,
        json!({"kba": [{"questionId": "1", "answer": color}, {"questionId": "2", "answer": employer}]}),
    );
    assert_end(&registered, "selfRegistration");

    let logged_in = login(&server, &name, first_password);
    assert_eq!(logged_in.status, 200, "{}", logged_in.text);
    let cookie = logged_in.session_cookie().unwrap_or_default();
    let own = server
        .nobody()
        .get("/openidm/info/login")
        .header("cookie", &format!("session-jwt={cookie}"))
        .send();
    assert_eq!(own.status, 200);
    assert_eq!(login(&server, &name, "Wr0ngGuess-Secret").status, 401);

    let seen = smtp.messages().len();
    let mail_token = assert_asks(
        &find(&server, "reset", &by_user_name(&name)),
        "emailValidation",
        "validateCode",
    );
    let code = next_mail(&smtp, seen).query_param("code").unwrap_or_default();
    let questions = continue_with(&server, "reset", &mail_token, json!({"code": code}));
    let kba_token = assert_asks(&questions, "kbaSecurityAnswerVerificationStage", "answerQuestions");
    let properties = &questions.body["requirements"]["properties"];
    let answer = |key: &str| {
        if properties[key]["systemQuestion"]["en"] == json!("What's your favorite color?") {
            color
        } else {
            employer
        }
    };
    let reset_token = assert_asks(
        &continue_with(
            &server,
            "reset",
            &kba_token,
            json!({"answer1": answer("answer1"), "answer2": answer("answer2")}),
        ),
        "resetStage",
        "initial",
    );
    let second_password = "S3condSecretPass";
    assert_end(
        &continue_with(&server, "reset", &reset_token, json!({"password": second_password})),
        "resetStage",
    );
    assert_eq!(login(&server, &name, second_password).status, 200);

    // Wait for the last request's events, then read everything recorded.
    let last = server.admin().get("/openidm/info/version").send();
    let transaction = last.header("x-forgerock-transactionid").unwrap_or_default().to_owned();
    events(&server, "access", &format!("transactionId eq \"{transaction}\""), 1);
    let mut recorded = String::new();
    for topic in TOPICS {
        for line in file_events(server.project(), topic) {
            recorded.push_str(&line.to_string());
        }
        let reply = server
            .admin()
            .get(&format!("/openidm/audit/{topic}?_queryFilter=true&_pageSize=10000"))
            .send();
        assert_eq!(reply.status, 200);
        recorded.push_str(&reply.text);
    }
    assert!(recorded.contains(&name), "the run was recorded");
    assert!(recorded.contains("\"passwordChanged\":true"), "the reset was recorded");
    for secret in [
        first_password,
        second_password,
        "Wr0ngGuess-Secret",
        color,
        employer,
        &cookie,
        &mail_token,
        &kba_token,
        &reset_token,
        &token,
        &code,
        "$crypto",
        "$argon2",
    ] {
        assert!(!secret.is_empty());
        assert!(!recorded.contains(secret), "{secret} is in the audit trail");
    }
}
