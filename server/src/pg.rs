//! The PostgreSQL wire protocol (v3), so `psql` and ordinary drivers can query: startup (SSL and GSS
//! requests declined, cleartext password when the server has a token), the simple query protocol and
//! the extended one (Parse / Bind / Describe / Execute / Sync / Close / Flush), results in text or
//! binary format. Parameters (`$1`) are bound as literals into the statement; their types come from
//! Parse (or are text).

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::TcpStream;

use arrow_array::{
    Array, BooleanArray, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
};
use arrow_schema::DataType;
use journeydb_query::format::cell_text;

use crate::conn::Guarded;
use journeydb_query::engine::{statement_kind, ParsedStatement, StatementKind};
use journeydb_query::types::DType;
use journeydb_query::types::Scalar;
use journeydb_query::{Engine, Output, QueryError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Largest startup packet accepted.
const STARTUP_LEN_MAX: usize = 10_000;
/// Named prepared statements one connection may hold (the unnamed one does not count).
pub const PREPARED_MAX: usize = 1_000;
/// Named portals one connection may hold (the unnamed one does not count).
pub const PORTALS_MAX: usize = 1_000;
/// µs between 1970-01-01 and PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

const SSL_REQUEST: i32 = 80_877_103;
const GSS_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// A protocol failure that ends the connection.
#[derive(Debug)]
pub struct PgClosed;

impl From<std::io::Error> for PgClosed {
    fn from(_: std::io::Error) -> Self {
        PgClosed
    }
}

fn oid(t: DType) -> (i32, i16) {
    match t {
        DType::Timestamp => (1114, 8),
        DType::Bigint => (20, 8),
        DType::Double => (701, 8),
        DType::Boolean => (16, 1),
        DType::Varchar | DType::Interval | DType::Null => (25, -1),
    }
}

fn dtype_of(dt: &DataType) -> DType {
    match dt {
        DataType::Timestamp(..) => DType::Timestamp,
        DataType::Int64 => DType::Bigint,
        DataType::Float64 => DType::Double,
        DataType::Boolean => DType::Boolean,
        _ => DType::Varchar,
    }
}

/// SQLSTATE of a query error (see [`crate::classify`]).
pub fn sqlstate(e: &QueryError) -> &'static str {
    crate::classify(e).1
}

struct Out<W: Write> {
    w: BufWriter<W>,
    /// Inside a BEGIN .. COMMIT block, as the client sees it (ReadyForQuery says `T`). Statements
    /// still commit one by one; the status lets drivers that check it (cursors) proceed.
    in_block: bool,
}

impl<W: Write> Out<W> {
    fn msg(&mut self, kind: u8, body: &[u8]) -> Result<(), PgClosed> {
        self.w.write_all(&[kind])?;
        self.w.write_all(&((body.len() + 4) as i32).to_be_bytes())?;
        self.w.write_all(body)?;
        Ok(())
    }
    fn ready(&mut self) -> Result<(), PgClosed> {
        self.msg(b'Z', if self.in_block { b"T" } else { b"I" })?;
        self.w.flush()?;
        Ok(())
    }
    fn error(&mut self, code: &str, message: &str) -> Result<(), PgClosed> {
        self.report(b'E', "ERROR", code, message)
    }
    fn notice(&mut self, code: &str, message: &str) -> Result<(), PgClosed> {
        self.report(b'N', "WARNING", code, message)
    }
    fn report(
        &mut self,
        kind: u8,
        severity: &str,
        code: &str,
        message: &str,
    ) -> Result<(), PgClosed> {
        let mut b = Vec::new();
        for (f, v) in [
            (b'S', severity),
            (b'V', severity),
            (b'C', code),
            (b'M', message),
        ] {
            b.push(f);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        self.msg(kind, &b)
    }
    fn row_description(
        &mut self,
        cols: &[(String, DType)],
        formats: &[i16],
    ) -> Result<(), PgClosed> {
        let mut b = Vec::new();
        b.extend_from_slice(&(cols.len() as i16).to_be_bytes());
        for (i, (name, t)) in cols.iter().enumerate() {
            let (oid, len) = oid(*t);
            b.extend_from_slice(name.as_bytes());
            b.push(0);
            b.extend_from_slice(&0i32.to_be_bytes());
            b.extend_from_slice(&0i16.to_be_bytes());
            b.extend_from_slice(&oid.to_be_bytes());
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes());
            b.extend_from_slice(&format_of(formats, i).to_be_bytes());
        }
        self.msg(b'T', &b)
    }
    fn rows(&mut self, batch: &RecordBatch, formats: &[i16]) -> Result<u64, PgClosed> {
        for r in 0..batch.num_rows() {
            let mut b = Vec::new();
            b.extend_from_slice(&(batch.num_columns() as i16).to_be_bytes());
            for (i, col) in batch.columns().iter().enumerate() {
                match cell(col.as_ref(), r, format_of(formats, i) == 1) {
                    None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        b.extend_from_slice(&v);
                    }
                }
            }
            self.msg(b'D', &b)?;
        }
        Ok(batch.num_rows() as u64)
    }
}

fn format_of(formats: &[i16], i: usize) -> i16 {
    match formats {
        [] => 0,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(0),
    }
}

/// A cell in text (PostgreSQL's spelling) or binary format.
fn cell(a: &dyn Array, i: usize, binary: bool) -> Option<Vec<u8>> {
    if a.is_null(i) {
        return None;
    }
    let any = a.as_any();
    if binary {
        return Some(match a.data_type() {
            DataType::Timestamp(..) => (any.downcast_ref::<TimestampMicrosecondArray>()?.value(i)
                - PG_EPOCH_US)
                .to_be_bytes()
                .to_vec(),
            DataType::Int64 => any
                .downcast_ref::<Int64Array>()?
                .value(i)
                .to_be_bytes()
                .to_vec(),
            DataType::Float64 => any
                .downcast_ref::<Float64Array>()?
                .value(i)
                .to_bits()
                .to_be_bytes()
                .to_vec(),
            DataType::Boolean => vec![u8::from(any.downcast_ref::<BooleanArray>()?.value(i))],
            _ => cell_text(a, i)?.into_bytes(),
        });
    }
    match a.data_type() {
        DataType::Boolean => Some(if any.downcast_ref::<BooleanArray>()?.value(i) {
            b"t".to_vec()
        } else {
            b"f".to_vec()
        }),
        _ => cell_text(a, i).map(String::into_bytes),
    }
}

fn cstr(b: &[u8], pos: &mut usize) -> Result<String, PgClosed> {
    let rest = b.get(*pos..).ok_or(PgClosed)?;
    let end = rest.iter().position(|c| *c == 0).ok_or(PgClosed)?;
    let s = String::from_utf8(rest.get(..end).ok_or(PgClosed)?.to_vec()).map_err(|_| PgClosed)?;
    *pos += end + 1;
    Ok(s)
}

fn be_bytes<const N: usize>(b: &[u8], pos: &mut usize) -> Result<[u8; N], PgClosed> {
    let v: [u8; N] = b
        .get(*pos..*pos + N)
        .ok_or(PgClosed)?
        .try_into()
        .map_err(|_| PgClosed)?;
    *pos += N;
    Ok(v)
}

fn be_i16(b: &[u8], pos: &mut usize) -> Result<i16, PgClosed> {
    be_bytes(b, pos).map(i16::from_be_bytes)
}

fn be_i32(b: &[u8], pos: &mut usize) -> Result<i32, PgClosed> {
    be_bytes(b, pos).map(i32::from_be_bytes)
}

fn read_msg(r: &mut impl Read, len_max: usize) -> Result<(u8, Vec<u8>), PgClosed> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head)?;
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if len < 4 || len as usize - 4 > len_max {
        return Err(PgClosed);
    }
    let mut body = vec![0u8; len as usize - 4];
    r.read_exact(&mut body)?;
    Ok((head[0], body))
}

/// A bound parameter as a typed value (never as SQL text): `type_oid` is the type Parse declared
/// (0: unknown, read as text).
fn param_value(value: Option<&[u8]>, type_oid: i32, binary: bool) -> Result<Scalar, String> {
    let Some(v) = value else {
        return Ok(Scalar::Null);
    };
    if !binary {
        let s = std::str::from_utf8(v).map_err(|_| "a text parameter is not UTF-8".to_string())?;
        return Ok(match type_oid {
            20 | 21 | 23 => Scalar::Int(
                s.trim()
                    .parse()
                    .map_err(|_| format!("{s:?} is not an integer"))?,
            ),
            700 | 701 | 1700 => Scalar::Float(
                s.trim()
                    .parse()
                    .map_err(|_| format!("{s:?} is not a number"))?,
            ),
            16 => Scalar::Bool(match s.trim().to_ascii_lowercase().as_str() {
                "t" | "true" | "1" | "yes" | "on" | "y" => true,
                "f" | "false" | "0" | "no" | "off" | "n" => false,
                _ => return Err(format!("{s:?} is not a boolean")),
            }),
            1114 => {
                Scalar::Ts(journeydb_query::types::parse_timestamp(s).map_err(|e| e.to_string())?)
            }
            _ => Scalar::Str(s.to_string()),
        });
    }
    let arr = |n: usize| -> Result<&[u8], String> {
        v.get(..n)
            .filter(|_| v.len() == n)
            .ok_or_else(|| "a binary parameter has the wrong length".to_string())
    };
    Ok(match type_oid {
        20 => Scalar::Int(i64::from_be_bytes(arr(8)?.try_into().map_err(|_| "int8")?)),
        23 => Scalar::Int(i32::from_be_bytes(arr(4)?.try_into().map_err(|_| "int4")?).into()),
        21 => Scalar::Int(i16::from_be_bytes(arr(2)?.try_into().map_err(|_| "int2")?).into()),
        701 => Scalar::Float(f64::from_bits(u64::from_be_bytes(
            arr(8)?.try_into().map_err(|_| "float8")?,
        ))),
        700 => Scalar::Float(
            f32::from_bits(u32::from_be_bytes(
                arr(4)?.try_into().map_err(|_| "float4")?,
            ))
            .into(),
        ),
        16 => Scalar::Bool(arr(1)?.first() == Some(&1)),
        1114 => {
            let pg = i64::from_be_bytes(arr(8)?.try_into().map_err(|_| "timestamp")?);
            Scalar::Ts(
                pg.checked_add(PG_EPOCH_US)
                    .ok_or_else(|| "the timestamp parameter is out of range".to_string())?,
            )
        }
        25 | 1043 | 0 | 705 | 18 | 19 => Scalar::Str(
            std::str::from_utf8(v)
                .map_err(|_| "a text parameter is not UTF-8".to_string())?
                .to_string(),
        ),
        other => return Err(format!("parameters of type oid {other} are not supported")),
    })
}

/// SCRAM-SHA-256 over SASL: AuthenticationSASL, the client's first message, AuthenticationSASLContinue,
/// the client's proof, AuthenticationSASLFinal. Returns whether the client proved the token.
fn scram_auth<R: Read, W: Write>(
    r: &mut R,
    out: &mut Out<W>,
    verifier: &crate::scram::Verifier,
) -> Result<bool, PgClosed> {
    let mut b = 10i32.to_be_bytes().to_vec();
    b.extend_from_slice(crate::scram::MECHANISM.as_bytes());
    b.extend_from_slice(&[0, 0]);
    out.msg(b'R', &b)?;
    out.w.flush()?;
    let (kind, body) = read_msg(r, STARTUP_LEN_MAX)?;
    let mut pos = 0;
    if kind != b'p' || cstr(&body, &mut pos)? != crate::scram::MECHANISM {
        return Ok(false);
    }
    let len = be_i32(&body, &mut pos)?;
    let first = body
        .get(pos..pos.saturating_add(usize::try_from(len).map_err(|_| PgClosed)?))
        .ok_or(PgClosed)?;
    let ex = match crate::scram::first(verifier, first) {
        Ok(ex) => ex,
        Err(m) => {
            out.error("28000", &m)?;
            out.w.flush()?;
            return Err(PgClosed);
        }
    };
    let mut b = 11i32.to_be_bytes().to_vec();
    b.extend_from_slice(ex.server_first().as_bytes());
    out.msg(b'R', &b)?;
    out.w.flush()?;
    let (kind, body) = read_msg(r, STARTUP_LEN_MAX)?;
    if kind != b'p' {
        return Ok(false);
    }
    match ex.verify(&body) {
        Ok(server_final) => {
            let mut b = 12i32.to_be_bytes().to_vec();
            b.extend_from_slice(server_final.as_bytes());
            out.msg(b'R', &b)?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

/// A prepared statement: the parsed statement (`None` for an empty query string), the parameter
/// types Parse declared, and how many parameters it takes.
struct Prepared {
    stmt: Option<ParsedStatement>,
    types: Vec<i32>,
    params: usize,
}

/// A portal: a prepared statement with its parameters bound, and the result formats.
struct Portal {
    stmt: Option<ParsedStatement>,
    formats: Vec<i16>,
    /// A query's rows not sent yet, when an Execute with a row limit suspended it.
    cursor: Option<Cursor>,
}

/// The rest of a suspended portal's result.
struct Cursor {
    stream: journeydb_query::exec::BatchStream,
    /// The batch being sent and the rows of it already sent.
    batch: Option<(RecordBatch, usize)>,
    /// Rows sent so far (the CommandComplete tag counts them all).
    sent: u64,
}

/// Parses the SQL of a Parse message: at most one statement. Parameters whose type Parse left
/// unspecified get the type their context implies (see [`Engine::param_types`]), so drivers that
/// ask (Describe) send, and we read, values of the column's type.
fn prepare(engine: &Engine, sql: &str, mut types: Vec<i32>) -> Result<Prepared, QueryError> {
    let mut stmts = Engine::parse(sql)?;
    if stmts.len() > 1 {
        return Err(QueryError::Syntax(
            "cannot insert multiple commands into a prepared statement".into(),
        ));
    }
    let mut stmt = stmts.pop();
    let params = match &mut stmt {
        Some((s, _)) => journeydb_query::parse::param_count(s)?,
        None => 0,
    };
    if let Some((s, _)) = &stmt {
        let inferred = engine.param_types(s, params);
        types.resize(params.max(types.len()), 0);
        for (t, i) in types.iter_mut().zip(inferred) {
            if *t == 0 {
                *t = i.map_or(0, |d| oid(d).0);
            }
        }
    }
    Ok(Prepared {
        stmt,
        types,
        params,
    })
}

/// The startup phase, within the authentication deadline: SSL / GSS requests are declined (or TLS
/// started), a CancelRequest is served, the protocol version is negotiated down to 3.0, and the
/// token is checked. `Ok(false)` when the connection ends here.
fn startup<'a>(
    r: &mut BufReader<Guarded<'a>>,
    out: &mut Out<Guarded<'a>>,
    server: &crate::Server,
) -> Result<Option<(String, crate::tenants::Principal)>, PgClosed> {
    let config = server.config();
    let mut user = String::new();
    // Startup, within the authentication deadline: SSL / GSS requests are declined, then the real
    // startup packet.
    loop {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        if !(8..=STARTUP_LEN_MAX as i32).contains(&len) {
            return Err(PgClosed);
        }
        let mut body = vec![0u8; len as usize - 4];
        r.read_exact(&mut body)?;
        let mut pos = 0;
        match be_i32(&body, &mut pos)? {
            SSL_REQUEST if config.tls.is_some() && !r.get_ref().tls_started() => {
                if !r.buffer().is_empty() {
                    // Bytes sent after SSLRequest, before our answer: not a TLS client.
                    return Err(PgClosed);
                }
                out.w.write_all(b"S")?;
                out.w.flush()?;
                if let Some(tls) = &config.tls {
                    r.get_ref().start_tls(tls.clone())?;
                }
            }
            SSL_REQUEST | GSS_REQUEST => {
                out.w.write_all(b"N")?;
                out.w.flush()?;
            }
            CANCEL_REQUEST => {
                // The connection to cancel is named by its key; the request gets no answer.
                let (pid, secret) = (be_i32(&body, &mut pos)?, be_i32(&body, &mut pos)?);
                server.cancel(pid, secret);
                return Ok(None);
            }
            v if v >> 16 == 3 => {
                // Protocol 3.x: journeydb speaks 3.0. A newer minor version, or protocol options
                // (`_pq_.*`), get a NegotiateProtocolVersion down to 3.0 instead of a refusal.
                let mut unknown = Vec::new();
                while let Ok(key) = cstr(&body, &mut pos) {
                    if key.is_empty() {
                        break;
                    }
                    let value = cstr(&body, &mut pos)?;
                    if key == "user" {
                        user = value;
                    }
                    if key.starts_with("_pq_.") {
                        unknown.push(key);
                    }
                }
                if v & 0xFFFF != 0 || !unknown.is_empty() {
                    let mut b = 0i32.to_be_bytes().to_vec();
                    b.extend_from_slice(&(unknown.len() as i32).to_be_bytes());
                    for k in &unknown {
                        b.extend_from_slice(k.as_bytes());
                        b.push(0);
                    }
                    out.msg(b'v', &b)?;
                }
                break;
            }
            other => {
                out.error("08P01", &format!("unsupported protocol {other:#x}"))?;
                out.w.flush()?;
                return Ok(None);
            }
        }
    }
    authenticate(r, out, server, user)
}

/// Checks the token of a client logging in as `user`: `None` when refused (the refusal sent).
fn authenticate<'a>(
    r: &mut BufReader<Guarded<'a>>,
    out: &mut Out<Guarded<'a>>,
    server: &crate::Server,
    user: String,
) -> Result<Option<(String, crate::tenants::Principal)>, PgClosed> {
    let config = server.config();
    // Who the user name says the client is, and the verifier it must prove; no token at all
    // on a server without tenants admits anyone.
    let (verifier, who) = match server.tenants() {
        Some(t) => t.verifier_for(&user),
        None => match config.token.as_deref() {
            None => return Ok(Some((user, crate::tenants::Principal::Default))),
            Some(_) => (
                server.token_verifier().cloned(),
                Some(crate::tenants::Principal::Default),
            ),
        },
    };
    let ok = match (config.pg_auth, &verifier) {
        (_, None) => false,
        (crate::PgAuth::Scram, Some(v)) => scram_auth(r, out, v)?,
        (crate::PgAuth::Password, Some(v)) => {
            out.msg(b'R', &3i32.to_be_bytes())?;
            out.w.flush()?;
            let (kind, body) = read_msg(r, STARTUP_LEN_MAX)?;
            let mut pos = 0;
            kind == b'p' && v.matches(&cstr(&body, &mut pos)?)
        }
    };
    match (ok, who) {
        (true, Some(who)) => Ok(Some((user, who))),
        _ => {
            let why = if server.tenants().is_some() {
                "password authentication failed (the user is a token's name, the password the token)"
            } else {
                "password authentication failed (the password is the server's token)"
            };
            out.error("28P01", why)?;
            out.w.flush()?;
            Ok(None)
        }
    }
}

/// AuthenticationOk, the ParameterStatus messages clients read, and BackendKeyData with the key a
/// CancelRequest must present to set `cancel`. The key is unregistered when dropped.
fn greet<'s>(
    out: &mut Out<Guarded<'_>>,
    server: &'s crate::Server,
    cancel: Arc<AtomicBool>,
) -> Result<crate::CancelKey<'s>, PgClosed> {
    out.msg(b'R', &0i32.to_be_bytes())?;
    for (k, v) in [
        ("server_version", journeydb_query::SERVER_VERSION),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "UTC"),
    ] {
        let mut b = Vec::new();
        b.extend_from_slice(k.as_bytes());
        b.push(0);
        b.extend_from_slice(v.as_bytes());
        b.push(0);
        out.msg(b'S', &b)?;
    }
    // BackendKeyData: the key a CancelRequest must present to cancel this connection's statement.
    let key = server.register_cancel(cancel);
    let mut k = key.pid.to_be_bytes().to_vec();
    k.extend_from_slice(&key.secret.to_be_bytes());
    out.msg(b'K', &k)?;
    Ok(key)
}

/// Refuses a connection over the limit, as PostgreSQL does (53300).
fn too_many_clients(out: &mut Out<Guarded<'_>>, limit: usize) -> Result<(), PgClosed> {
    out.error(
        "53300",
        &format!("sorry, too many clients already (limit {limit})"),
    )?;
    out.w.flush()?;
    Ok(())
}

/// True for a message that only ends a transaction (a simple `COMMIT`, or the Execute of a
/// portal holding one): it releases the session's LOCK TABLE locks, so it must not wait for a
/// slot that a request waiting on one of those locks holds.
fn runs_without_slot(kind: u8, body: &[u8], portals: &HashMap<String, Portal>) -> bool {
    match kind {
        b'Q' => crate::ends_transaction(&cstr(body, &mut 0).unwrap_or_default()),
        b'E' => cstr(body, &mut 0)
            .ok()
            .and_then(|name| portals.get(&name))
            .and_then(|p| p.stmt.as_ref())
            .is_some_and(|(s, _)| crate::ends_transaction(&s.to_string())),
        _ => false,
    }
}

/// Serves one PostgreSQL connection until it ends.
pub fn connection(
    stream: TcpStream,
    server: &crate::Server,
    pending: crate::conn::Pending<'_>,
) -> Result<(), PgClosed> {
    let config = server.config();
    let stop = server.stopping();
    let probe = stream.try_clone()?;
    let evicted = pending.evicted();
    let transport = crate::conn::Transport::shared(stream);
    let mut r = BufReader::new(Guarded::new(transport.clone(), stop, evicted.clone()));
    let mut out = Out {
        w: BufWriter::new(Guarded::new(transport, stop, evicted)),
        in_block: false,
    };
    let Some((user, who)) = startup(&mut r, &mut out, server)? else {
        return Ok(());
    };
    let Some(_active) = pending.admit(config.max_connections) else {
        return too_many_clients(&mut out, config.max_connections);
    };
    let engine = &server.session(&who, &user, &probe, "postgresql");
    let turns = server.turns(&who);
    let (len_max, idle, slots) = (config.frame_len_max, config.idle_timeout, &turns);
    let cancel = Arc::new(AtomicBool::new(false));
    let _key = greet(&mut out, server, cancel.clone())?;
    out.ready()?;

    let mut statements: HashMap<String, Prepared> = HashMap::new();
    let mut portals: HashMap<String, Portal> = HashMap::new();
    let mut failed = false;
    loop {
        if !crate::await_request(&r, &probe, stop, idle)? {
            return Ok(());
        }
        r.get_mut().set_deadline(config.io_timeout);
        let (kind, body) = read_msg(&mut r, len_max)?;
        out.w.get_mut().set_deadline(config.io_timeout);
        if failed && !matches!(kind, b'S' | b'X') {
            continue;
        }
        if kind == b'X' {
            return Ok(());
        }
        // A cancel that arrived between statements does not carry over to this one.
        cancel.store(false, Ordering::SeqCst);
        let free = runs_without_slot(kind, &body, &portals);
        let outcome = journeydb_query::cancel::with_flag(Some(cancel.clone()), || {
            crate::conn::isolate(|| {
                let _slot = (!free).then(|| slots.acquire());
                message(
                    &mut out,
                    engine,
                    kind,
                    &body,
                    &mut statements,
                    &mut portals,
                    &mut failed,
                )
            })
        });
        match outcome {
            Ok(Ok(Flow::Continue)) => {}
            Ok(Ok(Flow::Close)) => return Ok(()),
            Ok(Ok(Flow::CopyIn(target, rest))) => {
                let io = config.io_timeout;
                let done = journeydb_query::cancel::with_flag(Some(cancel.clone()), || {
                    crate::conn::isolate(|| {
                        copy_in(
                            &mut r,
                            &mut out,
                            engine,
                            Some(slots),
                            &target,
                            &rest,
                            &mut |r| r.get_mut().set_deadline(io),
                        )
                    })
                });
                match done {
                    Ok(Ok(())) => out.ready()?,
                    Ok(Err(PgClosed)) => return Err(PgClosed),
                    Err(m) => {
                        out.error("XX000", &m)?;
                        out.ready()?;
                    }
                }
            }
            Ok(Err(PgClosed)) => return Err(PgClosed),
            Err(m) => {
                out.error("XX000", &m)?;
                // Like any error in an extended-protocol exchange: skip to the next Sync.
                failed = kind != b'Q';
                if kind == b'Q' {
                    out.ready()?;
                }
            }
        }
    }
}

/// What the connection does after a message.
enum Flow {
    Continue,
    Close,
    /// A `COPY .. FROM STDIN` of a simple query awaits its data; the statements after it in the
    /// same query run once it is loaded.
    CopyIn(journeydb_query::copy::CopyIn, Vec<ParsedStatement>),
}

/// Bytes one COPY may send.
pub const COPY_BYTES_MAX: usize = 1 << 30;
/// Bytes of one CopyData message (psql sends a line or a few KiB per message).
const COPY_MESSAGE_MAX: usize = 16 << 20;

/// The COPY sub-protocol: CopyInResponse, then CopyData until CopyDone (or CopyFail), then the
/// load (one append: all rows or none) and the rest of the query; ReadyForQuery is the caller's.
/// `before_read` renews the read deadline before each message.
fn copy_in<R: Read, W: Write>(
    r: &mut R,
    out: &mut Out<W>,
    engine: &Engine,
    slots: Option<&crate::Turns<'_>>,
    target: &journeydb_query::copy::CopyIn,
    rest: &[ParsedStatement],
    before_read: &mut dyn FnMut(&mut R),
) -> Result<(), PgClosed> {
    let mut b = vec![0u8];
    b.extend_from_slice(&(target.columns.len() as i16).to_be_bytes());
    for _ in &target.columns {
        b.extend_from_slice(&0i16.to_be_bytes());
    }
    out.msg(b'G', &b)?;
    out.w.flush()?;
    let mut data = Vec::new();
    let mut failure: Option<String> = None;
    loop {
        before_read(r);
        let (kind, body) = read_msg(r, COPY_MESSAGE_MAX)?;
        match kind {
            b'd' => {
                if data.len() + body.len() > COPY_BYTES_MAX {
                    failure
                        .get_or_insert(format!("COPY input over {COPY_BYTES_MAX} bytes; split it"));
                } else if failure.is_none() {
                    data.extend_from_slice(&body);
                }
            }
            b'c' => break,
            b'f' => {
                let mut pos = 0;
                let why = cstr(&body, &mut pos).unwrap_or_default();
                failure = Some(format!("COPY from stdin failed: {why}"));
                break;
            }
            // Flush and Sync may arrive during COPY and are ignored.
            b'H' | b'S' => {}
            other => {
                out.error(
                    "08P01",
                    &format!("unexpected message {:?} during COPY", other as char),
                )?;
                return Err(PgClosed);
            }
        }
    }
    if let Some(m) = failure {
        return out.error("57014", &m);
    }
    let _slot = slots.map(crate::Turns::acquire);
    match engine.copy_in(target, &data) {
        Ok(n) => out.msg(b'C', format!("COPY {n}\0").as_bytes())?,
        Err(e) => return out.error(sqlstate(&e), &e.to_string()),
    }
    for s in rest {
        if !execute(out, engine, s, &[], true)? {
            break;
        }
    }
    Ok(())
}

/// Answers one frontend message.
// long: one arm per PostgreSQL frontend message of the extended protocol.
fn message<W: Write>(
    out: &mut Out<W>,
    engine: &Engine,
    kind: u8,
    body: &[u8],
    statements: &mut HashMap<String, Prepared>,
    portals: &mut HashMap<String, Portal>,
    failed: &mut bool,
) -> Result<Flow, PgClosed> {
    let mut pos = 0;
    {
        match kind {
            b'Q' => {
                let sql = cstr(body, &mut pos)?;
                if let Some((target, rest)) = simple_query(out, engine, &sql)? {
                    return Ok(Flow::CopyIn(target, rest));
                }
                out.ready()?;
            }
            b'P' => {
                let name = cstr(body, &mut pos)?;
                let sql = cstr(body, &mut pos)?;
                let n = be_i16(body, &mut pos)?.max(0) as usize;
                // Counts come from the wire: check them against the bytes present before allocating.
                if body.len().saturating_sub(pos) < n * 4 {
                    return Err(PgClosed);
                }
                let types = (0..n)
                    .map(|_| be_i32(body, &mut pos))
                    .collect::<Result<Vec<_>, _>>()?;
                if !name.is_empty()
                    && !statements.contains_key(&name)
                    && statements.len() >= PREPARED_MAX
                {
                    out.error("53400", &format!("too many prepared statements on this connection (limit {PREPARED_MAX}); close some"))?;
                    *failed = true;
                    return Ok(Flow::Continue);
                }
                match prepare(engine, &sql, types) {
                    Ok(p) => {
                        statements.insert(name, p);
                        out.msg(b'1', &[])?;
                    }
                    Err(e) => {
                        out.error(sqlstate(&e), &e.to_string())?;
                        *failed = true;
                    }
                }
            }
            b'B' => {
                let portal = cstr(body, &mut pos)?;
                let stmt = cstr(body, &mut pos)?;
                let nf = be_i16(body, &mut pos)?.max(0) as usize;
                if body.len().saturating_sub(pos) < nf * 2 {
                    return Err(PgClosed);
                }
                let pformats = (0..nf)
                    .map(|_| be_i16(body, &mut pos))
                    .collect::<Result<Vec<_>, _>>()?;
                let np = be_i16(body, &mut pos)?.max(0) as usize;
                if body.len().saturating_sub(pos) < np * 4 {
                    return Err(PgClosed);
                }
                let mut values = Vec::with_capacity(np);
                for _ in 0..np {
                    let len = be_i32(body, &mut pos)?;
                    if len < 0 {
                        values.push(None);
                    } else {
                        let end = pos.checked_add(len as usize).ok_or(PgClosed)?;
                        values.push(Some(body.get(pos..end).ok_or(PgClosed)?));
                        pos = end;
                    }
                }
                let nr = be_i16(body, &mut pos)?.max(0) as usize;
                if body.len().saturating_sub(pos) < nr * 2 {
                    return Err(PgClosed);
                }
                let formats = (0..nr)
                    .map(|_| be_i16(body, &mut pos))
                    .collect::<Result<Vec<_>, _>>()?;
                let Some(prepared) = statements.get(&stmt) else {
                    out.error(
                        "26000",
                        &format!("prepared statement {stmt:?} does not exist"),
                    )?;
                    *failed = true;
                    return Ok(Flow::Continue);
                };
                if values.len() != prepared.params {
                    out.error(
                        "08P01",
                        &format!(
                            "bind message supplies {} parameters, but the prepared statement requires {}",
                            values.len(),
                            prepared.params
                        ),
                    )?;
                    *failed = true;
                    return Ok(Flow::Continue);
                }
                if !portal.is_empty()
                    && !portals.contains_key(&portal)
                    && portals.len() >= PORTALS_MAX
                {
                    out.error("53400", &format!("too many open portals on this connection (limit {PORTALS_MAX}); close some"))?;
                    *failed = true;
                    return Ok(Flow::Continue);
                }
                let params: Result<Vec<Scalar>, String> = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        param_value(
                            v.as_deref(),
                            prepared.types.get(i).copied().unwrap_or(0),
                            format_of(&pformats, i) == 1,
                        )
                    })
                    .collect();
                let bound = params.and_then(|params| {
                    let mut stmt = prepared.stmt.clone();
                    if let Some((s, _)) = &mut stmt {
                        journeydb_query::parse::bind_params(s, &params)
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(stmt)
                });
                match bound {
                    Ok(stmt) => {
                        portals.insert(
                            portal,
                            Portal {
                                stmt,
                                formats,
                                cursor: None,
                            },
                        );
                        out.msg(b'2', &[])?;
                    }
                    Err(e) => {
                        out.error("22023", &e)?;
                        *failed = true;
                    }
                }
            }
            b'D' => {
                let what = body.first().copied().ok_or(PgClosed)?;
                pos = 1;
                let name = cstr(body, &mut pos)?;
                let described = if what == b'S' {
                    match statements.get(&name) {
                        Some(p) => {
                            // Unknown parameter types are reported as text.
                            let mut b = (p.params as i16).to_be_bytes().to_vec();
                            for i in 0..p.params {
                                let t = p.types.get(i).copied().filter(|t| *t != 0).unwrap_or(25);
                                b.extend_from_slice(&t.to_be_bytes());
                            }
                            out.msg(b't', &b)?;
                            p.stmt.as_ref().map(|s| (s, Vec::new()))
                        }
                        None => {
                            out.error(
                                "26000",
                                &format!("prepared statement {name:?} does not exist"),
                            )?;
                            *failed = true;
                            return Ok(Flow::Continue);
                        }
                    }
                } else {
                    match portals.get(&name) {
                        Some(p) => p.stmt.as_ref().map(|s| (s, p.formats.clone())),
                        None => {
                            out.error("34000", &format!("portal {name:?} does not exist"))?;
                            *failed = true;
                            return Ok(Flow::Continue);
                        }
                    }
                };
                match described.map(|((s, x), f)| (engine.describe_statement(s, x), f)) {
                    None | Some((Ok(None), _)) => out.msg(b'n', &[])?,
                    Some((Ok(Some(cols)), formats)) => out.row_description(&cols, &formats)?,
                    Some((Err(e), _)) => {
                        out.error(sqlstate(&e), &e.to_string())?;
                        *failed = true;
                    }
                }
            }
            b'E' => {
                let name = cstr(body, &mut pos)?;
                // Rows to return at most; 0 means all.
                let max_rows = be_i32(body, &mut pos).unwrap_or(0);
                let Some(p) = portals.get_mut(&name) else {
                    out.error("34000", &format!("portal {name:?} does not exist"))?;
                    *failed = true;
                    return Ok(Flow::Continue);
                };
                let paged = max_rows > 0 || p.cursor.is_some();
                match &p.stmt {
                    None => out.msg(b'I', &[])?,
                    Some(stmt) if paged && statement_kind(&stmt.0) == StatementKind::Query => {
                        if !execute_paged(out, engine, p, max_rows)? {
                            *failed = true;
                        }
                    }
                    Some(stmt) => {
                        if !execute(out, engine, stmt, &p.formats, false)? {
                            *failed = true;
                        }
                    }
                }
            }
            b'S' => {
                *failed = false;
                // The unnamed portal ends with the implicit transaction.
                portals.remove("");
                out.ready()?;
            }
            b'C' => {
                let what = body.first().copied().ok_or(PgClosed)?;
                pos = 1;
                let name = cstr(body, &mut pos)?;
                if what == b'S' {
                    statements.remove(&name);
                } else {
                    portals.remove(&name);
                }
                out.msg(b'3', &[])?;
            }
            b'H' => out.w.flush()?,
            b'X' => return Ok(Flow::Close),
            other => {
                out.error("08P01", &format!("unsupported message {:?}", other as char))?;
                out.w.flush()?;
                return Ok(Flow::Close);
            }
        }
    }
    Ok(Flow::Continue)
}

/// Runs one parsed statement; `describe` sends its RowDescription first (simple protocol). Returns
/// false on an error (already reported).
fn execute<W: Write>(
    out: &mut Out<W>,
    engine: &Engine,
    (stmt, rules): &ParsedStatement,
    formats: &[i16],
    describe: bool,
) -> Result<bool, PgClosed> {
    if statement_kind(stmt) == StatementKind::Query {
        let stream = match engine.stream_statement(stmt) {
            Ok(s) => s,
            Err(e) => {
                out.error(sqlstate(&e), &e.to_string())?;
                return Ok(false);
            }
        };
        let mut n = 0;
        let mut described = !describe;
        let schema = stream.schema();
        for b in stream {
            match b {
                Ok(b) => {
                    if !described {
                        out.row_description(&columns(&b.schema()), formats)?;
                        described = true;
                    }
                    n += out.rows(&b, formats)?;
                }
                Err(e) => {
                    out.error(sqlstate(&e), &e.to_string())?;
                    return Ok(false);
                }
            }
        }
        if !described {
            out.row_description(&columns(&schema), formats)?;
        }
        out.msg(b'C', format!("SELECT {n}\0").as_bytes())?;
        return Ok(true);
    }
    match engine.execute_statement(stmt, rules) {
        Ok(Output::Rows(b)) => {
            if describe {
                out.row_description(&columns(&b.schema()), formats)?;
            }
            let n = out.rows(&b, formats)?;
            out.msg(b'C', format!("SELECT {n}\0").as_bytes())?;
            Ok(true)
        }
        Ok(Output::Done { tag, rows }) => {
            match tag.as_str() {
                "BEGIN" => out.in_block = true,
                "COMMIT" | "ROLLBACK" => out.in_block = false,
                _ => {}
            }
            if tag.starts_with("ROLLBACK") {
                out.notice(
                    "25P01",
                    "journeydb has no multi-statement transactions: every statement was committed when it ran, so ROLLBACK undid nothing",
                )?;
            }
            let tag = match tag.as_str() {
                "INSERT" => format!("INSERT 0 {rows}"),
                "ROLLBACK TO SAVEPOINT" => "ROLLBACK".to_string(),
                _ => tag,
            };
            out.msg(b'C', format!("{tag}\0").as_bytes())?;
            Ok(true)
        }
        Err(e) => {
            out.error(sqlstate(&e), &e.to_string())?;
            Ok(false)
        }
    }
}

/// Sends at most `max_rows` rows of a query portal (all when 0), keeping the rest for the next
/// Execute: PortalSuspended when rows remain, CommandComplete when none do. Returns false on an
/// error (already reported; the portal's cursor is dropped).
fn execute_paged<W: Write>(
    out: &mut Out<W>,
    engine: &Engine,
    portal: &mut Portal,
    max_rows: i32,
) -> Result<bool, PgClosed> {
    let mut cursor = match portal.cursor.take() {
        Some(c) => c,
        None => {
            let Some((stmt, _)) = &portal.stmt else {
                return Ok(true);
            };
            match engine.stream_statement(stmt) {
                Ok(stream) => Cursor {
                    stream,
                    batch: None,
                    sent: 0,
                },
                Err(e) => {
                    out.error(sqlstate(&e), &e.to_string())?;
                    return Ok(false);
                }
            }
        }
    };
    let mut left = if max_rows > 0 {
        max_rows as usize
    } else {
        usize::MAX
    };
    loop {
        // The next rows: the rest of the current batch, else the next batch of the stream.
        let (batch, at) = match cursor.batch.take() {
            Some((b, at)) if at < b.num_rows() => (b, at),
            _ => match cursor.stream.next() {
                Some(Ok(b)) => (b, 0),
                Some(Err(e)) => {
                    out.error(sqlstate(&e), &e.to_string())?;
                    return Ok(false);
                }
                None => {
                    out.msg(b'C', format!("SELECT {}\0", cursor.sent).as_bytes())?;
                    return Ok(true);
                }
            },
        };
        if left == 0 {
            cursor.batch = Some((batch, at));
            portal.cursor = Some(cursor);
            out.msg(b's', &[])?;
            return Ok(true);
        }
        let n = (batch.num_rows() - at).min(left);
        cursor.sent += out.rows(&batch.slice(at, n), &portal.formats)?;
        left -= n;
        cursor.batch = Some((batch, at + n));
    }
}

fn columns(schema: &arrow_schema::Schema) -> Vec<(String, DType)> {
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), dtype_of(f.data_type())))
        .collect()
}

/// Runs the statements of a simple query; stops at a `COPY .. FROM STDIN`, returning it and the
/// statements after it.
#[allow(clippy::type_complexity)]
fn simple_query<W: Write>(
    out: &mut Out<W>,
    engine: &Engine,
    sql: &str,
) -> Result<Option<(journeydb_query::copy::CopyIn, Vec<ParsedStatement>)>, PgClosed> {
    let mut stmts = match Engine::parse(sql) {
        Ok(s) => s,
        Err(e) => {
            out.error(sqlstate(&e), &e.to_string())?;
            return Ok(None);
        }
    };
    if stmts.is_empty() {
        out.msg(b'I', &[])?;
        return Ok(None);
    }
    for i in 0..stmts.len() {
        let Some(s) = stmts.get(i) else { break };
        match engine.copy_in_target(&s.0) {
            Ok(Some(target)) => return Ok(Some((target, stmts.split_off(i + 1)))),
            Ok(None) => {}
            Err(e) => {
                out.error(sqlstate(&e), &e.to_string())?;
                return Ok(None);
            }
        }
        if !execute(out, engine, s, &[], true)? {
            break;
        }
    }
    Ok(None)
}

/// Drives the message loop of one authenticated session with `bytes` as the client's messages
/// (kind, length, body, as on the wire), answering into a sink: the fuzz target of the
/// PostgreSQL session. Returns when the bytes end or the session would close.
#[doc(hidden)]
pub fn fuzz_session(engine: &Engine, bytes: &[u8]) {
    let mut out = Out {
        w: BufWriter::new(std::io::sink()),
        in_block: false,
    };
    let mut r = bytes;
    let mut statements: HashMap<String, Prepared> = HashMap::new();
    let mut portals: HashMap<String, Portal> = HashMap::new();
    let mut failed = false;
    while let Ok((kind, body)) = read_msg(&mut r, 1 << 20) {
        if failed && !matches!(kind, b'S' | b'X') {
            continue;
        }
        match message(
            &mut out,
            engine,
            kind,
            &body,
            &mut statements,
            &mut portals,
            &mut failed,
        ) {
            Ok(Flow::Continue) => {}
            Ok(Flow::CopyIn(target, rest)) => {
                if copy_in(&mut r, &mut out, engine, None, &target, &rest, &mut |_| {}).is_err() {
                    return;
                }
            }
            Ok(Flow::Close) | Err(PgClosed) => return,
        }
    }
}
