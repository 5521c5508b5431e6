//! The live dashboard (issue 16) in a real browser: headless Chromium loads the page of a server
//! holding a demo run and the test reads what it shows (DOM text, and a screenshot kept as an
//! artifact in the target directory), next to the JSON API checked against SQL counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{Read, Write};
use std::process::Command;

/// A GET with an optional bearer token: (status, body).
fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n{auth}\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Chromium, headless: the page's DOM once its scripts ran, and a screenshot.
fn chromium(url: &str, screenshot: Option<&std::path::Path>) -> String {
    let mut c = Command::new("chromium");
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
        "--window-size=1280,1800",
    ]);
    match screenshot {
        Some(p) => c.arg(format!("--screenshot={}", p.display())),
        None => c.arg("--dump-dom"),
    };
    let out = c.arg(url).output().expect(
        "run chromium (Debian's `chromium` package; scripts/test.sh installs it): the dashboard \
         test needs a real browser",
    );
    assert!(out.status.success(), "chromium: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text_of(dom: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for ch in dom.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_dashboard_shows_the_demo_journeys_funnel_runs_tables_and_costs_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let demo = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args([
            "demo",
            "--customers",
            "3000",
            "--days",
            "3",
            "--keep",
            "--dir",
        ])
        .arg(&db)
        .arg("--report")
        .arg(dir.path().join("report.html"))
        .output()
        .unwrap();
    assert!(demo.status.success(), "{demo:?}");
    let token = "dash-test-token";
    let srv = common::serve(
        &db,
        &[
            "--pg-listen",
            "off",
            "--token",
            token,
            "--http-listen",
            "127.0.0.1:0",
        ],
    );
    let http = srv.http.clone().expect("dashboard address in the banner");

    // The API: refused without the token, whole with it, and its counts are the table's.
    assert_eq!(get(&http, "/api/overview", None).0, 401);
    assert_eq!(get(&http, "/api/overview", Some("wrong")).0, 401);
    let (status, body) = get(&http, "/api/overview", Some(token));
    assert_eq!(status, 200, "{body}");
    let o: serde_json::Value = serde_json::from_str(&body).unwrap();
    let j = &o["journeys"][0];
    assert_eq!(j["name"], "onboarding");
    let lines = j["funnel"]["lines"].as_array().unwrap();
    let mut c = journeydb_client::Client::connect(srv.native.as_str(), Some(token)).unwrap();
    use journeydb_client::Session;
    for l in lines {
        let col = l["column"].as_str().unwrap();
        let r = c
            .run(&format!("SELECT count({col}) FROM onboarding_state"))
            .unwrap();
        let n = common::reply_rows(&r)[0][0].clone().unwrap();
        assert_eq!(l["reached"].to_string(), n, "{col}");
    }
    let stage1 = lines[0]["reached"].as_u64().unwrap();
    assert!(stage1 > 0);
    // The funnel over time: each kept snapshot, then now, whose first stage is the funnel's.
    let points = j["history"]["points"].as_array().unwrap();
    assert!(points.len() >= 2, "{points:?}");
    let last = points.last().unwrap();
    assert_eq!(last["run"], "now");
    assert_eq!(last["reached"][0].as_u64(), lines[0]["reached"].as_u64());
    for p in &points[..points.len() - 1] {
        let run = p["run"].as_i64().unwrap();
        let r = c
            .run(&format!(
                "SELECT count(welcome) FROM onboarding_state_snap_r{run}"
            ))
            .unwrap();
        let n = common::reply_rows(&r)[0][0].clone().unwrap();
        assert_eq!(p["reached"][0].to_string(), n, "run {run}");
    }
    let runs = j["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(o["tables"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "onboarding_state_runs"));

    // The browser: what a person sees.
    let dom = chromium(&format!("http://{http}/#token={token}"), None);
    assert!(
        dom.contains("data-loaded=\"yes\""),
        "the page never finished loading: {dom}"
    );
    let text = text_of(&dom);
    for want in [
        "tenant default".to_string(),
        "onboarding (state table onboarding_state, definition version 1)".to_string(),
        format!("stage 1: welcome {}", fmt_thousands(stage1)),
        "Recent runs".to_string(),
        "Funnel over time after run welcome".to_string(),
        "2026-01-04 00:00:00".to_string(),
        "onboarding_state_runs".to_string(),
        "profiles 3,000".to_string(),
        "Costs (system.costs)".to_string(),
        "default".to_string(),
    ] {
        assert!(
            text.contains(&want),
            "the page does not show {want:?}: {text}"
        );
    }
    assert!(dom.contains("<polyline"), "no run trend drawn");
    // A wrong token: the page says it was refused and shows no journey.
    let dom = chromium(&format!("http://{http}/#token=nope"), None);
    let text = text_of(&dom);
    assert!(text.contains("refused: wrong or missing token"), "{text}");
    assert!(!text.contains("stage 1: welcome"), "{text}");
    // A screenshot, kept as an artifact.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&format!("http://{http}/#token={token}"), Some(&shot));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    println!("screenshot: {}", shot.display());
}

fn fmt_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[test]
fn the_dashboard_api_honours_tenants() {
    use journeydb_client::Session;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    let init = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["tenants", "init"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let admin_token = String::from_utf8(init.stdout).unwrap().trim().to_string();
    let f = file.to_str().unwrap();
    let srv = common::serve(
        &dir.path().join("data"),
        &[
            "--pg-listen",
            "off",
            "--tenants",
            f,
            "--http-listen",
            "127.0.0.1:0",
        ],
    );
    let http = srv.http.clone().unwrap();
    let mut admin =
        journeydb_client::Client::connect(srv.native.as_str(), Some(&admin_token)).unwrap();
    let mut tokens = Vec::new();
    for t in ["red", "blue"] {
        admin.run(&format!("CREATE TENANT {t}")).unwrap();
        let r = admin
            .run(&format!("CREATE TOKEN {t} FOR TENANT {t}"))
            .unwrap();
        tokens.push(common::reply_rows(&r)[0][2].clone().unwrap());
    }
    let mut red = journeydb_client::Client::connect(srv.native.as_str(), Some(&tokens[0])).unwrap();
    red.run("CREATE TABLE red_only (k VARCHAR PRIMARY KEY, v BIGINT)")
        .unwrap();
    let names = |token: &str| -> Vec<String> {
        let (status, body) = get(&http, "/api/tables", Some(token));
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&tokens[0]), vec!["red_only".to_string()]);
    assert!(names(&tokens[1]).is_empty());
    assert!(names(&admin_token).is_empty());
    let (_, body) = get(&http, "/api/overview", Some(&tokens[1]));
    let o: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(o["tenant"], "blue");
    assert!(
        o["costs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["tenant"] == "blue"),
        "{body}"
    );
    assert_eq!(get(&http, "/api/tables", None).0, 401);
}
