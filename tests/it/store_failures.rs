//! A store that fails under a running herald: every request gets the error its protocol
//! defines (a 503 problem, `wse:UnableToRenew`, `wse:EventSourceUnableToProcess`), nothing is
//! half written, and herald carries on once the store is back.

use std::time::Duration;

use serde_json::Value;

use crate::delivery::subscribe_to;
use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, tick};
use crate::sink::Sink;

const BREAK: [&str; 3] = [
    "ALTER TABLE subscriptions RENAME TO subscriptions_away",
    "ALTER TABLE events RENAME TO events_away",
    "ALTER TABLE nodes RENAME TO nodes_away",
];
const REPAIR: [&str; 3] = [
    "ALTER TABLE subscriptions_away RENAME TO subscriptions",
    "ALTER TABLE events_away RENAME TO events",
    "ALTER TABLE nodes_away RENAME TO nodes",
];

/// `GET path`: status and text.
async fn get(server: &TestServer, path: &str) -> (u16, String) {
    let response = server.client.get(server.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A JSON API request's status and problem document.
async fn problem_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.unwrap();
    assert_eq!(content_type, "application/problem+json", "{text}");
    (status, serde_json::from_str(&text).unwrap())
}

#[tokio::test]
async fn a_failing_store_gets_precise_errors_and_nothing_half_written() {
    let store = TestStore::new().await;
    let server = TestServer::start_in(&store, |_| {}).await;
    let sink = Sink::start().await;
    let expires = "<wse:Expires>PT1H</wse:Expires>";
    let mut subscribers = Vec::new();
    for (i, version) in [JAN2004, AUG2004, W3C2011].into_iter().enumerate() {
        let path = format!("s{i}");
        let managed = subscribe_to(&server, Soap::V12, version, &sink.url(&path), expires).await;
        subscribers.push((path, managed));
    }
    publish(&server, "default", TICK_ACTION, &tick(0)).await;
    for (path, _) in &subscribers {
        sink.wait_accepted(path, 1, Duration::from_secs(10)).await;
    }

    assert_eq!(get(&server, "/readyz").await, (200, "ready\n".to_owned()));
    store.execute(&BREAK).await;

    // Readiness fails, with the database's own words; liveness does not.
    let (status, text) = get(&server, "/readyz").await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.starts_with("not ready: the store cannot be written: database error: ")
            && text.contains("nodes"),
        "{text}"
    );
    assert_eq!(get(&server, "/healthz").await.0, 200);

    // The JSON API: 503 problems.
    let (_, managed) = &subscribers[1];
    let response = server
        .client
        .get(server.url(&format!("/api/v1/subscriptions/{}", managed.id)))
        .send()
        .await
        .unwrap();
    let (status, problem) = problem_of(response).await;
    assert_eq!(
        (status, &problem["status"]),
        (503, &Value::from(503)),
        "{problem}"
    );
    assert_eq!(problem["title"], "Unavailable");
    let response = server
        .client
        .post(server.url("/api/v1/sources/default/events"))
        .header("Content-Type", "application/xml")
        .header("Herald-Action", TICK_ACTION)
        .body(tick(1))
        .send()
        .await
        .unwrap();
    let (status, problem) = problem_of(response).await;
    assert_eq!(status, 503, "{problem}");

    // WS-Eventing: each version's fault for a local failure.
    for (_, managed) in &subscribers {
        let reply = managed
            .request(Soap::V12, "Renew", "<wse:Expires>PT3H</wse:Expires>")
            .send(&server, &managed.manager_url)
            .await;
        if managed.version.wse == WSE11 {
            // 2011 dropped the Receiver faults: a plain Receiver fault.
            let fault = reply.fault();
            assert_eq!(
                (reply.status, fault.code.as_str()),
                (500, "Receiver"),
                "{}",
                reply.text
            );
            assert_eq!(fault.subcode, None, "{}", reply.text);
        } else {
            reply.assert_fault(Soap::V12, (managed.version.wse, "UnableToRenew"), true);
        }
    }
    let reply = Message::new(
        Soap::V12,
        AUG2004,
        "Subscribe",
        subscribe_body(AUG2004, &sink.url("late"), expires),
    )
    .send(&server, &server.url("/eventing/default"))
    .await;
    reply.assert_fault(Soap::V12, (WSE08, "EventSourceUnableToProcess"), true);

    store.execute(&REPAIR).await;
    assert_eq!(get(&server, "/readyz").await, (200, "ready\n".to_owned()));

    // Nothing was written: three subscriptions, each with the expiry it had; the failed publish
    // took no sequence number, so the next event is the second.
    assert_eq!(
        store.integers("SELECT COUNT(*) FROM subscriptions").await,
        [3]
    );
    for (_, managed) in &subscribers[1..] {
        let reply = managed
            .request(Soap::V12, "GetStatus", "")
            .send(&server, &managed.manager_url)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let element = if managed.version.wse == WSE11 {
            "GrantedExpires"
        } else {
            "Expires"
        };
        let remaining = seconds(&reply.text_of(managed.version.wse, element).unwrap());
        assert!(
            remaining <= 3600.0,
            "the failed Renew changed nothing: {remaining}"
        );
    }
    let (_, seq) = publish(&server, "default", TICK_ACTION, &tick(1)).await;
    assert_eq!(seq, 2);
    for (path, _) in &subscribers {
        sink.wait_accepted(path, 2, Duration::from_secs(10)).await;
        assert_eq!(sink.accepted_ticks(path), [0, 1], "{path}");
    }
    server.stop().await;
}
