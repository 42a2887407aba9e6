//! `audit/<topic>`: the audit events the repository handler stored, queried with `_queryFilter`
//! (compiled to SQL over the fields the store keeps as columns: `_id`, `timestamp`,
//! `eventName`, `transactionId`, `userId` and the topic's own, see
//! [`queryable_fields`]), sorted, paged and narrowed by `_fields`, or read one by id.
//! Administrators only (by the access rules).

use ferridm_core::fields::FieldSelection;
use ferridm_core::filter::Filter;
use ferridm_core::query::{CountPolicy, QueryResponse};
use ferridm_core::{Error, JsonPointer, Object, Result};
use ferridm_store::{AuditFields, AuditQuery, column_of};
use serde_json::Value;

use crate::audit::queryable_fields;
use crate::config::audit::TOPICS;
use crate::resource::{Reply, Request};
use crate::service::context::RequestContext;
use crate::service::managed::query;
use crate::service::storage_error;

/// The topic, when it is one whose events the database holds.
fn queryable_topic<'a>(ctx: &RequestContext, topic: &'a str) -> Result<&'a str> {
    if !TOPICS.contains(&topic) {
        return Err(Error::NotFound(format!("Resource 'audit/{topic}' not found")));
    }
    if ctx.generation.audit.query_handler(topic).is_none() {
        return Err(Error::NotSupported(format!(
            "No audit event handler that answers queries records the topic {topic}: enable the repository handler for it in audit.json"
        )));
    }
    Ok(topic)
}

/// An event as returned: its `_id` always, then the selected fields.
fn event_json(id: &str, body: &Object, fields: &FieldSelection) -> Value {
    let mut event = serde_json::Map::new();
    event.insert("_id".to_owned(), Value::String(id.to_owned()));
    event.extend(fields.select(body, &super::EveryField));
    Value::Object(event)
}

/// Refuses a filter or sort key over a field the store does not keep as a column, naming the
/// ones it does.
fn check_queryable<'a>(
    topic: &str,
    fields: &AuditFields,
    mut named: impl Iterator<Item = &'a JsonPointer>,
) -> Result<()> {
    match named.find(|field| column_of(fields, field).is_none()) {
        None => Ok(()),
        Some(field) => {
            let known: Vec<&str> = std::iter::once("_id")
                .chain(fields.iter().map(|(name, _)| *name))
                .collect();
            Err(Error::bad_request(format!(
                "Audit events of the topic {topic} cannot be queried or sorted by {}; these fields can: {}",
                field.to_string().trim_start_matches('/'),
                known.join(", ")
            )))
        }
    }
}

/// The fields a filter compares or tests.
fn compared_fields(filter: &Filter) -> Vec<JsonPointer> {
    let mut named = Vec::new();
    filter.for_each_leaf(&mut |leaf| match leaf {
        Filter::Comparison { field, .. } | Filter::Present(field) => named.push(field.clone()),
        _ => {}
    });
    named
}

/// `GET audit/<topic>?_queryFilter=…`.
pub fn query(ctx: &RequestContext, request: &Request, topic: &str) -> Result<Reply> {
    let topic = queryable_topic(ctx, topic)?;
    let query = query::from_params(&request.params)?;
    let fields = FieldSelection::parse(request.fields());
    let limit = ctx.generation.settings.max_unpaged_query_results;
    let page_size = query.paging.page_size;
    let wait = ctx.generation.settings.queries.queue_timeout_millis;
    let _turn = ctx
        .state
        .queries
        .turn(wait, "Too many queries at once; try again later")?;
    let fields_of_topic = queryable_fields(topic);
    check_queryable(
        topic,
        fields_of_topic,
        compared_fields(&query.filter)
            .iter()
            .chain(query.sort.iter().map(|key| &key.field)),
    )?;
    let page = ctx
        .state
        .store
        .query_audit(&AuditQuery {
            topic,
            fields: fields_of_topic,
            filter: &query.filter,
            sort: &query.sort,
            page_size,
            offset: if page_size.is_some() { query.paging.offset } else { 0 },
            cookie: query.paging.cookie.as_deref(),
            count: page_size.is_some() && query.paging.count != CountPolicy::None,
            limit,
            time_limit: ctx.generation.settings.queries.time_limit(),
        })
        .map_err(storage_error)?;
    if page_size.is_none() && page.events.len() as u64 > limit {
        return Err(Error::bad_request(format!(
            "The query matches more than {limit} events; page through the results with _pageSize"
        )));
    }
    let ids_only = FieldSelection::parse(["_id"]);
    let fields = if query.ids_only { &ids_only } else { &fields };
    Ok(Reply::ok(
        QueryResponse {
            result: page
                .events
                .iter()
                .map(|(id, body)| event_json(id, body, fields))
                .collect(),
            paged_results_cookie: page.cookie,
            total: page.total,
        }
        .to_json(),
    ))
}

/// `GET audit/<topic>/<id>`.
pub fn read(ctx: &RequestContext, request: &Request, topic: &str, id: &str) -> Result<Reply> {
    let topic = queryable_topic(ctx, topic)?;
    let body = ctx
        .state
        .store
        .audit_event(topic, id)
        .map_err(storage_error)?
        .ok_or_else(|| Error::NotFound(format!("Resource 'audit/{topic}/{id}' not found")))?;
    Ok(Reply::ok(event_json(
        id,
        &body,
        &FieldSelection::parse(request.fields()),
    )))
}
