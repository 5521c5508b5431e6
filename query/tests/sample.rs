//! TABLESAMPLE BERNOULLI: deterministic with REPEATABLE, close to the asked share, and the same rows
//! whether sampled before or after a filter (the planner samples after the WHERE).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use journeydb_query::{Engine, Output};
use journeydb_storage::{Database, KeyType, Options};

const N: usize = 100_000;

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(
        Database::create(
            dir.path(),
            KeyType::Varchar,
            Options {
                partition_rows: 65536,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let e = Engine::new(db.clone());
    e.execute_one("CREATE TABLE t (k VARCHAR PRIMARY KEY, a TIMESTAMP)")
        .unwrap();
    let keys: Vec<String> = (0..N).map(|i| format!("k{i:06}")).collect();
    let a: Vec<Option<i64>> = (0..N).map(|i| (i % 3 == 0).then_some(i as i64)).collect();
    let b = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("a", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ])),
        vec![
            Arc::new(StringArray::from(keys)) as ArrayRef,
            Arc::new(TimestampMicrosecondArray::from(a)) as ArrayRef,
        ],
    )
    .unwrap();
    db.append("t", &b).unwrap();
    (dir, e)
}

fn keys(e: &Engine, sql: &str) -> Vec<String> {
    let Output::Rows(b) = e.execute_one(sql).unwrap() else {
        panic!("no rows")
    };
    let col = b
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .clone();
    let mut v: Vec<String> = (0..col.len()).map(|i| col.value(i).to_string()).collect();
    v.sort();
    v
}

#[test]
fn repeatable_samples_are_deterministic_and_commute_with_filters() {
    let (_d, e) = engine();
    let s1 = keys(
        &e,
        "SELECT k FROM t TABLESAMPLE BERNOULLI (30) REPEATABLE (11) WHERE a IS NOT NULL",
    );
    let s2 = keys(
        &e,
        "SELECT k FROM t TABLESAMPLE BERNOULLI (30) REPEATABLE (11) WHERE a IS NOT NULL",
    );
    assert_eq!(s1, s2, "the same seed gives the same rows");
    let other = keys(
        &e,
        "SELECT k FROM t TABLESAMPLE BERNOULLI (30) REPEATABLE (12) WHERE a IS NOT NULL",
    );
    assert_ne!(s1, other, "another seed gives other rows");
    // Sampling the whole table, then filtering, gives the rows of filtering then sampling.
    let all = keys(&e, "SELECT k FROM (SELECT k, a FROM t TABLESAMPLE BERNOULLI (30) REPEATABLE (11)) WHERE a IS NOT NULL");
    assert_eq!(s1, all);
    // The share is close to 30% of the 33,334 matching rows (6 standard deviations is about 3%).
    let share = s1.len() as f64 / 33_334.0;
    assert!((share - 0.30).abs() < 0.03, "sampled share {share}");
    let unseeded = keys(&e, "SELECT k FROM t TABLESAMPLE BERNOULLI (50)");
    assert!((unseeded.len() as f64 / N as f64 - 0.5).abs() < 0.03);
}

#[test]
fn streamed_results_equal_the_whole_result() {
    let (_d, e) = engine();
    for sql in [
        "SELECT k, a FROM t WHERE a IS NOT NULL OR k < 'k000100'",
        "SELECT k FROM t",
        "SELECT k FROM t LIMIT 70000 OFFSET 10",
        "SELECT k FROM t LIMIT 5 OFFSET 99998",
        "SELECT k, a FROM t ORDER BY a DESC LIMIT 3",
    ] {
        let Output::Rows(whole) = e.execute_one(sql).unwrap() else {
            panic!("rows")
        };
        let batches: Vec<RecordBatch> = e
            .query_stream(sql)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(batches
            .iter()
            .all(|b| b.num_rows() <= journeydb_query::exec::STREAM_BATCH_ROWS));
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(n, whole.num_rows(), "{sql}");
        let mut streamed = Vec::new();
        for b in &batches {
            let c = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            streamed.extend((0..c.len()).map(|i| c.value(i).to_string()));
        }
        let c = whole
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let all: Vec<String> = (0..c.len()).map(|i| c.value(i).to_string()).collect();
        assert_eq!(streamed, all, "{sql}");
    }
}
