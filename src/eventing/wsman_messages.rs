//! The messages a WS-Management subscriber receives beyond plain push (DSP0226 §10.2): the
//! headers of an acknowledged or bookmarked notification, a batch of the Events mode, a
//! heartbeat, and the notice of events dropped for the envelope limit.

use uuid::Uuid;

use super::outgoing::outgoing;
use super::wsman::WSMAN_NS;
use super::wsman_delivery::bookmark_header;
use crate::delivery::client::{ExpectedReply, Outgoing};
use crate::domain::event::Event;
use crate::domain::random;
use crate::domain::subscription::{Subscription, SubscriptionId};
use crate::domain::wsman::{WsmanDelivery, WsmanMode};
use crate::soap::xml;

/// The action of a batch of events.
pub const EVENTS_ACTION: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Events";
/// The action of a heartbeat.
pub const HEARTBEAT_ACTION: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Heartbeat";
/// The action of the notice of dropped events.
pub const DROPPED_EVENTS_ACTION: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/DroppedEvents";
/// The action of a sink's acknowledgement.
pub const ACK_ACTION: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Ack";

/// The headers a WS-Management subscriber's notification carries besides WS-Addressing's: a
/// `wsman:AckRequested` in the acknowledged modes, a `wsman:Bookmark` naming `position` when
/// asked for.
fn headers(
    wsman: &WsmanDelivery,
    log: &crate::domain::subscription::SourceName,
    position: u64,
) -> Vec<String> {
    let mut headers = Vec::new();
    if wsman.mode.acknowledged() {
        headers.push("<wsman:AckRequested/>".to_owned());
    }
    if wsman.send_bookmarks {
        headers.push(bookmark_header(log, position));
    }
    headers
}

/// What the sink must answer to `message_id` in the acknowledged modes.
fn expected_ack(wsman: &WsmanDelivery, message_id: &str) -> Option<ExpectedReply> {
    wsman.mode.acknowledged().then(|| ExpectedReply {
        action: ACK_ACTION,
        relates_to: message_id.to_owned(),
    })
}

fn message(
    subscription: &Subscription,
    wsman: &WsmanDelivery,
    action: &str,
    message_id: String,
    position: Option<u64>,
    body: &str,
) -> Outgoing {
    let extra = match position {
        Some(position) => headers(wsman, &subscription.source, position),
        None if wsman.mode.acknowledged() => vec!["<wsman:AckRequested/>".to_owned()],
        None => Vec::new(),
    };
    let expect_reply = expected_ack(wsman, &message_id);
    let mut outgoing = outgoing(
        subscription.dialect,
        &subscription.notify_to,
        action,
        message_id,
        extra,
        body,
        &[("wsman", WSMAN_NS)],
    );
    outgoing.expect_reply = expect_reply;
    outgoing
}

/// The headers of the notification of event `seq` (Push and PushWithAck) and the reply it
/// must get.
pub fn notification_headers(
    subscription: &Subscription,
    wsman: &WsmanDelivery,
    seq: u64,
    message_id: &str,
) -> (Vec<String>, Option<ExpectedReply>) {
    (
        headers(wsman, &subscription.source, seq),
        expected_ack(wsman, message_id),
    )
}

/// The `wsman:Events` body of a batch.
pub fn events_body(events: &[&Event]) -> String {
    let mut body = String::from("<wsman:Events>");
    for event in events {
        body.push_str("<wsman:Event Action=\"");
        body.push_str(&xml::escape(&event.action));
        body.push_str("\">");
        body.push_str(&event.payload);
        body.push_str("</wsman:Event>");
    }
    body.push_str("</wsman:Events>");
    body
}

/// The message id of a batch: the same on every attempt at the same batch.
fn batch_message_id(subscription: SubscriptionId, first: u64, last: u64) -> String {
    let namespace = Uuid::parse_str(&subscription.key()).unwrap_or(Uuid::nil());
    format!(
        "urn:uuid:{}",
        Uuid::new_v5(&namespace, format!("events:{first}-{last}").as_bytes()).hyphenated()
    )
}

/// A batch of the Events mode, its bookmark naming `position`.
pub fn batch(
    subscription: &Subscription,
    wsman: &WsmanDelivery,
    events: &[&Event],
    position: u64,
) -> Outgoing {
    let first = events.first().map_or(position, |event| event.seq);
    message(
        subscription,
        wsman,
        EVENTS_ACTION,
        batch_message_id(subscription.id, first, position),
        Some(position),
        &events_body(events),
    )
}

/// A heartbeat: an empty `wsman:Events` in the Events mode, an empty body otherwise.
pub fn heartbeat(subscription: &Subscription, wsman: &WsmanDelivery) -> Outgoing {
    let body = if wsman.mode == WsmanMode::Events {
        "<wsman:Events/>"
    } else {
        ""
    };
    message(
        subscription,
        wsman,
        HEARTBEAT_ACTION,
        format!("urn:uuid:{}", random::uuid_v4().hyphenated()),
        None,
        body,
    )
}

/// The notice sent in place of `event`, dropped because alone it exceeds the subscriber's
/// `wsman:MaxEnvelopeSize` (Policy Notify).
pub fn dropped(subscription: &Subscription, wsman: &WsmanDelivery, event: &Event) -> Outgoing {
    let namespace = Uuid::parse_str(&subscription.id.key()).unwrap_or(Uuid::nil());
    let message_id = format!(
        "urn:uuid:{}",
        Uuid::new_v5(&namespace, format!("dropped:{}", event.seq).as_bytes()).hyphenated()
    );
    message(
        subscription,
        wsman,
        DROPPED_EVENTS_ACTION,
        message_id,
        Some(event.seq),
        &format!(
            "<wsman:DroppedEvents Action=\"{}\">1</wsman:DroppedEvents>",
            xml::escape(&event.action)
        ),
    )
}
