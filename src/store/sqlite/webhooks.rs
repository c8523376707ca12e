//! Webhook subscriptions and listings in the embedded store.

use async_trait::async_trait;
use jiff::Timestamp;

use super::super::codec::{
    decode_progress, decode_record, decode_subscription, encode_endpoint, encode_filter,
    encode_webhook, millis,
};
use super::super::webhooks::{Bound, Dialect, Listing, RECONFIGURE, Webhooks, list_statement};
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
        // Composed of fixed fragments and placeholders only: every value is bound.
        let (sql, values) = list_statement(listing, Dialect::Sqlite);
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
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(decode_record).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::subscription::SourceName;
    use crate::store::Store;
    use crate::store::codec::Columns;
    use crate::store::webhooks::Bound;

    /// Each listing's plan: a page reads the identifier's index from where the last one ended,
    /// in order, never the whole table sorted.
    #[tokio::test]
    async fn a_page_starts_where_the_last_ended() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let after = Some(SubscriptionId::new_random());
        let every = Listing {
            source: SourceName::parse("default"),
            active: Some(true),
            deliveries: vec!["webhook", "soap-push"],
            after,
            limit: 500,
        };
        for (listing, wanted) in [
            (every.clone(), "sqlite_autoindex_subscriptions_1 (id>?)"),
            (
                Listing {
                    limit: 100,
                    ..Listing::default()
                },
                "SCAN subscriptions USING INDEX sqlite_autoindex_subscriptions_1",
            ),
            (
                Listing {
                    after,
                    limit: 2,
                    ..Listing::default()
                },
                "sqlite_autoindex_subscriptions_1 (id>?)",
            ),
        ] {
            let (sql, values) = list_statement(&listing, Dialect::Sqlite);
            let query = values.into_iter().fold(
                sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}"))),
                |query, value| match value {
                    Bound::Text(text) => query.bind(text),
                    Bound::Count(count) => query.bind(count),
                },
            );
            let plan = query
                .fetch_all(&store.pool)
                .await
                .unwrap()
                .iter()
                .map(|row| row.text("detail").unwrap())
                .collect::<Vec<_>>()
                .join("\n");
            assert!(plan.contains(wanted), "{listing:?}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{listing:?}: {plan}");
        }
        store.close().await;
    }
}
