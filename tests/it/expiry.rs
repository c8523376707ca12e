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
