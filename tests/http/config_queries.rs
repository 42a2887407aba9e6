//! `config?_queryFilter=…` as IDM 7 answers it (issue 19, what frodo-lib reads): the exact query
//! envelope with whole configuration objects; and secrets in configuration withheld from reads,
//! queries and write answers, and kept when a client writes the withheld value back.

use std::path::Path;

use ferridm_tests::{TestServer, on_each_backend};
use serde_json::{Value, json};

/// What a read or query returns in place of a secret.
fn withheld() -> Value {
    json!({"$crypto": {"type": "ferridm-withheld"}})
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The config object `id` as a read returns it: `_id` and the file's content.
fn entity(server: &TestServer, id: &str) -> Value {
    let mut entity = json!({"_id": id});
    let file = server.conf().join(format!("{}.json", id.replacen('/', "-", 1)));
    for (key, value) in read_json(&file).as_object().unwrap() {
        entity[key] = value.clone();
    }
    entity
}

/// The config ids of the conf directory but `boot`, sorted.
fn config_ids(server: &TestServer) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(server.conf())
        .unwrap()
        .filter_map(|entry| entry.unwrap().file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".json").map(|stem| stem.replacen('-', "/", 1)))
        .filter(|id| id != "boot")
        .collect();
    ids.sort();
    ids
}

#[test]
fn config_queries_answer_with_the_exact_query_envelope() {
    on_each_backend(|builder| {
        let server = builder.start();
        let admin = server.admin();

        let one = admin.get("/openidm/config?_queryFilter=_id eq \"ui/dashboard\"").send();
        assert_eq!(one.status, 200, "{}", one.text);
        assert_eq!(
            one.body,
            json!({
                "result": [entity(&server, "ui/dashboard")],
                "resultCount": 1,
                "pagedResultsCookie": null,
                "totalPagedResultsPolicy": "NONE",
                "totalPagedResults": -1,
                "remainingPagedResults": -1
            })
        );

        let all = admin.get("/openidm/config?_queryFilter=true").send();
        assert_eq!(all.status, 200, "{}", all.text);
        let expected: Vec<Value> = config_ids(&server).iter().map(|id| entity(&server, id)).collect();
        assert_eq!(
            all.body,
            json!({
                "result": expected,
                "resultCount": expected.len(),
                "pagedResultsCookie": null,
                "totalPagedResultsPolicy": "NONE",
                "totalPagedResults": -1,
                "remainingPagedResults": -1
            }),
            "every config but boot, whole, by id"
        );

        let paged = admin
            .get("/openidm/config?_queryFilter=_id sw \"selfservice/\"&_fields=_id&_pageSize=3&_totalPagedResultsPolicy=EXACT")
            .send();
        assert_eq!(paged.status, 200, "{}", paged.text);
        assert_eq!(
            paged.body,
            json!({
                "result": [{"_id": "selfservice/profile"}, {"_id": "selfservice/registration"}, {"_id": "selfservice/reset"}],
                "resultCount": 3,
                "pagedResultsCookie": "3",
                "totalPagedResultsPolicy": "EXACT",
                "totalPagedResults": 5,
                "remainingPagedResults": -1
            })
        );
        let rest = admin
            .get("/openidm/config?_queryFilter=_id sw \"selfservice/\"&_fields=_id&_pageSize=3&_pagedResultsCookie=3")
            .send();
        assert_eq!(
            rest.body,
            json!({
                "result": [{"_id": "selfservice/socialUserClaim"}, {"_id": "selfservice/username"}],
                "resultCount": 2,
                "pagedResultsCookie": null,
                "totalPagedResultsPolicy": "NONE",
                "totalPagedResults": -1,
                "remainingPagedResults": -1
            }),
            "{}",
            rest.text
        );

        let managed = admin
            .get("/openidm/config?_queryFilter=_id eq \"managed\"&_fields=_id")
            .send();
        assert_eq!(managed.body["result"], json!([{"_id": "managed"}]), "{}", managed.text);
        let by_content = admin
            .get("/openidm/config?_queryFilter=dashboard/widgets/0/type eq \"Welcome\"&_fields=_id")
            .send();
        assert_eq!(
            by_content.body["result"],
            json!([{"_id": "ui/dashboard"}]),
            "{}",
            by_content.text
        );
        let none = admin.get("/openidm/config?_queryFilter=_id eq \"boot\"").send();
        assert_eq!(none.body["result"], json!([]), "boot is never served: {}", none.text);

        let plain = admin.get("/openidm/config").send();
        assert_eq!(plain.body["_id"], json!(""), "{}", plain.text);
        assert!(plain.body["configurations"].is_array(), "{}", plain.text);
        assert!(
            plain.body.get("result").is_none(),
            "the plain read keeps its shape: {}",
            plain.text
        );
    });
}

/// An SMTP password and identity-provider client secrets, written in clear in the conf files.
const EMAIL: &str = r#"{"host": "127.0.0.1", "port": 2525, "from": "idm@example.com",
    "auth": {"enable": true, "username": "mailer", "password": "Sm7pS3cret"}}"#;
const PROVIDERS: &str = r#"{"providers": [
    {"provider": "google", "clientId": "g-id", "clientSecret": "G00gleS3cret",
     "wellKnownEndpoint": "https://accounts.google.com/.well-known/openid-configuration",
     "redirectUri": "https://idm.example.com/oauthReturn/", "scope": ["openid"]},
    {"provider": "apple", "clientId": "a-id", "clientSecret": "&{APPLE_SECRET|}",
     "wellKnownEndpoint": "https://appleid.apple.com/.well-known/openid-configuration",
     "redirectUri": "https://idm.example.com/oauthReturn/", "scope": ["openid"]},
    {"provider": "amazon", "clientId": "z-id", "clientSecret": "&{AMAZON_SECRET|Am4zonS3cret}",
     "wellKnownEndpoint": "https://amazon.example.com/.well-known/openid-configuration",
     "redirectUri": "https://idm.example.com/oauthReturn/", "scope": ["openid"]}]}"#;

#[test]
fn config_reads_and_queries_withhold_secrets() {
    on_each_backend(|builder| {
        let server = builder
            .conf_file("external.email.json", EMAIL)
            .conf_file("identityProviders.json", PROVIDERS)
            .start();
        let admin = server.admin();
        let file = server.conf().join("external.email.json");

        let read = admin.get("/openidm/config/external.email").send();
        assert_eq!(read.status, 200, "{}", read.text);
        assert_eq!(
            read.body["auth"],
            json!({"enable": true, "username": "mailer", "password": withheld()})
        );
        assert!(!read.text.contains("Sm7pS3cret"), "{}", read.text);

        let providers = admin.get("/openidm/config/identityProviders").send();
        assert_eq!(
            providers.body["providers"][0]["clientSecret"],
            withheld(),
            "{}",
            providers.text
        );
        assert_eq!(providers.body["providers"][0]["clientId"], json!("g-id"));
        assert_eq!(
            providers.body["providers"][1]["clientSecret"],
            json!("&{APPLE_SECRET|}"),
            "a placeholder without a default is no secret"
        );
        assert_eq!(
            providers.body["providers"][2]["clientSecret"],
            withheld(),
            "a placeholder's default is the secret itself: {}",
            providers.text
        );

        let queried = admin
            .get("/openidm/config?_queryFilter=_id eq \"external.email\"")
            .send();
        assert_eq!(queried.body["result"], json!([read.body.clone()]), "{}", queried.text);
        let all = admin.get("/openidm/config?_queryFilter=true").send();
        assert!(
            !all.text.contains("Sm7pS3cret")
                && !all.text.contains("G00gleS3cret")
                && !all.text.contains("Am4zonS3cret"),
            "{}",
            all.text
        );
        let probe = admin
            .get("/openidm/config?_queryFilter=auth/password eq \"Sm7pS3cret\"")
            .send();
        assert_eq!(
            probe.body["resultCount"],
            json!(0),
            "a filter cannot probe a secret: {}",
            probe.text
        );

        // Read, change, write back: the withheld password stays what it was.
        let mut changed = read.body.clone();
        changed["from"] = json!("noreply@example.com");
        let put = admin.put("/openidm/config/external.email", &changed).send();
        assert_eq!(put.status, 200, "{}", put.text);
        assert_eq!(put.body["auth"]["password"], withheld(), "{}", put.text);
        let stored = read_json(&file);
        assert_eq!(stored["auth"]["password"], json!("Sm7pS3cret"));
        assert_eq!(stored["from"], json!("noreply@example.com"));

        let patch = admin
            .patch(
                "/openidm/config/external.email",
                &json!([{"operation": "replace", "field": "/auth/password", "value": "N3wS3cret"}]),
            )
            .send();
        assert_eq!(patch.status, 200, "{}", patch.text);
        assert_eq!(patch.body["auth"]["password"], withheld(), "{}", patch.text);
        assert_eq!(read_json(&file)["auth"]["password"], json!("N3wS3cret"));
    });
}

/// A withheld secret written where there is no current value is refused, and nothing is written.
#[test]
fn a_withheld_secret_without_a_current_value_is_refused() {
    on_each_backend(|builder| {
        let server = builder.start();
        let body = json!({"host": "127.0.0.1", "auth": {"enable": true, "username": "u", "password": withheld()}});
        let reply = server.admin().put("/openidm/config/external.email", &body).send();
        let message = reply.assert_error(400);
        assert!(message.contains("withheld secret"), "{message}");
        assert!(
            !server.conf().join("external.email.json").exists(),
            "nothing was written"
        );
    });
}
