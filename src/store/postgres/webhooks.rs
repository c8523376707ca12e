//! Webhook subscriptions and listings in PostgreSQL.

use async_trait::async_trait;
use jiff::Timestamp;

use super::super::codec::{
    decode_progress, decode_record, decode_subscription, encode_endpoint, encode_filter,
    encode_webhook, millis,
};
use super::super::webhooks::{LIST, Listing, RECONFIGURE, Webhooks, listed_deliveries};
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
        let [first, second, third] = listed_deliveries(listing);
        let rows = sqlx::query(LIST.postgres())
            .bind(
                listing
                    .source
                    .as_ref()
                    .map(|source| source.as_str().to_owned()),
            )
            .bind(
                listing
                    .active
                    .map(|active| if active { "active" } else { "ended" }),
            )
            .bind(listing.after.map(|id| id.key()))
            .bind(i64::from(listing.limit))
            .bind(first)
            .bind(second)
            .bind(third)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_record).collect()
    }
}
