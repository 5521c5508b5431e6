//! Bulk loads: many Arrow batches folded in memory and published as segments by one manifest commit
//! (file imports, event pivots). Nothing goes through the WAL; nothing is visible or durable until
//! [`BulkLoad::finish`] returns, and a load dropped before that leaves no trace but dictionary keys
//! (a key without rows is invisible).

use super::dense::{fold_batch, Bits, DensePart};
use super::*;
use crate::schema::{ColumnDef, ColumnType};
use crate::snapshot::merge_parts;
use crate::values::merge_columns;

/// Batches of one partition held before they are folded into one.
const FOLD_EVERY: usize = 64;

/// A column that a kind of cells sets (see [`BulkLoad::push_cells`]): its id, and the constant it
/// is set to (`None`: the cell's value).
pub type CellColumn = (ColumnId, Option<i64>);

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
    /// Per partition id, from its first row until it turns dense: the ordinals pushed so far and
    /// how many rows repeated one (see [`BulkLoad::turn_dense`]).
    seen: Vec<Option<Seen>>,
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
            seen: Vec::new(),
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
        // Checked before the keys are resolved: a refused batch registers no key.
        resolve_batch(&self.tv, batch, self.key_type)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keys = self.resolver().batch_ordinals(batch)?;
        self.push_resolved(batch, keys)
    }

    /// [`BulkLoad::push`] of a batch whose keys [`KeyResolver::batch_ordinals`] resolved (on
    /// another thread, say, while this load folded the batch before).
    pub fn push_resolved(&mut self, batch: &RecordBatch, keys: Ordinals) -> Result<()> {
        let (key_col, columns) = resolve_batch(&self.tv, batch, self.key_type)?;
        let same_keys = keys.keys.as_ref().is_some_and(|k| {
            std::ptr::eq(
                Arc::as_ptr(k).cast::<u8>(),
                (key_col as *const dyn Array).cast::<u8>(),
            )
        });
        if !Arc::ptr_eq(&keys.shared, &self.shared) || !same_keys {
            return Err(StorageError::InvalidBatch {
                table: self.tv.name.clone(),
                reason: "ordinals resolved for another batch or database".into(),
            });
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let row_batch = append::to_row_batch_with(&self.tv, columns, keys.ordinals)?;
        self.rows += batch.num_rows() as u64;
        self.add_sums(&row_batch);
        self.turn_dense(&row_batch.ordinals);
        // Cells queued by `push_cells` fold before these rows (a LAST column sees arrival order).
        self.flush_cells();
        let rest = fold_batch(
            &self.tv.schema,
            &mut self.dense,
            self.partition_rows,
            row_batch,
        );
        self.push_sparse(rest);
        Ok(())
    }

    /// Folds cells, each setting one or a few integer columns of one key: row `r` of `keys` sets
    /// every column of `targets[kinds[r]]` to `values[r]`, or to that target's constant when it
    /// has one. The columns must be BIGINT or TIMESTAMP. The result is that of pushing the rows
    /// as one batch, each row with its targets' columns set and the others NULL. An event log's
    /// pivot loads this way (a target per event name: its time column, and its count column with
    /// the constant 1), without a batch per event name. Cells of partitions that turned dense
    /// wait in per-column queues (see `DensePart::queue`), folded before the next `push` and at
    /// `finish`.
    pub fn push_cells(
        &mut self,
        keys: &dyn Array,
        kinds: &[u16],
        values: &[i64],
        targets: &[Vec<CellColumn>],
    ) -> Result<()> {
        // Checked before the keys are resolved: a refused call registers no key.
        self.check_cells(keys.len(), kinds, values, targets)?;
        let ordinals = self.resolver().ordinals(keys)?;
        self.push_resolved_cells(ordinals, kinds, values, targets)
    }

    /// A handle that finds the ordinals of a batch's keys (registering new keys), for
    /// [`BulkLoad::push_resolved_cells`]. It may run on another thread while this load folds
    /// the batch before: a pivot's key lookups (about two thirds of its time, mostly waits on
    /// memory) then overlap its folds instead of adding to them.
    pub fn resolver(&self) -> KeyResolver {
        KeyResolver {
            shared: self.shared.clone(),
            tv: TableVersion {
                id: self.tv.id,
                name: self.tv.name.clone(),
                schema: self.tv.schema.clone(),
                segments: Vec::new(),
                mem: Vec::new(),
            },
            key_type: self.key_type,
        }
    }

    /// [`BulkLoad::push_cells`] of keys already resolved by [`KeyResolver::ordinals`].
    pub fn push_resolved_cells(
        &mut self,
        keys: Ordinals,
        kinds: &[u16],
        values: &[i64],
        targets: &[Vec<CellColumn>],
    ) -> Result<()> {
        if !Arc::ptr_eq(&keys.shared, &self.shared) {
            return Err(StorageError::InvalidBatch {
                table: self.tv.name.clone(),
                reason: "ordinals resolved in another database".into(),
            });
        }
        let ordinals = keys.ordinals;
        self.check_cells(ordinals.len(), kinds, values, targets)?;
        if ordinals.is_empty() {
            return Ok(());
        }
        self.rows += ordinals.len() as u64;
        self.add_cell_sums(kinds, values, targets);
        self.turn_dense(&ordinals);
        // Rows of dense partitions are queued in their slots' partition; the others become one
        // sparse batch per target column.
        let pr = self.partition_rows;
        let schema = self.tv.schema.clone();
        let cells = Cells {
            schema: &schema,
            partition_rows: pr,
            ordinals: &ordinals,
            kinds,
            values,
            targets,
        };
        let sparse = cells.sparse(&self.dense);
        cells.queue(&mut self.dense);
        for (id, (ordinals, values)) in sparse {
            let ty = schema
                .columns
                .get(id.0 as usize)
                .map_or(ColumnType::Bigint, |d| d.ty);
            let valid = vec![true; ordinals.len()];
            self.push_sparse(crate::wal::RowBatch {
                table: self.tv.id,
                ordinals,
                columns: vec![crate::wal::BatchColumn {
                    id,
                    ty,
                    valid,
                    values: crate::values::Values::Int(values),
                }],
            });
        }
        Ok(())
    }

    /// Checks the shape of `n` cells: a kind and a value per key, kinds naming targets, and
    /// targets naming BIGINT or TIMESTAMP columns.
    fn check_cells(
        &self,
        n: usize,
        kinds: &[u16],
        values: &[i64],
        targets: &[Vec<CellColumn>],
    ) -> Result<()> {
        let bad = |reason: String| StorageError::InvalidBatch {
            table: self.tv.name.clone(),
            reason,
        };
        if kinds.len() != n || values.len() != n {
            return Err(bad(format!(
                "{n} keys, {} kinds and {} values",
                kinds.len(),
                values.len()
            )));
        }
        for (id, _) in targets.iter().flatten() {
            match self.tv.schema.columns.get(id.0 as usize) {
                Some(d) if matches!(d.ty, ColumnType::Bigint | ColumnType::Timestamp) => {}
                Some(d) => {
                    return Err(bad(format!(
                        "cells go to BIGINT or TIMESTAMP columns; {} is {}",
                        d.name,
                        d.ty.sql_name()
                    )))
                }
                None => return Err(bad(format!("no column id {}", id.0))),
            }
        }
        match kinds.iter().max() {
            Some(&k) if usize::from(k) >= targets.len() => {
                Err(bad(format!("cell kind {k} of {} kinds", targets.len())))
            }
            _ => Ok(()),
        }
    }

    /// Folds every queued cell into its dense partition's slots.
    fn flush_cells(&mut self) {
        let schema = self.tv.schema.clone();
        for d in self.dense.iter_mut().flatten() {
            d.flush(&schema);
        }
    }

    /// Adds the magnitudes of the SUM BIGINT values that cells set.
    fn add_cell_sums(&mut self, kinds: &[u16], values: &[i64], targets: &[Vec<CellColumn>]) {
        let is_sum = |id: ColumnId| {
            self.tv.schema.columns.get(id.0 as usize).is_some_and(|d| {
                d.rule == crate::schema::MergeRule::Sum && d.ty == ColumnType::Bigint
            })
        };
        let sums: Vec<(ColumnId, Option<i64>, u16)> = targets
            .iter()
            .enumerate()
            .flat_map(|(k, cols)| cols.iter().map(move |&(id, c)| (id, c, k as u16)))
            .filter(|&(id, _, _)| is_sum(id))
            .collect();
        for (id, c, k) in sums {
            let total: u128 = match c {
                Some(c) => {
                    u128::from(c.unsigned_abs()) * kinds.iter().filter(|&&x| x == k).count() as u128
                }
                None => kinds
                    .iter()
                    .zip(values)
                    .filter(|(&x, _)| x == k)
                    .map(|(_, v)| u128::from(v.unsigned_abs()))
                    .sum(),
            };
            let i = id.0 as usize;
            if self.sum_abs.len() <= i {
                self.sum_abs.resize(i + 1, 0);
            }
            if let Some(t) = self.sum_abs.get_mut(i) {
                *t += total;
            }
        }
    }

    /// Holds the rows of a batch left for the sparse path (see `fold_batch`).
    fn push_sparse(&mut self, rest: crate::wal::RowBatch) {
        if rest.ordinals.is_empty() {
            return;
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
    /// of its ordinals and in which at least one row in `DUPLICATES_PER` repeated an ordinal,
    /// folding its sparse data so far into the slots.
    ///
    /// Why duplicates too: slots pay 8 bytes per ordinal of the partition for every fixed-width
    /// column, whatever the column's density, and win only when rows of one key fold together (an
    /// event log). A load of distinct keys (a table exported and imported again) folds nothing:
    /// the sorted path costs it a sort of batches that are already in order, while slots cost it
    /// 8 bytes × the table's ordinals × its columns of fresh pages the kernel must clear. Measured
    /// on the bench's 10M-row state of 30 columns (`COPY .. FROM` its Parquet export): 5.7-8.2 s
    /// and 3.2 GB of RSS with slots, 3.0-3.3 s and 1.2 GB without.
    fn turn_dense(&mut self, ordinals: &[u32]) {
        let pr = self.partition_rows;
        for &o in ordinals {
            let p = (o / pr) as usize;
            if self.pushed.len() <= p {
                self.pushed.resize(p + 1, 0);
                self.seen.resize_with(p + 1, || None);
            }
            if let Some(n) = self.pushed.get_mut(p) {
                *n += 1;
            }
            // Tracked from a partition's first row until it turns dense.
            if matches!(self.dense.get(p), Some(Some(_))) {
                continue;
            }
            if let Some(seen) = self.seen.get_mut(p) {
                seen.get_or_insert_with(|| Seen::new(pr))
                    .push(o - p as u32 * pr);
            }
        }
        self.dense.resize_with(self.pushed.len(), || None);
        let candidates = self.pushed.iter().zip(self.dense.iter_mut());
        for (p, ((&n, slot), seen)) in candidates.zip(self.seen.iter_mut()).enumerate() {
            let repeated = seen.as_ref().map_or(0, |s| s.repeated);
            if slot.is_some() || n < u64::from(pr / 8) || repeated * DUPLICATES_PER < n {
                continue;
            }
            *seen = None;
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

    /// Partitions folded in slots so far (see [`BulkLoad::turn_dense`]); for tests.
    #[doc(hidden)]
    pub fn dense_partitions(&self) -> usize {
        self.dense.iter().flatten().count()
    }

    /// Writes the folded rows as segments and commits them (and the added columns) in one manifest
    /// commit. Durable and visible when it returns.
    pub fn finish(mut self) -> Result<IngestStats> {
        self.flush_cells();
        let schema = self.tv.schema.clone();
        let width = schema.columns.len();
        // Each partition's batches are folded in one pass, partitions on the worker pool.
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
        let folded = crate::workers::map(&work, |(_, parts, d)| {
            fold_partition(&schema, width, parts, d.as_ref())
        });
        let mut parts: Vec<(PartitionId, PartData)> = Vec::with_capacity(work.len());
        for ((p, _, _), f) in work.iter().zip(folded) {
            parts.push((
                *p,
                f.map_err(|_| StorageError::WorkerPanicked("folding a partition"))?,
            ));
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

/// Finds the ordinals of keys for a [`BulkLoad`]; see [`BulkLoad::resolver`].
#[derive(Clone)]
pub struct KeyResolver {
    shared: Arc<Shared>,
    /// The table as the load began (for the key checks and messages).
    tv: TableVersion,
    key_type: KeyType,
}

/// The ordinals of one batch's keys, in row order, from [`KeyResolver::ordinals`].
pub struct Ordinals {
    shared: Arc<Shared>,
    /// The batch's key column, for a batch's ordinals (see [`BulkLoad::push_resolved`]).
    keys: Option<arrow_array::ArrayRef>,
    ordinals: Vec<u32>,
}

impl std::fmt::Debug for KeyResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyResolver")
            .field("table", &self.tv.name)
            .finish()
    }
}

impl std::fmt::Debug for Ordinals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ordinals")
            .field("len", &self.ordinals.len())
            .finish()
    }
}

impl Ordinals {
    /// Keys resolved.
    pub fn len(&self) -> usize {
        self.ordinals.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.ordinals.is_empty()
    }
}

impl KeyResolver {
    /// The ordinals of `keys` (a key column of the load's key type, without NULLs); keys not
    /// known yet are added to the dictionary (as a load's keys are; a key without rows is
    /// invisible).
    pub fn ordinals(&self, keys: &dyn Array) -> Result<Ordinals> {
        append::check_keys(&self.tv, keys, self.key_type)?;
        let ordinals = if keys.is_empty() {
            Vec::new()
        } else {
            append::ordinals_of(&self.shared, keys, &self.tv.name)?
        };
        Ok(Ordinals {
            shared: self.shared.clone(),
            keys: None,
            ordinals,
        })
    }

    /// The ordinals of the keys of `batch` (shaped as [`BulkLoad::push`] takes it), for
    /// [`BulkLoad::push_resolved`] of that batch.
    pub fn batch_ordinals(&self, batch: &RecordBatch) -> Result<Ordinals> {
        let key = batch
            .schema()
            .fields()
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(&self.tv.schema.key_name))
            .and_then(|i| batch.columns().get(i))
            .cloned()
            .ok_or_else(|| StorageError::InvalidBatch {
                table: self.tv.name.clone(),
                reason: format!("the key column {} is missing", self.tv.schema.key_name),
            })?;
        let mut o = self.ordinals(key.as_ref())?;
        o.keys = Some(key);
        Ok(o)
    }
}

/// The cells of one [`BulkLoad::push_cells`], their keys resolved.
struct Cells<'a> {
    schema: &'a TableSchema,
    partition_rows: u32,
    ordinals: &'a [u32],
    kinds: &'a [u16],
    values: &'a [i64],
    targets: &'a [Vec<CellColumn>],
}

impl Cells<'_> {
    /// Each row with its target columns: (ordinal, partition id, columns, value).
    fn rows(&self) -> impl Iterator<Item = (u32, usize, &[CellColumn], i64)> + '_ {
        let pr = self.partition_rows;
        self.ordinals
            .iter()
            .zip(self.kinds)
            .zip(self.values)
            .filter_map(move |((&o, &k), &v)| {
                let cols = self.targets.get(usize::from(k))?;
                Some((o, (o / pr) as usize, cols.as_slice(), v))
            })
    }

    /// The cells of partitions that are not dense, per column: ordinals and values.
    fn sparse(&self, dense: &[Option<DensePart>]) -> BTreeMap<ColumnId, (Vec<u32>, Vec<i64>)> {
        let mut sparse: BTreeMap<ColumnId, (Vec<u32>, Vec<i64>)> = BTreeMap::new();
        if dense.iter().all(Option::is_some)
            && self
                .ordinals
                .iter()
                .all(|&o| ((o / self.partition_rows) as usize) < dense.len())
        {
            return sparse;
        }
        for (o, p, cols, v) in self.rows() {
            if matches!(dense.get(p), Some(Some(_))) {
                continue;
            }
            for &(id, c) in cols {
                let (os, vs) = sparse.entry(id).or_default();
                os.push(o);
                vs.push(c.unwrap_or(v));
            }
        }
        sparse
    }

    /// Queues the cells of the dense partitions (`dense`, by partition id). (Queueing on two
    /// threads, each walking every row for its half of the partitions, measured no faster in the
    /// (j) pivot: the other stages of an import keep both cores busy.)
    fn queue(&self, dense: &mut [Option<DensePart>]) {
        let pr = self.partition_rows;
        for (o, p, cols, v) in self.rows() {
            let Some(Some(d)) = dense.get_mut(p) else {
                continue;
            };
            for &(id, c) in cols {
                d.queue(
                    self.schema,
                    id.0 as usize,
                    o - p as u32 * pr,
                    c.unwrap_or(v),
                );
            }
        }
    }
}

/// A partition turns dense only when at least one row in this many repeated an ordinal pushed
/// before. Rows in random order over a partition's keys repeat about one in 16 by the time they
/// number an eighth of its ordinals; distinct keys never repeat.
const DUPLICATES_PER: u64 = 32;

/// The ordinals pushed to a partition (one bit each), and how many rows repeated one.
#[derive(Debug)]
struct Seen {
    bits: Bits,
    repeated: u64,
}

impl Seen {
    fn new(partition_rows: u32) -> Seen {
        Seen {
            bits: Bits::new(partition_rows),
            repeated: 0,
        }
    }

    #[inline]
    fn push(&mut self, i: u32) {
        self.repeated += u64::from(self.bits.set(i));
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
