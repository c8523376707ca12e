//! Webhook subscriptions and listings in the embedded store.

use async_trait::async_trait;
use jiff::Timestamp;

use super::super::codec::{
    decode_progress, decode_record, decode_subscription, encode_endpoint, encode_filter,
    encode_webhook, millis,
};
use super::super::webhooks::{LIST, Listing, RECONFIGURE, Webhooks, listed_deliveries};
use super::super::{NodeId, StoreError};
use super::SqliteStore;
use crate::domain::subscription::{
    DeliveryProgress, EndpointRef, Filter, Subscription, SubscriptionId, SubscriptionRecord,
};
use crate::domain::webhook::WebhookSettings;

#[async_trait]
impl Webhooks for SqliteStore {
    async fn reconfigure(
        &self,
        id: SubscriptionId,
        (notify_to, filter, settings): (&EndpointRef, Option<&Filter>, Option<&WebhookSettings>),
        owner: &NodeId,
        now: Timestamp,
    ) -> Result<Option<(Subscription, DeliveryProgress)>, StoreError> {
        let _writing = self.write.lock().await;
        let row = sqlx::query(RECONFIGURE.sqlite())
            .bind(encode_endpoint(notify_to))
            .bind(filter.map(encode_filter))
            .bind(settings.map(encode_webhook))
            .bind(owner.as_str())
            .bind(id.key())
            .bind(millis(now))
            .fetch_optional(&self.writer)
            .await?;
        row.as_ref()
            .map(|row| Ok((decode_subscription(row)?, decode_progress(row)?)))
            .transpose()
    }

    async fn list_subscriptions(
        &self,
        listing: &Listing,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let [first, second, third] = listed_deliveries(listing);
        let rows = sqlx::query(LIST.sqlite())
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
