//! Dense folding for bulk loads: a partition that receives many rows keeps each fixed-width column
//! (TIMESTAMP, BIGINT, DOUBLE, BOOLEAN) as one slot per ordinal of the partition, and each value is
//! folded into its slot as it arrives. The sparse path (sort each batch by ordinal, fold, merge the
//! sorted runs) costs a sort per batch and a merge of everything held so far every few dozen
//! batches; an event log of 100M rows spends most of its time there. A slot write is one random
//! store instead, and nothing is merged at the end but the bitmap of the slots that are set.
//!
//! A partition turns dense once the rows pushed to it reach an eighth of its ordinals (below that,
//! slots would cost more memory than the rows they hold) and some of them repeated a key (without
//! that, there is nothing to fold; see `BulkLoad::turn_dense`); its earlier batches are folded into the
//! slots then, oldest first, so the rules see values in arrival order as on the sparse path.
//! VARCHAR columns stay on the sparse path.

use roaring::RoaringBitmap;

use crate::schema::{ColumnType, MergeRule, TableSchema};
use crate::segment::PartData;
use crate::values::{ColumnData, Fold, Values};
use crate::wal::{BatchColumn, RowBatch};

/// One bit per slot.
#[derive(Debug, Clone)]
pub(super) struct Bits(Vec<u64>);

impl Bits {
    pub(super) fn new(n: u32) -> Bits {
        Bits(vec![0; (n as usize).div_ceil(64)])
    }

    /// Sets bit `i`; returns whether it was set before.
    #[inline]
    pub(super) fn set(&mut self, i: u32) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        match self.0.get_mut(w) {
            Some(word) => {
                let was = *word & (1 << b) != 0;
                *word |= 1 << b;
                was
            }
            None => true,
        }
    }

    /// The set bits, ascending, offset by `base`.
    fn ordinals(&self, base: u32) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(move |(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let b = rest.trailing_zeros();
                rest &= rest - 1;
                Some(base + w as u32 * 64 + b)
            })
        })
    }

    fn bitmap(&self, base: u32) -> RoaringBitmap {
        // Ascending and distinct, so this cannot fail.
        RoaringBitmap::from_sorted_iter(self.ordinals(base)).unwrap_or_default()
    }
}

/// A fixed-width column's slots.
#[derive(Debug)]
enum Slots {
    Int(Vec<i64>),
    Float(Vec<f64>),
    Bool(Vec<bool>),
}

/// A fixed-width value type: its slots and its values, typed.
trait Slot: Fold + Copy {
    fn slots(s: &mut Slots) -> Option<&mut Vec<Self>>;
    fn values(v: &Values) -> Option<&[Self]>;
    /// The value that folding under `rule` leaves unchanged (`fold(identity, v) == v`, bit for
    /// bit), which empty slots hold: a fold then needs no test of whether its slot was set, so
    /// folds carry no branch on data that is still in flight from memory. `Last` has none and
    /// needs none (its fold ignores the old value).
    fn identity(rule: MergeRule) -> Self;
}

macro_rules! slot {
    ($t:ty, $v:ident, |$rule:ident| $identity:expr) => {
        impl Slot for $t {
            fn slots(s: &mut Slots) -> Option<&mut Vec<Self>> {
                match s {
                    Slots::$v(x) => Some(x),
                    _ => None,
                }
            }
            fn values(v: &Values) -> Option<&[Self]> {
                match v {
                    Values::$v(x) => Some(x),
                    _ => None,
                }
            }
            fn identity($rule: MergeRule) -> $t {
                $identity
            }
        }
    };
}
slot!(i64, Int, |rule| match rule {
    MergeRule::Min => i64::MAX,
    MergeRule::Max => i64::MIN,
    MergeRule::Sum | MergeRule::Last => 0,
});
slot!(f64, Float, |rule| match rule {
    // The greatest and the least values of `total_cmp`'s order (NaNs of either sign with
    // every payload bit set): a MIN (MAX) fold keeps any value against them.
    MergeRule::Min => f64::from_bits(0x7FFF_FFFF_FFFF_FFFF),
    MergeRule::Max => f64::from_bits(u64::MAX),
    // -0.0, not 0.0: -0.0 + x is x for every x, -0.0 included.
    MergeRule::Sum | MergeRule::Last => -0.0,
});
slot!(bool, Bool, |rule| matches!(rule, MergeRule::Min));

#[derive(Debug)]
struct DenseColumn {
    rule: MergeRule,
    set: Bits,
    slots: Slots,
}

impl DenseColumn {
    fn new(ty: ColumnType, rule: MergeRule, n: u32) -> Option<DenseColumn> {
        let n = n as usize;
        let slots = match Values::empty(ty) {
            Values::Int(_) => Slots::Int(vec![i64::identity(rule); n]),
            Values::Float(_) => Slots::Float(vec![f64::identity(rule); n]),
            Values::Bool(_) => Slots::Bool(vec![bool::identity(rule); n]),
            Values::Str(_) => return None,
        };
        Some(DenseColumn {
            rule,
            set: Bits::new(n as u32),
            slots,
        })
    }

    /// Folds `value` into slot `i`.
    #[inline]
    fn fold_one<T: Slot>(&mut self, i: u32, value: &T) {
        if let Some(slot) = T::slots(&mut self.slots).and_then(|s| s.get_mut(i as usize)) {
            self.set.set(i);
            T::fold(slot, value, self.rule);
        }
    }

    /// Folds the values of a sorted column (`at` gives each value's slot), in order.
    fn fold_all(&mut self, at: impl Iterator<Item = u32>, values: &Values) {
        fn go<T: Slot>(c: &mut DenseColumn, at: impl Iterator<Item = u32>, values: &Values) {
            for (i, v) in at.zip(T::values(values).unwrap_or_default()) {
                c.fold_one(i, v);
            }
        }
        match values {
            Values::Int(_) => go::<i64>(self, at, values),
            Values::Float(_) => go::<f64>(self, at, values),
            Values::Bool(_) => go::<bool>(self, at, values),
            Values::Str(_) => {}
        }
    }

    fn to_column(&self, base: u32) -> ColumnData {
        fn pick<T: Clone>(set: &Bits, slots: &[T]) -> Vec<T> {
            set.ordinals(0)
                .filter_map(|i| slots.get(i as usize).cloned())
                .collect()
        }
        let values = match &self.slots {
            Slots::Int(s) => Values::Int(pick(&self.set, s)),
            Slots::Float(s) => Values::Float(pick(&self.set, s)),
            Slots::Bool(s) => Values::Bool(pick(&self.set, s)),
        };
        ColumnData {
            presence: self.set.bitmap(base),
            values,
        }
    }
}

/// One dense partition of a load.
#[derive(Debug)]
pub(super) struct DensePart {
    base: u32,
    n: u32,
    rows: Bits,
    /// Per column id; `None` for a VARCHAR column or one not seen yet.
    columns: Vec<Option<DenseColumn>>,
    /// Per column id, integer cells queued by [`DensePart::queue`] (slot, value), oldest first.
    pending: Vec<Pending>,
}

/// Integer cells waiting to be folded into one column's slots.
#[derive(Debug, Default)]
struct Pending {
    slots: Vec<u32>,
    values: Vec<i64>,
}

/// Cells queued per column of a dense partition before they are folded (see
/// [`DensePart::queue`]).
const PENDING_MAX: usize = 8_192;

impl DensePart {
    pub(super) fn new(base: u32, n: u32) -> DensePart {
        DensePart {
            base,
            n,
            rows: Bits::new(n),
            columns: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Queues `value` for slot `i` of column `id` (BIGINT or TIMESTAMP), folded by the rule with
    /// the column's other queued values when the queue fills or at [`DensePart::flush`]; the
    /// column's values are folded in the order they were queued.
    ///
    /// Why queue: a load of cells (an event log's pivot) scatters values over every partition and
    /// column, so a slot written at once is a cache miss in slot vectors far larger than the caches
    /// (640 MB for 10M customers × 8 event columns). A queue holds one partition's column (2 MiB
    /// of slots at the default partition size), which then stays in cache while its values fold.
    #[inline]
    pub(super) fn queue(&mut self, schema: &TableSchema, id: usize, i: u32, value: i64) {
        if self.pending.len() <= id {
            self.pending.resize_with(id + 1, Pending::default);
        }
        let Some(q) = self.pending.get_mut(id) else {
            return;
        };
        q.slots.push(i);
        q.values.push(value);
        if q.slots.len() >= PENDING_MAX {
            self.flush_column(schema, id);
        }
    }

    /// Folds every queued cell into the slots.
    pub(super) fn flush(&mut self, schema: &TableSchema) {
        for id in 0..self.pending.len() {
            self.flush_column(schema, id);
        }
    }

    fn flush_column(&mut self, schema: &TableSchema, id: usize) {
        let Some(q) = self.pending.get_mut(id) else {
            return;
        };
        if q.slots.is_empty() {
            return;
        }
        let q = std::mem::take(q);
        let rows = &mut self.rows;
        for &i in &q.slots {
            rows.set(i);
        }
        let Some(c) = self.column(schema, id) else {
            return;
        };
        let rule = c.rule;
        let DenseColumn { set, slots, .. } = c;
        let Slots::Int(slots) = slots else { return };
        // The rule is chosen once per queue, not per value.
        fn go(set: &mut Bits, slots: &mut [i64], q: &Pending, fold: impl Fn(&mut i64, i64)) {
            for (&i, &v) in q.slots.iter().zip(&q.values) {
                set.set(i);
                if let Some(s) = slots.get_mut(i as usize) {
                    fold(s, v);
                }
            }
        }
        match rule {
            MergeRule::Min => go(set, slots, &q, |s, v| *s = (*s).min(v)),
            MergeRule::Max => go(set, slots, &q, |s, v| *s = (*s).max(v)),
            MergeRule::Sum => go(set, slots, &q, |s, v| *s = s.wrapping_add(v)),
            MergeRule::Last => go(set, slots, &q, |s, v| *s = v),
        }
        // The emptied queue keeps its memory for the next cells.
        if let Some(p) = self.pending.get_mut(id) {
            let (mut slots, mut values) = (q.slots, q.values);
            slots.clear();
            values.clear();
            *p = Pending { slots, values };
        }
    }

    fn column(&mut self, schema: &TableSchema, id: usize) -> Option<&mut DenseColumn> {
        if self.columns.len() <= id {
            self.columns.resize_with(id + 1, || None);
        }
        let slot = self.columns.get_mut(id)?;
        if slot.is_none() {
            let def = schema.columns.get(id)?;
            *slot = DenseColumn::new(def.ty, def.rule, self.n);
        }
        slot.as_mut()
    }

    /// Moves the fixed-width columns of `part` (folded sparse data, oldest first across calls) into
    /// the slots, leaving its VARCHAR columns and its rows.
    pub(super) fn absorb(&mut self, schema: &TableSchema, part: &mut PartData) {
        for o in &part.rows {
            self.rows.set(o - self.base);
        }
        for (id, col) in part.columns.iter_mut().enumerate() {
            let Some(data) = col else { continue };
            if matches!(data.values, Values::Str(_)) {
                continue;
            }
            let base = self.base;
            if let Some(d) = self.column(schema, id) {
                d.fold_all(data.presence.iter().map(|o| o - base), &data.values);
                *col = None;
            }
        }
    }

    /// The partition's data: its rows and its dense columns (VARCHAR ones are `None`).
    pub(super) fn finish(&self, width: usize) -> PartData {
        let mut columns: Vec<Option<ColumnData>> = self
            .columns
            .iter()
            .map(|c| c.as_ref().map(|c| c.to_column(self.base)))
            .collect();
        columns.resize(width, None);
        PartData {
            rows: self.rows.bitmap(self.base),
            columns,
        }
    }
}

/// Folds the rows of `batch` that fall in dense partitions (`dense[p]`, by partition id) into their
/// slots, and returns what is left for the sparse path: the rows of sparse partitions, and, when
/// the batch has VARCHAR columns, the rows of dense partitions with only those columns.
pub(super) fn fold_batch(
    schema: &TableSchema,
    dense: &mut [Option<DensePart>],
    partition_rows: u32,
    batch: RowBatch,
) -> RowBatch {
    let part_of = |o: u32| (o / partition_rows) as usize;
    let is_dense: Vec<bool> = batch
        .ordinals
        .iter()
        .map(|&o| matches!(dense.get(part_of(o)), Some(Some(_))))
        .collect();
    if !is_dense.contains(&true) {
        return batch;
    }
    let has_str = batch
        .columns
        .iter()
        .any(|c| matches!(c.values, Values::Str(_)));
    // Large batches are folded on two threads, each owning half of the partitions (both walk
    // every row; each folds the values of its own partitions).
    let parts = dense.iter().filter(|d| d.is_some()).count();
    if batch.ordinals.len() >= PARALLEL_FOLD_ROWS && parts > 1 && crate::workers::threads() > 1 {
        let mut seen = 0;
        let mid = dense
            .iter()
            .position(|d| {
                seen += usize::from(d.is_some());
                seen > parts / 2
            })
            .unwrap_or(dense.len() / 2);
        let (low, high) = dense.split_at_mut(mid);
        let (b, d) = (&batch, &is_dense);
        // A fold that panicked is a bug; the panic goes on to the caller as before.
        let (x, y) = crate::workers::join(
            || fold_range(schema, low, 0, partition_rows, b, d),
            || fold_range(schema, high, mid, partition_rows, b, d),
        );
        if x.is_err() || y.is_err() {
            panic!("folding a batch into dense partitions panicked");
        }
    } else {
        fold_range(schema, dense, 0, partition_rows, &batch, &is_dense);
    }
    if !has_str && !is_dense.contains(&false) {
        return RowBatch {
            table: batch.table,
            ordinals: Vec::new(),
            columns: Vec::new(),
        };
    }
    remainder(batch, &is_dense, has_str)
}

/// Rows of a batch from which folding takes two threads.
const PARALLEL_FOLD_ROWS: usize = 4_096;

/// Folds the rows of `batch` in the dense partitions `dense` (partition ids `first..`).
fn fold_range(
    schema: &TableSchema,
    dense: &mut [Option<DensePart>],
    first: usize,
    partition_rows: u32,
    batch: &RowBatch,
    is_dense: &[bool],
) {
    let mine = |o: u32| ((o / partition_rows) as usize).checked_sub(first);
    for (&o, _) in batch.ordinals.iter().zip(is_dense).filter(|(_, d)| **d) {
        if let Some(Some(p)) = mine(o).and_then(|i| dense.get_mut(i)) {
            p.rows.set(o - p.base);
        }
    }
    for col in &batch.columns {
        let d = Dest {
            schema,
            dense: &mut *dense,
            first,
            partition_rows,
        };
        match &col.values {
            Values::Int(v) => fold_column(d, batch, is_dense, col, v),
            Values::Float(v) => fold_column(d, batch, is_dense, col, v),
            Values::Bool(v) => fold_column(d, batch, is_dense, col, v),
            Values::Str(_) => {}
        }
    }
}

/// Where a fold writes: the dense partitions `first..` of a load.
struct Dest<'a> {
    schema: &'a TableSchema,
    dense: &'a mut [Option<DensePart>],
    first: usize,
    partition_rows: u32,
}

/// Folds the values of `col` whose rows fall in dense partitions. Values are those of the valid
/// rows only: walk the rows with a value, counting them.
///
/// Each fold is a read-modify-write of a slot at random in slot vectors far larger than the
/// caches (8 bytes × the table's ordinals per column), so the loop is built to keep many misses
/// in flight: rows go in blocks whose slots and set-bit words are prefetched before any is
/// folded, the rule is chosen once per column (not per value), and, since empty slots hold the
/// rule's identity ([`Slot::identity`]), a fold never waits on its set bit. In the (j) event
/// pivot (100M events into 10M customers × 8 columns; perf) this took the fold from about 120 ns
/// to about 87 ns an event; what remains is the misses themselves (the processor keeps only so
/// many in flight).
fn fold_column<T: Slot>(
    d: Dest<'_>,
    batch: &RowBatch,
    is_dense: &[bool],
    col: &BatchColumn,
    values: &[T],
) {
    let id = col.id.0 as usize;
    let Some(rule) = d.schema.columns.get(id).map(|c| c.rule) else {
        return;
    };
    // This column's slots and set bits in each dense partition, by index from `first`.
    let schema = d.schema;
    let mut targets: Vec<Option<(&mut [T], &mut Bits)>> = d
        .dense
        .iter_mut()
        .map(|p| {
            let c = p.as_mut()?.column(schema, id)?;
            let DenseColumn { set, slots, .. } = c;
            Some((T::slots(slots)?.as_mut_slice(), set))
        })
        .collect();
    let rows = batch.ordinals.iter().zip(&col.valid).zip(is_dense);
    let with_value = rows.filter(|((_, valid), _)| **valid);
    let mine = with_value
        .zip(values)
        .filter(|((_, dense), _)| **dense)
        .filter_map(|(((&o, _), _), &v)| {
            let q = o / d.partition_rows;
            let i = (q as usize).checked_sub(d.first)?;
            Some((i as u32, o - q * d.partition_rows, v))
        });
    match rule {
        MergeRule::Min => fold_rows(&mut targets, mine, |o: &mut T, n| {
            T::fold(o, n, MergeRule::Min)
        }),
        MergeRule::Max => fold_rows(&mut targets, mine, |o: &mut T, n| {
            T::fold(o, n, MergeRule::Max)
        }),
        MergeRule::Sum => fold_rows(&mut targets, mine, |o: &mut T, n| {
            T::fold(o, n, MergeRule::Sum)
        }),
        MergeRule::Last => fold_rows(&mut targets, mine, |o: &mut T, n| {
            T::fold(o, n, MergeRule::Last)
        }),
    }
}

/// Folds `(partition index, slot, value)` rows into `targets` with `fold`, a block at a time:
/// every slot of a block is prefetched, then folded.
#[inline]
fn fold_rows<T: Copy>(
    targets: &mut [Option<(&mut [T], &mut Bits)>],
    mut rows: impl Iterator<Item = (u32, u32, T)>,
    fold: impl Fn(&mut T, &T),
) {
    const BLOCK: usize = 32;
    let mut block: Vec<(u32, u32, T)> = Vec::with_capacity(BLOCK);
    loop {
        block.clear();
        block.extend(rows.by_ref().take(BLOCK));
        if block.is_empty() {
            return;
        }
        for &(p, i, _) in &block {
            if let Some(Some((slots, set))) = targets.get(p as usize) {
                crate::mem::prefetch(slots, i as usize);
                crate::mem::prefetch(&set.0, i as usize / 64);
            }
        }
        for (p, i, v) in &block {
            let Some(Some((slots, set))) = targets.get_mut(*p as usize) else {
                continue;
            };
            set.set(*i);
            if let Some(slot) = slots.get_mut(*i as usize) {
                fold(slot, v);
            }
        }
    }
}

/// Appends `from[i]` to `to` (both of one class).
fn push_from(to: &mut Values, from: &Values, i: usize) {
    match (to, from) {
        (Values::Int(t), Values::Int(f)) => t.extend(f.get(i).copied()),
        (Values::Float(t), Values::Float(f)) => t.extend(f.get(i).copied()),
        (Values::Bool(t), Values::Bool(f)) => t.extend(f.get(i).copied()),
        (Values::Str(t), Values::Str(f)) => t.extend(f.get(i).cloned()),
        _ => {}
    }
}

/// The sparse remainder of a batch: rows of sparse partitions with every column, and (when the
/// batch has VARCHAR columns) rows of dense partitions with only their VARCHAR columns.
fn remainder(batch: RowBatch, is_dense: &[bool], has_str: bool) -> RowBatch {
    let keep: Vec<bool> = is_dense.iter().map(|d| !d || has_str).collect();
    let ordinals = batch
        .ordinals
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(o, _)| *o)
        .collect();
    let columns = batch
        .columns
        .into_iter()
        .map(|c| {
            let fixed = !matches!(c.values, Values::Str(_));
            // A row's value stays when its row is kept and (for a fixed-width column) its
            // partition is sparse.
            let stays = |i: usize| {
                keep.get(i).copied().unwrap_or(false)
                    && !(fixed && is_dense.get(i).copied().unwrap_or(false))
            };
            let mut values = Values::empty(c.ty);
            let mut k = 0usize;
            let mut valid = Vec::new();
            for (i, &v) in c.valid.iter().enumerate() {
                if !keep.get(i).copied().unwrap_or(false) {
                    if v {
                        k += 1;
                    }
                    continue;
                }
                let s = v && stays(i);
                valid.push(s);
                if v {
                    if s {
                        push_from(&mut values, &c.values, k);
                    }
                    k += 1;
                }
            }
            BatchColumn {
                id: c.id,
                ty: c.ty,
                valid,
                values,
            }
        })
        .collect();
    RowBatch {
        table: batch.table,
        ordinals,
        columns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Empty slots hold each rule's identity: folding any value into it gives that value, bit for
    /// bit (edge values included), so a slot needs no test of whether it was set.
    #[test]
    fn identities_leave_every_value_unchanged() {
        let rules = [
            MergeRule::Min,
            MergeRule::Max,
            MergeRule::Sum,
            MergeRule::Last,
        ];
        for rule in rules {
            for v in [i64::MIN, -1, 0, 1, i64::MAX] {
                let mut s = i64::identity(rule);
                i64::fold(&mut s, &v, rule);
                assert_eq!(s, v, "{rule:?} {v}");
            }
            let floats = [
                f64::NEG_INFINITY,
                -1.5,
                -0.0,
                0.0,
                2.5,
                f64::INFINITY,
                f64::NAN,
                -f64::NAN,
                f64::from_bits(0x7FFF_FFFF_FFFF_FFFF),
                f64::from_bits(u64::MAX),
            ];
            for v in floats {
                let mut s = f64::identity(rule);
                f64::fold(&mut s, &v, rule);
                assert_eq!(s.to_bits(), v.to_bits(), "{rule:?} {v}");
            }
            if rule != MergeRule::Sum {
                for v in [false, true] {
                    let mut s = bool::identity(rule);
                    bool::fold(&mut s, &v, rule);
                    assert_eq!(s, v, "{rule:?} {v}");
                }
            }
        }
    }
}
