//! The WS-Management delivery modes end to end, each with a real sink on loopback that speaks
//! it (`wsman:Ack`s, batches, heartbeats): PushWithAck (the next event only after the ack; a
//! missing, wrong or late ack is a failed delivery, retried, and in the end DeliveryFailure),
//! Events (batches bounded by MaxElements, MaxTime and MaxEnvelopeSize with each Policy, the
//! cursor moving by the whole batch), and heartbeats while idle.

use std::time::Duration;

use herald::config::Config;

use crate::delivery::{fast_retries, wait_status};
use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, publish_batch, tick};
use crate::wsman::{EVENT_LOG, PUSH, manager_of, send, wsman_sources};
use crate::wsman_sink::{ACK, Acks, DROPPED, EVENTS, HEARTBEAT, Message, WsmanSink};

pub const PUSH_WITH_ACK: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/PushWithAck";
pub const EVENTS_MODE: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Events";

/// The headers of a WS-Man Subscribe to the event log resource.
pub fn resource_headers() -> String {
    format!(
        r#"<w:ResourceURI s:mustUnderstand="true">{EVENT_LOG}</w:ResourceURI>
    <w:MaxEnvelopeSize s:mustUnderstand="true">512000</w:MaxEnvelopeSize>
    <w:OperationTimeout>PT60.000S</w:OperationTimeout>"#
    )
}

/// A Subscribe shaped as a Windows collector sends it (MS-WSMV 2.2.4.41): EndTo and NotifyTo
/// with an `e:Identifier` reference property, heartbeats, connection retries, locale,
/// encoding, `delivery_extra` in `wse:Delivery` and `subscribe_extra` after the filter.
pub fn windows_subscribe(
    mode: &str,
    notify_to: &str,
    delivery_extra: &str,
    subscribe_extra: &str,
) -> String {
    format!(
        r#"<e:Subscribe>
      <e:EndTo><a:Address>{notify_to}-end</a:Address>
        <a:ReferenceProperties><e:Identifier>0E4E1E2A-7D63-4C52-9C5F-3D1A7B2C9E10</e:Identifier></a:ReferenceProperties>
      </e:EndTo>
      <e:Delivery Mode="{mode}">
        <e:NotifyTo><a:Address>{notify_to}</a:Address>
          <a:ReferenceProperties><e:Identifier>0E4E1E2A-7D63-4C52-9C5F-3D1A7B2C9E10</e:Identifier></a:ReferenceProperties>
        </e:NotifyTo>
        <w:ConnectionRetry Total="5">PT0.1S</w:ConnectionRetry>
        <w:Locale xml:lang="en-US"/>
        <w:ContentEncoding>UTF-16</w:ContentEncoding>
        {delivery_extra}
      </e:Delivery>
      <e:Expires>PT600.000S</e:Expires>
      {subscribe_extra}
    </e:Subscribe>"#
    )
}

/// A Subscribe shaped as openwsman's `wsman_client` sends it: NotifyTo alone, the mode's
/// options in `wse:Delivery`.
pub fn openwsman_subscribe(mode: &str, notify_to: &str, delivery_extra: &str) -> String {
    format!(
        r#"<e:Subscribe>
        <e:Delivery Mode="{mode}">
          <e:NotifyTo><a:Address>{notify_to}</a:Address></e:NotifyTo>
          {delivery_extra}
        </e:Delivery>
        <e:Expires>PT600S</e:Expires>
      </e:Subscribe>"#
    )
}

/// Subscribes at `/wsman`; returns the manager's reference parameters as header blocks.
pub async fn subscribe(server: &TestServer, body: &str) -> String {
    let reply = send(
        server,
        &server.url("/wsman"),
        "Subscribe",
        &resource_headers(),
        body,
    )
    .await;
    manager_of(&reply).1
}

/// The `uuid:…` identifier among a manager's reference parameters.
pub fn identifier(parameters: &str) -> String {
    parameters
        .split("uuid:")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .map(|uuid| format!("uuid:{uuid}"))
        .unwrap_or_else(|| panic!("no identifier in {parameters}"))
}

fn ticks(messages: &[Message]) -> Vec<u64> {
    messages.iter().flat_map(|m| m.ticks.clone()).collect()
}

fn wsman_fast(config: &mut Config) {
    wsman_sources(config);
    fast_retries(config);
    config.client.request_timeout = Duration::from_millis(500);
}

#[tokio::test]
async fn push_with_ack_sends_the_next_event_only_after_the_ack() {
    let server = TestServer::start_with(wsman_fast).await;
    let sink = WsmanSink::start().await;
    sink.acks("missing", Acks::MissingTimes(1));
    sink.acks("wrong", Acks::WrongTimes(1));
    sink.acks("late", Acks::LateTimes(1, 1500));
    for path in ["missing", "wrong", "late"] {
        let body = windows_subscribe(PUSH_WITH_ACK, &sink.url(path), "", "");
        subscribe(&server, &body).await;
    }
    for n in 1..=3 {
        publish(&server, "default", TICK_ACTION, &tick(n)).await;
    }
    for path in ["missing", "wrong", "late"] {
        let received = sink
            .wait(path, Duration::from_secs(10), |m| ticks(m).len() >= 4)
            .await;
        assert_eq!(
            ticks(&received),
            [1, 1, 2, 3],
            "{path}: event 1 again until acknowledged, the next only after its ack"
        );
        assert!(received.iter().all(|m| m.ack_requested), "{path}");
        assert!(received.iter().all(|m| m.action == TICK_ACTION), "{path}");
        assert_eq!(
            received[0].message_id, received[1].message_id,
            "{path}: the same message again"
        );
        assert!(
            received[1].at - received[0].at >= Duration::from_millis(45),
            "{path}: retried after the back-off"
        );
    }
    // "late": the first ack came after the request timeout; it did not count.
    let late = sink.received("late");
    assert!(late[1].at - late[0].at >= Duration::from_millis(500));
}

#[tokio::test]
async fn push_with_ack_never_acknowledged_ends_in_delivery_failure() {
    let server = TestServer::start_with(wsman_fast).await;
    let sink = WsmanSink::start().await;
    sink.acks("never", Acks::Never);
    let body = openwsman_subscribe(PUSH_WITH_ACK, &sink.url("never"), "");
    let id = identifier(&subscribe(&server, &body).await);
    publish(&server, "default", TICK_ACTION, &tick(1)).await;
    let status = wait_status(&server, &id, Duration::from_secs(10), |s| {
        s["status"] == "ended"
    })
    .await;
    assert_eq!(status["end_reason"], "delivery_failure", "{status}");
    let received = sink.received("never");
    assert!(received.len() >= 2, "retried: {}", received.len());
    assert!(received.iter().all(|m| m.ticks == [1]));
}

#[tokio::test]
async fn a_sink_refusing_delivery_ends_the_subscription_at_once() {
    let server = TestServer::start_with(|config| {
        wsman_sources(config);
        // Patient: only the refusal can end it within the test.
        for source in &mut config.sources {
            source.retry.give_up_after = Duration::from_secs(600);
        }
    })
    .await;
    let sink = WsmanSink::start().await;
    sink.acks("refusing", Acks::Refuse);
    let body = windows_subscribe(EVENTS_MODE, &sink.url("refusing"), "", "");
    let id = identifier(&subscribe(&server, &body).await);
    publish(&server, "default", TICK_ACTION, &tick(1)).await;
    let status = wait_status(&server, &id, Duration::from_secs(10), |s| {
        s["status"] == "ended"
    })
    .await;
    assert_eq!(status["end_reason"], "delivery_failure", "{status}");
    assert_eq!(sink.received("refusing").len(), 1, "not retried");
}

#[tokio::test]
async fn events_mode_batches_by_max_elements_and_moves_by_the_whole_batch() {
    let server = TestServer::start_with(wsman_fast).await;
    let sink = WsmanSink::start().await;
    sink.acks("batches", Acks::WrongTimes(1));
    let body = windows_subscribe(
        EVENTS_MODE,
        &sink.url("batches"),
        "<w:MaxElements>3</w:MaxElements><w:MaxTime>PT2S</w:MaxTime>",
        "<w:SendBookmarks/>",
    );
    subscribe(&server, &body).await;
    let events: Vec<(String, String)> =
        (1..=7).map(|n| (TICK_ACTION.to_owned(), tick(n))).collect();
    let published = std::time::Instant::now();
    let seqs = publish_batch(&server, "default", &events).await;
    let received = sink
        .wait("batches", Duration::from_secs(10), |m| m.len() >= 4)
        .await;
    let batches: Vec<Vec<u64>> = received.iter().map(|m| m.ticks.clone()).collect();
    assert_eq!(
        batches,
        [vec![1, 2, 3], vec![1, 2, 3], vec![4, 5, 6], vec![7]],
        "the unacknowledged batch again, whole; then on"
    );
    assert_eq!(received[0].message_id, received[1].message_id);
    for message in &received {
        assert_eq!(message.action, EVENTS);
        assert!(message.ack_requested);
        assert!(message.event_actions.iter().all(|a| a == TICK_ACTION));
        assert_eq!(
            message.bookmark.as_deref(),
            Some(
                seqs[message.ticks[message.ticks.len() - 1] as usize - 1]
                    .to_string()
                    .as_str()
            ),
            "the bookmark names the batch's last event"
        );
    }
    // The full batches went at once; the partial one waited until its event was MaxTime old.
    assert!(received[2].at - published < Duration::from_millis(1500));
    assert!(received[3].at - published >= Duration::from_millis(1980));
}

#[tokio::test]
async fn a_batch_that_fills_goes_before_max_time() {
    let server = TestServer::start_with(wsman_fast).await;
    let sink = WsmanSink::start().await;
    let body = openwsman_subscribe(
        EVENTS_MODE,
        &sink.url("fills"),
        "<w:MaxElements>3</w:MaxElements><w:MaxTime>PT5S</w:MaxTime>",
    );
    subscribe(&server, &body).await;
    let first = std::time::Instant::now();
    publish(&server, "default", TICK_ACTION, &tick(1)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 2..=3 {
        publish(&server, "default", TICK_ACTION, &tick(n)).await;
    }
    let received = sink
        .wait("fills", Duration::from_secs(10), |m| !m.is_empty())
        .await;
    assert_eq!(received[0].ticks, [1, 2, 3]);
    assert!(
        received[0].at - first < Duration::from_secs(2),
        "full: sent without waiting for MaxTime ({:?})",
        received[0].at - first
    );
}

#[tokio::test]
async fn max_envelope_size_cuts_batches_and_its_policy_decides_an_event_too_large() {
    let server = TestServer::start_with(wsman_fast).await;
    let sink = WsmanSink::start().await;
    let mut ids = Vec::new();
    for policy in ["Notify", "Skip", "CancelSubscription"] {
        let extra = format!(
            r#"<w:MaxElements>10</w:MaxElements><w:MaxTime>PT0.3S</w:MaxTime><w:MaxEnvelopeSize Policy="{policy}">1600</w:MaxEnvelopeSize>"#
        );
        let body = openwsman_subscribe(EVENTS_MODE, &sink.url(policy), &extra);
        ids.push(identifier(&subscribe(&server, &body).await));
    }
    let big = format!(
        r#"<e:tick xmlns:e="urn:test" n="3" pad="{}"/>"#,
        "x".repeat(3000)
    );
    let events = vec![
        (TICK_ACTION.to_owned(), tick(1)),
        (TICK_ACTION.to_owned(), tick(2)),
        (TICK_ACTION.to_owned(), big),
        (TICK_ACTION.to_owned(), tick(4)),
    ];
    publish_batch(&server, "default", &events).await;

    let notify = sink
        .wait("Notify", Duration::from_secs(10), |m| {
            m.iter().flat_map(|m| &m.ticks).any(|n| *n == 4)
        })
        .await;
    let shapes: Vec<(&str, Vec<u64>)> = notify
        .iter()
        .map(|m| (m.action.as_str(), m.ticks.clone()))
        .collect();
    assert_eq!(ticks(&notify), [1, 2, 4], "{shapes:?}");
    let dropped: Vec<&Message> = notify.iter().filter(|m| m.action == DROPPED).collect();
    assert_eq!(dropped.len(), 1, "{shapes:?}");
    assert!(
        dropped[0]
            .body
            .contains(&format!("Action=\"{TICK_ACTION}\"")),
        "{}",
        dropped[0].body
    );
    let skip = sink
        .wait("Skip", Duration::from_secs(10), |m| {
            m.iter().flat_map(|m| &m.ticks).any(|n| *n == 4)
        })
        .await;
    assert_eq!(ticks(&skip), [1, 2, 4]);
    assert!(skip.iter().all(|m| m.action == EVENTS));
    for message in notify.iter().chain(&skip) {
        assert!(message.body.len() <= 1600, "{}", message.body.len());
    }
    let status = wait_status(&server, &ids[2], Duration::from_secs(10), |s| {
        s["status"] == "ended"
    })
    .await;
    assert_eq!(status["end_reason"], "delivery_failure", "{status}");
    assert_eq!(ticks(&sink.received("CancelSubscription")), [1, 2]);
}

#[tokio::test]
async fn heartbeats_while_idle_in_push_and_events_modes() {
    let server = TestServer::start_with(wsman_sources).await;
    let sink = WsmanSink::start().await;
    for (mode, path) in [(PUSH, "push"), (EVENTS_MODE, "events")] {
        let body = windows_subscribe(
            mode,
            &sink.url(path),
            "<w:Heartbeats>PT0.4S</w:Heartbeats>",
            "",
        );
        subscribe(&server, &body).await;
    }
    for path in ["push", "events"] {
        let received = sink
            .wait(path, Duration::from_secs(5), |m| m.len() >= 3)
            .await;
        for message in &received {
            assert_eq!(message.action, HEARTBEAT);
            assert!(message.ticks.is_empty());
        }
        for pair in received.windows(2) {
            assert!(pair[1].at - pair[0].at >= Duration::from_millis(350));
        }
        if path == "events" {
            assert!(received[0].ack_requested);
            assert!(received[0].body.contains("Events"), "{}", received[0].body);
        } else {
            assert!(!received[0].ack_requested);
        }
    }
    // An event delivered counts as a sign of life: the next heartbeat waits a whole interval.
    publish(&server, "default", TICK_ACTION, &tick(1)).await;
    let received = sink
        .wait("push", Duration::from_secs(5), |m| {
            m.iter().any(|m| m.ticks == [1])
                && m.last()
                    .is_some_and(|last| last.action == HEARTBEAT && last.ticks.is_empty())
                && m.iter().position(|m| m.ticks == [1]) < Some(m.len() - 1)
        })
        .await;
    let at = received.iter().position(|m| m.ticks == [1]).unwrap();
    assert!(received[at + 1].at - received[at].at >= Duration::from_millis(350));
    let _ = ACK;
}
