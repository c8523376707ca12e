//! The expiry sweeper finds subscriptions by their sweep marks, each at or before its expiry, on
//! the store under test: a renewal that moves the expiry later leaves the mark (no index
//! changes), one that brings it nearer (or to never) moves it (or clears it), and the sweeper moves a passed mark of a renewed
//! subscription up to its expiry. Whatever the renewals did, each subscription is swept at its
//! expiry, not before and not later.

use herald::domain::expiry::ExpiryKind;
use herald::domain::subscription::{Ended, SubscriptionId};
use herald::store::{NodeId, Store};
use jiff::Timestamp;

use crate::group_commit::subscription;
use crate::harness::TestStore;

/// `seconds` after the start of these tests' clock.
fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(3_000_000_000 + seconds).unwrap()
}

/// A stored active subscription expiring at `expires_at`.
async fn stored(store: &dyn Store, expires_at: Option<Timestamp>) -> SubscriptionId {
    let mut s = subscription(1);
    s.expires_at = expires_at;
    store
        .insert_subscription(&s, &NodeId::parse("n1").unwrap(), None)
        .await
        .unwrap();
    s.id
}

/// The ids the sweeper ends at `now`, in sweeps of up to 100 until one ends fewer.
async fn swept(store: &dyn Store, now: Timestamp) -> Vec<SubscriptionId> {
    let mut ids = Vec::new();
    loop {
        let ended: Vec<Ended> = store.end_expired(now, 100).await.unwrap();
        let full = ended.len() == 100;
        ids.extend(ended.into_iter().map(|e| e.id));
        if !full {
            return ids;
        }
    }
}

/// The stored sweep mark of `id`, in milliseconds (none: `None`).
async fn mark(test: &TestStore, id: SubscriptionId) -> Option<i64> {
    let query = format!(
        "SELECT COALESCE(sweep_at, -1) FROM subscriptions WHERE id = '{}'",
        id.key()
    );
    let marks = test.integers(&query).await;
    assert_eq!(marks.len(), 1, "one row for {id}");
    (marks[0] >= 0).then_some(marks[0])
}

async fn renew(store: &dyn Store, id: SubscriptionId, to: Option<Timestamp>, now: Timestamp) {
    let renewed = store.renew_subscription(id, to, ExpiryKind::DateTime, now);
    assert!(renewed.await.unwrap(), "renewed {id}");
}

#[tokio::test]
async fn a_renewal_later_is_swept_at_its_new_expiry_and_its_mark_catches_up() {
    let test = TestStore::new().await;
    let store = test.open().await;
    let later = stored(&*store, Some(at(10))).await;
    let never = stored(&*store, Some(at(10))).await;
    let untouched = stored(&*store, Some(at(10))).await;
    renew(&*store, later, Some(at(100)), at(1)).await;
    renew(&*store, never, None, at(1)).await;
    // Renewed later, the mark stayed where it was; renewed to never, it went.
    assert_eq!(mark(&test, later).await, Some(at(10).as_millisecond()));
    assert_eq!(mark(&test, never).await, None);

    // Past the first expiry only the one not renewed goes; the renewed one's mark moves on.
    assert_eq!(swept(&*store, at(20)).await, vec![untouched]);
    assert_eq!(mark(&test, later).await, Some(at(100).as_millisecond()));
    assert_eq!(swept(&*store, at(99)).await, vec![]);
    assert_eq!(swept(&*store, at(100)).await, vec![later]);
    assert_eq!(swept(&*store, at(1_000_000)).await, vec![]);
    assert!(
        store
            .active_subscription(never, at(1_000_000))
            .await
            .unwrap()
            .is_some(),
        "never expires"
    );
    store.close().await;
}

#[tokio::test]
async fn a_renewal_nearer_or_from_never_moves_the_mark_and_is_swept_at_its_new_expiry() {
    let test = TestStore::new().await;
    let store = test.open().await;
    let nearer = stored(&*store, Some(at(100))).await;
    let from_never = stored(&*store, None).await;
    let later = stored(&*store, Some(at(50))).await;
    // One batch of renewals holding all three, and one of them alone.
    let renewals = [
        (nearer, Some(at(10))),
        (from_never, Some(at(20))),
        (later, Some(at(60))),
    ]
    .map(|(id, to)| {
        let store = store.clone();
        async move { renew(&*store, id, to, at(1)).await }
    });
    futures_util::future::join_all(renewals).await;
    assert_eq!(mark(&test, nearer).await, Some(at(10).as_millisecond()));
    assert_eq!(mark(&test, from_never).await, Some(at(20).as_millisecond()));
    assert_eq!(mark(&test, later).await, Some(at(50).as_millisecond()));

    assert_eq!(swept(&*store, at(9)).await, vec![]);
    assert_eq!(swept(&*store, at(10)).await, vec![nearer]);
    assert_eq!(swept(&*store, at(20)).await, vec![from_never]);
    assert_eq!(swept(&*store, at(59)).await, vec![]);
    assert_eq!(swept(&*store, at(60)).await, vec![later]);
    store.close().await;
}

#[tokio::test]
async fn a_sweep_ends_and_announces_every_expired_subscription() {
    let test = TestStore::new().await;
    let store = test.open().await;
    let mut signals = store.signals().await.unwrap();
    let mut expiring = Vec::new();
    for _ in 0..400 {
        expiring.push(stored(&*store, Some(at(10))).await);
    }
    // One sweep of all 400: more ids than one notification holds.
    let ended = store.end_expired(at(20), 1000).await.unwrap();
    let mut ended: Vec<SubscriptionId> = ended.into_iter().map(|e| e.id).collect();
    ended.sort_by_key(SubscriptionId::key);
    expiring.sort_by_key(SubscriptionId::key);
    assert_eq!(ended.len(), expiring.len());
    assert!(ended == expiring, "the same ids");
    // On PostgreSQL the ends go out to every node in a few notifications of many ids each.
    if let Some(signals) = signals.as_mut() {
        let mut announced = std::collections::HashSet::new();
        while announced.len() < expiring.len() {
            let signal = tokio::time::timeout(std::time::Duration::from_secs(10), signals.recv());
            if let herald::store::Signal::Ended(id) = signal.await.unwrap().unwrap() {
                announced.insert(id);
            }
        }
        assert!(expiring.iter().all(|id| announced.contains(id)));
    }
    store.close().await;
}
