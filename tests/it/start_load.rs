//! A start with many stored subscriptions answers at once and hands them over in the
//! background: a Subscribe, a publish and an end that arrive meanwhile are served, each stored
//! subscriber gets the event once, and one ended while the load is under way stays ended.
//! (The narrow race of an end between the load reading a page and handing that row over is
//! the rule of `delivery/loading.rs`, tested there.)

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use herald::domain::subscription::Subscription;
use herald::store::NodeId;

use crate::harness::*;
use crate::publish::{publish, tick};
use crate::sink::Sink;

/// Enough that loading them takes longer than a few requests do, even in a release build.
const STORED: usize = 50_000;
/// Sink paths the stored subscribers share.
const PATHS: usize = 10;

/// A stored push subscription to `notify_to` that never expires.
fn stored(i: usize, notify_to: String) -> Subscription {
    let mut subscription = crate::group_commit::subscription(i);
    subscription.notify_to.address = notify_to;
    subscription.end_to = None;
    subscription.expires_at = None;
    subscription
}

fn gauge(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn a_start_answers_while_it_loads_and_leaves_what_changed_meanwhile_alone() {
    let store = TestStore::new().await;
    let sink = Sink::start().await;
    let node = NodeId::parse("loader").unwrap();

    // Stored straight into the store, owned by the node that will start. Both stores hand
    // them over in the order they lie in the table, the order stored here: the subscription
    // with the highest id, stored last, is handed over last.
    let mut subscriptions: Vec<Subscription> = (0..STORED)
        .map(|i| stored(i, sink.url(&format!("s{}", i % PATHS))))
        .collect();
    subscriptions.sort_by_key(|s| s.id.key());
    let last = subscriptions.last_mut().unwrap();
    let short = std::mem::replace(&mut last.notify_to.address, sink.url("ended"));
    let ended = last.id;
    {
        let opened = store.open().await;
        for chunk in subscriptions.chunks(2000) {
            let writes = chunk
                .iter()
                .map(|s| opened.insert_subscription(s, &node, None));
            for written in join_all(writes).await {
                written.expect("stored");
            }
        }
        opened.close().await;
    }

    let config = store.data_dir().join("load.toml");
    std::fs::write(&config, "[sources.default]\nmax_subscriptions = 100000\n").unwrap();
    let spawned = Instant::now();
    let process = Process::start_with(
        &store,
        // A lease that outlasts a busy debug build's slowest writes: this node takes nothing
        // over, and a lapse (it lets go of everything and loads again) is not what is tested.
        &[
            "--node-id",
            "loader",
            "--lease-ttl-ms",
            "30000",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let server = process.client();
    let ready = spawned.elapsed();

    // Straight away: herald answers, and says it is still loading.
    let metrics = server.metrics().await;
    assert_eq!(
        gauge(&metrics, "herald_loading"),
        Some(1),
        "still loading {ready:?} after the spawn"
    );
    let response = server
        .client
        .delete(server.url(&format!("/api/v1/subscriptions/{}", ended.key())))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "the end of one not loaded yet: {}",
        response.status()
    );
    subscribe(
        &server,
        Soap::V12,
        W3C2011,
        "default",
        "<wse:Expires>PT1H</wse:Expires>",
    )
    .await;
    let answered = spawned.elapsed();
    publish(&server, "default", "urn:test:tick", &tick(1)).await;

    // Every stored subscriber, and no other, gets the event once.
    for path in 0..PATHS {
        let path = format!("s{path}");
        let expected = STORED / PATHS - usize::from(short == sink.url(&path));
        let got = sink
            .wait_accepted(&path, expected, Duration::from_secs(120))
            .await;
        assert!(got.iter().all(|r| r.tick() == Some(1)), "{path}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = server.metrics().await;
        if gauge(&metrics, "herald_loading") == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "still loading after a minute");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let loaded = spawned.elapsed();
    assert_eq!(
        server.active("default").await,
        STORED as u64,
        "the stored ones but the ended one, and the new one"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.received("ended").len(), 0, "the ended one stays ended");
    println!("ready {ready:?}, requests answered by {answered:?}, loaded at {loaded:?}");
}
