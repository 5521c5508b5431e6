//! Binding of scalar functions, CASE, LIKE and EXTRACT (see `crate::func` for their semantics):
//! argument counts and types are checked here, so evaluation only sees well-typed calls.

use super::*;
use crate::func::{Field, Func, Unit};

/// The plain argument expressions of a call (no DISTINCT, named arguments or `*`).
pub(super) fn call_args<'f>(f: &'f ast::Function, name: &str) -> Result<Vec<&'f ast::Expr>> {
    match &f.args {
        ast::FunctionArguments::None => Ok(Vec::new()),
        ast::FunctionArguments::Subquery(_) => unsupported(format!("{name}(subquery)")),
        ast::FunctionArguments::List(l) => {
            if l.duplicate_treatment.is_some() || !l.clauses.is_empty() {
                return unsupported(format!("{name}(DISTINCT / ORDER BY ..) here"));
            }
            l.args
                .iter()
                .map(|a| match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
                    other => unsupported(format!("argument {other} of {name}")),
                })
                .collect()
        }
    }
}

/// Casts string literals among `args` to the type of the others (a timestamp compared with
/// `'2026-01-01'`), and finds the common type: equal types, or DOUBLE for a mix of numbers.
pub(super) fn unify(args: Vec<Expr>, cols: &[RelCol], what: &str) -> Result<(Vec<Expr>, DType)> {
    let types = args
        .iter()
        .map(|a| expr_type(a, cols))
        .collect::<Result<Vec<_>>>()?;
    let is_str_lit = |a: &Expr| matches!(a, Expr::Lit(Scalar::Str(_)));
    let mut target = DType::Null;
    for (a, t) in args.iter().zip(&types) {
        if *t == DType::Null || (is_str_lit(a) && target != DType::Null) {
            continue;
        }
        target = match (target, *t) {
            (DType::Null, t) => t,
            (x, y) if x == y => x,
            (DType::Varchar, _) if args.iter().any(is_str_lit) => *t,
            (DType::Bigint | DType::Double, DType::Bigint | DType::Double) => DType::Double,
            (x, y) => {
                return Err(QueryError::Type(format!(
                    "{what} mixes {} and {}",
                    x.name(),
                    y.name()
                )))
            }
        };
    }
    let out = args
        .into_iter()
        .map(|a| match a {
            Expr::Lit(s) if target != DType::Null && s.dtype() != target => {
                match (s, target) {
                    // Integers stay integers: the kernel widens them to DOUBLE per value.
                    (s @ Scalar::Int(_), DType::Double) => Ok(Expr::Lit(s)),
                    (s, t) => Ok(Expr::Lit(cast_lit(s, t)?)),
                }
            }
            a => Ok(a),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((out, target))
}

fn want(cols: &[RelCol], e: &Expr, name: &str, ok: &[DType]) -> Result<DType> {
    let t = expr_type(e, cols)?;
    if t == DType::Null || ok.contains(&t) {
        Ok(t)
    } else {
        Err(QueryError::Type(format!(
            "{name} does not take a {} argument",
            t.name()
        )))
    }
}

fn nth(args: &[Expr], i: usize) -> Result<&Expr> {
    args.get(i)
        .ok_or_else(|| QueryError::Type(format!("missing argument {}", i + 1)))
}

fn const_text(e: &Expr, what: &str) -> Result<String> {
    match e {
        Expr::Lit(Scalar::Str(s)) => Ok(s.clone()),
        _ => unsupported(format!("{what} that is not a constant string")),
    }
}

/// A scalar function call; `None` when `name` is not one.
pub(super) fn plan_function(name: &str, args: Vec<Expr>, cols: &[RelCol]) -> Result<Option<Expr>> {
    let n = args.len();
    let arity = |lo: usize, hi: usize| {
        if n < lo || n > hi {
            Err(QueryError::Type(format!(
                "{name} takes {} arguments, not {n}",
                if lo == hi {
                    lo.to_string()
                } else if hi == usize::MAX {
                    format!("at least {lo}")
                } else {
                    format!("{lo} to {hi}")
                }
            )))
        } else {
            Ok(())
        }
    };
    let ts_or_iv = [DType::Timestamp, DType::Interval];
    let call = |f: Func, args: Vec<Expr>, t: DType| Ok(Some(Expr::Func(f, args, t)));
    match name {
        "coalesce" | "ifnull" | "greatest" | "least" => {
            arity(if name == "ifnull" { 2 } else { 1 }, usize::MAX)?;
            let (args, t) = unify(args, cols, name)?;
            let f = match name {
                "greatest" => Func::Greatest,
                "least" => Func::Least,
                _ => Func::Coalesce,
            };
            call(f, args, t)
        }
        "nullif" => {
            arity(2, 2)?;
            let (args, t) = unify(args, cols, name)?;
            call(Func::NullIf, args, t)
        }
        "date_trunc" | "datetrunc" => {
            arity(2, 2)?;
            let unit = Unit::parse(&const_text(nth(&args, 0)?, "a date_trunc unit")?)?;
            want(cols, nth(&args, 1)?, name, &[DType::Timestamp])?;
            call(
                Func::DateTrunc(unit),
                args.into_iter().skip(1).collect(),
                DType::Timestamp,
            )
        }
        "date_part" | "datepart" => {
            arity(2, 2)?;
            let field = Field::parse(&const_text(nth(&args, 0)?, "a date part")?)?;
            date_part(field, args.into_iter().skip(1).collect(), cols)
        }
        "year" | "month" | "day" | "hour" | "minute" | "second" | "dayofweek" | "dayofyear"
        | "quarter" | "week" | "isodow" => {
            arity(1, 1)?;
            date_part(Field::parse(name)?, args, cols)
        }
        "epoch" => {
            arity(1, 1)?;
            want(cols, nth(&args, 0)?, name, &ts_or_iv)?;
            call(Func::Epoch, args, DType::Double)
        }
        "lower" | "lcase" | "upper" | "ucase" | "length" | "len" | "char_length" => {
            arity(1, 1)?;
            want(cols, nth(&args, 0)?, name, &[DType::Varchar])?;
            let (f, t) = match name {
                "lower" | "lcase" => (Func::Lower, DType::Varchar),
                "upper" | "ucase" => (Func::Upper, DType::Varchar),
                _ => (Func::Length, DType::Bigint),
            };
            call(f, args, t)
        }
        "abs" => {
            arity(1, 1)?;
            let t = want(cols, nth(&args, 0)?, name, &[DType::Bigint, DType::Double])?;
            call(Func::Abs, args, t)
        }
        "concat" => {
            arity(1, usize::MAX)?;
            for a in &args {
                want(cols, a, name, &[DType::Varchar])?;
            }
            call(Func::Concat, args, DType::Varchar)
        }
        _ => Ok(None),
    }
}

fn date_part(field: Field, args: Vec<Expr>, cols: &[RelCol]) -> Result<Option<Expr>> {
    let t = want(
        cols,
        args.first()
            .ok_or_else(|| QueryError::Type("date_part needs a value".into()))?,
        "date_part",
        &[DType::Timestamp, DType::Interval],
    )?;
    if t == DType::Interval && field != Field::Epoch {
        return unsupported(format!("date part {field:?} of an INTERVAL (only epoch)"));
    }
    let out = if field == Field::Epoch {
        DType::Double
    } else {
        DType::Bigint
    };
    Ok(Some(Expr::Func(Func::DatePart(field), args, out)))
}

/// `CASE [x] WHEN .. THEN .. [ELSE ..] END`.
pub(super) fn plan_case(
    operand: Option<Expr>,
    whens: Vec<(Expr, Expr)>,
    else_: Option<Expr>,
    cols: &[RelCol],
) -> Result<Expr> {
    let mut conds = Vec::new();
    let mut results = Vec::new();
    for (w, r) in whens {
        let c = match &operand {
            Some(x) => typed_cmp(CmpOp::Eq, x.clone(), w, cols)?,
            None => w,
        };
        let t = expr_type(&c, cols)?;
        if !matches!(t, DType::Boolean | DType::Null) {
            return Err(QueryError::Type(format!(
                "CASE WHEN needs a condition, not a {} value",
                t.name()
            )));
        }
        conds.push(c);
        results.push(r);
    }
    let has_else = else_.is_some();
    results.extend(else_);
    let (results, t) = unify(results, cols, "CASE")?;
    let mut args = Vec::new();
    let mut it = results.into_iter();
    for c in conds {
        args.push(c);
        args.extend(it.next());
    }
    args.extend(it);
    Ok(Expr::Func(Func::Case { has_else }, args, t))
}

/// `x [NOT] [I]LIKE pattern [ESCAPE c]`.
pub(super) fn plan_like(
    x: Expr,
    pattern: Expr,
    escape: Option<Expr>,
    ci: bool,
    negated: bool,
    cols: &[RelCol],
) -> Result<Expr> {
    let what = if ci { "ILIKE" } else { "LIKE" };
    want(cols, &x, what, &[DType::Varchar])?;
    want(cols, &pattern, what, &[DType::Varchar])?;
    let escape = match escape {
        None => None,
        Some(e) => {
            let s = const_text(&e, "an ESCAPE")?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some(c),
                (None, _) => None,
                _ => {
                    return Err(QueryError::InvalidValue(
                        "ESCAPE takes one character".into(),
                    ))
                }
            }
        }
    };
    let e = Expr::Func(Func::Like { ci, escape }, vec![x, pattern], DType::Boolean);
    Ok(if negated { Expr::Not(Box::new(e)) } else { e })
}

/// `EXTRACT(field FROM x)`.
pub(super) fn plan_extract(field: &ast::DateTimeField, x: Expr, cols: &[RelCol]) -> Result<Expr> {
    let name = field.to_string();
    let f = Field::parse(&name)?;
    date_part(f, vec![x], cols)?.ok_or_else(|| QueryError::Internal(format!("EXTRACT({name})")))
}
