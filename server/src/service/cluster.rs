//! Nodes sharing one database (IDM's cluster view): a node joins when it starts, records a
//! heartbeat with the configuration generation it serves every `cluster.heartbeatMillis`, and
//! records its shutdown when it stops. A node whose last heartbeat is older than
//! `cluster.downAfterMillis` by the reading node's clock is listed as down. Each heartbeat also
//! looks for work that must run once and was left undone (a rescoring whose node died).

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use ferridm_store::NodeRecord;
use serde_json::{Value, json};

use crate::state::AppState;

/// This node's membership: heartbeats and follows the shared configuration until dropped,
/// which records the shutdown.
#[derive(Debug)]
pub struct Membership {
    state: Arc<AppState>,
    node_id: String,
    stop: Option<mpsc::Sender<()>>,
    beating: Option<JoinHandle<()>>,
    _following: Option<super::shared_config::Follower>,
}

/// The id a node takes when none is configured: the host's name and the port it serves.
pub fn default_node_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{port}")
}

/// Registers this node as `node_id` and starts its heartbeat and the configuration follower.
pub fn join(state: &Arc<AppState>, node_id: String) -> Membership {
    let _ = state.node_id.set(node_id.clone());
    let following = super::shared_config::follow(state);
    let generation = |state: &AppState| i64::try_from(state.generation().number).unwrap_or(i64::MAX);
    if let Err(error) = state
        .store
        .register_node(&node_id, state.clock.now_millis(), generation(state))
    {
        tracing::error!(%error, node = %node_id, "cannot register this node");
    }
    let (stop, stopped) = mpsc::channel::<()>();
    let beating_state = Arc::clone(state);
    let beating_id = node_id.clone();
    let beating = std::thread::Builder::new()
        .name("ferridm-heartbeat".to_owned())
        .spawn(move || {
            loop {
                let interval = beating_state.generation().settings.cluster.heartbeat_millis.max(10);
                match stopped.recv_timeout(Duration::from_millis(interval)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                let now = beating_state.clock.now_millis();
                if let Err(error) = beating_state
                    .store
                    .node_heartbeat(&beating_id, now, generation(&beating_state))
                {
                    tracing::warn!(%error, "cannot record this node's heartbeat");
                }
                super::reindex::reconcile(&beating_state);
                super::reload::reconcile_completeness(&beating_state);
                super::roles::reconcile(&beating_state);
            }
        })
        .map_err(|error| tracing::error!(%error, "cannot start the heartbeat"))
        .ok();
    Membership {
        state: Arc::clone(state),
        node_id,
        stop: Some(stop),
        beating,
        _following: following,
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(beating) = self.beating.take() {
            let _ = beating.join();
        }
        if let Err(error) = self
            .state
            .store
            .node_shutdown(&self.node_id, self.state.clock.now_millis())
        {
            tracing::warn!(%error, "cannot record this node's shutdown");
        }
    }
}

/// A node as IDM lists it (`_id`, `instanceId`, `state`, `startup`, `shutdown`), with the
/// configuration generation it serves.
pub fn node_view(state: &AppState, node: &NodeRecord) -> Value {
    let down_after = i64::try_from(state.generation().settings.cluster.down_after_millis).unwrap_or(i64::MAX);
    let is_self = state.node_id.get().is_some_and(|id| *id == node.instance_id);
    let running =
        node.shutdown == 0 && (is_self || state.clock.now_millis().saturating_sub(node.heartbeat) <= down_after);
    json!({
        "_id": node.instance_id,
        "instanceId": node.instance_id,
        "state": if running { "running" } else { "down" },
        "startup": iso(node.startup),
        "shutdown": if node.shutdown == 0 { String::new() } else { iso(node.shutdown) },
        "lastHeartbeat": iso(node.heartbeat),
        "configGeneration": node.generation,
    })
}

/// Milliseconds since the epoch as IDM writes dates.
pub fn iso(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(ferridm_core::time::format_iso)
        .unwrap_or_default()
}
