//! Health: IDM's server state (`info/ping`, `health`) and the probes (`health/live`,
//! `health/ready`, also at `/health/*` for container orchestrators), answered without
//! credentials. Readiness follows the database: a PostgreSQL test runs the server through a TCP
//! proxy that it cuts and restores.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ferridm_store::testing::TestDatabase;
use ferridm_tests::TestServer;
use serde_json::json;

/// IDM's state of a ready server.
fn ready_state() -> serde_json::Value {
    json!({"_id": "", "shortDesc": "OpenIDM ready", "state": "ACTIVE_READY"})
}

#[test]
fn probes_answer_without_credentials() {
    let server = TestServer::start();
    for path in [
        "/health/live",
        "/health/ready",
        "/openidm/health/live",
        "/openidm/health/ready",
    ] {
        let reply = server.nobody().get(path).send();
        assert_eq!((reply.status, &reply.body), (200, &json!({})), "{path}: {}", reply.text);
        assert_eq!(
            reply.header("content-type"),
            Some("application/json;charset=UTF-8"),
            "{path}"
        );
    }
    for path in ["/openidm/health", "/openidm/info/ping"] {
        let reply = server.nobody().get(path).send();
        assert_eq!(
            (reply.status, &reply.body),
            (200, &ready_state()),
            "{path}: {}",
            reply.text
        );
    }
    // Only GET is a probe: other methods go through the pipeline like any request.
    server
        .nobody()
        .post_empty("/openidm/health/ready")
        .send()
        .assert_error(401);
    let message = server
        .admin()
        .post_empty("/openidm/health/ready")
        .send()
        .assert_error(404);
    assert_eq!(message, "Resource &#39;health/ready&#39; not found");
    // Scripts and other internal callers reach the same endpoints through the router.
    let reply = server.admin().get("/openidm/health/ready?_prettyPrint=true").send();
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// A TCP proxy in front of PostgreSQL that can be cut (every connection closed, new ones
/// refused at once) and restored.
struct DbProxy {
    port: u16,
    open: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<TcpStream>>>,
}

impl DbProxy {
    fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let open = Arc::new(AtomicBool::new(true));
        let stopped = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (accept_open, accept_stopped, accept_links) = (open.clone(), stopped.clone(), links.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accept_stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if !accept_open.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut held = accept_links.lock().unwrap_or_else(PoisonError::into_inner);
                for stream in [&client, &server] {
                    if let Ok(clone) = stream.try_clone() {
                        held.push(clone);
                    }
                }
                drop(held);
                pipe(client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                pipe(server, client);
            }
        });
        Self {
            port,
            open,
            stopped,
            links,
        }
    }

    /// Closes every proxied connection and refuses new ones.
    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for stream in self.links.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Accepts connections again.
    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies bytes from `from` to `to` on a thread of its own until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buffer = [0_u8; 16 * 1024];
        while let Ok(read) = from.read(&mut buffer) {
            if read == 0 || to.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// The URL with its host and port replaced by the proxy's, and the host and port it named.
fn through_proxy(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (format!("{user}@"), host_port),
        None => (String::new(), authority),
    };
    let upstream = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    (format!("{scheme}://{user}127.0.0.1:{port}{tail}"), upstream)
}

#[test]
fn readiness_follows_the_database_and_liveness_does_not() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let (_, upstream) = through_proxy(database.url(), 0);
    let proxy = DbProxy::start(upstream);
    let (url, _) = through_proxy(database.url(), proxy.port);
    let server = TestServer::builder().on_database(&url).start();
    let probe = |path: &str| server.nobody().get(path).send();
    let wait = Duration::from_secs(60);

    assert_eq!(probe("/health/ready").status, 200);
    assert_eq!(probe("/openidm/info/ping").body, ready_state());

    proxy.cut();
    server.wait_until(wait, "readiness to fail while the database is cut off", || {
        probe("/health/ready").status == 503
    });
    let ready = probe("/openidm/health/ready");
    ready.assert_error(503);
    assert_eq!(
        ready.body["detail"],
        json!({
            "shortDesc": "OpenIDM not ready: the database is unreachable",
            "state": "ACTIVE_NOT_READY",
            "database": false,
            "generation": 1,
        }),
        "{}",
        ready.text
    );
    for path in ["/health/live", "/openidm/health/live"] {
        let live = probe(path);
        assert_eq!(
            (live.status, &live.body),
            (200, &json!({})),
            "{path} while the database is down"
        );
    }
    let ping = probe("/openidm/info/ping");
    assert_eq!(
        (ping.status, &ping.body),
        (
            200,
            &json!({"_id": "", "shortDesc": "OpenIDM not ready: the database is unreachable", "state": "ACTIVE_NOT_READY"})
        ),
        "IDM's state reports the database"
    );

    proxy.restore();
    server.wait_until(wait, "readiness once the database is back", || {
        probe("/health/ready").status == 200
    });
    assert_eq!(probe("/openidm/health").body, ready_state());
    assert_eq!(probe("/health/live").status, 200);
    let user = server.create_user(&ferridm_tests::unique("back"), None);
    assert!(user["_id"].is_string(), "the server serves again: {user}");
}
