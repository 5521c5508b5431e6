//! The journey dataset generator shared by the demo, the figures run and the criterion benches.
//!
//! Deterministic for a seed: customer `i` gets the key `hex16(mix(seed, i))` and a uniform draw `u_i`;
//! it reached funnel column `j` iff `u_i < density(j)`, where densities fall geometrically from 60% to
//! 0.5% over the columns (a funnel: everyone in column j is in column j-1). Timestamps are journey-job
//! run times: the job runs every 4 hours over 30 days, and a customer reaches each next column a
//! few runs after the previous one — the values a journey state table really holds.
#![warn(missing_docs)]

pub mod harness;
pub mod io_bench;

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use journeydb_storage::{ColumnDef, ColumnType, TableSchema};

/// Density of the first funnel column.
pub const DENSITY_TOP: f64 = 0.60;
/// Density of the last funnel column.
pub const DENSITY_BOTTOM: f64 = 0.005;
/// 2026-01-01T00:00:00Z in µs: the first run of the simulated job.
pub const EPOCH_US: i64 = 1_767_225_600_000_000;
/// Interval between job runs.
pub const RUN_INTERVAL_US: i64 = 4 * 3_600_000_000;
/// Runs in the simulated period (30 days every 4 hours).
pub const RUNS: u64 = 180;

/// The value after `name` on the command line, if given (the figures binaries' options).
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The median of some timings (zero for none).
pub fn median(mut v: Vec<std::time::Duration>) -> std::time::Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub use journeydb_tools::data::mix;

/// The generated journey state of `customers` customers with `columns` funnel columns.
#[derive(Debug, Clone, Copy)]
pub struct Journey {
    /// Number of customers.
    pub customers: usize,
    /// Number of sparse TIMESTAMP columns.
    pub columns: usize,
    /// Seed of every draw.
    pub seed: u64,
}

impl Journey {
    /// The default shape: 30 columns.
    pub fn new(customers: usize, seed: u64) -> Self {
        Journey {
            customers,
            columns: 30,
            seed,
        }
    }

    /// Name of funnel column `j` (0-based): stage{s}_step_{k} shaped, 5 columns per stage.
    pub fn column_name(&self, j: usize) -> String {
        let stage = j / 5 + 1;
        match j % 5 {
            0 => format!("stage{stage}"),
            k => format!("stage{stage}_step_{k}"),
        }
    }

    /// Density of column `j`.
    pub fn density(&self, j: usize) -> f64 {
        if self.columns <= 1 {
            return DENSITY_TOP;
        }
        let t = j as f64 / (self.columns - 1) as f64;
        DENSITY_TOP * (DENSITY_BOTTOM / DENSITY_TOP).powf(t)
    }

    /// The state table's schema (all columns TIMESTAMP, MERGE MIN).
    pub fn schema(&self) -> TableSchema {
        TableSchema::new(
            "customer_id",
            (0..self.columns)
                .map(|j| ColumnDef::new(self.column_name(j), ColumnType::Timestamp))
                .collect(),
        )
    }

    /// Key of customer `i`.
    pub fn key(&self, i: usize) -> String {
        format!("{:016x}", mix(self.seed ^ mix(i as u64)))
    }

    fn draw(&self, i: usize, salt: u64) -> u64 {
        mix(self
            .seed
            .wrapping_add(salt.wrapping_mul(0xD6E8_FEB8_6659_FD93))
            ^ (i as u64).wrapping_mul(0xA076_1D64_78BD_642F))
    }

    /// Time customer `i` reached column `j`, or `None`.
    pub fn value(&self, i: usize, j: usize) -> Option<i64> {
        let u = (self.draw(i, 1) >> 11) as f64 / (1u64 << 53) as f64;
        if u >= self.density(j) {
            return None;
        }
        let entry_run = self.draw(i, 2) % (RUNS / 2);
        // Each step happens 0..3 runs after the previous one.
        let mut run = entry_run;
        for k in 1..=j {
            run += self.draw(i, 100 + k as u64) % 4;
        }
        Some(EPOCH_US + run.min(RUNS - 1) as i64 * RUN_INTERVAL_US)
    }

    /// Non-null cells of the whole table (for bytes-per-value figures).
    pub fn non_null_cells(&self) -> u64 {
        (0..self.customers)
            .map(|i| {
                (0..self.columns)
                    .filter(|&j| self.value(i, j).is_some())
                    .count() as u64
            })
            .sum()
    }

    /// Customers `range` as an Arrow batch: the key column and every funnel column.
    pub fn batch(&self, range: std::ops::Range<usize>) -> RecordBatch {
        let rows: Vec<usize> = range.collect();
        self.batch_for(self, &rows)
    }

    /// Customers `rows` as an Arrow batch, with the keys of `keys_of` and this journey's values (a
    /// delta of new facts for existing customers when the seeds differ).
    pub fn batch_for(&self, keys_of: &Journey, rows: &[usize]) -> RecordBatch {
        let range = rows.iter().copied();
        let mut fields = vec![Field::new("customer_id", DataType::Utf8, false)];
        let keys: Vec<String> = range.clone().map(|i| keys_of.key(i)).collect();
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(keys))];
        for j in 0..self.columns {
            fields.push(Field::new(
                self.column_name(j),
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ));
            let v: Vec<Option<i64>> = range.clone().map(|i| self.value(i, j)).collect();
            arrays.push(Arc::new(TimestampMicrosecondArray::from(v)));
        }
        // The fields and arrays above are built to match, so this cannot fail; an empty batch is the
        // harmless fallback.
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .unwrap_or_else(|_| RecordBatch::new_empty(Arc::new(Schema::empty())))
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn funnel_is_nested_and_ordered() {
        let j = Journey::new(20_000, 7);
        for i in 0..j.customers {
            for c in 1..j.columns {
                if let Some(t) = j.value(i, c) {
                    let prev = j.value(i, c - 1);
                    assert!(prev.is_some_and(|p| p <= t), "customer {i} column {c}");
                }
            }
        }
        let top = (0..j.customers)
            .filter(|&i| j.value(i, 0).is_some())
            .count() as f64
            / j.customers as f64;
        assert!((top - DENSITY_TOP).abs() < 0.02, "top density {top}");
        assert_eq!(j.key(5), Journey::new(1, 7).key(5));
        assert_eq!(j.batch(0..10).num_rows(), 10);
        assert_eq!(j.batch(0..10).num_columns(), 31);
    }
}
