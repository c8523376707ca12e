//! A start loads this node's stored subscriptions in the background, so that herald answers
//! at once however many there are. While it does, anything else may add or end a reader (a
//! Subscribe, an Unsubscribe, an expiry, a redirect): the load must leave those as they are,
//! neither bringing an ended one back nor replacing a newer one with its older row. This is
//! that one rule.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

use super::lock;
use crate::domain::subscription::{SourceName, SubscriptionId};

/// Where a start's load is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Phase {
    /// Counting what it will hand over: no log's count is whole.
    Counting,
    /// Reading pages: a log's count is its readers and what is still to come.
    Reading,
    /// Done (or none under way).
    Idle,
}

/// Whether a load is under way, the readers touched since it began, and what it has still to
/// hand over per log.
pub(super) struct Loading {
    touched: Mutex<Option<HashSet<SubscriptionId>>>,
    remaining: Mutex<HashMap<SourceName, u64>>,
    phase: watch::Sender<Phase>,
}

impl Default for Loading {
    fn default() -> Loading {
        Loading {
            touched: Mutex::new(None),
            remaining: Mutex::default(),
            phase: watch::Sender::new(Phase::Idle),
        }
    }
}

/// Held while the load adds one reader: nothing can touch it meanwhile.
pub(super) struct Adopting<'a>(#[allow(dead_code)] MutexGuard<'a, Option<HashSet<SubscriptionId>>>);

impl Loading {
    /// A load begins: from now on, what else adds or removes is remembered.
    pub fn begin(&self) {
        *lock(&self.touched) = Some(HashSet::new());
        lock(&self.remaining).clear();
        self.phase.send_replace(Phase::Counting);
    }

    /// The load has counted what it will hand over, per log.
    pub fn counted(&self, counts: impl IntoIterator<Item = (SourceName, u64)>) {
        *lock(&self.remaining) = counts.into_iter().collect();
        self.phase.send_replace(Phase::Reading);
    }

    /// The load has handed one subscription of `log` over (or left it alone).
    pub fn read_one(&self, log: &SourceName) {
        let mut remaining = lock(&self.remaining);
        if let Some(count) = remaining.get_mut(log) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                remaining.remove(log);
            }
        }
    }

    /// What the load has still to hand over of `log`.
    pub fn remaining(&self, log: &SourceName) -> u64 {
        lock(&self.remaining).get(log).copied().unwrap_or(0)
    }

    /// The load has read everything.
    pub fn end(&self) {
        *lock(&self.touched) = None;
        lock(&self.remaining).clear();
        self.phase.send_replace(Phase::Idle);
        give_back_freed_memory();
    }

    /// Whether a load is under way.
    pub fn is_loading(&self) -> bool {
        *self.phase.borrow() != Phase::Idle
    }

    /// Waits until the load is past `phase`.
    pub async fn past(&self, phase: Phase) {
        let mut current = self.phase.subscribe();
        let _ = current
            .wait_for(|now| match phase {
                Phase::Counting => *now != Phase::Counting,
                Phase::Reading | Phase::Idle => *now == Phase::Idle,
            })
            .await;
    }

    /// Something other than the load adds or removes reader `id`.
    pub fn touch(&self, id: SubscriptionId) {
        if let Some(touched) = lock(&self.touched).as_mut() {
            touched.insert(id);
        }
    }

    /// The load may add reader `id` (while the returned guard is held) unless something else
    /// touched it since the load began.
    pub fn adopt(&self, id: SubscriptionId) -> Option<Adopting<'_>> {
        let touched = lock(&self.touched);
        if touched
            .as_ref()
            .is_some_and(|touched| touched.contains(&id))
        {
            return None;
        }
        Some(Adopting(touched))
    }
}

/// The load's pages (their text and decoded rows) are freed by now, but glibc keeps freed heap
/// in its arenas (SQLite's own allocations, and herald's wherever it runs on glibc's allocator
/// rather than the `herald` binary's mimalloc); handing it back leaves the resident size after a
/// start at what the readers need (herald-bench scenario 5: the bytes per subscription after a
/// restart).
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only returns free pages of the allocator's
    // own heap to the system; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_leaves_what_else_touched_alone() {
        let loading = Loading::default();
        let (ended, other) = (SubscriptionId::new_random(), SubscriptionId::new_random());
        assert!(!loading.is_loading());
        loading.touch(ended);
        loading.begin();
        assert!(loading.is_loading());
        assert!(
            loading.adopt(ended).is_some(),
            "touched before the load: not remembered"
        );
        loading.touch(ended);
        assert!(loading.adopt(ended).is_none(), "touched during the load");
        assert!(loading.adopt(other).is_some());
        loading.counted([(SourceName::parse("s").unwrap(), 2)]);
        let log = SourceName::parse("s").unwrap();
        assert_eq!(loading.remaining(&log), 2);
        loading.read_one(&log);
        assert_eq!(loading.remaining(&log), 1);
        loading.end();
        assert!(!loading.is_loading());
        assert_eq!(loading.remaining(&log), 0);
        assert!(loading.adopt(ended).is_some(), "no load, nothing held back");
    }
}
