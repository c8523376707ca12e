//! Delivery's tuning, with its defaults.

use std::time::Duration;

/// Tuning of delivery.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Most notifications in flight at once, over all subscriptions.
    pub max_concurrency: usize,
    /// Recent events kept in memory per source.
    pub memory_events: usize,
    /// ... and at most this many bytes of them (payload and action).
    pub memory_bytes: usize,
    /// How often batched progress is written.
    pub progress_interval: Duration,
    /// Events no cursor needs are deleted once older than this.
    pub retention: Duration,
    /// How often compaction runs.
    pub compaction_interval: Duration,
    /// Attempts at a SubscriptionEnd message before giving up.
    pub end_notice_attempts: u32,
    /// How long a node that took a SubscriptionEnd notice to send keeps others off it.
    pub end_notice_claim: Duration,
    /// How long this node's lease lasts unless renewed; another node takes its subscriptions
    /// over once it lapses. Renewed every quarter of it.
    pub lease_ttl: Duration,
    /// How often the store is polled for other nodes' appends and for orphans, in case their
    /// signals were missed (or the store sends none).
    pub poll_interval: Duration,
}

impl Default for DeliverySettings {
    fn default() -> DeliverySettings {
        DeliverySettings {
            max_concurrency: 256,
            memory_events: 4096,
            memory_bytes: 64 * 1024 * 1024,
            progress_interval: Duration::from_millis(100),
            retention: Duration::from_secs(3600),
            compaction_interval: Duration::from_secs(60),
            end_notice_attempts: 10,
            end_notice_claim: Duration::from_secs(60),
            lease_ttl: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
        }
    }
}
