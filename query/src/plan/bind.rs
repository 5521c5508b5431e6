//! Binding: statements (queries, set operations, FROM, samples, SELECT, GROUP BY) into plans.

use super::*;

/// Plans a query (with ORDER BY / LIMIT).
// long: the forms of ORDER BY items and LIMIT / OFFSET, one arm each.
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
                // `alias.column`: the output column of that name, when only one has it.
                ast::Expr::CompoundIdentifier(parts)
                    if cols
                        .iter()
                        .filter(|c| {
                            parts
                                .last()
                                .is_some_and(|p| c.name.eq_ignore_ascii_case(&ident(p)))
                        })
                        .count()
                        == 1 =>
                {
                    let name = parts.last().map(ident).unwrap_or_default();
                    cols.iter()
                        .position(|c| c.name.eq_ignore_ascii_case(&name))
                        .unwrap_or(0)
                }
                // An expression written as in the SELECT list (`ORDER BY count(*) DESC`) names the
                // output column it became.
                other => {
                    let text = other.to_string();
                    cols.iter()
                        .position(|c| c.name.eq_ignore_ascii_case(&text))
                        .ok_or_else(|| {
                            QueryError::Unsupported(format!(
                            "ORDER BY expression {other} that is not in the SELECT list (select it, then order by its name or position)"
                        ))
                        })?
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

pub(super) fn const_usize(e: &ast::Expr, what: &str) -> Result<usize> {
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
pub(super) fn plan_set_expr(body: &ast::SetExpr, ctx: &PlanCtx<'_>) -> Result<Plan> {
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

pub(super) fn plan_from(
    from: &[ast::TableWithJoins],
    ctx: &PlanCtx<'_>,
) -> Result<(Plan, Option<String>, Option<Sample>)> {
    let [one] = from else {
        return if from.is_empty() {
            // One row without columns: the SELECT list's constants are evaluated once.
            let mut parts = std::collections::BTreeMap::new();
            parts.insert(
                journeydb_storage::PartitionId(0),
                vec![crate::exec::Frame::new(
                    [0u32].into_iter().collect(),
                    Vec::new(),
                )],
            );
            Ok((
                Plan::Rel {
                    name: "one row (no FROM)".into(),
                    rel: std::sync::Arc::new(crate::exec::Relation {
                        cols: Vec::new(),
                        parts,
                    }),
                },
                None,
                None,
            ))
        } else {
            unsupported(
                "several tables in FROM (joins); combine customer sets with INTERSECT / EXCEPT",
            )
        };
    };
    if !one.joins.is_empty() {
        return Ok((plan_joins(one, ctx)?, None, None));
    }
    plan_factor(&one.relation, ctx)
}

/// One table, table function or subquery of FROM, with its alias and sample.
pub(super) fn plan_factor(
    factor: &ast::TableFactor,
    ctx: &PlanCtx<'_>,
) -> Result<(Plan, Option<String>, Option<Sample>)> {
    match factor {
        ast::TableFactor::Table {
            name,
            alias,
            sample,
            args,
            ..
        } => {
            if let Some(args) = args {
                if sample.is_some() {
                    return unsupported("TABLESAMPLE on a table function");
                }
                let plan = table_function(name, &args.args, ctx)?;
                return Ok((plan, alias.as_ref().map(|a| ident(&a.name)), None));
            }
            let mut parts = object_name(name)?;
            let alias_name = alias.as_ref().map(|a| ident(&a.name));
            if let Some(system) =
                system_factor(&mut parts, alias_name.clone(), sample.is_some(), ctx)?
            {
                return Ok(system);
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

/// A relation of FROM with its alias and sample.
type Factor = (Plan, Option<String>, Option<Sample>);

/// The system relations of FROM (`system.queries`, `system.costs`, `system.tables`, ..): their
/// plan, or `None` for any other name. Without a tenant to narrow to, `system.queries` is the
/// log's own table: `parts` becomes its name.
fn system_factor(
    parts: &mut Vec<String>,
    alias_name: Option<String>,
    sampled: bool,
    ctx: &PlanCtx<'_>,
) -> Result<Option<Factor>> {
    if *parts == ["system", "queries"] {
        if ctx.log_tenant.is_none() {
            *parts = vec![crate::QUERY_LOG_TABLE.to_string()];
            return Ok(None);
        }
        if sampled {
            return unsupported("TABLESAMPLE on system.queries");
        }
        let q = crate::parse::parse_query(&format!(
            "SELECT * FROM {}",
            crate::costs::log_relation(ctx.log_tenant)
        ))?;
        let alias = alias_name.or_else(|| Some("queries".into()));
        return Ok(Some((plan_query(&q, ctx)?.plan, alias, None)));
    }
    if *parts == ["system", "costs"] {
        if sampled {
            return unsupported("TABLESAMPLE on system.costs");
        }
        let alias = alias_name.or_else(|| Some("costs".into()));
        return Ok(Some((costs_view(ctx)?, alias, None)));
    }
    if parts.len() == 2 && parts.first().map(String::as_str) == Some("system") {
        if sampled {
            return unsupported("TABLESAMPLE on a system table");
        }
        let name = parts.join(".");
        let batch = crate::system::table(ctx.snap, &name)?;
        let project = (0..batch.num_columns()).collect();
        let plan = Plan::System {
            name,
            batch,
            project,
        };
        return Ok(Some((plan, alias_name, None)));
    }
    Ok(None)
}

/// `system.costs`, a view: the query log grouped per tenant and day, priced. (`system.queries`
/// is the log's stored table under a name of its own, `QUERY_LOG_TABLE`.)
fn costs_view(ctx: &PlanCtx<'_>) -> Result<Plan> {
    if ctx.snap.table(crate::QUERY_LOG_TABLE).is_err() {
        return Err(QueryError::TableNotFound(
            "system.costs (the server keeps no query log: --query-log-days 0)".into(),
        ));
    }
    let sql = crate::costs::view_sql(&ctx.cost_rates, ctx.log_tenant);
    let q = crate::parse::parse_query(&sql)?;
    Ok(plan_query(&q, ctx)?.plan)
}

/// A file table function (`read_parquet(..)`), read whole at planning.
fn table_function(
    name: &ast::ObjectName,
    args: &[ast::FunctionArg],
    ctx: &PlanCtx<'_>,
) -> Result<Plan> {
    let fname = object_name(name)?.join(".");
    let Some((access, db)) = ctx.files else {
        return unsupported(format!("table function {fname} here"));
    };
    let (rel, label) = crate::files::file_relation(access, db, &fname, args)?;
    Ok(Plan::Rel {
        name: label,
        rel: std::sync::Arc::new(rel),
    })
}

pub(super) fn plan_sample(s: &ast::TableSampleKind, ctx: &PlanCtx<'_>) -> Result<Sample> {
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

pub(super) fn const_scalar(e: &ast::Expr) -> Result<Scalar> {
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

pub(super) fn plan_select(s: &ast::Select, ctx: &PlanCtx<'_>) -> Result<Plan> {
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
        input = filter(input, predicate, &in_cols, "WHERE")?;
    }
    if let Some(sample) = sample {
        input = Plan::Sample {
            input: Box::new(input),
            sample,
        };
    }
    let group_by = match &s.group_by {
        ast::GroupByExpr::Expressions(exprs, mods) if mods.is_empty() => exprs.clone(),
        // DuckDB's GROUP BY ALL: every SELECT item without an aggregate.
        ast::GroupByExpr::All(mods) if mods.is_empty() => s
            .projection
            .iter()
            .filter_map(|p| match p {
                ast::SelectItem::UnnamedExpr(e)
                | ast::SelectItem::ExprWithAlias { expr: e, .. }
                    if !contains_aggregate(e) =>
                {
                    Some(e.clone())
                }
                _ => None,
            })
            .collect(),
        _ => return unsupported("GROUP BY ROLLUP / CUBE / GROUPING SETS"),
    };
    let has_agg = s.projection.iter().any(|p| match p {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
            contains_aggregate(e)
        }
        _ => false,
    });
    let plan = if has_agg || !group_by.is_empty() || s.having.is_some() {
        plan_aggregate(s, input, &in_cols, alias, &group_by, ctx)?
    } else {
        let exprs = projection(s, &in_cols, alias, ctx)?;
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
        Some(ast::Distinct::Distinct) => distinct_rows(prune_scan(plan)),
        Some(_) => return unsupported("DISTINCT ON"),
    };
    Ok(prune_scan(plan))
}

/// An output column of a projection: its expression over `cols`, named, typed, and the key when it
/// is the input's key column.
pub(super) fn output(pe: Expr, name: String, cols: &[RelCol]) -> Result<(Expr, RelCol)> {
    let dtype = expr_type(&pe, cols)?;
    let is_key = matches!(pe, Expr::Col(i) if cols.get(i).is_some_and(|c| c.is_key));
    Ok((
        pe,
        RelCol {
            name,
            dtype,
            is_key,
        },
    ))
}

/// `input` cut to the rows where `predicate` (over `cols`) is TRUE; `clause` names it in the error
/// for a predicate that is not a condition.
pub(super) fn filter(input: Plan, predicate: Expr, cols: &[RelCol], clause: &str) -> Result<Plan> {
    let t = expr_type(&predicate, cols)?;
    if !matches!(t, DType::Boolean | DType::Null) {
        return Err(QueryError::Type(format!(
            "{clause} needs a condition, not a {} value",
            t.name()
        )));
    }
    Ok(Plan::Filter {
        input: Box::new(input),
        predicate,
        keep: None,
    })
}

/// The SELECT list of a query without aggregates: each item bound against the input's columns.
pub(super) fn projection(
    s: &ast::Select,
    in_cols: &[RelCol],
    alias: Option<&str>,
    ctx: &PlanCtx<'_>,
) -> Result<Vec<(Expr, RelCol)>> {
    let mut exprs = Vec::new();
    for item in &s.projection {
        match item {
            ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..) => {
                // `s.*` of a join: the columns of `s`.
                let prefix = match item {
                    ast::SelectItem::QualifiedWildcard(
                        ast::SelectItemQualifiedWildcardKind::ObjectName(n),
                        _,
                    ) if in_cols.iter().any(|c| c.name.contains('.')) => {
                        Some(format!("{}.", object_name(n)?.join(".")))
                    }
                    _ => None,
                };
                for (i, c) in in_cols.iter().enumerate() {
                    let shown = match &prefix {
                        None => !c.name.starts_with(HIDDEN),
                        Some(p) => c
                            .name
                            .trim_start_matches(HIDDEN)
                            .to_ascii_lowercase()
                            .starts_with(p),
                    };
                    if !shown {
                        continue;
                    }
                    exprs.push((
                        Expr::Col(i),
                        RelCol {
                            name: bare(&c.name).to_string(),
                            ..c.clone()
                        },
                    ));
                }
            }
            ast::SelectItem::ExprWithAliases { .. } => {
                return unsupported("several aliases for one expression")
            }
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                let pe = plan_expr(e, in_cols, alias, ctx.now_us)?;
                let name = match item {
                    ast::SelectItem::ExprWithAlias { alias, .. } => ident(alias),
                    _ => default_name(e),
                };
                exprs.push(output(pe, name, in_cols)?);
            }
        }
    }
    Ok(exprs)
}

/// System tables take plain column lists only: `SELECT * | col, .. FROM system.x`.
pub(super) fn plan_system(
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

pub(super) fn default_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(i) => ident(i),
        ast::Expr::CompoundIdentifier(parts) => parts.last().map(ident).unwrap_or_default(),
        other => other.to_string(),
    }
}
