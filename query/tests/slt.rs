//! Runs the SQL conformance files under `tests/slt/` with the `sqllogictest` crate (the standard
//! format: `statement ok`, `statement error <regex>`, `query <types> [rowsort]`), each against a fresh
//! embedded database.
//!
//! journeydb's own directives are comments, so other engines read the files unchanged: `# journeydb:
//! keytype bigint` (first line) makes the keys BIGINT; `# journeydb: flush` and `# journeydb: compact`
//! run maintenance between records. A file whose first lines say `# journeydb-only: <reason>` uses
//! journeydb semantics (merging inserts, MERGE rules, sampling, EXPLAIN, journeydb.now); every other
//! file also runs against DuckDB (`slt_files_agree_with_duckdb`, through `scripts/slt_duckdb.py`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use journeydb_query::format::cell_text;
use journeydb_query::{Engine, Output, QueryError};
use journeydb_storage::{Database, KeyType, Options};
use sqllogictest::{DBOutput, DefaultColumnType, Record};

struct Jdb {
    engine: Engine,
}

impl sqllogictest::DB for Jdb {
    type Error = QueryError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryError> {
        Ok(match self.engine.execute_one(sql)? {
            Output::Rows(b) => DBOutput::Rows {
                types: b
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| match f.data_type() {
                        arrow_schema::DataType::Int64 => DefaultColumnType::Integer,
                        arrow_schema::DataType::Float64 => DefaultColumnType::FloatingPoint,
                        _ => DefaultColumnType::Text,
                    })
                    .collect(),
                rows: (0..b.num_rows())
                    .map(|r| {
                        b.columns()
                            .iter()
                            .map(|c| match cell_text(c.as_ref(), r) {
                                None => "NULL".to_string(),
                                Some(s) if s.is_empty() => "(empty)".to_string(),
                                Some(s) => s,
                            })
                            .collect()
                    })
                    .collect(),
            },
            Output::Done { rows, .. } => DBOutput::StatementComplete(rows),
        })
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

fn run_file(path: &Path) -> Result<usize, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let key_type = if text
        .lines()
        .next()
        .is_some_and(|l| l.trim() == "# journeydb: keytype bigint")
    {
        KeyType::Bigint
    } else {
        KeyType::Varchar
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let opts = Options {
        partition_rows: 65536,
        ..Options::default()
    };
    let db = Arc::new(Database::create(dir.path(), key_type, opts).map_err(|e| e.to_string())?);
    let engine = Engine::new(db.clone()).session();
    let mut runner = sqllogictest::Runner::new(move || {
        let engine = engine.clone();
        async move { Ok(Jdb { engine }) }
    });
    let records =
        sqllogictest::parse_file::<DefaultColumnType>(path).map_err(|e| format!("{name}: {e}"))?;
    let mut n = 0;
    for record in records {
        // The hook for journeydb's directives (comments to every other engine).
        if let Record::Comment(lines) = &record {
            for l in lines {
                match l.trim().strip_prefix("journeydb:").map(str::trim) {
                    Some("flush") => {
                        db.flush().map_err(|e| format!("{name}: flush: {e}"))?;
                    }
                    Some("compact") => {
                        db.compact(2).map_err(|e| format!("{name}: compact: {e}"))?;
                    }
                    Some("keytype bigint") | None => {}
                    Some(other) => return Err(format!("{name}: unknown directive {other:?}")),
                }
            }
            continue;
        }
        if matches!(record, Record::Statement { .. } | Record::Query { .. }) {
            n += 1;
        }
        runner.run(record).map_err(|e| format!("{e}"))?;
    }
    Ok(n)
}

#[test]
fn sql_conformance_files() {
    let mut failures = Vec::new();
    let mut total = 0;
    let files = slt_files();
    for f in &files {
        match run_file(f) {
            Ok(n) => total += n,
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} file(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(total > 100, "only {total} records ran");
    println!("{} files, {total} records", files.len());
}

/// The files that need no journeydb extension, run against DuckDB: the expected answers are
/// checked by a second engine.
#[test]
fn slt_files_agree_with_duckdb() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/slt_duckdb.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args(slt_files())
        .output()
        .expect("python3 runs (scripts/test.sh installs duckdb)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "DuckDB disagrees:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
    assert!(
        stdout.contains("ran on DuckDB: ") && !stdout.contains("ran on DuckDB: 0 files"),
        "{stdout}"
    );
}
