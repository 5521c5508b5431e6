//! Logical plans: the SQL AST (from `sqlparser`) resolved against the snapshot's tables into a small
//! tree of relational operators over keyed relations. Anything outside the subset is refused here with
//! an error naming the construct, so the executor only sees what it can run.

use std::fmt::Write as _;

use journeydb_storage::{ColumnType, Snapshot, TableSnapshot};
use sqlparser::ast;

use crate::error::{QueryError, Result};
use crate::types::{parse_interval, parse_timestamp, DType, Scalar};
use crate::vector::{ArithOp, CmpOp, InSet};

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
}

/// An aggregate output.
#[derive(Debug, Clone, PartialEq)]
pub enum Agg {
    /// The group key (GROUP BY the key).
    Key,
    /// `COUNT(*)`.
    CountStar,
    /// `COUNT(expr)`.
    Count(Expr),
    /// `MIN(expr)`.
    Min(Expr),
    /// `MAX(expr)`.
    Max(Expr),
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
    /// Aggregates, per key (`by_key`) or over everything (one row).
    Aggregate {
        /// Input.
        input: Box<Plan>,
        /// GROUP BY the key.
        by_key: bool,
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
                        Load::Values => {
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
            | Plan::Project { input, .. }
            | Plan::Aggregate { input, .. } => input.memory_estimate(),
            Plan::SetOp { left, right, .. } | Plan::UnionAll { left, right } => {
                left.memory_estimate() + right.memory_estimate()
            }
            Plan::System { batch, .. } => batch.get_array_memory_size() as u64,
        }
    }

    /// True when every output column is the key: the relation is a set of customers.
    pub fn key_only(&self) -> bool {
        let c = self.cols();
        c.len() == 1 && c.iter().all(|c| c.is_key)
    }

    /// EXPLAIN text.
    pub fn explain(&self, out: &mut String, depth: usize) {
        let pad = "  ".repeat(depth);
        let names = |cols: &[RelCol]| {
            cols.iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = match self {
            Plan::Scan { table, load, .. } => {
                let read: Vec<String> = table
                    .schema()
                    .columns
                    .iter()
                    .zip(load)
                    .filter(|(_, l)| **l != Load::No)
                    .map(|(c, l)| {
                        if *l == Load::Presence {
                            format!("{} (bitmap)", c.name)
                        } else {
                            c.name.clone()
                        }
                    })
                    .collect();
                let read = if read.is_empty() {
                    "no columns".to_string()
                } else {
                    read.join(", ")
                };
                writeln!(
                    out,
                    "{pad}Scan {} [key + {read}] per partition",
                    table.name()
                )
            }
            Plan::Sample { sample, .. } => writeln!(
                out,
                "{pad}Sample bernoulli({}%) per ordinal",
                sample.percent
            ),
            Plan::Filter { predicate, .. } => {
                writeln!(out, "{pad}Filter {} (bitmap predicate)", show(predicate))
            }
            Plan::Project { exprs, .. } => writeln!(
                out,
                "{pad}Project {}",
                exprs
                    .iter()
                    .map(|(e, c)| format!("{} AS {}", show(e), c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Plan::Aggregate { by_key, items, .. } => writeln!(
                out,
                "{pad}Aggregate {} [{}] ({})",
                if *by_key { "GROUP BY key" } else { "global" },
                names(&items.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>()),
                if *by_key {
                    "ordinal-aligned merge"
                } else {
                    "bitmap cardinalities / min / max"
                }
            ),
            Plan::SetOp { kind, .. } => writeln!(
                out,
                "{pad}{} (bitmap {})",
                match kind {
                    SetKind::Union => "Union",
                    SetKind::Intersect => "Intersect",
                    SetKind::Except => "Except",
                },
                match kind {
                    SetKind::Union => "OR",
                    SetKind::Intersect => "AND",
                    SetKind::Except => "AND-NOT",
                }
            ),
            Plan::UnionAll { .. } => writeln!(out, "{pad}UnionAll (frames concatenated)"),
            Plan::Distinct { .. } => writeln!(out, "{pad}Distinct (bitmap OR of frames)"),
            Plan::System { name, .. } => writeln!(out, "{pad}SystemTable {name}"),
        };
        match self {
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::Aggregate { input, .. }
            | Plan::Distinct { input }
            | Plan::Sample { input, .. } => input.explain(out, depth + 1),
            Plan::SetOp { left, right, .. } | Plan::UnionAll { left, right } => {
                left.explain(out, depth + 1);
                right.explain(out, depth + 1);
            }
            Plan::Scan { .. } | Plan::System { .. } => {}
        }
    }
}

#[recursive::recursive]
fn show(e: &Expr) -> String {
    match e {
        Expr::Col(i) => format!("#{i}"),
        Expr::Lit(s) => format!("{s:?}"),
        Expr::Cmp(op, a, b) => format!("({} {} {})", show(a), op.sql(), show(b)),
        Expr::Arith(op, a, b, _) => format!("({} {} {})", show(a), op.sql(), show(b)),
        Expr::And(a, b) => format!("({} AND {})", show(a), show(b)),
        Expr::Or(a, b) => format!("({} OR {})", show(a), show(b)),
        Expr::Not(a) => format!("NOT {}", show(a)),
        Expr::Neg(a) => format!("-{}", show(a)),
        Expr::IsNull(a, neg) => format!("{} IS {}NULL", show(a), if *neg { "NOT " } else { "" }),
        Expr::InList(a, set) => {
            let shown: Vec<String> = set.values().iter().take(8).map(|v| format!("{v:?}")).collect();
            let more = set.values().len().saturating_sub(shown.len());
            format!(
                "{} IN ({}{})",
                show(a),
                shown.join(", "),
                if more > 0 { format!(", ... {more} more") } else { String::new() }
            )
        }
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
}

fn unsupported<T>(what: impl Into<String>) -> Result<T> {
    Err(QueryError::Unsupported(what.into()))
}

fn ident(i: &ast::Ident) -> String {
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

/// Plans a query (with ORDER BY / LIMIT).
pub fn plan_query(q: &ast::Query, ctx: &PlanCtx<'_>) -> Result<QueryPlan> {
    if q.with.is_some() {
        return unsupported("WITH (common table expressions)");
    }
    if q.fetch.is_some() || !q.locks.is_empty() {
        return unsupported("FETCH / FOR UPDATE");
    }
    let plan = plan_set_expr(&q.body, ctx)?;
    if let Some(limit) = ctx.memory_limit {
        let need = plan.memory_estimate();
        if need > limit {
            return Err(QueryError::MemoryLimit {
                need_mib: need.div_ceil(1 << 20),
                limit_mib: limit >> 20,
            });
        }
    }
    let cols = plan.cols();
    let mut order = Vec::new();
    if let Some(ob) = &q.order_by {
        let ast::OrderByKind::Expressions(exprs) = &ob.kind else {
            return unsupported("ORDER BY ALL");
        };
        for o in exprs {
            let idx = match &o.expr {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::Number(n, _) => n
                        .parse::<usize>()
                        .ok()
                        .filter(|&i| i >= 1 && i <= cols.len())
                        .map(|i| i - 1),
                    _ => None,
                }
                .ok_or_else(|| {
                    QueryError::InvalidValue(format!(
                        "ORDER BY position {} is not in 1..{}",
                        o.expr,
                        cols.len()
                    ))
                })?,
                ast::Expr::Identifier(i) => {
                    let name = ident(i);
                    cols.iter()
                        .position(|c| c.name.eq_ignore_ascii_case(&name))
                        .ok_or_else(|| {
                            QueryError::ColumnNotFound(format!(
                                "{name} (ORDER BY refers to output columns)"
                            ))
                        })?
                }
                other => {
                    return unsupported(format!(
                        "ORDER BY expression {other} (use an output column name or position)"
                    ))
                }
            };
            let desc = match &o.options.sort {
                None | Some(ast::OrderBySort::Asc) => false,
                Some(ast::OrderBySort::Desc) => true,
                Some(_) => return unsupported("ORDER BY .. USING"),
            };
            // DuckDB's default: NULLS LAST whatever the direction.
            let nulls_first = o.options.nulls_first.unwrap_or(false);
            order.push((idx, desc, nulls_first));
        }
    }
    let (mut limit, mut offset) = (None, 0);
    if let Some(lc) = &q.limit_clause {
        match lc {
            ast::LimitClause::LimitOffset {
                limit: l,
                offset: o,
                limit_by,
            } => {
                if !limit_by.is_empty() {
                    return unsupported("LIMIT BY");
                }
                if let Some(l) = l {
                    limit = Some(const_usize(l, "LIMIT")?);
                }
                if let Some(o) = o {
                    offset = const_usize(&o.value, "OFFSET")?;
                }
            }
            ast::LimitClause::OffsetCommaLimit { .. } => return unsupported("LIMIT offset, count"),
        }
    }
    Ok(QueryPlan {
        plan,
        order,
        limit,
        offset,
    })
}

fn const_usize(e: &ast::Expr, what: &str) -> Result<usize> {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.parse().map_err(|_| {
                QueryError::InvalidValue(format!("{what} {n} is not a non-negative integer"))
            }),
            ast::Value::Null if what == "LIMIT" => Ok(usize::MAX),
            _ => Err(QueryError::InvalidValue(format!("{what} must be a number"))),
        },
        _ => unsupported(format!("{what} expression {e}")),
    }
}

#[recursive::recursive]
fn plan_set_expr(body: &ast::SetExpr, ctx: &PlanCtx<'_>) -> Result<Plan> {
    match body {
        ast::SetExpr::Select(s) => plan_select(s, ctx),
        ast::SetExpr::Query(q) => {
            let qp = plan_query(q, ctx)?;
            if !qp.order.is_empty() || qp.limit.is_some() || qp.offset > 0 {
                return unsupported("ORDER BY / LIMIT inside a subquery or set operation");
            }
            Ok(qp.plan)
        }
        ast::SetExpr::SetOperation {
            op,
            set_quantifier,
            left,
            right,
        } => {
            let l = plan_set_expr(left, ctx)?;
            let r = plan_set_expr(right, ctx)?;
            let (lc, rc) = (l.cols(), r.cols());
            if lc.len() != rc.len() {
                return Err(QueryError::Type(format!(
                    "{op} inputs have {} and {} columns",
                    lc.len(),
                    rc.len()
                )));
            }
            for (a, b) in lc.iter().zip(&rc) {
                let compatible =
                    a.dtype == b.dtype || a.dtype == DType::Null || b.dtype == DType::Null;
                if !compatible || a.is_key != b.is_key {
                    return Err(QueryError::Type(format!(
                        "{op} column {} is {}{} on the left and {}{} on the right",
                        a.name,
                        a.dtype.name(),
                        if a.is_key { " (key)" } else { "" },
                        b.dtype.name(),
                        if b.is_key { " (key)" } else { "" }
                    )));
                }
            }
            let all = matches!(set_quantifier, ast::SetQuantifier::All);
            match (op, all) {
                (ast::SetOperator::Union, true) => Ok(Plan::UnionAll {
                    left: Box::new(l),
                    right: Box::new(r),
                }),
                (
                    ast::SetOperator::Union
                    | ast::SetOperator::Intersect
                    | ast::SetOperator::Except,
                    false,
                ) => {
                    if !l.key_only() {
                        return unsupported(format!("{op} over columns other than the customer key (select only the key column)"));
                    }
                    let kind = match op {
                        ast::SetOperator::Union => SetKind::Union,
                        ast::SetOperator::Intersect => SetKind::Intersect,
                        _ => SetKind::Except,
                    };
                    Ok(Plan::SetOp {
                        kind,
                        left: Box::new(l),
                        right: Box::new(r),
                    })
                }
                _ => unsupported(format!("{op} {set_quantifier}")),
            }
        }
        ast::SetExpr::Values(_) => unsupported("VALUES as a query"),
        other => unsupported(format!("query body {other}")),
    }
}

fn plan_from(
    from: &[ast::TableWithJoins],
    ctx: &PlanCtx<'_>,
) -> Result<(Plan, Option<String>, Option<Sample>)> {
    let [one] = from else {
        return if from.is_empty() {
            unsupported("SELECT without FROM")
        } else {
            unsupported(
                "several tables in FROM (joins); combine customer sets with INTERSECT / EXCEPT",
            )
        };
    };
    if !one.joins.is_empty() {
        return unsupported("JOIN; combine customer sets with INTERSECT / UNION / EXCEPT");
    }
    match &one.relation {
        ast::TableFactor::Table {
            name,
            alias,
            sample,
            args,
            ..
        } => {
            if args.is_some() {
                return unsupported("table functions");
            }
            let parts = object_name(name)?;
            let alias_name = alias.as_ref().map(|a| ident(&a.name));
            if parts.len() == 2 && parts.first().map(String::as_str) == Some("system") {
                if sample.is_some() {
                    return unsupported("TABLESAMPLE on a system table");
                }
                let name = parts.join(".");
                let batch = crate::system::table(ctx.snap, &name)?;
                let project = (0..batch.num_columns()).collect();
                return Ok((
                    Plan::System {
                        name,
                        batch,
                        project,
                    },
                    alias_name,
                    None,
                ));
            }
            let [tname] = parts.as_slice() else {
                return unsupported(format!("qualified table name {name}"));
            };
            let table = ctx
                .snap
                .table(tname)
                .map_err(|_| QueryError::TableNotFound(tname.clone()))?;
            let sample = match sample {
                None => None,
                Some(s) => Some(plan_sample(s, ctx)?),
            };
            let mut cols = vec![RelCol {
                name: table.schema().key_name.clone(),
                dtype: ctx.snap.key_type().into(),
                is_key: true,
            }];
            cols.extend(table.schema().columns.iter().map(|c| RelCol {
                name: c.name.clone(),
                dtype: c.ty.into(),
                is_key: false,
            }));
            let load = vec![Load::No; table.schema().columns.len()];
            Ok((
                Plan::Scan { table, load, cols },
                alias_name.or_else(|| Some(tname.clone())),
                sample,
            ))
        }
        ast::TableFactor::Derived {
            subquery,
            alias,
            lateral,
            sample,
        } => {
            if *lateral {
                return unsupported("LATERAL");
            }
            if sample.is_some() {
                return unsupported("TABLESAMPLE on a subquery (sample the table inside it)");
            }
            let qp = plan_query(subquery, ctx)?;
            if !qp.order.is_empty() || qp.limit.is_some() || qp.offset > 0 {
                return unsupported("ORDER BY / LIMIT inside a subquery");
            }
            Ok((qp.plan, alias.as_ref().map(|a| ident(&a.name)), None))
        }
        other => unsupported(format!("FROM {other}")),
    }
}

fn plan_sample(s: &ast::TableSampleKind, ctx: &PlanCtx<'_>) -> Result<Sample> {
    let (ast::TableSampleKind::BeforeTableAlias(t) | ast::TableSampleKind::AfterTableAlias(t)) = s;
    if !matches!(
        t.name,
        Some(ast::TableSampleMethod::Bernoulli) | Some(ast::TableSampleMethod::Row)
    ) {
        return unsupported(format!("TABLESAMPLE method {:?} (only BERNOULLI)", t.name));
    }
    if t.bucket.is_some() || t.offset.is_some() {
        return unsupported("TABLESAMPLE BUCKET / OFFSET");
    }
    let q = t
        .quantity
        .as_ref()
        .ok_or_else(|| QueryError::Syntax("TABLESAMPLE needs a percentage".into()))?;
    if let Some(unit) = &q.unit {
        if !matches!(unit, ast::TableSampleUnit::Percent) {
            return unsupported("TABLESAMPLE with a row count");
        }
    }
    let percent = match const_scalar(&q.value)? {
        Scalar::Int(v) => v as f64,
        Scalar::Float(v) => v,
        _ => {
            return Err(QueryError::InvalidValue(
                "TABLESAMPLE percentage must be a number".into(),
            ))
        }
    };
    if !(0.0..=100.0).contains(&percent) {
        return Err(QueryError::InvalidValue(format!(
            "TABLESAMPLE percentage {percent} is not within 0..100"
        )));
    }
    let seed = match &t.seed {
        None => ctx.sample_seed,
        Some(s) => match &s.value.value {
            ast::Value::Number(n, _) => n.parse::<u64>().map_err(|_| {
                QueryError::InvalidValue(format!(
                    "REPEATABLE seed {n} is not a non-negative integer"
                ))
            })?,
            other => {
                return Err(QueryError::InvalidValue(format!(
                    "REPEATABLE seed {other} is not a number"
                )))
            }
        },
    };
    Ok(Sample { percent, seed })
}

fn const_scalar(e: &ast::Expr) -> Result<Scalar> {
    let cols: Vec<RelCol> = Vec::new();
    match plan_expr(e, &cols, None, 0)? {
        Expr::Lit(s) => Ok(s),
        Expr::Neg(inner) => match *inner {
            Expr::Lit(Scalar::Int(v)) => Ok(Scalar::Int(-v)),
            Expr::Lit(Scalar::Float(v)) => Ok(Scalar::Float(-v)),
            _ => Err(QueryError::InvalidValue(format!("{e} is not a constant"))),
        },
        _ => Err(QueryError::InvalidValue(format!("{e} is not a constant"))),
    }
}

/// Evaluates a constant expression (INSERT VALUES).
pub fn eval_const(e: &ast::Expr, now_us: i64) -> Result<Scalar> {
    let cols: Vec<RelCol> = Vec::new();
    let planned = plan_expr(e, &cols, None, now_us)?;
    crate::exec::eval_scalar(&planned)
}

fn is_aggregate(e: &ast::Expr) -> bool {
    match e {
        ast::Expr::Function(f) => matches!(
            f.name.to_string().to_ascii_lowercase().as_str(),
            "count" | "min" | "max"
        ),
        ast::Expr::Nested(e) => is_aggregate(e),
        _ => false,
    }
}

fn plan_select(s: &ast::Select, ctx: &PlanCtx<'_>) -> Result<Plan> {
    if s.having.is_some() {
        return unsupported("HAVING");
    }
    if !s.named_window.is_empty() || s.qualify.is_some() {
        return unsupported("window functions");
    }
    if s.top.is_some()
        || s.into.is_some()
        || !s.lateral_views.is_empty()
        || !s.cluster_by.is_empty()
        || !s.sort_by.is_empty()
    {
        return unsupported("TOP / INTO / LATERAL VIEW / CLUSTER BY / SORT BY");
    }
    let (mut input, alias, sample) = plan_from(&s.from, ctx)?;
    let in_cols = input.cols();
    let alias = alias.as_deref();
    if let Plan::System { name, batch, .. } = &input {
        return plan_system(s, name, batch, &in_cols, alias, ctx);
    }
    if let Some(w) = &s.selection {
        let predicate = plan_expr(w, &in_cols, alias, ctx.now_us)?;
        let t = expr_type(&predicate, &in_cols)?;
        if !matches!(t, DType::Boolean | DType::Null) {
            return Err(QueryError::Type(format!(
                "WHERE needs a condition, not a {} value",
                t.name()
            )));
        }
        input = Plan::Filter {
            input: Box::new(input),
            predicate,
            keep: None,
        };
    }
    if let Some(sample) = sample {
        input = Plan::Sample {
            input: Box::new(input),
            sample,
        };
    }
    let group_by = match &s.group_by {
        ast::GroupByExpr::Expressions(exprs, mods) if mods.is_empty() => exprs.clone(),
        _ => return unsupported("GROUP BY ALL / ROLLUP / CUBE"),
    };
    let has_agg = s.projection.iter().any(|p| match p {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
            is_aggregate(e)
        }
        _ => false,
    });
    let plan = if has_agg || !group_by.is_empty() {
        plan_aggregate(s, input, &in_cols, alias, &group_by, ctx)?
    } else {
        let mut exprs = Vec::new();
        for item in &s.projection {
            match item {
                ast::SelectItem::Wildcard(_) => {
                    for (i, c) in in_cols.iter().enumerate() {
                        exprs.push((Expr::Col(i), c.clone()));
                    }
                }
                ast::SelectItem::QualifiedWildcard(..) => {
                    for (i, c) in in_cols.iter().enumerate() {
                        exprs.push((Expr::Col(i), c.clone()));
                    }
                }
                ast::SelectItem::ExprWithAliases { .. } => {
                    return unsupported("several aliases for one expression")
                }
                ast::SelectItem::UnnamedExpr(e)
                | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                    let pe = plan_expr(e, &in_cols, alias, ctx.now_us)?;
                    let name = match item {
                        ast::SelectItem::ExprWithAlias { alias, .. } => ident(alias),
                        _ => default_name(e),
                    };
                    let dtype = expr_type(&pe, &in_cols)?;
                    let is_key =
                        matches!(pe, Expr::Col(i) if in_cols.get(i).is_some_and(|c| c.is_key));
                    exprs.push((
                        pe,
                        RelCol {
                            name,
                            dtype,
                            is_key,
                        },
                    ));
                }
            }
        }
        Plan::Project {
            input: Box::new(input),
            exprs,
        }
    };
    let plan = match &s.distinct {
        None => plan,
        Some(ast::Distinct::Distinct) if plan.key_only() => Plan::Distinct {
            input: Box::new(plan),
        },
        Some(_) => return unsupported("DISTINCT over columns other than the customer key"),
    };
    Ok(prune_scan(plan))
}

/// System tables take plain column lists only: `SELECT * | col, .. FROM system.x`.
fn plan_system(
    s: &ast::Select,
    name: &str,
    batch: &arrow_array::RecordBatch,
    cols: &[RelCol],
    alias: Option<&str>,
    ctx: &PlanCtx<'_>,
) -> Result<Plan> {
    if s.selection.is_some()
        || !matches!(&s.group_by, ast::GroupByExpr::Expressions(g, _) if g.is_empty())
        || s.distinct.is_some()
    {
        return unsupported(format!(
            "WHERE / GROUP BY / DISTINCT on {name} (select columns, ORDER BY and LIMIT only)"
        ));
    }
    let mut project = Vec::new();
    for item in &s.projection {
        match item {
            ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..) => {
                project.extend(0..cols.len())
            }
            ast::SelectItem::UnnamedExpr(e) => match plan_expr(e, cols, alias, ctx.now_us)? {
                Expr::Col(i) => project.push(i),
                _ => return unsupported(format!("expression {e} on {name} (plain columns only)")),
            },
            other => return unsupported(format!("{other} on {name} (plain columns only)")),
        }
    }
    Ok(Plan::System {
        name: name.to_string(),
        batch: batch.clone(),
        project,
    })
}

fn default_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(i) => ident(i),
        ast::Expr::CompoundIdentifier(parts) => parts.last().map(ident).unwrap_or_default(),
        other => other.to_string(),
    }
}

fn plan_aggregate(
    s: &ast::Select,
    input: Plan,
    in_cols: &[RelCol],
    alias: Option<&str>,
    group_by: &[ast::Expr],
    ctx: &PlanCtx<'_>,
) -> Result<Plan> {
    let by_key = match group_by {
        [] => false,
        [g] => {
            let e = plan_expr(g, in_cols, alias, ctx.now_us)?;
            match e {
                Expr::Col(i) if in_cols.get(i).is_some_and(|c| c.is_key) => true,
                _ => return unsupported(format!("GROUP BY {g} (only GROUP BY the customer key)")),
            }
        }
        _ => return unsupported("GROUP BY several expressions (only GROUP BY the customer key)"),
    };
    let mut items = Vec::new();
    for item in &s.projection {
        let (e, name) = match item {
            ast::SelectItem::UnnamedExpr(e) => (e, None),
            ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(ident(alias))),
            _ => return unsupported("* together with aggregates"),
        };
        let e = match e {
            ast::Expr::Nested(inner) => inner.as_ref(),
            e => e,
        };
        let (agg, dtype) = match e {
            ast::Expr::Function(f) => {
                let fname = f.name.to_string().to_ascii_lowercase();
                let args = match &f.args {
                    ast::FunctionArguments::List(l) => {
                        if l.duplicate_treatment.is_some() {
                            return unsupported(format!("{fname}(DISTINCT ..)"));
                        }
                        l.args.clone()
                    }
                    _ => return unsupported(format!("{fname} without an argument list")),
                };
                if f.filter.is_some() || f.over.is_some() {
                    return unsupported("aggregate FILTER / OVER");
                }
                match (fname.as_str(), args.as_slice()) {
                    ("count", [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard)]) => {
                        (Agg::CountStar, DType::Bigint)
                    }
                    (
                        f @ ("count" | "min" | "max"),
                        [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a))],
                    ) => {
                        let pe = plan_expr(a, in_cols, alias, ctx.now_us)?;
                        let t = expr_type(&pe, in_cols)?;
                        match f {
                            "count" => (Agg::Count(pe), DType::Bigint),
                            "min" => (Agg::Min(pe), t),
                            _ => (Agg::Max(pe), t),
                        }
                    }
                    _ => return unsupported(format!("function {e}")),
                }
            }
            other => {
                let pe = plan_expr(other, in_cols, alias, ctx.now_us)?;
                match pe {
                    Expr::Col(i) if by_key && in_cols.get(i).is_some_and(|c| c.is_key) => {
                        (Agg::Key, in_cols.get(i).map_or(DType::Varchar, |c| c.dtype))
                    }
                    _ => {
                        return Err(QueryError::Unsupported(format!(
                            "{other} must be an aggregate (COUNT, MIN, MAX){}",
                            if by_key { " or the grouped key" } else { "" }
                        )))
                    }
                }
            }
        };
        let is_key = matches!(agg, Agg::Key);
        items.push((
            agg,
            RelCol {
                name: name.unwrap_or_else(|| default_name(e)),
                dtype,
                is_key,
            },
        ));
    }
    Ok(Plan::Aggregate {
        input: Box::new(input),
        by_key,
        items,
    })
}

/// Marks how much of each column each scan must read: values for columns whose values an operator
/// uses, only the presence bitmap for columns used only by `IS [NOT] NULL` or `COUNT(col)`.
fn prune_scan(plan: Plan) -> Plan {
    #[recursive::recursive]
    fn refs(e: &Expr, out: &mut Vec<(usize, Load)>) {
        match e {
            Expr::Col(i) => out.push((*i, Load::Values)),
            Expr::IsNull(inner, _) if matches!(inner.as_ref(), Expr::Col(_)) => {
                if let Expr::Col(i) = inner.as_ref() {
                    out.push((*i, Load::Presence));
                }
            }
            Expr::Lit(_) => {}
            Expr::Cmp(_, a, b) | Expr::Arith(_, a, b, _) | Expr::And(a, b) | Expr::Or(a, b) => {
                refs(a, out);
                refs(b, out);
            }
            Expr::Not(a) | Expr::Neg(a) | Expr::IsNull(a, _) | Expr::InList(a, _) => refs(a, out),
        }
    }
    fn mark(plan: &mut Plan, used: &[(usize, Load)]) {
        match plan {
            Plan::Scan { load, .. } => {
                for &(i, kind) in used {
                    // Column 0 is the key; value column j is relation column j + 1.
                    if let Some(l) = i.checked_sub(1).and_then(|j| load.get_mut(j)) {
                        *l = (*l).max(kind);
                    }
                }
            }
            Plan::Filter {
                input,
                predicate,
                keep,
            } => {
                let width = input.cols().len();
                let mut k = vec![false; width];
                for &(i, _) in used {
                    if let Some(slot) = k.get_mut(i) {
                        *slot = true;
                    }
                }
                *keep = Some(k);
                let mut u = used.to_vec();
                refs(predicate, &mut u);
                mark(input, &u);
            }
            Plan::Sample { input, .. } => mark(input, used),
            _ => {}
        }
    }
    let mut plan = plan;
    let mut used = Vec::new();
    match &mut plan {
        Plan::Project { input, exprs } => {
            exprs.iter().for_each(|(e, _)| refs(e, &mut used));
            mark(input, &used);
        }
        Plan::Aggregate { input, items, .. } => {
            for (a, _) in items.iter() {
                match a {
                    Agg::Count(Expr::Col(i)) => used.push((*i, Load::Presence)),
                    Agg::Count(e) | Agg::Min(e) | Agg::Max(e) => refs(e, &mut used),
                    Agg::Key | Agg::CountStar => {}
                }
            }
            mark(input, &used);
        }
        Plan::Distinct { input } => {
            if let Plan::Project { input, exprs } = input.as_mut() {
                exprs.iter().for_each(|(e, _)| refs(e, &mut used));
                mark(input, &used);
            }
        }
        _ => {}
    }
    plan
}

fn resolve(name: &str, cols: &[RelCol]) -> Result<usize> {
    let mut hits = cols
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name.eq_ignore_ascii_case(name));
    match (hits.next(), hits.next()) {
        (Some((i, _)), None) => Ok(i),
        (Some(_), Some(_)) => Err(QueryError::ColumnNotFound(format!("{name} is ambiguous"))),
        (None, _) => Err(QueryError::ColumnNotFound(name.to_string())),
    }
}

fn lit_of(v: &ast::Value) -> Result<Scalar> {
    Ok(match v {
        ast::Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => Scalar::Int(i),
            Err(_) => Scalar::Float(
                n.parse()
                    .map_err(|_| QueryError::InvalidValue(format!("number {n}")))?,
            ),
        },
        // E'..' strings arrive with their escapes already resolved by the tokenizer.
        ast::Value::SingleQuotedString(s) | ast::Value::EscapedStringLiteral(s) => {
            Scalar::Str(s.clone())
        }
        ast::Value::DollarQuotedString(d) => Scalar::Str(d.value.clone()),
        ast::Value::Boolean(b) => Scalar::Bool(*b),
        ast::Value::Null => Scalar::Null,
        other => return unsupported(format!("literal {other}")),
    })
}

fn dtype_of_sql(t: &ast::DataType) -> Result<DType> {
    use ast::DataType as T;
    Ok(match t {
        T::Timestamp(_, tz)
            if !matches!(tz, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) =>
        {
            DType::Timestamp
        }
        T::BigInt(_) | T::Int8(_) | T::Int(_) | T::Integer(_) | T::Int64 => DType::Bigint,
        T::Double(_) | T::DoublePrecision | T::Float8 | T::Float(_) | T::Real => DType::Double,
        T::Boolean | T::Bool => DType::Boolean,
        T::Varchar(_) | T::Text | T::String(_) | T::CharacterVarying(_) => DType::Varchar,
        other => return unsupported(format!("type {other}")),
    })
}

/// Casts a constant to `to` (implicit casts of literals and explicit CASTs of constants).
pub(crate) fn cast_lit(s: Scalar, to: DType) -> Result<Scalar> {
    Ok(match (s, to) {
        (Scalar::Null, _) => Scalar::Null,
        (Scalar::Str(v), DType::Timestamp) => Scalar::Ts(parse_timestamp(&v)?),
        (Scalar::Str(v), DType::Bigint) => Scalar::Int(
            v.trim()
                .parse()
                .map_err(|_| QueryError::InvalidValue(format!("{v:?} is not a BIGINT")))?,
        ),
        (Scalar::Str(v), DType::Double) => Scalar::Float(
            v.trim()
                .parse()
                .map_err(|_| QueryError::InvalidValue(format!("{v:?} is not a DOUBLE")))?,
        ),
        (Scalar::Str(v), DType::Boolean) => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" => Scalar::Bool(true),
            "false" | "f" | "0" => Scalar::Bool(false),
            _ => return Err(QueryError::InvalidValue(format!("{v:?} is not a BOOLEAN"))),
        },
        (Scalar::Int(v), DType::Double) => Scalar::Float(v as f64),
        (Scalar::Ts(v), DType::Varchar) => Scalar::Str(crate::types::format_timestamp(v)),
        (Scalar::Int(v), DType::Varchar) => Scalar::Str(v.to_string()),
        (s, t) if s.dtype() == t => s,
        (s, t) => {
            return Err(QueryError::Type(format!(
                "cannot cast {} to {}",
                s.dtype().name(),
                t.name()
            )))
        }
    })
}

/// Resolves an AST expression against `cols`.
#[recursive::recursive]
pub fn plan_expr(e: &ast::Expr, cols: &[RelCol], alias: Option<&str>, now_us: i64) -> Result<Expr> {
    let p = |x: &ast::Expr| plan_expr(x, cols, alias, now_us);
    let planned = match e {
        ast::Expr::Identifier(i) => Expr::Col(resolve(&ident(i), cols)?),
        ast::Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] => {
                let q = ident(q);
                if alias.is_some_and(|a| a != q) {
                    return Err(QueryError::ColumnNotFound(format!(
                        "{q}.{} (no table {q} in FROM)",
                        ident(c)
                    )));
                }
                Expr::Col(resolve(&ident(c), cols)?)
            }
            _ => return unsupported(format!("name {e}")),
        },
        ast::Expr::Value(v) => Expr::Lit(lit_of(&v.value)?),
        ast::Expr::TypedString(ts) => {
            let t = dtype_of_sql(&ts.data_type)?;
            let s = lit_of(&ts.value.value)?;
            Expr::Lit(cast_lit(s, t)?)
        }
        ast::Expr::Interval(iv) => {
            let text = match p(&iv.value)? {
                Expr::Lit(Scalar::Str(s)) => s,
                Expr::Lit(Scalar::Int(n)) => n.to_string(),
                _ => return unsupported("INTERVAL with a non-constant value"),
            };
            let text = match &iv.leading_field {
                Some(f) if iv.last_field.is_none() => format!("{text} {f}"),
                None => text,
                Some(_) => return unsupported("INTERVAL ranges (e.g. DAY TO HOUR)"),
            };
            Expr::Lit(Scalar::Interval(parse_interval(&text)?))
        }
        ast::Expr::Nested(x) => p(x)?,
        ast::Expr::UnaryOp { op, expr } => match op {
            ast::UnaryOperator::Not => Expr::Not(Box::new(p(expr)?)),
            ast::UnaryOperator::Minus => match p(expr)? {
                Expr::Lit(Scalar::Int(v)) => Expr::Lit(Scalar::Int(
                    v.checked_neg()
                        .ok_or_else(|| QueryError::InvalidValue("overflow".into()))?,
                )),
                Expr::Lit(Scalar::Float(v)) => Expr::Lit(Scalar::Float(-v)),
                x => Expr::Neg(Box::new(x)),
            },
            ast::UnaryOperator::Plus => p(expr)?,
            other => return unsupported(format!("operator {other}")),
        },
        ast::Expr::IsNull(x) => Expr::IsNull(Box::new(p(x)?), false),
        ast::Expr::IsNotNull(x) => Expr::IsNull(Box::new(p(x)?), true),
        ast::Expr::IsTrue(x) => Expr::Cmp(
            CmpOp::Eq,
            Box::new(p(x)?),
            Box::new(Expr::Lit(Scalar::Bool(true))),
        ),
        ast::Expr::IsFalse(x) => Expr::Cmp(
            CmpOp::Eq,
            Box::new(p(x)?),
            Box::new(Expr::Lit(Scalar::Bool(false))),
        ),
        ast::Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let x = p(expr)?;
            let both = Expr::And(
                Box::new(typed_cmp(CmpOp::GtEq, x.clone(), p(low)?, cols)?),
                Box::new(typed_cmp(CmpOp::LtEq, x, p(high)?, cols)?),
            );
            if *negated {
                Expr::Not(Box::new(both))
            } else {
                both
            }
        }
        ast::Expr::In {
            target: ast::InTarget::Subquery(_),
            ..
        } => return unsupported("IN (subquery); use INTERSECT on customer sets"),
        ast::Expr::In {
            expr,
            target: ast::InTarget::List(list),
            negated,
            ..
        } => {
            let x = p(expr)?;
            // Constants (cast as a comparison with `x` would cast them) go into one hash set;
            // anything else is an equality, OR-ed in a balanced tree.
            let mut consts = Vec::new();
            let mut others = Vec::new();
            for item in list {
                match typed_cmp(CmpOp::Eq, x.clone(), p(item)?, cols)? {
                    Expr::Cmp(CmpOp::Eq, l, r) if *l == x && matches!(*r, Expr::Lit(_)) => {
                        if let Expr::Lit(v) = *r {
                            consts.push(v);
                        }
                    }
                    c => others.push(c),
                }
            }
            if !consts.is_empty() {
                others.push(Expr::InList(
                    Box::new(x),
                    std::sync::Arc::new(InSet::new(consts)),
                ));
            }
            let any = balanced(others, |a, b| Expr::Or(Box::new(a), Box::new(b)))
                .ok_or_else(|| QueryError::Syntax("IN () needs at least one value".into()))?;
            if *negated {
                Expr::Not(Box::new(any))
            } else {
                any
            }
        }
        ast::Expr::BinaryOp {
            op: op @ (ast::BinaryOperator::And | ast::BinaryOperator::Or),
            ..
        } => {
            // A chain of ANDs (or ORs) is planned as a balanced tree: its depth is the logarithm
            // of its length, so planning and evaluating it never recurse deeply.
            let operands = chain_operands(e, op)
                .into_iter()
                .map(&p)
                .collect::<Result<Vec<_>>>()?;
            let join = |a, b| match op {
                ast::BinaryOperator::And => Expr::And(Box::new(a), Box::new(b)),
                _ => Expr::Or(Box::new(a), Box::new(b)),
            };
            balanced(operands, join)
                .ok_or_else(|| QueryError::Internal("an empty AND / OR chain".into()))?
        }
        ast::Expr::BinaryOp { left, op, right } => {
            let (l, r) = (p(left)?, p(right)?);
            use ast::BinaryOperator as B;
            match op {
                B::And => Expr::And(Box::new(l), Box::new(r)),
                B::Or => Expr::Or(Box::new(l), Box::new(r)),
                B::Eq => typed_cmp(CmpOp::Eq, l, r, cols)?,
                B::NotEq => typed_cmp(CmpOp::NotEq, l, r, cols)?,
                B::Lt => typed_cmp(CmpOp::Lt, l, r, cols)?,
                B::LtEq => typed_cmp(CmpOp::LtEq, l, r, cols)?,
                B::Gt => typed_cmp(CmpOp::Gt, l, r, cols)?,
                B::GtEq => typed_cmp(CmpOp::GtEq, l, r, cols)?,
                B::Plus => typed_arith(ArithOp::Add, l, r, cols)?,
                B::Minus => typed_arith(ArithOp::Sub, l, r, cols)?,
                B::Multiply => typed_arith(ArithOp::Mul, l, r, cols)?,
                B::Divide => typed_arith(ArithOp::Div, l, r, cols)?,
                other => return unsupported(format!("operator {other}")),
            }
        }
        ast::Expr::Cast {
            expr,
            data_type,
            kind,
            ..
        } => {
            if matches!(kind, ast::CastKind::TryCast | ast::CastKind::SafeCast) {
                return unsupported("TRY_CAST");
            }
            let to = dtype_of_sql(data_type)?;
            match p(expr)? {
                Expr::Lit(s) => Expr::Lit(cast_lit(s, to)?),
                x if expr_type(&x, cols)? == to => x,
                x if expr_type(&x, cols)? == DType::Bigint && to == DType::Double => Expr::Arith(
                    ArithOp::Mul,
                    Box::new(x),
                    Box::new(Expr::Lit(Scalar::Float(1.0))),
                    DType::Double,
                ),
                _ => return unsupported(format!("CAST of a column to {}", to.name())),
            }
        }
        ast::Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let no_args = match &f.args {
                ast::FunctionArguments::None => true,
                ast::FunctionArguments::List(l) => l.args.is_empty(),
                ast::FunctionArguments::Subquery(_) => false,
            };
            match name.as_str() {
                "now" | "current_timestamp" | "get_current_timestamp" | "transaction_timestamp"
                    if no_args =>
                {
                    Expr::Lit(Scalar::Ts(now_us))
                }
                "count" | "min" | "max" => {
                    return unsupported(format!(
                        "aggregate {e} here (aggregates go in the SELECT list)"
                    ))
                }
                _ => return unsupported(format!("function {name}")),
            }
        }
        other => return unsupported(format!("expression {other}")),
    };
    expr_type(&planned, cols)?;
    Ok(planned)
}

/// The operands of a chain of one associative operator (`a AND b AND (c AND d)`), in order,
/// collected without recursion.
fn chain_operands<'e>(e: &'e ast::Expr, op: &ast::BinaryOperator) -> Vec<&'e ast::Expr> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(x) = stack.pop() {
        match x {
            ast::Expr::BinaryOp { left, op: o, right } if o == op => {
                stack.push(right);
                stack.push(left);
            }
            ast::Expr::Nested(inner)
                if matches!(inner.as_ref(), ast::Expr::BinaryOp { op: o, .. } if o == op) =>
            {
                stack.push(inner)
            }
            other => out.push(other),
        }
    }
    out
}

/// Joins `items` pairwise, level by level, into a tree of depth log2(n); `None` when empty.
fn balanced(mut items: Vec<Expr>, join: impl Fn(Expr, Expr) -> Expr) -> Option<Expr> {
    while items.len() > 1 {
        let mut next = Vec::with_capacity(items.len().div_ceil(2));
        let mut it = items.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => join(a, b),
                None => a,
            });
        }
        items = next;
    }
    items.pop()
}

/// A comparison with implicit literal casts (a string compared with a timestamp is a timestamp).
fn typed_cmp(op: CmpOp, l: Expr, r: Expr, cols: &[RelCol]) -> Result<Expr> {
    let (lt, rt) = (expr_type(&l, cols)?, expr_type(&r, cols)?);
    let (l, r) = match (l, r) {
        (Expr::Lit(s), r)
            if s.dtype() == DType::Varchar && rt != DType::Varchar && rt != DType::Null =>
        {
            (Expr::Lit(cast_lit(s, rt)?), r)
        }
        (l, Expr::Lit(s))
            if s.dtype() == DType::Varchar && lt != DType::Varchar && lt != DType::Null =>
        {
            (l, Expr::Lit(cast_lit(s, lt)?))
        }
        pair => pair,
    };
    let (lt, rt) = (expr_type(&l, cols)?, expr_type(&r, cols)?);
    let numeric = |t: DType| matches!(t, DType::Bigint | DType::Double);
    let ok = lt == rt || lt == DType::Null || rt == DType::Null || (numeric(lt) && numeric(rt));
    if !ok {
        return Err(QueryError::Type(format!(
            "cannot compare {} with {}",
            lt.name(),
            rt.name()
        )));
    }
    Ok(fold_interval_cmp(op, l, r))
}

/// `x + INTERVAL d <op> c` becomes `x <op> c - d` (and `x - d <op> c` becomes `x <op> c + d`) when the
/// interval has no months: exact on µs, and the comparison then runs on the stored values directly,
/// with no arithmetic per row. The journey runner's wait steps are this shape.
fn fold_interval_cmp(op: CmpOp, l: Expr, r: Expr) -> Expr {
    fn shift(e: &Expr) -> Option<(&Expr, i64)> {
        match e {
            Expr::Arith(ArithOp::Add, x, y, DType::Timestamp) => match (x.as_ref(), y.as_ref()) {
                (x, Expr::Lit(Scalar::Interval(iv))) | (Expr::Lit(Scalar::Interval(iv)), x)
                    if iv.months == 0 =>
                {
                    Some((x, iv.micros))
                }
                _ => None,
            },
            Expr::Arith(ArithOp::Sub, x, lit, DType::Timestamp) => match lit.as_ref() {
                Expr::Lit(Scalar::Interval(iv)) if iv.months == 0 => {
                    iv.micros.checked_neg().map(|m| (x.as_ref(), m))
                }
                _ => None,
            },
            _ => None,
        }
    }
    match (&l, &r) {
        (a, Expr::Lit(Scalar::Ts(c))) => {
            if let Some((x, d)) = shift(a) {
                if let Some(c2) = c.checked_sub(d) {
                    return Expr::Cmp(op, Box::new(x.clone()), Box::new(Expr::Lit(Scalar::Ts(c2))));
                }
            }
        }
        (Expr::Lit(Scalar::Ts(c)), b) => {
            if let Some((x, d)) = shift(b) {
                if let Some(c2) = c.checked_sub(d) {
                    return Expr::Cmp(op, Box::new(Expr::Lit(Scalar::Ts(c2))), Box::new(x.clone()));
                }
            }
        }
        _ => {}
    }
    Expr::Cmp(op, Box::new(l), Box::new(r))
}

fn typed_arith(op: ArithOp, l: Expr, r: Expr, cols: &[RelCol]) -> Result<Expr> {
    let (lt, rt) = (expr_type(&l, cols)?, expr_type(&r, cols)?);
    let out = match (op, lt, rt) {
        (_, DType::Null, _) | (_, _, DType::Null) => DType::Null,
        (ArithOp::Add | ArithOp::Sub, DType::Timestamp, DType::Interval)
        | (ArithOp::Add, DType::Interval, DType::Timestamp) => DType::Timestamp,
        (ArithOp::Div, DType::Bigint | DType::Double, DType::Bigint | DType::Double) => {
            DType::Double
        }
        (_, DType::Bigint, DType::Bigint) => DType::Bigint,
        (_, DType::Bigint | DType::Double, DType::Bigint | DType::Double) => DType::Double,
        _ => {
            return Err(QueryError::Type(format!(
                "operator {} does not apply to {} and {}",
                op.sql(),
                lt.name(),
                rt.name()
            )))
        }
    };
    Ok(Expr::Arith(op, Box::new(l), Box::new(r), out))
}

/// The type of a planned expression.
#[recursive::recursive]
pub fn expr_type(e: &Expr, cols: &[RelCol]) -> Result<DType> {
    Ok(match e {
        Expr::Col(i) => cols
            .get(*i)
            .map(|c| c.dtype)
            .ok_or_else(|| QueryError::Internal(format!("column #{i} out of range")))?,
        Expr::Lit(s) => s.dtype(),
        Expr::Cmp(..)
        | Expr::And(..)
        | Expr::Or(..)
        | Expr::Not(_)
        | Expr::IsNull(..)
        | Expr::InList(..) => {
            if let Expr::And(a, b) | Expr::Or(a, b) = e {
                for x in [a, b] {
                    let t = expr_type(x, cols)?;
                    if !matches!(t, DType::Boolean | DType::Null) {
                        return Err(QueryError::Type(format!(
                            "AND / OR need conditions, not {}",
                            t.name()
                        )));
                    }
                }
            }
            if let Expr::Not(a) = e {
                let t = expr_type(a, cols)?;
                if !matches!(t, DType::Boolean | DType::Null) {
                    return Err(QueryError::Type(format!(
                        "NOT needs a condition, not {}",
                        t.name()
                    )));
                }
            }
            DType::Boolean
        }
        Expr::Arith(_, _, _, t) => *t,
        Expr::Neg(a) => expr_type(a, cols)?,
    })
}
