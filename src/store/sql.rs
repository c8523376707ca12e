//! The SQL both stores run, where their dialects agree. Statements are written once with
//! PostgreSQL's numbered parameters (`$1`); SQLite reads the same text with its own numbered
//! parameters (`?1`), converted once, on first use. Statements that differ (locking, bulk
//! inserts, the lease clock) stay in each backend.

use std::sync::OnceLock;

use super::codec::{ended_columns, progress_columns, subscription_columns};

/// One statement in both dialects.
pub struct Sql {
    postgres: &'static str,
    sqlite: OnceLock<String>,
}

impl Sql {
    pub const fn new(postgres: &'static str) -> Sql {
        Sql {
            postgres,
            sqlite: OnceLock::new(),
        }
    }

    /// The statement for PostgreSQL.
    pub fn postgres(&self) -> &'static str {
        self.postgres
    }

    /// The statement for SQLite: each `$N` becomes `?N`.
    pub fn sqlite(&'static self) -> &'static str {
        self.sqlite.get_or_init(|| to_sqlite(self.postgres))
    }
}

/// `$N` → `?N`, and `LIMIT $N` → `LIMIT +?N`. No statement here has a `$` anywhere else (no
/// dollar quoting, no JSON paths).
///
/// SQLite (3.51) lets a bound LIMIT's value steer the plan of a statement that orders its rows,
/// and so prepares such a statement again at every run, as if its schema had changed: 58k
/// instructions a run for the log's read of events, 143k for an agent's receive, 675k for an
/// invoker's claim (`callgrind`). The unary plus leaves the value as it is and keeps it from the
/// planner. The SQLite store's statements of its own write `LIMIT +?N` as well.
fn to_sqlite(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 4);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            if out.ends_with("LIMIT ") {
                out.push('+');
            }
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// The subscription `$1` if active and unexpired at `$2`.
pub static ACTIVE_SUBSCRIPTION: Sql = Sql::new(concat!(
    "SELECT ",
    subscription_columns!(),
    " FROM subscriptions
     WHERE id = $1 AND status = 'active' AND (expires_at IS NULL OR expires_at > $2)"
));

/// Points active reader `$5` (unexpired at `$6`) at endpoint `$1` in SOAP `$2` and
/// WS-Addressing `$3`, owned by node `$4` from now on.
pub static REDIRECT: Sql = Sql::new(concat!(
    "UPDATE subscriptions SET notify_to = $1, soap = $2, addressing = $3, owner = $4,
         attempts = 0, next_attempt_at = NULL, failing_since = NULL, last_error = NULL
     WHERE id = $5 AND status = 'active' AND (expires_at IS NULL OR expires_at > $6)
     RETURNING ",
    subscription_columns!(),
    ", ",
    progress_columns!()
));

/// Ends up to `$2` subscriptions expired at `$1`, found by their sweep marks (each at or before
/// its expiry: see the migration `sweep_marks`), earliest mark first; `$lock` is the backend's
/// row locking clause for the inner SELECT.
macro_rules! end_expired {
    ($lock:literal) => {
        concat!(
            "UPDATE subscriptions SET status = 'ended', end_reason = 'expired', ended_at = $1,
                 end_notice = CASE WHEN end_to IS NULL THEN NULL ELSE 'pending' END,
                 end_next_at = $1
             WHERE id IN (
                 SELECT id FROM subscriptions
                 WHERE status = 'active' AND sweep_at IS NOT NULL AND sweep_at <= $1
                   AND expires_at <= $1
                 ORDER BY sweep_at LIMIT $2 ",
            $lock,
            ")
             RETURNING ",
            ended_columns!()
        )
    };
}

/// [`end_expired!`] for SQLite (one writer: no locking clause).
pub static END_EXPIRED_SQLITE: Sql = Sql::new(end_expired!(""));
/// [`end_expired!`] for PostgreSQL: each row goes to one node.
pub static END_EXPIRED_POSTGRES: Sql = Sql::new(end_expired!("FOR UPDATE SKIP LOCKED"));

/// Moves the passed sweep mark (at or before `$1`) of up to `$2` active subscriptions renewed
/// past it up to their expiry, or clears it for one that no longer expires, earliest mark first:
/// what a renewal that moved the expiry later left behind. Run before [`end_expired!`], so its
/// walk of the marks meets only what has expired. `$lock` as there.
macro_rules! catch_up_sweep_marks {
    ($lock:literal) => {
        concat!(
            "UPDATE subscriptions SET sweep_at = expires_at
             WHERE id IN (
                 SELECT id FROM subscriptions
                 WHERE status = 'active' AND sweep_at IS NOT NULL AND sweep_at <= $1
                   AND (expires_at IS NULL OR expires_at > $1)
                 ORDER BY sweep_at LIMIT $2 ",
            $lock,
            ")"
        )
    };
}

/// The sweep mark a renewal to the expiry `$expiry` leaves on a row whose mark is `$mark`: the
/// mark where it was when it is at or before the new expiry (so no indexed column changes),
/// otherwise the new expiry (none for none).
macro_rules! renewed_sweep_mark {
    ($mark:literal, $expiry:literal) => {
        concat!(
            "CASE WHEN ",
            $mark,
            " <= ",
            $expiry,
            " THEN ",
            $mark,
            " ELSE ",
            $expiry,
            " END"
        )
    };
}
pub(crate) use renewed_sweep_mark;

/// Announces on channel `$channel` the end of each subscription whose stored id (without its
/// `uuid:`) is in column `id` of `$ended`: one notification a part of up to 150 ids, as
/// `e:uuid:…,uuid:…` (6.2 KB at most, under PostgreSQL's 8,000 bytes), not one an end. Each
/// notification is a message to every node's listener, and herald's own. One row, a count of
/// the notifications sent, evaluated once.
macro_rules! announce_ends {
    ($channel:literal, $ended:literal) => {
        concat!(
            "(SELECT count(pg_notify(",
            $channel,
            ", announced)) FROM (
                 SELECT 'e:' || string_agg('uuid:' || id, ',') AS announced
                 FROM (SELECT id, (row_number() OVER ()) / 150 AS part FROM ",
            $ended,
            ") AS n
                 GROUP BY part) AS parts)"
        )
    };
}
pub(crate) use announce_ends;

/// [`catch_up_sweep_marks!`] for SQLite.
pub static CATCH_UP_SWEEP_MARKS_SQLITE: Sql = Sql::new(catch_up_sweep_marks!(""));
/// [`catch_up_sweep_marks!`] for PostgreSQL.
pub static CATCH_UP_SWEEP_MARKS_POSTGRES: Sql =
    Sql::new(catch_up_sweep_marks!("FOR UPDATE SKIP LOCKED"));

/// Moves source `$1`'s head on by `$2` and returns the new head.
pub static ADVANCE_HEAD: Sql = Sql::new(
    "INSERT INTO source_heads (source, last_seq) VALUES ($1, $2)
     ON CONFLICT (source) DO UPDATE SET last_seq = source_heads.last_seq + $2
     RETURNING last_seq",
);

/// Up to `$3` events of source `$1` after sequence number `$2`, in order.
pub static EVENTS_AFTER: Sql = Sql::new(
    "SELECT source, seq, id, action, payload, published_at FROM events
     WHERE source = $1 AND seq > $2 ORDER BY seq LIMIT $3",
);

/// Log `$1`'s head.
pub static OLDEST_RETAINED: Sql = Sql::new("SELECT MIN(seq) FROM events WHERE source = $1");

/// The last sequence number of log `$1`.
pub static LOG_HEAD: Sql = Sql::new("SELECT last_seq FROM source_heads WHERE source = $1");

/// Forgets log `$1`'s head once it holds no events and has no active reader (an ended
/// context instance's log, compacted).
pub static FORGET_LOG: Sql = Sql::new(
    "DELETE FROM source_heads WHERE source = $1
         AND NOT EXISTS (SELECT 1 FROM events WHERE source = $1)
         AND NOT EXISTS (SELECT 1 FROM subscriptions WHERE source = $1 AND status = 'active')",
);

/// Every source's head.
pub static SOURCE_HEADS: Sql = Sql::new("SELECT source, last_seq FROM source_heads");

/// A write that changes nothing, to learn whether the store can be written.
pub static CHECK_WRITABLE: Sql =
    Sql::new("UPDATE nodes SET lease_until = lease_until WHERE id = $1");

/// Ends node `$1`'s lease now.
pub static RELEASE_NODE: Sql = Sql::new("UPDATE nodes SET lease_until = 0 WHERE id = $1");

/// Everything about subscription `$1`.
pub static SUBSCRIPTION_RECORD: Sql = Sql::new(concat!(
    "SELECT ",
    subscription_columns!(),
    ", ",
    progress_columns!(),
    ", status, end_reason, ended_at, end_notice, owner FROM subscriptions WHERE id = $1"
));

/// Takes up to `$3` SubscriptionEnd notices due at `$1`, keeping others off them until `$2`;
/// `$lock` is the backend's row locking clause.
macro_rules! due_end_notices {
    ($lock:literal) => {
        concat!(
            "UPDATE subscriptions SET end_next_at = $2
             WHERE id IN (
                 SELECT id FROM subscriptions
                 WHERE end_notice = 'pending' AND end_next_at <= $1
                 ORDER BY end_next_at LIMIT $3 ",
            $lock,
            ")
             RETURNING ",
            subscription_columns!(),
            ", end_reason, end_attempts"
        )
    };
}

/// [`due_end_notices!`] for SQLite.
pub static DUE_END_NOTICES_SQLITE: Sql = Sql::new(due_end_notices!(""));
/// [`due_end_notices!`] for PostgreSQL: each notice goes to one node.
pub static DUE_END_NOTICES_POSTGRES: Sql = Sql::new(due_end_notices!("FOR UPDATE SKIP LOCKED"));

/// Records the outcome `$1` of subscription `$5`'s pending SubscriptionEnd.
pub static RECORD_END_NOTICE: Sql = Sql::new(
    "UPDATE subscriptions SET end_notice = $1, end_attempts = $2, end_next_at = $3,
         end_error = $4
     WHERE id = $5 AND end_notice = 'pending'",
);

/// Deletes source `$1`'s events published before `$2` that every cursor has passed.
pub static COMPACT_EVENTS: Sql = Sql::new(
    "DELETE FROM events WHERE source = $1 AND published_at < $2
         AND seq <= COALESCE(
             (SELECT MIN(cursor) FROM subscriptions WHERE source = $1 AND status = 'active'),
             (SELECT last_seq FROM source_heads WHERE source = $1),
             0)
         AND seq < COALESCE(
             (SELECT MIN(seq) FROM agent_queue WHERE agent = $1),
             9223372036854775807)
         AND seq <= COALESCE(
             (SELECT cursor FROM channels
              WHERE log = $1 AND closed_at IS NULL AND expires_at > $2),
             9223372036854775807)",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_are_converted_for_sqlite() {
        assert_eq!(
            to_sqlite("WHERE a = $1 AND b > $12 AND c = '$x'"),
            "WHERE a = ?1 AND b > ?12 AND c = '$x'"
        );
        assert!(REDIRECT.sqlite().contains("owner = ?4"));
        assert!(!END_EXPIRED_SQLITE.sqlite().contains('$'));
        assert!(END_EXPIRED_POSTGRES.postgres().contains("SKIP LOCKED"));
    }
}
