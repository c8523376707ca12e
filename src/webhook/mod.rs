//! Webhooks: what herald POSTs to a webhook subscription — the event as published (its JSON, or
//! its XML), signed per Standard Webhooks v1, or a CloudEvent in HTTP binary or structured
//! mode — and the JSON notice of its end. The same readers, order, retries and give-up as SOAP
//! subscribers; only the message differs.

use base64::Engine as _;
use jiff::Timestamp;
use ring::hmac;

use crate::delivery::Envelopes;
use crate::delivery::client::Outgoing;
use crate::domain::event::Event;
use crate::domain::subscription::{EndReason, ReaderDelivery, Subscription};
use crate::domain::webhook::unwrap_json;

/// The body and media type of an event as published: JSON events as their JSON, XML events as
/// their element(s).
pub fn published_body(event: &Event) -> (String, &'static str) {
    match unwrap_json(&event.payload) {
        Some(json) => (json, "application/json"),
        None => (event.payload.clone(), "application/xml"),
    }
}

/// A value as an HTTP header carries it: as the CloudEvents HTTP binding asks, a space, `"`,
/// `%` and anything outside printable ASCII percent-encoded (UTF-8), so any action travels.
pub fn header_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii_graphic() && c != '"' && c != '%' {
            out.push(c);
        } else {
            let mut bytes = [0; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

/// The `webhook-id` of event `seq` to `subscription`: the same on every attempt.
pub fn message_id(subscription: &Subscription, seq: u64) -> String {
    format!("msg_{}_{seq}", subscription.id.key().replace('-', ""))
}

/// The CloudEvents `source` of a source's events.
fn ce_source(event: &Event) -> String {
    format!("/api/v1/sources/{}", event.source)
}

/// The event's id as CloudEvents and herald's headers carry it (the UUID alone).
fn event_id(event: &Event) -> String {
    let id = event.id.to_string();
    id.strip_prefix("uuid:").unwrap_or(&id).to_owned()
}

/// `webhook-id`, `webhook-timestamp` and `webhook-signature` for `body`, signed with every key
/// the subscription signs with at `now` (none: no headers).
pub fn signature_headers(
    subscription: &Subscription,
    id: &str,
    body: &str,
    now: Timestamp,
) -> Vec<(&'static str, String)> {
    let keys = subscription
        .webhook
        .as_ref()
        .map(|settings| settings.keys_at(now))
        .unwrap_or_default();
    if keys.is_empty() {
        return Vec::new();
    }
    let timestamp = now.as_second().to_string();
    let signatures: Vec<String> = keys
        .iter()
        .map(|key| format!("v1,{}", sign(key, id, &timestamp, body)))
        .collect();
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp),
        ("webhook-signature", signatures.join(" ")),
    ]
}

/// The Standard Webhooks v1 signature: base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`.
pub fn sign(key: &[u8], id: &str, timestamp: &str, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut context = hmac::Context::with_key(&key);
    for part in [id, ".", timestamp, ".", body] {
        context.update(part.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(context.sign().as_ref())
}

/// The POST of `event` to a webhook subscription, signed at `now`.
pub fn notification(subscription: &Subscription, event: &Event, now: Timestamp) -> Outgoing {
    let (data, media_type) = published_body(event);
    let id = message_id(subscription, event.seq);
    let mut headers = vec![
        ("herald-event-id", event_id(event)),
        ("herald-event-type", header_value(&event.action)),
        ("herald-sequence", event.seq.to_string()),
    ];
    let (content_type, body) = match subscription.delivery {
        ReaderDelivery::CloudEventsBinary => {
            headers.extend([
                ("ce-specversion", "1.0".to_owned()),
                ("ce-id", event_id(event)),
                ("ce-source", ce_source(event)),
                ("ce-type", header_value(&event.action)),
                ("ce-time", event.published_at.to_string()),
                ("ce-sequence", event.seq.to_string()),
            ]);
            (media_type.to_owned(), data)
        }
        ReaderDelivery::CloudEventsStructured => {
            let envelope = serde_json::json!({
                "specversion": "1.0",
                "id": event_id(event),
                "source": ce_source(event),
                "type": event.action,
                "time": event.published_at.to_string(),
                "sequence": event.seq.to_string(),
                "datacontenttype": media_type,
            })
            .to_string();
            // The data as published: a JSON event's own text (checked JSON when published),
            // an XML event as a JSON string.
            let data = match media_type {
                "application/json" => data,
                _ => serde_json::Value::String(data).to_string(),
            };
            let body = format!(
                "{},\"data\":{data}}}",
                envelope.strip_suffix('}').unwrap_or(&envelope)
            );
            (
                "application/cloudevents+json; charset=utf-8".to_owned(),
                body,
            )
        }
        _ => (media_type.to_owned(), data),
    };
    headers.extend(signature_headers(subscription, &id, &body, now));
    Outgoing {
        url: subscription.notify_to.address.clone(),
        content_type,
        soap_action: None,
        body,
        headers,
        expect_reply: None,
    }
}

/// The JSON notice of a webhook subscription's end to its end URL, signed as its deliveries
/// are: for every end but the subscriber's own (`DELETE`). `None` without an end URL.
pub fn end_notice(
    subscription: &Subscription,
    reason: EndReason,
    now: Timestamp,
) -> Option<Outgoing> {
    let end_to = subscription.end_to.as_ref()?;
    if reason == EndReason::Unsubscribed {
        return None;
    }
    let body = serde_json::json!({
        "type": "subscription.ended",
        "subscription": subscription.id.key(),
        "source": subscription.source.as_str(),
        "reason": reason.as_str(),
        "ended_at": now.to_string(),
    })
    .to_string();
    let id = format!("end_{}", subscription.id.key().replace('-', ""));
    Some(Outgoing {
        url: end_to.address.clone(),
        content_type: "application/json".to_owned(),
        soap_action: None,
        headers: signature_headers(subscription, &id, &body, now),
        expect_reply: None,
        body,
    })
}

/// The messages delivery sends: webhooks here, every other reader in `soap`'s dialect.
pub struct Messages<E> {
    /// SOAP subscribers' messages.
    pub soap: E,
}

impl<E: Envelopes> Envelopes for Messages<E> {
    fn notification(&self, subscription: &Subscription, event: &Event) -> Outgoing {
        if subscription.delivery.is_webhook() {
            notification(subscription, event, Timestamp::now())
        } else {
            self.soap.notification(subscription, event)
        }
    }

    fn subscription_end(&self, subscription: &Subscription, reason: EndReason) -> Option<Outgoing> {
        if subscription.delivery.is_webhook() {
            end_notice(subscription, reason, Timestamp::now())
        } else {
            self.soap.subscription_end(subscription, reason)
        }
    }

    // Webhooks take neither batches nor heartbeats: the SOAP dialect answers for those
    // subscribers that asked (a webhook never has WS-Management settings).
    fn batch(
        &self,
        subscription: &Subscription,
        events: &[&Event],
        position: u64,
    ) -> Option<Outgoing> {
        self.soap.batch(subscription, events, position)
    }

    fn heartbeat(&self, subscription: &Subscription) -> Option<Outgoing> {
        self.soap.heartbeat(subscription)
    }

    fn dropped(&self, subscription: &Subscription, event: &Event) -> Option<Outgoing> {
        self.soap.dropped(subscription, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_carry_any_action() {
        assert_eq!(header_value("urn:shop:created"), "urn:shop:created");
        assert_eq!(header_value("a b\"%\n\u{e9}"), "a%20b%22%25%0A%C3%A9");
    }

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn signs_as_the_standard_webhooks_reference_does() {
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let signature = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
