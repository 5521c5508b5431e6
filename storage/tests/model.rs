//! Model-based property test: random sequences of appends, flushes, compactions, catalog commits and
//! reopens run against the engine and against a plain in-memory model (a BTreeMap per table that folds
//! every appended row with the column's merge rule). After every step the engine must equal the
//! model, and the snapshot taken before the step must still equal the model as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::batch;
use common::model::{
    apply_engine, apply_model, engine_state, key, op, Model, Op, FILLER_KEYS, KEYS,
};
use journeydb_storage::{Database, KeyType, Options, TableSchema};
use proptest::prelude::*;

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        partition_rows: 65536,
        background: false,
        keep_versions: 3,
        ..Options::default()
    };
    let mut db = Some(Database::create(dir.path(), KeyType::Varchar, opts.clone()).unwrap());
    {
        let d = db.as_ref().unwrap();
        d.create_table("filler", TableSchema::new("k", vec![]))
            .unwrap();
        let filler: Vec<String> = (0..FILLER_KEYS).map(|i| format!("filler{i}")).collect();
        d.append("filler", &batch("k", &filler, vec![])).unwrap();
        // Every test key gets its ordinal up front, so ingests (by ordinal) can name any of them.
        let all: Vec<String> = (0..KEYS).map(key).collect();
        d.append("filler", &batch("k", &all, vec![])).unwrap();
    }
    let mut model: Model = Model::new();
    for (step, op) in ops.iter().enumerate() {
        let prev_snapshot = db.as_ref().unwrap().snapshot();
        let prev_model = model.clone();
        let mut next = model.clone();
        let model_ok = apply_model(&mut next, op);
        let engine_ok = match op {
            Op::Reopen => {
                drop(db.take());
                db = Some(Database::open(dir.path(), opts.clone()).unwrap());
                true
            }
            _ => apply_engine(db.as_ref().unwrap(), op),
        };
        prop_assert_eq!(
            model_ok,
            engine_ok,
            "step {} {:?}: model and engine disagree on success",
            step,
            op
        );
        if model_ok {
            model = next;
        }
        let got = engine_state(&db.as_ref().unwrap().snapshot());
        prop_assert_eq!(&got, &model, "step {}: {:?}", step, op);
        prop_assert_eq!(
            engine_state(&prev_snapshot),
            prev_model,
            "step {}: the previous snapshot changed",
            step
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn engine_equals_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}

/// Regression: LAST must follow append order across a flush boundary and a compaction.
#[test]
fn last_follows_append_order_across_flush_and_compaction() {
    let row = |v| (3u32, [None, None, None, Some(v), None, Some(v)]);
    run(vec![
        Op::Create(0),
        Op::Append {
            table: 0,
            rows: vec![row(1)],
        },
        Op::Flush,
        Op::Append {
            table: 0,
            rows: vec![row(2)],
        },
        Op::Flush,
        Op::Append {
            table: 0,
            rows: vec![row(-7), row(4)],
        },
        Op::Compact,
        Op::Flush,
        Op::Compact,
        Op::Reopen,
    ])
    .unwrap();
}
