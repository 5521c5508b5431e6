//! Typed errors of the storage engine.
//!
//! Callers match on variants, never on message text. Variants are grouped by fault: the user's input
//! (bad names, types, keys), the catalog (missing or existing tables), the files (corruption, versions),
//! and the operating system.

use std::path::PathBuf;

/// Result alias of the storage crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The directory already holds a database (on create).
    #[error("a database already exists at {0}")]
    AlreadyExists(PathBuf),
    /// The directory holds no database (on open).
    #[error("no journeydb database at {0}")]
    NotADatabase(PathBuf),
    /// Another process (or another handle in this one) has the database open.
    #[error("database at {0} is locked by another process or handle")]
    Locked(PathBuf),
    /// A stored block's checksum does not match its bytes.
    #[error("checksum mismatch in {path} at offset {offset}: expected {expected:#010x}, got {got:#010x}")]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// Byte offset of the block.
        offset: u64,
        /// Checksum stored in the file.
        expected: u32,
        /// Checksum of the bytes read.
        got: u32,
    },
    /// A stored structure is malformed.
    #[error("corrupt file {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset where decoding failed.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A file was written by a format version this build does not read.
    #[error("{path}: unsupported format version {version} (this build reads up to {supported})")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        version: u16,
        /// The newest version this build reads.
        supported: u16,
    },
    /// The table does not exist.
    #[error("table not found: {0}")]
    TableNotFound(String),
    /// The table exists already.
    #[error("table already exists: {0}")]
    TableExists(String),
    /// The column does not exist in the table.
    #[error("column not found: {table}.{column}")]
    ColumnNotFound {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
    },
    /// A name (table or column) is not acceptable.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A table definition is not acceptable.
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    /// An appended batch does not fit the table.
    #[error("invalid batch for table {table}: {reason}")]
    InvalidBatch {
        /// Table name.
        table: String,
        /// What was wrong.
        reason: String,
    },
    /// The key dictionary is full (more than u32::MAX keys) or a key is unusable.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// An operation the storage engine does not do on these tables.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A requested manifest version is not kept.
    #[error("version {0} is not kept (see Options::keep_versions)")]
    VersionNotKept(u64),
    /// A write failed to become durable earlier (a WAL or commit fsync); the database refuses
    /// writes until reopened.
    #[error(
        "a write failed to become durable earlier ({0}); restart (reopen the database) to recover"
    )]
    WalPoisoned(String),
    /// The file system holding the database is full (ENOSPC or a quota, EDQUOT). Nothing the failed
    /// call was writing was committed; the database keeps serving reads, and writes succeed again
    /// once space is freed.
    #[error(
        "disk full: no space left to write {path}; free space on that file system, then retry"
    )]
    DiskFull {
        /// The file being written.
        path: PathBuf,
    },
    /// A worker thread of a parallel operation panicked (a bug); nothing that operation was
    /// writing was committed.
    #[error("a worker thread failed while {0}; nothing was committed")]
    WorkerPanicked(&'static str),
}

impl StorageError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => StorageError::DiskFull { path: path.into() },
            _ => StorageError::Io {
                path: path.into(),
                source,
            },
        }
    }

    /// True for [`StorageError::DiskFull`].
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::DiskFull { .. })
    }

    /// A corruption found while decoding `path` at `offset`.
    pub fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
