//! Expressions: binding names to columns, literals, typing, and constant folding of comparisons.

use super::*;

/// The column named `name`. The columns of a join are qualified (`s.stage1`): a bare name finds
/// the one column of that name on either side, and `alias.key` of a USING join finds the key.
pub(super) fn resolve(name: &str, cols: &[RelCol]) -> Result<usize> {
    let find = |pred: &dyn Fn(&RelCol) -> bool| {
        let mut hits = cols.iter().enumerate().filter(|(_, c)| pred(c));
        match (hits.next(), hits.next()) {
            (Some((i, _)), None) => Some(Ok(i)),
            (Some(_), Some(_)) => Some(Err(QueryError::ColumnNotFound(format!(
                "{name} is ambiguous (qualify it with its table)"
            )))),
            (None, _) => None,
        }
    };
    let exact = find(&|c| c.name.eq_ignore_ascii_case(name));
    let qualified = || {
        if name.contains('.') {
            // `p.customer_id` of a USING join: the key column stands for both sides.
            let b = bare(name);
            let hidden = format!("{HIDDEN}{name}");
            find(&|c| c.name.eq_ignore_ascii_case(&hidden)).or_else(|| {
                find(&|c| {
                    c.is_key && !c.name.starts_with(HIDDEN) && bare(&c.name).eq_ignore_ascii_case(b)
                })
            })
        } else {
            find(&|c| {
                c.name.contains('.')
                    && !c.name.starts_with(HIDDEN)
                    && bare(&c.name).eq_ignore_ascii_case(name)
            })
        }
    };
    exact
        .or_else(qualified)
        .unwrap_or_else(|| Err(QueryError::ColumnNotFound(name.to_string())))
}

pub(super) fn lit_of(v: &ast::Value) -> Result<Scalar> {
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

pub(super) fn dtype_of_sql(t: &ast::DataType) -> Result<DType> {
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
// long: one arm per SQL expression kind; each arm is short.
pub fn plan_expr(e: &ast::Expr, cols: &[RelCol], alias: Option<&str>, now_us: i64) -> Result<Expr> {
    let p = |x: &ast::Expr| plan_expr(x, cols, alias, now_us);
    let planned = match e {
        ast::Expr::Identifier(i) => Expr::Col(resolve(&ident(i), cols)?),
        ast::Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] if cols.iter().any(|c| c.name.contains('.')) => {
                Expr::Col(resolve(&format!("{}.{}", ident(q), ident(c)), cols)?)
            }
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
                B::StringConcat => {
                    let (args, _) = funcs::unify(vec![l, r], cols, "||")?;
                    for a in &args {
                        let t = expr_type(a, cols)?;
                        if !matches!(t, DType::Varchar | DType::Null) {
                            return unsupported(format!("|| on a {} value", t.name()));
                        }
                    }
                    Expr::Func(crate::func::Func::Concat, args, DType::Varchar)
                }
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
                _ if super::aggregate::is_aggregate_name(&name) => {
                    return unsupported(format!(
                        "aggregate {e} here (aggregates go in the SELECT list or HAVING)"
                    ))
                }
                _ => {
                    if f.over.is_some() || f.filter.is_some() {
                        return unsupported(format!("OVER / FILTER on function {name}"));
                    }
                    let args = funcs::call_args(f, &name)?
                        .into_iter()
                        .map(&p)
                        .collect::<Result<Vec<_>>>()?;
                    match funcs::plan_function(&name, args, cols)? {
                        Some(x) => x,
                        None => return unsupported(format!("function {name}")),
                    }
                }
            }
        }
        ast::Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let operand = operand.as_deref().map(&p).transpose()?;
            let whens = conditions
                .iter()
                .map(|w| Ok((p(&w.condition)?, p(&w.result)?)))
                .collect::<Result<Vec<_>>>()?;
            let else_ = else_result.as_deref().map(&p).transpose()?;
            funcs::plan_case(operand, whens, else_, cols)?
        }
        ast::Expr::Like {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        }
        | ast::Expr::ILike {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        } => {
            if *any {
                return unsupported("LIKE ANY");
            }
            let ci = matches!(e, ast::Expr::ILike { .. });
            let escape = escape_char.as_deref().map(&p).transpose()?;
            funcs::plan_like(p(expr)?, p(pattern)?, escape, ci, *negated, cols)?
        }
        ast::Expr::Extract { field, expr, .. } => funcs::plan_extract(field, p(expr)?, cols)?,
        other => return unsupported(format!("expression {other}")),
    };
    expr_type(&planned, cols)?;
    Ok(planned)
}

/// The operands of a chain of one associative operator (`a AND b AND (c AND d)`), in order,
/// collected without recursion.
pub(super) fn chain_operands<'e>(e: &'e ast::Expr, op: &ast::BinaryOperator) -> Vec<&'e ast::Expr> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(x) = stack.pop() {
        match x {
            ast::Expr::BinaryOp { left, op: o, right } if o == op => {
                stack.push(right);
                stack.push(left);
            }
            ast::Expr::Nested(inner) if matches!(inner.as_ref(), ast::Expr::BinaryOp { op: o, .. } if o == op) => {
                stack.push(inner)
            }
            other => out.push(other),
        }
    }
    out
}

/// Joins `items` pairwise, level by level, into a tree of depth log2(n); `None` when empty.
pub(super) fn balanced(mut items: Vec<Expr>, join: impl Fn(Expr, Expr) -> Expr) -> Option<Expr> {
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
pub(super) fn typed_cmp(op: CmpOp, l: Expr, r: Expr, cols: &[RelCol]) -> Result<Expr> {
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
pub(super) fn fold_interval_cmp(op: CmpOp, l: Expr, r: Expr) -> Expr {
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

pub(super) fn typed_arith(op: ArithOp, l: Expr, r: Expr, cols: &[RelCol]) -> Result<Expr> {
    let (lt, rt) = (expr_type(&l, cols)?, expr_type(&r, cols)?);
    let out = match (op, lt, rt) {
        (_, DType::Null, _) | (_, _, DType::Null) => DType::Null,
        (ArithOp::Add | ArithOp::Sub, DType::Timestamp, DType::Interval)
        | (ArithOp::Add, DType::Interval, DType::Timestamp) => DType::Timestamp,
        // Two timestamps are an interval apart (µs, as DuckDB's days and time).
        (ArithOp::Sub, DType::Timestamp, DType::Timestamp)
        | (ArithOp::Add | ArithOp::Sub, DType::Interval, DType::Interval) => DType::Interval,
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
        Expr::Arith(_, _, _, t) | Expr::Func(_, _, t) => *t,
        Expr::Neg(a) => expr_type(a, cols)?,
        Expr::Filtered(a, c) => {
            let t = expr_type(c, cols)?;
            if !matches!(t, DType::Boolean | DType::Null) {
                return Err(QueryError::Type(format!(
                    "FILTER (WHERE ..) needs a condition, not {}",
                    t.name()
                )));
            }
            expr_type(a, cols)?
        }
    })
}
