//! The background maintenance thread: flushes and compacts when thresholds are crossed.

use super::*;

pub(super) fn maintenance_loop(s: &Shared) {
    loop {
        {
            let mut bg = lock(&s.bg);
            while !bg.shutdown && !bg.wake {
                let (g, _) = s
                    .bg_cv
                    .wait_timeout(bg, Duration::from_millis(500))
                    .unwrap_or_else(|e| e.into_inner());
                bg = g;
                if !bg.wake && !bg.shutdown {
                    // Periodic check: compaction may be due without a wake-up.
                    break;
                }
            }
            if bg.shutdown {
                return;
            }
            bg.wake = false;
        }
        let due_flush = {
            let st = lock(&s.state);
            (s.opts.flush_rows > 0 && st.mem_rows >= s.opts.flush_rows)
                || st.wal.end >= WAL_FLUSH_BYTES
                || wal_is_dead(&st)
        };
        let mut outcome = Ok(());
        if due_flush {
            outcome = s.flush().map(|_| ());
        }
        let min = compaction::MinPieces::background(s.opts.compact_segments);
        if outcome.is_ok() && s.opts.compact_segments >= 2 && s.needs_compaction(min) {
            outcome = s.compact(min).map(|_| ());
        }
        if let Err(e) = outcome {
            lock(&s.bg).last_error = Some(e.to_string());
        }
    }
}

/// A WAL file this large is flushed whatever the rows held: its records may belong mostly to
/// tables dropped or replaced since, and a restart replays all of it.
pub(super) const WAL_FLUSH_BYTES: u64 = 256 << 20;

/// Dead rows in the WAL (appended to tables dropped or replaced since) past which a flush is due
/// when they also outnumber the live ones.
pub(super) const WAL_DEAD_ROWS: u64 = 10_000;

/// True when most of the WAL's rows belong to tables dropped or replaced since it started. A
/// flush then writes the live rows to segments and starts a new WAL file, deleting the old ones;
/// without it, a server whose jobs append and then replace tables (the journey runner, the demo)
/// would keep every record until `flush_rows` rows are live at once, and replay them all at the
/// next start.
pub(super) fn wal_is_dead(st: &State) -> bool {
    let dead = st.wal_rows.saturating_sub(st.mem_rows);
    dead >= WAL_DEAD_ROWS
        && dead >= st.mem_rows
        && st.pending.is_empty()
        && st.written_lsn == st.applied_lsn
}
