//! Pulled subscriptions (WS-Management Pull mode): nothing is pushed; the subscriber asks for
//! events and names where it stands.
//!
//! The cursor rule: a Pull names a position P in the subscription's log (the position after
//! the events the previous Pull handed out). The stored cursor moves to P — never backwards,
//! never past the log's head, in one store statement that any node may run — and the events
//! after P that pass the subscription's filter are returned, up to the number asked for,
//! waiting up to the time allowed for the first one. Nothing is acknowledged until the
//! subscriber presents the position after it: presenting an older position again reads from
//! there again (at least once; a lost response loses nothing). A position past the head, or
//! one whose events are no longer retained, cannot be read from and is refused.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Engine, EngineError};
use crate::domain::event::Event;
use crate::domain::subscription::{EndReason, Ended, ReaderDelivery, Subscription, SubscriptionId};
use crate::filter::EventView;

/// Events read from the log per step while looking for wanted ones.
const SCAN_BATCH: usize = 256;

/// A Pull, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullRequest {
    /// The pulled subscription.
    pub id: SubscriptionId,
    /// The position the subscriber presents: it has what came before.
    pub after: u64,
    /// Most events to return (at least one).
    pub max_events: usize,
    /// How long to wait for the first wanted event.
    pub wait: Duration,
}

/// What a Pull found.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The subscription, as stored.
    pub subscription: Subscription,
    /// The wanted events after the presented position, in order.
    pub events: Vec<Arc<Event>>,
    /// How far the log was read: the position after the last event returned, or past events
    /// the filter passed over. Equal to the presented position when nothing came in time.
    pub read_to: u64,
}

impl Engine {
    /// Serves a Pull under the cursor rule (see the module documentation). An unknown, ended
    /// or expired subscription is [`EngineError::UnknownSubscription`]; one that is pushed,
    /// or a position that cannot be read from, [`EngineError::InvalidPullPosition`].
    pub async fn pull(&self, request: PullRequest) -> Result<Pulled, EngineError> {
        let PullRequest {
            id,
            after,
            max_events,
            wait,
        } = request;
        let deadline = Instant::now() + wait;
        let subscription = self.pulled_subscription(id).await?;
        let stored = self
            .store
            .advance_pulled(id, after, self.clock.now())
            .await?
            .ok_or(EngineError::UnknownSubscription)?;
        if after > stored.head {
            return Err(EngineError::InvalidPullPosition(format!(
                "it names position {after} of '{}', which has not been reached",
                subscription.source
            )));
        }
        self.delivery
            .pulled_to(&subscription.source, id, stored.cursor);
        let matcher = self.compile(&subscription)?;
        let source = &subscription.source;
        let mut events = Vec::new();
        let mut read_to = after;
        loop {
            let mut batch = self
                .delivery
                .events_after(source, read_to, SCAN_BATCH)
                .await?;
            if batch.is_empty() && read_to < stored.head {
                // This node's tail has not yet read what other nodes appended.
                let stored_events = self
                    .store
                    .events_after(source, read_to, SCAN_BATCH as u32)
                    .await?;
                batch = stored_events
                    .into_iter()
                    .map(|event| Arc::new(EventView::new(Arc::new(event))))
                    .collect();
            }
            if read_to == after
                && after < stored.head
                && batch
                    .first()
                    .is_none_or(|view| view.event().seq != after + 1)
            {
                // Sequence numbers have no gaps: the events after it were compacted.
                return Err(EngineError::InvalidPullPosition(format!(
                    "the events after position {after} of '{source}' are no longer retained"
                )));
            }
            let full = batch.len() == SCAN_BATCH;
            for view in batch {
                read_to = view.event().seq;
                if matcher
                    .as_ref()
                    .is_none_or(|matcher| matcher.matches(&view))
                {
                    events.push(view.event().clone());
                    if events.len() >= max_events {
                        break;
                    }
                }
            }
            let past_deadline = Instant::now() >= deadline || self.draining.is_cancelled();
            if events.len() >= max_events || (!full && !events.is_empty()) || past_deadline {
                break;
            }
            if !full {
                tokio::select! {
                    () = self.delivery.grown_past(source, read_to, deadline) => {}
                    () = self.draining.cancelled() => {}
                }
            }
        }
        Ok(Pulled {
            subscription,
            events,
            read_to,
        })
    }

    /// Ends a pulled subscription at its subscriber's request (`wsen:Release`): as an
    /// Unsubscribe does.
    pub async fn release(&self, id: SubscriptionId) -> Result<Ended, EngineError> {
        self.pulled_subscription(id).await?;
        self.end(id, EndReason::Unsubscribed)
            .await?
            .ok_or(EngineError::UnknownSubscription)
    }

    /// The active subscription `id`, which must be a pulled one.
    async fn pulled_subscription(&self, id: SubscriptionId) -> Result<Subscription, EngineError> {
        let subscription = self
            .store
            .active_subscription(id, self.clock.now())
            .await?
            .filter(|subscription| subscription.delivery == ReaderDelivery::SoapPush)
            .ok_or(EngineError::UnknownSubscription)?;
        if !subscription.pulled() {
            return Err(EngineError::InvalidPullPosition(
                "the subscription is delivered by push, not pulled".into(),
            ));
        }
        Ok(subscription)
    }
}
