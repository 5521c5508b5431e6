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

/// `--skip-duckdb`: journeydb alone (as at 100M customers, where DuckDB's side would not fit):
/// every journeydb figure is there and positive, no DuckDB figure or ratio is claimed, and the
/// key dictionary and reopen figures are reported.
#[test]
fn skip_duckdb_reports_journeydb_alone() {
    let v = bench(&["--skip-duckdb"]);
    assert!(v["answers_agree"].is_null(), "{v}");
    assert!(v["machine"].as_str().unwrap().contains("DuckDB skipped"));
    let ops = v["ops"].as_array().unwrap();
    let names: Vec<&str> = ops.iter().map(|o| o["name"].as_str().unwrap()).collect();
    for want in [
        "a_intersect",
        "b_min_merge",
        "c_invariant2",
        "d_swap",
        "g_journey_run",
    ] {
        assert!(names.contains(&want), "{want} missing: {names:?}");
    }
    for o in ops {
        let x = o["journeydb"].as_f64().unwrap();
        assert!(x.is_finite() && x > 0.0, "{o}");
        assert!(o["duckdb"].is_null() && o["ratio"].is_null(), "{o}");
    }
    let alone = v["journeydb_alone"].as_array().unwrap();
    let get = |n: &str| {
        alone.iter().find(|o| o["name"] == n).unwrap()["journeydb"]
            .as_f64()
            .unwrap()
    };
    // 16-byte keys: the key bytes, a 4-byte offset and the hash table's slots.
    let per_key = get("keys_reopened_per_key");
    assert!((20.0..48.0).contains(&per_key), "{per_key} bytes a key");
    assert!(get("reopen") > 0.0);
    let out = Command::new(env!("CARGO_BIN_EXE_journeydb-bench"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--skip-duckdb"));
}
