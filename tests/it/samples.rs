//! The WS-Eventing 2004/08 specification's sample messages (tests/data/messages), sent as they
//! are or with only the values a real client would have (identifier, a future expiry), and
//! herald's replies compared element by element with the specification's sample responses.

use std::collections::BTreeSet;

use crate::harness::*;

/// herald with the specification's example hosts (`www.example.com`, which does not resolve
/// here) allow-listed, as an operator lists the names of subscribers it knows.
async fn spec_server() -> TestServer {
    TestServer::start_with(|config| {
        config.allowed_hosts = vec!["*.example.com".parse().unwrap()];
    })
    .await
}

fn sample(name: &str) -> String {
    let path = format!("{}/tests/data/messages/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// Every element path (namespace + local name from the root) in a document, excluding the
/// contents of `Fault` and values.
fn element_paths(text: &str) -> BTreeSet<String> {
    let doc = roxmltree::Document::parse(text).expect("XML");
    doc.descendants()
        .filter(|n| n.is_element())
        .map(|n| {
            let mut names: Vec<String> = n
                .ancestors()
                .filter(|a| a.is_element())
                .map(|a| {
                    format!(
                        "{{{}}}{}",
                        a.tag_name().namespace().unwrap_or(""),
                        a.tag_name().name()
                    )
                })
                .collect();
            names.reverse();
            names.join("/")
        })
        .collect()
}

/// Asserts that every element of the sample appears at the same place in herald's reply.
#[track_caller]
fn assert_same_shape(sample_text: &str, reply: &Reply) {
    let expected = element_paths(sample_text);
    let actual = element_paths(&reply.text);
    let missing: Vec<_> = expected.difference(&actual).collect();
    assert!(
        missing.is_empty(),
        "missing {missing:#?}\nin {}",
        reply.text
    );
}

const SPEC_MESSAGE_ID: &str = "uuid:e1886c5c-5e86-48d1-8c77-fc1c28d47180";
const SPEC_ID: &str = "uuid:22e8a584-0d18-4228-b2a8-3716fa2097fa";

#[tokio::test]
async fn the_specification_subscribe_as_is_gets_filtering_requested_unavailable() {
    // The example uses a made-up topic dialect; herald says which dialects it supports, in a
    // fault addressed as the request asked (RelatesTo, To = ReplyTo, reference properties).
    let server = spec_server().await;
    let reply = server
        .post_soap(
            &server.url("/eventing/default"),
            Soap::V12,
            None,
            sample("wse200408-spec-subscribe.xml"),
        )
        .await;
    reply.assert_fault(Soap::V12, (WSE08, "FilteringRequestedUnavailable"), false);
    assert_eq!(reply.count(WSE08, "SupportedDialect"), 5);
    assert_eq!(
        reply.text_of(WSA2004, "RelatesTo").as_deref(),
        Some(SPEC_MESSAGE_ID)
    );
    assert_eq!(
        reply.text_of(WSA2004, "To").as_deref(),
        Some("http://www.example.com/MyEvEntsink")
    );
    assert_eq!(
        reply
            .text_of("http://www.example.com/warnings", "MySubscription")
            .as_deref(),
        Some("2597")
    );
    assert_eq!(server.active("default").await, 0);
}

#[tokio::test]
async fn the_specification_conversation_with_a_supported_dialect() {
    let server = spec_server().await;
    // The example's expiry (2004) lies in the past: as sent it is refused.
    let as_sent = sample("wse200408-spec-subscribe.xml").replace(
        "http://www.example.org/topicFilter",
        "urn:herald:dialect:topic",
    );
    let reply = server
        .post_soap(
            &server.url("/eventing/default"),
            Soap::V12,
            None,
            as_sent.clone(),
        )
        .await;
    reply.assert_fault(Soap::V12, (WSE08, "InvalidExpirationTime"), false);

    // With a future expiry (beyond the source's one-day maximum, so herald adjusts it and
    // answers in the type requested).
    let subscribe = as_sent.replace(
        "2004-06-26T21:07:00.000-08:00",
        "2099-06-26T21:07:00.000-08:00",
    );
    let reply = server
        .post_soap(&server.url("/eventing/default"), Soap::V12, None, subscribe)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_same_shape(&sample("wse200408-spec-subscriberesponse.xml"), &reply);
    assert_eq!(
        reply.action().as_deref(),
        Some(format!("{WSE08}/SubscribeResponse").as_str())
    );
    assert_eq!(
        reply.text_of(WSA2004, "RelatesTo").as_deref(),
        Some(SPEC_MESSAGE_ID)
    );
    assert_eq!(
        reply.text_of(WSA2004, "To").as_deref(),
        Some("http://www.example.com/MyEvEntsink")
    );
    let expires = reply.text_of(WSE08, "Expires").unwrap();
    assert!(
        expires.ends_with('Z') && expires.contains('T'),
        "a dateTime: {expires}"
    );
    let id = reply.text_of(WSE08, "Identifier").unwrap();
    let manager = reply.text_of(WSA2004, "Address").unwrap();
    assert_eq!(manager, server.url("/eventing/default/subscriptions"));

    // Renew, GetStatus, Unsubscribe: the examples with herald's identifier.
    let renew = sample("wse200408-spec-renew.xml")
        .replace(SPEC_ID, &id)
        .replace("2004-06-26T21:07:00.000-08:00", "PT2H");
    let reply = server.post_soap(&manager, Soap::V12, None, renew).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_same_shape(&sample("wse200408-spec-renewresponse.xml"), &reply);
    assert_eq!(reply.text_of(WSE08, "Expires").as_deref(), Some("PT2H"));
    assert_eq!(
        reply.text_of(WSA2004, "RelatesTo").as_deref(),
        Some("uuid:bd88b3df-5db4-4392-9621-aee9160721f6")
    );

    let status = sample("wse200408-spec-getstatus.xml").replace(SPEC_ID, &id);
    let reply = server.post_soap(&manager, Soap::V12, None, status).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_same_shape(&sample("wse200408-spec-getstatusresponse.xml"), &reply);

    let unsubscribe = sample("wse200408-spec-unsubscribe.xml").replace(SPEC_ID, &id);
    let reply = server
        .post_soap(&manager, Soap::V12, None, unsubscribe.clone())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_same_shape(&sample("wse200408-spec-unsubscriberesponse.xml"), &reply);
    assert_eq!(
        reply.body_element(),
        None,
        "2004/08 UnsubscribeResponse has an empty Body"
    );

    // Unsubscribing again: the subscription is gone.
    let reply = server
        .post_soap(&manager, Soap::V12, None, unsubscribe)
        .await;
    reply.assert_fault(Soap::V12, (WSA2004, "DestinationUnreachable"), false);
}

#[tokio::test]
async fn the_specification_manager_requests_as_is_name_an_unknown_subscription() {
    let server = spec_server().await;
    for name in [
        "wse200408-spec-getstatus.xml",
        "wse200408-spec-unsubscribe.xml",
    ] {
        let reply = server
            .post_soap(
                &server.url("/eventing/default/subscriptions"),
                Soap::V12,
                None,
                sample(name),
            )
            .await;
        reply.assert_fault(Soap::V12, (WSA2004, "DestinationUnreachable"), false);
    }
    // The Renew example's expiry is checked after the subscription is found.
    let reply = server
        .post_soap(
            &server.url("/eventing/default/subscriptions"),
            Soap::V12,
            None,
            sample("wse200408-spec-renew.xml"),
        )
        .await;
    reply.assert_fault(Soap::V12, (WSA2004, "DestinationUnreachable"), false);
}

#[tokio::test]
async fn the_specification_messages_over_soap_11() {
    // The same conversation re-enveloped in SOAP 1.1.
    let server = spec_server().await;
    let soap11 = |text: String| text.replace(SOAP12, SOAP11);
    let subscribe = sample("wse200408-spec-subscribe.xml")
        .replace(
            "http://www.example.org/topicFilter",
            "urn:herald:dialect:topic",
        )
        .replace("2004-06-26T21:07:00.000-08:00", "PT30M");
    let reply = server
        .post_soap(
            &server.url("/eventing/default"),
            Soap::V11,
            None,
            soap11(subscribe),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.content_type.starts_with("text/xml"));
    assert_same_shape(
        &soap11(sample("wse200408-spec-subscriberesponse.xml")),
        &reply,
    );
    assert_eq!(reply.text_of(WSE08, "Expires").as_deref(), Some("PT30M"));
}
