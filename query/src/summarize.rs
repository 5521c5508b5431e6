//! DuckDB's `SUMMARIZE t`: per column its type, min, max, number of distinct values, average (of
//! numbers), row count and percentage of NULLs, in one aggregate over the table.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_storage::{ColumnType, Snapshot};

use crate::error::{QueryError, Result};
use crate::exec::run_query;
use crate::format::cell_text;
use crate::plan::{Agg, Expr, Load, Plan, QueryPlan, RelCol};
use crate::types::DType;

/// The aggregates of one value column: count, min, max, distinct, avg (numbers only).
const PER_COLUMN: usize = 5;
/// The aggregates of the whole table: count(*), min and max of the key.
const KEY_ITEMS: usize = 3;

/// `SUMMARIZE name` over `snap`.
pub fn summarize(snap: &Snapshot, name: &str) -> Result<RecordBatch> {
    let table = snap
        .table(name)
        .map_err(|_| QueryError::TableNotFound(name.to_string()))?;
    let schema = table.schema().clone();
    let key_type: DType = snap.key_type().into();
    let mut cols = vec![RelCol {
        name: schema.key_name.clone(),
        dtype: key_type,
        is_key: true,
    }];
    cols.extend(schema.columns.iter().map(|c| RelCol {
        name: c.name.clone(),
        dtype: c.ty.into(),
        is_key: false,
    }));
    let rel = |i: usize, dtype: DType| RelCol {
        name: format!("#{i}"),
        dtype,
        is_key: false,
    };
    let mut items = vec![
        (Agg::CountStar, rel(0, DType::Bigint)),
        (Agg::Min(Expr::Col(0)), rel(1, key_type)),
        (Agg::Max(Expr::Col(0)), rel(2, key_type)),
    ];
    for (i, c) in schema.columns.iter().enumerate() {
        let x = Expr::Col(i + 1);
        let t: DType = c.ty.into();
        let numeric = matches!(c.ty, ColumnType::Bigint | ColumnType::Double);
        items.push((Agg::Count(x.clone()), rel(items.len(), DType::Bigint)));
        items.push((Agg::Min(x.clone()), rel(items.len(), t)));
        items.push((Agg::Max(x.clone()), rel(items.len(), t)));
        items.push((
            Agg::CountDistinct(x.clone()),
            rel(items.len(), DType::Bigint),
        ));
        if numeric {
            items.push((Agg::Avg(x), rel(items.len(), DType::Double)));
        } else {
            items.push((
                Agg::Max(Expr::Lit(crate::types::Scalar::Null)),
                rel(items.len(), DType::Null),
            ));
        }
    }
    let plan = Plan::Aggregate {
        input: Box::new(Plan::Scan {
            load: vec![Load::Values; schema.columns.len()],
            table,
            cols,
        }),
        by_key: false,
        groups: Vec::new(),
        items,
    };
    let b = run_query(
        &QueryPlan {
            plan,
            order: Vec::new(),
            limit: None,
            offset: 0,
        },
        snap,
    )?;
    listing(&b, &schema, key_type)
}

/// One row per column from the aggregate row `b` (see [`summarize`]).
fn listing(
    b: &RecordBatch,
    schema: &journeydb_storage::TableSchema,
    key_type: DType,
) -> Result<RecordBatch> {
    let text = |i: usize| b.columns().get(i).and_then(|c| cell_text(c.as_ref(), 0));
    let int = |i: usize| text(i).and_then(|s| s.parse::<i64>().ok());
    let rows = int(0).unwrap_or(0);
    let pct = |nulls: i64| {
        if rows == 0 {
            None
        } else {
            Some((nulls as f64 * 10_000.0 / rows as f64).round() / 100.0)
        }
    };
    // The key: never NULL, every value distinct.
    let mut names = vec![schema.key_name.clone()];
    let mut types = vec![key_type.name().to_string()];
    let (mut mins, mut maxs, mut avgs) = (vec![text(1)], vec![text(2)], vec![None]);
    let mut distinct = vec![Some(rows)];
    let mut counts = vec![Some(rows)];
    let mut nulls = vec![pct(0)];
    for (i, c) in schema.columns.iter().enumerate() {
        let base = KEY_ITEMS + i * PER_COLUMN;
        names.push(c.name.clone());
        types.push(c.ty.sql_name().to_string());
        let present = int(base).unwrap_or(0);
        mins.push(text(base + 1));
        maxs.push(text(base + 2));
        distinct.push(int(base + 3));
        avgs.push(text(base + 4));
        counts.push(Some(rows));
        nulls.push(pct(rows - present));
    }
    let utf8 = |n: &str| Field::new(n, DataType::Utf8, true);
    let out = Schema::new(vec![
        utf8("column_name"),
        utf8("column_type"),
        utf8("min"),
        utf8("max"),
        Field::new("approx_unique", DataType::Int64, true),
        utf8("avg"),
        Field::new("count", DataType::Int64, true),
        Field::new("null_percentage", DataType::Float64, true),
    ]);
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(StringArray::from(types)),
        Arc::new(StringArray::from(mins)),
        Arc::new(StringArray::from(maxs)),
        Arc::new(Int64Array::from(distinct)),
        Arc::new(StringArray::from(avgs)),
        Arc::new(Int64Array::from(counts)),
        Arc::new(Float64Array::from(nulls)),
    ];
    Ok(RecordBatch::try_new(Arc::new(out), arrays)?)
}
