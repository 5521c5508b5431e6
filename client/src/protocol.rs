//! Frames of the native protocol and their codec. Byte layout: `client/PROTOCOL.md`.

use std::io::{Read, Write};

use arrow_array::RecordBatch;

use crate::ClientError;

/// Protocol version spoken by this build.
pub const PROTOCOL_VERSION: u16 = 1;
/// Magic at the start of a Hello frame.
pub const HELLO_MAGIC: [u8; 4] = *b"JRNY";
/// Default limit on a frame's length (kind + payload), both directions.
pub const FRAME_LEN_MAX_DEFAULT: usize = 64 << 20;

/// Error classes carried by Error frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame or sequence broke the protocol; the server closes the connection.
    Protocol,
    /// Wrong or missing token, or unsupported version; the server closes the connection.
    Auth,
    /// The request is wrong (syntax, unsupported construct, unknown table or column, bad value).
    User,
    /// The storage engine failed.
    Storage,
    /// A limit was reached (frame size, connections).
    Limit,
    /// A bug.
    Internal,
}

impl ErrorCode {
    /// The code on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::Protocol => 1,
            ErrorCode::Auth => 2,
            ErrorCode::User => 3,
            ErrorCode::Storage => 4,
            ErrorCode::Limit => 5,
            ErrorCode::Internal => 6,
        }
    }

    /// The code from the wire (unknown codes read as Internal).
    pub fn from_u16(v: u16) -> ErrorCode {
        match v {
            1 => ErrorCode::Protocol,
            2 => ErrorCode::Auth,
            3 => ErrorCode::User,
            4 => ErrorCode::Storage,
            5 => ErrorCode::Limit,
            _ => ErrorCode::Internal,
        }
    }
}

/// One protocol frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Client: opens the session.
    Hello {
        /// Protocol version.
        version: u16,
        /// Access token (empty when none).
        token: String,
    },
    /// Client: run one SQL statement.
    Query {
        /// The statement.
        sql: String,
    },
    /// Client: append rows (Arrow IPC stream) to a table.
    Append {
        /// Table name.
        table: String,
        /// Arrow IPC stream bytes.
        ipc: Vec<u8>,
    },
    /// Client: swap two tables.
    Swap {
        /// One table.
        a: String,
        /// The other.
        b: String,
    },
    /// Client: one step of a bulk load: `Data` rows (Arrow IPC stream) are held by the server, and
    /// `Commit` publishes every row of the load in one commit (`Abort`, or a closed connection,
    /// discards them).
    Load {
        /// Table name.
        table: String,
        /// What this frame does.
        step: LoadStep,
        /// Arrow IPC stream bytes (`Data`); empty otherwise.
        ipc: Vec<u8>,
    },
    /// Client: liveness check.
    Ping,
    /// Client: end of session.
    Close,
    /// Server: handshake accepted.
    HelloOk {
        /// Protocol version.
        version: u16,
        /// Server description.
        server: String,
        /// The largest frame the server accepts; clients split appends to fit.
        frame_len_max: u32,
    },
    /// Server: some result rows (Arrow IPC stream bytes).
    Rows {
        /// Arrow IPC stream bytes.
        ipc: Vec<u8>,
    },
    /// Server: a statement finished.
    Done {
        /// Command tag.
        tag: String,
        /// Rows returned or written.
        rows: u64,
    },
    /// Server: reply to Ping.
    Pong,
    /// Server: the request failed.
    Error {
        /// Error class.
        code: ErrorCode,
        /// What was wrong.
        message: String,
    },
}

impl Frame {
    fn kind(&self) -> u8 {
        match self {
            Frame::Hello { .. } => 0x01,
            Frame::Query { .. } => 0x02,
            Frame::Append { .. } => 0x03,
            Frame::Swap { .. } => 0x04,
            Frame::Ping => 0x05,
            Frame::Close => 0x06,
            Frame::Load { .. } => 0x07,
            Frame::HelloOk { .. } => 0x80,
            Frame::Rows { .. } => 0x81,
            Frame::Done { .. } => 0x82,
            Frame::Pong => 0x84,
            Frame::Error { .. } => 0x8F,
        }
    }

    /// A short name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "Hello",
            Frame::Query { .. } => "Query",
            Frame::Append { .. } => "Append",
            Frame::Swap { .. } => "Swap",
            Frame::Ping => "Ping",
            Frame::Close => "Close",
            Frame::Load { .. } => "Load",
            Frame::HelloOk { .. } => "HelloOk",
            Frame::Rows { .. } => "Rows",
            Frame::Done { .. } => "Done",
            Frame::Pong => "Pong",
            Frame::Error { .. } => "Error",
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes a frame: `len u32 LE` (of kind + payload), `kind u8`, payload.
pub fn encode_frame(f: &Frame) -> Vec<u8> {
    let mut p = Vec::new();
    match f {
        Frame::Hello { version, token } => {
            p.extend_from_slice(&HELLO_MAGIC);
            p.extend_from_slice(&version.to_le_bytes());
            put_str(&mut p, token);
        }
        Frame::Query { sql } => put_str(&mut p, sql),
        Frame::Append { table, ipc } => {
            put_str(&mut p, table);
            p.extend_from_slice(ipc);
        }
        Frame::Swap { a, b } => {
            put_str(&mut p, a);
            put_str(&mut p, b);
        }
        Frame::Load { table, step, ipc } => {
            put_str(&mut p, table);
            p.push(*step as u8);
            p.extend_from_slice(ipc);
        }
        Frame::Ping | Frame::Close | Frame::Pong => {}
        Frame::HelloOk {
            version,
            server,
            frame_len_max,
        } => {
            p.extend_from_slice(&version.to_le_bytes());
            put_str(&mut p, server);
            p.extend_from_slice(&frame_len_max.to_le_bytes());
        }
        Frame::Rows { ipc } => p.extend_from_slice(ipc),
        Frame::Done { tag, rows } => {
            put_str(&mut p, tag);
            p.extend_from_slice(&rows.to_le_bytes());
        }
        Frame::Error { code, message } => {
            p.extend_from_slice(&code.to_u16().to_le_bytes());
            put_str(&mut p, message);
        }
    }
    let mut out = Vec::with_capacity(p.len() + 5);
    out.extend_from_slice(&((p.len() + 1) as u32).to_le_bytes());
    out.push(f.kind());
    out.extend_from_slice(&p);
    out
}

/// What a [`Frame::Load`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadStep {
    /// Rows to hold.
    Data = 0,
    /// Publish the load.
    Commit = 1,
    /// Discard the load.
    Abort = 2,
    /// Add a column (payload: `name TAB type TAB rule` in UTF-8), committed with the load.
    AddColumn = 3,
}

/// Writes one frame (not flushed). An Append's Arrow bytes are written as they are, not copied.
pub fn write_frame(w: &mut impl Write, f: &Frame) -> Result<(), ClientError> {
    if let Frame::Append { table, ipc } = f {
        let len = 1 + 4 + table.len() + ipc.len();
        let len = u32::try_from(len)
            .map_err(|_| ClientError::Protocol(format!("a frame of {len} bytes is too long")))?;
        let mut head = Vec::with_capacity(9 + table.len());
        head.extend_from_slice(&len.to_le_bytes());
        head.push(f.kind());
        put_str(&mut head, table);
        w.write_all(&head)?;
        w.write_all(ipc)?;
        return Ok(());
    }
    w.write_all(&encode_frame(f))?;
    Ok(())
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ClientError> {
        if n > self.b.len() {
            return Err(ClientError::Protocol(format!(
                "frame too short: need {n} bytes, {} left",
                self.b.len()
            )));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u16(&mut self) -> Result<u16, ClientError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }
    fn u32(&mut self) -> Result<u32, ClientError> {
        let b: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| ClientError::Protocol("short u32".into()))?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, ClientError> {
        let b: [u8; 8] = self
            .take(8)?
            .try_into()
            .map_err(|_| ClientError::Protocol("short u64".into()))?;
        Ok(u64::from_le_bytes(b))
    }
    fn string(&mut self) -> Result<String, ClientError> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| ClientError::Protocol("string is not UTF-8".into()))
    }
    fn rest(&mut self) -> Vec<u8> {
        let r = self.b.to_vec();
        self.b = &[];
        r
    }
    fn end(&self) -> Result<(), ClientError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(ClientError::Protocol(format!(
                "{} trailing bytes in a frame",
                self.b.len()
            )))
        }
    }
}

/// Decodes a frame's kind and payload.
pub fn decode_frame(kind: u8, payload: &[u8]) -> Result<Frame, ClientError> {
    let mut c = Cursor { b: payload };
    let f = match kind {
        0x01 => {
            if c.take(4)? != HELLO_MAGIC {
                return Err(ClientError::Protocol(
                    "bad Hello magic: not a journeydb client".into(),
                ));
            }
            Frame::Hello {
                version: c.u16()?,
                token: c.string()?,
            }
        }
        0x02 => Frame::Query { sql: c.string()? },
        0x03 => Frame::Append {
            table: c.string()?,
            ipc: c.rest(),
        },
        0x04 => Frame::Swap {
            a: c.string()?,
            b: c.string()?,
        },
        0x05 => Frame::Ping,
        0x06 => Frame::Close,
        0x07 => Frame::Load {
            table: c.string()?,
            step: match c.take(1)? {
                [0] => LoadStep::Data,
                [1] => LoadStep::Commit,
                [2] => LoadStep::Abort,
                [3] => LoadStep::AddColumn,
                other => return Err(ClientError::Protocol(format!("bad Load step {other:?}"))),
            },
            ipc: c.rest(),
        },
        0x80 => Frame::HelloOk {
            version: c.u16()?,
            server: c.string()?,
            frame_len_max: c.u32()?,
        },
        0x81 => Frame::Rows { ipc: c.rest() },
        0x82 => Frame::Done {
            tag: c.string()?,
            rows: c.u64()?,
        },
        0x84 => Frame::Pong,
        0x8F => Frame::Error {
            code: ErrorCode::from_u16(c.u16()?),
            message: c.string()?,
        },
        k => {
            return Err(ClientError::Protocol(format!(
                "unknown frame kind {k:#04x}"
            )))
        }
    };
    c.end()?;
    Ok(f)
}

/// Reads one frame, refusing lengths over `len_max` before allocating.
pub fn read_frame(r: &mut impl Read, len_max: usize) -> Result<Frame, ClientError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 {
        return Err(ClientError::Protocol("empty frame".into()));
    }
    if len > len_max {
        return Err(ClientError::Protocol(format!(
            "frame of {len} bytes exceeds the {len_max}-byte limit"
        )));
    }
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind)?;
    let rest = len - 1;
    // Frames ending in Arrow bytes read those bytes into a vector of their own, which becomes the
    // arrays' buffer: no copy of a large append or result after it is read.
    match kind {
        [0x03] => {
            let table = read_string(r, rest)?;
            let ipc = read_vec(r, rest - 4 - table.len())?;
            Ok(Frame::Append { table, ipc })
        }
        [0x81] => Ok(Frame::Rows {
            ipc: read_vec(r, rest)?,
        }),
        [k] => decode_frame(k, &read_vec(r, rest)?),
    }
}

/// Reads `n` bytes.
fn read_vec(r: &mut impl Read, n: usize) -> Result<Vec<u8>, ClientError> {
    // A zeroed allocation of this size comes from fresh pages (no memset) on the platforms we run.
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// Reads a length-prefixed UTF-8 string at the start of a payload of `rest` bytes.
fn read_string(r: &mut impl Read, rest: usize) -> Result<String, ClientError> {
    let mut n = [0u8; 4];
    if rest < n.len() {
        return Err(ClientError::Protocol(format!(
            "frame too short: need 4 bytes, {rest} left"
        )));
    }
    r.read_exact(&mut n)?;
    let n = u32::from_le_bytes(n) as usize;
    if n > rest - 4 {
        return Err(ClientError::Protocol(format!(
            "frame too short: need {n} bytes, {} left",
            rest - 4
        )));
    }
    String::from_utf8(read_vec(r, n)?)
        .map_err(|_| ClientError::Protocol("string is not UTF-8".into()))
}

/// Arrow IPC stream bytes of `batches` (all of one schema).
pub fn encode_ipc(batches: &[RecordBatch]) -> Result<Vec<u8>, ClientError> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    // The bytes of the arrays (as sliced) plus room for the messages: no regrowth (a 100,000-row
    // batch of the bench's state is 26 MB, and growing to it copied the bytes five times over).
    let data: usize = batches
        .iter()
        .flat_map(|b| b.columns())
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
        .sum();
    // Each buffer is padded to 64 bytes; a batch's message and the schema take a few hundred.
    let framing: usize = batches.iter().map(|b| 1024 + 256 * b.num_columns()).sum();
    let mut out = Vec::with_capacity(data + framing + 4096);
    {
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &first.schema())?;
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    Ok(out)
}

/// Batches of Arrow IPC stream bytes (empty bytes: none). The arrays share `bytes`' allocation.
pub fn decode_ipc(bytes: Vec<u8>) -> Result<Vec<RecordBatch>, ClientError> {
    let mut buffer = arrow_buffer::Buffer::from_vec(bytes);
    let mut decoder = arrow_ipc::reader::StreamDecoder::new();
    let mut out = Vec::new();
    while !buffer.is_empty() {
        if let Some(b) = decoder.decode(&mut buffer)? {
            out.push(b);
        }
    }
    decoder.finish()?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_truncations_are_errors() {
        let frames = vec![
            Frame::Hello {
                version: 1,
                token: "s3cret".into(),
            },
            Frame::Query {
                sql: "SELECT 1".into(),
            },
            Frame::Append {
                table: "t".into(),
                ipc: vec![1, 2, 3],
            },
            Frame::Swap {
                a: "a".into(),
                b: "b".into(),
            },
            Frame::Ping,
            Frame::Close,
            Frame::HelloOk {
                version: 1,
                server: "journeydb".into(),
                frame_len_max: 1 << 20,
            },
            Frame::Rows { ipc: vec![9; 10] },
            Frame::Done {
                tag: "INSERT".into(),
                rows: 7,
            },
            Frame::Pong,
            Frame::Error {
                code: ErrorCode::User,
                message: "no".into(),
            },
        ];
        for f in frames {
            let bytes = encode_frame(&f);
            let back = read_frame(&mut bytes.as_slice(), 1 << 20).unwrap();
            assert_eq!(back, f);
            for cut in 0..bytes.len() {
                let r = read_frame(&mut &bytes[..cut], 1 << 20);
                // A cut inside the length or the body is an error; only whole frames decode.
                assert!(r.is_err(), "{f:?} cut at {cut}");
            }
        }
        // An Append whose table name runs past the frame's end (read apart from its Arrow bytes).
        for (name_len, frame_len) in [(9u32, 1u32 + 4 + 3), (0, 1 + 2)] {
            let mut b = frame_len.to_le_bytes().to_vec();
            b.push(0x03);
            b.extend_from_slice(&name_len.to_le_bytes());
            b.extend_from_slice(b"abcdefghijkl");
            assert!(
                matches!(read_frame(&mut b.as_slice(), 1 << 20), Err(ClientError::Protocol(m)) if m.contains("too short")),
                "name of {name_len} in a frame of {frame_len}"
            );
        }
        let mut huge = (u32::MAX).to_le_bytes().to_vec();
        huge.push(2);
        assert!(
            matches!(read_frame(&mut huge.as_slice(), 1 << 20), Err(ClientError::Protocol(m)) if m.contains("exceeds"))
        );
        assert!(read_frame(&mut [1u8, 0, 0, 0, 0x77].as_slice(), 1 << 20).is_err());
    }
}
