//! Push channels (seed 004) end to end: channels opened through the JSON API, services sending
//! notifications with the status headers, the device reading over a real SSE stream and a long
//! poll.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

pub(crate) const TOKEN: &str = "sender-secret";

pub(crate) fn headers_of(response: &reqwest::Response) -> (String, String, String) {
    let get = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    (
        get("X-NotificationStatus"),
        get("X-DeviceConnectionStatus"),
        get("X-SubscriptionStatus"),
    )
}

async fn start(adjust: impl FnOnce(&mut herald::engine::ChannelPolicy)) -> TestServer {
    TestServer::start_with(|config| {
        config.api_token = Some(TOKEN.into());
        adjust(&mut config.channels);
    })
    .await
}

/// Opens a channel; its URI.
pub(crate) async fn open(server: &TestServer) -> String {
    let response = server
        .client
        .post(server.url("/api/v1/channels"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["channel_uri"], location.as_str());
    assert!(location.starts_with("http://127.0.0.1:"), "{location}");
    assert_eq!(body["token"].as_str().unwrap().len(), 22);
    location
}

pub(crate) async fn send(
    server: &TestServer,
    channel: &str,
    body: &str,
    authenticated: bool,
) -> reqwest::Response {
    let mut request = server
        .client
        .post(channel)
        .header("Content-Type", "text/xml")
        .body(body.to_owned());
    if authenticated {
        request = request.bearer_auth(TOKEN);
    }
    request.send().await.unwrap()
}

pub(crate) async fn poll(server: &TestServer, channel: &str, query: &str) -> Value {
    let response = server
        .client
        .get(format!("{channel}/notifications?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

/// Reads `count` events (id, data) from an SSE stream, within `within`.
pub(crate) async fn read_events(
    response: &mut reqwest::Response,
    buffer: &mut String,
    count: usize,
    within: Duration,
) -> Vec<(u64, String)> {
    let deadline = Instant::now() + within;
    let mut events = Vec::new();
    while events.len() < count && Instant::now() < deadline {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            if let Some(id) = id {
                // The data is the notification as JSON.
                let notification: Value = serde_json::from_str(&data.join("\n")).unwrap();
                assert_eq!(notification["id"], id);
                events.push((id, notification["body"].as_str().unwrap().to_owned()));
            }
        }
        if events.len() >= count {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(500), response.chunk()).await {
            Ok(Ok(Some(chunk))) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(_) => break,
            Err(_) => {}
        }
    }
    events
}

pub(crate) async fn open_stream(
    server: &TestServer,
    channel: &str,
    last: Option<u64>,
) -> reqwest::Response {
    let mut request = server
        .client
        .get(format!("{channel}/stream"))
        .header("Accept", "text/event-stream");
    if let Some(last) = last {
        request = request.header("Last-Event-ID", last.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response
}

#[tokio::test]
async fn a_device_streams_in_order_and_resumes_after_a_dropped_connection() {
    let server = start(|_| {}).await;
    let channel = open(&server).await;
    let mut stream = open_stream(&server, &channel, None).await;
    let mut buffer = String::new();
    for n in 1..=5 {
        let response = send(&server, &channel, &format!("<n>{n}</n>"), true).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            headers_of(&response),
            ("Received".into(), "Connected".into(), "Active".into())
        );
    }
    let first = read_events(&mut stream, &mut buffer, 3, Duration::from_secs(10)).await;
    assert_eq!(first.len(), 3);
    // The connection drops after the third; more arrive meanwhile.
    drop(stream);
    for n in 6..=8 {
        send(&server, &channel, &format!("<n>{n}</n>"), true).await;
    }
    let last = first.last().unwrap().0;
    let mut stream = open_stream(&server, &channel, Some(last)).await;
    let mut buffer = String::new();
    let rest = read_events(&mut stream, &mut buffer, 5, Duration::from_secs(10)).await;
    let all: Vec<(u64, String)> = first.into_iter().chain(rest).collect();
    let bodies: Vec<&str> = all.iter().map(|(_, data)| data.as_str()).collect();
    assert_eq!(
        bodies,
        (1..=8).map(|n| format!("<n>{n}</n>")).collect::<Vec<_>>(),
        "in order, nothing lost, nothing twice"
    );
    let ids: Vec<u64> = all.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=8).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_long_poll_waits_for_the_next_notification() {
    let server = start(|_| {}).await;
    let channel = open(&server).await;
    let waiting = {
        let (client, channel) = (server.client.clone(), channel.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let text = client
                .get(format!("{channel}/notifications?after=0&wait=10"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            (
                started.elapsed(),
                serde_json::from_str::<Value>(&text).unwrap(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&server, &channel, "{\"raw\": 1}", true).await;
    let (took, answer) = waiting.await.unwrap();
    assert!(
        took < Duration::from_secs(5),
        "woken, not timed out: {took:?}"
    );
    assert_eq!(answer["notifications"][0]["body"], "{\"raw\": 1}");
    assert_eq!(answer["notifications"][0]["id"], 1);
    assert_eq!(answer["notifications"][0]["content_type"], "text/xml");
    // After what it has read there is nothing.
    let empty = poll(&server, &channel, "after=1").await;
    assert_eq!(empty["notifications"], serde_json::json!([]));
}

#[tokio::test]
async fn every_answer_carries_the_status_headers_of_the_table() {
    let server = start(|policy| policy.max_notification_bytes = 64).await;
    let channel = open(&server).await;
    // 404 for an unknown channel, and for one its client closed.
    let unknown = send(
        &server,
        &server.url("/channels/AAAAAAAAAAAAAAAAAAAAAA"),
        "<a/>",
        true,
    )
    .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        headers_of(&unknown),
        ("Dropped".into(), "Disconnected".into(), "Expired".into())
    );
    // Only POST.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = server
            .client
            .request(method.clone(), &channel)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST");
    }
    // X-MessageID is echoed (all zeros when none was sent).
    let id = "0b5f1c3e-7d2a-4c55-9a41-4a2f3b1e9d10";
    let echoed = server
        .client
        .post(&channel)
        .bearer_auth(TOKEN)
        .header("X-MessageID", id)
        .header("X-NotificationClass", "2")
        .body("<a/>")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), 200);
    assert_eq!(echoed.headers()["x-messageid"], id);
    let plain = send(&server, &channel, "<a/>", true).await;
    assert_eq!(
        plain.headers()["x-messageid"],
        "00000000-0000-0000-0000-000000000000"
    );
    // 400 for a bad request, still with the status headers.
    for (name, value) in [("X-NotificationClass", "7"), ("X-MessageID", "not-a-uuid")] {
        let response = server
            .client
            .post(&channel)
            .bearer_auth(TOKEN)
            .header(name, value)
            .body("<a/>")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{name}");
        assert_eq!(
            headers_of(&response),
            ("Dropped".into(), "Connected".into(), "Active".into())
        );
    }
    let binary = server
        .client
        .post(&channel)
        .bearer_auth(TOKEN)
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(binary.status(), 400);
    let large = send(&server, &channel, &"x".repeat(65), true).await;
    assert_eq!(large.status(), 413);
    // Nothing refused was queued.
    let read = poll(&server, &channel, "after=0").await;
    assert_eq!(read["notifications"].as_array().unwrap().len(), 2);
    // Closed by its client: 404 Expired from then on.
    let token = channel.rsplit('/').next().unwrap();
    let closed = server
        .client
        .delete(server.url(&format!("/api/v1/channels/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 204);
    let after = send(&server, &channel, "<a/>", true).await;
    assert_eq!(after.status(), 404);
    assert_eq!(headers_of(&after).2, "Expired");
}

#[tokio::test]
async fn a_device_without_a_reader_goes_temporarily_disconnected_then_inactive() {
    let server = start(|policy| {
        // A wide grace: a loaded machine (the suite runs in parallel) must not carry the
        // second send past it.
        policy.presence.connected_for = Duration::from_millis(300);
        policy.presence.grace = Duration::from_millis(2000);
    })
    .await;
    let channel = open(&server).await;
    assert_eq!(
        headers_of(&send(&server, &channel, "<a/>", true).await).1,
        "Connected"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let temp = send(&server, &channel, "<a/>", true).await;
    assert_eq!(
        (temp.status().as_u16(), headers_of(&temp).1.as_str()),
        (200, "TempDisconnected")
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let inactive = send(&server, &channel, "<a/>", true).await;
    assert_eq!(inactive.status(), 412);
    assert_eq!(
        headers_of(&inactive),
        ("Dropped".into(), "InActive".into(), "Active".into())
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("herald_channels{status=\"InActive\"} 1"),
        "{metrics}"
    );
    // The device polls: connected again.
    let read = poll(&server, &channel, "").await;
    assert_eq!(read["notifications"].as_array().unwrap().len(), 2);
    let back = send(&server, &channel, "<a/>", true).await;
    assert_eq!(
        (back.status().as_u16(), headers_of(&back).1.as_str()),
        (200, "Connected")
    );
}

#[tokio::test]
async fn unauthenticated_senders_have_a_daily_limit_and_a_full_queue_takes_nothing() {
    let server = start(|policy| {
        policy.daily_limit = 3;
        policy.queue_cap = 5;
    })
    .await;
    let channel = open(&server).await;
    for _ in 0..3 {
        assert_eq!(send(&server, &channel, "<a/>", false).await.status(), 200);
    }
    let over = send(&server, &channel, "<a/>", false).await;
    assert_eq!(over.status(), 406);
    assert_eq!(
        headers_of(&over),
        ("Dropped".into(), "Connected".into(), "Active".into())
    );
    // Authenticated senders have no limit; the queue holds 5.
    assert_eq!(
        headers_of(&send(&server, &channel, "<a/>", true).await).0,
        "Received"
    );
    assert_eq!(
        headers_of(&send(&server, &channel, "<a/>", true).await).0,
        "Received"
    );
    let full = send(&server, &channel, "<a/>", true).await;
    assert_eq!(full.status(), 200);
    assert_eq!(headers_of(&full).0, "QueueFull");
    // The device reads them all: room again.
    let read = poll(&server, &channel, "after=0").await;
    assert_eq!(read["notifications"].as_array().unwrap().len(), 5);
    poll(&server, &channel, "after=5").await;
    assert_eq!(
        headers_of(&send(&server, &channel, "<a/>", true).await).0,
        "Received"
    );
}

#[tokio::test]
async fn a_full_queue_counts_nothing_against_the_daily_limit() {
    let server = start(|policy| {
        policy.daily_limit = 2;
        policy.queue_cap = 1;
    })
    .await;
    let channel = open(&server).await;
    assert_eq!(
        headers_of(&send(&server, &channel, "<a/>", false).await).0,
        "Received"
    );
    for _ in 0..3 {
        let full = send(&server, &channel, "<a/>", false).await;
        assert_eq!(
            (full.status().as_u16(), headers_of(&full).0.as_str()),
            (200, "QueueFull")
        );
    }
    poll(&server, &channel, "after=1").await;
    // The second of the day: the QueueFull answers took none of the two.
    assert_eq!(
        headers_of(&send(&server, &channel, "<a/>", false).await).0,
        "Received"
    );
    poll(&server, &channel, "after=2").await;
    assert_eq!(send(&server, &channel, "<a/>", false).await.status(), 406);
}

/// Times leave a second of slack each way: the send after the renewal comes 3.5 s after the
/// open (past the first TTL) but only 2 s after the renewal; the last one 6 s after it.
#[tokio::test]
async fn a_channel_expires_unless_renewed() {
    let server = start(|policy| policy.ttl = Duration::from_secs(3)).await;
    let channel = open(&server).await;
    let token = channel.rsplit('/').next().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let renewed = server
        .client
        .post(server.url(&format!("/api/v1/channels/{token}/renew")))
        .send()
        .await
        .unwrap();
    assert_eq!(renewed.status(), 200);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        send(&server, &channel, "<a/>", true).await.status(),
        200,
        "renewed"
    );
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let expired = send(&server, &channel, "<a/>", true).await;
    assert_eq!(expired.status(), 404);
    assert_eq!(headers_of(&expired).2, "Expired");
    let stream = server
        .client
        .get(format!("{channel}/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 404);
}

#[tokio::test]
async fn kill_9_with_notifications_queued_loses_none() {
    let store = TestStore::new().await;
    let mut first = Process::start(&store);
    let server = first.client();
    let response = server
        .client
        .post(server.url("/api/v1/channels"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let channel = response.headers()["location"].to_str().unwrap().to_owned();
    let token = channel.rsplit('/').next().unwrap().to_owned();
    for n in 1..=100 {
        let sent = send(&server, &channel, &format!("<n>{n}</n>"), false).await;
        assert_eq!(sent.status(), 200);
    }
    first.kill();
    let second = Process::start(&store);
    let server = second.client();
    let channel = server.url(&format!("/channels/{token}"));
    let mut bodies = Vec::new();
    let mut after = 0;
    while bodies.len() < 100 {
        let read = poll(&server, &channel, &format!("after={after}")).await;
        let page = read["notifications"].as_array().unwrap().clone();
        assert!(!page.is_empty(), "lost after {after}");
        for notification in page {
            after = notification["id"].as_u64().unwrap();
            bodies.push(notification["body"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        bodies,
        (1..=100).map(|n| format!("<n>{n}</n>")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn what_a_stream_sent_stays_kept_until_the_device_says_it_read_it() {
    let server = start(|policy| policy.presence.connected_for = Duration::from_millis(300)).await;
    let channel = open(&server).await;
    let token = channel.rsplit('/').next().unwrap().to_owned();
    for n in 1..=3 {
        send(&server, &channel, &format!("<n>{n}</n>"), true).await;
    }
    let mut stream = open_stream(&server, &channel, None).await;
    let mut buffer = String::new();
    let sent = read_events(&mut stream, &mut buffer, 3, Duration::from_secs(10)).await;
    assert_eq!(sent.len(), 3);
    // The stream checks in (every third of connected_for): sent, not read.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let view: Value = serde_json::from_str(
        &server
            .client
            .get(server.url(&format!("/api/v1/channels/{token}")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (view["cursor"].as_u64(), view["sent"].as_u64()),
        (Some(0), Some(3)),
        "{view}"
    );
    drop(stream);
    // The connection died before the device saw them: a new stream without Last-Event-ID
    // starts after what the device said it read, so they come again.
    let mut again = open_stream(&server, &channel, None).await;
    let mut buffer = String::new();
    let replayed = read_events(&mut again, &mut buffer, 3, Duration::from_secs(10)).await;
    assert_eq!(
        replayed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[tokio::test]
async fn a_position_past_the_last_notification_cannot_hide_later_ones() {
    let server = start(|_| {}).await;
    let channel = open(&server).await;
    send(&server, &channel, "<n>1</n>", true).await;
    // A stale id from somewhere else.
    let mut stream = open_stream(&server, &channel, Some(1_000_000)).await;
    let nothing = poll(&server, &channel, "after=999").await;
    assert_eq!(nothing["notifications"], serde_json::json!([]));
    send(&server, &channel, "<n>2</n>", true).await;
    let mut buffer = String::new();
    let got = read_events(&mut stream, &mut buffer, 1, Duration::from_secs(10)).await;
    assert_eq!(got, [(2, "<n>2</n>".to_owned())]);
    let polled = poll(&server, &channel, "after=1").await;
    assert_eq!(polled["notifications"][0]["body"], "<n>2</n>");
    // A body with CR LF and an empty one travel exactly.
    send(&server, &channel, "a\r\nb", true).await;
    send(&server, &channel, "", true).await;
    let got = read_events(&mut stream, &mut buffer, 2, Duration::from_secs(10)).await;
    assert_eq!(got, [(3, "a\r\nb".to_owned()), (4, String::new())]);
}

#[tokio::test]
async fn an_ended_channel_is_forgotten_with_its_notifications() {
    let store = TestStore::new().await;
    let server = TestServer::start_in(&store, |config| {
        config.api_token = Some(TOKEN.into());
        config.channels.keep_ended = Duration::from_millis(200);
        config.sweep_interval = Duration::from_millis(50);
    })
    .await;
    let channel = open(&server).await;
    let token = channel.rsplit('/').next().unwrap().to_owned();
    let kept = open(&server).await;
    for body in ["<a/>", "<b/>"] {
        send(&server, &channel, body, true).await;
        send(&server, &kept, body, true).await;
    }
    let count = |log: String| {
        let store = &store;
        async move {
            store
                .integers(&format!(
                    "SELECT COUNT(*) FROM events WHERE source = 'ch.{log}'"
                ))
                .await[0]
        }
    };
    assert_eq!(count(token.clone()).await, 2);
    let closed = server
        .client
        .delete(server.url(&format!("/api/v1/channels/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 204);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(count(token.clone()).await, 0, "its notifications went");
    let gone = server
        .client
        .get(server.url(&format!("/api/v1/channels/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let other = kept.rsplit('/').next().unwrap().to_owned();
    assert_eq!(count(other).await, 2, "an open channel keeps its own");
    server.stop().await;
}
