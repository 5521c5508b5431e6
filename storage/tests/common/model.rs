//! The model of the storage contract shared by the model-based and power-cut property tests: random
//! operations, a plain in-memory model (a BTreeMap per table folding every appended row with the
//! column's merge rule), and the same operations run on the engine.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use super::{batch, cell_of, dump, Cell, Col, Dump};
use journeydb_storage::{
    CatalogOp, ColumnDef, ColumnType, Database, MergeRule, Snapshot, TableSchema,
};
use proptest::prelude::*;

pub const TABLES: [&str; 3] = ["t0", "t1", "t2"];
/// Keys drawn by the test; a filler table pushes their ordinals across the first partition boundary.
pub const KEYS: u32 = 24;
pub const FILLER_KEYS: usize = 65_536 - 12;

pub fn columns() -> Vec<ColumnDef> {
    vec![
        ColumnDef::new("a", ColumnType::Timestamp),
        ColumnDef::new("b", ColumnType::Bigint).with_rule(MergeRule::Max),
        ColumnDef::new("c", ColumnType::Bigint).with_rule(MergeRule::Sum),
        ColumnDef::new("d", ColumnType::Double).with_rule(MergeRule::Last),
        ColumnDef::new("e", ColumnType::Varchar).with_rule(MergeRule::Min),
        ColumnDef::new("f", ColumnType::Varchar).with_rule(MergeRule::Last),
    ]
}

pub fn schema() -> TableSchema {
    TableSchema::new("k", columns())
}

#[derive(Debug, Clone)]
pub enum Op {
    Append {
        table: usize,
        rows: Vec<(u32, [Option<i64>; 6])>,
    },
    /// Rows written straight to segments by ordinal (the query engine's CREATE TABLE AS path).
    Ingest {
        table: usize,
        rows: Vec<(u32, [Option<i64>; 6])>,
    },
    Flush,
    Compact,
    Create(usize),
    CreateOrReplace(usize),
    Drop(usize),
    Rename(usize, usize),
    Swap(usize, usize),
    Replace(usize, usize),
    Reopen,
}

pub fn op() -> impl Strategy<Value = Op> {
    let cell = proptest::option::weighted(0.5, -50i64..50);
    let row = (
        0..KEYS,
        [
            cell.clone(),
            cell.clone(),
            cell.clone(),
            cell.clone(),
            cell.clone(),
            cell,
        ],
    );
    prop_oneof![
        8 => (0..3usize, proptest::collection::vec(row.clone(), 0..12)).prop_map(|(table, rows)| Op::Append { table, rows }),
        3 => (0..3usize, proptest::collection::vec(row, 0..12)).prop_map(|(table, rows)| Op::Ingest { table, rows }),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        2 => (0..3usize).prop_map(Op::Create),
        1 => (0..3usize).prop_map(Op::CreateOrReplace),
        1 => (0..3usize).prop_map(Op::Drop),
        1 => (0..3usize, 0..3usize).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (0..3usize, 0..3usize).prop_map(|(a, b)| Op::Swap(a, b)),
        1 => (0..3usize, 0..3usize).prop_map(|(a, b)| Op::Replace(a, b)),
        1 => Just(Op::Reopen),
    ]
}

pub type Model = BTreeMap<String, Dump>;

pub fn key(k: u32) -> String {
    format!("key{k:03}")
}

fn fold(old: &mut Option<Cell>, new: Cell, rule: MergeRule) {
    let Some(o) = old else {
        *old = Some(new);
        return;
    };
    *o = match (rule, o.clone(), new) {
        (MergeRule::Min, a, b) => {
            if b < a {
                b
            } else {
                a
            }
        }
        (MergeRule::Max, a, b) => {
            if b > a {
                b
            } else {
                a
            }
        }
        (MergeRule::Sum, Cell::Int(a), Cell::Int(b)) => Cell::Int(a.wrapping_add(b)),
        (_, _, b) => b,
    };
}

pub fn apply_model(m: &mut Model, op: &Op) -> bool {
    let cols = columns();
    match op {
        Op::Append { table, rows } | Op::Ingest { table, rows } => {
            let Some(t) = m.get_mut(TABLES[*table]) else {
                return false;
            };
            for (k, vals) in rows {
                let row = t.entry(key(*k)).or_insert_with(|| vec![None; cols.len()]);
                for (i, v) in vals.iter().enumerate() {
                    if let Some(v) = v {
                        fold(&mut row[i], cell_of(cols[i].ty, *v), cols[i].rule);
                    }
                }
            }
            true
        }
        Op::Create(t) => {
            if m.contains_key(TABLES[*t]) {
                return false;
            }
            m.insert(TABLES[*t].to_string(), Dump::new());
            true
        }
        Op::CreateOrReplace(t) => {
            m.insert(TABLES[*t].to_string(), Dump::new());
            true
        }
        Op::Drop(t) => m.remove(TABLES[*t]).is_some(),
        Op::Rename(a, b) => {
            if a == b {
                return m.contains_key(TABLES[*a]);
            }
            if m.contains_key(TABLES[*b]) {
                return false;
            }
            match m.remove(TABLES[*a]) {
                Some(d) => {
                    m.insert(TABLES[*b].to_string(), d);
                    true
                }
                None => false,
            }
        }
        Op::Swap(a, b) => {
            let (Some(da), Some(db)) = (m.get(TABLES[*a]).cloned(), m.get(TABLES[*b]).cloned())
            else {
                return false;
            };
            m.insert(TABLES[*a].to_string(), db);
            m.insert(TABLES[*b].to_string(), da);
            true
        }
        Op::Replace(target, source) => {
            let Some(d) = m.get(TABLES[*source]).cloned() else {
                return false;
            };
            if target != source {
                m.remove(TABLES[*source]);
                m.insert(TABLES[*target].to_string(), d);
            }
            true
        }
        Op::Flush | Op::Compact | Op::Reopen => true,
    }
}

/// Runs `op` on the engine (the caller handles `Reopen`); true when it succeeded.
pub fn apply_engine(d: &Database, op: &Op) -> bool {
    let cols = columns();
    match op {
        Op::Append { table, rows } => {
            let keys: Vec<String> = rows.iter().map(|(k, _)| key(*k)).collect();
            let mut arrays = Vec::new();
            for (i, c) in cols.iter().enumerate() {
                let vals: Vec<Option<i64>> = rows.iter().map(|(_, v)| v[i]).collect();
                let col = match c.ty {
                    ColumnType::Timestamp => Col::Ts(vals),
                    ColumnType::Double => {
                        Col::Float(vals.into_iter().map(|v| v.map(|x| x as f64)).collect())
                    }
                    ColumnType::Varchar => Col::Str(
                        vals.into_iter()
                            .map(|v| v.map(|x| format!("s{x:05}")))
                            .collect(),
                    ),
                    _ => Col::Int(vals),
                };
                arrays.push((c.name.as_str(), col));
            }
            d.append(TABLES[*table], &batch("k", &keys, arrays)).is_ok()
        }
        Op::Ingest { table, rows } => {
            let snap = d.snapshot();
            let Ok(t) = snap.table(TABLES[*table]) else {
                return false;
            };
            let keys = snap.keys();
            let ordinals: Vec<u32> = rows
                .iter()
                .map(|(k, _)| {
                    keys.lookup(journeydb_storage::Key::Str(&key(*k)))
                        .expect("every test key is in the dictionary")
                })
                .collect();
            drop(keys);
            let columns = cols
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let valid: Vec<bool> = rows.iter().map(|(_, v)| v[i].is_some()).collect();
                    let vals = rows.iter().filter_map(|(_, v)| v[i]);
                    let values = match c.ty {
                        ColumnType::Double => {
                            journeydb_storage::Values::Float(vals.map(|x| x as f64).collect())
                        }
                        ColumnType::Varchar => journeydb_storage::Values::Str(
                            vals.map(|x| format!("s{x:05}")).collect(),
                        ),
                        _ => journeydb_storage::Values::Int(vals.collect()),
                    };
                    journeydb_storage::wal::BatchColumn {
                        id: journeydb_storage::ColumnId(i as u32),
                        ty: c.ty,
                        valid,
                        values,
                    }
                })
                .collect();
            let rb = journeydb_storage::wal::RowBatch {
                table: t.id(),
                ordinals,
                columns,
            };
            let chunk =
                journeydb_storage::snapshot::Chunk::from_batch(&rb, t.schema(), t.partition_rows());
            d.ingest(TABLES[*table], chunk.parts.into_iter().collect())
                .is_ok()
        }
        Op::Flush => d.flush().is_ok(),
        Op::Compact => d.compact(2).is_ok(),
        Op::Create(t) => d.create_table(TABLES[*t], schema()).is_ok(),
        Op::CreateOrReplace(t) => d
            .commit(&[CatalogOp::CreateOrReplace {
                name: TABLES[*t].into(),
                schema: schema(),
            }])
            .is_ok(),
        Op::Drop(t) => d.drop_table(TABLES[*t]).is_ok(),
        Op::Rename(a, b) => d
            .commit(&[CatalogOp::Rename {
                from: TABLES[*a].into(),
                to: TABLES[*b].into(),
            }])
            .is_ok(),
        Op::Swap(a, b) => d.swap_tables(TABLES[*a], TABLES[*b]).is_ok(),
        Op::Replace(t, s) => d
            .commit(&[CatalogOp::Replace {
                target: TABLES[*t].into(),
                source: TABLES[*s].into(),
            }])
            .is_ok(),
        Op::Reopen => true,
    }
}

/// Every table of a snapshot but the filler, dumped.
pub fn engine_state(snap: &Snapshot) -> Model {
    snap.table_names()
        .into_iter()
        .filter(|n| n != "filler")
        .map(|n| {
            let d = dump(snap, &n);
            (n, d)
        })
        .collect()
}
