//! Writing query results to files.
//!
//! Every writer writes to `NAME.tmp-PID` and renames it over `NAME` when finished, so a reader (or a
//! crash) never meets a half-written export. Formats:
//! - Parquet: zstd, row-group statistics, timestamps as `TIMESTAMP(MICROS, isAdjustedToUTC=true)`.
//! - CSV: a header line, RFC 4180 quoting; NULL is an empty field, an empty string is `""`;
//!   timestamps as `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC).
//! - JSON: one object per line; timestamps as that text; NaN and infinities as `null`.
//! - Arrow: an IPC file.
//!
//! [`Partitioned`] splits rows into `bucket=NN/part-00000.EXT` (Hive style) by [`bucket_of`].

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use journeydb_storage::text::format_timestamp;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::{Format, IoError, Result};

/// How to write.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// The format.
    pub format: Format,
    /// CSV: write a header line.
    pub header: bool,
    /// CSV: the delimiter.
    pub delimiter: u8,
}

impl WriteOptions {
    /// Defaults for `format`.
    pub fn new(format: Format) -> WriteOptions {
        WriteOptions {
            format,
            header: true,
            delimiter: b',',
        }
    }
}

/// A file being written.
pub trait Sink: Send {
    /// Appends rows.
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Completes the file and moves it to its name. Returns the bytes written.
    fn finish(self: Box<Self>) -> Result<u64>;
}

fn file_err(path: &Path) -> impl Fn(std::io::Error) -> IoError + '_ {
    move |source| IoError::File {
        path: path.to_path_buf(),
        source,
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(s)
}

/// Moves the finished temporary file over `path` and returns its size.
fn publish(tmp: &Path, path: &Path) -> Result<u64> {
    let size = std::fs::metadata(tmp).map_err(file_err(tmp))?.len();
    std::fs::rename(tmp, path).map_err(file_err(path))?;
    Ok(size)
}

/// Creates a file of `schema`'s rows at `path` (replacing it when finished).
pub fn create(path: &Path, schema: SchemaRef, opts: &WriteOptions) -> Result<Box<dyn Sink>> {
    let tmp = tmp_path(path);
    let file = File::create(&tmp).map_err(file_err(&tmp))?;
    let base = Base {
        path: path.to_path_buf(),
        tmp,
    };
    Ok(match opts.format {
        Format::Parquet => {
            // Statistics per row group (what readers prune with; per page costs more to write).
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .set_statistics_enabled(EnabledStatistics::Chunk)
                .build();
            let schema = utc_schema(&schema);
            let w = ArrowWriter::try_new(file, schema.clone(), Some(props))
                .map_err(|e| IoError::Invalid(format!("{}: {e}", path.display())))?;
            Box::new(ParquetSink { base, w, schema })
        }
        Format::Arrow => {
            let w = arrow_ipc::writer::FileWriter::try_new(BufWriter::new(file), &schema)
                .map_err(|e| IoError::Invalid(format!("{}: {e}", path.display())))?;
            Box::new(ArrowSink { base, w })
        }
        Format::Csv | Format::Json => {
            let mut out = BufWriter::with_capacity(1 << 20, file);
            if opts.format == Format::Csv && opts.header {
                let names: Vec<String> = schema
                    .fields()
                    .iter()
                    .map(|f| csv_field(f.name(), opts.delimiter))
                    .collect();
                let d = char::from(opts.delimiter).to_string();
                writeln!(out, "{}", names.join(&d)).map_err(file_err(&base.tmp))?;
            }
            Box::new(TextSink {
                base,
                out,
                json: opts.format == Format::Json,
                delimiter: opts.delimiter,
                names: schema.fields().iter().map(|f| f.name().clone()).collect(),
            })
        }
    })
}

struct Base {
    path: PathBuf,
    tmp: PathBuf,
}

impl Drop for Base {
    fn drop(&mut self) {
        // An unfinished file never stays behind.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Timestamps marked UTC, so Parquet readers see `isAdjustedToUTC = true`.
fn utc_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Timestamp(TimeUnit::Microsecond, _) => Field::new(
                    f.name(),
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    f.is_nullable(),
                ),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ))
}

fn utc_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let cols: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|a| match a.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, _) => Arc::new(
                a.as_primitive::<TimestampMicrosecondType>()
                    .clone()
                    .with_timezone("UTC"),
            ) as ArrayRef,
            _ => a.clone(),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| IoError::Invalid(e.to_string()))
}

struct ParquetSink {
    base: Base,
    w: ArrowWriter<File>,
    schema: SchemaRef,
}

impl Sink for ParquetSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let b = utc_batch(batch, &self.schema)?;
        self.w
            .write(&b)
            .map_err(|e| IoError::Invalid(format!("{}: {e}", self.base.path.display())))
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        let ParquetSink { base, w, .. } = *self;
        let file = w
            .into_inner()
            .map_err(|e| IoError::Invalid(format!("{}: {e}", base.path.display())))?;
        file.sync_all().map_err(file_err(&base.tmp))?;
        publish(&base.tmp, &base.path)
    }
}

struct ArrowSink {
    base: Base,
    w: arrow_ipc::writer::FileWriter<BufWriter<File>>,
}

impl Sink for ArrowSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.w
            .write(batch)
            .map_err(|e| IoError::Invalid(format!("{}: {e}", self.base.path.display())))
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        let ArrowSink { base, mut w } = *self;
        w.finish()
            .map_err(|e| IoError::Invalid(format!("{}: {e}", base.path.display())))?;
        let out = w
            .into_inner()
            .map_err(|e| IoError::Invalid(format!("{}: {e}", base.path.display())))?;
        let file = out
            .into_inner()
            .map_err(|e| IoError::Invalid(format!("{}: {e}", base.path.display())))?;
        file.sync_all().map_err(file_err(&base.tmp))?;
        publish(&base.tmp, &base.path)
    }
}

struct TextSink {
    base: Base,
    out: BufWriter<File>,
    json: bool,
    delimiter: u8,
    names: Vec<String>,
}

/// A CSV field, quoted when it holds the delimiter, a quote, a line break or surrounding spaces, or
/// is empty (an empty unquoted field is NULL).
fn csv_field(s: &str, delim: u8) -> String {
    let needs = s.is_empty()
        || s.bytes()
            .any(|b| b == delim || b == b'"' || b == b'\n' || b == b'\r')
        || s.starts_with(' ')
        || s.ends_with(' ');
    if needs {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One value as text (`None` for NULL); strings come back unquoted.
fn cell_text(a: &dyn Array, r: usize) -> Option<Text> {
    if a.is_null(r) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Utf8 => Text::Str(a.as_string::<i32>().value(r).to_string()),
        DataType::Int64 => Text::Num(a.as_primitive::<Int64Type>().value(r).to_string()),
        DataType::Float64 => {
            let v = a.as_primitive::<Float64Type>().value(r);
            Text::Float(v)
        }
        DataType::Boolean => Text::Num(a.as_boolean().value(r).to_string()),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Text::Str(format_timestamp(
            a.as_primitive::<TimestampMicrosecondType>().value(r),
        )),
        _ => Text::Str(format!("{:?}", a.slice(r, 1))),
    })
}

enum Text {
    Str(String),
    Num(String),
    Float(f64),
}

impl TextSink {
    fn row(&self, batch: &RecordBatch, r: usize, line: &mut String) {
        line.clear();
        if self.json {
            line.push('{');
        }
        for (i, (a, name)) in batch.columns().iter().zip(&self.names).enumerate() {
            if i > 0 {
                line.push(if self.json {
                    ','
                } else {
                    char::from(self.delimiter)
                });
            }
            let v = cell_text(a.as_ref(), r);
            if self.json {
                line.push_str(&serde_json::Value::String(name.clone()).to_string());
                line.push(':');
                match v {
                    None => line.push_str("null"),
                    Some(Text::Str(s)) => line.push_str(&serde_json::Value::String(s).to_string()),
                    Some(Text::Num(s)) => line.push_str(&s),
                    Some(Text::Float(f)) => match serde_json::Number::from_f64(f) {
                        Some(n) => line.push_str(&n.to_string()),
                        None => line.push_str("null"),
                    },
                }
            } else {
                match v {
                    None => {}
                    Some(Text::Str(s)) => line.push_str(&csv_field(&s, self.delimiter)),
                    Some(Text::Num(s)) => line.push_str(&s),
                    Some(Text::Float(f)) => line.push_str(&float_text(f)),
                }
            }
        }
        if self.json {
            line.push('}');
        }
        line.push('\n');
    }
}

/// A double as text that reads back to the same value (`inf`, `-inf`, `nan` as DuckDB reads them).
fn float_text(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{f:?}")
    }
}

impl Sink for TextSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut line = String::new();
        for r in 0..batch.num_rows() {
            self.row(batch, r, &mut line);
            self.out
                .write_all(line.as_bytes())
                .map_err(file_err(&self.base.tmp))?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        let TextSink { base, out, .. } = *self;
        let file = out.into_inner().map_err(|e| IoError::File {
            path: base.tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(file_err(&base.tmp))?;
        publish(&base.tmp, &base.path)
    }
}

/// The bucket of a customer key among `n` (documented in `docs/IO.md`): `splitmix64` of the key
/// (a BIGINT's two's-complement bits; a VARCHAR's FNV-1a 64 over its UTF-8 bytes), modulo `n`.
pub fn bucket_of_int(key: i64, n: u32) -> u32 {
    (splitmix64(key as u64) % u64::from(n.max(1))) as u32
}

/// [`bucket_of_int`] for a VARCHAR key.
pub fn bucket_of_str(key: &str, n: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (splitmix64(h) % u64::from(n.max(1))) as u32
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The bucket of every row, from the key column.
pub fn bucket_of(key: &dyn Array, n: u32) -> Result<Vec<u32>> {
    match key.data_type() {
        DataType::Int64 => {
            let a = key.as_primitive::<Int64Type>();
            Ok(a.values().iter().map(|&k| bucket_of_int(k, n)).collect())
        }
        DataType::Utf8 => {
            let a = key.as_string::<i32>();
            Ok((0..a.len()).map(|r| bucket_of_str(a.value(r), n)).collect())
        }
        other => Err(IoError::Invalid(format!(
            "a key of type {other} cannot be bucketed"
        ))),
    }
}

/// A directory of Hive-style buckets: `DIR/bucket=NN/part-00000.EXT`, rows by the bucket of their key
/// (the first column). Written into `DIR.tmp-PID` and renamed to `DIR` when finished; `DIR` must
/// not exist yet.
pub struct Partitioned {
    dir: PathBuf,
    tmp: PathBuf,
    n: u32,
    opts: WriteOptions,
    schema: SchemaRef,
    sinks: Vec<Option<Box<dyn Sink>>>,
    finished: bool,
}

impl Partitioned {
    /// Starts writing `n` buckets under `dir`.
    pub fn create(
        dir: &Path,
        n: u32,
        schema: SchemaRef,
        opts: &WriteOptions,
    ) -> Result<Partitioned> {
        if n == 0 || n > 100_000 {
            return Err(IoError::Invalid(format!("{n} buckets: use 1 to 100000")));
        }
        if dir.exists() {
            return Err(IoError::Invalid(format!(
                "{} exists; a partitioned export writes a new directory",
                dir.display()
            )));
        }
        let tmp = tmp_path(dir);
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(file_err(&tmp))?;
        Ok(Partitioned {
            dir: dir.to_path_buf(),
            tmp,
            n,
            opts: opts.clone(),
            schema,
            sinks: (0..n).map(|_| None).collect(),
            finished: false,
        })
    }

    fn bucket_dir(&self, b: u32) -> PathBuf {
        let width = (self.n.saturating_sub(1)).to_string().len().max(2);
        self.tmp.join(format!("bucket={b:0width$}"))
    }

    /// Appends rows, each to its bucket's file.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let buckets = bucket_of(batch.column(0).as_ref(), self.n)?;
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); self.n as usize];
        for (r, b) in buckets.iter().enumerate() {
            if let Some(v) = rows.get_mut(*b as usize) {
                v.push(r as u32);
            }
        }
        for (b, idx) in rows.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let part = arrow_select::take::take_record_batch(batch, &UInt32Array::from(idx))
                .map_err(|e| IoError::Invalid(e.to_string()))?;
            if self.sinks.get(b).is_some_and(Option::is_none) {
                let d = self.bucket_dir(b as u32);
                std::fs::create_dir_all(&d).map_err(file_err(&d))?;
                let f = d.join(format!("part-00000.{}", self.opts.format.name()));
                let sink = create(&f, self.schema.clone(), &self.opts)?;
                if let Some(s) = self.sinks.get_mut(b) {
                    *s = Some(sink);
                }
            }
            if let Some(Some(s)) = self.sinks.get_mut(b) {
                s.write(&part)?;
            }
        }
        Ok(())
    }

    /// Completes every bucket and renames the directory into place. Returns the bytes written.
    pub fn finish(mut self) -> Result<u64> {
        let mut bytes = 0;
        for s in self.sinks.iter_mut() {
            if let Some(s) = s.take() {
                bytes += s.finish()?;
            }
        }
        std::fs::rename(&self.tmp, &self.dir).map_err(file_err(&self.dir))?;
        self.finished = true;
        Ok(bytes)
    }
}

impl Sink for Partitioned {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        Partitioned::write(self, batch)
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        Partitioned::finish(*self)
    }
}

impl Drop for Partitioned {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}
