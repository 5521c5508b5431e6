//! Cells: rows of a load that each set a few integer columns of one key, as an event log's pivot
//! produces (an event sets its event's time column and, when counting, its count column to 1).
//! The embedded engine folds them without building a batch per column; a remote session sends
//! them as ordinary batches ([`Cells::to_batches`]).

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, StringViewArray,
    TimestampMicrosecondArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use crate::ClientError;

/// A column that cells of one kind set.
#[derive(Debug, Clone, PartialEq)]
pub struct CellTarget {
    /// Column name.
    pub column: String,
    /// True for a TIMESTAMP column (microseconds), false for BIGINT.
    pub timestamp: bool,
    /// The value set: this constant, or (`None`) the cell's value.
    pub constant: Option<i64>,
}

/// Cells of a load: row `r` of `keys` sets every column of `targets[kinds[r]]` to `values[r]`
/// (or to the target's constant). Kinds should set different columns: [`Cells::to_batches`]
/// keeps the order of rows within a kind, not across kinds, which a LAST column set by two kinds
/// would see.
#[derive(Debug, Clone)]
pub struct Cells {
    /// The table's key column name.
    pub key: String,
    /// One key per row (BIGINT or VARCHAR, no NULL).
    pub keys: ArrayRef,
    /// Per row, its index in `targets`.
    pub kinds: Vec<u16>,
    /// Per row, its value.
    pub values: Vec<i64>,
    /// Per kind, the columns its rows set.
    pub targets: Vec<Vec<CellTarget>>,
}

impl Cells {
    /// Rows.
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The rows as one batch per kind that has rows: the key column, then the kind's columns.
    pub fn to_batches(&self) -> Result<Vec<RecordBatch>, ClientError> {
        if self.keys.len() != self.kinds.len() || self.values.len() != self.kinds.len() {
            return Err(ClientError::Input(format!(
                "cells: {} keys, {} kinds and {} values",
                self.keys.len(),
                self.kinds.len(),
                self.values.len()
            )));
        }
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); self.targets.len()];
        for (r, &k) in self.kinds.iter().enumerate() {
            rows.get_mut(usize::from(k))
                .ok_or_else(|| {
                    ClientError::Input(format!("cell kind {k} of {}", self.targets.len()))
                })?
                .push(r as u32);
        }
        let mut out = Vec::new();
        for (rows, cols) in rows.into_iter().zip(&self.targets) {
            if rows.is_empty() || cols.is_empty() {
                continue;
            }
            let values: Vec<i64> = rows
                .iter()
                .map(|&r| self.values.get(r as usize).copied().unwrap_or_default())
                .collect();
            let idx = UInt32Array::from(rows);
            let keys = arrow_select::take::take(self.keys.as_ref(), &idx, None)?;
            // String views become plain strings, which every reader of a batch takes.
            let keys: ArrayRef = match keys.as_any().downcast_ref::<StringViewArray>() {
                Some(v) => Arc::new(StringArray::from_iter(v.iter())),
                None => keys,
            };
            let mut fields = vec![Field::new(&self.key, keys.data_type().clone(), false)];
            let mut arrays = vec![keys];
            for t in cols {
                let v: Vec<i64> = match t.constant {
                    Some(c) => vec![c; values.len()],
                    None => values.clone(),
                };
                let (ty, a): (DataType, ArrayRef) = if t.timestamp {
                    (
                        DataType::Timestamp(TimeUnit::Microsecond, None),
                        Arc::new(TimestampMicrosecondArray::from(v)),
                    )
                } else {
                    (DataType::Int64, Arc::new(Int64Array::from(v)))
                };
                fields.push(Field::new(&t.column, ty, true));
                arrays.push(a);
            }
            out.push(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn cells_become_one_batch_per_kind() {
        let cells = Cells {
            key: "id".into(),
            keys: Arc::new(StringViewArray::from(vec!["a", "b", "a", "c"])),
            kinds: vec![1, 0, 1, 1],
            values: vec![10, 20, 30, 40],
            targets: vec![
                vec![CellTarget {
                    column: "view".into(),
                    timestamp: true,
                    constant: None,
                }],
                vec![
                    CellTarget {
                        column: "buy".into(),
                        timestamp: true,
                        constant: None,
                    },
                    CellTarget {
                        column: "buy_count".into(),
                        timestamp: false,
                        constant: Some(1),
                    },
                ],
            ],
        };
        let b = cells.to_batches().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].num_rows(), 1);
        assert_eq!(b[1].num_rows(), 3);
        assert_eq!(b[1].schema().field(2).name(), "buy_count");
        let keys = b[1]
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(keys.value(2), "c");
        let t = b[1]
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(t.values().to_vec(), vec![10, 30, 40]);
        assert_eq!(b[1].column(2).len(), 3);
        let bad = Cells {
            kinds: vec![2, 0, 0, 0],
            ..cells
        };
        assert!(bad.to_batches().is_err());
    }
}
