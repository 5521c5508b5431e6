//! Crash tests of a journey run (issue 13): `journeydb journey run` is SIGKILLed at random points;
//! after the database is opened again, the state, the activation log and the run records are
//! either all the old ones or all the new ones (one commit publishes them), and the next run
//! completes with exactly the state and log of an uninterrupted run.
//!
//! `JOURNEY_CRASH_TRIALS=200 cargo test --release -p journeydb --test journey_crash` runs a longer
//! campaign (`scripts/journey-crash.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use journeydb_client::Session;
use journeydb_journey::def;
use journeydb_journey::run::{self, RunOptions};
use journeydb_query::Engine;
use journeydb_server::EmbeddedSession;
use journeydb_storage::{Database, KeyType, Options};

const START: i64 = 1_767_225_600_000_000;
const DAY: i64 = 86_400_000_000;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

type Rows = Vec<Vec<Option<String>>>;

/// The journey's published tables: state, activation log, run records (each sorted).
fn published(dir: &Path) -> (Rows, Rows, Rows) {
    let db = Database::open(dir, Options::default()).unwrap();
    let mut s = EmbeddedSession::new(Engine::new(Arc::new(db)));
    let mut rows = |t: &str| -> Rows {
        common::reply_rows(&s.run(&format!("SELECT * FROM {t} ORDER BY 1")).unwrap())
    };
    let runs: Rows = rows("onboarding_state_runs")
        .into_iter()
        // The duration differs between runs of the same work: compare the rest.
        .map(|mut r| {
            r.pop();
            r
        })
        .collect();
    (
        rows("onboarding_state"),
        rows("onboarding_state_activations"),
        runs,
    )
}

fn run_cli(dir: &Path, day: i64) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_journeydb"));
    c.args(["journey", "run"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/journey.toml"
        ))
        .arg("--db")
        .arg(dir)
        .arg("--now")
        .arg(journeydb_journey::value::timestamp_text(START + day * DAY).replace(' ', "T"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

#[test]
fn a_killed_run_leaves_the_old_or_the_new_state_and_the_next_run_completes() {
    let trials: usize = std::env::var("JOURNEY_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("base");
    {
        let db = Database::create(&base, KeyType::Varchar, Options::default()).unwrap();
        let mut s = EmbeddedSession::new(Engine::new(Arc::new(db)));
        for c in journeydb_tools::data::CREATE {
            s.run(c).unwrap();
        }
        let g = journeydb_tools::data::Cdp { seed: 11 };
        s.append("profiles", &g.profiles(0..20_000)).unwrap();
        s.append("behaviours", &g.behaviours_batch(0..20_000))
            .unwrap();
        let j = def::parse(journeydb_tools::EXAMPLE_JOURNEY).unwrap();
        for day in 1..=3 {
            let o = RunOptions {
                now_us: START + day * DAY,
                check_percent: 50.0,
                allow_backfill: false,
                dry_run: false,
                keep_snapshots: 7,
                publish: false,
            };
            assert!(run::run(&mut s, &j, &o).unwrap().swapped);
        }
    }
    let old = published(&base);
    // The uninterrupted run of day 4, and how long it takes.
    let reference = work.path().join("reference");
    copy_dir(&base, &reference);
    let t = Instant::now();
    assert!(run_cli(&reference, 4).status().unwrap().success());
    let took = t.elapsed();
    let new = published(&reference);
    assert_ne!(old.0, new.0, "day 4 changes the state");
    assert!(new.1.len() > old.1.len(), "day 4 activates customers");
    let (mut kept_old, mut got_new) = (0, 0);
    for trial in 0..trials {
        let dir = work.path().join(format!("trial{trial}"));
        copy_dir(&base, &dir);
        let mut child = run_cli(&dir, 4).spawn().unwrap();
        // A kill point spread over the whole run (and a little after it).
        let at = took.mul_f64(((trial * 37) % 131) as f64 / 100.0);
        std::thread::sleep(at.min(Duration::from_secs(30)));
        let _ = child.kill();
        let _ = child.wait();
        let after = published(&dir);
        if after == old {
            kept_old += 1;
        } else {
            assert!(
                after == new,
                "trial {trial} (killed after {at:?}): the published tables are neither the old nor the new ones"
            );
            got_new += 1;
        }
        // The next run completes, and ends where the uninterrupted run did.
        assert!(
            run_cli(&dir, 4).status().unwrap().success(),
            "trial {trial}"
        );
        assert_eq!(published(&dir), new, "trial {trial}");
        let db = Database::open(&dir, Options::default()).unwrap();
        let left: Vec<String> = db
            .snapshot()
            .table_names()
            .into_iter()
            .filter(|t| t.contains("__"))
            .collect();
        assert!(
            left.is_empty(),
            "trial {trial}: scratch tables left: {left:?}"
        );
        drop(db);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!(
        "{trials} killed runs (a run takes {took:?}): {kept_old} left the old state, {got_new} the new one"
    );
}
