//! The JSON bodies of the API, as types: what a client can rely on, written in one place.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::event::Event;
use crate::domain::expiry::format_datetime;
use crate::domain::subscription::{
    DeliveryProgress, SourceName, SubscriptionRecord, SubscriptionStatus,
};

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status and title say what happened.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A short, fixed summary.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What exactly went wrong.
    pub detail: String,
}

/// The answer to a publish: each event's identifier and sequence number, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Published {
    /// The events appended.
    pub events: Vec<PublishedEvent>,
}

/// One appended event.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishedEvent {
    /// `uuid:…`.
    pub id: String,
    /// Its place in the source's log.
    pub seq: u64,
}

impl Published {
    /// The answer for these events.
    pub fn of(events: &[std::sync::Arc<Event>]) -> Published {
        Published {
            events: events
                .iter()
                .map(|event| PublishedEvent {
                    id: event.id.to_string(),
                    seq: event.seq,
                })
                .collect(),
        }
    }
}

/// `202` to a queued callback.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedCallback {
    /// The instance's id (its `instanceId`).
    pub instance: String,
    /// The callback's sequence number in the instance's log.
    pub seq: u64,
    /// The `wsa:MessageID` it is sent with, the same on every attempt.
    pub message_id: String,
}

/// `GET /api/v1/contexts/{name}/instances/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceView {
    /// The `instanceId`.
    pub id: String,
    /// The context service.
    pub context: String,
    /// `active` or `ended`.
    pub status: &'static str,
    pub end_reason: Option<&'static str>,
    pub ended_at: Option<String>,
    /// The context the client sends: its properties.
    pub properties: std::collections::BTreeMap<&'static str, String>,
    /// Where callbacks go, once a CallbackContext named it.
    pub callback: Option<CallbackView>,
    /// The node delivering its callbacks.
    pub node: Option<String>,
    pub created_at: String,
    /// When it ends unless a request participates in it first.
    pub idle_until: Option<String>,
    /// Delivery of its callbacks: `cursor` (the last handled), `head` (the last queued),
    /// `backlog`, and the retry state.
    #[serde(flatten)]
    pub progress: ProgressView,
}

/// An instance's callback endpoint reference.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = InstanceCallback)]
pub struct CallbackView {
    pub address: String,
    /// Its reference parameters, each a self-contained XML element (the client's Context).
    pub reference_parameters: Vec<String>,
    pub soap: &'static str,
    pub addressing: &'static str,
}

impl InstanceView {
    /// The view of an instance's record, with its log's head.
    pub fn of(service: &SourceName, record: SubscriptionRecord, head: u64) -> InstanceView {
        let subscription = record.subscription;
        let (status, end_reason, ended_at) = status_parts(&record.status);
        let progress = record.progress;
        let notify_to = subscription.notify_to;
        InstanceView {
            id: subscription.id.key(),
            context: service.to_string(),
            status,
            end_reason,
            ended_at,
            properties: [("instanceId", subscription.id.key())]
                .into_iter()
                .collect(),
            callback: (!notify_to.address.is_empty()).then(|| CallbackView {
                address: notify_to.address,
                reference_parameters: notify_to.reference_parameters,
                soap: subscription.dialect.soap.as_str(),
                addressing: subscription.dialect.addressing.as_str(),
            }),
            node: record.owner,
            created_at: format_datetime(subscription.created_at),
            idle_until: subscription.expires_at.map(format_datetime),
            progress: ProgressView::of(progress, head, status == "active"),
        }
    }
}

/// `active` or `ended`, the end reason and when it ended.
fn status_parts(
    status: &SubscriptionStatus,
) -> (&'static str, Option<&'static str>, Option<String>) {
    match *status {
        SubscriptionStatus::Active => ("active", None, None),
        SubscriptionStatus::Ended { reason, at } => {
            ("ended", Some(reason.as_str()), Some(format_datetime(at)))
        }
    }
}

/// `GET /api/v1/subscriptions/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: String,
    pub source: String,
    /// The kind of log it reads (`source`).
    pub log: &'static str,
    /// How it is delivered to (`soap-push`).
    pub delivery: &'static str,
    /// `active` or `ended`.
    pub status: &'static str,
    pub end_reason: Option<&'static str>,
    pub ended_at: Option<String>,
    /// The SubscriptionEnd message's state.
    pub end_notice: Option<&'static str>,
    /// The node delivering it.
    pub node: Option<String>,
    pub dialect: DialectView,
    pub notify_to: String,
    pub end_to: Option<String>,
    pub format: &'static str,
    pub filter: Option<FilterView>,
    pub created_at: String,
    pub expires_at: Option<String>,
    #[serde(flatten)]
    pub progress: ProgressView,
}

/// Where a reader is in its log, and its retry state.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressView {
    /// The last sequence number handled.
    pub cursor: u64,
    /// The log's last sequence number.
    pub head: u64,
    /// Entries after the cursor (0 once ended).
    pub backlog: u64,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub failing_since: Option<String>,
    pub last_error: Option<String>,
}

impl ProgressView {
    fn of(progress: DeliveryProgress, head: u64, active: bool) -> ProgressView {
        ProgressView {
            cursor: progress.cursor,
            head,
            backlog: if active {
                head.saturating_sub(progress.cursor)
            } else {
                0
            },
            attempts: progress.attempts,
            next_attempt_at: progress.next_attempt_at.map(format_datetime),
            failing_since: progress.failing_since.map(format_datetime),
            last_error: progress.last_error,
        }
    }
}

/// The versions a subscriber speaks.
#[derive(Debug, Serialize, ToSchema)]
pub struct DialectView {
    pub eventing: &'static str,
    pub soap: &'static str,
    pub addressing: &'static str,
}

/// A subscription's filter.
#[derive(Debug, Serialize, ToSchema)]
pub struct FilterView {
    pub dialect: String,
    pub expression: String,
}

impl SubscriptionView {
    /// The view of a stored record, with the source's `head` when known.
    pub fn of(record: SubscriptionRecord, head: Option<u64>) -> SubscriptionView {
        let subscription = record.subscription;
        let (status, end_reason, ended_at) = status_parts(&record.status);
        let progress = record.progress;
        let head = head.unwrap_or(progress.cursor);
        SubscriptionView {
            id: subscription.id.to_string(),
            source: subscription.source.to_string(),
            log: subscription.log.as_str(),
            delivery: subscription.delivery.as_str(),
            status,
            end_reason,
            ended_at,
            end_notice: record.end_notice.map(|notice| notice.as_str()),
            node: record.owner,
            dialect: DialectView {
                eventing: subscription.dialect.eventing.as_str(),
                soap: subscription.dialect.soap.as_str(),
                addressing: subscription.dialect.addressing.as_str(),
            },
            notify_to: subscription.notify_to.address,
            end_to: subscription.end_to.map(|epr| epr.address),
            format: subscription.format.as_str(),
            filter: subscription.filter.map(|filter| FilterView {
                dialect: filter.dialect,
                expression: filter.expression,
            }),
            created_at: format_datetime(subscription.created_at),
            expires_at: subscription.expires_at.map(format_datetime),
            progress: ProgressView::of(progress, head, status == "active"),
        }
    }
}

/// A webhook subscription (`GET`, and `201`/`200` with its new secret when one was made).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub source: String,
    /// Where deliveries go.
    pub url: String,
    /// `standard-webhooks`, `cloudevents-binary` or `cloudevents-structured`.
    pub format: &'static str,
    /// The same as `format`: the field every subscription has.
    pub delivery: &'static str,
    pub filter: Option<FilterView>,
    /// `active` or `ended`.
    pub status: &'static str,
    pub end_reason: Option<&'static str>,
    pub ended_at: Option<String>,
    /// Where the notice of its end goes.
    pub end_url: Option<String>,
    /// That notice's state.
    pub end_notice: Option<&'static str>,
    /// The node delivering it.
    pub node: Option<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    /// Signing secrets in use (the current one, and a rotated-out one in its grace period).
    pub signing_secrets: usize,
    /// The secret, only in the answer that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(flatten)]
    pub progress: ProgressView,
}

impl WebhookView {
    /// The view of a stored webhook record, with the source's `head` when known.
    pub fn of(
        record: SubscriptionRecord,
        head: Option<u64>,
        secret: Option<String>,
    ) -> WebhookView {
        let subscription = record.subscription;
        let (status, end_reason, ended_at) = status_parts(&record.status);
        let progress = record.progress;
        let head = head.unwrap_or(progress.cursor);
        let now = jiff::Timestamp::now();
        WebhookView {
            id: subscription.id.key(),
            source: subscription.source.to_string(),
            url: subscription.notify_to.address,
            format: subscription.delivery.as_str(),
            delivery: subscription.delivery.as_str(),
            filter: subscription.filter.map(|filter| FilterView {
                dialect: filter.dialect,
                expression: filter.expression,
            }),
            status,
            end_reason,
            ended_at,
            end_url: subscription.end_to.map(|epr| epr.address),
            end_notice: record.end_notice.map(|notice| notice.as_str()),
            node: record.owner,
            created_at: format_datetime(subscription.created_at),
            expires_at: subscription.expires_at.map(format_datetime),
            signing_secrets: subscription
                .webhook
                .map_or(0, |settings| settings.keys_at(now).len()),
            secret,
            progress: ProgressView::of(progress, head, status == "active"),
        }
    }
}

/// A page of subscriptions (`GET /api/v1/subscriptions`): each a [`SubscriptionView`] or a
/// [`WebhookView`]; `next` is the `after` of the next page, if there may be one.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionPage {
    pub items: Vec<AnySubscriptionView>,
    pub next: Option<String>,
}

/// `GET /api/v1/overview`: what this node hosts and how its deliveries go, in one read (the
/// console polls it). Counters are totals since this node started; a client derives rates
/// from two reads.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    /// The configured event sources.
    pub sources: Vec<SourceOverview>,
    /// Delivery attempts on this node by outcome (`herald_deliveries_total`).
    pub deliveries: DeliveryCounts,
    /// The configured context services' names.
    pub contexts: Vec<String>,
    /// Declared agents and those holding messages, with their pull queues.
    pub agents: Vec<AgentOverview>,
    /// Open channels by connection status.
    pub channels: std::collections::BTreeMap<&'static str, u64>,
}

/// One source in the [`Overview`].
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceOverview {
    pub name: String,
    /// Active subscriptions this node delivers.
    pub active: u64,
    /// Events not yet handled, summed over those subscriptions.
    pub backlog: u64,
    /// Events appended through this node since it started.
    pub published: u64,
}

/// Delivery attempts by outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryCounts {
    pub delivered: u64,
    /// Failed and retried later.
    pub failed: u64,
    pub gave_up: u64,
}

/// One agent in the [`Overview`].
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentOverview {
    pub name: String,
    /// Messages not yet acknowledged.
    pub depth: u64,
    /// Of those, leased to a listener now.
    pub leased: u64,
}

/// A subscription of either kind, as read by id or listed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum AnySubscriptionView {
    /// A WS-Eventing (SOAP) subscription.
    Soap(SubscriptionView),
    /// A webhook subscription.
    Webhook(WebhookView),
}

impl AnySubscriptionView {
    /// The view of a record: a webhook's or a SOAP subscription's.
    pub fn of(record: SubscriptionRecord, head: Option<u64>, secret: Option<String>) -> Self {
        if record.subscription.delivery.is_webhook() {
            AnySubscriptionView::Webhook(WebhookView::of(record, head, secret))
        } else {
            AnySubscriptionView::Soap(SubscriptionView::of(record, head))
        }
    }
}
