//! Webhook subscriptions: readers of a source's log delivered as plain HTTP (see
//! [`crate::webhook`]), made and changed through the JSON API. They share every lifecycle rule
//! with SOAP subscriptions (one `create`, one `end`); what is theirs is here: the URL and filter
//! checks, the secret (generated when none is given), its rotation with a grace period, and
//! changes in place.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{Engine, EngineError, SubscribeRequest};
use crate::domain::expiry::{ExpiryRules, GrantedExpiry, RequestedExpiry};
use crate::domain::subscription::{
    DeliveryProgress, EndpointRef, EventingVersion, Filter, NotificationFormat, ReaderDelivery,
    SoapVersion, Subscription, SubscriptionId, SubscriptionRecord, WireDialect, WsaVersion,
};
use crate::domain::webhook::{WebhookSettings, new_secret, secret_key};
use crate::filter::{HERALD_TOPIC, XPATH_2011};
use crate::store::webhooks::Listing;

/// How a webhook reads an expiry: the source decides what it grants, absent means its default.
const RULES: ExpiryRules = ExpiryRules {
    absent_means_unbounded: false,
    zero_means_unbounded: false,
    exact: false,
};

/// How long a rotated-out secret still signs, beside the new one.
pub const ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);

/// A webhook's filter, as the JSON API takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookFilter {
    /// herald's topic dialect: action patterns.
    Topic(String),
    /// XPath 1.0 over the event, with namespace bindings `(prefix, uri)`.
    XPath(String, Vec<(String, String)>),
}

impl WebhookFilter {
    fn stored(&self) -> Filter {
        match self {
            WebhookFilter::Topic(topic) => Filter {
                dialect: HERALD_TOPIC.to_owned(),
                expression: topic.trim().to_owned(),
                namespaces: Vec::new(),
            },
            WebhookFilter::XPath(expression, namespaces) => Filter {
                dialect: XPATH_2011.to_owned(),
                expression: expression.trim().to_owned(),
                namespaces: namespaces.clone(),
            },
        }
    }
}

/// A new webhook subscription.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// The source.
    pub source: String,
    /// Where deliveries go.
    pub url: String,
    /// Only the events that pass.
    pub filter: Option<WebhookFilter>,
    /// `xs:duration` or a date-time; the source's default when absent.
    pub expires: Option<String>,
    /// Standard Webhooks or a CloudEvents mode.
    pub delivery: ReaderDelivery,
    /// The signing secret (`whsec_…`); generated for Standard Webhooks when absent.
    pub secret: Option<String>,
    /// Where the notice of its end goes.
    pub end_url: Option<String>,
    /// Where it starts reading (a replay from a position).
    pub start: crate::domain::wsman::StartAt,
}

/// A change to a webhook subscription: each part that is `Some` changes.
#[derive(Debug, Clone, Default)]
pub struct WebhookChange {
    /// A new URL.
    pub url: Option<String>,
    /// A new filter (`Some(None)`: none).
    pub filter: Option<Option<WebhookFilter>>,
    /// A new secret (`Some(None)`: herald generates one); the old one signs for
    /// [`ROTATION_GRACE`] more.
    pub secret: Option<Option<String>>,
    /// A new expiry.
    pub expires: Option<String>,
}

/// A webhook subscription as made: the new secret is shown this once.
#[derive(Debug, Clone)]
pub struct MadeWebhook {
    pub subscription: Subscription,
    pub expiry: GrantedExpiry,
    pub secret: Option<String>,
}

fn bad(reason: impl Into<String>) -> EngineError {
    EngineError::InvalidWebhook(reason.into())
}

fn requested(expires: Option<&str>) -> Result<Option<RequestedExpiry>, EngineError> {
    expires
        .map(|text| RequestedExpiry::parse(text).map_err(EngineError::from))
        .transpose()
}

/// An absolute http(s) URL, or why not.
fn absolute(what: &str, url: &str) -> Result<String, EngineError> {
    let trimmed = url.trim();
    url::Url::parse(trimmed)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
        .map(|_| trimmed.to_owned())
        .ok_or_else(|| bad(format!("{what} must be an absolute http(s) URL")))
}

fn checked_secret(secret: Option<String>) -> Result<Option<String>, EngineError> {
    match secret {
        Some(secret) if secret_key(secret.trim()).is_none() => {
            Err(bad("a secret is whsec_ and the base64 of 24 to 64 bytes"))
        }
        other => Ok(other.map(|secret| secret.trim().to_owned())),
    }
}

impl Engine {
    /// Creates a webhook subscription; durable when this returns.
    pub async fn subscribe_webhook(
        &self,
        request: WebhookRequest,
    ) -> Result<MadeWebhook, EngineError> {
        if !request.delivery.is_webhook() {
            return Err(bad("not a webhook format"));
        }
        let policy = self.source(&request.source)?;
        let url = absolute("url", &request.url)?;
        let end_url = request
            .end_url
            .as_deref()
            .map(|end| absolute("end_url", end))
            .transpose()?;
        let secret = match checked_secret(request.secret)? {
            Some(secret) => Some(secret),
            None if request.delivery == ReaderDelivery::Webhook => {
                Some(new_secret().ok_or_else(|| {
                    bad("herald could not make a secret: no secure random source")
                })?)
            }
            None => None,
        };
        let endpoint = |address: String| EndpointRef {
            address,
            reference_parameters: Vec::new(),
            reference_properties: Vec::new(),
        };
        let subscribe = SubscribeRequest {
            source: policy.name.clone(),
            dialect: WireDialect {
                eventing: EventingVersion::W3c2011,
                soap: SoapVersion::Soap12,
                addressing: WsaVersion::W3c2005,
            },
            notify_to: endpoint(url),
            end_to: end_url.map(endpoint),
            // The JSON API's URLs are read by the endpoint check itself.
            parsed: super::ParsedEndpoints::default(),
            delivery_mode: String::new(),
            format: NotificationFormat::Unwrap,
            filter: request.filter.as_ref().map(WebhookFilter::stored),
            expires: requested(request.expires.as_deref())?,
            expiry_rules: RULES,
            manager_address: String::new(),
            connection_retry: None,
            wsman: None,
            start: request.start,
            sink_password: None,
        };
        let settings = secret.clone().map(WebhookSettings::signed_with);
        let (subscription, expiry, _) = self.create(subscribe, request.delivery, settings).await?;
        Ok(MadeWebhook {
            subscription,
            expiry,
            secret,
        })
    }

    /// The active webhook subscription `id`.
    async fn active_webhook(&self, id: SubscriptionId) -> Result<Subscription, EngineError> {
        self.store
            .active_subscription(id, self.clock.now())
            .await?
            .filter(|subscription| subscription.delivery.is_webhook())
            .ok_or(EngineError::UnknownSubscription)
    }

    /// Changes a webhook subscription in place: its URL, filter and secret (delivery goes on
    /// from its cursor, on this node from now on), then its expiry. Every part is checked
    /// before anything is written, so a refused change changes nothing. Durable when this
    /// returns; a new secret is returned this once.
    pub async fn change_webhook(
        &self,
        id: SubscriptionId,
        change: WebhookChange,
    ) -> Result<Option<String>, EngineError> {
        // Changes on this node are made one at a time: one cannot undo another it read before.
        let _changing = self.redirects.lock().await;
        let current = self.active_webhook(id).await?;
        let now = self.clock.now();
        let requested = requested(change.expires.as_deref())?;
        if let Some(requested) = &requested {
            let policy = self.source(current.source.as_str())?;
            crate::domain::expiry::grant(Some(requested), &policy.expiry, RULES, now)?;
        }
        let mut new_secret_shown = None;
        if change.url.is_some() || change.filter.is_some() || change.secret.is_some() {
            let mut notify_to = current.notify_to.clone();
            if let Some(url) = &change.url {
                notify_to.address = absolute("url", url)?;
            }
            let filter = match &change.filter {
                Some(filter) => filter.as_ref().map(WebhookFilter::stored),
                None => current.filter.clone(),
            };
            let settings = match change.secret {
                Some(secret) => {
                    let secret = match checked_secret(secret)? {
                        Some(secret) => secret,
                        None => new_secret().ok_or_else(|| {
                            bad("herald could not make a secret: no secure random source")
                        })?,
                    };
                    let until = SignedDuration::try_from(ROTATION_GRACE)
                        .ok()
                        .and_then(|grace| now.checked_add(grace).ok())
                        .unwrap_or(Timestamp::MAX);
                    new_secret_shown = Some(secret.clone());
                    let settings = current.webhook.clone().unwrap_or_default();
                    Some(settings.rotated(secret, until, now))
                }
                None => current.webhook.clone(),
            };
            let mut candidate = current.clone();
            candidate.filter = filter.clone();
            let matcher = self.compile(&candidate)?;
            self.endpoints
                .check_url(&notify_to.address)
                .await
                .map_err(|err| EngineError::EndpointRefused(err.to_string()))?;
            self.reconfigure(id, (notify_to, filter, settings), matcher, now)
                .await?;
        }
        if let Some(requested) = &requested {
            self.renew_reader((id, None), Some(requested), RULES, |s| {
                s.delivery.is_webhook()
            })
            .await?;
        }
        Ok(new_secret_shown)
    }

    /// Stores the change and delivers the reader anew from its cursor, on this node.
    async fn reconfigure(
        &self,
        id: SubscriptionId,
        (notify_to, filter, settings): (EndpointRef, Option<Filter>, Option<WebhookSettings>),
        matcher: Option<std::sync::Arc<dyn crate::filter::Matcher>>,
        now: Timestamp,
    ) -> Result<(), EngineError> {
        let changed = self
            .store
            .reconfigure(
                id,
                (&notify_to, filter.as_ref(), settings.as_ref()),
                self.delivery.node(),
                now,
            )
            .await?;
        let Some((subscription, progress)) = changed else {
            return Err(EngineError::UnknownSubscription);
        };
        let policy = self.source(subscription.source.as_str())?;
        // The reader delivered so far (here, or on another node told by the store) lets go; its
        // cursor here is fresher than the store's.
        // The store keeps the failures unless the URL changed (a rotation does not reset the
        // give-up clock of a dead endpoint).
        let progress = match self.delivery.progress(&subscription.source, id) {
            Some(here) if here.cursor > progress.cursor && progress.attempts == 0 => {
                DeliveryProgress {
                    cursor: here.cursor,
                    ..DeliveryProgress::default()
                }
            }
            Some(here) if here.cursor > progress.cursor => DeliveryProgress {
                cursor: here.cursor,
                ..progress
            },
            _ => progress,
        };
        let retry = policy.retry;
        self.delivery.stop_reading(&subscription.source, id);
        self.delivery
            .start_reading(subscription, progress, matcher, retry)
            .await;
        Ok(())
    }

    /// Ends a webhook subscription at its owner's request (no end notice: they know).
    pub async fn delete_webhook(&self, id: SubscriptionId) -> Result<(), EngineError> {
        self.active_webhook(id).await?;
        self.unsubscribe(id).await.map(|_| ())
    }

    /// A page of subscriptions, with each one's log head.
    pub async fn list_subscriptions(
        &self,
        listing: &Listing,
    ) -> Result<Vec<(SubscriptionRecord, Option<u64>)>, EngineError> {
        let records = self.store.list_subscriptions(listing).await?;
        let mut page = Vec::with_capacity(records.len());
        for mut record in records {
            let source = record.subscription.source.clone();
            if let Some(progress) = self.delivery.progress(&source, record.subscription.id) {
                record.progress = progress;
            }
            page.push((record, self.delivery.head(&source)));
        }
        Ok(page)
    }
}
