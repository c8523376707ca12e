//! The logs' tails and their group-commit appender: publishing appends a batch of events to
//! the store in one transaction per log (requests that arrive together share it), then keeps
//! them in the log's ring of recent events, so readers read the store only for backlog older
//! than the ring. Events other nodes append are read in by [`EventLog::catch_up`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::lock;
use super::ring::{Ring, RingLimits};
use crate::domain::clock::Clock;
use crate::domain::event::{Event, NewEvent};
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

/// Most events appended in one transaction.
const MAX_BATCH_EVENTS: usize = 2000;

struct PublishRequest {
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<Vec<Arc<Event>>, PublishError>>,
}

/// One log's tail in memory and its appender's queue.
struct Tail {
    name: SourceName,
    ring: Mutex<Ring>,
    /// Held while the ring is extended, so that events are added in order, once.
    extend: tokio::sync::Mutex<()>,
    publisher: mpsc::Sender<PublishRequest>,
}

/// Called with a log's name once events were added to its tail (to wake its readers).
pub(super) type OnAppend = Arc<dyn Fn(&SourceName) + Send + Sync>;

/// The logs this node serves: their tails in memory and their appenders.
pub(super) struct EventLog {
    store: Arc<dyn Store>,
    tails: HashMap<SourceName, Arc<Tail>>,
    queues: Mutex<Vec<(Arc<Tail>, mpsc::Receiver<PublishRequest>)>>,
    limits: RingLimits,
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
                    publisher,
                });
                queues.push((tail.clone(), rx));
                (name, tail)
            })
            .collect();
        EventLog {
            store,
            tails,
            queues: Mutex::new(queues),
            limits,
            clock,
            metrics,
            stop,
        }
    }

    /// Whether this log is served here.
    pub fn has(&self, name: &SourceName) -> bool {
        self.tails.contains_key(name)
    }

    /// The logs served here.
    pub fn names(&self) -> impl Iterator<Item = &SourceName> {
        self.tails.keys()
    }

    /// Reads every log's head from the store.
    pub async fn load_heads(&self) -> Result<(), StoreError> {
        for (name, head) in self.store.source_heads().await? {
            if let Some(tail) = self.tails.get(&name) {
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
    ) -> Vec<impl std::future::Future<Output = ()> + Send + 'static> {
        lock(&self.queues)
            .drain(..)
            .map(|(tail, queue)| appender(self.clone(), tail, queue, on_append.clone()))
            .collect()
    }

    /// The last sequence number of a log.
    pub fn head(&self, name: &SourceName) -> Option<u64> {
        self.tails.get(name).map(|tail| lock(&tail.ring).head)
    }

    /// Appends events to a log; returns them once durable. Concurrent calls for the same log
    /// share one transaction.
    pub async fn publish(
        &self,
        name: &SourceName,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<Event>>, PublishError> {
        let tail = self
            .tails
            .get(name)
            .ok_or_else(|| PublishError::UnknownSource(name.to_string()))?;
        if self.stop.is_cancelled() {
            return Err(PublishError::Stopping);
        }
        let (reply, response) = oneshot::channel();
        tail.publisher
            .send(PublishRequest { events, reply })
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
            .tails
            .get(name)
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
        let Some(tail) = self.tails.get(name) else {
            return false;
        };
        // Read in pages: a page of large events must not take much more than the ring holds.
        let batch = u32::try_from(self.limits.events.min(256)).unwrap_or(256);
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
            lock(&tail.ring).extend(&events, self.limits);
            if !full {
                break;
            }
        }
        lock(&tail.ring).head != before
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
                    lock(&tail.ring).extend(&between, self.limits);
                }
                Err(err) => {
                    tracing::warn!(source = %tail.name, error = %err, "reading other nodes' events failed; they will be read as backlog");
                }
            }
        }
        lock(&tail.ring).extend(appended, self.limits);
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
