//! The write-ahead log: every append is a record here, fsynced (with group commit) before it is
//! acknowledged, and replayed on open until a flush has put it in segments. Layout: FORMAT.md
//! "Write-ahead log".
//!
//! WAL files are named by a sequence number (`wal/{seq:020}.wal`). A flush starts a new file and the
//! manifest it commits records the first sequence still needed (`wal_start`); older files are deleted.
//! After a crash the engine never appends to an old file: it replays them and starts a new one, so a
//! torn record can only be the last one of its file.

use std::path::{Path, PathBuf};

use crate::dir::{Dir, OpenMode};
use crate::encoding::{decode_values, encode_plain_block_into};
use crate::error::{Result, StorageError};
use crate::format::{ByteReader, ByteWriter, FILE_HEADER_LEN, WAL_MAGIC, WAL_VERSION};
use crate::log::{read_header, read_records, LogFile};
use crate::schema::{ColumnId, ColumnType, TableId};
use crate::values::Values;

const RECORD_APPEND: u8 = 1;

/// Rows appended to one table, in arrival order, already mapped to ordinals.
#[derive(Debug, Clone, PartialEq)]
pub struct RowBatch {
    /// Target table.
    pub table: TableId,
    /// One ordinal per row.
    pub ordinals: Vec<u32>,
    /// The columns given in the append.
    pub columns: Vec<BatchColumn>,
}

/// One column of a [`RowBatch`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchColumn {
    /// Column id.
    pub id: ColumnId,
    /// Its type.
    pub ty: ColumnType,
    /// Per row: whether it has a value.
    pub valid: Vec<bool>,
    /// The values of the valid rows, in row order.
    pub values: Values,
}

/// Encodes an append record's payload.
pub fn encode_batch(b: &RowBatch) -> Vec<u8> {
    let mut w = ByteWriter::new();
    w.u8(RECORD_APPEND);
    w.u64(b.table.0);
    w.u32(b.ordinals.len() as u32);
    b.ordinals.iter().for_each(|o| w.u32(*o));
    w.u32(b.columns.len() as u32);
    for c in &b.columns {
        w.u32(c.id.0);
        w.u8(c.ty.tag());
        w.buf.extend(crate::values::validity_bytes(&c.valid));
        // The block's length goes before it: a placeholder, patched once the block is written.
        let len_at = w.buf.len();
        w.u32(0);
        encode_plain_block_into(&c.values, &mut w.buf);
        let len = (w.buf.len() - len_at - 4) as u32;
        if let Some(d) = w.buf.get_mut(len_at..len_at + 4) {
            d.copy_from_slice(&len.to_le_bytes());
        }
    }
    w.buf
}

/// Decodes an append record's payload (at `offset` of `path`, for errors).
pub fn decode_batch(path: &Path, payload: &[u8], offset: u64) -> Result<RowBatch> {
    let mut r = ByteReader::at(path, payload, offset);
    let kind = r.u8()?;
    if kind != RECORD_APPEND {
        return Err(r.error(format!("unknown WAL record kind {kind}")));
    }
    let table = TableId(r.u64()?);
    let n = r.count(4)?;
    let ordinals = (0..n).map(|_| r.u32()).collect::<Result<Vec<_>>>()?;
    let ncols = r.count(5)?;
    let mut columns = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        let id = ColumnId(r.u32()?);
        let tag = r.u8()?;
        let ty = ColumnType::from_tag(tag)
            .ok_or_else(|| r.error(format!("unknown column type {tag}")))?;
        let bits = r.bytes(n.div_ceil(8))?;
        let valid: Vec<bool> = (0..n)
            .map(|i| bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0))
            .collect();
        let block_offset = r.offset() + 4;
        let block = r.len_bytes()?;
        let values = decode_values(path, block, block_offset, ty)?;
        if values.len() != valid.iter().filter(|v| **v).count() {
            return Err(r.error("value count does not match the validity bits"));
        }
        columns.push(BatchColumn {
            id,
            ty,
            valid,
            values,
        });
    }
    r.finish()?;
    Ok(RowBatch {
        table,
        ordinals,
        columns,
    })
}

/// Path of WAL file `seq` in `dir`.
pub fn wal_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Sequence numbers of the WAL files in `dir`, ascending.
pub fn list_wal(fs: &dyn Dir, dir: &Path) -> Result<Vec<u64>> {
    let mut out: Vec<u64> = crate::dir::list(fs, dir)?
        .iter()
        .filter_map(|name| {
            name.strip_suffix(".wal")
                .and_then(|s| s.parse::<u64>().ok())
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Creates WAL file `seq`, synced with its directory, ready for appends.
pub fn create_wal(fs: &dyn Dir, dir: &Path, seq: u64) -> Result<LogFile> {
    let path = wal_path(dir, seq);
    let log = LogFile::create(
        fs,
        &path,
        OpenMode::Truncate,
        WAL_MAGIC,
        WAL_VERSION,
        0,
        &[],
    )?;
    crate::dir::sync_dir(fs, dir)?;
    Ok(log)
}

/// The bytes of a WAL file and its header (`None` for a file cut before its header was complete).
fn read_payloads(fs: &dyn Dir, path: &Path) -> Result<(Vec<u8>, Option<crate::log::LogHeader>)> {
    let bytes = crate::dir::read(fs, path)?;
    if bytes.len() < FILE_HEADER_LEN {
        // A crash while the file was being created: it never held a record.
        return Ok((bytes, None));
    }
    let h = read_header(path, &bytes, WAL_MAGIC, WAL_VERSION)?;
    // No WAL flag is defined: a set bit is damage (or a newer writer), never ignored.
    if h.flags != 0 {
        return Err(StorageError::corrupt(
            path,
            10,
            format!("unknown WAL flags {:#06x}", h.flags),
        ));
    }
    Ok((bytes, Some(h)))
}

/// Reads every good record of WAL file `seq` with the file offset where each record starts (a torn
/// tail ends it; corruption before the end is an error).
pub fn read_wal(fs: &dyn Dir, dir: &Path, seq: u64) -> Result<Vec<(u64, RowBatch)>> {
    read_wal_torn(fs, dir, seq).map(|(records, _)| records)
}

/// [`read_wal`], and whether the file ends in a torn tail (a file cut inside its header counts).
pub fn read_wal_torn(fs: &dyn Dir, dir: &Path, seq: u64) -> Result<(Vec<(u64, RowBatch)>, bool)> {
    let path = wal_path(dir, seq);
    let (bytes, h) = read_payloads(fs, &path)?;
    let Some(h) = h else {
        return Ok((Vec::new(), true));
    };
    let records = read_records(&path, &bytes, h)?;
    let header_len = if h.version >= crate::format::LOG_VERSION_SALTED {
        crate::format::RECORD_HEADER_LEN
    } else {
        crate::format::RECORD_HEADER_LEN_V1
    } as u64;
    let batches = records
        .payloads
        .into_iter()
        .map(|(off, p)| decode_batch(&path, p, off + header_len).map(|b| (off, b)))
        .collect::<Result<Vec<_>>>()?;
    Ok((batches, records.torn_tail))
}

/// Rewrites the good records of WAL file `seq` into a fresh file that atomically replaces it (after
/// a failed fsync, bytes in the page cache may never have reached the disk).
pub fn rewrite_wal(fs: &dyn Dir, dir: &Path, seq: u64) -> Result<()> {
    let path = wal_path(dir, seq);
    let (bytes, h) = read_payloads(fs, &path)?;
    let payloads: Vec<&[u8]> = match h {
        Some(h) => read_records(&path, &bytes, h)?
            .payloads
            .into_iter()
            .map(|(_, p)| p)
            .collect(),
        None => Vec::new(),
    };
    let tmp = path.with_extension("wal.tmp");
    LogFile::create(
        fs,
        &tmp,
        OpenMode::Truncate,
        WAL_MAGIC,
        WAL_VERSION,
        0,
        &payloads,
    )?;
    fs.rename(&tmp, &path)
        .map_err(|e| StorageError::io(&path, e))?;
    crate::dir::sync_dir(fs, dir)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip() -> Result<()> {
        let b = RowBatch {
            table: TableId(9),
            ordinals: vec![5, 1, 5, 70000],
            columns: vec![
                BatchColumn {
                    id: ColumnId(0),
                    ty: ColumnType::Timestamp,
                    valid: vec![true, false, true, true],
                    values: Values::Int(vec![1, i64::MIN, i64::MAX]),
                },
                BatchColumn {
                    id: ColumnId(2),
                    ty: ColumnType::Varchar,
                    valid: vec![false; 4],
                    values: Values::Str(vec![]),
                },
            ],
        };
        let p = encode_batch(&b);
        assert_eq!(decode_batch(Path::new("w"), &p, 0)?, b);
        for cut in 0..p.len() {
            assert!(decode_batch(Path::new("w"), &p[..cut], 0).is_err());
        }
        Ok(())
    }
}
