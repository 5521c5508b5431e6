//! Column pruning: how much of each column each scan must read.

use super::*;

/// Marks how much of each column each scan must read: values for columns whose values an operator
/// uses, only the presence bitmap for columns used only by `IS [NOT] NULL` or `COUNT(col)`.
// long: two nested helpers (column references, marking through operators) and their use.
pub(super) fn prune_scan(plan: Plan) -> Plan {
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
            Expr::Cmp(_, a, b)
            | Expr::Arith(_, a, b, _)
            | Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Filtered(a, b) => {
                refs(a, out);
                refs(b, out);
            }
            Expr::Not(a) | Expr::Neg(a) | Expr::IsNull(a, _) | Expr::InList(a, _) => refs(a, out),
            Expr::Func(_, args, _) => args.iter().for_each(|a| refs(a, out)),
        }
    }
    /// A filter's condition: a condition on one column (`country IN (..)`, `stage1 + INTERVAL
    /// '3 days' <= c`) or an order comparison of two integer or timestamp columns can be answered
    /// from the columns' value groups (bitmaps per distinct value, no value decoded; see
    /// `exec::by_value_groups`). Storage has groups only for columns of few distinct values; the
    /// values are read where it has none.
    #[recursive::recursive]
    fn pred_refs(e: &Expr, cols: &[RelCol], out: &mut Vec<(usize, Load)>) {
        let groupable = |i: usize| {
            cols.get(i)
                .is_some_and(|c| !c.is_key && !matches!(c.dtype, DType::Null | DType::Interval))
        };
        let int_like = |i: usize| cols.get(i).map(|c| c.dtype);
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => {
                pred_refs(a, cols, out);
                pred_refs(b, cols, out);
            }
            Expr::Not(a) => pred_refs(a, cols, out),
            Expr::IsNull(a, _) if matches!(a.as_ref(), Expr::Col(_)) => refs(e, out),
            Expr::Cmp(_, a, b) => match (a.as_ref(), b.as_ref()) {
                (Expr::Col(x), Expr::Col(y))
                    if groupable(*x)
                        && groupable(*y)
                        && int_like(*x) == int_like(*y)
                        && matches!(int_like(*x), Some(DType::Timestamp | DType::Bigint)) =>
                {
                    out.push((*x, Load::GroupsPaired));
                    out.push((*y, Load::GroupsPaired));
                }
                _ => one_column_refs(e, cols, groupable, out),
            },
            Expr::InList(..) | Expr::IsNull(..) | Expr::Func(_, _, DType::Boolean) => {
                one_column_refs(e, cols, groupable, out)
            }
            _ => refs(e, out),
        }
    }
    /// Strings are grouped on first use (decoding and comparing them costs more than grouping);
    /// other types from the second read of a segment, so a table read once is only decoded.
    fn one_column_refs(
        e: &Expr,
        cols: &[RelCol],
        groupable: impl Fn(usize) -> bool,
        out: &mut Vec<(usize, Load)>,
    ) {
        match one_column(e) {
            Some(i) if groupable(i) => {
                let strings = cols.get(i).is_some_and(|c| c.dtype == DType::Varchar);
                out.push((
                    i,
                    if strings {
                        Load::Groups
                    } else {
                        Load::GroupsIfReused
                    },
                ))
            }
            _ => refs(e, out),
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
                pred_refs(predicate, &input.cols(), &mut u);
                mark(input, &u);
            }
            Plan::Sample { input, .. } => mark(input, used),
            // A renaming (the qualified columns of a join side): what is read maps through it.
            Plan::Project { input, exprs } => {
                // Value groups pass only through renamings: a computing projection reads values.
                let renaming = exprs.iter().all(|(e, _)| matches!(e, Expr::Col(_)));
                let mut u = Vec::new();
                for &(i, kind) in used {
                    let kind = match kind {
                        Load::Groups | Load::GroupsIfReused | Load::GroupsPaired if !renaming => {
                            Load::Values
                        }
                        k => k,
                    };
                    match exprs.get(i) {
                        Some((Expr::Col(j), _)) => u.push((*j, kind)),
                        Some((e, _)) => refs(e, &mut u),
                        None => {}
                    }
                }
                mark(input, &u);
            }
            Plan::Join {
                left,
                right,
                partial_keys,
                ..
            } => {
                let lw = left.cols().len();
                for (at, needed) in partial_keys.iter_mut().flatten() {
                    *needed = used.iter().any(|(i, _)| i == at);
                }
                let l: Vec<(usize, Load)> = used.iter().filter(|(i, _)| *i < lw).copied().collect();
                let r: Vec<(usize, Load)> = used
                    .iter()
                    .filter_map(|&(i, k)| i.checked_sub(lw).map(|j| (j, k)))
                    .collect();
                mark(left, &l);
                mark(right, &r);
            }
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
        Plan::Aggregate {
            input,
            items,
            groups,
            by_key,
        } => {
            // The per-key path merges values per ordinal: it reads values, never groups.
            let groups_ok = !*by_key;
            // The one plain column grouped on may be read as its value groups (bitmaps per value).
            match groups.as_slice() {
                [Expr::Col(i)] => used.push((*i, Load::Groups)),
                gs => gs.iter().for_each(|g| refs(g, &mut used)),
            }
            for (a, _) in items.iter() {
                match a {
                    Agg::Count(Expr::Col(i)) => used.push((*i, Load::Presence)),
                    // Aggregates a column's value groups can answer (bitmap sizes per value).
                    Agg::Sum(Expr::Col(i))
                    | Agg::Avg(Expr::Col(i))
                    | Agg::Min(Expr::Col(i))
                    | Agg::Max(Expr::Col(i))
                    | Agg::CountDistinct(Expr::Col(i))
                    | Agg::BoolAnd(Expr::Col(i))
                    | Agg::BoolOr(Expr::Col(i))
                        if groups_ok =>
                    {
                        used.push((*i, Load::Groups))
                    }
                    other => {
                        if let Some(e) = other.arg() {
                            refs(e, &mut used)
                        }
                    }
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

/// The one column `e` reads, when it reads exactly one: a condition on it can then be evaluated once
/// per distinct value of that column. (An aggregate's `FILTER` is never such a condition.)
pub(crate) fn one_column(e: &Expr) -> Option<usize> {
    #[recursive::recursive]
    fn walk(e: &Expr, found: &mut Option<usize>) -> bool {
        match e {
            Expr::Col(i) => match found {
                Some(j) if j != i => false,
                _ => {
                    *found = Some(*i);
                    true
                }
            },
            Expr::Lit(_) => true,
            Expr::Cmp(_, a, b) | Expr::Arith(_, a, b, _) | Expr::And(a, b) | Expr::Or(a, b) => {
                walk(a, found) && walk(b, found)
            }
            Expr::Not(a) | Expr::Neg(a) | Expr::IsNull(a, _) | Expr::InList(a, _) => walk(a, found),
            Expr::Func(_, args, _) => args.iter().all(|a| walk(a, found)),
            Expr::Filtered(..) => false,
        }
    }
    let mut found = None;
    if walk(e, &mut found) {
        found
    } else {
        None
    }
}
