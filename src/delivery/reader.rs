//! One reader in delivery: an active subscription this node delivers, with its cursor and
//! retry state, whether a worker runs for it, and whether it has ended.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lock;
use super::policy::parse_endpoint;
use super::retry::RetryPolicy;
use crate::domain::subscription::{DeliveryProgress, Subscription, SubscriptionId};
use crate::filter::{EventView, Matcher};

/// One active subscription in delivery.
pub(super) struct Reader {
    subscription: Subscription,
    matcher: Option<Arc<dyn Matcher>>,
    retry: RetryPolicy,
    progress: Mutex<DeliveryProgress>,
    /// A worker is running for it.
    running: AtomicBool,
    /// It has ended; its worker stops at the next step.
    ended: AtomicBool,
    /// Interrupts a back-off sleep when it ends.
    wake: Notify,
    /// Its heartbeats, if it asked for them.
    heartbeat: Option<Box<Heartbeat>>,
    /// The sum of its log's readers' cursors, which it keeps (under its progress lock) from
    /// when it is made until it ends.
    cursors: CursorSum,
    /// Its cursor is in `cursors`.
    counted: AtomicBool,
    /// Its NotifyTo as the delivery client dials it, parsed at its first delivery rather than
    /// at each (boxed: the cell is 16 bytes of a reader that never delivers).
    notify_to: OnceLock<Box<url::Url>>,
}

/// The sum of the cursors of one log's readers, kept as each moves, so that the log's backlog
/// (readers × head − the sum) is read without visiting every reader.
pub(super) type CursorSum = Arc<AtomicU64>;

impl Reader {
    /// Its cursor joins `cursors` now, and leaves it when it [`Reader::end`]s.
    pub fn new(
        subscription: Subscription,
        progress: DeliveryProgress,
        (matcher, retry): (Option<Arc<dyn Matcher>>, RetryPolicy),
        cursors: CursorSum,
    ) -> Reader {
        cursors.fetch_add(progress.cursor, Ordering::AcqRel);
        let heartbeat = subscription
            .wsman
            .as_ref()
            .and_then(|wsman| wsman.heartbeats())
            .filter(|_| !subscription.pulled())
            .map(|interval| Box::new(Heartbeat::new(interval)));
        Reader {
            heartbeat,
            subscription,
            matcher,
            retry,
            progress: Mutex::new(progress),
            running: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            wake: Notify::new(),
            cursors,
            counted: AtomicBool::new(true),
            notify_to: OnceLock::new(),
        }
    }

    /// Its NotifyTo as the delivery client dials it ([`parse_endpoint`]), parsed once; `None`
    /// when it does not parse (the client then refuses it as it would any address).
    pub fn notify_to(&self) -> Option<&url::Url> {
        if let Some(url) = self.notify_to.get() {
            return Some(url);
        }
        let url = parse_endpoint(&self.subscription.notify_to.address).ok()?;
        Some(self.notify_to.get_or_init(|| Box::new(url)))
    }

    /// Sets the cursor, keeping the log's sum of cursors (wrapping: a move back subtracts).
    fn set_cursor(&self, progress: &mut DeliveryProgress, cursor: u64) {
        if self.counted.load(Ordering::Acquire) {
            let delta = cursor.wrapping_sub(progress.cursor);
            self.cursors.fetch_add(delta, Ordering::AcqRel);
        }
        progress.cursor = cursor;
    }

    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    pub fn id(&self) -> SubscriptionId {
        self.subscription.id
    }

    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Whether its filter lets the event through (no filter: every event).
    pub fn wants(&self, event: &EventView) -> bool {
        self.matcher
            .as_ref()
            .is_none_or(|matcher| matcher.matches(event))
    }

    /// Its delivery state.
    pub fn progress(&self) -> &Mutex<DeliveryProgress> {
        &self.progress
    }

    pub fn cursor(&self) -> u64 {
        lock(&self.progress).cursor
    }

    /// Moves the cursor past `seq`, clears the retry state, and returns the new state.
    pub fn advance(&self, seq: u64) -> DeliveryProgress {
        let mut progress = lock(&self.progress);
        self.set_cursor(&mut progress, seq);
        *progress = DeliveryProgress {
            cursor: seq,
            ..DeliveryProgress::default()
        };
        progress.clone()
    }

    /// Its heartbeat state, if it asked for heartbeats.
    pub fn heartbeat(&self) -> Option<&Heartbeat> {
        self.heartbeat.as_deref()
    }

    /// A message reached its sink: the next heartbeat is due an interval from now.
    pub fn sent(&self) {
        if let Some(beat) = &self.heartbeat {
            beat.sent();
        }
    }

    /// Moves the cursor forward to `seq` (never backwards), keeping the retry state: for a
    /// reader whose cursor is moved outside delivery (a pulled subscription).
    pub fn move_to(&self, seq: u64) {
        let mut progress = lock(&self.progress);
        let cursor = progress.cursor.max(seq);
        self.set_cursor(&mut progress, cursor);
    }

    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Marks it ended (its cursor leaves its log's sum) and wakes its worker, which then stops.
    pub fn end(&self) {
        {
            let progress = lock(&self.progress);
            if self.counted.swap(false, Ordering::AcqRel) {
                self.cursors.fetch_sub(progress.cursor, Ordering::AcqRel);
            }
        }
        self.ended.store(true, Ordering::Release);
        self.wake.notify_one();
        if let Some(beat) = &self.heartbeat {
            beat.end();
        }
    }

    /// Wakes its worker from a back-off sleep (herald is stopping).
    pub fn interrupt(&self) {
        self.wake.notify_one();
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Claims the right to run its worker; false when one runs already.
    pub fn try_start(&self) -> bool {
        !self.running.swap(true, Ordering::AcqRel)
    }

    /// Its worker has stopped.
    pub fn stopped(&self) {
        self.running.store(false, Ordering::Release);
    }

    /// Sleeps for `delay` unless it ends or `stop` fires first; true when the sleep ran its
    /// course.
    pub async fn pause(&self, delay: Duration, stop: &CancellationToken) -> bool {
        if stop.is_cancelled() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.wake.notified() => {}
            () = stop.cancelled() => {}
        }
        !self.is_ended() && !stop.is_cancelled()
    }
}

/// A reader's heartbeat state.
pub(super) struct Heartbeat {
    interval: Duration,
    /// Cancelled when the reader ends.
    stop: CancellationToken,
    /// When something last reached the reader's sink.
    last_sent: Mutex<Instant>,
}

impl Heartbeat {
    pub fn new(interval: Duration) -> Heartbeat {
        Heartbeat {
            interval,
            stop: CancellationToken::new(),
            last_sent: Mutex::new(Instant::now()),
        }
    }

    /// Something reached the sink now.
    pub fn sent(&self) {
        *lock(&self.last_sent) = Instant::now();
    }

    /// The reader ended: its heartbeats stop.
    pub fn end(&self) {
        self.stop.cancel();
    }

    /// Resolves once the reader has ended.
    pub async fn ended(&self) {
        self.stop.cancelled().await;
    }

    /// When the next heartbeat is due.
    pub fn due(&self) -> Instant {
        *lock(&self.last_sent) + self.interval
    }
}
