//! journeydb-io: files in and out.
//!
//! - [`read`]: Parquet, CSV, newline-delimited JSON and Arrow IPC files (globs expanded) read as
//!   Arrow batches that remember where each row came from (file, CSV/JSON line, Parquet row group).
//! - [`convert`]: a read batch converted to a table's column types by the rules of `docs/IO.md`,
//!   every bad value reported with its file, row, column and value (or set aside as a reject).
//! - [`write`]: query results written as Parquet (zstd, statistics, `TIMESTAMP(MICROS, UTC)`), CSV,
//!   JSON or Arrow IPC, optionally split into Hive-style hash buckets of the customer key.
//!
//! The crate knows nothing of SQL or of the server: the query engine (`COPY`, `read_parquet`) and
//! the command line (`journeydb import` / `export`, which also run through a client) call it.
#![warn(missing_docs)]

pub mod convert;
pub mod events;
pub mod import;
pub mod read;
pub mod write;

use std::path::{Path, PathBuf};

/// Errors of reading, converting and writing files.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not valid in its format (truncated, corrupt, not Parquet, ..).
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A value that does not convert to its column's type (names file, row, column and value).
    #[error("{at}: column {column}: {reason}")]
    Value {
        /// `file, line N` / `file, row group G, row R`.
        at: String,
        /// The column.
        column: String,
        /// The value and why it does not fit.
        reason: String,
    },
    /// A pattern that names no file, or an option that makes no sense.
    #[error("{0}")]
    Invalid(String),
    /// Too many rejected rows for `--max-errors`.
    #[error("{count} rows rejected, more than the {max} allowed (max errors); first: {first}")]
    TooManyErrors {
        /// Rows rejected so far.
        count: u64,
        /// The limit.
        max: u64,
        /// The first rejected row's reason.
        first: String,
    },
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, IoError>;

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet.
    Parquet,
    /// Comma-separated values (RFC 4180 quoting).
    Csv,
    /// Newline-delimited JSON objects (a top-level array of objects is read too).
    Json,
    /// Arrow IPC file or stream.
    Arrow,
}

impl Format {
    /// The format a name selects (`parquet`, `csv`, `json`/`ndjson`, `arrow`/`ipc`).
    pub fn from_name(name: &str) -> Result<Format> {
        match name.to_ascii_lowercase().as_str() {
            "parquet" => Ok(Format::Parquet),
            "csv" => Ok(Format::Csv),
            "json" | "ndjson" | "jsonl" => Ok(Format::Json),
            "arrow" | "ipc" | "feather" => Ok(Format::Arrow),
            other => Err(IoError::Invalid(format!(
                "unknown format {other:?} (parquet, csv, json or arrow)"
            ))),
        }
    }

    /// The format a file's extension names (`.parquet`, `.csv`, `.json`/`.ndjson`/`.jsonl`,
    /// `.arrow`/`.ipc`/`.feather`), compression suffixes aside.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?;
        Format::from_name(ext).ok()
    }

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Arrow => "arrow",
        }
    }
}

/// Expands file names and glob patterns (`dir/*.parquet`, `logs/**/*.csv`) into files, sorted and
/// deduplicated. A name without glob characters must exist; a pattern must match at least one file.
pub fn expand(patterns: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in patterns {
        if !p.contains(['*', '?', '[']) {
            let path = PathBuf::from(p);
            let meta = std::fs::metadata(&path).map_err(|source| IoError::File {
                path: path.clone(),
                source,
            })?;
            if meta.is_dir() {
                return Err(IoError::Invalid(format!(
                    "{p} is a directory; name its files or a pattern such as {p}/*.parquet"
                )));
            }
            out.push(path);
            continue;
        }
        let paths =
            glob::glob(p).map_err(|e| IoError::Invalid(format!("bad file pattern {p:?}: {e}")))?;
        let mut matched = 0;
        for entry in paths {
            let path = entry.map_err(|e| IoError::File {
                path: e.path().to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?;
            if path.is_file() {
                out.push(path);
                matched += 1;
            }
        }
        if matched == 0 {
            return Err(IoError::Invalid(format!("no file matches {p:?}")));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Runs `items` on a thread of its own, `depth` items ahead of whoever iterates the result: a
/// stage of a pipeline (decoding files on one thread while the next stage pivots or converts
/// them on another). The thread stops at its next item once the result is dropped.
pub fn prefetch<I>(items: I, depth: usize) -> impl Iterator<Item = I::Item> + Send
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(depth.max(1));
    std::thread::spawn(move || {
        for item in items {
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    rx.into_iter()
}

/// Runs `items` on a thread of its own, `depth` items ahead of `consume`, which gets them as an
/// iterator on the calling thread: reading and decoding files overlaps with loading them (or a
/// query's batches with writing them). When `consume` returns early, the producer stops at its
/// next item.
pub fn pipelined<I, R>(
    items: I,
    depth: usize,
    consume: impl FnOnce(&mut dyn Iterator<Item = I::Item>) -> R,
) -> R
where
    I: Iterator + Send,
    I::Item: Send,
{
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(depth.max(1));
        s.spawn(move || {
            for item in items {
                if tx.send(item).is_err() {
                    break;
                }
            }
        });
        let mut it = rx.into_iter();
        consume(&mut it)
    })
}
