//! The query log (`system.queries`): every statement a connection runs, with its tenant, who ran
//! it, from where, over which protocol, its text, times, what it scanned, decoded, returned and
//! wrote, and its result (`ok` or the SQLSTATE), stored as table [`QUERY_LOG_TABLE`] of a
//! database of its own, so that SQL reads it (`SELECT .. FROM system.queries`) and it never adds
//! keys to the dictionary of a database that holds customers.
//!
//! Layout: the log's directory holds generations, each a journeydb database (`gen-000001/`, ..),
//! and `CURRENT` naming the one in use (written to a temporary file, renamed, the directory
//! fsynced). Rows older than `--query-log-days` are removed, and the key dictionary (one key per
//! statement, never shrunk in place) kept within twice the live rows, by copying the rows kept
//! into a new generation and switching `CURRENT` to it, at start and once an hour. A crash
//! mid-copy leaves `CURRENT` on the old generation; the other generations are deleted at open.
//!
//! Connections hand their records to a buffer; a thread of the server appends the buffer as one
//! batch every second (one WAL fsync a second, not one a statement) and once more at stop. A crash
//! can therefore lose the last second of the log, never a statement's own effects. Only that
//! thread writes the log, so no record is lost to a rebuild.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use journeydb_query::{Database, KeyType, Options};
use journeydb_query::{Engine, QueryError, StatementLog, StatementRecord, QUERY_LOG_TABLE};

/// Columns of the log, after the key `query_id`: name and SQL type.
const COLUMNS: [(&str, &str); 17] = [
    ("tenant", "VARCHAR"),
    ("user_name", "VARCHAR"),
    ("client", "VARCHAR"),
    ("protocol", "VARCHAR"),
    ("query", "VARCHAR"),
    ("started_at", "TIMESTAMP"),
    ("wall_us", "BIGINT"),
    ("cpu_us", "BIGINT"),
    ("rows_scanned", "BIGINT"),
    ("bytes_scanned", "BIGINT"),
    ("bytes_decoded", "BIGINT"),
    ("rows_returned", "BIGINT"),
    ("rows_written", "BIGINT"),
    ("bytes_written", "BIGINT"),
    ("result", "VARCHAR"),
    ("error", "VARCHAR"),
    ("bytes_stored", "BIGINT"),
];

/// How often each tenant's stored bytes are sampled into the log (for `system.costs`).
pub const STORAGE_EVERY: Duration = Duration::from_secs(3600);

/// How often the buffer is appended, and how often old rows are removed.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const RETAIN_EVERY: Duration = Duration::from_secs(3600);

/// Longest statement text kept, in bytes: a multi-megabyte `INSERT .. VALUES` is logged by its
/// head and its length, not whole.
pub const TEXT_MAX: usize = 16 << 10;

/// Keys the log's dictionary may hold beyond twice its live rows before a rebuild.
pub const REBUILD_SLACK: u64 = 100_000;

/// One statement's row.
#[derive(Debug, Clone)]
struct Entry {
    id: i64,
    tenant: String,
    user: String,
    client: String,
    protocol: &'static str,
    r: StatementRecord,
    result: String,
    error: Option<String>,
    /// A storage sample's bytes (protocol `storage`).
    bytes_stored: Option<u64>,
}

/// The generation in use.
#[derive(Debug)]
struct Generation {
    n: u64,
    engine: Engine,
}

/// The server's query log.
#[derive(Debug)]
pub struct QueryLog {
    dir: PathBuf,
    current: RwLock<Generation>,
    /// Replaced generations, deleted once no query reads them any more.
    retired: Mutex<Vec<(Arc<Database>, PathBuf)>>,
    retention_days: u32,
    rebuild_slack: u64,
    buf: Mutex<Vec<Entry>>,
    next_id: AtomicI64,
}

/// Who a connection is, for its records.
#[derive(Debug)]
pub struct ConnLog {
    log: Arc<QueryLog>,
    tenant: String,
    user: String,
    client: String,
    protocol: &'static str,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> QueryError {
    move |e| QueryError::Internal(format!("query log: {what}: {e}"))
}

fn gen_name(n: u64) -> String {
    format!("gen-{n:06}")
}

/// Writes `CURRENT` naming generation `n`: a temporary file, synced, renamed, the directory synced.
fn write_current(dir: &Path, n: u64) -> Result<(), QueryError> {
    use std::io::Write;
    let tmp = dir.join("CURRENT.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io_err(format!("{}", tmp.display())))?;
    f.write_all(format!("{}\n", gen_name(n)).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io_err(format!("{}", tmp.display())))?;
    std::fs::rename(&tmp, dir.join("CURRENT")).map_err(io_err(format!("{}", dir.display())))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("{}", dir.display())))
}

/// The generation `CURRENT` names, if the file exists.
fn read_current(dir: &Path) -> Result<Option<u64>, QueryError> {
    let path = dir.join("CURRENT");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(format!("{}", path.display()))(e)),
    };
    text.trim()
        .strip_prefix("gen-")
        .and_then(|n| n.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            QueryError::Internal(format!(
                "query log: {} does not name a generation: {:?}",
                path.display(),
                text.trim()
            ))
        })
}

/// The log's database options: its rows go from the WAL to (compressed) segments every 20,000
/// statements, so its WAL, and a restart's replay, stay small.
fn log_options() -> Options {
    Options {
        flush_rows: 20_000,
        ..Options::default()
    }
}

/// Creates generation `n` in `dir` with the log's table; its engine.
fn create_generation(dir: &Path, n: u64) -> Result<Engine, QueryError> {
    let path = dir.join(gen_name(n));
    if path.exists() {
        // A copy that died before CURRENT named it.
        std::fs::remove_dir_all(&path).map_err(io_err(format!("{}", path.display())))?;
    }
    let db =
        Database::create(&path, KeyType::Bigint, log_options()).map_err(QueryError::Storage)?;
    let engine = Engine::new(Arc::new(db));
    let cols: Vec<String> = COLUMNS.iter().map(|(n, t)| format!("{n} {t}")).collect();
    engine.execute(&format!(
        "CREATE TABLE {QUERY_LOG_TABLE} (query_id BIGINT PRIMARY KEY, {})",
        cols.join(", ")
    ))?;
    Ok(engine)
}

impl QueryLog {
    /// The log kept in `dir` (created if missing): its current generation opened, the others
    /// deleted, rows older than `retention_days` removed.
    pub fn open(dir: &Path, retention_days: u32) -> Result<QueryLog, QueryError> {
        Self::open_with(dir, retention_days, REBUILD_SLACK)
    }

    /// [`QueryLog::open`] rebuilding once the dictionary holds `rebuild_slack` keys more than
    /// twice the live rows.
    pub fn open_with(
        dir: &Path,
        retention_days: u32,
        rebuild_slack: u64,
    ) -> Result<QueryLog, QueryError> {
        std::fs::create_dir_all(dir).map_err(io_err(format!("{}", dir.display())))?;
        let (n, engine) = match read_current(dir)? {
            Some(n) => {
                let db = Database::open(dir.join(gen_name(n)), log_options())
                    .map_err(QueryError::Storage)?;
                (n, Engine::new(Arc::new(db)))
            }
            None => {
                let engine = create_generation(dir, 1)?;
                write_current(dir, 1)?;
                (1, engine)
            }
        };
        // A generation written before storage samples lacks their column.
        engine.execute(&format!(
            "ALTER TABLE {QUERY_LOG_TABLE} ADD COLUMN IF NOT EXISTS bytes_stored BIGINT"
        ))?;
        // Generations CURRENT does not name: replaced ones, or a copy a crash interrupted.
        let own = gen_name(n);
        for entry in std::fs::read_dir(dir).map_err(io_err(format!("{}", dir.display())))? {
            let entry = entry.map_err(io_err(format!("{}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("gen-") && name != own {
                std::fs::remove_dir_all(entry.path())
                    .map_err(io_err(format!("{}", entry.path().display())))?;
            }
        }
        // Ids grow from the start time in µs: unique across restarts while the clock moves on.
        let now = journeydb_query::engine::now_epoch_us();
        let log = QueryLog {
            dir: dir.to_path_buf(),
            current: RwLock::new(Generation { n, engine }),
            retired: Mutex::new(Vec::new()),
            retention_days,
            rebuild_slack,
            buf: Mutex::new(Vec::new()),
            next_id: AtomicI64::new(now),
        };
        log.retain()?;
        Ok(log)
    }

    /// Moves the rows of a query log kept inside a database by an older journeydb (table
    /// [`QUERY_LOG_TABLE`] of `main`) into this log, and drops that table. Returns the rows moved.
    pub fn adopt(&self, main: &Engine) -> Result<u64, QueryError> {
        if main.database().snapshot().table(QUERY_LOG_TABLE).is_err() {
            return Ok(0);
        }
        // The columns that log had (it had no storage samples).
        let cols: Vec<&str> = COLUMNS
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| *n != "bytes_stored")
            .collect();
        let old = main.query(&format!(
            "SELECT {} FROM {QUERY_LOG_TABLE} ORDER BY started_at",
            cols.join(", ")
        ))?;
        let rows = old.num_rows() as u64;
        if rows > 0 {
            let first = self.next_id.fetch_add(rows as i64, Ordering::Relaxed);
            let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(
                first..first + rows as i64,
            ))];
            columns.extend(old.columns().iter().cloned());
            columns.push(Arc::new(Int64Array::new_null(old.num_rows())));
            let batch = RecordBatch::try_new(Self::schema(), columns)?;
            self.engine()
                .database()
                .append(QUERY_LOG_TABLE, &batch)
                .map_err(QueryError::Storage)?;
        }
        main.execute(&format!("DROP TABLE {QUERY_LOG_TABLE}"))?;
        Ok(rows)
    }

    /// The engine over the generation in use.
    pub fn engine(&self) -> Engine {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .engine
            .clone()
    }

    /// The recorder of one connection.
    pub fn connection(
        self: &Arc<Self>,
        tenant: &str,
        user: &str,
        client: String,
        protocol: &'static str,
    ) -> Arc<ConnLog> {
        Arc::new(ConnLog {
            log: self.clone(),
            tenant: tenant.to_string(),
            user: user.to_string(),
            client,
            protocol,
        })
    }

    fn buffer(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends what is buffered as one batch.
    pub fn flush(&self) -> Result<(), QueryError> {
        let entries = std::mem::take(&mut *self.buffer());
        if entries.is_empty() {
            return Ok(());
        }
        let batch = self.batch(&entries)?;
        self.engine()
            .database()
            .append(QUERY_LOG_TABLE, &batch)
            .map_err(QueryError::Storage)?;
        Ok(())
    }

    /// Removes the rows older than the retention, and bounds the key dictionary: both by a
    /// rebuild into a new generation, when there is something to remove.
    pub fn retain(&self) -> Result<(), QueryError> {
        let cutoff = ts_literal(
            journeydb_query::engine::now_epoch_us()
                - i64::from(self.retention_days) * 86_400_000_000,
        );
        let engine = self.engine();
        let snap = engine.database().snapshot();
        let live = snap.table(QUERY_LOG_TABLE).map_or(0, |t| t.row_count());
        let keys = u64::from(snap.keys().len());
        let old = engine.query(&format!(
            "SELECT count(*) FROM {QUERY_LOG_TABLE} WHERE started_at < {cutoff}"
        ));
        let any_old = match old {
            Ok(b) => b
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .is_some_and(|a| a.len() == 1 && a.value(0) > 0),
            Err(_) => true,
        };
        drop((snap, engine));
        if any_old || keys > 2 * live + self.rebuild_slack {
            self.rebuild(&format!("started_at >= {cutoff}"))?;
        }
        Ok(())
    }

    /// Copies the rows matching `keep` into a new generation and switches to it.
    fn rebuild(&self, keep: &str) -> Result<(), QueryError> {
        self.flush()?;
        let old = self.engine();
        let n = self.current.read().unwrap_or_else(|p| p.into_inner()).n + 1;
        let engine = create_generation(&self.dir, n)?;
        let mut rows =
            old.query_stream(&format!("SELECT * FROM {QUERY_LOG_TABLE} WHERE {keep}"))?;
        let mut load = engine
            .database()
            .bulk_load(QUERY_LOG_TABLE)
            .map_err(QueryError::Storage)?;
        for batch in rows.by_ref() {
            load.push(&batch?).map_err(QueryError::Storage)?;
        }
        drop(rows);
        load.finish().map_err(QueryError::Storage)?;
        engine.database().flush().map_err(QueryError::Storage)?;
        write_current(&self.dir, n)?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let replaced = std::mem::replace(&mut *current, Generation { n, engine });
        drop(current);
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((
                replaced.engine.database().clone(),
                self.dir.join(gen_name(replaced.n)),
            ));
        drop(replaced);
        drop(old);
        self.reap();
        Ok(())
    }

    /// Deletes the replaced generations no query reads any more.
    fn reap(&self) {
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        let mut kept = Vec::new();
        for (db, path) in retired.drain(..) {
            if Arc::strong_count(&db) > 1 {
                kept.push((db, path));
                continue;
            }
            drop(db);
            if let Err(e) = std::fs::remove_dir_all(&path) {
                eprintln!("journeydb: query log: removing {}: {e}", path.display());
            }
        }
        *retired = kept;
    }

    /// Records each (tenant, bytes its database takes on disk) as a storage sample.
    pub fn sample_storage(&self, samples: Vec<(String, u64)>) {
        let now = journeydb_query::engine::now_epoch_us();
        let mut buf = self.buffer();
        for (tenant, bytes) in samples {
            buf.push(Entry {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                tenant,
                user: String::new(),
                client: String::new(),
                protocol: "storage",
                r: StatementRecord {
                    text: "storage sample".into(),
                    start_us: now,
                    wall_us: 0,
                    reading: journeydb_query::meter::Reading::default(),
                    rows_returned: 0,
                    rows_written: 0,
                    bytes_written: 0,
                },
                result: "ok".into(),
                error: None,
                bytes_stored: Some(bytes),
            });
        }
    }

    /// The flushing thread's loop, until `stop`; a last flush at the end. `storage` gives each
    /// tenant's stored bytes, sampled at start and every [`STORAGE_EVERY`].
    pub fn run(
        &self,
        stop: &std::sync::atomic::AtomicBool,
        storage: &dyn Fn() -> Vec<(String, u64)>,
    ) {
        let (mut retained, mut flushed) = (Instant::now(), Instant::now());
        self.sample_storage(storage());
        let mut sampled = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            if sampled.elapsed() >= STORAGE_EVERY {
                self.sample_storage(storage());
                sampled = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
            if flushed.elapsed() >= FLUSH_EVERY || self.buffer().len() >= 10_000 {
                self.report(self.flush());
                self.reap();
                flushed = Instant::now();
            }
            if retained.elapsed() >= RETAIN_EVERY {
                self.report(self.retain());
                retained = Instant::now();
            }
        }
        self.report(self.flush());
    }

    fn report(&self, r: Result<(), QueryError>) {
        if let Err(e) = r {
            eprintln!("journeydb: query log: {e}");
        }
    }

    fn schema() -> Arc<Schema> {
        let mut fields = vec![Field::new("query_id", DataType::Int64, false)];
        for (name, ty) in COLUMNS {
            let dt = match ty {
                "VARCHAR" => DataType::Utf8,
                "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, None),
                _ => DataType::Int64,
            };
            fields.push(Field::new(name, dt, true));
        }
        Arc::new(Schema::new(fields))
    }

    fn batch(&self, entries: &[Entry]) -> Result<RecordBatch, QueryError> {
        let s = |f: &dyn Fn(&Entry) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(entries.iter().map(f).collect::<Vec<_>>()))
        };
        let i = |f: &dyn Fn(&Entry) -> u64| -> ArrayRef {
            Arc::new(Int64Array::from(
                entries
                    .iter()
                    .map(|e| i64::try_from(f(e)).unwrap_or(i64::MAX))
                    .collect::<Vec<_>>(),
            ))
        };
        let key: ArrayRef = Arc::new(Int64Array::from(
            entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        ));
        let columns: Vec<ArrayRef> = vec![
            key,
            s(&|e| Some(e.tenant.clone())),
            s(&|e| Some(e.user.clone())),
            s(&|e| Some(e.client.clone())),
            s(&|e| Some(e.protocol.to_string())),
            s(&|e| Some(bounded_text(&e.r.text))),
            Arc::new(TimestampMicrosecondArray::from(
                entries.iter().map(|e| e.r.start_us).collect::<Vec<_>>(),
            )),
            i(&|e| e.r.wall_us),
            i(&|e| e.r.reading.cpu_us),
            i(&|e| e.r.reading.rows_scanned),
            i(&|e| e.r.reading.bytes_scanned),
            i(&|e| e.r.reading.bytes_decoded),
            i(&|e| e.r.rows_returned),
            i(&|e| e.r.rows_written),
            i(&|e| e.r.bytes_written),
            s(&|e| Some(e.result.clone())),
            s(&|e| e.error.clone()),
            Arc::new(Int64Array::from(
                entries
                    .iter()
                    .map(|e| e.bytes_stored.map(|b| i64::try_from(b).unwrap_or(i64::MAX)))
                    .collect::<Vec<_>>(),
            )),
        ];
        Ok(RecordBatch::try_new(Self::schema(), columns)?)
    }
}

impl StatementLog for ConnLog {
    fn record(&self, r: StatementRecord, error: Option<&QueryError>) {
        let (result, error) = match error {
            None => ("ok".to_string(), None),
            Some(e) => (crate::classify(e).1.to_string(), Some(e.to_string())),
        };
        let entry = Entry {
            id: self.log.next_id.fetch_add(1, Ordering::Relaxed),
            tenant: self.tenant.clone(),
            user: self.user.clone(),
            client: self.client.clone(),
            protocol: self.protocol,
            r,
            result,
            error,
            bytes_stored: None,
        };
        self.log.buffer().push(entry);
    }
}

impl journeydb_query::LogSource for QueryLog {
    fn log_engine(&self) -> Engine {
        self.engine()
    }
}

/// `text`, or its first [`TEXT_MAX`] bytes (cut at a character boundary) and its length.
fn bounded_text(text: &str) -> String {
    if text.len() <= TEXT_MAX {
        return text.to_string();
    }
    let mut end = TEXT_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", text.get(..end).unwrap_or(""), text.len())
}

/// `TIMESTAMP 'YYYY-MM-DD HH:MM:SS.ffffff'` for `us` µs since the epoch (UTC).
fn ts_literal(us: i64) -> String {
    let (days, rest) = (us.div_euclid(86_400_000_000), us.rem_euclid(86_400_000_000));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let secs = rest / 1_000_000;
    format!(
        "TIMESTAMP '{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:06}'",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        rest % 1_000_000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_texts_are_kept_by_their_head_and_length() {
        let short = "SELECT 1";
        assert_eq!(super::bounded_text(short), short);
        let long = format!("INSERT INTO t VALUES {}", "('é', 1), ".repeat(5000));
        let kept = super::bounded_text(&long);
        assert!(kept.len() < super::TEXT_MAX + 32, "{}", kept.len());
        assert!(kept.starts_with("INSERT INTO t VALUES ('é', 1)"));
        assert!(
            kept.ends_with(&format!("… ({} bytes)", long.len())),
            "{}",
            &kept[kept.len() - 40..]
        );
    }

    #[test]
    fn timestamp_literals() {
        assert_eq!(
            super::ts_literal(0),
            "TIMESTAMP '1970-01-01 00:00:00.000000'"
        );
        assert_eq!(
            super::ts_literal(1_767_225_600_000_001),
            "TIMESTAMP '2026-01-01 00:00:00.000001'"
        );
        assert_eq!(
            super::ts_literal(-1),
            "TIMESTAMP '1969-12-31 23:59:59.999999'"
        );
        assert_eq!(
            super::ts_literal(951_782_400_000_000 + 3_723_000_000),
            "TIMESTAMP '2000-02-29 01:02:03.000000'"
        );
    }
}
