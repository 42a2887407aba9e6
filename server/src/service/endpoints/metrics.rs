//! `GET /openidm/metrics/prometheus`: the server's metrics in the Prometheus text format. As in
//! IDM, a `STATIC_USER` module in `authentication.json` gives the metrics principal the role
//! [`PROMETHEUS_ROLE`]; that principal may read this page and nothing else. Other callers are
//! subject to `access.json` (its administrator rule lets `openidm-admin` read it too).

use ferridm_core::{Error, Result};

use crate::metrics::{CONTENT_TYPE, Metrics, Scrape};
use crate::resource::{Operation, Reply, Request};
use crate::service::RequestContext;

/// The role of the metrics principal (IDM's `openidm.prometheus.role`).
pub const PROMETHEUS_ROLE: &str = "internal/role/openidm-prometheus";

/// The metrics page.
pub fn read_prometheus(ctx: &RequestContext) -> Reply {
    let state = &ctx.state;
    let scrape = Scrape {
        generation: ctx.generation.number,
        audit_queue_depth: state.audit.depth(),
        audit_dropped: state.audit.dropped(),
    };
    Reply::text(CONTENT_TYPE, state.metrics.render(&state.store, &scrape))
}

/// Decides for the metrics principal (a caller with [`PROMETHEUS_ROLE`]): `Ok(true)` for a read
/// of the metrics page, which needs no rule in `access.json` (so IDM's configuration works as it
/// is), 403 for anything else whatever `access.json` says; `Ok(false)` for every other caller,
/// whom the access rules decide for.
pub fn authorize_metrics_principal(ctx: &RequestContext, request: &Request, operation: &Operation) -> Result<bool> {
    let is_metrics_principal = ctx.client_caller().is_ok_and(|caller| {
        caller
            .session
            .context
            .authorization
            .roles
            .iter()
            .any(|role| role == PROMETHEUS_ROLE)
    });
    if !is_metrics_principal {
        return Ok(false);
    }
    if *operation == Operation::Read && request.path.segments() == ["metrics", "prometheus"] {
        Ok(true)
    } else {
        Err(Error::Forbidden("Access denied".into()))
    }
}

/// Counts the failed policy requirements of a request refused by the policies.
pub fn count_policy_failures(metrics: &Metrics, error: &Error) {
    let Error::PolicyFailed { detail, .. } = error else {
        return;
    };
    let failures = detail["failedPolicyRequirements"].as_array().into_iter().flatten();
    for requirement in failures.flat_map(|failure| failure["policyRequirements"].as_array().into_iter().flatten()) {
        if let Some(name) = requirement["policyRequirement"].as_str() {
            metrics.policy_failure(name);
        }
    }
}
