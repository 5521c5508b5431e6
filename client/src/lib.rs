//! journeydb-client: the native wire protocol (`PROTOCOL.md`), the remote [`Client`], and the
//! [`Session`] trait that the embedded engine implements too, so a journey job runs unchanged
//! in-process or against a server.
//!
//! Depends on Arrow only. Invariants: every frame read is bounded by a length limit before any
//! allocation, and a malformed frame is a typed [`ClientError`], never a panic.
#![warn(missing_docs)]

pub mod cells;
pub mod protocol;

use std::io::{BufReader, BufWriter, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use arrow_array::RecordBatch;

pub use cells::{CellTarget, Cells};
pub use protocol::{ErrorCode, Frame, FRAME_LEN_MAX_DEFAULT, PROTOCOL_VERSION};

/// Errors of a session, remote or embedded.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol (a bad frame, an unexpected reply).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server (or the embedded engine) refused or failed the request.
    #[error("{message}")]
    Server {
        /// Error class.
        code: ErrorCode,
        /// The message, naming what was wrong.
        message: String,
    },
    /// Arrow IPC encoding or decoding failed.
    #[error("arrow: {0}")]
    Arrow(String),
    /// The rows given to a load could not be produced (a file read failed); nothing was committed.
    #[error("{0}")]
    Input(String),
}

/// One item of a [`Session::load`].
#[derive(Debug, Clone)]
pub enum LoadItem {
    /// Rows (the key column and value columns, by name).
    Rows(RecordBatch),
    /// Cells: rows that each set a few integer columns of one key (see [`Cells`]).
    Cells(Cells),
    /// A column the load adds to the table, committed with its rows (later rows may fill it).
    AddColumn {
        /// Column name.
        name: String,
        /// SQL type: TIMESTAMP, BIGINT, DOUBLE, BOOLEAN or VARCHAR.
        ty: String,
        /// Merge rule: MIN, MAX, SUM or LAST.
        rule: String,
    },
}

/// The items of a [`Session::load`]: a failure ends the load, and nothing of it is committed.
pub type LoadBatches<'a> = &'a mut dyn Iterator<Item = Result<LoadItem, ClientError>>;

/// The batches of a [`Session::append_each`]: each one its own append.
pub type AppendBatches<'a> = &'a mut dyn Iterator<Item = Result<RecordBatch, ClientError>>;

impl From<arrow_schema::ArrowError> for ClientError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        ClientError::Arrow(e.to_string())
    }
}

/// What a statement returned: rows (possibly none) and a command tag.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// Result rows, in batches.
    pub batches: Vec<RecordBatch>,
    /// Command tag (`SELECT`, `CREATE TABLE`, `INSERT`, ...).
    pub tag: String,
    /// Rows returned or written.
    pub rows: u64,
}

/// One way to run journey work: in-process or over the network.
pub trait Session {
    /// Runs one SQL statement.
    fn run(&mut self, sql: &str) -> Result<Reply, ClientError>;
    /// Appends rows to a table; returns once they are durable.
    fn append(&mut self, table: &str, batch: &RecordBatch) -> Result<u64, ClientError>;
    /// Appends each batch as its own commit (as [`Session::append`] does), in order, and returns
    /// the rows appended. The first error ends it: the batches before it stay committed, the one
    /// that failed and those after it are not stored. A [`Client`] encodes the next batch while
    /// the server stores the last one.
    fn append_each(&mut self, table: &str, batches: AppendBatches<'_>) -> Result<u64, ClientError> {
        let mut rows = 0;
        for b in batches {
            rows += self.append(table, &b?)?;
        }
        Ok(rows)
    }
    /// Exchanges two tables' names in one atomic commit.
    fn swap(&mut self, a: &str, b: &str) -> Result<(), ClientError>;
    /// Loads every batch into `table` as one commit (bulk: straight to segments, not through the
    /// WAL): all the rows or none. Returns the rows loaded.
    fn load(&mut self, table: &str, batches: LoadBatches<'_>) -> Result<u64, ClientError>;
}

/// A connection to a journeydb server.
pub struct Client {
    reader: BufReader<Stream>,
    writer: BufWriter<Stream>,
    /// Largest frame read from the server.
    frame_len_max: usize,
    /// Largest frame the server accepts (from its HelloOk).
    send_len_max: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.reader.get_ref().peer_addr())
            .finish()
    }
}

/// The client's byte stream: a TCP socket (reader and writer each hold a clone), or a TLS
/// session shared by both.
enum Stream {
    Plain(TcpStream),
    Tls(std::sync::Arc<std::sync::Mutex<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>>),
}

impl Stream {
    fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Stream::Plain(s) => s.peer_addr().ok(),
            Stream::Tls(t) => t.lock().ok().and_then(|t| t.sock.peer_addr().ok()),
        }
    }
}

fn poisoned() -> std::io::Error {
    std::io::Error::other("the TLS session's lock was poisoned")
}

impl std::io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.lock().map_err(|_| poisoned())?.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.lock().map_err(|_| poisoned())?.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.lock().map_err(|_| poisoned())?.flush(),
        }
    }
}

/// Most rows in one Append frame: a larger batch is sent as a bulk load (split into Data frames of
/// at most this many rows), so that no frame nears the size limit and the request stays all or
/// nothing.
pub const APPEND_BATCH_ROWS: usize = 100_000;

impl Client {
    /// Connects and performs the handshake (with `token` when the server requires one).
    pub fn connect(addr: impl ToSocketAddrs, token: Option<&str>) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(600)))?;
        let reader = Stream::Plain(stream.try_clone()?);
        Self::handshake(reader, Stream::Plain(stream), token)
    }

    /// Connects over TLS (a server started with `--tls-cert`), trusting the certificates in the
    /// PEM file `ca_pem` for `server_name`, and performs the handshake.
    pub fn connect_tls(
        addr: impl ToSocketAddrs,
        token: Option<&str>,
        server_name: &str,
        ca_pem: &std::path::Path,
    ) -> Result<Client, ClientError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName};
        let tls_err = |m: String| ClientError::Protocol(format!("TLS: {m}"));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_pem)
            .map_err(|e| tls_err(format!("{}: {e}", ca_pem.display())))?
        {
            roots
                .add(cert.map_err(|e| tls_err(format!("{}: {e}", ca_pem.display())))?)
                .map_err(|e| tls_err(e.to_string()))?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|e| tls_err(format!("server name {server_name:?}: {e}")))?;
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
            .map_err(|e| tls_err(e.to_string()))?;
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(600)))?;
        let shared = std::sync::Arc::new(std::sync::Mutex::new(rustls::StreamOwned::new(
            conn, stream,
        )));
        Self::handshake(Stream::Tls(shared.clone()), Stream::Tls(shared), token)
    }

    fn handshake(
        reader: Stream,
        writer: Stream,
        token: Option<&str>,
    ) -> Result<Client, ClientError> {
        let mut c = Client {
            reader: BufReader::new(reader),
            writer: BufWriter::new(writer),
            frame_len_max: FRAME_LEN_MAX_DEFAULT,
            send_len_max: FRAME_LEN_MAX_DEFAULT,
        };
        c.send(&Frame::Hello {
            version: PROTOCOL_VERSION,
            token: token.unwrap_or_default().to_string(),
        })?;
        match c.recv()? {
            Frame::HelloOk { frame_len_max, .. } => {
                c.send_len_max = (frame_len_max as usize).clamp(1024, FRAME_LEN_MAX_DEFAULT);
                Ok(c)
            }
            Frame::Error { code, message } => Err(ClientError::Server { code, message }),
            other => Err(ClientError::Protocol(format!(
                "expected HelloOk, got {}",
                other.name()
            ))),
        }
    }

    fn send(&mut self, f: &Frame) -> Result<(), ClientError> {
        protocol::write_frame(&mut self.writer, f)?;
        self.writer.flush()?;
        Ok(())
    }

    fn recv(&mut self) -> Result<Frame, ClientError> {
        protocol::read_frame(&mut self.reader, self.frame_len_max)
    }

    /// Checks the connection.
    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.send(&Frame::Ping)?;
        match self.recv()? {
            Frame::Pong => Ok(()),
            other => Err(ClientError::Protocol(format!(
                "expected Pong, got {}",
                other.name()
            ))),
        }
    }

    /// Runs a statement, handing each result batch to `each` as it arrives (large results stream).
    pub fn run_streaming(
        &mut self,
        sql: &str,
        mut each: impl FnMut(RecordBatch),
    ) -> Result<(String, u64), ClientError> {
        self.send(&Frame::Query {
            sql: sql.to_string(),
        })?;
        loop {
            match self.recv()? {
                Frame::Rows { ipc } => {
                    for b in protocol::decode_ipc(ipc)? {
                        each(b);
                    }
                }
                Frame::Done { tag, rows } => return Ok((tag, rows)),
                Frame::Error { code, message } => {
                    return Err(ClientError::Server { code, message })
                }
                other => {
                    return Err(ClientError::Protocol(format!(
                        "unexpected {} in a result",
                        other.name()
                    )))
                }
            }
        }
    }

    /// Sends one batch of a load as Data frames, each within `budget` bytes (halving the rows
    /// until a slice fits), waiting for each Done.
    fn load_rows(
        &mut self,
        table: &str,
        batch: &RecordBatch,
        budget: usize,
    ) -> Result<(), ClientError> {
        let mut start = 0;
        let mut rows = APPEND_BATCH_ROWS;
        while start < batch.num_rows() {
            let len = rows.min(batch.num_rows() - start);
            let ipc = protocol::encode_ipc(&[batch.slice(start, len)])?;
            if ipc.len() > budget {
                if len <= 1 {
                    return Err(ClientError::Protocol(format!(
                        "one row takes {} bytes, over the server's frame limit",
                        ipc.len()
                    )));
                }
                rows = len / 2;
                continue;
            }
            self.send(&Frame::Load {
                table: table.to_string(),
                step: protocol::LoadStep::Data,
                ipc,
            })?;
            self.expect_done()?;
            start += len;
        }
        Ok(())
    }

    /// The Arrow bytes of `batch` as one Append frame's, or `None` when it is too large for one
    /// frame (then it goes as a bulk load, which commits every row at once or none; separate
    /// Append frames would each be durable on their own).
    fn append_frame(
        &self,
        table: &str,
        batch: &RecordBatch,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        // Room for the frame header and the table name.
        let budget = self.send_len_max.saturating_sub(64 + table.len());
        if batch.num_rows() > APPEND_BATCH_ROWS {
            return Ok(None);
        }
        let ipc = protocol::encode_ipc(std::slice::from_ref(batch))?;
        Ok((ipc.len() <= budget).then_some(ipc))
    }

    /// Appends `batch` as one bulk load: all its rows or none.
    fn load_one(&mut self, table: &str, batch: &RecordBatch) -> Result<u64, ClientError> {
        let mut one = std::iter::once(Ok(LoadItem::Rows(batch.clone())));
        self.load(table, &mut one).map(|_| batch.num_rows() as u64)
    }

    fn expect_done(&mut self) -> Result<u64, ClientError> {
        match self.recv()? {
            Frame::Done { rows, .. } => Ok(rows),
            Frame::Error { code, message } => Err(ClientError::Server { code, message }),
            other => Err(ClientError::Protocol(format!(
                "expected Done, got {}",
                other.name()
            ))),
        }
    }
}

impl Session for Client {
    fn run(&mut self, sql: &str) -> Result<Reply, ClientError> {
        let mut batches = Vec::new();
        let (tag, rows) = self.run_streaming(sql, |b| batches.push(b))?;
        Ok(Reply { batches, tag, rows })
    }

    fn append(&mut self, table: &str, batch: &RecordBatch) -> Result<u64, ClientError> {
        match self.append_frame(table, batch)? {
            Some(ipc) => {
                self.send(&Frame::Append {
                    table: table.to_string(),
                    ipc,
                })?;
                self.expect_done()
            }
            None => self.load_one(table, batch),
        }
    }

    fn append_each(&mut self, table: &str, batches: AppendBatches<'_>) -> Result<u64, ClientError> {
        let mut rows = 0;
        // An Append sent whose Done is not read yet. The next frame goes only after that Done, so
        // a failed batch stops the rest as it would one append at a time; the overlap is the
        // client's encoding of the next batch with the server's storing of the last.
        let mut waiting = false;
        for item in batches {
            let next = item.and_then(|b| self.append_frame(table, &b).map(|ipc| (b, ipc)));
            if std::mem::take(&mut waiting) {
                rows += self.expect_done()?;
            }
            match next? {
                (_, Some(ipc)) => {
                    self.send(&Frame::Append {
                        table: table.to_string(),
                        ipc,
                    })?;
                    waiting = true;
                }
                (b, None) => rows += self.load_one(table, &b)?,
            }
        }
        if waiting {
            rows += self.expect_done()?;
        }
        Ok(rows)
    }

    fn load(&mut self, table: &str, batches: LoadBatches<'_>) -> Result<u64, ClientError> {
        let budget = self.send_len_max.saturating_sub(64 + table.len());
        for item in batches {
            let sent = item.and_then(|item| match item {
                LoadItem::Rows(b) => self.load_rows(table, &b, budget),
                LoadItem::Cells(c) => c
                    .to_batches()
                    .and_then(|bs| bs.iter().try_for_each(|b| self.load_rows(table, b, budget))),
                LoadItem::AddColumn { name, ty, rule } => {
                    self.send(&Frame::Load {
                        table: table.to_string(),
                        step: protocol::LoadStep::AddColumn,
                        ipc: format!("{name}\t{ty}\t{rule}").into_bytes(),
                    })?;
                    self.expect_done().map(|_| ())
                }
            });
            if let Err(e) = sent {
                // The server discards what it holds; a failed abort is moot (the connection is
                // gone, which discards it too).
                if !matches!(e, ClientError::Server { .. } | ClientError::Io(_)) {
                    let _ = self
                        .send(&Frame::Load {
                            table: table.to_string(),
                            step: protocol::LoadStep::Abort,
                            ipc: Vec::new(),
                        })
                        .and_then(|_| self.expect_done());
                }
                return Err(e);
            }
        }
        self.send(&Frame::Load {
            table: table.to_string(),
            step: protocol::LoadStep::Commit,
            ipc: Vec::new(),
        })?;
        self.expect_done()
    }

    fn swap(&mut self, a: &str, b: &str) -> Result<(), ClientError> {
        self.send(&Frame::Swap {
            a: a.to_string(),
            b: b.to_string(),
        })?;
        self.expect_done().map(|_| ())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.send(&Frame::Close);
    }
}
