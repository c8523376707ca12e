//! XML built to make the parser work for minutes (tens of thousands of attributes on one
//! element, thousands of namespace declarations in scope) is refused by the linear pre-scan,
//! on both the SOAP endpoint and the publish API, and herald stays responsive meanwhile.
//! How long a refusal takes is measured in `herald-bench` (scenario 8), not asserted here.

use std::time::Duration;

use crate::harness::*;

/// One element with `n` attributes (80,000: 789 KB).
pub fn many_attributes(n: usize) -> String {
    let attributes: String = (0..n).map(|i| format!(" a{i}=\"\"")).collect();
    format!("<o:e xmlns:o=\"urn:o\"{attributes}/>")
}

/// `root` namespace declarations on the root, and `children` children declaring one each.
pub fn namespaces_in_scope(root: usize, children: usize) -> String {
    let declarations: String = (0..root)
        .map(|i| format!(" xmlns:r{i}=\"urn:r{i}\""))
        .collect();
    let children: String = (0..children)
        .map(|i| format!("<c{i} xmlns:c=\"urn:c{i}\"/>"))
        .collect();
    format!("<o:e xmlns:o=\"urn:o\"{declarations}>{children}</o:e>")
}

/// `n` namespace declarations on one element.
pub fn many_declarations(n: usize) -> String {
    let declarations: String = (0..n)
        .map(|i| format!(" xmlns:p{i}=\"urn:p{i}\""))
        .collect();
    format!("<o:e xmlns:o=\"urn:o\"{declarations}/>")
}

/// The attack payloads with the reason each must be refused for.
fn payloads() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "80,000 attributes",
            many_attributes(80_000),
            "an element with more than 256 attributes",
        ),
        (
            "40,000 attributes",
            many_attributes(40_000),
            "an element with more than 256 attributes",
        ),
        (
            "800 declarations on the root, 8,000 children declaring one",
            namespaces_in_scope(800, 8_000),
            "an element with more than 32 namespace declarations",
        ),
        (
            "150 declarations in scope over five levels, 8,000 children declaring one",
            format!(
                "<o:e xmlns:o=\"urn:o\">{}</o:e>",
                (0..5).fold(namespaces_in_scope(0, 8_000), |inner, level| {
                    let declarations: String = (0..30)
                        .map(|i| format!(" xmlns:l{level}n{i}=\"urn:x\""))
                        .collect();
                    format!("<l{level}{declarations}>{inner}</l{level}>")
                })
            ),
            "more than 128 namespace declarations in scope",
        ),
        (
            "32,000 declarations on one element",
            many_declarations(32_000),
            "an element with more than 32 namespace declarations",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parser_bombs_are_refused_and_herald_stays_responsive() {
    let server = TestServer::start().await;
    // Four bombs in flight at once, as in the attack; health is answered meanwhile.
    let mut in_flight = Vec::new();
    for (name, payload, reason) in payloads() {
        let client = http_client();
        let url = server.url("/api/v1/sources/default/events");
        in_flight.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .header("Content-Type", "application/xml")
                .header("Herald-Action", "urn:x")
                .body(payload)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (name, reason, status, text)
        }));
    }
    let health = tokio::time::timeout(
        Duration::from_secs(5),
        server.client.get(server.url("/healthz")).send(),
    )
    .await
    .expect("healthz answers while the bombs are parsed")
    .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    for task in in_flight {
        let (name, reason, status, text) = task.await.unwrap();
        assert_eq!(status, 400, "{name}: {text}");
        assert!(text.contains(reason), "{name}: {text}");
    }
    // Nothing was stored: the next event is the first.
    let (_, seq) =
        crate::publish::publish(&server, "default", "urn:x", "<o:ok xmlns:o=\"urn:o\"/>").await;
    assert_eq!(seq, 1);

    // The same inside SOAP: a Sender fault saying which limit.
    for (name, payload, reason) in payloads() {
        let envelope = format!(
            r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:wsa="{WSA2005}"><s:Header><wsa:Action>urn:x</wsa:Action></s:Header><s:Body>{payload}</s:Body></s:Envelope>"#
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
            "{name}"
        );
        assert!(fault.reason.contains(reason), "{name}: {}", fault.reason);
    }
    server.stop().await;
}

#[tokio::test]
async fn xml_herald_does_not_read_is_refused() {
    let server = TestServer::start().await;
    for (body, reason) in [
        (
            "<?xml version=\"1.1\"?><o:e xmlns:o=\"urn:o\"/>".to_owned(),
            "only XML 1.0 is read",
        ),
        (
            "\u{feff}\u{feff}<o:e xmlns:o=\"urn:o\"/>".to_owned(),
            "a second byte order mark",
        ),
        (
            "<!DOCTYPE e [<!ENTITY x \"y\">]><e>&x;</e>".to_owned(),
            "document type declarations",
        ),
    ] {
        let response = server
            .client
            .post(server.url("/api/v1/sources/default/events"))
            .header("Content-Type", "application/xml")
            .header("Herald-Action", "urn:x")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 400, "{body:?}: {text}");
        assert!(text.contains(reason), "{body:?}: {text}");
    }
    server.stop().await;
}
