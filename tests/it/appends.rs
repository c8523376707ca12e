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
use tokio::sync::mpsc::Receiver;

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

/// The next `count` heads announced, sorted.
async fn announced(signals: &mut Receiver<Signal>, count: usize) -> Vec<(SourceName, u64)> {
    let mut announced = Vec::new();
    while announced.len() < count {
        match tokio::time::timeout(Duration::from_secs(10), signals.recv()).await {
            Ok(Some(Signal::Appended(log, head))) => announced.push((log, head)),
            Ok(Some(_)) => {}
            other => panic!("announced {announced:?}, then {other:?}"),
        }
    }
    announced.sort_unstable();
    announced
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
        let mut expected: Vec<(SourceName, u64)> = results
            .iter()
            .map(|(_, appended)| (log.clone(), appended.last().unwrap().seq))
            .collect();
        expected.sort_unstable();
        assert_eq!(announced(signals, expected.len()).await, expected);
    }
    store.close().await;
}

#[tokio::test]
async fn appends_to_several_logs_at_once_number_each_log_on_and_announce_each_head() {
    let test = TestStore::new().await;
    let store = test.open().await;
    let mut signals = store.signals().await.unwrap();
    let [a, b, c] = ["a", "b", "c"].map(|name| SourceName::parse(name).unwrap());
    let now = Timestamp::now();
    store.append_events(&b, &events(0), now).await.unwrap();

    // A context's callbacks: batches for several logs, one of them twice, one empty.
    let batches = [
        (a.clone(), events(1)),
        (b.clone(), events(2)),
        (c.clone(), Vec::new()),
        (a.clone(), events(0)),
    ];
    let appended = store.append_to_logs(&batches, now).await.unwrap();
    let numbers: Vec<Vec<u64>> = (appended.iter())
        .map(|events| events.iter().map(|e| e.seq).collect())
        .collect();
    assert_eq!(numbers, [vec![1, 2], vec![2, 3, 4], vec![], vec![3]]);
    for ((log, given), appended) in batches.iter().zip(&appended) {
        let texts = |e: &NewEvent| (e.action.clone(), e.payload.clone());
        let got: Vec<_> = appended
            .iter()
            .map(|e| (e.action.clone(), e.payload.clone()))
            .collect();
        assert_eq!(got, given.iter().map(texts).collect::<Vec<_>>());
        assert!(appended.iter().all(|e| &e.source == log));
    }
    let stored_a = store.events_after(&a, 0, 10).await.unwrap();
    let returned_a: Vec<_> = appended[0].iter().chain(&appended[3]).map(kept).collect();
    assert_eq!(stored_a.iter().map(kept).collect::<Vec<_>>(), returned_a);
    assert_eq!(store.events_after(&b, 1, 10).await.unwrap().len(), 3);
    let heads = [&a, &b, &c].map(|log| store.log_head(log));
    assert_eq!(
        join_all(heads)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        [3, 4, 0]
    );

    // Each log with events announced once, with its new head (b's first append before it).
    if let Some(signals) = signals.as_mut() {
        let expected = vec![(a.clone(), 3), (b.clone(), 1), (b.clone(), 4)];
        assert_eq!(announced(signals, 3).await, expected);
        let more = tokio::time::timeout(Duration::from_millis(300), signals.recv()).await;
        assert!(more.is_err(), "nothing else announced: {more:?}");
    }
    store.close().await;
}
