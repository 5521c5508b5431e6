//! The funnel of a journey's state: counts per stage, step, branch, exit and goal, the median
//! time to goal, as a text table and as a self-contained SVG or HTML chart.

use arrow_array::{Array, TimestampMicrosecondArray};
use journeydb_client::Session;

use crate::def::{col, Journey, StepKind};
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
    /// Customers sitting here now (stages only).
    pub current: Option<u64>,
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

fn scalar(s: &mut dyn Session, sql: &str) -> Result<u64, RunError> {
    Ok(crate::run::count(&s.run(sql).map_err(|e| sql_err(sql, e))?))
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
    let mut done = vec![];
    for (i, s) in j.stages.iter().enumerate() {
        for e in 0..s.exits.len() {
            done.push(format!("{} IS NULL", col::exit(i, e)));
        }
    }
    if j.stages.last().is_some_and(|s| s.goal.is_some()) {
        done.push(format!("{} IS NULL", col::stage_goal(j.stages.len() - 1)));
    }
    if j.goal.is_some() {
        done.push(format!("{} IS NULL", col::GOAL));
    }
    let mut lines = Vec::new();
    let n = j.stages.len();
    for (i, stage) in j.stages.iter().enumerate() {
        let mut cur = vec![format!("{} IS NOT NULL", col::stage(i))];
        cur.extend((i + 1..n).map(|l| format!("{} IS NULL", col::stage(l))));
        cur.extend(done.iter().cloned());
        let current = scalar(
            s,
            &format!("SELECT count(*) FROM {st} WHERE {}", cur.join(" AND ")),
        )?;
        lines.push(Line {
            depth: 0,
            label: format!("stage {}: {}", i + 1, stage.name),
            column: col::stage(i),
            reached: reached(&col::stage(i)),
            current: Some(current),
        });
        step_lines(&mut lines, i, stage, &reached);
        for (e, x) in stage.exits.iter().enumerate() {
            lines.push(Line {
                depth: 1,
                label: format!("exit {}", x.name),
                column: col::exit(i, e),
                reached: reached(&col::exit(i, e)),
                current: None,
            });
        }
        if stage.goal.is_some() {
            lines.push(Line {
                depth: 1,
                label: "stage goal".into(),
                column: col::stage_goal(i),
                reached: reached(&col::stage_goal(i)),
                current: None,
            });
        }
    }
    if j.goal.is_some() {
        lines.push(Line {
            depth: 0,
            label: "journey goal".into(),
            column: col::GOAL.into(),
            reached: reached(col::GOAL),
            current: None,
        });
    }
    let median = median_to_goal(s, j)?;
    Ok(Funnel {
        name: j.name.clone(),
        lines,
        median_to_goal_s: median,
    })
}

/// The median time from entering the first stage to the goal, in seconds (`None` without a goal or
/// without customers who reached it).
fn median_to_goal(s: &mut dyn Session, j: &Journey) -> Result<Option<f64>, RunError> {
    let st = &j.state_table;
    let goal_col = if j.goal.is_some() {
        Some(col::GOAL.to_string())
    } else if j.stages.last().is_some_and(|s| s.goal.is_some()) {
        Some(col::stage_goal(j.stages.len() - 1))
    } else {
        None
    };
    let mut median = None;
    if let Some(g) = goal_col {
        let sql = format!(
            "SELECT {}, {g} FROM {st} WHERE {g} IS NOT NULL",
            col::stage(0)
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
    i: usize,
    stage: &crate::def::Stage,
    reached: &dyn Fn(&str) -> u64,
) {
    for (k, step) in stage.steps.iter().enumerate() {
        let what = match &step.kind {
            StepKind::Wait(_) => "wait",
            StepKind::Decision(..) => "decision",
            StepKind::Activation(_) => "activation",
        };
        lines.push(Line {
            depth: 1,
            label: format!("{} ({what})", step.name),
            column: col::step(i, k),
            reached: reached(&col::step(i, k)),
            current: None,
        });
        if let StepKind::Decision(bs, default) = &step.kind {
            for (bi, br) in bs.iter().enumerate() {
                lines.push(Line {
                    depth: 2,
                    label: format!("branch {}", br.name),
                    column: col::branch(i, k, bi),
                    reached: reached(&col::branch(i, k, bi)),
                    current: None,
                });
            }
            lines.push(Line {
                depth: 2,
                label: format!("branch {default}"),
                column: col::default_branch(i, k),
                reached: reached(&col::default_branch(i, k)),
                current: None,
            });
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
            "journey {}\n{:<width$}  {:>10}  {:>6}  {:>10}\n",
            self.name, "", "reached", "%", "in it now"
        );
        for l in &self.lines {
            let label = format!("{}{}", "  ".repeat(l.depth), l.label);
            out.push_str(&format!(
                "{label:<width$}  {:>10}  {:>5.1}%  {:>10}\n",
                l.reached,
                100.0 * l.reached as f64 / entered as f64,
                l.current.map(|c| c.to_string()).unwrap_or_default()
            ));
        }
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
                1 if l.column.contains("_exit_") => "#c53030",
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
