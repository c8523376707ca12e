//! Delivery: logs and their readers. Every callback kind is a log (a source's events now) read
//! by readers (subscriptions), each with a cursor, sent its events in order, at least once, with
//! retries. The [`Dispatcher`] is the one handle above this folder; inside, each part owns its
//! state and asks the others through their methods:
//!
//! - `log.rs`: the logs' tails in memory and the group-commit appender (requests that arrive
//!   together share one transaction); the store is read only for backlog older than the tail.
//! - `readers.rs`, `reader.rs`, `worker.rs`: the reader registry, one reader's state, and the
//!   worker each reader with work gets: it reads after its cursor, filters, sends one event at a
//!   time under a global concurrency limit, retries with back-off, and tells the engine when it
//!   gives up (410 Gone, or failing past the give-up window).
//! - `progress.rs`: cursors and retry state written in batches (group commit); after a crash
//!   delivery resumes from the last stored cursor, so a duplicate is possible and a loss is not.
//! - `cluster.rs`, `lease.rs`: this node's lease, taking over what it owns and what is orphaned
//!   (the engine decides what becomes of each), and following other nodes' appends and ends.
//! - `ends.rs`, `compaction.rs`: housekeeping: the SubscriptionEnd outbox, retried and never
//!   looping, and the deletion of events no cursor needs.
//! - `sink_auth.rs`, `digest.rs`, `credentials.rs`: authenticating to a sink as a WS-Management
//!   subscriber asked (Basic, Digest, herald's client certificate), and the key its password is
//!   sealed with.
//!
//! The lifecycle rules (what may start, what ends and why) are the engine's: delivery reaches it
//! through the [`Lifecycle`] port.

pub mod client;
pub mod credentials;
pub mod policy;
pub mod retry;
pub mod sink_auth;

mod batches;
mod cluster;
mod compaction;
mod digest;
mod ends;
mod heartbeat;
mod lease;
mod loading;
mod log;
mod origins;
mod progress;
mod reader;
mod readers;
mod ring;
mod sending;
mod settings;
mod sink_security;
mod transport;
mod worker;

pub use settings::DeliverySettings;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::clock::Clock;
use crate::domain::event::{Event, NewEvent};
use crate::domain::subscription::{
    DeliveryProgress, EndReason, Ended, SourceName, Subscription, SubscriptionId,
};
use crate::filter::{EventView, Matcher};
use crate::metrics::{Metrics, SourceLabels};
use crate::store::{NodeId, Store, StoreError};
use client::{DeliveryClient, Outgoing};
use cluster::Node;
use ends::Outbox;
use lease::Lease;
pub use log::PublishError;
use log::{EventLog, OnAppend};
use readers::Readers;
use retry::RetryPolicy;
use ring::RingLimits;
use sending::Sending;

/// Builds the messages delivery sends, in each subscriber's dialect. Implemented by the
/// protocol layer, so delivery knows nothing of WS-Eventing.
pub trait Envelopes: Send + Sync {
    /// The notification carrying `event` to `subscription`'s NotifyTo.
    fn notification(&self, subscription: &Subscription, event: &Event) -> Outgoing;

    /// The SubscriptionEnd message for `subscription` ending for `reason`, or `None` when its
    /// version sends none for that reason (or it has no EndTo).
    fn subscription_end(&self, subscription: &Subscription, reason: EndReason) -> Option<Outgoing>;

    /// One message carrying `events` (in order) to a subscriber that takes them in batches;
    /// `position` is the last sequence number the batch accounts for (filtered-out events
    /// included). `None` when the subscriber takes no batches.
    fn batch(
        &self,
        subscription: &Subscription,
        events: &[&Event],
        position: u64,
    ) -> Option<Outgoing>;

    /// A heartbeat for a subscriber that asked for them, sent when nothing else was.
    fn heartbeat(&self, subscription: &Subscription) -> Option<Outgoing>;

    /// The notice sent in place of `event` when it alone exceeds the subscriber's envelope
    /// limit and the subscriber asked to be told.
    fn dropped(&self, subscription: &Subscription, event: &Event) -> Option<Outgoing>;
}

/// Publishes an event for a reader delivered to a message broker (an agent's AMQP bridge).
/// Implemented above delivery, which knows nothing of brokers' protocols.
#[async_trait]
pub trait Bridge: Send + Sync {
    /// Publishes `event` for `reader`; delivered once the broker confirms it.
    async fn publish(&self, reader: &Subscription, event: &Event) -> client::Attempt;
}

/// The engine's side of delivery: the lifecycle decisions delivery does not make itself.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// This node has come to own a stored, active subscription (at start, after its lease
    /// lapsed, or claimed from a node that is gone): start delivering it, or end it.
    async fn adopt(
        &self,
        subscription: Subscription,
        progress: DeliveryProgress,
    ) -> Result<(), StoreError>;

    /// Delivery gave up on a subscription (`error` is the last failure): end it.
    async fn gave_up(&self, subscription: &Subscription, error: &str);
}

/// The engine, as the parts of delivery reach it; set once when delivery starts.
#[derive(Default)]
struct EngineLink(OnceLock<Weak<dyn Lifecycle>>);

impl EngineLink {
    fn get(&self) -> Option<Arc<dyn Lifecycle>> {
        self.0.get().and_then(Weak::upgrade)
    }
}

/// [`Readers::add`] or [`Readers::adopt`].
type AddReader = fn(
    &Readers,
    Subscription,
    DeliveryProgress,
    Option<Arc<dyn Matcher>>,
    RetryPolicy,
) -> Result<(), Box<Subscription>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent before anything that can panic.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

type ProgressQueue = mpsc::UnboundedReceiver<(SubscriptionId, DeliveryProgress)>;

/// Delivery: the logs, their readers, this node and the housekeeping, and their tasks.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    /// The delivery client, for one-off posts (a channel's callback).
    client: DeliveryClient,
    log: Arc<EventLog>,
    readers: Arc<Readers>,
    node: Arc<Node>,
    outbox: Arc<Outbox>,
    engine: Arc<EngineLink>,
    progress: Mutex<Option<ProgressQueue>>,
    settings: DeliverySettings,
    /// The background tasks (appenders, progress writer, outbox, compaction, cluster).
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
    /// Builds delivery for these logs (with their retry policies). Call
    /// [`Dispatcher::start`] to load state and run it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        node: NodeId,
        client: DeliveryClient,
        (envelopes, bridge): (Arc<dyn Envelopes>, Arc<dyn Bridge>),
        settings: DeliverySettings,
        logs: Vec<(SourceName, RetryPolicy)>,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Dispatcher {
        let stop = CancellationToken::new();
        let sending_client = client.clone();
        let limits = RingLimits {
            events: settings.memory_events,
            bytes: settings.memory_bytes,
        };
        let log = Arc::new(EventLog::new(
            store.clone(),
            logs.iter().map(|(name, _)| name.clone()),
            limits,
            clock,
            metrics.clone(),
            stop.clone(),
        ));
        let (progress_tx, progress_rx) = mpsc::unbounded_channel();
        let lease = Arc::new(Lease::new());
        let engine = Arc::new(EngineLink::default());
        let permits = Arc::new(Semaphore::new(settings.max_concurrency.max(1)));
        let sending = Arc::new(Sending {
            log: log.clone(),
            lease: lease.clone(),
            client: client.clone(),
            envelopes: envelopes.clone(),
            bridge,
            permits: permits.clone(),
            progress: progress_tx,
            engine: engine.clone(),
            clock,
            metrics: metrics.clone(),
            stop: stop.clone(),
        });
        let readers = Arc::new(Readers::new(
            logs.iter().map(|(name, _)| name.clone()),
            log.clone(),
            sending,
        ));
        let node = Arc::new(Node::new(
            node,
            store.clone(),
            lease,
            (settings.lease_ttl, settings.poll_interval),
            log.clone(),
            readers.clone(),
            engine.clone(),
            clock,
            stop.clone(),
        ));
        let outbox = Arc::new(Outbox {
            store: store.clone(),
            envelopes,
            client,
            permits,
            retry: logs.into_iter().collect(),
            attempts: settings.end_notice_attempts,
            claim: settings.end_notice_claim,
            wake: Notify::new(),
            clock,
            metrics: metrics.clone(),
            stop: stop.clone(),
        });
        Dispatcher {
            store,
            client: sending_client,
            log,
            readers,
            node,
            outbox,
            engine,
            progress: Mutex::new(Some(progress_rx)),
            settings,
            tasks: TaskTracker::new(),
            stop,
            writer_stop: CancellationToken::new(),
            clock,
            metrics,
        }
    }

    /// The name this node goes by in the store.
    pub fn node(&self) -> &NodeId {
        self.node.id()
    }

    /// Loads the log heads, registers this node and starts the background tasks, one of which
    /// hands what this node owns (and orphans) to the engine's [`Lifecycle::adopt`] while
    /// herald already answers; [`Dispatcher::stop`] ends and awaits them all.
    pub async fn start(&self, engine: Weak<dyn Lifecycle>) -> Result<(), StoreError> {
        let _ = self.engine.0.set(engine);
        self.log.load_heads().await?;
        let signals = self.store.signals().await?;
        // What this node owns is loaded in the background (below), once everything that
        // may add or end a reader meanwhile is running: the load leaves those alone.
        self.readers.loading.begin();
        self.node.register().await?;
        let readers = Arc::downgrade(&self.readers);
        let on_append: OnAppend = Arc::new(move |source: &SourceName| {
            if let Some(readers) = readers.upgrade() {
                readers.wake(source);
            }
        });
        for appender in self.log.appenders(on_append) {
            self.tasks.spawn(appender);
        }
        if let Some(rx) = lock(&self.progress).take() {
            self.tasks.spawn(progress::run(
                Arc::downgrade(&self.readers),
                self.store.clone(),
                self.node().clone(),
                rx,
                self.settings.progress_interval,
                self.writer_stop.clone(),
            ));
        }
        self.tasks.spawn(ends::run(self.outbox.clone()));
        self.tasks.spawn(compaction::run(
            self.store.clone(),
            (self.settings.retention, self.settings.compaction_interval),
            self.clock,
            self.stop.clone(),
        ));
        self.tasks.spawn(self.node.clone().run(signals));
        self.tasks.spawn(self.node.clone().load_in_background());
        self.outbox.wake();
        Ok(())
    }

    /// Whether this node's lease is known to hold now (for readiness).
    pub fn lease_confirmed(&self) -> bool {
        self.node.lease_confirmed()
    }

    /// Gives this node's subscriptions up at once, for another node to claim (it is stopping;
    /// delivery has stopped and progress is written).
    pub async fn release(&self) {
        self.node.release().await;
    }

    /// Stops delivery: no new sends start, sleeping workers wake and leave, and this waits (up
    /// to `grace`) for sends in flight; then the progress writer flushes every cursor, theirs
    /// included, and every background task ends and is awaited.
    pub async fn stop(&self, grace: Duration) {
        self.stop.cancel();
        if !self.readers.stop(grace).await {
            tracing::warn!("deliveries still in flight at shutdown; they will be redelivered");
        }
        self.writer_stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Whether this is a configured source's log.
    pub fn serves(&self, source: &SourceName) -> bool {
        self.log.is_lasting(source)
    }

    /// Readers per configured source's log.
    pub fn reader_counts(&self) -> Vec<(SourceName, u64)> {
        self.log
            .lasting_names()
            .into_iter()
            .map(|name| {
                let count = self.readers.count(&name);
                (name, count)
            })
            .collect()
    }

    /// Readers of one log, with those a start's load has still to hand over.
    pub fn reader_count(&self, source: &SourceName) -> u64 {
        self.readers.count(source) + self.readers.loading.remaining(source)
    }

    /// Instances of a context service this node delivers.
    pub fn instance_count(&self, service: &SourceName) -> u64 {
        self.readers.instance_count(service)
    }

    /// Starts delivering a stored, active subscription, retried under `retry` (nothing when
    /// it is delivered already); a log that comes and goes gets its tail opened here.
    pub async fn start_reading(
        &self,
        subscription: Subscription,
        progress: DeliveryProgress,
        matcher: Option<Arc<dyn Matcher>>,
        retry: RetryPolicy,
    ) {
        self.open_and_add(subscription, progress, matcher, retry, Readers::add)
            .await;
    }

    /// As [`Dispatcher::start_reading`], for a subscription the store says this node owns
    /// (loaded at start or taken over): while the start's load is under way, one that was
    /// added or ended since is left as it is.
    pub async fn resume_reading(
        &self,
        subscription: Subscription,
        progress: DeliveryProgress,
        matcher: Option<Arc<dyn Matcher>>,
        retry: RetryPolicy,
    ) {
        self.open_and_add(subscription, progress, matcher, retry, Readers::adopt)
            .await;
    }

    async fn open_and_add(
        &self,
        subscription: Subscription,
        progress: DeliveryProgress,
        matcher: Option<Arc<dyn Matcher>>,
        retry: RetryPolicy,
        add: AddReader,
    ) {
        let mut subscription = subscription;
        // A removal may close a transient log's tail between opening and adding: open again.
        for _ in 0..3 {
            if !self.log.is_lasting(&subscription.source) {
                self.log.open(&subscription.source, progress.cursor).await;
            }
            match add(
                &self.readers,
                subscription,
                progress.clone(),
                matcher.clone(),
                retry,
            ) {
                Ok(()) => return,
                Err(back) => subscription = *back,
            }
        }
        tracing::warn!(id = %subscription.id, log = %subscription.source, "could not open the log's tail; the reader starts at the next join");
    }

    /// Whether this node is still loading its stored subscriptions after a start.
    pub fn loading(&self) -> bool {
        self.readers.loading.is_loading()
    }

    /// Waits until [`Dispatcher::reader_count`] (for a configured source's log) or
    /// [`Dispatcher::instance_count`] (for a context service) is whole: a start's load has
    /// counted what it will hand over, or for instances, has handed everything over.
    pub async fn counts_whole(&self, log: &SourceName) {
        let phase = if self.log.is_lasting(log) {
            loading::Phase::Counting
        } else {
            loading::Phase::Reading
        };
        self.readers.loading.past(phase).await;
    }

    /// Stops delivering a subscription the store has ended. The store queued its
    /// SubscriptionEnd if it has an EndTo: then the outbox is woken to send it (an Unsubscribe
    /// without one costs the outbox nothing).
    pub fn ended(&self, ended: &Ended) {
        self.readers.remove(&ended.source, ended.id);
        if ended.notice {
            self.outbox.wake();
        }
    }

    /// Stops delivering a subscription that goes on, to be read again from another start.
    pub fn stop_reading(&self, source: &SourceName, id: SubscriptionId) {
        self.readers.remove(source, id);
    }

    /// What `look` sees of a subscription of log `source` this node delivers, not ended.
    pub fn held<T>(
        &self,
        source: &str,
        id: SubscriptionId,
        look: impl FnOnce(&Subscription) -> T,
    ) -> Option<T> {
        self.readers.held(source, id, look)
    }

    /// Delivery state of an active subscription, fresher than the store's.
    pub fn progress(&self, source: &SourceName, id: SubscriptionId) -> Option<DeliveryProgress> {
        self.readers.progress(source, id)
    }

    /// The last sequence number of a log.
    pub fn head(&self, source: &SourceName) -> Option<u64> {
        self.log.head(source)
    }

    /// Up to `limit` events of a log after `after`, in order: from this node's tail when it
    /// reaches back that far, otherwise from the store. (This node's tail may lag other
    /// nodes' appends by up to the poll interval.)
    pub async fn events_after(
        &self,
        log: &SourceName,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<EventView>>, StoreError> {
        self.log.events_after(log, after, limit).await
    }

    /// Waits until this node's tail of `log` has grown past `seq`, or `deadline` passes: woken
    /// as events join it, never spinning.
    pub async fn grown_past(&self, log: &SourceName, seq: u64, deadline: tokio::time::Instant) {
        self.log.grown_past(log, seq, deadline).await;
    }

    /// A pulled subscription's stored cursor is now `cursor` (its Pull wrote it): this node's
    /// copy follows, never backwards, so the backlog it reports stays true.
    pub fn pulled_to(&self, source: &SourceName, id: SubscriptionId, cursor: u64) {
        self.readers.pulled_to(source, id, cursor);
    }

    /// Refreshes the backlog gauge of each configured source.
    pub fn update_backlog_metrics(&self) {
        for source in &self.log.lasting_names() {
            let head = self.log.head(source).unwrap_or(0);
            let backlog = self.readers.backlog(source, head);
            self.metrics
                .backlog
                .get_or_create(&SourceLabels {
                    source: source.to_string(),
                })
                .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        }
    }

    /// Appends events to a log; returns them once durable. Concurrent calls for the same log
    /// share one transaction.
    pub async fn publish(
        &self,
        source: &SourceName,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<Event>>, PublishError> {
        self.log.publish(source, events).await
    }

    /// Appends events to a log that comes and goes (a context instance's), one transaction
    /// each; returns them once durable. Its reader wakes wherever it is delivered.
    pub async fn append(
        &self,
        log: &SourceName,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<Event>>, PublishError> {
        self.log.append(log, events).await
    }

    /// Takes note of an event the store appended in a caller's transaction (an agent's
    /// message): its log's tail takes it, when open here, and its readers wake.
    pub async fn appended(&self, event: Event) {
        let source = event.source.clone();
        self.log.appended(Arc::new(event)).await;
        self.readers.wake(&source);
    }

    /// POSTs a body as it is, through the delivery client (the endpoint policy, its timeouts),
    /// under the global limit of requests in flight is not taken: for rare one-off sends.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&'static str, String)],
    ) -> client::Attempt {
        self.client.post(url, content_type, body, headers).await
    }

    /// The delivery client's timeouts.
    pub fn client_settings(&self) -> client::ClientSettings {
        self.client.settings()
    }

    /// The delivery client: what sink authentication can do on this node.
    pub fn client(&self) -> &DeliveryClient {
        &self.client
    }

    /// The last sequence number of any log, read from the store when its tail is not open here.
    pub async fn log_head(&self, log: &SourceName) -> Result<u64, StoreError> {
        if let Some(head) = self.log.head(log) {
            return Ok(head);
        }
        self.store.log_head(log).await
    }
}
