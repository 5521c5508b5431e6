//! SQL text to statements: the one place where journeydb reads SQL text.
//!
//! Invariant (kept here, checked by `tests/quoting.rs`): SQL text is tokenized and parsed once and
//! never re-assembled from tokens. A string literal or a bound parameter therefore can never become
//! SQL, whatever quotes, backslashes or comment markers it holds.
//!
//! - journeydb's `MERGE MIN|MAX|SUM|LAST` column rule is taken out of the *token stream* of a
//!   `CREATE TABLE` (remembering which column it belongs to), and the parser then reads that token
//!   stream directly: no text is printed in between.
//! - Scripts are split into statements by the byte spans of their top-level semicolons: each
//!   statement's text is a slice of the original, as written.
//! - Parameters (`$1`, `$2`, ...) are bound by replacing placeholder nodes of the parsed AST with
//!   typed values ([`bind_params`]).

use std::ops::ControlFlow;

use journeydb_storage::MergeRule;
use sqlparser::ast::{self, Expr, Statement, Value};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::error::{QueryError, Result};
use crate::types::Scalar;

/// Highest parameter number a statement may use (`$65535`), as in PostgreSQL: the wire protocol
/// counts parameters in an `i16`-sized field, and nothing is allocated per parameter number before
/// this check.
pub const PARAMS_MAX: usize = 65_535;

/// Nesting depth of parentheses, subqueries and function calls the parser accepts. Long flat
/// chains (`a OR b OR ...`, `IN (...)`) are not nesting and are not limited by it.
pub const PARSE_DEPTH_MAX: usize = 64;

/// Binary operators (and set operations) one parenthesized group of a statement may chain. The
/// parser builds such a chain as a tree as deep as it is long, and walking or dropping a tree that
/// deep could exhaust a thread's stack, so longer chains are refused before parsing. AND / OR
/// chains within the limit are planned as balanced trees; long lists of values belong in
/// `IN (...)`, which is a flat list of any length.
pub const OPERATOR_CHAIN_MAX: usize = 4_096;

/// What journeydb reads from a statement beyond PostgreSQL's grammar.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// MERGE rules of a CREATE TABLE's or ALTER TABLE's columns (column index, rule).
    pub rules: Vec<(usize, MergeRule)>,
    /// Options of a `COPY .. FROM|TO 'file'` that PostgreSQL's grammar lacks (name upper-case,
    /// value as written, without quotes): see [`COPY_FILE_OPTIONS`].
    pub copy_options: Vec<(String, String)>,
    /// The statement was DuckDB's `SUMMARIZE t`, parsed as `DESCRIBE t`.
    pub summarize: bool,
    /// A tenant management statement (see [`crate::admin`]); the [`Statement`] beside it is a
    /// placeholder that runs nothing.
    pub admin: Option<crate::admin::AdminCommand>,
    /// A data contract statement (see [`crate::contract`]); the [`Statement`] beside it is a
    /// placeholder that runs nothing.
    pub contract: Option<crate::contract::ContractCommand>,
}

/// A parsed statement with its [`Extras`].
pub type ParsedStatement = (Statement, Extras);

/// COPY options journeydb takes out of the token stream before PostgreSQL's grammar reads it.
pub const COPY_FILE_OPTIONS: [&str; 6] = [
    "TIMESTAMPFORMAT",
    "MAX_ERRORS",
    "REJECTS",
    "PARTITION_BY_HASH",
    "IGNORE_EXTRA_COLUMNS",
    "KEY",
];

fn last_kept(kept: &[TokenWithSpan]) -> Option<&Token> {
    kept.iter()
        .rev()
        .map(|t| &t.token)
        .find(|t| !matches!(t, Token::Whitespace(_)))
}

fn next_solid(tokens: &[TokenWithSpan], mut j: usize) -> usize {
    while matches!(tokens.get(j).map(|t| &t.token), Some(Token::Whitespace(_))) {
        j += 1;
    }
    j
}

fn dialect() -> PostgreSqlDialect {
    PostgreSqlDialect {}
}

fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>> {
    Tokenizer::new(&dialect(), sql)
        .tokenize_with_location()
        .map_err(|e| QueryError::Syntax(e.to_string()))
}

fn keyword(t: Option<&TokenWithSpan>) -> Option<String> {
    match t.map(|t| &t.token) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// Tokens that chain two operands into a deeper tree: binary operators, AND / OR, and set
/// operations.
fn is_chain_operator(t: &Token) -> bool {
    match t {
        Token::Word(w) if w.quote_style.is_none() => matches!(
            w.value.to_ascii_uppercase().as_str(),
            "AND" | "OR" | "UNION" | "INTERSECT" | "EXCEPT" | "LIKE" | "ILIKE" | "IS"
        ),
        Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::Mod
        | Token::Eq
        | Token::DoubleEq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::StringConcat
        | Token::Caret
        | Token::Ampersand
        | Token::Pipe
        | Token::DoubleColon
        | Token::Tilde
        | Token::ExclamationMarkTilde
        | Token::TildeAsterisk
        | Token::ExclamationMarkTildeAsterisk
        | Token::ShiftLeft
        | Token::ShiftRight => true,
        _ => false,
    }
}

fn merge_rule(word: &str) -> Option<MergeRule> {
    match word {
        "MIN" => Some(MergeRule::Min),
        "MAX" => Some(MergeRule::Max),
        "SUM" => Some(MergeRule::Sum),
        "LAST" => Some(MergeRule::Last),
        _ => None,
    }
}

/// Parses `sql` (one or more statements) into statements with their MERGE rules.
// long: one pass over the tokens keeps the statement, depth and column state that the statement
// split, the MERGE rules, the COPY options and the operator-chain bound all read.
pub fn parse(sql: &str) -> Result<Vec<ParsedStatement>> {
    let tokens = tokenize(sql)?;
    let admin = crate::admin::parse(&tokens)?;
    let contract = match admin {
        Some(_) => None,
        None => crate::contract::parse(&tokens)?,
    };
    if admin.is_some() || contract.is_some() {
        let placeholder = Parser::parse_sql(&dialect(), "COMMENT ON TABLE tenant IS NULL")
            .map_err(|e| QueryError::Internal(e.to_string()))?
            .pop()
            .ok_or_else(|| QueryError::Internal("no placeholder statement".into()))?;
        return Ok(vec![(
            placeholder,
            Extras {
                admin,
                contract,
                ..Extras::default()
            },
        )]);
    }
    let mut kept = Vec::with_capacity(tokens.len());
    // (statement index, column index, rule) of every MERGE rule found.
    let mut specs: Vec<(usize, usize, MergeRule)> = Vec::new();
    // (statement index, name, value) of every journeydb COPY option found.
    let mut copy_specs: Vec<(usize, String, String)> = Vec::new();
    // A COPY's file name has been seen (its option list follows); options were stripped from the
    // open list.
    let (mut copy_target, mut stripped) = (false, false);
    let (mut stmt, mut depth, mut col) = (0usize, 0usize, 0usize);
    let mut first_word: Option<String> = None;
    // Statements that were `SUMMARIZE t`.
    let mut summarize: Vec<usize> = Vec::new();
    // Operators chained so far in each open parenthesized group (the statement itself first).
    let mut chains: Vec<usize> = vec![0];
    let mut i = 0;
    while let Some(t) = tokens.get(i) {
        match &t.token {
            Token::SemiColon => {
                stmt += 1;
                depth = 0;
                col = 0;
                first_word = None;
                chains = vec![0];
                copy_target = false;
                stripped = false;
            }
            Token::SingleQuotedString(_) if depth == 0 && first_word.as_deref() == Some("COPY") => {
                copy_target = true;
            }
            Token::RParen
                if stripped && depth == 1 && matches!(last_kept(&kept), Some(Token::LParen)) =>
            {
                // Every option of the list was journeydb's: drop the empty parentheses.
                while matches!(kept.last().map(|t| &t.token), Some(Token::Whitespace(_))) {
                    kept.pop();
                }
                kept.pop();
                depth = 0;
                chains.pop();
                stripped = false;
                i += 1;
                continue;
            }
            Token::LParen => {
                depth += 1;
                if depth == 1 {
                    col = 0;
                }
                chains.push(0);
            }
            Token::RParen => {
                depth = depth.saturating_sub(1);
                if chains.len() > 1 {
                    chains.pop();
                }
            }
            Token::Comma => {
                // Columns of a CREATE TABLE list are separated at depth 1, the operations of an
                // ALTER TABLE at depth 0.
                let alter = first_word.as_deref() == Some("ALTER");
                if depth == 1 || (depth == 0 && alter) {
                    col += 1;
                }
                if let Some(c) = chains.last_mut() {
                    *c = 0;
                }
            }
            Token::Whitespace(_) => {}
            other => {
                if first_word.is_none() {
                    first_word = Some(keyword(Some(t)).unwrap_or_default());
                    // DuckDB's `SUMMARIZE t` reads as `DESCRIBE t`, marked in its extras.
                    if first_word.as_deref() == Some("SUMMARIZE") {
                        summarize.push(stmt);
                        let mut d = t.clone();
                        d.token = Token::make_keyword("DESCRIBE");
                        kept.push(d);
                        i += 1;
                        continue;
                    }
                }
                if is_chain_operator(other) {
                    if let Some(c) = chains.last_mut() {
                        *c += 1;
                        if *c > OPERATOR_CHAIN_MAX {
                            return Err(QueryError::TooComplex(format!(
                                "more than {OPERATOR_CHAIN_MAX} operators in a row (line {}); \
                                 use IN (...) for a long list of values",
                                t.span.start.line
                            )));
                        }
                    }
                }
            }
        }
        // journeydb's own options in the option list of a COPY to or from a file.
        if copy_target && depth == 1 {
            if let Some(after) = strip_copy_option(&tokens, i, &mut kept, stmt, &mut copy_specs)? {
                stripped = true;
                i = after;
                continue;
            }
        }
        // `MERGE <rule>` inside the column list of a CREATE TABLE, or after the column of an
        // ALTER TABLE .. ADD COLUMN, is journeydb's column rule.
        let rule_place = match first_word.as_deref() {
            Some("CREATE") => depth == 1,
            Some("ALTER") => depth == 0,
            _ => false,
        };
        if rule_place && keyword(Some(t)).as_deref() == Some("MERGE") {
            let mut j = i + 1;
            while matches!(tokens.get(j).map(|t| &t.token), Some(Token::Whitespace(_))) {
                j += 1;
            }
            match keyword(tokens.get(j)).as_deref().and_then(merge_rule) {
                Some(rule) => {
                    specs.push((stmt, col, rule));
                    i = j + 1;
                    continue;
                }
                None => {
                    return Err(QueryError::Syntax(
                        "MERGE must be followed by MIN, MAX, SUM or LAST".into(),
                    ))
                }
            }
        }
        kept.push(t.clone());
        i += 1;
    }
    statements(kept, &specs, &copy_specs, &summarize)
}

/// At token `i` of a COPY's option list: when it names one of journeydb's options, records it (and
/// its value) in `specs`, takes it and a neighbouring comma out of the token stream, and returns the
/// index of the token after it.
fn strip_copy_option(
    tokens: &[TokenWithSpan],
    i: usize,
    kept: &mut Vec<TokenWithSpan>,
    stmt: usize,
    specs: &mut Vec<(usize, String, String)>,
) -> Result<Option<usize>> {
    if !matches!(last_kept(kept), Some(Token::LParen | Token::Comma)) {
        return Ok(None);
    }
    let Some(name) = keyword(tokens.get(i)).filter(|k| COPY_FILE_OPTIONS.contains(&k.as_str()))
    else {
        return Ok(None);
    };
    let j = next_solid(tokens, i + 1);
    let (value, mut after) = match tokens.get(j).map(|t| &t.token) {
        Some(Token::Comma | Token::RParen) | None => ("true".to_string(), j),
        Some(Token::SingleQuotedString(v)) => (v.clone(), j + 1),
        Some(Token::Number(v, _)) => (v.clone(), j + 1),
        Some(Token::Word(w)) => (w.value.clone(), j + 1),
        Some(other) => {
            return Err(QueryError::Syntax(format!(
                "COPY option {name}: unexpected {other}"
            )))
        }
    };
    specs.push((stmt, name, value));
    if matches!(last_kept(kept), Some(Token::Comma)) {
        while !matches!(kept.last().map(|t| &t.token), Some(Token::Comma) | None) {
            kept.pop();
        }
        kept.pop();
    } else {
        let k = next_solid(tokens, after);
        if matches!(tokens.get(k).map(|t| &t.token), Some(Token::Comma)) {
            after = k + 1;
        }
    }
    Ok(Some(after))
}

/// Parses the kept tokens into statements, each with the MERGE rules `specs` found for it.
fn statements(
    kept: Vec<TokenWithSpan>,
    specs: &[(usize, usize, MergeRule)],
    copy_specs: &[(usize, String, String)],
    summarize: &[usize],
) -> Result<Vec<ParsedStatement>> {
    let stmts = Parser::new(&dialect())
        .with_recursion_limit(PARSE_DEPTH_MAX)
        .with_tokens_with_locations(kept)
        .parse_statements()
        .map_err(|e| QueryError::Syntax(e.to_string()))?;
    Ok(stmts
        .into_iter()
        .enumerate()
        .map(|(n, s)| {
            let rules = specs
                .iter()
                .filter(|(st, _, _)| *st == n)
                .map(|(_, c, r)| (*c, *r))
                .collect();
            let copy_options = copy_specs
                .iter()
                .filter(|(st, _, _)| *st == n)
                .map(|(_, k, v)| (k.clone(), v.clone()))
                .collect();
            (
                s,
                Extras {
                    rules,
                    copy_options,
                    summarize: summarize.contains(&n),
                    admin: None,
                    contract: None,
                },
            )
        })
        .collect())
}

/// Byte offset of a tokenizer location (1-based line and character column) in `sql`.
fn byte_offset(sql: &str, line_starts: &[usize], loc: Location) -> usize {
    let line = usize::try_from(loc.line)
        .unwrap_or(usize::MAX)
        .saturating_sub(1);
    let Some(start) = line_starts.get(line).copied() else {
        return sql.len();
    };
    let col = usize::try_from(loc.column)
        .unwrap_or(usize::MAX)
        .saturating_sub(1);
    let rest = sql.get(start..).unwrap_or("");
    start
        + rest
            .char_indices()
            .nth(col)
            .map_or(rest.len(), |(offset, _)| offset)
}

/// Splits a script into statements at top-level semicolons (quotes and comments respected). Each
/// statement is a slice of `sql` exactly as written (MERGE rules included), trimmed; empty
/// statements are dropped.
pub fn split_statements(sql: &str) -> Result<Vec<String>> {
    let tokens = tokenize(sql)?;
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut push = |from: usize, to: usize| {
        let text = sql.get(from..to).unwrap_or("").trim();
        if !text.is_empty() {
            out.push(text.to_string());
        }
    };
    for t in &tokens {
        if t.token == Token::SemiColon {
            let at = byte_offset(sql, &line_starts, t.span.start);
            push(start, at);
            start = at + 1;
        }
    }
    push(start, sql.len());
    Ok(out)
}

/// The parameter number of a `$n` placeholder, checked against [`PARAMS_MAX`].
fn placeholder_number(p: &str) -> Result<usize> {
    let n = p
        .strip_prefix('$')
        .and_then(|d| d.parse::<usize>().ok())
        .filter(|n| (1..=PARAMS_MAX).contains(n))
        .ok_or_else(|| {
            QueryError::Syntax(format!(
                "bad parameter {p}: parameters are $1 .. ${PARAMS_MAX}"
            ))
        })?;
    Ok(n)
}

/// How many parameters a statement (or any AST node) takes: its highest `$n`.
pub fn param_count<V: ast::VisitMut>(stmt: &mut V) -> Result<usize> {
    let mut max = 0;
    let flow = ast::visit_expressions_mut(stmt, |e| {
        if let Expr::Value(v) = e {
            if let Value::Placeholder(p) = &v.value {
                match placeholder_number(p) {
                    Ok(n) => max = max.max(n),
                    Err(err) => return ControlFlow::Break(err),
                }
            }
        }
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(max),
    }
}

/// The AST node of a typed value: the planner reads it as that value, never as SQL text.
fn value_expr(v: &Scalar) -> Result<Expr> {
    let value = |v: Value| Expr::Value(v.with_empty_span());
    Ok(match v {
        Scalar::Null => value(Value::Null),
        Scalar::Bool(b) => value(Value::Boolean(*b)),
        Scalar::Str(s) => value(Value::SingleQuotedString(s.clone())),
        Scalar::Int(i) => value(Value::Number(i.to_string(), false)),
        // A double stays a double even when it has no fraction (`5.0` is not the BIGINT 5).
        Scalar::Float(f) => Expr::Cast {
            kind: ast::CastKind::Cast,
            expr: Box::new(value(Value::Number(format!("{f:?}"), false))),
            data_type: ast::DataType::DoublePrecision,
            format: None,
        },
        Scalar::Ts(us) => Expr::TypedString(ast::TypedString {
            data_type: ast::DataType::Timestamp(None, ast::TimezoneInfo::None),
            value: Value::SingleQuotedString(crate::types::format_timestamp(*us)).with_empty_span(),
            uses_odbc_syntax: false,
        }),
        Scalar::Interval(_) => return Err(QueryError::Unsupported("INTERVAL parameters".into())),
    })
}

/// Replaces every `$n` placeholder of `stmt` with the typed value `params[n - 1]`. A placeholder
/// without a value is an error.
pub fn bind_params<V: ast::VisitMut>(stmt: &mut V, params: &[Scalar]) -> Result<()> {
    let flow = ast::visit_expressions_mut(stmt, |e| {
        let n = match e {
            Expr::Value(v) => match &v.value {
                Value::Placeholder(p) => match placeholder_number(p) {
                    Ok(n) => n,
                    Err(err) => return ControlFlow::Break(err),
                },
                _ => return ControlFlow::Continue(()),
            },
            _ => return ControlFlow::Continue(()),
        };
        match params.get(n - 1) {
            Some(v) => match value_expr(v) {
                Ok(x) => {
                    *e = x;
                    ControlFlow::Continue(())
                }
                Err(err) => ControlFlow::Break(err),
            },
            None => ControlFlow::Break(QueryError::InvalidValue(format!(
                "no value bound for ${n} ({} given)",
                params.len()
            ))),
        }
    });
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Parses one query (`SELECT ..`): the text of a view the planner expands (`system.costs`).
pub fn parse_query(sql: &str) -> Result<Box<sqlparser::ast::Query>> {
    match parse(sql)?.pop().map(|(s, _)| s) {
        Some(sqlparser::ast::Statement::Query(q)) => Ok(q),
        _ => Err(QueryError::Internal(format!("not a query: {sql}"))),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_text_as_written() -> Result<()> {
        let sql = "SELECT 'a;b''c' AS x; -- c;\nINSERT INTO t VALUES ('é;', 'O''Brien');;  ";
        let parts = split_statements(sql)?;
        assert_eq!(
            parts,
            vec![
                "SELECT 'a;b''c' AS x".to_string(),
                "-- c;\nINSERT INTO t VALUES ('é;', 'O''Brien')".to_string()
            ]
        );
        Ok(())
    }

    #[test]
    fn merge_rules_only_in_create_table() -> Result<()> {
        let p = parse(
            "CREATE TABLE t (k VARCHAR PRIMARY KEY, a TIMESTAMP MERGE MAX, n BIGINT merge sum); \
             SELECT 'MERGE MIN' FROM t",
        )?;
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].1.rules, vec![(1, MergeRule::Max), (2, MergeRule::Sum)]);
        assert!(p[1].1.rules.is_empty());
        Ok(())
    }

    #[test]
    fn journeydb_copy_options_are_taken_out_of_a_copy_with_a_file_only() -> Result<()> {
        let opts = |sql: &str| -> Result<Vec<(String, String)>> {
            let mut p = parse(sql)?;
            Ok(p.remove(0).1.copy_options)
        };
        let kv = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            opts(
                "COPY t FROM 'a.csv' (FORMAT csv, TIMESTAMPFORMAT '%d/%m', MAX_ERRORS 3, HEADER)"
            )?,
            kv(&[("TIMESTAMPFORMAT", "%d/%m"), ("MAX_ERRORS", "3")])
        );
        assert_eq!(
            opts("COPY t FROM 'a.csv' (MAX_ERRORS 3, REJECTS 'r.csv')")?,
            kv(&[("MAX_ERRORS", "3"), ("REJECTS", "r.csv")])
        );
        assert_eq!(
            opts(
                "COPY (SELECT max_errors, key FROM t) TO 'o' (PARTITION_BY_HASH 4, FORMAT parquet)"
            )?,
            kv(&[("PARTITION_BY_HASH", "4")])
        );
        assert_eq!(
            opts("COPY t FROM 'a.csv' (IGNORE_EXTRA_COLUMNS)")?,
            kv(&[("IGNORE_EXTRA_COLUMNS", "true")])
        );
        // The query keeps its own words; a string literal is never an option.
        let p = parse("COPY (SELECT 'MAX_ERRORS 3' AS max_errors FROM t) TO 'o.csv'")?;
        assert!(p[0].1.copy_options.is_empty());
        assert!(p[0].0.to_string().contains("'MAX_ERRORS 3' AS max_errors"));
        Ok(())
    }

    #[test]
    fn placeholders_bind_as_values() -> Result<()> {
        let mut p = parse("SELECT count(*) FROM t WHERE n = $1 OR n = $2")?;
        let stmt = &mut p[0].0;
        assert_eq!(param_count(stmt)?, 2);
        bind_params(stmt, &[Scalar::Str("x' OR '1'='1".into()), Scalar::Int(-1)])?;
        let text = stmt.to_string();
        assert!(!text.contains('$'), "{text}");
        assert!(matches!(
            parse("SELECT $0")?
                .pop()
                .map(|(mut s, _)| param_count(&mut s)),
            Some(Err(_))
        ));
        assert!(matches!(
            parse("SELECT $18446744073709551615")?
                .pop()
                .map(|(mut s, _)| param_count(&mut s)),
            Some(Err(_))
        ));
        Ok(())
    }
}
