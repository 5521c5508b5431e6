//! Vectors: the values an expression takes over one frame (one partition of a relation).
//!
//! A vector is a constant, a column (a presence bitmap and the values of those ordinals, in ordinal
//! order: NULL is absence), or a three-valued boolean (the bitmap of rows where it is TRUE and the
//! bitmap where it is NULL; FALSE is the rest of the frame's rows). Predicates never materialize
//! per-row booleans: AND / OR / NOT are bitmap operations.

use std::borrow::Cow;

use journeydb_storage::{ColumnData, Values};
use roaring::RoaringBitmap;

use crate::error::{QueryError, Result};
use crate::types::{add_interval, DType, Interval, Scalar};

/// An expression's value over a frame.
#[derive(Debug, Clone)]
pub enum Vector<'a> {
    /// The same value on every row (NULL included).
    Const(Scalar),
    /// Values of the ordinals in `presence`; NULL elsewhere.
    Col(Cow<'a, ColumnData>, DType),
    /// A predicate: TRUE on `t`, NULL on `n`, FALSE on the other rows.
    Bool {
        /// Rows where it is TRUE.
        t: RoaringBitmap,
        /// Rows where it is NULL.
        n: RoaringBitmap,
    },
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

impl CmpOp {
    /// The operator with its operands exchanged (`a < b` is `b > a`).
    pub fn flip(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::LtEq => CmpOp::GtEq,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::GtEq => CmpOp::LtEq,
            o => o,
        }
    }

    fn holds(self, o: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Eq => o == Equal,
            CmpOp::NotEq => o != Equal,
            CmpOp::Lt => o == Less,
            CmpOp::LtEq => o != Greater,
            CmpOp::Gt => o == Greater,
            CmpOp::GtEq => o != Less,
        }
    }

    /// SQL text.
    pub fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::NotEq => "<>",
            CmpOp::Lt => "<",
            CmpOp::LtEq => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtEq => ">=",
        }
    }
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (always DOUBLE, as in DuckDB)
    Div,
}

impl ArithOp {
    /// SQL text.
    pub fn sql(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }
}

/// The values of `c` at the ordinals of `sub` (which must be a subset of `c.presence`).
pub fn gather(c: &ColumnData, sub: &RoaringBitmap) -> Values {
    select(&c.values, &member_mask(&c.presence, sub))
}

/// For each ordinal of `of`, in order, whether `sub` holds it. `sub` is laid out as bits over
/// `of`'s span and `of` is walked in chunks, a bit test each: a merge of the two iterators, one
/// ordinal at a time, was most of the time of a comparison over a sample (`restrict` of each
/// loaded column to the sampled rows).
fn member_mask(of: &RoaringBitmap, sub: &RoaringBitmap) -> Vec<bool> {
    let mut bits = OrdinalBits::over(of);
    if let (Some(lo), Some(hi)) = (of.min(), of.max()) {
        chunks_of(sub.range(lo..=hi), |ords, _| {
            ords.iter().for_each(|o| bits.set_if(*o, true));
        });
    }
    let mut mask = Vec::with_capacity(of.len() as usize);
    for_each_chunk(of, |ords, _| {
        mask.extend(ords.iter().map(|o| bits.contains(*o)));
    });
    mask
}

/// The values whose mask entry is true.
pub fn select(v: &Values, mask: &[bool]) -> Values {
    fn pick<T: Clone>(v: &[T], mask: &[bool]) -> Vec<T> {
        v.iter()
            .zip(mask)
            .filter(|(_, m)| **m)
            .map(|(x, _)| x.clone())
            .collect()
    }
    /// Without a branch on the mask: every value is written, and the next one goes to the next
    /// place only when this one was kept.
    fn pick_copy<T: Copy + Default>(v: &[T], mask: &[bool]) -> Vec<T> {
        let mut out = vec![T::default(); v.len().min(mask.len())];
        let mut j = 0;
        for (x, m) in v.iter().zip(mask) {
            if let Some(slot) = out.get_mut(j) {
                *slot = *x;
            }
            j += usize::from(*m);
        }
        out.truncate(j);
        out
    }
    match v {
        Values::Int(x) => Values::Int(pick_copy(x, mask)),
        Values::Float(x) => Values::Float(pick_copy(x, mask)),
        Values::Bool(x) => Values::Bool(pick_copy(x, mask)),
        Values::Str(x) => Values::Str(pick(x, mask)),
    }
}

/// `c` restricted to the ordinals in `rows`.
pub fn restrict(c: &ColumnData, rows: &RoaringBitmap) -> ColumnData {
    if c.presence.is_subset(rows) {
        return c.clone();
    }
    if c.values.is_empty() {
        // A presence-only column (no values were read): only the bitmap is cut down.
        return ColumnData {
            presence: &c.presence & rows,
            values: c.values.clone(),
        };
    }
    let presence = &c.presence & rows;
    let values = gather(c, &presence);
    ColumnData { presence, values }
}

fn repeat(s: &Scalar, n: usize) -> Option<Values> {
    Some(match s {
        Scalar::Ts(v) | Scalar::Int(v) => Values::Int(vec![*v; n]),
        Scalar::Interval(iv) if iv.months == 0 => Values::Int(vec![iv.micros; n]),
        Scalar::Float(v) => Values::Float(vec![*v; n]),
        Scalar::Bool(v) => Values::Bool(vec![*v; n]),
        Scalar::Str(v) => Values::Str(vec![v.clone(); n]),
        Scalar::Null | Scalar::Interval(_) => return None,
    })
}

impl<'a> Vector<'a> {
    /// As a column over `rows` (constants broadcast, predicates become BOOLEAN values).
    pub fn into_column(self, rows: &RoaringBitmap) -> Result<ColumnData> {
        Ok(match self {
            Vector::Col(c, _) => c.into_owned(),
            Vector::Const(Scalar::Interval(iv)) if iv.months != 0 => {
                return Err(QueryError::Unsupported(
                    "an INTERVAL of months in a result column".into(),
                ))
            }
            Vector::Const(s) => match repeat(&s, rows.len() as usize) {
                Some(values) => ColumnData {
                    presence: rows.clone(),
                    values,
                },
                None => ColumnData {
                    presence: RoaringBitmap::new(),
                    values: Values::Int(Vec::new()),
                },
            },
            Vector::Bool { t, n } => {
                let presence = rows - &n;
                let values = Values::Bool(presence.iter().map(|o| t.contains(o)).collect());
                ColumnData { presence, values }
            }
        })
    }

    /// As a predicate over `rows`: (TRUE rows, NULL rows).
    pub fn into_bool(self, rows: &RoaringBitmap) -> Result<(RoaringBitmap, RoaringBitmap)> {
        Ok(match self {
            Vector::Bool { t, n } => (t, n),
            Vector::Const(Scalar::Bool(true)) => (rows.clone(), RoaringBitmap::new()),
            Vector::Const(Scalar::Bool(false)) => (RoaringBitmap::new(), RoaringBitmap::new()),
            Vector::Const(Scalar::Null) => (RoaringBitmap::new(), rows.clone()),
            Vector::Col(c, DType::Boolean) => {
                let Values::Bool(v) = &c.values else {
                    return Err(QueryError::Internal(
                        "boolean column without booleans".into(),
                    ));
                };
                let t = RoaringBitmap::from_sorted_iter(
                    c.presence
                        .iter()
                        .zip(v)
                        .filter(|(_, b)| **b)
                        .map(|(o, _)| o),
                )
                .unwrap_or_default();
                (t, rows - &c.presence)
            }
            other => {
                return Err(QueryError::Type(format!(
                    "a {} value is not a condition",
                    other.dtype().name()
                )))
            }
        })
    }

    /// The type of the vector.
    pub fn dtype(&self) -> DType {
        match self {
            Vector::Const(s) => s.dtype(),
            Vector::Col(_, t) => *t,
            Vector::Bool { .. } => DType::Boolean,
        }
    }

    fn normalize(self, rows: &RoaringBitmap) -> Result<Vector<'a>> {
        Ok(match self {
            b @ Vector::Bool { .. } => {
                Vector::Col(Cow::Owned(b.into_column(rows)?), DType::Boolean)
            }
            v => v,
        })
    }
}

/// Three-valued AND.
pub fn and<'a>(a: Vector<'_>, b: Vector<'_>, rows: &RoaringBitmap) -> Result<Vector<'a>> {
    let (mut t, na) = a.into_bool(rows)?;
    let (tb, nb) = b.into_bool(rows)?;
    // NULL where neither side is FALSE and one is NULL: (na ∩ (tb ∪ nb)) ∪ (ta ∩ nb). Written
    // without `rows`: a chain of IS NULL tests (the runner's state patterns) costs one bitmap
    // operation per link, not six.
    let n = if na.is_empty() && nb.is_empty() {
        RoaringBitmap::new()
    } else {
        let mut n = &na & &(&tb | &nb);
        n |= &t & &nb;
        n
    };
    t &= &tb;
    Ok(Vector::Bool { t, n })
}

/// Three-valued OR.
pub fn or<'a>(a: Vector<'_>, b: Vector<'_>, rows: &RoaringBitmap) -> Result<Vector<'a>> {
    let (mut t, mut n) = a.into_bool(rows)?;
    let (tb, nb) = b.into_bool(rows)?;
    t |= &tb;
    // NULL where neither side is TRUE and one is NULL.
    if !(n.is_empty() && nb.is_empty()) {
        n |= &nb;
        n -= &t;
    }
    Ok(Vector::Bool { t, n })
}

/// Three-valued NOT.
pub fn not<'a>(a: Vector<'_>, rows: &RoaringBitmap) -> Result<Vector<'a>> {
    let (t, n) = a.into_bool(rows)?;
    let f = rows - &(&t | &n);
    Ok(Vector::Bool { t: f, n })
}

/// `a IS [NOT] NULL`.
pub fn is_null<'a>(a: Vector<'_>, rows: &RoaringBitmap, negated: bool) -> Result<Vector<'a>> {
    let present = match a {
        Vector::Const(Scalar::Null) => RoaringBitmap::new(),
        Vector::Const(_) => rows.clone(),
        Vector::Col(c, _) => c.presence.clone(),
        Vector::Bool { n, .. } => rows - &n,
    };
    let t = if negated { present } else { rows - &present };
    Ok(Vector::Bool {
        t,
        n: RoaringBitmap::new(),
    })
}

/// The constant list of `x IN (v1, v2, ...)` as a hash set: membership costs one lookup per row
/// whatever the list's length (a list of 100,000 customer ids is an ordinary query).
#[derive(Debug, Clone, Default)]
pub struct InSet {
    keys: std::collections::HashSet<InKey>,
    /// The list holds a NULL: a row that matches nothing is then NULL, not FALSE.
    has_null: bool,
    /// The values as given (EXPLAIN shows them; equality of plans compares them).
    values: Vec<Scalar>,
}

/// A list element as a hashable key. Integers and integral doubles share one key, so `5 = 5.0`
/// matches as comparison does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum InKey {
    I(i64),
    F(u64),
    B(bool),
    S(String),
}

fn in_key(e: El<'_>) -> InKey {
    match e {
        El::I(v) => InKey::I(v),
        El::F(v) if v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64 => {
            InKey::I(v as i64)
        }
        El::F(v) if v.is_nan() => InKey::F(f64::NAN.to_bits()),
        El::F(v) => InKey::F(v.to_bits()),
        El::B(v) => InKey::B(v),
        El::S(v) => InKey::S(v.to_string()),
    }
}

impl PartialEq for InSet {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl InSet {
    /// The set of `values` (already cast to the tested expression's type by the planner).
    pub fn new(values: Vec<Scalar>) -> InSet {
        let mut set = InSet {
            keys: std::collections::HashSet::with_capacity(values.len()),
            has_null: false,
            values: Vec::new(),
        };
        for v in &values {
            match el_of(v) {
                Some(e) => {
                    set.keys.insert(in_key(e));
                }
                None => set.has_null = true,
            }
        }
        set.values = values;
        set
    }

    /// The values as given.
    pub fn values(&self) -> &[Scalar] {
        &self.values
    }

    fn test(&self, e: Option<El<'_>>) -> Option<bool> {
        match e {
            None => None,
            Some(e) if self.keys.contains(&in_key(e)) => Some(true),
            Some(_) if self.has_null => None,
            Some(_) => Some(false),
        }
    }
}

/// `a IN set` with SQL's three-valued result: TRUE on a match, NULL when `a` is NULL or nothing
/// matched and the list holds a NULL, FALSE otherwise.
pub fn in_list<'a>(a: Vector<'_>, set: &InSet, rows: &RoaringBitmap) -> Result<Vector<'a>> {
    let a = a.normalize(rows)?;
    match &a {
        Vector::Const(s) => Ok(Vector::Const(match set.test(el_of(s)) {
            Some(b) => Scalar::Bool(b),
            None => Scalar::Null,
        })),
        Vector::Col(c, _) => {
            let mut t = Vec::new();
            let mut n = Vec::new();
            for (i, ord) in c.presence.iter().enumerate() {
                let e = el_at(&c.values, i)
                    .ok_or_else(|| QueryError::Internal("short column".into()))?;
                match set.test(Some(e)) {
                    Some(true) => t.push(ord),
                    Some(false) => {}
                    None => n.push(ord),
                }
            }
            let n = RoaringBitmap::from_sorted_iter(n).unwrap_or_default() | (rows - &c.presence);
            Ok(Vector::Bool {
                t: RoaringBitmap::from_sorted_iter(t).unwrap_or_default(),
                n,
            })
        }
        Vector::Bool { .. } => Err(QueryError::Internal(
            "IN over an unnormalized vector".into(),
        )),
    }
}

/// A value of one element, for element-wise kernels.
#[derive(Clone, Copy, Debug)]
pub(crate) enum El<'a> {
    /// An integer: BIGINT, TIMESTAMP (µs) or INTERVAL (µs).
    I(i64),
    /// A DOUBLE.
    F(f64),
    /// A BOOLEAN.
    B(bool),
    /// A VARCHAR.
    S(&'a str),
}

/// Micros per month when intervals are compared (DuckDB normalizes a month to 30 days).
const MONTH_US: i64 = 30 * crate::types::US_PER_DAY;

pub(crate) fn el_of(s: &Scalar) -> Option<El<'_>> {
    Some(match s {
        Scalar::Ts(v) | Scalar::Int(v) => El::I(*v),
        Scalar::Float(v) => El::F(*v),
        Scalar::Bool(v) => El::B(*v),
        Scalar::Str(v) => El::S(v),
        // An interval compares by its length with a month as 30 days.
        Scalar::Interval(iv) => El::I(iv.months.saturating_mul(MONTH_US).saturating_add(iv.micros)),
        Scalar::Null => return None,
    })
}

pub(crate) fn el_at(v: &Values, i: usize) -> Option<El<'_>> {
    Some(match v {
        Values::Int(x) => El::I(*x.get(i)?),
        Values::Float(x) => El::F(*x.get(i)?),
        Values::Bool(x) => El::B(*x.get(i)?),
        Values::Str(x) => El::S(x.get(i)?),
    })
}

pub(crate) fn cmp_el(a: El<'_>, b: El<'_>) -> Option<std::cmp::Ordering> {
    Some(match (a, b) {
        (El::I(x), El::I(y)) => x.cmp(&y),
        (El::F(x), El::F(y)) => x.total_cmp(&y),
        (El::I(x), El::F(y)) => (x as f64).total_cmp(&y),
        (El::F(x), El::I(y)) => x.total_cmp(&(y as f64)),
        (El::B(x), El::B(y)) => x.cmp(&y),
        (El::S(x), El::S(y)) => x.cmp(y),
        _ => return None,
    })
}

/// Calls `f` with the ordinals of `bits` in ascending chunks, and the rank of each chunk's first
/// ordinal: batch iteration (`next_many`) instead of one iterator step per ordinal.
fn for_each_chunk(bits: &RoaringBitmap, f: impl FnMut(&[u32], usize)) {
    chunks_of(bits.iter(), f);
}

/// [`for_each_chunk`] over an iterator of a bitmap (a range of one).
fn chunks_of(mut it: roaring::bitmap::Iter<'_>, mut f: impl FnMut(&[u32], usize)) {
    let mut buf = [0u32; 2048];
    let mut rank = 0;
    loop {
        let got = it.next_many(&mut buf);
        if got.is_empty() {
            break;
        }
        f(got, rank);
        rank += got.len();
    }
}

/// The result of a comparison over a frame: the ordinals that passed, set as bits in one word
/// buffer over the frame's span, made a bitmap once at the end. Pushing each passing ordinal to a
/// vector and building the bitmap from it (`from_sorted_iter`) was most of a comparison's time
/// (perf of (a) at 10M customers: about 55% of the query, against 15% for decoding the values);
/// a bit set costs no branch on the outcome, and `from_lsb0_bytes` builds each container from
/// its words directly.
enum OrdinalBits {
    /// Ordinals from `base` (a multiple of 64), a bit each.
    Words { base: u32, words: Vec<u64> },
    /// For a span too wide for words (frames span a partition; this is for safety).
    Sorted(Vec<u32>),
}

impl OrdinalBits {
    /// Room for the ordinals of `span` (a comparison's result is a subset of its input's; a
    /// member mask holds only ordinals within its column's span).
    fn over(span: &RoaringBitmap) -> OrdinalBits {
        const WIDEST: u32 = 1 << 24;
        match (span.min(), span.max()) {
            (Some(lo), Some(hi)) if hi - lo < WIDEST => {
                let base = lo & !63;
                OrdinalBits::Words {
                    base,
                    words: vec![0; ((hi - base) / 64 + 1) as usize],
                }
            }
            _ => OrdinalBits::Sorted(Vec::new()),
        }
    }

    /// Adds `o` when `yes`; ordinals come in ascending order.
    #[inline]
    fn set_if(&mut self, o: u32, yes: bool) {
        match self {
            OrdinalBits::Words { base, words } => {
                let i = o.wrapping_sub(*base) as usize;
                if let Some(w) = words.get_mut(i / 64) {
                    *w |= u64::from(yes) << (i % 64);
                }
            }
            OrdinalBits::Sorted(v) => {
                if yes {
                    v.push(o);
                }
            }
        }
    }

    /// Whether `o` was added.
    #[inline]
    fn contains(&self, o: u32) -> bool {
        match self {
            OrdinalBits::Words { base, words } => {
                let i = o.wrapping_sub(*base) as usize;
                words.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
            }
            OrdinalBits::Sorted(v) => v.binary_search(&o).is_ok(),
        }
    }

    fn finish(self) -> RoaringBitmap {
        match self {
            OrdinalBits::Words { base, words } => {
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                RoaringBitmap::from_lsb0_bytes(base, &bytes)
            }
            // Ascending, so this cannot fail.
            OrdinalBits::Sorted(v) => RoaringBitmap::from_sorted_iter(v).unwrap_or_default(),
        }
    }
}

/// Ordinals of `presence` whose value (`values`, aligned) satisfies `value <op> k`: one monomorphized
/// loop per operator, over chunks of ordinals.
fn cmp_int_const(op: CmpOp, presence: &RoaringBitmap, values: &[i64], k: i64) -> RoaringBitmap {
    fn keep(presence: &RoaringBitmap, values: &[i64], f: impl Fn(i64) -> bool) -> RoaringBitmap {
        let mut out = OrdinalBits::over(presence);
        for_each_chunk(presence, |ords, rank| {
            let vals = values.get(rank..rank + ords.len()).unwrap_or_default();
            for (o, v) in ords.iter().zip(vals) {
                out.set_if(*o, f(*v));
            }
        });
        out.finish()
    }
    match op {
        CmpOp::Eq => keep(presence, values, |v| v == k),
        CmpOp::NotEq => keep(presence, values, |v| v != k),
        CmpOp::Lt => keep(presence, values, |v| v < k),
        CmpOp::LtEq => keep(presence, values, |v| v <= k),
        CmpOp::Gt => keep(presence, values, |v| v > k),
        CmpOp::GtEq => keep(presence, values, |v| v >= k),
    }
}

/// Ordinals present in both columns whose values satisfy `a <op> b`: both columns' ordinals laid
/// out whole, then one merge pass without a branch on the data. Each step reads both sides' next
/// ordinal and value, sets the ordinal's bit when the ordinals match and the values pass, and
/// advances the side (or sides) with the smaller ordinal. The merge it replaced branched on every
/// step (which side is behind, whether they match) and pushed passing ordinals to a vector: the
/// run's checks spend most of their time here (`cargo bench -p journeydb-benches --bench
/// query_ops -- compare_columns_values`).
fn cmp_int_cols(
    op: CmpOp,
    pa: &RoaringBitmap,
    a: &[i64],
    pb: &RoaringBitmap,
    b: &[i64],
) -> RoaringBitmap {
    fn ordinals(p: &RoaringBitmap) -> Vec<u32> {
        let mut v = Vec::with_capacity(p.len() as usize);
        chunks_of(p.iter(), |ords, _| v.extend_from_slice(ords));
        v
    }
    // Indexing: `i < n` and `j < m` hold at every access, and the four slices are cut to `n` and
    // `m` first, so the compiler drops the bounds checks (`get` would put a branch back in the loop).
    #[allow(clippy::indexing_slicing)]
    fn walk(
        pa: &RoaringBitmap,
        a: &[i64],
        pb: &RoaringBitmap,
        b: &[i64],
        f: impl Fn(i64, i64) -> bool,
    ) -> RoaringBitmap {
        let (oa, ob) = (ordinals(pa), ordinals(pb));
        // Values aligned with the ordinals (a column's presence counts its values).
        let (n, m) = (oa.len().min(a.len()), ob.len().min(b.len()));
        let (oa, a, ob, b) = (&oa[..n], &a[..n], &ob[..m], &b[..m]);
        let mut out = OrdinalBits::over(pa);
        if n.saturating_mul(LOPSIDED) < m || m.saturating_mul(LOPSIDED) < n {
            // One side far sparser: it drives, and the other gallops to each of its ordinals.
            let (small, large) = if n < m { (oa, ob) } else { (ob, oa) };
            let mut at = 0usize;
            for (k, &o) in small.iter().enumerate() {
                at = gallop(large, at, o);
                if large.get(at) == Some(&o) {
                    let (i, j) = if n < m { (k, at) } else { (at, k) };
                    out.set_if(o, f(a[i], b[j]));
                }
            }
            return out.finish();
        }
        let (mut i, mut j) = (0usize, 0usize);
        while i < n && j < m {
            let (x, y) = (oa[i], ob[j]);
            // `&`, not `&&`: no branch on whether the ordinals match.
            out.set_if(x, (x == y) & f(a[i], b[j]));
            i += usize::from(x <= y);
            j += usize::from(y <= x);
        }
        out.finish()
    }
    /// The first index from `from` on whose ordinal is at least `o` (`v` ascending).
    fn gallop(v: &[u32], from: usize, o: u32) -> usize {
        let (mut lo, mut hi, mut step) = (from, from, 1usize);
        while v.get(hi).is_some_and(|x| *x < o) {
            lo = hi + 1;
            hi += step;
            step *= 2;
        }
        let hi = hi.min(v.len());
        lo + v.get(lo..hi).map_or(0, |w| w.partition_point(|x| *x < o))
    }
    /// A side with this many times fewer values than the other drives the walk alone (measured:
    /// at 4 the gallop is as fast as the merge, below it slower).
    const LOPSIDED: usize = 4;
    match op {
        CmpOp::Eq => walk(pa, a, pb, b, |x, y| x == y),
        CmpOp::NotEq => walk(pa, a, pb, b, |x, y| x != y),
        CmpOp::Lt => walk(pa, a, pb, b, |x, y| x < y),
        CmpOp::LtEq => walk(pa, a, pb, b, |x, y| x <= y),
        CmpOp::Gt => walk(pa, a, pb, b, |x, y| x > y),
        CmpOp::GtEq => walk(pa, a, pb, b, |x, y| x >= y),
    }
}

/// Compares two vectors over `rows`.
pub fn compare<'a>(
    op: CmpOp,
    a: Vector<'_>,
    b: Vector<'_>,
    rows: &RoaringBitmap,
) -> Result<Vector<'a>> {
    let a = a.normalize(rows)?;
    let b = b.normalize(rows)?;
    let mismatch = || {
        QueryError::Type(format!(
            "cannot compare {} with {}",
            a.dtype().name(),
            b.dtype().name()
        ))
    };
    match (&a, &b) {
        (Vector::Const(x), Vector::Const(y)) => Ok(match (el_of(x), el_of(y)) {
            (Some(p), Some(q)) => {
                Vector::Const(Scalar::Bool(op.holds(cmp_el(p, q).ok_or_else(mismatch)?)))
            }
            _ => Vector::Const(Scalar::Null),
        }),
        (Vector::Col(c, _), Vector::Const(s)) | (Vector::Const(s), Vector::Col(c, _)) => {
            let op = if matches!(a, Vector::Const(_)) {
                op.flip()
            } else {
                op
            };
            let Some(sv) = el_of(s) else {
                return Ok(Vector::Bool {
                    t: RoaringBitmap::new(),
                    n: rows.clone(),
                });
            };
            if let (Values::Int(v), El::I(k)) = (&c.values, sv) {
                return Ok(Vector::Bool {
                    t: cmp_int_const(op, &c.presence, v, k),
                    n: rows - &c.presence,
                });
            }
            let mut t = Vec::new();
            for (i, ord) in c.presence.iter().enumerate() {
                let e = el_at(&c.values, i)
                    .ok_or_else(|| QueryError::Internal("short column".into()))?;
                if op.holds(cmp_el(e, sv).ok_or_else(mismatch)?) {
                    t.push(ord);
                }
            }
            Ok(Vector::Bool {
                t: RoaringBitmap::from_sorted_iter(t).unwrap_or_default(),
                n: rows - &c.presence,
            })
        }
        (Vector::Col(ca, _), Vector::Col(cb, _)) => {
            let common = &ca.presence & &cb.presence;
            if let (Values::Int(x), Values::Int(y)) = (&ca.values, &cb.values) {
                return Ok(Vector::Bool {
                    t: cmp_int_cols(op, &ca.presence, x, &cb.presence, y),
                    n: rows - &common,
                });
            }
            let va = gather(ca, &common);
            let vb = gather(cb, &common);
            let mut t = Vec::new();
            for (i, ord) in common.iter().enumerate() {
                let (Some(x), Some(y)) = (el_at(&va, i), el_at(&vb, i)) else {
                    break;
                };
                if op.holds(cmp_el(x, y).ok_or_else(mismatch)?) {
                    t.push(ord);
                }
            }
            Ok(Vector::Bool {
                t: RoaringBitmap::from_sorted_iter(t).unwrap_or_default(),
                n: rows - &common,
            })
        }
        _ => Err(mismatch()),
    }
}

fn overflow() -> QueryError {
    QueryError::InvalidValue("integer overflow in arithmetic".into())
}

fn arith_el(op: ArithOp, a: El<'_>, b: El<'_>) -> Result<Scalar> {
    let f = |x: f64, y: f64| match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div => x / y,
    };
    Ok(match (a, b) {
        (El::I(x), El::I(y)) => match op {
            ArithOp::Add => Scalar::Int(x.checked_add(y).ok_or_else(overflow)?),
            ArithOp::Sub => Scalar::Int(x.checked_sub(y).ok_or_else(overflow)?),
            ArithOp::Mul => Scalar::Int(x.checked_mul(y).ok_or_else(overflow)?),
            ArithOp::Div if y == 0 => Scalar::Null,
            ArithOp::Div => Scalar::Float(x as f64 / y as f64),
        },
        (El::F(x), El::F(y)) => Scalar::Float(f(x, y)),
        (El::I(x), El::F(y)) => Scalar::Float(f(x as f64, y)),
        (El::F(x), El::I(y)) => Scalar::Float(f(x, y as f64)),
        _ => {
            return Err(QueryError::Type(format!(
                "operator {} needs numbers",
                op.sql()
            )))
        }
    })
}

/// Applies `f` to each value of `c`, keeping the presence (a NULL result drops the row).
fn map_col<'a>(
    c: &ColumnData,
    out: DType,
    mut f: impl FnMut(El<'_>) -> Result<Scalar>,
) -> Result<Vector<'a>> {
    let mut presence = Vec::with_capacity(c.values.len());
    let mut ints = Vec::new();
    let mut floats = Vec::new();
    for (i, ord) in c.presence.iter().enumerate() {
        let e = el_at(&c.values, i).ok_or_else(|| QueryError::Internal("short column".into()))?;
        match f(e)? {
            Scalar::Null => continue,
            Scalar::Int(v) | Scalar::Ts(v) => ints.push(v),
            Scalar::Float(v) => floats.push(v),
            _ => {
                return Err(QueryError::Internal(
                    "arithmetic produced a non-number".into(),
                ))
            }
        }
        presence.push(ord);
    }
    let values = if out == DType::Double {
        Values::Float(floats)
    } else {
        Values::Int(ints)
    };
    let presence = RoaringBitmap::from_sorted_iter(presence).unwrap_or_default();
    Ok(Vector::Col(
        Cow::Owned(ColumnData { presence, values }),
        out,
    ))
}

fn interval_of(v: &Vector<'_>) -> Option<Interval> {
    match v {
        Vector::Const(Scalar::Interval(i)) => Some(*i),
        _ => None,
    }
}

/// Integers (timestamps, intervals) of two aligned columns in one checked loop, without a value
/// per element.
fn int_arith<'a>(
    op: ArithOp,
    x: &[i64],
    y: &[i64],
    presence: RoaringBitmap,
    out: DType,
) -> Result<Vector<'a>> {
    let f = match op {
        ArithOp::Add => i64::checked_add,
        ArithOp::Sub => i64::checked_sub,
        _ => i64::checked_mul,
    };
    let values = x
        .iter()
        .zip(y)
        .map(|(a, b)| f(*a, *b).ok_or_else(overflow))
        .collect::<Result<Vec<i64>>>()?;
    Ok(Vector::Col(
        Cow::Owned(ColumnData {
            presence,
            values: Values::Int(values),
        }),
        out,
    ))
}

/// Arithmetic on two vectors; `out` is the planned result type.
pub fn arith<'a>(
    op: ArithOp,
    a: Vector<'_>,
    b: Vector<'_>,
    out: DType,
    rows: &RoaringBitmap,
) -> Result<Vector<'a>> {
    if matches!(a, Vector::Const(Scalar::Null)) || matches!(b, Vector::Const(Scalar::Null)) {
        return Ok(Vector::Const(Scalar::Null));
    }
    // TIMESTAMP +/- INTERVAL, INTERVAL + TIMESTAMP.
    if let Some(iv) = interval_of(&b).or_else(|| {
        if op == ArithOp::Add {
            interval_of(&a)
        } else {
            None
        }
    }) {
        let ts = if interval_of(&b).is_some() { a } else { b };
        let sign = if op == ArithOp::Sub { -1 } else { 1 };
        return match ts {
            Vector::Const(Scalar::Ts(t)) => {
                Ok(Vector::Const(Scalar::Ts(add_interval(t, iv, sign)?)))
            }
            Vector::Col(c, DType::Timestamp) => map_col(&c, DType::Timestamp, |e| match e {
                El::I(t) => Ok(Scalar::Ts(add_interval(t, iv, sign)?)),
                _ => Err(QueryError::Internal(
                    "timestamp column without integers".into(),
                )),
            }),
            other => Err(QueryError::Type(format!(
                "cannot add an INTERVAL to {}",
                other.dtype().name()
            ))),
        };
    }
    let to_out = |s: Scalar| match (s, out) {
        (Scalar::Int(v), DType::Timestamp) => Scalar::Ts(v),
        (Scalar::Int(v), DType::Interval) => Scalar::Interval(Interval {
            months: 0,
            micros: v,
        }),
        (s, _) => s,
    };
    match (&a, &b) {
        (Vector::Const(x), Vector::Const(y)) => match (el_of(x), el_of(y)) {
            (Some(p), Some(q)) => Ok(Vector::Const(to_out(arith_el(op, p, q)?))),
            _ => Ok(Vector::Const(Scalar::Null)),
        },
        (Vector::Col(c, _), Vector::Const(s)) => {
            let sv = el_of(s).ok_or_else(|| QueryError::Type("bad operand".into()))?;
            map_col(c, out, |e| arith_el(op, e, sv))
        }
        (Vector::Const(s), Vector::Col(c, _)) => {
            let sv = el_of(s).ok_or_else(|| QueryError::Type("bad operand".into()))?;
            map_col(c, out, |e| arith_el(op, sv, e))
        }
        (Vector::Col(ca, _), Vector::Col(cb, _)) => {
            let common = &ca.presence & &cb.presence;
            let va = gather(ca, &common);
            let vb = gather(cb, &common);
            if let (Values::Int(x), Values::Int(y), true) =
                (&va, &vb, out != DType::Double && op != ArithOp::Div)
            {
                return int_arith(op, x, y, common, out);
            }
            let mut i = 0usize;
            let joined = ColumnData {
                presence: common,
                values: va,
            };
            map_col(&joined, out, |e| {
                let y = el_at(&vb, i).ok_or_else(|| QueryError::Internal("short column".into()))?;
                i += 1;
                arith_el(op, e, y)
            })
        }
        _ => {
            let _ = rows;
            Err(QueryError::Type(format!(
                "operator {} does not apply to {} and {}",
                op.sql(),
                a.dtype().name(),
                b.dtype().name()
            )))
        }
    }
}

/// Unary minus.
pub fn negate<'a>(a: Vector<'_>) -> Result<Vector<'a>> {
    match a {
        Vector::Const(Scalar::Int(v)) => Ok(Vector::Const(Scalar::Int(
            v.checked_neg().ok_or_else(overflow)?,
        ))),
        Vector::Const(Scalar::Float(v)) => Ok(Vector::Const(Scalar::Float(-v))),
        Vector::Const(Scalar::Interval(i)) => Ok(Vector::Const(Scalar::Interval(Interval {
            months: -i.months,
            micros: -i.micros,
        }))),
        Vector::Const(Scalar::Null) => Ok(Vector::Const(Scalar::Null)),
        Vector::Col(c, t @ (DType::Bigint | DType::Double)) => map_col(&c, t, |e| match e {
            El::I(v) => Ok(Scalar::Int(v.checked_neg().ok_or_else(overflow)?)),
            El::F(v) => Ok(Scalar::Float(-v)),
            _ => Err(QueryError::Internal("number column without numbers".into())),
        }),
        other => Err(QueryError::Type(format!(
            "cannot negate {}",
            other.dtype().name()
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn rows() -> RoaringBitmap {
        (0..6).collect()
    }

    fn col(pairs: &[(u32, i64)]) -> Vector<'static> {
        Vector::Col(
            Cow::Owned(ColumnData {
                presence: pairs.iter().map(|p| p.0).collect(),
                values: Values::Int(pairs.iter().map(|p| p.1).collect()),
            }),
            DType::Bigint,
        )
    }

    /// The comparison and restriction kernels against a plain model, with ordinals in one
    /// container, across containers, and too far apart for word buffers.
    #[test]
    fn kernels_match_a_model() {
        let spreads: [&dyn Fn(u32) -> u32; 3] =
            [&|i| i * 3, &|i| i * 977 + 5, &|i| i.wrapping_mul(1 << 22)];
        for spread in spreads {
            let ords: Vec<u32> = (0..600).map(spread).collect();
            let mut sorted = ords.clone();
            sorted.sort_unstable();
            let presence: RoaringBitmap = sorted.iter().copied().collect();
            let values: Vec<i64> = (0..sorted.len() as i64)
                .map(|i| (i * 37) % 101 - 50)
                .collect();
            let c = ColumnData {
                presence: presence.clone(),
                values: Values::Int(values.clone()),
            };
            let model = |f: &dyn Fn(i64) -> bool| -> RoaringBitmap {
                sorted
                    .iter()
                    .zip(&values)
                    .filter(|(_, v)| f(**v))
                    .map(|(o, _)| *o)
                    .collect()
            };
            assert_eq!(
                cmp_int_const(CmpOp::LtEq, &presence, &values, 7),
                model(&|v| v <= 7)
            );
            assert_eq!(
                cmp_int_const(CmpOp::NotEq, &presence, &values, 7),
                model(&|v| v != 7)
            );
            // Against a second column on every other ordinal of the first and some of its own.
            let other: Vec<(u32, i64)> = sorted
                .iter()
                .step_by(2)
                .map(|o| o.wrapping_add(1) & !1)
                .chain(sorted.iter().map(|o| o | 1))
                .collect::<std::collections::BTreeSet<u32>>()
                .into_iter()
                .enumerate()
                .map(|(i, o)| (o, (i as i64 * 53) % 97 - 48))
                .collect();
            let (pb, vb): (RoaringBitmap, Vec<i64>) = (
                other.iter().map(|(o, _)| *o).collect(),
                other.iter().map(|(_, v)| *v).collect(),
            );
            let of_b: std::collections::HashMap<u32, i64> = other.iter().copied().collect();
            for (op, f) in [
                (CmpOp::Lt, (|x, y| x < y) as fn(i64, i64) -> bool),
                (CmpOp::Eq, |x, y| x == y),
                (CmpOp::GtEq, |x, y| x >= y),
            ] {
                let want: RoaringBitmap = sorted
                    .iter()
                    .zip(&values)
                    .filter(|(o, v)| of_b.get(o).is_some_and(|w| f(**v, *w)))
                    .map(|(o, _)| *o)
                    .collect();
                assert!(!want.is_empty());
                assert_eq!(cmp_int_cols(op, &presence, &values, &pb, &vb), want);
            }
            let sub: RoaringBitmap = sorted.iter().copied().step_by(3).collect();
            let r = restrict(&c, &sub);
            assert_eq!(r.presence, sub);
            let want: Vec<i64> = values.iter().copied().step_by(3).collect();
            assert_eq!(r.values, Values::Int(want));
            // A subset reaching outside the column's span.
            let wide: RoaringBitmap = sub.iter().chain([u32::MAX - 1]).collect();
            assert_eq!(restrict(&c, &wide).presence, sub);
        }
    }

    #[test]
    fn three_valued_logic() {
        let r = rows();
        // a: 0,1 have values; 2.. are NULL.
        let a = compare(
            CmpOp::Gt,
            col(&[(0, 5), (1, 1)]),
            Vector::Const(Scalar::Int(3)),
            &r,
        )
        .unwrap();
        let (t, n) = a.clone().into_bool(&r).unwrap();
        assert_eq!(t, [0].into_iter().collect());
        assert_eq!(n, (2..6).collect());
        let (t, n) = not(a.clone(), &r).unwrap().into_bool(&r).unwrap();
        assert_eq!((t, n.len()), ([1].into_iter().collect(), 4));
        // NULL AND FALSE is FALSE; NULL OR TRUE is TRUE.
        let f = Vector::Const(Scalar::Bool(false));
        let (t, n) = and(a.clone(), f, &r).unwrap().into_bool(&r).unwrap();
        assert!(t.is_empty() && n.is_empty());
        let (t, n) = or(a, Vector::Const(Scalar::Bool(true)), &r)
            .unwrap()
            .into_bool(&r)
            .unwrap();
        assert_eq!((t.len(), n.len()), (6, 0));
    }

    /// AND and OR against the truth tables: rows 0..9 hold every pair of (TRUE, FALSE, NULL).
    #[test]
    fn and_or_match_the_truth_tables() {
        let r: RoaringBitmap = (0..9).collect();
        // Side values per row: 0 TRUE, 1 FALSE, 2 NULL.
        let side = |pick: &dyn Fn(u32) -> u32| Vector::Bool {
            t: (0..9).filter(|o| pick(*o) == 0).collect(),
            n: (0..9).filter(|o| pick(*o) == 2).collect(),
        };
        let a = || side(&|o| o / 3);
        let b = || side(&|o| o % 3);
        let model = |f: &dyn Fn(Option<bool>, Option<bool>) -> Option<bool>| {
            let v = |x: u32| [Some(true), Some(false), None][x as usize];
            let out: Vec<Option<bool>> = (0..9).map(|o| f(v(o / 3), v(o % 3))).collect();
            let t: RoaringBitmap = (0..9).filter(|o| out[*o as usize] == Some(true)).collect();
            let n: RoaringBitmap = (0..9).filter(|o| out[*o as usize].is_none()).collect();
            (t, n)
        };
        let sql_and = |x: Option<bool>, y: Option<bool>| match (x, y) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        };
        let sql_or = |x: Option<bool>, y: Option<bool>| match (x, y) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        };
        assert_eq!(
            and(a(), b(), &r).unwrap().into_bool(&r).unwrap(),
            model(&sql_and)
        );
        assert_eq!(
            or(a(), b(), &r).unwrap().into_bool(&r).unwrap(),
            model(&sql_or)
        );
        // Sides without NULLs take the short path.
        let two = |pick: &dyn Fn(u32) -> bool| Vector::Bool {
            t: (0..9).filter(|o| pick(*o)).collect(),
            n: RoaringBitmap::new(),
        };
        let (t, n) = and(two(&|o| o < 5), two(&|o| o % 2 == 0), &r)
            .unwrap()
            .into_bool(&r)
            .unwrap();
        assert_eq!((t, n.len()), ([0, 2, 4].into_iter().collect(), 0));
    }

    #[test]
    fn column_to_column_comparison_ignores_nulls() {
        let r = rows();
        let v = compare(
            CmpOp::LtEq,
            col(&[(0, 1), (2, 5), (3, 9)]),
            col(&[(0, 1), (3, 2), (4, 7)]),
            &r,
        )
        .unwrap();
        let (t, n) = v.into_bool(&r).unwrap();
        assert_eq!(t, [0].into_iter().collect());
        assert_eq!(n, [1, 2, 4, 5].into_iter().collect());
    }

    #[test]
    fn arithmetic_checks_overflow_and_nulls() {
        let r = rows();
        assert!(arith(
            ArithOp::Add,
            col(&[(0, i64::MAX)]),
            Vector::Const(Scalar::Int(1)),
            DType::Bigint,
            &r
        )
        .is_err());
        let v = arith(
            ArithOp::Sub,
            col(&[(0, 10), (2, 3)]),
            col(&[(2, 1), (5, 1)]),
            DType::Bigint,
            &r,
        )
        .unwrap();
        let c = v.into_column(&r).unwrap();
        assert_eq!(c.presence, [2].into_iter().collect());
        assert_eq!(c.values, Values::Int(vec![2]));
    }

    /// Two columns compared by the merge (similar sizes) and by the gallop (one far sparser,
    /// on either side) give the ordinals a model gives, for every operator.
    #[test]
    fn column_comparisons_equal_a_model_at_every_density() {
        let mut rnd = crate::test_rng(0x9E37_79B9_7F4A_7C15u64);
        for (da, db) in [
            (60, 40),
            (50, 50),
            (60, 2),
            (2, 60),
            (30, 8),
            (8, 30),
            (0, 50),
        ] {
            let pa: RoaringBitmap = (0..300_000u32).filter(|_| rnd(100) < da).collect();
            let pb: RoaringBitmap = (0..300_000u32).filter(|_| rnd(100) < db).collect();
            let va: Vec<i64> = (0..pa.len()).map(|_| rnd(20) as i64).collect();
            let vb: Vec<i64> = (0..pb.len()).map(|_| rnd(20) as i64).collect();
            let of_b: std::collections::HashMap<u32, i64> =
                pb.iter().zip(vb.iter().copied()).collect();
            type Model = fn(i64, i64) -> bool;
            let ops: [(CmpOp, Model); 6] = [
                (CmpOp::Eq, |x, y| x == y),
                (CmpOp::NotEq, |x, y| x != y),
                (CmpOp::Lt, |x, y| x < y),
                (CmpOp::LtEq, |x, y| x <= y),
                (CmpOp::Gt, |x, y| x > y),
                (CmpOp::GtEq, |x, y| x >= y),
            ];
            for (op, f) in ops {
                let want: RoaringBitmap = pa
                    .iter()
                    .zip(&va)
                    .filter(|(o, v)| of_b.get(o).is_some_and(|w| f(**v, *w)))
                    .map(|(o, _)| o)
                    .collect();
                assert!(da == 0 || !want.is_empty(), "{op:?} {da}% {db}%");
                assert_eq!(
                    cmp_int_cols(op, &pa, &va, &pb, &vb),
                    want,
                    "{op:?} {da}% {db}%"
                );
            }
        }
    }
}
