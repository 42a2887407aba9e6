//! The server side of the script host API: `openidm::read`, `query`, `create`, `update`,
//! `patch` and `delete` become internal requests served by the same router as HTTP requests,
//! in the context of the request the script runs for (its generation, its transaction).
//! Scripts run as internal callers (they see private properties, no access rules apply,
//! policies and triggers still do). Writes by scripts may nest (a trigger that creates an object
//! runs that type's triggers) up to a fixed depth.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use ferridm_plugins::host::ScriptOutcome;
use ferridm_plugins::{Host, HostError, HostResult};
use serde_json::Value;

use super::context::RequestContext;
use super::router;
use crate::resource::error::to_host;
use crate::resource::{Method, Params, Request, ResourcePath};
use crate::selfservice::Process;

/// How deeply script writes may nest.
const MAX_WRITE_DEPTH: usize = 8;

thread_local! {
    static WRITE_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// What a self-service process call adds: who the principal is and which progressive-profile
/// forms the session has completed.
pub struct SelfServiceScope {
    /// The logged-in managed user's id.
    pub principal: Option<String>,
    /// Forms completed in this session (read and extended by `conditionaluser`).
    pub forms: Rc<RefCell<Vec<String>>>,
    /// The process being run (its rate limits).
    pub process: Arc<Process>,
    /// The client's address, for per-address rate limits.
    pub client_address: String,
}

/// The host a script call sees.
pub struct ServerHost {
    ctx: RequestContext,
    resource: Option<String>,
    scope: Option<SelfServiceScope>,
}

impl ServerHost {
    /// A host for scripts working on `resource` (e.g. the object a policy validates), serving
    /// their calls in `ctx` (an internal context).
    pub fn new(ctx: RequestContext, resource: Option<String>) -> Self {
        Self {
            ctx,
            resource,
            scope: None,
        }
    }

    /// The host for a self-service process call.
    pub fn with_scope(mut self, scope: SelfServiceScope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Serves one internal request through the router; returns the reply's body.
    fn call(&self, request: Request) -> HostResult<Value> {
        let operation = request.operation().map_err(to_host)?;
        let mut ctx = self.ctx.as_internal();
        router::dispatch(&mut ctx, &request, &operation)
            .map(|reply| reply.body.unwrap_or(Value::Null))
            .map_err(to_host)
    }

    fn nested_write(&self, request: Request) -> HostResult<Value> {
        let depth = WRITE_DEPTH.with(Cell::get);
        if depth >= MAX_WRITE_DEPTH {
            return Err(HostError::bad_request(format!(
                "script writes nest deeper than {MAX_WRITE_DEPTH} levels"
            )));
        }
        WRITE_DEPTH.with(|cell| cell.set(depth + 1));
        let result = self.call(request);
        WRITE_DEPTH.with(|cell| cell.set(depth));
        result
    }

    /// True when `path`'s first segment past the object names a relationship of its type.
    fn is_relationship(&self, path: &crate::resource::path::ManagedPath<'_>) -> bool {
        self.ctx
            .generation
            .managed
            .get(path.type_name)
            .zip(path.rest.first())
            .is_some_and(|(managed_type, name)| managed_type.relationship(name).is_some())
    }

    /// `openidm::query` on a collection, with `_fields` when given.
    fn query_fields(&self, path: &str, filter: &str, fields: Option<&str>) -> HostResult<Vec<Value>> {
        let parsed = ResourcePath::parse(path);
        let collection = match parsed.managed() {
            // The references of a relationship: `managed/user/<id>/roles`.
            Some(managed) if managed.rest.len() == 1 => self.is_relationship(&managed),
            Some(managed) => managed.id.is_none(),
            None => parsed.segments() == ["internal", "user"],
        };
        if !collection {
            return Err(unsupported("openidm::query", &parsed));
        }
        let request = Request::internal(
            Method::Get,
            parsed,
            Params::from_pairs(
                std::iter::once(("_queryfilter", filter)).chain(fields.map(|fields| ("_fields", fields))),
            ),
            None,
        );
        match self.call(request)? {
            Value::Object(mut response) => match response.remove("result") {
                Some(Value::Array(result)) => Ok(result),
                _ => Ok(Vec::new()),
            },
            _ => Ok(Vec::new()),
        }
    }

    /// A path a write may address: `managed/<type>/<id>`.
    fn instance(function: &str, path: &str) -> HostResult<ResourcePath> {
        let parsed = ResourcePath::parse(path);
        match parsed.managed() {
            Some(managed) if managed.instance().is_some() => Ok(parsed),
            _ => Err(unsupported(function, &parsed)),
        }
    }
}

fn unsupported(function: &str, path: &ResourcePath) -> HostError {
    HostError {
        code: 404,
        message: format!("{function}: no resource {path}"),
        detail: None,
    }
}

fn object(content: Value, function: &str) -> HostResult<Value> {
    match content {
        Value::Object(_) => Ok(content),
        _ => Err(HostError::bad_request(format!("{function} needs an object"))),
    }
}

impl Host for ServerHost {
    fn read(&self, path: &str) -> HostResult<Option<Value>> {
        let parsed = ResourcePath::parse(path);
        // A path with segments past the object (`managed/user/a/b`, `internal/user/a/b`) names
        // nothing there is: not found, as for any absent object.
        let names_one_object = match (parsed.managed(), parsed.parts().as_slice()) {
            // One reference of a relationship: `managed/user/<id>/roles/<edge id>`.
            (Some(managed), _) if managed.rest.len() == 2 => self.is_relationship(&managed),
            (Some(managed), _) if managed.id.is_some() => managed.instance().is_some(),
            (None, ["internal", "user", _, rest @ ..]) => rest.is_empty(),
            _ => return Err(unsupported("openidm::read", &parsed)),
        };
        if !names_one_object {
            return Ok(None);
        }
        let request = Request::internal(
            Method::Get,
            parsed,
            Params::from_pairs([("_fields", "*,*_ref,_meta")]),
            None,
        );
        match self.call(request) {
            Ok(found) => Ok(Some(found)),
            Err(error) if error.code == 404 => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn query(&self, path: &str, filter: &str) -> HostResult<Vec<Value>> {
        self.query_fields(path, filter, None)
    }

    fn query_ids(&self, path: &str, filter: &str) -> HostResult<Vec<String>> {
        Ok(self
            .query_fields(path, filter, Some("_id"))?
            .into_iter()
            .filter_map(|mut found| match found.get_mut("_id").map(Value::take) {
                Some(Value::String(id)) => Some(id),
                _ => None,
            })
            .collect())
    }

    fn create(&self, path: &str, content: Value) -> HostResult<Value> {
        let content = object(content, "openidm::create")?;
        let parsed = ResourcePath::parse(path);
        let mut request = match parsed.managed() {
            Some(managed) if managed.id.is_none() => {
                Request::internal(Method::Post, parsed, Params::default(), Some(content))
            }
            Some(managed) if managed.instance().is_some() => {
                Request::internal(Method::Put, parsed, Params::default(), Some(content))
            }
            _ => return Err(unsupported("openidm::create", &parsed)),
        };
        if request.method == Method::Put {
            request.if_none_match = Some("*".to_owned());
        }
        self.nested_write(request)
    }

    fn update(&self, path: &str, content: Value) -> HostResult<Value> {
        let content = object(content, "openidm::update")?;
        let mut request = Request::internal(
            Method::Put,
            Self::instance("openidm::update", path)?,
            Params::default(),
            Some(content),
        );
        request.if_match = Some("*".to_owned());
        self.nested_write(request)
    }

    fn patch(&self, path: &str, operations: Value) -> HostResult<Value> {
        let request = Request::internal(
            Method::Patch,
            Self::instance("openidm::patch", path)?,
            Params::default(),
            Some(operations),
        );
        self.nested_write(request)
    }

    fn delete(&self, path: &str) -> HostResult<Value> {
        let request = Request::internal(
            Method::Delete,
            Self::instance("openidm::delete", path)?,
            Params::default(),
            None,
        );
        self.nested_write(request)
    }

    fn service(&self, name: &str, arguments: Value) -> HostResult<Value> {
        super::host_services::call(&self.ctx, self.scope.as_ref(), name, &arguments)
    }

    fn resource(&self) -> Option<String> {
        self.resource.clone()
    }

    fn script_finished(&self, elapsed: std::time::Duration, outcome: ScriptOutcome) {
        self.ctx.state.metrics.script(elapsed, outcome);
    }
}
