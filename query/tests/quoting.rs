//! A literal or a parameter never becomes SQL: values with quotes, backslashes, comment markers,
//! NUL, unicode and long text read back byte for byte, whether written as escaped literals or
//! bound as parameters, and `WHERE v = $1` matches exactly the rows holding that value. Long
//! operator chains and IN lists plan without deep recursion or are refused with a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use arrow_array::{Array, Int64Array, StringArray};
use journeydb_query::parse::{bind_params, param_count, OPERATOR_CHAIN_MAX};
use journeydb_query::types::Scalar;
use journeydb_query::{Engine, Output, QueryError};
use journeydb_storage::{Database, KeyType, Options};
use proptest::prelude::*;

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(
        dir.path(),
        KeyType::Varchar,
        Options {
            background: false,
            ..Options::default()
        },
    )
    .unwrap();
    let e = Engine::new(Arc::new(db));
    e.execute("CREATE TABLE t (k VARCHAR PRIMARY KEY, v VARCHAR MERGE LAST, n BIGINT)")
        .unwrap();
    (dir, e)
}

/// Runs one statement with parameters bound as typed values.
fn run_with(e: &Engine, sql: &str, params: &[Scalar]) -> Result<Output, QueryError> {
    let mut stmts = Engine::parse(sql)?;
    assert_eq!(stmts.len(), 1);
    let (mut stmt, rules) = stmts.remove(0);
    param_count(&mut stmt)?;
    bind_params(&mut stmt, params)?;
    e.execute_statement(&stmt, &rules)
}

fn count(e: &Engine, sql: &str, params: &[Scalar]) -> i64 {
    match run_with(e, sql, params).unwrap() {
        Output::Rows(b) => b
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0),
        Output::Done { tag, .. } => panic!("{tag} has no rows"),
    }
}

fn values_of(e: &Engine, sql: &str, params: &[Scalar]) -> Vec<Option<String>> {
    match run_with(e, sql, params).unwrap() {
        Output::Rows(b) => {
            let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            (0..a.len())
                .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
                .collect()
        }
        Output::Done { tag, .. } => panic!("{tag} has no rows"),
    }
}

/// The SQL literal of `s`, escaped the standard way (quotes doubled).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

const NASTY: &[&str] = &[
    "O'Brien",
    "L'Aquila",
    "''",
    "'",
    "zzz' OR '1'='1",
    "q', 999), ('evil', 'x",
    "back\\slash\\",
    "\\'",
    "-- not a comment",
    "/* not a comment */",
    "a;b; DROP TABLE t; --",
    "$1",
    "$$dollar$$",
    "E'esc'",
    "tab\tnew\nline\r",
    "unicode: é ü 日本 🚀",
    "",
];

#[test]
fn quoted_literals_read_back_exactly() {
    let (_d, e) = engine();
    for (i, v) in NASTY.iter().enumerate() {
        e.execute(&format!(
            "INSERT INTO t VALUES ('k{i}', {}, {i})",
            literal(v)
        ))
        .unwrap();
    }
    for (i, v) in NASTY.iter().enumerate() {
        let got = values_of(&e, &format!("SELECT v FROM t WHERE k = 'k{i}'"), &[]);
        assert_eq!(got, vec![Some(v.to_string())], "value {v:?}");
        let n = count(
            &e,
            &format!("SELECT count(*) FROM t WHERE v = {}", literal(v)),
            &[],
        );
        assert_eq!(n, 1, "WHERE v = {}", literal(v));
    }
    // The finding of the issue: a quoted literal that looks like SQL matches nothing.
    assert_eq!(
        count(
            &e,
            "SELECT count(*) FROM t WHERE v = 'nothing'' OR ''1''=''1'",
            &[]
        ),
        0
    );
    // A script split at semicolons keeps semicolons inside quotes.
    let outs = e
        .execute("INSERT INTO t VALUES ('s1', 'a;b', 1); INSERT INTO t VALUES ('s2', ';', 2)")
        .unwrap();
    assert_eq!(outs.len(), 2);
    assert_eq!(
        values_of(&e, "SELECT v FROM t WHERE k = 's1'", &[]),
        vec![Some("a;b".to_string())]
    );
}

#[test]
fn parameters_read_back_exactly_and_never_become_sql() {
    let (_d, e) = engine();
    for (i, v) in NASTY.iter().enumerate() {
        run_with(
            &e,
            "INSERT INTO t VALUES ($1, $2, $3)",
            &[
                Scalar::Str(format!("p{i}")),
                Scalar::Str(v.to_string()),
                Scalar::Int(i as i64),
            ],
        )
        .unwrap();
    }
    // One row per value: "q', 999), ('evil', 'x" did not insert a second row.
    assert_eq!(count(&e, "SELECT count(*) FROM t", &[]), NASTY.len() as i64);
    for (i, v) in NASTY.iter().enumerate() {
        let got = values_of(
            &e,
            "SELECT v FROM t WHERE k = $1",
            &[Scalar::Str(format!("p{i}"))],
        );
        assert_eq!(got, vec![Some(v.to_string())]);
        assert_eq!(
            count(
                &e,
                "SELECT count(*) FROM t WHERE v = $1",
                &[Scalar::Str(v.to_string())]
            ),
            1,
            "{v:?}"
        );
    }
    // A negative number after a minus is arithmetic, never a `--` comment.
    assert_eq!(
        count(
            &e,
            "SELECT count(*) FROM t WHERE n - $1 > 100",
            &[Scalar::Int(-100)]
        ),
        (NASTY.len() as i64 - 1).max(0)
    );
    // A missing parameter is an error, not a NULL.
    assert!(run_with(&e, "SELECT v FROM t WHERE k = $2", &[Scalar::Null]).is_err());
    let mut two = Engine::parse("SELECT v FROM t WHERE k = $2 OR v = $1").unwrap();
    assert_eq!(param_count(&mut two[0].0).unwrap(), 2);
}

#[test]
fn strings_that_are_not_standard_sql_are_read_or_refused_never_misread() {
    let (_d, e) = engine();
    // Escape strings and dollar quoting: read as PostgreSQL reads them, or refused.
    for (sql, want) in [
        ("INSERT INTO t VALUES ('e', E'it\\'s', 1)", "it's"),
        (
            "INSERT INTO t VALUES ('d', $$a 'quoted' $1 -- x$$, 1)",
            "a 'quoted' $1 -- x",
        ),
    ] {
        match e.execute(sql) {
            Ok(_) => {
                let k = if want == "it's" { "e" } else { "d" };
                assert_eq!(
                    values_of(&e, &format!("SELECT v FROM t WHERE k = '{k}'"), &[]),
                    vec![Some(want.to_string())],
                    "{sql}"
                );
            }
            Err(err) => assert!(
                matches!(err, QueryError::Unsupported(_) | QueryError::Syntax(_)),
                "{sql}: {err}"
            ),
        }
    }
    // An unterminated literal is a syntax error.
    assert!(matches!(
        e.execute("SELECT count(*) FROM t WHERE v = 'abc"),
        Err(QueryError::Syntax(_))
    ));
}

#[test]
fn long_in_lists_and_chains_plan_without_deep_recursion() {
    let (_d, e) = engine();
    e.execute("INSERT INTO t VALUES ('a', 'x', 1), ('b', 'y', 2), ('c', NULL, 3)")
        .unwrap();
    // 100,000 items in an IN list: one hash lookup per row.
    let items: Vec<String> = (0..100_000).map(|i| format!("'v{i}'")).collect();
    let sql = format!(
        "SELECT count(*) FROM t WHERE v IN ('x', {})",
        items.join(", ")
    );
    assert_eq!(count(&e, &sql, &[]), 1);
    let sql = format!(
        "SELECT count(*) FROM t WHERE v NOT IN ('x', {})",
        items.join(", ")
    );
    assert_eq!(count(&e, &sql, &[]), 1, "NULL is neither in nor not in");
    let ints: Vec<String> = (10..100_000).map(|i| i.to_string()).collect();
    let sql = format!("SELECT count(*) FROM t WHERE n IN (2, {})", ints.join(", "));
    assert_eq!(count(&e, &sql, &[]), 1);
    // A NULL in the list: no match is NULL, so NOT IN keeps nothing.
    assert_eq!(
        count(&e, "SELECT count(*) FROM t WHERE n NOT IN (1, NULL)", &[]),
        0
    );
    assert_eq!(
        count(&e, "SELECT count(*) FROM t WHERE n IN (1, NULL)", &[]),
        1
    );
    // OR / AND chains up to the limit plan as balanced trees.
    let ors: Vec<String> = (0..OPERATOR_CHAIN_MAX / 4)
        .map(|i| format!("n = {i}"))
        .collect();
    let sql = format!("SELECT count(*) FROM t WHERE {}", ors.join(" OR "));
    assert_eq!(count(&e, &sql, &[]), 3);
    // Longer chains are refused with a clear error, never a crash.
    for sep in [" OR ", " AND ", " + "] {
        let terms: Vec<String> = (0..50_000).map(|i| format!("n = {i}")).collect();
        let sql = format!("SELECT count(*) FROM t WHERE {}", terms.join(sep));
        match e.execute(&sql) {
            Err(QueryError::TooComplex(m)) => assert!(m.contains("IN (...)"), "{m}"),
            other => panic!("{sep}: {other:?}"),
        }
    }
    let plus = format!(
        "SELECT count(*) FROM t WHERE n {} > 0",
        "+ 1 ".repeat(100_000)
    );
    assert!(matches!(e.execute(&plus), Err(QueryError::TooComplex(_))));
    // Deep nesting is a syntax error from the parser's depth limit.
    let nested = format!(
        "SELECT count(*) FROM t WHERE {}n = 1{}",
        "(".repeat(5_000),
        ")".repeat(5_000)
    );
    assert!(e.execute(&nested).is_err());
}

/// Rust's default stack for a spawned thread.
const STACK_BYTES: usize = 2 << 20;

#[test]
fn deep_expressions_run_on_a_small_stack() {
    // A thread with the default stack plans, runs and drops the longest accepted chain.
    let handle = std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(|| {
            let (_d, e) = engine();
            e.execute("INSERT INTO t VALUES ('a', 'x', 1)").unwrap();
            let terms: Vec<String> = (0..OPERATOR_CHAIN_MAX - 1)
                .map(|_| "1".to_string())
                .collect();
            let sql = format!(
                "SELECT count(*) FROM t WHERE n + {} > $1",
                terms.join(" + ")
            );
            run_with(&e, &sql, &[Scalar::Int(0)]).map(|_| ())
        })
        .unwrap();
    handle.join().expect("no stack overflow").unwrap();
}

#[test]
fn long_and_nul_strings_round_trip() {
    let (_d, e) = engine();
    let long: String = "日本'--/*é*/\\".repeat(100_000);
    let nul = "before\0after'".to_string();
    for (k, v) in [("long", &long), ("nul", &nul)] {
        run_with(
            &e,
            "INSERT INTO t VALUES ($1, $2, 0)",
            &[Scalar::Str(k.into()), Scalar::Str(v.clone())],
        )
        .unwrap();
        assert_eq!(
            values_of(&e, "SELECT v FROM t WHERE k = $1", &[Scalar::Str(k.into())]),
            vec![Some(v.clone())]
        );
        assert_eq!(
            count(
                &e,
                "SELECT count(*) FROM t WHERE v = $1",
                &[Scalar::Str(v.clone())]
            ),
            1
        );
    }
    // The long one as an escaped literal too.
    e.execute(&format!(
        "INSERT INTO t VALUES ('lit', {}, 0)",
        literal(&long)
    ))
    .unwrap();
    assert_eq!(
        values_of(&e, "SELECT v FROM t WHERE k = 'lit'", &[]),
        vec![Some(long.clone())]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any string, inserted with a parameter and with an escaped literal, reads back byte for byte,
    /// and `WHERE v = $1` matches exactly the rows holding it.
    #[test]
    fn any_string_round_trips(values in proptest::collection::vec(any::<String>(), 1..6)) {
        let (_d, e) = engine();
        for (i, v) in values.iter().enumerate() {
            run_with(&e, "INSERT INTO t VALUES ($1, $2, 0)", &[Scalar::Str(format!("p{i}")), Scalar::Str(v.clone())]).unwrap();
            e.execute(&format!("INSERT INTO t VALUES ('l{i}', {}, 0)", literal(v))).unwrap();
        }
        for (i, v) in values.iter().enumerate() {
            let by_param = values_of(&e, "SELECT v FROM t WHERE k = $1", &[Scalar::Str(format!("p{i}"))]);
            prop_assert_eq!(by_param, vec![Some(v.clone())]);
            let by_lit = values_of(&e, &format!("SELECT v FROM t WHERE k = 'l{i}'"), &[]);
            prop_assert_eq!(by_lit, vec![Some(v.clone())]);
            let want = 2 * values.iter().filter(|x| *x == v).count() as i64;
            prop_assert_eq!(count(&e, "SELECT count(*) FROM t WHERE v = $1", &[Scalar::Str(v.clone())]), want);
        }
    }
}
