//! Push channels in PostgreSQL.

use async_trait::async_trait;
use jiff::Timestamp;

use super::super::StoreError;
use super::super::channels::{
    COUNTS, ChannelWrite, Channels, ENDED, FIRED, FIRING_FAILED, FIRING_RETRY, FORGET_CHANNEL,
    FORGET_EVENTS, FORGET_HEAD, START_FIRINGS, Sighting, before, changed, channel_query,
    decode_channel, decode_counts, decode_firing,
};
use super::super::codec::{duration_millis, millis, seq_column, timestamp};
use super::super::group_commit::Commit;
use super::PostgresStore;
use super::batch_writes::PgBatches;
use crate::domain::channel::{CallbackRegistration, Channel, ChannelToken, Firing, FiringOutcome};

/// A channel as of the database's clock.
const CHANNEL: &str = channel_query!(db_now!());

/// The database's clock.
const NOW: &str = concat!("SELECT ", db_now!());

/// Readers were there now, on the database's clock: each open channel's `last_seen`, cursor
/// and what was sent to it move forward only.
const SEE_BATCH: &str = concat!(
    "UPDATE channels c SET last_seen = GREATEST(c.last_seen, ",
    db_now!(),
    "), cursor = GREATEST(c.cursor, COALESCE(v.seen_read, c.cursor)),
         sent = GREATEST(c.sent, COALESCE(v.seen_sent, c.sent))
     FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) AS v(seen_token, seen_read, seen_sent)
     WHERE c.token = v.seen_token AND c.closed_at IS NULL
     RETURNING c.token"
);

/// Writes batches of visits (group commit; see [`super::super::group_commit`]).
pub(super) struct PgSightings(pub PgBatches);

#[async_trait]
impl Commit for PgSightings {
    type Write = Sighting;
    type Answer = bool;

    fn row(write: &Sighting) -> Option<&str> {
        Some(&write.token)
    }

    async fn commit(&self, batch: &[Sighting]) -> Result<Vec<bool>, StoreError> {
        let column =
            |pick: fn(&Sighting) -> Option<i64>| batch.iter().map(pick).collect::<Vec<_>>();
        let rows = sqlx::query(SEE_BATCH)
            .bind(batch.iter().map(|v| v.token.clone()).collect::<Vec<_>>())
            .bind(column(|v| v.read))
            .bind(column(|v| v.sent))
            .fetch_all(&self.0.pool)
            .await?;
        changed(batch.iter().map(|v| v.token.as_str()), &rows)
    }
}

/// A batch of channel changes in one statement (one round trip, one commit), each kind's rows
/// as arrays: opens (`$1`–`$4`, the reader last there now on the database's clock), closes
/// (`$5`–`$6`), renewals of channels open at their `now` (`$7`–`$9`), callback registrations
/// on channels open then, armed and their attempts cleared (`$10`–`$14`), and unauthenticated
/// counts on a day under a limit (`$15`–`$17`: a later day starts over, an earlier one counts
/// as the last). A batch never changes one channel twice, so the parts never meet.
const CHANGE_BATCH: &str = concat!(
    "WITH opened AS (
         INSERT INTO channels (token, log, created_at, expires_at, last_seen)
         SELECT o.token, o.log, o.created_at, o.expires_at, ",
    db_now!(),
    "
         FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[])
              AS o(token, log, created_at, expires_at)
         RETURNING token),
     closed AS (
         UPDATE channels c SET closed_at = v.at
         FROM UNNEST($5::TEXT[], $6::BIGINT[]) AS v(token, at)
         WHERE c.token = v.token AND c.closed_at IS NULL
         RETURNING c.token),
     renewed AS (
         UPDATE channels c SET expires_at = v.expires_at
         FROM UNNEST($7::TEXT[], $8::BIGINT[], $9::BIGINT[]) AS v(token, expires_at, now)
         WHERE c.token = v.token AND c.closed_at IS NULL AND c.expires_at > v.now
         RETURNING c.token),
     registered AS (
         UPDATE channels c SET cb_uri = v.uri, cb_payload = v.payload,
             cb_content_type = v.content_type, cb_registered_at = v.registered_at,
             cb_state = 'armed', cb_attempts = 0, cb_next_at = NULL, cb_failing_since = NULL,
             cb_last_error = NULL, cb_fired_at = NULL
         FROM UNNEST($10::TEXT[], $11::TEXT[], $12::BYTEA[], $13::TEXT[], $14::BIGINT[])
              AS v(token, uri, payload, content_type, registered_at)
         WHERE c.token = v.token AND c.closed_at IS NULL AND c.expires_at > v.registered_at
         RETURNING c.token),
     counted AS (
         UPDATE channels c
         SET day_count = CASE WHEN c.day < v.day THEN 1 ELSE c.day_count + 1 END,
             day = CASE WHEN c.day < v.day THEN v.day ELSE c.day END
         FROM UNNEST($15::TEXT[], $16::BIGINT[], $17::BIGINT[]) AS v(token, day, day_limit)
         WHERE c.token = v.token AND (c.day < v.day OR c.day_count < v.day_limit)
         RETURNING c.token)
     SELECT token FROM opened UNION ALL SELECT token FROM closed
     UNION ALL SELECT token FROM renewed UNION ALL SELECT token FROM registered
     UNION ALL SELECT token FROM counted"
);

/// One batch's columns for [`CHANGE_BATCH`], kind by kind, in its parameters' order.
#[derive(Default)]
struct ChangeColumns {
    open_token: Vec<String>,
    open_log: Vec<String>,
    open_created_at: Vec<i64>,
    open_expires_at: Vec<i64>,
    close_token: Vec<String>,
    close_at: Vec<i64>,
    renew_token: Vec<String>,
    renew_expires_at: Vec<i64>,
    renew_now: Vec<i64>,
    register_token: Vec<String>,
    register_uri: Vec<String>,
    register_payload: Vec<Vec<u8>>,
    register_content_type: Vec<Option<String>>,
    register_at: Vec<i64>,
    count_token: Vec<String>,
    count_day: Vec<i64>,
    count_limit: Vec<i64>,
}

impl ChangeColumns {
    fn of(batch: &[ChannelWrite]) -> Self {
        let mut c = ChangeColumns::default();
        for write in batch {
            match write {
                ChannelWrite::Open {
                    token,
                    log,
                    created_at,
                    expires_at,
                } => {
                    c.open_token.push(token.clone());
                    c.open_log.push(log.clone());
                    c.open_created_at.push(*created_at);
                    c.open_expires_at.push(*expires_at);
                }
                ChannelWrite::Close { token, at } => {
                    c.close_token.push(token.clone());
                    c.close_at.push(*at);
                }
                ChannelWrite::Renew {
                    token,
                    expires_at,
                    now,
                } => {
                    c.renew_token.push(token.clone());
                    c.renew_expires_at.push(*expires_at);
                    c.renew_now.push(*now);
                }
                ChannelWrite::Register {
                    token,
                    registration,
                } => {
                    c.register_token.push(token.clone());
                    c.register_uri.push(registration.uri.clone());
                    c.register_payload.push(registration.payload.clone());
                    c.register_content_type
                        .push(registration.content_type.clone());
                    c.register_at.push(millis(registration.registered_at));
                }
                ChannelWrite::CountDay { token, day, limit } => {
                    c.count_token.push(token.clone());
                    c.count_day.push(*day);
                    c.count_limit.push(*limit);
                }
            }
        }
        c
    }
}

/// Writes batches of channel changes (group commit; see [`super::super::group_commit`]).
pub(super) struct PgChannelWrites(pub PgBatches);

#[async_trait]
impl Commit for PgChannelWrites {
    type Write = ChannelWrite;
    type Answer = bool;

    fn row(write: &ChannelWrite) -> Option<&str> {
        Some(write.token())
    }

    async fn commit(&self, batch: &[ChannelWrite]) -> Result<Vec<bool>, StoreError> {
        let c = ChangeColumns::of(batch);
        let rows = sqlx::query(CHANGE_BATCH)
            .bind(c.open_token)
            .bind(c.open_log)
            .bind(c.open_created_at)
            .bind(c.open_expires_at)
            .bind(c.close_token)
            .bind(c.close_at)
            .bind(c.renew_token)
            .bind(c.renew_expires_at)
            .bind(c.renew_now)
            .bind(c.register_token)
            .bind(c.register_uri)
            .bind(c.register_payload)
            .bind(c.register_content_type)
            .bind(c.register_at)
            .bind(c.count_token)
            .bind(c.count_day)
            .bind(c.count_limit)
            .fetch_all(&self.0.pool)
            .await?;
        changed(batch.iter().map(ChannelWrite::token), &rows)
    }
}

/// Claims due firings on the database's clock: `$1` limit, `$2` the claim in milliseconds.
const DUE_FIRINGS: &str = concat!(
    "UPDATE channels SET cb_next_at = ",
    db_now!(),
    " + $2
     WHERE token IN (
         SELECT token FROM channels WHERE cb_state = 'firing' AND cb_next_at <= ",
    db_now!(),
    " AND closed_at IS NULL AND expires_at > ",
    db_now!(),
    "
         ORDER BY cb_next_at LIMIT $1
         FOR UPDATE SKIP LOCKED)
     RETURNING token, cb_uri, cb_payload, cb_content_type, cb_registered_at, cb_attempts,
               cb_failing_since"
);

impl PostgresStore {
    /// The database's clock.
    async fn database_now(&self) -> Result<Timestamp, StoreError> {
        let now: i64 = sqlx::query_scalar(NOW).fetch_one(&self.pool).await?;
        timestamp(now)
    }
}

#[async_trait]
impl Channels for PostgresStore {
    async fn open_channel(&self, channel: &Channel) -> Result<(), StoreError> {
        self.channels.change(ChannelWrite::opening(channel)).await?;
        Ok(())
    }

    async fn channel(
        &self,
        token: &ChannelToken,
        _now: Timestamp,
    ) -> Result<Option<Channel>, StoreError> {
        let row = sqlx::query(CHANNEL)
            .bind(token.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_channel).transpose()
    }

    async fn see_channel(
        &self,
        token: &ChannelToken,
        _now: Timestamp,
        read: Option<u64>,
        sent: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.channels
            .see(Sighting {
                token: token.as_str().to_owned(),
                // Unused: a visit is dated on the database's clock.
                now: 0,
                read: read.map(seq_column),
                sent: sent.map(seq_column),
            })
            .await
    }

    async fn close_channel(&self, token: &ChannelToken, at: Timestamp) -> Result<bool, StoreError> {
        let token = token.as_str().to_owned();
        let at = millis(at);
        self.channels
            .change(ChannelWrite::Close { token, at })
            .await
    }

    async fn renew_channel(
        &self,
        token: &ChannelToken,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.channels
            .change(ChannelWrite::Renew {
                token: token.as_str().to_owned(),
                expires_at: millis(expires_at),
                now: millis(now),
            })
            .await
    }

    async fn count_unauthenticated(
        &self,
        token: &ChannelToken,
        day: i64,
        limit: u64,
    ) -> Result<bool, StoreError> {
        self.channels
            .change(ChannelWrite::counting(token, day, limit))
            .await
    }

    async fn register_callback(
        &self,
        token: &ChannelToken,
        registration: &CallbackRegistration,
        _now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.channels
            .change(ChannelWrite::Register {
                token: token.as_str().to_owned(),
                registration: registration.clone(),
            })
            .await
    }

    async fn start_firings(
        &self,
        inactive_after: std::time::Duration,
        _now: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let now = self.database_now().await?;
        let result = sqlx::query(START_FIRINGS.postgres())
            .bind(millis(before(now, inactive_after)))
            .bind(millis(now))
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn due_firings(
        &self,
        _now: Timestamp,
        limit: u32,
        claim_for: std::time::Duration,
    ) -> Result<Vec<Firing>, StoreError> {
        let rows = sqlx::query(DUE_FIRINGS)
            .bind(i64::from(limit))
            .bind(duration_millis(claim_for))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_firing).collect()
    }

    async fn record_firing(
        &self,
        token: &ChannelToken,
        registered_at: Timestamp,
        outcome: &FiringOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let query = match outcome {
            FiringOutcome::Fired => sqlx::query(FIRED.postgres())
                .bind(token.as_str())
                .bind(millis(registered_at))
                .bind(millis(now)),
            FiringOutcome::Retry {
                attempts,
                next_at,
                failing_since,
                error,
            } => sqlx::query(FIRING_RETRY.postgres())
                .bind(token.as_str())
                .bind(millis(registered_at))
                .bind(i64::from(*attempts))
                .bind(millis(*next_at))
                .bind(millis(*failing_since))
                .bind(error.clone()),
            FiringOutcome::Failed { attempts, error } => sqlx::query(FIRING_FAILED.postgres())
                .bind(token.as_str())
                .bind(millis(registered_at))
                .bind(i64::from(*attempts))
                .bind(error.clone()),
        };
        query.execute(&self.pool).await?;
        Ok(())
    }

    async fn channel_counts(
        &self,
        connected_for: std::time::Duration,
        inactive_after: std::time::Duration,
        _now: Timestamp,
    ) -> Result<[u64; 4], StoreError> {
        let now = self.database_now().await?;
        let row = sqlx::query(COUNTS.postgres())
            .bind(millis(before(now, connected_for)))
            .bind(millis(before(now, inactive_after)))
            .bind(millis(now))
            .fetch_one(&self.pool)
            .await?;
        decode_counts(&row)
    }

    async fn forget_channels(
        &self,
        ended_before: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ended: Vec<(String, String)> = sqlx::query_as(ENDED.postgres())
            .bind(millis(ended_before))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        for (token, log) in &ended {
            for (statement, key) in [
                (FORGET_EVENTS.postgres(), log),
                (FORGET_HEAD.postgres(), log),
                (FORGET_CHANNEL.postgres(), token),
            ] {
                sqlx::query(statement).bind(key).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(ended.len() as u64)
    }
}
