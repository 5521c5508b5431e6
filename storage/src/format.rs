//! Magics, format versions, and the little-endian byte codec shared by every on-disk structure.
//!
//! `storage/FORMAT.md` is the specification; this module is its single implementation of the
//! primitives. Every decoder reads through [`ByteReader`], which never panics on short or malformed
//! input: it returns [`StorageError::Corrupt`] naming the file and offset.

use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

/// Magic of segment files (8 bytes, at both ends).
pub const SEGMENT_MAGIC: [u8; 8] = *b"JDBSEG\0\x01";
/// Magic of manifest files.
pub const MANIFEST_MAGIC: [u8; 8] = *b"JDBMAN\0\x01";
/// Magic of write-ahead log files.
pub const WAL_MAGIC: [u8; 8] = *b"JDBWAL\0\x01";
/// Magic of the key dictionary file.
pub const KEYDICT_MAGIC: [u8; 8] = *b"JDBKEY\0\x01";

/// Newest segment format version written and read.
pub const SEGMENT_VERSION: u16 = 1;
/// Newest manifest format version written and read.
pub const MANIFEST_VERSION: u16 = 1;
/// Newest WAL format version written and read (v1 files are still read; see FORMAT.md).
pub const WAL_VERSION: u16 = 2;
/// Newest key dictionary format version written and read (a v1 dictionary is rewritten as v2 on open).
pub const KEYDICT_VERSION: u16 = 2;
/// The log file version (WAL and key dictionary) whose records carry a salt, a checksum covering the
/// length, and the durable end of the log when they were written.
pub const LOG_VERSION_SALTED: u16 = 2;

/// Size of the fixed header of segment, WAL and key dictionary files: magic (8), version (2), flags (2),
/// reserved (4).
pub const FILE_HEADER_LEN: usize = 16;
/// Size of a segment's trailer: footer length (4), footer crc (4), magic (8).
pub const SEGMENT_TRAILER_LEN: usize = 16;
/// Size of a version 1 log record's header: payload length (4) and payload crc (4).
pub const RECORD_HEADER_LEN_V1: usize = 8;
/// Size of a version 2 log record's header: salt (4), payload length (4), synced end (8), crc (4).
pub const RECORD_HEADER_LEN: usize = 20;
/// Largest log record payload (WAL or key dictionary) accepted on write and on read.
pub const RECORD_LEN_MAX: usize = 1 << 30;

/// CRC-32 (IEEE) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Encodes the 16-byte file header.
pub fn file_header(magic: [u8; 8], version: u16, flags: u16) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(&magic);
    h[8..10].copy_from_slice(&version.to_le_bytes());
    h[10..12].copy_from_slice(&flags.to_le_bytes());
    h
}

/// Checks a 16-byte file header and returns its flags.
pub fn check_file_header(path: &Path, bytes: &[u8], magic: [u8; 8], supported: u16) -> Result<u16> {
    let (_, flags, reserved) = read_file_header(path, bytes, magic, supported)?;
    if reserved != 0 {
        return Err(StorageError::corrupt(
            path,
            12,
            "reserved header bytes are not zero",
        ));
    }
    Ok(flags)
}

/// Reads a 16-byte file header: version, flags and the last word (reserved, or a log's salt).
pub fn read_file_header(
    path: &Path,
    bytes: &[u8],
    magic: [u8; 8],
    supported: u16,
) -> Result<(u16, u16, u32)> {
    let mut r = ByteReader::new(path, bytes);
    let got = r.bytes(8)?;
    if got != magic {
        return Err(StorageError::corrupt(path, 0, "bad magic"));
    }
    let version = r.u16()?;
    if version == 0 || version > supported {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
            supported,
        });
    }
    let flags = r.u16()?;
    Ok((version, flags, r.u32()?))
}

/// Encodes the 16-byte header of a salted log file (version 2 and later).
pub fn log_header(magic: [u8; 8], version: u16, flags: u16, salt: u32) -> [u8; FILE_HEADER_LEN] {
    let mut h = file_header(magic, version, flags);
    h[12..16].copy_from_slice(&salt.to_le_bytes());
    h
}

/// Appends little-endian primitives to a byte vector.
#[derive(Default, Debug)]
pub struct ByteWriter {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl ByteWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }
    /// Writes one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// Writes a u16, little-endian.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Writes a u32, little-endian.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Writes a u64, little-endian.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Writes an i64, little-endian.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Writes raw bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// Writes a u32 length then the bytes.
    pub fn len_bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.bytes(v);
    }
    /// Writes a u16 length then the UTF-8 bytes of a short string (names).
    pub fn short_str(&mut self, v: &str) {
        self.u16(v.len() as u16);
        self.bytes(v.as_bytes());
    }
}

/// Reads little-endian primitives from a byte slice, with errors instead of panics.
#[derive(Debug)]
pub struct ByteReader<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
    /// Offset of `bytes[0]` in the file, for error messages.
    base: u64,
}

impl<'a> ByteReader<'a> {
    /// A reader over `bytes`, which sit at offset 0 of `path`.
    pub fn new(path: &'a Path, bytes: &'a [u8]) -> Self {
        ByteReader {
            path,
            bytes,
            pos: 0,
            base: 0,
        }
    }
    /// A reader over `bytes`, which sit at offset `base` of `path`.
    pub fn at(path: &'a Path, bytes: &'a [u8], base: u64) -> Self {
        ByteReader {
            path,
            bytes,
            pos: 0,
            base,
        }
    }
    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }
    /// File offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }
    /// A corruption error at the current offset.
    pub fn error(&self, reason: impl Into<String>) -> StorageError {
        StorageError::corrupt(self.path_buf(), self.offset(), reason)
    }
    fn path_buf(&self) -> PathBuf {
        self.path.to_path_buf()
    }
    /// Reads `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end.and_then(|e| self.bytes.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.error(format!("need {n} bytes, {} left", self.remaining()))),
        }
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    /// Reads a little-endian u16.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    /// Reads a little-endian u32.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// Reads a little-endian u64.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// Reads a little-endian i64.
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    /// Reads a u32 length then that many bytes.
    pub fn len_bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }
    /// Reads a u16 length then a UTF-8 string.
    pub fn short_str(&mut self) -> Result<String> {
        let n = self.u16()? as usize;
        let b = self.bytes(n)?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| self.error("string is not UTF-8"))
    }
    /// A count that must fit in what is left, each item taking at least `item_min_len` bytes: guards
    /// allocations against corrupt lengths.
    pub fn count(&mut self, item_min_len: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(item_min_len.max(1)) > self.remaining() {
            return Err(self.error(format!("count {n} exceeds the bytes left")));
        }
        Ok(n)
    }
    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.error(format!("{} trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_panics_on_short_input() {
        let p = Path::new("x");
        let mut r = ByteReader::new(p, &[1, 2, 3]);
        assert!(r.u32().is_err());
        assert_eq!(r.u16().ok(), Some(0x0201));
        assert!(r.u16().is_err());
        let mut r = ByteReader::new(p, &[0xff, 0xff, 0xff, 0xff]);
        assert!(r.len_bytes().is_err());
        let mut r = ByteReader::new(p, &[5, 0, 0, 0, 1]);
        assert!(r.count(1).is_err());
    }

    #[test]
    fn header_round_trip_and_version_check() {
        let p = Path::new("x");
        let h = file_header(WAL_MAGIC, 1, 7);
        assert_eq!(check_file_header(p, &h, WAL_MAGIC, 1).ok(), Some(7));
        assert!(matches!(
            check_file_header(p, &file_header(WAL_MAGIC, 2, 0), WAL_MAGIC, 1),
            Err(StorageError::UnsupportedVersion { version: 2, .. })
        ));
        assert!(check_file_header(p, &h, SEGMENT_MAGIC, 1).is_err());
        assert!(check_file_header(p, &h[..10], WAL_MAGIC, 1).is_err());
    }
}
