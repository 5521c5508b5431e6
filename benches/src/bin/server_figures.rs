//! The server figures: appended rows/s through the native client over loopback against the embedded
//! engine on the same batches, and the round trip of a COUNT over the whole state table, both measured
//! in one run.
//!
//! `cargo run --release -p journeydb-benches --bin server_figures -- [--customers N] [--batch ROWS]`

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use journeydb_benches::{arg, median, Journey};
use journeydb_client::{Client, Session};
use journeydb_query::Engine;
use journeydb_server::{Config, Server};
use journeydb_storage::{Database, KeyType, Options};

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("server_figures: {msg}");
    std::process::exit(1)
}

fn main() {
    let customers: usize = arg("--customers")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let batch_rows: usize = arg("--batch")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let base = std::env::temp_dir().join(format!("journeydb-sfig-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let j = Journey::new(customers, 42);
    eprintln!("generating {customers} customers in batches of {batch_rows} ...");
    let batches: Vec<_> = (0..customers)
        .step_by(batch_rows)
        .map(|s| j.batch(s..(s + batch_rows).min(customers)))
        .collect();

    // Embedded.
    let emb = Database::create(base.join("embedded"), KeyType::Varchar, Options::default())
        .unwrap_or_else(|e| fail(e));
    emb.create_table("state", j.schema())
        .unwrap_or_else(|e| fail(e));
    let t = Instant::now();
    for b in &batches {
        emb.append("state", b).unwrap_or_else(|e| fail(e));
    }
    let embedded = t.elapsed();
    drop(emb);

    // Through the server.
    let db = Arc::new(
        Database::create(base.join("served"), KeyType::Varchar, Options::default())
            .unwrap_or_else(|e| fail(e)),
    );
    db.create_table("state", j.schema())
        .unwrap_or_else(|e| fail(e));
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap_or_else(|e| fail(e)),
        pg_listen: None,
        ..Config::default()
    };
    let server = Server::bind(config, Engine::new(db.clone())).unwrap_or_else(|e| fail(e));
    let addr = server.local_addr().unwrap_or_else(|| fail("no address"));
    let stop = server.stop_handle();
    let handle = std::thread::spawn(move || server.serve());
    let mut client = Client::connect(addr, None).unwrap_or_else(|e| fail(e));
    let t = Instant::now();
    for b in &batches {
        client.append("state", b).unwrap_or_else(|e| fail(e));
    }
    let remote = t.elapsed();
    let rate = |d: Duration| customers as f64 / d.as_secs_f64();
    println!(
        "append {customers} rows in {batch_rows}-row batches: embedded {:.2}M rows/s ({:.2?}), client over loopback {:.2}M rows/s ({:.2?}); the network path keeps {:.0}%",
        rate(embedded) / 1e6,
        embedded,
        rate(remote) / 1e6,
        remote,
        100.0 * embedded.as_secs_f64() / remote.as_secs_f64()
    );

    db.flush().unwrap_or_else(|e| fail(e));
    db.compact(2).unwrap_or_else(|e| fail(e));
    let engine = Engine::new(db.clone());
    for sql in [
        "SELECT count(*) FROM state",
        "SELECT count(*) FROM state WHERE stage1 IS NOT NULL",
    ] {
        let mut local = Vec::new();
        let mut net = Vec::new();
        let mut answer = String::new();
        for i in 0..8 {
            let t = Instant::now();
            let reply = client.run(sql).unwrap_or_else(|e| fail(e));
            let d = t.elapsed();
            let t = Instant::now();
            engine.execute_one(sql).unwrap_or_else(|e| fail(e));
            let d2 = t.elapsed();
            if i > 0 {
                net.push(d);
                local.push(d2);
            }
            if let Some(b) = reply.batches.first() {
                answer =
                    journeydb_query::format::cell_text(b.column(0).as_ref(), 0).unwrap_or_default();
            }
        }
        println!(
            "{sql:<55} round trip over loopback {:>9.2?}, embedded {:>9.2?} ({answer})",
            median(net),
            median(local)
        );
    }
    drop(client);
    stop.store(true, Ordering::SeqCst);
    let _ = handle.join();
    drop(engine);
    drop(db);
    let _ = std::fs::remove_dir_all(&base);
}
