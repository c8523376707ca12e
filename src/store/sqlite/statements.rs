//! The embedded store's own statements (where SQLite differs from PostgreSQL) and its append.

use jiff::Timestamp;

use super::super::codec::{millis, progress_columns, seq_column, subscription_columns};
use super::super::{StoreError, number_events, sql};
use crate::domain::event::{Event, NewEvent};
use crate::domain::subscription::SourceName;

/// Appends `events` to `source`'s log inside `tx`.
pub(super) async fn append_in(
    tx: &mut sqlx::SqliteConnection,
    source: &SourceName,
    events: &[NewEvent],
    now: Timestamp,
) -> Result<Vec<Event>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let last: i64 = sqlx::query_scalar(sql::ADVANCE_HEAD.sqlite())
        .bind(source.as_str())
        .bind(count)
        .fetch_one(&mut *tx)
        .await?;
    let appended = number_events(source, events, last - count + 1, now);
    for event in &appended {
        sqlx::query(
            "INSERT INTO events (source, seq, id, action, payload, published_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(source.as_str())
        .bind(seq_column(event.seq))
        .bind(event.id.to_string())
        .bind(&event.action)
        .bind(&event.payload)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
    }
    Ok(appended)
}

/// The embedded store's clock for node leases (it has one node; the lease only guards against
/// a second process, which the lock file already refuses).
pub(super) fn wall_clock_millis() -> i64 {
    millis(Timestamp::now())
}

/// Claims orphans: no owner, or an owner whose lease has lapsed.
pub(super) const CLAIM_ORPHANS: &str = concat!(
    "UPDATE subscriptions SET owner = ?1
             WHERE id IN (
                 SELECT id FROM subscriptions WHERE status = 'active' AND owner IS NULL
                 UNION ALL
                 SELECT s.id FROM nodes n CROSS JOIN subscriptions s
                     ON s.owner = n.id AND s.status = 'active'
                 WHERE n.lease_until < ?2 AND n.id <> ?1
                 LIMIT +?4)
             AND (expires_at IS NULL OR expires_at > ?3)
             RETURNING ",
    subscription_columns!(),
    ", ",
    progress_columns!()
);

/// A page of owned subscriptions as one JSON value, in rowid order (the order they were
/// stored): the owner index holds `(owner, rowid)`, so a page is one range of it and its rows
/// are read from the table in the order they lie there, not one random page read per row.
pub(super) const OWNED_PAGE: &str = concat!(
    "SELECT json_group_array(json_array(",
    subscription_columns!(),
    ", ",
    progress_columns!(),
    ")) AS page, MAX(rid) AS last_rowid, COUNT(*) AS n FROM (
                 SELECT rowid AS rid, * FROM subscriptions
                 WHERE owner = ? AND status = 'active'
                   AND (expires_at IS NULL OR expires_at > ?) AND rowid > ?
                 ORDER BY rowid LIMIT +?)"
);

/// Saves a batch of progress given as a JSON array; returns the ids saved.
pub(super) const SAVE_PROGRESS: &str =
    "UPDATE subscriptions SET cursor = u.cursor, attempts = u.attempts,
                 next_attempt_at = u.next_at, failing_since = u.failing, last_error = u.error
             FROM (SELECT json_extract(value, '$[0]') AS uid,
                          json_extract(value, '$[1]') AS cursor,
                          json_extract(value, '$[2]') AS attempts,
                          json_extract(value, '$[3]') AS next_at,
                          json_extract(value, '$[4]') AS failing,
                          json_extract(value, '$[5]') AS error
                   FROM jsonb_each(?)) AS u
             WHERE subscriptions.id = u.uid AND subscriptions.status = 'active'
               AND +subscriptions.owner = ?";

/// Of the ids of a JSON array, those that are not active subscriptions owned by node `?2`:
/// asked only when [`SAVE_PROGRESS`] changed fewer rows than it was given.
pub(super) const NOT_OWNED: &str = "SELECT value FROM json_each(?1)
     WHERE NOT EXISTS (SELECT 1 FROM subscriptions s
                       WHERE s.id = value AND s.status = 'active' AND +s.owner = ?2)";
