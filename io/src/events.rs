//! Event logs (`customer_id, event, time, ..`) pivoted into one row per customer: a `MIN`
//! TIMESTAMP column per event value (the first occurrence) and, when asked, a `SUM` BIGINT count
//! column `<event>_count`. Each event becomes a row that sets its event's columns; the table's
//! merge rules fold the rows of a customer, so a pivot is an ordinary bulk load.
//!
//! Column names come from event values: lower-cased, every character outside `[a-z0-9_]` replaced
//! by `_`, and `e_` put in front of a name that would start with a digit or be empty.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{Field, Schema};
use journeydb_storage::schema::ColumnType;

use crate::convert::{arrow_type, convert_array, ConvertOptions, Reject};
use crate::read::Piece;
use crate::{IoError, Result};

/// Which columns of the log hold what.
#[derive(Debug, Clone)]
pub struct EventSpec {
    /// The customer key column (named like the table's key in the output).
    pub key: String,
    /// The table's key column name.
    pub table_key: String,
    /// The key's type (BIGINT or VARCHAR).
    pub key_type: ColumnType,
    /// The event name column.
    pub event: String,
    /// The event time column.
    pub time: String,
    /// Also count events per customer (`<event>_count`, SUM).
    pub count: bool,
}

/// The column an event value becomes.
pub fn event_column(value: &str) -> String {
    let mut s: String = value
        .trim()
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "e_");
    }
    s
}

/// The columns (name, type, rule name) a pivot of these event columns writes.
pub fn columns_for(events: &[String], count: bool) -> Vec<(String, ColumnType, &'static str)> {
    let mut out = Vec::new();
    for e in events {
        out.push((e.clone(), ColumnType::Timestamp, "MIN"));
        if count {
            out.push((format!("{e}_count"), ColumnType::Bigint, "SUM"));
        }
    }
    out
}

fn col_index(piece: &Piece, name: &str) -> Result<usize> {
    piece
        .batch
        .schema()
        .fields()
        .iter()
        .position(|f| f.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| IoError::Invalid(format!("{}: no column {name}", piece.file.display())))
}

/// Pivots one piece: one batch per event column of the piece (the key, the event's time and, with
/// counts, a 1, for each of its rows), the event columns, and the rows set aside.
/// `max_errors == 0` makes the first bad row an error; `rejected` counts rejects across pieces.
pub fn pivot(
    piece: &Piece,
    spec: &EventSpec,
    opts: &ConvertOptions,
    rejected: &mut u64,
) -> Result<(Vec<RecordBatch>, Vec<String>, Vec<Reject>)> {
    let (ki, ei, ti) = (
        col_index(piece, &spec.key)?,
        col_index(piece, &spec.event)?,
        col_index(piece, &spec.time)?,
    );
    let (key, kerr) = convert_array(piece.batch.column(ki).as_ref(), spec.key_type, opts)?;
    let (event, eerr) = convert_array(piece.batch.column(ei).as_ref(), ColumnType::Varchar, opts)?;
    let (time, terr) = convert_array(piece.batch.column(ti).as_ref(), ColumnType::Timestamp, opts)?;
    let bad = bad_rows(piece, spec, [(&key, kerr), (&event, eerr), (&time, terr)]);
    let rejects: Vec<Reject> = bad
        .iter()
        .map(|(r, (column, reason))| Reject {
            at: piece.at(*r),
            column: column.clone(),
            reason: reason.clone(),
        })
        .collect();
    check_rejects(&rejects, opts, rejected)?;
    let names = event
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .ok_or_else(|| IoError::Invalid("internal: event names".into()))?;
    let times = time
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| IoError::Invalid("internal: event times".into()))?;
    // Rows per event column. A log has few event names: each row's is found by a check of the
    // previous row's, then a scan of the names seen in this piece (each made a column name once).
    let mut seen: Vec<(&str, usize)> = Vec::new();
    let mut last: Option<(&str, usize)> = None;
    let mut cols: Vec<(String, Vec<u32>)> = Vec::new();
    for r in 0..piece.batch.num_rows() {
        if !bad.is_empty() && bad.contains_key(&r) {
            continue;
        }
        let name = names.value(r);
        let i = match last {
            Some((l, i)) if l == name => i,
            _ => match seen.iter().find(|(s, _)| *s == name) {
                Some(&(_, i)) => i,
                None => {
                    let col = event_column(name);
                    let i = match cols.iter().position(|(c, _)| *c == col) {
                        Some(i) => i,
                        None => {
                            cols.push((col, Vec::new()));
                            cols.len() - 1
                        }
                    };
                    seen.push((name, i));
                    i
                }
            },
        };
        last = Some((name, i));
        if let Some((_, rows)) = cols.get_mut(i) {
            rows.push(r as u32);
        }
    }
    // One dense batch per event column: its rows' keys, times and (with counts) ones.
    let mut batches = Vec::with_capacity(cols.len());
    let mut events = Vec::with_capacity(cols.len());
    for (col, rows) in cols {
        let idx = arrow_array::UInt32Array::from(rows);
        let take = |a: &dyn Array| {
            arrow_select::take::take(a, &idx, None).map_err(|e| IoError::Invalid(e.to_string()))
        };
        let mut fields = vec![
            Field::new(&spec.table_key, arrow_type(spec.key_type), true),
            Field::new(&col, arrow_type(ColumnType::Timestamp), true),
        ];
        let mut arrays: Vec<ArrayRef> = vec![take(key.as_ref())?, take(times)?];
        if spec.count {
            fields.push(Field::new(
                format!("{col}_count"),
                arrow_type(ColumnType::Bigint),
                true,
            ));
            arrays.push(Arc::new(Int64Array::from(vec![1i64; idx.len()])));
        }
        batches.push(
            RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
                .map_err(|e| IoError::Invalid(e.to_string()))?,
        );
        events.push(col);
    }
    Ok((batches, events, rejects))
}

/// The rows a pivot sets aside (row → column, reason): rows that could not be split, values that
/// do not convert, and NULL keys, events or times.
fn bad_rows(
    piece: &Piece,
    spec: &EventSpec,
    cols: [(&ArrayRef, Vec<(usize, String)>); 3],
) -> BTreeMap<usize, (String, String)> {
    let mut bad: BTreeMap<usize, (String, String)> = BTreeMap::new();
    for (r, why) in &piece.bad {
        bad.entry(*r).or_insert((String::new(), why.clone()));
    }
    let names = [&spec.key, &spec.event, &spec.time];
    for ((a, errs), name) in cols.into_iter().zip(names) {
        for (r, why) in errs {
            bad.entry(r).or_insert((name.clone(), why));
        }
        let Some(nulls) = a.nulls().filter(|n| n.null_count() > 0) else {
            continue;
        };
        for r in 0..a.len() {
            if nulls.is_null(r) {
                bad.entry(r)
                    .or_insert((name.clone(), "missing (NULL)".into()));
            }
        }
    }
    bad
}

/// An error for the first reject when none are allowed, or when the total passes the limit.
fn check_rejects(rejects: &[Reject], opts: &ConvertOptions, rejected: &mut u64) -> Result<()> {
    let Some(first) = rejects.first() else {
        return Ok(());
    };
    if opts.max_errors == 0 {
        return Err(IoError::Value {
            at: first.at.clone(),
            column: first.column.clone(),
            reason: first.reason.clone(),
        });
    }
    *rejected += rejects.len() as u64;
    if *rejected > opts.max_errors {
        return Err(IoError::TooManyErrors {
            count: *rejected,
            max: opts.max_errors,
            first: format!("{}: {} {}", first.at, first.column, first.reason),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_become_columns() {
        assert_eq!(event_column("Add to Cart"), "add_to_cart");
        assert_eq!(event_column("3ds"), "e_3ds");
        assert_eq!(event_column(""), "e_");
        assert_eq!(event_column("é"), "_");
    }
}
