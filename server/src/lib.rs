//! journeydb-server: the TCP server. It speaks the native protocol (`client/PROTOCOL.md`) over the
//! query engine; the PostgreSQL wire protocol is not built yet.
//!
//! One thread per connection, at most `max_connections` at once (one more is refused with a Limit
//! error frame). Invariants: a frame longer than `frame_len_max` or malformed gets an Error frame and
//! a clean close; an SQL error gets an Error frame and the connection stays usable; an append is
//! answered only after the engine made it durable. Also here: [`EmbeddedSession`], the in-process
//! implementation of the client's [`Session`] trait.
#![warn(missing_docs)]

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use journeydb_client::protocol::{
    decode_ipc, encode_ipc, read_frame, write_frame, LoadStep, PROTOCOL_VERSION,
};
use journeydb_client::{ClientError, ErrorCode, Frame, Reply, Session};
use journeydb_query::engine::{statement_kind, StatementKind};
use journeydb_query::{Engine, Output, QueryError};

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the native protocol (loopback by default).
    pub listen: SocketAddr,
    /// Address of the PostgreSQL wire protocol, if served.
    pub pg_listen: Option<SocketAddr>,
    /// Access token clients must present, if any.
    pub token: Option<String>,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Largest frame accepted, in bytes.
    pub frame_len_max: usize,
    /// A connection idle this long is closed.
    pub idle_timeout: Duration,
    /// Total time a request's bytes may take to arrive once it started, and its response to be
    /// sent: a client that trickles its request or stops reading its results is disconnected.
    pub io_timeout: Duration,
    /// TLS for both ports, if configured: the native port then speaks only TLS, the PostgreSQL port
    /// answers SSLRequest with `S`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How PostgreSQL clients prove they hold the token.
    pub pg_auth: PgAuth,
    /// Connections that have not authenticated yet, at most (they never count against
    /// `max_connections`, so they cannot lock out clients that hold the token).
    pub max_pending: usize,
    /// Requests executed at once across all connections; the rest wait their turn. Each query
    /// fans out over partitions itself, so a few running at once keep every core busy while one
    /// heavy query cannot take every slot.
    pub max_running: usize,
    /// Per-query memory bound in bytes: a query whose scans would decode more is refused at
    /// planning, and one that holds more while it runs (operator outputs, a sorted result and
    /// its copy) is stopped, with an Error(Limit) (`None`: no bound).
    pub query_memory_max: Option<u64>,
    /// The directory `COPY .. FROM 'file'` may read below (`None`: the server opens no file a
    /// client names; clients stream files with Load frames instead).
    pub import_dir: Option<std::path::PathBuf>,
    /// The directory `COPY .. TO 'file'` may write below (`None`: none).
    pub export_dir: Option<std::path::PathBuf>,
    /// Days the query log (`system.queries`) keeps; 0: no query log.
    pub query_log_days: u32,
    /// The query log's directory (`None`: `querylog/` inside the database's directory).
    pub query_log_dir: Option<std::path::PathBuf>,
    /// Tenants: the tenants file and the directory whose `tenants/` holds their databases
    /// (`None`: one database, the one `bind` is given, and `token`). With tenants, the database
    /// `bind` is given only backs the admin's sessions.
    pub tenants: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Options of the tenants' databases.
    pub tenant_options: journeydb_query::Options,
    /// The rates `system.costs` prices statements with.
    pub cost_rates: journeydb_query::costs::CostRates,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5433)),
            pg_listen: Some(SocketAddr::from(([127, 0, 0, 1], 5434))),
            token: None,
            max_connections: 64,
            frame_len_max: journeydb_client::FRAME_LEN_MAX_DEFAULT,
            idle_timeout: Duration::from_secs(300),
            io_timeout: Duration::from_secs(30),
            max_pending: 64,
            pg_auth: PgAuth::Scram,
            tls: None,
            max_running: std::thread::available_parallelism().map_or(2, |n| n.get()) * 2,
            query_memory_max: Some(8 << 30),
            import_dir: None,
            export_dir: None,
            query_log_days: 7,
            query_log_dir: None,
            tenants: None,
            tenant_options: journeydb_query::Options::default(),
            cost_rates: journeydb_query::costs::CostRates::default(),
        }
    }
}

/// PostgreSQL authentication when the server has a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PgAuth {
    /// SCRAM-SHA-256: the token never crosses the wire (the default).
    #[default]
    Scram,
    /// Cleartext password: the token is sent as the password (only when asked for, e.g. for a
    /// client without SCRAM).
    Password,
}

/// Errors of the server itself (binding, accepting).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A socket call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The query log's table could not be made ready.
    #[error("query log: {0}")]
    QueryLog(String),
    /// The tenants could not be opened.
    #[error("{0}")]
    Tenants(String),
}

/// The error class of a query error on the wire (see [`classify`]).
pub fn error_code(e: &QueryError) -> ErrorCode {
    classify(e).0
}

/// Every query and storage error's native error code and SQLSTATE: one exhaustive match with no
/// wildcard, so a new error variant cannot compile until it is classified for both protocols.
pub fn classify(e: &QueryError) -> (ErrorCode, &'static str) {
    use journeydb_query::StorageError as S;
    match e {
        QueryError::Syntax(_) => (ErrorCode::User, "42601"),
        QueryError::Unsupported(_) => (ErrorCode::User, "0A000"),
        QueryError::TableNotFound(_) => (ErrorCode::User, "42P01"),
        QueryError::ColumnNotFound(_) => (ErrorCode::User, "42703"),
        QueryError::Type(_) => (ErrorCode::User, "42804"),
        QueryError::InvalidValue(_) => (ErrorCode::User, "22023"),
        QueryError::MemoryLimit { .. } => (ErrorCode::Limit, "53200"),
        QueryError::TooComplex(_) => (ErrorCode::Limit, "54001"),
        QueryError::Internal(_) => (ErrorCode::Internal, "XX000"),
        QueryError::Cancelled => (ErrorCode::User, "57014"),
        QueryError::LockNotAvailable(_) => (ErrorCode::User, "55P03"),
        QueryError::Permission(_) => (ErrorCode::Auth, "42501"),
        QueryError::QuotaExceeded(_) => (ErrorCode::Limit, "53400"),
        QueryError::ContractViolated(_) => (ErrorCode::User, "23514"),
        QueryError::Storage(s) => match s {
            S::TableNotFound(_) => (ErrorCode::User, "42P01"),
            S::TableExists(_) => (ErrorCode::User, "42P07"),
            S::ColumnNotFound { .. } => (ErrorCode::User, "42703"),
            S::InvalidName { .. } => (ErrorCode::User, "42602"),
            S::InvalidSchema(_) | S::InvalidBatch { .. } | S::InvalidKey(_) => {
                (ErrorCode::User, "22023")
            }
            S::InvalidOption(_) => (ErrorCode::User, "22023"),
            S::Unsupported(_) => (ErrorCode::User, "0A000"),
            S::VersionNotKept(_) => (ErrorCode::User, "22023"),
            S::Io { .. } => (ErrorCode::Storage, "58030"),
            S::ChecksumMismatch { .. } | S::Corrupt { .. } => (ErrorCode::Storage, "XX001"),
            S::UnsupportedVersion { .. } => (ErrorCode::Storage, "58000"),
            S::AlreadyExists(_) | S::NotADatabase(_) | S::Locked(_) => {
                (ErrorCode::Storage, "58000")
            }
            S::WalPoisoned(_) => (ErrorCode::Storage, "58030"),
            S::DiskFull { .. } => (ErrorCode::Storage, "53100"),
            S::WorkerPanicked(_) => (ErrorCode::Internal, "XX000"),
        },
    }
}

/// A bound server.
pub struct Server {
    listener: TcpListener,
    pg_listener: Option<TcpListener>,
    engine: Engine,
    config: Config,
    admission: conn::Admission,
    stop: Arc<AtomicBool>,
    slots: Slots,
    /// PostgreSQL cancel keys: backend id -> (secret, the connection's cancel flag).
    cancel_keys: std::sync::Mutex<std::collections::HashMap<i32, (i32, Arc<AtomicBool>)>>,
    next_backend: std::sync::atomic::AtomicI32,
    /// The query log (`system.queries`), unless `query_log_days` is 0.
    query_log: Option<Arc<querylog::QueryLog>>,
    /// The tenants, when the server has them.
    tenants: Option<Arc<tenants::Tenants>>,
    /// The verifier of `--token`, made once at start (PostgreSQL's SCRAM proves against it).
    token_verifier: Option<scram::Verifier>,
}

/// A registered cancel key; unregistered when dropped (the connection ended).
pub(crate) struct CancelKey<'a> {
    server: &'a Server,
    /// Backend id.
    pub pid: i32,
    /// Secret.
    pub secret: i32,
}

impl Drop for CancelKey<'_> {
    fn drop(&mut self) {
        self.server.keys().remove(&self.pid);
    }
}

/// A counting semaphore: the bounded number of requests running at once.
pub struct Slots {
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

/// A held slot, given back on drop.
pub struct Slot<'a>(&'a Slots);

/// The slots a request waits for: its tenant's, then the server's.
pub(crate) struct Turns<'a> {
    tenant: Option<&'a Slots>,
    server: &'a Slots,
}

impl Turns<'_> {
    /// Waits for both.
    pub(crate) fn acquire(&self) -> (Option<Slot<'_>>, Slot<'_>) {
        let own = self.tenant.map(Slots::acquire);
        (own, self.server.acquire())
    }
}

impl Slots {
    pub(crate) fn new(n: usize) -> Slots {
        Slots {
            free: std::sync::Mutex::new(n.max(1)),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits for a free slot.
    pub fn acquire(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.0.freed.notify_one();
    }
}

impl Server {
    /// Binds the listening socket.
    pub fn bind(config: Config, engine: Engine) -> Result<Server, ServerError> {
        let engine = match config.query_memory_max {
            Some(bytes) => engine.with_memory_limit(bytes),
            None => engine,
        }
        .with_cost_rates(config.cost_rates);
        let dir = |d: &Option<std::path::PathBuf>, what: &str| -> Result<_, ServerError> {
            d.as_ref()
                .map(|d| {
                    d.canonicalize().map_err(|source| ServerError::Io {
                        what: format!("{what} directory {}", d.display()),
                        source,
                    })
                })
                .transpose()
        };
        let engine = engine.with_file_access(journeydb_query::files::FileAccess::server(
            dir(&config.import_dir, "import")?,
            dir(&config.export_dir, "export")?,
        ));
        let listener = TcpListener::bind(config.listen).map_err(|source| ServerError::Io {
            what: format!("listen on {}", config.listen),
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ServerError::Io {
                what: "set non-blocking".into(),
                source,
            })?;
        let pg_listener = match config.pg_listen {
            None => None,
            Some(addr) => {
                let l = TcpListener::bind(addr).map_err(|source| ServerError::Io {
                    what: format!("listen on {addr} (PostgreSQL protocol)"),
                    source,
                })?;
                l.set_nonblocking(true).map_err(|source| ServerError::Io {
                    what: "set non-blocking".into(),
                    source,
                })?;
                Some(l)
            }
        };
        let (engine, query_log, tenants) = Self::open_parts(&config, engine)?;
        Ok(Server {
            listener,
            pg_listener,
            engine,
            query_log,
            tenants,
            token_verifier: match &config.token {
                Some(t) => Some(scram::Verifier::new(t).map_err(ServerError::Tenants)?),
                None => None,
            },
            admission: conn::Admission::default(),
            cancel_keys: std::sync::Mutex::new(std::collections::HashMap::new()),
            next_backend: std::sync::atomic::AtomicI32::new(1),
            stop: Arc::new(AtomicBool::new(false)),
            slots: Slots::new(config.max_running),
            config,
        })
    }

    /// The query log (moving an older in-database one out) and the tenants of `config`, and
    /// `engine` reading `system.queries` from the log.
    #[allow(clippy::type_complexity)]
    fn open_parts(
        config: &Config,
        engine: Engine,
    ) -> Result<
        (
            Engine,
            Option<Arc<querylog::QueryLog>>,
            Option<Arc<tenants::Tenants>>,
        ),
        ServerError,
    > {
        let query_log = match config.query_log_days {
            0 => None,
            days => {
                let dir = config
                    .query_log_dir
                    .clone()
                    .unwrap_or_else(|| engine.database().dir().join("querylog"));
                let log = querylog::QueryLog::open(&dir, days)
                    .map_err(|e| ServerError::QueryLog(e.to_string()))?;
                let moved = log
                    .adopt(&engine)
                    .map_err(|e| ServerError::QueryLog(e.to_string()))?;
                if moved > 0 {
                    eprintln!(
                        "journeydb: moved {moved} query log rows into {}",
                        dir.display()
                    );
                }
                Some(Arc::new(log))
            }
        };
        let engine = match &query_log {
            Some(log) => engine.with_log_source(log.clone(), None),
            None => engine,
        };
        let tenants = match &config.tenants {
            None => None,
            Some((file, root)) => Some(Arc::new(
                tenants::Tenants::open(
                    file,
                    root,
                    tenants::Base {
                        query_memory_max: config.query_memory_max,
                        max_running: config.max_running,
                        cost_rates: config.cost_rates,
                        import_dir: config.import_dir.clone(),
                        export_dir: config.export_dir.clone(),
                        options: config.tenant_options.clone(),
                    },
                    query_log.clone(),
                    engine.database().clone(),
                )
                .map_err(ServerError::Tenants)?,
            )),
        };
        Ok((engine, query_log, tenants))
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The bound address of the PostgreSQL protocol, if served.
    pub fn pg_addr(&self) -> Option<SocketAddr> {
        self.pg_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A flag that stops [`Server::serve`] when set.
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Connections being served now.
    pub fn active_connections(&self) -> usize {
        self.admission.active()
    }

    /// Accepts and serves connections until the stop flag is set; then waits for the running
    /// connections to finish their current request (each blocked read or write gives up within
    /// a tenth of a second of the stop).
    pub fn serve(&self) -> Result<(), ServerError> {
        std::thread::scope(|s| {
            if let Some(log) = &self.query_log {
                let stop = &self.stop;
                s.spawn(move || log.run(stop, &|| self.storage_sizes()));
            }
            if let Some(t) = &self.tenants {
                let stop = &self.stop;
                s.spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        t.measure();
                        for _ in 0..10 {
                            if stop.load(Ordering::SeqCst) {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                });
            }
            while !self.stop.load(Ordering::SeqCst) {
                let mut idle = true;
                if let Some(pg) = &self.pg_listener {
                    if let Some(stream) = self.accept(pg, "accept (PostgreSQL protocol)")? {
                        idle = false;
                        self.spawn(s, stream, true);
                    }
                }
                if let Some(stream) = self.accept(&self.listener, "accept")? {
                    idle = false;
                    self.spawn(s, stream, false);
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Ok(())
        })
    }

    fn accept(&self, l: &TcpListener, what: &str) -> Result<Option<TcpStream>, ServerError> {
        match l.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_nodelay(true);
                Ok(Some(stream))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => Ok(None),
            Err(e) => Err(ServerError::Io {
                what: what.into(),
                source: e,
            }),
        }
    }

    /// Serves `stream` on its own thread.
    fn spawn<'s, 'e>(&'s self, s: &'s std::thread::Scope<'s, 'e>, stream: TcpStream, pg: bool) {
        let Some(pending) = self.admission.arrive(self.config.max_pending) else {
            // A burst far past the budget of unauthenticated connections: closed at once.
            return;
        };
        let spawned = std::thread::Builder::new()
            .name(if pg { "pg-conn" } else { "conn" }.into())
            .stack_size(conn::CONN_STACK_BYTES)
            .spawn_scoped(s, move || {
                let r = conn::isolate(|| {
                    if pg {
                        let _ = pg::connection(stream, self, pending);
                    } else {
                        let _ = self.connection(stream, pending);
                    }
                });
                if let Err(m) = r {
                    eprintln!("journeydb: connection thread: {m}");
                }
            });
        if let Err(e) = spawned {
            eprintln!("journeydb: could not start a connection thread: {e}");
        }
    }

    /// The settings.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The stop flag.
    pub(crate) fn stopping(&self) -> &AtomicBool {
        &self.stop
    }

    fn keys(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<i32, (i32, Arc<AtomicBool>)>> {
        // A poisoned lock only means a panic elsewhere while it was held; the map is still whole.
        self.cancel_keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection's cancel flag under a fresh backend id and a random secret.
    pub(crate) fn register_cancel(&self, flag: Arc<AtomicBool>) -> CancelKey<'_> {
        let pid = self.next_backend.fetch_add(1, Ordering::SeqCst);
        let mut bytes = [0u8; 4];
        // Without an OS random source the secret falls back to the clock's low bits: still
        // unique per connection, but guessable; getrandom fails only on exotic platforms.
        let secret = match getrandom::fill(&mut bytes) {
            Ok(()) => i32::from_be_bytes(bytes),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() as i32),
        };
        self.keys().insert(pid, (secret, flag));
        CancelKey {
            server: self,
            pid,
            secret,
        }
    }

    /// A CancelRequest: cancels the statement running on backend `pid` if `secret` is its key's.
    pub(crate) fn cancel(&self, pid: i32, secret: i32) {
        if let Some((s, flag)) = self.keys().get(&pid) {
            if constant_time_eq::constant_time_eq(&s.to_be_bytes(), &secret.to_be_bytes()) {
                flag.store(true, Ordering::SeqCst);
            }
        }
    }

    /// The execution slots of `who`: the tenant's own, then the server's.
    pub(crate) fn turns<'a>(&'a self, who: &'a tenants::Principal) -> Turns<'a> {
        Turns {
            tenant: match who {
                tenants::Principal::Tenant(t, _) => Some(&t.slots),
                _ => None,
            },
            server: &self.slots,
        }
    }

    /// Bytes each tenant's database takes on disk (without tenants: the database's, without the
    /// query log kept inside its directory).
    fn storage_sizes(&self) -> Vec<(String, u64)> {
        match &self.tenants {
            Some(t) => t.sizes(),
            None => {
                let dir = self.engine.database().dir();
                let log = match &self.config.query_log_dir {
                    Some(d) if d.starts_with(dir) => tenants::dir_bytes(d),
                    Some(_) => 0,
                    None => tenants::dir_bytes(&dir.join("querylog")),
                };
                vec![(
                    "default".to_string(),
                    tenants::dir_bytes(dir).saturating_sub(log),
                )]
            }
        }
    }

    /// The verifier of `--token`, if the server has one.
    pub(crate) fn token_verifier(&self) -> Option<&scram::Verifier> {
        self.token_verifier.as_ref()
    }

    /// The tenants, when the server has them.
    pub(crate) fn tenants(&self) -> Option<&Arc<tenants::Tenants>> {
        self.tenants.as_ref()
    }

    /// Who presented `token` over the native protocol, if anyone may.
    fn authenticate(&self, token: &str) -> Option<tenants::Principal> {
        match &self.tenants {
            None => token_matches(self.config.token.as_deref(), token)
                .then_some(tenants::Principal::Default),
            Some(t) => t.check_token(token),
        }
    }

    /// A session for a web request presenting `token` (`None`: none) from `peer`: the engine of
    /// whoever the token belongs to, with its statements logged over protocol `http`, and the
    /// tenant's name (`default` without tenants, `admin` for the admin). `None`: refused.
    pub fn web_session(&self, token: Option<&str>, peer: String) -> Option<(Engine, String)> {
        let who = self.authenticate(token.unwrap_or(""))?;
        let (user, tenant) = match &who {
            tenants::Principal::Tenant(t, name) => (name.clone(), t.name.clone()),
            tenants::Principal::Admin => (tenants::ADMIN_USER.to_string(), "admin".to_string()),
            tenants::Principal::Default => (String::new(), "default".to_string()),
        };
        let engine = self.session_from(&who, &user, peer, "http");
        Some((engine, tenant))
    }

    /// A connection's session as `who`: its own settings (`SET`), and its statements reported
    /// to the query log as `user` from the peer of `stream` over `protocol`.
    pub(crate) fn session(
        &self,
        who: &tenants::Principal,
        user: &str,
        stream: &TcpStream,
        protocol: &'static str,
    ) -> Engine {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        self.session_from(who, user, peer, protocol)
    }

    fn session_from(
        &self,
        who: &tenants::Principal,
        user: &str,
        peer: String,
        protocol: &'static str,
    ) -> Engine {
        let (engine, tenant) = match (who, &self.tenants) {
            (tenants::Principal::Tenant(t, _), _) => (t.engine.session(), t.name.as_str()),
            (tenants::Principal::Admin, Some(t)) => (t.admin_engine().session(), "admin"),
            _ => (self.engine.session(), "default"),
        };
        match &self.query_log {
            Some(log) => engine.with_log(log.connection(tenant, user, peer, protocol)),
            None => engine,
        }
    }

    fn connection(&self, stream: TcpStream, pending: conn::Pending<'_>) -> Result<(), ClientError> {
        let peer = stream.try_clone()?;
        let probe = stream.try_clone()?;
        let evicted = pending.evicted();
        let transport = conn::Transport::shared(stream);
        let mut r = BufReader::new(conn::Guarded::new(
            transport.clone(),
            &self.stop,
            evicted.clone(),
        ));
        let mut w = BufWriter::new(conn::Guarded::new(transport, &self.stop, evicted));
        // With TLS configured, the native port speaks TLS from the first byte.
        if let Some(tls) = &self.config.tls {
            r.get_ref().start_tls(tls.clone())?;
        }
        let fail = |w: &mut BufWriter<conn::Guarded<'_>>,
                    code: ErrorCode,
                    message: String|
         -> Result<(), ClientError> {
            write_frame(w, &Frame::Error { code, message })?;
            w.flush()?;
            Ok(())
        };
        // Handshake, within the authentication deadline and a small frame limit.
        let Some((_active, who)) = self.handshake(&mut r, &mut w, pending)? else {
            return Ok(());
        };
        let user = match &who {
            tenants::Principal::Tenant(_, token) => token.as_str(),
            tenants::Principal::Admin => tenants::ADMIN_USER,
            tenants::Principal::Default => "",
        };
        let engine = self.session(&who, user, &peer, "native");
        let turns = self.turns(&who);
        let mut load: Option<journeydb_query::BulkLoad> = None;
        loop {
            if !await_request(&r, &probe, &self.stop, self.config.idle_timeout)? {
                return Ok(());
            }
            r.get_mut().set_deadline(self.config.io_timeout);
            let frame = match read_frame(&mut r, self.config.frame_len_max) {
                Ok(f) => f,
                // A vanished or idle client: nothing to answer.
                Err(ClientError::Io(_)) => return Ok(()),
                // A bad frame: the stream can no longer be trusted.
                Err(e) => return fail(&mut w, ErrorCode::Protocol, e.to_string()),
            };
            w.get_mut().set_deadline(self.config.io_timeout);
            if matches!(frame, Frame::Close) {
                return Ok(());
            }
            if let Frame::Load { table, step, ipc } = frame {
                // A load spans frames: its rows wait here (dropped with the connection).
                let reply = self.load_frame(&engine, &turns, &mut load, &table, step, ipc);
                write_frame(&mut w, &reply)?;
                w.flush()?;
                continue;
            }
            // Ending a transaction releases its LOCK TABLE locks: it must not wait for a slot
            // that a request waiting on one of those locks holds.
            let free = matches!(&frame, Frame::Query { sql } if ends_transaction(sql));
            let outcome = conn::isolate(|| {
                let _slot = (!free).then(|| turns.acquire());
                self.request(&engine, &mut w, frame)
            });
            match outcome {
                Ok(r) => r?,
                Err(message) => write_frame(
                    &mut w,
                    &Frame::Error {
                        code: ErrorCode::Internal,
                        message,
                    },
                )?,
            }
            w.flush()?;
        }
    }

    /// The native handshake: Hello checked (version, token, connection limit) and HelloOk sent.
    /// `None` when the client was refused (the refusal is sent).
    fn handshake<'p>(
        &self,
        r: &mut BufReader<conn::Guarded<'_>>,
        w: &mut BufWriter<conn::Guarded<'_>>,
        pending: conn::Pending<'p>,
    ) -> Result<Option<(conn::Active<'p>, tenants::Principal)>, ClientError> {
        let fail = |w: &mut BufWriter<conn::Guarded<'_>>,
                    code: ErrorCode,
                    message: String|
         -> Result<Option<(conn::Active<'p>, tenants::Principal)>, ClientError> {
            write_frame(w, &Frame::Error { code, message })?;
            w.flush()?;
            Ok(None)
        };
        let active = match read_frame(r, HELLO_LEN_MAX) {
            Ok(Frame::Hello { version, token }) => {
                if version != PROTOCOL_VERSION {
                    return fail(w, ErrorCode::Auth, format!("protocol version {version} is not supported (server speaks {PROTOCOL_VERSION})"));
                }
                let Some(who) = self.authenticate(&token) else {
                    return fail(w, ErrorCode::Auth, "wrong or missing access token".into());
                };
                let Some(active) = pending.admit(self.config.max_connections) else {
                    return fail(
                        w,
                        ErrorCode::Limit,
                        format!(
                            "too many connections (limit {})",
                            self.config.max_connections
                        ),
                    );
                };
                let hello = Frame::HelloOk {
                    version: PROTOCOL_VERSION,
                    server: format!("journeydb {}", env!("CARGO_PKG_VERSION")),
                    frame_len_max: u32::try_from(self.config.frame_len_max).unwrap_or(u32::MAX),
                };
                write_frame(w, &hello)?;
                w.flush()?;
                (active, who)
            }
            Ok(other) => {
                return fail(
                    w,
                    ErrorCode::Protocol,
                    format!("expected Hello, got {}", other.name()),
                )
            }
            Err(ClientError::Io(e)) => return Err(ClientError::Io(e)),
            Err(e) => return fail(w, ErrorCode::Protocol, e.to_string()),
        };
        Ok(Some(active))
    }

    /// Answers one Load frame; a failure discards the connection's load.
    fn load_frame(
        &self,
        engine: &Engine,
        turns: &Turns<'_>,
        load: &mut Option<journeydb_query::BulkLoad>,
        table: &str,
        step: LoadStep,
        ipc: Vec<u8>,
    ) -> Frame {
        let outcome = conn::isolate(|| {
            let _slot = turns.acquire();
            load_step(engine, load, table, step, ipc)
        });
        match outcome {
            Ok(Ok(rows)) => Frame::Done {
                tag: "LOAD".into(),
                rows,
            },
            Ok(Err((code, message))) => {
                *load = None;
                Frame::Error { code, message }
            }
            Err(message) => {
                *load = None;
                Frame::Error {
                    code: ErrorCode::Internal,
                    message,
                }
            }
        }
    }

    /// Answers one request frame.
    fn request(
        &self,
        engine: &Engine,
        w: &mut BufWriter<conn::Guarded<'_>>,
        frame: Frame,
    ) -> Result<(), ClientError> {
        match frame {
            Frame::Ping => write_frame(w, &Frame::Pong)?,
            Frame::Query { sql } => self.query(engine, w, &sql)?,
            Frame::Append { table, ipc } => {
                let started = Started::now();
                let mut bytes = 0;
                let reply = decode_ipc(ipc)
                    .map_err(|e| (ErrorCode::Protocol, e.to_string()))
                    .and_then(|batches| {
                        engine
                            .may_write()
                            .map_err(|e| (error_code(&e), e.to_string()))?;
                        // One request is one append: the frame's batches are joined first, so
                        // a bad row anywhere refuses the whole request and nothing is stored.
                        let one = match batches.as_slice() {
                            [] => return Ok(0),
                            [b] => b.clone(),
                            many @ [first, ..] => {
                                arrow_select::concat::concat_batches(&first.schema(), many)
                                    .map_err(|e| (ErrorCode::User, format!("append: {e}")))?
                            }
                        };
                        bytes = one.get_array_memory_size() as u64;
                        engine
                            .check_append(&table, &one)
                            .map_err(|e| (error_code(&e), e.to_string()))?;
                        engine
                            .database()
                            .append(&table, &one)
                            .map(|n| n as u64)
                            .map_err(|e| {
                                let qe = QueryError::Storage(e);
                                (error_code(&qe), qe.to_string())
                            })
                    });
                started.log(
                    engine,
                    format!("APPEND INTO {table}"),
                    reply.as_ref().map_or(0, |n| *n),
                    bytes,
                    reply.as_ref().err().map(|(_, m)| m.as_str()),
                );
                match reply {
                    Ok(n) => write_frame(
                        w,
                        &Frame::Done {
                            tag: "APPEND".into(),
                            rows: n,
                        },
                    )?,
                    Err((code, message)) => write_frame(w, &Frame::Error { code, message })?,
                }
            }
            Frame::Swap { a, b } => match Started::now().log_result(
                engine,
                format!("SWAP {a} WITH {b}"),
                engine.swap(&a, &b),
            ) {
                Ok(_) => write_frame(
                    w,
                    &Frame::Done {
                        tag: "SWAP".into(),
                        rows: 0,
                    },
                )?,
                Err(qe) => {
                    write_frame(
                        w,
                        &Frame::Error {
                            code: error_code(&qe),
                            message: qe.to_string(),
                        },
                    )?;
                }
            },
            other => write_frame(
                w,
                &Frame::Error {
                    code: ErrorCode::Protocol,
                    message: format!("{} is not a request", other.name()),
                },
            )?,
        }
        Ok(())
    }

    /// Sends a batch as Rows frames, each within the frame limit (halving the rows until it fits).
    fn write_rows(
        &self,
        w: &mut BufWriter<conn::Guarded<'_>>,
        b: &RecordBatch,
    ) -> Result<(), ClientError> {
        let budget = self.config.frame_len_max.saturating_sub(16);
        let mut start = 0;
        let mut rows = b.num_rows().max(1);
        while start < b.num_rows() || (start == 0 && b.num_rows() == 0) {
            let len = rows.min(b.num_rows() - start);
            let ipc = encode_ipc(&[b.slice(start, len)])?;
            if ipc.len() > budget && len > 1 {
                rows = len / 2;
                continue;
            }
            write_frame(w, &Frame::Rows { ipc })?;
            start += len.max(1);
        }
        Ok(())
    }

    fn query(
        &self,
        engine: &Engine,
        w: &mut BufWriter<conn::Guarded<'_>>,
        sql: &str,
    ) -> Result<(), ClientError> {
        let err = |w: &mut BufWriter<conn::Guarded<'_>>, e: QueryError| {
            write_frame(
                w,
                &Frame::Error {
                    code: error_code(&e),
                    message: e.to_string(),
                },
            )
        };
        let (stmt, rules) = match Engine::parse(sql) {
            Ok(mut stmts) if stmts.len() == 1 => match stmts.pop() {
                Some(s) => s,
                None => return err(w, QueryError::Syntax("no statement".into())),
            },
            Ok(stmts) => {
                return err(
                    w,
                    QueryError::Syntax(format!("expected one statement, found {}", stmts.len())),
                )
            }
            Err(e) => return err(w, e),
        };
        if statement_kind(&stmt) == StatementKind::Query {
            match engine.stream_statement(&stmt) {
                Ok(stream) => {
                    let mut rows = 0u64;
                    let schema = stream.schema();
                    let mut sent = false;
                    for b in stream {
                        match b {
                            Ok(b) => {
                                rows += b.num_rows() as u64;
                                sent = true;
                                self.write_rows(w, &b)?;
                            }
                            Err(e) => return err(w, e),
                        }
                    }
                    if !sent {
                        // No rows: one empty batch still tells the client the columns.
                        self.write_rows(w, &RecordBatch::new_empty(schema))?;
                    }
                    write_frame(
                        w,
                        &Frame::Done {
                            tag: "SELECT".into(),
                            rows,
                        },
                    )
                }
                Err(e) => err(w, e),
            }
        } else {
            match engine.execute_statement(&stmt, &rules) {
                Ok(Output::Rows(b)) => {
                    self.write_rows(w, &b)?;
                    write_frame(
                        w,
                        &Frame::Done {
                            tag: "SELECT".into(),
                            rows: b.num_rows() as u64,
                        },
                    )
                }
                Ok(Output::Done { tag, rows }) => write_frame(w, &Frame::Done { tag, rows }),
                Err(e) => err(w, e),
            }
        }
    }
}

/// One step of a connection's bulk load: rows held, or the load committed or discarded. Returns
/// the rows held so far, or committed.
fn load_step(
    engine: &Engine,
    load: &mut Option<journeydb_query::BulkLoad>,
    table: &str,
    step: LoadStep,
    ipc: Vec<u8>,
) -> Result<u64, (ErrorCode, String)> {
    let storage = |e: journeydb_query::StorageError| {
        let qe = QueryError::Storage(e);
        (error_code(&qe), qe.to_string())
    };
    match step {
        LoadStep::Abort => {
            *load = None;
            return Ok(0);
        }
        LoadStep::Commit => {
            let Some(l) = load.take() else {
                return Ok(0);
            };
            return l.finish().map(|s| s.rows).map_err(storage);
        }
        LoadStep::Data | LoadStep::AddColumn => {}
    }
    if load
        .as_ref()
        .is_some_and(|l| !l.table().eq_ignore_ascii_case(table))
    {
        return Err((
            ErrorCode::Protocol,
            "a load is already under way for another table on this connection".into(),
        ));
    }
    let l = match load {
        Some(l) => l,
        None => {
            let quota = |e: QueryError| (error_code(&e), e.to_string());
            engine.may_write().map_err(quota)?;
            load.insert(engine.database().bulk_load(table).map_err(storage)?)
        }
    };
    if step == LoadStep::AddColumn {
        let text = String::from_utf8(ipc).unwrap_or_default();
        let column = column_spec(&text).map_err(|m| (ErrorCode::User, m))?;
        l.add_column(column).map_err(storage)?;
        return Ok(l.rows());
    }
    let batches = decode_ipc(ipc).map_err(|e| (ErrorCode::Protocol, e.to_string()))?;
    for b in &batches {
        engine
            .check_append(table, b)
            .map_err(|e| (error_code(&e), e.to_string()))?;
        l.push(b).map_err(storage)?;
    }
    Ok(l.rows())
}

/// A column a load adds: `name`, SQL type and merge rule.
fn column_spec(text: &str) -> Result<journeydb_query::ColumnDef, String> {
    let mut parts = text.split('\t');
    let (Some(name), Some(ty), Some(rule), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("bad column of a load: {text:?}"));
    };
    let ty = journeydb_query::ColumnType::from_sql_name(ty)
        .ok_or_else(|| format!("column {name}: unknown type {ty}"))?;
    let rule = journeydb_query::MergeRule::from_sql_name(rule)
        .ok_or_else(|| format!("column {name}: unknown merge rule {rule}"))?;
    Ok(journeydb_query::ColumnDef::new(name, ty).with_rule(rule))
}

/// The embedded engine as a [`Session`]: the same job code runs in-process or against a server.
#[derive(Debug, Clone)]
pub struct EmbeddedSession {
    engine: Engine,
}

impl EmbeddedSession {
    /// A session over an engine.
    pub fn new(engine: Engine) -> Self {
        EmbeddedSession {
            engine: engine.session(),
        }
    }

    /// Folds one item of a load into `l`; `keys` are the ordinals of a cells item's keys when
    /// they were resolved ahead (see `Session::load`).
    fn load_item(
        &self,
        l: &mut journeydb_query::BulkLoad,
        table: &str,
        item: journeydb_client::LoadItem,
        keys: Option<Result<journeydb_query::Ordinals, journeydb_query::StorageError>>,
    ) -> Result<(), ClientError> {
        let storage = |e| to_client(QueryError::Storage(e));
        match item {
            journeydb_client::LoadItem::Rows(b) => {
                self.engine.check_append(table, &b).map_err(to_client)?;
                l.push(&b).map_err(storage)
            }
            // A table with a contract checks the cells as the batches they stand for.
            journeydb_client::LoadItem::Cells(c) if self.engine.has_contract(table) => {
                for b in c.to_batches()? {
                    self.engine.check_append(table, &b).map_err(to_client)?;
                    l.push(&b).map_err(storage)?
                }
                Ok(())
            }
            journeydb_client::LoadItem::Cells(c) => {
                let targets = cell_targets(l.schema(), table, &c)?;
                match keys {
                    Some(keys) => {
                        l.push_resolved_cells(keys.map_err(storage)?, &c.kinds, &c.values, &targets)
                    }
                    None => l.push_cells(c.keys.as_ref(), &c.kinds, &c.values, &targets),
                }
                .map_err(storage)
            }
            journeydb_client::LoadItem::AddColumn { name, ty, rule } => {
                let column = column_spec(&format!("{name}\t{ty}\t{rule}")).map_err(|m| {
                    ClientError::Server {
                        code: ErrorCode::User,
                        message: m,
                    }
                })?;
                l.add_column(column).map_err(storage)
            }
        }
    }
}

fn to_client(e: QueryError) -> ClientError {
    ClientError::Server {
        code: error_code(&e),
        message: e.to_string(),
    }
}

impl Session for EmbeddedSession {
    fn run(&mut self, sql: &str) -> Result<Reply, ClientError> {
        match self.engine.execute_one(sql).map_err(to_client)? {
            Output::Rows(b) => {
                let rows = b.num_rows() as u64;
                Ok(Reply {
                    batches: vec![b],
                    tag: "SELECT".into(),
                    rows,
                })
            }
            Output::Done { tag, rows } => Ok(Reply {
                batches: Vec::new(),
                tag,
                rows,
            }),
        }
    }

    fn append(&mut self, table: &str, batch: &RecordBatch) -> Result<u64, ClientError> {
        self.engine.check_append(table, batch).map_err(to_client)?;
        self.engine
            .database()
            .append(table, batch)
            .map(|n| n as u64)
            .map_err(|e| to_client(QueryError::Storage(e)))
    }

    fn load(
        &mut self,
        table: &str,
        batches: journeydb_client::LoadBatches<'_>,
    ) -> Result<u64, ClientError> {
        let storage = |e| to_client(QueryError::Storage(e));
        let mut l = self.engine.database().bulk_load(table).map_err(storage)?;
        // The keys of the next cells are resolved on a thread of their own while these fold:
        // a pivot's lookups (mostly waits on memory) overlap its folds instead of adding to them.
        // Items keep their order; at most two are ahead of the one being folded.
        let resolver = l.resolver();
        let contract = self.engine.has_contract(table);
        std::thread::scope(|scope| -> Result<(), ClientError> {
            let (ahead, to_resolve) = std::sync::mpsc::sync_channel::<LoadInput>(1);
            let (resolved, results) = std::sync::mpsc::sync_channel::<Resolved>(1);
            scope.spawn(move || {
                for item in to_resolve {
                    let keys = match &item {
                        Ok(journeydb_client::LoadItem::Cells(c)) if !contract => {
                            Some(resolver.ordinals(c.keys.as_ref()))
                        }
                        _ => None,
                    };
                    if resolved.send((item, keys)).is_err() {
                        break;
                    }
                }
            });
            let (mut in_flight, mut more) = (0, true);
            loop {
                while more && in_flight < 2 {
                    match batches.next().map(|item| ahead.send(item)) {
                        Some(Ok(())) => in_flight += 1,
                        _ => more = false,
                    }
                }
                if in_flight == 0 {
                    return Ok(());
                }
                let (item, keys) = results
                    .recv()
                    .map_err(|_| ClientError::Input("the key resolver stopped".into()))?;
                in_flight -= 1;
                self.load_item(&mut l, table, item?, keys)?;
            }
        })?;
        l.finish().map(|s| s.rows).map_err(storage)
    }

    fn swap(&mut self, a: &str, b: &str) -> Result<(), ClientError> {
        self.engine.swap(a, b).map_err(to_client)
    }
}
/// An item of a load on its way to the key resolver.
type LoadInput = Result<journeydb_client::LoadItem, ClientError>;
/// An item of a load with its keys' ordinals, when it is cells whose keys were resolved ahead.
type Resolved = (
    LoadInput,
    Option<Result<journeydb_query::Ordinals, journeydb_query::StorageError>>,
);

/// The column ids of cells' targets, by name in the load's schema.
fn cell_targets(
    schema: &journeydb_query::TableSchema,
    table: &str,
    cells: &journeydb_client::Cells,
) -> Result<Vec<Vec<journeydb_query::CellColumn>>, ClientError> {
    cells
        .targets
        .iter()
        .map(|cols| {
            cols.iter()
                .map(|t| match schema.column(&t.column) {
                    Some((id, _)) => Ok((id, t.constant)),
                    None => Err(ClientError::Server {
                        code: ErrorCode::User,
                        message: format!("no column {} in {table}", t.column),
                    }),
                })
                .collect()
        })
        .collect()
}

pub mod conn;
pub mod pg;
pub mod querylog;
pub mod scram;
pub mod tenants;

/// True for SQL that only ends a transaction (`COMMIT`, `ROLLBACK`, `END`, `ABORT`, with
/// `WORK` / `TRANSACTION`): it runs without waiting for an execution slot, since it releases the
/// session's `LOCK TABLE` locks, which requests holding slots may be waiting for.
pub(crate) fn ends_transaction(sql: &str) -> bool {
    let upper = sql.trim().trim_end_matches(';').to_ascii_uppercase();
    let mut words = upper.split_whitespace();
    matches!(words.next(), Some("COMMIT" | "ROLLBACK" | "END" | "ABORT"))
        && words.all(|w| matches!(w, "WORK" | "TRANSACTION"))
}

/// Largest Hello frame read before a client authenticated.
const HELLO_LEN_MAX: usize = 64 << 10;

/// Compares a presented token with the server's in constant time (no early exit on the first
/// differing byte, so response times do not reveal a prefix). No configured token admits anyone.
pub(crate) fn token_matches(expected: Option<&str>, presented: &str) -> bool {
    match expected {
        None => true,
        Some(t) => constant_time_eq::constant_time_eq(t.as_bytes(), presented.as_bytes()),
    }
}

/// Waits for the client's next request without holding up a server stop: polls the socket in
/// short steps. Returns `true` when bytes are waiting, `false` when the client closed, stayed
/// idle past `idle`, or the server is stopping. The read timeout is `idle` again afterwards,
/// for the body of the request.
pub(crate) fn await_request(
    r: &BufReader<conn::Guarded<'_>>,
    stream: &TcpStream,
    stop: &AtomicBool,
    idle: Duration,
) -> std::io::Result<bool> {
    if !r.buffer().is_empty() || r.get_ref().plaintext_pending() {
        return Ok(true);
    }
    let start = std::time::Instant::now();
    let step = Duration::from_millis(100).min(idle.max(Duration::from_millis(1)));
    stream.set_read_timeout(Some(step))?;
    let ready = loop {
        match stream.peek(&mut [0u8; 1]) {
            Ok(0) => break false,
            Ok(_) => break true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) || start.elapsed() >= idle {
                    break false;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    stream.set_read_timeout(Some(idle))?;
    Ok(ready)
}

/// The start of a native request that is not SQL (an append, a swap), for the query log.
struct Started {
    start_us: i64,
    t0: std::time::Instant,
    cpu_ns: u64,
}

impl Started {
    fn now() -> Started {
        Started {
            start_us: journeydb_query::engine::now_epoch_us(),
            t0: std::time::Instant::now(),
            cpu_ns: journeydb_query::meter::thread_cpu_ns(),
        }
    }

    /// Reports the request to the session's query log, if it has one.
    fn log(&self, engine: &Engine, text: String, rows: u64, bytes: u64, error: Option<&str>) {
        let Some(log) = engine.log() else {
            return;
        };
        let reading = journeydb_query::meter::Reading {
            cpu_us: journeydb_query::meter::thread_cpu_ns().saturating_sub(self.cpu_ns) / 1000,
            ..Default::default()
        };
        let record = journeydb_query::StatementRecord {
            text,
            start_us: self.start_us,
            wall_us: self.t0.elapsed().as_micros() as u64,
            reading,
            rows_returned: 0,
            rows_written: rows,
            bytes_written: bytes,
        };
        let error = error.map(|m| QueryError::Internal(m.to_string()));
        log.record(record, error.as_ref());
    }

    /// [`Started::log`] of a storage call's result, which it returns.
    fn log_result<T>(
        &self,
        engine: &Engine,
        text: String,
        r: Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        let error = r.as_ref().err().map(|e| e.to_string());
        self.log(engine, text, 0, 0, error.as_deref());
        r
    }
}

#[cfg(test)]
mod slot_tests {
    #[test]
    fn only_statements_that_just_end_a_transaction_skip_the_slot() {
        for sql in [
            "COMMIT",
            "commit;",
            " ROLLBACK WORK ",
            "end transaction",
            "ABORT",
        ] {
            assert!(super::ends_transaction(sql), "{sql}");
        }
        for sql in [
            "COMMIT; SELECT 1",
            "SELECT 1",
            "ROLLBACK TO SAVEPOINT a",
            "",
            "BEGIN",
        ] {
            assert!(!super::ends_transaction(sql), "{sql}");
        }
    }
}
