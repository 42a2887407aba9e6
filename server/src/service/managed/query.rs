//! Queries on managed objects: `_queryFilter` and IDM's predefined `_queryId`s, with paging and
//! sorting, read from a request's parameters.

use ferridm_core::filter::{self, ComparisonOp, Filter, FilterError, Literal};
use ferridm_core::query::{Paging, SortKey, parse_sort_keys};
use ferridm_core::{Error, JsonPointer, Result};

use crate::config::managed::ManagedType;
use crate::resource::Params;

/// A parsed query request (`_queryFilter` or `_queryId`, sorting, paging, fields).
#[derive(Debug, Clone)]
pub struct QueryRequest {
    /// The filter to run.
    pub filter: Filter,
    /// Ids and revisions only (`query-all-ids`).
    pub ids_only: bool,
    /// Sort keys.
    pub sort: Vec<SortKey>,
    /// Paging.
    pub paging: Paging,
}

/// The filter for a `_queryFilter` value, with IDM's 400 messages.
pub fn parse_filter(text: &str) -> Result<Filter> {
    let filter = filter::parse(text).map_err(|error| match error {
        FilterError::Invalid => Error::bad_request(format!(
            "The value '{text}' for parameter '_queryFilter' could not be parsed as a valid query filter"
        )),
        FilterError::TooLong { max } => Error::bad_request(format!(
            "The value for parameter '_queryFilter' is longer than {max} characters"
        )),
        FilterError::TooDeep { max } => Error::bad_request(format!(
            "The value for parameter '_queryFilter' is nested deeper than {max} levels"
        )),
    })?;
    if let Some(operator) = filter.first_extended_operator() {
        return Err(Error::bad_request(format!("Unsupported operator {operator}")));
    }
    Ok(filter)
}

/// The filter and shape of a predefined `_queryId` with its arguments.
pub fn predefined_query<'a>(query_id: &str, argument: impl Fn(&str) -> Option<&'a str>) -> Result<(Filter, bool)> {
    let required = |name: &str| {
        argument(name).ok_or_else(|| Error::bad_request(format!("The query {query_id} needs the parameter {name}")))
    };
    let equals = |field: &str, value: &str| Filter::Comparison {
        field: JsonPointer::parse(field),
        op: ComparisonOp::Eq,
        value: Literal::String(value.to_owned()),
    };
    match query_id {
        "query-all-ids" => Ok((Filter::True, true)),
        "query-all" => Ok((Filter::True, false)),
        "for-userName" => Ok((equals("userName", required("uid")?), false)),
        "get-by-field-value" => Ok((equals(required("field")?, required("value")?), false)),
        "credential-query" => Ok((
            Filter::And(vec![
                equals("userName", required("username")?),
                equals("accountStatus", "active"),
            ]),
            false,
        )),
        other => Err(Error::bad_request(format!(
            "The passed query identifier {other} does not match any configured queries on the JDBC repository service."
        ))),
    }
}

/// Builds a query request from `_queryFilter` / `_queryId` and the paging parameters.
pub fn from_params(params: &Params) -> Result<QueryRequest> {
    let filter_text = params.get("_queryfilter");
    let query_id = params.get("_queryid");
    let expression = params.get("_queryexpression");
    match (filter_text.is_some(), query_id.is_some(), expression.is_some()) {
        (false, false, true) => return Err(Error::Forbidden("Access denied".into())),
        (false, false, false) => return Err(Error::bad_request("A query needs _queryFilter or _queryId")),
        _ => {}
    }
    let (filter, ids_only) = match (filter_text, query_id) {
        (Some(text), _) => (parse_filter(text)?, false),
        (None, Some(id)) => predefined_query(id, |name| {
            params
                .additional()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value)
        })?,
        (None, None) => (Filter::True, false),
    };
    let paging = Paging::from_params(
        params.get("_pagesize"),
        params.get("_pagedresultsoffset"),
        params.get("_pagedresultscookie"),
        params.get("_totalpagedresultspolicy"),
    )?;
    Ok(QueryRequest {
        filter,
        ids_only,
        sort: parse_sort_keys(params.all("_sortkeys"))?,
        paging,
    })
}

/// True when `filter` reads at most one object of `object_type` with one index probe: an `eq`
/// with a non-empty string on an indexed unique property declared a string (its values are
/// unique among the type's objects, compared as `eq` compares them). Such a query costs what a read by id
/// does, so it runs where reads do and takes no turn among client queries. A conjunction does
/// not qualify: each operand of an `and` is computed in full before the sets are intersected.
pub fn pins_one_object(filter: &Filter, object_type: &ManagedType) -> bool {
    match filter {
        Filter::Comparison {
            field,
            op: ComparisonOp::Eq,
            value: Literal::String(text),
        } if !text.is_empty() => match field.segments() {
            [property] => {
                object_type.index.unique.contains(property)
                    && object_type.index.indexed.holds(property)
                    && object_type
                        .schema
                        .property(property)
                        .is_some_and(|schema| schema.types == ["string"])
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use ferridm_core::schema::ManagedConfig;
    use serde_json::json;

    use super::*;
    use crate::config::managed::Triggers;

    #[test]
    fn predefined_queries_build_filters() {
        let (filter, ids_only) = predefined_query("query-all-ids", |_| None).unwrap();
        assert_eq!((filter, ids_only), (Filter::True, true));
        let (filter, _) = predefined_query("for-userName", |name| (name == "uid").then_some("bjensen")).unwrap();
        assert_eq!(filter.to_string(), "/userName eq \"bjensen\"");
        assert!(predefined_query("for-userName", |_| None).is_err());
        assert!(predefined_query("nope", |_| None).is_err());
    }

    #[test]
    fn extended_operators_are_refused() {
        assert_eq!(
            parse_filter("name regex \"a\"").unwrap_err(),
            Error::bad_request("Unsupported operator regex")
        );
        assert!(matches!(parse_filter("foo eq bar"), Err(Error::BadRequest(m)) if m.contains("could not be parsed")));
    }

    fn user_type() -> ManagedType {
        let config = ManagedConfig::from_json(&json!({"objects": [{
            "name": "user",
            "schema": {"properties": {
                "userName": {"type": "string", "searchable": true, "policies": [{"policyId": "valid-username"}]},
                "mail": {"type": "string"},
                "badge": {"type": "string", "policies": [{"policyId": "unique"}]},
                "code": {"type": ["string", "number"], "policies": [{"policyId": "unique"}]},
                "address": {"type": "object", "properties": {"line": {"type": "string"}}}
            }}
        }]}))
        .unwrap();
        ManagedType::new(config.object_type("user").unwrap().clone(), Triggers::default(), false)
    }

    fn pins(filter: &str) -> bool {
        pins_one_object(&filter::parse(filter).unwrap(), &user_type())
    }

    #[test]
    fn only_an_equality_on_a_unique_string_pins_one_object() {
        assert!(pins(r#"userName eq "bjensen""#));
        assert!(
            !pins(r#"mail eq "a@example.com" and userName eq "bjensen""#),
            "each operand of an and is computed in full"
        );
        assert!(!pins(r#"userName eq """#), "empty strings are not unique");
        assert!(!pins(r#"userName eq 5"#));
        assert!(!pins(r#"userName sw "b""#));
        assert!(!pins(r#"userName eq "bjensen" or mail eq "a@example.com""#));
        assert!(!pins(r#"!(userName eq "bjensen")"#));
        assert!(!pins(r#"mail eq "a@example.com""#), "not unique");
        assert!(!pins(r#"code eq "7""#), "unique, but not only a string");
        assert!(
            !pins(r#"badge eq "7""#),
            "unique, but read from the objects: not indexed"
        );
        assert!(!pins(r#"address/line eq "x""#));
    }
}
