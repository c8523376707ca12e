//! A publish's append as one trip to the driver's worker thread: the transaction, the head's
//! advance, the events and the commit go as one multi-statement query, where a transaction
//! opened statement by statement costs a trip each (four for one event). Under load each trip
//! waits for a runtime worker to take the answer and send the next statement, with the writer
//! lock held all the while.

use jiff::Timestamp;
use serde_json::{Value, json};
use sqlx::Sqlite;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqlitePool;

use super::super::codec::millis;
use super::super::{StoreError, number_events_with};
use crate::domain::event::{Event, EventId, NewEvent};
use crate::domain::subscription::SourceName;

/// Appends the events of a JSON array of `[id, action, payload]` to log `?1`, numbered on from
/// its head, which moves on by `?2`; `?3` is when they were published. Returns the new head.
const APPEND: &str = "BEGIN IMMEDIATE;
     INSERT INTO source_heads (source, last_seq) VALUES (?1, ?2)
         ON CONFLICT (source) DO UPDATE SET last_seq = source_heads.last_seq + ?2
         RETURNING last_seq;
     INSERT INTO events (source, seq, id, action, payload, published_at)
         SELECT ?1, h.last_seq - ?2 + 1 + e.key, json_extract(e.value, '$[0]'),
                json_extract(e.value, '$[1]'), json_extract(e.value, '$[2]'), ?3
         FROM source_heads AS h, jsonb_each(?4) AS e
         WHERE h.source = ?1;
     COMMIT;";

/// Appends `events` to `source`'s log in one transaction on the writer connection `writer`
/// (the caller holds the writer lock); returns them numbered, once durable.
pub(super) async fn append(
    writer: &SqlitePool,
    source: &SourceName,
    events: &[NewEvent],
    now: Timestamp,
) -> Result<Vec<Event>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<EventId> = events.iter().map(|_| EventId::new()).collect();
    let rows = Value::Array(
        events
            .iter()
            .zip(&ids)
            .map(|(event, id)| json!([id.to_string(), event.action, event.payload]))
            .collect(),
    );
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let mut connection = Unfinished(Some(writer.acquire().await?));
    // `fetch_all`, not `fetch_one`: the driver stops a query at the row a limit asks for, and
    // the statements after the head's would not run.
    let heads: Vec<i64> = sqlx::query_scalar(APPEND)
        .bind(source.as_str())
        .bind(count)
        .bind(millis(now))
        .bind(rows.to_string())
        .fetch_all(connection.get())
        .await?;
    connection.finish();
    let [last] = heads[..] else {
        return Err(StoreError::Corrupt(format!(
            "an append to '{source}' returned {} heads",
            heads.len()
        )));
    };
    let first = last - count + 1;
    Ok(number_events_with(source, events, ids, first, now))
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
