//! `journeydb-bench`: the side-by-side benchmark of journeydb and DuckDB (BENCHMARKS.md). `journeydb
//! bench` runs this binary.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match journeydb_benches::harness::run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("journeydb bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
