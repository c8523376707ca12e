//! Group commit of the small writes of invocations and agents (see
//! [`super::super::group_commit`]): raises, completions (with their agent messages) and acks or
//! nacks that arrive together share one transaction and one fsync, as published events and new
//! subscriptions do.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::SqliteConnection;

use super::super::codec::{corrupt, duration_millis, millis, seq_column};
use super::super::group_commit::Commit;
use super::super::queues::{
    ACK, CLAIM_KEY, Completed, ENQUEUE, FINISH, INSERT_INVOCATION, KEY_OWNER, NACK, QueueAnswer,
    QueueWrite, encode_parameters, parse_receipt,
};
use super::super::{StoreError, sql::Sql};
use super::batch_writes::SqliteBatches;
use super::statements::{append_in, wall_clock_millis};
use crate::domain::invocation::{Completion, Invocation, InvocationId};
use crate::domain::subscription::SourceName;

/// Whether an invocation is running on a node, checked before its completion writes anything.
static OWNED: Sql =
    Sql::new("SELECT 1 FROM invocations WHERE id = $1 AND owner = $2 AND state = 'running'");

/// Writes batches of queue writes (group commit): one transaction under the writer lock, each
/// write's statements one after another, one fsync.
pub(super) struct SqliteQueueWrites(pub SqliteBatches);

#[async_trait]
impl Commit for SqliteQueueWrites {
    type Write = QueueWrite;
    type Answer = QueueAnswer;

    fn row(_: &QueueWrite) -> Option<&str> {
        None
    }

    async fn turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        self.0.turn().await
    }

    async fn commit(&self, batch: &[QueueWrite]) -> Result<Vec<QueueAnswer>, StoreError> {
        let mut tx = self.0.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut answers = Vec::with_capacity(batch.len());
        for write in batch {
            answers.push(apply(&mut tx, write).await?);
        }
        tx.commit().await?;
        Ok(answers)
    }
}

async fn apply(tx: &mut SqliteConnection, write: &QueueWrite) -> Result<QueueAnswer, StoreError> {
    Ok(match write {
        QueueWrite::Raise {
            invocation,
            window_start,
        } => QueueAnswer::Raised(raise_in(tx, invocation, *window_start).await?),
        QueueWrite::Complete {
            id,
            node,
            completion,
            now,
        } => QueueAnswer::Completed(complete_in(tx, *id, node, completion, *now).await?),
        QueueWrite::Settle {
            agent,
            receipt,
            back_after,
        } => QueueAnswer::Settled(settle_in(tx, agent, receipt, *back_after).await?),
    })
}

/// A raise: a new invocation unless its key was raised after `window_start`.
async fn raise_in(
    tx: &mut SqliteConnection,
    invocation: &Invocation,
    window_start: Timestamp,
) -> Result<(InvocationId, bool), StoreError> {
    let id = invocation.id.to_string();
    let claimed: Option<String> = sqlx::query_scalar(CLAIM_KEY.sqlite())
        .bind(invocation.invoker.as_str())
        .bind(&invocation.key)
        .bind(&id)
        .bind(millis(invocation.raised_at))
        .bind(millis(window_start))
        .fetch_optional(&mut *tx)
        .await?;
    if claimed.is_none() {
        // The key's row is unchanged: nothing was written.
        let existing: String = sqlx::query_scalar(KEY_OWNER.sqlite())
            .bind(invocation.invoker.as_str())
            .bind(&invocation.key)
            .fetch_one(&mut *tx)
            .await?;
        let existing =
            InvocationId::parse(&existing).ok_or_else(|| corrupt("invocation_id", &existing))?;
        return Ok((existing, false));
    }
    sqlx::query(INSERT_INVOCATION.sqlite())
        .bind(&id)
        .bind(invocation.invoker.as_str())
        .bind(&invocation.key)
        .bind(&invocation.payload)
        .bind(encode_parameters(&invocation.parameters))
        .bind(millis(invocation.raised_at))
        .execute(&mut *tx)
        .await?;
    Ok((invocation.id, true))
}

/// A completion: nothing unless the invocation runs on `node`; then its message and its end.
async fn complete_in(
    tx: &mut SqliteConnection,
    id: InvocationId,
    node: &str,
    completion: &Completion,
    now: Timestamp,
) -> Result<Completed, StoreError> {
    let owned: Option<i64> = sqlx::query_scalar(OWNED.sqlite())
        .bind(id.to_string())
        .bind(node)
        .fetch_optional(&mut *tx)
        .await?;
    if owned.is_none() {
        return Ok(Completed::NotOwned);
    }
    let appended = match &completion.message {
        Some(message) => {
            let event = append_in(
                tx,
                &message.agent,
                std::slice::from_ref(&message.event),
                now,
            )
            .await?
            .pop();
            if let (Some(event), true) = (&event, message.pull) {
                sqlx::query(ENQUEUE.sqlite())
                    .bind(message.agent.as_str())
                    .bind(seq_column(event.seq))
                    .bind(&message.correlation_id)
                    .execute(&mut *tx)
                    .await?;
            }
            event
        }
        None => None,
    };
    sqlx::query(FINISH.sqlite())
        .bind(id.to_string())
        .bind(node)
        .bind(completion.state.as_str())
        .bind(completion.response.as_deref())
        .bind(completion.error.as_deref())
        .bind(appended.as_ref().map(|e| e.source.as_str().to_owned()))
        .bind(appended.as_ref().map(|e| seq_column(e.seq)))
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
    Ok(Completed::Recorded(appended))
}

/// An ack (`back_after` `None`) or nack under a receipt.
async fn settle_in(
    tx: &mut SqliteConnection,
    agent: &SourceName,
    receipt: &str,
    back_after: Option<Duration>,
) -> Result<bool, StoreError> {
    let Some((seq, lease)) = parse_receipt(receipt) else {
        return Ok(false);
    };
    let result = match back_after {
        None => sqlx::query(ACK.sqlite())
            .bind(agent.as_str())
            .bind(seq)
            .bind(lease),
        Some(delay) => sqlx::query(NACK.sqlite())
            .bind(agent.as_str())
            .bind(seq)
            .bind(lease)
            .bind(wall_clock_millis().saturating_add(duration_millis(delay))),
    }
    .execute(&mut *tx)
    .await?;
    Ok(result.rows_affected() == 1)
}
