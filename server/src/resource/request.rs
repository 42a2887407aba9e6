//! CREST requests without a transport: the resource path, the method mapped to a CREST
//! operation as IDM's HTTP adapter does (§1.2), request parameters with `_`-names matched
//! case-insensitively, conditional headers, and the JSON body rules (§1.4). The HTTP edge builds
//! them from actix requests; the script host builds them directly.

use bytes::Bytes;
use ferridm_core::{Error, Object, Result};
use serde_json::Value;

use super::path::ResourcePath;

/// The request method after `X-HTTP-Method-Override`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET: read or query.
    Get,
    /// PUT: create or update.
    Put,
    /// POST: create or action.
    Post,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl Method {
    /// The method named by an HTTP method token (`None` for methods CREST does not use).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "GET" => Some(Self::Get),
            "PUT" => Some(Self::Put),
            "POST" => Some(Self::Post),
            "PATCH" => Some(Self::Patch),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// The CREST operation a request performs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Create (POST `_action=create` or no action, PUT with `If-None-Match: *`).
    Create,
    /// PUT without conditional headers: create, or update when the object exists.
    Upsert,
    /// Read.
    Read,
    /// Update (PUT with `If-Match`).
    Update,
    /// Patch.
    Patch,
    /// Delete.
    Delete,
    /// Query (GET with `_queryFilter`, `_queryId` or `_queryExpression`).
    Query,
    /// An action (POST `_action=<name>`).
    Action(String),
}

impl Operation {
    /// The operation's name in access rules (`create`, `read`, …).
    pub fn rule_name(&self) -> &'static str {
        match self {
            Self::Create | Self::Upsert => "create",
            Self::Read => "read",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::Query => "query",
            Self::Action(_) => "action",
        }
    }

    /// The action name, for actions.
    pub fn action(&self) -> Option<&str> {
        match self {
            Self::Action(name) => Some(name),
            _ => None,
        }
    }
}

/// Request parameters in order; names starting with `_` are lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

/// Parameters that may appear at most once.
const SINGLE_VALUED: [&str; 12] = [
    "_action",
    "_queryfilter",
    "_queryid",
    "_queryexpression",
    "_pagesize",
    "_pagedresultsoffset",
    "_pagedresultscookie",
    "_totalpagedresultspolicy",
    "_prettyprint",
    "_mimetype",
    "_crestapi",
    "_id",
];

impl Params {
    /// Parses a raw query string (`+` is a space, values are percent-decoded).
    pub fn parse(query: &str) -> Result<Self> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let name = if name.starts_with('_') {
                name.to_ascii_lowercase()
            } else {
                name.into_owned()
            };
            if SINGLE_VALUED.contains(&name.as_str()) && pairs.iter().any(|(known, _)| *known == name) {
                return Err(Error::bad_request(format!(
                    "Multiple values provided for the single-valued request parameter '{}'",
                    canonical_name(&name)
                )));
            }
            pairs.push((name, value.into_owned()));
        }
        Ok(Self { pairs })
    }

    /// Parameters from name/value pairs (names as in [`Params::parse`]: `_`-names lower case).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            pairs: pairs
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        }
    }

    /// The value of a single-valued parameter (name in lower case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of a (possibly repeated) parameter.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(known, _)| known == name)
            .map(|(_, value)| value.as_str())
    }

    /// True when the parameter is present.
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(known, _)| known == name)
    }

    /// Parameters whose names do not start with `_` (arguments of queries and actions).
    pub fn additional(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .filter(|(name, _)| !name.starts_with('_'))
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

/// The documented spelling of a parameter for messages.
fn canonical_name(lower: &str) -> &str {
    match lower {
        "_queryfilter" => "_queryFilter",
        "_queryid" => "_queryId",
        "_queryexpression" => "_queryExpression",
        "_pagesize" => "_pageSize",
        "_pagedresultsoffset" => "_pagedResultsOffset",
        "_pagedresultscookie" => "_pagedResultsCookie",
        "_totalpagedresultspolicy" => "_totalPagedResultsPolicy",
        "_prettyprint" => "_prettyPrint",
        "_mimetype" => "_mimeType",
        "_sortkeys" => "_sortKeys",
        other => other,
    }
}

/// The body of a request: raw bytes with their content type (from HTTP, checked when read),
/// or a JSON value built by the server itself.
#[derive(Debug, Clone)]
pub enum Body {
    /// Bytes as received, with `Content-Type` as sent.
    Raw {
        /// `Content-Type` as sent.
        content_type: Option<String>,
        /// The bytes.
        bytes: Bytes,
    },
    /// A value from an internal caller (no content-type rules apply).
    Json(Value),
}

/// A request as ferridm's resources see it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method after `X-HTTP-Method-Override`.
    pub method: Method,
    /// The resource addressed.
    pub path: ResourcePath,
    /// Query parameters.
    pub params: Params,
    /// `If-Match` without quotes.
    pub if_match: Option<String>,
    /// `If-None-Match` without quotes.
    pub if_none_match: Option<String>,
    /// The body.
    pub body: Body,
}

/// Removes the quotes around an entity tag.
pub fn unquote(value: &str) -> String {
    let trimmed = value.trim();
    trimmed
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(trimmed)
        .to_owned()
}

/// Checks `Accept-API-Version`: protocol 2.1 at most.
pub fn check_api_version(value: &str) -> Result<()> {
    for part in value.split(',') {
        let Some((key, version)) = part.split_once('=') else {
            return Err(Error::bad_request(format!(
                "Unable to parse the Accept-API-Version header: {value}"
            )));
        };
        if !key.trim().eq_ignore_ascii_case("protocol") {
            continue;
        }
        let (major, minor) = version.trim().split_once('.').unwrap_or((version.trim(), "0"));
        let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else {
            return Err(Error::bad_request(format!(
                "Unable to parse the Accept-API-Version header: {value}"
            )));
        };
        if major > 2 {
            return Err(Error::bad_request(format!("Unsupported major version: {major}")));
        }
        if major == 2 && minor > 1 {
            return Err(Error::bad_request(format!("Unsupported minor version: {minor}")));
        }
    }
    Ok(())
}

impl Request {
    /// An internal request (the script host's): `params` as given, `content` as the body.
    pub fn internal(method: Method, path: ResourcePath, params: Params, content: Option<Value>) -> Self {
        Self {
            method,
            path,
            params,
            if_match: None,
            if_none_match: None,
            body: Body::Json(content.unwrap_or(Value::Null)),
        }
    }

    /// The CREST operation (§1.2).
    pub fn operation(&self) -> Result<Operation> {
        let method = self.method;
        if method == Method::Get {
            if ["_queryid", "_queryfilter", "_queryexpression"]
                .iter()
                .any(|name| self.params.has(name))
            {
                self.check_query_parameters()?;
                return Ok(Operation::Query);
            }
            return Ok(Operation::Read);
        }
        if method == Method::Put {
            return match (&self.if_none_match, &self.if_match) {
                (Some(value), _) if value != "*" => Err(Error::bad_request(format!(
                    "\"{value}\" is not a supported value for If-None-Match on PUT"
                ))),
                (Some(_), Some(_)) => Err(Error::PreconditionFailed(
                    "Simultaneous use of If-Match and If-None-Match not supported for PUT requests".into(),
                )),
                (Some(_), None) => Ok(Operation::Create),
                (None, Some(_)) => Ok(Operation::Update),
                (None, None) => Ok(Operation::Upsert),
            };
        }
        if method == Method::Post {
            return Ok(match self.params.get("_action") {
                None => Operation::Create,
                Some(action) if action.eq_ignore_ascii_case("create") => Operation::Create,
                Some(action) => Operation::Action(action.to_owned()),
            });
        }
        if method == Method::Patch {
            return Ok(Operation::Patch);
        }
        Ok(Operation::Delete)
    }

    /// Refuses two ways of naming one query (`_queryFilter`, `_queryId`, `_queryExpression`);
    /// checked before authorization, as IDM does.
    pub fn check_query_parameters(&self) -> Result<()> {
        let given = |name: &str| self.params.has(name);
        let clash = match (given("_queryfilter"), given("_queryid"), given("_queryexpression")) {
            (true, true, _) => Some(("_queryId", "_queryFilter")),
            (_, true, true) => Some(("_queryId", "_queryExpression")),
            (true, _, true) => Some(("_queryFilter", "_queryExpression")),
            _ => None,
        };
        match clash {
            Some((a, b)) => Err(Error::bad_request(format!(
                "The parameters {a} and {b} are mutually exclusive"
            ))),
            None => Ok(()),
        }
    }

    /// Checks the conditional headers against the operation (§1.5).
    pub fn check_conditions(&self, operation: &Operation) -> Result<()> {
        let refuse = |message: &str| Err(Error::PreconditionFailed(message.to_owned()));
        match operation {
            Operation::Read => {
                if self.if_match.is_some() {
                    return refuse("If-Match not supported for GET requests");
                }
                if self.if_none_match.as_deref() == Some("*") {
                    return refuse("If-None-Match * not appropriate for GET requests");
                }
            }
            Operation::Query if (self.if_match.is_some() || self.if_none_match.is_some()) => {
                return refuse("Conditional headers are not supported for query requests");
            }
            Operation::Create if self.method == Method::Post => {
                if self.if_match.is_some() {
                    return refuse("If-Match not supported for POST requests");
                }
                if self.if_none_match.is_some() {
                    return refuse("If-None-Match not supported for POST requests");
                }
            }
            Operation::Patch if self.if_none_match.is_some() => {
                return refuse("Use of If-None-Match not supported for PATCH requests");
            }
            Operation::Delete if self.if_none_match.is_some() => {
                return refuse("Use of If-None-Match not supported for DELETE requests");
            }
            Operation::Action(_) if self.if_match.is_some() || self.if_none_match.is_some() => {
                return refuse("Conditional headers are not supported for action requests");
            }
            _ => {}
        }
        Ok(())
    }

    /// The `_fields` values.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.params.all("_fields")
    }

    /// True when `_prettyPrint=true`.
    pub fn pretty(&self) -> bool {
        self.params
            .get("_prettyprint")
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }

    fn check_content_type(content_type: Option<&String>, required: bool, allow_patch_type: bool) -> Result<()> {
        match content_type {
            None if required => Err(Error::bad_request(
                "The request could not be processed because the  content-type was not specified and is required",
            )),
            None => Ok(()),
            Some(content_type) => {
                let mut parts = content_type.split(';').map(str::trim);
                let mime = parts.next().unwrap_or_default().to_ascii_lowercase();
                let charset_ok = parts.all(|part| {
                    part.split_once('=').is_some_and(|(key, value)| {
                        key.trim().eq_ignore_ascii_case("charset")
                            && value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
                    })
                });
                let mime_ok = mime == "application/json"
                    || mime == "multipart/form-data"
                    || (allow_patch_type && mime == "application/json-patch+json");
                if mime_ok && (charset_ok || mime == "multipart/form-data") {
                    Ok(())
                } else {
                    Err(Error::bad_request(format!(
                        "The request could not be processed because it specified the content-type '{content_type}' when only the content-type 'application/json' and 'multipart/form-data' are supported"
                    )))
                }
            }
        }
    }

    /// The JSON body for a create, update or patch: `Content-Type` required, one JSON document.
    pub fn content(&self, operation: &Operation) -> Result<Value> {
        match &self.body {
            Body::Json(Value::Null) => Err(Error::bad_request(
                "The request could not be processed because it did not contain any JSON content",
            )),
            Body::Json(value) => Ok(value.clone()),
            Body::Raw { content_type, bytes } => {
                Self::check_content_type(content_type.as_ref(), true, *operation == Operation::Patch)?;
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Err(Error::bad_request(
                        "The request could not be processed because it did not contain any JSON content",
                    ));
                }
                parse_json(bytes)
            }
        }
    }

    /// The JSON body of an action: optional; empty means `null`.
    pub fn action_content(&self) -> Result<Value> {
        match &self.body {
            Body::Json(value) => Ok(value.clone()),
            Body::Raw { content_type, bytes } => {
                Self::check_content_type(content_type.as_ref(), false, false)?;
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Value::Null);
                }
                parse_json(bytes)
            }
        }
    }

    /// The create/update body as a JSON object.
    pub fn object_content(&self, operation: &Operation) -> Result<Object> {
        match self.content(operation)? {
            Value::Object(object) => Ok(object),
            _ => Err(Error::bad_request(
                "The request could not be processed because the provided content is not a JSON object",
            )),
        }
    }
}

/// Parses exactly one JSON document (IDM's messages for invalid JSON and trailing data).
pub fn parse_json(bytes: &[u8]) -> Result<Value> {
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Value>();
    let value = match stream.next() {
        Some(Ok(value)) => value,
        Some(Err(error)) => {
            return Err(Error::Custom {
                code: 400,
                message: "The request could not be processed because the provided content is not valid JSON".into(),
                detail: Some(Value::String(error.to_string())),
            });
        }
        None => {
            return Err(Error::bad_request(
                "The request could not be processed because it did not contain any JSON content",
            ));
        }
    };
    let rest = &bytes[stream.byte_offset()..];
    if !rest.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::bad_request(
            "The request could not be processed because there is trailing data after the JSON content",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underscore_parameters_are_case_insensitive_and_single_valued() {
        let params = Params::parse("_QueryFilter=true&_fields=a&_fields=b&uid=x").unwrap();
        assert_eq!(params.get("_queryfilter"), Some("true"));
        assert_eq!(params.all("_fields").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(params.additional().collect::<Vec<_>>(), [("uid", "x")]);
        let error = Params::parse("_action=a&_ACTION=b").unwrap_err();
        assert_eq!(
            error,
            Error::bad_request("Multiple values provided for the single-valued request parameter '_action'")
        );
    }

    #[test]
    fn plus_is_a_space_in_parameters() {
        let params = Params::parse("_queryFilter=userName+eq+%22x%22").unwrap();
        assert_eq!(params.get("_queryfilter"), Some("userName eq \"x\""));
    }

    #[test]
    fn json_bodies_refuse_trailing_data_and_garbage() {
        assert!(parse_json(b"{\"a\":1}  ").is_ok());
        assert_eq!(
            parse_json(b"{\"a\":1} x").unwrap_err(),
            Error::bad_request(
                "The request could not be processed because there is trailing data after the JSON content"
            )
        );
        assert!(matches!(parse_json(b"{oops"), Err(Error::Custom { code: 400, .. })));
    }

    #[test]
    fn api_versions_above_two_one_are_refused() {
        assert!(check_api_version("protocol=2.1,resource=1.0").is_ok());
        assert!(check_api_version("resource=1.0").is_ok());
        assert_eq!(
            check_api_version("protocol=3.0").unwrap_err(),
            Error::bad_request("Unsupported major version: 3")
        );
        assert_eq!(
            check_api_version("protocol=2.2").unwrap_err(),
            Error::bad_request("Unsupported minor version: 2")
        );
        assert!(check_api_version("garbage").is_err());
    }
}
