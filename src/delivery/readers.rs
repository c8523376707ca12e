//! The reader registry: the active subscriptions this node delivers, per log, and the worker
//! tasks it starts for those that are behind. It counts readers; the rules about how many a
//! log may have are the engine's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::task::TaskTracker;

use super::lock;
use super::reader::Reader;
use super::retry::RetryPolicy;
use super::worker::{self, Sending};
use crate::domain::subscription::{DeliveryProgress, SourceName, Subscription, SubscriptionId};
use crate::filter::Matcher;

/// The readers of one log.
struct LogReaders {
    retry: RetryPolicy,
    readers: Mutex<HashMap<SubscriptionId, Arc<Reader>>>,
}

/// Every reader this node delivers.
pub(super) struct Readers {
    logs: HashMap<SourceName, LogReaders>,
    sending: Arc<Sending>,
    /// The workers, each tracked until it returns.
    workers: TaskTracker,
}

impl Readers {
    pub fn new(
        logs: impl IntoIterator<Item = (SourceName, RetryPolicy)>,
        sending: Arc<Sending>,
    ) -> Readers {
        Readers {
            logs: logs
                .into_iter()
                .map(|(name, retry)| {
                    let readers = Mutex::new(HashMap::new());
                    (name, LogReaders { retry, readers })
                })
                .collect(),
            sending,
            workers: TaskTracker::new(),
        }
    }

    /// Starts delivering a stored, active subscription to its reader; nothing when it is
    /// delivered already or its log is not served here.
    pub fn add(
        &self,
        subscription: Subscription,
        progress: DeliveryProgress,
        matcher: Option<Arc<dyn Matcher>>,
    ) {
        let Some(log) = self.logs.get(&subscription.source) else {
            return;
        };
        let id = subscription.id;
        let reader = {
            let mut readers = lock(&log.readers);
            if readers.contains_key(&id) {
                return;
            }
            let reader = Arc::new(Reader::new(subscription, progress, matcher, log.retry));
            readers.insert(id, reader.clone());
            reader
        };
        self.kick(&reader);
    }

    /// Stops delivering it; its worker stops at its next step. True when it was delivered here.
    pub fn remove(&self, source: &SourceName, id: SubscriptionId) -> bool {
        let removed = self
            .logs
            .get(source)
            .and_then(|log| lock(&log.readers).remove(&id));
        match removed {
            Some(reader) => {
                reader.end();
                true
            }
            None => false,
        }
    }

    /// Stops delivering it, whichever log it reads.
    pub fn remove_id(&self, id: SubscriptionId) -> bool {
        let source = self
            .logs
            .iter()
            .find(|(_, log)| lock(&log.readers).contains_key(&id))
            .map(|(name, _)| name.clone());
        source.is_some_and(|source| self.remove(&source, id))
    }

    /// Stops delivering everything (the lease lapsed: other nodes may own it all by now).
    pub fn remove_all(&self) {
        for log in self.logs.values() {
            for (_, reader) in lock(&log.readers).drain() {
                reader.end();
            }
        }
    }

    /// Starts a worker for each reader of the log that is behind and has none.
    pub fn wake(&self, source: &SourceName) {
        let Some(log) = self.logs.get(source) else {
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
        for source in self.logs.keys() {
            self.wake(source);
        }
    }

    fn kick(&self, reader: &Arc<Reader>) {
        if self.sending.runnable(reader) && reader.try_start() {
            self.workers
                .spawn(worker::run(self.sending.clone(), reader.clone()));
        }
    }

    /// Readers per log.
    pub fn counts(&self) -> Vec<(SourceName, u64)> {
        let mut counts: Vec<_> = self
            .logs
            .iter()
            .map(|(name, log)| (name.clone(), lock(&log.readers).len() as u64))
            .collect();
        counts.sort();
        counts
    }

    /// Readers of one log.
    pub fn count(&self, source: &SourceName) -> u64 {
        self.logs
            .get(source)
            .map_or(0, |log| lock(&log.readers).len() as u64)
    }

    /// A reader's delivery state, fresher than the store's.
    pub fn progress(&self, source: &SourceName, id: SubscriptionId) -> Option<DeliveryProgress> {
        let reader = lock(&self.logs.get(source)?.readers).get(&id).cloned()?;
        let progress = lock(reader.progress()).clone();
        Some(progress)
    }

    /// The sum of a log's readers' distance from `head`.
    pub fn backlog(&self, source: &SourceName, head: u64) -> u64 {
        self.logs.get(source).map_or(0, |log| {
            lock(&log.readers)
                .values()
                .map(|reader| head.saturating_sub(reader.cursor()))
                .sum()
        })
    }

    /// The retry policy of a log's deliveries.
    pub fn retry(&self, source: &SourceName) -> RetryPolicy {
        self.logs
            .get(source)
            .map_or_else(RetryPolicy::default, |log| log.retry)
    }

    /// Wakes sleeping workers (herald is stopping: they leave) and waits up to `grace` for
    /// sends in flight; false when some were still running.
    pub async fn stop(&self, grace: std::time::Duration) -> bool {
        for log in self.logs.values() {
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
