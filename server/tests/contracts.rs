//! Data contracts through the server (issue 16): native appends and loads refused with the
//! report, PostgreSQL's SQLSTATE 23514, and a swap's failed post-publish check POSTed to a
//! webhook (a local HTTP receiver).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_client::{Client, Session};
use journeydb_query::Engine;
use journeydb_server::{Config, Server};
use journeydb_storage::{Database, KeyType, Options};

/// The requests a receiver got: path and body.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A one-thread HTTP receiver: every request's path and body, answered 200.
fn receiver() -> (String, Received) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/contracts", l.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut len = 0;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            g.lock()
                .unwrap()
                .push((path, String::from_utf8(body).unwrap()));
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
        }
    });
    (url, got)
}

fn batch(rows: &[(&str, i64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("age", DataType::Int64, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(schema, cols).unwrap()
}

#[test]
fn contracts_hold_over_both_protocols_and_alert_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path(), KeyType::Varchar, Options::default()).unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        pg_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Config::default()
    };
    let server = Server::bind(config, Engine::new(Arc::new(db))).unwrap();
    let (addr, pg) = (server.local_addr().unwrap(), server.pg_addr().unwrap());
    let stop = server.stop_handle();
    let thread = std::thread::spawn(move || server.serve().unwrap());

    let (url, got) = receiver();
    let mut c = Client::connect(addr, None).unwrap();
    c.run("CREATE TABLE people (k VARCHAR PRIMARY KEY, age BIGINT)")
        .unwrap();
    c.append("people", &batch(&[("a", 30), ("b", 40)])).unwrap();
    let contract = format!(
        "owners = [\"growth@example.com\"]\nsample_percent = 100\n\
         alert = {{ webhook = \"{url}\" }}\n[[column]]\nname = \"age\"\nmin = 0\nmax = 130\n"
    );
    c.run(&format!("ALTER TABLE people SET CONTRACT '{contract}'"))
        .unwrap();
    // Native append and load: refused whole, with the rule and the example key.
    let e = c
        .append("people", &batch(&[("c", 20), ("d", 999)]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("age in [0, 130] (1 rows, e.g. d)"), "{e}");
    let mut items = std::iter::once(Ok(journeydb_client::LoadItem::Rows(batch(&[("e", -1)]))));
    let e = c.load("people", &mut items).unwrap_err().to_string();
    assert!(e.contains("e.g. e"), "{e}");
    // PostgreSQL: SQLSTATE 23514 (check_violation).
    let mut p = postgres::Client::connect(
        &format!("host=127.0.0.1 port={} user=x", pg.port()),
        postgres::NoTls,
    )
    .unwrap();
    let e = p
        .execute("INSERT INTO people VALUES ($1, $2)", &[&"f", &500i64])
        .unwrap_err();
    assert_eq!(e.code(), Some(&postgres::error::SqlState::CHECK_VIOLATION));
    let r = p.query_one("SELECT count(*) FROM people", &[]).unwrap();
    assert_eq!(r.get::<_, i64>(0), 2);
    // A native swap publishes a table that breaks it: the webhook hears of it.
    c.run("CREATE TABLE staging (k VARCHAR PRIMARY KEY, age BIGINT)")
        .unwrap();
    c.append("staging", &batch(&[("a", 31), ("z", 131)]))
        .unwrap();
    c.swap("staging", "people").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no webhook call");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (path, body) = got.lock().unwrap()[0].clone();
    assert_eq!(path, "/hooks/contracts");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["table"], "people");
    assert_eq!(v["phase"], "post-publish");
    assert_eq!(v["owners"][0], "growth@example.com");
    assert_eq!(v["violations"][0]["rule"], "age in [0, 130]");
    assert_eq!(v["violations"][0]["examples"][0], "z");
    drop((c, p));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    thread.join().unwrap();
}
