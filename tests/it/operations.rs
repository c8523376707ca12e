//! Every operation in every WS-Eventing version, over SOAP 1.1 and 1.2.

use std::time::{Duration, Instant};

use crate::delivery::subscribe_to;
use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, tick};
use crate::sink::{Behavior, Sink};

#[tokio::test]
async fn every_operation_in_every_version_over_both_soap_versions() {
    let server = TestServer::start().await;
    let mut created = 0;
    for version in ALL_VERSIONS {
        for soap in [Soap::V11, Soap::V12] {
            let context = format!("{} over {soap:?}", version.name);
            let subscribe = Message::new(
                soap,
                version,
                "Subscribe",
                subscribe_body(version, SINK, "<wse:Expires>PT10M</wse:Expires>"),
            );
            let reply = subscribe
                .send(&server, &server.url("/eventing/default"))
                .await;
            assert_eq!(reply.status, 200, "{context}: {}", reply.text);
            let expected_type = match soap {
                Soap::V11 => "text/xml",
                Soap::V12 => "application/soap+xml",
            };
            assert!(reply.content_type.starts_with(expected_type), "{context}");
            assert_eq!(
                reply.action().as_deref(),
                Some(format!("{}/SubscribeResponse", version.wse).as_str()),
                "{context}"
            );
            assert_eq!(
                reply.text_of(version.wsa, "RelatesTo"),
                subscribe.message_id.clone(),
                "{context}: RelatesTo echoes MessageID"
            );
            let managed = Managed::from_response(&server, version, &reply);
            assert!(managed.id.starts_with("uuid:"), "{context}: {}", managed.id);
            assert_eq!(managed.expires, "PT10M", "{context}: granted as requested");
            created += 1;
            assert_eq!(server.active("default").await, created);

            let reply = managed
                .request(soap, "Renew", "<wse:Expires>PT20M</wse:Expires>")
                .send(&server, &managed.manager_url)
                .await;
            assert_eq!(reply.status, 200, "{context}: {}", reply.text);
            assert_eq!(
                reply.body_element(),
                Some((version.wse.to_owned(), "RenewResponse".to_owned()))
            );
            let granted = if version.wse == WSE11 {
                "GrantedExpires"
            } else {
                "Expires"
            };
            assert_eq!(
                reply.text_of(version.wse, granted).as_deref(),
                Some("PT20M"),
                "{context}"
            );

            if version.wse != WSE01 {
                let reply = managed
                    .request(soap, "GetStatus", "")
                    .send(&server, &managed.manager_url)
                    .await;
                assert_eq!(reply.status, 200, "{context}: {}", reply.text);
                assert_eq!(
                    reply.action().as_deref(),
                    Some(format!("{}/GetStatusResponse", version.wse).as_str())
                );
                let remaining = seconds(&reply.text_of(version.wse, granted).expect("expiry"));
                assert!(
                    (1190.0..=1200.0).contains(&remaining),
                    "{context}: {remaining}"
                );
            }

            let reply = managed
                .request(soap, "Unsubscribe", "")
                .send(&server, &managed.manager_url)
                .await;
            assert_eq!(reply.status, 200, "{context}: {}", reply.text);
            assert_eq!(
                reply.action().as_deref(),
                Some(format!("{}/UnsubscribeResponse", version.wse).as_str())
            );
            if version.wse == WSE11 {
                assert_eq!(
                    reply.body_element(),
                    Some((WSE11.to_owned(), "UnsubscribeResponse".to_owned()))
                );
            } else {
                assert_eq!(reply.body_element(), None, "{context}: empty Body");
            }
            created -= 1;
            assert_eq!(server.active("default").await, created);

            // Gone: every manager operation now gets the unknown-subscription fault.
            let unknown = if version.wse == WSE11 {
                (WSE11, "UnknownSubscription")
            } else {
                (version.wsa, "DestinationUnreachable")
            };
            for operation in ["Renew", "Unsubscribe"] {
                let reply = managed
                    .request(soap, operation, "")
                    .send(&server, &managed.manager_url)
                    .await;
                reply.assert_fault(soap, unknown, false);
            }
        }
    }
}

#[tokio::test]
async fn january_2004_has_no_get_status() {
    let server = TestServer::start().await;
    let managed = subscribe(&server, Soap::V12, JAN2004, "default", "").await;
    let reply = managed
        .request(Soap::V12, "GetStatus", "")
        .send(&server, &managed.manager_url)
        .await;
    reply.assert_fault(Soap::V12, (WSA2003, "ActionNotSupported"), false);
}

#[tokio::test]
async fn prefixes_and_whitespace_do_not_matter() {
    let server = TestServer::start().await;
    let body = r#"<?xml version="1.0"?>
<E:Envelope xmlns:E="http://www.w3.org/2003/05/soap-envelope">
  <E:Header>
    <A:Action xmlns:A="http://www.w3.org/2005/08/addressing">
        http://www.w3.org/2011/03/ws-evt/Subscribe
    </A:Action>
    <A:MessageID xmlns:A="http://www.w3.org/2005/08/addressing">  urn:uuid:0001  </A:MessageID>
  </E:Header>
  <E:Body>
    <Subscribe xmlns="http://www.w3.org/2011/03/ws-evt">
      <Delivery><NotifyTo><Address xmlns="http://www.w3.org/2005/08/addressing">
          http://127.0.0.1:9/sink
      </Address></NotifyTo></Delivery>
      <Expires>
         PT5M
      </Expires>
    </Subscribe>
  </E:Body>
</E:Envelope>"#;
    let reply = server
        .post_soap(
            &server.url("/eventing/default"),
            Soap::V12,
            None,
            body.to_owned(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.text_of(WSA2005, "RelatesTo").as_deref(),
        Some("urn:uuid:0001")
    );
    let managed = Managed::from_response(&server, W3C2011, &reply);
    assert_eq!(managed.expires, "PT5M");
    // The identifier echoed with surrounding whitespace and another prefix still works.
    let status = format!(
        r#"<x:Envelope xmlns:x="http://schemas.xmlsoap.org/soap/envelope/">
  <x:Header>
    <ad:Action xmlns:ad="http://www.w3.org/2005/08/addressing">http://www.w3.org/2011/03/ws-evt/GetStatus</ad:Action>
    <q:SubscriptionId xmlns:q="urn:herald:eventing">
        {}
    </q:SubscriptionId>
  </x:Header>
  <x:Body><ev:GetStatus xmlns:ev="http://www.w3.org/2011/03/ws-evt"/></x:Body>
</x:Envelope>"#,
        managed.id
    );
    let reply = server
        .post_soap(&managed.manager_url, Soap::V11, None, status)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.text_of(WSE11, "GrantedExpires").is_some());
}

#[tokio::test]
async fn reply_to_address_and_reference_parameters_are_echoed() {
    let server = TestServer::start().await;
    for (version, marked) in [(AUG2004, false), (W3C2011, true)] {
        let mut message = Message::new(
            Soap::V12,
            version,
            "Subscribe",
            subscribe_body(version, SINK, ""),
        );
        message.headers.push(
            r#"<wsa:ReplyTo><wsa:Address>http://client.example/replies</wsa:Address><wsa:ReferenceParameters><c:Ticket xmlns:c="urn:client">42</c:Ticket></wsa:ReferenceParameters></wsa:ReplyTo>"#
                .to_owned(),
        );
        let reply = message
            .send(&server, &server.url("/eventing/default"))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(
            reply.text_of(version.wsa, "To").as_deref(),
            Some("http://client.example/replies")
        );
        assert_eq!(reply.text_of("urn:client", "Ticket").as_deref(), Some("42"));
        let doc = reply.doc();
        let ticket = doc
            .descendants()
            .find(|n| n.has_tag_name(("urn:client", "Ticket")))
            .unwrap();
        assert_eq!(ticket.parent().unwrap().tag_name().name(), "Header");
        assert_eq!(
            ticket.attribute((WSA2005, "IsReferenceParameter")) == Some("true"),
            marked,
            "{}",
            reply.text
        );
    }
}

#[tokio::test]
async fn reply_to_none_gets_no_reply_but_the_subscription_is_made() {
    let server = TestServer::start().await;
    let mut message = Message::new(
        Soap::V12,
        W3C2011,
        "Subscribe",
        subscribe_body(W3C2011, SINK, ""),
    );
    message.reply_to = Some("http://www.w3.org/2005/08/addressing/none".into());
    let reply = message
        .send(&server, &server.url("/eventing/default"))
        .await;
    assert_eq!(reply.status, 202);
    assert_eq!(reply.text, "");
    assert_eq!(server.active("default").await, 1);
}

#[tokio::test]
async fn action_may_come_from_http_alone() {
    let server = TestServer::start().await;
    for soap in [Soap::V11, Soap::V12] {
        let body = format!(
            r#"<s:Envelope xmlns:s="{}" xmlns:wsa="{WSA2004}" xmlns:wse="{WSE08}"><s:Body>{}</s:Body></s:Envelope>"#,
            soap.ns(),
            subscribe_body(AUG2004, SINK, "")
        );
        let reply = server
            .post_soap(
                &server.url("/eventing/default"),
                soap,
                Some(&format!("{WSE08}/Subscribe")),
                body,
            )
            .await;
        assert_eq!(reply.status, 200, "{soap:?}: {}", reply.text);
        assert_eq!(
            reply.text_of(WSE08, "Expires").as_deref(),
            Some("PT3600S"),
            "source default"
        );
    }
}

#[tokio::test]
async fn subscriptions_keep_end_to_filter_and_format() {
    let server = TestServer::start().await;
    let extra = r#"<wse:EndTo><wsa:Address>http://127.0.0.1:9/end</wsa:Address></wse:EndTo>
        <wse:Format Name="http://www.w3.org/2011/03/ws-evt/DeliveryFormats/Wrap"/>
        <wse:Filter xmlns:o="urn:orders" Dialect="http://www.w3.org/2011/03/ws-evt/Dialects/XPath10">/o:order[@total &gt; 100]</wse:Filter>"#;
    let managed = subscribe(&server, Soap::V12, W3C2011, "default", extra).await;
    assert!(managed.id.starts_with("uuid:"));
    // WS-Management sends its filter as wsman:Filter.
    let wsman = r#"<m:Filter xmlns:m="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" Dialect="http://schemas.xmlsoap.org/ws/2006/02/devprof/Action">urn:a urn:b</m:Filter>"#;
    subscribe(&server, Soap::V12, AUG2004, "default", wsman).await;
    assert_eq!(server.active("default").await, 2);
}

#[tokio::test]
async fn health_and_metrics() {
    let server = TestServer::start().await;
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    subscribe(&server, Soap::V11, AUG2004, "default", "").await;
    let reply = Message::new(Soap::V11, AUG2004, "Subscribe", "<wse:Subscribe/>")
        .send(&server, &server.url("/eventing/default"))
        .await;
    assert_eq!(reply.status, 500);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"herald_requests_total{operation="subscribe",outcome="ok"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"herald_requests_total{operation="subscribe",outcome="sender_fault"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"herald_active_subscriptions{source="default"} 1"#),
        "{metrics}"
    );
}

/// Waits until the backlog gauge of `default` reads `expected`.
async fn wait_backlog(server: &TestServer, expected: u64) {
    let line = format!(r#"herald_backlog_events{{source="default"}} {expected}"#);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = server.metrics().await;
        if metrics.lines().any(|l| l == line) {
            return;
        }
        assert!(Instant::now() < deadline, "waiting for {line}:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_backlog_gauge_follows_each_readers_distance_from_the_head() {
    let server = TestServer::start().await;
    let sink = Sink::start().await;
    sink.behave("down", Behavior::AlwaysFail);
    let mut failing = Vec::new();
    for _ in 0..2 {
        failing.push(subscribe_to(&server, Soap::V12, W3C2011, &sink.url("down"), "").await);
    }
    for n in 1..=3 {
        publish(&server, "default", TICK_ACTION, &tick(n)).await;
    }
    // Two readers three events behind.
    wait_backlog(&server, 6).await;
    // One that starts at the head and keeps up adds nothing, also as the head moves.
    let up = subscribe_to(&server, Soap::V12, W3C2011, &sink.url("up"), "").await;
    wait_backlog(&server, 6).await;
    publish(&server, "default", TICK_ACTION, &tick(4)).await;
    sink.wait_accepted("up", 1, Duration::from_secs(10)).await;
    wait_backlog(&server, 8).await;
    // An ended reader leaves it, with its cursor (4, then 0).
    for managed in [&up, &failing[0]] {
        let reply = managed
            .request(Soap::V12, "Unsubscribe", "")
            .send(&server, &managed.manager_url)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    wait_backlog(&server, 4).await;
}
