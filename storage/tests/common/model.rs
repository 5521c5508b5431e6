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
    /// A temporary table (in memory; a rename publishes it).
    CreateTemp(usize),
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
        2 => (0..3usize).prop_map(Op::CreateTemp),
        1 => (0..3usize).prop_map(Op::Drop),
        1 => (0..3usize, 0..3usize).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (0..3usize, 0..3usize).prop_map(|(a, b)| Op::Swap(a, b)),
        1 => (0..3usize, 0..3usize).prop_map(|(a, b)| Op::Replace(a, b)),
        1 => Just(Op::Reopen),
    ]
}

/// Tables by name; a temporary table's name ends in `*`.
pub type Model = BTreeMap<String, Dump>;

/// The model's name of table `t`, if it exists (`t0` or, temporary, `t0*`).
fn name_of(m: &Model, t: usize) -> Option<String> {
    [TABLES[t].to_string(), format!("{}*", TABLES[t])]
        .into_iter()
        .find(|n| m.contains_key(n))
}

/// What survives a close or a crash: the tables that are not temporary.
pub fn durable(m: &Model) -> Model {
    m.iter()
        .filter(|(n, _)| !n.ends_with('*'))
        .map(|(n, d)| (n.clone(), d.clone()))
        .collect()
}

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
            let Some(t) = name_of(m, *table).and_then(|n| m.get_mut(&n)) else {
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
        Op::Create(t) | Op::CreateTemp(t) => {
            if name_of(m, *t).is_some() {
                return false;
            }
            let star = if matches!(op, Op::CreateTemp(_)) {
                "*"
            } else {
                ""
            };
            m.insert(format!("{}{star}", TABLES[*t]), Dump::new());
            true
        }
        Op::CreateOrReplace(t) => {
            if let Some(n) = name_of(m, *t) {
                m.remove(&n);
            }
            m.insert(TABLES[*t].to_string(), Dump::new());
            true
        }
        Op::Drop(t) => name_of(m, *t).and_then(|n| m.remove(&n)).is_some(),
        Op::Rename(a, b) => {
            // A rename makes a temporary table permanent (also a rename to its own name).
            let Some(na) = name_of(m, *a) else {
                return false;
            };
            if a != b && name_of(m, *b).is_some() {
                return false;
            }
            let d = m.remove(&na).unwrap_or_default();
            m.insert(TABLES[*b].to_string(), d);
            true
        }
        Op::Swap(a, b) => {
            let (Some(na), Some(nb)) = (name_of(m, *a), name_of(m, *b)) else {
                return false;
            };
            if na.ends_with('*') || nb.ends_with('*') {
                return false;
            }
            let (da, db) = (m[&na].clone(), m[&nb].clone());
            m.insert(na, db);
            m.insert(nb, da);
            true
        }
        Op::Replace(target, source) => {
            // The table keeps the source's kind (temporary or not) under the target's name.
            let Some(ns) = name_of(m, *source) else {
                return false;
            };
            if target != source {
                let d = m.remove(&ns).unwrap_or_default();
                if let Some(nt) = name_of(m, *target) {
                    m.remove(&nt);
                }
                let star = if ns.ends_with('*') { "*" } else { "" };
                m.insert(format!("{}{star}", TABLES[*target]), d);
            }
            true
        }
        Op::Reopen => {
            *m = durable(m);
            true
        }
        Op::Flush | Op::Compact => true,
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
        Op::CreateTemp(t) => d
            .commit(&[CatalogOp::CreateTemporary {
                name: TABLES[*t].into(),
                schema: schema(),
                or_replace: false,
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
            let star = if snap.is_temporary(&n) { "*" } else { "" };
            (format!("{n}{star}"), d)
        })
        .collect()
}
