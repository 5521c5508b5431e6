//! Segments: the immutable columnar file of one table's rows in one partition, written by a flush or a
//! compaction. Byte layout: FORMAT.md "Segment file".
//!
//! The writer checks the data it is given (values match presence, ordinals in the partition) before
//! encoding; the reader verifies the trailer, footer checksum and header when it opens a file, and
//! each block's checksum before decoding it, so corrupt bytes surface as typed errors, never as data.

use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;

use crate::dir::{Dir, FileBytes};
use crate::encoding::{decode_values, encode_values};
use crate::error::{Result, StorageError};
use crate::format::{
    check_file_header, crc32, file_header, ByteReader, ByteWriter, FILE_HEADER_LEN, SEGMENT_MAGIC,
    SEGMENT_TRAILER_LEN, SEGMENT_VERSION,
};
use crate::schema::{ColumnId, ColumnType, PartitionId, SegmentId, TableId, TableSchema};
use crate::values::{ColumnData, Values};

/// One table's data in one partition: which ordinals have a row, and each column's values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartData {
    /// Ordinals with a row (a row may have every column NULL).
    pub rows: RoaringBitmap,
    /// Per column id: its values, or `None` when the column has no value here.
    pub columns: Vec<Option<ColumnData>>,
}

impl PartData {
    /// Checks that every column is consistent and within `rows`.
    pub fn is_consistent(&self) -> bool {
        self.columns
            .iter()
            .flatten()
            .all(|c| c.is_consistent() && c.presence.is_subset(&self.rows))
    }
}

/// Where a block sits in a segment file and its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    /// File offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
    /// CRC-32 of the bytes.
    pub crc: u32,
}

/// Min and max of a column's values in a segment (not kept for VARCHAR).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stats {
    /// TIMESTAMP / BIGINT.
    Int {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
    },
    /// DOUBLE (total order).
    Float {
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
    },
    /// BOOLEAN.
    Bool {
        /// Smallest value.
        min: bool,
        /// Largest value.
        max: bool,
    },
}

impl Stats {
    /// The statistics of the values of both; `None` for two different kinds.
    pub fn join(&self, other: &Stats) -> Option<Stats> {
        match (*self, *other) {
            (Stats::Int { min, max }, Stats::Int { min: a, max: b }) => Some(Stats::Int {
                min: min.min(a),
                max: max.max(b),
            }),
            (Stats::Float { min, max }, Stats::Float { min: a, max: b }) => Some(Stats::Float {
                min: if a.total_cmp(&min).is_lt() { a } else { min },
                max: if b.total_cmp(&max).is_gt() { b } else { max },
            }),
            (Stats::Bool { min, max }, Stats::Bool { min: a, max: b }) => Some(Stats::Bool {
                min: min && a,
                max: max || b,
            }),
            _ => None,
        }
    }
}

/// A column's entry in a segment footer.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentColumn {
    /// Column id in the table.
    pub id: ColumnId,
    /// Value type.
    pub ty: ColumnType,
    /// Number of values.
    pub count: u64,
    /// Min/max, when the segment has values of a type that keeps them.
    pub stats: Option<Stats>,
    /// The presence bitmap block.
    pub presence: BlockRef,
    /// The value block.
    pub values: BlockRef,
}

fn stats_of(values: &Values) -> Option<Stats> {
    match values {
        Values::Int(v) => Some(Stats::Int {
            min: *v.iter().min()?,
            max: *v.iter().max()?,
        }),
        Values::Float(v) => {
            let min = v.iter().copied().min_by(f64::total_cmp)?;
            let max = v.iter().copied().max_by(f64::total_cmp)?;
            Some(Stats::Float { min, max })
        }
        Values::Bool(v) => Some(Stats::Bool {
            min: v.iter().all(|b| *b),
            max: v.iter().any(|b| *b),
        }),
        Values::Str(_) => None,
    }
}

/// A bitmap block: codec (u8), raw length (u32), then the portable roaring serialization, raw or zstd.
fn encode_bitmap(b: &RoaringBitmap) -> Vec<u8> {
    let mut raw = Vec::with_capacity(b.serialized_size());
    // Serializing into a Vec cannot fail.
    let _ = b.serialize_into(&mut raw);
    let mut w = ByteWriter::new();
    let compressed = if raw.len() > 256 {
        crate::encoding::zstd_compress(&raw)
    } else {
        None
    };
    match compressed.filter(|c| c.len() < raw.len() - raw.len() / 16) {
        Some(c) => {
            w.u8(1);
            w.u32(raw.len() as u32);
            w.bytes(&c);
        }
        None => {
            w.u8(0);
            w.u32(raw.len() as u32);
            w.bytes(&raw);
        }
    }
    w.buf
}

fn decode_bitmap(path: &Path, block: &[u8], offset: u64) -> Result<RoaringBitmap> {
    let mut r = ByteReader::at(path, block, offset);
    let codec = r.u8()?;
    let raw_len = r.u32()? as usize;
    let body = r.bytes(r.remaining())?;
    let owned;
    let raw = match codec {
        0 => body,
        1 => {
            owned = crate::encoding::zstd_decompress(body, raw_len)
                .map_err(|e| r.error(format!("zstd: {e}")))?;
            owned.as_slice()
        }
        c => return Err(r.error(format!("unknown bitmap codec {c}"))),
    };
    if raw.len() != raw_len {
        return Err(r.error("bitmap length mismatch"));
    }
    RoaringBitmap::deserialize_from(raw).map_err(|e| r.error(format!("bad roaring bitmap: {e}")))
}

/// Encodes a segment's bytes. Checks the data first: a flush never writes what a read would reject.
pub fn encode_segment(
    table: TableId,
    id: SegmentId,
    partition: PartitionId,
    partition_rows: u32,
    schema: &TableSchema,
    part: &PartData,
) -> Result<Vec<u8>> {
    let lo = partition.0 as u64 * partition_rows as u64;
    let hi = lo + partition_rows as u64;
    let in_range = part.rows.min().is_none_or(|m| m as u64 >= lo)
        && part.rows.max().is_none_or(|m| (m as u64) < hi);
    if !part.is_consistent() || !in_range || part.columns.len() > schema.columns.len() {
        return Err(StorageError::InvalidBatch {
            table: format!("#{}", table.0),
            reason: "internal: inconsistent partition data given to the segment writer".into(),
        });
    }
    let mut out = ByteWriter::new();
    out.bytes(&file_header(SEGMENT_MAGIC, SEGMENT_VERSION, 0));
    let put = |out: &mut ByteWriter, block: Vec<u8>| -> BlockRef {
        let r = BlockRef {
            offset: out.buf.len() as u64,
            len: block.len() as u32,
            crc: crc32(&block),
        };
        out.bytes(&block);
        r
    };
    let rows_ref = put(&mut out, encode_bitmap(&part.rows));
    let mut cols = Vec::new();
    for (i, col) in part.columns.iter().enumerate() {
        let (Some(c), Some(def)) = (col, schema.columns.get(i)) else {
            continue;
        };
        if c.presence.is_empty() {
            continue;
        }
        if !c.values.fits(def.ty) {
            return Err(StorageError::InvalidSchema(format!(
                "column {} holds values of another type",
                def.name
            )));
        }
        let presence = put(&mut out, encode_bitmap(&c.presence));
        let values = put(&mut out, encode_values(&c.values, true));
        cols.push(SegmentColumn {
            id: ColumnId(i as u32),
            ty: def.ty,
            count: c.presence.len(),
            stats: stats_of(&c.values),
            presence,
            values,
        });
    }
    let mut f = ByteWriter::new();
    f.u64(table.0);
    f.u64(id.0);
    f.u32(partition.0);
    f.u64(part.rows.len());
    write_ref(&mut f, rows_ref);
    f.u32(cols.len() as u32);
    for c in &cols {
        f.u32(c.id.0);
        f.u8(c.ty.tag());
        f.u64(c.count);
        match c.stats {
            None => f.u8(0),
            Some(Stats::Int { min, max }) => {
                f.u8(1);
                f.i64(min);
                f.i64(max);
            }
            Some(Stats::Float { min, max }) => {
                f.u8(2);
                f.u64(min.to_bits());
                f.u64(max.to_bits());
            }
            Some(Stats::Bool { min, max }) => {
                f.u8(3);
                f.u64(min as u64);
                f.u64(max as u64);
            }
        }
        write_ref(&mut f, c.presence);
        write_ref(&mut f, c.values);
    }
    let footer = f.buf;
    out.bytes(&footer);
    out.u32(footer.len() as u32);
    out.u32(crc32(&footer));
    out.bytes(&SEGMENT_MAGIC);
    Ok(out.buf)
}

fn write_ref(w: &mut ByteWriter, r: BlockRef) {
    w.u64(r.offset);
    w.u32(r.len);
    w.u32(r.crc);
}

fn read_ref(r: &mut ByteReader<'_>) -> Result<BlockRef> {
    Ok(BlockRef {
        offset: r.u64()?,
        len: r.u32()?,
        crc: r.u32()?,
    })
}

/// Writes a segment file and fsyncs it (the directory is synced by the commit that publishes it).
pub fn write_segment_file(fs: &dyn Dir, path: &Path, bytes: &[u8]) -> Result<()> {
    crate::dir::write_new(fs, path, bytes).map(|_| ())
}

/// When [`Segment::value_groups`] builds a column's groups that are not built yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupsWhen {
    /// At once (GROUP BY and aggregates, which would otherwise hash every value).
    Now,
    /// From the second time they are asked for (a condition, which can read the values instead).
    Reused,
}

/// An open, verified segment file.
#[derive(Debug)]
pub struct Segment {
    /// Segment id.
    pub id: SegmentId,
    /// Table it belongs to.
    pub table: TableId,
    /// Its partition.
    pub partition: PartitionId,
    /// The file.
    pub path: PathBuf,
    /// Ordinals with a row.
    pub rows: RoaringBitmap,
    /// Columns with values, by id.
    pub columns: Vec<SegmentColumn>,
    /// Decoded presence bitmaps, per entry of `columns`, filled on first use: they are small (at most
    /// about one bit per row) and every predicate touches them; values are decoded per query.
    presence_cache: Vec<std::sync::OnceLock<RoaringBitmap>>,
    /// Per entry of `columns`: the ordinals of each distinct value, built on first use for columns of
    /// few distinct values (`None` once a column proved to have more). GROUP BY such a column then
    /// reads bitmaps instead of values.
    groups_cache: Vec<std::sync::OnceLock<Option<std::sync::Arc<crate::values::ValueGroups>>>>,
    /// Per entry of `columns`: how many times a reader could have used its groups but did not ask
    /// for them to be built (see [`Segment::value_groups`]).
    groups_asked: Vec<std::sync::atomic::AtomicU32>,
    map: FileBytes,
    /// Built in memory for a temporary table: it has no file (yet).
    unwritten: bool,
}

impl Segment {
    /// Maps and verifies a segment file (header, trailer, footer, row bitmap).
    pub fn open(fs: &dyn Dir, path: &Path) -> Result<Segment> {
        let map = fs.map(path).map_err(|e| StorageError::io(path, e))?;
        Self::from_map(path, map)
    }

    /// A segment held in memory only (a temporary table's), verified like a file's. `path` is where
    /// it would be written if the table is published.
    pub fn from_heap(path: &Path, bytes: Vec<u8>) -> Result<Segment> {
        let mut seg = Self::from_map(path, FileBytes::Heap(bytes.into()))?;
        seg.unwritten = true;
        Ok(seg)
    }

    /// The segment's bytes, as in its file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Whether it was built in memory for a temporary table and has no file.
    pub fn in_memory(&self) -> bool {
        self.unwritten
    }

    // long: one linear pass over the file layout (FORMAT.md order), each step a check.
    fn from_map(path: &Path, map: FileBytes) -> Result<Segment> {
        let bytes: &[u8] = &map;
        let len = bytes.len();
        if len < FILE_HEADER_LEN + SEGMENT_TRAILER_LEN {
            return Err(StorageError::corrupt(
                path,
                0,
                format!("file of {len} bytes is too short"),
            ));
        }
        let flags = check_file_header(
            path,
            bytes.get(..FILE_HEADER_LEN).unwrap_or(&[]),
            SEGMENT_MAGIC,
            SEGMENT_VERSION,
        )?;
        if flags != 0 {
            return Err(StorageError::corrupt(
                path,
                10,
                format!("unknown segment flags {flags:#x}"),
            ));
        }
        let trailer_at = len - SEGMENT_TRAILER_LEN;
        let mut t = ByteReader::at(
            path,
            bytes.get(trailer_at..).unwrap_or(&[]),
            trailer_at as u64,
        );
        let footer_len = t.u32()? as usize;
        let footer_crc = t.u32()?;
        if t.bytes(8)? != SEGMENT_MAGIC {
            return Err(StorageError::corrupt(
                path,
                trailer_at as u64 + 8,
                "bad trailer magic",
            ));
        }
        let footer_at = trailer_at
            .checked_sub(footer_len)
            .filter(|&a| a >= FILE_HEADER_LEN)
            .ok_or_else(|| {
                StorageError::corrupt(path, trailer_at as u64, "footer length out of range")
            })?;
        let footer = bytes.get(footer_at..trailer_at).unwrap_or(&[]);
        let got = crc32(footer);
        if got != footer_crc {
            return Err(StorageError::ChecksumMismatch {
                path: path.to_path_buf(),
                offset: footer_at as u64,
                expected: footer_crc,
                got,
            });
        }
        let mut f = ByteReader::at(path, footer, footer_at as u64);
        let table = TableId(f.u64()?);
        let id = SegmentId(f.u64()?);
        let partition = PartitionId(f.u32()?);
        let row_count = f.u64()?;
        let rows_ref = read_ref(&mut f)?;
        let ncols = f.count(1)?;
        let mut columns = Vec::with_capacity(ncols);
        for _ in 0..ncols {
            let cid = ColumnId(f.u32()?);
            let tag = f.u8()?;
            let ty = ColumnType::from_tag(tag)
                .ok_or_else(|| f.error(format!("unknown column type {tag}")))?;
            let count = f.u64()?;
            let stats = match f.u8()? {
                0 => None,
                1 => Some(Stats::Int {
                    min: f.i64()?,
                    max: f.i64()?,
                }),
                2 => Some(Stats::Float {
                    min: f64::from_bits(f.u64()?),
                    max: f64::from_bits(f.u64()?),
                }),
                3 => Some(Stats::Bool {
                    min: f.u64()? != 0,
                    max: f.u64()? != 0,
                }),
                s => return Err(f.error(format!("unknown stats kind {s}"))),
            };
            let presence = read_ref(&mut f)?;
            let values = read_ref(&mut f)?;
            columns.push(SegmentColumn {
                id: cid,
                ty,
                count,
                stats,
                presence,
                values,
            });
        }
        f.finish()?;
        let mut seg = Segment {
            id,
            table,
            partition,
            path: path.to_path_buf(),
            rows: RoaringBitmap::new(),
            presence_cache: columns.iter().map(|_| std::sync::OnceLock::new()).collect(),
            groups_cache: columns.iter().map(|_| std::sync::OnceLock::new()).collect(),
            groups_asked: columns
                .iter()
                .map(|_| std::sync::atomic::AtomicU32::new(0))
                .collect(),
            columns,
            map,
            unwritten: false,
        };
        let rows = decode_bitmap(path, seg.block(rows_ref)?, rows_ref.offset)?;
        if rows.len() != row_count {
            return Err(StorageError::corrupt(
                path,
                rows_ref.offset,
                "row bitmap does not match the row count",
            ));
        }
        seg.rows = rows;
        Ok(seg)
    }

    /// The bytes of a block, after checking bounds and checksum.
    fn block(&self, r: BlockRef) -> Result<&[u8]> {
        let end = r.offset.saturating_add(r.len as u64);
        let bytes = usize::try_from(r.offset)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(a, b)| self.map.get(a..b))
            .ok_or_else(|| {
                StorageError::corrupt(&self.path, r.offset, "block out of the file's bounds")
            })?;
        let got = crc32(bytes);
        if got != r.crc {
            return Err(StorageError::ChecksumMismatch {
                path: self.path.clone(),
                offset: r.offset,
                expected: r.crc,
                got,
            });
        }
        Ok(bytes)
    }

    /// Size of the file in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// The footer entry of column `id`, if the segment has values for it.
    pub fn column_meta(&self, id: ColumnId) -> Option<&SegmentColumn> {
        self.columns.iter().find(|c| c.id == id)
    }

    /// Decodes column `id` (checking both blocks' checksums and the declared type `ty`).
    pub fn column(&self, id: ColumnId, ty: ColumnType) -> Result<Option<ColumnData>> {
        let Some(meta) = self.column_meta(id) else {
            return Ok(None);
        };
        if meta.ty != ty {
            return Err(StorageError::corrupt(
                &self.path,
                0,
                format!("column {} is {:?}, the table says {ty:?}", id.0, meta.ty),
            ));
        }
        let presence = self.cached_presence(id, meta)?;
        let values = decode_values(&self.path, self.block(meta.values)?, meta.values.offset, ty)?;
        let data = ColumnData { presence, values };
        if !data.is_consistent()
            || data.presence.len() != meta.count
            || !data.presence.is_subset(&self.rows)
        {
            return Err(StorageError::corrupt(
                &self.path,
                meta.values.offset,
                "column values do not match its bitmap",
            ));
        }
        Ok(Some(data))
    }

    /// The ordinals of each distinct value of column `id` when it has at most
    /// [`crate::values::GROUPS_MAX`] distinct values (built once per segment, then cached); `None`
    /// for a column with more, or that this segment lacks. With [`GroupsWhen::Reused`], groups not
    /// built yet are built only when asked for the second time, and `None` answers the first
    /// time: building costs more than decoding the values once, so a column read once (a journey
    /// run's scratch table) is decoded, and a column read again (a table queried over and over) is
    /// grouped.
    pub fn value_groups(
        &self,
        id: ColumnId,
        ty: ColumnType,
        when: GroupsWhen,
    ) -> Result<Option<std::sync::Arc<crate::values::ValueGroups>>> {
        let Some(i) = self.columns.iter().position(|c| c.id == id) else {
            return Ok(None);
        };
        let Some(slot) = self.groups_cache.get(i) else {
            return Ok(None);
        };
        if let Some(g) = slot.get() {
            return Ok(g.clone());
        }
        if when == GroupsWhen::Reused {
            let asked = self
                .groups_asked
                .get(i)
                .map_or(0, |n| n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            if asked == 0 {
                return Ok(None);
            }
        }
        let Some(meta) = self.column_meta(id) else {
            return Ok(None);
        };
        if matches!(ty, ColumnType::Timestamp | ColumnType::Bigint) {
            // Integers and timestamps of few distinct values are DICT-encoded (the writer picks the
            // smaller encoding): the groups come from the dictionary indices, with no value laid
            // out or hashed, and a dictionary too large is seen from its size alone.
            let block = self.block(meta.values)?;
            match crate::encoding::decode_dict_indices(
                &self.path,
                block,
                meta.values.offset,
                crate::values::GROUPS_MAX,
            )? {
                Some((dict, idx)) => {
                    let presence = self.cached_presence(id, meta)?;
                    let groups = crate::values::ValueGroups::from_dict(dict, &idx, &presence)
                        .ok_or_else(|| {
                            StorageError::corrupt(
                                &self.path,
                                meta.values.offset,
                                "column values do not match its bitmap",
                            )
                        })?;
                    let groups = Some(std::sync::Arc::new(groups));
                    let _ = slot.set(groups.clone());
                    return Ok(groups);
                }
                None if crate::encoding::block_encoding(block)
                    == Some(crate::encoding::Encoding::Dict) =>
                {
                    let _ = slot.set(None);
                    return Ok(None);
                }
                // Not DICT: likely many distinct values. A condition reads the values instead of
                // decoding them only to find that out.
                None if when == GroupsWhen::Reused => return Ok(None),
                None => {}
            }
        }
        let Some(data) = self.column(id, ty)? else {
            return Ok(None);
        };
        let groups = crate::values::ValueGroups::build(&data).map(std::sync::Arc::new);
        let _ = slot.set(groups.clone());
        Ok(groups)
    }

    /// Decodes only the presence bitmap of column `id` (checking its checksum and the declared type).
    pub fn presence(&self, id: ColumnId, ty: ColumnType) -> Result<Option<RoaringBitmap>> {
        let Some(meta) = self.column_meta(id) else {
            return Ok(None);
        };
        if meta.ty != ty {
            return Err(StorageError::corrupt(
                &self.path,
                0,
                format!("column {} is {:?}, the table says {ty:?}", id.0, meta.ty),
            ));
        }
        self.cached_presence(id, meta).map(Some)
    }

    /// The presence bitmap of a column, decoded and checked once, then served from the cache.
    fn cached_presence(&self, id: ColumnId, meta: &SegmentColumn) -> Result<RoaringBitmap> {
        let slot = self
            .columns
            .iter()
            .position(|c| c.id == id)
            .and_then(|i| self.presence_cache.get(i));
        if let Some(b) = slot.and_then(|s| s.get()) {
            return Ok(b.clone());
        }
        let presence = decode_bitmap(&self.path, self.block(meta.presence)?, meta.presence.offset)?;
        if presence.len() != meta.count || !presence.is_subset(&self.rows) {
            return Err(StorageError::corrupt(
                &self.path,
                meta.presence.offset,
                "presence bitmap does not match the column's count",
            ));
        }
        if let Some(s) = slot {
            let _ = s.set(presence.clone());
        }
        Ok(presence)
    }

    /// Decodes every column of `schema` into a [`PartData`] (used by compaction and checks).
    pub fn read_all(&self, schema: &TableSchema) -> Result<PartData> {
        let mut columns = Vec::with_capacity(schema.columns.len());
        for (i, def) in schema.columns.iter().enumerate() {
            columns.push(self.column(ColumnId(i as u32), def.ty)?);
        }
        Ok(PartData {
            rows: self.rows.clone(),
            columns,
        })
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::dir::DiskDir;
    use crate::schema::ColumnDef;

    fn schema() -> TableSchema {
        TableSchema::new(
            "id",
            vec![
                ColumnDef::new("t", ColumnType::Timestamp),
                ColumnDef::new("s", ColumnType::Varchar),
                ColumnDef::new("b", ColumnType::Boolean),
                ColumnDef::new("d", ColumnType::Double),
            ],
        )
    }

    fn sample() -> PartData {
        let rows: RoaringBitmap = (65536..65536 + 1000).collect();
        let t = ColumnData {
            presence: (65536..65536 + 500).collect(),
            values: Values::Int((0..500).map(|i| i * 1_000_000).collect()),
        };
        let s = ColumnData {
            presence: [65537].into_iter().collect(),
            values: Values::Str(vec!["x".into()]),
        };
        PartData {
            rows,
            columns: vec![
                Some(t),
                Some(s),
                None,
                Some(ColumnData::empty(ColumnType::Double)),
            ],
        }
    }

    #[test]
    fn segment_round_trip() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io("tmp", e))?;
        let p = dir.path().join("1.seg");
        let part = sample();
        let bytes = encode_segment(
            TableId(3),
            SegmentId(1),
            PartitionId(1),
            65536,
            &schema(),
            &part,
        )?;
        write_segment_file(&DiskDir, &p, &bytes)?;
        let seg = Segment::open(&DiskDir, &p)?;
        assert_eq!((seg.table, seg.partition), (TableId(3), PartitionId(1)));
        let back = seg.read_all(&schema())?;
        assert_eq!(back.rows, part.rows);
        assert_eq!(back.columns[0], part.columns[0]);
        assert_eq!(back.columns[1], part.columns[1]);
        assert_eq!(back.columns[2], None);
        assert_eq!(back.columns[3], None, "empty columns are not stored");
        assert_eq!(
            seg.column_meta(ColumnId(0)).and_then(|c| c.stats),
            Some(Stats::Int {
                min: 0,
                max: 499_000_000
            })
        );
        Ok(())
    }

    #[test]
    fn all_set_all_null_and_single_value_columns() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io("tmp", e))?;
        let rows: RoaringBitmap = (0..65536).collect();
        let all_set = ColumnData {
            presence: rows.clone(),
            values: Values::Int(vec![i64::MIN; 65536]),
        };
        let one = ColumnData {
            presence: [65535].into_iter().collect(),
            values: Values::Str(vec!["only".into()]),
        };
        let bools = ColumnData {
            presence: rows.clone(),
            values: Values::Bool((0..65536).map(|i| i % 7 == 0).collect()),
        };
        let part = PartData {
            rows: rows.clone(),
            columns: vec![
                Some(all_set.clone()),
                Some(one.clone()),
                Some(bools.clone()),
                None,
            ],
        };
        let bytes = encode_segment(
            TableId(1),
            SegmentId(2),
            PartitionId(0),
            65536,
            &schema(),
            &part,
        )?;
        let p = dir.path().join("edge.seg");
        write_segment_file(&DiskDir, &p, &bytes)?;
        let back = Segment::open(&DiskDir, &p)?.read_all(&schema())?;
        assert_eq!(
            back.columns,
            vec![Some(all_set), Some(one), Some(bools), None]
        );
        assert!(
            bytes.len() < 4096,
            "a constant all-set column and a bool column take {} bytes",
            bytes.len()
        );
        // Every column NULL: only the rows bitmap is stored.
        let nulls = PartData {
            rows,
            columns: vec![None, None, None, None],
        };
        let bytes = encode_segment(
            TableId(1),
            SegmentId(3),
            PartitionId(0),
            65536,
            &schema(),
            &nulls,
        )?;
        write_segment_file(&DiskDir, &p, &bytes)?;
        let seg = Segment::open(&DiskDir, &p)?;
        assert!(seg.columns.is_empty());
        assert_eq!(seg.rows.len(), 65536);
        Ok(())
    }

    #[test]
    fn out_of_partition_rows_are_refused() {
        let part = sample();
        assert!(encode_segment(
            TableId(3),
            SegmentId(1),
            PartitionId(0),
            65536,
            &schema(),
            &part
        )
        .is_err());
    }

    #[test]
    fn every_flipped_byte_is_detected() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::io("tmp", e))?;
        let part = sample();
        let bytes = encode_segment(
            TableId(3),
            SegmentId(1),
            PartitionId(1),
            65536,
            &schema(),
            &part,
        )?;
        let p = dir.path().join("x.seg");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5a;
            write_segment_file(&DiskDir, &p, &bad)?;
            let outcome = Segment::open(&DiskDir, &p).and_then(|s| s.read_all(&schema()));
            assert!(
                outcome.is_err(),
                "flipping byte {i} of {} went unnoticed",
                bytes.len()
            );
        }
        Ok(())
    }

    /// Value groups of integer columns: from the dictionary of a DICT block (a condition asks twice
    /// before they are built), never for a FOR block when a condition asks, and `None` for a
    /// dictionary larger than the limit.
    #[test]
    fn value_groups_come_from_dictionaries() -> Result<()> {
        use crate::encoding::{block_encoding, Encoding};
        use crate::values::{ValueGroups, GROUPS_MAX};
        let n = 20_000u32;
        let schema = TableSchema::new(
            "id",
            vec![
                ColumnDef::new("few", ColumnType::Timestamp),
                ColumnDef::new("spread", ColumnType::Bigint),
                ColumnDef::new("many", ColumnType::Timestamp),
            ],
        );
        let rows: RoaringBitmap = (65536..65536 + n).collect();
        let every_other: RoaringBitmap = rows.iter().step_by(2).collect();
        let col = |presence: &RoaringBitmap, f: &dyn Fn(u32) -> i64| ColumnData {
            presence: presence.clone(),
            values: Values::Int(presence.iter().map(f).collect()),
        };
        let few = col(&every_other, &|o| (o as i64 * 7919 % 7) * 3_600_000_000);
        let spread = col(&rows, &|o| o as i64 * 1_000_003);
        let many = col(&rows, &|o| (o as i64 % 1500) * 1_000_000);
        let part = PartData {
            rows,
            columns: vec![Some(few.clone()), Some(spread), Some(many)],
        };
        let dir = tempfile::tempdir().map_err(|e| StorageError::io("tmp", e))?;
        let p = dir.path().join("1.seg");
        let bytes = encode_segment(
            TableId(1),
            SegmentId(1),
            PartitionId(1),
            65536,
            &schema,
            &part,
        )?;
        write_segment_file(&DiskDir, &p, &bytes)?;
        let encoding = |seg: &Segment, c: u32| {
            let meta = seg.column_meta(ColumnId(c)).unwrap();
            block_encoding(seg.block(meta.values).unwrap())
        };
        let seg = Segment::open(&DiskDir, &p)?;
        assert_eq!(encoding(&seg, 0), Some(Encoding::Dict));
        assert_eq!(encoding(&seg, 1), Some(Encoding::For));
        assert_eq!(encoding(&seg, 2), Some(Encoding::Dict));

        let ts = ColumnType::Timestamp;
        assert!(
            seg.value_groups(ColumnId(0), ts, GroupsWhen::Reused)?
                .is_none(),
            "first ask"
        );
        let g = seg
            .value_groups(ColumnId(0), ts, GroupsWhen::Reused)?
            .unwrap();
        // The same groups as grouping the decoded values (in another order: ascending here).
        let by_value = |g: &ValueGroups| {
            let Values::Int(k) = &g.keys else {
                panic!("int keys")
            };
            let mut v: Vec<(i64, RoaringBitmap)> =
                k.iter().copied().zip(g.bitmaps.iter().cloned()).collect();
            v.sort_by_key(|x| x.0);
            v
        };
        let want = ValueGroups::build(&few).unwrap();
        assert_eq!(by_value(&g), by_value(&want));
        assert_eq!(g.bitmaps.len(), 7);

        // A fresh segment builds at once for GROUP BY, and the FOR column never for a condition.
        let seg = Segment::open(&DiskDir, &p)?;
        let now = seg.value_groups(ColumnId(0), ts, GroupsWhen::Now)?.unwrap();
        assert_eq!(by_value(&now), by_value(&want));
        for _ in 0..3 {
            let spread = seg.value_groups(ColumnId(1), ColumnType::Bigint, GroupsWhen::Reused)?;
            assert!(spread.is_none());
        }
        assert!(
            seg.value_groups(ColumnId(1), ColumnType::Bigint, GroupsWhen::Now)?
                .is_none(),
            "more than {GROUPS_MAX} values"
        );
        // A dictionary of 1,500 values: too many, whoever asks.
        assert!(seg
            .value_groups(ColumnId(2), ts, GroupsWhen::Now)?
            .is_none());
        let seg = Segment::open(&DiskDir, &p)?;
        for _ in 0..3 {
            assert!(seg
                .value_groups(ColumnId(2), ts, GroupsWhen::Reused)?
                .is_none());
        }
        Ok(())
    }
}
