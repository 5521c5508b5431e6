//! The `journeydb` command.
//!
//! ```text
//! journeydb demo [--customers N] [--dir DIR] [--keep]
//! journeydb serve --db DIR [--listen ADDR] [--pg-listen ADDR|off] [--token T] [--max-connections N]
//! journeydb sql --db DIR [-c SQL] [-f FILE] [--format table|csv|json] [--continue-on-error]
//! journeydb check --db DIR
//! journeydb help
//! ```
//! Further subcommands (serve, sql, import/export, journey, bench) arrive with their issues.

mod demo;
mod serve;
mod sql;

use std::process::ExitCode;

const USAGE: &str = "\
usage: journeydb <command> [options]

commands:
  demo [--customers N] [--dir DIR] [--keep]
        Builds a journey state table of N customers (default 1000000) with 30 sparse TIMESTAMP
        columns in an embedded database, flushes and compacts it, prints the funnel and set
        operations computed on roaring bitmaps, folds in a day's new rows with MIN, and reopens
        the database to check it. DIR defaults to a temporary directory removed at the end
        (kept with --keep).
  serve --db DIR [--listen 127.0.0.1:5433] [--pg-listen 127.0.0.1:5434|off] [--token T]
      [--max-connections 64] [--max-running 2xCPUs] [--frame-max-bytes 67108864]
      [--idle-timeout-s 300] [--key-type varchar|bigint]
        Serves the database (created if missing) over the native protocol (client/PROTOCOL.md)
        and the PostgreSQL wire protocol (psql, drivers; the password is the token), both on
        loopback by default. The token may also come from JOURNEYDB_TOKEN. SIGTERM or ctrl-c
        stops accepting, lets running requests finish, flushes, and exits 0. At most
        --max-running requests execute at once; the others wait for a slot.
  sql --db DIR | --connect HOST:PORT [--token T] [-c SQL].. [-f FILE].. [--format table|csv|json]
      [--continue-on-error] [--key-type varchar|bigint]
        Runs SQL statements against an embedded database (created if missing, with the given key
        type). Statements come from -c, -f, or standard input (a prompt when it is a terminal).
        Results print as an aligned table, CSV or JSON lines; errors go to standard error and
        the exit status is non-zero. A script stops at its first error unless
        --continue-on-error is given.
  check --db DIR
        Verifies a database offline: every checksum of every segment block, the write-ahead
        log and the kept manifests. Exits non-zero on the first problem.
  help  Prints this text.
";

fn check(args: &[String]) -> Result<(), String> {
    let dir = match args {
        [flag, dir] if flag == "--db" => dir,
        _ => return Err(format!("check: expected --db DIR\n\n{USAGE}")),
    };
    let opts = journeydb_storage::Options {
        background: false,
        ..Default::default()
    };
    let db = journeydb_storage::Database::open(dir, opts).map_err(|e| e.to_string())?;
    let r = db.check().map_err(|e| e.to_string())?;
    println!(
        "ok: {} tables, {} segments, {} rows, {} values, {} keys, {} kept manifests",
        r.tables, r.segments, r.rows, r.values, r.keys, r.manifests
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo::run(args.get(1..).unwrap_or_default()),
        Some("check") => check(args.get(1..).unwrap_or_default()),
        Some("sql") => sql::run(args.get(1..).unwrap_or_default()),
        Some("serve") => serve::run(args.get(1..).unwrap_or_default()),
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
