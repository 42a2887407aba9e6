//! Concurrent writers on both backends: parallel creates all land with distinct ids, writers
//! racing on one `If-Match` revision produce exactly one winner (the rest get 412), racing
//! `If-None-Match: *` creates of one id produce exactly one 201, and unconditional patches
//! retry internally so none is lost (idm-api.md §1.5, §2.2, §4.2).

use std::collections::HashSet;
use std::sync::Barrier;
use std::time::Duration;

use ferridm_tests::{Reply, TestServer, on_each_backend, on_postgres, unique};
use reqwest::Method;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::crud::{assert_rev, count, put_new, user_body, user_with};

/// The administrator as the racing threads share it: the server's address and one blocking
/// client (a `TestServer` itself need not be shareable between threads).
struct SharedAdmin {
    base: String,
    client: Client,
}

impl SharedAdmin {
    fn of(server: &TestServer) -> Self {
        Self {
            base: server.base().to_owned(),
            client: Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
        }
    }

    /// Sends one request as `openidm-admin` and reads the whole response.
    fn send(&self, method: Method, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("X-OpenIDM-Username", "openidm-admin")
            .header("X-OpenIDM-Password", "openidm-admin")
            .json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().unwrap_or_else(|e| panic!("request failed: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        Reply {
            status,
            headers,
            body,
            text,
        }
    }
}

/// Runs `request(admin, i)` on `n` threads released together and returns the replies in
/// thread order.
fn race(server: &TestServer, n: usize, request: impl Fn(&SharedAdmin, usize) -> Reply + Sync) -> Vec<Reply> {
    let admin = SharedAdmin::of(server);
    let barrier = Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (admin, barrier, request) = (&admin, &barrier, &request);
                scope.spawn(move || {
                    barrier.wait();
                    request(admin, i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a request thread panicked"))
            .collect()
    })
}

#[test]
fn two_hundred_parallel_creates_all_land() {
    on_each_backend(|builder| {
        let server = builder.start();
        let prefix = unique("crowd");
        let replies = race(&server, 200, |admin, i| {
            let body = user_body(&format!("{prefix}-{i}"));
            admin.send(Method::POST, "/openidm/managed/user?_action=create", &body, &[])
        });
        let mut ids = HashSet::new();
        for (i, reply) in replies.iter().enumerate() {
            assert_eq!(
                reply.status,
                201,
                "create {i} on {:?}: {}",
                server.backend(),
                reply.text
            );
            assert_eq!(reply.body["userName"], format!("{prefix}-{i}"));
            assert_rev(&reply.body["_rev"]);
            ids.insert(reply.body["_id"].as_str().expect("_id").to_owned());
        }
        assert_eq!(ids.len(), 200, "every create got its own id");
        assert_eq!(count(&server, "true"), 200);
        assert_eq!(count(&server, &format!("userName+sw+%22{prefix}%22")), 200);
    });
}

#[test]
fn parallel_puts_with_the_same_if_match_have_one_winner() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("contended");
        let created = put_new(&server, &id, &user_body(&id));
        let rev = assert_rev(&created.body["_rev"]);
        let path = format!("/openidm/managed/user/{id}");

        let replies = race(&server, 16, |admin, i| {
            let body = user_with(&id, &json!({"description": format!("writer {i}")}));
            admin.send(Method::PUT, &path, &body, &[("If-Match", &rev)])
        });
        let winners: Vec<usize> = (0..replies.len()).filter(|&i| replies[i].status == 200).collect();
        assert_eq!(
            winners.len(),
            1,
            "exactly one writer wins on {:?}: {:?}",
            server.backend(),
            replies.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        let winner = winners[0];
        for (i, reply) in replies.iter().enumerate() {
            if i != winner {
                let message = reply.assert_error(412);
                assert!(
                    message.starts_with("Update rejected as current Object revision"),
                    "{message}"
                );
            }
        }
        let read = server.admin().get(&path).send();
        assert_eq!(read.body["description"], format!("writer {winner}"));
        assert_eq!(read.body["_rev"], replies[winner].body["_rev"]);
        assert_ne!(read.body["_rev"], rev.as_str());
    });
}

#[test]
fn parallel_creates_of_one_id_have_one_winner() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("sameid");
        let path = format!("/openidm/managed/user/{id}");
        // Only the id collides: each creator has its own userName.
        let replies = race(&server, 16, |admin, i| {
            let body = user_with(&format!("{id}-{i}"), &json!({"description": format!("creator {i}")}));
            admin.send(Method::PUT, &path, &body, &[("If-None-Match", "*")])
        });
        let winners: Vec<usize> = (0..replies.len()).filter(|&i| replies[i].status == 201).collect();
        assert_eq!(
            winners.len(),
            1,
            "exactly one create wins on {:?}: {:?}",
            server.backend(),
            replies.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        for (i, reply) in replies.iter().enumerate() {
            if i != winners[0] {
                reply.assert_error(412);
            }
        }
        let read = server.admin().get(&path).send();
        assert_eq!(read.body["description"], format!("creator {}", winners[0]));
        assert_eq!(count(&server, "true"), 1);
    });
}

#[test]
fn parallel_unconditional_patches_are_all_applied() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("counter");
        put_new(&server, &id, &user_with(&id, &json!({"logins": 0})));
        let path = format!("/openidm/managed/user/{id}");
        let operations = json!([{"operation": "increment", "field": "/logins", "value": 1}]);
        let replies = race(&server, 16, |admin, i| {
            if i % 2 == 0 {
                admin.send(Method::PATCH, &path, &operations, &[])
            } else {
                admin.send(Method::POST, &format!("{path}?_action=patch"), &operations, &[])
            }
        });
        for (i, reply) in replies.iter().enumerate() {
            assert_eq!(reply.status, 200, "patch {i} on {:?}: {}", server.backend(), reply.text);
        }
        let read = server.admin().get(&path).send();
        assert_eq!(read.body["logins"], json!(16), "no increment was lost");
        let revisions: HashSet<&str> = replies.iter().filter_map(|r| r.body["_rev"].as_str()).collect();
        assert_eq!(revisions.len(), 16, "each patch produced its own revision");
    });
}

/// Twenty racing DELETEs of one object: exactly one deletes it (200) and runs `postDelete`;
/// the others find it gone (404) or changed (412). PostgreSQL used to let every one succeed.
#[test]
fn racing_deletes_of_one_object_have_one_winner() {
    on_each_backend(|builder| {
        let server = builder
            .edit(|project| {
                let path = project.join("conf/managed.json");
                let managed = ferridm_tests::managed_with_user(&path, |user| {
                    user["postDelete"] = json!({"type": "text/rhai", "source":
                        "openidm::create(\"managed/role\", #{name: \"gone-\" + object._id + \"-\" + openidm::service(\"randomCode\", #{length: 12})});"});
                });
                std::fs::write(&path, managed.to_string()).unwrap();
            })
            .start();
        let created = server
            .admin()
            .post("/openidm/managed/user?_action=create", &user_body(&unique("doomed")))
            .send();
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.body["_id"].as_str().unwrap().to_owned();
        let path = format!("/openidm/managed/user/{id}");
        let replies = race(&server, 20, |admin, _| {
            admin.send(Method::DELETE, &path, &json!({}), &[])
        });
        let statuses: Vec<u16> = replies.iter().map(|reply| reply.status).collect();
        assert_eq!(
            statuses.iter().filter(|status| **status == 200).count(),
            1,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|status| [200, 404, 412].contains(status)),
            "{statuses:?}"
        );
        let gone = server
            .admin()
            .get(&format!(
                "/openidm/managed/role?_queryFilter=name+sw+%22gone-{id}-%22&_fields=_id"
            ))
            .send();
        assert_eq!(gone.status, 200, "{}", gone.text);
        assert_eq!(gone.body["resultCount"], 1, "postDelete ran once: {}", gone.text);
    });
}

/// Issue 22, point 14: forty writers each incrementing one field ten times without `If-Match`
/// all succeed (no "Too many concurrent writers"), and no increment is lost — conflicting
/// unconditional writes to one object take turns instead of failing after retries.
#[test]
fn forty_writers_incrementing_one_field_all_succeed() {
    on_each_backend(|builder| {
        let server = builder.start();
        let id = unique("contended");
        put_new(&server, &id, &user_with(&id, &json!({"logins": 0})));
        let path = format!("/openidm/managed/user/{id}");
        let operations = json!([{"operation": "increment", "field": "/logins", "value": 1}]);
        let replies = race(&server, 40, |admin, _| {
            let mut last = None;
            for _ in 0..10 {
                let reply = admin.send(Method::PATCH, &path, &operations, &[]);
                if reply.status != 200 {
                    return reply;
                }
                last = Some(reply);
            }
            last.expect("ten patches")
        });
        for (i, reply) in replies.iter().enumerate() {
            assert_eq!(
                reply.status,
                200,
                "writer {i} on {:?}: {}",
                server.backend(),
                reply.text
            );
        }
        let read = server.admin().get(&path).send();
        assert_eq!(read.body["logins"], json!(400), "no increment was lost");
    });
}

/// Issue 22, point 14, across nodes: writers on two nodes of one PostgreSQL database, each
/// incrementing one field ten times without `If-Match`, all succeed and no increment is lost
/// (writers take turns on each node; the two nodes' turns meet in the database's revision check
/// and the loser starts again from the winner's object).
#[test]
fn writers_on_two_nodes_incrementing_one_field_all_succeed() {
    on_postgres(|builder| {
        let first = builder.start();
        let second = TestServer::builder().sharing(&first).start();
        let id = unique("contended");
        put_new(&first, &id, &user_with(&id, &json!({"logins": 0})));
        let path = format!("/openidm/managed/user/{id}");
        let operations = json!([{"operation": "increment", "field": "/logins", "value": 1}]);
        let nodes = [SharedAdmin::of(&first), SharedAdmin::of(&second)];
        let barrier = Barrier::new(40);
        let failures: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..40)
                .map(|writer| {
                    let (node, barrier, path, operations) = (&nodes[writer % 2], &barrier, &path, &operations);
                    scope.spawn(move || {
                        barrier.wait();
                        (0..10)
                            .map(|_| node.send(Method::PATCH, path, operations, &[]))
                            .filter(|reply| reply.status != 200)
                            .map(|reply| format!("writer {writer}: {} {}", reply.status, reply.text))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|handle| handle.join().expect("a writer panicked"))
                .collect()
        });
        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(
            second.admin().get(&path).send().body["logins"],
            json!(400),
            "no increment was lost"
        );
    });
}

/// Writers' turns never starve the writes themselves of connections: sixty-four writers, each
/// patching its own object without `If-Match` at once (more than the pool holds), all land.
#[test]
fn sixty_four_unconditional_writers_of_different_objects_all_land() {
    on_each_backend(|builder| {
        let server = builder.start();
        let ids: Vec<String> = (0..64)
            .map(|_| {
                let id = unique("own");
                put_new(&server, &id, &user_with(&id, &json!({"logins": 0})));
                id
            })
            .collect();
        let operations = json!([{"operation": "increment", "field": "/logins", "value": 1}]);
        let replies = race(&server, 64, |admin, writer| {
            let path = format!("/openidm/managed/user/{}", ids[writer]);
            let mut last = admin.send(Method::PATCH, &path, &operations, &[]);
            for _ in 1..5 {
                if last.status != 200 {
                    break;
                }
                last = admin.send(Method::PATCH, &path, &operations, &[]);
            }
            last
        });
        for (writer, reply) in replies.iter().enumerate() {
            assert_eq!(reply.status, 200, "writer {writer}: {}", reply.text);
            assert_eq!(reply.body["logins"], json!(5), "writer {writer}");
        }
    });
}
