//! The crash campaign (issue 15): a mixed workload (appends, INSERTs, swaps, bulk imports, journey
//! runs, CREATE OR REPLACE TABLE AS, with the background thread flushing and compacting), through
//! the embedded engine in a child process and through a `journeydb serve` process, SIGKILLed at a
//! random moment again and again. After each kill:
//! - `journeydb check --db DIR` passes;
//! - every acknowledged append, INSERT and import is there whole; the one in flight at the kill is
//!   there whole or not at all; nothing else is;
//! - the swap pair holds one version (its tags differ) and agrees with the acknowledged swaps;
//! - work continues: the workload resumes where it stopped, journey runs (every row checked)
//!   included.
//!
//! `CAMPAIGN_KILLS` kills per mode (default 6, for CI); `scripts/crash-campaign.sh N` runs N.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_client::{Client, LoadItem, Session};
use journeydb_journey::def::{self, Journey};
use journeydb_journey::run::{self, RunOptions};
use journeydb_query::Engine;
use journeydb_server::EmbeddedSession;
use journeydb_storage::{Database, KeyType, Options};

const START: i64 = 1_767_225_600_000_000;
const DAY: i64 = 86_400_000_000;
const CUSTOMERS: usize = 2_000;

fn opts() -> Options {
    Options {
        flush_rows: 400,
        compact_segments: 3,
        keep_versions: 3,
        ..Options::default()
    }
}

fn journey() -> Journey {
    let mut j = def::parse(include_str!("../../examples/journey.toml")).unwrap();
    j.name = "camp".into();
    j.state_table = "camp_state".into();
    j
}

fn kv(keys: Vec<String>) -> RecordBatch {
    let n = keys.len();
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ])),
        vec![
            Arc::new(StringArray::from(keys)) as ArrayRef,
            Arc::new(Int64Array::from(vec![1i64; n])) as ArrayRef,
        ],
    )
    .unwrap()
}

/// What operation `k` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Append,
    Insert,
    Swap,
    Import,
    Journey,
    Ctas,
}

fn kind(k: u64) -> Kind {
    match k % 8 {
        0..=2 => Kind::Append,
        3 => Kind::Insert,
        4 => Kind::Swap,
        5 => Kind::Import,
        6 => Kind::Journey,
        _ => Kind::Ctas,
    }
}

/// Rows operation `k` adds to `events` or `imported` (keys `e{k}_..`, `q{k}_..`, `i{k}_..`).
fn rows_of(k: u64) -> usize {
    match kind(k) {
        Kind::Append => 50,
        Kind::Insert => 5,
        Kind::Import => 3000,
        _ => 0,
    }
}

/// Runs operation `k`.
fn op(s: &mut dyn Session, k: u64, j: &Journey) -> Result<(), String> {
    let e = |e: journeydb_client::ClientError| e.to_string();
    match kind(k) {
        Kind::Append => s
            .append(
                "events",
                &kv((0..50).map(|i| format!("e{k:07}_{i}")).collect()),
            )
            .map(|_| ())
            .map_err(e),
        Kind::Insert => {
            let v: Vec<String> = (0..5).map(|i| format!("('q{k:07}_{i}', 1)")).collect();
            s.run(&format!("INSERT INTO events VALUES {}", v.join(", ")))
                .map(|_| ())
                .map_err(e)
        }
        Kind::Swap => s.swap("pair_a", "pair_b").map_err(e),
        Kind::Import => {
            let mut items = (0..3).map(|b| {
                Ok(LoadItem::Rows(kv((0..1000)
                    .map(|i| format!("i{k:07}_{}", b * 1000 + i))
                    .collect())))
            });
            s.load("imported", &mut items).map(|_| ()).map_err(e)
        }
        Kind::Journey => {
            let o = RunOptions {
                now_us: START + (1 + (k / 8) as i64) * DAY,
                check_percent: 100.0,
                allow_backfill: false,
                dry_run: false,
                keep_snapshots: 2,
                publish: false,
            };
            run::run(s, j, &o).map(|_| ()).map_err(|e| e.to_string())
        }
        Kind::Ctas => s
            .run("CREATE OR REPLACE TABLE summary AS SELECT k, n FROM events WHERE n > 0")
            .map(|_| ())
            .map_err(e),
    }
}

/// The tables the workload starts from.
fn setup(dir: &Path) {
    let db = Database::create(dir, KeyType::Varchar, opts()).unwrap();
    let mut s = EmbeddedSession::new(Engine::new(Arc::new(db)));
    for c in journeydb_tools::data::CREATE {
        s.run(c).unwrap();
    }
    let g = journeydb_tools::data::Cdp { seed: 3 };
    s.append("profiles", &g.profiles(0..CUSTOMERS)).unwrap();
    s.append("behaviours", &g.behaviours_batch(0..CUSTOMERS))
        .unwrap();
    for t in ["events", "imported"] {
        s.run(&format!(
            "CREATE TABLE {t} (k VARCHAR PRIMARY KEY, n BIGINT MERGE SUM)"
        ))
        .unwrap();
    }
    for (t, tag) in [("pair_a", "A"), ("pair_b", "B")] {
        s.run(&format!(
            "CREATE TABLE {t} (k VARCHAR PRIMARY KEY, tag VARCHAR)"
        ))
        .unwrap();
        s.run(&format!("INSERT INTO {t} VALUES ('x', '{tag}')"))
            .unwrap();
    }
}

fn strings(s: &mut dyn Session, sql: &str) -> Vec<String> {
    let r = s.run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    for b in &r.batches {
        let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        out.extend((0..a.len()).map(|i| a.value(i).to_string()));
    }
    out
}

/// The campaign's knowledge: operations acknowledged, swaps known to have happened.
#[derive(Default)]
struct Ledger {
    done: BTreeSet<u64>,
    next: u64,
}

impl Ledger {
    /// Checks the database after a kill that interrupted operation `doubt` (acknowledged
    /// operations are in `self.done`), and settles whether `doubt` happened.
    fn verify(&mut self, s: &mut dyn Session, doubt: u64, when: &str) {
        // Rows: per operation, all or nothing; acknowledged ones all.
        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        for t in ["events", "imported"] {
            for key in strings(s, &format!("SELECT k FROM {t}")) {
                let k: u64 = key[1..8].parse().unwrap();
                *seen.entry(k).or_default() += 1;
            }
        }
        for (&k, &n) in &seen {
            assert!(
                self.done.contains(&k) || k == doubt,
                "{when}: rows of operation {k} ({:?}), never started or refused",
                kind(k)
            );
            assert_eq!(
                n,
                rows_of(k),
                "{when}: operation {k} ({:?}) is partly there",
                kind(k)
            );
        }
        for &k in &self.done {
            if rows_of(k) > 0 {
                assert!(
                    seen.contains_key(&k),
                    "{when}: acknowledged operation {k} ({:?}) is lost",
                    kind(k)
                );
            }
        }
        // The swap pair: one version, and the parity of the swaps that happened.
        let pair = strings(
            s,
            "SELECT a.tag || b.tag FROM pair_a a JOIN pair_b b USING (k)",
        );
        assert!(
            pair == ["AB"] || pair == ["BA"],
            "{when}: the swap pair reads {pair:?}"
        );
        let swaps = self.done.iter().filter(|k| kind(**k) == Kind::Swap).count();
        let expect = if swaps.is_multiple_of(2) { "AB" } else { "BA" };
        let happened = match kind(doubt) {
            Kind::Swap => pair[0] != expect,
            Kind::Append | Kind::Insert | Kind::Import => seen.contains_key(&doubt),
            // A journey run or a CTAS interrupted is redone by what follows; nothing to settle.
            _ => false,
        };
        if kind(doubt) != Kind::Swap {
            assert_eq!(
                pair[0], expect,
                "{when}: the swap pair disagrees with the acknowledged swaps"
            );
        }
        if happened {
            self.done.insert(doubt);
        }
    }
}

/// `journeydb check` on the stopped database.
fn check_cli(dir: &Path, when: &str) {
    // JOURNEYDB_BIN: a copy of the binary, for a long campaign run while the tree is rebuilt.
    let bin = std::env::var("JOURNEYDB_BIN").unwrap_or(env!("CARGO_BIN_EXE_journeydb").into());
    let out = Command::new(bin)
        .args(["check", "--db"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{when}: journeydb check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kills() -> u64 {
    std::env::var("CAMPAIGN_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// The embedded engine's side: runs the workload from `CAMPAIGN_FROM` on, printing
/// `CAMPAIGN ack K` after each operation, until killed.
#[test]
#[ignore = "the child process of the embedded crash campaign, run by it"]
fn child() {
    let Ok(dir) = std::env::var("CAMPAIGN_DIR") else {
        return;
    };
    let from: u64 = std::env::var("CAMPAIGN_FROM").unwrap().parse().unwrap();
    let db = Database::open(&dir, opts()).unwrap_or_else(|e| panic!("open: {e}"));
    let mut s = EmbeddedSession::new(Engine::new(Arc::new(db)));
    let j = journey();
    for k in from.. {
        if let Err(e) = op(&mut s, k, &j) {
            println!("CAMPAIGN error {k} {e}");
            std::process::exit(3);
        }
        println!("CAMPAIGN ack {k}");
    }
}

#[test]
fn killed_embedded_engine_recovers_every_acknowledged_operation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    setup(&path);
    let mut ledger = Ledger::default();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ std::process::id() as u64;
    eprintln!("embedded campaign seed {seed:#x}");
    for round in 0..kills() {
        let mut child = Reaped(
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "child",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("CAMPAIGN_DIR", &path)
                .env("CAMPAIGN_FROM", ledger.next.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let (tx, rx) = mpsc::channel();
        let out = child.0.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(rest) = line.split_once("CAMPAIGN ").map(|(_, r)| r.to_string()) {
                    let _ = tx.send(rest);
                }
            }
        });
        // Kill after a random number of operations (and a random extra delay).
        let target = 1 + rng(&mut seed) % 12;
        let mut acked = 0;
        while acked < target {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(l) if l.starts_with("ack ") => {
                    ledger.done.insert(l[4..].parse().unwrap());
                    acked += 1;
                }
                Ok(l) => panic!("round {round}: the child said {l}"),
                Err(_) => {
                    let _ = child.0.kill();
                    let mut err = String::new();
                    let _ = std::io::Read::read_to_string(
                        &mut child.0.stderr.take().unwrap(),
                        &mut err,
                    );
                    panic!("round {round}: the child stopped acknowledging:\n{err}");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng(&mut seed) % 400));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        reader.join().unwrap();
        for l in rx.try_iter() {
            if let Some(k) = l.strip_prefix("ack ") {
                ledger.done.insert(k.parse().unwrap());
            }
        }
        let doubt = ledger.done.iter().max().map_or(0, |k| k + 1);
        let when = format!(
            "embedded round {round} (killed in operation {doubt}, {:?})",
            kind(doubt)
        );
        check_cli(&path, &when);
        let db = Database::open(&path, opts()).unwrap_or_else(|e| panic!("{when}: reopen: {e}"));
        let mut s = EmbeddedSession::new(Engine::new(Arc::new(db)));
        ledger.verify(&mut s, doubt, &when);
        ledger.next = doubt + 1;
    }
    // Work continues: one more run of each kind, the journey's with every row checked.
    let db = Database::open(&path, opts()).unwrap();
    let mut s = EmbeddedSession::new(Engine::new(Arc::new(db)));
    let j = journey();
    for k in ledger.next..ledger.next + 8 {
        op(&mut s, k, &j).unwrap_or_else(|e| panic!("after the campaign, operation {k}: {e}"));
        ledger.done.insert(k);
    }
    ledger.verify(&mut s, u64::MAX, "after the embedded campaign");
    eprintln!(
        "embedded: {} kills, {} operations acknowledged, all recovered",
        kills(),
        ledger.done.len()
    );
}

/// A child process killed when dropped, so a failing assertion never leaves it running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path) -> (common::Served, String) {
    let srv = common::serve(dir, &["--pg-listen", "off", "--flush-rows", "400"]);
    let addr = srv.native.clone();
    (srv, addr)
}

#[test]
fn killed_server_recovers_every_acknowledged_operation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    setup(&path);
    let mut ledger = Ledger::default();
    let mut seed = 0x2545_F491_4F6C_DD1Du64 ^ std::process::id() as u64;
    eprintln!("server campaign seed {seed:#x}");
    let j = journey();
    for round in 0..kills() {
        let (mut server, addr) = serve(&path);
        let stop = AtomicBool::new(false);
        let count = AtomicU64::new(0);
        let target = 1 + rng(&mut seed) % 12;
        let from = ledger.next;
        let acked: Vec<u64> = std::thread::scope(|sc| {
            let worker = sc.spawn(|| {
                let mut acked = Vec::new();
                let mut c = Client::connect(addr.as_str(), None).unwrap();
                for k in from.. {
                    if op(&mut c, k, &j).is_err() {
                        // The server was killed under it; the caller checks that it was.
                        break;
                    }
                    acked.push(k);
                    count.fetch_add(1, Ordering::SeqCst);
                    if stop.load(Ordering::SeqCst) && count.load(Ordering::SeqCst) > target + 50 {
                        break;
                    }
                }
                acked
            });
            while count.load(Ordering::SeqCst) < target {
                std::thread::sleep(Duration::from_millis(5));
                assert!(
                    !worker.is_finished(),
                    "round {round}: the workload failed before the kill"
                );
            }
            std::thread::sleep(Duration::from_millis(rng(&mut seed) % 400));
            server.kill();
            stop.store(true, Ordering::SeqCst);
            worker.join().unwrap()
        });
        ledger.done.extend(&acked);
        let doubt = ledger.done.iter().max().map_or(0, |k| k + 1);
        let when = format!(
            "server round {round} (killed in operation {doubt}, {:?})",
            kind(doubt)
        );
        check_cli(&path, &when);
        let (mut server, addr) = serve(&path);
        let mut c = Client::connect(addr.as_str(), None).unwrap();
        ledger.verify(&mut c, doubt, &when);
        ledger.next = doubt + 1;
        server.kill();
    }
    let (mut server, addr) = serve(&path);
    let mut c = Client::connect(addr.as_str(), None).unwrap();
    for k in ledger.next..ledger.next + 8 {
        op(&mut c, k, &j).unwrap_or_else(|e| panic!("after the campaign, operation {k}: {e}"));
        ledger.done.insert(k);
    }
    ledger.verify(&mut c, u64::MAX, "after the server campaign");
    server.kill();
    eprintln!(
        "server: {} kills, {} operations acknowledged, all recovered",
        kills(),
        ledger.done.len()
    );
}
