//! The host API: what scripts may ask of the server. A caller installs a [`Host`] for the
//! duration of a script call (calls nest: a stage that creates a user triggers policy scripts);
//! the functions registered in every engine reach it through this module. Policy scripts get
//! [`Capability::Read`]; stages and triggers get [`Capability::ReadWrite`].

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::Value;

/// What the installed host lets a script do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// `openidm::read` and `openidm::query` only (policies, conditions).
    Read,
    /// Also `openidm::create/update/patch/delete` and host services (stages, triggers).
    ReadWrite,
}

/// A failure of a host call, thrown into the script as `#{code, message, detail}` so that a
/// script that does not catch it fails the request with exactly that error.
#[derive(Debug, Clone, PartialEq)]
pub struct HostError {
    /// HTTP-style status code.
    pub code: u16,
    /// Message.
    pub message: String,
    /// Optional detail (e.g. failed policy requirements).
    pub detail: Option<Value>,
}

impl HostError {
    /// A 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: 400,
            message: message.into(),
            detail: None,
        }
    }

    /// The value thrown into the script.
    pub fn to_json(&self) -> Value {
        let mut thrown = serde_json::json!({"code": self.code, "message": self.message});
        if let (Some(detail), Some(map)) = (&self.detail, thrown.as_object_mut()) {
            map.insert("detail".to_owned(), detail.clone());
        }
        thrown
    }
}

/// The result of a host call.
pub type HostResult<T> = Result<T, HostError>;

/// The server side of the host API.
pub trait Host {
    /// Reads a resource (`managed/user/<id>`, `internal/user/<id>`); `None` when absent.
    fn read(&self, path: &str) -> HostResult<Option<Value>>;
    /// Runs a `_queryFilter` on a collection; returns the matching objects.
    fn query(&self, path: &str, filter: &str) -> HostResult<Vec<Value>>;
    /// The ids of the objects [`Host::query`] would return, for checks that need no more (a
    /// host may then skip reading the objects).
    fn query_ids(&self, path: &str, filter: &str) -> HostResult<Vec<String>> {
        Ok(self
            .query(path, filter)?
            .iter()
            .filter_map(|found| found.get("_id").and_then(Value::as_str).map(str::to_owned))
            .collect())
    }
    /// Creates an object (`path` is the collection or `collection/id`).
    fn create(&self, path: &str, content: Value) -> HostResult<Value>;
    /// Replaces an object.
    fn update(&self, path: &str, content: Value) -> HostResult<Value>;
    /// Patches an object.
    fn patch(&self, path: &str, operations: Value) -> HostResult<Value>;
    /// Deletes an object.
    fn delete(&self, path: &str) -> HostResult<Value>;
    /// A named host service (hashing, mail, token signing, …) with JSON arguments.
    fn service(&self, name: &str, arguments: Value) -> HostResult<Value>;
    /// The resource the current call is about (e.g. the object a policy validates).
    fn resource(&self) -> Option<String>;
    /// Told when a script call made while this host is installed ends (for metrics).
    fn script_finished(&self, _elapsed: std::time::Duration, _outcome: ScriptOutcome) {}
}

/// How a script call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptOutcome {
    /// It returned.
    Completed,
    /// It threw or failed at run time.
    Failed,
    /// It hit one of the engine's limits.
    Limit(ScriptLimit),
}

/// The engine limit a script call hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptLimit {
    /// The wall-clock budget.
    Time,
    /// The operation budget.
    Operations,
    /// The call depth.
    CallDepth,
    /// A string, array, map, module or variable count.
    Size,
}

impl ScriptLimit {
    /// The limit's name in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Time => "time",
            Self::Operations => "operations",
            Self::CallDepth => "call_depth",
            Self::Size => "size",
        }
    }
}

impl ScriptOutcome {
    /// The outcome of an evaluation that ended with `error` (innermost error of nested calls).
    pub(crate) fn of_error(error: &rhai::EvalAltResult) -> Self {
        use rhai::EvalAltResult as E;
        let mut error = error;
        while let E::ErrorInFunctionCall(_, _, inner, _) | E::ErrorInModule(_, inner, _) = error {
            error = inner;
        }
        match error {
            E::ErrorTerminated(..) => Self::Limit(ScriptLimit::Time),
            E::ErrorTooManyOperations(_) => Self::Limit(ScriptLimit::Operations),
            E::ErrorStackOverflow(_) => Self::Limit(ScriptLimit::CallDepth),
            E::ErrorDataTooLarge(..) | E::ErrorTooManyModules(_) | E::ErrorTooManyVariables(_) => {
                Self::Limit(ScriptLimit::Size)
            }
            _ => Self::Failed,
        }
    }
}

/// Tells the innermost installed host, if any, how a script call ended.
pub(crate) fn report_finished(elapsed: std::time::Duration, outcome: ScriptOutcome) {
    if let Some((host, _)) = current() {
        host.script_finished(elapsed, outcome);
    }
}

struct Installed {
    host: Rc<dyn Host>,
    capability: Capability,
    script: String,
}

thread_local! {
    static INSTALLED: RefCell<Vec<Installed>> = const { RefCell::new(Vec::new()) };
}

/// Runs `work` with `host` installed for scripts called on this thread.
pub fn with_host<R>(host: Rc<dyn Host>, capability: Capability, script: &str, work: impl FnOnce() -> R) -> R {
    struct Uninstall;
    impl Drop for Uninstall {
        fn drop(&mut self) {
            INSTALLED.with(|installed| {
                installed.borrow_mut().pop();
            });
        }
    }
    INSTALLED.with(|installed| {
        installed.borrow_mut().push(Installed {
            host,
            capability,
            script: script.to_owned(),
        });
    });
    let _uninstall = Uninstall;
    work()
}

/// The host installed for the innermost call, with what it allows (native stages use it to
/// reach the server the same way scripts do).
pub fn current() -> Option<(Rc<dyn Host>, Capability)> {
    INSTALLED.with(|installed| {
        installed
            .borrow()
            .last()
            .map(|top| (Rc::clone(&top.host), top.capability))
    })
}

/// The name of the script of the innermost call (for log lines).
pub(crate) fn current_script() -> String {
    INSTALLED.with(|installed| {
        installed
            .borrow()
            .last()
            .map_or_else(|| "<script>".to_owned(), |top| top.script.clone())
    })
}
