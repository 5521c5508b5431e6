//! Bulk loads: many Arrow batches folded in memory and published as segments by one manifest commit
//! (file imports, event pivots). Nothing goes through the WAL; nothing is visible or durable until
//! [`BulkLoad::finish`] returns, and a load dropped before that leaves no trace but dictionary keys
//! (a key without rows is invisible).

use super::dense::{fold_batch, DensePart};
use super::*;
use crate::schema::ColumnDef;
use crate::snapshot::merge_parts;
use crate::values::merge_columns;

/// Batches of one partition held before they are folded into one.
const FOLD_EVERY: usize = 64;

/// A load into one table in progress; see [`Database::bulk_load`].
pub struct BulkLoad {
    shared: Arc<Shared>,
    /// The table as the load began, with the columns the load adds.
    tv: TableVersion,
    /// Column count when the load began (the commit refuses a table altered meanwhile).
    base_columns: usize,
    added: Vec<ColumnDef>,
    key_type: KeyType,
    partition_rows: u32,
    /// Per partition, the data of its batches, oldest first (folded every `FOLD_EVERY`).
    parts: BTreeMap<PartitionId, Vec<PartData>>,
    /// Per partition id: rows pushed so far, and its slots once it turned dense (see `dense.rs`).
    pushed: Vec<u64>,
    dense: Vec<Option<DensePart>>,
    /// Per column id, the sum of the magnitudes of the SUM BIGINT values pushed (see `sums.rs`).
    sum_abs: Vec<u128>,
    rows: u64,
}

impl Database {
    /// Begins a bulk load into `table`: [`BulkLoad::push`] batches (the same shape as
    /// [`Database::append`]'s), optionally [`BulkLoad::add_column`], then [`BulkLoad::finish`]
    /// commits every row at once, merged by the columns' rules. All or nothing.
    pub fn bulk_load(&self, table: &str) -> Result<BulkLoad> {
        let version = self.shared.current.load_full();
        let tv = version
            .table_by_name(table)
            .ok_or_else(|| StorageError::TableNotFound(table.to_string()))?;
        Ok(BulkLoad {
            shared: self.shared.clone(),
            base_columns: tv.schema.columns.len(),
            tv: TableVersion {
                id: tv.id,
                name: tv.name.clone(),
                schema: tv.schema.clone(),
                segments: Vec::new(),
                mem: Vec::new(),
            },
            added: Vec::new(),
            key_type: version.manifest.key_type,
            partition_rows: version.manifest.partition_rows,
            parts: BTreeMap::new(),
            pushed: Vec::new(),
            dense: Vec::new(),
            sum_abs: Vec::new(),
            rows: 0,
        })
    }
}

impl std::fmt::Debug for BulkLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkLoad")
            .field("table", &self.tv.name)
            .field("rows", &self.rows)
            .finish()
    }
}

impl BulkLoad {
    /// The table's name.
    pub fn table(&self) -> &str {
        &self.tv.name
    }

    /// The table's schema as this load sees it (with the columns it adds).
    pub fn schema(&self) -> &TableSchema {
        &self.tv.schema
    }

    /// Adds a column, committed with the rows (a column of that name must not exist yet).
    pub fn add_column(&mut self, column: ColumnDef) -> Result<()> {
        let mut schema = (*self.tv.schema).clone();
        schema.columns.push(column.clone());
        schema.validate()?;
        self.tv.schema = Arc::new(schema);
        self.added.push(column);
        Ok(())
    }

    /// Rows pushed so far (before folding duplicates of a key).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Folds `batch` into the load. Its keys are registered in the dictionary now; its rows become
    /// visible only at [`BulkLoad::finish`].
    pub fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            resolve_batch(&self.tv, batch, self.key_type)?;
            return Ok(());
        }
        let row_batch = append::to_row_batch(&self.shared, &self.tv, batch, self.key_type)?;
        self.rows += batch.num_rows() as u64;
        self.add_sums(&row_batch);
        self.turn_dense(&row_batch.ordinals);
        let rest = fold_batch(
            &self.tv.schema,
            &mut self.dense,
            self.partition_rows,
            row_batch,
        );
        if rest.ordinals.is_empty() {
            return Ok(());
        }
        let chunk = Chunk::from_batch(&rest, &self.tv.schema, self.partition_rows);
        drop(rest);
        let schema = self.tv.schema.clone();
        for (p, data) in chunk.parts {
            let parts = self.parts.entry(p).or_default();
            parts.push(data);
            // Folded all at once (one pass over a dense slot vector per column) every so many
            // batches, which bounds the memory of many small batches of the same customers.
            if parts.len() >= FOLD_EVERY {
                let merged = merge_parts(&schema, &parts.iter().collect::<Vec<_>>());
                parts.clear();
                parts.push(merged);
            }
        }
        Ok(())
    }

    /// Adds the magnitudes of the batch's SUM BIGINT values.
    fn add_sums(&mut self, batch: &crate::wal::RowBatch) {
        for col in &batch.columns {
            let id = col.id.0 as usize;
            let is_sum = self.tv.schema.columns.get(id).is_some_and(|d| {
                d.rule == crate::schema::MergeRule::Sum && d.ty == crate::schema::ColumnType::Bigint
            });
            let crate::values::Values::Int(v) = &col.values else {
                continue;
            };
            if !is_sum {
                continue;
            }
            if self.sum_abs.len() <= id {
                self.sum_abs.resize(id + 1, 0);
            }
            if let Some(total) = self.sum_abs.get_mut(id) {
                *total += v.iter().map(|x| u128::from(x.unsigned_abs())).sum::<u128>();
            }
        }
    }

    /// Counts the rows pushed per partition and turns dense each partition that reached an eighth
    /// of its ordinals, folding its sparse data so far into the slots.
    fn turn_dense(&mut self, ordinals: &[u32]) {
        let pr = self.partition_rows;
        for &o in ordinals {
            let p = (o / pr) as usize;
            if self.pushed.len() <= p {
                self.pushed.resize(p + 1, 0);
            }
            if let Some(n) = self.pushed.get_mut(p) {
                *n += 1;
            }
        }
        self.dense.resize_with(self.pushed.len(), || None);
        for (p, (&n, slot)) in self.pushed.iter().zip(self.dense.iter_mut()).enumerate() {
            if slot.is_some() || n < u64::from(pr / 8) {
                continue;
            }
            let mut d = DensePart::new(p as u32 * pr, pr);
            if let Some(parts) = self.parts.get_mut(&PartitionId(p as u32)) {
                for part in parts.iter_mut() {
                    d.absorb(&self.tv.schema, part);
                }
                parts.retain(|part| part.columns.iter().any(Option::is_some));
            }
            *slot = Some(d);
        }
    }

    /// Writes the folded rows as segments and commits them (and the added columns) in one manifest
    /// commit. Durable and visible when it returns.
    pub fn finish(self) -> Result<IngestStats> {
        let schema = self.tv.schema.clone();
        let width = schema.columns.len();
        // Each partition's batches are folded in one pass, partitions on every core.
        let mut dense = self.dense;
        let mut work: Vec<(PartitionId, Vec<PartData>, Option<DensePart>)> = self
            .parts
            .into_iter()
            .map(|(p, parts)| {
                let d = dense.get_mut(p.0 as usize).and_then(Option::take);
                (p, parts, d)
            })
            .collect();
        for (p, d) in dense.into_iter().enumerate() {
            if let Some(d) = d {
                work.push((PartitionId(p as u32), Vec::new(), Some(d)));
            }
        }
        work.sort_by_key(|w| w.0);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, work.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<PartData>>> = work.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    while let Some((i, (_, parts, d))) = {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        work.get(i).map(|w| (i, w))
                    } {
                        let merged = fold_partition(&schema, width, parts, d.as_ref());
                        if let Some(slot) = slots.get(i) {
                            *lock(slot) = Some(merged);
                        }
                    }
                });
            }
        });
        let parts: Vec<(PartitionId, PartData)> = work
            .iter()
            .zip(slots)
            .filter_map(|((p, _, _), slot)| {
                slot.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .map(|d| (*p, d))
            })
            .collect();
        if parts.len() != work.len() {
            return Err(StorageError::InvalidBatch {
                table: self.tv.name.clone(),
                reason: "internal: a partition's fold failed".into(),
            });
        }
        // The table as it is now: a load whose sums could overflow is refused before anything
        // is written. (An append landing between this check and the commit is not counted: the
        // bound has room to spare unless values near 2^62 are stored.)
        if let Some(current) = self.shared.current.load_full().tables.get(&self.tv.id) {
            let mut stored = (**current).clone();
            stored.schema = self.tv.schema.clone();
            super::sums::check_load(&stored, &self.sum_abs)?;
        }
        self.shared.ingest_with(
            &self.tv.name,
            Some((self.tv.id, self.base_columns)),
            &self.added,
            parts,
        )
    }
}

/// One partition's data at the end of a load: its sparse batches folded, with its dense columns.
fn fold_partition(
    schema: &TableSchema,
    width: usize,
    parts: &[PartData],
    dense: Option<&DensePart>,
) -> PartData {
    let mut merged = match parts {
        [] => PartData {
            rows: roaring::RoaringBitmap::new(),
            columns: Vec::new(),
        },
        [one] => one.clone(),
        _ => merge_parts(schema, &parts.iter().collect::<Vec<_>>()),
    };
    merged.columns.resize(width, None);
    let Some(d) = dense else { return merged };
    let d = d.finish(width);
    merged.rows |= d.rows;
    for ((slot, dc), def) in merged
        .columns
        .iter_mut()
        .zip(d.columns)
        .zip(&schema.columns)
    {
        let Some(dc) = dc else { continue };
        *slot = Some(match slot.take() {
            // Cannot occur (a dense partition folds its fixed-width columns only in its slots),
            // but a merge keeps the data whole if it did.
            Some(sparse) => merge_columns(def.rule, def.ty, &[&sparse, &dc]),
            None => dc,
        });
    }
    merged
}
