//! Events: what publishers hand herald and what the event log holds.

use std::fmt;

use jiff::Timestamp;
use uuid::Uuid;

use super::subscription::SourceName;

/// An event's identifier: a UUIDv7, so identifiers sort by publish time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId(Uuid);

impl EventId {
    /// A fresh, time-ordered identifier.
    pub fn new() -> EventId {
        EventId(Uuid::now_v7())
    }

    /// Reads `uuid:…` or a bare UUID.
    pub fn parse(text: &str) -> Option<EventId> {
        let text = text.trim();
        Uuid::try_parse(text.strip_prefix("uuid:").unwrap_or(text))
            .ok()
            .map(EventId)
    }
}

impl Default for EventId {
    fn default() -> EventId {
        EventId::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uuid:{}", self.0.hyphenated())
    }
}

/// An event as a publisher hands it over: its action and its XML payload (one or more complete
/// elements, each carrying the namespace declarations it needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The action URI notifications carry as `wsa:Action`.
    pub action: String,
    /// The event element(s).
    pub payload: String,
}

/// An event in a source's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The source it was published to.
    pub source: SourceName,
    /// Its position in the source's log, from 1, without gaps.
    pub seq: u64,
    /// Its identifier.
    pub id: EventId,
    /// Its action URI.
    pub action: String,
    /// The event element(s).
    pub payload: String,
    /// When it became durable.
    pub published_at: Timestamp,
}
