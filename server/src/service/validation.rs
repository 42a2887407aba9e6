//! Validating objects against the policies without writing anything (`validateObject`,
//! `validateProperty`): for the policy endpoint and for scripts, with the script host of the
//! request the policies run for.

use std::rc::Rc;

use ferridm_core::{Object, Result};
use ferridm_plugins::Host;

use super::context::RequestContext;
use super::host::ServerHost;
use crate::policy::{PolicyFailure, PolicyResult};
use crate::resource::error::from_script;

/// What to validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every property of the object (`validateObject`).
    Object,
    /// Only the given properties, against the stored object (`validateProperty`).
    Properties,
}

/// Validates `body` against the policies of `path` (a resource such as `managed/user/x`, or a
/// derived one such as `selfservice/registration`).
pub fn validate(ctx: &RequestContext, path: &str, body: &Object, scope: Scope) -> Result<PolicyResult> {
    let policies = &ctx.generation.policies;
    let host: Rc<dyn Host> = Rc::new(ServerHost::new(ctx.as_internal(), Some(policies.host_resource(path))));
    let outcome = match scope {
        Scope::Object => policies.validate_object(&host, path, body),
        Scope::Properties => {
            let stored = host
                .read(path)
                .ok()
                .flatten()
                .and_then(|value| value.as_object().cloned());
            let names: Vec<String> = body.keys().cloned().collect();
            policies.validate_properties(&host, path, &stored.unwrap_or_default(), &names, body)
        }
    };
    outcome.map_err(|PolicyFailure(error)| from_script(&error))
}
