//! The funnel of a journey's state: counts per stage, step, branch, exit and goal, the median
//! time to goal, as a text table and as a self-contained SVG or HTML chart.

use arrow_array::{Array, TimestampMicrosecondArray};
use journeydb_client::Session;

use crate::def::{Journey, StepKind, AUDIENCE_EXIT_COL, GOAL_COL};
use crate::run::RunError;

/// One funnel line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Indentation depth (0 stage, 1 step, 2 branch/exit/goal).
    pub depth: usize,
    /// Label.
    pub label: String,
    /// The state column.
    pub column: String,
    /// Customers who reached it.
    pub reached: u64,
    /// Stages only: customers in the stage waiting in one of its steps.
    pub waiting: Option<u64>,
    /// Stages only: customers in the stage who finished its steps and have nothing left to do
    /// but reach its goal (or, without a goal, nothing left at all: a dead end).
    pub finished: Option<u64>,
    /// Stages only: customers whose journey ended in this stage by an exit (of the stage or the
    /// journey, or leaving the audience) or an end step.
    pub exited: Option<u64>,
}

impl Line {
    /// A line that is not a stage: its column's count only.
    fn plain(depth: usize, label: String, column: String, reached: &dyn Fn(&str) -> u64) -> Line {
        Line {
            depth,
            label,
            reached: reached(&column),
            column,
            waiting: None,
            finished: None,
            exited: None,
        }
    }
}

/// The funnel.
#[derive(Debug, Clone, PartialEq)]
pub struct Funnel {
    /// Journey name.
    pub name: String,
    /// Lines in funnel order.
    pub lines: Vec<Line>,
    /// Median time from entry to the goal (journey goal, else the last stage's goal), seconds.
    pub median_to_goal_s: Option<f64>,
}

fn sql_err(sql: &str, e: impl std::fmt::Display) -> RunError {
    RunError::Sql {
        sql: sql.to_string(),
        message: e.to_string(),
    }
}

/// Computes the funnel of `j`'s state table.
pub fn funnel(s: &mut dyn Session, j: &Journey) -> Result<Funnel, RunError> {
    let st = &j.state_table;
    let cols = j.columns();
    let counts: Vec<String> = cols.iter().map(|c| format!("count({c})")).collect();
    let sql = format!("SELECT {} FROM {st}", counts.join(", "));
    let r = s.run(&sql).map_err(|e| sql_err(&sql, e))?;
    let b = r
        .batches
        .first()
        .ok_or_else(|| sql_err(&sql, "no result"))?;
    let reached = |c: &str| -> u64 {
        cols.iter()
            .position(|x| x == c)
            .and_then(|i| b.columns().get(i))
            .and_then(|a| crate::value::cell_text(a.as_ref(), 0))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let states = stage_states(s, j)?;
    let mut lines = Vec::new();
    for (i, stage) in j.stages.iter().enumerate() {
        let (waiting, finished, exited) = states.get(i).copied().unwrap_or_default();
        lines.push(Line {
            depth: 0,
            label: format!("stage {}: {}", i + 1, stage.name),
            column: j.stage_col(i),
            reached: reached(&j.stage_col(i)),
            waiting: Some(waiting),
            finished: Some(finished),
            exited: Some(exited),
        });
        step_lines(&mut lines, j, i, stage, &reached);
        for (e, x) in stage.exits.iter().enumerate() {
            lines.push(Line::plain(
                1,
                format!("exit {}", x.name),
                j.exit_col(i, e),
                &reached,
            ));
        }
        if stage.goal.is_some() {
            lines.push(Line::plain(
                1,
                "stage goal".into(),
                j.stage_goal_col(i),
                &reached,
            ));
        }
    }
    for (e, x) in j.exits.iter().enumerate() {
        lines.push(Line::plain(
            0,
            format!("journey exit {}", x.name),
            j.journey_exit_col(e),
            &reached,
        ));
    }
    if j.exit_on_audience_leave {
        lines.push(Line::plain(
            0,
            "left the audience".into(),
            AUDIENCE_EXIT_COL.into(),
            &reached,
        ));
    }
    if j.goal.is_some() {
        lines.push(Line::plain(
            0,
            "journey goal".into(),
            GOAL_COL.into(),
            &reached,
        ));
    }
    let median = median_to_goal(s, j)?;
    Ok(Funnel {
        name: j.name.clone(),
        lines,
        median_to_goal_s: median,
    })
}

/// Per stage, the customers whose latest stage it is: (waiting in a step, finished its steps
/// and still in the journey, whose journey ended there by an exit or an end step), in one scan.
fn stage_states(s: &mut dyn Session, j: &Journey) -> Result<Vec<(u64, u64, u64)>, RunError> {
    let mut ended = vec![];
    for (i, s) in j.stages.iter().enumerate() {
        ended.extend((0..s.exits.len()).map(|e| j.exit_col(i, e)));
    }
    ended.extend(j.journey_exit_cols());
    ended.extend(j.end_cols());
    let mut done: Vec<String> = ended.iter().map(|c| format!("{c} IS NULL")).collect();
    if j.stages.last().is_some_and(|s| s.goal.is_some()) {
        done.push(format!("{} IS NULL", j.stage_goal_col(j.stages.len() - 1)));
    }
    if j.goal.is_some() {
        done.push(format!("{GOAL_COL} IS NULL"));
    }
    let any_end: Vec<String> = ended.iter().map(|c| format!("{c} IS NOT NULL")).collect();
    let n = j.stages.len();
    let mut counts = Vec::new();
    for (i, stage) in j.stages.iter().enumerate() {
        let mut here = vec![format!("{} IS NOT NULL", j.stage_col(i))];
        here.extend((i + 1..n).map(|l| format!("{} IS NULL", j.stage_col(l))));
        let cur = here
            .iter()
            .chain(&done)
            .cloned()
            .collect::<Vec<_>>()
            .join(" AND ");
        let last = j.step_col(i, stage.steps.len().saturating_sub(1));
        counts.push(format!("count(*) FILTER (WHERE {cur} AND {last} IS NULL)"));
        counts.push(format!(
            "count(*) FILTER (WHERE {cur} AND {last} IS NOT NULL)"
        ));
        counts.push(if any_end.is_empty() {
            "0".to_string()
        } else {
            format!(
                "count(*) FILTER (WHERE {} AND ({}))",
                here.join(" AND "),
                any_end.join(" OR ")
            )
        });
    }
    let sql = format!("SELECT {} FROM {}", counts.join(", "), j.state_table);
    let r = s.run(&sql).map_err(|e| sql_err(&sql, e))?;
    let row: Vec<u64> = r
        .batches
        .first()
        .map(crate::run::first_row)
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.and_then(|v| v.parse().ok()).unwrap_or(0))
        .collect();
    Ok(row
        .chunks(3)
        .map(|c| {
            (
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
                c.get(2).copied().unwrap_or(0),
            )
        })
        .collect())
}

/// The median time from entering the first stage to the goal, in seconds (`None` without a goal or
/// without customers who reached it).
fn median_to_goal(s: &mut dyn Session, j: &Journey) -> Result<Option<f64>, RunError> {
    let st = &j.state_table;
    let goal_col = if j.goal.is_some() {
        Some(GOAL_COL.to_string())
    } else if j.stages.last().is_some_and(|s| s.goal.is_some()) {
        Some(j.stage_goal_col(j.stages.len() - 1))
    } else {
        None
    };
    let mut median = None;
    if let Some(g) = goal_col {
        let sql = format!(
            "SELECT {}, {g} FROM {st} WHERE {g} IS NOT NULL",
            j.stage_col(0)
        );
        let r = s.run(&sql).map_err(|e| sql_err(&sql, e))?;
        let mut d: Vec<i64> = Vec::new();
        for b in &r.batches {
            let (Some(a), Some(z)) = (
                b.column(0)
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>(),
                b.column(1)
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>(),
            ) else {
                continue;
            };
            for i in 0..b.num_rows() {
                if a.is_valid(i) && z.is_valid(i) {
                    d.push(z.value(i) - a.value(i));
                }
            }
        }
        if !d.is_empty() {
            d.sort_unstable();
            let m = d.len() / 2;
            let v = if d.len() % 2 == 1 {
                d.get(m).copied().unwrap_or(0) as f64
            } else {
                (d.get(m - 1).copied().unwrap_or(0) + d.get(m).copied().unwrap_or(0)) as f64 / 2.0
            };
            median = Some(v / 1e6);
        }
    }
    Ok(median)
}

/// The funnel lines of stage `i`'s steps and decision branches.
fn step_lines(
    lines: &mut Vec<Line>,
    j: &Journey,
    i: usize,
    stage: &crate::def::Stage,
    reached: &dyn Fn(&str) -> u64,
) {
    for (k, step) in stage.steps.iter().enumerate() {
        let what = match &step.kind {
            StepKind::Wait(_) => "wait",
            StepKind::Decision(..) => "decision",
            StepKind::Activation(_) => "activation",
            StepKind::End => "end",
        };
        lines.push(Line::plain(
            1,
            format!("{} ({what})", step.name),
            j.step_col(i, k),
            reached,
        ));
        if let StepKind::Decision(bs, default) = &step.kind {
            for (bi, br) in bs.iter().enumerate() {
                lines.push(Line::plain(
                    2,
                    format!("branch {}", br.name),
                    j.branch_col(i, k, bi),
                    reached,
                ));
            }
            lines.push(Line::plain(
                2,
                format!("branch {default}"),
                j.default_col(i, k),
                reached,
            ));
        }
    }
}

/// A duration in seconds, readably.
pub fn human_duration(s: f64) -> String {
    if s >= 86_400.0 {
        format!("{:.1} days", s / 86_400.0)
    } else if s >= 3600.0 {
        format!("{:.1} hours", s / 3600.0)
    } else {
        format!("{:.0} s", s)
    }
}

impl Funnel {
    /// The funnel as an aligned text table.
    pub fn text(&self) -> String {
        let entered = self.lines.first().map_or(0, |l| l.reached).max(1);
        let width = self
            .lines
            .iter()
            .map(|l| l.label.len() + 2 * l.depth)
            .max()
            .unwrap_or(10)
            .max(8);
        let mut out = format!(
            "journey {}\n{:<width$}  {:>10}  {:>6}  {:>10}  {:>10}  {:>10}\n",
            self.name, "", "reached", "%", "waiting", "steps done", "exited"
        );
        let cell = |v: Option<u64>| v.map(|c| c.to_string()).unwrap_or_default();
        for l in &self.lines {
            let label = format!("{}{}", "  ".repeat(l.depth), l.label);
            out.push_str(&format!(
                "{label:<width$}  {:>10}  {:>5.1}%  {:>10}  {:>10}  {:>10}\n",
                l.reached,
                100.0 * l.reached as f64 / entered as f64,
                cell(l.waiting),
                cell(l.finished),
                cell(l.exited)
            ));
        }
        out.push_str(
            "waiting: in a step of the stage; steps done: finished the stage's steps, nothing left but its goal (none: a dead end); exited: the journey ended in the stage by an exit or an end step\n",
        );
        match self.median_to_goal_s {
            Some(m) => out.push_str(&format!(
                "median time from entry to goal: {}\n",
                human_duration(m)
            )),
            None => out.push_str("median time from entry to goal: no customer reached it yet\n"),
        }
        out
    }

    /// The funnel as a self-contained SVG bar chart.
    pub fn svg(&self) -> String {
        let entered = self.lines.first().map_or(0, |l| l.reached).max(1) as f64;
        let (row, left, bar_w) = (26.0, 300.0, 520.0);
        let h = 60.0 + row * self.lines.len() as f64 + 30.0;
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"16\" y=\"30\" font-size=\"18\" font-weight=\"bold\">journey {}</text>\n",
            left + bar_w + 140.0,
            esc(&self.name)
        );
        for (i, l) in self.lines.iter().enumerate() {
            let y = 50.0 + row * i as f64;
            let w = bar_w * l.reached as f64 / entered;
            let color = match l.depth {
                0 => "#2b6cb0",
                _ if l.column.contains("exit__") => "#c53030",
                1 if l.column.ends_with("goal") => "#2f855a",
                1 => "#4299e1",
                _ => "#90cdf4",
            };
            out.push_str(&format!(
                "<text x=\"{}\" y=\"{}\">{}</text>\n<rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{color}\"/>\n<text x=\"{}\" y=\"{}\">{} ({:.1}%)</text>\n",
                16.0 + 14.0 * l.depth as f64,
                y + 15.0,
                esc(&l.label),
                row - 6.0,
                left + w + 6.0,
                y + 15.0,
                l.reached,
                100.0 * l.reached as f64 / entered
            ));
        }
        let note = match self.median_to_goal_s {
            Some(m) => format!("median time from entry to goal: {}", human_duration(m)),
            None => "no customer reached the goal yet".into(),
        };
        out.push_str(&format!(
            "<text x=\"16\" y=\"{}\">{}</text>\n</svg>\n",
            h - 12.0,
            esc(&note)
        ));
        out
    }

    /// The funnel as a self-contained HTML page (the SVG and the table).
    pub fn html(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>journey {}</title></head>\n<body>\n{}\n<pre>{}</pre>\n</body></html>\n",
            esc(&self.name),
            self.svg(),
            esc(&self.text())
        )
    }
}
