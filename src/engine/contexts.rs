//! Callback contexts: a context service's instances and the callbacks addressed to them. An
//! instance is a log (its callbacks) with one reader (the client's callback endpoint), stored
//! like a subscription: created on the first request without a context, kept alive by every
//! request that participates in it (its idle time-to-live), pointed at the endpoint of the
//! latest CallbackContext, and ended like every reader, through [`Engine::end`].

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;

use super::lifecycle::Admission;
use super::{Engine, EngineError};
use crate::delivery::retry::RetryPolicy;
use crate::domain::context::{instance_log, service_of};
use crate::domain::event::{Event, NewEvent};
use crate::domain::expiry::ExpiryKind;
use crate::domain::subscription::{
    DeliveryProgress, EndReason, Ended, EndpointRef, EventingVersion, LogKind, NotificationFormat,
    ReaderDelivery, SoapVersion, SourceName, Subscription, SubscriptionId, SubscriptionRecord,
    SubscriptionStatus, WireDialect, WsaVersion,
};

/// What a request naming an instance herald does not know gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownInstance {
    /// A Sender fault; nothing reaches the backend.
    Refuse,
    /// Passed on to the backend as it came, which decides.
    PassOn,
}

/// How the context travels between the client and herald.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextCarrier {
    /// A `Context` SOAP header.
    Header,
    /// The `WscContext` HTTP cookie.
    Cookie,
}

/// A context service's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextPolicy {
    /// Its name, as in `/contexts/{name}`.
    pub name: SourceName,
    /// The backend SOAP service requests are forwarded to.
    pub backend: String,
    /// An instance no request has participated in for this long ends.
    pub idle_ttl: Duration,
    /// What a request naming an unknown instance gets.
    pub unknown_instance: UnknownInstance,
    /// Header or cookie.
    pub carrier: ContextCarrier,
    /// How callbacks are retried.
    pub retry: RetryPolicy,
    /// The largest callback body accepted, in bytes.
    pub max_callback_bytes: usize,
    /// The most active instances, counted per node; `None` for no limit.
    pub max_instances: Option<u64>,
}

/// The outcome of a request that named an instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Participation {
    /// The instance is active; its idle time starts again.
    Active(Box<Subscription>),
    /// herald does not know it (never issued, ended, or idle too long).
    Unknown,
}

impl Engine {
    /// The configured context service with this name.
    pub fn context(&self, name: &str) -> Result<&ContextPolicy, EngineError> {
        SourceName::parse(name)
            .and_then(|name| self.contexts.get(&name))
            .ok_or_else(|| EngineError::UnknownContext(name.chars().take(64).collect()))
    }

    /// Every configured context service.
    pub fn contexts(&self) -> impl Iterator<Item = &ContextPolicy> {
        self.contexts.values()
    }

    /// Whether the endpoint policy allows callbacks to `address`.
    pub async fn check_endpoint(&self, address: &str) -> Result<(), EngineError> {
        self.endpoints
            .check_url(address)
            .await
            .map_err(|err| EngineError::EndpointRefused(err.to_string()))
    }

    fn idle_deadline(&self, policy: &ContextPolicy) -> Option<jiff::Timestamp> {
        let ttl = SignedDuration::try_from(policy.idle_ttl).ok()?;
        self.clock.now().checked_add(ttl).ok()
    }

    /// Starts a new instance of `service` and returns its id (the `instanceId` the client gets).
    /// It is durable when this returns; it has no callback endpoint yet.
    pub async fn open_instance(
        &self,
        service: &SourceName,
        address: String,
    ) -> Result<SubscriptionId, EngineError> {
        let policy = self.context(service.as_str())?;
        let id = SubscriptionId::new_random();
        let log = instance_log(service, id)
            .ok_or_else(|| EngineError::UnknownContext(service.to_string()))?;
        let now = self.clock.now();
        let instance = Subscription {
            id,
            source: log,
            log: LogKind::Context,
            delivery: ReaderDelivery::SoapPush,
            dialect: WireDialect {
                eventing: EventingVersion::W3c2011,
                soap: SoapVersion::Soap12,
                addressing: WsaVersion::W3c2005,
            },
            // No callback endpoint until a CallbackContext names one.
            notify_to: EndpointRef {
                address: String::new(),
                reference_parameters: Vec::new(),
                reference_properties: Vec::new(),
            },
            end_to: None,
            delivery_mode: "callback".into(),
            format: NotificationFormat::Unwrap,
            filter: None,
            expires_at: self.idle_deadline(policy),
            expiry_kind: ExpiryKind::Duration,
            created_at: now,
            manager_address: address,
            webhook: None,
            connection_retry: None,
            wsman: None,
        };
        let admission = Admission {
            counted_as: service,
            limit: policy.max_instances,
            count: &|| self.delivery.instance_count(service),
            matcher: None,
            retry: policy.retry,
            start_after: None,
        };
        self.admit(instance, admission).await?;
        Ok(id)
    }

    /// A request participates in instance `id` of `service`: when it is active, its idle time
    /// starts again.
    pub async fn participate(
        &self,
        service: &SourceName,
        id: SubscriptionId,
    ) -> Result<Participation, EngineError> {
        let policy = self.context(service.as_str())?;
        let now = self.clock.now();
        let Some(instance) = self.store.active_subscription(id, now).await? else {
            return Ok(Participation::Unknown);
        };
        if !is_instance_of(&instance, service) {
            return Ok(Participation::Unknown);
        }
        let renewed = self
            .store
            .renew_subscription(id, self.idle_deadline(policy), ExpiryKind::Duration, now)
            .await?;
        Ok(if renewed {
            Participation::Active(Box::new(instance))
        } else {
            Participation::Unknown
        })
    }

    /// Stores the callback endpoint of a CallbackContext for instance `id` (replacing any
    /// earlier one) once the endpoint policy allows it, and delivers the instance's callbacks
    /// from this node from now on. Durable when this returns.
    pub async fn set_callback(
        &self,
        service: &SourceName,
        id: SubscriptionId,
        endpoint: EndpointRef,
        dialect: (SoapVersion, WsaVersion),
    ) -> Result<(), EngineError> {
        let policy = self.context(service.as_str())?;
        self.endpoints
            .check_url(&endpoint.address)
            .await
            .map_err(|err| EngineError::EndpointRefused(err.to_string()))?;
        let _replacing = self.redirects.lock().await;
        let now = self.clock.now();
        let redirected = self
            .store
            .redirect(id, &endpoint, dialect, self.delivery.node(), now)
            .await?;
        let Some((instance, progress)) = redirected else {
            return Err(EngineError::UnknownSubscription);
        };
        if !is_instance_of(&instance, service) {
            return Err(EngineError::UnknownSubscription);
        }
        // The reader delivered so far (here, or on another node told by the store) lets go;
        // its cursor here is fresher than the store's. A new endpoint starts with no failures.
        let cursor = self
            .delivery
            .progress(&instance.source, id)
            .map_or(progress.cursor, |here| here.cursor.max(progress.cursor));
        let progress = DeliveryProgress {
            cursor,
            ..DeliveryProgress::default()
        };
        self.delivery.stop_reading(&instance.source, id);
        self.delivery
            .start_reading(instance, progress, None, policy.retry)
            .await;
        Ok(())
    }

    /// Queues a callback for instance `id` of `service`: the SOAP body element `body` with
    /// `action`, to its callback endpoint. Durable when this returns.
    pub async fn callback(
        &self,
        service: &SourceName,
        id: SubscriptionId,
        action: String,
        body: String,
    ) -> Result<Arc<Event>, EngineError> {
        let policy = self.context(service.as_str())?;
        if body.len() > policy.max_callback_bytes {
            return Err(EngineError::EventTooLarge {
                source_name: service.clone(),
                limit: policy.max_callback_bytes,
            });
        }
        self.context(service.as_str())?;
        let record = self
            .store
            .subscription_record(id)
            .await?
            .filter(|record| is_instance_of(&record.subscription, service))
            .ok_or(EngineError::UnknownSubscription)?;
        if let SubscriptionStatus::Ended { reason, .. } = record.status {
            return Err(EngineError::InstanceEnded(reason));
        }
        // Idle past its time-to-live, the sweeper about to end it: refused, not accepted and
        // then never delivered.
        if record
            .subscription
            .expires_at
            .is_some_and(|at| at <= self.clock.now())
        {
            return Err(EngineError::InstanceEnded(EndReason::Expired));
        }
        let instance = record.subscription;
        if instance.notify_to.address.is_empty() {
            return Err(EngineError::NoCallbackEndpoint);
        }
        let appended = self
            .delivery
            .append(
                &instance.source,
                vec![NewEvent {
                    action,
                    payload: body,
                }],
            )
            .await?;
        appended
            .into_iter()
            .next()
            .ok_or(EngineError::UnknownSubscription)
    }

    /// Everything known about instance `id` of `service`, with its log's head.
    pub async fn instance(
        &self,
        service: &SourceName,
        id: SubscriptionId,
    ) -> Result<(SubscriptionRecord, u64), EngineError> {
        self.context(service.as_str())?;
        let mut record = self
            .store
            .subscription_record(id)
            .await?
            .filter(|record| is_instance_of(&record.subscription, service))
            .ok_or(EngineError::UnknownSubscription)?;
        let log = record.subscription.source.clone();
        if record.status == SubscriptionStatus::Active
            && let Some(progress) = self.delivery.progress(&log, id)
        {
            record.progress = progress;
        }
        let head = self.delivery.log_head(&log).await?;
        Ok((record, head))
    }

    /// Ends instance `id` of `service` on request.
    pub async fn end_instance(
        &self,
        service: &SourceName,
        id: SubscriptionId,
    ) -> Result<Ended, EngineError> {
        self.instance(service, id).await?;
        self.end(id, EndReason::Unsubscribed)
            .await?
            .ok_or(EngineError::UnknownSubscription)
    }

    /// The context policy of an instance this node came to own, if its service is configured.
    pub(super) fn instance_policy(&self, instance: &Subscription) -> Option<&ContextPolicy> {
        service_of(&instance.source).and_then(|service| self.contexts.get(&service))
    }
}

fn is_instance_of(subscription: &Subscription, service: &SourceName) -> bool {
    subscription.log == LogKind::Context
        && service_of(&subscription.source).as_ref() == Some(service)
}
