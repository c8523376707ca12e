//! The store's group commit of new subscriptions, on the store under test: Subscribes that
//! arrive together share one commit (on PostgreSQL one statement), each gets its own starting
//! cursor, and one row that cannot be written refuses only itself.

use futures_util::future::join_all;
use herald::domain::event::NewEvent;
use herald::domain::expiry::ExpiryKind;
use herald::domain::subscription::{
    EndpointRef, EventingVersion, LogKind, NotificationFormat, ReaderDelivery, SoapVersion,
    SourceName, Subscription, SubscriptionId, WireDialect, WsaVersion,
};
use herald::store::NodeId;
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
        end_to: i.is_multiple_of(2).then(|| EndpointRef {
            address: format!("http://127.0.0.1:1/end/{i}"),
            reference_parameters: Vec::new(),
            reference_properties: Vec::new(),
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
    let subscriptions: Vec<Subscription> = (0..300).map(subscription).collect();
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
    let mut after = None;
    loop {
        let page = store
            .owned_subscriptions(&node, Timestamp::now(), after, 128)
            .await
            .unwrap();
        owned += page.items.len();
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(owned, 300);
    store.close().await;
}
