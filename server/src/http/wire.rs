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
//! framing is not understood (a chunk line over 64 KiB, a malformed `Content-Length` or chunk
//! size, something that is not an HTTP/1 request line, a WebSocket upgrade or `CONNECT`), the
//! wrapper stops interpreting and passes everything through for the rest of the connection,
//! leaving the verdict to actix-http.
//!
//! The wrapper is also where a request head is refused that actix-http would either accept
//! although IDM's clients must not rely on it, or refuse with an empty body ([`Refusal`]): a
//! request line or header line ending in a bare LF instead of CRLF (400), a request-target
//! longer than the `http` crate takes or a request line over its [`HeadLimits`] bound (414), a
//! head over its bound in bytes or header lines (431; at most [`MAX_HEAD_LEN`] and
//! [`MAX_HEADERS`], below actix-http's own limits of 128 KiB and 96). Each
//! request head is held back until it is complete, so actix-http never sees a refused one; the
//! requests before it are served as usual, then actix-http reads the end of the stream, and when
//! it closes the connection the wrapper writes the refusal — IDM's
//! `{"code", "reason", "message"}` body with `Connection: close` — after their responses.
//! Apart from that the response direction is never touched.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest chunk-size or trailer line (including its line ending) the wrapper buffers before
/// giving up and passing the rest of the connection through.
const MAX_LINE_LEN: usize = 64 * 1024;

/// The longest request head (request line and header lines with their line endings, as handed
/// to actix-http) that may be configured. Below actix-http's 128 KiB, which it answers with an
/// empty 431.
pub const MAX_HEAD_LEN: usize = crate::config::settings::MAX_HEAD_BYTES;

/// The most header lines a request may be allowed (actix-http's limit, which it answers with an
/// empty 431).
pub const MAX_HEADERS: usize = crate::config::settings::MAX_HEADER_LINES;

/// Longest request-target (after percent-encoding) the `http` crate parses; actix-http answers
/// a longer one with an empty 400, the wrapper with 414.
pub const MAX_TARGET_LEN: usize = u16::MAX as usize - 1;

/// Size of the buffer used to read from the wrapped stream.
const READ_BUF_LEN: usize = 8 * 1024;

/// The bounds a request head is held to (`ferridm.json` → `http`); beyond them the head is
/// refused with 414 or 431 and the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest request line in bytes, line ending included, after percent-encoding (414).
    pub max_request_line: usize,
    /// Longest head in bytes: request line and header lines (431); at most [`MAX_HEAD_LEN`].
    pub max_head: usize,
    /// Most header lines (431); at most [`MAX_HEADERS`].
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_request_line: MAX_HEAD_LEN,
            max_head: MAX_HEAD_LEN,
            max_headers: MAX_HEADERS,
        }
    }
}

impl From<&crate::config::settings::HttpSettings> for HeadLimits {
    fn from(settings: &crate::config::settings::HttpSettings) -> Self {
        Self {
            max_request_line: settings.max_request_line_bytes,
            max_head: settings.max_header_bytes,
            max_headers: settings.max_headers,
        }
    }
}

impl HeadLimits {
    /// The longest request line accepted: the configured bound, never more than the head's.
    fn request_line(self) -> usize {
        self.max_request_line.min(self.max_head).min(MAX_HEAD_LEN)
    }

    fn head(self) -> usize {
        self.max_head.min(MAX_HEAD_LEN)
    }

    fn headers(self) -> usize {
        self.max_headers.min(MAX_HEADERS)
    }
}

/// Wraps an inbound HTTP/1.x byte stream and rewrites each request line's request-target so that
/// every byte the `http` crate would reject is percent-encoded (`"` → `%22`, raw UTF-8 → `%C3%A9`, …).
/// Everything else (headers, bodies, the response direction) passes through unchanged.
///
/// Each request head is held back until it is complete (actix-http cannot parse it before that
/// anyway); body bytes are handed on as soon as they are read. A refused head ends the inbound
/// stream for actix-http, and the refusal is written when it shuts the connection down.
pub struct RequestLineSanitizer<S> {
    inner: S,
    framer: Framer,
    read_buf: Box<[u8]>,
    eof: bool,
    /// The refusal's response and how much of it has been written.
    reply: Option<(Vec<u8>, usize)>,
}

impl<S> RequestLineSanitizer<S> {
    /// Wraps `inner`, which must be positioned at the start of an HTTP/1 request, with the
    /// default [`HeadLimits`].
    pub fn new(inner: S) -> Self {
        Self::with_limits(inner, HeadLimits::default())
    }

    /// Wraps `inner` and holds its request heads to `limits`.
    pub fn with_limits(inner: S, limits: HeadLimits) -> Self {
        Self {
            inner,
            framer: Framer {
                limits,
                ..Framer::default()
            },
            read_buf: vec![0; READ_BUF_LEN].into_boxed_slice(),
            eof: false,
            reply: None,
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
            .field("refusal", &self.framer.refusal)
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
            // After a refusal the stream ends here for actix-http, which then closes the
            // connection (see `poll_shutdown`).
            if this.framer.drain_into(buf) || this.eof || this.framer.refusal.is_some() {
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

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RequestLineSanitizer<S> {
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

    /// actix-http shuts the connection down once it has written every response, so this is
    /// where a refused request's response goes out, last.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.reply.is_none() {
            this.reply = this
                .framer
                .refusal
                .as_ref()
                .and_then(Refusal::response)
                .map(|bytes| (bytes, 0));
        }
        if let Some((bytes, written)) = &mut this.reply {
            while *written < bytes.len() {
                let count = ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]))?;
                if count == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += count;
            }
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        }
        ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
        if this.framer.refusal.is_some() {
            discard_available(&mut this.inner, cx, &mut this.read_buf);
        }
        Poll::Ready(Ok(()))
    }
}

/// Reads and drops what the client has already sent after a refused head (at most 1 MiB), so
/// closing the socket does not reset the connection under the refusal while unread data waits.
fn discard_available<S: AsyncRead + Unpin>(inner: &mut S, cx: &mut Context<'_>, scratch: &mut [u8]) {
    let mut discarded = 0;
    while discarded < 1024 * 1024 {
        let mut buf = ReadBuf::new(scratch);
        match Pin::new(&mut *inner).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => discarded += buf.filled().len(),
            _ => return,
        }
    }
}

/// A request head the wrapper refuses instead of handing it to actix-http.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status: 400, 414 or 431.
    pub status: u16,
    /// The message of the error body.
    pub message: String,
    /// Whether the response is written: not when an earlier request on the connection asked for
    /// it to be closed after its response.
    answered: bool,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            answered: true,
        }
    }

    /// A line of the head ends with a bare LF.
    fn bare_line_feed() -> Self {
        Self::new(
            400,
            "The request is malformed: the request line and header lines must end with CRLF",
        )
    }

    /// The request target is longer than the `http` crate takes.
    fn target_too_long() -> Self {
        Self::new(
            414,
            format!("The request line is too long: the request target may have at most {MAX_TARGET_LEN} bytes"),
        )
    }

    /// The request line is longer than its bound.
    fn request_line_too_long(limits: HeadLimits) -> Self {
        Self::new(
            414,
            format!(
                "The request line is too long: it may have at most {} bytes",
                limits.request_line()
            ),
        )
    }

    /// The head is too long.
    fn head_too_long(limits: HeadLimits) -> Self {
        Self::new(
            431,
            format!(
                "The request headers are too large: the request head may have at most {} bytes",
                limits.head()
            ),
        )
    }

    /// Too many header lines.
    fn too_many_headers(limits: HeadLimits) -> Self {
        Self::new(
            431,
            format!(
                "The request headers are too large: a request may have at most {} headers",
                limits.headers()
            ),
        )
    }

    /// The HTTP/1.1 response: IDM's error body, and the connection closes after it.
    pub fn response(&self) -> Option<Vec<u8>> {
        if !self.answered {
            return None;
        }
        let body = super::error::ApiError::new(self.status, self.message.clone())
            .body()
            .to_string();
        let reason = actix_web::http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("Error");
        let head = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: application/json;charset=UTF-8\r\ncache-control: no-cache\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            self.status,
            body.len()
        );
        Some([head.into_bytes(), body.into_bytes()].concat())
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
    /// A request head was refused: nothing more is read or handed on.
    Refused,
}

/// What the headers of the current request say about its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Head {
    content_length: Option<u64>,
    chunked: bool,
    websocket: bool,
    connect: bool,
    /// An HTTP/1.0 request (the connection closes after it unless it asks for keep-alive).
    http10: bool,
    /// `Connection: close`.
    close: bool,
    /// `Connection: keep-alive`.
    keep_alive: bool,
    /// Header lines so far.
    lines: usize,
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
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&byte| byte == b',').map(trim) {
                self.close |= option.eq_ignore_ascii_case(b"close");
                self.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
            true
        } else {
            if name.eq_ignore_ascii_case(b"upgrade") && value.eq_ignore_ascii_case(b"websocket") {
                self.websocket = true;
            }
            true
        }
    }

    /// True when the connection closes after this request's response.
    fn closes(self) -> bool {
        self.close || (self.http10 && !self.keep_alive)
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

/// The framing state machine plus its buffers: the line being assembled, the head being held
/// back and the output that has not been handed to the reader yet.
#[derive(Debug, Default)]
struct Framer {
    limits: HeadLimits,
    state: State,
    line: Vec<u8>,
    /// The current request's request line and header lines (rewritten), until the head is
    /// complete.
    head: Vec<u8>,
    /// Whether the last complete request closes the connection after its response.
    closing: bool,
    /// Why the current request head was refused.
    refusal: Option<Refusal>,
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
                State::Refused => return,
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
                    if self.line_too_long() {
                        continue;
                    }
                    if complete {
                        self.end_line();
                    }
                }
            }
        }
    }

    /// Deals with a line (complete or not) that is too long: in a head it is refused, elsewhere
    /// the framing is given up. Checked as the line grows, so nothing waits for a line ending
    /// past the limit; `true` when the line was dealt with.
    fn line_too_long(&mut self) -> bool {
        match self.state {
            State::RequestLine if self.line.len() > self.limits.request_line() => {
                self.refuse(Refusal::request_line_too_long(self.limits));
            }
            State::Headers(_) if self.head.len() + self.line.len() > self.limits.head() => {
                self.refuse(Refusal::head_too_long(self.limits));
            }
            State::RequestLine | State::Headers(_) => return false,
            _ if self.line.len() > MAX_LINE_LEN => {
                self.out.append(&mut self.line);
                self.state = State::PassThrough;
            }
            _ => return false,
        }
        true
    }

    /// Refuses the current request head: it is dropped and nothing after it is read.
    fn refuse(&mut self, mut refusal: Refusal) {
        refusal.answered = !self.closing;
        self.refusal = Some(refusal);
        self.state = State::Refused;
        self.head.clear();
        self.line.clear();
    }

    /// Hands the held head on, followed by `line` (when the framing is given up in a head).
    fn release_head(&mut self, line: &[u8]) {
        self.out.append(&mut self.head);
        self.out.extend_from_slice(line);
    }

    /// At end of input: hands on a partial head and line unchanged.
    fn finish(&mut self) {
        self.out.append(&mut self.head);
        self.out.append(&mut self.line);
    }

    /// Handles the complete line in `self.line` (line ending included).
    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        self.state = self.next_after_line(&line);
        // Keep the allocation for the next line.
        self.line = line;
        self.line.clear();
    }

    /// Hands on (or holds back) the complete `line` and returns the state after it.
    fn next_after_line(&mut self, line: &[u8]) -> State {
        let content = strip_line_ending(line);
        // In a head every line, the empty one that ends it included, must end with CRLF.
        let bare_line_feed = !line.ends_with(b"\r\n");
        match self.state {
            // Empty lines before a request line are passed on.
            State::RequestLine if content.is_empty() => {
                self.out.extend_from_slice(line);
                State::RequestLine
            }
            State::RequestLine => {
                let Some((method, target, version)) = split_request_line(content) else {
                    // Not an HTTP/1 request (garbage, or the HTTP/2 preface): actix-http decides.
                    self.out.extend_from_slice(line);
                    return State::PassThrough;
                };
                if bare_line_feed {
                    self.refuse(Refusal::bare_line_feed());
                    return State::Refused;
                }
                self.head.clear();
                self.head.extend_from_slice(method);
                self.head.push(b' ');
                let target_start = self.head.len();
                sanitize_target_into(target, &mut self.head);
                let target_len = self.head.len() - target_start;
                self.head.push(b' ');
                self.head.extend_from_slice(version);
                self.head.extend_from_slice(&line[content.len()..]);
                if target_len > MAX_TARGET_LEN {
                    self.refuse(Refusal::target_too_long());
                    return State::Refused;
                }
                if self.head.len() > self.limits.request_line() {
                    self.refuse(Refusal::request_line_too_long(self.limits));
                    return State::Refused;
                }
                State::Headers(Head {
                    connect: method == b"CONNECT",
                    http10: version == b"HTTP/1.0",
                    ..Head::default()
                })
            }
            State::Headers(_) if bare_line_feed => {
                self.refuse(Refusal::bare_line_feed());
                State::Refused
            }
            State::Headers(head) if content.is_empty() => {
                self.head.extend_from_slice(line);
                self.out.append(&mut self.head);
                self.closing = head.closes();
                head.next_state()
            }
            State::Headers(mut head) => {
                head.lines += 1;
                if head.lines > self.limits.headers() {
                    self.refuse(Refusal::too_many_headers(self.limits));
                    return State::Refused;
                }
                if head.record(content) {
                    self.head.extend_from_slice(line);
                    State::Headers(head)
                } else {
                    self.release_head(line);
                    State::PassThrough
                }
            }
            State::ChunkSize => {
                self.out.extend_from_slice(line);
                match parse_chunk_size(content) {
                    Some(0) => State::Trailers,
                    Some(remaining) => State::ChunkData { remaining },
                    None => State::PassThrough,
                }
            }
            State::ChunkDataEnd if content.is_empty() => {
                self.out.extend_from_slice(line);
                State::ChunkSize
            }
            State::Trailers => {
                self.out.extend_from_slice(line);
                if content.is_empty() {
                    State::RequestLine
                } else {
                    State::Trailers
                }
            }
            State::Refused => State::Refused,
            State::ChunkDataEnd | State::Body { .. } | State::ChunkData { .. } | State::PassThrough => {
                self.out.extend_from_slice(line);
                State::PassThrough
            }
        }
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

    /// A connection: reads from a [`PieceReader`], records what is written and the shutdown.
    struct Connection {
        reader: PieceReader,
        written: Vec<u8>,
        /// Most bytes one write takes (so that partial writes are exercised).
        max_write: usize,
        shut_down: bool,
    }

    impl Connection {
        fn new(reader: PieceReader) -> Self {
            Self {
                reader,
                written: Vec::new(),
                max_write: 7,
                shut_down: false,
            }
        }
    }

    impl AsyncRead for Connection {
        fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Connection {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            assert!(!this.shut_down, "written after the shutdown");
            let len = buf.len().min(this.max_write);
            this.written.extend_from_slice(&buf[..len]);
            Poll::Ready(Ok(len))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().shut_down = true;
            Poll::Ready(Ok(()))
        }
    }

    /// Runs `input` through the sanitizer with many read patterns: what is handed on must be
    /// `handed_on`, then the end of the stream (a head was refused); at shutdown `refusal`'s
    /// response (or nothing, for a silent refusal) is written before the connection is shut
    /// down.
    async fn assert_refused(input: &[u8], handed_on: &[u8], refusal: Option<&Refusal>) {
        let patterns = [
            (1, false, 1),
            (3, true, 5),
            (64, false, 70_000),
            (1 << 20, false, 1 << 20),
        ];
        let expected_reply = refusal.and_then(Refusal::response).unwrap_or_default();
        for (max_piece, pending_between, max_read) in patterns {
            let reader = PieceReader::new(input, max_piece, pending_between, 3);
            let mut sanitizer = RequestLineSanitizer::new(Connection::new(reader));
            let output = read_all(&mut sanitizer, max_read, 5).await.unwrap();
            assert!(
                output == handed_on,
                "pieces of up to {max_piece}: handed on\n{}\ninstead of\n{}",
                String::from_utf8_lossy(&output),
                String::from_utf8_lossy(handed_on)
            );
            assert!(sanitizer.framer.refusal.is_some(), "not refused");
            poll_fn(|cx| Pin::new(&mut sanitizer).poll_shutdown(cx)).await.unwrap();
            let connection = sanitizer.get_ref();
            assert!(connection.shut_down);
            assert_eq!(
                String::from_utf8_lossy(&connection.written),
                String::from_utf8_lossy(&expected_reply)
            );
        }
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
    async fn zero_length_bodies_are_followed_by_the_next_request() {
        let input = "POST /a?b=\"c\" HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\nGET /d?e=<f> HTTP/1.0\r\n\r\n";
        let expected =
            "POST /a?b=%22c%22 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\nGET /d?e=%3Cf%3E HTTP/1.0\r\n\r\n";
        assert_sanitizes(input.as_bytes(), expected.as_bytes()).await;
    }

    #[tokio::test]
    async fn bare_line_feeds_in_a_head_are_refused() {
        let first = "POST /a?b=\"c\" HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
        let handed_on = "POST /a?b=%22c%22 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
        let refusal = Refusal::bare_line_feed();
        for bad in [
            "GET /d?e=<f> HTTP/1.0\n\n",
            "GET /d HTTP/1.1\nHost: h\r\n\r\n",
            "GET /d HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
            "GET /d HTTP/1.1\r\nHost: h\r\n\n",
        ] {
            // Alone, and after a request that is served: neither the refused head nor anything
            // after it reaches actix-http.
            let after = "GET /never HTTP/1.1\r\nHost: h\r\n\r\n";
            assert_refused(format!("{bad}{after}").as_bytes(), b"", Some(&refusal)).await;
            assert_refused(
                format!("{first}{bad}{after}").as_bytes(),
                handed_on.as_bytes(),
                Some(&refusal),
            )
            .await;
        }
        assert_eq!(refusal.status, 400);
    }

    #[tokio::test]
    async fn a_refusal_after_a_request_that_closes_the_connection_is_silent() {
        let bad = "GET /d HTTP/1.1\nHost: h\n\n";
        for first in [
            "GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: h\r\nConnection: TE, Close\r\n\r\n",
            "GET /a HTTP/1.0\r\nHost: h\r\n\r\n",
        ] {
            assert_refused(format!("{first}{bad}").as_bytes(), first.as_bytes(), None).await;
        }
        let kept_alive = "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        assert_refused(
            format!("{kept_alive}{bad}").as_bytes(),
            kept_alive.as_bytes(),
            Some(&Refusal::bare_line_feed()),
        )
        .await;
    }

    #[tokio::test]
    async fn bare_line_feeds_outside_heads_pass() {
        // Empty lines before a request line, bodies and chunk data are not heads.
        assert_unchanged(b"\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n").await;
        let body = "{\n\"a\": 1\n}\n";
        assert_unchanged(
            format!(
                "PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}GET /b HTTP/1.1\r\nHost: h\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await;
        assert_unchanged(
            b"PUT /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n\n\n\n\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
        )
        .await;
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
    async fn overlong_request_lines_and_heads_are_refused() {
        let next = "GET /b?c=\"d\" HTTP/1.1\r\n\r\n";
        let first = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
        // The target as actix-http would get it counts: 35 Ki `"x` become 140 KiB.
        let encoded_too_long = format!("/a?q={}", "\"x".repeat(35 * 1024));
        let too_long = format!("/a?q={}", "x".repeat(MAX_TARGET_LEN));
        let long_header = format!("X-Long: {}", "y".repeat(70 * 1024));
        let many_headers: String = (0..=MAX_HEADERS).map(|index| format!("X-{index}: v\r\n")).collect();
        for (head, refusal) in [
            (
                format!("GET {encoded_too_long} HTTP/1.1\r\nHost: h\r\n\r\n"),
                Refusal::target_too_long(),
            ),
            (
                format!("GET {too_long} HTTP/1.1\r\nHost: h\r\n\r\n"),
                Refusal::target_too_long(),
            ),
            // A request line that never ends.
            (
                format!("GET /{}", "z".repeat(MAX_HEAD_LEN)),
                Refusal::request_line_too_long(HeadLimits::default()),
            ),
            (
                format!("GET /a HTTP/1.1\r\n{long_header}\r\n{long_header}\r\n\r\n"),
                Refusal::head_too_long(HeadLimits::default()),
            ),
            // A header line that never ends.
            (
                format!("GET /a HTTP/1.1\r\nX: {}", "y".repeat(MAX_HEAD_LEN)),
                Refusal::head_too_long(HeadLimits::default()),
            ),
            (
                format!("GET /a HTTP/1.1\r\n{many_headers}\r\n"),
                Refusal::too_many_headers(HeadLimits::default()),
            ),
        ] {
            assert_refused(format!("{head}{next}").as_bytes(), b"", Some(&refusal)).await;
            assert_refused(
                format!("{first}{head}{next}").as_bytes(),
                first.as_bytes(),
                Some(&refusal),
            )
            .await;
        }
        // Right at the limits: handed on.
        let longest = format!("/a?q={}", "x".repeat(MAX_TARGET_LEN - 5));
        assert_unchanged(format!("GET {longest} HTTP/1.1\r\nHost: h\r\n\r\n{first}").as_bytes()).await;
        let most_headers: String = (2..MAX_HEADERS).map(|index| format!("X-{index}: v\r\n")).collect();
        assert_unchanged(format!("GET /a HTTP/1.1\r\nHost: h\r\n{most_headers}{long_header}\r\n\r\n").as_bytes()).await;
    }

    #[tokio::test]
    async fn overlong_chunk_lines_fall_back_to_pass_through() {
        let next = "GET /b?c=\"d\" HTTP/1.1\r\n\r\n";
        let extension = "e".repeat(70 * 1024);
        assert_unchanged(
            format!(
                "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;{extension}\r\nx\r\n0\r\n\r\n{next}"
            )
            .as_bytes(),
        )
        .await;
    }

    #[test]
    fn refusals_are_idm_error_responses_that_close_the_connection() {
        let response = Refusal::bare_line_feed().response().unwrap();
        let text = String::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            head,
            format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json;charset=UTF-8\r\ncache-control: no-cache\r\n\
                 content-length: {}\r\nconnection: close",
                body.len()
            )
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).unwrap(),
            serde_json::json!({"code": 400, "reason": "Bad Request",
                               "message": "The request is malformed: the request line and header lines must end with CRLF"})
        );
        for (refusal, status_line, reason) in [
            (
                Refusal::target_too_long(),
                "HTTP/1.1 414 URI Too Long",
                "Request-URI Too Large",
            ),
            (
                Refusal::head_too_long(HeadLimits::default()),
                "HTTP/1.1 431 Request Header Fields Too Large",
                "Request Header Fields Too Large",
            ),
            (
                Refusal::too_many_headers(HeadLimits::default()),
                "HTTP/1.1 431 Request Header Fields Too Large",
                "Request Header Fields Too Large",
            ),
        ] {
            let text = String::from_utf8(refusal.response().unwrap()).unwrap();
            assert!(text.starts_with(&format!("{status_line}\r\n")), "{text}");
            let body: serde_json::Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
            assert_eq!(body["code"], refusal.status);
            assert_eq!(body["reason"], reason);
            assert_eq!(body["message"], refusal.message.as_str());
        }
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
        let mut reader = PieceReader::new(
            b"GET /a?b=\"c\" HTTP/1.1\r\nHost: h\r\n\r\nGET /d HTTP/1.1\r\nHost",
            4,
            true,
            13,
        );
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
        // The unfinished head of the second request is still held back.
        assert_eq!(output, b"GET /a?b=%22c%22 HTTP/1.1\r\nHost: h\r\n\r\n");
    }

    #[tokio::test]
    async fn writes_go_to_the_inner_stream() {
        let mut connection = Connection::new(PieceReader::new(b"", 1, false, 1));
        connection.max_write = usize::MAX;
        let mut sanitizer = RequestLineSanitizer::new(connection);
        let written = poll_fn(|cx| Pin::new(&mut sanitizer).poll_write(cx, b"HTTP/1.1 200 OK\r\n\"x\""))
            .await
            .unwrap();
        poll_fn(|cx| Pin::new(&mut sanitizer).poll_flush(cx)).await.unwrap();
        poll_fn(|cx| Pin::new(&mut sanitizer).poll_shutdown(cx)).await.unwrap();
        assert_eq!(written, 20);
        assert_eq!(sanitizer.get_ref().written, b"HTTP/1.1 200 OK\r\n\"x\"");
        assert!(sanitizer.get_ref().shut_down);
    }
}
