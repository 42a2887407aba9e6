//! Social sign-in against a real OpenID Provider (panva's certified `oidc-provider`, started on
//! loopback by `ferridm_tests::oidc`), driven as IDM's End User UI drives it (idm-api §13):
//! `getAuthRedirect`, the provider's login, `handlePostAuth` with every query parameter of the
//! return as an array, then registration (`oauthRegister` + `clientToken`) or the login
//! (`X-OpenIDM-OAuth-Login` + `X-OpenIDM-DataStoreToken`). Also every refusal: a tampered state,
//! a replayed return, another browser, a denied login, ID tokens with a foreign signature, a
//! wrong issuer, audience or nonce, an expired one, a provider that is down, and a profile the
//! client made up. Plus a plain OAuth 2.0 provider (user-info only), key rotation, a mapping
//! script, and a round trip that crosses nodes.

use std::time::Duration;

use ferridm_tests::oidc::OidcProvider;
use ferridm_tests::{Actor, Reply, ServerBuilder, TestServer, on_each_backend, on_postgres, unique};
use reqwest::Url;
use serde_json::{Value, json};

use crate::registration::{LOGIN, assert_asks, assert_end, submit, the_user, user_count, users_named};

/// The ferridm client registered at the provider.
const CLIENT_ID: &str = "ferridm-test";
/// Its secret, handed to ferridm through an environment placeholder with this default.
const CLIENT_SECRET: &str = "Cl1entS3cret-of-ferridm";
/// Where the provider sends the browser back to (the UI's return page; never fetched here).
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauthReturn/";
/// The provider's name in ferridm.
const PROVIDER: &str = "loopback";

/// A provider with one client (ferridm) and `accounts`.
fn start_provider(accounts: Value, extra: Value) -> OidcProvider {
    let mut setup = json!({
        "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [REDIRECT_URI]}],
        "accounts": accounts,
    });
    for (key, value) in extra.as_object().unwrap() {
        setup[key] = value.clone();
    }
    OidcProvider::start(&setup)
}

/// An account whose profile fills the whole registration form.
fn complete_account(sub: &str, user_name: &str) -> Value {
    json!({
        "sub": sub, "email": format!("{user_name}@example.com"), "email_verified": true,
        "given_name": "Ada", "family_name": "Lovelace", "name": "Ada Lovelace",
        "preferred_username": user_name
    })
}

/// ferridm's configuration of the provider: discovery, the secret through `&{…}`.
fn oidc_config(provider: &OidcProvider) -> Value {
    json!({
        "provider": PROVIDER,
        "configClass": "org.forgerock.oauth.clients.oidc.OpenIDConnectClientConfiguration",
        "clientId": CLIENT_ID,
        "clientSecret": format!("&{{FERRIDM_TEST_SOCIAL_SECRET|{CLIENT_SECRET}}}"),
        "wellKnownEndpoint": format!("{}/.well-known/openid-configuration", provider.issuer()),
        "redirectUri": REDIRECT_URI,
        "scope": ["openid", "profile", "email"],
        "authenticationIdKey": "sub",
        "propertyMap": [
            {"source": "given_name", "target": "givenName"},
            {"source": "family_name", "target": "sn"},
            {"source": "email", "target": "mail"},
            {"source": "preferred_username", "target": "userName"}
        ],
        "uiConfig": {"buttonDisplayName": "Loopback", "iconClass": "fa-sign-in"},
        "enabled": true
    })
}

/// The shipped registration process with social registration on.
fn social_registration() -> String {
    let shipped =
        std::fs::read_to_string(ferridm_tests::workspace_root().join("conf/selfservice-registration.json")).unwrap();
    let mut process: Value = serde_json::from_str(&shipped).unwrap();
    process["stageConfigs"][0]["socialRegistrationEnabled"] = json!(true);
    process.to_string()
}

/// A server configured with `providers` and social registration.
fn social_server(builder: ServerBuilder, providers: &[Value]) -> TestServer {
    builder
        .conf_file("identityProviders.json", &json!({"providers": providers}).to_string())
        .conf_file("selfservice-registration.json", &social_registration())
        .start()
}

/// One browser: the binding cookie `getAuthRedirect` sets goes back with `handlePostAuth`.
struct Browser {
    cookie: Option<String>,
}

/// A started round trip: the provider's authorization URL and the start token.
struct Started {
    redirect: String,
    token: String,
}

impl Browser {
    fn new() -> Self {
        Self { cookie: None }
    }

    /// `getAuthRedirect` as the UI sends it (anonymous headers).
    fn start(&mut self, server: &TestServer, provider: &str) -> Started {
        let reply = server
            .anonymous()
            .post(
                "/openidm/identityProviders?_action=getAuthRedirect",
                &json!({"provider": provider,
                        "landingPage": format!("{}/#/login?_oauthReturn=true&provider={provider}&gotoURL=%23", server.base())}),
            )
            .send();
        assert_eq!(reply.status, 200, "getAuthRedirect: {}", reply.text);
        self.cookie = reply
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|cookie| cookie.starts_with("ferridm-social="))
            .map(|cookie| cookie.split(';').next().unwrap().to_owned());
        let cookie = self.cookie.as_deref().expect("getAuthRedirect sets the binding cookie");
        assert!(cookie.len() > "ferridm-social=".len() + 20, "{cookie}");
        Started {
            redirect: reply.body["redirect"].as_str().unwrap().to_owned(),
            token: reply.body["token"].as_str().unwrap().to_owned(),
        }
    }

    /// `handlePostAuth` with the return URL's parameters (each as an array, as the UI posts
    /// them) and the start token.
    fn finish(&self, server: &TestServer, return_url: &str, token: &str) -> Reply {
        let url = Url::parse(return_url).unwrap();
        let mut body = serde_json::Map::new();
        for (name, value) in url.query_pairs() {
            body.insert(name.into_owned(), json!([value.into_owned()]));
        }
        let mut call = server
            .anonymous()
            .post(
                "/openidm/identityProviders?_action=handlePostAuth",
                &Value::Object(body),
            )
            .header("X-OpenIDM-NoSession", "true")
            .header("X-OpenIDM-DataStoreToken", token);
        if let Some(cookie) = &self.cookie {
            call = call.header("Cookie", cookie);
        }
        call.send()
    }
}

/// A whole round trip for `account`: the identity token `handlePostAuth` answers.
fn sign_in(server: &TestServer, provider: &OidcProvider, account: &str) -> String {
    let mut browser = Browser::new();
    let started = browser.start(server, PROVIDER);
    let returned = provider.login(&started.redirect, account);
    let reply = browser.finish(server, &returned, &started.token);
    assert_eq!(reply.status, 200, "handlePostAuth: {}", reply.text);
    let keys: Vec<&String> = reply.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["token"], "{}", reply.text);
    reply.body["token"].as_str().unwrap().to_owned()
}

/// The login as the UI sends it after a round trip.
fn social_login(server: &TestServer, identity: &str) -> Reply {
    server
        .nobody()
        .post_empty(LOGIN)
        .header("X-OpenIDM-OAuth-Login", "true")
        .header("X-OpenIDM-DataStoreToken", identity)
        .header("X-OpenIDM-NoSession", "false")
        .header("X-Requested-With", "XMLHttpRequest")
        .send()
}

/// Registration through the verified identity, as the UI submits it.
fn register(actor: &Actor<'_>, identity: &str) -> Reply {
    submit(
        actor,
        "registration",
        &json!({"input": {"clientToken": identity, "oauthRegister": "true"}}),
    )
}

/// §13.1: the UI's buttons come from `GET authentication`, the profile page's list from `GET
/// identityProviders`; neither carries the client secret.
#[test]
fn enabled_providers_are_offered_without_their_secret() {
    let provider = start_provider(json!([]), json!({}));
    let mut disabled = oidc_config(&provider);
    disabled["provider"] = json!("dormant");
    disabled["enabled"] = json!(false);
    let server = social_server(TestServer::builder(), &[oidc_config(&provider), disabled]);
    let buttons = server.anonymous().get("/openidm/authentication").send();
    assert_eq!(buttons.status, 200, "{}", buttons.text);
    let listed = buttons.body["providers"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{}", buttons.text);
    assert_eq!(listed[0]["provider"], json!(PROVIDER));
    assert_eq!(listed[0]["uiConfig"]["buttonDisplayName"], json!("Loopback"));
    assert!(!buttons.text.contains(CLIENT_SECRET), "{}", buttons.text);

    let admin_view = server.admin().get("/openidm/identityProviders").send();
    assert_eq!(
        admin_view.body["providers"], buttons.body["providers"],
        "{}",
        admin_view.text
    );
    let config = server.admin().get("/openidm/config/identityProviders").send();
    assert_eq!(config.status, 200, "{}", config.text);
    assert!(!config.text.contains(CLIENT_SECRET), "{}", config.text);

    let requirements = server.anonymous().get("/openidm/selfservice/registration").send();
    let offered = &requirements.body["requirements"]["definitions"]["providers"]["items"]["oneOf"];
    assert_eq!(offered[0]["provider"], json!(PROVIDER), "{}", requirements.text);
    let unknown = server
        .anonymous()
        .post(
            "/openidm/identityProviders?_action=getAuthRedirect",
            &json!({"provider": "dormant"}),
        )
        .send();
    assert!(unknown.assert_error(400).contains("dormant"), "{}", unknown.text);
}

/// §13.2–§13.5 end to end on both backends: the authorization URL asks for a code with S256
/// PKCE, state and nonce; registration through the verified identity stores the user linked to
/// it (`idps`); the login through a new round trip gets a session, counts the login, and works
/// once per identity token.
#[test]
fn sign_up_and_log_in_through_the_provider() {
    on_each_backend(|builder| {
        let name = unique("ada");
        let provider = start_provider(json!([complete_account("ada-sub-1", &name)]), json!({}));
        let server = social_server(builder, &[oidc_config(&provider)]);

        let mut browser = Browser::new();
        let started = browser.start(&server, PROVIDER);
        let authorization = Url::parse(&started.redirect).unwrap();
        assert!(
            started.redirect.starts_with(&format!("{}/auth?", provider.issuer())),
            "{}",
            started.redirect
        );
        let parameter = |name: &str| {
            authorization
                .query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
        };
        assert_eq!(parameter("response_type").as_deref(), Some("code"));
        assert_eq!(parameter("client_id").as_deref(), Some(CLIENT_ID));
        assert_eq!(parameter("redirect_uri").as_deref(), Some(REDIRECT_URI));
        assert_eq!(parameter("code_challenge_method").as_deref(), Some("S256"));
        assert_eq!(parameter("scope").as_deref(), Some("openid profile email"));
        for random in ["state", "nonce", "code_challenge"] {
            assert!(
                parameter(random).is_some_and(|value| value.len() >= 43),
                "{random}: {}",
                started.redirect
            );
        }
        assert!(
            !started.token.contains(&parameter("state").unwrap()),
            "the start token is sealed"
        );

        let returned = provider.login(&started.redirect, "ada-sub-1");
        let verified = browser.finish(&server, &returned, &started.token);
        assert_eq!(verified.status, 200, "{}", verified.text);
        let identity = verified.body["token"].as_str().unwrap().to_owned();
        assert!(
            !identity.contains("Lovelace") && !identity.contains(&name),
            "the identity token is sealed"
        );

        // Nobody is linked yet: the login fails and the UI goes on to registration.
        social_login(&server, &identity).assert_error(401);
        let registered = register(&server.anonymous(), &identity);
        let additions = assert_end(&registered, "localAutoLogin");
        assert_eq!(additions["oauthLogin"], json!(true), "{}", registered.text);
        assert!(additions.get("credentialJwt").is_none(), "{}", registered.text);
        let user = the_user(&server, &name);
        assert_eq!(
            (&user["givenName"], &user["sn"], &user["mail"]),
            (&json!("Ada"), &json!("Lovelace"), &json!(format!("{name}@example.com")))
        );
        let id = user["_id"].as_str().unwrap();
        let linked = server
            .admin()
            .get(&format!("/openidm/managed/user/{id}?_fields=idps,_meta"))
            .send();
        assert_eq!(
            linked.body["idps"],
            json!([{"_ref": format!("managed/{PROVIDER}/ada-sub-1"),
                    "_refResourceCollection": format!("managed/{PROVIDER}"),
                    "_refResourceId": "ada-sub-1",
                    "_refProperties": {"provider": PROVIDER, "subject": "ada-sub-1"}}]),
            "{}",
            linked.text
        );

        // The UI logs in with the same token after `oauthLogin: true`.
        let login = social_login(&server, &identity);
        assert_eq!(login.status, 200, "{}", login.text);
        let authorization = &login.body["authorization"];
        assert_eq!(authorization["id"], json!(id), "{}", login.text);
        assert_eq!(authorization["moduleId"], json!("SOCIAL_PROVIDERS"), "{}", login.text);
        assert_eq!(login.body["authenticationId"], json!(name), "{}", login.text);
        let cookie = login.session_cookie().expect("a session");
        let own = server
            .nobody()
            .get(&format!("/openidm/managed/user/{id}"))
            .header("Cookie", &format!("session-jwt={cookie}"))
            .send();
        assert_eq!(own.status, 200, "the session works: {}", own.text);
        // An identity token logs in once.
        social_login(&server, &identity).assert_error(401);
        // A new round trip logs in again; each login is counted.
        let again = social_login(&server, &sign_in(&server, &provider, "ada-sub-1"));
        assert_eq!(again.status, 200, "{}", again.text);
        let meta = server
            .admin()
            .get(&format!("/openidm/managed/user/{id}?_fields=_meta/loginCount"))
            .send();
        assert_eq!(meta.body["_meta"]["loginCount"], json!(2), "{}", meta.text);
        // The identity is linked once: registering it again is refused and creates nothing.
        let twice = register(&server.anonymous(), &sign_in(&server, &provider, "ada-sub-1"));
        assert!(twice.assert_error(409).contains("already linked"), "{}", twice.text);
        assert_eq!(users_named(&server, &name).len(), 1);
        // The user cannot link another identity to themselves.
        let hijack = server
            .nobody()
            .patch(
                &format!("/openidm/managed/user/{id}"),
                &json!([{"operation": "add", "field": "/idps/-", "value": {"_ref": "managed/loopback/someone-else"}}]),
            )
            .header("Cookie", &format!("session-jwt={cookie}"))
            .header("X-Requested-With", "XMLHttpRequest")
            .send();
        hijack.assert_error(403);
        // An administrator removing the link unlinks the identity.
        let unlinked = server
            .admin()
            .patch(
                &format!("/openidm/managed/user/{id}"),
                &json!([{"operation": "remove", "field": "/idps"}]),
            )
            .send();
        assert_eq!(unlinked.status, 200, "{}", unlinked.text);
        social_login(&server, &sign_in(&server, &provider, "ada-sub-1")).assert_error(401);
    });
}

/// §9.5.2: the registration asks only for what the provider's profile lacks, keeping what it
/// had; the e-mail the provider vouches for is kept with the identity.
#[test]
fn registration_asks_only_for_what_the_provider_did_not_say() {
    let name = unique("grace");
    let account = json!({"sub": "grace-1", "email": format!("{name}@example.com"), "email_verified": true,
                         "given_name": "Grace", "preferred_username": name});
    let provider = start_provider(json!([account]), json!({}));
    let server = social_server(TestServer::builder(), &[oidc_config(&provider)]);
    let identity = sign_in(&server, &provider, "grace-1");
    let anonymous = server.anonymous();
    let asked = register(&anonymous, &identity);
    let token = assert_asks(&asked, "idmUserDetails", "initial");
    let requirements = &asked.body["requirements"];
    let failed: Vec<&str> = requirements["failedPolicyRequirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|failure| failure["property"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["sn"], "{}", asked.text);
    assert_eq!(
        requirements["properties"]["user"]["default"],
        json!({"userName": name, "givenName": "Grace", "mail": format!("{name}@example.com")})
    );
    assert_eq!(users_named(&server, &name).len(), 0);
    let done = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"user": {"sn": "Hopper"}}}),
    );
    assert_eq!(assert_end(&done, "localAutoLogin")["oauthLogin"], json!(true));
    let user = the_user(&server, &name);
    assert_eq!((&user["givenName"], &user["sn"]), (&json!("Grace"), &json!("Hopper")));
    assert_eq!(social_login(&server, &identity).status, 200);
}

/// §13.5: the server turns the token back into the profile; a profile the client sends, a
/// forged token or a start token in its place registers nobody.
#[test]
fn a_profile_from_the_client_is_never_trusted() {
    let provider = start_provider(json!([]), json!({}));
    let server = social_server(TestServer::builder(), &[oidc_config(&provider)]);
    let anonymous = server.anonymous();
    let name = unique("mallory");
    let made_up = json!({"given_name": "M", "family_name": "Allory", "email": format!("{name}@example.com"),
                         "preferred_username": name, "sub": "victim-subject"});
    let claimed = submit(
        &anonymous,
        "registration",
        &json!({"input": {"oauthRegister": "true", "provider": PROVIDER, "profile": made_up}}),
    );
    assert!(claimed.assert_error(400).contains("clientToken"), "{}", claimed.text);
    let forged = register(&anonymous, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ2aWN0aW0ifQ.");
    assert!(forged.assert_error(400).contains("not valid"), "{}", forged.text);
    let start_token = Browser::new().start(&server, PROVIDER).token;
    register(&anonymous, &start_token).assert_error(400);
    social_login(&server, &start_token).assert_error(401);
    assert_eq!(user_count(&server), 0);
}

/// §5 of the issue: every refusal of the return leaves nothing behind and says why.
#[test]
fn returns_that_are_not_genuine_are_refused() {
    let name = unique("eve");
    let provider = start_provider(json!([complete_account("eve-1", &name)]), json!({}));
    let server = social_server(TestServer::builder(), &[oidc_config(&provider)]);

    // A state that is not the one sent.
    let mut browser = Browser::new();
    let started = browser.start(&server, PROVIDER);
    let returned = provider.login(&started.redirect, "eve-1");
    let mut tampered = Url::parse(&returned).unwrap();
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(key, value)| {
            let value = if key == "state" {
                format!("{value}x")
            } else {
                value.into_owned()
            };
            (key.into_owned(), value)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let refused = browser.finish(&server, tampered.as_str(), &started.token);
    assert!(
        refused.assert_error(400).contains("state does not match"),
        "{}",
        refused.text
    );

    // Another browser (no binding cookie) cannot finish a round trip.
    let mut browser = Browser::new();
    let started = browser.start(&server, PROVIDER);
    let returned = provider.login(&started.redirect, "eve-1");
    let elsewhere = Browser { cookie: None }.finish(&server, &returned, &started.token);
    assert!(
        elsewhere.assert_error(400).contains("another browser"),
        "{}",
        elsewhere.text
    );
    let stranger = Browser {
        cookie: Some("ferridm-social=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()),
    };
    stranger.finish(&server, &returned, &started.token).assert_error(400);
    // The genuine browser still can, once; the same return again is refused.
    assert_eq!(browser.finish(&server, &returned, &started.token).status, 200);
    let replayed = browser.finish(&server, &returned, &started.token);
    assert!(
        replayed.assert_error(400).contains("already been completed"),
        "{}",
        replayed.text
    );

    // The user cancels at the provider.
    let mut browser = Browser::new();
    let started = browser.start(&server, PROVIDER);
    let denied = browser.finish(&server, &provider.deny(&started.redirect), &started.token);
    assert!(denied.assert_error(400).contains("access_denied"), "{}", denied.text);

    // No start token, or a forged one.
    let mut browser = Browser::new();
    let started = browser.start(&server, PROVIDER);
    let returned = provider.login(&started.redirect, "eve-1");
    let without = server
        .anonymous()
        .post(
            "/openidm/identityProviders?_action=handlePostAuth",
            &json!({"code": ["x"]}),
        )
        .send();
    assert!(
        without.assert_error(400).contains("X-OpenIDM-DataStoreToken"),
        "{}",
        without.text
    );
    let mut forged = started.token.clone();
    forged.replace_range(10..11, if &forged[10..11] == "A" { "B" } else { "A" });
    browser.finish(&server, &returned, &forged).assert_error(400);
    assert_eq!(user_count(&server), 0);
}

/// The ID token's checks, each broken on its own by the provider's test knob: a signature by a
/// key not in the provider's key set, another issuer, another audience, another nonce.
#[test]
fn id_tokens_that_fail_a_check_are_refused() {
    let name = unique("trudy");
    let provider = start_provider(json!([complete_account("trudy-1", &name)]), json!({}));
    let server = social_server(TestServer::builder(), &[oidc_config(&provider)]);
    let cases = [
        (json!({}), true, "signature"),
        (json!({"iss": "http://127.0.0.1:1"}), false, "issuer"),
        (json!({"aud": "someone-else"}), false, "audience"),
        (json!({"nonce": "not-the-nonce"}), false, "nonce"),
    ];
    for (claims, rogue_key, check) in cases {
        let mut browser = Browser::new();
        let started = browser.start(&server, PROVIDER);
        let returned = provider.login(&started.redirect, "trudy-1");
        provider.tamper_next_id_token(&claims, rogue_key);
        let refused = browser.finish(&server, &returned, &started.token);
        let message = refused.assert_error(401);
        assert!(
            message.contains("ID token") && message.contains(check),
            "{check}: {}",
            refused.text
        );
    }
    // The knob is spent: an honest round trip works.
    sign_in(&server, &provider, "trudy-1");
    assert_eq!(user_count(&server), 0);
}

/// Keys the provider rotates are fetched again; an ID token past its expiry (by the server's
/// clock, with a minute of leeway) is refused.
#[test]
fn rotated_keys_are_followed_and_expired_tokens_refused() {
    let name = unique("old");
    let provider = start_provider(
        json!([complete_account("old-1", &name)]),
        json!({"idTokenTtlSeconds": 120}),
    );
    let server = social_server(TestServer::builder().manual_clock(), &[oidc_config(&provider)]);
    sign_in(&server, &provider, "old-1");
    provider.rotate_keys();
    // Key sets are fetched again at most every 10 seconds.
    server.advance_clock(Duration::from_secs(11));
    sign_in(&server, &provider, "old-1");

    let mut browser = Browser::new();
    let started = browser.start(&server, PROVIDER);
    let returned = provider.login(&started.redirect, "old-1");
    // The ID token is issued at the exchange, 120 s valid: 181 s later it is past its leeway.
    server.advance_clock(Duration::from_secs(120 + 61));
    let expired = browser.finish(&server, &returned, &started.token);
    let message = expired.assert_error(401);
    assert!(
        message.contains("ID token") && message.contains("expired"),
        "{}",
        expired.text
    );
    assert_eq!(user_count(&server), 0);
}

/// A provider that cannot be reached: a clear 503 at the start (discovery) and at the return
/// (the code exchange), and nothing created.
#[test]
fn a_provider_that_is_down_gives_a_clear_error() {
    let name = unique("down");
    let provider = start_provider(json!([complete_account("down-1", &name)]), json!({}));
    let server = social_server(TestServer::builder(), &[oidc_config(&provider)]);
    let mut browser = Browser::new();
    let started = browser.start(&server, PROVIDER);
    let returned = provider.login(&started.redirect, "down-1");
    drop(provider);
    let unreachable = browser.finish(&server, &returned, &started.token);
    assert!(
        unreachable.assert_error(503).contains("cannot be reached"),
        "{}",
        unreachable.text
    );

    let closed = start_provider(json!([]), json!({}));
    let config = oidc_config(&closed);
    drop(closed);
    let server = social_server(TestServer::builder(), &[config]);
    let start = server
        .anonymous()
        .post(
            "/openidm/identityProviders?_action=getAuthRedirect",
            &json!({"provider": PROVIDER}),
        )
        .send();
    assert!(start.assert_error(503).contains("cannot be reached"), "{}", start.text);
    assert_eq!(user_count(&server), 0);
}

/// A plain OAuth 2.0 provider (no ID token; the profile from its user-info endpoint, like
/// GitHub's): sign-up and login work the same way.
#[test]
fn a_plain_oauth2_provider_signs_users_up_and_in() {
    let name = unique("octo");
    let provider = start_provider(json!([complete_account("octo-7", &name)]), json!({}));
    let issuer = provider.issuer().to_owned();
    let config = json!({
        "provider": PROVIDER, "type": "OAUTH2", "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
        "basicAuth": true,
        "authorizationEndpoint": format!("{issuer}/auth"), "tokenEndpoint": format!("{issuer}/token"),
        "userInfoEndpoint": provider.profile_endpoint(), "redirectUri": REDIRECT_URI,
        "scope": ["profile", "email"], "authenticationIdKey": "sub",
        "propertyMap": [
            {"source": "given_name", "target": "givenName"}, {"source": "family_name", "target": "sn"},
            {"source": "email", "target": "mail"}, {"source": "preferred_username", "target": "userName"}
        ]
    });
    let server = social_server(TestServer::builder(), &[config]);
    let mut browser = Browser::new();
    let started = browser.start(&server, PROVIDER);
    assert!(!started.redirect.contains("nonce="), "{}", started.redirect);
    let identity = sign_in(&server, &provider, "octo-7");
    assert_end(&register(&server.anonymous(), &identity), "localAutoLogin");
    assert_eq!(the_user(&server, &name)["sn"], json!("Lovelace"));
    assert_eq!(social_login(&server, &identity).status, 200);
}

/// `scripts/social/<provider>.rhai` shapes the profile after the property map.
#[test]
fn the_mapping_script_shapes_the_profile() {
    let name = unique("mapped");
    let provider = start_provider(json!([complete_account("mapped-1", &name)]), json!({}));
    let script = "fn normalize(profile, claims) {\n\
                  \x20   profile.description = \"Signed up as \" + claims.name;\n\
                  \x20   profile.sn = profile.sn.to_upper();\n\
                  \x20   profile\n\
                  }\n";
    let server = social_server(
        TestServer::builder().edit(move |project| {
            let dir = project.join("scripts/social");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{PROVIDER}.rhai")), script).unwrap();
        }),
        &[oidc_config(&provider)],
    );
    let identity = sign_in(&server, &provider, "mapped-1");
    assert_end(&register(&server.anonymous(), &identity), "localAutoLogin");
    let user = the_user(&server, &name);
    assert_eq!(user["sn"], json!("LOVELACE"), "{user}");
    assert_eq!(user["description"], json!("Signed up as Ada Lovelace"), "{user}");
}

/// A round trip started on one node finishes on another, and its tokens are spent everywhere.
#[test]
fn a_round_trip_crosses_nodes() {
    on_postgres(|builder| {
        let name = unique("nodes");
        let provider = start_provider(json!([complete_account("nodes-1", &name)]), json!({}));
        let first = social_server(builder, &[oidc_config(&provider)]);
        let second = TestServer::builder().sharing(&first).start();
        let mut browser = Browser::new();
        let started = browser.start(&first, PROVIDER);
        let returned = provider.login(&started.redirect, "nodes-1");
        let verified = browser.finish(&second, &returned, &started.token);
        assert_eq!(verified.status, 200, "{}", verified.text);
        browser.finish(&first, &returned, &started.token).assert_error(400);
        let identity = verified.body["token"].as_str().unwrap().to_owned();
        assert_end(&register(&first.anonymous(), &identity), "localAutoLogin");
        assert_eq!(social_login(&second, &identity).status, 200);
        social_login(&first, &identity).assert_error(401);
    });
}

/// §13.6 account claiming: an identity whose verified e-mail is an existing account's links to
/// it only once the account proves itself with its password; then the identity logs in as it.
#[test]
fn an_existing_account_is_claimed_with_its_password() {
    on_each_backend(|builder| {
        let name = unique("claim");
        let provider = start_provider(json!([complete_account("claim-1", &name)]), json!({}));
        let server = social_server(builder, &[oidc_config(&provider)]);
        let created = server.create_user(&name, Some("Cl4imMyAccount"));
        let id = created["_id"].as_str().unwrap().to_owned();
        let identity = sign_in(&server, &provider, "claim-1");
        social_login(&server, &identity).assert_error(401);

        let anonymous = server.anonymous();
        let initial = anonymous.get("/openidm/selfservice/socialUserClaim").send();
        assert_eq!(initial.status, 200, "{}", initial.text);
        assert_eq!(
            initial.body["requirements"]["required"],
            json!(["clientToken"]),
            "{}",
            initial.text
        );
        let asked = submit(
            &anonymous,
            "socialUserClaim",
            &json!({"input": {"clientToken": identity}}),
        );
        let token = assert_asks(&asked, "socialUserClaim", "verifyProfile");
        let requirements = &asked.body["requirements"];
        assert_eq!(
            requirements["mail"],
            json!(format!("{name}@example.com")),
            "{}",
            asked.text
        );
        assert_eq!(requirements["required"], json!(["password"]), "{}", asked.text);

        // The e-mail claim alone links nothing: a wrong password is refused.
        let wrong = submit(
            &anonymous,
            "socialUserClaim",
            &json!({"token": token, "input": {"password": "n0t-the-Password"}}),
        );
        assert!(
            wrong.assert_error(403).contains("could not be verified"),
            "{}",
            wrong.text
        );
        social_login(&server, &identity).assert_error(401);
        let right = submit(
            &anonymous,
            "socialUserClaim",
            &json!({"token": token, "input": {"password": "Cl4imMyAccount"}}),
        );
        let additions = assert_end(&right, "socialUserClaim");
        assert_eq!(
            additions,
            json!({"claimedProfile": true, "oauthLogin": true}),
            "{}",
            right.text
        );
        let login = social_login(&server, &identity);
        assert_eq!(login.status, 200, "{}", login.text);
        assert_eq!(login.body["authorization"]["id"], json!(id), "{}", login.text);
        assert_eq!(users_named(&server, &name).len(), 1);
    });
}

/// An address the provider does not vouch for claims nothing, and an identity already linked
/// claims nothing more.
#[test]
fn unverified_addresses_claim_no_account() {
    let name = unique("unverified");
    let mut account = complete_account("unverified-1", &name);
    account["email_verified"] = json!(false);
    let provider = start_provider(json!([account]), json!({}));
    let server = social_server(TestServer::builder(), &[oidc_config(&provider)]);
    server.create_user(&name, Some("Cl4imMyAccount"));
    let identity = sign_in(&server, &provider, "unverified-1");
    let refused = submit(
        &server.anonymous(),
        "socialUserClaim",
        &json!({"input": {"clientToken": identity}}),
    );
    assert!(refused.assert_error(400).contains("did not verify"), "{}", refused.text);
    social_login(&server, &identity).assert_error(401);
}

/// Provider configuration and mapping scripts are hot-reloaded like every conf file and script:
/// a broken provider or script is refused with a line naming the problem while the last good
/// generation keeps serving; a good change is picked up without a restart.
#[test]
fn provider_config_and_mapping_scripts_reload_and_broken_ones_are_refused() {
    const RELOAD: Duration = Duration::from_secs(20);
    let name = unique("reload");
    let provider = start_provider(json!([complete_account("reload-1", &name)]), json!({}));
    let server = social_server(TestServer::builder(), &[oidc_config(&provider)]);
    let config_path = server.conf().join("identityProviders.json");
    let script_path = server.project().join(format!("scripts/social/{PROVIDER}.rhai"));
    let save = |path: &std::path::Path, contents: &str| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let temporary = path.with_extension("saving");
        std::fs::write(&temporary, contents).unwrap();
        std::fs::rename(&temporary, path).unwrap();
    };
    let status = || server.admin().get("/openidm/config/status").send().body;
    let button = || {
        server.anonymous().get("/openidm/authentication").send().body["providers"][0]["uiConfig"]["buttonDisplayName"]
            .clone()
    };
    let refusal_about = |file: &str| -> String {
        server.wait_until(RELOAD, "the refusal in config/status", || {
            status()["errors"].as_array().is_some_and(|errors| {
                errors
                    .iter()
                    .any(|error| error["file"].as_str().is_some_and(|f| f.ends_with(file)))
            })
        });
        status()["errors"].to_string()
    };

    let mut broken = oidc_config(&provider);
    broken.as_object_mut().unwrap().remove("clientId");
    save(&config_path, &json!({"providers": [broken]}).to_string());
    let refused = refusal_about("identityProviders.json");
    assert!(refused.contains("providers[0]: missing field `clientId`"), "{refused}");
    assert_eq!(button(), json!("Loopback"), "the last good providers keep serving");
    sign_in(&server, &provider, "reload-1");

    let mut renamed = oidc_config(&provider);
    renamed["uiConfig"]["buttonDisplayName"] = json!("Loopback ID");
    save(&config_path, &json!({"providers": [renamed]}).to_string());
    server.wait_until(RELOAD, "the new button name", || button() == json!("Loopback ID"));

    save(&script_path, "fn normalize(profile, claims) {\n    profile.sn = \n}\n");
    let refused = refusal_about(&format!("{PROVIDER}.rhai"));
    assert!(refused.contains("social"), "{refused}");
    let profile = || {
        server
            .admin()
            .post(
                "/openidm/identityProviders?_action=normalizeProfile",
                &json!({"provider": PROVIDER, "given_name": "Ada", "family_name": "Lovelace"}),
            )
            .send()
    };
    let before = profile();
    assert_eq!(before.status, 200, "{}", before.text);
    assert_eq!(
        (&before.body["givenName"], &before.body["description"]),
        (&json!("Ada"), &Value::Null),
        "{}",
        before.text
    );

    save(
        &script_path,
        "fn normalize(profile, claims) {\n    profile.description = \"mapped\";\n    profile\n}\n",
    );
    server.wait_until(RELOAD, "the mapping script", || {
        profile().body["description"] == json!("mapped")
    });
    assert_eq!(status()["errors"], json!([]));
    sign_in(&server, &provider, "reload-1");
}

/// Progressive profile applies to a social login as to a password login: with a profile process
/// due on every login, the login through the provider reports it pending.
#[test]
fn progressive_profile_applies_to_social_logins() {
    let name = unique("pending");
    let provider = start_provider(json!([complete_account("pending-1", &name)]), json!({}));
    let every_login = json!({
        "stageConfigs": [{
            "name": "conditionaluser",
            "identityServiceUrl": "managed/user",
            "condition": {"type": "loginCount", "interval": "every", "amount": 1},
            "evaluateConditionOnField": "user",
            "onConditionTrue": {
                "name": "attributecollection",
                "identityServiceUrl": "managed/user",
                "uiConfig": {"displayName": "Add your telephone number", "purpose": "Reach you", "buttonText": "Save"},
                "attributes": [{"name": "telephoneNumber", "isRequired": true}]
            }
        }]
    });
    let server = social_server(
        TestServer::builder().conf_file("selfservice-profile.json", &every_login.to_string()),
        &[oidc_config(&provider)],
    );
    let identity = sign_in(&server, &provider, "pending-1");
    assert_end(&register(&server.anonymous(), &identity), "localAutoLogin");
    let login = social_login(&server, &identity);
    assert_eq!(login.status, 200, "{}", login.text);
    let authorization = &login.body["authorization"];
    assert_eq!(authorization["processesRequired"], json!(true), "{}", login.text);
    assert_eq!(
        authorization["requiredProfileProcesses"],
        json!(["selfservice/profile"]),
        "{}",
        login.text
    );
    assert!(
        !authorization["roles"]
            .as_array()
            .unwrap()
            .contains(&json!("internal/role/openidm-authorized")),
        "{}",
        login.text
    );
}
