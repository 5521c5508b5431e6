//! The query log (issue 16): every statement, over either protocol, lands in `system.queries`
//! with its user, client, protocol, text, times, scans and result; the log survives a restart,
//! keeps `query_log_days`, and stays out of table listings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_client::{Client, Session};
use journeydb_query::Engine;
use journeydb_server::{Config, Server};
use journeydb_storage::{Database, KeyType, Options};

struct Running {
    addr: std::net::SocketAddr,
    pg: std::net::SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn start(dir: &std::path::Path, key_type: KeyType) -> Running {
    let db = if dir.join("CURRENT").exists() {
        Database::open(dir, Options::default())
    } else {
        Database::create(dir, key_type, Options::default())
    }
    .unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        pg_listen: Some("127.0.0.1:0".parse().unwrap()),
        query_log_days: 7,
        ..Config::default()
    };
    let server = Server::bind(config, Engine::new(Arc::new(db))).unwrap();
    let (addr, pg) = (server.local_addr().unwrap(), server.pg_addr().unwrap());
    let stop = server.stop_handle();
    let thread = Some(std::thread::spawn(move || server.serve().unwrap()));
    Running {
        addr,
        pg,
        stop,
        thread,
    }
}

fn strings(b: &RecordBatch, col: &str) -> Vec<String> {
    let a = b.column_by_name(col).unwrap();
    let a = a.as_any().downcast_ref::<StringArray>().unwrap();
    (0..a.len())
        .map(|i| {
            if a.is_null(i) {
                String::new()
            } else {
                a.value(i).to_string()
            }
        })
        .collect()
}

fn ints(b: &RecordBatch, col: &str) -> Vec<i64> {
    let a = b.column_by_name(col).unwrap();
    let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
    (0..a.len()).map(|i| a.value(i)).collect()
}

/// The log's rows as (query, row) once `want` statements are in it (it is written each second).
fn log_rows(c: &mut Client, want: usize) -> RecordBatch {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c
            .run("SELECT query, user_name, client, protocol, result, error, wall_us, cpu_us, rows_scanned, bytes_decoded, rows_returned, rows_written, bytes_written, started_at FROM system.queries ORDER BY started_at")
            .unwrap();
        let b = arrow_select::concat::concat_batches(&r.batches[0].schema(), &r.batches).unwrap();
        if b.num_rows() >= want || Instant::now() > deadline {
            return b;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_statement_of_both_protocols_is_logged_and_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), KeyType::Varchar);
    let mut n = Client::connect(srv.addr, None).unwrap();
    n.run("CREATE TABLE t (k VARCHAR PRIMARY KEY, v BIGINT)")
        .unwrap();
    let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
    let b = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ])),
        vec![
            Arc::new(StringArray::from(keys)) as ArrayRef,
            Arc::new(Int64Array::from((0..1000).collect::<Vec<i64>>())) as ArrayRef,
        ],
    )
    .unwrap();
    n.append("t", &b).unwrap();
    n.run("SELECT count(*) FROM t WHERE v > 10").unwrap();
    assert!(n.run("SELECT nope FROM t").is_err());
    let mut p = postgres::Client::connect(
        &format!("host=127.0.0.1 port={} user=analyst", srv.pg.port()),
        postgres::NoTls,
    )
    .unwrap();
    let rows = p
        .query("SELECT k, v FROM t WHERE v < $1", &[&5i64])
        .unwrap();
    assert_eq!(rows.len(), 5);
    p.batch_execute("INSERT INTO t VALUES ('x''y', 7)").unwrap();

    let log = log_rows(&mut n, 6);
    let text = strings(&log, "query");
    let find = |needle: &str| {
        text.iter()
            .position(|q| q.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in the log: {text:#?}"))
    };
    let create = find("CREATE TABLE t");
    let append = find("APPEND INTO t");
    let count = find("count(*)");
    let bad = find("nope");
    let select = find("v < ");
    let insert = find("INSERT INTO t");
    // Statement order is kept.
    assert!(create < append && append < count && count < bad && bad < select && select < insert);
    let (users, protocols, results) = (
        strings(&log, "user_name"),
        strings(&log, "protocol"),
        strings(&log, "result"),
    );
    assert_eq!(protocols[count], "native");
    assert_eq!(protocols[select], "postgresql");
    assert_eq!(users[select], "analyst");
    assert!(strings(&log, "client")[select].starts_with("127.0.0.1:"));
    assert_eq!(results[count], "ok");
    assert_eq!(results[bad], "42703", "an unknown column's SQLSTATE");
    assert!(strings(&log, "error")[bad].contains("nope"));
    // Literals are kept (the parameter is bound as a literal).
    assert!(text[insert].contains("'x''y'"), "{}", text[insert]);
    assert!(text[select].contains('5'), "{}", text[select]);
    // Scans, results and writes are counted.
    let (scanned, decoded) = (ints(&log, "rows_scanned"), ints(&log, "bytes_decoded"));
    assert_eq!(scanned[count], 1000);
    assert!(decoded[count] >= 8000, "{}", decoded[count]);
    assert_eq!(ints(&log, "rows_returned")[select], 5);
    assert_eq!(ints(&log, "rows_written")[append], 1000);
    assert!(ints(&log, "bytes_written")[append] > 8000);
    assert_eq!(ints(&log, "rows_written")[insert], 1);
    assert!(ints(&log, "wall_us").iter().all(|w| *w >= 0));
    assert!(ints(&log, "cpu_us")[count] >= 0);
    // The log is a table of its own, out of every listing.
    for q in [
        "SHOW TABLES",
        "SELECT name FROM system.tables",
        "SELECT table_name FROM information_schema.tables",
    ] {
        let r = n.run(q).unwrap();
        let all: Vec<String> = r
            .batches
            .iter()
            .flat_map(|b| strings(b, b.schema().field(0).name()))
            .collect();
        assert_eq!(all, ["t"], "{q}");
    }
    // SQL over it: statements per protocol.
    let r = n
        .run("SELECT protocol, count(*) AS n FROM system.queries GROUP BY protocol ORDER BY protocol")
        .unwrap();
    let per: BTreeMap<String, i64> = strings(&r.batches[0], "protocol")
        .into_iter()
        .zip(ints(&r.batches[0], "n"))
        .collect();
    assert!(per["native"] >= 4 && per["postgresql"] >= 2, "{per:?}");
    // system.costs: the log grouped per tenant and day, priced with the default rates.
    let r = n
        .run("SELECT tenant, statements, cpu_seconds, bytes_scanned, bytes_written, bytes_stored, cost FROM system.costs")
        .unwrap();
    let c = &r.batches[0];
    assert_eq!(c.num_rows(), 1, "one tenant, one day");
    assert_eq!(strings(c, "tenant"), ["default"]);
    let f = |b: &RecordBatch, col: &str| {
        b.column_by_name(col)
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::Float64Array>()
            .unwrap()
            .value(0)
    };
    let sums = n
        .run("SELECT count(*) AS n, sum(cpu_us) AS cpu, sum(bytes_scanned) AS scanned, sum(bytes_written) AS written FROM system.queries WHERE protocol <> 'storage'")
        .unwrap();
    let s = &sums.batches[0];
    // Statements logged between the two queries (the costs query itself) may differ by a few.
    let (count, cpu_us, scanned, written) = (
        ints(s, "n")[0],
        ints(s, "cpu")[0],
        ints(s, "scanned")[0],
        ints(s, "written")[0],
    );
    assert!((ints(c, "statements")[0] - count).abs() <= 2);
    assert_eq!(ints(c, "bytes_written")[0], written);
    assert!(ints(c, "bytes_scanned")[0] <= scanned);
    let rates = journeydb_query::costs::CostRates::default();
    // The server sampled the database's size at start: its day's average is what is stored.
    let stored = f(c, "bytes_stored");
    let on_disk: u64 = walk(dir.path());
    assert!(
        stored > 0.0 && stored <= on_disk as f64,
        "{stored} of {on_disk}"
    );
    let want = f(c, "cpu_seconds") * rates.cpu_second
        + ints(c, "bytes_scanned")[0] as f64 / 1e9 * rates.gb_scanned
        + written as f64 / 1e9 * rates.gb_written
        + stored / 1e9 * rates.gb_stored_day;
    assert!(
        (f(c, "cost") - want).abs() < 1e-12,
        "{} against {want}",
        f(c, "cost")
    );
    assert!(f(c, "cpu_seconds") <= cpu_us as f64 / 1e6 + 1.0);
    assert!(f(c, "cost") > 0.0);
    drop(p);
    drop(n);
    drop(srv);

    // After a restart the log is still there (the stop flushed it), and grows on.
    let srv = start(dir.path(), KeyType::Varchar);
    let mut n = Client::connect(srv.addr, None).unwrap();
    n.run("SELECT 1").unwrap();
    let log = log_rows(&mut n, text.len() + 2);
    assert!(strings(&log, "query")
        .iter()
        .any(|q| q.contains("INSERT INTO t")));
    assert!(
        log.num_rows() > text.len(),
        "{} rows after the restart",
        log.num_rows()
    );
}

/// Bytes of the files below `dir`.
fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

/// Appends `n` rows to `log`'s table directly, started `age_days` ago, with ids from `first`.
fn old_rows(log: &journeydb_server::querylog::QueryLog, first: i64, n: i64, age_days: i64) {
    let engine = log.engine();
    let values: Vec<String> = (first..first + n)
        .map(|id| format!("({id}, 'old {id}', now() - INTERVAL '{age_days} days', 'ok')"))
        .collect();
    engine
        .execute(&format!(
            "INSERT INTO {} (query_id, query, started_at, result) VALUES {}",
            journeydb_query::QUERY_LOG_TABLE,
            values.join(", ")
        ))
        .unwrap();
}

fn generations(dir: &std::path::Path) -> Vec<String> {
    let mut g: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gen-"))
        .collect();
    g.sort();
    g
}

#[test]
fn the_log_keeps_its_days_in_a_database_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    {
        let srv = start(dir.path(), KeyType::Bigint);
        let mut n = Client::connect(srv.addr, None).unwrap();
        n.run("CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT)")
            .unwrap();
        n.run("INSERT INTO t VALUES (1, 1), (2, 2)").unwrap();
        let _ = log_rows(&mut n, 2);
        // The log is not a table of the database: its keys never enter the customers'.
        let err = n
            .run(&format!(
                "SELECT count(*) FROM {}",
                journeydb_query::QUERY_LOG_TABLE
            ))
            .unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }
    let db = Database::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.snapshot().keys().len(), 2, "only the customers' keys");
    assert_eq!(db.snapshot().table_names(), vec!["t".to_string()]);
    drop(db);
    // Rows older than the retention go at the next start.
    let logdir = dir.path().join("querylog");
    {
        let log = journeydb_server::querylog::QueryLog::open(&logdir, 7).unwrap();
        old_rows(&log, 1, 3, 30);
        old_rows(&log, 10, 1, 6);
    }
    let srv = start(dir.path(), KeyType::Bigint);
    let mut n = Client::connect(srv.addr, None).unwrap();
    let log = log_rows(&mut n, 1);
    let text = strings(&log, "query");
    for gone in ["old 1", "old 2", "old 3"] {
        assert!(!text.contains(&gone.to_string()), "{text:?}");
    }
    assert!(text.contains(&"old 10".to_string()), "{text:?}");
    assert!(
        text.iter().any(|q| q.contains("CREATE TABLE t")),
        "{text:?}"
    );
    assert_eq!(generations(&logdir).len(), 1, "{:?}", generations(&logdir));
}

#[test]
fn a_rebuild_bounds_the_dictionary_and_a_crash_mid_copy_keeps_the_old_generation() {
    let dir = tempfile::tempdir().unwrap();
    let logdir = dir.path().join("log");
    let slack = 50;
    {
        let log = journeydb_server::querylog::QueryLog::open_with(&logdir, 7, slack).unwrap();
        // Many statements over the days: the old ones expire, their keys must not stay.
        old_rows(&log, 1, 400, 30);
        old_rows(&log, 1000, 20, 1);
        let keys = |log: &journeydb_server::querylog::QueryLog| {
            log.engine().database().snapshot().keys().len()
        };
        assert_eq!(keys(&log), 420);
        log.retain().unwrap();
        assert_eq!(
            keys(&log),
            20,
            "the rebuild leaves only the live rows' keys"
        );
        let b = log
            .engine()
            .query(&format!(
                "SELECT count(*) AS n FROM {}",
                journeydb_query::QUERY_LOG_TABLE
            ))
            .unwrap();
        assert_eq!(ints(&b, "n"), vec![20]);
        assert_eq!(generations(&logdir), vec!["gen-000002".to_string()]);
        // Nothing to remove: no rebuild, the generation stays.
        log.retain().unwrap();
        assert_eq!(generations(&logdir), vec!["gen-000002".to_string()]);
    }
    // A copy that died before CURRENT named it: a stray generation, deleted at open.
    std::fs::create_dir_all(logdir.join("gen-000009")).unwrap();
    std::fs::write(logdir.join("gen-000009").join("junk"), b"x").unwrap();
    let log = journeydb_server::querylog::QueryLog::open_with(&logdir, 7, slack).unwrap();
    assert!(
        !logdir.join("gen-000009").exists(),
        "{:?}",
        generations(&logdir)
    );
    let b = log
        .engine()
        .query(&format!(
            "SELECT min(query_id) AS lo FROM {}",
            journeydb_query::QUERY_LOG_TABLE
        ))
        .unwrap();
    assert_eq!(ints(&b, "lo"), vec![1000]);
}

#[test]
fn a_log_kept_inside_the_database_by_an_older_version_is_moved_out() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::create(dir.path(), KeyType::Varchar, Options::default()).unwrap();
        let e = Engine::new(Arc::new(db));
        e.execute(&format!(
            "CREATE TABLE {} (query_id VARCHAR PRIMARY KEY, tenant VARCHAR, user_name VARCHAR, \
             client VARCHAR, protocol VARCHAR, query VARCHAR, started_at TIMESTAMP, wall_us BIGINT, \
             cpu_us BIGINT, rows_scanned BIGINT, bytes_scanned BIGINT, bytes_decoded BIGINT, \
             rows_returned BIGINT, rows_written BIGINT, bytes_written BIGINT, result VARCHAR, \
             error VARCHAR)",
            journeydb_query::QUERY_LOG_TABLE
        ))
        .unwrap();
        e.execute(&format!(
            "INSERT INTO {} (query_id, tenant, query, started_at, result) VALUES \
             ('00000000000000000001', 'default', 'SELECT 41', now(), 'ok'), \
             ('00000000000000000002', 'default', 'SELECT 42', now(), 'ok')",
            journeydb_query::QUERY_LOG_TABLE
        ))
        .unwrap();
    }
    let srv = start(dir.path(), KeyType::Varchar);
    let mut n = Client::connect(srv.addr, None).unwrap();
    let log = log_rows(&mut n, 2);
    let text = strings(&log, "query");
    assert!(text.contains(&"SELECT 41".to_string()), "{text:?}");
    assert!(text.contains(&"SELECT 42".to_string()), "{text:?}");
    drop(n);
    drop(srv);
    let db = Database::open(dir.path(), Options::default()).unwrap();
    assert!(db.snapshot().table_names().is_empty());
}
