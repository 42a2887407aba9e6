//! The server side of the script host API: what `openidm::read`, `openidm::query` and the write
//! functions do for a script. Scripts run as internal callers (they see private properties, no
//! access rules apply, policies still do), on the generation the request started with. Writes
//! by scripts may nest (a trigger that creates an object runs that type's triggers) up to a
//! fixed depth.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use ferridm_core::fields::FieldSelection;
use ferridm_core::query::Paging;
use ferridm_core::{Error, Object, patch};
use ferridm_plugins::{Host, HostError, HostResult};
use serde_json::Value;

use crate::auth;
use crate::config::Generation;
use crate::service::managed::{ManagedObjects, QueryRequest, parse_filter};
use crate::state::AppState;

/// How deeply script writes may nest.
const MAX_WRITE_DEPTH: usize = 8;

thread_local! {
    static WRITE_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// A resource error as the script sees it.
pub fn host_error(error: Error) -> HostError {
    let (code, detail) = match &error {
        Error::BadRequest(_) => (400, None),
        Error::Unauthorized => (401, None),
        Error::Forbidden(_) => (403, None),
        Error::PolicyFailed { detail, .. } => (403, Some(detail.clone())),
        Error::NotFound(_) => (404, None),
        Error::MethodNotAllowed(_) => (405, None),
        Error::Conflict(_) => (409, None),
        Error::PreconditionFailed(_) => (412, None),
        Error::NotModified => (304, None),
        Error::PayloadTooLarge(_) => (413, None),
        Error::NotSupported(_) => (501, None),
        Error::Unavailable(_) => (503, None),
        Error::Internal(_) => (500, None),
        Error::Custom { code, detail, .. } => (*code, detail.clone()),
    };
    HostError {
        code,
        message: error.to_string(),
        detail,
    }
}

/// What a self-service process call adds: who the principal is and which progressive-profile
/// forms the session has completed.
pub struct SelfServiceScope {
    /// The logged-in managed user's id.
    pub principal: Option<String>,
    /// Forms completed in this session (read and extended by `conditionaluser`).
    pub forms: Rc<RefCell<Vec<String>>>,
}

/// The host a script call sees.
pub struct ServerHost {
    state: Arc<AppState>,
    generation: Arc<Generation>,
    resource: Option<String>,
    scope: Option<SelfServiceScope>,
}

impl ServerHost {
    /// A host for scripts working on `resource` (e.g. the object a policy validates).
    pub fn new(state: Arc<AppState>, generation: Arc<Generation>, resource: Option<String>) -> Self {
        Self {
            state,
            generation,
            resource,
            scope: None,
        }
    }

    /// The host for a self-service process call.
    pub fn with_scope(mut self, scope: SelfServiceScope) -> Self {
        self.scope = Some(scope);
        self
    }

    fn managed(&self, type_name: &str) -> HostResult<ManagedObjects<'_>> {
        ManagedObjects::new(&self.state, &self.generation, type_name, false).map_err(host_error)
    }

    fn nested_write<T>(&self, work: impl FnOnce() -> ferridm_core::Result<T>) -> HostResult<T> {
        let depth = WRITE_DEPTH.with(Cell::get);
        if depth >= MAX_WRITE_DEPTH {
            return Err(HostError::bad_request(format!(
                "script writes nest deeper than {MAX_WRITE_DEPTH} levels"
            )));
        }
        WRITE_DEPTH.with(|cell| cell.set(depth + 1));
        let result = work();
        WRITE_DEPTH.with(|cell| cell.set(depth));
        result.map_err(host_error)
    }
}

fn split(path: &str) -> Vec<&str> {
    path.trim_matches('/').split('/').collect()
}

fn internal_user(name: &str) -> Option<Value> {
    [auth::ADMIN_USER, auth::ANONYMOUS_USER]
        .contains(&name)
        .then(|| serde_json::json!({"_id": name, "userName": name}))
}

fn object(content: Value, function: &str) -> HostResult<Object> {
    match content {
        Value::Object(object) => Ok(object),
        _ => Err(HostError::bad_request(format!("{function} needs an object"))),
    }
}

fn unsupported(function: &str, path: &str) -> HostError {
    HostError {
        code: 404,
        message: format!("{function}: no resource {path}"),
        detail: None,
    }
}

impl Host for ServerHost {
    fn read(&self, path: &str) -> HostResult<Option<Value>> {
        match split(path).as_slice() {
            ["managed", type_name, id] => {
                let fields = FieldSelection::parse(["*", "*_ref", "_meta"]);
                match self.managed(type_name)?.read(id, &fields, None) {
                    Ok(resource) => Ok(Some(resource.to_json())),
                    Err(Error::NotFound(_)) => Ok(None),
                    Err(error) => Err(host_error(error)),
                }
            }
            ["internal", "user", name] => Ok(internal_user(name)),
            _ => Err(unsupported("openidm::read", path)),
        }
    }

    fn query(&self, path: &str, filter: &str) -> HostResult<Vec<Value>> {
        match split(path).as_slice() {
            ["managed", type_name] => {
                let request = QueryRequest {
                    filter: parse_filter(filter).map_err(host_error)?,
                    ids_only: false,
                    sort: Vec::new(),
                    paging: Paging::default(),
                };
                let response = self
                    .managed(type_name)?
                    .query(&request, &FieldSelection::defaults())
                    .map_err(host_error)?;
                Ok(response.result)
            }
            _ => Err(unsupported("openidm::query", path)),
        }
    }

    fn create(&self, path: &str, content: Value) -> HostResult<Value> {
        let content = object(content, "openidm::create")?;
        let (type_name, id) = match split(path).as_slice() {
            ["managed", type_name] => ((*type_name).to_owned(), None),
            ["managed", type_name, id] => ((*type_name).to_owned(), Some((*id).to_owned())),
            _ => return Err(unsupported("openidm::create", path)),
        };
        let objects = self.managed(&type_name)?;
        self.nested_write(|| objects.create(id, content, &FieldSelection::defaults()))
            .map(|resource| resource.to_json())
    }

    fn update(&self, path: &str, content: Value) -> HostResult<Value> {
        let content = object(content, "openidm::update")?;
        let segments = split(path);
        let ["managed", type_name, id] = segments.as_slice() else {
            return Err(unsupported("openidm::update", path));
        };
        let objects = self.managed(type_name)?;
        self.nested_write(|| objects.update(id, None, content, &FieldSelection::defaults()))
            .map(|resource| resource.to_json())
    }

    fn patch(&self, path: &str, operations: Value) -> HostResult<Value> {
        let segments = split(path);
        let ["managed", type_name, id] = segments.as_slice() else {
            return Err(unsupported("openidm::patch", path));
        };
        let operations = patch::parse_patch(&operations).map_err(|error| host_error(error.into()))?;
        let objects = self.managed(type_name)?;
        self.nested_write(|| objects.patch(id, None, &operations, &FieldSelection::defaults()))
            .map(|resource| resource.to_json())
    }

    fn delete(&self, path: &str) -> HostResult<Value> {
        let segments = split(path);
        let ["managed", type_name, id] = segments.as_slice() else {
            return Err(unsupported("openidm::delete", path));
        };
        let objects = self.managed(type_name)?;
        self.nested_write(|| objects.delete(id, None, &FieldSelection::defaults()))
            .map(|resource| resource.to_json())
    }

    fn service(&self, name: &str, arguments: Value) -> HostResult<Value> {
        super::services::call(
            &super::services::ServiceContext {
                state: &self.state,
                generation: &self.generation,
                scope: self.scope.as_ref(),
            },
            name,
            &arguments,
        )
    }

    fn resource(&self) -> Option<String> {
        self.resource.clone()
    }
}
