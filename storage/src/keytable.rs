//! The key dictionary's hash index: open addressing with linear probing over one `u64` per slot,
//! which packs the upper 32 bits of the key's hash (a tag) with the key's ordinal.
//!
//! Written here rather than taken from hashbrown because of how the dictionary is probed: a bulk
//! load looks up millions of keys spread at random over a table far larger than the caches, so
//! each lookup is a chain of three cache misses (the slot, the key's offset, the key's bytes).
//! hashbrown finds one key at a time, so those chains run one after another (about 95 ns a key
//! at 10M keys on the bench machine). `KeyDict::lookup_batch` pipelines them: a key's slot is
//! prefetched ([`KeyTable::prefetch`]) some keys before it is read, its offset (if keys differ in
//! length) and its bytes some keys after that, so the misses of many keys overlap (about 46 ns a
//! key at 10M keys probed in an event log's order, 22-28 ns for keys that stay in cache;
//! `benches/benches/keydict.rs`). With the tag in the slot, a probe reads
//! key bytes only for a slot whose tag matches: almost always the key itself. The table holds
//! exactly the ordinals `0..len` (the dictionary is dense), so growing re-inserts ordinals in
//! order from their keys and never reads the old slots. The slots ask for huge pages
//! ([`crate::mem::huge_pages`]). On open the table is built on the worker pool
//! ([`KeyTable::build_parallel`]): 10M keys opened in 0.78-0.84 s against 1.09-1.12 s on one
//! thread (2 cores).
//!
//! The table need not have a power-of-two size: a hash's first slot is its low 40 bits scaled to
//! the table (a multiply and a shift, not a mask). A table built for `n` keys (on open) has
//! `4n/3` slots, about 10.7 bytes per key; one that grows does so by half, so it stays between
//! half and three quarters full. With power-of-two sizes the slots took 10.7 to 21.3 bytes per
//! key depending on where `n` fell, a third of the dictionary's memory at worst.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// An empty slot. No entry equals it: ordinals stop below `u32::MAX`.
const EMPTY: u64 = u64::MAX;

/// Fewest keys [`KeyTable::build_parallel`] splits among the workers.
const PARALLEL_MIN: usize = 1 << 20;

/// The largest ordinal the table holds.
pub const ORDINAL_MAX: u32 = u32::MAX - 1;

#[inline]
fn tag(h: u64) -> u64 {
    h >> 32
}

#[inline]
fn entry(h: u64, ordinal: u32) -> u64 {
    (tag(h) << 32) | u64::from(ordinal)
}

/// An index from key hashes to ordinals; the keys themselves live in the dictionary.
///
/// The slots are atomics so that [`KeyTable::build_parallel`] can place entries from several
/// threads with no unsafe code; every other access is a relaxed load or store, the same
/// instructions as a plain `u64` on x86_64 and aarch64.
#[derive(Debug, Default)]
pub struct KeyTable {
    slots: Vec<AtomicU64>,
    len: usize,
}

impl KeyTable {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of memory held.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * 8
    }

    /// The first slot of `h`'s probe sequence: its low 40 bits scaled to the table's size
    /// (the tag is bits 32..64, so slot and tag share only 8 bits).
    #[inline]
    fn home(&self, h: u64) -> usize {
        (((h & ((1 << 40) - 1)) as u128 * self.slots.len() as u128) >> 40) as usize
    }

    /// The slot after `i`, wrapping at the end.
    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 >= self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    /// Makes room for `additional` more entries (at most three quarters of the slots are used);
    /// `hash_of(o)` gives the hash of ordinal `o`'s key.
    pub fn reserve(&mut self, additional: usize, hash_of: impl Fn(u32) -> u64) {
        let want = self.len.saturating_add(additional);
        if want.saturating_mul(4) <= self.slots.len().saturating_mul(3) {
            return;
        }
        // Exactly enough for `want` when built at once; half again as many when growing, so
        // that inserting one key at a time rebuilds the table only every so often.
        let grown = if self.slots.is_empty() {
            0
        } else {
            self.slots.len().saturating_mul(3) / 2
        };
        let cap = (want.saturating_mul(4) / 3 + 1).max(grown).max(16);
        self.slots = empty_slots(cap);
        self.place_all(hash_of);
    }

    /// Holds ordinals `0..n` (a dictionary just read from its file), sized for `n`.
    pub fn build(&mut self, n: usize, hash_of: impl Fn(u32) -> u64) {
        self.slots = Vec::new();
        self.len = n;
        self.reserve(0, hash_of);
    }

    /// [`KeyTable::build`] with the work split among the worker pool's threads: each places a
    /// range of ordinals, claiming empty slots with a compare-and-swap. Linear probing without
    /// deletions finds every entry whatever order they were placed in, so the table answers as
    /// one built on one thread (its slots may differ). About half of a 10M-key open, and at 100M
    /// keys the reopen's largest step. Only for a dictionary no other thread can reach yet (on
    /// open): a pool task must never wait on a lock its submitter holds.
    pub fn build_parallel(&mut self, n: usize, hash_of: &(impl Fn(u32) -> u64 + Sync)) {
        let threads = crate::workers::threads();
        if threads <= 1 || n < PARALLEL_MIN {
            return self.build(n, hash_of);
        }
        self.len = n;
        self.slots = empty_slots((n.saturating_mul(4) / 3 + 1).max(16));
        let pieces = threads * 4;
        let ranges: Vec<(u32, u32)> = (0..pieces)
            .map(|i| ((n * i / pieces) as u32, (n * (i + 1) / pieces) as u32))
            .collect();
        let placed = crate::workers::map(&ranges, |&(a, b)| {
            self.place_range(a, b, hash_of, Placing::Shared)
        });
        if placed.iter().any(Result::is_err) {
            // A range that panicked may be missing: build again on this thread.
            self.build(n, hash_of);
        }
    }

    /// Places ordinals `0..len` in the (empty) slots.
    fn place_all(&mut self, hash_of: impl Fn(u32) -> u64) {
        self.place_range(0, self.len as u32, &hash_of, Placing::Alone);
    }

    /// Places ordinals `start..end`, a block at a time: the hashes, then a prefetch of each first
    /// slot (misses that overlap), then the placing.
    fn place_range(&self, start: u32, end: u32, hash_of: &impl Fn(u32) -> u64, how: Placing) {
        const BLOCK: u32 = 64;
        let mut hashes = [0u64; BLOCK as usize];
        let mut start = start;
        while start < end {
            let m = BLOCK.min(end - start);
            for (j, h) in hashes.iter_mut().enumerate().take(m as usize) {
                *h = hash_of(start + j as u32);
            }
            for h in hashes.iter().take(m as usize) {
                self.prefetch(*h);
            }
            for (j, h) in hashes.iter().enumerate().take(m as usize) {
                self.place(entry(*h, start + j as u32), *h, how);
            }
            start += m;
        }
    }

    /// Puts an entry in the first empty slot of its probe sequence (the table has room). With
    /// [`Placing::Shared`] it claims the slot with a compare-and-swap, since other threads may be
    /// placing entries too; alone, a plain store does (no locked instruction on the insert path).
    fn place(&self, e: u64, h: u64, how: Placing) {
        let mut i = self.home(h);
        loop {
            let Some(s) = self.slots.get(i) else {
                return;
            };
            if s.load(Relaxed) == EMPTY {
                match how {
                    Placing::Alone => {
                        s.store(e, Relaxed);
                        return;
                    }
                    Placing::Shared => {
                        if s.compare_exchange(EMPTY, e, Relaxed, Relaxed).is_ok() {
                            return;
                        }
                    }
                }
            }
            i = self.next(i);
        }
    }

    /// Adds ordinal `o` (= `len`, the next one) with hash `h`.
    pub fn insert(&mut self, h: u64, o: u32, hash_of: impl Fn(u32) -> u64) {
        self.reserve(1, hash_of);
        self.place(entry(h, o), h, Placing::Alone);
        self.len += 1;
    }

    /// The ordinal whose key `is(o)` says is the one hashed to `h`.
    #[inline]
    pub fn find(&self, h: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = self.home(h);
        loop {
            let s = self.slots.get(i)?.load(Relaxed);
            if s == EMPTY {
                return None;
            }
            if s >> 32 == tag(h) && is(s as u32) {
                return Some(s as u32);
            }
            i = self.next(i);
        }
    }

    /// Prefetches the first slot of `h`'s probe sequence (for the first pass over a block).
    #[inline]
    pub fn prefetch(&self, h: u64) {
        crate::mem::prefetch(&self.slots, self.home(h));
    }

    /// The first ordinal on `h`'s probe sequence whose tag matches: `None` when the key is
    /// certainly absent, else a candidate whose key must still be compared (when it differs,
    /// [`KeyTable::find`] goes on past it).
    #[inline]
    pub fn first_candidate(&self, h: u64) -> Option<u32> {
        self.find(h, |_| true)
    }
}

/// Whether other threads place entries in the same table at the same time.
#[derive(Debug, Clone, Copy)]
enum Placing {
    /// Only this thread: the caller holds the table mutably.
    Alone,
    /// Several threads ([`KeyTable::build_parallel`]).
    Shared,
}

/// `cap` empty slots, backed by huge pages where the system gives them.
fn empty_slots(cap: usize) -> Vec<AtomicU64> {
    let mut slots = Vec::with_capacity(cap);
    crate::mem::huge_pages(&mut slots);
    slots.resize_with(cap, || AtomicU64::new(EMPTY));
    slots
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_ordinal_through_growth_and_collisions() {
        // A weak hash: many keys share a tag and a first slot.
        let hash = |o: u32| u64::from(o % 97).wrapping_mul(0x9E37_79B9_0000_0001);
        let mut t = KeyTable::default();
        for o in 0..5_000u32 {
            t.insert(hash(o), o, hash);
        }
        assert_eq!(t.len(), 5_000);
        for o in 0..5_000u32 {
            assert_eq!(t.find(hash(o), |c| c == o), Some(o));
        }
        assert_eq!(t.find(hash(3), |_| false), None);
        // A candidate is one with a matching tag.
        let c = t.first_candidate(hash(5)).unwrap();
        assert_eq!(hash(c), hash(5));
    }

    #[test]
    fn a_table_built_on_many_threads_finds_what_one_built_on_one_does() {
        // Many keys share a first slot, so the threads' probe sequences cross one another.
        let hash =
            |o: u32| u64::from(o % 100_003).wrapping_mul(0x9E37_79B9_0000_0001) ^ u64::from(o);
        let n = PARALLEL_MIN + 12_345;
        let mut one = KeyTable::default();
        one.build(n, hash);
        let mut many = KeyTable::default();
        many.build_parallel(n, &hash);
        assert_eq!(many.len(), n);
        assert_eq!(many.slots.len(), one.slots.len());
        let used = |t: &KeyTable| t.slots.iter().filter(|s| s.load(Relaxed) != EMPTY).count();
        assert_eq!(used(&many), n);
        for o in (0..n as u32).step_by(7).chain([0, n as u32 - 1]) {
            assert_eq!(many.find(hash(o), |c| c == o), Some(o), "ordinal {o}");
            assert_eq!(one.find(hash(o), |c| c == o), Some(o));
        }
        assert_eq!(many.find(hash(n as u32), |c| c == n as u32), None);
    }
}
