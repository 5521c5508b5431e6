//! `journeydb contract set|show|check` (issue 16) on an embedded database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn journeydb(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn contract_set_show_and_check_report_broken_rules_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let db = db.to_str().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "sample_percent = 100\n[[column]]\nname = \"age\"\nmin = 0\nmax = 130\n",
    )
    .unwrap();
    let out = journeydb(&[
        "sql",
        "--db",
        db,
        "-c",
        "CREATE TABLE p (k VARCHAR PRIMARY KEY, age BIGINT); INSERT INTO p VALUES ('a', 1)",
    ]);
    assert!(out.status.success(), "{out:?}");
    let f = file.to_str().unwrap();
    let out = journeydb(&["contract", "set", "--table", "p", f, "--db", db]);
    assert!(out.status.success(), "{out:?}");
    let out = journeydb(&["contract", "show", "--table", "p", "--db", db]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("max = 130"),
        "{out:?}"
    );
    let out = journeydb(&["contract", "check", "--table", "p", "--db", db]);
    assert!(out.status.success(), "{out:?}");
    // Bad rows published by a swap (which the contract does not refuse, it alerts): the check
    // names the rule, the rows and the keys, and fails.
    let out = journeydb(&[
        "sql", "--db", db, "-c",
        "CREATE TABLE s (k VARCHAR PRIMARY KEY, age BIGINT); INSERT INTO s VALUES ('x', 200), ('y', 5); ALTER TABLE s SWAP WITH p",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = journeydb(&["contract", "check", "--table", "p", "--db", db]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("broken: age in [0, 130] (1 rows, e.g. x)"),
        "{text}"
    );
    let out = journeydb(&["contract", "show", "--table", "nobody", "--db", db]);
    assert!(!out.status.success());
}
