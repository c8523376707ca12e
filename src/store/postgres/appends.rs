//! Appends to the logs, each its own transaction, announced at its commit.

use jiff::Timestamp;

use super::super::StoreError;
use super::super::append_plan::{AppendPlan, PlannedEvent};
use super::super::codec::millis;
use crate::domain::event::{Event, NewEvent};
use crate::domain::subscription::SourceName;

/// Appends to several logs and announces each on NOTIFY channel `$10` at commit: `$1` and `$2`
/// are each log once and how many events it takes (its head moves on by that, the head rows
/// locked in name order, so that two nodes appending to the same logs cannot deadlock); `$3` to
/// `$8` are each event's log, that count, its place among the log's events from 0, id, action
/// and payload; `$9` is when they were published. Returns each log's new head.
const APPEND: &str = "WITH heads AS (
         INSERT INTO source_heads (source, last_seq)
         SELECT source, n FROM UNNEST($1::TEXT[], $2::BIGINT[]) AS l(source, n) ORDER BY source
         ON CONFLICT (source) DO UPDATE SET last_seq = source_heads.last_seq + excluded.last_seq
         RETURNING source, last_seq),
     appended AS (
         INSERT INTO events (source, seq, id, action, payload, published_at)
         SELECT e.source, h.last_seq - e.n + 1 + e.place, e.id, e.action, e.payload, $9
         FROM UNNEST($3::TEXT[], $4::BIGINT[], $5::BIGINT[], $6::TEXT[], $7::TEXT[], $8::TEXT[])
             AS e(source, n, place, id, action, payload)
         JOIN heads AS h ON h.source = e.source)
     SELECT source, last_seq, pg_notify($10, 'a:' || source || ':' || last_seq)::TEXT
     FROM heads";

/// Appends each batch's events to its log, batches of one log in the order given, and
/// announces each log's new head on NOTIFY channel `channel`, in one statement that is its own
/// transaction: one round trip, where a transaction opened statement by statement takes two
/// and three per log (BEGIN, and the head, the events, the NOTIFY, then COMMIT). Returns the
/// events numbered, per batch, once durable.
pub(super) async fn append(
    pool: &sqlx::PgPool,
    channel: &str,
    batches: &[(&SourceName, &[NewEvent])],
    now: Timestamp,
) -> Result<Vec<Vec<Event>>, StoreError> {
    let plan = AppendPlan::new(batches);
    if plan.is_empty() {
        return Ok(batches.iter().map(|_| Vec::new()).collect());
    }
    let (logs, counts): (Vec<&str>, Vec<i64>) = plan
        .logs()
        .map(|(log, count)| (log.as_str(), count))
        .unzip();
    let mut columns = EventColumns::default();
    for event in plan.events() {
        columns.push(&event);
    }
    let heads: Vec<(String, i64, Option<String>)> = sqlx::query_as(APPEND)
        .bind(logs)
        .bind(counts)
        .bind(columns.logs)
        .bind(columns.counts)
        .bind(columns.places)
        .bind(columns.ids)
        .bind(columns.actions)
        .bind(columns.payloads)
        .bind(millis(now))
        .bind(channel)
        .fetch_all(pool)
        .await?;
    let heads: Vec<(String, i64)> = heads
        .into_iter()
        .map(|(log, head, _)| (log, head))
        .collect();
    plan.numbered(&heads, now)
}

/// The planned events as the columns [`APPEND`] unnests.
#[derive(Default)]
struct EventColumns<'a> {
    logs: Vec<&'a str>,
    counts: Vec<i64>,
    places: Vec<i64>,
    ids: Vec<String>,
    actions: Vec<&'a str>,
    payloads: Vec<&'a str>,
}

impl<'a> EventColumns<'a> {
    fn push(&mut self, event: &PlannedEvent<'a>) {
        self.logs.push(event.log.as_str());
        self.counts.push(event.count);
        self.places.push(event.place);
        self.ids.push(event.id.to_string());
        self.actions.push(&event.event.action);
        self.payloads.push(&event.event.payload);
    }
}
