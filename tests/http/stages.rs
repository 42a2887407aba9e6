//! Each self-service stage on its own (idm-api §9.5, idm-cases §J facts 291–298): a process file
//! with just that stage (plus `selfRegistration` when a user must be created, or a `probe`
//! stage that publishes the process state), then the stage's requirements, what it accepts,
//! what it refuses and what it leaves behind. Also the all-in-one grouping and the plugin
//! contract: the example `invitationCode` stage, an administrator's own stage added while the
//! server runs, a stage's own error, and a broken stage script refused.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use ferridm_tests::{TestServer, unique};
use serde_json::{Value, json};

use crate::registration::{
    PASSWORD, RELOAD, assert_asks, assert_bad_request, assert_can_log_in, assert_end, base64_decode, failed_properties,
    failed_requirements, new_user, probe, process, read_user, self_registration, start, submit, the_user, user_count,
    user_details, users_named, without, write_atomically,
};

/// SHA-256 (FIPS 180-4), to check stored security answers independently of the server.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ];
    let bit_length = u64::try_from(data.len()).unwrap() * 8;
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_length.to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 64];
        for (slot, word) in w.iter_mut().zip(block.chunks(4)) {
            *slot = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for (k, wi) in K.iter().zip(w.iter()) {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let choice = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(choice)
                .wrapping_add(*k)
                .wrapping_add(*wi);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let majority = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(majority);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (state, value) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *state = state.wrapping_add(value);
        }
    }
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_mut(4).zip(h) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True when `stored` (`{"$crypto": …}`) is the salted SHA-256 of exactly `answer`:
/// `data = base64(sha256(answer + salt16) + salt16)`.
fn hash_of(stored: &Value, answer: &str) -> bool {
    let data = stored["$crypto"]["value"]["data"]
        .as_str()
        .unwrap_or_else(|| panic!("no $crypto.value.data: {stored}"));
    let bytes = base64_decode(data).unwrap_or_else(|| panic!("not base64: {data}"));
    assert_eq!(bytes.len(), 48, "32 digest bytes and a 16-byte salt: {data}");
    let (digest, salt) = bytes.split_at(32);
    let mut salted = answer.as_bytes().to_vec();
    salted.extend_from_slice(salt);
    sha256(&salted) == digest
}

/// The messages in the mail outbox (`<project>/data/outbox/*.json`), oldest first.
fn outbox(server: &TestServer) -> Vec<Value> {
    let dir = server.project().join("data").join("outbox");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap())
        .collect()
}

/// The `token` and `code` of the verification link in a mail body.
fn link_parts(body: &str) -> (String, String) {
    let start = body
        .find("&token=")
        .unwrap_or_else(|| panic!("no &token= in the mail: {body}"))
        + "&token=".len();
    let rest = &body[start..];
    let end = rest
        .find("&code=")
        .unwrap_or_else(|| panic!("no &code= after the token: {body}"));
    let token = rest[..end].to_owned();
    let code: String = rest[end + "&code=".len()..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    assert!(!code.is_empty(), "an empty code in {body}");
    (token, code)
}

/// Starts a server with `conf/selfservice-<name>.json` holding these stages.
fn server_with(name: &str, stages: &Value) -> TestServer {
    TestServer::builder()
        .conf_file(&format!("selfservice-{name}.json"), &process(stages))
        .start()
}

/// The terms in `conf/selfservice.terms.json` as shipped.
fn shipped_terms() -> Value {
    let path = ferridm_tests::workspace_root()
        .join("conf")
        .join("selfservice.terms.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn the_test_sha256_matches_the_standard_vectors() {
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex(&sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex(&sha256(&[b'a'; 200])),
        "c2a908d98f5df987ade41b5fce213067efbcc21ef2240212a41e54b5e7c28ae5"
    );
}

// ---------------------------------------------------------------------------------------------
// parameters
// ---------------------------------------------------------------------------------------------

/// §9.5.1: `parameters` asks for optional strings and copies only the named, non-null ones.
#[test]
fn parameters_copies_the_named_parameters_into_the_state() {
    let server = server_with(
        "test",
        &json!([{"name": "parameters", "parameterNames": ["returnParams"]}, probe()]),
    );
    let admin = server.admin();
    let reply = start(&admin, "test");
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["type"], json!("parameters"));
    assert_eq!(
        reply.body["requirements"],
        json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "description": "Parameters",
            "type": "object",
            "properties": {"returnParams": {"description": "Parameter named 'returnParams'", "type": "string"}}
        })
    );
    let ended = submit(
        &admin,
        "test",
        &json!({"input": {"returnParams": "goto=%2Fdashboard", "other": "ignored"}}),
    );
    let state = &assert_end(&ended, "probe")["state"];
    assert_eq!(state["returnParams"], json!("goto=%2Fdashboard"), "{}", ended.text);
    assert!(state.get("other").is_none(), "{}", ended.text);

    let nothing = submit(&admin, "test", &json!({"input": {"returnParams": null}}));
    let state = &assert_end(&nothing, "probe")["state"];
    assert!(state.get("returnParams").is_none(), "{}", nothing.text);
}

// ---------------------------------------------------------------------------------------------
// idmUserDetails + selfRegistration
// ---------------------------------------------------------------------------------------------

/// Fact 291: [idmUserDetails, selfRegistration] with a valid user and no token ends in one
/// submit with exactly the documented body, and the user exists.
#[test]
fn user_details_then_self_registration_end_in_one_submit() {
    let server = TestServer::builder()
        .conf_file(
            "selfservice-registration.json",
            &process(&json!([user_details(), self_registration()])),
        )
        .start();
    let name = unique("plain");
    let reply = submit(
        &server.anonymous(),
        "registration",
        &json!({"input": {"user": new_user(&name)}}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.body,
        json!({"type": "selfRegistration", "tag": "end", "status": {"success": true}, "additions": {}})
    );
    let created = the_user(&server, &name);
    assert_eq!(created["givenName"], json!("Reggie"));
    assert_can_log_in(&server, &name, PASSWORD);
}

/// §9.5.9: `selfRegistration` creates through the policies; a user in the state that fails them
/// is IDM's 403 "Policy validation failed" (the backstop behind idmUserDetails), nothing created.
#[test]
fn self_registration_refuses_what_the_policies_refuse() {
    let weak_user = json!({
        "name": "weakUser",
        "script": {"source": format!(
            "fn requirements(context, config) {{ () }}\n\
             fn advance(context, config, input) {{\n\
                 #{{ complete: true, state: #{{ user: #{{ userName: \"{name}\", givenName: \"W\", sn: \"U\",\n\
                     mail: \"w@example.com\", password: \"weak\" }} }}, additions: #{{}} }}\n\
             }}\n",
            name = "weakling"
        )}
    });
    let server = server_with("test", &json!([weak_user, self_registration()]));
    let reply = submit(&server.admin(), "test", &json!({"input": {}}));
    assert_eq!(reply.assert_error(403), "Policy validation failed");
    let failures = &reply.body["detail"]["failedPolicyRequirements"];
    assert_eq!(failed_properties(failures), ["password"], "{}", reply.text);
    assert!(
        failed_requirements(failures, "password").contains(&"MIN_LENGTH".to_owned()),
        "{}",
        reply.text
    );
    assert_eq!(users_named(&server, "weakling").len(), 0);
}

/// With social registration disabled (the shipped process), a provider profile is not a user:
/// the stage asks again and nothing is created.
#[test]
fn social_input_is_not_a_user_when_social_registration_is_off() {
    let server = TestServer::start();
    let name = unique("nosocial");
    let reply = submit(
        &server.anonymous(),
        "registration",
        &json!({"input": {"oauthRegister": "true", "provider": "google",
                          "profile": {"given_name": "N", "family_name": "S",
                                      "email": format!("{name}@example.com"), "preferred_username": name}}}),
    );
    assert_asks(&reply, "idmUserDetails", "initial");
    assert_eq!(user_count(&server), 0);
}

/// §9.5.2 `registrationForm` is echoed in the requirements; §9.5.10 `localAutoLogin` publishes
/// its `successUrl` next to the `credentialJwt`.
#[test]
fn registration_form_is_echoed_and_the_success_url_published() {
    let mut details = user_details();
    details["registrationForm"] = json!({"layout": "two-columns", "fields": ["userName", "mail"]});
    let server = TestServer::builder()
        .conf_file(
            "selfservice-registration.json",
            &process(&json!([details, self_registration(),
                {"name": "localAutoLogin", "successUrl": "https://idm.example.com/welcome"}])),
        )
        .start();
    let initial = start(&server.anonymous(), "registration");
    assert_eq!(
        initial.body["requirements"]["registrationForm"],
        json!({"layout": "two-columns", "fields": ["userName", "mail"]})
    );
    let name = unique("welcome");
    let reply = submit(
        &server.anonymous(),
        "registration",
        &json!({"input": {"user": new_user(&name)}}),
    );
    let additions = assert_end(&reply, "localAutoLogin");
    assert_eq!(additions["successUrl"], json!("https://idm.example.com/welcome"));
    assert!(additions["credentialJwt"].is_string(), "{}", reply.text);
}

// ---------------------------------------------------------------------------------------------
// termsAndConditions
// ---------------------------------------------------------------------------------------------

/// Fact 294 and §9.5.6: the active terms from `selfservice.terms.json` in the client's language;
/// no `accept` asks again, `"false"` is refused, `"true"` records the acceptance.
#[test]
fn terms_must_be_accepted() {
    let server = server_with("test", &json!([{"name": "termsAndConditions"}, probe()]));
    let admin = server.admin();
    let terms = shipped_terms();
    let version = &terms["versions"][0];

    let reply = start(&admin, "test");
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["type"], json!("termsAndConditions"));
    let requirements = &reply.body["requirements"];
    assert_eq!(requirements["description"], json!("Accept Terms and Conditions"));
    assert_eq!(requirements["required"], json!(["accept"]));
    assert_eq!(requirements["properties"]["accept"]["type"], json!("string"));
    assert_eq!(requirements["terms"], version["termsTranslations"]["en"]);
    assert_eq!(requirements["termsVersion"], json!("1.0"));
    assert_eq!(requirements["uiConfig"], terms["uiConfig"]);
    assert_eq!(requirements["createDate"], version["createDate"]);

    let french = start(
        &server.admin().with("Accept-Language", "fr-FR,fr;q=0.9,en;q=0.5"),
        "test",
    );
    assert_eq!(french.body["requirements"]["terms"], version["termsTranslations"]["fr"]);

    let again = submit(&admin, "test", &json!({"input": {}}));
    let token = assert_asks(&again, "termsAndConditions", "initial");
    assert_eq!(again.body["requirements"], *requirements);

    assert_bad_request(
        &submit(&admin, "test", &json!({"token": token, "input": {"accept": "false"}})),
        "Must accept terms and conditions",
    );
    let accepted = submit(&admin, "test", &json!({"token": token, "input": {"accept": "true"}}));
    let state = &assert_end(&accepted, "probe")["state"];
    assert_eq!(
        state["termsAccepted"]["termsVersion"],
        json!("1.0"),
        "{}",
        accepted.text
    );
    assert!(
        state["termsAccepted"]["acceptDate"]
            .as_str()
            .is_some_and(|date| date.len() >= 20 && date.contains('T')),
        "an ISO acceptDate: {}",
        accepted.text
    );
}

/// §9.5.6/§9.5.9: the acceptance is recorded in the new user's `_meta.termsAccepted`.
#[test]
fn accepted_terms_are_recorded_in_the_new_users_metadata() {
    let server = TestServer::builder()
        .conf_file(
            "selfservice-registration.json",
            &process(&json!([user_details(), {"name": "termsAndConditions"}, self_registration()])),
        )
        .start();
    let anonymous = server.anonymous();
    let name = unique("terms");
    let reply = submit(&anonymous, "registration", &json!({"input": {"user": new_user(&name)}}));
    let token = assert_asks(&reply, "termsAndConditions", "initial");
    assert_eq!(reply.body["requirements"]["termsVersion"], json!("1.0"));
    assert_eq!(users_named(&server, &name).len(), 0, "not yet");
    let done = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"accept": "true"}}),
    );
    assert_end(&done, "selfRegistration");
    let created = the_user(&server, &name);
    let accepted = &created["_meta"]["termsAccepted"];
    assert_eq!(accepted["termsVersion"], json!("1.0"), "{created}");
    assert!(accepted["acceptDate"].is_string(), "{created}");
}

// ---------------------------------------------------------------------------------------------
// consent
// ---------------------------------------------------------------------------------------------

/// Fact 295 and §9.5.7: with consent enabled globally it must be given; after `consent.json`
/// turns it off (hot reload), a refusal advances.
#[test]
fn consent_is_required_only_when_enabled() {
    let server = TestServer::builder()
        .conf_file("consent.json", r#"{"enabled": true}"#)
        .conf_file(
            "selfservice-test.json",
            &process(&json!([
                {"name": "consent", "consentTranslations": {"en": "We share your data with partners.",
                                                             "fr": "Nous partageons vos données."}},
                probe()
            ])),
        )
        .start();
    let admin = server.admin();
    let reply = start(&admin, "test");
    assert_eq!(reply.body["type"], json!("consent"), "{}", reply.text);
    let requirements = &reply.body["requirements"];
    assert_eq!(requirements["description"], json!("Consent to data sharing"));
    assert_eq!(requirements["required"], json!(["consentGiven"]));
    assert_eq!(requirements["consent"], json!("We share your data with partners."));
    assert_eq!(requirements["consentEnabled"], json!(true));

    assert_bad_request(
        &submit(&admin, "test", &json!({"input": {"consentGiven": "false"}})),
        "Consent must be given to continue.",
    );
    let given = submit(&admin, "test", &json!({"input": {"consentGiven": "true"}}));
    assert_eq!(assert_end(&given, "probe")["state"]["consentGiven"], json!(true));

    write_atomically(&server, &server.conf().join("consent.json"), r#"{"enabled": false}"#);
    server.wait_until(RELOAD, "consent to be disabled", || {
        start(&admin, "test").body["requirements"]["consentEnabled"] == json!(false)
    });
    let refused = submit(&admin, "test", &json!({"input": {"consentGiven": "false"}}));
    let state = &assert_end(&refused, "probe")["state"];
    assert!(state.get("consentGiven").is_none(), "{}", refused.text);
}

// ---------------------------------------------------------------------------------------------
// kbaSecurityAnswerDefinitionStage
// ---------------------------------------------------------------------------------------------

/// Fact 297 and §9.5.8: the questions of `selfservice.kba.json`, at least
/// `minimumAnswersToDefine` answers, each stored lower-cased, salted and SHA-256 hashed in
/// `kbaInfo`.
#[test]
fn security_answers_are_stored_salted_and_hashed() {
    let server = TestServer::builder()
        .conf_file(
            "selfservice-registration.json",
            &process(
                &json!([user_details(), {"name": "kbaSecurityAnswerDefinitionStage", "kbaConfig": null},
                             self_registration()]),
            ),
        )
        .start();
    let anonymous = server.anonymous();
    let name = unique("kba");
    let reply = submit(&anonymous, "registration", &json!({"input": {"user": new_user(&name)}}));
    let token = assert_asks(&reply, "kbaSecurityAnswerDefinitionStage", "initial");
    let requirements = &reply.body["requirements"];
    assert_eq!(requirements["description"], json!("Knowledge based questions"));
    assert_eq!(requirements["required"], json!(["kba"]));
    let kba = &requirements["properties"]["kba"];
    assert_eq!(kba["type"], json!("array"));
    assert_eq!(kba["minItems"], json!(2), "minimumAnswersToDefine: {kba}");
    let mut questions: Vec<Value> = kba["questions"].as_array().cloned().unwrap_or_default();
    questions.sort_by_key(|question| question["id"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        questions,
        [
            json!({"id": "1", "question": {"en": "What's your favorite color?", "fr": "Quelle est votre couleur préférée ?"}}),
            json!({"id": "2", "question": {"en": "Who was your first employer?", "fr": "Quel a été votre premier employeur ?"}}),
        ]
    );
    let definitions = &requirements["definitions"];
    assert_eq!(
        definitions["systemQuestion"]["required"],
        json!(["questionId", "answer"])
    );
    assert_eq!(definitions["systemQuestion"]["additionalProperties"], json!(false));
    assert_eq!(
        definitions["userQuestion"]["required"],
        json!(["customQuestion", "answer"])
    );
    assert_eq!(definitions["userQuestion"]["additionalProperties"], json!(false));

    let done = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"kba": [
            {"questionId": "1", "answer": "Red"},
            {"customQuestion": "Name of your first pet?", "answer": "Rex"}
        ]}}),
    );
    assert_end(&done, "selfRegistration");
    let id = the_user(&server, &name)["_id"].as_str().unwrap().to_owned();
    let stored = read_user(&server, &id, "kbaInfo");
    let info = stored["kbaInfo"]
        .as_array()
        .unwrap_or_else(|| panic!("no kbaInfo: {stored}"));
    assert_eq!(info.len(), 2, "{stored}");
    assert_eq!(info[0]["questionId"], json!("1"));
    assert_eq!(info[1]["customQuestion"], json!("Name of your first pet?"));
    for entry in info {
        let crypto = &entry["answer"]["$crypto"];
        assert_eq!(crypto["type"], json!("salted-hash"), "{entry}");
        assert_eq!(crypto["value"]["algorithm"], json!("SHA-256"), "{entry}");
    }
    assert!(hash_of(&info[0]["answer"], "red"), "hashed lower-cased: {stored}");
    assert!(!hash_of(&info[0]["answer"], "Red"), "never as typed: {stored}");
    assert!(hash_of(&info[1]["answer"], "rex"), "{stored}");
    let text = stored.to_string();
    assert!(
        !text.contains("Red") && !text.contains("\"red\"") && !text.contains("Rex"),
        "{text}"
    );
}

/// §9.5.8 ([DECISION] 400): missing answers, fewer than `minimumAnswersToDefine`, an unknown
/// question or an empty answer are refused, and nothing is created.
#[test]
fn too_few_or_unknown_security_answers_are_refused() {
    let server = TestServer::builder()
        .conf_file(
            "selfservice-registration.json",
            &process(&json!([user_details(), {"name": "kbaSecurityAnswerDefinitionStage"}, self_registration()])),
        )
        .start();
    let anonymous = server.anonymous();
    let name = unique("kba");
    let reply = submit(&anonymous, "registration", &json!({"input": {"user": new_user(&name)}}));
    let token = assert_asks(&reply, "kbaSecurityAnswerDefinitionStage", "initial");
    let answer = |input: Value| submit(&anonymous, "registration", &json!({"token": token, "input": input}));
    answer(json!({"kba": [{"questionId": "1", "answer": "Red"}]})).assert_error(400);
    answer(json!({})).assert_error(400);
    answer(json!({"kba": [{"questionId": "99", "answer": "Red"}, {"questionId": "2", "answer": "Acme"}]}))
        .assert_error(400);
    answer(json!({"kba": [{"questionId": "1", "answer": ""}, {"questionId": "2", "answer": "Acme"}]}))
        .assert_error(400);
    assert_eq!(user_count(&server), 0, "nothing created by refused answers");
}

// ---------------------------------------------------------------------------------------------
// emailValidation
// ---------------------------------------------------------------------------------------------

/// Fact 296 and §9.5.4: the first submit mails a link carrying the process token and a code
/// (to the outbox, no SMTP configured) and asks for the code (tag `validateCode`); a wrong or
/// missing code is refused; the right one, with the token from the link, advances.
#[test]
fn email_validation_mails_a_code_and_checks_it() {
    let server = server_with(
        "test",
        &json!([{
            "name": "emailValidation",
            "identityEmailField": "mail",
            "verificationLink": "https://idm.example.com/#/registration/?lang=en",
            "verificationLinkToken": "%link%",
            "from": "noreply@example.com",
            "subject": "Verify your address",
            "mimeType": "text/html",
            "messageTranslations": {"en": "<h3>Click <a href=\"%link%\">here</a> to verify.</h3>"}
        }, probe()]),
    );
    let admin = server.admin();
    let initial = start(&admin, "test");
    assert_eq!(initial.body["type"], json!("emailValidation"), "{}", initial.text);
    let requirements = &initial.body["requirements"];
    assert_eq!(requirements["description"], json!("Verify your email address"));
    assert_eq!(requirements["required"], json!(["mail"]));
    assert_eq!(requirements["properties"]["mail"]["type"], json!("string"));

    let address = format!("{}@example.com", unique("eve"));
    let sent = submit(&admin, "test", &json!({"input": {"mail": address}}));
    let token = assert_asks(&sent, "emailValidation", "validateCode");
    assert_eq!(sent.body["requirements"]["required"], json!(["code"]), "{}", sent.text);
    assert_eq!(sent.body["requirements"]["description"], json!("Verify emailed code"));
    assert_eq!(
        sent.body["requirements"]["properties"],
        json!({"code": {"description": "Enter code emailed", "type": "string"}})
    );

    let mails = outbox(&server);
    assert_eq!(mails.len(), 1, "one message: {mails:?}");
    let mail = &mails[0];
    assert_eq!(mail["to"], json!(address));
    assert_eq!(mail["from"], json!("noreply@example.com"));
    assert_eq!(mail["subject"], json!("Verify your address"));
    let body = mail["body"].as_str().unwrap();
    assert!(
        body.starts_with("<h3>Click <a href=\"https://idm.example.com/#/registration/?lang=en&token="),
        "the link replaces %link%: {body}"
    );
    let (link_token, code) = link_parts(body);
    assert_eq!(link_token, token, "the link carries the process token");
    assert!(body.contains(&format!("&code={code}\">here</a>")), "{body}");

    assert_bad_request(
        &submit(
            &admin,
            "test",
            &json!({"token": token, "input": {"code": "not-the-code"}}),
        ),
        "Invalid code",
    );
    assert_bad_request(
        &submit(&admin, "test", &json!({"token": token, "input": {"code": ""}})),
        "Input code is missing",
    );
    assert_bad_request(
        &submit(&admin, "test", &json!({"token": token, "input": {}})),
        "Input code is missing",
    );
    let done = submit(&admin, "test", &json!({"token": link_token, "input": {"code": code}}));
    let state = &assert_end(&done, "probe")["state"];
    assert_eq!(state["mail"], json!(address), "{}", done.text);
    assert_eq!(outbox(&server).len(), 1, "no further mail");
}

/// §9.5.4: an empty address is refused ("mail should not be empty") and nothing is sent.
#[test]
fn email_validation_refuses_an_empty_address() {
    let server = server_with("test", &json!([{"name": "emailValidation"}, probe()]));
    assert_bad_request(
        &submit(&server.admin(), "test", &json!({"input": {"mail": ""}})),
        "mail should not be empty",
    );
    assert!(outbox(&server).is_empty(), "nothing sent for an empty address");
}

/// In a registration, the address comes from the user details (not asked again); the user is
/// created only after the mailed code comes back.
#[test]
fn email_validation_in_a_registration_checks_the_users_address() {
    let server = TestServer::builder()
        .conf_file(
            "selfservice-registration.json",
            &process(&json!([user_details(),
                {"name": "emailValidation", "verificationLink": "https://idm.example.com/#/registration/"},
                self_registration()])),
        )
        .start();
    let anonymous = server.anonymous();
    let name = unique("mailed");
    let reply = submit(&anonymous, "registration", &json!({"input": {"user": new_user(&name)}}));
    let token = assert_asks(&reply, "emailValidation", "initial");
    let required = reply.body["requirements"]["required"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !required.contains(&json!("mail")),
        "the address is known: {}",
        reply.text
    );
    assert!(outbox(&server).is_empty());

    let sent = submit(&anonymous, "registration", &json!({"token": token, "input": {}}));
    let token = assert_asks(&sent, "emailValidation", "validateCode");
    let mails = outbox(&server);
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0]["to"], json!(format!("{name}@example.com")));
    let (_, code) = link_parts(mails[0]["body"].as_str().unwrap());
    assert_eq!(users_named(&server, &name).len(), 0, "not before the code");

    let done = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"code": code}}),
    );
    assert_end(&done, "selfRegistration");
    the_user(&server, &name);
    assert_can_log_in(&server, &name, PASSWORD);
}

// ---------------------------------------------------------------------------------------------
// captcha
// ---------------------------------------------------------------------------------------------

/// A stand-in for the reCAPTCHA verifier: answers `{"success": true}` when the response is
/// `human`, else `{"success": false, "error-codes": […]}`; records each request line.
struct Verifier {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn start_verifier() -> Verifier {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/recaptcha/api/siteverify", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let line = head.lines().next().unwrap_or_default().to_owned();
            let verdict = if line.contains("response=human") {
                json!({"success": true, "hostname": "localhost"})
            } else {
                json!({"success": false, "error-codes": ["invalid-input-response"]})
            };
            seen.lock().unwrap().push(line);
            let body = verdict.to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    Verifier { url, requests }
}

/// §9.5.5: the captcha response is checked with the configured verifier (POST with the secret
/// and the response); `success: false` is refused with the verifier's answer in the message.
#[test]
fn captcha_is_checked_with_the_configured_verifier() {
    let verifier = start_verifier();
    let server = server_with(
        "test",
        &json!([{"name": "captcha", "recaptchaSiteKey": "site-key-1", "recaptchaSecretKey": "s3cret",
                 "recaptchaUri": verifier.url}, probe()]),
    );
    let admin = server.admin();
    let initial = start(&admin, "test");
    assert_eq!(initial.body["type"], json!("captcha"), "{}", initial.text);
    let requirements = &initial.body["requirements"];
    assert_eq!(requirements["description"], json!("Captcha stage"));
    assert_eq!(requirements["required"], json!(["response"]));
    assert_eq!(
        requirements["properties"]["response"],
        json!({"recaptchaSiteKey": "site-key-1", "description": "Captcha response", "type": "string"})
    );

    let robot = submit(&admin, "test", &json!({"input": {"response": "robot"}}));
    let message = robot.assert_error(400);
    assert!(
        message.starts_with("Recaptcha verification is unsuccessful. "),
        "{}",
        robot.text
    );
    assert!(
        message.contains("invalid-input-response"),
        "the verifier's answer: {message}"
    );

    submit(&admin, "test", &json!({"input": {}})).assert_error(400);

    let human = submit(&admin, "test", &json!({"input": {"response": "human"}}));
    assert_end(&human, "probe");

    let requests = verifier.requests.lock().unwrap().clone();
    assert_eq!(
        requests.len(),
        2,
        "one verification per submitted response: {requests:?}"
    );
    for line in &requests {
        assert!(line.starts_with("POST /recaptcha/api/siteverify?"), "{line}");
        assert!(line.contains("secret=s3cret"), "{line}");
    }
    assert!(requests[0].contains("response=robot"), "{requests:?}");
    assert!(requests[1].contains("response=human"), "{requests:?}");
}

// ---------------------------------------------------------------------------------------------
// allInOneRegistration
// ---------------------------------------------------------------------------------------------

fn all_in_one_process() -> String {
    json!({
        "allInOneRegistration": true,
        "stageConfigs": [
            {"name": "parameters", "parameterNames": ["returnParams"]},
            user_details(),
            {"name": "termsAndConditions"},
            {"name": "emailValidation", "verificationLink": "https://idm.example.com/#/registration/"},
            {"name": "kbaSecurityAnswerDefinitionStage", "kbaConfig": null},
            self_registration()
        ]
    })
    .to_string()
}

fn kba_answers() -> Value {
    json!([{"questionId": "1", "answer": "Blue"}, {"questionId": "2", "answer": "Acme"}])
}

fn sorted_names(value: &Value) -> Vec<String> {
    let mut names: Vec<String> = serde_json::from_value(value.clone()).unwrap_or_default();
    names.sort();
    names
}

/// Fact 298 and §9.5.12: [parameters, idmUserDetails, termsAndConditions, emailValidation,
/// kbaSecurityAnswerDefinitionStage, selfRegistration] runs as [parameters,
/// allInOneRegistration{idmUserDetails, termsAndConditions, kba…}, emailValidation,
/// selfRegistration]: one form for the grouped stages (listed in `stages`), then the mail.
#[test]
fn all_in_one_groups_the_registration_stages() {
    let server = TestServer::builder()
        .conf_file("selfservice-registration.json", &all_in_one_process())
        .start();
    let anonymous = server.anonymous();
    let initial = start(&anonymous, "registration");
    assert_eq!(initial.body["type"], json!("parameters"), "{}", initial.text);

    let reply = submit(&anonymous, "registration", &json!({"input": {"returnParams": "x=1"}}));
    let token = assert_asks(&reply, "allInOneRegistration", "initial");
    let requirements = &reply.body["requirements"];
    assert_eq!(
        sorted_names(&requirements["stages"]),
        [
            "idmUserDetails",
            "kbaSecurityAnswerDefinitionStage",
            "termsAndConditions"
        ],
        "{}",
        reply.text
    );
    let required = sorted_names(&requirements["required"]);
    assert!(
        required.contains(&"accept".to_owned()) && required.contains(&"kba".to_owned()),
        "{}",
        reply.text
    );
    for key in ["user", "accept", "kba"] {
        assert!(requirements["properties"].get(key).is_some(), "{key}: {}", reply.text);
    }
    assert!(requirements["registrationProperties"].is_object(), "{}", reply.text);
    assert_eq!(requirements["termsVersion"], json!("1.0"));
    assert!(
        requirements["definitions"]["systemQuestion"].is_object(),
        "{}",
        reply.text
    );

    let name = unique("aio");
    let form = json!({"user": new_user(&name), "accept": "true", "kba": kba_answers()});
    let grouped = submit(&anonymous, "registration", &json!({"token": token, "input": form}));
    let token = assert_asks(&grouped, "emailValidation", "initial");
    let sent = submit(&anonymous, "registration", &json!({"token": token, "input": {}}));
    let token = assert_asks(&sent, "emailValidation", "validateCode");
    let mails = outbox(&server);
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0]["to"], json!(format!("{name}@example.com")));
    let (_, code) = link_parts(mails[0]["body"].as_str().unwrap());
    assert_eq!(users_named(&server, &name).len(), 0, "not before the code");

    let done = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"code": code}}),
    );
    assert_end(&done, "selfRegistration");
    let created = the_user(&server, &name);
    assert_eq!(
        created["_meta"]["termsAccepted"]["termsVersion"],
        json!("1.0"),
        "{created}"
    );
    let id = created["_id"].as_str().unwrap();
    let kba = read_user(&server, id, "kbaInfo");
    assert_eq!(kba["kbaInfo"].as_array().map(Vec::len), Some(2), "{kba}");
    assert!(hash_of(&kba["kbaInfo"][0]["answer"], "blue"), "{kba}");
    assert_can_log_in(&server, &name, PASSWORD);
}

/// §9.5.12: sub-stages that are satisfied are done; the response asks again only for the
/// others (named in `stages`), keeping what was given.
#[test]
fn all_in_one_asks_again_only_for_what_is_missing() {
    let server = TestServer::builder()
        .conf_file("selfservice-registration.json", &all_in_one_process())
        .start();
    let anonymous = server.anonymous();
    let begin = || {
        let reply = submit(&anonymous, "registration", &json!({"input": {}}));
        assert_asks(&reply, "allInOneRegistration", "initial")
    };

    // Terms not accepted: only termsAndConditions is asked again.
    let name = unique("aio");
    let token = begin();
    let reply = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"user": new_user(&name), "kba": kba_answers()}}),
    );
    let token = assert_asks(&reply, "allInOneRegistration", "initial");
    assert_eq!(
        sorted_names(&reply.body["requirements"]["stages"]),
        ["termsAndConditions"],
        "{}",
        reply.text
    );
    assert_eq!(
        reply.body["requirements"]["required"],
        json!(["accept"]),
        "{}",
        reply.text
    );
    let next = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"accept": "true"}}),
    );
    assert_asks(&next, "emailValidation", "initial");

    // A user missing a detail: idmUserDetails asks again with its failures.
    let token = begin();
    let other = unique("aio");
    let reply = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"user": without(&new_user(&other), "sn"), "accept": "true",
                                          "kba": kba_answers()}}),
    );
    let token = assert_asks(&reply, "allInOneRegistration", "initial");
    assert_eq!(
        sorted_names(&reply.body["requirements"]["stages"]),
        ["idmUserDetails"],
        "{}",
        reply.text
    );
    assert_eq!(
        failed_properties(&reply.body["requirements"]["failedPolicyRequirements"]),
        ["sn"],
        "{}",
        reply.text
    );
    let next = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"user": {"sn": "Strar"}}}),
    );
    assert_asks(&next, "emailValidation", "initial");

    // No security answers: the KBA stage is asked again (a validation failure, not an error).
    let token = begin();
    let third = unique("aio");
    let reply = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"user": new_user(&third), "accept": "true"}}),
    );
    assert_asks(&reply, "allInOneRegistration", "initial");
    assert_eq!(
        sorted_names(&reply.body["requirements"]["stages"]),
        ["kbaSecurityAnswerDefinitionStage"],
        "{}",
        reply.text
    );
    assert_eq!(user_count(&server), 0);
}

// ---------------------------------------------------------------------------------------------
// Custom stages (plugins)
// ---------------------------------------------------------------------------------------------

/// The example custom stage `scripts/stages/invitationCode.rhai`: registration by invitation.
#[test]
fn the_invitation_code_example_stage_gates_registration() {
    let server = TestServer::builder()
        .conf_file(
            "selfservice-registration.json",
            &process(&json!([
                {"name": "invitationCode", "script": {"file": "scripts/stages/invitationCode.rhai"},
                 "codes": ["WELCOME-2026", "FRIENDS"]},
                user_details(),
                self_registration()
            ])),
        )
        .start();
    let anonymous = server.anonymous();
    let initial = start(&anonymous, "registration");
    assert_eq!(initial.status, 200, "{}", initial.text);
    assert_eq!(initial.body["type"], json!("invitationCode"));
    assert_eq!(initial.body["requirements"]["description"], json!("Invitation code"));
    assert_eq!(initial.body["requirements"]["required"], json!(["invitationCode"]));

    let again = submit(&anonymous, "registration", &json!({"input": {}}));
    assert_asks(&again, "invitationCode", "initial");
    assert_eq!(again.body["requirements"], initial.body["requirements"]);
    assert_bad_request(
        &submit(
            &anonymous,
            "registration",
            &json!({"input": {"invitationCode": "GUESS"}}),
        ),
        "Invalid invitation code",
    );
    let invited = submit(
        &anonymous,
        "registration",
        &json!({"input": {"invitationCode": "FRIENDS"}}),
    );
    let token = assert_asks(&invited, "idmUserDetails", "initial");
    let name = unique("invited");
    let done = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"user": new_user(&name)}}),
    );
    assert_end(&done, "selfRegistration");
    assert_can_log_in(&server, &name, PASSWORD);
    assert_eq!(user_count(&server), 1);
}

const COLOUR_STAGE: &str = r#"
fn requirements(context, config) {
    #{ description: "Pick a colour", type: "object", required: ["colour"],
       properties: #{ colour: #{ type: "string", "default": config["default"] } } }
}

fn advance(context, config, input) {
    if input.colour == () {
        return #{ requirements: requirements(context, config) };
    }
    if input.colour == "" {
        throw "MESSAGE";
    }
    #{ complete: true, state: #{ colour: input.colour }, additions: #{ favouriteColour: input.colour } }
}
"#;

/// An administrator's own stage script, added to the registration process while the server
/// runs, is live without a restart; editing the script alone changes it too.
#[test]
fn an_administrators_stage_added_at_runtime_runs_without_restart() {
    let server = TestServer::start();
    let anonymous = server.anonymous();
    let script = server
        .project()
        .join("scripts")
        .join("stages")
        .join("favouriteColour.rhai");
    write_atomically(
        &server,
        &script,
        &COLOUR_STAGE.replace("MESSAGE", "colour must not be empty"),
    );
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(server.conf().join("selfservice-registration.json")).unwrap()).unwrap();
    config["stageConfigs"].as_array_mut().unwrap().insert(
        0,
        json!({"name": "favouriteColour", "script": {"file": "scripts/stages/favouriteColour.rhai"},
               "default": "blue"}),
    );
    write_atomically(
        &server,
        &server.conf().join("selfservice-registration.json"),
        &config.to_string(),
    );
    server.wait_until(RELOAD, "the new stage to be served", || {
        start(&anonymous, "registration").body["type"] == json!("favouriteColour")
    });
    let initial = start(&anonymous, "registration");
    assert_eq!(
        initial.body["requirements"],
        json!({"description": "Pick a colour", "type": "object", "required": ["colour"],
               "properties": {"colour": {"type": "string", "default": "blue"}}})
    );
    assert_asks(
        &submit(&anonymous, "registration", &json!({"input": {}})),
        "favouriteColour",
        "initial",
    );
    assert_bad_request(
        &submit(&anonymous, "registration", &json!({"input": {"colour": ""}})),
        "colour must not be empty",
    );
    let picked = submit(&anonymous, "registration", &json!({"input": {"colour": "green"}}));
    let token = assert_asks(&picked, "idmUserDetails", "initial");
    let name = unique("colour");
    let done = submit(
        &anonymous,
        "registration",
        &json!({"token": token, "input": {"user": new_user(&name)}}),
    );
    let additions = assert_end(&done, "localAutoLogin");
    assert_eq!(additions["favouriteColour"], json!("green"), "{}", done.text);
    assert!(additions["credentialJwt"].is_string(), "{}", done.text);
    the_user(&server, &name);

    write_atomically(&server, &script, &COLOUR_STAGE.replace("MESSAGE", "pick a real colour"));
    server.wait_until(RELOAD, "the edited script to be served", || {
        let reply = submit(&anonymous, "registration", &json!({"input": {"colour": ""}}));
        reply.body["message"] == json!("pick a real colour")
    });
    assert_bad_request(
        &submit(&anonymous, "registration", &json!({"input": {"colour": ""}})),
        "pick a real colour",
    );
}

/// A stage that throws `#{code, message, detail}` fails the request with exactly that error;
/// nothing after it runs.
#[test]
fn a_stage_can_fail_with_its_own_error() {
    let refusing = json!({
        "name": "refuse",
        "script": {"source": "fn requirements(context, config) { () }\n\
                              fn advance(context, config, input) {\n\
                                  throw #{ code: 409, message: \"This invitation was already used\",\n\
                                           detail: #{ invitation: input.invitation } };\n\
                              }\n"}
    });
    let server = server_with("test", &json!([refusing, user_details(), self_registration()]));
    let reply = submit(&server.admin(), "test", &json!({"input": {"invitation": "X-1"}}));
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert_eq!(
        reply.body,
        json!({"code": 409, "reason": "Conflict", "message": "This invitation was already used",
               "detail": {"invitation": "X-1"}})
    );
    assert_eq!(user_count(&server), 0);
}

/// A process whose stage script does not compile is refused as a whole (the error is reported
/// in `config/status`, the process is not served, the others keep serving); fixing the script
/// brings it in.
#[test]
fn a_broken_stage_script_is_refused_and_the_last_good_configuration_serves() {
    let server = TestServer::start();
    let admin = server.admin();
    let script = server.project().join("scripts").join("stages").join("brokenStage.rhai");
    write_atomically(&server, &script, "fn requirements(context, config) { #{ description: ");
    write_atomically(
        &server,
        &server.conf().join("selfservice-broken.json"),
        &process(&json!([{"name": "brokenStage", "script": {"file": "scripts/stages/brokenStage.rhai"}}])),
    );
    server.wait_until(RELOAD, "the broken script to be reported", || {
        let status = admin.get("/openidm/config/status").send();
        status.body["errors"]
            .as_array()
            .is_some_and(|errors| errors.iter().any(|error| error.to_string().contains("brokenStage")))
    });
    start(&admin, "broken").assert_error(404);
    assert_eq!(start(&server.anonymous(), "registration").status, 200);

    write_atomically(
        &server,
        &script,
        "fn requirements(context, config) { #{ description: \"Fixed\" } }\n\
         fn advance(context, config, input) { #{ complete: true, state: #{}, additions: #{ fixed: true } } }\n",
    );
    server.wait_until(RELOAD, "the fixed process", || start(&admin, "broken").status == 200);
    assert_eq!(
        start(&admin, "broken").body["requirements"],
        json!({"description": "Fixed"})
    );
    let ended = submit(&admin, "broken", &json!({"input": {}}));
    assert_eq!(assert_end(&ended, "brokenStage"), json!({"fixed": true}));
    let status = admin.get("/openidm/config/status").send();
    assert_eq!(status.body["errors"], json!([]), "{}", status.text);
}
