//! Sealed self-service tokens (`sealed`): process state and auto-login credentials handed to
//! clients, encrypted and authenticated under the token key.
//!
//! Input: a mode byte, a position and a replacement byte, then text. Even mode: the text is a
//! token as a client sends it, which must be refused (as undecodable or forged: nobody without
//! the key can make an authentic one). Odd mode: the text is sealed and must open to the same
//! data; the token with one character replaced, opened for another purpose, or opened at its
//! expiry must be refused.

#![no_main]

use ferridm::sealed::{SealError, open, seal};
use ferridm::secrets::Key;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const KEY: Key = Key([7; 32]);
const PURPOSE: &str = "selfservice/registration";
const NOW: u64 = 1_700_000_000;

/// Characters a replacement is drawn from: the token alphabet, padding, separators and space.
const REPLACEMENTS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=. %";

fuzz_target!(|data: &[u8]| {
    let [mode, position, replacement, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if mode % 2 == 0 {
        let refused = open::<Value>(&KEY, PURPOSE, &text, NOW);
        assert!(
            matches!(refused, Err(SealError::Undecodable | SealError::Forged)),
            "{text:?} opened: {refused:?}"
        );
        return;
    }
    let data = json!({"state": text, "stage": usize::from(*position)});
    let expires = NOW + 60;
    let Some(token) = seal(&KEY, PURPOSE, &data, expires) else {
        panic!("sealing {data} failed");
    };
    assert_eq!(open::<Value>(&KEY, PURPOSE, &token, NOW), Ok(data.clone()));
    assert_eq!(open::<Value>(&KEY, "auto-login", &token, NOW), Err(SealError::Forged));
    assert_eq!(
        open::<Value>(&Key([8; 32]), PURPOSE, &token, NOW),
        Err(SealError::Forged)
    );
    assert_eq!(open::<Value>(&KEY, PURPOSE, &token, expires), Err(SealError::Expired));

    let mut tampered = token.into_bytes();
    let index = usize::from(*position) % tampered.len();
    let mut new = REPLACEMENTS[usize::from(*replacement) % REPLACEMENTS.len()];
    if new == tampered[index] {
        new = if new == b'A' { b'B' } else { b'A' };
    }
    tampered[index] = new;
    let tampered = String::from_utf8(tampered).unwrap_or_default();
    let refused = open::<Value>(&KEY, PURPOSE, &tampered, NOW);
    assert!(
        matches!(refused, Err(SealError::Undecodable | SealError::Forged)),
        "the tampered token {tampered:?} opened: {refused:?}"
    );
});
