//! Value block encodings: PLAIN, FOR (frame of reference + bit packing) and DICT (sorted dictionary +
//! bit-packed indices), optionally compressed with zstd. Used by segments (best encoding) and by the
//! write-ahead log (PLAIN, uncompressed): one encoder and one decoder for both. Layout: FORMAT.md
//! "Value block".

use std::path::Path;

use crate::error::Result;
use crate::format::{ByteReader, ByteWriter};
use crate::schema::ColumnType;
use crate::values::Values;

/// How the payload of a value block is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Fixed-width little-endian values (bit-packed booleans, length-prefixed strings).
    Plain = 0,
    /// Integers as `min` plus bit-packed offsets.
    For = 1,
    /// Integers as a sorted dictionary plus bit-packed indices.
    Dict = 2,
}

/// Whether the payload is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Stored as is.
    None = 0,
    /// zstd frame.
    Zstd = 1,
}

/// zstd level of segment blocks: level 3 is zstd's default, a good ratio at hundreds of MB/s.
pub const ZSTD_LEVEL: i32 = 3;

thread_local! {
    static ZSTD_C: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static ZSTD_D: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `raw` compressed at [`ZSTD_LEVEL`] with this thread's context (`None` if zstd fails).
/// `zstd::bulk::compress` and `decompress` create and free a context per call: in a journey
/// run's profile, creating decompression contexts alone took 1.3% of the time (a context per
/// block read), and a compression context costs more. The output is the same bytes.
pub(crate) fn zstd_compress(raw: &[u8]) -> Option<Vec<u8>> {
    ZSTD_C.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        c.as_mut()?.compress(raw).ok()
    })
}

/// `body` decompressed into at most `raw_len` bytes with this thread's context.
pub(crate) fn zstd_decompress(body: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    ZSTD_D.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(d) => d.decompress(body, raw_len),
            None => zstd::bulk::decompress(body, raw_len),
        }
    })
}
/// Largest decoded payload accepted from a block.
const PAYLOAD_LEN_MAX: usize = 1 << 31;

/// Bits needed to store `x`.
fn width_of(x: u64) -> u8 {
    (64 - x.leading_zeros()) as u8
}

/// Appends `vals`, each `width` bits, LSB first. Whole 8-byte words are written at once; the
/// bytes are the same as writing each byte as it fills.
fn pack(vals: impl Iterator<Item = u64>, width: u8, out: &mut Vec<u8>) {
    if width == 0 {
        return;
    }
    out.reserve(packed_len(vals.size_hint().0, width));
    let mut acc: u128 = 0;
    let mut bits: u32 = 0;
    for v in vals {
        acc |= (v as u128) << bits;
        bits += width as u32;
        if bits >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            bits -= 64;
        }
    }
    let tail = acc.to_le_bytes();
    out.extend_from_slice(tail.get(..bits.div_ceil(8) as usize).unwrap_or_default());
}

fn packed_len(n: usize, width: u8) -> usize {
    (n * width as usize).div_ceil(8)
}

/// Reads `n` values of `width` bits.
fn unpack(r: &mut ByteReader<'_>, n: usize, width: u8) -> Result<Vec<u64>> {
    unpack_with(r, n, width, |v| v)
}

/// Reads `n` values of `width` bits, each mapped by `f` as it is read (FOR adds its base here,
/// instead of in a second pass over a second vector). Values up to 56 bits wide are read with one
/// unaligned 8-byte load each (a value starts at most 7 bits into its first byte); wider ones
/// with a 16-byte load. Decoding is most of a scan that compares values (the (a) and (c)
/// queries of `journeydb bench`); this loop is about twice as fast as one that read every value
/// with 16 bytes and pushed it.
fn unpack_with<T>(
    r: &mut ByteReader<'_>,
    n: usize,
    width: u8,
    f: impl Fn(u64) -> T,
) -> Result<Vec<T>> {
    if width > 64 {
        return Err(r.error(format!("bit width {width} > 64")));
    }
    if width == 0 {
        return Ok((0..n).map(|_| f(0)).collect());
    }
    let bytes = r.bytes(packed_len(n, width))?;
    let w = width as usize;
    if w <= 56 {
        let mask = (1u64 << w) - 1;
        return Ok((0..n)
            .map(|i| {
                let bit = i * w;
                f((u64::from_le_bytes(le_bytes(bytes, bit / 8)) >> (bit % 8)) & mask)
            })
            .collect());
    }
    let mask: u128 = if width == 64 {
        u64::MAX as u128
    } else {
        (1u128 << width) - 1
    };
    Ok((0..n)
        .map(|i| {
            let bit = i * w;
            f(((u128::from_le_bytes(le_bytes(bytes, bit / 8)) >> (bit % 8)) & mask) as u64)
        })
        .collect())
}

/// The `N` bytes of `bytes` from `at`, zeros past its end.
#[inline]
fn le_bytes<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    match bytes.get(at..at + N) {
        Some(s) => <[u8; N]>::try_from(s).unwrap_or([0; N]),
        None => {
            let mut a = [0u8; N];
            let tail = bytes.get(at..).unwrap_or_default();
            if let Some(dst) = a.get_mut(..tail.len()) {
                dst.copy_from_slice(tail);
            }
            a
        }
    }
}

fn encode_plain(values: &Values, w: &mut ByteWriter) {
    match values {
        Values::Int(v) => put_words(v, |x| x.to_le_bytes(), &mut w.buf),
        Values::Float(v) => put_words(v, |x| x.to_bits().to_le_bytes(), &mut w.buf),
        Values::Bool(v) => pack(v.iter().map(|b| *b as u64), 1, &mut w.buf),
        Values::Str(v) => {
            v.iter().for_each(|s| w.u32(s.len() as u32));
            v.iter().for_each(|s| w.bytes(s.as_bytes()));
        }
    }
}

/// Appends each of `v` as 8 bytes, into space made once (a loop the compiler turns into wide
/// copies, where pushing value by value checked the capacity each time).
fn put_words<T: Copy>(v: &[T], bytes: impl Fn(T) -> [u8; 8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + v.len() * 8, 0);
    if let Some(dst) = out.get_mut(start..) {
        for (d, &x) in dst.chunks_exact_mut(8).zip(v) {
            d.copy_from_slice(&bytes(x));
        }
    }
}

/// Appends the PLAIN, uncompressed block of `values` to `out`: the bytes of
/// `encode_values(values, false)`, without building the payload apart first (the write-ahead log
/// writes every appended value this way).
pub fn encode_plain_block_into(values: &Values, out: &mut Vec<u8>) {
    let mut w = ByteWriter {
        buf: std::mem::take(out),
    };
    w.u8(Codec::None as u8);
    w.u8(Encoding::Plain as u8);
    w.u32(values.len() as u32);
    let len_at = w.buf.len();
    w.u32(0);
    let start = w.buf.len();
    encode_plain(values, &mut w);
    let raw_len = (w.buf.len() - start) as u32;
    if let Some(d) = w.buf.get_mut(len_at..len_at + 4) {
        d.copy_from_slice(&raw_len.to_le_bytes());
    }
    *out = w.buf;
}

fn decode_plain(r: &mut ByteReader<'_>, ty: ColumnType, n: usize) -> Result<Values> {
    Ok(match Values::empty(ty) {
        Values::Int(_) => Values::Int((0..n).map(|_| r.i64()).collect::<Result<_>>()?),
        Values::Float(_) => Values::Float(
            (0..n)
                .map(|_| r.u64().map(f64::from_bits))
                .collect::<Result<_>>()?,
        ),
        Values::Bool(_) => Values::Bool(unpack_with(r, n, 1, |b| b == 1)?),
        Values::Str(_) => {
            let lens: Vec<usize> = (0..n)
                .map(|_| r.u32().map(|l| l as usize))
                .collect::<Result<_>>()?;
            let mut out = Vec::with_capacity(n);
            for l in lens {
                let b = r.bytes(l)?;
                out.push(
                    std::str::from_utf8(b)
                        .map_err(|_| r.error("string is not UTF-8"))?
                        .to_string(),
                );
            }
            Values::Str(out)
        }
    })
}

fn encode_for(v: &[i64], w: &mut ByteWriter) {
    let min = v.iter().copied().min().unwrap_or(0);
    let max = v.iter().copied().max().unwrap_or(0);
    let width = width_of(max.wrapping_sub(min) as u64);
    w.i64(min);
    w.u8(width);
    pack(
        v.iter().map(|x| x.wrapping_sub(min) as u64),
        width,
        &mut w.buf,
    );
}

fn decode_for(r: &mut ByteReader<'_>, n: usize) -> Result<Vec<i64>> {
    let min = r.i64()?;
    let width = r.u8()?;
    unpack_with(r, n, width, |o| min.wrapping_add(o as i64))
}

/// Size in bytes of the DICT payload for `n` values with a dictionary of `ndict` distinct values
/// spanning `span` (`max - min`). It only grows with `ndict` and with `span`.
fn dict_len(n: usize, ndict: usize, span: u64) -> usize {
    4 + 9
        + packed_len(ndict, width_of(span))
        + 1
        + packed_len(n, width_of((ndict as u64).saturating_sub(1)))
}

/// A sorted dictionary of some values and, for each value, its index in it.
struct Dict {
    sorted: Vec<i64>,
    index: Vec<u32>,
}

/// Most distinct values [`smaller_dict`] counts with its hash table (a segment's column holds at
/// most a partition's rows, 2^18 by default); more fall back to a sort.
const DICT_HASHED_MAX: usize = 1 << 18;

/// The DICT layout of `v` if it is smaller than `for_len` bytes (the FOR layout), else `None`.
///
/// Written by hand because it runs once per column of every segment written (a quarter of a
/// MIN-merge's time went to sorting a copy of each column): distinct values are counted in a small
/// open-addressing set, and counting stops as soon as so many are seen that no dictionary could
/// beat FOR (`dict_len` only grows with the dictionary). Mostly distinct values (event times) stop
/// there after about half the column; sorting a copy of it, as this did for them until
/// 2026-12-07, took 5% of an event log's pivot. The table holds the values themselves, so a probe
/// is one cache miss, not two (a slot, then the value it pointed to, until 2026-12-07, session
/// 30). Past [`DICT_HASHED_MAX`] distinct values it sorts a copy instead. Either way the choice
/// and the bytes are those of comparing the exact DICT and FOR lengths.
fn smaller_dict(v: &[i64], for_len: usize) -> Option<Dict> {
    let mut set = ValueSet::new();
    let mut distinct: Vec<i64> = Vec::new();
    let mut index: Vec<u32> = Vec::with_capacity(v.len());
    let mut last: Option<(i64, u32)> = None;
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for &x in v {
        if let Some((lx, li)) = last {
            if lx == x {
                index.push(li);
                continue;
            }
        }
        let i = match set.find_or_add(x, distinct.len() as u32) {
            Some(i) => i,
            None => {
                if distinct.len() >= DICT_HASHED_MAX {
                    return smaller_dict_sorted(v, for_len);
                }
                distinct.push(x);
                (lo, hi) = (lo.min(x), hi.max(x));
                // The dictionary so far is a lower bound of the whole one.
                if dict_len(v.len(), distinct.len(), hi.wrapping_sub(lo) as u64) >= for_len {
                    return None;
                }
                distinct.len() as u32 - 1
            }
        };
        last = Some((x, i));
        index.push(i);
    }
    let mut order: Vec<u32> = (0..distinct.len() as u32).collect();
    order.sort_unstable_by_key(|&i| distinct.get(i as usize).copied().unwrap_or(0));
    let sorted: Vec<i64> = order
        .iter()
        .filter_map(|&i| distinct.get(i as usize).copied())
        .collect();
    let mut rank = vec![0u32; distinct.len()];
    for (r, &i) in order.iter().enumerate() {
        if let Some(x) = rank.get_mut(i as usize) {
            *x = r as u32;
        }
    }
    for i in &mut index {
        *i = rank.get(*i as usize).copied().unwrap_or(0);
    }
    Some(Dict { sorted, index })
}

/// An open-addressing map from `i64` values to their order of arrival, for [`smaller_dict`]: each
/// slot holds the value itself beside its number, so a probe reads one cache line. At most half
/// of the slots are used; `i64::MIN` marks an empty one (the value `i64::MIN` is kept apart).
struct ValueSet {
    slots: Vec<(i64, u32)>,
    len: usize,
    min: Option<u32>,
}

impl ValueSet {
    const EMPTY: i64 = i64::MIN;

    fn new() -> ValueSet {
        ValueSet {
            slots: vec![(Self::EMPTY, 0); 1024],
            len: 0,
            min: None,
        }
    }

    /// The slot holding `x`, or the empty one where it would go. Fibonacci hashing: the
    /// product's top bits are the well-mixed ones.
    #[inline]
    fn find(&self, x: i64) -> usize {
        let mask = self.slots.len() - 1;
        let shift = 64 - self.slots.len().trailing_zeros();
        let mut s = ((x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize;
        loop {
            match self.slots.get(s) {
                Some(&(y, _)) if y != x && y != Self::EMPTY => s = (s + 1) & mask,
                _ => return s,
            }
        }
    }

    /// `x`'s number if it is held; else adds it as number `next` and returns `None`.
    #[inline]
    fn find_or_add(&mut self, x: i64, next: u32) -> Option<u32> {
        if x == Self::EMPTY {
            let found = self.min;
            self.min = self.min.or(Some(next));
            return found;
        }
        let s = self.find(x);
        match self.slots.get_mut(s) {
            Some(slot) if slot.0 == Self::EMPTY => *slot = (x, next),
            Some(slot) => return Some(slot.1),
            None => return None,
        }
        self.len += 1;
        if self.len * 2 > self.slots.len() {
            let grown = vec![(Self::EMPTY, 0); self.slots.len() * 2];
            let old = std::mem::replace(&mut self.slots, grown);
            for e in old.into_iter().filter(|e| e.0 != Self::EMPTY) {
                let s = self.find(e.0);
                if let Some(slot) = self.slots.get_mut(s) {
                    *slot = e;
                }
            }
        }
        None
    }
}

/// [`smaller_dict`] for many distinct values: sort a copy, search each value.
fn smaller_dict_sorted(v: &[i64], for_len: usize) -> Option<Dict> {
    let mut sorted = v.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let span = match (sorted.first(), sorted.last()) {
        (Some(lo), Some(hi)) => hi.wrapping_sub(*lo) as u64,
        _ => 0,
    };
    if dict_len(v.len(), sorted.len(), span) >= for_len {
        return None;
    }
    // `sorted` holds every value of `v`, so the search always finds it.
    let index = v
        .iter()
        .map(|x| sorted.binary_search(x).unwrap_or(0) as u32)
        .collect();
    Some(Dict { sorted, index })
}

fn encode_dict_of(n: usize, d: &Dict, w: &mut ByteWriter) {
    w.u32(d.sorted.len() as u32);
    encode_for(&d.sorted, w);
    let width = width_of((d.sorted.len() as u64).saturating_sub(1));
    w.u8(width);
    debug_assert_eq!(d.index.len(), n);
    pack(d.index.iter().map(|&i| i as u64), width, &mut w.buf);
}

#[cfg(test)]
fn encode_dict(v: &[i64], dict: &[i64], w: &mut ByteWriter) {
    let index = v
        .iter()
        .map(|x| dict.binary_search(x).unwrap_or(0) as u32)
        .collect();
    let d = Dict {
        sorted: dict.to_vec(),
        index,
    };
    encode_dict_of(v.len(), &d, w);
}

fn decode_dict(r: &mut ByteReader<'_>, n: usize) -> Result<Vec<i64>> {
    let ndict = r.count(0)?;
    let dict = decode_for(r, ndict)?;
    let width = r.u8()?;
    let idx = unpack(r, n, width)?;
    idx.into_iter()
        .map(|i| {
            dict.get(i as usize)
                .copied()
                .ok_or_else(|| r.error(format!("dictionary index {i} >= {ndict}")))
        })
        .collect()
}

/// The encoding a value block declares (its second byte), without decoding it; `None` for a block
/// too short to have one or an unknown encoding.
pub fn block_encoding(block: &[u8]) -> Option<Encoding> {
    match block.get(1)? {
        0 => Some(Encoding::Plain),
        1 => Some(Encoding::For),
        2 => Some(Encoding::Dict),
        _ => None,
    }
}

/// Encodes `values` into a value block (header + payload). `best` picks the smallest encoding and
/// compresses with zstd when that is smaller; otherwise the block is PLAIN and uncompressed.
pub fn encode_values(values: &Values, best: bool) -> Vec<u8> {
    let mut payload = ByteWriter::new();
    let mut encoding = Encoding::Plain;
    match values {
        Values::Int(v) if best && !v.is_empty() => {
            let (lo, hi) = v
                .iter()
                .fold((i64::MAX, i64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            let for_len = 9 + packed_len(v.len(), width_of(hi.wrapping_sub(lo) as u64));
            match smaller_dict(v, for_len) {
                Some(d) => {
                    encoding = Encoding::Dict;
                    encode_dict_of(v.len(), &d, &mut payload);
                }
                None => {
                    encoding = Encoding::For;
                    encode_for(v, &mut payload);
                }
            }
        }
        _ => encode_plain(values, &mut payload),
    }
    let raw = payload.buf;
    let mut codec = Codec::None;
    let mut body = None;
    if best && raw.len() > 64 {
        if let Some(c) = zstd_compress(&raw) {
            if c.len() < raw.len() - raw.len() / 32 {
                codec = Codec::Zstd;
                body = Some(c);
            }
        }
    }
    let mut w = ByteWriter::new();
    w.u8(codec as u8);
    w.u8(encoding as u8);
    w.u32(values.len() as u32);
    w.u32(raw.len() as u32);
    w.bytes(body.as_deref().unwrap_or(&raw));
    w.buf
}

/// A value block's header and its payload, decompressed: `(encoding, count, payload, the payload's
/// offset in `path`)`.
fn payload<'b>(
    path: &'b Path,
    block: &'b [u8],
    block_offset: u64,
) -> Result<(u8, usize, std::borrow::Cow<'b, [u8]>, u64)> {
    let mut r = ByteReader::at(path, block, block_offset);
    let codec = r.u8()?;
    let encoding = r.u8()?;
    let n = r.u32()? as usize;
    let raw_len = r.u32()? as usize;
    let body_offset = r.offset();
    let body = r.bytes(r.remaining())?;
    let raw: std::borrow::Cow<'b, [u8]> = match codec {
        0 => std::borrow::Cow::Borrowed(body),
        1 => {
            if raw_len > PAYLOAD_LEN_MAX {
                return Err(r.error(format!("payload length {raw_len} too large")));
            }
            std::borrow::Cow::Owned(
                zstd_decompress(body, raw_len).map_err(|e| r.error(format!("zstd: {e}")))?,
            )
        }
        c => return Err(r.error(format!("unknown codec {c}"))),
    };
    if raw.len() != raw_len {
        return Err(r.error(format!(
            "payload is {} bytes, header says {raw_len}",
            raw.len()
        )));
    }
    Ok((encoding, n, raw, body_offset))
}

/// Decodes a value block of type `ty`; `block_offset` is its position in `path`, for errors.
pub fn decode_values(
    path: &Path,
    block: &[u8],
    block_offset: u64,
    ty: ColumnType,
) -> Result<Values> {
    let (encoding, n, raw, body_offset) = payload(path, block, block_offset)?;
    let mut p = ByteReader::at(path, &raw, body_offset);
    let values = match (encoding, ty) {
        (0, _) => decode_plain(&mut p, ty, n)?,
        (1, ColumnType::Timestamp | ColumnType::Bigint) => Values::Int(decode_for(&mut p, n)?),
        (2, ColumnType::Timestamp | ColumnType::Bigint) => Values::Int(decode_dict(&mut p, n)?),
        (e, t) => return Err(p.error(format!("encoding {e} is not valid for {t:?}"))),
    };
    p.finish()?;
    Ok(values)
}

/// A DICT value block as its dictionary (ascending distinct values) and each value's index into it,
/// without laying out the values: what grouping by value needs. `None` when the block is not DICT,
/// or its dictionary has more than `max` entries (found from the payload's first bytes, before the
/// indices are decompressed).
pub fn decode_dict_indices(
    path: &Path,
    block: &[u8],
    block_offset: u64,
    max: usize,
) -> Result<Option<(Vec<i64>, Vec<u32>)>> {
    if block_encoding(block) != Some(Encoding::Dict) {
        return Ok(None);
    }
    // The dictionary's size is the payload's first u32; a compressed payload is decompressed only
    // that far to read it.
    let mut head = [0u8; 4];
    let headed = match (block.first(), block.get(10..)) {
        (Some(0), Some(body)) => body.get(..4).map(|h| head.copy_from_slice(h)).is_some(),
        (Some(1), Some(body)) => {
            use std::io::Read as _;
            zstd::stream::read::Decoder::with_buffer(body)
                .and_then(|mut d| d.read_exact(&mut head))
                .is_ok()
        }
        _ => false,
    };
    if headed && u32::from_le_bytes(head) as usize > max {
        return Ok(None);
    }
    let (_, n, raw, body_offset) = payload(path, block, block_offset)?;
    let mut p = ByteReader::at(path, &raw, body_offset);
    let ndict = p.count(0)?;
    if ndict > max {
        return Ok(None);
    }
    let dict = decode_for(&mut p, ndict)?;
    let width = p.u8()?;
    let idx = unpack_with(&mut p, n, width, |i| i as u32)?;
    if let Some(bad) = idx.iter().find(|i| **i as usize >= ndict) {
        return Err(p.error(format!("dictionary index {bad} >= {ndict}")));
    }
    p.finish()?;
    Ok(Some((dict, idx)))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn round_trip(values: Values, ty: ColumnType) {
        for best in [false, true] {
            let block = encode_values(&values, best);
            let back = decode_values(Path::new("t"), &block, 0, ty);
            assert_eq!(back.ok().as_ref(), Some(&values), "best={best} {values:?}");
        }
    }

    #[test]
    fn int_edges_round_trip() {
        let ty = ColumnType::Timestamp;
        round_trip(Values::Int(vec![]), ty);
        round_trip(Values::Int(vec![42]), ty);
        round_trip(Values::Int(vec![i64::MIN, i64::MAX]), ty);
        round_trip(Values::Int(vec![i64::MAX; 1000]), ty);
        round_trip(Values::Int(vec![i64::MIN, 0, i64::MAX, -1, 1]), ty);
        round_trip(
            Values::Int(
                (0..10_000)
                    .map(|i| 1_700_000_000_000_000 + (i * 7919) % 86_400_000_000)
                    .collect(),
            ),
            ty,
        );
        round_trip(
            Values::Int(
                (0..10_000)
                    .map(|i| 1_700_000_000_000_000 + (i % 30) * 86_400_000_000)
                    .collect(),
            ),
            ty,
        );
    }

    /// Every bit width, at every bit offset of a byte (the 8-byte and 16-byte read paths and
    /// the last values, read past the end of the block).
    #[test]
    fn every_width_round_trips() {
        for width in 0..=64u8 {
            let max = if width == 64 {
                u64::MAX
            } else {
                (1u64 << width) - 1
            };
            let vals: Vec<u64> = (0..67u64)
                .map(|i| match i % 3 {
                    0 => max,
                    1 => i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & max,
                    _ => 0,
                })
                .collect();
            let mut buf = Vec::new();
            pack(vals.iter().copied(), width, &mut buf);
            let mut r = ByteReader::new(Path::new("t"), &buf);
            assert_eq!(
                unpack(&mut r, vals.len(), width).unwrap(),
                vals,
                "width {width}"
            );
        }
    }

    #[test]
    fn other_types_round_trip() {
        round_trip(Values::Float(vec![]), ColumnType::Double);
        round_trip(
            Values::Float(vec![0.0, -0.0, f64::MIN, f64::MAX, f64::INFINITY, 1.5]),
            ColumnType::Double,
        );
        round_trip(Values::Bool(vec![true]), ColumnType::Boolean);
        round_trip(
            Values::Bool((0..1001).map(|i| i % 3 == 0).collect()),
            ColumnType::Boolean,
        );
        round_trip(Values::Str(vec![]), ColumnType::Varchar);
        round_trip(
            Values::Str(vec!["".into(), "é".into(), "x".repeat(5000)]),
            ColumnType::Varchar,
        );
    }

    /// A DICT block's indices, raw or compressed; nothing for FOR, PLAIN, or too large a
    /// dictionary.
    #[test]
    fn dictionary_indices_of_dict_blocks_only() {
        let p = Path::new("t");
        let few: Vec<i64> = (0..50_000).map(|i| (i % 30) * 86_400_000_000).collect();
        for best in [true, false] {
            let block = encode_values(&Values::Int(few.clone()), best);
            let got = decode_dict_indices(p, &block, 0, 1024).unwrap();
            if !best {
                assert_eq!(got, None, "PLAIN");
                continue;
            }
            assert_eq!(block[0], 1, "compressed");
            let (dict, idx) = got.unwrap();
            assert_eq!(dict.len(), 30);
            let back: Vec<i64> = idx.iter().map(|i| dict[*i as usize]).collect();
            assert_eq!(back, few);
            assert_eq!(decode_dict_indices(p, &block, 0, 29).unwrap(), None);
        }
        // An uncompressed DICT block, laid out by hand.
        let small: Vec<i64> = vec![5, 1_000_000_000_000, 5];
        let mut w = ByteWriter::new();
        encode_dict(&small, &[5, 1_000_000_000_000], &mut w);
        let mut block = vec![0u8, Encoding::Dict as u8];
        block.extend_from_slice(&3u32.to_le_bytes());
        block.extend_from_slice(&(w.buf.len() as u32).to_le_bytes());
        block.extend_from_slice(&w.buf);
        assert_eq!(
            decode_values(p, &block, 0, ColumnType::Bigint).unwrap(),
            Values::Int(small)
        );
        let (dict, idx) = decode_dict_indices(p, &block, 0, 2).unwrap().unwrap();
        assert_eq!((dict, idx), (vec![5, 1_000_000_000_000], vec![0, 1, 0]));
        assert_eq!(decode_dict_indices(p, &block, 0, 1).unwrap(), None);
        let spread: Vec<i64> = (0..5000).map(|i| i * 7).collect();
        let block = encode_values(&Values::Int(spread), true);
        assert_eq!(block_encoding(&block), Some(Encoding::For));
        assert_eq!(decode_dict_indices(p, &block, 0, 1024).unwrap(), None);
    }

    /// The hashed dictionary chooses and lays out exactly what sorting a copy does (the encoding
    /// before it), for few and many distinct values, runs, extremes and spans that wrap.
    #[test]
    fn hashed_dictionary_matches_the_sorted_one() {
        let mut seed = 0x1234_5678_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut cases: Vec<Vec<i64>> = vec![
            vec![7],
            vec![i64::MIN, i64::MAX, 0, i64::MIN],
            // The set's empty marker as a value among many others.
            (0..50_000)
                .map(|i| {
                    if i % 7 == 0 {
                        i64::MIN
                    } else {
                        (i % 500) * 1000
                    }
                })
                .collect(),
            vec![3; 10_000],
            (0..100_000)
                .map(|i| 1_700_000_000_000_000 + (i % 30) * 3_600_000_000)
                .collect(),
            (0..200_000).map(|i| i / 1000).collect(),
            (0..150_000).map(|i| (i * 7919) % 70_000).collect(),
            (0..300_000).map(|i| (i % 80_000) << 20).collect(),
            // More distinct values than the hash table holds, where DICT still wins.
            (0..1_120_000).map(|i| ((i / 16) % 70_000) << 20).collect(),
            // Few distinct values first, then more than the hash table holds.
            (0..200_000)
                .map(|i| (if i < 10_000 { i % 100 } else { i }) << 20)
                .collect(),
        ];
        for distinct in [2u64, 100, 5000, 60_000, 1 << 20] {
            for n in [10usize, 1000, 100_000] {
                cases.push(
                    (0..n)
                        .map(|_| (next() % distinct) as i64 * 1000 - 5000)
                        .collect(),
                );
            }
        }
        for v in &cases {
            let (lo, hi) = (v.iter().min().unwrap(), v.iter().max().unwrap());
            let for_len = 9 + packed_len(v.len(), width_of(hi.wrapping_sub(*lo) as u64));
            let hashed = smaller_dict(v, for_len).map(|d| (d.sorted, d.index));
            let sorted = smaller_dict_sorted(v, for_len).map(|d| (d.sorted, d.index));
            assert_eq!(hashed, sorted, "{} values from {lo} to {hi}", v.len());
            let back = decode_values(
                Path::new("t"),
                &encode_values(&Values::Int(v.clone()), true),
                0,
                ColumnType::Bigint,
            )
            .unwrap();
            assert_eq!(back, Values::Int(v.clone()));
        }
    }

    #[test]
    fn plain_blocks_written_in_place_are_plain_blocks() {
        for v in [
            Values::Int(vec![]),
            Values::Int(vec![i64::MIN, -1, 0, 7, i64::MAX]),
            Values::Float(vec![0.5, -0.0, f64::NAN]),
            Values::Bool((0..13).map(|i| i % 3 == 0).collect()),
            Values::Str(vec!["".into(), "é".into(), "abc".into()]),
        ] {
            let mut out = vec![9u8, 9];
            encode_plain_block_into(&v, &mut out);
            assert_eq!(out[..2], [9, 9]);
            assert_eq!(out[2..], encode_values(&v, false)[..]);
        }
    }

    #[test]
    fn low_cardinality_timestamps_pick_dict_and_compress() {
        let v: Vec<i64> = (0..100_000)
            .map(|i| 1_700_000_000_000_000 + (i % 30) * 86_400_000_000)
            .collect();
        let block = encode_values(&Values::Int(v.clone()), true);
        assert!(
            block.len() < v.len(),
            "{} bytes for {} values",
            block.len(),
            v.len()
        );
    }

    #[test]
    fn malformed_blocks_are_errors_not_panics() {
        let block = encode_values(&Values::Int((0..1000).collect()), true);
        for cut in 0..block.len() {
            let _ = decode_values(Path::new("t"), &block[..cut], 0, ColumnType::Bigint);
            assert!(decode_values(Path::new("t"), &block[..cut], 0, ColumnType::Bigint).is_err());
        }
        assert!(decode_values(Path::new("t"), &block, 0, ColumnType::Double).is_err());
        let mut bad = block.clone();
        bad[1] = 9;
        assert!(decode_values(Path::new("t"), &bad, 0, ColumnType::Bigint).is_err());
    }
}
