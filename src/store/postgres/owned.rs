//! What a node owns or may claim: counted before a start's load hands it over, and read a page
//! at a time.

use std::time::Duration;

use futures_util::TryStreamExt;
use jiff::Timestamp;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{ConnectOptions, Connection};

use super::super::codec::{
    decode_source_count, decode_with_progress, millis, progress_columns, subscription_columns,
};
use super::super::{NodeId, OwnedPages, PageItems, StoreError};
use crate::domain::subscription::SourceName;

/// The active subscriptions `$1` owns, unexpired at `$2`, in no order: one statement, so one
/// snapshot, read in the order the rows lie in the table (a scan in `id` order, a page at a
/// time, read one random table page per row: a start with 1,000,000 spent 5-8 s there).
///
/// Not locked row by row: no claim of this node's rows can be under way, since a claim holds
/// the lapsed node's row `FOR SHARE` (`claim_orphans`) and this node's lease was renewed, which
/// waits for such claims, before its load began. (A lock `FOR SHARE` of each row, which
/// PostgreSQL writes into the row, made a start with 1,000,000 spend 16-20 s loading against
/// 10 s without.)
const OWNED: &str = concat!(
    "SELECT ",
    subscription_columns!(),
    ", ",
    progress_columns!(),
    " FROM subscriptions
     WHERE owner = $1 AND status = 'active' AND (expires_at IS NULL OR expires_at > $2)"
);

/// Active subscriptions `$1` owns or may claim (no owner, or one whose lease lapsed), per log.
const OWNED_COUNTS: &str = concat!(
    "SELECT source, COUNT(*) AS n FROM subscriptions
     WHERE status = 'active'
       AND (owner = $1 OR owner IS NULL OR owner IN (
           SELECT id FROM nodes WHERE id <> $1 AND lease_until < ",
    db_now!(),
    "))
     GROUP BY source"
);

/// Active subscriptions `node` owns or may claim, per log.
pub(super) async fn counts(
    pool: &PgPool,
    node: &NodeId,
) -> Result<Vec<(SourceName, u64)>, StoreError> {
    let rows = sqlx::query(OWNED_COUNTS)
        .bind(node.as_str())
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| decode_source_count(row, "n"))
        .collect()
}

/// What `node` owns, as the rows of one statement arrive, `size` at a time; each page is
/// decoded on the blocking pool while the rows of the next arrive.
///
/// The statement has a connection of its own, not one of the pool's, as it lasts as long as the
/// load (seconds for a million), and does not log itself as a slow statement at every start.
pub(super) fn pages(pool: PgPool, node: NodeId, now: Timestamp, size: usize) -> OwnedPages {
    OwnedPages::read(move |pages| async move {
        let options = (*pool.connect_options())
            .clone()
            .disable_statement_logging();
        let connecting = options.connect();
        // As long as the pool waits for one of its own; then the load tries again.
        let mut connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| {
                sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting to read this node's subscriptions timed out",
                ))
            })??;
        // In the order the rows lie in the table, whatever the planner guesses: a table never
        // analyzed (autovacuum off, or not yet run) looks nearly empty to it, and it walked
        // the owner index instead, one random table page per row (7-8 s for 1,000,000 against
        // 4 s). A bitmap of the index's rows, or a scan of the table, reads each page once.
        sqlx::query("SET enable_indexscan = off")
            .execute(&mut connection)
            .await?;
        let mut rows = sqlx::query(OWNED)
            .bind(node.as_str())
            .bind(millis(now))
            .fetch(&mut connection);
        let mut page = Vec::with_capacity(size);
        while let Some(row) = rows.try_next().await? {
            page.push(row);
            if page.len() == size {
                let full = std::mem::replace(&mut page, Vec::with_capacity(size));
                if !pages.send(decoding(full)).await {
                    return Ok(());
                }
            }
        }
        if !page.is_empty() {
            pages.send(decoding(page)).await;
        }
        drop(rows);
        Ok(connection.close().await?)
    })
}

/// How long the load waits for its own connection (the pool's `acquire_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn decoding(rows: Vec<PgRow>) -> PageItems {
    PageItems::decode(move || decode_with_progress(&rows))
}
