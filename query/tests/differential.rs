//! Differential test against DuckDB: random journey-shaped data is appended to journeydb (with merge
//! rules) and loaded raw into DuckDB behind the equivalence view of DESIGN.md §3; a few hundred random
//! queries from a grammar of the subset run on both and must agree exactly. DuckDB runs through the
//! Python `duckdb` package (installed by scripts/test.sh). A failure prints the data seed and the SQL;
//! set `DIFF_SEED` to replay a seed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use journeydb_query::format::cell_text;
use journeydb_query::types::format_timestamp;
use journeydb_query::{Engine, Output};
use journeydb_storage::{Database, KeyType, Options};

const CUSTOMERS: usize = 70_000;
const BATCHES: usize = 3;
const QUERIES: usize = 400;
const DAY_US: i64 = 86_400_000_000;
const T0: i64 = 1_767_225_600_000_000; // 2026-01-01

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const CHANNELS: [&str; 4] = ["email", "sms", "push", "web"];
const COUNTRIES: [&str; 3] = ["US", "DE", "FR"];

fn ts(rng: &mut Rng) -> i64 {
    T0 + rng.below(40) as i64 * DAY_US + rng.below(24) as i64 * 3_600_000_000
}

/// Appends a batch to journeydb and its rows to the CSV text.
fn emit(
    db: &Database,
    table: &str,
    csv: &mut String,
    keys: Vec<String>,
    cols: Vec<(&str, Vec<Option<String>>, DataType)>,
) {
    let mut fields = vec![Field::new("k", DataType::Utf8, false)];
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(keys.iter()))];
    for (name, vals, ty) in &cols {
        fields.push(Field::new(*name, ty.clone(), true));
        let a: ArrayRef = match ty {
            DataType::Timestamp(..) => Arc::new(TimestampMicrosecondArray::from(
                vals.iter()
                    .map(|v| v.as_ref().map(|s| s.parse::<i64>().unwrap()))
                    .collect::<Vec<_>>(),
            )),
            DataType::Int64 => Arc::new(Int64Array::from(
                vals.iter()
                    .map(|v| v.as_ref().map(|s| s.parse::<i64>().unwrap()))
                    .collect::<Vec<_>>(),
            )),
            _ => Arc::new(StringArray::from(vals.clone())),
        };
        arrays.push(a);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap();
    db.append(table, &batch).unwrap();
    for (r, k) in keys.iter().enumerate() {
        csv.push_str(k);
        for (_, vals, ty) in &cols {
            csv.push(',');
            if let Some(v) = &vals[r] {
                match ty {
                    DataType::Timestamp(..) => csv.push_str(&format_timestamp(v.parse().unwrap())),
                    _ => csv.push_str(v),
                }
            }
        }
        csv.push('\n');
    }
}

fn build(dir: &Path, seed: u64) -> Database {
    let mut rng = Rng(seed | 1);
    let opts = Options {
        partition_rows: 65536,
        background: true,
        flush_rows: 50_000,
        ..Options::default()
    };
    let db = Database::create(dir.join("db"), KeyType::Varchar, opts).unwrap();
    db.create_table(
        "st",
        journeydb_storage::TableSchema::new(
            "k",
            vec![
                journeydb_storage::ColumnDef::new("s1", journeydb_storage::ColumnType::Timestamp),
                journeydb_storage::ColumnDef::new("s2", journeydb_storage::ColumnType::Timestamp),
                journeydb_storage::ColumnDef::new("s3", journeydb_storage::ColumnType::Timestamp),
                journeydb_storage::ColumnDef::new("n", journeydb_storage::ColumnType::Bigint)
                    .with_rule(journeydb_storage::MergeRule::Sum),
                journeydb_storage::ColumnDef::new("v", journeydb_storage::ColumnType::Varchar)
                    .with_rule(journeydb_storage::MergeRule::Max),
            ],
        ),
    )
    .unwrap();
    db.create_table(
        "pr",
        journeydb_storage::TableSchema::new(
            "k",
            vec![
                journeydb_storage::ColumnDef::new(
                    "country",
                    journeydb_storage::ColumnType::Varchar,
                ),
                journeydb_storage::ColumnDef::new("age", journeydb_storage::ColumnType::Bigint),
                journeydb_storage::ColumnDef::new("ta", journeydb_storage::ColumnType::Timestamp),
                journeydb_storage::ColumnDef::new("tb", journeydb_storage::ColumnType::Timestamp),
            ],
        ),
    )
    .unwrap();
    let mut st_csv = String::from("k,s1,s2,s3,n,v\n");
    for b in 0..BATCHES {
        let mut keys = Vec::new();
        let (mut s1, mut s2, mut s3, mut n, mut v) = (vec![], vec![], vec![], vec![], vec![]);
        for i in 0..CUSTOMERS {
            if !rng.chance(0.7) {
                continue;
            }
            keys.push(format!("c{i:06}"));
            s1.push(rng.chance(0.6).then(|| ts(&mut rng).to_string()));
            s2.push(rng.chance(0.3).then(|| ts(&mut rng).to_string()));
            s3.push(rng.chance(0.05).then(|| ts(&mut rng).to_string()));
            n.push(
                rng.chance(0.5)
                    .then(|| (rng.below(26) as i64 - 5).to_string()),
            );
            v.push(rng.chance(0.4).then(|| rng.pick(&CHANNELS).to_string()));
        }
        let ts_ty = DataType::Timestamp(TimeUnit::Microsecond, None);
        emit(
            &db,
            "st",
            &mut st_csv,
            keys,
            vec![
                ("s1", s1, ts_ty.clone()),
                ("s2", s2, ts_ty.clone()),
                ("s3", s3, ts_ty),
                ("n", n, DataType::Int64),
                ("v", v, DataType::Utf8),
            ],
        );
        if b == 0 {
            db.flush().unwrap();
        }
    }
    let mut pr_csv = String::from("k,country,age,ta,tb\n");
    let mut keys = Vec::new();
    let (mut country, mut age, mut ta, mut tb) = (vec![], vec![], vec![], vec![]);
    for i in (0..CUSTOMERS + 1000).step_by(2) {
        keys.push(format!("c{i:06}"));
        country.push(rng.chance(0.9).then(|| rng.pick(&COUNTRIES).to_string()));
        age.push(rng.chance(0.8).then(|| (18 + rng.below(60)).to_string()));
        // Timestamps of few distinct values (as journey run times are): read as value groups.
        ta.push(rng.chance(0.7).then(|| ts(&mut rng).to_string()));
        tb.push(rng.chance(0.5).then(|| ts(&mut rng).to_string()));
    }
    // Two flushes of alternate rows, so each partition of `pr` is two segments of disjoint rows
    // (GROUP BY and string comparisons read storage's value groups, joined across them) while
    // `st` has segments of overlapping rows (GROUP BY reads values).
    for half in 0..2 {
        let pick = |v: &Vec<Option<String>>| -> Vec<Option<String>> {
            v.iter().skip(half).step_by(2).cloned().collect()
        };
        emit(
            &db,
            "pr",
            &mut pr_csv,
            keys.iter().skip(half).step_by(2).cloned().collect(),
            vec![
                ("country", pick(&country), DataType::Utf8),
                ("age", pick(&age), DataType::Int64),
                (
                    "ta",
                    pick(&ta),
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                ),
                (
                    "tb",
                    pick(&tb),
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                ),
            ],
        );
        db.flush().unwrap();
    }
    std::fs::write(dir.join("st.csv"), st_csv).unwrap();
    std::fs::write(dir.join("pr.csv"), pr_csv).unwrap();
    db
}

fn lit_ts(rng: &mut Rng) -> String {
    format!("TIMESTAMP '{}'", format_timestamp(ts(rng)))
}

fn st_pred(rng: &mut Rng, depth: u32) -> String {
    let col = |rng: &mut Rng| ["s1", "s2", "s3"][rng.below(3) as usize];
    if depth > 0 && rng.chance(0.35) {
        let (a, b) = (st_pred(rng, depth - 1), st_pred(rng, depth - 1));
        return match rng.below(3) {
            0 => format!("({a} AND {b})"),
            1 => format!("({a} OR {b})"),
            _ => format!("NOT ({a})"),
        };
    }
    match rng.below(9) {
        0 => format!("{} IS NOT NULL", col(rng)),
        1 => format!("{} IS NULL", col(rng)),
        2 => format!("{} < {}", col(rng), col(rng)),
        3 => format!(
            "{} + INTERVAL '{} days' <= {}",
            col(rng),
            rng.below(10),
            lit_ts(rng)
        ),
        4 => format!("n > {}", rng.below(20) as i64 - 5),
        5 => format!(
            "v IN ('{}', '{}')",
            rng.pick(&CHANNELS),
            rng.pick(&CHANNELS)
        ),
        6 => format!("{} BETWEEN {} AND {}", col(rng), lit_ts(rng), lit_ts(rng)),
        7 => format!(
            "v {} '{}'",
            ["=", "<>", "<", ">="][rng.below(4) as usize],
            rng.pick(&CHANNELS)
        ),
        _ => format!("{} >= '{}'", col(rng), format_timestamp(ts(rng))),
    }
}

/// A condition on `pr`, its columns qualified by `q` (`""` or `"b."`). Conditions on one column or
/// comparing two timestamp columns run on value groups (see `exec::by_value_groups`).
fn pr_pred(rng: &mut Rng, q: &str) -> String {
    let t = |rng: &mut Rng| format!("{q}{}", ["ta", "tb"][rng.below(2) as usize]);
    let op = |rng: &mut Rng| ["=", "<>", "<", "<=", ">", ">="][rng.below(6) as usize];
    match rng.below(13) {
        0 => format!("{q}country = '{}'", rng.pick(&COUNTRIES)),
        // String comparisons with constants run on value groups when the column has few values.
        4 => format!(
            "{q}country {}IN ('{}', '{}'{})",
            if rng.chance(0.3) { "NOT " } else { "" },
            rng.pick(&COUNTRIES),
            rng.pick(&COUNTRIES),
            if rng.chance(0.3) { ", NULL" } else { "" }
        ),
        5 => format!(
            "'{}' {} {q}country",
            rng.pick(&COUNTRIES),
            rng.pick(&["<", ">=", "<>"])
        ),
        6 => format!(
            "NOT ({q}country > '{}' AND {q}age > 30)",
            rng.pick(&COUNTRIES)
        ),
        1 => format!(
            "{q}age BETWEEN {} AND {}",
            18 + rng.below(30),
            40 + rng.below(40)
        ),
        2 => "age IS NULL".replace("age", &format!("{q}age")),
        7 => format!("{} {} {}", t(rng), op(rng), t(rng)),
        8 => format!(
            "{} + INTERVAL '{} days' {} {}",
            t(rng),
            rng.below(10),
            op(rng),
            lit_ts(rng)
        ),
        9 => format!(
            "coalesce({}, {}) {} {}",
            t(rng),
            lit_ts(rng),
            op(rng),
            lit_ts(rng)
        ),
        10 => format!(
            "(date_part('hour', {}) {} {} OR {q}age * 2 > {})",
            t(rng),
            op(rng),
            rng.below(24),
            40 + rng.below(80)
        ),
        11 => format!(
            "CASE WHEN {q}age > {} THEN 'old' ELSE {} END = 'old'",
            20 + rng.below(50),
            if rng.chance(0.5) { "NULL" } else { "'young'" }
        ),
        12 => format!(
            "{} {} {} AND {q}country <> '{}'",
            t(rng),
            op(rng),
            t(rng),
            rng.pick(&COUNTRIES)
        ),
        _ => format!(
            "({q}country <> '{}' OR {q}age < {})",
            rng.pick(&COUNTRIES),
            20 + rng.below(50)
        ),
    }
}

fn key_set(rng: &mut Rng) -> String {
    if rng.chance(0.3) {
        format!("SELECT k FROM pr WHERE {}", pr_pred(rng, ""))
    } else {
        format!("SELECT k FROM st WHERE {}", st_pred(rng, 2))
    }
}

/// A scalar expression over `st` for SELECT lists and GROUP BY (functions, CASE, intervals).
fn st_scalar(rng: &mut Rng) -> String {
    let col = |rng: &mut Rng| ["s1", "s2", "s3"][rng.below(3) as usize];
    match rng.below(12) {
        0 => format!(
            "date_trunc('{}', {})",
            ["day", "week", "month", "hour"][rng.below(4) as usize],
            col(rng)
        ),
        1 => format!(
            "date_part('{}', {})",
            ["dow", "day", "hour", "week", "isodow", "doy"][rng.below(6) as usize],
            col(rng)
        ),
        2 => format!("coalesce({}, {}, {})", col(rng), col(rng), lit_ts(rng)),
        3 => format!(
            "CASE WHEN {} THEN 'a' WHEN {} THEN 'b' ELSE {} END",
            st_pred(rng, 1),
            st_pred(rng, 0),
            if rng.chance(0.5) { "'c'" } else { "NULL" }
        ),
        4 => format!("greatest({}, {})", col(rng), col(rng)),
        5 => format!("least(n, {})", rng.below(10)),
        6 => format!("nullif(v, '{}')", rng.pick(&CHANNELS)),
        7 => format!(
            "upper(v) {} '{}%'",
            if rng.chance(0.5) { "LIKE" } else { "ILIKE" },
            &rng.pick(&CHANNELS)[..1]
        ),
        8 => format!("length(v) + {}", rng.below(3)),
        9 => format!("epoch({} - {})", col(rng), col(rng)),
        10 => format!("CASE v WHEN '{}' THEN n ELSE -n END", rng.pick(&CHANNELS)),
        _ => format!("extract(month FROM {})", col(rng)),
    }
}

/// An aggregate over `st`, optionally with FILTER.
fn st_agg(rng: &mut Rng) -> String {
    let col = |rng: &mut Rng| ["s1", "s2", "s3"][rng.below(3) as usize];
    let a = match rng.below(13) {
        0 => "count(*)".to_string(),
        1 => format!("count({})", col(rng)),
        2 => "sum(n)".into(),
        3 => "avg(n)".into(),
        4 => format!(
            "count(DISTINCT {})",
            ["v", "n", "s1", "date_trunc('day', s2)"][rng.below(4) as usize]
        ),
        5 => format!("min({})", col(rng)),
        6 => "max(v)".into(),
        7 => "median(n)".into(),
        8 => format!(
            "quantile_disc({}, {})",
            col(rng),
            ["0.25", "0.5", "0.9"][rng.below(3) as usize]
        ),
        9 => format!("bool_or({})", st_pred(rng, 0)),
        10 => format!("median({} - {})", col(rng), col(rng)),
        11 => format!(
            "quantile_cont(n, {})",
            ["0.25", "0.5", "0.75"][rng.below(3) as usize]
        ),
        _ => "sum(CASE WHEN s1 < s2 THEN n ELSE 0 END)".into(),
    };
    if rng.chance(0.25) && !a.starts_with("count(DISTINCT") {
        format!("{a} FILTER (WHERE {})", st_pred(rng, 1))
    } else {
        a
    }
}

/// The analytics constructs: GROUP BY columns and expressions, HAVING, aggregates with FILTER,
/// scalar functions, joins of two or three tables on the key with aliases.
fn analytics_query(rng: &mut Rng) -> (String, bool) {
    let aggs = |rng: &mut Rng, n: u64| {
        (0..1 + rng.below(n))
            .map(|_| st_agg(rng))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let join_kind = |rng: &mut Rng| {
        ["JOIN", "LEFT JOIN", "FULL JOIN", "RIGHT JOIN", "INNER JOIN"][rng.below(5) as usize]
    };
    match rng.below(8) {
        0 => {
            let g = ["v", "n", "s1", "v, n", "s3 IS NULL"][rng.below(5) as usize];
            (format!("SELECT {g}, {} FROM st WHERE {} GROUP BY {g}", aggs(rng, 4), st_pred(rng, 2)), false)
        }
        1 => {
            let e = st_scalar(rng);
            (format!("SELECT {e} AS g, {} FROM st GROUP BY g", aggs(rng, 3)), false)
        }
        2 => (
            format!(
                "SELECT v, count(*) AS c, sum(n) FROM st GROUP BY v HAVING count(*) > {} ORDER BY c DESC, v",
                rng.below(20_000)
            ),
            true,
        ),
        3 => (
            format!(
                "SELECT b.country, count(a.s1), count(a.s2), count(a.s3), count(*), {} FROM st a {} pr b USING (k) WHERE {} GROUP BY b.country",
                ["sum(b.age)", "median(a.s2 - a.s1)", "avg(b.age)", "count(DISTINCT a.v)"][rng.below(4) as usize],
                join_kind(rng),
                pr_pred(rng, "b.")
            ),
            false,
        ),
        4 => (
            format!(
                "SELECT st.k, pr.k, st.s1, pr.country, {} FROM st {} pr ON st.k = pr.k WHERE {} ORDER BY 1, 2 LIMIT 20",
                st_scalar(rng).replace("s1", "st.s1"),
                join_kind(rng),
                if rng.chance(0.5) { "pr.age > 30".to_string() } else { "st.s1 IS NOT NULL OR pr.country = 'US'".to_string() }
            ),
            true,
        ),
        5 => (
            format!(
                "SELECT count(*), count(x.s1), count(y.age), count(z.s2) FROM st x {} pr y USING (k) {} st z ON x.k = z.k WHERE {}",
                ["JOIN", "LEFT JOIN"][rng.below(2) as usize],
                ["JOIN", "LEFT JOIN"][rng.below(2) as usize],
                ["z.n > 2", "y.age < 40", "x.v = 'sms'", "z.s3 IS NULL"][rng.below(4) as usize]
            ),
            false,
        ),
        6 => (
            format!(
                "SELECT k, {}, {} FROM st WHERE {} ORDER BY k LIMIT 20",
                st_scalar(rng),
                st_scalar(rng),
                st_pred(rng, 2)
            ),
            true,
        ),
        _ => (
            format!("SELECT {} FROM st WHERE {}", aggs(rng, 5), st_pred(rng, 2)),
            false,
        ),
    }
}

fn query(rng: &mut Rng) -> (String, bool) {
    let op = ["INTERSECT", "UNION", "EXCEPT"];
    if rng.chance(0.5) {
        return analytics_query(rng);
    }
    match rng.below(8) {
        0 => (
            format!("SELECT count(*) FROM st WHERE {}", st_pred(rng, 3)),
            false,
        ),
        1 => (
            format!(
                "SELECT count(*) FROM ({} {} {})",
                key_set(rng),
                rng.pick(&op),
                key_set(rng)
            ),
            false,
        ),
        2 => (
            format!(
                "SELECT k FROM ({} {} {}) ORDER BY k LIMIT 20",
                key_set(rng),
                rng.pick(&op),
                key_set(rng)
            ),
            true,
        ),
        3 => (
            format!(
                "SELECT count(*) FROM ({} {} {} {} {})",
                key_set(rng),
                rng.pick(&op),
                key_set(rng),
                rng.pick(&op),
                key_set(rng)
            ),
            false,
        ),
        4 => {
            let (p, q) = (st_pred(rng, 1), st_pred(rng, 1));
            (
                format!(
                    "SELECT k, min(s1), count(*), count(s2), max(s3) FROM (SELECT k, s1, s2, s3 FROM st WHERE {p} UNION ALL SELECT k, s2, s3, s1 FROM st WHERE {q}) GROUP BY k ORDER BY k LIMIT 25"
                ),
                true,
            )
        }
        5 if rng.chance(0.4) => {
            let c = ["ta", "tb"][rng.below(2) as usize];
            (format!("SELECT count(*), count({c}), min({c}), max(ta), min(country), sum(age) FROM pr WHERE {}", pr_pred(rng, "")), false)
        }
        6 if rng.chance(0.4) => (
            format!(
                "SELECT k, ta, tb + INTERVAL '2 days', age, country FROM pr WHERE {} AND {} ORDER BY k LIMIT 15",
                pr_pred(rng, ""),
                pr_pred(rng, "")
            ),
            true,
        ),
        5 => {
            let c = ["s1", "s2", "s3"][rng.below(3) as usize];
            (format!("SELECT count(*), count({c}), min({c}), max({c}), min(v), max(n) FROM st WHERE {}", st_pred(rng, 2)), false)
        }
        6 => (
            format!(
                "SELECT k, s1, s2 + INTERVAL '2 days', n, v FROM st WHERE {} ORDER BY k LIMIT 15",
                st_pred(rng, 2)
            ),
            true,
        ),
        _ => (
            format!(
                "SELECT count(*) FROM st TABLESAMPLE BERNOULLI (100 PERCENT) WHERE {}",
                st_pred(rng, 2)
            ),
            false,
        ),
    }
}

fn render(out: &Output) -> Vec<Vec<Option<String>>> {
    match out {
        Output::Rows(b) => (0..b.num_rows())
            .map(|r| {
                b.columns()
                    .iter()
                    .map(|c| cell_text(c.as_ref(), r))
                    .collect()
            })
            .collect(),
        Output::Done { .. } => Vec::new(),
    }
}

#[test]
fn journeydb_equals_duckdb_on_random_queries() {
    let seed: u64 = std::env::var("DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("differential test seed {seed} (DIFF_SEED={seed} replays it)");
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(build(dir.path(), seed));
    let engine = Engine::new(db.clone());
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let queries: Vec<(String, bool)> = (0..QUERIES).map(|_| query(&mut rng)).collect();

    let spec = serde_json::json!({
        "tables": [
            {"name": "st", "csv": dir.path().join("st.csv"), "key": "k",
             "columns": [["s1", "TIMESTAMP", "min"], ["s2", "TIMESTAMP", "min"], ["s3", "TIMESTAMP", "min"], ["n", "BIGINT", "sum"], ["v", "VARCHAR", "max"]]},
            {"name": "pr", "csv": dir.path().join("pr.csv"), "key": "k",
             "columns": [["country", "VARCHAR", "min"], ["age", "BIGINT", "min"], ["ta", "TIMESTAMP", "min"], ["tb", "TIMESTAMP", "min"]]}
        ],
        "queries": queries.iter().map(|q| q.0.clone()).collect::<Vec<_>>(),
    });
    std::fs::write(dir.path().join("spec.json"), spec.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/duckdb_oracle.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(dir.path())
        .status();
    let ok = status.as_ref().is_ok_and(|s| s.success());
    assert!(ok, "the DuckDB oracle did not run ({status:?}); scripts/test.sh installs the Python duckdb package");
    let results: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    assert_eq!(results.len(), queries.len());

    let mut failures = String::new();
    let mut rows_compared = 0usize;
    for ((sql, ordered), want) in queries.iter().zip(&results) {
        if let Some(err) = want.get("error") {
            let _ = writeln!(
                failures,
                "DuckDB rejected a generated query ({err}):\n  {sql}\n"
            );
            continue;
        }
        let mut expected: Vec<Vec<Option<String>>> = want["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .collect();
        let got = match engine.execute_one(sql) {
            Ok(o) => o,
            Err(e) => {
                let _ = writeln!(failures, "journeydb failed ({e}):\n  {sql}\n");
                continue;
            }
        };
        if !sql.contains(" LIMIT ") {
            // LIMIT 0 (how drivers ask for a result's columns) answers no rows with the same columns.
            let fields = |o: &Output| match o {
                Output::Rows(b) => (b.num_rows(), b.schema().fields().clone()),
                other => panic!("not rows: {other:?}"),
            };
            match engine.execute_one(&format!("{sql} LIMIT 0")) {
                Ok(none) if fields(&none) == (0, fields(&got).1) => {}
                Ok(none) => {
                    let _ = writeln!(failures, "LIMIT 0 gave {:?}:\n  {sql}\n", fields(&none));
                }
                Err(e) => {
                    let _ = writeln!(failures, "LIMIT 0 failed ({e}):\n  {sql}\n");
                }
            }
        }
        let mut got = render(&got);
        if !ordered {
            got.sort();
            expected.sort();
        }
        rows_compared += got.len();
        if got != expected {
            let show = |rows: &[Vec<Option<String>>]| {
                rows.iter()
                    .take(5)
                    .map(|r| format!("{r:?}"))
                    .collect::<Vec<_>>()
                    .join("\n    ")
            };
            let _ = writeln!(
                failures,
                "mismatch ({} vs {} rows):\n  {sql}\n  duckdb:\n    {}\n  journeydb:\n    {}\n",
                expected.len(),
                got.len(),
                show(&expected),
                show(&got)
            );
        }
    }
    assert!(failures.is_empty(), "seed {seed}:\n{failures}");
    println!(
        "{} queries agree ({rows_compared} rows compared)",
        queries.len()
    );
}
