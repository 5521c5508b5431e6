//! The key dictionary: external customer keys to dense `u32` ordinals, in first-seen order.
//!
//! In memory, VARCHAR keys live in one byte arena with a 4-byte end offset per ordinal
//! ([`Offsets`]; none while every key has the same length), and a [`KeyTable`] of ordinals finds a
//! key's ordinal by hashing the arena bytes: 4 bytes per key (0 for keys of one length) plus the
//! table's slots (8 bytes each, at least a third of them empty; about 11 bytes per key at 100M
//! keys) on top of the key bytes. BIGINT keys are a plain `Vec<i64>` with
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
        // The index is built once every key is in, on the worker pool: nothing else can reach
        // this dictionary yet (see `KeyTable::build_parallel`).
        let n = dict.len() as usize;
        dict.with_index(|t, hash_of| t.build_parallel(n, &hash_of));
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
    /// answers as [`KeyDict::lookup`], found in a software pipeline so that the cache misses of
    /// many keys overlap (see [`crate::keytable`]). Key `i` is hashed and its slot prefetched;
    /// `LAG` keys later its slot is read and where its key is (the offset, or the bytes once the
    /// offset is known) prefetched; `LAG` keys after that its bytes are prefetched through the
    /// offset; and `LAG` keys after that it is compared. A steady number of misses stays in
    /// flight; the earlier version took blocks of 64 keys in four passes, each pass waiting on
    /// the first misses of the one before (46-48 against 49-50 ns a key, an event log's keys at
    /// 10M keys of one length).
    pub fn lookup_batch<'k>(&self, n: usize, key: impl Fn(usize) -> Key<'k>) -> Vec<Option<u32>> {
        const LAG: usize = 16;
        const RING: usize = 64; // a power of two above 3 × LAG
        let mut out = Vec::with_capacity(n);
        let mut hashes = [0u64; RING];
        let mut cands = [None::<u32>; RING];
        let at = |i: usize| i & (RING - 1);
        let uniform = matches!(self.offsets, Offsets::Uniform { .. });
        for i in 0..n + 3 * LAG {
            if i < n {
                let h = self.hash(key(i));
                if let Some(x) = hashes.get_mut(at(i)) {
                    *x = h;
                }
                self.table.prefetch(h);
            }
            if let Some(j) = i.checked_sub(LAG).filter(|&j| j < n) {
                let h = hashes.get(at(j)).copied().unwrap_or(0);
                let c = self.table.first_candidate(h);
                if let Some(x) = cands.get_mut(at(j)) {
                    *x = c;
                }
                if let Some(o) = c {
                    match self.key_type {
                        KeyType::Varchar if uniform => self.prefetch_key(o),
                        KeyType::Varchar => self.offsets.prefetch(o as usize),
                        KeyType::Bigint => crate::mem::prefetch(&self.ints, o as usize),
                    }
                }
            }
            if let Some(j) = i.checked_sub(2 * LAG).filter(|&j| j < n) {
                if let (false, KeyType::Varchar, Some(Some(o))) =
                    (uniform, self.key_type, cands.get(at(j)))
                {
                    self.prefetch_key(*o);
                }
            }
            if let Some(j) = i.checked_sub(3 * LAG).filter(|&j| j < n) {
                let k = key(j);
                // A candidate that is another key (a shared tag) takes the full probe.
                out.push(match cands.get(at(j)).copied().flatten() {
                    Some(o) if self.is_key(o, k) => Some(o),
                    Some(_) => self.lookup(k),
                    None => None,
                });
            }
        }
        out
    }

    /// Prefetches the first bytes of VARCHAR key `o`.
    #[inline]
    fn prefetch_key(&self, o: u32) {
        let a = self.offsets.get(o as usize).unwrap_or(0);
        crate::mem::prefetch(&self.arena, a as usize);
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
    fn with_index<R>(
        &mut self,
        f: impl FnOnce(&mut KeyTable, &(dyn Fn(u32) -> u64 + Sync)) -> R,
    ) -> R {
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

/// The arena offsets of the keys: entry 0 is 0, entry `o + 1` is where key `o` ends.
///
/// While every key has the same length (zero-padded numbers, UUIDs, hashes: the usual customer
/// keys), entry `i` is `i × len` and nothing is stored. A lookup then reads the table slot and the
/// key's bytes, two cache misses instead of three (the offset is computed, not loaded): batched
/// lookups of an event log's keys at 10M keys went from 55-60 to 49-50 ns a key, and the
/// dictionary holds 4 bytes a key less. The first key of another length turns the
/// offsets into a table: entry `i` is `bases[i >> 16] + low[i]`, 4 bytes each (plain `u64`
/// offsets took a quarter of the dictionary's memory at 16-byte keys).
#[derive(Debug)]
enum Offsets {
    /// `entries` entries, entry `i` being `i × len` (`len` is 0 until the first key); room for
    /// `room` entries is reserved if they turn into a table.
    Uniform {
        len: u64,
        entries: usize,
        room: usize,
    },
    Table {
        low: Vec<u32>,
        bases: Vec<u64>,
    },
}

impl Offsets {
    fn new() -> Offsets {
        Offsets::Uniform {
            len: 0,
            entries: 1,
            room: 0,
        }
    }

    /// Appends entry `v` (not below the last one, and within 256 MiB of its block's first).
    fn push(&mut self, v: u64) {
        if let Offsets::Uniform { len, entries, .. } = self {
            let last = (*entries as u64 - 1) * *len;
            if *entries == 1 && v > 0 {
                *len = v;
                *entries = 2;
                return;
            }
            if v.checked_sub(last) == Some(*len) {
                *entries += 1;
                return;
            }
            self.make_table();
        }
        if let Offsets::Table { low, bases } = self {
            if low.len() & ((1 << OFFSET_BLOCK_BITS) - 1) == 0 {
                bases.push(v);
            }
            let base = bases.last().copied().unwrap_or(0);
            // Keys are at most KEY_LEN_MAX bytes (checked on insert and on load), so this fits.
            debug_assert!(v - base <= u64::from(u32::MAX));
            grow_by_quarter(low, 1);
            low.push((v - base) as u32);
        }
    }

    /// Stores the entries of uniform offsets as a table (a key of another length came).
    fn make_table(&mut self) {
        if let Offsets::Uniform { len, entries, room } = *self {
            let mut t = Offsets::Table {
                low: Vec::with_capacity(room.max(entries + entries / 4 + 1)),
                bases: Vec::with_capacity((entries >> OFFSET_BLOCK_BITS) + 1),
            };
            for i in 0..entries {
                t.push(i as u64 * len);
            }
            *self = t;
        }
    }

    #[inline]
    fn get(&self, i: usize) -> Option<u64> {
        match self {
            Offsets::Uniform { len, entries, .. } => (i < *entries).then(|| i as u64 * len),
            Offsets::Table { low, bases } => {
                let low = *low.get(i)?;
                Some(bases.get(i >> OFFSET_BLOCK_BITS)? + u64::from(low))
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Offsets::Uniform { entries, .. } => *entries,
            Offsets::Table { low, .. } => low.len(),
        }
    }

    /// Keeps the first `n` entries.
    fn truncate(&mut self, n: usize) {
        match self {
            Offsets::Uniform { entries, .. } => *entries = (*entries).min(n.max(1)),
            Offsets::Table { low, bases } => {
                low.truncate(n);
                bases.truncate(n.div_ceil(1 << OFFSET_BLOCK_BITS));
            }
        }
    }

    fn reserve(&mut self, n: usize) {
        match self {
            Offsets::Uniform { entries, room, .. } => *room = *entries + n,
            Offsets::Table { low, bases } => {
                low.reserve_exact(n);
                bases.reserve_exact((n >> OFFSET_BLOCK_BITS) + 1);
            }
        }
    }

    /// Drops unused capacity (after a file is read).
    fn shrink_to_fit(&mut self) {
        match self {
            Offsets::Uniform { room, .. } => *room = 0,
            Offsets::Table { low, bases } => {
                low.shrink_to_fit();
                bases.shrink_to_fit();
            }
        }
    }

    /// Brings entry `i` into the cache (nothing to load for uniform offsets).
    #[inline]
    fn prefetch(&self, i: usize) {
        if let Offsets::Table { low, .. } = self {
            crate::mem::prefetch(low, i);
        }
    }

    fn memory_bytes(&self) -> usize {
        match self {
            Offsets::Uniform { .. } => 0,
            Offsets::Table { low, bases } => low.capacity() * 4 + bases.capacity() * 8,
        }
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

    /// Keys of one length store no offsets; truncating keeps that; the first key of another
    /// length turns the offsets into a table (also in a file read on open), and every key keeps
    /// its ordinal through each step.
    #[test]
    fn keys_of_one_length_store_no_offsets_until_one_differs() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io("tmp", e))?;
        let p = dir.path().join("keys.dict");
        let key = |i: usize| format!("c{i:09}");
        let n = 2 * 65_536 + 11;
        let keys: Vec<String> = (0..n).map(key).collect();
        let mut d = KeyDict::create(&DiskDir, &p, KeyType::Varchar)?;
        d.get_or_insert(keys.iter().map(|k| Key::Str(k)))?;
        assert!(matches!(d.offsets, Offsets::Uniform { len: 10, .. }));
        let over = (d.memory_bytes() - 10 * n) as f64 / n as f64;
        assert!(over < 13.0, "{over} bytes a key over the keys");
        d.truncate(70_000);
        assert_eq!(d.lookup(Key::Str(&key(70_000))), None);
        assert_eq!(d.key(69_999), Some(Key::Str(&key(69_999))));
        let back = d.get_or_insert(keys[70_000..].iter().map(|k| Key::Str(k)))?;
        assert_eq!(back, (70_000..n as u32).collect::<Vec<_>>());
        assert!(matches!(d.offsets, Offsets::Uniform { .. }));
        drop(d);
        // (A truncation follows a failed file write: that file holds the keys re-added too.)
        // The keys from a file, then keys of other lengths.
        let p = dir.path().join("keys2.dict");
        let mut d = KeyDict::create(&DiskDir, &p, KeyType::Varchar)?;
        d.get_or_insert(keys.iter().map(|k| Key::Str(k)))?;
        drop(d);
        let mut d = KeyDict::open(&DiskDir, &p)?;
        assert!(matches!(d.offsets, Offsets::Uniform { len: 10, .. }));
        let odd = ["short", "a key of another length", "c12345678901"];
        let got = d.get_or_insert(odd.iter().map(|k| Key::Str(k)))?;
        assert_eq!(got, vec![n as u32, n as u32 + 1, n as u32 + 2]);
        assert!(matches!(d.offsets, Offsets::Table { .. }));
        drop(d);
        for d in [
            KeyDict::open(&DiskDir, &p)?,
            KeyDict::open_read_only(&DiskDir, &p)?,
        ] {
            assert!(matches!(d.offsets, Offsets::Table { .. }));
            assert_eq!(d.len() as usize, n + 3);
            for i in (0..n).step_by(4_099).chain([0, 65_535, 65_536, n - 1]) {
                assert_eq!(d.key(i as u32), Some(Key::Str(&key(i))));
                assert_eq!(d.lookup(Key::Str(&key(i))), Some(i as u32));
            }
            for (j, k) in odd.iter().enumerate() {
                assert_eq!(d.key((n + j) as u32), Some(Key::Str(k)));
                assert_eq!(d.lookup(Key::Str(k)), Some((n + j) as u32));
            }
            let found = d.lookup_batch(n + 4, |i| {
                Key::Str(keys.get(i).map_or_else(
                    || odd.get(i - n).copied().unwrap_or("no such key"),
                    String::as_str,
                ))
            });
            let want: Vec<Option<u32>> = (0..n as u32 + 3).map(Some).chain([None]).collect();
            assert_eq!(found, want);
        }
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
