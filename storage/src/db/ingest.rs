//! Ingest: partitions written straight to segments and committed at once (CREATE TABLE AS, bulk
//! loads), bypassing the WAL.

use super::*;
use crate::schema::ColumnDef;

impl Shared {
    pub(super) fn ingest(
        &self,
        table: &str,
        parts: Vec<(PartitionId, PartData)>,
    ) -> Result<IngestStats> {
        self.ingest_with(table, None, &[], parts)
    }

    /// Ingest that may also add columns to the table in the same commit. `expect` is the table's
    /// id and column count the parts were built against: a table replaced or altered meanwhile is
    /// refused instead of receiving columns of another shape.
    // long: one commit sequence (flush first, write, sync, publish, clean up on every failure).
    pub(super) fn ingest_with(
        &self,
        table: &str,
        expect: Option<(TableId, usize)>,
        added: &[ColumnDef],
        parts: Vec<(PartitionId, PartData)>,
    ) -> Result<IngestStats> {
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
        if let Some((id, ncols)) = expect {
            if tv.id != id || tv.schema.columns.len() != ncols {
                return Err(StorageError::InvalidBatch {
                    table: table.to_string(),
                    reason: "the table was replaced or altered while the load ran; nothing was \
                             committed"
                        .into(),
                });
            }
        }
        let tv = if added.is_empty() {
            tv
        } else {
            let mut schema = (*tv.schema).clone();
            schema.columns.extend(added.iter().cloned());
            schema.validate()?;
            let mut t = (*tv).clone();
            t.schema = Arc::new(schema);
            Arc::new(t)
        };
        let partition_rows = version.manifest.partition_rows;
        let temporary = version.is_temporary(tv.id);
        let key_count = self.keys.read().map(|k| k.len()).unwrap_or(0);
        check_parts(table, &tv.schema, &parts, partition_rows, key_count)?;
        let results = self.write_parts(&tv, &parts, partition_rows, temporary);
        let mut written = Vec::new();
        let mut first_err = None;
        for r in results {
            match r {
                Ok(w) => written.push(w),
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        let cleanup = |written: &[(SegmentMeta, Arc<Segment>)]| {
            for (m, seg) in written {
                if !seg.in_memory() {
                    let _ = remove_file(&*self.fs, &seg_path(&self.dir, m.id));
                }
            }
        };
        if let Some(e) = first_err {
            cleanup(&written);
            return Err(e);
        }
        // A temporary table's segments are in memory; a commit that publishes it writes them.
        if !temporary {
            if let Err(e) = sync_dir(&*self.fs, &seg_dir(&self.dir)) {
                cleanup(&written);
                return Err(e);
            }
        }
        // Commit in partition order, so the manifest lists the segments deterministically.
        written.sort_by_key(|(m, _)| (m.partition, m.id));
        let stats = IngestStats {
            segments: written.len(),
            rows: written.iter().map(|(m, _)| m.rows).sum(),
            bytes: written.iter().map(|(m, _)| m.size_bytes).sum(),
        };
        let garbage = {
            let alone = lock(&self.publishing);
            let st = lock(&self.state);
            let mut m = (*st.manifest).clone();
            m.version = ManifestVersion(m.version.0 + 1);
            m.next_segment_id = self.next_segment_id.load(Ordering::SeqCst);
            let Some(entry) = m.tables.iter_mut().find(|t| t.id == tv.id) else {
                drop(st);
                cleanup(&written);
                return Err(StorageError::TableNotFound(table.to_string()));
            };
            if !added.is_empty() {
                // A column added by another commit since the load began would be lost here.
                if entry.schema.columns.len() + added.len() != tv.schema.columns.len() {
                    drop(st);
                    cleanup(&written);
                    return Err(StorageError::InvalidBatch {
                        table: table.to_string(),
                        reason: "the table was altered while the load ran; nothing was committed"
                            .into(),
                    });
                }
                entry.schema = (*tv.schema).clone();
            }
            entry
                .segments
                .extend(written.iter().map(|(meta, _)| meta.clone()));
            let opened = written
                .iter()
                .map(|(meta, seg)| (meta.id, seg.clone()))
                .collect();
            // A failed commit removes the segments it would have added (unless the state is
            // poisoned: the new manifest may name them, and a restart's orphan sweep removes them
            // if it does not).
            self.commit_version(&alone, st, m, opened, &HashMap::new())?
        };
        self.gc_trimmed(garbage);
        Ok(stats)
    }

    /// Encodes and writes the non-empty partitions as segments on the worker pool.
    fn write_parts(
        &self,
        tv: &TableVersion,
        parts: &[(PartitionId, PartData)],
        partition_rows: u32,
        temporary: bool,
    ) -> Vec<Result<(SegmentMeta, Arc<Segment>)>> {
        let work: Vec<&(PartitionId, PartData)> =
            parts.iter().filter(|(_, d)| !d.rows.is_empty()).collect();
        // A partition whose writing panicked fails the ingest (and its written segments are
        // removed) rather than committing a table without it.
        crate::workers::map(&work, |(p, d)| {
            self.write_part(tv.id, &tv.schema, *p, d, partition_rows, temporary)
        })
        .into_iter()
        .map(|r| r.unwrap_or(Err(StorageError::WorkerPanicked("writing segments"))))
        .collect()
    }
}

/// Checks ingested partitions against the table: column count, ordinals the dictionary holds, and
/// rows inside their partition.
fn check_parts(
    table: &str,
    schema: &TableSchema,
    parts: &[(PartitionId, PartData)],
    partition_rows: u32,
    key_count: u32,
) -> Result<()> {
    let bad = |reason: String| StorageError::InvalidBatch {
        table: table.to_string(),
        reason,
    };
    for (p, part) in parts {
        if part.columns.len() != schema.columns.len() {
            return Err(bad(format!(
                "{} columns given, the table has {}",
                part.columns.len(),
                schema.columns.len()
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
    Ok(())
}
