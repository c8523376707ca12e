//! The store's group commit of the subscription lifecycle, on the store under test: Subscribes,
//! Renews and ends that arrive together share one commit (one statement), each is answered as
//! if it had run alone (its own starting cursor, expiry, end), and one row that cannot be
//! written refuses only itself; so do push channels' visits and changes.

use futures_util::future::join_all;
use herald::domain::channel::Channel;
use herald::domain::event::NewEvent;
use herald::domain::expiry::ExpiryKind;
use herald::domain::subscription::{
    ConnectionRetry, EndNotice, EndReason, EndpointRef, EventingVersion, Filter, LogKind,
    NotificationFormat, ReaderDelivery, SoapVersion, SourceName, Subscription, SubscriptionId,
    SubscriptionStatus, WireDialect, WsaVersion,
};
use herald::domain::webhook::WebhookSettings;
use herald::domain::wsman::WsmanDelivery;
use herald::store::{NodeId, Signal};
use jiff::Timestamp;

use crate::harness::TestStore;

/// Stored subscription `i`: a W3C 2011 SOAP 1.2 push of the default source to a NotifyTo of its
/// own (every second with an EndTo, every third with an expiry).
pub fn subscription(i: usize) -> Subscription {
    Subscription {
        id: SubscriptionId::new_random(),
        source: SourceName::parse("default").unwrap(),
        log: LogKind::Source,
        delivery: ReaderDelivery::SoapPush,
        dialect: WireDialect {
            eventing: EventingVersion::W3c2011,
            soap: SoapVersion::Soap12,
            addressing: WsaVersion::W3c2005,
        },
        notify_to: EndpointRef {
            address: format!("http://127.0.0.1:1/sink/{i}"),
            reference_parameters: Vec::new(),
            reference_properties: Vec::new(),
        },
        end_to: i.is_multiple_of(2).then(|| {
            Box::new(EndpointRef {
                address: format!("http://127.0.0.1:1/end/{i}"),
                reference_parameters: Vec::new(),
                reference_properties: Vec::new(),
            })
        }),
        delivery_mode: "push".into(),
        format: NotificationFormat::Unwrap,
        filter: None,
        expires_at: i
            .is_multiple_of(3)
            .then(|| Timestamp::from_second(4_000_000_000).unwrap()),
        expiry_kind: ExpiryKind::Duration,
        created_at: Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap(),
        manager_address: format!("http://herald.example/{i}"),
        webhook: None,
        connection_retry: None,
        wsman: None,
    }
}

/// [`subscription`] `i`, every fifth with connection retries, every seventh with a filter, every
/// eleventh with a webhook's secret and every thirteenth with WS-Management heartbeats: each of
/// its stored fields differs from its neighbours' somewhere in a batch.
fn whole_subscription(i: usize) -> Subscription {
    Subscription {
        filter: i.is_multiple_of(7).then(|| Filter {
            dialect: "http://www.w3.org/TR/1999/REC-xpath-19991116".into(),
            expression: format!("/tick[@n > {i}]"),
            namespaces: Vec::new(),
        }),
        connection_retry: i.is_multiple_of(5).then(|| ConnectionRetry {
            interval: std::time::Duration::from_millis(1_000 + i as u64),
            total: 3,
        }),
        webhook: i
            .is_multiple_of(11)
            .then(|| WebhookSettings::signed_with(format!("whsec_c2VjcmV0{i}"))),
        wsman: i.is_multiple_of(13).then(|| {
            Box::new(WsmanDelivery {
                heartbeats_ms: Some(60_000 + i as u64),
                ..WsmanDelivery::push()
            })
        }),
        ..subscription(i)
    }
}

#[tokio::test]
async fn subscribes_arriving_together_commit_together_each_whole_with_its_own_cursor() {
    let test = TestStore::new().await;
    let store = test.open().await;
    let node = NodeId::parse("n1").unwrap();
    let source = SourceName::parse("default").unwrap();
    let events: Vec<NewEvent> = (0..5)
        .map(|i| NewEvent {
            action: "urn:a".into(),
            payload: format!("<e>{i}</e>"),
        })
        .collect();
    store
        .append_events(&source, &events, Timestamp::now())
        .await
        .unwrap();

    // 300 at once, every third starting after event 2 rather than at the head (5); one of them
    // a second copy of an earlier id, which the primary key refuses.
    let subscriptions: Vec<Subscription> = (0..300).map(whole_subscription).collect();
    let first = subscriptions[0].clone();
    store
        .insert_subscription(&first, &node, None)
        .await
        .unwrap();
    let mut duplicate = subscription(1000);
    duplicate.id = first.id;
    let inserts = subscriptions[1..].iter().enumerate().map(|(i, s)| {
        let start_after = i.is_multiple_of(3).then_some(2);
        let store = store.clone();
        let node = node.clone();
        async move {
            (
                store.insert_subscription(s, &node, start_after).await,
                start_after,
            )
        }
    });
    let refused = {
        let store = store.clone();
        let node = node.clone();
        async move { store.insert_subscription(&duplicate, &node, None).await }
    };
    let (results, refused) = tokio::join!(join_all(inserts), refused);
    assert!(refused.is_err(), "a duplicate id is refused: {refused:?}");
    for (result, start_after) in results {
        let cursor = result.expect("every other Subscribe is written");
        assert_eq!(cursor, start_after.unwrap_or(5));
    }

    // Each one whole, as given; the refused copy changed nothing.
    for s in &subscriptions {
        let stored = store
            .active_subscription(s.id, Timestamp::now())
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(&stored, s);
    }
    let mut owned = 0;
    let mut pages = store.owned(&node, Timestamp::now(), 128);
    while let Some(page) = pages.next().await.unwrap() {
        assert!(page.len() <= 128);
        owned += page.len();
    }
    assert_eq!(owned, 300);
    store.close().await;
}

#[tokio::test]
async fn renews_and_ends_arriving_together_commit_together_each_answered_as_alone() {
    let test = TestStore::new().await;
    let store = test.open().await;
    let node = NodeId::parse("n1").unwrap();
    let subscriptions: Vec<Subscription> = (0..300).map(whole_subscription).collect();
    for s in &subscriptions {
        store.insert_subscription(s, &node, None).await.unwrap();
    }
    let mut signals = store.signals().await.unwrap();
    // The last 20 ended beforehand: Renew and Unsubscribe find nothing there.
    for s in &subscriptions[280..] {
        let ended = store.end_subscription(s.id, EndReason::Unsubscribed, Timestamp::now());
        assert!(ended.await.unwrap().is_some());
    }

    // 300 Renews at once, each to an expiry of its own.
    let expiry = |i: usize| Timestamp::from_second(4_100_000_000 + i as i64).unwrap();
    let renewals = subscriptions.iter().enumerate().map(|(i, s)| {
        let store = store.clone();
        async move {
            let renewal = store.renew_subscription(
                s.id,
                Some(expiry(i)),
                ExpiryKind::DateTime,
                Timestamp::now(),
            );
            renewal.await.unwrap()
        }
    });
    let renewed = join_all(renewals).await;
    for (i, (s, renewed)) in subscriptions.iter().zip(renewed).enumerate() {
        assert_eq!(renewed, i < 280, "renewal {i}");
        let record = store.subscription_record(s.id).await.unwrap().unwrap();
        let expected = if i < 280 {
            Some(expiry(i))
        } else {
            s.expires_at
        };
        assert_eq!(record.subscription.expires_at, expected, "expiry {i}");
        if i < 280 {
            assert_eq!(record.subscription.expiry_kind, ExpiryKind::DateTime);
        }
    }

    // 300 ends at once, every tenth asked twice: each ends once, its twin finds nothing.
    let ends = (0..300).chain((0..300).step_by(10)).map(|i| {
        let store = store.clone();
        let id = subscriptions[i].id;
        async move {
            (
                i,
                store
                    .end_subscription(id, EndReason::DeliveryFailure, Timestamp::now())
                    .await
                    .unwrap(),
            )
        }
    });
    let mut ended_once = vec![0; 300];
    for (i, ended) in join_all(ends).await {
        if let Some(ended) = ended {
            assert_eq!(ended.id, subscriptions[i].id);
            assert_eq!(ended.source, subscriptions[i].source, "its log");
            let queued = subscriptions[i].end_to.is_some();
            assert_eq!(ended.notice, queued, "its SubscriptionEnd queued {i}");
            ended_once[i] += 1;
        }
    }
    for (i, s) in subscriptions.iter().enumerate() {
        assert_eq!(ended_once[i], usize::from(i < 280), "ended {i}");
        let record = store.subscription_record(s.id).await.unwrap().unwrap();
        let SubscriptionStatus::Ended { reason, .. } = record.status else {
            panic!("{i} still active");
        };
        let expected = if i < 280 {
            EndReason::DeliveryFailure
        } else {
            EndReason::Unsubscribed
        };
        assert_eq!(reason, expected, "reason {i}");
        // An EndTo gets its SubscriptionEnd queued with the end, exactly when it has one.
        let pending = record.end_notice == Some(EndNotice::Pending);
        assert_eq!(pending, s.end_to.is_some(), "notice {i}");
        assert!(
            store
                .active_subscription(s.id, Timestamp::now())
                .await
                .unwrap()
                .is_none()
        );
    }

    // A store several nodes share announces every end (the 20 before, the 280 now).
    if let Some(signals) = signals.as_mut() {
        let mut announced = std::collections::HashSet::new();
        while announced.len() < 300 {
            let signal = tokio::time::timeout(std::time::Duration::from_secs(10), signals.recv())
                .await
                .expect("every end announced")
                .expect("signals open");
            if let Signal::Ended(id) = signal {
                announced.insert(id);
            }
        }
        assert!(subscriptions.iter().all(|s| announced.contains(&s.id)));
    }
    store.close().await;
}

#[tokio::test]
async fn channel_visits_arriving_together_commit_together_each_answered_as_alone() {
    let test = TestStore::new().await;
    let store = test.open().await;
    let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
    let mut tokens = Vec::new();
    for _ in 0..100 {
        let channel = Channel::opened(now, now + jiff::SignedDuration::from_hours(1));
        store.open_channel(&channel).await.unwrap();
        tokens.push(channel.token);
    }
    // The last ten closed: a visit there finds nothing.
    for token in &tokens[90..] {
        assert!(store.close_channel(token, now).await.unwrap());
    }
    // Two visits to each at once, read up to i and i + 5 (the second also sent up to 2 i):
    // each moves the channel forward, never back, whatever order they commit in.
    let visits = (0..100).flat_map(|i| {
        [
            (i, Some(i as u64), None),
            (i, Some(i as u64 + 5), Some(2 * i as u64)),
        ]
    });
    let visits = visits.map(|(i, read, sent)| {
        let store = store.clone();
        let token = tokens[i].clone();
        async move {
            (
                i,
                store
                    .see_channel(&token, Timestamp::now(), read, sent)
                    .await
                    .unwrap(),
            )
        }
    });
    for (i, seen) in join_all(visits).await {
        assert_eq!(seen, i < 90, "visit to {i}");
    }
    for (i, token) in tokens.iter().enumerate().take(90) {
        let channel = store
            .channel(token, Timestamp::now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (channel.cursor, channel.sent),
            (i as u64 + 5, 2 * i as u64),
            "channel {i}"
        );
    }
    store.close().await;
}

/// One change to channel `i` of [`channel_changes_arriving_together_commit_together_each_answered_as_alone`].
type Change<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = (usize, &'static str, bool)> + 'a>>;

#[tokio::test]
async fn channel_changes_arriving_together_commit_together_each_answered_as_alone() {
    use herald::domain::channel::{CallbackRegistration, CallbackState};

    let test = TestStore::new().await;
    let store = test.open().await;
    let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
    let hour = jiff::SignedDuration::from_hours(1);
    // 120 opened at once, each answered and stored.
    let channels: Vec<Channel> = (0..120).map(|_| Channel::opened(now, now + hour)).collect();
    let opens = channels.iter().map(|channel| store.open_channel(channel));
    for opened in join_all(opens).await {
        opened.unwrap();
    }
    let tokens: Vec<_> = channels.iter().map(|c| c.token.clone()).collect();
    // 100..120 closed beforehand: a renewal or a registration there changes nothing.
    for token in &tokens[100..] {
        assert!(store.close_channel(token, now).await.unwrap());
    }
    let registration = move |i: usize| CallbackRegistration {
        uri: format!("http://127.0.0.1:1/callback/{i}"),
        payload: format!("payload {i}").into_bytes(),
        content_type: i.is_multiple_of(2).then(|| "text/plain".to_owned()),
        registered_at: now + jiff::SignedDuration::from_secs(1),
    };
    let renewed_to = move |i: usize| now + hour * 2 + jiff::SignedDuration::from_secs(i as i64);
    // All at once: 0..20 closed (80..100 twice: the twin finds it closed), 20..40 renewed,
    // 40..60 given a callback, 60..80 counted twice under a limit of one (the twin refused),
    // 100..110 renewed and 110..120 given a callback though closed.
    let mut changes: Vec<Change> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let twice = match i {
            60..100 => 2,
            _ => 1,
        };
        for _ in 0..twice {
            let (store, token) = (store.clone(), token.clone());
            let registration = registration(i);
            changes.push(Box::pin(async move {
                let (kind, changed) = match i {
                    0..20 | 80..100 => ("close", store.close_channel(&token, now).await),
                    20..40 | 100..110 => (
                        "renew",
                        store.renew_channel(&token, renewed_to(i), now).await,
                    ),
                    40..60 | 110..120 => (
                        "register",
                        store.register_callback(&token, &registration, now).await,
                    ),
                    _ => ("count", store.count_unauthenticated(&token, 7, 1).await),
                };
                (i, kind, changed.unwrap())
            }));
        }
    }
    let mut answers = std::collections::HashMap::<usize, Vec<bool>>::new();
    for (i, kind, changed) in join_all(changes).await {
        assert!(matches!(
            (i, kind),
            (0..20 | 80..100, "close")
                | (20..40 | 100..110, "renew")
                | (40..60 | 110..120, "register")
                | (60..80, "count")
        ));
        answers.entry(i).or_default().push(changed);
    }
    for (i, mut changed) in answers {
        changed.sort();
        let expected = match i {
            60..100 => vec![false, true],
            100..120 => vec![false],
            _ => vec![true],
        };
        assert_eq!(changed, expected, "channel {i}");
    }
    for (i, token) in tokens.iter().enumerate() {
        let channel = store.channel(token, now).await.unwrap().unwrap();
        let closed = matches!(i, 0..20 | 80..120);
        assert_eq!(channel.closed_at.is_some(), closed, "channel {i} closed");
        let expires_at = if (20..40).contains(&i) {
            renewed_to(i)
        } else {
            now + hour
        };
        assert_eq!(channel.expires_at, expires_at, "channel {i} expiry");
        let callback = (40..60)
            .contains(&i)
            .then(|| (registration(i), CallbackState::Armed));
        assert_eq!(channel.callback, callback, "channel {i} callback");
    }
    // The counted ones stay at their limit for the day.
    assert!(
        !store
            .count_unauthenticated(&tokens[60], 7, 1)
            .await
            .unwrap()
    );
    assert!(
        store
            .count_unauthenticated(&tokens[60], 8, 1)
            .await
            .unwrap()
    );
    store.close().await;
}

#[tokio::test]
async fn invocation_and_agent_writes_arriving_together_commit_together_each_answered_as_alone() {
    use herald::domain::invocation::{Invocation, InvocationId};
    use herald::store::queues::Completed;

    let test = TestStore::new().await;
    let store = test.open().await;
    let invoker = SourceName::parse("orders").unwrap();
    let agent = SourceName::parse("inbox").unwrap();
    let (node, other) = (NodeId::parse("n1").unwrap(), NodeId::parse("n2").unwrap());
    let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
    let window_start = now - jiff::SignedDuration::from_hours(1);
    // 60 raises at once: keys 0..50, the first ten raised twice. Of each twin one is new and
    // the other names it.
    let raises = (0..60).map(|i| {
        let invocation = Invocation {
            id: InvocationId::new(),
            invoker: invoker.clone(),
            key: format!("k{}", i % 50),
            payload: format!("<order n=\"{i}\"/>"),
            parameters: Default::default(),
            raised_at: now,
        };
        let store = store.clone();
        async move {
            let answer = store.raise_invocation(&invocation, window_start).await;
            (invocation, answer.unwrap())
        }
    });
    let mut named = std::collections::HashMap::<String, Vec<(InvocationId, bool)>>::new();
    for (invocation, (id, new)) in join_all(raises).await {
        assert_eq!(
            id == invocation.id,
            new,
            "{}: new exactly when named itself",
            invocation.key
        );
        named.entry(invocation.key).or_default().push((id, new));
    }
    assert_eq!(named.len(), 50);
    for (key, answers) in &named {
        assert_eq!(answers.iter().filter(|(_, new)| *new).count(), 1, "{key}");
        assert!(answers.iter().all(|(id, _)| *id == answers[0].0), "{key}");
    }
    let claimed = store
        .claim_invocations(&node, &invoker, now, 100)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 50);
    // All completed at once with a message for the agent, and ten of them also by a node that
    // does not run them: refused, nothing appended for them.
    let completion = |i: usize| crate::queue_batches::completion(&agent, i);
    let completions = claimed.iter().enumerate().flat_map(|(i, record)| {
        let owners = if i < 10 {
            vec![&node, &other]
        } else {
            vec![&node]
        };
        owners
            .into_iter()
            .map(move |owner| (i, record.invocation.id, owner))
    });
    let completions = completions.map(|(i, id, owner)| {
        let (store, completion) = (store.clone(), completion(i));
        async move {
            let completed = store.complete_invocation(id, owner, &completion, now).await;
            (owner.as_str().to_owned(), completed.unwrap())
        }
    });
    let mut seqs = Vec::new();
    for (owner, completed) in join_all(completions).await {
        match completed {
            Completed::Recorded(Some(event)) if owner == "n1" => seqs.push(event.seq),
            Completed::NotOwned if owner == "n2" => {}
            other => panic!("{owner}: {other:?}"),
        }
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=50).collect::<Vec<u64>>(),
        "one message each, in one log"
    );
    // Every message leased, then settled at once: half acked, half put back at once, and five
    // receipts that hold nothing refused.
    let leased = store
        .receive(&agent, 100, None, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(leased.len(), 50);
    let receipts = leased
        .iter()
        .map(|l| l.receipt.clone())
        .chain((0..5).map(|i| format!("{i}.nolease")));
    let settles = receipts.enumerate().map(|(i, receipt)| {
        let (store, agent) = (store.clone(), agent.clone());
        async move {
            let back_after = (i % 2 == 1).then_some(std::time::Duration::ZERO);
            (i, store.settle(&agent, &receipt, back_after).await.unwrap())
        }
    });
    for (i, settled) in join_all(settles).await {
        assert_eq!(settled, i < 50, "settle {i}");
    }
    let (_, back) = crate::queue_batches::lease_all(&store, &agent).await;
    let mut nacked: Vec<u64> = leased
        .iter()
        .skip(1)
        .step_by(2)
        .map(|l| l.event.seq)
        .collect();
    nacked.sort_unstable();
    assert_eq!(back, nacked, "the nacked ones, and only they, are back");
    store.close().await;
}

#[tokio::test]
async fn pulls_arriving_together_commit_together_each_answered_as_alone() {
    let test = TestStore::new().await;
    let store = test.open().await;
    let node = NodeId::parse("n1").unwrap();
    let source = SourceName::parse("default").unwrap();
    let subscriptions: Vec<Subscription> = (0..100).map(subscription).collect();
    for s in &subscriptions {
        assert_eq!(store.insert_subscription(s, &node, None).await.unwrap(), 0);
    }
    let events: Vec<NewEvent> = (0..10)
        .map(|i| NewEvent {
            action: "urn:test:tick".into(),
            payload: format!("<tick n=\"{i}\"/>"),
        })
        .collect();
    store
        .append_events(&source, &events, Timestamp::now())
        .await
        .unwrap();
    // The last ten ended: a Pull there finds nothing.
    for s in &subscriptions[90..] {
        let now = Timestamp::now();
        let ended = store.end_subscription(s.id, EndReason::Unsubscribed, now);
        assert!(ended.await.unwrap().is_some());
    }
    // Two Pulls each at once, at i % 10 and 3 further (past the head of 10: moves nothing),
    // and five of subscriptions that do not exist.
    let position = |i: usize, twin: usize| (i % 10 + 3 * twin) as u64;
    let pulls = (0..105).flat_map(|i| [(i, 0), (i, 1)]).map(|(i, twin)| {
        let store = store.clone();
        let id = subscriptions
            .get(i)
            .map_or_else(SubscriptionId::new_random, |s| s.id);
        async move {
            let pulled = store.advance_pulled(id, position(i, twin), Timestamp::now());
            (i, twin, pulled.await.unwrap())
        }
    });
    for (i, twin, pulled) in join_all(pulls).await {
        let Some(pulled) = pulled else {
            assert!(i >= 90, "Pull {i}/{twin} found nothing");
            continue;
        };
        assert!(i < 90, "Pull {i}/{twin} found an ended or unknown one");
        assert_eq!(pulled.head, 10, "Pull {i}/{twin}");
        if position(i, twin) <= 10 {
            assert!(
                pulled.cursor >= position(i, twin),
                "Pull {i}/{twin}: {pulled:?}"
            );
        }
    }
    for (i, s) in subscriptions.iter().enumerate().take(90) {
        let stands = store.advance_pulled(s.id, 0, Timestamp::now());
        let expected = [position(i, 0), position(i, 1)]
            .into_iter()
            .filter(|p| *p <= 10)
            .max()
            .unwrap();
        assert_eq!(stands.await.unwrap().unwrap().cursor, expected, "{i}");
    }
    store.close().await;
}
