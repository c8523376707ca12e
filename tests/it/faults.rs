//! One test per fault: code, subcode, HTTP status, detail, and that nothing was written.

use herald::config::Config;
use herald::domain::expiry::{ExpiryPolicy, XsDuration};
use herald::domain::subscription::SourceName;
use herald::engine::SourcePolicy;

use crate::harness::*;

fn policy(name: &str, accept_datetime: bool, max_subscriptions: Option<u64>) -> SourcePolicy {
    SourcePolicy {
        name: SourceName::parse(name).unwrap(),
        expiry: ExpiryPolicy {
            default: XsDuration::parse("PT1H").unwrap(),
            min: XsDuration::parse("PT1M").unwrap(),
            max: Some(XsDuration::parse("P1D").unwrap()),
            accept_datetime,
        },
        max_subscriptions,
        max_event_bytes: 256 * 1024,
        retry: Default::default(),
        resource_uris: Vec::new(),
    }
}

fn with_extra_sources(config: &mut Config) {
    config.sources.push(policy("durations", false, None));
    config.sources.push(policy("tiny", true, Some(1)));
}

async fn subscribe_reply(
    server: &TestServer,
    soap: Soap,
    version: Version,
    source: &str,
    extra: &str,
) -> Reply {
    Message::new(
        soap,
        version,
        "Subscribe",
        subscribe_body(version, SINK, extra),
    )
    .send(server, &server.url(&format!("/eventing/{source}")))
    .await
}

#[tokio::test]
async fn invalid_expiration_time_in_the_2004_versions() {
    let server = TestServer::start().await;
    for version in [JAN2004, AUG2004, AUG2004_DPWS] {
        for soap in [Soap::V11, Soap::V12] {
            for expires in [
                "PT0S",
                "P0D",
                "-P1D",
                "2001-01-01T00:00:00Z",
                "tomorrow",
                "P1W",
                "p1d",
                "PT",
                "P99999999999999999999Y",
                "9999-12-31T23:59:59Z-garbage",
            ] {
                let extra = format!("<wse:Expires>{expires}</wse:Expires>");
                let reply = subscribe_reply(&server, soap, version, "default", &extra).await;
                let fault = reply.assert_fault(soap, (version.wse, "InvalidExpirationTime"), false);
                assert_eq!(
                    fault.action.as_deref(),
                    Some(format!("{}/fault", version.wse).as_str())
                );
            }
        }
    }
    assert_eq!(
        server.active("default").await,
        0,
        "no refused subscription was stored"
    );
}

#[tokio::test]
async fn unsupported_expiration_type_where_datetime_is_refused() {
    let server = TestServer::start_with(with_extra_sources).await;
    for version in [JAN2004, AUG2004, W3C2011] {
        let reply = subscribe_reply(
            &server,
            Soap::V12,
            version,
            "durations",
            "<wse:Expires>2099-01-01T00:00:00Z</wse:Expires>",
        )
        .await;
        reply.assert_fault(Soap::V12, (version.wse, "UnsupportedExpirationType"), false);
    }
    // A duration is fine on the same source.
    subscribe(
        &server,
        Soap::V12,
        W3C2011,
        "durations",
        "<wse:Expires>PT5M</wse:Expires>",
    )
    .await;
}

#[tokio::test]
async fn unsupported_expiration_value_in_2011_unless_best_effort() {
    let server = TestServer::start().await;
    for expires in [
        "P30D",
        "PT0.5S",
        "PT0S",
        "2001-01-01T00:00:00Z",
        "garbage",
        "P1W",
    ] {
        let extra = format!("<wse:Expires>{expires}</wse:Expires>");
        let reply = subscribe_reply(&server, Soap::V12, W3C2011, "default", &extra).await;
        let fault = reply.assert_fault(Soap::V12, (WSE11, "UnsupportedExpirationValue"), false);
        assert_eq!(
            fault.action.as_deref(),
            Some("http://www.w3.org/2011/03/ws-evt/fault")
        );
    }
    let managed = subscribe(
        &server,
        Soap::V12,
        W3C2011,
        "default",
        r#"<wse:Expires BestEffort="true">P30D</wse:Expires>"#,
    )
    .await;
    assert_eq!(
        managed.expires, "PT86400S",
        "adjusted to the source maximum"
    );
    // Renew follows the same rules.
    let reply = managed
        .request(Soap::V12, "Renew", "<wse:Expires>P30D</wse:Expires>")
        .send(&server, &managed.manager_url)
        .await;
    reply.assert_fault(Soap::V12, (WSE11, "UnsupportedExpirationValue"), false);
    let reply = managed
        .request(
            Soap::V12,
            "Renew",
            r#"<wse:Expires BestEffort="true">P30D</wse:Expires>"#,
        )
        .send(&server, &managed.manager_url)
        .await;
    assert_eq!(
        reply.text_of(WSE11, "GrantedExpires").as_deref(),
        Some("PT86400S")
    );
}

#[tokio::test]
async fn renew_with_bad_expiry_changes_nothing() {
    let server = TestServer::start().await;
    let managed = subscribe(
        &server,
        Soap::V11,
        AUG2004,
        "default",
        "<wse:Expires>PT10M</wse:Expires>",
    )
    .await;
    let reply = managed
        .request(Soap::V11, "Renew", "<wse:Expires>PT0S</wse:Expires>")
        .send(&server, &managed.manager_url)
        .await;
    reply.assert_fault(Soap::V11, (WSE08, "InvalidExpirationTime"), false);
    let reply = managed
        .request(Soap::V11, "GetStatus", "")
        .send(&server, &managed.manager_url)
        .await;
    let remaining = seconds(&reply.text_of(WSE08, "Expires").unwrap());
    assert!((590.0..=600.0).contains(&remaining), "{remaining}");
}

#[tokio::test]
async fn filtering_requested_unavailable_lists_the_supported_dialects() {
    let server = TestServer::start().await;
    for version in [JAN2004, AUG2004, W3C2011] {
        for soap in [Soap::V11, Soap::V12] {
            let reply = subscribe_reply(
                &server,
                soap,
                version,
                "default",
                r#"<wse:Filter Dialect="http://www.example.org/topicFilter">weather.storms</wse:Filter>"#,
            )
            .await;
            reply.assert_fault(soap, (version.wse, "FilteringRequestedUnavailable"), false);
            assert_eq!(
                reply.count(version.wse, "SupportedDialect"),
                5,
                "{}",
                reply.text
            );
            let doc = reply.doc();
            let dialects: Vec<_> = doc
                .descendants()
                .filter(|n| n.has_tag_name((version.wse, "SupportedDialect")))
                .map(|n| n.text().unwrap_or(""))
                .collect();
            assert!(dialects.contains(&"http://www.w3.org/TR/1999/REC-xpath-19991116"));
            assert!(dialects.contains(&"http://docs.oasis-open.org/ws-dd/ns/dpws/2009/01/Action"));
        }
    }
    assert_eq!(server.active("default").await, 0);
}

#[tokio::test]
async fn bad_filters_per_version() {
    let server = TestServer::start().await;
    let element_content = r#"<wse:Filter><x:y xmlns:x="urn:x"/></wse:Filter>"#;
    let too_long = format!("<wse:Filter>{}</wse:Filter>", "a".repeat(5000));
    let empty = "<wse:Filter>   </wse:Filter>";
    for filter in [element_content, too_long.as_str()] {
        let reply = subscribe_reply(&server, Soap::V12, W3C2011, "default", filter).await;
        reply.assert_fault(Soap::V12, (WSE11, "CannotProcessFilter"), false);
        let reply = subscribe_reply(&server, Soap::V12, AUG2004, "default", filter).await;
        reply.assert_fault(Soap::V12, (WSE08, "InvalidMessage"), false);
    }
    let reply = subscribe_reply(&server, Soap::V12, W3C2011, "default", empty).await;
    reply.assert_fault(Soap::V12, (WSE11, "EmptyFilter"), false);
    let reply = subscribe_reply(&server, Soap::V11, AUG2004, "default", empty).await;
    reply.assert_fault(Soap::V11, (WSE08, "InvalidMessage"), false);
    let both = r#"<wse:Filter>a</wse:Filter><m:Filter xmlns:m="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd">b</m:Filter>"#;
    let reply = subscribe_reply(&server, Soap::V12, AUG2004, "default", both).await;
    reply.assert_fault(Soap::V12, (WSE08, "InvalidMessage"), false);
    assert_eq!(server.active("default").await, 0);
}

#[tokio::test]
async fn delivery_mode_requested_unavailable() {
    let server = TestServer::start().await;
    for soap in [Soap::V11, Soap::V12] {
        let body = format!(
            r#"<wse:Subscribe><wse:Delivery Mode="http://schemas.xmlsoap.org/ws/2004/08/eventing/DeliveryModes/Pull"><wse:NotifyTo><wsa:Address>{SINK}</wsa:Address></wse:NotifyTo></wse:Delivery></wse:Subscribe>"#
        );
        let reply = Message::new(soap, AUG2004, "Subscribe", body)
            .send(&server, &server.url("/eventing/default"))
            .await;
        reply.assert_fault(soap, (WSE08, "DeliveryModeRequestedUnavailable"), false);
        assert_eq!(
            reply.text_of(WSE08, "SupportedDeliveryMode").as_deref(),
            Some("http://schemas.xmlsoap.org/ws/2004/08/eventing/DeliveryModes/Push"),
            "Push first, then the WS-Management modes"
        );
    }
    // Push named explicitly is fine.
    let body = format!(
        r#"<wse:Subscribe><wse:Delivery Mode=" http://schemas.xmlsoap.org/ws/2004/08/eventing/DeliveryModes/Push "><wse:NotifyTo><wsa:Address>{SINK}</wsa:Address></wse:NotifyTo></wse:Delivery></wse:Subscribe>"#
    );
    let reply = Message::new(Soap::V12, AUG2004, "Subscribe", body)
        .send(&server, &server.url("/eventing/default"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn delivery_format_requested_unavailable() {
    let server = TestServer::start().await;
    let reply = subscribe_reply(
        &server,
        Soap::V12,
        W3C2011,
        "default",
        r#"<wse:Format Name="urn:example:format/Batched"/>"#,
    )
    .await;
    reply.assert_fault(
        Soap::V12,
        (WSE11, "DeliveryFormatRequestedUnavailable"),
        false,
    );
    assert_eq!(reply.count(WSE11, "SupportedDeliveryFormat"), 2);
}

#[tokio::test]
async fn no_delivery_mechanism() {
    let server = TestServer::start().await;
    for body in [
        "<wse:Subscribe><wse:Delivery/></wse:Subscribe>",
        "<wse:Subscribe/>",
    ] {
        let reply = Message::new(Soap::V12, W3C2011, "Subscribe", body)
            .send(&server, &server.url("/eventing/default"))
            .await;
        reply.assert_fault(Soap::V12, (WSE11, "NoDeliveryMechanismEstablished"), false);
    }
    for (version, body) in [
        (AUG2004, "<wse:Subscribe><wse:Delivery/></wse:Subscribe>"),
        (AUG2004, "<wse:Subscribe/>"),
        (JAN2004, "<wse:Subscribe/>"),
    ] {
        let reply = Message::new(Soap::V11, version, "Subscribe", body)
            .send(&server, &server.url("/eventing/default"))
            .await;
        reply.assert_fault(Soap::V11, (version.wse, "InvalidMessage"), false);
    }
}

#[tokio::test]
async fn unusable_endpoint_references() {
    let server = TestServer::start().await;
    for address in [
        "mailto:ops@example.com",
        "http://www.w3.org/2005/08/addressing/anonymous",
        "not a url",
        "",
    ] {
        let body = subscribe_body(W3C2011, address, "");
        let reply = Message::new(Soap::V12, W3C2011, "Subscribe", body)
            .send(&server, &server.url("/eventing/default"))
            .await;
        reply.assert_fault(Soap::V12, (WSE11, "UnusableEPR"), false);
        let body = subscribe_body(AUG2004, address, "");
        let reply = Message::new(Soap::V12, AUG2004, "Subscribe", body)
            .send(&server, &server.url("/eventing/default"))
            .await;
        reply.assert_fault(Soap::V12, (WSE08, "InvalidMessage"), false);
    }
    let bad_end_to = "<wse:EndTo><wsa:Address>ftp://example.com/end</wsa:Address></wse:EndTo>";
    let reply = subscribe_reply(&server, Soap::V12, W3C2011, "default", bad_end_to).await;
    reply.assert_fault(Soap::V12, (WSE11, "UnusableEPR"), false);
    assert_eq!(server.active("default").await, 0);
}

#[tokio::test]
async fn event_source_unable_to_process_when_full() {
    let server = TestServer::start_with(with_extra_sources).await;
    subscribe(&server, Soap::V12, AUG2004, "tiny", "").await;
    for soap in [Soap::V11, Soap::V12] {
        let reply = subscribe_reply(&server, soap, AUG2004, "tiny", "").await;
        reply.assert_fault(soap, (WSE08, "EventSourceUnableToProcess"), true);
    }
    let reply = subscribe_reply(&server, Soap::V12, W3C2011, "tiny", "").await;
    let fault = reply.fault();
    assert_eq!(
        (reply.status, fault.code.as_str(), fault.subcode),
        (500, "Receiver", None)
    );
    assert_eq!(server.active("tiny").await, 1);
}

#[tokio::test]
async fn unknown_subscriptions() {
    let server = TestServer::start().await;
    for version in ALL_VERSIONS {
        for id in [
            "uuid:22e8a584-0d18-4228-b2a8-3716fa2097fa",
            "not-a-uuid",
            "",
        ] {
            let managed = Managed {
                version,
                manager_url: server.url("/eventing/default/subscriptions"),
                id: id.to_owned(),
                expires: String::new(),
            };
            let expected = if version.wse == WSE11 {
                (WSE11, "UnknownSubscription")
            } else {
                (version.wsa, "DestinationUnreachable")
            };
            let reply = managed
                .request(Soap::V12, "Unsubscribe", "")
                .send(&server, &managed.manager_url)
                .await;
            reply.assert_fault(Soap::V12, expected, false);
        }
    }
    // No identifier header at all.
    let reply = Message::new(Soap::V11, AUG2004, "GetStatus", "<wse:GetStatus/>")
        .send(&server, &server.url("/eventing/default/subscriptions"))
        .await;
    let fault = reply.assert_fault(Soap::V11, (WSA2004, "DestinationUnreachable"), false);
    assert!(
        fault.reason.contains("no subscription identifier"),
        "{}",
        fault.reason
    );
    // 2004/01 without wse:Id in the body.
    let reply = Message::new(Soap::V11, JAN2004, "Renew", "<wse:Renew/>")
        .send(&server, &server.url("/eventing/default"))
        .await;
    reply.assert_fault(Soap::V11, (WSE01, "InvalidMessage"), false);
}

#[tokio::test]
async fn addressing_faults() {
    let server = TestServer::start().await;
    let url = server.url("/eventing/default");
    // Unknown action.
    let mut message = Message::new(
        Soap::V12,
        W3C2011,
        "Subscribe",
        subscribe_body(W3C2011, SINK, ""),
    );
    // At the subscription manager (at the event source it would be an event to publish).
    message.action = "urn:example:DoSomethingElse".into();
    let reply = message
        .send(&server, &server.url("/eventing/default/subscriptions"))
        .await;
    reply.assert_fault(Soap::V12, (WSA2005, "ActionNotSupported"), false);
    assert_eq!(
        reply.text_of(WSA2005, "Action").as_deref(),
        Some("http://www.w3.org/2005/08/addressing/fault")
    );
    assert_eq!(
        reply
            .doc()
            .descendants()
            .filter(|n| n.has_tag_name((WSA2005, "ProblemAction")))
            .count(),
        1
    );
    let mut message = Message::new(
        Soap::V11,
        AUG2004,
        "Subscribe",
        subscribe_body(AUG2004, SINK, ""),
    );
    message.action = format!("{WSE08}/Frobnicate");
    message.send(&server, &url).await.assert_fault(
        Soap::V11,
        (WSA2004, "ActionNotSupported"),
        false,
    );

    // No action anywhere.
    for (version, subcode) in [
        (W3C2011, "MessageAddressingHeaderRequired"),
        (AUG2004, "MessageInformationHeaderRequired"),
    ] {
        let body = format!(
            r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:wsa="{}" xmlns:wse="{}"><s:Header><wsa:MessageID>urn:x</wsa:MessageID></s:Header><s:Body>{}</s:Body></s:Envelope>"#,
            version.wsa,
            version.wse,
            subscribe_body(version, SINK, "")
        );
        let reply = server.post_soap(&url, Soap::V12, None, body).await;
        reply.assert_fault(Soap::V12, (version.wsa, subcode), false);
    }

    // Repeated header.
    let message = Message::new(
        Soap::V12,
        W3C2011,
        "Subscribe",
        subscribe_body(W3C2011, SINK, ""),
    )
    .header("<wsa:To>http://a/</wsa:To>")
    .header("<wsa:To>http://b/</wsa:To>");
    message.send(&server, &url).await.assert_fault(
        Soap::V12,
        (WSA2005, "InvalidAddressingHeader"),
        false,
    );
    let message = Message::new(
        Soap::V12,
        AUG2004,
        "Subscribe",
        subscribe_body(AUG2004, SINK, ""),
    )
    .header("<wsa:ReplyTo><wsa:ReferenceParameters/></wsa:ReplyTo>");
    message.send(&server, &url).await.assert_fault(
        Soap::V12,
        (WSA2004, "InvalidMessageInformationHeader"),
        false,
    );

    // wsa:Action and the HTTP action disagree.
    let message = Message::new(
        Soap::V12,
        W3C2011,
        "Subscribe",
        subscribe_body(W3C2011, SINK, ""),
    );
    let reply = server
        .post_soap(
            &url,
            Soap::V12,
            Some("http://www.w3.org/2011/03/ws-evt/Renew"),
            message.envelope(),
        )
        .await;
    reply.assert_fault(Soap::V12, (WSA2005, "ActionMismatch"), false);

    // The action names one operation, the Body holds another.
    let mut message = Message::new(Soap::V12, AUG2004, "Subscribe", "<wse:Renew/>");
    message.action = format!("{WSE08}/Subscribe");
    message
        .send(&server, &url)
        .await
        .assert_fault(Soap::V12, (WSE08, "InvalidMessage"), false);

    // Unknown source.
    let message = Message::new(
        Soap::V12,
        W3C2011,
        "Subscribe",
        subscribe_body(W3C2011, SINK, ""),
    );
    let reply = message
        .send(&server, &server.url("/eventing/nosuchsource"))
        .await;
    reply.assert_fault(Soap::V12, (WSA2005, "DestinationUnreachable"), false);
    // Subscribe is not a manager operation.
    let reply = message
        .send(&server, &server.url("/eventing/default/subscriptions"))
        .await;
    reply.assert_fault(Soap::V12, (WSA2005, "ActionNotSupported"), false);
    assert_eq!(server.active("default").await, 0);
}

#[tokio::test]
async fn must_understand() {
    let server = TestServer::start().await;
    for (soap, flag) in [(Soap::V11, "1"), (Soap::V12, "true")] {
        let header = format!(r#"<x:Secret xmlns:x="urn:x" s:mustUnderstand="{flag}">1</x:Secret>"#);
        let reply = Message::new(
            soap,
            W3C2011,
            "Subscribe",
            subscribe_body(W3C2011, SINK, ""),
        )
        .header(header)
        .send(&server, &server.url("/eventing/default"))
        .await;
        let fault = reply.fault();
        assert_eq!(fault.code, "MustUnderstand", "{}", reply.text);
        assert_eq!(reply.status, 500);
        // A header for another role is not ours to understand.
        let header = format!(
            r#"<x:Secret xmlns:x="urn:x" s:mustUnderstand="{flag}" s:{}="urn:someone-else">1</x:Secret>"#,
            if soap == Soap::V11 { "actor" } else { "role" }
        );
        let reply = Message::new(
            soap,
            W3C2011,
            "Subscribe",
            subscribe_body(W3C2011, SINK, ""),
        )
        .header(header)
        .send(&server, &server.url("/eventing/default"))
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
}

#[tokio::test]
async fn malformed_messages_get_precise_faults_and_herald_keeps_serving() {
    let server = TestServer::start().await;
    let url = server.url("/eventing/default");
    let cases: Vec<(Soap, Vec<u8>, &str, &str)> = vec![
        (Soap::V12, b"<s:Envelope".to_vec(), "Sender", "not well-formed"),
        (Soap::V11, b"".to_vec(), "Client", "not well-formed"),
        (Soap::V11, b"\xff\xfe<\x00a\x00".to_vec(), "Client", "not UTF-8"),
        (
            Soap::V12,
            format!(r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><s:Envelope xmlns:s="{SOAP12}"><s:Body>&b;</s:Body></s:Envelope>"#).into_bytes(),
            "Sender",
            "DTD",
        ),
        (
            Soap::V12,
            b"<e:Envelope xmlns:e=\"http://example.com/not-soap\"><e:Body/></e:Envelope>".to_vec(),
            "VersionMismatch",
            "unsupported SOAP envelope namespace",
        ),
        (Soap::V12, format!(r#"<s:Envelope xmlns:s="{SOAP12}"><s:Header/></s:Envelope>"#).into_bytes(), "Sender", "no Body"),
        (Soap::V12, b"<notsoap/>".to_vec(), "Sender", "not a SOAP Envelope"),
        (
            Soap::V12,
            format!(r#"<s:Envelope xmlns:s="{SOAP12}"><s:Body>{}</s:Body></s:Envelope>"#, "<a>".repeat(200) + &"</a>".repeat(200)).into_bytes(),
            "Sender",
            "limits",
        ),
    ];
    for (soap, body, code, reason) in cases {
        let response = server
            .client
            .post(&url)
            .header(
                "Content-Type",
                if soap == Soap::V12 {
                    "application/soap+xml"
                } else {
                    "text/xml"
                },
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let reply = Reply {
            status,
            content_type: String::new(),
            text: response.text().await.unwrap(),
        };
        let fault = reply.fault();
        assert_eq!(fault.code, code, "{}", reply.text);
        assert!(
            fault.reason.contains(reason),
            "{reason:?} not in {:?}",
            fault.reason
        );
        let expected = if soap == Soap::V12 && code == "Sender" {
            400
        } else {
            500
        };
        assert_eq!(status, expected, "{}", reply.text);
    }
    // Still serving.
    subscribe(&server, Soap::V12, W3C2011, "default", "").await;
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 4096).await;
    let padding = format!("<!-- {} -->", "x".repeat(5000));
    let message = Message::new(
        Soap::V12,
        W3C2011,
        "Subscribe",
        subscribe_body(W3C2011, SINK, &padding),
    );
    let reply = message
        .send(&server, &server.url("/eventing/default"))
        .await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert!(reply.fault().reason.contains("larger than 4096 bytes"));
    // Chunked (no Content-Length) is limited too.
    let status = chunked_post(&server.base, "/eventing/default", &message.envelope()).await;
    assert_eq!(status, 413);
    assert_eq!(server.active("default").await, 0);
}

/// POSTs `body` with `Transfer-Encoding: chunked` over a raw connection and returns the status.
async fn chunked_post(base: &str, path: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/soap+xml\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let mut request = head.into_bytes();
    for chunk in body.as_bytes().chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything; a failed write is expected then.
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}
