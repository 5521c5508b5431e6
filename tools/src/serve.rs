//! `journeydb serve`: the server over an embedded database, until SIGTERM or ctrl-c.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use journeydb_query::Engine;
use journeydb_server::{Config, Server};
use journeydb_storage::{Database, KeyType, Options};

/// Runs the server with command-line `args`.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut config = Config::default();
    let mut db_dir = None;
    let mut key_type = KeyType::Varchar;
    config.token = std::env::var("JOURNEYDB_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let (mut tls_cert, mut tls_key) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        let num = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        };
        match a.as_str() {
            "--db" => db_dir = Some(val("--db")?),
            "--listen" => {
                config.listen = val("--listen")?
                    .parse()
                    .map_err(|e| format!("--listen: {e}"))?
            }
            "--pg-listen" => {
                let v = val("--pg-listen")?;
                config.pg_listen = if v == "off" {
                    None
                } else {
                    Some(v.parse().map_err(|e| format!("--pg-listen: {e}"))?)
                }
            }
            "--token" => config.token = Some(val("--token")?),
            "--max-connections" => {
                config.max_connections =
                    num("--max-connections", val("--max-connections")?)?.max(1) as usize
            }
            "--frame-max-bytes" => {
                config.frame_len_max = num("--frame-max-bytes", val("--frame-max-bytes")?)?
                    .clamp(4096, u32::MAX as u64) as usize
            }
            "--max-running" => {
                config.max_running = num("--max-running", val("--max-running")?)?.max(1) as usize
            }
            "--query-memory-mb" => {
                let mb = num("--query-memory-mb", val("--query-memory-mb")?)?;
                config.query_memory_max = (mb > 0).then_some(mb << 20);
            }
            "--idle-timeout-s" => {
                config.idle_timeout =
                    Duration::from_secs(num("--idle-timeout-s", val("--idle-timeout-s")?)?.max(1))
            }
            "--io-timeout-s" => {
                config.io_timeout =
                    Duration::from_secs(num("--io-timeout-s", val("--io-timeout-s")?)?.max(1))
            }
            "--tls-cert" => tls_cert = Some(val("--tls-cert")?),
            "--tls-key" => tls_key = Some(val("--tls-key")?),
            "--pg-auth" => {
                config.pg_auth = match val("--pg-auth")?.to_ascii_lowercase().as_str() {
                    "scram" | "scram-sha-256" => journeydb_server::PgAuth::Scram,
                    "password" | "cleartext" => journeydb_server::PgAuth::Password,
                    other => {
                        return Err(format!("--pg-auth {other:?}: use scram or password"))
                    }
                }
            }
            "--max-pending" => {
                config.max_pending = num("--max-pending", val("--max-pending")?)?.max(1) as usize
            }
            "--key-type" => {
                key_type = match val("--key-type")?.to_ascii_lowercase().as_str() {
                    "varchar" => KeyType::Varchar,
                    "bigint" => KeyType::Bigint,
                    other => return Err(format!("--key-type {other:?}: use varchar or bigint")),
                }
            }
            other => return Err(format!("serve: unknown option {other:?}")),
        }
    }
    config.tls = match (tls_cert, tls_key) {
        (Some(c), Some(k)) => Some(journeydb_server::conn::tls_config(
            std::path::Path::new(&c),
            std::path::Path::new(&k),
        )?),
        (None, None) => None,
        _ => return Err("serve: --tls-cert and --tls-key go together".into()),
    };
    let dir = db_dir.ok_or("serve: --db DIR is required")?;
    let path = std::path::Path::new(&dir);
    let db = if path.join("CURRENT").exists() {
        Database::open(path, Options::default())
    } else {
        // A directory that holds anything but a database is refused by `create`; an empty or
        // missing one becomes a new database, said out loud so a mistyped path is noticed.
        let db = Database::create(path, key_type, Options::default());
        if db.is_ok() {
            eprintln!(
                "created a new database in {} ({} keys)",
                path.display(),
                format!("{:?}", key_type).to_lowercase()
            );
        }
        db
    }
    .map_err(|e| e.to_string())?;
    let db = Arc::new(db);
    let server =
        Server::bind(config.clone(), Engine::new(db.clone())).map_err(|e| e.to_string())?;
    let stop = server.stop_handle();
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let addr = server
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let pg = match server.pg_addr() {
        Some(a) => format!(", PostgreSQL protocol on {a}"),
        None => String::new(),
    };
    println!(
        "journeydb serving {} on {addr} (native protocol){pg}{}",
        dir,
        match (config.token.is_some(), config.tls.is_some()) {
            (true, true) => ", TLS, token required",
            (true, false) => ", token required",
            (false, true) => ", TLS",
            (false, false) => "",
        }
    );
    let _ = std::io::stdout().flush();
    server.serve().map_err(|e| e.to_string())?;
    drop(server);
    // Acknowledged appends are already durable; a flush shortens the next start's WAL replay.
    db.flush().map_err(|e| e.to_string())?;
    eprintln!("journeydb: stopped");
    Ok(())
}
