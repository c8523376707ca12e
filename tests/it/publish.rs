//! Publishing: SOAP one-way and the JSON API, durable before 202, precise errors, no partial
//! writes, the bearer token.

use serde_json::Value;

use crate::harness::*;

pub const TICK_ACTION: &str = "urn:test:tick";

/// A test event: `<e:tick xmlns:e="urn:test" n="N"/>`.
pub fn tick(n: u64) -> String {
    format!(r#"<e:tick xmlns:e="urn:test" n="{n}"/>"#)
}

/// Publishes one event with the JSON API; returns (id, seq).
pub async fn publish(
    server: &TestServer,
    source: &str,
    action: &str,
    payload: &str,
) -> (String, u64) {
    let response = server
        .client
        .post(server.url(&format!("/api/v1/sources/{source}/events")))
        .header("Content-Type", "application/xml")
        .header("Herald-Action", action)
        .body(payload.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let event = &body["events"][0];
    (
        event["id"].as_str().unwrap().to_owned(),
        event["seq"].as_u64().unwrap(),
    )
}

/// Publishes a batch; returns each event's seq in order.
pub async fn publish_batch(
    server: &TestServer,
    source: &str,
    events: &[(String, String)],
) -> Vec<u64> {
    let mut body = String::from(r#"<h:Events xmlns:h="urn:herald:publish">"#);
    for (action, payload) in events {
        body.push_str(&format!(
            r#"<h:Event action="{action}">{payload}</h:Event>"#
        ));
    }
    body.push_str("</h:Events>");
    let response = server
        .client
        .post(server.url(&format!("/api/v1/sources/{source}/events/batch")))
        .header("Content-Type", "application/xml")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 202, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

async fn post_raw(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut request = server.client.post(server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body.to_owned()).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.unwrap();
    if status >= 400 {
        assert_eq!(content_type, "application/problem+json", "{text}");
    }
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn publishing_assigns_gapless_sequence_numbers_in_every_form() {
    let server = TestServer::start().await;
    let (id, seq) = publish(&server, "default", TICK_ACTION, &tick(1)).await;
    assert!(id.starts_with("uuid:"));
    assert_eq!(seq, 1);
    // The action as a query parameter.
    let (status, body) = post_raw(
        &server,
        "/api/v1/sources/default/events?action=urn%3Atest%3Atick",
        &[("Content-Type", "application/xml")],
        &tick(2),
    )
    .await;
    assert_eq!((status, body["events"][0]["seq"].as_u64()), (202, Some(2)));
    let seqs = publish_batch(
        &server,
        "default",
        &[
            (TICK_ACTION.into(), tick(3)),
            (TICK_ACTION.into(), tick(4)),
            ("urn:test:other".into(), tick(5)),
        ],
    )
    .await;
    assert_eq!(seqs, [3, 4, 5]);
    // SOAP one-way: the Body's children are the event, wsa:Action its action.
    let message = format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:wsa="{WSA2005}"><s:Header><wsa:Action>{TICK_ACTION}</wsa:Action></s:Header><s:Body>{}</s:Body></s:Envelope>"#,
        tick(6)
    );
    let response = server
        .client
        .post(server.url("/eventing/default"))
        .header("Content-Type", "application/soap+xml")
        .body(message)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(response.headers()["herald-event-seq"], "6");
    assert!(
        response.headers()["herald-event-id"]
            .to_str()
            .unwrap()
            .starts_with("uuid:")
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"herald_events_published_total{source="default"} 6"#),
        "{metrics}"
    );
}

/// A request that must be refused: path, headers, body, expected status.
type BadPublish<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u16);

#[tokio::test]
async fn bad_publishes_get_precise_errors_and_write_nothing() {
    let server = TestServer::start().await;
    let xml = [
        ("Content-Type", "application/xml"),
        ("Herald-Action", TICK_ACTION),
    ];
    let cases: Vec<BadPublish> = vec![
        ("/api/v1/sources/nosuch/events", xml.to_vec(), tick(1), 404),
        (
            "/api/v1/sources/default/events",
            xml.to_vec(),
            String::new(),
            400,
        ),
        (
            "/api/v1/sources/default/events",
            xml.to_vec(),
            "  \n ".into(),
            400,
        ),
        (
            "/api/v1/sources/default/events",
            xml.to_vec(),
            "<e:tick xmlns:e='urn:test'".into(),
            400,
        ),
        (
            "/api/v1/sources/default/events",
            xml.to_vec(),
            r#"<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>"#.into(),
            400,
        ),
        (
            "/api/v1/sources/default/events",
            vec![("Content-Type", "application/xml")],
            tick(1),
            400,
        ),
        ("/api/v1/sources/default/events/batch", vec![], tick(1), 400),
        (
            "/api/v1/sources/default/events/batch",
            vec![],
            r#"<h:Events xmlns:h="urn:herald:publish"><h:Event action="urn:a"/></h:Events>"#.into(),
            400,
        ),
        (
            "/api/v1/sources/default/events/batch",
            vec![],
            format!(
                r#"<h:Events xmlns:h="urn:herald:publish"><h:Event action="urn:a">{}</h:Event><h:Event>{}</h:Event></h:Events>"#,
                tick(1),
                tick(2)
            ),
            400,
        ),
        (
            "/api/v1/sources/default/events/batch",
            vec![],
            r#"<h:Events xmlns:h="urn:herald:publish"/>"#.into(),
            400,
        ),
    ];
    for (path, headers, body, expected) in cases {
        let (status, problem) = post_raw(&server, path, &headers, &body).await;
        assert_eq!(status, expected, "{path} {body:?}: {problem}");
        assert_eq!(problem["status"].as_u64(), Some(u64::from(expected)));
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // A SOAP one-way message with an empty Body.
    let message = format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:wsa="{WSA2005}"><s:Header><wsa:Action>{TICK_ACTION}</wsa:Action></s:Header><s:Body/></s:Envelope>"#
    );
    let reply = server
        .post_soap(&server.url("/eventing/default"), Soap::V12, None, message)
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.fault().code, "Sender");
    // Nothing above was written: the next event is number 1.
    let (_, seq) = publish(&server, "default", TICK_ACTION, &tick(1)).await;
    assert_eq!(seq, 1);
}

#[tokio::test]
async fn the_bearer_token_guards_publishing_and_the_api() {
    let server = TestServer::start_with(|config| config.api_token = Some("s3cret".into())).await;
    let xml = [
        ("Content-Type", "application/xml"),
        ("Herald-Action", TICK_ACTION),
    ];
    let (status, _) = post_raw(&server, "/api/v1/sources/default/events", &xml, &tick(1)).await;
    assert_eq!(status, 401);
    let wrong = [xml[0], xml[1], ("Authorization", "Bearer s3cre")];
    let (status, _) = post_raw(&server, "/api/v1/sources/default/events", &wrong, &tick(1)).await;
    assert_eq!(status, 401);
    let message = format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:wsa="{WSA2005}"><s:Header><wsa:Action>{TICK_ACTION}</wsa:Action></s:Header><s:Body>{}</s:Body></s:Envelope>"#,
        tick(1)
    );
    let reply = server
        .post_soap(
            &server.url("/eventing/default"),
            Soap::V12,
            None,
            message.clone(),
        )
        .await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert!(reply.fault().reason.contains("bearer token"));
    let (status, _) = post_raw(
        &server,
        "/api/v1/sources/default/events",
        &[xml[0], xml[1], ("Authorization", "Bearer s3cret")],
        &tick(1),
    )
    .await;
    assert_eq!(status, 202);
    // The scheme is case-insensitive; the token is not.
    for (header, expected) in [
        ("bearer s3cret", 202),
        ("BEARER s3cret", 202),
        ("Bearer S3CRET", 401),
        ("Basic s3cret", 401),
    ] {
        let headers = [xml[0], xml[1], ("Authorization", header)];
        let (status, _) = post_raw(
            &server,
            "/api/v1/sources/default/events",
            &headers,
            &tick(1),
        )
        .await;
        assert_eq!(status, expected, "{header}");
    }
    // Subscribing stays open: WS-Eventing clients cannot send a bearer token.
    subscribe(&server, Soap::V12, W3C2011, "default", "").await;
    let status = server
        .client
        .get(server.url("/api/v1/subscriptions/uuid:22e8a584-0d18-4228-b2a8-3716fa2097fa"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401);
    // Every JSON API route is behind the token, the batch and DELETE included.
    let status = server
        .client
        .delete(server.url("/api/v1/subscriptions/uuid:22e8a584-0d18-4228-b2a8-3716fa2097fa"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401);
    let (status, _) = post_raw(
        &server,
        "/api/v1/sources/default/events/batch",
        &xml,
        "<x/>",
    )
    .await;
    assert_eq!(status, 401);
}
