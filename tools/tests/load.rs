//! Load (issue 15): 64 clients on one `journeydb serve` process for `LOAD_SECONDS` (default 60),
//! native and PostgreSQL protocols mixed:
//! - appends (native Append frames, and INSERTs over PostgreSQL), each client into its own table;
//! - set-operation queries (native and PostgreSQL) and catalog queries (PostgreSQL);
//! - swaps of table pairs, while other clients read both tables of a pair in one statement and
//!   must never see a mix of versions (the swap-pair checker);
//! - journey runs, one journey per client, a simulated day each;
//! - a connection storm past `--max-connections` (each extra connection gets a clear refusal, none
//!   hangs) and clients that drop the connection in the middle of an Append frame (nothing of it
//!   may be stored).
//!
//! Checked: no error other than the storm's refusals; every acknowledged row counted, before and
//! after a SIGKILL and restart of the server; the server's RSS stays under a bound. Throughput and
//! p50 / p99 latency per kind are printed (run with `--nocapture`; `scripts/load.sh SECONDS` runs
//! it longer in release).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_client::protocol::{encode_frame, encode_ipc, read_frame, write_frame, Frame};
use journeydb_client::{Client, Session, PROTOCOL_VERSION};
use journeydb_journey::def;
use journeydb_journey::run::{self, RunOptions};

const CLIENTS: usize = 64;
const MAX_CONNECTIONS: usize = 80;
const CUSTOMERS: usize = 5_000;
const TOKEN: &str = "l0ad";
const START: i64 = 1_767_225_600_000_000;
const DAY: i64 = 86_400_000_000;
/// The bound on the server's resident memory during the run.
const RSS_MAX_MB: u64 = 2048;

type Server = common::Served;

fn serve(db: &std::path::Path) -> Server {
    let max = MAX_CONNECTIONS.to_string();
    let srv = common::serve(
        db,
        &[
            "--pg-listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--max-connections",
            &max,
        ],
    );
    assert!(srv.pg.is_some(), "the PostgreSQL address in the banner");
    srv
}

fn pg(srv: &Server) -> postgres::Client {
    let (host, port) = srv.pg.as_deref().and_then(|a| a.rsplit_once(':')).unwrap();
    postgres::Config::new()
        .host(host)
        .port(port.parse().unwrap())
        .user("load")
        .password(TOKEN)
        .dbname("journeydb")
        .connect(postgres::NoTls)
        .unwrap()
}

fn native(srv: &Server) -> Client {
    Client::connect(srv.native.as_str(), Some(TOKEN)).unwrap()
}

fn rows(prefix: &str, from: u64, n: u64) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(
                (from..from + n).map(|i| format!("{prefix}{i:09}")),
            )) as ArrayRef,
            Arc::new(Int64Array::from(vec![1i64; n as usize])) as ArrayRef,
        ],
    )
    .unwrap()
}

fn count(c: &mut Client, sql: &str) -> i64 {
    let r = c.run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    r.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

/// Latencies per kind of work, and the errors seen.
#[derive(Default)]
struct Stats {
    lat: Mutex<BTreeMap<&'static str, Vec<Duration>>>,
    errors: Mutex<Vec<String>>,
}

impl Stats {
    fn time<T>(&self, kind: &'static str, f: impl FnOnce() -> Result<T, String>) -> Option<T> {
        let t = Instant::now();
        match f() {
            Ok(v) => {
                self.lat
                    .lock()
                    .unwrap()
                    .entry(kind)
                    .or_default()
                    .push(t.elapsed());
                Some(v)
            }
            Err(e) => {
                self.errors.lock().unwrap().push(format!("{kind}: {e}"));
                None
            }
        }
    }
}

fn rss_mb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// One client's loop until `stop`; returns the rows it had acknowledged (append clients).
fn client(i: usize, srv: &Server, stats: &Stats, stop: &AtomicBool) -> u64 {
    let mut acked = 0u64;
    let mut step = 0u64;
    match i % 8 {
        // Native appends, 200 rows a request.
        0..=2 => {
            let mut c = native(srv);
            while !stop.load(Ordering::Relaxed) {
                let b = rows(&format!("a{i}_"), step * 200, 200);
                if stats
                    .time("append (native)", || {
                        c.append(&format!("load{i}"), &b).map_err(|e| e.to_string())
                    })
                    .is_some()
                {
                    acked += 200;
                }
                step += 1;
            }
        }
        // INSERTs over PostgreSQL, 20 rows a statement.
        3 => {
            let mut c = pg(srv);
            while !stop.load(Ordering::Relaxed) {
                let values: Vec<String> = (0..20)
                    .map(|j| format!("('p{i}_{:09}', 1)", step * 20 + j))
                    .collect();
                let sql = format!("INSERT INTO load{i} VALUES {}", values.join(", "));
                if stats
                    .time("insert (pg)", || {
                        c.batch_execute(&sql).map_err(|e| e.to_string())
                    })
                    .is_some()
                {
                    acked += 20;
                }
                step += 1;
            }
        }
        // Set operations, native.
        4 => {
            let mut c = native(srv);
            let sql = [
                "SELECT count(*) FROM (SELECT customer_id FROM profiles WHERE plan = 'pro' INTERSECT SELECT customer_id FROM behaviours WHERE purchase IS NOT NULL) t",
                "SELECT count(*) FROM (SELECT customer_id FROM profiles EXCEPT SELECT customer_id FROM behaviours WHERE churned IS NOT NULL) t",
                "SELECT count(*) FROM (SELECT customer_id FROM behaviours WHERE app_open IS NOT NULL UNION SELECT customer_id FROM profiles WHERE age > 40) t",
            ];
            while !stop.load(Ordering::Relaxed) {
                let q = sql[(step % 3) as usize];
                stats.time("set operation (native)", || {
                    c.run(q).map_err(|e| e.to_string())
                });
                step += 1;
            }
        }
        // Set operations and catalog queries over PostgreSQL (what psql's \dt and BI tools send).
        5 => {
            let mut c = pg(srv);
            while !stop.load(Ordering::Relaxed) {
                if step.is_multiple_of(2) {
                    stats.time("set operation (pg)", || {
                        c.query(
                            "SELECT count(*) FROM (SELECT customer_id FROM profiles WHERE country = $1 INTERSECT SELECT customer_id FROM behaviours WHERE cart_add IS NOT NULL) t",
                            &[&"FR"],
                        )
                        .map_err(|e| e.to_string())
                    });
                } else {
                    stats.time("catalog (pg)", || {
                        c.query(
                            "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m','f','') AND n.nspname <> 'pg_catalog' AND n.nspname <> 'information_schema' ORDER BY 1, 2",
                            &[],
                        )
                        .map_err(|e| e.to_string())
                    });
                }
                step += 1;
            }
        }
        // Swaps of pair `i`, over PostgreSQL or native by turns.
        6 => {
            let mut c = native(srv);
            let mut p = pg(srv);
            while !stop.load(Ordering::Relaxed) {
                let sql = format!("ALTER TABLE pair{i}_a SWAP WITH pair{i}_b");
                if step.is_multiple_of(2) {
                    stats.time("swap (native)", || c.run(&sql).map_err(|e| e.to_string()));
                } else {
                    stats.time("swap (pg)", || {
                        p.batch_execute(&sql).map_err(|e| e.to_string())
                    });
                }
                step += 1;
            }
        }
        // The swap-pair checker: both tables of pair `i - 1` in one statement, over and over.
        _ if i % 16 == 15 => {
            let mut c = native(srv);
            let checker = format!(
                "SELECT count(*) FROM pair{0}_a a JOIN pair{0}_b b USING (k) WHERE a.tag <> b.tag",
                i - 1
            );
            while !stop.load(Ordering::Relaxed) {
                // One snapshot for both tables, so the two tags always differ (a mix of versions
                // would show one table twice).
                if let Some(r) = stats.time("swap-pair read (native)", || {
                    c.run(&checker).map_err(|e| e.to_string())
                }) {
                    let n = r.batches[0]
                        .column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .map(|a| a.value(0));
                    if n != Some(1) {
                        stats.errors.lock().unwrap().push(format!(
                            "swap-pair read saw {n:?} rows of differing tags, not 1"
                        ));
                    }
                }
            }
        }
        // Journeys: journey j{i}, one simulated day a run.
        _ => {
            let mut c = native(srv);
            let mut j = def::parse(include_str!("../../examples/journey.toml")).unwrap();
            j.name = format!("j{i}");
            j.state_table = format!("j{i}_state");
            while !stop.load(Ordering::Relaxed) {
                let o = RunOptions {
                    now_us: START + (1 + step as i64) * DAY,
                    check_percent: 10.0,
                    allow_backfill: false,
                    dry_run: false,
                    keep_snapshots: 2,
                    publish: false,
                };
                stats.time("journey run (native)", || {
                    run::run(&mut c, &j, &o).map_err(|e| e.to_string())
                });
                step += 1;
            }
        }
    }
    acked
}

/// Connections past the limit: each gets a clear refusal quickly; none hangs.
fn storm(srv: &Server) -> (usize, usize) {
    let mut held = Vec::new();
    let (mut refused, mut admitted) = (0, 0);
    for _ in 0..40 {
        let t = Instant::now();
        match Client::connect(srv.native.as_str(), Some(TOKEN)) {
            Ok(c) => {
                admitted += 1;
                held.push(c);
            }
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains("too many connections"), "refusal: {text}");
                refused += 1;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "a connection past the limit hung"
        );
    }
    (admitted, refused)
}

/// Sends the first half of an Append frame of `rows` and closes the connection.
fn torn_append(srv: &Server, table: &str, round: u64) {
    let mut s = TcpStream::connect(srv.native.as_str()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write_frame(
        &mut s,
        &Frame::Hello {
            version: PROTOCOL_VERSION,
            token: TOKEN.into(),
        },
    )
    .unwrap();
    match read_frame(&mut s, 1 << 20).unwrap() {
        Frame::HelloOk { .. } => {}
        // The storm may hold every slot for a moment.
        Frame::Error { message, .. } if message.contains("too many connections") => return,
        f => panic!("hello answered with {f:?}"),
    }
    let ipc = encode_ipc(&[rows("torn_", round * 1000, 1000)]).unwrap();
    let bytes = encode_frame(&Frame::Append {
        table: table.into(),
        ipc,
    });
    s.write_all(&bytes[..bytes.len() / 2]).unwrap();
    drop(s);
}

#[test]
fn sixty_four_clients_mixed_protocols() {
    let seconds: u64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut srv = serve(&db);
    {
        let mut c = native(&srv);
        for sql in journeydb_tools::data::CREATE {
            c.run(sql).unwrap();
        }
        let g = journeydb_tools::data::Cdp { seed: 11 };
        c.append("profiles", &g.profiles(0..CUSTOMERS)).unwrap();
        c.append("behaviours", &g.behaviours_batch(0..CUSTOMERS))
            .unwrap();
        for i in 0..CLIENTS {
            c.run(&format!(
                "CREATE TABLE load{i} (k VARCHAR PRIMARY KEY, n BIGINT MERGE SUM)"
            ))
            .unwrap();
            if i % 8 == 6 {
                for (side, tag) in [("a", "A"), ("b", "B")] {
                    c.run(&format!(
                        "CREATE TABLE pair{i}_{side} (k VARCHAR PRIMARY KEY, tag VARCHAR)"
                    ))
                    .unwrap();
                    c.run(&format!("INSERT INTO pair{i}_{side} VALUES ('x', '{tag}')"))
                        .unwrap();
                }
            }
        }
        c.run("CREATE TABLE torn (k VARCHAR PRIMARY KEY, n BIGINT MERGE SUM)")
            .unwrap();
    }
    let stats = Stats::default();
    let stop = AtomicBool::new(false);
    let peak_rss = AtomicU64::new(0);
    let pid = srv.child.id();
    let t0 = Instant::now();
    let (acked, storm_result) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (srv, stats, stop) = (&srv, &stats, &stop);
                s.spawn(move || client(i, srv, stats, stop))
            })
            .collect();
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                peak_rss.fetch_max(rss_mb(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        s.spawn(|| {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                torn_append(&srv, "torn", round);
                round += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        // The storm comes once every client is connected and working.
        std::thread::sleep(Duration::from_secs(seconds.min(10) / 2));
        let storm_result = storm(&srv);
        std::thread::sleep(Duration::from_secs(
            seconds.saturating_sub(seconds.min(10) / 2),
        ));
        stop.store(true, Ordering::Relaxed);
        let acked: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (acked, storm_result)
    });
    let wall = t0.elapsed();

    // The report.
    eprintln!(
        "{CLIENTS} clients for {:.1} s; server peak RSS {} MB",
        wall.as_secs_f64(),
        peak_rss.load(Ordering::Relaxed)
    );
    eprintln!(
        "storm: {} more connections admitted, {} refused with a clear error",
        storm_result.0, storm_result.1
    );
    eprintln!(
        "{:<26} {:>8} {:>9} {:>9} {:>9}",
        "kind", "count", "per s", "p50 ms", "p99 ms"
    );
    for (kind, l) in stats.lat.lock().unwrap().iter_mut() {
        l.sort();
        let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)].as_secs_f64() * 1e3;
        eprintln!(
            "{kind:<26} {:>8} {:>9.1} {:>9.2} {:>9.2}",
            l.len(),
            l.len() as f64 / wall.as_secs_f64(),
            pct(0.50),
            pct(0.99)
        );
    }
    let errors = stats.errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(
        storm_result.1 >= 40 - (MAX_CONNECTIONS - CLIENTS),
        "the limit admitted too many: {storm_result:?}"
    );
    let peak = peak_rss.load(Ordering::Relaxed);
    assert!(
        peak > 0 && peak < RSS_MAX_MB,
        "server RSS peaked at {peak} MB"
    );
    for kind in [
        "append (native)",
        "insert (pg)",
        "set operation (native)",
        "set operation (pg)",
        "catalog (pg)",
        "swap (native)",
        "swap (pg)",
        "journey run (native)",
        "swap-pair read (native)",
    ] {
        assert!(
            stats
                .lat
                .lock()
                .unwrap()
                .get(kind)
                .is_some_and(|l| !l.is_empty()),
            "no {kind} completed"
        );
    }

    // Every acknowledged row, before and after a SIGKILL and restart; nothing of a torn frame.
    let check = |srv: &Server, when: &str| {
        let mut c = native(srv);
        for (i, n) in acked.iter().enumerate() {
            let got = count(&mut c, &format!("SELECT count(*) FROM load{i}"));
            assert_eq!(
                got, *n as i64,
                "{when}: client {i} acknowledged {n} rows, the table holds {got}"
            );
        }
        assert_eq!(
            count(&mut c, "SELECT count(*) FROM torn"),
            0,
            "{when}: a torn Append frame stored rows"
        );
    };
    check(&srv, "after the run");
    srv.kill();
    let srv = serve(&db);
    check(&srv, "after a SIGKILL and restart");
    let total: u64 = acked.iter().sum();
    eprintln!("{total} acknowledged rows, all present after the restart");
}
