//! Invocations and agents' queues in the store: the part of [`Store`](super::Store) for
//! invocation callbacks (seed 002). An agent's messages are events in its log; pull listeners
//! lease the queue entries that point at them.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::codec::{Columns, corrupt, optional_timestamp, stored_count, stored_seq, timestamp};
use super::sql::Sql;
use super::{NodeId, StoreError};
use crate::domain::event::Event;
use crate::domain::invocation::{
    Completion, Invocation, InvocationId, InvocationRecord, InvocationState, Leased, Parameters,
    QueueDepth,
};
use crate::domain::subscription::SourceName;

/// What became of a completion.
#[derive(Debug, Clone, PartialEq)]
pub enum Completed {
    /// Recorded; the message appended to its agent, if there was one.
    Recorded(Option<Event>),
    /// The invocation is not running on this node (another node took it over): nothing was
    /// written.
    NotOwned,
}

/// A write of invocations or agents waiting for the next group commit: raises, completions
/// (with their agent messages) and acks or nacks that arrive together share one transaction and
/// one commit, applied one after another.
pub(super) enum QueueWrite {
    Raise {
        invocation: Invocation,
        window_start: Timestamp,
    },
    Complete {
        id: InvocationId,
        node: String,
        completion: Completion,
        now: Timestamp,
    },
    Settle {
        agent: SourceName,
        receipt: String,
        back_after: Option<Duration>,
    },
}

/// What a [`QueueWrite`] answers, of its own kind.
pub(super) enum QueueAnswer {
    Raised((InvocationId, bool)),
    Completed(Completed),
    Settled(bool),
}

impl QueueAnswer {
    pub fn raised(self) -> Result<(InvocationId, bool), StoreError> {
        match self {
            QueueAnswer::Raised(raised) => Ok(raised),
            _ => Err(mismatched()),
        }
    }

    pub fn completed(self) -> Result<Completed, StoreError> {
        match self {
            QueueAnswer::Completed(completed) => Ok(completed),
            _ => Err(mismatched()),
        }
    }

    pub fn settled(self) -> Result<bool, StoreError> {
        match self {
            QueueAnswer::Settled(settled) => Ok(settled),
            _ => Err(mismatched()),
        }
    }
}

fn mismatched() -> StoreError {
    StoreError::Corrupt("a queue write was answered for another kind".into())
}

/// Durable invocations and agents' queues. Every method is one atomic step.
#[async_trait]
pub trait Queues {
    /// Stores a raised invocation, pending and due at once, unless an invocation with the same
    /// invoker and key was raised after `window_start`: then nothing is stored and that one is
    /// named. Returns the invocation's id and whether it is new. Returns once durable.
    async fn raise_invocation(
        &self,
        invocation: &Invocation,
        window_start: Timestamp,
    ) -> Result<(InvocationId, bool), StoreError>;

    /// Makes the invocations `node` was running when it stopped pending again, due at `now`,
    /// each counted as resumed (its call may have reached the service). For a node's start.
    async fn recover_invocations(&self, node: &NodeId, now: Timestamp) -> Result<u64, StoreError>;

    /// Makes `node` run up to `limit` of `invoker`'s invocations: pending ones due at `now`, and
    /// running ones whose node's lease has lapsed (counted as resumed); none whose key has
    /// another invocation running. Returns them, earliest due first.
    async fn claim_invocations(
        &self,
        node: &NodeId,
        invoker: &SourceName,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<InvocationRecord>, StoreError>;

    /// A failed call that is retried: the invocation, running on `node`, is pending again with
    /// its attempts, the due time of the next call and the error. False when it is not
    /// running on `node`.
    async fn retry_invocation_later(
        &self,
        id: InvocationId,
        node: &NodeId,
        record: &InvocationRecord,
    ) -> Result<bool, StoreError>;

    /// Finishes an invocation running on `node`: its state, response and error, and its
    /// message appended to its agent (with a queue entry when the agent has pull listeners),
    /// in one transaction.
    async fn complete_invocation(
        &self,
        id: InvocationId,
        node: &NodeId,
        completion: &Completion,
        now: Timestamp,
    ) -> Result<Completed, StoreError>;

    /// Makes a failed invocation pending again, due at `now`, its attempts cleared: the manual
    /// retry. False when it has not failed.
    async fn reopen_invocation(&self, id: InvocationId, now: Timestamp)
    -> Result<bool, StoreError>;

    /// Everything stored about an invocation.
    async fn invocation(&self, id: InvocationId) -> Result<Option<InvocationRecord>, StoreError>;

    /// Leases up to `limit` of `agent`'s messages visible now (with `correlation_id`, when
    /// given), oldest first, for `visibility`, under a fresh receipt. Two listeners never hold
    /// one message at once. Lease times are measured on the store's lease clock (the
    /// database's, on PostgreSQL), as node leases are, so nodes' clocks need not agree.
    async fn receive(
        &self,
        agent: &SourceName,
        limit: u32,
        correlation_id: Option<&str>,
        visibility: Duration,
    ) -> Result<Vec<Leased>, StoreError>;

    /// Settles a leased message under its receipt: `None` acknowledges it (it is gone from
    /// the queue), `Some(delay)` puts it back, visible after `delay`. False when the receipt
    /// does not hold the message (settled already, or leased again to another listener).
    async fn settle(
        &self,
        agent: &SourceName,
        receipt: &str,
        back_after: Option<Duration>,
    ) -> Result<bool, StoreError>;

    /// Unacknowledged and leased messages per agent with a queue.
    async fn queue_depths(&self) -> Result<Vec<(SourceName, QueueDepth)>, StoreError>;
}

/// The columns of an invocation row, in the order [`decode_invocation`] reads them.
macro_rules! invocation_columns {
    () => {
        "id, invoker, event_key, payload, parameters, raised_at, state, attempts, resumed, \
         next_at, failing_since, last_error, response, agent, agent_seq, finished_at, owner"
    };
}
pub(crate) use invocation_columns;

/// Inserts a pending invocation: `$1`–`$6` are its id, invoker, key, payload, parameters and
/// raise time (also its due time).
pub static INSERT_INVOCATION: Sql = Sql::new(
    "INSERT INTO invocations (id, invoker, event_key, payload, parameters, raised_at, state,
                              next_at)
     VALUES ($1, $2, $3, $4, $5, $6, 'pending', $6)",
);

/// Points `(invoker, key)` at a new invocation unless the one it names was raised at or after
/// `$5`; returns the new id when it did.
pub static CLAIM_KEY: Sql = Sql::new(
    "INSERT INTO invocation_keys (invoker, event_key, invocation_id, raised_at)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (invoker, event_key) DO UPDATE
         SET invocation_id = excluded.invocation_id, raised_at = excluded.raised_at
         WHERE invocation_keys.raised_at < $5
     RETURNING invocation_id",
);

/// The invocation `(invoker, key)` names.
pub static KEY_OWNER: Sql =
    Sql::new("SELECT invocation_id FROM invocation_keys WHERE invoker = $1 AND event_key = $2");

/// Node `$1`'s running invocations become pending, due at `$2`, counted as resumed.
pub static RECOVER: Sql = Sql::new(
    "UPDATE invocations SET state = 'pending', resumed = resumed + 1, next_at = $2
     WHERE state = 'running' AND owner = $1",
);

/// A failed call to be retried: pending again, due at `$4`.
pub static RETRY_LATER: Sql = Sql::new(
    "UPDATE invocations SET state = 'pending', attempts = $3, next_at = $4, failing_since = $5,
                            last_error = $6
     WHERE id = $1 AND owner = $2 AND state = 'running'",
);

/// Finishes an invocation running on `$2`.
pub static FINISH: Sql = Sql::new(
    "UPDATE invocations SET state = $3, response = $4, last_error = COALESCE($5, last_error),
                            agent = $6, agent_seq = $7, finished_at = $8, next_at = NULL
     WHERE id = $1 AND owner = $2 AND state = 'running'",
);

/// A queue entry for a message just appended to an agent, visible at once.
pub static ENQUEUE: Sql = Sql::new(
    "INSERT INTO agent_queue (agent, seq, correlation_id, visible_at) VALUES ($1, $2, $3, 0)",
);

/// The manual retry of a failed invocation.
pub static REOPEN: Sql = Sql::new(
    "UPDATE invocations SET state = 'pending', attempts = 0, failing_since = NULL, next_at = $2,
                            finished_at = NULL, agent = NULL, agent_seq = NULL
     WHERE id = $1 AND state = 'failed'",
);

/// One invocation.
pub static INVOCATION: Sql = Sql::new(concat!(
    "SELECT ",
    invocation_columns!(),
    " FROM invocations WHERE id = $1"
));

/// Acknowledges a leased message.
pub static ACK: Sql =
    Sql::new("DELETE FROM agent_queue WHERE agent = $1 AND seq = $2 AND receipt = $3");

/// Puts a leased message back, visible from `$4` (on the lease clock; SQLite's).
pub static NACK: Sql = Sql::new(
    "UPDATE agent_queue SET visible_at = $4, receipt = NULL
     WHERE agent = $1 AND seq = $2 AND receipt = $3",
);

/// Queue entries and leases per agent at `$1` (on the lease clock).
pub static DEPTHS: Sql = Sql::new(
    "SELECT agent, COUNT(*) AS depth,
            SUM(CASE WHEN receipt IS NOT NULL AND visible_at > $1 THEN 1 ELSE 0 END) AS leased
     FROM agent_queue GROUP BY agent",
);

/// Whether a store error is a unique violation (another node set a key running first).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// A receipt names the message and its lease: `{seq}.{lease}`.
pub fn receipt(seq: u64, lease: &str) -> String {
    format!("{seq}.{lease}")
}

/// The sequence number and lease a receipt names.
pub fn parse_receipt(receipt: &str) -> Option<(i64, &str)> {
    let (seq, lease) = receipt.split_once('.')?;
    let seq: i64 = seq.parse().ok().filter(|seq| *seq > 0)?;
    (!lease.is_empty()).then_some((seq, lease))
}

/// An invocation row.
pub fn decode_invocation(row: &impl Columns) -> Result<InvocationRecord, StoreError> {
    let id_text = row.text("id")?;
    let id = InvocationId::parse(&id_text).ok_or_else(|| corrupt("id", &id_text))?;
    let invoker_text = row.text("invoker")?;
    let invoker =
        SourceName::parse(&invoker_text).ok_or_else(|| corrupt("invoker", &invoker_text))?;
    let parameters_text = row.text("parameters")?;
    let parameters: Parameters = serde_json::from_str(&parameters_text)
        .map_err(|_| corrupt("parameters", &parameters_text))?;
    let state_text = row.text("state")?;
    let state =
        InvocationState::from_name(&state_text).ok_or_else(|| corrupt("state", &state_text))?;
    let delivered_to = match (row.optional_text("agent")?, row.optional_int("agent_seq")?) {
        (Some(agent), Some(seq)) => Some((
            SourceName::parse(&agent).ok_or_else(|| corrupt("agent", &agent))?,
            stored_seq("agent_seq", seq)?,
        )),
        _ => None,
    };
    Ok(InvocationRecord {
        invocation: Invocation {
            id,
            invoker,
            key: row.text("event_key")?,
            payload: row.text("payload")?,
            parameters,
            raised_at: timestamp(row.int("raised_at")?)?,
        },
        state,
        attempts: stored_count("attempts", row.int("attempts")?)?,
        resumed: stored_count("resumed", row.int("resumed")?)?,
        next_at: optional_timestamp(row.optional_int("next_at")?)?,
        failing_since: optional_timestamp(row.optional_int("failing_since")?)?,
        last_error: row.optional_text("last_error")?,
        response: row.optional_text("response")?,
        delivered_to,
        finished_at: optional_timestamp(row.optional_int("finished_at")?)?,
        owner: row.optional_text("owner")?,
    })
}

/// A `(agent, depth, leased)` row.
pub fn decode_depth(row: &impl Columns) -> Result<(SourceName, QueueDepth), StoreError> {
    let agent = row.text("agent")?;
    Ok((
        SourceName::parse(&agent).ok_or_else(|| corrupt("agent", &agent))?,
        QueueDepth {
            depth: stored_seq("depth", row.int("depth")?)?,
            leased: stored_seq("leased", row.optional_int("leased")?.unwrap_or(0))?,
        },
    ))
}

/// The parameters as stored.
pub fn encode_parameters(parameters: &Parameters) -> String {
    serde_json::to_string(parameters).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_name_their_message() {
        assert_eq!(parse_receipt(&receipt(42, "abc")), Some((42, "abc")));
        for bad in ["", "42", "42.", ".abc", "0.abc", "-1.abc", "x.abc"] {
            assert_eq!(parse_receipt(bad), None, "{bad:?}");
        }
    }
}
