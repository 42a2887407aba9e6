//! Object revisions (`_rev`): 16 lower-case hex digits, as in IDM's examples. The high 32 bits
//! count writes (so two revisions of one object never collide), the low 32 bits are random (so
//! the value reveals little). Clients treat it as opaque.

use std::fmt;

/// An object revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Revision(u64);

impl Revision {
    /// The revision of a freshly created object.
    pub fn initial(nonce: u32) -> Self {
        Self(u64::from(nonce))
    }

    /// The revision that follows this one.
    pub fn next(self, nonce: u32) -> Self {
        let count = (self.0 >> 32).wrapping_add(1) & 0x7fff_ffff;
        Self((count << 32) | u64::from(nonce))
    }

    /// The revision as stored (a non-negative `i64`).
    pub fn to_i64(self) -> i64 {
        i64::try_from(self.0 & 0x7fff_ffff_ffff_ffff).unwrap_or_default()
    }

    /// The revision from its stored form.
    pub fn from_i64(value: i64) -> Self {
        Self(value.unsigned_abs())
    }

    /// Parses the wire form (16 hex digits); anything else is not a revision of ours.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(Self)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_sixteen_lower_hex_digits() {
        let rev = Revision::initial(0x55c1_85c5);
        assert_eq!(rev.to_string(), "0000000055c185c5");
        assert_eq!(rev.next(0xabc).to_string(), "0000000100000abc");
    }

    #[test]
    fn parse_round_trips_and_rejects_other_forms() {
        let rev = Revision::initial(7).next(9);
        assert_eq!(Revision::parse(&rev.to_string()), Some(rev));
        assert_eq!(Revision::parse("0"), None);
        assert_eq!(Revision::parse("000000000000000G"), None);
    }

    #[test]
    fn stored_form_round_trips() {
        let rev = Revision::initial(u32::MAX).next(1).next(2);
        assert_eq!(Revision::from_i64(rev.to_i64()), rev);
    }

    #[test]
    fn successive_revisions_differ_even_with_equal_nonces() {
        let rev = Revision::initial(5);
        assert_ne!(rev, rev.next(5));
    }
}
