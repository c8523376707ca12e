//! The reader registry: the active subscriptions this node delivers, per log, and the worker
//! tasks it starts for those that are behind. It counts readers; the rules about how many a
//! log may have are the engine's. When the last reader of a log that comes and goes leaves,
//! its tail is closed.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use tokio_util::task::TaskTracker;

use super::loading::Loading;
use super::lock;
use super::log::EventLog;
use super::reader::{CursorSum, Reader};
use super::retry::RetryPolicy;
use super::sending::Sending;
use super::worker;
use crate::domain::context::service_of;
use crate::domain::maps::Map;
use crate::domain::subscription::{DeliveryProgress, SourceName, Subscription, SubscriptionId};
use crate::filter::Matcher;

/// The readers of one log.
#[derive(Default)]
struct LogReaders {
    readers: Mutex<Map<SubscriptionId, Arc<Reader>>>,
    /// The sum of their cursors (see [`CursorSum`]).
    cursors: CursorSum,
}

/// Every reader this node delivers.
pub(super) struct Readers {
    logs: RwLock<Map<SourceName, Arc<LogReaders>>>,
    /// Open logs that come and go, per context service (an instance's log names its service).
    instances: Mutex<Map<SourceName, u64>>,
    log: Arc<EventLog>,
    sending: Arc<Sending>,
    /// The workers, each tracked until it returns.
    workers: TaskTracker,
    /// A start's background load, and what it must leave alone.
    pub loading: Loading,
}

impl Readers {
    /// The registry, with an (empty) entry for each configured source's log.
    pub fn new(
        lasting: impl IntoIterator<Item = SourceName>,
        log: Arc<EventLog>,
        sending: Arc<Sending>,
    ) -> Readers {
        Readers {
            logs: RwLock::new(
                lasting
                    .into_iter()
                    .map(|name| (name, Arc::default()))
                    .collect(),
            ),
            instances: Mutex::default(),
            log,
            sending,
            workers: TaskTracker::new(),
            loading: Loading::default(),
        }
    }

    /// Counts a log that comes and goes opening or closing here, under its service.
    fn count_instance(&self, log: &SourceName, opened: bool) {
        if self.log.is_lasting(log) {
            return;
        }
        let Some(service) = service_of(log) else {
            return;
        };
        let mut instances = lock(&self.instances);
        let count = instances.entry(service.clone()).or_insert(0);
        if opened {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                instances.remove(&service);
            }
        }
    }

    /// Instances of a context service delivered here.
    pub fn instance_count(&self, service: &SourceName) -> u64 {
        lock(&self.instances).get(service).copied().unwrap_or(0)
    }

    fn entry<Q>(&self, source: &Q) -> Option<Arc<LogReaders>>
    where
        SourceName: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(source)
            .cloned()
    }

    fn entries(&self) -> Vec<(SourceName, Arc<LogReaders>)> {
        self.logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, log)| (name.clone(), log.clone()))
            .collect()
    }

    /// Starts delivering a stored, active subscription to its reader, retried under `retry`;
    /// nothing when it is delivered already. `Err` gives the subscription back when its log is
    /// one that comes and goes and its tail is not open (closed meanwhile): open it and retry.
    pub fn add(
        &self,
        subscription: Subscription,
        progress: DeliveryProgress,
        matcher: Option<Arc<dyn Matcher>>,
        retry: RetryPolicy,
    ) -> Result<(), Box<Subscription>> {
        self.loading.touch(subscription.id);
        self.insert(subscription, progress, matcher, retry)
    }

    /// As [`Readers::add`], for a subscription the store says this node owns (loaded at start
    /// or taken over): while a start's load is under way, one that something else added or
    /// ended since is left as it is.
    pub fn adopt(
        &self,
        subscription: Subscription,
        progress: DeliveryProgress,
        matcher: Option<Arc<dyn Matcher>>,
        retry: RetryPolicy,
    ) -> Result<(), Box<Subscription>> {
        let Some(_adopting) = self.loading.adopt(subscription.id) else {
            return Ok(());
        };
        self.insert(subscription, progress, matcher, retry)
    }

    fn insert(
        &self,
        subscription: Subscription,
        progress: DeliveryProgress,
        matcher: Option<Arc<dyn Matcher>>,
        retry: RetryPolicy,
    ) -> Result<(), Box<Subscription>> {
        // The entry and the reader go in under the registry's lock, so that a removal (which
        // writes it) cannot close the tail between them. Most often the log has its entry
        // already, and the lock is only read.
        {
            let logs = self.logs.read().unwrap_or_else(|e| e.into_inner());
            if let Some(log) = logs.get(&subscription.source) {
                let reader = self.join(log, subscription, progress, matcher, retry)?;
                drop(logs);
                self.started(reader);
                return Ok(());
            }
        }
        let source = subscription.source.clone();
        let (reader, opened) = {
            let mut logs = self.logs.write().unwrap_or_else(|e| e.into_inner());
            if !self.log.is_lasting(&source) && self.log.head(&source).is_none() {
                return Err(Box::new(subscription));
            }
            let (log, opened) = match logs.get(&source) {
                Some(log) => (log.clone(), false),
                None => {
                    let log: Arc<LogReaders> = Arc::default();
                    logs.insert(source.clone(), log.clone());
                    (log, true)
                }
            };
            (
                self.join(&log, subscription, progress, matcher, retry)?,
                opened,
            )
        };
        if opened {
            self.count_instance(&source, true);
        }
        self.started(reader);
        Ok(())
    }

    /// Adds a reader to `log` (the registry's lock held), unless one of that id is there: the
    /// new reader, or none.
    fn join(
        &self,
        log: &LogReaders,
        subscription: Subscription,
        progress: DeliveryProgress,
        matcher: Option<Arc<dyn Matcher>>,
        retry: RetryPolicy,
    ) -> Result<Option<Arc<Reader>>, Box<Subscription>> {
        let source = &subscription.source;
        if !self.log.is_lasting(source) && self.log.head(source).is_none() {
            return Err(Box::new(subscription));
        }
        let mut readers = lock(&log.readers);
        let std::collections::hash_map::Entry::Vacant(slot) = readers.entry(subscription.id) else {
            return Ok(None);
        };
        let reader = Arc::new(Reader::new(
            subscription,
            progress,
            (matcher, retry),
            log.cursors.clone(),
        ));
        slot.insert(reader.clone());
        Ok(Some(reader))
    }

    /// Starts a new reader's heartbeat, if it has one, and its worker, if it has work.
    fn started(&self, reader: Option<Arc<Reader>>) {
        let Some(reader) = reader else {
            return;
        };
        if reader.heartbeat().is_some() {
            self.workers
                .spawn(super::heartbeat::run(self.sending.clone(), reader.clone()));
        }
        self.kick(&reader);
    }

    /// Stops delivering it; its worker stops at its next step. True when it was delivered here.
    /// The last reader of a log that comes and goes takes its tail with it.
    pub fn remove(&self, source: &SourceName, id: SubscriptionId) -> bool {
        self.loading.touch(id);
        let Some(log) = self.entry(source) else {
            return false;
        };
        let (removed, now_unread) = {
            let mut readers = lock(&log.readers);
            let removed = readers.remove(&id);
            // Ended under the lock: its cursor leaves the sum as it leaves the count.
            if let Some(reader) = &removed {
                reader.end();
            }
            (removed.is_some(), readers.is_empty())
        };
        if removed && now_unread && !self.log.is_lasting(source) {
            let mut logs = self.logs.write().unwrap_or_else(|e| e.into_inner());
            if logs
                .get(source)
                .is_some_and(|log| lock(&log.readers).is_empty())
            {
                logs.remove(source);
                self.log.close(source);
                self.count_instance(source, false);
            }
        }
        removed
    }

    /// Stops delivering it, whichever log it reads.
    pub fn remove_id(&self, id: SubscriptionId) -> bool {
        self.loading.touch(id);
        let source = self
            .entries()
            .into_iter()
            .find(|(_, log)| lock(&log.readers).contains_key(&id))
            .map(|(name, _)| name);
        source.is_some_and(|source| self.remove(&source, id))
    }

    /// Stops delivering everything (the lease lapsed: other nodes may own it all by now).
    pub fn remove_all(&self) {
        for (source, log) in self.entries() {
            let ids: Vec<SubscriptionId> = lock(&log.readers).keys().copied().collect();
            for id in ids {
                self.remove(&source, id);
            }
        }
    }

    /// Starts a worker for each reader of the log that is behind and has none.
    pub fn wake(&self, source: &SourceName) {
        let Some(log) = self.entry(source) else {
            return;
        };
        let readers: Vec<Arc<Reader>> = lock(&log.readers).values().cloned().collect();
        for reader in readers {
            if !reader.is_running() {
                self.kick(&reader);
            }
        }
    }

    /// Wakes every log's readers.
    pub fn wake_all(&self) {
        for (source, _) in self.entries() {
            self.wake(&source);
        }
    }

    fn kick(&self, reader: &Arc<Reader>) {
        if self.sending.runnable(reader) && reader.try_start() {
            self.workers
                .spawn(worker::run(self.sending.clone(), reader.clone()));
        }
    }

    /// Readers of one log.
    pub fn count(&self, source: &SourceName) -> u64 {
        self.entry(source)
            .map_or(0, |log| lock(&log.readers).len() as u64)
    }

    /// What `look` sees of a reader of log `source` this node delivers and that has not ended.
    pub fn held<T>(
        &self,
        source: &str,
        id: SubscriptionId,
        look: impl FnOnce(&Subscription) -> T,
    ) -> Option<T> {
        let reader = lock(&self.entry(source)?.readers).get(&id).cloned()?;
        (!reader.is_ended()).then(|| look(reader.subscription()))
    }

    /// A reader's delivery state, fresher than the store's.
    pub fn progress(&self, source: &SourceName, id: SubscriptionId) -> Option<DeliveryProgress> {
        let reader = lock(&self.entry(source)?.readers).get(&id).cloned()?;
        let progress = lock(reader.progress()).clone();
        Some(progress)
    }

    /// A pulled reader's cursor moved to `cursor` elsewhere (in the store): follow it here.
    pub fn pulled_to(&self, source: &SourceName, id: SubscriptionId, cursor: u64) {
        let reader = self
            .entry(source)
            .and_then(|log| lock(&log.readers).get(&id).cloned());
        if let Some(reader) = reader {
            reader.move_to(cursor);
        }
    }

    /// The sum of a log's readers' distance from `head`, from their count and the sum of their
    /// cursors: no reader is visited, so a scrape does not hold the log's readers while
    /// millions are counted. (A cursor past `head`, which this node's tail has not caught up
    /// with yet, offsets the others' distance until it has.)
    pub fn backlog(&self, source: &SourceName, head: u64) -> u64 {
        self.entry(source).map_or(0, |log| {
            let readers = lock(&log.readers);
            let count = readers.len() as u64;
            count
                .saturating_mul(head)
                .saturating_sub(log.cursors.load(Ordering::Acquire))
        })
    }

    /// Wakes sleeping workers (herald is stopping: they leave) and waits up to `grace` for
    /// sends in flight; false when some were still running.
    pub async fn stop(&self, grace: std::time::Duration) -> bool {
        for (_, log) in self.entries() {
            for reader in lock(&log.readers).values() {
                reader.interrupt();
            }
        }
        self.workers.close();
        tokio::time::timeout(grace, self.workers.wait())
            .await
            .is_ok()
    }
}
