//! System tables: `system.tables` and `system.segments`, built from the snapshot.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_storage::Snapshot;

use crate::error::{QueryError, Result};

/// The rows of system table `name`.
pub fn table(snap: &Snapshot, name: &str) -> Result<RecordBatch> {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let i = |n: &str| Field::new(n, DataType::Int64, true);
    match name {
        "system.tables" => {
            let (mut names, mut cols, mut rows, mut segs): (
                Vec<String>,
                Vec<i64>,
                Vec<i64>,
                Vec<i64>,
            ) = (vec![], vec![], vec![], vec![]);
            let (mut bytes, mut mem): (Vec<i64>, Vec<i64>) = (vec![], vec![]);
            for n in snap
                .table_names()
                .into_iter()
                .filter(|n| !crate::is_internal_table(n))
            {
                let t = snap.table(&n)?;
                let storage = t.storage();
                names.push(n);
                cols.push(t.schema().columns.len() as i64 + 1);
                rows.push(t.row_count() as i64);
                segs.push(storage.iter().filter(|s| s.id.is_some()).count() as i64);
                bytes.push(storage.iter().map(|s| s.size_bytes as i64).sum());
                mem.push(
                    storage
                        .iter()
                        .filter(|s| s.id.is_none())
                        .map(|s| s.rows as i64)
                        .sum(),
                );
            }
            let schema = Schema::new(vec![
                s("name"),
                i("columns"),
                i("rows"),
                i("segments"),
                i("bytes"),
                i("unflushed_rows"),
            ]);
            let arrays: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(names)),
                Arc::new(Int64Array::from(cols)),
                Arc::new(Int64Array::from(rows)),
                Arc::new(Int64Array::from(segs)),
                Arc::new(Int64Array::from(bytes)),
                Arc::new(Int64Array::from(mem)),
            ];
            Ok(RecordBatch::try_new(Arc::new(schema), arrays)?)
        }
        "system.segments" => {
            let (mut tables, mut ids): (Vec<String>, Vec<Option<i64>>) = (vec![], vec![]);
            let (mut parts, mut rows, mut bytes): (Vec<i64>, Vec<i64>, Vec<i64>) =
                (vec![], vec![], vec![]);
            for n in snap
                .table_names()
                .into_iter()
                .filter(|n| !crate::is_internal_table(n))
            {
                for seg in snap.table(&n)?.storage() {
                    tables.push(n.clone());
                    ids.push(seg.id.map(|i| i.0 as i64));
                    parts.push(seg.partition.0 as i64);
                    rows.push(seg.rows as i64);
                    bytes.push(seg.size_bytes as i64);
                }
            }
            let schema = Schema::new(vec![
                s("table_name"),
                i("segment_id"),
                i("partition"),
                i("rows"),
                i("bytes"),
            ]);
            let arrays: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(tables)),
                Arc::new(Int64Array::from(ids)),
                Arc::new(Int64Array::from(parts)),
                Arc::new(Int64Array::from(rows)),
                Arc::new(Int64Array::from(bytes)),
            ];
            Ok(RecordBatch::try_new(Arc::new(schema), arrays)?)
        }
        other => Err(QueryError::TableNotFound(other.to_string())),
    }
}
