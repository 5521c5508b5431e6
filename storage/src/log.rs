//! Checksummed record logs: the framing shared by the write-ahead log and the key dictionary.
//!
//! A log file is a 16-byte header followed by records. Version 2 (written today; FORMAT.md "Log
//! files") frames each record as `[salt u32][payload_len u32][synced_end u64][crc u32][payload]`:
//! - the crc covers the salt, the length, `synced_end` and the payload, so a damaged length can never
//!   be trusted to find the next record;
//! - the salt is a random word of the file's header, so bytes that are not a record of this file
//!   (zero fill, garbage, a record of another file) are never taken for one;
//! - `synced_end` is how far the log was known durable (the end covered by the last completed fsync)
//!   when the record was written.
//!
//! Writes are positioned at the end of the last good record; a failed write is truncated away.
//! On read, a bad record ends the log (a **torn tail**: writes in flight at a power cut, never
//! acknowledged) unless a later intact record says the log was durable past the bad one's start: then
//! an acknowledged record was damaged, and that is **corruption**, an error. A power cut can lose,
//! reorder or tear only unsynced writes, so a torn record is always beyond every intact record's
//! `synced_end`. Version 1 records (`[len u32][crc32(payload) u32][payload]`) are still read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::dir::{Dir, DirFile, OpenMode};
use crate::error::{Result, StorageError};
use crate::format::{
    crc32, log_header, read_file_header, ByteWriter, FILE_HEADER_LEN, LOG_VERSION_SALTED,
    RECORD_HEADER_LEN, RECORD_HEADER_LEN_V1, RECORD_LEN_MAX,
};

/// What the header of a log file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHeader {
    /// Format version (1 or 2).
    pub version: u16,
    /// The structure's flags (the dictionary's key type).
    pub flags: u16,
    /// The file's salt (version 2; 0 in version 1).
    pub salt: u32,
}

/// Reads and checks a log file's header.
pub fn read_header(path: &Path, bytes: &[u8], magic: [u8; 8], supported: u16) -> Result<LogHeader> {
    let head = bytes.get(..FILE_HEADER_LEN).unwrap_or(bytes);
    let (version, flags, salt) = read_file_header(path, head, magic, supported)?;
    if version < LOG_VERSION_SALTED && salt != 0 {
        return Err(StorageError::corrupt(
            path,
            12,
            "reserved header bytes are not zero",
        ));
    }
    if version >= LOG_VERSION_SALTED && salt == 0 {
        return Err(StorageError::corrupt(path, 12, "log salt is zero"));
    }
    Ok(LogHeader {
        version,
        flags,
        salt,
    })
}

/// Frames `payload` as one version 2 record.
pub fn frame(salt: u32, synced_end: u64, payload: &[u8]) -> Vec<u8> {
    let mut w = ByteWriter::new();
    w.u32(salt);
    w.u32(payload.len() as u32);
    w.u64(synced_end);
    let crc = {
        let mut h = crc32fast::Hasher::new();
        h.update(&w.buf);
        h.update(payload);
        h.finalize()
    };
    w.u32(crc);
    w.bytes(payload);
    w.buf
}

/// The good records of a log file's bytes (after its header), and where the good part ends.
pub struct Records<'a> {
    /// Each good record: the file offset where it starts, and its payload.
    pub payloads: Vec<(u64, &'a [u8])>,
    /// File offset just past the last good record.
    pub end: u64,
    /// True when a torn tail was found after `end`.
    pub torn_tail: bool,
}

/// Splits `bytes` (a whole log file with the header `h`) into records; see the module doc for torn
/// tails vs corruption.
pub fn read_records<'a>(path: &Path, bytes: &'a [u8], h: LogHeader) -> Result<Records<'a>> {
    if h.version < LOG_VERSION_SALTED {
        return read_records_v1(path, bytes);
    }
    let mut pos = FILE_HEADER_LEN;
    let mut payloads = Vec::new();
    while pos < bytes.len() {
        match record_v2_at(bytes, pos, h.salt) {
            Some((payload, next, _)) => {
                payloads.push((pos as u64, payload));
                pos = next;
            }
            None => {
                // An intact first record under a salt of its own: the header's salt is damaged
                // (a log's first record is written with its header), not a torn write.
                if pos == FILE_HEADER_LEN {
                    if let Some(own) = le_u32(bytes, pos).filter(|s| *s != h.salt) {
                        if record_v2_at(bytes, pos, own).is_some() {
                            return Err(StorageError::corrupt(
                                path,
                                12,
                                "the header's salt does not match its records (damaged header)",
                            ));
                        }
                    }
                }
                // Is any later intact record proof that the log was durable past `pos`?
                let synced = later_synced_end(bytes, pos + 1, h.salt);
                if synced > pos as u64 {
                    return Err(StorageError::corrupt(
                        path,
                        pos as u64,
                        format!(
                            "damaged record in the durable part of the log (a later record says \
                             the log was synced to offset {synced})"
                        ),
                    ));
                }
                return Ok(Records {
                    payloads,
                    end: pos as u64,
                    torn_tail: true,
                });
            }
        }
    }
    Ok(Records {
        payloads,
        end: pos as u64,
        torn_tail: false,
    })
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

fn le_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// The intact version 2 record at `pos`: payload, offset of the next record, and its `synced_end`.
fn record_v2_at(bytes: &[u8], pos: usize, salt: u32) -> Option<(&[u8], usize, u64)> {
    if le_u32(bytes, pos)? != salt {
        return None;
    }
    let len = le_u32(bytes, pos + 4)? as usize;
    let synced_end = le_u64(bytes, pos + 8)?;
    let crc = le_u32(bytes, pos + 16)?;
    // A record cannot know of durable bytes beyond its own start.
    if len > RECORD_LEN_MAX || synced_end > pos as u64 {
        return None;
    }
    let start = pos + RECORD_HEADER_LEN;
    let payload = bytes.get(start..start + len)?;
    let mut h = crc32fast::Hasher::new();
    h.update(bytes.get(pos..pos + 16)?);
    h.update(payload);
    (h.finalize() == crc).then_some((payload, start + len, synced_end))
}

/// The largest `synced_end` of the intact records found at or after `from` (0 when none).
fn later_synced_end(bytes: &[u8], from: usize, salt: u32) -> u64 {
    let salt_bytes = salt.to_le_bytes();
    let mut best = 0;
    let mut q = from;
    while q + RECORD_HEADER_LEN <= bytes.len() {
        if bytes.get(q..q + 4) == Some(&salt_bytes[..]) {
            if let Some((_, next, synced)) = record_v2_at(bytes, q, salt) {
                best = best.max(synced);
                q = next;
                continue;
            }
        }
        q += 1;
    }
    best
}

/// Version 1: a bad record at the end of the file (or followed only by zeros) is a torn tail; a bad
/// record followed by other bytes is corruption.
fn read_records_v1<'a>(path: &Path, bytes: &'a [u8]) -> Result<Records<'a>> {
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
        match record_v1_at(rest) {
            Some(payload) => {
                payloads.push((pos as u64, payload));
                pos += RECORD_HEADER_LEN_V1 + payload.len();
            }
            None => {
                let declared_end = le_u32(rest, 0).map(|l| l as usize + RECORD_HEADER_LEN_V1);
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

fn record_v1_at(rest: &[u8]) -> Option<&[u8]> {
    let len = le_u32(rest, 0)? as usize;
    let crc = le_u32(rest, 4)?;
    if len > RECORD_LEN_MAX || (len == 0 && crc == 0) {
        return None;
    }
    let payload = rest.get(RECORD_HEADER_LEN_V1..RECORD_HEADER_LEN_V1 + len)?;
    (crc32(payload) == crc).then_some(payload)
}

/// A fresh random salt, never zero.
fn new_salt() -> u32 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let h = std::collections::hash_map::RandomState::new().hash_one((nanos, std::process::id()));
    ((h ^ (h >> 32)) as u32).max(1)
}

/// An open log file being appended to.
#[derive(Debug)]
pub struct LogFile {
    /// The file, shared so a group-commit leader can fsync it without holding the writer lock.
    pub file: Arc<dyn DirFile>,
    /// Its path.
    pub path: PathBuf,
    /// Offset where the next record goes.
    pub end: u64,
    salt: u32,
    /// How far the file is known durable: raised by [`SyncPoint::sync`].
    synced: Arc<AtomicU64>,
    /// Set when a failed write could not be truncated away: appending again could leave a stale
    /// record behind a shorter new one, so every later append fails until the log is reopened.
    broken: bool,
}

/// A log's file and its end at one moment: syncing it makes everything up to that end durable.
#[derive(Debug, Clone)]
pub struct SyncPoint {
    file: Arc<dyn DirFile>,
    path: PathBuf,
    end: u64,
    synced: Arc<AtomicU64>,
}

impl SyncPoint {
    /// Whether everything up to the captured end is known durable already.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst) >= self.end
    }

    /// fsyncs the file; on success the records up to the captured end are durable.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync()
            .map_err(|e| StorageError::io(&self.path, e))?;
        self.synced.fetch_max(self.end, Ordering::SeqCst);
        Ok(())
    }
}

impl LogFile {
    /// Creates (or empties) the log file at `path` with a fresh salt and `records` already in it, and
    /// fsyncs it (not its directory).
    pub fn create(
        fs: &dyn Dir,
        path: &Path,
        mode: OpenMode,
        magic: [u8; 8],
        version: u16,
        flags: u16,
        records: &[&[u8]],
    ) -> Result<LogFile> {
        let salt = new_salt();
        let mut bytes = log_header(magic, version, flags, salt).to_vec();
        for r in records {
            // Everything is synced together below, before any reader can depend on it.
            let at = bytes.len() as u64;
            bytes.extend(frame(salt, at, r));
        }
        let file = crate::dir::open(fs, path, mode)?;
        file.write_at(&bytes, 0)
            .and_then(|_| file.sync())
            .map_err(|e| StorageError::io(path, e))?;
        let end = bytes.len() as u64;
        Ok(LogFile {
            file,
            path: path.to_path_buf(),
            end,
            salt,
            synced: Arc::new(AtomicU64::new(end)),
            broken: false,
        })
    }

    /// An existing log file whose good records end at `end`, all durable (recovery syncs what it
    /// replays before anything is appended).
    pub fn reopen(file: Arc<dyn DirFile>, path: &Path, salt: u32, end: u64) -> LogFile {
        LogFile {
            file,
            path: path.to_path_buf(),
            end,
            salt,
            synced: Arc::new(AtomicU64::new(end)),
            broken: false,
        }
    }

    /// The file and its current end, to fsync outside the writer's lock.
    pub fn sync_point(&self) -> SyncPoint {
        SyncPoint {
            file: self.file.clone(),
            path: self.path.clone(),
            end: self.end,
            synced: self.synced.clone(),
        }
    }

    /// Appends one record; on error nothing counts as written.
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        if payload.len() > RECORD_LEN_MAX {
            return Err(StorageError::InvalidOption(format!(
                "record of {} bytes exceeds the {RECORD_LEN_MAX}-byte limit; append smaller batches",
                payload.len()
            )));
        }
        if self.broken {
            return Err(StorageError::io(
                &self.path,
                std::io::Error::other(
                    "an earlier failed write could not be undone; reopen the database",
                ),
            ));
        }
        let synced = self.synced.load(Ordering::SeqCst).min(self.end);
        let rec = frame(self.salt, synced, payload);
        if let Err(e) = self.file.write_at(&rec, self.end) {
            // Part of the record may have reached the file. Cut it off so no later, shorter record
            // can leave its remains readable behind it.
            if self.file.set_len(self.end).is_err() {
                self.broken = true;
            }
            return Err(StorageError::io(&self.path, e));
        }
        self.end += rec.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const SALT: u32 = 0x5a17_0001;

    fn header() -> LogHeader {
        LogHeader {
            version: LOG_VERSION_SALTED,
            flags: 0,
            salt: SALT,
        }
    }

    /// A log of `records`, each written after an fsync that covered the records before it when
    /// `synced` says so.
    fn log_of(records: &[&[u8]], synced: bool) -> Vec<u8> {
        let mut b = vec![0u8; FILE_HEADER_LEN];
        for r in records {
            let s = if synced {
                b.len() as u64
            } else {
                FILE_HEADER_LEN as u64
            };
            b.extend(frame(SALT, s, r));
        }
        b
    }

    fn read(b: &[u8]) -> Result<Records<'_>> {
        read_records(Path::new("l"), b, header())
    }

    #[test]
    fn torn_tail_ends_the_log() {
        let full = log_of(&[b"one", b"two", b"three"], true);
        for cut in FILE_HEADER_LEN..full.len() {
            assert!(
                read(&full[..cut]).is_ok(),
                "cut at {cut} is a torn tail, not corruption"
            );
        }
        let mut zeros = log_of(&[b"one"], true);
        zeros.extend([0u8; 100]);
        let r = read(&zeros).ok();
        assert_eq!(r.map(|r| (r.payloads.len(), r.torn_tail)), Some((1, true)));
    }

    #[test]
    fn a_flipped_length_bit_is_caught_by_the_checksum() {
        let mut b = log_of(&[b"one", b"two", b"three"], true);
        // The length of the second record: a flipped bit must not be trusted, and since the third
        // record says the log was synced past the second, it is corruption, not a torn tail.
        let second = FILE_HEADER_LEN + RECORD_HEADER_LEN + 3;
        b[second + 4] ^= 0x01;
        assert!(matches!(read(&b), Err(StorageError::Corrupt { .. })));
    }

    #[test]
    fn damage_before_unacknowledged_records_is_a_torn_tail() {
        // Records 2 and 3 were written in one group, before any fsync covered record 2: a power cut
        // tore record 2 and kept record 3. Nothing after the damage was acknowledged.
        let mut b = log_of(&[b"one", b"two", b"three"], false);
        let second = FILE_HEADER_LEN + RECORD_HEADER_LEN + 3;
        b[second + RECORD_HEADER_LEN] ^= 0xff;
        let r = read(&b).unwrap();
        assert_eq!(
            (r.payloads.len(), r.torn_tail, r.end),
            (1, true, second as u64)
        );
    }

    #[test]
    fn corruption_before_the_end_is_an_error() {
        let mut b = log_of(&[b"one", b"two", b"three"], true);
        let at = FILE_HEADER_LEN + RECORD_HEADER_LEN;
        b[at] ^= 0xff;
        assert!(matches!(read(&b), Err(StorageError::Corrupt { .. })));
    }

    #[test]
    fn version_1_records_are_still_read() {
        let mut b = vec![0u8; FILE_HEADER_LEN];
        for r in [&b"one"[..], b"two"] {
            b.extend((r.len() as u32).to_le_bytes());
            b.extend(crc32(r).to_le_bytes());
            b.extend(r);
        }
        let h = LogHeader {
            version: 1,
            flags: 0,
            salt: 0,
        };
        let r = read_records(Path::new("l"), &b, h).unwrap();
        assert_eq!(r.payloads.len(), 2);
        assert_eq!(r.payloads[1], (FILE_HEADER_LEN as u64 + 11, &b"two"[..]));
    }
}
