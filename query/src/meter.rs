//! What a statement costs, for the query log (`system.queries`): rows and bytes its scans read,
//! bytes they decode, and CPU time, its worker threads' included.
//!
//! The caller wraps a statement in [`measure`]; the executor's scans report to the thread's meter
//! ([`scanned`]), and `par_map`'s workers take the statement's meter and add their CPU time. Without
//! a meter (embedded use, the bench) nothing is counted and nothing is measured.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of one statement.
#[derive(Debug, Default)]
pub struct Meter {
    rows_scanned: AtomicU64,
    bytes_scanned: AtomicU64,
    bytes_decoded: AtomicU64,
    cpu_ns: AtomicU64,
}

/// A statement's counters when it finished.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Rows of the tables its scans read (each scan counts its table's rows).
    pub rows_scanned: u64,
    /// Stored bytes of the columns its scans read: the table's segment bytes in proportion to
    /// the columns loaded (an approximation: columns are not sized one by one).
    pub bytes_scanned: u64,
    /// Bytes of values and bitmaps its scans decoded.
    pub bytes_decoded: u64,
    /// CPU time of the statement's thread and its workers, microseconds.
    pub cpu_us: u64,
}

thread_local! {
    static METER: RefCell<Option<Arc<Meter>>> = const { RefCell::new(None) };
}

/// CPU time this thread has used, nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (t.tv_sec.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec.max(0) as u64)
}

/// Runs `f` with a fresh meter and returns what it counted.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Reading) {
    let m = Arc::new(Meter::default());
    let cpu = thread_cpu_ns();
    let out = with_meter(Some(m.clone()), f);
    m.cpu_ns
        .fetch_add(thread_cpu_ns().saturating_sub(cpu), Ordering::Relaxed);
    let r = Reading {
        rows_scanned: m.rows_scanned.load(Ordering::Relaxed),
        bytes_scanned: m.bytes_scanned.load(Ordering::Relaxed),
        bytes_decoded: m.bytes_decoded.load(Ordering::Relaxed),
        cpu_us: m.cpu_ns.load(Ordering::Relaxed) / 1000,
    };
    (out, r)
}

/// Runs `f` under `meter` (a worker thread takes its statement's meter this way), adding the
/// thread's CPU time to it.
pub fn with_meter<T>(meter: Option<Arc<Meter>>, f: impl FnOnce() -> T) -> T {
    let before = METER.with(|c| c.replace(meter));
    let out = f();
    METER.with(|c| c.replace(before));
    out
}

/// Runs a worker's share of a statement under `meter`, adding its CPU time.
pub fn in_worker<T>(meter: Option<Arc<Meter>>, f: impl FnOnce() -> T) -> T {
    let Some(m) = meter else {
        return f();
    };
    let cpu = thread_cpu_ns();
    let out = with_meter(Some(m.clone()), f);
    m.cpu_ns
        .fetch_add(thread_cpu_ns().saturating_sub(cpu), Ordering::Relaxed);
    out
}

/// This thread's meter, if its statement is measured.
pub fn current() -> Option<Arc<Meter>> {
    METER.with(|c| c.borrow().clone())
}

/// True when the running statement is measured (so callers skip computing sizes otherwise).
pub fn active() -> bool {
    METER.with(|c| c.borrow().is_some())
}

/// A scan read `rows` rows and `bytes` stored bytes, and decoded `decoded` bytes.
pub fn scanned(rows: u64, bytes: u64, decoded: u64) {
    if let Some(m) = current() {
        m.rows_scanned.fetch_add(rows, Ordering::Relaxed);
        m.bytes_scanned.fetch_add(bytes, Ordering::Relaxed);
        m.bytes_decoded.fetch_add(decoded, Ordering::Relaxed);
    }
}
