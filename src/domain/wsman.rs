//! What a WS-Management subscriber (DMTF DSP0226) asks of delivery beyond WS-Eventing: the
//! delivery mode, batching limits, heartbeats, bookmarks and how herald authenticates to its
//! sink. Parsed once from the Subscribe and kept with the subscription.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The WS-Management delivery modes' URIs.
pub mod modes {
    /// One event per message, acknowledged by the sink before the next is sent.
    pub const PUSH_WITH_ACK: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/PushWithAck";
    /// Events in batches, each acknowledged.
    pub const EVENTS: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Events";
    /// The subscriber pulls with WS-Enumeration.
    pub const PULL: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Pull";
}

/// How a WS-Management subscription is delivered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WsmanMode {
    /// WS-Eventing push: one event per one-way message.
    Push,
    /// One event per message with `wsman:AckRequested`; the next only after the sink's Ack.
    PushWithAck,
    /// Batches in a `wsman:Events` body, each acknowledged.
    Events,
    /// No pushes: the subscriber pulls with `wsen:Pull`.
    Pull,
}

impl WsmanMode {
    /// Whether each message asks the sink for a `wsman:Ack`.
    pub fn acknowledged(self) -> bool {
        matches!(self, WsmanMode::PushWithAck | WsmanMode::Events)
    }
}

/// What herald does with an event that alone would exceed `wsman:MaxEnvelopeSize` (its
/// `Policy` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EnvelopePolicy {
    /// End the subscription (DeliveryFailure). DSP0226's default.
    #[default]
    CancelSubscription,
    /// Skip the event silently.
    Skip,
    /// Skip it and send a `wsman:DroppedEvents` message in its place.
    Notify,
}

/// Batching limits of the Events mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BatchLimits {
    /// `wsman:MaxElements`: most events per batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_elements: Option<u32>,
    /// `wsman:MaxTime`, in milliseconds: how long events may be held to fill a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time_ms: Option<u64>,
    /// `wsman:MaxEnvelopeSize`: the largest message, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_envelope_size: Option<u64>,
    /// Its `Policy`.
    #[serde(default)]
    pub policy: EnvelopePolicy,
}

impl BatchLimits {
    /// `wsman:MaxTime`.
    pub fn max_time(&self) -> Option<Duration> {
        self.max_time_ms.map(Duration::from_millis)
    }
}

/// The security profile URIs of `wsman:Auth/@Profile` (DSP0226) herald delivers with.
pub mod profiles {
    /// HTTP Basic over http.
    pub const HTTP_BASIC: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/http/basic";
    /// HTTP Digest over http.
    pub const HTTP_DIGEST: &str =
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/http/digest";
    /// HTTP Basic over https.
    pub const HTTPS_BASIC: &str =
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/basic";
    /// HTTP Digest over https.
    pub const HTTPS_DIGEST: &str =
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/digest";
    /// https with herald's client certificate.
    pub const HTTPS_MUTUAL: &str =
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual";
    /// https with herald's client certificate, and HTTP Basic.
    pub const HTTPS_MUTUAL_BASIC: &str =
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual/basic";
    /// https with herald's client certificate, and HTTP Digest.
    pub const HTTPS_MUTUAL_DIGEST: &str =
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual/digest";
    /// Every profile herald delivers with, as DSP0226 lists them.
    pub const SUPPORTED: [&str; 7] = [
        HTTP_BASIC,
        HTTP_DIGEST,
        HTTPS_BASIC,
        HTTPS_DIGEST,
        HTTPS_MUTUAL,
        HTTPS_MUTUAL_BASIC,
        HTTPS_MUTUAL_DIGEST,
    ];
}

/// The security profiles of `wsman:Auth/@Profile` herald delivers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthProfile {
    /// HTTP Basic over http or https (`secprofile/http/basic`, `secprofile/https/basic`).
    Basic,
    /// HTTP Digest (`secprofile/http/digest`, `secprofile/https/digest`).
    Digest,
    /// HTTPS with herald's client certificate (`secprofile/https/mutual`).
    Mutual,
    /// HTTPS with herald's client certificate and HTTP Basic (`secprofile/https/mutual/basic`).
    MutualBasic,
    /// HTTPS with herald's client certificate and HTTP Digest (`secprofile/https/mutual/digest`).
    MutualDigest,
}

/// The HTTP authentication scheme a profile sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpScheme {
    /// RFC 7617: `Authorization: Basic` on every request.
    Basic,
    /// RFC 7616: answer the sink's challenge.
    Digest,
}

impl AuthProfile {
    /// The profile a `wsman:Auth/@Profile` URI names, and whether it asks for https.
    pub fn from_uri(uri: &str) -> Option<(AuthProfile, bool)> {
        Some(match uri {
            profiles::HTTP_BASIC => (AuthProfile::Basic, false),
            profiles::HTTP_DIGEST => (AuthProfile::Digest, false),
            profiles::HTTPS_BASIC => (AuthProfile::Basic, true),
            profiles::HTTPS_DIGEST => (AuthProfile::Digest, true),
            profiles::HTTPS_MUTUAL => (AuthProfile::Mutual, true),
            profiles::HTTPS_MUTUAL_BASIC => (AuthProfile::MutualBasic, true),
            profiles::HTTPS_MUTUAL_DIGEST => (AuthProfile::MutualDigest, true),
            _ => return None,
        })
    }

    /// Whether herald presents its client certificate.
    pub fn mutual(self) -> bool {
        matches!(
            self,
            AuthProfile::Mutual | AuthProfile::MutualBasic | AuthProfile::MutualDigest
        )
    }

    /// The HTTP authentication it sends, if any (then it needs a user name and password).
    pub fn http_scheme(self) -> Option<HttpScheme> {
        match self {
            AuthProfile::Basic | AuthProfile::MutualBasic => Some(HttpScheme::Basic),
            AuthProfile::Digest | AuthProfile::MutualDigest => Some(HttpScheme::Digest),
            AuthProfile::Mutual => None,
        }
    }
}

/// How herald authenticates to a subscriber's sink (`wsman:Auth`, with the credentials of the
/// Subscribe's `wst:IssuedTokens`). It applies to every message to NotifyTo's origin (scheme,
/// host and port) sent through `DeliveryClient::send_to`: notifications, heartbeats, and
/// SubscriptionEnd when EndTo is there too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkAuth {
    /// The profile asked for.
    pub profile: AuthProfile,
    /// The user name, for the Basic and Digest profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password, for the Basic and Digest profiles, sealed with herald's credentials key
    /// (bound to the subscription's id): the clear text exists only in memory, while a request
    /// is being authenticated.
    #[serde(
        default,
        rename = "sealed_password",
        skip_serializing_if = "Option::is_none"
    )]
    pub password: Option<crate::domain::secret::SealedSecret>,
}

/// What a WS-Management subscriber asked of delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsmanDelivery {
    /// The delivery mode.
    pub mode: WsmanMode,
    /// `wsman:Heartbeats`, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeats_ms: Option<u64>,
    /// The Events mode's limits.
    #[serde(default)]
    pub batch: BatchLimits,
    /// `wsman:SendBookmarks`: each delivery carries a `wsman:Bookmark` header.
    #[serde(default)]
    pub send_bookmarks: bool,
    /// `wsman:Auth`, with the subscriber's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SinkAuth>,
}

impl WsmanDelivery {
    /// Plain push: what a WS-Management Subscribe without any of these asks for.
    pub fn push() -> WsmanDelivery {
        WsmanDelivery {
            mode: WsmanMode::Push,
            heartbeats_ms: None,
            batch: BatchLimits::default(),
            send_bookmarks: false,
            auth: None,
        }
    }

    /// `wsman:Heartbeats`.
    pub fn heartbeats(&self) -> Option<Duration> {
        self.heartbeats_ms.map(Duration::from_millis)
    }
}

/// Where a new subscription starts reading its source's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// After the events published so far (WS-Eventing's rule).
    #[default]
    Head,
    /// After this sequence number (a `wsman:Bookmark`); herald checks it is still retained.
    After(u64),
    /// From the oldest event still retained (`wsman:Bookmark` `…/bookmark/earliest`).
    Earliest,
}
