//! The server over real sockets on loopback: the client and the embedded session give the same
//! answers; tokens; hostile input; connection limits; concurrent appenders and readers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_client::protocol::{encode_frame, read_frame};
use journeydb_client::{Client, ClientError, ErrorCode, Frame, Session};
use journeydb_query::Engine;
use journeydb_server::{Config, EmbeddedSession, Server};
use journeydb_storage::{Database, KeyType, Options};

struct Running {
    addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    engine: Engine,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn start(token: Option<&str>, max_connections: usize) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path(), KeyType::Varchar, Options::default()).unwrap());
    let engine = Engine::new(db);
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        pg_listen: Some("127.0.0.1:0".parse().unwrap()),
        token: token.map(str::to_string),
        max_connections,
        frame_len_max: 1 << 20,
        idle_timeout: Duration::from_secs(10),
        // Fewer slots than the concurrency test's clients: requests queue for them.
        max_running: 2,
        query_memory_max: Some(64 << 20),
        io_timeout: Duration::from_secs(3),
        max_pending: 8,
        pg_auth: journeydb_server::PgAuth::Scram,
        tls: None,
        import_dir: None,
        export_dir: None,
        query_log_days: 7,
        query_log_dir: None,
        tenants: None,
        tenant_options: Default::default(),
        cost_rates: Default::default(),
    };
    let server = Server::bind(config, engine.clone()).unwrap();
    let addr = server.local_addr().unwrap();
    let stop = server.stop_handle();
    let thread = std::thread::spawn(move || server.serve().unwrap());
    Running {
        addr,
        stop,
        thread: Some(thread),
        engine,
        _dir: dir,
    }
}

fn batch(keys: &[String], n: &[i64]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(keys)) as ArrayRef,
            Arc::new(Int64Array::from(n.to_vec())) as ArrayRef,
        ],
    )
    .unwrap()
}

fn cells(r: &journeydb_client::Reply) -> Vec<String> {
    let mut out = Vec::new();
    for b in &r.batches {
        for row in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| {
                        journeydb_query::format::cell_text(c.as_ref(), row).unwrap_or("NULL".into())
                    })
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    out
}

/// One job, written against the trait: the same code for both sessions.
fn job(s: &mut dyn Session, table: &str) -> Vec<Vec<String>> {
    s.run(&format!(
        "CREATE TABLE {table} (k VARCHAR PRIMARY KEY, n BIGINT MERGE SUM)"
    ))
    .unwrap();
    s.run(&format!(
        "CREATE TABLE {table}_next (k VARCHAR PRIMARY KEY, n BIGINT MERGE SUM)"
    ))
    .unwrap();
    let keys: Vec<String> = (0..250_000).map(|i| format!("c{i}")).collect();
    let n: Vec<i64> = (0..250_000).map(|i| i % 7).collect();
    assert_eq!(s.append(table, &batch(&keys, &n)).unwrap(), 250_000);
    s.append(table, &batch(&keys[..10], &[100; 10])).unwrap();
    s.swap(table, &format!("{table}_next")).unwrap();
    s.swap(table, &format!("{table}_next")).unwrap();
    let mut answers = Vec::new();
    for q in [
        format!("SELECT count(*), max(n), min(n) FROM {table}"),
        format!("SELECT k, n FROM {table} WHERE n > 50 ORDER BY k"),
        format!("SELECT count(*) FROM (SELECT k FROM {table} WHERE n = 3 EXCEPT SELECT k FROM {table} WHERE k < 'c2')"),
        format!("SELECT k FROM {table} ORDER BY k DESC LIMIT 3"),
    ] {
        answers.push(cells(&s.run(&q).unwrap()));
    }
    let e = s.run("SELECT nope FROM nowhere").unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Server {
                code: ErrorCode::User,
                ..
            }
        ),
        "{e:?}"
    );
    answers
}

#[test]
fn client_and_embedded_session_give_the_same_answers() {
    let srv = start(None, 8);
    let mut remote = Client::connect(srv.addr, None).unwrap();
    remote.ping().unwrap();
    let over_network = job(&mut remote, "remote_t");
    let mut local = EmbeddedSession::new(srv.engine.clone());
    let in_process = job(&mut local, "local_t");
    assert_eq!(over_network, in_process);
    assert_eq!(over_network[0], vec!["250000|106|0".to_string()]);
    // A large result streams in several frames and arrives whole.
    let r = remote.run("SELECT k, n FROM remote_t").unwrap();
    assert!(r.batches.len() > 1);
    assert_eq!(
        r.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        250_000
    );
}

/// `append_each` on either session: one commit per batch, and the first error stops it with the
/// batches before it committed and none after it (the client sends a batch before it has read
/// the last one's reply, so this also checks that it reads every reply in order).
fn append_each_job(s: &mut dyn Session, table: &str) -> Vec<String> {
    s.run(&format!(
        "CREATE TABLE {table} (k VARCHAR PRIMARY KEY, n BIGINT MERGE SUM)"
    ))
    .unwrap();
    let keys = |p: &str, n: usize| (0..n).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    let ones = |n: usize| vec![1i64; n];
    // A batch over one Append frame's rows goes as a bulk load, between two that do not.
    let good = [
        batch(&keys("a", 1000), &ones(1000)),
        batch(&keys("b", 200_000), &ones(200_000)),
        batch(&keys("a", 10), &ones(10)),
    ];
    let mut items = good.iter().cloned().map(Ok);
    assert_eq!(s.append_each(table, &mut items).unwrap(), 201_010);
    let bad = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("nope", DataType::Int64, true),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(["z"])) as ArrayRef,
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
        ],
    )
    .unwrap();
    // Refused by the table: the batch before it stays, the one after it is never stored.
    let mut items = [
        batch(&keys("c", 5), &ones(5)),
        bad,
        batch(&keys("d", 7), &ones(7)),
    ]
    .into_iter()
    .map(Ok);
    let e = s.append_each(table, &mut items).unwrap_err();
    assert!(matches!(e, ClientError::Server { .. }), "{e:?}");
    // An input that fails after a batch was sent: that batch stays, the error is the input's.
    let mut items = vec![
        Ok(batch(&keys("e", 3), &ones(3))),
        Err(ClientError::Input("the file ended early".into())),
        Ok(batch(&keys("f", 3), &ones(3))),
    ]
    .into_iter();
    let e = s.append_each(table, &mut items).unwrap_err();
    assert!(e.to_string().contains("ended early"), "{e}");
    let mut answers = Vec::new();
    for q in [
        format!("SELECT count(*), sum(n) FROM {table}"),
        format!("SELECT count(*) FROM {table} WHERE k < 'b'"),
        format!("SELECT k FROM {table} WHERE k >= 'c' ORDER BY k"),
    ] {
        answers.push(cells(&s.run(&q).unwrap()).join(","));
    }
    answers
}

#[test]
fn append_each_commits_batch_by_batch_and_stops_at_the_first_error() {
    let srv = start(None, 8);
    let mut remote = Client::connect(srv.addr, None).unwrap();
    let over_network = append_each_job(&mut remote, "each_remote");
    let mut local = EmbeddedSession::new(srv.engine.clone());
    let in_process = append_each_job(&mut local, "each_local");
    assert_eq!(over_network, in_process);
    assert_eq!(
        over_network,
        vec![
            "201008|201018".to_string(),
            "1000".to_string(),
            "c0,c1,c2,c3,c4,e0,e1,e2".to_string()
        ]
    );
    // The connection is in step: the next request gets its own reply.
    remote.ping().unwrap();
}

#[test]
fn tokens_and_connection_limits() {
    let srv = start(Some("s3cret"), 2);
    let e = Client::connect(srv.addr, Some("wrong")).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Server {
                code: ErrorCode::Auth,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(Client::connect(srv.addr, None).is_err());
    let a = Client::connect(srv.addr, Some("s3cret")).unwrap();
    let mut b = Client::connect(srv.addr, Some("s3cret")).unwrap();
    let e = Client::connect(srv.addr, Some("s3cret")).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Server {
                code: ErrorCode::Limit,
                ..
            }
        ),
        "one past the limit: {e:?}"
    );
    b.ping().unwrap();
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Client::connect(srv.addr, Some("s3cret")) {
            Ok(mut c) => {
                c.ping().unwrap();
                break;
            }
            Err(_) => {
                assert!(Instant::now() < deadline, "a freed slot was never reused");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn raw(addr: SocketAddr, bytes: &[u8]) -> Option<Frame> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    read_frame(&mut s, 1 << 20).ok()
}

#[test]
fn hostile_input_gets_an_error_or_a_close_and_the_server_stays_up() {
    let srv = start(None, 8);
    // Random bytes instead of a handshake.
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..20 {
        let junk: Vec<u8> = (0..64)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        if let Some(f) = raw(srv.addr, &junk) {
            assert!(
                matches!(
                    f,
                    Frame::Error {
                        code: ErrorCode::Protocol | ErrorCode::Auth,
                        ..
                    }
                ),
                "{f:?}"
            );
        }
    }
    // A 4 GiB length prefix.
    let mut huge = u32::MAX.to_le_bytes().to_vec();
    huge.push(1);
    assert!(matches!(
        raw(srv.addr, &huge),
        Some(Frame::Error {
            code: ErrorCode::Protocol,
            ..
        })
    ));
    // A truncated frame after a good handshake, then a disconnect.
    let hello = encode_frame(&Frame::Hello {
        version: 1,
        token: String::new(),
    });
    let query = encode_frame(&Frame::Query {
        sql: "SELECT count(*) FROM system.tables".into(),
    });
    let mut bytes = hello.clone();
    bytes.extend_from_slice(&query[..query.len() - 3]);
    let _ = raw(srv.addr, &bytes);
    // A wrong protocol version.
    let old = encode_frame(&Frame::Hello {
        version: 99,
        token: String::new(),
    });
    assert!(matches!(
        raw(srv.addr, &old),
        Some(Frame::Error {
            code: ErrorCode::Auth,
            ..
        })
    ));
    // A request before the handshake.
    assert!(matches!(
        raw(srv.addr, &query),
        Some(Frame::Error {
            code: ErrorCode::Protocol,
            ..
        })
    ));
    // A disconnect in the middle of an append: half of an Append frame.
    srv.engine
        .execute_one("CREATE TABLE t (k VARCHAR PRIMARY KEY, n BIGINT)")
        .unwrap();
    let ipc = journeydb_client::protocol::encode_ipc(&[batch(&["x".to_string()], &[1])]).unwrap();
    let append = encode_frame(&Frame::Append {
        table: "t".into(),
        ipc,
    });
    let mut bytes = hello;
    bytes.extend_from_slice(&append[..append.len() / 2]);
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.write_all(&bytes).unwrap();
    drop(s);
    // A garbage Append payload gets a typed error and the connection stays usable.
    let mut c = Client::connect(srv.addr, None).unwrap();
    let e = c.append("t", &RecordBatch::new_empty(Arc::new(Schema::empty())));
    assert!(e.is_err() || e.is_ok());
    let r = c.run("SELECT count(*) FROM t").unwrap();
    assert_eq!(
        cells(&r),
        vec!["0".to_string()],
        "the half-sent append left nothing behind"
    );
    c.ping().unwrap();
    let mut buf = Vec::new();
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&encode_frame(&Frame::Hello {
        version: 1,
        token: String::new(),
    }))
    .unwrap();
    s.write_all(&[5, 0, 0, 0, 0x02, 0xff, 0xff, 0xff, 0xff])
        .unwrap();
    let _ = s.read_to_end(&mut buf);
    assert!(
        !buf.is_empty(),
        "a malformed Query frame got an answer before the close"
    );
}

#[test]
fn sixteen_clients_append_and_query_at_once() {
    let srv = start(None, 32);
    srv.engine
        .execute_one("CREATE TABLE c (k VARCHAR PRIMARY KEY, n BIGINT MERGE SUM)")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let addr = srv.addr;
            std::thread::spawn(move || {
                let mut c = Client::connect(addr, None).unwrap();
                let mut acked = 0i64;
                let mut i = 0;
                while Instant::now() < deadline {
                    if i % 3 == 0 {
                        // Every read sees a committed state: the SUM over all keys is a multiple of 1.
                        let r = c.run("SELECT count(*) FROM c").unwrap();
                        assert_eq!(r.batches[0].num_rows(), 1);
                    } else {
                        let keys: Vec<String> = (0..50).map(|j| format!("t{t}_{j}")).collect();
                        c.append("c", &batch(&keys, &[1; 50])).unwrap();
                        acked += 1;
                    }
                    i += 1;
                }
                (t, acked)
            })
        })
        .collect();
    let results: Vec<(i32, i64)> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    for (t, acked) in results {
        let b = srv
            .engine
            .query(&format!(
                "SELECT min(n), max(n), count(*) FROM c WHERE k >= 't{t}_' AND k < 't{t}_z'"
            ))
            .unwrap();
        let row: Vec<i64> = (0..3)
            .map(|i| {
                b.column(i)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .value(0)
            })
            .collect();
        assert_eq!(
            row,
            vec![acked, acked, 50],
            "client {t}: every acknowledged append is there"
        );
    }
}

#[test]
fn a_query_over_the_memory_bound_is_refused_and_the_connection_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path(), KeyType::Varchar, Options::default()).unwrap());
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        pg_listen: None,
        // 1 MiB: a 100k-row table's key bitmap fits, its decoded BIGINT column (800 kB) plus the
        // VARCHAR key strings do not.
        query_memory_max: Some(1 << 20),
        ..Config::default()
    };
    let server = Server::bind(config, Engine::new(db)).unwrap();
    let addr = server.local_addr().unwrap();
    let stop = server.stop_handle();
    let t = std::thread::spawn(move || server.serve().unwrap());
    let mut c = Client::connect(addr, None).unwrap();
    c.run("CREATE TABLE big (k VARCHAR PRIMARY KEY, n BIGINT, m BIGINT)")
        .unwrap();
    let keys: Vec<String> = (0..100_000).map(|i| format!("k{i}")).collect();
    let n: Vec<i64> = (0..100_000).collect();
    let b = batch(&keys, &n);
    let b = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("m", DataType::Int64, true),
        ])),
        vec![
            b.column(0).clone(),
            b.column(1).clone(),
            b.column(1).clone(),
        ],
    )
    .unwrap();
    c.append("big", &b).unwrap();
    // Bitmap-only work fits.
    let r = c
        .run("SELECT count(*) FROM big WHERE n IS NOT NULL")
        .unwrap();
    assert_eq!(cells(&r), vec!["100000"]);
    // Two dense BIGINT columns do not.
    match c.run("SELECT k, n, m FROM big WHERE n > m") {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(code, ErrorCode::Limit);
            assert!(message.contains("memory limit"), "{message}");
        }
        other => panic!("expected a Limit error, got {other:?}"),
    }
    // The connection is still usable.
    let r = c.run("SELECT count(*) FROM big").unwrap();
    assert_eq!(cells(&r), vec!["100000"]);
    drop(c);
    stop.store(true, Ordering::SeqCst);
    t.join().unwrap();
}

/// A load through the server: every Data frame held, one commit at the end; a bad batch, a failed
/// input or a closed connection commits nothing; added columns land with the rows.
#[test]
fn a_load_through_the_server_is_one_commit_or_nothing() {
    let srv = start(None, 8);
    let mut c = Client::connect(srv.addr, None).unwrap();
    c.run("CREATE TABLE l (k VARCHAR PRIMARY KEY, n BIGINT MERGE SUM)")
        .unwrap();
    let keys: Vec<String> = (0..300_000).map(|i| format!("c{i}")).collect();
    let ones = vec![1i64; keys.len()];
    let count = |c: &mut Client| cells(&c.run("SELECT count(*), max(n) FROM l").unwrap());
    // Rows then a failing input: nothing committed, and the connection still works.
    let mut items = vec![
        Ok(journeydb_client::LoadItem::Rows(batch(&keys, &ones))),
        Err(ClientError::Input("the file ended early".into())),
    ]
    .into_iter();
    let e = c.load("l", &mut items).unwrap_err();
    assert!(e.to_string().contains("ended early"), "{e}");
    assert_eq!(count(&mut c), vec!["0|NULL"]);
    // A batch the table refuses (an unknown column): an error, nothing committed.
    let bad = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("nope", DataType::Int64, true),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(["a"])) as ArrayRef,
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
        ],
    )
    .unwrap();
    let mut items = vec![
        Ok(journeydb_client::LoadItem::Rows(batch(
            &keys[..10],
            &ones[..10],
        ))),
        Ok(journeydb_client::LoadItem::Rows(bad)),
    ]
    .into_iter();
    assert!(c.load("l", &mut items).is_err());
    assert_eq!(count(&mut c), vec!["0|NULL"]);
    // A whole load: the rows of every batch (split into frames) and an added column, in one commit.
    let before = srv.engine.database().snapshot().version();
    let extra = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("m", DataType::Int64, true),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(["c1", "c2"])) as ArrayRef,
            Arc::new(Int64Array::from(vec![5, 6])) as ArrayRef,
        ],
    )
    .unwrap();
    let mut items = vec![
        Ok(journeydb_client::LoadItem::Rows(batch(&keys, &ones))),
        Ok(journeydb_client::LoadItem::AddColumn {
            name: "m".into(),
            ty: "BIGINT".into(),
            rule: "MAX".into(),
        }),
        Ok(journeydb_client::LoadItem::Rows(batch(
            &keys[..5],
            &ones[..5],
        ))),
        Ok(journeydb_client::LoadItem::Rows(extra)),
    ]
    .into_iter();
    assert_eq!(c.load("l", &mut items).unwrap(), 300_000);
    assert_eq!(count(&mut c), vec!["300000|2"]);
    assert_eq!(
        srv.engine.database().snapshot().version().0,
        before.0 + 1,
        "one commit"
    );
    assert_eq!(
        cells(
            &c.run("SELECT k, n, m FROM l WHERE m IS NOT NULL ORDER BY k")
                .unwrap()
        ),
        vec!["c1|2|5", "c2|2|6"]
    );
    // A connection that closes mid-load commits nothing.
    {
        let ipc =
            journeydb_client::protocol::encode_ipc(&[batch(&keys[..3], &[100, 100, 100])]).unwrap();
        let mut raw = std::net::TcpStream::connect(srv.addr).unwrap();
        journeydb_client::protocol::write_frame(
            &mut raw,
            &Frame::Hello {
                version: journeydb_client::PROTOCOL_VERSION,
                token: String::new(),
            },
        )
        .unwrap();
        journeydb_client::protocol::write_frame(
            &mut raw,
            &Frame::Load {
                table: "l".into(),
                step: journeydb_client::protocol::LoadStep::Data,
                ipc,
            },
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&mut c), vec!["300000|2"]);
}

/// A server opens no file a client names unless started with an import or export directory.
#[test]
fn a_server_refuses_copy_with_a_file_by_default() {
    let srv = start(None, 8);
    let mut c = Client::connect(srv.addr, None).unwrap();
    c.run("CREATE TABLE f (k VARCHAR PRIMARY KEY, n BIGINT)")
        .unwrap();
    for sql in [
        "COPY f FROM '/etc/passwd' (FORMAT csv)",
        "COPY f TO '/tmp/journeydb-should-not-exist.csv'",
        "COPY (SELECT * FROM f) TO 'x.parquet'",
        "SELECT count(*) FROM read_csv('/etc/passwd')",
        "INSERT INTO f SELECT * FROM read_parquet('/tmp/x.parquet')",
    ] {
        let e = c.run(sql).unwrap_err().to_string();
        assert!(e.contains("opens no file a client names"), "{sql}: {e}");
    }
    assert!(!std::path::Path::new("/tmp/journeydb-should-not-exist.csv").exists());
}
