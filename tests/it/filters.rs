//! Each filter dialect on one event stream, end to end.

use std::time::Duration;

use crate::delivery::{status_json, subscribe_to, wait_status};
use crate::harness::*;
use crate::publish::publish;
use crate::sink::Sink;

#[tokio::test]
async fn each_dialect_on_one_event_stream() {
    let server = TestServer::start().await;
    let sink = Sink::start().await;
    let filter = |dialect: &str, expression: &str| {
        format!(
            r#"<wse:Filter xmlns:o="urn:orders" xmlns:s12="{SOAP12}" Dialect="{dialect}">{expression}</wse:Filter>"#
        )
    };
    let subscriptions = [
        (
            "xpath1999",
            AUG2004,
            filter(
                "http://www.w3.org/TR/1999/REC-xpath-19991116",
                "s12:Body/o:order[@total &gt; 100]",
            ),
        ),
        (
            "xpath2011",
            W3C2011,
            filter(
                "http://www.w3.org/2011/03/ws-evt/Dialects/XPath10",
                "/o:order[@total &gt; 100]",
            ),
        ),
        (
            "dpws",
            AUG2004_DPWS,
            filter(
                "http://docs.oasis-open.org/ws-dd/ns/dpws/2009/01/Action",
                "urn:orders/created",
            ),
        ),
        (
            "topic",
            W3C2011,
            filter("urn:herald:dialect:topic", "urn:shipments/*"),
        ),
        // No Dialect attribute: the version's default, XPath.
        (
            "default",
            W3C2011,
            "<wse:Filter xmlns:o=\"urn:orders\">/o:order</wse:Filter>".to_owned(),
        ),
        ("all", AUG2004, String::new()),
    ];
    let mut ids = Vec::new();
    for (path, version, extra) in &subscriptions {
        ids.push(
            subscribe_to(&server, Soap::V12, *version, &sink.url(path), extra)
                .await
                .id,
        );
    }
    let order = |total: u32| format!(r#"<o:order xmlns:o="urn:orders" total="{total}"/>"#);
    let stream = [
        ("urn:orders/created", order(50)),
        ("urn:orders/created", order(150)),
        ("urn:orders/created/eu", order(500)),
        (
            "urn:shipments/sent",
            r#"<sh:shipment xmlns:sh="urn:shipments"/>"#.to_owned(),
        ),
        ("urn:orders/createdX", order(999)),
    ];
    for (action, payload) in &stream {
        publish(&server, "default", action, payload).await;
    }
    // Once every cursor has passed the whole stream, each sink has all it will get.
    for id in &ids {
        wait_status(&server, id, Duration::from_secs(10), |s| s["cursor"] == 5).await;
    }
    let totals = |path: &str| -> Vec<String> {
        sink.accepted(path)
            .iter()
            .map(|r| {
                let doc = r.doc();
                doc.descendants()
                    .find(|n| n.has_tag_name(("urn:orders", "order")))
                    .and_then(|n| n.attribute("total"))
                    .unwrap_or("shipment")
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(totals("xpath1999"), ["150", "500", "999"]);
    assert_eq!(totals("xpath2011"), ["150", "500", "999"]);
    assert_eq!(totals("dpws"), ["50", "150", "500"]);
    assert_eq!(totals("topic"), ["shipment"]);
    assert_eq!(totals("default"), ["50", "150", "500", "999"]);
    assert_eq!(totals("all"), ["50", "150", "500", "shipment", "999"]);
    let status = status_json(&server, &ids[3]).await;
    assert_eq!(status["filter"]["dialect"], "urn:herald:dialect:topic");
}

#[tokio::test]
async fn a_filter_that_does_not_compile_is_refused_at_subscribe() {
    let server = TestServer::start().await;
    for expression in ["/o:order[", "/x:unbound", "$v"] {
        let extra = format!(r#"<wse:Filter xmlns:o="urn:orders">{expression}</wse:Filter>"#);
        let reply = Message::new(
            Soap::V12,
            W3C2011,
            "Subscribe",
            subscribe_body(W3C2011, SINK, &extra),
        )
        .send(&server, &server.url("/eventing/default"))
        .await;
        reply.assert_fault(Soap::V12, (WSE11, "CannotProcessFilter"), false);
        let reply = Message::new(
            Soap::V12,
            AUG2004,
            "Subscribe",
            subscribe_body(AUG2004, SINK, &extra),
        )
        .send(&server, &server.url("/eventing/default"))
        .await;
        reply.assert_fault(Soap::V12, (WSE08, "InvalidMessage"), false);
    }
    assert_eq!(server.active("default").await, 0);
}
