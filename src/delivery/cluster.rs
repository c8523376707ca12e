//! This node among others on a shared store: it holds its lease, takes over what it owns and
//! what is orphaned (the engine decides what becomes of each), and follows what other nodes do,
//! from the store's signals when it sends them and by polling otherwise. On the embedded store
//! it is the only node and finds nothing to do but keep its lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::EngineLink;
use super::lease::Lease;
use super::log::EventLog;
use super::readers::Readers;
use crate::domain::clock::Clock;
use crate::domain::subscription::{DeliveryProgress, SourceName, Subscription};
use crate::store::{NodeId, Signal, Store, StoreError};

/// Orphans claimed per statement. A takeover of 1,000,000 on PostgreSQL (this machine) took
/// 38.7-56.7 s in statements of 1,000 and 24.9-28.3 s in statements of 10,000, against 22.9 s
/// for one bare `UPDATE` of every row's owner: what PostgreSQL itself takes to rewrite them.
const CLAIM_BATCH: u32 = 10_000;

/// Owned subscriptions read per page at start.
const LOAD_PAGE: usize = 10_000;

/// This node: its name and lease, and what it needs to take subscriptions over.
pub(super) struct Node {
    id: NodeId,
    store: Arc<dyn Store>,
    lease: Arc<Lease>,
    lease_ttl: Duration,
    poll_interval: Duration,
    log: Arc<EventLog>,
    readers: Arc<Readers>,
    engine: Arc<EngineLink>,
    clock: Clock,
    stop: CancellationToken,
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        store: Arc<dyn Store>,
        lease: Arc<Lease>,
        (lease_ttl, poll_interval): (Duration, Duration),
        log: Arc<EventLog>,
        readers: Arc<Readers>,
        engine: Arc<EngineLink>,
        clock: Clock,
        stop: CancellationToken,
    ) -> Node {
        Node {
            id,
            store,
            lease,
            lease_ttl,
            poll_interval,
            log,
            readers,
            engine,
            clock,
            stop,
        }
    }

    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// Whether this node's lease is known to hold now.
    pub fn lease_confirmed(&self) -> bool {
        self.lease.confirmed()
    }

    /// Joins again after the lease lapsed: registers afresh (or tries again at the next
    /// renewal) and takes back what is still this node's in the background, as a start does,
    /// so that the lease keeps being renewed however much there is to take back.
    async fn rejoin(self: &Arc<Self>) {
        if let Err(err) = self.register().await {
            tracing::warn!(error = %err, "joining again failed; will retry");
            return;
        }
        self.readers.loading.begin();
        tokio::spawn(self.clone().load_in_background());
    }

    /// Registers this node with a fresh lease.
    pub async fn register(&self) -> Result<(), StoreError> {
        let asked = Instant::now();
        self.store.register_node(&self.id, self.lease_ttl).await?;
        self.lease.extend_to(asked + self.lease_ttl);
        Ok(())
    }

    /// Takes over every orphan, handing each to the engine as it is claimed. (Claiming the next
    /// batch while one is handed over, as `read_owned` reads ahead, was measured and gained
    /// nothing: on PostgreSQL the claim's own reads are the time.)
    async fn claim_all(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        while !self.stop.is_cancelled() {
            let claimed = self.store.claim_orphans(&self.id, now, CLAIM_BATCH).await?;
            let full = claimed.len() == CLAIM_BATCH as usize;
            // Delivered from now on, not only once every orphan is claimed (a takeover of a
            // million takes more than a minute on PostgreSQL). What this node owned before is
            // read first (`load_in_background`), so a claimed row is handed over once.
            for (subscription, progress) in claimed {
                self.hand_over(subscription, progress).await?;
            }
            if !full {
                break;
            }
        }
        Ok(())
    }

    /// Takes over what this node owns, a page at a time, while the store reads the next (a
    /// page not yet handed over when the load stops is dropped with the reading).
    async fn read_owned(&self) -> Result<(), StoreError> {
        let mut pages = self.store.owned(&self.id, self.clock.now(), LOAD_PAGE);
        while let Some(page) = pages.next().await? {
            for (subscription, progress) in page {
                if self.stop.is_cancelled() {
                    return Ok(());
                }
                self.hand_over(subscription, progress).await?;
            }
        }
        Ok(())
    }

    /// Hands one loaded subscription to the engine and counts it as read, in turns with the
    /// runtime's other tasks (a page or batch holds thousands).
    async fn hand_over(
        &self,
        subscription: Subscription,
        progress: DeliveryProgress,
    ) -> Result<(), StoreError> {
        tokio::task::coop::consume_budget().await;
        let log = subscription.source.clone();
        self.adopt(subscription, progress).await?;
        self.readers.loading.read_one(&log);
        Ok(())
    }

    /// A start's load, in the background: what this node owns or may claim is counted (a
    /// limited log's count is whole from then on), what it owns read a page at a time, then
    /// orphans claimed, while herald already answers. A failed step is tried again until it succeeds or delivery stops.
    /// Readers added or ended by anything else meanwhile are left as they are (`Loading`).
    pub async fn load_in_background(self: Arc<Self>) {
        let started = std::time::Instant::now();
        loop {
            let loaded = async {
                let counts = self.store.owned_counts(&self.id).await?;
                self.readers.loading.counted(counts);
                self.read_owned().await?;
                self.claim_all().await
            };
            match loaded.await {
                Ok(()) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "loading this node's subscriptions failed; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = self.stop.cancelled() => break,
                    }
                }
            }
        }
        self.readers.loading.end();
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "this node's stored subscriptions are loaded"
        );
    }

    /// Hands a subscription this node came to own to the engine, which starts delivering it
    /// or ends it.
    async fn adopt(
        &self,
        subscription: Subscription,
        progress: DeliveryProgress,
    ) -> Result<(), StoreError> {
        match self.engine.get() {
            Some(engine) => engine.adopt(subscription, progress).await,
            None => Ok(()),
        }
    }

    /// Gives this node's subscriptions up at once, for another node to claim.
    pub async fn release(&self) {
        if let Err(err) = self.store.release_node(&self.id).await {
            tracing::warn!(error = %err, "could not release this node's lease; it will lapse");
        }
    }

    /// Reads what other nodes appended to the log and wakes its readers.
    async fn catch_up(&self, source: &SourceName) {
        self.log.catch_up(source).await;
        self.readers.wake(source);
    }

    /// Catches up with every log another node has moved.
    async fn poll_heads(&self) {
        for source in self.log.behind().await {
            self.catch_up(&source).await;
        }
    }

    /// Another node took a reader over: let go of it, unless the store says this node owns it
    /// (signals carry no order: a later redirect to this node may have overtaken this one).
    async fn let_go_unless_owned(&self, id: crate::domain::subscription::SubscriptionId) {
        match self.store.subscription_record(id).await {
            Ok(Some(record)) if record.owner.as_deref() == Some(self.id.as_str()) => {}
            Ok(_) => {
                self.readers.remove_id(id);
            }
            Err(err) => {
                // The progress writer's fencing stops it here if another node owns it.
                tracing::warn!(%id, error = %err, "could not read a moved reader's owner");
            }
        }
    }

    /// Keeps the lease, claims orphans and follows the signals until delivery stops.
    pub async fn run(self: Arc<Self>, mut signals: Option<mpsc::Receiver<Signal>>) {
        let mut renew =
            tokio::time::interval_at(Instant::now() + self.lease_ttl / 4, self.lease_ttl / 4);
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(self.poll_interval);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = renew.tick() => {
                    if self.keep_lease().await {
                        self.rejoin().await;
                    }
                }
                _ = poll.tick() => {
                    self.poll_heads().await;
                    self.claim().await;
                }
                signal = next(&mut signals) => match signal {
                    Some(Signal::Appended(source, head)) => {
                        // This node's own appends are in its tail already.
                        if self.log.head(&source).is_some_and(|known| known < head) {
                            self.catch_up(&source).await;
                        }
                    }
                    Some(Signal::Ended(id)) => {
                        self.readers.remove_id(id);
                    }
                    Some(Signal::Moved(id, node)) if node != self.id => {
                        self.let_go_unless_owned(id).await;
                    }
                    Some(Signal::Moved(..)) => {}
                    Some(Signal::Released) => {
                        self.claim().await;
                        self.poll_heads().await;
                    }
                    None => signals = None,
                },
                () = self.stop.cancelled() => return,
            }
        }
    }
}

/// The next signal; never, when the store sends none.
async fn next(signals: &mut Option<mpsc::Receiver<Signal>>) -> Option<Signal> {
    match signals {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// How soon a failed lease renewal is tried again: each failure may have cost one dead pooled
/// connection, so a burst of them (sessions killed, a failover) is worked through quickly.
const RENEW_RETRY: Duration = Duration::from_millis(50);

impl Node {
    /// Renews the lease, trying again at once after an error for as long as the lease still
    /// holds. When it had lapsed, other nodes may have taken this node's subscriptions: it lets
    /// go of all of them and says so (true): it must join again.
    async fn keep_lease(&self) -> bool {
        let mut failures = 0u32;
        let asked = loop {
            let asked = Instant::now();
            let renewed = self.store.renew_node(&self.id, self.lease_ttl).await;
            match renewed {
                Err(err) if self.lease.confirmed() && !self.stop.is_cancelled() => {
                    failures += 1;
                    tracing::debug!(error = %err, failures, "renewing this node's lease failed; trying again");
                    tokio::time::sleep(RENEW_RETRY).await;
                }
                other => break (asked, other),
            }
        };
        let (asked, renewed) = asked;
        if failures > 0 && renewed.is_ok() {
            tracing::info!(failures, "this node's lease renewed after failed attempts");
        }
        match renewed {
            Ok(true) => {
                self.lease.extend_to(asked + self.lease_ttl);
                if self.lease.take_doubt() {
                    self.readers.wake_all();
                }
            }
            Ok(false) => {
                tracing::warn!(node = %self.id, "this node's lease lapsed; letting go of its subscriptions and joining again");
                self.readers.remove_all();
                return true;
            }
            Err(err) => {
                tracing::warn!(error = %err, "renewing this node's lease failed; deliveries stop when it runs out");
            }
        }
        false
    }

    /// Claims orphaned subscriptions and starts delivering them.
    async fn claim(&self) {
        // A start's load claims orphans itself; claiming here too would keep this loop from
        // renewing the lease for as long as a takeover of many lasts.
        if !self.lease.permits_sending()
            || self.stop.is_cancelled()
            || self.readers.loading.is_loading()
        {
            return;
        }
        loop {
            let now = self.clock.now();
            let claimed = match self.store.claim_orphans(&self.id, now, CLAIM_BATCH).await {
                Ok(claimed) => claimed,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming orphaned subscriptions failed");
                    return;
                }
            };
            let full = claimed.len() == CLAIM_BATCH as usize;
            if !claimed.is_empty() {
                tracing::info!(count = claimed.len(), "took over orphaned subscriptions");
            }
            for (subscription, progress) in claimed {
                if let Err(err) = self.adopt(subscription, progress).await {
                    tracing::warn!(error = %err, "could not take over a subscription");
                }
            }
            if !full {
                return;
            }
        }
    }
}
