//! Webhook subscriptions and listings in PostgreSQL.

use async_trait::async_trait;
use jiff::Timestamp;

use super::super::codec::{
    decode_progress, decode_record, decode_subscription, encode_endpoint, encode_filter,
    encode_webhook, millis,
};
use super::super::webhooks::{
    Bound, Dialect, LISTING_PLAN, Listing, RECONFIGURE, Webhooks, list_statement,
};
use super::super::{NodeId, StoreError};
use super::PostgresStore;
use crate::domain::subscription::{
    DeliveryProgress, EndpointRef, Filter, Subscription, SubscriptionId, SubscriptionRecord,
};
use crate::domain::webhook::WebhookSettings;

#[async_trait]
impl Webhooks for PostgresStore {
    async fn reconfigure(
        &self,
        id: SubscriptionId,
        (notify_to, filter, settings): (&EndpointRef, Option<&Filter>, Option<&WebhookSettings>),
        owner: &NodeId,
        now: Timestamp,
    ) -> Result<Option<(Subscription, DeliveryProgress)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(RECONFIGURE.postgres())
            .bind(encode_endpoint(notify_to))
            .bind(filter.map(encode_filter))
            .bind(settings.map(encode_webhook))
            .bind(owner.as_str())
            .bind(id.key())
            .bind(millis(now))
            .fetch_optional(&mut *tx)
            .await?;
        let changed = row
            .as_ref()
            .map(|row| Ok::<_, StoreError>((decode_subscription(row)?, decode_progress(row)?)))
            .transpose()?;
        if changed.is_some() {
            self.notify(&mut *tx, &format!("m:{}:{owner}", id.key()))
                .await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn list_subscriptions(
        &self,
        listing: &Listing,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        // Composed of fixed fragments and placeholders only: every value is bound.
        let (sql, values) = list_statement(listing, Dialect::Postgres);
        let query =
            values
                .into_iter()
                .fold(
                    sqlx::query(sqlx::AssertSqlSafe(sql)),
                    |query, value| match value {
                        Bound::Text(text) => query.bind(text),
                        Bound::Count(count) => query.bind(count),
                    },
                );
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql(LISTING_PLAN).execute(&mut *tx).await?;
        let rows = query.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(decode_record).collect()
    }
}
