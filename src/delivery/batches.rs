//! Delivery in batches (WS-Management's Events mode): a worker's loop for a reader that takes
//! its events several to a message. A batch is the events after the cursor that the reader's
//! filter wants, at most `MaxElements` of them, held until the oldest is `MaxTime` old unless
//! the batch is full, and cut to fit `MaxEnvelopeSize`. It is retried whole, as one message,
//! and the cursor moves past the whole batch (and the filtered-out events among it) once the
//! sink has acknowledged it. An event that alone exceeds the envelope limit is handled by the
//! subscriber's `Policy`: the subscription ends, the event is skipped, or a notice of it is
//! sent in its place.

use std::sync::Arc;
use std::time::Duration;

use super::client::Outgoing;
use super::reader::Reader;
use super::sending::{LastWarned, Outcome, Sending, deliver_one_message};
use crate::domain::event::Event;
use crate::domain::wsman::{BatchLimits, EnvelopePolicy};
use crate::filter::EventView;

/// Events per batch when the subscriber sets no `MaxElements`.
const DEFAULT_ELEMENTS: usize = 512;
/// How often a batch held for `MaxTime` is looked at again, to send it as soon as it is full.
const FILL_CHECK: Duration = Duration::from_millis(50);

/// The most events per batch, whatever `MaxElements` says: what one worker holds at once.
const MAX_ELEMENTS: usize = 4096;

/// The next batch: the wanted events after the cursor, at most `max` of them, and the last
/// sequence number it accounts for (filtered-out events included).
struct Batch {
    events: Vec<Arc<EventView>>,
    position: u64,
}

fn gather(reader: &Reader, views: Vec<Arc<EventView>>, max: usize) -> Batch {
    let mut batch = Batch {
        events: Vec::new(),
        position: reader.cursor(),
    };
    for view in views {
        if batch.events.len() == max {
            break;
        }
        batch.position = view.event().seq;
        if reader.wants(&view) {
            batch.events.push(view);
        }
    }
    batch
}

/// How a batch is to be sent once it fits the envelope limit.
enum Shaped {
    /// This message, accounting for events up to `position`.
    Send {
        message: Outgoing,
        position: u64,
        count: usize,
    },
    /// The first event alone exceeds the limit.
    Oversized(Arc<Event>),
}

/// Builds the message for `batch`, halving it until it fits `limit` bytes.
fn shape(sending: &Sending, reader: &Reader, batch: &Batch, limit: Option<u64>) -> Option<Shaped> {
    let subscription = reader.subscription();
    let events: Vec<&Event> = batch.events.iter().map(|view| &**view.event()).collect();
    let mut count = events.len();
    let mut position = batch.position;
    loop {
        let message = sending
            .envelopes
            .batch(subscription, &events[..count], position)?;
        let fits = limit.is_none_or(|limit| message.body.len() as u64 <= limit);
        if fits {
            return Some(Shaped::Send {
                message,
                position,
                count,
            });
        }
        if count == 1 {
            return Some(Shaped::Oversized(batch.events[0].event().clone()));
        }
        count = count.div_ceil(2);
        position = events[count - 1].seq;
    }
}

/// Runs a batch reader's deliveries until it is caught up, ends, gives up or herald stops.
pub(super) async fn deliver(
    sending: &Sending,
    reader: &Reader,
    limits: BatchLimits,
    last_warned: &LastWarned,
) {
    let max = limits
        .max_elements
        .map_or(DEFAULT_ELEMENTS, |n| {
            usize::try_from(n).unwrap_or(MAX_ELEMENTS)
        })
        .clamp(1, MAX_ELEMENTS);
    let id = reader.id();
    loop {
        if reader.is_ended() || sending.stop.is_cancelled() {
            return;
        }
        let source = &reader.subscription().source;
        let views = match sending.log.events_after(source, reader.cursor(), max).await {
            Ok(views) => views,
            Err(err) => {
                tracing::warn!(%id, error = %err, "reading the event log failed; retrying");
                if !reader.pause(Duration::from_secs(1), &sending.stop).await {
                    return;
                }
                continue;
            }
        };
        if views.is_empty() {
            return;
        }
        let batch = gather(reader, views, max);
        let Some(oldest) = batch.events.first().map(|view| view.event().clone()) else {
            sending.report(id, reader.advance(batch.position));
            continue;
        };
        // A batch that is not full waits for more until its oldest event is MaxTime old.
        if batch.events.len() < max
            && let Some(max_time) = limits.max_time()
        {
            let age = sending.clock.now().duration_since(oldest.published_at);
            let age = Duration::try_from(age).unwrap_or_default();
            if let Some(wait) = max_time.checked_sub(age).filter(|w| !w.is_zero()) {
                // Looked at again every few milliseconds: a batch that fills meanwhile goes
                // at once.
                if !reader.pause(wait.min(FILL_CHECK), &sending.stop).await {
                    return;
                }
                continue;
            }
        }
        let Some(shaped) = shape(sending, reader, &batch, limits.max_envelope_size) else {
            tracing::error!(%id, "a batch reader without batch messages; stopping its delivery");
            return;
        };
        let (message, position, events) = match shaped {
            Shaped::Send {
                message,
                position,
                count,
            } => {
                let events: Vec<Arc<Event>> = batch.events[..count]
                    .iter()
                    .map(|view| view.event().clone())
                    .collect();
                (message, position, events)
            }
            Shaped::Oversized(event) => {
                let limit = limits.max_envelope_size.unwrap_or_default();
                match limits.policy {
                    EnvelopePolicy::CancelSubscription => {
                        let error = format!(
                            "event {} alone exceeds the subscriber's wsman:MaxEnvelopeSize of \
                             {limit} bytes",
                            event.seq
                        );
                        sending.gave_up(reader, &error).await;
                        return;
                    }
                    EnvelopePolicy::Skip => {
                        tracing::info!(%id, seq = event.seq, limit, "event exceeds the envelope limit; skipped");
                        sending.count("skipped");
                        sending.report(id, reader.advance(event.seq));
                        continue;
                    }
                    EnvelopePolicy::Notify => {
                        let Some(notice) = sending.envelopes.dropped(reader.subscription(), &event)
                        else {
                            sending.report(id, reader.advance(event.seq));
                            continue;
                        };
                        sending.count("skipped");
                        (notice, event.seq, Vec::new())
                    }
                }
            }
        };
        match deliver_one_message(sending, reader, &message, position, last_warned).await {
            Outcome::Delivered => {
                sending.delivered(&events);
                sending.report(id, reader.advance(position));
            }
            Outcome::GaveUp(error) => {
                sending.gave_up(reader, &error).await;
                return;
            }
            Outcome::Abandoned => return,
        }
    }
}
