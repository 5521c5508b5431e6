//! Smoke test of `journeydb-bench` (`journeydb bench`) at a few thousand customers: both engines run every operation
//! and their answers agree (the bench refuses to report figures otherwise).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

fn bench(extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_journeydb-bench"))
        .args(["--customers", "3000", "--runs", "1", "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bench failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn both_engines_agree_on_every_operation() {
    for extra in [&[][..], &["--int-keys"][..]] {
        let v = bench(extra);
        assert_eq!(v["answers_agree"], true);
        let ops = v["ops"].as_array().unwrap();
        let names: Vec<&str> = ops.iter().map(|o| o["name"].as_str().unwrap()).collect();
        for want in [
            "a_intersect",
            "a_except",
            "a_union",
            "a_materialize",
            "c_invariant1",
            "c_invariant2",
            "c_invariant3",
            "b_min_merge",
            "d_swap",
            "e_ingest_embedded",
            "e_ingest_client",
            "f_bytes",
            "f_peak_rss",
            "g_journey_run",
        ] {
            assert!(names.contains(&want), "{want} missing: {names:?}");
        }
        for o in ops {
            for side in ["journeydb", "duckdb", "ratio"] {
                let x = o[side].as_f64().unwrap();
                assert!(x.is_finite() && x > 0.0, "{o}");
            }
        }
        assert!(v["machine"].as_str().unwrap().contains("DuckDB 2.0.1"));
    }
}

#[test]
fn bad_options_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_journeydb-bench"))
        .args(["--customers", "12"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--customers"));
}
