//! The lifecycle rules, each in one place: a subscription is created (policy, filter compile,
//! endpoint check, capacity), renewed, adopted by this node, and ended for any reason —
//! unsubscribe, cancellation, expiry, delivery failure, its source removed, its stored filter no
//! longer compiling — through [`Engine::end`] (or, for expiry's batches, the same
//! [`Engine::forget`] step after the store's write).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError, SubscribeRequest};
use crate::delivery::Lifecycle;
use crate::delivery::retry::RetryPolicy;
use crate::domain::expiry::{self, ExpiryRules, GrantedExpiry, RequestedExpiry};
use crate::domain::subscription::{
    DeliveryProgress, EndReason, Ended, LogKind, ReaderDelivery, SourceName, Subscription,
    SubscriptionId,
};
use crate::domain::wsman::StartAt;
use crate::filter::{FilterError, Matcher};
use crate::store::StoreError;

/// How a new reader is admitted: the name its capacity is counted under, the limit, what
/// delivery counts already, its filter and its retry policy.
pub(super) struct Admission<'a> {
    pub counted_as: &'a SourceName,
    pub limit: Option<u64>,
    /// Read under the capacity lock, so that a reader registered meanwhile is counted.
    pub count: &'a (dyn Fn() -> u64 + Send + Sync),
    pub matcher: Option<Arc<dyn Matcher>>,
    pub retry: RetryPolicy,
    /// Where its cursor starts (`None`: the log's head).
    pub start_after: Option<u64>,
}

impl Engine {
    /// Creates a subscription. It is durable when this returns, and delivery starts with the
    /// next event published. Returns it, its expiry, and the position in its log it reads
    /// after (where a pulled subscription's first Pull starts).
    pub async fn subscribe(
        &self,
        request: SubscribeRequest,
    ) -> Result<(Subscription, GrantedExpiry, u64), EngineError> {
        self.create(request, ReaderDelivery::SoapPush, None).await
    }

    /// Creates a reader of a source delivered as `delivery` (a SOAP subscription or a
    /// webhook, with its secrets): the one path every subscription is made by.
    pub(super) async fn create(
        &self,
        request: SubscribeRequest,
        delivery: ReaderDelivery,
        webhook: Option<crate::domain::webhook::WebhookSettings>,
    ) -> Result<(Subscription, GrantedExpiry, u64), EngineError> {
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
        let log_kind = if self.agents.contains_key(&request.source) {
            LogKind::Agent
        } else {
            LogKind::Source
        };
        let mut subscription = Subscription {
            id: SubscriptionId::new_random(),
            source: request.source,
            log: log_kind,
            delivery,
            dialect: request.dialect,
            notify_to: request.notify_to,
            end_to: request.end_to.map(Box::new),
            delivery_mode: request.delivery_mode,
            format: request.format,
            filter: request.filter,
            expires_at: granted.expires_at,
            expiry_kind: granted.kind,
            created_at: now,
            manager_address: request.manager_address,
            webhook,
            connection_retry: request.connection_retry,
            wsman: request.wsman.map(Box::new),
        };
        self.secure_sink_auth(&mut subscription, request.sink_password)?;
        let matcher = self.compile(&subscription)?;
        // A pulled subscription's NotifyTo is never sent to.
        let notify_to =
            (!subscription.pulled()).then_some((&subscription.notify_to, request.parsed.notify_to));
        let end_to = subscription
            .end_to
            .as_deref()
            .map(|end_to| (end_to, request.parsed.end_to));
        for (endpoint, parsed) in notify_to.into_iter().chain(end_to) {
            let checked = match parsed {
                Some(url) => self.endpoints.check_parsed(&url).await,
                None => self.endpoints.check_url(&endpoint.address).await,
            };
            checked.map_err(|err| EngineError::EndpointRefused(err.to_string()))?;
        }
        let start_after = self
            .start_after(&subscription.source, request.start)
            .await?;
        let admission = Admission {
            counted_as: &policy.name,
            limit: policy.max_subscriptions,
            count: &|| self.delivery.reader_count(&policy.name),
            matcher,
            retry: retry_for(&subscription, policy.retry),
            start_after,
        };
        let cursor = self.admit(subscription.clone(), admission).await?;
        Ok((subscription, granted, cursor))
    }

    /// Stores a new reader and starts delivering it, under the capacity rule: a place is taken
    /// under `limit` (beside the `count` delivery already has), and given back once the reader
    /// is in delivery (which counts it) or was not stored. Durable when this returns; returns
    /// the cursor it starts at.
    pub(super) async fn admit(
        &self,
        reader: Subscription,
        admission: Admission<'_>,
    ) -> Result<u64, EngineError> {
        let Admission {
            counted_as,
            limit,
            count,
            matcher,
            retry,
            start_after,
        } = admission;
        // While a start still loads, a limited log's count is whole once the load has counted
        // what it will hand over.
        if limit.is_some() {
            self.delivery.counts_whole(counted_as).await;
        }
        if !self.capacity.take(counted_as, limit, count) {
            return Err(EngineError::SourceFull {
                source_name: counted_as.clone(),
                limit: limit.unwrap_or(0),
            });
        }
        let stored = self
            .store
            .insert_subscription(&reader, self.delivery.node(), start_after)
            .await;
        if let Ok(cursor) = stored {
            let progress = DeliveryProgress {
                cursor,
                ..Default::default()
            };
            self.delivery
                .start_reading(reader, progress, matcher, retry)
                .await;
        }
        self.capacity.give_back(counted_as);
        Ok(stored?)
    }

    /// The cursor a new reader of `log` starts at: `None` for the head; for a bookmark, the
    /// position it names, which must lie between the oldest event still retained (less one)
    /// and the head; for the earliest, just before the oldest retained. Compaction deletes only
    /// events older than the retention window, so one checked here is still there when the
    /// subscription is stored a moment later.
    async fn start_after(
        &self,
        log: &SourceName,
        start: StartAt,
    ) -> Result<Option<u64>, EngineError> {
        let after = match start {
            StartAt::Head => return Ok(None),
            StartAt::Earliest => {
                let oldest = self.store.oldest_retained(log).await?;
                return Ok(oldest.map(|seq| seq.saturating_sub(1)));
            }
            StartAt::After(after) => after,
        };
        // The store's head: this node's tail may lag another node's appends.
        let head = self.store.log_head(log).await?;
        if after > head {
            return Err(EngineError::InvalidBookmark(format!(
                "it names position {after} of '{log}', which has not been reached"
            )));
        }
        if after < head {
            let oldest = self.store.oldest_retained(log).await?;
            if oldest.is_none_or(|oldest| oldest > after + 1) {
                return Err(EngineError::InvalidBookmark(format!(
                    "the events after position {after} of '{log}' are no longer retained"
                )));
            }
        }
        Ok(Some(after))
    }

    /// The subscription's filter, compiled for its dialect.
    pub(super) fn compile(
        &self,
        subscription: &Subscription,
    ) -> Result<Option<Arc<dyn Matcher>>, FilterError> {
        let dialect = &subscription.dialect;
        subscription
            .filter
            .as_ref()
            .map(|filter| {
                self.filters
                    .compile(filter, dialect.eventing, dialect.soap, dialect.addressing)
            })
            .transpose()
    }

    /// Sets a new expiry under the subscription's source policy, asked of the manager of
    /// `manager_of` (the `{source}` of its address).
    pub async fn renew(
        &self,
        (id, manager_of): (SubscriptionId, &str),
        expires: Option<&RequestedExpiry>,
        rules: ExpiryRules,
    ) -> Result<GrantedExpiry, EngineError> {
        self.renew_reader((id, Some(manager_of)), expires, rules, |subscription| {
            subscription.delivery == ReaderDelivery::SoapPush
        })
        .await
    }

    /// Sets a new expiry of an active reader that `kind` accepts, under its source's policy.
    /// A reader this node delivers from log `held_at` is taken as it is held (its source and
    /// kind never change), sparing a read of the store; the write checks it is still active.
    pub(super) async fn renew_reader(
        &self,
        (id, held_at): (SubscriptionId, Option<&str>),
        expires: Option<&RequestedExpiry>,
        rules: ExpiryRules,
        kind: impl Fn(&Subscription) -> bool,
    ) -> Result<GrantedExpiry, EngineError> {
        let now = self.clock.now();
        let held = held_at.and_then(|log| {
            self.delivery.held(log, id, |subscription| {
                kind(subscription).then(|| subscription.source.clone())
            })
        });
        let source = match held {
            Some(source) => source,
            None => self
                .store
                .active_subscription(id, now)
                .await?
                .filter(|subscription| kind(subscription))
                .map(|subscription| subscription.source),
        }
        .ok_or(EngineError::UnknownSubscription)?;
        let policy = self
            .sources
            .get(&source)
            .ok_or_else(|| EngineError::SourceGone(source.clone()))?;
        let granted = expiry::grant(expires, &policy.expiry, rules, now)?;
        let renewed = self
            .store
            .renew_subscription(id, granted.expires_at, granted.kind, now)
            .await?;
        if renewed {
            Ok(granted)
        } else {
            // It expired or was ended (here or on another node) before the write.
            Err(EngineError::UnknownSubscription)
        }
    }

    /// Ends the subscription at the subscriber's request.
    pub async fn unsubscribe(&self, id: SubscriptionId) -> Result<Ended, EngineError> {
        // herald's own readers (an agent's bridge) are not the subscribers' to end.
        if self.is_bridge_reader(id) {
            return Err(EngineError::UnknownSubscription);
        }
        self.end(id, EndReason::Unsubscribed)
            .await?
            .ok_or(EngineError::UnknownSubscription)
    }

    /// Ends the subscription on an operator's order (SubscriptionEnd: SourceCancelling).
    pub async fn cancel(&self, id: SubscriptionId) -> Result<Ended, EngineError> {
        self.end(id, EndReason::SourceCancelling)
            .await?
            .ok_or(EngineError::UnknownSubscription)
    }

    /// Ends an active subscription for `reason`: the store records the end (and queues its
    /// SubscriptionEnd) in one step, then delivery forgets it. `None` when it was not active.
    pub(super) async fn end(
        &self,
        id: SubscriptionId,
        reason: EndReason,
    ) -> Result<Option<Ended>, StoreError> {
        let ended = self
            .store
            .end_subscription(id, reason, self.clock.now())
            .await?;
        if let Some(subscription) = &ended {
            self.forget(subscription);
            tracing::debug!(%id, reason = reason.as_str(), "subscription ended");
        }
        Ok(ended)
    }

    /// What follows the store's record of an end: delivery stops and sends the SubscriptionEnd.
    fn forget(&self, ended: &Ended) {
        self.delivery.ended(ended);
    }

    /// Ends every subscription that has expired by `now`, in batches, and returns them.
    pub async fn sweep_expired(&self, now: Timestamp) -> Result<Vec<Ended>, StoreError> {
        const BATCH: u32 = 1000;
        let mut ended = Vec::new();
        loop {
            let batch = self.store.end_expired(now, BATCH).await?;
            let full = batch.len() == BATCH as usize;
            for subscription in &batch {
                self.forget(subscription);
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

#[async_trait]
impl Lifecycle for Engine {
    /// A subscription whose source is no longer configured ends (SourceShuttingDown); one
    /// whose stored filter no longer compiles is cancelled (SourceCancelling); the rest are
    /// delivered from their stored progress.
    async fn adopt(
        &self,
        subscription: Subscription,
        progress: DeliveryProgress,
    ) -> Result<(), StoreError> {
        let id = subscription.id;
        let retry = match subscription.log {
            LogKind::Source if self.delivery.serves(&subscription.source) => self
                .sources
                .get(&subscription.source)
                .map(|policy| policy.retry),
            LogKind::Source => None,
            LogKind::Agent => match subscription.delivery {
                // A bridge lasts while its agent declares it.
                // A bridge lasts while its agent declares it, to the same queue.
                ReaderDelivery::AmqpPublish => self
                    .agents
                    .get(&subscription.source)
                    .filter(|agent| self.bridge_generation(agent, id).is_some())
                    .map(|_| self.bridge_retry(&subscription.source)),
                _ => self
                    .sources
                    .get(&subscription.source)
                    .filter(|_| self.delivery.serves(&subscription.source))
                    .map(|policy| policy.retry),
            },
            LogKind::Context => self
                .instance_policy(&subscription)
                .map(|policy| policy.retry),
        };
        let Some(retry) = retry.map(|retry| retry_for(&subscription, retry)) else {
            self.end(id, EndReason::SourceShuttingDown).await?;
            tracing::info!(%id, log = %subscription.source, "source or context service removed; ended");
            return Ok(());
        };
        match self.compile(&subscription) {
            Ok(matcher) => {
                self.delivery
                    .resume_reading(subscription, progress, matcher, retry)
                    .await;
            }
            Err(err) => {
                tracing::warn!(%id, error = %err, "stored filter no longer compiles; subscription cancelled");
                self.end(id, EndReason::SourceCancelling).await?;
            }
        }
        Ok(())
    }

    async fn gave_up(&self, subscription: &Subscription, error: &str) {
        let id = subscription.id;
        match self.end(id, EndReason::DeliveryFailure).await {
            Ok(Some(_)) => {
                tracing::warn!(%id, error, "delivery given up; subscription ended (DeliveryFailure)");
            }
            Ok(None) => {
                // It had ended already (elsewhere, or it expired): delivery lets go of it too.
                self.forget(&subscription.ended());
            }
            Err(err) => {
                // Left in place: the next start retries from the stored cursor.
                tracing::error!(%id, error = %err, "could not end the failing subscription");
            }
        }
    }
}

/// The retry schedule a reader is delivered with: its source's, or the subscriber's own
/// (`wsman:ConnectionRetry`) within the source's limits — attempts `interval` apart (never
/// closer than the source's first delay), no back-off or jitter, given up after `total`
/// retries (never later than the source gives up). The one rule, at creation and adoption.
pub(super) fn retry_for(subscription: &Subscription, source: RetryPolicy) -> RetryPolicy {
    let Some(asked) = subscription.connection_retry else {
        return source;
    };
    let interval = asked.interval.max(source.initial);
    RetryPolicy {
        initial: interval,
        max: interval,
        multiplier: 1.0,
        jitter: 0.0,
        give_up_after: interval
            .saturating_mul(asked.total)
            .min(source.give_up_after),
        ..source
    }
}
