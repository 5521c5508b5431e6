//! The key dictionary: external customer keys to dense `u32` ordinals, in first-seen order.
//!
//! In memory, VARCHAR keys live in one byte arena with a 4-byte end offset per ordinal
//! ([`Offsets`]), and a [`KeyTable`] of ordinals finds a key's ordinal by hashing the arena bytes:
//! 4 bytes per key plus the table's slots (8 bytes each, at least a third of them empty; about
//! 11 bytes per key at 100M keys) on top of the key bytes. BIGINT keys are a plain `Vec<i64>` with
//! the same table. The arena and the offsets grow by a quarter at a time, not by doubling, so a
//! bulk load leaves at most a quarter of them unused.
//!
//! On disk (`keys.dict`): a log (see [`crate::log`]) whose records each list the keys a batch added,
//! in ordinal order. The dictionary is written before the WAL record that uses its ordinals and fsynced
//! before that record (the group commit syncs it first), so every durable WAL record refers to durable
//! ordinals. A torn tail holds keys no acknowledged append used and is truncated on open.

use std::hash::BuildHasher;
use std::path::Path;

use hashbrown::DefaultHashBuilder;

use crate::dir::{Dir, OpenMode};
use crate::error::{Result, StorageError};
use crate::format::{ByteReader, ByteWriter, KEYDICT_MAGIC, KEYDICT_VERSION};
use crate::keytable::{KeyTable, ORDINAL_MAX};
use crate::log::{read_header, read_records, LogFile, SyncPoint};
use crate::schema::KeyType;

/// Longest VARCHAR key accepted, in bytes.
pub const KEY_LEN_MAX: usize = 4096;

/// A borrowed customer key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key<'a> {
    /// A VARCHAR key.
    Str(&'a str),
    /// A BIGINT key.
    Int(i64),
}

/// The dictionary of one database.
#[derive(Debug)]
pub struct KeyDict {
    key_type: KeyType,
    arena: Vec<u8>,
    /// `offsets[o]..offsets[o + 1]` is key `o` in `arena` (VARCHAR only).
    offsets: Offsets,
    ints: Vec<i64>,
    table: KeyTable,
    hasher: DefaultHashBuilder,
    log: LogFile,
    /// The file ended in a torn tail when it was opened.
    torn_tail: bool,
}

impl KeyDict {
    /// Creates an empty dictionary file at `path` (fails if it exists), synced (not its directory).
    pub fn create(fs: &dyn Dir, path: &Path, key_type: KeyType) -> Result<KeyDict> {
        let log = LogFile::create(
            fs,
            path,
            OpenMode::CreateNew,
            KEYDICT_MAGIC,
            KEYDICT_VERSION,
            key_type.tag() as u16,
            &[],
        )?;
        Ok(Self::empty(key_type, log))
    }

    fn empty(key_type: KeyType, log: LogFile) -> KeyDict {
        KeyDict {
            key_type,
            arena: Vec::new(),
            offsets: Offsets::new(),
            ints: Vec::new(),
            table: KeyTable::default(),
            hasher: DefaultHashBuilder::default(),
            log,
            torn_tail: false,
        }
    }

    /// Opens the dictionary at `path`, cutting off a torn tail (durably). A dictionary of an older
    /// format version is rewritten in the current one first.
    pub fn open(fs: &dyn Dir, path: &Path) -> Result<KeyDict> {
        Self::open_mode(fs, path, Mode::Write { rewrite: false })
    }

    /// Opens the dictionary at `path` and rewrites its good records into a fresh file that replaces
    /// it: after a failed fsync the page cache may hold bytes the disk never got, and only a new
    /// write, synced, makes them durable.
    pub fn open_rewritten(fs: &dyn Dir, path: &Path) -> Result<KeyDict> {
        Self::open_mode(fs, path, Mode::Write { rewrite: true })
    }

    /// Opens the dictionary at `path` without changing the file (a torn tail is left in place and
    /// not loaded); the result must not be appended to. For `journeydb check`.
    pub fn open_read_only(fs: &dyn Dir, path: &Path) -> Result<KeyDict> {
        Self::open_mode(fs, path, Mode::Read)
    }

    fn open_mode(fs: &dyn Dir, path: &Path, mode: Mode) -> Result<KeyDict> {
        // Mapped, not read, when the database opens it (under its lock): at 100M keys a 2 GB copy
        // into fresh (kernel-zeroed) memory was a fifth of the open. Nothing writes the file
        // while it is being opened; its torn tail is cut off below but never read after (the
        // records end before it).
        // (`check` reads a copy: it may run beside a server that opens, and cuts, the file.)
        let bytes = match mode {
            Mode::Write { .. } => fs.map(path).map_err(|e| StorageError::io(path, e))?,
            Mode::Read => crate::dir::FileBytes::Heap(crate::dir::read(fs, path)?.into()),
        };
        let h = read_header(path, &bytes, KEYDICT_MAGIC, KEYDICT_VERSION)?;
        let key_type = u8::try_from(h.flags)
            .ok()
            .and_then(KeyType::from_tag)
            .ok_or_else(|| {
                StorageError::corrupt(path, 10, format!("unknown key type {}", h.flags))
            })?;
        let records = read_records(path, &bytes, h)?;
        let rewrite = matches!(mode, Mode::Write { rewrite: true }) || h.version < KEYDICT_VERSION;
        let log = match mode {
            Mode::Write { .. } if rewrite => {
                let payloads: Vec<&[u8]> = records.payloads.iter().map(|(_, p)| *p).collect();
                let tmp = path.with_extension("dict.tmp");
                let mut log = LogFile::create(
                    fs,
                    &tmp,
                    OpenMode::Truncate,
                    KEYDICT_MAGIC,
                    KEYDICT_VERSION,
                    h.flags,
                    &payloads,
                )?;
                fs.rename(&tmp, path)
                    .map_err(|e| StorageError::io(path, e))?;
                crate::dir::sync_dir(fs, &crate::dir::parent_of(path))?;
                log.path = path.to_path_buf();
                log
            }
            Mode::Write { .. } => {
                let file = crate::dir::open(fs, path, OpenMode::Write)?;
                // Cut the torn tail off before anything is appended: new records must not be
                // followed by remains of the old ones. Sync the whole file: recovery persists
                // only what is durable (the records replayed now may have been in the page cache).
                if records.torn_tail {
                    file.set_len(records.end)
                        .map_err(|e| StorageError::io(path, e))?;
                }
                file.sync().map_err(|e| StorageError::io(path, e))?;
                LogFile::reopen(file, path, h.salt, records.end)
            }
            Mode::Read => {
                let file = crate::dir::open(fs, path, OpenMode::Read)?;
                LogFile::reopen(file, path, h.salt, records.end)
            }
        };
        let mut dict = Self::empty(key_type, log);
        dict.torn_tail = records.torn_tail;
        // Size everything once: every record starts with its key count, and the key bytes are at most
        // the file's size. Growing the hash table step by step would rehash every key several times.
        let keys: usize = records
            .payloads
            .iter()
            .filter_map(|(_, p)| {
                p.get(..4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(|b| u32::from_le_bytes(b) as usize)
            })
            .sum();
        // A key takes at least 4 bytes in the file, so a lying count cannot make us reserve more.
        dict.reserve(keys.min(bytes.len() / 4), bytes.len());
        for (offset, payload) in records.payloads {
            dict.load_record(path, offset, payload)?;
        }
        // The arena was sized by the file (a length per key more than it holds).
        dict.arena.shrink_to_fit();
        dict.offsets.shrink_to_fit();
        dict.ints.shrink_to_fit();
        // The index is built once every key is in (see `KeyTable::build`).
        let n = dict.len() as usize;
        dict.with_index(|t, hash_of| t.build(n, hash_of));
        Ok(dict)
    }

    fn load_record(&mut self, path: &Path, offset: u64, payload: &[u8]) -> Result<()> {
        let mut r = ByteReader::at(
            path,
            payload,
            offset + crate::format::RECORD_HEADER_LEN as u64,
        );
        let n = r.count(1)?;
        for _ in 0..n {
            match self.key_type {
                KeyType::Varchar => {
                    let b = r.len_bytes()?;
                    std::str::from_utf8(b).map_err(|_| r.error("key is not UTF-8"))?;
                    if b.is_empty() || b.len() > KEY_LEN_MAX {
                        return Err(r.error("key length out of range"));
                    }
                    self.arena.extend_from_slice(b);
                    self.offsets.push(self.arena.len() as u64);
                }
                KeyType::Bigint => {
                    let v = r.i64()?;
                    self.ints.push(v);
                }
            }
        }
        r.finish()
    }

    /// Room for the keys of a file being read (the index is built after them).
    fn reserve(&mut self, keys: usize, arena_bytes: usize) {
        match self.key_type {
            KeyType::Varchar => {
                self.arena.reserve_exact(arena_bytes);
                self.offsets.reserve(keys);
            }
            KeyType::Bigint => self.ints.reserve_exact(keys),
        }
    }

    /// The key type of the database.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// Number of keys (= the next ordinal).
    pub fn len(&self) -> u32 {
        match self.key_type {
            KeyType::Varchar => (self.offsets.len().saturating_sub(1)) as u32,
            KeyType::Bigint => self.ints.len() as u32,
        }
    }

    /// True when no key was ever added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn hash(&self, key: Key<'_>) -> u64 {
        match key {
            Key::Str(s) => self.hasher.hash_one(s.as_bytes()),
            Key::Int(i) => self.hasher.hash_one(i),
        }
    }

    /// The key of `ordinal`.
    pub fn key(&self, ordinal: u32) -> Option<Key<'_>> {
        let o = ordinal as usize;
        match self.key_type {
            KeyType::Varchar => {
                let (start, end) = (self.offsets.get(o)?, self.offsets.get(o + 1)?);
                let bytes = self.arena.get(start as usize..end as usize)?;
                // Only valid UTF-8 is ever put in the arena, and only at these boundaries.
                std::str::from_utf8(bytes).ok().map(Key::Str)
            }
            KeyType::Bigint => self.ints.get(o).map(|v| Key::Int(*v)),
        }
    }

    /// The ordinal of `key`, if it was ever added.
    pub fn lookup(&self, key: Key<'_>) -> Option<u32> {
        self.lookup_hashed(key, self.hash(key))
    }

    /// [`KeyDict::lookup`] of a key whose hash is `h`.
    fn lookup_hashed(&self, key: Key<'_>, h: u64) -> Option<u32> {
        // Compared as bytes: the arena holds only valid UTF-8, so there is nothing to validate
        // (decoding each candidate as a `&str` cost a sixth of a bulk load's time).
        match key {
            Key::Str(s) => {
                let want = s.as_bytes();
                self.table.find(h, |o| {
                    self.key_bytes(o).is_some_and(|b| same_bytes(b, want))
                })
            }
            Key::Int(v) => self
                .table
                .find(h, |o| self.ints.get(o as usize) == Some(&v)),
        }
    }

    /// The ordinals of `n` keys (`key(i)` for `i < n`), `None` for those never added: the same
    /// answers as [`KeyDict::lookup`], found block by block in passes so that the cache misses of a
    /// block overlap (see [`crate::keytable`]).
    pub fn lookup_batch<'k>(&self, n: usize, key: impl Fn(usize) -> Key<'k>) -> Vec<Option<u32>> {
        const BLOCK: usize = 64;
        let mut out = Vec::with_capacity(n);
        let mut hashes = [0u64; BLOCK];
        let mut cands = [None::<u32>; BLOCK];
        let mut start = 0;
        while start < n {
            let m = BLOCK.min(n - start);
            // Pass 1: hash each key and prefetch its first slot.
            for (j, h) in hashes.iter_mut().enumerate().take(m) {
                *h = self.hash(key(start + j));
                self.table.prefetch(*h);
            }
            // Pass 2: a candidate ordinal per key; prefetch where its key is.
            for (c, h) in cands.iter_mut().zip(&hashes).take(m) {
                *c = self.table.first_candidate(*h);
                if let Some(o) = *c {
                    match self.key_type {
                        KeyType::Varchar => self.offsets.prefetch(o as usize),
                        KeyType::Bigint => crate::mem::prefetch(&self.ints, o as usize),
                    }
                }
            }
            // Pass 3: prefetch each candidate's key bytes.
            if self.key_type == KeyType::Varchar {
                for c in cands.iter().take(m).flatten() {
                    let a = self.offsets.get(*c as usize).unwrap_or(0);
                    crate::mem::prefetch(&self.arena, a as usize);
                }
            }
            // Pass 4: compare; a candidate that is another key (a shared tag) takes the full probe.
            for (j, c) in cands.iter().enumerate().take(m) {
                let k = key(start + j);
                out.push(match *c {
                    Some(o) if self.is_key(o, k) => Some(o),
                    Some(_) => self.lookup(k),
                    None => None,
                });
            }
            start += m;
        }
        out
    }

    /// True when ordinal `o` is `key`.
    #[inline]
    fn is_key(&self, o: u32, key: Key<'_>) -> bool {
        match key {
            Key::Str(s) => self
                .key_bytes(o)
                .is_some_and(|b| same_bytes(b, s.as_bytes())),
            Key::Int(v) => self.ints.get(o as usize) == Some(&v),
        }
    }

    /// The bytes of a VARCHAR key.
    fn key_bytes(&self, ordinal: u32) -> Option<&[u8]> {
        let o = ordinal as usize;
        let (start, end) = (self.offsets.get(o)?, self.offsets.get(o + 1)?);
        self.arena.get(start as usize..end as usize)
    }

    /// Adds `key` (absent, hashed to `h`) as the next ordinal.
    fn insert_new(&mut self, key: Key<'_>, h: u64) -> u32 {
        let o = self.len();
        match key {
            Key::Str(s) => {
                grow_by_quarter(&mut self.arena, s.len());
                self.arena.extend_from_slice(s.as_bytes());
                self.offsets.push(self.arena.len() as u64);
            }
            Key::Int(v) => {
                grow_by_quarter(&mut self.ints, 1);
                self.ints.push(v);
            }
        }
        self.with_index(|t, hash_of| t.insert(h, o, hash_of));
        o
    }

    /// Drops the keys from ordinal `len` on (added in memory by a call that then failed) and
    /// rebuilds the index without them.
    fn truncate(&mut self, len: u32) {
        let n = len as usize;
        match self.key_type {
            KeyType::Varchar => {
                let end = self.offsets.get(n).unwrap_or(0) as usize;
                self.arena.truncate(end);
                self.offsets.truncate(n + 1);
            }
            KeyType::Bigint => self.ints.truncate(n),
        }
        self.with_index(|t, hash_of| t.build(n, hash_of));
    }

    /// Runs `f` on the index with the hash of each ordinal's key (the fields borrowed apart).
    fn with_index<R>(&mut self, f: impl FnOnce(&mut KeyTable, &dyn Fn(u32) -> u64) -> R) -> R {
        let Self {
            table,
            arena,
            offsets,
            ints,
            hasher,
            key_type,
            ..
        } = self;
        let hash_of = |x| rehash(*key_type, hasher, arena, offsets, ints, x);
        f(table, &hash_of)
    }

    /// Checks a key before it is added.
    pub fn check_key(&self, key: Key<'_>) -> Result<()> {
        match (self.key_type, key) {
            (KeyType::Varchar, Key::Str("")) => Err(StorageError::InvalidKey("empty key".into())),
            (KeyType::Varchar, Key::Str(s)) if s.len() > KEY_LEN_MAX => Err(
                StorageError::InvalidKey(format!("key of {} bytes exceeds {KEY_LEN_MAX}", s.len())),
            ),
            (KeyType::Varchar, Key::Str(_)) | (KeyType::Bigint, Key::Int(_)) => Ok(()),
            (t, k) => Err(StorageError::InvalidKey(format!(
                "key {k:?} does not fit a {t:?} key"
            ))),
        }
    }

    /// Ordinals of `keys`, adding the new ones (in first-seen order) to memory and to the file. Not
    /// durable until [`KeyDict::sync_point`] is synced. On error nothing was added.
    ///
    /// Each key is hashed once and probed once: a new key goes into the index at once, so a later
    /// copy of it in `keys` finds it there. If the file write (or the ordinal limit) fails, the
    /// keys added are dropped from memory again.
    pub fn get_or_insert<'k>(&mut self, keys: impl Iterator<Item = Key<'k>>) -> Result<Vec<u32>> {
        let keys: Vec<Key<'k>> = keys.collect();
        for k in &keys {
            self.check_key(*k)?;
        }
        let base = self.len();
        let mut out = Vec::with_capacity(keys.len());
        // A block's first slots are prefetched before any is probed, so their misses overlap.
        const BLOCK: usize = 64;
        let mut hashes = [0u64; BLOCK];
        for block in keys.chunks(BLOCK) {
            for (h, &k) in hashes.iter_mut().zip(block) {
                *h = self.hash(k);
                self.table.prefetch(*h);
            }
            for (&k, &h) in block.iter().zip(&hashes) {
                if let Some(o) = self.lookup_hashed(k, h) {
                    out.push(o);
                    continue;
                }
                if self.len() > ORDINAL_MAX {
                    self.truncate(base);
                    return Err(StorageError::InvalidKey(
                        "the dictionary is full (2^32 keys)".into(),
                    ));
                }
                out.push(self.insert_new(k, h));
            }
        }
        let len = self.len();
        if len > base {
            let mut w = ByteWriter::new();
            w.u32(len - base);
            for o in base..len {
                match self.key_type {
                    KeyType::Varchar => w.len_bytes(self.key_bytes(o).unwrap_or_default()),
                    KeyType::Bigint => w.i64(self.ints.get(o as usize).copied().unwrap_or(0)),
                }
            }
            if let Err(e) = self.log.append(&w.buf) {
                self.truncate(base);
                return Err(e);
            }
        }
        Ok(out)
    }

    /// True when the file ended in a torn tail (unacknowledged keys) when it was opened.
    pub fn torn_tail(&self) -> bool {
        self.torn_tail
    }

    /// The file and its current end, for an fsync outside the dictionary's lock.
    pub fn sync_point(&self) -> SyncPoint {
        self.log.sync_point()
    }

    /// Bytes of memory held, for the figures (arena, offsets, ints and the hash table).
    pub fn memory_bytes(&self) -> usize {
        self.arena.capacity()
            + self.offsets.memory_bytes()
            + self.ints.capacity() * 8
            + self.table.memory_bytes()
    }
}

/// `a == b`, inline for keys of 8 to 16 bytes (two overlapping 8-byte words each; most customer
/// keys), where a call to `memcmp` cost more than the compare.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let word = |x: &[u8], at: usize| {
            x.get(at..at + 8)
                .and_then(|w| <[u8; 8]>::try_from(w).ok())
                .map(u64::from_ne_bytes)
        };
        return word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8);
    }
    a == b
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Write { rewrite: bool },
    Read,
}

fn rehash(
    kt: KeyType,
    hasher: &DefaultHashBuilder,
    arena: &[u8],
    offsets: &Offsets,
    ints: &[i64],
    o: u32,
) -> u64 {
    let o = o as usize;
    match kt {
        KeyType::Varchar => {
            let start = offsets.get(o).unwrap_or(0) as usize;
            let end = offsets.get(o + 1).unwrap_or(0) as usize;
            hasher.hash_one(arena.get(start..end).unwrap_or(&[]))
        }
        KeyType::Bigint => hasher.hash_one(ints.get(o).copied().unwrap_or(0)),
    }
}

/// Reserves room for `additional` more elements, growing by at least a quarter of the length
/// (`Vec`'s own growth doubles, leaving up to half of a bulk-loaded dictionary unused). Large
/// buffers are their own memory mappings, which the allocator grows without a copy.
fn grow_by_quarter<T>(v: &mut Vec<T>, additional: usize) {
    if v.capacity() - v.len() < additional {
        v.reserve_exact(additional.max(v.len() / 4).max(4096));
    }
}

/// Ordinals per block of [`Offsets`]. A block's keys span at most `2^16 × KEY_LEN_MAX` = 256 MiB
/// of the arena, so an offset within its block fits in a `u32`.
const OFFSET_BLOCK_BITS: usize = 16;

/// The arena offsets of the keys (entry 0 is 0; entry `o + 1` is where key `o` ends) in 4 bytes
/// each: entry `i` is `bases[i >> 16] + low[i]`. Plain `u64` offsets took a quarter of the
/// dictionary's memory at 16-byte keys.
#[derive(Debug)]
struct Offsets {
    low: Vec<u32>,
    bases: Vec<u64>,
}

impl Offsets {
    fn new() -> Offsets {
        let mut o = Offsets {
            low: Vec::new(),
            bases: Vec::new(),
        };
        o.push(0);
        o
    }

    /// Appends entry `v` (not below the last one, and within 256 MiB of its block's first).
    fn push(&mut self, v: u64) {
        if self.low.len() & ((1 << OFFSET_BLOCK_BITS) - 1) == 0 {
            self.bases.push(v);
        }
        let base = self.bases.last().copied().unwrap_or(0);
        // Keys are at most KEY_LEN_MAX bytes (checked on insert and on load), so this fits.
        debug_assert!(v - base <= u64::from(u32::MAX));
        grow_by_quarter(&mut self.low, 1);
        self.low.push((v - base) as u32);
    }

    #[inline]
    fn get(&self, i: usize) -> Option<u64> {
        let low = *self.low.get(i)?;
        Some(self.bases.get(i >> OFFSET_BLOCK_BITS)? + u64::from(low))
    }

    fn len(&self) -> usize {
        self.low.len()
    }

    /// Keeps the first `n` entries.
    fn truncate(&mut self, n: usize) {
        self.low.truncate(n);
        self.bases.truncate(n.div_ceil(1 << OFFSET_BLOCK_BITS));
    }

    fn reserve(&mut self, n: usize) {
        self.low.reserve_exact(n);
        self.bases.reserve_exact((n >> OFFSET_BLOCK_BITS) + 1);
    }

    /// Drops unused capacity (after a file is read).
    fn shrink_to_fit(&mut self) {
        self.low.shrink_to_fit();
        self.bases.shrink_to_fit();
    }

    #[inline]
    fn prefetch(&self, i: usize) {
        crate::mem::prefetch(&self.low, i);
    }

    fn memory_bytes(&self) -> usize {
        self.low.capacity() * 4 + self.bases.capacity() * 8
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::dir::DiskDir;
    use std::fs::OpenOptions;

    #[test]
    fn ordinals_are_dense_first_seen_and_durable() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io("tmp", e))?;
        let p = dir.path().join("keys.dict");
        let mut d = KeyDict::create(&DiskDir, &p, KeyType::Varchar)?;
        let o = d.get_or_insert(["b", "a", "b", "c"].into_iter().map(Key::Str))?;
        assert_eq!(o, vec![0, 1, 0, 2]);
        let o = d.get_or_insert(["c", "d"].into_iter().map(Key::Str))?;
        assert_eq!(o, vec![2, 3]);
        assert!(d.get_or_insert([Key::Str("")].into_iter()).is_err());
        assert!(d.get_or_insert([Key::Int(3)].into_iter()).is_err());
        assert_eq!(d.len(), 4);
        drop(d);
        let d = KeyDict::open(&DiskDir, &p)?;
        assert_eq!(d.len(), 4);
        assert_eq!(d.key(3), Some(Key::Str("d")));
        assert_eq!(d.lookup(Key::Str("a")), Some(1));
        assert_eq!(d.lookup(Key::Str("zz")), None);
        Ok(())
    }

    /// A call that fails after adding keys in memory drops them again (`truncate`), whatever
    /// the key type: they are no longer found, and the next keys take their ordinals.
    #[test]
    fn keys_of_a_failed_call_are_dropped() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io("tmp", e))?;
        let mut d = KeyDict::create(&DiskDir, &dir.path().join("s.dict"), KeyType::Varchar)?;
        d.get_or_insert(["a", "b"].into_iter().map(Key::Str))?;
        assert!(d
            .get_or_insert(["c", "d", ""].into_iter().map(Key::Str))
            .is_err());
        assert_eq!(d.len(), 2);
        d.get_or_insert(["c", "d"].into_iter().map(Key::Str))?;
        d.truncate(2);
        assert_eq!(d.len(), 2);
        assert_eq!(d.lookup(Key::Str("c")), None);
        assert_eq!(d.lookup(Key::Str("b")), Some(1));
        assert_eq!(
            d.get_or_insert(["e", "c"].into_iter().map(Key::Str))?,
            vec![2, 3]
        );
        assert_eq!(d.key(3), Some(Key::Str("c")));
        let mut i = KeyDict::create(&DiskDir, &dir.path().join("i.dict"), KeyType::Bigint)?;
        i.get_or_insert([Key::Int(5), Key::Int(6), Key::Int(5)].into_iter())?;
        i.truncate(1);
        assert_eq!(i.lookup(Key::Int(6)), None);
        assert_eq!(
            i.get_or_insert([Key::Int(7), Key::Int(5)].into_iter())?,
            vec![1, 0]
        );
        Ok(())
    }

    /// Keys of many lengths over several offset blocks (2^16 ordinals each), a truncation inside
    /// and at a block's start, and a reopen: every key comes back at its ordinal, and the memory
    /// held after a reopen stays near the key bytes plus 4 + 10.7 bytes a key.
    #[test]
    fn offsets_span_blocks_and_truncate_across_them() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io("tmp", e))?;
        let p = dir.path().join("keys.dict");
        let key = |i: usize| format!("{i:x}{}", "k".repeat(i % 300));
        let n = 3 * 65_536 + 5;
        let mut d = KeyDict::create(&DiskDir, &p, KeyType::Varchar)?;
        let keys: Vec<String> = (0..n).map(key).collect();
        d.get_or_insert(keys.iter().map(|k| Key::Str(k)))?;
        for cut in [2 * 65_536 + 7, 65_536, 65_535] {
            d.truncate(cut as u32);
            assert_eq!(d.len() as usize, cut);
            assert_eq!(d.lookup(Key::Str(&key(cut))), None);
            let back = d.get_or_insert(keys[cut..].iter().map(|k| Key::Str(k)))?;
            assert_eq!(back, (cut as u32..n as u32).collect::<Vec<_>>());
        }
        // (A truncation follows a failed file write: this file now holds the keys re-added too.)
        drop(d);
        let p = dir.path().join("keys2.dict");
        let mut d = KeyDict::create(&DiskDir, &p, KeyType::Varchar)?;
        d.get_or_insert(keys.iter().map(|k| Key::Str(k)))?;
        drop(d);
        let d = KeyDict::open(&DiskDir, &p)?;
        assert_eq!(d.len() as usize, n);
        for i in (0..n).step_by(997).chain([65_535, 65_536, 131_072, n - 1]) {
            assert_eq!(d.key(i as u32), Some(Key::Str(&key(i))));
            assert_eq!(d.lookup(Key::Str(&key(i))), Some(i as u32));
        }
        let key_bytes: usize = keys.iter().map(String::len).sum();
        let over = (d.memory_bytes() - key_bytes) as f64 / n as f64;
        assert!(
            (14.0..16.0).contains(&over),
            "{over} bytes a key over the keys"
        );
        Ok(())
    }

    #[test]
    fn torn_tail_is_dropped_on_open() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io("tmp", e))?;
        let p = dir.path().join("keys.dict");
        let mut d = KeyDict::create(&DiskDir, &p, KeyType::Bigint)?;
        d.get_or_insert([Key::Int(10), Key::Int(-5)].into_iter())?;
        d.get_or_insert([Key::Int(7)].into_iter())?;
        drop(d);
        let len = std::fs::metadata(&p)
            .map_err(|e| StorageError::io(&p, e))?
            .len();
        let f = OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(|e| StorageError::io(&p, e))?;
        f.set_len(len - 3).map_err(|e| StorageError::io(&p, e))?;
        let mut d = KeyDict::open(&DiskDir, &p)?;
        assert_eq!(d.len(), 2);
        assert_eq!(d.get_or_insert([Key::Int(99)].into_iter())?, vec![2]);
        drop(d);
        let d = KeyDict::open(&DiskDir, &p)?;
        assert_eq!(d.key(2), Some(Key::Int(99)));
        Ok(())
    }
}
