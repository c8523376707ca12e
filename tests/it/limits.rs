//! What one unauthenticated request can make herald keep: reference parameters bounded in
//! count and bytes (each is copied into every notification), events bounded in size per
//! source, subscriptions per source bounded by default.

use std::time::Duration;

use crate::delivery::subscribe_to;
use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, tick};
use crate::sink::Sink;

/// A NotifyTo with `count` reference parameters of about `bytes` bytes each.
fn notify_to_with_parameters(address: &str, count: usize, bytes: usize) -> String {
    let parameters: String = (0..count)
        .map(|i| format!("<p:r{i} xmlns:p=\"urn:p\">{}</p:r{i}>", "v".repeat(bytes)))
        .collect();
    format!(
        "<wse:NotifyTo><wsa:Address>{address}</wsa:Address><wsa:ReferenceParameters>{parameters}</wsa:ReferenceParameters></wse:NotifyTo>"
    )
}

async fn subscribe_raw(server: &TestServer, delivery: &str) -> Reply {
    let body = format!("<wse:Subscribe><wse:Delivery>{delivery}</wse:Delivery></wse:Subscribe>");
    Message::new(Soap::V12, W3C2011, "Subscribe", body)
        .send(server, &server.url("/eventing/default"))
        .await
}

#[tokio::test]
async fn reference_parameters_are_bounded_in_count_and_bytes() {
    let server = TestServer::start().await;
    let sink = Sink::start().await;
    for (count, bytes, reason) in [
        (10_000, 1, "more than 32 reference parameters"),
        (33, 1, "more than 32 reference parameters"),
        (2, 9000, "more than 16384 bytes of reference parameters"),
    ] {
        let reply = subscribe_raw(
            &server,
            &notify_to_with_parameters(&sink.url("amplified"), count, bytes),
        )
        .await;
        let fault = reply.assert_fault(Soap::V12, (WSE11, "UnusableEPR"), false);
        assert!(
            fault.reason.contains(reason),
            "{count} x {bytes}: {}",
            fault.reason
        );
    }
    // At the bound: accepted, and every notification carries all 32.
    let reply = subscribe_raw(
        &server,
        &notify_to_with_parameters(&sink.url("bounded"), 32, 100),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    publish(&server, "default", TICK_ACTION, &tick(0)).await;
    let received = sink
        .wait_accepted("bounded", 1, Duration::from_secs(10))
        .await;
    let parameters = received[0]
        .doc()
        .descendants()
        .filter(|n| n.tag_name().namespace() == Some("urn:p"))
        .count();
    assert_eq!(parameters, 32);
    assert_eq!(sink.received("amplified").len(), 0);
    server.stop().await;
}

#[tokio::test]
async fn events_are_bounded_in_size_per_source() {
    let server = TestServer::start().await;
    let large = format!(
        "<e:big xmlns:e=\"urn:e\">{}</e:big>",
        "x".repeat(300 * 1024)
    );
    // The JSON API: 413 with the source's limit.
    let response = server
        .client
        .post(server.url("/api/v1/sources/default/events"))
        .header("Content-Type", "application/xml")
        .header("Herald-Action", "urn:x")
        .body(large.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("accepts events of at most 262144 bytes"),
        "{text}"
    );
    // A batch with one such event among small ones: refused whole.
    let batch = format!(
        r#"<h:Events xmlns:h="urn:herald:publish"><h:Event action="urn:x">{}</h:Event><h:Event action="urn:x">{large}</h:Event></h:Events>"#,
        tick(0)
    );
    let response = server
        .client
        .post(server.url("/api/v1/sources/default/events/batch"))
        .body(batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    // SOAP one-way publishing: a Sender fault.
    let envelope = format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:wsa="{WSA2005}"><s:Header><wsa:Action>urn:x</wsa:Action></s:Header><s:Body>{large}</s:Body></s:Envelope>"#
    );
    let reply = server
        .post_soap(
            &server.url("/eventing/default"),
            Soap::V12,
            Some("urn:x"),
            envelope,
        )
        .await;
    let fault = reply.fault();
    assert_eq!(
        (reply.status, fault.code.as_str()),
        (400, "Sender"),
        "{}",
        reply.text
    );
    assert!(
        fault.reason.contains("at most 262144 bytes"),
        "{}",
        fault.reason
    );
    // Nothing was appended.
    let (_, seq) = publish(&server, "default", TICK_ACTION, &tick(1)).await;
    assert_eq!(seq, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_source_takes_ten_thousand_subscriptions_by_default() {
    let server = TestServer::start_with(|config| {
        // The built-in default, as shipped; lowered here only to reach it quickly.
        assert_eq!(config.sources[0].max_subscriptions, Some(10_000));
        config.sources[0].max_subscriptions = Some(3);
    })
    .await;
    let sink = Sink::start().await;
    for i in 0..3 {
        subscribe_to(&server, Soap::V12, W3C2011, &sink.url(&format!("s{i}")), "").await;
    }
    let reply = subscribe_raw(
        &server,
        &format!(
            "<wse:NotifyTo><wsa:Address>{}</wsa:Address></wse:NotifyTo>",
            sink.url("s3")
        ),
    )
    .await;
    let fault = reply.fault();
    assert_eq!(
        (reply.status, fault.code.as_str()),
        (500, "Receiver"),
        "{}",
        reply.text
    );
    assert!(
        fault.reason.contains("at most 3 subscriptions"),
        "{}",
        fault.reason
    );
    server.stop().await;
}

#[tokio::test]
async fn xpath_filters_are_bounded_in_size() {
    let server = TestServer::start().await;
    let terms = |n: usize| {
        let terms: Vec<String> = (0..n).map(|i| format!("@a{i}='v{i}'")).collect();
        format!("/o:order[{}]", terms.join(" or "))
    };
    let filter = |expression: &str| {
        format!(
            r#"<wse:Filter xmlns:o="urn:o" Dialect="http://www.w3.org/2011/03/ws-evt/Dialects/XPath10">{expression}</wse:Filter>"#
        )
    };
    // The 3.8 KB filter of the attack (154 KB of memory per subscription): refused.
    let reply = Message::new(
        Soap::V12,
        W3C2011,
        "Subscribe",
        subscribe_body(W3C2011, SINK, &filter(&terms(200))),
    )
    .send(&server, &server.url("/eventing/default"))
    .await;
    let fault = reply.assert_fault(Soap::V12, (WSE11, "CannotProcessFilter"), false);
    assert!(
        fault.reason.contains("too many operators"),
        "{}",
        fault.reason
    );
    // The largest shape accepted (about 27 KB a subscription; herald-bench scenario 5).
    let reply = Message::new(
        Soap::V12,
        W3C2011,
        "Subscribe",
        subscribe_body(W3C2011, SINK, &filter(&terms(40))),
    )
    .send(&server, &server.url("/eventing/default"))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    server.stop().await;
}
