//! The embedded store: one SQLite database file in WAL mode with `synchronous=FULL`, so a
//! commit has reached the disk before the call returns. The log is copied back into the file
//! by a task of its own, off the commit path ([`checkpoints`]).

use std::fs::File;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::{
    Columns, ProgressRow, decode_ended, decode_event, decode_json_page, decode_progress,
    decode_record, decode_source_count, decode_subscription, decode_with_progress, duration_millis,
    encode_endpoint, millis, seq_column, stored_seq,
};
use super::kept_name::lock_data_dir;
use super::sql;
use super::{NodeId, OwnedPages, PageItems, Signal, Store, StoreError};
use crate::domain::event::{Event, NewEvent};
use crate::domain::expiry::ExpiryKind;
use crate::domain::subscription::{
    DeliveryProgress, EndNotice, EndReason, Ended, EndpointRef, SoapVersion, SourceName,
    Subscription, SubscriptionId, SubscriptionRecord, WsaVersion,
};

mod appends;
mod batch_writes;
mod channels;
mod checkpoints;
mod direct;
mod migrations;
mod pulls;
mod queue_writes;
mod queues;
mod statements;
mod turns;
mod wal_writes;
mod webhooks;

use super::channels::ChannelQueues;
use super::group_commit::Queue;
use super::subscription_writes::SubscriptionWrites;
use batch_writes::{SqliteBatches, SqliteEnds, SqliteInserts, SqlitePullAdvances, SqliteRenewals};
use statements::{CLAIM_ORPHANS, NOT_OWNED, OWNED_PAGE, SAVE_PROGRESS, wall_clock_millis};
use turns::WriteTurns;

/// The embedded SQLite store.
///
/// SQLite has one writer at a time. Writers here take turns on an in-process lock instead of
/// colliding on the database lock (whose busy handler sleeps), and new subscriptions arriving
/// together share one transaction and one fsync (group commit), as published events do.
#[derive(Clone)]
pub struct SqliteStore {
    /// Reads.
    pool: SqlitePool,
    /// Writes, each within the writer lock `write`: one connection, whose page cache no other
    /// connection's commit empties.
    writer: SqlitePool,
    write: Arc<WriteTurns>,
    /// To the group commits of Subscribes, Renews and ends.
    writes: SubscriptionWrites<SqliteInserts, SqliteRenewals, SqliteEnds, SqlitePullAdvances>,
    /// To the group commits of channel visits and changes.
    channels: ChannelQueues<channels::SqliteSightings, channels::SqliteChannelWrites>,
    /// To the group commit of invocations' and agents' writes.
    queue_writes: Queue<queue_writes::SqliteQueueWrites>,
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
        direct::configure_library();
        let lock = lock_data_dir(data_dir)?;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(data_dir.join("herald.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            // The log is copied back by a task of its own, not by whichever commit crosses a
            // threshold (see `checkpoints`).
            .pragma("wal_autocheckpoint", "0")
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        // The writer's log frames go out in one call per run too (`wal_writes`: it syncs at
        // each commit, as every connection here does).
        let writer_options = match wal_writes::register().and_then(|name| name.to_str().ok()) {
            Some(name) => options.clone().vfs(name),
            None => options.clone(),
        };
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(writer_options)
            .await?;
        let write = Arc::new(WriteTurns::default());
        let closing = CancellationToken::new();
        let tasks = TaskTracker::new();
        let direct = direct::Direct::open(&data_dir.join("herald.db"))?;
        let batches = SqliteBatches {
            writer: writer.clone(),
            write: write.clone(),
            direct: Arc::new(std::sync::Mutex::new(direct)),
        };
        let channels = ChannelQueues::start(
            (
                channels::SqliteSightings(batches.clone()),
                channels::SqliteChannelWrites(batches.clone()),
            ),
            &tasks,
            &closing,
        );
        let writes = SubscriptionWrites::start(batches.clone().committers(), &tasks, &closing);
        let queue_writes = Queue::start(
            queue_writes::SqliteQueueWrites(batches.clone()),
            &tasks,
            closing.clone(),
        );
        checkpoints::start(
            options,
            write.clone(),
            checkpoints::Limits::STORE,
            &tasks,
            closing.clone(),
        );
        let store = SqliteStore {
            pool,
            writer,
            write,
            writes,
            channels,
            queue_writes,
            closing,
            tasks,
            lock: Arc::new(std::sync::Mutex::new(Some(lock))),
        };
        store.migrate().await?;
        Ok(store)
    }
}

/// Active subscriptions per log. The embedded store has one node: counting every active row
/// walks the (source) index alone, where the owner's index would visit each row.
const OWNED_COUNTS: &str = "SELECT source, COUNT(*) AS n FROM subscriptions
     WHERE status = 'active' AND ?1 IS NOT NULL GROUP BY source";

#[async_trait]
impl Store for SqliteStore {
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
        let row = sqlx::query(sql::ACTIVE_SUBSCRIPTION.sqlite())
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
        let _writing = self.write.lock().await;
        let row = sqlx::query(sql::REDIRECT.sqlite())
            .bind(encode_endpoint(endpoint))
            .bind(soap.as_str())
            .bind(addressing.as_str())
            .bind(owner.as_str())
            .bind(id.key())
            .bind(millis(now))
            .fetch_optional(&self.writer)
            .await?;
        row.as_ref()
            .map(|row| Ok((decode_subscription(row)?, decode_progress(row)?)))
            .transpose()
    }

    async fn end_expired(&self, now: Timestamp, limit: u32) -> Result<Vec<Ended>, StoreError> {
        let _writing = self.write.lock().await;
        // Each inner SELECT walks the partial index on the sweep marks from its start and stops
        // at `now`: the cost is the number of marks passed, not the table size.
        let mut tx = self.writer.begin().await?;
        sqlx::query(sql::CATCH_UP_SWEEP_MARKS_SQLITE.sqlite())
            .bind(millis(now))
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(sql::END_EXPIRED_SQLITE.sqlite())
            .bind(millis(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(decode_ended).collect()
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
        let _writing = self.write.lock().await;
        let mut appended = appends::append(&self.writer, &[(source, events)], now).await?;
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
        let _writing = self.write.lock().await;
        appends::append(&self.writer, &batches, now).await
    }

    async fn events_after(
        &self,
        source: &SourceName,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(sql::EVENTS_AFTER.sqlite())
            .bind(source.as_str())
            .bind(seq_column(after))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_event).collect()
    }

    async fn forget_log(&self, log: &SourceName) -> Result<bool, StoreError> {
        let _writing = self.write.lock().await;
        let result = sqlx::query(sql::FORGET_LOG.sqlite())
            .bind(log.as_str())
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn oldest_retained(&self, log: &SourceName) -> Result<Option<u64>, StoreError> {
        let oldest: Option<i64> = sqlx::query_scalar(sql::OLDEST_RETAINED.sqlite())
            .bind(log.as_str())
            .fetch_one(&self.pool)
            .await?;
        oldest.map(|seq| stored_seq("seq", seq)).transpose()
    }

    async fn log_head(&self, log: &SourceName) -> Result<u64, StoreError> {
        let head: Option<i64> = sqlx::query_scalar(sql::LOG_HEAD.sqlite())
            .bind(log.as_str())
            .fetch_optional(&self.pool)
            .await?;
        head.map_or(Ok(0), |head| stored_seq("last_seq", head))
    }

    async fn source_heads(&self) -> Result<Vec<(SourceName, u64)>, StoreError> {
        let rows = sqlx::query(sql::SOURCE_HEADS.sqlite())
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
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn check_writable(&self, node: &NodeId) -> Result<(), StoreError> {
        let _writing = self.write.lock().await;
        sqlx::query(sql::CHECK_WRITABLE.sqlite())
            .bind(node.as_str())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn renew_node(&self, node: &NodeId, ttl: Duration) -> Result<bool, StoreError> {
        // Ahead of queued batches: a lease must not lapse because the node is busy.
        let _writing = self.write.first().await;
        let now = wall_clock_millis();
        let result =
            sqlx::query("UPDATE nodes SET lease_until = ? WHERE id = ? AND lease_until >= ?")
                .bind(now.saturating_add(duration_millis(ttl)))
                .bind(node.as_str())
                .bind(now)
                .execute(&self.writer)
                .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn release_node(&self, node: &NodeId) -> Result<(), StoreError> {
        let _writing = self.write.lock().await;
        sqlx::query(sql::RELEASE_NODE.sqlite())
            .bind(node.as_str())
            .execute(&self.writer)
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
        .execute(&self.writer)
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
            .fetch_all(&self.writer)
            .await?;
        decode_with_progress(&rows)
    }

    fn owned(&self, node: &NodeId, now: Timestamp, page: usize) -> OwnedPages {
        let (pool, node) = (self.pool.clone(), node.clone());
        OwnedPages::read(move |pages| async move {
            let mut after = 0;
            loop {
                let (items, next) = owned_page(&pool, &node, now, after, page).await?;
                if !pages.send(items).await {
                    return Ok(());
                }
                match next {
                    Some(next) => after = next,
                    None => return Ok(()),
                }
            }
        })
    }

    async fn owned_counts(&self, node: &NodeId) -> Result<Vec<(SourceName, u64)>, StoreError> {
        let rows = sqlx::query(OWNED_COUNTS)
            .bind(node.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| decode_source_count(row, "n"))
            .collect()
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
        // Without RETURNING: the driver hands each returned row over from its thread one at a
        // time, and a fan-out saves thousands of cursors a batch (a profile at 10,000
        // subscribers: most of herald's context switches were those hand-offs). Which ids were
        // not saved is asked only when some were not.
        let saved = sqlx::query(SAVE_PROGRESS)
            .bind(serde_json::Value::Array(rows).to_string())
            .bind(node.as_str())
            .execute(&self.writer)
            .await?;
        if saved.rows_affected() == updates.len() as u64 {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = updates.iter().map(|(id, _)| id.key()).collect();
        let missing: Vec<String> = sqlx::query_scalar(NOT_OWNED)
            .bind(serde_json::to_string(&ids).map_err(|err| StoreError::Corrupt(err.to_string()))?)
            .bind(node.as_str())
            .fetch_all(&self.writer)
            .await?;
        let missing: std::collections::HashSet<String> = missing.into_iter().collect();
        Ok(updates
            .iter()
            .filter(|(id, _)| missing.contains(&id.key()))
            .map(|(id, _)| *id)
            .collect())
    }

    async fn subscription_record(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        let row = sqlx::query(sql::SUBSCRIPTION_RECORD.sqlite())
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
        let rows = sqlx::query(sql::DUE_END_NOTICES_SQLITE.sqlite())
            .bind(millis(now))
            .bind(millis(now).saturating_add(duration_millis(claim_for)))
            .bind(i64::from(limit))
            .fetch_all(&self.writer)
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
        sqlx::query(sql::RECORD_END_NOTICE.sqlite())
            .bind(notice.as_str())
            .bind(i64::from(attempts))
            .bind(next_at.map(millis))
            .bind(error)
            .bind(id.key())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn compact_events(
        &self,
        source: &SourceName,
        published_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let _writing = self.write.lock().await;
        let result = sqlx::query(sql::COMPACT_EVENTS.sqlite())
            .bind(source.as_str())
            .bind(millis(published_before))
            .execute(&self.writer)
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
        self.writer.close().await;
        self.pool.close().await;
        let lock = self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(lock);
    }
}

#[cfg(test)]
mod tests;

/// Up to `limit` of what `node` owns after rowid `after`, and the rowid the next page starts
/// after (none after the last page). A page comes back as one JSON value rather than one row
/// per subscription: the SQLite driver hands each row across threads, which dominated a start
/// with a million. Pages go in rowid order (see `OWNED_PAGE`).
async fn owned_page(
    pool: &SqlitePool,
    node: &NodeId,
    now: Timestamp,
    after: i64,
    limit: usize,
) -> Result<(PageItems, Option<i64>), StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let row = sqlx::query(OWNED_PAGE)
        .bind(node.as_str())
        .bind(millis(now))
        .bind(after)
        .bind(limit)
        .fetch_one(pool)
        .await?;
    let next = match row.optional_int("last_rowid")? {
        Some(last) if row.int("n")? == limit => Some(last),
        _ => None,
    };
    let items =
        PageItems::decode(move || decode_json_page(sqlx::Row::try_get::<&str, _>(&row, "page")?));
    Ok((items, next))
}
