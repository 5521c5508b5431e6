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
    // One 100k-row BIGINT column (about 0.8 MB) and two computed ones fit in 4 MiB.
    e.execute("SELECT n FROM t").unwrap();
    e.execute("SELECT n + 1, n * 2 FROM t").unwrap();
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
