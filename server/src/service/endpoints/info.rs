//! `info/version`: the product version (`info/ping` is in `health`).

use serde_json::json;

use crate::resource::Reply;

/// `GET /openidm/info/version`.
pub fn read_version() -> Reply {
    Reply::ok(json!({
        "_id": "version",
        "productVersion": env!("CARGO_PKG_VERSION"),
        "productBuildDate": "",
        "productRevision": concat!("ferridm-", env!("CARGO_PKG_VERSION")),
    }))
}
