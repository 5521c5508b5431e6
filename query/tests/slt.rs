//! Runs the SQL conformance files under `tests/slt/` (sqllogictest format) against a fresh embedded
//! database each.
//!
//! Records:
//! - `statement ok` / `statement error <text>` then the SQL, ended by a blank line;
//! - `query [rowsort]` then the SQL, `----`, and the expected rows: cells separated by one space,
//!   `NULL` for NULL, `(empty)` for an empty string; ended by a blank line;
//! - `control now <timestamp>` fixes `now()`; `control flush` / `control compact` run maintenance;
//!   `control keytype bigint` (first line) makes the database's keys BIGINT.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use journeydb_query::format::cell_text;
use journeydb_query::types::parse_timestamp;
use journeydb_query::{Engine, Output};
use journeydb_storage::{Database, KeyType, Options};

fn render(out: &Output) -> Vec<String> {
    match out {
        Output::Rows(b) => (0..b.num_rows())
            .map(|r| {
                b.columns()
                    .iter()
                    .map(|c| match cell_text(c.as_ref(), r) {
                        None => "NULL".to_string(),
                        Some(s) if s.is_empty() => "(empty)".to_string(),
                        Some(s) => s,
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect(),
        Output::Done { .. } => Vec::new(),
    }
}

fn run_file(path: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let key_type = if text
        .lines()
        .next()
        .is_some_and(|l| l.trim() == "control keytype bigint")
    {
        KeyType::Bigint
    } else {
        KeyType::Varchar
    };
    let opts = Options {
        partition_rows: 65536,
        ..Options::default()
    };
    let db = Arc::new(Database::create(dir.path(), key_type, opts).map_err(|e| e.to_string())?);
    let mut engine = Engine::new(db.clone());
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let mut records = 0;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let block = |i: &mut usize| -> Vec<String> {
        let mut out = Vec::new();
        while *i < lines.len() && !lines[*i].trim().is_empty() {
            out.push(lines[*i].to_string());
            *i += 1;
        }
        out
    };
    while i < lines.len() {
        let line = lines[i].trim();
        let at = i + 1;
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |msg: String| Err(format!("{name}:{at}: {msg}"));
        if let Some(rest) = line.strip_prefix("control ") {
            let rest = rest.trim();
            if let Some(ts) = rest.strip_prefix("now ") {
                engine = Engine::new(db.clone())
                    .with_now(parse_timestamp(ts).map_err(|e| e.to_string())?);
            } else if rest == "flush" {
                db.flush().map_err(|e| e.to_string())?;
            } else if rest == "compact" {
                db.compact(2).map_err(|e| e.to_string())?;
            } else if rest != "keytype bigint" {
                return fail(format!("unknown control {rest:?}"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("statement ") {
            let sql = block(&mut i).join("\n");
            records += 1;
            let r = engine.execute_one(&sql);
            match (rest.trim(), r) {
                ("ok", Ok(_)) => {}
                ("ok", Err(e)) => return fail(format!("expected ok, got error: {e}\n{sql}")),
                (exp, Err(e)) if exp.starts_with("error") => {
                    let want = exp.trim_start_matches("error").trim();
                    if !e.to_string().to_lowercase().contains(&want.to_lowercase()) {
                        return fail(format!(
                            "expected an error containing {want:?}, got: {e}\n{sql}"
                        ));
                    }
                }
                (_, Ok(_)) => {
                    return fail(format!("expected an error, the statement succeeded\n{sql}"))
                }
                (other, _) => return fail(format!("unknown statement kind {other:?}")),
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("query") {
            let rowsort = rest.contains("rowsort");
            let mut sql = Vec::new();
            while i < lines.len() && lines[i].trim() != "----" {
                sql.push(lines[i]);
                i += 1;
            }
            i += 1;
            let mut expected = block(&mut i);
            let sql = sql.join("\n");
            records += 1;
            let out = engine
                .execute_one(&sql)
                .map_err(|e| format!("{name}:{at}: query failed: {e}\n{sql}"))?;
            let mut got = render(&out);
            if rowsort {
                got.sort();
                expected.sort();
            }
            if got != expected {
                return fail(format!(
                    "wrong result for\n{sql}\n--- expected\n{}\n--- got\n{}",
                    expected.join("\n"),
                    got.join("\n")
                ));
            }
            continue;
        }
        return fail(format!("unknown record {line:?}"));
    }
    Ok(records)
}

#[test]
fn sql_conformance_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    let mut failures = Vec::new();
    let mut total = 0;
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
    println!("{} files, {total} records", files.len());
}
