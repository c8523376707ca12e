//! An append as one trip to the driver's worker thread: the transaction, the heads' advance,
//! the events and the commit go as one multi-statement query, where a transaction
//! opened statement by statement costs a trip each (four for one event). Under load each trip
//! waits for a runtime worker to take the answer and send the next statement, with the writer
//! lock held all the while.

use jiff::Timestamp;
use serde_json::{Value, json};
use sqlx::Sqlite;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqlitePool;

use super::super::StoreError;
use super::super::append_plan::AppendPlan;
use super::super::codec::millis;
use crate::domain::event::{Event, NewEvent};
use crate::domain::subscription::SourceName;

/// Appends to several logs: `?1` is a JSON array of `[log, count]`, each log once, whose head
/// moves on by `count`; `?2` a JSON array of `[log, count, offset, id, action, payload]`, each
/// event numbered on from its log's old head by its `offset` there; `?3` is when they were
/// published. Returns each log's new head.
const APPEND: &str = "BEGIN IMMEDIATE;
     INSERT INTO source_heads (source, last_seq)
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
         FROM jsonb_each(?1) WHERE true
         ON CONFLICT (source) DO UPDATE SET last_seq = source_heads.last_seq + excluded.last_seq
         RETURNING source, last_seq;
     INSERT INTO events (source, seq, id, action, payload, published_at)
         SELECT h.source,
                h.last_seq - json_extract(e.value, '$[1]') + 1 + json_extract(e.value, '$[2]'),
                json_extract(e.value, '$[3]'), json_extract(e.value, '$[4]'),
                json_extract(e.value, '$[5]'), ?3
         FROM jsonb_each(?2) AS e JOIN source_heads AS h
             ON h.source = json_extract(e.value, '$[0]');
     COMMIT;";

/// Appends each batch's events to its log in one transaction on the writer connection `writer`
/// (the caller holds the writer lock), batches of one log in the order given; returns them
/// numbered, per batch, once durable.
pub(super) async fn append(
    writer: &SqlitePool,
    batches: &[(&SourceName, &[NewEvent])],
    now: Timestamp,
) -> Result<Vec<Vec<Event>>, StoreError> {
    let plan = AppendPlan::new(batches);
    if plan.is_empty() {
        return Ok(batches.iter().map(|_| Vec::new()).collect());
    }
    let logs: Vec<Value> = (plan.logs())
        .map(|(log, count)| json!([log.as_str(), count]))
        .collect();
    let rows: Vec<Value> = (plan.events())
        .map(|e| {
            let id = e.id.to_string();
            let (action, payload) = (&e.event.action, &e.event.payload);
            json!([e.log.as_str(), e.count, e.place, id, action, payload])
        })
        .collect();
    let mut connection = Unfinished(Some(writer.acquire().await?));
    // `fetch_all`, not `fetch_one`: the driver stops a query at the row a limit asks for, and
    // the statements after it would not run.
    let heads: Vec<(String, i64)> = sqlx::query_as(APPEND)
        .bind(Value::Array(logs).to_string())
        .bind(Value::Array(rows).to_string())
        .bind(millis(now))
        .fetch_all(connection.get())
        .await?;
    connection.finish();
    plan.numbered(&heads, now)
}

/// The writer connection while a query that opens its own transaction runs. Unless
/// [`Unfinished::finish`] is called it is closed, not returned to the pool, and SQLite rolls
/// back what the query left open: an error, or the caller gone, between its BEGIN and COMMIT.
struct Unfinished(Option<PoolConnection<Sqlite>>);

impl Unfinished {
    fn get(&mut self) -> &mut sqlx::SqliteConnection {
        self.0
            .as_deref_mut()
            .expect("the connection is held until finished")
    }

    /// The query ran to its end: the connection goes back to the pool.
    fn finish(mut self) {
        self.0.take();
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            drop(connection.detach());
        }
    }
}
