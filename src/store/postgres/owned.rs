//! What a node owns or may claim: counted before a start's load hands it over, and read a page
//! at a time.

use jiff::Timestamp;
use sqlx::postgres::PgPool;

use super::super::codec::{
    Columns, decode_source_count, decode_with_progress, millis, progress_columns,
    subscription_columns,
};
use super::super::{NodeId, OwnedPage, PageItems, PageToken, StoreError};
use crate::domain::subscription::SourceName;

/// Up to `$4` of the active subscriptions `$1` owns, unexpired at `$2`, after the id `$3`.
///
/// Not locked row by row: no claim of this node's rows can be under way, since a claim holds
/// the lapsed node's row `FOR SHARE` (`claim_orphans`) and this node's lease was renewed, which
/// waits for such claims, before its load began. (A lock `FOR SHARE` of each row, which
/// PostgreSQL writes into the row, made a start with 1,000,000 spend 16-20 s loading against
/// 10 s without.)
const OWNED_PAGE: &str = concat!(
    "SELECT ",
    subscription_columns!(),
    ", ",
    progress_columns!(),
    " FROM subscriptions
     WHERE owner = $1 AND status = 'active'
       AND (expires_at IS NULL OR expires_at > $2) AND id > $3
     ORDER BY id LIMIT $4"
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

/// A page of what `node` owns: its place (the last row's id, the greatest in the database's
/// collation, as the rows come in that order) known as soon as the rows arrive, and the rows
/// decoded on the blocking pool, so that the next page is read meanwhile.
pub(super) async fn page(
    pool: &PgPool,
    node: &NodeId,
    now: Timestamp,
    after: Option<PageToken>,
    limit: u32,
) -> Result<OwnedPage, StoreError> {
    let rows = sqlx::query(OWNED_PAGE)
        .bind(node.as_str())
        .bind(millis(now))
        .bind(after.map(|token| token.0).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    let next = match rows.last() {
        Some(row) if rows.len() == limit as usize => Some(PageToken(row.text("id")?)),
        _ => None,
    };
    Ok(OwnedPage {
        next,
        items: PageItems(tokio::task::spawn_blocking(move || {
            decode_with_progress(&rows)
        })),
    })
}
