//! Timestamps as IDM writes them: ISO-8601 UTC with millisecond precision and a `Z`.

use chrono::{DateTime, SecondsFormat, Utc};

/// The current time in IDM's format, e.g. `2026-11-23T10:15:30.123Z`.
pub fn now_iso() -> String {
    format_iso(Utc::now())
}

/// A time in IDM's format.
pub fn format_iso(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an ISO-8601 date-time with a zone (offsets are converted to UTC).
pub fn parse_iso(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis_and_z() {
        let time = parse_iso("2026-01-02T03:04:05.678+01:00").unwrap();
        assert_eq!(format_iso(time), "2026-01-02T02:04:05.678Z");
        assert!(now_iso().ends_with('Z'));
        assert_eq!(parse_iso("yesterday"), None);
    }
}
