//! The subscription lifecycle's writes as one statement per batch (see
//! [`super::super::group_commit`] for the group commit that batches them): the rows go as one
//! JSON array, so a batch costs one trip to the driver's worker thread and one fsync however
//! many Subscribes, Renews or Unsubscribes it holds.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::sqlite::SqlitePool;
use tokio::sync::OwnedMutexGuard;

use super::super::StoreError;
use super::super::codec::subscription_columns;
use super::super::group_commit::Commit;
use super::super::pulls::PulledCursor;
use super::super::subscription_writes::{
    Ending, NewSubscription, PullAdvance, Renewal, advanced, cursors_in_order, ended, renewed,
};
use super::WriteTurns;
use crate::domain::subscription::Subscription;

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
     FROM jsonb_each(?1) WHERE true
     RETURNING id, cursor"
);

/// Sets the expiry of each subscription of a JSON array of `[id, expires_at, kind, now]` that
/// is active and unexpired at its `now`.
const RENEW_BATCH: &str = "UPDATE subscriptions
     SET expires_at = json_extract(r.value, '$[1]'), expiry_kind = json_extract(r.value, '$[2]')
     FROM jsonb_each(?1) AS r
     WHERE subscriptions.id = json_extract(r.value, '$[0]') AND status = 'active'
       AND (expires_at IS NULL OR expires_at > json_extract(r.value, '$[3]'))
     RETURNING subscriptions.id AS id";

/// Ends each subscription of a JSON array of `[id, reason, now]` that is active and unexpired
/// at its `now`, queueing its SubscriptionEnd when it has an EndTo, so the
/// notice cannot be lost or doubled.
const END_BATCH: &str = concat!(
    "UPDATE subscriptions
     SET status = 'ended', end_reason = json_extract(e.value, '$[1]'),
         ended_at = json_extract(e.value, '$[2]'),
         end_notice = CASE WHEN end_to IS NULL THEN NULL ELSE 'pending' END,
         end_next_at = json_extract(e.value, '$[2]')
     FROM jsonb_each(?1) AS e
     WHERE subscriptions.id = json_extract(e.value, '$[0]') AND status = 'active'
       AND (expires_at IS NULL OR expires_at > json_extract(e.value, '$[2]'))
     RETURNING ",
    subscription_columns!()
);

/// Writes batches under the store's writer lock.
#[derive(Clone)]
pub(super) struct SqliteBatches {
    /// The store's writer connection.
    pub writer: SqlitePool,
    pub write: Arc<WriteTurns>,
}

/// New subscriptions.
pub(super) struct SqliteInserts(pub SqliteBatches);

/// Renewals.
pub(super) struct SqliteRenewals(pub SqliteBatches);

/// Ends.
pub(super) struct SqliteEnds(pub SqliteBatches);

impl SqliteBatches {
    /// The four committers, sharing the writer connection and its lock.
    pub fn committers(
        self,
    ) -> (
        SqliteInserts,
        SqliteRenewals,
        SqliteEnds,
        SqlitePullAdvances,
    ) {
        (
            SqliteInserts(self.clone()),
            SqliteRenewals(self.clone()),
            SqliteEnds(self.clone()),
            SqlitePullAdvances(self),
        )
    }

    /// The writer lock, a group commit's turn (see [`Commit::turn`]).
    pub(super) async fn turn(&self) -> Option<OwnedMutexGuard<()>> {
        Some(self.write.lock_owned().await)
    }

    /// Runs `statement` with `rows` (one JSON array) under the writer lock: one statement is
    /// one transaction, all of the batch or none of it.
    pub(super) async fn run(
        &self,
        statement: &'static str,
        rows: Vec<Value>,
    ) -> Result<Vec<sqlx::sqlite::SqliteRow>, StoreError> {
        let rows = Value::Array(rows).to_string();
        let _writing = self.write.lock().await;
        Ok(sqlx::query(statement)
            .bind(rows)
            .fetch_all(&self.writer)
            .await?)
    }
}

/// One request as a JSON array in [`INSERT_BATCH`]'s order.
fn encode(request: &NewSubscription) -> Value {
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
impl Commit for SqliteInserts {
    type Write = NewSubscription;
    type Answer = u64;

    fn row(write: &NewSubscription) -> Option<&str> {
        Some(&write.row.id)
    }

    async fn commit(&self, batch: &[NewSubscription]) -> Result<Vec<u64>, StoreError> {
        let inserted = self
            .0
            .run(INSERT_BATCH, batch.iter().map(encode).collect())
            .await?;
        cursors_in_order(batch, &inserted)
    }
}

#[async_trait]
impl Commit for SqliteRenewals {
    type Write = Renewal;
    type Answer = bool;

    fn row(write: &Renewal) -> Option<&str> {
        Some(&write.id)
    }

    async fn commit(&self, batch: &[Renewal]) -> Result<Vec<bool>, StoreError> {
        let rows = batch
            .iter()
            .map(|r| json!([r.id, r.expires_at, r.kind, r.now]))
            .collect();
        renewed(batch, &self.0.run(RENEW_BATCH, rows).await?)
    }
}

#[async_trait]
impl Commit for SqliteEnds {
    type Write = Ending;
    type Answer = Option<Subscription>;

    fn row(write: &Ending) -> Option<&str> {
        Some(&write.id)
    }

    async fn commit(&self, batch: &[Ending]) -> Result<Vec<Option<Subscription>>, StoreError> {
        let rows = batch
            .iter()
            .map(|e| json!([e.id, e.reason, e.now]))
            .collect();
        ended(batch, &self.0.run(END_BATCH, rows).await?)
    }
}

/// Moves each pulled subscription of a JSON array of `[id, position, now]`, active and
/// unexpired at its `now`, forward to `position` when that is not past its log's head; returns
/// each one's cursor and head.
const ADVANCE_BATCH: &str = "UPDATE subscriptions SET cursor = CASE
         WHEN cursor < json_extract(p.value, '$[1]') AND json_extract(p.value, '$[1]') <= COALESCE(
             (SELECT h.last_seq FROM source_heads h WHERE h.source = subscriptions.source), 0)
         THEN json_extract(p.value, '$[1]') ELSE cursor END
     FROM jsonb_each(?1) AS p
     WHERE subscriptions.id = json_extract(p.value, '$[0]') AND status = 'active'
       AND (expires_at IS NULL OR expires_at > json_extract(p.value, '$[2]'))
     RETURNING subscriptions.id AS id, cursor, COALESCE(
         (SELECT h.last_seq FROM source_heads h WHERE h.source = subscriptions.source), 0) AS head";

/// Pulls' advances.
pub(super) struct SqlitePullAdvances(pub SqliteBatches);

#[async_trait]
impl Commit for SqlitePullAdvances {
    type Write = PullAdvance;
    type Answer = Option<PulledCursor>;

    fn row(write: &PullAdvance) -> Option<&str> {
        Some(&write.id)
    }

    async fn commit(&self, batch: &[PullAdvance]) -> Result<Vec<Option<PulledCursor>>, StoreError> {
        let rows = batch
            .iter()
            .map(|p| json!([p.id, p.position, p.now]))
            .collect();
        advanced(batch, &self.0.run(ADVANCE_BATCH, rows).await?)
    }
}
