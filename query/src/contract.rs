//! Data contracts: what a table promises its readers, checked before data is committed and after a
//! table is published.
//!
//! A contract (TOML) belongs to a table name and is kept in the database's directory as
//! `contracts/<table>.toml` (written to a temporary file, synced, renamed). It is set with
//! `ALTER TABLE t SET CONTRACT '<toml>'` (or `journeydb contract set`), removed with
//! `ALTER TABLE t RESET CONTRACT`, shown with `SHOW CONTRACT t` and run on demand with
//! `CHECK CONTRACT t` (or `journeydb contract check`).
//!
//! ```toml
//! owners = ["growth@example.com"]
//! stakeholders = ["crm@example.com"]
//! sample_percent = 10                 # Bernoulli sample of the table-level checks (default 10)
//! freshness = { column = "updated_at", max_age_hours = 48 }
//! rows = { min = 1, min_ratio = 0.5, max_ratio = 2.0 }   # ratios: to the version replaced
//! alert = { command = "notify.sh", webhook = "http://alerts.internal/hook" }
//!
//! [[column]]
//! name = "age"
//! type = "bigint"                     # timestamp, bigint, double, boolean, varchar
//! not_null = true
//! min = 0                             # numbers; timestamps as 'YYYY-MM-DD[ HH:MM:SS]'
//! max = 130
//!
//! [[column]]
//! name = "tier"
//! values = ["gold", "silver"]
//!
//! [[invariant]]
//! name = "exit after entry"
//! sql = "SELECT count(*) FROM {table} WHERE exited_at < entered_at"   # must be 0
//! ```
//!
//! **Pre-flight** (refused, nothing committed, with a report: rule, rows, examples): the column
//! rules on the rows of every append, `INSERT`, `COPY .. FROM` and bulk load (a column the write
//! does not carry is not checked: it keeps its value), and every rule on the staged result of a
//! `CREATE TABLE AS` before it replaces the table. **Post-publish**: after a swap or a
//! `CREATE OR REPLACE .. AS`, the table-level checks run on a Bernoulli sample of the published
//! table; a failure runs the alert: the command (through `sh -c`, the JSON report on its standard
//! input) and an HTTP POST of the report to the webhook, naming the owners and stakeholders.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use arrow_array::{Array, ArrayRef, RecordBatch};
use serde::{Deserialize, Serialize};
use sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{QueryError, Result};

/// Examples a violation lists, at most.
pub const EXAMPLES_MAX: usize = 5;

/// A table's contract.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// Who owns the table (named in alerts).
    #[serde(default)]
    pub owners: Vec<String>,
    /// Who depends on it (named in alerts).
    #[serde(default)]
    pub stakeholders: Vec<String>,
    /// Percentage of the table the table-level checks read (Bernoulli).
    #[serde(default = "default_sample")]
    pub sample_percent: f64,
    /// The newest timestamp of a column must be recent.
    #[serde(default)]
    pub freshness: Option<Freshness>,
    /// Row count bounds.
    #[serde(default)]
    pub rows: Option<RowBounds>,
    /// What runs when a post-publish check fails.
    #[serde(default)]
    pub alert: Option<Alert>,
    /// Column rules.
    #[serde(default, rename = "column")]
    pub columns: Vec<ColumnRule>,
    /// SQL counts that must be zero.
    #[serde(default, rename = "invariant")]
    pub invariants: Vec<Invariant>,
}

fn default_sample() -> f64 {
    10.0
}

/// `freshness = { column, max_age_hours }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freshness {
    /// A TIMESTAMP column.
    pub column: String,
    /// Its newest value may be at most this old.
    pub max_age_hours: f64,
}

/// `rows = { min, max, min_ratio, max_ratio }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowBounds {
    /// Fewest rows.
    #[serde(default)]
    pub min: Option<u64>,
    /// Most rows.
    #[serde(default)]
    pub max: Option<u64>,
    /// Fewest rows relative to the version replaced.
    #[serde(default)]
    pub min_ratio: Option<f64>,
    /// Most rows relative to the version replaced.
    #[serde(default)]
    pub max_ratio: Option<f64>,
}

/// `alert = { command, webhook }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// A shell command, given the JSON report on standard input.
    #[serde(default)]
    pub command: Option<String>,
    /// An `http://` or `https://` URL the JSON report is POSTed to.
    #[serde(default)]
    pub webhook: Option<String>,
}

/// A bound of a column: a number, or a timestamp as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    /// A number.
    Number(f64),
    /// A timestamp (`YYYY-MM-DD[ HH:MM:SS]`).
    Text(String),
}

/// `[[column]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRule {
    /// The column.
    pub name: String,
    /// Its type, if promised.
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    /// No NULLs.
    #[serde(default)]
    pub not_null: bool,
    /// Smallest value.
    #[serde(default)]
    pub min: Option<Bound>,
    /// Largest value.
    #[serde(default)]
    pub max: Option<Bound>,
    /// The only values allowed (VARCHAR).
    #[serde(default)]
    pub values: Option<Vec<String>>,
}

/// `[[invariant]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invariant {
    /// What it checks.
    pub name: String,
    /// A query returning one count that must be 0; `{table}` is the (sampled) table.
    pub sql: String,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// The rule, as a reader would say it.
    pub rule: String,
    /// Rows breaking it (in the rows checked).
    pub rows: u64,
    /// Some of them (their keys), or the value found.
    pub examples: Vec<String>,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The table.
    pub table: String,
    /// `pre-flight`, `post-publish` or `check`.
    pub phase: String,
    /// Rows checked (the sample's, for table-level checks).
    pub rows_checked: u64,
    /// The owners and stakeholders of the contract.
    pub owners: Vec<String>,
    /// See `owners`.
    pub stakeholders: Vec<String>,
    /// What broke (empty: the contract holds).
    pub violations: Vec<Violation>,
}

impl Report {
    fn new(table: &str, phase: &str, c: &Contract) -> Report {
        Report {
            table: table.to_string(),
            phase: phase.to_string(),
            rows_checked: 0,
            owners: c.owners.clone(),
            stakeholders: c.stakeholders.clone(),
            violations: Vec::new(),
        }
    }

    /// The report as the error of a refused write.
    pub fn refusal(&self) -> QueryError {
        let lines: Vec<String> = self
            .violations
            .iter()
            .map(|v| {
                format!(
                    "{} ({} rows{}{})",
                    v.rule,
                    v.rows,
                    if v.examples.is_empty() { "" } else { ", e.g. " },
                    v.examples.join(", ")
                )
            })
            .collect();
        QueryError::ContractViolated(format!(
            "the write to {} breaks its contract; nothing was committed: {}",
            self.table,
            lines.join("; ")
        ))
    }

    /// JSON, as alerts send it.
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl Contract {
    /// Reads and checks a contract's text.
    pub fn parse(text: &str) -> Result<Contract> {
        let c: Contract =
            toml::from_str(text).map_err(|e| QueryError::InvalidValue(format!("contract: {e}")))?;
        if !(c.sample_percent > 0.0 && c.sample_percent <= 100.0) {
            return Err(QueryError::InvalidValue(
                "contract: sample_percent must be in (0, 100]".into(),
            ));
        }
        for r in &c.columns {
            if let Some(t) = &r.ty {
                if type_name(t).is_none() {
                    return Err(QueryError::InvalidValue(format!(
                        "contract: column {} type {t}: use timestamp, bigint, double, boolean or \
                         varchar",
                        r.name
                    )));
                }
            }
            for b in [&r.min, &r.max].into_iter().flatten() {
                if let Bound::Text(s) = b {
                    crate::types::parse_timestamp(s).map_err(|e| {
                        QueryError::InvalidValue(format!("contract: column {}: {e}", r.name))
                    })?;
                }
            }
        }
        for i in &c.invariants {
            if !i.sql.contains("{table}") {
                return Err(QueryError::InvalidValue(format!(
                    "contract: invariant {:?} must read {{table}}",
                    i.name
                )));
            }
        }
        Ok(c)
    }

    /// The column rules on `batch` (key column `key`), added to `report`.
    pub fn check_batch(&self, batch: &RecordBatch, key: &str, report: &mut Report) {
        report.rows_checked += batch.num_rows() as u64;
        let keys = batch.column_by_name(key);
        for rule in &self.columns {
            let Some(col) = batch.column_by_name(&rule.name) else {
                continue;
            };
            if rule.not_null {
                let bad: Vec<usize> = (0..col.len()).filter(|&i| col.is_null(i)).collect();
                add(report, format!("{} is not null", rule.name), &bad, keys);
            }
            let (min, max) = (bound(&rule.min), bound(&rule.max));
            if min.is_some() || max.is_some() {
                let bad: Vec<usize> = (0..col.len())
                    .filter(|&i| {
                        number(col, i).is_some_and(|v| {
                            min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m)
                        })
                    })
                    .collect();
                let range = format!(
                    "{} in [{}, {}]",
                    rule.name,
                    rule.min.as_ref().map_or("-inf".into(), show),
                    rule.max.as_ref().map_or("+inf".into(), show)
                );
                add(report, range, &bad, keys);
            }
            if let (Some(values), Some(s)) = (
                &rule.values,
                col.as_any().downcast_ref::<arrow_array::StringArray>(),
            ) {
                let bad: Vec<usize> = (0..s.len())
                    .filter(|&i| !s.is_null(i) && !values.iter().any(|v| v == s.value(i)))
                    .collect();
                add(report, format!("{} in {values:?}", rule.name), &bad, keys);
            }
        }
    }

    /// The column types the contract promises, against the table's (name, type) columns.
    pub fn check_types(&self, columns: &[(String, String)], report: &mut Report) {
        for rule in &self.columns {
            let Some(want) = rule.ty.as_deref().and_then(type_name) else {
                continue;
            };
            match columns.iter().find(|(n, _)| n == &rule.name) {
                None => report.violations.push(Violation {
                    rule: format!("column {} exists", rule.name),
                    rows: 0,
                    examples: Vec::new(),
                }),
                Some((_, have)) if !have.eq_ignore_ascii_case(want) => {
                    report.violations.push(Violation {
                        rule: format!("{} is {want}", rule.name),
                        rows: 0,
                        examples: vec![have.clone()],
                    })
                }
                Some(_) => {}
            }
        }
    }
}

fn type_name(t: &str) -> Option<&'static str> {
    Some(match t.to_ascii_lowercase().as_str() {
        "timestamp" => "timestamp",
        "bigint" | "int8" | "int64" => "bigint",
        "double" | "float8" | "double precision" => "double",
        "boolean" | "bool" => "boolean",
        "varchar" | "text" | "string" => "varchar",
        _ => return None,
    })
}

fn show(b: &Bound) -> String {
    match b {
        Bound::Number(n) => n.to_string(),
        Bound::Text(s) => s.clone(),
    }
}

/// A bound as a number (timestamps as µs since the epoch).
fn bound(b: &Option<Bound>) -> Option<f64> {
    match b.as_ref()? {
        Bound::Number(n) => Some(*n),
        Bound::Text(s) => crate::types::parse_timestamp(s).ok().map(|us| us as f64),
    }
}

/// Value `i` of a numeric or timestamp column as a number.
fn number(col: &ArrayRef, i: usize) -> Option<f64> {
    use arrow_array::{Float64Array, Int64Array, TimestampMicrosecondArray};
    if col.is_null(i) {
        return None;
    }
    let a = col.as_any();
    if let Some(x) = a.downcast_ref::<Int64Array>() {
        return Some(x.value(i) as f64);
    }
    if let Some(x) = a.downcast_ref::<Float64Array>() {
        return Some(x.value(i));
    }
    a.downcast_ref::<TimestampMicrosecondArray>()
        .map(|x| x.value(i) as f64)
}

fn key_text(keys: Option<&ArrayRef>, i: usize) -> String {
    use arrow_array::{Int64Array, StringArray};
    let Some(k) = keys else {
        return format!("row {i}");
    };
    if let Some(s) = k.as_any().downcast_ref::<StringArray>() {
        return s.value(i).to_string();
    }
    if let Some(n) = k.as_any().downcast_ref::<Int64Array>() {
        return n.value(i).to_string();
    }
    format!("row {i}")
}

/// Adds the rows `bad` of a rule to the report (merging with the rule's earlier batches).
fn add(report: &mut Report, rule: String, bad: &[usize], keys: Option<&ArrayRef>) {
    if bad.is_empty() {
        return;
    }
    let idx = match report.violations.iter().position(|v| v.rule == rule) {
        Some(i) => i,
        None => {
            report.violations.push(Violation {
                rule,
                rows: 0,
                examples: Vec::new(),
            });
            report.violations.len() - 1
        }
    };
    if let Some(v) = report.violations.get_mut(idx) {
        v.rows += bad.len() as u64;
        for &i in bad
            .iter()
            .take(EXAMPLES_MAX.saturating_sub(v.examples.len()))
        {
            v.examples.push(key_text(keys, i));
        }
    }
}

/// The contracts of one database, by table name, kept in `<dir>/contracts/`.
#[derive(Debug, Default)]
pub struct Contracts {
    dir: Option<PathBuf>,
    by_table: RwLock<HashMap<String, Arc<Contract>>>,
}

impl Contracts {
    /// The contracts kept in `db_dir/contracts/` (none if it does not exist; an unreadable
    /// contract is reported and left out).
    pub fn open(db_dir: &Path) -> Contracts {
        let dir = db_dir.join("contracts");
        let mut by_table = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(table) = name.strip_suffix(".toml") else {
                    continue;
                };
                match std::fs::read_to_string(e.path())
                    .map_err(|e| QueryError::InvalidValue(e.to_string()))
                    .and_then(|t| Contract::parse(&t))
                {
                    Ok(c) => {
                        by_table.insert(table.to_string(), Arc::new(c));
                    }
                    Err(err) => eprintln!("journeydb: contract {}: {err}", e.path().display()),
                }
            }
        }
        Contracts {
            dir: Some(dir),
            by_table: RwLock::new(by_table),
        }
    }

    /// The contract of `table`, if any.
    pub fn get(&self, table: &str) -> Option<Arc<Contract>> {
        self.by_table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(table)
            .cloned()
    }

    /// The text of `table`'s contract file.
    pub fn text(&self, table: &str) -> Option<String> {
        let dir = self.dir.as_ref()?;
        std::fs::read_to_string(dir.join(format!("{table}.toml"))).ok()
    }

    /// Sets (`Some`) or removes `table`'s contract, durably.
    pub fn set(&self, table: &str, text: Option<&str>) -> Result<()> {
        use std::io::Write;
        let dir = self
            .dir
            .as_ref()
            .ok_or_else(|| QueryError::Unsupported("contracts on this database".into()))?;
        let io = |e: std::io::Error| QueryError::Internal(format!("contracts: {e}"));
        let path = dir.join(format!("{table}.toml"));
        let mut map = self.by_table.write().unwrap_or_else(|p| p.into_inner());
        match text {
            Some(text) => {
                let c = Contract::parse(text)?;
                std::fs::create_dir_all(dir).map_err(io)?;
                let tmp = dir.join(format!("{table}.toml.tmp"));
                let mut f = std::fs::File::create(&tmp).map_err(io)?;
                f.write_all(text.as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
                std::fs::rename(&tmp, &path).map_err(io)?;
                map.insert(table.to_string(), Arc::new(c));
            }
            None => {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(e)),
                }
                map.remove(table);
            }
        }
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }
}

/// Sends a failed post-publish report to the contract's alert: the command, then the webhook.
/// Failures to deliver are reported on standard error (the publish itself stands).
pub fn alert(c: &Contract, report: &Report) {
    let Some(a) = &c.alert else {
        return;
    };
    let json = report.json();
    if let Some(cmd) = &a.command {
        let run = || -> std::io::Result<std::process::ExitStatus> {
            use std::io::Write;
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .env("JOURNEYDB_TABLE", &report.table)
                .stdin(std::process::Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(json.as_bytes())?;
            }
            child.wait()
        };
        match run() {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!(
                "journeydb: contract alert command for {}: {s}",
                report.table
            ),
            Err(e) => eprintln!(
                "journeydb: contract alert command for {}: {e}",
                report.table
            ),
        }
    }
    if let Some(url) = &a.webhook {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .build()
            .into();
        let sent = agent
            .post(url)
            .header("content-type", "application/json")
            .send(json.as_bytes());
        if let Err(e) = sent {
            eprintln!(
                "journeydb: contract webhook {url} for {}: {e}",
                report.table
            );
        }
    }
}

/// A contract statement (PostgreSQL's grammar has none; read from the token stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractCommand {
    /// `ALTER TABLE t SET CONTRACT '<toml>'`.
    Set {
        /// The table.
        table: String,
        /// The contract.
        text: String,
    },
    /// `ALTER TABLE t RESET CONTRACT`.
    Reset {
        /// The table.
        table: String,
    },
    /// `SHOW CONTRACT t`.
    Show {
        /// The table.
        table: String,
    },
    /// `CHECK CONTRACT t`.
    Check {
        /// The table.
        table: String,
    },
}

impl std::fmt::Display for ContractCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContractCommand::Set { table, text } => write!(
                f,
                "ALTER TABLE {table} SET CONTRACT '{}'",
                text.replace('\'', "''")
            ),
            ContractCommand::Reset { table } => write!(f, "ALTER TABLE {table} RESET CONTRACT"),
            ContractCommand::Show { table } => write!(f, "SHOW CONTRACT {table}"),
            ContractCommand::Check { table } => write!(f, "CHECK CONTRACT {table}"),
        }
    }
}

/// The contract statement `tokens` spell, if they are one.
pub fn parse(tokens: &[TokenWithSpan]) -> Result<Option<ContractCommand>> {
    let solid: Vec<&Token> = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF | Token::SemiColon))
        .collect();
    let word = |i: usize| match solid.get(i) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    };
    let name = |i: usize| match solid.get(i) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Ok(w.value.to_ascii_lowercase()),
        Some(Token::Word(w)) => Ok(w.value.clone()),
        _ => Err(QueryError::Syntax("expected a table name".into())),
    };
    let cmd = match (word(0).as_deref(), word(1).as_deref()) {
        (Some("ALTER"), Some("TABLE")) => match (word(3).as_deref(), word(4).as_deref()) {
            (Some("SET"), Some("CONTRACT")) => match solid.get(5) {
                Some(Token::SingleQuotedString(s))
                | Some(Token::DollarQuotedString(sqlparser::ast::DollarQuotedString {
                    value: s,
                    ..
                })) => (
                    ContractCommand::Set {
                        table: name(2)?,
                        text: s.clone(),
                    },
                    6,
                ),
                _ => {
                    return Err(QueryError::Syntax(
                        "expected ALTER TABLE t SET CONTRACT '<toml>'".into(),
                    ))
                }
            },
            (Some("RESET"), Some("CONTRACT")) => (ContractCommand::Reset { table: name(2)? }, 5),
            _ => return Ok(None),
        },
        (Some("SHOW"), Some("CONTRACT")) => (ContractCommand::Show { table: name(2)? }, 3),
        (Some("CHECK"), Some("CONTRACT")) => (ContractCommand::Check { table: name(2)? }, 3),
        _ => return Ok(None),
    };
    if solid.len() > cmd.1 {
        return Err(QueryError::Syntax(format!(
            "unexpected text after {}; a contract statement runs on its own",
            first_words(&cmd.0)
        )));
    }
    Ok(Some(cmd.0))
}

fn first_words(c: &ContractCommand) -> String {
    c.to_string()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The columns a contract statement returns (`None`: no rows).
pub fn describe(cmd: &ContractCommand) -> Option<Vec<(String, crate::types::DType)>> {
    use crate::types::DType;
    match cmd {
        ContractCommand::Show { .. } => Some(vec![
            ("table_name".into(), DType::Varchar),
            ("contract".into(), DType::Varchar),
        ]),
        ContractCommand::Check { .. } => Some(vec![
            ("rule".into(), DType::Varchar),
            ("rows".into(), DType::Bigint),
            ("examples".into(), DType::Varchar),
        ]),
        _ => None,
    }
}

/// The row count bounds `rows` breaks (`previous`: the rows of the version replaced).
fn row_violations(bounds: &RowBounds, rows: u64, previous: Option<u64>) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut bad = |rule: String| {
        out.push(Violation {
            rule,
            rows,
            examples: vec![format!("{rows} rows")],
        })
    };
    if bounds.min.is_some_and(|m| rows < m) || bounds.max.is_some_and(|m| rows > m) {
        bad(format!(
            "rows in [{}, {}]",
            bounds.min.unwrap_or(0),
            bounds.max.map_or("+inf".into(), |m| m.to_string())
        ));
    }
    if let Some(prev) = previous.filter(|p| *p > 0) {
        let ratio = rows as f64 / prev as f64;
        if bounds.min_ratio.is_some_and(|m| ratio < m)
            || bounds.max_ratio.is_some_and(|m| ratio > m)
        {
            bad(format!(
                "rows relative to the version replaced ({prev}) in [{}, {}], got {ratio:.3}",
                bounds.min_ratio.unwrap_or(0.0),
                bounds.max_ratio.map_or("+inf".into(), |m| m.to_string())
            ));
        }
    }
    out
}

fn quoted(table: &str) -> String {
    format!("\"{}\"", table.replace('"', "\"\""))
}

fn one_int(b: &RecordBatch) -> Option<i64> {
    let c = b.columns().first()?;
    if c.is_empty() || c.is_null(0) {
        return None;
    }
    number(c, 0).map(|v| v as i64)
}

impl crate::Engine {
    /// Runs a contract statement.
    pub(crate) fn contract_command(&self, cmd: &ContractCommand) -> Result<crate::Output> {
        let exists = |t: &str| {
            self.database()
                .snapshot()
                .table(t)
                .map(|_| ())
                .map_err(|_| QueryError::TableNotFound(t.to_string()))
        };
        let done = |tag: &str| crate::Output::Done {
            tag: tag.into(),
            rows: 0,
        };
        match cmd {
            ContractCommand::Set { table, text } => {
                exists(table)?;
                self.contracts.set(table, Some(text))?;
                Ok(done("ALTER TABLE"))
            }
            ContractCommand::Reset { table } => {
                self.contracts.set(table, None)?;
                Ok(done("ALTER TABLE"))
            }
            ContractCommand::Show { table } => {
                let text = self.contracts.text(table);
                let schema = Arc::new(arrow_schema::Schema::new(vec![
                    arrow_schema::Field::new("table_name", arrow_schema::DataType::Utf8, false),
                    arrow_schema::Field::new("contract", arrow_schema::DataType::Utf8, true),
                ]));
                Ok(crate::Output::Rows(RecordBatch::try_new(
                    schema,
                    vec![
                        Arc::new(arrow_array::StringArray::from(vec![table.clone()])),
                        Arc::new(arrow_array::StringArray::from(vec![text])),
                    ],
                )?))
            }
            ContractCommand::Check { table } => {
                exists(table)?;
                let contract = self.contracts.get(table).ok_or_else(|| {
                    QueryError::InvalidValue(format!("table {table} has no contract"))
                })?;
                let r = self.table_report(table, &contract, "check", None)?;
                let schema = Arc::new(arrow_schema::Schema::new(vec![
                    arrow_schema::Field::new("rule", arrow_schema::DataType::Utf8, false),
                    arrow_schema::Field::new("rows", arrow_schema::DataType::Int64, false),
                    arrow_schema::Field::new("examples", arrow_schema::DataType::Utf8, false),
                ]));
                let v = &r.violations;
                Ok(crate::Output::Rows(RecordBatch::try_new(
                    schema,
                    vec![
                        Arc::new(arrow_array::StringArray::from(
                            v.iter().map(|v| v.rule.clone()).collect::<Vec<_>>(),
                        )),
                        Arc::new(arrow_array::Int64Array::from(
                            v.iter().map(|v| v.rows as i64).collect::<Vec<_>>(),
                        )),
                        Arc::new(arrow_array::StringArray::from(
                            v.iter().map(|v| v.examples.join(", ")).collect::<Vec<_>>(),
                        )),
                    ],
                )?))
            }
        }
    }

    /// True when `table` has a data contract (its appends and loads are checked against it).
    pub fn has_contract(&self, table: &str) -> bool {
        self.contracts.get(table).is_some()
    }

    /// Pre-flight of rows about to be appended or loaded into `table`: refused with the report
    /// when they break its contract's column rules.
    pub fn check_append(&self, table: &str, batch: &RecordBatch) -> Result<()> {
        let Some(c) = self.contracts.get(table) else {
            return Ok(());
        };
        let key = match self.database().snapshot().table(table) {
            Ok(t) => t.schema().key_name.clone(),
            Err(_) => return Ok(()),
        };
        let mut r = Report::new(table, "pre-flight", &c);
        c.check_batch(batch, &key, &mut r);
        if r.violations.is_empty() {
            Ok(())
        } else {
            Err(r.refusal())
        }
    }

    /// Pre-flight of a `CREATE TABLE AS` staged in `staged`, against `target`'s contract: every
    /// rule, on the whole staged table, rows relative to the table it replaces.
    pub(crate) fn preflight_staged(&self, target: &str, staged: &str) -> Result<()> {
        let Some(c) = self.contracts.get(target) else {
            return Ok(());
        };
        let previous = self
            .database()
            .snapshot()
            .table(target)
            .ok()
            .map(|t| t.row_count());
        let whole = Contract {
            sample_percent: 100.0,
            ..(*c).clone()
        };
        let mut r = self.table_report(staged, &whole, "pre-flight", previous)?;
        r.table = target.to_string();
        if r.violations.is_empty() {
            Ok(())
        } else {
            Err(r.refusal())
        }
    }

    /// Commits `ops` (swaps, renames, replaces), then runs the post-publish checks of every
    /// name they published that has a contract: a failure alerts (the publish stands).
    pub(crate) fn publish(&self, ops: &[journeydb_storage::CatalogOp]) -> Result<()> {
        use journeydb_storage::CatalogOp as Op;
        let names: Vec<String> = ops
            .iter()
            .flat_map(|op| match op {
                Op::Swap { a, b } => vec![a.clone(), b.clone()],
                Op::Rename { to, .. } => vec![to.clone()],
                Op::Replace { target, .. } => vec![target.clone()],
                _ => Vec::new(),
            })
            .filter(|n| self.contracts.get(n).is_some())
            .collect();
        let snap = self.database().snapshot();
        let before: Vec<(String, Option<u64>)> = names
            .iter()
            .map(|n| (n.clone(), snap.table(n).ok().map(|t| t.row_count())))
            .collect();
        drop(snap);
        self.database()
            .commit(ops)
            .map_err(crate::engine::map_storage)?;
        // Synchronous: the statement returns once its checks ran (and any alert was sent), so a
        // caller that closes the database right after does not race a check still reading it.
        for (table, previous) in before {
            self.post_publish(&table, previous);
        }
        Ok(())
    }

    /// A swap of two tables, then their post-publish checks (the native protocol's Swap).
    pub fn swap(&self, a: &str, b: &str) -> Result<()> {
        self.publish(&[journeydb_storage::CatalogOp::Swap {
            a: a.to_string(),
            b: b.to_string(),
        }])
    }

    /// The post-publish checks of `table` (which replaced a version of `previous` rows); a
    /// failure runs the alert. Returns the report.
    pub fn post_publish(&self, table: &str, previous: Option<u64>) -> Option<Report> {
        let c = self.contracts.get(table)?;
        let r = match self.table_report(table, &c, "post-publish", previous) {
            Ok(r) => r,
            Err(e) => {
                let mut r = Report::new(table, "post-publish", &c);
                r.violations.push(Violation {
                    rule: "the checks run".into(),
                    rows: 0,
                    examples: vec![e.to_string()],
                });
                r
            }
        };
        if !r.violations.is_empty() {
            alert(&c, &r);
        }
        Some(r)
    }

    /// Every table-level rule of `c` on `table` (its sample), rows relative to `previous`.
    pub(crate) fn table_report(
        &self,
        table: &str,
        c: &Contract,
        phase: &str,
        previous: Option<u64>,
    ) -> Result<Report> {
        let mut r = Report::new(table, phase, c);
        let t = self
            .database()
            .snapshot()
            .table(table)
            .map_err(|_| QueryError::TableNotFound(table.to_string()))?;
        let columns: Vec<(String, String)> = t
            .schema()
            .columns
            .iter()
            .map(|col| {
                let ty: crate::types::DType = col.ty.into();
                (col.name.clone(), ty.name().to_ascii_lowercase())
            })
            .collect();
        c.check_types(&columns, &mut r);
        let sample = if c.sample_percent >= 100.0 {
            String::new()
        } else {
            format!(" TABLESAMPLE BERNOULLI ({})", c.sample_percent)
        };
        let key = t.schema().key_name.clone();
        for b in self.query_stream(&format!("SELECT * FROM {}{sample}", quoted(table)))? {
            c.check_batch(&b?, &key, &mut r);
        }
        if let Some(bounds) = &c.rows {
            r.violations
                .extend(row_violations(bounds, t.row_count(), previous));
        }
        if let Some(f) = &c.freshness {
            let b = self.query(&format!(
                "SELECT max({}) FROM {}",
                quoted(&f.column),
                quoted(table)
            ))?;
            let newest = one_int(&b);
            let now = crate::engine::now_epoch_us();
            let limit = (f.max_age_hours * 3_600_000_000.0) as i64;
            if newest.is_none_or(|n| now - n > limit) {
                r.violations.push(Violation {
                    rule: format!("newest {} at most {} hours old", f.column, f.max_age_hours),
                    rows: 0,
                    examples: vec![
                        newest.map_or("no value".into(), crate::types::format_timestamp)
                    ],
                });
            }
        }
        for inv in &c.invariants {
            let sql = inv.sql.replace(
                "{table}",
                &format!("(SELECT * FROM {}{sample}) AS sampled", quoted(table)),
            );
            let n = self.query(&sql).map(|b| one_int(&b).unwrap_or(0));
            match n {
                Ok(0) => {}
                Ok(n) => r.violations.push(Violation {
                    rule: format!("invariant {}", inv.name),
                    rows: n.unsigned_abs(),
                    examples: Vec::new(),
                }),
                Err(e) => r.violations.push(Violation {
                    rule: format!("invariant {}", inv.name),
                    rows: 0,
                    examples: vec![e.to_string()],
                }),
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    #[test]
    fn column_rules_report_rows_and_example_keys() {
        let c = Contract::parse(
            "[[column]]\nname = \"age\"\nnot_null = true\nmin = 0\nmax = 130\n\
             [[column]]\nname = \"tier\"\nvalues = [\"gold\"]\n",
        )
        .unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("age", DataType::Int64, true),
            Field::new("tier", DataType::Utf8, true),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
                Arc::new(Int64Array::from(vec![Some(5), None, Some(200), Some(-1)])),
                Arc::new(StringArray::from(vec![
                    Some("gold"),
                    Some("tin"),
                    None,
                    Some("gold"),
                ])),
            ],
        )
        .unwrap();
        let mut r = Report::new("t", "pre-flight", &c);
        c.check_batch(&b, "k", &mut r);
        let got: Vec<(String, u64, Vec<String>)> = r
            .violations
            .iter()
            .map(|v| (v.rule.clone(), v.rows, v.examples.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("age is not null".into(), 1, vec!["b".into()]),
                ("age in [0, 130]".into(), 2, vec!["c".into(), "d".into()]),
                ("tier in [\"gold\"]".into(), 1, vec!["b".into()]),
            ]
        );
        assert!(Contract::parse("sample_percent = 0").is_err());
        assert!(Contract::parse("[[invariant]]\nname = \"x\"\nsql = \"SELECT 1\"").is_err());
        assert!(Contract::parse("colour = 1").is_err());
    }
}
