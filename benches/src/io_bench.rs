//! The file benchmarks of `journeydb bench` (issue 12), journeydb's side; DuckDB's side is the
//! `io` entry of `duckdb_bench.py`:
//! - (h) import of the bench's state from Parquet (the file journeydb exported, read by both):
//!   `COPY t FROM 'state.parquet'` against `CREATE TABLE t AS SELECT * FROM read_parquet(..)`.
//! - (i) export of the state to Parquet (zstd in both): `COPY state TO ..`.
//! - (j) an event log of 10 events per customer (Parquet) pivoted into one row per customer:
//!   `journeydb import events` against DuckDB's `GROUP BY customer_id` with `min(..) FILTER`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use journeydb_io::write::WriteOptions;
use journeydb_io::Format;
use journeydb_query::{Engine, Output};

use crate::{median, mix};

/// Event names of the (j) log.
pub const EVENTS: [&str; 8] = [
    "view",
    "click",
    "signup",
    "add_to_cart",
    "purchase",
    "open",
    "unsubscribe",
    "share",
];

/// Events per customer in the (j) log.
pub const EVENTS_PER_CUSTOMER: usize = 10;

/// journeydb's (h)-(j) timings and answers.
pub struct IoSide {
    /// (h) median import time.
    pub import: Duration,
    /// (h) answer.
    pub import_answer: Vec<Option<String>>,
    /// (i) median export time.
    pub export: Duration,
    /// (j) median pivot time.
    pub events: Duration,
    /// (j) answer.
    pub events_answer: Vec<Option<String>>,
    /// The files and names DuckDB's side needs.
    pub spec: serde_json::Value,
}

fn first_row(out: &Output) -> Vec<Option<String>> {
    match out {
        Output::Rows(b) => b
            .columns()
            .iter()
            .map(|c| journeydb_query::format::cell_text(c.as_ref(), 0))
            .collect(),
        Output::Done { .. } => vec![],
    }
}

/// Writes the (j) event log: `customers × 10` events (customer, event, time), keys like the state's.
pub fn write_events(path: &Path, customers: usize, int_keys: bool) -> Result<u64, String> {
    let key_type = if int_keys {
        DataType::Int64
    } else {
        DataType::Utf8
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", key_type, false),
        Field::new("event", DataType::Utf8, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
    ]));
    let mut w =
        journeydb_io::write::create(path, schema.clone(), &WriteOptions::new(Format::Parquet))
            .map_err(|e| e.to_string())?;
    let total = customers * EVENTS_PER_CUSTOMER;
    let base: i64 = 1_767_225_600_000_000; // 2026-01-01
    let mut start = 0;
    while start < total {
        let end = (start + (1 << 20)).min(total);
        let h: Vec<u64> = (start..end).map(|i| mix(0xE7 ^ i as u64)).collect();
        let cust: Vec<usize> = h.iter().map(|x| (*x % customers as u64) as usize).collect();
        let key: ArrayRef = if int_keys {
            Arc::new(Int64Array::from_iter_values(cust.iter().map(|&c| c as i64)))
        } else {
            Arc::new(StringArray::from_iter_values(
                cust.iter().map(|c| format!("c{c:09}")),
            ))
        };
        let ev = StringArray::from_iter_values(h.iter().map(|x| {
            EVENTS
                .get(((x >> 40) % EVENTS.len() as u64) as usize)
                .copied()
                .unwrap_or("view")
        }));
        let t = TimestampMicrosecondArray::from_iter_values(
            h.iter()
                .map(|x| base + ((x >> 8) % (90 * 86_400_000_000)) as i64),
        );
        let b = RecordBatch::try_new(schema.clone(), vec![key, Arc::new(ev), Arc::new(t)])
            .map_err(|e| e.to_string())?;
        w.write(&b).map_err(|e| e.to_string())?;
        start = end;
    }
    w.finish().map_err(|e| e.to_string())?;
    Ok(total as u64)
}

/// Runs (h), (i) and (j) in journeydb: `engine` holds the loaded `state` table (created by
/// `create_state(name)`); the event pivot runs on its own database in `work/events_db`.
// long: three timed loops and the spec for DuckDB, in order.
pub fn journeydb_side(
    engine: &Engine,
    work: &Path,
    customers: usize,
    runs: usize,
    int_keys: bool,
    create_state: &dyn Fn(&str) -> String,
    columns: (&str, &str),
) -> Result<IoSide, String> {
    let exec = |sql: &str| engine.execute_one(sql).map_err(|e| format!("{e}\n  {sql}"));
    let state_pq = work.join("state.parquet");
    // (i) export.
    crate::harness::progress("journeydb: (i) export of the state to Parquet");
    let mut times = Vec::new();
    for i in 0..=runs {
        let t = Instant::now();
        exec(&format!("COPY state TO '{}'", state_pq.display()))?;
        if i > 0 {
            times.push(t.elapsed());
        }
    }
    let export = median(times);
    // (h) import of that file.
    crate::harness::progress("journeydb: (h) import of the state from Parquet");
    let mut times = Vec::new();
    let mut import_answer = Vec::new();
    for i in 0..=runs {
        exec(&create_state("state_in"))?;
        let t = Instant::now();
        exec(&format!("COPY state_in FROM '{}'", state_pq.display()))?;
        if i > 0 {
            times.push(t.elapsed());
        }
        import_answer = first_row(&exec(&format!(
            "SELECT count(*), min({}), max({}) FROM state_in",
            columns.0, columns.1
        ))?);
        exec("DROP TABLE state_in")?;
    }
    let import = median(times);
    // (j) the event log pivot.
    let events_pq = work.join("events.parquet");
    crate::harness::progress("writing the (j) event log ...");
    write_events(&events_pq, customers, int_keys)?;
    // The pivot opens its database itself, as the command does: create it first.
    let events_db = work.join("events_db");
    let key_type = if int_keys {
        journeydb_storage::KeyType::Bigint
    } else {
        journeydb_storage::KeyType::Varchar
    };
    journeydb_storage::Database::create(
        &events_db,
        key_type,
        journeydb_storage::Options::default(),
    )
    .map_err(|e| e.to_string())?;
    let mut times = Vec::new();
    let mut events_answer = Vec::new();
    for i in 0..=runs {
        crate::harness::progress(&format!("journeydb: (j) event log pivot, run {i}"));
        let table = format!("ev{i}");
        let t = Instant::now();
        pivot(&events_db, &table, &events_pq)?;
        if i > 0 {
            times.push(t.elapsed());
        }
        if i == runs {
            let db = journeydb_storage::Database::open(
                &events_db,
                journeydb_storage::Options::default(),
            )
            .map_err(|e| e.to_string())?;
            let e = Engine::new(Arc::new(db));
            events_answer = first_row(
                &e.execute_one(&format!(
                    "SELECT count(*), min({}), max({}) FROM {table}",
                    EVENTS[0], EVENTS[7]
                ))
                .map_err(|e| e.to_string())?,
            );
        }
    }
    Ok(IoSide {
        import,
        import_answer,
        export,
        events: median(times),
        events_answer,
        spec: serde_json::json!({
            "import": state_pq,
            "export": work.join("state_duckdb.parquet"),
            "events": events_pq,
            "event_names": EVENTS,
            "columns": [columns.0, columns.1],
            "runs": runs,
        }),
    })
}

/// `journeydb import events FILE --table TABLE --db DIR` (the command's own code path).
fn pivot(db: &Path, table: &str, file: &Path) -> Result<(), String> {
    use journeydb_tools::cli::{EventsArgs, ProgressArg, ReadArgs, Remote, Target};
    let args = EventsArgs {
        table: table.to_string(),
        key: "customer_id".into(),
        event: "event".into(),
        time: "time".into(),
        count: false,
        read: ReadArgs {
            format: None,
            no_header: false,
            delimiter: b',',
            null: String::new(),
            timestamp_format: None,
            max_errors: 0,
            rejects: None,
            files: vec![file.to_string_lossy().into_owned()],
            progress: ProgressArg::None,
        },
        target: Target {
            db: Some(PathBuf::from(db)),
            remote: Remote {
                connect: None,
                token: None,
            },
        },
    };
    journeydb_tools::transfer::import_events(&args)
}
