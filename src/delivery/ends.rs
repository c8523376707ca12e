//! The SubscriptionEnd sender: works through the store's outbox of ended subscriptions with an
//! EndTo, retrying with the source's back-off. Its own failure only marks the notice failed: it
//! never ends anything, so it cannot loop.

use std::sync::Arc;
use std::time::Duration;

use super::Dispatcher;
use super::client::Attempt;
use super::retry::RetryPolicy;
use crate::domain::subscription::EndNotice;
use crate::metrics::EndNoticeLabels;

/// How often the outbox is looked at without being woken.
const POLL: Duration = Duration::from_secs(1);

pub(super) async fn run(dispatcher: Arc<Dispatcher>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = dispatcher.end_wake.notified() => {}
            () = dispatcher.stop.cancelled() => return,
        }
        loop {
            if dispatcher.stopping() {
                return;
            }
            let now = dispatcher.clock.now();
            let due = match dispatcher
                .store
                .due_end_notices(now, 100, dispatcher.settings.end_notice_claim)
                .await
            {
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
                    dispatcher
                        .metrics
                        .subscription_ends
                        .get_or_create(&EndNoticeLabels { outcome })
                        .inc();
                };
                let Some(message) = dispatcher.envelopes.subscription_end(&subscription, reason)
                else {
                    count("skipped");
                    record(
                        &dispatcher,
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
                    let Ok(_permit) = dispatcher.permits.acquire().await else {
                        return;
                    };
                    dispatcher.client.send(&message).await
                };
                match attempt {
                    Attempt::Delivered => {
                        count("sent");
                        record(
                            &dispatcher,
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
                        if gone || attempts >= dispatcher.settings.end_notice_attempts {
                            count("gave_up");
                            tracing::info!(id = %subscription.id, error, "SubscriptionEnd not delivered; given up");
                            record(
                                &dispatcher,
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
                        let policy: RetryPolicy = dispatcher
                            .source(&subscription.source)
                            .map_or_else(RetryPolicy::default, |state| state.retry);
                        let delay = policy.delay(attempts, retry_after, fastrand::f64());
                        let next = jiff::SignedDuration::try_from(delay)
                            .ok()
                            .and_then(|d| now.checked_add(d).ok())
                            .unwrap_or(now);
                        record(
                            &dispatcher,
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
    dispatcher: &Dispatcher,
    id: &crate::domain::subscription::SubscriptionId,
    notice: EndNotice,
    attempts: u32,
    next_at: Option<jiff::Timestamp>,
    error: Option<&str>,
) {
    if let Err(err) = dispatcher
        .store
        .record_end_notice(*id, notice, attempts, next_at, error)
        .await
    {
        tracing::warn!(%id, error = %err, "recording a SubscriptionEnd outcome failed");
    }
}
