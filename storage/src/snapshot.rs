//! Versions and snapshots: what a reader sees.
//!
//! A [`Version`] is immutable: one committed manifest, its open segments, and the acknowledged appends
//! not yet flushed (memtable [`Chunk`]s). The engine publishes a new `Arc<Version>` on every commit and
//! every acknowledged append; a [`Snapshot`] holds one, so a reader sees one consistent state for as
//! long as it keeps it, and never blocks a writer.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use roaring::RoaringBitmap;

use crate::error::{Result, StorageError};
use crate::keydict::KeyDict;
use crate::manifest::Manifest;
use crate::schema::{
    ColumnId, KeyType, ManifestVersion, PartitionId, SegmentId, TableId, TableSchema,
};
use crate::segment::{PartData, Segment};
use crate::values::{fold_increasing_rows, fold_rows, merge_columns, ColumnData, Values};
use crate::wal::RowBatch;

/// Acknowledged rows of one append, folded per ordinal and split by partition.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    /// Data per partition.
    pub parts: BTreeMap<PartitionId, PartData>,
    /// Rows in the append (before folding).
    pub rows_appended: u64,
    /// Per column id, the largest magnitude of its BIGINT/TIMESTAMP values (computed on first use;
    /// see `db/sums.rs`).
    abs_max: std::sync::OnceLock<Vec<u64>>,
}

impl Chunk {
    /// Folds a batch into a chunk; the same code path serves live appends and WAL replay.
    pub fn from_batch(batch: &RowBatch, schema: &TableSchema, partition_rows: u32) -> Chunk {
        let mut parts: BTreeMap<PartitionId, PartData> = BTreeMap::new();
        let increasing = batch
            .ordinals
            .windows(2)
            .all(|w| matches!(w, [a, b] if a < b));
        let mut sorted = batch.ordinals.clone();
        if !increasing {
            sorted.sort_unstable();
            sorted.dedup();
        }
        let mut run: Vec<u32> = Vec::new();
        let flush = |run: &mut Vec<u32>, parts: &mut BTreeMap<PartitionId, PartData>| {
            if let Some(&first) = run.first() {
                let p = PartitionId(first / partition_rows);
                let rows = match run.last() {
                    Some(&last) if (last - first) as usize + 1 == run.len() => {
                        run.clear();
                        let mut rows = RoaringBitmap::new();
                        rows.insert_range(first..=last);
                        rows
                    }
                    // `run` is sorted and deduplicated.
                    _ => RoaringBitmap::from_sorted_iter(run.drain(..)).unwrap_or_default(),
                };
                parts.insert(
                    p,
                    PartData {
                        rows,
                        columns: Vec::new(),
                    },
                );
            }
        };
        for ord in sorted {
            if run
                .first()
                .is_some_and(|f| f / partition_rows != ord / partition_rows)
            {
                flush(&mut run, &mut parts);
            }
            run.push(ord);
        }
        flush(&mut run, &mut parts);
        let ncols = schema.columns.len();
        for part in parts.values_mut() {
            part.columns = vec![None; ncols];
        }
        for col in &batch.columns {
            let Some(def) = schema.columns.get(col.id.0 as usize) else {
                continue;
            };
            let folded = if increasing {
                fold_increasing_rows(&batch.ordinals, &col.valid, &col.values)
            } else {
                fold_rows(def.rule, &batch.ordinals, &col.valid, &col.values)
            };
            for (p, data) in split_by_partition(folded, partition_rows) {
                if let Some(slot) = parts
                    .get_mut(&p)
                    .and_then(|part| part.columns.get_mut(col.id.0 as usize))
                {
                    *slot = Some(data);
                }
            }
        }
        Chunk {
            parts,
            rows_appended: batch.ordinals.len() as u64,
            abs_max: std::sync::OnceLock::new(),
        }
    }
}

impl Chunk {
    /// The largest magnitude of column `id`'s integer values (0 when it has none).
    pub fn abs_max(&self, id: ColumnId) -> u64 {
        let all = self.abs_max.get_or_init(|| {
            let mut out: Vec<u64> = Vec::new();
            for part in self.parts.values() {
                for (i, c) in part.columns.iter().enumerate() {
                    let Some(ColumnData {
                        values: Values::Int(v),
                        ..
                    }) = c
                    else {
                        continue;
                    };
                    let m = v.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
                    if out.len() <= i {
                        out.resize(i + 1, 0);
                    }
                    if let Some(slot) = out.get_mut(i) {
                        *slot = (*slot).max(m);
                    }
                }
            }
            out
        });
        all.get(id.0 as usize).copied().unwrap_or(0)
    }
}

/// Splits a column (sorted by ordinal) at partition boundaries.
pub fn split_by_partition(data: ColumnData, partition_rows: u32) -> Vec<(PartitionId, ColumnData)> {
    let (Some(lo), Some(hi)) = (data.presence.min(), data.presence.max()) else {
        return Vec::new();
    };
    if lo / partition_rows == hi / partition_rows {
        return vec![(PartitionId(lo / partition_rows), data)];
    }
    let mut out: Vec<(PartitionId, ColumnData)> = Vec::new();
    let mut start = 0usize;
    let mut current: Option<(u32, Vec<u32>)> = None;
    let ords: Vec<u32> = data.presence.iter().collect();
    for (i, ord) in ords.iter().enumerate() {
        let p = ord / partition_rows;
        if current.as_ref().is_some_and(|(cp, _)| *cp != p) {
            if let Some((cp, v)) = current.take() {
                out.push((PartitionId(cp), slice_column(&v, &data.values, start, i)));
            }
            start = i;
        }
        current.get_or_insert_with(|| (p, Vec::new())).1.push(*ord);
    }
    if let Some((cp, v)) = current {
        out.push((
            PartitionId(cp),
            slice_column(&v, &data.values, start, ords.len()),
        ));
    }
    out
}

fn slice_column(ords: &[u32], values: &Values, start: usize, end: usize) -> ColumnData {
    let presence = RoaringBitmap::from_sorted_iter(ords.iter().copied()).unwrap_or_default();
    let values = match values {
        Values::Int(v) => Values::Int(v.get(start..end).unwrap_or(&[]).to_vec()),
        Values::Float(v) => Values::Float(v.get(start..end).unwrap_or(&[]).to_vec()),
        Values::Bool(v) => Values::Bool(v.get(start..end).unwrap_or(&[]).to_vec()),
        Values::Str(v) => Values::Str(v.get(start..end).unwrap_or(&[]).to_vec()),
    };
    ColumnData { presence, values }
}

/// Merges several partition datas of one table (oldest first) into one.
pub fn merge_parts(schema: &TableSchema, parts: &[&PartData]) -> PartData {
    let mut rows = RoaringBitmap::new();
    for p in parts {
        rows |= &p.rows;
    }
    let columns = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, def)| {
            let sources: Vec<&ColumnData> = parts
                .iter()
                .filter_map(|p| p.columns.get(i).and_then(|c| c.as_ref()))
                .collect();
            if sources.is_empty() {
                None
            } else {
                Some(merge_columns(def.rule, def.ty, &sources))
            }
        })
        .collect();
    PartData { rows, columns }
}

/// One table in one version.
#[derive(Debug, Clone)]
pub struct TableVersion {
    /// Stable id.
    pub id: TableId,
    /// Name in this version.
    pub name: String,
    /// Definition.
    pub schema: Arc<TableSchema>,
    /// Open segments, oldest first.
    pub segments: Vec<Arc<Segment>>,
    /// Unflushed acknowledged appends, oldest first.
    pub mem: Vec<Arc<Chunk>>,
}

/// An immutable state of the whole database.
#[derive(Debug, Clone)]
pub struct Version {
    /// The committed catalog.
    pub manifest: Arc<Manifest>,
    /// Tables by id.
    pub tables: BTreeMap<TableId, Arc<TableVersion>>,
}

impl Version {
    /// The table called `name` (ASCII case-insensitive).
    pub fn table_by_name(&self, name: &str) -> Option<&Arc<TableVersion>> {
        let id = self.manifest.table(name)?.id;
        self.tables.get(&id)
    }

    /// Whether table `id` is temporary (held in memory only).
    pub fn is_temporary(&self, id: TableId) -> bool {
        self.manifest
            .tables
            .iter()
            .any(|t| t.id == id && t.temporary)
    }
}

/// A consistent, read-only view of the database at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) version: Arc<Version>,
    pub(crate) keys: Arc<RwLock<KeyDict>>,
}

impl Snapshot {
    /// The manifest version this snapshot stands on.
    pub fn version(&self) -> ManifestVersion {
        self.version.manifest.version
    }

    /// The database's key type.
    pub fn key_type(&self) -> KeyType {
        self.version.manifest.key_type
    }

    /// Ordinals per partition.
    pub fn partition_rows(&self) -> u32 {
        self.version.manifest.partition_rows
    }

    /// Whether table `name` is temporary (held in memory only, see `CatalogOp::CreateTemporary`).
    pub fn is_temporary(&self, name: &str) -> bool {
        self.version
            .manifest
            .table(name)
            .is_some_and(|t| t.temporary)
    }

    /// Names of the tables, sorted.
    pub fn table_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .version
            .tables
            .values()
            .map(|t| t.name.clone())
            .collect();
        v.sort();
        v
    }

    /// The table called `name`.
    pub fn table(&self, name: &str) -> Result<TableSnapshot> {
        let t = self
            .version
            .table_by_name(name)
            .ok_or_else(|| StorageError::TableNotFound(name.to_string()))?;
        Ok(TableSnapshot {
            table: t.clone(),
            partition_rows: self.partition_rows(),
        })
    }

    /// Read access to the key dictionary (ordinal to key and back). Hold it briefly: appends of new
    /// keys wait for it.
    pub fn keys(&self) -> RwLockReadGuard<'_, KeyDict> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the segment footers say of a column in one partition: see [`TableSnapshot::column_summary`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColumnSummary {
    /// Values (rows where the column is not NULL).
    pub count: u64,
    /// The smallest and largest value; `None` when there is none.
    pub stats: Option<crate::segment::Stats>,
}

/// Where a table's data sits, as `system.segments` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Segment id, or `None` for unflushed appends in memory.
    pub id: Option<SegmentId>,
    /// Partition.
    pub partition: PartitionId,
    /// Rows.
    pub rows: u64,
    /// File size (0 in memory).
    pub size_bytes: u64,
}

/// One table of a snapshot.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    table: Arc<TableVersion>,
    partition_rows: u32,
}

impl TableSnapshot {
    /// Name in this snapshot.
    pub fn name(&self) -> &str {
        &self.table.name
    }

    /// Stable id.
    pub fn id(&self) -> TableId {
        self.table.id
    }

    /// Definition.
    pub fn schema(&self) -> &TableSchema {
        &self.table.schema
    }

    /// Ordinals per partition.
    pub fn partition_rows(&self) -> u32 {
        self.partition_rows
    }

    /// Partitions holding data, ascending.
    pub fn partitions(&self) -> Vec<PartitionId> {
        let mut v: Vec<PartitionId> = self.table.segments.iter().map(|s| s.partition).collect();
        for c in &self.table.mem {
            v.extend(c.parts.keys().copied());
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Ordinals with a row in partition `p`.
    pub fn rows(&self, p: PartitionId) -> RoaringBitmap {
        let mut rows = RoaringBitmap::new();
        for s in self.table.segments.iter().filter(|s| s.partition == p) {
            rows |= &s.rows;
        }
        for c in &self.table.mem {
            if let Some(part) = c.parts.get(&p) {
                rows |= &part.rows;
            }
        }
        rows
    }

    /// Number of rows (distinct keys) in the table.
    pub fn row_count(&self) -> u64 {
        self.partitions()
            .into_iter()
            .map(|p| self.rows(p).len())
            .sum()
    }

    /// Column `col` of partition `p`, merged across segments and unflushed appends under the column's
    /// merge rule. A segment block that fails its checksum is an error, never data.
    pub fn column(&self, p: PartitionId, col: ColumnId) -> Result<ColumnData> {
        let def = self
            .table
            .schema
            .columns
            .get(col.0 as usize)
            .ok_or_else(|| StorageError::ColumnNotFound {
                table: self.table.name.clone(),
                column: format!("#{}", col.0),
            })?;
        let mut decoded: Vec<ColumnData> = Vec::new();
        for s in self.table.segments.iter().filter(|s| s.partition == p) {
            if let Some(c) = s.column(col, def.ty)? {
                decoded.push(c);
            }
        }
        let mem: Vec<&ColumnData> = self
            .table
            .mem
            .iter()
            .filter_map(|c| {
                c.parts
                    .get(&p)
                    .and_then(|part| part.columns.get(col.0 as usize))
                    .and_then(|c| c.as_ref())
            })
            .collect();
        if mem.is_empty() && decoded.len() == 1 {
            if let Some(only) = decoded.pop() {
                return Ok(only);
            }
        }
        let sources: Vec<&ColumnData> = decoded.iter().chain(mem).collect();
        Ok(merge_columns(def.rule, def.ty, &sources))
    }

    /// Column `col` of partition `p` as the ordinals of each distinct value (see
    /// [`crate::values::ValueGroups`]), when segments of disjoint rows hold all of the partition's
    /// values of that column (no merge across sources is needed) and it has few distinct values;
    /// `None` otherwise (read the column's values instead).
    /// `when`: see [`crate::segment::Segment::value_groups`].
    pub fn value_groups(
        &self,
        p: PartitionId,
        col: ColumnId,
        when: crate::segment::GroupsWhen,
    ) -> Result<Option<std::sync::Arc<crate::values::ValueGroups>>> {
        let Some(def) = self.table.schema.columns.get(col.0 as usize) else {
            return Ok(None);
        };
        if self.in_memory(p, col) {
            return Ok(None);
        }
        let holders: Vec<_> = self
            .table
            .segments
            .iter()
            .filter(|s| s.partition == p && s.column_meta(col).is_some())
            .collect();
        match holders.as_slice() {
            [] => Ok(None),
            [one] => one.value_groups(col, def.ty, when),
            many => {
                // Segments of disjoint rows (appends of new keys, not yet compacted): each
                // ordinal's value is in one of them, and their groups join by value.
                let mut seen = RoaringBitmap::new();
                for s in many {
                    if !seen.is_disjoint(&s.rows) {
                        return Ok(None);
                    }
                    seen |= &s.rows;
                }
                let mut parts = Vec::with_capacity(many.len());
                for s in many {
                    match s.value_groups(col, def.ty, when)? {
                        Some(g) => parts.push(g),
                        None => return Ok(None),
                    }
                }
                let refs: Vec<&crate::values::ValueGroups> = parts.iter().map(|g| &**g).collect();
                Ok(crate::values::ValueGroups::combine(&refs).map(std::sync::Arc::new))
            }
        }
    }

    /// True when unflushed appends hold values of column `col` in partition `p`.
    fn in_memory(&self, p: PartitionId, col: ColumnId) -> bool {
        self.table.mem.iter().any(|c| {
            c.parts
                .get(&p)
                .and_then(|part| part.columns.get(col.0 as usize))
                .is_some_and(|c| c.is_some())
        })
    }

    /// The number of values and their smallest and largest of column `col` in partition `p`, read
    /// from the segment footers without decoding a value (`stats` is `None` when there is no value).
    /// `None` when the footers cannot tell: unflushed appends hold values of the column in the
    /// partition, segments holding it overlap in rows (their values merge under the column's rule),
    /// or a segment keeps no statistics for it (VARCHAR).
    pub fn column_summary(&self, p: PartitionId, col: ColumnId) -> Option<ColumnSummary> {
        if self.in_memory(p, col) {
            return None;
        }
        let mut out = ColumnSummary {
            count: 0,
            stats: None,
        };
        let mut seen = RoaringBitmap::new();
        let holders = self.table.segments.iter().filter(|s| s.partition == p);
        for (s, meta) in holders.filter_map(|s| s.column_meta(col).map(|m| (s, m))) {
            if meta.count == 0 {
                continue;
            }
            if !seen.is_disjoint(&s.rows) {
                return None;
            }
            seen |= &s.rows;
            out.count += meta.count;
            out.stats = Some(match out.stats {
                None => meta.stats?,
                Some(acc) => acc.join(&meta.stats?)?,
            });
        }
        Some(out)
    }

    /// The ordinals of partition `p` where column `col` has a value, without decoding any value: what
    /// `IS [NOT] NULL` and `COUNT(col)` need.
    pub fn presence(&self, p: PartitionId, col: ColumnId) -> Result<RoaringBitmap> {
        let def = self
            .table
            .schema
            .columns
            .get(col.0 as usize)
            .ok_or_else(|| StorageError::ColumnNotFound {
                table: self.table.name.clone(),
                column: format!("#{}", col.0),
            })?;
        let mut out = RoaringBitmap::new();
        for s in self.table.segments.iter().filter(|s| s.partition == p) {
            if let Some(b) = s.presence(col, def.ty)? {
                out |= b;
            }
        }
        for c in &self.table.mem {
            if let Some(data) = c
                .parts
                .get(&p)
                .and_then(|part| part.columns.get(col.0 as usize))
                .and_then(|c| c.as_ref())
            {
                out |= &data.presence;
            }
        }
        Ok(out)
    }

    /// Column `name` of partition `p`; see [`TableSnapshot::column`].
    pub fn column_by_name(&self, p: PartitionId, name: &str) -> Result<ColumnData> {
        let (id, _) =
            self.table
                .schema
                .column(name)
                .ok_or_else(|| StorageError::ColumnNotFound {
                    table: self.table.name.clone(),
                    column: name.to_string(),
                })?;
        self.column(p, id)
    }

    /// The segments and in-memory chunks holding this table's data.
    pub fn storage(&self) -> Vec<SegmentInfo> {
        let mut v: Vec<SegmentInfo> = self
            .table
            .segments
            .iter()
            .map(|s| SegmentInfo {
                id: Some(s.id),
                partition: s.partition,
                rows: s.rows.len(),
                size_bytes: s.size_bytes(),
            })
            .collect();
        for c in &self.table.mem {
            for (p, part) in &c.parts {
                v.push(SegmentInfo {
                    id: None,
                    partition: *p,
                    rows: part.rows.len(),
                    size_bytes: 0,
                });
            }
        }
        v
    }
}
