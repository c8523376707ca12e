//! The `Engine` service: every front door calls it, and it holds every lifecycle rule, once
//! (`lifecycle.rs`: create, renew, end for any reason, adopt, expire; `capacity.rs`: how many
//! subscriptions a source takes).
//!
//! The engine sees neither XML nor HTTP: protocol modules decode requests into the types here,
//! and the engine validates them against the source's policy and writes through the [`Store`].
//! It reaches delivery through the [`Dispatcher`] handle, filters through [`FilterEngine`], and
//! endpoints through the [`EndpointPolicy`]; delivery reaches it back through the
//! [`Lifecycle`](crate::delivery::Lifecycle) port.

mod agents;
mod callbacks;
mod capacity;
mod channels;
mod contexts;
mod invocations;
mod lifecycle;
mod pulls;
mod sink_auth;
mod webhooks;
pub use webhooks::{MadeWebhook, ROTATION_GRACE, WebhookChange, WebhookFilter, WebhookRequest};

pub use callbacks::Refusal;
pub use channels::{ChannelPolicy, NotificationStatus, Sent};
pub use contexts::{ContextCarrier, ContextPolicy, Participation, UnknownInstance};
pub use invocations::{
    AgentMessages, AgentPolicy, AmqpBridge, Answer, Finished, InvocationPolicy, InvokeProtocol,
    InvokerPolicy, MAX_KEY_CHARS, Reply,
};
pub use pulls::{PullRequest, Pulled};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::delivery::policy::EndpointPolicy;
use crate::delivery::retry::RetryPolicy;
use crate::delivery::{Dispatcher, PublishError};
use crate::domain::clock::Clock;
use crate::domain::event::{Event, NewEvent};
use crate::domain::expiry::{ExpiryError, ExpiryPolicy, ExpiryRules, RequestedExpiry};
use crate::domain::subscription::{
    EndpointRef, Filter, NotificationFormat, SourceName, Subscription, SubscriptionId,
    SubscriptionRecord, SubscriptionStatus, WireDialect,
};
use crate::filter::{FilterEngine, FilterError};
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
    /// The WS-Management resource URIs it answers to (`wsman:ResourceURI`).
    pub resource_uris: Vec<String>,
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
    /// No context service with this name is configured.
    #[error("no context service named '{0}'")]
    UnknownContext(String),
    /// The instance has no callback endpoint: no CallbackContext has named one.
    #[error("the instance has no callback endpoint: no request has carried a CallbackContext")]
    NoCallbackEndpoint,
    /// The instance has ended, for this reason; its callbacks are refused.
    #[error("the instance has ended ({})", .0.as_str())]
    InstanceEnded(crate::domain::subscription::EndReason),
    /// NotifyTo or EndTo is refused by the endpoint policy.
    #[error("{0}")]
    EndpointRefused(String),
    /// Publishing failed; nothing was appended.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// No invoker with this name is configured.
    #[error("no invoker named '{0}'")]
    UnknownInvoker(String),
    /// The name cannot name an agent.
    #[error("'{0}' is not an agent name")]
    UnknownAgent(String),
    /// A raise was refused; nothing was stored.
    #[error("{0}")]
    InvalidRaise(String),
    /// No invocation has this id.
    #[error("the invocation is not known")]
    UnknownInvocation,
    /// Only a failed invocation can be retried.
    #[error("the invocation is {}, not failed", .0.as_str())]
    NotFailed(crate::domain::invocation::InvocationState),
    /// Agents take callback events from invocations, not events from publishers.
    #[error("'{0}' is an agent: it takes callback events, not published events")]
    AgentNotPublishable(SourceName),
    /// No open channel has this token.
    #[error("the channel is not known, closed or expired")]
    UnknownChannel,
    /// A webhook subscription or change that cannot be made (the reason).
    #[error("{0}")]
    InvalidWebhook(String),
    /// A `wsman:Bookmark` that names no position herald still holds (why).
    #[error("{0}")]
    InvalidBookmark(String),
    /// A Pull or Release that cannot be served (why): the subscription is pushed, or the
    /// position it names has not been reached or is no longer retained.
    #[error("{0}")]
    InvalidPullPosition(String),
    /// herald cannot authenticate to the sink as asked (`wsman:Auth`): why.
    #[error("{0}")]
    SinkAuthUnavailable(String),
    /// The store failed; nothing was changed.
    #[error("the store failed")]
    Store(#[from] StoreError),
}

/// Endpoint addresses of a [`SubscribeRequest`], parsed as the HTTP client will dial them.
#[derive(Debug, Clone, Default)]
pub struct ParsedEndpoints {
    /// `notify_to`'s address.
    pub notify_to: Option<url::Url>,
    /// `end_to`'s address.
    pub end_to: Option<url::Url>,
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
    /// `notify_to`'s and `end_to`'s addresses as the decoder already read them with
    /// [`crate::delivery::policy::parse_endpoint`], if it did: the endpoint check then judges
    /// these instead of reading the addresses again.
    pub parsed: ParsedEndpoints,
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
    /// The subscriber's own retry schedule, if it asked for one.
    pub connection_retry: Option<crate::domain::subscription::ConnectionRetry>,
    /// What a WS-Management subscriber asked of delivery, if it is one.
    pub wsman: Option<crate::domain::wsman::WsmanDelivery>,
    /// Where it starts reading (a `wsman:Bookmark` moves it).
    pub start: crate::domain::wsman::StartAt,
    /// The sink's password for `wsman.auth` (Basic, Digest), in the clear: the engine seals it
    /// before anything is stored.
    pub sink_password: Option<crate::domain::secret::Secret>,
}

/// The domain engine, shared by every front door.
pub struct Engine {
    store: Arc<dyn Store>,
    sources: BTreeMap<SourceName, SourcePolicy>,
    contexts: BTreeMap<SourceName, ContextPolicy>,
    invokers: BTreeMap<SourceName, InvokerPolicy>,
    agents: BTreeMap<SourceName, AgentPolicy>,
    invocation_policy: InvocationPolicy,
    /// What wakes each invoker's runner on this node.
    invoker_wakes: std::sync::Mutex<BTreeMap<SourceName, Arc<tokio::sync::Notify>>>,
    /// What wakes pull listeners waiting on each agent on this node.
    agent_wakes: std::sync::Mutex<BTreeMap<SourceName, Arc<tokio::sync::Notify>>>,
    channel_policy: ChannelPolicy,
    /// What wakes device readers waiting on each channel on this node.
    channel_wakes: channels::ChannelWakes,
    delivery: Arc<Dispatcher>,
    filters: Arc<dyn FilterEngine>,
    endpoints: Arc<EndpointPolicy>,
    capacity: capacity::Capacity,
    /// Held while a callback endpoint is replaced (store, then delivery), so that two
    /// replacements on this node cannot leave delivery on the older one. They are rare.
    redirects: tokio::sync::Mutex<()>,
    /// Cancelled when herald starts to stop: requests that wait (a Pull) answer at once, so
    /// that draining the server does not wait for them.
    draining: tokio_util::sync::CancellationToken,
    clock: Clock,
}

impl Engine {
    /// Builds the engine over delivery (not started yet: [`Engine::start`] starts it).
    pub fn new(
        store: Arc<dyn Store>,
        (sources, contexts, invocations, channel_policy): (
            Vec<SourcePolicy>,
            Vec<ContextPolicy>,
            InvocationPolicy,
            ChannelPolicy,
        ),
        delivery: Arc<Dispatcher>,
        filters: Arc<dyn FilterEngine>,
        endpoints: Arc<EndpointPolicy>,
        clock: Clock,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            store,
            sources: sources.into_iter().map(|s| (s.name.clone(), s)).collect(),
            contexts: contexts.into_iter().map(|c| (c.name.clone(), c)).collect(),
            invokers: (invocations.invokers.iter())
                .map(|i| (i.name.clone(), i.clone()))
                .collect(),
            agents: (invocations.agents.iter())
                .map(|a| (a.name.clone(), a.clone()))
                .collect(),
            invocation_policy: invocations,
            invoker_wakes: std::sync::Mutex::default(),
            agent_wakes: std::sync::Mutex::default(),
            channel_policy,
            channel_wakes: std::sync::Mutex::new((BTreeMap::new(), 1024)),
            delivery,
            filters,
            endpoints,
            capacity: capacity::Capacity::default(),
            redirects: tokio::sync::Mutex::new(()),
            draining: tokio_util::sync::CancellationToken::new(),
            clock,
        })
    }

    /// herald is stopping: requests that wait answer now (a Pull with what it has, or
    /// `wsman:TimedOut`).
    pub fn drain(&self) {
        self.draining.cancel();
    }

    /// Starts delivery: this node joins, and each subscription it owns is adopted (or ended)
    /// under the rules here.
    pub async fn start(self: &Arc<Self>) -> Result<(), StoreError> {
        let engine: std::sync::Weak<Engine> = Arc::downgrade(self);
        self.delivery.start(engine).await?;
        if let Err(err) = self.ensure_bridges().await {
            tracing::warn!(error = %err, "storing the agents' bridge readers failed; the next start tries again");
        }
        Ok(())
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
        self.delivery.update_backlog_metrics();
    }

    /// Whether a start still loads this node's stored subscriptions (herald answers meanwhile).
    pub fn loading(&self) -> bool {
        self.delivery.loading()
    }

    /// Active subscriptions per configured source.
    pub fn active_counts(&self) -> Vec<(SourceName, u64)> {
        self.delivery.reader_counts()
    }

    /// Whether this node can take requests now: its store can be written (within 2 s) and its
    /// lease holds. `Err` says why not.
    pub async fn readiness(&self) -> Result<(), String> {
        let check = self.store.check_writable(self.delivery.node());
        match tokio::time::timeout(Duration::from_secs(2), check).await {
            Err(_) => return Err("the store did not answer within 2 s".into()),
            Ok(Err(err)) => return Err(format!("the store cannot be written: {err}")),
            Ok(Ok(())) => {}
        }
        if !self.delivery.lease_confirmed() {
            return Err("this node's lease is not confirmed".into());
        }
        Ok(())
    }

    /// The current time on the engine's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The subscription, if active and unexpired.
    pub async fn status(&self, id: SubscriptionId) -> Result<Subscription, EngineError> {
        self.store
            .active_subscription(id, self.clock.now())
            .await?
            .filter(|subscription| {
                subscription.delivery == crate::domain::subscription::ReaderDelivery::SoapPush
            })
            .ok_or(EngineError::UnknownSubscription)
    }

    /// Appends events to a source's log; returns them once durable.
    pub async fn publish(
        &self,
        source: &str,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Arc<Event>>, EngineError> {
        let policy = self.source(source)?;
        if self.agents.contains_key(&policy.name) {
            return Err(EngineError::AgentNotPublishable(policy.name.clone()));
        }
        if events
            .iter()
            .any(|event| event.payload.len() > policy.max_event_bytes)
        {
            return Err(EngineError::EventTooLarge {
                source_name: policy.name.clone(),
                limit: policy.max_event_bytes,
            });
        }
        Ok(self.delivery.publish(&policy.name, events).await?)
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
        // A pulled subscription's cursor is moved by its Pulls, on any node: the store knows.
        if record.status == SubscriptionStatus::Active
            && !record.subscription.pulled()
            && let Some(progress) = self.delivery.progress(&source, id)
        {
            record.progress = progress;
        }
        Ok((record, self.delivery.head(&source)))
    }
}
