//! Child process of the crash test: opens (or creates) a database and appends numbered batches forever,
//! printing `ACK i` after append `i` returned. It flushes, compacts and swaps tables along the way so
//! a SIGKILL can land inside any of them. Batch `i` writes 20 keys `b{i}_{j}` (v = i) and adds 1 to
//! the `counter` key's SUM column: after recovery, batches must be present whole and as a prefix.

use std::io::Write;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_storage::{
    CatalogOp, ColumnDef, ColumnType, Database, KeyType, MergeRule, Options, TableSchema,
};

/// Keys per batch.
pub const BATCH_KEYS: usize = 20;

fn schema() -> TableSchema {
    TableSchema::new(
        "k",
        vec![
            ColumnDef::new("v", ColumnType::Bigint).with_rule(MergeRule::Last),
            ColumnDef::new("c", ColumnType::Bigint).with_rule(MergeRule::Sum),
        ],
    )
}

fn batch_of(i: i64) -> RecordBatch {
    let mut keys: Vec<String> = (0..BATCH_KEYS).map(|j| format!("b{i}_{j}")).collect();
    keys.push("counter".into());
    let v: Vec<Option<i64>> = (0..BATCH_KEYS).map(|_| Some(i)).chain([None]).collect();
    let c: Vec<Option<i64>> = (0..BATCH_KEYS).map(|_| None).chain([Some(1)]).collect();
    let fields = vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Int64, true),
        Field::new("c", DataType::Int64, true),
    ];
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(keys)),
        Arc::new(Int64Array::from(v)),
        Arc::new(Int64Array::from(c)),
    ];
    match RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays) {
        Ok(b) => b,
        Err(e) => fail(&format!("batch: {e}")),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("crash_writer: {msg}");
    std::process::exit(2)
}

fn counter(db: &Database) -> i64 {
    let snap = db.snapshot();
    let Ok(t) = snap.table("t") else { return 0 };
    let Some(o) = snap.keys().lookup(journeydb_storage::Key::Str("counter")) else {
        return 0;
    };
    let p = journeydb_storage::PartitionId(o / t.partition_rows());
    match t.column_by_name(p, "c") {
        Ok(col) => match (&col.values, col.presence.rank(o)) {
            (journeydb_storage::Values::Int(v), r) if col.presence.contains(o) => {
                v.get(r as usize - 1).copied().unwrap_or(0)
            }
            _ => 0,
        },
        Err(e) => fail(&format!("read counter: {e}")),
    }
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        fail("usage: crash_writer DIR")
    };
    let opts = Options {
        partition_rows: 65536,
        keep_versions: 2,
        background: true,
        flush_rows: 500,
        compact_segments: 3,
    };
    let db = if std::path::Path::new(&dir).join("CURRENT").exists() {
        Database::open(&dir, opts)
    } else {
        Database::create(&dir, KeyType::Varchar, opts)
    }
    .unwrap_or_else(|e| fail(&format!("open: {e}")));
    let create = |name: &str| CatalogOp::Create {
        name: name.into(),
        schema: schema(),
        if_not_exists: true,
    };
    db.commit(&[create("t"), create("side_a"), create("side_b")])
        .unwrap_or_else(|e| fail(&format!("create: {e}")));
    let out = std::io::stdout();
    let mut i = counter(&db);
    loop {
        db.append("t", &batch_of(i))
            .unwrap_or_else(|e| fail(&format!("append {i}: {e}")));
        {
            let mut o = out.lock();
            let _ = writeln!(o, "ACK {i}");
            let _ = o.flush();
        }
        let step = |r: journeydb_storage::Result<_>, what: &str| {
            if let Err(e) = r {
                fail(&format!("{what} after {i}: {e}"));
            }
        };
        if i % 7 == 3 {
            step(db.flush().map(|_| ()), "flush");
        }
        if i % 11 == 5 {
            step(db.compact(2).map(|_| ()), "compact");
        }
        if i % 5 == 1 {
            step(db.append("side_a", &batch_of(i)).map(|_| ()), "side append");
            step(db.swap_tables("side_a", "side_b").map(|_| ()), "swap");
            step(
                db.commit(&[
                    CatalogOp::CreateOrReplace {
                        name: "side_tmp".into(),
                        schema: schema(),
                    },
                    CatalogOp::Replace {
                        target: "side_c".into(),
                        source: "side_tmp".into(),
                    },
                ])
                .map(|_| ()),
                "replace",
            );
        }
        i += 1;
    }
}
