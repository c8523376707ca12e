//! Expiry end to end: granted types, the sweeper, and expired subscriptions being gone.

use std::time::{Duration, Instant};

use herald::domain::expiry::XsDuration;

use crate::harness::*;

#[tokio::test]
async fn an_expired_subscription_is_gone_and_swept_within_a_second() {
    let server = TestServer::start_with(|config| {
        config.sources[0].expiry.min = XsDuration::parse("PT0.1S").unwrap();
    })
    .await;
    let managed = subscribe(
        &server,
        Soap::V12,
        AUG2004,
        "default",
        "<wse:Expires>PT1S</wse:Expires>",
    )
    .await;
    let created = Instant::now();
    let reply = managed
        .request(Soap::V12, "GetStatus", "")
        .send(&server, &managed.manager_url)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(server.active("default").await, 1);

    // The sweeper ends it (and the gauge drops) within one second of its expiry.
    let deadline = created + Duration::from_secs(2);
    while server.active("default").await != 0 {
        assert!(
            Instant::now() < deadline,
            "not swept within a second of expiry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        created.elapsed() >= Duration::from_millis(900),
        "swept before it expired"
    );
    for operation in ["Renew", "GetStatus", "Unsubscribe"] {
        let reply = managed
            .request(Soap::V12, operation, "")
            .send(&server, &managed.manager_url)
            .await;
        reply.assert_fault(Soap::V12, (WSA2004, "DestinationUnreachable"), false);
    }
}

#[tokio::test]
async fn expiry_is_checked_at_request_time_not_only_by_the_sweeper() {
    // With the sweeper at its slowest, a subscription is refused the moment it has expired.
    let server = TestServer::start_with(|config| {
        config.sweep_interval = Duration::from_secs(1);
        config.sources[0].expiry.min = XsDuration::parse("PT0.1S").unwrap();
    })
    .await;
    let managed = subscribe(
        &server,
        Soap::V12,
        W3C2011,
        "default",
        "<wse:Expires>PT0.3S</wse:Expires>",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let reply = managed
        .request(Soap::V12, "Renew", "")
        .send(&server, &managed.manager_url)
        .await;
    reply.assert_fault(Soap::V12, (WSE11, "UnknownSubscription"), false);
}

#[tokio::test]
async fn granted_expiry_has_the_type_requested() {
    let server = TestServer::start().await;
    let in_an_hour = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let with_offset = in_an_hour
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(-8)))
        .strftime("%Y-%m-%dT%H:%M:%S%.3f-08:00")
        .to_string();
    for version in [JAN2004, AUG2004, W3C2011] {
        let extra = format!("<wse:Expires>{with_offset}</wse:Expires>");
        let managed = subscribe(&server, Soap::V12, version, "default", &extra).await;
        assert_eq!(
            managed.expires, with_offset,
            "{}: a dateTime is echoed",
            version.name
        );
        if version.wse != WSE01 {
            let reply = managed
                .request(Soap::V12, "GetStatus", "")
                .send(&server, &managed.manager_url)
                .await;
            let element = if version.wse == WSE11 {
                "GrantedExpires"
            } else {
                "Expires"
            };
            let status = reply.text_of(version.wse, element).unwrap();
            let at: jiff::Timestamp = status.parse().unwrap();
            assert_eq!(at.as_millisecond(), in_an_hour.as_millisecond(), "{status}");
        }
    }
    // A dateTime without a time zone is read as UTC.
    let local = in_an_hour.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let managed = subscribe(
        &server,
        Soap::V12,
        W3C2011,
        "default",
        &format!("<wse:Expires>{local}</wse:Expires>"),
    )
    .await;
    assert_eq!(managed.expires, local);
}

#[tokio::test]
async fn absent_expiry_per_version() {
    let server = TestServer::start().await;
    // 2004 versions: the source default.
    for version in [JAN2004, AUG2004] {
        let managed = subscribe(&server, Soap::V11, version, "default", "").await;
        assert_eq!(managed.expires, "PT3600S", "{}", version.name);
    }
    // 2011: a request for no expiry, capped at the source maximum, as a duration.
    let managed = subscribe(&server, Soap::V12, W3C2011, "default", "").await;
    assert_eq!(managed.expires, "PT86400S");

    let unbounded = TestServer::start_with(|config| config.sources[0].expiry.max = None).await;
    let managed = subscribe(&unbounded, Soap::V12, W3C2011, "default", "").await;
    assert_eq!(managed.expires, "PT0S", "never expires");
    let reply = managed
        .request(Soap::V12, "GetStatus", "")
        .send(&unbounded, &managed.manager_url)
        .await;
    assert_eq!(
        reply.text_of(WSE11, "GrantedExpires").as_deref(),
        Some("PT0S")
    );
    let managed = subscribe(
        &unbounded,
        Soap::V12,
        W3C2011,
        "default",
        "<wse:Expires>PT0S</wse:Expires>",
    )
    .await;
    assert_eq!(managed.expires, "PT0S");
}

#[tokio::test]
async fn the_2004_versions_adjust_to_the_source_range() {
    let server = TestServer::start().await;
    let managed = subscribe(
        &server,
        Soap::V12,
        AUG2004,
        "default",
        "<wse:Expires>P1Y</wse:Expires>",
    )
    .await;
    assert_eq!(managed.expires, "PT86400S");
    let managed = subscribe(
        &server,
        Soap::V12,
        JAN2004,
        "default",
        "<wse:Expires>PT0.2S</wse:Expires>",
    )
    .await;
    assert_eq!(managed.expires, "PT1S");
    let reply = managed
        .request(Soap::V12, "Renew", "<wse:Expires>P2D</wse:Expires>")
        .send(&server, &managed.manager_url)
        .await;
    assert_eq!(reply.text_of(WSE01, "Expires").as_deref(), Some("PT86400S"));
}

/// The stored expiry of subscription `id`, read through the JSON API.
async fn stored_expiry(server: &TestServer, id: &str) -> jiff::Timestamp {
    let view = crate::delivery::status_json(server, id).await;
    view["expires_at"].as_str().unwrap().parse().unwrap()
}

/// Whether `at` is `minutes` from now, give or take a minute.
fn in_minutes(at: jiff::Timestamp, minutes: i64) -> bool {
    let expected = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(minutes);
    at.duration_since(expected).abs() < jiff::SignedDuration::from_mins(1)
}

#[tokio::test]
async fn renew_is_answered_alike_whether_this_node_holds_the_reader_or_not() {
    let server = TestServer::start_with(|config| {
        let mut orders = config.sources[0].clone();
        orders.name = herald::domain::subscription::SourceName::parse("orders").unwrap();
        config.sources.push(orders);
    })
    .await;
    let managed = subscribe(
        &server,
        Soap::V12,
        W3C2011,
        "default",
        "<wse:Expires>PT10M</wse:Expires>",
    )
    .await;
    // Asked of its own source's manager: taken from the reader this node delivers.
    let reply = managed
        .request(Soap::V12, "Renew", "<wse:Expires>PT20M</wse:Expires>")
        .send(&server, &managed.manager_url)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(in_minutes(stored_expiry(&server, &managed.id).await, 20));
    // Asked of another source's manager: read from the store, renewed alike.
    let elsewhere = server.url("/eventing/orders/subscriptions");
    let reply = managed
        .request(Soap::V12, "Renew", "<wse:Expires>PT30M</wse:Expires>")
        .send(&server, &elsewhere)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(in_minutes(stored_expiry(&server, &managed.id).await, 30));

    // A webhook of the same source, held by this node too, is no SOAP subscription to renew.
    let response = server
        .client
        .post(server.url("/api/v1/subscriptions"))
        .header("Content-Type", "application/json")
        .body(r#"{"source": "default", "url": "http://127.0.0.1:9/hook"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let webhook: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let webhook = Managed {
        id: webhook["id"].as_str().unwrap().to_owned(),
        ..managed.clone()
    };
    let reply = webhook
        .request(Soap::V12, "Renew", "<wse:Expires>PT20M</wse:Expires>")
        .send(&server, &managed.manager_url)
        .await;
    reply.assert_fault(Soap::V12, (WSE11, "UnknownSubscription"), false);

    // Ended, it is unknown to either way of asking.
    let reply = managed
        .request(Soap::V12, "Unsubscribe", "")
        .send(&server, &managed.manager_url)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    for url in [&managed.manager_url, &elsewhere] {
        let reply = managed
            .request(Soap::V12, "Renew", "")
            .send(&server, url)
            .await;
        reply.assert_fault(Soap::V12, (WSE11, "UnknownSubscription"), false);
    }
}
