//! The subscription lifecycle's writes as one statement per batch (see
//! [`super::super::group_commit`] for the group commit that batches them): new rows go as one
//! array of rows, the other writes' values as one array per column, so a batch costs one round
//! trip and one commit however many Subscribes, Renews or Unsubscribes it holds.

use async_trait::async_trait;
use sqlx::postgres::{PgBindIterExt, PgPool};

use super::super::StoreError;
use super::super::codec::subscription_columns;
use super::super::group_commit::Commit;
use super::super::pulls::PulledCursor;
use super::super::sql::{announce_ends, renewed_sweep_mark};
use super::super::subscription_writes::{
    Ending, NewSubscription, PullAdvance, Renewal, advanced, cursors_in_order, ended_at, renewed_at,
};
use super::insert_rows::InsertRow;
use super::session::Session;
use crate::domain::subscription::Ended;

/// Inserts the rows given as one array of `subscription_insert`; each starts at its given cursor
/// or at its log's head. Each row comes back with its id and cursor, read by position. (As one
/// row of two arrays, `array_agg` over a data-modifying `WITH`, they saved herald 1.8k
/// instructions per Subscribe but cost the server about 9% more per batch: BENCHMARKS.md,
/// thirty-third pass.)
const INSERT_BATCH: &str = concat!(
    "INSERT INTO subscriptions (",
    subscription_columns!(),
    ", status, owner, cursor, sweep_at)
     SELECT r.id, r.source, r.eventing, r.soap, r.addressing, r.notify_to, r.end_to,
            r.delivery_mode, r.format, r.filter, r.expires_at, r.expiry_kind, r.created_at,
            r.manager_address, r.log_kind, r.delivery, r.webhook, r.retry_interval_ms,
            r.retry_total, r.wsman, 'active', r.owner,
            COALESCE(r.start_after,
                     (SELECT last_seq FROM source_heads WHERE source = r.source), 0),
            r.expires_at
     FROM UNNEST($1::subscription_insert[]) AS r
     RETURNING id, cursor"
);

/// Sets each given expiry on a subscription active and unexpired at its `now`. Its sweep mark
/// moves only to an expiry nearer than the mark (or to none): a renewal that moves the expiry
/// later changes no indexed column, so the server can make it a heap-only update when the page
/// has room (see the migration `sweep_marks`). The renewals that took come back as their places
/// in the batch, one row each, read by position.
const RENEW_BATCH: &str = concat!(
    "UPDATE subscriptions s
     SET expires_at = r.new_expiry, expiry_kind = r.new_kind, sweep_at = ",
    renewed_sweep_mark!("s.sweep_at", "r.new_expiry"),
    "
     FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[]) WITH ORDINALITY
          AS r(renewed_id, new_expiry, new_kind, renewed_at, place)
     WHERE s.id = r.renewed_id AND s.status = 'active'
       AND (s.expires_at IS NULL OR s.expires_at > r.renewed_at)
     RETURNING r.place"
);

/// Ends each given subscription active and unexpired at its `now`, queueing its
/// SubscriptionEnd when it has an EndTo, and announces the ends on channel `$4` at commit
/// ([`announce_ends!`]). The endings that ended a subscription come back as their places in the
/// batch, each with its log and whether its SubscriptionEnd was queued, one row each, read by
/// position.
const END_BATCH: &str = concat!(
    "WITH ended AS (
         UPDATE subscriptions s
         SET status = 'ended', end_reason = e.why, ended_at = e.at,
             end_notice = CASE WHEN s.end_to IS NULL THEN NULL ELSE 'pending' END,
             end_next_at = e.at
         FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[]) WITH ORDINALITY
              AS e(ending_id, why, at, place)
         WHERE s.id = e.ending_id AND s.status = 'active'
           AND (s.expires_at IS NULL OR s.expires_at > e.at)
         RETURNING s.id, e.place, s.source, s.end_notice)
     SELECT place, source, end_notice IS NOT NULL, ",
    announce_ends!("$4", "ended"),
    " AS announced FROM ended"
);

/// A row an end batch returns: the place of an ending that ended a subscription, its log,
/// whether its SubscriptionEnd was queued, and the count of notifications that announced the
/// batch's ends.
type EndedRow = (i64, String, bool, Option<i64>);

/// Writes batches through the pool (autocommit: the statement is the transaction).
#[derive(Clone)]
pub(super) struct PgBatches {
    pub pool: PgPool,
    /// The NOTIFY channel ends are announced on.
    pub channel: String,
}

/// New subscriptions.
pub(super) struct PgInserts(Session);

/// Renewals.
pub(super) struct PgRenewals(Session);

/// Ends, announced on the NOTIFY channel.
pub(super) struct PgEnds(Session, String);

impl PgBatches {
    /// The lifecycle's four committers, each on a session of its own, taken from the pool and
    /// detached from it (autocommit: the statement is the transaction): see [`Session`].
    pub fn committers(&self) -> (PgInserts, PgRenewals, PgEnds, PgPullAdvances) {
        let session = || Session::new(self.pool.clone());
        (
            PgInserts(session()),
            PgRenewals(session()),
            PgEnds(session(), self.channel.clone()),
            PgPullAdvances(session()),
        )
    }
}

/// One column of `batch`, borrowed from it where it is text.
fn column<'a, W, T>(batch: &'a [W], pick: impl Fn(&'a W) -> T) -> Vec<T> {
    batch.iter().map(pick).collect()
}

#[async_trait]
impl Commit for PgInserts {
    type Write = NewSubscription;
    type Answer = u64;

    fn row(write: &NewSubscription) -> Option<&str> {
        Some(&write.row.id)
    }

    async fn commit(&self, batch: &[NewSubscription]) -> Result<Vec<u64>, StoreError> {
        let rows = batch.iter().map(InsertRow).bind_iter();
        let query = sqlx::query_as(INSERT_BATCH).bind(rows);
        let rows: Vec<(String, i64)> = self.0.fetch_all_as(query).await?;
        let (ids, cursors) = rows.into_iter().unzip();
        cursors_in_order(batch, ids, cursors)
    }
}

#[async_trait]
impl Commit for PgRenewals {
    type Write = Renewal;
    type Answer = bool;

    fn row(write: &Renewal) -> Option<&str> {
        Some(&write.id)
    }

    async fn commit(&self, batch: &[Renewal]) -> Result<Vec<bool>, StoreError> {
        let query = sqlx::query_as(RENEW_BATCH)
            .bind(column(batch, |r| r.id.clone()))
            .bind(column(batch, |r| r.expires_at))
            .bind(column(batch, |r| r.kind))
            .bind(column(batch, |r| r.now));
        let places: Vec<i64> = self
            .0
            .fetch_all_as(query)
            .await?
            .into_iter()
            .map(|(place,)| place)
            .collect();
        renewed_at(batch, &places)
    }
}

#[async_trait]
impl Commit for PgEnds {
    type Write = Ending;
    type Answer = Option<Ended>;

    fn row(write: &Ending) -> Option<&str> {
        Some(&write.id)
    }

    async fn commit(&self, batch: &[Ending]) -> Result<Vec<Option<Ended>>, StoreError> {
        let query = sqlx::query_as(END_BATCH)
            .bind(column(batch, |e| e.id.clone()))
            .bind(column(batch, |e| e.reason))
            .bind(column(batch, |e| e.now))
            .bind(&self.1);
        let rows: Vec<EndedRow> = self.0.fetch_all_as(query).await?;
        let (mut places, mut sources, mut notices) = (Vec::new(), Vec::new(), Vec::new());
        for (place, source, notice, _announced) in rows {
            places.push(place);
            sources.push(source);
            notices.push(notice);
        }
        ended_at(batch, &places, &sources, &notices)
    }
}

/// Moves each given pulled subscription, active and unexpired at its `now`, forward to its
/// position when that is not past its log's head; returns each one's cursor and head. The row
/// locks of the UPDATE order concurrent Pulls, so a cursor never moves backwards, on any node.
const ADVANCE_BATCH: &str = "UPDATE subscriptions s SET cursor = CASE
         WHEN s.cursor < p.position AND p.position <= COALESCE(
             (SELECT h.last_seq FROM source_heads h WHERE h.source = s.source), 0)
         THEN p.position ELSE s.cursor END
     FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) AS p(pulled_id, position, at)
     WHERE s.id = p.pulled_id AND s.status = 'active'
       AND (s.expires_at IS NULL OR s.expires_at > p.at)
     RETURNING s.id, s.cursor, COALESCE(
         (SELECT h.last_seq FROM source_heads h WHERE h.source = s.source), 0) AS head";

/// Pulls' advances.
pub(super) struct PgPullAdvances(Session);

#[async_trait]
impl Commit for PgPullAdvances {
    type Write = PullAdvance;
    type Answer = Option<PulledCursor>;

    fn row(write: &PullAdvance) -> Option<&str> {
        Some(&write.id)
    }

    async fn commit(&self, batch: &[PullAdvance]) -> Result<Vec<Option<PulledCursor>>, StoreError> {
        let query = sqlx::query(ADVANCE_BATCH)
            .bind(batch.iter().map(|p| p.id.clone()).collect::<Vec<_>>())
            .bind(batch.iter().map(|p| p.position).collect::<Vec<_>>())
            .bind(batch.iter().map(|p| p.now).collect::<Vec<_>>());
        advanced(batch, &self.0.fetch_all(query).await?)
    }
}
