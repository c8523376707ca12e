//! What a node owns or may claim, counted before a start's load hands it over.

use sqlx::postgres::PgPool;

use super::super::codec::decode_source_count;
use super::super::{NodeId, StoreError};
use crate::domain::subscription::SourceName;

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
