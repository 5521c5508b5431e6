//! Binding of aggregate queries: GROUP BY expressions (or positions, or SELECT aliases), aggregate
//! calls anywhere in the SELECT list and HAVING, and expressions over them
//! (`count(s2) * 100.0 / count(*)`).
//!
//! The plan is `Project(Filter?(Aggregate(input)))`: each aggregate call and each sub-expression
//! equal to a GROUP BY expression is replaced by a reference to a column of the Aggregate, and what
//! is left is an ordinary expression over those columns. A column used outside both is an error, as
//! in DuckDB.

use std::ops::ControlFlow;

use sqlparser::ast::{Visit, VisitMut, Visitor, VisitorMut};

use super::*;

const AGGREGATES: &[&str] = &[
    "count",
    "min",
    "max",
    "sum",
    "avg",
    "mean",
    "bool_and",
    "bool_or",
    "every",
    "median",
    "quantile_cont",
    "quantile_disc",
    "quantile",
];

/// True for the names of aggregate functions.
pub(crate) fn is_aggregate_name(name: &str) -> bool {
    AGGREGATES.contains(&name)
}

fn call_name(f: &ast::Function) -> String {
    f.name.to_string().to_ascii_lowercase()
}

/// True when an aggregate call occurs anywhere in `e` (outside subqueries' own SELECTs too: a
/// correlated aggregate is refused later).
pub(super) fn contains_aggregate(e: &ast::Expr) -> bool {
    struct Find;
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &ast::Expr) -> ControlFlow<()> {
            match e {
                ast::Expr::Function(f) if is_aggregate_name(&call_name(f)) && f.over.is_none() => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    e.visit(&mut Find).is_break()
}

fn group_name(j: usize) -> String {
    format!("\u{1}g{j}")
}

fn agg_name(i: usize) -> String {
    format!("\u{1}a{i}")
}

fn hidden(name: String) -> ast::Expr {
    ast::Expr::Identifier(ast::Ident::with_quote('"', name))
}

struct Binder<'a, 'c> {
    in_cols: &'a [RelCol],
    alias: Option<&'a str>,
    ctx: &'a PlanCtx<'c>,
    groups: &'a [Expr],
    aggs: Vec<(Agg, DType)>,
}

impl Binder<'_, '_> {
    /// Replaces aggregate calls and GROUP BY expressions in `e`, top down.
    fn rewrite(&mut self, e: &mut ast::Expr) -> Result<()> {
        struct Walk<'b, 'a, 'c> {
            b: &'b mut Binder<'a, 'c>,
            err: Option<QueryError>,
        }
        impl VisitorMut for Walk<'_, '_, '_> {
            type Break = ();
            fn pre_visit_expr(&mut self, e: &mut ast::Expr) -> ControlFlow<()> {
                match self.b.replace(e) {
                    Ok(Some(new)) => *e = new,
                    Ok(None) => {}
                    Err(err) => {
                        self.err = Some(err);
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            }
        }
        let mut w = Walk { b: self, err: None };
        let _ = e.visit(&mut w);
        match w.err {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn replace(&mut self, e: &ast::Expr) -> Result<Option<ast::Expr>> {
        if let ast::Expr::Function(f) = e {
            if is_aggregate_name(&call_name(f)) && f.over.is_none() {
                let planned = plan_agg_call(f, self.in_cols, self.alias, self.ctx)?;
                let i = match self.aggs.iter().position(|a| *a == planned) {
                    Some(i) => i,
                    None => {
                        self.aggs.push(planned);
                        self.aggs.len() - 1
                    }
                };
                return Ok(Some(hidden(agg_name(i))));
            }
        }
        if matches!(e, ast::Expr::Value(_) | ast::Expr::Nested(_)) || self.groups.is_empty() {
            return Ok(None);
        }
        if let Ok(pe) = plan_expr(e, self.in_cols, self.alias, self.ctx.now_us) {
            if let Some(j) = self.groups.iter().position(|g| *g == pe) {
                return Ok(Some(hidden(group_name(j))));
            }
        }
        Ok(None)
    }
}

/// Plans an expression over the Aggregate's columns; a column of the input left in it is neither
/// grouped nor aggregated.
fn plan_post(
    e: &ast::Expr,
    agg_cols: &[RelCol],
    in_cols: &[RelCol],
    ctx: &PlanCtx<'_>,
) -> Result<Expr> {
    plan_expr(e, agg_cols, None, ctx.now_us).map_err(|err| match err {
        QueryError::ColumnNotFound(name)
            if in_cols
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(name.trim())) =>
        {
            QueryError::ColumnNotFound(format!(
                "{name} must appear in the GROUP BY clause or be used in an aggregate function"
            ))
        }
        other => other,
    })
}

/// The AST of a GROUP BY item: a position or a SELECT alias names a SELECT item (as in DuckDB);
/// anything else stands for itself.
fn group_ast<'s>(
    g: &'s ast::Expr,
    s: &'s ast::Select,
    in_cols: &[RelCol],
) -> Result<&'s ast::Expr> {
    let item_expr = |item: &'s ast::SelectItem| match item {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => Ok(e),
        other => unsupported(format!("GROUP BY a position of {other}")),
    };
    match g {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => {
                let item = n
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| s.projection.get(i))
                    .ok_or_else(|| {
                        QueryError::InvalidValue(format!(
                            "GROUP BY position {n} is not in 1..{}",
                            s.projection.len()
                        ))
                    })?;
                item_expr(item)
            }
            _ => Ok(g),
        },
        ast::Expr::Identifier(i) => {
            let name = ident(i);
            if in_cols.iter().any(|c| c.name.eq_ignore_ascii_case(&name)) {
                return Ok(g);
            }
            for item in &s.projection {
                if let ast::SelectItem::ExprWithAlias { expr, alias } = item {
                    if ident(alias).eq_ignore_ascii_case(&name) {
                        return Ok(expr);
                    }
                }
            }
            Ok(g)
        }
        _ => Ok(g),
    }
}

/// Plans a SELECT with aggregates or GROUP BY over `input`.
// long: the steps of binding one aggregate query, in order (groups, rewrite, HAVING, projection).
pub(super) fn plan_aggregate(
    s: &ast::Select,
    input: Plan,
    in_cols: &[RelCol],
    alias: Option<&str>,
    group_by: &[ast::Expr],
    ctx: &PlanCtx<'_>,
) -> Result<Plan> {
    let mut groups = Vec::new();
    for g in group_by {
        let e = group_ast(g, s, in_cols)?;
        if contains_aggregate(e) {
            return Err(QueryError::Type(format!(
                "GROUP BY {e}: aggregates are not allowed in GROUP BY"
            )));
        }
        let pe = plan_expr(e, in_cols, alias, ctx.now_us)?;
        if !groups.contains(&pe) {
            groups.push(pe);
        }
    }
    let mut b = Binder {
        in_cols,
        alias,
        ctx,
        groups: &groups,
        aggs: Vec::new(),
    };
    let mut outs = Vec::new();
    for item in &s.projection {
        let (e, name) = match item {
            ast::SelectItem::UnnamedExpr(e) => (e, default_name(e)),
            ast::SelectItem::ExprWithAlias { expr, alias } => (expr, ident(alias)),
            _ => return unsupported("* together with GROUP BY or aggregates (name the columns)"),
        };
        let mut e = e.clone();
        b.rewrite(&mut e)?;
        outs.push((e, name));
    }
    let having = match &s.having {
        Some(h) => {
            let mut h = h.clone();
            b.rewrite(&mut h)?;
            Some(h)
        }
        None => None,
    };
    let aggs = b.aggs;
    let key_group =
        matches!(groups.as_slice(), [Expr::Col(i)] if in_cols.get(*i).is_some_and(|c| c.is_key));
    // GROUP BY the key with aggregates that merge per ordinal keeps a keyed relation.
    let by_key = key_group
        && aggs.iter().all(|(a, _)| {
            matches!(
                a,
                Agg::CountStar | Agg::Count(_) | Agg::Min(_) | Agg::Max(_)
            )
        });
    let mut items = Vec::new();
    for (j, g) in groups.iter().enumerate() {
        items.push((
            if by_key { Agg::Key } else { Agg::Group(j) },
            RelCol {
                name: group_name(j),
                dtype: expr_type(g, in_cols)?,
                is_key: by_key,
            },
        ));
    }
    for (i, (a, t)) in aggs.into_iter().enumerate() {
        items.push((
            a,
            RelCol {
                name: agg_name(i),
                dtype: t,
                is_key: false,
            },
        ));
    }
    let mut plan = prune_scan(Plan::Aggregate {
        input: Box::new(input),
        by_key,
        groups: if by_key { Vec::new() } else { groups },
        items,
    });
    let agg_cols = plan.cols();
    if let Some(h) = having {
        let predicate = plan_post(&h, &agg_cols, in_cols, ctx)?;
        plan = filter(plan, predicate, &agg_cols, "HAVING")?;
    }
    let mut exprs = Vec::new();
    for (e, name) in outs {
        let pe = plan_post(&e, &agg_cols, in_cols, ctx)?;
        exprs.push(output(pe, name, &agg_cols)?);
    }
    // Outputs that are the Aggregate's columns in order need no projection: they take its columns'
    // places under their names.
    let identity = exprs.len() == agg_cols.len()
        && exprs
            .iter()
            .enumerate()
            .all(|(i, (e, _))| *e == Expr::Col(i));
    if let (true, Plan::Aggregate { items, .. }) = (identity, &mut plan) {
        for (item, (_, col)) in items.iter_mut().zip(exprs) {
            item.1 = col;
        }
        return Ok(plan);
    }
    Ok(Plan::Project {
        input: Box::new(plan),
        exprs,
    })
}

/// `SELECT DISTINCT` over columns other than the key alone: a grouping by every column.
pub(super) fn distinct_rows(plan: Plan) -> Plan {
    let cols = plan.cols();
    let groups: Vec<Expr> = (0..cols.len()).map(Expr::Col).collect();
    let items = cols
        .iter()
        .enumerate()
        .map(|(j, c)| {
            (
                Agg::Group(j),
                RelCol {
                    is_key: false,
                    ..c.clone()
                },
            )
        })
        .collect();
    Plan::Aggregate {
        input: Box::new(plan),
        by_key: false,
        groups,
        items,
    }
}

fn quantile_arg(e: &ast::Expr) -> Result<f64> {
    let q = match const_scalar(e)? {
        Scalar::Int(v) => v as f64,
        Scalar::Float(v) => v,
        _ => {
            return Err(QueryError::InvalidValue(format!(
                "quantile {e} is not a number"
            )))
        }
    };
    if !(0.0..=1.0).contains(&q) {
        return Err(QueryError::InvalidValue(format!(
            "quantile {q} is not within 0..1"
        )));
    }
    Ok(q)
}

/// One aggregate call (with an optional `FILTER (WHERE ..)` and, for `count`, `DISTINCT`) and its
/// result type.
// long: one arm per aggregate function, each with DuckDB's typing rule.
fn plan_agg_call(
    f: &ast::Function,
    in_cols: &[RelCol],
    alias: Option<&str>,
    ctx: &PlanCtx<'_>,
) -> Result<(Agg, DType)> {
    let fname = call_name(f);
    let (args, distinct) = match &f.args {
        ast::FunctionArguments::List(l) => {
            if !l.clauses.is_empty() {
                return unsupported(format!("{fname}(.. ORDER BY / LIMIT ..)"));
            }
            (
                l.args.clone(),
                matches!(
                    l.duplicate_treatment,
                    Some(ast::DuplicateTreatment::Distinct)
                ),
            )
        }
        _ => return unsupported(format!("{fname} without an argument list")),
    };
    let filter = match &f.filter {
        Some(c) => {
            if contains_aggregate(c) {
                return Err(QueryError::Type(
                    "aggregates are not allowed in FILTER (WHERE ..)".into(),
                ));
            }
            let pc = plan_expr(c, in_cols, alias, ctx.now_us)?;
            let t = expr_type(&pc, in_cols)?;
            if !matches!(t, DType::Boolean | DType::Null) {
                return Err(QueryError::Type(format!(
                    "FILTER (WHERE ..) needs a condition, not {}",
                    t.name()
                )));
            }
            Some(pc)
        }
        None => None,
    };
    let only = |e: Expr| match &filter {
        Some(c) => Expr::Filtered(Box::new(e), Box::new(c.clone())),
        None => e,
    };
    let exprs: Vec<&ast::Expr> = args
        .iter()
        .filter_map(|a| match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect();
    let star = matches!(
        args.as_slice(),
        [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard)]
    );
    if fname == "count" && star && !distinct {
        return Ok(match &filter {
            None => (Agg::CountStar, DType::Bigint),
            Some(_) => (Agg::Count(only(Expr::Lit(Scalar::Int(1)))), DType::Bigint),
        });
    }
    if exprs.len() != args.len() || exprs.is_empty() {
        return unsupported(format!("{fname} with these arguments"));
    }
    let first = exprs
        .first()
        .copied()
        .ok_or_else(|| QueryError::Internal("an aggregate without arguments".into()))?;
    if contains_aggregate(first) {
        return Err(QueryError::Type(format!(
            "{fname}: aggregate calls cannot be nested"
        )));
    }
    let x = only(plan_expr(first, in_cols, alias, ctx.now_us)?);
    let t = expr_type(&x, in_cols)?;
    let bad = |what: &str| -> Result<(Agg, DType)> {
        Err(QueryError::Type(format!(
            "{fname} needs {what}, not {}",
            t.name()
        )))
    };
    let one_arg = |n: usize| -> Result<()> {
        if exprs.len() == n {
            Ok(())
        } else {
            Err(QueryError::Type(format!(
                "{fname} takes {n} argument{}",
                if n == 1 { "" } else { "s" }
            )))
        }
    };
    if distinct && !matches!(fname.as_str(), "count" | "min" | "max") {
        return unsupported(format!("{fname}(DISTINCT ..)"));
    }
    let numeric = matches!(t, DType::Bigint | DType::Double | DType::Null);
    let ordered = matches!(
        t,
        DType::Bigint | DType::Double | DType::Timestamp | DType::Interval | DType::Null
    );
    Ok(match fname.as_str() {
        "count" => {
            one_arg(1)?;
            if distinct {
                (Agg::CountDistinct(x), DType::Bigint)
            } else {
                (Agg::Count(x), DType::Bigint)
            }
        }
        "min" | "max" => {
            one_arg(1)?;
            if fname == "min" {
                (Agg::Min(x), t)
            } else {
                (Agg::Max(x), t)
            }
        }
        "sum" => {
            one_arg(1)?;
            if !numeric {
                return bad("numbers");
            }
            let out = if t == DType::Double {
                DType::Double
            } else {
                DType::Bigint
            };
            (Agg::Sum(x), out)
        }
        "avg" | "mean" => {
            one_arg(1)?;
            if !numeric {
                return bad("numbers");
            }
            (Agg::Avg(x), DType::Double)
        }
        "bool_and" | "every" | "bool_or" => {
            one_arg(1)?;
            if !matches!(t, DType::Boolean | DType::Null) {
                return bad("BOOLEAN values");
            }
            if fname == "bool_or" {
                (Agg::BoolOr(x), DType::Boolean)
            } else {
                (Agg::BoolAnd(x), DType::Boolean)
            }
        }
        "median" | "quantile_cont" | "quantile_disc" | "quantile" => {
            let q = if fname == "median" {
                one_arg(1)?;
                0.5
            } else {
                one_arg(2)?;
                quantile_arg(exprs.get(1).copied().unwrap_or(first))?
            };
            if !ordered {
                return bad("numbers, timestamps or intervals");
            }
            let cont = matches!(fname.as_str(), "median" | "quantile_cont");
            let out = if cont && t == DType::Bigint {
                DType::Double
            } else {
                t
            };
            (Agg::Quantile(x, q, cont), out)
        }
        _ => return unsupported(format!("aggregate {fname}")),
    })
}
