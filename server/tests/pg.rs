//! The PostgreSQL wire protocol, checked with a client library nobody here wrote (`postgres`):
//! simple and extended queries, binary and text results, parameters, errors with SQLSTATEs, and a
//! password (the server's token). Answers must equal the native client's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use journeydb_client::Session;
use journeydb_query::Engine;
use journeydb_server::{Config, Server};
use journeydb_storage::{Database, KeyType, Options};
use postgres::types::Type;
use postgres::{Client, NoTls, SimpleQueryMessage};

#[test]
fn postgres_driver_gets_the_same_answers_as_the_native_client() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path(), KeyType::Varchar, Options::default()).unwrap());
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        pg_listen: Some("127.0.0.1:0".parse().unwrap()),
        token: Some("pw".into()),
        ..Config::default()
    };
    let server = Server::bind(config, Engine::new(db)).unwrap();
    let (addr, pg) = (server.local_addr().unwrap(), server.pg_addr().unwrap());
    let stop = server.stop_handle();
    let t = std::thread::spawn(move || server.serve().unwrap());

    let conn = |password: &str| {
        Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=journey password={password}",
                pg.port()
            ),
            NoTls,
        )
    };
    assert!(conn("wrong").is_err(), "a wrong password is refused");
    let mut c = conn("pw").unwrap();
    c.batch_execute(
        "CREATE TABLE st (customer_id VARCHAR PRIMARY KEY, stage1 TIMESTAMP, n BIGINT MERGE SUM, score DOUBLE MERGE MAX, vip BOOLEAN MERGE LAST);
         INSERT INTO st VALUES ('a', '2026-01-01 08:00:00', 1, 0.5, true), ('b', NULL, 2, NULL, false), ('c', '2026-01-03', NULL, 2.0, NULL);
         INSERT INTO st VALUES ('a', '2025-12-31 23:00:00', 10, 0.25, false)",
    )
    .unwrap();

    // Extended protocol, binary results, typed getters.
    let rows = c
        .query(
            "SELECT customer_id, stage1, n, score, vip FROM st ORDER BY customer_id",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].get::<_, String>(0), "a");
    let ts: SystemTime = rows[0].get(1);
    assert_eq!(
        ts.duration_since(UNIX_EPOCH).unwrap(),
        Duration::from_secs(1_767_222_000)
    );
    assert_eq!(rows[0].get::<_, i64>(2), 11);
    assert_eq!(rows[0].get::<_, f64>(3), 0.5);
    assert!(!rows[0].get::<_, bool>(4));
    assert_eq!(rows[1].get::<_, Option<SystemTime>>(1), None);
    assert_eq!(rows[2].get::<_, Option<i64>>(2), None);
    assert_eq!(rows[0].columns()[1].type_(), &Type::TIMESTAMP);

    // Parameters with declared types.
    let rows = c
        .query_typed(
            "SELECT customer_id FROM st WHERE n > $1 AND customer_id <> $2 ORDER BY 1",
            &[(&1i64, Type::INT8), (&"zz", Type::TEXT)],
        )
        .unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>(),
        vec!["a", "b"]
    );

    // Simple protocol: text results, equal to the native client's text.
    let sql = "SELECT count(*), min(stage1), max(score) FROM (SELECT customer_id FROM st WHERE stage1 IS NOT NULL INTERSECT SELECT customer_id FROM st WHERE n > 0) x, st";
    let _ = sql;
    let q = "SELECT customer_id, stage1, n FROM st WHERE stage1 IS NOT NULL ORDER BY customer_id";
    let simple: Vec<Vec<Option<String>>> = c
        .simple_query(q)
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect();
    let mut native = journeydb_client::Client::connect(addr, Some("pw")).unwrap();
    let reply = native.run(q).unwrap();
    let b = &reply.batches[0];
    let native_cells: Vec<Vec<Option<String>>> = (0..b.num_rows())
        .map(|r| {
            b.columns()
                .iter()
                .map(|col| journeydb_query::format::cell_text(col.as_ref(), r))
                .collect()
        })
        .collect();
    assert_eq!(simple, native_cells);

    // Errors carry SQLSTATEs, and the session stays usable.
    let e = c.query("SELEC 1", &[]).unwrap_err();
    assert_eq!(e.code(), Some(&postgres::error::SqlState::SYNTAX_ERROR));
    let e = c.query("SELECT * FROM nope", &[]).unwrap_err();
    assert_eq!(e.code(), Some(&postgres::error::SqlState::UNDEFINED_TABLE));
    let e = c
        .query("SELECT * FROM st a JOIN st b ON a.n = b.n", &[])
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&postgres::error::SqlState::FEATURE_NOT_SUPPORTED)
    );
    let e = c
        .query("SELECT * FROM st JOIN st USING (customer_id)", &[])
        .unwrap_err();
    assert_eq!(e.code(), Some(&postgres::error::SqlState::SYNTAX_ERROR));
    // A join on the key with GROUP BY and HAVING, through the extended protocol.
    let rows = c
        .query_typed(
            "SELECT b.vip, count(*), sum(a.n) FROM st a JOIN st b ON a.customer_id = b.customer_id GROUP BY b.vip HAVING count(*) >= $1 ORDER BY 1",
            &[(&1i64, Type::INT8)],
        )
        .unwrap();
    assert!(!rows.is_empty());
    let total: i64 = rows.iter().map(|r| r.get::<_, i64>(1)).sum();
    assert_eq!(total, 3);
    let n: i64 = c.query_one("SELECT count(*) FROM st", &[]).unwrap().get(0);
    assert_eq!(n, 3);
    c.batch_execute("ALTER TABLE st RENAME TO st2; DROP TABLE st2")
        .unwrap();
    drop(c);
    stop.store(true, Ordering::SeqCst);
    t.join().unwrap();
}
