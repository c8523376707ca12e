//! The `max_subscriptions` rule: a Subscribe takes a place under its source's limit before it
//! is written, and gives it back once the subscription is in delivery (which then counts it)
//! or was not stored. Readers in delivery plus places taken never exceed the limit.

use std::sync::Mutex;

use crate::domain::maps::Map;
use crate::domain::subscription::SourceName;

/// Places taken by Subscribes being written, per source.
#[derive(Default)]
pub(super) struct Capacity {
    taken: Mutex<Map<SourceName, u64>>,
}

impl Capacity {
    /// Takes a place for a new subscription of `source`, which has `active` subscriptions in
    /// delivery; `false` when that and the places taken reach `limit`.
    pub fn take(&self, source: &SourceName, limit: Option<u64>, active: impl Fn() -> u64) -> bool {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let pending = taken.get_mut(source);
        let count = pending.as_deref().copied().unwrap_or(0);
        if limit.is_some_and(|limit| active() + count >= limit) {
            return false;
        }
        // The source's name is copied only for its first place taken.
        match pending {
            Some(pending) => *pending += 1,
            None => {
                taken.insert(source.clone(), 1);
            }
        }
        true
    }

    /// Gives a place back: its subscription is in delivery now, or was not stored.
    pub fn give_back(&self, source: &SourceName) {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pending) = taken.get_mut(source) {
            *pending = pending.saturating_sub(1);
            if *pending == 0 {
                taken.remove(source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_taken_and_active_subscriptions_share_the_limit() {
        let capacity = Capacity::default();
        let source = SourceName::parse("s").unwrap();
        assert!(capacity.take(&source, Some(2), || 0));
        assert!(capacity.take(&source, Some(2), || 0));
        assert!(!capacity.take(&source, Some(2), || 0), "two places taken");
        capacity.give_back(&source);
        assert!(
            !capacity.take(&source, Some(2), || 1),
            "one taken, one active"
        );
        capacity.give_back(&source);
        assert!(capacity.take(&source, Some(2), || 1));
        assert!(capacity.take(&source, None, || 1_000_000), "no limit");
    }
}
