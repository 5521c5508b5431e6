//! Compaction: a partition's segments folded into one, and the background's trigger for it.

use super::*;

/// The background compacts a temporary table's partition only from this many times
/// `compact_segments` pieces. A temporary table lives in memory for one session or one journey run,
/// and the runner's scratch tables collect a piece per statement for a run's length, then are
/// dropped: merging them meanwhile competes with the run for the CPU and mostly rewrites rows no
/// one reads again (a day-4 run at 10M: 4.1–4.9 s with them compacted, 3.3–3.8 s without; see
/// BENCHMARKS.md). A temporary table appended to in many small pieces for longer is still merged.
pub(super) const TEMPORARY_COMPACT_FACTOR: usize = 4;

/// How many segments a partition must hold to be compacted, for permanent and temporary tables.
#[derive(Debug, Clone, Copy)]
pub(super) struct MinPieces {
    permanent: usize,
    temporary: usize,
}

impl MinPieces {
    /// `n` for every table (an explicit `Database::compact`).
    pub(super) fn all(n: usize) -> MinPieces {
        MinPieces {
            permanent: n,
            temporary: n,
        }
    }

    /// The background's: `n` for permanent tables, `TEMPORARY_COMPACT_FACTOR` times as many for
    /// temporary ones.
    pub(super) fn background(n: usize) -> MinPieces {
        MinPieces {
            permanent: n,
            temporary: n.saturating_mul(TEMPORARY_COMPACT_FACTOR),
        }
    }

    fn of(self, temporary: bool) -> usize {
        if temporary {
            self.temporary
        } else {
            self.permanent
        }
    }
}

impl Shared {
    /// Folds the segments of every partition holding at least `min` of them into one.
    pub(super) fn compact(&self, min: MinPieces) -> Result<CompactStats> {
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
                let min = min.of(temporary);
                for (p, segs) in by_part {
                    if segs.len() < min {
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

    /// True when some partition holds at least `min` segments.
    pub(super) fn needs_compaction(&self, min: MinPieces) -> bool {
        let v = self.current.load();
        v.tables.values().any(|t| {
            let n = min.of(v.is_temporary(t.id));
            let mut counts: HashMap<PartitionId, usize> = HashMap::new();
            t.segments.iter().any(|s| {
                let c = counts.entry(s.partition).or_default();
                *c += 1;
                *c >= n
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::schema::{ColumnDef, ColumnType};
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    fn batch(from: usize) -> RecordBatch {
        let keys: Vec<String> = (from..from + 10).map(|i| format!("k{i:04}")).collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("k", DataType::Utf8, false),
                Field::new("v", DataType::Int64, true),
            ])),
            vec![
                Arc::new(StringArray::from(keys)) as ArrayRef,
                Arc::new(Int64Array::from(vec![Some(1); 10])),
            ],
        )
        .unwrap()
    }

    /// The background compacts a permanent table's partition from `compact_segments` pieces and a
    /// temporary table's from `TEMPORARY_COMPACT_FACTOR` times as many.
    #[test]
    fn the_background_merges_a_temporary_table_only_from_four_times_the_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            compact_segments: 2,
            background: false,
            ..Options::default()
        };
        let db = Database::create(dir.path(), KeyType::Varchar, opts).unwrap();
        let bg = MinPieces::background(2);
        let schema = TableSchema::new("k", vec![ColumnDef::new("v", ColumnType::Bigint)]);
        db.commit(&[CatalogOp::CreateTemporary {
            name: "scratch".into(),
            schema: schema.clone(),
            or_replace: false,
        }])
        .unwrap();
        // Each append to a temporary table is a piece of its own (an in-memory segment).
        for i in 0..2 * TEMPORARY_COMPACT_FACTOR - 1 {
            db.append("scratch", &batch(i * 10)).unwrap();
            assert!(!db.shared.needs_compaction(bg), "{} pieces", i + 1);
        }
        db.append("scratch", &batch(1000)).unwrap();
        assert!(db.shared.needs_compaction(bg));
        db.shared.compact(bg).unwrap();
        assert!(!db.shared.needs_compaction(bg));
        assert_eq!(db.snapshot().table("scratch").unwrap().storage().len(), 1);
        assert_eq!(db.snapshot().table("scratch").unwrap().row_count(), 80);
        // A permanent table's two flushed pieces are enough.
        db.commit(&[CatalogOp::Create {
            name: "kept".into(),
            schema,
            if_not_exists: false,
        }])
        .unwrap();
        db.append("kept", &batch(0)).unwrap();
        db.flush().unwrap();
        assert!(!db.shared.needs_compaction(bg));
        db.append("kept", &batch(10)).unwrap();
        db.flush().unwrap();
        assert!(db.shared.needs_compaction(bg));
    }
}
