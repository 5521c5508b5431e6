//! Data contracts (issue 16): pre-flight refusals of appends, INSERTs, COPY and CREATE TABLE AS
//! that break a table's contract (nothing committed, a report of rule, rows and examples), the
//! on-demand check, and the post-publish checks after a swap or replace with their alert.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, Int64Array, StringArray};
use journeydb_query::{Engine, Output, QueryError};
use journeydb_storage::{Database, KeyType, Options};

fn open(dir: &std::path::Path) -> Engine {
    let db = if dir.join("CURRENT").exists() {
        Database::open(dir, Options::default())
    } else {
        Database::create(dir, KeyType::Varchar, Options::default())
    }
    .unwrap();
    Engine::new(Arc::new(db))
}

fn count(e: &Engine, sql: &str) -> i64 {
    let b = e.query(sql).unwrap();
    b.column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

fn refused(r: Result<Vec<Output>, QueryError>) -> String {
    match r {
        Err(QueryError::ContractViolated(m)) => m,
        other => panic!("expected a contract refusal, got {other:?}"),
    }
}

const CONTRACT: &str = r#"
owners = ["growth@example.com"]
stakeholders = ["crm@example.com"]
sample_percent = 100
rows = { min_ratio = 0.6, max_ratio = 4.0 }

[[column]]
name = "age"
type = "bigint"
not_null = true
min = 0
max = 130

[[column]]
name = "tier"
values = ["gold", "silver"]

[[invariant]]
name = "adults are not bronze"
sql = "SELECT count(*) FROM {table} WHERE age >= 18 AND tier = 'bronze'"
"#;

fn setup(e: &Engine) {
    e.execute("CREATE TABLE people (k VARCHAR PRIMARY KEY, age BIGINT, tier VARCHAR)")
        .unwrap();
    e.execute(
        "INSERT INTO people VALUES ('a', 30, 'gold'), ('b', 40, 'silver'), ('c', 50, 'gold'), \
         ('d', 60, 'gold')",
    )
    .unwrap();
    e.execute(&format!(
        "ALTER TABLE people SET CONTRACT '{}'",
        CONTRACT.replace('\'', "''")
    ))
    .unwrap();
}

#[test]
fn writes_that_break_the_contract_are_refused_whole_with_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    setup(&e);
    // INSERT: two rules broken, each with its rows and example keys; nothing committed.
    let m = refused(e.execute(
        "INSERT INTO people VALUES ('x', 200, 'gold'), ('y', NULL, 'tin'), ('z', 20, 'gold')",
    ));
    assert!(m.contains("age in [0, 130] (1 rows, e.g. x)"), "{m}");
    assert!(m.contains("age is not null (1 rows, e.g. y)"), "{m}");
    assert!(
        m.contains("tier in [\"gold\", \"silver\"] (1 rows, e.g. y)"),
        "{m}"
    );
    assert_eq!(count(&e, "SELECT count(*) FROM people"), 4);
    // A good INSERT goes in.
    e.execute("INSERT INTO people VALUES ('e', 20, 'silver')")
        .unwrap();
    assert_eq!(count(&e, "SELECT count(*) FROM people"), 5);
    // COPY from a file (a bulk load): one bad row refuses the whole file.
    let csv = dir.path().join("in.csv");
    std::fs::write(&csv, "k,age,tier\nf,21,gold\ng,-3,gold\n").unwrap();
    let m = refused(e.execute(&format!(
        "COPY people FROM '{}' (FORMAT csv, HEADER)",
        csv.display()
    )));
    assert!(m.contains("e.g. g"), "{m}");
    assert_eq!(count(&e, "SELECT count(*) FROM people"), 5);
    // CREATE OR REPLACE .. AS: the staged rows are checked whole, rows against the version
    // replaced (1 of 5 is under half), and the invariant; the table stays as it was.
    let m = refused(e.execute(
        "CREATE OR REPLACE TABLE people AS SELECT k, age, tier FROM people WHERE k = 'a'",
    ));
    assert!(
        m.contains("rows relative to the version replaced (5)"),
        "{m}"
    );
    assert_eq!(count(&e, "SELECT count(*) FROM people"), 5);
    let m = refused(e.execute(
        "CREATE OR REPLACE TABLE people AS SELECT k, age, CASE WHEN k = 'a' THEN 'bronze' ELSE tier END AS tier FROM people",
    ));
    assert!(m.contains("tier in"), "{m}");
    let ok =
        e.execute("CREATE OR REPLACE TABLE people AS SELECT k, age + 1 AS age, tier FROM people");
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(count(&e, "SELECT count(*) FROM people WHERE age = 21"), 1);
    // The contract is durable: a reopened database still enforces it.
    drop(e);
    let e = open(dir.path());
    refused(e.execute("INSERT INTO people VALUES ('y', NULL, 'gold')"));
    let shown = e.query("SHOW CONTRACT people").unwrap();
    let text = shown
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert!(text.value(0).contains("adults are not bronze"));
    // Reset: writes are free again.
    e.execute("ALTER TABLE people RESET CONTRACT").unwrap();
    e.execute("INSERT INTO people VALUES ('y', NULL, 'tin')")
        .unwrap();
    assert!(e
        .query("SHOW CONTRACT people")
        .unwrap()
        .column(1)
        .is_null(0));
    // Bad contracts are refused with the reason.
    for bad in [
        "sample_percent = 0",
        "[[column]]\nname = \"age\"\ntype = \"int128\"",
        "x = 1",
    ] {
        let r = e.execute(&format!("ALTER TABLE people SET CONTRACT '{bad}'"));
        assert!(
            matches!(r, Err(QueryError::InvalidValue(_))),
            "{bad}: {r:?}"
        );
    }
    let r = e.execute("ALTER TABLE nobody SET CONTRACT 'owners = []'");
    assert!(matches!(r, Err(QueryError::TableNotFound(_))), "{r:?}");
}

#[test]
fn a_swap_runs_the_post_publish_checks_and_the_alert_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    setup(&e);
    let out = dir.path().join("alert.json");
    let with_alert = format!(
        "alert = {{ command = \"cat > {}\" }}\n{CONTRACT}",
        out.display()
    );
    e.execute(&format!(
        "ALTER TABLE people SET CONTRACT '{}'",
        with_alert.replace('\'', "''")
    ))
    .unwrap();
    // A staging table breaking the contract is published by a swap: the publish stands, the
    // checks fail on it, and the alert gets the report.
    e.execute("CREATE TABLE staging (k VARCHAR PRIMARY KEY, age BIGINT, tier VARCHAR)")
        .unwrap();
    e.execute("INSERT INTO staging VALUES ('a', 30, 'bronze'), ('b', 300, 'gold')")
        .unwrap();
    e.execute("ALTER TABLE staging SWAP WITH people").unwrap();
    assert_eq!(count(&e, "SELECT count(*) FROM people"), 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    let json = loop {
        if let Ok(t) = std::fs::read_to_string(&out) {
            if t.ends_with('}') {
                break t;
            }
        }
        assert!(Instant::now() < deadline, "no alert");
        std::thread::sleep(Duration::from_millis(100));
    };
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["table"], "people");
    assert_eq!(v["phase"], "post-publish");
    assert_eq!(v["owners"][0], "growth@example.com");
    assert_eq!(v["stakeholders"][0], "crm@example.com");
    let rules: Vec<String> = v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["rule"].as_str().unwrap().to_string())
        .collect();
    assert!(rules.iter().any(|r| r.starts_with("age in")), "{rules:?}");
    assert!(rules.iter().any(|r| r.starts_with("tier in")), "{rules:?}");
    assert!(
        rules.iter().any(|r| r == "invariant adults are not bronze"),
        "{rules:?}"
    );
    assert!(
        rules
            .iter()
            .any(|r| r.starts_with("rows relative to the version replaced (4)")),
        "{rules:?}"
    );
    // On demand: the same findings as rows.
    let b = e.query("CHECK CONTRACT people").unwrap();
    let found = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
    assert!((0..found.len()).any(|i| found.value(i).starts_with("age in")));
    // A publish that keeps the contract sends nothing.
    std::fs::remove_file(&out).unwrap();
    e.execute("CREATE TABLE good (k VARCHAR PRIMARY KEY, age BIGINT, tier VARCHAR)")
        .unwrap();
    e.execute("INSERT INTO good VALUES ('a', 30, 'gold'), ('b', 31, 'gold')")
        .unwrap();
    e.execute("ALTER TABLE good SWAP WITH people").unwrap();
    let r = e.post_publish("people", Some(2)).unwrap();
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!out.exists());
    // Freshness: the newest timestamp of a column must be recent.
    e.execute("CREATE TABLE seen (k VARCHAR PRIMARY KEY, at TIMESTAMP)")
        .unwrap();
    e.execute("INSERT INTO seen VALUES ('a', now() - INTERVAL '3 hours')")
        .unwrap();
    e.execute("ALTER TABLE seen SET CONTRACT 'freshness = { column = \"at\", max_age_hours = 2 }'")
        .unwrap();
    let b = e.query("CHECK CONTRACT seen").unwrap();
    let found = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found.value(0), "newest at at most 2 hours old");
    e.execute("INSERT INTO seen VALUES ('b', now())").unwrap();
    assert_eq!(e.query("CHECK CONTRACT seen").unwrap().num_rows(), 0);
}
