//! Pulled subscriptions in the store (WS-Management Pull mode): the subscriber moves its own
//! cursor by presenting a position, from whichever node it reaches.

use async_trait::async_trait;
use jiff::Timestamp;

use super::StoreError;
use crate::domain::subscription::SubscriptionId;

/// Where a pulled subscription stands after a Pull presented a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PulledCursor {
    /// The stored cursor now.
    pub cursor: u64,
    /// Its log's head in the store.
    pub head: u64,
}

/// Durable cursors of pulled subscriptions. One atomic step, whichever node owns the reader.
#[async_trait]
pub trait Pulls {
    /// Moves the cursor of subscription `id`, active and unexpired at `now`, to `position`:
    /// never backwards, and never past its log's head (a position past the head moves nothing).
    /// Returns the cursor as it now stands and the head; `None` when there is no such
    /// subscription.
    async fn advance_pulled(
        &self,
        id: SubscriptionId,
        position: u64,
        now: Timestamp,
    ) -> Result<Option<PulledCursor>, StoreError>;
}

/// The cursor and head a batch of advances returns.
pub fn decode_pulled(cursor: i64, head: i64) -> Result<PulledCursor, StoreError> {
    Ok(PulledCursor {
        cursor: super::codec::stored_seq("cursor", cursor)?,
        head: super::codec::stored_seq("last_seq", head)?,
    })
}
