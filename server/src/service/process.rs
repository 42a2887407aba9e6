//! Running a process (IDM §9.2): `GET` gives the first stage's requirements; each
//! `submitRequirements` advances the current stage with the input, then moves on through stages
//! that need nothing, until one asks for input or the process ends. Between requests the state
//! lives in a sealed snapshot token bound to the process and its configuration version.
//!
//! Every token belongs to a flow (one run of the process) and carries the flow's step. The
//! database records the step of each flow's one valid token; submitting a token claims it by
//! moving the step on (given back if the request fails), so a token works once, on every node,
//! and a flow's tokens are spent when it completes. Snapshots are padded to a multiple of
//! [`PAD_TO`] bytes before sealing, so a token's length says nothing about what it holds.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use ferridm_core::{Error, Result};
use ferridm_plugins::host::with_host;
use ferridm_plugins::stage::{StageContext, StageOutcome};
use ferridm_plugins::{Capability, Host};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::context::RequestContext;
use super::host::{SelfServiceScope, ServerHost};
use super::storage_error;
use crate::metrics;
use crate::resource::error::from_script;
use crate::sealed::{self, SealError};
use crate::selfservice::Process;

const TOKEN_PURPOSE: &str = "ferridm-selfservice";
/// The refusal of a token whose flow has moved on (used, superseded or completed).
const TOKEN_USED: &str = "The token has already been used";
/// The state key where stages' additions accumulate until the process ends.
const ADDITIONS: &str = "_successAdditions";
/// Snapshots are padded to a multiple of this many bytes before sealing.
const PAD_TO: usize = 512;

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    process: String,
    version: String,
    flow: String,
    step: i64,
    stage: usize,
    tag: String,
    state: Map<String, Value>,
    #[serde(default)]
    pad: String,
}

/// Where a submission stands in its flow: the flow, the step of the token it claimed (if it
/// came with one).
struct FlowPosition {
    flow: String,
    claimed: Option<i64>,
}

/// One call into a process, as one caller.
pub struct ProcessCall<'a> {
    /// The request (its generation, its locales).
    pub ctx: &'a RequestContext,
    /// The process.
    pub process: &'a Arc<Process>,
    /// The logged-in managed user's id, if any.
    pub principal: Option<String>,
    /// Progressive-profile forms completed in this session (read and extended).
    pub forms: Rc<RefCell<Vec<String>>>,
}

impl ProcessCall<'_> {
    fn host(&self) -> Rc<dyn Host> {
        Rc::new(
            ServerHost::new(
                self.ctx.as_internal(),
                Some(format!("selfservice/{}", self.process.name)),
            )
            .with_scope(SelfServiceScope {
                principal: self.principal.clone(),
                forms: Rc::clone(&self.forms),
                process: Arc::clone(self.process),
                client_address: self
                    .ctx
                    .client_caller()
                    .map(|caller| caller.ip.clone())
                    .unwrap_or_default(),
            }),
        )
    }

    fn context(&self, state: &Map<String, Value>, tag: &str) -> StageContext {
        StageContext {
            state: state.clone(),
            principal: self.principal.clone(),
            tag: tag.to_owned(),
            locales: self.ctx.locales.clone(),
        }
    }

    fn run<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.process.needs_principal && self.principal.is_none() {
            return Err(Error::Forbidden("Access denied".into()));
        }
        with_host(
            self.host(),
            Capability::ReadWrite,
            &format!("selfservice/{}", self.process.name),
            work,
        )
    }

    /// `GET /openidm/selfservice/<name>`: the first stage's requirements.
    pub fn initial(&self) -> Result<Value> {
        self.run(|| {
            let Some(first) = self.process.stages.first() else {
                return Ok(json!({"_id": "1", "_rev": "0", "type": "", "tag": "initial", "requirements": {}}));
            };
            let requirements = first
                .stage
                .requirements(&self.context(&Map::new(), "initial"), &first.config)
                .map_err(|error| from_script(&error))?
                .map_or_else(
                    || json!({}),
                    |requirements| in_configured_order(requirements, &first.config),
                );
            let digest = Sha256::digest(requirements.to_string().as_bytes());
            let rev = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
            Ok(json!({
                "_id": "1",
                "_rev": rev.to_string(),
                "type": first.name,
                "tag": "initial",
                "requirements": requirements,
            }))
        })
    }

    /// Seals the flow's next token and records it as the flow's valid one.
    fn seal(&self, flow: &FlowPosition, stage: usize, tag: &str, state: &Map<String, Value>) -> Result<String> {
        let step = flow.claimed.map_or(1, |claimed| claimed + 1);
        let mut snapshot = Snapshot {
            process: self.process.name.clone(),
            version: self.process.version.clone(),
            flow: flow.flow.clone(),
            step,
            stage,
            tag: tag.to_owned(),
            state: state.clone(),
            pad: String::new(),
        };
        let length = serde_json::to_vec(&snapshot).map_or(0, |bytes| bytes.len());
        snapshot.pad = " ".repeat(PAD_TO - length % PAD_TO);
        let now = self.ctx.now_seconds();
        let expires = now + self.process.token_expiry;
        self.ctx
            .state
            .store
            .record_flow_step(&flow.flow, step, to_i64(expires), to_i64(now))
            .map_err(storage_error)?;
        sealed::seal(&self.ctx.state.secrets.token_key, TOKEN_PURPOSE, &snapshot, expires)
            .ok_or_else(|| Error::internal("Internal Server Error"))
    }

    fn restore(&self, token: &str) -> Result<Snapshot> {
        let snapshot: Snapshot = sealed::open(
            &self.ctx.state.secrets.token_key,
            TOKEN_PURPOSE,
            token,
            self.ctx.now_seconds(),
        )
        .map_err(|error| match error {
            SealError::Undecodable => Error::bad_request("Error deconstructing snapshot token"),
            SealError::Forged => Error::bad_request("Invalid snapshot token"),
            SealError::Expired => Error::bad_request("Snapshot token has expired"),
        })?;
        if snapshot.process != self.process.name
            || snapshot.version != self.process.version
            || snapshot.stage >= self.process.stages.len()
        {
            return Err(Error::bad_request("Invalid token"));
        }
        Ok(snapshot)
    }

    /// `POST /openidm/selfservice/<name>?_action=submitRequirements`.
    pub fn submit(&self, body: &Value) -> Result<Value> {
        let input = match body.get("input") {
            None | Some(Value::Null) => return Err(Error::bad_request("No input provided")),
            Some(input) => input.clone(),
        };
        let token = body
            .get("token")
            .and_then(Value::as_str)
            .filter(|token| !token.is_empty());
        if self.process.stages.is_empty() {
            return Err(Error::bad_request(format!(
                "The process {} has no stages",
                self.process.name
            )));
        }
        let (flow, index, tag, state) = match token {
            Some(token) => {
                let snapshot = self.restore(token)?;
                let store = &self.ctx.state.store;
                if !store
                    .claim_flow_step(&snapshot.flow, snapshot.step)
                    .map_err(storage_error)?
                {
                    return Err(Error::bad_request(TOKEN_USED));
                }
                let flow = FlowPosition {
                    flow: snapshot.flow,
                    claimed: Some(snapshot.step),
                };
                (flow, snapshot.stage, snapshot.tag, snapshot.state)
            }
            None => {
                let flow = FlowPosition {
                    flow: uuid::Uuid::new_v4().to_string(),
                    claimed: None,
                };
                (flow, 0, "initial".to_owned(), Map::new())
            }
        };
        let outcome = self.advance(&flow, index, tag, state, input);
        if outcome.is_err()
            && let Some(step) = flow.claimed
        {
            self.ctx
                .state
                .store
                .release_flow_step(&flow.flow, step)
                .map_err(storage_error)?;
        }
        outcome
    }

    /// Runs stages from `index` with `input` until one asks for more or the process ends.
    fn advance(
        &self,
        flow: &FlowPosition,
        mut index: usize,
        mut tag: String,
        mut state: Map<String, Value>,
        input: Value,
    ) -> Result<Value> {
        self.run(|| {
            let mut input = input;
            loop {
                let stage = &self.process.stages[index];
                let outcome = stage
                    .stage
                    .advance(&self.context(&state, &tag), &stage.config, &input)
                    .map_err(|error| from_script(&error));
                let counted = match &outcome {
                    Ok(StageOutcome::Ask { .. }) => metrics::StageOutcome::Requirements,
                    Ok(StageOutcome::Complete { .. }) => metrics::StageOutcome::Completed,
                    Err(_) => metrics::StageOutcome::Failed,
                };
                self.ctx.state.metrics.selfservice_stage(&self.process.name, &stage.name, counted);
                let outcome = outcome?;
                match outcome {
                    StageOutcome::Ask {
                        requirements,
                        tag: asked,
                        state: changes,
                        notify,
                    } => {
                        state.extend(changes);
                        if let Some(asked) = asked {
                            tag = asked;
                        }
                        let token = self.seal(flow, index, &tag, &state)?;
                        if let Some(notify) = notify {
                            self.notify(&notify, &token)?;
                        }
                        let requirements = in_configured_order(requirements, &stage.config);
                        return Ok(json!({"type": stage.name, "tag": tag, "requirements": requirements, "token": token}));
                    }
                    StageOutcome::Complete {
                        state: changes,
                        additions,
                    } => {
                        state.extend(changes);
                        if !additions.is_empty() {
                            let mut all = state.get(ADDITIONS).and_then(Value::as_object).cloned().unwrap_or_default();
                            all.extend(additions);
                            state.insert(ADDITIONS.to_owned(), Value::Object(all));
                        }
                        if index + 1 == self.process.stages.len() {
                            let additions = state.get(ADDITIONS).cloned().unwrap_or_else(|| json!({}));
                            return Ok(json!({"type": stage.name, "tag": "end", "status": {"success": true}, "additions": additions}));
                        }
                        index += 1;
                        tag = "initial".to_owned();
                        let next = &self.process.stages[index];
                        let requirements = next
                            .stage
                            .requirements(&self.context(&state, &tag), &next.config)
                            .map_err(|error| from_script(&error))?;
                        if let Some(requirements) = requirements {
                            let requirements = in_configured_order(requirements, &next.config);
                            let token = self.seal(flow, index, &tag, &state)?;
                            return Ok(json!({"type": next.name, "tag": tag, "requirements": requirements, "token": token}));
                        }
                        input = json!({});
                    }
                }
            }
        })
    }

    /// Sends a stage's message once its continuation token exists (`{{token}}` is replaced).
    fn notify(&self, message: &Value, token: &str) -> Result<()> {
        let fill = |key: &str| {
            message
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .replace("{{token}}", token)
        };
        let mail = json!({
            "to": fill("to"),
            "subject": fill("subject"),
            "body": fill("body"),
            "mimeType": message.get("mimeType").cloned().unwrap_or(json!("text/plain")),
            "from": message.get("from").cloned().unwrap_or(Value::Null),
        });
        super::mail::send(self.ctx, &mail).map(|_| ())
    }
}

/// Lists a stage's `registrationProperties` requirements in the order its configuration names
/// them (then any others, as they came). Scripts build requirements as Rhai maps, which keep no
/// order; IDM's UI renders the form fields in the order the requirements list them.
fn in_configured_order(mut requirements: Value, config: &Value) -> Value {
    let Some(order) = config.get("registrationProperties").and_then(Value::as_array) else {
        return requirements;
    };
    let Some(Value::Object(properties)) = requirements.pointer_mut("/registrationProperties/properties") else {
        return requirements;
    };
    let mut ordered = Map::with_capacity(properties.len());
    for name in order.iter().filter_map(Value::as_str) {
        if let Some((key, value)) = properties.shift_remove_entry(name) {
            ordered.insert(key, value);
        }
    }
    ordered.append(properties);
    *properties = ordered;
    requirements
}

fn to_i64(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_properties_follow_the_configured_order() {
        let requirements = json!({"registrationProperties": {"properties": {
            "givenName": {}, "mail": {}, "sn": {}, "telephoneNumber": {}, "userName": {}
        }, "required": ["givenName"]}});
        let config = json!({"registrationProperties": ["userName", "givenName", "sn", "mail", "absent"]});
        let ordered = in_configured_order(requirements, &config);
        let names: Vec<&String> = ordered["registrationProperties"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(names, ["userName", "givenName", "sn", "mail", "telephoneNumber"]);
        assert_eq!(ordered["registrationProperties"]["required"], json!(["givenName"]));
        let untouched = json!({"other": {"b": 1, "a": 2}});
        assert_eq!(in_configured_order(untouched.clone(), &config), untouched);
    }
}
