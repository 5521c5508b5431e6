//! One run of a journey: the definition compiled into set operations over the state table, the
//! transitions folded in with MIN, a sampled consistency check, and an atomic swap.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::DataType;
use journeydb_client::{Reply, Session};

use crate::def::{Criterion, DefError, Journey, Since, StepKind, AUDIENCE_EXIT_COL, GOAL_COL};

/// An outcome that can end a stage for a customer: its criterion, the state column its `since`
/// refers to, and the columns it stamps.
struct Outcome<'j> {
    criterion: &'j Criterion,
    since: Option<String>,
    stamps: Vec<String>,
}

/// Why a run could not be made.
#[derive(Debug)]
pub enum RunError {
    /// The definition does not fit the database (unknown table or column, bad condition).
    Def(DefError),
    /// Another run of the journey holds its lock.
    Locked(String),
    /// A rollback that cannot be made (no such run, no snapshot of it).
    Rollback(String),
    /// The definition changes the published journey in more than names: it must be published as
    /// a new version.
    NeedsPublish {
        /// The newest stored version.
        version: i64,
        /// What changes, position by position.
        changes: Vec<String>,
    },
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
            RunError::Rollback(m) => f.write_str(m),
            RunError::NeedsPublish { version, changes } => write!(
                f,
                "this definition changes version {version} of the journey for the customers inside it; publish it as version {} (journey run --publish: customers inside stay on version {version}, new ones enter the new one), or run the published one. (A renamed stage, step, branch or exit without an `id` is a removed and an added position: give it id = \"<its old id>\" to keep it.) Changes:\n  {}",
                version + 1,
                changes.join("\n  ")
            ),
            RunError::Locked(name) => write!(
                f,
                "another run of journey {name} is in progress (it holds the journey's lock); try again when it ends"
            ),
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
    /// This run's id (one more than the last recorded run's).
    pub run_id: i64,
    /// The newest definition version (the one new customers entered with).
    pub version: i64,
    /// Whether this run stored a definition version (the first, a new one, or a rename).
    pub published_version: bool,
    /// The consistency check, per invariant class.
    pub violations: Vec<Violation>,
    /// Rows this run changed (each checked in full).
    pub checked_rows: u64,
    /// Whether the new state was published (false when the check failed, or for a dry run).
    pub swapped: bool,
    /// A re-run at the last run's time that moved nobody: nothing was committed.
    pub unchanged: bool,
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
    /// Compute the run and its check, publish nothing.
    pub dry_run: bool,
    /// Snapshots of the state kept for `journey rollback` (the state as each of the last N runs
    /// published it, `<state>_snap_r<run>`); 0 keeps none.
    pub keep_snapshots: usize,
    /// Publish the definition as a new version when it differs from the newest stored one in
    /// more than names (customers inside stay on their version; new ones enter the new one).
    /// Without it such a run is refused with the changes.
    pub publish: bool,
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
    /// Prefix of this run's scratch tables (`<state>__r<run>_`).
    scratch: String,
    next: String,
    /// Criteria evaluated once for the run: (table, condition) -> the key-only table holding them.
    cached: BTreeMap<(String, String), String>,
    /// Timed criteria (outcomes, and branches with `since`): (table, condition, time) -> their
    /// column in the run's outcome table `<scratch>o`, holding each customer's event time.
    timed: BTreeMap<(String, String, Option<String>), String>,
    /// The definition version this compiles (its customers have `journey_version` = it).
    version: i64,
    /// Whether it is the newest version (the one new customers enter).
    newest: bool,
    /// Whether it is the only version with customers (its rules need not read the version).
    sole: bool,
    /// State columns a `since` refers to, copied into the outcome table as `s__<column>`.
    since_cols: Vec<String>,
    /// Outcome sets evaluated once for the run: set query -> the key-only table holding it.
    outcome_sets: BTreeMap<String, String>,
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
            scratch: format!("{}__r0_", j.state_table),
            next: format!("{}__r0_next", j.state_table),
            version: 1,
            newest: true,
            sole: true,
            cached: BTreeMap::new(),
            timed: BTreeMap::new(),
            since_cols: Vec::new(),
            outcome_sets: BTreeMap::new(),
        })
    }

    /// Evaluates every distinct criterion once, into a key-only table per criterion, so the rules
    /// of every pass read a set instead of re-filtering the source table. Criteria do not change
    /// within a run: they read other tables at the run's fixed `now`. Outcomes (goals, exits) and
    /// branches with `since` also get their event time per customer in the outcome table
    /// `<scratch>o`, next to the state times their `since` refers to (as of the run's start).
    fn cache_criteria(&mut self, ctx: &mut Ctx<'_>, have: &[String]) -> Result<(), RunError> {
        let mut cached = BTreeMap::new();
        for (_, c) in self.j.criteria() {
            let k = (c.table.clone(), c.cond.clone());
            if cached.contains_key(&k) {
                continue;
            }
            let name = format!("{}c{}", self.scratch, cached.len() + 1);
            ctx.run(&format!(
                "CREATE OR REPLACE TEMP TABLE {name} AS {}",
                self.set(c)
            ))?;
            cached.insert(k, name);
        }
        self.cached = cached;
        let mut timed = BTreeMap::new();
        let mut since_cols = Vec::new();
        for (c, since) in self.timed_criteria() {
            let k = (c.table.clone(), c.cond.clone(), c.time.clone());
            let n = timed.len() + 1;
            timed.entry(k).or_insert_with(|| format!("o{n}"));
            if let Some(col) = since {
                if !since_cols.contains(&col) {
                    since_cols.push(col);
                }
            }
        }
        self.timed = timed;
        self.since_cols = since_cols;
        if self.timed.is_empty() {
            return Ok(());
        }
        let o = self.outcomes_table();
        let mut cols: Vec<String> = self
            .timed
            .values()
            .map(|c| format!("{c} TIMESTAMP MERGE MIN"))
            .collect();
        cols.extend(
            self.since_cols
                .iter()
                .map(|c| format!("s__{c} TIMESTAMP MERGE MIN")),
        );
        ctx.run(&format!(
            "CREATE TEMP TABLE {o} (customer_id {} PRIMARY KEY, {})",
            self.key_type,
            cols.join(", ")
        ))?;
        for ((table, cond, time), col) in &self.timed {
            let key = self.keys.get(table).map_or("customer_id", String::as_str);
            match time {
                Some(t) => {
                    ctx.run(&format!(
                        "INSERT INTO {o} (customer_id, {col}) SELECT {key}, {t} FROM {table} WHERE ({cond}) AND ({t}) IS NOT NULL"
                    ))?;
                    // True with no time: counted as happening at the run's time.
                    ctx.run(&format!(
                        "INSERT INTO {o} (customer_id, {col}) SELECT {key}, {} FROM {table} WHERE ({cond}) AND ({t}) IS NULL",
                        self.now
                    ))?;
                }
                None => {
                    let set = self.set(&Criterion {
                        table: table.clone(),
                        cond: cond.clone(),
                        line: 0,
                        time: None,
                        since: None,
                    });
                    ctx.run(&format!(
                        "INSERT INTO {o} (customer_id, {col}) SELECT customer_id, {} FROM ({set}) x",
                        self.now
                    ))?;
                }
            }
        }
        let st = &self.j.state_table;
        for c in self.since_cols.iter().filter(|c| have.contains(c)) {
            ctx.run(&format!(
                "INSERT INTO {o} (customer_id, s__{c}) SELECT customer_id, {c} FROM {st} WHERE {c} IS NOT NULL"
            ))?;
        }
        // Which customers each outcome ends a stage for, and which have any outcome, read only
        // the outcome table: fixed for the run. Every pass's rules read them (each step's rule
        // subtracts its stage's outcomes), so each is evaluated once, into a key-only table.
        let mut sets = BTreeMap::new();
        for i in 0..self.j.stages.len() {
            let (wins, any) = self.outcome_sets(i);
            for q in wins.into_iter().map(|(q, _)| q).chain(any) {
                if !sets.contains_key(&q) {
                    let name = format!("{}x{}", self.scratch, sets.len() + 1);
                    ctx.run(&format!("CREATE OR REPLACE TEMP TABLE {name} AS {q}"))?;
                    sets.insert(q, name);
                }
            }
        }
        self.outcome_sets = sets;
        Ok(())
    }

    /// The outcome sets of stage `i`: for each of its outcomes (in priority order), the customers
    /// it ends the stage for (its event is valid and no earlier one, nor an equal one of higher
    /// priority, is) with the columns it stamps; and the customers with any valid outcome (`None`
    /// when the stage has none). Once cached, each query reads its key-only table.
    fn outcome_sets(&self, i: usize) -> (Vec<(String, Vec<String>)>, Option<String>) {
        let o = self.outcomes_table();
        // The earliest event wins; equal times go to the earlier in priority order.
        let outs = self.outcomes(i);
        let valid: Vec<String> = outs
            .iter()
            .map(|x| self.valid(x.criterion, x.since.as_ref()))
            .collect();
        let cached = |q: String| match self.outcome_sets.get(&q) {
            Some(t) => format!("SELECT customer_id FROM {t}"),
            None => q,
        };
        let mut wins = Vec::new();
        for (p, (x, vx)) in outs.iter().zip(&valid).enumerate() {
            let t = self.time_col(x.criterion);
            let mut win = vec![vx.clone()];
            for (q, (y, vy)) in outs.iter().zip(&valid).enumerate() {
                if q == p {
                    continue;
                }
                let u = self.time_col(y.criterion);
                let cmp = if q < p { "<" } else { "<=" };
                win.push(format!("(NOT {vy} OR {t} {cmp} {u})"));
            }
            let set = format!("SELECT customer_id FROM {o} WHERE {}", win.join(" AND "));
            wins.push((cached(set), x.stamps.clone()));
        }
        let any = (!outs.is_empty()).then(|| {
            cached(format!(
                "SELECT customer_id FROM {o} WHERE {}",
                valid.join(" OR ")
            ))
        });
        (wins, any)
    }

    fn outcomes_table(&self) -> String {
        format!("{}o", self.scratch)
    }

    /// The criteria that need event times, with the state column of their `since`: every outcome
    /// (journey goal and exits, stage exits and goals) and every branch with a `since`.
    fn timed_criteria(&self) -> Vec<(&Criterion, Option<String>)> {
        let j = self.j;
        let mut out = Vec::new();
        for (i, s) in j.stages.iter().enumerate() {
            for o in self.outcomes(i) {
                out.push((o.criterion, o.since));
            }
            for st in &s.steps {
                if let StepKind::Decision(bs, _) = &st.kind {
                    for b in bs.iter().filter(|b| b.criterion.since.is_some()) {
                        out.push((&b.criterion, self.since_col(i, b.criterion.since.as_ref())));
                    }
                }
            }
        }
        out
    }

    /// The state column a `since` of a criterion of stage `i` refers to.
    fn since_col(&self, i: usize, since: Option<&Since>) -> Option<String> {
        let j = self.j;
        since.map(|s| match s {
            Since::Entry => j.stage_col(0),
            Since::Stage => j.stage_col(i),
            Since::Step(k) => j.step_col(i, *k),
        })
    }

    /// The outcomes that can end stage `i` for a customer in it, in priority order (the order
    /// that breaks ties of equal times): the journey goal, the journey exits, the stage's exits,
    /// the stage goal. Leaving the audience is not among them: it counts as happening at the
    /// run's time and loses every tie.
    fn outcomes(&self, i: usize) -> Vec<Outcome<'j>> {
        let j = self.j;
        let mut out = Vec::new();
        if let Some(g) = &j.goal {
            out.push(Outcome {
                criterion: g,
                since: self.since_col(i, g.since.as_ref()),
                stamps: vec![GOAL_COL.to_string()],
            });
        }
        for (e, x) in j.exits.iter().enumerate() {
            out.push(Outcome {
                criterion: &x.criterion,
                since: self.since_col(i, x.criterion.since.as_ref()),
                stamps: vec![j.journey_exit_col(e)],
            });
        }
        if let Some(s) = j.stages.get(i) {
            for (e, x) in s.exits.iter().enumerate() {
                out.push(Outcome {
                    criterion: &x.criterion,
                    since: self.since_col(i, x.criterion.since.as_ref()),
                    stamps: vec![j.exit_col(i, e)],
                });
            }
            if let Some(g) = &s.goal {
                let mut stamps = vec![j.stage_goal_col(i)];
                if i + 1 < j.stages.len() {
                    stamps.push(j.stage_col(i + 1));
                }
                out.push(Outcome {
                    criterion: g,
                    since: self.since_col(i, g.since.as_ref()),
                    stamps,
                });
            }
        }
        out
    }

    /// The event-time column of a timed criterion in the outcome table.
    fn time_col(&self, c: &Criterion) -> String {
        self.timed
            .get(&(c.table.clone(), c.cond.clone(), c.time.clone()))
            .cloned()
            .unwrap_or_else(|| "o0".to_string())
    }

    /// The condition (over the outcome table) that a timed criterion counts for a customer: it is
    /// true, and its event is not before the customer's `since` point (a point stamped in this
    /// run, absent from the table, is the run's time). Never NULL.
    fn valid(&self, c: &Criterion, since: Option<&String>) -> String {
        let t = self.time_col(c);
        match since {
            None => format!("{t} IS NOT NULL"),
            Some(s) => format!(
                "({t} IS NOT NULL AND ((s__{s} IS NOT NULL AND {t} >= s__{s}) OR {t} >= {}))",
                self.now
            ),
        }
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

    /// Customers of this version in the in-progress state matching `cond`.
    fn state(&self, cond: &str) -> String {
        if self.sole {
            return format!("SELECT customer_id FROM {} WHERE {cond}", self.next);
        }
        format!(
            "SELECT customer_id FROM {} WHERE {} AND {cond}",
            self.next,
            self.of_version()
        )
    }

    /// The condition that a state row is on this version (rows written before versions were kept
    /// have no version: they are on version 1).
    fn of_version(&self) -> String {
        if self.sole {
            // Every customer is on it: no column to read.
            "TRUE".to_string()
        } else if self.version == 1 {
            format!("({VERSION_COL} = 1 OR {VERSION_COL} IS NULL)")
        } else {
            format!("{VERSION_COL} = {}", self.version)
        }
    }

    /// The `IS NULL` conjunction that makes a customer not done yet (entered; no exit, no goal, no
    /// end step; last stage not completed).
    fn not_done(&self) -> String {
        let j = self.j;
        let mut c = vec![format!("{} IS NOT NULL", j.stage_col(0))];
        for (i, s) in j.stages.iter().enumerate() {
            for e in 0..s.exits.len() {
                c.push(format!("{} IS NULL", j.exit_col(i, e)));
            }
        }
        for x in j.journey_exit_cols().into_iter().chain(j.end_cols()) {
            c.push(format!("{x} IS NULL"));
        }
        let last = j.stages.len().saturating_sub(1);
        if j.stages.last().is_some_and(|s| s.goal.is_some()) {
            c.push(format!("{} IS NULL", j.stage_goal_col(last)));
        }
        if j.goal.is_some() {
            c.push(format!("{GOAL_COL} IS NULL"));
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
        // Entry, into the newest version: the audience but anyone in the state (of any version).
        if self.newest {
            let mut entry = minus(
                &self.set(&j.audience),
                &format!("SELECT customer_id FROM {}", self.next),
            );
            if let (true, Some(g)) = (j.suppress_if_goal_met, &j.goal) {
                entry = minus(&entry, &self.set(g));
            }
            rules.push((entry, vec![j.stage_col(0)]));
        }
        let active = self.not_done();
        let audience = self.set(&j.audience);
        for (i, s) in j.stages.iter().enumerate() {
            let mut cur = format!("{active} AND {} IS NOT NULL", j.stage_col(i));
            for later in i + 1..n {
                cur.push_str(&format!(" AND {} IS NULL", j.stage_col(later)));
            }
            let (wins, any) = self.outcome_sets(i);
            for (set, stamps) in wins {
                rules.push((inter(&self.state(&cur), &set), stamps));
            }
            // Customers in stage i (narrowed by `extra`) with no outcome in this pass.
            let at = |extra: &str| {
                let mut e = self.state(&format!("{cur}{extra}"));
                if let Some(a) = &any {
                    e = minus(&e, a);
                }
                e
            };
            if j.exit_on_audience_leave {
                rules.push((
                    minus(&at(""), &audience),
                    vec![AUDIENCE_EXIT_COL.to_string()],
                ));
            }
            let stays = |e: String| {
                if j.exit_on_audience_leave {
                    inter(&e, &audience)
                } else {
                    e
                }
            };
            self.step_rules(i, &|extra: &str| stays(at(extra)), &mut rules);
            let ends = s.steps.last().is_some_and(|st| st.kind == StepKind::End);
            if s.goal.is_none() && i + 1 < n && !ends {
                let last = j.step_col(i, s.steps.len().saturating_sub(1));
                rules.push((
                    stays(at(&format!(" AND {last} IS NOT NULL"))),
                    vec![j.stage_col(i + 1)],
                ));
            }
        }
        rules
    }

    /// The rules of stage `i`'s steps: for each, the customers `base(extra)` narrowed to those at
    /// that step (an expired wait, a decision split by branch, an activation, an end).
    fn step_rules(
        &self,
        i: usize,
        base: &dyn Fn(&str) -> String,
        rules: &mut Vec<(String, Vec<String>)>,
    ) {
        let j = self.j;
        let o = self.outcomes_table();
        let inter = |a: &str, b: &str| format!("(({a}) INTERSECT ({b}))");
        let minus = |a: &str, b: &str| format!("(({a}) EXCEPT ({b}))");
        let Some(s) = j.stages.get(i) else {
            return;
        };
        for (k, step) in s.steps.iter().enumerate() {
            let prev = if k == 0 {
                j.stage_col(i)
            } else {
                j.step_col(i, k - 1)
            };
            let mut here = format!(" AND {prev} IS NOT NULL AND {} IS NULL", j.step_col(i, k));
            if let StepKind::Wait(us) = &step.kind {
                here.push_str(&format!(
                    " AND {prev} + INTERVAL '{us} microseconds' <= {}",
                    self.now
                ));
            }
            let base = base(&here);
            match &step.kind {
                StepKind::Wait(_) | StepKind::Activation(_) | StepKind::End => {
                    rules.push((base, vec![j.step_col(i, k)]));
                }
                StepKind::Decision(branches, _) => {
                    let mut rest = base;
                    for (b, br) in branches.iter().enumerate() {
                        let mut cols = vec![j.step_col(i, k), j.branch_col(i, k, b)];
                        if let Some(g) = br.goto {
                            cols.push(j.stage_col(g));
                        }
                        let c = match &br.criterion.since {
                            Some(since) => format!(
                                "SELECT customer_id FROM {o} WHERE {}",
                                self.valid(&br.criterion, self.since_col(i, Some(since)).as_ref())
                            ),
                            None => self.set(&br.criterion),
                        };
                        rules.push((inter(&rest, &c), cols));
                        rest = minus(&rest, &c);
                    }
                    rules.push((rest, vec![j.step_col(i, k), j.default_col(i, k)]));
                }
            }
        }
    }

    /// The invariants, by class: SQL conditions any of which makes a row invalid. A wait's
    /// duration is checked on the rows this run stamped (`= now`): a row stamped by an earlier
    /// run waited under the definition of its time, and an edited duration must not make it
    /// invalid.
    fn invariants(&self) -> Vec<(&'static str, Vec<String>)> {
        let j = self.j;
        let now = &self.now;
        let mut order = Vec::new();
        let mut waits = Vec::new();
        let mut stage_goal = Vec::new();
        let mut branches = Vec::new();
        fn pred(order: &mut Vec<String>, c: String, p: String, alt: Vec<String>) {
            let alts: String = alt.iter().map(|a| format!(" AND {a} IS NULL")).collect();
            order.push(format!("({c} IS NOT NULL AND {p} IS NULL{alts})"));
            order.push(format!("{c} < {p}"));
        }
        let n = j.stages.len();
        for (i, s) in j.stages.iter().enumerate() {
            if i > 0 {
                let mut gotos = Vec::new();
                for (pi, ps) in j.stages.iter().enumerate() {
                    for (k, st) in ps.steps.iter().enumerate() {
                        if let StepKind::Decision(bs, _) = &st.kind {
                            for (b, br) in bs.iter().enumerate() {
                                if br.goto == Some(i) {
                                    gotos.push(j.branch_col(pi, k, b));
                                }
                            }
                        }
                    }
                }
                pred(&mut order, j.stage_col(i), j.stage_col(i - 1), gotos);
            }
            for (k, st) in s.steps.iter().enumerate() {
                let prev = if k == 0 {
                    j.stage_col(i)
                } else {
                    j.step_col(i, k - 1)
                };
                pred(&mut order, j.step_col(i, k), prev.clone(), vec![]);
                if let StepKind::Wait(us) = st.kind {
                    let c = j.step_col(i, k);
                    waits.push(format!(
                        "({c} = {now} AND {c} < {prev} + INTERVAL '{us} microseconds')"
                    ));
                }
                if let StepKind::Decision(bs, _) = &st.kind {
                    let mut taken: Vec<String> =
                        (0..bs.len()).map(|b| j.branch_col(i, k, b)).collect();
                    taken.push(j.default_col(i, k));
                    for (x, a) in taken.iter().enumerate() {
                        pred(&mut order, a.clone(), j.step_col(i, k), vec![]);
                        for b in taken.iter().skip(x + 1) {
                            branches.push(format!("({a} IS NOT NULL AND {b} IS NOT NULL)"));
                        }
                    }
                    // A decision that was made took some branch.
                    let none: Vec<String> = taken.iter().map(|c| format!("{c} IS NULL")).collect();
                    branches.push(format!(
                        "({} IS NOT NULL AND {})",
                        j.step_col(i, k),
                        none.join(" AND ")
                    ));
                }
            }
            for e in 0..s.exits.len() {
                pred(&mut order, j.exit_col(i, e), j.stage_col(i), vec![]);
            }
            if s.goal.is_some() {
                pred(&mut order, j.stage_goal_col(i), j.stage_col(i), vec![]);
                // A stage goal moves the customer into the next stage in the same run.
                if i + 1 < n {
                    stage_goal.push(format!(
                        "({} IS NOT NULL AND {} IS NULL)",
                        j.stage_goal_col(i),
                        j.stage_col(i + 1)
                    ));
                }
            }
        }
        if j.goal.is_some() {
            pred(&mut order, GOAL_COL.into(), j.stage_col(0), vec![]);
        }
        for x in j.journey_exit_cols() {
            pred(&mut order, x, j.stage_col(0), vec![]);
        }
        let (after_exit, after_goal) = self.terminal_invariants();
        let mut out = vec![("a step set without its predecessor, or out of order", order)];
        for (class, conds) in [
            ("a wait shorter than its duration", waits),
            ("progress after an exit", after_exit),
            ("progress after the journey goal", after_goal),
            ("a stage goal without entry into the next stage", stage_goal),
            ("not exactly one branch of a decision", branches),
        ] {
            if !conds.is_empty() {
                out.push((class, conds));
            }
        }
        out
    }

    /// Nothing after the end: conditions for progress after an exit, and after the journey goal.
    fn terminal_invariants(&self) -> (Vec<String>, Vec<String>) {
        let j = self.j;
        let n = j.stages.len();
        let mut after_exit = Vec::new();
        let mut after_goal = Vec::new();
        let all = j.columns();
        if j.goal.is_some() {
            // The journey goal ends the journey: nothing is stamped after it, and no exit or end
            // step beside it.
            for c in all.iter().filter(|c| *c != GOAL_COL) {
                if j.is_terminal_col(c) {
                    after_goal.push(format!("({GOAL_COL} IS NOT NULL AND {c} IS NOT NULL)"));
                } else {
                    after_goal.push(format!("{c} > {GOAL_COL}"));
                }
            }
        }
        // Nothing happens after an exit or an end step: no later time, no second exit or end, no
        // journey goal, and no goal of the exit's stage or a later one.
        let mut terminals: Vec<(String, usize)> = Vec::new();
        for (i, s) in j.stages.iter().enumerate() {
            terminals.extend((0..s.exits.len()).map(|e| (j.exit_col(i, e), i)));
            for (k, st) in s.steps.iter().enumerate() {
                if st.kind == StepKind::End {
                    terminals.push((j.step_col(i, k), i));
                }
            }
        }
        // A journey exit may come in any stage: it conflicts with no stage goal.
        terminals.extend(j.journey_exit_cols().into_iter().map(|c| (c, n)));
        for (x, i) in &terminals {
            for c in &all {
                if c == x {
                    continue;
                }
                let other = j.is_terminal_col(c);
                let goal = *c == GOAL_COL || (*i..n).any(|l| *c == j.stage_goal_col(l));
                if (other && c.as_str() > x.as_str()) || goal {
                    after_exit.push(format!("({x} IS NOT NULL AND {c} IS NOT NULL)"));
                } else if !other {
                    after_exit.push(format!("{c} > {x}"));
                }
            }
        }
        (after_exit, after_goal)
    }

    /// A state-shaped table: the key, a MIN TIMESTAMP per column, the customer's version.
    fn create(&self, table: &str, columns: &[String]) -> String {
        self.create_as("TABLE", table, columns)
    }

    /// A state-shaped temporary table (in memory; a rename publishes it).
    fn create_temp(&self, table: &str, columns: &[String]) -> String {
        self.create_as("TEMP TABLE", table, columns)
    }

    fn create_as(&self, kind: &str, table: &str, columns: &[String]) -> String {
        let cols: Vec<String> = columns
            .iter()
            .map(|c| format!("{c} TIMESTAMP MERGE MIN"))
            .collect();
        format!(
            "CREATE {kind} {table} (customer_id {} PRIMARY KEY, {}, {VERSION_COL} BIGINT MERGE MIN)",
            self.key_type,
            cols.join(", ")
        )
    }

    /// Names this run's scratch tables after its id (the version's own after it too).
    fn set_run(&mut self, run: i64, version: i64, newest: bool) {
        let st = &self.j.state_table;
        self.scratch = format!("{st}__r{run}_v{version}_");
        self.next = format!("{st}__r{run}_next");
        self.version = version;
        self.newest = newest;
    }
}

/// Why a run was refused by its consistency check: one invariant class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violation {
    /// The invariant.
    pub class: String,
    /// Invalid rows among the rows this run changed (all of them are checked).
    pub changed: u64,
    /// Invalid rows in the Bernoulli sample of the whole state.
    pub sampled: u64,
    /// Up to five keys of invalid customers.
    pub keys: Vec<String>,
}

/// The state table's columns: the definition's, then any the table has that the definition no
/// longer makes (a removed step keeps its history; nothing reads it).
fn state_columns(
    ctx: &mut Ctx<'_>,
    c: &Compiled<'_>,
    want: &[String],
) -> Result<StateColumns, RunError> {
    let st = &c.j.state_table;
    match schema_of(ctx, st)? {
        None => {
            ctx.run(&c.create(st, want))?;
            Ok(StateColumns {
                all: want.to_vec(),
                have: want.to_vec(),
                versioned: true,
            })
        }
        Some(schema) => {
            let mut fields = schema.fields().iter();
            match fields.next() {
                Some(k) if k.name() == "customer_id" => {}
                _ => {
                    return Err(RunError::StateMismatch(format!(
                        "table {st} exists but is not a journey state (its first column is not customer_id); drop it or set another state_table"
                    )))
                }
            }
            let mut have = Vec::new();
            let mut versioned = false;
            for f in fields {
                if f.name() == VERSION_COL && *f.data_type() == DataType::Int64 {
                    versioned = true;
                    continue;
                }
                if !matches!(f.data_type(), DataType::Timestamp(..)) {
                    return Err(RunError::StateMismatch(format!(
                        "state table {st} has a column {} of type {} where a journey state has only TIMESTAMP columns and {VERSION_COL}",
                        f.name(),
                        f.data_type()
                    )));
                }
                have.push(f.name().clone());
            }
            let mut all = want.to_vec();
            all.extend(have.iter().filter(|h| !want.contains(h)).cloned());
            Ok(StateColumns {
                all,
                have,
                versioned,
            })
        }
    }
}

/// The state table's columns as a run finds them.
struct StateColumns {
    /// The columns of the next state: every version's in use, then any the table has that no
    /// definition makes any more (a removed step keeps its history; nothing reads it).
    all: Vec<String>,
    /// The TIMESTAMP columns the table has.
    have: Vec<String>,
    /// Whether it has the version column (a state written before versions has not).
    versioned: bool,
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

/// Every cell of a reply's first column, as text.
fn first_column(reply: &Reply) -> Vec<String> {
    let mut out = Vec::new();
    for b in &reply.batches {
        if let Some(c) = b.columns().first() {
            out.extend((0..b.num_rows()).filter_map(|r| crate::value::cell_text(c.as_ref(), r)));
        }
    }
    out
}

/// What `journey check` found: the definition fits the database, and what it would do to the live
/// state.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// State columns the definition adds (new positions: empty for customers already inside).
    pub added: Vec<String>,
    /// Columns of the live state the definition no longer makes, with the customers who have a
    /// time there: their history is kept, but nothing moves them on from a removed position.
    pub retired: Vec<(String, u64)>,
    /// Customers in the live state.
    pub customers: u64,
    /// What the definition lets happen that is probably not meant (dead ends).
    pub warnings: Vec<String>,
    /// The newest stored definition version, if the journey has run.
    pub version: Option<i64>,
    /// How the definition differs from that version.
    pub changes: Vec<crate::def::Change>,
    /// Whether running it needs `--publish` (a change beyond names: customers inside stay on
    /// their version, new ones enter the new one).
    pub needs_publish: bool,
    /// Customers per definition version they are on.
    pub per_version: Vec<(i64, u64)>,
}

/// Dead ends: the last stage without a goal whose steps end without an `end` step leaves its
/// customers with nothing left to happen (the report counts them as "steps done").
fn dead_ends(j: &Journey) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = j.stages.last() {
        let ends = s.steps.last().is_some_and(|st| st.kind == StepKind::End);
        if s.goal.is_none() && !ends {
            out.push(format!(
                "customers who finish the steps of the last stage {:?} have nothing left to happen: add an end step (kind = \"end\") or a stage goal",
                s.name
            ));
        }
    }
    out
}

/// Checks a definition against the database (tables, columns, condition syntax) without running,
/// and compares it with the live state.
pub fn check(session: &mut dyn Session, j: &Journey, now_us: i64) -> Result<CheckReport, RunError> {
    let mut ctx = Ctx {
        s: session,
        statements: 0,
    };
    Compiled::new(&mut ctx, j, now_us)?;
    let mut out = CheckReport {
        warnings: dead_ends(j),
        ..CheckReport::default()
    };
    // Against the newest stored version: the same, a rename, or a new version to publish.
    let stored = load_versions(&mut ctx, &j.state_table)?;
    if let Some((id, text)) = stored.last() {
        let old = crate::def::parse(text).map_err(RunError::Def)?;
        out.version = Some(*id);
        out.changes = crate::def::diff(&old, j);
        out.needs_publish = out.changes.iter().any(|c| c.semantic);
    }
    let Some(schema) = schema_of(&mut ctx, &j.state_table)? else {
        out.added = j.columns();
        return Ok(out);
    };
    let want = j.columns();
    let have: Vec<String> = schema
        .fields()
        .iter()
        .skip(1)
        .map(|f| f.name().clone())
        .filter(|f| f != VERSION_COL)
        .collect();
    let versioned = schema.fields().iter().any(|f| f.name() == VERSION_COL);
    if let Some(newest) = out.version {
        for v in 1..=newest {
            let n = customers_on(&mut ctx, &j.state_table, v, versioned)?;
            if n > 0 {
                out.per_version.push((v, n));
            }
        }
    }
    out.added = want.iter().filter(|c| !have.contains(c)).cloned().collect();
    out.customers = count(&ctx.run(&format!("SELECT count(*) FROM {}", j.state_table))?);
    for h in have.iter().filter(|h| !want.contains(h)) {
        let n = count(&ctx.run(&format!("SELECT count({h}) FROM {}", j.state_table))?);
        out.retired.push((h.clone(), n));
    }
    Ok(out)
}

/// A run's scratch tables (names starting `<state>__`) left by runs that died: dropped under the
/// run lock, so no live run owns them.
fn drop_stale(ctx: &mut Ctx<'_>, st: &str) -> Result<(), RunError> {
    let names = first_column(&ctx.run("SELECT table_name FROM information_schema.tables")?);
    let prefix = format!("{st}__");
    let stale: Vec<&String> = names.iter().filter(|n| n.starts_with(&prefix)).collect();
    if !stale.is_empty() {
        let list: Vec<&str> = stale.iter().map(|s| s.as_str()).collect();
        ctx.run(&format!("DROP TABLE IF EXISTS {}", list.join(", ")))?;
    }
    Ok(())
}

/// The latest run recorded in `<state>_runs`: (run id, its time).
fn last_run(ctx: &mut Ctx<'_>, runs: &str) -> Result<Option<(i64, i64)>, RunError> {
    if schema_of(ctx, runs)?.is_none() {
        return Ok(None);
    }
    let r = ctx.run(&format!(
        "SELECT run_id, run_at FROM {runs} ORDER BY run_id DESC LIMIT 1"
    ))?;
    let Some(b) = r.batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let id = b
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .filter(|a| a.is_valid(0))
        .map(|a| a.value(0));
    let at = b
        .column(1)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .filter(|a| a.is_valid(0))
        .map(|a| a.value(0));
    Ok(id.zip(at))
}

/// The state's column holding the definition version each customer entered with.
pub const VERSION_COL: &str = "journey_version";

/// Columns of the run records table `<state>_runs`, after its key `run`.
const RUN_COLUMNS: &str =
    "run_id BIGINT MERGE MIN, run_at TIMESTAMP MERGE MIN, passes BIGINT MERGE MIN, \
    entered BIGINT MERGE MIN, transitions BIGINT MERGE MIN, activations BIGINT MERGE MIN, \
    checked_rows BIGINT MERGE MIN, columns BIGINT MERGE MIN, version BIGINT MERGE MIN, \
    rolled_back_to BIGINT MERGE MIN, \
    duration_ms BIGINT MERGE MIN";

/// Advances the journey by one run at `opts.now_us`.
///
/// The run holds the journey's lock (`LOCK TABLE <state> NOWAIT`; a second run of the same journey
/// is refused while it runs) and works in scratch tables named after its run id. It publishes the
/// new state, the activation log with this run's activations and the run's record in **one**
/// commit (`RENAME TABLE` of the three pairs), or nothing.
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
    // The definition is checked against the database before anything is locked or written.
    Compiled::new(&mut ctx, j, opts.now_us)?;
    lock(&mut ctx, j)?;
    let out = locked_run(&mut ctx, j, opts, t0);
    // Whatever happened, the scratch tables go and the lock is released (COMMIT ends it).
    let cleanup = drop_stale(&mut ctx, &j.state_table);
    let unlock = ctx.run("COMMIT");
    let mut report = out?;
    cleanup?;
    unlock?;
    report.statements = ctx.statements;
    report.elapsed = t0.elapsed();
    Ok(report)
}

fn locked_run(
    ctx: &mut Ctx<'_>,
    j: &Journey,
    opts: &RunOptions,
    t0: Instant,
) -> Result<RunReport, RunError> {
    let st = j.state_table.clone();
    drop_stale(ctx, &st)?;
    let plan = version_plan(ctx, j, opts.publish)?;
    let last = last_run(ctx, &format!("{st}_runs"))?;
    let run_id = last.map_or(1, |(id, _)| id + 1);
    let mut newest = Compiled::new(ctx, j, opts.now_us)?;
    newest.set_run(run_id, plan.newest, true);
    // Every version's columns (the newest first), for the next state and the run's tables.
    let mut want = j.columns();
    for (_, old) in &plan.older {
        want.extend(
            old.columns()
                .into_iter()
                .filter(|c| !want.contains(c))
                .collect::<Vec<_>>(),
        );
    }
    let cols = state_columns(ctx, &newest, &want)?;
    if plan.stored == 0 {
        entry_check(ctx, j, &cols.have)?;
    }
    if !opts.allow_backfill {
        backfill_check(ctx, &st, &cols.have, last, opts.now_us)?;
    }
    // The older versions that still have customers run beside the newest.
    let mut cs = Vec::new();
    for (v, old) in &plan.older {
        if customers_on(ctx, &st, *v, cols.versioned)? > 0 {
            let mut c = Compiled::new(ctx, old, opts.now_us)?;
            c.set_run(run_id, *v, false);
            cs.push(c);
        }
    }
    let tx = format!("{st}__r{run_id}_tx");
    cs.push(newest);
    let sole = cs.len() == 1;
    for c in &mut cs {
        c.sole = sole;
    }
    let Some(c) = cs.last() else {
        return Err(RunError::StateMismatch("no definition to run".into()));
    };
    start_next(ctx, c, &cols, &want, &tx)?;
    for c in &mut cs {
        c.cache_criteria(ctx, &cols.have)?;
    }
    let mut report = RunReport {
        run_id,
        version: plan.newest,
        ..RunReport::default()
    };
    let per_col = advance(ctx, &cs, &mut report, &want, &tx)?;
    report.transitions = want
        .iter()
        .filter_map(|col| per_col.get(col).map(|&n| (col.clone(), n)))
        .collect();
    check_run(ctx, &cs, &mut report, opts, &want)?;
    let acts = activation_steps(&cs);
    report.activations = run_activations(ctx, &acts, &tx)?;
    if report.violations.iter().any(|v| v.changed + v.sampled > 0) || opts.dry_run {
        return Ok(report);
    }
    // Re-running the time of the last run with nothing to move changes nothing: no commit.
    if moved_nothing(&report)
        && plan.write.is_none()
        && last.is_some_and(|(_, at)| at == opts.now_us)
    {
        report.swapped = true;
        report.unchanged = true;
        return Ok(report);
    }
    let Some(c) = cs.last() else {
        return Err(RunError::StateMismatch("no definition to run".into()));
    };
    let entered = per_col.get(&j.stage_col(0)).copied().unwrap_or(0);
    publish(
        ctx,
        c,
        &report,
        &Publish {
            prev_run: last.map(|(id, _)| id),
            keep_snapshots: opts.keep_snapshots,
            entered,
            acts: &acts,
            tx: &tx,
            version_text: plan.write.as_deref(),
            t0,
        },
    )?;
    prune_snapshots(ctx, &st, opts.keep_snapshots)?;
    report.published_version = plan.write.is_some();
    report.swapped = true;
    Ok(report)
}

/// The run's next state (a copy of the state with every column in use) and its empty
/// transitions table.
fn start_next(
    ctx: &mut Ctx<'_>,
    c: &Compiled<'_>,
    cols: &StateColumns,
    want: &[String],
    tx: &str,
) -> Result<(), RunError> {
    let (st, next) = (&c.j.state_table, &c.next);
    ctx.run(&c.create_temp(next, &cols.all))?;
    if !cols.have.is_empty() {
        let mut copied = cols.have.clone();
        if cols.versioned {
            copied.push(VERSION_COL.to_string());
        }
        ctx.run(&format!(
            "INSERT INTO {next} (customer_id, {0}) SELECT customer_id, {0} FROM {st}",
            copied.join(", ")
        ))?;
    }
    ctx.run(&c.create_temp(tx, want))?;
    Ok(())
}

/// A state written before versions were kept must hold the definition's entry column: without it
/// every customer inside would enter again (a renamed first stage).
fn entry_check(ctx: &mut Ctx<'_>, j: &Journey, have: &[String]) -> Result<(), RunError> {
    let (st, entry) = (&j.state_table, j.stage_col(0));
    if have.contains(&entry) {
        return Ok(());
    }
    let n = count(&ctx.run(&format!("SELECT count(*) FROM {st}"))?);
    if n > 0 {
        return Err(RunError::StateMismatch(format!(
            "the state {st} holds {n} customers but not the definition's entry column {entry:?}: every one of them would enter the journey again. Was the first stage renamed? Give it id = \"..\" with its old id (a column of {st})"
        )));
    }
    Ok(())
}

/// A run may not go back before the latest time in the state or the last run.
fn backfill_check(
    ctx: &mut Ctx<'_>,
    st: &str,
    have: &[String],
    last: Option<(i64, i64)>,
    now_us: i64,
) -> Result<(), RunError> {
    let last_us = latest_stamp(ctx, st, have)?.max(last.map(|(_, at)| at));
    match last_us {
        Some(last_us) if now_us < last_us => Err(RunError::Backwards { now_us, last_us }),
        _ => Ok(()),
    }
}

/// The activation steps of every version run, with the version (a column may be an activation
/// in one version and not in another).
fn activation_steps(cs: &[Compiled<'_>]) -> Vec<Activation> {
    cs.iter()
        .rev()
        .flat_map(|c| {
            c.j.activations()
                .into_iter()
                .map(|(column, channel)| Activation {
                    column,
                    channel,
                    version: c.version,
                })
        })
        .collect()
}

/// The customers on version `v` in the state.
fn customers_on(ctx: &mut Ctx<'_>, st: &str, v: i64, versioned: bool) -> Result<u64, RunError> {
    let cond = match (versioned, v) {
        (false, 1) => "TRUE".to_string(),
        (false, _) => return Ok(0),
        (true, 1) => format!("({VERSION_COL} = 1 OR {VERSION_COL} IS NULL)"),
        (true, v) => format!("{VERSION_COL} = {v}"),
    };
    Ok(count(
        &ctx.run(&format!("SELECT count(*) FROM {st} WHERE {cond}"))?,
    ))
}

/// Which definition versions a run uses.
struct VersionPlan {
    /// Versions stored before the run.
    stored: usize,
    /// The newest version: the one new customers enter.
    newest: i64,
    /// The text to store for the newest version in this run's commit (a first or new version,
    /// or the newest renamed), if any.
    write: Option<String>,
    /// The older versions, parsed.
    older: Vec<(i64, Journey)>,
}

/// The stored versions of a journey: (id, canonical TOML), oldest first.
fn load_versions(ctx: &mut Ctx<'_>, st: &str) -> Result<Vec<(i64, String)>, RunError> {
    let t = format!("{st}_versions");
    if schema_of(ctx, &t)?.is_none() {
        return Ok(Vec::new());
    }
    let r = ctx.run(&format!(
        "SELECT version_id, definition FROM {t} ORDER BY version_id"
    ))?;
    let mut out = Vec::new();
    for b in &r.batches {
        for i in 0..b.num_rows() {
            let id = crate::value::cell_text(b.column(0).as_ref(), i).and_then(|v| v.parse().ok());
            let text = crate::value::cell_text(b.column(1).as_ref(), i);
            if let (Some(id), Some(text)) = (id, text) {
                out.push((id, text));
            }
        }
    }
    Ok(out)
}

/// How `j` relates to the stored versions: the same as the newest, the newest up to names (its
/// text is updated), or a new version (only with `publish`; refused otherwise, with the changes).
fn version_plan(ctx: &mut Ctx<'_>, j: &Journey, publish: bool) -> Result<VersionPlan, RunError> {
    let stored = load_versions(ctx, &j.state_table)?;
    let mut parsed = Vec::new();
    for (id, text) in &stored {
        let old = crate::def::parse(text).map_err(|e| {
            RunError::Def(DefError {
                line: 0,
                message: format!("stored version {id} of journey {}: {e}", j.name),
            })
        })?;
        parsed.push((*id, old));
    }
    let text = j.render();
    let Some((last_id, last)) = parsed.last() else {
        return Ok(VersionPlan {
            stored: 0,
            newest: 1,
            write: Some(text),
            older: Vec::new(),
        });
    };
    let last_id = *last_id;
    if last.render() == text {
        parsed.pop();
        return Ok(VersionPlan {
            stored: stored.len(),
            newest: last_id,
            write: None,
            older: parsed,
        });
    }
    if last.same_shape(j) {
        parsed.pop();
        return Ok(VersionPlan {
            stored: stored.len(),
            newest: last_id,
            write: Some(text),
            older: parsed,
        });
    }
    if !publish {
        return Err(RunError::NeedsPublish {
            version: last_id,
            changes: crate::def::diff(last, j)
                .into_iter()
                .map(|c| c.text)
                .collect(),
        });
    }
    Ok(VersionPlan {
        stored: stored.len(),
        newest: last_id + 1,
        write: Some(text),
        older: parsed,
    })
}

/// The passes of a run: every rule's customers stamped with the run's time, folded into the next
/// state and the run's transitions, until a pass moves nobody. Returns the count per column.
fn advance(
    ctx: &mut Ctx<'_>,
    cs: &[Compiled<'_>],
    report: &mut RunReport,
    want: &[String],
    tx: &str,
) -> Result<BTreeMap<String, u64>, RunError> {
    let Some(c) = cs.last() else {
        return Ok(BTreeMap::new());
    };
    let (next, pass) = (&c.next, format!("{}pass", c.scratch));
    // Every version's rules; stamps are the run's time, and every row a rule writes carries the
    // rule's version (a new customer enters the newest).
    let rules: Vec<(String, Vec<String>, i64)> = cs
        .iter()
        .flat_map(|c| {
            c.rules()
                .into_iter()
                .map(|(set, cols)| (set, cols, c.version))
        })
        .collect();
    let mut per_col: BTreeMap<String, u64> = BTreeMap::new();
    let cols = format!("{}, {VERSION_COL}", want.join(", "));
    // Every pass stamps at least one new column of each customer it moves, so the number of
    // columns bounds the passes.
    let max_passes = want.len() + 1;
    loop {
        report.passes += 1;
        ctx.run(&c.create_temp(&pass, want))?;
        let mut moved = 0;
        for (set, cols, version) in &rules {
            let stamps: Vec<String> = cols.iter().map(|_| c.now.clone()).collect();
            let sql = format!(
                "INSERT INTO {pass} (customer_id, {}, {VERSION_COL}) SELECT customer_id, {}, {version} FROM ({set}) x",
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
            ctx.run(&format!(
                "INSERT INTO {next} (customer_id, {cols}) SELECT customer_id, {cols} FROM {pass}"
            ))?;
            ctx.run(&format!("INSERT INTO {tx} SELECT * FROM {pass}"))?;
        }
        ctx.run(&format!("DROP TABLE {pass}"))?;
        if moved == 0 || report.passes >= max_passes {
            break;
        }
    }
    Ok(per_col)
}

/// The consistency check: every row this run changed in full, the rest on a sample.
fn check_run(
    ctx: &mut Ctx<'_>,
    cs: &[Compiled<'_>],
    report: &mut RunReport,
    opts: &RunOptions,
    want: &[String],
) -> Result<(), RunError> {
    let Some(c) = cs.last() else {
        return Ok(());
    };
    let next = &c.next;
    // A row this run changed has a column stamped with the run's time (a re-run at the same time
    // re-checks the rows of the run before it: harmless).
    let stamped: Vec<String> = want
        .iter()
        .map(|col| format!("{col} = {}", c.now))
        .collect();
    let changed = format!("({})", stamped.join(" OR "));
    // Each version's invariants, on its own customers.
    let mut classes: Vec<(String, String)> = Vec::new();
    for v in cs {
        for (class, conds) in v.invariants() {
            let class = if cs.len() > 1 {
                format!("version {}: {class}", v.version)
            } else {
                class.to_string()
            };
            classes.push((
                class,
                if v.sole {
                    format!("({})", conds.join(" OR "))
                } else {
                    format!("({} AND ({}))", v.of_version(), conds.join(" OR "))
                },
            ));
        }
    }
    let bad: Vec<String> = classes.iter().map(|(_, b)| b.clone()).collect();
    // One scan for every class over the changed rows (selected once, not per class), one over
    // the sample.
    let full: Vec<String> = bad
        .iter()
        .map(|b| format!("count(*) FILTER (WHERE {b})"))
        .collect();
    let row = ctx.run(&format!(
        "SELECT count(*), {} FROM {next} WHERE {changed}",
        full.join(", ")
    ))?;
    let counts = |r: &Reply| -> Vec<u64> {
        r.batches
            .first()
            .map(first_row)
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.and_then(|v| v.parse().ok()).unwrap_or(0))
            .collect()
    };
    let full = counts(&row);
    report.checked_rows = full.first().copied().unwrap_or(0);
    let sample: Vec<String> = bad
        .iter()
        .map(|b| format!("count(*) FILTER (WHERE {b})"))
        .collect();
    let seed = opts.now_us.rem_euclid(1 << 31);
    let sampled = counts(&ctx.run(&format!(
        "SELECT {} FROM {next} TABLESAMPLE BERNOULLI ({}) REPEATABLE ({seed})",
        sample.join(", "),
        opts.check_percent
    ))?);
    for (x, ((class, _), b)) in classes.iter().zip(&bad).enumerate() {
        let changed_n = full.get(x + 1).copied().unwrap_or(0);
        let sampled_n = sampled.get(x).copied().unwrap_or(0);
        let mut keys = Vec::new();
        if changed_n > 0 {
            keys = first_column(&ctx.run(&format!(
                "SELECT customer_id FROM {next} WHERE {changed} AND {b} ORDER BY customer_id LIMIT 5"
            ))?);
        } else if sampled_n > 0 {
            keys = first_column(&ctx.run(&format!(
                "SELECT customer_id FROM {next} WHERE {b} ORDER BY customer_id LIMIT 5"
            ))?);
        }
        report.violations.push(Violation {
            class: class.to_string(),
            changed: changed_n,
            sampled: sampled_n,
            keys,
        });
    }
    Ok(())
}

/// The activation log the run publishes: the old log plus this run's activations (from its
/// transitions), each with the run's id; positions the definition no longer makes keep their log.
fn next_log(
    ctx: &mut Ctx<'_>,
    c: &Compiled<'_>,
    run_id: i64,
    acts: &[Activation],
    tx: &str,
) -> Result<String, RunError> {
    let (j, p) = (c.j, &c.scratch);
    let acts_t = format!("{}_activations", j.state_table);
    let log_next = format!("{p}activations");
    let log_have = match schema_of(ctx, &acts_t)? {
        Some(s) => s
            .fields()
            .iter()
            .skip(1)
            .map(|f| f.name().clone())
            .collect(),
        None => Vec::new(),
    };
    let mut log_cols: Vec<String> = Vec::new();
    for a in acts {
        let col = &a.column;
        if !log_cols.iter().any(|d| d.starts_with(&format!("{col} "))) {
            log_cols.push(format!("{col} TIMESTAMP MERGE MIN"));
            log_cols.push(format!("{col}__run BIGINT MERGE MIN"));
        }
    }
    let named = |cols: &[String]| -> Vec<String> {
        cols.iter()
            .filter_map(|d| d.split_whitespace().next().map(str::to_string))
            .collect()
    };
    for h in &log_have {
        if !named(&log_cols).contains(h) {
            // A position the definition no longer makes: its log stays.
            let ty = if h.ends_with("__run") {
                "BIGINT"
            } else {
                "TIMESTAMP"
            };
            log_cols.push(format!("{h} {ty} MERGE MIN"));
        }
    }
    ctx.run(&format!(
        "CREATE TEMP TABLE {log_next} (customer_id {} PRIMARY KEY{}{})",
        c.key_type,
        if log_cols.is_empty() { "" } else { ", " },
        log_cols.join(", ")
    ))?;
    if !log_have.is_empty() {
        ctx.run(&format!(
            "INSERT INTO {log_next} (customer_id, {0}) SELECT customer_id, {0} FROM {acts_t}",
            log_have.join(", ")
        ))?;
    }
    for a in acts {
        let (col, v) = (&a.column, a.version);
        ctx.run(&format!(
            "INSERT INTO {log_next} (customer_id, {col}, {col}__run) SELECT customer_id, {col}, {run_id} FROM {tx} WHERE {col} IS NOT NULL AND {VERSION_COL} = {v}"
        ))?;
    }
    Ok(log_next)
}

/// Publishes the run in one commit: the next state, the activation log with this run's
/// activations (from `tx`) and the run records with this run's.
fn publish(
    ctx: &mut Ctx<'_>,
    c: &Compiled<'_>,
    report: &RunReport,
    what: &Publish<'_>,
) -> Result<(), RunError> {
    let had_runs = what.prev_run.is_some();
    let j = c.j;
    let (st, p, next, run_id) = (&j.state_table, &c.scratch, &c.next, report.run_id);
    let (acts_t, runs_t, vers_t) = (
        format!("{st}_activations"),
        format!("{st}_runs"),
        format!("{st}_versions"),
    );
    let log_next = next_log(ctx, c, run_id, what.acts, what.tx)?;
    let key = |id: i64| id_key(c.key_type, id);
    // The run's record.
    let runs_next = format!("{p}runs");
    ctx.run(&format!(
        "CREATE TEMP TABLE {runs_next} (run {} PRIMARY KEY, {RUN_COLUMNS})",
        c.key_type
    ))?;
    if had_runs {
        ctx.run(&format!("INSERT INTO {runs_next} SELECT * FROM {runs_t}"))?;
    }
    ctx.run(&format!(
        "INSERT INTO {runs_next} VALUES ({}, {run_id}, {}, {}, {}, {}, {}, {}, {}, {}, NULL, {})",
        key(run_id),
        c.now,
        report.passes,
        what.entered,
        report.total_transitions(),
        report.activations.len(),
        report.checked_rows,
        j.columns().len(),
        report.version,
        what.t0.elapsed().as_millis()
    ))?;
    // One commit: the state, the log, the run records and a new definition version, or none of
    // them. The state the last run published becomes its snapshot, for `journey rollback`.
    let old_state = match what.prev_run {
        Some(prev) if what.keep_snapshots > 0 => snapshot_name(st, prev),
        _ => format!("{p}old_state"),
    };
    let mut pairs = vec![format!("{st} TO {old_state}"), format!("{next} TO {st}")];
    if schema_of(ctx, &acts_t)?.is_some() {
        pairs.push(format!("{acts_t} TO {p}old_activations"));
    }
    pairs.push(format!("{log_next} TO {acts_t}"));
    if had_runs {
        pairs.push(format!("{runs_t} TO {p}old_runs"));
    }
    pairs.push(format!("{runs_next} TO {runs_t}"));
    if let Some(text) = what.version_text {
        let vers_next = format!("{p}versions");
        ctx.run(&format!(
            "CREATE TEMP TABLE {vers_next} (version {} PRIMARY KEY, version_id BIGINT MERGE MIN, published TIMESTAMP MERGE MIN, definition VARCHAR MERGE LAST)",
            c.key_type
        ))?;
        if schema_of(ctx, &vers_t)?.is_some() {
            ctx.run(&format!("INSERT INTO {vers_next} SELECT * FROM {vers_t}"))?;
            pairs.push(format!("{vers_t} TO {p}old_versions"));
        }
        ctx.run(&format!(
            "INSERT INTO {vers_next} VALUES ({}, {}, {}, '{}')",
            key(report.version),
            report.version,
            c.now,
            text.replace('\'', "''")
        ))?;
        pairs.push(format!("{vers_next} TO {vers_t}"));
    }
    ctx.run(&format!("RENAME TABLE {}", pairs.join(", ")))?;
    Ok(())
}

/// What a run publishes besides its state and report.
struct Publish<'a> {
    /// The run before it (whose state becomes a snapshot).
    prev_run: Option<i64>,
    keep_snapshots: usize,
    /// Customers who entered in this run.
    entered: u64,
    /// The activation steps of every version run.
    acts: &'a [Activation],
    /// The run's transitions table.
    tx: &'a str,
    /// The newest version's text, when this run stores it.
    version_text: Option<&'a str>,
    t0: Instant,
}

fn moved_nothing(r: &RunReport) -> bool {
    r.total_transitions() == 0
}

/// The run's activations (customer key, step column, channel), read from its transitions.
fn run_activations(
    ctx: &mut Ctx<'_>,
    acts: &[Activation],
    tx: &str,
) -> Result<Vec<(String, String, String)>, RunError> {
    let mut out = Vec::new();
    for a in acts {
        let keys = first_column(&ctx.run(&format!(
            "SELECT customer_id FROM {tx} WHERE {} IS NOT NULL AND {VERSION_COL} = {} ORDER BY customer_id",
            a.column, a.version
        ))?);
        out.extend(
            keys.into_iter()
                .map(|k| (k, a.column.clone(), a.channel.clone())),
        );
    }
    Ok(out)
}

/// An activation step of a definition version.
struct Activation {
    column: String,
    channel: String,
    version: i64,
}

/// The latest time stamped anywhere in the state's `columns` (every stamp is some run's time), or
/// `None` for an empty state.
fn latest_stamp(ctx: &mut Ctx<'_>, st: &str, columns: &[String]) -> Result<Option<i64>, RunError> {
    if columns.is_empty() {
        return Ok(None);
    }
    let maxes: Vec<String> = columns.iter().map(|c| format!("max({c})")).collect();
    let reply = ctx.run(&format!("SELECT {} FROM {st}", maxes.join(", ")))?;
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

/// The key literal of run or version `id` in `<state>_runs` / `<state>_versions`: the number in a
/// BIGINT-keyed database, zero-padded text (so keys sort by id) in a VARCHAR-keyed one.
fn id_key(key_type: &str, id: i64) -> String {
    if key_type == "BIGINT" {
        id.to_string()
    } else {
        format!("'{id:010}'")
    }
}

/// The snapshot of the state as run `run` published it.
fn snapshot_name(st: &str, run: i64) -> String {
    format!("{st}_snap_r{run}")
}

/// The tables journey `j` owns: its state table and every table named `<state>_…` (its
/// activation log, run log, snapshots, stored versions and any scratch table a dead run left).
pub fn tables(session: &mut dyn Session, j: &Journey) -> Result<Vec<String>, RunError> {
    let st = &j.state_table;
    let prefix = format!("{st}_");
    let sql = "SELECT table_name FROM information_schema.tables";
    let reply = session.run(sql).map_err(|e| RunError::Sql {
        sql: sql.to_string(),
        message: e.to_string(),
    })?;
    Ok(first_column(&reply)
        .into_iter()
        .filter(|n| n == st || n.starts_with(&prefix))
        .collect())
}

/// The runs that have a snapshot, newest first.
fn snapshots(ctx: &mut Ctx<'_>, st: &str) -> Result<Vec<i64>, RunError> {
    let prefix = format!("{st}_snap_r");
    let names = first_column(&ctx.run("SELECT table_name FROM information_schema.tables")?);
    let mut runs: Vec<i64> = names
        .iter()
        .filter_map(|n| n.strip_prefix(&prefix).and_then(|r| r.parse().ok()))
        .collect();
    runs.sort_unstable_by(|a, b| b.cmp(a));
    Ok(runs)
}

/// Drops the snapshots beyond the newest `keep`.
fn prune_snapshots(ctx: &mut Ctx<'_>, st: &str, keep: usize) -> Result<(), RunError> {
    let old: Vec<String> = snapshots(ctx, st)?
        .into_iter()
        .skip(keep)
        .map(|r| snapshot_name(st, r))
        .collect();
    if !old.is_empty() {
        ctx.run(&format!("DROP TABLE IF EXISTS {}", old.join(", ")))?;
    }
    Ok(())
}

/// What `journey rollback` did.
#[derive(Debug, Clone)]
pub struct RollbackReport {
    /// The rollback's own run id (it is recorded in `<state>_runs` like a run).
    pub run_id: i64,
    /// The run whose state is live again.
    pub to_run: i64,
    /// That run's time.
    pub at_us: i64,
    /// Customers in the restored state.
    pub customers: u64,
}

/// Restores the state as run `to_run` published it, from its snapshot, in one commit with a run
/// record (`rolled_back_to`). The state it replaces becomes the snapshot of the latest run, so a
/// rollback can itself be rolled back. The activation log is not rolled back: what was sent was
/// sent, and a customer activated again after a rollback keeps the log's first entry.
pub fn rollback(
    session: &mut dyn Session,
    j: &Journey,
    to_run: i64,
) -> Result<RollbackReport, RunError> {
    let t0 = Instant::now();
    let mut ctx = Ctx {
        s: session,
        statements: 0,
    };
    lock(&mut ctx, j)?;
    let out = locked_rollback(&mut ctx, j, to_run, t0);
    let cleanup = drop_stale(&mut ctx, &j.state_table);
    let unlock = ctx.run("COMMIT");
    let report = out?;
    cleanup?;
    unlock?;
    Ok(report)
}

fn locked_rollback(
    ctx: &mut Ctx<'_>,
    j: &Journey,
    to_run: i64,
    t0: Instant,
) -> Result<RollbackReport, RunError> {
    let st = &j.state_table;
    let runs_t = format!("{st}_runs");
    let Some((last, _)) = last_run(ctx, &runs_t)? else {
        return Err(RunError::Rollback(format!(
            "journey {} has no runs",
            j.name
        )));
    };
    if to_run == last {
        return Err(RunError::Rollback(format!(
            "run {to_run} is the latest run: its state is the live one"
        )));
    }
    let snap = snapshot_name(st, to_run);
    let kept = snapshots(ctx, st)?;
    if !kept.contains(&to_run) {
        let list: Vec<String> = kept.iter().map(i64::to_string).collect();
        return Err(RunError::Rollback(format!(
            "no snapshot of run {to_run} (kept: {}; journey run --keep-snapshots sets how many)",
            if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            }
        )));
    }
    let at = ctx.run(&format!(
        "SELECT run_at FROM {runs_t} WHERE run_id = {to_run}"
    ))?;
    let at_us = at
        .batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .filter(|a| a.is_valid(0))
                .map(|a| a.value(0))
        })
        .ok_or_else(|| RunError::Rollback(format!("run {to_run} has no record")))?;
    let run_id = last + 1;
    let p = format!("{st}__r{run_id}_");
    let runs_next = format!("{p}runs");
    let key_type = match schema_of(ctx, &runs_t)?.and_then(|s| s.fields().first().cloned()) {
        Some(f) if *f.data_type() == DataType::Int64 => "BIGINT",
        _ => "VARCHAR",
    };
    ctx.run(&format!(
        "CREATE TEMP TABLE {runs_next} (run {key_type} PRIMARY KEY, {RUN_COLUMNS})"
    ))?;
    ctx.run(&format!("INSERT INTO {runs_next} SELECT * FROM {runs_t}"))?;
    let key = id_key(key_type, run_id);
    let customers = count(&ctx.run(&format!("SELECT count(*) FROM {snap}"))?);
    let columns = schema_of(ctx, &snap)?.map_or(0, |s| s.fields().len().saturating_sub(1));
    ctx.run(&format!(
        "INSERT INTO {runs_next} VALUES ({key}, {run_id}, {}, 0, 0, 0, 0, 0, {columns}, NULL, {to_run}, {})",
        ts_literal(at_us),
        t0.elapsed().as_millis()
    ))?;
    ctx.run(&format!(
        "RENAME TABLE {st} TO {}, {snap} TO {st}, {runs_t} TO {p}old_runs, {runs_next} TO {runs_t}",
        snapshot_name(st, last)
    ))?;
    Ok(RollbackReport {
        run_id,
        to_run,
        at_us,
        customers,
    })
}

/// Takes the journey's lock (`LOCK TABLE <state> NOWAIT`), or says another run holds it.
fn lock(ctx: &mut Ctx<'_>, j: &Journey) -> Result<(), RunError> {
    let sql = format!("LOCK TABLE {} NOWAIT", j.state_table);
    ctx.statements += 1;
    match ctx.s.run(&sql) {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("could not obtain lock") => {
            Err(RunError::Locked(j.name.clone()))
        }
        Err(e) => Err(RunError::Sql {
            sql,
            message: e.to_string(),
        }),
    }
}
