//! Files in and out (issue 12): DuckDB round trips (`tests/io_roundtrip.py`), bad input of every
//! kind refused with a message naming where and nothing committed, `--max-errors` with a rejects
//! file, and `journeydb import` / `export` through a server, where the server opens no file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use journeydb_query::{Engine, Output};
use journeydb_storage::{Database, KeyType, Options};

fn jdb(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = jdb(args);
    assert!(
        o.status.success(),
        "journeydb {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn duckdb_reads_back_equal_what_journeydb_imported_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/io_roundtrip.py");
    let o = Command::new("python3")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_journeydb"))
        .arg(dir.path())
        .arg("7")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        17,
        "{out}"
    );
    assert!(out.contains("all round trips equal"), "{out}");
}

fn engine(dir: &Path) -> Engine {
    let db = Database::create(dir.join("db"), KeyType::Varchar, Options::default()).unwrap();
    let e = Engine::new(Arc::new(db));
    e.execute("CREATE TABLE t (customer_id VARCHAR PRIMARY KEY, ts TIMESTAMP, n BIGINT MERGE SUM)")
        .unwrap();
    e
}

fn count(e: &Engine) -> i64 {
    match e.execute_one("SELECT count(*) FROM t").unwrap() {
        Output::Rows(b) => journeydb_query::format::cell_text(b.column(0).as_ref(), 0)
            .unwrap()
            .parse()
            .unwrap(),
        other => panic!("{other:?}"),
    }
}

fn done_rows(o: Output) -> u64 {
    match o {
        Output::Done { tag, rows } if tag == "COPY" => rows,
        other => panic!("{other:?}"),
    }
}

fn err(e: &Engine, sql: &str) -> String {
    let before = count(e);
    let m = e.execute_one(sql).unwrap_err().to_string();
    assert_eq!(count(e), before, "{sql} committed rows before failing: {m}");
    m
}

#[test]
fn bad_input_is_refused_naming_where_and_nothing_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = engine(d);
    let p = |n: &str| d.join(n).to_string_lossy().into_owned();
    std::fs::write(
        p("good.csv"),
        "customer_id,ts,n\na,2024-01-01,1\nb,2024-01-02 10:00:00,2\n",
    )
    .unwrap();
    // A file that does not exist; a pattern that matches nothing; a directory.
    let m = err(&e, &format!("COPY t FROM '{}'", p("missing.parquet")));
    assert!(
        m.contains("missing.parquet") && m.contains("No such file"),
        "{m}"
    );
    let m = err(&e, &format!("COPY t FROM '{}/none/*.parquet'", d.display()));
    assert!(m.contains("no file matches"), "{m}");
    let m = err(&e, &format!("COPY t FROM '{}'", d.display()));
    assert!(m.contains("is a directory"), "{m}");
    // A CSV line with the wrong number of fields: file and line named; the good file given with it
    // is not committed either (one import, one commit).
    std::fs::write(
        p("short.csv"),
        "customer_id,ts,n\nc,2024-01-01,1\nd,2024-01-01\n",
    )
    .unwrap();
    let m = err(&e, &format!("COPY t FROM '{}/*.csv'", d.display()));
    assert!(
        m.contains("short.csv, line 3") && m.contains("2 fields for 3 columns"),
        "{m}"
    );
    std::fs::remove_file(p("short.csv")).unwrap();
    // An unparsable timestamp: file, line, column and value.
    std::fs::write(p("badts.csv"), "customer_id,ts,n\ne,2024-13-01,1\n").unwrap();
    let m = err(&e, &format!("COPY t FROM '{}'", p("badts.csv")));
    assert!(
        m.contains("badts.csv, line 2") && m.contains("column ts") && m.contains("2024-13-01"),
        "{m}"
    );
    // A missing key.
    std::fs::write(p("nokey.csv"), "customer_id,ts,n\n,2024-01-01,1\n").unwrap();
    let m = err(&e, &format!("COPY t FROM '{}'", p("nokey.csv")));
    assert!(m.contains("line 2") && m.contains("key is missing"), "{m}");
    // A column the table lacks.
    std::fs::write(p("extra.csv"), "customer_id,ts,n,zzz\nf,2024-01-01,1,9\n").unwrap();
    let m = err(&e, &format!("COPY t FROM '{}'", p("extra.csv")));
    assert!(m.contains("zzz") && m.contains("not in table t"), "{m}");
    assert_eq!(
        done_rows(
            e.execute_one(&format!(
                "COPY t FROM '{}' (IGNORE_EXTRA_COLUMNS)",
                p("extra.csv")
            ))
            .unwrap()
        ),
        1
    );
    // The good file loads.
    e.execute_one(&format!(
        "COPY t FROM '{}' (FORMAT csv, HEADER)",
        p("good.csv")
    ))
    .unwrap();
    assert_eq!(count(&e), 3);
    // Truncated Parquet, at many offsets: always an error, never a panic or a partial table.
    e.execute_one(&format!("COPY t TO '{}'", p("t.parquet")))
        .unwrap();
    let bytes = std::fs::read(p("t.parquet")).unwrap();
    for cut in [
        0,
        4,
        8,
        bytes.len() / 3,
        bytes.len() / 2,
        bytes.len() - 9,
        bytes.len() - 1,
    ] {
        std::fs::write(p("cut.parquet"), &bytes[..cut]).unwrap();
        let m = err(&e, &format!("COPY t FROM '{}'", p("cut.parquet")));
        assert!(m.contains("cut.parquet"), "cut at {cut}: {m}");
    }
    // Flipped bytes anywhere: an error or a load, never a panic.
    for at in (0..bytes.len()).step_by(7) {
        let mut b = bytes.clone();
        b[at] ^= 0x5a;
        std::fs::write(p("flip.parquet"), &b).unwrap();
        let _ = e.execute_one(&format!("COPY t FROM '{}'", p("flip.parquet")));
    }
}

#[test]
fn max_errors_sets_bad_rows_aside_in_a_rejects_file_and_commits_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = engine(d);
    let f = d.join("mixed.csv");
    std::fs::write(
        &f,
        "customer_id,ts,n\na,2024-01-01,1\nb,yesterday,2\nc,2024-01-03,x\n,2024-01-01,4\nd,2024-01-04,5\n",
    )
    .unwrap();
    let rejects = d.join("rejects.csv");
    // Three bad rows, two allowed: refused whole.
    let m = err(
        &e,
        &format!(
            "COPY t FROM '{}' (MAX_ERRORS 2, REJECTS '{}')",
            f.display(),
            rejects.display()
        ),
    );
    assert!(
        m.contains("3 rows rejected") && m.contains("2 allowed"),
        "{m}"
    );
    // Three allowed: the two good rows land, the rejects file says why for each bad one.
    let out = e
        .execute_one(&format!(
            "COPY t FROM '{}' (MAX_ERRORS 3, REJECTS '{}')",
            f.display(),
            rejects.display()
        ))
        .unwrap();
    assert_eq!(done_rows(out), 2);
    let text = std::fs::read_to_string(&rejects).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[1].contains("line 3") && lines[1].contains("yesterday"),
        "{text}"
    );
    assert!(
        lines[2].contains("line 4") && lines[2].contains("\"\"x\"\" is not a BIGINT"),
        "{text}"
    );
    assert!(
        lines[3].contains("line 5") && lines[3].contains("key is missing"),
        "{text}"
    );
    // The same through the command line.
    let cli = d.join("cli");
    let cli = cli.to_str().unwrap();
    ok(&[
        "sql",
        "--db",
        cli,
        "-c",
        "CREATE TABLE t (customer_id VARCHAR PRIMARY KEY, ts TIMESTAMP, n BIGINT)",
    ]);
    let r2 = d.join("r2.csv");
    let o = ok(&[
        "import",
        f.to_str().unwrap(),
        "--table",
        "t",
        "--db",
        cli,
        "--max-errors",
        "5",
        "--rejects",
        r2.to_str().unwrap(),
        "--progress",
        "none",
    ]);
    assert!(
        o.contains("imported 2 rows into t") && o.contains("3 rows rejected"),
        "{o}"
    );
    assert_eq!(std::fs::read_to_string(&r2).unwrap(), text);
    let o = jdb(&[
        "import",
        f.to_str().unwrap(),
        "--table",
        "t",
        "--db",
        cli,
        "--progress",
        "none",
    ]);
    assert!(!o.status.success());
    let m = String::from_utf8_lossy(&o.stderr);
    assert!(
        m.contains("mixed.csv, line 3: column ts") && m.contains("yesterday"),
        "{m}"
    );
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(db: &Path, extra: &[&str]) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["serve", "--db"])
        .arg(db)
        .args(["--listen", "127.0.0.1:0", "--pg-listen", "off"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let native = line
        .split(" on ")
        .nth(1)
        .and_then(|r| r.split([' ', ',', '\n']).next())
        .expect("the native address in the banner")
        .to_string();
    (Server(child), native)
}

#[test]
fn import_and_export_through_a_server_move_the_files_on_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_srv, addr) = serve(&d.join("db"), &[]);
    let csv = d.join("in.csv");
    let body: String = (0..50_000)
        .map(|i| format!("k{i},2024-01-{:02} 10:00:00,{}\n", 1 + i % 28, i % 5))
        .collect();
    std::fs::write(&csv, format!("customer_id,ts,n\n{body}")).unwrap();
    let out = ok(&[
        "import",
        csv.to_str().unwrap(),
        "--table",
        "t",
        "--create-key",
        "customer_id",
        "--connect",
        &addr,
        "--progress",
        "lines",
    ]);
    assert!(out.contains("imported 50000 rows into t"), "{out}");
    // The server itself refuses to open the same file.
    let o = jdb(&[
        "sql",
        "--connect",
        &addr,
        "-c",
        &format!("COPY t FROM '{}'", csv.display()),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("opens no file a client names"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Exported on the client, read back by the embedded engine.
    let pq = d.join("out.parquet");
    let out = ok(&[
        "export",
        "--query",
        "SELECT customer_id, n FROM t WHERE n >= 3",
        "--out",
        pq.to_str().unwrap(),
        "--connect",
        &addr,
    ]);
    assert!(out.contains("exported 20000 rows"), "{out}");
    let e = Engine::new(Arc::new(
        Database::create(d.join("local"), KeyType::Varchar, Options::default()).unwrap(),
    ));
    e.execute("CREATE TABLE back (customer_id VARCHAR PRIMARY KEY, n BIGINT)")
        .unwrap();
    e.execute_one(&format!("COPY back FROM '{}'", pq.display()))
        .unwrap();
    match e
        .execute_one("SELECT count(*), min(n), max(n) FROM back")
        .unwrap()
    {
        Output::Rows(b) => assert_eq!(
            journeydb_query::format::csv(&b).lines().nth(1),
            Some("20000,3,4")
        ),
        other => panic!("{other:?}"),
    }
    // An event log through the server: the columns are added in the load's commit.
    let ev = d.join("ev.csv");
    std::fs::write(
        &ev,
        "customer_id,event,time\na,Open,2024-01-02\na,open,2024-01-01\nb,Click!,2024-01-03\n",
    )
    .unwrap();
    ok(&[
        "import",
        "events",
        ev.to_str().unwrap(),
        "--table",
        "beh",
        "--count",
        "--connect",
        &addr,
    ]);
    let o = ok(&[
        "sql",
        "--connect",
        &addr,
        "--format",
        "csv",
        "-c",
        "SELECT customer_id, open, open_count, click_, click__count FROM beh ORDER BY 1",
    ]);
    assert!(
        o.contains("a,2024-01-01 00:00:00,2,,\nb,,,2024-01-03 00:00:00,1"),
        "{o}"
    );
}

/// `read_parquet` / `read_csv` / `read_json` in FROM: a relation with one row per file row (keys
/// with several rows fold in GROUP BY the key), usable by INSERT .. SELECT and CREATE TABLE AS.
#[test]
fn sql_reads_files_through_table_functions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = engine(d);
    let csv = d.join("ev.csv");
    std::fs::write(
        &csv,
        "customer_id,ts,n,event\na,2024-01-03,1,open\na,2024-01-01,2,click\nb,2024-01-02,3,open\na,2024-01-05,4,open\n",
    )
    .unwrap();
    let c = csv.display();
    let q = |sql: &str| match e.execute_one(sql).unwrap() {
        Output::Rows(b) => journeydb_query::format::csv(&b),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        q(&format!("SELECT count(*) FROM read_csv('{c}')")),
        "count(*)\n4\n"
    );
    assert_eq!(
        q(&format!(
            "SELECT customer_id, min(ts) FILTER (WHERE event = 'open') AS first_open, count(*) AS events \
             FROM read_csv('{c}') GROUP BY customer_id ORDER BY customer_id"
        )),
        "customer_id,first_open,events\na,2024-01-03 00:00:00,3\nb,2024-01-02 00:00:00,1\n"
    );
    // INSERT .. SELECT folds by the table's rules (n MERGE SUM).
    e.execute_one(&format!(
        "INSERT INTO t SELECT customer_id, ts, n FROM read_csv('{c}') WHERE event = 'open'"
    ))
    .unwrap();
    assert_eq!(
        q("SELECT customer_id, ts, n FROM t ORDER BY customer_id"),
        "customer_id,ts,n\na,2024-01-03 00:00:00,5\nb,2024-01-02 00:00:00,3\n"
    );
    // CREATE TABLE AS from a Parquet file, the key named.
    let pq = d.join("t.parquet");
    e.execute_one(&format!(
        "COPY (SELECT n, customer_id FROM t) TO '{}'",
        pq.display()
    ))
    .unwrap();
    e.execute_one(&format!(
        "CREATE TABLE back AS SELECT * FROM read_parquet('{}', key => 'customer_id')",
        pq.display()
    ))
    .unwrap();
    assert_eq!(
        q("SELECT customer_id, n FROM back ORDER BY customer_id"),
        "customer_id,n\na,5\nb,3\n"
    );
    // Errors: a key column the file lacks, a file that does not exist.
    let m = e
        .execute_one(&format!(
            "SELECT count(*) FROM read_csv('{c}', key = 'nope')"
        ))
        .unwrap_err()
        .to_string();
    assert!(m.contains("nope"), "{m}");
    let m = e
        .execute_one(&format!(
            "SELECT count(*) FROM read_parquet('{}/missing.parquet')",
            d.display()
        ))
        .unwrap_err()
        .to_string();
    assert!(m.contains("missing.parquet"), "{m}");
}

/// COPY options: TIMESTAMPFORMAT, HEADER false with a column list, DELIMITER and NULL, a JSON
/// array file, and the Arrow format both ways.
#[test]
fn copy_options_and_the_other_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = engine(d);
    let q = |sql: &str| match e.execute_one(sql).unwrap() {
        Output::Rows(b) => journeydb_query::format::csv(&b),
        other => panic!("{other:?}"),
    };
    let f = d.join("eu.csv");
    std::fs::write(&f, "a;05/01/2026 14:30;n/a\nb;;7\n").unwrap();
    e.execute_one(&format!(
        "COPY t (customer_id, ts, n) FROM '{}' (FORMAT csv, HEADER false, DELIMITER ';', NULL 'n/a', \
         TIMESTAMPFORMAT '%d/%m/%Y %H:%M')",
        f.display()
    ))
    .unwrap();
    assert_eq!(
        q("SELECT customer_id, ts, n FROM t ORDER BY customer_id"),
        "customer_id,ts,n\na,2026-01-05 14:30:00,\nb,,7\n"
    );
    let j = d.join("arr.json");
    std::fs::write(
        &j,
        r#"[{"customer_id": "c", "ts": "2026-02-01T10:00:00+02:00", "n": 3}, {"customer_id": "d", "n": null}]"#,
    )
    .unwrap();
    e.execute_one(&format!("COPY t FROM '{}'", j.display()))
        .unwrap();
    assert_eq!(
        q("SELECT customer_id, ts, n FROM t WHERE customer_id >= 'c' ORDER BY customer_id"),
        "customer_id,ts,n\nc,2026-02-01 08:00:00,3\nd,,\n"
    );
    let a = d.join("t.arrow");
    e.execute_one(&format!("COPY t TO '{}'", a.display()))
        .unwrap();
    e.execute_one("CREATE TABLE u (customer_id VARCHAR PRIMARY KEY, ts TIMESTAMP, n BIGINT)")
        .unwrap();
    e.execute_one(&format!("COPY u FROM '{}'", a.display()))
        .unwrap();
    assert_eq!(
        q("SELECT customer_id, ts, n FROM u ORDER BY customer_id"),
        q("SELECT customer_id, ts, n FROM t ORDER BY customer_id")
    );
    // An export that fails leaves nothing behind; an existing bucket directory is refused.
    let m = e
        .execute_one(&format!("COPY t TO '{}/nodir/x.parquet'", d.display()))
        .unwrap_err()
        .to_string();
    assert!(m.contains("nodir"), "{m}");
    e.execute_one(&format!(
        "COPY t TO '{}/b' (PARTITION_BY_HASH 3)",
        d.display()
    ))
    .unwrap();
    let m = e
        .execute_one(&format!(
            "COPY t TO '{}/b' (PARTITION_BY_HASH 3)",
            d.display()
        ))
        .unwrap_err()
        .to_string();
    assert!(m.contains("exists"), "{m}");
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
