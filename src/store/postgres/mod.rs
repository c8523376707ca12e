//! The shared store: PostgreSQL, for several herald nodes on one database.
//!
//! Every method is one statement or one short transaction; no row lock outlives it, so none is
//! ever held across an HTTP call. Work that several nodes may reach for at once (orphaned
//! subscriptions, expired ones, due SubscriptionEnd notices) is taken with `FOR UPDATE SKIP
//! LOCKED`, so each row goes to exactly one node. Node leases are measured on the database's
//! clock, so nodes with skewed clocks still agree on whose lease has lapsed. Appends, ends and
//! releases are announced with `NOTIFY` on a channel named after the schema; a node that misses
//! one catches up at its next poll.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::channels::ChannelQueues;
use super::codec::{
    ProgressRow, decode_ended, decode_event, decode_progress, decode_record, decode_source_count,
    decode_subscription, decode_with_progress, duration_millis, encode_endpoint, millis,
    progress_columns, seq_column, stored_seq, subscription_columns,
};
use super::group_commit::Queue;
use super::sql;
use super::subscription_writes::SubscriptionWrites;
use super::{NodeId, OwnedPages, Signal, Store, StoreError};
use crate::domain::event::{Event, NewEvent};
use crate::domain::expiry::ExpiryKind;
use crate::domain::subscription::{
    DeliveryProgress, EndNotice, EndReason, Ended, EndpointRef, SoapVersion, SourceName,
    Subscription, SubscriptionId, SubscriptionRecord, WsaVersion,
};
use batch_writes::{PgBatches, PgEnds, PgInserts, PgPullAdvances, PgRenewals};

/// Announces on channel `$1` the ends of the subscriptions whose ids (without `uuid:`) are `$2`
/// ([`sql::announce_ends!`]).
const ANNOUNCE_ENDS: &str = concat!(
    "SELECT ",
    sql::announce_ends!("$1", "UNNEST($2::TEXT[]) AS id")
);

mod appends;
mod batch_writes;
mod insert_rows;
mod migrations;
mod session;
mod signals;

/// The database's clock in milliseconds since the epoch: node leases are measured on it.
macro_rules! db_now {
    () => {
        "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT"
    };
}

mod channels;
mod owned;
mod pulls;
mod queue_writes;
mod queues;
mod webhooks;

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The NOTIFY channel: one per schema, so herald instances in different schemas of one
    /// database do not hear each other.
    channel: String,
    /// Ends the listener task, which [`Store::close`] then awaits.
    closing: CancellationToken,
    tasks: TaskTracker,
    /// To the group commits of Subscribes, Renews and ends.
    writes: SubscriptionWrites<PgInserts, PgRenewals, PgEnds, PgPullAdvances>,
    /// To the group commits of channel visits and changes.
    channels: ChannelQueues<channels::PgSightings, channels::PgChannelWrites>,
    /// To the group commit of invocations' and agents' writes.
    queue_writes: Queue<queue_writes::PgQueueWrites>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/database`, optionally with
    /// `?options=-c%20search_path%3Dschema`) and applies pending migrations.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let options =
            PgConnectOptions::from_str(url).map_err(|err| StoreError::Url(err.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            // A pooled connection is pinged before it is handed out, so sessions killed on the
            // server (a restart, a failover, an operator) cost no failed statement
            // (tests/it/cluster.rs: a burst of killed sessions).
            .test_before_acquire(true)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await?;
        let channel: String = format!("herald.{schema}").chars().take(63).collect();
        let closing = CancellationToken::new();
        let tasks = TaskTracker::new();
        let batches = PgBatches {
            pool: pool.clone(),
            channel: channel.clone(),
        };
        let channels = ChannelQueues::start(
            (
                channels::PgSightings(batches.clone()),
                channels::PgChannelWrites(batches.clone()),
            ),
            &tasks,
            &closing,
        );
        let queue_writes = Queue::start(
            queue_writes::PgQueueWrites(batches.clone()),
            &tasks,
            closing.clone(),
        );
        let writes = SubscriptionWrites::start(batches.committers(), &tasks, &closing);
        let store = PostgresStore {
            pool,
            channel,
            closing,
            tasks,
            writes,
            channels,
            queue_writes,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn notify<'c, E>(&self, executor: E, payload: &str) -> Result<(), StoreError>
    where
        E: sqlx::PgExecutor<'c>,
    {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.channel)
            .bind(payload)
            .execute(executor)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert_subscription(
        &self,
        subscription: &Subscription,
        owner: &NodeId,
        start_after: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.writes.insert(subscription, owner, start_after).await
    }

    async fn active_subscription(
        &self,
        id: SubscriptionId,
        now: Timestamp,
    ) -> Result<Option<Subscription>, StoreError> {
        let row = sqlx::query(sql::ACTIVE_SUBSCRIPTION.postgres())
            .bind(id.key())
            .bind(millis(now))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_subscription).transpose()
    }

    async fn renew_subscription(
        &self,
        id: SubscriptionId,
        expires_at: Option<Timestamp>,
        kind: ExpiryKind,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.writes.renew(id, expires_at, kind, now).await
    }

    async fn end_subscription(
        &self,
        id: SubscriptionId,
        reason: EndReason,
        now: Timestamp,
    ) -> Result<Option<Ended>, StoreError> {
        self.writes.end(id, reason, now).await
    }

    async fn redirect(
        &self,
        id: SubscriptionId,
        endpoint: &EndpointRef,
        (soap, addressing): (SoapVersion, WsaVersion),
        owner: &NodeId,
        now: Timestamp,
    ) -> Result<Option<(Subscription, DeliveryProgress)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(sql::REDIRECT.postgres())
            .bind(encode_endpoint(endpoint))
            .bind(soap.as_str())
            .bind(addressing.as_str())
            .bind(owner.as_str())
            .bind(id.key())
            .bind(millis(now))
            .fetch_optional(&mut *tx)
            .await?;
        let redirected = row
            .as_ref()
            .map(|row| Ok::<_, StoreError>((decode_subscription(row)?, decode_progress(row)?)))
            .transpose()?;
        if redirected.is_some() {
            self.notify(&mut *tx, &format!("m:{}:{owner}", id.key()))
                .await?;
        }
        tx.commit().await?;
        Ok(redirected)
    }

    async fn end_expired(&self, now: Timestamp, limit: u32) -> Result<Vec<Ended>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::CATCH_UP_SWEEP_MARKS_POSTGRES.postgres())
            .bind(millis(now))
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(sql::END_EXPIRED_POSTGRES.postgres())
            .bind(millis(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let ended = rows
            .iter()
            .map(decode_ended)
            .collect::<Result<Vec<_>, _>>()?;
        if !ended.is_empty() {
            let ids: Vec<String> = ended.iter().map(|s| s.id.key()).collect();
            sqlx::query(ANNOUNCE_ENDS)
                .bind(&self.channel)
                .bind(ids)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ended)
    }

    async fn append_events(
        &self,
        source: &SourceName,
        events: &[NewEvent],
        now: Timestamp,
    ) -> Result<Vec<Event>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let batches = [(source, events)];
        let mut appended = appends::append(&self.pool, &self.channel, &batches, now).await?;
        Ok(appended.pop().unwrap_or_default())
    }

    async fn append_to_logs(
        &self,
        batches: &[(SourceName, Vec<NewEvent>)],
        now: Timestamp,
    ) -> Result<Vec<Vec<Event>>, StoreError> {
        let batches: Vec<(&SourceName, &[NewEvent])> = batches
            .iter()
            .map(|(log, events)| (log, events.as_slice()))
            .collect();
        appends::append(&self.pool, &self.channel, &batches, now).await
    }

    async fn events_after(
        &self,
        source: &SourceName,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(sql::EVENTS_AFTER.postgres())
            .bind(source.as_str())
            .bind(seq_column(after))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_event).collect()
    }

    async fn forget_log(&self, log: &SourceName) -> Result<bool, StoreError> {
        let result = sqlx::query(sql::FORGET_LOG.postgres())
            .bind(log.as_str())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn oldest_retained(&self, log: &SourceName) -> Result<Option<u64>, StoreError> {
        let oldest: Option<i64> = sqlx::query_scalar(sql::OLDEST_RETAINED.postgres())
            .bind(log.as_str())
            .fetch_one(&self.pool)
            .await?;
        oldest.map(|seq| stored_seq("seq", seq)).transpose()
    }

    async fn log_head(&self, log: &SourceName) -> Result<u64, StoreError> {
        let head: Option<i64> = sqlx::query_scalar(sql::LOG_HEAD.postgres())
            .bind(log.as_str())
            .fetch_optional(&self.pool)
            .await?;
        head.map_or(Ok(0), |head| stored_seq("last_seq", head))
    }

    async fn source_heads(&self) -> Result<Vec<(SourceName, u64)>, StoreError> {
        let rows = sqlx::query(sql::SOURCE_HEADS.postgres())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| decode_source_count(row, "last_seq"))
            .collect()
    }

    async fn register_node(&self, node: &NodeId, ttl: Duration) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO nodes (id, lease_until) VALUES ($1, ",
            db_now!(),
            " + $2)
             ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until"
        ))
        .bind(node.as_str())
        .bind(duration_millis(ttl))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn check_writable(&self, node: &NodeId) -> Result<(), StoreError> {
        sqlx::query(sql::CHECK_WRITABLE.postgres())
            .bind(node.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn renew_node(&self, node: &NodeId, ttl: Duration) -> Result<bool, StoreError> {
        let result = sqlx::query(concat!(
            "UPDATE nodes SET lease_until = ",
            db_now!(),
            " + $2 WHERE id = $1 AND lease_until >= ",
            db_now!()
        ))
        .bind(node.as_str())
        .bind(duration_millis(ttl))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn release_node(&self, node: &NodeId) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::RELEASE_NODE.postgres())
            .bind(node.as_str())
            .execute(&mut *tx)
            .await?;
        self.notify(&mut *tx, "r").await?;
        tx.commit().await?;
        Ok(())
    }

    async fn forget_dead_nodes(&self, after: Duration) -> Result<u64, StoreError> {
        let result = sqlx::query(concat!(
            "DELETE FROM nodes WHERE lease_until < ",
            db_now!(),
            " - $1
                 AND NOT EXISTS (SELECT 1 FROM subscriptions
                                 WHERE owner = nodes.id AND status = 'active')"
        ))
        .bind(duration_millis(after))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    async fn claim_orphans(
        &self,
        node: &NodeId,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(Subscription, DeliveryProgress)>, StoreError> {
        // Each kind of orphan by its own lookup in (owner, id), whatever the statistics say
        // (a takeover leaves them stale; without autovacuum there are none): rows with no
        // owner, then each lapsed node's. A plan left free had walked every active row for
        // each batch (a takeover of 1,000,000 loaded in 281 s). A lapsed node's row is held
        // `FOR SHARE` until the claim commits: that node's renewed lease waits for the claim,
        // so its own load, which follows the renewal, reads its rows unlocked.
        let rows = sqlx::query(concat!(
            "WITH unowned AS (
                 SELECT s.id FROM subscriptions s
                 WHERE s.owner IS NULL AND s.status = 'active'
                   AND (s.expires_at IS NULL OR s.expires_at > $2)
                 LIMIT $3
                 FOR UPDATE OF s SKIP LOCKED),
             lapsed AS (
                 SELECT id FROM nodes WHERE id <> $1 AND lease_until < ",
            db_now!(),
            "
                 FOR SHARE),
             left_behind AS (
                 SELECT o.id FROM lapsed CROSS JOIN LATERAL (
                     SELECT s.id FROM subscriptions s
                     WHERE s.owner = lapsed.id AND s.status = 'active'
                       AND (s.expires_at IS NULL OR s.expires_at > $2)
                     ORDER BY s.owner, s.id
                     LIMIT $3
                     FOR UPDATE OF s SKIP LOCKED) o),
             picked AS (
                 SELECT id AS pick FROM unowned
                 UNION ALL SELECT id FROM left_behind
                 LIMIT $3)
             UPDATE subscriptions SET owner = $1 FROM picked WHERE id = picked.pick
             RETURNING ",
            subscription_columns!(),
            ", ",
            progress_columns!()
        ))
        .bind(node.as_str())
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        decode_with_progress(&rows)
    }

    fn owned(&self, node: &NodeId, now: Timestamp, page: usize) -> OwnedPages {
        owned::pages(self.pool.clone(), node.clone(), now, page)
    }

    async fn owned_counts(&self, node: &NodeId) -> Result<Vec<(SourceName, u64)>, StoreError> {
        owned::counts(&self.pool, node).await
    }

    async fn save_progress(
        &self,
        node: &NodeId,
        updates: &[(SubscriptionId, DeliveryProgress)],
    ) -> Result<Vec<SubscriptionId>, StoreError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(updates.len());
        let mut cursors = Vec::with_capacity(updates.len());
        let mut attempts = Vec::with_capacity(updates.len());
        let mut next = Vec::with_capacity(updates.len());
        let mut failing = Vec::with_capacity(updates.len());
        let mut errors = Vec::with_capacity(updates.len());
        for (id, progress) in updates {
            let row = ProgressRow::encode(progress);
            ids.push(id.key());
            cursors.push(row.cursor);
            attempts.push(row.attempts);
            next.push(row.next_attempt_at);
            failing.push(row.failing_since);
            errors.push(row.last_error);
        }
        let saved: Vec<String> = sqlx::query_scalar(
            "UPDATE subscriptions s SET cursor = u.cursor, attempts = u.attempts,
                 next_attempt_at = u.next_at, failing_since = u.failing, last_error = u.error
             FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[],
                         $6::TEXT[]) AS u(uid, cursor, attempts, next_at, failing, error)
             WHERE s.id = u.uid AND s.status = 'active' AND s.owner = $7
             RETURNING s.id",
        )
        .bind(&ids)
        .bind(cursors)
        .bind(attempts)
        .bind(next)
        .bind(failing)
        .bind(errors)
        .bind(node.as_str())
        .fetch_all(&self.pool)
        .await?;
        let saved: HashSet<String> = saved.into_iter().collect();
        Ok(updates
            .iter()
            .zip(&ids)
            .filter(|(_, key)| !saved.contains(*key))
            .map(|((id, _), _)| *id)
            .collect())
    }

    async fn subscription_record(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        let row = sqlx::query(sql::SUBSCRIPTION_RECORD.postgres())
            .bind(id.key())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_record).transpose()
    }

    async fn due_end_notices(
        &self,
        now: Timestamp,
        limit: u32,
        claim_for: Duration,
    ) -> Result<Vec<(Subscription, EndReason, u32)>, StoreError> {
        let rows = sqlx::query(sql::DUE_END_NOTICES_POSTGRES.postgres())
            .bind(millis(now))
            .bind(millis(now).saturating_add(duration_millis(claim_for)))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(super::decode_end_notice).collect()
    }

    async fn record_end_notice(
        &self,
        id: SubscriptionId,
        notice: EndNotice,
        attempts: u32,
        next_at: Option<Timestamp>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(sql::RECORD_END_NOTICE.postgres())
            .bind(notice.as_str())
            .bind(i64::from(attempts))
            .bind(next_at.map(millis))
            .bind(error)
            .bind(id.key())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn compact_events(
        &self,
        source: &SourceName,
        published_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let result = sqlx::query(sql::COMPACT_EVENTS.postgres())
            .bind(source.as_str())
            .bind(millis(published_before))
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn signals(&self) -> Result<Option<mpsc::Receiver<Signal>>, StoreError> {
        let listener = signals::listen(&self.pool, &self.channel).await?;
        Ok(Some(signals::forward(
            listener,
            self.closing.clone(),
            &self.tasks,
        )))
    }

    async fn close(&self) {
        self.closing.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.pool.close().await;
    }
}
