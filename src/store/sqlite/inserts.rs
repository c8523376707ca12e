//! Group commit of new subscriptions: whatever has queued while the previous commit ran goes
//! into the next transaction, so Subscribes arriving together share one fsync.

use std::sync::Arc;

use sqlx::sqlite::SqlitePool;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::super::StoreError;
use super::super::codec::{Columns, SubscriptionRow, stored_seq};
use super::super::sql::{self, bind_subscription};

/// Most new subscriptions committed in one transaction.
pub(super) const MAX_INSERT_BATCH: usize = 512;

/// A new subscription waiting for the next group commit.
pub(super) struct InsertRequest {
    pub row: SubscriptionRow,
    pub owner: String,
    pub start_after: Option<i64>,
    pub reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// Commits new subscriptions in batches: whatever has queued while the previous commit ran goes
/// into the next transaction. Should a batch fail, its subscriptions are retried one by one, so
/// one bad row cannot refuse the others.
pub(super) async fn insert_batches(
    pool: SqlitePool,
    write: Arc<Mutex<()>>,
    mut requests: mpsc::Receiver<InsertRequest>,
    closing: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            request = requests.recv() => match request {
                Some(request) => request,
                None => return,
            },
            () = closing.cancelled() => {
                // Whatever still waits is refused, not lost silently: its Subscribe fails.
                requests.close();
                while let Ok(request) = requests.try_recv() {
                    let _ = request.reply.send(Err(StoreError::Closed));
                }
                return;
            }
        };
        let mut batch = vec![first];
        let _writing = write.lock().await;
        while batch.len() < MAX_INSERT_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        if batch.len() > 1
            && let Ok(cursors) = insert_all(&pool, &batch).await
        {
            for (request, cursor) in batch.into_iter().zip(cursors) {
                let _ = request.reply.send(Ok(cursor));
            }
            continue;
        }
        for request in batch {
            let result = insert_all(&pool, std::slice::from_ref(&request))
                .await
                .and_then(|cursors| {
                    cursors
                        .first()
                        .copied()
                        .ok_or_else(|| StoreError::Corrupt("no cursor returned".into()))
                });
            let _ = request.reply.send(result);
        }
    }
}

/// Inserts subscriptions in one transaction; returns each one's starting cursor.
async fn insert_all(pool: &SqlitePool, batch: &[InsertRequest]) -> Result<Vec<u64>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
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
