//! Session cookies (`auth::session`): HS256 JWTs carrying the security context.
//!
//! Input: a mode byte, a position and a replacement byte, then text. Even mode: the text is a
//! cookie value as a client sends it, which must not open as a session (nobody without the
//! session key can sign one). Odd mode: the text's lines make a security context; its session,
//! issued as a token, must open to the same session; the token with one character replaced,
//! opened with another key, or opened once expired must not.

#![no_main]

use ferridm::auth::session::Session;
use ferridm::auth::{Authorization, SecurityContext};
use ferridm::config::authentication::SessionSettings;
use ferridm::secrets::Key;
use libfuzzer_sys::fuzz_target;

const KEY: Key = Key([9; 32]);
const NOW: u64 = 1_700_000_000;

/// Characters a replacement is drawn from: the JWT alphabet, padding, the separator and space.
const REPLACEMENTS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=. %";

fuzz_target!(|data: &[u8]| {
    let [mode, position, replacement, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if mode % 2 == 0 {
        assert_eq!(Session::open(&KEY, &text, NOW), None, "{text:?} opened");
        return;
    }
    let mut lines = text.lines().map(str::to_owned);
    let mut next = || lines.next().unwrap_or_default();
    let context = SecurityContext {
        authentication_id: next(),
        authorization: Authorization {
            id: next(),
            component: next(),
            roles: next().split(',').map(str::to_owned).collect(),
            module_id: next(),
            query_id: Some(next()).filter(|line| !line.is_empty()),
            protected_attribute_list: Some(vec![next()]),
            processes_required: Some(mode & 2 != 0),
            required_profile_processes: None,
        },
    };
    let settings = SessionSettings::default();
    let mut session = Session::start(context, &settings, NOW);
    session.forms_completed = lines.collect();
    session.epoch = (mode & 4 != 0).then_some(i64::from(*position) - 128);
    let Some(token) = session.issue(&KEY, &settings, NOW) else {
        panic!("issuing {session:?} failed");
    };
    assert_eq!(Session::open(&KEY, &token, NOW + 1).as_ref(), Some(&session));
    assert_eq!(Session::open(&Key([10; 32]), &token, NOW + 1), None);
    assert_eq!(Session::open(&KEY, &token, session.expires), None);

    let mut tampered = token.into_bytes();
    let index = usize::from(*position) % tampered.len();
    let mut new = REPLACEMENTS[usize::from(*replacement) % REPLACEMENTS.len()];
    if new == tampered[index] {
        new = if new == b'A' { b'B' } else { b'A' };
    }
    tampered[index] = new;
    let tampered = String::from_utf8(tampered).unwrap_or_default();
    assert_eq!(
        Session::open(&KEY, &tampered, NOW + 1),
        None,
        "the tampered token {tampered:?} opened"
    );
});
