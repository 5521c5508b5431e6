//! What every connection of either protocol shares: admission (a small budget for connections
//! that have not authenticated yet, the connection limit for those that have), sockets whose reads
//! and writes have total deadlines and give up when the server stops, and request isolation (a
//! panic in one request is caught, answered, and releases what it held).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a new connection has to complete its startup and authentication.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Granularity of socket waits: how quickly a blocked read or write notices a stop or a deadline.
const POLL_STEP: Duration = Duration::from_millis(100);
/// Stack of a connection thread. Plans and expressions recurse over bounded depths (see
/// `journeydb_query::parse`); this leaves room for the longest accepted statement.
pub const CONN_STACK_BYTES: usize = 8 << 20;

/// How long an unauthenticated connection is safe from eviction.
pub const EVICT_AGE: Duration = Duration::from_millis(500);
/// How far a burst of fresh unauthenticated connections may exceed the budget.
pub const BURST_FACTOR: usize = 4;

/// Connection accounting shared by both listeners.
///
/// Unauthenticated connections have a budget of their own. When it is full, a new connection
/// evicts the oldest unauthenticated one if that one has had [`EVICT_AGE`] to authenticate (it is
/// closed within [`POLL_STEP`]): a client with the token authenticates in about a millisecond, so
/// it is never that old, while sockets that stay silent are. A burst of fresh connections may
/// exceed the budget up to [`BURST_FACTOR`] times; past that, new connections are closed at once.
/// Nothing that has not authenticated can take a slot of `max_connections` or keep a client with
/// the token waiting.
#[derive(Debug, Default)]
pub struct Admission {
    pending: std::sync::Mutex<std::collections::VecDeque<(u64, Instant, Arc<AtomicBool>)>>,
    next_id: AtomicU64,
    active: AtomicUsize,
}

/// A connection that has not authenticated yet; counted until dropped or admitted.
pub struct Pending<'a> {
    admission: &'a Admission,
    id: u64,
    evicted: Arc<AtomicBool>,
}

/// An authenticated connection; counted until dropped (also when its thread unwinds).
pub struct Active<'a>(&'a Admission);

impl Admission {
    #[allow(clippy::type_complexity)]
    fn queue(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(u64, Instant, Arc<AtomicBool>)>>
    {
        // A poisoned lock only means a panic elsewhere while it was held; the queue is still whole.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new, unauthenticated connection (see the type's documentation for the budget);
    /// `None`: refused, close it.
    pub fn arrive(&self, max_pending: usize) -> Option<Pending<'_>> {
        let max_pending = max_pending.max(1);
        let mut q = self.queue();
        let now = Instant::now();
        while q.len() >= max_pending {
            match q.front() {
                Some((_, since, flag)) if now.duration_since(*since) >= EVICT_AGE => {
                    flag.store(true, Ordering::SeqCst);
                    q.pop_front();
                }
                _ => break,
            }
        }
        if q.len() >= max_pending.saturating_mul(BURST_FACTOR) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let evicted = Arc::new(AtomicBool::new(false));
        q.push_back((id, now, evicted.clone()));
        Some(Pending {
            admission: self,
            id,
            evicted,
        })
    }

    /// Connections authenticating now.
    pub fn pending(&self) -> usize {
        self.queue().len()
    }

    /// Authenticated connections now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

impl<'a> Pending<'a> {
    /// The flag set when this connection is evicted; its sockets watch it.
    pub fn evicted(&self) -> Arc<AtomicBool> {
        self.evicted.clone()
    }

    /// The connection authenticated: it becomes active unless `max_active` already are.
    pub fn admit(self, max_active: usize) -> Option<Active<'a>> {
        let a = self.admission;
        let mut n = a.active.load(Ordering::SeqCst);
        loop {
            if n >= max_active {
                return None;
            }
            match a
                .active
                .compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Some(Active(a)),
                Err(now) => n = now,
            }
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let mut q = self.admission.queue();
        if let Some(i) = q.iter().position(|(id, _, _)| *id == self.id) {
            q.remove(i);
        }
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's byte stream: the TCP socket, and the TLS session over it once TLS started.
pub struct Transport {
    tcp: TcpStream,
    tls: Option<Box<rustls::ServerConnection>>,
}

/// A transport shared by a connection's reader and writer (one thread uses both; the lock is
/// never contended, it only lets the buffered reader and writer own a handle each).
pub type Shared = Arc<Mutex<Transport>>;

impl Transport {
    /// A plain TCP transport.
    pub fn shared(tcp: TcpStream) -> Shared {
        Arc::new(Mutex::new(Transport { tcp, tls: None }))
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.tls {
            None => self.tcp.read(buf),
            Some(c) => rustls::Stream::new(c.as_mut(), &mut self.tcp).read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.tls {
            None => self.tcp.write(buf),
            Some(c) => rustls::Stream::new(c.as_mut(), &mut self.tcp).write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.tls {
            None => self.tcp.flush(),
            Some(c) => {
                while c.wants_write() {
                    c.write_tls(&mut self.tcp)?;
                }
                self.tcp.flush()
            }
        }
    }
}

fn lock(t: &Shared) -> std::sync::MutexGuard<'_, Transport> {
    // A poisoned lock only means a panic elsewhere while it was held; the connection then ends.
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// A socket whose reads and writes wait at most until a deadline in total (not per call), and
/// give up as soon as the server stops. A client trickling one byte at a time, or not reading its
/// results, can hold a connection only until the deadline.
pub struct Guarded<'a> {
    transport: Shared,
    deadline: Instant,
    stop: &'a AtomicBool,
    /// Set when the connection, still unauthenticated, is evicted.
    evicted: Arc<AtomicBool>,
}

impl<'a> Guarded<'a> {
    /// Wraps a transport; the first deadline is [`AUTH_TIMEOUT`] from now.
    pub fn new(transport: Shared, stop: &'a AtomicBool, evicted: Arc<AtomicBool>) -> Guarded<'a> {
        Guarded {
            transport,
            deadline: Instant::now() + AUTH_TIMEOUT,
            stop,
            evicted,
        }
    }

    /// Sets the deadline to `within` from now.
    pub fn set_deadline(&mut self, within: Duration) {
        self.deadline = Instant::now() + within;
    }

    /// Starts TLS on the transport (the handshake runs with the next read or write).
    pub fn start_tls(&self, config: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
        let c = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
        lock(&self.transport).tls = Some(Box::new(c));
        Ok(())
    }

    /// Whether TLS started on this transport.
    pub fn tls_started(&self) -> bool {
        lock(&self.transport).tls.is_some()
    }

    /// Whether TLS holds decrypted bytes not read yet (the socket alone would look idle).
    pub fn plaintext_pending(&self) -> bool {
        let mut t = lock(&self.transport);
        match &mut t.tls {
            Some(c) => c
                .process_new_packets()
                .is_ok_and(|s| s.plaintext_bytes_to_read() > 0),
            None => false,
        }
    }

    /// The time left, or an error when the deadline passed or the server is stopping.
    fn step(&self) -> std::io::Result<Duration> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the server is stopping",
            ));
        }
        if self.evicted.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "evicted: too many connections were authenticating",
            ));
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not keep up within the deadline",
            ));
        }
        Ok(left.min(POLL_STEP))
    }
}

fn waiting(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

impl Read for Guarded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let step = self.step()?;
            let mut t = lock(&self.transport);
            t.tcp.set_read_timeout(Some(step))?;
            match t.read(buf) {
                Err(e) if waiting(&e) => continue,
                other => return other,
            }
        }
    }
}

impl Write for Guarded<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            let step = self.step()?;
            let mut t = lock(&self.transport);
            t.tcp.set_write_timeout(Some(step))?;
            match t.write(buf) {
                Err(e) if waiting(&e) => continue,
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        loop {
            let step = self.step()?;
            let mut t = lock(&self.transport);
            t.tcp.set_write_timeout(Some(step))?;
            match t.flush() {
                Err(e) if waiting(&e) => continue,
                other => return other,
            }
        }
    }
}

/// Loads a TLS server configuration from PEM files: the certificate chain and its private key.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in the file",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    Ok(Arc::new(config))
}

/// Runs one request, turning a panic into `Err(message)`. Everything the request held (its
/// execution slot, locks, buffers) is released by unwinding before this returns.
pub fn isolate<T>(request: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(request)).map_err(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("internal error: the request failed and was abandoned ({what}); please report it")
    })
}
