//! Query parameters and the query response envelope (IDM §3.5–3.6): sort keys, paging, count
//! policy, each parsed with IDM's exact 400 messages, and the `{result, resultCount,
//! pagedResultsCookie, totalPagedResultsPolicy, totalPagedResults, remainingPagedResults}` body.

use serde_json::{Value, json};

use crate::{Error, JsonPointer, Result};

/// Most sort keys one query may use.
pub const MAX_SORT_KEYS: usize = 8;
/// Deepest pointer a sort key or field may use.
pub const MAX_POINTER_DEPTH: usize = 16;

/// `_totalPagedResultsPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CountPolicy {
    /// No count (`-1`).
    #[default]
    None,
    /// An exact count.
    Exact,
    /// An estimate (ferridm answers exactly).
    Estimate,
}

impl CountPolicy {
    /// Parses the parameter (case-insensitive).
    pub fn parse(value: &str) -> Result<Self> {
        match value.to_ascii_uppercase().as_str() {
            "NONE" => Ok(Self::None),
            "EXACT" => Ok(Self::Exact),
            "ESTIMATE" => Ok(Self::Estimate),
            _ => Err(Error::bad_request(format!(
                "The value '{value}' for parameter '_totalPagedResultsPolicy' could not be parsed as a valid count policy"
            ))),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Exact => "EXACT",
            Self::Estimate => "ESTIMATE",
        }
    }
}

/// One `_sortKeys` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// The field sorted on.
    pub field: JsonPointer,
    /// Ascending (`+` or no sign) or descending (`-`).
    pub ascending: bool,
}

/// Parses the (possibly repeated) `_sortKeys` values; keys accumulate in order.
pub fn parse_sort_keys<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<SortKey>> {
    let mut keys = Vec::new();
    for value in values {
        let invalid = || {
            Error::bad_request(format!(
                "The value '{value}' for parameter '_sortKeys' could not be parsed as a comma separated list of sort keys"
            ))
        };
        for raw in value.split(',') {
            let key = raw.trim_start_matches(' ');
            let (ascending, field) = match key.as_bytes().first() {
                Some(b'+') => (true, &key[1..]),
                Some(b'-') => (false, &key[1..]),
                _ => (true, key),
            };
            let field = JsonPointer::parse(field.trim_start_matches(' '));
            if field.is_root() {
                return Err(invalid());
            }
            if field.len() > MAX_POINTER_DEPTH {
                return Err(Error::bad_request(format!(
                    "The sort key '{key}' is nested deeper than {MAX_POINTER_DEPTH} levels"
                )));
            }
            keys.push(SortKey { field, ascending });
        }
    }
    if keys.len() > MAX_SORT_KEYS {
        return Err(Error::bad_request(format!(
            "At most {MAX_SORT_KEYS} sort keys may be given"
        )));
    }
    Ok(keys)
}

/// Parses an integer request parameter with IDM's message.
pub fn parse_integer(name: &str, value: &str) -> Result<i64> {
    value.trim().parse::<i64>().map_err(|_| {
        Error::bad_request(format!(
            "The value '{value}' for parameter '{name}' could not be parsed as a valid integer"
        ))
    })
}

/// Paging as requested.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Paging {
    /// Page size; paging is on when this is `Some` (a value > 0 was given).
    pub page_size: Option<u32>,
    /// `_pagedResultsOffset` (negative values become 0).
    pub offset: u64,
    /// `_pagedResultsCookie` as sent.
    pub cookie: Option<String>,
    /// `_totalPagedResultsPolicy`.
    pub count: CountPolicy,
}

impl Paging {
    /// Builds paging from the raw parameters, with IDM's checks and messages.
    pub fn from_params(
        page_size: Option<&str>,
        offset: Option<&str>,
        cookie: Option<&str>,
        count: Option<&str>,
    ) -> Result<Self> {
        let page_size = match page_size {
            Some(value) => {
                let size = parse_integer("_pageSize", value)?;
                (size > 0).then(|| u32::try_from(size).unwrap_or(u32::MAX))
            }
            None => None,
        };
        let offset = match offset {
            Some(value) => u64::try_from(parse_integer("_pagedResultsOffset", value)?).unwrap_or(0),
            None => 0,
        };
        let cookie = cookie.filter(|c| !c.is_empty()).map(str::to_owned);
        if offset > 0 && cookie.is_some() {
            return Err(Error::bad_request(
                "The parameters _pagedResultsOffset and _pagedResultsCookie are mutually exclusive",
            ));
        }
        let count = count.map(CountPolicy::parse).transpose()?.unwrap_or_default();
        Ok(Self {
            page_size,
            offset,
            cookie,
            count,
        })
    }
}

/// A query's answer, ready to be written as IDM's envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResponse {
    /// The result objects, already filtered for the caller.
    pub result: Vec<Value>,
    /// Continuation for the next page, if any.
    pub paged_results_cookie: Option<String>,
    /// Total matches when counted (`EXACT` policy on the wire), else `None` (`NONE`, `-1`).
    pub total: Option<u64>,
}

impl QueryResponse {
    /// The response body.
    pub fn to_json(&self) -> Value {
        let (policy, total) = match self.total {
            Some(total) => ("EXACT", i64::try_from(total).unwrap_or(i64::MAX)),
            None => ("NONE", -1),
        };
        json!({
            "result": self.result,
            "resultCount": self.result.len(),
            "pagedResultsCookie": self.paged_results_cookie,
            "totalPagedResultsPolicy": policy,
            "totalPagedResults": total,
            "remainingPagedResults": -1
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_take_signs_and_accumulate() {
        let keys = parse_sort_keys(["-name,+age", "sn"]).unwrap();
        assert_eq!(keys.len(), 3);
        assert!(!keys[0].ascending);
        assert_eq!(keys[0].field.to_string(), "/name");
        assert!(keys[1].ascending && keys[2].ascending);
    }

    #[test]
    fn a_leading_space_is_a_plus_sign_lost_in_the_url() {
        let keys = parse_sort_keys([" sn"]).unwrap();
        assert_eq!(keys[0].field.to_string(), "/sn");
        assert!(keys[0].ascending);
    }

    #[test]
    fn empty_sort_keys_are_refused() {
        let err = parse_sort_keys(["a,,b"]).unwrap_err();
        assert_eq!(
            err,
            Error::bad_request(
                "The value 'a,,b' for parameter '_sortKeys' could not be parsed as a comma separated list of sort keys"
            )
        );
        assert!(parse_sort_keys(["+"]).is_err());
    }

    #[test]
    fn too_many_or_too_deep_sort_keys_are_refused() {
        assert!(parse_sort_keys(["a,b,c,d,e,f,g,h,i"]).is_err());
        assert!(parse_sort_keys(["a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q"]).is_err());
    }

    #[test]
    fn count_policy_is_case_insensitive() {
        assert_eq!(CountPolicy::parse("exact").unwrap(), CountPolicy::Exact);
        assert_eq!(
            CountPolicy::parse("foo").unwrap_err(),
            Error::bad_request(
                "The value 'foo' for parameter '_totalPagedResultsPolicy' could not be parsed as a valid count policy"
            )
        );
    }

    #[test]
    fn paging_checks_integers_and_exclusivity() {
        assert_eq!(
            Paging::from_params(Some("abc"), None, None, None).unwrap_err(),
            Error::bad_request("The value 'abc' for parameter '_pageSize' could not be parsed as a valid integer")
        );
        assert!(Paging::from_params(Some("2"), Some("1"), Some("x"), None).is_err());
        let paging = Paging::from_params(Some("0"), Some("-3"), None, Some("EXACT")).unwrap();
        assert_eq!(paging.page_size, None);
        assert_eq!(paging.offset, 0);
        assert_eq!(paging.count, CountPolicy::Exact);
    }

    #[test]
    fn envelope_without_count() {
        let body = QueryResponse {
            result: vec![],
            paged_results_cookie: None,
            total: None,
        }
        .to_json();
        assert_eq!(
            body,
            serde_json::json!({"result": [], "resultCount": 0, "pagedResultsCookie": null,
                "totalPagedResultsPolicy": "NONE", "totalPagedResults": -1, "remainingPagedResults": -1})
        );
    }
}
