//! Password reset and forgotten username (`selfservice/reset`, `selfservice/username`, idm-api
//! §9.5.11) with the shipped configuration, mail going through a real SMTP server on loopback:
//! the whole flows, every refusal of their stages, answers that do not tell whether an account
//! exists, tokens that work once (on every node), rate limits, a mail server that is down, and
//! sessions that end when the password changes.

use std::time::Duration;

use ferridm_tests::smtp::{Mail, SmtpServer, unused_port};
use ferridm_tests::{Reply, ServerBuilder, TestServer, on_each_backend, on_postgres, unique};
use serde_json::{Value, json};

use crate::registration::{
    PASSWORD, assert_asks, assert_bad_request, assert_end, login, new_user, process, self_registration, shipped_conf,
    start, submit, user_details,
};

/// How long a test waits for a message to reach the SMTP server.
const MAIL_WAIT: Duration = Duration::from_secs(20);
/// The password accounts start with.
const OLD_PASSWORD: &str = "0ldPassword";
/// The password a reset sets.
const NEW_PASSWORD: &str = "N3wPassword";

/// The server with its mail going to `smtp`.
pub(crate) fn with_mail(builder: ServerBuilder, smtp: &SmtpServer) -> ServerBuilder {
    builder.conf_file("external.email.json", &smtp.email_conf())
}

/// Creates an active account `<name>` with address `<name>@example.com`; returns its id.
fn account(server: &TestServer, name: &str) -> String {
    server.create_user(name, Some(OLD_PASSWORD))["_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no _id for {name}"))
        .to_owned()
}

/// Replaces one field of `managed/user/<id>` as the administrator.
fn admin_patch(server: &TestServer, id: &str, field: &str, value: &str) {
    let reply = server
        .admin()
        .post(
            &format!("/openidm/managed/user/{id}?_action=patch"),
            &json!([{"operation": "replace", "field": field, "value": value}]),
        )
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text);
}

pub(crate) fn by_user_name(name: &str) -> String {
    format!(r#"userName eq "{name}""#)
}

/// Submits the first step of `process` (`userQuery`) anonymously.
pub(crate) fn find(server: &TestServer, process: &str, filter: &str) -> Reply {
    submit(&server.anonymous(), process, &json!({"input": {"queryFilter": filter}}))
}

pub(crate) fn continue_with(server: &TestServer, process: &str, token: &str, input: Value) -> Reply {
    submit(&server.anonymous(), process, &json!({"token": token, "input": input}))
}

/// The one message sent since `seen` messages had arrived.
pub(crate) fn next_mail(smtp: &SmtpServer, seen: usize) -> Mail {
    let mails = smtp.wait_for_messages(seen + 1, MAIL_WAIT);
    assert_eq!(mails.len(), seen + 1, "exactly one more message: {mails:#?}");
    mails[seen].clone()
}

/// `GET info/login` with only the session cookie.
fn with_session(server: &TestServer, cookie: &str) -> Reply {
    server
        .nobody()
        .get("/openidm/info/login")
        .header("cookie", &format!("session-jwt={cookie}"))
        .send()
}

fn session_of(server: &TestServer, name: &str, password: &str) -> String {
    let reply = login(server, name, password);
    assert_eq!(reply.status, 200, "login of {name}: {}", reply.text);
    let cookie = reply.session_cookie().unwrap_or_default();
    assert!(!cookie.is_empty(), "no session for {name}");
    assert_eq!(with_session(server, &cookie).status, 200, "the fresh session works");
    cookie
}

/// The whole reset over HTTP and SMTP: the requirements, the mail and its link, every refusal
/// on the way, a weak password refused with the policy body while the old one keeps working,
/// then the new password in, the old one and every session from before out, and no link or
/// token usable twice.
#[test]
fn a_password_is_reset_through_the_mailed_link() {
    on_each_backend(|builder| {
        let smtp = SmtpServer::start();
        let server = with_mail(builder, &smtp).start();
        let name = unique("reset");
        account(&server, &name);
        let before = session_of(&server, &name, OLD_PASSWORD);

        let first = start(&server.anonymous(), "reset");
        assert_eq!(first.status, 200, "{}", first.text);
        assert_eq!(first.body["type"], json!("userQuery"));
        assert_eq!(first.body["requirements"]["description"], json!("Find your account"));
        assert_eq!(first.body["requirements"]["required"], json!(["queryFilter"]));

        let asked = find(&server, "reset", &by_user_name(&name));
        let token = assert_asks(&asked, "emailValidation", "validateCode");
        assert_eq!(asked.body["requirements"]["required"], json!(["code"]));
        let mail = next_mail(&smtp, 0);
        assert_eq!(mail.rcpt_tos, [format!("{name}@example.com")], "{mail:#?}");
        assert_eq!(mail.mail_from, "noreply@example.com");
        assert_eq!(mail.subject, "Reset your password");
        assert!(mail.content_type.starts_with("text/html"), "{mail:#?}");
        let link = mail.link().unwrap_or_else(|| panic!("no link: {mail:#?}"));
        assert!(
            link.starts_with("http://localhost:8080/#/passwordreset/&token="),
            "{link}"
        );
        assert_eq!(mail.query_param("token").as_deref(), Some(token.as_str()));
        let code = mail.query_param("code").unwrap_or_else(|| panic!("no code: {mail:#?}"));

        assert_bad_request(
            &continue_with(&server, "reset", &token, json!({"code": ""})),
            "Input code is missing",
        );
        assert_bad_request(
            &continue_with(&server, "reset", &token, json!({"code": "x"})),
            "Invalid code",
        );
        let asked = continue_with(&server, "reset", &token, json!({"code": code}));
        let reset = assert_asks(&asked, "resetStage", "initial");
        assert_eq!(asked.body["requirements"]["description"], json!("Reset password"));
        assert_eq!(asked.body["requirements"]["required"], json!(["password"]));
        assert_bad_request(
            &continue_with(&server, "reset", &token, json!({"code": code})),
            "The token has already been used",
        );

        assert_bad_request(
            &continue_with(&server, "reset", &reset, json!({"password": ""})),
            "password is missing from input",
        );
        let weak = continue_with(&server, "reset", &reset, json!({"password": "weak"}));
        assert_eq!(weak.status, 403, "{}", weak.text);
        assert_eq!(weak.body["message"], json!("Failed policy validation"));
        let failed = weak.body["detail"]["failedPolicyRequirements"].to_string();
        assert!(
            failed.contains("MIN_LENGTH") && failed.contains("\"password\""),
            "{failed}"
        );
        assert_eq!(
            login(&server, &name, OLD_PASSWORD).status,
            200,
            "the old password still works"
        );
        assert_eq!(with_session(&server, &before).status, 200, "and so does the session");

        let done = continue_with(&server, "reset", &reset, json!({"password": NEW_PASSWORD}));
        assert_eq!(assert_end(&done, "resetStage"), json!({}));
        assert_bad_request(
            &continue_with(&server, "reset", &reset, json!({"password": "An0therOne"})),
            "The token has already been used",
        );
        assert_eq!(login(&server, &name, OLD_PASSWORD).status, 401);
        assert_eq!(login(&server, &name, NEW_PASSWORD).status, 200);
        assert_eq!(
            with_session(&server, &before).status,
            401,
            "a session from before the reset"
        );
        assert_eq!(smtp.messages().len(), 1, "one message in all");
    });
}

/// The fields of a reply a caller could compare: status, keys, and every value but the token
/// (which is compared by length).
fn shape(reply: &Reply) -> Value {
    let mut body = reply.body.clone();
    let token_length = body.get("token").and_then(Value::as_str).map(str::len);
    if let Some(map) = body.as_object_mut() {
        map.remove("token");
    }
    json!({"status": reply.status, "body": body, "tokenLength": token_length})
}

/// No enumeration: a filter matching nobody, several accounts, an inactive account or one
/// without an address answers exactly like one matching an active account (same status, same
/// body field by field, tokens of the same length, and the next step refused the same way);
/// only the real account gets mail.
#[test]
fn a_reset_answers_the_same_whether_or_not_the_account_exists() {
    on_each_backend(|builder| {
        let smtp = SmtpServer::start();
        let server = with_mail(builder, &smtp).start();
        let tag = unique("enum");
        let real = format!("{tag}-real");
        account(&server, &real);
        let inactive = format!("{tag}-inactive");
        let inactive_id = account(&server, &inactive);
        admin_patch(&server, &inactive_id, "/accountStatus", "inactive");
        let twins = format!("{tag}-twin");
        for index in 0..2 {
            let reply = server
                .admin()
                .post(
                    "/openidm/managed/user?_action=create",
                    &json!({"userName": format!("{twins}{index}"), "givenName": twins, "sn": "Twin",
                            "mail": format!("{twins}{index}@example.com")}),
                )
                .send();
            assert_eq!(reply.status, 201, "{}", reply.text);
        }

        let matched = find(&server, "reset", &by_user_name(&real));
        let mail = next_mail(&smtp, 0);
        assert_eq!(mail.rcpt_tos, [format!("{real}@example.com")]);
        let expected = shape(&matched);
        assert_eq!(matched.body["tag"], json!("validateCode"), "{}", matched.text);
        let refused_code = |reply: &Reply| {
            let token = reply.body["token"].as_str().unwrap_or_default().to_owned();
            shape(&continue_with(&server, "reset", &token, json!({"code": "12345678"})))
        };
        let wrong_code = refused_code(&matched);
        for filter in [
            by_user_name(&format!("{tag}-nobody")),
            format!(r#"givenName eq "{twins}""#),
            by_user_name(&inactive),
            format!(r#"mail eq "{tag}-nobody@example.com""#),
        ] {
            let answer = find(&server, "reset", &filter);
            assert_eq!(shape(&answer), expected, "{filter}: {}", answer.text);
            assert_eq!(refused_code(&answer), wrong_code, "{filter}");
        }
        assert_eq!(smtp.messages().len(), 1, "only the real account got mail");
    });
}

/// `revealAccountExistence: true` restores IDM's literal answers: 400 "Unable to find account"
/// for no match or several, the inactive-account refusal, and the user name in `additions`.
#[test]
fn revealing_account_existence_restores_idm_answers() {
    let smtp = SmtpServer::start();
    let mut reset = shipped_conf("selfservice-reset");
    reset["revealAccountExistence"] = json!(true);
    let mut username = shipped_conf("selfservice-username");
    username["revealAccountExistence"] = json!(true);
    let server = with_mail(TestServer::builder(), &smtp)
        .conf_file("selfservice-reset.json", &reset.to_string())
        .conf_file("selfservice-username.json", &username.to_string())
        .start();
    let name = unique("reveal");
    let id = account(&server, &name);
    account(&server, &format!("{name}-namesake"));
    assert_bad_request(
        &find(&server, "reset", &by_user_name(&format!("{name}-nobody"))),
        "Unable to find account",
    );
    assert_bad_request(&find(&server, "reset", r#"sn eq "User""#), "Unable to find account");
    let done = find(&server, "username", &format!(r#"mail eq "{name}@example.com""#));
    assert_eq!(assert_end(&done, "retrieveUsername"), json!({"userName": name}));
    assert!(next_mail(&smtp, 0).body.contains(&name));

    admin_patch(&server, &id, "/accountStatus", "inactive");
    assert_bad_request(
        &find(&server, "reset", &by_user_name(&name)),
        "You do not have permissions to reset password. Please contact administrator",
    );
    assert_eq!(smtp.messages().len(), 1, "nothing more was sent");
}

/// The forgotten-username flow: the name goes by mail (HTML-escaped, in the caller's language
/// when the template has it), the answer is the same
/// empty completion whether or not the address belongs to an account, and a filter on a field
/// outside `validQueryFields` (or `true`) is refused.
#[test]
fn a_forgotten_user_name_is_mailed() {
    on_each_backend(|builder| {
        let smtp = SmtpServer::start();
        let server = with_mail(builder, &smtp).start();
        let name = format!("{}<b>", unique("forgot"));
        let created = server
            .admin()
            .post(
                "/openidm/managed/user?_action=create",
                &json!({"userName": name, "givenName": "Forgetful", "sn": "User", "mail": "forgetful@example.com"}),
            )
            .send();
        assert_eq!(created.status, 201, "{}", created.text);
        let first = start(&server.anonymous(), "username");
        assert_eq!(first.body["type"], json!("userQuery"), "{}", first.text);

        let done = find(&server, "username", r#"mail eq "forgetful@example.com""#);
        let additions = assert_end(&done, "retrieveUsername");
        assert_eq!(additions, json!({}));
        let mail = next_mail(&smtp, 0);
        assert_eq!(mail.rcpt_tos, ["forgetful@example.com"]);
        assert_eq!(mail.subject, "Your user name");
        let escaped = name.replace('<', "&lt;").replace('>', "&gt;");
        assert!(mail.body.contains(&escaped), "{mail:#?}");
        assert!(!mail.body.contains(&name), "not as raw HTML: {mail:#?}");

        let french = server
            .anonymous()
            .post(
                "/openidm/selfservice/username?_action=submitRequirements",
                &json!({"input": {"queryFilter": r#"mail eq "forgetful@example.com""#}}),
            )
            .header("accept-language", "fr-CA, en;q=0.5")
            .send();
        assert_end(&french, "retrieveUsername");
        let mail = next_mail(&smtp, 1);
        assert_eq!(
            mail.subject, "Votre nom d'utilisateur",
            "the template for the caller's locale"
        );
        assert!(mail.body.contains("Le nom d'utilisateur de votre compte"), "{mail:#?}");

        let nobody = find(&server, "username", r#"mail eq "nobody@example.com""#);
        assert_eq!(shape(&nobody), shape(&done));
        assert_bad_request(&find(&server, "username", &by_user_name(&name)), "Invalid query filter");
        assert_bad_request(&find(&server, "username", "true"), "Invalid query filter");
        assert_bad_request(&find(&server, "username", "mail eq"), "Invalid query filter");
        assert_eq!(smtp.messages().len(), 2);
    });
}

/// A reset token used on one node is refused on another (the flow's state is in the database),
/// both a mid-flow token and the completed reset's.
#[test]
fn a_used_reset_token_is_refused_on_every_node() {
    on_postgres(|builder| {
        let smtp = SmtpServer::start();
        let first = with_mail(builder, &smtp).start();
        let second = with_mail(TestServer::builder().sharing(&first), &smtp).start();
        let name = unique("nodes");
        account(&first, &name);
        let token = assert_asks(
            &find(&first, "reset", &by_user_name(&name)),
            "emailValidation",
            "validateCode",
        );
        let code = next_mail(&smtp, 0).query_param("code").unwrap_or_default();
        let reset = assert_asks(
            &continue_with(&first, "reset", &token, json!({"code": code})),
            "resetStage",
            "initial",
        );
        assert_bad_request(
            &continue_with(&second, "reset", &token, json!({"code": code})),
            "The token has already been used",
        );
        assert_end(
            &continue_with(&second, "reset", &reset, json!({"password": NEW_PASSWORD})),
            "resetStage",
        );
        for node in [&first, &second] {
            assert_bad_request(
                &continue_with(node, "reset", &reset, json!({"password": "An0therOne"})),
                "The token has already been used",
            );
        }
        assert_eq!(login(&first, &name, NEW_PASSWORD).status, 200);
    });
}

/// Every process's tokens are spent when it moves on: an intermediate registration token
/// registers one user, not one per submission.
#[test]
fn a_registration_token_registers_one_user() {
    on_each_backend(|builder| {
        let server = builder.start();
        let name = unique("once");
        let asked = submit(&server.anonymous(), "registration", &json!({"input": {}}));
        let token = assert_asks(&asked, "idmUserDetails", "initial");
        let done = submit(
            &server.anonymous(),
            "registration",
            &json!({"token": token, "input": {"user": new_user(&name)}}),
        );
        assert_end(&done, "localAutoLogin");
        let again = submit(
            &server.anonymous(),
            "registration",
            &json!({"token": token, "input": {"user": new_user(&format!("{name}-2"))}}),
        );
        assert_bad_request(&again, "The token has already been used");
        let users = server
            .admin()
            .get(&format!(
                "/openidm/managed/user?_queryFilter=userName sw \"{name}\"&_fields=_id"
            ))
            .send();
        assert_eq!(users.body["resultCount"], json!(1), "{}", users.text);
    });
}

/// Tokens expire as configured (`snapshotToken.tokenExpiry`).
#[test]
fn a_reset_link_expires() {
    let smtp = SmtpServer::start();
    let mut reset = shipped_conf("selfservice-reset");
    reset["snapshotToken"]["tokenExpiry"] = json!(60);
    let server = with_mail(TestServer::builder(), &smtp)
        .conf_file("selfservice-reset.json", &reset.to_string())
        .manual_clock()
        .start();
    let name = unique("expiry");
    account(&server, &name);
    let token = assert_asks(
        &find(&server, "reset", &by_user_name(&name)),
        "emailValidation",
        "validateCode",
    );
    let code = next_mail(&smtp, 0).query_param("code").unwrap_or_default();
    server.advance_clock(Duration::from_secs(61));
    assert_bad_request(
        &continue_with(&server, "reset", &token, json!({"code": code})),
        "Snapshot token has expired",
    );
}

/// Starting a reset is rate-limited per account (beyond the limit: the same answer, no mail)
/// and per client address (429), in windows measured by the server's clock.
#[test]
fn starting_a_reset_is_rate_limited() {
    on_each_backend(|builder| {
        let smtp = SmtpServer::start();
        let mut reset = shipped_conf("selfservice-reset");
        reset["rateLimit"] = json!({
            "perAccount": {"requests": 2, "periodSeconds": 600},
            "perClientAddress": {"requests": 4, "periodSeconds": 600}
        });
        let server = with_mail(builder, &smtp)
            .conf_file("selfservice-reset.json", &reset.to_string())
            .manual_clock()
            .start();
        let name = unique("limit");
        account(&server, &name);
        let expected = shape(&find(&server, "reset", &by_user_name(&name)));
        assert_eq!(shape(&find(&server, "reset", &by_user_name(&name))), expected);
        assert_eq!(smtp.wait_for_messages(2, MAIL_WAIT).len(), 2);
        let over = find(&server, "reset", &by_user_name(&name));
        assert_eq!(shape(&over), expected, "over the account's limit: {}", over.text);
        let other = find(&server, "reset", &by_user_name(&format!("{name}-other")));
        assert_eq!(shape(&other), expected);
        let flooded = find(&server, "reset", &by_user_name(&name));
        assert_eq!(flooded.status, 429, "{}", flooded.text);
        assert_eq!(flooded.body["code"], json!(429));
        assert!(
            flooded.body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("Too many requests"),
            "{}",
            flooded.text
        );
        assert_eq!(smtp.messages().len(), 2, "no more mail");

        server.advance_clock(Duration::from_secs(601));
        assert_eq!(shape(&find(&server, "reset", &by_user_name(&name))), expected);
        assert_eq!(smtp.wait_for_messages(3, MAIL_WAIT).len(), 3, "a new window");
    });
}

/// A mail server that is down is a clear 503, never a success, and the process can be
/// resumed from the same token once mail works.
#[test]
fn a_mail_server_that_is_down_fails_the_step_and_keeps_it_resumable() {
    on_each_backend(|builder| {
        let down = json!({"host": "127.0.0.1", "port": unused_port(), "from": "noreply@example.com"});
        let mut registration = shipped_conf("selfservice-registration");
        registration["stageConfigs"] = json!([
            {"name": "parameters", "parameterNames": ["returnParams"]},
            {"name": "emailValidation", "identityEmailField": "mail", "from": "noreply@example.com",
             "verificationLink": "http://localhost:8080/#/registration/"},
            user_details(),
            self_registration()
        ]);
        let server = builder
            .conf_file("external.email.json", &down.to_string())
            .conf_file("selfservice-registration.json", &registration.to_string())
            .start();
        let asked = submit(&server.anonymous(), "registration", &json!({"input": {}}));
        let token = assert_asks(&asked, "emailValidation", "initial");
        let failed = continue_with(&server, "registration", &token, json!({"mail": "later@example.com"}));
        assert_eq!(failed.status, 503, "{}", failed.text);
        assert_eq!(failed.body["message"], json!("The mail could not be sent"));

        let smtp = SmtpServer::start();
        std::fs::write(server.conf().join("external.email.json"), smtp.email_conf()).unwrap();
        let mut resumed = None;
        server.wait_until(Duration::from_secs(15), "mail to work after the reload", || {
            let reply = continue_with(&server, "registration", &token, json!({"mail": "later@example.com"}));
            let done = reply.status == 200;
            if done {
                resumed = Some(reply);
            } else {
                assert_eq!(reply.status, 503, "{}", reply.text);
            }
            done
        });
        let resumed = resumed.unwrap_or_else(|| panic!("never resumed"));
        assert_asks(&resumed, "emailValidation", "validateCode");
        let mail = next_mail(&smtp, 0);
        assert_eq!(mail.rcpt_tos, ["later@example.com"]);
    });
}

/// With `kbaSecurityAnswerVerificationStage` in the reset, the user answers
/// `minimumAnswersToVerify` of the questions they defined at registration; a wrong answer is
/// refused (and may be corrected), an account without enough answers cannot go on.
#[test]
fn a_reset_can_ask_the_security_questions() {
    let smtp = SmtpServer::start();
    let mut reset = shipped_conf("selfservice-reset");
    let stages = reset["stageConfigs"].as_array_mut().unwrap();
    stages.insert(
        3,
        json!({"name": "kbaSecurityAnswerVerificationStage", "kbaPropertyName": "kbaInfo",
               "identityServiceUrl": "managed/user", "numberOfQuestionsUserMustAnswer": "1", "kbaConfig": null}),
    );
    let server = with_mail(TestServer::builder(), &smtp)
        .conf_file("selfservice-reset.json", &reset.to_string())
        .conf_file(
            "selfservice-registration.json",
            &process(
                &json!([user_details(), {"name": "kbaSecurityAnswerDefinitionStage", "kbaConfig": null},
                             self_registration()]),
            ),
        )
        .start();
    let name = unique("kbareset");
    let asked = submit(
        &server.anonymous(),
        "registration",
        &json!({"input": {"user": new_user(&name)}}),
    );
    let token = assert_asks(&asked, "kbaSecurityAnswerDefinitionStage", "initial");
    let registered = continue_with(
        &server,
        "registration",
        &token,
        json!({"kba": [{"questionId": "1", "answer": "Blue"}, {"questionId": "2", "answer": "Acme"}]}),
    );
    assert_end(&registered, "selfRegistration");

    let seen = smtp.messages().len();
    let token = assert_asks(
        &find(&server, "reset", &by_user_name(&name)),
        "emailValidation",
        "validateCode",
    );
    let code = next_mail(&smtp, seen).query_param("code").unwrap_or_default();
    let questions = continue_with(&server, "reset", &token, json!({"code": code}));
    let token = assert_asks(&questions, "kbaSecurityAnswerVerificationStage", "answerQuestions");
    let requirements = &questions.body["requirements"];
    assert_eq!(requirements["description"], json!("Answer security questions"));
    assert_eq!(requirements["required"], json!(["answer1"]));
    let asked = requirements["properties"]["answer1"]["systemQuestion"]["en"].clone();
    let answer = if asked == json!("What's your favorite color?") {
        "bLUE"
    } else {
        assert_eq!(asked, json!("Who was your first employer?"), "{requirements}");
        "acme"
    };
    assert_bad_request(
        &continue_with(&server, "reset", &token, json!({"answer1": "wrong"})),
        "Answers are not matched",
    );
    assert_bad_request(
        &continue_with(&server, "reset", &token, json!({})),
        "Answers are not matched",
    );
    let reset_token = assert_asks(
        &continue_with(&server, "reset", &token, json!({"answer1": answer})),
        "resetStage",
        "initial",
    );
    assert_end(
        &continue_with(&server, "reset", &reset_token, json!({"password": NEW_PASSWORD})),
        "resetStage",
    );
    assert_eq!(login(&server, &name, NEW_PASSWORD).status, 200);
    assert_eq!(login(&server, &name, PASSWORD).status, 401);

    let plain = unique("nokba");
    account(&server, &plain);
    let seen = smtp.messages().len();
    let token = assert_asks(
        &find(&server, "reset", &by_user_name(&plain)),
        "emailValidation",
        "validateCode",
    );
    let code = next_mail(&smtp, seen).query_param("code").unwrap_or_default();
    let refused = continue_with(&server, "reset", &token, json!({"code": code}));
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Insufficient number of questions."),
        "{}",
        refused.text
    );
}

/// `policy/selfservice/reset` validates the new password as it is typed (anonymously, while
/// `passwordReset` is on), and the reset endpoints close when the flags are off.
#[test]
fn the_reset_pages_follow_the_ui_flags() {
    let server = TestServer::start();
    let anonymous = server.anonymous().with("x-requested-with", "test");
    let weak = anonymous
        .post(
            "/openidm/policy/selfservice/reset?_action=validateObject",
            &json!({"password": "weak"}),
        )
        .send();
    assert_eq!(weak.status, 200, "{}", weak.text);
    assert_eq!(weak.body["result"], json!(false));
    assert_eq!(weak.body["failedPolicyRequirements"][0]["property"], json!("password"));
    let strong = anonymous
        .post(
            "/openidm/policy/selfservice/reset?_action=validateObject",
            &json!({"password": NEW_PASSWORD}),
        )
        .send();
    assert_eq!(
        strong.body,
        json!({"result": true, "failedPolicyRequirements": []}),
        "{}",
        strong.text
    );
    let described = anonymous.get("/openidm/policy/selfservice/reset").send();
    assert_eq!(described.status, 200, "{}", described.text);

    let ui_path = server.conf().join("ui-configuration.json");
    let mut ui: Value = serde_json::from_slice(&std::fs::read(&ui_path).unwrap()).unwrap();
    ui["configuration"]["passwordReset"] = json!(false);
    ui["configuration"]["forgotUsername"] = json!(false);
    std::fs::write(&ui_path, ui.to_string()).unwrap();
    server.wait_until(Duration::from_secs(15), "the reset to close", || {
        start(&server.anonymous(), "reset").status == 403
    });
    assert_eq!(start(&server.anonymous(), "username").status, 403);
    let closed = anonymous
        .post(
            "/openidm/policy/selfservice/reset?_action=validateObject",
            &json!({"password": "weak"}),
        )
        .send();
    assert_eq!(closed.status, 403, "{}", closed.text);
}

/// Sessions are bound to the account (issue 22): a session cookie stops working after the
/// account logs out (replayed), after an administrator changes its password, deactivates it or
/// deletes it, and after it is deleted and a different user is created under the same id. A
/// user changing their own password keeps their own session.
#[test]
fn sessions_end_with_the_account_state_they_were_issued_for() {
    on_each_backend(|builder| {
        let server = builder.start();

        let name = unique("logout");
        account(&server, &name);
        let session = session_of(&server, &name, OLD_PASSWORD);
        let out = server
            .nobody()
            .post_empty("/openidm/authentication?_action=logout")
            .header("cookie", &format!("session-jwt={session}"))
            .header("x-requested-with", "test")
            .send();
        assert_eq!(out.status, 200, "{}", out.text);
        assert_eq!(with_session(&server, &session).status, 401, "replayed after logout");
        session_of(&server, &name, OLD_PASSWORD);

        let name = unique("changed");
        let id = account(&server, &name);
        let session = session_of(&server, &name, OLD_PASSWORD);
        admin_patch(&server, &id, "/givenName", "Renamed");
        assert_eq!(
            with_session(&server, &session).status,
            200,
            "other changes keep sessions"
        );
        admin_patch(&server, &id, "/password", NEW_PASSWORD);
        assert_eq!(with_session(&server, &session).status, 401, "after a password change");
        session_of(&server, &name, NEW_PASSWORD);

        let name = unique("inactive");
        let id = account(&server, &name);
        let session = session_of(&server, &name, OLD_PASSWORD);
        admin_patch(&server, &id, "/accountStatus", "inactive");
        assert_eq!(with_session(&server, &session).status, 401, "after deactivation");
        let write = server
            .nobody()
            .post(
                &format!("/openidm/managed/user/{id}?_action=patch"),
                &json!([{"operation": "replace", "field": "/givenName", "value": "Sneaky"}]),
            )
            .header("cookie", &format!("session-jwt={session}"))
            .header("x-requested-with", "test")
            .send();
        assert_eq!(write.status, 401, "writes too: {}", write.text);

        let name = unique("deleted");
        let id = account(&server, &name);
        let session = session_of(&server, &name, OLD_PASSWORD);
        let deleted = server.admin().delete(&format!("/openidm/managed/user/{id}")).send();
        assert_eq!(deleted.status, 200, "{}", deleted.text);
        assert_eq!(with_session(&server, &session).status, 401, "after deletion");
        let taken = server
            .admin()
            .put(
                &format!("/openidm/managed/user/{id}"),
                &json!({"userName": unique("other"), "givenName": "Other", "sn": "User",
                        "mail": "other@example.com", "password": OLD_PASSWORD}),
            )
            .header("if-none-match", "*")
            .send();
        assert_eq!(taken.status, 201, "{}", taken.text);
        assert_eq!(
            with_session(&server, &session).status,
            401,
            "a new user under the same id"
        );

        let name = unique("own");
        let id = account(&server, &name);
        let session = session_of(&server, &name, OLD_PASSWORD);
        let other = session_of(&server, &name, OLD_PASSWORD);
        let own = server
            .nobody()
            .post(
                &format!("/openidm/managed/user/{id}?_action=patch"),
                &json!([{"operation": "replace", "field": "/password", "value": NEW_PASSWORD}]),
            )
            .header("cookie", &format!("session-jwt={session}"))
            .header("x-requested-with", "test")
            .header("x-openidm-reauth-password", OLD_PASSWORD)
            .send();
        assert_eq!(own.status, 200, "{}", own.text);
        let renewed = own
            .session_cookie()
            .unwrap_or_else(|| panic!("no renewed session: {:?}", own.headers));
        assert_eq!(
            with_session(&server, &renewed).status,
            200,
            "the user's own session goes on"
        );
        assert_eq!(with_session(&server, &other).status, 401, "their other sessions end");
    });
}

/// A session ended on one node is refused by every node.
#[test]
fn a_session_ended_on_one_node_is_refused_by_another() {
    on_postgres(|builder| {
        let first = builder.start();
        let second = TestServer::builder().sharing(&first).start();
        let name = unique("twonodes");
        let id = account(&first, &name);
        let session = session_of(&first, &name, OLD_PASSWORD);
        assert_eq!(with_session(&second, &session).status, 200);
        admin_patch(&first, &id, "/password", NEW_PASSWORD);
        assert_eq!(with_session(&second, &session).status, 401);
    });
}
