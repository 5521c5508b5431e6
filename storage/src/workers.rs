//! The process's one pool of worker threads, shared by queries (a scan, a join or an aggregate
//! fanned out over partitions), ingest (segments written per partition), bulk loads (partitions
//! folded) and appends (key lookups of a large batch).
//!
//! Before this pool each of those spawned threads of its own per operation, as many as the machine
//! has cores: two statements at once on a 2-core machine ran four threads, a server with 16 running
//! requests ran 32, and every operation paid for starting its threads. Now every such operation
//! queues its work on one pool of [`threads`] workers (rayon's work-stealing pool; the caller
//! waits, and a worker that queues work of its own runs it too), so the whole process never runs
//! more of them at once. `journeydb serve --threads N` sizes it; the default is one per core.
//!
//! A panic in one item does not lose it silently: [`map`] returns it as [`Panicked`] in that
//! item's place, and callers fail the operation (nothing half-done is committed).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
static WANTED: AtomicUsize = AtomicUsize::new(0);

/// An item whose work panicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panicked;

/// Sizes the pool (at least 1) before its first use; false when it already runs (its size then
/// stays).
pub fn set_threads(n: usize) -> bool {
    if POOL.get().is_some() {
        return false;
    }
    WANTED.store(n.max(1), Ordering::SeqCst);
    POOL.get().is_none()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn pool() -> Option<&'static rayon::ThreadPool> {
    POOL.get_or_init(|| {
        let n = match WANTED.load(Ordering::SeqCst) {
            0 => cores(),
            n => n,
        };
        if n <= 1 {
            return None;
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("journeydb-worker-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Workers in the pool (1 when work runs on the caller's thread).
pub fn threads() -> usize {
    pool().map_or(1, rayon::ThreadPool::current_num_threads)
}

/// `f` over `items` on the pool, the results in the items' order; an item whose `f` panicked is
/// `Err(Panicked)`. A single item, or a pool of one, runs on the caller's thread.
pub fn map<I: Sync, T: Send>(items: &[I], f: impl Fn(&I) -> T + Sync) -> Vec<Result<T, Panicked>> {
    let one = |i: &I| catch_unwind(AssertUnwindSafe(|| f(i))).map_err(|_| Panicked);
    match pool() {
        Some(p) if items.len() > 1 => {
            use rayon::prelude::*;
            // One item per task: items are partitions or large slices, each worth a task.
            p.install(|| items.par_iter().with_max_len(1).map(one).collect())
        }
        _ => items.iter().map(one).collect(),
    }
}

/// `a` and `b`, possibly at once (one on a worker); either's panic is `Err(Panicked)`.
pub fn join<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (Result<A, Panicked>, Result<B, Panicked>) {
    let a = move || catch_unwind(AssertUnwindSafe(a)).map_err(|_| Panicked);
    let b = move || catch_unwind(AssertUnwindSafe(b)).map_err(|_| Panicked);
    match pool() {
        Some(p) => p.install(|| rayon::join(a, b)),
        None => (a(), b()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_order_and_reports_a_panic_in_its_place() {
        let items: Vec<u32> = (0..100).collect();
        let out = map(&items, |x| {
            assert!(*x != 37, "item 37 fails");
            x * 2
        });
        assert_eq!(out.len(), 100);
        for (i, r) in out.iter().enumerate() {
            if i == 37 {
                assert_eq!(*r, Err(Panicked));
            } else {
                assert_eq!(*r, Ok(i as u32 * 2));
            }
        }
        // Work queued from a worker (a nested map) runs too.
        let nested = map(&[1u32, 2, 3], |x| {
            map(&[*x, *x + 1], |y| y * 10)
                .into_iter()
                .map(Result::unwrap)
                .sum::<u32>()
        });
        assert_eq!(nested, vec![Ok(30), Ok(50), Ok(70)]);
        let (a, b) = join(|| 1, || -> u32 { panic!("b fails") });
        assert_eq!((a, b), (Ok(1), Err(Panicked)));
        assert!(threads() >= 1);
    }
}
