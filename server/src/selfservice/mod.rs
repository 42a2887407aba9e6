//! Self-service process definitions (IDM §9): each `conf/selfservice-<name>.json` is a process
//! served at `/openidm/selfservice/<name>`, a list of stages advanced one request at a time
//! (`service::process` runs them). Process state travels in a sealed token, so any node can
//! continue any flow.
//!
//! Stages are Rhai scripts (`scripts/stages/<name>.rhai` for the built-in ones, or the script a
//! stage config names); the meta-stages that orchestrate other stages (`allInOneRegistration`,
//! `conditionaluser`) are native.

pub mod config;
mod stages;

pub use config::{Process, Processes};
