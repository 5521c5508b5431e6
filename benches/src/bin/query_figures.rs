//! The query figures: the journey workload's SQL on a generated state table, each operation timed as
//! the median of several runs after a warm-up.
//!
//! `cargo run --release -p journeydb-benches --bin query_figures -- [--customers N]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use journeydb_benches::{arg, median, Journey};
use journeydb_query::{Engine, Output};
use journeydb_storage::{Database, KeyType, Options};

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("query_figures: {msg}");
    std::process::exit(1)
}

fn time(engine: &Engine, label: &str, runs: usize, sql: &str) -> Duration {
    let mut times = Vec::new();
    let mut answer = String::new();
    for i in 0..=runs {
        let t = Instant::now();
        let out = engine
            .execute_one(sql)
            .unwrap_or_else(|e| fail(format!("{label}: {e}\n{sql}")));
        let d = t.elapsed();
        if i > 0 {
            times.push(d);
        }
        answer = match out {
            Output::Rows(b) if b.num_rows() == 1 && b.num_columns() == 1 => {
                journeydb_query::format::cell_text(b.column(0).as_ref(), 0).unwrap_or_default()
            }
            Output::Rows(b) => format!("{} rows", b.num_rows()),
            Output::Done { tag, rows } => format!("{tag} {rows}"),
        };
    }
    let m = median(times);
    println!("{label:<58} {:>10.2?}   ({answer})", m);
    m
}

/// The state of `customers` customers and a delta for every tenth, flushed and compacted.
fn load(db: &Database, j: &Journey, delta_j: &Journey, customers: usize) {
    let t = Instant::now();
    let mut start = 0;
    while start < customers {
        let end = (start + 200_000).min(customers);
        db.append("state", &j.batch(start..end))
            .unwrap_or_else(|e| fail(e));
        start = end;
    }
    let delta_rows: Vec<usize> = (0..customers).step_by(10).collect();
    for chunk in delta_rows.chunks(200_000) {
        db.append("delta", &delta_j.batch_for(j, chunk))
            .unwrap_or_else(|e| fail(e));
    }
    db.flush().unwrap_or_else(|e| fail(e));
    db.compact(2).unwrap_or_else(|e| fail(e));
    eprintln!(
        "loaded {customers} customers + {} delta rows in {:.1?}",
        delta_rows.len(),
        t.elapsed()
    );
}

fn main() {
    let customers: usize = arg("--customers")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let dir = std::env::temp_dir().join(format!("journeydb-qfig-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = Arc::new(
        Database::create(&dir, KeyType::Varchar, Options::default()).unwrap_or_else(|e| fail(e)),
    );
    let j = Journey::new(customers, 42);
    let delta_j = Journey::new(customers, 4242);
    db.create_table("state", j.schema())
        .unwrap_or_else(|e| fail(e));
    db.create_table("delta", j.schema())
        .unwrap_or_else(|e| fail(e));
    load(&db, &j, &delta_j, customers);
    let engine = Engine::new(db.clone()).with_now(1_767_225_600_000_000 + 20 * 86_400_000_000);
    println!(
        "query figures: {customers} customers, 30 sparse TIMESTAMP columns, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let a = "SELECT customer_id FROM state WHERE stage1 IS NOT NULL";
    let b = "SELECT customer_id FROM state WHERE stage1_step_2 IS NULL AND stage1 + INTERVAL '3 days' <= now()";
    for op in ["INTERSECT", "EXCEPT", "UNION"] {
        time(
            &engine,
            &format!("(a) COUNT of {op} of two predicate sets"),
            5,
            &format!("SELECT count(*) FROM ({a} {op} {b})"),
        );
    }
    time(
        &engine,
        "(a) INTERSECT materialized (CREATE OR REPLACE TABLE AS)",
        3,
        &format!("CREATE OR REPLACE TABLE waiting AS {a} INTERSECT {b}"),
    );
    let cols: Vec<String> = (0..j.columns).map(|c| j.column_name(c)).collect();
    let mins = cols
        .iter()
        .map(|c| format!("min({c}) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let fold = format!("CREATE OR REPLACE TABLE state_next AS SELECT customer_id, {mins} FROM (SELECT * FROM state UNION ALL SELECT * FROM delta) GROUP BY customer_id");
    let merge = time(
        &engine,
        "(b) MIN-merge of the delta into a new version (SQL fold)",
        3,
        &fold,
    );
    let swap = time(
        &engine,
        "(d) ALTER TABLE state SWAP WITH state_next",
        5,
        "ALTER TABLE state SWAP WITH state_next",
    );
    println!("{:<58} {:>10.2?}", "(b) MIN-merge + swap", merge + swap);
    time(
        &engine,
        "(b') INSERT INTO state SELECT * FROM delta (MIN rule)",
        1,
        "INSERT INTO state_next SELECT * FROM delta",
    );
    let invalid = [
        "stage1_step_2 IS NOT NULL AND stage1_step_1 IS NULL",
        "stage2 IS NOT NULL AND stage1 IS NULL",
        "stage1_step_1 < stage1",
    ];
    let mut total = Duration::ZERO;
    for (i, w) in invalid.iter().enumerate() {
        total += time(
            &engine,
            &format!("(c) BERNOULLI (50) count of invalid rows #{}", i + 1),
            5,
            &format!("SELECT count(*) FROM state TABLESAMPLE BERNOULLI (50) WHERE {w}"),
        );
    }
    println!("{:<58} {:>10.2?}", "(c) three invariants", total);
    time(
        &engine,
        "full scan: COUNT(*) of state",
        5,
        "SELECT count(*) FROM state",
    );
    drop(engine);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
