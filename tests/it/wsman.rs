//! WS-Management (DSP0226) clients end to end: a Subscribe shaped as a Windows collector sends
//! it and one shaped as openwsman sends it, each delivered to a real sink and managed through
//! the subscription manager with the ResourceURI headers; every WS-Man fault with its subcode,
//! action and detail.

use std::time::Duration;

use herald::config::Config;

use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, tick};
use crate::sink::Sink;

pub const WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
const MS_WSMAN: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd";
pub(crate) const EVENT_LOG: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/EventLog";
pub(crate) const CIM_INDICATION: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ProcessIndication";
pub(crate) const WSMAN_FAULT: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault";
pub(crate) const DETAIL: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/";
pub(crate) const PUSH: &str = "http://schemas.xmlsoap.org/ws/2004/08/eventing/DeliveryModes/Push";
const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";

/// `default` answers to the Windows event log URI; `cim` (a copy) to a CIM indication class.
pub fn wsman_sources(config: &mut Config) {
    let default = config
        .sources
        .iter_mut()
        .find(|s| s.name.as_str() == "default")
        .expect("default source");
    default.resource_uris = vec![EVENT_LOG.to_owned()];
    let mut cim = default.clone();
    cim.name = herald::domain::subscription::SourceName::parse("cim").unwrap();
    cim.resource_uris = vec![CIM_INDICATION.to_owned()];
    config.sources.push(cim);
}

/// A WS-Man request envelope: SOAP 1.2, WS-Addressing 2004/08, `headers` after the addressing
/// headers.
fn envelope(to: &str, action: &str, headers: &str, body: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA2004}" xmlns:e="{WSE08}" xmlns:w="{WSMAN}" xmlns:p="{MS_WSMAN}">
  <s:Header>
    <a:To>{to}</a:To>
    <a:Action s:mustUnderstand="true">{action}</a:Action>
    <a:MessageID>uuid:{}</a:MessageID>
    <a:ReplyTo><a:Address s:mustUnderstand="true">{ANONYMOUS}</a:Address></a:ReplyTo>
    {headers}
  </s:Header>
  <s:Body>{body}</s:Body>
</s:Envelope>"#,
        uuid::Uuid::new_v4()
    )
}

pub(crate) async fn send(
    server: &TestServer,
    url: &str,
    operation: &str,
    headers: &str,
    body: &str,
) -> Reply {
    send_action(server, url, &format!("{WSE08}/{operation}"), headers, body).await
}

/// A WS-Man request with any action (a WS-Enumeration one, say).
pub(crate) async fn send_action(
    server: &TestServer,
    url: &str,
    action: &str,
    headers: &str,
    body: &str,
) -> Reply {
    let text = envelope(url, action, headers, body);
    server.post_soap(url, Soap::V12, Some(action), text).await
}

/// The headers a Windows collector (WinRM client) puts on a Subscribe.
pub(crate) fn windows_headers(resource: &str) -> String {
    format!(
        r#"<w:ResourceURI s:mustUnderstand="true">{resource}</w:ResourceURI>
    <w:MaxEnvelopeSize s:mustUnderstand="true">512000</w:MaxEnvelopeSize>
    <w:Locale xml:lang="en-US" s:mustUnderstand="false"/>
    <p:DataLocale xml:lang="en-US" s:mustUnderstand="false"/>
    <w:OperationTimeout>PT60.000S</w:OperationTimeout>
    <w:OptionSet s:mustUnderstand="true">
      <w:Option Name="SubscriptionName">herald-test</w:Option>
      <w:Option Name="ContentFormat">RenderedText</w:Option>
      <w:Option Name="ReadExistingEvents" xsi:nil="true" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>
    </w:OptionSet>"#
    )
}

/// A Subscribe body as a Windows collector sends it (Push mode here: herald does not batch yet).
pub(crate) fn windows_subscribe(notify_to: &str, end_to: &str, delivery_extra: &str) -> String {
    format!(
        r#"<e:Subscribe>
      <e:EndTo><a:Address>{end_to}</a:Address>
        <a:ReferenceProperties><e:Identifier>B5E8C5A4-1111-2222-3333-444455556666</e:Identifier></a:ReferenceProperties>
      </e:EndTo>
      <e:Delivery Mode="{PUSH}">
        <w:Heartbeats>PT3600.000S</w:Heartbeats>
        <e:NotifyTo><a:Address>{notify_to}</a:Address>
          <a:ReferenceProperties><e:Identifier>B5E8C5A4-1111-2222-3333-444455556666</e:Identifier></a:ReferenceProperties>
        </e:NotifyTo>
        <w:ConnectionRetry Total="5">PT60.0S</w:ConnectionRetry>
        <w:Locale xml:lang="en-US"/>
        <w:ContentEncoding>UTF-8</w:ContentEncoding>
        {delivery_extra}
      </e:Delivery>
      <e:Expires>PT600.000S</e:Expires>
      <w:Filter Dialect="http://www.w3.org/TR/1999/REC-xpath-19991116" xmlns:t="urn:test">//t:tick[@n &gt; 1]</w:Filter>
    </e:Subscribe>"#
    )
}

/// The manager EPR of a SubscribeResponse: address and reference parameters as header blocks.
pub(crate) fn manager_of(reply: &Reply) -> (String, String) {
    assert_eq!(reply.status, 200, "subscribe failed: {}", reply.text);
    let doc = reply.doc();
    let manager = doc
        .descendants()
        .find(|n| n.has_tag_name((WSE08, "SubscriptionManager")))
        .expect("SubscriptionManager");
    let address = manager
        .descendants()
        .find(|n| n.has_tag_name((WSA2004, "Address")))
        .and_then(|n| n.text())
        .expect("manager address")
        .trim()
        .to_owned();
    let parameters = manager
        .descendants()
        .find(|n| n.has_tag_name((WSA2004, "ReferenceParameters")))
        .expect("reference parameters");
    let headers: String = parameters
        .children()
        .filter(|n| n.is_element())
        .map(|n| {
            let text = n.text().unwrap_or("").trim();
            match n.tag_name().namespace() {
                Some(WSMAN) => format!(
                    r#"<w:{0} s:mustUnderstand="true">{text}</w:{0}>"#,
                    n.tag_name().name()
                ),
                Some(WSE08) => format!("<e:{0}>{text}</e:{0}>", n.tag_name().name()),
                other => panic!("unexpected reference parameter {other:?}"),
            }
        })
        .collect();
    (address, headers)
}

/// GetStatus, Renew and Unsubscribe through the manager, with the WS-Man headers.
async fn manage(server: &TestServer, manager: &str, parameters: &str, extra_headers: &str) {
    let headers = format!("{parameters}{extra_headers}");
    let status = send(server, manager, "GetStatus", &headers, "<e:GetStatus/>").await;
    assert_eq!(status.status, 200, "GetStatus: {}", status.text);
    assert!(seconds(&status.text_of(WSE08, "Expires").expect("Expires")) > 0.0);
    let renew = send(
        server,
        manager,
        "Renew",
        &headers,
        "<e:Renew><e:Expires>PT900S</e:Expires></e:Renew>",
    )
    .await;
    assert_eq!(renew.status, 200, "Renew: {}", renew.text);
    assert_eq!(
        seconds(&renew.text_of(WSE08, "Expires").expect("Expires")),
        900.0
    );
    let unsubscribe = send(server, manager, "Unsubscribe", &headers, "<e:Unsubscribe/>").await;
    assert_eq!(unsubscribe.status, 200, "Unsubscribe: {}", unsubscribe.text);
    assert_eq!(
        unsubscribe.action().as_deref(),
        Some(format!("{WSE08}/UnsubscribeResponse").as_str())
    );
}

#[tokio::test]
async fn a_windows_collector_subscribes_at_wsman_and_is_delivered_to() {
    let server = TestServer::start_with(wsman_sources).await;
    let sink = Sink::start().await;
    let wsman_url = server.url("/wsman");
    let body = windows_subscribe(&sink.url("windows"), &sink.url("windows-end"), "");
    let reply = send(
        &server,
        &wsman_url,
        "Subscribe",
        &windows_headers(EVENT_LOG),
        &body,
    )
    .await;
    let (manager, parameters) = manager_of(&reply);
    assert_eq!(manager, wsman_url, "the manager is WS-Man's endpoint");
    assert!(
        parameters.contains(EVENT_LOG),
        "ResourceURI is a reference parameter: {parameters}"
    );
    assert_eq!(server.active("default").await, 1);
    assert_eq!(server.active("cim").await, 0);

    for n in 1..=3 {
        publish(&server, "default", TICK_ACTION, &tick(n)).await;
    }
    let received = sink
        .wait_accepted("windows", 2, Duration::from_secs(10))
        .await;
    let ticks: Vec<_> = received.iter().filter_map(|r| r.tick()).collect();
    assert_eq!(ticks, [2, 3], "the wsman:Filter applies");
    assert_eq!(
        received[0].text_of(WSE08, "Identifier").as_deref(),
        Some("B5E8C5A4-1111-2222-3333-444455556666"),
        "NotifyTo's reference property comes back as a header"
    );

    let extra = r#"<w:OperationTimeout>PT60.000S</w:OperationTimeout>
        <w:MaxEnvelopeSize s:mustUnderstand="true">512000</w:MaxEnvelopeSize>
        <w:Locale xml:lang="en-US" s:mustUnderstand="false"/>"#;
    manage(&server, &manager, &parameters, extra).await;
    assert_eq!(server.active("default").await, 0);
}

#[tokio::test]
async fn an_openwsman_client_subscribes_at_its_source_and_is_delivered_to() {
    let server = TestServer::start_with(wsman_sources).await;
    let sink = Sink::start().await;
    let source_url = server.url("/eventing/cim");
    let headers = format!(
        r#"<w:ResourceURI s:mustUnderstand="true">{CIM_INDICATION}</w:ResourceURI>
        <w:MaxEnvelopeSize s:mustUnderstand="true">153600</w:MaxEnvelopeSize>
        <w:OperationTimeout>PT60S</w:OperationTimeout>"#
    );
    let body = format!(
        r#"<e:Subscribe>
        <e:Delivery Mode="{PUSH}">
          <e:NotifyTo><a:Address>{}</a:Address></e:NotifyTo>
          <w:Heartbeats>PT10S</w:Heartbeats>
        </e:Delivery>
        <e:Expires>PT600S</e:Expires>
      </e:Subscribe>"#,
        sink.url("openwsman")
    );
    let reply = send(&server, &source_url, "Subscribe", &headers, &body).await;
    let (manager, parameters) = manager_of(&reply);
    assert_eq!(manager, server.url("/eventing/cim/subscriptions"));
    assert!(
        reply
            .text_of(WSE08, "Identifier")
            .is_some_and(|id| id.starts_with("uuid:")),
        "openwsman's client checks the identifier: {}",
        reply.text
    );
    publish(&server, "cim", TICK_ACTION, &tick(7)).await;
    let received = sink
        .wait_accepted("openwsman", 1, Duration::from_secs(10))
        .await;
    assert_eq!(received[0].tick(), Some(7));
    manage(&server, &manager, &parameters, "").await;
    assert_eq!(server.active("cim").await, 0);
}

/// The `wsman:FaultDetail` text of a fault.
fn fault_detail(reply: &Reply) -> Option<String> {
    reply.text_of(WSMAN, "FaultDetail")
}

/// Asserts a WS-Man fault: Sender, subcode, action and detail.
#[track_caller]
pub(crate) fn assert_wsman_fault(
    reply: &Reply,
    subcode: (&str, &str),
    action: &str,
    detail: Option<&str>,
) {
    let fault = reply.assert_fault(Soap::V12, subcode, false);
    assert_eq!(fault.action.as_deref(), Some(action), "{}", reply.text);
    assert_eq!(
        fault_detail(reply),
        detail.map(|d| format!("{DETAIL}{d}")),
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn resource_uris_route_or_are_refused_as_destination_unreachable() {
    let server = TestServer::start_with(wsman_sources).await;
    let wsa_fault = format!("{WSA2004}/fault");
    let body = windows_subscribe(SINK, SINK, "");
    let unknown = "http://schemas.microsoft.com/wbem/wsman/1/windows/Nope";
    for (path, resource) in [
        ("/eventing/default", unknown),
        // Declared, but by another source.
        ("/eventing/default", CIM_INDICATION),
        ("/wsman", unknown),
    ] {
        let reply = send(
            &server,
            &server.url(path),
            "Subscribe",
            &windows_headers(resource),
            &body,
        )
        .await;
        assert_wsman_fault(
            &reply,
            (WSA2004, "DestinationUnreachable"),
            &wsa_fault,
            Some("InvalidResourceURI"),
        );
    }
    // /wsman needs a ResourceURI to route by.
    let reply = send(&server, &server.url("/wsman"), "Subscribe", "", &body).await;
    assert_wsman_fault(
        &reply,
        (WSA2004, "DestinationUnreachable"),
        &wsa_fault,
        Some("InvalidResourceURI"),
    );
    // The manager checks it too.
    let reply = send(
        &server,
        &server.url("/eventing/default/subscriptions"),
        "GetStatus",
        &format!(
            "<w:ResourceURI>{unknown}</w:ResourceURI><e:Identifier>uuid:{}</e:Identifier>",
            uuid::Uuid::new_v4()
        ),
        "<e:GetStatus/>",
    )
    .await;
    assert_wsman_fault(
        &reply,
        (WSA2004, "DestinationUnreachable"),
        &wsa_fault,
        Some("InvalidResourceURI"),
    );
    // Without a ResourceURI the source is plain WS-Eventing, as before.
    let reply = send(
        &server,
        &server.url("/eventing/default"),
        "Subscribe",
        "",
        &body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(server.active("default").await, 1);
}

#[tokio::test]
async fn wsman_header_faults() {
    let server = TestServer::start_with(wsman_sources).await;
    let url = server.url("/eventing/default");
    let body = windows_subscribe(SINK, SINK, "");
    let resource = format!(r#"<w:ResourceURI s:mustUnderstand="true">{EVENT_LOG}</w:ResourceURI>"#);
    let cases: [(&str, &str, Option<&str>); 4] = [
        (
            r#"<w:SelectorSet><w:Selector Name="__cimnamespace">root/cimv2</w:Selector></w:SelectorSet>"#,
            "InvalidSelectors",
            Some("UnexpectedSelectors"),
        ),
        (
            r#"<w:OptionSet s:mustUnderstand="true"><w:Option Name="Compression" MustComply="true">SLDC</w:Option></w:OptionSet>"#,
            "InvalidOptions",
            Some("NotSupported"),
        ),
        (
            r#"<w:Locale xml:lang="fr-FR" s:mustUnderstand="true"/>"#,
            "UnsupportedFeature",
            Some("Locale"),
        ),
        (
            r#"<w:MaxEnvelopeSize s:mustUnderstand="true">256</w:MaxEnvelopeSize>"#,
            "EncodingLimit",
            Some("MaxEnvelopeSize"),
        ),
    ];
    for (header, subcode, detail) in cases {
        let reply = send(
            &server,
            &url,
            "Subscribe",
            &format!("{resource}{header}"),
            &body,
        )
        .await;
        assert_wsman_fault(&reply, (WSMAN, subcode), WSMAN_FAULT, detail);
    }
    assert_eq!(
        server.active("default").await,
        0,
        "a Subscribe whose response is too large is withdrawn"
    );
    // An empty SelectorSet selects nothing: accepted.
    let reply = send(
        &server,
        &url,
        "Subscribe",
        &format!("{resource}<w:SelectorSet/>"),
        &body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    // A WS-Man header herald still does not understand.
    let reply = send(
        &server,
        &url,
        "Subscribe",
        &format!(r#"{resource}<w:FragmentTransfer s:mustUnderstand="true">x</w:FragmentTransfer>"#),
        &body,
    )
    .await;
    assert_eq!(reply.status, 500, "{}", reply.text);
    assert_eq!(reply.fault().code, "MustUnderstand");
    assert!(reply.fault().reason.contains("FragmentTransfer"));
}

#[tokio::test]
async fn delivery_modes_filters_and_extensions_herald_does_not_do() {
    let server = TestServer::start_with(wsman_sources).await;
    let url = server.url("/eventing/default");
    let headers = windows_headers(EVENT_LOG);
    let eventing_fault = format!("{WSE08}/fault");
    // The pre-DMTF draft's Pull mode, and one of no specification.
    for mode in [
        "http://schemas.xmlsoap.org/ws/2005/02/management/Pull",
        "http://example.com/Smoke-Signals",
    ] {
        let body = windows_subscribe(SINK, SINK, "").replace(PUSH, mode);
        let reply = send(&server, &url, "Subscribe", &headers, &body).await;
        let fault = reply.assert_fault(
            Soap::V12,
            (WSE08, "DeliveryModeRequestedUnavailable"),
            false,
        );
        assert_eq!(fault.action.as_deref(), Some(eventing_fault.as_str()));
        let supported = reply.texts_of(WSE08, "SupportedDeliveryMode");
        assert_eq!(
            supported,
            [
                PUSH,
                "http://schemas.dmtf.org/wbem/wsman/1/wsman/PushWithAck",
                "http://schemas.dmtf.org/wbem/wsman/1/wsman/Events",
                "http://schemas.dmtf.org/wbem/wsman/1/wsman/Pull",
            ],
            "{}",
            reply.text
        );
    }
    for dialect in [
        "http://schemas.microsoft.com/wbem/wsman/1/WQL",
        "http://schemas.dmtf.org/wbem/cql/1/dsp0202.pdf",
    ] {
        let body = windows_subscribe(SINK, SINK, "")
            .replace("http://www.w3.org/TR/1999/REC-xpath-19991116", dialect);
        let body = body.replace(
            "//t:tick[@n &gt; 1]",
            "SELECT * FROM Win32_ProcessStartTrace",
        );
        let reply = send(&server, &url, "Subscribe", &headers, &body).await;
        let fault = reply.assert_fault(Soap::V12, (WSE08, "FilteringRequestedUnavailable"), false);
        assert_eq!(fault.action.as_deref(), Some(eventing_fault.as_str()));
        assert!(
            reply.count(WSE08, "SupportedDialect") >= 1
                && !reply.text.contains(&format!(">{dialect}<")),
            "the supported dialects, not this one: {}",
            reply.text
        );
    }
    let refused: [(&str, &str, &str); 2] = [
        // Kerberos is a DSP0226 profile herald does not deliver with (tests/it/wsman_auth.rs
        // has the ones it does).
        (
            "<w:Auth Profile=\"http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/http/spnego-kerberos\"/>",
            "UnsupportedFeature",
            "AuthorizationMode",
        ),
        (
            "<w:ContentEncoding>ISO-8859-1</w:ContentEncoding>",
            "EncodingLimit",
            "CharacterSet",
        ),
    ];
    for (extra, subcode, detail) in refused {
        let body = match extra {
            encoding if encoding.contains("ContentEncoding") => windows_subscribe(SINK, SINK, "")
                .replace("<w:ContentEncoding>UTF-8</w:ContentEncoding>", encoding),
            other => windows_subscribe(SINK, SINK, other),
        };
        let reply = send(&server, &url, "Subscribe", &headers, &body).await;
        assert_wsman_fault(&reply, (WSMAN, subcode), WSMAN_FAULT, Some(detail));
    }
    // Batching limits are Events-mode settings: in Push mode they are accepted and ignored.
    let body = windows_subscribe(
        SINK,
        SINK,
        r#"<w:MaxElements>20</w:MaxElements><w:MaxTime>PT30.000S</w:MaxTime><w:MaxEnvelopeSize Policy="Notify">512000</w:MaxEnvelopeSize>"#,
    );
    let reply = send(&server, &url, "Subscribe", &headers, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(server.active("default").await, 1);
}
