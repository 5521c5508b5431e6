//! Compaction: a partition's segments folded into one, and the background's trigger for it.

use super::*;

impl Shared {
    pub(super) fn compact(&self, min_segments: usize) -> Result<CompactStats> {
        let _m = lock(&self.maintenance);
        let version = self.current.load_full();
        let partition_rows = version.manifest.partition_rows;
        let mut stats = CompactStats::default();
        let mut jobs: Vec<(TableId, Vec<SegmentId>, SegmentMeta)> = Vec::new();
        let mut opened: HashMap<SegmentId, Arc<Segment>> = HashMap::new();
        let result = (|| -> Result<()> {
            for t in version.tables.values() {
                let temporary = version.is_temporary(t.id);
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
                        self.write_part(t.id, &t.schema, p, &merged, partition_rows, temporary)?;
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
            let alone = lock(&self.publishing);
            let st = lock(&self.state);
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
            let trimmed = self.commit_version(&alone, st, m, opened, &HashMap::new())?;
            for id in orphans {
                let _ = remove_file(&*self.fs, &seg_path(&self.dir, id));
            }
            trimmed
        };
        self.gc_trimmed(trimmed);
        Ok(stats)
    }

    pub(super) fn needs_compaction(&self) -> bool {
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
