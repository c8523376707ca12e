//! Group commit of the small writes of invocations and agents: raises, completions (with their
//! agent messages) and acks or nacks that arrive together share one transaction and one fsync,
//! as published events and new subscriptions do. Should a batch fail, its writes are retried one
//! by one, so one bad write cannot refuse the others.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::super::codec::{corrupt, duration_millis, millis, seq_column};
use super::super::queues::{
    ACK, CLAIM_KEY, Completed, ENQUEUE, FINISH, INSERT_INVOCATION, KEY_OWNER, NACK,
    encode_parameters, parse_receipt,
};
use super::super::{StoreError, sql::Sql};
use super::statements::{append_in, wall_clock_millis};
use crate::domain::invocation::{Completion, Invocation, InvocationId};
use crate::domain::subscription::SourceName;

/// Most writes committed in one transaction.
pub(super) const MAX_QUEUE_BATCH: usize = 256;

/// Whether an invocation is running on a node, checked before its completion writes anything.
static OWNED: Sql =
    Sql::new("SELECT 1 FROM invocations WHERE id = $1 AND owner = $2 AND state = 'running'");

/// A write waiting for the next group commit.
pub(super) enum QueueWrite {
    Raise {
        invocation: Invocation,
        window_start: Timestamp,
        reply: oneshot::Sender<Result<(InvocationId, bool), StoreError>>,
    },
    Complete {
        id: InvocationId,
        node: String,
        completion: Completion,
        now: Timestamp,
        reply: oneshot::Sender<Result<Completed, StoreError>>,
    },
    Settle {
        agent: SourceName,
        receipt: String,
        back_after: Option<Duration>,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
}

/// What one write answers.
enum Answer {
    Raised((InvocationId, bool)),
    Completed(Completed),
    Settled(bool),
}

impl QueueWrite {
    fn answer(self, result: Result<Answer, StoreError>) {
        match (self, result) {
            (QueueWrite::Raise { reply, .. }, Ok(Answer::Raised(raised))) => {
                let _ = reply.send(Ok(raised));
            }
            (QueueWrite::Complete { reply, .. }, Ok(Answer::Completed(completed))) => {
                let _ = reply.send(Ok(completed));
            }
            (QueueWrite::Settle { reply, .. }, Ok(Answer::Settled(settled))) => {
                let _ = reply.send(Ok(settled));
            }
            (QueueWrite::Raise { reply, .. }, Err(err)) => {
                let _ = reply.send(Err(err));
            }
            (QueueWrite::Complete { reply, .. }, Err(err)) => {
                let _ = reply.send(Err(err));
            }
            (QueueWrite::Settle { reply, .. }, Err(err)) => {
                let _ = reply.send(Err(err));
            }
            (write, Ok(_)) => write.answer(Err(StoreError::Corrupt("mismatched answer".into()))),
        }
    }

    async fn apply(&self, tx: &mut SqliteConnection) -> Result<Answer, StoreError> {
        match self {
            QueueWrite::Raise {
                invocation,
                window_start,
                ..
            } => raise_in(tx, invocation, *window_start)
                .await
                .map(Answer::Raised),
            QueueWrite::Complete {
                id,
                node,
                completion,
                now,
                ..
            } => complete_in(tx, *id, node, completion, *now)
                .await
                .map(Answer::Completed),
            QueueWrite::Settle {
                agent,
                receipt,
                back_after,
                ..
            } => settle_in(tx, agent, receipt, *back_after)
                .await
                .map(Answer::Settled),
        }
    }
}

/// Commits queue writes in batches: whatever has queued while the previous commit ran goes into
/// the next transaction.
pub(super) async fn queue_batches(
    pool: SqlitePool,
    write: Arc<Mutex<()>>,
    mut requests: mpsc::Receiver<QueueWrite>,
    closing: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            request = requests.recv() => match request {
                Some(request) => request,
                None => return,
            },
            () = closing.cancelled() => {
                requests.close();
                while let Ok(request) = requests.try_recv() {
                    request.answer(Err(StoreError::Closed));
                }
                return;
            }
        };
        let mut batch = vec![first];
        let _writing = write.lock().await;
        while batch.len() < MAX_QUEUE_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        if batch.len() > 1
            && let Ok(answers) = apply_all(&pool, &batch).await
        {
            for (request, answer) in batch.into_iter().zip(answers) {
                request.answer(Ok(answer));
            }
            continue;
        }
        for request in batch {
            let answer = apply_all(&pool, std::slice::from_ref(&request))
                .await
                .and_then(|mut answers| {
                    answers
                        .pop()
                        .ok_or_else(|| StoreError::Corrupt("no answer".into()))
                });
            request.answer(answer);
        }
    }
}

async fn apply_all(pool: &SqlitePool, batch: &[QueueWrite]) -> Result<Vec<Answer>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut answers = Vec::with_capacity(batch.len());
    for write in batch {
        answers.push(write.apply(&mut tx).await?);
    }
    tx.commit().await?;
    Ok(answers)
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
