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

/// `journeydb journey run|check|report DEF.toml ...`.
pub fn cli(cmd: &crate::cli::JourneyCommand) -> Result<(), String> {
    use crate::cli::JourneyCommand as C;
    let (args, now, csv, out, percent) = match cmd {
        C::Run(r) => (
            &r.journey,
            r.now,
            r.activations_csv.clone(),
            None,
            r.check_percent,
        ),
        C::Check(a) => (a, None, None, None, 50.0),
        C::Report(r) => (&r.journey, None, None, r.out.clone(), 50.0),
    };
    let allow_backfill = matches!(cmd, C::Run(r) if r.allow_backfill);
    let def_path = args.def.clone();
    let (db, connect, token) = (&args.db, &args.remote.connect, args.remote.token());
    let sub = match cmd {
        C::Run(_) => "run",
        C::Check(_) => "check",
        C::Report(_) => "report",
    };
    let j = load(&def_path)?;
    let mut s = open_session(db.as_deref(), connect.as_deref(), token)?;
    let located = |e: run::RunError| match e {
        run::RunError::Def(d) => format!("{def_path}: {d}"),
        other => other.to_string(),
    };
    match sub {
        "check" => {
            run::check(s.as_mut(), &j, now.unwrap_or_else(now_us)).map_err(located)?;
            println!(
                "ok: journey {} ({} stages, {} state columns in {})",
                j.name,
                j.stages.len(),
                j.columns().len(),
                j.state_table
            );
            Ok(())
        }
        "run" => {
            let now_us = now.unwrap_or_else(now_us);
            let r = run::run(
                s.as_mut(),
                &j,
                &run::RunOptions {
                    now_us,
                    check_percent: percent,
                    allow_backfill,
                },
            )
            .map_err(located)?;
            print_run(&j, now_us, &r);
            if !r.swapped {
                return Err("the consistency check failed: the state was left as it was".into());
            }
            if let Some(p) = csv {
                write_activations_csv(&p, &r.activations, now_us)?;
                println!("{} activations written to {p}", r.activations.len());
            }
            Ok(())
        }
        "report" => {
            let f = report::funnel(s.as_mut(), &j).map_err(located)?;
            print!("{}", f.text());
            if let Some(p) = out {
                let body = if p.ends_with(".html") || p.ends_with(".htm") {
                    f.html()
                } else {
                    f.svg()
                };
                std::fs::write(&p, body).map_err(|e| format!("{p}: {e}"))?;
                println!("chart written to {p}");
            }
            Ok(())
        }
        other => Err(format!("journey: unknown subcommand {other:?}")),
    }
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
    for (class, n) in &r.violations {
        if *n > 0 {
            println!("  check failed: {n} sampled rows with {class}");
        }
    }
}
