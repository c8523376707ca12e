//! Webhook subscriptions through the JSON API, delivered to real receivers on loopback: the
//! event as published (JSON or XML), Standard Webhooks signatures checked here with HMAC-SHA256
//! of our own, CloudEvents in both modes, retries, changes in place (URL, filter, secret
//! rotation, expiry), the list, the end and its notice, and every refusal.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::channel_callbacks::Receiver;
use crate::delivery::{fast_retries, subscribe_to};
use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, tick};
use crate::sink::Sink;

async fn start() -> TestServer {
    TestServer::start_with(|config| {
        fast_retries(config);
        config.sources[0].expiry.min = herald::domain::expiry::XsDuration::parse("PT0.1S").unwrap();
        config.sweep_interval = Duration::from_millis(50);
    })
    .await
}

async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server.client.request(method, server.url(path));
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn create(server: &TestServer, body: Value) -> Value {
    let (status, made) = call(
        server,
        reqwest::Method::POST,
        "/api/v1/subscriptions",
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    made
}

async fn publish_json(server: &TestServer, action: &str, json: &str) {
    let response = server
        .client
        .post(server.url("/api/v1/sources/default/events"))
        .header("Content-Type", "application/json")
        .header("Herald-Action", action)
        .body(json.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The signatures of a delivery that verify with `secret`, computed here.
fn verifies(secret: &str, headers: &reqwest::header::HeaderMap, body: &[u8]) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let signed = [
        header(headers, "webhook-id").as_bytes(),
        b".",
        header(headers, "webhook-timestamp").as_bytes(),
        b".",
        body,
    ]
    .concat();
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
        &signed,
    );
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    );
    header(headers, "webhook-signature")
        .split(' ')
        .any(|signature| signature == expected)
}

#[tokio::test]
async fn standard_webhooks_get_the_event_as_published_signed_in_order_and_retried() {
    let server = start().await;
    let receiver = Receiver::start().await;
    receiver
        .failures
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let made = create(&server, json!({"source": "default", "url": receiver.url})).await;
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{made}");
    assert_eq!(made["format"], "standard-webhooks");
    assert_eq!(made["status"], "active");
    let json_event = "{\"order\": 42, \"note\": \"<fragile> & \\\"quoted\\\"\"}\n";
    publish_json(&server, "urn:shop:created", json_event).await;
    publish(&server, "default", TICK_ACTION, &tick(2)).await;

    // Two failures, then both in order: 4 requests.
    let got = receiver.wait(4, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 4, "{got:?}");
    let (first_try, _) = &got[0];
    for (headers, body) in &got {
        assert!(verifies(&secret, &headers_of(headers), body), "{headers:?}");
    }
    let (json_headers, json_body) = &got[2];
    assert_eq!(
        std::str::from_utf8(json_body).unwrap(),
        json_event,
        "byte for byte"
    );
    assert_eq!(json_headers["content-type"], "application/json");
    assert_eq!(json_headers["herald-event-type"], "urn:shop:created");
    assert_eq!(
        json_headers["webhook-id"], first_try["webhook-id"],
        "the same webhook-id on every attempt"
    );
    let (xml_headers, xml_body) = &got[3];
    assert_eq!(std::str::from_utf8(xml_body).unwrap(), tick(2));
    assert_eq!(xml_headers["content-type"], "application/xml");
    assert_ne!(xml_headers["webhook-id"], json_headers["webhook-id"]);
    let timestamp: i64 = header(&headers_of(xml_headers), "webhook-timestamp")
        .parse()
        .unwrap();
    assert!((timestamp - jiff::Timestamp::now().as_second()).abs() < 30);

    // A wrong secret does not verify: the check above can fail.
    assert!(!verifies(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        &headers_of(xml_headers),
        xml_body
    ));
    let id = made["id"].as_str().unwrap();
    let (_, view) = call(
        &server,
        reqwest::Method::GET,
        &format!("/api/v1/subscriptions/{id}"),
        None,
    )
    .await;
    assert_eq!(view["backlog"], 0, "{view}");
    assert!(
        view.get("secret").is_none(),
        "the secret is shown once: {view}"
    );
}

fn headers_of(headers: &axum::http::HeaderMap) -> reqwest::header::HeaderMap {
    let mut out = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        out.insert(
            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    out
}

#[tokio::test]
async fn cloudevents_in_binary_and_structured_mode() {
    let server = start().await;
    let binary = Receiver::start().await;
    let structured = Receiver::start().await;
    create(
        &server,
        json!({"source": "default", "url": binary.url, "format": "cloudevents-binary"}),
    )
    .await;
    create(
        &server,
        json!({"source": "default", "url": structured.url, "format": "cloudevents-structured"}),
    )
    .await;
    publish_json(
        &server,
        "com.example.order.created",
        r#"{"order":7,"a":[1.50]}"#,
    )
    .await;
    let (headers, body) = binary.wait(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(headers["ce-specversion"], "1.0");
    assert_eq!(headers["ce-type"], "com.example.order.created");
    assert_eq!(headers["ce-source"], "/api/v1/sources/default");
    assert_eq!(headers["content-type"], "application/json");
    assert!(!headers["ce-id"].is_empty());
    assert!(
        headers.get("webhook-signature").is_none(),
        "no secret, no signature"
    );
    assert_eq!(&body[..], br#"{"order":7,"a":[1.50]}"#);

    let (headers, body) = structured.wait(1, Duration::from_secs(10)).await.remove(0);
    assert!(
        header(&headers_of(&headers), "content-type").starts_with("application/cloudevents+json")
    );
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "com.example.order.created");
    assert_eq!(event["datacontenttype"], "application/json");
    assert_eq!(event["data"], json!({"order": 7, "a": [1.5]}));
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .ends_with(r#""data":{"order":7,"a":[1.50]}}"#),
        "the data as published"
    );
    // Any action travels: percent-encoded in the headers.
    let response = server
        .client
        .post(server.url("/api/v1/sources/default/events?action=urn%3Aa%20%C3%A9%22"))
        .header("Content-Type", "application/json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let got = binary.wait(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "delivered, not stuck on a bad header");
    assert_eq!(got[1].0["ce-type"], "urn:a%20%C3%A9%22");
    assert_eq!(
        event["id"],
        headers_of(&binary.got()[0].0)["ce-id"].to_str().unwrap()
    );
}

#[tokio::test]
async fn a_webhook_changes_in_place_url_filter_secret_and_expiry() {
    let server = start().await;
    let first = Receiver::start().await;
    let second = Receiver::start().await;
    let made = create(&server, json!({"source": "default", "url": first.url})).await;
    let id = made["id"].as_str().unwrap().to_owned();
    let old_secret = made["secret"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/subscriptions/{id}");
    publish(&server, "default", TICK_ACTION, &tick(1)).await;
    assert_eq!(first.wait(1, Duration::from_secs(10)).await.len(), 1);

    // New URL, a topic filter, a new secret: the rotated-out one still signs.
    let (status, changed) = call(
        &server,
        reqwest::Method::PATCH,
        &path,
        Some(json!({"url": second.url, "filter": {"topic": "urn:keep:*"}, "secret": null})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let new_secret = changed["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    assert_eq!(changed["signing_secrets"], 2);
    assert_eq!(changed["url"], second.url.as_str());
    publish(&server, "default", "urn:drop:this", &tick(2)).await;
    publish(&server, "default", "urn:keep:that", &tick(3)).await;
    let got = second.wait(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(second.got().len(), 1, "the filter drops tick 2");
    assert_eq!(first.got().len(), 1, "the old URL gets nothing more");
    let (headers, body) = &got[0];
    assert_eq!(std::str::from_utf8(body).unwrap(), tick(3));
    let headers = headers_of(headers);
    assert_eq!(header(&headers, "webhook-signature").split(' ').count(), 2);
    assert!(verifies(&new_secret, &headers, body));
    assert!(verifies(&old_secret, &headers, body));

    // A given secret, and an expiry.
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (status, changed) = call(
        &server,
        reqwest::Method::PATCH,
        &path,
        Some(json!({"secret": given, "expires": "PT2H", "filter": null})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["filter"], Value::Null);
    let expires: jiff::Timestamp = changed["expires_at"].as_str().unwrap().parse().unwrap();
    let in_two_hours = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2);
    assert!(
        (expires.as_second() - in_two_hours.as_second()).abs() < 60,
        "{changed}"
    );
    publish(&server, "default", "urn:drop:this", &tick(4)).await;
    let got = second.wait(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "no filter any more");
    assert!(verifies(given, &headers_of(&got[1].0), &got[1].1));
}

#[tokio::test]
async fn subscriptions_are_listed_a_page_at_a_time() {
    let server = start().await;
    let receiver = Receiver::start().await;
    let sink = Sink::start().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let made = create(&server, json!({"source": "default", "url": receiver.url})).await;
        ids.push(made["id"].as_str().unwrap().to_owned());
    }
    subscribe_to(&server, Soap::V12, W3C2011, &sink.url("soap"), "").await;
    ids.sort();
    let (status, page) = call(
        &server,
        reqwest::Method::GET,
        "/api/v1/subscriptions?kind=webhook&limit=2",
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let listed: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[0].as_str(), ids[1].as_str()]);
    let next = page["next"].as_str().unwrap();
    let (_, page) = call(
        &server,
        reqwest::Method::GET,
        &format!("/api/v1/subscriptions?kind=webhook&limit=2&after={next}"),
        None,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], ids[2].as_str());
    let (_, all) = call(&server, reqwest::Method::GET, "/api/v1/subscriptions", None).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    let (_, soap) = call(
        &server,
        reqwest::Method::GET,
        "/api/v1/subscriptions?kind=soap&status=active&source=default",
        None,
    )
    .await;
    assert_eq!(soap["items"].as_array().unwrap().len(), 1);
    assert_eq!(soap["items"][0]["delivery"], "soap-push");
    let (_, ended) = call(
        &server,
        reqwest::Method::GET,
        "/api/v1/subscriptions?status=ended",
        None,
    )
    .await;
    assert_eq!(ended["items"].as_array().unwrap().len(), 0);
    for bad in [
        "status=gone",
        "kind=ftp",
        "limit=0",
        "limit=501",
        "after=nope",
        "source=a%20b",
        "colour=red",
    ] {
        let (status, problem) = call(
            &server,
            reqwest::Method::GET,
            &format!("/api/v1/subscriptions?{bad}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}: {problem}");
    }
}

#[tokio::test]
async fn a_deleted_webhook_ends_quietly_and_an_expired_one_says_so_at_its_end_url() {
    let server = start().await;
    let receiver = Receiver::start().await;
    let ends = Receiver::start().await;
    let made = create(
        &server,
        json!({"source": "default", "url": receiver.url, "end_url": ends.url}),
    )
    .await;
    let id = made["id"].as_str().unwrap();
    let path = format!("/api/v1/subscriptions/{id}");
    let (status, _) = call(&server, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (_, view) = call(&server, reqwest::Method::GET, &path, None).await;
    assert_eq!(
        (&view["status"], &view["end_reason"]),
        (&json!("ended"), &json!("unsubscribed"))
    );
    let (status, _) = call(&server, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 404, "deleted once");

    let made = create(
        &server,
        json!({"source": "default", "url": receiver.url, "end_url": ends.url, "expires": "PT0.5S", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
    )
    .await;
    let got = ends.wait(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "only the expired one's end is told");
    let notice: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(notice["type"], "subscription.ended");
    assert_eq!(notice["reason"], "expired");
    assert_eq!(notice["subscription"], made["id"]);
    assert!(verifies(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        &headers_of(&got[0].0),
        &got[0].1
    ));
    // The notice is recorded as sent just after the receiver took it.
    let path = format!("/api/v1/subscriptions/{}", made["id"].as_str().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let view = loop {
        let (_, view) = call(&server, reqwest::Method::GET, &path, None).await;
        if view["end_notice"] == "sent" || std::time::Instant::now() > deadline {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(view["end_reason"], "expired");
    assert_eq!(view["end_notice"], "sent", "{view}");
}

#[tokio::test]
async fn a_json_event_reaches_a_soap_subscriber_as_an_element() {
    let server = start().await;
    let sink = Sink::start().await;
    subscribe_to(&server, Soap::V12, W3C2011, &sink.url("soap"), "").await;
    publish_json(&server, "urn:shop:created", r#"{"a":"<b>"}"#).await;
    let got = sink.wait_accepted("soap", 1, Duration::from_secs(10)).await;
    let text = got[0].text_of("urn:herald:json", "json");
    assert_eq!(text.as_deref(), Some(r#"{"a":"<b>"}"#));
}

#[tokio::test]
async fn bad_webhook_requests_get_precise_problems() {
    let server = start().await;
    let receiver = Receiver::start().await;
    let url = receiver.url.as_str();
    let cases = [
        (json!({"source": "nope", "url": url}), 404),
        (json!({"source": "default", "url": "/relative"}), 400),
        (json!({"source": "default", "url": "ftp://x.example/"}), 400),
        (
            json!({"source": "default", "url": url, "format": "soap"}),
            400,
        ),
        (
            json!({"source": "default", "url": url, "secret": "whsec_short"}),
            400,
        ),
        (
            json!({"source": "default", "url": url, "filter": {"topic": "a", "xpath": "b"}}),
            400,
        ),
        (
            json!({"source": "default", "url": url, "filter": {"xpath": "///["}}),
            400,
        ),
        (
            json!({"source": "default", "url": url, "expires": "tomorrow"}),
            400,
        ),
        (
            json!({"source": "default", "url": url, "end_url": "nowhere"}),
            400,
        ),
        (
            json!({"source": "default", "url": url, "colour": "red"}),
            400,
        ),
        (json!({"url": url}), 400),
    ];
    for (body, expected) in cases {
        let (status, problem) = call(
            &server,
            reqwest::Method::POST,
            "/api/v1/subscriptions",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, expected, "{body}: {problem}");
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{problem}"
        );
    }
    let (_, all) = call(&server, reqwest::Method::GET, "/api/v1/subscriptions", None).await;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        0,
        "nothing was made"
    );

    let response = server
        .client
        .post(server.url("/api/v1/sources/default/events"))
        .header("Content-Type", "application/json")
        .header("Herald-Action", "urn:x")
        .body("{\"unclosed\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);

    let sink = Sink::start().await;
    let soap = subscribe_to(&server, Soap::V12, W3C2011, &sink.url("soap"), "").await;
    let unknown = "/api/v1/subscriptions/0b5f1c3e-7d2a-4c55-9a41-4a2f3b1e9d10";
    for path in [
        unknown.to_owned(),
        format!("/api/v1/subscriptions/{}", soap.id),
    ] {
        let (status, _) = call(
            &server,
            reqwest::Method::PATCH,
            &path,
            Some(json!({"url": url})),
        )
        .await;
        assert_eq!(status, 404, "{path}: only webhooks change through PATCH");
    }
    let made = create(&server, json!({"source": "default", "url": url})).await;
    let path = format!("/api/v1/subscriptions/{}", made["id"].as_str().unwrap());
    for body in [
        json!({"url": "nowhere"}),
        json!({"secret": "whsec_x"}),
        json!({"expires": "-PT1S"}),
        json!({"bogus": 1}),
    ] {
        let (status, problem) =
            call(&server, reqwest::Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {problem}");
    }
    // A change refused in any part changes nothing (the expiry is checked before the rest).
    for body in [
        json!({"secret": null, "expires": "tomorrow"}),
        json!({"url": "http://127.0.0.1:1/other", "expires": "-PT1S"}),
        json!({"filter": {"topic": "urn:x"}, "secret": "whsec_x"}),
    ] {
        let (status, problem) =
            call(&server, reqwest::Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {problem}");
    }
    let (_, view) = call(&server, reqwest::Method::GET, &path, None).await;
    assert_eq!(view["url"], url, "a refused change changes nothing");
    assert_eq!(view["signing_secrets"], 1, "{view}");
    assert_eq!(view["filter"], Value::Null, "{view}");

    // An XML event in herald's own JSON element would pass for JSON: refused.
    for (path, body) in [
        (
            "/api/v1/sources/default/events?action=urn:x",
            r#"<json xmlns="urn:herald:json">1</json>"#,
        ),
        (
            "/api/v1/sources/default/events/batch",
            r#"<Events xmlns="urn:herald:publish"><Event action="urn:x"><json xmlns="urn:herald:json">1</json></Event></Events>"#,
        ),
    ] {
        let response = server
            .client
            .post(server.url(path))
            .header("Content-Type", "application/xml")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{path}");
    }
}
