//! Push channels in the embedded store.

use async_trait::async_trait;
use jiff::Timestamp;

use super::super::StoreError;
use super::super::channels::{
    CLOSE, COUNT_DAY, COUNTS, Channels, ENDED, FIRED, FIRING_FAILED, FIRING_RETRY, FORGET_CHANNEL,
    FORGET_EVENTS, FORGET_HEAD, OPEN, REGISTER, RENEW, START_FIRINGS, before, channel_query,
    decode_channel, decode_counts, decode_firing,
};
use super::super::codec::{duration_millis, millis, seq_column};
use super::SqliteStore;
use crate::domain::channel::{CallbackRegistration, Channel, ChannelToken, Firing, FiringOutcome};

/// A channel as of `?2`.
const CHANNEL: &str = channel_query!("?2");

/// A reader was there: `last_seen` and the cursor move forward only.
const SEE: &str = "UPDATE channels SET last_seen = MAX(last_seen, ?2),
         cursor = MAX(cursor, COALESCE(?3, cursor)), sent = MAX(sent, COALESCE(?4, sent))
     WHERE token = ?1 AND closed_at IS NULL";

/// Claims due firings: `?1` now, `?2` limit, `?3` claimed until.
const DUE_FIRINGS: &str = "UPDATE channels SET cb_next_at = ?3
     WHERE token IN (
         SELECT token FROM channels WHERE cb_state = 'firing' AND cb_next_at <= ?1
           AND closed_at IS NULL AND expires_at > ?1
         ORDER BY cb_next_at LIMIT ?2)
     RETURNING token, cb_uri, cb_payload, cb_content_type, cb_registered_at, cb_attempts,
               cb_failing_since";

#[async_trait]
impl Channels for SqliteStore {
    async fn open_channel(&self, channel: &Channel) -> Result<(), StoreError> {
        let _writing = self.write.lock().await;
        sqlx::query(OPEN.sqlite())
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
        let _writing = self.write.lock().await;
        let result = sqlx::query(SEE)
            .bind(token.as_str())
            .bind(millis(now))
            .bind(read.map(seq_column))
            .bind(sent.map(seq_column))
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn close_channel(&self, token: &ChannelToken, at: Timestamp) -> Result<bool, StoreError> {
        let _writing = self.write.lock().await;
        let result = sqlx::query(CLOSE.sqlite())
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
        let _writing = self.write.lock().await;
        let result = sqlx::query(RENEW.sqlite())
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
        let _writing = self.write.lock().await;
        let result = sqlx::query(COUNT_DAY.sqlite())
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
        let _writing = self.write.lock().await;
        let _ = now;
        let result = sqlx::query(REGISTER.sqlite())
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
        now: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let _writing = self.write.lock().await;
        let result = sqlx::query(START_FIRINGS.sqlite())
            .bind(millis(before(now, inactive_after)))
            .bind(millis(now))
            .bind(i64::from(limit))
            .execute(&self.pool)
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
        query.execute(&self.pool).await?;
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
