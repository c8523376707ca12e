//! Group commit of the small writes of invocations and agents (see
//! [`super::super::group_commit`]): raises, completions (with their agent messages) and acks or
//! nacks that arrive together share one transaction and one commit, applied one after another.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::PgConnection;

use super::super::StoreError;
use super::super::codec::{corrupt, duration_millis, millis, seq_column};
use super::super::group_commit::Commit;
use super::super::queues::{
    ACK, CLAIM_KEY, Completed, ENQUEUE, FINISH, INSERT_INVOCATION, KEY_OWNER, QueueAnswer,
    QueueWrite, encode_parameters, parse_receipt,
};
use super::appends::append_in;
use super::batch_writes::PgBatches;
use crate::domain::invocation::{Completion, Invocation, InvocationId};
use crate::domain::subscription::SourceName;

/// Locks an invocation running on a node until commit, before its completion writes anything.
const OWNED: &str =
    "SELECT 1 FROM invocations WHERE id = $1 AND owner = $2 AND state = 'running' FOR UPDATE";

/// Puts a leased message back, visible after `$4` milliseconds on the database's clock.
const NACK_AFTER: &str = concat!(
    "UPDATE agent_queue SET visible_at = ",
    db_now!(),
    " + $4, receipt = NULL WHERE agent = $1 AND seq = $2 AND receipt = $3"
);

/// Writes batches of queue writes (group commit): one transaction, each write's statements one
/// after another, one commit. A write that fails fails its batch, which is then retried one
/// write at a time.
pub(super) struct PgQueueWrites(pub PgBatches);

#[async_trait]
impl Commit for PgQueueWrites {
    type Write = QueueWrite;
    type Answer = QueueAnswer;

    fn row(_: &QueueWrite) -> Option<&str> {
        None
    }

    async fn commit(&self, batch: &[QueueWrite]) -> Result<Vec<QueueAnswer>, StoreError> {
        let mut tx = self.0.pool.begin().await?;
        let mut answers = Vec::with_capacity(batch.len());
        for write in batch {
            answers.push(match write {
                QueueWrite::Raise {
                    invocation,
                    window_start,
                } => QueueAnswer::Raised(raise_in(&mut tx, invocation, *window_start).await?),
                QueueWrite::Complete {
                    id,
                    node,
                    completion,
                    now,
                } => QueueAnswer::Completed(
                    complete_in(&mut tx, &self.0.channel, (*id, node), completion, *now).await?,
                ),
                QueueWrite::Settle {
                    agent,
                    receipt,
                    back_after,
                } => QueueAnswer::Settled(settle_in(&mut tx, agent, receipt, *back_after).await?),
            });
        }
        tx.commit().await?;
        Ok(answers)
    }
}

/// A raise: a new invocation unless its key was raised after `window_start` (then nothing is
/// written and the key's invocation named).
async fn raise_in(
    tx: &mut PgConnection,
    invocation: &Invocation,
    window_start: Timestamp,
) -> Result<(InvocationId, bool), StoreError> {
    let id = invocation.id.to_string();
    let claimed: Option<String> = sqlx::query_scalar(CLAIM_KEY.postgres())
        .bind(invocation.invoker.as_str())
        .bind(&invocation.key)
        .bind(&id)
        .bind(millis(invocation.raised_at))
        .bind(millis(window_start))
        .fetch_optional(&mut *tx)
        .await?;
    if claimed.is_none() {
        let existing: String = sqlx::query_scalar(KEY_OWNER.postgres())
            .bind(invocation.invoker.as_str())
            .bind(&invocation.key)
            .fetch_one(&mut *tx)
            .await?;
        let existing =
            InvocationId::parse(&existing).ok_or_else(|| corrupt("invocation_id", &existing))?;
        return Ok((existing, false));
    }
    sqlx::query(INSERT_INVOCATION.postgres())
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

/// A completion: nothing unless the invocation runs on `node` (locked until commit, so no
/// other node takes it meanwhile); then its agent message, announced on `channel`, and its end.
async fn complete_in(
    tx: &mut PgConnection,
    channel: &str,
    (id, node): (InvocationId, &str),
    completion: &Completion,
    now: Timestamp,
) -> Result<Completed, StoreError> {
    let owned: Option<i32> = sqlx::query_scalar(OWNED)
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
                channel,
                &message.agent,
                std::slice::from_ref(&message.event),
                now,
            )
            .await?
            .pop();
            if let (Some(event), true) = (&event, message.pull) {
                sqlx::query(ENQUEUE.postgres())
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
    let finished = sqlx::query(FINISH.postgres())
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
    if finished.rows_affected() != 1 {
        // Locked above: cannot happen; refuse the batch rather than keep its message.
        return Err(StoreError::Corrupt(format!(
            "invocation {id} changed under its lock"
        )));
    }
    Ok(Completed::Recorded(appended))
}

/// An ack (`back_after` `None`) or nack under a receipt.
async fn settle_in(
    tx: &mut PgConnection,
    agent: &SourceName,
    receipt: &str,
    back_after: Option<Duration>,
) -> Result<bool, StoreError> {
    let Some((seq, lease)) = parse_receipt(receipt) else {
        return Ok(false);
    };
    let result = match back_after {
        None => sqlx::query(ACK.postgres())
            .bind(agent.as_str())
            .bind(seq)
            .bind(lease),
        Some(delay) => sqlx::query(NACK_AFTER)
            .bind(agent.as_str())
            .bind(seq)
            .bind(lease)
            .bind(duration_millis(delay)),
    }
    .execute(&mut *tx)
    .await?;
    Ok(result.rows_affected() == 1)
}
