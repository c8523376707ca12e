//! Pulled subscriptions' cursors in the embedded store, advanced in batches (group commit).

use async_trait::async_trait;
use jiff::Timestamp;
use serde_json::json;

use super::super::StoreError;
use super::super::group_commit::Commit;
use super::super::pulls::{PulledCursor, Pulls};
use super::super::subscription_writes::{PullAdvance, advanced};
use super::SqliteStore;
use super::batch_writes::SqliteBatches;
use crate::domain::subscription::SubscriptionId;

/// Moves each pulled subscription of a JSON array of `[id, position, now]`, active and
/// unexpired at its `now`, forward to `position` when that is not past its log's head; returns
/// each one's cursor and head.
const ADVANCE_BATCH: &str = "UPDATE subscriptions SET cursor = CASE
         WHEN cursor < json_extract(p.value, '$[1]') AND json_extract(p.value, '$[1]') <= COALESCE(
             (SELECT h.last_seq FROM source_heads h WHERE h.source = subscriptions.source), 0)
         THEN json_extract(p.value, '$[1]') ELSE cursor END
     FROM jsonb_each(?1) AS p
     WHERE subscriptions.id = json_extract(p.value, '$[0]') AND status = 'active'
       AND (expires_at IS NULL OR expires_at > json_extract(p.value, '$[2]'))
     RETURNING subscriptions.id AS id, cursor, COALESCE(
         (SELECT h.last_seq FROM source_heads h WHERE h.source = subscriptions.source), 0) AS head";

/// Pulls' advances.
pub(super) struct SqlitePullAdvances(pub SqliteBatches);

#[async_trait]
impl Commit for SqlitePullAdvances {
    type Write = PullAdvance;
    type Answer = Option<PulledCursor>;

    fn row(write: &PullAdvance) -> Option<&str> {
        Some(&write.id)
    }

    async fn commit(&self, batch: &[PullAdvance]) -> Result<Vec<Option<PulledCursor>>, StoreError> {
        let rows = batch
            .iter()
            .map(|p| json!([p.id, p.position, p.now]))
            .collect();
        advanced(batch, &self.0.run(ADVANCE_BATCH, rows).await?)
    }
}

#[async_trait]
impl Pulls for SqliteStore {
    async fn advance_pulled(
        &self,
        id: SubscriptionId,
        position: u64,
        now: Timestamp,
    ) -> Result<Option<PulledCursor>, StoreError> {
        self.writes.advance_pulled(id, position, now).await
    }
}
