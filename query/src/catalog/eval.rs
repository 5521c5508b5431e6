//! A small row-at-a-time evaluator for queries over the catalog relations (and for SELECT without
//! FROM). Catalog relations hold a few rows per table, so nested loops are fine here; journey
//! state never comes through this path (it reads no user table).
//!
//! It covers what clients send when they connect and introspect: joins (inner, left, cross) with
//! ON, WHERE, GROUP BY with count/min/max/sum/string_agg, DISTINCT, ORDER BY on output positions,
//! names or input expressions, LIMIT / OFFSET, UNION [ALL], scalar / EXISTS / IN subqueries
//! (correlated too), CASE, casts (regclass, regtype, text, integers), regular expression and LIKE
//! operators, `OPERATOR(pg_catalog.~)`, `= ANY (array)`, arrays, and the catalog functions
//! (`pg_table_is_visible`, `format_type`, `pg_get_userbyid`, `current_schema()`, ...).

use std::cmp::Ordering;

use sqlparser::ast::{self, Expr};

use super::relations::{self, Relation, TableInfo};
use super::value::V;
use crate::error::{QueryError, Result};

/// What a catalog query may read besides the relations.
pub struct Env<'a> {
    /// The user tables.
    pub tables: &'a [TableInfo],
    /// `SHOW`-able settings of the session, for `current_setting(name)`.
    pub setting: &'a dyn Fn(&str) -> Option<String>,
    /// `now()` as text.
    pub now: String,
}

/// A query's result: output names and rows.
pub struct Rows {
    /// Column names.
    pub names: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<V>>,
}

fn unsupported<T>(what: impl Into<String>) -> Result<T> {
    Err(QueryError::Unsupported(format!(
        "{} (in a catalog query)",
        what.into()
    )))
}

fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    }
}

fn name_parts(n: &ast::ObjectName) -> Vec<String> {
    n.0.iter()
        .map(|p| match p {
            ast::ObjectNamePart::Identifier(i) => ident(i),
            other => other.to_string(),
        })
        .collect()
}

/// One relation of a FROM clause in a row: its qualifier, where its columns start, their names.
#[derive(Clone)]
struct Source {
    qual: String,
    start: usize,
    names: Vec<String>,
    open: bool,
}

/// The columns of a FROM clause.
#[derive(Clone, Default)]
struct Layout {
    sources: Vec<Source>,
    width: usize,
}

impl Layout {
    fn push(&mut self, qual: String, names: Vec<String>, open: bool) {
        let n = names.len();
        self.sources.push(Source {
            qual,
            start: self.width,
            names,
            open,
        });
        self.width += n;
    }

    fn concat(&self, other: &Layout) -> Layout {
        let mut out = self.clone();
        for s in &other.sources {
            out.push(s.qual.clone(), s.names.clone(), s.open);
        }
        out
    }
}

/// Where a name resolves: a column of the row, NULL (a column of an empty relation of objects
/// journeydb does not have), or nothing in this scope.
enum Found {
    At(usize),
    Null,
    No,
}

fn lookup(layout: &Layout, qual: Option<&str>, name: &str) -> Result<Found> {
    let mut found = Found::No;
    for s in &layout.sources {
        if qual.is_some_and(|q| q != s.qual) {
            continue;
        }
        if let Some(i) = s.names.iter().position(|n| n == name) {
            if matches!(found, Found::At(_)) && qual.is_none() {
                return Err(QueryError::ColumnNotFound(format!("{name} is ambiguous")));
            }
            found = Found::At(s.start + i);
        } else if s.open && matches!(found, Found::No) {
            found = Found::Null;
        }
    }
    Ok(found)
}

/// A row and the scopes around it (correlated subqueries read outer rows).
#[derive(Clone, Copy)]
struct Scope<'s> {
    layout: &'s Layout,
    row: &'s [V],
    /// Output aliases of the SELECT being evaluated (ORDER BY may name them).
    aliases: Option<(&'s [String], &'s [V])>,
    outer: Option<&'s Scope<'s>>,
}

impl Scope<'_> {
    fn column(&self, qual: Option<&str>, name: &str) -> Result<V> {
        let mut scope = Some(self);
        while let Some(s) = scope {
            match lookup(s.layout, qual, name)? {
                Found::At(i) => return Ok(s.row.get(i).cloned().unwrap_or(V::Null)),
                Found::Null => return Ok(V::Null),
                Found::No => {}
            }
            if qual.is_none() {
                if let Some((names, vals)) = s.aliases {
                    if let Some(i) = names.iter().position(|n| n == name) {
                        return Ok(vals.get(i).cloned().unwrap_or(V::Null));
                    }
                }
            }
            scope = s.outer;
        }
        Err(QueryError::ColumnNotFound(match qual {
            Some(q) => format!("{q}.{name}"),
            None => name.to_string(),
        }))
    }
}

/// Runs a catalog query.
pub fn query(q: &ast::Query, env: &Env<'_>) -> Result<Rows> {
    run_query(q, env, None)
}

#[recursive::recursive]
fn run_query(q: &ast::Query, env: &Env<'_>, outer: Option<&Scope<'_>>) -> Result<Rows> {
    if q.with.is_some() {
        return unsupported("WITH");
    }
    let order: &[ast::OrderByExpr] = match &q.order_by {
        None => &[],
        Some(ob) => match &ob.kind {
            ast::OrderByKind::Expressions(e) => e,
            ast::OrderByKind::All(_) => return unsupported("ORDER BY ALL"),
        },
    };
    let mut out = match q.body.as_ref() {
        ast::SetExpr::Select(s) => select(s, order, env, outer)?,
        other => {
            let mut r = set_expr(other, env, outer)?;
            sort_output(&mut r, order, env, outer)?;
            r
        }
    };
    if let Some(ast::LimitClause::LimitOffset { limit, offset, .. }) = &q.limit_clause {
        let empty = Layout::default();
        let scope = Scope {
            layout: &empty,
            row: &[],
            aliases: None,
            outer,
        };
        if let Some(o) = offset {
            let n = eval(&o.value, &scope, env)?;
            let n = usize::try_from(as_int(&n).unwrap_or(0)).unwrap_or(0);
            out.rows.drain(..n.min(out.rows.len()));
        }
        if let Some(l) = limit {
            if let Some(n) = as_int(&eval(l, &scope, env)?) {
                out.rows.truncate(usize::try_from(n).unwrap_or(0));
            }
        }
    }
    Ok(out)
}

#[recursive::recursive]
fn set_expr(body: &ast::SetExpr, env: &Env<'_>, outer: Option<&Scope<'_>>) -> Result<Rows> {
    match body {
        ast::SetExpr::Select(s) => select(s, &[], env, outer),
        ast::SetExpr::Query(q) => run_query(q, env, outer),
        ast::SetExpr::Values(v) => {
            let empty = Layout::default();
            let scope = Scope {
                layout: &empty,
                row: &[],
                aliases: None,
                outer,
            };
            let rows = v
                .rows
                .iter()
                .map(|r| r.iter().map(|e| eval(e, &scope, env)).collect())
                .collect::<Result<Vec<Vec<V>>>>()?;
            let width = rows.first().map_or(0, Vec::len);
            Ok(Rows {
                names: (1..=width).map(|i| format!("column{i}")).collect(),
                rows,
            })
        }
        ast::SetExpr::SetOperation {
            op,
            set_quantifier,
            left,
            right,
        } => {
            let l = set_expr(left, env, outer)?;
            let r = set_expr(right, env, outer)?;
            let distinct = !matches!(set_quantifier, ast::SetQuantifier::All);
            let key = |row: &Vec<V>| row.iter().map(V::text).collect::<Vec<_>>();
            let rows = match op {
                ast::SetOperator::Union => {
                    let mut rows = l.rows;
                    rows.extend(r.rows);
                    rows
                }
                ast::SetOperator::Intersect => {
                    let keys: Vec<_> = r.rows.iter().map(key).collect();
                    l.rows
                        .into_iter()
                        .filter(|x| keys.contains(&key(x)))
                        .collect()
                }
                ast::SetOperator::Except => {
                    let keys: Vec<_> = r.rows.iter().map(key).collect();
                    l.rows
                        .into_iter()
                        .filter(|x| !keys.contains(&key(x)))
                        .collect()
                }
                other => return unsupported(format!("{other}")),
            };
            Ok(Rows {
                names: l.names,
                rows: if distinct { dedupe(rows) } else { rows },
            })
        }
        other => unsupported(format!("{other}")),
    }
}

fn dedupe(rows: Vec<Vec<V>>) -> Vec<Vec<V>> {
    let mut seen = std::collections::HashSet::new();
    rows.into_iter()
        .filter(|r| seen.insert(r.iter().map(V::text).collect::<Vec<_>>()))
        .collect()
}

/// ORDER BY over output rows (after a set operation): positions, output names, or expressions
/// over the output columns.
fn sort_output(
    r: &mut Rows,
    order: &[ast::OrderByExpr],
    env: &Env<'_>,
    outer: Option<&Scope<'_>>,
) -> Result<()> {
    if order.is_empty() {
        return Ok(());
    }
    let mut layout = Layout::default();
    layout.push(String::new(), r.names.clone(), false);
    let mut keyed = Vec::with_capacity(r.rows.len());
    for row in std::mem::take(&mut r.rows) {
        let scope = Scope {
            layout: &layout,
            row: &row,
            aliases: None,
            outer,
        };
        let keys = order
            .iter()
            .map(|o| order_key(&o.expr, &scope, &row, env))
            .collect::<Result<Vec<_>>>()?;
        keyed.push((keys, row));
    }
    sort_keyed(&mut keyed, order);
    r.rows = keyed.into_iter().map(|(_, row)| row).collect();
    Ok(())
}

fn order_key(e: &Expr, scope: &Scope<'_>, output: &[V], env: &Env<'_>) -> Result<V> {
    if let Expr::Value(v) = e {
        if let ast::Value::Number(n, _) = &v.value {
            let i: usize = n
                .parse()
                .map_err(|_| QueryError::InvalidValue(format!("ORDER BY position {n}")))?;
            return output
                .get(i.wrapping_sub(1))
                .cloned()
                .ok_or_else(|| QueryError::InvalidValue(format!("ORDER BY position {n}")));
        }
    }
    eval(e, scope, env)
}

fn sort_keyed(keyed: &mut [(Vec<V>, Vec<V>)], order: &[ast::OrderByExpr]) {
    keyed.sort_by(|(a, _), (b, _)| {
        for (i, o) in order.iter().enumerate() {
            let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
            // PostgreSQL: NULLS LAST ascending, NULLS FIRST descending, unless told.
            let nulls_first = o.options.nulls_first.unwrap_or(desc);
            let (x, y) = (a.get(i).unwrap_or(&V::Null), b.get(i).unwrap_or(&V::Null));
            let ord = match (x, y) {
                (V::Null, V::Null) => Ordering::Equal,
                (V::Null, _) => {
                    if nulls_first {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                (_, V::Null) => {
                    if nulls_first {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                _ => {
                    let o = x.cmp_sql(y).unwrap_or(Ordering::Equal);
                    if desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
}

/// The rows of a FROM clause (one empty row when there is none).
fn from_rows(
    from: &[ast::TableWithJoins],
    env: &Env<'_>,
    outer: Option<&Scope<'_>>,
) -> Result<(Layout, Vec<Vec<V>>)> {
    let mut layout = Layout::default();
    let mut rows: Vec<Vec<V>> = vec![Vec::new()];
    for twj in from {
        let (l, r) = join_tree(twj, env, outer)?;
        let mut next = Vec::with_capacity(rows.len() * r.len());
        for a in &rows {
            for b in &r {
                let mut row = a.clone();
                row.extend(b.iter().cloned());
                next.push(row);
            }
        }
        layout = layout.concat(&l);
        rows = next;
    }
    Ok((layout, rows))
}

#[recursive::recursive]
fn join_tree(
    twj: &ast::TableWithJoins,
    env: &Env<'_>,
    outer: Option<&Scope<'_>>,
) -> Result<(Layout, Vec<Vec<V>>)> {
    let (mut layout, mut rows) = factor(&twj.relation, env, outer)?;
    for j in &twj.joins {
        let (rl, rr) = factor(&j.relation, env, outer)?;
        let both = layout.concat(&rl);
        let (constraint, left_outer) = match &j.join_operator {
            ast::JoinOperator::Join(c) | ast::JoinOperator::Inner(c) => (Some(c), false),
            ast::JoinOperator::Left(c) | ast::JoinOperator::LeftOuter(c) => (Some(c), true),
            ast::JoinOperator::CrossJoin(_) => (None, false),
            other => return unsupported(format!("join {other:?}")),
        };
        let cond = match constraint {
            None | Some(ast::JoinConstraint::None) => None,
            Some(ast::JoinConstraint::On(e)) => Some(e),
            Some(other) => return unsupported(format!("join constraint {other:?}")),
        };
        let mut next = Vec::new();
        for a in &rows {
            let mut matched = false;
            for b in &rr {
                let mut row = a.clone();
                row.extend(b.iter().cloned());
                let keep = match cond {
                    None => true,
                    Some(e) => {
                        let scope = Scope {
                            layout: &both,
                            row: &row,
                            aliases: None,
                            outer,
                        };
                        eval(e, &scope, env)?.truth() == Some(true)
                    }
                };
                if keep {
                    matched = true;
                    next.push(row);
                }
            }
            if left_outer && !matched {
                let mut row = a.clone();
                row.extend(std::iter::repeat_n(V::Null, rl.width));
                next.push(row);
            }
        }
        layout = both;
        rows = next;
    }
    Ok((layout, rows))
}

fn alias_name(alias: &Option<ast::TableAlias>) -> Option<String> {
    alias.as_ref().map(|a| ident(&a.name))
}

#[recursive::recursive]
fn factor(
    f: &ast::TableFactor,
    env: &Env<'_>,
    outer: Option<&Scope<'_>>,
) -> Result<(Layout, Vec<Vec<V>>)> {
    let mut layout = Layout::default();
    match f {
        ast::TableFactor::Table {
            name, alias, args, ..
        } => {
            let parts = name_parts(name);
            if let Some(args) = args {
                // A table function: unnest(array) is the one catalog queries use.
                let fname = parts.last().cloned().unwrap_or_default();
                if fname != "unnest" {
                    return unsupported(format!("table function {fname}"));
                }
                let empty = Layout::default();
                let scope = Scope {
                    layout: &empty,
                    row: &[],
                    aliases: None,
                    outer,
                };
                let mut rows = Vec::new();
                for a in &args.args {
                    if let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) = a {
                        if let V::Arr(items) = eval(e, &scope, env)? {
                            rows.extend(items.into_iter().map(|v| vec![v]));
                        }
                    }
                }
                let q = alias_name(alias).unwrap_or_else(|| "unnest".into());
                layout.push(q.clone(), vec![q], false);
                return Ok((layout, rows));
            }
            let (schema, table) = match parts.as_slice() {
                [t] => ("pg_catalog".to_string(), t.clone()),
                [s, t] => (s.clone(), t.clone()),
                [_, s, t] => (s.clone(), t.clone()),
                _ => return unsupported(format!("relation {name}")),
            };
            let rel: Relation = relations::relation(&schema, &table, env.tables)
                .ok_or_else(|| {
                    QueryError::Unsupported(format!(
                        "relation {name}: a query over pg_catalog or information_schema (or without FROM) reads only catalog relations"
                    ))
                })?;
            let mut names = rel.cols.clone();
            if let Some(cols) = alias.as_ref().map(|a| &a.columns) {
                for (n, c) in names.iter_mut().zip(cols) {
                    *n = ident(&c.name);
                }
            }
            layout.push(alias_name(alias).unwrap_or(table), names, rel.open);
            Ok((layout, rel.rows))
        }
        ast::TableFactor::Derived {
            subquery, alias, ..
        } => {
            let r = run_query(subquery, env, outer)?;
            let mut names = r.names;
            if let Some(cols) = alias.as_ref().map(|a| &a.columns) {
                for (n, c) in names.iter_mut().zip(cols) {
                    *n = ident(&c.name);
                }
            }
            layout.push(alias_name(alias).unwrap_or_default(), names, false);
            Ok((layout, r.rows))
        }
        ast::TableFactor::NestedJoin {
            table_with_joins, ..
        } => join_tree(table_with_joins, env, outer),
        other => unsupported(format!("FROM {other}")),
    }
}

fn is_aggregate_name(n: &str) -> bool {
    matches!(
        n,
        "count" | "min" | "max" | "sum" | "string_agg" | "array_agg" | "bool_and" | "bool_or"
    )
}

fn function_name(f: &ast::Function) -> String {
    name_parts(&f.name).last().cloned().unwrap_or_default()
}

#[recursive::recursive]
fn has_aggregate(e: &Expr) -> bool {
    match e {
        Expr::Function(f) => {
            is_aggregate_name(&function_name(f)) && f.over.is_none()
                || function_args(f).iter().any(|a| has_aggregate(a))
        }
        Expr::BinaryOp { left, right, .. } => has_aggregate(left) || has_aggregate(right),
        Expr::UnaryOp { expr, .. } | Expr::Nested(expr) | Expr::Cast { expr, .. } => {
            has_aggregate(expr)
        }
        Expr::Case {
            conditions,
            else_result,
            ..
        } => {
            conditions
                .iter()
                .any(|c| has_aggregate(&c.condition) || has_aggregate(&c.result))
                || else_result.as_deref().is_some_and(has_aggregate)
        }
        _ => false,
    }
}

fn function_args(f: &ast::Function) -> Vec<&Expr> {
    match &f.args {
        ast::FunctionArguments::List(l) => l
            .args
            .iter()
            .filter_map(|a| match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))
                | ast::FunctionArg::Named {
                    arg: ast::FunctionArgExpr::Expr(e),
                    ..
                } => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn item_name(item: &ast::SelectItem) -> String {
    match item {
        ast::SelectItem::ExprWithAlias { alias, .. } => ident(alias),
        ast::SelectItem::UnnamedExpr(e) => default_name(e),
        _ => "?column?".into(),
    }
}

fn default_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => ident(i),
        Expr::CompoundIdentifier(p) => p.last().map(ident).unwrap_or_default(),
        Expr::Function(f) => function_name(f),
        Expr::Cast {
            expr, data_type, ..
        } => match expr.as_ref() {
            Expr::Value(_) => data_type.to_string().to_ascii_lowercase(),
            inner => default_name(inner),
        },
        Expr::Nested(x) => default_name(x),
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Array(_) => "array".into(),
        _ => "?column?".into(),
    }
}

/// A SELECT: FROM, WHERE, GROUP BY / aggregates, projection, DISTINCT, and ORDER BY (which may
/// read input columns that are not projected).
#[recursive::recursive]
fn select(
    s: &ast::Select,
    order: &[ast::OrderByExpr],
    env: &Env<'_>,
    outer: Option<&Scope<'_>>,
) -> Result<Rows> {
    let (layout, mut rows) = from_rows(&s.from, env, outer)?;
    if let Some(w) = &s.selection {
        let mut kept = Vec::new();
        for row in rows {
            let scope = Scope {
                layout: &layout,
                row: &row,
                aliases: None,
                outer,
            };
            if eval(w, &scope, env)?.truth() == Some(true) {
                kept.push(row);
            }
        }
        rows = kept;
    }
    // Output columns: wildcards expand to the FROM's columns.
    let items = select_items(s, &layout)?;
    let names: Vec<String> = items.iter().map(|(n, _, _)| n.clone()).collect();
    let group_by: &[Expr] = match &s.group_by {
        ast::GroupByExpr::Expressions(e, _) => e,
        ast::GroupByExpr::All(_) => return unsupported("GROUP BY ALL"),
    };
    let aggregate =
        !group_by.is_empty() || items.iter().any(|(_, e, _)| e.is_some_and(has_aggregate));
    // Groups: each a representative row and its member rows.
    let groups = group_rows(rows, aggregate, group_by, &layout, env, outer)?;
    // Window functions of the SELECT list (row_number / rank / dense_rank over a partition),
    // computed over the rows before projection: (item index, value per row).
    let mut windows: Vec<(usize, Vec<V>)> = Vec::new();
    if !aggregate {
        for (i, (_, e, _)) in items.iter().enumerate() {
            if let Some(Expr::Function(f)) = e {
                if let Some(ast::WindowType::WindowSpec(spec)) = &f.over {
                    windows.push((i, window_values(f, spec, &groups, &layout, env, outer)?));
                }
            }
        }
    }
    let mut keyed = Vec::with_capacity(groups.len());
    for (n, (row, members)) in groups.iter().enumerate() {
        let scope = Scope {
            layout: &layout,
            row,
            aliases: None,
            outer,
        };
        let ctx = EvalCtx {
            env,
            members: aggregate.then_some((members.as_slice(), &layout)),
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, (_, e, at)) in items.iter().enumerate() {
            if let Some((_, vals)) = windows.iter().find(|(w, _)| *w == i) {
                out.push(vals.get(n).cloned().unwrap_or(V::Null));
                continue;
            }
            out.push(match (e, at) {
                (Some(e), _) => eval_in(e, &scope, &ctx)?,
                (None, Some(i)) => row.get(*i).cloned().unwrap_or(V::Null),
                (None, None) => V::Null,
            });
        }
        if let Some(h) = &s.having {
            if eval_in(h, &scope, &ctx)?.truth() != Some(true) {
                continue;
            }
        }
        let oscope = Scope {
            layout: &layout,
            row,
            aliases: Some((&names, &out)),
            outer,
        };
        let keys = order
            .iter()
            .map(|o| {
                if let Expr::Value(_) = &o.expr {
                    order_key(&o.expr, &oscope, &out, env)
                } else {
                    eval_in(&o.expr, &oscope, &ctx)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        keyed.push((keys, out));
    }
    sort_keyed(&mut keyed, order);
    let mut rows: Vec<Vec<V>> = keyed.into_iter().map(|(_, r)| r).collect();
    if s.distinct.is_some() {
        rows = dedupe(rows);
    }
    Ok(Rows { names, rows })
}

/// The SELECT list: each output column's name and its expression, or the FROM column a wildcard
/// expands to.
#[allow(clippy::type_complexity)]
fn select_items<'s>(
    s: &'s ast::Select,
    layout: &Layout,
) -> Result<Vec<(String, Option<&'s Expr>, Option<usize>)>> {
    let mut items: Vec<(String, Option<&Expr>, Option<usize>)> = Vec::new();
    for item in &s.projection {
        match item {
            ast::SelectItem::Wildcard(_) => {
                for src in &layout.sources {
                    for (i, n) in src.names.iter().enumerate() {
                        items.push((n.clone(), None, Some(src.start + i)));
                    }
                }
            }
            ast::SelectItem::QualifiedWildcard(kind, _) => {
                let q = match kind {
                    ast::SelectItemQualifiedWildcardKind::ObjectName(n) => {
                        name_parts(n).last().cloned().unwrap_or_default()
                    }
                    ast::SelectItemQualifiedWildcardKind::Expr(e) => default_name(e),
                };
                for src in layout.sources.iter().filter(|x| x.qual == q) {
                    for (i, n) in src.names.iter().enumerate() {
                        items.push((n.clone(), None, Some(src.start + i)));
                    }
                }
            }
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                items.push((item_name(item), Some(e), None))
            }
            other => return unsupported(format!("select item {other}")),
        }
    }
    Ok(items)
}

/// Rows grouped by `group_by` when the SELECT aggregates (each group: a representative row and its
/// members; one empty group for an aggregate without GROUP BY over no rows), else each row alone.
#[allow(clippy::type_complexity)]
fn group_rows(
    rows: Vec<Vec<V>>,
    aggregate: bool,
    group_by: &[Expr],
    layout: &Layout,
    env: &Env<'_>,
    outer: Option<&Scope<'_>>,
) -> Result<Vec<(Vec<V>, Vec<Vec<V>>)>> {
    Ok(if aggregate {
        // (group key as text, a representative row, the member rows)
        type Group = (Vec<Option<String>>, Vec<V>, Vec<Vec<V>>);
        let mut groups: Vec<Group> = Vec::new();
        for row in rows {
            let scope = Scope {
                layout,
                row: &row,
                aliases: None,
                outer,
            };
            let key = group_by
                .iter()
                .map(|g| eval(g, &scope, env).map(|v| v.text()))
                .collect::<Result<Vec<_>>>()?;
            match groups.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, _, members)) => members.push(row),
                None => groups.push((key, row.clone(), vec![row])),
            }
        }
        if groups.is_empty() && group_by.is_empty() {
            groups.push((Vec::new(), vec![V::Null; layout.width], Vec::new()));
        }
        groups.into_iter().map(|(_, r, m)| (r, m)).collect()
    } else {
        rows.into_iter().map(|r| (r, Vec::new())).collect()
    })
}

/// The values of a ranking window function for every row: rows are grouped by the PARTITION BY
/// keys and numbered in ORDER BY order within each group.
fn window_values(
    f: &ast::Function,
    spec: &ast::WindowSpec,
    rows: &[(Vec<V>, Vec<Vec<V>>)],
    layout: &Layout,
    env: &Env<'_>,
    outer: Option<&Scope<'_>>,
) -> Result<Vec<V>> {
    let name = function_name(f);
    if !matches!(name.as_str(), "row_number" | "rank" | "dense_rank") {
        return unsupported(format!("window function {name}"));
    }
    let mut keyed = Vec::with_capacity(rows.len());
    for (i, (row, _)) in rows.iter().enumerate() {
        let scope = Scope {
            layout,
            row,
            aliases: None,
            outer,
        };
        let part = spec
            .partition_by
            .iter()
            .map(|e| eval(e, &scope, env).map(|v| v.text()))
            .collect::<Result<Vec<_>>>()?;
        let order = spec
            .order_by
            .iter()
            .map(|o| eval(&o.expr, &scope, env))
            .collect::<Result<Vec<_>>>()?;
        keyed.push((part, order, i));
    }
    // Partition, then order within the partition (stable: ties keep input order).
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = vec![V::Null; rows.len()];
    let mut start = 0;
    while start < keyed.len() {
        let part_key = keyed.get(start).map(|k| &k.0);
        let end = keyed
            .iter()
            .skip(start)
            .position(|k| Some(&k.0) != part_key)
            .map_or(keyed.len(), |p| start + p);
        let mut part: Vec<(Vec<V>, Vec<V>)> = keyed
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .map(|(_, o, i)| (o.clone(), vec![V::Int(*i as i64)]))
            .collect();
        sort_keyed(&mut part, &spec.order_by);
        let (mut rank, mut dense) = (0i64, 0i64);
        let mut prev: Option<&Vec<V>> = None;
        for (n, (order, idx)) in part.iter().enumerate() {
            let tie = prev.is_some_and(|p| {
                p.len() == order.len()
                    && p.iter()
                        .zip(order)
                        .all(|(a, b)| a.cmp_sql(b) == Some(Ordering::Equal))
            });
            if !tie {
                rank = n as i64 + 1;
                dense += 1;
            }
            prev = Some(order);
            let value = match name.as_str() {
                "row_number" => n as i64 + 1,
                "rank" => rank,
                _ => dense,
            };
            if let Some(V::Int(i)) = idx.first() {
                if let Some(slot) = out.get_mut(*i as usize) {
                    *slot = V::Int(value);
                }
            }
        }
        start = end;
    }
    Ok(out)
}

/// Evaluation context: the environment and, inside an aggregate query, the group's rows.
struct EvalCtx<'a, 'e> {
    env: &'a Env<'e>,
    members: Option<(&'a [Vec<V>], &'a Layout)>,
}

fn eval(e: &Expr, scope: &Scope<'_>, env: &Env<'_>) -> Result<V> {
    eval_in(e, scope, &EvalCtx { env, members: None })
}

fn as_int(v: &V) -> Option<i64> {
    match v {
        V::Int(i) => Some(*i),
        V::Float(f) => Some(*f as i64),
        V::Str(s) => s.trim().parse().ok(),
        V::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn text_of(v: &V) -> Option<String> {
    v.text()
}

fn regex_match(text: &str, pattern: &str, case_insensitive: bool) -> Result<bool> {
    let re = regex_lite::RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| QueryError::InvalidValue(format!("regular expression {pattern:?}: {e}")))?;
    Ok(re.is_match(text))
}

fn like(text: &str, pattern: &str, case_insensitive: bool) -> bool {
    // LIKE as a linear-time matcher over chars: % is any run, _ any one char, \ escapes.
    let t: Vec<char> = if case_insensitive {
        text.to_lowercase().chars().collect()
    } else {
        text.chars().collect()
    };
    let p: Vec<char> = if case_insensitive {
        pattern.to_lowercase().chars().collect()
    } else {
        pattern.chars().collect()
    };
    let (mut ti, mut pi) = (0usize, 0usize);
    let (mut star, mut mark) = (None, 0usize);
    while ti < t.len() {
        match p.get(pi) {
            Some('%') => {
                star = Some(pi);
                mark = ti;
                pi += 1;
            }
            Some('\\') if p.get(pi + 1) == t.get(ti) => {
                pi += 2;
                ti += 1;
            }
            Some('_') => {
                pi += 1;
                ti += 1;
            }
            Some(c) if Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some(s) => {
                    pi = s + 1;
                    mark += 1;
                    ti = mark;
                }
                None => return false,
            },
        }
    }
    while p.get(pi) == Some(&'%') {
        pi += 1;
    }
    pi == p.len()
}

fn cmp_op(op: &ast::BinaryOperator, l: &V, r: &V) -> Option<V> {
    use ast::BinaryOperator as B;
    let o = l.cmp_sql(r)?;
    Some(V::Bool(match op {
        B::Eq => o == Ordering::Equal,
        B::NotEq => o != Ordering::Equal,
        B::Lt => o == Ordering::Less,
        B::LtEq => o != Ordering::Greater,
        B::Gt => o == Ordering::Greater,
        B::GtEq => o != Ordering::Less,
        _ => return None,
    }))
}

fn arith(op: &ast::BinaryOperator, l: V, r: V) -> Result<V> {
    use ast::BinaryOperator as B;
    if matches!(l, V::Null) || matches!(r, V::Null) {
        return Ok(V::Null);
    }
    let overflow = || QueryError::InvalidValue("integer out of range".into());
    match (as_int(&l), as_int(&r), &l, &r) {
        (Some(a), Some(b), V::Int(_) | V::Str(_), V::Int(_) | V::Str(_)) => Ok(V::Int(match op {
            B::Plus => a.checked_add(b).ok_or_else(overflow)?,
            B::Minus => a.checked_sub(b).ok_or_else(overflow)?,
            B::Multiply => a.checked_mul(b).ok_or_else(overflow)?,
            B::Divide => a
                .checked_div(b)
                .ok_or_else(|| QueryError::InvalidValue("division by zero".into()))?,
            B::Modulo => a
                .checked_rem(b)
                .ok_or_else(|| QueryError::InvalidValue("division by zero".into()))?,
            other => return unsupported(format!("operator {other}")),
        })),
        _ => {
            let f = |v: &V| match v {
                V::Int(i) => Some(*i as f64),
                V::Float(f) => Some(*f),
                V::Str(s) => s.trim().parse().ok(),
                _ => None,
            };
            let (Some(a), Some(b)) = (f(&l), f(&r)) else {
                return unsupported(format!("operator {op} on these types"));
            };
            Ok(V::Float(match op {
                B::Plus => a + b,
                B::Minus => a - b,
                B::Multiply => a * b,
                B::Divide => a / b,
                other => return unsupported(format!("operator {other}")),
            }))
        }
    }
}

fn table_by_oid<'t>(env: &'t Env<'_>, oid: i64) -> Option<&'t TableInfo> {
    env.tables.iter().find(|t| t.oid == oid)
}

/// `::regclass` of a value: a table name (optionally `public.`-qualified, optionally quoted) or
/// an OID, as an OID.
fn regclass(env: &Env<'_>, v: &V) -> Result<V> {
    Ok(match v {
        V::Null => V::Null,
        V::Int(i) => V::Int(*i),
        V::Str(s) => match s.trim().parse::<i64>() {
            Ok(i) => V::Int(i),
            Err(_) => {
                let name = s.trim();
                let name = name.strip_prefix("public.").unwrap_or(name);
                let name = name
                    .strip_prefix('"')
                    .and_then(|n| n.strip_suffix('"'))
                    .map_or_else(|| name.to_ascii_lowercase(), str::to_string);
                match env.tables.iter().find(|t| t.name == name) {
                    Some(t) => V::Int(t.oid),
                    None => {
                        return Err(QueryError::TableNotFound(format!(
                            "relation \"{name}\" does not exist"
                        )))
                    }
                }
            }
        },
        other => return unsupported(format!("regclass of {other:?}")),
    })
}

#[recursive::recursive]
// long: one arm per expression kind of the catalog evaluator; splitting would scatter the table.
fn eval_in(e: &Expr, scope: &Scope<'_>, ctx: &EvalCtx<'_, '_>) -> Result<V> {
    let env = ctx.env;
    let ev = |x: &Expr| eval_in(x, scope, ctx);
    Ok(match e {
        Expr::Identifier(i) => {
            let name = ident(i);
            match scope.column(None, &name) {
                Ok(v) => v,
                Err(err) => match name.as_str() {
                    // SQL's niladic functions, when no column has the name.
                    "current_user" | "session_user" | "user" | "current_role" => {
                        V::Str(relations::OWNER.into())
                    }
                    "current_schema" => V::Str("public".into()),
                    "current_catalog" => V::Str(relations::DATABASE.into()),
                    _ => return Err(err),
                },
            }
        }
        Expr::CompoundIdentifier(parts) => {
            let parts: Vec<String> = parts.iter().map(ident).collect();
            match parts.as_slice() {
                [q, c] | [_, q, c] | [_, _, q, c] => scope.column(Some(q), c)?,
                _ => return unsupported(format!("name {e}")),
            }
        }
        Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => match n.parse::<i64>() {
                Ok(i) => V::Int(i),
                Err(_) => V::Float(
                    n.parse()
                        .map_err(|_| QueryError::InvalidValue(format!("number {n}")))?,
                ),
            },
            ast::Value::SingleQuotedString(s)
            | ast::Value::EscapedStringLiteral(s)
            | ast::Value::NationalStringLiteral(s) => V::Str(s.clone()),
            ast::Value::DollarQuotedString(d) => V::Str(d.value.clone()),
            ast::Value::Boolean(b) => V::Bool(*b),
            ast::Value::Null => V::Null,
            other => return unsupported(format!("literal {other}")),
        },
        Expr::TypedString(ts) => match &ts.value.value {
            ast::Value::SingleQuotedString(s) => cast(V::Str(s.clone()), &ts.data_type, env)?,
            other => return unsupported(format!("literal {other}")),
        },
        Expr::Nested(x) => ev(x)?,
        Expr::UnaryOp { op, expr } => {
            let v = ev(expr)?;
            match op {
                ast::UnaryOperator::Not => match v.truth() {
                    None => V::Null,
                    Some(b) => V::Bool(!b),
                },
                ast::UnaryOperator::Minus => {
                    match v {
                        V::Int(i) => V::Int(i.checked_neg().ok_or_else(|| {
                            QueryError::InvalidValue("integer out of range".into())
                        })?),
                        V::Float(f) => V::Float(-f),
                        V::Null => V::Null,
                        other => return unsupported(format!("-{other:?}")),
                    }
                }
                ast::UnaryOperator::Plus => v,
                other => return unsupported(format!("operator {other}")),
            }
        }
        Expr::BinaryOp { left, op, right } => {
            use ast::BinaryOperator as B;
            match op {
                B::And => {
                    let l = ev(left)?.truth();
                    if l == Some(false) {
                        return Ok(V::Bool(false));
                    }
                    match (l, ev(right)?.truth()) {
                        (_, Some(false)) => V::Bool(false),
                        (Some(true), Some(true)) => V::Bool(true),
                        _ => V::Null,
                    }
                }
                B::Or => {
                    let l = ev(left)?.truth();
                    if l == Some(true) {
                        return Ok(V::Bool(true));
                    }
                    match (l, ev(right)?.truth()) {
                        (_, Some(true)) => V::Bool(true),
                        (Some(false), Some(false)) => V::Bool(false),
                        _ => V::Null,
                    }
                }
                B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => {
                    let (l, r) = (ev(left)?, ev(right)?);
                    cmp_op(op, &l, &r).unwrap_or(V::Null)
                }
                B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => {
                    arith(op, ev(left)?, ev(right)?)?
                }
                B::StringConcat => match (ev(left)?, ev(right)?) {
                    (V::Arr(mut a), V::Arr(b)) => {
                        a.extend(b);
                        V::Arr(a)
                    }
                    (V::Null, V::Arr(b)) | (V::Arr(b), V::Null) => V::Arr(b),
                    (V::Arr(mut a), v) => {
                        a.push(v);
                        V::Arr(a)
                    }
                    (l, r) => match (text_of(&l), text_of(&r)) {
                        (Some(a), Some(b)) => V::Str(a + &b),
                        _ => V::Null,
                    },
                },
                B::PGRegexMatch | B::PGRegexIMatch | B::PGRegexNotMatch | B::PGRegexNotIMatch => {
                    regex_op(op, ev(left)?, ev(right)?)?
                }
                B::PGCustomBinaryOperator(parts) => {
                    let sym = parts.last().map(String::as_str).unwrap_or_default();
                    let op = match sym {
                        "~" => B::PGRegexMatch,
                        "~*" => B::PGRegexIMatch,
                        "!~" => B::PGRegexNotMatch,
                        "!~*" => B::PGRegexNotIMatch,
                        "=" => B::Eq,
                        "<>" => B::NotEq,
                        "<" => B::Lt,
                        ">" => B::Gt,
                        other => return unsupported(format!("OPERATOR({other})")),
                    };
                    let (l, r) = (ev(left)?, ev(right)?);
                    match op {
                        B::Eq | B::NotEq | B::Lt | B::Gt => cmp_op(&op, &l, &r).unwrap_or(V::Null),
                        _ => regex_op(&op, l, r)?,
                    }
                }
                other => return unsupported(format!("operator {other}")),
            }
        }
        Expr::Like {
            negated,
            expr,
            pattern,
            ..
        }
        | Expr::ILike {
            negated,
            expr,
            pattern,
            ..
        } => {
            let ci = matches!(e, Expr::ILike { .. });
            match (text_of(&ev(expr)?), text_of(&ev(pattern)?)) {
                (Some(t), Some(p)) => V::Bool(like(&t, &p, ci) != *negated),
                _ => V::Null,
            }
        }
        Expr::IsNull(x) => V::Bool(matches!(ev(x)?, V::Null)),
        Expr::IsNotNull(x) => V::Bool(!matches!(ev(x)?, V::Null)),
        Expr::IsTrue(x) => V::Bool(ev(x)?.truth() == Some(true)),
        Expr::IsFalse(x) => V::Bool(ev(x)?.truth() == Some(false)),
        Expr::IsNotTrue(x) => V::Bool(ev(x)?.truth() != Some(true)),
        Expr::IsNotFalse(x) => V::Bool(ev(x)?.truth() != Some(false)),
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
            let (a, b) = (ev(a)?, ev(b)?);
            let same = match (&a, &b) {
                (V::Null, V::Null) => true,
                (V::Null, _) | (_, V::Null) => false,
                _ => a.cmp_sql(&b) == Some(Ordering::Equal),
            };
            V::Bool(same == matches!(e, Expr::IsNotDistinctFrom(..)))
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let (x, lo, hi) = (ev(expr)?, ev(low)?, ev(high)?);
            match (x.cmp_sql(&lo), x.cmp_sql(&hi)) {
                (Some(a), Some(b)) => {
                    V::Bool((a != Ordering::Less && b != Ordering::Greater) != *negated)
                }
                _ => V::Null,
            }
        }
        Expr::In {
            expr,
            target: ast::InTarget::List(list),
            negated,
            ..
        } => {
            let x = ev(expr)?;
            let items = list.iter().map(&ev).collect::<Result<Vec<_>>>()?;
            in_values(&x, &items, *negated)
        }
        Expr::In {
            expr,
            target: ast::InTarget::Subquery(subquery),
            negated,
            ..
        } => {
            let x = ev(expr)?;
            let r = run_query(subquery, env, Some(scope))?;
            let items: Vec<V> = r
                .rows
                .into_iter()
                .map(|r| r.into_iter().next().unwrap_or(V::Null))
                .collect();
            in_values(&x, &items, *negated)
        }
        Expr::AnyOp {
            left,
            compare_op,
            right,
            ..
        }
        | Expr::AllOp {
            left,
            compare_op,
            right,
        } => {
            let x = ev(left)?;
            let items = match ev(right)? {
                V::Arr(a) => a,
                V::Null => return Ok(V::Null),
                V::Str(s) => parse_array_text(&s),
                other => vec![other],
            };
            let any = matches!(e, Expr::AnyOp { .. });
            let mut saw_null = false;
            let mut result = !any;
            for it in &items {
                match cmp_op(compare_op, &x, it) {
                    Some(V::Bool(b)) => {
                        if any && b {
                            result = true;
                            break;
                        }
                        if !any && !b {
                            result = false;
                            break;
                        }
                    }
                    _ => saw_null = true,
                }
            }
            if saw_null && result != any {
                V::Null
            } else {
                V::Bool(result)
            }
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let base = operand.as_deref().map(&ev).transpose()?;
            for c in conditions {
                let hit = match &base {
                    Some(b) => b.cmp_sql(&ev(&c.condition)?) == Some(Ordering::Equal),
                    None => ev(&c.condition)?.truth() == Some(true),
                };
                if hit {
                    return ev(&c.result);
                }
            }
            match else_result {
                Some(x) => ev(x)?,
                None => V::Null,
            }
        }
        Expr::Cast {
            expr, data_type, ..
        } => {
            // `x::regclass::text` prints the table's name.
            if let Expr::Cast {
                expr: inner,
                data_type: inner_type,
                ..
            } = expr.as_ref()
            {
                let inner_name = type_name(inner_type);
                if matches!(inner_name.as_str(), "regclass" | "regtype")
                    && matches!(type_name(data_type).as_str(), "text" | "varchar" | "name")
                {
                    let oid = cast(ev(inner)?, inner_type, env)?;
                    return Ok(match (inner_name.as_str(), as_int(&oid)) {
                        (_, None) => V::Null,
                        ("regclass", Some(o)) => V::Str(
                            table_by_oid(env, o).map_or_else(|| o.to_string(), |t| t.name.clone()),
                        ),
                        (_, Some(o)) => V::Str(
                            relations::format_type(o).map_or_else(|| o.to_string(), str::to_string),
                        ),
                    });
                }
            }
            cast(ev(expr)?, data_type, env)?
        }
        Expr::Collate { expr, .. } => ev(expr)?,
        Expr::AtTimeZone { timestamp, .. } => ev(timestamp)?,
        Expr::Array(a) => V::Arr(a.elem.iter().map(&ev).collect::<Result<Vec<_>>>()?),
        Expr::Subquery(q) => {
            let r = run_query(q, env, Some(scope))?;
            if r.rows.len() > 1 {
                return Err(QueryError::InvalidValue(
                    "more than one row returned by a subquery used as an expression".into(),
                ));
            }
            r.rows
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next())
                .unwrap_or(V::Null)
        }
        Expr::Exists { subquery, negated } => {
            let r = run_query(subquery, env, Some(scope))?;
            V::Bool(r.rows.is_empty() == *negated)
        }
        Expr::Function(f) => function(f, scope, ctx)?,
        other => return unsupported(format!("expression {other}")),
    })
}

fn parse_array_text(s: &str) -> Vec<V> {
    s.trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .filter(|x| !x.is_empty())
        .map(|x| V::Str(x.trim_matches('"').to_string()))
        .collect()
}

fn in_values(x: &V, items: &[V], negated: bool) -> V {
    if matches!(x, V::Null) {
        return V::Null;
    }
    let mut saw_null = false;
    for it in items {
        match x.cmp_sql(it) {
            Some(Ordering::Equal) => return V::Bool(!negated),
            None => saw_null = true,
            _ => {}
        }
    }
    if saw_null {
        V::Null
    } else {
        V::Bool(negated)
    }
}

fn regex_op(op: &ast::BinaryOperator, l: V, r: V) -> Result<V> {
    use ast::BinaryOperator as B;
    let (Some(t), Some(p)) = (text_of(&l), text_of(&r)) else {
        return Ok(V::Null);
    };
    let ci = matches!(op, B::PGRegexIMatch | B::PGRegexNotIMatch);
    let hit = regex_match(&t, &p, ci)?;
    Ok(V::Bool(
        hit != matches!(op, B::PGRegexNotMatch | B::PGRegexNotIMatch),
    ))
}

fn type_name(t: &ast::DataType) -> String {
    let s = t.to_string().to_ascii_lowercase();
    let s = s.strip_prefix("pg_catalog.").unwrap_or(&s).to_string();
    s.split('(').next().unwrap_or("").trim().to_string()
}

fn cast(v: V, t: &ast::DataType, env: &Env<'_>) -> Result<V> {
    if matches!(v, V::Null) {
        return Ok(V::Null);
    }
    Ok(match type_name(t).as_str() {
        "regclass" => regclass(env, &v)?,
        "regtype" | "regnamespace" | "regproc" | "regprocedure" | "oid" | "regrole" => {
            match as_int(&v) {
                Some(i) => V::Int(i),
                None => match (type_name(t).as_str(), &v) {
                    ("regnamespace", V::Str(s)) => V::Int(match s.as_str() {
                        "pg_catalog" => relations::PG_CATALOG_OID,
                        "information_schema" => relations::INFORMATION_SCHEMA_OID,
                        _ => relations::PUBLIC_OID,
                    }),
                    ("regtype", V::Str(s)) => relations::TYPES
                        .iter()
                        .find(|x| x.1 == s.as_str())
                        .map_or(V::Null, |x| V::Int(x.0)),
                    _ => return unsupported(format!("cast of {v:?} to {t}")),
                },
            }
        }
        "text" | "varchar" | "character varying" | "name" | "char" | "\"char\"" | "bpchar"
        | "character" => text_of(&v).map_or(V::Null, V::Str),
        "int" | "int2" | "int4" | "int8" | "integer" | "bigint" | "smallint" => {
            V::Int(as_int(&v).ok_or_else(|| {
                QueryError::InvalidValue(format!("invalid integer {:?}", text_of(&v)))
            })?)
        }
        "bool" | "boolean" => match v.truth() {
            Some(b) => V::Bool(b),
            None => V::Null,
        },
        "float8" | "double precision" | "float4" | "real" | "numeric" | "decimal" => match &v {
            V::Int(i) => V::Float(*i as f64),
            V::Float(f) => V::Float(*f),
            other => V::Float(
                text_of(other)
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or_else(|| QueryError::InvalidValue(format!("invalid number {other:?}")))?,
            ),
        },
        "text[]" | "name[]" | "_text" => match v {
            V::Arr(a) => V::Arr(a),
            V::Str(s) => V::Arr(parse_array_text(&s)),
            other => V::Arr(vec![other]),
        },
        // Catalog rows hold no timestamps: a timestamp is carried as its text, normalized to UTC
        // the way the engine prints timestamps (a zone offset is applied, a bad value refused).
        "timestamp"
        | "timestamp without time zone"
        | "timestamptz"
        | "timestamp with time zone"
        | "date" => match text_of(&v) {
            Some(s) => V::Str(crate::types::format_timestamp(
                crate::types::parse_timestamp(&s)?,
            )),
            None => V::Null,
        },
        _ => v,
    })
}

fn agg(name: &str, f: &ast::Function, ctx: &EvalCtx<'_, '_>, outer: &Scope<'_>) -> Result<V> {
    let Some((members, layout)) = ctx.members else {
        return unsupported(format!("aggregate {name} here"));
    };
    let args = function_args(f);
    let star = matches!(&f.args, ast::FunctionArguments::List(l)
        if matches!(l.args.first(), Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard))));
    let mut vals = Vec::with_capacity(members.len());
    for row in members {
        let scope = Scope {
            layout,
            row,
            aliases: None,
            outer: outer.outer,
        };
        vals.push(match args.first() {
            Some(a) if !star => eval(a, &scope, ctx.env)?,
            _ => V::Bool(true),
        });
    }
    let present: Vec<V> = vals.into_iter().filter(|v| !matches!(v, V::Null)).collect();
    Ok(match name {
        "count" => V::Int(present.len() as i64),
        "min" | "max" => {
            let want = if name == "min" {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            present
                .into_iter()
                .reduce(|a, b| if b.cmp_sql(&a) == Some(want) { b } else { a })
                .unwrap_or(V::Null)
        }
        "sum" => present
            .into_iter()
            .try_fold(None, |acc: Option<V>, v| -> Result<Option<V>> {
                Ok(Some(match acc {
                    None => v,
                    Some(a) => arith(&ast::BinaryOperator::Plus, a, v)?,
                }))
            })?
            .unwrap_or(V::Null),
        "bool_and" => V::Bool(present.iter().all(|v| v.truth() == Some(true))),
        "bool_or" => V::Bool(present.iter().any(|v| v.truth() == Some(true))),
        "array_agg" => V::Arr(present),
        "string_agg" => {
            let empty = Layout::default();
            let scope = Scope {
                layout: &empty,
                row: &[],
                aliases: None,
                outer: outer.outer,
            };
            let sep = match args.get(1) {
                Some(s) => text_of(&eval(s, &scope, ctx.env)?).unwrap_or_default(),
                None => String::new(),
            };
            if present.is_empty() {
                V::Null
            } else {
                V::Str(
                    present
                        .iter()
                        .filter_map(V::text)
                        .collect::<Vec<_>>()
                        .join(&sep),
                )
            }
        }
        other => return unsupported(format!("aggregate {other}")),
    })
}

// long: one arm per catalog function (the list clients call).
fn function(f: &ast::Function, scope: &Scope<'_>, ctx: &EvalCtx<'_, '_>) -> Result<V> {
    let env = ctx.env;
    let name = function_name(f);
    if is_aggregate_name(&name) && ctx.members.is_some() {
        return agg(&name, f, ctx, scope);
    }
    // ARRAY(subquery)
    if let ast::FunctionArguments::Subquery(q) = &f.args {
        if name == "array" {
            let r = run_query(q, env, Some(scope))?;
            return Ok(V::Arr(
                r.rows
                    .into_iter()
                    .map(|r| r.into_iter().next().unwrap_or(V::Null))
                    .collect(),
            ));
        }
        return unsupported(format!("{name}(subquery)"));
    }
    let args = function_args(f)
        .into_iter()
        .map(|a| eval_in(a, scope, ctx))
        .collect::<Result<Vec<_>>>()?;
    let arg = |i: usize| args.get(i).cloned().unwrap_or(V::Null);
    let s = |v: &str| V::Str(v.to_string());
    Ok(match name.as_str() {
        "version" => s(&format!(
            "PostgreSQL {} on {}, journeydb {}",
            crate::SERVER_VERSION,
            std::env::consts::ARCH,
            env!("CARGO_PKG_VERSION")
        )),
        "current_schema" => s("public"),
        "current_schemas" => {
            let mut v = vec![s("public")];
            if arg(0).truth() == Some(true) {
                v.insert(0, s("pg_catalog"));
            }
            V::Arr(v)
        }
        "current_database" => s(relations::DATABASE),
        "current_user" | "session_user" | "user" => s(relations::OWNER),
        "current_setting" => match text_of(&arg(0)) {
            Some(n) => match (env.setting)(&n) {
                Some(v) => V::Str(v),
                None if arg(1).truth() == Some(true) => V::Null,
                None => {
                    return Err(QueryError::InvalidValue(format!(
                        "unrecognized configuration parameter {n:?}"
                    )))
                }
            },
            None => V::Null,
        },
        "now" | "current_timestamp" | "transaction_timestamp" | "statement_timestamp" => {
            V::Str(env.now.clone())
        }
        "to_regtype" => match text_of(&arg(0)) {
            Some(n) => {
                let n = n.trim().to_ascii_lowercase();
                let n = n.strip_prefix("pg_catalog.").unwrap_or(&n).to_string();
                relations::TYPES
                    .iter()
                    .find(|t| t.1 == n || relations::format_type(t.0) == Some(n.as_str()))
                    .map_or(V::Null, |t| V::Int(t.0))
            }
            None => V::Null,
        },
        "to_regclass" => match regclass(env, &arg(0)) {
            Ok(v) => v,
            Err(_) => V::Null,
        },
        "pg_backend_pid" => V::Int(i64::from(std::process::id())),
        "pg_sleep" => {
            // Sleeps in short steps so a CancelRequest (or a stop) ends it promptly.
            let secs = match &arg(0) {
                V::Int(i) => *i as f64,
                V::Float(f) => *f,
                V::Str(s) => s.trim().parse().unwrap_or(0.0),
                _ => 0.0,
            };
            let until = std::time::Instant::now()
                + std::time::Duration::from_secs_f64(secs.clamp(0.0, 3600.0));
            while std::time::Instant::now() < until {
                crate::cancel::check()?;
                std::thread::sleep(
                    until
                        .saturating_duration_since(std::time::Instant::now())
                        .min(std::time::Duration::from_millis(20)),
                );
            }
            crate::cancel::check()?;
            s("")
        }
        "pg_is_in_recovery" => V::Bool(false),
        "pg_table_is_visible" | "pg_type_is_visible" | "pg_function_is_visible" => {
            if matches!(arg(0), V::Null) {
                V::Null
            } else {
                V::Bool(true)
            }
        }
        "pg_get_userbyid" => match as_int(&arg(0)) {
            Some(relations::OWNER_OID) => s(relations::OWNER),
            Some(o) => s(&format!("unknown (OID={o})")),
            None => V::Null,
        },
        "format_type" => match as_int(&arg(0)) {
            Some(o) => s(relations::format_type(o).unwrap_or("???")),
            None => V::Null,
        },
        "pg_encoding_to_char" => match as_int(&arg(0)) {
            Some(6) => s("UTF8"),
            Some(_) => s(""),
            None => V::Null,
        },
        "array_to_string" => match arg(0) {
            V::Arr(items) => {
                let sep = text_of(&arg(1)).unwrap_or_default();
                V::Str(
                    items
                        .iter()
                        .filter_map(V::text)
                        .collect::<Vec<_>>()
                        .join(&sep),
                )
            }
            V::Null => V::Null,
            other => V::Str(text_of(&other).unwrap_or_default()),
        },
        "array_length" | "cardinality" => match arg(0) {
            V::Arr(a) if !a.is_empty() => V::Int(a.len() as i64),
            _ => V::Null,
        },
        "obj_description"
        | "col_description"
        | "shobj_description"
        | "pg_get_expr"
        | "pg_get_constraintdef"
        | "pg_get_indexdef"
        | "pg_get_viewdef"
        | "pg_get_triggerdef"
        | "pg_get_statisticsobjdef_columns"
        | "pg_get_partkeydef"
        | "pg_get_serial_sequence"
        | "pg_get_function_arguments"
        | "pg_get_function_result"
        | "inet_server_addr"
        | "inet_server_port"
        | "pg_tablespace_location" => V::Null,
        "has_table_privilege"
        | "has_schema_privilege"
        | "has_database_privilege"
        | "has_column_privilege"
        | "has_any_column_privilege"
        | "pg_has_role" => V::Bool(true),
        "pg_relation_is_publishable" => V::Bool(false),
        "pg_relation_size" | "pg_total_relation_size" | "pg_table_size" => {
            match as_int(&arg(0)).and_then(|o| table_by_oid(env, o)) {
                Some(t) => V::Int(i64::try_from(t.bytes).unwrap_or(i64::MAX)),
                None => V::Null,
            }
        }
        "pg_size_pretty" => match as_int(&arg(0)) {
            Some(n) if n < 10 * 1024 => s(&format!("{n} bytes")),
            Some(n) if n < 10 * 1024 * 1024 => s(&format!("{} kB", n / 1024)),
            Some(n) => s(&format!("{} MB", n / (1024 * 1024))),
            None => V::Null,
        },
        "quote_ident" => match text_of(&arg(0)) {
            Some(t)
                if t.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && !t.starts_with(|c: char| c.is_ascii_digit()) =>
            {
                V::Str(t)
            }
            Some(t) => V::Str(format!("\"{}\"", t.replace('"', "\"\""))),
            None => V::Null,
        },
        "coalesce" => args
            .iter()
            .find(|v| !matches!(v, V::Null))
            .cloned()
            .unwrap_or(V::Null),
        "nullif" => {
            if arg(0).cmp_sql(&arg(1)) == Some(Ordering::Equal) {
                V::Null
            } else {
                arg(0)
            }
        }
        "lower" => text_of(&arg(0)).map_or(V::Null, |t| V::Str(t.to_lowercase())),
        "upper" => text_of(&arg(0)).map_or(V::Null, |t| V::Str(t.to_uppercase())),
        "length" | "char_length" => {
            text_of(&arg(0)).map_or(V::Null, |t| V::Int(t.chars().count() as i64))
        }
        "concat" => V::Str(args.iter().filter_map(V::text).collect::<String>()),
        "array_lower" => match arg(0) {
            V::Arr(a) if !a.is_empty() => V::Int(1),
            _ => V::Null,
        },
        "array_upper" => match arg(0) {
            V::Arr(a) if !a.is_empty() => V::Int(a.len() as i64),
            _ => V::Null,
        },
        other => {
            return Err(QueryError::Unsupported(format!(
                "function {other} (in a catalog query)"
            )))
        }
    })
}
