//! `SELECT min(c), max(c), count(c), count(*) FROM t` (no WHERE, no GROUP BY) is answered from the
//! segment footers' counts and statistics when they can tell, and by reading the values when they
//! cannot (unflushed appends, segments of overlapping rows, VARCHAR). Either way the answer must be
//! the one the values give: each state of the table is checked against the same aggregates behind
//! a filter that keeps every row (which always reads values), and the meter tells which path ran.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use journeydb_query::format::cell_text;
use journeydb_query::{meter, Engine, Output};
use journeydb_storage::{Database, KeyType, Options};

const AGGS: &str = "min(a), max(a), count(a), count(*), min(t), max(t), count(t), min(d), max(d), \
                    min(b), max(b), count(b)";

fn batch(keys: std::ops::Range<usize>, shift: i64) -> RecordBatch {
    let ks: Vec<usize> = keys.collect();
    let int = |f: &dyn Fn(usize) -> Option<i64>| ks.iter().map(|k| f(*k)).collect::<Vec<_>>();
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("a", DataType::Int64, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("d", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("s", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from(
                ks.iter().map(|k| format!("k{k:07}")).collect::<Vec<_>>(),
            )) as ArrayRef,
            Arc::new(Int64Array::from(int(&|k| {
                (k % 7 != 0).then_some((k as i64 * 7919) % 100_003 - 50_000 + shift)
            }))),
            Arc::new(TimestampMicrosecondArray::from(int(&|k| {
                (k % 3 == 0)
                    .then_some(1_700_000_000_000_000 + (k as i64 % 90) * 86_400_000_000 + shift)
            }))),
            Arc::new(Float64Array::from(
                ks.iter()
                    .map(|k| (k % 5 != 0).then_some(((k * 31) % 1000) as f64 / 7.0 - 60.0))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                ks.iter()
                    .map(|k| (k % 4 != 0).then_some(k % 9 == 0))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                ks.iter()
                    .map(|k| format!("s{}", k % 13))
                    .collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

fn answer(e: &Engine, sql: &str) -> (Vec<Option<String>>, meter::Reading) {
    let (out, reading) = meter::measure(|| e.execute_one(sql).unwrap());
    let Output::Rows(b) = out else {
        panic!("no rows: {sql}")
    };
    assert_eq!(b.num_rows(), 1, "{sql}");
    let row = b
        .columns()
        .iter()
        .map(|c| cell_text(c.as_ref(), 0))
        .collect();
    (row, reading)
}

/// The footers' answer equals the values' answer; returns whether the footers gave it.
fn check(e: &Engine, aggs: &str) -> bool {
    let (fast, r) = answer(e, &format!("SELECT {aggs} FROM t"));
    let (slow, r_slow) = answer(e, &format!("SELECT {aggs} FROM t WHERE k >= ''"));
    assert_eq!(fast, slow, "{aggs}");
    assert!(r_slow.rows_scanned > 0 || slow[0].is_none());
    r.rows_scanned == 0
}

#[test]
fn aggregates_from_footers_equal_those_from_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path(), KeyType::Varchar, Options::default()).unwrap());
    let e = Engine::new(db.clone());
    e.execute_one(
        "CREATE TABLE t (k VARCHAR PRIMARY KEY, a BIGINT, t TIMESTAMP, d DOUBLE, b BOOLEAN, s VARCHAR)",
    )
    .unwrap();
    // An empty table: no partition, NULL extremes and zero counts.
    assert!(check(&e, AGGS));
    // Unflushed appends: the values are read.
    db.append("t", &batch(0..150_000, 0)).unwrap();
    assert!(!check(&e, AGGS));
    // One segment a partition (three partitions): the footers answer.
    db.flush().unwrap();
    assert!(check(&e, AGGS));
    // New keys in new segments of the same partitions (disjoint rows): still the footers.
    db.append("t", &batch(150_000..160_000, 0)).unwrap();
    db.flush().unwrap();
    assert!(check(&e, AGGS));
    // VARCHAR keeps no statistics: the values.
    assert!(!check(&e, "min(s), max(a)"));
    // Keys appended again (their values merge under MIN with the old ones): segments overlap, so
    // the values are read; then a compaction leaves one segment a partition again.
    db.append("t", &batch(1_000..2_000, -70_000)).unwrap();
    db.flush().unwrap();
    assert!(!check(&e, AGGS));
    db.compact(2).unwrap();
    assert!(check(&e, AGGS));
}
