//! `MERGE SUM` BIGINT columns never overflow: an append or a bulk load whose sums would leave the
//! BIGINT range is refused, and nothing of it is stored (as SQL arithmetic raises an error).
//!
//! A key's value is the sum of its values in every source (each segment, each memtable chunk, the
//! appends in flight, the new rows), each source holding at most one value per key. So the sum
//! of each source's largest magnitude (segment footers keep min and max; chunks compute theirs
//! once) bounds every key's total: when the bound fits, no check per key is needed, which is the
//! case for any realistic counter. Otherwise an append computes the exact total of each key it
//! touches in 128-bit arithmetic. Merges (flush, compaction, reads) keep wrapping arithmetic: the
//! true total of every key fits, so the wrapped sum of any grouping of its parts equals it.

use std::collections::HashMap;

use super::*;
use crate::schema::{ColumnDef, ColumnType, MergeRule};
use crate::segment::Stats;
use crate::values::{ColumnData, Values};
use crate::wal::RowBatch;

/// True when the table has a SUM BIGINT column.
pub(super) fn has_sum_columns(schema: &TableSchema) -> bool {
    sum_columns(schema).next().is_some()
}

/// The SUM BIGINT columns of a schema.
fn sum_columns(schema: &TableSchema) -> impl Iterator<Item = (ColumnId, &ColumnDef)> {
    schema
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.rule == MergeRule::Sum && c.ty == ColumnType::Bigint)
        .map(|(i, c)| (ColumnId(i as u32), c))
}

/// The largest magnitude of column `id` in the table's stored sources: segments and memtable
/// chunks, and the given chunks (appends in flight).
fn stored_bound<'a>(
    tv: &'a TableVersion,
    in_flight: impl Iterator<Item = &'a Chunk>,
    id: ColumnId,
) -> u128 {
    let segments: u128 = tv
        .segments
        .iter()
        .filter_map(|s| s.column_meta(id).and_then(|m| m.stats))
        .map(|s| match s {
            Stats::Int { min, max } => u128::from(min.unsigned_abs().max(max.unsigned_abs())),
            _ => 0,
        })
        .sum();
    let chunks: u128 = tv
        .mem
        .iter()
        .map(|c| &**c)
        .chain(in_flight)
        .map(|c| u128::from(c.abs_max(id)))
        .sum();
    segments + chunks
}

fn overflow(table: &str, column: &str, detail: String) -> StorageError {
    StorageError::InvalidBatch {
        table: table.to_string(),
        reason: format!(
            "the sum of column {column} (MERGE SUM) would leave the BIGINT range ({detail}); \
             nothing was stored"
        ),
    }
}

/// Checks an append: `batch` (its rows, before folding) against the table as `tv` and the appends
/// in flight hold it. Called under the state lock, so no other append slips in between.
pub(super) fn check_append<'a>(
    tv: &'a TableVersion,
    in_flight: impl Iterator<Item = &'a Chunk> + Clone,
    batch: &RowBatch,
) -> Result<()> {
    for col in &batch.columns {
        let Some(def) = tv.schema.columns.get(col.id.0 as usize) else {
            continue;
        };
        if def.rule != MergeRule::Sum || def.ty != ColumnType::Bigint {
            continue;
        }
        let Values::Int(values) = &col.values else {
            continue;
        };
        let delta: u128 = values.iter().map(|v| u128::from(v.unsigned_abs())).sum();
        if stored_bound(tv, in_flight.clone(), col.id) + delta <= i64::MAX as u128 {
            continue;
        }
        // Exact: each key's new rows, then its value in every source.
        let mut totals: HashMap<u32, i128> = HashMap::new();
        let valid = batch.ordinals.iter().zip(&col.valid).filter(|(_, v)| **v);
        for ((&o, _), &v) in valid.zip(values) {
            *totals.entry(o).or_default() += i128::from(v);
        }
        add_stored(tv, in_flight.clone(), col.id, def.ty, &mut totals)?;
        if let Some((o, t)) = totals
            .iter()
            .find(|(_, t)| **t > i128::from(i64::MAX) || **t < i128::from(i64::MIN))
        {
            return Err(overflow(
                &tv.name,
                &def.name,
                format!("a key (ordinal {o}) would sum to {t}"),
            ));
        }
    }
    Ok(())
}

/// Adds to each key of `totals` its value of column `id` in every stored source.
fn add_stored<'a>(
    tv: &'a TableVersion,
    in_flight: impl Iterator<Item = &'a Chunk>,
    id: ColumnId,
    ty: ColumnType,
    totals: &mut HashMap<u32, i128>,
) -> Result<()> {
    let mut add = |data: &ColumnData| {
        let Values::Int(v) = &data.values else { return };
        for (o, t) in totals.iter_mut() {
            if data.presence.contains(*o) {
                // rank counts the ordinals up to and including `o`.
                let i = data.presence.rank(*o) as usize - 1;
                if let Some(x) = v.get(i) {
                    *t += i128::from(*x);
                }
            }
        }
    };
    for s in &tv.segments {
        if let Some(data) = s.column(id, ty)? {
            add(&data);
        }
    }
    for c in tv.mem.iter().map(|c| &**c).chain(in_flight) {
        for part in c.parts.values() {
            if let Some(Some(data)) = part.columns.get(id.0 as usize) {
                add(data);
            }
        }
    }
    Ok(())
}

/// Checks a bulk load at its commit: the loaded rows' magnitudes (`load_abs`, per column id, the
/// sum over every row pushed) and the table as stored. The load folded its rows with wrapping
/// arithmetic, so it cannot check key by key: when the bound does not fit it is refused.
pub(super) fn check_load(tv: &TableVersion, load_abs: &[u128]) -> Result<()> {
    for (id, def) in sum_columns(&tv.schema) {
        let loaded = load_abs.get(id.0 as usize).copied().unwrap_or(0);
        if loaded == 0 {
            continue;
        }
        let bound = stored_bound(tv, std::iter::empty(), id) + loaded;
        if bound > i64::MAX as u128 {
            return Err(overflow(
                &tv.name,
                &def.name,
                format!(
                    "the magnitudes of its stored and loaded values add up to {bound}; \
                     a load checks that bound, not each key"
                ),
            ));
        }
    }
    Ok(())
}
