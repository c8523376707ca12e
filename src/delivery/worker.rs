//! One reader's delivery worker: in order, one event in flight, retried with back-off through
//! [`Sending`]'s retry loop; a reader that takes batches (WS-Management's Events mode) is handed
//! to `batches.rs`.

use std::sync::Arc;
use std::time::Duration;

use super::client::Attempt;
use super::lock;
use super::reader::Reader;
use super::sending::{LastWarned, Outcome, Sending, Turn, attempt_until_done};
use crate::domain::event::Event;
use crate::domain::subscription::ReaderDelivery;
use crate::domain::wsman::WsmanMode;

/// Events fetched per step.
const BATCH: usize = 64;

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
    let last_warned = LastWarned::new(None);
    let last_warned = &last_warned;
    if let Some(wsman) = &reader.subscription().wsman
        && wsman.mode == WsmanMode::Events
    {
        return super::batches::deliver(sending, reader, wsman.batch, last_warned).await;
    }
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
        // One permit for the batch while its deliveries succeed (see [`Turn`]).
        let turn = Turn::new(&sending.permits);
        for view in events {
            let seq = view.event().seq;
            if !reader.wants(&view) {
                sending.report(id, reader.advance(seq));
                continue;
            }
            let subscription = reader.subscription();
            // Built for each attempt: a webhook is signed at the time it is sent.
            let outcome =
                attempt_until_done(sending, reader, (seq, &turn), last_warned, || async {
                    let attempt = match subscription.delivery {
                        ReaderDelivery::AmqpPublish => {
                            sending.bridge.publish(subscription, view.event()).await
                        }
                        _ => {
                            let message =
                                sending.envelopes.notification(subscription, view.event());
                            sending
                                .client
                                .send_to(subscription, reader.notify_to(), &message)
                                .await
                        }
                    };
                    log_attempt(reader, view.event(), &attempt);
                    attempt
                })
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
                    sending.gave_up(reader, &error).await;
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
