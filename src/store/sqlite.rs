//! The embedded store: one SQLite database file in WAL mode with `synchronous=FULL`, so a
//! commit has reached the disk before the call returns.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Executor, Row};

use super::codec::{
    EventRow, ProgressRow, SubscriptionRow, millis, subscription_columns, timestamp,
};
use super::{Store, StoreError};
use crate::engine::event::{Event, NewEvent};
use crate::engine::expiry::ExpiryKind;
use crate::engine::subscription::{
    DeliveryProgress, EndNotice, EndReason, SourceName, Subscription, SubscriptionId,
    SubscriptionRecord, SubscriptionStatus,
};

/// Schema migrations, applied in order at start; each runs once, in a transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/sqlite/0001_subscriptions.sql")),
    (2, include_str!("migrations/sqlite/0002_event_log.sql")),
];

/// The embedded SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) `herald.db` in `data_dir` and applies pending migrations.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(data_dir.join("herald.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let store = SqliteStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.pool
            .execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
            )
            .await?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await?;
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if applied.is_none() {
                tx.execute(*sql).await?;
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
                    .bind(version)
                    .bind(millis(Timestamp::now()))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn decode(row: &SqliteRow) -> Result<Subscription, StoreError> {
    SubscriptionRow {
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        eventing: row.try_get("eventing")?,
        soap: row.try_get("soap")?,
        addressing: row.try_get("addressing")?,
        notify_to: row.try_get("notify_to")?,
        end_to: row.try_get("end_to")?,
        delivery_mode: row.try_get("delivery_mode")?,
        format: row.try_get("format")?,
        filter: row.try_get("filter")?,
        expires_at: row.try_get("expires_at")?,
        expiry_kind: row.try_get("expiry_kind")?,
        created_at: row.try_get("created_at")?,
        manager_address: row.try_get("manager_address")?,
    }
    .decode()
}

fn decode_progress(row: &SqliteRow) -> Result<DeliveryProgress, StoreError> {
    ProgressRow {
        cursor: row.try_get("cursor")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        failing_since: row.try_get("failing_since")?,
        last_error: row.try_get("last_error")?,
    }
    .decode()
}

fn decode_event(row: &SqliteRow) -> Result<Event, StoreError> {
    EventRow {
        source: row.try_get("source")?,
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        action: row.try_get("action")?,
        payload: row.try_get("payload")?,
        published_at: row.try_get("published_at")?,
    }
    .decode()
}

fn seq_column(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<u64, StoreError> {
        let row = SubscriptionRow::encode(subscription);
        let cursor: i64 = sqlx::query_scalar(concat!(
            "INSERT INTO subscriptions (",
            subscription_columns!(),
            ", status, cursor)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active',
                     COALESCE((SELECT last_seq FROM source_heads WHERE source = ?), 0))
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
        .bind(subscription.source.as_str())
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
             WHERE id = ? AND status = 'active' AND (expires_at IS NULL OR expires_at > ?)"
        ))
        .bind(id.key())
        .bind(millis(now))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn renew_subscription(
        &self,
        id: SubscriptionId,
        expires_at: Option<Timestamp>,
        kind: ExpiryKind,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE subscriptions SET expires_at = ?, expiry_kind = ?
             WHERE id = ? AND status = 'active' AND (expires_at IS NULL OR expires_at > ?)",
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
        let row = sqlx::query(concat!(
            "UPDATE subscriptions SET status = 'ended', end_reason = ?, ended_at = ?,
                 end_notice = CASE WHEN end_to IS NULL THEN NULL ELSE 'pending' END,
                 end_next_at = ?
             WHERE id = ? AND status = 'active' AND (expires_at IS NULL OR expires_at > ?)
             RETURNING ",
            subscription_columns!()
        ))
        .bind(reason.as_str())
        .bind(millis(now))
        .bind(millis(now))
        .bind(id.key())
        .bind(millis(now))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn end_expired(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError> {
        // The inner SELECT walks the partial index on expires_at from its start and stops at
        // `now`: the cost is the number of expired rows, not the table size.
        let rows = sqlx::query(concat!(
            "UPDATE subscriptions SET status = 'ended', end_reason = 'expired', ended_at = ?1,
                 end_notice = CASE WHEN end_to IS NULL THEN NULL ELSE 'pending' END,
                 end_next_at = ?1
             WHERE id IN (
                 SELECT id FROM subscriptions
                 WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= ?1
                 ORDER BY expires_at LIMIT ?2)
             RETURNING ",
            subscription_columns!()
        ))
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    async fn count_active(&self, now: Timestamp) -> Result<Vec<(SourceName, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, COUNT(*) AS n FROM subscriptions
             WHERE status = 'active' AND (expires_at IS NULL OR expires_at > ?)
             GROUP BY source",
        )
        .bind(millis(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("source")?;
                let count: i64 = row.try_get("n")?;
                let source = SourceName::parse(&name)
                    .ok_or_else(|| StoreError::Corrupt(format!("source = {name:?}")))?;
                Ok((source, u64::try_from(count).unwrap_or(0)))
            })
            .collect()
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let last: i64 = sqlx::query_scalar(
            "INSERT INTO source_heads (source, last_seq) VALUES (?1, ?2)
             ON CONFLICT (source) DO UPDATE SET last_seq = last_seq + ?2
             RETURNING last_seq",
        )
        .bind(source.as_str())
        .bind(count)
        .fetch_one(&mut *tx)
        .await?;
        let first = last - count + 1;
        let mut appended = Vec::with_capacity(events.len());
        for (offset, event) in (0..).zip(events) {
            let appended_event = Event {
                source: source.clone(),
                seq: u64::try_from(first + offset).unwrap_or(0),
                id: crate::engine::event::EventId::new(),
                action: event.action.clone(),
                payload: event.payload.clone(),
                published_at: now,
            };
            sqlx::query(
                "INSERT INTO events (source, seq, id, action, payload, published_at)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(source.as_str())
            .bind(first + offset)
            .bind(appended_event.id.to_string())
            .bind(&appended_event.action)
            .bind(&appended_event.payload)
            .bind(millis(now))
            .execute(&mut *tx)
            .await?;
            appended.push(appended_event);
        }
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
             WHERE source = ? AND seq > ? ORDER BY seq LIMIT ?",
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
            .map(|row| {
                let name: String = row.try_get("source")?;
                let seq: i64 = row.try_get("last_seq")?;
                let source = SourceName::parse(&name)
                    .ok_or_else(|| StoreError::Corrupt(format!("source = {name:?}")))?;
                Ok((source, u64::try_from(seq).unwrap_or(0)))
            })
            .collect()
    }

    async fn active_subscriptions(
        &self,
        now: Timestamp,
    ) -> Result<Vec<(Subscription, DeliveryProgress)>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            subscription_columns!(),
            ", cursor, attempts, next_attempt_at, failing_since, last_error
             FROM subscriptions
             WHERE status = 'active' AND (expires_at IS NULL OR expires_at > ?)"
        ))
        .bind(millis(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((decode(row)?, decode_progress(row)?)))
            .collect()
    }

    async fn save_progress(
        &self,
        updates: &[(SubscriptionId, DeliveryProgress)],
    ) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for (id, progress) in updates {
            let row = ProgressRow::encode(progress);
            sqlx::query(
                "UPDATE subscriptions SET cursor = ?, attempts = ?, next_attempt_at = ?,
                     failing_since = ?, last_error = ?
                 WHERE id = ? AND status = 'active'",
            )
            .bind(row.cursor)
            .bind(row.attempts)
            .bind(row.next_attempt_at)
            .bind(row.failing_since)
            .bind(row.last_error)
            .bind(id.key())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn subscription_record(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            subscription_columns!(),
            ", cursor, attempts, next_attempt_at, failing_since, last_error,
               status, end_reason, ended_at, end_notice
             FROM subscriptions WHERE id = ?"
        ))
        .bind(id.key())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let status: String = row.try_get("status")?;
        let status = match status.as_str() {
            "active" => SubscriptionStatus::Active,
            _ => {
                let reason: Option<String> = row.try_get("end_reason")?;
                let reason = reason
                    .as_deref()
                    .and_then(EndReason::from_name)
                    .ok_or_else(|| StoreError::Corrupt(format!("end_reason = {reason:?}")))?;
                let at: Option<i64> = row.try_get("ended_at")?;
                SubscriptionStatus::Ended {
                    reason,
                    at: timestamp(at.unwrap_or(0))?,
                }
            }
        };
        let notice: Option<String> = row.try_get("end_notice")?;
        Ok(Some(SubscriptionRecord {
            subscription: decode(&row)?,
            status,
            progress: decode_progress(&row)?,
            end_notice: notice.as_deref().and_then(EndNotice::from_name),
        }))
    }

    async fn due_end_notices(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(Subscription, EndReason, u32)>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            subscription_columns!(),
            ", end_reason, end_attempts FROM subscriptions
             WHERE end_notice = 'pending' AND end_next_at <= ?
             ORDER BY end_next_at LIMIT ?"
        ))
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let reason: String = row.try_get("end_reason")?;
                let reason = EndReason::from_name(&reason)
                    .ok_or_else(|| StoreError::Corrupt(format!("end_reason = {reason:?}")))?;
                let attempts: i64 = row.try_get("end_attempts")?;
                Ok((
                    decode(row)?,
                    reason,
                    u32::try_from(attempts).unwrap_or(u32::MAX),
                ))
            })
            .collect()
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
            "UPDATE subscriptions SET end_notice = ?, end_attempts = ?, end_next_at = ?,
                 end_error = ?
             WHERE id = ? AND end_notice = 'pending'",
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
        up_to_seq: u64,
        published_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let result =
            sqlx::query("DELETE FROM events WHERE source = ? AND seq <= ? AND published_at < ?")
                .bind(source.as_str())
                .bind(seq_column(up_to_seq))
                .bind(millis(published_before))
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected())
    }
}
