//! Reading files as Arrow batches that remember where their rows came from.
//!
//! Parquet and Arrow IPC keep their own types; CSV and JSON values arrive as text (`Utf8`) and the
//! converter parses them for the target column. A row that cannot even be split into columns (a CSV
//! line with the wrong number of fields, a JSON line that is not an object) is kept as an all-NULL
//! row listed in [`Piece::bad`], so `--max-errors` can set it aside like any other bad row.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};

use crate::{Format, IoError, Result};

/// Rows per batch read from CSV and JSON, and the batch size asked of Parquet.
pub const BATCH_ROWS: usize = 65_536;

/// How to read files.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The format; `None` takes it from each file's extension.
    pub format: Option<Format>,
    /// CSV: the first line names the columns.
    pub header: bool,
    /// CSV: the field delimiter.
    pub delimiter: u8,
    /// CSV: the quote character (doubled inside a quoted field).
    pub quote: u8,
    /// CSV: unquoted text that means NULL (an unquoted empty field is always NULL; a quoted field
    /// never is).
    pub null: String,
    /// CSV without a header: the names of the columns, in order (`column0..` when empty).
    pub columns: Vec<String>,
    /// Parquet: string columns as string views (`Utf8View`), whose values of up to 12 bytes are
    /// held inline, instead of `Utf8` (each value copied into one buffer). For readers that
    /// handle views (an event log's pivot).
    pub string_views: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            format: None,
            header: true,
            delimiter: b',',
            quote: b'"',
            null: String::new(),
            columns: Vec::new(),
            string_views: false,
        }
    }
}

/// Where a batch's rows came from in their file.
#[derive(Debug, Clone)]
pub enum Origin {
    /// CSV / JSON: the line each row starts on (1-based).
    Lines(Vec<u64>),
    /// Parquet: a row group and the index in it of the batch's first row.
    RowGroup {
        /// Row group (0-based).
        group: usize,
        /// First row of the batch within the group (0-based).
        first: u64,
    },
    /// Arrow IPC: a record batch of the file.
    Batch {
        /// Batch (0-based).
        index: usize,
    },
}

/// A batch of one file.
#[derive(Debug, Clone)]
pub struct Piece {
    /// The file.
    pub file: PathBuf,
    /// The rows.
    pub batch: RecordBatch,
    /// Where they came from.
    pub origin: Origin,
    /// Rows that could not be split into columns, with the reason (they are all NULL in `batch`).
    pub bad: Vec<(usize, String)>,
    /// Bytes of the file read so far (for progress).
    pub bytes_read: u64,
}

impl Piece {
    /// `file, line N` / `file, row group G, row R` / `file, batch B, row R` for row `row`.
    pub fn at(&self, row: usize) -> String {
        let f = self.file.display();
        match &self.origin {
            Origin::Lines(l) => match l.get(row) {
                Some(n) => format!("{f}, line {n}"),
                None => format!("{f}, row {row}"),
            },
            Origin::RowGroup { group, first } => {
                format!("{f}, row group {group}, row {}", first + row as u64)
            }
            Origin::Batch { index } => format!("{f}, batch {index}, row {row}"),
        }
    }
}

/// The format of `path`: the one asked for, else its extension's.
pub fn format_of(path: &Path, opts: &ReadOptions) -> Result<Format> {
    opts.format
        .or_else(|| Format::from_path(path))
        .ok_or_else(|| {
            IoError::Invalid(format!(
            "{}: cannot tell the format from the name; give FORMAT parquet | csv | json | arrow",
            path.display()
        ))
        })
}

/// Reads every file in turn.
pub fn read_files(files: Vec<PathBuf>, opts: ReadOptions) -> impl Iterator<Item = Result<Piece>> {
    files.into_iter().flat_map(move |f| match open(&f, &opts) {
        Ok(r) => r,
        Err(e) => Box::new(std::iter::once(Err(e))),
    })
}

/// The pieces of one file.
pub type Pieces = Box<dyn Iterator<Item = Result<Piece>> + Send>;

/// Opens one file for reading.
pub fn open(path: &Path, opts: &ReadOptions) -> Result<Pieces> {
    let file_err = |source| IoError::File {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(file_err)?;
    Ok(match format_of(path, opts)? {
        Format::Parquet => Box::new(ParquetPieces::new(path, file, opts.string_views)?),
        Format::Csv => Box::new(CsvPieces {
            path: path.to_path_buf(),
            input: CountingReader::new(file),
            opts: opts.clone(),
            names: None,
            line: 0,
            done: false,
        }),
        Format::Json => Box::new(JsonPieces::new(path, file)?),
        Format::Arrow => arrow_pieces(path, file)?,
    })
}

/// A reader that counts the bytes read through it.
struct CountingReader {
    inner: BufReader<File>,
    bytes: u64,
}

impl CountingReader {
    fn new(f: File) -> CountingReader {
        CountingReader {
            inner: BufReader::with_capacity(1 << 20, f),
            bytes: 0,
        }
    }

    /// One line with its terminator; empty at the end.
    fn line(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        let n = self.inner.read_until(b'\n', buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

fn format_err(path: &Path, reason: impl std::fmt::Display) -> IoError {
    IoError::Format {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// One step of a reader that stops for good at its end or at its first error.
fn fused(step: Result<Option<Piece>>, done: &mut bool) -> Option<Result<Piece>> {
    if !matches!(step, Ok(Some(_))) {
        *done = true;
    }
    step.transpose()
}

/// A batch of text columns (`Utf8`, nullable).
fn text_batch(
    names: &[String],
    cols: Vec<Vec<Option<String>>>,
    rows: usize,
) -> Result<RecordBatch> {
    let fields: Vec<Field> = names
        .iter()
        .map(|n| Field::new(n, DataType::Utf8, true))
        .collect();
    let arrays: Vec<ArrayRef> = cols
        .into_iter()
        .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
        .collect();
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| IoError::Invalid(e.to_string()))
}

// ---------------------------------------------------------------- CSV

/// CSV records split by hand rather than with the `csv` crate: journeydb needs to know whether a
/// field was quoted (`""` is an empty string, an empty unquoted field is NULL, as in PostgreSQL and
/// DuckDB), which that crate does not tell.
struct CsvPieces {
    path: PathBuf,
    input: CountingReader,
    opts: ReadOptions,
    names: Option<Vec<String>>,
    line: u64,
    done: bool,
}

/// A field: its text and whether it was quoted.
type CsvField = (String, bool);

/// A record's fields, or why it could not be split.
type Record = std::result::Result<Vec<CsvField>, String>;

impl CsvPieces {
    /// The next record (possibly spanning lines) and the line it starts on; `None` at the end.
    fn record(&mut self) -> Result<Option<(u64, Record)>> {
        let mut buf = Vec::new();
        let start = self.line + 1;
        loop {
            let n = self.input.line(&mut buf).map_err(|source| IoError::File {
                path: self.path.clone(),
                source,
            })?;
            if n == 0 {
                if buf.is_empty() {
                    return Ok(None);
                }
                break;
            }
            self.line += 1;
            if !open_quote(&buf, self.opts.quote) {
                break;
            }
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        if buf.is_empty() {
            // Blank lines are skipped.
            return self.record();
        }
        Ok(Some((
            start,
            split_record(&buf, self.opts.delimiter, self.opts.quote),
        )))
    }
}

/// True when `line` leaves a quoted field open (the record continues on the next line).
fn open_quote(line: &[u8], quote: u8) -> bool {
    line.iter().filter(|&&b| b == quote).count() % 2 == 1
}

/// Splits one record into fields (RFC 4180: quotes around a field, doubled inside it).
fn split_record(rec: &[u8], delim: u8, quote: u8) -> std::result::Result<Vec<CsvField>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let mut field = Vec::new();
        let mut quoted = false;
        if rec.get(i) == Some(&quote) {
            quoted = true;
            i += 1;
            loop {
                match rec.get(i) {
                    None => return Err("a quoted field is not closed".into()),
                    Some(&b) if b == quote => {
                        if rec.get(i + 1) == Some(&quote) {
                            field.push(quote);
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(&b) => {
                        field.push(b);
                        i += 1;
                    }
                }
            }
            match rec.get(i) {
                None => {}
                Some(&b) if b == delim => {}
                Some(_) => return Err("text after a closing quote".into()),
            }
        } else {
            while let Some(&b) = rec.get(i) {
                if b == delim {
                    break;
                }
                field.push(b);
                i += 1;
            }
        }
        let text = String::from_utf8(field).map_err(|_| "a field is not UTF-8".to_string())?;
        out.push((text, quoted));
        if rec.get(i) == Some(&delim) {
            i += 1;
            continue;
        }
        return Ok(out);
    }
}

impl Iterator for CsvPieces {
    type Item = Result<Piece>;

    fn next(&mut self) -> Option<Result<Piece>> {
        if self.done {
            return None;
        }
        fused(self.next_piece(), &mut self.done)
    }
}

impl CsvPieces {
    fn names(&mut self) -> Result<Option<Vec<String>>> {
        if let Some(n) = &self.names {
            return Ok(Some(n.clone()));
        }
        if self.opts.header {
            let Some((line, rec)) = self.record()? else {
                return Ok(None);
            };
            let rec = rec.map_err(|e| format_err(&self.path, format!("line {line}: {e}")))?;
            self.names = Some(rec.into_iter().map(|(t, _)| t.trim().to_string()).collect());
        } else if !self.opts.columns.is_empty() {
            self.names = Some(self.opts.columns.clone());
        }
        Ok(self.names.clone())
    }

    fn next_piece(&mut self) -> Result<Option<Piece>> {
        let mut names = self.names()?;
        let mut lines = Vec::new();
        let mut rows: Vec<Option<Vec<CsvField>>> = Vec::new();
        let mut bad = Vec::new();
        while rows.len() < BATCH_ROWS {
            let Some((line, rec)) = self.record()? else {
                break;
            };
            let names = names.get_or_insert_with(|| {
                // No header and no names: column0, column1, .. as DuckDB names them.
                let n = rec.as_ref().map_or(0, Vec::len);
                (0..n).map(|i| format!("column{i}")).collect()
            });
            lines.push(line);
            match rec {
                Ok(f) if f.len() == names.len() => rows.push(Some(f)),
                Ok(f) => {
                    bad.push((
                        rows.len(),
                        format!("{} fields for {} columns", f.len(), names.len()),
                    ));
                    rows.push(None);
                }
                Err(e) => {
                    bad.push((rows.len(), e));
                    rows.push(None);
                }
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let names = names.unwrap_or_default();
        self.names = Some(names.clone());
        let mut cols: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(rows.len()); names.len()];
        let n = rows.len();
        for r in rows {
            match r {
                Some(fields) => {
                    for ((text, quoted), col) in fields.into_iter().zip(cols.iter_mut()) {
                        let null = !quoted && (text.is_empty() || text == self.opts.null);
                        col.push((!null).then_some(text));
                    }
                }
                None => cols.iter_mut().for_each(|c| c.push(None)),
            }
        }
        Ok(Some(Piece {
            file: self.path.clone(),
            batch: text_batch(&names, cols, n)?,
            origin: Origin::Lines(lines),
            bad,
            bytes_read: self.input.bytes,
        }))
    }
}

// ---------------------------------------------------------------- JSON

/// Newline-delimited JSON objects (or one top-level array of objects). Values arrive as text:
/// strings as they are, numbers and booleans as written, nested values as JSON.
struct JsonPieces {
    path: PathBuf,
    input: CountingReader,
    /// The elements of a top-level array, when the file is one.
    array: Option<std::vec::IntoIter<serde_json::Value>>,
    line: u64,
    done: bool,
}

impl JsonPieces {
    fn new(path: &Path, file: File) -> Result<JsonPieces> {
        let mut input = CountingReader::new(file);
        let starts_with_array = {
            let buf = input.inner.fill_buf().map_err(|source| IoError::File {
                path: path.to_path_buf(),
                source,
            })?;
            buf.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
        };
        let array = if starts_with_array {
            let mut all = Vec::new();
            input
                .inner
                .read_to_end(&mut all)
                .map_err(|source| IoError::File {
                    path: path.to_path_buf(),
                    source,
                })?;
            input.bytes = all.len() as u64;
            let v: Vec<serde_json::Value> = serde_json::from_slice(&all)
                .map_err(|e| format_err(path, format!("not a JSON array of objects: {e}")))?;
            Some(v.into_iter())
        } else {
            None
        };
        Ok(JsonPieces {
            path: path.to_path_buf(),
            input,
            array,
            line: 0,
            done: false,
        })
    }

    /// The next value and its line (array element number for an array file).
    fn value(&mut self) -> Result<Option<(u64, std::result::Result<serde_json::Value, String>)>> {
        if let Some(a) = &mut self.array {
            self.line += 1;
            return Ok(a.next().map(|v| (self.line, Ok(v))));
        }
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = self.input.line(&mut buf).map_err(|source| IoError::File {
                path: self.path.clone(),
                source,
            })?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some((
                self.line,
                serde_json::from_slice(&buf).map_err(|e| format!("not JSON: {e}")),
            )));
        }
    }

    fn next_piece(&mut self) -> Result<Option<Piece>> {
        let mut names: Vec<String> = Vec::new();
        let mut rows: Vec<serde_json::Map<String, serde_json::Value>> = Vec::new();
        let mut lines = Vec::new();
        let mut bad = Vec::new();
        while rows.len() < BATCH_ROWS {
            let Some((line, v)) = self.value()? else {
                break;
            };
            lines.push(line);
            match v {
                Ok(serde_json::Value::Object(m)) => {
                    for k in m.keys() {
                        if !names.contains(k) {
                            names.push(k.clone());
                        }
                    }
                    rows.push(m);
                }
                Ok(_) => {
                    bad.push((rows.len(), "not a JSON object".to_string()));
                    rows.push(serde_json::Map::new());
                }
                Err(e) => {
                    bad.push((rows.len(), e));
                    rows.push(serde_json::Map::new());
                }
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let n = rows.len();
        let cols = names
            .iter()
            .map(|k| rows.iter().map(|r| r.get(k).and_then(json_text)).collect())
            .collect();
        Ok(Some(Piece {
            file: self.path.clone(),
            batch: text_batch(&names, cols, n)?,
            origin: Origin::Lines(lines),
            bad,
            bytes_read: self.input.bytes,
        }))
    }
}

fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl Iterator for JsonPieces {
    type Item = Result<Piece>;

    fn next(&mut self) -> Option<Result<Piece>> {
        if self.done {
            return None;
        }
        fused(self.next_piece(), &mut self.done)
    }
}

// ---------------------------------------------------------------- Parquet

/// Parquet read one row group at a time, so every row knows its group. A reader failure (or a
/// panic inside the Parquet crate on corrupt bytes) is a format error naming the file.
struct ParquetPieces {
    path: PathBuf,
    file: File,
    meta: ArrowReaderMetadata,
    group: usize,
    first: u64,
    reader: Option<parquet::arrow::arrow_reader::ParquetRecordBatchReader>,
    bytes_done: u64,
    done: bool,
}

impl ParquetPieces {
    fn new(path: &Path, file: File, string_views: bool) -> Result<ParquetPieces> {
        let meta = guarded(path, || {
            let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
                .map_err(|e| format_err(path, format!("not a readable Parquet file: {e}")))?;
            if !string_views {
                return Ok(meta);
            }
            let fields: Vec<Field> = meta
                .schema()
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Utf8 | DataType::LargeUtf8 => {
                        f.as_ref().clone().with_data_type(DataType::Utf8View)
                    }
                    _ => f.as_ref().clone(),
                })
                .collect();
            let hint = ArrowReaderOptions::new().with_schema(Arc::new(Schema::new(fields)));
            ArrowReaderMetadata::try_new(meta.metadata().clone(), hint)
                .map_err(|e| format_err(path, format!("not a readable Parquet file: {e}")))
        })?;
        Ok(ParquetPieces {
            path: path.to_path_buf(),
            file,
            meta,
            group: 0,
            first: 0,
            reader: None,
            bytes_done: 0,
            done: false,
        })
    }

    fn next_piece(&mut self) -> Result<Option<Piece>> {
        loop {
            if self.reader.is_none() {
                let groups = self.meta.metadata().num_row_groups();
                if self.group >= groups {
                    return Ok(None);
                }
                let f = self.file.try_clone().map_err(|source| IoError::File {
                    path: self.path.clone(),
                    source,
                })?;
                let (path, meta, group) = (&self.path, self.meta.clone(), self.group);
                let reader = guarded(path, || {
                    ParquetRecordBatchReaderBuilder::new_with_metadata(f, meta)
                        .with_row_groups(vec![group])
                        .with_batch_size(BATCH_ROWS)
                        .build()
                        .map_err(|e| format_err(path, format!("row group {group}: {e}")))
                })?;
                self.reader = Some(reader);
                self.first = 0;
            }
            let (path, group) = (self.path.clone(), self.group);
            let next = match &mut self.reader {
                Some(r) => guarded(&path, || {
                    r.next()
                        .transpose()
                        .map_err(|e| format_err(&path, format!("row group {group}: {e}")))
                })?,
                None => None,
            };
            match next {
                Some(batch) => {
                    let first = self.first;
                    self.first += batch.num_rows() as u64;
                    return Ok(Some(Piece {
                        file: self.path.clone(),
                        batch,
                        origin: Origin::RowGroup { group, first },
                        bad: Vec::new(),
                        bytes_read: self.bytes_done,
                    }));
                }
                None => {
                    self.bytes_done += self
                        .meta
                        .metadata()
                        .row_group(self.group)
                        .compressed_size()
                        .max(0) as u64;
                    self.reader = None;
                    self.group += 1;
                }
            }
        }
    }
}

impl Iterator for ParquetPieces {
    type Item = Result<Piece>;

    fn next(&mut self) -> Option<Result<Piece>> {
        if self.done {
            return None;
        }
        fused(self.next_piece(), &mut self.done)
    }
}

/// Runs a reader step, turning a panic of the third-party decoder on corrupt bytes into an error.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(format_err(path, "corrupt file (the decoder gave up)")))
}

// ---------------------------------------------------------------- Arrow IPC

fn arrow_pieces(path: &Path, mut file: File) -> Result<Pieces> {
    let mut magic = [0u8; 6];
    let is_file_format = file.read_exact(&mut magic).is_ok() && &magic == b"ARROW1";
    let file = File::open(path).map_err(|source| IoError::File {
        path: path.to_path_buf(),
        source,
    })?;
    let p = path.to_path_buf();
    let batches: Box<dyn Iterator<Item = std::result::Result<RecordBatch, String>> + Send> =
        if is_file_format {
            let r = arrow_ipc::reader::FileReader::try_new(BufReader::new(file), None)
                .map_err(|e| format_err(path, format!("not an Arrow IPC file: {e}")))?;
            Box::new(r.map(|b| b.map_err(|e| e.to_string())))
        } else {
            let r = arrow_ipc::reader::StreamReader::try_new(BufReader::new(file), None)
                .map_err(|e| format_err(path, format!("not an Arrow IPC file or stream: {e}")))?;
            Box::new(r.map(|b| b.map_err(|e| e.to_string())))
        };
    Ok(Box::new(batches.enumerate().map(move |(index, b)| {
        let batch = b.map_err(|e| format_err(&p, format!("batch {index}: {e}")))?;
        Ok(Piece {
            file: p.clone(),
            batch,
            origin: Origin::Batch { index },
            bad: Vec::new(),
            bytes_read: 0,
        })
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_keep_quoting() {
        let f = split_record(br#"a,"b,c","",,"x""y""#, b',', b'"').unwrap_or_default();
        assert_eq!(
            f,
            vec![
                ("a".to_string(), false),
                ("b,c".to_string(), true),
                (String::new(), true),
                (String::new(), false),
                ("x\"y".to_string(), true),
            ]
        );
        assert!(split_record(br#""open"#, b',', b'"').is_err());
        assert!(split_record(br#""a"b"#, b',', b'"').is_err());
    }
}
