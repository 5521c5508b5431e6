//! CREATE TABLE AS never leaves its scratch table behind (issue 15's probe): a target name the
//! final replace refuses is caught first, and scratch tables of a process that died mid-way are
//! dropped when the next engine starts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use journeydb_query::Engine;
use journeydb_storage::{
    CatalogOp, ColumnDef, ColumnType, Database, KeyType, Options, TableSchema,
};

fn names(db: &Database) -> Vec<String> {
    let mut n = db.snapshot().table_names();
    n.sort();
    n
}

#[test]
fn scratch_tables_never_stay() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options {
        background: false,
        ..Options::default()
    };
    let db = Arc::new(Database::create(dir.path(), KeyType::Varchar, opts()).unwrap());
    let e = Engine::new(db.clone());
    e.execute("CREATE TABLE t (k VARCHAR PRIMARY KEY, a TIMESTAMP)")
        .unwrap();
    e.execute("INSERT INTO t VALUES ('x', '2026-01-01')")
        .unwrap();
    assert!(e
        .execute("CREATE OR REPLACE TABLE \"bad name/..\" AS SELECT k, a FROM t")
        .is_err());
    assert_eq!(names(&db), vec!["t".to_string()]);
    // A scratch table of a dead process (another pid) is dropped by the next engine.
    db.commit(&[CatalogOp::Create {
        name: "_ctas_999999999_0".into(),
        schema: TableSchema::new("k", vec![ColumnDef::new("a", ColumnType::Timestamp)]),
        if_not_exists: false,
    }])
    .unwrap();
    drop(e);
    let _e = Engine::new(db.clone());
    assert_eq!(names(&db), vec!["t".to_string()]);
}
