//! One run of a journey: the definition compiled into set operations over the state table, the
//! transitions folded in with MIN, a sampled consistency check, and an atomic swap.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::DataType;
use journeydb_client::{Reply, Session};

use crate::def::{col, Criterion, DefError, Journey, StepKind};

/// Why a run could not be made.
#[derive(Debug)]
pub enum RunError {
    /// The definition does not fit the database (unknown table or column, bad condition).
    Def(DefError),
    /// A statement failed.
    Sql {
        /// The statement.
        sql: String,
        /// The error.
        message: String,
    },
    /// The state table exists with other columns than the definition makes.
    StateMismatch(String),
    /// The run's time is earlier than the latest time already in the state.
    Backwards {
        /// The run's time (µs).
        now_us: i64,
        /// The latest stamp in the state (µs).
        last_us: i64,
    },
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Def(e) => write!(f, "{e}"),
            RunError::Sql { sql, message } => write!(f, "{message}\n  in: {sql}"),
            RunError::StateMismatch(m) => f.write_str(m),
            RunError::Backwards { now_us, last_us } => write!(
                f,
                "the run's time {} is earlier than the latest time in the state ({}); a run may \
                 not go back in time unless it is a deliberate backfill (--allow-backfill)",
                crate::value::timestamp_text(*now_us),
                crate::value::timestamp_text(*last_us)
            ),
        }
    }
}

impl std::error::Error for RunError {}

/// What one run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Passes over the state (transitions cascade: an expired wait can lead straight into a
    /// decision and an activation in the same run).
    pub passes: usize,
    /// Customers newly stamped, per state column, in funnel order (zero counts left out).
    pub transitions: Vec<(String, u64)>,
    /// Invalid rows counted on the sample, per invariant class.
    pub violations: Vec<(String, u64)>,
    /// Whether the new state was swapped in (false when the check failed).
    pub swapped: bool,
    /// The run's activations: (customer key, step column, channel).
    pub activations: Vec<(String, String, String)>,
    /// Statements run.
    pub statements: usize,
    /// Wall time.
    pub elapsed: Duration,
}

impl RunReport {
    /// Customers stamped in total.
    pub fn total_transitions(&self) -> u64 {
        self.transitions.iter().map(|(_, n)| n).sum()
    }
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's time, in microseconds since the epoch (UTC).
    pub now_us: i64,
    /// Percentage of rows the consistency check samples.
    pub check_percent: f64,
    /// Allow a run earlier than the latest time already stamped in the state (a deliberate
    /// backfill); refused otherwise.
    pub allow_backfill: bool,
}

struct Ctx<'a> {
    s: &'a mut dyn Session,
    statements: usize,
}

impl Ctx<'_> {
    fn run(&mut self, sql: &str) -> Result<Reply, RunError> {
        self.statements += 1;
        self.s.run(sql).map_err(|e| RunError::Sql {
            sql: sql.to_string(),
            message: e.to_string(),
        })
    }
}

pub use crate::value::ts_literal;

/// The compiled journey: criteria as key-set SQL, table names, and the state's key type.
pub struct Compiled<'j> {
    /// The definition.
    pub j: &'j Journey,
    keys: BTreeMap<String, String>,
    key_type: &'static str,
    now: String,
    next: String,
    /// Criteria evaluated once for the run: (table, condition) -> the key-only table holding them.
    cached: BTreeMap<(String, String), String>,
}

fn schema_of(ctx: &mut Ctx<'_>, table: &str) -> Result<Option<arrow_schema::SchemaRef>, RunError> {
    match ctx.s.run(&format!("SELECT * FROM {table} LIMIT 0")) {
        Ok(r) => Ok(r.batches.first().map(|b| b.schema())),
        Err(e) => {
            let m = e.to_string();
            if m.contains("not found") || m.contains("does not exist") {
                Ok(None)
            } else {
                Err(RunError::Sql {
                    sql: format!("SELECT * FROM {table} LIMIT 0"),
                    message: m,
                })
            }
        }
    }
}

impl<'j> Compiled<'j> {
    /// Resolves the tables of `j` and checks every criterion against the database.
    fn new(ctx: &mut Ctx<'_>, j: &'j Journey, now_us: i64) -> Result<Compiled<'j>, RunError> {
        let now = ts_literal(now_us);
        // `now()` in every condition is the run's time: bound as a typed session setting, never by
        // rewriting the condition's text.
        ctx.run(&format!("SET journeydb.now = {now}"))?;
        let mut keys = BTreeMap::new();
        let mut key_type = "VARCHAR";
        for (what, c) in j.criteria() {
            if !keys.contains_key(&c.table) {
                let schema = schema_of(ctx, &c.table)?.ok_or_else(|| {
                    RunError::Def(DefError {
                        line: c.line,
                        message: format!("{what}: table {:?} does not exist", c.table),
                    })
                })?;
                let f = schema.fields().first().ok_or_else(|| {
                    RunError::Def(DefError {
                        line: c.line,
                        message: format!("{what}: table {:?} has no columns", c.table),
                    })
                })?;
                if c.table == j.audience.table {
                    key_type = match f.data_type() {
                        DataType::Int64 => "BIGINT",
                        _ => "VARCHAR",
                    };
                }
                keys.insert(c.table.clone(), f.name().clone());
            }
            let key = keys.get(&c.table).cloned().unwrap_or_default();
            let sql = format!("EXPLAIN SELECT {key} FROM {} WHERE ({})", c.table, c.cond);
            if let Err(e) = ctx.s.run(&sql) {
                return Err(RunError::Def(DefError {
                    line: c.line,
                    message: format!("{what}: {e}"),
                }));
            }
        }
        Ok(Compiled {
            j,
            keys,
            key_type,
            now,
            next: format!("{}__next", j.state_table),
            cached: BTreeMap::new(),
        })
    }

    /// Evaluates every distinct criterion once, into a key-only table per criterion, so the rules
    /// of every pass read a set instead of re-filtering the source table. Criteria do not change
    /// within a run: they read other tables at the run's fixed `now`.
    fn cache_criteria(&mut self, ctx: &mut Ctx<'_>) -> Result<(), RunError> {
        let mut cached = BTreeMap::new();
        for (_, c) in self.j.criteria() {
            let k = (c.table.clone(), c.cond.clone());
            if cached.contains_key(&k) {
                continue;
            }
            let name = format!("{}__c{}", self.j.state_table, cached.len() + 1);
            ctx.run(&format!(
                "CREATE OR REPLACE TABLE {name} AS {}",
                self.set(c)
            ))?;
            cached.insert(k, name);
        }
        self.cached = cached;
        Ok(())
    }

    /// Drops the criteria tables.
    fn drop_cached(&self, ctx: &mut Ctx<'_>) -> Result<(), RunError> {
        for t in self.cached.values() {
            ctx.run(&format!("DROP TABLE IF EXISTS {t}"))?;
        }
        Ok(())
    }

    /// The customers a criterion selects, as a key-set query.
    fn set(&self, c: &Criterion) -> String {
        if let Some(t) = self.cached.get(&(c.table.clone(), c.cond.clone())) {
            return format!("SELECT customer_id FROM {t}");
        }
        let key = self
            .keys
            .get(&c.table)
            .map_or("customer_id", String::as_str);
        format!(
            "SELECT {key} AS customer_id FROM {} WHERE ({})",
            c.table, c.cond
        )
    }

    /// Customers of the in-progress state matching `cond`.
    fn state(&self, cond: &str) -> String {
        format!("SELECT customer_id FROM {} WHERE {cond}", self.next)
    }

    /// The `IS NULL` conjunction that makes a customer not done yet (no exit, no goal, last stage
    /// not completed).
    fn not_done(&self) -> String {
        let mut c = vec![format!("{} IS NOT NULL", col::stage(0))];
        for (i, s) in self.j.stages.iter().enumerate() {
            for e in 0..s.exits.len() {
                c.push(format!("{} IS NULL", col::exit(i, e)));
            }
        }
        let last = self.j.stages.len().saturating_sub(1);
        if self.j.stages.last().is_some_and(|s| s.goal.is_some()) {
            c.push(format!("{} IS NULL", col::stage_goal(last)));
        }
        if self.j.goal.is_some() {
            c.push(format!("{} IS NULL", col::GOAL));
        }
        c.join(" AND ")
    }

    /// The transition rules of one pass: (set query, columns it stamps). The sets are disjoint.
    /// Set operations are always parenthesized: INTERSECT binds tighter than EXCEPT in SQL.
    fn rules(&self) -> Vec<(String, Vec<String>)> {
        let j = self.j;
        let n = j.stages.len();
        let inter = |a: &str, b: &str| format!("(({a}) INTERSECT ({b}))");
        let minus = |a: &str, b: &str| format!("(({a}) EXCEPT ({b}))");
        let mut rules = Vec::new();
        // Entry.
        rules.push((
            minus(
                &self.set(&j.audience),
                &self.state(&format!("{} IS NOT NULL", col::stage(0))),
            ),
            vec![col::stage(0)],
        ));
        let active = self.not_done();
        let goal = j.goal.as_ref().map(|g| self.set(g));
        if let Some(g) = &goal {
            rules.push((inter(&self.state(&active), g), vec![col::GOAL.to_string()]));
        }
        for (i, s) in j.stages.iter().enumerate() {
            let mut cur = format!("{active} AND {} IS NOT NULL", col::stage(i));
            for later in i + 1..n {
                cur.push_str(&format!(" AND {} IS NULL", col::stage(later)));
            }
            // Customers in stage i (narrowed by `extra`) who reach no journey goal, no exit and,
            // unless `with_goal`, no stage goal in this pass.
            let left: Vec<String> = s.exits.iter().map(|x| self.set(&x.criterion)).collect();
            let stage_goal = s.goal.as_ref().map(|g| self.set(g));
            let at = |extra: &str, exits: usize, with_goal: bool| {
                let mut e = self.state(&format!("{cur}{extra}"));
                if let Some(g) = &goal {
                    e = minus(&e, g);
                }
                for x in left.iter().take(exits) {
                    e = minus(&e, x);
                }
                if !with_goal {
                    if let Some(g) = &stage_goal {
                        e = minus(&e, g);
                    }
                }
                e
            };
            for (e, x) in left.iter().enumerate() {
                rules.push((inter(&at("", e, true), x), vec![col::exit(i, e)]));
            }
            if let Some(g) = &stage_goal {
                let mut cols = vec![col::stage_goal(i)];
                if i + 1 < n {
                    cols.push(col::stage(i + 1));
                }
                rules.push((inter(&at("", left.len(), true), g), cols));
            }
            for (k, step) in s.steps.iter().enumerate() {
                let prev = if k == 0 {
                    col::stage(i)
                } else {
                    col::step(i, k - 1)
                };
                let mut here = format!(" AND {prev} IS NOT NULL AND {} IS NULL", col::step(i, k));
                if let StepKind::Wait(us) = &step.kind {
                    here.push_str(&format!(
                        " AND {prev} + INTERVAL '{} seconds' <= {}",
                        us / 1_000_000,
                        self.now
                    ));
                }
                let base = at(&here, left.len(), false);
                match &step.kind {
                    StepKind::Wait(_) | StepKind::Activation(_) => {
                        rules.push((base, vec![col::step(i, k)]));
                    }
                    StepKind::Decision(branches, _) => {
                        let mut rest = base;
                        for (b, br) in branches.iter().enumerate() {
                            let mut cols = vec![col::step(i, k), col::branch(i, k, b)];
                            if let Some(g) = br.goto {
                                cols.push(col::stage(g));
                            }
                            let c = self.set(&br.criterion);
                            rules.push((inter(&rest, &c), cols));
                            rest = minus(&rest, &c);
                        }
                        rules.push((rest, vec![col::step(i, k), col::default_branch(i, k)]));
                    }
                }
            }
            if s.goal.is_none() && i + 1 < n {
                let last = col::step(i, s.steps.len().saturating_sub(1));
                rules.push((
                    at(&format!(" AND {last} IS NOT NULL"), left.len(), false),
                    vec![col::stage(i + 1)],
                ));
            }
        }
        rules
    }

    /// The invariants, by class: SQL conditions any of which makes a row invalid.
    fn invariants(&self) -> Vec<(&'static str, Vec<String>)> {
        let j = self.j;
        let mut order = Vec::new();
        let mut after_exit = Vec::new();
        let mut branches = Vec::new();
        fn pred(order: &mut Vec<String>, c: String, p: String, alt: Vec<String>) {
            let alts: String = alt.iter().map(|a| format!(" AND {a} IS NULL")).collect();
            order.push(format!("({c} IS NOT NULL AND {p} IS NULL{alts})"));
            order.push(format!("{c} < {p}"));
        }
        for (i, s) in j.stages.iter().enumerate() {
            if i > 0 {
                let mut gotos = Vec::new();
                for (pi, ps) in j.stages.iter().enumerate() {
                    for (k, st) in ps.steps.iter().enumerate() {
                        if let StepKind::Decision(bs, _) = &st.kind {
                            for (b, br) in bs.iter().enumerate() {
                                if br.goto == Some(i) {
                                    gotos.push(col::branch(pi, k, b));
                                }
                            }
                        }
                    }
                }
                pred(&mut order, col::stage(i), col::stage(i - 1), gotos);
            }
            for (k, st) in s.steps.iter().enumerate() {
                let prev = if k == 0 {
                    col::stage(i)
                } else {
                    col::step(i, k - 1)
                };
                pred(&mut order, col::step(i, k), prev.clone(), vec![]);
                if let StepKind::Wait(us) = st.kind {
                    order.push(format!(
                        "{} < {prev} + INTERVAL '{} seconds'",
                        col::step(i, k),
                        us / 1_000_000
                    ));
                }
                if let StepKind::Decision(bs, _) = &st.kind {
                    let mut taken: Vec<String> =
                        (0..bs.len()).map(|b| col::branch(i, k, b)).collect();
                    taken.push(col::default_branch(i, k));
                    for (x, a) in taken.iter().enumerate() {
                        pred(&mut order, a.clone(), col::step(i, k), vec![]);
                        for b in taken.iter().skip(x + 1) {
                            branches.push(format!("({a} IS NOT NULL AND {b} IS NOT NULL)"));
                        }
                    }
                    // A decision that was made took some branch.
                    let none: Vec<String> = taken.iter().map(|c| format!("{c} IS NULL")).collect();
                    branches.push(format!(
                        "({} IS NOT NULL AND {})",
                        col::step(i, k),
                        none.join(" AND ")
                    ));
                }
            }
            for e in 0..s.exits.len() {
                pred(&mut order, col::exit(i, e), col::stage(i), vec![]);
            }
            if s.goal.is_some() {
                pred(&mut order, col::stage_goal(i), col::stage(i), vec![]);
            }
        }
        if j.goal.is_some() {
            pred(&mut order, col::GOAL.into(), col::stage(0), vec![]);
        }
        // Nothing happens after an exit: no later time, no second exit, no goal.
        let all = j.columns();
        for (i, s) in j.stages.iter().enumerate() {
            for e in 0..s.exits.len() {
                let x = col::exit(i, e);
                for c in &all {
                    if *c == x {
                        continue;
                    }
                    // One exit at most in the whole journey, and no goal of this stage or
                    // later, nor the journey goal, beside it.
                    let conflicts = (c.contains("_exit_") && c.as_str() > x.as_str())
                        || *c == col::GOAL
                        || (i..j.stages.len()).any(|l| *c == col::stage_goal(l));
                    if conflicts {
                        after_exit.push(format!("({x} IS NOT NULL AND {c} IS NOT NULL)"));
                    } else if !c.contains("_exit_") && !c.ends_with("goal") {
                        after_exit.push(format!("{c} > {x}"));
                    }
                }
            }
        }
        let mut out = vec![("step set without its predecessor, or out of order", order)];
        if !after_exit.is_empty() {
            out.push(("progress after an exit", after_exit));
        }
        if !branches.is_empty() {
            out.push(("not exactly one branch of a decision", branches));
        }
        out
    }

    fn create(&self, table: &str) -> String {
        let cols: Vec<String> = self
            .j
            .columns()
            .iter()
            .map(|c| format!("{c} TIMESTAMP MERGE MIN"))
            .collect();
        format!(
            "CREATE TABLE {table} (customer_id {} PRIMARY KEY, {})",
            self.key_type,
            cols.join(", ")
        )
    }
}

/// Creates the state table when missing; checks its columns when present.
fn ensure_state(ctx: &mut Ctx<'_>, c: &Compiled<'_>) -> Result<(), RunError> {
    let want: Vec<String> = std::iter::once("customer_id".to_string())
        .chain(c.j.columns())
        .collect();
    match schema_of(ctx, &c.j.state_table)? {
        None => {
            ctx.run(&c.create(&c.j.state_table))?;
            Ok(())
        }
        Some(schema) => {
            let have: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            if have == want {
                Ok(())
            } else {
                Err(RunError::StateMismatch(format!(
                    "state table {} has columns ({}) but the definition makes ({}); drop it or set another state_table",
                    c.j.state_table,
                    have.join(", "),
                    want.join(", ")
                )))
            }
        }
    }
}

/// The first row of `b` as text cells (empty when it has no rows).
pub fn first_row(b: &RecordBatch) -> Vec<Option<String>> {
    if b.num_rows() == 0 {
        return Vec::new();
    }
    b.columns()
        .iter()
        .map(|c| crate::value::cell_text(c.as_ref(), 0))
        .collect()
}

/// The first cell of a reply as a count (0 when there is none).
pub fn count(reply: &Reply) -> u64 {
    reply
        .batches
        .first()
        .and_then(|b| first_row(b).into_iter().next().flatten())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Checks a definition against the database (tables, columns, condition syntax) without running.
pub fn check(session: &mut dyn Session, j: &Journey, now_us: i64) -> Result<(), RunError> {
    let mut ctx = Ctx {
        s: session,
        statements: 0,
    };
    Compiled::new(&mut ctx, j, now_us).map(|_| ())
}

/// Advances the journey by one run at `opts.now_us`.
pub fn run(
    session: &mut dyn Session,
    j: &Journey,
    opts: &RunOptions,
) -> Result<RunReport, RunError> {
    let t0 = Instant::now();
    let mut ctx = Ctx {
        s: session,
        statements: 0,
    };
    let mut c = Compiled::new(&mut ctx, j, opts.now_us)?;
    ensure_state(&mut ctx, &c)?;
    if !opts.allow_backfill {
        if let Some(last_us) = latest_stamp(&mut ctx, j)? {
            if opts.now_us < last_us {
                return Err(RunError::Backwards {
                    now_us: opts.now_us,
                    last_us,
                });
            }
        }
    }
    let st = &j.state_table;
    let (next, tx, pass) = (c.next.clone(), format!("{st}__tx"), format!("{st}__pass"));
    for t in [&next, &tx, &pass] {
        ctx.run(&format!("DROP TABLE IF EXISTS {t}"))?;
    }
    ctx.run(&c.create(&next))?;
    ctx.run(&format!("INSERT INTO {next} SELECT * FROM {st}"))?;
    ctx.run(&c.create(&tx))?;
    c.cache_criteria(&mut ctx)?;
    let rules = c.rules();
    let mut per_col: BTreeMap<String, u64> = BTreeMap::new();
    let mut report = RunReport::default();
    // Every pass stamps at least one new column of each customer it moves, so the number of
    // columns bounds the passes.
    let max_passes = j.columns().len() + 1;
    loop {
        report.passes += 1;
        ctx.run(&c.create(&pass))?;
        let mut moved = 0;
        for (set, cols) in &rules {
            let stamps: Vec<String> = cols.iter().map(|_| c.now.clone()).collect();
            let sql = format!(
                "INSERT INTO {pass} (customer_id, {}) SELECT customer_id, {} FROM ({set}) x",
                cols.join(", "),
                stamps.join(", ")
            );
            let n = ctx.run(&sql)?.rows;
            if n > 0 {
                for col in cols {
                    *per_col.entry(col.clone()).or_default() += n;
                }
            }
            moved += n;
        }
        if moved > 0 {
            ctx.run(&format!("INSERT INTO {next} SELECT * FROM {pass}"))?;
            ctx.run(&format!("INSERT INTO {tx} SELECT * FROM {pass}"))?;
        }
        ctx.run(&format!("DROP TABLE {pass}"))?;
        if moved == 0 || report.passes >= max_passes {
            break;
        }
    }
    report.transitions = j
        .columns()
        .into_iter()
        .filter_map(|col| per_col.get(&col).map(|&n| (col, n)))
        .collect();
    // The consistency check, on a sample of the new state.
    let seed = opts.now_us.rem_euclid(1 << 31);
    for (class, conds) in c.invariants() {
        let sql = format!(
            "SELECT count(*) FROM {next} TABLESAMPLE BERNOULLI ({}) REPEATABLE ({seed}) WHERE {}",
            opts.check_percent,
            conds.join(" OR ")
        );
        let n = count(&ctx.run(&sql)?);
        report.violations.push((class.to_string(), n));
    }
    if report.violations.iter().any(|(_, n)| *n > 0) {
        ctx.run(&format!("DROP TABLE {next}"))?;
        ctx.run(&format!("DROP TABLE {tx}"))?;
        c.drop_cached(&mut ctx)?;
        report.statements = ctx.statements;
        report.elapsed = t0.elapsed();
        return Ok(report);
    }
    // Activations of this run, written before the swap: a crash in between re-derives them.
    report.activations = write_activations(&mut ctx, j, &tx)?;
    ctx.run(&format!("ALTER TABLE {st} SWAP WITH {next}"))?;
    ctx.run(&format!("DROP TABLE {next}"))?;
    ctx.run(&format!("DROP TABLE {tx}"))?;
    c.drop_cached(&mut ctx)?;
    report.swapped = true;
    report.statements = ctx.statements;
    report.elapsed = t0.elapsed();
    Ok(report)
}

/// Writes `<state>_activations` from the run's transitions `tx` and returns the activations
/// (customer, step column, channel).
fn write_activations(
    ctx: &mut Ctx<'_>,
    j: &Journey,
    tx: &str,
) -> Result<Vec<(String, String, String)>, RunError> {
    let st = &j.state_table;
    let mut out = Vec::new();
    let acts: Vec<(String, String)> = j
        .stages
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.steps
                .iter()
                .enumerate()
                .filter_map(move |(k, st)| match &st.kind {
                    StepKind::Activation(ch) => Some((col::step(i, k), ch.clone())),
                    _ => None,
                })
        })
        .collect();
    if !acts.is_empty() {
        let cols: Vec<&str> = acts.iter().map(|(c, _)| c.as_str()).collect();
        let any: Vec<String> = cols.iter().map(|c| format!("{c} IS NOT NULL")).collect();
        let at = format!("{st}_activations");
        ctx.run(&format!(
            "CREATE OR REPLACE TABLE {at} AS SELECT customer_id, {} FROM {tx} WHERE {}",
            cols.join(", "),
            any.join(" OR ")
        ))?;
        let reply = ctx.run(&format!("SELECT * FROM {at} ORDER BY customer_id"))?;
        for b in &reply.batches {
            collect_activations(b, &acts, &mut out);
        }
    }
    Ok(out)
}

/// The latest time stamped anywhere in the state (every stamp is some run's time), or `None` for
/// an empty state.
fn latest_stamp(ctx: &mut Ctx<'_>, j: &Journey) -> Result<Option<i64>, RunError> {
    let maxes: Vec<String> = j.columns().iter().map(|c| format!("max({c})")).collect();
    let reply = ctx.run(&format!(
        "SELECT {} FROM {}",
        maxes.join(", "),
        j.state_table
    ))?;
    let mut last = None;
    for b in &reply.batches {
        for col in b.columns() {
            if let Some(ts) = col.as_any().downcast_ref::<TimestampMicrosecondArray>() {
                for i in 0..ts.len() {
                    if ts.is_valid(i) {
                        last = last.max(Some(ts.value(i)));
                    }
                }
            }
        }
    }
    Ok(last)
}

fn collect_activations(
    b: &RecordBatch,
    acts: &[(String, String)],
    out: &mut Vec<(String, String, String)>,
) {
    let Some(keys) = b.columns().first() else {
        return;
    };
    for (x, (colname, channel)) in acts.iter().enumerate() {
        let Some(c) = b.columns().get(x + 1) else {
            continue;
        };
        let Some(ts) = c.as_any().downcast_ref::<TimestampMicrosecondArray>() else {
            continue;
        };
        for r in 0..b.num_rows() {
            if ts.is_valid(r) {
                let key = crate::value::cell_text(keys.as_ref(), r).unwrap_or_default();
                out.push((key, colname.clone(), channel.clone()));
            }
        }
    }
}
