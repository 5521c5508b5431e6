//! Cancelling a running statement (PostgreSQL's CancelRequest): the protocol layer runs each
//! request inside [`with_flag`], and the executor polls [`check`] between units of work (each
//! partition, each streamed batch; `pg_sleep` in small steps). Worker threads of `par_map` inherit
//! the request's flag.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{QueryError, Result};

thread_local! {
    static FLAG: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// Runs `f` with `flag` as this thread's cancel flag (restoring the previous one afterwards).
pub fn with_flag<T>(flag: Option<Arc<AtomicBool>>, f: impl FnOnce() -> T) -> T {
    let before = FLAG.with(|c| c.replace(flag));
    let out = f();
    FLAG.with(|c| c.replace(before));
    out
}

/// This thread's cancel flag, if a request set one.
pub fn current() -> Option<Arc<AtomicBool>> {
    FLAG.with(|c| c.borrow().clone())
}

/// `Err(Cancelled)` once the running request was cancelled.
pub fn check() -> Result<()> {
    let cancelled = FLAG.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
    });
    if cancelled {
        Err(QueryError::Cancelled)
    } else {
        Ok(())
    }
}
