//! journeydb-query: the journey SQL subset and its vectorized bitmap executor.
//!
//! SQL text is parsed by `sqlparser` (PostgreSQL dialect, plus journeydb's `MERGE` column rule) into
//! a small logical plan (`plan`), which runs partition by partition in parallel (`exec`):
//! predicates are roaring bitmaps with three-valued logic (`vector`), set operations on customer keys
//! are bitmap AND / OR / AND-NOT, `GROUP BY key` aggregation is an ordinal-aligned merge, and keys are
//! decoded through the dictionary only for the rows returned. Results are Arrow `RecordBatch`es.
//!
//! Contract: every answer equals DuckDB's for the same SQL over the equivalence view of DESIGN.md §3
//! (checked by the sqllogictest files and the differential test in `tests/`).
#![warn(missing_docs)]

pub mod admin;
pub mod agg;
pub mod budget;
pub mod cancel;
pub mod catalog;
pub mod contract;
pub mod copy;
pub mod costs;
pub mod engine;
pub mod error;
pub mod exec;
pub mod files;
pub mod format;
pub mod func;
pub mod join;
mod locks;
pub mod meter;
pub mod parse;
pub mod plan;
pub mod settings;
mod sort;
pub mod summarize;
pub mod system;
pub mod types;
pub mod vector;

pub use engine::{Engine, LogSource, Output, StatementLog, StatementRecord, WriteGuard};

/// The stored table behind `system.queries` (the server's query log): a name no user table takes by
/// accident.
pub const QUERY_LOG_TABLE: &str = "_journeydb_queries";

/// True for the engine's own tables, which listings (`SHOW TABLES`, the catalog, `system.tables`)
/// leave out: the query log and the scratch tables of CREATE TABLE AS.
pub fn is_internal_table(name: &str) -> bool {
    name == QUERY_LOG_TABLE || name.starts_with(engine::CTAS_PREFIX)
}

/// The PostgreSQL version journeydb reports (`server_version`): clients such as psql choose their
/// catalog queries by it.
pub const SERVER_VERSION: &str = "14.0 (journeydb)";
/// [`SERVER_VERSION`] as `server_version_num`.
pub const SERVER_VERSION_NUM: &str = "140000";
pub use error::{QueryError, Result};
/// The storage errors a [`QueryError::Storage`] carries, for callers that classify them.
pub use journeydb_storage::{
    BulkLoad, CellColumn, ColumnDef, ColumnId, ColumnType, Database, KeyType, MergeRule, Options,
    Ordinals, StorageError, TableSchema,
};

/// A deterministic xorshift generator for tests: each call gives a number below `n` (`n` > 0).
#[cfg(test)]
pub(crate) fn test_rng(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut z = seed;
    move |n| {
        z ^= z << 13;
        z ^= z >> 7;
        z ^= z << 17;
        z % n
    }
}
