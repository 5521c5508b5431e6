//! `journeydb demo`: an onboarding journey (`examples/journey.toml`) run once per simulated day for
//! 30 days over synthetic CDP data, on an embedded database or a server, then its funnel.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use journeydb_client::Session;
use journeydb_tools::data;
use journeydb_tools::journey::{self, def, report, run};

/// The demo's journey: the documented example.
pub const JOURNEY: &str = journeydb_tools::EXAMPLE_JOURNEY;
/// Rows per append.
const BATCH_ROWS: usize = 100_000;
const DAY_US: i64 = 86_400_000_000;

fn sql(s: &mut dyn Session, q: &str) -> Result<journeydb_client::Reply, String> {
    s.run(q).map_err(|e| format!("{e}\n  in: {q}"))
}

/// The demo's session: a server (`--connect`), or a new embedded database in `--dir` or a
/// temporary directory; with the embedded database and the temporary directory, if any.
#[allow(clippy::type_complexity)]
fn open_demo_session(
    a: &journeydb_tools::cli::DemoArgs,
) -> Result<
    (
        Box<dyn Session>,
        Option<std::sync::Arc<journeydb_storage::Database>>,
        Option<TempDir>,
    ),
    String,
> {
    let mut tmp: Option<TempDir> = None;
    let mut embedded = None;
    let session: Box<dyn Session> = match &a.remote.connect {
        Some(addr) => journey::open_session(None, Some(addr), a.remote.token())?,
        None => {
            let dir = match &a.dir {
                Some(d) => d.clone(),
                None => {
                    let t = TempDir::new()?;
                    let p = t.0.clone();
                    tmp = Some(t);
                    p
                }
            };
            if dir.join("CURRENT").exists() {
                return Err(format!(
                    "{}: a database is already there; the demo needs a new directory",
                    dir.display()
                ));
            }
            let db = journeydb_storage::Database::create(
                &dir,
                journeydb_storage::KeyType::Varchar,
                journeydb_storage::Options::default(),
            )
            .map_err(|e| format!("{}: {e}", dir.display()))?;
            println!("embedded database in {}", dir.display());
            let db = std::sync::Arc::new(db);
            embedded = Some(db.clone());
            Box::new(journeydb_server::EmbeddedSession::new(
                journeydb_query::Engine::new(db),
            ))
        }
    };
    Ok((session, embedded, tmp))
}

/// Loads the generated profiles and behaviours of `customers` customers, with a progress line.
fn load(s: &mut dyn Session, customers: usize) -> Result<(), String> {
    let gen = data::Cdp { seed: 7 };
    let t = Instant::now();
    let mut start = 0;
    while start < customers {
        let end = (start + BATCH_ROWS).min(customers);
        s.append("profiles", &gen.profiles(start..end))
            .map_err(|e| e.to_string())?;
        s.append("behaviours", &gen.behaviours_batch(start..end))
            .map_err(|e| e.to_string())?;
        start = end;
        print!(
            "\rloading profiles and behaviours: {end}/{} customers ({:.0}%)",
            customers,
            100.0 * end as f64 / customers as f64
        );
        let _ = std::io::stdout().flush();
    }
    println!(" in {:.2?}", t.elapsed());
    Ok(())
}

/// Runs the demo.
pub fn run(a: &journeydb_tools::cli::DemoArgs) -> Result<(), String> {
    let t_all = Instant::now();
    let j = def::parse(JOURNEY).map_err(|e| format!("examples/journey.toml: {e}"))?;
    // The database: a server, or an embedded one in --dir or a temporary directory.
    let (mut session, embedded, mut tmp) = open_demo_session(a)?;
    let s = session.as_mut();
    // A database that held the demo before: its CDP tables and every table of the journey go
    // (state, logs, snapshots, versions), so the demo starts from nothing each time.
    let mut old = run::tables(s, &j).map_err(|e| e.to_string())?;
    old.extend(["profiles".to_string(), "behaviours".to_string()]);
    for t in old {
        sql(s, &format!("DROP TABLE IF EXISTS {t}"))?;
    }
    for c in data::CREATE {
        sql(s, c)?;
    }
    // Load the CDP data, with a progress line.
    load(s, a.customers)?;
    println!(
        "journey {}: {} stages, {} state columns, run once per simulated day for {} days",
        j.name,
        j.stages.len(),
        j.columns().len(),
        a.days
    );
    let mut times = Vec::new();
    let mut activations = 0usize;
    for day in 1..=a.days {
        let now_us = data::START_US + day as i64 * DAY_US;
        let r = run::run(
            s,
            &j,
            &run::RunOptions {
                now_us,
                check_percent: 50.0,
                allow_backfill: false,
                dry_run: false,
                keep_snapshots: 7,
                publish: false,
            },
        )
        .map_err(|e| e.to_string())?;
        if !r.swapped {
            journey::print_run(&j, now_us, &r);
            return Err(format!("day {day}: the consistency check failed"));
        }
        activations += r.activations.len();
        times.push(r.elapsed);
        println!(
            "day {day:>2}/{} {}  {:>9} transitions  {:>8} activations  {:>3} statements  {:>9.2?}",
            a.days,
            &journeydb_query::types::format_timestamp(now_us)[..10],
            r.total_transitions(),
            r.activations.len(),
            r.statements,
            r.elapsed
        );
    }
    let f = report::funnel(s, &j).map_err(|e| e.to_string())?;
    println!();
    print!("{}", f.text());
    std::fs::write(&a.report, f.html()).map_err(|e| format!("{}: {e}", a.report))?;
    times.sort();
    let total: std::time::Duration = times.iter().sum();
    println!(
        "\n{} runs: median {:.2?}, slowest {:.2?}, total {:.2?}; {activations} activations; report written to {}",
        times.len(),
        times.get(times.len() / 2).copied().unwrap_or_default(),
        times.last().copied().unwrap_or_default(),
        total,
        a.report
    );
    drop(session);
    if let Some(db) = embedded {
        // Everything is durable already; a flush leaves segments instead of a WAL to replay.
        db.flush().map_err(|e| e.to_string())?;
    }
    match (&a.dir, a.keep) {
        (Some(d), _) => println!("database kept in {}", d.display()),
        (None, true) if a.remote.connect.is_none() => {
            if let Some(t) = tmp.take() {
                println!("database kept in {}", t.0.display());
                // Kept on purpose: skip the removal on drop.
                std::mem::forget(t);
            }
        }
        _ => {}
    }
    println!("demo finished in {:.2?}", t_all.elapsed());
    Ok(())
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let p = std::env::temp_dir().join(format!(
            "journeydb-demo-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
