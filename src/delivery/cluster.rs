//! This node among others on a shared store: it keeps its lease, claims orphaned
//! subscriptions, and follows what other nodes do, from the store's signals when it sends them
//! and by polling otherwise. On the embedded store it is the only node and finds nothing to do
//! but keep its lease.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::Dispatcher;
use crate::store::Signal;

/// Orphans claimed per statement.
pub(super) const CLAIM_BATCH: u32 = 1000;

/// Owned subscriptions read per page at start.
pub(super) const LOAD_PAGE: u32 = 10_000;

pub(super) async fn run(dispatcher: Arc<Dispatcher>, mut signals: Option<mpsc::Receiver<Signal>>) {
    let mut renew = tokio::time::interval_at(
        Instant::now() + dispatcher.settings.lease_ttl / 4,
        dispatcher.settings.lease_ttl / 4,
    );
    renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut poll = tokio::time::interval(dispatcher.settings.poll_interval);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = renew.tick() => keep_lease(&dispatcher).await,
            _ = poll.tick() => {
                dispatcher.poll_heads().await;
                claim(&dispatcher).await;
            }
            signal = next(&mut signals) => match signal {
                Some(Signal::Appended(source, head)) => {
                    // This node's own appends are in its ring already.
                    if dispatcher.head(&source).is_some_and(|known| known < head) {
                        dispatcher.catch_up(&source).await;
                    }
                }
                Some(Signal::Ended(id)) => dispatcher.remove_id(id),
                Some(Signal::Released) => {
                    claim(&dispatcher).await;
                    dispatcher.poll_heads().await;
                }
                None => signals = None,
            },
            () = dispatcher.stop.cancelled() => return,
        }
    }
}

/// The next signal; never, when the store sends none.
async fn next(signals: &mut Option<mpsc::Receiver<Signal>>) -> Option<Signal> {
    match signals {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// How soon a failed lease renewal is tried again: each failure may have cost one dead pooled
/// connection, so a burst of them (sessions killed, a failover) is worked through quickly.
const RENEW_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// Renews the lease, trying again at once after an error for as long as the lease still holds.
/// When it had lapsed, other nodes may have taken this node's subscriptions: it lets go of all
/// of them and joins again, taking back what is still its own.
async fn keep_lease(dispatcher: &Arc<Dispatcher>) {
    let mut failures = 0u32;
    let asked = loop {
        let asked = Instant::now();
        let renewed = dispatcher
            .store
            .renew_node(&dispatcher.node, dispatcher.settings.lease_ttl)
            .await;
        match renewed {
            Err(err) if dispatcher.lease.confirmed() && !dispatcher.stopping() => {
                failures += 1;
                tracing::debug!(error = %err, failures, "renewing this node's lease failed; trying again");
                tokio::time::sleep(RENEW_RETRY).await;
            }
            other => break (asked, other),
        }
    };
    let (asked, renewed) = asked;
    if failures > 0 && renewed.is_ok() {
        tracing::info!(failures, "this node's lease renewed after failed attempts");
    }
    match renewed {
        Ok(true) => {
            dispatcher
                .lease
                .extend_to(asked + dispatcher.settings.lease_ttl);
            if dispatcher.lease.take_doubt() {
                for state in dispatcher.sources.values() {
                    dispatcher.wake_source(state);
                }
            }
        }
        Ok(false) => {
            tracing::warn!(node = %dispatcher.node, "this node's lease lapsed; letting go of its subscriptions and joining again");
            dispatcher.drop_all();
            if let Err(err) = dispatcher.join().await {
                tracing::warn!(error = %err, "joining again failed; will retry");
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "renewing this node's lease failed; deliveries stop when it runs out");
        }
    }
}

/// Claims orphaned subscriptions and starts delivering them.
async fn claim(dispatcher: &Arc<Dispatcher>) {
    if !dispatcher.lease_holds() || dispatcher.stopping() {
        return;
    }
    loop {
        let now = dispatcher.clock.now();
        let claimed = match dispatcher
            .store
            .claim_orphans(&dispatcher.node, now, CLAIM_BATCH)
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(error = %err, "claiming orphaned subscriptions failed");
                return;
            }
        };
        let full = claimed.len() == CLAIM_BATCH as usize;
        if !claimed.is_empty() {
            tracing::info!(count = claimed.len(), "took over orphaned subscriptions");
        }
        for (subscription, progress) in claimed {
            if let Err(err) = dispatcher.adopt(subscription, progress).await {
                tracing::warn!(error = %err, "could not take over a subscription");
            }
        }
        if !full {
            return;
        }
    }
}
