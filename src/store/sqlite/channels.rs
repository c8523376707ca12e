//! Push channels in the embedded store.

use async_trait::async_trait;
use jiff::Timestamp;

use super::super::StoreError;
use super::super::channels::{CHANNEL, CLOSE, COUNT_DAY, Channels, OPEN, RENEW, decode_channel};
use super::super::codec::{millis, seq_column};
use super::SqliteStore;
use crate::domain::channel::{Channel, ChannelToken};

/// A reader was there: `last_seen` and the cursor move forward only.
const SEE: &str = "UPDATE channels SET last_seen = MAX(last_seen, ?2),
         cursor = MAX(cursor, COALESCE(?3, cursor))
     WHERE token = ?1 AND closed_at IS NULL";

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

    async fn channel(&self, token: &ChannelToken) -> Result<Option<Channel>, StoreError> {
        let row = sqlx::query(CHANNEL.sqlite())
            .bind(token.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_channel).transpose()
    }

    async fn see_channel(
        &self,
        token: &ChannelToken,
        at: Timestamp,
        cursor: Option<u64>,
    ) -> Result<bool, StoreError> {
        let _writing = self.write.lock().await;
        let result = sqlx::query(SEE)
            .bind(token.as_str())
            .bind(millis(at))
            .bind(cursor.map(seq_column))
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
}
