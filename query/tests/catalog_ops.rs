//! The catalog operations the journey runner publishes with: `RENAME TABLE a TO b, c TO d` is one
//! atomic commit (all pairs or none), and `LOCK TABLE` is a named lock per session, released by
//! COMMIT / ROLLBACK or the session's end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use journeydb_query::{Engine, QueryError};
use journeydb_storage::{Database, KeyType, Options};

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        background: false,
        ..Options::default()
    };
    let db = Arc::new(Database::create(dir.path(), KeyType::Varchar, opts).unwrap());
    (dir, Engine::new(db))
}

fn names(e: &Engine) -> Vec<String> {
    let mut n = e.database().snapshot().table_names();
    n.sort();
    n
}

#[test]
fn rename_table_publishes_several_tables_in_one_commit() {
    let (_d, e) = engine();
    for t in ["st", "st_next", "log", "log_next"] {
        e.execute(&format!(
            "CREATE TABLE {t} (k VARCHAR PRIMARY KEY, a BIGINT)"
        ))
        .unwrap();
        e.execute(&format!("INSERT INTO {t} VALUES ('{t}', 1)"))
            .unwrap();
    }
    let before = e.database().snapshot().version();
    e.execute("RENAME TABLE st TO st_old, st_next TO st, log TO log_old, log_next TO log")
        .unwrap();
    assert_eq!(
        e.database().snapshot().version().0,
        before.0 + 1,
        "one commit"
    );
    let who = |t: &str| {
        let b = e.query(&format!("SELECT k FROM {t}")).unwrap();
        journeydb_query::format::cell_text(b.column(0).as_ref(), 0)
    };
    assert_eq!(who("st").as_deref(), Some("st_next"));
    assert_eq!(who("log").as_deref(), Some("log_next"));
    assert_eq!(who("st_old").as_deref(), Some("st"));
    // All or none: the second pair's target exists, so the first pair does not happen either.
    let err = e
        .execute("RENAME TABLE st TO st_x, log TO st_old")
        .unwrap_err();
    assert!(err.to_string().contains("st_old"), "{err}");
    assert_eq!(names(&e), vec!["log", "log_old", "st", "st_old"]);
}

#[test]
fn lock_table_excludes_other_sessions_until_commit_or_the_session_ends() {
    let (_d, e) = engine();
    let a = e.session();
    let b = e.session();
    a.execute("LOCK TABLE journey_x IN EXCLUSIVE MODE NOWAIT")
        .unwrap();
    let err = b.execute("LOCK TABLE journey_x NOWAIT").unwrap_err();
    assert!(matches!(err, QueryError::LockNotAvailable(_)), "{err}");
    a.execute("COMMIT").unwrap();
    b.execute("LOCK TABLE journey_x NOWAIT").unwrap();
    assert!(a.execute("LOCK TABLE journey_x NOWAIT").is_err());
    // A session that ends (a dropped connection, a killed client) releases its locks.
    drop(b);
    a.execute("LOCK TABLE journey_x NOWAIT").unwrap();
    a.execute("ROLLBACK").unwrap();
    e.session().execute("LOCK TABLE journey_x NOWAIT").unwrap();
}

#[test]
fn show_tables_and_describe_list_the_catalog_as_duckdb_does() {
    let (_d, e) = engine();
    e.execute("CREATE TABLE s (customer_id VARCHAR PRIMARY KEY, n BIGINT MERGE SUM, t TIMESTAMP)")
        .unwrap();
    e.execute("CREATE TABLE a (k VARCHAR PRIMARY KEY, x DOUBLE MERGE MAX)")
        .unwrap();
    let b = e.query("SHOW TABLES").unwrap();
    assert_eq!(b.schema().field(0).name(), "name");
    let cell = |b: &arrow_array::RecordBatch, c: usize, r: usize| {
        journeydb_query::format::cell_text(b.column(c).as_ref(), r)
    };
    assert_eq!(
        (0..b.num_rows())
            .map(|r| cell(&b, 0, r))
            .collect::<Vec<_>>(),
        vec![Some("a".to_string()), Some("s".to_string())]
    );
    let d = e.query("DESCRIBE s").unwrap();
    let names: Vec<String> = d
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "column_name",
            "column_type",
            "null",
            "key",
            "default",
            "extra"
        ]
    );
    let rows: Vec<Vec<Option<String>>> = (0..d.num_rows())
        .map(|r| (0..6).map(|c| cell(&d, c, r)).collect())
        .collect();
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        vec![
            vec![
                s("customer_id"),
                s("VARCHAR"),
                s("NO"),
                s("PRI"),
                None,
                None
            ],
            vec![s("n"), s("BIGINT"), s("YES"), None, None, s("MERGE SUM")],
            vec![s("t"), s("TIMESTAMP"), s("YES"), None, None, s("MERGE MIN")],
        ]
    );
    assert!(matches!(
        e.query("DESCRIBE nope").unwrap_err(),
        QueryError::TableNotFound(_)
    ));
    // Forms it does not take are refused by name.
    assert!(e.query("SHOW TABLES LIKE 's%'").is_err());
}

#[test]
fn summarize_gives_per_column_type_range_distinct_count_and_nulls() {
    let (_d, e) = engine();
    e.execute("CREATE TABLE s (k VARCHAR PRIMARY KEY, n BIGINT, t TIMESTAMP, v VARCHAR)")
        .unwrap();
    e.execute(
        "INSERT INTO s VALUES ('a', 4, '2026-01-02', 'x'), ('b', 2, NULL, 'y'), ('c', NULL, '2026-01-01', 'x'), ('d', 4, NULL, NULL)",
    )
    .unwrap();
    let b = e.query("SUMMARIZE s").unwrap();
    let cell = |c: usize, r: usize| journeydb_query::format::cell_text(b.column(c).as_ref(), r);
    let rows: Vec<Vec<Option<String>>> = (0..b.num_rows())
        .map(|r| (0..8).map(|c| cell(c, r)).collect())
        .collect();
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        vec![
            vec![
                s("k"),
                s("VARCHAR"),
                s("a"),
                s("d"),
                s("4"),
                None,
                s("4"),
                s("0.0")
            ],
            vec![
                s("n"),
                s("BIGINT"),
                s("2"),
                s("4"),
                s("2"),
                s("3.3333333333333335"),
                s("4"),
                s("25.0")
            ],
            vec![
                s("t"),
                s("TIMESTAMP"),
                s("2026-01-01 00:00:00"),
                s("2026-01-02 00:00:00"),
                s("2"),
                None,
                s("4"),
                s("50.0")
            ],
            vec![
                s("v"),
                s("VARCHAR"),
                s("x"),
                s("y"),
                s("2"),
                None,
                s("4"),
                s("25.0")
            ],
        ]
    );
    // The PostgreSQL protocol's describe of SUMMARIZE names the same columns.
    let cols = e.describe("SUMMARIZE s").unwrap().unwrap();
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "column_name",
            "column_type",
            "min",
            "max",
            "approx_unique",
            "avg",
            "count",
            "null_percentage"
        ]
    );
    assert!(matches!(
        e.query("SUMMARIZE nope").unwrap_err(),
        QueryError::TableNotFound(_)
    ));
}
