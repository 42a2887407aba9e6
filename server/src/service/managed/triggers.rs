//! Scripts that run around managed-object writes: the type's triggers (`onCreate`, `onUpdate`,
//! `onValidate`, `onRead`, …, with the host installed so they may read and write) and patch
//! `transform` scripts (compiled once per generation, no host access).

use std::sync::Arc;

use ferridm_core::patch::Transformer;
use ferridm_core::{Object, Result};
use ferridm_plugins::convert::{to_dynamic, to_json};
use ferridm_plugins::error::ScriptErrorKind;
use ferridm_plugins::{Capability, CompiledScript, ScriptError};
use serde_json::Value;

use super::ManagedObjects;
use crate::resource::error::from_script;
use crate::service::context::RequestContext;

impl ManagedObjects<'_> {
    /// Runs a trigger with `object` (and `oldObject`) in scope; returns `object` as the script
    /// left it.
    pub(super) fn run_trigger(
        &self,
        script: &CompiledScript,
        id: &str,
        object: &Object,
        old: Option<&Object>,
    ) -> Result<Object> {
        let resource = self.resource_path(Some(id));
        let mut with_id = object.clone();
        with_id.insert("_id".to_owned(), Value::String(id.to_owned()));
        let variables = vec![
            ("object", to_dynamic(&Value::Object(with_id))),
            (
                "oldObject",
                old.map_or(rhai::Dynamic::UNIT, |old| to_dynamic(&Value::Object(old.clone()))),
            ),
            ("resourceName", rhai::Dynamic::from(resource.clone())),
        ];
        let host = self.host(&resource);
        let outcome = ferridm_plugins::host::with_host(host, Capability::ReadWrite, script.name(), || {
            script.run_keeping(&self.ctx.generation.script_limits, variables, &["object"])
        });
        let (_, kept) = outcome.map_err(|error| from_script(&error))?;
        match kept.first().map(to_json) {
            Some(Value::Object(mut changed)) => {
                changed.remove("_id");
                Ok(changed)
            }
            _ => Err(from_script(&ScriptError::new(
                script.name(),
                ScriptErrorKind::Runtime,
                "the trigger left `object` not an object",
            ))),
        }
    }

    /// Runs an after-the-fact trigger; failures are logged (the write already happened).
    pub(super) fn run_post_trigger(
        &self,
        script: Option<&Arc<CompiledScript>>,
        id: &str,
        object: &Object,
        old: Option<&Object>,
    ) {
        if let Some(script) = script
            && let Err(error) = self.run_trigger(script, id, object, old)
        {
            tracing::error!(
                script.name = script.name(),
                object.id = id,
                "post trigger failed: {error}"
            );
        }
    }
}

/// Runs a patch `transform` script: Rhai source (a string, or `{"type": "text/rhai",
/// "source": …}`) or a file under the scripts directory, with the field's value as `content`.
/// The script has no host access; its last value replaces the field.
pub(super) struct ScriptTransformer<'a> {
    pub(super) ctx: &'a RequestContext,
}

impl Transformer for ScriptTransformer<'_> {
    fn transform(&self, script: &Value, content: Value) -> std::result::Result<Value, String> {
        let generation = &self.ctx.generation;
        let compiled =
            generation
                .transforms
                .get_or_compile(&self.ctx.state.paths, &generation.script_limits, script)?;
        compiled
            .run(&generation.script_limits, vec![("content", to_dynamic(&content))])
            .map(|result| to_json(&result))
            .map_err(|error| error.to_string())
    }
}
