//! WS-Management Pull mode (DSP0226, on WS-Enumeration 2004/09): the SubscribeResponse of a
//! pulled subscription carries a `wsen:EnumerationContext`; the subscriber sends `wsen:Pull`
//! with it to the subscription manager and gets `wsen:PullResponse` with the next context and
//! `wsen:Items`, each event a `wsman:Event` with its `Action` (as in Events mode); `wsen:Release`
//! ends the subscription.
//!
//! The context herald hands out names the subscription and the position after the events the
//! response carries. Presenting it moves the stored cursor there and reads on from it;
//! presenting an older one reads again from there (the cursor rule, `engine/pulls.rs`). An
//! event subscription does not end by pulling: no `wsen:EndOfSequence`, ever.
//!
//! Choices where the specifications leave room (also in the README, "WS-Management"):
//! - the wait: `wsen:MaxTime`, `wsman:OperationTimeout` (the shorter when both are given), or
//!   else [`DEFAULT_WAIT`]; never longer than [`MAX_WAIT`]. No event in time: `wsman:TimedOut`
//!   (Receiver), the context still good. When events arrived but the filter passed over all of
//!   them, the response carries no items and a context past them, so they are not read again;
//! - `wsen:MaxCharacters` bounds the characters of the items together. An event that does not
//!   fit is not cut short and not dropped: it ends the response, and the context names the
//!   position before it. When the first event alone exceeds it (WS-Enumeration lets the source
//!   skip the item for now, to return it to a Pull with a larger MaxCharacters), the response
//!   carries no items and the same position, so a larger MaxCharacters gets it;
//! - `wsman:MaxEnvelopeSize` bounds the response the same way, except that the first event is
//!   always sent: when it alone does not fit, `wsman:EncodingLimit`;
//! - `wsen:MaxElements` defaults to 1 and is served up to [`MAX_ELEMENTS`]; a response carries at
//!   most [`MAX_ITEM_BYTES`] of items (always at least one).

use std::sync::Arc;
use std::time::Duration;

use roxmltree::Node;

use super::faults::{Problem, WSEN_NS, WSMAN_NS, WsmanFault};
use super::version::Operation;
use super::wsman::xs_duration;
use super::wsman_delivery::bookmark_header;
use crate::domain::event::Event;
use crate::domain::subscription::SubscriptionId;
use crate::engine::{PullRequest, Pulled};
use crate::soap::xml;

/// `wsa:Action` of a Pull.
pub const PULL_ACTION: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull";
/// `wsa:Action` of a Release.
pub const RELEASE_ACTION: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Release";
/// `wsa:Action` of a PullResponse.
pub const PULL_RESPONSE_ACTION: &str =
    "http://schemas.xmlsoap.org/ws/2004/09/enumeration/PullResponse";
/// `wsa:Action` of a ReleaseResponse (whose body is empty).
pub const RELEASE_RESPONSE_ACTION: &str =
    "http://schemas.xmlsoap.org/ws/2004/09/enumeration/ReleaseResponse";
/// The namespaces a PullResponse uses.
pub const RESPONSE_NAMESPACES: [(&str, &str); 2] = [("wsen", WSEN_NS), ("wsman", WSMAN_NS)];
/// How long a Pull that names no time waits for an event.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The longest a Pull waits, whatever it asks.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// The most events one PullResponse carries.
pub const MAX_ELEMENTS: usize = 1000;
/// The most bytes of items one PullResponse carries (at least one item, whatever its size).
pub const MAX_ITEM_BYTES: usize = 4 * 1024 * 1024;

/// The text a context starts with.
const CONTEXT_PREFIX: &str = "urn:herald:pull:";
/// Room left in a `wsman:MaxEnvelopeSize` for the context and bookmark to grow by a few digits.
const ENVELOPE_SLACK: usize = 64;

/// The WS-Enumeration operation an action requests, if any.
pub fn classify(action: &str) -> Option<Operation> {
    match action {
        PULL_ACTION => Some(Operation::Pull),
        RELEASE_ACTION => Some(Operation::Release),
        _ => None,
    }
}

/// A `wsen:EnumerationContext` herald hands out: the subscription, and the position in its
/// log after which the next Pull reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullContext {
    /// The pulled subscription.
    pub subscription: SubscriptionId,
    /// The position: the subscriber has what came before.
    pub after: u64,
}

impl PullContext {
    /// Its text: `urn:herald:pull:{subscription}:{position}`.
    pub fn text(&self) -> String {
        format!("{CONTEXT_PREFIX}{}:{}", self.subscription.key(), self.after)
    }

    /// Reads a context's text; `None` for one herald did not write.
    pub fn parse(text: &str) -> Option<PullContext> {
        let (subscription, after) = text.trim().strip_prefix(CONTEXT_PREFIX)?.rsplit_once(':')?;
        Some(PullContext {
            subscription: SubscriptionId::parse(subscription)?,
            after: after.parse().ok()?,
        })
    }

    /// The `wsen:EnumerationContext` element, its namespace declared on it.
    pub fn element(&self) -> String {
        format!(
            "<wsen:EnumerationContext xmlns:wsen=\"{WSEN_NS}\">{}</wsen:EnumerationContext>",
            self.text()
        )
    }
}

/// A Pull, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PullCall {
    /// The context presented.
    pub context: PullContext,
    /// `wsen:MaxElements` (default 1), within [`MAX_ELEMENTS`].
    pub max_elements: usize,
    /// How long to wait for an event.
    pub wait: Duration,
    /// `wsen:MaxCharacters`.
    pub max_characters: Option<u64>,
}

impl PullCall {
    /// The engine's request.
    pub fn request(&self) -> PullRequest {
        PullRequest {
            id: self.context.subscription,
            after: self.context.after,
            max_events: self.max_elements,
            wait: self.wait,
        }
    }
}

fn schema_violation(why: String) -> Problem {
    Problem::Wsman(WsmanFault::sender(
        "SchemaValidationError",
        format!("The supplied SOAP violates the corresponding XML Schema definition: {why}"),
        None,
    ))
}

/// The refusals of a Pull or Release about its subscription all say the context is unusable.
pub(super) fn context_problem(problem: Problem) -> Problem {
    match problem {
        Problem::UnknownSubscription(why) => {
            Problem::InvalidEnumerationContext(format!("it names no active subscription ({why})"))
        }
        other => other,
    }
}

/// The context in a Pull or Release body; it must name the subscription of the identifier
/// header, when the request carries one.
fn context_of(
    body: Node<'_, '_>,
    identifier: Option<SubscriptionId>,
) -> Result<PullContext, Problem> {
    let node = xml::single_child(body, WSEN_NS, "EnumerationContext")
        .map_err(|err| schema_violation(err.to_string()))?
        .ok_or_else(|| {
            Problem::InvalidEnumerationContext(
                "the request carries no wsen:EnumerationContext".into(),
            )
        })?;
    let text = xml::trimmed_text(node);
    let context = PullContext::parse(&text).ok_or_else(|| {
        Problem::InvalidEnumerationContext(format!(
            "'{}' is not an enumeration context herald issued",
            text.chars().take(80).collect::<String>()
        ))
    })?;
    if identifier.is_some_and(|id| id != context.subscription) {
        return Err(Problem::InvalidEnumerationContext(
            "it is the context of another subscription than the one addressed".into(),
        ));
    }
    Ok(context)
}

fn positive(body: Node<'_, '_>, name: &str) -> Result<Option<u64>, Problem> {
    let Some(node) =
        xml::single_child(body, WSEN_NS, name).map_err(|err| schema_violation(err.to_string()))?
    else {
        return Ok(None);
    };
    let text = xml::trimmed_text(node);
    text.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(Some)
        .ok_or_else(|| {
            schema_violation(format!(
                "wsen:{name} '{}' is not a positive integer",
                text.chars().take(40).collect::<String>()
            ))
        })
}

/// How long a Pull waits: `wsen:MaxTime` and `wsman:OperationTimeout`, the shorter when both
/// are given, else [`DEFAULT_WAIT`]; at most [`MAX_WAIT`].
pub(super) fn wait(max_time: Option<Duration>, operation_timeout: Option<Duration>) -> Duration {
    let asked = match (max_time, operation_timeout) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => DEFAULT_WAIT,
    };
    asked.min(MAX_WAIT)
}

/// Decodes a `wsen:Pull` body.
pub(super) fn decode_pull(
    body: Node<'_, '_>,
    identifier: Option<SubscriptionId>,
    operation_timeout: Option<Duration>,
) -> Result<PullCall, Problem> {
    let context = context_of(body, identifier)?;
    let max_time = xml::single_child(body, WSEN_NS, "MaxTime")
        .map_err(|err| schema_violation(err.to_string()))?
        .map(|node| {
            let text = xml::trimmed_text(node);
            xs_duration(&text).ok_or_else(|| {
                schema_violation(format!(
                    "wsen:MaxTime '{}' is not a non-negative xs:duration",
                    text.chars().take(40).collect::<String>()
                ))
            })
        })
        .transpose()?;
    let max_elements = positive(body, "MaxElements")?
        .map_or(1, |n| usize::try_from(n).unwrap_or(usize::MAX))
        .min(MAX_ELEMENTS);
    Ok(PullCall {
        context,
        max_elements,
        wait: wait(max_time, operation_timeout),
        max_characters: positive(body, "MaxCharacters")?,
    })
}

/// Decodes a `wsen:Release` body: the context of the subscription to end.
pub(super) fn decode_release(
    body: Node<'_, '_>,
    identifier: Option<SubscriptionId>,
) -> Result<PullContext, Problem> {
    context_of(body, identifier)
}

/// One item of a PullResponse.
fn item(event: &Event) -> String {
    format!(
        "<wsman:Event Action=\"{}\">{}</wsman:Event>",
        xml::escape(&event.action),
        event.payload
    )
}

/// The items that fit, and the position after them: every event while the items' characters
/// stay within `max_characters` and their bytes within `max_bytes` (the first event always
/// fits the bytes). An event left out ends the response: the position is the one before it.
fn choose(
    events: &[Arc<Event>],
    read_to: u64,
    max_characters: Option<u64>,
    max_bytes: usize,
) -> (Vec<String>, u64) {
    let mut items = Vec::new();
    let (mut characters, mut bytes) = (0u64, 0usize);
    for event in events {
        let item = item(event);
        characters += item.chars().count() as u64;
        bytes += item.len();
        let too_many_characters = max_characters.is_some_and(|max| characters > max);
        if too_many_characters || (bytes > max_bytes && !items.is_empty()) {
            return (items, event.seq - 1);
        }
        items.push(item);
    }
    (items, read_to)
}

/// The body of a PullResponse and its headers beyond addressing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PullResponse {
    /// The `wsen:PullResponse` element.
    pub body: String,
    /// A `wsman:Bookmark`, for a subscriber that asked for bookmarks.
    pub headers: Vec<String>,
}

/// The PullResponse: the next context, the items that fit the request's limits, and, for a
/// subscriber that asked for bookmarks, a `wsman:Bookmark` naming the position after them.
/// `envelope_size` tells how large the response envelope of given parts is (for
/// `wsman:MaxEnvelopeSize`). Its namespaces are [`RESPONSE_NAMESPACES`].
pub(super) fn pull_response(
    call: &PullCall,
    pulled: &Pulled,
    max_envelope_size: Option<usize>,
    envelope_size: impl Fn(&PullResponse) -> usize,
) -> PullResponse {
    let subscription = &pulled.subscription;
    let bookmarks = subscription
        .wsman
        .as_ref()
        .is_some_and(|wsman| wsman.send_bookmarks);
    let parts = |items: &[String], after: u64| {
        let next = PullContext {
            subscription: subscription.id,
            after,
        };
        let items = if items.is_empty() {
            String::new()
        } else {
            format!("<wsen:Items>{}</wsen:Items>", items.concat())
        };
        PullResponse {
            body: format!(
                "<wsen:PullResponse><wsen:EnumerationContext>{}</wsen:EnumerationContext>{items}</wsen:PullResponse>",
                next.text()
            ),
            headers: if bookmarks {
                vec![bookmark_header(&subscription.source, after)]
            } else {
                Vec::new()
            },
        }
    };
    let max_bytes = match max_envelope_size {
        Some(max) => {
            let overhead = envelope_size(&parts(&[], pulled.read_to)) + ENVELOPE_SLACK;
            max.saturating_sub(overhead).min(MAX_ITEM_BYTES)
        }
        None => MAX_ITEM_BYTES,
    };
    let (items, after) = choose(
        &pulled.events,
        pulled.read_to,
        call.max_characters,
        max_bytes,
    );
    parts(&items, after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::subscription::SourceName;

    fn event(seq: u64, payload: &str) -> Arc<Event> {
        Arc::new(Event {
            source: SourceName::parse("s").unwrap(),
            seq,
            id: crate::domain::event::EventId::new(),
            action: "urn:a".into(),
            payload: payload.into(),
            published_at: jiff::Timestamp::now(),
        })
    }

    #[test]
    fn contexts_round_trip_and_others_are_refused() {
        let context = PullContext {
            subscription: SubscriptionId::new_random(),
            after: 42,
        };
        assert_eq!(PullContext::parse(&context.text()), Some(context));
        for bad in [
            "",
            "uuid:x",
            "urn:herald:pull:nope:1",
            &context.text().replace(":42", ":x"),
        ] {
            assert_eq!(PullContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn items_stop_at_the_first_that_does_not_fit() {
        let events = [event(3, "<a/>"), event(5, "<bb/>"), event(6, "<c/>")];
        let size = item(&events[0]).chars().count() as u64;
        let all = choose(&events, 9, None, MAX_ITEM_BYTES);
        assert_eq!(
            (all.0.len(), all.1),
            (3, 9),
            "everything, and past the filtered-out"
        );
        let one = choose(&events, 9, Some(size + 1), MAX_ITEM_BYTES);
        assert_eq!(
            (one.0.len(), one.1),
            (1, 4),
            "up to the one that does not fit"
        );
        let none = choose(&events, 9, Some(size - 1), MAX_ITEM_BYTES);
        assert_eq!(
            (none.0.len(), none.1),
            (0, 2),
            "the first is held back, not lost"
        );
        let bytes = choose(&events, 9, None, 1);
        assert_eq!(
            (bytes.0.len(), bytes.1),
            (1, 4),
            "the first always fits the bytes"
        );
    }

    #[test]
    fn waits_are_bounded() {
        let s = Duration::from_secs;
        assert_eq!(wait(None, None), DEFAULT_WAIT);
        assert_eq!(wait(Some(s(5)), Some(s(60))), s(5));
        assert_eq!(wait(None, Some(s(7))), s(7));
        assert_eq!(wait(Some(s(3600)), None), MAX_WAIT);
    }
}
