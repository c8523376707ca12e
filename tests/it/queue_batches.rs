//! Invocations' and agents' writes of all three kinds arriving together, on the store under
//! test: raises (new keys and keys already raised), completions (by the node running them, by
//! another node, and a second time by the same node) and settles (acks, nacks and receipts
//! that lease nothing) share a group commit — on PostgreSQL one statement — and each is
//! answered as if it had run alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use herald::domain::event::NewEvent;
use herald::domain::invocation::{
    AgentMessage, Completion, Invocation, InvocationId, InvocationState, Leased,
};
use herald::domain::subscription::SourceName;
use herald::store::queues::Completed;
use herald::store::{NodeId, Store};
use jiff::Timestamp;

use crate::harness::TestStore;

fn invocation(invoker: &SourceName, key: usize, now: Timestamp) -> Invocation {
    Invocation {
        id: InvocationId::new(),
        invoker: invoker.clone(),
        key: format!("k{key}"),
        payload: format!("<order n=\"{key}\"/>"),
        parameters: Default::default(),
        raised_at: now,
    }
}

/// Completion `i`: done, with callback `i` for `agent`'s pull listeners.
pub fn completion(agent: &SourceName, i: usize) -> Completion {
    Completion {
        state: InvocationState::Done,
        response: Some(format!("<done n=\"{i}\"/>")),
        error: None,
        message: Some(AgentMessage {
            agent: agent.clone(),
            pull: true,
            correlation_id: format!("cb{i}"),
            event: NewEvent {
                action: "urn:test:callback".into(),
                payload: format!("<callback n=\"{i}\"/>"),
            },
        }),
    }
}

/// Leases everything visible on `agent` for a minute: the leases, and their sequence numbers in
/// order.
pub async fn lease_all(store: &Arc<dyn Store>, agent: &SourceName) -> (Vec<Leased>, Vec<u64>) {
    let leased = store
        .receive(agent, 100, None, Duration::from_secs(60))
        .await
        .unwrap();
    let mut seqs: Vec<u64> = leased.iter().map(|l| l.event.seq).collect();
    seqs.sort_unstable();
    (leased, seqs)
}

/// What one write of the mixed batch answered.
#[derive(Debug)]
enum Answer {
    Raised(usize, InvocationId, bool),
    Completed(usize, String, Completed),
    Settled(usize, bool),
}

#[tokio::test]
async fn raises_completions_and_settles_arriving_together_are_each_answered_as_alone() {
    let test = TestStore::new().await;
    let store = test.open().await;
    let invoker = SourceName::parse("orders").unwrap();
    let agent = SourceName::parse("inbox").unwrap();
    let (node, other) = (NodeId::parse("n1").unwrap(), NodeId::parse("n2").unwrap());
    let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
    let window_start = now - jiff::SignedDuration::from_hours(1);
    // Before: keys 0..20 raised and running here; the first ten completed, their messages
    // leased.
    let mut first = HashMap::new();
    for key in 0..20 {
        let raised = invocation(&invoker, key, now);
        let (id, new) = store.raise_invocation(&raised, window_start).await.unwrap();
        assert!(new);
        first.insert(format!("k{key}"), id);
    }
    let running = store
        .claim_invocations(&node, &invoker, now, 100)
        .await
        .unwrap();
    assert_eq!(running.len(), 20);
    for (i, record) in running.iter().take(10).enumerate() {
        let done = store
            .complete_invocation(record.invocation.id, &node, &completion(&agent, i), now)
            .await
            .unwrap();
        assert!(matches!(done, Completed::Recorded(Some(_))), "{done:?}");
    }
    let leased = store
        .receive(&agent, 100, None, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(leased.len(), 10);

    // At once: raises of keys 15..30 (15..20 named, 20..30 new); the last ten completed here,
    // five of them also by n2 and two of them twice here; the ten leased settled (even places
    // acked, odd put back) and two receipts that lease nothing.
    let raises = (15..30).map(|key| {
        let (store, raised) = (store.clone(), invocation(&invoker, key, now));
        async move {
            let (id, new) = store.raise_invocation(&raised, window_start).await.unwrap();
            Answer::Raised(key, id, new)
        }
    });
    let completers = running.iter().enumerate().skip(10).flat_map(|(i, record)| {
        let mut by = vec![node.clone()];
        if i < 15 {
            by.push(other.clone());
        }
        if i >= 18 {
            by.push(node.clone());
        }
        by.into_iter().map(move |by| (i, record.invocation.id, by))
    });
    let completions = completers.map(|(i, id, by)| {
        let (store, done) = (store.clone(), completion(&agent, i));
        async move {
            let answer = store
                .complete_invocation(id, &by, &done, now)
                .await
                .unwrap();
            Answer::Completed(i, by.as_str().to_owned(), answer)
        }
    });
    let receipts = leased
        .iter()
        .map(|l| l.receipt.clone())
        .chain(["1.nolease".to_owned(), "x".to_owned()]);
    let settles = receipts.enumerate().map(|(i, receipt)| {
        let (store, agent) = (store.clone(), agent.clone());
        async move {
            let back_after = (i % 2 == 1).then_some(Duration::ZERO);
            Answer::Settled(i, store.settle(&agent, &receipt, back_after).await.unwrap())
        }
    });
    let mut writes: Vec<futures_util::future::BoxFuture<'_, Answer>> = Vec::new();
    writes.extend(raises.map(|f| Box::pin(f) as _));
    writes.extend(completions.map(|f| Box::pin(f) as _));
    writes.extend(settles.map(|f| Box::pin(f) as _));
    let mut recorded: HashMap<usize, u64> = HashMap::new();
    for answer in join_all(writes).await {
        match answer {
            Answer::Raised(key, id, new) => match first.get(&format!("k{key}")) {
                Some(named) => assert_eq!((id, new), (*named, false), "k{key}"),
                None => assert!(new, "k{key}"),
            },
            Answer::Completed(i, by, Completed::Recorded(Some(event))) if by == "n1" => {
                assert_eq!(event.payload, format!("<callback n=\"{i}\"/>"));
                assert!(
                    recorded.insert(i, event.seq).is_none(),
                    "{i} recorded twice"
                );
            }
            Answer::Completed(_, _, Completed::NotOwned) => {}
            Answer::Settled(i, settled) => assert_eq!(settled, i < 10, "settle {i}"),
            other => panic!("{other:?}"),
        }
    }
    let mut seqs: Vec<u64> = recorded.values().copied().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (11..=20).collect::<Vec<u64>>(), "one message each");
    let (again, back) = lease_all(&store, &agent).await;
    let mut expected: Vec<u64> = leased
        .iter()
        .skip(1)
        .step_by(2)
        .map(|l| l.event.seq)
        .collect();
    expected.extend(11..=20);
    expected.sort_unstable();
    assert_eq!(back, expected, "the ones put back and the new ones");
    let by_seq: HashMap<u64, usize> = recorded.iter().map(|(i, seq)| (*seq, *i)).collect();
    for l in again.iter().filter(|l| l.event.seq > 10) {
        let i = by_seq[&l.event.seq];
        assert_eq!(
            l.event.payload,
            format!("<callback n=\"{i}\"/>"),
            "{}",
            l.event.seq
        );
    }
    store.close().await;
}

#[tokio::test]
async fn a_lapsed_nodes_running_invocations_are_claimed_after_the_due_ones_one_per_key() {
    let test = TestStore::new().await;
    let store = test.open().await;
    let invoker = SourceName::parse("orders").unwrap();
    let (node, other) = (NodeId::parse("n1").unwrap(), NodeId::parse("n2").unwrap());
    store
        .register_node(&node, Duration::from_millis(300))
        .await
        .unwrap();
    store
        .register_node(&other, Duration::from_secs(60))
        .await
        .unwrap();
    let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
    // No window: a key raised twice has two invocations.
    let raise = |key: usize, at: Timestamp| {
        let mut raised = invocation(&invoker, key, at);
        raised.raised_at = at;
        let store = store.clone();
        async move { store.raise_invocation(&raised, at).await.unwrap().0 }
    };
    let mut running = Vec::new();
    for key in 0..5 {
        running.push(raise(key, now).await);
    }
    let taken = store
        .claim_invocations(&node, &invoker, now, 100)
        .await
        .unwrap();
    assert_eq!(taken.len(), 5);
    // Later: keys 0 and 1 raised again (due after the running ones), key 9 new.
    let later = now + jiff::SignedDuration::from_millis(10);
    let again: Vec<InvocationId> = vec![raise(0, later).await, raise(1, later).await];
    let fresh = raise(9, later).await;
    // n1 still alive: n2 takes only what is due and whose key is not running.
    let claimed = store
        .claim_invocations(&other, &invoker, later, 100)
        .await
        .unwrap();
    let ids: Vec<InvocationId> = claimed.iter().map(|r| r.invocation.id).collect();
    assert_eq!(ids, vec![fresh]);
    // n1's lease lapses: its five are taken over in due order, each counted as resumed; the
    // second invocations of keys 0 and 1 wait for theirs.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let claimed = store
        .claim_invocations(&other, &invoker, later, 100)
        .await
        .unwrap();
    let mut ids: Vec<InvocationId> = claimed.iter().map(|r| r.invocation.id).collect();
    ids.sort();
    running.sort();
    assert_eq!(ids, running);
    assert!(claimed.iter().all(|r| r.resumed == 1), "{claimed:?}");
    assert!(
        claimed
            .iter()
            .all(|r| r.owner.as_deref() == Some("n2") && !again.contains(&r.invocation.id))
    );
    store.close().await;
}
