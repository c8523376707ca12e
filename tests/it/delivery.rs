//! Delivery end to end with real sinks on loopback: order, retries, give-up, Retry-After, 410,
//! SubscriptionEnd per version, notification shapes, and the status API.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use herald::config::Config;
use herald::delivery::retry::RetryPolicy;
use serde_json::Value;

use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, publish_batch, tick};
use crate::sink::{Behavior, Sink};

/// Retries every 50 ms, giving up after one second of failure.
pub fn fast_retries(config: &mut Config) {
    for source in &mut config.sources {
        source.retry = RetryPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            retry_after_cap: Duration::from_secs(5),
            give_up_after: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
    }
}

pub async fn subscribe_to(
    server: &TestServer,
    soap: Soap,
    version: Version,
    notify_to: &str,
    extra: &str,
) -> Managed {
    let reply = Message::new(
        soap,
        version,
        "Subscribe",
        subscribe_body(version, notify_to, extra),
    )
    .send(server, &server.url("/eventing/default"))
    .await;
    let mut managed = Managed::from_response(server, version, &reply);
    if version.wse == WSE01 {
        managed.manager_url = server.url("/eventing/default");
    }
    managed
}

pub async fn status_json(server: &TestServer, id: &str) -> Value {
    let response = server
        .client
        .get(server.url(&format!("/api/v1/subscriptions/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

/// Waits until the status API says `check` holds.
pub async fn wait_status(
    server: &TestServer,
    id: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let status = status_json(server, id).await;
        if check(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "condition not reached: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn end_to(url: &str) -> String {
    format!("<wse:EndTo><wsa:Address>{url}</wsa:Address></wse:EndTo>")
}

#[tokio::test]
async fn every_event_reaches_every_subscriber_in_order_under_concurrent_load() {
    let server = TestServer::start().await;
    let sink = Sink::start().await;
    let mut paths = Vec::new();
    for (i, version) in ALL_VERSIONS.iter().cycle().take(10).enumerate() {
        let path = format!("order{i}");
        let soap = if i % 2 == 0 { Soap::V11 } else { Soap::V12 };
        subscribe_to(&server, soap, *version, &sink.url(&path), "").await;
        paths.push(path);
    }
    // Four publishers at once, 5 batches of 25 each: 500 events.
    let publishers: Vec<_> = (0..4u64)
        .map(|p| {
            let server = TestServer::remote(&server.base);
            tokio::spawn(async move {
                let mut seq_of = HashMap::new();
                for batch in 0..5u64 {
                    let events: Vec<(String, String)> = (0..25u64)
                        .map(|i| (TICK_ACTION.to_owned(), tick(p * 1000 + batch * 25 + i)))
                        .collect();
                    let seqs = publish_batch(&server, "default", &events).await;
                    for (i, seq) in seqs.into_iter().enumerate() {
                        seq_of.insert(p * 1000 + batch * 25 + i as u64, seq);
                    }
                }
                seq_of
            })
        })
        .collect();
    let mut seq_of = HashMap::new();
    for publisher in publishers {
        seq_of.extend(publisher.await.unwrap());
    }
    let mut all: Vec<u64> = seq_of.values().copied().collect();
    all.sort();
    assert_eq!(
        all,
        (1..=500).collect::<Vec<_>>(),
        "gapless sequence numbers"
    );
    for path in &paths {
        let received = sink.wait_accepted(path, 500, Duration::from_secs(30)).await;
        let seqs: Vec<u64> = received
            .iter()
            .map(|r| seq_of[&r.tick().unwrap()])
            .collect();
        assert_eq!(
            seqs,
            (1..=500).collect::<Vec<_>>(),
            "{path}: in publish order, each once"
        );
    }
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"herald_deliveries_total{outcome="delivered"} 5000"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_delivery_latency_seconds_count 5000"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_flaky_sink_gets_everything_in_order_with_stable_message_ids() {
    let server = TestServer::start_with(fast_retries).await;
    let sink = Sink::start().await;
    sink.behave("flaky", Behavior::FailTimes(3));
    let managed = subscribe_to(&server, Soap::V12, W3C2011, &sink.url("flaky"), "").await;
    for n in 1..=5 {
        publish(&server, "default", TICK_ACTION, &tick(n)).await;
    }
    let accepted = sink
        .wait_accepted("flaky", 5, Duration::from_secs(10))
        .await;
    let ticks: Vec<u64> = accepted.iter().map(|r| r.tick().unwrap()).collect();
    assert_eq!(ticks, [1, 2, 3, 4, 5]);
    let all = sink.received("flaky");
    assert_eq!(all.len(), 8, "three failed attempts, then five deliveries");
    // Every attempt at the first event carries the same MessageID: duplicates are recognisable.
    let first_ids: Vec<String> = all[..4].iter().map(|r| r.message_id()).collect();
    assert!(
        first_ids.iter().all(|id| *id == first_ids[0]),
        "{first_ids:?}"
    );
    let distinct: std::collections::HashSet<String> =
        accepted.iter().map(|r| r.message_id()).collect();
    assert_eq!(distinct.len(), 5);
    let status = wait_status(&server, &managed.id, Duration::from_secs(5), |s| {
        s["cursor"] == 5
    })
    .await;
    assert_eq!(status["attempts"], 0);
    assert_eq!(status["backlog"], 0);
    let metrics = server.metrics().await;
    assert!(metrics.contains("herald_retries_total 3"), "{metrics}");
}

#[tokio::test]
async fn a_dead_sink_ends_the_subscription_with_delivery_failure_in_every_version() {
    let server = TestServer::start_with(fast_retries).await;
    let sink = Sink::start().await;
    let mut subscribers = Vec::new();
    for (i, version) in [JAN2004, AUG2004, W3C2011].into_iter().enumerate() {
        let dead = format!("dead{i}");
        let end = format!("end{i}");
        sink.behave(&dead, Behavior::AlwaysFail);
        let managed = subscribe_to(
            &server,
            Soap::V12,
            version,
            &sink.url(&dead),
            &end_to(&sink.url(&end)),
        )
        .await;
        subscribers.push((version, managed, end));
    }
    publish(&server, "default", TICK_ACTION, &tick(1)).await;
    // While failing, the status API shows the retry state.
    let (_, first, _) = &subscribers[2];
    let failing = wait_status(&server, &first.id, Duration::from_secs(5), |s| {
        s["attempts"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(failing["last_error"], "HTTP 503 Service Unavailable");
    assert_eq!(failing["backlog"], 1);
    for (version, managed, end) in &subscribers {
        let ends = sink.wait_accepted(end, 1, Duration::from_secs(10)).await;
        let end_message = &ends[0];
        assert_eq!(
            end_message.text_of(version.wsa, "Action").unwrap(),
            format!("{}/SubscriptionEnd", version.wse)
        );
        match version.wse {
            WSE01 => {
                assert_eq!(
                    end_message.text_of(WSE01, "Code").as_deref(),
                    Some("wse:NotifyToFailure")
                );
                assert_eq!(end_message.text_of(WSE01, "Id"), Some(managed.id.clone()));
                let doc = end_message.doc();
                let block = doc
                    .descendants()
                    .find(|n| n.has_tag_name((WSE01, "SubscriptionEnd")))
                    .unwrap();
                assert_eq!(
                    block.parent().unwrap().tag_name().name(),
                    "Header",
                    "a header block in 2004/01"
                );
            }
            WSE08 => {
                assert_eq!(
                    end_message.text_of(WSE08, "Status").as_deref(),
                    Some(format!("{WSE08}/DeliveryFailure").as_str())
                );
                assert_eq!(
                    end_message.text_of(WSE08, "Identifier"),
                    Some(managed.id.clone())
                );
                assert_eq!(
                    end_message.text_of(WSA2004, "Address"),
                    Some(server.url("/eventing/default/subscriptions"))
                );
            }
            _ => {
                assert_eq!(
                    end_message.text_of(WSE11, "Status").as_deref(),
                    Some(format!("{WSE11}/DeliveryFailure").as_str())
                );
            }
        }
        let status = status_json(&server, &managed.id).await;
        assert_eq!(
            (status["status"].as_str(), status["end_reason"].as_str()),
            (Some("ended"), Some("delivery_failure"))
        );
        let status = wait_status(&server, &managed.id, Duration::from_secs(5), |s| {
            s["end_notice"] == "sent"
        })
        .await;
        assert_eq!(status["end_notice"], "sent");
        let reply = managed
            .request(Soap::V12, "Renew", "")
            .send(&server, &managed.manager_url)
            .await;
        assert!(
            reply.status >= 400,
            "the subscription is gone: {}",
            reply.text
        );
    }
    assert_eq!(server.active("default").await, 0);
}

#[tokio::test]
async fn retry_after_is_honoured_and_410_gives_up_at_once() {
    let server = TestServer::start_with(fast_retries).await;
    let sink = Sink::start().await;
    sink.behave(
        "busy",
        Behavior::TooManyRequests {
            times: 1,
            retry_after_secs: 1,
        },
    );
    sink.behave("gone", Behavior::Gone);
    subscribe_to(&server, Soap::V11, AUG2004, &sink.url("busy"), "").await;
    let gone = subscribe_to(
        &server,
        Soap::V11,
        AUG2004,
        &sink.url("gone"),
        &end_to(&sink.url("gone-end")),
    )
    .await;
    publish(&server, "default", TICK_ACTION, &tick(1)).await;
    let accepted = sink.wait_accepted("busy", 1, Duration::from_secs(10)).await;
    let all = sink.received("busy");
    assert_eq!(all.len(), 2);
    let waited = accepted[0].at.duration_since(all[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "waited {waited:?}, not the 50 ms back-off"
    );
    let ends = sink
        .wait_accepted("gone-end", 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        ends[0].text_of(WSE08, "Status").as_deref(),
        Some(format!("{WSE08}/DeliveryFailure").as_str())
    );
    assert_eq!(sink.received("gone").len(), 1, "410 is not retried");
    let status = status_json(&server, &gone.id).await;
    assert_eq!(status["end_reason"], "delivery_failure");
}

#[tokio::test]
async fn subscription_end_for_each_reason_and_version() {
    let server = TestServer::start_with(|config| {
        config.sources[0].expiry.min = herald::domain::expiry::XsDuration::parse("PT0.1S").unwrap();
    })
    .await;
    let sink = Sink::start().await;
    // 2004/01 reports Unsubscribed and Expired; the later versions report neither.
    let unsubscribed01 = subscribe_to(
        &server,
        Soap::V11,
        JAN2004,
        &sink.url("n"),
        &end_to(&sink.url("unsub01")),
    )
    .await;
    let unsubscribed08 = subscribe_to(
        &server,
        Soap::V11,
        AUG2004,
        &sink.url("n"),
        &end_to(&sink.url("unsub08")),
    )
    .await;
    let expiring = format!(
        "{}<wse:Expires>PT0.5S</wse:Expires>",
        end_to(&sink.url("exp01"))
    );
    let expired01 = subscribe_to(&server, Soap::V12, JAN2004, &sink.url("n"), &expiring).await;
    let cancelled08 = subscribe_to(
        &server,
        Soap::V12,
        AUG2004,
        &sink.url("n"),
        &end_to(&sink.url("cancel08")),
    )
    .await;
    let cancelled11 = subscribe_to(
        &server,
        Soap::V12,
        W3C2011,
        &sink.url("n"),
        &end_to(&sink.url("cancel11")),
    )
    .await;
    for managed in [&unsubscribed01, &unsubscribed08] {
        let reply = managed
            .request(Soap::V11, "Unsubscribe", "")
            .send(&server, &managed.manager_url)
            .await;
        assert_eq!(reply.status, 200);
    }
    // An operator cancels two subscriptions.
    for managed in [&cancelled08, &cancelled11] {
        let response = server
            .client
            .delete(server.url(&format!("/api/v1/subscriptions/{}", managed.id)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204);
    }
    let unsub = sink
        .wait_accepted("unsub01", 1, Duration::from_secs(5))
        .await;
    assert_eq!(
        unsub[0].text_of(WSE01, "Code").as_deref(),
        Some("wse:Unsubscribed")
    );
    let expired = sink.wait_accepted("exp01", 1, Duration::from_secs(5)).await;
    assert_eq!(
        expired[0].text_of(WSE01, "Code").as_deref(),
        Some("wse:Expired")
    );
    assert_eq!(expired[0].text_of(WSE01, "Id"), Some(expired01.id.clone()));
    let cancelled = sink
        .wait_accepted("cancel08", 1, Duration::from_secs(5))
        .await;
    assert_eq!(
        cancelled[0].text_of(WSE08, "Status").as_deref(),
        Some(format!("{WSE08}/SourceCancelling").as_str())
    );
    let cancelled = sink
        .wait_accepted("cancel11", 1, Duration::from_secs(5))
        .await;
    assert_eq!(
        cancelled[0].text_of(WSE11, "Status").as_deref(),
        Some(format!("{WSE11}/SourceCancelling").as_str())
    );
    // 2004/08 sends nothing on Unsubscribe: the outbox records it as skipped.
    let status = wait_status(&server, &unsubscribed08.id, Duration::from_secs(5), |s| {
        s["end_notice"] != "pending"
    })
    .await;
    assert_eq!(status["end_notice"], "skipped");
    assert!(sink.received("unsub08").is_empty());
}

#[tokio::test]
async fn removing_a_source_ends_its_subscriptions_with_source_shutting_down() {
    let store = TestStore::new().await;
    let sink = Sink::start().await;
    let with_orders = |config: &mut Config| {
        let mut orders = config.sources[0].clone();
        orders.name = herald::domain::subscription::SourceName::parse("orders").unwrap();
        config.sources.push(orders);
    };
    let server = TestServer::start_in(&store, with_orders).await;
    let body = subscribe_body(W3C2011, &sink.url("n"), &end_to(&sink.url("shutdown")));
    let reply = Message::new(Soap::V12, W3C2011, "Subscribe", body)
        .send(&server, &server.url("/eventing/orders"))
        .await;
    let managed = Managed::from_response(&server, W3C2011, &reply);
    server.stop().await;
    let server = TestServer::start_in(&store, |_| {}).await;
    let ends = sink
        .wait_accepted("shutdown", 1, Duration::from_secs(5))
        .await;
    assert_eq!(
        ends[0].text_of(WSE11, "Status").as_deref(),
        Some(format!("{WSE11}/SourceShuttingDown").as_str())
    );
    let managed = Managed {
        manager_url: server.url("/eventing/orders/subscriptions"),
        ..managed
    };
    let reply = managed
        .request(Soap::V12, "GetStatus", "")
        .send(&server, &managed.manager_url)
        .await;
    reply.assert_fault(Soap::V12, (WSE11, "UnknownSubscription"), false);
}

#[tokio::test]
async fn notifications_in_each_dialect_element_by_element() {
    let server = TestServer::start().await;
    let sink = Sink::start().await;
    let with_parameters = |url: &str, kind: &str| {
        format!(
            r#"<wse:NotifyTo><wsa:Address>{url}</wsa:Address><wsa:{kind}><k:Key xmlns:k="urn:key">42</k:Key></wsa:{kind}></wse:NotifyTo>"#
        )
    };
    // 2011, SOAP 1.2, wrapped, with a reference parameter.
    let wrapped = format!(
        r#"<wse:Subscribe><wse:Delivery>{}</wse:Delivery><wse:Format Name="http://www.w3.org/2011/03/ws-evt/DeliveryFormats/Wrap"/></wse:Subscribe>"#,
        with_parameters(&sink.url("wrapped"), "ReferenceParameters")
    );
    let wrapped_sub = Message::new(Soap::V12, W3C2011, "Subscribe", wrapped)
        .send(&server, &server.url("/eventing/default"))
        .await;
    let wrapped_id = Managed::from_response(&server, W3C2011, &wrapped_sub).id;
    // 2011 unwrapped, 2004/08 over SOAP 1.1 with a reference property, 2004/01.
    let unwrapped = format!(
        "<wse:Subscribe><wse:Delivery>{}</wse:Delivery></wse:Subscribe>",
        with_parameters(&sink.url("unwrapped"), "ReferenceParameters")
    );
    Message::new(Soap::V12, W3C2011, "Subscribe", unwrapped)
        .send(&server, &server.url("/eventing/default"))
        .await;
    let aug = format!(
        "<wse:Subscribe><wse:Delivery>{}</wse:Delivery></wse:Subscribe>",
        with_parameters(&sink.url("aug"), "ReferenceProperties")
    );
    Message::new(Soap::V11, AUG2004, "Subscribe", aug)
        .send(&server, &server.url("/eventing/default"))
        .await;
    subscribe_to(&server, Soap::V11, JAN2004, &sink.url("jan"), "").await;

    let event = r#"<o:order xmlns:o="urn:orders" total="150"><o:item>book</o:item></o:order>"#;
    let (_, seq) = publish(&server, "default", "urn:orders/created", event).await;
    assert_eq!(seq, 1);

    let check_event = |doc: &roxmltree::Document<'_>, parent: &str| {
        let order = doc
            .descendants()
            .find(|n| n.has_tag_name(("urn:orders", "order")))
            .expect("the event");
        assert_eq!(order.attribute("total"), Some("150"));
        assert_eq!(order.parent().unwrap().tag_name().name(), parent);
        assert!(
            order
                .descendants()
                .any(|n| n.has_tag_name(("urn:orders", "item")))
        );
    };

    let received = &sink
        .wait_accepted("wrapped", 1, Duration::from_secs(10))
        .await[0];
    let doc = received.doc();
    assert_eq!(doc.root_element().tag_name().namespace(), Some(SOAP12));
    assert_eq!(
        received.text_of(WSA2005, "Action").as_deref(),
        Some("http://www.w3.org/2011/03/ws-evt/WrappedSinkPortType/NotifyEvent")
    );
    assert_eq!(received.text_of(WSA2005, "To"), Some(sink.url("wrapped")));
    let key = doc
        .descendants()
        .find(|n| n.has_tag_name(("urn:key", "Key")))
        .unwrap();
    assert_eq!(key.parent().unwrap().tag_name().name(), "Header");
    assert_eq!(
        key.attribute((WSA2005, "IsReferenceParameter")),
        Some("true")
    );
    let notify = doc
        .descendants()
        .find(|n| n.has_tag_name((WSE11, "Notify")))
        .unwrap();
    assert_eq!(notify.attribute("actionURI"), Some("urn:orders/created"));
    assert_eq!(notify.parent().unwrap().tag_name().name(), "Body");
    check_event(&doc, "Notify");
    let content_type = received.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/soap+xml"),
        "{content_type}"
    );
    assert!(
        content_type.contains(
            "action=\"http://www.w3.org/2011/03/ws-evt/WrappedSinkPortType/NotifyEvent\""
        )
    );
    let message_id = received.message_id();
    assert!(message_id.starts_with("urn:uuid:"), "{message_id}");
    let _ = wrapped_id;

    let received = &sink
        .wait_accepted("unwrapped", 1, Duration::from_secs(10))
        .await[0];
    let doc = received.doc();
    assert_eq!(
        received.text_of(WSA2005, "Action").as_deref(),
        Some("urn:orders/created")
    );
    check_event(&doc, "Body");
    assert_ne!(
        received.message_id(),
        message_id,
        "MessageIDs differ per subscription"
    );

    let received = &sink.wait_accepted("aug", 1, Duration::from_secs(10)).await[0];
    let doc = received.doc();
    assert_eq!(doc.root_element().tag_name().namespace(), Some(SOAP11));
    assert_eq!(
        received.text_of(WSA2004, "Action").as_deref(),
        Some("urn:orders/created")
    );
    assert_eq!(received.text_of(WSA2004, "To"), Some(sink.url("aug")));
    assert_eq!(received.headers["soapaction"], "\"urn:orders/created\"");
    let key = doc
        .descendants()
        .find(|n| n.has_tag_name(("urn:key", "Key")))
        .unwrap();
    assert_eq!(key.parent().unwrap().tag_name().name(), "Header");
    assert_eq!(
        key.attributes().count(),
        0,
        "no IsReferenceParameter before WS-Addressing 1.0"
    );
    check_event(&doc, "Body");

    let received = &sink.wait_accepted("jan", 1, Duration::from_secs(10)).await[0];
    assert_eq!(
        received.text_of(WSA2003, "Action").as_deref(),
        Some("urn:orders/created")
    );
    assert_eq!(received.text_of(WSA2003, "To"), Some(sink.url("jan")));
    check_event(&received.doc(), "Body");
}

#[tokio::test]
async fn the_endpoint_policy_refuses_internal_addresses_unless_allow_listed() {
    let server = TestServer::start_with(|config| config.allowed_networks.clear()).await;
    for address in [
        "http://127.0.0.1:9/sink",
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
    ] {
        let reply = Message::new(
            Soap::V12,
            W3C2011,
            "Subscribe",
            subscribe_body(W3C2011, address, ""),
        )
        .send(&server, &server.url("/eventing/default"))
        .await;
        let fault = reply.assert_fault(Soap::V12, (WSE11, "UnusableEPR"), false);
        assert!(
            fault.reason.contains("not allow-listed"),
            "{}",
            fault.reason
        );
        let reply = Message::new(
            Soap::V12,
            AUG2004,
            "Subscribe",
            subscribe_body(AUG2004, address, ""),
        )
        .send(&server, &server.url("/eventing/default"))
        .await;
        reply.assert_fault(Soap::V12, (WSE08, "InvalidMessage"), false);
    }
    // EndTo too.
    let extra = end_to("http://192.168.1.1/end");
    let reply = Message::new(
        Soap::V12,
        W3C2011,
        "Subscribe",
        subscribe_body(W3C2011, "http://93.184.216.34/x", &extra),
    )
    .send(&server, &server.url("/eventing/default"))
    .await;
    reply.assert_fault(Soap::V12, (WSE11, "UnusableEPR"), false);
    // A public address is accepted (nothing is sent to it here: nothing is published).
    subscribe_to(&server, Soap::V12, W3C2011, "http://93.184.216.34/x", "").await;
}
