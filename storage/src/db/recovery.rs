//! Create, open and recovery, and the offline check: everything that reads a database directory
//! into memory, making durable what it reads.

use super::*;

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
pub(super) fn recover_marker(dir: &Path) -> PathBuf {
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
    let referenced = named_segments(kept);
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
            sync_file(fs, &wal_path(&wdir, seq))?;
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
        for d in [
            tmp.clone(),
            manifest_dir(&tmp),
            wal_dir(&tmp),
            seg_dir(&tmp),
        ] {
            fs.create_dir_all(&d).map_err(|e| StorageError::io(&d, e))?;
        }
        {
            let lock_file = lock_dir(&*fs, &tmp)?;
            KeyDict::create(&*fs, &tmp.join("keys.dict"), key_type)?;
            for d in [manifest_dir(&tmp), wal_dir(&tmp), seg_dir(&tmp)] {
                sync_dir(&*fs, &d)?;
            }
            commit_manifest(
                &*fs,
                &tmp,
                &Manifest::initial(key_type, opts.partition_rows),
            )?;
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
            mut mem,
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
                    mem: mem.remove(&t.id).unwrap_or_default(),
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
            wal_rows: mem_rows,
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
            publishing: Mutex::new(()),
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
        report.torn_tails += usize::from(keys.torn_tail());
        if keys.key_type() != manifest.key_type {
            return Err(StorageError::corrupt(
                kpath,
                10,
                "key type differs from the manifest's",
            ));
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
            let (records, torn) = read_wal_torn(fs, &wdir, seq)?;
            report.wal_records += records.len() as u64;
            report.torn_tails += usize::from(torn);
        }
        Ok(report)
    }
}
