//! `audit/<topic>`: the audit events the repository handler stored, queried with `_queryFilter`
//! (compiled to indexed SQL like managed-object queries), sorted, paged and narrowed by
//! `_fields`, or read one by id. Administrators only (by the access rules).

use ferridm_core::fields::FieldSelection;
use ferridm_core::query::{CountPolicy, QueryResponse};
use ferridm_core::{Error, Result};
use ferridm_store::{ObjectQuery, StoredObject};
use serde_json::Value;

use crate::audit::{repository_index, repository_type};
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
fn event_json(stored: &StoredObject, fields: &FieldSelection) -> Value {
    let mut event = serde_json::Map::new();
    event.insert("_id".to_owned(), Value::String(stored.id.clone()));
    event.extend(fields.select(&stored.content, &super::EveryField));
    Value::Object(event)
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
    let page = ctx
        .state
        .store
        .query(&ObjectQuery {
            object_type: &repository_type(topic),
            filter: &query.filter,
            sort: &query.sort,
            page_size,
            offset: if page_size.is_some() { query.paging.offset } else { 0 },
            cookie: query.paging.cookie.as_deref(),
            count: page_size.is_some() && query.paging.count != CountPolicy::None,
            with_content: true,
            limit,
            index: &repository_index(),
            time_limit: ctx.generation.settings.queries.time_limit(),
        })
        .map_err(storage_error)?;
    if page_size.is_none() && page.objects.len() as u64 > limit {
        return Err(Error::bad_request(format!(
            "The query matches more than {limit} events; page through the results with _pageSize"
        )));
    }
    let ids_only = FieldSelection::parse(["_id"]);
    let fields = if query.ids_only { &ids_only } else { &fields };
    Ok(Reply::ok(
        QueryResponse {
            result: page.objects.iter().map(|stored| event_json(stored, fields)).collect(),
            paged_results_cookie: page.cookie,
            total: page.total,
        }
        .to_json(),
    ))
}

/// `GET audit/<topic>/<id>`.
pub fn read(ctx: &RequestContext, request: &Request, topic: &str, id: &str) -> Result<Reply> {
    let topic = queryable_topic(ctx, topic)?;
    let stored = ctx
        .state
        .store
        .get(&repository_type(topic), id)
        .map_err(storage_error)?
        .ok_or_else(|| Error::NotFound(format!("Resource 'audit/{topic}/{id}' not found")))?;
    Ok(Reply::ok(event_json(&stored, &FieldSelection::parse(request.fields()))))
}
