//! Callback contexts ([MC-NETCEX]) end to end: a real backend SOAP service and a real callback
//! sink on loopback, herald between them as the context-exchange gateway.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use base64::Engine as _;
use herald::config::Config;
use herald::delivery::retry::RetryPolicy;
use herald::domain::subscription::SourceName;
use herald::engine::{ContextCarrier, ContextPolicy, UnknownInstance};
use serde_json::Value;

use crate::harness::*;
use crate::sink::{Behavior, Sink};

const CONTEXT_NS: &str = "http://schemas.microsoft.com/ws/2006/05/context";
const WSA: &str = "http://www.w3.org/2005/08/addressing";
const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
const HC: &str = "urn:herald:context";

/// What the backend received.
#[derive(Debug, Clone)]
pub struct BackendRequest {
    pub headers: HeaderMap,
    pub body: String,
}

/// A SOAP service on loopback that records each request and answers with a response
/// envelope (or a fault, when the request's body asks for one).
pub struct Backend {
    pub url: String,
    requests: Arc<Mutex<Vec<BackendRequest>>>,
}

async fn answer(
    State(requests): State<Arc<Mutex<Vec<BackendRequest>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let body = String::from_utf8_lossy(&body).into_owned();
    let fault = body.contains("PleaseFault");
    requests
        .lock()
        .unwrap()
        .push(BackendRequest { headers, body });
    let content = if fault {
        "<s:Fault><s:Code><s:Value>s:Sender</s:Value></s:Code><s:Reason><s:Text xml:lang=\"en\">no such cart</s:Text></s:Reason></s:Fault>"
    } else {
        "<PurchaseResponse xmlns=\"http://machine1.example.org/Sample\">ok</PurchaseResponse>"
    };
    let status = if fault { 400 } else { 200 };
    let envelope = format!(
        "<s:Envelope xmlns:s=\"{SOAP12}\" xmlns:a=\"{WSA}\"><s:Header><a:Action s:mustUnderstand=\"1\">http://machine1.example.org/Sample/IShoppingCart/PurchaseResponse</a:Action></s:Header><s:Body>{content}</s:Body></s:Envelope>"
    );
    (
        axum::http::StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/soap+xml; charset=utf-8")],
        envelope,
    )
}

impl Backend {
    pub async fn start() -> Backend {
        let requests: Arc<Mutex<Vec<BackendRequest>>> = Arc::default();
        let app = Router::new()
            .route("/ShoppingCart", axum::routing::post(answer))
            .with_state(requests.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Backend {
            url: format!("http://{address}/ShoppingCart"),
            requests,
        }
    }

    pub fn requests(&self) -> Vec<BackendRequest> {
        self.requests.lock().unwrap().clone()
    }
}

pub fn context_service(name: &str, backend: &str) -> ContextPolicy {
    ContextPolicy {
        name: SourceName::parse(name).unwrap(),
        backend: backend.to_owned(),
        idle_ttl: Duration::from_secs(3600),
        unknown_instance: UnknownInstance::Refuse,
        carrier: ContextCarrier::Header,
        retry: RetryPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            retry_after_cap: Duration::from_secs(5),
            give_up_after: Duration::from_secs(1),
            ..RetryPolicy::default()
        },
        max_callback_bytes: 64 * 1024,
        max_instances: Some(1000),
    }
}

/// A SOAP 1.2 request to the shopping cart, with the given extra headers.
fn request(headers: &str, body: &str) -> String {
    format!(
        "<s:Envelope xmlns:s=\"{SOAP12}\" xmlns:a=\"{WSA}\"><s:Header><a:Action s:mustUnderstand=\"1\">http://machine1.example.org/Sample/IShoppingCart/AddItem</a:Action><a:MessageID>urn:uuid:{}</a:MessageID>{headers}</s:Header><s:Body>{body}</s:Body></s:Envelope>",
        uuid::Uuid::new_v4()
    )
}

fn context_header(id: &str) -> String {
    format!(
        "<Context xmlns=\"{CONTEXT_NS}\"><Property name=\"instanceId\">{id}</Property></Context>"
    )
}

/// The instanceId in a document's Context element.
fn instance_id_in(text: &str) -> Option<String> {
    let document = roxmltree::Document::parse(text).ok()?;
    document
        .descendants()
        .find(|n| {
            n.has_tag_name((CONTEXT_NS, "Property")) && n.attribute("name") == Some("instanceId")
        })
        .and_then(|n| n.text())
        .map(str::to_owned)
}

async fn post(
    server: &TestServer,
    path: &str,
    body: String,
    cookie: Option<&str>,
) -> (u16, HeaderMap, String) {
    let mut request = server
        .client
        .post(server.url(path))
        .header("Content-Type", "application/soap+xml; charset=utf-8");
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

async fn json(
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

fn fault_subcode(text: &str) -> Option<(String, String)> {
    let document = roxmltree::Document::parse(text).ok()?;
    let value = document
        .descendants()
        .filter(|n| n.has_tag_name((SOAP12, "Value")))
        .nth(1)?;
    let qname = value.text()?.trim();
    let (prefix, local) = qname.split_once(':')?;
    let ns = value.lookup_namespace_uri(Some(prefix))?;
    Some((ns.to_owned(), local.to_owned()))
}

async fn start(backend: &Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
    let url = backend.url.clone();
    TestServer::start_with(move |config| {
        config.contexts.push(context_service("cart", &url));
        adjust(config);
    })
    .await
}

/// Opens an instance with a request that carries no context; returns its id.
async fn open_instance(server: &TestServer) -> String {
    let (status, headers, text) = post(
        server,
        "/contexts/cart",
        request(
            "",
            "<AddItem xmlns=\"http://machine1.example.org/Sample\"/>",
        ),
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let id = instance_id_in(&text).expect("the reply establishes a context");
    assert_eq!(
        headers.get("herald-instance-id").unwrap().to_str().unwrap(),
        id
    );
    id
}

#[tokio::test]
async fn the_seeds_callback_context_is_kept_and_callbacks_arrive_as_4_1_5_shows() {
    let backend = Backend::start().await;
    let sink = Sink::start().await;
    let server = start(&backend, |_| {}).await;

    // 4.1.1: no context → herald mints one, the backend sees it as a header and as
    // Herald-Instance-Id, the client gets it on the correlated reply.
    let id = open_instance(&server).await;
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let first = &backend.requests()[0];
    assert_eq!(instance_id_in(&first.body).as_deref(), Some(id.as_str()));
    assert_eq!(
        first
            .headers
            .get("herald-instance-id")
            .unwrap()
            .to_str()
            .unwrap(),
        id
    );

    // 4.1.4, the seed's message with its typo fixed (the second <a:ReferenceParameters> closes
    // the first) and its indentation in spaces (the seed, copied from a web page, indents with
    // U+00A0, which is not XML whitespace: inside a start tag it is an error); only the cart's
    // instanceId (herald's) and the callback address (the sink on loopback) differ.
    let seed = std::fs::read_to_string("tests/data/messages/netcex-4.1.4-callback-context.xml")
        .unwrap()
        .replace("1a1913b1-cb24-4d94-91d2-cf414a569481", &id)
        .replace("http://machine3.example.org", &sink.url("customer"));
    let (status, headers, text) = post(&server, "/contexts/cart", seed, None).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("PurchaseResponse"),
        "the backend's answer is relayed: {text}"
    );
    assert_eq!(
        instance_id_in(&text),
        None,
        "no new context on a participating reply"
    );
    assert_eq!(
        headers.get("herald-instance-id").unwrap().to_str().unwrap(),
        id
    );
    let forwarded = &backend.requests()[1];
    assert!(forwarded.body.contains("<customerId>571</customerId>"));

    let (status, instance) = json(
        &server,
        reqwest::Method::GET,
        &format!("/api/v1/contexts/cart/instances/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(instance["status"], "active");
    assert_eq!(instance["callback"]["address"], sink.url("customer"));
    let parameters = instance["callback"]["reference_parameters"]
        .as_array()
        .unwrap();
    assert_eq!(parameters.len(), 1);
    assert!(
        parameters[0]
            .as_str()
            .unwrap()
            .contains("c4b4e186-a5eb-4a8c-9f64-f8bb099e84eb")
    );

    // 4.1.5: the service calls the customer back.
    let action = "http://machine1.example.org/Sample/INotifyCustomer/ShippedItems";
    let (status, queued) = json(
        &server,
        reqwest::Method::POST,
        &format!("/api/v1/contexts/cart/instances/{id}/callbacks"),
        Some(serde_json::json!({
            "action": action,
            "body": "<ShippedItems xmlns=\"http://machine1.example.org/Sample\"><customerId>571</customerId></ShippedItems>",
        })),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    let received = sink
        .wait_accepted("customer", 1, Duration::from_secs(10))
        .await;
    let callback = &received[0];
    let document = callback.doc();
    let header = document
        .root_element()
        .children()
        .find(|n| n.has_tag_name((SOAP12, "Header")))
        .unwrap();
    let blocks: Vec<_> = header.children().filter(|n| n.is_element()).collect();
    let text_of = |ns: &str, local: &str| {
        blocks
            .iter()
            .find(|n| n.has_tag_name((ns, local)))
            .and_then(|n| n.text())
            .map(str::trim)
            .map(str::to_owned)
    };
    assert_eq!(text_of(WSA, "To"), Some(sink.url("customer")));
    assert_eq!(text_of(WSA, "Action").as_deref(), Some(action));
    assert_eq!(
        text_of(WSA, "MessageID").as_deref(),
        queued["message_id"].as_str()
    );
    let context = blocks
        .iter()
        .find(|n| n.has_tag_name((CONTEXT_NS, "Context")))
        .expect("the client's Context arrives as a header");
    assert_eq!(
        context.attribute((WSA, "IsReferenceParameter")),
        Some("true")
    );
    assert_eq!(context.attribute((SOAP12, "mustUnderstand")), None);
    assert_eq!(
        instance_id_in(&callback.body).as_deref(),
        Some("c4b4e186-a5eb-4a8c-9f64-f8bb099e84eb")
    );
    let body = document
        .root_element()
        .children()
        .find(|n| n.has_tag_name((SOAP12, "Body")))
        .unwrap();
    let shipped = body.first_element_child().unwrap();
    assert!(shipped.has_tag_name(("http://machine1.example.org/Sample", "ShippedItems")));
    assert_eq!(
        blocks.len(),
        4,
        "Action, MessageID, To and the Context: {}",
        callback.body
    );
    server.stop().await;
}

#[tokio::test]
async fn cookie_mode_end_to_end() {
    let backend = Backend::start().await;
    let server = start(&backend, |config| {
        config.contexts[0].carrier = ContextCarrier::Cookie;
    })
    .await;
    let body = "<AddItem xmlns=\"http://machine1.example.org/Sample\"/>";
    let (status, headers, text) = post(&server, "/contexts/cart", request("", body), None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        instance_id_in(&text),
        None,
        "the context travels in the cookie"
    );
    let set_cookie = headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set_cookie.starts_with("WscContext=\"") && set_cookie.ends_with("\";Path=/contexts/cart"),
        "{set_cookie}"
    );
    let value = set_cookie
        .trim_start_matches("WscContext=\"")
        .split('"')
        .next()
        .unwrap();
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap(),
    )
    .unwrap();
    let id = instance_id_in(&decoded).unwrap();
    assert_eq!(
        instance_id_in(&backend.requests()[0].body).as_deref(),
        Some(id.as_str())
    );

    // 4.2.2: the client sends the cookie back (among others); no new cookie.
    let cookie = format!("theme=dark; WscContext=\"{value}\"");
    let (status, headers, _) =
        post(&server, "/contexts/cart", request("", body), Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(headers.get("set-cookie").is_none());
    assert_eq!(
        headers.get("herald-instance-id").unwrap().to_str().unwrap(),
        id
    );
    assert_eq!(
        instance_id_in(&backend.requests()[1].body).as_deref(),
        Some(id.as_str())
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_contexts_and_unknown_instances_never_reach_the_backend() {
    let backend = Backend::start().await;
    let server = start(&backend, |_| {}).await;
    let body = "<AddItem xmlns=\"http://machine1.example.org/Sample\"/>";
    let duplicate = format!(
        "<Context xmlns=\"{CONTEXT_NS}\"><Property name=\"instanceId\">a</Property><Property name=\"instanceId\">b</Property></Context>"
    );
    let no_instance =
        format!("<Context xmlns=\"{CONTEXT_NS}\"><Property name=\"other\">a</Property></Context>");
    let refused_callback = "<CallbackContext xmlns=\"http://schemas.microsoft.com/ws/2008/02/context\"><CallbackEndpointReference><a:Address>http://10.1.2.3/cb</a:Address></CallbackEndpointReference></CallbackContext>"
    .to_owned();
    let empty_callback =
        "<CallbackContext xmlns=\"http://schemas.microsoft.com/ws/2008/02/context\"/>".to_owned();
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        (request(&duplicate, body), None, "InvalidContext"),
        (request(&no_instance, body), None, "InvalidContext"),
        (
            request("", body),
            Some("WscContext=\"not base64!\""),
            "InvalidContext",
        ),
        (
            request("", body),
            Some("WscContext=\"PGE+PC9hPg==\""),
            "InvalidContext",
        ),
        (
            request(&context_header(&uuid::Uuid::new_v4().to_string()), body),
            None,
            "UnknownInstance",
        ),
        (
            request(&context_header("not-a-uuid"), body),
            None,
            "UnknownInstance",
        ),
        (
            request(&refused_callback, body),
            None,
            "CallbackEndpointRefused",
        ),
        (
            request(&empty_callback, body),
            None,
            "InvalidCallbackContext",
        ),
    ];
    for (message, cookie, subcode) in cases {
        let (status, _, text) = post(&server, "/contexts/cart", message, cookie).await;
        assert_eq!(status, 400, "{subcode}: {text}");
        assert_eq!(
            fault_subcode(&text),
            Some((HC.to_owned(), subcode.to_owned())),
            "{text}"
        );
    }
    assert!(backend.requests().is_empty(), "nothing was forwarded");
    let (status, _) = json(
        &server,
        reqwest::Method::GET,
        "/api/v1/contexts/cart/instances/x",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = post(&server, "/contexts/nothing", request("", body), None).await;
    assert_eq!(status, 404);
    server.stop().await;

    // Passed on instead: the backend decides.
    let backend = Backend::start().await;
    let server = start(&backend, |config| {
        config.contexts[0].unknown_instance = UnknownInstance::PassOn;
    })
    .await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let (status, headers, _) = post(
        &server,
        "/contexts/cart",
        request(&context_header(&unknown), body),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers.get("herald-instance-id").is_none());
    let forwarded = &backend.requests()[0];
    assert_eq!(
        instance_id_in(&forwarded.body).as_deref(),
        Some(unknown.as_str())
    );
    assert!(forwarded.headers.get("herald-instance-id").is_none());
    server.stop().await;
}

#[tokio::test]
async fn backend_faults_are_relayed_and_a_backend_that_is_down_is_a_receiver_fault() {
    let backend = Backend::start().await;
    let server = start(&backend, |config| {
        config
            .contexts
            .push(context_service("down", "http://127.0.0.1:9/nothing"));
    })
    .await;
    let (status, _, text) = post(
        &server,
        "/contexts/cart",
        request("", "<PleaseFault xmlns=\"urn:x\"/>"),
        None,
    )
    .await;
    assert_eq!(status, 400, "the backend's own status");
    assert!(text.contains("no such cart"), "{text}");
    assert!(
        instance_id_in(&text).is_some(),
        "a new context is added to a fault too"
    );
    let (status, _, text) = post(
        &server,
        "/contexts/down",
        request("", "<AddItem xmlns=\"urn:x\"/>"),
        None,
    )
    .await;
    assert_eq!(status, 500, "{text}");
    assert_eq!(
        fault_subcode(&text),
        Some((HC.to_owned(), "BackendUnavailable".to_owned()))
    );
    assert!(text.contains("did not answer"), "{text}");
    server.stop().await;
}

/// Sets the callback endpoint of instance `id` to `address`.
async fn set_callback(server: &TestServer, id: &str, address: &str, client_instance: &str) {
    let callback = format!(
        "<CallbackContext xmlns=\"http://schemas.microsoft.com/ws/2008/02/context\"><CallbackEndpointReference><a:Address>{address}</a:Address><a:ReferenceParameters>{}</a:ReferenceParameters></CallbackEndpointReference></CallbackContext>",
        context_header(client_instance)
    );
    let headers = format!("{}{callback}", context_header(id));
    let (status, _, text) = post(
        server,
        "/contexts/cart",
        request(&headers, "<AddItem xmlns=\"urn:x\"/>"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

async fn queue(server: &TestServer, id: &str, n: u32) -> (u16, Value) {
    json(
        server,
        reqwest::Method::POST,
        &format!("/api/v1/contexts/cart/instances/{id}/callbacks"),
        Some(serde_json::json!({
            "action": "urn:x:Shipped",
            "body": format!("<Shipped xmlns=\"urn:x\"><n>{n}</n></Shipped>"),
        })),
    )
    .await
}

fn numbers(received: &[crate::sink::Received]) -> Vec<u32> {
    received
        .iter()
        .map(|r| r.text_of("urn:x", "n").unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn callbacks_to_a_sink_that_is_down_then_up_all_arrive_in_order() {
    let backend = Backend::start().await;
    let sink = Sink::start().await;
    let server = start(&backend, |config| {
        config.contexts[0].retry.give_up_after = Duration::from_secs(30);
    })
    .await;
    let id = open_instance(&server).await;
    let (status, refused) = queue(&server, &id, 0).await;
    assert_eq!(status, 409, "no callback endpoint yet: {refused}");
    sink.behave("c", Behavior::FailTimes(5));
    set_callback(&server, &id, &sink.url("c"), "client-1").await;
    for n in 1..=20 {
        let (status, _) = queue(&server, &id, n).await;
        assert_eq!(status, 202);
    }
    let received = sink.wait_accepted("c", 20, Duration::from_secs(20)).await;
    assert_eq!(numbers(&received), (1..=20).collect::<Vec<_>>());
    assert!(
        sink.received("c").len() >= 25,
        "the first five attempts failed"
    );
    let (_, instance) = json(
        &server,
        reqwest::Method::GET,
        &format!("/api/v1/contexts/cart/instances/{id}"),
        None,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut instance = instance;
    while instance["backlog"] != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        instance = json(
            &server,
            reqwest::Method::GET,
            &format!("/api/v1/contexts/cart/instances/{id}"),
            None,
        )
        .await
        .1;
    }
    assert_eq!(instance["head"], 20);
    assert_eq!(instance["backlog"], 0);

    // A later CallbackContext replaces the endpoint.
    set_callback(&server, &id, &sink.url("d"), "client-2").await;
    queue(&server, &id, 21).await;
    let received = sink.wait_accepted("d", 1, Duration::from_secs(10)).await;
    assert_eq!(numbers(&received), [21]);
    assert!(received[0].body.contains("client-2"));
    server.stop().await;
}

#[tokio::test]
async fn instances_end_on_request_when_idle_and_when_callbacks_keep_failing() {
    let backend = Backend::start().await;
    let sink = Sink::start().await;
    let server = start(&backend, |config| {
        config.sweep_interval = Duration::from_millis(100);
        config.contexts.push(ContextPolicy {
            idle_ttl: Duration::from_secs(1),
            ..context_service("brief", &config.contexts[0].backend.clone())
        });
    })
    .await;
    let path = |id: &str| format!("/api/v1/contexts/cart/instances/{id}");

    // DELETE.
    let id = open_instance(&server).await;
    let (status, _) = json(&server, reqwest::Method::DELETE, &path(&id), None).await;
    assert_eq!(status, 204);
    let (_, instance) = json(&server, reqwest::Method::GET, &path(&id), None).await;
    assert_eq!(instance["status"], "ended");
    let (status, _, text) = post(
        &server,
        "/contexts/cart",
        request(&context_header(&id), "<AddItem xmlns=\"urn:x\"/>"),
        None,
    )
    .await;
    assert_eq!(status, 400, "an ended instance is unknown: {text}");

    // Callbacks failing past the give-up window end it (DeliveryFailure) and later ones are
    // refused, counted in the metrics.
    let id = open_instance(&server).await;
    sink.behave("dead", Behavior::AlwaysFail);
    set_callback(&server, &id, &sink.url("dead"), "client").await;
    assert_eq!(queue(&server, &id, 1).await.0, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, instance) = json(&server, reqwest::Method::GET, &path(&id), None).await;
        if instance["status"] == "ended" {
            assert_eq!(instance["end_reason"], "delivery_failure", "{instance}");
            break;
        }
        assert!(Instant::now() < deadline, "{instance}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, problem) = queue(&server, &id, 2).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("ended"),
        "{problem}"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(
            "herald_callbacks_refused_total{context=\"cart\",reason=\"instance_ended\"} 1"
        ),
        "{metrics}"
    );

    // Idle past its time-to-live.
    let (status, _, text) = post(
        &server,
        "/contexts/brief",
        request("", "<AddItem xmlns=\"urn:x\"/>"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let brief = instance_id_in(&text).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, instance) = json(
        &server,
        reqwest::Method::GET,
        &format!("/api/v1/contexts/brief/instances/{brief}"),
        None,
    )
    .await;
    assert_eq!(instance["status"], "ended", "{instance}");
    assert_eq!(instance["end_reason"], "expired");
    server.stop().await;
}

#[tokio::test]
async fn soap_1_1_requests_keep_their_action_and_get_1_1_faults() {
    let backend = Backend::start().await;
    let server = start(&backend, |_| {}).await;
    let soap11 = "http://schemas.xmlsoap.org/soap/envelope/";
    let wsa2004 = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
    let message = |headers: &str| {
        format!(
            "<s:Envelope xmlns:s=\"{soap11}\" xmlns:a=\"{wsa2004}\"><s:Header><a:Action>urn:x:AddItem</a:Action>{headers}</s:Header><s:Body><AddItem xmlns=\"urn:x\"/></s:Body></s:Envelope>"
        )
    };
    let send = |body: String| {
        server
            .client
            .post(server.url("/contexts/cart"))
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", "\"urn:x:AddItem\"")
            .body(body)
            .send()
    };
    // A WS-Addressing 2004/08 CallbackContext, in SOAP 1.1.
    let callback = "<CallbackContext xmlns=\"http://schemas.microsoft.com/ws/2008/02/context\"><CallbackEndpointReference><a:Address>http://127.0.0.1:9/cb</a:Address></CallbackEndpointReference></CallbackContext>"
    .to_owned();
    let response = send(message(&callback)).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let id = response.headers()["herald-instance-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let forwarded = &backend.requests()[0];
    assert_eq!(forwarded.headers["soapaction"], "\"urn:x:AddItem\"");
    assert!(
        forwarded.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    let (_, instance) = json(
        &server,
        reqwest::Method::GET,
        &format!("/api/v1/contexts/cart/instances/{id}"),
        None,
    )
    .await;
    assert_eq!(instance["callback"]["soap"], "1.1");
    assert_eq!(instance["callback"]["addressing"], "2004/08");

    // A bad Context in SOAP 1.1: a 1.1 fault (HTTP 500, faultcode hc:InvalidContext).
    let duplicate = format!(
        "<Context xmlns=\"{CONTEXT_NS}\"><Property name=\"a\">1</Property><Property name=\"a\">2</Property></Context>"
    );
    let response = send(message(&duplicate)).await.unwrap();
    assert_eq!(response.status().as_u16(), 500);
    let text = response.text().await.unwrap();
    let document = roxmltree::Document::parse(&text).unwrap();
    let code = document
        .descendants()
        .find(|n| n.has_tag_name("faultcode"))
        .and_then(|n| n.text())
        .unwrap();
    let (prefix, local) = code.split_once(':').unwrap();
    assert_eq!(local, "InvalidContext");
    let fault = document
        .descendants()
        .find(|n| n.has_tag_name("faultcode"))
        .unwrap();
    assert_eq!(fault.lookup_namespace_uri(Some(prefix)), Some(HC));
    assert_eq!(
        backend.requests().len(),
        1,
        "the bad request was not forwarded"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_service_takes_at_most_max_instances() {
    let backend = Backend::start().await;
    let server = start(&backend, |config| {
        config.contexts[0].max_instances = Some(2);
    })
    .await;
    let first = open_instance(&server).await;
    open_instance(&server).await;
    let (status, _, text) = post(
        &server,
        "/contexts/cart",
        request("", "<AddItem xmlns=\"urn:x\"/>"),
        None,
    )
    .await;
    assert_eq!(status, 500, "{text}");
    assert_eq!(
        fault_subcode(&text),
        Some((HC.to_owned(), "TooManyInstances".to_owned()))
    );
    assert_eq!(backend.requests().len(), 2, "the third was not forwarded");
    let (status, _) = json(
        &server,
        reqwest::Method::DELETE,
        &format!("/api/v1/contexts/cart/instances/{first}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    open_instance(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_new_callback_endpoint_starts_without_the_old_ones_failures() {
    let backend = Backend::start().await;
    let sink = Sink::start().await;
    let server = start(&backend, |config| {
        config.contexts[0].retry.give_up_after = Duration::from_secs(60);
        config.contexts[0].retry.initial = Duration::from_millis(500);
        config.contexts[0].retry.max = Duration::from_secs(30);
    })
    .await;
    let path = |id: &str| format!("/api/v1/contexts/cart/instances/{id}");
    let id = open_instance(&server).await;
    sink.behave("dead", Behavior::AlwaysFail);
    set_callback(&server, &id, &sink.url("dead"), "client").await;
    assert_eq!(queue(&server, &id, 1).await.0, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, instance) = json(&server, reqwest::Method::GET, &path(&id), None).await;
        if instance["attempts"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{instance}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The client names a working endpoint: the callback goes there at once, not after the
    // dead one's back-off.
    let moved = Instant::now();
    set_callback(&server, &id, &sink.url("alive"), "client").await;
    let received = sink
        .wait_accepted("alive", 1, Duration::from_secs(10))
        .await;
    assert_eq!(numbers(&received), [1]);
    assert!(
        moved.elapsed() < Duration::from_millis(900),
        "{:?}",
        moved.elapsed()
    );
    let (_, instance) = json(&server, reqwest::Method::GET, &path(&id), None).await;
    assert_eq!(instance["attempts"], 0, "{instance}");
    assert_eq!(instance["last_error"], Value::Null, "{instance}");
    server.stop().await;
}

#[tokio::test]
async fn a_callback_to_an_instance_idle_past_its_time_is_refused() {
    let backend = Backend::start().await;
    let sink = Sink::start().await;
    let server = start(&backend, |config| {
        // The sweeper would end it soon after; here it does not run in time.
        config.sweep_interval = Duration::from_secs(1000);
        config.contexts[0].idle_ttl = Duration::from_secs(1);
    })
    .await;
    let id = open_instance(&server).await;
    set_callback(&server, &id, &sink.url("late"), "client").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, problem) = queue(&server, &id, 1).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("expired"),
        "{problem}"
    );
    server.stop().await;
}
