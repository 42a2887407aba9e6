//! Storage failures. Callers turn them into resource errors; the database text is logged, never
//! shown to clients.

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An object with this type and id already exists.
    #[error("object already exists")]
    AlreadyExists,
    /// The object does not exist.
    #[error("object not found")]
    NotFound,
    /// The object's revision is not the expected one.
    #[error("revision mismatch")]
    RevisionMismatch,
    /// Another object of the type already holds this value of a unique property.
    #[error("unique value already taken for {property}")]
    UniqueViolation {
        /// The property whose value is taken.
        property: String,
    },
    /// The object would add more to the property index than one write may.
    #[error(transparent)]
    TooLarge(#[from] crate::flatten::IndexLimitExceeded),
    /// A query ran out of its time limit (cancelled by PostgreSQL; on SQLite, stopped at its next
    /// statement).
    #[error("query exceeded its time limit of {} ms", .limit.as_millis())]
    TimedOut {
        /// The limit the query was given.
        limit: std::time::Duration,
    },
    /// A paged-results cookie that this store did not issue.
    #[error("invalid paged results cookie")]
    InvalidCookie,
    /// The database URL is not one we serve.
    #[error("{0}")]
    BadTarget(String),
    /// No connection could be had in time.
    #[error("database unavailable: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    /// The database refused a statement.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    /// Could not connect.
    #[error("cannot connect: {0}")]
    Connection(#[from] diesel::ConnectionError),
    /// The transaction a write shared with concurrent writes (SQLite's group commit) could not
    /// be committed; the write is not stored.
    #[error("the shared write transaction could not be committed: {0}")]
    GroupCommit(String),
    /// Stored JSON did not parse.
    #[error("stored JSON is corrupt: {0}")]
    Json(#[from] serde_json::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The data directory could not be prepared.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The path concerned.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
}
