//! Group commit of new subscriptions, on either store: whatever has queued while the previous
//! commit ran goes into the next one, so Subscribes arriving together share one transaction and
//! one fsync (on PostgreSQL one statement: one round trip for the whole batch).

use std::collections::HashMap;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::codec::{Columns, SubscriptionRow, stored_seq};
use super::{NodeId, StoreError};
use crate::domain::subscription::Subscription;

/// Most new subscriptions committed in one transaction.
pub(super) const MAX_INSERT_BATCH: usize = 512;

/// A new subscription waiting for the next group commit.
pub(super) struct InsertRequest {
    pub row: SubscriptionRow,
    pub owner: String,
    pub start_after: Option<i64>,
    pub reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// How a store writes a batch of new subscriptions in one transaction: each one's starting
/// cursor, in the batch's order, or an error and nothing written.
#[async_trait]
pub(super) trait CommitInserts: Send + Sync + 'static {
    async fn commit(&self, batch: &[InsertRequest]) -> Result<Vec<u64>, StoreError>;
}

/// The channel a store's `insert_subscription` queues to, and the task that commits from it.
pub(super) fn channel() -> (mpsc::Sender<InsertRequest>, mpsc::Receiver<InsertRequest>) {
    mpsc::channel(4 * MAX_INSERT_BATCH)
}

/// Queues `subscription` (owned by `owner`, its cursor at `start_after` or else at its log's
/// head) for the next group commit and waits for it; returns its starting cursor.
pub(super) async fn insert(
    inserts: &mpsc::Sender<InsertRequest>,
    subscription: &Subscription,
    owner: &NodeId,
    start_after: Option<u64>,
) -> Result<u64, StoreError> {
    let (reply, response) = oneshot::channel();
    let request = InsertRequest {
        row: SubscriptionRow::encode(subscription),
        owner: owner.as_str().to_owned(),
        start_after: start_after.map(|seq| i64::try_from(seq).unwrap_or(i64::MAX)),
        reply,
    };
    inserts
        .send(request)
        .await
        .map_err(|_| StoreError::Closed)?;
    response.await.map_err(|_| StoreError::Closed)?
}

/// Commits new subscriptions in batches: whatever has queued while the previous commit ran goes
/// into the next transaction. Should a batch fail, its subscriptions are retried one by one, so
/// one bad row cannot refuse the others.
pub(super) async fn insert_batches(
    committer: impl CommitInserts,
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
        while batch.len() < MAX_INSERT_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        if batch.len() > 1
            && let Ok(cursors) = committer.commit(&batch).await
        {
            for (request, cursor) in batch.into_iter().zip(cursors) {
                let _ = request.reply.send(Ok(cursor));
            }
            continue;
        }
        for request in batch {
            let result = committer
                .commit(std::slice::from_ref(&request))
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

/// Each request's starting cursor, in the batch's order, from the `id` and `cursor` columns of
/// the rows an insert returned (in whatever order the database returned them).
pub(super) fn cursors_in_order<R: Columns>(
    batch: &[InsertRequest],
    rows: &[R],
) -> Result<Vec<u64>, StoreError> {
    let mut cursors = HashMap::with_capacity(rows.len());
    for row in rows {
        cursors.insert(row.text("id")?, stored_seq("cursor", row.int("cursor")?)?);
    }
    batch
        .iter()
        .map(|request| {
            cursors.get(&request.row.id).copied().ok_or_else(|| {
                StoreError::Corrupt(format!("no cursor returned for {}", request.row.id))
            })
        })
        .collect()
}
