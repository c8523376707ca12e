//! The endpoint policy against the addresses an attacker tries: every spelling of a loopback,
//! metadata or otherwise internal address is refused at Subscribe, and a subscription that
//! points there (made while the network was allow-listed) is refused again at send time.
//! Nothing reaches the sink on 127.0.0.1.

use std::time::Duration;

use crate::delivery::{status_json, subscribe_to};
use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, tick};
use crate::sink::Sink;

/// Spellings of `127.0.0.1:port` that a hand-written host parser took for something else.
fn loopback_spellings(port: u16) -> Vec<String> {
    [
        "http://127.0.0.1.:P/sink/a",
        "http://127.0.0.1:P\\@evil.example/sink/a",
        "http://%31%32%37.0.0.1:P/sink/a",
        "http://127.0.0.1%2e:P/sink/a",
        "http://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}:P/sink/a",
        "http://127\u{3002}0\u{3002}0\u{3002}1:P/sink/a",
        "http://2130706433:P/sink/a",
        "http://0x7f.1:P/sink/a",
        "http://[::ffff:127.0.0.1]:P/sink/a",
        "http://localhost:P/sink/a",
    ]
    .iter()
    .map(|spelling| spelling.replace('P', &port.to_string()))
    .collect()
}

/// Other internal addresses: metadata through IPv6 embeddings, site-local.
const EMBEDDED: [&str; 5] = [
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
    "http://[2002:a9fe:a9fe::1]/",
    "http://[::a9fe:a9fe]/",
    "http://[::ffff:0:7f00:1]/",
    "http://[fec0::1]/",
];

#[tokio::test]
async fn internal_addresses_in_any_spelling_are_refused_at_subscribe() {
    let sink = Sink::start().await;
    let port: u16 = sink.base.rsplit(':').next().unwrap().parse().unwrap();
    let server = TestServer::start_with(|config| config.allowed_networks = Vec::new()).await;
    let mut addresses = loopback_spellings(port);
    addresses.extend(EMBEDDED.iter().map(|a| a.to_string()));
    for address in &addresses {
        for version in [W3C2011, AUG2004] {
            let reply = Message::new(
                Soap::V12,
                version,
                "Subscribe",
                subscribe_body(version, address, ""),
            )
            .send(&server, &server.url("/eventing/default"))
            .await;
            let subcode = if version == W3C2011 {
                "UnusableEPR"
            } else {
                "InvalidMessage"
            };
            let fault = reply.assert_fault(Soap::V12, (version.wse, subcode), false);
            assert!(
                fault.reason.contains("not allow-listed"),
                "{address}: {}",
                fault.reason
            );
        }
        // As EndTo too.
        let end_to = format!("<wse:EndTo><wsa:Address>{address}</wsa:Address></wse:EndTo>");
        let reply = Message::new(
            Soap::V12,
            W3C2011,
            "Subscribe",
            subscribe_body(W3C2011, "http://93.184.216.34/notify", &end_to),
        )
        .send(&server, &server.url("/eventing/default"))
        .await;
        reply.assert_fault(Soap::V12, (WSE11, "UnusableEPR"), false);
    }
    publish(&server, "default", TICK_ACTION, &tick(0)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received("a").len(), 0, "nothing reached the sink");
    server.stop().await;
}

#[tokio::test]
async fn an_endpoint_no_longer_allowed_is_refused_at_send_time() {
    let sink = Sink::start().await;
    let port: u16 = sink.base.rsplit(':').next().unwrap().parse().unwrap();
    let store = TestStore::new().await;
    // Subscribed while loopback was allow-listed ...
    let server = TestServer::start_in(&store, |_| {}).await;
    let mut ids = Vec::new();
    for address in loopback_spellings(port) {
        let extra = "<wse:Expires>PT1H</wse:Expires>";
        ids.push(
            subscribe_to(&server, Soap::V12, W3C2011, &address, extra)
                .await
                .id,
        );
    }
    server.stop().await;
    // ... and delivered after a restart without the allow-list.
    let server = TestServer::start_in(&store, |config| config.allowed_networks = Vec::new()).await;
    publish(&server, "default", TICK_ACTION, &tick(0)).await;
    for id in &ids {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            let status = status_json(&server, id).await;
            if status["attempts"].as_u64() >= Some(1) {
                break status;
            }
            assert_eq!(
                sink.received("a").len(),
                0,
                "delivered to the sink: {status}"
            );
            assert!(std::time::Instant::now() < deadline, "{id}: no attempt");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let error = status["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("not allow-listed"),
            "{}: {error}",
            status["notify_to"]
        );
    }
    assert_eq!(sink.received("a").len(), 0, "nothing reached the sink");
    server.stop().await;
}
