//! Push channels (seed 004): a channel is a log of notifications for one device that cannot be
//! called; the device reads it over a stream or a long poll, and its connection status follows
//! from when a reader was last there.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};

use super::subscription::SourceName;

/// A channel's token: 128 random bits, base64url without padding (22 characters). The channel
/// URI that carries it is the capability: whoever holds it reads the channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelToken(String);

impl ChannelToken {
    /// A fresh random token.
    pub fn new() -> ChannelToken {
        let bits = super::random::uuid_v4().into_bytes();
        ChannelToken(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bits))
    }

    /// Accepts exactly what [`ChannelToken::new`] makes: 22 characters of the URL-safe base64
    /// alphabet.
    pub fn parse(text: &str) -> Option<ChannelToken> {
        let ok = text.len() == 22
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| ChannelToken(text.to_owned()))
    }

    /// The token as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The channel's log: `ch.{token}`.
    pub fn log(&self) -> SourceName {
        SourceName::parse(&format!("ch.{}", self.0)).unwrap_or_else(|| unreachable!())
    }
}

impl Default for ChannelToken {
    fn default() -> ChannelToken {
        ChannelToken::new()
    }
}

impl fmt::Display for ChannelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The device's connection status, as `X-DeviceConnectionStatus` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionStatus {
    /// A stream is open, or a poll came within the connected interval.
    Connected,
    /// The grace period after that.
    TempDisconnected,
    /// The grace period passed with no reader.
    InActive,
    /// The channel is closed or expired.
    Disconnected,
}

impl ConnectionStatus {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Connected => "Connected",
            ConnectionStatus::TempDisconnected => "TempDisconnected",
            ConnectionStatus::InActive => "InActive",
            ConnectionStatus::Disconnected => "Disconnected",
        }
    }
}

/// When a reader counts as there: a stream keeps `last_seen` fresh (every third of
/// `connected_for`), and a poll sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// A reader seen this long ago is still connected.
    pub connected_for: Duration,
    /// Then the device is temporarily disconnected for this long, and inactive after.
    pub grace: Duration,
}

impl Presence {
    /// The status at `now` of an open channel whose reader was last there at `last_seen`.
    pub fn status(&self, last_seen: Timestamp, now: Timestamp) -> ConnectionStatus {
        let since = now.duration_since(last_seen);
        let connected = SignedDuration::try_from(self.connected_for).unwrap_or(SignedDuration::MAX);
        let grace = SignedDuration::try_from(self.grace).unwrap_or(SignedDuration::MAX);
        if since <= connected {
            ConnectionStatus::Connected
        } else if since <= connected.saturating_add(grace) {
            ConnectionStatus::TempDisconnected
        } else {
            ConnectionStatus::InActive
        }
    }

    /// When a channel last seen at `last_seen` becomes inactive.
    pub fn inactive_at(&self, last_seen: Timestamp) -> Timestamp {
        let after = SignedDuration::try_from(self.connected_for + self.grace)
            .unwrap_or(SignedDuration::MAX);
        last_seen.checked_add(after).unwrap_or(Timestamp::MAX)
    }
}

/// A channel as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    /// Its token.
    pub token: ChannelToken,
    /// When it was opened.
    pub created_at: Timestamp,
    /// When it expires unless renewed.
    pub expires_at: Timestamp,
    /// When its client closed it, if it did.
    pub closed_at: Option<Timestamp>,
    /// When a reader was last there (the open time until one is).
    pub last_seen: Timestamp,
    /// The last notification the device has said it read (its `Last-Event-ID` or `after`):
    /// what is kept for it starts after this.
    pub cursor: u64,
    /// The last notification a stream has sent it (not yet known to be read).
    pub sent: u64,
    /// The last notification sent to it.
    pub head: u64,
    /// Its callback registration, if any, and where its firing stands.
    pub callback: Option<(CallbackRegistration, CallbackState)>,
    /// The store's clock when this was read (the database's on PostgreSQL): `last_seen` is
    /// on that clock too, so every node judges a channel's status alike whatever its own.
    pub as_of: Timestamp,
}

impl Channel {
    /// A new channel opened `now` with a fresh token, expiring at `expires_at` unless renewed:
    /// nothing sent, nothing read, its reader counted as there now.
    pub fn opened(now: Timestamp, expires_at: Timestamp) -> Channel {
        Channel {
            token: ChannelToken::new(),
            created_at: now,
            expires_at,
            closed_at: None,
            last_seen: now,
            cursor: 0,
            sent: 0,
            head: 0,
            callback: None,
            as_of: now,
        }
    }

    /// Whether it took notifications when read: not closed, not expired.
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none() && self.expires_at > self.as_of
    }

    /// Its connection status when read.
    pub fn status(&self, presence: &Presence) -> ConnectionStatus {
        if !self.is_open() {
            return ConnectionStatus::Disconnected;
        }
        presence.status(self.last_seen, self.as_of)
    }

    /// The day (since the epoch, on the store's clock) that counts its notifications from
    /// unauthenticated senders.
    pub fn day(&self) -> i64 {
        self.as_of.as_second().div_euclid(86_400)
    }

    /// Notifications queued for the device and not yet sent to it (or read).
    pub fn queued(&self) -> u64 {
        self.head.saturating_sub(self.cursor.max(self.sent))
    }
}

/// A channel's callback registration: fired (its payload POSTed to its URI, byte for byte with
/// its content type) when the device goes inactive, once; then spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRegistration {
    /// Where it is POSTed.
    pub uri: String,
    /// The opaque payload, at most [`MAX_CALLBACK_BYTES`].
    pub payload: Vec<u8>,
    /// Its content type, as registered.
    pub content_type: Option<String>,
    /// When it was registered.
    pub registered_at: Timestamp,
}

/// The largest callback payload, as in the seed: 1 KB.
pub const MAX_CALLBACK_BYTES: usize = 1024;

/// Where a registration's firing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackState {
    /// Registered: fires when the device goes inactive.
    Armed,
    /// The device went inactive: being sent (retried until delivered or given up).
    Firing,
    /// Delivered; spent.
    Fired,
    /// Given up; spent.
    Failed,
}

impl CallbackState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackState::Armed => "armed",
            CallbackState::Firing => "firing",
            CallbackState::Fired => "fired",
            CallbackState::Failed => "failed",
        }
    }

    /// Inverse of `as_str`.
    pub fn from_name(name: &str) -> Option<CallbackState> {
        [
            CallbackState::Armed,
            CallbackState::Firing,
            CallbackState::Fired,
            CallbackState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
    }
}

/// A firing due now, as claimed: the channel, the registration, and the attempts so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    /// The channel.
    pub token: ChannelToken,
    /// What to send where.
    pub registration: CallbackRegistration,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the current run of failures began.
    pub failing_since: Option<Timestamp>,
}

/// How an attempt at a firing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FiringOutcome {
    /// Delivered.
    Fired,
    /// Failed; next attempt at `next_at`.
    Retry {
        /// Failed attempts so far.
        attempts: u32,
        /// When the next is due.
        next_at: Timestamp,
        /// When failures began.
        failing_since: Timestamp,
        /// What happened.
        error: String,
    },
    /// Given up.
    Failed {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_22_url_safe_characters_and_name_their_log() {
        let token = ChannelToken::new();
        assert_eq!(token.as_str().len(), 22);
        assert_eq!(ChannelToken::parse(token.as_str()), Some(token.clone()));
        assert_eq!(token.log().as_str(), format!("ch.{token}"));
        for bad in [
            "",
            "short",
            &"a".repeat(23),
            "aaaaaaaaaaaaaaaaaaaaa/",
            "aaaaaaaaaaaaaaaaaaaaa=",
        ] {
            assert_eq!(ChannelToken::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn status_follows_the_last_reader() {
        let presence = Presence {
            connected_for: Duration::from_secs(60),
            grace: Duration::from_secs(120),
        };
        let seen = Timestamp::UNIX_EPOCH;
        let at = |s: i64| seen.checked_add(SignedDuration::from_secs(s)).unwrap();
        assert_eq!(presence.status(seen, at(60)), ConnectionStatus::Connected);
        assert_eq!(
            presence.status(seen, at(61)),
            ConnectionStatus::TempDisconnected
        );
        assert_eq!(
            presence.status(seen, at(180)),
            ConnectionStatus::TempDisconnected
        );
        assert_eq!(presence.status(seen, at(181)), ConnectionStatus::InActive);
        assert_eq!(presence.inactive_at(seen), at(180));
    }
}
