//! Queries over HTTP (idm-api.md §3, §12; idm-cases.md §A, §E): the `_queryFilter` grammar
//! (every rejected input is a 400 with IDM's escaped message, extended operators are refused),
//! the evaluation facts against real stored users (case-insensitive strings, numbers as
//! doubles, kinds never mixing, `null`, element-wise arrays, nested pointers, escapes), the
//! predefined `_queryId`s, hostile literals that must stay literals, and the size limits.
//!
//! Also home of the shared query fixture ([`seed`]): seven users with varied undeclared
//! properties, used here and by `paging`. Every storage test runs on both backends with
//! identical expectations; table-driven tests collect every mismatch ([`Checks`]) and report
//! them together, naming the backend.

use std::cell::RefCell;
use std::fmt::{Debug, Display, Write as _};

use ferridm_tests::{Reply, ServerBuilder, TestServer, on_each_backend};
use serde_json::{Value, json};

use crate::crud::assert_alive;

// ---------------------------------------------------------------------------------------------
// Shared helpers and the fixture
// ---------------------------------------------------------------------------------------------

/// The fixture's users, in creation order (alphabetical, so creation order is name order).
pub const PEOPLE: [&str; 7] = ["alice", "bob", "carol", "dave", "eve", "frank", "grace"];

/// The body of one fixture user. The schema's required fields plus undeclared properties:
///
/// | name  | userName       | givenName | sn    | age   | score | admin | tags      | nested.city | description              |
/// |-------|----------------|-----------|-------|-------|-------|-------|-----------|-------------|--------------------------|
/// | alice | alice          | Alice     | Smith | 30    | 2.5   | false | [a, B]    | Oslo        | Team lead                |
/// | bob   | Bob            | Bob       | Jones | 25    | 7     | true  | [c]       | Bergen      | 50% off_sale             |
/// | carol | carol          | Carol     | smith | 35    | 1.25  | false | []        | oslo        | He said "hi", it's fine  |
/// | dave  | dave           | Dave      | Brown | 40    | –     | –     | [b, A]    | –           | C:\dir\file              |
/// | eve   | eve            | Éva       | Ärger | –     | 9.75  | true  | –         | Zürich      | ünïcödé ✓ 日本           |
/// | frank | x' OR 1=1 --   | Frank     | Zed   | "30"  | –     | –     | –         | –           | %                        |
/// | grace | grace          | Grace     | Green | null  | –     | –     | –         | –           | _                        |
///
/// Also: `name` (Alice, bob, Carol, Dave, Ève, Frank; grace has none), `nick` (alice null,
/// carol "caz"), `nested.zip` (alice 1000, bob 5003), eve's `motto` "line1\nline2", alice's
/// private `password`, and grace is `accountStatus: inactive`.
pub fn person(name: &str) -> Value {
    let mut body = match name {
        "alice" => json!({"userName": "alice", "givenName": "Alice", "sn": "Smith", "password": "Passw0rd",
            "name": "Alice", "age": 30, "tags": ["a", "B"], "nick": null, "score": 2.5, "admin": false,
            "nested": {"city": "Oslo", "zip": 1000}, "description": "Team lead"}),
        "bob" => json!({"userName": "Bob", "givenName": "Bob", "sn": "Jones",
            "name": "bob", "age": 25, "tags": ["c"], "score": 7, "admin": true,
            "nested": {"city": "Bergen", "zip": 5003}, "description": "50% off_sale"}),
        "carol" => json!({"userName": "carol", "givenName": "Carol", "sn": "smith",
            "name": "Carol", "age": 35, "tags": [], "nick": "caz", "score": 1.25, "admin": false,
            "nested": {"city": "oslo"}, "description": "He said \"hi\", it's fine"}),
        "dave" => json!({"userName": "dave", "givenName": "Dave", "sn": "Brown",
            "name": "Dave", "age": 40, "tags": ["b", "A"], "description": "C:\\dir\\file"}),
        "eve" => json!({"userName": "eve", "givenName": "Éva", "sn": "Ärger",
            "name": "Ève", "score": 9.75, "admin": true, "nested": {"city": "Zürich"},
            "description": "ünïcödé ✓ 日本", "motto": "line1\nline2"}),
        "frank" => json!({"userName": "x' OR 1=1 --", "givenName": "Frank", "sn": "Zed",
            "name": "Frank", "age": "30", "description": "%"}),
        "grace" => json!({"userName": "grace", "givenName": "Grace", "sn": "Green",
            "age": null, "description": "_", "accountStatus": "inactive"}),
        other => panic!("no fixture person {other}"),
    };
    body["mail"] = Value::String(format!("{name}@example.com"));
    body
}

/// The fixture's generated ids by name, in creation order.
pub struct Fixture {
    ids: Vec<(String, String)>,
}

impl Fixture {
    /// A fixture without users (tests add their own).
    pub fn empty() -> Self {
        Self { ids: Vec::new() }
    }

    /// The id of a fixture user.
    pub fn id(&self, name: &str) -> &str {
        self.ids
            .iter()
            .find(|(known, _)| known == name)
            .map_or_else(|| panic!("no fixture user {name}"), |(_, id)| id.as_str())
    }

    /// The fixture name of an id (`?<id>` for an id that is not the fixture's).
    pub fn name_of(&self, id: &str) -> String {
        self.ids
            .iter()
            .find(|(_, known)| known == id)
            .map_or_else(|| format!("?{id}"), |(name, _)| name.clone())
    }

    /// Adds a user created outside [`seed`].
    pub fn add(&mut self, name: &str, id: &str) {
        self.ids.push((name.to_owned(), id.to_owned()));
    }

    /// The names of a query reply's results, in result order; `Err` describes a non-200 reply
    /// or an envelope whose `resultCount` disagrees with `result`.
    pub fn names(&self, reply: &Reply) -> Result<Vec<String>, String> {
        result_ids(reply).map(|ids| ids.iter().map(|id| self.name_of(id)).collect())
    }
}

/// Creates a user as the admin with `POST ?_action=create` and returns its generated id.
pub fn create(server: &TestServer, body: &Value) -> String {
    let reply = server.admin().post("/openidm/managed/user?_action=create", body).send();
    assert_eq!(reply.status, 201, "creating {body}: {}", reply.text);
    reply.body["_id"]
        .as_str()
        .unwrap_or_else(|| panic!("created without an _id: {}", reply.text))
        .to_owned()
}

/// Creates the fixture's seven users in order.
pub fn seed(server: &TestServer) -> Fixture {
    Fixture {
        ids: PEOPLE
            .iter()
            .map(|name| ((*name).to_owned(), create(server, &person(name))))
            .collect(),
    }
}

/// Percent-encodes a query-string value byte for byte (only RFC 3986 unreserved characters stay
/// as they are), so the server decodes exactly `text`.
pub fn enc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            write!(out, "%{byte:02X}").expect("writing to a String");
        }
    }
    out
}

/// `GET /openidm/managed/user?<query>` as the admin (`query` already encoded).
pub fn users(server: &TestServer, query: &str) -> Reply {
    server.admin().get(&format!("/openidm/managed/user?{query}")).send()
}

/// The `_id`s of a query reply, in result order; `Err` describes a non-200 reply or an
/// envelope whose `resultCount` disagrees with `result`.
pub fn result_ids(reply: &Reply) -> Result<Vec<String>, String> {
    if reply.status != 200 {
        return Err(format!("status {}: {}", reply.status, reply.text));
    }
    let result = reply.body["result"]
        .as_array()
        .ok_or_else(|| format!("no result array: {}", reply.text))?;
    if reply.body["resultCount"] != json!(result.len()) {
        return Err(format!("resultCount disagrees with result: {}", reply.text));
    }
    result
        .iter()
        .map(|item| {
            item["_id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("result item without _id: {item}"))
        })
        .collect()
}

/// Names as owned, sorted strings (the expected side of a filter check).
pub fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    names.sort();
    names
}

/// Names as owned strings, in the given order.
pub fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// IDM's HTML escaping of error messages.
pub fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The 400 message for an unparsable `_queryFilter`.
pub fn unparsable(filter: &str) -> String {
    format!(
        "The value &#39;{}&#39; for parameter &#39;_queryFilter&#39; could not be parsed as a valid query filter",
        html(filter)
    )
}

/// `(status, code, message)` of an error reply, for one comparison per case.
pub fn error_of(reply: &Reply) -> (u16, Value, String) {
    (
        reply.status,
        reply.body["code"].clone(),
        reply.body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The expected `(status, code, message)` of an error.
pub fn error(status: u16, message: &str) -> (u16, Value, String) {
    (status, json!(status), message.to_owned())
}

/// Collects mismatches of a table-driven test and reports them all at once, with the backend.
pub struct Checks {
    context: String,
    failures: Vec<String>,
}

impl Checks {
    /// Checks on `server` (its backend names the report).
    pub fn new(server: &TestServer) -> Self {
        Self {
            context: format!("{:?}", server.backend()),
            failures: Vec::new(),
        }
    }

    /// Records a mismatch of `actual` against `expected`.
    pub fn check<T: PartialEq + Debug>(&mut self, what: impl Display, actual: T, expected: T) {
        if actual != expected {
            self.failures.push(format!(
                "{what}\n      observed {actual:?}\n      expected {expected:?}"
            ));
        }
    }

    /// Records a failure unless `ok`.
    pub fn that(&mut self, what: impl Display, ok: bool) {
        if !ok {
            self.failures.push(format!("{what}"));
        }
    }

    /// The recorded failures, each prefixed with the backend.
    fn take(&mut self) -> Vec<String> {
        let context = &self.context;
        self.failures
            .drain(..)
            .map(|failure| format!("[{context}] {failure}"))
            .collect()
    }

    /// Fails the test if anything was recorded.
    #[track_caller]
    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} check(s) failed on {}:\n  - {}",
            self.failures.len(),
            self.context,
            self.failures.join("\n  - ")
        );
    }
}

/// Runs `test` on a fresh server per backend (SQLite, and PostgreSQL when reachable) built by
/// `configure`, and fails once at the end with every backend's mismatches, so a failure on one
/// backend does not hide the other's result.
pub fn check_each_backend_with(
    configure: impl Fn(ServerBuilder) -> ServerBuilder,
    test: impl Fn(&TestServer, &mut Checks),
) {
    let failures = RefCell::new(Vec::new());
    on_each_backend(|builder| {
        let server = configure(builder).start();
        let mut checks = Checks::new(&server);
        test(&server, &mut checks);
        failures.borrow_mut().extend(checks.take());
    });
    let failures = failures.into_inner();
    assert!(
        failures.is_empty(),
        "{} check(s) failed:\n  - {}",
        failures.len(),
        failures.join("\n  - ")
    );
}

/// [`check_each_backend_with`] on the default test configuration.
pub fn check_each_backend(test: impl Fn(&TestServer, &mut Checks)) {
    check_each_backend_with(|builder| builder, test);
}

/// The fixture names matching `filter` (sorted), or the error reply.
fn matching(server: &TestServer, fixture: &Fixture, filter: &str) -> Result<Vec<String>, String> {
    let reply = users(server, &format!("_queryFilter={}&_fields=_id", enc(filter)));
    fixture.names(&reply).map(|mut names| {
        names.sort();
        names
    })
}

/// Checks each `(filter, expected names)` against the fixture.
fn check_filters(checks: &mut Checks, server: &TestServer, fixture: &Fixture, cases: &[(&str, &[&str])]) {
    for (filter, expected) in cases {
        checks.check(
            format!("_queryFilter={filter:?}"),
            matching(server, fixture, filter),
            Ok(sorted(expected)),
        );
    }
}

const ALL: &[&str] = &PEOPLE;

// ---------------------------------------------------------------------------------------------
// Grammar: rejections
// ---------------------------------------------------------------------------------------------

/// Filters the parser must refuse (idm-cases §A.1 1–21, 23, 24, and more).
const REJECTED: &[&str] = &[
    "",
    "(",
    ")",
    "()",
    "xxx",
    "x and y",
    "x or y",
    "true and",
    "true or",
    "true and true and",
    "true or false or",
    "nt",
    "foo eq bar",
    "foo eq \"bar",
    "foo eq bar\"",
    "foo eq",
    "foo pr 123",
    "true foo",
    "name op! 123",
    "name op! 123\\",
    "not (age eq 1)",
    "not userName eq \"alice\"",
    "a eq 1.2.3",
    "a eq 12abc",
    // Only the space character separates tokens.
    "userName\teq\t\"alice\"",
    "userName\neq\n\"alice\"",
    // Quoted fields and operators are not fields and operators.
    "\"userName\" eq \"alice\"",
    "userName \"eq\" \"alice\"",
    // Unbalanced parentheses and dangling connectives.
    "(userName eq \"alice\"",
    "userName eq \"alice\")",
    "(userName eq \"alice\"))",
    "userName eq \"alice\" or",
    "and userName eq \"alice\"",
    "or",
    "pr",
    "userName pr pr",
    "! ",
    "!",
    "userName eq \"alice\" userName eq \"bob\"",
    // Values: unquoted words, overflowing integers, exponents without a dot, mismatched quotes.
    "userName eq alice",
    "userName eq nulls",
    "age eq 99999999999999999999",
    "age eq 1e5",
    "age eq NaN",
    "age eq Infinity",
    "userName eq 'alice\"",
    "userName eq \"alice'",
    "userName eq \"alice\"\\",
    "userName eq \"alice\\",
    "userName eq (\"alice\")",
    "userName eq \u{0}",
    // Characters the message escapes.
    "userName eq <script>",
    "x & y",
];

#[test]
fn every_unparsable_filter_is_400_with_the_escaped_idm_message() {
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        for filter in REJECTED {
            let reply = users(server, &format!("_queryFilter={}", enc(filter)));
            checks.check(
                format!("_queryFilter={filter:?}"),
                error_of(&reply),
                error(400, &unparsable(filter)),
            );
            checks.that(
                format!("_queryFilter={filter:?}: an error has a reason: {}", reply.text),
                reply.status != 400 || reply.body["reason"] == "Bad Request",
            );
        }
        // A literal `+` in the query string is a space, so this is `userName eq "x" extra`.
        let reply = users(server, "_queryFilter=userName+eq+%22x%22+extra");
        checks.check(
            "plus signs decode to spaces",
            error_of(&reply),
            error(400, &unparsable("userName eq \"x\" extra")),
        );
        checks.check(
            "nothing was harmed",
            matching(server, &fixture, "true"),
            Ok(sorted(ALL)),
        );
        assert_alive(server);
    });
}

#[test]
fn extended_operators_are_400_unsupported_operator() {
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        let cases = [
            ("name regex \"al.*\"", "regex"),
            ("name regex 'al.*'", "regex"),
            ("/name regex \"al.*\"", "regex"),
            ("age ne 30", "ne"),
            ("userName like \"a%\"", "like"),
            ("age x.y_1 3", "x.y_1"),
            ("! (name regex \"x\")", "regex"),
            ("true or name regex \"x\"", "regex"),
            ("userName eq \"alice\" and (age gt 1 or tags in \"a\")", "in"),
        ];
        for (filter, operator) in cases {
            let reply = users(server, &format!("_queryFilter={}", enc(filter)));
            checks.check(
                format!("_queryFilter={filter:?}"),
                error_of(&reply),
                error(400, &format!("Unsupported operator {operator}")),
            );
        }
        // Operator words are case-insensitive, so these are the standard ones.
        check_filters(
            checks,
            server,
            &fixture,
            &[
                ("userName EQ \"alice\"", &["alice"]),
                ("age Gt 29", &["alice", "carol", "dave"]),
            ],
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Evaluation against stored users
// ---------------------------------------------------------------------------------------------

#[test]
fn the_evaluation_facts_hold_for_stored_users() {
    // idm-cases §A.6 facts 90–99 on the fixture (alice is the object of §A.6).
    let cases: &[(&str, &[&str])] = &[
        ("name eq \"alice\"", &["alice"]),
        ("name co \"LIC\"", &["alice"]),
        ("name sw \"al\"", &["alice"]),
        ("name sw \"li\"", &[]),
        ("age eq 30", &["alice"]),
        ("age eq 30.0", &["alice"]),
        ("age eq \"30\"", &["frank"]),
        ("age gt 29", &["alice", "carol", "dave"]),
        ("age ge 30", &["alice", "carol", "dave"]),
        ("age lt 30", &["bob"]),
        ("tags eq \"b\"", &["alice", "dave"]),
        ("nick pr", &["carol"]),
        ("name pr", &["alice", "bob", "carol", "dave", "eve", "frank"]),
        ("missing pr", &[]),
        ("missing eq \"x\"", &[]),
        ("!(missing eq \"x\")", ALL),
        ("admin eq false", &["alice", "carol"]),
        ("admin eq \"false\"", &[]),
        ("score co 2.5", &["alice"]),
        ("score sw 7", &["bob"]),
        ("name gt \"ALICE\"", &["bob", "carol", "dave", "eve", "frank"]),
        ("name lt \"bob\"", &["alice"]),
        ("name le \"BOB\"", &["alice", "bob"]),
    ];
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        check_filters(checks, server, &fixture, cases);
    });
}

#[test]
fn ids_are_queryable_like_any_string_field() {
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        let id = fixture.id("carol");
        let prefix = &id[..id.len() - 1];
        let cases: Vec<(String, Vec<String>)> = vec![
            (format!("_id eq \"{id}\""), owned(&["carol"])),
            (format!("/_id eq \"{id}\""), owned(&["carol"])),
            (format!("_id eq \"{}\"", id.to_uppercase()), owned(&["carol"])),
            (format!("_id sw \"{prefix}\""), owned(&["carol"])),
            (
                format!("_id pr and !(_id eq \"{id}\")"),
                sorted(&["alice", "bob", "dave", "eve", "frank", "grace"]),
            ),
            ("_id eq \"nobody\"".to_owned(), Vec::new()),
            ("_id pr".to_owned(), sorted(ALL)),
        ];
        for (filter, expected) in cases {
            checks.check(
                format!("_queryFilter={filter:?}"),
                matching(server, &fixture, &filter),
                Ok(expected),
            );
        }
    });
}

#[test]
fn null_matches_missing_or_null_values() {
    let cases: &[(&str, &[&str])] = &[
        ("nick eq null", &["alice", "bob", "dave", "eve", "frank", "grace"]),
        ("age eq null", &["eve", "grace"]),
        ("age eq NULL", &["eve", "grace"]),
        ("! (age eq null)", &["alice", "bob", "carol", "dave", "frank"]),
        ("age pr", &["alice", "bob", "carol", "dave", "frank"]),
        ("age gt null", &[]),
        ("age co null", &[]),
        ("age eq \"null\"", &[]),
        ("missing eq null", ALL),
        ("nested/city eq null", &["dave", "frank", "grace"]),
    ];
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        check_filters(checks, server, &fixture, cases);
    });
}

#[test]
fn arrays_match_element_wise_and_by_position() {
    let cases: &[(&str, &[&str])] = &[
        ("tags eq \"a\"", &["alice", "dave"]),
        ("tags eq \"C\"", &["bob"]),
        ("tags eq \"z\"", &[]),
        ("tags pr", &["alice", "bob", "carol", "dave"]),
        ("tags/0 eq \"b\"", &["dave"]),
        ("tags/1 eq \"b\"", &["alice"]),
        ("tags/2 pr", &[]),
        ("tags gt \"b\"", &["bob"]),
        ("tags ge \"b\"", &["alice", "bob", "dave"]),
        ("tags sw \"B\"", &["alice", "dave"]),
        ("tags co \"c\"", &["bob"]),
        ("! (tags eq \"a\")", &["bob", "carol", "eve", "frank", "grace"]),
        ("tags eq \"a\" and tags eq \"b\"", &["alice", "dave"]),
        ("tags eq \"a\" and tags eq \"c\"", &[]),
    ];
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        check_filters(checks, server, &fixture, cases);
    });
}

#[test]
fn nested_fields_are_json_pointers() {
    let cases: &[(&str, &[&str])] = &[
        ("nested/city eq \"oslo\"", &["alice", "carol"]),
        ("/nested/city eq \"OSLO\"", &["alice", "carol"]),
        ("nested/city/ eq \"oslo\"", &["alice", "carol"]),
        // Segments are percent-decoded (%63 is "c").
        ("nested/%63ity eq \"oslo\"", &["alice", "carol"]),
        // ~1 is not an escape.
        ("nested~1city eq \"oslo\"", &[]),
        ("nested/zip ge 1000", &["alice", "bob"]),
        ("nested/zip eq 1000.0", &["alice"]),
        ("nested/city sw \"z\"", &["eve"]),
        ("nested pr", &["alice", "bob", "carol", "eve"]),
        ("nested eq \"oslo\"", &[]),
        ("nested/city/x eq \"oslo\"", &[]),
    ];
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        check_filters(checks, server, &fixture, cases);
    });
}

#[test]
fn strings_compare_case_insensitively_in_byte_order() {
    let cases: &[(&str, &[&str])] = &[
        ("userName eq \"BOB\"", &["bob"]),
        ("userName eq \"bob\"", &["bob"]),
        ("sn eq \"SMITH\"", &["alice", "carol"]),
        ("sn eq \"ärger\"", &["eve"]),
        ("sn eq \"ÄRGER\"", &["eve"]),
        ("givenName eq \"ÉVA\"", &["eve"]),
        ("name co \"ÈV\"", &["eve"]),
        ("nested/city eq \"ZÜRICH\"", &["eve"]),
        // After lower-casing, "ärger" (0xC3 0xA4 …) sorts after every ASCII letter.
        ("sn gt \"zed\"", &["eve"]),
        ("sn ge \"zed\"", &["eve", "frank"]),
        ("sn lt \"b\"", &[]),
        ("sn lt \"c\"", &["dave"]),
        ("sn le \"GREEN\"", &["dave", "grace"]),
        ("sn sw \"SM\"", &["alice", "carol"]),
        ("sn co \"E\"", &["bob", "eve", "frank", "grace"]),
        ("description eq \"team LEAD\"", &["alice"]),
        ("userName gt \"\"", ALL),
        ("description co \"\"", ALL),
        ("description sw \"\"", ALL),
    ];
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        check_filters(checks, server, &fixture, cases);
    });
}

#[test]
fn numbers_and_booleans_compare_by_kind() {
    let cases: &[(&str, &[&str])] = &[
        ("admin eq true", &["bob", "eve"]),
        ("admin eq TRUE", &["bob", "eve"]),
        ("admin eq \"true\"", &[]),
        ("admin gt false", &["bob", "eve"]),
        ("admin lt true", &["alice", "carol"]),
        ("admin co true", &["bob", "eve"]),
        ("! (admin eq true)", &["alice", "carol", "dave", "frank", "grace"]),
        ("admin eq 1", &[]),
        ("score gt 2", &["alice", "bob", "eve"]),
        ("score le 2.5", &["alice", "carol"]),
        ("score eq 7.0", &["bob"]),
        ("score eq 7", &["bob"]),
        ("score ge .5", &["alice", "bob", "carol", "eve"]),
        ("score eq \"7\"", &[]),
        ("age eq -5", &[]),
        ("age gt -5", &["alice", "bob", "carol", "dave"]),
        ("age eq 30.5", &[]),
        ("age lt 30.5", &["alice", "bob"]),
        ("age lt 1.0e400", &["alice", "bob", "carol", "dave"]),
        ("age gt -1.0e400", &["alice", "bob", "carol", "dave"]),
        ("age gt 9223372036854775807", &[]),
        ("age gt -9223372036854775808", &["alice", "bob", "carol", "dave"]),
        ("age eq true", &[]),
    ];
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        check_filters(checks, server, &fixture, cases);
    });
}

#[test]
fn connectives_precedence_negation_and_keywords() {
    let all_but_alice: &[&str] = &["bob", "carol", "dave", "eve", "frank", "grace"];
    let cases: &[(&str, &[&str])] = &[
        ("true", ALL),
        ("TRUE", ALL),
        ("False", &[]),
        ("false", &[]),
        ("true and false", &[]),
        ("false or true", ALL),
        ("! (true)", &[]),
        ("!(false)", ALL),
        // `and` binds tighter than `or` (idm-cases 53).
        (
            "givenName eq \"Bob\" or sn eq \"Smith\" and age eq 30",
            &["alice", "bob"],
        ),
        ("(givenName eq \"Bob\" or sn eq \"Smith\") and age eq 30", &["alice"]),
        ("sn eq \"smith\" and age eq 30 or age eq 35", &["alice", "carol"]),
        ("sn eq \"smith\" and (age eq 30 or age eq 25)", &["alice"]),
        (
            "(userName eq \"alice\" or userName eq \"bob\" or userName eq \"carol\")",
            &["alice", "bob", "carol"],
        ),
        ("admin pr and admin eq false and age ge 30", &["alice", "carol"]),
        (
            "(userName eq \"alice\" or (sn eq \"smith\" and age eq 35))",
            &["alice", "carol"],
        ),
        ("(sn eq \"smith\" and (age eq 30 or age eq 40))", &["alice"]),
        (
            "userName Sw \"AL\" AND age Ge 30 OR admin EQ True",
            &["alice", "bob", "eve"],
        ),
        ("true and userName eq \"alice\"", &["alice"]),
        ("false or userName eq \"alice\"", &["alice"]),
        // Negation is the token `!`, with or without a space, on a group or an assertion.
        ("!(userName eq \"alice\")", all_but_alice),
        ("! (userName eq \"alice\")", all_but_alice),
        ("! userName eq \"alice\"", all_but_alice),
        ("! (! (userName eq \"alice\"))", &["alice"]),
        ("!(!(userName eq \"alice\"))", &["alice"]),
        // `!userName` is one token: a field of that name.
        ("!userName eq \"alice\"", &[]),
        // `not` is a field name like any other.
        ("not eq \"x\"", &[]),
        // Field names keep their case; operators and keywords do not.
        ("userName EQ \"alice\"", &["alice"]),
        ("USERNAME eq \"alice\"", &[]),
        ("/userName eq \"alice\"", &["alice"]),
        // Spacing and parentheses.
        ("userName  eq   \"alice\"", &["alice"]),
        ("userName eq \"alice\" ", &["alice"]),
        (" userName eq \"alice\"", &["alice"]),
        ("(userName pr)", ALL),
        ("((((userName eq \"alice\"))))", &["alice"]),
        ("(userName eq \"alice\")or(userName eq \"bob\")", &["alice", "bob"]),
        ("userName eq 'alice'", &["alice"]),
        ("description eq \"Team lead\"", &["alice"]),
    ];
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        check_filters(checks, server, &fixture, cases);
    });
}

#[test]
fn quotes_and_backslash_escapes_in_string_literals() {
    let cases: &[(&str, &[&str])] = &[
        ("description eq \"He said \\\"hi\\\", it's fine\"", &["carol"]),
        ("description eq 'He said \"hi\", it\\'s fine'", &["carol"]),
        ("description co \"\\\"hi\\\"\"", &["carol"]),
        ("description co '\"hi\"'", &["carol"]),
        ("description co \"'\"", &["carol"]),
        // `\\` is one backslash; `\d` is just `d` (idm-cases 33, 59).
        ("description eq \"C:\\\\dir\\\\file\"", &["dave"]),
        ("description eq \"C:\\dir\\file\"", &[]),
        ("description eq \"C:dirfile\"", &[]),
        ("description co \"\\\\\"", &["dave"]),
        ("description co \"\\\\D\"", &["dave"]),
        // A backslash before a real newline keeps the newline (idm-cases 34); so does a bare one.
        ("motto eq \"line1\\\nline2\"", &["eve"]),
        ("motto eq \"line1\nline2\"", &["eve"]),
        ("motto eq \"line1\\nline2\"", &[]),
        ("motto eq \"line1nline2\"", &[]),
        // Escaping an ordinary character changes nothing.
        ("userName eq \"\\a\\l\\i\\c\\e\"", &["alice"]),
    ];
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        check_filters(checks, server, &fixture, cases);
    });
}

#[test]
fn private_properties_cannot_be_queried() {
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        check_filters(
            checks,
            server,
            &fixture,
            &[
                ("password pr", &[]),
                ("password eq \"Passw0rd\"", &[]),
                ("password sw \"$\"", &[]),
                ("password co \"a\"", &[]),
                ("! (password pr)", ALL),
            ],
        );
        let reply = users(server, &format!("_queryFilter={}", enc("userName eq \"alice\"")));
        checks.check("one result", reply.body["resultCount"].clone(), json!(1));
        checks.that(
            format!("no password in query results: {}", reply.text),
            reply.body["result"][0].get("password").is_none() && !reply.text.contains("Passw0rd"),
        );
    });
}

#[test]
fn field_selection_applies_to_query_results() {
    // idm-cases 190: `_fields=_id` leaves only `_id` (and `_rev` on the wire).
    on_each_backend(|builder| {
        let server = builder.start();
        let fixture = seed(&server);
        let reply = users(
            &server,
            &format!("_queryFilter={}&_fields=_id", enc("name eq \"alice\"")),
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        let rev = reply.body["result"][0]["_rev"].clone();
        assert!(rev.is_string(), "{}", reply.text);
        assert_eq!(
            reply.body,
            json!({"result": [{"_id": fixture.id("alice"), "_rev": rev}], "resultCount": 1,
                   "pagedResultsCookie": null, "totalPagedResultsPolicy": "NONE", "totalPagedResults": -1,
                   "remainingPagedResults": -1})
        );
        let reply = users(
            &server,
            &format!("_queryFilter={}&_fields=userName,sn", enc("sn eq \"smith\"")),
        );
        let items: Vec<Value> = reply.body["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", reply.text))
            .iter()
            .map(|item| json!({"userName": item["userName"], "sn": item["sn"], "keys": item.as_object().map(|m| m.len())}))
            .collect();
        assert_eq!(
            items,
            vec![
                json!({"userName": "alice", "sn": "Smith", "keys": 4}),
                json!({"userName": "carol", "sn": "smith", "keys": 4})
            ]
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

#[test]
fn injection_looking_literals_are_only_literals() {
    let cases: &[(&str, &[&str])] = &[
        ("userName eq \"x' OR 1=1 --\"", &["frank"]),
        ("userName eq \"x\\' OR 1=1 --\"", &["frank"]),
        ("userName eq 'x\\' OR 1=1 --'", &["frank"]),
        ("userName eq \"X' or 1=1 --\"", &["frank"]),
        ("userName sw \"x'\"", &["frank"]),
        ("userName co \"' OR 1=1\"", &["frank"]),
        ("userName eq \"' OR '1'='1\"", &[]),
        ("userName eq \"alice' --\"", &[]),
        ("userName eq \"alice\\\" OR \\\"1\\\"=\\\"1\"", &[]),
        ("userName eq \"alice'); DROP TABLE objects; --\"", &[]),
        ("userName eq \"alice\" or 1 eq 1", &["alice"]),
        // LIKE wildcards are literal characters.
        ("description eq \"%\"", &["frank"]),
        ("description co \"%\"", &["bob", "frank"]),
        ("description sw \"%\"", &["frank"]),
        ("description co \"_\"", &["bob", "grace"]),
        ("description sw \"_\"", &["grace"]),
        ("description eq \"_\"", &["grace"]),
        ("description co \"% off_\"", &["bob"]),
        ("description co \"%_\"", &[]),
        ("description co \"50_\"", &[]),
        ("userName sw \"%\"", &[]),
        ("userName co \"_\"", &[]),
        ("userName co \"%\"", &[]),
        ("userName sw \"a%\"", &[]),
        ("userName eq \"a%\"", &[]),
        ("userName eq \"_lice\"", &[]),
        ("description co \"*\"", &[]),
        ("description co \".\"", &[]),
        // Unicode is just text.
        ("description co \"日本\"", &["eve"]),
        ("description co \"✓\"", &["eve"]),
        ("description eq \"ÜNÏCÖDÉ ✓ 日本\"", &["eve"]),
        ("description eq \"ünïcödé\"", &[]),
        // Field names that look like SQL are field names.
        ("userName;DROP eq 1", &[]),
        ("userName' eq \"x\"", &[]),
        ("x'/**/OR/**/1=1 pr", &[]),
        ("userName--comment pr", &[]),
        ("objects pr", &[]),
    ];
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        check_filters(checks, server, &fixture, cases);
        // Sort keys and `_fields` that look like SQL are field names too.
        let reply = users(
            server,
            &format!(
                "_queryFilter=true&_fields=_id&_sortKeys={}",
                enc("sn'; DROP TABLE objects; --")
            ),
        );
        checks.check("an SQL-looking sort key", fixture.names(&reply), Ok(owned(ALL)));
        let reply = users(
            server,
            &format!("_queryFilter=true&_fields={}", enc("_id,x' OR 1=1 --")),
        );
        checks.check("an SQL-looking field", fixture.names(&reply), Ok(owned(ALL)));
        checks.check("still all there", matching(server, &fixture, "true"), Ok(sorted(ALL)));
        assert_alive(server);
    });
}

#[test]
fn nul_and_its_replacement_character_stay_distinct() {
    check_each_backend(|server, checks| {
        let mut fixture = Fixture::empty();
        for (name, description) in [("nul", "a\u{0}b"), ("replacement", "a\u{FFFD}b"), ("plain", "ab")] {
            let mut body = person("alice");
            body["userName"] = json!(name);
            body["description"] = json!(description);
            body["mail"] = json!(format!("{name}@example.com"));
            let id = create(server, &body);
            fixture.add(name, &id);
        }
        let read = server
            .admin()
            .get(&format!("/openidm/managed/user/{}", fixture.id("nul")))
            .send();
        checks.check("NUL is stored", read.body["description"].clone(), json!("a\u{0}b"));
        check_filters(
            checks,
            server,
            &fixture,
            &[
                ("description eq \"a\u{0}b\"", &["nul"]),
                ("description eq \"a\u{FFFD}b\"", &["replacement"]),
                ("description eq \"ab\"", &["plain"]),
                ("description co \"\u{0}\"", &["nul"]),
                ("description co \"\u{FFFD}\"", &["replacement"]),
                ("description sw \"a\u{0}\"", &["nul"]),
                ("description gt \"a\u{0}\"", &["nul", "plain", "replacement"]),
                ("description lt \"a\u{1}\"", &["nul"]),
                // A field name with NUL, raw or percent-escaped in the pointer, is a field name.
                ("a\u{0}b pr", &[]),
                ("a%00b pr", &[]),
                ("a\u{0}b eq \"x\"", &[]),
                ("! (a%00b pr)", &["nul", "replacement", "plain"]),
            ],
        );
        let reply = users(
            server,
            &format!("_queryFilter=true&_fields=_id&_sortKeys={}", enc("a\u{0}b")),
        );
        checks.check(
            "a sort key with NUL",
            fixture.names(&reply),
            Ok(owned(&["nul", "replacement", "plain"])),
        );
        let reply = users(
            server,
            &format!("_queryId=get-by-field-value&field={}&value=x", enc("a\u{0}b")),
        );
        checks.check(
            "a get-by-field-value field with NUL",
            fixture.names(&reply),
            Ok(Vec::new()),
        );
        assert_alive(server);
    });
}

// ---------------------------------------------------------------------------------------------
// Predefined queries and parameter combinations
// ---------------------------------------------------------------------------------------------

#[test]
fn predefined_queries_answer_their_documented_shapes() {
    check_each_backend(|server, checks| {
        let fixture = seed(server);

        let reply = users(server, "_queryId=query-all-ids");
        checks.check("query-all-ids", fixture.names(&reply), Ok(owned(ALL)));
        for item in reply.body["result"].as_array().into_iter().flatten() {
            let keys: Vec<String> = item
                .as_object()
                .map(|map| map.keys().cloned().collect())
                .unwrap_or_default();
            checks.check(format!("query-all-ids item {item}"), keys, owned(&["_id", "_rev"]));
        }
        checks.check(
            "query-all-ids is unpaged",
            reply.body["totalPagedResults"].clone(),
            json!(-1),
        );

        let reply = users(server, "_queryId=query-all");
        checks.check("query-all", fixture.names(&reply), Ok(owned(ALL)));
        for item in reply.body["result"].as_array().into_iter().flatten() {
            let id = item["_id"].as_str().unwrap_or_default();
            let read = server.admin().get(&format!("/openidm/managed/user/{id}")).send();
            checks.check(format!("query-all item {id} is the read"), item, &read.body);
        }

        let cases: &[(&str, &[&str])] = &[
            ("_queryId=for-userName&uid=alice", &["alice"]),
            ("_queryId=for-userName&uid=BOB", &["bob"]),
            ("_queryId=for-userName&uid=x%27+OR+1%3D1+--", &["frank"]),
            ("_queryId=for-userName&uid=%27+OR+%271%27%3D%271", &[]),
            ("_queryId=for-userName&uid=grace", &["grace"]),
            ("_queryId=for-userName&uid=", &[]),
            ("_queryId=get-by-field-value&field=sn&value=SMITH", &["alice", "carol"]),
            (
                "_queryId=get-by-field-value&field=nested/city&value=oslo",
                &["alice", "carol"],
            ),
            ("_queryId=get-by-field-value&field=/description&value=%25", &["frank"]),
            ("_queryId=get-by-field-value&field=description&value=_", &["grace"]),
            ("_queryId=get-by-field-value&field=sn%27+OR+%271%27%3D%271&value=x", &[]),
            ("_queryId=get-by-field-value&field=password&value=Passw0rd", &[]),
            ("_queryId=credential-query&username=alice", &["alice"]),
            ("_queryId=credential-query&username=ALICE", &["alice"]),
            ("_queryId=credential-query&username=grace", &[]),
            ("_queryId=credential-query&username=%25", &[]),
            // Sort keys are honoured on predefined queries (decision in §3.4).
            (
                "_queryId=query-all-ids&_sortKeys=-userName",
                &["frank", "grace", "eve", "dave", "carol", "bob", "alice"],
            ),
            (
                "_queryId=get-by-field-value&field=sn&value=smith&_sortKeys=-givenName",
                &["carol", "alice"],
            ),
        ];
        for (query, expected) in cases {
            checks.check(query, fixture.names(&users(server, query)), Ok(owned(expected)));
        }

        let reply = users(server, "_queryId=credential-query&username=alice");
        checks.that(
            format!("credential-query does not reveal the password: {}", reply.text),
            !reply.text.contains("password") && !reply.text.contains("Passw0rd"),
        );

        // Paging works on predefined queries too.
        let reply = users(
            server,
            "_queryId=query-all-ids&_pageSize=3&_totalPagedResultsPolicy=EXACT",
        );
        checks.check(
            "paged query-all-ids",
            fixture.names(&reply),
            Ok(owned(&["alice", "bob", "carol"])),
        );
        checks.check(
            "paged query-all-ids total",
            reply.body["totalPagedResults"].clone(),
            json!(7),
        );
        checks.that(
            format!("paged query-all-ids has a cookie: {}", reply.text),
            reply.body["pagedResultsCookie"].is_string(),
        );
        if let Some(cookie) = reply.body["pagedResultsCookie"].as_str() {
            let next = users(
                server,
                &format!("_queryId=query-all-ids&_pageSize=3&_pagedResultsCookie={}", enc(cookie)),
            );
            checks.check(
                "second page of query-all-ids",
                fixture.names(&next),
                Ok(owned(&["dave", "eve", "frank"])),
            );
        }
    });
}

#[test]
fn predefined_query_errors() {
    let server = TestServer::start();
    seed(&server);
    let mut checks = Checks::new(&server);
    let reply = users(&server, "_queryId=nope");
    checks.check(
        "unknown _queryId",
        error_of(&reply),
        error(
            400,
            "The passed query identifier nope does not match any configured queries on the JDBC repository service.",
        ),
    );
    for (query, parameter) in [
        ("_queryId=for-userName", "uid"),
        ("_queryId=get-by-field-value&field=sn", "value"),
        ("_queryId=get-by-field-value&value=x", "field"),
        ("_queryId=credential-query", "username"),
    ] {
        let reply = users(&server, query);
        checks.check(format!("{query}: status"), reply.status, 400);
        checks.that(
            format!("{query}: the message names the missing {parameter}: {}", reply.text),
            reply.body["message"].as_str().is_some_and(|m| m.contains(parameter)),
        );
    }
    checks.finish();
}

#[test]
fn query_parameter_combinations() {
    let server = TestServer::start();
    let fixture = seed(&server);
    let mut checks = Checks::new(&server);
    let cases = [
        (
            "_queryFilter=true&_queryId=query-all-ids",
            error(400, "The parameters _queryId and _queryFilter are mutually exclusive"),
        ),
        (
            "_queryId=for-userName&uid=alice&_queryFilter=true",
            error(400, "The parameters _queryId and _queryFilter are mutually exclusive"),
        ),
        (
            "_queryId=query-all-ids&_queryExpression=select+1",
            error(
                400,
                "The parameters _queryId and _queryExpression are mutually exclusive",
            ),
        ),
        (
            "_queryFilter=true&_queryExpression=select+1",
            error(
                400,
                "The parameters _queryFilter and _queryExpression are mutually exclusive",
            ),
        ),
    ];
    for (query, expected) in cases {
        checks.check(query, error_of(&users(&server, query)), expected);
    }
    // A native query is forbidden to HTTP callers, the administrator included.
    for query in [
        "_queryExpression=select+*+from+objects",
        "_queryExpression=true",
        "_queryExpression=",
    ] {
        let reply = users(&server, query);
        checks.check(
            format!("{query}: status"),
            (reply.status, reply.body["code"].clone()),
            (403, json!(403)),
        );
    }
    // A query on an instance is 400 (idm-cases 185).
    let reply = server
        .admin()
        .get(&format!(
            "/openidm/managed/user/{}?_queryFilter=true",
            fixture.id("alice")
        ))
        .send();
    checks.check(
        "query on an instance",
        (reply.status, reply.body["code"].clone()),
        (400, json!(400)),
    );
    // Parameter names are case-insensitive.
    let reply = users(
        &server,
        &format!("_QUERYFILTER={}&_FIELDS=_id", enc("userName eq \"bob\"")),
    );
    checks.check("upper-case parameter names", fixture.names(&reply), Ok(owned(&["bob"])));
    checks.finish();
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

/// `true` wrapped in `depth` parentheses.
fn nested(depth: usize) -> String {
    format!("{}true{}", "(".repeat(depth), ")".repeat(depth))
}

/// Asserts a 400 whose message is about the named parameter.
fn check_refused(checks: &mut Checks, what: &str, reply: &Reply, parameter: &str) {
    checks.check(
        format!("{what}: status"),
        (reply.status, reply.body["code"].clone()),
        (400, json!(400)),
    );
    checks.that(
        format!("{what}: the message names {parameter}: {}", reply.text),
        reply.body["message"]
            .as_str()
            .is_some_and(|m| m.to_lowercase().contains(&parameter.to_lowercase())),
    );
}

#[test]
fn filters_are_limited_to_16_kib_and_256_levels() {
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        // Exactly 16 KiB (16384 bytes) is accepted, one byte more is not.
        let padding = 16 * 1024 - "userName eq \"\"".len();
        let longest = format!("userName eq \"{}\"", "a".repeat(padding));
        assert_eq!(longest.len(), 16384);
        checks.check(
            "a 16384-byte filter",
            matching(server, &fixture, &longest),
            Ok(Vec::new()),
        );
        let too_long = format!("userName eq \"{}\"", "a".repeat(padding + 1));
        let reply = users(server, &format!("_queryFilter={}", enc(&too_long)));
        check_refused(checks, "a 16385-byte filter", &reply, "_queryFilter");
        // Multi-byte characters count in bytes.
        let wide = format!("userName eq \"{}\"", "é".repeat(padding / 2 + 1));
        let reply = users(server, &format!("_queryFilter={}", enc(&wide)));
        check_refused(
            checks,
            "a filter of 16386 bytes (8200 characters)",
            &reply,
            "_queryFilter",
        );

        // 256 levels of nesting are accepted, 257 are not, and much deeper input is refused
        // without harm.
        checks.check("256 levels", matching(server, &fixture, &nested(256)), Ok(sorted(ALL)));
        let reply = users(server, &format!("_queryFilter={}", enc(&nested(257))));
        check_refused(checks, "257 levels", &reply, "_queryFilter");
        let reply = users(server, &format!("_queryFilter={}", enc(&nested(8000))));
        check_refused(checks, "8000 levels", &reply, "_queryFilter");
        let negations = format!("{}userName eq \"alice\"{}", "!(".repeat(128), ")".repeat(128));
        checks.check(
            "128 negated groups (256 levels)",
            matching(server, &fixture, &negations),
            Ok(owned(&["alice"])),
        );
        let negations = format!("{}userName eq \"alice\"{}", "!(".repeat(129), ")".repeat(129));
        let reply = users(server, &format!("_queryFilter={}", enc(&negations)));
        check_refused(checks, "129 negated groups (258 levels)", &reply, "_queryFilter");
        // 250 levels of alternating connectives.
        let mut chain = "userName eq \"dave\"".to_owned();
        for i in 0..250 {
            chain = if i % 2 == 0 {
                format!("(userName eq \"u{i}\" or {chain})")
            } else {
                format!("(userName pr and {chain})")
            };
        }
        checks.check(
            "a 250-deep and/or chain",
            matching(server, &fixture, &chain),
            Ok(owned(&["dave"])),
        );
        // A long flat disjunction is fine.
        let wide_or = (0..500)
            .map(|i| format!("userName eq \"u{i}\""))
            .chain(["userName eq \"dave\"".to_owned()])
            .collect::<Vec<_>>()
            .join(" or ");
        checks.check(
            "a 501-way or",
            matching(server, &fixture, &wide_or),
            Ok(owned(&["dave"])),
        );
        let wide_and = (0..300).map(|_| "userName pr").collect::<Vec<_>>().join(" and ");
        checks.check("a 300-way and", matching(server, &fixture, &wide_and), Ok(sorted(ALL)));
        assert_alive(server);
    });
}

#[test]
fn sort_keys_and_fields_are_limited() {
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        let eight = "a,b,c,d,e,f,g,sn";
        let reply = users(server, &format!("_queryFilter=true&_fields=_id&_sortKeys={eight}"));
        checks.check(
            "8 sort keys",
            fixture.names(&reply),
            Ok(owned(&["dave", "grace", "bob", "alice", "carol", "frank", "eve"])),
        );
        let reply = users(server, "_queryFilter=true&_sortKeys=a,b,c,d,e,f,g,h,sn");
        check_refused(checks, "9 sort keys", &reply, "sort");
        let reply = users(
            server,
            "_queryFilter=true&_sortKeys=a,b,c,d&_sortKeys=e,f,g,h&_sortKeys=sn",
        );
        check_refused(checks, "9 sort keys over repeated parameters", &reply, "sort");

        let sixteen = (0..16).map(|i| format!("s{i}")).collect::<Vec<_>>().join("/");
        let seventeen = format!("{sixteen}/s16");
        let reply = users(
            server,
            &format!("_queryFilter=true&_fields=_id&_sortKeys={}", enc(&sixteen)),
        );
        checks.check("a 16-segment sort key", fixture.names(&reply), Ok(owned(ALL)));
        let reply = users(server, &format!("_queryFilter=true&_sortKeys={}", enc(&seventeen)));
        check_refused(checks, "a 17-segment sort key", &reply, "sort");
        let reply = users(server, &format!("_queryFilter=true&_sortKeys=-{}", enc(&seventeen)));
        check_refused(checks, "a descending 17-segment sort key", &reply, "sort");

        let reply = users(server, &format!("_queryFilter=true&_fields=_id,{}", enc(&sixteen)));
        checks.check("a 16-segment field", fixture.names(&reply), Ok(owned(ALL)));
        let reply = users(server, &format!("_queryFilter=true&_fields=_id,{}", enc(&seventeen)));
        check_refused(checks, "a 17-segment field", &reply, "_fields");
    });
}

/// `ferridm.json` with the test settings and a small `maxUnpagedQueryResults`.
fn small_unpaged_limit(limit: u64) -> String {
    json!({
        "passwordHashing": {"memoryKib": 256, "iterations": 1, "parallelism": 1},
        "watch": {"mode": "native", "debounceMillis": 50, "pollMillis": 100},
        "maxUnpagedQueryResults": limit
    })
    .to_string()
}

#[test]
fn unpaged_queries_over_the_limit_must_page() {
    check_each_backend_with(
        |builder| builder.conf_file("ferridm.json", &small_unpaged_limit(5)),
        |server, checks| {
            let fixture = seed(server);
            // Five matches are within the limit.
            checks.check(
                "5 matches",
                matching(server, &fixture, "age pr"),
                Ok(sorted(&["alice", "bob", "carol", "dave", "frank"])),
            );
            for query in [
                "_queryFilter=true".to_owned(),
                format!("_queryFilter={}", enc("name pr")),
                format!("_queryFilter=true&_sortKeys={}", enc("-sn")),
                format!("_queryFilter=true&_sortKeys={}", enc("sn,givenName")),
                "_queryFilter=true&_pageSize=0".to_owned(),
                "_queryId=query-all-ids".to_owned(),
                "_queryId=query-all".to_owned(),
            ] {
                let reply = users(server, &query);
                check_refused(checks, &format!("unpaged {query}"), &reply, "_pageSize");
            }
            // Paged, any size works.
            for query in [
                "_queryFilter=true&_pageSize=7",
                "_queryFilter=true&_pageSize=100&_sortKeys=-sn",
                "_queryId=query-all-ids&_pageSize=6",
            ] {
                let reply = users(server, query);
                checks.check(
                    format!("paged {query}"),
                    fixture.names(&reply).map(|names| names.len()),
                    Ok(if query.contains("=6") { 6 } else { 7 }),
                );
            }
            assert_alive(server);
        },
    );
}
