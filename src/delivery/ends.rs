//! The SubscriptionEnd sender: works through the store's outbox of ended subscriptions with an
//! EndTo, retrying with the source's back-off. Its own failure only marks the notice failed: it
//! never ends anything, so it cannot loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::Envelopes;
use super::client::{Attempt, DeliveryClient};
use super::retry::RetryPolicy;
use crate::domain::clock::Clock;
use crate::domain::subscription::{EndNotice, SourceName, SubscriptionId};
use crate::metrics::{EndNoticeLabels, Metrics};
use crate::store::Store;

/// How often the outbox is looked at without being woken.
const POLL: Duration = Duration::from_secs(1);

/// The outbox sender's state and what it uses.
pub(super) struct Outbox {
    pub store: Arc<dyn Store>,
    pub envelopes: Arc<dyn Envelopes>,
    pub client: DeliveryClient,
    pub permits: Arc<Semaphore>,
    /// Each configured source's retry policy (others' notices use the default).
    pub retry: HashMap<SourceName, RetryPolicy>,
    /// Attempts at a notice before giving up.
    pub attempts: u32,
    /// How long a node that took a notice keeps others off it.
    pub claim: Duration,
    pub wake: Notify,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub stop: CancellationToken,
}

impl Outbox {
    /// A notice may be pending: look now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

pub(super) async fn run(outbox: Arc<Outbox>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = outbox.wake.notified() => {}
            () = outbox.stop.cancelled() => return,
        }
        loop {
            if outbox.stop.is_cancelled() {
                return;
            }
            let now = outbox.clock.now();
            let due = match outbox.store.due_end_notices(now, 100, outbox.claim).await {
                Ok(due) => due,
                Err(err) => {
                    tracing::warn!(error = %err, "reading pending SubscriptionEnd notices failed");
                    break;
                }
            };
            if due.is_empty() {
                break;
            }
            for (subscription, reason, attempts) in due {
                let count = |outcome: &'static str| {
                    outbox
                        .metrics
                        .subscription_ends
                        .get_or_create(&EndNoticeLabels { outcome })
                        .inc();
                };
                let Some(message) = outbox.envelopes.subscription_end(&subscription, reason) else {
                    count("skipped");
                    record(
                        &outbox,
                        &subscription.id,
                        EndNotice::Skipped,
                        attempts,
                        None,
                        None,
                    )
                    .await;
                    continue;
                };
                let attempt = {
                    let Ok(_permit) = outbox.permits.acquire().await else {
                        return;
                    };
                    outbox.client.send_to(&subscription, None, &message).await
                };
                match &attempt {
                    Attempt::Delivered => tracing::debug!(
                        subscription = %subscription.id, to = %message.url, outcome = "delivered",
                        "SubscriptionEnd attempt"
                    ),
                    Attempt::Failed { error, .. } => tracing::debug!(
                        subscription = %subscription.id, to = %message.url, outcome = "failed",
                        error = error.as_str(), "SubscriptionEnd attempt"
                    ),
                }
                match attempt {
                    Attempt::Delivered => {
                        count("sent");
                        record(
                            &outbox,
                            &subscription.id,
                            EndNotice::Sent,
                            attempts + 1,
                            None,
                            None,
                        )
                        .await;
                    }
                    Attempt::Failed {
                        error,
                        retry_after,
                        gone,
                    } => {
                        let attempts = attempts + 1;
                        if gone || attempts >= outbox.attempts {
                            count("gave_up");
                            tracing::info!(id = %subscription.id, error, "SubscriptionEnd not delivered; given up");
                            record(
                                &outbox,
                                &subscription.id,
                                EndNotice::Failed,
                                attempts,
                                None,
                                Some(&error),
                            )
                            .await;
                            continue;
                        }
                        count("failed");
                        let policy = outbox
                            .retry
                            .get(&subscription.source)
                            .copied()
                            .unwrap_or_default();
                        let delay = policy.delay(attempts, retry_after, fastrand::f64());
                        let next = jiff::SignedDuration::try_from(delay)
                            .ok()
                            .and_then(|d| now.checked_add(d).ok())
                            .unwrap_or(now);
                        record(
                            &outbox,
                            &subscription.id,
                            EndNotice::Pending,
                            attempts,
                            Some(next),
                            Some(&error),
                        )
                        .await;
                    }
                }
            }
        }
    }
}

async fn record(
    outbox: &Outbox,
    id: &SubscriptionId,
    notice: EndNotice,
    attempts: u32,
    next_at: Option<jiff::Timestamp>,
    error: Option<&str>,
) {
    if let Err(err) = outbox
        .store
        .record_end_notice(*id, notice, attempts, next_at, error)
        .await
    {
        tracing::warn!(%id, error = %err, "recording a SubscriptionEnd outcome failed");
    }
}
