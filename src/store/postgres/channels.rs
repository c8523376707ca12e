//! Push channels in PostgreSQL.

use async_trait::async_trait;
use jiff::Timestamp;

use super::super::StoreError;
use super::super::channels::{
    CLOSE, COUNT_DAY, COUNTS, Channels, ENDED, FIRED, FIRING_FAILED, FIRING_RETRY, FORGET_CHANNEL,
    FORGET_EVENTS, FORGET_HEAD, REGISTER, RENEW, START_FIRINGS, Sighting, before, channel_query,
    decode_channel, decode_counts, decode_firing, seen,
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

/// A new channel, its reader last there now on the database's clock.
const OPEN: &str = concat!(
    "INSERT INTO channels (token, log, created_at, expires_at, last_seen)
     VALUES ($1, $2, $3, $4, ",
    db_now!(),
    ")"
);

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

    fn row(write: &Sighting) -> &str {
        &write.token
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
        seen(batch, &rows)
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
        sqlx::query(OPEN)
            .bind(channel.token.as_str())
            .bind(channel.token.log().as_str())
            .bind(millis(channel.created_at))
            .bind(millis(channel.expires_at))
            .execute(&self.pool)
            .await?;
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
        self.sightings
            .submit(Sighting {
                token: token.as_str().to_owned(),
                // Unused: a visit is dated on the database's clock.
                now: 0,
                read: read.map(seq_column),
                sent: sent.map(seq_column),
            })
            .await
    }

    async fn close_channel(&self, token: &ChannelToken, at: Timestamp) -> Result<bool, StoreError> {
        let result = sqlx::query(CLOSE.postgres())
            .bind(token.as_str())
            .bind(millis(at))
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn renew_channel(
        &self,
        token: &ChannelToken,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(RENEW.postgres())
            .bind(token.as_str())
            .bind(millis(expires_at))
            .bind(millis(now))
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn count_unauthenticated(
        &self,
        token: &ChannelToken,
        day: i64,
        limit: u64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(COUNT_DAY.postgres())
            .bind(token.as_str())
            .bind(day)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn register_callback(
        &self,
        token: &ChannelToken,
        registration: &CallbackRegistration,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let _ = now;
        let result = sqlx::query(REGISTER.postgres())
            .bind(token.as_str())
            .bind(&registration.uri)
            .bind(&registration.payload)
            .bind(registration.content_type.as_deref())
            .bind(millis(registration.registered_at))
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
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
