//! The WS-Management parts of a 2004/08 Subscribe (DSP0226 §10.2): the delivery mode and its
//! limits, heartbeats, connection retries, bookmarks and sink authentication; and the
//! `wsman:Bookmark` herald writes, which names its position in a source's log.

use roxmltree::Node;

use super::faults::{Problem, WsmanFault};
use super::wsman::{WSMAN_NS, xs_duration};
use super::wsman_auth::{self, IssuedTokens};
use crate::domain::HERALD_NS;
use crate::domain::secret::Secret;
use crate::domain::subscription::{ConnectionRetry, EndpointRef, SourceName};
use crate::domain::wsman::{BatchLimits, EnvelopePolicy, StartAt, WsmanDelivery, WsmanMode, modes};
use crate::soap::xml;

/// The bookmark that asks for the oldest events still retained.
pub const BOOKMARK_EARLIEST: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/bookmark/earliest";

/// The shortest heartbeat interval herald keeps; a shorter `wsman:Heartbeats` is raised to it.
pub const MIN_HEARTBEATS: std::time::Duration = std::time::Duration::from_millis(200);

/// The WS-Management delivery mode a `wse:Delivery/@Mode` URI names, if any.
pub fn mode_of(uri: &str) -> Option<WsmanMode> {
    match uri {
        modes::PUSH_WITH_ACK => Some(WsmanMode::PushWithAck),
        modes::EVENTS => Some(WsmanMode::Events),
        modes::PULL => Some(WsmanMode::Pull),
        _ => None,
    }
}

/// What the WS-Management extension elements of a 2004/08 Subscribe ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryExtensions {
    /// `wsman:ConnectionRetry`, if given.
    pub connection_retry: Option<ConnectionRetry>,
    /// The mode and what goes with it; `None` for a plain WS-Eventing push subscription.
    pub wsman: Option<WsmanDelivery>,
    /// Where the subscription starts reading (`wsman:Bookmark`).
    pub start: StartAt,
    /// The sink's password, in the clear, for the engine to seal (`wsman:Auth` with Basic or
    /// Digest).
    pub sink_password: Option<Secret>,
}

fn positive_integer(node: Node<'_, '_>, what: &str) -> Result<u64, Problem> {
    xml::trimmed_text(node)
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Problem::InvalidMessage(format!("{what} must be a positive integer")))
}

fn positive_duration(node: Node<'_, '_>, what: &str) -> Result<std::time::Duration, Problem> {
    xs_duration(&xml::trimmed_text(node))
        .filter(|d| !d.is_zero())
        .ok_or_else(|| Problem::InvalidMessage(format!("{what} must be a positive xs:duration")))
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Reads the WS-Management children of `wse:Subscribe` and of its `wse:Delivery` for a
/// subscription to `source` in `mode` delivered to `notify_to`, with the `credentials` the
/// request carried for it.
pub fn delivery_extensions(
    subscribe: Node<'_, '_>,
    delivery: Node<'_, '_>,
    mode: WsmanMode,
    source: &SourceName,
    (notify_to, credentials): (&EndpointRef, &IssuedTokens),
) -> Result<DeliveryExtensions, Problem> {
    let (auth, sink_password) = match wsman_auth::sink_auth(delivery, mode, notify_to, credentials)?
    {
        Some((auth, password)) => (Some(auth), password),
        None => (None, None),
    };
    if let Some(encoding) = xml::single_child(delivery, WSMAN_NS, "ContentEncoding")? {
        let value = xml::trimmed_text(encoding);
        if !value.eq_ignore_ascii_case("UTF-8") && !value.eq_ignore_ascii_case("UTF-16") {
            return Err(Problem::Wsman(WsmanFault::sender(
                "EncodingLimit",
                format!(
                    "An internal encoding limit was exceeded: content encoding '{}' is not \
                     supported (UTF-8 or UTF-16)",
                    value.chars().take(40).collect::<String>()
                ),
                Some("CharacterSet"),
            )));
        }
    }
    // Raised to a floor: a heartbeat every microsecond would flood the sink and take the send
    // permits real deliveries need.
    let heartbeats = xml::single_child(delivery, WSMAN_NS, "Heartbeats")?
        .map(|node| positive_duration(node, "wsman:Heartbeats"))
        .transpose()?
        .map(|interval| interval.max(MIN_HEARTBEATS));
    let connection_retry = xml::single_child(delivery, WSMAN_NS, "ConnectionRetry")?
        .map(|retry| {
            let interval = positive_duration(retry, "wsman:ConnectionRetry")?;
            let total = retry
                .attribute("Total")
                .and_then(|t| t.trim().parse::<u32>().ok())
                .filter(|t| *t > 0)
                .ok_or_else(|| {
                    Problem::InvalidMessage(
                        "wsman:ConnectionRetry needs a positive integer Total".into(),
                    )
                })?;
            Ok::<_, Problem>(ConnectionRetry { interval, total })
        })
        .transpose()?;
    let batch = batch_limits(delivery)?;
    let (send_bookmarks, start) = bookmarks(subscribe, source)?;
    let wsman = WsmanDelivery {
        mode,
        heartbeats_ms: heartbeats.map(millis),
        batch,
        send_bookmarks,
        auth,
    };
    let plain = wsman == WsmanDelivery::push();
    Ok(DeliveryExtensions {
        connection_retry,
        wsman: (!plain).then_some(wsman),
        start,
        sink_password,
    })
}

/// `wsman:SendBookmarks` and `wsman:Bookmark` in a Subscribe: herald reads them in every
/// WS-Eventing version, so any SOAP subscriber can resume from a position.
pub fn bookmarks(subscribe: Node<'_, '_>, source: &SourceName) -> Result<(bool, StartAt), Problem> {
    let send = xml::single_child(subscribe, WSMAN_NS, "SendBookmarks")?.is_some();
    let start = match xml::single_child(subscribe, WSMAN_NS, "Bookmark")? {
        None => StartAt::Head,
        Some(bookmark) => read_bookmark(bookmark, source)?,
    };
    Ok((send, start))
}

/// The extensions of a Subscribe in a version without WS-Management's `wse:Delivery`
/// (2004/01, 2011): bookmarks only.
pub fn bookmark_extensions(
    subscribe: Node<'_, '_>,
    source: &SourceName,
) -> Result<DeliveryExtensions, Problem> {
    let (send_bookmarks, start) = bookmarks(subscribe, source)?;
    Ok(DeliveryExtensions {
        connection_retry: None,
        wsman: send_bookmarks.then(|| WsmanDelivery {
            send_bookmarks,
            ..WsmanDelivery::push()
        }),
        start,
        sink_password: None,
    })
}

/// The Events mode's limits in `wse:Delivery`; accepted (and ignored) in the other modes.
fn batch_limits(delivery: Node<'_, '_>) -> Result<BatchLimits, Problem> {
    let max_elements = xml::single_child(delivery, WSMAN_NS, "MaxElements")?
        .map(|node| positive_integer(node, "wsman:MaxElements"))
        .transpose()?
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let max_time_ms = xml::single_child(delivery, WSMAN_NS, "MaxTime")?
        .map(|node| positive_duration(node, "wsman:MaxTime"))
        .transpose()?
        .map(millis);
    let (max_envelope_size, policy) =
        match xml::single_child(delivery, WSMAN_NS, "MaxEnvelopeSize")? {
            None => (None, EnvelopePolicy::default()),
            Some(node) => {
                let size = positive_integer(node, "wsman:MaxEnvelopeSize")?;
                let policy = match node.attribute("Policy").map(str::trim) {
                    None | Some("CancelSubscription") => EnvelopePolicy::CancelSubscription,
                    Some("Skip") => EnvelopePolicy::Skip,
                    Some("Notify") => EnvelopePolicy::Notify,
                    Some(other) => {
                        return Err(Problem::InvalidMessage(format!(
                            "wsman:MaxEnvelopeSize Policy '{}' is not CancelSubscription, Skip or \
                         Notify",
                            other.chars().take(40).collect::<String>()
                        )));
                    }
                };
                (Some(size), policy)
            }
        };
    Ok(BatchLimits {
        max_elements,
        max_time_ms,
        max_envelope_size,
        policy,
    })
}

fn invalid_bookmark(why: &str) -> Problem {
    Problem::Wsman(WsmanFault::sender(
        "InvalidBookmark",
        format!("The bookmark supplied with the subscription is not valid: {why}"),
        None,
    ))
}

/// Reads a `wsman:Bookmark` of a Subscribe: the earliest, or a position herald wrote for this
/// source.
fn read_bookmark(bookmark: Node<'_, '_>, source: &SourceName) -> Result<StartAt, Problem> {
    let mut positions = xml::children_named(bookmark, HERALD_NS, "Position");
    let Some(position) = positions.next() else {
        return if xml::elements(bookmark).next().is_none()
            && xml::trimmed_text(bookmark) == BOOKMARK_EARLIEST
        {
            Ok(StartAt::Earliest)
        } else {
            Err(invalid_bookmark("it is not one herald wrote"))
        };
    };
    if positions.next().is_some() {
        return Err(invalid_bookmark("it holds more than one position"));
    }
    if position.attribute("log").map(str::trim) != Some(source.as_str()) {
        return Err(invalid_bookmark("it is a position in another source"));
    }
    xml::trimmed_text(position)
        .parse::<u64>()
        .map(StartAt::After)
        .map_err(|_| invalid_bookmark("its position is not a sequence number"))
}

/// The `wsman:Bookmark` header naming position `seq` of `log`: what a subscriber hands back in
/// a later Subscribe to resume after it.
pub fn bookmark_header(log: &SourceName, seq: u64) -> String {
    format!(
        "<wsman:Bookmark xmlns:wsman=\"{WSMAN_NS}\"><hrd:Position xmlns:hrd=\"{HERALD_NS}\" \
         log=\"{log}\">{seq}</hrd:Position></wsman:Bookmark>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(bookmark: &str) -> Result<StartAt, Problem> {
        let doc = roxmltree::Document::parse(bookmark).unwrap();
        read_bookmark(doc.root_element(), &SourceName::parse("orders").unwrap())
    }

    #[test]
    fn heartbeats_are_raised_to_the_floor() {
        let subscribe = format!(
            r#"<e:Subscribe xmlns:e="urn:e" xmlns:w="{WSMAN_NS}"><e:Delivery><w:Heartbeats>PT0.0001S</w:Heartbeats></e:Delivery></e:Subscribe>"#
        );
        let doc = roxmltree::Document::parse(&subscribe).unwrap();
        let delivery = doc.root_element().first_element_child().unwrap();
        let source = SourceName::parse("orders").unwrap();
        let notify_to = EndpointRef {
            address: "http://sink.example/".into(),
            reference_parameters: Vec::new(),
            reference_properties: Vec::new(),
        };
        let tokens = IssuedTokens::default();
        let read = delivery_extensions(
            doc.root_element(),
            delivery,
            WsmanMode::Push,
            &source,
            (&notify_to, &tokens),
        )
        .unwrap()
        .wsman
        .unwrap();
        assert_eq!(read.heartbeats(), Some(MIN_HEARTBEATS));
    }

    #[test]
    fn bookmarks_round_trip_and_bad_ones_are_refused() {
        let header = bookmark_header(&SourceName::parse("orders").unwrap(), 42);
        assert_eq!(start(&header).unwrap(), StartAt::After(42));
        let earliest =
            format!("<b:Bookmark xmlns:b=\"{WSMAN_NS}\">{BOOKMARK_EARLIEST}</b:Bookmark>");
        assert_eq!(start(&earliest).unwrap(), StartAt::Earliest);
        let other = bookmark_header(&SourceName::parse("billing").unwrap(), 42);
        for bad in [
            other.as_str(),
            "<b:Bookmark xmlns:b=\"urn:x\">opaque</b:Bookmark>",
            &header.replace(">42<", ">x<"),
        ] {
            assert!(
                matches!(start(bad), Err(Problem::Wsman(ref f)) if f.subcode == "InvalidBookmark"),
                "{bad}"
            );
        }
    }
}
