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

/// A value a listing's statement binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    Text(String),
    Count(i64),
}

/// The SQL dialect a listing is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The `n`th parameter.
    fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Sqlite => format!("?{n}"),
        }
    }

    /// `column` in a filter that must not choose the index: SQLite, with no statistics, would
    /// read a source's active subscriptions through their index and sort them all for each
    /// page; `+column` leaves it the identifier's. PostgreSQL chooses by its statistics.
    fn unindexed(self, column: &str) -> String {
        match self {
            Dialect::Postgres => column.to_owned(),
            Dialect::Sqlite => format!("+{column}"),
        }
    }
}

/// The settings PostgreSQL reads a listing's page under, so that whatever its statistics say
/// the page is read from the identifier's index, where the last page ended. A table never
/// analyzed (autovacuum off, or not yet run) looks nearly empty to the planner, and it read a
/// source's rows through their own index, or the whole table, and sorted them for each page
/// (a listing of 168,000 took 24 s).
pub const LISTING_PLAN: &str = "SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off";

/// A page of subscriptions in identifier order, in `dialect`: the statement and its values, in
/// order. Only the filters the listing sets are in it. A statement with every filter optional
/// (`$3 IS NULL OR id > $3`) is planned for any value, and PostgreSQL's plan for it read and
/// sorted the whole table for each page; with the filters written out, a page starts where the
/// last ended in the identifier's index.
pub fn list_statement(listing: &Listing, dialect: Dialect) -> (String, Vec<Bound>) {
    let mut values = Vec::new();
    let mut bind = |value: Bound| {
        values.push(value);
        dialect.placeholder(values.len())
    };
    let mut filters = Vec::new();
    if let Some(source) = &listing.source {
        let value = bind(Bound::Text(source.as_str().to_owned()));
        filters.push(format!("{} = {value}", dialect.unindexed("source")));
    }
    if let Some(active) = listing.active {
        let status = if active { "active" } else { "ended" };
        let value = bind(Bound::Text(status.to_owned()));
        filters.push(format!("{} = {value}", dialect.unindexed("status")));
    }
    if let Some(after) = listing.after {
        filters.push(format!("id > {}", bind(Bound::Text(after.key()))));
    }
    if !listing.deliveries.is_empty() {
        let names = listing
            .deliveries
            .iter()
            .map(|name| bind(Bound::Text((*name).to_owned())))
            .collect::<Vec<_>>();
        filters.push(format!("delivery IN ({})", names.join(", ")));
    }
    let limit = bind(Bound::Count(i64::from(listing.limit)));
    let filters = if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    };
    let sql = format!(
        "SELECT {}, {}, status, end_reason, ended_at, end_notice, owner FROM subscriptions{filters}
         ORDER BY id LIMIT {limit}",
        super::codec::subscription_columns!(),
        super::codec::progress_columns!(),
    );
    (sql, values)
}
