//! An append to one or more logs, planned before the one statement (or query) that writes it:
//! each log once with how many events it takes, each event with its place among that log's,
//! the ids made beforehand; and, once the store returns each log's new head, the events
//! numbered per batch.

use std::collections::HashMap;

use jiff::Timestamp;

use super::{StoreError, number_events_with};
use crate::domain::event::{Event, EventId, NewEvent};
use crate::domain::subscription::SourceName;

/// One event of a planned append.
pub(super) struct PlannedEvent<'a> {
    pub log: &'a SourceName,
    /// How many events its log takes in the whole append.
    pub count: i64,
    /// Its place among them, from 0: its number is the log's old head + 1 + `place`.
    pub place: i64,
    pub id: &'a EventId,
    pub event: &'a NewEvent,
}

/// Batches of events to append, batches of one log in the order given.
pub(super) struct AppendPlan<'a> {
    batches: &'a [(&'a SourceName, &'a [NewEvent])],
    /// Each log with events once, and how many it takes.
    logs: Vec<(&'a SourceName, i64)>,
    /// Per batch: its log's index in `logs`, and the place of its first event there.
    starts: Vec<(usize, i64)>,
    ids: Vec<Vec<EventId>>,
}

impl<'a> AppendPlan<'a> {
    pub fn new(batches: &'a [(&'a SourceName, &'a [NewEvent])]) -> AppendPlan<'a> {
        let mut logs: Vec<(&SourceName, i64)> = Vec::new();
        // Up to hundreds of context instances' logs in one append: found by hash, not by walk.
        let mut places: HashMap<&SourceName, usize> = HashMap::new();
        let mut starts = Vec::with_capacity(batches.len());
        for (log, events) in batches {
            let at = *places.entry(log).or_insert_with(|| {
                logs.push((log, 0));
                logs.len() - 1
            });
            starts.push((at, logs[at].1));
            logs[at].1 += i64::try_from(events.len()).unwrap_or(i64::MAX);
        }
        let ids = batches
            .iter()
            .map(|(_, events)| events.iter().map(|_| EventId::new()).collect())
            .collect();
        AppendPlan {
            batches,
            logs,
            starts,
            ids,
        }
    }

    /// Whether there is no event to append at all.
    pub fn is_empty(&self) -> bool {
        self.logs.iter().all(|(_, count)| *count == 0)
    }

    /// Each log that takes events, once, with how many.
    pub fn logs(&self) -> impl Iterator<Item = (&'a SourceName, i64)> + '_ {
        self.logs.iter().copied().filter(|(_, count)| *count > 0)
    }

    /// Every event, batch by batch.
    pub fn events(&self) -> impl Iterator<Item = PlannedEvent<'_>> + '_ {
        let batches = self.batches.iter().zip(&self.ids).zip(&self.starts);
        batches.flat_map(move |(((log, events), ids), &(at, start))| {
            let count = self.logs[at].1;
            (start..)
                .zip(events.iter().zip(ids))
                .map(move |(place, (event, id))| PlannedEvent {
                    log,
                    count,
                    place,
                    id,
                    event,
                })
        })
    }

    /// The events numbered, per batch in the order given, from each log's new `heads`.
    pub fn numbered(
        self,
        heads: &[(String, i64)],
        now: Timestamp,
    ) -> Result<Vec<Vec<Event>>, StoreError> {
        let heads: HashMap<&str, i64> = heads.iter().map(|(log, h)| (log.as_str(), *h)).collect();
        let head = |log: &SourceName| {
            heads.get(log.as_str()).copied().ok_or_else(|| {
                StoreError::Corrupt(format!("an append to '{log}' returned no head"))
            })
        };
        let batches = self.batches.iter().zip(self.ids).zip(self.starts);
        let mut appended = Vec::with_capacity(self.batches.len());
        for (((log, events), ids), (at, start)) in batches {
            if events.is_empty() {
                appended.push(Vec::new());
                continue;
            }
            let first = head(log)? - self.logs[at].1 + 1 + start;
            appended.push(number_events_with(log, events, ids, first, now));
        }
        Ok(appended)
    }
}
