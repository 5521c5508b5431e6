//! Helpers shared by the storage integration tests: batch builders and a plain dump of a table.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

pub mod model;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use journeydb_storage::{ColumnType, Key, Options, Snapshot, Values};

/// Options of the tests' databases: small partitions (65,536 ordinals), no background thread.
pub fn opts() -> Options {
    Options {
        partition_rows: 65536,
        background: false,
        ..Options::default()
    }
}

/// A cell value in a dump.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum Cell {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

/// Every row of a table: key -> one Option<Cell> per column.
pub type Dump = BTreeMap<String, Vec<Option<Cell>>>;

/// Reads a whole table through the public snapshot API.
pub fn dump(snap: &Snapshot, table: &str) -> Dump {
    let t = snap.table(table).expect("table");
    let ncols = t.schema().columns.len();
    let mut out = Dump::new();
    let keys = snap.keys();
    let name = |o: u32| match keys.key(o).expect("ordinal has a key") {
        Key::Str(s) => s.to_string(),
        Key::Int(i) => i.to_string(),
    };
    for p in t.partitions() {
        for o in t.rows(p).iter() {
            out.insert(name(o), vec![None; ncols]);
        }
        for c in 0..ncols {
            let data = t
                .column(p, journeydb_storage::ColumnId(c as u32))
                .expect("column reads");
            assert!(data.is_consistent());
            let cells: Vec<Cell> = match &data.values {
                Values::Int(v) => v.iter().map(|x| Cell::Int(*x)).collect(),
                Values::Float(v) => v.iter().map(|x| Cell::Float(*x)).collect(),
                Values::Bool(v) => v.iter().map(|x| Cell::Bool(*x)).collect(),
                Values::Str(v) => v.iter().map(|x| Cell::Str(x.clone())).collect(),
            };
            for (o, cell) in data.presence.iter().zip(cells) {
                let row = out.get_mut(&name(o)).expect("a value's ordinal has a row");
                row[c] = Some(cell);
            }
        }
    }
    out
}

/// A column of a test batch.
pub enum Col {
    Ts(Vec<Option<i64>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Str(Vec<Option<String>>),
}

/// Builds a batch with a VARCHAR key column `key_name` and the given named columns.
pub fn batch(key_name: &str, keys: &[String], cols: Vec<(&str, Col)>) -> RecordBatch {
    let mut fields = vec![Field::new(key_name, DataType::Utf8, false)];
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(keys.iter()))];
    for (name, c) in cols {
        let (ty, a): (DataType, ArrayRef) = match c {
            Col::Ts(v) => (
                DataType::Timestamp(TimeUnit::Microsecond, None),
                Arc::new(TimestampMicrosecondArray::from(v)),
            ),
            Col::Int(v) => (DataType::Int64, Arc::new(Int64Array::from(v))),
            Col::Float(v) => (DataType::Float64, Arc::new(Float64Array::from(v))),
            Col::Str(v) => (DataType::Utf8, Arc::new(StringArray::from(v))),
        };
        fields.push(Field::new(name, ty, true));
        arrays.push(a);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("valid batch")
}

/// The storage class of a column type, for building expected cells.
pub fn cell_of(ty: ColumnType, v: i64) -> Cell {
    match ty {
        ColumnType::Double => Cell::Float(v as f64),
        ColumnType::Varchar => Cell::Str(format!("s{v:05}")),
        ColumnType::Boolean => Cell::Bool(v % 2 == 0),
        _ => Cell::Int(v),
    }
}
