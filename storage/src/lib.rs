//! journeydb-storage: the storage engine of journeydb.
//!
//! It owns everything below SQL: the key dictionary (customer key to dense `u32` ordinal), the
//! write-ahead log, immutable columnar segments (roaring presence bitmaps + encoded, zstd-compressed
//! values), versioned manifests with atomic commits, compaction, and recovery.
//!
//! Contract (DESIGN.md §3): a table behaves exactly like
//! `SELECT key, RULE(c1) AS c1, .. FROM every_row_ever_appended GROUP BY key`, where RULE is each
//! column's merge rule (MIN, MAX, SUM, LAST; NULLs never win). The model-based property tests hold the
//! engine to it across appends, flushes, compactions, catalog commits and reopens.
//!
//! Invariants kept here and where they are checked:
//! - Acknowledged appends survive any crash ([`Database::append`]; `tests/crash.rs`).
//! - A reader's [`Snapshot`] never changes and never sees half a commit (`tests/model.rs`).
//! - Corrupt bytes are reported as typed errors, never served (segment, WAL, dictionary and manifest
//!   tests flip bytes).
//!
//! Entry points: [`Database`] (create, open, append, commit, flush, compact, snapshot) and
//! [`Snapshot`] / [`TableSnapshot`] for reads. The byte layout is specified in `storage/FORMAT.md`.
#![warn(missing_docs)]

pub mod db;
pub mod dir;
pub mod encoding;
pub mod error;
pub mod format;
pub mod keydict;
pub mod keytable;
pub mod log;
pub mod manifest;
pub mod mem;
pub mod schema;
pub mod segment;
pub mod snapshot;
pub mod text;
pub mod values;
pub mod wal;
pub mod workers;

pub use db::{
    BulkLoad, CellColumn, CheckReport, CompactStats, Database, FlushStats, IngestStats,
    KeyResolver, Options, Ordinals, PARTITION_ROWS_DEFAULT,
};
pub use error::{Result, StorageError};
pub use keydict::Key;
pub use manifest::CatalogOp;
pub use schema::{
    ColumnDef, ColumnId, ColumnType, KeyType, ManifestVersion, MergeRule, PartitionId, SegmentId,
    TableId, TableSchema,
};
pub use segment::{GroupsWhen, PartData, Stats};
pub use snapshot::{ColumnSummary, SegmentInfo, Snapshot, TableSnapshot};
pub use values::{ColumnData, Values};
