//! Invocation callbacks (seed 002) end to end: a real SOAP service on loopback (echoing,
//! faulting, down then up), herald invoking it, callback events on agents read by pull
//! listeners, a SOAP subscriber and the real RabbitMQ.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use herald::config::Config;
use herald::delivery::retry::RetryPolicy;
use herald::domain::subscription::{SoapVersion, SourceName};
use herald::engine::{AgentPolicy, AmqpBridge, InvokeProtocol, InvokerPolicy};
use serde_json::{Value, json};

use crate::harness::*;
use crate::sink::Sink;

const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// A SOAP 1.1 service on loopback. `/echo` answers with the request's Body content wrapped in
/// `r:Echoed`; `/fault` answers a SOAP fault (HTTP 500); `/flaky` answers 503 while `down`
/// counts above zero, then echoes; `/switch` faults while `faulting` is set, then echoes. Every
/// call is recorded by path with its body.
#[derive(Clone, Default)]
pub struct Service {
    pub url: String,
    calls: Arc<Mutex<Vec<(String, String)>>>,
    /// Each `/slow` call's body and when it began and ended.
    spans: Arc<Mutex<Vec<(String, Instant, Instant)>>>,
    down: Arc<AtomicUsize>,
    faulting: Arc<AtomicBool>,
}

async fn serve(
    State(service): State<Service>,
    Path(path): Path<String>,
    body: Bytes,
) -> axum::response::Response {
    let body = String::from_utf8_lossy(&body).into_owned();
    service
        .calls
        .lock()
        .unwrap()
        .push((path.clone(), body.clone()));
    let fault = path == "fault" || (path == "switch" && service.faulting.load(Ordering::SeqCst));
    if fault {
        let envelope = format!(
            "<s:Envelope xmlns:s=\"{SOAP11}\"><s:Body><s:Fault><faultcode>s:Server</faultcode><faultstring>out of stock</faultstring></s:Fault></s:Body></s:Envelope>"
        );
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, envelope).into_response();
    }
    if path == "flaky"
        && service
            .down
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    if path == "slow" {
        let began = Instant::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let span = (body.clone(), began, Instant::now());
        service.spans.lock().unwrap().push(span);
    }
    let document = roxmltree::Document::parse(&body).unwrap();
    let content: String = document
        .descendants()
        .find(|n| n.has_tag_name((SOAP11, "Body")))
        .unwrap()
        .children()
        .filter(|n| n.is_element())
        .map(|n| body[n.range()].to_owned())
        .collect();
    let envelope = format!(
        "<s:Envelope xmlns:s=\"{SOAP11}\"><s:Body><r:Echoed xmlns:r=\"urn:r\">{content}</r:Echoed></s:Body></s:Envelope>"
    );
    ([("content-type", "text/xml; charset=utf-8")], envelope).into_response()
}

impl Service {
    pub async fn start() -> Service {
        let mut service = Service::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        service.url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/{path}", axum::routing::post(serve))
            .with_state(service.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        service
    }

    pub fn calls(&self, path: &str) -> Vec<String> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, body)| body.clone())
            .collect()
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(200),
        retry_after_cap: Duration::from_secs(1),
        give_up_after: Duration::from_secs(60),
        ..RetryPolicy::default()
    }
}

pub fn invoker(name: &str, url: String, parameters: &[(&str, &str)]) -> InvokerPolicy {
    InvokerPolicy {
        name: SourceName::parse(name).unwrap(),
        url,
        protocol: InvokeProtocol::Soap {
            version: SoapVersion::Soap11,
            action: "urn:r:Order".into(),
        },
        timeout: Duration::from_secs(5),
        concurrency: 16,
        retry: fast_retry(),
        parameters: parameters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        idempotency_window: Duration::from_secs(3600),
        max_payload_bytes: 64 * 1024,
    }
}

fn agent(name: &str) -> AgentPolicy {
    AgentPolicy {
        name: SourceName::parse(name).unwrap(),
        pull: true,
        bridge: None,
    }
}

/// Invokers and their agents (with the implicit `inbound` and `errors` declared) on a config.
pub fn with_invokers(config: &mut Config, invokers: Vec<InvokerPolicy>, agents: &[&str]) {
    let mut declared: Vec<AgentPolicy> = agents.iter().map(|a| agent(a)).collect();
    for implicit in ["inbound", "errors"] {
        if !agents.contains(&implicit) {
            declared.push(agent(implicit));
        }
    }
    for declared in &declared {
        let mut source = config.sources[0].clone();
        source.name = declared.name.clone();
        config.sources.push(source);
    }
    config.invocations.invokers = invokers;
    config.invocations.agents = declared;
}

pub async fn raise(server: &TestServer, invoker: &str, body: Value) -> (u16, Value) {
    let response = server
        .client
        .post(server.url(&format!("/api/v1/invokers/{invoker}/events")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn receive(server: &TestServer, agent: &str, body: Value) -> Vec<Value> {
    let response = server
        .client
        .post(server.url(&format!("/api/v1/agents/{agent}/receive")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let value: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    value["messages"].as_array().unwrap().clone()
}

pub async fn settle(server: &TestServer, agent: &str, verb: &str, body: Value) -> Value {
    let response = server
        .client
        .post(server.url(&format!("/api/v1/agents/{agent}/{verb}")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

/// Receives from `agent` until `count` messages came (each acked), within `within`.
pub async fn drain(server: &TestServer, agent: &str, count: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut all = Vec::new();
    while all.len() < count && Instant::now() < deadline {
        let batch = receive(server, agent, json!({"max": 100, "wait": 1})).await;
        if batch.is_empty() {
            continue;
        }
        let receipts: Vec<&str> = batch
            .iter()
            .map(|m| m["receipt"].as_str().unwrap())
            .collect();
        let settled = settle(server, agent, "ack", json!({ "receipts": receipts })).await;
        assert_eq!(settled["stale"], json!([]));
        all.extend(batch);
    }
    all
}

/// The invocation `id` as the API shows it.
pub async fn invocation(server: &TestServer, id: &str) -> Value {
    server
        .client
        .get(server.url(&format!("/api/v1/invocations/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap()
}

async fn wait_state(server: &TestServer, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let value = invocation(server, id).await;
        if value["state"] == state || Instant::now() > deadline {
            assert_eq!(value["state"], state, "{value}");
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_raise_becomes_a_callback_event_on_its_agent_with_the_key_and_correlation_id() {
    let service = Service::start().await;
    let server = TestServer::start_with(|config| {
        with_invokers(
            config,
            vec![invoker(
                "orders",
                format!("{}/echo", service.url),
                &[
                    ("WFBES_CALLBACK_EVENT", "orders.stored"),
                    ("callback_agent", "WF_WS_JMS_IN"),
                    ("region", "eu"),
                ],
            )],
            &["WF_WS_JMS_IN"],
        );
    })
    .await;
    // The raise's WFBES_CALLBACK_EVENT overrides the stored callback_event (an alias is the
    // same parameter); the stored region is kept; a new parameter joins.
    let (status, raised) = raise(
        &server,
        "orders",
        json!({
            "key": "order-17",
            "payload": "<o:Order xmlns:o=\"urn:o\"><o:Id>17</o:Id></o:Order>",
            "parameters": {"wfbes_callback_event": "orders.confirmed", "priority": "high"}
        }),
    )
    .await;
    assert_eq!(status, 202, "{raised}");
    let id = raised["invocation_id"].as_str().unwrap().to_owned();
    let messages = drain(&server, "WF_WS_JMS_IN", 1, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message["kind"], "callback");
    assert_eq!(message["name"], "orders.confirmed");
    assert_eq!(message["key"], "order-17");
    assert_eq!(message["correlation_id"], "orders.confirmed");
    assert_eq!(message["invocation_id"], id.as_str());
    assert_eq!(message["parameters"]["callback_event"], "orders.confirmed");
    assert_eq!(message["parameters"]["region"], "eu");
    assert_eq!(message["parameters"]["priority"], "high");
    // The SOAP Body's content, standing on its own (with the namespaces it inherited).
    let payload = message["payload"].as_str().unwrap();
    assert!(payload.starts_with("<r:Echoed "), "{payload}");
    assert!(
        payload.ends_with("<o:Order xmlns:o=\"urn:o\"><o:Id>17</o:Id></o:Order></r:Echoed>"),
        "{payload}"
    );
    assert!(roxmltree::Document::parse(payload).is_ok());
    let record = wait_state(&server, &id, "done").await;
    assert_eq!(record["delivered_to"]["agent"], "WF_WS_JMS_IN");
    assert_eq!(record["attempts"], 0);
    // The service was called once, with the payload as its SOAP Body and the action.
    assert_eq!(service.calls("echo").len(), 1);
    // Acknowledged: nothing is left to receive.
    assert!(receive(&server, "WF_WS_JMS_IN", json!({})).await.is_empty());
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("herald_invocations_total{invoker=\"orders\",outcome=\"callback\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_same_key_within_the_window_names_the_first_invocation_and_calls_once() {
    let service = Service::start().await;
    let server = TestServer::start_with(|config| {
        with_invokers(
            config,
            vec![invoker(
                "orders",
                format!("{}/echo", service.url),
                &[("callback_event", "e")],
            )],
            &[],
        );
    })
    .await;
    let body = json!({"key": "k-1", "payload": "<a xmlns=\"urn:a\"/>"});
    let (first_status, first) = raise(&server, "orders", body.clone()).await;
    let (second_status, second) = raise(&server, "orders", body).await;
    assert_eq!((first_status, second_status), (202, 200));
    assert_eq!(first["invocation_id"], second["invocation_id"]);
    assert_eq!(second["created"], false);
    let messages = drain(&server, "inbound", 1, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 1, "the default inbound agent takes it");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(service.calls("echo").len(), 1);
}

#[tokio::test]
async fn an_answer_with_no_callback_event_is_kept_not_lost() {
    let service = Service::start().await;
    let server = TestServer::start_with(|config| {
        with_invokers(
            config,
            vec![invoker("audit", format!("{}/echo", service.url), &[])],
            &[],
        );
    })
    .await;
    let (_, raised) = raise(
        &server,
        "audit",
        json!({"key": "a-1", "payload": "<x xmlns=\"urn:x\">1</x>"}),
    )
    .await;
    let id = raised["invocation_id"].as_str().unwrap();
    let record = wait_state(&server, id, "kept").await;
    let response = record["response"].as_str().unwrap();
    assert!(
        response.starts_with("<r:Echoed ")
            && response.ends_with("<x xmlns=\"urn:x\">1</x></r:Echoed>"),
        "{response}"
    );
    assert!(record.get("delivered_to").is_none());
    assert!(receive(&server, "inbound", json!({})).await.is_empty());
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("herald_invocations_total{invoker=\"audit\",outcome=\"kept\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_fault_goes_to_the_error_agent_and_a_retry_brings_the_callback() {
    let service = Service::start().await;
    service.faulting.store(true, Ordering::SeqCst);
    let server = TestServer::start_with(|config| {
        with_invokers(
            config,
            vec![invoker(
                "orders",
                format!("{}/switch", service.url),
                &[("callback_event", "orders.done")],
            )],
            &[],
        );
    })
    .await;
    let (_, raised) = raise(
        &server,
        "orders",
        json!({"key": "o-9", "payload": "<a xmlns=\"urn:a\">9</a>"}),
    )
    .await;
    let id = raised["invocation_id"].as_str().unwrap().to_owned();
    let record = wait_state(&server, &id, "failed").await;
    assert!(
        record["last_error"]
            .as_str()
            .unwrap()
            .contains("out of stock"),
        "{record}"
    );
    assert_eq!(
        service.calls("switch").len(),
        1,
        "a fault is an answer: not retried"
    );
    let errors = drain(&server, "errors", 1, Duration::from_secs(10)).await;
    assert_eq!(errors[0]["kind"], "error");
    assert_eq!(errors[0]["key"], "o-9");
    assert_eq!(errors[0]["invocation_id"], id.as_str());
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("out of stock")
    );
    assert_eq!(errors[0]["request"], "<a xmlns=\"urn:a\">9</a>");
    assert!(
        errors[0]["payload"]
            .as_str()
            .unwrap()
            .contains("faultstring")
    );
    // A done invocation cannot be retried; a failed one can.
    service.faulting.store(false, Ordering::SeqCst);
    let retried = server
        .client
        .post(server.url(&format!("/api/v1/invocations/{id}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 202);
    let callbacks = drain(&server, "inbound", 1, Duration::from_secs(10)).await;
    assert_eq!(callbacks[0]["key"], "o-9");
    assert_eq!(callbacks[0]["name"], "orders.done");
    wait_state(&server, &id, "done").await;
    let again = server
        .client
        .post(server.url(&format!("/api/v1/invocations/{id}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn a_service_down_then_up_is_retried_until_it_answers() {
    let service = Service::start().await;
    service.down.store(3, Ordering::SeqCst);
    let server = TestServer::start_with(|config| {
        with_invokers(
            config,
            vec![invoker(
                "orders",
                format!("{}/flaky", service.url),
                &[("callback_event", "e")],
            )],
            &[],
        );
    })
    .await;
    let (_, raised) = raise(
        &server,
        "orders",
        json!({"key": "f-1", "payload": "<a xmlns=\"urn:a\"/>"}),
    )
    .await;
    let id = raised["invocation_id"].as_str().unwrap();
    let messages = drain(&server, "inbound", 1, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 1);
    let record = wait_state(&server, id, "done").await;
    assert_eq!(record["attempts"], 3);
    assert_eq!(service.calls("flaky").len(), 4);
}

#[tokio::test]
async fn an_unacked_message_comes_back_when_its_lease_runs_out_and_nack_puts_it_back() {
    let service = Service::start().await;
    let server = TestServer::start_with(|config| {
        with_invokers(
            config,
            vec![invoker(
                "orders",
                format!("{}/echo", service.url),
                &[("callback_event", "e")],
            )],
            &[],
        );
    })
    .await;
    raise(
        &server,
        "orders",
        json!({"key": "l-1", "payload": "<a xmlns=\"urn:a\"/>"}),
    )
    .await;
    let first = receive(
        &server,
        "inbound",
        json!({"wait": 10, "visibility_timeout": 0.5}),
    )
    .await;
    assert_eq!(first.len(), 1);
    // Leased: a competing listener gets nothing now.
    assert!(receive(&server, "inbound", json!({})).await.is_empty());
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = receive(&server, "inbound", json!({"visibility_timeout": 30})).await;
    assert_eq!(second.len(), 1, "the lease ran out: handed out again");
    assert_eq!(second[0]["message_id"], first[0]["message_id"]);
    assert_eq!(second[0]["deliveries"], 2);
    // The first receipt no longer holds it.
    let stale = settle(
        &server,
        "inbound",
        "ack",
        json!({"receipts": [first[0]["receipt"]]}),
    )
    .await;
    assert_eq!(stale["stale"].as_array().unwrap().len(), 1);
    // Nack puts it back at once.
    let nacked = settle(
        &server,
        "inbound",
        "nack",
        json!({"receipts": [second[0]["receipt"]]}),
    )
    .await;
    assert_eq!(nacked["settled"].as_array().unwrap().len(), 1);
    let third = receive(&server, "inbound", json!({})).await;
    assert_eq!(third.len(), 1);
    assert_eq!(third[0]["deliveries"], 3);
}

#[tokio::test]
async fn a_correlation_filter_picks_out_its_own_callbacks() {
    let service = Service::start().await;
    let server = TestServer::start_with(|config| {
        with_invokers(
            config,
            vec![
                invoker(
                    "orders",
                    format!("{}/echo", service.url),
                    &[("callback_event", "orders.done")],
                ),
                invoker(
                    "invoices",
                    format!("{}/echo", service.url),
                    &[("callback_event", "invoices.done")],
                ),
            ],
            &[],
        );
    })
    .await;
    for i in 0..5 {
        raise(
            &server,
            "orders",
            json!({"key": format!("o{i}"), "payload": "<a xmlns=\"urn:a\"/>"}),
        )
        .await;
        raise(
            &server,
            "invoices",
            json!({"key": format!("i{i}"), "payload": "<a xmlns=\"urn:a\"/>"}),
        )
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut invoices = Vec::new();
    while invoices.len() < 5 && Instant::now() < deadline {
        let batch = receive(
            &server,
            "inbound",
            json!({"correlation_id": "invoices.done", "wait": 1, "visibility_timeout": 60}),
        )
        .await;
        invoices.extend(batch);
    }
    assert_eq!(invoices.len(), 5);
    assert!(
        invoices
            .iter()
            .all(|m| m["correlation_id"] == "invoices.done")
    );
    let keys: HashSet<&str> = invoices
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        (0..5)
            .map(|i| format!("i{i}"))
            .collect::<HashSet<_>>()
            .iter()
            .map(String::as_str)
            .collect()
    );
    let orders = drain(&server, "inbound", 5, Duration::from_secs(10)).await;
    assert!(
        orders.iter().all(|m| m["correlation_id"] == "orders.done"),
        "the leased invoices stay leased"
    );
}

#[tokio::test]
async fn two_competing_listeners_share_ten_thousand_callbacks_each_acked_once() {
    const COUNT: usize = 10_000;
    let service = Service::start().await;
    let server = Arc::new(
        TestServer::start_with(|config| {
            let mut orders = invoker(
                "orders",
                format!("{}/echo", service.url),
                &[("callback_event", "e")],
            );
            orders.concurrency = 64;
            with_invokers(config, vec![orders], &[]);
        })
        .await,
    );
    let raising = {
        let server = server.clone();
        tokio::spawn(async move {
            let mut keys = (0..COUNT).map(|i| format!("k{i}"));
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..16 {
                let server = server.clone();
                let chunk: Vec<String> = keys.by_ref().take(COUNT / 16).collect();
                tasks.spawn(async move {
                    for key in chunk {
                        let (status, _) = raise(
                            &server,
                            "orders",
                            json!({"key": key, "payload": "<a xmlns=\"urn:a\"/>"}),
                        )
                        .await;
                        assert_eq!(status, 202);
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        })
    };
    let acked = Arc::new(AtomicUsize::new(0));
    let listener = |server: Arc<TestServer>, acked: Arc<AtomicUsize>| async move {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline && acked.load(Ordering::SeqCst) < COUNT {
            let batch = receive(&server, "inbound", json!({"max": 100, "wait": 1})).await;
            if batch.is_empty() {
                continue;
            }
            let receipts: Vec<&str> = batch
                .iter()
                .map(|m| m["receipt"].as_str().unwrap())
                .collect();
            let settled = settle(&server, "inbound", "ack", json!({ "receipts": receipts })).await;
            assert_eq!(settled["stale"], json!([]), "each ack holds its lease");
            seen.extend(batch.iter().map(|m| m["key"].as_str().unwrap().to_owned()));
            acked.fetch_add(batch.len(), Ordering::SeqCst);
        }
        seen
    };
    let a = tokio::spawn(listener(server.clone(), acked.clone()));
    let b = tokio::spawn(listener(server.clone(), acked.clone()));
    raising.await.unwrap();
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for key in a.iter().chain(&b) {
        *counts.entry(key.as_str()).or_default() += 1;
    }
    assert_eq!(counts.len(), COUNT, "every callback was received");
    assert!(counts.values().all(|n| *n == 1), "none twice");
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both listeners took a share: {} / {}",
        a.len(),
        b.len()
    );
    assert_eq!(service.calls("echo").len(), COUNT, "each invoked once");
}

#[tokio::test]
async fn a_soap_subscriber_of_an_agent_gets_callback_events_pushed() {
    let service = Service::start().await;
    let sink = Sink::start().await;
    let server = TestServer::start_with(|config| {
        with_invokers(
            config,
            vec![invoker(
                "orders",
                format!("{}/echo", service.url),
                &[("callback_event", "orders.done")],
            )],
            &[],
        );
    })
    .await;
    let reply = Message::new(
        Soap::V12,
        W3C2011,
        "Subscribe",
        subscribe_body(W3C2011, &sink.url("cb"), ""),
    )
    .send(&server, &server.url("/eventing/inbound"))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    raise(
        &server,
        "orders",
        json!({"key": "s-1", "payload": "<a xmlns=\"urn:a\">1</a>"}),
    )
    .await;
    let pushed = sink.wait_accepted("cb", 1, Duration::from_secs(10)).await;
    let callback = &pushed[0];
    assert!(callback.body.contains("CallbackEvent"), "{}", callback.body);
    assert!(callback.body.contains("key=\"s-1\""));
    assert!(callback.body.contains("correlationId=\"orders.done\""));
    // Publishing into an agent is refused: it takes callback events only.
    let published = server
        .client
        .post(server.url("/api/v1/sources/inbound/events"))
        .header("content-type", "application/xml")
        .header("Herald-Action", "urn:a:Event")
        .body("<a xmlns=\"urn:a\"/>")
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 400);
    let detail = published.text().await.unwrap();
    assert!(detail.contains("is an agent"), "{detail}");
    // The same through SOAP: a one-way event message to the agent's endpoint.
    let mut event = Message::new(
        Soap::V12,
        W3C2011,
        "Event",
        "<a xmlns=\"urn:a\"/>".to_owned(),
    );
    event.action = "urn:a:Event".into();
    let event = event.send(&server, &server.url("/eventing/inbound")).await;
    assert_eq!(event.status, 400, "{}", event.text);
    assert!(event.text.contains("is an agent"), "{}", event.text);
    assert_eq!(
        sink.accepted("cb").len(),
        1,
        "nothing but the callback reached the subscriber"
    );
}

#[tokio::test]
async fn bad_raises_get_precise_problems_and_store_nothing() {
    let service = Service::start().await;
    let server = TestServer::start_with(|config| {
        with_invokers(
            config,
            vec![invoker("orders", format!("{}/echo", service.url), &[])],
            &[],
        );
    })
    .await;
    let cases = [
        ("nobody", json!({"key": "k", "payload": ""}), 404),
        ("orders", json!({"key": "", "payload": ""}), 400),
        (
            "orders",
            json!({"key": "x".repeat(241), "payload": ""}),
            400,
        ),
        ("orders", json!({"key": "k", "payload": "not xml"}), 400),
        (
            "orders",
            json!({"key": "k", "payload": "", "parameters": {"callback_agent": "a b"}}),
            400,
        ),
        (
            "orders",
            json!({"key": "k", "payload": "", "parameters": {"WFBES_CALLBACK_AGENT": "a", "callback_agent": "b"}}),
            400,
        ),
        ("orders", json!({"payload": ""}), 400),
        // An event source's log is not an agent.
        (
            "orders",
            json!({"key": "k", "payload": "", "parameters": {"callback_agent": "default"}}),
            400,
        ),
        (
            "orders",
            json!({"key": "k", "payload": "", "parameters": {"callback_event": "e".repeat(241)}}),
            400,
        ),
        (
            "orders",
            json!({"key": "k", "payload": format!("<a xmlns=\"urn:a\">{}</a>", "x".repeat(70_000))}),
            413,
        ),
    ];
    for (invoker, body, expected) in cases {
        let (status, problem) = raise(&server, invoker, body.clone()).await;
        assert_eq!(status, expected, "{body} → {problem}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(service.calls("echo").is_empty());
    let unknown = server
        .client
        .get(server.url("/api/v1/invocations/0190a0a0-0000-7000-8000-000000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn the_one_way_soap_form_raises_too() {
    let service = Service::start().await;
    let server = TestServer::start_with(|config| {
        with_invokers(
            config,
            vec![invoker(
                "orders",
                format!("{}/echo", service.url),
                &[("callback_event", "e")],
            )],
            &[],
        );
    })
    .await;
    let envelope = format!(
        "<s:Envelope xmlns:s=\"{SOAP11}\" xmlns:hi=\"urn:herald:invoke\"><s:Header><hi:EventKey>soap-1</hi:EventKey><hi:Parameter name=\"WFBES_CALLBACK_EVENT\">soap.done</hi:Parameter></s:Header><s:Body><o:Order xmlns:o=\"urn:o\">5</o:Order></s:Body></s:Envelope>"
    );
    let reply = server
        .post_soap(
            &server.url("/invokers/orders"),
            Soap::V11,
            Some("urn:raise"),
            envelope,
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let messages = drain(&server, "inbound", 1, Duration::from_secs(10)).await;
    assert_eq!(messages[0]["key"], "soap-1");
    assert_eq!(messages[0]["name"], "soap.done");
    let no_key = format!(
        "<s:Envelope xmlns:s=\"{SOAP11}\"><s:Body><o:Order xmlns:o=\"urn:o\"/></s:Body></s:Envelope>"
    );
    let refused = server
        .post_soap(&server.url("/invokers/orders"), Soap::V11, None, no_key)
        .await;
    assert_eq!(refused.status, 500);
    assert!(refused.text.contains("EventKey"));
}

/// The RabbitMQ the tests use: `HERALD_TEST_AMQP`, or the one on this machine.
pub fn amqp_url() -> String {
    std::env::var("HERALD_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

#[tokio::test]
async fn an_agent_bridged_to_rabbitmq_publishes_each_callback_with_its_ids_confirmed() {
    use lapin::options::{BasicGetOptions, QueueDeleteOptions};
    let service = Service::start().await;
    let queue = format!("herald-test-{}", uuid::Uuid::new_v4().simple());
    let bridge = AmqpBridge {
        url: amqp_url(),
        queue: queue.clone(),
    };
    let server = TestServer::start_with(|config| {
        with_invokers(
            config,
            vec![invoker(
                "orders",
                format!("{}/echo", service.url),
                &[
                    ("callback_event", "orders.done"),
                    ("callback_agent", "bridged"),
                ],
            )],
            &["bridged"],
        );
        let bridged = config
            .invocations
            .agents
            .iter_mut()
            .find(|a| a.name.as_str() == "bridged")
            .unwrap();
        bridged.bridge = Some(bridge);
        bridged.pull = false;
    })
    .await;
    for i in 0..20 {
        raise(
            &server,
            "orders",
            json!({"key": format!("b{i}"), "payload": format!("<a xmlns=\"urn:a\">{i}</a>")}),
        )
        .await;
    }
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    while got.len() < 20 && Instant::now() < deadline {
        match channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
        {
            Ok(Some(message)) => {
                let properties = &message.delivery.properties;
                let headers = properties.headers().clone().unwrap_or_default();
                let key = match headers.inner().get("herald-key") {
                    Some(lapin::types::AMQPValue::LongString(key)) => key.to_string(),
                    other => panic!("herald-key {other:?}"),
                };
                got.insert(
                    key,
                    (
                        properties
                            .correlation_id()
                            .as_ref()
                            .map(|c| c.to_string())
                            .unwrap_or_default(),
                        properties
                            .message_id()
                            .as_ref()
                            .map(|c| c.to_string())
                            .unwrap_or_default(),
                        String::from_utf8_lossy(&message.delivery.data).into_owned(),
                    ),
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    assert_eq!(got.len(), 20, "every callback reached RabbitMQ");
    for (key, (correlation, message_id, body)) in &got {
        assert_eq!(correlation, "orders.done", "{key}");
        assert!(message_id.starts_with("uuid:"), "{message_id}");
        let i = key.trim_start_matches('b');
        assert!(
            body.ends_with(&format!("<a xmlns=\"urn:a\">{i}</a></r:Echoed>")),
            "{body}"
        );
    }
    // The bridge's reader is herald's own: a subscriber cannot end it.
    let bridge_id = herald::domain::subscription::SubscriptionId::derived(&format!(
        "herald:bridge:bridged:{queue}:0"
    ));
    let managed = Managed {
        version: W3C2011,
        manager_url: server.url("/eventing/bridged/subscriptions"),
        id: bridge_id.to_string(),
        expires: String::new(),
    };
    for operation in ["Unsubscribe", "GetStatus"] {
        let reply = managed
            .request(Soap::V12, operation, "")
            .send(&server, &managed.manager_url)
            .await;
        assert!(reply.status >= 400, "{operation}: {}", reply.text);
    }
    // The bridge's cursor moved past every confirmed message.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = server.metrics().await;
        if metrics.contains("herald_bridge_lag_messages{agent=\"bridged\"} 0")
            || Instant::now() > deadline
        {
            assert!(
                metrics.contains("herald_bridge_lag_messages{agent=\"bridged\"} 0"),
                "{metrics}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn kill_9_during_a_thousand_invocations_loses_none_and_counts_every_second_call() {
    const COUNT: usize = 1000;
    let service = Service::start().await;
    let store = TestStore::new().await;
    let config = store.data_dir().join("invokers.toml");
    std::fs::write(
        &config,
        format!(
            "[invokers.crash]\nurl = \"{}/slow\"\nsoap = \"1.1\"\naction = \"urn:r:Order\"\nconcurrency = 8\nretry_initial = \"PT0.2S\"\nretry_max = \"PT0.5S\"\n[invokers.crash.parameters]\ncallback_event = \"crash.done\"\n",
            service.url
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut first = Process::start_with(&store, &["--config", &config]);
    let server = first.client();
    // Raised by 8 callers at once; the service takes 20 ms a call, 8 at a time.
    let server = Arc::new(server);
    let mut raising = tokio::task::JoinSet::new();
    for part in 0..8 {
        let server = server.clone();
        raising.spawn(async move {
            let mut ids = Vec::new();
            for i in (part..COUNT).step_by(8) {
                let body = json!({"key": format!("c{i}"), "payload": format!("<a xmlns=\"urn:a\">c{i}</a>")});
                let (status, raised) = raise(&server, "crash", body).await;
                assert_eq!(status, 202, "{raised}");
                ids.push(raised["invocation_id"].as_str().unwrap().to_owned());
            }
            ids
        });
    }
    let mut ids = Vec::with_capacity(COUNT);
    while let Some(part) = raising.join_next().await {
        ids.extend(part.unwrap());
    }
    // Kill it mid-way: some calls made and recorded, some made and not recorded, some not made.
    let deadline = Instant::now() + Duration::from_secs(30);
    while service.calls("slow").len() < COUNT / 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill();
    let called_before = service.calls("slow").len();
    assert!(
        called_before < COUNT,
        "killed before the end ({called_before})"
    );
    let second = Process::start_with(&store, &["--config", &config]);
    let server = second.client();
    let callbacks = drain(&server, "inbound", COUNT, Duration::from_secs(120)).await;
    let mut resumed = 0u64;
    for id in &ids {
        let record = wait_state(&server, id, "done").await;
        resumed += record["resumed"].as_u64().unwrap();
    }
    let keys: HashSet<&str> = callbacks
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert_eq!(callbacks.len(), COUNT, "one callback per raise");
    assert_eq!(keys.len(), COUNT, "every raise ended as a callback");
    let mut calls: HashMap<String, usize> = HashMap::new();
    for body in service.calls("slow") {
        let key = body.split("<a xmlns=\"urn:a\">").nth(1).unwrap();
        let key = key.split('<').next().unwrap().to_owned();
        *calls.entry(key).or_default() += 1;
    }
    assert_eq!(calls.len(), COUNT, "every raise was invoked");
    let twice: usize = calls.values().map(|n| n - 1).sum();
    assert!(
        twice as u64 <= resumed,
        "{twice} second calls, only {resumed} counted as resumed"
    );
    eprintln!("kill -9 after {called_before} calls: {twice} called twice, {resumed} resumed");
}

#[tokio::test]
async fn one_key_is_never_called_twice_at_once() {
    let service = Service::start().await;
    let server = TestServer::start_with(|config| {
        let mut slow = invoker(
            "slow",
            format!("{}/slow", service.url),
            &[("callback_event", "e")],
        );
        // Every raise is a new invocation, so one key has several waiting at once.
        slow.idempotency_window = Duration::ZERO;
        with_invokers(config, vec![slow], &[]);
    })
    .await;
    for round in 0..6 {
        for key in ["same", &format!("other{round}")] {
            let body = json!({"key": key, "payload": format!("<a xmlns=\"urn:a\">{key}</a>")});
            let (status, _) = raise(&server, "slow", body).await;
            assert_eq!(status, 202);
        }
    }
    let callbacks = drain(&server, "inbound", 12, Duration::from_secs(20)).await;
    assert_eq!(callbacks.len(), 12);
    let spans = service.spans.lock().unwrap().clone();
    let mut same: Vec<(Instant, Instant)> = spans
        .iter()
        .filter(|(body, _, _)| body.contains(">same<"))
        .map(|(_, began, ended)| (*began, *ended))
        .collect();
    assert_eq!(same.len(), 6);
    same.sort();
    for pair in same.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "two calls of one key overlapped");
    }
    // The other keys did run beside them.
    let others: Vec<&(String, Instant, Instant)> = spans
        .iter()
        .filter(|(body, _, _)| !body.contains(">same<"))
        .collect();
    assert_eq!(others.len(), 6);
}
