//! Compaction: deletes the events every stored cursor has passed once they are older than the
//! retention window, and forgets nodes dead that long. Safe on every node at once: each
//! statement keeps what any cursor still needs.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::clock::Clock;
use crate::domain::context::service_of;
use crate::store::Store;

/// Deletes events every cursor has passed once they are older than `retention`, from every
/// log in the store, every `interval`, until `stop`.
pub(super) async fn run(
    store: Arc<dyn Store>,
    (retention, interval): (Duration, Duration),
    clock: Clock,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let now = clock.now();
        let window = jiff::SignedDuration::try_from(retention).unwrap_or(jiff::SignedDuration::MAX);
        let cutoff = now.saturating_sub(window).unwrap_or(now);
        if let Err(err) = store.forget_dead_nodes(retention).await {
            tracing::warn!(error = %err, "forgetting dead nodes failed");
        }
        let logs = match store.source_heads().await {
            Ok(heads) => heads,
            Err(err) => {
                tracing::warn!(error = %err, "listing the logs to compact failed");
                continue;
            }
        };
        for (source, _) in &logs {
            match store.compact_events(source, cutoff).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(%source, removed, "events compacted"),
                Err(err) => tracing::warn!(%source, error = %err, "compaction failed"),
            }
            // An ended context instance's log, once empty, is forgotten altogether.
            if service_of(source).is_some()
                && let Err(err) = store.forget_log(source).await
            {
                tracing::warn!(%source, error = %err, "forgetting an ended log failed");
            }
        }
    }
}
