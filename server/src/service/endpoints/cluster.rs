//! `cluster` and `cluster/<node>`: the nodes serving this database (IDM's cluster resource);
//! `cluster/work`: the work that must run once and is in progress, with who holds it and how
//! far it got.

use ferridm_core::query::QueryResponse;
use ferridm_core::{Error, Result, filter};
use serde_json::{Value, json};

use crate::resource::{Reply, Request};
use crate::service::cluster::{iso, node_view};
use crate::service::context::RequestContext;
use crate::service::storage_error;

fn views(ctx: &RequestContext) -> Result<Vec<Value>> {
    let nodes = ctx.state.store.nodes().map_err(storage_error)?;
    Ok(nodes.iter().map(|node| node_view(&ctx.state, node)).collect())
}

/// `GET /openidm/cluster?_queryFilter=…`: every node, filtered.
pub fn query(ctx: &RequestContext, request: &Request) -> Result<Reply> {
    matching(request, views(ctx)?)
}

/// The entries of `all` that match the request's `_queryFilter`, in IDM's query envelope.
fn matching(request: &Request, all: Vec<Value>) -> Result<Reply> {
    let query = crate::service::managed::query::from_params(&request.params)?;
    let result: Vec<Value> = all
        .into_iter()
        .filter(|entry| filter::matches(&query.filter, entry))
        .collect();
    Ok(Reply::ok(
        QueryResponse {
            result,
            paged_results_cookie: None,
            total: None,
        }
        .to_json(),
    ))
}

/// `GET /openidm/cluster/<node>`.
pub fn read(ctx: &RequestContext, node: &str) -> Result<Reply> {
    views(ctx)?
        .into_iter()
        .find(|view| view["_id"] == node)
        .map(Reply::ok)
        .ok_or_else(|| Error::NotFound(format!("Node {node} not found")))
}

/// `GET /openidm/cluster/work?_queryFilter=…`: the run-once jobs in progress.
pub fn query_work(ctx: &RequestContext, request: &Request) -> Result<Reply> {
    let jobs = ctx.state.store.work_in_progress().map_err(storage_error)?;
    let all = jobs
        .iter()
        .map(|job| {
            json!({
                "_id": job.job,
                "holder": job.holder,
                "target": job.target,
                "leaseExpires": iso(job.expires),
                "done": job.done,
            })
        })
        .collect();
    matching(request, all)
}
