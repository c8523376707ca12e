//! Compaction: an event every subscription's stored cursor has passed is deleted once older
//! than `delivery.event_retention`; an event some subscription still needs stays, however old.

use std::time::{Duration, Instant};

use crate::delivery::subscribe_to;
use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, tick};
use crate::sink::{Behavior, Sink};

const RETENTION: Duration = Duration::from_millis(1500);
const STORED: &str = "SELECT seq FROM events WHERE source = 'default' ORDER BY seq";

/// Waits until the stored sequence numbers are `expected`; returns when that was seen.
async fn wait_stored(store: &TestStore, expected: &[i64], within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        let stored = store.integers(STORED).await;
        if stored == expected {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "stored events {stored:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passed_events_are_compacted_after_the_window_and_needed_ones_stay() {
    let store = TestStore::new().await;
    let server = TestServer::start_in(&store, |config| {
        config.delivery.retention = RETENTION;
        config.delivery.compaction_interval = Duration::from_millis(100);
        for source in &mut config.sources {
            source.retry.initial = Duration::from_millis(100);
            source.retry.max = Duration::from_millis(200);
        }
    })
    .await;
    let sink = Sink::start().await;
    for path in ["prompt", "lagging"] {
        let extra = "<wse:Expires>PT1H</wse:Expires>";
        subscribe_to(&server, Soap::V12, W3C2011, &sink.url(path), extra).await;
    }

    // Three events both subscribers take: kept for the window, then deleted.
    let before_first = Instant::now();
    for t in 0..3 {
        publish(&server, "default", TICK_ACTION, &tick(t)).await;
    }
    for path in ["prompt", "lagging"] {
        sink.wait_accepted(path, 3, Duration::from_secs(10)).await;
    }
    assert_eq!(
        store.integers(STORED).await,
        [1, 2, 3],
        "kept within the window"
    );

    // A fourth that one subscriber refuses: it stays past the window.
    sink.behave("lagging", Behavior::AlwaysFail);
    let before_fourth = Instant::now();
    publish(&server, "default", TICK_ACTION, &tick(3)).await;
    sink.wait_accepted("prompt", 4, Duration::from_secs(10))
        .await;
    let compacted = wait_stored(&store, &[4], Duration::from_secs(10)).await;
    let kept_for = compacted.duration_since(before_first);
    assert!(kept_for >= RETENTION, "deleted after {kept_for:?}");
    println!("events every cursor had passed were deleted after {kept_for:?}");
    tokio::time::sleep_until((before_fourth + RETENTION * 2).into()).await;
    assert_eq!(
        store.integers(STORED).await,
        [4],
        "still needed by the lagging subscriber, twice the window after it was published"
    );

    // The lagging subscriber recovers: it gets the event, and then the event goes.
    sink.behave("lagging", Behavior::Accept);
    let ticks = sink
        .wait_accepted("lagging", 4, Duration::from_secs(10))
        .await;
    assert_eq!(ticks.last().and_then(|r| r.tick), Some(3));
    wait_stored(&store, &[], Duration::from_secs(10)).await;
    server.stop().await;
}
