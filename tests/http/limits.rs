//! Resource limits at the edge (issue 20, point 4), over real sockets: the request-head bounds
//! of `ferridm.json` → `http` (request line, head size, header count) are refused with IDM's
//! error body and the connection closed; slow clients are closed after the head timeout and
//! never starve real ones; connections beyond the per-worker cap wait to be accepted. (The time
//! limit of queries is in `query_budget.rs`, on both backends.)

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferridm_tests::TestServer;
use serde_json::{Value, json};

use crate::crud::assert_alive;

/// Cheap hashing plus the given `http` settings.
fn settings(http: &Value) -> String {
    json!({
        "passwordHashing": {"memoryKib": 256, "iterations": 1, "parallelism": 1},
        "http": http
    })
    .to_string()
}

fn address(server: &TestServer) -> String {
    server.base().trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (a reset after the close counts as closed),
/// failing after `bound`; returns what arrived.
fn read_to_close(stream: &mut TcpStream, bound: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(bound)).unwrap();
    let mut received = Vec::new();
    let mut chunk = [0; 8 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return received,
            Ok(read) => received.extend_from_slice(&chunk[..read]),
            Err(error) if matches!(error.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                return received;
            }
            Err(error) => panic!("the server did not close the connection within {bound:?}: {error}"),
        }
    }
}

/// Sends `request` on a new connection and reads until the server closes it: status line,
/// lower-cased headers and body of the only response.
fn exchange(server: &TestServer, request: &[u8]) -> (u16, Vec<(String, String)>, Value) {
    let mut stream = TcpStream::connect(address(server)).unwrap();
    // The server may answer and close before reading everything: a failed write is fine.
    let _ = stream.write_all(request);
    let received = read_to_close(&mut stream, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let body = serde_json::from_str(body).unwrap_or_else(|error| panic!("not JSON ({error}): {text:?}"));
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(known, _)| known == name)
        .map(|(_, value)| value.as_str())
}

/// The configured bounds, not the built-in ones, decide: a request line, a head or a header
/// count just over them is refused (414, 431, 431) with IDM's body and `Connection: close`, and
/// a request right at them — and the next one — is served.
#[test]
fn request_heads_are_held_to_the_configured_bounds() {
    let server = TestServer::builder()
        .conf_file(
            "ferridm.json",
            &settings(&json!({"maxRequestLineBytes": 1024, "maxHeaderBytes": 4096, "maxHeaders": 20})),
        )
        .start();
    // `GET <target> HTTP/1.1\r\n` is the target plus 15 bytes.
    let target = |length: usize| format!("/openidm/info/ping?x={}", "a".repeat(length - 21));
    let headers = |count: usize| -> String { (1..count).map(|index| format!("X-H{index}: v\r\n")).collect() };
    let filler = |length: usize| format!("X-Fill: {}\r\n", "b".repeat(length - 10));
    for (request, status, message) in [
        (
            format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", target(1024 - 15 + 1)),
            414,
            "The request line is too long: it may have at most 1024 bytes",
        ),
        (
            format!("GET /openidm/info/ping HTTP/1.1\r\nHost: x\r\n{}\r\n", filler(4096)),
            431,
            "The request headers are too large: the request head may have at most 4096 bytes",
        ),
        (
            format!("GET /openidm/info/ping HTTP/1.1\r\nHost: x\r\n{}\r\n", headers(21)),
            431,
            "The request headers are too large: a request may have at most 20 headers",
        ),
    ] {
        let what = &request[..40];
        let (got, response_headers, body) = exchange(&server, request.as_bytes());
        assert_eq!(got, status, "{what}: {body}");
        let reason = if status == 414 {
            "Request-URI Too Large"
        } else {
            "Request Header Fields Too Large"
        };
        assert_eq!(
            body,
            json!({"code": status, "reason": reason, "message": message}),
            "{what}"
        );
        assert_eq!(header(&response_headers, "connection"), Some("close"), "{what}");
        assert_alive(&server);
    }
    // Right at the bounds: served.
    let (status, _, body) = exchange(
        &server,
        format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n",
            target(1024 - 15),
            headers(19)
        )
        .as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "ACTIVE_READY");
    let head = "GET /openidm/info/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
    let (status, _, body) = exchange(
        &server,
        format!("{head}{}\r\n", filler(4096 - head.len() - 2)).as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
}

/// How a slow client misbehaves.
#[derive(Debug, Clone, Copy)]
enum Slow {
    /// Connects and sends nothing.
    Silent,
    /// Sends its request line a byte at a time.
    TrickledLine,
    /// Sends a whole request line, then headers a byte at a time, never the empty line.
    TrickledHeaders,
    /// Sends one whole request and reads its answer, then half of a second one.
    HalfSecondRequest,
}

impl Slow {
    const ALL: [Self; 4] = [
        Self::Silent,
        Self::TrickledLine,
        Self::TrickledHeaders,
        Self::HalfSecondRequest,
    ];

    /// What it sends at once, and what it then trickles.
    fn script(self) -> (&'static str, &'static str) {
        match self {
            Self::Silent => ("", ""),
            Self::TrickledLine => ("", "GET /openidm/info/ping HTTP/1.1\r\nHost: x\r\n"),
            Self::TrickledHeaders => (
                "GET /openidm/info/ping HTTP/1.1\r\n",
                "Host: x\r\nX-Slow-1: a\r\nX-Slow-2: b\r\nX-Slow-3: c\r\nX-Slow-4: d\r\n",
            ),
            Self::HalfSecondRequest => (
                "GET /openidm/info/ping HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /openidm/info/ping HTTP/1.1\r\nHo",
            ),
        }
    }
}

/// The head timeout and keep-alive of these tests.
const SLOW_TIMEOUT: Duration = Duration::from_millis(1_500);

/// Slowloris: three dozen connections that send nothing, or their heads a byte at a time, or
/// half of a second request, do not starve a real client — a ping answers within a second
/// while they all still hang — and the server closes every one of them once the head timeout
/// (or, between requests, the keep-alive) runs out, whatever they keep trickling.
#[test]
fn slow_clients_do_not_starve_real_ones_and_are_closed_after_the_head_timeout() {
    let millis = u64::try_from(SLOW_TIMEOUT.as_millis()).unwrap();
    let server = TestServer::builder()
        .conf_file(
            "ferridm.json",
            &settings(&json!({"requestHeadTimeoutMillis": millis, "keepAliveMillis": millis})),
        )
        .start();
    let address = address(&server);
    let opened = Instant::now();
    let mut slow: Vec<(Slow, TcpStream, &'static [u8])> = Vec::new();
    for index in 0..36 {
        let kind = Slow::ALL[index % Slow::ALL.len()];
        let mut stream = TcpStream::connect(&address).unwrap();
        let (at_once, trickled) = kind.script();
        stream.write_all(at_once.as_bytes()).unwrap();
        if let Slow::HalfSecondRequest = kind {
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut answer = [0; 4096];
            let read = stream.read(&mut answer).unwrap();
            assert!(
                answer[..read].starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&answer[..read])
            );
        }
        slow.push((kind, stream, trickled.as_bytes()));
    }
    // One byte for each trickling connection, then the real client, then another byte each.
    let mut sent = 0;
    let mut trickle = |slow: &mut Vec<(Slow, TcpStream, &'static [u8])>| {
        for (_, stream, trickled) in slow.iter_mut() {
            if let Some(byte) = trickled.get(sent) {
                stream.write_all(&[*byte]).unwrap();
            }
        }
        sent += 1;
    };
    trickle(&mut slow);
    let started = Instant::now();
    let ping = server.nobody().get("/openidm/info/ping").send();
    let took = started.elapsed();
    assert_eq!(ping.status, 200, "{}", ping.text);
    assert_eq!(ping.body["state"], "ACTIVE_READY");
    assert!(
        took < Duration::from_secs(1),
        "the ping took {took:?} behind the slow clients"
    );
    trickle(&mut slow);
    // They were all still hanging while the ping was served.
    assert!(
        opened.elapsed() < SLOW_TIMEOUT,
        "the test was too slow to show anything"
    );
    for (kind, stream, _) in &mut slow {
        stream.set_nonblocking(true).unwrap();
        let mut byte = [0; 1];
        let error = stream.read(&mut byte).map(|read| read.to_string()).unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::WouldBlock,
            "{kind:?} was answered or closed early"
        );
        stream.set_nonblocking(false).unwrap();
    }
    // Then the server closes every one within the timeout (plus slack), never much later.
    for (kind, stream, _) in &mut slow {
        let left = (opened + SLOW_TIMEOUT + Duration::from_secs(2)).saturating_duration_since(Instant::now());
        let received = read_to_close(stream, left.max(Duration::from_millis(1)));
        let text = String::from_utf8_lossy(&received);
        match kind {
            Slow::HalfSecondRequest => assert!(text.is_empty(), "{kind:?}: {text:?}"),
            _ => assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 408"),
                "{kind:?}: {text:?}"
            ),
        }
    }
    assert!(
        opened.elapsed() >= SLOW_TIMEOUT.saturating_sub(Duration::from_millis(100)),
        "closed before the timeout: {:?}",
        opened.elapsed()
    );
    assert_alive(&server);
}

/// `maxConnections` is per worker (the test servers run two): with every slot held by an idle
/// kept-alive connection, a new client waits to be accepted until the keep-alive closes one,
/// and is then served.
#[test]
fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let millis = u64::try_from(SLOW_TIMEOUT.as_millis()).unwrap();
    let server = TestServer::builder()
        .conf_file(
            "ferridm.json",
            &settings(&json!({"maxConnections": 2, "keepAliveMillis": millis})),
        )
        .start();
    let address = address(&server);
    let opened = Instant::now();
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = TcpStream::connect(&address).unwrap();
            stream
                .write_all(b"GET /openidm/info/ping HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut answer = [0; 4096];
            let read = stream.read(&mut answer).unwrap();
            assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
            stream
        })
        .collect();
    let ping = server.nobody().get("/openidm/info/ping").send();
    assert_eq!(ping.status, 200, "{}", ping.text);
    let waited = opened.elapsed();
    assert!(
        waited >= SLOW_TIMEOUT.saturating_sub(Duration::from_millis(100)),
        "served after {waited:?}, before a slot was free"
    );
    assert!(
        waited < SLOW_TIMEOUT + Duration::from_secs(3),
        "served after {waited:?}"
    );
    for stream in &mut held {
        assert!(read_to_close(stream, Duration::from_secs(5)).is_empty());
    }
}
