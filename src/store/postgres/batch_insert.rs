//! New subscriptions written as one statement per batch (see [`super::super::inserts`] for the
//! group commit that batches them): the rows go as one array per column, so a batch costs one
//! round trip and one commit however many Subscribes it holds.

use async_trait::async_trait;
use sqlx::postgres::PgPool;

use super::super::StoreError;
use super::super::codec::subscription_columns;
use super::super::inserts::{CommitInserts, InsertRequest, cursors_in_order};

/// Inserts the rows given as arrays; each starts at its given cursor or at its log's head.
const INSERT_BATCH: &str = concat!(
    "INSERT INTO subscriptions (",
    subscription_columns!(),
    ", status, owner, cursor)
     SELECT r.id, r.source, r.eventing, r.soap, r.addressing, r.notify_to, r.end_to,
            r.delivery_mode, r.format, r.filter, r.expires_at, r.expiry_kind, r.created_at,
            r.manager_address, r.log_kind, r.delivery, r.webhook, r.retry_interval_ms,
            r.retry_total, r.wsman, 'active', r.owner,
            COALESCE(r.start_after,
                     (SELECT last_seq FROM source_heads WHERE source = r.source), 0)
     FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[],
                 $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::BIGINT[], $12::TEXT[],
                 $13::BIGINT[], $14::TEXT[], $15::TEXT[], $16::TEXT[], $17::TEXT[],
                 $18::BIGINT[], $19::BIGINT[], $20::TEXT[], $21::TEXT[], $22::BIGINT[])
          AS r(id, source, eventing, soap, addressing, notify_to, end_to, delivery_mode,
               format, filter, expires_at, expiry_kind, created_at, manager_address,
               log_kind, delivery, webhook, retry_interval_ms, retry_total, wsman, owner,
               start_after)
     RETURNING id, cursor"
);

/// Writes batches through the pool (autocommit: the statement is the transaction).
pub(super) struct PgInserts {
    pub pool: PgPool,
}

/// Binds each column of `batch` as one array, in [`INSERT_BATCH`]'s order.
fn bind_columns<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    batch: &[InsertRequest],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    fn column<T>(batch: &[InsertRequest], pick: impl Fn(&InsertRequest) -> T) -> Vec<T> {
        batch.iter().map(pick).collect()
    }
    query
        .bind(column(batch, |r| r.row.id.clone()))
        .bind(column(batch, |r| r.row.source.clone()))
        .bind(column(batch, |r| r.row.eventing.clone()))
        .bind(column(batch, |r| r.row.soap.clone()))
        .bind(column(batch, |r| r.row.addressing.clone()))
        .bind(column(batch, |r| r.row.notify_to.clone()))
        .bind(column(batch, |r| r.row.end_to.clone()))
        .bind(column(batch, |r| r.row.delivery_mode.clone()))
        .bind(column(batch, |r| r.row.format.clone()))
        .bind(column(batch, |r| r.row.filter.clone()))
        .bind(column(batch, |r| r.row.expires_at))
        .bind(column(batch, |r| r.row.expiry_kind.clone()))
        .bind(column(batch, |r| r.row.created_at))
        .bind(column(batch, |r| r.row.manager_address.clone()))
        .bind(column(batch, |r| r.row.log_kind.clone()))
        .bind(column(batch, |r| r.row.delivery.clone()))
        .bind(column(batch, |r| r.row.webhook.clone()))
        .bind(column(batch, |r| r.row.retry_interval_ms))
        .bind(column(batch, |r| r.row.retry_total))
        .bind(column(batch, |r| r.row.wsman.clone()))
        .bind(column(batch, |r| r.owner.clone()))
        .bind(column(batch, |r| r.start_after))
}

#[async_trait]
impl CommitInserts for PgInserts {
    async fn commit(&self, batch: &[InsertRequest]) -> Result<Vec<u64>, StoreError> {
        let rows = bind_columns(sqlx::query(INSERT_BATCH), batch)
            .fetch_all(&self.pool)
            .await?;
        cursors_in_order(batch, &rows)
    }
}
