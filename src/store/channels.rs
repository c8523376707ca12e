//! Push channels in the store: the part of [`Store`](super::Store) for seed 004. A channel's
//! notifications are appended to its log like any log's events; the row here holds the rest.
//!
//! Presence is measured on the store's clock: a reader's visit (`last_seen`), a channel's
//! status when read ([`Channel::as_of`]), the day of the daily limit, when a device went
//! inactive and how long a firing is claimed. On SQLite (one node) that is the `now` the
//! caller passes; on PostgreSQL it is the database's, whatever `now` says, so that nodes whose
//! clocks differ agree on a device's status, count one day alike and never both send one
//! firing.

use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::StoreError;
use super::codec::{
    Columns, corrupt, millis, optional_timestamp, stored_count, stored_seq, timestamp,
};
use super::group_commit::{Commit, Queue};
use super::sql::Sql;
use crate::domain::channel::{
    CallbackRegistration, CallbackState, Channel, ChannelToken, Firing, FiringOutcome,
};

/// A reader's visit to a channel (see [`Channels::see_channel`]), waiting for the next group
/// commit: visits to many channels share one statement and one commit.
pub(super) struct Sighting {
    pub token: String,
    pub now: i64,
    pub read: Option<i64>,
    pub sent: Option<i64>,
}

/// A change to one channel, waiting for the next group commit: opens, closes, renewals,
/// callback registrations and unauthenticated counts of many channels share one transaction.
/// Times are the callers' milliseconds.
pub(super) enum ChannelWrite {
    Open {
        token: String,
        log: String,
        created_at: i64,
        expires_at: i64,
    },
    Close {
        token: String,
        at: i64,
    },
    Renew {
        token: String,
        expires_at: i64,
        now: i64,
    },
    Register {
        token: String,
        registration: CallbackRegistration,
    },
    CountDay {
        token: String,
        day: i64,
        limit: i64,
    },
}

impl ChannelWrite {
    /// A new channel.
    pub fn opening(channel: &Channel) -> Self {
        ChannelWrite::Open {
            token: channel.token.as_str().to_owned(),
            log: channel.token.log().as_str().to_owned(),
            created_at: millis(channel.created_at),
            expires_at: millis(channel.expires_at),
        }
    }

    /// One unauthenticated notification counted on `day` under `limit`.
    pub fn counting(token: &ChannelToken, day: i64, limit: u64) -> Self {
        ChannelWrite::CountDay {
            token: token.as_str().to_owned(),
            day,
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
        }
    }

    /// The channel it changes.
    pub fn token(&self) -> &str {
        match self {
            ChannelWrite::Open { token, .. }
            | ChannelWrite::Close { token, .. }
            | ChannelWrite::Renew { token, .. }
            | ChannelWrite::Register { token, .. }
            | ChannelWrite::CountDay { token, .. } => token,
        }
    }
}

/// The queues to a store's two group commits of channels: readers' visits, and changes.
pub(super) struct ChannelQueues<S, W>
where
    S: Commit<Write = Sighting, Answer = bool>,
    W: Commit<Write = ChannelWrite, Answer = bool>,
{
    sightings: Queue<S>,
    changes: Queue<W>,
}

impl<S, W> Clone for ChannelQueues<S, W>
where
    S: Commit<Write = Sighting, Answer = bool>,
    W: Commit<Write = ChannelWrite, Answer = bool>,
{
    fn clone(&self) -> Self {
        ChannelQueues {
            sightings: self.sightings.clone(),
            changes: self.changes.clone(),
        }
    }
}

impl<S, W> ChannelQueues<S, W>
where
    S: Commit<Write = Sighting, Answer = bool>,
    W: Commit<Write = ChannelWrite, Answer = bool>,
{
    /// Starts both group commits, until `closing`.
    pub fn start(
        (sightings, changes): (S, W),
        tasks: &TaskTracker,
        closing: &CancellationToken,
    ) -> Self {
        ChannelQueues {
            sightings: Queue::start(sightings, tasks, closing.clone()),
            changes: Queue::start(changes, tasks, closing.clone()),
        }
    }

    /// A reader's visit, durable when this returns; false when the channel is not open.
    pub async fn see(&self, visit: Sighting) -> Result<bool, StoreError> {
        self.sightings.submit(visit).await
    }

    /// A change, durable when this returns; whether it changed the channel.
    pub async fn change(&self, write: ChannelWrite) -> Result<bool, StoreError> {
        self.changes.submit(write).await
    }
}

/// Whether each write of a batch (a visit or a change) found its channel, in the batch's
/// order, from the `token` column of the rows changed: a batch never holds two writes to one
/// channel.
pub(super) fn changed<'a, R: Columns>(
    tokens: impl Iterator<Item = &'a str>,
    rows: &[R],
) -> Result<Vec<bool>, StoreError> {
    let changed = rows
        .iter()
        .map(|row| row.text("token"))
        .collect::<Result<std::collections::HashSet<_>, _>>()?;
    Ok(tokens.map(|token| changed.contains(token)).collect())
}

/// Durable push channels. Every method is one atomic step; `now` is the caller's clock, which
/// only SQLite uses for presence (see the module's notes).
#[async_trait]
pub trait Channels {
    /// Stores a new channel.
    async fn open_channel(&self, channel: &Channel) -> Result<(), StoreError>;

    /// A channel, open or not, with the head of its log, as of the store's clock.
    async fn channel(
        &self,
        token: &ChannelToken,
        now: Timestamp,
    ) -> Result<Option<Channel>, StoreError>;

    /// A reader was there now, having read up to `read` (when the device says so) or been
    /// sent up to `sent` (a stream): each only moves forward. False when the channel is closed
    /// or unknown.
    async fn see_channel(
        &self,
        token: &ChannelToken,
        now: Timestamp,
        read: Option<u64>,
        sent: Option<u64>,
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

    /// Stores a callback registration on an open channel, replacing any earlier one (armed,
    /// its attempts cleared); false when the channel is not open.
    async fn register_callback(
        &self,
        token: &ChannelToken,
        registration: &CallbackRegistration,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Armed registrations of open channels with no reader for longer than `inactive_after`
    /// (their device went inactive) start firing, due now: up to `limit`; how many did.
    async fn start_firings(
        &self,
        inactive_after: Duration,
        now: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError>;

    /// Claims up to `limit` firings due now; a claimed one is not due again for `claim_for`,
    /// so two nodes never send it at once.
    async fn due_firings(
        &self,
        now: Timestamp,
        limit: u32,
        claim_for: Duration,
    ) -> Result<Vec<Firing>, StoreError>;

    /// Records an attempt at a firing of the registration made at `registered_at` (a newer
    /// registration is left alone).
    async fn record_firing(
        &self,
        token: &ChannelToken,
        registered_at: Timestamp,
        outcome: &FiringOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Channels by connection status now: `[connected, temp_disconnected, inactive,
    /// disconnected]`, where a reader seen within `connected_for` is connected and one not seen
    /// for longer than `inactive_after` inactive.
    async fn channel_counts(
        &self,
        connected_for: Duration,
        inactive_after: Duration,
        now: Timestamp,
    ) -> Result<[u64; 4], StoreError>;

    /// Forgets up to `limit` channels closed, or expired, before `ended_before`: their rows,
    /// their notifications and their logs' heads, in one transaction. How many went.
    async fn forget_channels(&self, ended_before: Timestamp, limit: u32)
    -> Result<u64, StoreError>;

    /// Counts one notification from an unauthenticated sender on `day` (see [`Channel::day`]),
    /// unless `limit` were counted that day already: false then (and nothing counted). A day
    /// before the one counted last counts as that one, so a count never starts over early.
    async fn count_unauthenticated(
        &self,
        token: &ChannelToken,
        day: i64,
        limit: u64,
    ) -> Result<bool, StoreError>;
}

/// `now - after`, or the dawn of time.
pub fn before(now: Timestamp, after: Duration) -> Timestamp {
    SignedDuration::try_from(after)
        .ok()
        .and_then(|after| now.checked_sub(after).ok())
        .unwrap_or(Timestamp::MIN)
}

/// A channel row with its log's head, and the store's clock as `as_of` (`$2` on SQLite; the
/// database's clock on PostgreSQL).
macro_rules! channel_query {
    ($($now:tt)+) => {
        concat!(
            "SELECT c.token, c.created_at, c.expires_at, c.closed_at, c.last_seen, c.cursor,
                    c.sent, c.cb_uri, c.cb_payload, c.cb_content_type, c.cb_registered_at,
                    c.cb_state, COALESCE(h.last_seq, 0) AS head, ",
            $($now)+,
            " AS as_of
             FROM channels c LEFT JOIN source_heads h ON h.source = c.log
             WHERE c.token = $1"
        )
    };
}
pub(super) use channel_query;

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

/// Counts an unauthenticated notification on day `$2` under limit `$3`: a later day starts
/// over, an earlier one (another node's clock behind) counts as the last.
pub static COUNT_DAY: Sql = Sql::new(
    "UPDATE channels
     SET day_count = CASE WHEN day < $2 THEN 1 ELSE day_count + 1 END,
         day = CASE WHEN day < $2 THEN $2 ELSE day END
     WHERE token = $1 AND (day < $2 OR day_count < $3)",
);

/// Stores a registration (armed).
pub static REGISTER: Sql = Sql::new(
    "UPDATE channels SET cb_uri = $2, cb_payload = $3, cb_content_type = $4,
         cb_registered_at = $5, cb_state = 'armed', cb_attempts = 0, cb_next_at = NULL,
         cb_failing_since = NULL, cb_last_error = NULL, cb_fired_at = NULL
     WHERE token = $1 AND closed_at IS NULL AND expires_at > $5",
);

/// Armed registrations of open channels whose device went inactive start firing.
pub static START_FIRINGS: Sql = Sql::new(
    "UPDATE channels SET cb_state = 'firing', cb_next_at = $2
     WHERE cb_state = 'armed' AND last_seen < $1 AND token IN (
         SELECT token FROM channels
         WHERE cb_state = 'armed' AND last_seen < $1 AND closed_at IS NULL AND expires_at > $2
         LIMIT $3)",
);

/// Records a delivered firing.
pub static FIRED: Sql = Sql::new(
    "UPDATE channels SET cb_state = 'fired', cb_fired_at = $3, cb_next_at = NULL
     WHERE token = $1 AND cb_registered_at = $2 AND cb_state = 'firing'",
);

/// Records a failed attempt, retried at `$4`.
pub static FIRING_RETRY: Sql = Sql::new(
    "UPDATE channels SET cb_attempts = $3, cb_next_at = $4, cb_failing_since = $5,
         cb_last_error = $6
     WHERE token = $1 AND cb_registered_at = $2 AND cb_state = 'firing'",
);

/// Records a firing given up.
pub static FIRING_FAILED: Sql = Sql::new(
    "UPDATE channels SET cb_state = 'failed', cb_attempts = $3, cb_last_error = $4,
         cb_next_at = NULL
     WHERE token = $1 AND cb_registered_at = $2 AND cb_state = 'firing'",
);

/// Channels closed or expired before `$1`: their tokens and logs.
pub static ENDED: Sql = Sql::new(
    "SELECT token, log FROM channels
     WHERE (closed_at IS NOT NULL AND closed_at < $1) OR expires_at < $1
     LIMIT $2",
);

/// A forgotten channel's notifications.
pub static FORGET_EVENTS: Sql = Sql::new("DELETE FROM events WHERE source = $1");

/// A forgotten channel's log head.
pub static FORGET_HEAD: Sql = Sql::new("DELETE FROM source_heads WHERE source = $1");

/// A forgotten channel's row.
pub static FORGET_CHANNEL: Sql = Sql::new("DELETE FROM channels WHERE token = $1");

/// Channels by connection status.
pub static COUNTS: Sql = Sql::new(
    "SELECT
         COALESCE(SUM(CASE WHEN closed_at IS NULL AND expires_at > $3 AND last_seen >= $1
                       THEN 1 ELSE 0 END), 0) AS connected,
         COALESCE(SUM(CASE WHEN closed_at IS NULL AND expires_at > $3 AND last_seen < $1
                            AND last_seen >= $2 THEN 1 ELSE 0 END), 0) AS temp,
         COALESCE(SUM(CASE WHEN closed_at IS NULL AND expires_at > $3 AND last_seen < $2
                       THEN 1 ELSE 0 END), 0) AS inactive,
         COALESCE(SUM(CASE WHEN closed_at IS NOT NULL OR expires_at <= $3 THEN 1 ELSE 0 END), 0)
             AS disconnected
     FROM channels",
);

/// The counts of [`COUNTS`].
pub fn decode_counts(row: &impl Columns) -> Result<[u64; 4], StoreError> {
    Ok([
        stored_seq("connected", row.int("connected")?)?,
        stored_seq("temp", row.int("temp")?)?,
        stored_seq("inactive", row.int("inactive")?)?,
        stored_seq("disconnected", row.int("disconnected")?)?,
    ])
}

/// A claimed firing row.
pub fn decode_firing(row: &impl ColumnsWithBytes) -> Result<Firing, StoreError> {
    let token = row.text("token")?;
    Ok(Firing {
        token: ChannelToken::parse(&token).ok_or_else(|| corrupt("token", &token))?,
        registration: CallbackRegistration {
            uri: row.text("cb_uri")?,
            payload: row.bytes("cb_payload")?.unwrap_or_default(),
            content_type: row.optional_text("cb_content_type")?,
            registered_at: timestamp(row.int("cb_registered_at")?)?,
        },
        attempts: stored_count("cb_attempts", row.int("cb_attempts")?)?,
        failing_since: optional_timestamp(row.optional_int("cb_failing_since")?)?,
    })
}

/// Rows with a bytes column besides the usual ones.
pub trait ColumnsWithBytes: Columns {
    /// A nullable bytes column.
    fn bytes(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

impl ColumnsWithBytes for sqlx::sqlite::SqliteRow {
    fn bytes(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        use sqlx::Row;
        Ok(self.try_get(name)?)
    }
}

impl ColumnsWithBytes for sqlx::postgres::PgRow {
    fn bytes(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        use sqlx::Row;
        Ok(self.try_get(name)?)
    }
}

/// A channel row.
pub fn decode_channel(row: &impl ColumnsWithBytes) -> Result<Channel, StoreError> {
    let token = row.text("token")?;
    let callback = match (row.optional_text("cb_uri")?, row.optional_text("cb_state")?) {
        (Some(uri), Some(state)) => Some((
            CallbackRegistration {
                uri,
                payload: row.bytes("cb_payload")?.unwrap_or_default(),
                content_type: row.optional_text("cb_content_type")?,
                registered_at: timestamp(row.int("cb_registered_at")?)?,
            },
            CallbackState::from_name(&state).ok_or_else(|| corrupt("cb_state", &state))?,
        )),
        _ => None,
    };
    Ok(Channel {
        callback,
        token: ChannelToken::parse(&token).ok_or_else(|| corrupt("token", &token))?,
        created_at: timestamp(row.int("created_at")?)?,
        expires_at: timestamp(row.int("expires_at")?)?,
        closed_at: optional_timestamp(row.optional_int("closed_at")?)?,
        last_seen: timestamp(row.int("last_seen")?)?,
        cursor: stored_seq("cursor", row.int("cursor")?)?,
        sent: stored_seq("sent", row.int("sent")?)?,
        head: stored_seq("head", row.int("head")?)?,
        as_of: timestamp(row.int("as_of")?)?,
    })
}
