//! Webhook subscriptions in the store: changing one in place, and listing subscriptions a page
//! at a time for the JSON API and the console.

use async_trait::async_trait;
use jiff::Timestamp;

use super::sql::Sql;
use super::{NodeId, StoreError};
use crate::domain::subscription::{
    DeliveryProgress, EndpointRef, Filter, SourceName, Subscription, SubscriptionId,
    SubscriptionRecord,
};
use crate::domain::webhook::WebhookSettings;

/// Which subscriptions a page lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Only this source's.
    pub source: Option<SourceName>,
    /// Only active (`Some(true)`) or ended (`Some(false)`) ones.
    pub active: Option<bool>,
    /// Only these deliveries (their storage names), e.g. the webhook ones.
    pub deliveries: Vec<&'static str>,
    /// After this identifier (the previous page's last).
    pub after: Option<SubscriptionId>,
    /// At most this many.
    pub limit: u32,
}

/// Durable webhook subscriptions and listings. Every method is one atomic step.
#[async_trait]
pub trait Webhooks {
    /// Points an active subscription, unexpired at `now`, at `notify_to` with `filter` and
    /// `settings`, and makes `owner` the node that delivers it; returns it with its progress, or
    /// `None` when there is no such subscription. Other nodes are told to let go of it.
    async fn reconfigure(
        &self,
        id: SubscriptionId,
        change: (&EndpointRef, Option<&Filter>, Option<&WebhookSettings>),
        owner: &NodeId,
        now: Timestamp,
    ) -> Result<Option<(Subscription, DeliveryProgress)>, StoreError>;

    /// A page of subscriptions in identifier order.
    async fn list_subscriptions(
        &self,
        listing: &Listing,
    ) -> Result<Vec<SubscriptionRecord>, StoreError>;
}

/// Sets `$1` notify_to, `$2` filter, `$3` webhook and owner `$4` of active subscription `$5`
/// (unexpired at `$6`); a new endpoint starts with no failures, the same one keeps them.
pub static RECONFIGURE: Sql = Sql::new(concat!(
    "UPDATE subscriptions SET
         attempts = CASE WHEN notify_to = $1 THEN attempts ELSE 0 END,
         next_attempt_at = CASE WHEN notify_to = $1 THEN next_attempt_at ELSE NULL END,
         failing_since = CASE WHEN notify_to = $1 THEN failing_since ELSE NULL END,
         last_error = CASE WHEN notify_to = $1 THEN last_error ELSE NULL END,
         notify_to = $1, filter = $2, webhook = $3, owner = $4
     WHERE id = $5 AND status = 'active' AND (expires_at IS NULL OR expires_at > $6)
     RETURNING ",
    super::codec::subscription_columns!(),
    ", ",
    super::codec::progress_columns!()
));

/// A page of subscriptions: `$1` source or NULL, `$2` status or NULL, `$3` after or NULL, `$4`
/// limit, `$5`–`$7` the deliveries listed (all NULL: every delivery).
pub static LIST: Sql = Sql::new(concat!(
    "SELECT ",
    super::codec::subscription_columns!(),
    ", ",
    super::codec::progress_columns!(),
    ", status, end_reason, ended_at, end_notice, owner FROM subscriptions
     WHERE (CAST($1 AS TEXT) IS NULL OR source = $1) AND (CAST($2 AS TEXT) IS NULL OR status = $2)
       AND (CAST($3 AS TEXT) IS NULL OR id > $3)
       AND ((CAST($5 AS TEXT) IS NULL AND CAST($6 AS TEXT) IS NULL AND CAST($7 AS TEXT) IS NULL)
            OR delivery = $5 OR delivery = $6 OR delivery = $7)
     ORDER BY id LIMIT $4"
));

/// The delivery names a listing binds as `$5`–`$7`.
pub fn listed_deliveries(listing: &Listing) -> [Option<&'static str>; 3] {
    let mut names = [None; 3];
    for (slot, name) in names.iter_mut().zip(&listing.deliveries) {
        *slot = Some(*name);
    }
    names
}
