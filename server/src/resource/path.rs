//! Resource paths: the decoded segments after `/openidm` (`managed/user/bjensen`). This is the
//! one parser of paths; the router, the script host, the access checks and the login all ask it
//! what a path names.

use std::fmt;

use percent_encoding::percent_decode_str;

/// A resource path as decoded segments. An encoded `/` stays inside its segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourcePath {
    segments: Vec<String>,
}

/// What a path under `managed/` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagedPath<'a> {
    /// The object type (`user`).
    pub type_name: &'a str,
    /// The object id, for an instance.
    pub id: Option<&'a str>,
    /// Segments past the id (a sub-resource).
    pub rest: &'a [String],
}

impl<'a> ManagedPath<'a> {
    /// The instance id, when the path names exactly one object (no sub-resource).
    pub fn instance(&self) -> Option<&'a str> {
        self.id.filter(|_| self.rest.is_empty())
    }
}

impl ResourcePath {
    /// A path written by the server or a script (`managed/user/x`): split on `/`, empty segments
    /// dropped, nothing decoded.
    pub fn parse(text: &str) -> Self {
        Self {
            segments: text
                .split('/')
                .filter(|segment| !segment.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// The path of a request URL (`/openidm/managed/user/a%2Fb/`): the part after `/openidm`,
    /// each segment percent-decoded.
    pub fn from_url_path(raw_path: &str) -> Self {
        let rest = raw_path.strip_prefix("/openidm").unwrap_or(raw_path);
        Self {
            segments: rest
                .split('/')
                .filter(|segment| !segment.is_empty())
                .map(|segment| percent_decode_str(segment).decode_utf8_lossy().into_owned())
                .collect(),
        }
    }

    /// The decoded segments.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The segments as string slices, for matching.
    pub fn parts(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }

    /// The path under `managed/`, if it is one (at least a type).
    pub fn managed(&self) -> Option<ManagedPath<'_>> {
        match self.segments.as_slice() {
            [root, type_name, rest @ ..] if root == "managed" => Some(ManagedPath {
                type_name,
                id: rest.first().map(String::as_str),
                rest: rest.get(1..).unwrap_or_default(),
            }),
            _ => None,
        }
    }

    /// The path below `prefix` (its first segment), joined with `/` — `config/selfservice/x`
    /// below `config` is `selfservice/x`.
    pub fn rest_after_first(&self) -> String {
        self.segments.get(1..).unwrap_or_default().join("/")
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segments.join("/"))
    }
}

/// The collection a module or principal names (`managed/user` → `user`), if it is managed.
pub fn managed_type(collection: &str) -> Option<&str> {
    collection.strip_prefix("managed/").filter(|name| !name.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths_decode_per_segment() {
        assert_eq!(
            ResourcePath::from_url_path("/openidm/managed/user/a%2Fb/").segments(),
            ["managed", "user", "a/b"]
        );
        assert!(ResourcePath::from_url_path("/openidm").segments().is_empty());
    }

    #[test]
    fn managed_paths_name_type_id_and_rest() {
        let path = ResourcePath::parse("managed/user/bjensen/roles");
        let managed = path.managed().unwrap();
        assert_eq!(
            (managed.type_name, managed.id, managed.rest.len()),
            ("user", Some("bjensen"), 1)
        );
        assert_eq!(managed.instance(), None);
        assert_eq!(
            ResourcePath::parse("/managed/user/x/").managed().unwrap().instance(),
            Some("x")
        );
        assert_eq!(ResourcePath::parse("managed/user").managed().unwrap().id, None);
        assert!(ResourcePath::parse("managed").managed().is_none());
        assert!(ResourcePath::parse("internal/user/x").managed().is_none());
        assert_eq!(
            ResourcePath::parse("config/selfservice/reset").rest_after_first(),
            "selfservice/reset"
        );
        assert_eq!(managed_type("managed/user"), Some("user"));
        assert_eq!(managed_type("internal/user"), None);
    }
}
