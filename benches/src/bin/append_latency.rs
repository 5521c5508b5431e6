//! Append latency while maintenance runs (issue 14): one thread appends small batches and times
//! each `append` call (acknowledged only once durable), first alone, then while another thread
//! flushes, compacts, swaps two tables and creates and drops a table in a loop. Prints p50, p99,
//! p99.9 and the maximum of each phase, and how many maintenance commits ran.
//!
//! `cargo run --release -p journeydb-benches --bin append_latency -- [--seconds S] [--rows R]
//! [--dir DIR]`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use journeydb_benches::{arg, Journey};
use journeydb_storage::{Database, KeyType, Options};

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("append_latency: {what}: {e}");
    std::process::exit(1)
}

/// Appends batches of `rows` rows to `events` for `seconds`; returns each call's latency.
fn append_for(db: &Database, j: &Journey, rows: usize, seconds: f64) -> Vec<Duration> {
    let mut lat = Vec::new();
    let mut start = 0usize;
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < end {
        let b = j.batch(start..start + rows);
        start = (start + rows) % (j.customers - rows);
        let t = Instant::now();
        if let Err(e) = db.append("events", &b) {
            fail("append", e);
        }
        lat.push(t.elapsed());
    }
    lat
}

fn report(phase: &str, mut lat: Vec<Duration>) {
    lat.sort();
    let at = |q: f64| {
        let i = ((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1));
        lat.get(i).copied().unwrap_or_default()
    };
    println!(
        "{phase:<12} {:>7} appends  p50 {:>9.2?}  p99 {:>9.2?}  p99.9 {:>9.2?}  max {:>9.2?}",
        lat.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        lat.last().copied().unwrap_or_default()
    );
}

/// Flushes, compacts, swaps `a` and `b`, creates and drops `scratch`, until `stop`; counts commits.
fn maintain(db: &Database, j: &Journey, stop: &AtomicBool, commits: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        let steps: [&dyn Fn() -> Result<(), String>; 4] = [
            &|| db.flush().map(|_| ()).map_err(|e| e.to_string()),
            &|| db.compact(2).map(|_| ()).map_err(|e| e.to_string()),
            &|| {
                db.swap_tables("a", "b")
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
            &|| {
                db.create_table("scratch", j.schema())
                    .and_then(|_| db.drop_table("scratch"))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        ];
        for step in steps {
            if let Err(e) = step() {
                fail("maintenance", e);
            }
            commits.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn main() {
    let seconds: f64 = arg("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let rows: usize = arg("--rows").and_then(|s| s.parse().ok()).unwrap_or(100);
    let tmp = std::env::temp_dir().join(format!("journeydb-latency-{}", std::process::id()));
    let dir = arg("--dir").map(std::path::PathBuf::from).unwrap_or(tmp);
    let _ = std::fs::remove_dir_all(&dir);
    let j = Journey::new(1_000_000, 42);
    let opts = Options {
        flush_rows: 0,
        compact_segments: 0,
        background: false,
        ..Options::default()
    };
    let db = Database::create(&dir, KeyType::Varchar, opts).unwrap_or_else(|e| fail("create", e));
    for t in ["events", "a", "b"] {
        db.create_table(t, j.schema())
            .unwrap_or_else(|e| fail("create table", e));
    }
    // `a` and `b` hold data, so a swap exchanges real tables.
    for t in ["a", "b"] {
        db.append(t, &j.batch(0..100_000))
            .unwrap_or_else(|e| fail("append", e));
    }
    db.flush().unwrap_or_else(|e| fail("flush", e));
    println!(
        "append latency: batches of {rows} rows of {} columns, {seconds} s a phase, dir {}",
        j.columns + 1,
        dir.display()
    );
    report("alone", append_for(&db, &j, rows, seconds));
    let stop = AtomicBool::new(false);
    let commits = AtomicU64::new(0);
    let lat = std::thread::scope(|s| {
        s.spawn(|| maintain(&db, &j, &stop, &commits));
        let lat = append_for(&db, &j, rows, seconds);
        stop.store(true, Ordering::Relaxed);
        lat
    });
    report("maintenance", lat);
    println!(
        "maintenance: {} commits (flush, compaction, swap, create + drop) in {seconds} s",
        commits.load(Ordering::Relaxed)
    );
    if arg("--dir").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
