//! Runs the real `journeydb demo` binary on a small dataset and checks what it prints, then the
//! `journey` subcommands on the database it leaves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/journey.toml");

fn journeydb(args: &[&str], db: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn demo_runs_the_journey_and_reports_the_funnel() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let report = dir.path().join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["demo", "--customers", "20000", "--days", "12", "--report"])
        .arg(&report)
        .arg("--dir")
        .arg(&db)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "loading profiles and behaviours: 20000/20000",
        "day 12/12",
        "stage 1: welcome",
        "journey goal",
        "median time from entry to goal",
    ] {
        assert!(stdout.contains(want), "{want:?} missing from:\n{stdout}");
    }
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("<svg") && html.contains("stage 1: welcome"),
        "{html}"
    );
    assert!(db.join("CURRENT").exists(), "--dir keeps the database");

    // The same funnel from `journey report`, and a chart file.
    let svg = dir.path().join("f.svg");
    let (ok, rep, err) = journeydb(
        &["journey", "report", EXAMPLE, "--out", svg.to_str().unwrap()],
        &db,
    );
    assert!(ok, "{err}");
    let funnel_of = |s: &str| -> Vec<String> {
        s.lines()
            .skip_while(|l| *l != "journey onboarding")
            .take_while(|l| !l.starts_with("median"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(funnel_of(&rep), funnel_of(&stdout));
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));

    // Running day 12 again changes nothing.
    let (ok, again, err) = journeydb(
        &["journey", "run", EXAMPLE, "--now", "2026-01-13 00:00:00"],
        &db,
    );
    assert!(ok, "{err}");
    assert!(again.contains(": 0 transitions"), "{again}");

    // check passes on the result; a flipped byte in a segment makes it fail.
    let (ok, report, err) = journeydb(&["check"], &db);
    assert!(ok && report.contains("ok:"), "{report}{err}");
    // A live segment: the behaviours table's, named by system.segments.
    let (ok, id, err) = journeydb(
        &[
            "sql",
            "--format",
            "csv",
            "-c",
            "SELECT table_name, segment_id FROM system.segments",
        ],
        &db,
    );
    assert!(ok, "{err}");
    let id: u64 = id
        .lines()
        .find_map(|l| l.strip_prefix("behaviours,"))
        .expect("a behaviours segment")
        .trim()
        .parse()
        .unwrap();
    let seg = db.join("seg").join(format!("{id:020}.seg"));
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let (ok, _, err) = journeydb(&["check"], &db);
    assert!(!ok, "check passed a corrupt segment");
    assert!(err.contains("checksum"), "{err}");
    bytes[mid] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    // A second demo into the same directory refuses to overwrite it.
    let again = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["demo", "--dir"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already there"));
}

#[test]
fn unknown_commands_and_options_fail_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: journeydb"));
    let out = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["demo", "--customers", "-5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
