//! Grouped aggregation: `GROUP BY` any expressions (or none), with `count`, `sum`, `avg`,
//! `min`, `max`, `count(DISTINCT ..)`, `bool_and`, `bool_or` and quantiles.
//!
//! Per partition (in parallel), each group column is dictionary-coded (a hash map from its values to
//! small codes, strings borrowed from the column), the codes of a row make its group id, and the
//! ordinals of each group are collected in order. Then:
//! - `count(*)` is the size of a group and `count(col)` of a column read as a bitmap is
//!   `|group ∩ presence|`, one bitmap intersection per group when groups are few (the segment
//!   funnel: no value is decoded);
//! - every other aggregate walks its argument's values once, in ordinal order, beside the group ids.
//!
//! Partial results of the partitions are merged by group value. Result types and NULL rules are
//! DuckDB's, except that `sum` of BIGINT is BIGINT and its overflow is an error (DuckDB widens to
//! HUGEINT); no sum ever wraps.

use hashbrown::{HashMap, HashSet};

use journeydb_storage::values::ValueGroups;
use journeydb_storage::{ColumnData, PartitionId, Values};
use roaring::RoaringBitmap;

use crate::error::{QueryError, Result};
use crate::exec::{eval, extreme, par_map, EvalCtx, Frame, Relation};
use crate::func::scalar_of;
use crate::plan::{Agg, Expr, RelCol};
use crate::types::{DType, Scalar};
use crate::vector::{el_at, El, Vector};
use journeydb_storage::Snapshot;

/// Groups at most this many per partition use one bitmap per group for `count`.
const BITMAP_GROUPS: usize = 4096;

/// A group value, hashable (doubles by their bits, with -0.0 as 0.0 and one NaN).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum GVal {
    Null,
    I(i64),
    F(u64),
    B(bool),
    S(String),
}

fn gval(e: Option<El<'_>>) -> GVal {
    match e {
        None => GVal::Null,
        Some(El::I(v)) => GVal::I(v),
        Some(El::F(v)) => GVal::F(if v == 0.0 {
            0
        } else if v.is_nan() {
            f64::NAN.to_bits()
        } else {
            v.to_bits()
        }),
        Some(El::B(v)) => GVal::B(v),
        Some(El::S(v)) => GVal::S(v.to_string()),
    }
}

fn scalar_of_gval(g: &GVal, t: DType) -> Scalar {
    match g {
        GVal::Null => Scalar::Null,
        GVal::I(v) => scalar_of(El::I(*v), t),
        GVal::F(v) => Scalar::Float(f64::from_bits(*v)),
        GVal::B(v) => Scalar::Bool(*v),
        GVal::S(v) => Scalar::Str(v.clone()),
    }
}

/// One aggregate's state for one group.
#[derive(Debug, Clone)]
enum Acc {
    Count(i64),
    /// Integer sum (exact; checked against BIGINT at the end) and whether any value came.
    SumI(i128, bool),
    SumF(f64, bool),
    /// Sum and count for `avg`.
    Avg(f64, i128, i64),
    Ext(Option<Scalar>),
    /// Distinct values: numbers, booleans and doubles (normalized bits) as integers, strings apart
    /// (a string is copied only the first time it is seen).
    Distinct(HashSet<i64>, HashSet<String>),
    Bool(Option<bool>),
    Values(Vec<f64>, Vec<i64>),
}

fn new_acc(agg: &Agg, in_type: DType) -> Acc {
    match agg {
        Agg::CountStar | Agg::Count(_) => Acc::Count(0),
        Agg::Sum(_) if in_type == DType::Double => Acc::SumF(0.0, false),
        Agg::Sum(_) => Acc::SumI(0, false),
        Agg::Avg(_) => Acc::Avg(0.0, 0, 0),
        Agg::CountDistinct(_) => Acc::Distinct(HashSet::new(), HashSet::new()),
        Agg::BoolAnd(_) | Agg::BoolOr(_) => Acc::Bool(None),
        Agg::Quantile(..) => Acc::Values(Vec::new(), Vec::new()),
        Agg::Min(_) | Agg::Max(_) | Agg::Key | Agg::Group(_) => Acc::Ext(None),
    }
}

fn fold_ext(acc: &mut Option<Scalar>, v: Scalar, min: bool) {
    crate::exec::fold_scalar(acc, v, min)
}

fn update(acc: &mut Acc, agg: &Agg, e: El<'_>, t: DType) -> Result<()> {
    match (acc, e) {
        (Acc::Count(n), _) => *n += 1,
        (Acc::SumI(s, any), El::I(v)) => {
            *s += i128::from(v);
            *any = true;
        }
        (Acc::SumF(s, any), El::F(v)) => {
            *s += v;
            *any = true;
        }
        (Acc::SumF(s, any), El::I(v)) => {
            *s += v as f64;
            *any = true;
        }
        (Acc::Avg(f, i, n), El::I(v)) => {
            *i += i128::from(v);
            *n += 1;
            let _ = f;
        }
        (Acc::Avg(f, _, n), El::F(v)) => {
            *f += v;
            *n += 1;
        }
        (Acc::Ext(x), e) => fold_ext(x, scalar_of(e, t), matches!(agg, Agg::Min(_))),
        (Acc::Distinct(_, strs), El::S(s)) => {
            if !strs.contains(s) {
                strs.insert(s.to_string());
            }
        }
        (Acc::Distinct(ints, _), e) => {
            let k = match gval(Some(e)) {
                GVal::I(v) => v,
                GVal::F(bits) => bits as i64,
                GVal::B(b) => i64::from(b),
                GVal::Null | GVal::S(_) => return Ok(()),
            };
            ints.insert(k);
        }
        (Acc::Bool(b), El::B(v)) => {
            *b = Some(match (*b, agg) {
                (None, _) => v,
                (Some(x), Agg::BoolAnd(_)) => x && v,
                (Some(x), _) => x || v,
            })
        }
        (Acc::Values(f, _), El::F(v)) => f.push(v),
        (Acc::Values(_, i), El::I(v)) => i.push(v),
        (_, e) => {
            return Err(QueryError::Internal(format!(
                "aggregate state does not take {e:?}"
            )))
        }
    }
    Ok(())
}

/// [`update`] with `e` occurring `c` times.
fn update_n(acc: &mut Acc, agg: &Agg, e: El<'_>, t: DType, c: u64) -> Result<()> {
    let times = i128::from(c);
    match (&mut *acc, e) {
        (Acc::Count(n), _) => *n += c as i64,
        (Acc::SumI(s, any), El::I(v)) => {
            *s += i128::from(v) * times;
            *any = true;
        }
        (Acc::SumF(s, any), El::F(v)) => {
            *s += v * c as f64;
            *any = true;
        }
        (Acc::SumF(s, any), El::I(v)) => {
            *s += v as f64 * c as f64;
            *any = true;
        }
        (Acc::Avg(_, i, n), El::I(v)) => {
            *i += i128::from(v) * times;
            *n += c as i64;
        }
        (Acc::Avg(f, _, n), El::F(v)) => {
            *f += v * c as f64;
            *n += c as i64;
        }
        (Acc::Values(..), _) => {
            for _ in 0..c {
                update(acc, agg, e, t)?;
            }
        }
        _ => update(acc, agg, e, t)?,
    }
    Ok(())
}

/// The values of a column kept as value groups, for the rows of a frame.
pub(crate) fn values_from_groups(vg: &ValueGroups, rows: &RoaringBitmap) -> ColumnData {
    let cut: Vec<RoaringBitmap> = vg.bitmaps.iter().map(|b| b & rows).collect();
    let mut presence = RoaringBitmap::new();
    for b in &cut {
        presence |= b;
    }
    let map = OrdinalMap::build(&presence, cut.iter().enumerate());
    let idx: Vec<usize> = presence.iter().map(|o| map.get(o)).collect();
    fn pick<T: Clone + Default>(keys: &[T], idx: &[usize]) -> Vec<T> {
        idx.iter()
            .map(|i| keys.get(*i).cloned().unwrap_or_default())
            .collect()
    }
    let values = match &vg.keys {
        Values::Int(k) => Values::Int(pick(k, &idx)),
        Values::Float(k) => Values::Float(pick(k, &idx)),
        Values::Bool(k) => Values::Bool(pick(k, &idx)),
        Values::Str(k) => Values::Str(pick(k, &idx)),
    };
    ColumnData { presence, values }
}

fn merge(a: &mut Acc, b: Acc, agg: &Agg) -> Result<()> {
    match (a, b) {
        (Acc::Count(x), Acc::Count(y)) => *x += y,
        (Acc::SumI(x, ax), Acc::SumI(y, ay)) => {
            *x += y;
            *ax |= ay;
        }
        (Acc::SumF(x, ax), Acc::SumF(y, ay)) => {
            *x += y;
            *ax |= ay;
        }
        (Acc::Avg(f, i, n), Acc::Avg(g, j, m)) => {
            *f += g;
            *i += j;
            *n += m;
        }
        (Acc::Ext(x), Acc::Ext(Some(y))) => fold_ext(x, y, matches!(agg, Agg::Min(_))),
        (Acc::Ext(_), Acc::Ext(None)) => {}
        (Acc::Distinct(x, xs), Acc::Distinct(y, ys)) => {
            x.extend(y);
            xs.extend(ys);
        }
        (Acc::Bool(x), Acc::Bool(y)) => {
            *x = match (*x, y) {
                (None, y) => y,
                (x, None) => x,
                (Some(p), Some(q)) => Some(if matches!(agg, Agg::BoolAnd(_)) {
                    p && q
                } else {
                    p || q
                }),
            }
        }
        (Acc::Values(f, i), Acc::Values(g, j)) => {
            f.extend(g);
            i.extend(j);
        }
        _ => return Err(QueryError::Internal("aggregate states differ".into())),
    }
    Ok(())
}

fn finish(acc: Acc, agg: &Agg, in_type: DType) -> Result<Scalar> {
    Ok(match acc {
        Acc::Count(n) => Scalar::Int(n),
        Acc::SumI(_, false) | Acc::SumF(_, false) => Scalar::Null,
        Acc::SumI(s, true) => Scalar::Int(i64::try_from(s).map_err(|_| {
            QueryError::InvalidValue(format!(
                "sum {s} is out of the BIGINT range (cast the column to DOUBLE to sum it approximately)"
            ))
        })?),
        Acc::SumF(s, true) => Scalar::Float(s),
        Acc::Avg(_, _, 0) => Scalar::Null,
        Acc::Avg(f, i, n) if in_type == DType::Double => {
            let _ = i;
            Scalar::Float(f / n as f64)
        }
        Acc::Avg(_, i, n) => Scalar::Float(i as f64 / n as f64),
        Acc::Ext(x) => x.unwrap_or(Scalar::Null),
        Acc::Distinct(i, s) => Scalar::Int((i.len() + s.len()) as i64),
        Acc::Bool(b) => b.map_or(Scalar::Null, Scalar::Bool),
        Acc::Values(f, i) => match agg {
            Agg::Quantile(_, q, cont) => quantile(f, i, *q, *cont, in_type),
            _ => Scalar::Null,
        },
    })
}

/// DuckDB's quantiles: continuous ones interpolate between the values at `(n-1)q` (rounded to the
/// nearest µs for timestamps and intervals, DOUBLE for numbers); discrete ones take the value at
/// `ceil(n q) - 1`.
fn quantile(mut f: Vec<f64>, mut i: Vec<i64>, q: f64, cont: bool, t: DType) -> Scalar {
    let n = f.len().max(i.len());
    if n == 0 {
        return Scalar::Null;
    }
    if cont {
        let rn = (n - 1) as f64 * q;
        let (lo, hi) = (rn.floor() as usize, rn.ceil() as usize);
        let frac = rn - rn.floor();
        if !f.is_empty() {
            f.sort_unstable_by(f64::total_cmp);
            let (a, b) = (
                f.get(lo).copied().unwrap_or(0.0),
                f.get(hi).copied().unwrap_or(0.0),
            );
            return Scalar::Float(a + (b - a) * frac);
        }
        i.sort_unstable();
        let (a, b) = (
            i.get(lo).copied().unwrap_or(0) as f64,
            i.get(hi).copied().unwrap_or(0) as f64,
        );
        let v = a + (b - a) * frac;
        return match t {
            DType::Bigint => Scalar::Float(v),
            t => scalar_of(El::I(v.round() as i64), t),
        };
    }
    let k = ((n as f64 * q).ceil() as usize)
        .saturating_sub(1)
        .min(n - 1);
    if !f.is_empty() {
        let (_, v, _) = f.select_nth_unstable_by(k, f64::total_cmp);
        return Scalar::Float(*v);
    }
    let (_, v, _) = i.select_nth_unstable(k);
    scalar_of(El::I(*v), t)
}

/// Dictionary codes of one group column over a frame's rows.
fn codes(col: &ColumnData, rows: &RoaringBitmap, dict: &mut Vec<GVal>) -> Result<Vec<u32>> {
    let mut out = Vec::with_capacity(rows.len() as usize);
    let mut null_code: Option<u32> = None;
    let mut it = col.presence.iter().peekable();
    let mut idx = 0usize;
    macro_rules! walk {
        ($map:ident, $key:expr, $gv:expr) => {{
            for o in rows.iter() {
                while it.peek().is_some_and(|p| *p < o) {
                    it.next();
                    idx += 1;
                }
                if it.peek() == Some(&o) {
                    let k = $key(idx)?;
                    let next = dict.len() as u32;
                    let c = match $map.get(&k) {
                        Some(c) => *c,
                        None => {
                            dict.push($gv(&k));
                            $map.insert(k, next);
                            next
                        }
                    };
                    out.push(c);
                } else {
                    let c = *null_code.get_or_insert_with(|| {
                        dict.push(GVal::Null);
                        dict.len() as u32 - 1
                    });
                    out.push(c);
                }
            }
        }};
    }
    let short = || QueryError::Internal("short group column".into());
    match &col.values {
        Values::Int(v) => {
            let mut map: HashMap<i64, u32> = HashMap::new();
            walk!(
                map,
                |i: usize| v.get(i).copied().ok_or_else(short),
                |k: &i64| { GVal::I(*k) }
            );
        }
        Values::Str(v) => {
            let mut map: HashMap<&str, u32> = HashMap::new();
            walk!(
                map,
                |i: usize| v.get(i).map(String::as_str).ok_or_else(short),
                |s: &&str| GVal::S(s.to_string())
            );
        }
        other => {
            let mut map: HashMap<GVal, u32> = HashMap::new();
            walk!(
                map,
                |i: usize| el_at(other, i).map(|e| gval(Some(e))).ok_or_else(short),
                |g: &GVal| g.clone()
            );
        }
    }
    Ok(out)
}

/// A value per ordinal of a frame's rows, filled from disjoint bitmaps: a dense array over the rows'
/// ordinal range (a partition's ordinals are close together), or a hash map when they are sparse.
enum OrdinalMap {
    Dense(u32, Vec<usize>),
    Sparse(HashMap<u32, usize>),
}

impl OrdinalMap {
    fn build<'b>(
        rows: &RoaringBitmap,
        sets: impl Iterator<Item = (usize, &'b RoaringBitmap)>,
    ) -> OrdinalMap {
        let (lo, hi) = (rows.min().unwrap_or(0), rows.max().unwrap_or(0));
        let span = (hi - lo) as u64 + 1;
        let mut map = if span <= 4 * rows.len() + 65_536 {
            OrdinalMap::Dense(lo, vec![0; span as usize])
        } else {
            OrdinalMap::Sparse(HashMap::new())
        };
        for (v, bm) in sets {
            for o in bm.iter() {
                match &mut map {
                    OrdinalMap::Dense(lo, d) => {
                        if let Some(slot) = o.checked_sub(*lo).and_then(|i| d.get_mut(i as usize)) {
                            *slot = v;
                        }
                    }
                    OrdinalMap::Sparse(m) => {
                        m.insert(o, v);
                    }
                }
            }
        }
        map
    }

    fn get(&self, o: u32) -> usize {
        match self {
            OrdinalMap::Dense(lo, d) => o
                .checked_sub(*lo)
                .and_then(|i| d.get(i as usize))
                .copied()
                .unwrap_or(0),
            OrdinalMap::Sparse(m) => m.get(&o).copied().unwrap_or(0),
        }
    }
}

/// The groups of one frame: their values, and the group of each row (by rank) or the ordinals of
/// each group.
struct FrameGroups {
    keys: Vec<Vec<GVal>>,
    gid: Option<Vec<u32>>,
    rows: Option<Vec<RoaringBitmap>>,
}

/// Groups a frame by `groups`: by the value groups storage keeps for a plain column (bitmaps, no
/// value decoded), else by dictionary codes of the evaluated group columns.
fn frame_groups(f: &Frame, groups: &[Expr], ctx: &EvalCtx<'_>) -> Result<FrameGroups> {
    let n = f.rows.len() as usize;
    if groups.is_empty() {
        return Ok(FrameGroups {
            keys: if n > 0 { vec![Vec::new()] } else { Vec::new() },
            gid: None,
            rows: (n > 0).then(|| vec![f.rows.clone()]),
        });
    }
    if let [Expr::Col(i)] = groups {
        if let (Some(vg), Some(Some(col))) = (f.groups_of(*i), f.cols.get(*i)) {
            let mut keys = Vec::new();
            let mut rows = Vec::new();
            for (k, bm) in vg.bitmaps.iter().enumerate() {
                let bm = bm & &f.rows;
                if !bm.is_empty() {
                    keys.push(vec![gval(el_at(&vg.keys, k))]);
                    rows.push(bm);
                }
            }
            let nulls = &f.rows - &col.presence;
            if !nulls.is_empty() {
                keys.push(vec![GVal::Null]);
                rows.push(nulls);
            }
            return Ok(FrameGroups {
                keys,
                gid: None,
                rows: Some(rows),
            });
        }
    }
    let mut dicts: Vec<Vec<GVal>> = vec![Vec::new(); groups.len()];
    let mut row_codes: Vec<Vec<u32>> = Vec::with_capacity(groups.len());
    for (g, d) in groups.iter().zip(&mut dicts) {
        let c = eval(g, f, ctx)?.into_column(&f.rows)?;
        row_codes.push(codes(&c, &f.rows, d)?);
    }
    // One group column's codes are the group ids; several columns' codes are combined.
    let (ids, local_keys): (Vec<u32>, Vec<Vec<u32>>) = if row_codes.len() == 1 {
        let ids = row_codes.pop().unwrap_or_default();
        let k = dicts.first().map_or(0, Vec::len) as u32;
        (ids, (0..k).map(|c| vec![c]).collect())
    } else {
        let mut local: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut keys = Vec::new();
        let mut ids = Vec::with_capacity(n);
        let mut key = Vec::with_capacity(row_codes.len());
        for r in 0..n {
            key.clear();
            key.extend(row_codes.iter().map(|c| c.get(r).copied().unwrap_or(0)));
            let id = match local.get(&key) {
                Some(id) => *id,
                None => {
                    let id = keys.len() as u32;
                    keys.push(key.clone());
                    local.insert(key.clone(), id);
                    id
                }
            };
            ids.push(id);
        }
        (ids, keys)
    };
    let keys = local_keys
        .iter()
        .map(|codes_of| {
            codes_of
                .iter()
                .zip(&dicts)
                .map(|(c, d)| d.get(*c as usize).cloned().unwrap_or(GVal::Null))
                .collect()
        })
        .collect();
    Ok(FrameGroups {
        keys,
        gid: Some(ids),
        rows: None,
    })
}

/// Per partition: the group values and each aggregate's states.
struct Partial {
    keys: Vec<Vec<GVal>>,
    accs: Vec<Vec<Acc>>,
}

// long: one pass per frame — group coding, then each aggregate by its fastest route.
fn partial(
    frames: &[Frame],
    groups: &[Expr],
    items: &[(Agg, RelCol)],
    in_types: &[DType],
    ctx: &EvalCtx<'_>,
) -> Result<Partial> {
    let mut index: HashMap<Vec<GVal>, usize> = HashMap::new();
    let mut part = Partial {
        keys: Vec::new(),
        accs: vec![Vec::new(); items.len()],
    };
    if groups.is_empty() {
        index.insert(Vec::new(), 0);
        part.keys.push(Vec::new());
        for (a, ((agg, _), t)) in part.accs.iter_mut().zip(items.iter().zip(in_types)) {
            a.push(new_acc(agg, *t));
        }
    }
    for f in frames {
        let n = f.rows.len() as usize;
        let single = groups.is_empty();
        let mut local = frame_groups(f, groups, ctx)?;
        // Local group -> partition group.
        let mut to_part = vec![0usize; local.keys.len()];
        for (l, vals) in std::mem::take(&mut local.keys).into_iter().enumerate() {
            let next = part.keys.len();
            let p = *index.entry(vals.clone()).or_insert_with(|| {
                part.keys.push(vals);
                next
            });
            if p == next {
                for (a, ((agg, _), t)) in part.accs.iter_mut().zip(items.iter().zip(in_types)) {
                    a.push(new_acc(agg, *t));
                }
            }
            if let Some(slot) = to_part.get_mut(l) {
                *slot = p;
            }
        }
        // Ordinals of each (partition) group, for counts as bitmap intersections.
        let group_rows: Option<Vec<RoaringBitmap>> = match &local.rows {
            Some(rows) => {
                let mut per = vec![RoaringBitmap::new(); part.keys.len()];
                for (l, bm) in rows.iter().enumerate() {
                    if let Some(slot) = to_part.get(l).and_then(|p| per.get_mut(*p)) {
                        *slot |= bm;
                    }
                }
                Some(per)
            }
            None if to_part.len() <= BITMAP_GROUPS => {
                let mut per: Vec<Vec<u32>> = vec![Vec::new(); part.keys.len()];
                if let Some(ids) = &local.gid {
                    for (o, l) in f.rows.iter().zip(ids) {
                        if let Some(v) = to_part.get(*l as usize).and_then(|p| per.get_mut(*p)) {
                            v.push(o);
                        }
                    }
                }
                Some(
                    per.into_iter()
                        .map(|v| RoaringBitmap::from_sorted_iter(v).unwrap_or_default())
                        .collect(),
                )
            }
            None => None,
        };
        // The group of each row by rank, built only for aggregates that walk values.
        let gid_cache: std::cell::OnceCell<Vec<usize>> = std::cell::OnceCell::new();
        let gid_of = |local: &FrameGroups| -> &Vec<usize> {
            gid_cache.get_or_init(|| match (&local.gid, &local.rows) {
                (Some(ids), _) => ids
                    .iter()
                    .map(|l| to_part.get(*l as usize).copied().unwrap_or(0))
                    .collect(),
                (None, Some(rows)) if !single => {
                    let per_ordinal = OrdinalMap::build(
                        &f.rows,
                        rows.iter()
                            .enumerate()
                            .map(|(l, bm)| (to_part.get(l).copied().unwrap_or(0), bm)),
                    );
                    f.rows.iter().map(|o| per_ordinal.get(o)).collect()
                }
                _ => vec![0usize; n],
            })
        };
        for (((agg, _), t), accs) in items.iter().zip(in_types).zip(&mut part.accs) {
            match agg {
                Agg::Key | Agg::Group(_) => {}
                Agg::CountStar if single => {
                    if let Some(Acc::Count(c)) = accs.get_mut(0) {
                        *c += n as i64;
                    }
                }
                Agg::CountStar => match &group_rows {
                    Some(gr) => {
                        for (g, bm) in gr.iter().enumerate() {
                            if let Some(Acc::Count(c)) = accs.get_mut(g) {
                                *c += bm.len() as i64;
                            }
                        }
                    }
                    None => {
                        for &g in gid_of(&local) {
                            if let Some(Acc::Count(c)) = accs.get_mut(g) {
                                *c += 1;
                            }
                        }
                    }
                },
                _ => {
                    let Some(e) = agg.arg() else { continue };
                    // A plain column read as value groups: per group, each value weighs the size
                    // of its bitmap within the group; no value is decoded.
                    let grouped = match e {
                        Expr::Col(j) => f.groups_of(*j),
                        _ => None,
                    };
                    if let (Some(vg), Some(gr)) = (grouped, &group_rows) {
                        for (g, rows_g) in gr.iter().enumerate() {
                            let Some(acc) = accs.get_mut(g) else { continue };
                            for (k, bm) in vg.bitmaps.iter().enumerate() {
                                let c = rows_g.intersection_len(bm);
                                if let (true, Some(x)) = (c > 0, el_at(&vg.keys, k)) {
                                    update_n(acc, agg, x, *t, c)?;
                                }
                            }
                        }
                        continue;
                    }
                    let v = match grouped {
                        Some(vg) => Vector::Col(
                            std::borrow::Cow::Owned(values_from_groups(vg, &f.rows)),
                            *t,
                        ),
                        None => eval(e, f, ctx)?,
                    };
                    let v = match v {
                        Vector::Bool { .. } => Vector::Col(
                            std::borrow::Cow::Owned(v.into_column(&f.rows)?),
                            DType::Boolean,
                        ),
                        v => v,
                    };
                    match (&v, agg, &group_rows) {
                        (Vector::Col(c, _), Agg::Count(_), Some(gr)) => {
                            for (g, bm) in gr.iter().enumerate() {
                                if let Some(Acc::Count(n)) = accs.get_mut(g) {
                                    *n += bm.intersection_len(&c.presence) as i64;
                                }
                            }
                        }
                        (Vector::Col(c, _), Agg::Min(_) | Agg::Max(_), _)
                            if part.keys.len() == 1 =>
                        {
                            let min = matches!(agg, Agg::Min(_));
                            if let (Some(x), Some(Acc::Ext(acc))) =
                                (extreme(c, *t, min), accs.get_mut(0))
                            {
                                fold_ext(acc, x, min);
                            }
                        }
                        (Vector::Col(c, _), _, _) => {
                            let gid = gid_of(&local);
                            let mut it = c.presence.iter();
                            let mut next = it.next();
                            let mut idx = 0usize;
                            for (r, o) in f.rows.iter().enumerate() {
                                let g = &gid.get(r).copied().unwrap_or(0);
                                while next.is_some_and(|p| p < o) {
                                    next = it.next();
                                    idx += 1;
                                }
                                if next == Some(o) && matches!(agg, Agg::Count(_)) {
                                    // Presence is enough (the values may not have been read).
                                    if let Some(Acc::Count(n)) = accs.get_mut(*g) {
                                        *n += 1;
                                    }
                                } else if next == Some(o) {
                                    if let (Some(e), Some(acc)) =
                                        (el_at(&c.values, idx), accs.get_mut(*g))
                                    {
                                        update(acc, agg, e, *t)?;
                                    }
                                }
                            }
                        }
                        (Vector::Const(s), _, _) => {
                            if let Some(e) = crate::vector::el_of(s) {
                                for &g in gid_of(&local) {
                                    if let Some(acc) = accs.get_mut(g) {
                                        update(acc, agg, e, *t)?;
                                    }
                                }
                            }
                        }
                        (Vector::Bool { .. }, _, _) => {
                            return Err(QueryError::Internal("unnormalized aggregate".into()))
                        }
                    }
                }
            }
        }
    }
    Ok(part)
}

/// Aggregates `rel` per distinct value of `groups` (one group in all when there are none: one
/// row, even over no rows).
pub fn aggregate(
    rel: Relation,
    groups: &[Expr],
    items: &[(Agg, RelCol)],
    snap: &Snapshot,
) -> Result<Relation> {
    let in_cols = rel.cols;
    let in_types = items
        .iter()
        .map(|(a, _)| match a.arg() {
            Some(e) => crate::plan::expr_type(e, &in_cols),
            None => Ok(DType::Bigint),
        })
        .collect::<Result<Vec<_>>>()?;
    let parts: Vec<Vec<Frame>> = rel.parts.into_values().collect();
    let partials = par_map(&parts, |frames| {
        let keys = snap.keys();
        let ctx = EvalCtx {
            cols: &in_cols,
            keys: Some(&keys),
        };
        partial(frames, groups, items, &in_types, &ctx)
    })?;
    // Merge by group value.
    let mut index: HashMap<Vec<GVal>, usize> = HashMap::new();
    let mut keys: Vec<Vec<GVal>> = Vec::new();
    let mut accs: Vec<Vec<Acc>> = vec![Vec::new(); items.len()];
    if groups.is_empty() {
        index.insert(Vec::new(), 0);
        keys.push(Vec::new());
        for (a, ((agg, _), t)) in accs.iter_mut().zip(items.iter().zip(&in_types)) {
            a.push(new_acc(agg, *t));
        }
    }
    for p in partials {
        let mut part_accs: Vec<std::vec::IntoIter<Acc>> =
            p.accs.into_iter().map(Vec::into_iter).collect();
        for k in p.keys {
            let next = keys.len();
            let slot = *index.entry(k.clone()).or_insert(next);
            let fresh = slot == next;
            if fresh {
                keys.push(k);
            }
            for ((a, incoming), (agg, _)) in accs.iter_mut().zip(&mut part_accs).zip(items) {
                let Some(b) = incoming.next() else { continue };
                if fresh {
                    a.push(b);
                } else if let Some(x) = a.get_mut(slot) {
                    merge(x, b, agg)?;
                }
            }
        }
    }
    // One row per group: ordinals 0..n of partition 0 (the rows are not customers).
    let n = keys.len() as u32;
    let rows: RoaringBitmap = (0..n).collect();
    let mut cols = Vec::with_capacity(items.len());
    for (((agg, col), t), states) in items.iter().zip(&in_types).zip(accs) {
        let mut presence = Vec::new();
        let mut scalars = Vec::new();
        match agg {
            Agg::Group(g) => {
                for (r, k) in keys.iter().enumerate() {
                    let s = k
                        .get(*g)
                        .map_or(Scalar::Null, |v| scalar_of_gval(v, col.dtype));
                    if s != Scalar::Null {
                        presence.push(r as u32);
                        scalars.push(s);
                    }
                }
            }
            _ => {
                for (r, st) in states.into_iter().enumerate() {
                    let s = finish(st, agg, *t)?;
                    if s != Scalar::Null {
                        presence.push(r as u32);
                        scalars.push(s);
                    }
                }
            }
        }
        cols.push(Some(column_of(presence, scalars, col.dtype)?));
    }
    let mut parts = std::collections::BTreeMap::new();
    parts.insert(PartitionId(0), vec![Frame::new(rows, cols)]);
    Ok(Relation {
        cols: items.iter().map(|(_, c)| c.clone()).collect(),
        parts,
    })
}

fn column_of(presence: Vec<u32>, scalars: Vec<Scalar>, t: DType) -> Result<ColumnData> {
    let bad = || QueryError::Internal(format!("an aggregate produced a non-{} value", t.name()));
    let values = match t {
        DType::Double => Values::Float(
            scalars
                .into_iter()
                .map(|s| match s {
                    Scalar::Float(v) => Ok(v),
                    Scalar::Int(v) => Ok(v as f64),
                    _ => Err(bad()),
                })
                .collect::<Result<_>>()?,
        ),
        DType::Boolean => Values::Bool(
            scalars
                .into_iter()
                .map(|s| match s {
                    Scalar::Bool(v) => Ok(v),
                    _ => Err(bad()),
                })
                .collect::<Result<_>>()?,
        ),
        DType::Varchar => Values::Str(
            scalars
                .into_iter()
                .map(|s| match s {
                    Scalar::Str(v) => Ok(v),
                    _ => Err(bad()),
                })
                .collect::<Result<_>>()?,
        ),
        _ => Values::Int(
            scalars
                .into_iter()
                .map(|s| match s {
                    Scalar::Int(v) | Scalar::Ts(v) => Ok(v),
                    Scalar::Interval(iv) if iv.months == 0 => Ok(iv.micros),
                    _ => Err(bad()),
                })
                .collect::<Result<_>>()?,
        ),
    };
    Ok(ColumnData {
        presence: RoaringBitmap::from_sorted_iter(presence).unwrap_or_default(),
        values,
    })
}

/// A global aggregate of a whole table (`SELECT max(a), min(b), count(c), count(*) FROM t`: no
/// WHERE, no GROUP BY, only `min`, `max` and `count` of plain columns) answered from the segment
/// footers' counts and statistics, without decoding a value: the journey runner's latest-stamp
/// query over every column of the state. `None` when an item is anything else, or when storage
/// cannot answer a partition's column from its footers (see `TableSnapshot::column_summary`); the
/// aggregate then reads the values.
pub(crate) fn from_footers(input: &crate::plan::Plan, items: &[(Agg, RelCol)]) -> Option<Relation> {
    use journeydb_storage::Stats;
    let crate::plan::Plan::Scan { table, cols, .. } = input else {
        return None;
    };
    let parts = table.partitions();
    let mut out = Vec::with_capacity(items.len());
    for (agg, col) in items {
        let column = |e: &Expr| match e {
            Expr::Col(j) if *j >= 1 && !cols.get(*j).is_some_and(|c| c.is_key) => Some((
                journeydb_storage::ColumnId((*j - 1) as u32),
                cols.get(*j)?.dtype,
            )),
            _ => None,
        };
        let value = match agg {
            Agg::CountStar => {
                let n: u64 = parts.iter().map(|p| table.rows(*p).len()).sum();
                Scalar::Int(i64::try_from(n).ok()?)
            }
            Agg::Count(e) => {
                let (id, _) = column(e)?;
                let mut n = 0u64;
                for p in &parts {
                    n += table.column_summary(*p, id)?.count;
                }
                Scalar::Int(i64::try_from(n).ok()?)
            }
            Agg::Min(e) | Agg::Max(e) => {
                let (id, t) = column(e)?;
                let min = matches!(agg, Agg::Min(_));
                let mut acc = None;
                for p in &parts {
                    let v = match table.column_summary(*p, id)?.stats {
                        None => continue,
                        Some(Stats::Int { min: lo, max: hi }) => {
                            let x = if min { lo } else { hi };
                            match t {
                                DType::Timestamp => Scalar::Ts(x),
                                DType::Bigint => Scalar::Int(x),
                                _ => return None,
                            }
                        }
                        Some(Stats::Float { min: lo, max: hi }) if t == DType::Double => {
                            Scalar::Float(if min { lo } else { hi })
                        }
                        Some(Stats::Bool { min: lo, max: hi }) if t == DType::Boolean => {
                            Scalar::Bool(if min { lo } else { hi })
                        }
                        Some(_) => return None,
                    };
                    crate::exec::fold_scalar(&mut acc, v, min);
                }
                acc.unwrap_or(Scalar::Null)
            }
            _ => return None,
        };
        out.push((value, col.dtype));
    }
    let mut frame_cols = Vec::with_capacity(out.len());
    for (v, t) in out {
        let (presence, scalars) = match v {
            Scalar::Null => (vec![], vec![]),
            v => (vec![0], vec![v]),
        };
        frame_cols.push(Some(column_of(presence, scalars, t).ok()?));
    }
    let mut rows = RoaringBitmap::new();
    rows.insert(0);
    let mut parts = std::collections::BTreeMap::new();
    parts.insert(PartitionId(0), vec![Frame::new(rows, frame_cols)]);
    Some(Relation {
        cols: items.iter().map(|(_, c)| c.clone()).collect(),
        parts,
    })
}
