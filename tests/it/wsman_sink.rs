//! A WS-Management event sink on loopback: it records every message (events, batches,
//! heartbeats, dropped-event notices) and acknowledges as each path is told to, with a real
//! `wsman:Ack` relating to the message it received.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::harness::{SOAP12, WSA2004};

pub const WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
pub const ACK: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Ack";
pub const EVENTS: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Events";
pub const HEARTBEAT: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Heartbeat";
pub const DROPPED: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/DroppedEvents";
const HERALD: &str = "urn:herald:eventing";

/// How a path acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// A `wsman:Ack` relating to each message.
    Always,
    /// The first `n` messages get a 200 without an Ack, then Acks.
    MissingTimes(u32),
    /// The first `n` get an Ack relating to another message, then Acks.
    WrongTimes(u32),
    /// The first `n` get their Ack after this many milliseconds, then at once.
    LateTimes(u32, u64),
    /// Never an Ack (a 200 with an empty body).
    Never,
    /// A 500 with the SOAP fault `wsman:DeliveryRefused`: "stop sending, for good".
    Refuse,
}

/// One message as received.
#[derive(Debug, Clone)]
pub struct Message {
    pub at: Instant,
    pub action: String,
    pub message_id: String,
    pub ack_requested: bool,
    /// The position a `wsman:Bookmark` header names, if any.
    pub bookmark: Option<String>,
    /// The whole `wsman:Bookmark` header, as sent.
    pub bookmark_xml: Option<String>,
    /// The `n` of each test tick in the body, in order.
    pub ticks: Vec<u64>,
    /// The actions of a batch's `wsman:Event` elements.
    pub event_actions: Vec<String>,
    pub body: String,
}

#[derive(Default)]
struct Shared {
    acks: HashMap<String, Acks>,
    received: HashMap<String, Vec<Message>>,
}

#[derive(Clone)]
pub struct WsmanSink {
    base: String,
    shared: Arc<Mutex<Shared>>,
}

fn read(body: &str) -> Message {
    let doc = roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let text = |ns: &str, local: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name((ns, local)))
            .map(|n| n.text().unwrap_or("").trim().to_owned())
    };
    let bookmark = doc
        .descendants()
        .find(|n| n.has_tag_name((WSMAN, "Bookmark")));
    Message {
        at: Instant::now(),
        action: text(WSA2004, "Action").unwrap_or_default(),
        message_id: text(WSA2004, "MessageID").unwrap_or_default(),
        ack_requested: doc
            .descendants()
            .any(|n| n.has_tag_name((WSMAN, "AckRequested"))),
        bookmark: text(HERALD, "Position"),
        bookmark_xml: bookmark.map(|n| body[n.range()].to_owned()),
        ticks: doc
            .descendants()
            .filter(|n| n.tag_name().name() == "tick")
            .filter_map(|n| n.attribute("n")?.parse().ok())
            .collect(),
        event_actions: doc
            .descendants()
            .filter(|n| n.has_tag_name((WSMAN, "Event")))
            .map(|n| n.attribute("Action").unwrap_or("").to_owned())
            .collect(),
        body: body.to_owned(),
    }
}

fn ack(relates_to: &str) -> Response {
    let body = format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA2004}"><s:Header><a:Action>{ACK}</a:Action><a:MessageID>uuid:{}</a:MessageID><a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body/></s:Envelope>"#,
        uuid::Uuid::new_v4()
    );
    (
        StatusCode::OK,
        [("Content-Type", "application/soap+xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn refuse(relates_to: &str) -> Response {
    let body = format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA2004}" xmlns:w="{WSMAN}"><s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action><a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:DeliveryRefused</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en">The event sink refuses further deliveries.</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>"#
    );
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [("Content-Type", "application/soap+xml; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn receive(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(path): Path<String>,
    body: Bytes,
) -> Response {
    let message = read(&String::from_utf8_lossy(&body));
    let relates_to = message.message_id.clone();
    let (acks, seen) = {
        let mut shared = shared.lock().unwrap();
        let acks = shared.acks.get(&path).copied().unwrap_or(Acks::Always);
        let list = shared.received.entry(path).or_default();
        list.push(message);
        (acks, list.len() as u32)
    };
    match acks {
        Acks::Always => ack(&relates_to),
        Acks::MissingTimes(n) if seen <= n => StatusCode::OK.into_response(),
        Acks::WrongTimes(n) if seen <= n => ack("uuid:00000000-0000-0000-0000-000000000000"),
        Acks::LateTimes(n, ms) if seen <= n => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ack(&relates_to)
        }
        Acks::Never => StatusCode::OK.into_response(),
        Acks::Refuse => refuse(&relates_to),
        _ => ack(&relates_to),
    }
}

impl WsmanSink {
    pub async fn start() -> WsmanSink {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/{path}", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        WsmanSink { base, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    pub fn acks(&self, path: &str, acks: Acks) {
        self.shared.lock().unwrap().acks.insert(path.into(), acks);
    }

    pub fn received(&self, path: &str) -> Vec<Message> {
        let shared = self.shared.lock().unwrap();
        shared.received.get(path).cloned().unwrap_or_default()
    }

    /// Waits until `check` holds for what `path` received, or panics after `within`.
    pub async fn wait(
        &self,
        path: &str,
        within: Duration,
        check: impl Fn(&[Message]) -> bool,
    ) -> Vec<Message> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received(path);
            if check(&received) {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "not reached at {path}: {:#?}",
                received
                    .iter()
                    .map(|m| (&m.action, &m.ticks))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
