//! Messages herald sends: notifications and SubscriptionEnd, in each subscriber's dialect.

use uuid::Uuid;

pub use super::outgoing::outgoing;
use super::version::HERALD_NS;
use super::wsman::WSMAN_NS;
use super::wsman_messages;
use crate::delivery::Envelopes;
use crate::delivery::client::Outgoing;
use crate::domain::event::Event;
use crate::domain::random;
use crate::domain::subscription::{
    EndReason, EndpointRef, EventingVersion, NotificationFormat, SoapVersion, Subscription,
    SubscriptionId, WsaVersion,
};
use crate::domain::wsman::{EnvelopePolicy, WsmanMode};
use crate::filter::NotificationContext;
use crate::soap::addressing::write_epr_content;
use crate::soap::envelope::write_envelope;
use crate::soap::xml;

/// Action of a 2011 wrapped notification.
pub const WRAPPED_ACTION: &str = "http://www.w3.org/2011/03/ws-evt/WrappedSinkPortType/NotifyEvent";

/// The `wsa:MessageID` of the notification of event `seq` to `subscription`: the same on every
/// attempt, so a sink can drop duplicates. A name-based UUID (v5) in the subscription's UUID
/// namespace.
pub fn notification_message_id(subscription: SubscriptionId, seq: u64) -> String {
    use std::io::Write as _;
    // The sequence number's decimal digits, without a string of their own (this runs once per
    // notification and subscriber).
    let mut digits = [0u8; 20];
    let written = {
        let mut unwritten = &mut digits[..];
        let _ = write!(unwritten, "{seq}");
        20 - unwritten.len()
    };
    let id = Uuid::new_v5(&subscription.uuid(), &digits[..written]);
    let mut text = String::with_capacity(45);
    text.push_str("urn:uuid:");
    text.push_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
    text
}

/// WS-Eventing's messages, for the dispatcher.
#[derive(Debug, Default, Clone, Copy)]
pub struct EventingEnvelopes;

impl NotificationContext for EventingEnvelopes {
    /// The unwrapped notification as a subscriber in these versions receives it, without the
    /// parts that differ per subscriber (`wsa:To`, `wsa:MessageID`, reference parameters):
    /// what a 2004 XPath filter is evaluated against.
    fn envelope(
        &self,
        soap: SoapVersion,
        addressing: WsaVersion,
        action: &str,
        payload: &str,
    ) -> String {
        write_envelope(
            soap,
            &[("wsa", addressing.ns())],
            &[format!("<wsa:Action>{}</wsa:Action>", xml::escape(action))],
            payload,
        )
    }
}

impl Envelopes for EventingEnvelopes {
    fn batch(
        &self,
        subscription: &Subscription,
        events: &[&Event],
        position: u64,
    ) -> Option<Outgoing> {
        let wsman = subscription.wsman.as_ref()?;
        (wsman.mode == WsmanMode::Events)
            .then(|| wsman_messages::batch(subscription, wsman, events, position))
    }

    fn heartbeat(&self, subscription: &Subscription) -> Option<Outgoing> {
        let wsman = subscription.wsman.as_ref()?;
        wsman
            .heartbeats()
            .map(|_| wsman_messages::heartbeat(subscription, wsman))
    }

    fn dropped(&self, subscription: &Subscription, event: &Event) -> Option<Outgoing> {
        let wsman = subscription.wsman.as_ref()?;
        (wsman.batch.policy == EnvelopePolicy::Notify)
            .then(|| wsman_messages::dropped(subscription, wsman, event))
    }

    fn notification(&self, subscription: &Subscription, event: &Event) -> Outgoing {
        let message_id = notification_message_id(subscription.id, event.seq);
        // A WS-Management subscriber's (or a bookmarked one's) headers and ack.
        let (extra, expect_reply, wsman_ns) = match &subscription.wsman {
            Some(wsman) => {
                let (extra, expect_reply) = wsman_messages::notification_headers(
                    subscription,
                    wsman,
                    event.seq,
                    &message_id,
                );
                (extra, expect_reply, Some(("wsman", WSMAN_NS)))
            }
            None => (Vec::new(), None, None),
        };
        let mut message = match subscription.format {
            NotificationFormat::Unwrap => outgoing(
                subscription.dialect,
                &subscription.notify_to,
                &event.action,
                message_id,
                extra,
                &event.payload,
                wsman_ns.as_slice(),
            ),
            NotificationFormat::Wrap => {
                let body = format!(
                    "<wse:Notify actionURI=\"{}\">{}</wse:Notify>",
                    xml::escape(&event.action),
                    event.payload
                );
                let mut namespaces = vec![("wse", subscription.dialect.eventing.ns())];
                namespaces.extend(wsman_ns);
                outgoing(
                    subscription.dialect,
                    &subscription.notify_to,
                    WRAPPED_ACTION,
                    message_id,
                    extra,
                    &body,
                    &namespaces,
                )
            }
        };
        message.expect_reply = expect_reply;
        message
    }

    fn subscription_end(&self, subscription: &Subscription, reason: EndReason) -> Option<Outgoing> {
        let end_to = subscription.end_to.as_ref()?;
        let version = subscription.dialect.eventing;
        // 2004/08 and 2011 report only unexpected ends; 2004/01 reports every end.
        if version != EventingVersion::Jan2004
            && matches!(reason, EndReason::Unsubscribed | EndReason::Expired)
        {
            return None;
        }
        let ns = version.ns();
        let text = xml::escape(reason_text(reason));
        let message_id = format!("urn:uuid:{}", random::uuid_v4().hyphenated());
        let action = version.action("SubscriptionEnd");
        let namespaces = [("wse", ns)];
        let dialect = subscription.dialect;
        Some(match version {
            EventingVersion::Jan2004 => {
                let code = match reason {
                    EndReason::Unsubscribed => "Unsubscribed",
                    EndReason::Expired => "Expired",
                    EndReason::DeliveryFailure => "NotifyToFailure",
                    EndReason::SourceShuttingDown | EndReason::SourceCancelling => {
                        "SourceCanceling"
                    }
                };
                let header = format!(
                    "<wse:SubscriptionEnd><wse:Id>{}</wse:Id><wse:Code>wse:{code}</wse:Code><wse:Reason xml:lang=\"en\">{text}</wse:Reason></wse:SubscriptionEnd>",
                    subscription.id
                );
                outgoing(
                    dialect,
                    end_to,
                    &action,
                    message_id,
                    vec![header],
                    "",
                    &namespaces,
                )
            }
            EventingVersion::Aug2004 => {
                let manager = EndpointRef {
                    address: subscription.manager_address.clone(),
                    reference_parameters: vec![format!(
                        "<wse:Identifier>{}</wse:Identifier>",
                        subscription.id
                    )],
                    reference_properties: Vec::new(),
                };
                let body = format!(
                    "<wse:SubscriptionEnd><wse:SubscriptionManager>{}</wse:SubscriptionManager><wse:Status>{ns}/{}</wse:Status><wse:Reason xml:lang=\"en\">{text}</wse:Reason></wse:SubscriptionEnd>",
                    write_epr_content(dialect.addressing, &manager),
                    status(reason)
                );
                outgoing(
                    dialect,
                    end_to,
                    &action,
                    message_id,
                    Vec::new(),
                    &body,
                    &namespaces,
                )
            }
            EventingVersion::W3c2011 => {
                // The EndTo's reference parameters identify the subscription; herald adds its
                // identifier as well.
                let body = format!(
                    "<wse:SubscriptionEnd><wse:Status>{ns}/{}</wse:Status><wse:Reason xml:lang=\"en\">{text}</wse:Reason><hrd:SubscriptionId xmlns:hrd=\"{HERALD_NS}\">{}</hrd:SubscriptionId></wse:SubscriptionEnd>",
                    status(reason),
                    subscription.id
                );
                outgoing(
                    dialect,
                    end_to,
                    &action,
                    message_id,
                    Vec::new(),
                    &body,
                    &namespaces,
                )
            }
        })
    }
}

fn status(reason: EndReason) -> &'static str {
    match reason {
        EndReason::DeliveryFailure => "DeliveryFailure",
        EndReason::SourceShuttingDown => "SourceShuttingDown",
        // Unsubscribed and Expired never reach here for these versions.
        _ => "SourceCancelling",
    }
}

fn reason_text(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Unsubscribed => "The subscription was ended at the subscriber's request.",
        EndReason::Expired => "The subscription expired without being renewed.",
        EndReason::DeliveryFailure => "Notifications could not be delivered to NotifyTo.",
        EndReason::SourceShuttingDown => "The event source is shutting down.",
        EndReason::SourceCancelling => "The event source cancelled the subscription.",
    }
}

#[cfg(test)]
mod message_id_tests {
    use super::*;

    /// A notification's MessageID never changes between versions: sinks drop duplicates by it
    /// (expected values from Python's `uuid.uuid5`).
    #[test]
    fn message_ids_are_the_published_name_based_uuids() {
        let id = SubscriptionId::parse("uuid:6f0f5f3e-0000-4000-8000-000000000001").unwrap();
        assert_eq!(
            notification_message_id(id, 42),
            "urn:uuid:68992274-722c-52c8-a4bd-18044cb90304"
        );
        assert_eq!(
            notification_message_id(id, u64::MAX),
            "urn:uuid:4505be69-c9a4-579b-9ffa-3ec7f068839b"
        );
    }
}
