//! Journey definitions: the TOML file, checked into a [`Journey`] with every problem named by line.
//!
//! The format is documented in `examples/journey.toml`. Every stage, step, branch and exit has an
//! id (given with `id = ".."`, or derived from its name: lower case, other characters as `_`), and
//! the columns of the state table are named by ids, never by position (`welcome`,
//! `welcome__wait`, `welcome__clicked__yes`, `welcome__exit__unsubscribed`, `welcome__goal`,
//! `goal`): inserting, removing or reordering steps leaves every other column as it is.

use serde::Deserialize;
use toml::Spanned;

/// A journey definition error, with the line it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefError {
    /// 1-based line in the file (0 when the problem is not tied to a line).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for DefError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for DefError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJourney {
    name: Spanned<String>,
    state_table: Option<Spanned<String>>,
    audience: Spanned<RawAudience>,
    #[serde(default, rename = "stage")]
    stages: Vec<Spanned<RawStage>>,
    #[serde(default, rename = "exit")]
    exits: Vec<Spanned<RawNamed>>,
    goal: Option<Spanned<RawCriterion>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudience {
    table: Option<Spanned<String>>,
    #[serde(rename = "where")]
    cond: Spanned<String>,
    #[serde(default)]
    exit_on_audience_leave: bool,
    #[serde(default)]
    suppress_if_goal_met: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCriterion {
    table: Option<Spanned<String>>,
    #[serde(rename = "where")]
    cond: Spanned<String>,
    time: Option<Spanned<String>>,
    since: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: Spanned<String>,
    id: Option<Spanned<String>>,
    #[serde(default, rename = "step")]
    steps: Vec<Spanned<RawStep>>,
    #[serde(default, rename = "exit")]
    exits: Vec<Spanned<RawNamed>>,
    goal: Option<Spanned<RawCriterion>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Spanned<String>,
    id: Option<Spanned<String>>,
    kind: Spanned<String>,
    duration: Option<Spanned<String>>,
    #[serde(default, rename = "branch")]
    branches: Vec<Spanned<RawNamed>>,
    default: Option<Spanned<String>>,
    channel: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamed {
    name: Spanned<String>,
    id: Option<Spanned<String>>,
    table: Option<Spanned<String>>,
    #[serde(rename = "where")]
    cond: Spanned<String>,
    time: Option<Spanned<String>>,
    since: Option<Spanned<String>>,
    goto: Option<Spanned<String>>,
}

/// A condition over one table: the customers `SELECT <key> FROM table WHERE cond` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    /// The table.
    pub table: String,
    /// A SQL condition over its columns; `now()` is the run's time.
    pub cond: String,
    /// Line of the condition in the file.
    pub line: usize,
    /// A SQL expression over the table giving when the triggering event happened: given with
    /// `time = ".."`, or the column of a condition of the form `column <= now()`. Outcomes that
    /// become true in one run are taken in the order of their times.
    pub time: Option<String>,
    /// The event must be at or after this point of the customer's own journey.
    pub since: Option<Since>,
}

/// The point of a customer's journey a criterion's event must not precede (`since = ..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// The customer's entry into the journey (`since = "entry"`).
    Entry,
    /// The customer's entry into the criterion's stage (`since = "stage"`).
    Stage,
    /// A step of the same stage before the decision, by index (`since = "<step id>"`).
    Step(usize),
}

/// Where a criterion sits: which `since` it may use.
#[derive(Clone, Copy)]
enum Place<'a> {
    /// The audience: no time, no since.
    Audience,
    /// The journey goal or a journey exit: `since = "entry"`.
    Journey,
    /// A stage exit or goal: `entry` or `stage`.
    Stage,
    /// A decision branch: `entry`, `stage` or the id of an earlier step of its stage.
    Branch(&'a [String]),
}

/// One branch of a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// Its name.
    pub name: String,
    /// Its id (part of its column's name).
    pub id: String,
    /// Who takes it.
    pub criterion: Criterion,
    /// A later stage (index) the branch jumps to, if any.
    pub goto: Option<usize>,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Wait this many microseconds after the previous step.
    Wait(i64),
    /// Branches in order (the first that matches wins) and the default branch's name.
    Decision(Vec<Branch>, String),
    /// Send to a channel.
    Activation(String),
    /// The end of the journey for whoever reaches it.
    End,
}

/// A step of a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Its name.
    pub name: String,
    /// Its id (part of its column's name).
    pub id: String,
    /// What it does.
    pub kind: StepKind,
}

/// An exit criterion of a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// Its name.
    pub name: String,
    /// Its id (part of its column's name).
    pub id: String,
    /// Who leaves.
    pub criterion: Criterion,
}

/// A stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Its name.
    pub name: String,
    /// Its id: the name of its entry column, and the prefix of its other columns.
    pub id: String,
    /// Steps in order (at least one).
    pub steps: Vec<Step>,
    /// Exit criteria, in priority order.
    pub exits: Vec<Exit>,
    /// The goal that completes the stage, if any.
    pub goal: Option<Criterion>,
}

/// A checked journey.
#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    /// Its name.
    pub name: String,
    /// The state table (default `<name>_state`).
    pub state_table: String,
    /// Who enters.
    pub audience: Criterion,
    /// Customers who no longer match the audience leave the journey (column `exit__audience`).
    pub exit_on_audience_leave: bool,
    /// Customers who already meet the journey goal do not enter.
    pub suppress_if_goal_met: bool,
    /// Stages in order.
    pub stages: Vec<Stage>,
    /// Journey-wide exits (any stage), in priority order; columns `exit__<id>`.
    pub exits: Vec<Exit>,
    /// The journey goal, if any.
    pub goal: Option<Criterion>,
}

/// The journey goal's column.
pub const GOAL_COL: &str = "goal";

/// The column of customers who left the audience (with `exit_on_audience_leave`).
pub const AUDIENCE_EXIT_COL: &str = "exit__audience";

/// The id derived from a name: ASCII letters and digits lower-cased, every run of other
/// characters one `_` ("welcome email" -> `welcome_email`, "clicked?" -> `clicked`); empty when
/// the name has no letter or digit.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

impl Journey {
    fn stage_id(&self, i: usize) -> &str {
        self.stages.get(i).map_or("", |s| s.id.as_str())
    }

    fn step_id(&self, i: usize, k: usize) -> &str {
        self.stages
            .get(i)
            .and_then(|s| s.steps.get(k))
            .map_or("", |s| s.id.as_str())
    }

    /// Entry into stage `i` (0-based).
    pub fn stage_col(&self, i: usize) -> String {
        self.stage_id(i).to_string()
    }

    /// Step `k` of stage `i` done.
    pub fn step_col(&self, i: usize, k: usize) -> String {
        format!("{}__{}", self.stage_id(i), self.step_id(i, k))
    }

    /// Branch `b` of the decision step `k` of stage `i` taken.
    pub fn branch_col(&self, i: usize, k: usize, b: usize) -> String {
        let id = match self
            .stages
            .get(i)
            .and_then(|s| s.steps.get(k))
            .map(|s| &s.kind)
        {
            Some(StepKind::Decision(bs, _)) => bs.get(b).map_or("", |b| b.id.as_str()),
            _ => "",
        };
        format!("{}__{id}", self.step_col(i, k))
    }

    /// The default branch of the decision step `k` of stage `i` taken.
    pub fn default_col(&self, i: usize, k: usize) -> String {
        let id = match self
            .stages
            .get(i)
            .and_then(|s| s.steps.get(k))
            .map(|s| &s.kind)
        {
            Some(StepKind::Decision(_, d)) => slug(d),
            _ => String::new(),
        };
        format!("{}__{id}", self.step_col(i, k))
    }

    /// Exit `e` of stage `i` taken.
    pub fn exit_col(&self, i: usize, e: usize) -> String {
        let id = self
            .stages
            .get(i)
            .and_then(|s| s.exits.get(e))
            .map_or("", |x| x.id.as_str());
        format!("{}__exit__{id}", self.stage_id(i))
    }

    /// Stage `i`'s goal reached.
    pub fn stage_goal_col(&self, i: usize) -> String {
        format!("{}__goal", self.stage_id(i))
    }

    /// Journey-wide exit `e` taken.
    pub fn journey_exit_col(&self, e: usize) -> String {
        format!("exit__{}", self.exits.get(e).map_or("", |x| x.id.as_str()))
    }

    /// The journey-wide exit columns, in priority order (`exit__audience` last).
    pub fn journey_exit_cols(&self) -> Vec<String> {
        let mut out: Vec<String> = (0..self.exits.len())
            .map(|e| self.journey_exit_col(e))
            .collect();
        if self.exit_on_audience_leave {
            out.push(AUDIENCE_EXIT_COL.to_string());
        }
        out
    }

    /// The columns of `end` steps.
    pub fn end_cols(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, s) in self.stages.iter().enumerate() {
            for (k, st) in s.steps.iter().enumerate() {
                if st.kind == StepKind::End {
                    out.push(self.step_col(i, k));
                }
            }
        }
        out
    }

    /// Whether `column` is an exit column (of a stage or the journey).
    pub fn is_exit_col(&self, column: &str) -> bool {
        self.journey_exit_cols().iter().any(|c| c == column)
            || self
                .stages
                .iter()
                .enumerate()
                .any(|(i, s)| (0..s.exits.len()).any(|e| self.exit_col(i, e) == column))
    }

    /// Whether `column` ends the journey without its goal: an exit, or an `end` step.
    pub fn is_terminal_col(&self, column: &str) -> bool {
        self.is_exit_col(column) || self.end_cols().iter().any(|c| c == column)
    }

    /// Every state column, in funnel order.
    pub fn columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, s) in self.stages.iter().enumerate() {
            out.push(self.stage_col(i));
            for (k, step) in s.steps.iter().enumerate() {
                out.push(self.step_col(i, k));
                if let StepKind::Decision(branches, _) = &step.kind {
                    for b in 0..branches.len() {
                        out.push(self.branch_col(i, k, b));
                    }
                    out.push(self.default_col(i, k));
                }
            }
            for e in 0..s.exits.len() {
                out.push(self.exit_col(i, e));
            }
            if s.goal.is_some() {
                out.push(self.stage_goal_col(i));
            }
        }
        out.extend(self.journey_exit_cols());
        if self.goal.is_some() {
            out.push(GOAL_COL.to_string());
        }
        out
    }

    /// The activation steps: (column, channel), in funnel order.
    pub fn activations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, s) in self.stages.iter().enumerate() {
            for (k, st) in s.steps.iter().enumerate() {
                if let StepKind::Activation(ch) = &st.kind {
                    out.push((self.step_col(i, k), ch.clone()));
                }
            }
        }
        out
    }

    /// Every criterion with a short description, for validation.
    pub fn criteria(&self) -> Vec<(String, &Criterion)> {
        let mut out = vec![("audience".to_string(), &self.audience)];
        for s in &self.stages {
            for step in &s.steps {
                if let StepKind::Decision(branches, _) = &step.kind {
                    for b in branches {
                        out.push((format!("branch {:?}", b.name), &b.criterion));
                    }
                }
            }
            for e in &s.exits {
                out.push((format!("exit {:?}", e.name), &e.criterion));
            }
            if let Some(g) = &s.goal {
                out.push((format!("goal of stage {:?}", s.name), g));
            }
        }
        for e in &self.exits {
            out.push((format!("journey exit {:?}", e.name), &e.criterion));
        }
        if let Some(g) = &self.goal {
            out.push(("journey goal".to_string(), g));
        }
        out
    }
}

/// Microseconds of a duration such as `2 days`, `36 hours`, `90 minutes`, `1 week`, `30 seconds`.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let mut parts = s.split_whitespace();
    let (n, unit) = match (parts.next(), parts.next(), parts.next()) {
        (Some(n), Some(u), None) => (n, u),
        (Some(nu), None, None) => {
            let split = nu.find(|c: char| !c.is_ascii_digit()).unwrap_or(nu.len());
            nu.split_at(split)
        }
        _ => {
            return Err(format!(
                "duration {s:?}: expected a number and a unit, e.g. \"2 days\""
            ))
        }
    };
    let n: i64 = n
        .parse()
        .map_err(|_| format!("duration {s:?}: {n:?} is not a whole number"))?;
    // Exact unit names only: trimming a plural `s` once turned "90ms" into 90 minutes.
    let unit_us: i64 = match unit.to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 1_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000_000,
        "d" | "day" | "days" => 86_400_000_000,
        "w" | "week" | "weeks" => 7 * 86_400_000_000,
        "" => {
            return Err(format!(
                "duration {s:?}: a unit is needed, e.g. \"2 days\" or \"90 minutes\""
            ))
        }
        other => {
            return Err(format!(
                "duration {s:?}: unknown unit {other:?} (use ms, seconds, minutes, hours, days or weeks)"
            ))
        }
    };
    let us = n
        .checked_mul(unit_us)
        .ok_or_else(|| format!("duration {s:?} is too long"))?;
    if us <= 0 {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(us)
}

fn line_of(src: &str, offset: usize) -> usize {
    src.get(..offset.min(src.len()))
        .map_or(0, |p| p.bytes().filter(|&b| b == b'\n').count() + 1)
}

fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// An error at the line of `span` in `src`.
fn located(src: &str, span: std::ops::Range<usize>, message: String) -> DefError {
    DefError {
        line: line_of(src, span.start),
        message,
    }
}

/// Parses and checks a journey definition. Checks that need the database (tables and columns)
/// are made by the runner.
pub fn parse(src: &str) -> Result<Journey, DefError> {
    let raw: RawJourney = toml::from_str(src).map_err(|e| DefError {
        line: e.span().map_or(0, |s| line_of(src, s.start)),
        message: e.message().trim().to_string(),
    })?;
    let err = |span: std::ops::Range<usize>, message: String| located(src, span, message);
    let name = raw.name.get_ref().trim().to_string();
    if !is_identifier(&name) {
        return Err(err(
            raw.name.span(),
            format!("journey name {name:?} must be an identifier (letters, digits, _)"),
        ));
    }
    let state_table = match &raw.state_table {
        Some(t) if !is_identifier(t.get_ref()) => {
            return Err(err(
                t.span(),
                format!("state_table {:?} must be an identifier", t.get_ref()),
            ))
        }
        Some(t) => t.get_ref().clone(),
        None => format!("{name}_state"),
    };
    let criterion = |c: &Spanned<RawCriterion>| criterion_at(src, c.get_ref(), Place::Journey);
    if raw.stages.is_empty() {
        return Err(DefError {
            line: 0,
            message: "a journey needs at least one [[stage]]".into(),
        });
    }
    let stage_names: Vec<String> = raw
        .stages
        .iter()
        .map(|s| s.get_ref().name.get_ref().clone())
        .collect();
    let mut stages = Vec::new();
    for (i, s) in raw.stages.iter().enumerate() {
        stages.push(stage(src, s.get_ref(), i, &stage_names)?);
    }
    let aud = raw.audience.get_ref();
    let mut exits = Vec::new();
    for e in &raw.exits {
        let x = exit(src, e.get_ref(), Place::Journey)?;
        if aud.exit_on_audience_leave && x.id == "audience" {
            return Err(err(
                e.get_ref().name.span(),
                "the journey exit id \"audience\" is taken by exit_on_audience_leave".into(),
            ));
        }
        if exits.iter().any(|o: &Exit| o.id == x.id) {
            return Err(err(
                e.get_ref().name.span(),
                format!("duplicate journey exit {:?}", x.name),
            ));
        }
        exits.push(x);
    }
    let j = Journey {
        name,
        state_table,
        audience: crit(
            src,
            aud.table.as_ref(),
            &aud.cond,
            None,
            None,
            Place::Audience,
        )?,
        exit_on_audience_leave: aud.exit_on_audience_leave,
        suppress_if_goal_met: aud.suppress_if_goal_met,
        stages,
        exits,
        goal: raw.goal.as_ref().map(criterion).transpose()?,
    };
    if j.suppress_if_goal_met && j.goal.is_none() {
        return Err(err(
            raw.audience.span(),
            "suppress_if_goal_met needs a journey [goal]".into(),
        ));
    }
    unique_columns(&j)?;
    Ok(j)
}

/// Two positions must never share a state column (ids derived from names can collide: a stage
/// named "goal", a step id that repeats `exit__..`), nor take the key's name.
fn unique_columns(j: &Journey) -> Result<(), DefError> {
    let mut seen = std::collections::BTreeSet::new();
    for c in j.columns() {
        if c == "customer_id" || !seen.insert(c.clone()) {
            return Err(DefError {
                line: 0,
                message: format!(
                    "two positions of the journey would share the state column {c:?} (or it is the key's name); give one of them another `id`"
                ),
            });
        }
    }
    Ok(())
}

/// The kind of step `st` of stage number `i` (named `stage`), checked: the fields its kind needs,
/// none it does not, and decision branches that jump forward to known stages.
fn step_kind(
    src: &str,
    st: &RawStep,
    i: usize,
    stage: &str,
    stage_names: &[String],
    prior: &[String],
) -> Result<StepKind, DefError> {
    let err = |span: std::ops::Range<usize>, message: String| located(src, span, message);
    let kind = st.kind.get_ref().as_str();
    let misplaced = |field: &str, present: bool| -> Result<(), DefError> {
        if present {
            Err(err(
                st.kind.span(),
                format!("step {:?}: a {kind} step has no {field}", st.name.get_ref()),
            ))
        } else {
            Ok(())
        }
    };
    let k = match kind {
        "wait" => {
            misplaced("branch", !st.branches.is_empty())?;
            misplaced("default", st.default.is_some())?;
            misplaced("channel", st.channel.is_some())?;
            let d = st.duration.as_ref().ok_or_else(|| {
                err(
                    st.kind.span(),
                    format!("wait step {:?} needs a duration", st.name.get_ref()),
                )
            })?;
            StepKind::Wait(parse_duration(d.get_ref()).map_err(|m| err(d.span(), m))?)
        }
        "decision" => {
            misplaced("duration", st.duration.is_some())?;
            misplaced("channel", st.channel.is_some())?;
            decision(src, st, i, stage, stage_names, prior)?
        }
        "activation" => {
            misplaced("duration", st.duration.is_some())?;
            misplaced("branch", !st.branches.is_empty())?;
            misplaced("default", st.default.is_some())?;
            let c = st.channel.as_ref().ok_or_else(|| {
                err(
                    st.kind.span(),
                    format!("activation step {:?} needs a channel", st.name.get_ref()),
                )
            })?;
            StepKind::Activation(c.get_ref().clone())
        }
        "end" => {
            misplaced("duration", st.duration.is_some())?;
            misplaced("branch", !st.branches.is_empty())?;
            misplaced("default", st.default.is_some())?;
            misplaced("channel", st.channel.is_some())?;
            StepKind::End
        }
        other => {
            return Err(err(
                st.kind.span(),
                format!("unknown step kind {other:?} (use wait, decision, activation or end)"),
            ))
        }
    };
    Ok(k)
}

/// A decision step's branches (unique names, forward jumps to known stages) and default branch.
fn decision(
    src: &str,
    st: &RawStep,
    i: usize,
    stage: &str,
    stage_names: &[String],
    prior: &[String],
) -> Result<StepKind, DefError> {
    let err = |span: std::ops::Range<usize>, message: String| located(src, span, message);
    if st.branches.is_empty() {
        return Err(err(
            st.kind.span(),
            format!(
                "decision step {:?} needs at least one [[stage.step.branch]]",
                st.name.get_ref()
            ),
        ));
    }
    let mut branches = Vec::new();
    let mut bnames: Vec<&str> = Vec::new();
    for b in &st.branches {
        let b = b.get_ref();
        if bnames.contains(&b.name.get_ref().as_str()) {
            return Err(err(
                b.name.span(),
                format!("duplicate branch name {:?}", b.name.get_ref()),
            ));
        }
        bnames.push(b.name.get_ref());
        let goto = match &b.goto {
            None => None,
            Some(g) => {
                let j = stage_names
                    .iter()
                    .position(|n| n == g.get_ref())
                    .ok_or_else(|| {
                        err(
                            g.span(),
                            format!(
                                "branch {:?} goes to an unknown stage {:?}",
                                b.name.get_ref(),
                                g.get_ref()
                            ),
                        )
                    })?;
                if j <= i {
                    return Err(err(
                        g.span(),
                        format!(
                            "branch {:?} of stage {:?} goes back to stage {:?}: that makes a cycle (a branch may only jump forward)",
                            b.name.get_ref(),
                            stage,
                            g.get_ref()
                        ),
                    ));
                }
                Some(j)
            }
        };
        branches.push(Branch {
            name: b.name.get_ref().clone(),
            id: ident(src, &b.name, b.id.as_ref(), "branch")?,
            criterion: named_crit(src, b, Place::Branch(prior))?,
            goto,
        });
    }
    let default = st
        .default
        .as_ref()
        .map_or_else(|| "default".to_string(), |d| d.get_ref().clone());
    if slug(&default).is_empty() {
        return Err(err(
            st.default.as_ref().map_or(st.kind.span(), |d| d.span()),
            format!(
                "default branch {default:?}: its name has no letter or digit to make an id from"
            ),
        ));
    }
    if bnames.contains(&default.as_str()) {
        return Err(err(
            st.default.as_ref().map_or(st.kind.span(), |d| d.span()),
            format!("duplicate branch name {default:?} (the default branch)"),
        ));
    }
    Ok(StepKind::Decision(branches, default))
}

/// Stage number `i`, checked: a unique name, at least one step, unique step and exit names.
fn stage(src: &str, rs: &RawStage, i: usize, stage_names: &[String]) -> Result<Stage, DefError> {
    let err = |span: std::ops::Range<usize>, message: String| located(src, span, message);
    let criterion = |c: &Spanned<RawCriterion>| criterion_at(src, c.get_ref(), Place::Stage);
    if let Some(j) = stage_names
        .get(..i)
        .and_then(|p| p.iter().position(|n| n == rs.name.get_ref()))
    {
        return Err(err(
            rs.name.span(),
            format!(
                "duplicate stage name {:?} (also stage {})",
                rs.name.get_ref(),
                j + 1
            ),
        ));
    }
    if rs.steps.is_empty() {
        return Err(err(
            rs.name.span(),
            format!(
                "stage {:?} is empty: it needs at least one [[stage.step]]",
                rs.name.get_ref()
            ),
        ));
    }
    let mut names: Vec<String> = Vec::new();
    let mut unique = |n: &Spanned<String>, what: &str| -> Result<(), DefError> {
        if names.contains(n.get_ref()) {
            return Err(err(
                n.span(),
                format!(
                    "duplicate {what} name {:?} in stage {:?}",
                    n.get_ref(),
                    rs.name.get_ref()
                ),
            ));
        }
        names.push(n.get_ref().clone());
        Ok(())
    };
    let mut steps = Vec::new();
    for st in &rs.steps {
        let st = st.get_ref();
        unique(&st.name, "step")?;
        let prior: Vec<String> = steps.iter().map(|s: &Step| s.id.clone()).collect();
        let k = step_kind(src, st, i, rs.name.get_ref(), stage_names, &prior)?;
        if steps.last().is_some_and(|s: &Step| s.kind == StepKind::End) {
            return Err(err(
                st.name.span(),
                format!(
                    "step {:?} comes after an end step of stage {:?}: nobody would reach it",
                    st.name.get_ref(),
                    rs.name.get_ref()
                ),
            ));
        }
        steps.push(Step {
            name: st.name.get_ref().clone(),
            id: ident(src, &st.name, st.id.as_ref(), "step")?,
            kind: k,
        });
    }
    let mut exits = Vec::new();
    for e in &rs.exits {
        unique(&e.get_ref().name, "exit")?;
        exits.push(exit(src, e.get_ref(), Place::Stage)?);
    }
    Ok(Stage {
        name: rs.name.get_ref().clone(),
        id: ident(src, &rs.name, rs.id.as_ref(), "stage")?,
        steps,
        exits,
        goal: rs.goal.as_ref().map(criterion).transpose()?,
    })
}

/// The id of a named element: the given `id` (an identifier, lower-cased), or its name's [`slug`].
fn ident(
    src: &str,
    name: &Spanned<String>,
    id: Option<&Spanned<String>>,
    what: &str,
) -> Result<String, DefError> {
    match id {
        Some(id) if is_identifier(id.get_ref()) => Ok(id.get_ref().to_ascii_lowercase()),
        Some(id) => Err(located(
            src,
            id.span(),
            format!(
                "{what} {:?}: id {:?} must be an identifier (letters, digits, _)",
                name.get_ref(),
                id.get_ref()
            ),
        )),
        None => {
            let s = slug(name.get_ref());
            if s.is_empty() {
                Err(located(
                    src,
                    name.span(),
                    format!(
                        "{what} {:?}: its name has no letter or digit to make an id from; add id = \"..\"",
                        name.get_ref()
                    ),
                ))
            } else {
                Ok(s)
            }
        }
    }
}

/// The time expression a condition implies: `col` for a condition `col <= now()`.
fn implied_time(cond: &str) -> Option<String> {
    let (lhs, rhs) = cond.split_once("<=")?;
    let col = lhs.trim();
    let now = rhs.trim().to_ascii_lowercase().replace(' ', "");
    (is_identifier(col) && now == "now()").then(|| col.to_string())
}

fn since_of(
    src: &str,
    since: Option<&Spanned<String>>,
    place: Place<'_>,
) -> Result<Option<Since>, DefError> {
    let Some(s) = since else {
        return Ok(None);
    };
    let v = s.get_ref().as_str();
    let bad = |m: String| Err(located(src, s.span(), m));
    match (place, v) {
        (Place::Audience, _) => bad("the audience has no since".into()),
        (_, "entry") => Ok(Some(Since::Entry)),
        (Place::Journey, _) => bad(format!(
            "since {v:?}: a journey goal or exit may only use since = \"entry\""
        )),
        (_, "stage") => Ok(Some(Since::Stage)),
        (Place::Stage, _) => bad(format!(
            "since {v:?}: a stage exit or goal may use since = \"entry\" or \"stage\""
        )),
        (Place::Branch(prior), id) => match prior.iter().position(|p| p == id) {
            Some(k) => Ok(Some(Since::Step(k))),
            None => bad(format!(
                "since {id:?}: not \"entry\", \"stage\" or the id of a step before this decision in its stage ({})",
                prior.join(", ")
            )),
        },
    }
}

/// A goal's criterion (of a stage or the journey).
fn criterion_at(src: &str, r: &RawCriterion, place: Place<'_>) -> Result<Criterion, DefError> {
    crit(
        src,
        r.table.as_ref(),
        &r.cond,
        r.time.as_ref(),
        r.since.as_ref(),
        place,
    )
}

/// The criterion of a branch or an exit.
fn named_crit(src: &str, n: &RawNamed, place: Place<'_>) -> Result<Criterion, DefError> {
    crit(
        src,
        n.table.as_ref(),
        &n.cond,
        n.time.as_ref(),
        n.since.as_ref(),
        place,
    )
}

/// An exit (of a stage or the journey): no goto; its id and criterion.
fn exit(src: &str, e: &RawNamed, place: Place<'_>) -> Result<Exit, DefError> {
    if let Some(g) = &e.goto {
        return Err(located(
            src,
            g.span(),
            format!("exit {:?}: an exit has no goto", e.name.get_ref()),
        ));
    }
    Ok(Exit {
        name: e.name.get_ref().clone(),
        id: ident(src, &e.name, e.id.as_ref(), "exit")?,
        criterion: named_crit(src, e, place)?,
    })
}

fn crit(
    src: &str,
    table: Option<&Spanned<String>>,
    cond: &Spanned<String>,
    time: Option<&Spanned<String>>,
    since: Option<&Spanned<String>>,
    place: Place<'_>,
) -> Result<Criterion, DefError> {
    let line = line_of(src, cond.span().start);
    let table = match table {
        Some(t) if !is_identifier(t.get_ref()) => {
            return Err(DefError {
                line: line_of(src, t.span().start),
                message: format!("table {:?} must be an identifier", t.get_ref()),
            })
        }
        Some(t) => t.get_ref().clone(),
        None => "profiles".to_string(),
    };
    if cond.get_ref().trim().is_empty() {
        return Err(DefError {
            line,
            message: "an empty where condition".into(),
        });
    }
    if cond.get_ref().contains(';') {
        return Err(DefError {
            line,
            message: "a where condition must be one SQL expression (found ';')".into(),
        });
    }
    if let (Place::Audience, Some(t)) = (place, time) {
        return Err(located(src, t.span(), "the audience has no time".into()));
    }
    let time = match time {
        Some(t) if t.get_ref().trim().is_empty() || t.get_ref().contains(';') => {
            return Err(located(
                src,
                t.span(),
                "time must be one SQL expression over the criterion's table".into(),
            ))
        }
        Some(t) => Some(t.get_ref().trim().to_string()),
        None if matches!(place, Place::Audience) => None,
        None => implied_time(cond.get_ref()),
    };
    let since = since_of(src, since, place)?;
    if since.is_some() && time.is_none() {
        return Err(DefError {
            line,
            message: "since compares the time of the criterion's event: add time = \"<column>\" (or write the condition as <column> <= now())".into(),
        });
    }
    Ok(Criterion {
        table,
        cond: cond.get_ref().clone(),
        line,
        time,
        since,
    })
}

/// A TOML basic string literal (the `toml` crate is built without its writer).
fn quoted(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if c.is_control() => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A duration in the largest unit that divides it exactly (parsed back to the same value).
fn duration_text(us: i64) -> String {
    for (unit, n) in [
        ("weeks", 7 * 86_400_000_000),
        ("days", 86_400_000_000),
        ("hours", 3_600_000_000),
        ("minutes", 60_000_000),
        ("seconds", 1_000_000),
        ("ms", 1_000),
    ] {
        if us % n == 0 {
            return format!("{} {unit}", us / n);
        }
    }
    format!("{us} microseconds")
}

/// The keys of a criterion, as TOML lines.
fn render_crit(o: &mut String, c: &Criterion, since: Option<String>) {
    o.push_str(&format!(
        "table = {}\nwhere = {}\n",
        quoted(&c.table),
        quoted(&c.cond)
    ));
    if let Some(t) = &c.time {
        o.push_str(&format!("time = {}\n", quoted(t)));
    }
    if let Some(s) = since {
        o.push_str(&format!("since = {}\n", quoted(&s)));
    }
}

impl Journey {
    /// The `since` of a criterion of stage `i`, as written in a definition.
    fn since_text(&self, i: usize, s: &Option<Since>) -> Option<String> {
        s.as_ref().map(|s| match s {
            Since::Entry => "entry".to_string(),
            Since::Stage => "stage".to_string(),
            Since::Step(k) => self.step_id(i, *k).to_string(),
        })
    }

    /// Stage `i` as canonical TOML.
    fn render_stage(&self, o: &mut String, i: usize) {
        let Some(s) = self.stages.get(i) else {
            return;
        };
        let crit = render_crit;
        let since_text = |i: usize, s: &Option<Since>| self.since_text(i, s);
        o.push_str(&format!(
            "\n[[stage]]\nname = {}\nid = {}\n",
            quoted(&s.name),
            quoted(&s.id)
        ));
        for st in &s.steps {
            o.push_str(&format!(
                "\n[[stage.step]]\nname = {}\nid = {}\n",
                quoted(&st.name),
                quoted(&st.id)
            ));
            match &st.kind {
                StepKind::Wait(us) => o.push_str(&format!(
                    "kind = \"wait\"\nduration = {}\n",
                    quoted(&duration_text(*us))
                )),
                StepKind::Activation(ch) => o.push_str(&format!(
                    "kind = \"activation\"\nchannel = {}\n",
                    quoted(ch)
                )),
                StepKind::End => o.push_str("kind = \"end\"\n"),
                StepKind::Decision(bs, default) => {
                    o.push_str(&format!(
                        "kind = \"decision\"\ndefault = {}\n",
                        quoted(default)
                    ));
                    for b in bs {
                        o.push_str(&format!(
                            "\n[[stage.step.branch]]\nname = {}\nid = {}\n",
                            quoted(&b.name),
                            quoted(&b.id)
                        ));
                        crit(o, &b.criterion, since_text(i, &b.criterion.since));
                        if let Some(g) = b.goto.and_then(|g| self.stages.get(g)) {
                            o.push_str(&format!("goto = {}\n", quoted(&g.name)));
                        }
                    }
                }
            }
        }
        for x in &s.exits {
            o.push_str(&format!(
                "\n[[stage.exit]]\nname = {}\nid = {}\n",
                quoted(&x.name),
                quoted(&x.id)
            ));
            crit(o, &x.criterion, since_text(i, &x.criterion.since));
        }
        if let Some(g) = &s.goal {
            o.push_str("\n[stage.goal]\n");
            crit(o, g, since_text(i, &g.since));
        }
    }

    /// The definition as canonical TOML: every id, time and default written out, no comments.
    /// `parse(&j.render())` gives `j` back (but for line numbers); two definitions that render the
    /// same are the same journey. This is the text kept per version in `<state>_versions`.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let crit = render_crit;
        let since_text = |i: usize, s: &Option<Since>| self.since_text(i, s);
        o.push_str(&format!(
            "name = {}\nstate_table = {}\n\n[audience]\ntable = {}\nwhere = {}\n",
            quoted(&self.name),
            quoted(&self.state_table),
            quoted(&self.audience.table),
            quoted(&self.audience.cond)
        ));
        if self.exit_on_audience_leave {
            o.push_str("exit_on_audience_leave = true\n");
        }
        if self.suppress_if_goal_met {
            o.push_str("suppress_if_goal_met = true\n");
        }
        for i in 0..self.stages.len() {
            self.render_stage(&mut o, i);
        }
        for x in &self.exits {
            o.push_str(&format!(
                "\n[[exit]]\nname = {}\nid = {}\n",
                quoted(&x.name),
                quoted(&x.id)
            ));
            crit(&mut o, &x.criterion, since_text(0, &x.criterion.since));
        }
        if let Some(g) = &self.goal {
            o.push_str("\n[goal]\n");
            crit(&mut o, g, since_text(0, &g.since));
        }
        o
    }
}

/// One difference between two definitions of a journey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What changed, e.g. `wait welcome__let_it_sink_in: 2 days -> 5 days`.
    pub text: String,
    /// Whether it changes what happens to customers (anything but a name).
    pub semantic: bool,
}

impl Journey {
    /// The definition with every name replaced by its id: two definitions with the same shape
    /// differ only in names, an edit customers inside cannot notice.
    fn shape(&self) -> String {
        let mut j = self.clone();
        for s in &mut j.stages {
            s.name.clone_from(&s.id);
            for st in &mut s.steps {
                st.name.clone_from(&st.id);
                if let StepKind::Decision(bs, _) = &mut st.kind {
                    for b in bs {
                        b.name.clone_from(&b.id);
                    }
                }
            }
            for x in &mut s.exits {
                x.name.clone_from(&x.id);
            }
        }
        for x in &mut j.exits {
            x.name.clone_from(&x.id);
        }
        j.render()
    }

    /// Whether `other` is this journey up to names.
    pub fn same_shape(&self, other: &Journey) -> bool {
        self.shape() == other.shape()
    }

    /// Every position (column) with a description of what it is, for [`diff`].
    fn positions(&self) -> Vec<(String, String)> {
        let crit = |c: &Criterion| {
            let mut t = format!("{}: {}", c.table, c.cond);
            if let Some(time) = &c.time {
                t.push_str(&format!(" (time {time})"));
            }
            if let Some(s) = &c.since {
                t.push_str(&format!(" (since {s:?})"));
            }
            t
        };
        let mut out = Vec::new();
        for (i, s) in self.stages.iter().enumerate() {
            let goal = s
                .goal
                .as_ref()
                .map_or("no goal".to_string(), |g| format!("goal {}", crit(g)));
            out.push((self.stage_col(i), format!("stage {:?}, {goal}", s.name)));
            for (k, st) in s.steps.iter().enumerate() {
                let what = match &st.kind {
                    StepKind::Wait(us) => format!("wait {}", duration_text(*us)),
                    StepKind::Activation(ch) => format!("activation on {ch}"),
                    StepKind::End => "end".to_string(),
                    StepKind::Decision(bs, d) => {
                        format!("decision ({} branches, default {d:?})", bs.len())
                    }
                };
                out.push((self.step_col(i, k), format!("step {:?}: {what}", st.name)));
                if let StepKind::Decision(bs, _) = &st.kind {
                    for (b, br) in bs.iter().enumerate() {
                        let goto = br
                            .goto
                            .and_then(|g| self.stages.get(g))
                            .map_or(String::new(), |g| format!(", goto stage {}", g.id));
                        out.push((
                            self.branch_col(i, k, b),
                            format!("branch {:?}: {}{goto}", br.name, crit(&br.criterion)),
                        ));
                    }
                }
            }
            for (e, x) in s.exits.iter().enumerate() {
                out.push((
                    self.exit_col(i, e),
                    format!("exit {:?}: {}", x.name, crit(&x.criterion)),
                ));
            }
        }
        for (e, x) in self.exits.iter().enumerate() {
            out.push((
                self.journey_exit_col(e),
                format!("journey exit {:?}: {}", x.name, crit(&x.criterion)),
            ));
        }
        out.push((
            "audience".into(),
            format!(
                "audience {}{}{}",
                crit(&self.audience),
                if self.exit_on_audience_leave {
                    ", exit on leave"
                } else {
                    ""
                },
                if self.suppress_if_goal_met {
                    ", suppress if goal met"
                } else {
                    ""
                }
            ),
        ));
        out.push((
            GOAL_COL.into(),
            self.goal.as_ref().map_or("no journey goal".into(), |g| {
                format!("journey goal {}", crit(g))
            }),
        ));
        out
    }
}

/// The differences from `old` to `new`, position by position (by id): added, removed and changed
/// positions, and renames (the only changes that are not semantic).
pub fn diff(old: &Journey, new: &Journey) -> Vec<Change> {
    let (a, b) = (old.positions(), new.positions());
    let (a_shape, b_shape) = (old.shape(), new.shape());
    let mut out = Vec::new();
    for (col, what) in &b {
        match a.iter().find(|(c, _)| c == col) {
            None => out.push(Change {
                text: format!("adds {col}: {what}"),
                semantic: true,
            }),
            Some((_, was)) if was != what => out.push(Change {
                text: format!("changes {col}: {was} -> {what}"),
                semantic: true,
            }),
            Some(_) => {}
        }
    }
    for (col, what) in &a {
        if !b.iter().any(|(c, _)| c == col) {
            out.push(Change {
                text: format!("removes {col}: {what}"),
                semantic: true,
            });
        }
    }
    // Same positions, different shape: an order changed (steps, branches, exits), or a change
    // the position texts do not show.
    if out.is_empty() && a_shape != b_shape {
        let (ca, cb) = (old.columns(), new.columns());
        let text = if ca != cb {
            "reorders positions".to_string()
        } else {
            "changes the definition (same positions, same descriptions)".to_string()
        };
        out.push(Change {
            text,
            semantic: true,
        });
    }
    // Names only: the descriptions above include names, so a rename shows as a "change"; mark
    // the changes that disappear once names are replaced by ids as not semantic.
    if a_shape == b_shape {
        for c in &mut out {
            c.semantic = false;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Issue 13, finding 7: "90ms" parsed as 90 minutes (a plural `s` was trimmed off any unit).
    #[test]
    fn regression_durations_are_parsed_strictly() {
        assert_eq!(parse_duration("90ms").unwrap(), 90_000);
        assert_eq!(parse_duration("90m").unwrap(), 90 * 60_000_000);
        assert_eq!(parse_duration("2 days").unwrap(), 2 * 86_400_000_000);
        assert_eq!(parse_duration("1 day").unwrap(), 86_400_000_000);
        assert_eq!(parse_duration("3h").unwrap(), 3 * 3_600_000_000);
        for bad in ["5", "2 dayz", "s", "0 days", "-1 days", "2 days ago"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    const BASE: &str = "name = \"j\"\n[audience]\nwhere = \"a < 1\"\n[[stage]]\nname = \"s\"\n[[stage.step]]\nname = \"mail\"\nkind = \"activation\"\nchannel = \"email\"\n";

    #[test]
    fn a_definition_renders_to_toml_that_parses_back_to_it() {
        let j = parse(include_str!("../../examples/journey.toml")).unwrap();
        let text = j.render();
        let back = parse(&text).unwrap();
        assert_eq!(back.render(), text);
        assert_eq!(back.columns(), j.columns());
        assert!(diff(&j, &back).is_empty());
        // Quotes, backslashes and newlines in conditions survive.
        let odd = text.replace(
            "where = \"unsubscribed <= now()\"",
            "where = \"unsubscribed <= now() AND 'a\\\"b\\\\c' <> '\\n'\"",
        );
        let j2 = parse(&odd).unwrap();
        assert_eq!(parse(&j2.render()).unwrap().render(), j2.render());
        assert!(j2.exits[0].criterion.cond.contains("a\"b\\c"));
    }

    #[test]
    fn diff_names_every_change_and_renames_are_not_semantic() {
        let base = include_str!("../../examples/journey.toml");
        let j = parse(base).unwrap();
        let renamed = parse(
            &base
                .replace(
                    "name = \"tips push\"",
                    "name = \"tips push\"\nid = \"tips_push\"",
                )
                .replace("name = \"tips push\"", "name = \"Tips (push)\""),
        )
        .unwrap();
        let d = diff(&j, &renamed);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(!d[0].semantic && d[0].text.contains("Tips (push)"), "{d:?}");
        assert!(j.same_shape(&renamed));
        let longer =
            parse(&base.replace("duration = \"2 days\"", "duration = \"5 days\"")).unwrap();
        let d = diff(&j, &longer);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].semantic && d[0].text.contains("wait 2 days") && d[0].text.contains("wait 5 days"),
            "{d:?}"
        );
        let fewer = parse(&base.replace("[[stage.exit]]\nname = \"churned\"\ntable = \"behaviours\"\nwhere = \"churned <= now()\"\n", "")).unwrap();
        let d = diff(&j, &fewer);
        assert!(
            d.iter()
                .any(|c| c.semantic && c.text.starts_with("removes activate__exit__churned")),
            "{d:?}"
        );
    }

    #[test]
    fn times_are_implied_by_column_le_now_or_given() {
        let j = parse(&format!("{BASE}[goal]\nwhere = \"bought <= now()\"\n")).unwrap();
        assert_eq!(j.goal.unwrap().time.as_deref(), Some("bought"));
        let j = parse(&format!(
            "{BASE}[goal]\nwhere = \"bought <= now() AND x > 1\"\n"
        ))
        .unwrap();
        assert_eq!(j.goal.unwrap().time, None);
        let j = parse(&format!(
            "{BASE}[goal]\nwhere = \"n > 2\"\ntime = \"last_seen\"\nsince = \"entry\"\n"
        ))
        .unwrap();
        let g = j.goal.unwrap();
        assert_eq!(
            (g.time.as_deref(), g.since),
            (Some("last_seen"), Some(Since::Entry))
        );
    }

    #[test]
    fn bad_since_end_and_suppress_are_refused_with_their_line() {
        for (extra, want, line) in [
            ("[goal]\nwhere = \"n > 2\"\nsince = \"entry\"\n", "add time", 11),
            ("[goal]\nwhere = \"b <= now()\"\nsince = \"stage\"\n", "only use since", 12),
            (
                "[[stage.step]]\nname = \"stop\"\nkind = \"end\"\n[[stage.step]]\nname = \"after\"\nkind = \"wait\"\nduration = \"1 day\"\n",
                "after an end step",
                14,
            ),
            ("[[stage.step]]\nname = \"stop\"\nkind = \"end\"\nchannel = \"x\"\n", "no channel", 12),
            (
                "[[stage.step]]\nname = \"d\"\nkind = \"decision\"\n[[stage.step.branch]]\nname = \"b\"\nwhere = \"c <= now()\"\nsince = \"later\"\n",
                "before this decision in its stage (mail)",
                16,
            ),
        ] {
            let e = parse(&format!("{BASE}{extra}")).unwrap_err();
            assert!(e.message.contains(want), "{want:?} not in {e}");
            assert_eq!(e.line, line, "{e}");
        }
        let e =
            parse(&BASE.replace("a < 1\"", "a < 1\"\nsuppress_if_goal_met = true")).unwrap_err();
        assert!(e.message.contains("needs a journey [goal]"), "{e}");
        let e = parse(&format!(
            "{}[[exit]]\nname = \"audience\"\nwhere = \"x <= now()\"\n",
            BASE.replace("a < 1\"", "a < 1\"\nexit_on_audience_leave = true")
        ))
        .unwrap_err();
        assert!(e.message.contains("taken"), "{e}");
    }
}
