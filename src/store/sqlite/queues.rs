//! Invocations and agents' queues in the embedded store. Writers take turns on the store's
//! write lock, so each statement below sees no concurrent writer.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::super::codec::{decode_event, duration_millis, millis, seq_column, timestamp};
use super::super::queues::{
    Completed, DEPTHS, INVOCATION, QueueWrite, Queues, RECOVER, REOPEN, RETRY_LATER, decode_depth,
    decode_invocation, invocation_columns, receipt,
};
use super::super::{NodeId, StoreError};
use super::SqliteStore;
use super::statements::wall_clock_millis;
use crate::domain::invocation::{
    Completion, Invocation, InvocationId, InvocationRecord, Leased, QueueDepth,
};
use crate::domain::subscription::SourceName;

/// Due pending invocations whose key is not running, and running ones of nodes whose lease
/// lapsed; at most one per key (the earliest due). Each part is read through its index, up to
/// the limit, before keys are told apart.
pub(super) const CLAIM: &str = concat!(
    "UPDATE invocations SET owner = ?1,
         resumed = resumed + CASE WHEN state = 'running' THEN 1 ELSE 0 END, state = 'running'
     WHERE id IN (
         SELECT id FROM (
             SELECT c.id, c.next_at, ROW_NUMBER() OVER (
                 PARTITION BY c.event_key ORDER BY c.next_at, c.id) AS nth
             FROM (
                 SELECT * FROM (
                     SELECT i.id, i.event_key, i.next_at FROM invocations i
                     WHERE i.invoker = ?2 AND i.state = 'pending' AND i.next_at <= ?3
                       AND NOT EXISTS (
                           SELECT 1 FROM invocations b
                           WHERE b.invoker = i.invoker AND b.event_key = i.event_key
                             AND b.state = 'running')
                     ORDER BY i.next_at, i.id LIMIT +?5)
                 UNION ALL
                 SELECT * FROM (
                     SELECT i.id, i.event_key, i.next_at FROM invocations i
                     WHERE i.invoker = ?2 AND i.state = 'running' AND i.owner <> ?1
                       AND NOT EXISTS (
                           SELECT 1 FROM nodes n WHERE n.id = i.owner AND n.lease_until >= ?4)
                     LIMIT +?5)) AS c)
         WHERE nth = 1 ORDER BY next_at, id LIMIT +?5)
     RETURNING ",
    invocation_columns!()
);

/// Leases visible entries: `?1` agent, `?2` now, `?3` correlation id or NULL, `?4` until,
/// `?5` lease, `?6` limit.
pub(super) const RECEIVE: &str = "UPDATE agent_queue SET visible_at = ?4, receipt = ?5,
                           deliveries = deliveries + 1
     WHERE agent = ?1 AND seq IN (
         SELECT seq FROM agent_queue
         WHERE agent = ?1 AND visible_at <= ?2 AND (?3 IS NULL OR correlation_id = ?3)
         ORDER BY seq LIMIT +?6)
     RETURNING seq, deliveries";

/// The events at the given sequence numbers (a JSON array) of one log.
const EVENTS_AT: &str = "SELECT source, seq, id, action, payload, published_at FROM events
     WHERE source = ?1 AND seq IN (SELECT value FROM json_each(?2)) ORDER BY seq";

#[async_trait]
impl Queues for SqliteStore {
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
        let _writing = self.write.lock().await;
        let result = sqlx::query(RECOVER.sqlite())
            .bind(node.as_str())
            .bind(millis(now))
            .execute(&self.writer)
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
        let _writing = self.write.lock().await;
        let rows = sqlx::query(CLAIM)
            .bind(node.as_str())
            .bind(invoker.as_str())
            .bind(millis(now))
            .bind(wall_clock_millis())
            .bind(i64::from(limit))
            .fetch_all(&self.writer)
            .await?;
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
        let _writing = self.write.lock().await;
        let result = sqlx::query(RETRY_LATER.sqlite())
            .bind(id.to_string())
            .bind(node.as_str())
            .bind(i64::from(record.attempts))
            .bind(record.next_at.map(millis))
            .bind(record.failing_since.map(millis))
            .bind(record.last_error.as_deref())
            .execute(&self.writer)
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
        let _writing = self.write.lock().await;
        let result = sqlx::query(REOPEN.sqlite())
            .bind(id.to_string())
            .bind(millis(now))
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn invocation(&self, id: InvocationId) -> Result<Option<InvocationRecord>, StoreError> {
        let row = sqlx::query(INVOCATION.sqlite())
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
        let now = wall_clock_millis();
        let until = now.saturating_add(duration_millis(visibility));
        let leased: Vec<(i64, i64)> = {
            let _writing = self.write.lock().await;
            sqlx::query_as(RECEIVE)
                .bind(agent.as_str())
                .bind(now)
                .bind(correlation_id)
                .bind(until)
                .bind(&lease)
                .bind(i64::from(limit))
                .fetch_all(&self.writer)
                .await?
        };
        if leased.is_empty() {
            return Ok(Vec::new());
        }
        let seqs = serde_json::to_string(&leased.iter().map(|(seq, _)| *seq).collect::<Vec<_>>())
            .unwrap_or_else(|_| "[]".into());
        let rows = sqlx::query(EVENTS_AT)
            .bind(agent.as_str())
            .bind(seqs)
            .fetch_all(&self.writer)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let event = decode_event(row)?;
            let deliveries = leased
                .iter()
                .find(|(seq, _)| *seq == seq_column(event.seq))
                .map_or(1, |(_, n)| u32::try_from(*n).unwrap_or(u32::MAX));
            out.push(Leased {
                receipt: receipt(event.seq, &lease),
                event,
                deliveries,
                visible_at: timestamp(until)?,
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
        let rows = sqlx::query(DEPTHS.sqlite())
            .bind(wall_clock_millis())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_depth).collect()
    }
}
