//! What every delivery worker shares (the log, the lease, the client, the message builder,
//! the engine to tell when it gives up), and the retry loop they all send through: one message
//! attempted until it is delivered, given up, or abandoned, with back-off and rate-limited
//! failure logs. The per-event worker (`worker.rs`) and the batch worker (`batches.rs`) build on
//! it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use super::client::{Attempt, DeliveryClient, Outgoing};
use super::lease::Lease;
use super::log::EventLog;
use super::reader::Reader;
use super::retry::RetryPolicy;
use super::{Bridge, EngineLink, Envelopes, lock};
use crate::domain::clock::Clock;
use crate::domain::event::Event;
use crate::domain::subscription::{DeliveryProgress, SubscriptionId};
use crate::metrics::{DeliveryLabels, Metrics};

/// A failing subscription is logged at `warn` on its first failed attempt and then at most
/// once per this interval (each attempt at most once), so a dead sink does not flood the log.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Everything a worker uses besides its reader.
pub(super) struct Sending {
    pub log: Arc<EventLog>,
    pub lease: Arc<Lease>,
    pub client: DeliveryClient,
    pub envelopes: Arc<dyn Envelopes>,
    /// Publishes for readers delivered to a broker (agents' AMQP bridges).
    pub bridge: Arc<dyn Bridge>,
    /// Notifications in flight at once, over all readers (SubscriptionEnd messages included).
    pub permits: Arc<Semaphore>,
    /// To the progress writer.
    pub progress: mpsc::UnboundedSender<(SubscriptionId, DeliveryProgress)>,
    /// The engine, told when delivery gives up.
    pub engine: Arc<EngineLink>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub stop: CancellationToken,
}

impl Sending {
    /// Whether a worker should run for the reader now: it has not ended, herald is not
    /// stopping, the lease holds, and its log has events past its cursor.
    pub fn runnable(&self, reader: &Reader) -> bool {
        !reader.is_ended()
            && !reader.subscription().pulled()
            && !self.stop.is_cancelled()
            && self.lease.permits_sending()
            && self
                .log
                .head(&reader.subscription().source)
                .is_some_and(|head| reader.cursor() < head)
    }

    pub(super) fn report(&self, id: SubscriptionId, progress: DeliveryProgress) {
        let _ = self.progress.send((id, progress));
    }

    pub(super) fn count(&self, outcome: &'static str) {
        self.metrics
            .deliveries
            .get_or_create(&DeliveryLabels { outcome })
            .inc();
    }

    /// Counts events delivered and observes their latency from publication.
    pub(super) fn delivered(&self, events: &[Arc<Event>]) {
        let now = self.clock.now();
        for event in events {
            let latency = now.duration_since(event.published_at);
            self.metrics
                .delivery_latency
                .observe(latency.as_secs_f64().max(0.0));
        }
        self.metrics
            .deliveries
            .get_or_create(&DeliveryLabels {
                outcome: "delivered",
            })
            .inc_by(events.len() as u64);
    }

    /// Delivery gave up on the reader: the engine ends it (DeliveryFailure), which takes it out
    /// of delivery.
    pub(super) async fn gave_up(&self, reader: &Reader, error: &str) {
        self.count("gave_up");
        match self.engine.get() {
            Some(engine) => engine.gave_up(reader.subscription(), error).await,
            None => {
                let id = reader.id();
                tracing::warn!(%id, "delivery given up while herald stops; the next start retries");
            }
        }
    }
}

/// When a failing reader was last logged at `warn`.
pub(super) type LastWarned = std::sync::Mutex<Option<tokio::time::Instant>>;

/// A worker's hold on one of the permits of sends in flight, kept across the deliveries of one
/// batch of events while they succeed: with more readers than permits, a worker then queues on
/// the semaphore once per batch rather than once per notification (each wait is a task's sleep
/// and wake-up). It is given back before any retry's wait and when the batch is done (dropped),
/// so readers still take turns, a batch at a time.
pub(super) struct Turn<'a> {
    permits: &'a Semaphore,
    held: std::sync::Mutex<Option<SemaphorePermit<'a>>>,
}

impl<'a> Turn<'a> {
    pub fn new(permits: &'a Semaphore) -> Self {
        Turn {
            permits,
            held: std::sync::Mutex::new(None),
        }
    }

    /// The permit held, or the next one free (`None`: the semaphore is closed).
    async fn take(&self) -> Option<SemaphorePermit<'a>> {
        let held = lock(&self.held).take();
        match held {
            Some(permit) => Some(permit),
            None => self.permits.acquire().await.ok(),
        }
    }

    /// After an attempt under `permit`: kept for the batch's next delivery when this one was
    /// delivered, given back when it failed (the retry's wait holds none).
    fn finish(&self, permit: SemaphorePermit<'a>, attempt: &Attempt) {
        if *attempt == Attempt::Delivered {
            *lock(&self.held) = Some(permit);
        }
    }
}

/// Delivers what is after the reader's cursor up to `seq` until it is delivered, given up, or
/// abandoned: each attempt, made by `send`, under the global limit of sends in flight (a
/// permit taken through `turn`, kept there after a delivery and given back after a failure)
/// and only while the lease holds (another node may own the reader once it is in doubt);
/// retried with back-off, each failure counted, logged and reported.
pub(super) async fn attempt_until_done<S, SF>(
    sending: &Sending,
    reader: &Reader,
    (seq, turn): (u64, &Turn<'_>),
    last_warned: &LastWarned,
    send: S,
) -> Outcome
where
    S: Fn() -> SF,
    SF: std::future::Future<Output = Attempt>,
{
    let id = reader.id();
    until_delivered(
        reader.retry(),
        &sending.clock,
        reader.progress(),
        || async {
            if reader.is_ended() || sending.stop.is_cancelled() {
                return None;
            }
            let permit = turn.take().await?;
            if !sending.lease.permits_sending() {
                return None;
            }
            let attempt = send().await;
            if attempt == Attempt::Delivered {
                reader.sent();
            }
            turn.finish(permit, &attempt);
            Some(attempt)
        },
        |delay, snapshot| async move {
            sending.count("failed");
            sending.metrics.retries.inc();
            log_failure(reader, seq, delay, &snapshot, last_warned);
            sending.report(id, snapshot);
            reader.pause(delay, &sending.stop).await
        },
    )
    .await
}

/// Sends one message to the reader's endpoint until it is delivered, given up, or abandoned
/// ([`attempt_until_done`]); `seq` is the last event it carries.
pub(super) async fn deliver_one_message(
    sending: &Sending,
    reader: &Reader,
    message: &Outgoing,
    seq: u64,
    last_warned: &LastWarned,
) -> Outcome {
    let id = reader.id();
    let turn = Turn::new(&sending.permits);
    attempt_until_done(sending, reader, (seq, &turn), last_warned, || async {
        let attempt = (sending.client)
            .send_to(reader.subscription(), reader.notify_to(), message)
            .await;
        tracing::debug!(subscription = %id, seq, to = message.url.as_str(), delivered = matches!(attempt, Attempt::Delivered), "delivery attempt");
        attempt
    })
    .await
}

/// Logs a failed attempt: at `warn` the first time and then at most once per
/// [`FAILURE_LOG_INTERVAL`], at `debug` otherwise.
fn log_failure(
    reader: &Reader,
    seq: u64,
    delay: Duration,
    progress: &DeliveryProgress,
    last_warned: &LastWarned,
) {
    let id = reader.id();
    let address = reader.subscription().notify_to.address.as_str();
    let attempts = progress.attempts;
    let error = progress.last_error.as_deref().unwrap_or("");
    let now = tokio::time::Instant::now();
    let warn = {
        let mut last = lock(last_warned);
        let due = last.is_none_or(|at| now.duration_since(at) >= FAILURE_LOG_INTERVAL);
        if due {
            *last = Some(now);
        }
        due
    };
    if warn {
        tracing::warn!(%id, notify_to = address, seq, attempts, retry_in = ?delay, error, "delivery failed; retrying");
    } else {
        tracing::debug!(%id, notify_to = address, seq, attempts, retry_in = ?delay, error, "delivery failed; retrying");
    }
}

/// How one event's delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The subscriber took it.
    Delivered,
    /// 410 Gone, or failing for longer than the give-up window; the last error.
    GaveUp(String),
    /// The subscription ended or herald is stopping.
    Abandoned,
}

/// Attempts one event until it is delivered, given up, or abandoned. `attempt` makes one
/// attempt (`None`: abandon); after each failure the progress records it and `retry` is given
/// the back-off delay and a snapshot of the progress, and waits (`false`: abandon).
pub(crate) async fn until_delivered<A, AF, R, RF>(
    policy: &RetryPolicy,
    clock: &Clock,
    progress: &std::sync::Mutex<DeliveryProgress>,
    mut attempt: A,
    mut retry: R,
) -> Outcome
where
    A: FnMut() -> AF,
    AF: std::future::Future<Output = Option<Attempt>>,
    R: FnMut(Duration, DeliveryProgress) -> RF,
    RF: std::future::Future<Output = bool>,
{
    loop {
        let Some(result) = attempt().await else {
            return Outcome::Abandoned;
        };
        let Attempt::Failed {
            error,
            retry_after,
            gone,
        } = result
        else {
            return Outcome::Delivered;
        };
        let now = clock.now();
        let (delay, snapshot) = {
            let mut progress = lock(progress);
            progress.attempts = progress.attempts.saturating_add(1);
            let since = *progress.failing_since.get_or_insert(now);
            progress.last_error = Some(error.clone());
            let failing_for = Duration::try_from(now.duration_since(since)).unwrap_or_default();
            if gone || policy.gives_up(failing_for) {
                return Outcome::GaveUp(error);
            }
            let delay = policy.delay(progress.attempts, retry_after, fastrand::f64());
            progress.next_attempt_at = jiff::SignedDuration::try_from(delay)
                .ok()
                .and_then(|d| now.checked_add(d).ok());
            (delay, progress.clone())
        };
        if !retry(delay, snapshot).await {
            return Outcome::Abandoned;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.0,
            retry_after_cap: Duration::from_secs(120),
            give_up_after: Duration::from_secs(300),
        }
    }

    fn failure(retry_after: Option<Duration>, gone: bool) -> Option<Attempt> {
        Some(Attempt::Failed {
            error: "HTTP 503".into(),
            retry_after,
            gone,
        })
    }

    async fn sleep_for(delay: Duration, _: DeliveryProgress) -> bool {
        tokio::time::sleep(delay).await;
        true
    }

    /// Runs the retry loop against answers given in order (the last repeats), recording the
    /// paused clock's time of each attempt in seconds.
    async fn run(answers: Vec<Option<Attempt>>) -> (Outcome, Vec<u64>, DeliveryProgress) {
        let clock = Clock::tokio();
        let progress = Mutex::new(DeliveryProgress::default());
        let start = Instant::now();
        let mut times = Vec::new();
        let mut answers = answers.into_iter().peekable();
        let mut last = None;
        let outcome = until_delivered(
            &policy(),
            &clock,
            &progress,
            || {
                times.push(start.elapsed().as_secs());
                let answer = answers.next().unwrap_or_else(|| last.clone().flatten());
                last = Some(answer.clone());
                std::future::ready(answer)
            },
            sleep_for,
        )
        .await;
        let progress = progress.into_inner().unwrap();
        (outcome, times, progress)
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_keeps_its_permit_while_deliveries_succeed_and_gives_it_back_after() {
        let permits = Semaphore::new(1);
        let turn = Turn::new(&permits);
        let permit = turn.take().await.expect("a permit");
        turn.finish(permit, &Attempt::Delivered);
        // Held between deliveries: another reader finds none free, this turn takes it again
        // without queueing.
        assert!(permits.try_acquire().is_err());
        let again = tokio::time::timeout(Duration::from_secs(1), turn.take()).await;
        let permit = again.expect("taken without waiting").expect("a permit");
        turn.finish(permit, &Attempt::Delivered);
        drop(turn);
        assert_eq!(permits.available_permits(), 1, "given back with the turn");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_attempt_gives_its_permit_back_before_the_retry_waits() {
        let permits = Semaphore::new(1);
        let turn = Turn::new(&permits);
        let permit = turn.take().await.expect("a permit");
        turn.finish(permit, &failure(None, false).unwrap());
        assert_eq!(permits.available_permits(), 1);
        assert!(
            permits.try_acquire().is_ok(),
            "another reader sends meanwhile"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn back_off_doubles_to_its_ceiling_then_gives_up_after_the_window() {
        let (outcome, times, progress) = run(vec![failure(None, false)]).await;
        assert_eq!(outcome, Outcome::GaveUp("HTTP 503".into()));
        // 5, 10, 20, 40, then the 60 s ceiling; the failure at 315 s is past the 300 s window.
        assert_eq!(times, [0, 5, 15, 35, 75, 135, 195, 255, 315]);
        assert_eq!(progress.attempts, 9);
        assert_eq!(progress.last_error.as_deref(), Some("HTTP 503"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_recovering_subscriber_is_delivered_to() {
        let answers = vec![
            failure(None, false),
            failure(None, false),
            Some(Attempt::Delivered),
        ];
        let (outcome, times, progress) = run(answers).await;
        assert_eq!(outcome, Outcome::Delivered);
        assert_eq!(times, [0, 5, 15]);
        assert_eq!(progress.attempts, 2);
        assert!(progress.next_attempt_at.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_replaces_the_back_off_within_its_cap() {
        let answers = vec![
            failure(Some(Duration::from_secs(30)), false),
            failure(Some(Duration::from_secs(3600)), false),
            Some(Attempt::Delivered),
        ];
        let (outcome, times, _) = run(answers).await;
        assert_eq!(outcome, Outcome::Delivered);
        assert_eq!(times, [0, 30, 150], "30 s as asked, then the 120 s cap");
    }

    #[tokio::test(start_paused = true)]
    async fn gone_gives_up_at_once() {
        let (outcome, times, _) = run(vec![failure(None, true)]).await;
        assert_eq!(outcome, Outcome::GaveUp("HTTP 503".into()));
        assert_eq!(times, [0]);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_keeps_each_delay_within_its_band() {
        let jittery = RetryPolicy {
            jitter: 0.2,
            ..policy()
        };
        let clock = Clock::tokio();
        let progress = Mutex::new(DeliveryProgress::default());
        let mut delays = Vec::new();
        let mut attempts = 0;
        let outcome = until_delivered(
            &jittery,
            &clock,
            &progress,
            || {
                attempts += 1;
                std::future::ready(if attempts <= 4 {
                    failure(None, false)
                } else {
                    Some(Attempt::Delivered)
                })
            },
            |delay, _| {
                delays.push(delay);
                std::future::ready(true)
            },
        )
        .await;
        assert_eq!(outcome, Outcome::Delivered);
        for (delay, base) in delays.iter().zip([5.0, 10.0, 20.0, 40.0]) {
            let seconds = delay.as_secs_f64();
            assert!(
                seconds >= base * 0.8 && seconds <= base * 1.2,
                "{seconds} vs {base}"
            );
        }
    }
}
