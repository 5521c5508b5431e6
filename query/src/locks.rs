//! `LOCK TABLE name [IN .. MODE] [NOWAIT]`: named locks held by a session.
//!
//! journeydb has no multi-statement transactions, so a lock here is advisory: it excludes other
//! sessions' `LOCK TABLE` of the same name (the journey runner takes one per journey, so two runs
//! of one journey never interleave), not their reads or writes. As in PostgreSQL, a lock is held
//! until the session's `COMMIT` or `ROLLBACK`; it is also released when the session ends, however
//! it ends (a closed connection, a killed client, a dropped embedded session), so a crashed holder
//! never leaves a lock behind. The name need not be an existing table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{QueryError, Result};

/// The locks of one database, shared by every session.
#[derive(Debug, Default)]
pub(crate) struct LockTable {
    /// Lock name (lower case) -> the session holding it.
    held: Mutex<HashMap<String, u64>>,
    freed: Condvar,
    next_session: AtomicU64,
}

impl LockTable {
    fn held(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        // A poisoned lock only means a panic elsewhere while it was held; the map is still whole.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One session's handle on the lock table; dropping the last clone of a session releases what it
/// holds.
#[derive(Debug)]
pub(crate) struct SessionLocks {
    id: u64,
    table: Arc<LockTable>,
}

impl SessionLocks {
    /// The first session of a new lock table.
    pub(crate) fn new_table() -> SessionLocks {
        SessionLocks {
            id: 0,
            table: Arc::new(LockTable::default()),
        }
    }

    /// A new session over the same lock table.
    pub(crate) fn sibling(&self) -> SessionLocks {
        SessionLocks {
            id: self.table.next_session.fetch_add(1, Ordering::Relaxed) + 1,
            table: self.table.clone(),
        }
    }

    /// Takes every lock of `names` (all or none): at once with `nowait` (an error if another
    /// session holds one), else waiting until they are free; the wait ends with an error when the
    /// request is cancelled.
    pub(crate) fn lock(&self, names: &[String], nowait: bool) -> Result<()> {
        let names: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        let mut held = self.table.held();
        loop {
            let busy = names
                .iter()
                .find(|n| held.get(*n).is_some_and(|&s| s != self.id));
            match busy {
                None => {
                    for n in names {
                        held.insert(n, self.id);
                    }
                    return Ok(());
                }
                Some(n) if nowait => {
                    return Err(QueryError::LockNotAvailable(format!(
                        "could not obtain lock on {n:?}: another session holds it"
                    )))
                }
                Some(_) => {
                    let (guard, _) = self
                        .table
                        .freed
                        .wait_timeout(held, Duration::from_millis(100))
                        .unwrap_or_else(|p| p.into_inner());
                    held = guard;
                    // Polled between waits: the lock is held by somebody else, not by this
                    // thread, so a cancel must be able to end the wait.
                    crate::cancel::check()?;
                }
            }
        }
    }

    /// Releases every lock this session holds (COMMIT, ROLLBACK, the session's end).
    pub(crate) fn release_all(&self) {
        let mut held = self.table.held();
        let before = held.len();
        held.retain(|_, s| *s != self.id);
        if held.len() != before {
            self.table.freed.notify_all();
        }
    }
}

impl Drop for SessionLocks {
    fn drop(&mut self) {
        self.release_all();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_excludes_other_sessions_until_released_or_dropped() {
        let a = SessionLocks::new_table();
        let b = a.sibling();
        a.lock(&["J".into()], true).unwrap();
        // The same session may take it again; names are case-insensitive.
        a.lock(&["j".into()], true).unwrap();
        let e = b.lock(&["j".into()], true).unwrap_err();
        assert!(matches!(e, QueryError::LockNotAvailable(_)), "{e}");
        // All or none: b holds nothing after a refusal.
        let e = b.lock(&["k".into(), "j".into()], true).unwrap_err();
        assert!(matches!(e, QueryError::LockNotAvailable(_)), "{e}");
        a.lock(&["k".into()], true).unwrap();
        a.release_all();
        b.lock(&["j".into()], true).unwrap();
        let c = b.sibling();
        drop(b);
        c.lock(&["j".into()], true).unwrap();
    }

    #[test]
    fn a_waiting_lock_is_granted_when_the_holder_ends() {
        let a = SessionLocks::new_table();
        let b = a.sibling();
        a.lock(&["j".into()], true).unwrap();
        let waiter = std::thread::spawn(move || b.lock(&["j".into()], false).map(|()| b));
        std::thread::sleep(Duration::from_millis(50));
        drop(a);
        let b = waiter.join().unwrap().unwrap();
        assert!(b.sibling().lock(&["j".into()], true).is_err());
    }
}
