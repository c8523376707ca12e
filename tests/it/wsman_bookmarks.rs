//! WS-Management bookmarks: with `wsman:SendBookmarks` each delivery names herald's position;
//! a later Subscribe with that `wsman:Bookmark` resumes right after it, across a restart (none
//! lost, none before it again), `…/bookmark/earliest` starts from the oldest event retained,
//! and a bookmark herald cannot honour gets `wsman:InvalidBookmark`.

use std::time::Duration;

use crate::harness::*;
use crate::publish::{TICK_ACTION, publish};
use crate::wsman::{PUSH, manager_of, send, wsman_sources};
use crate::wsman_modes::{openwsman_subscribe, resource_headers, subscribe, windows_subscribe};
use crate::wsman_sink::{WSMAN, WsmanSink};

const EARLIEST: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/bookmark/earliest";
const WSMAN_FAULT: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault";

fn tick(n: u64) -> String {
    crate::publish::tick(n)
}

fn with_bookmark(notify_to: &str, bookmark: &str) -> String {
    windows_subscribe(
        PUSH,
        notify_to,
        "",
        &format!("{bookmark}<w:SendBookmarks/>"),
    )
}

async fn assert_invalid_bookmark(server: &TestServer, bookmark: &str) {
    let body = with_bookmark("http://127.0.0.1:9/never", bookmark);
    let reply = send(
        server,
        &server.url("/wsman"),
        "Subscribe",
        &resource_headers(),
        &body,
    )
    .await;
    let fault = reply.assert_fault(Soap::V12, (WSMAN, "InvalidBookmark"), false);
    assert_eq!(fault.action.as_deref(), Some(WSMAN_FAULT), "{}", reply.text);
}

#[tokio::test]
async fn a_bookmark_resumes_right_after_it_across_a_restart() {
    let store = TestStore::new().await;
    let sink = WsmanSink::start().await;
    let server = TestServer::start_in(&store, wsman_sources).await;
    let body = with_bookmark(&sink.url("first"), "");
    let reply = send(
        &server,
        &server.url("/wsman"),
        "Subscribe",
        &resource_headers(),
        &body,
    )
    .await;
    let (manager, parameters) = manager_of(&reply);
    let mut seqs = Vec::new();
    for n in 1..=2 {
        seqs.push(publish(&server, "default", TICK_ACTION, &tick(n)).await.1);
    }
    let received = sink
        .wait("first", Duration::from_secs(10), |m| m.len() >= 2)
        .await;
    for (message, seq) in received.iter().zip(&seqs) {
        assert_eq!(message.bookmark.as_deref(), Some(seq.to_string().as_str()));
    }
    let bookmark = received[1].bookmark_xml.clone().expect("a bookmark header");
    let unsubscribe = send(
        &server,
        &manager,
        "Unsubscribe",
        &parameters,
        "<e:Unsubscribe/>",
    )
    .await;
    assert_eq!(unsubscribe.status, 200, "{}", unsubscribe.text);
    // Published while nobody is subscribed: kept for the retention window.
    for n in 3..=4 {
        publish(&server, "default", TICK_ACTION, &tick(n)).await;
    }
    server.stop().await;

    let server = TestServer::start_in(&store, wsman_sources).await;
    let resumed = with_bookmark(&sink.url("resumed"), &bookmark);
    subscribe(&server, &resumed).await;
    let earliest = with_bookmark(
        &sink.url("earliest"),
        &format!("<w:Bookmark>{EARLIEST}</w:Bookmark>"),
    );
    subscribe(&server, &earliest).await;
    publish(&server, "default", TICK_ACTION, &tick(5)).await;
    let resumed = sink
        .wait("resumed", Duration::from_secs(10), |m| m.len() >= 3)
        .await;
    let ticks: Vec<u64> = resumed.iter().flat_map(|m| m.ticks.clone()).collect();
    assert_eq!(
        ticks,
        [3, 4, 5],
        "after the bookmark: none lost, none before it"
    );
    let earliest = sink
        .wait("earliest", Duration::from_secs(10), |m| m.len() >= 5)
        .await;
    let ticks: Vec<u64> = earliest.iter().flat_map(|m| m.ticks.clone()).collect();
    assert_eq!(ticks, [1, 2, 3, 4, 5]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received("resumed").len(), 3, "nothing twice");

    // Bookmarks herald cannot honour.
    let position = |log: &str, seq: &str| {
        format!(
            r#"<w:Bookmark><h:Position xmlns:h="urn:herald:eventing" log="{log}">{seq}</h:Position></w:Bookmark>"#
        )
    };
    for bad in [
        position("default", "999"),
        position("cim", "1"),
        position("default", "one"),
        "<w:Bookmark><q:Opaque xmlns:q=\"urn:x\">AAAA</q:Opaque></w:Bookmark>".to_owned(),
    ] {
        assert_invalid_bookmark(&server, &bad).await;
    }
    assert_eq!(server.active("default").await, 2, "nothing stored for them");
}

#[tokio::test]
async fn a_bookmark_past_what_is_retained_is_invalid() {
    let server = TestServer::start_with(|config| {
        wsman_sources(config);
        config.delivery.retention = Duration::ZERO;
        config.delivery.compaction_interval = Duration::from_millis(100);
    })
    .await;
    let sink = WsmanSink::start().await;
    for n in 1..=3 {
        publish(&server, "default", TICK_ACTION, &tick(n)).await;
    }
    // Nobody reads the source: compaction deletes what was published.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let position = |seq: u64| {
        format!(
            r#"<w:Bookmark><h:Position xmlns:h="urn:herald:eventing" log="default">{seq}</h:Position></w:Bookmark>"#
        )
    };
    assert_invalid_bookmark(&server, &position(1)).await;
    // The head is always a valid position: nothing to replay.
    subscribe(&server, &with_bookmark(&sink.url("head"), &position(3))).await;
    let earliest = format!("<w:Bookmark>{EARLIEST}</w:Bookmark>");
    let body = openwsman_subscribe(PUSH, &sink.url("earliest"), "")
        .replace("</e:Subscribe>", &format!("{earliest}</e:Subscribe>"));
    subscribe(&server, &body).await;
    publish(&server, "default", TICK_ACTION, &tick(4)).await;
    for path in ["head", "earliest"] {
        let received = sink
            .wait(path, Duration::from_secs(10), |m| !m.is_empty())
            .await;
        assert_eq!(received[0].ticks, [4], "{path}");
    }
}

/// A position in the default source, as a `wsman:Bookmark` any SOAP subscriber can send.
fn position_in_default(seq: u64) -> String {
    format!(
        r#"<w:Bookmark xmlns:w="{WSMAN}"><h:Position xmlns:h="urn:herald:eventing" log="default">{seq}</h:Position></w:Bookmark>"#
    )
}

#[tokio::test]
async fn every_dialect_replays_from_a_position() {
    let server = TestServer::start().await;
    let sink = crate::sink::Sink::start().await;
    let mut seqs = Vec::new();
    for n in 1..=3 {
        seqs.push(publish(&server, "default", TICK_ACTION, &tick(n)).await.1);
    }
    // W3C 2011, wrapped, resuming after event 1 and asking for bookmarks.
    let extra = format!(
        r#"{}<w:SendBookmarks xmlns:w="{WSMAN}"/><wse:Format Name="http://www.w3.org/2011/03/ws-evt/DeliveryFormats/Wrap"/>"#,
        position_in_default(seqs[0])
    );
    crate::delivery::subscribe_to(&server, Soap::V12, W3C2011, &sink.url("w2011"), &extra).await;
    // 2004/01, from the earliest.
    let extra = format!(r#"<w:Bookmark xmlns:w="{WSMAN}">{EARLIEST}</w:Bookmark>"#);
    crate::delivery::subscribe_to(&server, Soap::V11, JAN2004, &sink.url("w2004"), &extra).await;
    // A webhook, after event 2 (its deliveries carry `herald-sequence`).
    let response = server
        .client
        .post(server.url("/api/v1/subscriptions"))
        .header("Content-Type", "application/json")
        .body(
            serde_json::json!({
                "source": "default", "url": sink.url("webhook"), "start_after": seqs[1]
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);

    let w2011 = sink
        .wait_accepted("w2011", 2, Duration::from_secs(10))
        .await;
    let ticks: Vec<_> = w2011.iter().filter_map(|r| r.tick()).collect();
    assert_eq!(ticks, [2, 3]);
    for (received, seq) in w2011.iter().zip(&seqs[1..]) {
        assert_eq!(
            received.text_of("urn:herald:eventing", "Position"),
            Some(seq.to_string()),
            "{}",
            received.body
        );
    }
    let w2004 = sink
        .wait_accepted("w2004", 3, Duration::from_secs(10))
        .await;
    let ticks: Vec<_> = w2004.iter().filter_map(|r| r.tick()).collect();
    assert_eq!(ticks, [1, 2, 3]);
    let webhook = sink
        .wait_accepted("webhook", 1, Duration::from_secs(10))
        .await;
    assert_eq!(webhook[0].tick(), Some(3));
    assert_eq!(
        webhook[0].headers["herald-sequence"].to_str().unwrap(),
        seqs[2].to_string()
    );

    // Positions herald cannot replay from: a problem document, nothing stored.
    for start_after in [serde_json::json!(999), serde_json::json!("soon")] {
        let response = server
            .client
            .post(server.url("/api/v1/subscriptions"))
            .header("Content-Type", "application/json")
            .body(
                serde_json::json!({
                    "source": "default", "url": sink.url("never"), "start_after": start_after
                })
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{start_after}");
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
    }
    assert_eq!(server.active("default").await, 3);
}
