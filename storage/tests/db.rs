//! The database API end to end: appends, reads, flush, compaction, catalog commits, reopen, and every
//! kind of bad input getting a typed error with nothing stored changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use common::{batch, dump, Cell, Col};
use journeydb_storage::{
    CatalogOp, ColumnDef, ColumnType, Database, KeyType, MergeRule, Options, StorageError,
    TableSchema,
};

use common::opts;

fn state_schema() -> TableSchema {
    TableSchema::new(
        "customer_id",
        vec![
            ColumnDef::new("stage1", ColumnType::Timestamp),
            ColumnDef::new("hits", ColumnType::Bigint).with_rule(MergeRule::Sum),
            ColumnDef::new("channel", ColumnType::Varchar).with_rule(MergeRule::Last),
        ],
    )
}

/// Creates table `c` with the state schema.
fn create_c(db: &Database) {
    db.commit(&[CatalogOp::Create {
        name: "c".into(),
        schema: state_schema(),
        if_not_exists: false,
    }])
    .unwrap();
}

fn keys(r: std::ops::Range<usize>) -> Vec<String> {
    r.map(|i| format!("c{i:06}")).collect()
}

#[test]
fn append_flush_compact_reopen_keeps_the_fold() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
    db.create_table("state", state_schema()).unwrap();
    // 100k customers over two partitions, appended in three overlapping batches.
    let n = 100_000;
    let b1 = batch(
        "customer_id",
        &keys(0..n),
        vec![
            (
                "stage1",
                Col::Ts(
                    (0..n)
                        .map(|i| (!i.is_multiple_of(3)).then_some(1000 + i as i64))
                        .collect(),
                ),
            ),
            ("hits", Col::Int(vec![Some(1); n])),
        ],
    );
    db.append("state", &b1).unwrap();
    db.flush().unwrap();
    let b2 = batch(
        "customer_id",
        &keys(n / 2..n + 10),
        vec![
            (
                "stage1",
                Col::Ts((n / 2..n + 10).map(|i| Some(500 + i as i64)).collect()),
            ),
            ("hits", Col::Int(vec![Some(2); n / 2 + 10])),
            (
                "channel",
                Col::Str(
                    (n / 2..n + 10)
                        .map(|i| Some(format!("email{}", i % 7)))
                        .collect(),
                ),
            ),
        ],
    );
    db.append("state", &b2).unwrap();
    db.flush().unwrap();
    let b3 = batch(
        "customer_id",
        &keys(0..5),
        vec![("channel", Col::Str(vec![Some("sms".into()); 5]))],
    );
    db.append("state", &b3).unwrap();

    let expect = |i: usize| -> Vec<Option<Cell>> {
        let first = (i < n && !i.is_multiple_of(3)).then_some(1000 + i as i64);
        let second = (i >= n / 2).then_some(500 + i as i64);
        let stage1 = match (first, second) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let hits = (if i < n { 1 } else { 0 }) + if i >= n / 2 { 2 } else { 0 };
        let channel = if i < 5 {
            Some("sms".to_string())
        } else if i >= n / 2 {
            Some(format!("email{}", i % 7))
        } else {
            None
        };
        vec![
            stage1.map(Cell::Int),
            Some(Cell::Int(hits)),
            channel.map(Cell::Str),
        ]
    };
    let check = |db: &Database| {
        let d = dump(&db.snapshot(), "state");
        assert_eq!(d.len(), n + 10);
        for (i, k) in keys(0..n + 10).iter().enumerate() {
            assert_eq!(d[k], expect(i), "row {k}");
        }
    };
    check(&db);
    let before = db.snapshot();
    let stats = db.compact(2).unwrap();
    assert_eq!(
        stats.segments_in, 4,
        "two partitions with two segments each"
    );
    assert_eq!(
        dump(&before, "state"),
        dump(&db.snapshot(), "state"),
        "an old snapshot reads the same after compaction"
    );
    check(&db);
    drop(before);
    drop(db);
    let db = Database::open(dir.path(), opts()).unwrap();
    check(&db);
    db.flush().unwrap();
    db.compact(2).unwrap();
    check(&db);
    let t = db.snapshot().table("state").unwrap();
    assert_eq!(
        t.storage().len(),
        2,
        "one segment per partition after compaction"
    );
}

#[test]
fn catalog_commits_swap_replace_and_time_travel() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
    db.create_table("a", state_schema()).unwrap();
    db.create_table("b", state_schema()).unwrap();
    db.append(
        "a",
        &batch(
            "customer_id",
            &keys(0..3),
            vec![("hits", Col::Int(vec![Some(1); 3]))],
        ),
    )
    .unwrap();
    db.append(
        "b",
        &batch(
            "customer_id",
            &keys(0..1),
            vec![("hits", Col::Int(vec![Some(9)]))],
        ),
    )
    .unwrap();
    db.flush().unwrap();
    let v_before = db.snapshot().version();
    let old = db.snapshot();
    db.swap_tables("a", "b").unwrap();
    assert_eq!(dump(&db.snapshot(), "a").len(), 1);
    assert_eq!(dump(&db.snapshot(), "b").len(), 3);
    assert_eq!(dump(&old, "a").len(), 3, "a snapshot keeps its version");
    // Several operations in one atomic commit; a failing one applies none.
    let err = db.commit(&[
        CatalogOp::Drop {
            name: "a".into(),
            if_exists: false,
        },
        CatalogOp::Drop {
            name: "zz".into(),
            if_exists: false,
        },
    ]);
    assert!(matches!(err, Err(StorageError::TableNotFound(n)) if n == "zz"));
    assert!(db.snapshot().table("a").is_ok());
    db.commit(&[CatalogOp::Create {
        name: "tmp".into(),
        schema: state_schema(),
        if_not_exists: false,
    }])
    .unwrap();
    db.append("tmp", &batch("customer_id", &keys(7..9), vec![]))
        .unwrap();
    db.commit(&[CatalogOp::Replace {
        target: "a".into(),
        source: "tmp".into(),
    }])
    .unwrap();
    assert!(db.snapshot().table("tmp").is_err());
    assert_eq!(
        dump(&db.snapshot(), "a")
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        keys(7..9)
    );
    // Time travel to the version before the swap.
    let past = db.snapshot_at(v_before).unwrap();
    assert_eq!(dump(&past, "a").len(), 3);
    drop(db);
    let db = Database::open(dir.path(), opts()).unwrap();
    assert_eq!(
        dump(&db.snapshot(), "a")
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        keys(7..9)
    );
    assert_eq!(
        db.snapshot().table_names(),
        vec!["a".to_string(), "b".to_string()]
    );
}

#[test]
fn old_versions_and_their_files_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        keep_versions: 2,
        ..opts()
    };
    let db = Database::create(dir.path(), KeyType::Varchar, o.clone()).unwrap();
    db.create_table("t", state_schema()).unwrap();
    for round in 0..5 {
        db.append(
            "t",
            &batch(
                "customer_id",
                &keys(0..10),
                vec![("hits", Col::Int(vec![Some(round); 10]))],
            ),
        )
        .unwrap();
        db.flush().unwrap();
    }
    db.compact(2).unwrap();
    db.create_table("u", state_schema()).unwrap();
    db.create_table("v", state_schema()).unwrap();
    let segs = std::fs::read_dir(dir.path().join("seg")).unwrap().count();
    assert_eq!(segs, 1, "only the compacted segment is left");
    let manifests = std::fs::read_dir(dir.path().join("manifest"))
        .unwrap()
        .count();
    assert_eq!(manifests, 2);
    assert_eq!(db.kept_versions().len(), 2);
    let wal = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    assert_eq!(wal, 1, "flushed WAL files are deleted");
    assert_eq!(dump(&db.snapshot(), "t")["c000000"][1], Some(Cell::Int(10)));
}

#[test]
fn bad_input_gets_typed_errors_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
    db.create_table("t", state_schema()).unwrap();
    db.append(
        "t",
        &batch(
            "customer_id",
            &keys(0..2),
            vec![("hits", Col::Int(vec![Some(1), Some(2)]))],
        ),
    )
    .unwrap();
    let before = dump(&db.snapshot(), "t");

    let e = db.append("nope", &batch("customer_id", &keys(0..1), vec![]));
    assert!(matches!(e, Err(StorageError::TableNotFound(_))), "{e:?}");
    let e = db.append(
        "t",
        &batch(
            "customer_id",
            &keys(0..1),
            vec![("zzz", Col::Int(vec![Some(1)]))],
        ),
    );
    assert!(
        matches!(e, Err(StorageError::ColumnNotFound { .. })),
        "{e:?}"
    );
    let e = db.append(
        "t",
        &batch(
            "customer_id",
            &keys(0..1),
            vec![("stage1", Col::Int(vec![Some(1)]))],
        ),
    );
    assert!(
        matches!(e, Err(StorageError::InvalidBatch { .. })),
        "wrong Arrow type: {e:?}"
    );
    let e = db.append(
        "t",
        &batch(
            "customer_id",
            &keys(0..1),
            vec![
                ("hits", Col::Int(vec![Some(1)])),
                ("HITS", Col::Int(vec![Some(1)])),
            ],
        ),
    );
    assert!(
        matches!(e, Err(StorageError::InvalidBatch { .. })),
        "duplicate column: {e:?}"
    );
    let e = db.append("t", &batch("other_key", &keys(0..1), vec![]));
    assert!(
        matches!(e, Err(StorageError::InvalidBatch { .. })),
        "missing key column: {e:?}"
    );
    let e = db.append(
        "t",
        &batch("customer_id", &["ok".to_string(), String::new()], vec![]),
    );
    assert!(
        matches!(e, Err(StorageError::InvalidKey(_))),
        "empty key: {e:?}"
    );
    let null_key = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "customer_id",
            DataType::Utf8,
            true,
        )])),
        vec![Arc::new(StringArray::from(vec![Some("x"), None])) as ArrayRef],
    )
    .unwrap();
    assert!(matches!(
        db.append("t", &null_key),
        Err(StorageError::InvalidKey(_))
    ));
    let int_key = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "customer_id",
            DataType::Int64,
            false,
        )])),
        vec![Arc::new(Int64Array::from(vec![1])) as ArrayRef],
    )
    .unwrap();
    assert!(matches!(
        db.append("t", &int_key),
        Err(StorageError::InvalidBatch { .. })
    ));

    for bad in ["a/b", "..", "../../etc", "x.y", "", "1x"] {
        let e = db.create_table(bad, state_schema());
        assert!(
            matches!(e, Err(StorageError::InvalidName { .. })),
            "{bad:?}: {e:?}"
        );
        let e = db.commit(&[CatalogOp::Rename {
            from: "t".into(),
            to: bad.into(),
        }]);
        assert!(
            matches!(e, Err(StorageError::InvalidName { .. })),
            "rename to {bad:?}: {e:?}"
        );
    }
    let dup = TableSchema::new(
        "id",
        vec![
            ColumnDef::new("a", ColumnType::Bigint),
            ColumnDef::new("a", ColumnType::Bigint),
        ],
    );
    assert!(matches!(
        db.create_table("d", dup),
        Err(StorageError::InvalidSchema(_))
    ));
    assert!(matches!(
        db.create_table("t", state_schema()),
        Err(StorageError::TableExists(_))
    ));
    assert!(matches!(
        db.drop_table("nope"),
        Err(StorageError::TableNotFound(_))
    ));
    assert!(matches!(
        db.swap_tables("t", "nope"),
        Err(StorageError::TableNotFound(_))
    ));

    // A second open of the same database, in this process or another, is refused.
    assert!(matches!(
        Database::open(dir.path(), opts()),
        Err(StorageError::Locked(_))
    ));
    assert!(matches!(
        Database::create(dir.path(), KeyType::Varchar, opts()),
        Err(StorageError::AlreadyExists(_))
    ));
    assert!(matches!(
        Database::open(dir.path().join("nothing"), opts()),
        Err(StorageError::NotADatabase(_))
    ));
    assert!(matches!(
        Database::create(
            dir.path().join("n"),
            KeyType::Varchar,
            Options {
                partition_rows: 1000,
                ..opts()
            }
        ),
        Err(StorageError::InvalidOption(_))
    ));

    assert_eq!(
        dump(&db.snapshot(), "t"),
        before,
        "no failed call changed the table"
    );
    assert_eq!(db.snapshot().table_names(), vec!["t".to_string()]);
    drop(db);
    let db = Database::open(dir.path(), opts()).unwrap();
    assert_eq!(dump(&db.snapshot(), "t"), before);
}

#[test]
fn bigint_keys_and_concurrent_appenders_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path(), KeyType::Bigint, opts()).unwrap());
    let schema = TableSchema::new(
        "id",
        vec![ColumnDef::new("n", ColumnType::Bigint).with_rule(MergeRule::Sum)],
    );
    db.create_table("t", schema).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..50i64 {
                    let b = RecordBatch::try_new(
                        Arc::new(Schema::new(vec![
                            Field::new("id", DataType::Int64, false),
                            Field::new("n", DataType::Int64, true),
                        ])),
                        vec![
                            Arc::new(Int64Array::from(vec![i, -1 - t])) as ArrayRef,
                            Arc::new(Int64Array::from(vec![1, 1])) as ArrayRef,
                        ],
                    )
                    .unwrap();
                    db.append("t", &b).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let check = |db: &Database| {
        let d = dump(&db.snapshot(), "t");
        assert_eq!(d.len(), 58);
        assert_eq!(d["0"][0], Some(Cell::Int(8)));
        assert_eq!(d["-3"][0], Some(Cell::Int(50)));
    };
    check(&db);
    drop(Arc::try_unwrap(db).unwrap());
    let db = Database::open(dir.path(), opts()).unwrap();
    check(&db);
}

#[test]
fn background_maintenance_flushes_and_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        background: true,
        flush_rows: 100,
        compact_segments: 3,
        ..opts()
    };
    let db = Database::create(dir.path(), KeyType::Varchar, o).unwrap();
    db.create_table("t", state_schema()).unwrap();
    for round in 0..12 {
        db.append(
            "t",
            &batch(
                "customer_id",
                &keys(0..150),
                vec![("hits", Col::Int(vec![Some(round); 150]))],
            ),
        )
        .unwrap();
    }
    // Wait (bounded) for the maintenance thread to catch up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while db.unflushed_rows() > 0 || db.snapshot().table("t").unwrap().storage().len() > 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "background flush/compaction did not run"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(db.background_error(), None);
    assert_eq!(
        dump(&db.snapshot(), "t")["c000007"][1],
        Some(Cell::Int((0..12).sum()))
    );
}

/// Reads every column of every table; the first error, if any.
fn read_everything(db: &Database) -> Result<usize, StorageError> {
    let snap = db.snapshot();
    let mut n = 0;
    for name in snap.table_names() {
        let t = snap.table(&name)?;
        for p in t.partitions() {
            for c in 0..t.schema().columns.len() {
                n += t
                    .column(p, journeydb_storage::ColumnId(c as u32))?
                    .presence
                    .len() as usize;
            }
        }
    }
    Ok(n)
}

#[test]
fn a_flipped_byte_in_a_segment_is_an_error_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
    db.create_table("t", state_schema()).unwrap();
    let n = 5000;
    db.append(
        "t",
        &batch(
            "customer_id",
            &keys(0..n),
            vec![
                (
                    "stage1",
                    Col::Ts((0..n).map(|i| Some(i as i64 * 7)).collect()),
                ),
                (
                    "channel",
                    Col::Str((0..n).map(|i| Some(format!("ch{i}"))).collect()),
                ),
            ],
        ),
    )
    .unwrap();
    db.flush().unwrap();
    drop(db);
    let seg = std::fs::read_dir(dir.path().join("seg"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let good = std::fs::read(&seg).unwrap();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let at = (rng % good.len() as u64) as usize;
        let mut bad = good.clone();
        bad[at] ^= 1 << (rng % 8);
        std::fs::write(&seg, &bad).unwrap();
        match Database::open(dir.path(), opts()) {
            Err(e) => assert!(
                matches!(
                    e,
                    StorageError::ChecksumMismatch { .. }
                        | StorageError::Corrupt { .. }
                        | StorageError::UnsupportedVersion { .. }
                ),
                "byte {at}: {e:?}"
            ),
            Ok(db) => {
                let r = read_everything(&db);
                assert!(
                    matches!(
                        r,
                        Err(StorageError::ChecksumMismatch { .. } | StorageError::Corrupt { .. })
                    ),
                    "byte {at} flipped, read gave {r:?}"
                );
            }
        }
    }
    std::fs::write(&seg, &good).unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    assert_eq!(read_everything(&db).unwrap(), 2 * n);
}

#[test]
fn corruption_in_the_middle_of_the_wal_is_reported() {
    let (dir, wal) = three_appends();
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[40] ^= 0xff; // inside the first record's payload
    std::fs::write(&wal, &bytes).unwrap();
    let e = Database::open(dir.path(), opts());
    assert!(matches!(e, Err(StorageError::Corrupt { .. })), "{e:?}");
    // A torn tail, by contrast, is the unacknowledged last write and is dropped.
    bytes[40] ^= 0xff;
    let cut = bytes.len() - 5;
    std::fs::write(&wal, &bytes[..cut]).unwrap();
    let db = Database::open(dir.path(), opts()).unwrap();
    assert_eq!(dump(&db.snapshot(), "t").len(), 20);
}

#[test]
fn a_corrupt_manifest_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
    db.create_table("t", state_schema()).unwrap();
    let v = db.snapshot().version();
    drop(db);
    let p = dir
        .path()
        .join("manifest")
        .join(format!("{:020}.manifest", v.0));
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&p, &bytes).unwrap();
    let e = Database::open(dir.path(), opts());
    assert!(
        matches!(e, Err(StorageError::ChecksumMismatch { .. })),
        "{e:?}"
    );
}

/// Power loss finding 1 (issue 18): a segment that uses ordinals the dictionary lost (its last
/// record cut, as a power cut before the dictionary's fsync would) must not open; on the old code
/// it opened, and the next new key took the orphaned ordinal and inherited its rows.
#[test]
fn a_dictionary_that_lost_keys_used_by_segments_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
        create_c(&db);
        db.append(
            "c",
            &batch(
                "customer_id",
                &keys(0..3),
                vec![("hits", Col::Int(vec![Some(1); 3]))],
            ),
        )
        .unwrap();
        db.append(
            "c",
            &batch(
                "customer_id",
                &keys(3..4),
                vec![("hits", Col::Int(vec![Some(7)]))],
            ),
        )
        .unwrap();
        db.flush().unwrap();
    }
    // Cut the dictionary's last record (key c000003, ordinal 3).
    let path = dir.path().join("keys.dict");
    let bytes = std::fs::read(&path).unwrap();
    let h = journeydb_storage::log::read_header(
        &path,
        &bytes,
        journeydb_storage::format::KEYDICT_MAGIC,
        journeydb_storage::format::KEYDICT_VERSION,
    )
    .unwrap();
    let records = journeydb_storage::log::read_records(&path, &bytes, h).unwrap();
    let (last_record, _) = *records.payloads.last().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(last_record).unwrap();
    drop(f);
    match Database::open(dir.path(), opts()) {
        Err(StorageError::Corrupt { reason, .. }) => {
            assert!(reason.contains("lost keys"), "{reason}")
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened a database whose dictionary lost keys that segments use"),
    }
}

/// Issue 18: `journeydb check` must be read-only. It used to open the database, which takes the
/// lock, truncates torn log tails, creates a new WAL file and removes orphans.
#[test]
fn check_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
        create_c(&db);
        db.append(
            "c",
            &batch(
                "customer_id",
                &keys(0..50),
                vec![("hits", Col::Int(vec![Some(1); 50]))],
            ),
        )
        .unwrap();
        db.flush().unwrap();
        db.append(
            "c",
            &batch(
                "customer_id",
                &keys(40..60),
                vec![("hits", Col::Int(vec![Some(2); 20]))],
            ),
        )
        .unwrap();
    }
    // A torn write at the end of the newest WAL file: never acknowledged.
    let wal = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(&[0xff, 0x00, 0x00, 0x10, 0xab, 0xcd]);
    std::fs::write(&wal, &bytes).unwrap();
    let state = |d: &std::path::Path| {
        let mut out = Vec::new();
        let mut stack = vec![d.to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                let md = e.metadata().unwrap();
                if md.is_dir() {
                    stack.push(e.path());
                } else {
                    out.push((
                        e.path(),
                        std::fs::read(e.path()).unwrap(),
                        md.modified().unwrap(),
                    ));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    let before = state(dir.path());
    let report = Database::check_dir(dir.path()).unwrap();
    assert_eq!(report.tables, 1);
    assert_eq!(report.keys, 60);
    assert_eq!(report.torn_tails, 1);
    assert!(report.wal_records >= 1);
    assert_eq!(state(dir.path()), before, "check changed the database");
    // And the database still opens to every acknowledged row.
    let db = Database::open(dir.path(), opts()).unwrap();
    assert_eq!(db.snapshot().table("c").unwrap().row_count(), 60);
}

/// Issue 18, finding 5: a database is built beside its path and renamed into place, so a crash
/// inside `create` cannot leave a directory that neither `create` nor `open` accepts; leftovers
/// of such a crash, and stale `.tmp` manifests of an interrupted commit, are cleaned up.
#[test]
fn create_is_atomic_and_leftovers_are_cleaned() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("db");
    // What a create that crashed half-way leaves now: a sibling, never `db` itself.
    let stray = parent.path().join(".db.creating-4242");
    std::fs::create_dir_all(stray.join("manifest")).unwrap();
    std::fs::write(stray.join("keys.dict"), b"partial").unwrap();
    {
        let db = Database::create(&dir, KeyType::Varchar, opts()).unwrap();
        create_c(&db);
    }
    assert!(
        !stray.exists(),
        "the leftover of a crashed create was not removed"
    );
    let names: Vec<String> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["db".to_string()]);
    // An interrupted commit's temporary files are removed on open and change nothing.
    std::fs::write(
        dir.join("manifest")
            .join("00000000000000000099.manifest.tmp"),
        b"half",
    )
    .unwrap();
    std::fs::write(dir.join("CURRENT.tmp"), b"99").unwrap();
    let db = Database::open(&dir, opts()).unwrap();
    assert!(db.snapshot().table("c").is_ok());
    assert!(!dir.join("CURRENT.tmp").exists());
    assert!(!dir
        .join("manifest")
        .join("00000000000000000099.manifest.tmp")
        .exists());
    drop(db);
    // A directory with files but no CURRENT is refused by create with a clear error, never
    // overwritten.
    let other = parent.path().join("notadb");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("precious.txt"), b"data").unwrap();
    match Database::create(&other, KeyType::Varchar, opts()) {
        Err(StorageError::InvalidOption(m)) => {
            assert!(m.contains("not a journeydb database"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(other.join("precious.txt")).unwrap(), b"data");
}

/// Issue 18, finding 4: a commit that fails while being made durable poisons the database:
/// nothing more is committed (the failure may have come after CURRENT was renamed, so the disk
/// may already hold that version) until a reopen recovers from what is durable. A failure before
/// the rename of CURRENT (issue 15: a full disk while writing the manifest) changed nothing and
/// leaves the database writable.
#[test]
fn a_failed_commit_refuses_further_writes_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
    create_c(&db);
    let create = |name: &str| CatalogOp::Create {
        name: name.into(),
        schema: state_schema(),
        if_not_exists: false,
    };
    // The manifest cannot be written: the manifest directory becomes a file. Nothing happened.
    let mdir = dir.path().join("manifest");
    let aside = dir.path().join("manifest.aside");
    std::fs::rename(&mdir, &aside).unwrap();
    std::fs::write(&mdir, b"not a directory").unwrap();
    assert!(matches!(
        db.commit(&[create("d")]),
        Err(StorageError::Io { .. })
    ));
    std::fs::remove_file(&mdir).unwrap();
    std::fs::rename(&aside, &mdir).unwrap();
    assert!(db.snapshot().table("d").is_err());
    db.commit(&[create("d")]).unwrap();
    // The rename of CURRENT fails (CURRENT became a non-empty directory): the outcome is unknown,
    // and even with CURRENT back this process refuses to commit or append.
    let current = dir.path().join("CURRENT");
    let text = std::fs::read(&current).unwrap();
    std::fs::remove_file(&current).unwrap();
    std::fs::create_dir(&current).unwrap();
    std::fs::write(current.join("x"), b"x").unwrap();
    assert!(db.commit(&[create("e")]).is_err());
    std::fs::remove_dir_all(&current).unwrap();
    std::fs::write(&current, &text).unwrap();
    assert!(matches!(
        db.commit(&[create("e")]),
        Err(StorageError::WalPoisoned(_))
    ));
    drop(db);
    let db = Database::open(dir.path(), opts()).unwrap();
    assert!(db.snapshot().table("c").is_ok());
    assert!(db.snapshot().table("d").is_ok());
    db.commit(&[create("e")]).unwrap();
}

/// Three acknowledged appends to table `t` in a fresh database; returns the database directory and
/// the path of the WAL file holding them.
fn three_appends() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
    db.create_table("t", state_schema()).unwrap();
    for i in 0..3 {
        db.append(
            "t",
            &batch(
                "customer_id",
                &keys(i * 10..i * 10 + 10),
                vec![("hits", Col::Int(vec![Some(1); 10]))],
            ),
        )
        .unwrap();
    }
    drop(db);
    let wal = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    (dir, wal)
}

/// Power loss finding 2 (issue 18): the record length was not covered by the checksum, and the torn
/// tail rule trusted it. One flipped bit in the first record's length made `check` report an empty
/// table and `open` cut the WAL to its header, durably. Now the checksum covers the length, and the
/// later records (written after an fsync covered the first) prove the damage is in durable data.
#[test]
fn a_flipped_length_bit_is_corruption_not_an_empty_log() {
    let (dir, wal) = three_appends();
    let mut bytes = std::fs::read(&wal).unwrap();
    // The most significant byte of the first record's length (after the 16-byte header: in version
    // 2 a salt comes first, in version 1 the length): the length now reaches past the end of the
    // file, which version 1 took for a torn tail, dropping every record.
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    let len_at = 16 + if version >= 2 { 4 } else { 0 };
    bytes[len_at + 3] ^= 0x40;
    std::fs::write(&wal, &bytes).unwrap();
    let checked = Database::check_dir(dir.path());
    assert!(
        matches!(checked, Err(StorageError::Corrupt { .. })),
        "{checked:?}"
    );
    let e = Database::open(dir.path(), opts());
    assert!(matches!(e, Err(StorageError::Corrupt { .. })), "{e:?}");
    assert_eq!(
        std::fs::read(&wal).unwrap(),
        bytes,
        "a failed open changes nothing"
    );
}

/// Power loss finding 3 (issue 18): between group fsyncs several records are in flight, and a power
/// cut may keep a later one while tearing an earlier one. That shape used to brick the database
/// ("bad record checksum before the end of the log" on every open) although nothing after the
/// damage was acknowledged. Now each record says how far the log was durable when it was written:
/// the intact later record says the damaged one was not yet durable, so it is a torn tail.
#[test]
fn a_torn_record_followed_by_an_unacknowledged_intact_one_is_a_torn_tail() {
    let (dir, wal) = three_appends();
    let bytes = std::fs::read(&wal).unwrap();
    let h = journeydb_storage::log::read_header(
        &wal,
        &bytes,
        journeydb_storage::format::WAL_MAGIC,
        journeydb_storage::format::WAL_VERSION,
    )
    .unwrap();
    let records = journeydb_storage::log::read_records(&wal, &bytes, h).unwrap();
    let (second, _) = records.payloads[1];
    let third_payload = records.payloads[2].1.to_vec();
    // Rebuild records 2 and 3 as if written in one group before any fsync covered record 2 (their
    // synced end is record 2's start), then tear record 2.
    let mut shaped = bytes[..second as usize].to_vec();
    let second_payload = records.payloads[1].1.to_vec();
    let mut torn = journeydb_storage::log::frame(h.salt, second, &second_payload);
    let last = torn.len() - 1;
    torn[last] ^= 0xff;
    shaped.extend(&torn);
    shaped.extend(journeydb_storage::log::frame(
        h.salt,
        second,
        &third_payload,
    ));
    std::fs::write(&wal, &shaped).unwrap();
    let report = Database::check_dir(dir.path()).unwrap();
    assert_eq!((report.wal_records, report.torn_tails), (1, 1));
    let db = Database::open(dir.path(), opts()).unwrap();
    assert_eq!(
        dump(&db.snapshot(), "t").len(),
        10,
        "only the first, acknowledged append"
    );
    // And if the third record says the log was durable past the second, that is corruption.
    drop(db);
    let (dir, wal) = three_appends();
    let bytes = std::fs::read(&wal).unwrap();
    let mut damaged = bytes.clone();
    let h2 = journeydb_storage::log::read_header(
        &wal,
        &bytes,
        journeydb_storage::format::WAL_MAGIC,
        journeydb_storage::format::WAL_VERSION,
    )
    .unwrap();
    let second = journeydb_storage::log::read_records(&wal, &bytes, h2)
        .unwrap()
        .payloads[1]
        .0;
    damaged[second as usize + journeydb_storage::format::RECORD_HEADER_LEN] ^= 0xff;
    std::fs::write(&wal, &damaged).unwrap();
    let e = Database::open(dir.path(), opts());
    assert!(matches!(e, Err(StorageError::Corrupt { .. })), "{e:?}");
}

/// ALTER TABLE .. ADD COLUMN (issue 12 needs it for event pivots): rows written before the column
/// existed read it as NULL, in segments, in memory and after WAL replay; new appends fill it with its
/// merge rule; flush, compaction and reopen keep everything; bad columns are refused.
#[test]
fn an_added_column_reads_null_for_older_rows_and_merges_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let add = |db: &Database, name: &str, ty, rule| {
        db.commit(&[CatalogOp::AddColumn {
            table: "c".into(),
            column: ColumnDef::new(name, ty).with_rule(rule),
        }])
    };
    {
        let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
        create_c(&db);
        db.append(
            "c",
            &batch(
                "customer_id",
                &keys(0..4),
                vec![("hits", Col::Int(vec![Some(1); 4]))],
            ),
        )
        .unwrap();
        db.flush().unwrap();
        // In a segment (0..4) and in memory (4..6) when the column arrives.
        db.append(
            "c",
            &batch(
                "customer_id",
                &keys(4..6),
                vec![("hits", Col::Int(vec![Some(2); 2]))],
            ),
        )
        .unwrap();
        add(&db, "clicks", ColumnType::Bigint, MergeRule::Sum).unwrap();
        assert!(
            add(&db, "CLICKS", ColumnType::Bigint, MergeRule::Sum).is_err(),
            "duplicate name"
        );
        assert!(
            add(&db, "bad name", ColumnType::Bigint, MergeRule::Min).is_err(),
            "invalid name"
        );
        assert!(
            add(&db, "s", ColumnType::Varchar, MergeRule::Sum).is_err(),
            "SUM of text"
        );
        db.append(
            "c",
            &batch(
                "customer_id",
                &keys(2..5),
                vec![("clicks", Col::Int(vec![Some(3); 3]))],
            ),
        )
        .unwrap();
        db.append(
            "c",
            &batch(
                "customer_id",
                &keys(3..4),
                vec![("clicks", Col::Int(vec![Some(4)]))],
            ),
        )
        .unwrap();
    }
    let expect = |d: &common::Dump| {
        assert_eq!(d.len(), 6);
        let clicks = |k: usize| d[&keys(k..k + 1)[0]][3].clone();
        assert_eq!((clicks(0), clicks(1), clicks(5)), (None, None, None));
        assert_eq!(clicks(2), Some(Cell::Int(3)));
        assert_eq!(clicks(3), Some(Cell::Int(7)), "SUM folds the new column");
        assert_eq!(clicks(4), Some(Cell::Int(3)));
        assert_eq!(
            d[&keys(5..6)[0]][1],
            Some(Cell::Int(2)),
            "older columns untouched"
        );
    };
    // After WAL replay, then after a flush and a compaction, then after another reopen.
    let db = Database::open(dir.path(), opts()).unwrap();
    expect(&dump(&db.snapshot(), "c"));
    db.flush().unwrap();
    db.compact(2).unwrap();
    expect(&dump(&db.snapshot(), "c"));
    drop(db);
    let db = Database::open(dir.path(), opts()).unwrap();
    expect(&dump(&db.snapshot(), "c"));
    drop(db);
    Database::check_dir(dir.path()).unwrap();
}

/// Random batches with repeated keys across and inside batches, for the bulk-load tests.
fn load_batches(seed: u64, n: usize) -> Vec<RecordBatch> {
    let mut x = seed;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    (0..n)
        .map(|_| {
            let rows = 1 + (next() % 3000) as usize;
            let ks: Vec<String> = (0..rows)
                .map(|_| format!("c{:06}", next() % 150_000))
                .collect();
            let ts = (0..rows)
                .map(|_| (next() % 4 != 0).then(|| (next() % 1000) as i64))
                .collect();
            let hits = (0..rows)
                .map(|_| (next() % 3 != 0).then(|| (next() % 50) as i64))
                .collect();
            let ch = (0..rows)
                .map(|_| (next() % 2 == 0).then(|| format!("ch{}", next() % 7)))
                .collect();
            batch(
                "customer_id",
                &ks,
                vec![
                    ("stage1", Col::Ts(ts)),
                    ("hits", Col::Int(hits)),
                    ("channel", Col::Str(ch)),
                ],
            )
        })
        .collect()
}

#[test]
fn a_bulk_load_equals_the_same_batches_appended_and_lands_in_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
    create_c(&db);
    db.create_table("appended", state_schema()).unwrap();
    let batches = load_batches(7, 40);
    // Rows already in the table merge with the load by the columns' rules.
    db.append("c", &batches[0]).unwrap();
    db.append("appended", &batches[0]).unwrap();
    let before = db.snapshot().version();
    let mut load = db.bulk_load("c").unwrap();
    for b in &batches[1..] {
        load.push(b).unwrap();
        db.append("appended", b).unwrap();
    }
    // Nothing is visible before finish.
    assert_eq!(
        db.snapshot().table("c").unwrap().row_count(),
        batches[0].num_rows() as u64 - duplicates(&batches[0])
    );
    let stats = load.finish().unwrap();
    assert!(stats.rows > 0);
    let snap = db.snapshot();
    assert_eq!(
        snap.version().0,
        before.0 + 2,
        "the load (after a flush) is one commit"
    );
    assert_eq!(dump(&snap, "c"), dump(&snap, "appended"));
    drop(db);
    let db = Database::open(dir.path(), opts()).unwrap();
    let snap = db.snapshot();
    assert_eq!(dump(&snap, "c"), dump(&snap, "appended"));
}

fn duplicates(b: &RecordBatch) -> u64 {
    let k = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
    let distinct: std::collections::HashSet<&str> = k.iter().flatten().collect();
    (b.num_rows() - distinct.len()) as u64
}

#[test]
fn a_bulk_load_adds_columns_in_its_commit_and_a_dropped_load_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
    create_c(&db);
    let before = dump(&db.snapshot(), "c");
    // Dropped without finish: nothing changes.
    {
        let mut load = db.bulk_load("c").unwrap();
        load.add_column(ColumnDef::new("purchase", ColumnType::Timestamp))
            .unwrap();
        for b in load_batches(3, 5) {
            load.push(&b).unwrap();
        }
    }
    assert_eq!(dump(&db.snapshot(), "c"), before);
    assert_eq!(db.snapshot().table("c").unwrap().schema().columns.len(), 3);
    // A column added mid-load is committed with the rows.
    let mut load = db.bulk_load("c").unwrap();
    load.push(&load_batches(5, 1)[0]).unwrap();
    load.add_column(ColumnDef::new("purchase", ColumnType::Timestamp))
        .unwrap();
    let k = keys(0..3);
    load.push(&batch(
        "customer_id",
        &k,
        vec![("purchase", Col::Ts(vec![Some(5), None, Some(7)]))],
    ))
    .unwrap();
    load.push(&batch(
        "customer_id",
        &k,
        vec![("purchase", Col::Ts(vec![Some(9), Some(1), Some(3)]))],
    ))
    .unwrap();
    // Another commit adding a column meanwhile makes the load fail whole.
    let mut other = db.bulk_load("c").unwrap();
    other
        .add_column(ColumnDef::new("x", ColumnType::Bigint))
        .unwrap();
    load.finish().unwrap();
    assert!(other.finish().is_err());
    let snap = db.snapshot();
    let d = dump(&snap, "c");
    assert_eq!(snap.table("c").unwrap().schema().columns.len(), 4);
    let got: Vec<_> = k.iter().map(|k| d[k][3].clone()).collect();
    assert_eq!(
        got,
        vec![Some(Cell::Int(5)), Some(Cell::Int(1)), Some(Cell::Int(3))]
    );
    // The added column cannot duplicate a name.
    let mut again = db.bulk_load("c").unwrap();
    assert!(again
        .add_column(ColumnDef::new("purchase", ColumnType::Bigint))
        .is_err());
}

/// A bulk load folds partitions that receive many rows in slots (one per ordinal) and the others
/// by sorting: both must equal the same batches appended, for every fixed-width type and rule,
/// with VARCHAR columns beside them, and with a column added mid-load.
/// `n` keys of 200k: nine in ten below `c070000` (partition 0 of 65,536 ordinals turns dense
/// early, partition 1 late), the rest spread over partitions 1 to 3.
fn skewed_keys(n: usize, next: &mut dyn FnMut() -> u64) -> Vec<String> {
    (0..n)
        .map(|_| {
            let k = if next().is_multiple_of(10) {
                70_000 + next() % 130_000
            } else {
                next() % 70_000
            };
            format!("c{k:06}")
        })
        .collect()
}

#[test]
fn a_bulk_load_folds_dense_and_sparse_partitions_like_appends() {
    let schema = TableSchema::new(
        "customer_id",
        vec![
            ColumnDef::new("first", ColumnType::Timestamp),
            ColumnDef::new("last", ColumnType::Timestamp).with_rule(MergeRule::Max),
            ColumnDef::new("n", ColumnType::Bigint).with_rule(MergeRule::Sum),
            ColumnDef::new("score", ColumnType::Double).with_rule(MergeRule::Max),
            ColumnDef::new("low", ColumnType::Double),
            ColumnDef::new("latest", ColumnType::Bigint).with_rule(MergeRule::Last),
            ColumnDef::new("tag", ColumnType::Varchar).with_rule(MergeRule::Last),
        ],
    );
    for seed in 1..4u64 {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
        db.create_table("c", schema.clone()).unwrap();
        db.create_table("appended", schema.clone()).unwrap();
        let x = std::cell::Cell::new(seed);
        let next = || {
            x.set(
                x.get()
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407),
            );
            x.get() >> 33
        };
        // Register 200k keys in order, so that partitions (65,536 ordinals) are known: keys below
        // 70k get many rows (partition 0 turns dense after a few batches, partition 1 late), the
        // rest few (partitions 2 and 3 stay sparse).
        let all = keys(0..200_000);
        db.create_table("registry", TableSchema::new("customer_id", vec![]))
            .unwrap();
        db.append("registry", &batch("customer_id", &all, vec![]))
            .unwrap();
        let mut load = db.bulk_load("c").unwrap();
        for b in 0..30 {
            if b == 12 {
                let col = ColumnDef::new("added", ColumnType::Timestamp);
                load.add_column(col.clone()).unwrap();
                db.commit(&[CatalogOp::AddColumn {
                    table: "appended".into(),
                    column: col,
                }])
                .unwrap();
            }
            // Some batches pass 4,096 rows: those fold on two threads.
            let rows = 2_000 + (next() % 4_000) as usize;
            let ks = skewed_keys(rows, &mut || next());
            let opt_int = |m: u64| -> Vec<Option<i64>> {
                (0..rows)
                    .map(|_| (next() % 3 != 0).then(|| (next() % m) as i64 - (m / 2) as i64))
                    .collect()
            };
            let (first, last, n, latest) = (opt_int(1000), opt_int(1000), opt_int(50), opt_int(9));
            let opt_f = || -> Vec<Option<f64>> {
                (0..rows)
                    .map(|_| (next() % 3 != 0).then(|| (next() % 1000) as f64 / 7.0))
                    .collect()
            };
            let (score, low) = (opt_f(), opt_f());
            let tag = (0..rows)
                .map(|_| (next() % 2 == 0).then(|| format!("t{}", next() % 5)))
                .collect();
            let mut cols = vec![
                ("first", Col::Ts(first)),
                ("last", Col::Ts(last)),
                ("n", Col::Int(n)),
                ("score", Col::Float(score)),
                ("low", Col::Float(low)),
                ("latest", Col::Int(latest)),
                ("tag", Col::Str(tag)),
            ];
            if b >= 12 {
                cols.push(("added", Col::Ts(opt_int(100))));
            }
            let rb = batch("customer_id", &ks, cols);
            load.push(&rb).unwrap();
            db.append("appended", &rb).unwrap();
        }
        // Partition 0 (most rows, many repeated keys) folds in slots; 2 and 3 cannot.
        let dense = load.dense_partitions();
        assert!((1..=2).contains(&dense), "{dense} dense partitions");
        load.finish().unwrap();
        let snap = db.snapshot();
        assert_eq!(dump(&snap, "c"), dump(&snap, "appended"), "seed {seed}");
    }
}

/// A load of distinct keys (a table exported and imported again) folds nothing, so no partition
/// turns dense however many rows it gets: slots would cost 8 bytes per ordinal of every
/// fixed-width column. The same rows pushed twice do turn dense. Both equal the rows appended.
#[test]
fn a_bulk_load_of_distinct_keys_stays_sparse() {
    let schema = TableSchema::new(
        "customer_id",
        vec![
            ColumnDef::new("first", ColumnType::Timestamp),
            ColumnDef::new("n", ColumnType::Bigint).with_rule(MergeRule::Sum),
        ],
    );
    for twice in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
        db.create_table("c", schema.clone()).unwrap();
        db.create_table("appended", schema.clone()).unwrap();
        let mut load = db.bulk_load("c").unwrap();
        let rounds = if twice { 2 } else { 1 };
        for _ in 0..rounds {
            // 150k keys in batches of 5,000: partitions 0 and 1 (65,536 ordinals) fill whole.
            for b in 0..30i64 {
                let ks = keys((b * 5_000) as usize..((b + 1) * 5_000) as usize);
                let vals = |m: i64| -> Vec<Option<i64>> {
                    (0..5_000i64)
                        .map(|i| ((i + b) % 3 != 0).then_some((i * 7 + b) % m))
                        .collect()
                };
                let rb = batch(
                    "customer_id",
                    &ks,
                    vec![("first", Col::Ts(vals(1000))), ("n", Col::Int(vals(9)))],
                );
                load.push(&rb).unwrap();
                db.append("appended", &rb).unwrap();
            }
        }
        let dense = load.dense_partitions();
        if twice {
            assert!(dense >= 2, "{dense} dense partitions for repeated keys");
        } else {
            assert_eq!(dense, 0, "distinct keys turned partitions dense");
        }
        load.finish().unwrap();
        let snap = db.snapshot();
        assert_eq!(dump(&snap, "c"), dump(&snap, "appended"), "twice: {twice}");
    }
}

/// Cells (`BulkLoad::push_cells`, an event log's pivot) fold like the batch they stand for: each
/// row with its targets' columns set (its value or the target's constant) and the others NULL.
/// Partitions turn dense midway (their cells then wait in queues, flushed when full, before a
/// `push`, and at the end) or stay sparse; a `push` between cells keeps LAST in arrival order.
#[test]
fn cells_fold_like_the_rows_they_stand_for() {
    let schema = TableSchema::new(
        "customer_id",
        vec![
            ColumnDef::new("t_min", ColumnType::Timestamp),
            ColumnDef::new("t_max", ColumnType::Timestamp).with_rule(MergeRule::Max),
            ColumnDef::new("n", ColumnType::Bigint).with_rule(MergeRule::Sum),
            ColumnDef::new("latest", ColumnType::Bigint).with_rule(MergeRule::Last),
        ],
    );
    let id = |name: &str| schema.column(name).unwrap().0;
    // Kind 0: t_min and a count; kind 1: t_max and latest; kind 2: latest = 7 and n += value.
    let targets = vec![
        vec![(id("t_min"), None), (id("n"), Some(1))],
        vec![(id("t_max"), None), (id("latest"), None)],
        vec![(id("latest"), Some(7)), (id("n"), None)],
    ];
    for seed in 1..4u64 {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
        db.create_table("c", schema.clone()).unwrap();
        db.create_table("rows", schema.clone()).unwrap();
        db.create_table("registry", TableSchema::new("customer_id", vec![]))
            .unwrap();
        db.append("registry", &batch("customer_id", &keys(0..200_000), vec![]))
            .unwrap();
        let mut x = seed;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let mut load = db.bulk_load("c").unwrap();
        let mut rows_load = db.bulk_load("rows").unwrap();
        for b in 0..40 {
            // Keys below 70k get many rows (partition 0 turns dense early, 1 late), the rest few.
            let n = 1_000 + (next() % 20_000) as usize;
            let ks = skewed_keys(n, &mut next);
            let kinds: Vec<u16> = (0..n).map(|_| (next() % 3) as u16).collect();
            let values: Vec<i64> = (0..n).map(|_| (next() % 1000) as i64 - 500).collect();
            let key_array = StringArray::from_iter_values(ks.iter());
            if b % 2 == 0 {
                load.push_cells(&key_array, &kinds, &values, &targets)
                    .unwrap();
            } else {
                // Keys resolved on another thread, as `EmbeddedSession::load` does a batch ahead.
                let r = load.resolver();
                let ords = std::thread::scope(|s| s.spawn(|| r.ordinals(&key_array)).join())
                    .unwrap()
                    .unwrap();
                assert_eq!(ords.len(), n);
                load.push_resolved_cells(ords, &kinds, &values, &targets)
                    .unwrap();
            }
            // The same rows, NULL where a row's kind sets nothing.
            let col = |c: &str| -> Vec<Option<i64>> {
                let c = id(c);
                kinds
                    .iter()
                    .zip(&values)
                    .map(|(&k, &v)| {
                        targets[usize::from(k)]
                            .iter()
                            .find(|(t, _)| *t == c)
                            .map(|(_, constant)| constant.unwrap_or(v))
                    })
                    .collect()
            };
            let rb = batch(
                "customer_id",
                &ks,
                vec![
                    ("t_min", Col::Ts(col("t_min"))),
                    ("t_max", Col::Ts(col("t_max"))),
                    ("n", Col::Int(col("n"))),
                    ("latest", Col::Int(col("latest"))),
                ],
            );
            if b % 2 == 0 {
                rows_load.push(&rb).unwrap();
            } else {
                // Keys resolved on another thread, as `COPY .. FROM` does while it folds.
                let r = rows_load.resolver();
                let ords = std::thread::scope(|s| s.spawn(|| r.batch_ordinals(&rb)).join())
                    .unwrap()
                    .unwrap();
                // Ordinals of an equal batch built apart are refused: they must be this batch's.
                let twin = batch("customer_id", &ks, vec![("t_min", Col::Ts(col("t_min")))]);
                let err = rows_load
                    .push_resolved(&twin, r.batch_ordinals(&rb).unwrap())
                    .unwrap_err();
                assert!(err.to_string().contains("another batch"), "{err}");
                rows_load.push_resolved(&rb, ords).unwrap();
            }
            if b % 7 == 3 {
                let ks: Vec<String> = (0..500)
                    .map(|_| format!("c{:06}", next() % 70_000))
                    .collect();
                let latest = (0..500).map(|_| Some(next() as i64 % 50)).collect();
                let rb = batch("customer_id", &ks, vec![("latest", Col::Int(latest))]);
                load.push(&rb).unwrap();
                rows_load.push(&rb).unwrap();
            }
        }
        // Refused: a VARCHAR-free check of the arguments, nothing folded.
        let one = StringArray::from(vec!["c000001"]);
        assert!(load.push_cells(&one, &[3], &[1], &targets).is_err());
        assert!(load.push_cells(&one, &[0, 0], &[1], &targets).is_err());
        // Ordinals of another database's dictionary are refused.
        let dir2 = tempfile::tempdir().unwrap();
        let db2 = Database::create(dir2.path(), KeyType::Varchar, opts()).unwrap();
        db2.create_table("c", schema.clone()).unwrap();
        let elsewhere = db2
            .bulk_load("c")
            .unwrap()
            .resolver()
            .ordinals(&one)
            .unwrap();
        let err = load
            .push_resolved_cells(elsewhere, &[0], &[1], &targets)
            .unwrap_err();
        assert!(err.to_string().contains("another database"), "{err}");
        load.finish().unwrap();
        rows_load.finish().unwrap();
        let snap = db.snapshot();
        let (c, rows) = (dump(&snap, "c"), dump(&snap, "rows"));
        assert!(c.len() > 60_000, "{}", c.len());
        assert_eq!(c, rows, "seed {seed}");
    }
}

/// Issue 15's probe: `MERGE SUM` BIGINT wrapped on overflow (`i64::MAX + 1` was stored as
/// `i64::MIN`). An append or a bulk load whose sums would leave the range is refused whole; sums
/// that stay in range are accepted wherever their parts are (segments, memtable, one batch), and
/// mixed signs are summed exactly.
#[test]
fn a_sum_that_would_overflow_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
    db.create_table(
        "s",
        TableSchema::new(
            "customer_id",
            vec![ColumnDef::new("n", ColumnType::Bigint).with_rule(MergeRule::Sum)],
        ),
    )
    .unwrap();
    let put = |k: &[&str], v: Vec<i64>| {
        let keys: Vec<String> = k.iter().map(|s| s.to_string()).collect();
        db.append(
            "s",
            &batch(
                "customer_id",
                &keys,
                vec![("n", Col::Int(v.into_iter().map(Some).collect()))],
            ),
        )
    };
    let value = |k: &str| dump(&db.snapshot(), "s").get(k).cloned();
    put(&["a"], vec![i64::MAX - 10]).unwrap();
    db.flush().unwrap();
    put(&["b"], vec![i64::MAX - 10]).unwrap();
    // Far past the bound of the sources, but no key overflows: checked key by key.
    put(&["c"], vec![100]).unwrap();
    put(&["a", "a"], vec![5, 5]).unwrap();
    assert_eq!(value("a"), Some(vec![Some(Cell::Int(i64::MAX))]));
    // One more, in a separate append or inside one batch: refused, nothing stored.
    let e = put(&["a"], vec![1]).unwrap_err().to_string();
    assert!(e.contains("BIGINT range"), "{e}");
    let e = put(&["b", "c", "b"], vec![6, 1, 5])
        .unwrap_err()
        .to_string();
    assert!(e.contains("BIGINT range"), "{e}");
    assert_eq!(value("b"), Some(vec![Some(Cell::Int(i64::MAX - 10))]));
    assert_eq!(value("c"), Some(vec![Some(Cell::Int(100))]));
    // Mixed signs in one batch are summed exactly: MAX + 10 - 5 - 10 fits (its parts do not).
    put(&["a", "a", "a"], vec![10, -5, -10]).unwrap();
    assert_eq!(value("a"), Some(vec![Some(Cell::Int(i64::MAX - 5))]));
    // The negative end too.
    put(&["d"], vec![i64::MIN + 1]).unwrap();
    assert!(put(&["d"], vec![-2]).is_err());
    // A bulk load checks the bound of what it loads and what is stored: refused whole.
    let mut load = db.bulk_load("s").unwrap();
    load.push(&batch(
        "customer_id",
        &["e".to_string()],
        vec![("n", Col::Int(vec![Some(1)]))],
    ))
    .unwrap();
    let e = load.finish().unwrap_err().to_string();
    assert!(e.contains("BIGINT range"), "{e}");
    assert_eq!(value("e"), None);
    // Still true after a flush, a compaction and a reopen (the segments' min/max give the bound).
    db.flush().unwrap();
    db.compact(1).unwrap();
    drop(db);
    let db = Database::open(dir.path(), opts()).unwrap();
    let keys = vec!["a".to_string()];
    assert!(db
        .append(
            "s",
            &batch("customer_id", &keys, vec![("n", Col::Int(vec![Some(6)]))])
        )
        .is_err());
    assert_eq!(
        dump(&db.snapshot(), "s").get("a").cloned(),
        Some(vec![Some(Cell::Int(i64::MAX - 5))])
    );
}

/// Issue 15 (found by the soak): rows appended to a table that is then dropped stayed in the WAL
/// until `flush_rows` live rows accumulated, so a server whose jobs replace tables grew its WAL
/// forever (and replayed all of it on start). Once the dead rows outnumber the live ones the
/// background thread flushes, and the WAL shrinks.
#[test]
fn the_wal_of_dropped_tables_is_reclaimed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(
        dir.path(),
        KeyType::Varchar,
        Options {
            background: true,
            ..opts()
        },
    )
    .unwrap();
    let wal_bytes = || -> u64 {
        std::fs::read_dir(dir.path().join("wal"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let rows = |from: usize| {
        batch(
            "customer_id",
            &keys(from..from + 30_000),
            vec![("hits", Col::Int(vec![Some(1); 30_000]))],
        )
    };
    create_c(&db);
    db.append("c", &rows(0)).unwrap();
    let full = wal_bytes();
    db.drop_table("c").unwrap();
    create_c(&db);
    db.append("c", &rows(100_000)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while wal_bytes() >= full {
        assert!(
            std::time::Instant::now() < deadline,
            "the dead WAL was never reclaimed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The live rows are all there.
    assert_eq!(dump(&db.snapshot(), "c").len(), 30_000);
    drop(db);
    let db = Database::open(dir.path(), opts()).unwrap();
    assert_eq!(dump(&db.snapshot(), "c").len(), 30_000);
}

/// Files in `dir/seg`.
fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("seg")).map_or(0, |d| d.count())
}

#[test]
fn temporary_tables_stay_in_memory_until_a_rename_publishes_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, opts()).unwrap();
    db.create_table("state", state_schema()).unwrap();
    db.append(
        "state",
        &batch(
            "customer_id",
            &keys(0..3),
            vec![("hits", Col::Int(vec![Some(1); 3]))],
        ),
    )
    .unwrap();
    db.flush().unwrap();
    let files = segment_files(dir.path());
    let kept = db.kept_versions();
    let v = db.snapshot().version();
    let temp = |name: &str| CatalogOp::CreateTemporary {
        name: name.into(),
        schema: state_schema(),
        or_replace: false,
    };
    db.commit(&[temp("scratch"), temp("next")]).unwrap();
    // Appends (WAL-less) and a 70k-row append over two partitions fold by the merge rules.
    let n = 70_000;
    for _ in 0..2 {
        db.append(
            "next",
            &batch(
                "customer_id",
                &keys(0..n),
                vec![("hits", Col::Int(vec![Some(2); n]))],
            ),
        )
        .unwrap();
    }
    db.append("scratch", &batch("customer_id", &keys(5..6), vec![]))
        .unwrap();
    db.compact(2).unwrap();
    assert_eq!(
        (
            segment_files(dir.path()),
            db.kept_versions(),
            db.snapshot().version()
        ),
        (files, kept.clone(), v),
        "temporary tables write no segment file and no manifest"
    );
    let next = dump(&db.snapshot(), "next");
    assert_eq!(next.len(), n);
    assert_eq!(
        next.get("c000001").map(|r| r[1].clone()),
        Some(Some(Cell::Int(4)))
    );
    // A swap with a temporary table is refused; nothing changes.
    let err = db.swap_tables("state", "next").unwrap_err();
    assert!(matches!(err, StorageError::Unsupported(_)), "{err}");
    db.commit(&[CatalogOp::Drop {
        name: "scratch".into(),
        if_exists: false,
    }])
    .unwrap();
    // One commit publishes `next` as the state and keeps the old state under another name.
    db.commit(&[
        CatalogOp::Rename {
            from: "state".into(),
            to: "old_state".into(),
        },
        CatalogOp::Rename {
            from: "next".into(),
            to: "state".into(),
        },
    ])
    .unwrap();
    assert!(
        segment_files(dir.path()) > files,
        "publishing writes the segments"
    );
    assert_eq!(db.kept_versions().len(), kept.len() + 1);
    let before = dump(&db.snapshot(), "state");
    db.commit(&[temp("gone")]).unwrap();
    db.append("gone", &batch("customer_id", &keys(0..1), vec![]))
        .unwrap();
    drop(db);
    let db = Database::open(dir.path(), opts()).unwrap();
    assert_eq!(dump(&db.snapshot(), "state"), before);
    assert_eq!(
        db.snapshot().table_names(),
        vec!["old_state".to_string(), "state".to_string()],
        "a temporary table does not outlive the database's close"
    );
    db.check().unwrap();
}
