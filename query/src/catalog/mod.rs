//! The catalog PostgreSQL clients read: `pg_catalog` and `information_schema` relations over
//! journeydb's tables (`relations`), and the small row-at-a-time evaluator that runs queries over
//! them and queries without FROM (`eval`), so psql's `\d` family, drivers' connect-time queries
//! and BI tools' introspection answer truthfully: a table created a moment ago shows up with its
//! columns and types, with no special case for any query text.

pub mod eval;
pub mod relations;
pub mod value;

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_storage::Snapshot;
use sqlparser::ast;

use crate::error::Result;
use value::V;

/// Whether a query goes to the catalog evaluator: it reads a `pg_catalog` or `information_schema`
/// relation, or has a SELECT without FROM.
pub fn is_catalog_query(q: &ast::Query) -> bool {
    set_expr_uses_catalog(&q.body)
}

#[recursive::recursive]
fn set_expr_uses_catalog(s: &ast::SetExpr) -> bool {
    match s {
        ast::SetExpr::Select(sel) => {
            sel.from.is_empty()
                || sel.from.iter().any(|t| {
                    factor_uses_catalog(&t.relation)
                        || t.joins.iter().any(|j| factor_uses_catalog(&j.relation))
                })
        }
        ast::SetExpr::Query(q) => is_catalog_query(q),
        ast::SetExpr::SetOperation { left, right, .. } => {
            set_expr_uses_catalog(left) || set_expr_uses_catalog(right)
        }
        ast::SetExpr::Values(_) => true,
        _ => false,
    }
}

#[recursive::recursive]
fn factor_uses_catalog(f: &ast::TableFactor) -> bool {
    match f {
        ast::TableFactor::Table { name, args, .. } => {
            if args.is_some() {
                // Table functions of the catalog (generate_series, ..); the file readers are the
                // main engine's.
                let fname = name.to_string();
                return crate::files::table_function_format(&fname).is_none();
            }
            let parts: Vec<String> = name
                .0
                .iter()
                .map(|p| p.to_string().to_ascii_lowercase())
                .collect();
            match parts.as_slice() {
                [t] => relations::is_catalog_name(t),
                [s, _] | [_, s, _] => s == "pg_catalog" || s == "information_schema",
                _ => false,
            }
        }
        ast::TableFactor::Derived { subquery, .. } => is_catalog_query(subquery),
        ast::TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            factor_uses_catalog(&table_with_joins.relation)
                || table_with_joins
                    .joins
                    .iter()
                    .any(|j| factor_uses_catalog(&j.relation))
        }
        _ => false,
    }
}

/// Runs a catalog query against `snap`.
pub fn run(
    q: &ast::Query,
    snap: &Snapshot,
    setting: &dyn Fn(&str) -> Option<String>,
    now_us: i64,
) -> Result<RecordBatch> {
    let tables = relations::tables(snap)?;
    let env = eval::Env {
        tables: &tables,
        setting,
        now: crate::types::format_timestamp(now_us),
    };
    let rows = eval::query(q, &env)?;
    to_batch(rows)
}

/// The rows as Arrow: a column whose values are all integers is BIGINT, all floats DOUBLE, all
/// booleans BOOLEAN, anything else (or no value at all) VARCHAR.
fn to_batch(r: eval::Rows) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(r.names.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(r.names.len());
    for (i, name) in r.names.iter().enumerate() {
        let col: Vec<&V> = r
            .rows
            .iter()
            .map(|row| row.get(i).unwrap_or(&V::Null))
            .collect();
        let non_null = || col.iter().filter(|v| !matches!(v, V::Null));
        let (dt, array): (DataType, ArrayRef) =
            if non_null().count() > 0 && non_null().all(|v| matches!(v, V::Int(_))) {
                (
                    DataType::Int64,
                    Arc::new(Int64Array::from(
                        col.iter()
                            .map(|v| match v {
                                V::Int(i) => Some(*i),
                                _ => None,
                            })
                            .collect::<Vec<_>>(),
                    )),
                )
            } else if non_null().count() > 0 && non_null().all(|v| matches!(v, V::Float(_))) {
                (
                    DataType::Float64,
                    Arc::new(Float64Array::from(
                        col.iter()
                            .map(|v| match v {
                                V::Float(f) => Some(*f),
                                _ => None,
                            })
                            .collect::<Vec<_>>(),
                    )),
                )
            } else if non_null().count() > 0 && non_null().all(|v| matches!(v, V::Bool(_))) {
                (
                    DataType::Boolean,
                    Arc::new(BooleanArray::from(
                        col.iter()
                            .map(|v| match v {
                                V::Bool(b) => Some(*b),
                                _ => None,
                            })
                            .collect::<Vec<_>>(),
                    )),
                )
            } else {
                (
                    DataType::Utf8,
                    Arc::new(StringArray::from(
                        col.iter().map(|v| v.text()).collect::<Vec<_>>(),
                    )),
                )
            };
        fields.push(Field::new(name, dt, true));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    if arrays.is_empty() {
        return Ok(RecordBatch::new_empty(schema));
    }
    Ok(RecordBatch::try_new(schema, arrays)?)
}
