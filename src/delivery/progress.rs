//! The progress writer: coalesces cursor and retry-state updates and writes them in one
//! transaction per interval (group commit).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::engine::subscription::{DeliveryProgress, SubscriptionId};
use crate::store::Store;

/// Most updates written in one transaction.
const MAX_BATCH: usize = 5000;

pub(super) async fn run(
    store: Arc<dyn Store>,
    mut updates: mpsc::UnboundedReceiver<(SubscriptionId, DeliveryProgress)>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
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
            _ = stop.changed() => true,
        };
        if stopping {
            while let Ok((id, progress)) = updates.try_recv() {
                pending.insert(id, progress);
            }
        }
        flush(store.as_ref(), &mut pending).await;
        if stopping {
            return;
        }
    }
}

async fn flush(store: &dyn Store, pending: &mut HashMap<SubscriptionId, DeliveryProgress>) {
    if pending.is_empty() {
        return;
    }
    let batch: Vec<(SubscriptionId, DeliveryProgress)> = pending.drain().collect();
    if let Err(err) = store.save_progress(&batch).await {
        // Keep them for the next round; a newer update for the same id wins.
        tracing::warn!(error = %err, count = batch.len(), "saving delivery progress failed; will retry");
        for (id, progress) in batch {
            pending.entry(id).or_insert(progress);
        }
    }
}
