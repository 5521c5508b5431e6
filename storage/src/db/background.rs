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
        let due_flush = s.opts.flush_rows > 0 && lock(&s.state).mem_rows >= s.opts.flush_rows;
        let mut outcome = Ok(());
        if due_flush {
            outcome = s.flush().map(|_| ());
        }
        if outcome.is_ok() && s.needs_compaction() {
            outcome = s.compact(s.opts.compact_segments).map(|_| ());
        }
        if let Err(e) = outcome {
            lock(&s.bg).last_error = Some(e.to_string());
        }
    }
}
