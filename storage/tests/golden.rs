//! Golden files: a database written by each generation of the format (FORMAT.md, "Versions"), checked
//! in under `tests/golden/v{N}/`, must be read exactly by every later build. It holds flushed segments
//! (PLAIN, FOR and DICT value blocks, raw and zstd), WAL records still to replay, a swap and a drop.
//! `v1`: every structure at version 1; `v2`: WAL and key dictionary at version 2 (salted records).
//! Regenerate only with a format version bump: `GOLDEN_WRITE=1 cargo test -p journeydb-storage --test
//! golden` writes `v{GENERATION}`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::{Path, PathBuf};

use common::{batch, dump, Cell, Col, Dump};
use journeydb_storage::{ColumnDef, ColumnType, Database, KeyType, MergeRule, TableSchema};

use common::opts;

fn schema() -> TableSchema {
    TableSchema::new(
        "customer_id",
        vec![
            ColumnDef::new("ts", ColumnType::Timestamp),
            ColumnDef::new("n", ColumnType::Bigint).with_rule(MergeRule::Sum),
            ColumnDef::new("x", ColumnType::Double).with_rule(MergeRule::Max),
            ColumnDef::new("flag", ColumnType::Boolean).with_rule(MergeRule::Last),
            ColumnDef::new("name", ColumnType::Varchar).with_rule(MergeRule::Min),
        ],
    )
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("cust{i:05}")).collect()
}

fn write(dir: &Path) {
    let db = Database::create(dir, KeyType::Varchar, opts()).unwrap();
    db.create_table("state", schema()).unwrap();
    db.create_table("other", schema()).unwrap();
    db.create_table("gone", schema()).unwrap();
    let n = 3000;
    // Few distinct timestamps (DICT), wide BIGINT range (FOR), doubles, booleans, strings.
    let b = batch(
        "customer_id",
        &keys(n),
        vec![
            (
                "ts",
                Col::Ts(
                    (0..n)
                        .map(|i| {
                            (i % 4 != 0)
                                .then_some(1_767_225_600_000_000 + (i % 6) as i64 * 14_400_000_000)
                        })
                        .collect(),
                ),
            ),
            (
                "n",
                Col::Int((0..n).map(|i| Some(i as i64 * 1_000_003 - 7)).collect()),
            ),
            (
                "x",
                Col::Float(
                    (0..n)
                        .map(|i| (i % 2 == 0).then_some(i as f64 / 3.0))
                        .collect(),
                ),
            ),
            (
                "name",
                Col::Str(
                    (0..n)
                        .map(|i| (i % 5 == 0).then(|| format!("n{}", i % 17)))
                        .collect(),
                ),
            ),
        ],
    );
    db.append("state", &b).unwrap();
    db.append("gone", &b).unwrap();
    db.flush().unwrap();
    db.append(
        "other",
        &batch(
            "customer_id",
            &keys(10),
            vec![("n", Col::Int(vec![Some(42); 10]))],
        ),
    )
    .unwrap();
    db.flush().unwrap();
    db.swap_tables("state", "other").unwrap();
    db.drop_table("gone").unwrap();
    // Left in the WAL.
    db.append(
        "other",
        &batch(
            "customer_id",
            &keys(20),
            vec![
                ("n", Col::Int(vec![Some(1); 20])),
                ("name", Col::Str(vec![Some("a".into()); 20])),
            ],
        ),
    )
    .unwrap();
}

fn expected_other() -> Dump {
    let n = 3000;
    let mut d = Dump::new();
    for (i, k) in keys(n).into_iter().enumerate() {
        let ts = (i % 4 != 0)
            .then(|| Cell::Int(1_767_225_600_000_000 + (i % 6) as i64 * 14_400_000_000));
        let extra = if i < 20 { 1 } else { 0 };
        let nn = Some(Cell::Int(i as i64 * 1_000_003 - 7 + extra));
        let x = (i % 2 == 0).then(|| Cell::Float(i as f64 / 3.0));
        let own = (i % 5 == 0).then(|| format!("n{}", i % 17));
        let name = match (own, i < 20) {
            (Some(o), true) => Some(if o.as_str() < "a" { o } else { "a".to_string() }),
            (Some(o), false) => Some(o),
            (None, true) => Some("a".to_string()),
            (None, false) => None,
        };
        d.insert(k, vec![ts, nn, x, None, name.map(Cell::Str)]);
    }
    d
}

/// The newest format generation: bump it with any structure's version, and write its golden files.
const GENERATION: u16 = 2;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn every_golden_version_reads_exactly() {
    if std::env::var("GOLDEN_WRITE").is_ok() {
        let target = golden_dir().join(format!("v{GENERATION}"));
        let _ = std::fs::remove_dir_all(&target);
        write(&target);
        let _ = std::fs::remove_file(target.join("LOCK"));
    }
    let mut versions = 0;
    for v in 1..=GENERATION {
        let src = golden_dir().join(format!("v{v}"));
        assert!(
            src.join("CURRENT").exists(),
            "golden files of format v{v} are missing at {}",
            src.display()
        );
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&src, tmp.path());
        let db = Database::open(tmp.path(), opts()).unwrap();
        // An older dictionary is rewritten in the current version on open: records of the new
        // framing are never appended to a file of the old one.
        let dict = std::fs::read(tmp.path().join("keys.dict")).unwrap();
        assert_eq!(
            u16::from_le_bytes([dict[8], dict[9]]),
            journeydb_storage::format::KEYDICT_VERSION,
            "format v{v}"
        );
        let snap = db.snapshot();
        assert_eq!(
            snap.table_names(),
            vec!["other".to_string(), "state".to_string()]
        );
        assert_eq!(dump(&snap, "other"), expected_other(), "format v{v}");
        let state = dump(&snap, "state");
        assert_eq!(state.len(), 10);
        assert_eq!(state["cust00003"][1], Some(Cell::Int(42)));
        versions += 1;
    }
    assert_eq!(versions, GENERATION as usize);
}
