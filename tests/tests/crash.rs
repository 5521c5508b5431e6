//! Crash test: a child process appends, flushes, compacts and swaps in a loop and is killed with
//! SIGKILL at random moments; after every kill the database must reopen with every acknowledged
//! append present, whole, and nothing unacknowledged half-visible.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use journeydb_storage::{ColumnId, Database, Key, Options, Values};

const KILLS: usize = 32;
const BATCH_KEYS: usize = 20;

/// xorshift64*: a seeded generator, so a failing run can be replayed from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Returns the number of batches present, after checking they are whole and a prefix.
fn verify(dir: &std::path::Path) -> i64 {
    let opts = Options {
        partition_rows: 65536,
        background: false,
        ..Options::default()
    };
    let db = Database::open(dir, opts).expect("reopen after SIGKILL");
    let snap = db.snapshot();
    let t = snap.table("t").expect("table t survives");
    let keys = snap.keys();
    let mut per_batch: BTreeMap<i64, usize> = BTreeMap::new();
    let mut counter = 0i64;
    for p in t.partitions() {
        let v = t.column(p, ColumnId(0)).unwrap();
        let c = t.column(p, ColumnId(1)).unwrap();
        let Values::Int(vv) = &v.values else {
            panic!("v is BIGINT")
        };
        for (o, val) in v.presence.iter().zip(vv) {
            let Some(Key::Str(k)) = keys.key(o) else {
                panic!("ordinal without key")
            };
            let batch: i64 = k[1..k.find('_').unwrap()].parse().unwrap();
            assert_eq!(batch, *val, "key {k} holds another batch's value");
            *per_batch.entry(batch).or_default() += 1;
        }
        if let Values::Int(cv) = &c.values {
            counter += cv.iter().sum::<i64>();
        }
    }
    let n = per_batch.len() as i64;
    for (b, count) in &per_batch {
        assert!(
            *b < n,
            "batch {b} present but batches are not a prefix of 0..{n}"
        );
        assert_eq!(*count, BATCH_KEYS, "batch {b} is half visible");
    }
    assert_eq!(
        counter, n,
        "the SUM counter disagrees with the batches present"
    );
    n
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("crash test seed {seed} (set CRASH_SEED to replay the timing)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("db");
    let mut acked_total = -1i64;
    for kill in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
            .arg(&db_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let last_ack = Arc::new(AtomicI64::new(-1));
        let stdout = child.stdout.take().unwrap();
        let reader = {
            let last_ack = last_ack.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(i) = line.strip_prefix("ACK ").and_then(|s| s.parse().ok()) {
                        last_ack.store(i, Ordering::SeqCst);
                    }
                }
            })
        };
        // Let it make progress (bounded), then kill it at a random moment.
        let want = acked_total + 1 + (rng.next() % 40) as i64;
        let deadline = Instant::now() + Duration::from_secs(30);
        while last_ack.load(Ordering::SeqCst) < want {
            assert!(
                Instant::now() < deadline,
                "child made no progress (kill {kill})"
            );
            if let Ok(Some(status)) = child.try_wait() {
                panic!("child exited on its own with {status} (kill {kill})");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(rng.next() % 20_000));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let acked = last_ack.load(Ordering::SeqCst);
        let present = verify(&db_dir);
        assert!(
            present > acked,
            "kill {kill}: batch {acked} was acknowledged but only {present} batches survived"
        );
        assert!(
            present <= acked + 2,
            "kill {kill}: {present} batches present, only {} could have been written",
            acked + 2
        );
        acked_total = present - 1;
    }
    println!("{KILLS} kills, {} batches survived", acked_total + 1);
}
