//! Pulled subscriptions' cursors in the embedded store, advanced in batches with the
//! rest of the subscription lifecycle (see `batch_writes.rs`).

use async_trait::async_trait;
use jiff::Timestamp;

use super::super::StoreError;
use super::super::pulls::{PulledCursor, Pulls};
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
        self.writes.advance_pulled(id, position, now).await
    }
}
