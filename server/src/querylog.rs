//! The query log (`system.queries`): every statement a connection runs, with who ran it, from
//! where, over which protocol, its text, times, what it scanned, decoded, returned and wrote, and
//! its result (`ok` or the SQLSTATE), stored in the database itself as table
//! [`QUERY_LOG_TABLE`] so that SQL reads it (`SELECT .. FROM system.queries`).
//!
//! Connections hand their records to a buffer; a thread of the server appends the buffer as one
//! batch every second (one WAL fsync a second, not one a statement) and once more at stop. A crash
//! can therefore lose the last second of the log, never a statement's own effects. Rows older than
//! `--query-log-days` are removed by rewriting the table (`CREATE OR REPLACE .. AS SELECT` of the
//! rows kept) once an hour and at start; only that thread writes the table, so no record is lost
//! to the rewrite.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use journeydb_query::KeyType;
use journeydb_query::{Engine, QueryError, StatementLog, StatementRecord, QUERY_LOG_TABLE};

/// Columns of the log, after the key `query_id`: name and SQL type.
const COLUMNS: [(&str, &str); 16] = [
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
];

/// How often the buffer is appended, and how often old rows are removed.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const RETAIN_EVERY: Duration = Duration::from_secs(3600);

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
}

/// The server's query log.
#[derive(Debug)]
pub struct QueryLog {
    engine: Engine,
    key_type: KeyType,
    retention_days: u32,
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

impl QueryLog {
    /// The log of `engine`'s database, its table created if missing and rows older than
    /// `retention_days` removed.
    pub fn open(engine: &Engine, retention_days: u32) -> Result<QueryLog, QueryError> {
        let engine = engine.session();
        let key_type = engine.database().snapshot().key_type();
        let key = match key_type {
            KeyType::Varchar => "VARCHAR",
            KeyType::Bigint => "BIGINT",
        };
        let cols: Vec<String> = COLUMNS.iter().map(|(n, t)| format!("{n} {t}")).collect();
        engine.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {QUERY_LOG_TABLE} (query_id {key} PRIMARY KEY, {})",
            cols.join(", ")
        ))?;
        // Ids grow from the start time in µs: unique across restarts while the clock moves on.
        let now = journeydb_query::engine::now_epoch_us();
        let log = QueryLog {
            engine,
            key_type,
            retention_days,
            buf: Mutex::new(Vec::new()),
            next_id: AtomicI64::new(now),
        };
        log.retain()?;
        Ok(log)
    }

    /// The recorder of one connection.
    pub fn connection(
        self: &Arc<Self>,
        user: &str,
        client: String,
        protocol: &'static str,
    ) -> Arc<ConnLog> {
        Arc::new(ConnLog {
            log: self.clone(),
            tenant: "default".into(),
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
        self.engine
            .database()
            .append(QUERY_LOG_TABLE, &batch)
            .map_err(QueryError::Storage)?;
        Ok(())
    }

    /// Removes the rows older than the retention.
    fn retain(&self) -> Result<(), QueryError> {
        let cutoff = ts_literal(
            journeydb_query::engine::now_epoch_us()
                - i64::from(self.retention_days) * 86_400_000_000,
        );
        let old = self.engine.query(&format!(
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
        if any_old {
            let cols: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
            self.engine.execute(&format!(
                "CREATE OR REPLACE TABLE {QUERY_LOG_TABLE} AS SELECT query_id, {} FROM {QUERY_LOG_TABLE} WHERE started_at >= {cutoff}",
                cols.join(", ")
            ))?;
        }
        Ok(())
    }

    /// The flushing thread's loop, until `stop`; a last flush at the end.
    pub fn run(&self, stop: &std::sync::atomic::AtomicBool) {
        let (mut retained, mut flushed) = (Instant::now(), Instant::now());
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            if flushed.elapsed() >= FLUSH_EVERY || self.buffer().len() >= 10_000 {
                self.report(self.flush());
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
        let key: ArrayRef = match self.key_type {
            KeyType::Varchar => Arc::new(StringArray::from(
                entries
                    .iter()
                    .map(|e| format!("{:020}", e.id))
                    .collect::<Vec<_>>(),
            )),
            KeyType::Bigint => Arc::new(Int64Array::from(
                entries.iter().map(|e| e.id).collect::<Vec<_>>(),
            )),
        };
        let columns: Vec<ArrayRef> = vec![
            key,
            s(&|e| Some(e.tenant.clone())),
            s(&|e| Some(e.user.clone())),
            s(&|e| Some(e.client.clone())),
            s(&|e| Some(e.protocol.to_string())),
            s(&|e| Some(e.r.text.clone())),
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
        ];
        let key_type = match self.key_type {
            KeyType::Varchar => DataType::Utf8,
            KeyType::Bigint => DataType::Int64,
        };
        let mut fields = vec![Field::new("query_id", key_type, false)];
        for (name, ty) in COLUMNS {
            let dt = match ty {
                "VARCHAR" => DataType::Utf8,
                "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, None),
                _ => DataType::Int64,
            };
            fields.push(Field::new(name, dt, true));
        }
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
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
        };
        self.log.buffer().push(entry);
    }
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
