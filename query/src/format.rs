//! Text forms of results: one cell's text (shared by the shell, the test runner and the PostgreSQL
//! wire protocol), and whole batches as an aligned table, CSV or JSON lines.

use arrow_array::{
    Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::DataType;

use crate::types::format_timestamp;

/// Text of a DOUBLE as DuckDB prints it (`2.0`, `0.5`, `inf`, `nan`).
pub fn double_text(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// The text of row `i` of `a`, or `None` for NULL.
pub fn cell_text(a: &dyn Array, i: usize) -> Option<String> {
    if a.is_null(i) || i >= a.len() {
        return None;
    }
    let any = a.as_any();
    Some(match a.data_type() {
        DataType::Timestamp(_, _) => {
            format_timestamp(any.downcast_ref::<TimestampMicrosecondArray>()?.value(i))
        }
        DataType::Int64 => any.downcast_ref::<Int64Array>()?.value(i).to_string(),
        DataType::Float64 => double_text(any.downcast_ref::<Float64Array>()?.value(i)),
        DataType::Boolean => any.downcast_ref::<BooleanArray>()?.value(i).to_string(),
        DataType::Utf8 => any.downcast_ref::<StringArray>()?.value(i).to_string(),
        DataType::Null => return None,
        DataType::Interval(arrow_schema::IntervalUnit::MonthDayNano) => {
            let v = any
                .downcast_ref::<arrow_array::IntervalMonthDayNanoArray>()?
                .value(i);
            let us = i64::from(v.days)
                .saturating_mul(crate::types::US_PER_DAY)
                .saturating_add(v.nanoseconds / 1000);
            let time = crate::func::interval_text(us);
            match v.months {
                0 => time,
                m => format!("{m} month{} {time}", if m.abs() == 1 { "" } else { "s" }),
            }
        }
        other => format!("<{other}>"),
    })
}

/// The batch as an aligned text table with a header and a row count.
pub fn table(b: &RecordBatch) -> String {
    let schema = b.schema();
    let headers: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let rows: Vec<Vec<String>> = (0..b.num_rows())
        .map(|r| {
            b.columns()
                .iter()
                .map(|c| cell_text(c.as_ref(), r).unwrap_or_else(|| "NULL".into()))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, v) in widths.iter_mut().zip(row) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c:<w$} "))
            .collect::<Vec<_>>()
            .join("|")
            .trim_end()
            .to_string()
    };
    let mut out = line(&headers);
    out.push('\n');
    out.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+"),
    );
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out.push_str(&format!(
        "({} row{})\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    ));
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The batch as CSV with a header line; NULL is an empty field.
pub fn csv(b: &RecordBatch) -> String {
    let schema = b.schema();
    let mut out = schema
        .fields()
        .iter()
        .map(|f| csv_field(f.name()))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for r in 0..b.num_rows() {
        let row: Vec<String> = b
            .columns()
            .iter()
            .map(|c| {
                cell_text(c.as_ref(), r)
                    .map(|v| csv_field(&v))
                    .unwrap_or_default()
            })
            .collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The batch as JSON lines: one object per row.
pub fn json(b: &RecordBatch) -> String {
    let schema = b.schema();
    let mut out = String::new();
    for r in 0..b.num_rows() {
        let fields: Vec<String> = schema
            .fields()
            .iter()
            .zip(b.columns())
            .map(|(f, c)| {
                let v = match (cell_text(c.as_ref(), r), c.data_type()) {
                    (None, _) => "null".to_string(),
                    (Some(v), DataType::Int64 | DataType::Boolean) => v,
                    (Some(v), DataType::Float64) if v.parse::<f64>().is_ok_and(f64::is_finite) => v,
                    (Some(v), _) => json_str(&v),
                };
                format!("{}:{v}", json_str(f.name()))
            })
            .collect();
        out.push('{');
        out.push_str(&fields.join(","));
        out.push_str("}\n");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use arrow_array::ArrayRef;
    use arrow_schema::{Field, Schema};

    use super::*;

    #[test]
    fn formats_cells_like_duckdb() {
        assert_eq!(double_text(2.0), "2.0");
        assert_eq!(double_text(0.5), "0.5");
        let b = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("a", DataType::Utf8, true),
                Field::new("n", DataType::Int64, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec![Some("x,\"y\""), None])) as ArrayRef,
                Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
            ],
        )
        .unwrap();
        assert_eq!(csv(&b), "a,n\n\"x,\"\"y\"\"\",1\n,\n");
        assert_eq!(
            json(&b),
            "{\"a\":\"x,\\\"y\\\"\",\"n\":1}\n{\"a\":null,\"n\":null}\n"
        );
        assert!(table(&b).contains("(2 rows)"));
    }
}
