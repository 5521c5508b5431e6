//! Hostile clients over real sockets (loopback only), one test per finding of the security probe:
//! no input a client can send aborts the server or takes more than its own request, and a normal
//! client is served at the same time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use journeydb_client::protocol::{read_frame, write_frame, PROTOCOL_VERSION};
use journeydb_client::{Client, ClientError, Frame, Session};
use journeydb_query::Engine;
use journeydb_server::{Config, Server};
use journeydb_storage::{Database, KeyType, Options};

struct Running {
    addr: SocketAddr,
    pg: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Stops the server and returns how long `serve` took to return.
    fn stop(&mut self) -> Duration {
        let t0 = Instant::now();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("serve returned without a panic");
        }
        t0.elapsed()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

const TOKEN: &str = "secret";

fn start(max_connections: usize, max_running: usize) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path(), KeyType::Varchar, Options::default()).unwrap());
    let engine = Engine::new(db);
    engine
        .execute("CREATE TABLE t (k VARCHAR PRIMARY KEY, v VARCHAR, n BIGINT)")
        .unwrap();
    let rows: Vec<String> = (0..20_000)
        .map(|i| format!("('k{i}', 'value number {i} with some padding text', {i})"))
        .collect();
    engine
        .execute(&format!("INSERT INTO t VALUES {}", rows.join(", ")))
        .unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        pg_listen: Some("127.0.0.1:0".parse().unwrap()),
        token: Some(TOKEN.into()),
        max_connections,
        max_running,
        frame_len_max: 4 << 20,
        idle_timeout: Duration::from_secs(30),
        io_timeout: Duration::from_secs(2),
        max_pending: 4,
        query_memory_max: None,
        // The raw-protocol helpers here send the token as a cleartext password.
        pg_auth: journeydb_server::PgAuth::Password,
        tls: None,
        import_dir: None,
        export_dir: None,
        query_log_days: 7,
        query_log_dir: None,
        tenants: None,
        tenant_options: Default::default(),
        cost_rates: Default::default(),
    };
    let server = Server::bind(config, engine).unwrap();
    let (addr, pg) = (server.local_addr().unwrap(), server.pg_addr().unwrap());
    let stop = server.stop_handle();
    let thread = std::thread::spawn(move || server.serve().unwrap());
    Running {
        addr,
        pg,
        stop,
        thread: Some(thread),
        _dir: dir,
    }
}

/// A normal client still gets an answer, within `within`.
fn served(addr: SocketAddr, within: Duration) {
    let t0 = Instant::now();
    let mut c = Client::connect(addr, Some(TOKEN)).expect("a normal client connects");
    let r = c.run("SELECT count(*) FROM t WHERE n < 10").unwrap();
    assert_eq!(r.rows, 1);
    assert!(
        t0.elapsed() < within,
        "a normal client waited {:?}",
        t0.elapsed()
    );
}

/// A raw native-protocol connection after a successful Hello.
fn native_hello(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write_frame(
        &mut s,
        &Frame::Hello {
            version: PROTOCOL_VERSION,
            token: TOKEN.into(),
        },
    )
    .unwrap();
    assert!(matches!(
        read_frame(&mut s, 1 << 20).unwrap(),
        Frame::HelloOk { .. }
    ));
    s
}

/// Sends a startup packet of protocol `version` with `params` (name, value pairs).
fn pg_startup_packet(addr: SocketAddr, version: i32, params: &[&str]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut body = version.to_be_bytes().to_vec();
    for kv in params.iter().chain(&[""]) {
        body.extend_from_slice(kv.as_bytes());
        body.push(0);
    }
    let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    m.extend_from_slice(&body);
    s.write_all(&m).unwrap();
    s
}

/// A PostgreSQL session after startup and the cleartext password, with its cancel key.
fn pg_startup_key(addr: SocketAddr) -> (TcpStream, i32, i32) {
    let mut s = pg_startup_packet(addr, 196_608, &["user", "u", "database", "d"]);
    // AuthenticationCleartextPassword, then the password.
    let (kind, _) = pg_read(&mut s);
    assert_eq!(kind, b'R');
    pg_send(&mut s, b'p', format!("{TOKEN}\0").as_bytes());
    let (mut pid, mut secret) = (0, 0);
    loop {
        let (kind, body) = pg_read(&mut s);
        if kind == b'K' {
            pid = i32::from_be_bytes(body[..4].try_into().unwrap());
            secret = i32::from_be_bytes(body[4..8].try_into().unwrap());
        }
        if kind == b'Z' {
            return (s, pid, secret);
        }
    }
}

fn pg_startup(addr: SocketAddr) -> TcpStream {
    pg_startup_key(addr).0
}

fn pg_send(s: &mut TcpStream, kind: u8, body: &[u8]) {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    s.write_all(&m).unwrap();
}

fn pg_read(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).unwrap();
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).unwrap();
    (head[0], body)
}

/// Messages until ReadyForQuery; returns the kinds seen and the SQLSTATEs of errors.
fn pg_until_ready(s: &mut TcpStream) -> (Vec<u8>, Vec<String>) {
    let (mut kinds, mut codes) = (Vec::new(), Vec::new());
    loop {
        let (kind, body) = pg_read(s);
        if kind == b'E' {
            let mut i = 0;
            while i < body.len() && body[i] != 0 {
                let end = i + 1 + body[i + 1..].iter().position(|b| *b == 0).unwrap();
                if body[i] == b'C' {
                    codes.push(String::from_utf8_lossy(&body[i + 1..end]).into_owned());
                }
                i = end + 1;
            }
        }
        kinds.push(kind);
        if kind == b'Z' {
            return (kinds, codes);
        }
    }
}

fn pg_simple(s: &mut TcpStream, sql: &str) -> (Vec<u8>, Vec<String>) {
    pg_send(s, b'Q', format!("{sql}\0").as_bytes());
    pg_until_ready(s)
}

#[test]
fn long_expressions_never_kill_the_server() {
    let mut srv = start(16, 2);
    let mut c = Client::connect(srv.addr, Some(TOKEN)).unwrap();
    let ids: Vec<String> = (0..3_000).map(|i| format!("'k{i}'")).collect();
    let r = c
        .run(&format!(
            "SELECT count(*) FROM t WHERE k IN ({})",
            ids.join(", ")
        ))
        .unwrap();
    assert_eq!(r.rows, 1);
    let ors: Vec<String> = (0..2_000).map(|i| format!("n = {i}")).collect();
    c.run(&format!(
        "SELECT count(*) FROM t WHERE {}",
        ors.join(" OR ")
    ))
    .unwrap();
    for (sep, n) in [(" AND ", 50_000), (" OR ", 100_000)] {
        let terms: Vec<String> = (0..n).map(|i| format!("n <> {i}")).collect();
        match c.run(&format!("SELECT count(*) FROM t WHERE {}", terms.join(sep))) {
            Err(ClientError::Server { message, .. }) => {
                assert!(message.contains("too complex"), "{message}")
            }
            other => panic!("{sep}: {other:?}"),
        }
    }
    let plus = format!(
        "SELECT count(*) FROM t WHERE n {} > 0",
        "+ 1 ".repeat(100_000)
    );
    assert!(c.run(&plus).is_err());
    // The same over the PostgreSQL protocol, on the same connection afterwards.
    let mut s = pg_startup(srv.pg);
    let ids: Vec<String> = (0..100_000).map(|i| format!("'k{i}'")).collect();
    let (kinds, codes) = pg_simple(
        &mut s,
        &format!("SELECT count(*) FROM t WHERE k IN ({})", ids.join(", ")),
    );
    assert!(codes.is_empty() && kinds.contains(&b'D'), "{codes:?}");
    let terms: Vec<String> = (0..50_000).map(|i| format!("n <> {i}")).collect();
    let (_, codes) = pg_simple(
        &mut s,
        &format!("SELECT count(*) FROM t WHERE {}", terms.join(" AND ")),
    );
    assert_eq!(codes, vec!["54001".to_string()]);
    let (kinds, codes) = pg_simple(&mut s, "SELECT count(*) FROM t");
    assert!(codes.is_empty() && kinds.contains(&b'D'));
    served(srv.addr, Duration::from_secs(5));
    assert!(srv.stop() < Duration::from_secs(3));
}

#[test]
fn huge_parameter_numbers_are_errors_not_allocations() {
    let srv = start(16, 2);
    let mut s = pg_startup(srv.pg);
    for p in ["$1000000000000", "$18446744073709551615", "$0", "$65536"] {
        // Parse, Describe (statement), Sync: psql's \gdesc does this.
        pg_send(
            &mut s,
            b'P',
            format!("\0SELECT v FROM t WHERE v = {p}\0\0\0").as_bytes(),
        );
        pg_send(&mut s, b'D', b"S\0");
        pg_send(&mut s, b'S', b"");
        let (_, codes) = pg_until_ready(&mut s);
        assert_eq!(codes.len(), 1, "{p}: {codes:?}");
    }
    // Counts in Bind that promise more than the message holds close that connection only.
    pg_send(&mut s, b'P', b"\0SELECT v FROM t WHERE v = $1\0\0\0");
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&0i16.to_be_bytes());
    bind.extend_from_slice(&i16::MAX.to_be_bytes());
    pg_send(&mut s, b'B', &bind);
    pg_send(&mut s, b'S', b"");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    served(srv.addr, Duration::from_secs(5));
    let mut s = pg_startup(srv.pg);
    let (kinds, codes) = pg_simple(&mut s, "SELECT 1 + 1 AS two FROM t LIMIT 1");
    assert!(codes.is_empty() && kinds.contains(&b'D'), "{codes:?}");
}

#[test]
fn bound_parameters_never_become_sql() {
    let srv = start(16, 2);
    let mut s = pg_startup(srv.pg);
    // INSERT through Parse/Bind/Execute with a value that would close the tuple if spliced.
    let evil = "q', 999), ('evil', 'x";
    pg_send(&mut s, b'P', b"\0INSERT INTO t VALUES ($1, $2, 1)\0\0\0");
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&0i16.to_be_bytes());
    bind.extend_from_slice(&2i16.to_be_bytes());
    for v in ["evil-key", evil] {
        bind.extend_from_slice(&(v.len() as i32).to_be_bytes());
        bind.extend_from_slice(v.as_bytes());
    }
    bind.extend_from_slice(&0i16.to_be_bytes());
    pg_send(&mut s, b'B', &bind);
    pg_send(&mut s, b'E', b"\0\0\0\0\0");
    pg_send(&mut s, b'S', b"");
    let (_, codes) = pg_until_ready(&mut s);
    assert!(codes.is_empty(), "{codes:?}");
    let mut c = Client::connect(srv.addr, Some(TOKEN)).unwrap();
    let r = c.run("SELECT count(*) FROM t WHERE k = 'evil'").unwrap();
    let n = r.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 0, "the parameter inserted a second row");
    let r = c
        .run(&format!(
            "SELECT count(*) FROM t WHERE v = '{}'",
            evil.replace('\'', "''")
        ))
        .unwrap();
    let n = r.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 1);
}

#[test]
fn panicking_requests_release_their_slots() {
    let mut srv = start(4, 1);
    // Corrupt Arrow IPC in appends, more times than there are connections and slots.
    for i in 0..12 {
        let mut s = native_hello(srv.addr);
        let mut ipc = b"\xff\xff\xff\xff".to_vec();
        ipc.extend((0..200u32).map(|b| (b.wrapping_mul(2_654_435_761) >> (i % 24)) as u8));
        write_frame(
            &mut s,
            &Frame::Append {
                table: "t".into(),
                ipc,
            },
        )
        .unwrap();
        match read_frame(&mut s, 1 << 20) {
            Ok(Frame::Error { .. }) | Err(_) => {}
            other => panic!("corrupt append answered {other:?}"),
        }
    }
    served(srv.addr, Duration::from_secs(5));
    assert!(srv.stop() < Duration::from_secs(3));
}

#[test]
fn silent_and_trickling_sockets_lock_nobody_out() {
    let mut srv = start(4, 2);
    // More silent, unauthenticated sockets than --max-connections and --max-pending.
    let silent: Vec<TcpStream> = (0..12)
        .map(|_| TcpStream::connect(srv.addr).unwrap())
        .collect();
    let silent_pg: Vec<TcpStream> = (0..12)
        .map(|_| TcpStream::connect(srv.pg).unwrap())
        .collect();
    // Once they have been silent for a while, a client with the token is served at once: it
    // evicts the oldest silent socket.
    std::thread::sleep(Duration::from_millis(600));
    served(srv.addr, Duration::from_secs(2));
    // An authenticated client that trickles a request is closed at the io deadline (2 s).
    let mut c = native_hello(srv.addr);
    let t0 = Instant::now();
    let mut closed = false;
    for _ in 0..20 {
        if c.write_all(&[0x10]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        let mut b = [0u8; 1];
        c.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        if matches!(c.read(&mut b), Ok(0)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickling client was not closed");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    served(srv.addr, Duration::from_secs(10));
    // SIGTERM (the stop flag) ends the server promptly whatever the sockets do.
    let took = srv.stop();
    assert!(took < Duration::from_secs(3), "stop took {took:?}");
    drop((silent, silent_pg));
}

#[test]
fn clients_that_stop_reading_lose_their_slots() {
    let mut srv = start(16, 2);
    // Four clients ask for a large result and never read it; only two requests may run at once.
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = pg_startup(srv.pg);
            s.set_nonblocking(false).unwrap();
            let big: Vec<String> = (0..20).map(|_| "v".to_string()).collect();
            pg_send(
                &mut s,
                b'Q',
                format!("SELECT {} FROM t\0", big.join(", ")).as_bytes(),
            );
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // Everyone else is served within the io deadline (2 s) plus a margin.
    served(srv.addr, Duration::from_secs(6));
    let mut s = pg_startup(srv.pg);
    let (kinds, _) = pg_simple(&mut s, "SELECT count(*) FROM t");
    assert!(kinds.contains(&b'D'));
    assert!(srv.stop() < Duration::from_secs(3));
    drop(stalled);
}

#[test]
fn protocol_3_2_is_negotiated_down_to_3_0() {
    let srv = start(16, 2);
    let mut s = pg_startup_packet(srv.pg, 196_608 + 2, &["user", "u", "_pq_.fancy", "1"]);
    let (kind, body) = pg_read(&mut s);
    assert_eq!(kind, b'v', "NegotiateProtocolVersion first");
    assert_eq!(&body[..4], &0i32.to_be_bytes(), "newest minor version: 0");
    assert_eq!(&body[4..8], &1i32.to_be_bytes(), "one unrecognized option");
    let (kind, _) = pg_read(&mut s);
    assert_eq!(kind, b'R');
}

fn pg_cancel(addr: SocketAddr, pid: i32, secret: i32) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut m = 16i32.to_be_bytes().to_vec();
    m.extend_from_slice(&80_877_102i32.to_be_bytes());
    m.extend_from_slice(&pid.to_be_bytes());
    m.extend_from_slice(&secret.to_be_bytes());
    s.write_all(&m).unwrap();
}

#[test]
fn cancel_needs_the_connections_secret() {
    let srv = start(16, 2);
    let (mut s, pid, secret) = pg_startup_key(srv.pg);
    // A wrong secret cancels nothing: the sleep completes.
    pg_send(&mut s, b'Q', b"SELECT pg_sleep(0.5)\0");
    std::thread::sleep(Duration::from_millis(100));
    pg_cancel(srv.pg, pid, secret.wrapping_add(1));
    let (_, codes) = pg_until_ready(&mut s);
    assert!(codes.is_empty(), "{codes:?}");
    // The right one stops it at once with 57014.
    let t0 = Instant::now();
    pg_send(&mut s, b'Q', b"SELECT pg_sleep(30)\0");
    std::thread::sleep(Duration::from_millis(100));
    pg_cancel(srv.pg, pid, secret);
    let (_, codes) = pg_until_ready(&mut s);
    assert_eq!(codes, vec!["57014".to_string()]);
    assert!(t0.elapsed() < Duration::from_secs(5));
    // And the next statement is not cancelled.
    let (kinds, codes) = pg_simple(&mut s, "SELECT 1");
    assert!(codes.is_empty() && kinds.contains(&b'D'));
}

/// Issue 15's probe: an append request is all or nothing. A frame of 1,000 good rows and then a
/// batch with a NULL key used to store the 1,000 rows while answering an error.
#[test]
fn an_append_frame_is_all_or_nothing() {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    let srv = start(16, 2);
    let mut c = Client::connect(srv.addr, Some(TOKEN)).unwrap();
    c.run("CREATE TABLE s (k VARCHAR PRIMARY KEY, n BIGINT MERGE SUM)")
        .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ]));
    let good = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(
                (0..1000).map(|i| format!("g{i}")).collect::<Vec<_>>(),
            )) as ArrayRef,
            Arc::new(Int64Array::from(vec![1i64; 1000])) as ArrayRef,
        ],
    )
    .unwrap();
    let bad = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![Some("b1"), None])) as ArrayRef,
            Arc::new(Int64Array::from(vec![1i64, 1])) as ArrayRef,
        ],
    )
    .unwrap();
    let mut s = native_hello(srv.addr);
    let ipc = journeydb_client::protocol::encode_ipc(&[good, bad]).unwrap();
    write_frame(
        &mut s,
        &Frame::Append {
            table: "s".into(),
            ipc,
        },
    )
    .unwrap();
    assert!(matches!(
        read_frame(&mut s, 1 << 20).unwrap(),
        Frame::Error { .. }
    ));
    let r = c.run("SELECT count(*) FROM s").unwrap();
    let n = r.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 0, "a refused append stored rows");
}

/// The client's side of the same rule: a batch too large for one Append frame goes as a bulk load,
/// so a bad row at its end refuses every row before it too, and a good one lands whole.
#[test]
fn a_client_append_larger_than_a_frame_is_all_or_nothing() {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    let srv = start(16, 2);
    let mut c = Client::connect(srv.addr, Some(TOKEN)).unwrap();
    c.run("CREATE TABLE s (k VARCHAR PRIMARY KEY, n BIGINT MERGE SUM)")
        .unwrap();
    let rows = journeydb_client::APPEND_BATCH_ROWS + 50_000;
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ]));
    let batch = |last: Option<&str>| {
        let mut keys: Vec<Option<String>> = (0..rows - 1).map(|i| Some(format!("c{i}"))).collect();
        keys.push(last.map(str::to_string));
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(keys)) as ArrayRef,
                Arc::new(Int64Array::from(vec![1i64; rows])) as ArrayRef,
            ],
        )
        .unwrap()
    };
    let count = |c: &mut Client| {
        let r = c.run("SELECT count(*), sum(n) FROM s").unwrap();
        let col = |i: usize| {
            r.batches[0]
                .column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .iter()
                .next()
                .flatten()
        };
        (col(0), col(1))
    };
    assert!(c.append("s", &batch(None)).is_err());
    assert_eq!(
        count(&mut c),
        (Some(0), None),
        "a refused append stored rows"
    );
    assert_eq!(c.append("s", &batch(Some("last"))).unwrap(), rows as u64);
    assert_eq!(count(&mut c), (Some(rows as i64), Some(rows as i64)));
    // The connection is still usable for small appends (one frame each).
    assert_eq!(
        c.append("s", &batch(Some("last")).slice(0, 10)).unwrap(),
        10
    );
    assert_eq!(count(&mut c), (Some(rows as i64), Some(rows as i64 + 10)));
}
