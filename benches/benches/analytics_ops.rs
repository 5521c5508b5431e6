//! The analytics kernels of issue 17 through the query engine: GROUP BY a low-cardinality column
//! (coded groups, counts as bitmap intersections), the ordinal-aligned join of the state with the
//! profiles, the segment funnel over that join, quantiles, and count(DISTINCT ..) with sum.
//!
//! Customers: `JOURNEYDB_BENCH_CUSTOMERS` (default 1,000,000).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use journeydb_benches::harness::profiles;
use journeydb_benches::Journey;
use journeydb_query::Engine;
use journeydb_storage::{ColumnDef, ColumnType, Database, KeyType, Options, TableSchema};

fn bench(c: &mut Criterion) {
    let customers: usize = std::env::var("JOURNEYDB_BENCH_CUSTOMERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path(), KeyType::Varchar, Options::default()).unwrap());
    let j = Journey::new(customers, 42);
    db.create_table("state", j.schema()).unwrap();
    db.create_table(
        "profiles",
        TableSchema::new(
            "customer_id",
            vec![
                ColumnDef::new("country", ColumnType::Varchar),
                ColumnDef::new("age", ColumnType::Bigint),
            ],
        ),
    )
    .unwrap();
    for start in (0..customers).step_by(200_000) {
        let end = (start + 200_000).min(customers);
        db.append("state", &j.batch(start..end)).unwrap();
        db.append("profiles", &profiles(start..end, &j, false).unwrap())
            .unwrap();
    }
    db.flush().unwrap();
    db.compact(2).unwrap();
    let engine = Engine::new(db.clone());
    let last = j.column_name(j.columns - 1);
    let mut g = c.benchmark_group(format!("analytics_ops_{customers}"));
    g.sample_size(10);
    let cases = [
        (
            "group_by_country",
            "SELECT country, count(*), count(age) FROM profiles GROUP BY country".to_string(),
        ),
        (
            "join_count",
            "SELECT count(*) FROM state s JOIN profiles p USING (customer_id) WHERE p.age > 40"
                .to_string(),
        ),
        (
            "join_funnel",
            format!("SELECT p.country, count(s.stage1), count(s.stage2), count(s.stage3), count(s.{last}) FROM state s JOIN profiles p USING (customer_id) GROUP BY p.country"),
        ),
        (
            "quantiles",
            "SELECT median(stage1), quantile_cont(stage2, 0.9), quantile_disc(stage3, 0.1) FROM state"
                .to_string(),
        ),
        (
            "count_distinct_sum",
            "SELECT count(DISTINCT age), sum(age) FROM profiles".to_string(),
        ),
    ];
    for (name, sql) in &cases {
        g.bench_function(*name, |bch| bch.iter(|| engine.execute_one(sql).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
