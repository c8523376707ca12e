//! New subscriptions written as one statement per batch (see [`super::super::inserts`] for the
//! group commit that batches them): the rows go as one JSON array, so a batch costs one trip to
//! the driver's worker thread and one fsync however many Subscribes it holds.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::sqlite::SqlitePool;
use tokio::sync::Mutex;

use super::super::StoreError;
use super::super::codec::subscription_columns;
use super::super::inserts::{CommitInserts, InsertRequest, cursors_in_order};

/// Inserts the rows of a JSON array of arrays (the subscription columns in order, then the
/// owner and the starting cursor); each starts at its given cursor or at its log's head.
const INSERT_BATCH: &str = concat!(
    "INSERT INTO subscriptions (",
    subscription_columns!(),
    ", status, owner, cursor)
     SELECT json_extract(value, '$[0]'),
            json_extract(value, '$[1]'),
            json_extract(value, '$[2]'),
            json_extract(value, '$[3]'),
            json_extract(value, '$[4]'),
            json_extract(value, '$[5]'),
            json_extract(value, '$[6]'),
            json_extract(value, '$[7]'),
            json_extract(value, '$[8]'),
            json_extract(value, '$[9]'),
            json_extract(value, '$[10]'),
            json_extract(value, '$[11]'),
            json_extract(value, '$[12]'),
            json_extract(value, '$[13]'),
            json_extract(value, '$[14]'),
            json_extract(value, '$[15]'),
            json_extract(value, '$[16]'),
            json_extract(value, '$[17]'),
            json_extract(value, '$[18]'),
            json_extract(value, '$[19]'),
            'active', json_extract(value, '$[20]'),
            COALESCE(json_extract(value, '$[21]'),
                     (SELECT last_seq FROM source_heads
                      WHERE source = json_extract(value, '$[1]')), 0)
     FROM json_each(?1) WHERE true
     RETURNING id, cursor"
);

/// Writes batches under the store's writer lock.
pub(super) struct SqliteInserts {
    pub pool: SqlitePool,
    pub write: Arc<Mutex<()>>,
}

/// One request as a JSON array in [`INSERT_BATCH`]'s order.
fn encode(request: &InsertRequest) -> Value {
    let row = &request.row;
    json!([
        row.id,
        row.source,
        row.eventing,
        row.soap,
        row.addressing,
        row.notify_to,
        row.end_to,
        row.delivery_mode,
        row.format,
        row.filter,
        row.expires_at,
        row.expiry_kind,
        row.created_at,
        row.manager_address,
        row.log_kind,
        row.delivery,
        row.webhook,
        row.retry_interval_ms,
        row.retry_total,
        row.wsman,
        request.owner,
        request.start_after,
    ])
}

#[async_trait]
impl CommitInserts for SqliteInserts {
    async fn commit(&self, batch: &[InsertRequest]) -> Result<Vec<u64>, StoreError> {
        let rows = Value::Array(batch.iter().map(encode).collect()).to_string();
        let _writing = self.write.lock().await;
        // One statement is one transaction: all of the batch or none of it.
        let inserted = sqlx::query(INSERT_BATCH)
            .bind(rows)
            .fetch_all(&self.pool)
            .await?;
        cursors_in_order(batch, &inserted)
    }
}
