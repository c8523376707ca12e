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
use sqlx::Executor;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::Columns;
use super::codec::{
    ProgressRow, SubscriptionRow, decode_event, decode_record, decode_source_count,
    decode_subscription, decode_with_progress, duration_millis, millis, progress_columns,
    seq_column, subscription_columns,
};
use super::{NodeId, Page, PageToken, Signal, Store, StoreError};
use crate::domain::event::{Event, NewEvent};
use crate::domain::expiry::ExpiryKind;
use crate::domain::subscription::{
    DeliveryProgress, EndNotice, EndReason, SourceName, Subscription, SubscriptionId,
    SubscriptionRecord,
};

/// Schema migrations, applied in order at start, under an advisory lock so that nodes starting
/// together apply each once.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/postgres/0001_herald.sql")),
    (
        2,
        include_str!("migrations/postgres/0002_logs_and_readers.sql"),
    ),
];

/// The advisory lock key taken while migrating ("herald" in ASCII).
const MIGRATION_LOCK: i64 = 0x6865_7261_6c64;

/// The database's clock in milliseconds since the epoch: node leases are measured on it.
macro_rules! db_now {
    () => {
        "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT"
    };
}

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
        let store = PostgresStore {
            pool,
            channel,
            closing: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
        for (version, sql) in MIGRATIONS {
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if applied.is_none() {
                tx.execute(*sql).await?;
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                    .bind(version)
                    .bind(millis(Timestamp::now()))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
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

fn parse_signal(payload: &str) -> Option<Signal> {
    match payload.split_once(':') {
        Some(("a", rest)) => {
            let (source, head) = rest.rsplit_once(':')?;
            Some(Signal::Appended(
                SourceName::parse(source)?,
                head.parse().ok()?,
            ))
        }
        Some(("e", id)) => SubscriptionId::parse(id).map(Signal::Ended),
        _ if payload == "r" => Some(Signal::Released),
        _ => None,
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert_subscription(
        &self,
        subscription: &Subscription,
        owner: &NodeId,
    ) -> Result<u64, StoreError> {
        let row = SubscriptionRow::encode(subscription);
        let cursor: i64 = sqlx::query_scalar(concat!(
            "INSERT INTO subscriptions (",
            subscription_columns!(),
            ", status, owner, cursor)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     'active', $17,
                     COALESCE((SELECT last_seq FROM source_heads WHERE source = $2), 0))
             RETURNING cursor"
        ))
        .bind(row.id)
        .bind(row.source)
        .bind(row.eventing)
        .bind(row.soap)
        .bind(row.addressing)
        .bind(row.notify_to)
        .bind(row.end_to)
        .bind(row.delivery_mode)
        .bind(row.format)
        .bind(row.filter)
        .bind(row.expires_at)
        .bind(row.expiry_kind)
        .bind(row.created_at)
        .bind(row.manager_address)
        .bind(row.log_kind)
        .bind(row.delivery)
        .bind(owner.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(cursor).unwrap_or(0))
    }

    async fn active_subscription(
        &self,
        id: SubscriptionId,
        now: Timestamp,
    ) -> Result<Option<Subscription>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            subscription_columns!(),
            " FROM subscriptions
             WHERE id = $1 AND status = 'active' AND (expires_at IS NULL OR expires_at > $2)"
        ))
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
        let result = sqlx::query(
            "UPDATE subscriptions SET expires_at = $1, expiry_kind = $2
             WHERE id = $3 AND status = 'active' AND (expires_at IS NULL OR expires_at > $4)",
        )
        .bind(expires_at.map(millis))
        .bind(kind.as_str())
        .bind(id.key())
        .bind(millis(now))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn end_subscription(
        &self,
        id: SubscriptionId,
        reason: EndReason,
        now: Timestamp,
    ) -> Result<Option<Subscription>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(concat!(
            "UPDATE subscriptions SET status = 'ended', end_reason = $1, ended_at = $2,
                 end_notice = CASE WHEN end_to IS NULL THEN NULL ELSE 'pending' END,
                 end_next_at = $2
             WHERE id = $3 AND status = 'active' AND (expires_at IS NULL OR expires_at > $2)
             RETURNING ",
            subscription_columns!()
        ))
        .bind(reason.as_str())
        .bind(millis(now))
        .bind(id.key())
        .fetch_optional(&mut *tx)
        .await?;
        let ended = row.as_ref().map(decode_subscription).transpose()?;
        if let Some(subscription) = &ended {
            self.notify(&mut *tx, &format!("e:{}", subscription.id))
                .await?;
        }
        tx.commit().await?;
        Ok(ended)
    }

    async fn end_expired(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(concat!(
            "UPDATE subscriptions SET status = 'ended', end_reason = 'expired', ended_at = $1,
                 end_notice = CASE WHEN end_to IS NULL THEN NULL ELSE 'pending' END,
                 end_next_at = $1
             WHERE id IN (
                 SELECT id FROM subscriptions
                 WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= $1
                 ORDER BY expires_at LIMIT $2
                 FOR UPDATE SKIP LOCKED)
             RETURNING ",
            subscription_columns!()
        ))
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let ended = rows
            .iter()
            .map(decode_subscription)
            .collect::<Result<Vec<_>, _>>()?;
        if !ended.is_empty() {
            let payloads: Vec<String> = ended.iter().map(|s| format!("e:{}", s.id)).collect();
            sqlx::query("SELECT pg_notify($1, p) FROM UNNEST($2::TEXT[]) AS p")
                .bind(&self.channel)
                .bind(payloads)
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
        let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await?;
        // The head row stays locked until commit: appends to one source commit in order.
        let last: i64 = sqlx::query_scalar(
            "INSERT INTO source_heads (source, last_seq) VALUES ($1, $2)
             ON CONFLICT (source) DO UPDATE SET last_seq = source_heads.last_seq + $2
             RETURNING last_seq",
        )
        .bind(source.as_str())
        .bind(count)
        .fetch_one(&mut *tx)
        .await?;
        let appended = super::number_events(source, events, last - count + 1, now);
        let seqs: Vec<i64> = appended.iter().map(|e| seq_column(e.seq)).collect();
        let ids: Vec<String> = appended.iter().map(|e| e.id.to_string()).collect();
        let actions: Vec<&str> = appended.iter().map(|e| e.action.as_str()).collect();
        let payloads: Vec<&str> = appended.iter().map(|e| e.payload.as_str()).collect();
        sqlx::query(
            "INSERT INTO events (source, seq, id, action, payload, published_at)
             SELECT $1, e.seq, e.id, e.action, e.payload, $2
             FROM UNNEST($3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::TEXT[])
                 AS e(seq, id, action, payload)",
        )
        .bind(source.as_str())
        .bind(millis(now))
        .bind(seqs)
        .bind(ids)
        .bind(actions)
        .bind(payloads)
        .execute(&mut *tx)
        .await?;
        self.notify(&mut *tx, &format!("a:{source}:{last}")).await?;
        tx.commit().await?;
        Ok(appended)
    }

    async fn events_after(
        &self,
        source: &SourceName,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, seq, id, action, payload, published_at FROM events
             WHERE source = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(source.as_str())
        .bind(seq_column(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_event).collect()
    }

    async fn source_heads(&self) -> Result<Vec<(SourceName, u64)>, StoreError> {
        let rows = sqlx::query("SELECT source, last_seq FROM source_heads")
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
        sqlx::query("UPDATE nodes SET lease_until = lease_until WHERE id = $1")
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
        sqlx::query("UPDATE nodes SET lease_until = 0 WHERE id = $1")
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
        let rows = sqlx::query(concat!(
            "WITH picked AS (
                 SELECT id AS pick FROM subscriptions
                 WHERE status = 'active'
                   AND (owner IS NULL OR owner IN (
                       SELECT id FROM nodes WHERE id <> $1 AND lease_until < ",
            db_now!(),
            "))
                   AND (expires_at IS NULL OR expires_at > $2)
                 LIMIT $3
                 FOR UPDATE OF subscriptions SKIP LOCKED)
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

    async fn owned_subscriptions(
        &self,
        node: &NodeId,
        now: Timestamp,
        after: Option<PageToken>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        // An UPDATE rather than a SELECT: it waits for another node's claim in progress on the
        // same rows and then sees its outcome, so a row is never taken by two nodes at once.
        // The page's last id comes from the database, in its collation.
        let rows = sqlx::query(concat!(
            "WITH page AS (
                 UPDATE subscriptions SET owner = $1
                 WHERE id IN (
                     SELECT id FROM subscriptions
                     WHERE owner = $1 AND status = 'active'
                       AND (expires_at IS NULL OR expires_at > $2) AND id > $3
                     ORDER BY id LIMIT $4)
                   AND owner = $1 AND status = 'active'
                 RETURNING ",
            subscription_columns!(),
            ", ",
            progress_columns!(),
            ")
             SELECT *, MAX(id) OVER () AS last_id FROM page"
        ))
        .bind(node.as_str())
        .bind(millis(now))
        .bind(after.map(|token| token.0).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let next = match rows.first() {
            Some(row) if rows.len() == limit as usize => Some(PageToken(row.text("last_id")?)),
            _ => None,
        };
        Ok(Page {
            items: decode_with_progress(&rows)?,
            next,
        })
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
        let row = sqlx::query(concat!(
            "SELECT ",
            subscription_columns!(),
            ", ",
            progress_columns!(),
            ", status, end_reason, ended_at, end_notice, owner FROM subscriptions WHERE id = $1"
        ))
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
        let rows = sqlx::query(concat!(
            "UPDATE subscriptions SET end_next_at = $2
             WHERE id IN (
                 SELECT id FROM subscriptions
                 WHERE end_notice = 'pending' AND end_next_at <= $1
                 ORDER BY end_next_at LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             RETURNING ",
            subscription_columns!(),
            ", end_reason, end_attempts"
        ))
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
        sqlx::query(
            "UPDATE subscriptions SET end_notice = $1, end_attempts = $2, end_next_at = $3,
                 end_error = $4
             WHERE id = $5 AND end_notice = 'pending'",
        )
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
        let result = sqlx::query(
            "DELETE FROM events WHERE source = $1 AND published_at < $2
                 AND seq <= COALESCE(
                     (SELECT MIN(cursor) FROM subscriptions
                      WHERE source = $1 AND status = 'active'),
                     (SELECT last_seq FROM source_heads WHERE source = $1),
                     0)",
        )
        .bind(source.as_str())
        .bind(millis(published_before))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    async fn signals(&self) -> Result<Option<mpsc::Receiver<Signal>>, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(&self.channel).await?;
        let (tx, rx) = mpsc::channel(1024);
        let closing = self.closing.clone();
        self.tasks.spawn(async move {
            loop {
                let received = tokio::select! {
                    received = listener.try_recv() => received,
                    () = closing.cancelled() => return,
                };
                match received {
                    Ok(Some(notification)) => {
                        if let Some(signal) = parse_signal(notification.payload())
                            && tx.send(signal).await.is_err()
                        {
                            return;
                        }
                    }
                    // The connection was lost and is being re-established: what was announced
                    // meanwhile is gone, so have the node look at everything.
                    Ok(None) => {
                        if tx.send(Signal::Released).await.is_err() {
                            return;
                        }
                    }
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(err) => {
                        tracing::warn!(error = %err, "listening for other nodes failed; polling");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if tx.is_closed() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Some(rx))
    }

    async fn close(&self) {
        self.closing.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_read_from_their_payloads() {
        assert_eq!(
            parse_signal("a:orders:42"),
            Some(Signal::Appended(SourceName::parse("orders").unwrap(), 42))
        );
        assert_eq!(parse_signal("a:orders"), None);
        let id = SubscriptionId::new_random();
        assert_eq!(parse_signal(&format!("e:{id}")), Some(Signal::Ended(id)));
        assert_eq!(parse_signal("r"), Some(Signal::Released));
        assert_eq!(parse_signal("a:bad/name"), None);
        assert_eq!(parse_signal("zzz"), None);
    }
}
