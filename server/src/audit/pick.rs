//! Reads a few string fields of an event's JSON text without building the whole event: the
//! top-level fields a path starts with are parsed, every other one is skipped unread.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor};

/// The string at each path (`a` or `a/b`) of the JSON object `text`, or the one string of a
/// one-element array there (IDM's `principal`); `None` where it is missing or anything else.
pub fn strings(text: &str, paths: &[&str]) -> serde_json::Result<Vec<Option<String>>> {
    let mut found = vec![None; paths.len()];
    let wanted: Vec<(usize, &str)> = paths.iter().copied().enumerate().collect();
    serde_json::Deserializer::from_str(text).deserialize_map(Member {
        string: None,
        members: &wanted,
        found: &mut found,
        top: true,
    })?;
    Ok(found)
}

/// A value of which a string (answer `string`) and members at the paths `members` (relative
/// to it, each with the answer it fills) are wanted; everything else is skipped unread.
struct Member<'w, 'p, 'f> {
    string: Option<usize>,
    members: &'w [(usize, &'p str)],
    found: &'f mut [Option<String>],
    /// The event itself, which must be an object.
    top: bool,
}

impl Member<'_, '_, '_> {
    /// Any value but a string, an array or an object: nothing to pick.
    fn nothing<E: serde::de::Error>(self, unexpected: Unexpected<'_>) -> Result<(), E> {
        if self.top {
            return Err(E::invalid_type(unexpected, &self));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Member<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Member<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an audit event (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let mut string = None;
            let mut members = Vec::new();
            for &(index, path) in self.members {
                match path.split_once('/') {
                    None if path == key => string = Some(index),
                    Some((first, rest)) if first == key => members.push((index, rest)),
                    _ => {}
                }
            }
            if string.is_none() && members.is_empty() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            map.next_value_seed(Member {
                string,
                members: &members,
                found: self.found,
                top: false,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.top {
            return Err(serde::de::Error::invalid_type(Unexpected::Seq, &self));
        }
        let first = match self.string {
            Some(_) => seq.next_element::<OnlyString>()?.and_then(|only| only.0),
            None => None,
        };
        let mut more = false;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            more = true;
        }
        if let (Some(index), Some(text), false) = (self.string, first, more) {
            self.found[index] = Some(text);
        }
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<(), E> {
        match self.string {
            Some(index) => {
                self.found[index] = Some(value.to_owned());
                Ok(())
            }
            None => self.nothing(Unexpected::Str(value)),
        }
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<(), E> {
        self.nothing(Unexpected::Bool(value))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<(), E> {
        self.nothing(Unexpected::Signed(value))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<(), E> {
        self.nothing(Unexpected::Unsigned(value))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<(), E> {
        self.nothing(Unexpected::Float(value))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.nothing(Unexpected::Unit)
    }
}

/// An array element: its text when it is a string, else nothing.
struct OnlyString(Option<String>);

impl<'de> serde::Deserialize<'de> for OnlyString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self(deserializer.deserialize_any(StringOrSkip)?))
    }
}

/// Keeps a string; reads any other value through and keeps nothing.
struct StringOrSkip;

impl<'de> Visitor<'de> for StringOrSkip {
    type Value = Option<String>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Some(value.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn picks_strings_at_paths_and_skips_the_rest() {
        let text = json!({"_id": "e1", "http": {"request": {"headers": {"a": ["b"]}}},
            "request": {"protocol": "CREST", "operation": "READ"}, "principal": ["bob"],
            "roles": ["x", "y"], "elapsedTime": 3, "userId": null, "big": "a\"b",
            "nested": [["n"]], "list": [{"a": "b"}], "deep": {"a": {"b": "c", "d": ["e"]}}})
        .to_string();
        let paths = [
            "_id",
            "request/operation",
            "principal",
            "roles",
            "elapsedTime",
            "userId",
            "missing",
            "big",
            "request/none",
            "nested",
            "list/a",
            "big/x",
            "deep/a/b",
            "deep/a/d",
            "deep/a",
        ];
        assert_eq!(
            strings(&text, &paths).unwrap(),
            [
                Some("e1"),
                Some("READ"),
                Some("bob"),
                None,
                None,
                None,
                None,
                Some("a\"b"),
                None,
                None,
                None,
                None,
                Some("c"),
                Some("e"),
                None
            ]
            .map(|found| found.map(str::to_owned))
        );
        assert!(strings("[1, 2]", &paths).is_err());
        assert!(strings("\"text\"", &paths).is_err());
        assert!(strings("{\"_id\": ", &paths).is_err());
    }
}
