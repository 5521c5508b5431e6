//! Group commit of appends (an fsync leader, records applied in log order, poisoning on failure)
//! and manifest commits with the garbage they leave.

use super::*;

impl Shared {
    /// Waits until `lsn` is durable and applied, leading a group fsync when nobody else is.
    pub(super) fn wait_durable<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        lsn: u64,
    ) -> Result<()> {
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
    pub(super) fn sync_files(&self, wal: &SyncPoint) -> Result<()> {
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
    pub(super) fn poison(&self, st: &mut State, reason: String) {
        // Best effort: the marker matters only within this boot, where the page cache holds it.
        let _ = self.fs.open(&recover_marker(&self.dir), OpenMode::Truncate);
        st.poisoned = Some(reason);
    }

    /// After a failed commit: deletes the segments it would have added, unless the database is
    /// poisoned (the commit's outcome on disk is unknown and the new manifest may name them; a
    /// restart's orphan sweep removes them if it does not). A full disk gets its space back.
    pub(super) fn drop_uncommitted(&self, st: &State, ids: &[SegmentId]) {
        if st.poisoned.is_none() {
            for id in ids {
                let _ = remove_file(&*self.fs, &seg_path(&self.dir, *id));
            }
        }
    }

    /// Makes pending records up to `target` visible, in log order.
    pub(super) fn apply_pending(&self, st: &mut State, target: u64) {
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

    pub(super) fn wake_background(&self) {
        let mut bg = lock(&self.bg);
        bg.wake = true;
        self.bg_cv.notify_all();
    }

    /// Under the state lock: every written record durable and applied (waits out a running leader).
    pub(super) fn settle_locked<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
    ) -> Result<MutexGuard<'a, State>> {
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

    /// Publishes manifest `m` (already validated) and consumes the state lock `st`: builds the new
    /// version under the lock (a failure publishes nothing), makes it durable with the lock
    /// released (appends and their group commits go on meanwhile), then installs it under the lock
    /// again. `alone` is the `publishing` guard: no other manifest commit can run in between, so
    /// `m` still follows the state's manifest, and appends applied meanwhile only add memtable
    /// chunks, which the installed version keeps. `new_segments` are segments `m` names for the
    /// first time, removed if the commit fails (unless the state is poisoned); `drop_mem` says how
    /// many memtable chunks of each table the commit flushed. Returns manifests that left the kept
    /// window.
    // long: one commit sequence (validate, write outside the lock, install), each failure handled.
    pub(super) fn commit_version(
        &self,
        _alone: &Publishing<'_>,
        st: MutexGuard<'_, State>,
        m: Manifest,
        new_segments: HashMap<SegmentId, Arc<Segment>>,
        drop_mem: &HashMap<TableId, usize>,
    ) -> Result<Garbage> {
        let mut fresh: Vec<SegmentId> = new_segments.keys().copied().collect();
        if let Some(p) = &st.poisoned {
            return Err(StorageError::WalPoisoned(p.clone()));
        }
        let mut m = m;
        // Only temporary tables changed: no manifest to write, and the version number stays.
        let temporary_only = m.same_durable(&st.manifest);
        let mut new_segments = new_segments;
        if temporary_only {
            m.version = st.manifest.version;
        } else {
            match self.write_published(&st, &m, &mut new_segments) {
                Ok(p) => fresh.extend(p),
                Err(e) => {
                    self.drop_uncommitted(&st, &fresh);
                    return Err(e);
                }
            }
        }
        let adds_segments = !temporary_only && !new_segments.is_empty();
        let m = Arc::new(m);
        let version = match self.build_version(&st, &m, new_segments, drop_mem) {
            Ok(v) => v,
            Err(e) => {
                self.drop_uncommitted(&st, &fresh);
                return Err(e);
            }
        };
        drop(st);
        // Outside the state lock. The dictionary must be durable before a manifest names segments
        // that use its ordinals (flush, ingest and compaction write such segments; appends sync it
        // themselves). Keys an append to a temporary table registered are made durable all the
        // same: the dictionary is one log, and a later durable record must never follow one the
        // disk may lose.
        self.sync_keys(adds_segments)?;
        if !temporary_only {
            self.write_manifest(&m, &fresh)?;
        }
        let mut st = lock(&self.state);
        // Chunks appended while the lock was released join the version (after those it flushed).
        let version = Arc::new(with_memtables(version, &st.version, drop_mem));
        st.manifest = m.clone();
        st.version = version.clone();
        let garbage = if temporary_only {
            Garbage::default()
        } else {
            // Flushed rows, and rows of dropped tables, leave memory.
            st.mem_rows = version
                .tables
                .values()
                .map(|t| t.mem.iter().map(|c| c.rows_appended).sum::<u64>())
                .sum();
            // Kept versions are what the files hold: time travel and garbage collection never see
            // a temporary table.
            st.kept.push_back(Arc::new(m.durable()));
            self.trim_kept(&mut st)
        };
        self.current.store(version);
        Ok(garbage)
    }

    /// Writes and fsyncs manifest `m` and renames `CURRENT` to it (no state lock held). On a
    /// failure before the rename the commit did not happen: `fresh` segments are removed. A failure
    /// at the rename or after poisons the state.
    fn write_manifest(&self, m: &Manifest, fresh: &[SegmentId]) -> Result<()> {
        if let Err(e) = prepare_manifest(&*self.fs, &self.dir, m) {
            // CURRENT still names the previous version, on disk and in memory: the commit did not
            // happen, and the database stays writable (a full disk refuses this commit only).
            let _ = self.fs.remove_file(&manifest_path(&self.dir, m.version));
            let _ = self.fs.remove_file(&self.dir.join("CURRENT.tmp"));
            self.drop_uncommitted(&lock(&self.state), fresh);
            return Err(e);
        }
        publish_manifest(&*self.fs, &self.dir).inspect_err(|e| {
            // The failure may have come after CURRENT was renamed (an fsync of the directory):
            // the disk may already hold this version while memory does not. Nothing more may be
            // committed, and nothing the new version might name may be deleted, until a restart
            // recovers from what is durable.
            self.poison(
                &mut lock(&self.state),
                format!(
                    "a commit failed while making it durable ({e}); its outcome on disk is unknown"
                ),
            );
        })
    }

    /// fsyncs the key dictionary (`always`, or only when it holds unsynced records), without the
    /// state lock; a failure poisons the state.
    fn sync_keys(&self, always: bool) -> Result<()> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .sync_point();
        if !always && keys.is_synced() {
            return Ok(());
        }
        keys.sync().inspect_err(|e| {
            self.poison(
                &mut lock(&self.state),
                format!("fsync of the key dictionary failed ({e})"),
            );
        })
    }

    /// Writes the in-memory segments of `m`'s durable tables to their files (a temporary table
    /// being published by a rename, or one that took a temporary table's data), fsynced with the
    /// segment directory, and puts their mapped files in `new_segments`. Returns the ids written,
    /// for the caller to remove if the commit fails.
    fn write_published(
        &self,
        st: &State,
        m: &Manifest,
        new_segments: &mut HashMap<SegmentId, Arc<Segment>>,
    ) -> Result<Vec<SegmentId>> {
        let held = unwritten(&st.version, m, new_segments);
        let mut written = Vec::new();
        match self.write_segments(&held, &mut written, new_segments) {
            Ok(()) => Ok(written),
            Err(e) => {
                self.drop_uncommitted(st, &written);
                Err(e)
            }
        }
    }

    /// Writes `held` to their files (ids in `written` as they are), fsyncs the segment directory,
    /// and puts the mapped files in `opened`.
    fn write_segments(
        &self,
        held: &[Arc<Segment>],
        written: &mut Vec<SegmentId>,
        opened: &mut HashMap<SegmentId, Arc<Segment>>,
    ) -> Result<()> {
        for seg in held {
            let path = seg_path(&self.dir, seg.id);
            write_segment_file(&*self.fs, &path, seg.bytes())?;
            written.push(seg.id);
            opened.insert(seg.id, Arc::new(Segment::open(&*self.fs, &path)?));
        }
        if !held.is_empty() {
            sync_dir(&*self.fs, &seg_dir(&self.dir))?;
        }
        Ok(())
    }

    /// Writes, before the state lock, the segments a catalog commit of `ops` would publish
    /// (those [`Shared::write_published`] would write under it), so that appends do not wait for
    /// them: publishing a 10M-row journey state held the lock for 0.1-0.7 s. Returns them mapped
    /// from their files. The caller holds `publishing` (one catalog commit at a time), and removes
    /// those its commit does not name. On a failure it removes what it wrote and returns none: the
    /// commit then writes them under the lock and reports the error.
    pub(super) fn prewrite_published(&self, ops: &[CatalogOp]) -> HashMap<SegmentId, Arc<Segment>> {
        let version = self.current.load_full();
        let Ok(m) = apply_ops(&version.manifest, ops) else {
            return HashMap::new();
        };
        let held = unwritten(&version, &m, &HashMap::new());
        let mut written = Vec::new();
        let mut opened = HashMap::new();
        match self.write_segments(&held, &mut written, &mut opened) {
            Ok(()) => opened,
            Err(_) => {
                for id in written {
                    let _ = remove_file(&*self.fs, &seg_path(&self.dir, id));
                }
                HashMap::new()
            }
        }
    }

    /// The version `m` describes: its tables with their segments (already open, or new in
    /// `new_segments`) and the memtable chunks a flush did not take (`drop_mem` per table).
    fn build_version(
        &self,
        st: &State,
        m: &Arc<Manifest>,
        new_segments: HashMap<SegmentId, Arc<Segment>>,
        drop_mem: &HashMap<TableId, usize>,
    ) -> Result<Version> {
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
        Ok(Version {
            manifest: m.clone(),
            tables,
        })
    }

    /// Drops manifests beyond the kept window and returns them with the segments no kept version
    /// names any more. Runs under the state lock, so a concurrent commit cannot interleave.
    fn trim_kept(&self, st: &mut State) -> Garbage {
        let mut trimmed = Vec::new();
        while st.kept.len() > self.opts.keep_versions {
            if let Some(old) = st.kept.pop_front() {
                trimmed.push(old);
            }
        }
        let mut garbage = Garbage::default();
        if trimmed.is_empty() {
            return garbage;
        }
        let still = named_segments(&st.kept);
        for old in &trimmed {
            garbage.manifests.push(old.version);
            for s in old.tables.iter().flat_map(|t| t.segments.iter()) {
                if !still.contains(&s.id) && !garbage.segments.contains(&s.id) {
                    garbage.segments.push(s.id);
                }
            }
        }
        garbage
    }

    /// Deletes what `commit_version` returned. A failure is left for the next open's orphan sweep.
    pub(super) fn gc_trimmed(&self, garbage: Garbage) {
        for id in garbage.segments {
            let _ = remove_file(&*self.fs, &seg_path(&self.dir, id));
        }
        for v in garbage.manifests {
            let _ = remove_file(&*self.fs, &manifest_path(&self.dir, v));
        }
    }
}

/// The in-memory segments `m`'s durable tables name (a temporary table being published by a
/// rename, or one that took a temporary table's data), from `new_segments` or `version`.
fn unwritten(
    version: &Version,
    m: &Manifest,
    new_segments: &HashMap<SegmentId, Arc<Segment>>,
) -> Vec<Arc<Segment>> {
    let open: HashMap<SegmentId, &Arc<Segment>> = version
        .tables
        .values()
        .flat_map(|t| t.segments.iter().map(|s| (s.id, s)))
        .collect();
    m.tables
        .iter()
        .filter(|t| !t.temporary)
        .flat_map(|t| t.segments.iter())
        .filter_map(|s| new_segments.get(&s.id).or_else(|| open.get(&s.id).copied()))
        .filter(|seg| seg.in_memory())
        .cloned()
        .collect()
}

/// `version` with each table's memtable chunks taken from `now` (the state's version when the
/// commit installs it), less the first `drop_mem` chunks of the table that the commit flushed.
/// Chunks are only ever added at the end of a table's list, and only a commit removes them.
fn with_memtables(version: Version, now: &Version, drop_mem: &HashMap<TableId, usize>) -> Version {
    let mut version = version;
    for (id, tv) in version.tables.iter_mut() {
        let Some(cur) = now.tables.get(id) else {
            continue;
        };
        let skip = drop_mem.get(id).copied().unwrap_or(0);
        if cur.mem.len() == tv.mem.len() + skip {
            continue;
        }
        let mut t = (**tv).clone();
        t.mem = cur.mem.iter().skip(skip).cloned().collect();
        *tv = Arc::new(t);
    }
    version
}
