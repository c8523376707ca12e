//! Domain operations and their rules: subscribe, renew, status, unsubscribe, expire.
//!
//! The engine sees neither XML nor HTTP: protocol modules decode requests into the types here,
//! and the engine validates them against the source's policy and writes through the [`Store`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::delivery::retry::RetryPolicy;
use crate::delivery::{Dispatcher, PublishError};
use crate::domain::clock::Clock;
use crate::domain::event::{Event, NewEvent};
use crate::domain::expiry::{
    self, ExpiryError, ExpiryPolicy, ExpiryRules, GrantedExpiry, RequestedExpiry,
};
use crate::domain::subscription::{
    DeliveryProgress, EndReason, EndpointRef, Filter, LogKind, NotificationFormat, ReaderDelivery,
    SourceName, Subscription, SubscriptionId, SubscriptionRecord, SubscriptionStatus, WireDialect,
};
use crate::filter::FilterError;
use crate::store::{Store, StoreError};

/// An event source's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePolicy {
    /// Its name.
    pub name: SourceName,
    /// How long subscriptions may last.
    pub expiry: ExpiryPolicy,
    /// The most active subscriptions it accepts; `None` for no limit.
    pub max_subscriptions: Option<u64>,
    /// The largest event payload it accepts, in bytes.
    pub max_event_bytes: usize,
    /// How its deliveries are retried.
    pub retry: RetryPolicy,
}

/// Why a domain operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No source with this name is configured.
    #[error("no event source named '{0}'")]
    UnknownSource(String),
    /// The subscription does not exist, has expired or has ended.
    #[error("the subscription is not known")]
    UnknownSubscription,
    /// The requested expiry cannot be granted.
    #[error(transparent)]
    Expiry(#[from] ExpiryError),
    /// The source already has as many subscriptions as it accepts.
    #[error("event source '{source_name}' accepts at most {limit} subscriptions")]
    SourceFull {
        /// The source.
        source_name: SourceName,
        /// Its limit.
        limit: u64,
    },
    /// The subscription's source is no longer configured, so it cannot be renewed.
    #[error("event source '{0}' is no longer configured")]
    SourceGone(SourceName),
    /// The filter cannot be used.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// An event is larger than its source accepts; nothing was appended.
    #[error("event source '{source_name}' accepts events of at most {limit} bytes")]
    EventTooLarge {
        /// The source.
        source_name: SourceName,
        /// Its limit.
        limit: usize,
    },
    /// NotifyTo or EndTo is refused by the endpoint policy.
    #[error("{0}")]
    EndpointRefused(String),
    /// Publishing failed; nothing was appended.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The store failed; nothing was changed.
    #[error("the store failed")]
    Store(#[from] StoreError),
}

/// A Subscribe, decoded.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    /// The source subscribed to.
    pub source: SourceName,
    /// The subscriber's dialect.
    pub dialect: WireDialect,
    /// Where notifications go.
    pub notify_to: EndpointRef,
    /// Where SubscriptionEnd goes.
    pub end_to: Option<EndpointRef>,
    /// Delivery mode URI.
    pub delivery_mode: String,
    /// Notification format.
    pub format: NotificationFormat,
    /// Filter, already checked for a supported dialect.
    pub filter: Option<Filter>,
    /// Requested expiry, if any.
    pub expires: Option<RequestedExpiry>,
    /// How the version reads the expiry request.
    pub expiry_rules: ExpiryRules,
    /// The subscription manager address the response gives.
    pub manager_address: String,
}

/// The domain engine, shared by every front door.
pub struct Engine {
    store: Arc<dyn Store>,
    sources: BTreeMap<SourceName, SourcePolicy>,
    dispatcher: Arc<Dispatcher>,
    clock: Clock,
}

impl Engine {
    /// Builds the engine over a started dispatcher.
    pub fn new(
        store: Arc<dyn Store>,
        sources: Vec<SourcePolicy>,
        dispatcher: Arc<Dispatcher>,
        clock: Clock,
    ) -> Engine {
        Engine {
            store,
            sources: sources.into_iter().map(|s| (s.name.clone(), s)).collect(),
            dispatcher,
            clock,
        }
    }

    /// The configured source with this name.
    pub fn source(&self, name: &str) -> Result<&SourcePolicy, EngineError> {
        SourceName::parse(name)
            .and_then(|name| self.sources.get(&name))
            .ok_or_else(|| EngineError::UnknownSource(name.chars().take(64).collect()))
    }

    /// Every configured source.
    pub fn sources(&self) -> impl Iterator<Item = &SourcePolicy> {
        self.sources.values()
    }

    /// Refreshes the gauges read at a scrape (backlog per source).
    pub fn refresh_metrics(&self) {
        self.dispatcher.update_backlog_metrics();
    }

    /// Active subscriptions per configured source.
    pub fn active_counts(&self) -> Vec<(SourceName, u64)> {
        self.dispatcher.active_counts()
    }

    /// Whether this node can take requests now: its store can be written (within 2 s) and its
    /// lease holds. `Err` says why not.
    pub async fn readiness(&self) -> Result<(), String> {
        let check = self.store.check_writable(self.dispatcher.node());
        match tokio::time::timeout(Duration::from_secs(2), check).await {
            Err(_) => return Err("the store did not answer within 2 s".into()),
            Ok(Err(err)) => return Err(format!("the store cannot be written: {err}")),
            Ok(Ok(())) => {}
        }
        if !self.dispatcher.lease_confirmed() {
            return Err("this node's lease is not confirmed".into());
        }
        Ok(())
    }

    /// The current time on the engine's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Creates a subscription. It is durable when this returns, and delivery starts with the
    /// next event published.
    pub async fn subscribe(
        &self,
        request: SubscribeRequest,
    ) -> Result<(Subscription, GrantedExpiry), EngineError> {
        let policy = self
            .sources
            .get(&request.source)
            .ok_or_else(|| EngineError::UnknownSource(request.source.to_string()))?;
        let now = self.clock.now();
        let granted = expiry::grant(
            request.expires.as_ref(),
            &policy.expiry,
            request.expiry_rules,
            now,
        )?;
        let matcher = request
            .filter
            .as_ref()
            .map(|filter| {
                self.dispatcher.filters().compile(
                    filter,
                    request.dialect.eventing,
                    request.dialect.soap,
                    request.dialect.addressing,
                )
            })
            .transpose()?;
        for endpoint in std::iter::once(&request.notify_to).chain(request.end_to.as_ref()) {
            self.dispatcher
                .client()
                .policy()
                .check_url(&endpoint.address)
                .await
                .map_err(|err| EngineError::EndpointRefused(err.to_string()))?;
        }
        if !self
            .dispatcher
            .reserve(&policy.name, policy.max_subscriptions)
        {
            return Err(EngineError::SourceFull {
                source_name: policy.name.clone(),
                limit: policy.max_subscriptions.unwrap_or(0),
            });
        }
        let subscription = Subscription {
            id: SubscriptionId::new_random(),
            source: request.source,
            log: LogKind::Source,
            delivery: ReaderDelivery::SoapPush,
            dialect: request.dialect,
            notify_to: request.notify_to,
            end_to: request.end_to,
            delivery_mode: request.delivery_mode,
            format: request.format,
            filter: request.filter,
            expires_at: granted.expires_at,
            expiry_kind: granted.kind,
            created_at: now,
            manager_address: request.manager_address,
        };
        let cursor = match self
            .store
            .insert_subscription(&subscription, self.dispatcher.node())
            .await
        {
            Ok(cursor) => cursor,
            Err(err) => {
                self.dispatcher.release_place(&subscription.source);
                return Err(err.into());
            }
        };
        let progress = DeliveryProgress {
            cursor,
            ..Default::default()
        };
        self.dispatcher
            .register(subscription.clone(), progress, matcher);
        Ok((subscription, granted))
    }

    /// The subscription, if active and unexpired.
    pub async fn status(&self, id: SubscriptionId) -> Result<Subscription, EngineError> {
        self.store
            .active_subscription(id, self.clock.now())
            .await?
            .ok_or(EngineError::UnknownSubscription)
    }

    /// Sets a new expiry under the subscription's source policy.
    pub async fn renew(
        &self,
        id: SubscriptionId,
        expires: Option<&RequestedExpiry>,
        rules: ExpiryRules,
    ) -> Result<GrantedExpiry, EngineError> {
        let now = self.clock.now();
        let subscription = self
            .store
            .active_subscription(id, now)
            .await?
            .ok_or(EngineError::UnknownSubscription)?;
        let policy = self
            .sources
            .get(&subscription.source)
            .ok_or_else(|| EngineError::SourceGone(subscription.source.clone()))?;
        let granted = expiry::grant(expires, &policy.expiry, rules, now)?;
        let renewed = self
            .store
            .renew_subscription(id, granted.expires_at, granted.kind, now)
            .await?;
        if renewed {
            Ok(granted)
        } else {
            // It expired or was ended between the read and the write.
            Err(EngineError::UnknownSubscription)
        }
    }

    /// Ends the subscription at the subscriber's request.
    pub async fn unsubscribe(&self, id: SubscriptionId) -> Result<Subscription, EngineError> {
        self.end(id, EndReason::Unsubscribed).await
    }

    /// Ends the subscription on an operator's order (SubscriptionEnd: SourceCancelling).
    pub async fn cancel(&self, id: SubscriptionId) -> Result<Subscription, EngineError> {
        self.end(id, EndReason::SourceCancelling).await
    }

    async fn end(
        &self,
        id: SubscriptionId,
        reason: EndReason,
    ) -> Result<Subscription, EngineError> {
        let ended = self
            .store
            .end_subscription(id, reason, self.clock.now())
            .await?
            .ok_or(EngineError::UnknownSubscription)?;
        self.dispatcher.remove(&ended.source, ended.id);
        Ok(ended)
    }

    /// Appends events to a source's log; returns them once durable.
    pub async fn publish(
        &self,
        source: &str,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<Event>>, EngineError> {
        let policy = self.source(source)?;
        if events
            .iter()
            .any(|event| event.payload.len() > policy.max_event_bytes)
        {
            return Err(EngineError::EventTooLarge {
                source_name: policy.name.clone(),
                limit: policy.max_event_bytes,
            });
        }
        Ok(self.dispatcher.publish(&policy.name, events).await?)
    }

    /// Everything known about a subscription: the store's record with delivery progress from
    /// memory when it is active.
    pub async fn record(
        &self,
        id: SubscriptionId,
    ) -> Result<(SubscriptionRecord, Option<u64>), EngineError> {
        let mut record = self
            .store
            .subscription_record(id)
            .await?
            .ok_or(EngineError::UnknownSubscription)?;
        let source = record.subscription.source.clone();
        if record.status == SubscriptionStatus::Active
            && let Some((progress, _)) = self.dispatcher.progress(&source, id)
        {
            record.progress = progress;
        }
        Ok((record, self.dispatcher.head(&source)))
    }

    /// Ends every subscription that has expired by `now`, in batches, and returns them.
    pub async fn sweep_expired(&self, now: Timestamp) -> Result<Vec<Subscription>, StoreError> {
        const BATCH: u32 = 1000;
        let mut ended = Vec::new();
        loop {
            let batch = self.store.end_expired(now, BATCH).await?;
            let full = batch.len() == BATCH as usize;
            for subscription in &batch {
                self.dispatcher
                    .remove(&subscription.source, subscription.id);
            }
            ended.extend(batch);
            if !full {
                return Ok(ended);
            }
        }
    }

    /// Runs the expiry sweeper until `shutdown` fires: every `interval`, ends what has expired.
    pub async fn run_sweeper(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => return,
            }
            match self.sweep_expired(self.clock.now()).await {
                Ok(ended) if !ended.is_empty() => {
                    tracing::debug!(count = ended.len(), "expired subscriptions ended");
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "expiry sweep failed; retrying"),
            }
        }
    }
}
