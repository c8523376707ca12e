//! Pulled subscriptions' cursors in the embedded store.

use async_trait::async_trait;
use jiff::Timestamp;

use super::super::StoreError;
use super::super::codec::{millis, seq_column};
use super::super::pulls::{ADVANCE_PULLED, PulledCursor, Pulls, decode_pulled};
use super::SqliteStore;
use crate::domain::subscription::SubscriptionId;

#[async_trait]
impl Pulls for SqliteStore {
    async fn advance_pulled(
        &self,
        id: SubscriptionId,
        position: u64,
        now: Timestamp,
    ) -> Result<Option<PulledCursor>, StoreError> {
        let _writing = self.write.lock().await;
        let row: Option<(i64, i64)> = sqlx::query_as(ADVANCE_PULLED.sqlite())
            .bind(seq_column(position))
            .bind(id.key())
            .bind(millis(now))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|(cursor, head)| decode_pulled(cursor, head))
            .transpose()
    }
}
