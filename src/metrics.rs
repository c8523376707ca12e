//! Prometheus metrics, served at `GET /metrics` in the text exposition format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of `herald_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `subscribe`, `renew`, `get_status`, `unsubscribe`, or `unknown` when the message never
    /// got as far as naming one.
    pub operation: &'static str,
    /// `ok`, `sender_fault` or `receiver_fault`.
    pub outcome: &'static str,
}

/// Labels of `herald_active_subscriptions`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// The event source.
    pub source: String,
}

/// Labels of `herald_deliveries`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `delivered`, `failed` (will be retried) or `gave_up`.
    pub outcome: &'static str,
}

/// Labels of `herald_subscription_ends`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndNoticeLabels {
    /// `sent`, `failed` (will be retried), `gave_up` or `skipped`.
    pub outcome: &'static str,
}

/// Labels of `herald_callbacks_queued`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContextLabels {
    /// The context service.
    pub context: String,
}

/// Labels of `herald_callbacks_refused`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallbackLabels {
    /// The context service.
    pub context: String,
    /// `no_callback_endpoint`, `instance_ended`, `unknown_instance`, `too_large` or
    /// `unavailable`.
    pub reason: &'static str,
}

/// Labels of invocation counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvocationLabels {
    /// The invoker.
    pub invoker: String,
    /// `callback`, `kept`, `failed` (given up, refused or faulted), `retried` (a call failed and
    /// is retried), `not_owned` (another node had taken it over; nothing recorded here).
    pub outcome: &'static str,
}

/// Labels of agent gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabels {
    /// The agent.
    pub agent: String,
}

/// Labels of channel notification counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// `received`, `queue_full`, `expired`, `inactive`, `over_daily_limit`, `too_large`,
    /// `bad_request`.
    pub outcome: &'static str,
}

/// Labels of channel callback counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallbackFiredLabels {
    /// `fired`, `retried`, `failed`.
    pub outcome: &'static str,
}

/// Labels of the channel status gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelStatusLabels {
    /// `Connected`, `TempDisconnected`, `InActive`, `Disconnected`.
    pub status: &'static str,
}

/// herald's metrics and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    /// SOAP requests by operation and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Active subscriptions per source, refreshed at every scrape.
    pub active_subscriptions: Family<SourceLabels, Gauge>,
    /// 1 while a start still loads this node's stored subscriptions, refreshed at every scrape.
    pub loading: Gauge,
    /// Events appended per source.
    pub events_published: Family<SourceLabels, Counter>,
    /// Delivery attempts by outcome.
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// Seconds from an event becoming durable to its delivery.
    pub delivery_latency: Histogram,
    /// Retries scheduled.
    pub retries: Counter,
    /// Events published but not yet handled, summed over a source's subscriptions; refreshed
    /// at every scrape.
    pub backlog: Family<SourceLabels, Gauge>,
    /// SubscriptionEnd messages by outcome.
    pub subscription_ends: Family<EndNoticeLabels, Counter>,
    /// Connections closed at once because `max_connections` were open.
    pub connections_refused: Counter,
    /// Callbacks queued per context service.
    pub callbacks_queued: Family<ContextLabels, Counter>,
    /// Callbacks refused per context service and reason.
    pub callbacks_refused: Family<CallbackLabels, Counter>,
    /// Invocations by invoker and outcome.
    pub invocations: Family<InvocationLabels, Counter>,
    /// Seconds from a raise to its invocation's end (callback, kept or failed).
    pub invocation_latency: Histogram,
    /// Messages on an agent's pull queue not yet acknowledged.
    pub agent_depth: Family<AgentLabels, Gauge>,
    /// Of those, leased to a listener now.
    pub agent_leased: Family<AgentLabels, Gauge>,
    /// Messages of an agent its AMQP bridge has not had confirmed yet.
    pub bridge_lag: Family<AgentLabels, Gauge>,
    /// Channels opened.
    pub channels_opened: Counter,
    /// Notifications sent to channels, by outcome.
    pub notifications: Family<NotificationLabels, Counter>,
    /// Channel callbacks sent, by outcome.
    pub channel_callbacks: Family<CallbackFiredLabels, Counter>,
    /// Channels by connection status.
    pub channels: Family<ChannelStatusLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("herald");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "SOAP requests handled, by operation and outcome",
            requests.clone(),
        );
        let active_subscriptions = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "active_subscriptions",
            "Active subscriptions per event source",
            active_subscriptions.clone(),
        );
        let loading = Gauge::default();
        registry.register(
            "loading",
            "1 while a start still loads this node's stored subscriptions (herald answers meanwhile; the active counts grow to the stored ones)",
            loading.clone(),
        );
        let events_published = Family::<SourceLabels, Counter>::default();
        registry.register(
            "events_published",
            "Events appended to a source's log",
            events_published.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Notification delivery attempts by outcome",
            deliveries.clone(),
        );
        let delivery_latency = Histogram::new([
            0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
            600.0,
        ]);
        registry.register(
            "delivery_latency_seconds",
            "Seconds from an event being durable to its delivery",
            delivery_latency.clone(),
        );
        let retries = Counter::default();
        registry.register("retries", "Delivery retries scheduled", retries.clone());
        let backlog = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "backlog_events",
            "Events not yet handled, summed over the source's subscriptions",
            backlog.clone(),
        );
        let subscription_ends = Family::<EndNoticeLabels, Counter>::default();
        registry.register(
            "subscription_end_messages",
            "SubscriptionEnd messages by outcome",
            subscription_ends.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed at once because max_connections were open",
            connections_refused.clone(),
        );
        let callbacks_queued = Family::<ContextLabels, Counter>::default();
        registry.register(
            "callbacks_queued",
            "Callbacks queued for context instances",
            callbacks_queued.clone(),
        );
        let callbacks_refused = Family::<CallbackLabels, Counter>::default();
        registry.register(
            "callbacks_refused",
            "Callbacks refused, by reason",
            callbacks_refused.clone(),
        );
        let invocations = Family::<InvocationLabels, Counter>::default();
        registry.register(
            "invocations",
            "Invocations by invoker and outcome",
            invocations.clone(),
        );
        let invocation_latency = Histogram::new([
            0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
            600.0,
        ]);
        registry.register(
            "invocation_latency_seconds",
            "Seconds from a raise to its invocation's end",
            invocation_latency.clone(),
        );
        let agent_depth = Family::<AgentLabels, Gauge>::default();
        registry.register(
            "agent_depth",
            "Messages on an agent's pull queue not yet acknowledged",
            agent_depth.clone(),
        );
        let agent_leased = Family::<AgentLabels, Gauge>::default();
        registry.register(
            "agent_leased",
            "Messages of an agent leased to a listener now",
            agent_leased.clone(),
        );
        let bridge_lag = Family::<AgentLabels, Gauge>::default();
        registry.register(
            "bridge_lag_messages",
            "Messages of an agent its AMQP bridge has not had confirmed yet",
            bridge_lag.clone(),
        );
        let channels_opened = Counter::default();
        registry.register(
            "channels_opened",
            "Push channels opened",
            channels_opened.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "channel_notifications",
            "Notifications sent to push channels, by outcome",
            notifications.clone(),
        );
        let channel_callbacks = Family::<CallbackFiredLabels, Counter>::default();
        registry.register(
            "channel_callbacks",
            "Channel callbacks sent when a device went inactive, by outcome",
            channel_callbacks.clone(),
        );
        let channels = Family::<ChannelStatusLabels, Gauge>::default();
        registry.register(
            "channels",
            "Push channels by connection status",
            channels.clone(),
        );
        Metrics {
            registry,
            channels,
            channel_callbacks,
            channels_opened,
            notifications,
            invocations,
            invocation_latency,
            agent_depth,
            agent_leased,
            bridge_lag,
            callbacks_queued,
            callbacks_refused,
            connections_refused,
            requests,
            active_subscriptions,
            loading,
            events_published,
            deliveries,
            delivery_latency,
            retries,
            backlog,
            subscription_ends,
        }
    }
}

impl Metrics {
    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
