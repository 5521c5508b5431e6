//! `journeydb journey`: sessions, definition files, and printing runs, around the journey crate.

pub use journeydb_journey::{def, report, run};

use std::sync::Arc;

use journeydb_client::{Client, Session};
use journeydb_query::Engine;
use journeydb_server::EmbeddedSession;
use journeydb_storage::{Database, Options};

/// Opens a session: an embedded database (`--db`, which must exist) or a server (`--connect`).
pub fn open_session(
    db: Option<&str>,
    connect: Option<&str>,
    token: Option<&str>,
) -> Result<Box<dyn Session>, String> {
    match (db, connect) {
        (Some(dir), None) => {
            let path = std::path::Path::new(dir);
            if !path.join("CURRENT").exists() {
                return Err(format!("no journeydb database at {dir}"));
            }
            let db = Database::open(path, Options::default()).map_err(|e| format!("{dir}: {e}"))?;
            Ok(Box::new(EmbeddedSession::new(Engine::new(Arc::new(db)))))
        }
        (None, Some(addr)) => Ok(Box::new(
            Client::connect(addr, token).map_err(|e| format!("{addr}: {e}"))?,
        )),
        _ => Err("give exactly one of --db DIR and --connect HOST:PORT".into()),
    }
}

/// Reads and checks a definition file; errors name the file and line.
pub fn load(path: &str) -> Result<def::Journey, String> {
    let src = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    def::parse(&src).map_err(|e| format!("{path}: {e}"))
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Writes activations as CSV: `customer_id,step,channel,at`.
pub fn write_activations_csv(
    path: &str,
    acts: &[(String, String, String)],
    at_us: i64,
) -> Result<(), String> {
    use std::io::Write;
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let at = journeydb_query::types::format_timestamp(at_us);
    let f = std::fs::File::create(path).map_err(|e| format!("{path}: {e}"))?;
    let mut w = std::io::BufWriter::new(f);
    let mut go = || -> std::io::Result<()> {
        writeln!(w, "customer_id,step,channel,at")?;
        for (k, step, ch) in acts {
            writeln!(w, "{},{},{},{at}", quote(k), quote(step), quote(ch))?;
        }
        w.flush()
    };
    go().map_err(|e| format!("{path}: {e}"))
}

/// `journeydb journey run|check|report|rollback DEF.toml ...`.
pub fn cli(cmd: &crate::cli::JourneyCommand) -> Result<(), String> {
    use crate::cli::JourneyCommand as C;
    let args = match cmd {
        C::Run(r) => &r.journey,
        C::Check(a) => a,
        C::Report(r) => &r.journey,
        C::Rollback(r) => &r.journey,
        C::Diff(d) => return diff(&d.old, &d.new),
    };
    let def_path = args.def.clone();
    let (db, connect, token) = (&args.db, &args.remote.connect, args.remote.token());
    let j = load(&def_path)?;
    let mut s = open_session(db.as_deref(), connect.as_deref(), token)?;
    let located = |e: run::RunError| match e {
        run::RunError::Def(d) => format!("{def_path}: {d}"),
        other => other.to_string(),
    };
    match cmd {
        C::Check(_) => {
            let c = run::check(s.as_mut(), &j, now_us()).map_err(located)?;
            println!(
                "ok: journey {} ({} stages, {} state columns in {})",
                j.name,
                j.stages.len(),
                j.columns().len(),
                j.state_table
            );
            print_check(&j, &c);
            Ok(())
        }
        C::Run(r) => {
            let now_us = r.now.unwrap_or_else(now_us);
            let rep = run::run(
                s.as_mut(),
                &j,
                &run::RunOptions {
                    now_us,
                    check_percent: r.check_percent,
                    allow_backfill: r.allow_backfill,
                    dry_run: r.dry_run,
                    keep_snapshots: r.keep_snapshots,
                    publish: r.publish,
                },
            )
            .map_err(located)?;
            print_run(&j, now_us, &rep);
            let failed = rep.violations.iter().any(|v| v.changed + v.sampled > 0);
            if failed {
                return Err("the consistency check failed: nothing was published".into());
            }
            if r.dry_run {
                for (k, step, ch) in &rep.activations {
                    println!("  would activate {k} at {step} ({ch})");
                }
                println!("dry run: nothing was published");
            }
            if let Some(p) = &r.activations_csv {
                write_activations_csv(p, &rep.activations, now_us)?;
                println!("{} activations written to {p}", rep.activations.len());
            }
            Ok(())
        }
        C::Report(r) => {
            let f = report::funnel(s.as_mut(), &j).map_err(located)?;
            print!("{}", f.text());
            if let Some(p) = &r.out {
                let body = if p.ends_with(".html") || p.ends_with(".htm") {
                    f.html()
                } else {
                    f.svg()
                };
                std::fs::write(p, body).map_err(|e| format!("{p}: {e}"))?;
                println!("chart written to {p}");
            }
            Ok(())
        }
        C::Diff(_) => Ok(()),
        C::Rollback(r) => {
            let rb = run::rollback(s.as_mut(), &j, r.to).map_err(located)?;
            println!(
                "journey {}: the state is again the one run {} published at {} ({} customers); recorded as run {}. The activation log is kept as it was.",
                j.name,
                rb.to_run,
                journeydb_query::types::format_timestamp(rb.at_us),
                rb.customers,
                rb.run_id
            );
            Ok(())
        }
    }
}

/// `journeydb journey diff OLD.toml NEW.toml`: what changes, position by position.
fn diff(old: &str, new: &str) -> Result<(), String> {
    let (a, b) = (load(old)?, load(new)?);
    let changes = def::diff(&a, &b);
    if changes.is_empty() {
        println!("the same journey");
    } else if changes.iter().all(|c| !c.semantic) {
        println!("renames only (a live journey takes them in place):");
    } else {
        println!("changes for customers inside (a live journey needs journey run --publish: a new version):");
    }
    for c in &changes {
        println!("  {}", c.text);
    }
    Ok(())
}

/// Prints a run's summary.
pub fn print_run(j: &def::Journey, now_us: i64, r: &run::RunReport) {
    println!(
        "journey {} at {}: {} transitions in {} passes, {} statements, {:.2?}{}",
        j.name,
        journeydb_query::types::format_timestamp(now_us),
        r.total_transitions(),
        r.passes,
        r.statements,
        r.elapsed,
        if r.swapped { "" } else { " — NOT APPLIED" }
    );
    for (c, n) in &r.transitions {
        println!("  {c:<32} +{n}");
    }
    for v in &r.violations {
        if v.changed + v.sampled > 0 {
            println!(
                "  check failed: {}: {} of the {} rows this run changed, {} in the sample; customers {}",
                v.class,
                v.changed,
                r.checked_rows,
                v.sampled,
                v.keys.join(", ")
            );
        }
    }
    if r.unchanged {
        println!("  a re-run at the last run's time that moved nobody: nothing to publish");
    } else if r.swapped {
        println!(
            "  run {} published: state, {} activations in {}_activations, record in {}_runs",
            r.run_id,
            r.activations.len(),
            j.state_table,
            j.state_table
        );
    }
}

/// Prints what a definition would change in the live state.
pub fn print_check(j: &def::Journey, c: &run::CheckReport) {
    for w in &c.warnings {
        println!("  warning: {w}");
    }
    match c.version {
        None => println!("  not run yet: the first run stores it as version 1"),
        Some(v) if c.changes.is_empty() => println!("  the same as the published version {v}"),
        Some(v) if !c.needs_publish => {
            println!("  renames only (version {v} is updated in place):");
            for x in &c.changes {
                println!("    {}", x.text);
            }
        }
        Some(v) => {
            println!(
                "  changes version {v} for the customers inside: run it with --publish to make it version {} (customers inside stay on theirs, new ones enter it):",
                v + 1
            );
            for x in &c.changes {
                println!("    {}", x.text);
            }
        }
    }
    for (v, n) in &c.per_version {
        println!("  {n} customers on version {v}");
    }
    if c.customers == 0 && c.retired.is_empty() {
        println!(
            "  the state {} is empty or new: nothing inside to change",
            j.state_table
        );
        return;
    }
    println!("  {} customers in {}", c.customers, j.state_table);
    for a in &c.added {
        println!("  adds position {a} (empty for the customers already inside)");
    }
    for (col, n) in &c.retired {
        println!(
            "  removes position {col}: {n} customers have a time there; it is kept as history and nobody moves on from it"
        );
    }
    if c.added.is_empty() && c.retired.is_empty() {
        println!("  same positions as the live state");
    }
}
