//! `ORDER BY .. LIMIT k` over a large result takes the top-k path (only the sort columns laid out for
//! every row): its rows must be exactly the first rows of the whole sorted result, for every kind of
//! sort key (values with ties and NULLs, the customer key, several columns, descending), with OFFSET,
//! and over a bag (UNION ALL) where a key has several rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_query::format::cell_text;
use journeydb_query::{Engine, Output};
use journeydb_storage::{Database, KeyType, Options};

// Three partitions of 65,536 ordinals.
const N: usize = 140_000;

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path(), KeyType::Varchar, Options::default()).unwrap());
    let e = Engine::new(db.clone());
    e.execute_one("CREATE TABLE t (k VARCHAR PRIMARY KEY, a BIGINT, b BIGINT, s VARCHAR)")
        .unwrap();
    let col = |f: &dyn Fn(usize) -> Option<i64>| {
        Arc::new(Int64Array::from((0..N).map(f).collect::<Vec<_>>())) as ArrayRef
    };
    let b = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from(
                (0..N)
                    .map(|i| format!("k{:06}", (i * 7919) % N))
                    .collect::<Vec<_>>(),
            )) as ArrayRef,
            // Many ties and some NULLs.
            col(&|i| (i % 11 != 0).then_some((i * 31 % 97) as i64)),
            col(&|i| Some((i * 17 % 1013) as i64)),
            Arc::new(StringArray::from(
                (0..N)
                    .map(|i| (i % 5 != 0).then(|| format!("s{}", i % 13)))
                    .collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    db.append("t", &b).unwrap();
    db.flush().unwrap();
    (dir, e)
}

fn rows(e: &Engine, sql: &str) -> Vec<Vec<Option<String>>> {
    let Output::Rows(b) = e.execute_one(sql).unwrap() else {
        panic!("no rows: {sql}")
    };
    (0..b.num_rows())
        .map(|r| {
            b.columns()
                .iter()
                .map(|c| cell_text(c.as_ref(), r))
                .collect()
        })
        .collect()
}

#[test]
fn top_k_rows_are_the_first_rows_of_the_whole_sort() {
    let (_dir, e) = engine();
    // Every ORDER BY ends with a unique column, so the whole order is defined and both paths must
    // return the same rows in the same order.
    let cases = [
        ("SELECT k, a, b, s FROM t", "a, k"),
        ("SELECT k, a, b, s FROM t", "a DESC NULLS LAST, b, k"),
        ("SELECT k, a, b, s FROM t", "a NULLS FIRST, k DESC"),
        ("SELECT k, a, s FROM t", "k"),
        ("SELECT k, a, s FROM t", "k DESC"),
        ("SELECT k, s, b FROM t WHERE a > 40", "s DESC, b, k"),
        ("SELECT k, a + b AS x FROM t", "x DESC, k"),
        (
            "SELECT k, a FROM t WHERE b < 300 UNION ALL SELECT k, b FROM t WHERE a > 50",
            "2, 1",
        ),
    ];
    for (query, order) in cases {
        let whole = rows(&e, &format!("{query} ORDER BY {order}"));
        assert!(whole.len() > 200, "{query}: {} rows", whole.len());
        for (limit, offset) in [(1, 0), (25, 7), (100, 50)] {
            let got = rows(
                &e,
                &format!("{query} ORDER BY {order} LIMIT {limit} OFFSET {offset}"),
            );
            let want: Vec<_> = whole.iter().skip(offset).take(limit).cloned().collect();
            assert_eq!(
                got, want,
                "{query} ORDER BY {order} LIMIT {limit} OFFSET {offset}"
            );
        }
    }
}
