//! Read batches converted to a table's column types.
//!
//! Rules (documented in `docs/IO.md`):
//! - TIMESTAMP ← Arrow/Parquet timestamps of any unit and zone (the instant, in UTC microseconds;
//!   nanoseconds floor), DATE (midnight UTC), text (`YYYY-MM-DD[ HH:MM:SS[.ffffff]][zone]`, or the
//!   `TIMESTAMPFORMAT` pattern).
//! - BIGINT ← any integer (an unsigned one above 2^63-1 is an error), a double with no fraction,
//!   decimal text. DOUBLE ← any integer, float or decimal, numeric text. BOOLEAN ← booleans,
//!   `true/false/t/f/yes/no/1/0`. VARCHAR ← text as is; numbers, booleans and timestamps as text.
//! - The key must be present in every row.
//!
//! Columns whose Arrow type already is the table's (Int64, Float64, Boolean, Utf8, microsecond
//! timestamps) pass through without a copy; only the others are converted value by value.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Float16Type, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, Int8Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use journeydb_storage::schema::ColumnType;
use journeydb_storage::text::{format_timestamp, parse_timestamp, US_PER_DAY};

use crate::read::Piece;
use crate::{IoError, Result};

/// The table a file is converted for.
#[derive(Debug, Clone)]
pub struct Target {
    /// Table name (for messages).
    pub table: String,
    /// The key column's name and type (BIGINT or VARCHAR).
    pub key: (String, ColumnType),
    /// The value columns a file may fill.
    pub columns: Vec<(String, ColumnType)>,
}

/// How to treat bad values.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// A strftime pattern for text timestamps (`%d/%m/%Y %H:%M`), instead of ISO 8601.
    pub timestamp_format: Option<String>,
    /// Rows that may be rejected (set aside with their reason) before the load fails; 0 makes the
    /// first bad value an error.
    pub max_errors: u64,
    /// Columns of the file that the table lacks are skipped instead of refused.
    pub ignore_extra_columns: bool,
}

/// A row set aside, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// `file, line N` / `file, row group G, row R`.
    pub at: String,
    /// The column whose value failed (empty for a row that could not be split).
    pub column: String,
    /// Why.
    pub reason: String,
}

/// Converts pieces for one target, counting rejects across them.
#[derive(Debug)]
pub struct Converter {
    target: Target,
    opts: ConvertOptions,
    rejected: u64,
}

impl Converter {
    /// A converter for `target`.
    pub fn new(target: Target, opts: ConvertOptions) -> Converter {
        Converter {
            target,
            opts,
            rejected: 0,
        }
    }

    /// Rows rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The piece's rows in the table's types (key first, then the file's columns that the table
    /// has), without its rejected rows, which come back with their reasons.
    pub fn convert(&mut self, piece: &Piece) -> Result<(RecordBatch, Vec<Reject>)> {
        let (key_idx, cols) = self.map_columns(piece)?;
        let mut errors: Vec<(usize, String, String)> = piece
            .bad
            .iter()
            .map(|(r, why)| (*r, String::new(), why.clone()))
            .collect();
        let (kname, kty) = &self.target.key;
        let key_src = piece.batch.column(key_idx);
        let (key, mut key_errs) = convert_array(key_src.as_ref(), *kty, &self.opts)?;
        for r in 0..key.len() {
            if key.is_null(r) && key_src.is_null(r) {
                key_errs.push((r, "the key is missing (NULL)".into()));
            }
        }
        errors.extend(key_errs.into_iter().map(|(r, e)| (r, kname.clone(), e)));
        let mut fields = vec![Field::new(kname, arrow_type(*kty), true)];
        let mut arrays = vec![key];
        for (src, name, ty) in cols {
            let (a, errs) = convert_array(piece.batch.column(src).as_ref(), ty, &self.opts)?;
            errors.extend(errs.into_iter().map(|(r, e)| (r, name.clone(), e)));
            fields.push(Field::new(name, arrow_type(ty), true));
            arrays.push(a);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| IoError::Invalid(e.to_string()))?;
        if errors.is_empty() {
            return Ok((batch, Vec::new()));
        }
        errors.sort_by_key(|(r, _, _)| *r);
        errors.dedup_by_key(|(r, _, _)| *r);
        let rejects: Vec<Reject> = errors
            .iter()
            .map(|(r, column, reason)| Reject {
                at: piece.at(*r),
                column: column.clone(),
                reason: reason.clone(),
            })
            .collect();
        if self.opts.max_errors == 0 {
            let first = rejects.into_iter().next();
            return Err(match first {
                Some(r) => IoError::Value {
                    at: r.at,
                    column: if r.column.is_empty() {
                        "-".into()
                    } else {
                        r.column
                    },
                    reason: r.reason,
                },
                None => IoError::Invalid("internal: no reject".into()),
            });
        }
        self.rejected += rejects.len() as u64;
        if self.rejected > self.opts.max_errors {
            return Err(IoError::TooManyErrors {
                count: self.rejected,
                max: self.opts.max_errors,
                first: rejects
                    .first()
                    .map(|r| format!("{}: {} {}", r.at, r.column, r.reason))
                    .unwrap_or_default(),
            });
        }
        let mut keep = vec![true; batch.num_rows()];
        for (r, _, _) in &errors {
            if let Some(k) = keep.get_mut(*r) {
                *k = false;
            }
        }
        let batch = arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(keep))
            .map_err(|e| IoError::Invalid(e.to_string()))?;
        Ok((batch, rejects))
    }

    /// The key's index in the piece and (index, name, type) of each value column it fills.
    fn map_columns(&self, piece: &Piece) -> Result<(usize, Vec<Mapped>)> {
        let schema = piece.batch.schema();
        let mut key = None;
        let mut cols = Vec::new();
        let mut extra = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            let name = f.name();
            if name.eq_ignore_ascii_case(&self.target.key.0) {
                key = Some(i);
            } else if let Some((n, t)) = self
                .target
                .columns
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                cols.push((i, n.clone(), *t));
            } else {
                extra.push(name.clone());
            }
        }
        if !extra.is_empty() && !self.opts.ignore_extra_columns {
            return Err(IoError::Invalid(format!(
                "{}: column(s) {} not in table {} (its columns: {}, {}); load a subset with a \
                 column list, or skip them with --ignore-extra-columns",
                piece.file.display(),
                extra.join(", "),
                self.target.table,
                self.target.key.0,
                self.target
                    .columns
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let key = key.ok_or_else(|| {
            IoError::Invalid(format!(
                "{}: no column {} (the key of table {})",
                piece.file.display(),
                self.target.key.0,
                self.target.table
            ))
        })?;
        Ok((key, cols))
    }
}

/// The Arrow type journeydb stores a column type as.
pub fn arrow_type(t: ColumnType) -> DataType {
    journeydb_storage::values::arrow_type(t)
}

/// A file column a table column takes: (index in the file, table column name, type).
type Mapped = (usize, String, ColumnType);

/// Row errors of one column: (row, reason).
pub(crate) type RowErrors = Vec<(usize, String)>;

/// Converts one array to `ty`: the converted array (NULL where a value failed) and the failures.
pub fn convert_array(
    a: &dyn Array,
    ty: ColumnType,
    opts: &ConvertOptions,
) -> Result<(ArrayRef, RowErrors)> {
    let dt = a.data_type();
    // Already the stored type: no copy.
    let same = match (ty, dt) {
        (ColumnType::Timestamp, DataType::Timestamp(TimeUnit::Microsecond, _)) => {
            let t = a
                .as_primitive::<TimestampMicrosecondType>()
                .clone()
                .with_timezone_opt(None::<Arc<str>>);
            return Ok((Arc::new(t), Vec::new()));
        }
        (ColumnType::Bigint, DataType::Int64)
        | (ColumnType::Double, DataType::Float64)
        | (ColumnType::Boolean, DataType::Boolean)
        | (ColumnType::Varchar, DataType::Utf8) => true,
        _ => false,
    };
    if same {
        return Ok((arrow_array::make_array(a.to_data()), Vec::new()));
    }
    let cells = Cells::new(a).ok_or_else(|| {
        IoError::Invalid(format!(
            "a column of type {dt} cannot be read into {}",
            type_name(ty)
        ))
    })?;
    let mut errs = Vec::new();
    let n = a.len();
    let out: ArrayRef = match ty {
        ColumnType::Timestamp => {
            let v: Vec<Option<i64>> = (0..n)
                .map(|r| keep(r, to_ts(cells.get(r), opts), &mut errs))
                .collect();
            Arc::new(TimestampMicrosecondArray::from(v))
        }
        ColumnType::Bigint => {
            let v: Vec<Option<i64>> = (0..n)
                .map(|r| keep(r, to_int(cells.get(r)), &mut errs))
                .collect();
            Arc::new(Int64Array::from(v))
        }
        ColumnType::Double => {
            let v: Vec<Option<f64>> = (0..n)
                .map(|r| keep(r, to_float(cells.get(r)), &mut errs))
                .collect();
            Arc::new(Float64Array::from(v))
        }
        ColumnType::Boolean => {
            let v: Vec<Option<bool>> = (0..n)
                .map(|r| keep(r, to_bool(cells.get(r)), &mut errs))
                .collect();
            Arc::new(BooleanArray::from(v))
        }
        ColumnType::Varchar => {
            let v: Vec<Option<String>> = (0..n)
                .map(|r| keep(r, to_text(cells.get(r)), &mut errs))
                .collect();
            Arc::new(StringArray::from(v))
        }
    };
    Ok((out, errs))
}

fn keep<T>(
    row: usize,
    r: std::result::Result<Option<T>, String>,
    errs: &mut RowErrors,
) -> Option<T> {
    match r {
        Ok(v) => v,
        Err(e) => {
            errs.push((row, e));
            None
        }
    }
}

/// The SQL name of a column type.
pub fn type_name(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Timestamp => "TIMESTAMP",
        ColumnType::Bigint => "BIGINT",
        ColumnType::Double => "DOUBLE",
        ColumnType::Boolean => "BOOLEAN",
        ColumnType::Varchar => "VARCHAR",
    }
}

/// One value of a source column.
#[derive(Debug, Clone, Copy)]
enum Cell<'a> {
    Null,
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Text(&'a str),
    /// µs since the epoch, UTC.
    Ts(i64),
    /// A decimal: unscaled value and scale.
    Dec(i128, i8),
}

/// Typed access to a source column's values.
enum Cells<'a> {
    Null,
    I8(&'a arrow_array::PrimitiveArray<Int8Type>),
    I16(&'a arrow_array::PrimitiveArray<Int16Type>),
    I32(&'a arrow_array::PrimitiveArray<Int32Type>),
    I64(&'a arrow_array::PrimitiveArray<Int64Type>),
    U8(&'a arrow_array::PrimitiveArray<UInt8Type>),
    U16(&'a arrow_array::PrimitiveArray<UInt16Type>),
    U32(&'a arrow_array::PrimitiveArray<UInt32Type>),
    U64(&'a arrow_array::PrimitiveArray<UInt64Type>),
    F16(&'a arrow_array::PrimitiveArray<Float16Type>),
    F32(&'a arrow_array::PrimitiveArray<Float32Type>),
    F64(&'a arrow_array::PrimitiveArray<Float64Type>),
    Bool(&'a BooleanArray),
    Utf8(&'a StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    /// Timestamps with their multiplier to µs (or divisor for ns: negative).
    TsS(&'a arrow_array::PrimitiveArray<TimestampSecondType>),
    TsMs(&'a arrow_array::PrimitiveArray<TimestampMillisecondType>),
    TsUs(&'a arrow_array::PrimitiveArray<TimestampMicrosecondType>),
    TsNs(&'a arrow_array::PrimitiveArray<TimestampNanosecondType>),
    D32(&'a arrow_array::PrimitiveArray<Date32Type>),
    D64(&'a arrow_array::PrimitiveArray<Date64Type>),
    Dec(&'a arrow_array::PrimitiveArray<Decimal128Type>, i8),
    /// Dictionary-encoded: keys into decoded values.
    Dict(Vec<Option<usize>>, Box<Cells<'a>>),
}

impl<'a> Cells<'a> {
    fn new(a: &'a dyn Array) -> Option<Cells<'a>> {
        Some(match a.data_type() {
            DataType::Null => Cells::Null,
            DataType::Int8 => Cells::I8(a.as_primitive()),
            DataType::Int16 => Cells::I16(a.as_primitive()),
            DataType::Int32 => Cells::I32(a.as_primitive()),
            DataType::Int64 => Cells::I64(a.as_primitive()),
            DataType::UInt8 => Cells::U8(a.as_primitive()),
            DataType::UInt16 => Cells::U16(a.as_primitive()),
            DataType::UInt32 => Cells::U32(a.as_primitive()),
            DataType::UInt64 => Cells::U64(a.as_primitive()),
            DataType::Float16 => Cells::F16(a.as_primitive()),
            DataType::Float32 => Cells::F32(a.as_primitive()),
            DataType::Float64 => Cells::F64(a.as_primitive()),
            DataType::Boolean => Cells::Bool(a.as_boolean()),
            DataType::Utf8 => Cells::Utf8(a.as_string::<i32>()),
            DataType::LargeUtf8 => Cells::LargeUtf8(a.as_string::<i64>()),
            DataType::Utf8View => Cells::View(a.as_string_view()),
            DataType::Timestamp(TimeUnit::Second, _) => Cells::TsS(a.as_primitive()),
            DataType::Timestamp(TimeUnit::Millisecond, _) => Cells::TsMs(a.as_primitive()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Cells::TsUs(a.as_primitive()),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => Cells::TsNs(a.as_primitive()),
            DataType::Date32 => Cells::D32(a.as_primitive()),
            DataType::Date64 => Cells::D64(a.as_primitive()),
            DataType::Decimal128(_, s) => Cells::Dec(a.as_primitive(), *s),
            DataType::Dictionary(_, _) => {
                let d = a.as_any_dictionary_opt()?;
                let keys = d.normalized_keys();
                let idx = (0..a.len())
                    .map(|r| (!a.is_null(r)).then(|| keys.get(r).copied()).flatten())
                    .collect();
                // The values outlive this borrow: they live in the dictionary array.
                let values: &'a dyn Array = d.values().as_ref();
                Cells::Dict(idx, Box::new(Cells::new(values)?))
            }
            _ => return None,
        })
    }

    fn get(&self, r: usize) -> Cell<'a> {
        fn p<T: arrow_array::ArrowPrimitiveType>(
            a: &arrow_array::PrimitiveArray<T>,
            r: usize,
        ) -> Option<T::Native> {
            (r < a.len() && a.is_valid(r)).then(|| a.value(r))
        }
        let c = match self {
            Cells::Null => None,
            Cells::I8(a) => p(a, r).map(|v| Cell::Int(v.into())),
            Cells::I16(a) => p(a, r).map(|v| Cell::Int(v.into())),
            Cells::I32(a) => p(a, r).map(|v| Cell::Int(v.into())),
            Cells::I64(a) => p(a, r).map(Cell::Int),
            Cells::U8(a) => p(a, r).map(|v| Cell::Int(v.into())),
            Cells::U16(a) => p(a, r).map(|v| Cell::Int(v.into())),
            Cells::U32(a) => p(a, r).map(|v| Cell::Int(v.into())),
            Cells::U64(a) => p(a, r).map(Cell::UInt),
            Cells::F16(a) => p(a, r).map(|v| Cell::Float(v.to_f64())),
            Cells::F32(a) => p(a, r).map(|v| Cell::Float(v.into())),
            Cells::F64(a) => p(a, r).map(Cell::Float),
            Cells::Bool(a) => (r < a.len() && a.is_valid(r)).then(|| Cell::Bool(a.value(r))),
            Cells::Utf8(a) => (r < a.len() && a.is_valid(r)).then(|| Cell::Text(a.value(r))),
            Cells::LargeUtf8(a) => (r < a.len() && a.is_valid(r)).then(|| Cell::Text(a.value(r))),
            Cells::View(a) => (r < a.len() && a.is_valid(r)).then(|| Cell::Text(a.value(r))),
            Cells::TsS(a) => p(a, r).map(|v| Cell::Ts(v.saturating_mul(1_000_000))),
            Cells::TsMs(a) => p(a, r).map(|v| Cell::Ts(v.saturating_mul(1000))),
            Cells::TsUs(a) => p(a, r).map(Cell::Ts),
            Cells::TsNs(a) => p(a, r).map(|v| Cell::Ts(v.div_euclid(1000))),
            Cells::D32(a) => p(a, r).map(|v| Cell::Ts(i64::from(v) * US_PER_DAY)),
            Cells::D64(a) => p(a, r).map(|v| Cell::Ts(v.saturating_mul(1000))),
            Cells::Dec(a, s) => p(a, r).map(|v| Cell::Dec(v, *s)),
            Cells::Dict(idx, values) => {
                return match idx.get(r).copied().flatten() {
                    Some(i) => values.get(i),
                    None => Cell::Null,
                }
            }
        };
        c.unwrap_or(Cell::Null)
    }
}

type Conv<T> = std::result::Result<Option<T>, String>;

fn show(c: Cell<'_>) -> String {
    match c {
        Cell::Null => "NULL".into(),
        Cell::Int(v) => v.to_string(),
        Cell::UInt(v) => v.to_string(),
        Cell::Float(v) => v.to_string(),
        Cell::Bool(v) => v.to_string(),
        Cell::Text(s) => format!("{s:?}"),
        Cell::Ts(v) => format_timestamp(v),
        Cell::Dec(v, s) => dec_text(v, s),
    }
}

fn dec_text(v: i128, scale: i8) -> String {
    if scale <= 0 {
        return (v * 10i128.pow(u32::from(scale.unsigned_abs()))).to_string();
    }
    let s = u32::from(scale.unsigned_abs());
    let p = 10i128.pow(s);
    let sign = if v < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:0width$}",
        (v / p).abs(),
        (v % p).abs(),
        width = s as usize
    )
}

fn mismatch<T>(c: Cell<'_>, ty: ColumnType) -> Conv<T> {
    Err(format!("{} is not a {}", show(c), type_name(ty)))
}

fn to_ts(c: Cell<'_>, opts: &ConvertOptions) -> Conv<i64> {
    match c {
        Cell::Null => Ok(None),
        Cell::Ts(v) => Ok(Some(v)),
        Cell::Text(s) => match &opts.timestamp_format {
            Some(f) => parse_with_format(s, f).map(Some),
            None => parse_timestamp(s).map(Some),
        },
        other => mismatch(other, ColumnType::Timestamp),
    }
}

/// A timestamp by a strftime pattern; without a zone in the pattern the time is UTC.
fn parse_with_format(s: &str, f: &str) -> std::result::Result<i64, String> {
    let bad = |e: chrono::ParseError| format!("{s:?} does not match TIMESTAMPFORMAT {f:?} ({e})");
    let t = s.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_str(t, f) {
        return Ok(dt.timestamp_micros());
    }
    match chrono::NaiveDateTime::parse_from_str(t, f) {
        Ok(dt) => Ok(dt.and_utc().timestamp_micros()),
        Err(e) => match chrono::NaiveDate::parse_from_str(t, f) {
            Ok(d) => Ok(d
                .and_time(chrono::NaiveTime::MIN)
                .and_utc()
                .timestamp_micros()),
            Err(_) => Err(bad(e)),
        },
    }
}

fn to_int(c: Cell<'_>) -> Conv<i64> {
    match c {
        Cell::Null => Ok(None),
        Cell::Int(v) => Ok(Some(v)),
        Cell::UInt(v) => i64::try_from(v)
            .map(Some)
            .map_err(|_| format!("{v} is out of the BIGINT range")),
        Cell::Float(v) if v.fract() == 0.0 && v.abs() < 9.2e18 => Ok(Some(v as i64)),
        Cell::Dec(v, s) if s <= 0 => i64::try_from(v * 10i128.pow(u32::from(s.unsigned_abs())))
            .map(Some)
            .map_err(|_| format!("{} is out of the BIGINT range", dec_text(v, s))),
        Cell::Text(s) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("{s:?} is not a BIGINT")),
        other => mismatch(other, ColumnType::Bigint),
    }
}

fn to_float(c: Cell<'_>) -> Conv<f64> {
    match c {
        Cell::Null => Ok(None),
        Cell::Int(v) => Ok(Some(v as f64)),
        Cell::UInt(v) => Ok(Some(v as f64)),
        Cell::Float(v) => Ok(Some(v)),
        Cell::Dec(v, s) => Ok(Some(v as f64 / 10f64.powi(i32::from(s)))),
        Cell::Text(s) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("{s:?} is not a DOUBLE")),
        other => mismatch(other, ColumnType::Double),
    }
}

fn to_bool(c: Cell<'_>) -> Conv<bool> {
    match c {
        Cell::Null => Ok(None),
        Cell::Bool(b) => Ok(Some(b)),
        Cell::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" => Ok(Some(true)),
            "false" | "f" | "no" | "n" | "0" => Ok(Some(false)),
            _ => Err(format!("{s:?} is not a BOOLEAN")),
        },
        other => mismatch(other, ColumnType::Boolean),
    }
}

fn to_text(c: Cell<'_>) -> Conv<String> {
    Ok(match c {
        Cell::Null => None,
        Cell::Text(s) => Some(s.to_string()),
        Cell::Ts(v) => Some(format_timestamp(v)),
        other => Some(show(other)),
    })
}

/// The column types a file's batch suggests, for a table created from it: Arrow types map
/// directly; text columns (CSV, JSON) take the narrowest type every value parses as (BIGINT,
/// DOUBLE, BOOLEAN, TIMESTAMP, else VARCHAR).
pub fn infer_columns(batch: &RecordBatch) -> Result<Vec<(String, ColumnType)>> {
    let schema = batch.schema();
    schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, a)| Ok((f.name().clone(), infer_type(f.name(), a.as_ref())?)))
        .collect()
}

fn infer_type(name: &str, a: &dyn Array) -> Result<ColumnType> {
    Ok(match a.data_type() {
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => ColumnType::Timestamp,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => ColumnType::Bigint,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnType::Double,
        DataType::Decimal128(_, s) if *s <= 0 => ColumnType::Bigint,
        DataType::Decimal128(..) => ColumnType::Double,
        DataType::Boolean => ColumnType::Boolean,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => infer_text(a),
        DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8) => {
            ColumnType::Varchar
        }
        other => {
            return Err(IoError::Invalid(format!(
                "column {name} has type {other}, which journeydb cannot store"
            )))
        }
    })
}

fn infer_text(a: &dyn Array) -> ColumnType {
    let Some(cells) = Cells::new(a) else {
        return ColumnType::Varchar;
    };
    let texts: Vec<&str> = (0..a.len())
        .filter_map(|r| match cells.get(r) {
            Cell::Text(s) => Some(s),
            _ => None,
        })
        .collect();
    let all = |f: &dyn Fn(&str) -> bool| !texts.is_empty() && texts.iter().all(|s| f(s));
    if all(&|s| s.trim().parse::<i64>().is_ok()) {
        ColumnType::Bigint
    } else if all(&|s| s.trim().parse::<f64>().is_ok()) {
        ColumnType::Double
    } else if all(&|s| matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "false")) {
        ColumnType::Boolean
    } else if all(&|s| s.len() >= 10 && parse_timestamp(s).is_ok()) {
        ColumnType::Timestamp
    } else {
        ColumnType::Varchar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_and_units_convert() {
        assert_eq!(dec_text(-12345, 2), "-123.45");
        assert_eq!(dec_text(5, 3), "0.005");
        let a = arrow_array::PrimitiveArray::<TimestampNanosecondType>::from(vec![Some(-1), None]);
        let (out, errs) = convert_array(&a, ColumnType::Timestamp, &ConvertOptions::default())
            .unwrap_or_else(|_| (Arc::new(Int64Array::from(vec![0])), vec![]));
        assert!(errs.is_empty());
        let t = out.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(
            t.value(0),
            -1,
            "nanoseconds floor to the microsecond before"
        );
        assert!(t.is_null(1));
        let s = StringArray::from(vec![Some("12"), Some("x"), None]);
        let (_, errs) = convert_array(&s, ColumnType::Bigint, &ConvertOptions::default())
            .unwrap_or_else(|_| (Arc::new(Int64Array::from(vec![0])), vec![]));
        assert_eq!(errs, vec![(1, "\"x\" is not a BIGINT".to_string())]);
    }
}
