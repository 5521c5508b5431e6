//! Appends while a manifest commit makes itself durable: the commit is held at the rename of
//! `CURRENT` (a fail point that blocks until the test lets it go), and an append to another table
//! must be acknowledged meanwhile, because a commit's fsyncs run without the state lock. The rows
//! appended during the commit must stay visible once the commit installs its version (a flush
//! keeps the chunks it did not take), and after a reopen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{batch, dump, Col};
use journeydb_storage::{ColumnDef, ColumnType, Database, KeyType, TableSchema};

use common::opts;

fn schema() -> TableSchema {
    TableSchema::new(
        "customer_id",
        vec![ColumnDef::new("first", ColumnType::Timestamp)],
    )
}

fn rows(from: u64, n: u64) -> arrow_array::RecordBatch {
    let keys: Vec<String> = (from..from + n).map(|i| format!("c{i:06}")).collect();
    batch(
        "customer_id",
        &keys,
        vec![(
            "first",
            Col::Ts((from..from + n).map(|i| Some(i as i64)).collect()),
        )],
    )
}

/// Holds every commit at the rename of `CURRENT`: each arrival is reported on the returned
/// receiver, and waits for one message on the returned sender.
fn hold_renames() -> (Receiver<()>, Sender<()>) {
    let (arrived_tx, arrived) = channel();
    let (go, go_rx) = channel::<()>();
    let arrived_tx = Mutex::new(arrived_tx);
    let go_rx = Mutex::new(go_rx);
    fail::cfg_callback("rename.current.before", move || {
        let _ = arrived_tx.lock().unwrap().send(());
        let _ = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(30));
    })
    .unwrap();
    (arrived, go)
}

/// Runs `commit` on a thread until it reaches the rename of `CURRENT`, then appends rows
/// `from..from + 100` to `t` and returns whether that append was acknowledged while the commit
/// was held. The commit is then let go and must succeed.
fn append_during(db: &Arc<Database>, from: u64, commit: fn(&Database)) -> bool {
    let (arrived, go) = hold_renames();
    let committer = {
        let db = db.clone();
        std::thread::spawn(move || commit(&db))
    };
    arrived.recv_timeout(Duration::from_secs(30)).unwrap();
    let (done_tx, done) = channel();
    let appender = {
        let db = db.clone();
        std::thread::spawn(move || {
            db.append("t", &rows(from, 100)).unwrap();
            let _ = done_tx.send(());
        })
    };
    let acknowledged = done.recv_timeout(Duration::from_secs(5)).is_ok();
    fail::remove("rename.current.before");
    let _ = go.send(());
    committer.join().unwrap();
    appender.join().unwrap();
    acknowledged
}

fn keys_of(db: &Database, table: &str) -> usize {
    dump(&db.snapshot(), table).len()
}

#[test]
fn appends_are_acknowledged_while_a_commit_makes_itself_durable() {
    let _scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path(), KeyType::Varchar, opts()).unwrap());
    for t in ["t", "a", "b"] {
        db.create_table(t, schema()).unwrap();
    }
    db.append("t", &rows(0, 100)).unwrap();
    db.append("a", &rows(0, 10)).unwrap();

    // A catalog commit (a swap of two other tables).
    assert!(
        append_during(&db, 100, |db| {
            db.swap_tables("a", "b").unwrap();
        }),
        "an append waited for a swap's fsyncs"
    );
    assert_eq!(keys_of(&db, "t"), 200);
    assert_eq!(keys_of(&db, "b"), 10);

    // A flush: it takes the chunks there were when it began; the append made during its commit
    // stays in memory, in the new WAL file.
    assert!(
        append_during(&db, 200, |db| {
            db.flush().unwrap();
        }),
        "an append waited for a flush's fsyncs"
    );
    assert_eq!(keys_of(&db, "t"), 300);
    assert_eq!(db.unflushed_rows(), 100);

    // A compaction (after a second flush, two segments in the partition).
    db.flush().unwrap();
    assert!(
        append_during(&db, 300, |db| {
            db.compact(2).unwrap();
        }),
        "an append waited for a compaction's fsyncs"
    );
    assert_eq!(keys_of(&db, "t"), 400);

    // What was acknowledged survives a reopen.
    drop(Arc::try_unwrap(db).ok().unwrap());
    let db = Database::open(dir.path(), opts()).unwrap();
    assert_eq!(keys_of(&db, "t"), 400);
    assert_eq!(keys_of(&db, "b"), 10);
    assert_eq!(keys_of(&db, "a"), 0);
    db.check().unwrap();
}
