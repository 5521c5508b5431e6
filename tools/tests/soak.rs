//! Soak (issue 15): `journeydb demo --connect` runs again and again against one `journeydb serve`
//! process (each run drops and reloads the CDP tables and runs a journey once per simulated day),
//! while another client runs set-operation queries. Every second the server's resident memory,
//! open file descriptors and database size on disk are sampled.
//!
//! They must stay flat: garbage collection keeps up with the churn and nothing leaks. Checked as
//! the last quarter of the run against the second quarter (after warm-up): file descriptors at
//! most 16 more, RSS and disk at most 1.5 times (plus 64 MiB for RSS). The samples go to
//! `target/soak/soak.csv` and a chart to `target/soak/soak.svg`.
//!
//! `SOAK_SECONDS` (default 40, for CI), `SOAK_CUSTOMERS` (default 20000); `scripts/soak.sh
//! MINUTES` runs it in release and keeps the chart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::fmt::Write as _;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use journeydb_client::{Client, ClientError, Session};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn du(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

#[derive(Clone, Copy)]
struct Sample {
    t: f64,
    rss_mb: f64,
    fds: f64,
    disk_mb: f64,
}

/// Three stacked line charts, one per measure, over time.
fn svg(samples: &[Sample], title: &str) -> String {
    let (w, h, pad) = (720.0, 170.0, 48.0);
    let tmax = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n<text x=\"{pad}\" y=\"20\" font-size=\"14\">{title}</text>\n",
        3.0 * h + 40.0
    );
    type Measure = (&'static str, fn(&Sample) -> f64);
    let measures: [Measure; 3] = [
        ("server RSS (MB)", |s| s.rss_mb),
        ("open file descriptors", |s| s.fds),
        ("database on disk (MB)", |s| s.disk_mb),
    ];
    for (i, (name, f)) in measures.iter().enumerate() {
        let top = 40.0 + i as f64 * h;
        let vmax = samples.iter().map(f).fold(1.0, f64::max) * 1.1;
        let x = |t: f64| pad + t / tmax * (w - 2.0 * pad);
        let y = |v: f64| top + h - 30.0 - v / vmax * (h - 50.0);
        let points: Vec<String> = samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.t), y(f(s))))
            .collect();
        let _ = write!(
            out,
            "<text x=\"{pad}\" y=\"{:.1}\">{name} (max {:.0})</text>\n<line x1=\"{pad}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\n<line x1=\"{pad}\" y1=\"{:.1}\" x2=\"{pad}\" y2=\"{:.1}\" stroke=\"#999\"/>\n<text x=\"4\" y=\"{:.1}\">{:.0}</text><text x=\"4\" y=\"{:.1}\">0</text><text x=\"{:.1}\" y=\"{:.1}\">{:.0} s</text>\n<polyline fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"1.5\" points=\"{}\"/>\n",
            top + 12.0,
            vmax / 1.1,
            y(0.0),
            x(tmax),
            y(0.0),
            y(0.0),
            y(vmax),
            y(vmax) + 4.0,
            vmax,
            y(0.0),
            x(tmax) - 30.0,
            y(0.0) + 16.0,
            tmax,
            points.join(" ")
        );
    }
    out.push_str("</svg>\n");
    out
}

#[test]
fn a_server_running_journeys_for_a_long_time_stays_flat() {
    let seconds = env_u64("SOAK_SECONDS", 40);
    let customers = env_u64("SOAK_CUSTOMERS", 20_000);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    // SOAK_QUERY_LOG_DAYS=0 runs the server without its query log. With it, the log (a database
    // of its own in DB/querylog/) holds every statement for `--query-log-days`, so it grows by
    // design: "disk" is the customers' database without it, and the log's size is reported apart.
    let log_days = std::env::var("SOAK_QUERY_LOG_DAYS").unwrap_or_else(|_| "7".into());
    let server = common::serve(&db, &["--pg-listen", "off", "--query-log-days", &log_days]);
    let addr = server.native.clone();
    let pid = server.child.id();
    let stop = AtomicBool::new(false);
    let demos = AtomicU64::new(0);
    let queries = AtomicU64::new(0);
    let errors = std::sync::Mutex::new(Vec::<String>::new());
    let t0 = Instant::now();
    let report = dir.path().join("report.html");
    let samples = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new(env!("CARGO_BIN_EXE_journeydb"))
                    .args(["demo", "--connect", &addr, "--days", "7"])
                    .args(["--customers", &customers.to_string(), "--report"])
                    .arg(&report)
                    .output()
                    .unwrap();
                if out.status.success() {
                    demos.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.lock().unwrap().push(format!(
                        "demo {} failed: {}",
                        demos.load(Ordering::Relaxed),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                    // A failing demo would fail again at once: pause instead of spinning.
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        });
        s.spawn(|| {
            let mut c = Client::connect(addr.as_str(), None).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let r = c.run(
                    "SELECT count(*) FROM (SELECT customer_id FROM profiles WHERE plan = 'pro' INTERSECT SELECT customer_id FROM behaviours WHERE purchase IS NOT NULL) t",
                );
                match r {
                    Ok(_) => {
                        queries.fetch_add(1, Ordering::Relaxed);
                    }
                    // Each demo drops and recreates the tables: a query may find them gone.
                    Err(ClientError::Server { message, .. }) if message.contains("not found") => {}
                    Err(e) => errors.lock().unwrap().push(format!("query: {e}")),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut samples = Vec::new();
        while t0.elapsed() < Duration::from_secs(seconds) {
            samples.push(Sample {
                t: t0.elapsed().as_secs_f64(),
                rss_mb: rss_kb(pid) as f64 / 1024.0,
                fds: fds(pid) as f64,
                disk_mb: du(&db).saturating_sub(du(&db.join("querylog"))) as f64 / (1 << 20) as f64,
            });
            std::thread::sleep(Duration::from_secs(1));
        }
        stop.store(true, Ordering::Relaxed);
        samples
    });
    drop(server);

    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("soak");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut csv = String::from("seconds,rss_mb,fds,disk_mb\n");
    for s in &samples {
        let _ = writeln!(csv, "{:.1},{:.1},{},{:.2}", s.t, s.rss_mb, s.fds, s.disk_mb);
    }
    std::fs::write(out_dir.join("soak.csv"), csv).unwrap();
    let title = format!(
        "journeydb serve, {seconds} s: {} demo runs of {customers} customers x 7 days, {} queries",
        demos.load(Ordering::Relaxed),
        queries.load(Ordering::Relaxed)
    );
    std::fs::write(out_dir.join("soak.svg"), svg(&samples, &title)).unwrap();
    eprintln!("{title}; samples in {}", out_dir.display());

    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
    assert!(
        demos.load(Ordering::Relaxed) >= 2,
        "fewer than two demo runs finished"
    );
    let n = samples.len();
    let (q2, q4) = (&samples[n / 4..n / 2], &samples[3 * n / 4..]);
    let max = |s: &[Sample], f: fn(&Sample) -> f64| s.iter().map(f).fold(0.0, f64::max);
    let (fd2, fd4) = (max(q2, |s| s.fds), max(q4, |s| s.fds));
    let (rss2, rss4) = (max(q2, |s| s.rss_mb), max(q4, |s| s.rss_mb));
    let (disk2, disk4) = (max(q2, |s| s.disk_mb), max(q4, |s| s.disk_mb));
    eprintln!(
        "second quarter / last quarter peaks: fds {fd2} / {fd4}, RSS {rss2:.0} / {rss4:.0} MB, disk {disk2:.1} / {disk4:.1} MB; query log at the end {:.1} MB",
        du(&db.join("querylog")) as f64 / (1 << 20) as f64
    );
    assert!(fd4 <= fd2 + 16.0, "open files grew: {fd2} then {fd4}");
    assert!(
        rss4 <= rss2 * 1.5 + 64.0,
        "RSS grew: {rss2:.0} MB then {rss4:.0} MB"
    );
    assert!(
        disk4 <= disk2 * 1.5 + 1.0,
        "disk use grew: {disk2:.1} MB then {disk4:.1} MB"
    );
}
