//! ferridm-plugins: the Rhai host. Everything a script can do is decided here:
//!
//! * [`engine`] builds every engine (one per worker thread) and is the only place limits are
//!   set: operations, call depth, expression depth, string/array/map sizes, a wall-clock budget,
//!   no `eval`, imports only from the scripts directory, no file or network access;
//! * [`host`] is the API scripts call (`openidm::read`, `openidm::query`, `logger::info`, …),
//!   backed by whatever [`host::Host`] the caller installs for the duration of a call;
//! * [`script`] compiles scripts once per reload, with errors that carry file, line and column;
//! * [`policy`] collects the policies scripts register with `addPolicy` and runs validators;
//! * [`stage`] runs self-service stages written in Rhai;
//! * [`watch`] turns file changes into debounced reload signals.

pub mod access;
pub mod convert;
pub mod engine;
pub mod error;
pub mod host;
pub mod policy;
pub mod script;
pub mod stage;
pub mod watch;

pub use engine::ScriptLimits;
pub use error::ScriptError;
pub use host::{Capability, Host, HostError, HostResult};
pub use script::{CompiledScript, ScriptSource};
