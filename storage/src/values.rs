//! Typed value vectors, merge rules, and conversion to and from Arrow.
//!
//! A [`ColumnData`] is the unit the engine moves around: a roaring bitmap of the ordinals that have a
//! value, and the values of those ordinals in ascending ordinal order (`values[i]` belongs to the i-th
//! set bit). NULL is absence from the bitmap; there are no null slots in [`Values`].

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, LargeStringArray, StringArray,
    StringViewArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, TimeUnit};
use roaring::RoaringBitmap;

use crate::schema::{ColumnType, MergeRule};

/// Non-null values of one column, in ordinal order.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// TIMESTAMP (µs) and BIGINT.
    Int(Vec<i64>),
    /// DOUBLE.
    Float(Vec<f64>),
    /// BOOLEAN.
    Bool(Vec<bool>),
    /// VARCHAR.
    Str(Vec<String>),
}

impl Values {
    /// An empty vector of the storage class of `ty`.
    pub fn empty(ty: ColumnType) -> Values {
        Self::with_capacity(ty, 0)
    }

    /// An empty vector with room for `n` values.
    pub fn with_capacity(ty: ColumnType, n: usize) -> Values {
        match ty {
            ColumnType::Timestamp | ColumnType::Bigint => Values::Int(Vec::with_capacity(n)),
            ColumnType::Double => Values::Float(Vec::with_capacity(n)),
            ColumnType::Boolean => Values::Bool(Vec::with_capacity(n)),
            ColumnType::Varchar => Values::Str(Vec::with_capacity(n)),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Str(v) => v.len(),
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the storage class fits `ty`.
    pub fn fits(&self, ty: ColumnType) -> bool {
        matches!(
            (self, ty),
            (Values::Int(_), ColumnType::Timestamp | ColumnType::Bigint)
                | (Values::Float(_), ColumnType::Double)
                | (Values::Bool(_), ColumnType::Boolean)
                | (Values::Str(_), ColumnType::Varchar)
        )
    }

    /// The values as a non-null Arrow array of the SQL type `ty`.
    pub fn to_arrow(&self, ty: ColumnType) -> ArrayRef {
        match self {
            Values::Int(v) if ty == ColumnType::Timestamp => {
                Arc::new(TimestampMicrosecondArray::from(v.clone()))
            }
            Values::Int(v) => Arc::new(Int64Array::from(v.clone())),
            Values::Float(v) => Arc::new(Float64Array::from(v.clone())),
            Values::Bool(v) => Arc::new(BooleanArray::from(v.clone())),
            Values::Str(v) => Arc::new(StringArray::from_iter_values(v.iter())),
        }
    }
}

/// The Arrow type a column of `ty` is exchanged as.
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        ColumnType::Bigint => DataType::Int64,
        ColumnType::Double => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Varchar => DataType::Utf8,
    }
}

/// Extracts the non-null values of `array` at the row indices `rows` (in that order) as a validity
/// vector (one entry per row) and the valid values. `None` when the array's type does not fit `ty`.
pub fn from_arrow(
    array: &dyn Array,
    ty: ColumnType,
    rows: &[usize],
) -> Option<(Vec<bool>, Values)> {
    // The whole array in order (every append and load): validity bitmap and values buffer read
    // directly, not row by row through `is_valid` (a fifth of a bulk load's time before).
    if rows.len() == array.len() && rows.iter().enumerate().all(|(i, &r)| i == r) {
        if let Some(out) = whole_primitive(array, ty) {
            return Some(out);
        }
    }
    let valid: Vec<bool> = rows.iter().map(|&r| array.is_valid(r)).collect();
    let picked = rows
        .iter()
        .zip(&valid)
        .filter(|(_, v)| **v)
        .map(|(r, _)| *r);
    let any = array.as_any();
    if array.data_type() == &DataType::Null {
        return Some((vec![false; rows.len()], Values::empty(ty)));
    }
    let values = match (ty, array.data_type()) {
        (ColumnType::Timestamp, DataType::Timestamp(TimeUnit::Microsecond, _)) => {
            let a = any.downcast_ref::<TimestampMicrosecondArray>()?;
            Values::Int(picked.map(|r| a.value(r)).collect())
        }
        (ColumnType::Bigint, DataType::Int64) => {
            let a = any.downcast_ref::<Int64Array>()?;
            Values::Int(picked.map(|r| a.value(r)).collect())
        }
        (ColumnType::Double, DataType::Float64) => {
            let a = any.downcast_ref::<Float64Array>()?;
            Values::Float(picked.map(|r| a.value(r)).collect())
        }
        (ColumnType::Boolean, DataType::Boolean) => {
            let a = any.downcast_ref::<BooleanArray>()?;
            Values::Bool(picked.map(|r| a.value(r)).collect())
        }
        (ColumnType::Varchar, DataType::Utf8) => {
            let a = any.downcast_ref::<StringArray>()?;
            Values::Str(picked.map(|r| a.value(r).to_string()).collect())
        }
        (ColumnType::Varchar, DataType::LargeUtf8) => {
            let a = any.downcast_ref::<LargeStringArray>()?;
            Values::Str(picked.map(|r| a.value(r).to_string()).collect())
        }
        (ColumnType::Varchar, DataType::Utf8View) => {
            let a = any.downcast_ref::<StringViewArray>()?;
            Values::Str(picked.map(|r| a.value(r).to_string()).collect())
        }
        _ => return None,
    };
    Some((valid, values))
}

/// [`from_arrow`] of a whole TIMESTAMP, BIGINT or DOUBLE array; `None` for other types.
fn whole_primitive(array: &dyn Array, ty: ColumnType) -> Option<(Vec<bool>, Values)> {
    fn split<T: Copy>(
        vals: &[T],
        nulls: Option<&arrow_buffer::NullBuffer>,
        wrap: fn(Vec<T>) -> Values,
    ) -> (Vec<bool>, Values) {
        match nulls {
            None => (vec![true; vals.len()], wrap(vals.to_vec())),
            Some(n) => (
                n.iter().collect(),
                wrap(
                    n.valid_indices()
                        .filter_map(|i| vals.get(i).copied())
                        .collect(),
                ),
            ),
        }
    }
    let any = array.as_any();
    match (ty, array.data_type()) {
        (ColumnType::Timestamp, DataType::Timestamp(TimeUnit::Microsecond, _)) => {
            let a = any.downcast_ref::<TimestampMicrosecondArray>()?;
            Some(split(a.values(), a.nulls(), Values::Int))
        }
        (ColumnType::Bigint, DataType::Int64) => {
            let a = any.downcast_ref::<Int64Array>()?;
            Some(split(a.values(), a.nulls(), Values::Int))
        }
        (ColumnType::Double, DataType::Float64) => {
            let a = any.downcast_ref::<Float64Array>()?;
            Some(split(a.values(), a.nulls(), Values::Float))
        }
        _ => None,
    }
}

/// One column's values for a set of ordinals: `presence` says which ordinals have a value, `values`
/// holds them in ascending ordinal order.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnData {
    /// Ordinals with a value.
    pub presence: RoaringBitmap,
    /// Their values, in ordinal order; `values.len() == presence.len()`.
    pub values: Values,
}

impl ColumnData {
    /// An empty column of type `ty`.
    pub fn empty(ty: ColumnType) -> Self {
        ColumnData {
            presence: RoaringBitmap::new(),
            values: Values::empty(ty),
        }
    }

    /// Checks the invariant `values.len() == presence.len()`.
    pub fn is_consistent(&self) -> bool {
        self.presence.len() == self.values.len() as u64
    }
}

/// Most distinct values a column may have for [`ValueGroups`].
pub const GROUPS_MAX: usize = 1024;

/// A column as the ordinals of each of its distinct values: `keys[i]` holds at `bitmaps[i]`.
/// Grouping, counting and DISTINCT over a column of few values then work on bitmaps.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueGroups {
    /// The distinct values, one per group: in order of first occurrence, or ascending when built
    /// from a dictionary.
    pub keys: Values,
    /// The ordinals of each value.
    pub bitmaps: Vec<RoaringBitmap>,
}

impl ValueGroups {
    /// The groups of `c`, or `None` when it has more than [`GROUPS_MAX`] distinct values.
    pub fn build(c: &ColumnData) -> Option<ValueGroups> {
        fn group<K: std::hash::Hash + Eq + Clone>(
            presence: &RoaringBitmap,
            vals: &[K],
        ) -> Option<(Vec<K>, Vec<RoaringBitmap>)> {
            let mut index: hashbrown::HashMap<&K, usize> = hashbrown::HashMap::new();
            let mut keys: Vec<K> = Vec::new();
            let mut ords: Vec<Vec<u32>> = Vec::new();
            for (o, v) in presence.iter().zip(vals) {
                let g = match index.get(v) {
                    Some(g) => *g,
                    None => {
                        if keys.len() == GROUPS_MAX {
                            return None;
                        }
                        index.insert(v, keys.len());
                        keys.push(v.clone());
                        ords.push(Vec::new());
                        keys.len() - 1
                    }
                };
                if let Some(list) = ords.get_mut(g) {
                    list.push(o);
                }
            }
            let bitmaps = ords
                .into_iter()
                .map(|o| RoaringBitmap::from_sorted_iter(o).unwrap_or_default())
                .collect();
            Some((keys, bitmaps))
        }
        let (keys, bitmaps) = match &c.values {
            Values::Int(v) => group(&c.presence, v).map(|(k, b)| (Values::Int(k), b))?,
            Values::Str(v) => group(&c.presence, v).map(|(k, b)| (Values::Str(k), b))?,
            Values::Bool(v) => group(&c.presence, v).map(|(k, b)| (Values::Bool(k), b))?,
            Values::Float(v) => {
                let bits: Vec<u64> = v.iter().map(|x| x.to_bits()).collect();
                let (k, b) = group(&c.presence, &bits)?;
                (
                    Values::Float(k.into_iter().map(f64::from_bits).collect()),
                    b,
                )
            }
        };
        Some(ValueGroups { keys, bitmaps })
    }
}

impl ValueGroups {
    /// The groups of a DICT-encoded column: `dict` its distinct values, `idx` each value's index
    /// into it, in the order of the ordinals of `presence`. `None` when the counts differ or an
    /// index is out of range.
    pub fn from_dict(dict: Vec<i64>, idx: &[u32], presence: &RoaringBitmap) -> Option<ValueGroups> {
        if idx.len() as u64 != presence.len() {
            return None;
        }
        // Ordinals come in ascending order, so each one appends to the end of its bitmap.
        let mut bitmaps: Vec<RoaringBitmap> = vec![RoaringBitmap::new(); dict.len()];
        for (o, i) in presence.iter().zip(idx) {
            let _ = bitmaps.get_mut(*i as usize)?.try_push(o);
        }
        let (keys, bitmaps): (Vec<i64>, Vec<RoaringBitmap>) = dict
            .into_iter()
            .zip(bitmaps)
            .filter(|(_, b)| !b.is_empty())
            .unzip();
        Some(ValueGroups {
            keys: Values::Int(keys),
            bitmaps,
        })
    }

    /// The groups of one column split across sources that hold disjoint sets of ordinals (no
    /// ordinal has a value in two of them, so no merge rule applies): equal values' bitmaps are
    /// joined. `None` when the sources' types differ or the result has more than [`GROUPS_MAX`]
    /// distinct values.
    pub fn combine(parts: &[&ValueGroups]) -> Option<ValueGroups> {
        fn join<K: std::hash::Hash + Eq + Clone>(
            parts: &[(&[K], &[RoaringBitmap])],
        ) -> Option<(Vec<K>, Vec<RoaringBitmap>)> {
            let mut index: hashbrown::HashMap<&K, usize> = hashbrown::HashMap::new();
            let mut keys: Vec<K> = Vec::new();
            let mut bitmaps: Vec<RoaringBitmap> = Vec::new();
            for (ks, bs) in parts {
                for (k, b) in ks.iter().zip(bs.iter()) {
                    match index.get(k).and_then(|g| bitmaps.get_mut(*g)) {
                        Some(into) => *into |= b,
                        None => {
                            if keys.len() == GROUPS_MAX {
                                return None;
                            }
                            index.insert(k, keys.len());
                            keys.push(k.clone());
                            bitmaps.push(b.clone());
                        }
                    }
                }
            }
            Some((keys, bitmaps))
        }
        macro_rules! joined {
            ($variant:ident) => {{
                let mut v = Vec::with_capacity(parts.len());
                for g in parts {
                    let Values::$variant(ks) = &g.keys else {
                        return None;
                    };
                    v.push((ks.as_slice(), g.bitmaps.as_slice()));
                }
                let (k, b) = join(&v)?;
                (Values::$variant(k), b)
            }};
        }
        let (keys, bitmaps) = match &parts.first()?.keys {
            Values::Int(_) => joined!(Int),
            Values::Str(_) => joined!(Str),
            Values::Bool(_) => joined!(Bool),
            Values::Float(_) => {
                let mut bits = Vec::with_capacity(parts.len());
                for g in parts {
                    let Values::Float(ks) = &g.keys else {
                        return None;
                    };
                    bits.push(ks.iter().map(|x| x.to_bits()).collect::<Vec<u64>>());
                }
                let v: Vec<(&[u64], &[RoaringBitmap])> = bits
                    .iter()
                    .zip(parts)
                    .map(|(k, g)| (k.as_slice(), g.bitmaps.as_slice()))
                    .collect();
                let (k, b) = join(&v)?;
                (
                    Values::Float(k.into_iter().map(f64::from_bits).collect()),
                    b,
                )
            }
        };
        Some(ValueGroups { keys, bitmaps })
    }
}

/// Folds `new` into `old` under `rule`; `new` is the later value.
pub(crate) trait Fold: Clone {
    fn fold(old: &mut Self, new: &Self, rule: MergeRule);
}

impl Fold for i64 {
    #[inline]
    fn fold(old: &mut i64, new: &i64, rule: MergeRule) {
        *old = match rule {
            MergeRule::Min => (*old).min(*new),
            MergeRule::Max => (*old).max(*new),
            MergeRule::Sum => old.wrapping_add(*new),
            MergeRule::Last => *new,
        }
    }
}

impl Fold for f64 {
    #[inline]
    fn fold(old: &mut f64, new: &f64, rule: MergeRule) {
        // total_cmp orders NaN above every number, as DuckDB does.
        *old = match rule {
            MergeRule::Min => {
                if new.total_cmp(old).is_lt() {
                    *new
                } else {
                    *old
                }
            }
            MergeRule::Max => {
                if new.total_cmp(old).is_gt() {
                    *new
                } else {
                    *old
                }
            }
            MergeRule::Sum => *old + *new,
            MergeRule::Last => *new,
        }
    }
}

impl Fold for bool {
    #[inline]
    fn fold(old: &mut bool, new: &bool, rule: MergeRule) {
        *old = match rule {
            MergeRule::Min => *old && *new,
            MergeRule::Max => *old || *new,
            // SUM is refused for BOOLEAN by schema validation; LAST is the only other rule.
            MergeRule::Sum | MergeRule::Last => *new,
        }
    }
}

impl Fold for String {
    #[inline]
    fn fold(old: &mut String, new: &String, rule: MergeRule) {
        let take = match rule {
            MergeRule::Min => new < old,
            MergeRule::Max => new > old,
            MergeRule::Sum | MergeRule::Last => true,
        };
        if take {
            old.clone_from(new);
        }
    }
}

/// Merges several sources of one column (oldest first) into one, folding values of the same ordinal
/// with `rule`. Sources must be consistent ([`ColumnData::is_consistent`]) and of one storage class;
/// a source of another class is skipped (it cannot occur for data the engine wrote).
pub fn merge_columns(rule: MergeRule, ty: ColumnType, sources: &[&ColumnData]) -> ColumnData {
    match sources {
        [] => ColumnData::empty(ty),
        [one] => (*one).clone(),
        _ => {
            let mut presence = RoaringBitmap::new();
            for s in sources {
                presence |= &s.presence;
            }
            let values = match Values::empty(ty) {
                Values::Int(_) => Values::Int(merge_typed(rule, &presence, sources, |v| match v {
                    Values::Int(x) => Some(x.as_slice()),
                    _ => None,
                })),
                Values::Float(_) => {
                    Values::Float(merge_typed(rule, &presence, sources, |v| match v {
                        Values::Float(x) => Some(x.as_slice()),
                        _ => None,
                    }))
                }
                Values::Bool(_) => {
                    Values::Bool(merge_typed(rule, &presence, sources, |v| match v {
                        Values::Bool(x) => Some(x.as_slice()),
                        _ => None,
                    }))
                }
                Values::Str(_) => Values::Str(merge_typed(rule, &presence, sources, |v| match v {
                    Values::Str(x) => Some(x.as_slice()),
                    _ => None,
                })),
            };
            ColumnData { presence, values }
        }
    }
}

/// Two sources (a state and a delta): one pass over both, in ordinal order, folding equal ordinals.
/// Ordinals are read 1,024 at a time ([`Ords`]) and a run of one source's values below the other's
/// next ordinal is copied as one slice: per-ordinal bitmap iteration was a third of a MIN-merge.
fn merge_two<T: Fold>(
    rule: MergeRule,
    n: usize,
    a: &RoaringBitmap,
    av: &[T],
    b: &RoaringBitmap,
    bv: &[T],
) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    let (mut oa, mut ob) = (Ords::new(a), Ords::new(b));
    // Values consumed so far of each source; consistent sources hold one value per ordinal.
    let (mut ia, mut ib) = (0usize, 0usize);
    loop {
        match (oa.peek(), ob.peek()) {
            (Some(x), Some(y)) if x < y => {
                let run = oa.skip_below(y);
                out.extend_from_slice(run_of(av, ia, run));
                ia += run;
            }
            (Some(x), Some(y)) if y < x => {
                let run = ob.skip_below(x);
                out.extend_from_slice(run_of(bv, ib, run));
                ib += run;
            }
            (Some(_), Some(_)) => {
                if let (Some(x), Some(y)) = (av.get(ia), bv.get(ib)) {
                    let mut v = x.clone();
                    T::fold(&mut v, y, rule);
                    out.push(v);
                }
                oa.advance();
                ob.advance();
                ia += 1;
                ib += 1;
            }
            (Some(_), None) => {
                out.extend_from_slice(av.get(ia..).unwrap_or_default());
                return out;
            }
            (None, Some(_)) => {
                out.extend_from_slice(bv.get(ib..).unwrap_or_default());
                return out;
            }
            (None, None) => return out,
        }
    }
}

/// `run` values of `v` from `at`, or as many as there are.
fn run_of<T>(v: &[T], at: usize, run: usize) -> &[T] {
    let end = (at + run).min(v.len());
    v.get(at.min(end)..end).unwrap_or_default()
}

/// A bitmap's ordinals in ascending order, read in batches with `next_many`.
struct Ords<'a> {
    iter: roaring::bitmap::Iter<'a>,
    buf: Vec<u32>,
    pos: usize,
    len: usize,
}

impl<'a> Ords<'a> {
    fn new(bitmap: &'a RoaringBitmap) -> Self {
        Ords {
            iter: bitmap.iter(),
            buf: vec![0; 1024],
            pos: 0,
            len: 0,
        }
    }

    /// The next ordinal, without consuming it.
    #[inline]
    fn peek(&mut self) -> Option<u32> {
        if self.pos == self.len {
            self.len = self.iter.next_many(&mut self.buf).len();
            self.pos = 0;
        }
        self.buf
            .get(self.pos)
            .copied()
            .filter(|_| self.pos < self.len)
    }

    #[inline]
    fn advance(&mut self) {
        self.pos += 1;
    }

    /// Consumes the buffered ordinals below `bound` (at least the next one, which the caller saw is
    /// below it) and says how many.
    #[inline]
    fn skip_below(&mut self, bound: u32) -> usize {
        let rest = self.buf.get(self.pos..self.len).unwrap_or_default();
        let run = rest.iter().take_while(|&&o| o < bound).count();
        self.pos += run;
        run
    }
}

/// Merges the sources in ordinal order: two by [`merge_two`], up to [`MANY_MAX`] by
/// [`merge_many`], more through a scratch vector over their span.
fn merge_typed<T: Fold>(
    rule: MergeRule,
    union: &RoaringBitmap,
    sources: &[&ColumnData],
    slice: impl Fn(&Values) -> Option<&[T]>,
) -> Vec<T> {
    let typed: Vec<(&RoaringBitmap, &[T])> = sources
        .iter()
        .filter_map(|s| Some((&s.presence, slice(&s.values)?)))
        .collect();
    let n = union.len() as usize;
    match typed.as_slice() {
        [] => Vec::new(),
        [(_, v)] => v.to_vec(),
        [(a, av), (b, bv)] => merge_two(rule, n, a, av, b, bv),
        _ if typed.len() <= MANY_MAX => merge_many(rule, n, &typed),
        _ => merge_scratch(rule, union, &typed),
    }
}

/// Most sources [`merge_many`] takes: it scans every source at each step, so many sparse sources
/// (16 of about 2,600 ordinals each in 262,144) merge faster through [`merge_scratch`] (0.78 ms
/// against 1.8 ms); three to seven merge 1.2-4.5x faster by it (`merge_columns` timed 100 times on
/// one partition of 262,144 ordinals, 2026-12-08).
const MANY_MAX: usize = 8;

/// Dense-scratch merge: one slot per ordinal in the span of `union`, so the cost is the span plus the
/// values, whatever the number of sources.
fn merge_scratch<T: Fold>(
    rule: MergeRule,
    union: &RoaringBitmap,
    sources: &[(&RoaringBitmap, &[T])],
) -> Vec<T> {
    let (Some(lo), Some(hi)) = (union.min(), union.max()) else {
        return Vec::new();
    };
    let span = (hi - lo) as u64 + 1;
    if span > DENSE_SPAN_MAX && span > 8 * union.len() {
        return merge_sparse(rule, sources);
    }
    let mut slots: Vec<Option<T>> = vec![None; (hi - lo) as usize + 1];
    for (presence, vals) in sources {
        for (ord, v) in presence.iter().zip(*vals) {
            if let Some(slot) = slots.get_mut((ord - lo) as usize) {
                match slot {
                    Some(old) => T::fold(old, v, rule),
                    None => *slot = Some(v.clone()),
                }
            }
        }
    }
    slots.into_iter().flatten().collect()
}

/// Widest ordinal span merged through a dense scratch vector; wider, sparser inputs use a tree.
const DENSE_SPAN_MAX: u64 = 1 << 22;

fn merge_sparse<T: Fold>(rule: MergeRule, sources: &[(&RoaringBitmap, &[T])]) -> Vec<T> {
    let mut map: std::collections::BTreeMap<u32, T> = std::collections::BTreeMap::new();
    for (presence, vals) in sources {
        for (ord, v) in presence.iter().zip(*vals) {
            match map.get_mut(&ord) {
                Some(old) => T::fold(old, v, rule),
                None => {
                    map.insert(ord, v.clone());
                }
            }
        }
    }
    map.into_values().collect()
}

/// Three to [`MANY_MAX`] sources (oldest first): one pass over all of them in ordinal order. Each step
/// finds the smallest and second smallest next ordinal among the sources; when one source alone
/// holds the smallest, its run of ordinals below the second is copied as one slice, otherwise the
/// values at that ordinal are folded in source order (as appends would have folded them).
///
/// For these it replaced [`merge_scratch`]: one `Option<T>` per ordinal of the sources' span (4 MiB
/// per column of a full partition, fresh pages the kernel clears, then a pass over all of them).
/// In a profile of the journey run's sampled check, which reads the state at three or four pieces
/// a partition, that allocation and its page faults were about a sixth of the samples.
fn merge_many<T: Fold>(rule: MergeRule, n: usize, sources: &[(&RoaringBitmap, &[T])]) -> Vec<T> {
    struct Cursor<'a, T> {
        ords: Ords<'a>,
        vals: &'a [T],
        at: usize,
    }
    let mut cur: Vec<Cursor<'_, T>> = sources
        .iter()
        .map(|(p, v)| Cursor {
            ords: Ords::new(p),
            vals: v,
            at: 0,
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    loop {
        // The smallest next ordinal (as u64: u32::MAX is an ordinal), the source holding it
        // first, whether another holds it too, and the second smallest.
        let (mut min, mut second, mut who, mut tie) = (u64::MAX, u64::MAX, usize::MAX, false);
        for (i, c) in cur.iter_mut().enumerate() {
            let Some(o) = c.ords.peek().map(u64::from) else {
                continue;
            };
            if o < min {
                (second, min, who, tie) = (min, o, i, false);
            } else if o == min {
                tie = true;
            } else if o < second {
                second = o;
            }
        }
        let Some(c) = cur.get_mut(who) else {
            return out;
        };
        if !tie {
            if second == u64::MAX {
                // The other sources are done: the rest of this one.
                out.extend_from_slice(c.vals.get(c.at..).unwrap_or_default());
                return out;
            }
            // `second` is an ordinal above `min`, so below u32::MAX + 1.
            let run = c.ords.skip_below(second as u32);
            out.extend_from_slice(run_of(c.vals, c.at, run));
            c.at += run;
            continue;
        }
        let mut folded: Option<T> = None;
        for c in &mut cur {
            if c.ords.peek().map(u64::from) != Some(min) {
                continue;
            }
            if let Some(v) = c.vals.get(c.at) {
                match &mut folded {
                    Some(acc) => T::fold(acc, v, rule),
                    None => folded = Some(v.clone()),
                }
            }
            c.ords.advance();
            c.at += 1;
        }
        out.extend(folded);
    }
}

/// `valid` packed 8 to a byte, LSB first (bit `i % 8` of byte `i / 8`): the layout of a WAL
/// record's validity and of a roaring bitmap's `from_lsb0_bytes`.
pub fn validity_bytes(valid: &[bool]) -> impl Iterator<Item = u8> + '_ {
    valid.chunks(8).map(|byte| {
        byte.iter()
            .enumerate()
            .fold(0u8, |b, (i, &v)| b | (u8::from(v) << i))
    })
}

/// [`fold_rows`] for rows whose ordinals strictly increase (a batch of new keys, registered in
/// row order): nothing to sort or fold, the valid values are already one per ordinal, in order.
pub fn fold_increasing_rows(ordinals: &[u32], valid: &[bool], values: &Values) -> ColumnData {
    debug_assert!(ordinals.windows(2).all(|w| matches!(w, [a, b] if a < b)));
    let presence = match (ordinals.first(), ordinals.last()) {
        // Consecutive ordinals (new keys): the validity bits are the bitmap, shifted.
        (Some(&first), Some(&last))
            if (last - first) as usize + 1 == ordinals.len()
                && first as u64 + (ordinals.len() as u64 + 16) <= u32::MAX as u64 =>
        {
            let bytes: Vec<u8> = validity_bytes(valid).collect();
            RoaringBitmap::from_lsb0_bytes(first, &bytes)
        }
        _ => {
            let valid_ords = ordinals
                .iter()
                .zip(valid)
                .filter(|(_, v)| **v)
                .map(|(o, _)| *o);
            // The ordinals increase, so from_sorted_iter cannot fail.
            RoaringBitmap::from_sorted_iter(valid_ords).unwrap_or_default()
        }
    };
    ColumnData {
        presence,
        values: values.clone(),
    }
}

/// Folds rows given in arrival order (`ordinals[i]` with `valid[i]`, valid values in `values`) into a
/// [`ColumnData`]: sorted by ordinal, one value per ordinal, later rows folded into earlier ones.
pub fn fold_rows(rule: MergeRule, ordinals: &[u32], valid: &[bool], values: &Values) -> ColumnData {
    // Pair each valid row with its index among the valid values, then sort stably by ordinal so
    // rows of one ordinal keep arrival order (which LAST depends on).
    let mut idx: Vec<(u32, usize)> = ordinals
        .iter()
        .zip(valid)
        .filter(|(_, v)| **v)
        .map(|(o, _)| *o)
        .enumerate()
        .map(|(i, o)| (o, i))
        .collect();
    idx.sort_by_key(|&(o, _)| o);
    let mut ords: Vec<u32> = idx.iter().map(|&(o, _)| o).collect();
    ords.dedup();
    // `ords` is sorted and deduplicated, so from_sorted_iter cannot fail.
    let presence = RoaringBitmap::from_sorted_iter(ords).unwrap_or_default();
    let values = match values {
        Values::Int(v) => Values::Int(fold_sorted(rule, &idx, v)),
        Values::Float(v) => Values::Float(fold_sorted(rule, &idx, v)),
        Values::Bool(v) => Values::Bool(fold_sorted(rule, &idx, v)),
        Values::Str(v) => Values::Str(fold_sorted(rule, &idx, v)),
    };
    ColumnData { presence, values }
}

fn fold_sorted<T: Fold>(rule: MergeRule, idx: &[(u32, usize)], vals: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(idx.len());
    let mut last_ord = None;
    for &(o, i) in idx {
        let Some(v) = vals.get(i) else { continue };
        if last_ord == Some(o) {
            if let Some(prev) = out.last_mut() {
                T::fold(prev, v, rule);
            }
        } else {
            out.push(v.clone());
            last_ord = Some(o);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn value_groups_hold_each_value_ordinals_up_to_the_limit() {
        let c = ColumnData {
            presence: [1, 4, 5, 9].into_iter().collect(),
            values: Values::Str(vec!["b".into(), "a".into(), "b".into(), "c".into()]),
        };
        let g = ValueGroups::build(&c).unwrap();
        assert_eq!(
            g.keys,
            Values::Str(vec!["b".into(), "a".into(), "c".into()])
        );
        let b: Vec<Vec<u32>> = g.bitmaps.iter().map(|b| b.iter().collect()).collect();
        assert_eq!(b, vec![vec![1, 5], vec![4], vec![9]]);
        let many = ColumnData {
            presence: (0..GROUPS_MAX as u32 + 1).collect(),
            values: Values::Int((0..GROUPS_MAX as i64 + 1).collect()),
        };
        assert!(ValueGroups::build(&many).is_none());
        let floats = ColumnData {
            presence: [0, 1].into_iter().collect(),
            values: Values::Float(vec![1.5, 1.5]),
        };
        assert_eq!(ValueGroups::build(&floats).unwrap().bitmaps.len(), 1);
    }

    #[test]
    fn combined_groups_equal_the_groups_of_the_whole_column() {
        let a = ColumnData {
            presence: [1, 4, 5].into_iter().collect(),
            values: Values::Str(vec!["b".into(), "a".into(), "b".into()]),
        };
        let b = ColumnData {
            presence: [2, 9].into_iter().collect(),
            values: Values::Str(vec!["c".into(), "a".into()]),
        };
        let (ga, gb) = (
            ValueGroups::build(&a).unwrap(),
            ValueGroups::build(&b).unwrap(),
        );
        let g = ValueGroups::combine(&[&ga, &gb]).unwrap();
        assert_eq!(
            g.keys,
            Values::Str(vec!["b".into(), "a".into(), "c".into()])
        );
        let bits: Vec<Vec<u32>> = g.bitmaps.iter().map(|b| b.iter().collect()).collect();
        assert_eq!(bits, vec![vec![1, 5], vec![4, 9], vec![2]]);
        // Types that differ, and a join beyond the limit, give no groups.
        let ints = ValueGroups::build(&col(&[(3, 7)])).unwrap();
        assert!(ValueGroups::combine(&[&ga, &ints]).is_none());
        let half = GROUPS_MAX as i64 / 2 + 1;
        let lo = ValueGroups::build(&ColumnData {
            presence: (0..half as u32).collect(),
            values: Values::Int((0..half).collect()),
        })
        .unwrap();
        let hi = ValueGroups::build(&ColumnData {
            presence: (half as u32..2 * half as u32).collect(),
            values: Values::Int((half..2 * half).collect()),
        })
        .unwrap();
        assert!(ValueGroups::combine(&[&lo, &hi]).is_none());
        assert_eq!(
            ValueGroups::combine(&[&lo, &lo]).unwrap().bitmaps.len(),
            half as usize
        );
    }

    fn col(pairs: &[(u32, i64)]) -> ColumnData {
        ColumnData {
            presence: pairs.iter().map(|p| p.0).collect(),
            values: Values::Int(pairs.iter().map(|p| p.1).collect()),
        }
    }

    #[test]
    fn merge_applies_each_rule() {
        let a = col(&[(1, 10), (5, 50)]);
        let b = col(&[(1, 3), (2, 20), (5, 70)]);
        let m = merge_columns(MergeRule::Min, ColumnType::Timestamp, &[&a, &b]);
        assert_eq!(m, col(&[(1, 3), (2, 20), (5, 50)]));
        let m = merge_columns(MergeRule::Max, ColumnType::Bigint, &[&a, &b]);
        assert_eq!(m, col(&[(1, 10), (2, 20), (5, 70)]));
        let m = merge_columns(MergeRule::Sum, ColumnType::Bigint, &[&a, &b]);
        assert_eq!(m, col(&[(1, 13), (2, 20), (5, 120)]));
        let m = merge_columns(MergeRule::Last, ColumnType::Bigint, &[&b, &a]);
        assert_eq!(m, col(&[(1, 10), (2, 20), (5, 50)]));
        assert!(merge_columns(MergeRule::Min, ColumnType::Bigint, &[])
            .presence
            .is_empty());
    }

    /// A xorshift generator.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// The model of a merge: `(ordinal, value)` pairs folded into a map in order.
    fn folded<'a>(pairs: impl Iterator<Item = &'a (u32, i64)>, rule: MergeRule) -> Vec<(u32, i64)> {
        let mut model = std::collections::BTreeMap::new();
        for &(o, v) in pairs {
            model
                .entry(o)
                .and_modify(|old| i64::fold(old, &v, rule))
                .or_insert(v);
        }
        model.into_iter().collect()
    }

    /// Two sources merged in one pass equal a map folded ordinal by ordinal, for dense and sparse
    /// sources, runs longer than a batch of ordinals, and ordinals across several containers.
    #[test]
    fn two_sources_merge_like_a_map() {
        let mut next = xorshift(0x9E37_79B9);
        for (da, db, span) in [
            (900u64, 100u64, 300_000u32),
            (100, 900, 300_000),
            (500, 500, 5_000),
            (1000, 10, 200_000),
            (3, 3, 1_000_000),
            (0, 500, 1000),
        ] {
            let mut pick = |d: u64| -> Vec<(u32, i64)> {
                (0..span)
                    .filter_map(|o| {
                        let r = next();
                        (r % 1000 < d).then_some((o, ((r >> 20) % 1000) as i64 - 500))
                    })
                    .collect()
            };
            let (pa, pb) = (pick(da), pick(db));
            for rule in [
                MergeRule::Min,
                MergeRule::Max,
                MergeRule::Sum,
                MergeRule::Last,
            ] {
                let want = folded(pa.iter().chain(&pb), rule);
                let got = merge_columns(rule, ColumnType::Bigint, &[&col(&pa), &col(&pb)]);
                assert_eq!(got, col(&want), "{rule:?} densities {da}/{db} per 1000");
            }
        }
    }

    /// Three to eleven sources (one pass up to `MANY_MAX`, a scratch vector past it), disjoint,
    /// overlapping or equal, sparse and dense, with `u32::MAX` as an ordinal: the merge equals
    /// folding every value into a map in source order (LAST keeps the newest source's value).
    #[test]
    fn many_sources_merge_like_a_map() {
        let mut next = xorshift(0x2545_F491);
        for round in 0..60u64 {
            let k = 3 + (round % 8) as usize;
            let span = [50u32, 5_000, 300_000][(round % 3) as usize];
            let mut srcs: Vec<Vec<(u32, i64)>> = Vec::new();
            for i in 0..k {
                // Densities from 1 to 999 per 1000; some sources only in one half of the span.
                let d = 1 + next() % 999;
                let half = (round + i as u64).is_multiple_of(5);
                let mut v: Vec<(u32, i64)> = (0..span)
                    .filter(|o| !half || *o < span / 2)
                    .filter_map(|o| {
                        let r = next();
                        (r % 1000 < d).then_some((o, ((r >> 20) % 1000) as i64 - 500))
                    })
                    .collect();
                if next().is_multiple_of(4) {
                    v.push((u32::MAX, (next() % 100) as i64));
                }
                srcs.push(v);
            }
            if round % 7 == 0 {
                // Two equal sources.
                let copy = srcs[0].clone();
                srcs.push(copy);
            }
            for rule in [
                MergeRule::Min,
                MergeRule::Max,
                MergeRule::Sum,
                MergeRule::Last,
            ] {
                let want = folded(srcs.iter().flatten(), rule);
                let cols: Vec<ColumnData> = srcs.iter().map(|v| col(v)).collect();
                let refs: Vec<&ColumnData> = cols.iter().collect();
                let got = merge_columns(rule, ColumnType::Bigint, &refs);
                assert_eq!(got, col(&want), "{rule:?} round {round}");
            }
        }
    }

    #[test]
    fn increasing_rows_fold_like_any_rows() {
        let gaps: Vec<u32> = (0..5000u32).map(|i| i * 3 + (i % 7)).collect();
        let gaps: Vec<u32> = gaps
            .windows(2)
            .filter(|w| w[0] < w[1])
            .map(|w| w[1])
            .collect();
        // Consecutive runs from offsets that are and are not multiples of 8, across containers.
        for ords in [
            gaps,
            (3..70_003).collect(),
            (65_536..65_636).collect(),
            vec![9],
        ] {
            let valid: Vec<bool> = (0..ords.len()).map(|i| i % 5 != 2).collect();
            let n = valid.iter().filter(|v| **v).count();
            let vals = Values::Int((0..n as i64).map(|i| i * 37 % 101).collect());
            for rule in [MergeRule::Min, MergeRule::Last] {
                assert_eq!(
                    fold_increasing_rows(&ords, &valid, &vals),
                    fold_rows(rule, &ords, &valid, &vals)
                );
            }
        }
    }

    #[test]
    fn fold_rows_keeps_arrival_order_for_last() {
        let ords = [7, 3, 7, 9, 7];
        let valid = [true, true, true, false, true];
        let vals = Values::Int(vec![1, 2, 3, 4]);
        let c = fold_rows(MergeRule::Last, &ords, &valid, &vals);
        assert_eq!(c, col(&[(3, 2), (7, 4)]));
        let c = fold_rows(MergeRule::Min, &ords, &valid, &vals);
        assert_eq!(c, col(&[(3, 2), (7, 1)]));
        let c = fold_rows(MergeRule::Sum, &ords, &valid, &vals);
        assert_eq!(c, col(&[(3, 2), (7, 8)]));
    }

    #[test]
    fn extreme_values_fold() {
        let a = col(&[(0, i64::MIN), (u32::MAX, i64::MAX)]);
        let b = col(&[(0, i64::MAX), (u32::MAX, i64::MIN)]);
        let m = merge_columns(MergeRule::Min, ColumnType::Bigint, &[&a, &b]);
        assert_eq!(m, col(&[(0, i64::MIN), (u32::MAX, i64::MIN)]));
    }
}
