//! Invocations and agents' queues in PostgreSQL. Claims and leases skip rows another node
//! holds locked (`FOR UPDATE SKIP LOCKED`), so two nodes never take the same row.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::super::codec::{decode_event, duration_millis, millis, seq_column, timestamp};
use super::super::queues::{
    Completed, INVOCATION, QueueWrite, Queues, RECOVER, REOPEN, RETRY_LATER, decode_depth,
    decode_invocation, invocation_columns, is_unique_violation, receipt,
};
use super::super::{NodeId, StoreError};
use super::PostgresStore;
use crate::domain::invocation::{
    Completion, Invocation, InvocationId, InvocationRecord, Leased, QueueDepth,
};
use crate::domain::subscription::SourceName;

/// Candidates to claim, locked: due pending invocations whose key is not running, and running
/// ones of nodes whose lease lapsed. Each part is read through its index in due order and
/// stops at the limit (an `OR` of the two read every pending row of the invoker and sorted
/// them, each claim); rows other nodes hold locked are skipped.
const CANDIDATES: &str = concat!(
    "WITH due AS (
         SELECT i.id, i.event_key, i.next_at FROM invocations i
         WHERE i.invoker = $2 AND i.state = 'pending' AND i.next_at <= $3
           AND NOT EXISTS (
               SELECT 1 FROM invocations b
               WHERE b.invoker = i.invoker AND b.event_key = i.event_key
                 AND b.state = 'running' AND b.id <> i.id)
         ORDER BY i.next_at, i.id LIMIT $4
         FOR UPDATE OF i SKIP LOCKED),
     lapsed AS (
         SELECT i.id, i.event_key, i.next_at FROM invocations i
         WHERE i.invoker = $2 AND i.state = 'running' AND i.owner <> $1 AND NOT EXISTS (
             SELECT 1 FROM nodes n WHERE n.id = i.owner AND n.lease_until >= ",
    db_now!(),
    ")
         ORDER BY i.next_at, i.id LIMIT $4
         FOR UPDATE OF i SKIP LOCKED)
     SELECT id, event_key FROM (SELECT * FROM due UNION ALL SELECT * FROM lapsed) AS c
     ORDER BY next_at, id LIMIT $4"
);

/// Claims the chosen candidates.
const CLAIM: &str = concat!(
    "UPDATE invocations SET owner = $1,
         resumed = resumed + CASE WHEN state = 'running' THEN 1 ELSE 0 END, state = 'running'
     WHERE id = ANY($2)
     RETURNING ",
    invocation_columns!()
);

/// Leases visible entries: `$1` agent, `$2` correlation id or NULL, `$3` lease, `$4` limit,
/// `$5` the lease in milliseconds; measured on the database's clock.
const RECEIVE: &str = concat!(
    "UPDATE agent_queue SET visible_at = ",
    db_now!(),
    " + $5, receipt = $3, deliveries = deliveries + 1
     WHERE agent = $1 AND seq IN (
         SELECT seq FROM agent_queue
         WHERE agent = $1 AND visible_at <= ",
    db_now!(),
    " AND ($2::TEXT IS NULL OR correlation_id = $2)
         ORDER BY seq LIMIT $4
         FOR UPDATE SKIP LOCKED)
     RETURNING seq, deliveries, visible_at"
);

/// Queue entries and leases per agent, on the database's clock.
const DEPTHS_NOW: &str = concat!(
    "SELECT agent, COUNT(*) AS depth,
            SUM(CASE WHEN receipt IS NOT NULL AND visible_at > ",
    db_now!(),
    " THEN 1 ELSE 0 END) AS leased
     FROM agent_queue GROUP BY agent"
);

/// The events at the given sequence numbers of one log.
const EVENTS_AT: &str = "SELECT source, seq, id, action, payload, published_at FROM events
     WHERE source = $1 AND seq = ANY($2) ORDER BY seq";

#[async_trait]
impl Queues for PostgresStore {
    async fn raise_invocation(
        &self,
        invocation: &Invocation,
        window_start: Timestamp,
    ) -> Result<(InvocationId, bool), StoreError> {
        let write = QueueWrite::Raise {
            invocation: invocation.clone(),
            window_start,
        };
        self.queue_writes.submit(write).await?.raised()
    }

    async fn recover_invocations(&self, node: &NodeId, now: Timestamp) -> Result<u64, StoreError> {
        let result = sqlx::query(RECOVER.postgres())
            .bind(node.as_str())
            .bind(millis(now))
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn claim_invocations(
        &self,
        node: &NodeId,
        invoker: &SourceName,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<InvocationRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let candidates: Vec<(String, String)> = sqlx::query_as(CANDIDATES)
            .bind(node.as_str())
            .bind(invoker.as_str())
            .bind(millis(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        // One per key: the earliest due (candidates come in that order).
        let mut keys = std::collections::HashSet::new();
        let chosen: Vec<String> = candidates
            .into_iter()
            .filter(|(_, key)| keys.insert(key.clone()))
            .map(|(id, _)| id)
            .collect();
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        // A key another node set running since this statement's snapshot is refused by the
        // unique index: nothing is claimed this time, and the next poll sees it running.
        let rows = match sqlx::query(CLAIM)
            .bind(node.as_str())
            .bind(&chosen)
            .fetch_all(&mut *tx)
            .await
        {
            Ok(rows) => rows,
            Err(err) if is_unique_violation(&err) => return Ok(Vec::new()),
            Err(err) => return Err(err.into()),
        };
        tx.commit().await?;
        let mut claimed = rows
            .iter()
            .map(decode_invocation)
            .collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|record| (record.next_at, record.invocation.id));
        Ok(claimed)
    }

    async fn retry_invocation_later(
        &self,
        id: InvocationId,
        node: &NodeId,
        record: &InvocationRecord,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(RETRY_LATER.postgres())
            .bind(id.to_string())
            .bind(node.as_str())
            .bind(i64::from(record.attempts))
            .bind(record.next_at.map(millis))
            .bind(record.failing_since.map(millis))
            .bind(record.last_error.as_deref())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn complete_invocation(
        &self,
        id: InvocationId,
        node: &NodeId,
        completion: &Completion,
        now: Timestamp,
    ) -> Result<Completed, StoreError> {
        let write = QueueWrite::Complete {
            id,
            node: node.as_str().to_owned(),
            completion: completion.clone(),
            now,
        };
        self.queue_writes.submit(write).await?.completed()
    }

    async fn reopen_invocation(
        &self,
        id: InvocationId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(REOPEN.postgres())
            .bind(id.to_string())
            .bind(millis(now))
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn invocation(&self, id: InvocationId) -> Result<Option<InvocationRecord>, StoreError> {
        let row = sqlx::query(INVOCATION.postgres())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_invocation).transpose()
    }

    async fn receive(
        &self,
        agent: &SourceName,
        limit: u32,
        correlation_id: Option<&str>,
        visibility: Duration,
    ) -> Result<Vec<Leased>, StoreError> {
        let lease = crate::domain::random::uuid_v4().simple().to_string();
        let leased: Vec<(i64, i64, i64)> = sqlx::query_as(RECEIVE)
            .bind(agent.as_str())
            .bind(correlation_id)
            .bind(&lease)
            .bind(i64::from(limit))
            .bind(duration_millis(visibility))
            .fetch_all(&self.pool)
            .await?;
        if leased.is_empty() {
            return Ok(Vec::new());
        }
        let seqs: Vec<i64> = leased.iter().map(|(seq, _, _)| *seq).collect();
        let rows = sqlx::query(EVENTS_AT)
            .bind(agent.as_str())
            .bind(seqs)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let event = decode_event(row)?;
            let Some((_, deliveries, visible_at)) = leased
                .iter()
                .find(|(seq, _, _)| *seq == seq_column(event.seq))
            else {
                continue;
            };
            out.push(Leased {
                receipt: receipt(event.seq, &lease),
                event,
                deliveries: u32::try_from(*deliveries).unwrap_or(u32::MAX),
                visible_at: timestamp(*visible_at)?,
            });
        }
        Ok(out)
    }

    async fn settle(
        &self,
        agent: &SourceName,
        receipt: &str,
        back_after: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let write = QueueWrite::Settle {
            agent: agent.clone(),
            receipt: receipt.to_owned(),
            back_after,
        };
        self.queue_writes.submit(write).await?.settled()
    }

    async fn queue_depths(&self) -> Result<Vec<(SourceName, QueueDepth)>, StoreError> {
        let rows = sqlx::query(DEPTHS_NOW).fetch_all(&self.pool).await?;
        rows.iter().map(decode_depth).collect()
    }
}
