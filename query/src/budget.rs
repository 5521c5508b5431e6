//! Memory accounting of a running statement (`--query-memory-mb`): what the executor holds, counted
//! as it is made, on top of the estimate `Plan::memory_estimate` makes at planning.
//!
//! The engine runs each statement inside [`with_limit`]. Every plan operator, when it finishes,
//! [`settle`]s: its output replaces what its inputs held (they were consumed to make it), and the
//! peak of the moment (inputs and output alive together) must stay within the limit. The whole
//! result of a query with ORDER BY and the sort's copy are counted the same way. Worker threads of
//! `par_map` inherit the statement's budget. A statement over its limit stops with
//! `QueryError::MemoryLimit` (SQLSTATE 53200) and frees what it held.
//!
//! Sizes are the bytes of decoded values and row bitmaps ([`relation_bytes`]) or Arrow buffers
//! (`get_array_memory_size`): an approximation of the heap, not the allocator's count.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use journeydb_storage::{ColumnData, Values};

use crate::error::{QueryError, Result};
use crate::exec::Relation;

/// A statement's limit and what it holds now.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
    peak: AtomicU64,
}

thread_local! {
    static BUDGET: RefCell<Option<Arc<Budget>>> = const { RefCell::new(None) };
}

/// Runs `f` with a fresh budget of `limit` bytes (no accounting when `None`).
pub fn with_limit<T>(limit: Option<u64>, f: impl FnOnce() -> T) -> T {
    let b = limit.map(|limit| {
        Arc::new(Budget {
            limit,
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        })
    });
    with_budget(b, f)
}

/// Runs `f` under `budget` (a worker thread takes its statement's budget this way).
pub fn with_budget<T>(budget: Option<Arc<Budget>>, f: impl FnOnce() -> T) -> T {
    let before = BUDGET.with(|c| c.replace(budget));
    let out = f();
    BUDGET.with(|c| c.replace(before));
    out
}

/// This thread's budget, if its statement has one.
pub fn current() -> Option<Arc<Budget>> {
    BUDGET.with(|c| c.borrow().clone())
}

/// What the statement holds now (0 without a budget): the mark an operator settles against.
pub fn mark() -> u64 {
    current().map_or(0, |b| b.used.load(Ordering::SeqCst))
}

/// An operator started at `mark` finished with an output of `output` bytes. Its inputs (all
/// charged since `mark`) were alive together with the output: that peak must fit. Afterwards the
/// statement holds `mark + output`.
pub fn settle(mark: u64, output: u64) -> Result<()> {
    let Some(b) = current() else {
        return Ok(());
    };
    let now = b.used.load(Ordering::SeqCst);
    let peak = now.saturating_add(output);
    b.peak.fetch_max(peak, Ordering::SeqCst);
    if peak > b.limit {
        return Err(QueryError::MemoryLimit {
            need_mib: peak.div_ceil(1 << 20),
            limit_mib: b.limit >> 20,
        });
    }
    b.used.store(mark.saturating_add(output), Ordering::SeqCst);
    Ok(())
}

/// The largest amount the statement held at once so far (0 without a budget).
pub fn peak() -> u64 {
    current().map_or(0, |b| b.peak.load(Ordering::SeqCst))
}

/// Bytes of one column's decoded values and presence bitmap.
pub fn column_bytes(c: &ColumnData) -> u64 {
    let values = match &c.values {
        Values::Int(v) => v.len() * 8,
        Values::Float(v) => v.len() * 8,
        Values::Bool(v) => v.len(),
        Values::Str(v) => v.iter().map(|s| s.capacity() + 24).sum(),
    };
    values as u64 + c.presence.serialized_size() as u64
}

/// Bytes of a relation's row bitmaps and columns.
pub fn relation_bytes(rel: &Relation) -> u64 {
    rel.parts
        .values()
        .flatten()
        .map(|f| {
            f.rows.serialized_size() as u64 + f.cols.iter().flatten().map(column_bytes).sum::<u64>()
        })
        .sum()
}
