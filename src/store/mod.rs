//! Durable state behind the [`Store`] trait.
//!
//! The engine talks only to this trait; nothing about SQL or a particular database leaks above
//! this folder. `sqlite.rs` is the embedded default (one node); `postgres.rs` lets several herald
//! nodes share one database. Every method is a single atomic step, so a crash leaves either the
//! whole change or none of it.
//!
//! Several nodes: each node holds a lease on its own row in `nodes`, renewed while it lives, and
//! each active subscription names the node that delivers it (`owner`). A subscription whose
//! owner is missing or whose owner's lease has lapsed is an orphan, and any live node may claim
//! it. No row lock is ever held across an HTTP call: ownership is a column, fenced by the lease.

mod append_plan;
pub mod channels;
mod codec;
#[cfg(test)]
mod fixtures;
mod group_commit;
mod kept_name;
mod owned_pages;
pub mod postgres;
pub mod pulls;
pub mod queues;
mod sql;
pub mod sqlite;
mod subscription_writes;
pub mod webhooks;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use tokio::sync::mpsc;

use crate::domain::event::{Event, NewEvent};
use crate::domain::expiry::ExpiryKind;
use crate::domain::subscription::{
    DeliveryProgress, EndNotice, EndReason, Ended, EndpointRef, SoapVersion, SourceName,
    Subscription, SubscriptionId, SubscriptionRecord, WsaVersion,
};

pub use channels::Channels;
pub use kept_name::KeptName;
pub use owned_pages::{Owned, OwnedPages, PageItems, PageSender};
pub use postgres::PostgresStore;
pub use pulls::{PulledCursor, Pulls};
pub use queues::{Completed, Queues};
pub use sqlite::SqliteStore;

/// The name a herald node goes by in the store; unique among the nodes sharing a database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// The node of the embedded store: there is only ever one, so a restart resumes its own
    /// subscriptions at once.
    pub const EMBEDDED: &'static str = "embedded";

    /// Accepts 1-64 characters from `[A-Za-z0-9._-]`.
    pub fn parse(name: &str) -> Option<NodeId> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| NodeId(Arc::from(name)))
    }

    /// A fresh random name, for a node that was given none.
    pub fn random() -> NodeId {
        NodeId(Arc::from(uuid::Uuid::new_v4().simple().to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a task doing a store's work returned: its panic goes on, and a task the runtime's
/// shutdown cancelled is the store closing.
pub fn joined<T>(
    task: Result<Result<T, StoreError>, tokio::task::JoinError>,
) -> Result<T, StoreError> {
    match task {
        Ok(result) => result,
        Err(failed) => match failed.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(StoreError::Closed),
        },
    }
}

/// A change another node made, announced by a shared store so this node need not wait for its
/// next poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Events were appended to this source's log, up to this sequence number.
    Appended(SourceName, u64),
    /// This subscription ended.
    Ended(SubscriptionId),
    /// This reader is delivered by the named node now: every other node lets go of it.
    Moved(SubscriptionId, NodeId),
    /// A node stopped and gave its subscriptions up, or announcements may have been missed:
    /// look for orphans and new events now.
    Released,
}

/// A failure of the store. Callers treat every variant as "the operation did not happen".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error (I/O, constraint, busy, …).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored row could not be decoded: the database holds something herald did not write.
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    /// Another herald process has this data directory open.
    #[error("the data directory {path} is in use by another herald process")]
    InUse {
        /// The directory.
        path: String,
    },
    /// The store has been closed.
    #[error("the store is closed")]
    Closed,
    /// The database URL cannot be used.
    #[error("invalid database URL: {0}")]
    Url(String),
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

/// Durable storage for subscriptions and the event log. Written for both the embedded store and
/// a shared PostgreSQL database with several herald nodes: every condition (active, not yet
/// expired, owned by this node) is checked inside the statement that changes the row, never read
/// first and written later.
#[async_trait]
pub trait Store:
    queues::Queues + channels::Channels + webhooks::Webhooks + pulls::Pulls + Send + Sync + 'static
{
    /// Stores a new subscription, owned by `owner`, with its cursor at `start_after` or else at
    /// its source's current head (it receives events published after it), and returns that
    /// cursor. Returns once durable.
    async fn insert_subscription(
        &self,
        subscription: &Subscription,
        owner: &NodeId,
        start_after: Option<u64>,
    ) -> Result<u64, StoreError>;

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

    /// Ends a subscription that is active and unexpired at `now`, returning what delivery needs
    /// to let it go; `None` when there was no such subscription. One with an EndTo gets a
    /// pending SubscriptionEnd notice in the same statement, so the notice cannot be lost or
    /// doubled.
    async fn end_subscription(
        &self,
        id: SubscriptionId,
        reason: EndReason,
        now: Timestamp,
    ) -> Result<Option<Ended>, StoreError>;

    /// Points an active reader, unexpired at `now`, at a new endpoint (in `soap` and
    /// `addressing`), and makes `owner` the node that delivers it; returns it with its delivery
    /// progress, or `None` when there is no such reader. Other nodes are told to let go of it.
    async fn redirect(
        &self,
        id: SubscriptionId,
        endpoint: &EndpointRef,
        dialect: (SoapVersion, WsaVersion),
        owner: &NodeId,
        now: Timestamp,
    ) -> Result<Option<(Subscription, DeliveryProgress)>, StoreError>;

    /// Ends up to `limit` active subscriptions whose expiry is at or before `now`, earliest
    /// first, and returns what delivery needs to let each go. Costs time in proportion to what
    /// expired, not to what exists. With several nodes sweeping at once, each subscription is
    /// ended by exactly one.
    async fn end_expired(&self, now: Timestamp, limit: u32) -> Result<Vec<Ended>, StoreError>;

    /// Appends events to a source's log in one transaction, giving them the next sequence
    /// numbers, and returns them. Returns once they are durable.
    async fn append_events(
        &self,
        source: &SourceName,
        events: &[NewEvent],
        now: Timestamp,
    ) -> Result<Vec<Event>, StoreError>;

    /// Appends to several logs in one transaction (one commit for all): each batch's events
    /// get the next sequence numbers of its log, batches of one log in the order given. Returns
    /// the events per batch, in the order of `batches`. Returns once they are durable.
    async fn append_to_logs(
        &self,
        batches: &[(SourceName, Vec<NewEvent>)],
        now: Timestamp,
    ) -> Result<Vec<Vec<Event>>, StoreError>;

    /// Up to `limit` events of a source with a sequence number above `after`, in order.
    async fn events_after(
        &self,
        source: &SourceName,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;

    /// Forgets a log's head once it holds no events and has no active reader; true when it was
    /// forgotten. Only for logs that are never written again once ended (context instances').
    async fn forget_log(&self, log: &SourceName) -> Result<bool, StoreError>;

    /// The oldest sequence number one log still holds (`None` when it holds none).
    async fn oldest_retained(&self, log: &SourceName) -> Result<Option<u64>, StoreError>;

    /// The last sequence number handed out in one log (0 when it has none).
    async fn log_head(&self, log: &SourceName) -> Result<u64, StoreError>;

    /// The last sequence number handed out per source.
    async fn source_heads(&self) -> Result<Vec<(SourceName, u64)>, StoreError>;

    /// Registers `node` (or takes its row back after a restart or a lapsed lease) with a lease
    /// of `ttl` from the store's clock.
    async fn register_node(&self, node: &NodeId, ttl: Duration) -> Result<(), StoreError>;

    /// Writes to the store (rewrites `node`'s lease row as it is): `Ok` when the store can be
    /// written now. What readiness checks.
    async fn check_writable(&self, node: &NodeId) -> Result<(), StoreError>;

    /// Extends the lease of `node` by `ttl`. False when it had already lapsed: other nodes may
    /// have claimed its subscriptions, so it must let go of all of them and register again.
    async fn renew_node(&self, node: &NodeId, ttl: Duration) -> Result<bool, StoreError>;

    /// Ends the lease of `node` at once (it is stopping), so that other nodes may claim its
    /// subscriptions without waiting for the lease to lapse.
    async fn release_node(&self, node: &NodeId) -> Result<(), StoreError>;

    /// Deletes the rows of nodes whose lease lapsed more than `after` ago and that own no
    /// active subscription (nodes with random names leave one behind at every restart).
    async fn forget_dead_nodes(&self, after: Duration) -> Result<u64, StoreError>;

    /// Makes `node` the owner of up to `limit` orphans (active, unexpired at `now`, with no
    /// owner or an owner whose lease has lapsed) and returns them with their delivery progress.
    async fn claim_orphans(
        &self,
        node: &NodeId,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(Subscription, DeliveryProgress)>, StoreError>;

    /// The active, unexpired subscriptions `node` owns, with their stored delivery progress,
    /// in pages of up to `page`, read ahead by a task of the store's own: loading in pages keeps
    /// a start with millions of subscriptions from holding every row at once, and the next page
    /// is read while the start hands this one over.
    fn owned(&self, node: &NodeId, now: Timestamp, page: usize) -> OwnedPages;

    /// How many active subscriptions `node` owns or may claim as orphans, per log: at least
    /// what a start's load will hand over (some may have expired unswept, or go to another
    /// node), counted before the load claims or reads anything.
    async fn owned_counts(&self, node: &NodeId) -> Result<Vec<(SourceName, u64)>, StoreError>;

    /// Stores delivery progress for many subscriptions in one transaction (group commit), for
    /// those that are active and owned by `node`; returns the ids that are not (they ended, or
    /// another node took them over), which the caller must stop delivering.
    async fn save_progress(
        &self,
        node: &NodeId,
        updates: &[(SubscriptionId, DeliveryProgress)],
    ) -> Result<Vec<SubscriptionId>, StoreError>;

    /// Everything stored about one subscription, active or ended.
    async fn subscription_record(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<SubscriptionRecord>, StoreError>;

    /// Claims up to `limit` ended subscriptions whose SubscriptionEnd notice is pending and due
    /// at `now`, with the reason they ended and the attempts made so far. A claimed notice is
    /// not due again until `now + claim_for`, so two nodes never send it at once.
    async fn due_end_notices(
        &self,
        now: Timestamp,
        limit: u32,
        claim_for: Duration,
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

    /// Deletes a source's events published before `published_before` that every active
    /// subscription's stored cursor has passed; returns how many went.
    async fn compact_events(
        &self,
        source: &SourceName,
        published_before: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Changes other nodes make, as they happen, for a store several nodes share; `None` for a
    /// store with one node. Missing a signal only delays: nodes also poll.
    async fn signals(&self) -> Result<Option<mpsc::Receiver<Signal>>, StoreError>;

    /// Closes the store, waiting for connections in use to be returned.
    async fn close(&self);
}

/// Numbers new events from `first` on, as an append hands them out, each with a fresh id.
fn number_events(
    source: &SourceName,
    events: &[NewEvent],
    first: i64,
    now: Timestamp,
) -> Vec<Event> {
    let ids = events.iter().map(|_| crate::domain::event::EventId::new());
    number_events_with(source, events, ids, first, now)
}

/// Numbers new events from `first` on, with the ids an append has already stored.
fn number_events_with(
    source: &SourceName,
    events: &[NewEvent],
    ids: impl IntoIterator<Item = crate::domain::event::EventId>,
    first: i64,
    now: Timestamp,
) -> Vec<Event> {
    (0..)
        .zip(events.iter().zip(ids))
        .map(|(offset, (event, id))| Event {
            source: source.clone(),
            seq: u64::try_from(first + offset).unwrap_or(0),
            id,
            action: event.action.clone(),
            payload: event.payload.clone(),
            published_at: now,
        })
        .collect()
}

/// A row of a due SubscriptionEnd notice: the subscription, its end reason and attempts.
fn decode_end_notice(
    row: &impl codec::Columns,
) -> Result<(Subscription, EndReason, u32), StoreError> {
    Ok((
        codec::decode_subscription(row)?,
        codec::decode_end_reason(row)?,
        codec::stored_count("end_attempts", row.int("end_attempts")?)?,
    ))
}
