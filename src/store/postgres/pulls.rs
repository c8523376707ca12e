//! Pulled subscriptions' cursors in PostgreSQL, advanced in batches (group commit).

use async_trait::async_trait;
use jiff::Timestamp;

use super::super::StoreError;
use super::super::group_commit::Commit;
use super::super::pulls::{PulledCursor, Pulls};
use super::super::subscription_writes::{PullAdvance, advanced};
use super::PostgresStore;
use super::batch_writes::PgBatches;
use crate::domain::subscription::SubscriptionId;

/// Moves each given pulled subscription, active and unexpired at its `now`, forward to its
/// position when that is not past its log's head; returns each one's cursor and head. The row
/// locks of the UPDATE order concurrent Pulls, so a cursor never moves backwards, on any node.
const ADVANCE_BATCH: &str = "UPDATE subscriptions s SET cursor = CASE
         WHEN s.cursor < p.position AND p.position <= COALESCE(
             (SELECT h.last_seq FROM source_heads h WHERE h.source = s.source), 0)
         THEN p.position ELSE s.cursor END
     FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) AS p(pulled_id, position, at)
     WHERE s.id = p.pulled_id AND s.status = 'active'
       AND (s.expires_at IS NULL OR s.expires_at > p.at)
     RETURNING s.id, s.cursor, COALESCE(
         (SELECT h.last_seq FROM source_heads h WHERE h.source = s.source), 0) AS head";

/// Pulls' advances.
pub(super) struct PgPullAdvances(pub PgBatches);

#[async_trait]
impl Commit for PgPullAdvances {
    type Write = PullAdvance;
    type Answer = Option<PulledCursor>;

    fn row(write: &PullAdvance) -> Option<&str> {
        Some(&write.id)
    }

    async fn commit(&self, batch: &[PullAdvance]) -> Result<Vec<Option<PulledCursor>>, StoreError> {
        let rows = sqlx::query(ADVANCE_BATCH)
            .bind(batch.iter().map(|p| p.id.clone()).collect::<Vec<_>>())
            .bind(batch.iter().map(|p| p.position).collect::<Vec<_>>())
            .bind(batch.iter().map(|p| p.now).collect::<Vec<_>>())
            .fetch_all(&self.0.pool)
            .await?;
        advanced(batch, &rows)
    }
}

#[async_trait]
impl Pulls for PostgresStore {
    async fn advance_pulled(
        &self,
        id: SubscriptionId,
        position: u64,
        now: Timestamp,
    ) -> Result<Option<PulledCursor>, StoreError> {
        self.writes.advance_pulled(id, position, now).await
    }
}
