//! `info/*`: liveness (`ping`) and the product version.

use serde_json::json;

use crate::resource::Reply;

/// `GET /openidm/info/ping`.
pub fn read_ping() -> Reply {
    Reply::ok(json!({"_id": "", "shortDesc": "OpenIDM ready", "state": "ACTIVE_READY"}))
}

/// `GET /openidm/info/version`.
pub fn read_version() -> Reply {
    Reply::ok(json!({
        "_id": "version",
        "productVersion": env!("CARGO_PKG_VERSION"),
        "productBuildDate": "",
        "productRevision": concat!("ferridm-", env!("CARGO_PKG_VERSION")),
    }))
}
