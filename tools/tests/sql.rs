//! The `journeydb sql` shell as a real process: -c, -f, stdin, output formats, errors and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn sql(db: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_journeydb"));
    cmd.arg("sql")
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn shell_runs_scripts_and_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let out = sql(&db, &["-c", "CREATE TABLE t (customer_id VARCHAR PRIMARY KEY, s TIMESTAMP MERGE MIN); INSERT INTO t VALUES ('a', '2026-01-02'), ('a', '2026-01-01'), ('b', NULL)"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = sql(
        &db,
        &[
            "--format",
            "csv",
            "-c",
            "SELECT customer_id, s FROM t ORDER BY 1",
        ],
        None,
    );
    assert_eq!(
        text(&out.stdout),
        "customer_id,s\na,2026-01-01 00:00:00\nb,\n"
    );

    let script = dir.path().join("q.sql");
    std::fs::write(
        &script,
        "SELECT count(*) AS n FROM t;\nSELECT customer_id FROM t WHERE s IS NULL;\n",
    )
    .unwrap();
    let out = sql(
        &db,
        &["--format", "json", "-f", script.to_str().unwrap()],
        None,
    );
    assert_eq!(text(&out.stdout), "{\"n\":2}\n{\"customer_id\":\"b\"}\n");

    let out = sql(
        &db,
        &[],
        Some("SELECT count(*) FROM t WHERE s IS NOT NULL;"),
    );
    assert!(text(&out.stdout).contains(" 1"), "{}", text(&out.stdout));

    // A script stops at its first error, with a non-zero exit and the error on stderr.
    let out = sql(
        &db,
        &[
            "-c",
            "SELECT nope FROM t; CREATE TABLE after (customer_id VARCHAR PRIMARY KEY)",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("column not found: nope"),
        "{}",
        text(&out.stderr)
    );
    let out = sql(
        &db,
        &["--format", "csv", "-c", "SELECT name FROM system.tables"],
        None,
    );
    assert!(
        !text(&out.stdout).contains("after"),
        "the statement after the error ran"
    );

    // With --continue-on-error the rest runs, and the exit is still non-zero.
    let out = sql(
        &db,
        &[
            "--continue-on-error",
            "-c",
            "SELECT nope FROM t; CREATE TABLE after (customer_id VARCHAR PRIMARY KEY)",
        ],
        None,
    );
    assert!(!out.status.success());
    let out = sql(
        &db,
        &[
            "--format",
            "csv",
            "-c",
            "SELECT name FROM system.tables ORDER BY name",
        ],
        None,
    );
    assert_eq!(text(&out.stdout), "name\nafter\nt\n");

    // Bad options.
    assert!(!sql(&db, &["--format", "xml", "-c", "SELECT 1"], None)
        .status
        .success());
    let out = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["sql", "-c", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!out.status.success() && text(&out.stderr).contains("--db"));
}

#[test]
fn every_command_answers_help() {
    for (cmd, expect) in [
        ("serve", "--tls-cert"),
        ("sql", "--tls-ca"),
        ("check", "--db"),
        ("journey", "report"),
        ("demo", "--customers"),
        ("bench", "--customers"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_journeydb"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd} --help failed");
        assert!(
            text.contains(&format!("Usage: journeydb {cmd}")) && text.contains(expect),
            "{cmd}: {text}"
        );
    }
}

/// README.md documents every option: each long option that `journeydb COMMAND --help` prints is
/// named in the README (and the README names no option of a command that the command lacks).
#[test]
fn readme_usage_matches_the_real_help() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let flags = |text: &str| -> std::collections::BTreeSet<String> {
        text.split(|c: char| {
            c.is_whitespace()
                || c == '['
                || c == ']'
                || c == '`'
                || c == '('
                || c == ')'
                || c == '|'
                || c == ','
        })
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.split('=')
                .next()
                .unwrap_or(w)
                .trim_end_matches(['.', ':'])
                .to_string()
        })
        .collect()
    };
    for cmd in [
        &["demo"][..],
        &["journey", "run"],
        &["journey", "check"],
        &["journey", "report"],
        &["journey", "rollback"],
        &["journey", "diff"],
        &["serve"],
        &["sql"],
        &["check"],
        &["import"],
        &["import", "events"],
        &["export"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_journeydb"))
            .args(cmd)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        let name = format!("journeydb {}", cmd.join(" "));
        // The usage cells (first column) of the README's table rows for this command.
        let rows: String = readme
            .lines()
            .filter(|l| l.starts_with(&format!("| `{name} ")))
            // `journeydb import` rows, not those of its subcommand `import events`.
            .filter(|l| cmd != ["import"] || !l.starts_with("| `journeydb import events "))
            .map(|l| l.split(" | ").next().unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!rows.is_empty(), "README.md has no row for `{name}`");
        for f in flags(&help) {
            if f == "--help" || f == "--version" {
                continue;
            }
            assert!(rows.contains(&f), "README.md's `{name}` row lacks {f}");
        }
        let documented = flags(&rows);
        for f in documented {
            assert!(
                help.contains(&f),
                "README.md documents {f} for `{name}`, which has no such option"
            );
        }
    }
}
