//! The `journeydb` command: `journeydb --help` lists the commands, `journeydb COMMAND --help`
//! describes one. The options are declared in `journeydb_tools::cli`.

mod demo;
mod serve;
mod sql;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use journeydb_tools::cli::{BenchArgs, CheckArgs, Cli, Command};

/// `journeydb bench` runs `journeydb-bench` (the `journeydb-benches` crate), found beside this
/// binary: the shipped command does not link the benchmark harness and its DuckDB driver.
fn bench(a: &BenchArgs) -> Result<(), String> {
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
        .args(&a.args)
        .status()
        .map_err(|e| format!("bench: {}: {e}", sibling.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("bench: {} exited with {status}", sibling.display()))
    }
}

fn check(a: &CheckArgs) -> Result<(), String> {
    // Read-only: a checker never changes the database it checks (no lock, no truncation, no
    // new log, no cleanup); opening it would recover it, which is the server's job.
    let r = journeydb_storage::Database::check_dir(&a.db)
        .map_err(|e| format!("{}: {e}", a.db.display()))?;
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Check(a) => check(a),
        Command::Import(a) => journeydb_tools::transfer::import(a),
        Command::Export(a) => journeydb_tools::transfer::export(a),
        Command::Sql(a) => sql::run(a),
        Command::Serve(a) => {
            // Before anything uses the worker pool: it is sized once.
            if let Some(n) = a.threads {
                journeydb_storage::workers::set_threads(n as usize);
            }
            serve::run(a)
        }
        Command::Tenants(c) => serve::tenants(c),
        Command::Contract(c) => journeydb_tools::transfer::contract(c),
        Command::Bench(a) => bench(a),
        Command::Journey(c) => journeydb_tools::journey::cli(c),
        Command::Completions { shell } => {
            // Into memory first: the generator panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "journeydb", &mut script);
            use std::io::Write;
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
                _ => Ok(()),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("journeydb: {e}");
            ExitCode::FAILURE
        }
    }
}
