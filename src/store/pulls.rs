//! Pulled subscriptions in the store (WS-Management Pull mode): the subscriber moves its own
//! cursor by presenting a position, from whichever node it reaches.

use async_trait::async_trait;
use jiff::Timestamp;

use super::StoreError;
use super::sql::Sql;
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

/// Moves active subscription `$2`'s (unexpired at `$3`) cursor forward to `$1` when `$1` is not
/// past its log's head; returns the cursor and the head. The row lock of the UPDATE orders
/// concurrent Pulls, so the cursor never moves backwards, on any node.
pub static ADVANCE_PULLED: Sql = Sql::new(
    "UPDATE subscriptions SET cursor = CASE
         WHEN cursor < $1 AND $1 <= COALESCE(
             (SELECT h.last_seq FROM source_heads h WHERE h.source = subscriptions.source), 0)
         THEN $1 ELSE cursor END
     WHERE id = $2 AND status = 'active' AND (expires_at IS NULL OR expires_at > $3)
     RETURNING cursor, COALESCE(
         (SELECT h.last_seq FROM source_heads h WHERE h.source = subscriptions.source), 0)",
);

/// The row [`ADVANCE_PULLED`] returns.
pub fn decode_pulled(cursor: i64, head: i64) -> Result<PulledCursor, StoreError> {
    Ok(PulledCursor {
        cursor: super::codec::stored_seq("cursor", cursor)?,
        head: super::codec::stored_seq("last_seq", head)?,
    })
}
