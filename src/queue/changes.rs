//! Which enrollments a committed transaction changed, told to whoever watches.
//!
//! SQLite's own hooks see every row written to `enrollments` by this process's connection
//! (an insert, a state change, an attempt, progress, an erasure) and whether the transaction
//! committed or rolled back: nothing has to remember to announce a change, and a rolled-back
//! one is never announced. The daemon turns the row ids into events on its bus; a process
//! without a watcher (a CLI command) pokes a running worker once when it is done, so the
//! daemon and the page hear of changes made elsewhere too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

/// What is called with the row ids of `enrollments` a committed transaction wrote.
pub type Observer = Box<dyn FnMut(Vec<i64>) + Send>;

/// The hooks' shared state, owned by the queue.
#[derive(Default, Clone)]
pub(super) struct Changes {
    /// Rows written by the transaction under way.
    pending: Arc<Mutex<Vec<i64>>>,
    observer: Arc<Mutex<Option<Observer>>>,
    /// Whether a transaction that wrote an enrollment has committed (no observer needed).
    committed_any: Arc<AtomicBool>,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes").field("committed_any", &self.committed_any()).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Changes {
    /// Installs the hooks on `conn`. They never touch the connection (SQLite forbids it) and
    /// never veto a commit.
    pub(super) fn install(&self, conn: &Connection) {
        let pending = Arc::clone(&self.pending);
        conn.update_hook(Some(move |_action, _db: &str, table: &str, row: i64| {
            if table == "enrollments" {
                lock(&pending).push(row);
            }
        }));
        let (pending, observer, committed) =
            (Arc::clone(&self.pending), Arc::clone(&self.observer), Arc::clone(&self.committed_any));
        conn.commit_hook(Some(move || {
            let mut rows = std::mem::take(&mut *lock(&pending));
            if !rows.is_empty() {
                committed.store(true, Ordering::Relaxed);
                rows.sort_unstable();
                rows.dedup();
                if let Some(observer) = lock(&observer).as_mut() {
                    observer(rows);
                }
            }
            false
        }));
        let pending = Arc::clone(&self.pending);
        conn.rollback_hook(Some(move || lock(&pending).clear()));
    }

    pub(super) fn observe(&self, observer: Observer) {
        *lock(&self.observer) = Some(observer);
    }

    pub(super) fn observed(&self) -> bool {
        lock(&self.observer).is_some()
    }

    pub(super) fn committed_any(&self) -> bool {
        self.committed_any.load(Ordering::Relaxed)
    }
}
