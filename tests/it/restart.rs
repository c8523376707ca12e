//! The real `herald` binary: `kill -9` and restart keeps every acknowledged subscription and
//! none of the refused ones; SIGTERM stops it gracefully, finishing its sends and writing its
//! cursors.

use std::time::Duration;

use crate::harness::*;

#[tokio::test]
async fn kill_9_and_restart_keeps_every_acknowledged_subscription() {
    let store = TestStore::new().await;
    let mut process = Process::start(&store);
    let server = process.client();
    let mut acknowledged = Vec::new();
    for round in 0..10 {
        for version in [JAN2004, AUG2004, W3C2011] {
            let soap = if round % 2 == 0 { Soap::V11 } else { Soap::V12 };
            acknowledged.push(
                subscribe(
                    &server,
                    soap,
                    version,
                    "default",
                    "<wse:Expires>PT2H</wse:Expires>",
                )
                .await,
            );
            // A refused request in between must leave nothing behind.
            let reply = Message::new(
                soap,
                version,
                "Subscribe",
                subscribe_body(version, SINK, "<wse:Expires>PT0S</wse:Expires>"),
            )
            .send(&server, &server.url("/eventing/default"))
            .await;
            assert!(reply.status >= 400, "{}", reply.text);
        }
    }
    // Renew one and unsubscribe another just before the crash.
    let renewed = &acknowledged[0];
    let reply = renewed
        .request(Soap::V12, "Renew", "<wse:Expires>PT3H</wse:Expires>")
        .send(&server, &renewed.manager_url)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let gone = acknowledged.pop().unwrap();
    let reply = gone
        .request(Soap::V12, "Unsubscribe", "")
        .send(&server, &gone.manager_url)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    process.child.kill().expect("SIGKILL"); // kill -9: no chance to flush anything
    process.child.wait().unwrap();
    drop(process);

    let process = Process::start(&store);
    let server = process.client();
    let expected = acknowledged.len() as u64;
    assert_eq!(
        server
            .wait_active("default", expected, Duration::from_secs(10))
            .await,
        expected
    );
    for managed in &acknowledged {
        let managed = Managed {
            manager_url: rebase(&managed.manager_url, &server.base),
            ..managed.clone()
        };
        if managed.version.wse == WSE01 {
            // 2004/01 has no GetStatus: a Renew without Expires grants the default and proves
            // the subscription is there.
            let reply = managed
                .request(Soap::V12, "Renew", "")
                .send(&server, &managed.manager_url)
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            continue;
        }
        let reply = managed
            .request(Soap::V12, "GetStatus", "")
            .send(&server, &managed.manager_url)
            .await;
        assert_eq!(reply.status, 200, "{}: {}", managed.id, reply.text);
        let element = if managed.version.wse == WSE11 {
            "GrantedExpires"
        } else {
            "Expires"
        };
        let remaining = seconds(&reply.text_of(managed.version.wse, element).unwrap());
        assert!(
            (7000.0..=7200.0).contains(&remaining),
            "expiry kept: {remaining}"
        );
    }
    let gone = Managed {
        manager_url: server.url("/eventing/default/subscriptions"),
        ..gone
    };
    let reply = gone
        .request(Soap::V12, "Unsubscribe", "")
        .send(&server, &gone.manager_url)
        .await;
    assert!(
        reply.status >= 400,
        "an unsubscribed subscription stays gone: {}",
        reply.text
    );
}

/// SIGTERM while events are being published and delivered: herald exits cleanly, the sends in
/// flight finish, the cursors are written, and after a restart every acknowledged event
/// arrives once: none that a subscriber took before the stop comes again, none is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_sends_in_flight_and_writes_the_cursors() {
    use crate::delivery::{status_json, subscribe_to};
    use crate::publish::{TICK_ACTION, tick};
    use crate::sink::{Behavior, Sink};

    const SUBSCRIBERS: usize = 3;
    const ANSWER_MS: u64 = 200;
    let store = TestStore::new().await;
    // Failed attempts after the restart are retried within a second.
    let config = store.data_dir().join("retry.toml");
    std::fs::write(
        &config,
        "[sources.default]\nretry_initial = \"PT0.2S\"\nretry_max = \"PT1S\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let sink = Sink::start().await;
    let paths: Vec<String> = (0..SUBSCRIBERS).map(|i| format!("term{i}")).collect();
    let mut process = Process::start_with(&store, &["--config", &config]);
    let server = process.client();
    let mut ids = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        // Each answer takes 200 ms, so a send is nearly always in flight.
        sink.behave(path, Behavior::Slow(ANSWER_MS));
        let version = [AUG2004, W3C2011, JAN2004][i % 3];
        let extra = "<wse:Expires>PT1H</wse:Expires>";
        ids.push(
            subscribe_to(&server, Soap::V12, version, &sink.url(path), extra)
                .await
                .id,
        );
    }
    // Publish an event every 20 ms until herald stops taking them.
    let published = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let publisher = {
        let client = http_client();
        let url = server.url("/api/v1/sources/default/events");
        let published = published.clone();
        tokio::spawn(async move {
            let mut acknowledged = 0u64;
            for n in 0..1000 {
                let sent = client
                    .post(&url)
                    .header("Content-Type", "application/xml")
                    .header("Herald-Action", TICK_ACTION)
                    .body(tick(n))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().as_u16() == 202 => {
                        acknowledged = n + 1;
                        published.store(acknowledged, std::sync::atomic::Ordering::Release);
                    }
                    _ => break,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acknowledged
        })
    };
    // At least 1.5 s and 20 events in (on a busy machine the events take longer than 1.5 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..600 {
        if published.load(std::sync::atomic::Ordering::Acquire) >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let terminated = std::time::Instant::now();
    process.terminate();
    let mut exited = None;
    for _ in 0..400 {
        if let Some(status) = process.child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = exited.expect("herald exits within 20 s of SIGTERM");
    assert!(status.success(), "clean exit: {status:?}");
    let acknowledged = publisher.await.expect("publisher");
    assert!(acknowledged >= 20, "only {acknowledged} events published");

    // What each subscriber took before the stop, and the sends that were in flight at SIGTERM.
    let mut delivered = Vec::new();
    let mut in_flight = 0;
    for path in &paths {
        let received = sink.accepted(path);
        let ticks: Vec<u64> = received.iter().filter_map(|r| r.tick).collect();
        assert!(
            !ticks.is_empty(),
            "{path}: nothing delivered before the stop"
        );
        assert_eq!(
            ticks,
            (0..ticks.len() as u64).collect::<Vec<_>>(),
            "{path}: in order, once"
        );
        let answered_after_stop = received
            .iter()
            .any(|r| r.at < terminated && r.at + Duration::from_millis(ANSWER_MS) > terminated);
        in_flight += usize::from(answered_after_stop);
        delivered.push(ticks.len() as u64);
        // From now on the subscriber refuses: the cursor cannot move after the restart.
        sink.behave(path, Behavior::AlwaysFail);
    }
    assert!(in_flight > 0, "no send was in flight at SIGTERM");
    println!(
        "SIGTERM with {in_flight} of {SUBSCRIBERS} sends in flight; {acknowledged} events acknowledged, {delivered:?} delivered"
    );

    let process = Process::start_with(&store, &["--config", &config]);
    let server = process.client();
    for ((path, id), delivered) in paths.iter().zip(&ids).zip(&delivered) {
        // The first attempt after the restart is the first event not yet delivered.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let first = loop {
            let failed = sink.received(path).into_iter().find(|r| r.status == 503);
            if let Some(first) = failed {
                break first;
            }
            assert!(std::time::Instant::now() < deadline, "{path}: no attempt");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(
            first.tick,
            Some(*delivered),
            "{path}: resumed where it stopped"
        );
        let status = status_json(&server, id).await;
        assert_eq!(
            status["cursor"], *delivered,
            "{path}: cursor written: {status}"
        );
        sink.behave(path, Behavior::Accept);
    }
    for path in &paths {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ticks = sink.accepted_ticks(path);
            if ticks.len() as u64 >= acknowledged {
                // Every acknowledged event once, in order; an event whose publish was cut
                // short by the stop may follow them.
                assert_eq!(
                    ticks[..acknowledged as usize],
                    (0..acknowledged).collect::<Vec<_>>(),
                    "{path}"
                );
                assert!(
                    ticks.windows(2).all(|w| w[1] == w[0] + 1),
                    "{path}: a duplicate or a gap after the acknowledged events: {ticks:?}"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path}: {} of {acknowledged} events arrived",
                ticks.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn kill_9_in_the_middle_of_10000_events_to_10_subscribers_loses_nothing() {
    use std::collections::HashSet;

    use crate::delivery::subscribe_to;
    use crate::publish::{TICK_ACTION, publish_batch, tick};
    use crate::sink::Sink;

    const SUBSCRIBERS: usize = 10;
    const BATCHES: u64 = 100;
    const PER_BATCH: u64 = 100;
    let store = TestStore::new().await;
    let sink = Sink::start().await;
    let mut process = Process::start(&store);
    let mut server = process.client();
    let paths: Vec<String> = (0..SUBSCRIBERS).map(|i| format!("crash{i}")).collect();
    for (i, path) in paths.iter().enumerate() {
        let version = [AUG2004, W3C2011, JAN2004][i % 3];
        let extra = "<wse:Expires>PT1H</wse:Expires>";
        subscribe_to(&server, Soap::V12, version, &sink.url(path), extra).await;
    }
    let mut acknowledged = HashSet::new();
    let started = std::time::Instant::now();
    for batch in 0..BATCHES {
        if batch == BATCHES / 2 {
            // Half published, deliveries in flight: no warning, no flush.
            process.child.kill().expect("SIGKILL");
            process.child.wait().unwrap();
            let delivered_before: usize = paths.iter().map(|p| sink.accepted_count(p)).sum();
            println!(
                "killed after {} events acknowledged, {delivered_before} deliveries made",
                acknowledged.len()
            );
            process = Process::start(&store);
            server = process.client();
        }
        let events: Vec<(String, String)> = (0..PER_BATCH)
            .map(|i| (TICK_ACTION.to_owned(), tick(batch * PER_BATCH + i)))
            .collect();
        publish_batch(&server, "default", &events).await;
        acknowledged.extend((0..PER_BATCH).map(|i| batch * PER_BATCH + i));
    }
    let deadline = started + Duration::from_secs(240);
    let mut duplicates = 0;
    for path in &paths {
        loop {
            let received = sink.accepted_ticks(path);
            let unique: HashSet<u64> = received.iter().copied().collect();
            let lost = acknowledged.difference(&unique).count();
            if lost == 0 {
                duplicates += received.len() - unique.len();
                // In order apart from the redelivered stretch: each first arrival is ascending.
                let mut seen = HashSet::new();
                let firsts: Vec<u64> = received
                    .iter()
                    .copied()
                    .filter(|t| seen.insert(*t))
                    .collect();
                assert!(
                    firsts.windows(2).all(|w| w[0] < w[1]),
                    "{path}: first arrivals out of order"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path}: {lost} of {} acknowledged events never arrived",
                acknowledged.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    println!(
        "{} events x {SUBSCRIBERS} subscribers: losses 0, duplicates {duplicates}, in {:?}",
        acknowledged.len(),
        started.elapsed()
    );
}
