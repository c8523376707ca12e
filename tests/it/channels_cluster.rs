//! Push channels on several nodes (PostgreSQL): a device reads from any node what was sent
//! through any other, and presence is measured on the database's clock, so a node whose own
//! clock is a day ahead judges a device's status, counts the daily limit and fires callbacks
//! as its peers do.

use std::time::{Duration, Instant};

use herald::domain::clock::Clock;
use herald::store::NodeId;
use jiff::{SignedDuration, Timestamp};

use crate::channel_callbacks::{Receiver, register};
use crate::channels::{TOKEN, headers_of, open, open_stream, poll, read_events, send};
use crate::harness::*;

/// `channel` as served by the node at `base`.
fn on(channel: &str, base: &str) -> String {
    format!("{base}{}", &channel[channel.find("/channels/").unwrap()..])
}

/// A node on `store` named `name` whose clock runs `ahead` of the real one.
async fn node(store: &TestStore, name: &str, ahead: SignedDuration) -> TestServer {
    TestServer::start_in(store, |config| {
        config.api_token = Some(TOKEN.into());
        config.node_id = NodeId::parse(name);
        config.clock = Clock::Tokio {
            wall: Timestamp::now().checked_add(ahead).unwrap(),
            instant: tokio::time::Instant::now(),
        };
        config.channels.presence.connected_for = Duration::from_millis(600);
        config.channels.presence.grace = Duration::from_millis(600);
        config.channels.daily_limit = 3;
        config.channels.callback_retry.initial = Duration::from_millis(100);
        config.sweep_interval = Duration::from_millis(50);
    })
    .await
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set HERALD_TEST_DATABASE and pass -- --include-ignored"]
async fn a_device_reads_from_any_node_and_nodes_agree_on_its_status_whatever_their_clocks() {
    let store = TestStore::new().await;
    assert!(
        store.is_postgres(),
        "several nodes need {DATABASE_VARIABLE} (PostgreSQL)"
    );
    let a = node(&store, "channels-a", SignedDuration::ZERO).await;
    // Node b's clock is 25 hours ahead: another day, and far past every presence threshold.
    let b = node(&store, "channels-b", SignedDuration::from_hours(25)).await;
    let receiver = Receiver::start().await;

    // Opened on a, streamed from a, sent through both: b, whose clock says the stream was
    // there a day ago, must still see the device connected.
    let channel = open(&a).await;
    let on_b = on(&channel, &b.base);
    let mut stream = open_stream(&a, &channel, None).await;
    let mut buffer = String::new();
    for n in 1..=6 {
        let through = if n % 2 == 0 { &a } else { &b };
        let response = send(
            through,
            &on(&channel, &through.base),
            &format!("<n>{n}</n>"),
            true,
        )
        .await;
        assert_eq!(
            (response.status().as_u16(), headers_of(&response)),
            (
                200,
                ("Received".into(), "Connected".into(), "Active".into())
            ),
            "notification {n}"
        );
    }
    let first = read_events(&mut stream, &mut buffer, 4, Duration::from_secs(10)).await;
    assert_eq!(first.len(), 4, "{first:?}");
    // The stream drops; the device resumes on b, after the last id a sent.
    drop(stream);
    let mut stream = open_stream(&b, &on_b, Some(first.last().unwrap().0)).await;
    let mut buffer = String::new();
    let rest = read_events(&mut stream, &mut buffer, 2, Duration::from_secs(10)).await;
    // And b's stream gets what a takes after it opened (b hears of it by polling the store).
    let sent = send(&a, &channel, "<n>7</n>", true).await;
    assert_eq!(headers_of(&sent).0, "Received");
    let seventh = read_events(&mut stream, &mut buffer, 1, Duration::from_secs(10)).await;
    let bodies: Vec<String> = first
        .iter()
        .chain(&rest)
        .chain(&seventh)
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(
        bodies,
        (1..=7).map(|n| format!("<n>{n}</n>")).collect::<Vec<_>>(),
        "in order, nothing lost, nothing twice"
    );
    drop(stream);

    // The daily limit is one count of one day, whichever node's clock says what.
    let mut accepted = 0;
    for n in 0..6 {
        let through = if n % 2 == 0 { &a } else { &b };
        let response = send(through, &on(&channel, &through.base), "<u/>", false).await;
        match response.status().as_u16() {
            200 => accepted += 1,
            406 => {}
            other => panic!("unauthenticated send {n}: {other}"),
        }
    }
    assert_eq!(accepted, 3, "three a day, counted on one clock");
    poll(&a, &channel, "after=10").await;

    // Registered through b while the device polls a: b must not take it for inactive.
    let registered = register(
        &b,
        &on_b,
        Some(&receiver.url),
        b"gone".to_vec(),
        "text/plain",
        Some(TOKEN),
    )
    .await;
    assert_eq!(registered.status(), 200);
    let polling = Instant::now();
    while polling.elapsed() < Duration::from_secs(2) {
        poll(&a, &channel, "wait=0").await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        receiver.got().is_empty(),
        "fired while the device was connected: {:?}",
        receiver.got()
    );
    // The device goes away: it fires, once, though both nodes look.
    let got = receiver.wait(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.got().len(), 1, "fired once");
    assert_eq!(&receiver.got()[0].1[..], b"gone");
    a.stop().await;
    b.stop().await;
}
