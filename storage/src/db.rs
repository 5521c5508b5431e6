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
//! - Every manifest change goes through `State` under one mutex and `commit_locked`, which builds the
//!   new version before writing, so a failed write publishes nothing.
//! - A segment file is deleted only when no kept manifest names it (`gc_trimmed`, or orphans on open).

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
use crate::format::{KEYDICT_MAGIC, KEYDICT_VERSION, WAL_MAGIC, WAL_VERSION};
use crate::keydict::{Key, KeyDict};
use crate::log::{LogFile, SyncPoint};
use crate::manifest::{
    apply_ops, commit_manifest, list_manifests, manifest_dir, manifest_path, read_current,
    read_manifest, CatalogOp, Manifest, SegmentMeta,
};
use crate::schema::{
    ColumnId, KeyType, ManifestVersion, PartitionId, SegmentId, TableId, TableSchema,
};
use crate::segment::{encode_segment, write_segment_file, PartData, Segment};
use crate::snapshot::{merge_parts, Chunk, Snapshot, TableVersion, Version};
use crate::values::from_arrow;
use crate::wal::{
    create_wal, encode_batch, list_wal, read_wal, rewrite_wal, wal_path, BatchColumn, RowBatch,
};

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
    /// Segments in one partition of a table that trigger a background compaction (0: never).
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of our locks is a bug; the data it guards is still consistent because
    // every critical section publishes only after all fallible steps succeeded.
    m.lock().unwrap_or_else(|e| e.into_inner())
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

/// What recovery found on disk: the state an open database starts from.
struct Recovered {
    manifest: Arc<Manifest>,
    kept: VecDeque<Arc<Manifest>>,
    keys: KeyDict,
    mem: HashMap<TableId, Vec<Arc<Chunk>>>,
    mem_rows: u64,
    wal_seq: u64,
    wal: LogFile,
    max_seg: u64,
    segments: HashMap<SegmentId, Arc<Segment>>,
}

/// `DIR/RECOVER`: left by a database that stopped accepting writes after a failed fsync. The page
/// cache of this boot may hold log bytes the disk never got (the kernel marks such pages clean after
/// reporting the error), so the next open rewrites the dictionary, the WAL and the current manifest
/// into fresh, synced files before trusting them. Only needed within the same boot: after a reboot
/// the files are what the disk holds, so the marker need not be durable itself.
fn recover_marker(dir: &Path) -> PathBuf {
    dir.join("RECOVER")
}

/// Recovery: reads the last commit, removes what never committed, replays the WAL, and makes
/// everything it replays durable before the database accepts work.
fn recover(fs: &dyn Dir, dir: &Path, opts: &Options) -> Result<Recovered> {
    let rewrite = fs.exists(&recover_marker(dir));
    let current = read_current(fs, dir)?;
    let manifest = Arc::new(read_manifest(fs, dir, current)?);
    if rewrite {
        commit_manifest(fs, dir, &manifest)?;
    } else {
        // The commit read here may still be only in the page cache (a process killed between the
        // rename of CURRENT and its directory fsync): make it durable before building on it, or a
        // power cut could take it back from under later, acknowledged work.
        sync_file(fs, &manifest_path(dir, current))?;
        sync_dir(fs, &manifest_dir(dir))?;
        sync_file(fs, &dir.join("CURRENT"))?;
        sync_dir(fs, dir)?;
    }
    // A manifest or CURRENT `.tmp` left by a commit interrupted before its rename never took
    // effect; nor did a rewrite of a log interrupted before its rename.
    remove_file(fs, &dir.join("CURRENT.tmp"))?;
    remove_file(fs, &dir.join("keys.dict.tmp"))?;
    let mdir = manifest_dir(dir);
    for name in crate::dir::list(fs, &mdir)? {
        if name.ends_with(".tmp") {
            remove_file(fs, &mdir.join(name))?;
        }
    }
    // A manifest newer than CURRENT is a commit that never happened.
    let mut kept = VecDeque::new();
    for v in list_manifests(fs, dir)?.into_iter().rev() {
        if v > current {
            remove_file(fs, &manifest_path(dir, v))?;
        } else if v < current && kept.len() + 1 < opts.keep_versions {
            match read_manifest(fs, dir, v) {
                Ok(m) => kept.push_front(Arc::new(m)),
                Err(_) => break,
            }
        }
    }
    kept.push_back(manifest.clone());
    // Opening the dictionary syncs it (or rewrites it): keys replayed from the page cache become
    // durable before any later data can use their ordinals.
    let kpath = dir.join("keys.dict");
    let keys = if rewrite {
        KeyDict::open_rewritten(fs, &kpath)?
    } else {
        KeyDict::open(fs, &kpath)?
    };
    if keys.key_type() != manifest.key_type {
        return Err(StorageError::corrupt(
            kpath,
            10,
            "key type differs from the manifest's",
        ));
    }
    let (segments, max_seg) = open_segments(fs, dir, &manifest, &kept, &keys)?;
    let (mem, mem_rows, seqs) = replay_wal(fs, dir, &manifest, &keys, rewrite)?;
    let wdir = wal_dir(dir);
    let wal_seq = seqs.last().copied().unwrap_or(0).max(manifest.wal_start) + 1;
    let wal = create_wal(fs, &wdir, wal_seq)?;
    if rewrite {
        remove_file(fs, &recover_marker(dir))?;
        sync_dir(fs, dir)?;
    }
    Ok(Recovered {
        manifest,
        kept,
        keys,
        mem,
        mem_rows,
        wal_seq,
        wal,
        max_seg,
        segments,
    })
}

/// Opens the segments of the current version and removes orphans (written by a flush that never
/// committed, or no longer named by a kept version). Returns them and the highest segment id seen.
fn open_segments(
    fs: &dyn Dir,
    dir: &Path,
    manifest: &Manifest,
    kept: &VecDeque<Arc<Manifest>>,
    keys: &KeyDict,
) -> Result<(HashMap<SegmentId, Arc<Segment>>, u64)> {
    let mut segments: HashMap<SegmentId, Arc<Segment>> = HashMap::new();
    for t in &manifest.tables {
        for s in &t.segments {
            let seg = Segment::open(fs, &seg_path(dir, s.id))?;
            // A segment whose ordinals the dictionary does not hold means the dictionary lost
            // keys that durable data uses (a power cut before its fsync): opening would let
            // new keys take those ordinals and inherit the rows. Refuse instead.
            if let Some(max) = seg.rows.max() {
                if max >= keys.len() {
                    return Err(StorageError::corrupt(
                        seg_path(dir, s.id),
                        0,
                        format!(
                            "the segment holds ordinal {max} but the key dictionary has only {} keys: \
                             keys.dict lost keys that data uses",
                            keys.len()
                        ),
                    ));
                }
            }
            segments.insert(s.id, Arc::new(seg));
        }
    }
    let referenced: HashSet<SegmentId> = kept
        .iter()
        .flat_map(|m| {
            m.tables
                .iter()
                .flat_map(|t| t.segments.iter().map(|s| s.id))
        })
        .collect();
    let mut max_seg = 0u64;
    let sdir = seg_dir(dir);
    for name in crate::dir::list(fs, &sdir)? {
        if let Some(id) = name
            .strip_suffix(".seg")
            .and_then(|s| s.parse::<u64>().ok())
        {
            max_seg = max_seg.max(id);
            if !referenced.contains(&SegmentId(id)) {
                remove_file(fs, &sdir.join(&name))?;
            }
        }
    }
    Ok((segments, max_seg))
}

/// Replays the WAL files the manifest still needs into memtable chunks, and makes them durable
/// (rewritten into fresh files when `rewrite`). Returns the chunks, their rows and the sequence
/// numbers of the WAL files kept.
#[allow(clippy::type_complexity)]
fn replay_wal(
    fs: &dyn Dir,
    dir: &Path,
    manifest: &Manifest,
    keys: &KeyDict,
    rewrite: bool,
) -> Result<(HashMap<TableId, Vec<Arc<Chunk>>>, u64, Vec<u64>)> {
    let mut mem: HashMap<TableId, Vec<Arc<Chunk>>> = HashMap::new();
    let mut mem_rows = 0u64;
    let wdir = wal_dir(dir);
    let key_count = keys.len();
    let mut kept = Vec::new();
    let mut stop = false;
    for name in crate::dir::list(fs, &wdir)? {
        if name.ends_with(".tmp") {
            // A rewrite interrupted before its rename: the original is still in place.
            remove_file(fs, &wdir.join(name))?;
        }
    }
    for seq in list_wal(fs, &wdir)? {
        if seq < manifest.wal_start || stop {
            // Flushed already; or after an unacknowledged record, so unacknowledged too.
            remove_file(fs, &wal_path(&wdir, seq))?;
            continue;
        }
        kept.push(seq);
        for (offset, batch) in read_wal(fs, &wdir, seq)? {
            if batch.ordinals.iter().any(|o| *o >= key_count) {
                // Its keys never became durable, so it was never acknowledged: cut the log here so
                // the ordinals cannot later be reused by other keys and resurrect it.
                let p = wal_path(&wdir, seq);
                crate::dir::open(fs, &p, OpenMode::Write)?
                    .set_len(offset)
                    .map_err(|e| StorageError::io(&p, e))?;
                stop = true;
                break;
            }
            let Some(t) = manifest.tables.iter().find(|t| t.id == batch.table) else {
                continue;
            };
            check_batch_schema(&wal_path(&wdir, seq), offset, &batch, &t.schema)?;
            let chunk = Chunk::from_batch(&batch, &t.schema, manifest.partition_rows);
            mem_rows += chunk.rows_appended;
            mem.entry(t.id).or_default().push(Arc::new(chunk));
        }
    }
    // Recovery must persist only what is durable. Records replayed from the page cache (written
    // before a kill but never fsynced) become visible now and may soon be flushed into durable
    // segments; make the replayed log durable first (the dictionary already is), so a power cut
    // after this point cannot take away records that later data builds on.
    for &seq in &kept {
        if rewrite {
            rewrite_wal(fs, &wdir, seq)?;
        } else {
            let p = wal_path(&wdir, seq);
            crate::dir::open(fs, &p, OpenMode::Write)?
                .sync()
                .map_err(|e| StorageError::io(&p, e))?;
        }
    }
    sync_dir(fs, &wdir)?;
    Ok((mem, mem_rows, kept))
}

/// fsyncs the file at `path`.
fn sync_file(fs: &dyn Dir, path: &Path) -> Result<()> {
    crate::dir::open(fs, path, OpenMode::Read)?
        .sync()
        .map_err(|e| StorageError::io(path, e))
}

/// Creates directory `path` and its missing parents, syncing the parent of each one created: a
/// database made inside a new directory must not vanish with that directory's unsynced name.
fn create_dir_all_synced(fs: &dyn Dir, path: &Path) -> Result<()> {
    if fs.exists(path) {
        return Ok(());
    }
    let parent = parent_of(path);
    if parent != path {
        create_dir_all_synced(fs, &parent)?;
    }
    fs.create_dir_all(path)
        .map_err(|e| StorageError::io(path, e))?;
    sync_dir(fs, &parent)
}

/// True when the log file at `path` ends in a torn tail (a file cut inside its header counts).
fn log_is_torn(fs: &dyn Dir, path: &Path, magic: [u8; 8], version: u16) -> Result<bool> {
    let bytes = crate::dir::read(fs, path)?;
    if bytes.len() < crate::format::FILE_HEADER_LEN {
        return Ok(true);
    }
    let h = crate::log::read_header(path, &bytes, magic, version)?;
    Ok(crate::log::read_records(path, &bytes, h)?.torn_tail)
}

impl Database {
    /// Creates a new database in `dir` (which must not exist or be empty) on the real disk.
    pub fn create(dir: impl AsRef<Path>, key_type: KeyType, opts: Options) -> Result<Database> {
        Self::create_in(Arc::new(DiskDir), dir, key_type, opts)
    }

    /// Creates a new database in `dir` on the file system `fs`.
    ///
    /// The database is built in a sibling directory and renamed into place, then the parent is
    /// synced: a crash part-way leaves either no database at `dir` (and a stray
    /// `.NAME.creating-PID` beside it, removed by the next create) or a whole one, never a
    /// half-made directory that neither `create` nor `open` accepts.
    pub fn create_in(
        fs: Arc<dyn Dir>,
        dir: impl AsRef<Path>,
        key_type: KeyType,
        opts: Options,
    ) -> Result<Database> {
        let dir = dir.as_ref();
        opts.validate()?;
        if fs.exists(&dir.join("CURRENT")) {
            return Err(StorageError::AlreadyExists(dir.to_path_buf()));
        }
        if fs.list(dir).is_ok_and(|entries| !entries.is_empty()) {
            return Err(StorageError::InvalidOption(format!(
                "{} exists and is not empty (and is not a journeydb database: no CURRENT)",
                dir.display()
            )));
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| StorageError::InvalidOption(format!("{} has no name", dir.display())))?;
        let parent = parent_of(dir);
        create_dir_all_synced(&*fs, &parent)?;
        // Leftovers of creates that crashed are not databases: remove them.
        let prefix = format!(".{name}.creating-");
        for n in fs.list(&parent).unwrap_or_default() {
            if n.starts_with(&prefix) {
                let _ = fs.remove_dir_all(&parent.join(n));
            }
        }
        let tmp = parent.join(format!("{prefix}{}", std::process::id()));
        for d in [tmp.clone(), manifest_dir(&tmp), wal_dir(&tmp), seg_dir(&tmp)] {
            fs.create_dir_all(&d).map_err(|e| StorageError::io(&d, e))?;
        }
        {
            let lock_file = lock_dir(&*fs, &tmp)?;
            KeyDict::create(&*fs, &tmp.join("keys.dict"), key_type)?;
            for d in [manifest_dir(&tmp), wal_dir(&tmp), seg_dir(&tmp)] {
                sync_dir(&*fs, &d)?;
            }
            commit_manifest(&*fs, &tmp, &Manifest::initial(key_type, opts.partition_rows))?;
            sync_dir(&*fs, &tmp)?;
            drop(lock_file);
        }
        // An empty directory at `dir` is replaced (rename onto an empty directory is atomic).
        fs.rename(&tmp, dir).map_err(|e| StorageError::io(dir, e))?;
        sync_dir(&*fs, &parent)?;
        Self::open_in(fs, dir, opts)
    }

    /// Opens the database in `dir` on the real disk: the last committed state plus every
    /// acknowledged append.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Database> {
        Self::open_in(Arc::new(DiskDir), dir, opts)
    }

    /// Opens the database in `dir` on the file system `fs`.
    pub fn open_in(fs: Arc<dyn Dir>, dir: impl AsRef<Path>, opts: Options) -> Result<Database> {
        let dir = dir.as_ref().to_path_buf();
        opts.validate()?;
        if !fs.exists(&dir.join("CURRENT")) {
            return Err(StorageError::NotADatabase(dir));
        }
        let lock_file = lock_dir(&*fs, &dir)?;
        let recovered = recover(&*fs, &dir, &opts)?;
        let Recovered {
            manifest,
            kept,
            keys,
            mem,
            mem_rows,
            wal_seq,
            wal,
            max_seg,
            segments,
        } = recovered;
        let tables = manifest
            .tables
            .iter()
            .map(|t| {
                let segs = t
                    .segments
                    .iter()
                    .filter_map(|s| segments.get(&s.id).cloned())
                    .collect();
                let tv = TableVersion {
                    id: t.id,
                    name: t.name.clone(),
                    schema: Arc::new(t.schema.clone()),
                    segments: segs,
                    mem: mem.get(&t.id).cloned().unwrap_or_default(),
                };
                (t.id, Arc::new(tv))
            })
            .collect();
        let version = Arc::new(Version {
            manifest: manifest.clone(),
            tables,
        });
        let next_segment_id = manifest.next_segment_id.max(max_seg + 1);
        let state = State {
            manifest,
            version: version.clone(),
            kept,
            wal,
            wal_seq,
            written_lsn: 0,
            applied_lsn: 0,
            syncing: false,
            poisoned: None,
            pending: VecDeque::new(),
            mem_rows,
        };
        let shared = Arc::new(Shared {
            fs,
            dir,
            opts,
            _lock: lock_file,
            keys: Arc::new(RwLock::new(keys)),
            state: Mutex::new(state),
            synced: Condvar::new(),
            current: ArcSwap::new(version),
            maintenance: Mutex::new(()),
            next_segment_id: AtomicU64::new(next_segment_id),
            bg: Mutex::new(Background::default()),
            bg_cv: Condvar::new(),
        });
        let worker = if shared.opts.background {
            let s = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("journeydb-maintenance".into())
                    .spawn(move || maintenance_loop(&s))
                    .map_err(|e| StorageError::io("maintenance thread", e))?,
            )
        } else {
            None
        };
        Ok(Database { shared, worker })
    }

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
                        let seg = Arc::new(Segment::open(&*self.shared.fs, &seg_path(&self.shared.dir, s.id))?);
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
        let mut st = lock(&self.shared.state);
        let m = apply_ops(&st.manifest, ops)?;
        let v = m.version;
        let trimmed = self
            .shared
            .commit_locked(&mut st, m, HashMap::new(), &HashMap::new())?;
        drop(st);
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

    /// Appends the rows of `batch` to `table`. The batch holds the key column (named like the table's
    /// key column) and any subset of the value columns, by name. When this returns `Ok`, the rows are
    /// durable and visible to every snapshot taken afterwards. Returns the number of rows appended.
    pub fn append(&self, table: &str, batch: &RecordBatch) -> Result<usize> {
        let version = self.shared.current.load_full();
        let tv = version
            .table_by_name(table)
            .ok_or_else(|| StorageError::TableNotFound(table.to_string()))?
            .clone();
        let n = batch.num_rows();
        if n > APPEND_ROWS_MAX {
            return Err(StorageError::InvalidBatch {
                table: table.into(),
                reason: format!("{n} rows; at most {APPEND_ROWS_MAX} per append"),
            });
        }
        let (key_col, columns) = resolve_batch(&tv, batch, version.manifest.key_type)?;
        if n == 0 {
            return Ok(0);
        }
        let ordinals = {
            let mut keys = self.shared.keys.write().unwrap_or_else(|e| e.into_inner());
            insert_keys(&mut keys, key_col, &tv.name)?
        };
        let rows: Vec<usize> = (0..n).collect();
        let mut cols = Vec::with_capacity(columns.len());
        for (id, array) in columns {
            let def =
                tv.schema
                    .columns
                    .get(id.0 as usize)
                    .ok_or_else(|| StorageError::InvalidBatch {
                        table: tv.name.clone(),
                        reason: "internal: column id".into(),
                    })?;
            let (valid, values) = from_arrow(array.as_ref(), def.ty, &rows).ok_or_else(|| {
                StorageError::InvalidBatch {
                    table: tv.name.clone(),
                    reason: format!("column {} has Arrow type {}", def.name, array.data_type()),
                }
            })?;
            cols.push(BatchColumn {
                id,
                ty: def.ty,
                valid,
                values,
            });
        }
        let row_batch = RowBatch {
            table: tv.id,
            ordinals,
            columns: cols,
        };
        let payload = encode_batch(&row_batch);
        let chunk = Arc::new(Chunk::from_batch(
            &row_batch,
            &tv.schema,
            version.manifest.partition_rows,
        ));
        drop(row_batch);

        let mut st = lock(&self.shared.state);
        if let Some(p) = &st.poisoned {
            return Err(StorageError::WalPoisoned(p.clone()));
        }
        if !st.version.tables.contains_key(&tv.id) {
            return Err(StorageError::TableNotFound(table.to_string()));
        }
        st.wal.append(&payload)?;
        st.written_lsn += 1;
        let lsn = st.written_lsn;
        st.pending.push_back((lsn, tv.id, chunk));
        self.shared.wait_durable(st, lsn)?;
        Ok(n)
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
        self.shared.compact(min_segments.max(2))
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

    /// Verifies the database in `dir` without changing a byte of it (no lock taken, no log
    /// truncated, no file created or removed): the current and every older manifest, the key
    /// dictionary, every block of every segment of the current version (checking every checksum,
    /// and that every ordinal has a key), and every WAL record. The first problem is returned as
    /// an error. A torn tail of the dictionary or the WAL (writes that were never acknowledged) is
    /// reported in `torn_tails`, not as an error.
    pub fn check_dir(dir: impl AsRef<Path>) -> Result<CheckReport> {
        Self::check_dir_in(&DiskDir, dir)
    }

    /// [`Database::check_dir`] on the file system `fs`.
    pub fn check_dir_in(fs: &dyn Dir, dir: impl AsRef<Path>) -> Result<CheckReport> {
        let dir = dir.as_ref();
        if !fs.exists(&dir.join("CURRENT")) {
            return Err(StorageError::NotADatabase(dir.to_path_buf()));
        }
        let mut report = CheckReport::default();
        let current = read_current(fs, dir)?;
        let manifest = read_manifest(fs, dir, current)?;
        for v in list_manifests(fs, dir)? {
            if v <= current {
                read_manifest(fs, dir, v)?;
                report.manifests += 1;
            }
        }
        let kpath = dir.join("keys.dict");
        let keys = KeyDict::open_read_only(fs, &kpath)?;
        report.torn_tails += usize::from(log_is_torn(fs, &kpath, KEYDICT_MAGIC, KEYDICT_VERSION)?);
        if keys.key_type() != manifest.key_type {
            return Err(StorageError::corrupt(kpath, 10, "key type differs from the manifest's"));
        }
        report.keys = u64::from(keys.len());
        for t in &manifest.tables {
            report.tables += 1;
            let mut rows = roaring::RoaringBitmap::new();
            for sref in &t.segments {
                let path = seg_path(dir, sref.id);
                let seg = Segment::open(fs, &path)?;
                if let Some(max) = seg.rows.max() {
                    if max >= keys.len() {
                        return Err(StorageError::corrupt(
                            path,
                            0,
                            format!(
                                "the segment holds ordinal {max} but the key dictionary has only {} keys",
                                keys.len()
                            ),
                        ));
                    }
                }
                let data = seg.read_all(&t.schema)?;
                report.values += data
                    .columns
                    .iter()
                    .flatten()
                    .map(|c| c.values.len() as u64)
                    .sum::<u64>();
                rows |= &seg.rows;
                report.segments += 1;
            }
            report.rows += rows.len();
        }
        let wdir = wal_dir(dir);
        for seq in list_wal(fs, &wdir)? {
            if seq < manifest.wal_start {
                continue;
            }
            report.wal_records += read_wal(fs, &wdir, seq)?.len() as u64;
            report.torn_tails +=
                usize::from(log_is_torn(fs, &wal_path(&wdir, seq), WAL_MAGIC, WAL_VERSION)?);
        }
        Ok(report)
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

/// The value columns of an appended batch, by column id.
type ValueColumns = Vec<(ColumnId, arrow_array::ArrayRef)>;

/// Finds the key column and the value columns of an appended batch, checking names, types and
/// duplicates.
fn resolve_batch<'a>(
    tv: &TableVersion,
    batch: &'a RecordBatch,
    key_type: KeyType,
) -> Result<(&'a dyn Array, ValueColumns)> {
    let bad = |reason: String| StorageError::InvalidBatch {
        table: tv.name.clone(),
        reason,
    };
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| f.name().eq_ignore_ascii_case(&tv.schema.key_name))
    {
        return Err(bad(format!(
            "the key column {} is missing",
            tv.schema.key_name
        )));
    }
    let mut key = None;
    let mut cols = Vec::new();
    let mut seen = HashSet::new();
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name();
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(bad(format!("column {name} appears twice")));
        }
        if name.eq_ignore_ascii_case(&tv.schema.key_name) {
            key = Some(array.as_ref());
            continue;
        }
        let (id, def) = tv
            .schema
            .column(name)
            .ok_or_else(|| StorageError::ColumnNotFound {
                table: tv.name.clone(),
                column: name.clone(),
            })?;
        let ok = matches!(array.data_type(), DataType::Null)
            || array.data_type() == &crate::values::arrow_type(def.ty)
            || matches!(
                (def.ty, array.data_type()),
                (
                    crate::schema::ColumnType::Timestamp,
                    DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _)
                )
            )
            || matches!(
                (def.ty, array.data_type()),
                (
                    crate::schema::ColumnType::Varchar,
                    DataType::LargeUtf8 | DataType::Utf8View
                )
            );
        if !ok {
            return Err(bad(format!(
                "column {name} is {} but the batch has {}",
                def.ty.sql_name(),
                array.data_type()
            )));
        }
        cols.push((id, array.clone()));
    }
    let key =
        key.ok_or_else(|| bad(format!("the key column {} is missing", tv.schema.key_name)))?;
    let key_ok = match key_type {
        KeyType::Varchar => matches!(
            key.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        KeyType::Bigint => key.data_type() == &DataType::Int64,
    };
    if !key_ok {
        return Err(bad(format!(
            "the key column must be {key_type:?}, the batch has {}",
            key.data_type()
        )));
    }
    if key.null_count() > 0 {
        return Err(StorageError::InvalidKey(format!(
            "the key column of an append to {} holds NULL",
            tv.name
        )));
    }
    Ok((key, cols))
}

fn insert_keys(keys: &mut KeyDict, array: &dyn Array, table: &str) -> Result<Vec<u32>> {
    let any = array.as_any();
    let n = array.len();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        keys.get_or_insert((0..n).map(|i| Key::Str(a.value(i))))
    } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        keys.get_or_insert((0..n).map(|i| Key::Str(a.value(i))))
    } else if let Some(a) = any.downcast_ref::<StringViewArray>() {
        keys.get_or_insert((0..n).map(|i| Key::Str(a.value(i))))
    } else if let Some(a) = any.downcast_ref::<Int64Array>() {
        keys.get_or_insert((0..n).map(|i| Key::Int(a.value(i))))
    } else {
        Err(StorageError::InvalidBatch {
            table: table.into(),
            reason: format!("unsupported key type {}", array.data_type()),
        })
    }
}

fn check_batch_schema(
    path: &Path,
    offset: u64,
    batch: &RowBatch,
    schema: &TableSchema,
) -> Result<()> {
    for c in &batch.columns {
        let ok = schema
            .columns
            .get(c.id.0 as usize)
            .is_some_and(|d| d.ty == c.ty)
            && c.valid.len() == batch.ordinals.len();
        if !ok {
            return Err(StorageError::corrupt(
                path,
                offset,
                format!(
                    "WAL record column {} does not fit table {}",
                    c.id.0, batch.table.0
                ),
            ));
        }
    }
    Ok(())
}

impl Shared {
    /// Waits until `lsn` is durable and applied, leading a group fsync when nobody else is.
    fn wait_durable<'a>(&'a self, mut st: MutexGuard<'a, State>, lsn: u64) -> Result<()> {
        loop {
            if st.applied_lsn >= lsn {
                return Ok(());
            }
            if let Some(p) = &st.poisoned {
                return Err(StorageError::WalPoisoned(p.clone()));
            }
            if st.syncing {
                st = self.synced.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.syncing = true;
            let target = st.written_lsn;
            let wal = st.wal.sync_point();
            drop(st);
            let res = self.sync_files(&wal);
            st = lock(&self.state);
            st.syncing = false;
            match res {
                Ok(()) => self.apply_pending(&mut st, target),
                // After a failed fsync the page cache can no longer be trusted (fsyncgate): refuse
                // further writes until the database is reopened and the log replayed.
                Err(e) => self.poison(&mut st, e.to_string()),
            }
            self.synced.notify_all();
        }
    }

    /// fsyncs the key dictionary, then the WAL file: keys are durable before records that use them.
    fn sync_files(&self, wal: &SyncPoint) -> Result<()> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .sync_point();
        keys.sync()?;
        wal.sync()
    }

    /// Stops accepting writes after a failure that leaves the disk's state unknown: a failed fsync
    /// (the kernel may have dropped the dirty pages and marked them clean: fsyncgate) or a failed
    /// commit (it may have failed after the `CURRENT` rename). The database must be reopened; the
    /// `RECOVER` marker makes that open rewrite the logs and the manifest into fresh files.
    fn poison(&self, st: &mut State, reason: String) {
        // Best effort: the marker matters only within this boot, where the page cache holds it.
        let _ = self
            .fs
            .open(&recover_marker(&self.dir), OpenMode::Truncate);
        st.poisoned = Some(reason);
    }

    /// Makes pending records up to `target` visible, in log order.
    fn apply_pending(&self, st: &mut State, target: u64) {
        let mut added: BTreeMap<TableId, Vec<Arc<Chunk>>> = BTreeMap::new();
        while st.pending.front().is_some_and(|(lsn, _, _)| *lsn <= target) {
            if let Some((_, t, c)) = st.pending.pop_front() {
                st.mem_rows += c.rows_appended;
                added.entry(t).or_default().push(c);
            }
        }
        st.applied_lsn = st.applied_lsn.max(target);
        if added.is_empty() {
            return;
        }
        let mut tables = st.version.tables.clone();
        for (id, chunks) in added {
            if let Some(tv) = tables.get_mut(&id) {
                let mut t = (**tv).clone();
                t.mem.extend(chunks);
                *tv = Arc::new(t);
            }
        }
        let v = Arc::new(Version {
            manifest: st.manifest.clone(),
            tables,
        });
        st.version = v.clone();
        self.current.store(v);
        if self.opts.flush_rows > 0 && st.mem_rows >= self.opts.flush_rows {
            self.wake_background();
        }
    }

    fn wake_background(&self) {
        let mut bg = lock(&self.bg);
        bg.wake = true;
        self.bg_cv.notify_all();
    }

    /// Under the state lock: every written record durable and applied (waits out a running leader).
    fn settle_locked<'a>(&'a self, mut st: MutexGuard<'a, State>) -> Result<MutexGuard<'a, State>> {
        while st.syncing {
            st = self.synced.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if let Some(p) = &st.poisoned {
            return Err(StorageError::WalPoisoned(p.clone()));
        }
        if st.written_lsn > st.applied_lsn {
            let target = st.written_lsn;
            let wal = st.wal.sync_point();
            if let Err(e) = self.sync_files(&wal) {
                self.poison(&mut st, e.to_string());
                self.synced.notify_all();
                return Err(e);
            }
            self.apply_pending(&mut st, target);
            self.synced.notify_all();
        }
        Ok(st)
    }

    /// Publishes manifest `m` (already validated): builds the new version, writes the manifest, then
    /// swaps it in. `new_segments` are segments `m` names for the first time; `drop_mem` says how many
    /// memtable chunks of each table the commit flushed. Returns manifests that left the kept window.
    fn commit_locked(
        &self,
        st: &mut State,
        m: Manifest,
        new_segments: HashMap<SegmentId, Arc<Segment>>,
        drop_mem: &HashMap<TableId, usize>,
    ) -> Result<Garbage> {
        if let Some(p) = &st.poisoned {
            return Err(StorageError::WalPoisoned(p.clone()));
        }
        let adds_segments = !new_segments.is_empty();
        let m = Arc::new(m);
        let mut open: HashMap<SegmentId, Arc<Segment>> = st
            .version
            .tables
            .values()
            .flat_map(|t| t.segments.iter().map(|s| (s.id, s.clone())))
            .collect();
        open.extend(new_segments);
        let mut tables = BTreeMap::new();
        for t in &m.tables {
            let mut segs = Vec::with_capacity(t.segments.len());
            for s in &t.segments {
                let seg = open.get(&s.id).cloned().ok_or_else(|| {
                    StorageError::corrupt(
                        seg_path(&self.dir, s.id),
                        0,
                        "internal: commit names a segment that is not open",
                    )
                })?;
                segs.push(seg);
            }
            let mem = match st.version.tables.get(&t.id) {
                Some(old) => old
                    .mem
                    .iter()
                    .skip(drop_mem.get(&t.id).copied().unwrap_or(0))
                    .cloned()
                    .collect(),
                None => Vec::new(),
            };
            let tv = TableVersion {
                id: t.id,
                name: t.name.clone(),
                schema: Arc::new(t.schema.clone()),
                segments: segs,
                mem,
            };
            tables.insert(t.id, Arc::new(tv));
        }
        let version = Arc::new(Version {
            manifest: m.clone(),
            tables,
        });
        // The dictionary must be durable before a manifest names segments that use its ordinals
        // (flush, ingest and compaction write such segments; appends sync it themselves).
        if adds_segments {
            let keys = self
                .keys
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .sync_point();
            if let Err(e) = keys.sync() {
                self.poison(st, format!("fsync of the key dictionary failed ({e})"));
                return Err(e);
            }
        }
        if let Err(e) = commit_manifest(&*self.fs, &self.dir, &m) {
            // The failure may have come after CURRENT was renamed (an fsync of the directory):
            // the disk may already hold this version while memory does not. Nothing more may be
            // committed, and nothing the new version might name may be deleted, until a restart
            // recovers from what is durable.
            self.poison(
                st,
                format!("a commit failed while making it durable ({e}); its outcome on disk is unknown"),
            );
            return Err(e);
        }
        // Flushed rows, and rows of dropped tables, leave memory.
        st.mem_rows = version
            .tables
            .values()
            .map(|t| t.mem.iter().map(|c| c.rows_appended).sum::<u64>())
            .sum();
        st.manifest = m.clone();
        st.version = version.clone();
        st.kept.push_back(m);
        let mut trimmed = Vec::new();
        while st.kept.len() > self.opts.keep_versions {
            if let Some(old) = st.kept.pop_front() {
                trimmed.push(old);
            }
        }
        let mut garbage = Garbage::default();
        if !trimmed.is_empty() {
            // Computed under the lock, so a concurrent commit cannot interleave.
            let still: HashSet<SegmentId> = st
                .kept
                .iter()
                .flat_map(|m| {
                    m.tables
                        .iter()
                        .flat_map(|t| t.segments.iter().map(|s| s.id))
                })
                .collect();
            for old in &trimmed {
                garbage.manifests.push(old.version);
                for s in old.tables.iter().flat_map(|t| t.segments.iter()) {
                    if !still.contains(&s.id) && !garbage.segments.contains(&s.id) {
                        garbage.segments.push(s.id);
                    }
                }
            }
        }
        self.current.store(version);
        Ok(garbage)
    }

    /// Deletes what `commit_locked` returned. A failure is left for the next open's orphan sweep.
    fn gc_trimmed(&self, garbage: Garbage) {
        for id in garbage.segments {
            let _ = remove_file(&*self.fs, &seg_path(&self.dir, id));
        }
        for v in garbage.manifests {
            let _ = remove_file(&*self.fs, &manifest_path(&self.dir, v));
        }
    }

    fn write_part(
        &self,
        table: TableId,
        schema: &TableSchema,
        p: PartitionId,
        part: &PartData,
        partition_rows: u32,
    ) -> Result<(SegmentMeta, Arc<Segment>)> {
        let id = SegmentId(self.next_segment_id.fetch_add(1, Ordering::SeqCst));
        let bytes = encode_segment(table, id, p, partition_rows, schema, part)?;
        let path = seg_path(&self.dir, id);
        write_segment_file(&*self.fs, &path, &bytes)?;
        let seg = Segment::open(&*self.fs, &path)?;
        let meta = SegmentMeta {
            id,
            partition: p,
            rows: seg.rows.len(),
            size_bytes: seg.size_bytes(),
        };
        Ok((meta, Arc::new(seg)))
    }

    fn flush(&self) -> Result<FlushStats> {
        let _m = lock(&self.maintenance);
        // 1. Freeze: everything written becomes durable and visible, then a new WAL file starts.
        let (frozen, new_seq, partition_rows) = {
            let mut st = self.settle_locked(lock(&self.state))?;
            let frozen: Vec<Arc<TableVersion>> = st
                .version
                .tables
                .values()
                .filter(|t| !t.mem.is_empty())
                .cloned()
                .collect();
            if frozen.is_empty() {
                return Ok(FlushStats::default());
            }
            let new_seq = st.wal_seq + 1;
            st.wal = create_wal(&*self.fs, &wal_dir(&self.dir), new_seq)?;
            st.wal_seq = new_seq;
            (frozen, new_seq, st.manifest.partition_rows)
        };
        // 2. Write one segment per table and partition, outside the lock.
        let mut stats = FlushStats::default();
        let mut written: Vec<(TableId, Vec<SegmentMeta>)> = Vec::new();
        let mut opened: HashMap<SegmentId, Arc<Segment>> = HashMap::new();
        let mut drop_mem: HashMap<TableId, usize> = HashMap::new();
        let result = (|| -> Result<()> {
            for t in &frozen {
                let mut by_part: BTreeMap<PartitionId, Vec<&PartData>> = BTreeMap::new();
                for c in &t.mem {
                    for (p, part) in &c.parts {
                        by_part.entry(*p).or_default().push(part);
                    }
                }
                let mut metas = Vec::new();
                for (p, parts) in by_part {
                    let merged = merge_parts(&t.schema, &parts);
                    let (meta, seg) =
                        self.write_part(t.id, &t.schema, p, &merged, partition_rows)?;
                    stats.segments += 1;
                    stats.rows += meta.rows;
                    stats.bytes += meta.size_bytes;
                    opened.insert(meta.id, seg);
                    metas.push(meta);
                }
                drop_mem.insert(t.id, t.mem.len());
                written.push((t.id, metas));
            }
            sync_dir(&*self.fs, &seg_dir(&self.dir))
        })();
        if let Err(e) = result {
            for id in opened.keys() {
                let _ = remove_file(&*self.fs, &seg_path(&self.dir, *id));
            }
            return Err(e);
        }
        // 3. Commit: segments join their tables (a table dropped meanwhile loses them).
        let trimmed = {
            let mut st = lock(&self.state);
            let mut m = (*st.manifest).clone();
            m.version = ManifestVersion(m.version.0 + 1);
            m.wal_start = new_seq;
            m.next_segment_id = self.next_segment_id.load(Ordering::SeqCst);
            let mut orphans = Vec::new();
            for (tid, metas) in written {
                match m.tables.iter_mut().find(|t| t.id == tid) {
                    Some(entry) => entry.segments.extend(metas),
                    None => orphans.extend(metas.into_iter().map(|s| s.id)),
                }
            }
            for id in &orphans {
                opened.remove(id);
            }
            let trimmed = self.commit_locked(&mut st, m, opened, &drop_mem)?;
            for id in orphans {
                let _ = remove_file(&*self.fs, &seg_path(&self.dir, id));
            }
            trimmed
        };
        self.gc_trimmed(trimmed);
        // 4. The flushed WAL files are no longer needed.
        let wdir = wal_dir(&self.dir);
        for seq in list_wal(&*self.fs, &wdir)? {
            if seq < new_seq {
                remove_file(&*self.fs, &wal_path(&wdir, seq))?;
            }
        }
        Ok(stats)
    }

    fn ingest(&self, table: &str, parts: Vec<(PartitionId, PartData)>) -> Result<IngestStats> {
        // Appends to the table that are still in memory go first, so LAST keeps append order.
        let has_mem = self
            .current
            .load()
            .table_by_name(table)
            .is_some_and(|t| !t.mem.is_empty());
        if has_mem {
            self.flush()?;
        }
        let _m = lock(&self.maintenance);
        let version = self.current.load_full();
        let tv = version
            .table_by_name(table)
            .ok_or_else(|| StorageError::TableNotFound(table.to_string()))?
            .clone();
        let partition_rows = version.manifest.partition_rows;
        let key_count = self.keys.read().map(|k| k.len()).unwrap_or(0);
        let bad = |reason: String| StorageError::InvalidBatch {
            table: table.to_string(),
            reason,
        };
        for (p, part) in &parts {
            if part.columns.len() != tv.schema.columns.len() {
                return Err(bad(format!(
                    "{} columns given, the table has {}",
                    part.columns.len(),
                    tv.schema.columns.len()
                )));
            }
            if part.rows.max().is_some_and(|m| m >= key_count) {
                return Err(bad("an ordinal has no key in the dictionary".into()));
            }
            let lo = p.0 as u64 * partition_rows as u64;
            if part.rows.min().is_some_and(|m| (m as u64) < lo)
                || part
                    .rows
                    .max()
                    .is_some_and(|m| m as u64 >= lo + partition_rows as u64)
            {
                return Err(bad(format!("rows outside partition {}", p.0)));
            }
        }
        // Encode and write segments on every core, then commit once.
        let work: Vec<&(PartitionId, PartData)> =
            parts.iter().filter(|(_, d)| !d.rows.is_empty()).collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, work.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<(SegmentMeta, Arc<Segment>)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        while let Some((p, d)) = work.get(next.fetch_add(1, Ordering::Relaxed)) {
                            out.push(self.write_part(tv.id, &tv.schema, *p, d, partition_rows));
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut written = Vec::new();
        let mut first_err = None;
        for r in results {
            match r {
                Ok(w) => written.push(w),
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        let cleanup = |written: &[(SegmentMeta, Arc<Segment>)]| {
            for (m, _) in written {
                let _ = remove_file(&*self.fs, &seg_path(&self.dir, m.id));
            }
        };
        if let Some(e) = first_err {
            cleanup(&written);
            return Err(e);
        }
        if let Err(e) = sync_dir(&*self.fs, &seg_dir(&self.dir)) {
            cleanup(&written);
            return Err(e);
        }
        // Commit in partition order, so the manifest lists the segments deterministically.
        written.sort_by_key(|(m, _)| (m.partition, m.id));
        let stats = IngestStats {
            segments: written.len(),
            rows: written.iter().map(|(m, _)| m.rows).sum(),
            bytes: written.iter().map(|(m, _)| m.size_bytes).sum(),
        };
        let garbage = {
            let mut st = lock(&self.state);
            let mut m = (*st.manifest).clone();
            m.version = ManifestVersion(m.version.0 + 1);
            m.next_segment_id = self.next_segment_id.load(Ordering::SeqCst);
            let Some(entry) = m.tables.iter_mut().find(|t| t.id == tv.id) else {
                drop(st);
                cleanup(&written);
                return Err(StorageError::TableNotFound(table.to_string()));
            };
            entry
                .segments
                .extend(written.iter().map(|(meta, _)| meta.clone()));
            let opened = written
                .iter()
                .map(|(meta, seg)| (meta.id, seg.clone()))
                .collect();
            match self.commit_locked(&mut st, m, opened, &HashMap::new()) {
                Ok(g) => g,
                Err(e) => {
                    // After a failed durable commit the new manifest may name these segments:
                    // keep them (a restart's orphan sweep removes them if it does not).
                    let keep = st.poisoned.is_some();
                    drop(st);
                    if !keep {
                        cleanup(&written);
                    }
                    return Err(e);
                }
            }
        };
        self.gc_trimmed(garbage);
        Ok(stats)
    }

    fn compact(&self, min_segments: usize) -> Result<CompactStats> {
        let _m = lock(&self.maintenance);
        let version = self.current.load_full();
        let partition_rows = version.manifest.partition_rows;
        let mut stats = CompactStats::default();
        let mut jobs: Vec<(TableId, Vec<SegmentId>, SegmentMeta)> = Vec::new();
        let mut opened: HashMap<SegmentId, Arc<Segment>> = HashMap::new();
        let result = (|| -> Result<()> {
            for t in version.tables.values() {
                let mut by_part: BTreeMap<PartitionId, Vec<&Arc<Segment>>> = BTreeMap::new();
                for s in &t.segments {
                    by_part.entry(s.partition).or_default().push(s);
                }
                for (p, segs) in by_part {
                    if segs.len() < min_segments {
                        continue;
                    }
                    let parts = segs
                        .iter()
                        .map(|s| s.read_all(&t.schema))
                        .collect::<Result<Vec<_>>>()?;
                    let refs: Vec<&PartData> = parts.iter().collect();
                    let merged = merge_parts(&t.schema, &refs);
                    let (meta, seg) =
                        self.write_part(t.id, &t.schema, p, &merged, partition_rows)?;
                    stats.segments_in += segs.len();
                    stats.segments_out += 1;
                    stats.bytes_out += meta.size_bytes;
                    opened.insert(meta.id, seg);
                    jobs.push((t.id, segs.iter().map(|s| s.id).collect(), meta));
                }
            }
            sync_dir(&*self.fs, &seg_dir(&self.dir))
        })();
        if let Err(e) = result {
            for id in opened.keys() {
                let _ = remove_file(&*self.fs, &seg_path(&self.dir, *id));
            }
            return Err(e);
        }
        if jobs.is_empty() {
            return Ok(stats);
        }
        let trimmed = {
            let mut st = lock(&self.state);
            let mut m = (*st.manifest).clone();
            m.version = ManifestVersion(m.version.0 + 1);
            m.next_segment_id = self.next_segment_id.load(Ordering::SeqCst);
            let mut orphans = Vec::new();
            for (tid, inputs, out) in jobs {
                let entry = m.tables.iter_mut().find(|t| t.id == tid);
                let applied = entry.is_some_and(|e| {
                    let all_there = inputs.iter().all(|i| e.segments.iter().any(|s| s.id == *i));
                    if all_there {
                        // The output takes the place of the oldest input: segments flushed meanwhile
                        // are newer and stay after it.
                        let at = e
                            .segments
                            .iter()
                            .position(|s| inputs.contains(&s.id))
                            .unwrap_or(0);
                        e.segments.retain(|s| !inputs.contains(&s.id));
                        e.segments.insert(at.min(e.segments.len()), out.clone());
                    }
                    all_there
                });
                if !applied {
                    orphans.push(out.id);
                }
            }
            for id in &orphans {
                opened.remove(id);
            }
            let trimmed = self.commit_locked(&mut st, m, opened, &HashMap::new())?;
            for id in orphans {
                let _ = remove_file(&*self.fs, &seg_path(&self.dir, id));
            }
            trimmed
        };
        self.gc_trimmed(trimmed);
        Ok(stats)
    }

    fn needs_compaction(&self) -> bool {
        let n = self.opts.compact_segments;
        if n < 2 {
            return false;
        }
        let v = self.current.load();
        v.tables.values().any(|t| {
            let mut counts: HashMap<PartitionId, usize> = HashMap::new();
            t.segments.iter().any(|s| {
                let c = counts.entry(s.partition).or_default();
                *c += 1;
                *c >= n
            })
        })
    }
}

fn maintenance_loop(s: &Shared) {
    loop {
        {
            let mut bg = lock(&s.bg);
            while !bg.shutdown && !bg.wake {
                let (g, _) = s
                    .bg_cv
                    .wait_timeout(bg, Duration::from_millis(500))
                    .unwrap_or_else(|e| e.into_inner());
                bg = g;
                if !bg.wake && !bg.shutdown {
                    // Periodic check: compaction may be due without a wake-up.
                    break;
                }
            }
            if bg.shutdown {
                return;
            }
            bg.wake = false;
        }
        let due_flush = s.opts.flush_rows > 0 && lock(&s.state).mem_rows >= s.opts.flush_rows;
        let mut outcome = Ok(());
        if due_flush {
            outcome = s.flush().map(|_| ());
        }
        if outcome.is_ok() && s.needs_compaction() {
            outcome = s.compact(s.opts.compact_segments).map(|_| ());
        }
        if let Err(e) = outcome {
            lock(&s.bg).last_error = Some(e.to_string());
        }
    }
}
