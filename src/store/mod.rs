//! Durable state behind the [`Store`] trait.
//!
//! The engine talks only to this trait; nothing about SQL or a particular database leaks above
//! this folder. `sqlite.rs` is the embedded default. Every method is a single atomic step, so a
//! crash leaves either the whole change or none of it.

mod codec;
pub mod sqlite;

use async_trait::async_trait;
use jiff::Timestamp;

use crate::engine::event::{Event, NewEvent};
use crate::engine::expiry::ExpiryKind;
use crate::engine::subscription::{
    DeliveryProgress, EndNotice, EndReason, SourceName, Subscription, SubscriptionId,
    SubscriptionRecord,
};

pub use sqlite::SqliteStore;

/// A failure of the store. Callers treat every variant as "the operation did not happen".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error (I/O, constraint, busy, …).
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A stored row could not be decoded: the database holds something herald did not write.
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    /// Preparing the data directory failed.
    #[error("cannot prepare the data directory {path}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Durable storage for subscriptions. Written for both the embedded store and a shared
/// PostgreSQL database with several herald nodes: every condition (active, not yet expired) is
/// checked inside the statement that changes the row, never read first and written later.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new subscription with its cursor at its source's current head (it receives
    /// events published after it), and returns that cursor. Returns once it is durable.
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<u64, StoreError>;

    /// The subscription if it exists, is active and has not expired at `now`.
    async fn active_subscription(
        &self,
        id: SubscriptionId,
        now: Timestamp,
    ) -> Result<Option<Subscription>, StoreError>;

    /// Sets a new expiry on a subscription that is active and unexpired at `now`. Returns false
    /// (and changes nothing) otherwise.
    async fn renew_subscription(
        &self,
        id: SubscriptionId,
        expires_at: Option<Timestamp>,
        kind: ExpiryKind,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Ends a subscription that is active and unexpired at `now`, returning it as it was; `None`
    /// when there was no such subscription. One with an EndTo gets a pending SubscriptionEnd
    /// notice in the same statement, so the notice cannot be lost or doubled.
    async fn end_subscription(
        &self,
        id: SubscriptionId,
        reason: EndReason,
        now: Timestamp,
    ) -> Result<Option<Subscription>, StoreError>;

    /// Ends up to `limit` active subscriptions whose expiry is at or before `now`, earliest
    /// first, and returns them. Costs time in proportion to what expired, not to what exists.
    async fn end_expired(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// The number of active, unexpired subscriptions per source.
    async fn count_active(&self, now: Timestamp) -> Result<Vec<(SourceName, u64)>, StoreError>;

    /// Appends events to a source's log in one transaction, giving them the next sequence
    /// numbers, and returns them. Returns once they are durable.
    async fn append_events(
        &self,
        source: &SourceName,
        events: &[NewEvent],
        now: Timestamp,
    ) -> Result<Vec<Event>, StoreError>;

    /// Up to `limit` events of a source with a sequence number above `after`, in order.
    async fn events_after(
        &self,
        source: &SourceName,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;

    /// The last sequence number handed out per source.
    async fn source_heads(&self) -> Result<Vec<(SourceName, u64)>, StoreError>;

    /// Every active, unexpired subscription with its stored delivery progress.
    async fn active_subscriptions(
        &self,
        now: Timestamp,
    ) -> Result<Vec<(Subscription, DeliveryProgress)>, StoreError>;

    /// Stores delivery progress for many subscriptions in one transaction (group commit).
    /// Subscriptions that have ended are left alone.
    async fn save_progress(
        &self,
        updates: &[(SubscriptionId, DeliveryProgress)],
    ) -> Result<(), StoreError>;

    /// Everything stored about one subscription, active or ended.
    async fn subscription_record(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<SubscriptionRecord>, StoreError>;

    /// Up to `limit` ended subscriptions whose SubscriptionEnd notice is pending and due, with
    /// the reason they ended and the attempts made so far.
    async fn due_end_notices(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(Subscription, EndReason, u32)>, StoreError>;

    /// Records the outcome of a SubscriptionEnd attempt.
    async fn record_end_notice(
        &self,
        id: SubscriptionId,
        notice: EndNotice,
        attempts: u32,
        next_at: Option<Timestamp>,
        error: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Deletes a source's events up to `up_to_seq` published before `published_before`;
    /// returns how many went.
    async fn compact_events(
        &self,
        source: &SourceName,
        up_to_seq: u64,
        published_before: Timestamp,
    ) -> Result<u64, StoreError>;
}
