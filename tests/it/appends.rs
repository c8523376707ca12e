//! The store's append of published events, on the store under test: one transaction (one
//! statement on PostgreSQL, one trip to the driver's thread on SQLite) that numbers the events
//! on from the log's head without gaps, stores them as given and, on PostgreSQL, announces the
//! new head to the other nodes.

use std::time::Duration;

use futures_util::future::join_all;
use herald::domain::event::{Event, NewEvent};
use herald::domain::subscription::SourceName;
use herald::store::Signal;
use jiff::Timestamp;

use crate::harness::TestStore;

/// Append `i`'s events: 1 to 3 of them, with text that JSON, SQL and XML all escape.
fn events(i: usize) -> Vec<NewEvent> {
    (0..=i % 3)
        .map(|j| NewEvent {
            action: format!("urn:a:{i}:{j}"),
            payload: format!("<e i=\"{i}\" j='{j}'>\\ ' \" ?1 $1 &amp; é</e>"),
        })
        .collect()
}

/// What the store keeps of an event (its time is kept to the millisecond).
fn kept(event: &Event) -> (u64, String, String, String) {
    let id = event.id.to_string();
    (event.seq, id, event.action.clone(), event.payload.clone())
}

#[tokio::test]
async fn appends_at_once_are_numbered_without_gaps_stored_as_given_and_announced() {
    let test = TestStore::new().await;
    let store = test.open().await;
    let mut signals = store.signals().await.unwrap();
    let log = SourceName::parse("default").unwrap();

    let appends = (0..50).map(|i| {
        let (store, log) = (store.clone(), log.clone());
        async move {
            let events = events(i);
            let appended = store.append_events(&log, &events, Timestamp::now()).await;
            (events, appended.unwrap())
        }
    });
    let results = join_all(appends).await;

    // Each append's events in a row, in the order given, as given.
    let mut seqs = Vec::new();
    for (events, appended) in &results {
        assert_eq!(appended.len(), events.len());
        for (k, (given, event)) in events.iter().zip(appended).enumerate() {
            assert_eq!(event.seq, appended[0].seq + k as u64);
            assert_eq!(
                (&event.action, &event.payload),
                (&given.action, &given.payload)
            );
            assert_eq!(event.source, log);
        }
        seqs.extend(appended.iter().map(|event| event.seq));
    }
    seqs.sort_unstable();
    let total = seqs.len() as u64;
    assert_eq!(total, 99);
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "no gap, no number twice"
    );
    assert_eq!(store.log_head(&log).await.unwrap(), total);

    // Stored as returned.
    let mut returned: Vec<_> = results
        .iter()
        .flat_map(|(_, a)| a.iter().map(kept))
        .collect();
    returned.sort_unstable();
    let stored: Vec<_> = store.events_after(&log, 0, 1000).await.unwrap();
    assert_eq!(stored.iter().map(kept).collect::<Vec<_>>(), returned);

    // Where other nodes are told (PostgreSQL), each append announced its own head.
    if let Some(signals) = signals.as_mut() {
        let mut expected: Vec<u64> = results
            .iter()
            .map(|(_, appended)| appended.last().unwrap().seq)
            .collect();
        expected.sort_unstable();
        let mut announced = Vec::new();
        while announced.len() < expected.len() {
            let signal = tokio::time::timeout(Duration::from_secs(10), signals.recv()).await;
            match signal {
                Ok(Some(Signal::Appended(source, head))) if source == log => announced.push(head),
                Ok(Some(_)) => {}
                other => panic!("announced {announced:?} of {expected:?}, then {other:?}"),
            }
        }
        announced.sort_unstable();
        assert_eq!(announced, expected);
    }
    store.close().await;
}
