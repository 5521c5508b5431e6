//! The journey workload's SQL kernels through the query engine: COUNT of INTERSECT / EXCEPT / UNION of
//! two predicate sets, the MIN-merge of a 10% delta into the 30-column state (CREATE OR REPLACE TABLE
//! AS .. GROUP BY over UNION ALL), a BERNOULLI (50) count of invalid rows, and comparisons answered
//! from value groups next to the same comparisons on decoded values.
//!
//! Customers: `JOURNEYDB_BENCH_CUSTOMERS` (default 1,000,000; the figure uses 10,000,000).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use journeydb_benches::Journey;
use journeydb_query::Engine;
use journeydb_storage::{Database, KeyType, Options};

fn bench(c: &mut Criterion) {
    let customers: usize = std::env::var("JOURNEYDB_BENCH_CUSTOMERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path(), KeyType::Varchar, Options::default()).unwrap());
    let j = Journey::new(customers, 42);
    let delta_j = Journey::new(customers, 4242);
    db.create_table("state", j.schema()).unwrap();
    db.create_table("delta", j.schema()).unwrap();
    for start in (0..customers).step_by(200_000) {
        db.append("state", &j.batch(start..(start + 200_000).min(customers)))
            .unwrap();
    }
    let delta_rows: Vec<usize> = (0..customers).step_by(10).collect();
    for chunk in delta_rows.chunks(200_000) {
        db.append("delta", &delta_j.batch_for(&j, chunk)).unwrap();
    }
    db.flush().unwrap();
    db.compact(2).unwrap();
    let engine = Engine::new(db.clone()).with_now(1_767_225_600_000_000 + 20 * 86_400_000_000);

    let mut g = c.benchmark_group(format!("query_ops_{customers}"));
    g.sample_size(10);
    let a = "SELECT customer_id FROM state WHERE stage1 IS NOT NULL";
    let b = "SELECT customer_id FROM state WHERE stage1_step_2 IS NULL AND stage1 + INTERVAL '3 days' <= now()";
    for op in ["INTERSECT", "EXCEPT", "UNION"] {
        let sql = format!("SELECT count(*) FROM ({a} {op} {b})");
        g.bench_with_input(BenchmarkId::new("setop_count", op), &sql, |bch, sql| {
            bch.iter(|| engine.execute_one(sql).unwrap())
        });
    }
    let mins = (0..j.columns)
        .map(|c| format!("min({0}) AS {0}", j.column_name(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let fold = format!("CREATE OR REPLACE TABLE state_next AS SELECT customer_id, {mins} FROM (SELECT * FROM state UNION ALL SELECT * FROM delta) GROUP BY customer_id");
    g.bench_function("min_merge_fold_delta", |bch| {
        bch.iter(|| engine.execute_one(&fold).unwrap())
    });
    let sample = "SELECT count(*) FROM state TABLESAMPLE BERNOULLI (50) WHERE stage1_step_2 IS NOT NULL AND stage1_step_1 IS NULL";
    g.bench_function("bernoulli50_invalid_count", |bch| {
        bch.iter(|| engine.execute_one(sample).unwrap())
    });
    let sample_cmp =
        "SELECT count(*) FROM state TABLESAMPLE BERNOULLI (50) WHERE stage1_step_1 < stage1";
    g.bench_function("bernoulli50_invalid_count_compare", |bch| {
        bch.iter(|| engine.execute_one(sample_cmp).unwrap())
    });
    // The same comparisons on value groups (a sweep over the distinct values) and on the values:
    // `+ INTERVAL '0 days'` makes the left side an expression, and `coalesce(stage1, <last>)` (equal
    // to `stage1` on this nested funnel) reads two columns, so the values are decoded.
    for (name, sql) in [
        ("compare_columns_groups", "SELECT count(*) FROM state WHERE stage1_step_1 < stage1"),
        (
            "compare_columns_values",
            "SELECT count(*) FROM state WHERE stage1_step_1 + INTERVAL '0 days' < stage1",
        ),
        (
            "compare_constant_groups",
            "SELECT count(*) FROM state WHERE stage1 + INTERVAL '3 days' <= now()",
        ),
        (
            "compare_constant_values",
            "SELECT count(*) FROM state WHERE coalesce(stage1, stage6_step_4) + INTERVAL '3 days' <= now()",
        ),
    ] {
        g.bench_function(name, |bch| bch.iter(|| engine.execute_one(sql).unwrap()));
    }
    // Top-k: the sort column laid out for every row, the ten rows chosen, then only they are laid
    // out in full (their keys decoded).
    let top = "SELECT customer_id, stage1, stage2, stage3 FROM state ORDER BY stage1 DESC LIMIT 10";
    g.bench_function("top_k_order_by_value_limit_10", |bch| {
        bch.iter(|| engine.execute_one(top).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
