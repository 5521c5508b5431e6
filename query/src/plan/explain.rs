//! EXPLAIN: a plan as indented text.

use super::*;

impl Plan {
    /// EXPLAIN text.
    // long: one arm per plan operator; each arm is a short line.
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
            Plan::Aggregate {
                by_key,
                groups,
                items,
                ..
            } => writeln!(
                out,
                "{pad}Aggregate {} [{}] ({})",
                if *by_key {
                    "GROUP BY key".to_string()
                } else if groups.is_empty() {
                    "global".to_string()
                } else {
                    format!(
                        "GROUP BY {}",
                        groups.iter().map(show).collect::<Vec<_>>().join(", ")
                    )
                },
                names(&items.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>()),
                if *by_key {
                    "ordinal-aligned merge"
                } else {
                    "coded groups; counts as bitmap intersections"
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
            Plan::Join { kind, .. } => writeln!(
                out,
                "{pad}Join {kind:?} on the key (ordinal-aligned, bitmap {})",
                match kind {
                    JoinKind::Inner => "AND",
                    JoinKind::Left => "left",
                    JoinKind::Right => "right",
                    JoinKind::Full => "OR",
                }
            ),
            Plan::Distinct { .. } => writeln!(out, "{pad}Distinct (bitmap OR of frames)"),
            Plan::System { name, .. } => writeln!(out, "{pad}SystemTable {name}"),
            Plan::Rel { name, rel } => writeln!(
                out,
                "{pad}File {name} ({} rows, read at planning)",
                rel.row_count()
            ),
        };
        match self {
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::Aggregate { input, .. }
            | Plan::Distinct { input }
            | Plan::Sample { input, .. } => input.explain(out, depth + 1),
            Plan::SetOp { left, right, .. }
            | Plan::UnionAll { left, right }
            | Plan::Join { left, right, .. } => {
                left.explain(out, depth + 1);
                right.explain(out, depth + 1);
            }
            Plan::Scan { .. } | Plan::System { .. } | Plan::Rel { .. } => {}
        }
    }
}

#[recursive::recursive]
pub(super) fn show(e: &Expr) -> String {
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
        Expr::Filtered(a, c) => format!("{} FILTER (WHERE {})", show(a), show(c)),
        Expr::Func(f, args, _) => format!(
            "{}({})",
            f.name(),
            args.iter().map(show).collect::<Vec<_>>().join(", ")
        ),
        Expr::InList(a, set) => {
            let shown: Vec<String> = set
                .values()
                .iter()
                .take(8)
                .map(|v| format!("{v:?}"))
                .collect();
            let more = set.values().len().saturating_sub(shown.len());
            format!(
                "{} IN ({}{})",
                show(a),
                shown.join(", "),
                if more > 0 {
                    format!(", ... {more} more")
                } else {
                    String::new()
                }
            )
        }
    }
}
