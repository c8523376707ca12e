//! Push channels in the store: the part of [`Store`](super::Store) for seed 004. A channel's
//! notifications are appended to its log like any log's events; the row here holds the rest.

use async_trait::async_trait;
use jiff::Timestamp;

use super::StoreError;
use super::codec::{Columns, corrupt, optional_timestamp, stored_seq, timestamp};
use super::sql::Sql;
use crate::domain::channel::{Channel, ChannelToken};

/// Durable push channels. Every method is one atomic step.
#[async_trait]
pub trait Channels {
    /// Stores a new channel.
    async fn open_channel(&self, channel: &Channel) -> Result<(), StoreError>;

    /// A channel, open or not, with the head of its log.
    async fn channel(&self, token: &ChannelToken) -> Result<Option<Channel>, StoreError>;

    /// A reader was there at `at`, having read up to `cursor` (when it says): `last_seen` and
    /// the cursor only move forward. False when the channel is closed or unknown.
    async fn see_channel(
        &self,
        token: &ChannelToken,
        at: Timestamp,
        cursor: Option<u64>,
    ) -> Result<bool, StoreError>;

    /// Closes an open channel; false when it was not open.
    async fn close_channel(&self, token: &ChannelToken, at: Timestamp) -> Result<bool, StoreError>;

    /// Moves the expiry of a channel open at `now`; false when it is not.
    async fn renew_channel(
        &self,
        token: &ChannelToken,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Counts one notification from an unauthenticated sender on day `day`, unless `limit`
    /// were counted that day already: false then (and nothing counted).
    async fn count_unauthenticated(
        &self,
        token: &ChannelToken,
        day: i64,
        limit: u64,
    ) -> Result<bool, StoreError>;
}

/// A channel row with its log's head.
pub static CHANNEL: Sql = Sql::new(
    "SELECT c.token, c.created_at, c.expires_at, c.closed_at, c.last_seen, c.cursor,
            COALESCE(h.last_seq, 0) AS head
     FROM channels c LEFT JOIN source_heads h ON h.source = c.log
     WHERE c.token = $1",
);

/// A new channel.
pub static OPEN: Sql = Sql::new(
    "INSERT INTO channels (token, log, created_at, expires_at, last_seen)
     VALUES ($1, $2, $3, $4, $3)",
);

/// Closes an open channel.
pub static CLOSE: Sql =
    Sql::new("UPDATE channels SET closed_at = $2 WHERE token = $1 AND closed_at IS NULL");

/// Renews a channel open at `$3`.
pub static RENEW: Sql = Sql::new(
    "UPDATE channels SET expires_at = $2
     WHERE token = $1 AND closed_at IS NULL AND expires_at > $3",
);

/// Counts an unauthenticated notification on day `$2` under limit `$3`.
pub static COUNT_DAY: Sql = Sql::new(
    "UPDATE channels SET day_count = CASE WHEN day = $2 THEN day_count + 1 ELSE 1 END, day = $2
     WHERE token = $1 AND (day <> $2 OR day_count < $3)",
);

/// A channel row.
pub fn decode_channel(row: &impl Columns) -> Result<Channel, StoreError> {
    let token = row.text("token")?;
    Ok(Channel {
        token: ChannelToken::parse(&token).ok_or_else(|| corrupt("token", &token))?,
        created_at: timestamp(row.int("created_at")?)?,
        expires_at: timestamp(row.int("expires_at")?)?,
        closed_at: optional_timestamp(row.optional_int("closed_at")?)?,
        last_seen: timestamp(row.int("last_seen")?)?,
        cursor: stored_seq("cursor", row.int("cursor")?)?,
        head: stored_seq("head", row.int("head")?)?,
    })
}
