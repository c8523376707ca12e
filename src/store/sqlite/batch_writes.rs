//! The subscription lifecycle's writes as one statement per batch (see
//! [`super::super::group_commit`] for the group commit that batches them), so a batch costs one
//! statement and one fsync however many Subscribes, Renews or Unsubscribes it holds, run on a
//! connection of herald's own where the batch was gathered ([`super::direct`]); a pull's
//! advances go through the driver's worker thread. New subscriptions, renewals and ends go as
//! bound values, one row each (unpacking a JSON array of twenty-two values per row took more of
//! the writer than the inserts themselves; for the three or four values of a renewal or an end,
//! building the JSON and extracting from it again cost about a thirtieth of a Renew's
//! instructions); a pull's advances, rare, as one JSON array.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::Sqlite;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqlitePool};
use tokio::sync::OwnedMutexGuard;

use super::super::codec::{Columns, stored_seq, subscription_columns};
use super::super::group_commit::{Commit, MAX_BATCH};
use super::super::pulls::PulledCursor;
use super::super::sql::renewed_sweep_mark;
use super::super::subscription_writes::{
    Ending, NewSubscription, PullAdvance, Renewal, advanced, ended, renewed,
};
use super::super::{StoreError, sql};
use super::WriteTurns;
use super::direct::{Bind, Direct, Returned};
use crate::domain::subscription::Ended;

/// A statement being bound.
type SqliteQuery = Query<'static, Sqlite, SqliteArguments>;

/// Values bound for each new subscription: the subscription columns in order, then the owner
/// and the starting cursor.
const INSERT_VALUES: usize = 22;

/// The insert of up to `rows` new subscriptions, each bound as [`INSERT_VALUES`] values in
/// [`insert_values`]' order; a row whose id is NULL fills the statement up and is skipped.
/// Each row's cursor is bound: [`SqliteBatches::insert`] reads the heads they start at first.
/// With a subquery for the head in each row and the cursors it found `RETURNING`, the batch's
/// commit cost 29.9k instructions per new subscription in `callgrind`; without, 19.7k.
fn insert_statement(rows: usize) -> String {
    let columns = (1..=20)
        .map(|i| format!("column{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO subscriptions ({}, status, owner, cursor, sweep_at)
         SELECT {columns}, 'active', column21, column22, column11
         FROM (VALUES {}) WHERE column1 IS NOT NULL",
        subscription_columns!(),
        value_rows(rows, INSERT_VALUES)
    )
}

/// A transaction of several statements, on the connection of herald's own.
const BEGIN: &str = "BEGIN";
const COMMIT: &str = "COMMIT";
const ROLLBACK: &str = "ROLLBACK";

/// Sets the expiry of each subscription of up to `rows` rows of `(id, expires_at, kind, now)`
/// that is active and unexpired at its `now` and whose sweep mark is at or before the new
/// expiry: the mark stays, so no index changes (see the migration `sweep_marks`).
fn renew_statement(rows: usize) -> String {
    format!(
        "UPDATE subscriptions SET expires_at = r.column2, expiry_kind = r.column3
         FROM (VALUES {}) AS r
         WHERE subscriptions.id = r.column1 AND {RENEWABLE} AND sweep_at <= r.column2",
        value_rows(rows, RENEW_VALUES)
    )
}

/// Which subscriptions of the rows `r` a renewal applies to: active and unexpired at its `now`.
const RENEWABLE: &str = "status = 'active' AND (expires_at IS NULL OR expires_at > r.column4)";

/// Sets the expiry of each subscription of up to `rows` rows that is active and unexpired at its
/// `now`, and moves its sweep mark to the new expiry when that is nearer (or none), returning
/// the id of each subscription renewed. SQLite gathers what a statement returns in a table of
/// its own first: in `callgrind` a Subscribe's insert cost 8.5k instructions more per row with
/// `RETURNING id` than without. So a batch of renewals runs [`renew_statement`] first, and this
/// only when that did not renew every row (see [`SqliteBatches::renew`]): a Renew's commit
/// from 30.2k instructions to 24.5k.
fn renew_returning_statement(rows: usize) -> String {
    format!(
        "UPDATE subscriptions SET expires_at = r.column2, expiry_kind = r.column3,
             sweep_at = {}
         FROM (VALUES {}) AS r
         WHERE subscriptions.id = r.column1 AND {RENEWABLE}
         RETURNING subscriptions.id AS id",
        renewed_sweep_mark!("sweep_at", "r.column2"),
        value_rows(rows, RENEW_VALUES)
    )
}

/// Ends each subscription of up to `rows` rows of `(id, reason, now)` that is active and
/// unexpired at its `now`, queueing its SubscriptionEnd when it has an EndTo, so the notice
/// cannot be lost or doubled. Each ended row comes back as what delivery needs to let it go
/// ([`codec::decode_ended`]), not as the whole subscription.
fn end_statement(rows: usize) -> String {
    format!(
        "UPDATE subscriptions
         SET status = 'ended', end_reason = e.column2, ended_at = e.column3,
             end_notice = CASE WHEN end_to IS NULL THEN NULL ELSE 'pending' END,
             end_next_at = e.column3
         FROM (VALUES {}) AS e
         WHERE subscriptions.id = e.column1 AND status = 'active'
           AND (expires_at IS NULL OR expires_at > e.column3)
         RETURNING subscriptions.id AS id, subscriptions.source AS source,
             subscriptions.end_notice AS end_notice",
        value_rows(rows, END_VALUES)
    )
}

/// Values bound for each renewal.
const RENEW_VALUES: usize = 4;

/// Values bound for each end.
const END_VALUES: usize = 3;

/// `rows` rows of `width` placeholders: `(?, ?), (?, ?)`.
fn value_rows(rows: usize, width: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    vec![row; rows].join(", ")
}

/// A statement for each power of two up to [`MAX_BATCH`] rows: a batch takes the smallest that
/// holds it, so the writer prepares a few statements once, not one for every length.
fn by_powers_of_two(statement: fn(usize) -> String) -> Vec<String> {
    (0..=MAX_BATCH.next_power_of_two().ilog2())
        .map(|power| statement(1 << power))
        .collect()
}

static INSERTS: LazyLock<Vec<String>> = LazyLock::new(|| by_powers_of_two(insert_statement));
static RENEWS: LazyLock<Vec<String>> = LazyLock::new(|| by_powers_of_two(renew_statement));
static RENEWS_RETURNING: LazyLock<Vec<String>> =
    LazyLock::new(|| by_powers_of_two(renew_returning_statement));
static ENDS: LazyLock<Vec<String>> = LazyLock::new(|| by_powers_of_two(end_statement));

/// Writes batches under the store's writer lock.
#[derive(Clone)]
pub(super) struct SqliteBatches {
    /// The store's writer connection.
    pub writer: SqlitePool,
    pub write: Arc<WriteTurns>,
    /// The connection the lifecycle's batches are written through (see [`super::direct`]).
    pub direct: Arc<std::sync::Mutex<Direct>>,
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

    /// Runs `statement` with `rows` (one JSON array) under the writer lock.
    pub(super) async fn run(
        &self,
        statement: &'static str,
        rows: Vec<Value>,
    ) -> Result<Vec<sqlx::sqlite::SqliteRow>, StoreError> {
        let rows = Value::Array(rows).to_string();
        self.fetch(sqlx::query(statement).bind(rows)).await
    }

    /// Runs the smallest of `statements` that holds `rows` rows, with `values` (the rows past
    /// them NULL), through the connection of herald's own, under the writer lock: one statement
    /// is one transaction, all of the batch or none of it.
    async fn direct(
        &self,
        statements: &'static [String],
        rows: usize,
        values: &[Bind<'_>],
    ) -> Result<Vec<Returned>, StoreError> {
        let _writing = self.write.lock().await;
        let mut direct = self.direct.lock().map_err(|_| StoreError::Closed)?;
        direct.run(smallest(statements, rows), values)
    }

    /// Stores `batch` in one statement, each new subscription starting at its given cursor or
    /// at its log's head, and returns the cursors. The heads are read first, in the same turn
    /// of the writer lock: every write takes that turn, so no append moves a head in between.
    async fn insert(&self, batch: &[NewSubscription]) -> Result<Vec<u64>, StoreError> {
        let _writing = self.write.lock().await;
        let mut direct = self.direct.lock().map_err(|_| StoreError::Closed)?;
        let mut heads: Vec<(&str, i64)> = Vec::new();
        let mut cursors = Vec::with_capacity(batch.len());
        for write in batch {
            let source = write.row.source.as_str();
            let cursor = match (
                write.start_after,
                heads.iter().find(|(log, _)| *log == source),
            ) {
                (Some(after), _) => after,
                (None, Some((_, head))) => *head,
                (None, None) => {
                    let head = match direct
                        .run(sql::LOG_HEAD.sqlite(), &[Bind::Text(Some(source))])?
                        .first()
                    {
                        Some(row) => row.int("last_seq")?,
                        None => 0,
                    };
                    heads.push((source, head));
                    head
                }
            };
            cursors.push(cursor);
        }
        let values: Vec<Bind<'_>> = batch
            .iter()
            .zip(&cursors)
            .flat_map(|(write, cursor)| insert_values(write, *cursor))
            .collect();
        direct.run(smallest(&INSERTS, batch.len()), &values)?;
        cursors
            .into_iter()
            .map(|cursor| stored_seq("cursor", cursor))
            .collect()
    }

    /// Renews `batch`, bound as `values`. Two writes to one row never share a batch, so when the
    /// statement changed as many rows as the batch holds, every renewal applied: committed, and
    /// known without returning a row. Otherwise (a subscription gone, ended or expired, or an
    /// expiry brought nearer than its sweep mark) the transaction is rolled back and the batch
    /// runs again, moving such marks and returning the ids renewed.
    async fn renew(&self, batch: &[Renewal], values: &[Bind<'_>]) -> Result<Vec<bool>, StoreError> {
        let _writing = self.write.lock().await;
        let mut direct = self.direct.lock().map_err(|_| StoreError::Closed)?;
        direct.run(BEGIN, &[])?;
        let applied = direct
            .run(smallest(&RENEWS, batch.len()), values)
            .map(|_| direct.changes() == batch.len() as u64)
            .and_then(|all| {
                if all {
                    direct.run(COMMIT, &[]).map(|_| true)
                } else {
                    Ok(false)
                }
            });
        if let Ok(true) = applied {
            return Ok(vec![true; batch.len()]);
        }
        // Nothing of the transaction is kept: rolled back here, or by SQLite if it ended it.
        if direct.in_transaction() {
            direct.run(ROLLBACK, &[])?;
        }
        applied?;
        renewed(
            batch,
            &direct.run(smallest(&RENEWS_RETURNING, batch.len()), values)?,
        )
    }

    /// Runs a bound statement under the writer lock: one statement is one transaction, all of
    /// the batch or none of it.
    async fn fetch(&self, query: SqliteQuery) -> Result<Vec<sqlx::sqlite::SqliteRow>, StoreError> {
        let _writing = self.write.lock().await;
        Ok(query.fetch_all(&self.writer).await?)
    }
}

/// The smallest of `statements` (one for each power of two) that holds `rows` rows.
fn smallest(statements: &'static [String], rows: usize) -> &'static str {
    statements[rows.next_power_of_two().ilog2() as usize].as_str()
}

/// A new subscription's values, starting at `cursor`, in the order of [`insert_statement`]'s
/// row.
fn insert_values(write: &NewSubscription, cursor: i64) -> [Bind<'_>; INSERT_VALUES] {
    let row = &write.row;
    [
        Bind::Text(Some(&row.id)),
        Bind::Text(Some(&row.source)),
        Bind::Text(Some(row.eventing.as_ref())),
        Bind::Text(Some(row.soap.as_ref())),
        Bind::Text(Some(row.addressing.as_ref())),
        Bind::Text(Some(&row.notify_to)),
        Bind::Text(row.end_to.as_deref()),
        Bind::Text(Some(&row.delivery_mode)),
        Bind::Text(Some(row.format.as_ref())),
        Bind::Text(row.filter.as_deref()),
        Bind::Int(row.expires_at),
        Bind::Text(Some(row.expiry_kind.as_ref())),
        Bind::Int(Some(row.created_at)),
        Bind::Text(Some(&row.manager_address)),
        Bind::Text(Some(row.log_kind.as_ref())),
        Bind::Text(Some(row.delivery.as_ref())),
        Bind::Text(row.webhook.as_deref()),
        Bind::Int(row.retry_interval_ms),
        Bind::Int(row.retry_total),
        Bind::Text(row.wsman.as_deref()),
        Bind::Text(Some(&write.owner)),
        Bind::Int(Some(cursor)),
    ]
}

#[async_trait]
impl Commit for SqliteInserts {
    type Write = NewSubscription;
    type Answer = u64;

    const BLOCKS: bool = true;

    fn row(write: &NewSubscription) -> Option<&str> {
        Some(&write.row.id)
    }

    async fn commit(&self, batch: &[NewSubscription]) -> Result<Vec<u64>, StoreError> {
        self.0.insert(batch).await
    }
}

#[async_trait]
impl Commit for SqliteRenewals {
    type Write = Renewal;
    type Answer = bool;

    const BLOCKS: bool = true;

    fn row(write: &Renewal) -> Option<&str> {
        Some(&write.id)
    }

    async fn commit(&self, batch: &[Renewal]) -> Result<Vec<bool>, StoreError> {
        let values: Vec<Bind<'_>> = batch
            .iter()
            .flat_map(|r| {
                [
                    Bind::Text(Some(&r.id)),
                    Bind::Int(r.expires_at),
                    Bind::Text(Some(r.kind)),
                    Bind::Int(Some(r.now)),
                ]
            })
            .collect();
        self.0.renew(batch, &values).await
    }
}

#[async_trait]
impl Commit for SqliteEnds {
    type Write = Ending;
    type Answer = Option<Ended>;

    const BLOCKS: bool = true;

    fn row(write: &Ending) -> Option<&str> {
        Some(&write.id)
    }

    async fn commit(&self, batch: &[Ending]) -> Result<Vec<Option<Ended>>, StoreError> {
        let values: Vec<Bind<'_>> = batch
            .iter()
            .flat_map(|e| {
                [
                    Bind::Text(Some(&e.id)),
                    Bind::Text(Some(e.reason)),
                    Bind::Int(Some(e.now)),
                ]
            })
            .collect();
        ended(batch, &self.0.direct(&ENDS, batch.len(), &values).await?)
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
