//! Binding of joins on the customer key: `[INNER | LEFT | RIGHT | FULL] JOIN .. USING (key)` or
//! `ON a.key = b.key`, with table aliases and qualified columns.
//!
//! Every table of a database shares one key dictionary, so the join is an alignment of ordinals
//! (`Plan::Join`); any other join condition is refused with an explanation.

use super::*;

/// A column name qualified by its table's alias (`s.stage1`); `resolve` matches it by the bare
/// name too when that is unambiguous.
fn qualify(plan: Plan, alias: &str) -> Plan {
    let cols = plan.cols();
    if cols.iter().all(|c| c.name.contains('.')) {
        return plan;
    }
    let exprs = cols
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let name = if c.name.contains('.') {
                c.name.clone()
            } else {
                format!("{alias}.{}", c.name)
            };
            (Expr::Col(i), RelCol { name, ..c })
        })
        .collect();
    Plan::Project {
        input: Box::new(plan),
        exprs,
    }
}

/// A FROM item with its alias applied to its columns; `seen` holds the aliases before it, which
/// must differ from its own (as in PostgreSQL and DuckDB).
fn side(factor: &ast::TableFactor, ctx: &PlanCtx<'_>, seen: &mut Vec<String>) -> Result<Plan> {
    let (mut plan, alias, sample) = plan_factor(factor, ctx)?;
    if matches!(plan, Plan::System { .. }) {
        return unsupported("a system table in a join");
    }
    if let Some(sample) = sample {
        plan = Plan::Sample {
            input: Box::new(plan),
            sample,
        };
    }
    if !plan.cols().iter().any(|c| c.is_key) {
        return unsupported(
            "a join input without the customer key (joins align tables on their key)",
        );
    }
    let alias =
        alias.ok_or_else(|| QueryError::Syntax("a subquery in a join needs an alias".into()))?;
    if seen.contains(&alias) {
        return Err(QueryError::Syntax(format!(
            "table name {alias:?} specified more than once (give each an alias)"
        )));
    }
    seen.push(alias.clone());
    Ok(qualify(plan, &alias))
}

/// The bare name of a (possibly qualified) column.
pub(super) fn bare(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// Plans `a JOIN b .. JOIN c ..` left to right.
pub(super) fn plan_joins(one: &ast::TableWithJoins, ctx: &PlanCtx<'_>) -> Result<Plan> {
    let mut seen = Vec::new();
    let mut plan = side(&one.relation, ctx, &mut seen)?;
    for j in &one.joins {
        use ast::JoinOperator as O;
        let (kind, constraint) = match &j.join_operator {
            O::Join(c) | O::Inner(c) => (JoinKind::Inner, c),
            O::Left(c) | O::LeftOuter(c) => (JoinKind::Left, c),
            O::Right(c) | O::RightOuter(c) => (JoinKind::Right, c),
            O::FullOuter(c) => (JoinKind::Full, c),
            other => {
                return unsupported(format!(
                    "{other:?} join (INNER, LEFT, RIGHT and FULL joins on the customer key)"
                ))
            }
        };
        let right = side(&j.relation, ctx, &mut seen)?;
        let (lc, rc) = (plan.cols(), right.cols());
        let lkeys: Vec<usize> = (0..lc.len())
            .filter(|i| lc.get(*i).is_some_and(|c| c.is_key))
            .collect();
        let rkey = rc
            .iter()
            .position(|c| c.is_key)
            .ok_or_else(|| QueryError::Internal("a join side without its key".into()))?;
        let (Some(&lkey), true) = (lkeys.first(), !lkeys.is_empty()) else {
            return unsupported("joining after a FULL JOIN .. ON (use USING)");
        };
        let mut all = lc.clone();
        all.extend(rc.iter().cloned());
        let using = match constraint {
            ast::JoinConstraint::Using(names) => {
                let key =
                    bare(&lc.get(lkey).map(|c| c.name.clone()).unwrap_or_default()).to_string();
                for n in names {
                    let n = object_name(n)?.join(".");
                    let rkey_name = rc.get(rkey).map_or("", |c| bare(&c.name));
                    if !n.eq_ignore_ascii_case(&key) || !n.eq_ignore_ascii_case(rkey_name) {
                        return unsupported(format!(
                            "USING ({n}): joins are on the customer key ({key})"
                        ));
                    }
                }
                true
            }
            ast::JoinConstraint::On(e) => {
                let on = plan_expr(e, &all, None, ctx.now_us)?;
                let ok = match &on {
                    Expr::Cmp(CmpOp::Eq, a, b) => match (a.as_ref(), b.as_ref()) {
                        (Expr::Col(x), Expr::Col(y)) => {
                            let is_l = |i: &usize| lkeys.contains(i);
                            let is_r = |i: &usize| *i == lc.len() + rkey;
                            (is_l(x) && is_r(y)) || (is_r(x) && is_l(y))
                        }
                        _ => false,
                    },
                    _ => false,
                };
                if !ok {
                    return unsupported(format!(
                        "join condition {e} (joins are on the customer key: ON a.key = b.key, or USING (key))"
                    ));
                }
                false
            }
            _ => return unsupported("NATURAL join or a join without a condition"),
        };
        let right_key_at = lc.len() + rkey;
        let mut partial_keys = [None, None];
        let mut right = right;
        if using {
            // The key appears once, as the left's, and stands for both sides' (the row's key).
            right = hide_key(right, rkey);
        } else {
            if matches!(kind, JoinKind::Right | JoinKind::Full) {
                partial_keys[0] = Some((lkey, false));
            }
            if matches!(kind, JoinKind::Left | JoinKind::Full) {
                partial_keys[1] = Some((right_key_at, false));
            }
        }
        plan = Plan::Join {
            kind,
            left: Box::new(plan),
            right: Box::new(right),
            partial_keys,
        };
    }
    Ok(plan)
}

/// The right side of a USING join with its key column renamed out of reach (`SELECT *` skips it).
fn hide_key(plan: Plan, key: usize) -> Plan {
    let exprs = plan
        .cols()
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let name = if i == key {
                format!("{HIDDEN}{}", c.name)
            } else {
                c.name.clone()
            };
            (Expr::Col(i), RelCol { name, ..c })
        })
        .collect();
    Plan::Project {
        input: Box::new(plan),
        exprs,
    }
}

/// The prefix of a column name no query can write: the right key of a USING join, which only
/// `alias.*` shows.
pub(super) const HIDDEN: &str = "\u{1}";
