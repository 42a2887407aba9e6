//! Passwords brought over from IDM: a user whose password is an IDM `salted-hash` (every
//! algorithm IDM documents) logs in with the right password only, and the first successful login
//! replaces the hash by argon2id without moving the revision. An administrator's `$crypto`
//! values are stored as given; IDM-encrypted values cannot log in. The hashes are computed here
//! by Python's hashlib (bcrypt: a fixed vector), never by ferridm's own code.

use std::process::Command;

use ferridm_tests::{TestServer, on_each_backend, unique};
use serde_json::{Value, json};

use crate::auth::{INFO_LOGIN, assert_unauthorized, login, new_user};

const PASSWORD: &str = "Passw0rd";
const WRONG: &str = "Passw0rt";

/// bcrypt of [`PASSWORD`] at cost 4, made once with Python's `bcrypt` 5.0.0:
/// `python -c 'import bcrypt; print(bcrypt.hashpw(b"Passw0rd", bcrypt.gensalt(rounds=4, prefix=b"2a")).decode())'`
const BCRYPT_PASSW0RD: &str = "$2a$04$CGE9sk7wS0w9nmsEEhpu5OFCEmA0WYd1AwcISA.iVcFCWgS5/WZgK";

/// Runs a Python expression (with `hashlib`, `base64`, `os` imported and `pw = b"Passw0rd"`,
/// `salt` 16 random bytes) and returns what it prints.
fn python(expression: &str) -> String {
    let program =
        format!("import base64, hashlib, os\npw = {PASSWORD:?}.encode()\nsalt = os.urandom(16)\nprint({expression})");
    let output = Command::new("python3")
        .args(["-c", &program])
        .output()
        .unwrap_or_else(|error| panic!("python3 is needed to compute IDM hashes: {error}"));
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// IDM's `$crypto` envelope of a salted hash.
fn salted_hash(value: Value) -> Value {
    json!({"$crypto": {"type": "salted-hash", "value": value}})
}

/// A salted message digest as IDM keeps it: `base64(digest(password ‖ salt) ‖ salt)`.
fn digest(algorithm: &str, python_name: &str) -> Value {
    let data = python(&format!(
        "base64.b64encode(hashlib.new({python_name:?}, pw + salt).digest() + salt).decode()"
    ));
    salted_hash(json!({"algorithm": algorithm, "data": data}))
}

/// PBKDF2 as IDM keeps it: `base64(hash ‖ salt)` with its parameters in `config`.
fn pbkdf2(hmac: &str, python_name: &str) -> Value {
    let data = python(&format!(
        "base64.b64encode(hashlib.pbkdf2_hmac({python_name:?}, pw, salt, 1000, 16) + salt).decode()"
    ));
    salted_hash(json!({"algorithm": "PBKDF2", "data": data,
        "config": {"hashLength": 16, "saltLength": 16, "iterations": 1000, "hmac": hmac}}))
}

/// SCRYPT as IDM keeps it: `base64(hash ‖ salt)` with its parameters in `config`.
fn scrypt() -> Value {
    let data = python("base64.b64encode(hashlib.scrypt(pw, salt=salt, n=1024, r=8, p=2, dklen=16) + salt).decode()");
    salted_hash(json!({"algorithm": "SCRYPT", "data": data,
        "config": {"hashLength": 16, "saltLength": 16, "n": 1024, "r": 8, "p": 2}}))
}

/// Every algorithm IDM documents for `secureHash`, with a stored value of [`PASSWORD`].
fn every_algorithm() -> Vec<(&'static str, Value)> {
    vec![
        ("MD5", digest("MD5", "md5")),
        ("SHA-1", digest("SHA-1", "sha1")),
        ("SHA-256", digest("SHA-256", "sha256")),
        ("SHA-384", digest("SHA-384", "sha384")),
        ("SHA-512", digest("SHA-512", "sha512")),
        ("PBKDF2 (HMAC SHA-256)", pbkdf2("SHA-256", "sha256")),
        ("PBKDF2 (HMAC SHA-512)", pbkdf2("SHA-512", "sha512")),
        ("PBKDF2 (HMAC SHA3-256)", pbkdf2("SHA3-256", "sha3_256")),
        ("SCRYPT", scrypt()),
        (
            "BCRYPT",
            salted_hash(json!({"algorithm": "BCRYPT", "data": BCRYPT_PASSW0RD, "config": {"cost": 4}})),
        ),
    ]
}

/// Creates a user through the admin API with `password` as its stored value; returns its id
/// and user name.
fn user_with(server: &TestServer, password: &Value) -> (String, String) {
    let name = unique("idm");
    let body = json!({"userName": name, "givenName": "Imported", "sn": "User",
        "mail": format!("{name}@example.com"), "password": password});
    let reply = server
        .admin()
        .post("/openidm/managed/user?_action=create", &body)
        .send();
    assert_eq!(reply.status, 201, "creating a user with {password}: {}", reply.text);
    (reply.body["_id"].as_str().unwrap().to_owned(), name)
}

/// The stored password and revision of `managed/user/<id>`, read from the store itself.
fn stored(server: &TestServer, id: &str) -> (Value, String) {
    let object = server
        .state()
        .store
        .get("user", id)
        .unwrap()
        .expect("the user is stored");
    (object.content["password"].clone(), object.rev.to_string())
}

/// Failed logins the store counts for the user.
fn failures(server: &TestServer, id: &str) -> i64 {
    let principal = format!("managed/user/{id}");
    let counted = server.state().store.login_failure(&principal).unwrap();
    counted.map_or(0, |failure| failure.failures)
}

fn assert_argon2id(password: &Value, what: &str) {
    assert_eq!(password["$crypto"]["type"], "argon2id", "{what}: {password}");
    let phc = password["$crypto"]["value"].as_str().unwrap_or_default();
    assert!(phc.starts_with("$argon2id$"), "{what}: {password}");
}

#[test]
fn idm_hashes_log_in_with_the_right_password_and_become_argon2id() {
    on_each_backend(|builder| {
        let server = builder.start();
        for (index, (algorithm, hash)) in every_algorithm().into_iter().enumerate() {
            let (id, name) = user_with(&server, &hash);
            let (before, rev) = stored(&server, &id);
            assert_eq!(
                before, hash,
                "{algorithm}: an administrator's $crypto value is stored as given"
            );

            let refused = server.user(&name, WRONG).get(INFO_LOGIN).send();
            assert_unauthorized(&refused, &format!("{algorithm} with a wrong password"));
            assert_eq!(
                stored(&server, &id),
                (hash.clone(), rev.clone()),
                "{algorithm}: a refusal changes nothing"
            );
            assert_eq!(
                failures(&server, &id),
                1,
                "{algorithm}: the refusal is counted by the lockout"
            );

            // Both ways of logging in reach the same check.
            let accepted = if index % 2 == 0 {
                server.user(&name, PASSWORD).get(INFO_LOGIN).send()
            } else {
                login(&server.user(&name, PASSWORD))
            };
            assert_eq!(
                accepted.status, 200,
                "{algorithm} with the right password: {}",
                accepted.text
            );
            assert_eq!(accepted.body["authorization"]["id"], id.as_str(), "{algorithm}");
            assert_eq!(failures(&server, &id), 0, "{algorithm}: a success clears the count");

            let (after, rev_after) = stored(&server, &id);
            assert_argon2id(&after, algorithm);
            assert_eq!(rev_after, rev, "{algorithm}: the upgrade does not move the revision");
            let read = server.admin().get(&format!("/openidm/managed/user/{id}")).send();
            assert_eq!(
                read.body["_rev"],
                rev.as_str(),
                "{algorithm}: clients see the same _rev"
            );

            // From now on the argon2id hash answers, for the same password only.
            let again = server.user(&name, PASSWORD).get(INFO_LOGIN).send();
            assert_eq!(again.status, 200, "{algorithm} after the upgrade: {}", again.text);
            assert_unauthorized(
                &server.user(&name, WRONG).get(INFO_LOGIN).send(),
                &format!("{algorithm} after the upgrade, wrong password"),
            );
            assert_eq!(
                stored(&server, &id),
                (after, rev),
                "{algorithm}: argon2id is not upgraded again"
            );
        }
    });
}

#[test]
fn a_password_changed_after_import_is_hashed_and_the_old_hash_forgotten() {
    on_each_backend(|builder| {
        let server = builder.start();
        let (id, name) = user_with(&server, &digest("SHA-256", "sha256"));
        let patch = json!([{"operation": "replace", "field": "password", "value": "N3wPassword"}]);
        let reply = server
            .admin()
            .patch(&format!("/openidm/managed/user/{id}"), &patch)
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_argon2id(&stored(&server, &id).0, "a plain password replacing an IDM hash");
        assert_unauthorized(
            &server.user(&name, PASSWORD).get(INFO_LOGIN).send(),
            "the imported password",
        );
        assert_eq!(server.user(&name, "N3wPassword").get(INFO_LOGIN).send().status, 200);
    });
}

#[test]
fn administrators_set_crypto_values_as_given_on_update_and_patch() {
    on_each_backend(|builder| {
        let server = builder.start();
        let (id, name) = user_with(&server, &digest("SHA-512", "sha512"));
        let path = format!("/openidm/managed/user/{id}");

        // A weak password would fail the password policy; a hash cannot be checked and passes.
        let pbkdf2 = pbkdf2("SHA-256", "sha256");
        let patch = json!([{"operation": "replace", "field": "password", "value": pbkdf2}]);
        let reply = server.admin().patch(&path, &patch).send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(
            stored(&server, &id).0,
            pbkdf2,
            "a patched $crypto value is stored as given"
        );

        let mut whole = server.admin().get(&path).send().body;
        let sha384 = digest("SHA-384", "sha384");
        whole["password"] = sha384.clone();
        let reply = server.admin().put(&path, &whole).send();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(
            stored(&server, &id).0,
            sha384,
            "a $crypto value in an update is stored as given"
        );

        assert_eq!(server.user(&name, PASSWORD).get(INFO_LOGIN).send().status, 200);
        assert_argon2id(&stored(&server, &id).0, "after the login");
    });
}

#[test]
fn users_cannot_skip_the_password_policies_with_a_hash_of_their_own() {
    on_each_backend(|builder| {
        let server = builder.start();
        let user = new_user(&server);
        let before = stored(&server, &user.id);
        let data = python("base64.b64encode(hashlib.sha256(b'weak' + salt).digest() + salt).decode()");
        let weak = salted_hash(json!({"algorithm": "SHA-256", "data": data}));
        let patch = json!([{"operation": "replace", "field": "password", "value": weak}]);
        let reply = user
            .actor(&server)
            .with("X-OpenIDM-Reauth-Password", crate::auth::PASSWORD)
            .patch(&user.path(), &patch)
            .send();
        reply.assert_error(403);
        assert_eq!(stored(&server, &user.id), before, "the refused hash is not stored");
        assert_unauthorized(
            &server.user(&user.name, "weak").get(INFO_LOGIN).send(),
            "the weak password",
        );
    });
}

#[test]
fn idm_encrypted_passwords_cannot_log_in() {
    on_each_backend(|builder| {
        let server = builder.start();
        // The shape `cli.sh encrypt` prints; ferridm does not hold IDM's keystore.
        let encrypted = json!({"$crypto": {"type": "x-simple-encryption", "value": {
            "cipher": "AES/CBC/PKCS5Padding", "stableId": "openidm-sym-default",
            "salt": "vdz6bUztiT6QsExNrZQAEA==", "data": "RgMLRbX0guxF80nwrtaZkkoFFGqSQdNWF7Ve0zS+N1I=",
            "keySize": 16, "purpose": "idm.password.encryption", "iv": "R9w1TcWfbd9FPmOjfvMhZQ==",
            "mac": "9pXtSKAt9+dO3Mu0NlrJsQ=="}}});
        let (id, name) = user_with(&server, &encrypted);
        let (before, rev) = stored(&server, &id);
        assert_eq!(before, encrypted);
        for password in [PASSWORD, "mypassword"] {
            assert_unauthorized(
                &login(&server.user(&name, password)),
                &format!("an encrypted password with {password:?}"),
            );
        }
        assert_eq!(
            failures(&server, &id),
            2,
            "each refusal is counted like a wrong password"
        );
        assert_eq!(stored(&server, &id), (encrypted, rev), "the stored value is left alone");
    });
}
