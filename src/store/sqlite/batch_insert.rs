//! New subscriptions written in one SQLite transaction (see [`super::super::inserts`] for the
//! group commit that batches them).

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::sqlite::SqlitePool;
use tokio::sync::Mutex;

use super::super::StoreError;
use super::super::codec::{Columns, stored_seq};
use super::super::inserts::{CommitInserts, InsertRequest};
use super::super::sql::{self, bind_subscription};

/// Writes batches under the store's writer lock.
pub(super) struct SqliteInserts {
    pub pool: SqlitePool,
    pub write: Arc<Mutex<()>>,
}

#[async_trait]
impl CommitInserts for SqliteInserts {
    async fn commit(&self, batch: &[InsertRequest]) -> Result<Vec<u64>, StoreError> {
        let _writing = self.write.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut cursors = Vec::with_capacity(batch.len());
        for InsertRequest {
            row,
            owner,
            start_after,
            ..
        } in batch
        {
            let inserted =
                bind_subscription(sqlx::query(sql::INSERT_SUBSCRIPTION.sqlite()), row.clone())
                    .bind(owner)
                    .bind(start_after)
                    .fetch_one(&mut *tx)
                    .await?;
            cursors.push(stored_seq("cursor", inserted.int("cursor")?)?);
        }
        tx.commit().await?;
        Ok(cursors)
    }
}
