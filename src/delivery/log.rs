//! The logs' tails and their group-commit appender: publishing appends a batch of events to
//! the store in one transaction per log (requests that arrive together share it), then keeps
//! them in the log's ring of recent events, so readers read the store only for backlog older
//! than the ring. Events other nodes append are read in by [`EventLog::catch_up`].
//!
//! A configured source's log lives as long as herald. Other logs (a callback context's
//! instance) come and go: this node opens a tail for one while it delivers its reader, with a
//! small ring. Appends to them share one group-commit appender: whatever queued while the last
//! transaction ran goes into the next one, whichever logs it is for.

use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lock;
use super::ring::{Ring, RingLimits};
use crate::domain::clock::Clock;
use crate::domain::event::{Event, NewEvent};
use crate::domain::maps::Map;
use crate::domain::subscription::SourceName;
use crate::filter::EventView;
use crate::metrics::{Metrics, SourceLabels};
use crate::store::{Store, StoreError};

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

/// How often a wait for a log to grow looks again without being woken.
const GROWTH_POLL: Duration = Duration::from_millis(250);

/// Most events appended in one transaction.
const MAX_BATCH_EVENTS: usize = 2000;

struct PublishRequest {
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<Vec<Arc<Event>>, PublishError>>,
}

/// An append to a log that comes and goes, for the shared appender.
struct AppendRequest {
    log: SourceName,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<Vec<Arc<Event>>, PublishError>>,
}

/// Most requests the shared appender commits at once.
const MAX_APPEND_REQUESTS: usize = 512;

/// One log's tail in memory and its appender's queue.
struct Tail {
    name: SourceName,
    ring: Mutex<Ring>,
    /// Held while the ring is extended, so that events are added in order, once.
    extend: tokio::sync::Mutex<()>,
    /// The group-commit appender's queue; `None` for a log that comes and goes.
    publisher: Option<mpsc::Sender<PublishRequest>>,
    limits: RingLimits,
    /// Woken whenever events join the ring (for those waiting on the log, such as a Pull).
    grown: Notify,
}

impl Tail {
    /// Adds events to the ring and wakes whoever waits for the log to grow.
    fn extend(&self, events: &[Arc<Event>]) {
        lock(&self.ring).extend(events, self.limits);
        self.grown.notify_waiters();
    }
}

/// The ring of a log that comes and goes: many may be open at once.
const SMALL_RING: RingLimits = RingLimits {
    events: 64,
    bytes: 1024 * 1024,
};

/// Called with a log's name once events were added to its tail (to wake its readers).
pub(super) type OnAppend = Arc<dyn Fn(&SourceName) + Send + Sync>;

/// The logs this node serves: their tails in memory and their appenders.
pub(super) struct EventLog {
    store: Arc<dyn Store>,
    tails: RwLock<Map<SourceName, Arc<Tail>>>,
    /// Called after events were added to a tail; set when the appenders start.
    on_append: OnceLock<OnAppend>,
    queues: Mutex<Vec<(Arc<Tail>, mpsc::Receiver<PublishRequest>)>>,
    /// The shared appender of the logs that come and go, and its queue until it starts.
    appends: mpsc::Sender<AppendRequest>,
    append_queue: Mutex<Option<mpsc::Receiver<AppendRequest>>>,
    clock: Clock,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
}

impl EventLog {
    pub fn new(
        store: Arc<dyn Store>,
        logs: impl IntoIterator<Item = SourceName>,
        limits: RingLimits,
        clock: Clock,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> EventLog {
        let mut queues = Vec::new();
        let tails = logs
            .into_iter()
            .map(|name| {
                let (publisher, rx) = mpsc::channel(1024);
                let tail = Arc::new(Tail {
                    name: name.clone(),
                    ring: Mutex::new(Ring::default()),
                    extend: tokio::sync::Mutex::new(()),
                    publisher: Some(publisher),
                    limits,
                    grown: Notify::new(),
                });
                queues.push((tail.clone(), rx));
                (name, tail)
            })
            .collect();
        let (appends, append_queue) = mpsc::channel(4 * MAX_APPEND_REQUESTS);
        EventLog {
            appends,
            append_queue: Mutex::new(Some(append_queue)),
            store,
            tails: RwLock::new(tails),
            on_append: OnceLock::new(),
            queues: Mutex::new(queues),
            clock,
            metrics,
            stop,
        }
    }

    fn tail(&self, name: &SourceName) -> Option<Arc<Tail>> {
        self.tails
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// What `look` sees of a log's tail, read under the registry's lock: no reference to the
    /// tail is taken (a count shared by every request, on each core).
    fn with_tail<T>(&self, name: &SourceName, look: impl FnOnce(&Tail) -> T) -> Option<T> {
        let tails = self.tails.read().unwrap_or_else(|e| e.into_inner());
        tails.get(name).map(|tail| look(tail))
    }

    /// Whether this is a configured source's log, served for as long as herald runs.
    pub fn is_lasting(&self, name: &SourceName) -> bool {
        self.with_tail(name, |tail| tail.publisher.is_some())
            .unwrap_or(false)
    }

    /// The configured sources' logs.
    pub fn lasting_names(&self) -> Vec<SourceName> {
        let tails = self.tails.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<SourceName> = tails
            .values()
            .filter(|tail| tail.publisher.is_some())
            .map(|tail| tail.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Opens a tail for a log that comes and goes (nothing when it is open), empty, at the
    /// log's head in the store (its backlog is read from the store as a reader needs it).
    pub async fn open(&self, name: &SourceName, cursor: u64) {
        if self.tail(name).is_some() {
            return;
        }
        let head = match self.store.log_head(name).await {
            Ok(head) => head.max(cursor),
            Err(err) => {
                tracing::warn!(log = %name, error = %err, "reading a log's head failed; the next poll reads it");
                cursor
            }
        };
        {
            let mut tails = self.tails.write().unwrap_or_else(|e| e.into_inner());
            tails.entry(name.clone()).or_insert_with(|| {
                Arc::new(Tail {
                    name: name.clone(),
                    ring: Mutex::new(Ring::starting_at(head)),
                    extend: tokio::sync::Mutex::new(()),
                    publisher: None,
                    limits: SMALL_RING,
                    grown: Notify::new(),
                })
            });
        }
    }

    /// Closes the tail of a log that comes and goes (a configured source's stays).
    pub fn close(&self, name: &SourceName) {
        let mut tails = self.tails.write().unwrap_or_else(|e| e.into_inner());
        if tails.get(name).is_some_and(|tail| tail.publisher.is_none()) {
            tails.remove(name);
        }
    }

    /// Reads every open log's head from the store.
    pub async fn load_heads(&self) -> Result<(), StoreError> {
        for (name, head) in self.store.source_heads().await? {
            if let Some(tail) = self.tail(&name) {
                lock(&tail.ring).head = head;
            }
        }
        Ok(())
    }

    /// The appender tasks, one per log, each running until `stop`; `on_append` is called after
    /// each batch is in the tail.
    pub fn appenders(
        self: &Arc<Self>,
        on_append: OnAppend,
    ) -> Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>> {
        let _ = self.on_append.set(on_append.clone());
        let mut tasks: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> =
            lock(&self.queues)
                .drain(..)
                .map(|(tail, queue)| {
                    Box::pin(appender(self.clone(), tail, queue, on_append.clone())) as _
                })
                .collect();
        if let Some(queue) = lock(&self.append_queue).take() {
            tasks.push(Box::pin(shared_appender(self.clone(), queue)));
        }
        tasks
    }

    /// The last sequence number of a log.
    pub fn head(&self, name: &SourceName) -> Option<u64> {
        self.tail(name).map(|tail| lock(&tail.ring).head)
    }

    /// Waits until this node's tail of the log has grown past `seq`, or `deadline` passes.
    /// Woken by the tail as events join it (appended here, or read in from other nodes'
    /// appends); also looks again every [`GROWTH_POLL`], should a log's tail not be open here.
    pub async fn grown_past(&self, name: &SourceName, seq: u64, deadline: Instant) {
        loop {
            let Some(tail) = self.tail(name) else {
                // No tail here: look again after a while.
                let now = Instant::now();
                if now >= deadline {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep_until((now + GROWTH_POLL).min(deadline)) => {}
                    () = self.stop.cancelled() => return,
                }
                continue;
            };
            // Created before the head is read: a `notify_waiters` in between still wakes it.
            let grown = tail.grown.notified();
            let now = Instant::now();
            if lock(&tail.ring).head > seq || now >= deadline {
                return;
            }
            tokio::select! {
                () = grown => {}
                () = tokio::time::sleep_until((now + GROWTH_POLL).min(deadline)) => {}
                () = self.stop.cancelled() => return,
            }
        }
    }

    /// Appends events to a configured source's log; returns them once durable. Concurrent
    /// calls for the same log share one transaction.
    pub async fn publish(
        &self,
        name: &SourceName,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<Event>>, PublishError> {
        let publisher = self
            .tail(name)
            .and_then(|tail| tail.publisher.clone())
            .ok_or_else(|| PublishError::UnknownSource(name.to_string()))?;
        if self.stop.is_cancelled() {
            return Err(PublishError::Stopping);
        }
        let (reply, response) = oneshot::channel();
        publisher
            .send(PublishRequest { events, reply })
            .await
            .map_err(|_| PublishError::Stopping)?;
        response.await.map_err(|_| PublishError::Stopping)?
    }

    /// Appends events to a log that comes and goes through the shared appender; returns them
    /// once durable. When this node has its tail open they join it and its reader wakes.
    pub async fn append(
        &self,
        name: &SourceName,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<Event>>, PublishError> {
        if self.stop.is_cancelled() {
            return Err(PublishError::Stopping);
        }
        let (reply, response) = oneshot::channel();
        self.appends
            .send(AppendRequest {
                log: name.clone(),
                events,
                reply,
            })
            .await
            .map_err(|_| PublishError::Stopping)?;
        response.await.map_err(|_| PublishError::Stopping)?
    }

    /// Up to `limit` events after `cursor`: from memory when the ring reaches back that far,
    /// otherwise from the store.
    pub async fn events_after(
        &self,
        name: &SourceName,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<Arc<EventView>>, StoreError> {
        if let Some(recent) = self
            .tail(name)
            .and_then(|tail| lock(&tail.ring).after(cursor, limit))
        {
            return Ok(recent);
        }
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let events = self.store.events_after(name, cursor, limit).await?;
        Ok(events
            .into_iter()
            .map(|event| Arc::new(EventView::new(Arc::new(event))))
            .collect())
    }

    /// Reads events appended by other nodes into the tail; true when it moved.
    pub async fn catch_up(&self, name: &SourceName) -> bool {
        let Some(tail) = self.tail(name) else {
            return false;
        };
        // Read in pages: a page of large events must not take much more than the ring holds.
        let batch = u32::try_from(tail.limits.events.min(256)).unwrap_or(256);
        let _extending = tail.extend.lock().await;
        let before = lock(&tail.ring).head;
        loop {
            let head = lock(&tail.ring).head;
            let events = match self.store.events_after(&tail.name, head, batch).await {
                Ok(events) => events,
                Err(err) => {
                    tracing::warn!(source = %tail.name, error = %err, "reading other nodes' events failed; will poll again");
                    break;
                }
            };
            let full = events.len() == batch as usize;
            let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
            tail.extend(&events);
            if !full {
                break;
            }
        }
        lock(&tail.ring).head != before
    }

    /// Adds an event the store appended outside this log's appender to its tail, when open.
    pub async fn appended(&self, event: Arc<Event>) {
        if let Some(tail) = self.tail(&event.source) {
            self.add(&tail, &[event]).await;
        }
    }

    /// The logs whose head in the store is past this node's tail.
    pub async fn behind(&self) -> Vec<SourceName> {
        let heads = match self.store.source_heads().await {
            Ok(heads) => heads,
            Err(err) => {
                tracing::warn!(error = %err, "reading the log heads failed");
                return Vec::new();
            }
        };
        heads
            .into_iter()
            .filter(|(name, head)| self.head(name).is_some_and(|known| known < *head))
            .map(|(name, _)| name)
            .collect()
    }

    /// Adds events this node appended to the tail. Events other nodes appended in between are
    /// read from the store first, so the ring stays gapless.
    async fn add(&self, tail: &Tail, appended: &[Arc<Event>]) {
        let Some(first) = appended.first().map(|e| e.seq) else {
            return;
        };
        let _extending = tail.extend.lock().await;
        let head = lock(&tail.ring).head;
        if first > head + 1 {
            let missing = u32::try_from(first - head - 1).unwrap_or(u32::MAX);
            match self.store.events_after(&tail.name, head, missing).await {
                Ok(between) => {
                    let between: Vec<Arc<Event>> = between.into_iter().map(Arc::new).collect();
                    tail.extend(&between);
                }
                Err(err) => {
                    tracing::warn!(source = %tail.name, error = %err, "reading other nodes' events failed; they will be read as backlog");
                }
            }
        }
        tail.extend(appended);
    }
}

/// The group-commit appender of one log.
async fn appender(
    log: Arc<EventLog>,
    tail: Arc<Tail>,
    mut requests: mpsc::Receiver<PublishRequest>,
    on_append: OnAppend,
) {
    loop {
        let first = tokio::select! {
            request = requests.recv() => match request { Some(r) => r, None => return },
            () = log.stop.cancelled() => return,
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
        let events: Vec<NewEvent> = batch
            .iter()
            .flat_map(|r| r.events.iter().cloned())
            .collect();
        let now = log.clock.now();
        match log.store.append_events(&tail.name, &events, now).await {
            Ok(appended) => {
                let appended: Vec<Arc<Event>> = appended.into_iter().map(Arc::new).collect();
                log.add(&tail, &appended).await;
                log.metrics
                    .events_published
                    .get_or_create(&SourceLabels {
                        source: tail.name.to_string(),
                    })
                    .inc_by(appended.len() as u64);
                on_append(&tail.name);
                let mut rest = appended.as_slice();
                for request in batch {
                    let (mine, others) = rest.split_at(request.events.len().min(rest.len()));
                    rest = others;
                    let _ = request.reply.send(Ok(mine.to_vec()));
                }
            }
            Err(err) => {
                tracing::error!(source = %tail.name, error = %err, "append failed; nothing was published");
                for request in batch {
                    let _ = request
                        .reply
                        .send(Err(PublishError::Store(err.to_string())));
                }
            }
        }
    }
}

/// The group-commit appender of the logs that come and go: one transaction for whatever
/// queued meanwhile, whichever logs it is for.
async fn shared_appender(log: Arc<EventLog>, mut requests: mpsc::Receiver<AppendRequest>) {
    loop {
        let first = tokio::select! {
            request = requests.recv() => match request { Some(r) => r, None => return },
            () = log.stop.cancelled() => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_APPEND_REQUESTS {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let logs: Vec<(SourceName, Vec<NewEvent>)> = batch
            .iter()
            .map(|request| (request.log.clone(), request.events.clone()))
            .collect();
        match log.store.append_to_logs(&logs, log.clock.now()).await {
            Ok(appended) => {
                for (request, events) in batch.into_iter().zip(appended) {
                    let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
                    if let Some(tail) = log.tail(&request.log) {
                        log.add(&tail, &events).await;
                        if let Some(on_append) = log.on_append.get() {
                            on_append(&request.log);
                        }
                    }
                    let _ = request.reply.send(Ok(events));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, count = batch.len(), "append failed; nothing was appended");
                for request in batch {
                    let _ = request
                        .reply
                        .send(Err(PublishError::Store(err.to_string())));
                }
            }
        }
    }
}
