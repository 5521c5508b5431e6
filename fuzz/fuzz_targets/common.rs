//! A small database shared by the SQL and PostgreSQL-session targets: one table with every type,
//! a few hundred rows, flushed to segments and with an unflushed tail, on a RAM-backed directory.

use std::sync::{Arc, OnceLock};

use journeydb_query::Engine;
use journeydb_storage::{Database, KeyType, Options};

pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("journeydb-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = Database::create(
            &dir,
            KeyType::Varchar,
            Options {
                background: false,
                ..Options::default()
            },
        )
        .expect("create the fuzz database");
        let e = Engine::new(Arc::new(db)).with_memory_limit(64 << 20);
        e.execute(
            "CREATE TABLE t (k VARCHAR PRIMARY KEY, a TIMESTAMP, b BIGINT MERGE SUM, \
             c DOUBLE MERGE MAX, d BOOLEAN MERGE LAST, e VARCHAR MERGE LAST)",
        )
        .expect("create t");
        let rows: Vec<String> = (0..300)
            .map(|i| {
                format!(
                    "('k{i}', TIMESTAMP '2026-01-01' + INTERVAL '{i} hours', {i}, {}.5, {}, 'v''{}')",
                    i % 7,
                    i % 2 == 0,
                    i % 11
                )
            })
            .collect();
        e.execute(&format!("INSERT INTO t VALUES {}", rows.join(", ")))
            .expect("fill t");
        e.database().flush().expect("flush");
        e.execute("INSERT INTO t VALUES ('tail', NULL, 1, NULL, NULL, 'unflushed')")
            .expect("tail");
        e
    })
}
