//! Event logs (`customer_id, event, time, ..`) pivoted into one row per customer: a `MIN`
//! TIMESTAMP column per event value (the first occurrence) and, when asked, a `SUM` BIGINT count
//! column `<event>_count`. Each event becomes a row that sets its event's columns; the table's
//! merge rules fold the rows of a customer, so a pivot is an ordinary bulk load.
//!
//! Column names come from event values: lower-cased, every character outside `[a-z0-9_]` replaced
//! by `_`, and `e_` put in front of a name that would start with a digit or be empty.

use std::collections::BTreeMap;

use arrow_array::{Array, ArrayRef, TimestampMicrosecondArray};
use journeydb_storage::schema::ColumnType;

use crate::convert::{convert_array, ConvertOptions, Reject};
use crate::read::Piece;
use crate::{IoError, Result};

/// Which columns of the log hold what.
#[derive(Debug, Clone)]
pub struct EventSpec {
    /// The customer key column (named like the table's key in the output).
    pub key: String,
    /// The table's key column name.
    pub table_key: String,
    /// The key's type (BIGINT or VARCHAR).
    pub key_type: ColumnType,
    /// The event name column.
    pub event: String,
    /// The event time column.
    pub time: String,
    /// Also count events per customer (`<event>_count`, SUM).
    pub count: bool,
}

/// The column an event value becomes.
pub fn event_column(value: &str) -> String {
    let mut s: String = value
        .trim()
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "e_");
    }
    s
}

/// The columns (name, type, rule name) a pivot of these event columns writes.
pub fn columns_for(events: &[String], count: bool) -> Vec<(String, ColumnType, &'static str)> {
    let mut out = Vec::new();
    for e in events {
        out.push((e.clone(), ColumnType::Timestamp, "MIN"));
        if count {
            out.push((format!("{e}_count"), ColumnType::Bigint, "SUM"));
        }
    }
    out
}

fn col_index(piece: &Piece, name: &str) -> Result<usize> {
    piece
        .batch
        .schema()
        .fields()
        .iter()
        .position(|f| f.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| IoError::Invalid(format!("{}: no column {name}", piece.file.display())))
}

/// One piece pivoted: per good row, its key, the index of its event column, and its time.
#[derive(Debug)]
pub struct Pivoted {
    /// The keys of the rows kept (the table's key type).
    pub keys: ArrayRef,
    /// Per row kept, its event column's index in `events`.
    pub kinds: Vec<u16>,
    /// Per row kept, its event time (UTC microseconds).
    pub times: Vec<i64>,
    /// The event columns of the piece (column names, see [`event_column`]), by kind.
    pub events: Vec<String>,
    /// The rows set aside.
    pub rejects: Vec<Reject>,
}

/// Event names seen in a piece and the event column of each. A log has few names, so a row's is
/// found by a scan of the names seen: each name up to 15 bytes is held as one 16-byte integer
/// (its bytes, then its length), so the scan compares integers, not strings.
#[derive(Default)]
struct Names<'a> {
    short: Vec<(u128, u16)>,
    long: Vec<(&'a [u8], u16)>,
    /// String views of up to 12 bytes (see [`Names::kinds_of_views`]).
    views: ViewKinds,
    columns: Vec<String>,
}

/// Kinds by string view: a small open-addressing table (a row's name is found at its first
/// probe, a branch the processor predicts; a scan of the names ends at a random place for each
/// row of a log whose names come in random order, a mispredicted branch per row). Full at half
/// its slots; past that, names are looked up by [`Names::kind`].
struct ViewKinds {
    /// (view, kind + 1); 0 is an empty slot.
    slots: Box<[(u128, u32); VIEW_SLOTS]>,
    len: usize,
}

const VIEW_SLOTS: usize = 64;

impl Default for ViewKinds {
    fn default() -> Self {
        ViewKinds {
            slots: Box::new([(0, 0); VIEW_SLOTS]),
            len: 0,
        }
    }
}

impl ViewKinds {
    #[inline]
    fn slot(id: u128) -> usize {
        let x = (id as u64) ^ ((id >> 64) as u64);
        (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize
    }

    #[inline]
    fn get(&self, id: u128) -> Option<u16> {
        let mut i = Self::slot(id);
        loop {
            let &(v, k) = self.slots.get(i)?;
            if k == 0 {
                return None;
            }
            if v == id {
                return u16::try_from(k - 1).ok();
            }
            i = (i + 1) % VIEW_SLOTS;
        }
    }

    fn insert(&mut self, id: u128, kind: u16) {
        if self.len >= VIEW_SLOTS / 2 {
            return;
        }
        let mut i = Self::slot(id);
        while let Some(s) = self.slots.get_mut(i) {
            if s.1 == 0 {
                *s = (id, u32::from(kind) + 1);
                self.len += 1;
                return;
            }
            i = (i + 1) % VIEW_SLOTS;
        }
    }
}

/// A name of up to 15 bytes as one integer: its bytes, zero-padded, then its length.
#[inline]
fn packed(b: &[u8]) -> Option<u128> {
    let mut x = [0u8; 16];
    x.get_mut(..b.len())?.copy_from_slice(b);
    *x.get_mut(15)? = u8::try_from(b.len()).ok().filter(|&n| n < 16)?;
    Some(u128::from_le_bytes(x))
}

/// [`packed`] of the `len` bytes at `start` of `data`, read as one 16-byte load with the bytes
/// past the name masked off; `None` when fewer than 16 bytes follow `start` or `len` > 15.
#[inline]
fn packed_at(data: &[u8], start: usize, len: usize) -> Option<u128> {
    if len > 15 {
        return None;
    }
    let w: [u8; 16] = data.get(start..start + 16)?.try_into().ok()?;
    let mask = u128::MAX.checked_shr(128 - 8 * len as u32).unwrap_or(0);
    Some((u128::from_le_bytes(w) & mask) | ((len as u128) << 120))
}

impl<'a> Names<'a> {
    /// The kind of the name of each of `rows` of a string array, pushed to `kinds`.
    fn kinds_of(
        &mut self,
        names: &'a arrow_array::StringArray,
        rows: impl Iterator<Item = usize>,
        kinds: &mut Vec<u16>,
    ) -> Result<()> {
        let (offsets, data) = (names.value_offsets(), names.value_data());
        for r in rows {
            let (Some(&s), Some(&e)) = (offsets.get(r), offsets.get(r + 1)) else {
                continue;
            };
            let (s, len) = (s as usize, (e - s) as usize);
            let p = packed_at(data, s, len);
            let hit = p.and_then(|p| self.short.iter().find(|(q, _)| *q == p));
            kinds.push(match hit {
                Some(&(_, k)) => k,
                None => self.kind(names.value(r))?,
            });
        }
        Ok(())
    }

    /// [`Names::kinds_of`] for string views: a view of up to 12 bytes holds its length and its
    /// bytes, so (the bytes past the name masked off) it is the name's identity.
    fn kinds_of_views(
        &mut self,
        names: &'a arrow_array::StringViewArray,
        rows: impl Iterator<Item = usize>,
        kinds: &mut Vec<u16>,
    ) -> Result<()> {
        let views = names.views();
        for r in rows {
            let Some(&v) = views.get(r) else { continue };
            let len = v as u32;
            let hit = if len <= 12 {
                let id = v & u128::MAX.checked_shr(96 - 8 * len).unwrap_or(u128::MAX);
                match self.views.get(id) {
                    Some(k) => Some(k),
                    None => {
                        let k = self.kind(names.value(r))?;
                        self.views.insert(id, k);
                        Some(k)
                    }
                }
            } else {
                None
            };
            kinds.push(match hit {
                Some(k) => k,
                None => self.kind(names.value(r))?,
            });
        }
        Ok(())
    }

    #[inline]
    fn kind(&mut self, name: &'a str) -> Result<u16> {
        let b = name.as_bytes();
        match packed(b) {
            Some(p) => {
                if let Some(&(_, k)) = self.short.iter().find(|(q, _)| *q == p) {
                    return Ok(k);
                }
                let k = self.column_of(name)?;
                self.short.push((p, k));
                Ok(k)
            }
            None => {
                if let Some(&(_, k)) = self.long.iter().find(|(q, _)| *q == b) {
                    return Ok(k);
                }
                let k = self.column_of(name)?;
                self.long.push((b, k));
                Ok(k)
            }
        }
    }

    /// The index of `name`'s event column (names that differ may share one: `Add to cart`,
    /// `add_to_cart`).
    fn column_of(&mut self, name: &str) -> Result<u16> {
        let col = event_column(name);
        let i = match self.columns.iter().position(|c| *c == col) {
            Some(i) => i,
            None => {
                self.columns.push(col);
                self.columns.len() - 1
            }
        };
        u16::try_from(i).map_err(|_| {
            IoError::Invalid(format!(
                "more than {} event names in one batch of the log",
                u16::MAX
            ))
        })
    }
}

/// Pivots one piece: per row, its key, event column and time; rows with a NULL or unconvertible
/// key, event or time are set aside. `max_errors == 0` makes the first bad row an error;
/// `rejected` counts rejects across pieces.
pub fn pivot(
    piece: &Piece,
    spec: &EventSpec,
    opts: &ConvertOptions,
    rejected: &mut u64,
) -> Result<Pivoted> {
    let (ki, ei, ti) = (
        col_index(piece, &spec.key)?,
        col_index(piece, &spec.event)?,
        col_index(piece, &spec.time)?,
    );
    // String views are kept as they are (storage takes view keys).
    let as_is = |i: usize, ty: ColumnType| -> Result<(ArrayRef, crate::convert::RowErrors)> {
        let a = piece.batch.column(i);
        if ty == ColumnType::Varchar && a.data_type() == &arrow_schema::DataType::Utf8View {
            return Ok((a.clone(), Vec::new()));
        }
        convert_array(a.as_ref(), ty, opts)
    };
    let (key, kerr) = as_is(ki, spec.key_type)?;
    let (event, eerr) = as_is(ei, ColumnType::Varchar)?;
    let (time, terr) = convert_array(piece.batch.column(ti).as_ref(), ColumnType::Timestamp, opts)?;
    let bad = bad_rows(piece, spec, [(&key, kerr), (&event, eerr), (&time, terr)]);
    let rejects: Vec<Reject> = bad
        .iter()
        .map(|(r, (column, reason))| Reject {
            at: piece.at(*r),
            column: column.clone(),
            reason: reason.clone(),
        })
        .collect();
    check_rejects(&rejects, opts, rejected)?;
    let times = time
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| IoError::Invalid("internal: event times".into()))?;
    let mut names = Names::default();
    let n = piece.batch.num_rows();
    let mut kinds = Vec::with_capacity(n);
    let keep = |r: &usize| bad.is_empty() || !bad.contains_key(r);
    // The event names as strings or as views (a view of up to 12 bytes holds its bytes inline).
    if let Some(v) = event
        .as_any()
        .downcast_ref::<arrow_array::StringViewArray>()
    {
        names.kinds_of_views(v, (0..n).filter(keep), &mut kinds)?;
    } else {
        let v = event
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .ok_or_else(|| IoError::Invalid("internal: event names".into()))?;
        names.kinds_of(v, (0..n).filter(keep), &mut kinds)?;
    }
    let (keys, times) = if bad.is_empty() {
        (key, times.values().to_vec())
    } else {
        let rows: Vec<u32> = (0..n).filter(keep).map(|r| r as u32).collect();
        let idx = arrow_array::UInt32Array::from(rows);
        let keys = arrow_select::take::take(key.as_ref(), &idx, None)
            .map_err(|e| IoError::Invalid(e.to_string()))?;
        let t = idx
            .values()
            .iter()
            .map(|&r| times.values().get(r as usize).copied().unwrap_or_default())
            .collect();
        (keys, t)
    };
    Ok(Pivoted {
        keys,
        kinds,
        times,
        events: names.columns,
        rejects,
    })
}

/// The rows a pivot sets aside (row → column, reason): rows that could not be split, values that
/// do not convert, and NULL keys, events or times.
fn bad_rows(
    piece: &Piece,
    spec: &EventSpec,
    cols: [(&ArrayRef, Vec<(usize, String)>); 3],
) -> BTreeMap<usize, (String, String)> {
    let mut bad: BTreeMap<usize, (String, String)> = BTreeMap::new();
    for (r, why) in &piece.bad {
        bad.entry(*r).or_insert((String::new(), why.clone()));
    }
    let names = [&spec.key, &spec.event, &spec.time];
    for ((a, errs), name) in cols.into_iter().zip(names) {
        for (r, why) in errs {
            bad.entry(r).or_insert((name.clone(), why));
        }
        let Some(nulls) = a.nulls().filter(|n| n.null_count() > 0) else {
            continue;
        };
        for r in 0..a.len() {
            if nulls.is_null(r) {
                bad.entry(r)
                    .or_insert((name.clone(), "missing (NULL)".into()));
            }
        }
    }
    bad
}

/// An error for the first reject when none are allowed, or when the total passes the limit.
fn check_rejects(rejects: &[Reject], opts: &ConvertOptions, rejected: &mut u64) -> Result<()> {
    let Some(first) = rejects.first() else {
        return Ok(());
    };
    if opts.max_errors == 0 {
        return Err(IoError::Value {
            at: first.at.clone(),
            column: first.column.clone(),
            reason: first.reason.clone(),
        });
    }
    *rejected += rejects.len() as u64;
    if *rejected > opts.max_errors {
        return Err(IoError::TooManyErrors {
            count: *rejected,
            max: opts.max_errors,
            first: format!("{}: {} {}", first.at, first.column, first.reason),
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn event_names_become_columns() {
        assert_eq!(event_column("Add to Cart"), "add_to_cart");
        assert_eq!(event_column("3ds"), "e_3ds");
        assert_eq!(event_column(""), "e_");
        assert_eq!(event_column("é"), "_");
    }

    #[test]
    fn names_pack_up_to_15_bytes() {
        assert_ne!(packed(b"view"), packed(b"view\0"));
        assert_ne!(packed(b""), packed(b"\0"));
        assert_eq!(packed(b"add_to_cart"), packed(b"add_to_cart"));
        assert!(packed(b"123456789012345").is_some());
        assert!(packed(b"1234567890123456").is_none());
        let data = b"xxviewadd_to_cart0123456789abcdefghij";
        assert_eq!(packed_at(data, 2, 4), packed(b"view"));
        assert_eq!(packed_at(data, 6, 11), packed(b"add_to_cart"));
        assert_eq!(packed_at(data, 0, 0), packed(b""));
        assert_eq!(packed_at(data, 30, 2), None);
        let mut n = Names::default();
        let long = "a long event name over fifteen bytes";
        let kinds: Vec<u16> = ["view", "Add to cart", "add_to_cart", long, "view", long]
            .iter()
            .map(|s| n.kind(s).unwrap())
            .collect();
        assert_eq!(kinds, vec![0, 1, 1, 2, 0, 2]);
        assert_eq!(n.columns[2], "a_long_event_name_over_fifteen_bytes");
    }

    /// Names read as string views get the kinds that names read as strings get, for names that
    /// fit a view (up to 12 bytes), longer ones, the empty name, and names past the table's room.
    #[test]
    fn views_and_strings_give_the_same_kinds() {
        let mut rows: Vec<String> = ["view", "", "twelve_bytes", "thirteen_byte", "view", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        rows.extend((0..80).map(|i| format!("e{}", i % 40)));
        rows.extend(
            ["view", "thirteen_byte", "e39", "e0"]
                .iter()
                .map(|s| s.to_string()),
        );
        let strings = arrow_array::StringArray::from_iter_values(&rows);
        let views = arrow_array::StringViewArray::from_iter_values(&rows);
        let (mut a, mut b) = (Names::default(), Names::default());
        let (mut ka, mut kb) = (Vec::new(), Vec::new());
        a.kinds_of(&strings, 0..rows.len(), &mut ka).unwrap();
        b.kinds_of_views(&views, 0..rows.len(), &mut kb).unwrap();
        assert_eq!(ka, kb);
        assert_eq!(a.columns, b.columns);
        assert_eq!(a.columns.len(), 45);
        assert_eq!(ka[4], ka[0]);
        assert_ne!(ka[1], ka[5]);
    }
}
