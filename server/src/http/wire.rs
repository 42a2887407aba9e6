//! Tolerant HTTP/1 request lines.
//!
//! actix-http hands every request-target to the `http` 0.2 crate, whose URI parser
//! (`PathAndQuery::from_shared`) rejects some bytes that real clients send unencoded: `"`, `<` and
//! `>` in the query (`?_queryFilter=userName+eq+"scarter"`, as typed into curl), spaces, control
//! bytes and raw UTF-8 anywhere in the target. actix answers such requests with an empty
//! `400 Bad Request` before any of our code runs, while PingIDM (Jetty) accepts them.
//!
//! [`RequestLineSanitizer`] fixes this at the transport: it wraps the accepted connection and
//! percent-encodes exactly those bytes in each request line's target ([`sanitize_target`]) before
//! actix-http parses it, so `"` arrives as `%22` and `é` as `%C3%A9`. Decoding the query gives back
//! the bytes the client sent, which is how IDM reads them too.
//!
//! To touch request lines only, the wrapper follows the HTTP/1 framing of the inbound bytes
//! (request line, header lines, a `Content-Length` or chunked body, then the next pipelined
//! request) the way actix-http does. Header lines and bodies pass through unchanged. Whenever the
//! framing is not understood (a line over 64 KiB, a malformed `Content-Length` or chunk size,
//! something that is not an HTTP/1 request line, a WebSocket upgrade or `CONNECT`), the wrapper
//! stops interpreting and passes everything through for the rest of the connection, leaving the
//! verdict to actix-http. The response direction is never touched.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest line (including its line ending) the wrapper buffers before giving up and passing the
/// rest of the connection through.
const MAX_LINE_LEN: usize = 64 * 1024;

/// Size of the buffer used to read from the wrapped stream.
const READ_BUF_LEN: usize = 8 * 1024;

/// Wraps an inbound HTTP/1.x byte stream and rewrites each request line's request-target so that
/// every byte the `http` crate would reject is percent-encoded (`"` → `%22`, raw UTF-8 → `%C3%A9`, …).
/// Everything else (headers, bodies, the response direction) passes through unchanged.
///
/// Request lines and header lines are held back until their line ending has arrived (actix-http
/// cannot parse a request head before that anyway); body bytes are handed on as soon as they are
/// read.
pub struct RequestLineSanitizer<S> {
    inner: S,
    framer: Framer,
    read_buf: Box<[u8]>,
    eof: bool,
}

impl<S> RequestLineSanitizer<S> {
    /// Wraps `inner`, which must be positioned at the start of an HTTP/1 request.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            framer: Framer::default(),
            read_buf: vec![0; READ_BUF_LEN].into_boxed_slice(),
            eof: false,
        }
    }

    /// The wrapped stream (for example to ask a TCP stream for its peer address).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for RequestLineSanitizer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestLineSanitizer")
            .field("inner", &self.inner)
            .field("state", &self.framer.state)
            .field("buffered_line", &self.framer.line.len())
            .field("pending_output", &self.framer.pending().len())
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RequestLineSanitizer<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.framer.drain_into(buf) || this.eof {
                return Poll::Ready(Ok(()));
            }
            match this.framer.direct_read() {
                // Nothing more to interpret on this connection: let the inner stream fill the
                // caller's buffer itself.
                Direct::Everything => return Pin::new(&mut this.inner).poll_read(cx, buf),
                // Body bytes: read them straight into the caller's buffer, never past the body's
                // end (what follows is the next request line).
                Direct::UpTo(limit) => {
                    let len = clamp_len(limit, buf.remaining());
                    let mut direct = ReadBuf::new(buf.initialize_unfilled_to(len));
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut direct))?;
                    let read = direct.filled().len();
                    if read == 0 {
                        this.eof = true;
                        this.framer.finish();
                    } else {
                        buf.advance(read);
                        this.framer.consumed_body(read);
                        return Poll::Ready(Ok(()));
                    }
                }
                Direct::Nothing => {
                    let mut read_buf = ReadBuf::new(&mut this.read_buf);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read_buf))?;
                    let input = read_buf.filled();
                    if input.is_empty() {
                        this.eof = true;
                        this.framer.finish();
                    } else {
                        this.framer.feed(input);
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RequestLineSanitizer<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The request-target rewriting itself (pure function, unit-tested): returns the target with
/// disallowed bytes encoded.
///
/// The rules are those of `PathAndQuery::from_shared` in `http` 0.2: in the path (up to the first
/// `?`) the bytes `!`, `$`–`;`, `=`, `@`–`_`, `a`–`z`, `|`, `~`, `"`, `{` and `}` are kept; in the
/// query `!`, `$`–`;`, `=` and `?`–`~` are kept; every other byte becomes `%XX` (upper-case hex).
/// `%` is always kept, so existing escapes survive. A `#` and everything after it (a fragment,
/// which `http` drops without checking) is left as it is. Absolute-form targets
/// (`http://host/path?query`) and `*` come out unchanged apart from such bytes, since scheme and
/// authority consist of bytes the path allows.
#[must_use]
pub fn sanitize_target(target: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(target.len());
    sanitize_target_into(target, &mut out);
    out
}

fn sanitize_target_into(target: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut in_query = false;
    for (index, &byte) in target.iter().enumerate() {
        if byte == b'#' {
            out.extend_from_slice(&target[index..]);
            return;
        }
        in_query |= byte == b'?';
        let allowed = if in_query {
            is_query_byte(byte)
        } else {
            is_path_byte(byte)
        };
        if allowed {
            out.push(byte);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0x0F)]]);
        }
    }
}

/// Bytes `http` 0.2 accepts unencoded in a path.
fn is_path_byte(byte: u8) -> bool {
    matches!(byte, 0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E | b'"' | b'{' | b'}')
}

/// Bytes `http` 0.2 accepts unencoded in a query.
fn is_query_byte(byte: u8) -> bool {
    matches!(byte, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E)
}

/// Where the next inbound byte stands in the HTTP/1 framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Expecting a request line (empty lines before it are passed on).
    #[default]
    RequestLine,
    /// Inside the header lines of a request.
    Headers(Head),
    /// Inside a `Content-Length` body.
    Body { remaining: u64 },
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside the data of one chunk.
    ChunkData { remaining: u64 },
    /// Expecting the empty line that ends a chunk's data.
    ChunkDataEnd,
    /// Inside the trailer section after the last chunk.
    Trailers,
    /// Framing not understood (or not HTTP/1 any more): everything passes through unchanged.
    PassThrough,
}

/// What the headers of the current request say about its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Head {
    content_length: Option<u64>,
    chunked: bool,
    websocket: bool,
    connect: bool,
}

impl Head {
    /// Takes note of one header line; `false` when the line makes the framing uncertain.
    fn record(&mut self, line: &[u8]) -> bool {
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            return false;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            // actix-http rejects repeated Content-Length headers as well as `+`, signs and spaces.
            if self.content_length.is_some() {
                return false;
            }
            self.content_length = parse_decimal(value);
            self.content_length.is_some()
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(|&byte| byte == b',').next().map_or(value, trim);
            self.chunked = last.eq_ignore_ascii_case(b"chunked");
            true
        } else {
            if name.eq_ignore_ascii_case(b"upgrade") && value.eq_ignore_ascii_case(b"websocket") {
                self.websocket = true;
            }
            true
        }
    }

    /// Where the framing goes once the head is complete (mirrors actix-http's decoder).
    fn next_state(self) -> State {
        match self.content_length {
            _ if self.chunked => State::ChunkSize,
            // Upgraded and tunnelled connections carry something else than HTTP/1 requests.
            _ if self.websocket => State::PassThrough,
            Some(remaining @ 1..) => State::Body { remaining },
            _ if self.connect => State::PassThrough,
            _ => State::RequestLine,
        }
    }
}

/// How many inbound bytes [`Framer::direct_read`] lets bypass the framer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direct {
    /// None: pending output comes first, or the next bytes must be interpreted.
    Nothing,
    /// At most this many (the rest of a body or chunk).
    UpTo(u64),
    /// All of them (passing through).
    Everything,
}

/// The framing state machine plus its buffers: the line being assembled and the output that has
/// not been handed to the reader yet.
#[derive(Debug, Default)]
struct Framer {
    state: State,
    line: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
}

impl Framer {
    /// Output that has not been handed on yet.
    fn pending(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// Copies as much pending output as fits into `buf`; `true` if anything was copied.
    fn drain_into(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let pending = self.pending();
        if pending.is_empty() {
            return false;
        }
        let len = pending.len().min(buf.remaining());
        buf.put_slice(&pending[..len]);
        self.out_pos += len;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        true
    }

    /// Whether inbound bytes may go straight to the reader without being looked at.
    fn direct_read(&self) -> Direct {
        if !self.pending().is_empty() {
            return Direct::Nothing;
        }
        match self.state {
            State::PassThrough => Direct::Everything,
            State::Body { remaining } | State::ChunkData { remaining } => Direct::UpTo(remaining),
            _ => Direct::Nothing,
        }
    }

    /// Accounts for `len` body or chunk-data bytes that have been handed on.
    fn consumed_body(&mut self, len: usize) {
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        self.state = match self.state {
            State::Body { remaining } if remaining > len => State::Body {
                remaining: remaining - len,
            },
            State::Body { .. } => State::RequestLine,
            State::ChunkData { remaining } if remaining > len => State::ChunkData {
                remaining: remaining - len,
            },
            State::ChunkData { .. } => State::ChunkDataEnd,
            other => other,
        };
    }

    /// Processes inbound bytes into pending output.
    fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            match self.state {
                State::PassThrough => {
                    self.out.extend_from_slice(input);
                    return;
                }
                State::Body { remaining } | State::ChunkData { remaining } => {
                    let len = clamp_len(remaining, input.len());
                    self.out.extend_from_slice(&input[..len]);
                    self.consumed_body(len);
                    input = &input[len..];
                }
                _ => {
                    let (part, complete) = match input.iter().position(|&byte| byte == b'\n') {
                        Some(end) => (&input[..=end], true),
                        None => (input, false),
                    };
                    input = &input[part.len()..];
                    self.line.extend_from_slice(part);
                    if self.line.len() > MAX_LINE_LEN {
                        self.out.append(&mut self.line);
                        self.state = State::PassThrough;
                    } else if complete {
                        self.end_line();
                    }
                }
            }
        }
    }

    /// At end of input: hands on a partial line unchanged.
    fn finish(&mut self) {
        self.out.append(&mut self.line);
    }

    /// Handles the complete line in `self.line` (line ending included).
    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let content = strip_line_ending(&line);
        let rewritten = match self.state {
            State::RequestLine if !content.is_empty() => split_request_line(content),
            _ => None,
        };
        if let Some((method, target, version)) = rewritten {
            self.out.extend_from_slice(method);
            self.out.push(b' ');
            sanitize_target_into(target, &mut self.out);
            self.out.push(b' ');
            self.out.extend_from_slice(version);
            self.out.extend_from_slice(&line[content.len()..]);
        } else {
            self.out.extend_from_slice(&line);
        }
        self.state = match self.state {
            State::RequestLine if content.is_empty() => State::RequestLine,
            State::RequestLine => match rewritten {
                Some((method, ..)) => State::Headers(Head {
                    connect: method == b"CONNECT",
                    ..Head::default()
                }),
                // Not an HTTP/1 request (garbage, or the HTTP/2 preface): actix-http decides.
                None => State::PassThrough,
            },
            State::Headers(head) if content.is_empty() => head.next_state(),
            State::Headers(mut head) => {
                if head.record(content) {
                    State::Headers(head)
                } else {
                    State::PassThrough
                }
            }
            State::ChunkSize => match parse_chunk_size(content) {
                Some(0) => State::Trailers,
                Some(remaining) => State::ChunkData { remaining },
                None => State::PassThrough,
            },
            State::ChunkDataEnd if content.is_empty() => State::ChunkSize,
            State::Trailers if content.is_empty() => State::RequestLine,
            State::Trailers => State::Trailers,
            State::ChunkDataEnd | State::Body { .. } | State::ChunkData { .. } | State::PassThrough => {
                State::PassThrough
            }
        };
        // Keep the allocation for the next line.
        self.line = line;
        self.line.clear();
    }
}

/// Splits `METHOD SP TARGET SP VERSION` at the first and the last space; `None` unless the method
/// is a token and the version is `HTTP/1.x`.
fn split_request_line(line: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let first = line.iter().position(|&byte| byte == b' ')?;
    let last = line.iter().rposition(|&byte| byte == b' ')?;
    if last <= first + 1 {
        return None;
    }
    let (method, target, version) = (&line[..first], &line[first + 1..last], &line[last + 1..]);
    let is_method = !method.is_empty() && method.iter().all(|&byte| is_token_byte(byte));
    let is_http1 = matches!(version, [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit());
    (is_method && is_http1).then_some((method, target, version))
}

/// RFC 9110 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// The size on a chunk-size line (hexadecimal, extensions after `;` ignored).
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let size = line.split(|&byte| byte == b';').next().map_or(line, trim);
    if size.is_empty() {
        return None;
    }
    size.iter().try_fold(0_u64, |total, &byte| {
        let digit = char::from(byte).to_digit(16)?;
        total.checked_mul(16)?.checked_add(u64::from(digit))
    })
}

/// A `Content-Length` value: decimal digits only.
fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0_u64, |total, &byte| {
        let digit = char::from(byte).to_digit(10)?;
        total.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// `line` without its trailing `\n` or `\r\n`.
fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `bytes` without leading and trailing spaces and tabs.
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&byte| byte != b' ' && byte != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&byte| byte != b' ' && byte != b'\t')
        .map_or(start, |end| end + 1);
    &bytes[start..end]
}

/// `remaining` as a length, at most `available`.
fn clamp_len(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |remaining| remaining.min(available))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::future::poll_fn;
    use std::task::Waker;

    use actix_web::http::Uri;
    use percent_encoding::percent_decode;

    use super::*;

    fn sanitized_str(target: &str) -> String {
        String::from_utf8(sanitize_target(target.as_bytes())).unwrap()
    }

    #[test]
    fn encodes_raw_quotes_in_the_query() {
        assert_eq!(
            sanitized_str(r#"/openidm/managed/user?_queryFilter=userName+eq+"scarter""#),
            "/openidm/managed/user?_queryFilter=userName+eq+%22scarter%22"
        );
    }

    #[test]
    fn encodes_angle_brackets_spaces_and_controls() {
        assert_eq!(sanitized_str("/a<b>?q=<x> y"), "/a%3Cb%3E?q=%3Cx%3E%20y");
        assert_eq!(sanitize_target(b"/a\x00\x7F?b=\x01\x7F"), b"/a%00%7F?b=%01%7F");
    }

    #[test]
    fn encodes_raw_utf8_in_path_and_query() {
        assert_eq!(sanitized_str("/managed/user/Zoë?_queryFilter=sn eq \"Müller\""), {
            "/managed/user/Zo%C3%AB?_queryFilter=sn%20eq%20%22M%C3%BCller%22"
        });
    }

    #[test]
    fn leaves_existing_escapes_and_allowed_bytes_alone() {
        let targets = [
            "/openidm/managed/user?_queryFilter=userName+eq+%22scarter%22",
            "/a/{json}/\"quoted\"/[x]^|~!$&'()*+,;=:@?q={a}|[b]^`~?/\\",
            "/50%?q=100%",
            "*",
            "/",
        ];
        for target in targets {
            assert_eq!(sanitized_str(target), target);
        }
    }

    #[test]
    fn encodes_the_bytes_only_the_path_rejects() {
        assert_eq!(sanitized_str("/a`b\\c?d`e\\f"), "/a%60b\\c?d`e\\f");
    }

    #[test]
    fn leaves_the_fragment_untouched() {
        assert_eq!(
            sanitized_str("/a\"?b=\"c\"#frag \"é\"?x"),
            "/a\"?b=%22c%22#frag \"é\"?x"
        );
        assert_eq!(sanitized_str("/a é#é"), "/a%20%C3%A9#é");
    }

    #[test]
    fn keeps_absolute_form_targets_intact() {
        assert_eq!(
            sanitized_str("http://user@[::1]:8080/a b?q=\"x\""),
            "http://user@[::1]:8080/a%20b?q=%22x%22"
        );
    }

    /// The `http` crate itself is the oracle: every byte in path and query position comes out
    /// parseable, unchanged whenever it was already accepted, and decodes back to the original.
    #[test]
    fn every_byte_is_accepted_by_the_http_crate_after_sanitizing() {
        for byte in 0..=u8::MAX {
            let in_path = [b"/p".as_slice(), &[byte], b"x"].concat();
            let in_query = [b"/p?q=".as_slice(), &[byte], b"x"].concat();
            for target in [in_path, in_query] {
                let sanitized = sanitize_target(&target);
                assert!(
                    Uri::try_from(sanitized.as_slice()).is_ok(),
                    "{target:?} -> {sanitized:?}"
                );
                assert_eq!(percent_decode(&sanitized).collect::<Vec<u8>>(), target);
                assert_eq!(
                    Uri::try_from(target.as_slice()).is_ok(),
                    sanitized == target,
                    "{target:?}"
                );
            }
        }
    }

    /// How the test reader ends once its data is exhausted.
    #[derive(Clone, Copy)]
    enum End {
        Eof,
        Error,
        /// `Pending` without registering the waker: only for polling by hand.
        Stall,
    }

    /// An in-memory reader handing out its data in pseudo-random pieces of 1 to `max_piece` bytes,
    /// optionally answering `Pending` (after waking the task) before every piece.
    struct PieceReader {
        data: Vec<u8>,
        position: usize,
        rng: u64,
        max_piece: usize,
        pending_between: bool,
        pending_now: bool,
        end: End,
    }

    impl PieceReader {
        fn new(data: &[u8], max_piece: usize, pending_between: bool, seed: u64) -> Self {
            Self {
                data: data.to_vec(),
                position: 0,
                rng: seed | 1,
                max_piece,
                pending_between,
                pending_now: false,
                end: End::Eof,
            }
        }
    }

    fn next_random(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn random_len(state: &mut u64, max: usize) -> usize {
        1 + usize::try_from(next_random(state) % u64::try_from(max).unwrap()).unwrap()
    }

    impl AsyncRead for PieceReader {
        fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.pending_between {
                this.pending_now = !this.pending_now;
                if this.pending_now {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            let rest = &this.data[this.position..];
            if rest.is_empty() {
                return match this.end {
                    End::Eof => Poll::Ready(Ok(())),
                    End::Error => Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))),
                    End::Stall => Poll::Pending,
                };
            }
            let len = random_len(&mut this.rng, this.max_piece)
                .min(rest.len())
                .min(buf.remaining());
            buf.put_slice(&rest[..len]);
            this.position += len;
            Poll::Ready(Ok(()))
        }
    }

    /// A reader handing out exactly the given pieces.
    struct SplitReader(VecDeque<Vec<u8>>);

    impl AsyncRead for SplitReader {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            if let Some(piece) = self.get_mut().0.pop_front() {
                assert!(piece.len() <= buf.remaining());
                buf.put_slice(&piece);
            }
            Poll::Ready(Ok(()))
        }
    }

    /// Reads `reader` to its end through caller buffers of 1 to `max_read` bytes.
    async fn read_all(reader: &mut (impl AsyncRead + Unpin), max_read: usize, seed: u64) -> io::Result<Vec<u8>> {
        let mut rng = seed | 1;
        let mut all = Vec::new();
        let mut chunk = vec![0; max_read];
        loop {
            let len = random_len(&mut rng, max_read);
            let read = poll_fn(|cx| {
                let mut buf = ReadBuf::new(&mut chunk[..len]);
                ready!(Pin::new(&mut *reader).poll_read(cx, &mut buf))?;
                Poll::Ready(Ok::<_, io::Error>(buf.filled().len()))
            })
            .await?;
            if read == 0 {
                return Ok(all);
            }
            all.extend_from_slice(&chunk[..read]);
        }
    }

    /// Runs `input` through the sanitizer with many different read patterns (one byte at a time,
    /// small random pieces with and without `Pending`, everything at once) and checks that all
    /// of them produce `expected`.
    async fn assert_sanitizes(input: &[u8], expected: &[u8]) {
        let patterns = [
            (1, false, 1),
            (1, true, 4096),
            (3, false, 2),
            (17, true, 5),
            (64, false, 70_000),
        ];
        for (max_piece, pending_between, max_read) in patterns {
            for seed in [1, 0x9E37_79B9_7F4A_7C15, 42] {
                let reader = PieceReader::new(input, max_piece, pending_between, seed);
                let mut sanitizer = RequestLineSanitizer::new(reader);
                let output = read_all(&mut sanitizer, max_read, seed ^ 0xABCD).await.unwrap();
                assert!(
                    output == expected,
                    "pieces of up to {max_piece}, reads of up to {max_read}:\n{}\n!=\n{}",
                    String::from_utf8_lossy(&output),
                    String::from_utf8_lossy(expected)
                );
            }
        }
        let mut whole = RequestLineSanitizer::new(PieceReader::new(input, 1 << 20, false, 7));
        assert_eq!(read_all(&mut whole, 1 << 20, 7).await.unwrap(), expected);
    }

    async fn assert_unchanged(input: &[u8]) {
        assert_sanitizes(input, input).await;
    }

    #[tokio::test]
    async fn pipelined_requests_with_a_body_that_looks_like_a_request() {
        let body = b"GET /x?q=\"y\" HTTP/1.1\r\nHost: \"h\"\r\n\r\n";
        let first = format!(
            "POST /openidm/managed/user?_action=create&note=\"a\" HTTP/1.1\r\nHost: localhost\r\n\
             content-length:  {} \r\n\r\n",
            body.len()
        );
        let second =
            "GET /openidm/managed/user?_queryFilter=userName+eq+\"scarter\" HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let input = [first.as_bytes(), body, b"\r\n", second.as_bytes()].concat();
        let expected = [
            first.replace("note=\"a\"", "note=%22a%22").as_bytes(),
            body,
            b"\r\n",
            second.replace("\"scarter\"", "%22scarter%22").as_bytes(),
        ]
        .concat();
        assert_sanitizes(&input, &expected).await;
    }

    #[tokio::test]
    async fn chunked_bodies_and_trailers_are_untouched() {
        let data = b"GET /\"x\" HTTP/1.1\r\nabc\"\xC3\xA9\n";
        let input = [
            b"PUT /openidm/managed/user/1?q=\"v\" HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
                .as_slice(),
            format!("{:X};ext=\"v\"\r\n", data.len()).as_bytes(),
            data,
            b"\r\n5\r\n\"\"\"\"\"\r\n0\r\nX-Trailer: \"t\"\r\n\r\n",
            b"GET /a?b=\"c\" HTTP/1.1\r\nHost: h\r\n\r\n",
        ]
        .concat();
        let expected = [
            b"PUT /openidm/managed/user/1?q=%22v%22 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
                .as_slice(),
            format!("{:X};ext=\"v\"\r\n", data.len()).as_bytes(),
            data,
            b"\r\n5\r\n\"\"\"\"\"\r\n0\r\nX-Trailer: \"t\"\r\n\r\n",
            b"GET /a?b=%22c%22 HTTP/1.1\r\nHost: h\r\n\r\n",
        ]
        .concat();
        assert_sanitizes(&input, &expected).await;
    }

    #[tokio::test]
    async fn headers_are_untouched() {
        let input = "GET /openidm/managed/user/Zoë?_fields=\"cn\" HTTP/1.1\r\nHost: h\r\nIf-Match: \"abc\"\r\n\
                     X-Name: Zoë \"q\" <x>\r\n\r\n";
        let expected = "GET /openidm/managed/user/Zo%C3%AB?_fields=%22cn%22 HTTP/1.1\r\nHost: h\r\nIf-Match: \"abc\"\r\n\
                        X-Name: Zoë \"q\" <x>\r\n\r\n";
        assert_sanitizes(input.as_bytes(), expected.as_bytes()).await;
    }

    #[tokio::test]
    async fn request_line_split_at_every_position() {
        let input = "GET /a?q=\"é\" HTTP/1.1\r\nHost: h\r\n\r\n";
        let expected = b"GET /a?q=%22%C3%A9%22 HTTP/1.1\r\nHost: h\r\n\r\n";
        for split in 1..input.len() {
            let (head, tail) = input.as_bytes().split_at(split);
            let reader = SplitReader(VecDeque::from([head.to_vec(), tail.to_vec()]));
            let mut sanitizer = RequestLineSanitizer::new(reader);
            assert_eq!(
                read_all(&mut sanitizer, 4096, 3).await.unwrap(),
                expected,
                "split at {split}"
            );
        }
    }

    #[tokio::test]
    async fn zero_length_bodies_and_bare_line_feeds() {
        let input = "POST /a?b=\"c\" HTTP/1.1\nHost: h\nContent-Length: 0\n\nGET /d?e=<f> HTTP/1.0\n\n";
        let expected = "POST /a?b=%22c%22 HTTP/1.1\nHost: h\nContent-Length: 0\n\nGET /d?e=%3Cf%3E HTTP/1.0\n\n";
        assert_sanitizes(input.as_bytes(), expected.as_bytes()).await;
    }

    #[tokio::test]
    async fn options_asterisk_and_absolute_form() {
        let input = "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\nGET http://h:8080/a?b=\"c\" HTTP/1.1\r\n\r\n";
        let expected = "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\nGET http://h:8080/a?b=%22c%22 HTTP/1.1\r\n\r\n";
        assert_sanitizes(input.as_bytes(), expected.as_bytes()).await;
    }

    #[tokio::test]
    async fn large_bodies_pass_through_unchanged() {
        let mut rng = 5;
        let body: Vec<u8> = (0..200_000).map(|_| next_random(&mut rng).to_le_bytes()[0]).collect();
        let head = format!("PUT /b?x=\"1\" HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
        let input = [head.as_bytes(), &body, b"GET /c?y=\"2\" HTTP/1.1\r\n\r\n"].concat();
        let expected = [
            head.replace("\"1\"", "%221%22").as_bytes(),
            &body,
            b"GET /c?y=%222%22 HTTP/1.1\r\n\r\n",
        ]
        .concat();
        assert_sanitizes(&input, &expected).await;
    }

    #[tokio::test]
    async fn overlong_lines_fall_back_to_pass_through() {
        let long_target = format!("/a?q={}", "\"x".repeat(35 * 1024));
        let next = "GET /b?c=\"d\" HTTP/1.1\r\n\r\n";
        assert_unchanged(format!("GET {long_target} HTTP/1.1\r\nHost: h\r\n\r\n{next}").as_bytes()).await;
        let long_header = format!("X-Long: {}", "y".repeat(70 * 1024));
        assert_unchanged(format!("GET /a HTTP/1.1\r\n{long_header}\r\n\r\n{next}").as_bytes()).await;
    }

    #[tokio::test]
    async fn unparsable_framing_falls_back_to_pass_through() {
        let next = "GET /b?c=\"d\" HTTP/1.1\r\n\r\n";
        for head in [
            "Content-Length: +5\r\n",
            "Content-Length: five\r\n",
            "Content-Length: 99999999999999999999999\r\n",
            "Content-Length: 1\r\nContent-Length: 1\r\n",
            "Not a header\r\n",
            "Upgrade: websocket\r\nConnection: Upgrade\r\n",
        ] {
            let input = format!("POST /a HTTP/1.1\r\nHost: h\r\n{head}\r\nx{next}");
            assert_unchanged(input.as_bytes()).await;
        }
        assert_unchanged(format!("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n{next}").as_bytes()).await;
        let chunked = "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
        for body in ["xyz\r\n", "\r\n", "11111111111111111\r\n", "1\r\nab\r\n0\r\n\r\n"] {
            assert_unchanged(format!("{chunked}{body}{next}").as_bytes()).await;
        }
    }

    #[tokio::test]
    async fn non_http1_input_passes_through() {
        for input in [
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nGET /a?b=\"c\" HTTP/1.1\r\n\r\n",
            "\x16\x03\x01 binary \"\n GET /a?b=\"c\" HTTP/1.1\r\n\r\n",
            "GET /a?b=\"c\"\r\n\r\n",
            "G(T /a?b=\"c\" HTTP/1.1\r\n\r\n",
            "GET  HTTP/1.1\r\n\r\n",
        ] {
            assert_unchanged(input.as_bytes()).await;
        }
    }

    #[tokio::test]
    async fn partial_lines_at_end_of_input_pass_unchanged() {
        assert_unchanged(b"GET /a?b=\"c\" HTTP/1.1").await;
        assert_sanitizes(
            b"GET /a?b=\"c\" HTTP/1.1\r\nHost: \"h",
            b"GET /a?b=%22c%22 HTTP/1.1\r\nHost: \"h",
        )
        .await;
        assert_sanitizes(
            b"GET /a?b=\"c\" HTTP/1.1\r\n\r\n\r",
            b"GET /a?b=%22c%22 HTTP/1.1\r\n\r\n\r",
        )
        .await;
    }

    /// With `Expect: 100-continue` the client sends nothing more until it gets an answer, so the
    /// whole head must come out without waiting for further input.
    #[test]
    fn the_head_is_delivered_without_waiting_for_the_body() {
        let input = b"PUT /a?b=\"c\" HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        let mut reader = PieceReader::new(input, 3, false, 11);
        reader.end = End::Stall;
        let mut sanitizer = RequestLineSanitizer::new(reader);
        let mut cx = Context::from_waker(Waker::noop());
        let mut output = Vec::new();
        let mut chunk = [0; 7];
        loop {
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut sanitizer).poll_read(&mut cx, &mut buf) {
                Poll::Ready(result) => {
                    result.unwrap();
                    assert!(!buf.filled().is_empty(), "unexpected end of input");
                    output.extend_from_slice(buf.filled());
                }
                Poll::Pending => break,
            }
        }
        assert_eq!(
            output,
            b"PUT /a?b=%22c%22 HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn read_errors_are_propagated() {
        let mut reader = PieceReader::new(b"GET /a?b=\"c\" HTTP/1.1\r\nHost", 4, true, 13);
        reader.end = End::Error;
        let mut sanitizer = RequestLineSanitizer::new(reader);
        let mut output = Vec::new();
        let error = loop {
            let mut chunk = [0; 16];
            let result = poll_fn(|cx| {
                let mut buf = ReadBuf::new(&mut chunk);
                ready!(Pin::new(&mut sanitizer).poll_read(cx, &mut buf))?;
                Poll::Ready(Ok::<_, io::Error>(buf.filled().len()))
            })
            .await;
            match result {
                Ok(0) => panic!("end of input instead of the error"),
                Ok(read) => output.extend_from_slice(&chunk[..read]),
                Err(error) => break error,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(output, b"GET /a?b=%22c%22 HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn writes_go_to_the_inner_stream() {
        let mut sanitizer = RequestLineSanitizer::new(Vec::new());
        let written = poll_fn(|cx| Pin::new(&mut sanitizer).poll_write(cx, b"HTTP/1.1 200 OK\r\n\"x\""))
            .await
            .unwrap();
        poll_fn(|cx| Pin::new(&mut sanitizer).poll_flush(cx)).await.unwrap();
        poll_fn(|cx| Pin::new(&mut sanitizer).poll_shutdown(cx)).await.unwrap();
        assert_eq!(written, 20);
        assert_eq!(sanitizer.get_ref(), b"HTTP/1.1 200 OK\r\n\"x\"");
    }
}
