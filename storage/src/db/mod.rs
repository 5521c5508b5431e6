//! The database: one directory, one writer process, many concurrent readers.
//!
//! Layout of the directory:
//! ```text
//! DIR/LOCK                     advisory lock held while open (one process at a time)
//! DIR/CURRENT                  the current manifest version (replaced atomically: the commit point)
//! DIR/keys.dict                the key dictionary log
//! DIR/manifest/{v:020}.manifest  committed catalogs (the last `keep_versions` are kept)
//! DIR/wal/{seq:020}.wal        write-ahead log files not yet flushed
//! DIR/seg/{id:020}.seg         segment files
//! ```
//!
//! Invariants (who keeps them, who checks them):
//! - An append is acknowledged only after its keys and its WAL record are fsynced (`wait_durable`,
//!   checked by the crash test); it is visible to every snapshot taken after `append` returns.
//! - WAL records are applied to the memtable in log order (the group-commit leader applies the
//!   pending queue in order), which the LAST rule depends on.
//! - Every manifest change holds `publishing` (one at a time) and goes through `commit_version`,
//!   which builds the new version under the state lock before writing, so a failed write publishes
//!   nothing, and writes and fsyncs the manifest with the state lock released, so appends never
//!   wait for a commit's fsyncs.
//! - A segment file is deleted only when no kept manifest names it (`gc_trimmed`, or orphans on open).
//!
//! Rooms: `recovery` (create, open, replay, check), `append`, `commit` (group commit, manifest
//! commits, poisoning, garbage), `flush`, `ingest`, `load` (bulk loads), `compaction`,
//! `background` (the maintenance thread). This module holds the types they share and the small
//! public methods.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use arrow_array::{Array, Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray};
use arrow_schema::DataType;

use crate::dir::{parent_of, remove_file, sync_dir, Dir, DirLock, DiskDir, OpenMode};
use crate::error::{Result, StorageError};
use crate::keydict::{Key, KeyDict};
use crate::log::{LogFile, SyncPoint};
use crate::manifest::{
    apply_ops, commit_manifest, list_manifests, manifest_dir, manifest_path, prepare_manifest,
    publish_manifest, read_current, read_manifest, CatalogOp, Manifest, SegmentMeta,
};
use crate::schema::{
    ColumnId, KeyType, ManifestVersion, PartitionId, SegmentId, TableId, TableSchema,
};
use crate::segment::{encode_segment, write_segment_file, PartData, Segment};
use crate::snapshot::{merge_parts, Chunk, Snapshot, TableVersion, Version};
use crate::values::from_arrow;
use crate::wal::{
    create_wal, encode_batch, list_wal, read_wal, read_wal_torn, rewrite_wal, wal_path,
    BatchColumn, RowBatch,
};

mod append;
mod background;
mod commit;
mod compaction;
mod dense;
mod flush;
mod ingest;
mod load;
mod recovery;
mod sums;

pub use load::{BulkLoad, CellColumn, KeyResolver, Ordinals};

#[allow(unused_imports)]
use {append::*, background::*, recovery::*};

/// Default ordinals per partition: 4 roaring containers, about 40 partitions for 10M customers.
pub const PARTITION_ROWS_DEFAULT: u32 = 1 << 18;
/// Roaring container size; partition sizes are multiples of it.
pub const CONTAINER_ROWS: u32 = 1 << 16;
/// Largest batch accepted by one append, in rows.
pub const APPEND_ROWS_MAX: usize = 1 << 24;

/// Settings of an open database. Only `partition_rows` is stored (at create); the rest apply per open.
#[derive(Debug, Clone)]
pub struct Options {
    /// Ordinals per partition, a multiple of 65,536 (used by `create`; `open` reads the stored value).
    pub partition_rows: u32,
    /// Manifest versions kept for time travel (at least 1).
    pub keep_versions: usize,
    /// Unflushed rows that trigger a background flush (0: never flush in the background).
    pub flush_rows: u64,
    /// Segments in one partition of a table that trigger a background compaction (0: never); four
    /// times as many for a temporary table.
    pub compact_segments: usize,
    /// Run the background maintenance thread.
    pub background: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            partition_rows: PARTITION_ROWS_DEFAULT,
            keep_versions: 8,
            flush_rows: 2_000_000,
            compact_segments: 8,
            background: true,
        }
    }
}

impl Options {
    fn validate(&self) -> Result<()> {
        if self.partition_rows == 0
            || !self.partition_rows.is_multiple_of(CONTAINER_ROWS)
            || self.partition_rows > 1 << 30
        {
            return Err(StorageError::InvalidOption(format!(
                "partition_rows {} must be a positive multiple of 65536, at most 2^30",
                self.partition_rows
            )));
        }
        if self.keep_versions == 0 {
            return Err(StorageError::InvalidOption(
                "keep_versions must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What a flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Segments written.
    pub segments: usize,
    /// Distinct rows written (summed over segments).
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// What [`Database::check`] verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Tables read.
    pub tables: usize,
    /// Segments whose blocks were decoded.
    pub segments: usize,
    /// Rows (distinct keys) over all tables.
    pub rows: u64,
    /// Non-null values over all tables.
    pub values: u64,
    /// Kept manifests decoded.
    pub manifests: usize,
    /// Keys in the dictionary.
    pub keys: u64,
    /// WAL records decoded ([`Database::check_dir`]).
    pub wal_records: u64,
    /// Logs ending in a torn, never-acknowledged write ([`Database::check_dir`]).
    pub torn_tails: usize,
}

/// What an ingest wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Segments written.
    pub segments: usize,
    /// Rows written (summed over segments).
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Segments read.
    pub segments_in: usize,
    /// Segments written.
    pub segments_out: usize,
    /// Bytes written.
    pub bytes_out: u64,
}

/// Files a commit made unnecessary: segments no kept version names, and manifests that left the
/// kept window.
#[derive(Default)]
struct Garbage {
    segments: Vec<SegmentId>,
    manifests: Vec<ManifestVersion>,
}

struct State {
    manifest: Arc<Manifest>,
    version: Arc<Version>,
    /// Kept manifests, oldest first; the last is `manifest`.
    kept: VecDeque<Arc<Manifest>>,
    wal: LogFile,
    wal_seq: u64,
    written_lsn: u64,
    applied_lsn: u64,
    syncing: bool,
    poisoned: Option<String>,
    pending: VecDeque<(u64, TableId, Arc<Chunk>)>,
    mem_rows: u64,
    /// Rows appended to the WAL since its start (the manifest's `wal_start`): those of `mem_rows`
    /// and those of tables dropped or replaced since. The difference is dead weight a flush drops.
    wal_rows: u64,
}

#[derive(Default)]
struct Background {
    shutdown: bool,
    wake: bool,
    last_error: Option<String>,
}

struct Shared {
    fs: Arc<dyn Dir>,
    dir: PathBuf,
    opts: Options,
    _lock: DirLock,
    keys: Arc<RwLock<KeyDict>>,
    state: Mutex<State>,
    synced: Condvar,
    current: ArcSwap<Version>,
    maintenance: Mutex<()>,
    /// Held by every manifest commit: catalog commits ([`Database::commit`]) from before they
    /// write the segments they publish, flushes, ingests and compactions from before they read
    /// the manifest they change, until the new version is installed. Taken after `maintenance`
    /// and before `state`.
    publishing: Mutex<()>,
    next_segment_id: AtomicU64,
    bg: Mutex<Background>,
    bg_cv: Condvar,
}

/// An open database. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Database {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

/// The guard of [`Shared::publishing`], which every manifest commit holds: proof that it commits
/// alone.
type Publishing<'a> = MutexGuard<'a, ()>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of our locks is a bug; the data it guards is still consistent because
    // every critical section publishes only after all fallible steps succeeded.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every segment some manifest of `kept` names.
fn named_segments(kept: &VecDeque<Arc<Manifest>>) -> HashSet<SegmentId> {
    kept.iter()
        .flat_map(|m| {
            m.tables
                .iter()
                .flat_map(|t| t.segments.iter().map(|s| s.id))
        })
        .collect()
}

fn seg_dir(dir: &Path) -> PathBuf {
    dir.join("seg")
}

fn seg_path(dir: &Path, id: SegmentId) -> PathBuf {
    seg_dir(dir).join(format!("{:020}.seg", id.0))
}

fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("wal")
}

fn lock_dir(fs: &dyn Dir, dir: &Path) -> Result<DirLock> {
    let p = dir.join("LOCK");
    fs.lock(&p)
        .map_err(|e| StorageError::io(&p, e))?
        .ok_or_else(|| StorageError::Locked(dir.to_path_buf()))
}

impl Database {
    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// A consistent snapshot of the current state.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: self.shared.current.load_full(),
            keys: self.shared.keys.clone(),
        }
    }

    /// A snapshot of kept version `v` (time travel). It shows the tables of that version with the data
    /// that was flushed into segments when it was committed.
    pub fn snapshot_at(&self, v: ManifestVersion) -> Result<Snapshot> {
        let (m, current) = {
            let st = lock(&self.shared.state);
            let m = st
                .kept
                .iter()
                .find(|m| m.version == v)
                .cloned()
                .ok_or(StorageError::VersionNotKept(v.0))?;
            (m, st.version.clone())
        };
        let mut open: HashMap<SegmentId, Arc<Segment>> = current
            .tables
            .values()
            .flat_map(|t| t.segments.iter().map(|s| (s.id, s.clone())))
            .collect();
        let mut tables = BTreeMap::new();
        for t in &m.tables {
            let mut segs = Vec::new();
            for s in &t.segments {
                let seg = match open.get(&s.id) {
                    Some(seg) => seg.clone(),
                    None => {
                        let seg = Arc::new(Segment::open(
                            &*self.shared.fs,
                            &seg_path(&self.shared.dir, s.id),
                        )?);
                        open.insert(s.id, seg.clone());
                        seg
                    }
                };
                segs.push(seg);
            }
            let tv = TableVersion {
                id: t.id,
                name: t.name.clone(),
                schema: Arc::new(t.schema.clone()),
                segments: segs,
                mem: Vec::new(),
            };
            tables.insert(t.id, Arc::new(tv));
        }
        Ok(Snapshot {
            version: Arc::new(Version {
                manifest: m,
                tables,
            }),
            keys: self.shared.keys.clone(),
        })
    }

    /// Versions kept for time travel, oldest first.
    pub fn kept_versions(&self) -> Vec<ManifestVersion> {
        lock(&self.shared.state)
            .kept
            .iter()
            .map(|m| m.version)
            .collect()
    }

    /// Applies catalog operations as one atomic commit; returns the new version.
    pub fn commit(&self, ops: &[CatalogOp]) -> Result<ManifestVersion> {
        let alone = lock(&self.shared.publishing);
        let mut pre = self.shared.prewrite_published(ops);
        let st = lock(&self.shared.state);
        let m = apply_ops(&st.manifest, ops);
        // Segments written ahead that this commit does not publish (it is refused, or its tables
        // changed since) are removed now; those it publishes only if it fails (nothing is removed
        // once the state is poisoned).
        let published: HashSet<SegmentId> = m
            .iter()
            .flat_map(|m| m.tables.iter().filter(|t| !t.temporary))
            .flat_map(|t| t.segments.iter().map(|s| s.id))
            .collect();
        let stray: Vec<SegmentId> = pre
            .keys()
            .filter(|id| !published.contains(id))
            .copied()
            .collect();
        pre.retain(|id, _| published.contains(id));
        self.shared.drop_uncommitted(&st, &stray);
        let trimmed = self
            .shared
            .commit_version(&alone, st, m?, pre, &HashMap::new())?;
        // A commit of temporary tables only keeps the version number; `alone` is still held, so
        // this is the version just committed.
        let v = lock(&self.shared.state).manifest.version;
        drop(alone);
        self.shared.gc_trimmed(trimmed);
        Ok(v)
    }

    /// Creates a table.
    pub fn create_table(&self, name: &str, schema: TableSchema) -> Result<ManifestVersion> {
        self.commit(&[CatalogOp::Create {
            name: name.into(),
            schema,
            if_not_exists: false,
        }])
    }

    /// Drops a table.
    pub fn drop_table(&self, name: &str) -> Result<ManifestVersion> {
        self.commit(&[CatalogOp::Drop {
            name: name.into(),
            if_exists: false,
        }])
    }

    /// Exchanges the names of two tables in one commit.
    pub fn swap_tables(&self, a: &str, b: &str) -> Result<ManifestVersion> {
        self.commit(&[CatalogOp::Swap {
            a: a.into(),
            b: b.into(),
        }])
    }

    /// Adds rows already mapped to ordinals (e.g. a query result) to `table` by writing segments
    /// directly and committing them: no WAL, no key lookups. `parts` holds, per partition, data in the
    /// table's column order; several entries for one partition are allowed (they fold by the merge
    /// rules like appends). Unflushed appends to the table are flushed first so merge order stays
    /// append order. Durable when it returns; all or nothing.
    pub fn ingest(&self, table: &str, parts: Vec<(PartitionId, PartData)>) -> Result<IngestStats> {
        self.shared.ingest(table, parts)
    }

    /// Writes every acknowledged append held in memory into segments (one per table and partition) and
    /// commits them; the WAL files they came from are deleted.
    pub fn flush(&self) -> Result<FlushStats> {
        self.shared.flush()
    }

    /// Folds the segments of every partition holding at least `min_segments` (at least 2) into one.
    pub fn compact(&self, min_segments: usize) -> Result<CompactStats> {
        self.shared
            .compact(compaction::MinPieces::all(min_segments.max(2)))
    }

    /// The last error of the background maintenance thread, if any.
    pub fn background_error(&self) -> Option<String> {
        lock(&self.shared.bg).last_error.clone()
    }

    /// Bytes of memory held by the key dictionary.
    pub fn key_dictionary_bytes(&self) -> usize {
        self.shared
            .keys
            .read()
            .map(|k| k.memory_bytes())
            .unwrap_or(0)
    }

    /// Verifies the database: decodes every block of every table of the current version (checking
    /// every checksum) and every kept manifest. The first problem is returned as an error.
    pub fn check(&self) -> Result<CheckReport> {
        let snap = self.snapshot();
        let mut report = CheckReport::default();
        for name in snap.table_names() {
            let t = snap.table(&name)?;
            report.tables += 1;
            for p in t.partitions() {
                report.rows += t.rows(p).len();
                for c in 0..t.schema().columns.len() {
                    report.values += t.column(p, ColumnId(c as u32))?.values.len() as u64;
                }
            }
            report.segments += t.storage().iter().filter(|s| s.id.is_some()).count();
        }
        for v in self.kept_versions() {
            read_manifest(&*self.shared.fs, &self.shared.dir, v)?;
            report.manifests += 1;
        }
        report.keys = snap.keys().len() as u64;
        Ok(report)
    }

    /// Acknowledged rows not yet flushed.
    pub fn unflushed_rows(&self) -> u64 {
        lock(&self.shared.state).mem_rows
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        {
            let mut bg = lock(&self.shared.bg);
            bg.shutdown = true;
            self.shared.bg_cv.notify_all();
        }
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
