//! Appends to the logs, inside a caller's transaction, announced at its commit.

use jiff::Timestamp;

use super::super::codec::{millis, seq_column};
use super::super::{StoreError, number_events, number_events_with, sql};
use crate::domain::event::{Event, EventId, NewEvent};
use crate::domain::subscription::SourceName;

/// Appends `events` to `source`'s log inside `tx`, and announces it on NOTIFY channel
/// `channel` at commit. The head row stays locked until commit: appends to one log commit in
/// order.
pub(super) async fn append_in(
    tx: &mut sqlx::PgConnection,
    channel: &str,
    source: &SourceName,
    events: &[NewEvent],
    now: Timestamp,
) -> Result<Vec<Event>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let last: i64 = sqlx::query_scalar(sql::ADVANCE_HEAD.postgres())
        .bind(source.as_str())
        .bind(count)
        .fetch_one(&mut *tx)
        .await?;
    let appended = number_events(source, events, last - count + 1, now);
    let seqs: Vec<i64> = appended.iter().map(|e| seq_column(e.seq)).collect();
    let ids: Vec<String> = appended.iter().map(|e| e.id.to_string()).collect();
    let actions: Vec<&str> = appended.iter().map(|e| e.action.as_str()).collect();
    let payloads: Vec<&str> = appended.iter().map(|e| e.payload.as_str()).collect();
    sqlx::query(
        "INSERT INTO events (source, seq, id, action, payload, published_at)
             SELECT $1, e.seq, e.id, e.action, e.payload, $2
             FROM UNNEST($3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::TEXT[])
                 AS e(seq, id, action, payload)",
    )
    .bind(source.as_str())
    .bind(millis(now))
    .bind(seqs)
    .bind(ids)
    .bind(actions)
    .bind(payloads)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(format!("a:{source}:{last}"))
        .execute(&mut *tx)
        .await?;
    Ok(appended)
}

/// Appends the events of arrays `$4` (ids), `$5` (actions) and `$6` (payloads) to log `$1`,
/// numbered on from its head, which moves on by `$2`; `$3` is when they were published. The
/// append is announced on NOTIFY channel `$7` at commit. Returns the new head.
const APPEND: &str = "WITH head AS (
         INSERT INTO source_heads (source, last_seq) VALUES ($1, $2)
         ON CONFLICT (source) DO UPDATE SET last_seq = source_heads.last_seq + $2
         RETURNING last_seq),
     appended AS (
         INSERT INTO events (source, seq, id, action, payload, published_at)
         SELECT $1, head.last_seq - $2 + e.n, e.id, e.action, e.payload, $3
         FROM head, UNNEST($4::TEXT[], $5::TEXT[], $6::TEXT[])
             WITH ORDINALITY AS e(id, action, payload, n))
     SELECT last_seq, pg_notify($7, 'a:' || $1 || ':' || last_seq)::TEXT AS announced
     FROM head";

/// Appends `events` to `source`'s log and announces it on NOTIFY channel `channel`, in one
/// statement that is its own transaction: one round trip, where a transaction opened statement
/// by statement takes five (BEGIN, the head, the events, the NOTIFY, COMMIT).
pub(super) async fn append(
    pool: &sqlx::PgPool,
    channel: &str,
    source: &SourceName,
    events: &[NewEvent],
    now: Timestamp,
) -> Result<Vec<Event>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let ids: Vec<EventId> = events.iter().map(|_| EventId::new()).collect();
    let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    let payloads: Vec<&str> = events.iter().map(|e| e.payload.as_str()).collect();
    let last: i64 = sqlx::query_scalar(APPEND)
        .bind(source.as_str())
        .bind(count)
        .bind(millis(now))
        .bind(texts)
        .bind(actions)
        .bind(payloads)
        .bind(channel)
        .fetch_one(pool)
        .await?;
    let first = last - count + 1;
    Ok(number_events_with(source, events, ids, first, now))
}
