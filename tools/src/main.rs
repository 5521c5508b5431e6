//! The `journeydb` command.
//!
//! ```text
//! journeydb demo [--customers N] [--days N] [--dir DIR] [--keep] [--connect ADDR] [--report FILE]
//! journeydb journey run|check|report DEF.toml (--db DIR | --connect ADDR) [...]
//! journeydb serve --db DIR [--listen ADDR] [--pg-listen ADDR|off] [--token T] [--max-connections N]
//! journeydb sql --db DIR [-c SQL] [-f FILE] [--format table|csv|json] [--continue-on-error]
//! journeydb check --db DIR
//! journeydb help
//! ```
//! journeydb bench [--customers N] [--int-keys] [--runs N] [--json]
//! Import/export is not built yet.

mod demo;
mod serve;
mod sql;

use std::process::ExitCode;

const USAGE: &str = "\
usage: journeydb <command> [options]

commands:
  demo [--customers N] [--days 30] [--dir DIR] [--keep] [--connect HOST:PORT [--token T]]
      [--report journeydb-demo-report.html]
        Loads synthetic CDP data (profiles and behaviours of N customers, default 1000000) and
        runs the onboarding journey of examples/journey.toml once per simulated day, printing
        each run's transitions and time, then the funnel; writes an HTML funnel report. Uses an
        embedded database in DIR (a new directory; default a temporary one, removed unless
        --keep) or a server with --connect.
  journey run DEF.toml (--db DIR | --connect HOST:PORT [--token T]) [--now TIMESTAMP]
      [--activations-csv FILE] [--check-percent 50]
        Advances the journey by one run at --now (default: the current time): entries, expired
        waits, decisions, activations, exits and goals, folded into the state table with MIN,
        checked on a Bernoulli sample and swapped in only if the check passes (non-zero exit
        and the old state kept otherwise). The run's activations go to FILE as CSV.
  journey check DEF.toml (--db DIR | --connect HOST:PORT)
        Checks a definition: the file (errors name the line) and its tables and columns.
  journey report DEF.toml (--db DIR | --connect HOST:PORT) [--out FILE.svg|FILE.html]
        Prints the funnel (entered, reached and currently in each stage, steps, branches, exits,
        goals, median time to goal) and writes it as an SVG or HTML chart.
  serve --db DIR [--listen 127.0.0.1:5433] [--pg-listen 127.0.0.1:5434|off] [--token T]
      [--max-connections 64] [--max-running 2xCPUs] [--query-memory-mb 8192]
      [--frame-max-bytes 67108864] [--idle-timeout-s 300] [--io-timeout-s 30]
      [--max-pending 16] [--pg-auth scram|password] [--tls-cert FILE.pem --tls-key FILE.pem]
      [--key-type varchar|bigint]
        Serves the database (created if missing) over the native protocol (client/PROTOCOL.md)
        and the PostgreSQL wire protocol (psql, drivers; the password is the token, proved by
        SCRAM-SHA-256 unless --pg-auth password asks for cleartext), both on
        loopback by default. The token may also come from JOURNEYDB_TOKEN. SIGTERM or ctrl-c
        stops accepting, lets running requests finish, flushes, and exits 0. At most
        --max-running requests execute at once; the others wait for a slot. A query whose
        scans would decode more than --query-memory-mb is refused (0: no bound). At most
        --max-pending connections may be authenticating at once (5 s each); a request must
        arrive, and its response be read, within --io-timeout-s in total. With --tls-cert and
        --tls-key (PEM), the native port speaks only TLS and the PostgreSQL port accepts
        sslmode=require.
  sql --db DIR | --connect HOST:PORT [--token T] [--tls-ca CA.pem [--tls-name localhost]]
      [-c SQL].. [-f FILE].. [--format table|csv|json]
      [--continue-on-error] [--key-type varchar|bigint]
        Runs SQL statements against an embedded database (created if missing, with the given key
        type). Statements come from -c, -f, or standard input (a prompt when it is a terminal).
        Results print as an aligned table, CSV or JSON lines; errors go to standard error and
        the exit status is non-zero. A script stops at its first error unless
        --continue-on-error is given.
  bench [--customers 10000000] [--int-keys] [--runs 5] [--json] [--dir DIR] [--python python3]
        The journey workload in journeydb (embedded and through a server on loopback) and in
        DuckDB (Python package, installed with pip if missing) on the same generated data:
        set operations, MIN-merge, sampled invariant counts, swap, ingest, bytes on disk and
        peak memory; medians after a warm-up and ratios, as a table or JSON. See BENCHMARKS.md.
  check --db DIR
        Verifies a database offline: every checksum of every segment block, the write-ahead
        log and the kept manifests. Exits non-zero on the first problem.
  help  Prints this text.
";

/// `journeydb bench` runs `journeydb-bench` (the `journeydb-benches` crate), found beside this
/// binary: the shipped command does not link the benchmark harness and its DuckDB driver.
fn bench(args: &[String]) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("bench: {e}"))?;
    let sibling = exe.with_file_name("journeydb-bench");
    if !sibling.exists() {
        return Err(format!(
            "bench: {} is not built; build it with `cargo build --release -p journeydb-benches` \
             (or run `cargo run --release -p journeydb-benches --bin journeydb-bench -- ...`)",
            sibling.display()
        ));
    }
    let status = std::process::Command::new(&sibling)
        .args(args)
        .status()
        .map_err(|e| format!("bench: {}: {e}", sibling.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("bench: {} exited with {status}", sibling.display()))
    }
}

fn check(args: &[String]) -> Result<(), String> {
    let dir = match args {
        [flag, dir] if flag == "--db" => dir,
        _ => return Err(format!("check: expected --db DIR\n\n{USAGE}")),
    };
    // Read-only: a checker never changes the database it checks (no lock, no truncation, no
    // new log, no cleanup); opening it would recover it, which is the server's job.
    let r = journeydb_storage::Database::check_dir(dir).map_err(|e| e.to_string())?;
    println!(
        "ok: {} tables, {} segments, {} rows, {} values, {} keys, {} WAL records, {} kept manifests{}",
        r.tables,
        r.segments,
        r.rows,
        r.values,
        r.keys,
        r.wal_records,
        r.manifests,
        if r.torn_tails > 0 {
            format!(", {} torn log tail(s) of unacknowledged writes (dropped at the next open)", r.torn_tails)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The part of [`USAGE`] about `command` (its lines and their indented continuation).
fn command_help(command: &str) -> String {
    let mut out = String::from("usage: journeydb ");
    let mut inside = false;
    for line in USAGE.lines() {
        let indent = line.len() - line.trim_start().len();
        if indent == 2 {
            inside = line.trim_start().starts_with(command);
        }
        if inside {
            out.push_str(if out.ends_with(' ') { line.trim_start() } else { line });
            out.push('\n');
        }
    }
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `journeydb COMMAND --help` prints that command's part of the usage.
    if let Some(cmd) = args.first() {
        if args.iter().skip(1).any(|a| a == "--help" || a == "-h") {
            print!("{}", command_help(cmd));
            return ExitCode::SUCCESS;
        }
    }
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo::run(args.get(1..).unwrap_or_default()),
        Some("check") => check(args.get(1..).unwrap_or_default()),
        Some("sql") => sql::run(args.get(1..).unwrap_or_default()),
        Some("serve") => serve::run(args.get(1..).unwrap_or_default()),
        Some("bench") => bench(args.get(1..).unwrap_or_default()),
        Some("journey") => journeydb_tools::journey::cli(args.get(1..).unwrap_or_default()),
        Some("help" | "--help" | "-h") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("journeydb: {e}");
            ExitCode::FAILURE
        }
    }
}
