//! The query memory bound counts what projections compute (issue 15's probe: `SELECT v, v, ..
//! (500×) FROM big` passed a 64 MB bound, counted by its scans only, and grew past 6 GB).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use journeydb_query::{Engine, QueryError};
use journeydb_storage::{Database, KeyType, Options};

#[test]
fn a_projection_counts_the_columns_it_makes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        background: false,
        ..Options::default()
    };
    let db = Arc::new(Database::create(dir.path(), KeyType::Bigint, opts).unwrap());
    let e = Engine::new(db).with_memory_limit(4 << 20);
    e.execute("CREATE TABLE t (k BIGINT PRIMARY KEY, n BIGINT)")
        .unwrap();
    for start in (0..100_000).step_by(10_000) {
        let values: Vec<String> = (start..start + 10_000)
            .map(|i| format!("({i}, {i})"))
            .collect();
        e.execute(&format!("INSERT INTO t VALUES {}", values.join(", ")))
            .unwrap();
    }
    // One 100k-row BIGINT column (about 0.8 MB) and a computed one fit in 4 MiB, with the result
    // batch built from them.
    e.execute("SELECT n FROM t").unwrap();
    e.execute("SELECT n + 1 FROM t").unwrap();
    // Six copies of it do not, though the scan alone is the same.
    match e.execute("SELECT n, n, n, n, n, n FROM t") {
        Err(QueryError::MemoryLimit {
            need_mib,
            limit_mib,
        }) => {
            assert!(need_mib > limit_mib, "{need_mib} MiB against {limit_mib}");
        }
        other => panic!("expected the memory limit, got {other:?}"),
    }
}

fn engine_with(limit: u64) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        background: false,
        ..Options::default()
    };
    let db = Arc::new(Database::create(dir.path(), KeyType::Bigint, opts).unwrap());
    (dir, Engine::new(db).with_memory_limit(limit))
}

fn refused(e: &Engine, sql: &str) -> bool {
    match e.execute(sql) {
        Err(QueryError::MemoryLimit {
            need_mib,
            limit_mib,
        }) => {
            assert!(need_mib > limit_mib, "{need_mib} MiB against {limit_mib}");
            true
        }
        Err(other) => panic!("{sql}: {other}"),
        Ok(_) => false,
    }
}

/// What the estimate cannot know, the accounting counts as it runs: long strings (estimated at 32
/// bytes a value) are refused once decoded past the limit.
#[test]
fn decoded_values_are_counted_as_they_are_made() {
    let (_dir, e) = engine_with(4 << 20);
    e.execute("CREATE TABLE t (k BIGINT PRIMARY KEY, s VARCHAR, n BIGINT)")
        .unwrap();
    let long = "x".repeat(2000);
    for start in (0..5000).step_by(500) {
        let values: Vec<String> = (start..start + 500)
            .map(|i| format!("({i}, '{long}', {i})"))
            .collect();
        e.execute(&format!("INSERT INTO t VALUES {}", values.join(", ")))
            .unwrap();
    }
    // 5,000 values of 2 kB: about 10 MB decoded, against an estimate of 160 kB.
    assert!(refused(&e, "SELECT s FROM t"));
    assert!(refused(&e, "SELECT count(*) FROM t WHERE s LIKE 'x%'"));
    // The other column of the same table fits, and the engine goes on.
    assert!(!refused(&e, "SELECT n FROM t"));
    assert!(!refused(&e, "SELECT count(*) FROM t"));
}

/// A sorted result is held whole, with the sort's copy: counted, so ORDER BY can be refused
/// where the same rows streamed unsorted (as the server sends them) fit.
#[test]
fn sorts_and_whole_results_are_counted() {
    // 150k rows: the relation holds n (1.2 MB); a result batch k and n (2.4 MB of values, up to
    // twice that in its builders' capacity), a sort's copy as much again: against 4 MiB.
    let (_dir, e) = engine_with(4 << 20);
    e.execute("CREATE TABLE t (k BIGINT PRIMARY KEY, n BIGINT)")
        .unwrap();
    for start in (0..150_000).step_by(10_000) {
        let values: Vec<String> = (start..start + 10_000)
            .map(|i| format!("({i}, {})", (i * 7919) % 150_000))
            .collect();
        e.execute(&format!("INSERT INTO t VALUES {}", values.join(", ")))
            .unwrap();
    }
    let streamed = |sql: &str| -> Result<usize, QueryError> {
        let mut rows = 0;
        for b in e.query_stream(sql)? {
            rows += b?.num_rows();
        }
        Ok(rows)
    };
    assert_eq!(streamed("SELECT k, n FROM t").unwrap(), 150_000);
    assert!(matches!(
        streamed("SELECT k, n FROM t ORDER BY n"),
        Err(QueryError::MemoryLimit { .. })
    ));
    // The whole result of an embedded query is held at once, so it is counted too.
    assert!(refused(&e, "SELECT k, n FROM t"));
    assert!(!refused(&e, "SELECT k, n FROM t LIMIT 1000"));
}
