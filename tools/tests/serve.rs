//! `journeydb serve` as a real process: the shell and the client over loopback, SIGKILL during
//! appends and a restart that finds every acknowledged row, and SIGTERM for a clean exit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_client::{Client, Session};

fn serve(db: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["serve", "--db"])
        .arg(db)
        .args(["--listen", "127.0.0.1:0", "--pg-listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split(" on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("address in the banner")
        .to_string();
    (child, addr)
}

fn batch(keys: Vec<String>) -> RecordBatch {
    let n = keys.len();
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ])),
        vec![
            Arc::new(StringArray::from(keys)) as ArrayRef,
            Arc::new(Int64Array::from(vec![1i64; n])) as ArrayRef,
        ],
    )
    .unwrap()
}

#[test]
fn shell_over_the_network_kill_restart_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let (mut server, addr) = serve(&db, &["--token", "t0ken"]);

    // The shell over the network.
    let out = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["sql", "--connect", &addr, "--token", "t0ken", "--format", "csv", "-c"])
        .arg("CREATE TABLE s (k VARCHAR PRIMARY KEY, n BIGINT MERGE SUM); INSERT INTO s VALUES ('a', 1), ('b', 2); SELECT k, n FROM s ORDER BY k")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "k,n\na,1\nb,2\n");
    let bad = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["sql", "--connect", &addr, "-c", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "no token, no session");

    // Appends from a client; SIGKILL the server mid-stream.
    let acked = Arc::new(AtomicI64::new(0));
    let writer = {
        let (addr, acked) = (addr.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut c = Client::connect(addr.as_str(), Some("t0ken")).unwrap();
            for i in 0.. {
                let keys: Vec<String> = (0..100).map(|j| format!("b{i}_{j}")).collect();
                if c.append("s", &batch(keys)).is_err() {
                    break;
                }
                acked.store(i + 1, Ordering::SeqCst);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.load(Ordering::SeqCst) < 30 {
        assert!(Instant::now() < deadline, "no appends acknowledged");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    writer.join().unwrap();
    let acked = acked.load(Ordering::SeqCst);

    let (mut server, addr) = serve(&db, &["--token", "t0ken"]);
    let mut c = Client::connect(addr.as_str(), Some("t0ken")).unwrap();
    let r = c.run("SELECT count(*) FROM s WHERE k >= 'b0'").unwrap();
    let n = journeydb_query::format::cell_text(r.batches[0].column(0).as_ref(), 0)
        .unwrap()
        .parse::<i64>()
        .unwrap();
    assert!(
        n >= acked * 100,
        "{n} rows after restart, {acked} appends of 100 were acknowledged"
    );
    assert!(n <= (acked + 1) * 100, "more rows than were ever sent");
    assert_eq!(n % 100, 0, "an append is whole or absent");
    drop(c);

    // SIGTERM: a clean exit.
    let pid = server.id() as i32;
    // SAFETY: sending a signal to our own child process.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            assert!(status.success(), "SIGTERM exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn demo_and_journey_runs_through_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = serve(&dir.path().join("db"), &["--token", "t0k"]);
    let report = dir.path().join("r.html");
    let out = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args([
            "demo",
            "--customers",
            "5000",
            "--days",
            "6",
            "--token",
            "t0k",
            "--connect",
            &addr,
            "--report",
        ])
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("day  6/6") && stdout.contains("stage 1: welcome"),
        "{stdout}"
    );
    // The runner over the client: the same day again changes nothing; activations go to CSV.
    let csv = dir.path().join("acts.csv");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/journey.toml");
    let run = |now: &str| {
        Command::new(env!("CARGO_BIN_EXE_journeydb"))
            .args([
                "journey",
                "run",
                example,
                "--connect",
                &addr,
                "--token",
                "t0k",
                "--now",
                now,
                "--activations-csv",
            ])
            .arg(&csv)
            .output()
            .unwrap()
    };
    let again = run("2026-01-07 00:00:00");
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success() && text.contains(": 0 transitions"),
        "{text}"
    );
    let next = run("2026-01-08 00:00:00");
    let text = String::from_utf8_lossy(&next.stdout);
    assert!(next.status.success(), "{text}");
    let lines: Vec<String> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines[0], "customer_id,step,channel,at");
    let written: usize = text
        .lines()
        .find_map(|l| l.strip_suffix(&format!(" activations written to {}", csv.display())))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(lines.len() - 1, written);
    assert!(
        written > 0 && lines[1].ends_with(",2026-01-08 00:00:00"),
        "{lines:?}"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
