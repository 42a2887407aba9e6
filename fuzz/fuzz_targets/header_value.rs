//! RFC 5987 header values (`X-OpenIDM-Password`, `X-OpenIDM-Reauth-Password`, …), decoded by
//! `auth::decode_rfc5987`.
//!
//! Input: a header value (invalid UTF-8 replaced, as a non-UTF-8 header value cannot reach the
//! decoder). Asserts, besides "no panic": a value without two `'` comes back as sent, and any text
//! percent-encoded as `UTF-8''…` (charset in any case, with or without a language) decodes to
//! itself.

#![no_main]

use ferridm::auth::decode_rfc5987;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    let decoded = decode_rfc5987(&value);
    if value.matches('\'').count() < 2 {
        assert_eq!(decoded, value, "a plain value was changed");
    }
    let encoded = utf8_percent_encode(&value, NON_ALPHANUMERIC).to_string();
    for prefix in ["UTF-8''", "utf-8'en'", "Utf-8'de-CH'"] {
        assert_eq!(
            decode_rfc5987(&format!("{prefix}{encoded}")),
            value,
            "{prefix}{encoded}"
        );
    }
});
