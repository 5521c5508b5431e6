//! A database on a full disk: a small tmpfs mounted by the test (tests run as root; the test fails,
//! never skips, when it cannot mount). Appends, flushes, compactions, bulk loads and catalog commits
//! (swaps, creates) meet ENOSPC; each must fail with `StorageError::DiskFull`, store nothing of
//! itself, leave every acknowledged row readable, and succeed again once space is freed, on the same
//! open handle. The oracle is a second database on the ordinary disk that receives exactly the
//! operations that succeeded on the full one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::RecordBatch;
use common::{batch, dump, Col};
use journeydb_storage::{
    ColumnDef, ColumnType, Database, KeyType, MergeRule, StorageError, TableSchema,
};

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a {mib} MiB tmpfs and needs root (or CAP_SYS_ADMIN): mount said {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

use common::opts;

fn schema() -> TableSchema {
    TableSchema::new(
        "customer_id",
        vec![
            ColumnDef::new("n", ColumnType::Bigint).with_rule(MergeRule::Sum),
            ColumnDef::new("pad", ColumnType::Varchar).with_rule(MergeRule::Last),
        ],
    )
}

/// Batch `i`: 300 rows, keys spread over a growing range (new keys and repeats), a 300-byte pad
/// that does not compress to nothing.
fn rows(i: u64) -> RecordBatch {
    let n = 300;
    let keys: Vec<String> = (0..n)
        .map(|j| format!("c{:07}", (i * 211 + j * 7) % (2000 + i * 40)))
        .collect();
    let pad = |j: u64| {
        let mut s = String::with_capacity(300);
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ j;
        while s.len() < 300 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push_str(&format!("{:016x}", x >> 1));
        }
        Some(s)
    };
    batch(
        "customer_id",
        &keys,
        vec![
            (
                "n",
                Col::Int((0..n).map(|j| Some((j % 5) as i64 + 1)).collect()),
            ),
            ("pad", Col::Str((0..n).map(pad).collect())),
        ],
    )
}

/// Writes `path` until the file system refuses (ENOSPC), leaving it full to the byte.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0x5au8; 64 * 1024];
    let mut len = block.len();
    loop {
        match f.write(&block[..len]) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                if len == 1 {
                    break;
                }
                len = (len / 2).max(1);
            }
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

/// Both databases hold the same tables with the same rows.
fn assert_same(full: &Database, reference: &Database, when: &str) {
    let (a, b) = (full.snapshot(), reference.snapshot());
    let mut names = a.table_names();
    names.sort();
    let mut rnames = b.table_names();
    rnames.sort();
    assert_eq!(names, rnames, "{when}: table names");
    for t in &names {
        assert!(
            dump(&a, t) == dump(&b, t),
            "{when}: table {t} differs from the reference"
        );
    }
}

/// Runs `op` on the full database; on success runs it on the reference too. Returns whether it
/// succeeded; a failure must be DiskFull.
fn both<T>(
    full: &Database,
    reference: &Database,
    what: &str,
    op: impl Fn(&Database) -> Result<T, StorageError>,
) -> bool {
    match op(full) {
        Ok(_) => {
            op(reference).unwrap_or_else(|e| panic!("{what} on the reference: {e}"));
            true
        }
        Err(e) => {
            assert!(
                e.is_disk_full(),
                "{what} failed with {e}, not a disk-full error"
            );
            assert!(e.to_string().starts_with("disk full"), "{e}");
            false
        }
    }
}

fn load(db: &Database, table: &str, first: u64) -> Result<(), StorageError> {
    let mut l = db.bulk_load(table)?;
    for i in first..first + 20 {
        l.push(&rows(i))?;
    }
    l.finish().map(|_| ())
}

#[test]
fn a_full_disk_refuses_writes_cleanly_and_they_succeed_once_space_is_freed() {
    let fs = Tmpfs::mount(64);
    let refdir = tempfile::tempdir().unwrap();
    let path: PathBuf = fs.path().join("db");
    let full = Database::create(&path, KeyType::Varchar, opts()).unwrap();
    let reference = Database::create(refdir.path(), KeyType::Varchar, opts()).unwrap();
    for db in [&full, &reference] {
        db.create_table("c", schema()).unwrap();
        db.create_table("c_next", schema()).unwrap();
    }
    // Leave about 6 MiB free, so the appends below reach the end quickly.
    let ballast = fs.path().join("ballast");
    {
        let mut f = std::fs::File::create(&ballast).unwrap();
        f.write_all(&vec![1u8; 58 << 20]).unwrap();
    }

    // Appends (WAL) and flushes (segments) until the disk refuses both.
    let mut i = 0u64;
    let mut refused = (0, 0);
    while refused.0 < 3 || refused.1 < 2 {
        assert!(i < 5000, "the disk never filled");
        if !both(&full, &reference, "append", |db| db.append("c", &rows(i))) {
            refused.0 += 1;
        }
        if i % 7 == 6 && !both(&full, &reference, "flush", |db| db.flush()) {
            refused.1 += 1;
        }
        i += 1;
        assert_same(&full, &reference, "while filling");
    }
    eprintln!(
        "disk filled after {i} batches; refused {refused:?}; database {} bytes",
        du(&path)
    );
    // Fill what is left to the byte: every kind of write must now be refused, reads must go on.
    let filler = fs.path().join("filler");
    fill(&filler);
    assert!(!both(&full, &reference, "append", |db| db.append("c", &rows(i))));
    assert!(!both(&full, &reference, "flush", |db| db.flush()));
    assert!(!both(&full, &reference, "bulk load", |db| load(
        db, "c_next", 9000
    )));
    assert!(!both(&full, &reference, "swap", |db| db
        .swap_tables("c", "c_next")));
    assert!(!both(&full, &reference, "create", |db| db
        .create_table("d", schema())));
    both(&full, &reference, "compaction", |db| db.compact(2));
    assert_same(&full, &reference, "on a full disk");

    // Space comes back: the same handle writes again, no reopen.
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&ballast).unwrap();
    for j in 0..5 {
        assert!(both(&full, &reference, "append", |db| db
            .append("c", &rows(i + j))));
    }
    assert!(both(&full, &reference, "flush", |db| db.flush()));
    assert!(both(&full, &reference, "compaction", |db| db.compact(2)));
    assert!(both(&full, &reference, "bulk load", |db| load(
        db, "c_next", 9000
    )));
    assert!(both(&full, &reference, "swap", |db| db
        .swap_tables("c", "c_next")));
    assert!(both(&full, &reference, "create", |db| db
        .create_table("d", schema())));
    assert_same(&full, &reference, "after space was freed");
    full.check().unwrap();

    // What is durable is what was acknowledged: reopen and compare, and `check` finds nothing.
    drop(full);
    Database::check_dir(&path).unwrap();
    let full = Database::open(&path, opts()).unwrap();
    assert_same(&full, &reference, "after reopening");
    // Nothing the failed writes started is left behind: the database's files are those of the
    // reference plus at most a few kilobytes (file sizes differ only by WAL record boundaries).
    let used = du(&path);
    let want = du(refdir.path());
    assert!(
        used <= want + want / 4 + (64 << 10),
        "the full disk's database holds {used} bytes against the reference's {want}"
    );
}

/// Bytes of the files under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    total
}
