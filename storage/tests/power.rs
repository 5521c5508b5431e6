//! Power-cut property test (issue 18): the model-based operations run on the simulated file system
//! (`dir::sim`), the power fails at a random call, and the disk the next boot finds keeps only what was
//! made durable plus any subset, reordering or torn sectors of the rest. The database must then open
//! (never an error) to the last commit plus every acknowledged append, with the operation that was in
//! flight either fully applied or not at all, and keep working: new keys after recovery must never
//! inherit rows of keys the cut took away.
//!
//! `POWER_CASES=N` sets the number of operation sequences (each explored at `CUTS_PER_CASE` cut
//! points); the default keeps CI short. `scripts/power.sh` runs a long campaign.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::model::{
    apply_engine, apply_model, durable, engine_state, key, op, schema, Model, Op, KEYS, TABLES,
};
use common::{batch, Col};
use journeydb_storage::dir::sim::SimDir;
use journeydb_storage::{Database, KeyType, Options, StorageError};
use proptest::prelude::*;

const CUTS_PER_CASE: u64 = 8;
/// Cuts checked by this process, for the report.
static CUTS: AtomicU64 = AtomicU64::new(0);

fn opts() -> Options {
    Options {
        keep_versions: 3,
        ..common::opts()
    }
}

const DB: &str = "/data/db";

/// A database on `fs` with every model key in the dictionary (ingests name rows by ordinal).
fn setup(fs: &SimDir) -> Database {
    let db = Database::create_in(Arc::new(fs.clone()), DB, KeyType::Varchar, opts()).unwrap();
    db.create_table("filler", journeydb_storage::TableSchema::new("k", vec![]))
        .unwrap();
    let all: Vec<String> = (0..KEYS).map(key).collect();
    db.append("filler", &batch("k", &all, vec![])).unwrap();
    db
}

/// Appends get fresh keys too (a third of their rows), so the dictionary grows during the run and a
/// cut can take keys away from it.
fn widen(op: &Op, step: usize) -> Op {
    match op {
        Op::Append { table, rows } => Op::Append {
            table: *table,
            rows: rows
                .iter()
                .map(|(k, v)| {
                    let k = if k % 3 == 0 {
                        k + KEYS * (1 + step as u32)
                    } else {
                        *k
                    };
                    (k, *v)
                })
                .collect(),
        },
        other => other.clone(),
    }
}

/// What stops a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The power fails: unsynced writes may be lost.
    PowerCut,
    /// The process is killed: the page cache keeps every write, and the power fails later, after
    /// the restarted process recovered, wrote new keys and flushed (finding 1: recovery must make
    /// durable what it replays).
    Kill,
}

/// Runs `ops` stopped at mutating call `cut` (counted after setup; `None` = never) and returns the
/// calls the run made, or checks recovery when it was stopped.
fn run(ops: &[Op], cut: Option<(u64, Stop)>, seed: u64) -> Result<u64, TestCaseError> {
    let fs = SimDir::new();
    let mut db = Some(setup(&fs));
    let base = fs.stats().mutations();
    match cut {
        Some((c, Stop::PowerCut)) => fs.cut_after(base + c),
        Some((c, Stop::Kill)) => fs.kill_at(base + c),
        None => {}
    }
    let mut model = Model::new();
    let mut in_flight: Option<Model> = None;
    for (step, op) in ops.iter().enumerate() {
        let op = widen(op, step);
        let mut next = model.clone();
        let model_ok = apply_model(&mut next, &op);
        let engine_ok = match op {
            Op::Reopen => {
                drop(db.take());
                match Database::open_in(Arc::new(fs.clone()), DB, opts()) {
                    Ok(d) => {
                        db = Some(d);
                        true
                    }
                    Err(e) => {
                        prop_assert!(fs.is_dead(), "reopen failed without a cut: {e}");
                        false
                    }
                }
            }
            _ => apply_engine(db.as_ref().unwrap(), &op),
        };
        if fs.is_dead() {
            in_flight = model_ok.then_some(next);
            break;
        }
        prop_assert_eq!(model_ok, engine_ok, "step {} {:?}", step, op);
        if model_ok {
            model = next;
        }
    }
    let Some((_, stop)) = cut else {
        return Ok(fs.stats().mutations() - base);
    };
    CUTS.fetch_add(1, Ordering::Relaxed);
    let image = match stop {
        Stop::PowerCut => fs.power_cut(seed),
        Stop::Kill => fs.restarted(),
    };
    drop(db);
    let fs2: Arc<SimDir> = Arc::new(image.clone());
    let db = match Database::open_in(fs2.clone(), DB, opts()) {
        Ok(d) => d,
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "open after the cut failed: {e}"
            )))
        }
    };
    // Temporary tables do not survive the cut.
    let (model, in_flight) = (durable(&model), in_flight.as_ref().map(durable));
    let got = engine_state(&db.snapshot());
    let ok = got == model || in_flight.as_ref() == Some(&got);
    prop_assert!(
        ok,
        "after the cut: {:?}\nacknowledged: {:?}\nwith the op in flight: {:?}",
        got,
        model,
        in_flight
    );
    // Keep working: new keys must start empty (no inherited rows), and survive (after a kill: a
    // power cut too).
    let mut model = got;
    let table = match model.keys().next() {
        Some(t) => t.clone(),
        None => {
            db.create_table(TABLES[0], schema()).unwrap();
            model.insert(TABLES[0].to_string(), Default::default());
            TABLES[0].to_string()
        }
    };
    let fresh: Vec<String> = (0..5).map(|i| format!("post{i}")).collect();
    db.append(
        &table,
        &batch("k", &fresh, vec![("c", Col::Int(vec![Some(1); 5]))]),
    )
    .unwrap();
    let t = model.get_mut(&table).unwrap();
    for k in &fresh {
        let mut row = vec![None; 6];
        row[2] = Some(common::Cell::Int(1));
        t.insert(k.clone(), row);
    }
    // With or without a flush: rows replayed by recovery must be durable either way.
    if seed.is_multiple_of(2) {
        db.flush().unwrap();
    }
    drop(db);
    let fs2 = match stop {
        Stop::PowerCut => fs2,
        Stop::Kill => Arc::new(fs2.power_cut(seed)),
    };
    let again = Database::open_in(fs2.clone(), DB, opts()).map_err(|e| {
        TestCaseError::fail(format!(
            "open after recovery, new keys, a flush and a cut: {e}"
        ))
    })?;
    prop_assert_eq!(
        &engine_state(&again.snapshot()),
        &model,
        "after recovery, new keys and a flush"
    );
    drop(again);
    Database::check_dir_in(&*fs2, DB).map_err(|e| TestCaseError::fail(format!("check: {e}")))?;
    Ok(0)
}

/// One I/O error at mutating call `fail` (after setup) with the power on: a failed write, a failed
/// fsync whose pages the kernel then drops (fsyncgate), a failed rename or directory sync (perhaps
/// after the commit point). The operation fails, the database restarts in the same boot (so the
/// page cache still holds what never reached the disk), the run goes on, and then the power fails.
/// The state must be every acknowledged change, the failed operation counted as done or not done
/// by what the restart showed.
fn run_fault(ops: &[Op], fail: u64, seed: u64) -> Result<(), TestCaseError> {
    let fs = SimDir::new();
    let mut db = Some(setup(&fs));
    fs.fail_at(fs.stats().mutations() + fail);
    let mut model = Model::new();
    let mut failed = false;
    for (step, op) in ops.iter().enumerate() {
        let op = widen(op, step);
        let mut next = model.clone();
        let model_ok = apply_model(&mut next, &op);
        let engine_ok = match op {
            Op::Reopen => {
                drop(db.take());
                db = Database::open_in(Arc::new(fs.clone()), DB, opts()).ok();
                db.is_some()
            }
            _ => apply_engine(db.as_ref().unwrap(), &op),
        };
        if engine_ok == model_ok {
            if model_ok {
                model = next;
            }
            continue;
        }
        prop_assert!(
            !failed && model_ok,
            "step {} {:?}: engine {} but model {} (after an injected failure: {})",
            step,
            op,
            engine_ok,
            model_ok,
            failed
        );
        failed = true;
        drop(db.take());
        let d = Database::open_in(Arc::new(fs.clone()), DB, opts()).map_err(|e| {
            TestCaseError::fail(format!("restart after the failure of {op:?}: {e}"))
        })?;
        let got = engine_state(&d.snapshot());
        let (model_d, next_d) = (durable(&model), durable(&next));
        prop_assert!(
            got == model_d || got == next_d,
            "restart after the failure of {:?}: {:?}\nbefore: {:?}\nafter: {:?}",
            op,
            got,
            model,
            next
        );
        model = got;
        db = Some(d);
    }
    CUTS.fetch_add(1, Ordering::Relaxed);
    let image = Arc::new(fs.power_cut(seed));
    drop(db);
    let d = Database::open_in(image, DB, opts())
        .map_err(|e| TestCaseError::fail(format!("open after the cut: {e}")))?;
    prop_assert_eq!(
        &engine_state(&d.snapshot()),
        &durable(&model),
        "after the cut (failure injected: {})",
        failed
    );
    Ok(())
}

fn cases() -> u32 {
    std::env::var("POWER_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

#[test]
fn every_power_cut_recovers_to_the_acknowledged_state() {
    let config = ProptestConfig {
        cases: cases(),
        max_shrink_iters: 500,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::SourceParallel("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = (proptest::collection::vec(op(), 1..24), any::<u64>());
    let result = runner.run(&strategy, |(ops, seed)| {
        let total = run(&ops, None, 0)?;
        for i in 0..CUTS_PER_CASE {
            // Spread the cut points over the whole run, each with its own choice of lost writes.
            let at = (total * i + seed % total.max(1)) / CUTS_PER_CASE;
            let stop = if i % 2 == 0 {
                Stop::PowerCut
            } else {
                Stop::Kill
            };
            run(&ops, Some((at, stop)), seed.wrapping_add(i))?;
            run_fault(&ops, at, seed.wrapping_add(i))?;
        }
        Ok(())
    });
    eprintln!(
        "stops explored: {} ({} operation sequences; each cut point as a power cut or a kill, and \
         as an injected I/O error followed by a restart and a power cut)",
        CUTS.load(Ordering::Relaxed),
        cases()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A crash anywhere inside `create` leaves either no database (and `create` succeeds next time) or
/// a whole one that opens.
#[test]
fn a_cut_inside_create_never_leaves_a_directory_that_neither_create_nor_open_accepts() {
    let probe = SimDir::new();
    drop(Database::create_in(Arc::new(probe.clone()), DB, KeyType::Varchar, opts()).unwrap());
    let total = probe.stats().mutations();
    for cut in 0..total {
        for seed in 0..4 {
            let fs = SimDir::new();
            fs.cut_after(cut);
            assert!(
                Database::create_in(Arc::new(fs.clone()), DB, KeyType::Varchar, opts()).is_err()
            );
            let image = Arc::new(fs.power_cut(seed));
            match Database::open_in(image.clone(), DB, opts()) {
                Ok(_) => {}
                Err(StorageError::NotADatabase(_)) => {
                    Database::create_in(image.clone(), DB, KeyType::Varchar, opts())
                        .unwrap_or_else(|e| {
                            panic!("cut {cut} seed {seed}: create after the cut: {e}")
                        });
                }
                Err(e) => panic!("cut {cut} seed {seed}: {e}"),
            }
        }
    }
    assert!(total > 10, "create makes {total} calls");
}

/// Found by the power-cut test: a process killed between the rename of `CURRENT` and the fsync of
/// its directory leaves a commit only in the page cache. Recovery used to build on it without
/// syncing it, so a later power cut took the commit back, and with it the table that later
/// acknowledged appends went to. Every kill point of a `CREATE TABLE`, each with several cuts.
#[test]
fn regression_a_commit_recovered_from_the_page_cache_is_made_durable() {
    let ops = vec![Op::Create(0)];
    let total = run(&ops, None, 0).unwrap();
    for at in 0..total {
        for seed in 0..8 {
            run(&ops, Some((at, Stop::Kill)), seed).unwrap();
        }
    }
}

/// Power loss finding 4 (issue 18): an fsync error after the `CURRENT` rename used to be returned as
/// a failure while the disk already held the new version (a DROP "failed" but took effect, appends
/// acknowledged to the dropped table were skipped on replay, the next commit reused the version
/// number), and a reopen in the same boot trusted pages the kernel had marked clean. An I/O error at
/// every call of a create, append, flush, drop, create, append sequence, each followed by a restart
/// and a power cut, must keep every acknowledged change.
#[test]
fn regression_an_io_error_at_any_call_of_a_commit_keeps_every_acknowledged_change() {
    let row = |k: u32, v| (k, [Some(v), Some(v), Some(v), None, None, None]);
    let ops = vec![
        Op::Create(0),
        Op::Append {
            table: 0,
            rows: vec![row(1, 5), row(2, 6)],
        },
        Op::Flush,
        Op::Append {
            table: 0,
            rows: vec![row(4, 7)],
        },
        Op::Drop(0),
        Op::Create(0),
        Op::Append {
            table: 0,
            rows: vec![row(3, 8), row(5, 9)],
        },
    ];
    let total = run(&ops, None, 0).unwrap();
    for at in 0..total {
        for seed in 0..4 {
            run_fault(&ops, at, seed).unwrap();
        }
    }
}

/// ADD COLUMN under power cuts: a table gets a column between appends, at every call of the
/// sequence the power fails (and 4 ways of losing the unsynced writes); after recovery the table
/// is the state after the last acknowledged step, or the one after, with every cell in place.
#[test]
fn an_added_column_survives_a_power_cut_at_every_call() {
    use journeydb_storage::{CatalogOp, ColumnDef, ColumnType, MergeRule, TableSchema};
    type Step = fn(&Database) -> bool;
    let steps: Vec<Step> = vec![
        |d| {
            d.create_table(
                "t",
                TableSchema::new(
                    "k",
                    vec![ColumnDef::new("a", ColumnType::Bigint).with_rule(MergeRule::Sum)],
                ),
            )
            .is_ok()
        },
        |d| {
            d.append(
                "t",
                &batch(
                    "k",
                    &(0..3).map(key).collect::<Vec<_>>(),
                    vec![("a", Col::Int(vec![Some(1); 3]))],
                ),
            )
            .is_ok()
        },
        |d| d.flush().is_ok(),
        |d| {
            d.commit(&[CatalogOp::AddColumn {
                table: "t".into(),
                column: ColumnDef::new("b", ColumnType::Bigint).with_rule(MergeRule::Sum),
            }])
            .is_ok()
        },
        |d| {
            d.append(
                "t",
                &batch(
                    "k",
                    &(1..5).map(key).collect::<Vec<_>>(),
                    vec![("b", Col::Int(vec![Some(2); 4]))],
                ),
            )
            .is_ok()
        },
        |d| d.flush().is_ok(),
        |d| {
            d.append(
                "t",
                &batch(
                    "k",
                    &(0..2).map(key).collect::<Vec<_>>(),
                    vec![
                        ("a", Col::Int(vec![Some(5); 2])),
                        ("b", Col::Int(vec![Some(7); 2])),
                    ],
                ),
            )
            .is_ok()
        },
    ];
    // The table after each number of completed steps (None: no table).
    let cell = |v: i64| Some(common::Cell::Int(v));
    let expected = |done: usize| -> Option<common::Dump> {
        let mut d = common::Dump::new();
        if done < 1 {
            return None;
        }
        let width = if done >= 4 { 2 } else { 1 };
        if done >= 2 {
            for k in 0..3 {
                d.insert(key(k), vec![cell(1), None][..width].to_vec());
            }
        }
        if done >= 5 {
            for k in 1..5 {
                let row = d.entry(key(k)).or_insert_with(|| vec![None, None]);
                row[1] = cell(2);
            }
        }
        if done >= 7 {
            for k in 0..2 {
                let row = d.entry(key(k)).or_insert_with(|| vec![None, None]);
                row[0] = Some(common::Cell::Int(match &row[0] {
                    Some(common::Cell::Int(v)) => v + 5,
                    _ => 5,
                }));
                row[1] = Some(common::Cell::Int(match &row[1] {
                    Some(common::Cell::Int(v)) => v + 7,
                    _ => 7,
                }));
            }
        }
        Some(d)
    };
    let probe = SimDir::new();
    let d = setup(&probe);
    let base = probe.stats().mutations();
    for s in &steps {
        assert!(s(&d));
    }
    assert_eq!(dump_t(&d), expected(steps.len()));
    let total = probe.stats().mutations() - base;
    drop(d);
    for cut in 0..total {
        for seed in 0..4 {
            let fs = SimDir::new();
            let d = setup(&fs);
            fs.cut_after(fs.stats().mutations() + cut);
            let mut done = 0;
            for s in &steps {
                if !s(&d) {
                    break;
                }
                done += 1;
            }
            assert!(fs.is_dead(), "cut {cut} never happened");
            let image = Arc::new(fs.power_cut(seed));
            drop(d);
            let d = Database::open_in(image, DB, opts())
                .unwrap_or_else(|e| panic!("cut {cut} seed {seed}: open: {e}"));
            let got = dump_t(&d);
            assert!(
                got == expected(done) || got == expected(done + 1),
                "cut {cut} seed {seed} after {done} steps: {got:?}"
            );
        }
    }
}

/// Table `t` dumped, or `None` when it does not exist.
fn dump_t(d: &Database) -> Option<common::Dump> {
    let snap = d.snapshot();
    snap.table("t").ok().map(|_| common::dump(&snap, "t"))
}
