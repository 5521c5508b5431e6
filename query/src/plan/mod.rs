//! Logical plans: the SQL AST (from `sqlparser`) resolved against the snapshot's tables into a small
//! tree of relational operators over keyed relations. Anything outside the subset is refused here with
//! an error naming the construct, so the executor only sees what it can run.
//!
//! Rooms: this module holds the plan types; `bind` turns statements into plans (FROM, WHERE, GROUP BY,
//! set operations, samples); `expr` binds and types expressions; `prune` marks what each scan must
//! read; `explain` prints plans.

use std::fmt::Write as _;

use journeydb_storage::{ColumnType, Snapshot, TableSnapshot};
use sqlparser::ast;

use crate::error::{QueryError, Result};
use crate::types::{parse_interval, parse_timestamp, DType, Scalar};
use crate::vector::{ArithOp, CmpOp, InSet};

mod aggregate;
mod bind;
mod explain;
mod expr;
mod funcs;
mod join;
mod prune;

pub use bind::{eval_const, plan_query};
pub(crate) use expr::cast_lit;
pub use expr::{expr_type, plan_expr};
pub(crate) use prune::one_column;
#[allow(unused_imports)]
use {aggregate::*, bind::*, expr::*, join::*, prune::*};

/// A column of a relation.
#[derive(Debug, Clone, PartialEq)]
pub struct RelCol {
    /// Output name.
    pub name: String,
    /// Type.
    pub dtype: DType,
    /// True for the customer key (values are ordinals, decoded only on output).
    pub is_key: bool,
}

/// A resolved scalar expression over an input relation's columns.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Input column `i` (the key column included).
    Col(usize),
    /// A constant.
    Lit(Scalar),
    /// A comparison.
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// Arithmetic with its result type.
    Arith(ArithOp, Box<Expr>, Box<Expr>, DType),
    /// Three-valued AND.
    And(Box<Expr>, Box<Expr>),
    /// Three-valued OR.
    Or(Box<Expr>, Box<Expr>),
    /// Three-valued NOT.
    Not(Box<Expr>),
    /// Unary minus.
    Neg(Box<Expr>),
    /// `IS NULL` (or `IS NOT NULL` when the flag is set).
    IsNull(Box<Expr>, bool),
    /// `x IN (constants)`: one hash lookup per row.
    InList(Box<Expr>, std::sync::Arc<InSet>),
    /// The value where the condition is TRUE, NULL elsewhere: an aggregate's `FILTER (WHERE ..)`.
    Filtered(Box<Expr>, Box<Expr>),
    /// A scalar function (or CASE) of its arguments, with the result type.
    Func(crate::func::Func, Vec<Expr>, DType),
}

/// An aggregate output.
#[derive(Debug, Clone, PartialEq)]
pub enum Agg {
    /// The group key (GROUP BY the key).
    Key,
    /// Group expression `i` (GROUP BY expressions).
    Group(usize),
    /// `COUNT(*)`.
    CountStar,
    /// `COUNT(expr)`.
    Count(Expr),
    /// `MIN(expr)`.
    Min(Expr),
    /// `MAX(expr)`.
    Max(Expr),
    /// `SUM(expr)`.
    Sum(Expr),
    /// `AVG(expr)`.
    Avg(Expr),
    /// `COUNT(DISTINCT expr)`.
    CountDistinct(Expr),
    /// `BOOL_AND(expr)`.
    BoolAnd(Expr),
    /// `BOOL_OR(expr)`.
    BoolOr(Expr),
    /// `QUANTILE_CONT(expr, q)` (continuous) or `QUANTILE_DISC(expr, q)`; `MEDIAN` is the
    /// continuous 0.5.
    Quantile(Expr, f64, bool),
}

impl Agg {
    /// The argument of an aggregate, if it has one.
    pub fn arg(&self) -> Option<&Expr> {
        match self {
            Agg::Count(e)
            | Agg::Min(e)
            | Agg::Max(e)
            | Agg::Sum(e)
            | Agg::Avg(e)
            | Agg::CountDistinct(e)
            | Agg::BoolAnd(e)
            | Agg::BoolOr(e)
            | Agg::Quantile(e, ..) => Some(e),
            Agg::CountStar | Agg::Key | Agg::Group(_) => None,
        }
    }
}

/// Set operations on key sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// `UNION` (distinct): bitmap OR.
    Union,
    /// `INTERSECT`: bitmap AND.
    Intersect,
    /// `EXCEPT`: bitmap AND-NOT.
    Except,
}

/// Rows a join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Keys on both sides: bitmap AND.
    Inner,
    /// Every left key: the left bitmap.
    Left,
    /// Every right key: the right bitmap.
    Right,
    /// Keys on either side: bitmap OR.
    Full,
}

/// `TABLESAMPLE BERNOULLI (percent) [REPEATABLE (seed)]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Percentage of rows kept, 0..=100.
    pub percent: f64,
    /// Seed; a fresh one per query when absent.
    pub seed: u64,
}

/// How much of a column a scan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Load {
    /// Nothing: no operator refers to it.
    No,
    /// The presence bitmap only (`IS [NOT] NULL`, `COUNT(col)`).
    Presence,
    /// As [`Load::Groups`] where storage has built the groups already or this is the second read
    /// of the column's segment (a condition on the column: see `GroupsWhen::Reused`).
    GroupsIfReused,
    /// As [`Load::GroupsIfReused`], for a column compared with another column: groups only when
    /// every such column of the scan has them in the partition, values otherwise.
    GroupsPaired,
    /// The presence bitmap and, where storage has them, the ordinals of each distinct value instead
    /// of the values (a plain GROUP BY column); the values where it has not.
    Groups,
    /// Bitmap and values.
    Values,
}

/// A relational operator tree.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Rows of a table: the key and every value column (only `load`ed ones are read).
    Scan {
        /// The table in the query's snapshot.
        table: TableSnapshot,
        /// How much of each value column is read (by column id).
        load: Vec<Load>,
        /// Output columns: the key, then the value columns.
        cols: Vec<RelCol>,
    },
    /// A Bernoulli sample of the input's rows, decided per ordinal by a hash of (seed, ordinal): the
    /// same rows whether it runs before or after a filter, so the planner puts it after one.
    Sample {
        /// Input.
        input: Box<Plan>,
        /// Percentage and seed.
        sample: Sample,
    },
    /// Rows where the predicate is TRUE.
    Filter {
        /// Input.
        input: Box<Plan>,
        /// Condition over the input's columns.
        predicate: Expr,
        /// Columns the operators above use; the others are dropped after the predicate instead of
        /// being cut down to the surviving rows (`None`: keep all).
        keep: Option<Vec<bool>>,
    },
    /// New columns computed per row.
    Project {
        /// Input.
        input: Box<Plan>,
        /// Expressions and the columns they become.
        exprs: Vec<(Expr, RelCol)>,
    },
    /// Aggregates, per key (`by_key`: a keyed relation), per distinct value of `groups`, or over
    /// everything (no groups: one row).
    Aggregate {
        /// Input.
        input: Box<Plan>,
        /// GROUP BY the key alone, with aggregates that merge per ordinal (COUNT, MIN, MAX).
        by_key: bool,
        /// GROUP BY expressions (empty when `by_key`).
        groups: Vec<Expr>,
        /// Outputs.
        items: Vec<(Agg, RelCol)>,
    },
    /// A set operation on two key-only relations.
    SetOp {
        /// Operation.
        kind: SetKind,
        /// Left input.
        left: Box<Plan>,
        /// Right input.
        right: Box<Plan>,
    },
    /// Two keyed relations joined on the customer key: frames of the same partition aligned by
    /// ordinal (no hash table). Output columns are the left's then the right's.
    Join {
        /// Which rows are kept.
        kind: JoinKind,
        /// Left input.
        left: Box<Plan>,
        /// Right input.
        right: Box<Plan>,
        /// Per side, the output index of its key column when that column is NULL on some rows
        /// (the other side's rows of an outer join), and whether an operator above reads it (its
        /// keys are then decoded).
        partial_keys: [Option<(usize, bool)>; 2],
    },
    /// Both inputs' rows (a bag: a key may appear in both).
    UnionAll {
        /// Left input.
        left: Box<Plan>,
        /// Right input.
        right: Box<Plan>,
    },
    /// One row per key (key-only relations).
    Distinct {
        /// Input.
        input: Box<Plan>,
    },
    /// A relation read whole at planning (a file table function such as `read_parquet`).
    Rel {
        /// What it was read from (for EXPLAIN).
        name: String,
        /// Its rows.
        rel: std::sync::Arc<crate::exec::Relation>,
    },
    /// A system table, materialized.
    System {
        /// Name (e.g. `system.tables`).
        name: String,
        /// Its rows.
        batch: arrow_array::RecordBatch,
        /// Selected column indices.
        project: Vec<usize>,
    },
}

/// A query: a plan plus the output ordering and limit.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    /// The relation.
    pub plan: Plan,
    /// ORDER BY: output column, descending, nulls first.
    pub order: Vec<(usize, bool, bool)>,
    /// LIMIT.
    pub limit: Option<usize>,
    /// OFFSET.
    pub offset: usize,
}

impl Plan {
    /// Output columns.
    pub fn cols(&self) -> Vec<RelCol> {
        match self {
            Plan::Scan { cols, .. } => cols.clone(),
            Plan::Filter { input, .. } | Plan::Distinct { input } | Plan::Sample { input, .. } => {
                input.cols()
            }
            Plan::Project { exprs, .. } => exprs.iter().map(|(_, c)| c.clone()).collect(),
            Plan::Aggregate { items, .. } => items.iter().map(|(_, c)| c.clone()).collect(),
            Plan::SetOp { left, .. } | Plan::UnionAll { left, .. } => left.cols(),
            Plan::Join {
                left,
                right,
                partial_keys,
                ..
            } => {
                let mut c = left.cols();
                c.extend(right.cols());
                for (i, _) in partial_keys.iter().flatten() {
                    if let Some(col) = c.get_mut(*i) {
                        col.is_key = false;
                    }
                }
                c
            }
            Plan::Rel { rel, .. } => rel.cols.clone(),
            Plan::System { batch, project, .. } => project
                .iter()
                .filter_map(|&i| batch.schema().fields().get(i).cloned())
                .map(|f| RelCol {
                    name: f.name().clone(),
                    dtype: match f.data_type() {
                        arrow_schema::DataType::Int64 => DType::Bigint,
                        _ => DType::Varchar,
                    },
                    is_key: false,
                })
                .collect(),
        }
    }

    /// An upper bound of the bytes the plan's scans decode, all alive at once: per table, the row
    /// bitmap, each presence bitmap read, and for each value column read a value slot per row
    /// (8 bytes; 32 for VARCHAR), as if every cell were set. Set operations and aggregates work on
    /// bitmaps and on these columns, so the scans dominate a query's memory.
    pub fn memory_estimate(&self) -> u64 {
        match self {
            Plan::Scan { table, load, .. } => {
                let rows = table.row_count();
                let bitmap = rows / 8 + 1024;
                let cols: u64 = table
                    .schema()
                    .columns
                    .iter()
                    .zip(load)
                    .map(|(c, l)| match l {
                        Load::No => 0,
                        Load::Presence => bitmap,
                        Load::Values | Load::Groups | Load::GroupsIfReused | Load::GroupsPaired => {
                            let width = match c.ty {
                                ColumnType::Varchar => 32,
                                ColumnType::Boolean => 1,
                                _ => 8,
                            };
                            bitmap + rows * width
                        }
                    })
                    .sum();
                bitmap + cols
            }
            Plan::Filter { input, .. }
            | Plan::Distinct { input }
            | Plan::Sample { input, .. }
            | Plan::Aggregate { input, .. } => input.memory_estimate(),
            // A projection holds what it computes: every expression but the first use of an input
            // column (moved, not copied) is a new column of up to the input's rows
            // (`SELECT v, v, v, ..` holds one column per item).
            Plan::Project { input, exprs } => {
                let rows = input.rows_bound();
                let mut seen = std::collections::HashSet::new();
                let made: u64 = exprs
                    .iter()
                    .filter(|(e, _)| !matches!(e, Expr::Col(i) if seen.insert(*i)))
                    .map(|(_, c)| {
                        let width = match c.dtype {
                            DType::Varchar => 32,
                            DType::Boolean | DType::Null => 1,
                            DType::Interval => 16,
                            _ => 8,
                        };
                        rows / 8 + rows * width
                    })
                    .sum();
                input.memory_estimate() + made
            }
            Plan::SetOp { left, right, .. }
            | Plan::UnionAll { left, right }
            | Plan::Join { left, right, .. } => left.memory_estimate() + right.memory_estimate(),
            Plan::System { batch, .. } => batch.get_array_memory_size() as u64,
            // Already in memory; running the plan copies it once.
            Plan::Rel { rel, .. } => rel
                .parts
                .values()
                .flatten()
                .map(|f| f.rows.serialized_size() as u64 * 2)
                .sum(),
        }
    }

    /// An upper bound on the rows the plan produces (for memory estimates).
    pub fn rows_bound(&self) -> u64 {
        match self {
            Plan::Scan { table, .. } => table.row_count(),
            Plan::Filter { input, .. }
            | Plan::Distinct { input }
            | Plan::Sample { input, .. }
            | Plan::Project { input, .. }
            | Plan::Aggregate { input, .. } => input.rows_bound(),
            Plan::SetOp { left, right, .. }
            | Plan::UnionAll { left, right }
            | Plan::Join { left, right, .. } => left.rows_bound() + right.rows_bound(),
            Plan::System { batch, .. } => batch.num_rows() as u64,
            Plan::Rel { rel, .. } => rel.parts.values().flatten().map(|f| f.rows.len()).sum(),
        }
    }

    /// True when every output column is the key: the relation is a set of customers.
    pub fn key_only(&self) -> bool {
        let c = self.cols();
        c.len() == 1 && c.iter().all(|c| c.is_key)
    }
}

/// Everything the planner needs from outside: the snapshot and the statement's `now`.
pub struct PlanCtx<'a> {
    /// The snapshot every table is read from.
    pub snap: &'a Snapshot,
    /// `now()` in µs.
    pub now_us: i64,
    /// Seed for samples without REPEATABLE.
    pub sample_seed: u64,
    /// Largest estimated decode a query may plan, in bytes (`None`: no limit).
    pub memory_limit: Option<u64>,
    /// The rates `system.costs` prices with.
    pub cost_rates: crate::costs::CostRates,
    /// Where file table functions (`read_parquet(..)`) read, and the database that registers their
    /// keys; `None` refuses them.
    pub files: Option<(
        &'a crate::files::FileAccess,
        &'a journeydb_storage::Database,
    )>,
    /// On the query log's own database: the tenant whose rows `system.queries` and
    /// `system.costs` show (`None`: all).
    pub log_tenant: Option<&'a str>,
}

pub(super) fn unsupported<T>(what: impl Into<String>) -> Result<T> {
    Err(QueryError::Unsupported(what.into()))
}

pub(super) fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    }
}

/// The parts of an object name as plain strings.
pub fn object_name(n: &ast::ObjectName) -> Result<Vec<String>> {
    n.0.iter()
        .map(|p| match p {
            ast::ObjectNamePart::Identifier(i) => Ok(ident(i)),
            other => unsupported(format!("name part {other}")),
        })
        .collect()
}
