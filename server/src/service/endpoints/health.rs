//! Server health as IDM reports it: the state of `info/ping` and `health` (`ACTIVE_READY` or
//! `ACTIVE_NOT_READY`), and the probes `health/live` (the process answers) and `health/ready`
//! (the database answers and a configuration generation is installed).

use std::time::Duration;

use ferridm_core::{Error, Result};
use serde_json::json;

use crate::resource::Reply;
use crate::state::AppState;

/// How long a readiness check waits for a database connection before calling it unreachable.
const DATABASE_WAIT: Duration = Duration::from_secs(2);

/// What a readiness check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The database answered a ping.
    pub database: bool,
    /// The installed configuration generation (0: none).
    pub generation: u64,
}

impl Readiness {
    /// Checks the database (waiting at most [`DATABASE_WAIT`]) and the installed generation.
    pub fn check(state: &AppState) -> Self {
        Self {
            database: state.store.is_reachable(DATABASE_WAIT),
            generation: state.generation().number,
        }
    }

    /// Ready to serve: the database answers and a generation is installed.
    pub fn is_ready(self) -> bool {
        self.database && self.generation > 0
    }

    fn short_desc(self) -> &'static str {
        match (self.database, self.generation > 0) {
            (true, true) => "OpenIDM ready",
            (false, _) => "OpenIDM not ready: the database is unreachable",
            (true, false) => "OpenIDM not ready: no configuration is installed",
        }
    }
}

/// `GET /openidm/info/ping` and `GET /openidm/health`: IDM's server state, always 200.
pub fn read_ping(state: &AppState) -> Reply {
    let readiness = Readiness::check(state);
    let server_state = if readiness.is_ready() {
        "ACTIVE_READY"
    } else {
        "ACTIVE_NOT_READY"
    };
    Reply::ok(json!({"_id": "", "shortDesc": readiness.short_desc(), "state": server_state}))
}

/// `GET /openidm/health/live`: the process is up and answering.
pub fn read_live() -> Reply {
    Reply::ok(json!({}))
}

/// `GET /openidm/health/ready`: `{}` when ready, otherwise a 503 whose detail says why.
pub fn read_ready(state: &AppState) -> Result<Reply> {
    let readiness = Readiness::check(state);
    if readiness.is_ready() {
        return Ok(Reply::ok(json!({})));
    }
    Err(Error::Custom {
        code: 503,
        message: "Service Unavailable".into(),
        detail: Some(json!({
            "shortDesc": readiness.short_desc(),
            "state": "ACTIVE_NOT_READY",
            "database": readiness.database,
            "generation": readiness.generation,
        })),
    })
}
