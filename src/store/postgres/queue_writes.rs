//! Group commit of the small writes of invocations and agents (see
//! [`super::super::group_commit`]): raises, completions (with their agent messages) and acks or
//! nacks that arrive together go in one statement, each kind's rows as arrays: one round trip
//! and one commit for the whole batch, however many writes it holds.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use super::super::codec::{corrupt, duration_millis, millis};
use super::super::group_commit::Commit;
use super::super::queues::{Completed, QueueAnswer, QueueWrite, encode_parameters, parse_receipt};
use super::super::{StoreError, number_events_with};
use super::batch_writes::PgBatches;
use crate::domain::event::EventId;
use crate::domain::invocation::InvocationId;

/// A batch of queue writes in one statement, its own transaction; each row carries its write's
/// place in the batch (`ord`).
///
/// Raises (`$1`–`$8`): each key is claimed for its new invocation unless the invocation it
/// names was raised at or after the raise's window start; the claim answers with the key's
/// invocation either way (a key kept is rewritten unchanged, so the answer and the lock come
/// from the same row), and a raise whose claim names it is stored, pending and due at once.
///
/// Completions (`$9`–`$21`): those of an invocation running on their node (locked until
/// commit, so no other node takes it meanwhile) append their messages to their agents' logs
/// (each head moved on once, in name order, as a publish's append does), queue them for pull
/// listeners where asked, and end their invocations.
///
/// Settles (`$22`–`$26`): an ack (no delay) deletes the queue entry its receipt leases, a nack
/// puts it back, visible after the delay on the database's clock.
///
/// Each appended log's new head is announced on NOTIFY channel `$27` at commit. Returns the
/// place of each raise with its key's invocation, of each completion recorded with its
/// message's sequence number (if any), and of each settle that found its entry. A batch never
/// holds one key's raises or one receipt's settles twice ([`Commit::row`]), nor one node's
/// completions of one invocation twice (the later ones are answered as not owned), so its
/// parts never meet one row.
const QUEUE_BATCH: &str = concat!(
    "WITH r AS (
         SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[],
                              $6::BIGINT[], $7::BIGINT[], $8::BIGINT[])
             AS r(id, invoker, event_key, payload, parameters, raised_at, window_start, ord)),
     claimed AS (
         INSERT INTO invocation_keys AS k (invoker, event_key, invocation_id, raised_at)
         SELECT invoker, event_key, id, raised_at FROM r
         ON CONFLICT (invoker, event_key) DO UPDATE
         SET invocation_id = CASE WHEN k.raised_at < (
                 SELECT w.window_start FROM r AS w
                 WHERE w.invoker = excluded.invoker AND w.event_key = excluded.event_key)
                 THEN excluded.invocation_id ELSE k.invocation_id END,
             raised_at = CASE WHEN k.raised_at < (
                 SELECT w.window_start FROM r AS w
                 WHERE w.invoker = excluded.invoker AND w.event_key = excluded.event_key)
                 THEN excluded.raised_at ELSE k.raised_at END
         RETURNING invoker, event_key, invocation_id),
     raised AS (
         INSERT INTO invocations (id, invoker, event_key, payload, parameters, raised_at, state,
                                  next_at)
         SELECT r.id, r.invoker, r.event_key, r.payload, r.parameters, r.raised_at, 'pending',
                r.raised_at
         FROM r JOIN claimed AS k
             ON k.invoker = r.invoker AND k.event_key = r.event_key AND k.invocation_id = r.id),
     c AS (
         SELECT * FROM UNNEST($9::TEXT[], $10::TEXT[], $11::TEXT[], $12::TEXT[], $13::TEXT[],
                              $14::TEXT[], $15::TEXT[], $16::TEXT[], $17::TEXT[], $18::BOOL[],
                              $19::TEXT[], $20::BIGINT[], $21::BIGINT[])
             AS c(id, node, state, response, error, agent, event_id, action, payload, pull,
                  correlation_id, at, ord)),
     owned AS (
         SELECT c.* FROM c
         JOIN invocations AS i ON i.id = c.id AND i.owner = c.node AND i.state = 'running'
         FOR UPDATE OF i),
     messages AS (
         SELECT o.*, count(*) OVER (PARTITION BY o.agent) AS n,
                row_number() OVER (PARTITION BY o.agent ORDER BY o.ord) - 1 AS place
         FROM owned AS o WHERE o.agent IS NOT NULL),
     heads AS (
         INSERT INTO source_heads (source, last_seq)
         SELECT agent, count(*) FROM messages GROUP BY agent ORDER BY agent
         ON CONFLICT (source) DO UPDATE SET last_seq = source_heads.last_seq + excluded.last_seq
         RETURNING source, last_seq),
     numbered AS (
         SELECT m.*, h.last_seq - m.n + 1 + m.place AS seq
         FROM messages AS m JOIN heads AS h ON h.source = m.agent),
     appended AS (
         INSERT INTO events (source, seq, id, action, payload, published_at)
         SELECT agent, seq, event_id, action, payload, at FROM numbered),
     queued AS (
         INSERT INTO agent_queue (agent, seq, correlation_id, visible_at)
         SELECT agent, seq, correlation_id, 0 FROM numbered WHERE pull),
     finished AS (
         UPDATE invocations AS i
         SET state = o.state, response = o.response, last_error = COALESCE(o.error, i.last_error),
             agent = o.agent, agent_seq = m.seq, finished_at = o.at, next_at = NULL
         FROM owned AS o LEFT JOIN numbered AS m ON m.ord = o.ord
         WHERE i.id = o.id AND i.owner = o.node AND i.state = 'running'),
     s AS (
         SELECT * FROM UNNEST($22::TEXT[], $23::BIGINT[], $24::TEXT[], $25::BIGINT[],
                              $26::BIGINT[])
             AS s(agent, seq, lease, back_ms, ord)),
     acked AS (
         DELETE FROM agent_queue AS q USING s
         WHERE s.back_ms IS NULL AND q.agent = s.agent AND q.seq = s.seq AND q.receipt = s.lease
         RETURNING s.ord),
     nacked AS (
         UPDATE agent_queue AS q SET visible_at = ",
    db_now!(),
    " + s.back_ms, receipt = NULL
         FROM s
         WHERE s.back_ms IS NOT NULL AND q.agent = s.agent AND q.seq = s.seq
           AND q.receipt = s.lease
         RETURNING s.ord)
     SELECT r.ord, k.invocation_id, NULL::BIGINT AS seq, NULL::TEXT AS announced
     FROM r JOIN claimed AS k ON k.invoker = r.invoker AND k.event_key = r.event_key
     UNION ALL
     SELECT o.ord, NULL, m.seq, NULL FROM owned AS o LEFT JOIN numbered AS m ON m.ord = o.ord
     UNION ALL
     SELECT ord, NULL, NULL, NULL FROM acked
     UNION ALL
     SELECT ord, NULL, NULL, NULL FROM nacked
     UNION ALL
     SELECT NULL, NULL, NULL, pg_notify($27, 'a:' || source || ':' || last_seq)::TEXT
     FROM heads"
);

/// Writes batches of queue writes (group commit): one statement, one round trip, one commit.
/// A write that fails fails its batch, which is then retried one write at a time.
pub(super) struct PgQueueWrites(pub PgBatches);

#[async_trait]
impl Commit for PgQueueWrites {
    type Write = QueueWrite;
    type Answer = QueueAnswer;

    /// A raise's key (two raises of one key must see each other's claim) and a settle's
    /// receipt; a completion needs none (see [`QUEUE_BATCH`]).
    fn row(write: &QueueWrite) -> Option<&str> {
        match write {
            QueueWrite::Raise { invocation, .. } => Some(&invocation.key),
            QueueWrite::Settle { receipt, .. } => Some(receipt),
            QueueWrite::Complete { .. } => None,
        }
    }

    async fn commit(&self, batch: &[QueueWrite]) -> Result<Vec<QueueAnswer>, StoreError> {
        let columns = BatchColumns::of(batch);
        let rows: Vec<(Option<i64>, Option<String>, Option<i64>, Option<String>)> =
            sqlx::query_as(QUEUE_BATCH)
                .bind(&columns.raise_id)
                .bind(&columns.raise_invoker)
                .bind(&columns.raise_key)
                .bind(&columns.raise_payload)
                .bind(&columns.raise_parameters)
                .bind(&columns.raise_at)
                .bind(&columns.raise_window_start)
                .bind(&columns.raise_ord)
                .bind(&columns.complete_id)
                .bind(&columns.complete_node)
                .bind(&columns.complete_state)
                .bind(&columns.complete_response)
                .bind(&columns.complete_error)
                .bind(&columns.complete_agent)
                .bind(&columns.complete_event_id)
                .bind(&columns.complete_action)
                .bind(&columns.complete_payload)
                .bind(&columns.complete_pull)
                .bind(&columns.complete_correlation_id)
                .bind(&columns.complete_at)
                .bind(&columns.complete_ord)
                .bind(&columns.settle_agent)
                .bind(&columns.settle_seq)
                .bind(&columns.settle_lease)
                .bind(&columns.settle_back_ms)
                .bind(&columns.settle_ord)
                .bind(&self.0.channel)
                .fetch_all(&self.0.pool)
                .await?;
        let found: HashMap<i64, (Option<String>, Option<i64>)> = rows
            .into_iter()
            .filter_map(|(ord, id, seq, _)| Some((ord?, (id, seq))))
            .collect();
        batch
            .iter()
            .enumerate()
            .map(|(ord, write)| {
                let ord = place(ord);
                columns.answer(ord, write, found.get(&ord))
            })
            .collect()
    }
}

/// A write's place in its batch, as the statement carries it.
fn place(ord: usize) -> i64 {
    i64::try_from(ord).unwrap_or(i64::MAX)
}

/// A batch's writes as the columns [`QUEUE_BATCH`] unnests, and the ids given to their messages.
#[derive(Default)]
struct BatchColumns<'a> {
    raise_id: Vec<String>,
    raise_invoker: Vec<&'a str>,
    raise_key: Vec<&'a str>,
    raise_payload: Vec<&'a str>,
    raise_parameters: Vec<String>,
    raise_at: Vec<i64>,
    raise_window_start: Vec<i64>,
    raise_ord: Vec<i64>,
    complete_id: Vec<String>,
    complete_node: Vec<&'a str>,
    complete_state: Vec<&'static str>,
    complete_response: Vec<Option<&'a str>>,
    complete_error: Vec<Option<&'a str>>,
    complete_agent: Vec<Option<&'a str>>,
    complete_event_id: Vec<Option<String>>,
    complete_action: Vec<Option<&'a str>>,
    complete_payload: Vec<Option<&'a str>>,
    complete_pull: Vec<bool>,
    complete_correlation_id: Vec<Option<&'a str>>,
    complete_at: Vec<i64>,
    complete_ord: Vec<i64>,
    settle_agent: Vec<&'a str>,
    settle_seq: Vec<i64>,
    settle_lease: Vec<&'a str>,
    settle_back_ms: Vec<Option<i64>>,
    settle_ord: Vec<i64>,
    /// Each completion's message id, by place.
    event_ids: HashMap<i64, EventId>,
}

impl<'a> BatchColumns<'a> {
    fn of(batch: &'a [QueueWrite]) -> BatchColumns<'a> {
        let mut c = BatchColumns::default();
        let mut completing = HashSet::new();
        for (ord, write) in batch.iter().enumerate() {
            let ord = place(ord);
            match write {
                QueueWrite::Raise {
                    invocation,
                    window_start,
                } => {
                    c.raise_id.push(invocation.id.to_string());
                    c.raise_invoker.push(invocation.invoker.as_str());
                    c.raise_key.push(&invocation.key);
                    c.raise_payload.push(&invocation.payload);
                    c.raise_parameters
                        .push(encode_parameters(&invocation.parameters));
                    c.raise_at.push(millis(invocation.raised_at));
                    c.raise_window_start.push(millis(*window_start));
                    c.raise_ord.push(ord);
                }
                QueueWrite::Complete {
                    id,
                    node,
                    completion,
                    now,
                } => {
                    // A node's second completion of one invocation would find it ended: left
                    // out, it is answered as not owned.
                    if !completing.insert((*id, node.as_str())) {
                        continue;
                    }
                    let message = completion.message.as_ref();
                    let event_id = message.map(|_| EventId::new());
                    if let Some(event_id) = event_id {
                        c.event_ids.insert(ord, event_id);
                    }
                    c.complete_id.push(id.to_string());
                    c.complete_node.push(node);
                    c.complete_state.push(completion.state.as_str());
                    c.complete_response.push(completion.response.as_deref());
                    c.complete_error.push(completion.error.as_deref());
                    c.complete_agent.push(message.map(|m| m.agent.as_str()));
                    c.complete_event_id.push(event_id.map(|e| e.to_string()));
                    c.complete_action
                        .push(message.map(|m| m.event.action.as_str()));
                    c.complete_payload
                        .push(message.map(|m| m.event.payload.as_str()));
                    c.complete_pull.push(message.is_some_and(|m| m.pull));
                    c.complete_correlation_id
                        .push(message.map(|m| m.correlation_id.as_str()));
                    c.complete_at.push(millis(*now));
                    c.complete_ord.push(ord);
                }
                QueueWrite::Settle {
                    agent,
                    receipt,
                    back_after,
                } => {
                    // A receipt that leases nothing finds nothing: left out, answered false.
                    let Some((seq, lease)) = parse_receipt(receipt) else {
                        continue;
                    };
                    c.settle_agent.push(agent.as_str());
                    c.settle_seq.push(seq);
                    c.settle_lease.push(lease);
                    c.settle_back_ms.push(back_after.map(duration_millis));
                    c.settle_ord.push(ord);
                }
            }
        }
        c
    }

    /// The answer to `write`, at place `ord` in the batch, from its row in the statement's
    /// answer (`found`), if any.
    fn answer(
        &self,
        ord: i64,
        write: &QueueWrite,
        found: Option<&(Option<String>, Option<i64>)>,
    ) -> Result<QueueAnswer, StoreError> {
        Ok(match write {
            QueueWrite::Raise { invocation, .. } => {
                let Some((Some(named), _)) = found else {
                    return Err(StoreError::Corrupt(format!(
                        "the raise of key {} was not answered",
                        invocation.key
                    )));
                };
                let id =
                    InvocationId::parse(named).ok_or_else(|| corrupt("invocation_id", named))?;
                QueueAnswer::Raised((id, id == invocation.id))
            }
            QueueWrite::Complete {
                id,
                completion,
                now,
                ..
            } => QueueAnswer::Completed(match (found, &completion.message) {
                (None, _) => Completed::NotOwned,
                (Some(_), None) => Completed::Recorded(None),
                (Some((_, seq)), Some(message)) => {
                    let (Some(seq), Some(event_id)) = (seq, self.event_ids.get(&ord)) else {
                        return Err(StoreError::Corrupt(format!(
                            "invocation {id}'s message was not numbered"
                        )));
                    };
                    let event = std::slice::from_ref(&message.event);
                    let numbered =
                        number_events_with(&message.agent, event, [*event_id], *seq, *now);
                    Completed::Recorded(numbered.into_iter().next())
                }
            }),
            QueueWrite::Settle { .. } => QueueAnswer::Settled(found.is_some()),
        })
    }
}
