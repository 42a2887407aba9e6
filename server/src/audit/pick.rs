//! Reads a few string fields of an event's JSON text without building the whole event: the
//! top-level fields a path starts with are parsed, every other one is skipped unread.

use std::borrow::Cow;

use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// The string at each path (`a` or `a/b`) of the JSON object `text`, or the one string of a
/// one-element array there (IDM's `principal`); `None` where it is missing or anything else.
pub fn strings(text: &str, paths: &[&str]) -> serde_json::Result<Vec<Option<String>>> {
    serde_json::Deserializer::from_str(text).deserialize_map(Picker(paths))
}

struct Picker<'p>(&'p [&'p str]);

impl<'de> Visitor<'de> for Picker<'_> {
    type Value = Vec<Option<String>>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("an audit event (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = vec![None; self.0.len()];
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let wanted: Vec<usize> = (0..self.0.len())
                .filter(|&index| self.0[index].split('/').next() == Some(&*key))
                .collect();
            if wanted.is_empty() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value: Value = map.next_value()?;
            for index in wanted {
                let mut rest = self.0[index].split('/').skip(1);
                found[index] = match rest.try_fold(&value, |value, segment| value.get(segment)) {
                    Some(Value::String(text)) => Some(text.clone()),
                    Some(Value::Array(items)) if items.len() == 1 => items[0].as_str().map(str::to_owned),
                    _ => None,
                };
            }
        }
        Ok(found)
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
            "roles": ["x", "y"], "elapsedTime": 3, "userId": null, "big": "a\"b"})
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
                None
            ]
            .map(|found| found.map(str::to_owned))
        );
        assert!(strings("[1, 2]", &paths).is_err());
        assert!(strings("{\"_id\": ", &paths).is_err());
    }
}
