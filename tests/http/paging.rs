//! Paging, counting and sorting of queries over HTTP (idm-api.md §3.5; idm-cases.md §E
//! 186–205), with ferridm's decisions: cookies are opaque keyset positions (asserted only as
//! present or `null`, and by following them), a cookie walk visits every object exactly once in
//! order even while objects are inserted, `EXACT`/`ESTIMATE` with paging answer `EXACT` and the
//! exact total, sorting puts objects lacking the key last in both directions, compares
//! strings case-insensitively in byte order, sorts arrays by their smallest element and breaks
//! ties by creation order in the direction of the last key.
//!
//! Uses the shared fixture of `queries` (seven users, see [`crate::queries::person`]). Every
//! storage test runs on both backends with identical expectations.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ferridm_tests::{Reply, TestServer, on_each_backend};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::queries::{Checks, Fixture, check_each_backend, create, enc, error, error_of, owned, person, seed, users};

/// One page of a query as the client sees it.
#[derive(Debug, Clone, PartialEq)]
struct Page {
    names: Vec<String>,
    cookie: Option<String>,
    policy: String,
    total: i64,
}

impl Page {
    /// The shape the walk checks compare: names and whether a cookie came back.
    fn shape(&self) -> (Vec<String>, bool) {
        (self.names.clone(), self.cookie.is_some())
    }
}

/// Reads a query reply as a page, checking the envelope: exactly IDM's six members,
/// `resultCount` equal to the results, `remainingPagedResults` -1, a cookie that is a
/// non-empty string or `null`.
fn page_of(fixture: &Fixture, reply: &Reply) -> Result<Page, String> {
    let names = fixture.names(reply)?;
    let body = &reply.body;
    let mut members: Vec<&str> = body
        .as_object()
        .map(|map| map.keys().map(String::as_str).collect())
        .unwrap_or_default();
    members.sort_unstable();
    if members
        != [
            "pagedResultsCookie",
            "remainingPagedResults",
            "result",
            "resultCount",
            "totalPagedResults",
            "totalPagedResultsPolicy",
        ]
    {
        return Err(format!("unexpected envelope members {members:?}: {}", reply.text));
    }
    if body["remainingPagedResults"] != json!(-1) {
        return Err(format!("remainingPagedResults is not -1: {}", reply.text));
    }
    let cookie = match &body["pagedResultsCookie"] {
        Value::Null => None,
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        other => return Err(format!("pagedResultsCookie is {other}: {}", reply.text)),
    };
    Ok(Page {
        names,
        cookie,
        policy: body["totalPagedResultsPolicy"].as_str().unwrap_or("?").to_owned(),
        total: body["totalPagedResults"].as_i64().unwrap_or(i64::MIN),
    })
}

/// `GET …?<query>&_fields=_id` as a page.
fn page(server: &TestServer, fixture: &Fixture, query: &str) -> Result<Page, String> {
    page_of(fixture, &users(server, &format!("{query}&_fields=_id")))
}

/// Follows cookies from `query&_pageSize=<size>` until the cookie is `null` (at most 60 pages).
fn walk(server: &TestServer, fixture: &Fixture, query: &str, size: usize) -> Result<Vec<Page>, String> {
    let mut pages = Vec::new();
    let mut cookie: Option<String> = None;
    loop {
        let mut request = format!("{query}&_pageSize={size}");
        if let Some(cookie) = &cookie {
            request.push_str(&format!("&_pagedResultsCookie={}", enc(cookie)));
        }
        let current = page(server, fixture, &request).map_err(|e| format!("page {}: {e}", pages.len() + 1))?;
        cookie.clone_from(&current.cookie);
        pages.push(current);
        if cookie.is_none() {
            return Ok(pages);
        }
        if pages.len() >= 60 {
            return Err(format!("no end after 60 pages: {pages:?}"));
        }
    }
}

/// The page shapes of a walk over `expected` with `size` when the total is not known: full
/// pages with a cookie, the last with fewer results and none — or, when the results divide
/// evenly, one more empty page without a cookie.
fn walk_shape(expected: &[&str], size: usize) -> Vec<(Vec<String>, bool)> {
    let mut shape: Vec<(Vec<String>, bool)> = expected
        .chunks(size)
        .map(|chunk| (owned(chunk), chunk.len() == size))
        .collect();
    if expected.len().is_multiple_of(size) {
        shape.push((Vec::new(), false));
    }
    shape
}

/// The page shapes of a walk when the exact total is known: the last non-empty page already
/// has no cookie.
fn counted_walk_shape(expected: &[&str], size: usize) -> Vec<(Vec<String>, bool)> {
    let chunks: Vec<&[&str]> = expected.chunks(size).collect();
    let last = chunks.len().saturating_sub(1);
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, chunk)| (owned(chunk), index < last))
        .collect()
}

/// Shapes of a walk result.
fn shapes(pages: Result<Vec<Page>, String>) -> Result<Vec<(Vec<String>, bool)>, String> {
    pages.map(|pages| pages.iter().map(Page::shape).collect())
}

// ---------------------------------------------------------------------------------------------
// Envelope and counts
// ---------------------------------------------------------------------------------------------

#[test]
fn unpaged_queries_report_no_count_and_no_cookie() {
    // idm-cases 191, 192: without paging the policy is NONE and the total -1, whatever was asked.
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        let unpaged = Page {
            names: owned(&crate::queries::PEOPLE),
            cookie: None,
            policy: "NONE".into(),
            total: -1,
        };
        for suffix in [
            "",
            "&_totalPagedResultsPolicy=EXACT",
            "&_totalPagedResultsPolicy=ESTIMATE",
            "&_totalPagedResultsPolicy=NONE",
            "&_pageSize=0&_totalPagedResultsPolicy=EXACT",
            "&_pageSize=-3&_totalPagedResultsPolicy=EXACT",
            "&_pagedResultsOffset=2",
        ] {
            checks.check(
                format!("_queryFilter=true{suffix}"),
                page(server, &fixture, &format!("_queryFilter=true{suffix}")),
                Ok(unpaged.clone()),
            );
        }
        // The whole envelope, literally.
        let reply = users(
            server,
            &format!("_queryFilter={}&_fields=_id", enc("userName eq \"nobody\"")),
        );
        checks.check(
            "an empty result",
            reply.body,
            json!({"result": [], "resultCount": 0, "pagedResultsCookie": null,
                   "totalPagedResultsPolicy": "NONE", "totalPagedResults": -1, "remainingPagedResults": -1}),
        );
    });
}

#[test]
fn exact_and_estimate_counts_with_paging_are_exact() {
    // idm-cases 193, 194, 201.
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        let smiths = format!("_queryFilter={}", enc("sn eq \"smith\""));
        let counted = |names: &[&str], total| Page {
            names: owned(names),
            cookie: None,
            policy: "EXACT".into(),
            total,
        };
        for policy in ["EXACT", "ESTIMATE", "exact", "Estimate"] {
            checks.check(
                format!("{policy} over 2 matches with _pageSize=5"),
                page(
                    server,
                    &fixture,
                    &format!("{smiths}&_pageSize=5&_totalPagedResultsPolicy={policy}"),
                ),
                Ok(counted(&["alice", "carol"], 2)),
            );
        }
        for suffix in ["", "&_totalPagedResultsPolicy=NONE", "&_totalPagedResultsPolicy=none"] {
            checks.check(
                format!("_pageSize=5{suffix}"),
                page(server, &fixture, &format!("{smiths}&_pageSize=5{suffix}")),
                Ok(Page {
                    names: owned(&["alice", "carol"]),
                    cookie: None,
                    policy: "NONE".into(),
                    total: -1,
                }),
            );
        }
        // Zero matches, counted.
        checks.check(
            "EXACT over no match",
            page(
                server,
                &fixture,
                "_queryFilter=false&_pageSize=3&_totalPagedResultsPolicy=EXACT",
            ),
            Ok(counted(&[], 0)),
        );
        // The total is the total of the filter, on every page of a walk.
        let pages = walk(server, &fixture, "_queryFilter=true&_totalPagedResultsPolicy=EXACT", 3);
        checks.check(
            "EXACT walk of 7 by 3: totals",
            pages
                .as_ref()
                .map(|pages| pages.iter().map(|p| (p.policy.clone(), p.total)).collect::<Vec<_>>()),
            Ok(vec![("EXACT".to_owned(), 7); 3]),
        );
        checks.check(
            "EXACT walk of 7 by 3: pages",
            shapes(pages),
            Ok(counted_walk_shape(&crate::queries::PEOPLE, 3)),
        );
        let reply = users(server, "_queryFilter=true&_pageSize=2&_totalPagedResultsPolicy=foo");
        checks.check(
            "an unknown count policy",
            error_of(&reply),
            error(
                400,
                "The value &#39;foo&#39; for parameter &#39;_totalPagedResultsPolicy&#39; could not be parsed as a valid count policy",
            ),
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Cookies
// ---------------------------------------------------------------------------------------------

#[test]
fn cookies_continue_until_a_short_page() {
    // idm-cases 196 with opaque cookies: 5 matches by 2 without a count → cookie, cookie, null.
    on_each_backend(|builder| {
        let server = builder.start();
        let fixture = seed(&server);
        let five = format!("_queryFilter={}", enc("age pr"));
        let pages = walk(&server, &fixture, &five, 2);
        assert_eq!(
            shapes(pages.clone()),
            Ok(walk_shape(&["alice", "bob", "carol", "dave", "frank"], 2)),
            "on {:?}",
            server.backend()
        );
        let pages = pages.unwrap_or_default();
        assert!(pages.iter().all(|p| p.policy == "NONE" && p.total == -1), "{pages:?}");
        // Cookies are opaque continuations, not JDBC's decimal offsets.
        let first = pages[0].cookie.clone().unwrap_or_default();
        assert_ne!(first, "2", "the cookie is opaque, not an offset");
        // The same cookie may be used again and gives the same page.
        let again = page(
            &server,
            &fixture,
            &format!("{five}&_pageSize=2&_pagedResultsCookie={}", enc(&first)),
        );
        assert_eq!(again.map(|p| p.names), Ok(owned(&["carol", "dave"])));
    });
}

#[test]
fn a_page_that_ends_exactly_at_the_end_without_a_count_has_a_cookie_and_then_nothing() {
    // idm-cases 198: 4 matches by 2 without a count → the second page is full and has a cookie;
    // the third is empty with a null cookie.
    on_each_backend(|builder| {
        let server = builder.start();
        let fixture = seed(&server);
        let four = format!("_queryFilter={}", enc("nested pr"));
        assert_eq!(
            shapes(walk(&server, &fixture, &four, 2)),
            Ok(walk_shape(&["alice", "bob", "carol", "eve"], 2)),
            "on {:?}",
            server.backend()
        );
        assert_eq!(
            shapes(walk(&server, &fixture, "_queryFilter=true", 7)),
            Ok(walk_shape(&crate::queries::PEOPLE, 7)),
            "on {:?}",
            server.backend()
        );
    });
}

#[test]
fn with_an_exact_count_the_last_full_page_has_no_cookie() {
    // idm-cases 197 with opaque cookies: 4 matches by 2 with EXACT → first page cookie and total
    // 4, second page (reached with the cookie) no cookie and total 4.
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        let four = format!("_queryFilter={}&_totalPagedResultsPolicy=EXACT", enc("nested pr"));
        let first = page(server, &fixture, &format!("{four}&_pageSize=2"));
        checks.check(
            "first page",
            first
                .as_ref()
                .map(|p| (p.names.clone(), p.cookie.is_some(), p.policy.clone(), p.total)),
            Ok((owned(&["alice", "bob"]), true, "EXACT".to_owned(), 4)),
        );
        if let Ok(Page {
            cookie: Some(cookie), ..
        }) = &first
        {
            let second = page(
                server,
                &fixture,
                &format!("{four}&_pageSize=2&_pagedResultsCookie={}", enc(cookie)),
            );
            checks.check(
                "second page, by cookie",
                second.map(|p| (p.names, p.cookie.is_some(), p.policy, p.total)),
                Ok((owned(&["carol", "eve"]), false, "EXACT".to_owned(), 4)),
            );
        }
        let second = page(server, &fixture, &format!("{four}&_pageSize=2&_pagedResultsOffset=2"));
        checks.check(
            "second page, by offset",
            second.map(|p| (p.names, p.cookie.is_some(), p.policy, p.total)),
            Ok((owned(&["carol", "eve"]), false, "EXACT".to_owned(), 4)),
        );
        // One page holding everything.
        checks.check(
            "_pageSize=7 over 7 with EXACT",
            page(
                server,
                &fixture,
                "_queryFilter=true&_pageSize=7&_totalPagedResultsPolicy=EXACT",
            )
            .map(|p| p.shape()),
            Ok((owned(&crate::queries::PEOPLE), false)),
        );
        // Walks with a count end on the last non-empty page, sorted or not.
        for (query, expected) in [
            ("_queryFilter=true", crate::queries::PEOPLE.to_vec()),
            (
                "_queryFilter=true&_sortKeys=sn",
                vec!["dave", "grace", "bob", "alice", "carol", "frank", "eve"],
            ),
            (
                "_queryFilter=true&_sortKeys=admin,sn",
                vec!["alice", "carol", "bob", "eve", "dave", "grace", "frank"],
            ),
        ] {
            for size in [1, 7] {
                checks.check(
                    format!("EXACT walk of {query} by {size}"),
                    shapes(walk(
                        server,
                        &fixture,
                        &format!("{query}&_totalPagedResultsPolicy=EXACT"),
                        size,
                    )),
                    Ok(counted_walk_shape(&expected, size)),
                );
            }
        }
    });
}

#[test]
fn bad_cookies_and_paging_parameters_are_400() {
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        let invalid_cookie = error(400, "Invalid paged results cookie");
        for cookie in ["abc", "2", "4", "!!!", "%25%25", "AAAA", "e30"] {
            let reply = users(
                server,
                &format!("_queryFilter=true&_pageSize=2&_pagedResultsCookie={cookie}"),
            );
            checks.check(format!("cookie {cookie:?}"), error_of(&reply), invalid_cookie.clone());
        }
        // A cookie from a query sorted differently does not fit.
        let sorted = page(server, &fixture, "_queryFilter=true&_pageSize=2&_sortKeys=sn");
        let cookie = sorted.ok().and_then(|p| p.cookie).unwrap_or_default();
        for other in ["", "&_sortKeys=sn,givenName"] {
            let reply = users(
                server,
                &format!(
                    "_queryFilter=true&_pageSize=2&_pagedResultsCookie={}{other}",
                    enc(&cookie)
                ),
            );
            checks.check(
                format!("a cookie of _sortKeys=sn used with {other:?}"),
                error_of(&reply),
                invalid_cookie.clone(),
            );
        }
        // An offset together with a cookie (idm-cases 189).
        let first = page(server, &fixture, "_queryFilter=true&_pageSize=2");
        let cookie = first.ok().and_then(|p| p.cookie).unwrap_or_default();
        let reply = users(
            server,
            &format!(
                "_queryFilter=true&_pageSize=2&_pagedResultsOffset=2&_pagedResultsCookie={}",
                enc(&cookie)
            ),
        );
        checks.check(
            "offset and cookie",
            error_of(&reply),
            error(
                400,
                "The parameters _pagedResultsOffset and _pagedResultsCookie are mutually exclusive",
            ),
        );
        // Integers (idm-cases 202).
        for (query, parameter, value) in [
            ("_pageSize=abc", "_pageSize", "abc"),
            ("_pageSize=1.5", "_pageSize", "1.5"),
            ("_pageSize=99999999999999999999", "_pageSize", "99999999999999999999"),
            ("_pageSize=2&_pagedResultsOffset=x", "_pagedResultsOffset", "x"),
        ] {
            let reply = users(server, &format!("_queryFilter=true&{query}"));
            checks.check(
                query,
                error_of(&reply),
                error(
                    400,
                    &format!(
                        "The value &#39;{value}&#39; for parameter &#39;{parameter}&#39; could not be parsed as a valid integer"
                    ),
                ),
            );
        }
        // Sort keys (idm-cases 203).
        for keys in ["a,,b", "sn,", ",sn", "-", "%2B", "/"] {
            let reply = users(server, &format!("_queryFilter=true&_sortKeys={keys}"));
            let decoded = keys.replace("%2B", "+");
            checks.check(
                format!("_sortKeys={keys}"),
                error_of(&reply),
                error(
                    400,
                    &format!(
                        "The value &#39;{decoded}&#39; for parameter &#39;_sortKeys&#39; could not be parsed as a comma separated list of sort keys"
                    ),
                ),
            );
        }
        // Huge offsets are empty pages; huge negative ones are 0.
        checks.check(
            "_pagedResultsOffset=i64::MAX",
            page(
                server,
                &fixture,
                "_queryFilter=true&_pageSize=2&_pagedResultsOffset=9223372036854775807&_totalPagedResultsPolicy=EXACT",
            )
            .map(|p| (p.shape(), p.total)),
            Ok(((Vec::new(), false), 7)),
        );
        checks.check(
            "_pagedResultsOffset=i64::MIN",
            page(
                server,
                &fixture,
                "_queryFilter=true&_pageSize=2&_pagedResultsOffset=-9223372036854775808",
            )
            .map(|p| p.shape()),
            Ok((owned(&["alice", "bob"]), true)),
        );
        // A huge page size is fine.
        checks.check(
            "_pageSize=2147483648",
            page(server, &fixture, "_queryFilter=true&_pageSize=2147483648").map(|p| p.shape()),
            Ok((owned(&crate::queries::PEOPLE), false)),
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Offsets and the reference examples
// ---------------------------------------------------------------------------------------------

/// Creates users named `name<age>` with an `age` and a `name`, in the given order.
fn aged(server: &TestServer, fixture: &mut Fixture, ages: &[i64]) {
    for age in ages {
        let name = format!("age{age}");
        let mut body = person("alice");
        body["userName"] = json!(name);
        body["name"] = json!(name);
        body["mail"] = json!(format!("{name}@example.com"));
        body["age"] = json!(age);
        let id = create(server, &body);
        fixture.add(&name, &id);
    }
}

#[test]
fn offsets_and_sorted_pages_follow_the_reference_examples() {
    check_each_backend(|server, checks| {
        let mut fixture = Fixture::empty();

        // idm-cases 186: sorted by +age over 30, 33, 31, 34, 35, 32, positions 0, 3, 5 are 30, 33, 35.
        aged(server, &mut fixture, &[30, 33, 31, 34, 35, 32]);
        let reply = users(server, "_queryFilter=true&_fields=_id&_sortKeys=%2Bage");
        let names = fixture.names(&reply).unwrap_or_default();
        checks.check(
            "positions 0, 3, 5 of +age",
            [0, 3, 5].map(|i| names.get(i).cloned().unwrap_or_default()),
            ["age30", "age33", "age35"].map(str::to_owned),
        );

        // idm-cases 187: with a 36-year-old (seven aged 30..36), page size 2 at offset 2 is the
        // 32- and 33-year-olds, with a cookie.
        aged(server, &mut fixture, &[36]);
        let sorted = "_queryFilter=true&_sortKeys=%2Bage&_pageSize=2";
        let at_two = page(server, &fixture, &format!("{sorted}&_pagedResultsOffset=2"));
        checks.check(
            "offset 2",
            at_two.as_ref().map(Page::shape),
            Ok((owned(&["age32", "age33"]), true)),
        );
        // The cookie of an offset page continues after it.
        if let Ok(Page {
            cookie: Some(cookie), ..
        }) = &at_two
        {
            let next = page(
                server,
                &fixture,
                &format!("{sorted}&_pagedResultsCookie={}", enc(cookie)),
            );
            checks.check(
                "after offset 2",
                next.map(|p| p.shape()),
                Ok((owned(&["age34", "age35"]), true)),
            );
        }
        for (offset, expected, cookie) in [
            ("0", vec!["age30", "age31"], true),
            ("-1", vec!["age30", "age31"], true),
            ("5", vec!["age35", "age36"], true),
            ("6", vec!["age36"], false),
            ("7", vec![], false),
            ("1000", vec![], false),
        ] {
            checks.check(
                format!("offset {offset}"),
                page(server, &fixture, &format!("{sorted}&_pagedResultsOffset={offset}")).map(|p| p.shape()),
                Ok((owned(&expected), cookie)),
            );
        }
        // With EXACT the total is known, so the page reaching the end has no cookie.
        checks.check(
            "offset 5 with EXACT",
            page(
                server,
                &fixture,
                &format!("{sorted}&_pagedResultsOffset=5&_totalPagedResultsPolicy=EXACT"),
            ),
            Ok(Page {
                names: owned(&["age35", "age36"]),
                cookie: None,
                policy: "EXACT".into(),
                total: 7,
            }),
        );
        checks.check(
            "offset 2 with EXACT",
            page(
                server,
                &fixture,
                &format!("{sorted}&_pagedResultsOffset=2&_totalPagedResultsPolicy=EXACT"),
            )
            .map(|p| (p.shape(), p.total)),
            Ok(((owned(&["age32", "age33"]), true), 7)),
        );
        // Descending with an offset.
        checks.check(
            "-age offset 2",
            page(
                server,
                &fixture,
                "_queryFilter=true&_sortKeys=-age&_pageSize=3&_pagedResultsOffset=2",
            )
            .map(|p| p.shape()),
            Ok((owned(&["age34", "age33", "age32"]), true)),
        );
        // An offset inside a filter's matches.
        checks.check(
            "age gt 31 at offset 1",
            page(
                server,
                &fixture,
                &format!(
                    "_queryFilter={}&_sortKeys=age&_pageSize=2&_pagedResultsOffset=1",
                    enc("age gt 31")
                ),
            )
            .map(|p| p.shape()),
            Ok((owned(&["age33", "age34"]), true)),
        );
    });
}

#[test]
fn five_foos_page_by_two() {
    // idm-cases 188: foo..foo4 sorted by +name, page size 2: (foo, foo1) cookie, (foo2, foo3)
    // cookie, (foo4) no cookie — whatever order they were created in.
    on_each_backend(|builder| {
        let server = builder.start();
        let mut fixture = Fixture::empty();
        for name in ["foo3", "foo", "foo4", "foo1", "foo2"] {
            let mut body = person("bob");
            body["userName"] = json!(name);
            body["name"] = json!(name);
            body["mail"] = json!(format!("{name}@example.com"));
            let id = create(&server, &body);
            fixture.add(name, &id);
        }
        assert_eq!(
            shapes(walk(&server, &fixture, "_queryFilter=true&_sortKeys=%2Bname", 2)),
            Ok(vec![
                (owned(&["foo", "foo1"]), true),
                (owned(&["foo2", "foo3"]), true),
                (owned(&["foo4"]), false)
            ]),
            "on {:?}",
            server.backend()
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Sorting
// ---------------------------------------------------------------------------------------------

/// `(_sortKeys as sent, expected order)` over the fixture.
fn sort_cases() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        // No sort keys: creation order.
        ("", vec!["alice", "bob", "carol", "dave", "eve", "frank", "grace"]),
        // Strings: lower-cased byte order (Smith = smith, ärger after zed), ties by creation.
        ("sn", vec!["dave", "grace", "bob", "alice", "carol", "frank", "eve"]),
        ("%2Bsn", vec!["dave", "grace", "bob", "alice", "carol", "frank", "eve"]),
        // A literal `+` is a space: still ascending.
        ("+sn", vec!["dave", "grace", "bob", "alice", "carol", "frank", "eve"]),
        ("/sn", vec!["dave", "grace", "bob", "alice", "carol", "frank", "eve"]),
        ("-sn", vec!["eve", "frank", "carol", "alice", "bob", "grace", "dave"]),
        (
            "userName",
            vec!["alice", "bob", "carol", "dave", "eve", "grace", "frank"],
        ),
        (
            "givenName",
            vec!["alice", "bob", "carol", "dave", "frank", "grace", "eve"],
        ),
        // Numbers; objects without the key last in both directions, in creation order in the
        // direction of the key.
        ("score", vec!["carol", "alice", "bob", "eve", "dave", "frank", "grace"]),
        ("-score", vec!["eve", "bob", "alice", "carol", "grace", "frank", "dave"]),
        // Arrays by their smallest element (case-insensitively); an empty array has none.
        ("tags", vec!["alice", "dave", "bob", "carol", "eve", "frank", "grace"]),
        ("-tags", vec!["bob", "dave", "alice", "grace", "frank", "eve", "carol"]),
        // Nested pointers.
        (
            "nested/city",
            vec!["bob", "alice", "carol", "eve", "dave", "frank", "grace"],
        ),
        (
            "-nested/city",
            vec!["eve", "carol", "alice", "bob", "grace", "frank", "dave"],
        ),
        (
            "-/nested/zip",
            vec!["bob", "alice", "grace", "frank", "eve", "dave", "carol"],
        ),
        // A null value sorts like a missing one.
        ("nick", vec!["carol", "alice", "bob", "dave", "eve", "frank", "grace"]),
        ("-nick", vec!["carol", "grace", "frank", "eve", "dave", "bob", "alice"]),
        // Booleans: false before true.
        ("admin", vec!["alice", "carol", "bob", "eve", "dave", "frank", "grace"]),
        // Several keys.
        (
            "sn,-givenName",
            vec!["dave", "grace", "bob", "carol", "alice", "frank", "eve"],
        ),
        (
            "-sn,givenName",
            vec!["eve", "frank", "alice", "carol", "bob", "grace", "dave"],
        ),
        (
            "admin,sn",
            vec!["alice", "carol", "bob", "eve", "dave", "grace", "frank"],
        ),
        (
            "admin,-sn",
            vec!["carol", "alice", "eve", "bob", "frank", "grace", "dave"],
        ),
        (
            "-admin,sn",
            vec!["bob", "eve", "alice", "carol", "dave", "grace", "frank"],
        ),
        (
            "-admin,%2Bsn",
            vec!["bob", "eve", "alice", "carol", "dave", "grace", "frank"],
        ),
        (
            "admin&_sortKeys=sn",
            vec!["alice", "carol", "bob", "eve", "dave", "grace", "frank"],
        ),
        (
            "tags,-score",
            vec!["alice", "dave", "bob", "eve", "carol", "grace", "frank"],
        ),
        // Private properties are not sort values: all missing, creation order.
        (
            "password",
            vec!["alice", "bob", "carol", "dave", "eve", "frank", "grace"],
        ),
        (
            "-password",
            vec!["grace", "frank", "eve", "dave", "carol", "bob", "alice"],
        ),
    ]
}

#[test]
fn sorting_orders_every_kind_of_value() {
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        for (keys, expected) in sort_cases() {
            let query = if keys.is_empty() {
                "_queryFilter=true".to_owned()
            } else {
                format!("_queryFilter=true&_sortKeys={keys}")
            };
            checks.check(
                format!("unpaged {query}"),
                page(server, &fixture, &query).map(|p| p.names),
                Ok(owned(&expected)),
            );
        }
        // Sorting applies after filtering.
        checks.check(
            "sn eq smith sorted by -givenName",
            page(
                server,
                &fixture,
                &format!("_queryFilter={}&_sortKeys=-givenName", enc("sn eq \"smith\"")),
            )
            .map(|p| p.names),
            Ok(owned(&["carol", "alice"])),
        );
        // Sorting by _id.
        let mut by_id: Vec<(String, &str)> = crate::queries::PEOPLE
            .iter()
            .map(|name| (fixture.id(name).to_lowercase(), *name))
            .collect();
        by_id.sort();
        checks.check(
            "_id",
            page(server, &fixture, "_queryFilter=true&_sortKeys=_id").map(|p| p.names),
            Ok(by_id.iter().map(|(_, name)| (*name).to_owned()).collect()),
        );
        checks.check(
            "-_id",
            page(server, &fixture, "_queryFilter=true&_sortKeys=-_id").map(|p| p.names),
            Ok(by_id.iter().rev().map(|(_, name)| (*name).to_owned()).collect()),
        );
    });
}

#[test]
fn cookie_walks_visit_every_object_once_in_sort_order() {
    check_each_backend(|server, checks| {
        let fixture = seed(server);
        for (keys, expected) in sort_cases() {
            let query = if keys.is_empty() {
                "_queryFilter=true".to_owned()
            } else {
                format!("_queryFilter=true&_sortKeys={keys}")
            };
            for size in [1, 2, 3] {
                checks.check(
                    format!("walk {query} by {size}"),
                    shapes(walk(server, &fixture, &query, size)),
                    Ok(walk_shape(&expected, size)),
                );
            }
        }
        // Walks over a filter, with offsets on single-key sorts, with multi-key sorts.
        let smiths_and_admins = format!("_queryFilter={}", enc("sn eq \"smith\" or admin eq true"));
        checks.check(
            "walk a filter by -sn",
            shapes(walk(server, &fixture, &format!("{smiths_and_admins}&_sortKeys=-sn"), 1)),
            Ok(walk_shape(&["eve", "carol", "alice", "bob"], 1)),
        );
        for (query, expected) in [
            (
                "_sortKeys=score&_pagedResultsOffset=3",
                vec![(owned(&["eve", "dave"]), true)],
            ),
            (
                "_sortKeys=-score&_pagedResultsOffset=3",
                vec![(owned(&["carol", "grace"]), true)],
            ),
            (
                "_sortKeys=admin,sn&_pagedResultsOffset=4",
                vec![(owned(&["dave", "grace"]), true)],
            ),
        ] {
            checks.check(
                format!("offset page {query}"),
                page(server, &fixture, &format!("_queryFilter=true&{query}&_pageSize=2")).map(|p| vec![p.shape()]),
                Ok(expected),
            );
        }
        // A cookie from an offset page continues in order, into the objects lacking the key.
        let offset_page = page(
            server,
            &fixture,
            "_queryFilter=true&_sortKeys=-score&_pageSize=2&_pagedResultsOffset=3",
        );
        if let Ok(Page {
            cookie: Some(cookie), ..
        }) = offset_page
        {
            checks.check(
                "after -score offset 3",
                page(
                    server,
                    &fixture,
                    &format!(
                        "_queryFilter=true&_sortKeys=-score&_pageSize=2&_pagedResultsCookie={}",
                        enc(&cookie)
                    ),
                )
                .map(|p| p.shape()),
                Ok((owned(&["frank", "dave"]), true)),
            );
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Walks while objects are inserted
// ---------------------------------------------------------------------------------------------

/// A user for the insertion walks: `userName` is `name`.
fn walker(name: &str) -> Value {
    let mut body = person("carol");
    body["userName"] = json!(name);
    let local: String = name.bytes().map(|byte| format!("{byte:02x}")).collect();
    body["mail"] = json!(format!("w{local}@example.com"));
    body
}

/// The `userName`s of a reply's results.
fn user_names(reply: &Reply) -> Result<Vec<String>, String> {
    if reply.status != 200 {
        return Err(format!("status {}: {}", reply.status, reply.text));
    }
    Ok(reply.body["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| item["userName"].as_str().unwrap_or("?").to_owned())
        .collect())
}

/// Walks `query` by `size`, calling `between(last userName seen)` after each page; returns the
/// `userName`s in walk order.
fn walk_inserting(
    server: &TestServer,
    query: &str,
    size: usize,
    mut between: impl FnMut(&str),
) -> Result<Vec<String>, String> {
    let mut seen = Vec::new();
    let mut cookie: Option<String> = None;
    for _ in 0..200 {
        let mut request = format!("{query}&_fields=userName&_pageSize={size}");
        if let Some(cookie) = &cookie {
            request.push_str(&format!("&_pagedResultsCookie={}", enc(cookie)));
        }
        let reply = users(server, &request);
        seen.extend(user_names(&reply)?);
        cookie = reply.body["pagedResultsCookie"].as_str().map(str::to_owned);
        match (&cookie, seen.last().cloned()) {
            (Some(_), Some(last)) => between(&last),
            _ => return Ok(seen),
        }
    }
    Err(format!("no end after 200 pages: {seen:?}"))
}

/// A new name sorting just after `name` (`tag` keeps names of different walks apart).
fn just_above(name: &str, tag: usize) -> String {
    format!("{name}z{tag}")
}

/// A new name sorting just before `name` (ASCII names not ending in a character below `!`).
fn just_below(name: &str, tag: usize) -> String {
    format!("{}!{tag}{name}", &name[..name.len() - 1])
}

/// Walks `-?userName`-ordered `query` by `size` while, after each of the first three pages,
/// one user is inserted just behind the last one seen (already passed: must not appear) and one
/// just ahead of it (must appear); checks the walk saw what was stored before plus the ones
/// ahead, in order, each once.
fn check_sorted_walk_with_inserts(checks: &mut Checks, server: &TestServer, sort: &str, descending: bool, size: usize) {
    let tag = size;
    let query = format!("_queryFilter=true&_sortKeys={sort}");
    let before = user_names(&users(server, &format!("{query}&_fields=userName"))).unwrap_or_default();
    let mut ahead_inserted = Vec::new();
    let mut round = 0;
    let walked = walk_inserting(server, &query, size, |last| {
        round += 1;
        if round > 3 {
            return;
        }
        let (behind, ahead) = if descending {
            (just_above(last, tag), just_below(last, tag))
        } else {
            (just_below(last, tag), just_above(last, tag))
        };
        create(server, &walker(&behind));
        create(server, &walker(&ahead));
        ahead_inserted.push(ahead);
    });
    let mut expected: Vec<String> = before.iter().chain(&ahead_inserted).cloned().collect();
    expected.sort();
    if descending {
        expected.reverse();
    }
    checks.check(format!("walk of {query} by {size} with inserts"), walked, Ok(expected));
}

#[test]
fn cookie_walks_survive_inserts_between_pages() {
    check_each_backend(|server, checks| {
        for i in 0..12 {
            create(server, &walker(&format!("m{:02}", i * 2)));
        }
        check_sorted_walk_with_inserts(checks, server, "userName", false, 3);
        check_sorted_walk_with_inserts(checks, server, "-userName", true, 4);
        // Every walker's sn is "smith": the second key decides.
        check_sorted_walk_with_inserts(checks, server, "sn,-userName", true, 5);
        check_sorted_walk_with_inserts(checks, server, "-sn,userName", false, 2);

        // Creation order (no sort keys): everything inserted during the walk comes later and is
        // seen.
        let before = user_names(&users(server, "_queryFilter=true&_fields=userName")).unwrap_or_default();
        let mut inserted = Vec::new();
        let mut round = 0;
        let walked = walk_inserting(server, "_queryFilter=true", 5, |_| {
            round += 1;
            if round > 3 {
                return;
            }
            for suffix in ["a", "b"] {
                let name = format!("a{round}{suffix}");
                create(server, &walker(&name));
                inserted.push(name);
            }
        });
        let expected: Vec<String> = before.iter().chain(&inserted).cloned().collect();
        checks.check("creation-order walk with inserts", walked, Ok(expected));
    });
}

/// Sends admin requests from another thread (a `TestServer` need not be shareable).
struct Inserter {
    base: String,
    client: Client,
}

impl Inserter {
    fn create(&self, body: &Value) -> u16 {
        self.client
            .post(format!("{}/openidm/managed/user?_action=create", self.base))
            .header("X-OpenIDM-Username", "openidm-admin")
            .header("X-OpenIDM-Password", "openidm-admin")
            .json(body)
            .send()
            .map(|response| response.status().as_u16())
            .unwrap_or_default()
    }
}

#[test]
fn cookie_walks_see_every_object_once_during_concurrent_inserts() {
    on_each_backend(|builder| {
        let server = builder.start();
        let originals: Vec<String> = (0..24).map(|i| format!("n{:03}", i * 10)).collect();
        for name in &originals {
            create(&server, &walker(name));
        }
        let inserter = Inserter {
            base: server.base().to_owned(),
            client: Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
        };
        for (query, descending) in [
            ("_queryFilter=true&_sortKeys=userName", false),
            ("_queryFilter=true&_sortKeys=-userName", true),
            ("_queryFilter=true", false),
            ("_queryFilter=true&_sortKeys=sn,userName", false),
        ] {
            let round = query.len();
            let (walked, statuses) = std::thread::scope(|scope| {
                let inserting = scope.spawn(|| {
                    (0..30)
                        .map(|i| {
                            std::thread::sleep(Duration::from_millis(3));
                            inserter.create(&walker(&format!("n{:03}x{round}", (i * 37) % 240)))
                        })
                        .collect::<Vec<u16>>()
                });
                let walked = walk_inserting(&server, query, 2, |_| std::thread::sleep(Duration::from_millis(2)));
                (walked, inserting.join().unwrap())
            });
            assert!(statuses.iter().all(|s| *s == 201), "inserts: {statuses:?}");
            let walked = walked.unwrap_or_else(|e| panic!("{query} on {:?}: {e}", server.backend()));
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for name in &walked {
                *counts.entry(name.as_str()).or_default() += 1;
            }
            let missing: Vec<&String> = originals
                .iter()
                .filter(|name| !counts.contains_key(name.as_str()))
                .collect();
            let repeated: Vec<(&&str, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
            assert!(
                missing.is_empty() && repeated.is_empty(),
                "{query} on {:?}: missing {missing:?}, repeated {repeated:?}, walk {walked:?}",
                server.backend()
            );
            if query.contains("userName") {
                let mut in_order = walked.clone();
                in_order.sort();
                if descending {
                    in_order.reverse();
                }
                assert_eq!(walked, in_order, "{query} on {:?}: out of order", server.backend());
            } else {
                // Creation order: the originals first, in their order.
                let firsts: Vec<&String> = walked.iter().take(originals.len()).collect();
                assert_eq!(
                    firsts,
                    originals.iter().collect::<Vec<_>>(),
                    "{query} on {:?}",
                    server.backend()
                );
            }
            let distinct: HashSet<&String> = walked.iter().collect();
            assert_eq!(distinct.len(), walked.len());
        }
    });
}
