//! `journeydb serve`: the server over an embedded database, until SIGTERM or ctrl-c.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use journeydb_query::Engine;
use journeydb_server::{Config, Server};
use journeydb_storage::{Database, KeyType, Options};

/// Opens the database in `path`, or creates it (said on stderr when `announce`).
fn open_or_create(
    path: &std::path::Path,
    key_type: KeyType,
    opts: Options,
    announce: bool,
) -> Result<Database, String> {
    if path.join("CURRENT").exists() {
        return Database::open(path, opts).map_err(|e| e.to_string());
    }
    // A directory that holds anything but a database is refused by `create`; an empty or
    // missing one becomes a new database, said out loud so a mistyped path is noticed.
    let db = Database::create(path, key_type, opts).map_err(|e| e.to_string())?;
    if announce {
        eprintln!(
            "created a new database in {} ({} keys)",
            path.display(),
            format!("{:?}", key_type).to_lowercase()
        );
    }
    Ok(db)
}

/// SIGTERM and SIGINT set `stop`.
fn on_signals(stop: &std::sync::Arc<std::sync::atomic::AtomicBool>) -> Result<(), String> {
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    Ok(())
}

/// The dashboard's listener, bound and announced, if asked for.
fn dashboard(addr: Option<std::net::SocketAddr>) -> Result<Option<tiny_http::Server>, String> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let http = journeydb_tools::dashboard::bind(addr)?;
    let at = http
        .server_addr()
        .to_ip()
        .map_or_else(|| addr.to_string(), |a| a.to_string());
    println!("journeydb dashboard on http://{at}/");
    Ok(Some(http))
}

/// Runs the server.
pub fn run(a: &journeydb_tools::cli::ServeArgs) -> Result<(), String> {
    let defaults = Config::default();
    let mut config = Config {
        listen: a.listen,
        pg_listen: a.pg_listen.0,
        token: a.token.clone().filter(|t| !t.is_empty()),
        max_connections: a.max_connections as usize,
        max_running: a.max_running.map_or(defaults.max_running, |n| n as usize),
        query_memory_max: (a.query_memory_mb > 0).then_some(a.query_memory_mb << 20),
        import_dir: a.import_dir.clone(),
        export_dir: a.export_dir.clone(),
        frame_len_max: a
            .frame_max_bytes
            .map_or(defaults.frame_len_max, |n| n as usize),
        idle_timeout: Duration::from_secs(a.idle_timeout_s),
        io_timeout: Duration::from_secs(a.io_timeout_s),
        max_pending: a.max_pending as usize,
        query_log_days: a.query_log_days,
        cost_rates: journeydb_query::costs::CostRates {
            cpu_second: a.cost_cpu_second,
            gb_scanned: a.cost_gb_scanned,
            gb_written: a.cost_gb_written,
            gb_stored_day: a.cost_gb_stored_day,
        },
        pg_auth: match a.pg_auth {
            journeydb_tools::cli::PgAuthArg::Scram => journeydb_server::PgAuth::Scram,
            journeydb_tools::cli::PgAuthArg::Password => journeydb_server::PgAuth::Password,
        },
        ..defaults
    };
    let key_type = KeyType::from(a.key_type);
    config.tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(journeydb_server::conn::tls_config(c, k)?),
        // clap requires the two together.
        _ => None,
    };
    let opts = Options {
        flush_rows: a.flush_rows,
        ..Options::default()
    };
    // With tenants, DIR holds their databases (tenants/NAME/), the query log (querylog/) and the
    // admin's empty database (admin/).
    let admin_dir;
    let path = match &a.tenants {
        None => a.db.as_path(),
        Some(file) => {
            std::fs::create_dir_all(&a.db).map_err(|e| format!("{}: {e}", a.db.display()))?;
            config.tenants = Some((file.clone(), a.db.clone()));
            config.tenant_options = opts.clone();
            config.query_log_dir = Some(a.db.join("querylog"));
            admin_dir = a.db.join("admin");
            admin_dir.as_path()
        }
    };
    let db = open_or_create(path, key_type, opts, a.tenants.is_none())?;
    let db = Arc::new(db);
    let server =
        Server::bind(config.clone(), Engine::new(db.clone())).map_err(|e| e.to_string())?;
    let stop = server.stop_handle();
    on_signals(&stop)?;
    let addr = server
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let pg = match server.pg_addr() {
        Some(a) => format!(", PostgreSQL protocol on {a}"),
        None => String::new(),
    };
    if let Some(file) = &a.tenants {
        eprintln!("journeydb tenants from {}", file.display());
    }
    println!(
        "journeydb serving {} on {addr} (native protocol){pg}{}",
        a.db.display(),
        match (
            config.token.is_some() || config.tenants.is_some(),
            config.tls.is_some(),
        ) {
            (true, true) => ", TLS, token required",
            (true, false) => ", token required",
            (false, true) => ", TLS",
            (false, false) => "",
        }
    );
    let http = dashboard(a.http_listen)?;
    let _ = std::io::stdout().flush();
    std::thread::scope(|s| {
        if let Some(http) = &http {
            let (server, stop) = (&server, &stop);
            s.spawn(move || journeydb_tools::dashboard::serve(http, server, stop));
        }
        server.serve().map_err(|e| e.to_string())
    })?;
    drop(server);
    // Acknowledged appends are already durable; a flush shortens the next start's WAL replay.
    db.flush().map_err(|e| e.to_string())?;
    eprintln!("journeydb: stopped");
    Ok(())
}

/// `journeydb tenants ..`.
pub fn tenants(c: &journeydb_tools::cli::TenantsCommand) -> Result<(), String> {
    use journeydb_server::scram::Verifier;
    use journeydb_server::tenants::{new_token, TenantsFile};
    match c {
        journeydb_tools::cli::TenantsCommand::Init { file } => {
            if file.exists() {
                return Err(format!("{} exists; not overwritten", file.display()));
            }
            let token = new_token()?;
            let f = TenantsFile {
                admin_token: Some(Verifier::new(&token)?.to_string()),
                tenants: Vec::new(),
            };
            f.save(file)?;
            println!("{token}");
            eprintln!(
                "wrote {}; the line above is the admin token (PostgreSQL user `admin`), shown \
                 only now. Start `journeydb serve --db DIR --tenants {}`, then connect with it and \
                 run CREATE TENANT name; CREATE TOKEN name FOR TENANT name;",
                file.display(),
                file.display()
            );
            Ok(())
        }
        journeydb_tools::cli::TenantsCommand::HashToken => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("standard input: {e}"))?;
            let token = line.trim_end_matches(['\n', '\r']);
            if token.is_empty() {
                return Err("no token on standard input".into());
            }
            println!("{}", Verifier::new(token)?);
            Ok(())
        }
    }
}
