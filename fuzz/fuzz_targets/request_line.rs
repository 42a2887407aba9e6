//! The request-line sanitizer and its HTTP/1 framer (`http::wire`), which see every inbound byte
//! before actix-http does.
//!
//! Input: one byte choosing how the client's bytes arrive in pieces, one choosing the size of
//! actix-http's read buffer, then the bytes the client sends. Asserts, besides "no panic and no
//! hang":
//! * `sanitize_target` keeps only bytes the `http` crate accepts (up to a `#`), is idempotent and
//!   changes nothing a percent-decoding server would see;
//! * the framer hands on the same bytes and writes the same refusal whether the input arrives at
//!   once or in pieces, and whatever buffer actix-http reads into.

#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use ferridm::http::wire::{RequestLineSanitizer, sanitize_target};
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose inbound bytes arrive in pieces of the given sizes (cycled) and whose
/// outbound bytes are collected.
struct Connection<'a> {
    inbound: &'a [u8],
    pieces: Vec<usize>,
    next_piece: usize,
    written: Vec<u8>,
}

impl AsyncRead for Connection<'_> {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let piece = this.pieces[this.next_piece % this.pieces.len()];
        this.next_piece += 1;
        let len = piece.min(buf.remaining()).min(this.inbound.len());
        let (now, later) = this.inbound.split_at(len);
        buf.put_slice(now);
        this.inbound = later;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Connection<'_> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What actix-http reads through the sanitizer until the end of the stream, and what the
/// sanitizer writes when actix-http shuts the connection down (a refusal, if any).
fn run(inbound: &[u8], pieces: Vec<usize>, read_len: usize) -> (Vec<u8>, Vec<u8>) {
    let connection = Connection {
        inbound,
        pieces,
        next_piece: 0,
        written: Vec::new(),
    };
    let mut sanitizer = RequestLineSanitizer::new(connection);
    let mut cx = Context::from_waker(Waker::noop());
    let mut handed_on = Vec::new();
    let mut chunk = vec![0; read_len];
    loop {
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut sanitizer).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
            Poll::Ready(Ok(())) => handed_on.extend_from_slice(buf.filled()),
            other => panic!("the in-memory connection never fails or waits: {other:?}"),
        }
    }
    match Pin::new(&mut sanitizer).poll_shutdown(&mut cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("shutting down an in-memory connection: {other:?}"),
    }
    (handed_on, sanitizer.get_ref().written.clone())
}

fn check_sanitize_target(target: &[u8]) {
    let sanitized = sanitize_target(target);
    assert_eq!(sanitize_target(&sanitized), sanitized, "not idempotent");
    let end = |bytes: &[u8]| bytes.iter().position(|&byte| byte == b'#').unwrap_or(bytes.len());
    let (before, fragment) = sanitized.split_at(end(&sanitized));
    let (original_before, original_fragment) = target.split_at(end(target));
    assert_eq!(fragment, original_fragment, "the fragment changed");
    let mut in_query = false;
    for &byte in before {
        in_query |= byte == b'?';
        let allowed = byte == b'%'
            || if in_query {
                matches!(byte, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E)
            } else {
                matches!(byte, 0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E | b'"' | b'{' | b'}')
            };
        assert!(allowed, "byte {byte:#04x} left unencoded in {sanitized:?}");
    }
    assert_eq!(
        percent_decode(before).collect::<Vec<u8>>(),
        percent_decode(original_before).collect::<Vec<u8>>(),
        "decoding the sanitized target gives other bytes"
    );
}

fuzz_target!(|data: &[u8]| {
    let [piece_seed, read_seed, inbound @ ..] = data else {
        return;
    };
    if let Some(line) = inbound.split(|&byte| byte == b'\n').next() {
        let target = line.split(|&byte| byte == b' ').nth(1).unwrap_or(line);
        check_sanitize_target(target);
    }
    check_sanitize_target(inbound);

    let whole = run(inbound, vec![usize::MAX], 64 * 1024);
    // Pieces of 1 to 16 bytes in a pattern set by the seed; a read buffer of 1 to 256 bytes.
    let pieces = (0..8)
        .map(|shift| usize::from((piece_seed >> shift) & 0x0F) + 1)
        .collect();
    let read_len = usize::from(*read_seed) + 1;
    let pieced = run(inbound, pieces, read_len);
    assert!(
        whole.0 == pieced.0,
        "the bytes handed on depend on how the input arrived"
    );
    assert!(whole.1 == pieced.1, "the refusal depends on how the input arrived");
});
