//! Joins on the customer key: every table of a database numbers its customers with one key
//! dictionary, so two keyed relations are joined partition by partition by combining their row
//! bitmaps (AND for INNER, OR for FULL, one side for LEFT / RIGHT) and cutting each column down to
//! the kept rows. No key is hashed or compared, and no key is decoded unless the query reads the
//! key column of a side that is NULL on some rows.

use std::collections::BTreeSet;
use std::sync::Mutex;

use journeydb_storage::{ColumnData, PartitionId, Snapshot};
use roaring::RoaringBitmap;

use crate::error::{QueryError, Result};
use crate::exec::{decode_keys, par_map, Frame, Relation};
use crate::plan::{JoinKind, RelCol};
use crate::vector::restrict;

/// Joins `l` and `r` (both keyed) on the key; the output has `l`'s columns then `r`'s.
pub fn join(
    l: Relation,
    r: Relation,
    kind: JoinKind,
    partial_keys: &[Option<(usize, bool)>; 2],
    snap: &Snapshot,
) -> Result<Relation> {
    if !l.is_keyed() || !r.is_keyed() {
        return Err(QueryError::Unsupported(
            "a join input with several rows per key (UNION ALL); GROUP BY the key first".into(),
        ));
    }
    let mut cols = l.cols.clone();
    cols.extend(r.cols.iter().cloned());
    for (i, _) in partial_keys.iter().flatten() {
        if let Some(c) = cols.get_mut(*i) {
            c.is_key = false;
        }
    }
    // Each partition's two frames, moved into the worker that joins them (columns that need no
    // cutting are moved, not copied).
    let mut lparts = l.parts;
    let mut rparts = r.parts;
    let ids: BTreeSet<PartitionId> = lparts.keys().chain(rparts.keys()).copied().collect();
    let items: Vec<(PartitionId, Mutex<(Frame, Frame)>)> = ids
        .into_iter()
        .map(|p| {
            let take = |m: &mut std::collections::BTreeMap<PartitionId, Vec<Frame>>| {
                m.remove(&p)
                    .and_then(|v| v.into_iter().next())
                    .unwrap_or_default()
            };
            (p, Mutex::new((take(&mut lparts), take(&mut rparts))))
        })
        .collect();
    let (lcols, rcols) = (&l.cols, &r.cols);
    let out = par_map(&items, |(p, pair)| {
        let (lf, rf) = {
            let mut g = pair
                .lock()
                .map_err(|_| QueryError::Internal("a join worker panicked".into()))?;
            std::mem::take(&mut *g)
        };
        Ok((
            *p,
            join_partition(lf, rf, kind, partial_keys, (lcols, rcols), snap)?,
        ))
    })?;
    Ok(Relation {
        cols,
        parts: out
            .into_iter()
            .filter(|(_, f)| !f.rows.is_empty())
            .map(|(p, f)| (p, vec![f]))
            .collect(),
    })
}

/// Joins one partition's frames: the kept rows, then each side's columns cut to them.
fn join_partition(
    lf: Frame,
    rf: Frame,
    kind: JoinKind,
    partial_keys: &[Option<(usize, bool)>; 2],
    (lcols, rcols): (&[RelCol], &[RelCol]),
    snap: &Snapshot,
) -> Result<Frame> {
    let lw = lcols.len();
    let rows = match kind {
        JoinKind::Inner => &lf.rows & &rf.rows,
        JoinKind::Left => lf.rows.clone(),
        JoinKind::Right => rf.rows.clone(),
        JoinKind::Full => &lf.rows | &rf.rows,
    };
    let keys = snap.keys();
    let mut out_cols = Vec::with_capacity(lw + rcols.len());
    let mut out_groups = Vec::with_capacity(lw + rcols.len());
    for (side, (f, scols, base)) in [(lf, lcols, 0usize), (rf, rcols, lw)]
        .into_iter()
        .enumerate()
    {
        let Frame {
            rows: side_rows,
            cols: mut side_cols,
            groups: side_groups,
        } = f;
        for (i, c) in scols.iter().enumerate() {
            // Value groups pass through uncut (their users intersect them with the rows).
            out_groups.push(side_groups.get(i).cloned().flatten());
            let partial = partial_keys
                .get(side)
                .copied()
                .flatten()
                .filter(|(at, _)| *at == base + i);
            let own = side_cols.get_mut(i).and_then(Option::take);
            out_cols.push(match (c.is_key, partial) {
                // The side's key where the side has the row, decoded only when read.
                (true, Some((_, true))) => {
                    let present = &side_rows & &rows;
                    Some(ColumnData {
                        values: decode_keys(&keys, &present)?,
                        presence: present,
                    })
                }
                (true, _) => None,
                (false, _) => match own {
                    Some(col) if col.presence.is_subset(&rows) => Some(col),
                    Some(col) => Some(restrict(&col, &rows)),
                    // A side without this partition: the column is NULL here.
                    None if side_rows.is_empty() => Some(ColumnData {
                        presence: RoaringBitmap::new(),
                        values: journeydb_storage::Values::empty(
                            c.dtype
                                .column_type()
                                .unwrap_or(journeydb_storage::ColumnType::Bigint),
                        ),
                    }),
                    None => None,
                },
            });
        }
    }
    Ok(Frame {
        rows,
        cols: out_cols,
        groups: out_groups,
    })
}
