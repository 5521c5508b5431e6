//! Runs the real `journeydb demo` binary on a small dataset and checks what it prints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

#[test]
fn demo_runs_end_to_end_and_reports_the_funnel() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let out = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["demo", "--customers", "30000", "--dir"])
        .arg(&db)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stage1 INTERSECT stage2"), "{stdout}");
    assert!(stdout.contains("reopened in"), "{stdout}");
    assert!(db.join("CURRENT").exists(), "--dir keeps the database");
    let check = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["check", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && report.contains("30000 rows"),
        "{report}"
    );
    // A flipped byte in a segment makes check fail.
    let seg = std::fs::read_dir(db.join("seg"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["check", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!check.status.success(), "check passed a corrupt segment");
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("checksum"),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    bytes[mid] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    // A second demo into the same directory refuses to overwrite it.
    let again = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["demo", "--dir"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn unknown_commands_and_options_fail_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: journeydb"));
    let out = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["demo", "--customers", "-5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
