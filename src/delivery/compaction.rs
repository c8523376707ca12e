//! Compaction: deletes the events every stored cursor has passed once they are older than the
//! retention window, and forgets nodes dead that long. Safe on every node at once: each
//! statement keeps what any cursor still needs.

use std::sync::Arc;

use super::Dispatcher;

/// Deletes events every cursor has passed once they are older than the retention window.
pub(super) async fn run(dispatcher: Arc<Dispatcher>) {
    let mut ticker = tokio::time::interval(dispatcher.settings.compaction_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = dispatcher.stop.cancelled() => return,
        }
        let now = dispatcher.clock.now();
        let retention = jiff::SignedDuration::try_from(dispatcher.settings.retention)
            .unwrap_or(jiff::SignedDuration::MAX);
        let cutoff = now.saturating_sub(retention).unwrap_or(now);
        if let Err(err) = dispatcher
            .store
            .forget_dead_nodes(dispatcher.settings.retention)
            .await
        {
            tracing::warn!(error = %err, "forgetting dead nodes failed");
        }
        for state in dispatcher.sources.values() {
            match dispatcher.store.compact_events(&state.name, cutoff).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(source = %state.name, removed, "events compacted"),
                Err(err) => tracing::warn!(source = %state.name, error = %err, "compaction failed"),
            }
        }
    }
}
