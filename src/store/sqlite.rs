//! The embedded store: one SQLite database file in WAL mode with `synchronous=FULL`, so a
//! commit has reached the disk before the call returns.

use std::fs::File;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Executor;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::{Mutex, mpsc, oneshot};
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

/// Schema migrations, applied in order at start; each runs once, in a transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/sqlite/0001_subscriptions.sql")),
    (2, include_str!("migrations/sqlite/0002_event_log.sql")),
    (3, include_str!("migrations/sqlite/0003_nodes.sql")),
    (
        4,
        include_str!("migrations/sqlite/0004_logs_and_readers.sql"),
    ),
];

/// Most new subscriptions committed in one transaction.
const MAX_INSERT_BATCH: usize = 512;

/// The embedded SQLite store.
///
/// SQLite has one writer at a time. Writers here take turns on an in-process lock instead of
/// colliding on the database lock (whose busy handler sleeps), and new subscriptions arriving
/// together share one transaction and one fsync (group commit), as published events do.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    write: Arc<Mutex<()>>,
    inserts: mpsc::Sender<InsertRequest>,
    /// Ends the group-commit task, which [`Store::close`] then awaits.
    closing: CancellationToken,
    tasks: TaskTracker,
    /// An exclusive lock on `herald.lock` in the data directory, held while the store is open,
    /// so that two herald processes never share one embedded store.
    lock: Arc<std::sync::Mutex<Option<File>>>,
}

impl SqliteStore {
    /// Opens (creating if needed) `herald.db` in `data_dir` and applies pending migrations.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let lock_path = data_dir.join("herald.lock");
        let lock = File::create(&lock_path).map_err(|source| StoreError::DataDir {
            path: lock_path.display().to_string(),
            source,
        })?;
        lock.try_lock().map_err(|_| StoreError::InUse {
            path: data_dir.display().to_string(),
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
        let write = Arc::new(Mutex::new(()));
        let (inserts, requests) = mpsc::channel(4 * MAX_INSERT_BATCH);
        let closing = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(insert_batches(
            pool.clone(),
            write.clone(),
            requests,
            closing.clone(),
        ));
        let store = SqliteStore {
            pool,
            write,
            inserts,
            closing,
            tasks,
            lock: Arc::new(std::sync::Mutex::new(Some(lock))),
        };
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
}

/// Decodes a page of owned subscriptions sent as a JSON array of arrays, each holding the
/// subscription columns and then the progress columns.
fn decode_json_page(page: &str) -> Result<Vec<(Subscription, DeliveryProgress)>, StoreError> {
    use serde_json::Value;
    let rows: Vec<Vec<Value>> = serde_json::from_str(page)
        .map_err(|err| StoreError::Corrupt(format!("owned page: {err}")))?;
    let text = |row: &[Value], i: usize| -> Result<String, StoreError> {
        row.get(i)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Corrupt(format!("owned page: column {i} is not text")))
    };
    let optional_text =
        |row: &[Value], i: usize| row.get(i).and_then(Value::as_str).map(str::to_owned);
    let int = |row: &[Value], i: usize| -> Result<i64, StoreError> {
        row.get(i)
            .and_then(Value::as_i64)
            .ok_or_else(|| StoreError::Corrupt(format!("owned page: column {i} is not a number")))
    };
    let optional_int = |row: &[Value], i: usize| row.get(i).and_then(Value::as_i64);
    rows.iter()
        .map(|row| {
            let subscription = SubscriptionRow {
                id: text(row, 0)?,
                source: text(row, 1)?,
                eventing: text(row, 2)?,
                soap: text(row, 3)?,
                addressing: text(row, 4)?,
                notify_to: text(row, 5)?,
                end_to: optional_text(row, 6),
                delivery_mode: text(row, 7)?,
                format: text(row, 8)?,
                filter: optional_text(row, 9),
                expires_at: optional_int(row, 10),
                expiry_kind: text(row, 11)?,
                created_at: int(row, 12)?,
                manager_address: text(row, 13)?,
                log_kind: text(row, 14)?,
                delivery: text(row, 15)?,
            }
            .decode()?;
            let progress = ProgressRow {
                cursor: int(row, 16)?,
                attempts: int(row, 17)?,
                next_attempt_at: optional_int(row, 18),
                failing_since: optional_int(row, 19),
                last_error: optional_text(row, 20),
            }
            .decode()?;
            Ok((subscription, progress))
        })
        .collect()
}

/// A new subscription waiting for the next group commit.
struct InsertRequest {
    row: SubscriptionRow,
    owner: String,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// Commits new subscriptions in batches: whatever has queued while the previous commit ran goes
/// into the next transaction. Should a batch fail, its subscriptions are retried one by one, so
/// one bad row cannot refuse the others.
async fn insert_batches(
    pool: SqlitePool,
    write: Arc<Mutex<()>>,
    mut requests: mpsc::Receiver<InsertRequest>,
    closing: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            request = requests.recv() => match request {
                Some(request) => request,
                None => return,
            },
            () = closing.cancelled() => {
                // Whatever still waits is refused, not lost silently: its Subscribe fails.
                requests.close();
                while let Ok(request) = requests.try_recv() {
                    let _ = request.reply.send(Err(StoreError::Closed));
                }
                return;
            }
        };
        let mut batch = vec![first];
        let _writing = write.lock().await;
        while batch.len() < MAX_INSERT_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        if batch.len() > 1
            && let Ok(cursors) = insert_all(&pool, &batch).await
        {
            for (request, cursor) in batch.into_iter().zip(cursors) {
                let _ = request.reply.send(Ok(cursor));
            }
            continue;
        }
        for request in batch {
            let result = insert_all(&pool, std::slice::from_ref(&request))
                .await
                .map(|cursors| cursors.first().copied().unwrap_or(0));
            let _ = request.reply.send(result);
        }
    }
}

/// Inserts subscriptions in one transaction; returns each one's starting cursor.
async fn insert_all(pool: &SqlitePool, batch: &[InsertRequest]) -> Result<Vec<u64>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut cursors = Vec::with_capacity(batch.len());
    for InsertRequest { row, owner, .. } in batch {
        let cursor: i64 = sqlx::query_scalar(concat!(
            "INSERT INTO subscriptions (",
            subscription_columns!(),
            ", status, owner, cursor)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?,
                     COALESCE((SELECT last_seq FROM source_heads WHERE source = ?), 0))
             RETURNING cursor"
        ))
        .bind(&row.id)
        .bind(&row.source)
        .bind(&row.eventing)
        .bind(&row.soap)
        .bind(&row.addressing)
        .bind(&row.notify_to)
        .bind(&row.end_to)
        .bind(&row.delivery_mode)
        .bind(&row.format)
        .bind(&row.filter)
        .bind(row.expires_at)
        .bind(&row.expiry_kind)
        .bind(row.created_at)
        .bind(&row.manager_address)
        .bind(&row.log_kind)
        .bind(&row.delivery)
        .bind(owner)
        .bind(&row.source)
        .fetch_one(&mut *tx)
        .await?;
        cursors.push(u64::try_from(cursor).unwrap_or(0));
    }
    tx.commit().await?;
    Ok(cursors)
}

/// The embedded store's clock for node leases (it has one node; the lease only guards against
/// a second process, which the lock file already refuses).
fn wall_clock_millis() -> i64 {
    millis(Timestamp::now())
}

/// Claims orphans: no owner, or an owner whose lease has lapsed.
const CLAIM_ORPHANS: &str = concat!(
    "UPDATE subscriptions SET owner = ?1
             WHERE id IN (
                 SELECT id FROM subscriptions WHERE status = 'active' AND owner IS NULL
                 UNION ALL
                 SELECT s.id FROM nodes n CROSS JOIN subscriptions s
                     ON s.owner = n.id AND s.status = 'active'
                 WHERE n.lease_until < ?2 AND n.id <> ?1
                 LIMIT ?4)
             AND (expires_at IS NULL OR expires_at > ?3)
             RETURNING ",
    subscription_columns!(),
    ", ",
    progress_columns!()
);

/// A page of owned subscriptions as one JSON value.
const OWNED_PAGE: &str = concat!(
    "SELECT json_group_array(json_array(",
    subscription_columns!(),
    ", ",
    progress_columns!(),
    ")) AS page, MAX(id) AS last_id, COUNT(*) AS n FROM (
                 SELECT * FROM subscriptions
                 WHERE +owner = ? AND status = 'active'
                   AND (expires_at IS NULL OR expires_at > ?) AND id > ?
                 ORDER BY id LIMIT ?)"
);

/// Saves a batch of progress given as a JSON array; returns the ids saved.
const SAVE_PROGRESS: &str = "UPDATE subscriptions SET cursor = u.cursor, attempts = u.attempts,
                 next_attempt_at = u.next_at, failing_since = u.failing, last_error = u.error
             FROM (SELECT json_extract(value, '$[0]') AS uid,
                          json_extract(value, '$[1]') AS cursor,
                          json_extract(value, '$[2]') AS attempts,
                          json_extract(value, '$[3]') AS next_at,
                          json_extract(value, '$[4]') AS failing,
                          json_extract(value, '$[5]') AS error
                   FROM json_each(?)) AS u
             WHERE subscriptions.id = u.uid AND subscriptions.status = 'active'
               AND +subscriptions.owner = ?
             RETURNING id";

#[async_trait]
impl Store for SqliteStore {
    async fn insert_subscription(
        &self,
        subscription: &Subscription,
        owner: &NodeId,
    ) -> Result<u64, StoreError> {
        let (reply, response) = oneshot::channel();
        let request = InsertRequest {
            row: SubscriptionRow::encode(subscription),
            owner: owner.as_str().to_owned(),
            reply,
        };
        self.inserts
            .send(request)
            .await
            .map_err(|_| StoreError::Closed)?;
        response.await.map_err(|_| StoreError::Closed)?
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
        row.as_ref().map(decode_subscription).transpose()
    }

    async fn renew_subscription(
        &self,
        id: SubscriptionId,
        expires_at: Option<Timestamp>,
        kind: ExpiryKind,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let _writing = self.write.lock().await;
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
        let _writing = self.write.lock().await;
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
        row.as_ref().map(decode_subscription).transpose()
    }

    async fn end_expired(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError> {
        let _writing = self.write.lock().await;
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
        rows.iter().map(decode_subscription).collect()
    }

    async fn append_events(
        &self,
        source: &SourceName,
        events: &[NewEvent],
        now: Timestamp,
    ) -> Result<Vec<Event>, StoreError> {
        let _writing = self.write.lock().await;
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
        let appended = super::number_events(source, events, last - count + 1, now);
        for event in &appended {
            sqlx::query(
                "INSERT INTO events (source, seq, id, action, payload, published_at)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(source.as_str())
            .bind(seq_column(event.seq))
            .bind(event.id.to_string())
            .bind(&event.action)
            .bind(&event.payload)
            .bind(millis(now))
            .execute(&mut *tx)
            .await?;
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
            .map(|row| decode_source_count(row, "last_seq"))
            .collect()
    }

    async fn register_node(&self, node: &NodeId, ttl: Duration) -> Result<(), StoreError> {
        let _writing = self.write.lock().await;
        sqlx::query(
            "INSERT INTO nodes (id, lease_until) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET lease_until = ?2",
        )
        .bind(node.as_str())
        .bind(wall_clock_millis().saturating_add(duration_millis(ttl)))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn check_writable(&self, node: &NodeId) -> Result<(), StoreError> {
        let _writing = self.write.lock().await;
        sqlx::query("UPDATE nodes SET lease_until = lease_until WHERE id = ?")
            .bind(node.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn renew_node(&self, node: &NodeId, ttl: Duration) -> Result<bool, StoreError> {
        let _writing = self.write.lock().await;
        let now = wall_clock_millis();
        let result =
            sqlx::query("UPDATE nodes SET lease_until = ? WHERE id = ? AND lease_until >= ?")
                .bind(now.saturating_add(duration_millis(ttl)))
                .bind(node.as_str())
                .bind(now)
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn release_node(&self, node: &NodeId) -> Result<(), StoreError> {
        let _writing = self.write.lock().await;
        sqlx::query("UPDATE nodes SET lease_until = 0 WHERE id = ?")
            .bind(node.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn forget_dead_nodes(&self, after: Duration) -> Result<u64, StoreError> {
        let _writing = self.write.lock().await;
        let result = sqlx::query(
            "DELETE FROM nodes WHERE lease_until < ?
                 AND NOT EXISTS (SELECT 1 FROM subscriptions
                                 WHERE owner = nodes.id AND status = 'active')",
        )
        .bind(wall_clock_millis().saturating_sub(duration_millis(after)))
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
        let _writing = self.write.lock().await;
        // Two index lookups (no owner; owners whose lease lapsed), never a scan of every row:
        // CROSS JOIN makes SQLite walk the few nodes and look their subscriptions up, rather
        // than walk every subscription and look its node up.
        let rows = sqlx::query(CLAIM_ORPHANS)
            .bind(node.as_str())
            .bind(wall_clock_millis())
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
        // A page comes back as one JSON value rather than one row per subscription: the SQLite
        // driver hands each row across threads, which dominated a start with a million. The
        // unary + keeps SQLite off the owner index (every row has the one owner here), which
        // would read and sort every owned row for each page instead of walking the primary key.
        let row = sqlx::query(OWNED_PAGE)
            .bind(node.as_str())
            .bind(millis(now))
            .bind(after.map(|token| token.0).unwrap_or_default())
            .bind(i64::from(limit))
            .fetch_one(&self.pool)
            .await?;
        let count = row.int("n")?;
        let items = decode_json_page(&row.text("page")?)?;
        let next = match row.optional_text("last_id")? {
            Some(last) if count == i64::from(limit) => Some(PageToken(last)),
            _ => None,
        };
        Ok(Page { items, next })
    }

    async fn save_progress(
        &self,
        node: &NodeId,
        updates: &[(SubscriptionId, DeliveryProgress)],
    ) -> Result<Vec<SubscriptionId>, StoreError> {
        let _writing = self.write.lock().await;
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        // One statement for the whole batch, its rows passed as one JSON array; the unary +
        // keeps SQLite looking rows up by id rather than scanning the owner index.
        let rows: Vec<serde_json::Value> = updates
            .iter()
            .map(|(id, progress)| {
                let row = ProgressRow::encode(progress);
                serde_json::json!([
                    id.key(),
                    row.cursor,
                    row.attempts,
                    row.next_attempt_at,
                    row.failing_since,
                    row.last_error
                ])
            })
            .collect();
        let saved: Vec<String> = sqlx::query_scalar(SAVE_PROGRESS)
            .bind(serde_json::Value::Array(rows).to_string())
            .bind(node.as_str())
            .fetch_all(&self.pool)
            .await?;
        let saved: std::collections::HashSet<String> = saved.into_iter().collect();
        Ok(updates
            .iter()
            .filter(|(id, _)| !saved.contains(&id.key()))
            .map(|(id, _)| *id)
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
            ", status, end_reason, ended_at, end_notice, owner FROM subscriptions WHERE id = ?"
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
        let _writing = self.write.lock().await;
        let rows = sqlx::query(concat!(
            "UPDATE subscriptions SET end_next_at = ?2
             WHERE id IN (
                 SELECT id FROM subscriptions
                 WHERE end_notice = 'pending' AND end_next_at <= ?1
                 ORDER BY end_next_at LIMIT ?3)
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
        let _writing = self.write.lock().await;
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
        published_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let _writing = self.write.lock().await;
        let result = sqlx::query(
            "DELETE FROM events WHERE source = ?1 AND published_at < ?2
                 AND seq <= COALESCE(
                     (SELECT MIN(cursor) FROM subscriptions
                      WHERE source = ?1 AND status = 'active'),
                     (SELECT last_seq FROM source_heads WHERE source = ?1),
                     0)",
        )
        .bind(source.as_str())
        .bind(millis(published_before))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    async fn signals(&self) -> Result<Option<mpsc::Receiver<Signal>>, StoreError> {
        Ok(None)
    }

    async fn close(&self) {
        self.closing.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.pool.close().await;
        let lock = self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(lock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::subscription::{
        EndpointRef, EventingVersion, LogKind, NotificationFormat, ReaderDelivery, SoapVersion,
        WireDialect, WsaVersion,
    };

    fn subscription() -> Subscription {
        Subscription {
            id: SubscriptionId::new_random(),
            source: SourceName::parse("default").unwrap(),
            log: LogKind::Source,
            delivery: ReaderDelivery::SoapPush,
            dialect: WireDialect {
                eventing: EventingVersion::W3c2011,
                soap: SoapVersion::Soap12,
                addressing: WsaVersion::W3c2005,
            },
            notify_to: EndpointRef {
                address: "http://127.0.0.1:1/n".into(),
                reference_parameters: Vec::new(),
                reference_properties: Vec::new(),
            },
            end_to: None,
            delivery_mode: "push".into(),
            format: NotificationFormat::Unwrap,
            filter: None,
            expires_at: None,
            expiry_kind: ExpiryKind::Duration,
            // Stored to the millisecond.
            created_at: Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap(),
            manager_address: String::new(),
        }
    }

    #[tokio::test]
    async fn orphans_of_a_lapsed_node_are_claimed_once_and_the_node_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let (a, b) = (NodeId::parse("a").unwrap(), NodeId::parse("b").unwrap());
        store
            .register_node(&a, Duration::from_secs(60))
            .await
            .unwrap();
        store
            .register_node(&b, Duration::from_secs(60))
            .await
            .unwrap();
        let owned = subscription();
        store.insert_subscription(&owned, &a).await.unwrap();
        let now = Timestamp::now();
        assert!(
            store.claim_orphans(&b, now, 10).await.unwrap().is_empty(),
            "a is alive"
        );
        assert_eq!(store.forget_dead_nodes(Duration::ZERO).await.unwrap(), 0);

        store.release_node(&a).await.unwrap();
        assert!(
            !store.renew_node(&a, Duration::from_secs(60)).await.unwrap(),
            "lapsed"
        );
        assert_eq!(
            store.forget_dead_nodes(Duration::ZERO).await.unwrap(),
            0,
            "owns one"
        );
        let claimed = store.claim_orphans(&b, now, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].0.id, owned.id);
        assert!(
            store.claim_orphans(&b, now, 10).await.unwrap().is_empty(),
            "claimed once"
        );
        // Progress from the old owner is refused now; the new owner's is kept.
        let progress = DeliveryProgress {
            cursor: 7,
            ..DeliveryProgress::default()
        };
        let update = [(owned.id, progress)];
        assert_eq!(store.save_progress(&a, &update).await.unwrap(), [owned.id]);
        assert!(store.save_progress(&b, &update).await.unwrap().is_empty());
        let page = store.owned_subscriptions(&b, now, None, 10).await.unwrap();
        assert_eq!(page.items[0].1.cursor, 7);
        assert_eq!(page.next, None, "one page");
        assert_eq!(
            store.forget_dead_nodes(Duration::ZERO).await.unwrap(),
            1,
            "a owns nothing"
        );
        store.close().await;
    }

    #[tokio::test]
    async fn owned_subscriptions_come_in_pages_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let node = NodeId::parse("n").unwrap();
        let mut ids = Vec::new();
        for _ in 0..25 {
            let mut owned = subscription();
            owned.end_to = Some(owned.notify_to.clone());
            store.insert_subscription(&owned, &node).await.unwrap();
            ids.push(owned);
        }
        let mut loaded = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .owned_subscriptions(&node, Timestamp::now(), after, 10)
                .await
                .unwrap();
            assert!(page.items.len() <= 10);
            loaded.extend(page.items.into_iter().map(|(s, _)| s));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        ids.sort_by_key(|s| s.id.key());
        assert_eq!(loaded, ids, "every subscription once, whole, in id order");
        store.close().await;
    }

    /// The statements that run per page at start, per progress batch and per poll must use the
    /// indexes that keep them proportional to their work, not to the table.
    #[tokio::test]
    async fn hot_statements_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        for (name, sql, args, wanted, refused) in [
            (
                "owned page",
                OWNED_PAGE,
                4,
                "sqlite_autoindex_subscriptions_1 (id>?)",
                "TEMP B-TREE",
            ),
            (
                "save progress",
                SAVE_PROGRESS,
                2,
                "sqlite_autoindex_subscriptions_1 (id=?)",
                "subscriptions_owner",
            ),
            (
                "claim orphans",
                CLAIM_ORPHANS,
                4,
                "SEARCH s USING INDEX subscriptions_owner (owner=?)",
                "SCAN s",
            ),
        ] {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
            for _ in 0..args {
                query = query.bind(Option::<String>::None);
            }
            let plan: Vec<String> = query
                .fetch_all(&store.pool)
                .await
                .unwrap()
                .iter()
                .map(|row| row.text("detail").unwrap())
                .collect();
            let plan = plan.join("\n");
            assert!(plan.contains(wanted), "{name}: {plan}");
            assert!(!plan.contains(refused), "{name}: {plan}");
        }
        store.close().await;
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        assert!(matches!(
            SqliteStore::open(dir.path()).await,
            Err(StoreError::InUse { .. })
        ));
        store.close().await;
        SqliteStore::open(dir.path()).await.unwrap().close().await;
    }
}
