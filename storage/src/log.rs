//! Checksummed record logs: the framing shared by the write-ahead log and the key dictionary.
//!
//! A log file is a 16-byte header followed by records `[payload_len u32][crc32(payload) u32][payload]`.
//! Writes are positioned (`write_all_at` the end of the last good record), so a failed or torn write is
//! simply overwritten by the next one. On read, a bad record at the end of the file is a torn tail
//! (the write that was in flight at a crash) and ends the log; a bad record followed by more non-zero
//! bytes is corruption and an error: acknowledged data after it must not be dropped silently.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::format::{crc32, ByteWriter, FILE_HEADER_LEN, RECORD_HEADER_LEN, RECORD_LEN_MAX};

/// Frames `payload` as one record.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut w = ByteWriter::new();
    w.u32(payload.len() as u32);
    w.u32(crc32(payload));
    w.bytes(payload);
    w.buf
}

/// The good records of a log file's bytes (after its header), and where the good part ends.
pub struct Records<'a> {
    /// Payloads of the good records, in order.
    pub payloads: Vec<(u64, &'a [u8])>,
    /// File offset just past the last good record.
    pub end: u64,
    /// True when a torn tail was found after `end`.
    pub torn_tail: bool,
}

/// Splits `bytes` (a whole log file) into records; see the module doc for torn tails vs corruption.
pub fn read_records<'a>(path: &Path, bytes: &'a [u8]) -> Result<Records<'a>> {
    let mut pos = FILE_HEADER_LEN;
    let mut payloads = Vec::new();
    loop {
        let rest = bytes.get(pos..).unwrap_or(&[]);
        if rest.is_empty() {
            return Ok(Records {
                payloads,
                end: pos as u64,
                torn_tail: false,
            });
        }
        match record_at(rest) {
            Some(payload) => {
                payloads.push(((pos + RECORD_HEADER_LEN) as u64, payload));
                pos += RECORD_HEADER_LEN + payload.len();
            }
            None => {
                let declared_end = le_u32(rest, 0).map(|l| l as usize + RECORD_HEADER_LEN);
                let reaches_eof = declared_end.is_none_or(|e| e >= rest.len());
                let zeros = rest.iter().all(|b| *b == 0);
                if reaches_eof || zeros {
                    return Ok(Records {
                        payloads,
                        end: pos as u64,
                        torn_tail: true,
                    });
                }
                return Err(StorageError::corrupt(
                    path,
                    pos as u64,
                    "bad record checksum before the end of the log",
                ));
            }
        }
    }
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

fn record_at(rest: &[u8]) -> Option<&[u8]> {
    let len = le_u32(rest, 0)? as usize;
    let crc = le_u32(rest, 4)?;
    if len > RECORD_LEN_MAX || (len == 0 && crc == 0) {
        return None;
    }
    let payload = rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len)?;
    (crc32(payload) == crc).then_some(payload)
}

/// An open log file being appended to.
#[derive(Debug)]
pub struct LogFile {
    /// The file, shared so a group-commit leader can fsync it without holding the writer lock.
    pub file: std::sync::Arc<File>,
    /// Its path.
    pub path: PathBuf,
    /// Offset where the next record goes.
    pub end: u64,
}

impl LogFile {
    /// Appends one record; on error nothing counts as written and the next append overwrites it.
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        if payload.len() > RECORD_LEN_MAX {
            return Err(StorageError::InvalidOption(format!(
                "record of {} bytes exceeds the {RECORD_LEN_MAX}-byte limit; append smaller batches",
                payload.len()
            )));
        }
        let rec = frame(payload);
        self.file
            .write_all_at(&rec, self.end)
            .map_err(|e| StorageError::io(&self.path, e))?;
        self.end += rec.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn log_of(records: &[&[u8]]) -> Vec<u8> {
        let mut b = vec![0u8; FILE_HEADER_LEN];
        for r in records {
            b.extend(frame(r));
        }
        b
    }

    #[test]
    fn torn_tail_ends_the_log() {
        let full = log_of(&[b"one", b"two", b"three"]);
        for cut in FILE_HEADER_LEN..full.len() {
            let r = read_records(Path::new("l"), &full[..cut]);
            let r = r.ok();
            assert!(r.is_some(), "cut at {cut} is a torn tail, not corruption");
        }
        let mut zeros = log_of(&[b"one"]);
        zeros.extend([0u8; 100]);
        let r = read_records(Path::new("l"), &zeros).ok();
        assert_eq!(r.map(|r| (r.payloads.len(), r.torn_tail)), Some((1, true)));
    }

    #[test]
    fn corruption_before_the_end_is_an_error() {
        let mut b = log_of(&[b"one", b"two", b"three"]);
        let at = FILE_HEADER_LEN + RECORD_HEADER_LEN;
        b[at] ^= 0xff;
        assert!(matches!(
            read_records(Path::new("l"), &b),
            Err(StorageError::Corrupt { .. })
        ));
    }
}
