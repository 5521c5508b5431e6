//! Journey definitions: the TOML file, checked into a [`Journey`] with every problem named by line.
//!
//! The format is documented in `examples/journey.toml`. Columns of the state table are named by
//! position (`stage1`, `stage1_step_2`, `stage1_step_2_branch_1`, `stage1_step_2_default`,
//! `stage1_exit_1`, `stage1_goal`, `goal`), so renaming a stage never renames a column.

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
    audience: Spanned<RawCriterion>,
    #[serde(default, rename = "stage")]
    stages: Vec<Spanned<RawStage>>,
    goal: Option<Spanned<RawCriterion>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCriterion {
    table: Option<Spanned<String>>,
    #[serde(rename = "where")]
    cond: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: Spanned<String>,
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
    table: Option<Spanned<String>>,
    #[serde(rename = "where")]
    cond: Spanned<String>,
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
}

/// One branch of a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// Its name.
    pub name: String,
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
}

/// A step of a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Its name.
    pub name: String,
    /// What it does.
    pub kind: StepKind,
}

/// An exit criterion of a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// Its name.
    pub name: String,
    /// Who leaves.
    pub criterion: Criterion,
}

/// A stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Its name.
    pub name: String,
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
    /// Stages in order.
    pub stages: Vec<Stage>,
    /// The journey goal, if any.
    pub goal: Option<Criterion>,
}

/// Column names of the state table.
pub mod col {
    /// Entry into stage `i` (0-based).
    pub fn stage(i: usize) -> String {
        format!("stage{}", i + 1)
    }
    /// Step `k` of stage `i` done.
    pub fn step(i: usize, k: usize) -> String {
        format!("stage{}_step_{}", i + 1, k + 1)
    }
    /// Branch `b` of the decision step `k` of stage `i` taken.
    pub fn branch(i: usize, k: usize, b: usize) -> String {
        format!("stage{}_step_{}_branch_{}", i + 1, k + 1, b + 1)
    }
    /// The default branch of a decision taken.
    pub fn default_branch(i: usize, k: usize) -> String {
        format!("stage{}_step_{}_default", i + 1, k + 1)
    }
    /// Exit `e` of stage `i` taken.
    pub fn exit(i: usize, e: usize) -> String {
        format!("stage{}_exit_{}", i + 1, e + 1)
    }
    /// Stage `i`'s goal reached.
    pub fn stage_goal(i: usize) -> String {
        format!("stage{}_goal", i + 1)
    }
    /// The journey goal reached.
    pub const GOAL: &str = "goal";
}

impl Journey {
    /// Every state column, in funnel order.
    pub fn columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, s) in self.stages.iter().enumerate() {
            out.push(col::stage(i));
            for (k, step) in s.steps.iter().enumerate() {
                out.push(col::step(i, k));
                if let StepKind::Decision(branches, _) = &step.kind {
                    for b in 0..branches.len() {
                        out.push(col::branch(i, k, b));
                    }
                    out.push(col::default_branch(i, k));
                }
            }
            for e in 0..s.exits.len() {
                out.push(col::exit(i, e));
            }
            if s.goal.is_some() {
                out.push(col::stage_goal(i));
            }
        }
        if self.goal.is_some() {
            out.push(col::GOAL.to_string());
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
    let criterion = |c: &Spanned<RawCriterion>| -> Result<Criterion, DefError> {
        let r = c.get_ref();
        crit(src, r.table.as_ref(), &r.cond)
    };
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
    Ok(Journey {
        name,
        state_table,
        audience: criterion(&raw.audience)?,
        stages,
        goal: raw.goal.as_ref().map(criterion).transpose()?,
    })
}

/// The kind of step `st` of stage number `i` (named `stage`), checked: the fields its kind needs,
/// none it does not, and decision branches that jump forward to known stages.
fn step_kind(
    src: &str,
    st: &RawStep,
    i: usize,
    stage: &str,
    stage_names: &[String],
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
            decision(src, st, i, stage, stage_names)?
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
        other => {
            return Err(err(
                st.kind.span(),
                format!("unknown step kind {other:?} (use wait, decision or activation)"),
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
            criterion: crit(src, b.table.as_ref(), &b.cond)?,
            goto,
        });
    }
    let default = st
        .default
        .as_ref()
        .map_or_else(|| "default".to_string(), |d| d.get_ref().clone());
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
    let criterion = |c: &Spanned<RawCriterion>| -> Result<Criterion, DefError> {
        let r = c.get_ref();
        crit(src, r.table.as_ref(), &r.cond)
    };
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
        let k = step_kind(src, st, i, rs.name.get_ref(), stage_names)?;
        steps.push(Step {
            name: st.name.get_ref().clone(),
            kind: k,
        });
    }
    let mut exits = Vec::new();
    for e in &rs.exits {
        let e = e.get_ref();
        unique(&e.name, "exit")?;
        if let Some(g) = &e.goto {
            return Err(err(
                g.span(),
                format!("exit {:?}: an exit has no goto", e.name.get_ref()),
            ));
        }
        exits.push(Exit {
            name: e.name.get_ref().clone(),
            criterion: crit(src, e.table.as_ref(), &e.cond)?,
        });
    }
    Ok(Stage {
        name: rs.name.get_ref().clone(),
        steps,
        exits,
        goal: rs.goal.as_ref().map(criterion).transpose()?,
    })
}

fn crit(
    src: &str,
    table: Option<&Spanned<String>>,
    cond: &Spanned<String>,
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
    Ok(Criterion {
        table,
        cond: cond.get_ref().clone(),
        line,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
}
