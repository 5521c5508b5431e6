//! Torn and corrupt files (issue 15): a database made by a real workload (appends, flushes, a
//! compaction, a bulk load, a swap, unflushed appends in the WAL), then, in a copy each time, one
//! file of every kind (`CURRENT`, manifests, the key dictionary, segments, WAL files) truncated at
//! a random offset or with one bit flipped at a random offset.
//!
//! For every case:
//! - `Database::check_dir` (what `journeydb check` runs) reports it: an error, or for a cut log a
//!   torn tail; or else the damage is harmless and the database reads exactly as before;
//! - a database that opens never serves wrong data: every table reads back as before, or the read
//!   fails with an error. A cut log may lose its tail, and then `check` must have said so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use common::{batch, Cell, Col, Dump};
use journeydb_storage::{
    ColumnDef, ColumnId, ColumnType, Database, Key, KeyType, MergeRule, Options, TableSchema,
    Values,
};

fn opts() -> Options {
    Options {
        keep_versions: 3,
        ..common::opts()
    }
}

fn schema() -> TableSchema {
    TableSchema::new(
        "customer_id",
        vec![
            ColumnDef::new("first", ColumnType::Timestamp),
            ColumnDef::new("n", ColumnType::Bigint).with_rule(MergeRule::Sum),
            ColumnDef::new("score", ColumnType::Double).with_rule(MergeRule::Max),
            ColumnDef::new("tag", ColumnType::Varchar).with_rule(MergeRule::Last),
        ],
    )
}

fn rows(k: u64, n: u64) -> RecordBatch {
    let keys: Vec<String> = (0..n)
        .map(|j| format!("c{:06}", (k * 7919 + j * 31) % 90_000))
        .collect();
    batch(
        "customer_id",
        &keys,
        vec![
            (
                "first",
                Col::Ts(
                    (0..n)
                        .map(|j| Some(1_000_000 - (k * 100 + j) as i64))
                        .collect(),
                ),
            ),
            (
                "n",
                Col::Int((0..n).map(|j| Some((j % 7) as i64)).collect()),
            ),
            (
                "score",
                Col::Float((0..n).map(|j| Some(((k + j) % 101) as f64 / 3.0)).collect()),
            ),
            (
                "tag",
                Col::Str(
                    (0..n)
                        .map(|j| (j % 5 != 0).then(|| format!("t{k}-{}", j % 9)))
                        .collect(),
                ),
            ),
        ],
    )
}

/// The workload: every file kind ends up on disk, the WAL holding acknowledged appends.
fn build(dir: &Path) {
    let db = Database::create(dir, KeyType::Varchar, opts()).unwrap();
    db.create_table("state", schema()).unwrap();
    db.create_table("next", schema()).unwrap();
    for k in 0..6 {
        db.append("state", &rows(k, 3000)).unwrap();
        if k % 2 == 1 {
            db.flush().unwrap();
        }
    }
    db.compact(2).unwrap();
    let mut l = db.bulk_load("next").unwrap();
    l.push(&rows(50, 20_000)).unwrap();
    l.push(&rows(51, 20_000)).unwrap();
    l.finish().unwrap();
    db.swap_tables("state", "next").unwrap();
    for k in 100..104 {
        db.append("state", &rows(k, 500)).unwrap();
        db.append("next", &rows(k + 1, 500)).unwrap();
    }
}

/// Every table read through the public API; `Err` when a read reports a problem.
fn read_all(db: &Database) -> Result<BTreeMap<String, Dump>, String> {
    let snap = db.snapshot();
    let keys = snap.keys();
    let mut out = BTreeMap::new();
    for name in snap.table_names() {
        let t = snap.table(&name).map_err(|e| e.to_string())?;
        let ncols = t.schema().columns.len();
        let mut d = Dump::new();
        let key = |o: u32| match keys.key(o) {
            Some(Key::Str(s)) => Ok(s.to_string()),
            Some(Key::Int(i)) => Ok(i.to_string()),
            None => Err(format!("ordinal {o} has no key")),
        };
        for p in t.partitions() {
            for o in t.rows(p).iter() {
                d.insert(key(o)?, vec![None; ncols]);
            }
            for c in 0..ncols {
                let data = t.column(p, ColumnId(c as u32)).map_err(|e| e.to_string())?;
                let cells: Vec<Cell> = match &data.values {
                    Values::Int(v) => v.iter().map(|x| Cell::Int(*x)).collect(),
                    Values::Float(v) => v.iter().map(|x| Cell::Float(*x)).collect(),
                    Values::Bool(v) => v.iter().map(|x| Cell::Bool(*x)).collect(),
                    Values::Str(v) => v.iter().map(|x| Cell::Str(x.clone())).collect(),
                };
                if cells.len() as u64 != data.presence.len() {
                    return Err("values and presence differ".into());
                }
                for (o, cell) in data.presence.iter().zip(cells) {
                    let row = d.get_mut(&key(o)?).ok_or("a value without a row")?;
                    row[c] = Some(cell);
                }
            }
        }
        out.insert(name, d);
    }
    Ok(out)
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

/// Every file of the database but the lock, relative to it.
fn files(dir: &Path, under: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir.join(under)).unwrap() {
        let e = e.unwrap();
        let rel = under.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            files(dir, &rel, out);
        } else if e.file_name() != "LOCK" {
            out.push(rel);
        }
    }
}

fn kind(rel: &Path) -> &'static str {
    let s = rel.to_string_lossy();
    if s.starts_with("CURRENT") {
        "current"
    } else if s.starts_with("keys") {
        "keys"
    } else if s.starts_with("manifest") {
        "manifest"
    } else if s.starts_with("seg") {
        "segment"
    } else if s.starts_with("wal") {
        "wal"
    } else {
        "other"
    }
}

#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    reported: usize,
    harmless: usize,
    refused_open: usize,
    lost_tail: usize,
}

#[test]
fn torn_and_corrupt_files_are_reported_and_never_served() {
    let base = tempfile::tempdir().unwrap();
    let pristine = base.path().join("pristine");
    build(&pristine);
    let want = read_all(&Database::open(&pristine, opts()).unwrap()).unwrap();
    Database::check_dir(&pristine).unwrap();
    let mut all = Vec::new();
    files(&pristine, Path::new(""), &mut all);
    all.sort();
    let mut tally: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rand = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n.max(1)
    };
    let cases_per_file: u64 = std::env::var("CORRUPTION_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    for rel in &all {
        let len = std::fs::metadata(pristine.join(rel)).unwrap().len();
        // Random cases, then one flipped bit in each of the first and last 16 bytes (headers,
        // footers, the CURRENT text).
        let edges: Vec<u64> = (0..len.min(16))
            .chain(len.saturating_sub(16).max(16)..len)
            .collect();
        for case in 0..cases_per_file + edges.len() as u64 {
            let edge = case.checked_sub(cases_per_file).map(|i| edges[i as usize]);
            let copy = base.path().join("copy");
            let _ = std::fs::remove_dir_all(&copy);
            copy_dir(&pristine, &copy);
            let target = copy.join(rel);
            let mut bytes = std::fs::read(&target).unwrap();
            let at = edge.unwrap_or_else(|| rand(len)) as usize;
            let what = if edge.is_none() && case % 3 == 0 {
                bytes.truncate(at);
                format!("{} cut at {at} of {len}", rel.display())
            } else {
                let bit = rand(8);
                bytes[at] ^= 1 << bit;
                format!("{} bit {bit} of byte {at} of {len} flipped", rel.display())
            };
            std::fs::write(&target, &bytes).unwrap();
            let t = tally.entry(kind(rel)).or_default();
            t.cases += 1;
            let (reported, torn) = match Database::check_dir(&copy) {
                Err(_) => (true, false),
                Ok(r) => (r.torn_tails > 0, r.torn_tails > 0),
            };
            t.reported += usize::from(reported);
            match Database::open(&copy, opts()) {
                Err(_) => {
                    assert!(reported, "{what}: open refused it, check did not report it");
                    t.refused_open += 1;
                }
                Ok(db) => match read_all(&db) {
                    // A read that reports the problem serves nothing wrong; check must agree.
                    Err(e) => assert!(reported, "{what}: a read failed ({e}), check passed"),
                    Ok(got) if got == want => {
                        if !reported {
                            eprintln!("harmless: {what}");
                        }
                        t.harmless += usize::from(!reported)
                    }
                    Ok(_) => {
                        // Only a log whose last records are cut or damaged may lose them: nothing
                        // after them proves they were acknowledged, so they read as a torn tail
                        // (what a power cut leaves), and check must have reported that. A damaged
                        // header (the first 16 bytes) is never a torn tail.
                        assert!(
                            matches!(kind(rel), "wal" | "keys") && torn && at >= 16,
                            "{what}: the database served different data (check reported: {reported})"
                        );
                        t.lost_tail += 1;
                    }
                },
            }
        }
    }
    eprintln!("{tally:#?}");
    for (k, t) in &tally {
        assert!(t.reported + t.harmless == t.cases, "{k}: {t:?}");
    }
}

/// Every single-bit flip of `CURRENT` is refused or names the same version: never an older kept
/// manifest (which would open the database at an earlier commit without a word).
#[test]
fn every_bit_flip_of_current_is_refused_or_harmless() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("db");
    build(&dir);
    let want = read_all(&Database::open(&dir, opts()).unwrap()).unwrap();
    let path = dir.join("CURRENT");
    let text = std::fs::read(&path).unwrap();
    let (mut refused, mut same) = (0, 0);
    for at in 0..text.len() {
        for bit in 0..8 {
            let mut b = text.clone();
            b[at] ^= 1 << bit;
            std::fs::write(&path, &b).unwrap();
            match Database::open(&dir, opts()) {
                Err(_) => {
                    assert!(
                        Database::check_dir(&dir).is_err(),
                        "check passed what open refused"
                    );
                    refused += 1;
                }
                Ok(db) => {
                    assert!(
                        read_all(&db).as_ref() == Ok(&want),
                        "CURRENT {:?} opened a different version",
                        String::from_utf8_lossy(&b)
                    );
                    same += 1;
                }
            }
        }
    }
    std::fs::write(&path, &text).unwrap();
    eprintln!("CURRENT: {refused} flips refused, {same} harmless");
    assert!(refused > 0);
}
