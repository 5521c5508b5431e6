//! Flush: memtables frozen into one segment per table and partition, committed with a new WAL start.

use super::*;

/// What a flush froze: the tables with memtable chunks, the new WAL file's sequence number and the
/// partition size.
type Frozen = (Vec<Arc<TableVersion>>, u64, u32);

impl Shared {
    /// Encodes a partition as a new segment: written to its file and fsynced, or, for a
    /// temporary table, held in memory (no file, no fsync).
    pub(super) fn write_part(
        &self,
        table: TableId,
        schema: &TableSchema,
        p: PartitionId,
        part: &PartData,
        partition_rows: u32,
        temporary: bool,
    ) -> Result<(SegmentMeta, Arc<Segment>)> {
        let id = SegmentId(self.next_segment_id.fetch_add(1, Ordering::SeqCst));
        let bytes = encode_segment(table, id, p, partition_rows, schema, part)?;
        let path = seg_path(&self.dir, id);
        let seg = if temporary {
            Segment::from_heap(&path, bytes)?
        } else {
            write_segment_file(&*self.fs, &path, &bytes)?;
            Segment::open(&*self.fs, &path)?
        };
        let meta = SegmentMeta {
            id,
            partition: p,
            rows: seg.rows.len(),
            size_bytes: seg.size_bytes(),
        };
        Ok((meta, Arc::new(seg)))
    }

    /// A flush's first step, under `maintenance`: everything written becomes durable and visible,
    /// then a new WAL file starts; `None` when there is nothing to flush. The file is
    /// created, and the records written so far fsynced, before the state lock: appends wait only
    /// for what arrived in between. Only a flush changes `wal_seq`.
    fn freeze(&self) -> Result<Option<Frozen>> {
        let (new_seq, written_lsn) = {
            let st = lock(&self.state);
            if st.version.tables.values().all(|t| t.mem.is_empty()) && wal_is_empty(&st) {
                return Ok(None);
            }
            (st.wal_seq + 1, st.written_lsn)
        };
        let wdir = wal_dir(&self.dir);
        let wal = create_wal(&*self.fs, &wdir, new_seq)?;
        self.wait_durable(lock(&self.state), written_lsn)?;
        let mut st = self.settle_locked(lock(&self.state))?;
        let frozen: Vec<Arc<TableVersion>> = st
            .version
            .tables
            .values()
            .filter(|t| !t.mem.is_empty())
            .cloned()
            .collect();
        // With nothing in memory the flush still starts a new WAL file when the current one
        // holds records (of tables dropped since): see `background::wal_is_dead`.
        if frozen.is_empty() && wal_is_empty(&st) {
            drop(st);
            drop(wal);
            let _ = remove_file(&*self.fs, &wal_path(&wdir, new_seq));
            return Ok(None);
        }
        st.wal = wal;
        st.wal_seq = new_seq;
        st.wal_rows = 0;
        Ok(Some((frozen, new_seq, st.manifest.partition_rows)))
    }

    pub(super) fn flush(&self) -> Result<FlushStats> {
        let _m = lock(&self.maintenance);
        // 1. Freeze.
        let Some((frozen, new_seq, partition_rows)) = self.freeze()? else {
            return Ok(FlushStats::default());
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
                        self.write_part(t.id, &t.schema, p, &merged, partition_rows, false)?;
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
            let alone = lock(&self.publishing);
            let st = lock(&self.state);
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
            let trimmed = self.commit_version(&alone, st, m, opened, &drop_mem)?;
            for id in orphans {
                let _ = remove_file(&*self.fs, &seg_path(&self.dir, id));
            }
            trimmed
        };
        self.gc_trimmed(trimmed);
        // 4. The flushed WAL files are no longer needed. The flush is committed: a file that
        // cannot be deleted now is deleted by the next flush or open, not reported as a failure.
        let wdir = wal_dir(&self.dir);
        for seq in list_wal(&*self.fs, &wdir).unwrap_or_default() {
            if seq < new_seq {
                let _ = remove_file(&*self.fs, &wal_path(&wdir, seq));
            }
        }
        Ok(stats)
    }
}

/// Whether the current WAL file holds no record (written, durable or not).
fn wal_is_empty(st: &State) -> bool {
    st.wal.end <= crate::format::FILE_HEADER_LEN as u64
}
