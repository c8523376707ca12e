//! The subscription and the values it is made of, each parsed once at the edge and trusted inside.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::expiry::ExpiryKind;

/// A subscription's identifier: a UUID written `uuid:…` on the wire; herald's own are time-ordered,
/// with 74 random bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(Uuid);

impl SubscriptionId {
    /// The UUID itself.
    pub fn uuid(&self) -> Uuid {
        self.0
    }

    /// A fresh identifier: time-ordered, with 74 random bits (see [`super::random::uuid_v7`]).
    pub fn new_random() -> SubscriptionId {
        SubscriptionId(super::random::uuid_v7())
    }

    /// The identifier every node derives from `name` (a UUIDv5): for readers herald makes
    /// itself, such as an agent's bridge.
    pub fn derived(name: &str) -> SubscriptionId {
        SubscriptionId(Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes()))
    }

    /// Reads an identifier as a client echoes it: `uuid:…` or a bare UUID, whitespace trimmed.
    /// Anything else cannot name a subscription herald issued.
    pub fn parse(text: &str) -> Option<SubscriptionId> {
        let text = text.trim();
        let bare = text.strip_prefix("uuid:").unwrap_or(text);
        Uuid::try_parse(bare).ok().map(SubscriptionId)
    }

    /// The hyphenated UUID without the `uuid:` scheme, as stored.
    pub fn key(&self) -> String {
        self.0.hyphenated().to_string()
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uuid:{}", self.0.hyphenated())
    }
}

/// The name of an event source, as it appears in `/eventing/{source}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceName(String);

/// A name looked up by its text (as in `/eventing/{source}`).
impl std::borrow::Borrow<str> for SourceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl SourceName {
    /// Accepts 1–64 characters from `[A-Za-z0-9._-]`, so a name is always safe in a URL path.
    pub fn parse(name: &str) -> Option<SourceName> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| SourceName(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The WS-Eventing wire version a subscription was created in; notifications and
/// SubscriptionEnd messages follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventingVersion {
    /// `http://schemas.xmlsoap.org/ws/2004/01/eventing`
    Jan2004,
    /// `http://schemas.xmlsoap.org/ws/2004/08/eventing` (WS-Management, DPWS)
    Aug2004,
    /// `http://www.w3.org/2011/03/ws-evt`
    W3c2011,
}

/// The SOAP version of the Subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SoapVersion {
    /// SOAP 1.1
    Soap11,
    /// SOAP 1.2
    Soap12,
}

/// The WS-Addressing version of the Subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WsaVersion {
    /// `http://schemas.xmlsoap.org/ws/2003/03/addressing`
    Mar2003,
    /// `http://schemas.xmlsoap.org/ws/2004/08/addressing`
    Aug2004,
    /// `http://www.w3.org/2005/08/addressing` (WS-Addressing 1.0)
    W3c2005,
}

macro_rules! storage_names {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The name used in storage and in the JSON API.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }

            /// Inverse of `as_str`.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

/// What a log carries. Every callback kind herald delivers is a log (append-only, with
/// per-log sequence numbers) read by readers (a cursor and a delivery); a WS-Eventing event
/// source is the first kind. Callback contexts, agents and channels follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogKind {
    /// A WS-Eventing event source: its events.
    Source,
    /// A callback context's instance: the callbacks addressed to it (see `domain::context`).
    Context,
    /// An agent: the callback events of invocations (see `domain::invocation`).
    Agent,
}

/// How a reader of a log is delivered to. SOAP push is the first; plain HTTP push (webhooks),
/// pull and stream follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReaderDelivery {
    /// SOAP messages pushed to the reader's endpoint, in its WS-Eventing dialect.
    SoapPush,
    /// Published to an AMQP broker, the cursor moving once the broker confirms (an agent's
    /// bridge).
    AmqpPublish,
    /// The event as published POSTed to a URL, signed per Standard Webhooks v1.
    Webhook,
    /// A CloudEvent in HTTP binary mode (the event as the body, its attributes as `ce-`
    /// headers).
    CloudEventsBinary,
    /// A CloudEvent in HTTP structured mode (`application/cloudevents+json`).
    CloudEventsStructured,
}

impl ReaderDelivery {
    /// Whether it is one of the webhook deliveries (plain HTTP, managed through the JSON API).
    pub fn is_webhook(self) -> bool {
        matches!(
            self,
            ReaderDelivery::Webhook
                | ReaderDelivery::CloudEventsBinary
                | ReaderDelivery::CloudEventsStructured
        )
    }
}

storage_names!(LogKind { Source => "source", Context => "context", Agent => "agent" });
storage_names!(ReaderDelivery {
    SoapPush => "soap-push",
    AmqpPublish => "amqp-publish",
    Webhook => "standard-webhooks",
    CloudEventsBinary => "cloudevents-binary",
    CloudEventsStructured => "cloudevents-structured",
});

storage_names!(EventingVersion { Jan2004 => "2004/01", Aug2004 => "2004/08", W3c2011 => "2011" });
storage_names!(SoapVersion { Soap11 => "1.1", Soap12 => "1.2" });
storage_names!(WsaVersion { Mar2003 => "2003/03", Aug2004 => "2004/08", W3c2005 => "2005/08" });

/// The dialect a subscriber speaks: herald answers and notifies it in the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WireDialect {
    /// WS-Eventing version.
    pub eventing: EventingVersion,
    /// SOAP version.
    pub soap: SoapVersion,
    /// WS-Addressing version.
    pub addressing: WsaVersion,
}

/// A WS-Addressing endpoint reference. Reference parameters and properties are kept as
/// self-contained XML fragments (each with the namespace declarations it needs) so they can be
/// copied verbatim into the headers of messages sent to the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRef {
    /// `wsa:Address`, trimmed.
    pub address: String,
    /// Children of `wsa:ReferenceParameters`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_parameters: Vec<String>,
    /// Children of `wsa:ReferenceProperties` (WS-Addressing 2003/03 and 2004/08).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_properties: Vec<String>,
}

/// A filter as the subscriber sent it: evaluated by the filter engine at delivery time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// The dialect URI (the version's default when the request named none).
    pub dialect: String,
    /// The filter text, trimmed.
    pub expression: String,
    /// The namespace bindings in scope on the Filter element: `(prefix, uri)`, `""` for the
    /// default namespace.
    pub namespaces: Vec<(String, String)>,
}

/// How notifications are shaped (W3C 2011 `wse:Format`; the 2004 versions always unwrap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationFormat {
    /// The event is the SOAP Body; its action is `wsa:Action`.
    Unwrap,
    /// The event travels inside `wse:Notify`.
    Wrap,
}

storage_names!(NotificationFormat { Unwrap => "unwrap", Wrap => "wrap" });

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The subscriber unsubscribed.
    Unsubscribed,
    /// It was not renewed in time.
    Expired,
    /// Notifications could not be delivered.
    DeliveryFailure,
    /// The source was removed or herald is shutting it down.
    SourceShuttingDown,
    /// An operator cancelled it.
    SourceCancelling,
}

storage_names!(EndReason {
    Unsubscribed => "unsubscribed",
    Expired => "expired",
    DeliveryFailure => "delivery_failure",
    SourceShuttingDown => "source_shutting_down",
    SourceCancelling => "source_cancelling",
});

/// A subscription as stored: a reader of a source's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// Its identifier.
    pub id: SubscriptionId,
    /// The source it is subscribed to.
    pub source: SourceName,
    /// The kind of log it reads (a source's, for every WS-Eventing subscription).
    pub log: LogKind,
    /// How it is delivered to.
    pub delivery: ReaderDelivery,
    /// The dialect it was created in.
    pub dialect: WireDialect,
    /// Where notifications go.
    pub notify_to: EndpointRef,
    /// Where SubscriptionEnd goes, if anywhere.
    pub end_to: Option<Box<EndpointRef>>,
    /// The delivery mode URI (2004/08 `Delivery/@Mode`; Push for the others).
    pub delivery_mode: String,
    /// Wrapped or unwrapped notifications.
    pub format: NotificationFormat,
    /// The filter, if any.
    pub filter: Option<Filter>,
    /// When it expires; `None` for never.
    pub expires_at: Option<Timestamp>,
    /// The type its expiry is reported in.
    pub expiry_kind: ExpiryKind,
    /// When it was created.
    pub created_at: Timestamp,
    /// The subscription manager address it was given.
    pub manager_address: String,
    /// A webhook's signing secrets (webhook deliveries only).
    pub webhook: Option<crate::domain::webhook::WebhookSettings>,
    /// The subscriber's own retry schedule (WS-Management `wsman:ConnectionRetry`).
    pub connection_retry: Option<ConnectionRetry>,
    /// What a WS-Management subscriber asked of delivery (mode, batching, heartbeats,
    /// bookmarks, sink authentication); `None` for everyone else. Boxed: most readers have
    /// none, and each costs only a pointer then.
    pub wsman: Option<Box<crate::domain::wsman::WsmanDelivery>>,
}

impl Subscription {
    /// What delivery lets go of once it has ended: a SubscriptionEnd was queued if it has an
    /// EndTo.
    pub fn ended(&self) -> Ended {
        Ended {
            id: self.id,
            source: self.source.clone(),
            notice: self.end_to.is_some(),
        }
    }

    /// Whether its subscriber pulls its events (WS-Management Pull mode): nothing is pushed.
    pub fn pulled(&self) -> bool {
        self.wsman
            .as_ref()
            .is_some_and(|wsman| wsman.mode == crate::domain::wsman::WsmanMode::Pull)
    }
}

/// A subscription just ended, as much of it as delivery needs to let it go: which reader to
/// stop, and whether a SubscriptionEnd notice now waits in the store for its EndTo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Its identifier.
    pub id: SubscriptionId,
    /// The log it read.
    pub source: SourceName,
    /// It had an EndTo: its SubscriptionEnd was queued in the same statement as the end.
    pub notice: bool,
}

/// A subscriber's retry schedule (`wsman:ConnectionRetry`): `total` retries, `interval` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionRetry {
    /// The delay between attempts.
    pub interval: std::time::Duration,
    /// How many retries after the first failed attempt.
    pub total: u32,
}

/// Where a subscription's delivery stands: what it has handled and how the current retry goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryProgress {
    /// The last sequence number handled (delivered, or skipped by the filter).
    pub cursor: u64,
    /// Failed attempts at the event after the cursor.
    pub attempts: u32,
    /// When the next attempt is due, while retrying.
    pub next_attempt_at: Option<Timestamp>,
    /// When the first of the current run of failures happened.
    pub failing_since: Option<Timestamp>,
    /// The last failure, for operators.
    pub last_error: Option<String>,
}

/// Whether a subscription is active or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    /// Receiving notifications.
    Active,
    /// Ended, with the reason and when.
    Ended {
        /// Why.
        reason: EndReason,
        /// When.
        at: Timestamp,
    },
}

/// Where the SubscriptionEnd message for an ended subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndNotice {
    /// To be sent.
    Pending,
    /// Delivered to EndTo.
    Sent,
    /// Given up after retries.
    Failed,
    /// The version sends none for this reason.
    Skipped,
}

storage_names!(EndNotice { Pending => "pending", Sent => "sent", Failed => "failed", Skipped => "skipped" });

/// Everything stored about a subscription, for operators.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRecord {
    /// The subscription.
    pub subscription: Subscription,
    /// Active or ended.
    pub status: SubscriptionStatus,
    /// Delivery progress as last stored.
    pub progress: DeliveryProgress,
    /// The SubscriptionEnd message's state, once ended with an EndTo.
    pub end_notice: Option<EndNotice>,
    /// The node that delivers (or last delivered) it.
    pub owner: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_round_trip_with_and_without_scheme() {
        let id = SubscriptionId::new_random();
        assert_eq!(SubscriptionId::parse(&id.to_string()), Some(id));
        assert_eq!(
            SubscriptionId::parse(&format!("\n  {}  ", id.key())),
            Some(id)
        );
        assert_eq!(SubscriptionId::parse("uuid:not-a-uuid"), None);
    }

    /// New identifiers are time-ordered, so the store's index on them grows at its end: one
    /// made later, in another millisecond, sorts after, as stored text too.
    #[test]
    fn new_identifiers_sort_in_the_order_they_were_made() {
        let first = SubscriptionId::new_random();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = SubscriptionId::new_random();
        assert_eq!(first.uuid().get_version_num(), 7, "{first}");
        assert!(first.key() < later.key(), "{first} after {later}");
    }

    #[test]
    fn source_names_are_url_safe() {
        assert!(SourceName::parse("orders.eu-1_a").is_some());
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(SourceName::parse(bad).is_none(), "{bad:?}");
        }
    }
}
