//! Delivery: the event log's in-memory tail, the group-commit publisher, and the dispatcher
//! that sends each subscription its events in order, at least once, with retries.
//!
//! - Publishing appends a batch of events to the store in one transaction per source (requests
//!   that arrive together share it), then keeps them in a per-source ring of recent events and
//!   wakes the source's subscriptions. The store is read only for backlog older than the ring.
//! - Each subscription with work has one worker task: it reads the events after its cursor,
//!   evaluates its filter, sends matching events one at a time (strict order) under a global
//!   concurrency limit, and advances its cursor. Failures are retried with back-off; a
//!   subscription that keeps failing past the give-up window, or gets 410 Gone, ends with
//!   DeliveryFailure.
//! - Cursors and retry state are written in batches (group commit) by the progress writer;
//!   after a crash delivery resumes from the last stored cursor, so a duplicate is possible
//!   and a loss is not.
//! - SubscriptionEnd messages come from an outbox in the store, retried, never looping.
//! - With several nodes on one store, this node delivers the subscriptions it owns, holds a
//!   lease that fences them, claims orphans of nodes that died or stopped, and learns of other
//!   nodes' appends and ends from the store's signals, or from polling when they are missed.

pub mod client;
pub mod policy;
pub mod retry;

mod cluster;
mod compaction;
mod ends;
mod lease;
mod progress;
mod ring;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::clock::Clock;
use crate::domain::event::{Event, NewEvent};
use crate::domain::subscription::{
    DeliveryProgress, EndReason, SourceName, Subscription, SubscriptionId,
};
use crate::filter::{EventView, FilterEngine, Matcher};
use crate::metrics::{Metrics, SourceLabels};
use crate::store::{NodeId, Store, StoreError};
use client::{DeliveryClient, Outgoing};
use lease::Lease;
use retry::RetryPolicy;
use ring::{Ring, RingLimits};

/// Builds the messages delivery sends, in each subscriber's dialect. Implemented by the
/// protocol layer, so delivery knows nothing of WS-Eventing.
pub trait Envelopes: Send + Sync {
    /// The notification carrying `event` to `subscription`'s NotifyTo.
    fn notification(&self, subscription: &Subscription, event: &Event) -> Outgoing;

    /// The SubscriptionEnd message for `subscription` ending for `reason`, or `None` when its
    /// version sends none for that reason (or it has no EndTo).
    fn subscription_end(&self, subscription: &Subscription, reason: EndReason) -> Option<Outgoing>;
}

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

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No such source.
    #[error("no event source named '{0}'")]
    UnknownSource(String),
    /// The store failed; nothing was appended.
    #[error("the event log is unavailable: {0}")]
    Store(String),
    /// herald is shutting down.
    #[error("herald is shutting down")]
    Stopping,
}

struct PublishRequest {
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<Vec<Arc<Event>>, PublishError>>,
}

/// A source: its log tail, publisher and subscriptions.
pub(crate) struct SourceState {
    name: SourceName,
    retry: RetryPolicy,
    ring: Mutex<Ring>,
    subscribers: Mutex<HashMap<SubscriptionId, Arc<Entry>>>,
    /// Held while the ring is extended, so that events are added in order, once.
    extend: tokio::sync::Mutex<()>,
    /// Active subscriptions, including places reserved by a Subscribe being written.
    active: AtomicU64,
    publisher: mpsc::Sender<PublishRequest>,
}

/// One active subscription in delivery.
pub(crate) struct Entry {
    subscription: Subscription,
    matcher: Option<Arc<dyn Matcher>>,
    source: Arc<SourceState>,
    progress: Mutex<DeliveryProgress>,
    /// A worker is running for it.
    running: AtomicBool,
    /// It has ended; its worker stops at the next step.
    ended: AtomicBool,
    /// Interrupts a back-off sleep when it ends.
    wake: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent before anything that can panic.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The dispatcher: owns delivery state and its background tasks.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    node: NodeId,
    /// This node's lease; no notification is sent once it has passed.
    lease: Lease,
    client: DeliveryClient,
    envelopes: Arc<dyn Envelopes>,
    filters: Arc<dyn FilterEngine>,
    settings: DeliverySettings,
    sources: HashMap<SourceName, Arc<SourceState>>,
    permits: Semaphore,
    progress: mpsc::UnboundedSender<(SubscriptionId, DeliveryProgress)>,
    progress_rx: Mutex<Option<mpsc::UnboundedReceiver<(SubscriptionId, DeliveryProgress)>>>,
    publish_rx: Mutex<Vec<(Arc<SourceState>, mpsc::Receiver<PublishRequest>)>>,
    end_wake: Notify,
    /// The subscriptions' workers, each tracked until it returns.
    workers: TaskTracker,
    /// The background tasks (publishers, progress writer, outbox, compaction, cluster).
    tasks: TaskTracker,
    /// Cancelled when delivery stops: no new send starts, sleepers wake and leave.
    stop: CancellationToken,
    /// Tells the progress writer to flush and end: only once the workers have finished, so the
    /// cursors of sends that were in flight at the stop are written too.
    writer_stop: CancellationToken,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl Dispatcher {
    /// Builds the dispatcher for these sources (with their retry policies). Call
    /// [`Dispatcher::start`] to load state and run it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        node: NodeId,
        client: DeliveryClient,
        envelopes: Arc<dyn Envelopes>,
        filters: Arc<dyn FilterEngine>,
        settings: DeliverySettings,
        sources: Vec<(SourceName, RetryPolicy)>,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Arc<Dispatcher> {
        let (progress, progress_rx) = mpsc::unbounded_channel();
        let mut publish_rx = Vec::new();
        let sources = sources
            .into_iter()
            .map(|(name, retry)| {
                let (publisher, rx) = mpsc::channel(1024);
                let state = Arc::new(SourceState {
                    name: name.clone(),
                    retry,
                    ring: Mutex::new(Ring::default()),
                    subscribers: Mutex::new(HashMap::new()),
                    extend: tokio::sync::Mutex::new(()),
                    active: AtomicU64::new(0),
                    publisher,
                });
                publish_rx.push((state.clone(), rx));
                (name, state)
            })
            .collect();
        Arc::new(Dispatcher {
            store,
            node,
            lease: Lease::new(),
            client,
            envelopes,
            filters,
            permits: Semaphore::new(settings.max_concurrency.max(1)),
            settings,
            sources,
            progress,
            progress_rx: Mutex::new(Some(progress_rx)),
            publish_rx: Mutex::new(publish_rx),
            end_wake: Notify::new(),
            workers: TaskTracker::new(),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            writer_stop: CancellationToken::new(),
            clock,
            metrics,
        })
    }

    /// The filter engine subscriptions are compiled with.
    pub fn filters(&self) -> &Arc<dyn FilterEngine> {
        &self.filters
    }

    /// The endpoint policy.
    pub fn client(&self) -> &DeliveryClient {
        &self.client
    }

    /// The name this node goes by in the store.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// Loads the log heads, registers this node, takes its subscriptions (and orphans) from the
    /// store, ends subscriptions of sources no longer configured (SourceShuttingDown), and
    /// starts the background tasks and the workers that have work; [`Dispatcher::stop`] ends
    /// and awaits them all.
    pub async fn start(self: &Arc<Self>) -> Result<(), StoreError> {
        for (source, head) in self.store.source_heads().await? {
            if let Some(state) = self.sources.get(&source) {
                lock(&state.ring).head = head;
            }
        }
        let signals = self.store.signals().await?;
        self.join().await?;
        for (source, rx) in lock(&self.publish_rx).drain(..) {
            self.tasks.spawn(publisher(
                Arc::downgrade(self),
                source,
                rx,
                self.stop.clone(),
            ));
        }
        if let Some(rx) = lock(&self.progress_rx).take() {
            self.tasks.spawn(progress::run(
                Arc::downgrade(self),
                self.store.clone(),
                self.node.clone(),
                rx,
                self.settings.progress_interval,
                self.writer_stop.clone(),
            ));
        }
        self.tasks.spawn(ends::run(self.clone()));
        self.tasks.spawn(compaction::run(self.clone()));
        self.tasks.spawn(cluster::run(self.clone(), signals));
        self.end_wake.notify_one();
        Ok(())
    }

    /// Registers this node with a fresh lease and takes over what it owns and what is
    /// orphaned.
    async fn join(self: &Arc<Self>) -> Result<(), StoreError> {
        let asked = Instant::now();
        self.store
            .register_node(&self.node, self.settings.lease_ttl)
            .await?;
        self.lease.extend_to(asked + self.settings.lease_ttl);
        let now = self.clock.now();
        while self
            .store
            .claim_orphans(&self.node, now, cluster::CLAIM_BATCH)
            .await?
            .len()
            == cluster::CLAIM_BATCH as usize
        {}
        let mut after = None;
        loop {
            let page = self
                .store
                .owned_subscriptions(&self.node, now, after, cluster::LOAD_PAGE)
                .await?;
            for (subscription, progress) in page.items {
                self.adopt(subscription, progress).await?;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(())
    }

    /// Starts delivering a subscription this node has come to own: at start, or claimed from
    /// a node that is gone. One whose source is no longer configured ends (SourceShuttingDown);
    /// one whose stored filter no longer compiles is cancelled.
    async fn adopt(
        self: &Arc<Self>,
        subscription: Subscription,
        progress: DeliveryProgress,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let Some(state) = self.sources.get(&subscription.source) else {
            self.store
                .end_subscription(subscription.id, EndReason::SourceShuttingDown, now)
                .await?;
            tracing::info!(id = %subscription.id, source = %subscription.source, "source removed; subscription ended");
            self.end_wake.notify_one();
            return Ok(());
        };
        if lock(&state.subscribers).contains_key(&subscription.id) {
            return Ok(());
        }
        let matcher = match subscription.filter.as_ref() {
            None => None,
            Some(filter) => match self.filters.compile(
                filter,
                subscription.dialect.eventing,
                subscription.dialect.soap,
                subscription.dialect.addressing,
            ) {
                Ok(matcher) => Some(matcher),
                Err(err) => {
                    tracing::warn!(id = %subscription.id, error = %err, "stored filter no longer compiles; subscription cancelled");
                    self.store
                        .end_subscription(subscription.id, EndReason::SourceCancelling, now)
                        .await?;
                    self.end_wake.notify_one();
                    return Ok(());
                }
            },
        };
        state.active.fetch_add(1, Ordering::Relaxed);
        self.register(subscription, progress, matcher);
        Ok(())
    }

    /// Whether this node's lease is known to hold now (for readiness).
    pub fn lease_confirmed(&self) -> bool {
        self.lease.confirmed()
    }

    /// Whether this node's lease is known to hold now; a worker sends nothing when it is not.
    fn lease_holds(&self) -> bool {
        self.lease.permits_sending()
    }

    /// Stops delivering everything (the lease lapsed: other nodes may own it all by now).
    fn drop_all(&self) {
        for state in self.sources.values() {
            let entries: Vec<Arc<Entry>> =
                lock(&state.subscribers).drain().map(|(_, e)| e).collect();
            for entry in entries {
                entry.ended.store(true, Ordering::Release);
                entry.wake.notify_one();
                self.release_place(&state.name);
            }
        }
    }

    /// Removes a subscription that ended elsewhere, or that this node no longer owns.
    fn remove_id(&self, id: SubscriptionId) {
        let source = self
            .sources
            .values()
            .find(|state| lock(&state.subscribers).contains_key(&id))
            .map(|state| state.name.clone());
        if let Some(source) = source {
            self.remove(&source, id);
        }
    }

    /// Gives this node's subscriptions up at once, for another node to claim (it is stopping;
    /// delivery has stopped and progress is written).
    pub async fn release(&self) {
        if let Err(err) = self.store.release_node(&self.node).await {
            tracing::warn!(error = %err, "could not release this node's lease; it will lapse");
        }
    }

    /// Stops delivery: no new sends start, sleeping workers wake and leave, and this waits (up
    /// to `grace`) for sends in flight; then the progress writer flushes every cursor, theirs
    /// included, and every background task ends and is awaited.
    pub async fn stop(&self, grace: Duration) {
        self.stop.cancel();
        for state in self.sources.values() {
            for entry in lock(&state.subscribers).values() {
                entry.wake.notify_one();
            }
        }
        self.workers.close();
        if tokio::time::timeout(grace, self.workers.wait())
            .await
            .is_err()
        {
            tracing::warn!("deliveries still in flight at shutdown; they will be redelivered");
        }
        self.writer_stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    fn source(&self, name: &SourceName) -> Option<&Arc<SourceState>> {
        self.sources.get(name)
    }

    /// Active subscriptions per source.
    pub fn active_counts(&self) -> Vec<(SourceName, u64)> {
        let mut counts: Vec<_> = self
            .sources
            .values()
            .map(|s| (s.name.clone(), s.active.load(Ordering::Relaxed)))
            .collect();
        counts.sort();
        counts
    }

    /// Reserves a place for a new subscription under the source's limit; `false` when full.
    pub fn reserve(&self, source: &SourceName, limit: Option<u64>) -> bool {
        let Some(state) = self.source(source) else {
            return false;
        };
        let mut current = state.active.load(Ordering::Relaxed);
        loop {
            if limit.is_some_and(|limit| current >= limit) {
                return false;
            }
            match state.active.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives back a reservation whose subscription was not stored.
    pub fn release_place(&self, source: &SourceName) {
        if let Some(state) = self.source(source) {
            let _ = state
                .active
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Adds a stored, active subscription to delivery (its place already reserved).
    pub fn register(
        self: &Arc<Self>,
        subscription: Subscription,
        progress: DeliveryProgress,
        matcher: Option<Arc<dyn Matcher>>,
    ) {
        let Some(source) = self.source(&subscription.source).cloned() else {
            return;
        };
        let id = subscription.id;
        let entry = Arc::new(Entry {
            subscription,
            matcher,
            source: source.clone(),
            progress: Mutex::new(progress),
            running: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            wake: Notify::new(),
        });
        lock(&source.subscribers).insert(id, entry.clone());
        self.kick(&entry);
    }

    /// Removes an ended subscription from delivery; its worker stops at its next step.
    pub fn remove(&self, source: &SourceName, id: SubscriptionId) {
        let Some(state) = self.source(source) else {
            return;
        };
        let removed = lock(&state.subscribers).remove(&id);
        if let Some(entry) = removed {
            entry.ended.store(true, Ordering::Release);
            entry.wake.notify_one();
            self.release_place(source);
        }
        self.end_wake.notify_one();
    }

    /// A SubscriptionEnd may be pending: let the sender look now.
    pub fn end_notice_pending(&self) {
        self.end_wake.notify_one();
    }

    /// Delivery state of an active subscription, fresher than the store's.
    pub fn progress(
        &self,
        source: &SourceName,
        id: SubscriptionId,
    ) -> Option<(DeliveryProgress, u64)> {
        let state = self.source(source)?;
        let entry = lock(&state.subscribers).get(&id).cloned()?;
        let progress = lock(&entry.progress).clone();
        let head = lock(&state.ring).head;
        Some((progress, head))
    }

    /// The last sequence number of a source.
    pub fn head(&self, source: &SourceName) -> Option<u64> {
        self.source(source).map(|state| lock(&state.ring).head)
    }

    /// Refreshes the backlog gauge.
    pub fn update_backlog_metrics(&self) {
        for state in self.sources.values() {
            let head = lock(&state.ring).head;
            let backlog: u64 = lock(&state.subscribers)
                .values()
                .map(|entry| head.saturating_sub(lock(&entry.progress).cursor))
                .sum();
            self.metrics
                .backlog
                .get_or_create(&SourceLabels {
                    source: state.name.to_string(),
                })
                .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        }
    }

    /// Appends events to a source's log; returns them once durable. Concurrent calls for the
    /// same source share one transaction.
    pub async fn publish(
        &self,
        source: &SourceName,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<Event>>, PublishError> {
        let state = self
            .source(source)
            .ok_or_else(|| PublishError::UnknownSource(source.to_string()))?;
        if self.stopping() {
            return Err(PublishError::Stopping);
        }
        let (reply, response) = oneshot::channel();
        state
            .publisher
            .send(PublishRequest { events, reply })
            .await
            .map_err(|_| PublishError::Stopping)?;
        response.await.map_err(|_| PublishError::Stopping)?
    }

    /// Starts a worker for the entry if it has work and none is running.
    fn kick(self: &Arc<Self>, entry: &Arc<Entry>) {
        if entry.ended.load(Ordering::Acquire) || self.stopping() || !self.lease_holds() {
            return;
        }
        let head = lock(&entry.source.ring).head;
        if lock(&entry.progress).cursor >= head {
            return;
        }
        if entry.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.workers.spawn(worker::run(self.clone(), entry.clone()));
    }

    /// Wakes every subscription of a source that is behind.
    fn wake_source(self: &Arc<Self>, state: &SourceState) {
        let entries: Vec<Arc<Entry>> = lock(&state.subscribers).values().cloned().collect();
        for entry in entries {
            if !entry.running.load(Ordering::Acquire) {
                self.kick(&entry);
            }
        }
    }

    /// Up to `limit` events after `cursor`: from memory when the ring reaches back that far,
    /// otherwise from the store.
    async fn events_after(
        &self,
        state: &SourceState,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<Arc<EventView>>, StoreError> {
        if let Some(recent) = lock(&state.ring).after(cursor, limit) {
            return Ok(recent);
        }
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let events = self.store.events_after(&state.name, cursor, limit).await?;
        Ok(events
            .into_iter()
            .map(|event| Arc::new(EventView::new(Arc::new(event))))
            .collect())
    }
}

impl Dispatcher {
    /// Adds events this node appended to the source's ring. Events other nodes appended in
    /// between are read from the store first, so the ring stays gapless.
    async fn add_to_ring(&self, state: &SourceState, appended: &[Arc<Event>]) {
        let Some(first) = appended.first().map(|e| e.seq) else {
            return;
        };
        let _extending = state.extend.lock().await;
        let head = lock(&state.ring).head;
        if first > head + 1 {
            let missing = u32::try_from(first - head - 1).unwrap_or(u32::MAX);
            match self.store.events_after(&state.name, head, missing).await {
                Ok(between) => {
                    let between: Vec<Arc<Event>> = between.into_iter().map(Arc::new).collect();
                    self.extend_ring(state, &between);
                }
                Err(err) => {
                    tracing::warn!(source = %state.name, error = %err, "reading other nodes' events failed; they will be read as backlog");
                }
            }
        }
        self.extend_ring(state, appended);
    }

    /// Reads events appended by other nodes into the ring and wakes the source's
    /// subscriptions.
    async fn catch_up(self: &Arc<Self>, source: &SourceName) {
        let Some(state) = self.sources.get(source).cloned() else {
            return;
        };
        // Read in pages: a page of large events must not take much more than the ring holds.
        let batch = u32::try_from(self.settings.memory_events.min(256)).unwrap_or(256);
        {
            let _extending = state.extend.lock().await;
            loop {
                let head = lock(&state.ring).head;
                let events = match self.store.events_after(&state.name, head, batch).await {
                    Ok(events) => events,
                    Err(err) => {
                        tracing::warn!(source = %state.name, error = %err, "reading other nodes' events failed; will poll again");
                        break;
                    }
                };
                let full = events.len() == batch as usize;
                let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
                self.extend_ring(&state, &events);
                if !full {
                    break;
                }
            }
        }
        self.wake_source(&state);
    }

    /// Appends events to the ring (see [`Ring::extend`]).
    fn extend_ring(&self, state: &SourceState, events: &[Arc<Event>]) {
        let limits = RingLimits {
            events: self.settings.memory_events,
            bytes: self.settings.memory_bytes,
        };
        lock(&state.ring).extend(events, limits);
    }

    /// Reads every source's head from the store and catches up with those that moved.
    async fn poll_heads(self: &Arc<Self>) {
        let heads = match self.store.source_heads().await {
            Ok(heads) => heads,
            Err(err) => {
                tracing::warn!(error = %err, "reading the log heads failed");
                return;
            }
        };
        for (source, head) in heads {
            let behind = self
                .sources
                .get(&source)
                .is_some_and(|state| lock(&state.ring).head < head);
            if behind {
                self.catch_up(&source).await;
            }
        }
    }
}

/// The group-commit publisher of one source.
async fn publisher(
    dispatcher: std::sync::Weak<Dispatcher>,
    state: Arc<SourceState>,
    mut requests: mpsc::Receiver<PublishRequest>,
    stop: CancellationToken,
) {
    const MAX_BATCH_EVENTS: usize = 2000;
    loop {
        let first = tokio::select! {
            request = requests.recv() => match request { Some(r) => r, None => return },
            () = stop.cancelled() => return,
        };
        let mut batch = vec![first];
        let mut count = batch[0].events.len();
        while count < MAX_BATCH_EVENTS {
            match requests.try_recv() {
                Ok(request) => {
                    count += request.events.len();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        let Some(dispatcher) = dispatcher.upgrade() else {
            return;
        };
        let events: Vec<NewEvent> = batch
            .iter()
            .flat_map(|r| r.events.iter().cloned())
            .collect();
        let now = dispatcher.clock.now();
        match dispatcher
            .store
            .append_events(&state.name, &events, now)
            .await
        {
            Ok(appended) => {
                let appended: Vec<Arc<Event>> = appended.into_iter().map(Arc::new).collect();
                dispatcher.add_to_ring(&state, &appended).await;
                dispatcher
                    .metrics
                    .events_published
                    .get_or_create(&SourceLabels {
                        source: state.name.to_string(),
                    })
                    .inc_by(appended.len() as u64);
                dispatcher.wake_source(&state);
                let mut rest = appended.as_slice();
                for request in batch {
                    let (mine, others) = rest.split_at(request.events.len().min(rest.len()));
                    rest = others;
                    let _ = request.reply.send(Ok(mine.to_vec()));
                }
            }
            Err(err) => {
                tracing::error!(source = %state.name, error = %err, "append failed; nothing was published");
                for request in batch {
                    let _ = request
                        .reply
                        .send(Err(PublishError::Store(err.to_string())));
                }
            }
        }
    }
}
