//! Push channels in the embedded store.

use async_trait::async_trait;
use jiff::Timestamp;

use serde_json::json;

use super::super::StoreError;
use super::super::channels::{
    CLOSE, COUNT_DAY, COUNTS, ChannelWrite, Channels, ENDED, FIRED, FIRING_FAILED, FIRING_RETRY,
    FORGET_CHANNEL, FORGET_EVENTS, FORGET_HEAD, OPEN, REGISTER, RENEW, START_FIRINGS, Sighting,
    before, changed, channel_query, decode_channel, decode_counts, decode_firing,
};
use super::super::codec::{duration_millis, millis, seq_column};
use super::super::group_commit::Commit;
use super::SqliteStore;
use super::batch_writes::SqliteBatches;
use crate::domain::channel::{CallbackRegistration, Channel, ChannelToken, Firing, FiringOutcome};

/// A channel as of `?2`.
const CHANNEL: &str = channel_query!("?2");

/// Visits to channels, a JSON array of `[token, now, read, sent]`: each open channel seen at
/// `now`, its cursor and what was sent to it moved forward (never back).
const SEE_BATCH: &str = "UPDATE channels
     SET last_seen = MAX(last_seen, json_extract(v.value, '$[1]')),
         cursor = MAX(cursor, COALESCE(json_extract(v.value, '$[2]'), cursor)),
         sent = MAX(sent, COALESCE(json_extract(v.value, '$[3]'), sent))
     FROM jsonb_each(?1) AS v
     WHERE channels.token = json_extract(v.value, '$[0]') AND closed_at IS NULL
     RETURNING channels.token AS token";

/// Writes batches of visits (group commit; see [`super::super::group_commit`]).
pub(super) struct SqliteSightings(pub SqliteBatches);

#[async_trait]
impl Commit for SqliteSightings {
    type Write = Sighting;
    type Answer = bool;

    fn row(write: &Sighting) -> Option<&str> {
        Some(&write.token)
    }

    async fn commit(&self, batch: &[Sighting]) -> Result<Vec<bool>, StoreError> {
        let rows = batch
            .iter()
            .map(|v| json!([v.token, v.now, v.read, v.sent]))
            .collect();
        let rows = self.0.run(SEE_BATCH, rows).await?;
        changed(batch.iter().map(|v| v.token.as_str()), &rows)
    }
}

/// Writes batches of channel changes (group commit): one transaction under the writer lock,
/// one statement per change, one fsync.
pub(super) struct SqliteChannelWrites(pub SqliteBatches);

#[async_trait]
impl Commit for SqliteChannelWrites {
    type Write = ChannelWrite;
    type Answer = bool;

    fn row(write: &ChannelWrite) -> Option<&str> {
        Some(write.token())
    }

    async fn commit(&self, batch: &[ChannelWrite]) -> Result<Vec<bool>, StoreError> {
        let _writing = self.0.write.lock().await;
        let mut tx = self.0.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut answers = Vec::with_capacity(batch.len());
        for write in batch {
            let query = match write {
                ChannelWrite::Open {
                    token,
                    log,
                    created_at,
                    expires_at,
                } => sqlx::query(OPEN.sqlite())
                    .bind(token)
                    .bind(log)
                    .bind(created_at)
                    .bind(expires_at),
                ChannelWrite::Close { token, at } => {
                    sqlx::query(CLOSE.sqlite()).bind(token).bind(at)
                }
                ChannelWrite::Renew {
                    token,
                    expires_at,
                    now,
                } => sqlx::query(RENEW.sqlite())
                    .bind(token)
                    .bind(expires_at)
                    .bind(now),
                ChannelWrite::Register {
                    token,
                    registration,
                } => sqlx::query(REGISTER.sqlite())
                    .bind(token)
                    .bind(&registration.uri)
                    .bind(&registration.payload)
                    .bind(registration.content_type.as_deref())
                    .bind(millis(registration.registered_at)),
                ChannelWrite::CountDay { token, day, limit } => sqlx::query(COUNT_DAY.sqlite())
                    .bind(token)
                    .bind(day)
                    .bind(limit),
            };
            answers.push(query.execute(&mut *tx).await?.rows_affected() == 1);
        }
        tx.commit().await?;
        Ok(answers)
    }
}

/// Claims due firings: `?1` now, `?2` limit, `?3` claimed until.
pub(super) const DUE_FIRINGS: &str = "UPDATE channels SET cb_next_at = ?3
     WHERE token IN (
         SELECT token FROM channels WHERE cb_state = 'firing' AND cb_next_at <= ?1
           AND closed_at IS NULL AND expires_at > ?1
         ORDER BY cb_next_at LIMIT +?2)
     RETURNING token, cb_uri, cb_payload, cb_content_type, cb_registered_at, cb_attempts,
               cb_failing_since";

#[async_trait]
impl Channels for SqliteStore {
    async fn open_channel(&self, channel: &Channel) -> Result<(), StoreError> {
        self.channels.change(ChannelWrite::opening(channel)).await?;
        Ok(())
    }

    async fn channel(
        &self,
        token: &ChannelToken,
        now: Timestamp,
    ) -> Result<Option<Channel>, StoreError> {
        let row = sqlx::query(CHANNEL)
            .bind(token.as_str())
            .bind(millis(now))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_channel).transpose()
    }

    async fn see_channel(
        &self,
        token: &ChannelToken,
        now: Timestamp,
        read: Option<u64>,
        sent: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.channels
            .see(Sighting {
                token: token.as_str().to_owned(),
                now: millis(now),
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
        now: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let _writing = self.write.lock().await;
        let result = sqlx::query(START_FIRINGS.sqlite())
            .bind(millis(before(now, inactive_after)))
            .bind(millis(now))
            .bind(i64::from(limit))
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected())
    }

    async fn due_firings(
        &self,
        now: Timestamp,
        limit: u32,
        claim_for: std::time::Duration,
    ) -> Result<Vec<Firing>, StoreError> {
        let _writing = self.write.lock().await;
        let rows = sqlx::query(DUE_FIRINGS)
            .bind(millis(now))
            .bind(i64::from(limit))
            .bind(millis(now).saturating_add(duration_millis(claim_for)))
            .fetch_all(&self.writer)
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
        let _writing = self.write.lock().await;
        let query = match outcome {
            FiringOutcome::Fired => sqlx::query(FIRED.sqlite())
                .bind(token.as_str())
                .bind(millis(registered_at))
                .bind(millis(now)),
            FiringOutcome::Retry {
                attempts,
                next_at,
                failing_since,
                error,
            } => sqlx::query(FIRING_RETRY.sqlite())
                .bind(token.as_str())
                .bind(millis(registered_at))
                .bind(i64::from(*attempts))
                .bind(millis(*next_at))
                .bind(millis(*failing_since))
                .bind(error.clone()),
            FiringOutcome::Failed { attempts, error } => sqlx::query(FIRING_FAILED.sqlite())
                .bind(token.as_str())
                .bind(millis(registered_at))
                .bind(i64::from(*attempts))
                .bind(error.clone()),
        };
        query.execute(&self.writer).await?;
        Ok(())
    }

    async fn channel_counts(
        &self,
        connected_for: std::time::Duration,
        inactive_after: std::time::Duration,
        now: Timestamp,
    ) -> Result<[u64; 4], StoreError> {
        let row = sqlx::query(COUNTS.sqlite())
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
        let _writing = self.write.lock().await;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let ended: Vec<(String, String)> = sqlx::query_as(ENDED.sqlite())
            .bind(millis(ended_before))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        for (token, log) in &ended {
            for (statement, key) in [
                (FORGET_EVENTS.sqlite(), log),
                (FORGET_HEAD.sqlite(), log),
                (FORGET_CHANNEL.sqlite(), token),
            ] {
                sqlx::query(statement).bind(key).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(ended.len() as u64)
    }
}
