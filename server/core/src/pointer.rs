//! JSON pointers as CREST uses them for fields, sort keys and patch paths: `/`-separated,
//! percent-decoded segments (no RFC 6901 `~0`/`~1` escapes); a leading and a trailing `/` are
//! ignored, so `a/b`, `/a/b` and `/a/b/` are the same pointer and `""` and `/` are the root.

use std::fmt;

use percent_encoding::percent_decode_str;
use serde_json::Value;

/// A parsed JSON pointer: zero or more decoded segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct JsonPointer {
    segments: Vec<String>,
}

impl JsonPointer {
    /// Parses a pointer; every segment is percent-decoded (invalid UTF-8 is replaced lossily).
    pub fn parse(text: &str) -> Self {
        let parts: Vec<&str> = text.split('/').collect();
        let last = parts.len().saturating_sub(1);
        let segments = parts
            .iter()
            .enumerate()
            .filter(|(i, part)| !(part.is_empty() && (*i == 0 || *i == last)))
            .map(|(_, part)| percent_decode_str(part).decode_utf8_lossy().into_owned())
            .collect();
        Self { segments }
    }

    /// A pointer made of the given, already decoded, segments.
    pub fn from_segments<I, S>(segments: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            segments: segments.into_iter().map(Into::into).collect(),
        }
    }

    /// The decoded segments.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// True for the empty pointer, which addresses the whole value.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The number of segments.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// True when the pointer has no segments (same as [`JsonPointer::is_root`]).
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The last segment, if any.
    pub fn leaf(&self) -> Option<&str> {
        self.segments.last().map(String::as_str)
    }

    /// The first segment, if any: the top-level property a pointer lands in.
    pub fn first(&self) -> Option<&str> {
        self.segments.first().map(String::as_str)
    }

    /// The pointer without its last segment (the root stays the root).
    pub fn parent(&self) -> Self {
        let mut segments = self.segments.clone();
        segments.pop();
        Self { segments }
    }

    /// The pointer without its first segment (`/a/b` → `/b`).
    pub fn relative(&self) -> Self {
        Self {
            segments: self.segments.iter().skip(1).cloned().collect(),
        }
    }

    /// This pointer extended by one segment.
    pub fn child(&self, segment: impl Into<String>) -> Self {
        let mut segments = self.segments.clone();
        segments.push(segment.into());
        Self { segments }
    }

    /// The value this pointer addresses, if present. Numeric segments index arrays.
    pub fn get<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        self.segments.iter().try_fold(value, |node, segment| match node {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
    }

    /// The value this pointer addresses inside an object, if present.
    pub fn get_in<'a>(&self, object: &'a crate::Object) -> Option<&'a Value> {
        let (first, rest) = self.segments.split_first()?;
        let start = object.get(first)?;
        rest.iter().try_fold(start, |node, segment| match node {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for segment in &self.segments {
            f.write_str("/")?;
            f.write_str(&segment.replace('%', "%25").replace('/', "%2F"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_forms_parse_to_the_same_pointer() {
        assert_eq!(JsonPointer::parse("/a/b/c"), JsonPointer::parse("/a/b/c"));
        assert_ne!(JsonPointer::parse("/a/b/c"), JsonPointer::parse("/d/e/f"));
        assert_eq!(JsonPointer::parse("a/b"), JsonPointer::parse("/a/b"));
        assert_eq!(JsonPointer::parse("/a/b/c/"), JsonPointer::parse("/a/b/c"));
    }

    #[test]
    fn segments_are_percent_decoded() {
        assert_eq!(
            JsonPointer::parse("/a/%65%73%63%61%70%65"),
            JsonPointer::parse("/a/escape")
        );
    }

    #[test]
    fn empty_and_slash_are_the_root() {
        assert!(JsonPointer::parse("").is_root());
        assert!(JsonPointer::parse("/").is_root());
        assert_eq!(JsonPointer::parse("/").to_string(), "/");
    }

    #[test]
    fn numeric_segments_are_plain_segments() {
        assert_eq!(JsonPointer::parse("/1/2").segments(), ["1", "2"]);
    }

    #[test]
    fn slash_inside_a_segment_prints_escaped() {
        let pointer = JsonPointer::from_segments(["a/b", "c"]);
        assert_eq!(pointer.to_string(), "/a%2Fb/c");
        assert_eq!(JsonPointer::parse(&pointer.to_string()), pointer);
    }

    #[test]
    fn relative_drops_the_first_segment() {
        assert!(JsonPointer::parse("/a").relative().is_root());
        assert_eq!(JsonPointer::parse("/a/b").relative().to_string(), "/b");
        assert_eq!(JsonPointer::parse("/a/b/c").relative().to_string(), "/b/c");
    }

    #[test]
    fn tilde_escapes_are_not_interpreted() {
        assert_eq!(JsonPointer::parse("/a~1b").segments(), ["a~1b"]);
    }

    #[test]
    fn get_walks_objects_and_arrays() {
        let value = json!({"a": {"b": [10, {"c": true}]}});
        assert_eq!(JsonPointer::parse("/a/b/0").get(&value), Some(&json!(10)));
        assert_eq!(JsonPointer::parse("/a/b/1/c").get(&value), Some(&json!(true)));
        assert_eq!(JsonPointer::parse("/a/x").get(&value), None);
        assert_eq!(JsonPointer::parse("/").get(&value), Some(&value));
    }
}
