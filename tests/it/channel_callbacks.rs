//! Channel callbacks (seed 004): registration rules, firing once when the device goes
//! inactive with the exact payload and content type, retries, and firing after a restart.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde_json::Value;

use crate::harness::*;

const TOKEN: &str = "sender-secret";

/// A callback receiver on loopback: records each POST (headers, exact bytes); answers 503
/// while `failures` counts down, then 200.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    pub(crate) failures: Arc<AtomicUsize>,
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    receiver.got.lock().unwrap().push((headers, body));
    let failing = receiver
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    axum::http::StatusCode::OK.into_response()
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let mut receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        receiver.url = format!("http://{}/inactive", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/inactive", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        receiver
    }

    pub(crate) fn got(&self) -> Vec<(HeaderMap, Bytes)> {
        self.got.lock().unwrap().clone()
    }

    pub(crate) async fn wait(&self, count: usize, within: Duration) -> Vec<(HeaderMap, Bytes)> {
        let deadline = Instant::now() + within;
        while self.got().len() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.got()
    }
}

async fn start() -> TestServer {
    TestServer::start_with(|config| {
        config.api_token = Some(TOKEN.into());
        config.channels.presence.connected_for = Duration::from_millis(300);
        config.channels.presence.grace = Duration::from_millis(300);
        config.channels.callback_retry.initial = Duration::from_millis(100);
        config.channels.callback_retry.max = Duration::from_millis(200);
        config.sweep_interval = Duration::from_millis(50);
    })
    .await
}

async fn open(server: &TestServer) -> (String, String) {
    let response = server
        .client
        .post(server.url("/api/v1/channels"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let uri = body["channel_uri"].as_str().unwrap().to_owned();
    (uri, body["token"].as_str().unwrap().to_owned())
}

pub(crate) async fn register(
    server: &TestServer,
    channel: &str,
    uri: Option<&str>,
    body: Vec<u8>,
    content_type: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = server
        .client
        .post(format!("{channel}/callback"))
        .header("Content-Type", content_type)
        .body(body);
    if let Some(uri) = uri {
        request = request.header("X-CallbackURI", uri);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn state(server: &TestServer, token: &str) -> Value {
    let text = server
        .client
        .get(server.url(&format!("/api/v1/channels/{token}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Keeps the device connected (a poll) until `until`.
async fn keep_connected(server: &TestServer, channel: &str) {
    let _ = server
        .client
        .get(format!("{channel}/notifications"))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn registrations_are_checked_and_the_payload_is_at_most_1024_bytes() {
    let server = start().await;
    let receiver = Receiver::start().await;
    let (channel, token) = open(&server).await;
    let at_limit = vec![b'a'; 1024];
    let anonymous = register(
        &server,
        &channel,
        Some(&receiver.url),
        at_limit.clone(),
        "text/plain",
        None,
    )
    .await;
    assert_eq!(
        anonymous.status(),
        401,
        "only authenticated services register"
    );
    let wrong = register(
        &server,
        &channel,
        Some(&receiver.url),
        at_limit.clone(),
        "text/plain",
        Some("nope"),
    )
    .await;
    assert_eq!(wrong.status(), 401);
    let ok = register(
        &server,
        &channel,
        Some(&receiver.url),
        at_limit,
        "text/plain",
        Some(TOKEN),
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-deviceconnectionstatus"], "Connected");
    assert_eq!(ok.headers()["x-subscriptionstatus"], "Active");
    assert_eq!(state(&server, &token).await["callback"]["bytes"], 1024);
    let cases: [(Option<&str>, usize); 6] = [
        (Some(receiver.url.as_str()), 1025),
        (None, 10),
        (Some("/relative/path"), 10),
        (Some("ftp://127.0.0.1/x"), 10),
        (Some("http://10.1.2.3/internal"), 10),
        (Some("not a url"), 10),
    ];
    for (uri, size) in cases {
        let refused = register(
            &server,
            &channel,
            uri,
            vec![b'b'; size],
            "text/plain",
            Some(TOKEN),
        )
        .await;
        assert_eq!(refused.status(), 400, "{uri:?} with {size} bytes");
    }
    let kept = state(&server, &token).await;
    assert_eq!(
        kept["callback"]["bytes"], 1024,
        "nothing refused was stored: {kept}"
    );
    let unknown = register(
        &server,
        &server.url("/channels/AAAAAAAAAAAAAAAAAAAAAA"),
        Some(&receiver.url),
        vec![1],
        "text/plain",
        Some(TOKEN),
    )
    .await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn the_last_registration_fires_once_when_the_device_goes_inactive() {
    let server = start().await;
    let receiver = Receiver::start().await;
    let (channel, token) = open(&server).await;
    let first = register(
        &server,
        &channel,
        Some(&receiver.url),
        b"first".to_vec(),
        "text/plain",
        Some(TOKEN),
    )
    .await;
    assert_eq!(first.status(), 200);
    // Binary, with its own content type: the last one wins.
    let payload: Vec<u8> = (0u8..=255).chain([0, 0xff, 0x80]).collect();
    let last = register(
        &server,
        &channel,
        Some(&receiver.url),
        payload.clone(),
        "application/x-device-state",
        Some(TOKEN),
    )
    .await;
    assert_eq!(last.status(), 200);
    assert!(
        receiver.got().is_empty(),
        "nothing fires while the device is there"
    );
    let got = receiver.wait(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    assert_eq!(body.as_ref(), payload.as_slice(), "byte for byte");
    assert_eq!(headers["content-type"], "application/x-device-state");
    assert_eq!(headers["x-herald-channel"], token.as_str());
    assert_eq!(headers["x-herald-event"], "InActive");
    // Spent: it does not fire again, however long the device stays away.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.got().len(), 1);
    assert_eq!(state(&server, &token).await["callback"]["state"], "fired");
    // While inactive a registration is refused; the device comes back, the service registers
    // again, the device goes away again: it fires again.
    let refused = register(
        &server,
        &channel,
        Some(&receiver.url),
        b"x".to_vec(),
        "text/plain",
        Some(TOKEN),
    )
    .await;
    assert_eq!(refused.status(), 412);
    keep_connected(&server, &channel).await;
    let again = register(
        &server,
        &channel,
        Some(&receiver.url),
        b"second".to_vec(),
        "text/plain",
        Some(TOKEN),
    )
    .await;
    assert_eq!(again.status(), 200);
    let got = receiver.wait(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].1.as_ref(), b"second");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("herald_channel_callbacks_total{outcome=\"fired\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_callback_receiver_down_then_up_gets_it_once_delivered() {
    let server = start().await;
    let receiver = Receiver::start().await;
    receiver.failures.store(3, Ordering::SeqCst);
    let (channel, token) = open(&server).await;
    let ok = register(
        &server,
        &channel,
        Some(&receiver.url),
        b"wake".to_vec(),
        "text/plain",
        Some(TOKEN),
    )
    .await;
    assert_eq!(ok.status(), 200);
    let got = receiver.wait(4, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 4, "three refused, the fourth taken");
    assert!(got.iter().all(|(_, body)| body.as_ref() == b"wake"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.got().len(), 4, "nothing after it was taken");
    assert_eq!(state(&server, &token).await["callback"]["state"], "fired");
}

#[tokio::test]
async fn a_device_that_went_inactive_while_herald_was_down_fires_when_it_is_back() {
    let receiver = Receiver::start().await;
    let store = TestStore::new().await;
    let config = store.data_dir().join("channels.toml");
    std::fs::write(
        &config,
        format!("api_token = \"{TOKEN}\"\nsweep_interval_ms = 50\n[channels]\nconnected_for = \"PT0.3S\"\ngrace = \"PT0.3S\"\n"),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut first = Process::start_with(&store, &["--config", &config]);
    let server = first.client();
    let (channel, _) = open(&server).await;
    let path = channel.split_once("/channels/").unwrap().1.to_owned();
    let ok = register(
        &server,
        &channel,
        Some(&receiver.url),
        b"gone".to_vec(),
        "text/plain",
        Some(TOKEN),
    )
    .await;
    assert_eq!(ok.status(), 200);
    first.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(receiver.got().is_empty());
    let second = Process::start_with(&store, &["--config", &config]);
    let server = second.client();
    let got = receiver.wait(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.as_ref(), b"gone");
    assert_eq!(got[0].0["x-herald-channel"], path.as_str());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.got().len(), 1, "once");
    drop(server);
}
