//! One reader's delivery worker: in order, one event in flight, retried with back-off. What a
//! worker needs from its siblings it is handed in [`Sending`]: the log to read, the lease that
//! fences sends, the client, the message builder, and the engine to tell when it gives up.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::client::{Attempt, DeliveryClient};
use super::lease::Lease;
use super::log::EventLog;
use super::reader::Reader;
use super::retry::RetryPolicy;
use super::{Bridge, EngineLink, Envelopes, lock};
use crate::domain::clock::Clock;
use crate::domain::event::Event;
use crate::domain::subscription::{DeliveryProgress, ReaderDelivery, SubscriptionId};
use crate::metrics::{DeliveryLabels, Metrics};

/// Events fetched per step.
const BATCH: usize = 64;

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

    fn report(&self, id: SubscriptionId, progress: DeliveryProgress) {
        let _ = self.progress.send((id, progress));
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .deliveries
            .get_or_create(&DeliveryLabels { outcome })
            .inc();
    }
}

/// Runs until the reader is caught up, ends, or herald stops; then hands it back (and starts
/// again if work arrived meanwhile). The caller has claimed it with [`Reader::try_start`].
pub(super) async fn run(sending: Arc<Sending>, reader: Arc<Reader>) {
    loop {
        deliver(&sending, &reader).await;
        reader.stopped();
        // Work published between the last read and `stopped` would otherwise wait for the
        // next publish: look again, and take the reader back if so.
        if !sending.runnable(&reader) || !reader.try_start() {
            break;
        }
    }
}

async fn deliver(sending: &Sending, reader: &Reader) {
    // A retry scheduled before a restart waits for its time.
    let due = lock(reader.progress()).next_attempt_at;
    if let Some(due) = due {
        let wait = due.duration_since(sending.clock.now());
        if let Ok(wait) = Duration::try_from(wait)
            && !reader.pause(wait, &sending.stop).await
        {
            return;
        }
    }
    let last_warned = std::sync::Mutex::new(None::<tokio::time::Instant>);
    let last_warned = &last_warned;
    let id = reader.id();
    loop {
        if reader.is_ended() || sending.stop.is_cancelled() {
            return;
        }
        let source = &reader.subscription().source;
        let events = match sending
            .log
            .events_after(source, reader.cursor(), BATCH)
            .await
        {
            Ok(events) => events,
            Err(err) => {
                tracing::warn!(%id, error = %err, "reading the event log failed; retrying");
                if !reader.pause(Duration::from_secs(1), &sending.stop).await {
                    return;
                }
                continue;
            }
        };
        if events.is_empty() {
            return;
        }
        for view in events {
            let seq = view.event().seq;
            if !reader.wants(&view) {
                sending.report(id, reader.advance(seq));
                continue;
            }
            let subscription = reader.subscription();
            let outcome = until_delivered(
                reader.retry(),
                &sending.clock,
                reader.progress(),
                || async {
                    if reader.is_ended() || sending.stop.is_cancelled() {
                        return None;
                    }
                    let _permit = sending.permits.acquire().await.ok()?;
                    // Another node may own it once the lease is in doubt: send nothing then.
                    if !sending.lease.permits_sending() {
                        return None;
                    }
                    // Built for each attempt: a webhook is signed at the time it is sent.
                    let attempt = match subscription.delivery {
                        ReaderDelivery::AmqpPublish => {
                            sending.bridge.publish(subscription, view.event()).await
                        }
                        _ => {
                            let message =
                                sending.envelopes.notification(subscription, view.event());
                            sending.client.send_to(subscription, &message).await
                        }
                    };
                    log_attempt(reader, view.event(), &attempt);
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
            .await;
            match outcome {
                Outcome::Delivered => {
                    let attempts = lock(reader.progress()).attempts;
                    if attempts > 0 {
                        tracing::info!(%id, subscription = %id, event = %view.event().id, seq, failed_attempts = attempts, "delivering again");
                    }
                    let latency = sending
                        .clock
                        .now()
                        .duration_since(view.event().published_at);
                    sending
                        .metrics
                        .delivery_latency
                        .observe(latency.as_secs_f64().max(0.0));
                    sending.count("delivered");
                    sending.report(id, reader.advance(seq));
                }
                Outcome::GaveUp(error) => {
                    sending.count("gave_up");
                    // The engine ends it (DeliveryFailure), which takes it out of delivery.
                    match sending.engine.get() {
                        Some(engine) => engine.gave_up(reader.subscription(), &error).await,
                        None => {
                            tracing::warn!(%id, "delivery given up while herald stops; the next start retries")
                        }
                    }
                    return;
                }
                Outcome::Abandoned => return,
            }
        }
    }
}

/// Logs one delivery attempt at `debug`: the subscription, the event (id and seq), where it went
/// and how it came out, so every attempt can be traced by either id.
fn log_attempt(reader: &Reader, event: &Event, attempt: &Attempt) {
    let subscription = reader.id();
    let to = reader.subscription().notify_to.address.as_str();
    let (event_id, seq) = (&event.id, event.seq);
    match attempt {
        Attempt::Delivered => tracing::debug!(
            subscription = %subscription, event = %event_id, seq, to, outcome = "delivered",
            "delivery attempt"
        ),
        Attempt::Failed { error, gone, .. } => tracing::debug!(
            subscription = %subscription, event = %event_id, seq, to,
            outcome = if *gone { "gone" } else { "failed" }, error = error.as_str(),
            "delivery attempt"
        ),
    }
}

/// Logs a failed attempt: at `warn` the first time and then at most once per
/// [`FAILURE_LOG_INTERVAL`], at `debug` otherwise.
fn log_failure(
    reader: &Reader,
    seq: u64,
    delay: Duration,
    progress: &DeliveryProgress,
    last_warned: &std::sync::Mutex<Option<tokio::time::Instant>>,
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
