//! ferridm-store: everything ferridm keeps in its database, on SQLite or PostgreSQL through one
//! diesel code path. Managed objects live in `objects` as JSON text; every value reachable by a
//! JSON pointer under the properties a type indexes is mirrored into the `object_props` index so
//! `_queryFilter`s compile to indexed SQL (`coverage.rs`, `scan.rs`: the other properties); `unique_values` backs uniqueness; `login_failures` holds lockout state; `store_settings`
//! holds named values every node shares; `relationships` holds the edges between objects; `audit_events` holds the audit trail; self-service flows, rate counters and session epochs
//! are in `shared_state`.
//!
//! This is the only crate that imports diesel. Callers speak in core types. Single rows are read
//! by key with `get_result`, pages are bounded with `Sql::push_limit`: SQLite prepares a cached
//! statement with a bound `LIMIT ?` again every time it is used (clippy.toml refuses the rest).

mod audit;
mod checkpoint;
mod cluster;
mod connection;
mod coverage;
mod error;
mod flatten;
mod login;
mod migrate;
mod objects;
mod query;
mod rehash;
mod relationships;
mod scan;
mod schema;
mod settings;
mod shared_config;
mod shared_state;
mod sql;
#[cfg(feature = "test-support")]
pub mod testing;
mod timings;
mod transfer;
mod turns;
mod work;
mod writer;

pub use audit::{AuditColumn, AuditFields, AuditPage, AuditQuery, NewAuditEvent, column_of, field_string};
pub use cluster::NodeRecord;
pub use connection::{Backend, DbTarget, Store, StoreOptions};
pub use error::StoreError;
pub use flatten::{
    IndexLimitExceeded, IndexSpec, Indexed, MAX_ARRAY_ITEMS, MAX_DEPTH, MAX_INDEX_ROWS, MAX_POINTER_BYTES,
    check_index_limits, fold_string,
};
pub use login::{LockoutRule, LoginFailure};
pub use objects::{NewObject, ObjectUpdate, StoredObject};
pub use query::{ObjectQuery, QueryPage};
pub use relationships::{Edge, EdgeTarget, GrantChange, RelationshipSet};
pub use shared_config::{ConfigEntry, ConfigListener};
pub use shared_state::RateLimit;
pub use timings::PoolState;
pub use transfer::{RestoreConflict, RestoredObject, Snapshot, SnapshotObject, unique_keys};
pub use turns::ObjectTurn;
pub use work::{WorkLease, WorkRecord};
