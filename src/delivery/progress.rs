//! The progress writer: coalesces cursor and retry-state updates and writes them in one
//! transaction per interval (group commit).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::readers::Readers;
use crate::domain::subscription::{DeliveryProgress, SubscriptionId};
use crate::store::{NodeId, Store};

/// Most updates written in one transaction.
const MAX_BATCH: usize = 5000;

/// Writes progress until stopped. Subscriptions the store refuses progress for (they ended on
/// another node, or another node owns them now) are taken out of this node's delivery.
pub(super) async fn run(
    readers: Weak<Readers>,
    store: Arc<dyn Store>,
    node: NodeId,
    mut updates: mpsc::UnboundedReceiver<(SubscriptionId, DeliveryProgress)>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut pending: HashMap<SubscriptionId, DeliveryProgress> = HashMap::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            update = updates.recv() => match update {
                Some((id, progress)) => {
                    pending.insert(id, progress);
                    while let Ok((id, progress)) = updates.try_recv() {
                        pending.insert(id, progress);
                    }
                    if pending.len() < MAX_BATCH {
                        continue;
                    }
                    false
                }
                None => true,
            },
            _ = ticker.tick() => false,
            () = stop.cancelled() => true,
        };
        if stopping {
            while let Ok((id, progress)) = updates.try_recv() {
                pending.insert(id, progress);
            }
        }
        let rejected = flush(store.as_ref(), &node, &mut pending).await;
        if !rejected.is_empty()
            && let Some(readers) = readers.upgrade()
        {
            for id in rejected {
                tracing::info!(%id, "subscription ended or owned elsewhere; delivery stopped here");
                readers.remove_id(id);
            }
        }
        if stopping {
            return;
        }
    }
}

async fn flush(
    store: &dyn Store,
    node: &NodeId,
    pending: &mut HashMap<SubscriptionId, DeliveryProgress>,
) -> Vec<SubscriptionId> {
    if pending.is_empty() {
        return Vec::new();
    }
    let batch: Vec<(SubscriptionId, DeliveryProgress)> = pending.drain().collect();
    match store.save_progress(node, &batch).await {
        Ok(rejected) => rejected,
        Err(err) => {
            // Keep them for the next round; a newer update for the same id wins.
            tracing::warn!(error = %err, count = batch.len(), "saving delivery progress failed; will retry");
            for (id, progress) in batch {
                pending.entry(id).or_insert(progress);
            }
            Vec::new()
        }
    }
}
