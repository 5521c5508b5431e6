//! The executor: runs a plan partition by partition (in parallel), keeping relations as bitmaps and
//! ordinal-ordered columns until the end, where only the rows returned have their keys decoded.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, NullArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use journeydb_storage::keydict::KeyDict;
use journeydb_storage::values::{merge_columns, ValueGroups};
use journeydb_storage::{
    ColumnData, ColumnId, ColumnType, GroupsWhen, Key, MergeRule, PartitionId, Snapshot, Values,
};
use roaring::RoaringBitmap;

use crate::agg::values_from_groups;
use crate::error::{QueryError, Result};
use crate::plan::{Agg, Expr, Load, Plan, QueryPlan, RelCol, Sample, SetKind};
use crate::types::{DType, Scalar};
use crate::vector::{
    and, arith, compare, in_list, is_null, negate, not, or, restrict, CmpOp, Vector,
};

/// The rows of a relation in one partition: which ordinals, and each column's values.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// Ordinals with a row.
    pub rows: RoaringBitmap,
    /// Per relation column: its values (`None` for the key column and for columns not read).
    pub cols: Vec<Option<ColumnData>>,
    /// Per relation column read as [`crate::plan::Load::Groups`]: the ordinals of each distinct
    /// value, with `cols` then holding the presence only. Bitmaps may reach beyond `rows` (a
    /// filter or join does not cut them); users intersect them with `rows`. Empty: none.
    pub groups: Vec<Option<Arc<ValueGroups>>>,
}

impl Frame {
    /// A frame of `rows` and `cols`, without value groups.
    pub fn new(rows: RoaringBitmap, cols: Vec<Option<ColumnData>>) -> Frame {
        Frame {
            rows,
            cols,
            groups: Vec::new(),
        }
    }

    /// The value groups of column `i`, if it was read as groups.
    pub fn groups_of(&self, i: usize) -> Option<&Arc<ValueGroups>> {
        self.groups.get(i).and_then(|g| g.as_ref())
    }
}

/// A relation: columns and, per partition, one frame (a keyed relation) or several (a bag, from UNION
/// ALL; a key may then have several rows).
#[derive(Debug, Clone, Default)]
pub struct Relation {
    /// Output columns.
    pub cols: Vec<RelCol>,
    /// Frames per partition, ascending.
    pub parts: BTreeMap<PartitionId, Vec<Frame>>,
}

impl Relation {
    /// True when no key has more than one row (one frame per partition).
    pub fn is_keyed(&self) -> bool {
        self.parts.values().all(|f| f.len() <= 1)
    }

    /// Number of rows.
    pub fn row_count(&self) -> u64 {
        self.parts.values().flatten().map(|f| f.rows.len()).sum()
    }
}

/// Runs `f` over `items` on the process's worker pool ([`journeydb_storage::workers`]), keeping
/// order. Each item runs under the statement's cancel flag, memory budget and meter (which adds
/// the worker's CPU time); an item that panicked is an internal error.
pub fn par_map<I: Sync, T: Send>(
    items: &[I],
    f: impl Fn(&I) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    if items.len() <= 1 || journeydb_storage::workers::threads() <= 1 {
        return items
            .iter()
            .map(|i| crate::cancel::check().and_then(|()| f(i)))
            .collect();
    }
    let flag = crate::cancel::current();
    let budget = crate::budget::current();
    let meter = crate::meter::current();
    journeydb_storage::workers::map(items, |item| {
        crate::meter::in_worker(meter.clone(), || {
            crate::budget::with_budget(budget.clone(), || {
                crate::cancel::with_flag(flag.clone(), || {
                    crate::cancel::check().and_then(|()| f(item))
                })
            })
        })
    })
    .into_iter()
    .map(|r| r.unwrap_or_else(|_| Err(QueryError::Internal("a worker thread panicked".into()))))
    .collect()
}

/// Evaluates a constant expression.
pub fn eval_scalar(e: &Expr) -> Result<Scalar> {
    let frame = Frame::new([0].into_iter().collect(), Vec::new());
    let ctx = EvalCtx {
        cols: &[],
        keys: None,
    };
    match eval(e, &frame, &ctx)? {
        Vector::Const(s) => Ok(s),
        Vector::Bool { t, n } => Ok(if !n.is_empty() {
            Scalar::Null
        } else {
            Scalar::Bool(!t.is_empty())
        }),
        Vector::Col(..) => Err(QueryError::InvalidValue("expected a constant".into())),
    }
}

pub(crate) struct EvalCtx<'a> {
    pub(crate) cols: &'a [RelCol],
    pub(crate) keys: Option<&'a KeyDict>,
}

pub(crate) fn decode_keys(keys: &KeyDict, ords: &RoaringBitmap) -> Result<Values> {
    let missing = |o: u32| QueryError::Internal(format!("ordinal {o} has no key"));
    Ok(match keys.key_type() {
        journeydb_storage::KeyType::Varchar => Values::Str(
            ords.iter()
                .map(|o| match keys.key(o) {
                    Some(Key::Str(s)) => Ok(s.to_string()),
                    _ => Err(missing(o)),
                })
                .collect::<Result<_>>()?,
        ),
        journeydb_storage::KeyType::Bigint => Values::Int(
            ords.iter()
                .map(|o| match keys.key(o) {
                    Some(Key::Int(v)) => Ok(v),
                    _ => Err(missing(o)),
                })
                .collect::<Result<_>>()?,
        ),
    })
}

#[recursive::recursive]
pub(crate) fn eval<'a>(e: &Expr, f: &'a Frame, ctx: &EvalCtx<'_>) -> Result<Vector<'a>> {
    let rows = &f.rows;
    if !f.groups.is_empty() {
        if let Some(v) = by_value_groups(e, f, ctx)? {
            return Ok(v);
        }
    }
    Ok(match e {
        Expr::Col(i) => {
            let col = ctx
                .cols
                .get(*i)
                .ok_or_else(|| QueryError::Internal(format!("column #{i}")))?;
            if let Some(g) = f.groups_of(*i) {
                // Read as value groups but needed as values here (beside another column, or
                // computed on): the values are laid out from the groups.
                Vector::Col(Cow::Owned(values_from_groups(g, rows)), col.dtype)
            } else if col.is_key {
                let keys = ctx
                    .keys
                    .ok_or_else(|| QueryError::Internal("keys unavailable".into()))?;
                Vector::Col(
                    Cow::Owned(ColumnData {
                        presence: rows.clone(),
                        values: decode_keys(keys, rows)?,
                    }),
                    col.dtype,
                )
            } else {
                match f.cols.get(*i).and_then(|c| c.as_ref()) {
                    Some(c) => Vector::Col(Cow::Borrowed(c), col.dtype),
                    None if col.dtype == DType::Null => Vector::Const(Scalar::Null),
                    None => {
                        return Err(QueryError::Internal(format!(
                            "column {} was not read",
                            col.name
                        )))
                    }
                }
            }
        }
        Expr::Lit(s) => Vector::Const(s.clone()),
        Expr::Cmp(op, a, b) => compare(*op, eval(a, f, ctx)?, eval(b, f, ctx)?, rows)?,
        Expr::Arith(op, a, b, t) => arith(*op, eval(a, f, ctx)?, eval(b, f, ctx)?, *t, rows)?,
        Expr::And(a, b) => and(eval(a, f, ctx)?, eval(b, f, ctx)?, rows)?,
        Expr::Or(a, b) => or(eval(a, f, ctx)?, eval(b, f, ctx)?, rows)?,
        Expr::Not(a) => not(eval(a, f, ctx)?, rows)?,
        Expr::Neg(a) => negate(eval(a, f, ctx)?)?,
        Expr::IsNull(a, negated) => match a.as_ref() {
            // The presence answers; a column read as value groups is not laid out as values.
            Expr::Col(i) if f.groups_of(*i).is_some() => match f.cols.get(*i) {
                Some(Some(c)) => {
                    let dtype = ctx.cols.get(*i).map_or(DType::Null, |c| c.dtype);
                    is_null(Vector::Col(Cow::Borrowed(c), dtype), rows, *negated)?
                }
                _ => return Err(QueryError::Internal(format!("column #{i} was not read"))),
            },
            _ => is_null(eval(a, f, ctx)?, rows, *negated)?,
        },
        Expr::InList(a, set) => in_list(eval(a, f, ctx)?, set, rows)?,
        Expr::Func(func, args, out) => {
            let vals = args
                .iter()
                .map(|a| eval(a, f, ctx))
                .collect::<Result<Vec<_>>>()?;
            let types = args
                .iter()
                .map(|a| crate::plan::expr_type(a, ctx.cols))
                .collect::<Result<Vec<_>>>()?;
            crate::func::eval_func(func, vals, &types, *out, rows)?
        }
        Expr::Filtered(a, c) => {
            let (t, _) = eval(c, f, ctx)?.into_bool(rows)?;
            let v = eval(a, f, ctx)?;
            let dtype = v.dtype();
            let col = v.into_column(rows)?;
            Vector::Col(Cow::Owned(crate::vector::restrict(&col, &t)), dtype)
        }
    })
}

/// A condition evaluated from value groups (see [`Load::Groups`]) instead of values, when `f` holds
/// its column(s) as groups: a condition on one column (`country IN (..)`, `stage1 + INTERVAL '3 days'
/// <= c`) is evaluated once per distinct value, and each value's bitmap answers for its rows; an
/// order comparison of two integer or timestamp columns (`a < b`) is answered by bitmap operations
/// over the groups sorted by value. No value of the rows is decoded. `None`: evaluate as usual.
fn by_value_groups<'a>(e: &Expr, f: &Frame, ctx: &EvalCtx<'_>) -> Result<Option<Vector<'a>>> {
    match e {
        Expr::Cmp(op, a, b) => {
            if let (Expr::Col(x), Expr::Col(y)) = (a.as_ref(), b.as_ref()) {
                return by_group_pair(*op, (*x, *y), f, ctx);
            }
        }
        Expr::IsNull(a, _) if matches!(a.as_ref(), Expr::Col(_)) => return Ok(None),
        Expr::InList(..) | Expr::And(..) | Expr::Or(..) | Expr::Not(_) | Expr::IsNull(..) => {}
        Expr::Func(_, _, DType::Boolean) => {}
        _ => return Ok(None),
    }
    let Some(i) = crate::plan::one_column(e) else {
        return Ok(None);
    };
    let (Some(g), Some(Some(col))) = (f.groups_of(i), f.cols.get(i)) else {
        return Ok(None);
    };
    let rows = &f.rows;
    // Only the values some row of the frame holds: a value filtered out before must not make the
    // condition fail (an overflow, say) where evaluating the rows would not.
    let live: Vec<bool> = g.bitmaps.iter().map(|b| !b.is_disjoint(rows)).collect();
    let keys = crate::vector::select(&g.keys, &live);
    let ids: Vec<usize> = (0..live.len())
        .filter(|j| live.get(*j) == Some(&true))
        .collect();
    // Ordinal j < k holds the j-th live value, ordinal k a NULL (the rows without a value).
    let k = ids.len() as u32;
    let mut cols: Vec<Option<ColumnData>> = vec![None; f.cols.len()];
    if let Some(slot) = cols.get_mut(i) {
        *slot = Some(ColumnData {
            presence: (0..k).collect(),
            values: keys,
        });
    }
    let per_value = Frame::new((0..=k).collect(), cols);
    let (kt, kn) = eval(e, &per_value, ctx)?.into_bool(&per_value.rows)?;
    let rows_of = |which: &RoaringBitmap| {
        let mut out = RoaringBitmap::new();
        for j in which {
            if j == k {
                out |= rows - &col.presence;
            } else if let Some(b) = ids.get(j as usize).and_then(|g_at| g.bitmaps.get(*g_at)) {
                out |= b;
            }
        }
        out &= rows;
        out
    };
    Ok(Some(Vector::Bool {
        t: rows_of(&kt),
        n: rows_of(&kn),
    }))
}

/// `a op b` for two columns held as value groups of integers or timestamps, by bitmap operations
/// over the groups in value order. For `a < b`: a sweep over `b`'s values in ascending order keeps
/// `S`, the union of the groups of `a` below the current value `v`, and adds `B_v ∩ S` to the
/// result: one union per group of `a` and two operations per group of `b`, whatever the number of
/// rows. `=` and `<>` pair each group with the equal group of the other column.
fn by_group_pair<'a>(
    op: CmpOp,
    (x, y): (usize, usize),
    f: &Frame,
    ctx: &EvalCtx<'_>,
) -> Result<Option<Vector<'a>>> {
    let (Some(ga), Some(gb)) = (f.groups_of(x), f.groups_of(y)) else {
        return Ok(None);
    };
    let (Values::Int(ka), Values::Int(kb)) = (&ga.keys, &gb.keys) else {
        return Ok(None);
    };
    let (Some(Some(ca)), Some(Some(cb))) = (f.cols.get(x), f.cols.get(y)) else {
        return Ok(None);
    };
    let (Some(ta), Some(tb)) = (ctx.cols.get(x), ctx.cols.get(y)) else {
        return Ok(None);
    };
    if ta.dtype != tb.dtype || !matches!(ta.dtype, DType::Timestamp | DType::Bigint) {
        return Ok(None);
    }
    let rows = &f.rows;
    let mut both = rows & &ca.presence;
    both &= &cb.presence;
    let n = rows - &both;
    // Each column's groups as (value, bitmap), in ascending value order.
    fn sorted<'g>(keys: &[i64], bitmaps: &'g [RoaringBitmap]) -> Vec<(i64, &'g RoaringBitmap)> {
        let mut v: Vec<(i64, &RoaringBitmap)> = keys.iter().copied().zip(bitmaps.iter()).collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    }
    let (sa, sb) = (sorted(ka, &ga.bitmaps), sorted(kb, &gb.bitmaps));
    let mut t = RoaringBitmap::new();
    match op {
        CmpOp::Eq | CmpOp::NotEq => {
            let mut eq = RoaringBitmap::new();
            let mut at = 0;
            for (v, a_rows) in &sa {
                while sb.get(at).is_some_and(|(w, _)| w < v) {
                    at += 1;
                }
                if let Some((w, b_rows)) = sb.get(at) {
                    if w == v {
                        eq |= &(*a_rows & *b_rows);
                    }
                }
            }
            eq &= &both;
            t = if op == CmpOp::Eq { eq } else { &both - &eq };
        }
        _ => {
            // Sweep the `outer` column's values; `inner` groups join `below` once their value is
            // below (`strict`) or at most the current one.
            let (outer, inner, strict) = match op {
                CmpOp::Lt => (&sb, &sa, true),
                CmpOp::LtEq => (&sb, &sa, false),
                CmpOp::Gt => (&sa, &sb, true),
                _ => (&sa, &sb, false),
            };
            let mut below = RoaringBitmap::new();
            let mut at = 0;
            for (v, o_rows) in outer {
                while let Some((w, i_rows)) = inner.get(at) {
                    if (strict && w >= v) || (!strict && w > v) {
                        break;
                    }
                    below |= *i_rows;
                    at += 1;
                }
                if !below.is_empty() {
                    t |= &(*o_rows & &below);
                }
            }
            t &= &both;
        }
    }
    Ok(Some(Vector::Bool { t, n }))
}

/// Keeps ordinal `o` with probability `percent`%, deterministically for `seed`.
fn sampled(seed: u64, o: u32, threshold: u64) -> bool {
    let mut z = seed ^ (o as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) < threshold
}

fn sample_rows(rows: &RoaringBitmap, s: Sample) -> RoaringBitmap {
    if s.percent >= 100.0 {
        return rows.clone();
    }
    let threshold = (s.percent / 100.0 * u64::MAX as f64) as u64;
    RoaringBitmap::from_sorted_iter(rows.iter().filter(|o| sampled(s.seed, *o, threshold)))
        .unwrap_or_default()
}

/// Executes a plan into a relation, within the statement's memory budget (see [`crate::budget`]).
pub fn execute(plan: &Plan, snap: &Snapshot) -> Result<Relation> {
    let mark = crate::budget::mark();
    let rel = execute_node(plan, snap)?;
    // The relation's size serves both the budget and a scan's meter: measured once.
    let budgeted = crate::budget::current().is_some();
    let metered_scan = matches!(plan, Plan::Scan { .. }) && crate::meter::active();
    if budgeted || metered_scan {
        let bytes = crate::budget::relation_bytes(&rel);
        if let (true, Plan::Scan { table, load, .. }) = (metered_scan, plan) {
            let stored: u64 = table.storage().iter().map(|s| s.size_bytes).sum();
            let loaded = load.iter().filter(|l| !matches!(l, Load::No)).count() as u64;
            let ncols = load.len() as u64;
            crate::meter::scanned(
                table.row_count(),
                stored * (loaded + 1) / (ncols + 1),
                bytes,
            );
        }
        if budgeted {
            crate::budget::settle(mark, bytes)?;
        }
    }
    Ok(rel)
}

/// One partition of a table, each column read as its [`Load`] says.
fn scan_partition(
    table: &journeydb_storage::TableSnapshot,
    load: &[Load],
    p: PartitionId,
) -> Result<Frame> {
    let id = |i: usize| ColumnId(i as u32);
    let ty = |i: usize| {
        table
            .schema()
            .columns
            .get(i)
            .map_or(ColumnType::Bigint, |c| c.ty)
    };
    // Columns compared with each other are read as groups only if all of them have groups in
    // this partition: a grouped column compared with one read as values would be laid out as
    // values again, which costs more than decoding it.
    let mut paired = Vec::new();
    for (i, l) in load.iter().enumerate() {
        if *l == Load::GroupsPaired {
            paired.push((i, table.value_groups(p, id(i), GroupsWhen::Reused)?));
        }
    }
    let paired_grouped = paired.iter().all(|(_, g)| g.is_some());
    let mut fc = vec![None];
    let mut groups = Vec::new();
    for (i, l) in load.iter().enumerate() {
        // Only the bitmap: no value is decoded, and no operator above reads one.
        let presence_only = || -> Result<ColumnData> {
            Ok(ColumnData {
                presence: table.presence(p, id(i))?,
                values: Values::empty(ty(i)),
            })
        };
        let g = match l {
            Load::No | Load::Values | Load::Presence => None,
            Load::Groups => table.value_groups(p, id(i), GroupsWhen::Now)?,
            Load::GroupsIfReused => table.value_groups(p, id(i), GroupsWhen::Reused)?,
            Load::GroupsPaired if paired_grouped => paired
                .iter()
                .find(|(j, _)| *j == i)
                .and_then(|(_, g)| g.clone()),
            Load::GroupsPaired => None,
        };
        fc.push(match (l, g) {
            (Load::No, _) => None,
            (Load::Presence, _) => Some(presence_only()?),
            (_, Some(g)) => {
                groups.resize(i + 2, None);
                if let Some(slot) = groups.get_mut(i + 1) {
                    *slot = Some(g);
                }
                Some(presence_only()?)
            }
            (_, None) => Some(table.column(p, id(i))?),
        });
    }
    Ok(Frame {
        rows: table.rows(p),
        cols: fc,
        groups,
    })
}

/// Executes one operator (its inputs through [`execute`]).
#[recursive::recursive]
// long: one arm per plan operator; each arm is short.
fn execute_node(plan: &Plan, snap: &Snapshot) -> Result<Relation> {
    match plan {
        Plan::Scan { table, load, cols } => {
            let parts = table.partitions();
            let frames = par_map(&parts, |p| scan_partition(table, load, *p))?;
            Ok(Relation {
                cols: cols.clone(),
                parts: parts
                    .into_iter()
                    .zip(frames)
                    .map(|(p, f)| (p, vec![f]))
                    .collect(),
            })
        }
        Plan::Sample { input, sample } => {
            let rel = execute(input, snap)?;
            map_frames(rel, snap, |f, _| {
                let rows = sample_rows(&f.rows, *sample);
                let cols = f
                    .cols
                    .iter()
                    .map(|c| c.as_ref().map(|c| restrict(c, &rows)))
                    .collect();
                Ok(Frame {
                    rows,
                    cols,
                    groups: f.groups.clone(),
                })
            })
        }
        Plan::Filter {
            input,
            predicate,
            keep,
        } => {
            let rel = execute(input, snap)?;
            map_frames(rel, snap, |f, ctx| {
                let (t, _) = eval(predicate, f, ctx)?.into_bool(&f.rows)?;
                let cols = f
                    .cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| match keep {
                        Some(k) if !k.get(i).copied().unwrap_or(true) => None,
                        _ => c.as_ref().map(|c| restrict(c, &t)),
                    })
                    .collect();
                Ok(Frame {
                    rows: t,
                    cols,
                    groups: f.groups.clone(),
                })
            })
        }
        Plan::Project { input, exprs } => {
            let rel = execute(input, snap)?;
            if let Some(cols) = renaming(exprs, &rel.cols) {
                return Ok(rename(rel, &cols, exprs));
            }
            let mut out = map_frames(rel, snap, |f, ctx| {
                let mut cols = Vec::with_capacity(exprs.len());
                // A column passed through keeps its value groups.
                let groups: Vec<Option<Arc<ValueGroups>>> = exprs
                    .iter()
                    .map(|(e, _)| match e {
                        Expr::Col(i) => f.groups_of(*i).cloned(),
                        _ => None,
                    })
                    .collect();
                for (e, c) in exprs {
                    cols.push(match e {
                        _ if c.is_key => None,
                        // A renamed column passes through; one no operator reads stays unread.
                        Expr::Col(i) => match f.cols.get(*i) {
                            Some(Some(col)) => Some(col.clone()),
                            _ if ctx.cols.get(*i).is_some_and(|c| c.is_key) => {
                                Some(eval(e, f, ctx)?.into_column(&f.rows)?)
                            }
                            _ => None,
                        },
                        _ => Some(eval(e, f, ctx)?.into_column(&f.rows)?),
                    });
                }
                Ok(Frame {
                    rows: f.rows.clone(),
                    cols,
                    groups,
                })
            })?;
            out.cols = exprs.iter().map(|(_, c)| c.clone()).collect();
            Ok(out)
        }
        Plan::Aggregate {
            input,
            by_key,
            groups,
            items,
        } => {
            if !*by_key && groups.is_empty() {
                if let Some(rel) = crate::agg::from_footers(input, items) {
                    return Ok(rel);
                }
            }
            let rel = execute(input, snap)?;
            if *by_key {
                aggregate_by_key(rel, items, snap)
            } else {
                crate::agg::aggregate(rel, groups, items, snap)
            }
        }
        Plan::SetOp { kind, left, right } => {
            let l = execute(left, snap)?;
            let r = execute(right, snap)?;
            let mut parts = BTreeMap::new();
            let keys: std::collections::BTreeSet<PartitionId> =
                l.parts.keys().chain(r.parts.keys()).copied().collect();
            for p in keys {
                let lr = union_rows(l.parts.get(&p));
                let rr = union_rows(r.parts.get(&p));
                let rows = match kind {
                    SetKind::Union => lr | rr,
                    SetKind::Intersect => lr & rr,
                    SetKind::Except => lr - rr,
                };
                if !rows.is_empty() {
                    parts.insert(p, vec![Frame::new(rows, vec![None])]);
                }
            }
            Ok(Relation {
                cols: l.cols,
                parts,
            })
        }
        Plan::Join {
            kind,
            left,
            right,
            partial_keys,
        } => {
            let l = execute(left, snap)?;
            let r = execute(right, snap)?;
            crate::join::join(l, r, *kind, partial_keys, snap)
        }
        Plan::UnionAll { left, right } => {
            let mut l = execute(left, snap)?;
            let r = execute(right, snap)?;
            for (c, rc) in l.cols.iter_mut().zip(&r.cols) {
                if c.dtype == DType::Null {
                    c.dtype = rc.dtype;
                }
            }
            for (p, frames) in r.parts {
                l.parts.entry(p).or_default().extend(frames);
            }
            Ok(l)
        }
        Plan::Distinct { input } => {
            let rel = execute(input, snap)?;
            let parts = rel
                .parts
                .iter()
                .map(|(p, fs)| (*p, vec![Frame::new(union_rows(Some(fs)), vec![None])]))
                .collect();
            Ok(Relation {
                cols: rel.cols,
                parts,
            })
        }
        Plan::Rel { rel, .. } => Ok((**rel).clone()),
        Plan::System { name, .. } => Err(QueryError::Unsupported(format!(
            "{name} inside a subquery or set operation"
        ))),
    }
}

/// The input column of each output when a projection only renames, reorders or drops columns
/// (a join side's qualified names): then the columns move instead of being copied.
fn renaming(exprs: &[(Expr, RelCol)], in_cols: &[RelCol]) -> Option<Vec<usize>> {
    let idx: Vec<usize> = exprs
        .iter()
        .map(|(e, c)| match e {
            Expr::Col(i) if in_cols.get(*i).is_some_and(|ic| ic.is_key == c.is_key) => Some(*i),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let mut seen = vec![false; in_cols.len()];
    for i in &idx {
        match seen.get_mut(*i) {
            Some(s) if !*s => *s = true,
            _ => return None,
        }
    }
    Some(idx)
}

fn rename(rel: Relation, idx: &[usize], exprs: &[(Expr, RelCol)]) -> Relation {
    let parts = rel
        .parts
        .into_iter()
        .map(|(p, frames)| {
            let frames = frames
                .into_iter()
                .map(|mut f| Frame {
                    cols: idx
                        .iter()
                        .map(|i| f.cols.get_mut(*i).and_then(Option::take))
                        .collect(),
                    groups: idx.iter().map(|i| f.groups_of(*i).cloned()).collect(),
                    rows: f.rows,
                })
                .collect();
            (p, frames)
        })
        .collect();
    Relation {
        cols: exprs.iter().map(|(_, c)| c.clone()).collect(),
        parts,
    }
}

fn union_rows(frames: Option<&Vec<Frame>>) -> RoaringBitmap {
    let mut r = RoaringBitmap::new();
    for f in frames.into_iter().flatten() {
        r |= &f.rows;
    }
    r
}

/// Applies `f` to every frame, in parallel over partitions.
fn map_frames(
    rel: Relation,
    snap: &Snapshot,
    f: impl Fn(&Frame, &EvalCtx<'_>) -> Result<Frame> + Sync,
) -> Result<Relation> {
    let parts: Vec<(PartitionId, Vec<Frame>)> = rel.parts.into_iter().collect();
    let cols = rel.cols;
    let out = par_map(&parts, |(p, frames)| {
        let keys = snap.keys();
        let ctx = EvalCtx {
            cols: &cols,
            keys: Some(&keys),
        };
        let fs = frames
            .iter()
            .map(|fr| f(fr, &ctx))
            .collect::<Result<Vec<_>>>()?;
        Ok((*p, fs))
    })?;
    Ok(Relation {
        cols,
        parts: out.into_iter().collect(),
    })
}

fn rule_type(t: DType) -> Result<ColumnType> {
    t.column_type()
        .ok_or_else(|| QueryError::Type(format!("MIN / MAX of {}", t.name())))
}

/// Counts, per ordinal of `rows`, how many of `sets` contain it.
fn count_per_row(rows: &RoaringBitmap, sets: &[RoaringBitmap]) -> Values {
    if let [one] = sets {
        return Values::Int(rows.iter().map(|o| i64::from(one.contains(o))).collect());
    }
    let (Some(lo), Some(hi)) = (rows.min(), rows.max()) else {
        return Values::Int(Vec::new());
    };
    let mut counts = vec![0i64; (hi - lo) as usize + 1];
    for s in sets {
        for o in s.iter() {
            if let Some(c) = counts.get_mut((o - lo) as usize) {
                *c += 1;
            }
        }
    }
    Values::Int(
        rows.iter()
            .map(|o| counts.get((o - lo) as usize).copied().unwrap_or(0))
            .collect(),
    )
}

fn present(v: &Vector<'_>, rows: &RoaringBitmap) -> RoaringBitmap {
    match v {
        Vector::Const(Scalar::Null) => RoaringBitmap::new(),
        Vector::Const(_) => rows.clone(),
        Vector::Col(c, _) => c.presence.clone(),
        Vector::Bool { n, .. } => rows - n,
    }
}

fn aggregate_by_key(rel: Relation, items: &[(Agg, RelCol)], snap: &Snapshot) -> Result<Relation> {
    let parts: Vec<(PartitionId, Vec<Frame>)> = rel.parts.into_iter().collect();
    let in_cols = rel.cols;
    let out = par_map(&parts, |(p, frames)| {
        let keys = snap.keys();
        let ctx = EvalCtx {
            cols: &in_cols,
            keys: Some(&keys),
        };
        let rows = union_rows(Some(frames));
        let mut cols = Vec::with_capacity(items.len());
        for (agg, col) in items {
            cols.push(match agg {
                Agg::Key => None,
                Agg::Group(_)
                | Agg::Sum(_)
                | Agg::Avg(_)
                | Agg::CountDistinct(_)
                | Agg::BoolAnd(_)
                | Agg::BoolOr(_)
                | Agg::Quantile(..) => {
                    return Err(QueryError::Internal(
                        "a general aggregate in the per-key path".into(),
                    ))
                }
                Agg::CountStar => {
                    let sets: Vec<RoaringBitmap> = frames.iter().map(|f| f.rows.clone()).collect();
                    Some(ColumnData {
                        presence: rows.clone(),
                        values: count_per_row(&rows, &sets),
                    })
                }
                Agg::Count(e) => {
                    let sets = frames
                        .iter()
                        .map(|f| Ok(present(&eval(e, f, &ctx)?, &f.rows)))
                        .collect::<Result<Vec<_>>>()?;
                    Some(ColumnData {
                        presence: rows.clone(),
                        values: count_per_row(&rows, &sets),
                    })
                }
                Agg::Min(e) | Agg::Max(e) => {
                    if col.dtype == DType::Null {
                        Some(ColumnData {
                            presence: RoaringBitmap::new(),
                            values: Values::Int(Vec::new()),
                        })
                    } else {
                        let rule = if matches!(agg, Agg::Min(_)) {
                            MergeRule::Min
                        } else {
                            MergeRule::Max
                        };
                        let data = frames
                            .iter()
                            .map(|f| eval(e, f, &ctx)?.into_column(&f.rows))
                            .collect::<Result<Vec<_>>>()?;
                        let refs: Vec<&ColumnData> =
                            data.iter().filter(|d| !d.presence.is_empty()).collect();
                        Some(merge_columns(rule, rule_type(col.dtype)?, &refs))
                    }
                }
            });
        }
        Ok((*p, vec![Frame::new(rows, cols)]))
    })?;
    Ok(Relation {
        cols: items.iter().map(|(_, c)| c.clone()).collect(),
        parts: out
            .into_iter()
            .filter(|(_, f)| f.iter().any(|f| !f.rows.is_empty()))
            .collect(),
    })
}

pub(crate) fn fold_scalar(acc: &mut Option<Scalar>, v: Scalar, min: bool) {
    let better = match (&*acc, &v) {
        (None, _) => true,
        (Some(Scalar::Int(a)), Scalar::Int(b)) | (Some(Scalar::Ts(a)), Scalar::Ts(b)) => {
            if min {
                b < a
            } else {
                b > a
            }
        }
        (Some(Scalar::Float(a)), Scalar::Float(b)) => {
            if min {
                b.total_cmp(a).is_lt()
            } else {
                b.total_cmp(a).is_gt()
            }
        }
        (Some(Scalar::Bool(a)), Scalar::Bool(b)) => {
            if min {
                b < a
            } else {
                b > a
            }
        }
        (Some(Scalar::Str(a)), Scalar::Str(b)) => {
            if min {
                b < a
            } else {
                b > a
            }
        }
        _ => false,
    };
    if better {
        *acc = Some(v);
    }
}

pub(crate) fn extreme(c: &ColumnData, dtype: DType, min: bool) -> Option<Scalar> {
    let mut acc = None;
    match &c.values {
        Values::Int(v) => {
            let x = if min { v.iter().min() } else { v.iter().max() };
            x.map(|x| {
                if dtype == DType::Timestamp {
                    Scalar::Ts(*x)
                } else {
                    Scalar::Int(*x)
                }
            })
        }
        Values::Float(v) => {
            let x = if min {
                v.iter().copied().min_by(f64::total_cmp)
            } else {
                v.iter().copied().max_by(f64::total_cmp)
            };
            x.map(Scalar::Float)
        }
        Values::Bool(v) => {
            for b in v {
                fold_scalar(&mut acc, Scalar::Bool(*b), min);
            }
            acc
        }
        Values::Str(v) => {
            let x = if min { v.iter().min() } else { v.iter().max() };
            x.map(|s| Scalar::Str(s.clone()))
        }
    }
}

/// The Arrow type of a column of the output.
pub fn arrow_type(t: DType) -> DataType {
    match t {
        DType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        DType::Bigint => DataType::Int64,
        DType::Double => DataType::Float64,
        DType::Boolean => DataType::Boolean,
        DType::Varchar => DataType::Utf8,
        DType::Interval => DataType::Interval(arrow_schema::IntervalUnit::MonthDayNano),
        DType::Null => DataType::Null,
    }
}

/// An interval of `micros` as Arrow's (months, days, nanoseconds), with days and time split as
/// DuckDB splits the difference of two timestamps.
pub fn interval_value(micros: i64) -> arrow_array::types::IntervalMonthDayNano {
    let day = crate::types::US_PER_DAY;
    arrow_array::types::IntervalMonthDayNano::new(
        0,
        (micros / day) as i32,
        (micros % day).saturating_mul(1000),
    )
}

enum Builder {
    Ts(TimestampMicrosecondBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
    Interval(arrow_array::builder::IntervalMonthDayNanoBuilder),
    Null(usize),
}

impl Builder {
    fn new(t: DType) -> Builder {
        match t {
            DType::Timestamp => Builder::Ts(TimestampMicrosecondBuilder::new()),
            DType::Bigint => Builder::Int(Int64Builder::new()),
            DType::Double => Builder::Float(Float64Builder::new()),
            DType::Boolean => Builder::Bool(BooleanBuilder::new()),
            DType::Varchar => Builder::Str(StringBuilder::new()),
            DType::Interval => {
                Builder::Interval(arrow_array::builder::IntervalMonthDayNanoBuilder::new())
            }
            DType::Null => Builder::Null(0),
        }
    }

    fn push(&mut self, v: Option<(&Values, usize)>) {
        match (self, v) {
            (Builder::Null(n), _) => *n += 1,
            (Builder::Ts(b), Some((Values::Int(x), i))) => b.append_option(x.get(i).copied()),
            (Builder::Int(b), Some((Values::Int(x), i))) => b.append_option(x.get(i).copied()),
            (Builder::Float(b), Some((Values::Float(x), i))) => b.append_option(x.get(i).copied()),
            (Builder::Bool(b), Some((Values::Bool(x), i))) => b.append_option(x.get(i).copied()),
            (Builder::Str(b), Some((Values::Str(x), i))) => b.append_option(x.get(i)),
            (Builder::Interval(b), Some((Values::Int(x), i))) => {
                b.append_option(x.get(i).map(|v| interval_value(*v)))
            }
            (Builder::Interval(b), _) => b.append_null(),
            (Builder::Ts(b), _) => b.append_null(),
            (Builder::Int(b), _) => b.append_null(),
            (Builder::Float(b), _) => b.append_null(),
            (Builder::Bool(b), _) => b.append_null(),
            (Builder::Str(b), _) => b.append_null(),
        }
    }

    /// Appends the keys of `ords`, copied from the key dictionary straight into the array (no
    /// string allocated per key).
    fn push_keys(&mut self, keys: &KeyDict, ords: &[u32]) -> Result<()> {
        let missing = |o: u32| QueryError::Internal(format!("ordinal {o} has no key"));
        match self {
            Builder::Str(b) => {
                for &o in ords {
                    match keys.key(o) {
                        Some(Key::Str(s)) => b.append_value(s),
                        _ => return Err(missing(o)),
                    }
                }
            }
            Builder::Int(b) => {
                for &o in ords {
                    match keys.key(o) {
                        Some(Key::Int(v)) => b.append_value(v),
                        _ => return Err(missing(o)),
                    }
                }
            }
            _ => {
                return Err(QueryError::Internal(
                    "a key column of a non-key type".into(),
                ))
            }
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Ts(mut b) => Arc::new(b.finish()),
            Builder::Int(mut b) => Arc::new(b.finish()),
            Builder::Float(mut b) => Arc::new(b.finish()),
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Str(mut b) => Arc::new(b.finish()),
            Builder::Interval(mut b) => Arc::new(b.finish()),
            Builder::Null(n) => Arc::new(NullArray::new(n)),
        }
    }
}

/// The Arrow schema of a relation's output.
pub fn output_schema(cols: &[RelCol]) -> Arc<Schema> {
    Arc::new(Schema::new(
        cols.iter()
            .map(|c| Field::new(&c.name, arrow_type(c.dtype), true))
            .collect::<Vec<_>>(),
    ))
}

/// Materializes up to `max_rows` rows of a relation (ordinal order) as Arrow, decoding keys only for
/// those rows.
pub fn to_batch(rel: &Relation, snap: &Snapshot, max_rows: Option<usize>) -> Result<RecordBatch> {
    let mut left = max_rows.unwrap_or(usize::MAX);
    let all: Vec<usize> = (0..rel.cols.len()).collect();
    lay_out(rel, snap, &all, |_, f| {
        let ords: Vec<u32> = f.rows.iter().take(left).collect();
        left -= ords.len();
        ords
    })
}

/// Columns `which` of a relation as Arrow: frame by frame (partition order, then the frames of a
/// bag), the rows `rows_of(frame number, frame)` names (ascending ordinals of that frame), keys
/// decoded only for those rows.
fn lay_out(
    rel: &Relation,
    snap: &Snapshot,
    which: &[usize],
    mut rows_of: impl FnMut(usize, &Frame) -> Vec<u32>,
) -> Result<RecordBatch> {
    let keys = snap.keys();
    let cols: Vec<(usize, &RelCol)> = which
        .iter()
        .filter_map(|i| rel.cols.get(*i).map(|c| (*i, c)))
        .collect();
    let mut builders: Vec<Builder> = cols.iter().map(|(_, c)| Builder::new(c.dtype)).collect();
    for (n, f) in rel.parts.values().flatten().enumerate() {
        let ords = rows_of(n, f);
        if ords.is_empty() {
            continue;
        }
        for (b, (i, c)) in builders.iter_mut().zip(&cols) {
            if c.is_key {
                b.push_keys(&keys, &ords)?;
                continue;
            }
            let Some(Some(col)) = f.cols.get(*i) else {
                ords.iter().for_each(|_| b.push(None));
                continue;
            };
            let mut it = col.presence.iter().enumerate().peekable();
            for o in &ords {
                while it.peek().is_some_and(|(_, p)| p < o) {
                    it.next();
                }
                match it.peek() {
                    Some((j, p)) if p == o => b.push(Some((&col.values, *j))),
                    _ => b.push(None),
                }
            }
        }
    }
    let arrays: Vec<ArrayRef> = builders.into_iter().map(Builder::finish).collect();
    let fields: Vec<RelCol> = cols.iter().map(|(_, c)| (*c).clone()).collect();
    Ok(RecordBatch::try_new(output_schema(&fields), arrays)?)
}

/// `ORDER BY .. LIMIT k` over a result much larger than `k` (a top-k): only the ORDER BY columns
/// are laid out for every row and partially sorted, then only the first `OFFSET + k` rows are laid
/// out in full (their keys decoded, their other columns gathered) and put in that order. `None`
/// when the result is small enough to sort whole.
fn top_k(rel: &Relation, q: &QueryPlan, snap: &Snapshot) -> Result<Option<RecordBatch>> {
    let Some(limit) = q.limit else {
        return Ok(None);
    };
    let keep = limit.saturating_add(q.offset);
    let frames: Vec<&Frame> = rel.parts.values().flatten().collect();
    let total: usize = frames.iter().map(|f| f.rows.len() as usize).sum();
    if q.order.is_empty() || total <= keep.saturating_mul(4) {
        return Ok(None);
    }
    let order_cols: Vec<usize> = q.order.iter().map(|(i, ..)| *i).collect();
    let narrow = lay_out(rel, snap, &order_cols, |_, f| f.rows.iter().collect())?;
    let sort_cols = sort_columns(&q.order, |j, _| narrow.columns().get(j).cloned())?;
    let best = arrow_ord::sort::lexsort_to_indices(&sort_cols, Some(keep))?;
    drop(narrow);
    // Each chosen row's frame and ordinal, from its position in the layout above (frames in order,
    // each frame's rows ascending): one walk of the frames that hold a chosen row.
    let sorted_order: Vec<usize> = best.values().iter().map(|p| *p as usize).collect();
    let mut chosen = sorted_order.clone();
    chosen.sort_unstable();
    let mut per_frame: Vec<Vec<u32>> = vec![Vec::new(); frames.len()];
    let mut next = chosen.iter().peekable();
    let mut start = 0usize;
    for (f, list) in frames.iter().zip(per_frame.iter_mut()) {
        let end = start + f.rows.len() as usize;
        if next.peek().is_some_and(|p| **p < end) {
            for (k, o) in f.rows.iter().enumerate() {
                if next.peek().is_some_and(|p| **p == start + k) {
                    list.push(o);
                    next.next();
                }
            }
        }
        start = end;
    }
    if next.next().is_some() {
        return Err(QueryError::Internal("top-k row out of range".into()));
    }
    let all: Vec<usize> = (0..rel.cols.len()).collect();
    // Laid out in position order (the order of `chosen`); `take` puts the rows in sorted order.
    let rows = lay_out(rel, snap, &all, |n, _| {
        per_frame.get_mut(n).map(std::mem::take).unwrap_or_default()
    })?;
    let idx: arrow_array::UInt32Array = sorted_order
        .iter()
        .map(|p| chosen.binary_search(p).map(|i| i as u32).unwrap_or(0))
        .collect();
    let out = arrow_select::take::take_record_batch(&rows, &idx)?;
    let start = q.offset.min(out.num_rows());
    let len = limit.min(out.num_rows() - start);
    Ok(Some(out.slice(start, len)))
}

/// Runs a query plan to an Arrow batch: execute, then ORDER BY / OFFSET / LIMIT.
pub fn run_query(q: &QueryPlan, snap: &Snapshot) -> Result<RecordBatch> {
    if let Plan::System { batch, project, .. } = &q.plan {
        let b = batch.project(project)?;
        return sort_limit(b, q);
    }
    if q.limit == Some(0) {
        // Nothing to compute: clients ask `LIMIT 0` for a result's columns alone.
        return Ok(RecordBatch::new_empty(output_schema(&q.plan.cols())));
    }
    let mark = crate::budget::mark();
    let rel = execute(&q.plan, snap)?;
    if let Some(out) = top_k(&rel, q, snap)? {
        crate::budget::settle(mark, out.get_array_memory_size() as u64)?;
        return Ok(out);
    }
    let cap = if q.order.is_empty() {
        q.limit.map(|l| l.saturating_add(q.offset))
    } else {
        None
    };
    // The whole result is held (with the relation it came from), then sorted into a copy.
    let batch = to_batch(&rel, snap, cap)?;
    crate::budget::settle(mark, batch.get_array_memory_size() as u64)?;
    drop(rel);
    let mark = crate::budget::mark();
    let out = sort_limit(batch, q)?;
    crate::budget::settle(mark, out.get_array_memory_size() as u64)?;
    Ok(out)
}

/// Rows per batch of a streamed result.
pub const STREAM_BATCH_ROWS: usize = 65_536;

/// A query's result as a stream of Arrow batches: without ORDER BY, rows are converted (and their keys
/// decoded) one chunk at a time, so a large result never sits in memory as one Arrow batch.
pub struct BatchStream {
    cols: Vec<RelCol>,
    chunks: std::vec::IntoIter<Frame>,
    snap: Snapshot,
    ready: Option<std::vec::IntoIter<RecordBatch>>,
    /// The schema of a result computed whole (it is that batch's).
    whole_schema: Option<Arc<Schema>>,
    /// Rows handed out so far, and the first error.
    rows: u64,
    error: Option<QueryError>,
    /// Called once when the stream is dropped (the query log's record).
    done: Option<OnDone>,
}

/// What a [`BatchStream`] calls when it is dropped: the rows it handed out, its error if any.
pub type OnDone = Box<dyn FnOnce(u64, Option<&QueryError>) + Send>;

impl Drop for BatchStream {
    fn drop(&mut self) {
        if let Some(f) = self.done.take() {
            f(self.rows, self.error.as_ref());
        }
    }
}

impl BatchStream {
    /// The schema of every batch, known before the first one (a result may have none).
    pub fn schema(&self) -> Arc<Schema> {
        match &self.whole_schema {
            Some(s) => s.clone(),
            None => output_schema(&self.cols),
        }
    }

    /// The same stream calling `f` when it is dropped.
    pub fn on_done(mut self, f: OnDone) -> BatchStream {
        self.done = Some(f);
        self
    }

    /// A stream of one batch computed whole.
    pub fn whole(b: RecordBatch, snap: &Snapshot) -> BatchStream {
        BatchStream {
            cols: Vec::new(),
            chunks: Vec::new().into_iter(),
            snap: snap.clone(),
            whole_schema: Some(b.schema()),
            ready: Some(vec![b].into_iter()),
            rows: 0,
            error: None,
            done: None,
        }
    }

    fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        if let Err(e) = crate::cancel::check() {
            // Cancelled: this error ends the stream.
            self.ready = Some(Vec::new().into_iter());
            self.chunks = Vec::new().into_iter();
            return Some(Err(e));
        }
        if let Some(ready) = &mut self.ready {
            return ready.next().map(Ok);
        }
        let frame = self.chunks.next()?;
        let mut parts = BTreeMap::new();
        parts.insert(PartitionId(0), vec![frame]);
        Some(to_batch(
            &Relation {
                cols: self.cols.clone(),
                parts,
            },
            &self.snap,
            None,
        ))
    }
}

impl Iterator for BatchStream {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.next_batch();
        match &next {
            Some(Ok(b)) => self.rows += b.num_rows() as u64,
            Some(Err(e)) if self.error.is_none() => {
                // Kept for the query log (the error itself goes to the caller).
                self.error = Some(match e {
                    QueryError::Cancelled => QueryError::Cancelled,
                    other => QueryError::Internal(other.to_string()),
                });
            }
            _ => {}
        }
        next
    }
}

/// Runs a query plan as a stream of batches (see [`BatchStream`]).
pub fn stream_query(q: &QueryPlan, snap: &Snapshot) -> Result<BatchStream> {
    let whole = |b: RecordBatch| BatchStream::whole(b, snap);
    if matches!(q.plan, Plan::System { .. }) || !q.order.is_empty() || q.limit == Some(0) {
        return Ok(whole(run_query(q, snap)?));
    }
    let rel = execute(&q.plan, snap)?;
    // OFFSET / LIMIT cut the rows in ordinal order, chunk by chunk.
    let mut skip = q.offset;
    let mut left = q.limit.unwrap_or(usize::MAX);
    let mut chunks = Vec::new();
    for frames in rel.parts.into_values() {
        for f in frames {
            let mut ords = f.rows.iter();
            while skip > 0 && ords.next().is_some() {
                skip -= 1;
            }
            while left > 0 {
                let take: Vec<u32> = ords.by_ref().take(STREAM_BATCH_ROWS.min(left)).collect();
                if take.is_empty() {
                    break;
                }
                left -= take.len();
                let rows = RoaringBitmap::from_sorted_iter(take).unwrap_or_default();
                let cols = f
                    .cols
                    .iter()
                    .map(|c| c.as_ref().map(|c| restrict(c, &rows)))
                    .collect();
                chunks.push(Frame::new(rows, cols));
            }
        }
    }
    Ok(BatchStream {
        cols: rel.cols,
        chunks: chunks.into_iter(),
        snap: snap.clone(),
        ready: None,
        whole_schema: None,
        rows: 0,
        error: None,
        done: None,
    })
}

/// The ORDER BY keys as Arrow sort columns; `column(j, i)` gives the values of the `j`-th key,
/// output column `i`.
fn sort_columns(
    order: &[(usize, bool, bool)],
    column: impl Fn(usize, usize) -> Option<ArrayRef>,
) -> Result<Vec<arrow_ord::sort::SortColumn>> {
    order
        .iter()
        .enumerate()
        .map(|(j, (i, desc, nulls_first))| {
            let values =
                column(j, *i).ok_or_else(|| QueryError::Internal("order column".into()))?;
            Ok(arrow_ord::sort::SortColumn {
                values,
                options: Some(arrow_schema::SortOptions {
                    descending: *desc,
                    nulls_first: *nulls_first,
                }),
            })
        })
        .collect()
}

fn sort_limit(batch: RecordBatch, q: &QueryPlan) -> Result<RecordBatch> {
    let batch = if q.order.is_empty() {
        batch
    } else {
        let sort_cols = sort_columns(&q.order, |_, i| batch.columns().get(i).cloned())?;
        // With a LIMIT only the first OFFSET + LIMIT rows are needed: a partial sort (top-k)
        // instead of sorting every row.
        let keep = q.limit.map(|l| l.saturating_add(q.offset));
        // One VARCHAR column without NULLs, sorted whole: by 16-byte prefixes (see `sort`).
        let by_prefix = match (q.order.as_slice(), keep) {
            ([(i, descending, _)], None) => batch.columns().get(*i).and_then(|c| {
                c.as_any()
                    .downcast_ref::<arrow_array::StringArray>()
                    .and_then(|a| crate::sort::string_order(a, *descending))
            }),
            _ => None,
        };
        let idx = match by_prefix {
            Some(idx) => idx,
            None => arrow_ord::sort::lexsort_to_indices(&sort_cols, keep)?,
        };
        arrow_select::take::take_record_batch(&batch, &idx)?
    };
    let n = batch.num_rows();
    let start = q.offset.min(n);
    let len = q.limit.unwrap_or(usize::MAX).min(n - start);
    Ok(batch.slice(start, len))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::vector::ArithOp;

    /// Conditions answered from value groups (two columns compared, one column computed on) equal
    /// the same conditions evaluated on the values, NULLs and rows outside the frame included.
    #[test]
    fn conditions_on_value_groups_equal_conditions_on_values() {
        let mut rnd = crate::test_rng(0x9E37_79B9_7F4A_7C15u64);
        let all: RoaringBitmap = (0..5000).collect();
        let col = |rnd: &mut dyn FnMut(u64) -> u64| {
            let presence: RoaringBitmap = all.iter().filter(|_| rnd(10) < 7).collect();
            let values = Values::Int(presence.iter().map(|_| rnd(12) as i64 * 1000).collect());
            ColumnData { presence, values }
        };
        let (a, b) = (col(&mut rnd), col(&mut rnd));
        // The frame's rows: a subset (a sample, or what a filter kept); groups reach beyond it.
        let rows: RoaringBitmap = all.iter().filter(|_| rnd(3) > 0).collect();
        let cols: Vec<RelCol> = ["k", "a", "b"]
            .iter()
            .enumerate()
            .map(|(i, n)| RelCol {
                name: n.to_string(),
                dtype: if i == 0 {
                    DType::Varchar
                } else {
                    DType::Timestamp
                },
                is_key: i == 0,
            })
            .collect();
        let ctx = EvalCtx {
            cols: &cols,
            keys: None,
        };
        let values = Frame::new(
            rows.clone(),
            vec![None, Some(restrict(&a, &rows)), Some(restrict(&b, &rows))],
        );
        let grouped = Frame {
            rows: rows.clone(),
            cols: vec![
                None,
                Some(ColumnData {
                    presence: &a.presence & &rows,
                    values: Values::empty(ColumnType::Timestamp),
                }),
                Some(ColumnData {
                    presence: &b.presence & &rows,
                    values: Values::empty(ColumnType::Timestamp),
                }),
            ],
            groups: vec![
                None,
                Some(Arc::new(ValueGroups::build(&a).unwrap())),
                Some(Arc::new(ValueGroups::build(&b).unwrap())),
            ],
        };
        let col = |i: usize| Box::new(Expr::Col(i));
        let lit = |v: i64| Box::new(Expr::Lit(Scalar::Ts(v)));
        let mut conditions = Vec::new();
        for op in [
            CmpOp::Eq,
            CmpOp::NotEq,
            CmpOp::Lt,
            CmpOp::LtEq,
            CmpOp::Gt,
            CmpOp::GtEq,
        ] {
            conditions.push(Expr::Cmp(op, col(1), col(2)));
            conditions.push(Expr::Cmp(op, col(2), col(1)));
            conditions.push(Expr::Cmp(op, col(1), lit(5000)));
            conditions.push(Expr::Not(Box::new(Expr::Cmp(op, col(2), lit(3000)))));
        }
        let plus = Expr::Arith(ArithOp::Add, col(1), lit(2000), DType::Timestamp);
        conditions.push(Expr::Cmp(CmpOp::Lt, Box::new(plus), col(2)));
        conditions.push(Expr::IsNull(
            Box::new(Expr::Cmp(CmpOp::Lt, col(1), lit(4000))),
            false,
        ));
        for c in &conditions {
            let want = eval(c, &values, &ctx).unwrap().into_bool(&rows).unwrap();
            let got = eval(c, &grouped, &ctx).unwrap().into_bool(&rows).unwrap();
            assert_eq!(got, want, "{c:?}");
        }
    }
}
