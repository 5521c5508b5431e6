//! `journeydb-bench` (also `journeydb bench`): the journey workload in journeydb and in DuckDB on the same data, side by side
//! in one run, with ratios. See BENCHMARKS.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{median, mix, Journey};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_client::{Client, Session};
use journeydb_journey::run;
use journeydb_query::{Engine, Output};
use journeydb_server::{Config, Server};
use journeydb_storage::{Database, KeyType, Options};

const SCRIPT: &str = include_str!("duckdb_bench.py");
const DUCKDB_VERSION: &str = "2.0.1";
const BATCH_ROWS: usize = 100_000;

struct Args {
    customers: usize,
    int_keys: bool,
    json: bool,
    runs: usize,
    dir: Option<PathBuf>,
    python: String,
    skip_duckdb: bool,
}

const USAGE: &str = "usage: journeydb bench [--customers N] [--int-keys] [--runs R] [--json] [--dir DIR]
                       [--python PY] [--skip-duckdb]
  --customers N   customers in the state (1000 to 100000000; default 10000000)
  --int-keys      BIGINT customer keys instead of 16-character VARCHAR keys
  --runs R        timed runs per operation after one warm-up (1 to 100; default 5); medians are reported
  --json          one JSON object instead of the table
  --dir DIR       keep the data and the databases in DIR (empty or new); default a temporary directory
  --python PY     the Python interpreter for DuckDB (default python3; duckdb and pyarrow are
                  installed with pip when missing)
  --skip-duckdb   journeydb alone, for sizes DuckDB's side cannot hold: no Arrow files, no DuckDB, no
                  ratios; skips the client load (e) and the files (h)-(j); still runs (a)-(d), (g),
                  (k)-(m) and reports peak RSS, bytes on disk, key-dictionary bytes per key and the
                  reopen time
See BENCHMARKS.md.";

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        customers: 10_000_000,
        int_keys: false,
        json: false,
        runs: 5,
        dir: None,
        python: "python3".into(),
        skip_duckdb: false,
    };
    let mut it = args.iter();
    while let Some(x) = it.next() {
        let mut val = |n: &str| it.next().cloned().ok_or(format!("{n} needs a value"));
        match x.as_str() {
            "--customers" => {
                let v = val("--customers")?;
                a.customers = v
                    .replace('_', "")
                    .parse()
                    .ok()
                    .filter(|n| (1000..=100_000_000).contains(n))
                    .ok_or(format!(
                        "--customers {v:?}: use a number from 1000 to 100000000"
                    ))?;
            }
            "--runs" => {
                let v = val("--runs")?;
                a.runs = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or(format!("--runs {v:?}: use 1 to 100"))?;
            }
            "--int-keys" => a.int_keys = true,
            "--json" => a.json = true,
            "--dir" => a.dir = Some(PathBuf::from(val("--dir")?)),
            "--python" => a.python = val("--python")?,
            "--skip-duckdb" => a.skip_duckdb = true,
            other => return Err(format!("bench: unknown option {other:?}")),
        }
    }
    Ok(a)
}

/// One operation of the workload in both dialects.
struct Op {
    name: &'static str,
    what: String,
    journeydb: Vec<String>,
    duckdb: Vec<String>,
    /// Run after the timed runs in both engines; the first rows must agree.
    answer: Option<String>,
}

const P1: &str = "stage1 IS NOT NULL";
const P2: &str =
    "stage1_step_2 IS NULL AND stage1 + INTERVAL '3 days' <= TIMESTAMP '2026-01-20 00:00:00'";
const INVARIANTS: [(&str, &str, &str); 3] = [
    (
        "c_invariant1",
        "step without its stage",
        "stage1 IS NULL AND stage1_step_1 IS NOT NULL",
    ),
    (
        "c_invariant2",
        "times out of order",
        "stage1_step_1 < stage1",
    ),
    (
        "c_invariant3",
        "next stage before the last step",
        "stage2 IS NOT NULL AND stage1_step_4 IS NULL",
    ),
];

/// (k)-(m): analytics over the state joined with the profiles on the key (issue 17).
fn analytics_ops(last: &str, v: &mut Vec<Op>) {
    let funnel = format!(
        "SELECT p.country, count(s.stage1), count(s.stage2), count(s.stage3), count(s.{last}) FROM state s JOIN profiles p USING (customer_id) GROUP BY p.country"
    );
    let median = format!(
        "SELECT p.country, epoch(median(s.{last} - s.stage1)) FROM state s JOIN profiles p USING (customer_id) GROUP BY p.country"
    );
    let distinct =
        "SELECT count(DISTINCT age), sum(age), count(DISTINCT country) FROM profiles".to_string();
    for (name, what, sql) in [
        (
            "k_funnel",
            "(k) segment funnel: counts per country of the state joined with the profiles",
            funnel,
        ),
        (
            "l_median",
            "(l) median time from stage1 to the last column per country",
            median,
        ),
        (
            "m_distinct_sum",
            "(m) count(DISTINCT ..) and sum over the profiles' columns",
            distinct,
        ),
    ] {
        v.push(Op {
            name,
            what: what.into(),
            journeydb: vec![sql.clone()],
            duckdb: vec![sql.clone()],
            answer: Some(format!("{sql} ORDER BY 1")),
        });
    }
}

fn ops(j: &Journey) -> Vec<Op> {
    let set = |p: &str| format!("SELECT customer_id FROM state WHERE {p}");
    let mut v = Vec::new();
    for (kind, name) in [
        ("INTERSECT", "a_intersect"),
        ("EXCEPT", "a_except"),
        ("UNION", "a_union"),
    ] {
        let sql = format!("SELECT count(*) FROM ({} {kind} {}) x", set(P1), set(P2));
        v.push(Op {
            name,
            what: format!("(a) COUNT of {kind} of two predicate sets"),
            journeydb: vec![sql.clone()],
            duckdb: vec![sql.clone()],
            answer: Some(sql),
        });
    }
    let mat = format!(
        "CREATE OR REPLACE TABLE inter AS {} INTERSECT {}",
        set(P1),
        set(P2)
    );
    v.push(Op {
        name: "a_materialize",
        what: "(a) the INTERSECT materialized as a table".into(),
        journeydb: vec![mat.clone()],
        duckdb: vec![mat],
        answer: Some("SELECT count(*) FROM inter".into()),
    });
    for (name, what, cond) in INVARIANTS {
        v.push(Op {
            name,
            what: format!("(c) BERNOULLI (50) count: {what}"),
            journeydb: vec![format!(
                "SELECT count(*) FROM state TABLESAMPLE BERNOULLI (50) REPEATABLE (7) WHERE {cond}"
            )],
            duckdb: vec![format!(
                "SELECT count(*) FROM state TABLESAMPLE BERNOULLI (50 PERCENT) REPEATABLE (7) WHERE {cond}"
            )],
            // Samples differ between engines; the unsampled counts must agree.
            answer: Some(format!("SELECT count(*) FROM state WHERE {cond}")),
        });
    }
    let cols: Vec<String> = (0..j.columns)
        .map(|c| {
            let n = j.column_name(c);
            format!("min({n}) AS {n}")
        })
        .collect();
    let fold = format!(
        "CREATE OR REPLACE TABLE state_next AS SELECT customer_id, {} FROM (SELECT * FROM state UNION ALL SELECT * FROM delta) u GROUP BY customer_id",
        cols.join(", ")
    );
    let duck_swap = vec![
        "BEGIN".to_string(),
        "ALTER TABLE state RENAME TO state_swap".into(),
        "ALTER TABLE state_next RENAME TO state".into(),
        "ALTER TABLE state_swap RENAME TO state_next".into(),
        "COMMIT".into(),
    ];
    let last = j.column_name(j.columns - 1);
    v.push(Op {
        name: "b_min_merge",
        what: "(b) MIN-merge of the delta into a new version, then swap".into(),
        journeydb: vec![fold.clone(), "ALTER TABLE state SWAP WITH state_next".into()],
        duckdb: std::iter::once(fold).chain(duck_swap.iter().cloned()).collect(),
        answer: Some(format!(
            "SELECT count(*), count(stage1), count({last}), min(stage3_step_2), max(stage1) FROM state"
        )),
    });
    analytics_ops(&last, &mut v);
    v.push(Op {
        name: "d_swap",
        what: "(d) swap of the state table with its next version".into(),
        journeydb: vec!["ALTER TABLE state SWAP WITH state_next".into()],
        duckdb: duck_swap,
        answer: Some("SELECT count(*) FROM state".into()),
    });
    v
}

fn cell_row(out: &Output) -> Vec<Option<String>> {
    match out {
        // DOUBLEs print as DuckDB's Python values do (`2.0`), through the query crate's text.
        Output::Rows(b) if b.num_rows() > 0 => b
            .columns()
            .iter()
            .map(|c| journeydb_query::format::cell_text(c.as_ref(), 0))
            .collect(),
        _ => Vec::new(),
    }
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Makes sure `python` can import duckdb and pyarrow, installing them with pip if not.
fn ensure_python(python: &str) -> Result<(), String> {
    let ok = |py: &str| {
        std::process::Command::new(py)
            .args(["-c", &format!("import duckdb, pyarrow, sys; sys.exit(duckdb.__version__ != '{DUCKDB_VERSION}')")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if ok(python) {
        return Ok(());
    }
    eprintln!("installing the Python packages duckdb=={DUCKDB_VERSION} and pyarrow with pip ...");
    let st = std::process::Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("duckdb=={DUCKDB_VERSION}"),
            "pyarrow",
        ])
        .status()
        .map_err(|e| format!("{python}: {e}"))?;
    if st.success() && ok(python) {
        Ok(())
    } else {
        Err(format!(
            "could not install duckdb=={DUCKDB_VERSION} and pyarrow for {python}"
        ))
    }
}

/// The batch with its key column replaced by BIGINT keys (for --int-keys).
fn int_keyed(
    b: &RecordBatch,
    first_row: usize,
    rows: Option<&[usize]>,
) -> Result<RecordBatch, String> {
    let n = b.num_rows();
    let keys: Vec<i64> = (0..n)
        .map(|r| {
            let i = rows
                .and_then(|rs| rs.get(r).copied())
                .unwrap_or(first_row + r);
            (mix(0x1D ^ i as u64) >> 2) as i64
        })
        .collect();
    let mut fields: Vec<Field> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    if let Some(f) = fields.first_mut() {
        *f = Field::new("customer_id", DataType::Int64, false);
    }
    let mut cols: Vec<ArrayRef> = b.columns().to_vec();
    if let Some(c) = cols.first_mut() {
        *c = Arc::new(Int64Array::from(keys));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| e.to_string())
}

/// The profiles table of the customers in `range`: `country` (four values) and `age` (18..77), as
/// the bench and the analytics criterion bench load them.
pub fn profiles(
    range: std::ops::Range<usize>,
    j: &Journey,
    int_keys: bool,
) -> Result<RecordBatch, String> {
    const COUNTRIES: [&str; 4] = ["FR", "DE", "US", "UK"];
    let keys: Vec<String> = range.clone().map(|i| j.key(i)).collect();
    let country: Vec<&str> = range
        .clone()
        .map(|i| {
            COUNTRIES
                .get((mix(i as u64 ^ 0xC0) % 4) as usize)
                .copied()
                .unwrap_or("FR")
        })
        .collect();
    let age: Vec<i64> = range
        .clone()
        .map(|i| 18 + (mix(i as u64 ^ 0xA6) % 60) as i64)
        .collect();
    let b = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, false),
            Field::new("country", DataType::Utf8, true),
            Field::new("age", DataType::Int64, true),
        ])),
        vec![
            Arc::new(StringArray::from(keys)) as ArrayRef,
            Arc::new(StringArray::from(country)),
            Arc::new(Int64Array::from(age)),
        ],
    )
    .map_err(|e| e.to_string())?;
    if int_keys {
        int_keyed(&b, range.start, None)
    } else {
        Ok(b)
    }
}

/// An Arrow IPC file for DuckDB, created with the first batch's schema.
/// Writes nothing when `on` is false (`--skip-duckdb`).
struct IpcOut {
    path: PathBuf,
    on: bool,
    w: Option<arrow_ipc::writer::FileWriter<std::io::BufWriter<std::fs::File>>>,
}

impl IpcOut {
    fn new(path: PathBuf, on: bool) -> IpcOut {
        IpcOut { path, on, w: None }
    }

    fn write(&mut self, b: &RecordBatch) -> Result<(), String> {
        if !self.on {
            return Ok(());
        }
        if self.w.is_none() {
            let f = std::fs::File::create(&self.path)
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
            let w = arrow_ipc::writer::FileWriter::try_new(std::io::BufWriter::new(f), &b.schema())
                .map_err(|e| e.to_string())?;
            self.w = Some(w);
        }
        match self.w.as_mut() {
            Some(w) => w.write(b).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    fn finish(self) -> Result<(), String> {
        match self.w {
            Some(mut w) => w.finish().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

/// Runs the benchmark with command-line `args`.
pub fn run(args: &[String]) -> Result<(), String> {
    if args.iter().any(|x| x == "--help" || x == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let a = parse(args).map_err(|e| format!("{e}\n{USAGE}"))?;
    if !a.skip_duckdb {
        ensure_python(&a.python)?;
    }
    let tmp = std::env::temp_dir().join(format!("journeydb-bench-{}", std::process::id()));
    let work = a.dir.clone().unwrap_or_else(|| tmp.clone());
    if work.exists()
        && std::fs::read_dir(&work)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        return Err(format!(
            "{}: the bench needs an empty or new directory",
            work.display()
        ));
    }
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let result = bench(&a, &work);
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

pub(crate) fn progress(msg: &str) {
    eprint!("\r{msg:<78}");
    let _ = std::io::stderr().flush();
}

// long: the benchmark's script in order (load, operations, files, journey, DuckDB, answers).
fn bench(a: &Args, work: &Path) -> Result<(), String> {
    let n = a.customers;
    let j = Journey::new(n, 42);
    let dj = Journey::new(n, 4242);
    let key_type = if a.int_keys {
        KeyType::Bigint
    } else {
        KeyType::Varchar
    };
    let key_sql = if a.int_keys { "BIGINT" } else { "VARCHAR" };
    let opts = Options::default();
    let db = Arc::new(
        Database::create(work.join("journeydb"), key_type, opts.clone())
            .map_err(|e| e.to_string())?,
    );
    let engine = Engine::new(db.clone());
    let cols: Vec<String> = (0..j.columns)
        .map(|c| format!("{} TIMESTAMP MERGE MIN", j.column_name(c)))
        .collect();
    let create_state = |t: &str| {
        format!(
            "CREATE TABLE {t} (customer_id {key_sql} PRIMARY KEY, {})",
            cols.join(", ")
        )
    };
    for sql in [
        create_state("state"),
        create_state("delta"),
        format!("CREATE TABLE profiles (customer_id {key_sql} PRIMARY KEY, country VARCHAR, age BIGINT)"),
    ] {
        engine.execute_one(&sql).map_err(|e| e.to_string())?;
    }
    // Generate, write Arrow IPC for DuckDB, and append to journeydb (timed: the append only).
    let state_path = work.join("state.arrow");
    let embedded_ingest = load_state(a, &state_path, &db, &j)?;
    load_delta_and_profiles(a, work, &db, &j, &dj)?;
    progress("flushing and compacting journeydb ...");
    db.flush().map_err(|e| e.to_string())?;
    db.compact(2).map_err(|e| e.to_string())?;
    let bytes_journeydb = dir_size(&work.join("journeydb"));

    // (e) through the client: the same batches over loopback into a second database.
    let client_ingest = if a.skip_duckdb {
        None
    } else {
        progress("loading the state through the client over loopback ...");
        Some(client_ingest(
            work,
            key_type,
            opts.clone(),
            &create_state("state"),
            &state_path,
        )?)
    };

    // The operations in journeydb.
    let ops = ops(&j);
    let mut jdb = Vec::new();
    for op in &ops {
        progress(&format!("journeydb: {}", op.what));
        let mut times = Vec::new();
        for i in 0..=a.runs {
            let t = Instant::now();
            for sql in &op.journeydb {
                engine
                    .execute_one(sql)
                    .map_err(|e| format!("{}: {e}\n  {sql}", op.name))?;
            }
            if i > 0 {
                times.push(t.elapsed());
            }
        }
        let answer = match &op.answer {
            Some(q) => cell_row(
                &engine
                    .execute_one(q)
                    .map_err(|e| format!("{}: {e}", op.name))?,
            ),
            None => vec![],
        };
        jdb.push((median(times), answer));
    }
    let jdb_rss = peak_rss();

    // (h)-(j): files in and out.
    let (c0, c1) = (j.column_name(0), j.column_name(1));
    let io = if a.skip_duckdb {
        None
    } else {
        Some(crate::io_bench::journeydb_side(
            &engine,
            work,
            n,
            a.runs,
            a.int_keys,
            &create_state,
            (&c0, &c1),
        )?)
    };

    // Reopen: the key dictionary's size and the time to open the database again.
    drop(engine);
    let alone = reopen(db, work, opts, n)?;

    // (g) one journey run (the demo's journey on the demo's CDP data) and its statements.
    reset_peak_rss();
    let journey = journey_side(a, work)?;
    let journey_rss = peak_rss();

    let measured = Measured {
        embedded_ingest,
        client_ingest,
        bytes_journeydb,
        jdb_rss,
        journey_rss,
        alone,
    };
    let Some(io) = io else {
        return report_alone(a, &ops, &jdb, &journey, &measured);
    };
    let duck = run_duckdb(a, work, &ops, &journey, &io)?;

    // Answers must agree, or no figure is reported.
    answers_agree(&ops, &jdb, &journey, &duck)?;
    for (what, ours, key) in [
        ("(h) import", &io.import_answer, "import_answer"),
        ("(j) event pivot", &io.events_answer, "events_answer"),
    ] {
        let theirs: Vec<Option<String>> = at(&duck, &["io", key])
            .as_array()
            .map(|v| v.iter().map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if *ours != theirs {
            return Err(format!(
                "{what}: journeydb answered {ours:?}, DuckDB {theirs:?}"
            ));
        }
    }

    report(a, &ops, &jdb, &journey, &duck, &measured, &io)
}

/// Closes `db` (its background work stopped), measures its key dictionary's size, then times
/// opening it again (the key dictionary read and its hash index rebuilt, the WAL replayed).
fn reopen(db: Arc<Database>, work: &Path, opts: Options, n: usize) -> Result<Alone, String> {
    progress("closing and reopening the journeydb database ...");
    let keys_memory = db.key_dictionary_bytes();
    drop(
        Arc::try_unwrap(db)
            .map_err(|_| "the database is still in use after the operations".to_string())?,
    );
    let dir = work.join("journeydb");
    let keys_file = std::fs::metadata(dir.join("keys.dict")).map_or(0, |m| m.len());
    let t = Instant::now();
    let db = Database::open(&dir, opts).map_err(|e| format!("reopen: {e}"))?;
    let reopen = t.elapsed();
    let keys_reopened = db.key_dictionary_bytes();
    drop(db);
    let per_key = |b: u64| b as f64 / n.max(1) as f64;
    Ok(Alone {
        keys_memory_per_key: per_key(keys_memory as u64),
        keys_reopened_per_key: per_key(keys_reopened as u64),
        keys_file_per_key: per_key(keys_file),
        reopen,
    })
}

/// Figures of journeydb alone (no DuckDB counterpart).
#[derive(Clone, Copy)]
struct Alone {
    keys_memory_per_key: f64,
    keys_reopened_per_key: f64,
    keys_file_per_key: f64,
    reopen: Duration,
}

/// Forgets the process's peak RSS so far (Linux: `5` written to `/proc/self/clear_refs`), so
/// that the next [`peak_rss`] is the peak of what follows.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// (e) through the client: the state's Arrow batches appended over loopback into a second database
/// behind a server; returns the time spent in appends.
fn client_ingest(
    work: &Path,
    key_type: KeyType,
    opts: Options,
    create_sql: &str,
    state_path: &Path,
) -> Result<Duration, String> {
    let served =
        Arc::new(Database::create(work.join("served"), key_type, opts).map_err(|e| e.to_string())?);
    let config = Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        pg_listen: None,
        ..Config::default()
    };
    let server = Server::bind(config, Engine::new(served.clone())).map_err(|e| e.to_string())?;
    let addr = server.local_addr().ok_or("no server address")?;
    let stop = server.stop_handle();
    let handle = std::thread::spawn(move || server.serve());
    let mut c = Client::connect(addr, None).map_err(|e| e.to_string())?;
    c.run(create_sql).map_err(|e| e.to_string())?;
    // The file is read on a thread of its own, a batch or two ahead, so that (as on DuckDB's
    // side, which reads the whole file before its timer starts) reading is not what is timed, and
    // no more than a few batches are held at once. Each batch is its own commit; the client
    // encodes the next one while the server stores the last.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<RecordBatch, String>>(2);
    let path = state_path.to_path_buf();
    let reader = std::thread::spawn(move || {
        let opened = std::fs::File::open(&path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                arrow_ipc::reader::FileReader::try_new(std::io::BufReader::new(f), None)
                    .map_err(|e| e.to_string())
            });
        match opened {
            Ok(r) => {
                for b in r {
                    if tx.send(b.map_err(|e| e.to_string())).is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    });
    let t = Instant::now();
    let appended = c.append_each(
        "state",
        &mut rx
            .iter()
            .map(|b| b.map_err(journeydb_client::ClientError::Input)),
    );
    let d = t.elapsed();
    // A failed append leaves the reader blocked on a full channel: dropping it lets it end.
    drop(rx);
    let _ = reader.join();
    appended.map_err(|e| e.to_string())?;
    drop(c);
    stop.store(true, Ordering::SeqCst);
    let _ = handle.join();
    drop(served);
    let _ = std::fs::remove_dir_all(work.join("served"));
    Ok(d)
}

/// Runs the DuckDB side in its own Python process on the same Arrow files and operations, and
/// returns its JSON report.
fn run_duckdb(
    a: &Args,
    work: &Path,
    ops: &[Op],
    journey: &JourneySide,
    io: &crate::io_bench::IoSide,
) -> Result<serde_json::Value, String> {
    progress("DuckDB: loading from Arrow IPC and running the same operations ...");
    let mut journey_arrow = serde_json::Map::new();
    for (name, file) in [
        ("profiles", "journey_profiles.arrow"),
        ("behaviours", "journey_behaviours.arrow"),
    ] {
        journey_arrow.insert(name.into(), serde_json::json!(work.join(file)));
    }
    for (name, path) in &journey.tables {
        journey_arrow.insert(name.clone(), serde_json::json!(path));
    }
    let spec = serde_json::json!({
        "db": work.join("duck.db"),
        "arrow": {
            "state": work.join("state.arrow"),
            "delta": work.join("delta.arrow"),
            "profiles": work.join("profiles.arrow"),
        },
        "runs": a.runs,
        "journey": {
            "db": work.join("duck_journey.db"),
            "arrow": journey_arrow,
            "reset": journey.reset,
            "statements": journey.duckdb,
            "runs": journey.runs,
            "answer": journey.answer_sql,
        },
        "ops": ops.iter().map(|o| serde_json::json!({"name": o.name, "sql": o.duckdb, "answer": o.answer})).collect::<Vec<_>>(),
        "io": io.spec,
    });
    let spec_path = work.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).map_err(|e| e.to_string())?;
    let script = work.join("duckdb_bench.py");
    std::fs::write(&script, SCRIPT).map_err(|e| e.to_string())?;
    let out = std::process::Command::new(&a.python)
        .arg(&script)
        .arg(&spec_path)
        .output()
        .map_err(|e| format!("{}: {e}", a.python))?;
    if !out.status.success() {
        return Err(format!(
            "the DuckDB side failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let duck: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("DuckDB output: {e}"))?;
    eprint!("\r{:<78}\r", "");
    Ok(duck)
}

/// Every operation's answer (and the journey run's) equal in both engines, or an error listing the
/// differences.
fn answers_agree(
    ops: &[Op],
    jdb: &[(Duration, Vec<Option<String>>)],
    journey: &JourneySide,
    duck: &serde_json::Value,
) -> Result<(), String> {
    let mut mismatches = Vec::new();
    for (op, (_, ans)) in ops.iter().zip(jdb) {
        let theirs: Vec<Option<String>> = at(duck, &["ops", op.name, "answer"])
            .as_array()
            .map(|v| v.iter().map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if *ans != theirs {
            mismatches.push(format!("{}: journeydb {ans:?}, DuckDB {theirs:?}", op.name));
        }
    }
    let theirs: Vec<Option<String>> = at(duck, &["journey", "answer"])
        .as_array()
        .map(|v| v.iter().map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if journey.answer != theirs {
        mismatches.push(format!(
            "g_journey_run: journeydb {:?}, DuckDB {theirs:?}",
            journey.answer
        ));
    }
    if !mismatches.is_empty() {
        return Err(format!(
            "the engines disagree; no figures reported:\n  {}",
            mismatches.join("\n  ")
        ));
    }
    Ok(())
}

/// The delta (new facts for every tenth customer) and the profiles: written as Arrow IPC for DuckDB
/// and appended to journeydb.
fn load_delta_and_profiles(
    a: &Args,
    work: &Path,
    db: &Database,
    j: &Journey,
    dj: &Journey,
) -> Result<(), String> {
    let n = a.customers;
    let delta_rows: Vec<usize> = (0..n).step_by(10).collect();
    let mut delta_ipc = IpcOut::new(work.join("delta.arrow"), !a.skip_duckdb);
    for chunk in delta_rows.chunks(BATCH_ROWS) {
        let mut b = dj.batch_for(j, chunk);
        if a.int_keys {
            b = int_keyed(&b, 0, Some(chunk))?;
        }
        delta_ipc.write(&b)?;
        db.append("delta", &b).map_err(|e| e.to_string())?;
    }
    delta_ipc.finish()?;
    let mut prof_ipc = IpcOut::new(work.join("profiles.arrow"), !a.skip_duckdb);
    let mut start = 0;
    while start < n {
        let end = (start + BATCH_ROWS).min(n);
        let b = profiles(start..end, j, a.int_keys)?;
        prof_ipc.write(&b)?;
        db.append("profiles", &b).map_err(|e| e.to_string())?;
        start = end;
    }
    prof_ipc.finish()?;
    Ok(())
}

/// journeydb's figures measured outside the operations.
struct Measured {
    embedded_ingest: Duration,
    /// None with `--skip-duckdb`.
    client_ingest: Option<Duration>,
    bytes_journeydb: u64,
    /// Peak RSS after the operations (a)-(m), before the files and (g).
    jdb_rss: u64,
    /// Peak RSS of (g)'s part alone: its database loaded, prepared and run.
    journey_rss: u64,
    alone: Alone,
}

/// One figure: (name, description, journeydb's value, the path of DuckDB's value in its report,
/// unit).
type Figure = (String, String, f64, Vec<&'static str>, String);

/// journeydb's figures in the table's order, each with where DuckDB's report holds its own.
// long: one row per figure, in the table's order.
fn figures(
    a: &Args,
    ops: &[Op],
    jdb: &[(Duration, Vec<Option<String>>)],
    journey: &JourneySide,
    m: &Measured,
    io: Option<&crate::io_bench::IoSide>,
) -> Vec<Figure> {
    let n = a.customers;
    let mut rows: Vec<Figure> = Vec::new();
    for (op, (t, _)) in ops.iter().zip(jdb) {
        rows.push((
            op.name.to_string(),
            op.what.clone(),
            t.as_secs_f64(),
            vec!["ops", op.name, "median_s"],
            "s".into(),
        ));
    }
    let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    rows.push((
        "e_ingest_embedded".into(),
        "(e) bulk ingest from Arrow batches, embedded (rows/s)".into(),
        rate(m.embedded_ingest),
        vec!["ingest_rows_per_s"],
        "rows/s".into(),
    ));
    if let Some(c) = m.client_ingest {
        rows.push((
            "e_ingest_client".into(),
            "(e) bulk ingest through the client over loopback (rows/s)".into(),
            rate(c),
            vec!["ingest_rows_per_s"],
            "rows/s".into(),
        ));
    }
    rows.push((
        "f_bytes".into(),
        "(f) bytes on disk after load and flush / CHECKPOINT".into(),
        m.bytes_journeydb as f64,
        vec!["bytes_on_disk"],
        "bytes".into(),
    ));
    rows.push((
        "f_peak_rss".into(),
        "(f) peak RSS of the process".into(),
        m.jdb_rss as f64,
        vec!["peak_rss_bytes"],
        "bytes".into(),
    ));
    rows.push((
        "g_journey_run".into(),
        format!(
            "(g) one journey run ({} statements of the runner)",
            journey.duckdb_count
        ),
        journey.median.as_secs_f64(),
        vec!["journey", "median_s"],
        "s".into(),
    ));
    let Some(io) = io else { return rows };
    let events = (n * crate::io_bench::EVENTS_PER_CUSTOMER) as f64;
    for (name, what, ours, key, count) in [
        (
            "h_import_parquet",
            "(h) import of the state from Parquet (rows/s)",
            io.import,
            "import_s",
            n as f64,
        ),
        (
            "i_export_parquet",
            "(i) export of the state to Parquet, zstd (rows/s)",
            io.export,
            "export_s",
            n as f64,
        ),
        (
            "j_event_pivot",
            "(j) event log pivot, 10 events per customer (events/s)",
            io.events,
            "events_s",
            events,
        ),
    ] {
        // DuckDB's report holds seconds: the rate is computed in `report`.
        rows.push((
            name.into(),
            what.into(),
            count / ours.as_secs_f64().max(1e-9),
            vec!["io", key],
            "rows/s".into(),
        ));
    }
    rows
}

/// journeydb's figures that have no DuckDB counterpart: (name, description, value, unit).
fn alone_rows(m: &Measured) -> Vec<(&'static str, &'static str, f64, &'static str)> {
    let k = &m.alone;
    vec![
        (
            "keys_memory_per_key",
            "key dictionary in memory, bytes per key (after the load)",
            k.keys_memory_per_key,
            "B/key",
        ),
        (
            "keys_reopened_per_key",
            "key dictionary in memory, bytes per key (after a reopen)",
            k.keys_reopened_per_key,
            "B/key",
        ),
        (
            "keys_file_per_key",
            "key dictionary file (keys.dict), bytes per key",
            k.keys_file_per_key,
            "B/key",
        ),
        (
            "reopen",
            "reopen of the database (after close)",
            k.reopen.as_secs_f64(),
            "s",
        ),
        (
            "g_peak_rss",
            "peak RSS of (g) alone (its database loaded, prepared, run)",
            m.journey_rss as f64,
            "bytes",
        ),
    ]
}

/// Prints the side-by-side figures, as a table or JSON.
fn report(
    a: &Args,
    ops: &[Op],
    jdb: &[(Duration, Vec<Option<String>>)],
    journey: &JourneySide,
    duck: &serde_json::Value,
    m: &Measured,
    io: &crate::io_bench::IoSide,
) -> Result<(), String> {
    let n = a.customers as f64;
    let events = n * crate::io_bench::EVENTS_PER_CUSTOMER as f64;
    let f = |x: &serde_json::Value| x.as_f64().unwrap_or(f64::NAN);
    let rows: Vec<(String, String, f64, f64, String)> = figures(a, ops, jdb, journey, m, Some(io))
        .into_iter()
        .map(|(name, what, jv, path, unit)| {
            let mut dv = f(at(duck, &path));
            if path.first() == Some(&"io") {
                let count = if name == "j_event_pivot" { events } else { n };
                dv = count / dv.max(1e-9);
            }
            (name, what, jv, dv, unit)
        })
        .collect();
    let machine = machine(a, at(duck, &["duckdb_version"]).as_str());
    print_rows(a, &machine, &rows, &alone_rows(m));
    Ok(())
}

/// Prints journeydb's figures alone (`--skip-duckdb`): nothing compared, no ratios.
fn report_alone(
    a: &Args,
    ops: &[Op],
    jdb: &[(Duration, Vec<Option<String>>)],
    journey: &JourneySide,
    m: &Measured,
) -> Result<(), String> {
    let rows: Vec<(String, String, f64, f64, String)> = figures(a, ops, jdb, journey, m, None)
        .into_iter()
        .map(|(name, what, jv, _, unit)| (name, what, jv, f64::NAN, unit))
        .collect();
    print_rows(a, &machine(a, None), &rows, &alone_rows(m));
    Ok(())
}

/// The report's first line: the machine, the versions and the run's shape.
fn machine(a: &Args, duckdb: Option<&str>) -> String {
    format!(
        "{}, {} cores, journeydb {}, {}, {} customers ({} keys), median of {} runs after a warm-up",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |c| c.get()),
        env!("CARGO_PKG_VERSION"),
        duckdb.map_or("DuckDB skipped".to_string(), |v| format!("DuckDB {v}")),
        a.customers,
        if a.int_keys { "BIGINT" } else { "VARCHAR" },
        a.runs
    )
}

/// Prints the figures as JSON (`--json`) or as an aligned table with ratios (no DuckDB column
/// with `--skip-duckdb`), then journeydb's own figures.
fn print_rows(
    a: &Args,
    machine: &str,
    rows: &[(String, String, f64, f64, String)],
    alone: &[(&str, &str, f64, &str)],
) {
    let n = a.customers;
    let compared = !a.skip_duckdb;
    if a.json {
        let ops: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, what, jv, dv, unit)| {
                let (dv, r) = if compared {
                    (serde_json::json!(dv), serde_json::json!(ratio(unit, *jv, *dv)))
                } else {
                    (serde_json::Value::Null, serde_json::Value::Null)
                };
                serde_json::json!({"name": name, "what": what, "journeydb": jv, "duckdb": dv, "unit": unit, "ratio": r})
            })
            .collect();
        let own: Vec<serde_json::Value> = alone
            .iter()
            .map(|(name, what, v, unit)| serde_json::json!({"name": name, "what": what, "journeydb": v, "unit": unit}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"machine": machine, "customers": n, "int_keys": a.int_keys, "answers_agree": if compared { serde_json::json!(true) } else { serde_json::Value::Null }, "ops": ops, "journeydb_alone": own})
        );
        return;
    }
    println!("{machine}");
    if compared {
        println!(
            "{:<62} {:>12} {:>12} {:>9}",
            "operation", "journeydb", "DuckDB", "ratio"
        );
    } else {
        println!("{:<62} {:>12}", "operation", "journeydb");
    }
    for (_, what, jv, dv, unit) in rows {
        if compared {
            println!(
                "{what:<62} {:>12} {:>12} {:>8.1}×",
                show(unit, *jv),
                show(unit, *dv),
                ratio(unit, *jv, *dv)
            );
        } else {
            println!("{what:<62} {:>12}", show(unit, *jv));
        }
    }
    for (_, what, v, unit) in alone {
        println!("{what:<62} {:>12}", show(unit, *v));
    }
    if compared {
        println!("ratio: DuckDB / journeydb for times and sizes, journeydb / DuckDB for rates (higher is better for journeydb); every answer agreed");
    } else {
        println!("DuckDB skipped (--skip-duckdb): no answer was compared");
    }
}

/// The state: generated, written as Arrow IPC for DuckDB and appended to journeydb; returns the
/// time spent in appends.
fn load_state(a: &Args, state_path: &Path, db: &Database, j: &Journey) -> Result<Duration, String> {
    let n = a.customers;
    let mut state_ipc = IpcOut::new(state_path.to_path_buf(), !a.skip_duckdb);
    let mut embedded_ingest = Duration::ZERO;
    let mut start = 0;
    while start < n {
        let end = (start + BATCH_ROWS).min(n);
        let mut b = j.batch(start..end);
        if a.int_keys {
            b = int_keyed(&b, start, None)?;
        }
        state_ipc.write(&b)?;
        let t = Instant::now();
        db.append("state", &b).map_err(|e| e.to_string())?;
        embedded_ingest += t.elapsed();
        start = end;
        progress(&format!(
            "generating and loading the state: {end}/{n} customers"
        ));
    }
    state_ipc.finish()?;
    Ok(embedded_ingest)
}

/// The demo's CDP data for (g): written as Arrow IPC for DuckDB and appended through `s`.
fn load_journey_data(
    s: &mut journeydb_server::EmbeddedSession,
    work: &Path,
    n: usize,
    files: bool,
) -> Result<(), String> {
    use journeydb_tools::data;
    let e = |x: journeydb_client::ClientError| x.to_string();
    let gen = data::Cdp { seed: 7 };
    let mut pw = IpcOut::new(work.join("journey_profiles.arrow"), files);
    let mut bw = IpcOut::new(work.join("journey_behaviours.arrow"), files);
    let mut start = 0;
    while start < n {
        let end = (start + BATCH_ROWS).min(n);
        let (p, b) = (gen.profiles(start..end), gen.behaviours_batch(start..end));
        pw.write(&p)?;
        bw.write(&b)?;
        s.append("profiles", &p).map_err(e)?;
        s.append("behaviours", &b).map_err(e)?;
        start = end;
        progress(&format!("journey data: {end}/{n} customers"));
    }
    pw.finish()?;
    bw.finish()?;
    Ok(())
}

/// The value at `path` in a JSON object (Null when absent).
fn at<'a>(v: &'a serde_json::Value, path: &[&str]) -> &'a serde_json::Value {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .unwrap_or(&serde_json::Value::Null)
}

fn ratio(unit: &str, j: f64, d: f64) -> f64 {
    if unit == "rows/s" {
        j / d
    } else {
        d / j
    }
}

fn show(unit: &str, v: f64) -> String {
    match unit {
        "s" if v < 1e-3 => format!("{:.1} µs", v * 1e6),
        "s" if v < 1.0 => format!("{:.2} ms", v * 1e3),
        "s" => format!("{v:.2} s"),
        "rows/s" => format!("{:.2}M/s", v / 1e6),
        "B/key" => format!("{v:.1} B"),
        _ => format!("{:.1} MB", v / 1e6),
    }
}

/// A session that records every statement it runs.
struct Recording<'a> {
    inner: &'a mut dyn Session,
    log: Vec<String>,
}

impl Session for Recording<'_> {
    fn run(&mut self, sql: &str) -> Result<journeydb_client::Reply, journeydb_client::ClientError> {
        self.log.push(sql.to_string());
        self.inner.run(sql)
    }
    fn append(
        &mut self,
        table: &str,
        batch: &RecordBatch,
    ) -> Result<u64, journeydb_client::ClientError> {
        self.inner.append(table, batch)
    }
    fn append_each(
        &mut self,
        table: &str,
        batches: journeydb_client::AppendBatches<'_>,
    ) -> Result<u64, journeydb_client::ClientError> {
        self.inner.append_each(table, batches)
    }
    fn swap(&mut self, a: &str, b: &str) -> Result<(), journeydb_client::ClientError> {
        self.log.push(format!("ALTER TABLE {a} SWAP WITH {b}"));
        self.inner.swap(a, b)
    }
    fn load(
        &mut self,
        table: &str,
        batches: journeydb_client::LoadBatches<'_>,
    ) -> Result<u64, journeydb_client::ClientError> {
        self.inner.load(table, batches)
    }
}

/// The word after `prefix` (a table name), if `sql` starts with it.
fn table_after<'s>(sql: &'s str, prefix: &str) -> Option<&'s str> {
    let rest = sql.strip_prefix(prefix)?;
    let end = rest.find([' ', '(']).unwrap_or(rest.len());
    rest.get(..end)
}

/// The runner's statements in DuckDB's dialect: MERGE MIN tables become primary-key tables whose
/// inserts fold with `least` on conflict, SWAP becomes three renames in a transaction, and a
/// Bernoulli percentage says PERCENT. DuckDB's `now()` cannot be fixed per session, so the run's
/// `SET journeydb.now = TIMESTAMP '..'` is remembered and `now()` in later statements replaced by
/// that literal (the run's own statements, not user input).
/// The tables a statement of `log` renames (the run publishes them).
fn renamed_tables(log: &[String]) -> std::collections::HashSet<String> {
    log.iter()
        .filter_map(|q| q.strip_prefix("RENAME TABLE "))
        .flat_map(|rest| rest.split(", "))
        .filter_map(|pair| pair.split_once(" TO ").map(|(a, _)| a.to_string()))
        .collect()
}

/// Translates one statement that may create a journeydb temporary table: a scratch table stays
/// temporary in DuckDB (in memory there too); one the run publishes by a rename becomes a
/// regular table, as DuckDB cannot rename a temporary table into its database.
fn with_temporary(
    sql: &str,
    published: &std::collections::HashSet<String>,
    translate: impl FnOnce(&str) -> Vec<String>,
) -> Vec<String> {
    let temp = sql.starts_with("CREATE ") && sql.contains(" TEMP TABLE ");
    if !temp {
        return translate(sql);
    }
    let plain = sql.replacen(" TEMP TABLE ", " TABLE ", 1);
    let keep = table_after(&plain, "CREATE TABLE ")
        .or_else(|| table_after(&plain, "CREATE OR REPLACE TABLE "))
        .is_some_and(|t| !published.contains(t));
    translate(&plain)
        .into_iter()
        .map(|q| {
            if keep && q.starts_with("CREATE ") {
                q.replacen(" TABLE ", " TEMP TABLE ", 1)
            } else {
                q
            }
        })
        .collect()
}

fn to_duckdb(
    sql: &str,
    merge: &mut std::collections::HashMap<String, (String, Vec<String>)>,
    now: &mut Option<String>,
) -> Vec<String> {
    if let Some(v) = sql.strip_prefix("SET journeydb.now = ") {
        *now = Some(v.to_string());
        return Vec::new();
    }
    // The runner's journey lock has no DuckDB counterpart (one connection runs the replay), and
    // its COMMIT only releases that lock.
    if sql.starts_with("LOCK TABLE ") || sql == "COMMIT" {
        return Vec::new();
    }
    // journeydb's one-commit multi-rename is a transaction of renames in DuckDB.
    if let Some(rest) = sql.strip_prefix("RENAME TABLE ") {
        let mut out = vec!["BEGIN".to_string()];
        for pair in rest.split(", ") {
            if let Some((a, b)) = pair.split_once(" TO ") {
                out.push(format!("ALTER TABLE {a} RENAME TO {b}"));
            }
        }
        out.push("COMMIT".into());
        return out;
    }
    if let Some(rest) = sql.strip_prefix("DROP TABLE IF EXISTS ") {
        if rest.contains(", ") {
            return rest
                .split(", ")
                .map(|t| format!("DROP TABLE IF EXISTS {t}"))
                .collect();
        }
    }
    let replaced;
    let sql = match now {
        Some(lit) => {
            replaced = sql.replace("now()", lit);
            replaced.as_str()
        }
        None => sql,
    };
    if let Some(t) = table_after(sql, "CREATE TABLE ") {
        if sql.contains(" MERGE MIN") {
            let inner = sql
                .find('(')
                .and_then(|i| sql.get(i + 1..sql.len().saturating_sub(1)))
                .unwrap_or_default();
            let mut names = inner
                .split(", ")
                .filter_map(|c| c.split_whitespace().next().map(str::to_string));
            let key = names.next().unwrap_or_default();
            merge.insert(t.to_string(), (key, names.collect()));
            return vec![sql.replace(" MERGE MIN", "")];
        }
    }
    if let Some(t) = table_after(sql, "INSERT INTO ") {
        if let Some((key, cols)) = merge.get(t) {
            let set: Vec<String> = cols
                .iter()
                .map(|c| format!("{c} = least({c}, excluded.{c})"))
                .collect();
            return vec![format!(
                "{sql} ON CONFLICT ({key}) DO UPDATE SET {}",
                set.join(", ")
            )];
        }
    }
    if let Some(rest) = sql.strip_prefix("ALTER TABLE ") {
        if let Some((a, b)) = rest.split_once(" SWAP WITH ") {
            return vec![
                "BEGIN".into(),
                format!("ALTER TABLE {a} RENAME TO {a}__swap"),
                format!("ALTER TABLE {b} RENAME TO {a}"),
                format!("ALTER TABLE {a}__swap RENAME TO {b}"),
                "COMMIT".into(),
            ];
        }
    }
    if let Some(i) = sql.find("TABLESAMPLE BERNOULLI (") {
        let start = i + "TABLESAMPLE BERNOULLI (".len();
        if let Some(close) = sql.get(start..).and_then(|r| r.find(')')) {
            let mut out = sql.to_string();
            out.insert_str(start + close, " PERCENT");
            return vec![out];
        }
    }
    vec![sql.to_string()]
}

struct JourneySide {
    median: Duration,
    runs: usize,
    reset: Vec<String>,
    /// Tables the run reads besides the CDP data (the state as `state_base`): (name, Arrow IPC
    /// file).
    tables: Vec<(String, PathBuf)>,
    duckdb: Vec<String>,
    duckdb_count: usize,
    answer_sql: String,
    answer: Vec<Option<String>>,
}

/// (g)'s timed runs: each from the prepared state (`reset`); the first is a warm-up whose
/// statements are recorded for DuckDB. Returns the times of the others and the recording.
fn timed_runs(
    s: &mut dyn Session,
    j: &journeydb_journey::def::Journey,
    reset: &[String],
    runs: usize,
    opts: &run::RunOptions,
) -> Result<(Vec<Duration>, Vec<String>), String> {
    let e = |x: journeydb_client::ClientError| x.to_string();
    let mut times = Vec::new();
    let mut log = Vec::new();
    for i in 0..=runs {
        progress(&format!("journeydb: (g) journey run {i}/{runs}"));
        for r in reset {
            s.run(r).map_err(e)?;
        }
        let mut rec = Recording {
            inner: s,
            log: Vec::new(),
        };
        let t = Instant::now();
        let report = run::run(&mut rec, j, opts).map_err(|x| x.to_string())?;
        let d = t.elapsed();
        if !report.swapped {
            return Err("(g): the journey run's check failed".into());
        }
        if i == 0 {
            log = rec.log;
        } else {
            times.push(d);
        }
    }
    Ok((times, log))
}

/// Writes each table to `work/journey_<table>.arrow`; returns (table, file).
fn export_tables(
    s: &mut dyn Session,
    work: &Path,
    names: &[String],
) -> Result<Vec<(String, PathBuf)>, String> {
    let mut out = Vec::new();
    for t in names {
        let path = work.join(format!("journey_{t}.arrow"));
        let reply = s
            .run(&format!("SELECT * FROM {t}"))
            .map_err(|x| x.to_string())?;
        let mut w = IpcOut::new(path.clone(), true);
        for b in &reply.batches {
            w.write(b)?;
        }
        w.finish()?;
        out.push((t.clone(), path));
    }
    Ok(out)
}

/// (g): the demo's CDP data and journey in a fresh embedded database; days 1-3 prepare a state,
/// day 4 is timed (reset to the prepared state before each run) and recorded for DuckDB.
fn journey_side(a: &Args, work: &Path) -> Result<JourneySide, String> {
    use journeydb_journey::def;
    use journeydb_tools::data;
    const DAY: i64 = 86_400_000_000;
    let n = a.customers;
    let j = def::parse(journeydb_tools::EXAMPLE_JOURNEY).map_err(|e| e.to_string())?;
    let db = Database::create(
        work.join("journey_jdb"),
        KeyType::Varchar,
        Options::default(),
    )
    .map_err(|e| e.to_string())?;
    let db = Arc::new(db);
    let mut s = journeydb_server::EmbeddedSession::new(Engine::new(db.clone()));
    let e = |x: journeydb_client::ClientError| x.to_string();
    for c in data::CREATE {
        s.run(c).map_err(e)?;
    }
    load_journey_data(&mut s, work, n, !a.skip_duckdb)?;
    let opts = |day: i64| run::RunOptions {
        now_us: data::START_US + day * DAY,
        check_percent: 50.0,
        allow_backfill: false,
        dry_run: false,
        // The DuckDB replay repeats one run's statements: no snapshot names that would clash.
        keep_snapshots: 0,
        publish: false,
    };
    for day in 1..=3 {
        progress(&format!("journey: preparing the state, day {day}"));
        run::run(&mut s, &j, &opts(day)).map_err(|x| x.to_string())?;
    }
    let st = j.state_table.clone();
    // The prepared state (for DuckDB and for the resets), the journey's activation log, run
    // records and definition versions as the runner left them: the run reads them all.
    let mut tables = if a.skip_duckdb {
        Vec::new()
    } else {
        export_tables(
            &mut s,
            work,
            &[
                st.clone(),
                format!("{st}_activations"),
                format!("{st}_runs"),
                format!("{st}_versions"),
            ],
        )?
    };
    if let Some(state) = tables.first_mut() {
        state.0 = "state_base".into();
    }
    s.run(&format!("CREATE TABLE state_base AS SELECT * FROM {st}"))
        .map_err(e)?;
    let reset = vec![
        format!("DROP TABLE IF EXISTS {st}"),
        format!("CREATE TABLE {st} AS SELECT * FROM state_base"),
    ];
    let runs = a.runs.min(3);
    let (times, log) = timed_runs(&mut s, &j, &reset, runs, &opts(4))?;
    let answer_sql = format!(
        "SELECT count(*), count({s1}), count({s2}), count({s3}), count(goal), count({first}), min({s2}), max(goal) FROM {st}",
        s1 = j.stage_col(0),
        s2 = j.stage_col(1),
        s3 = j.stage_col(2),
        first = j.step_col(0, 0),
    );
    let answer = s
        .run(&answer_sql)
        .map_err(e)?
        .batches
        .first()
        .map(run::first_row)
        .unwrap_or_default();
    let mut merge = std::collections::HashMap::new();
    let mut now = None;
    let published = renamed_tables(&log);
    let duckdb: Vec<String> = log
        .iter()
        .flat_map(|q| with_temporary(q, &published, |q| to_duckdb(q, &mut merge, &mut now)))
        .collect();
    Ok(JourneySide {
        median: median(times),
        runs,
        reset,
        tables,
        duckdb_count: log.len(),
        duckdb,
        answer_sql,
        answer,
    })
}
