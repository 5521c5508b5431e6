//! The storage figures: generates the journey dataset, appends it, flushes, compacts, and prints
//! append throughput, the time to read one column's merged bitmap + values, bytes on disk per non-null
//! timestamp, and key dictionary memory per key.
//!
//! `cargo run --release -p journeydb-benches --bin figures -- [--customers N] [--dir DIR]`

use std::time::{Duration, Instant};

use journeydb_benches::{arg, median, Journey};
use journeydb_storage::{ColumnId, Database, KeyType, Options, PartitionId};

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn read_column(db: &Database, col: u32) -> (Duration, u64) {
    let snap = db.snapshot();
    let Ok(t) = snap.table("state") else {
        return (Duration::ZERO, 0);
    };
    let parts: Vec<PartitionId> = t.partitions();
    let mut times = Vec::new();
    let mut n = 0;
    for _ in 0..5 {
        let start = Instant::now();
        n = 0;
        for p in &parts {
            match t.column(*p, ColumnId(col)) {
                Ok(c) => n += c.presence.len(),
                Err(e) => eprintln!("read failed: {e}"),
            }
        }
        times.push(start.elapsed());
    }
    (median(times), n)
}

fn main() {
    let customers: usize = arg("--customers")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let batch_rows = 100_000usize;
    let tmp = std::env::temp_dir().join(format!("journeydb-figures-{}", std::process::id()));
    let dir = arg("--dir").map(std::path::PathBuf::from).unwrap_or(tmp);
    let _ = std::fs::remove_dir_all(&dir);
    let j = Journey::new(customers, 42);
    let opts = Options {
        flush_rows: 2_000_000,
        ..Options::default()
    };
    let db = match Database::create(&dir, KeyType::Varchar, opts) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("create {}: {e}", dir.display());
            std::process::exit(1);
        }
    };
    if let Err(e) = db.create_table("state", j.schema()) {
        eprintln!("create table: {e}");
        std::process::exit(1);
    }
    println!(
        "figures: {customers} customers, {} sparse TIMESTAMP columns ({:.1}% .. {:.1}%), dir {}",
        j.columns,
        j.density(0) * 100.0,
        j.density(j.columns - 1) * 100.0,
        dir.display()
    );
    let mut append_time = Duration::ZERO;
    let mut start = 0;
    let wall = Instant::now();
    while start < customers {
        let end = (start + batch_rows).min(customers);
        let b = j.batch(start..end);
        let t = Instant::now();
        if let Err(e) = db.append("state", &b) {
            eprintln!("append: {e}");
            std::process::exit(1);
        }
        append_time += t.elapsed();
        start = end;
        if (start / batch_rows).is_multiple_of(10) {
            eprint!("\rappended {start}/{customers}");
        }
    }
    eprintln!();
    let t = Instant::now();
    let _ = db.flush();
    let flush_time = t.elapsed();
    let t = Instant::now();
    let _ = db.compact(2);
    let compact_time = t.elapsed();
    let total = wall.elapsed();
    let cells = j.non_null_cells();
    let seg_bytes = dir_bytes(&dir.join("seg"));
    let key_bytes = dir_bytes(&dir);
    println!("append: {:.0} rows/s ({} rows in {:.2?} of append calls; {:.2?} wall incl. generation and background flushes)", customers as f64 / append_time.as_secs_f64(), customers, append_time, total);
    println!(
        "final flush {flush_time:.2?}, compaction to one segment per partition {compact_time:.2?}"
    );
    println!("disk: {seg_bytes} segment bytes for {cells} non-null timestamps = {:.2} bytes per non-null timestamp (bitmaps included); key dictionary file and other top-level files {key_bytes} bytes", seg_bytes as f64 / cells as f64);
    println!(
        "key dictionary memory: {:.1} bytes per key (16-char keys)",
        db.key_dictionary_bytes() as f64 / customers as f64
    );
    for col in [0u32, 14, 29] {
        let (d, n) = read_column(&db, col);
        println!("read column {} ({} values, merged bitmap + values over all partitions): median {d:.2?}", j.column_name(col as usize), n);
    }
    // Reopen: recovery time with nothing in the WAL.
    drop(db);
    let t = Instant::now();
    match Database::open(&dir, Options::default()) {
        Ok(_) => println!("reopen: {:.2?}", t.elapsed()),
        Err(e) => println!("reopen failed: {e}"),
    }
    if arg("--dir").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
