//! This node's lease, as far as this node knows: until when the store has confirmed it. Read
//! on every send and every wake-up, so the deadline is an atomic (nanoseconds after a base
//! instant) rather than behind a lock. No notification is sent once it has passed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::time::Instant;

/// The lease's known deadline, and whether a sender was held back because it had passed.
pub(super) struct Lease {
    base: Instant,
    nanos: AtomicU64,
    doubted: AtomicBool,
}

impl Lease {
    /// A lease not confirmed yet (its deadline has passed).
    pub fn new() -> Lease {
        Lease {
            base: Instant::now(),
            nanos: AtomicU64::new(0),
            doubted: AtomicBool::new(false),
        }
    }

    /// The store confirmed the lease until `deadline` (measured from when it was asked).
    pub fn extend_to(&self, deadline: Instant) {
        let nanos = deadline.saturating_duration_since(self.base).as_nanos();
        self.nanos
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Release);
    }

    /// Whether the lease is known to hold now.
    pub fn confirmed(&self) -> bool {
        let now = Instant::now()
            .saturating_duration_since(self.base)
            .as_nanos();
        u128::from(self.nanos.load(Ordering::Acquire)) > now
    }

    /// Whether a sender may send now; when not, the lease remembers that one was held back.
    pub fn permits_sending(&self) -> bool {
        let confirmed = self.confirmed();
        if !confirmed {
            self.doubted.store(true, Ordering::Release);
        }
        confirmed
    }

    /// True once after senders were held back: the caller wakes them, the lease holding again.
    pub fn take_doubt(&self) -> bool {
        self.doubted.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_until_its_deadline_and_remembers_held_back_senders() {
        let lease = Lease::new();
        assert!(!lease.confirmed());
        assert!(!lease.permits_sending());
        lease.extend_to(Instant::now() + Duration::from_secs(2));
        assert!(lease.permits_sending());
        assert!(lease.take_doubt(), "a sender was held back before");
        assert!(!lease.take_doubt(), "once");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!lease.confirmed());
    }
}
