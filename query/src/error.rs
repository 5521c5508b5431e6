//! Typed errors of the query engine, classified by fault (DataFusion style): the user's SQL, the
//! plan's types, execution, and the storage below.

use journeydb_storage::StorageError;

/// Result alias of the query crate.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

/// Everything that can go wrong running SQL.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The text is not valid SQL.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// Valid SQL outside journeydb's subset; names the construct.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A table that does not exist.
    #[error("table not found: {0}")]
    TableNotFound(String),
    /// A column that does not exist in scope.
    #[error("column not found: {0}")]
    ColumnNotFound(String),
    /// Types that do not fit (e.g. comparing a TIMESTAMP with a BOOLEAN).
    #[error("type error: {0}")]
    Type(String),
    /// A value that cannot be used (bad timestamp literal, overflow, bad sample percentage).
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// The storage engine refused or failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The query would need more memory than the per-query limit allows.
    #[error("the query needs about {need_mib} MiB, over the per-query memory limit of {limit_mib} MiB; narrow it (fewer columns, a filter, a sample, a LIMIT) or raise the limit")]
    MemoryLimit {
        /// Estimated need, MiB.
        need_mib: u64,
        /// The limit, MiB.
        limit_mib: u64,
    },
    /// A statement beyond the planner's limits (an operator chain or nesting too long to plan
    /// without deep recursion); names the limit.
    #[error("statement too complex: {0}")]
    TooComplex(String),
    /// `LOCK TABLE .. NOWAIT` found the lock held by another session.
    #[error("{0}")]
    LockNotAvailable(String),
    /// The session may not run this statement (a tenant's or the admin's rights).
    #[error("permission denied: {0}")]
    Permission(String),
    /// A write would break its table's data contract (see [`crate::contract`]).
    #[error("contract violated: {0}")]
    ContractViolated(String),
    /// A tenant's quota (disk bytes) would be exceeded.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The statement was cancelled by the client (CancelRequest).
    #[error("canceling statement due to user request")]
    Cancelled,
    /// Building Arrow output failed (an internal error).
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    /// Short machine-readable class of the error: `user`, `storage` or `internal`.
    pub fn class(&self) -> &'static str {
        match self {
            QueryError::Syntax(_)
            | QueryError::Unsupported(_)
            | QueryError::TableNotFound(_)
            | QueryError::ColumnNotFound(_)
            | QueryError::Type(_)
            | QueryError::InvalidValue(_)
            | QueryError::MemoryLimit { .. }
            | QueryError::TooComplex(_)
            | QueryError::LockNotAvailable(_)
            | QueryError::Permission(_)
            | QueryError::QuotaExceeded(_)
            | QueryError::ContractViolated(_)
            | QueryError::Cancelled => "user",
            QueryError::Storage(_) => "storage",
            QueryError::Internal(_) => "internal",
        }
    }
}

impl From<arrow_schema::ArrowError> for QueryError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        QueryError::Internal(e.to_string())
    }
}
