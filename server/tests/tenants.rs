//! Tenants (issue 16): every statement kind, over both protocols, tried by one tenant against
//! another's table; the admin's statements and rights; tokens kept as verifiers; quotas.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_client::{Client, ErrorCode, Session};
use journeydb_query::Engine;
use journeydb_server::tenants::TenantsFile;
use journeydb_server::{Config, Server};
use journeydb_storage::{Database, KeyType, Options};

struct Running {
    addr: std::net::SocketAddr,
    pg: std::net::SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A server with tenants in `root`, its file at `root/tenants.toml`; the admin token.
fn start(root: &Path) -> Running {
    let file = root.join("tenants.toml");
    let admin = root.join("admin");
    let db = if admin.join("CURRENT").exists() {
        Database::open(&admin, Options::default())
    } else {
        Database::create(&admin, KeyType::Varchar, Options::default())
    }
    .unwrap();
    std::fs::create_dir_all(root.join("import")).unwrap();
    std::fs::create_dir_all(root.join("export")).unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        pg_listen: Some("127.0.0.1:0".parse().unwrap()),
        tenants: Some((file, root.to_path_buf())),
        query_log_dir: Some(root.join("querylog")),
        import_dir: Some(root.join("import")),
        export_dir: Some(root.join("export")),
        ..Config::default()
    };
    let server = Server::bind(config, Engine::new(Arc::new(db))).unwrap();
    let (addr, pg) = (server.local_addr().unwrap(), server.pg_addr().unwrap());
    let stop = server.stop_handle();
    let thread = Some(std::thread::spawn(move || server.serve().unwrap()));
    Running {
        addr,
        pg,
        stop,
        thread,
    }
}

/// A tenants file with only an admin token; the token.
fn init(root: &Path) -> String {
    let token = journeydb_server::tenants::new_token().unwrap();
    TenantsFile {
        admin_token: Some(
            journeydb_server::scram::Verifier::new(&token)
                .unwrap()
                .to_string(),
        ),
        tenants: Vec::new(),
    }
    .save(&root.join("tenants.toml"))
    .unwrap();
    token
}

fn strings(b: &RecordBatch, col: &str) -> Vec<String> {
    let a = b.column_by_name(col).unwrap();
    let a = a.as_any().downcast_ref::<StringArray>().unwrap();
    (0..a.len())
        .map(|i| {
            if a.is_null(i) {
                String::new()
            } else {
                a.value(i).to_string()
            }
        })
        .collect()
}

fn count(c: &mut Client, sql: &str) -> i64 {
    let r = c.run(sql).unwrap();
    let a = r.batches[0].column(0);
    a.as_any().downcast_ref::<Int64Array>().unwrap().value(0)
}

fn pg(addr: std::net::SocketAddr, user: &str, token: &str) -> postgres::Client {
    postgres::Client::connect(
        &format!(
            "host={} port={} user={user} password={token}",
            addr.ip(),
            addr.port()
        ),
        postgres::NoTls,
    )
    .unwrap()
}

/// Creates tenant `name` with one token named `name`; the token.
fn tenant(admin: &mut Client, name: &str, options: &str) -> String {
    admin
        .run(&format!("CREATE TENANT {name} {options}"))
        .unwrap();
    let r = admin
        .run(&format!("CREATE TOKEN {name} FOR TENANT {name}"))
        .unwrap();
    strings(&r.batches[0], "token").remove(0)
}

fn batch(keys: &[&str], v: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Int64, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(keys.to_vec())),
        Arc::new(Int64Array::from(vec![v; keys.len()])),
    ];
    RecordBatch::try_new(schema, cols).unwrap()
}

/// Every statement kind that names a table, aimed by tenant B at A's table `secret`.
const AIMED: [&str; 16] = [
    "SELECT * FROM secret",
    "SELECT count(*) FROM secret",
    "SELECT k FROM mine INTERSECT SELECT k FROM secret",
    "SELECT * FROM mine JOIN secret ON mine.k = secret.k",
    "INSERT INTO secret VALUES ('b1', 1)",
    "INSERT INTO mine SELECT * FROM secret",
    "CREATE TABLE stolen AS SELECT * FROM secret",
    "DROP TABLE secret",
    "ALTER TABLE secret ADD COLUMN w BIGINT",
    "ALTER TABLE secret RENAME TO gone",
    "SELECT * FROM secret TABLESAMPLE BERNOULLI (50)",
    "DESCRIBE secret",
    "SUMMARIZE secret",
    "COPY secret TO 'out.csv' (FORMAT csv)",
    "EXPLAIN SELECT * FROM secret",
    "COPY secret FROM 'in.csv' (FORMAT csv)",
];

#[test]
fn no_statement_of_either_protocol_reaches_another_tenants_table() {
    let dir = tempfile::tempdir().unwrap();
    let admin_token = init(dir.path());
    let srv = start(dir.path());
    let mut admin = Client::connect(srv.addr, Some(&admin_token)).unwrap();
    let ta = tenant(&mut admin, "alpha", "");
    let tb = tenant(&mut admin, "beta", "WITH (key_type = 'varchar')");

    let mut a = Client::connect(srv.addr, Some(&ta)).unwrap();
    a.run("CREATE TABLE secret (k VARCHAR PRIMARY KEY, v BIGINT)")
        .unwrap();
    a.append("secret", &batch(&["a1", "a2", "a3"], 7)).unwrap();
    let mut b = Client::connect(srv.addr, Some(&tb)).unwrap();
    b.run("CREATE TABLE mine (k VARCHAR PRIMARY KEY, v BIGINT)")
        .unwrap();
    b.append("mine", &batch(&["a1", "b2"], 1)).unwrap();

    // A file B may import (its own import directory): only the table is out of reach.
    std::fs::write(dir.path().join("import/beta/in.csv"), "k,v\nb5,5\n").unwrap();
    let mut matrix = Vec::new();
    // Native protocol, statement by statement: every one fails (the table is not there for B).
    for sql in AIMED {
        let e = b.run(sql).unwrap_err().to_string();
        assert!(
            e.contains("not found") || e.contains("secret"),
            "native {sql}: {e}"
        );
        matrix.push(format!("native | {sql} | refused: {e}"));
    }
    // LOCK TABLE takes a named lock (a journey's run lock names a table that may not exist yet):
    // B's lock lives in B's namespace and does not hold A up.
    b.run("LOCK TABLE secret IN ACCESS EXCLUSIVE MODE NOWAIT")
        .unwrap();
    a.run("LOCK TABLE secret NOWAIT").unwrap();
    matrix.push(
        "native | LOCK TABLE secret | B's own name; A's lock on its table still granted".into(),
    );
    // Native frames: append, swap and load into A's table.
    let e = b
        .append("secret", &batch(&["b9"], 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not found"), "{e}");
    matrix.push(format!("native | Append secret | refused: {e}"));
    let e = b.swap("mine", "secret").unwrap_err().to_string();
    assert!(e.contains("not found"), "{e}");
    matrix.push(format!("native | Swap mine secret | refused: {e}"));
    let one = batch(&["b8"], 1);
    let mut items = std::iter::once(Ok(journeydb_client::LoadItem::Rows(one)));
    let e = b.load("secret", &mut items).unwrap_err().to_string();
    assert!(e.contains("not found"), "{e}");
    matrix.push(format!("native | Load secret | refused: {e}"));

    // PostgreSQL, the same statements and the catalog as psql and BI tools read it.
    let mut p = pg(srv.pg, "beta", &tb);
    for sql in AIMED {
        let e = p.simple_query(sql).unwrap_err();
        let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
        assert!(!code.is_empty(), "postgresql {sql}: {e}");
        matrix.push(format!("postgresql | {sql} | refused: {code}"));
    }
    for (sql, what) in [
        (
            "SELECT table_name FROM information_schema.tables",
            "information_schema",
        ),
        (
            "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relkind = 'r'",
            "pg_class",
        ),
        ("SELECT name FROM system.tables", "system.tables"),
        ("SHOW TABLES", "SHOW TABLES"),
    ] {
        let rows = p.simple_query(sql).unwrap();
        let names: Vec<String> = rows
            .iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect();
        assert!(names.contains(&"mine".to_string()), "{what}: {names:?}");
        assert!(!names.contains(&"secret".to_string()), "{what}: {names:?}");
        matrix.push(format!(
            "postgresql | {what} | lists only its own: {names:?}"
        ));
    }
    // A table of B's own named like A's is B's, and A's stays A's.
    b.run("CREATE TABLE secret (k VARCHAR PRIMARY KEY, v BIGINT)")
        .unwrap();
    assert_eq!(count(&mut b, "SELECT count(*) FROM secret"), 0);
    assert_eq!(count(&mut a, "SELECT count(*) FROM secret"), 3);
    assert_eq!(
        count(&mut a, "SELECT count(*) FROM secret WHERE v = 7"),
        3,
        "A's rows untouched"
    );
    let e = a.run("SELECT * FROM mine").unwrap_err().to_string();
    assert!(e.contains("not found"), "{e}");

    // The query log: each tenant sees its own statements only; the admin sees both.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mine = count(&mut b, "SELECT count(*) FROM system.queries");
        let foreign = count(
            &mut b,
            "SELECT count(*) FROM system.queries WHERE tenant <> 'beta'",
        );
        assert_eq!(foreign, 0);
        let all = count(
            &mut admin,
            "SELECT count(*) FROM system.queries WHERE tenant = 'alpha'",
        );
        if mine > 10 && all > 3 {
            break;
        }
        assert!(Instant::now() < deadline, "log rows: {mine} {all}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let costs = b.run("SELECT tenant FROM system.costs").unwrap();
    let tenants: Vec<String> = costs
        .batches
        .iter()
        .flat_map(|x| strings(x, "tenant"))
        .collect();
    assert!(
        !tenants.is_empty() && tenants.iter().all(|t| t == "beta"),
        "{tenants:?}"
    );
    let costs = admin
        .run("SELECT DISTINCT tenant FROM system.costs ORDER BY tenant")
        .unwrap();
    let tenants: Vec<String> = costs
        .batches
        .iter()
        .flat_map(|x| strings(x, "tenant"))
        .collect();
    assert!(
        tenants.contains(&"alpha".to_string()) && tenants.contains(&"beta".to_string()),
        "{tenants:?}"
    );
    for line in &matrix {
        println!("{line}");
    }
    assert_eq!(matrix.len(), AIMED.len() * 2 + 4 + 4);
}

#[test]
fn tokens_admin_rights_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let admin_token = init(dir.path());
    let srv = start(dir.path());
    // Wrong tokens are refused on both ports.
    let e = Client::connect(srv.addr, Some("nope"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("token"), "{e}");
    let e = postgres::Client::connect(
        &format!(
            "host=127.0.0.1 port={} user=admin password=nope",
            srv.pg.port()
        ),
        postgres::NoTls,
    )
    .err()
    .unwrap();
    assert_eq!(e.code(), Some(&postgres::error::SqlState::INVALID_PASSWORD));
    let mut admin = Client::connect(srv.addr, Some(&admin_token)).unwrap();
    let t = tenant(
        &mut admin,
        "gamma",
        "WITH (max_running = 2, query_memory_mb = 64)",
    );
    // The file keeps verifiers, never tokens.
    let text = std::fs::read_to_string(dir.path().join("tenants.toml")).unwrap();
    assert!(!text.contains(&t) && !text.contains(&admin_token), "{text}");
    assert!(
        text.contains("name = \"gamma\"") && text.contains("max_running = 2"),
        "{text}"
    );
    // A tenant's token logs in over PostgreSQL under its name, not under another name.
    let mut p = pg(srv.pg, "gamma", &t);
    p.simple_query("CREATE TABLE g (k VARCHAR PRIMARY KEY)")
        .unwrap();
    assert!(postgres::Client::connect(
        &format!(
            "host=127.0.0.1 port={} user=admin password={t}",
            srv.pg.port()
        ),
        postgres::NoTls,
    )
    .is_err());
    // Tenant statements are the admin's; tables are the tenants'.
    let mut g = Client::connect(srv.addr, Some(&t)).unwrap();
    let e = g.run("CREATE TENANT evil").unwrap_err();
    assert!(
        matches!(
            e,
            journeydb_client::ClientError::Server {
                code: ErrorCode::Auth,
                ..
            }
        ),
        "{e}"
    );
    let e = p.simple_query("SHOW TENANTS").unwrap_err();
    assert_eq!(
        e.code(),
        Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    for sql in [
        "CREATE TABLE a (k VARCHAR PRIMARY KEY)",
        "SELECT * FROM g",
        "DROP TABLE g",
    ] {
        assert!(admin.run(sql).is_err(), "admin ran {sql}");
    }
    let shown = admin.run("SHOW TENANTS").unwrap();
    assert_eq!(strings(&shown.batches[0], "name"), vec!["gamma"]);
    assert_eq!(strings(&shown.batches[0], "tokens"), vec!["gamma"]);
    // Bad names and options are refused, and change nothing.
    for bad in [
        "CREATE TENANT gamma",
        "CREATE TENANT \"Bad-Name\"",
        "CREATE TENANT x WITH (colour = 'red')",
        "ALTER TENANT nobody SET (max_running = 1)",
        "CREATE TOKEN gamma FOR TENANT gamma",
        "CREATE TOKEN admin FOR TENANT gamma",
        "DROP TOKEN nobody",
    ] {
        assert!(admin.run(bad).is_err(), "{bad}");
    }
    // A dropped token no longer opens; a second token does; the data stays.
    let r = admin.run("CREATE TOKEN gamma2 FOR TENANT gamma").unwrap();
    let t2 = strings(&r.batches[0], "token").remove(0);
    admin.run("DROP TOKEN gamma").unwrap();
    assert!(Client::connect(srv.addr, Some(&t)).is_err());
    let mut g2 = Client::connect(srv.addr, Some(&t2)).unwrap();
    assert_eq!(count(&mut g2, "SELECT count(*) FROM g"), 0);
    drop((g, g2, p, admin));
    drop(srv);
    // After a restart, the file the server rewrote serves the same tenants and tokens.
    let srv = start(dir.path());
    let mut g2 = Client::connect(srv.addr, Some(&t2)).unwrap();
    g2.run("SELECT count(*) FROM g").unwrap();
    let mut admin = Client::connect(srv.addr, Some(&admin_token)).unwrap();
    admin.run("DROP TENANT gamma").unwrap();
    assert!(Client::connect(srv.addr, Some(&t2)).is_err());
}

#[test]
fn quotas_refuse_writes_past_the_disk_bound_and_queries_past_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let admin_token = init(dir.path());
    let srv = start(dir.path());
    let mut admin = Client::connect(srv.addr, Some(&admin_token)).unwrap();
    let t = tenant(
        &mut admin,
        "small",
        "WITH (disk_max_mb = 1, query_memory_mb = 3)",
    );
    let mut c = Client::connect(srv.addr, Some(&t)).unwrap();
    c.run("CREATE TABLE t (k VARCHAR PRIMARY KEY, v BIGINT)")
        .unwrap();
    let keys: Vec<String> = (0..200_000).map(|i| format!("customer-{i:012}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    c.append("t", &batch(&refs, 5)).unwrap();
    // Over 3 MiB of decode: refused at planning by the tenant's memory bound.
    let e = c.run("SELECT k, v FROM t ORDER BY v").unwrap_err();
    assert!(
        matches!(
            e,
            journeydb_client::ClientError::Server {
                code: ErrorCode::Limit,
                ..
            }
        ),
        "{e}"
    );
    // The WAL alone takes the tenant past 1 MiB: once measured, writes are refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    let e = loop {
        match c.run("INSERT INTO t VALUES ('one-more', 1)") {
            Err(e) => break e,
            Ok(_) => {
                assert!(Instant::now() < deadline, "never refused");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(e.to_string().contains("quota"), "{e}");
    let e = c.append("t", &batch(&["x"], 1)).unwrap_err();
    assert!(e.to_string().contains("quota"), "{e}");
    // Reads and drops go on; raising the quota lets writes in again.
    assert_eq!(count(&mut c, "SELECT count(*) FROM t WHERE v = 5"), 200_000);
    admin
        .run("ALTER TENANT small SET (disk_max_mb = 1024)")
        .unwrap();
    let mut c = Client::connect(srv.addr, Some(&t)).unwrap();
    c.run("INSERT INTO t VALUES ('one-more', 1)").unwrap();
}

#[test]
fn a_tenants_requests_at_once_are_bounded_without_holding_up_others() {
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    let admin_token = init(dir.path());
    let srv = start(dir.path());
    let mut admin = Client::connect(srv.addr, Some(&admin_token)).unwrap();
    let busy = tenant(&mut admin, "busy", "WITH (max_running = 1)");
    let free = tenant(&mut admin, "free", "");
    // A holds a named lock between requests (no slot held while idle).
    let mut a = Client::connect(srv.addr, Some(&busy)).unwrap();
    a.run("LOCK TABLE x").unwrap();
    // B waits for that lock inside its request: it holds busy's only slot while it waits.
    let (addr, t) = (srv.addr, busy.clone());
    let (b_done, b_rx) = mpsc::channel();
    let b = std::thread::spawn(move || {
        let mut b = Client::connect(addr, Some(&t)).unwrap();
        b.run("LOCK TABLE x").unwrap();
        b_done.send(()).unwrap();
    });
    std::thread::sleep(Duration::from_millis(300));
    // C, of the same tenant, waits for the slot; D, another tenant, does not.
    let (c_done, c_rx) = mpsc::channel();
    let t = busy.clone();
    let c = std::thread::spawn(move || {
        let mut c = Client::connect(addr, Some(&t)).unwrap();
        c.run("SELECT 1").unwrap();
        c_done.send(Instant::now()).unwrap();
    });
    let mut d = Client::connect(srv.addr, Some(&free)).unwrap();
    let t0 = Instant::now();
    d.run("SELECT 1").unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(
        c_rx.recv_timeout(Duration::from_millis(700)).is_err(),
        "busy's second request ran beside the first: its max_running is 1"
    );
    assert!(b_rx.try_recv().is_err());
    // A lets go: B gets the lock and its slot back, then C runs.
    a.run("COMMIT").unwrap();
    b_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    c_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    b.join().unwrap();
    c.join().unwrap();
}
