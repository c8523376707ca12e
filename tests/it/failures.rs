//! Failing deliveries say what happened: in the subscription's `last_error` (a name that does
//! not resolve, a refused connection, a status) and in the log, at `warn` with the
//! subscription's id, once rather than at every attempt.

use std::time::{Duration, Instant};

use crate::delivery::{status_json, subscribe_to};
use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, tick};
use crate::sink::{Behavior, Sink};

/// Waits until the subscription has failed `attempts` times and returns its status.
async fn failing(server: &TestServer, id: &str, attempts: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = status_json(server, id).await;
        if status["attempts"].as_u64().unwrap_or(0) >= attempts {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{id} did not fail {attempts} times: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_deliveries_say_what_happened_and_warn_once() {
    let store = TestStore::new().await;
    // Retried every 50-100 ms: many attempts in a second.
    let config = store.data_dir().join("fast-retry.toml");
    std::fs::write(
        &config,
        "[sources.default]\nretry_initial = \"PT0.05S\"\nretry_max = \"PT0.1S\"\n",
    )
    .unwrap();
    let sink = Sink::start().await;
    sink.behave("dead", Behavior::AlwaysFail);
    // sink.invalid never resolves; listed, it is accepted at Subscribe and fails at send time.
    let process = Process::start_with(
        &store,
        &[
            "--config",
            config.to_str().unwrap(),
            "--allowed-hosts",
            "sink.invalid",
        ],
    );
    let server = process.client();
    // Bound but not listening, for the whole test: connections are refused, and no other
    // test's server can take the port (a listener bound and dropped let one do so).
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let refusing = format!("http://{}/notify", closed.local_addr().unwrap());
    let cases = [
        (sink.url("dead"), "HTTP 503 Service Unavailable"),
        (refusing, "connection refused"),
        (
            "http://sink.invalid/notify".to_owned(),
            "the name sink.invalid does not resolve: ",
        ),
    ];
    let mut ids = Vec::new();
    for (notify_to, _) in &cases {
        let managed = subscribe_to(&server, Soap::V12, W3C2011, notify_to, "").await;
        ids.push(managed.id);
    }
    // A name that does not resolve and is not listed is refused at Subscribe.
    let reply = Message::new(
        Soap::V12,
        W3C2011,
        "Subscribe",
        subscribe_body(W3C2011, "http://other.invalid/notify", ""),
    )
    .send(&server, &server.url("/eventing/default"))
    .await;
    let fault = reply.assert_fault(Soap::V12, (WSE11, "UnusableEPR"), false);
    assert!(
        fault
            .reason
            .contains("the name other.invalid does not resolve"),
        "{}",
        fault.reason
    );
    publish(&server, "default", TICK_ACTION, &tick(0)).await;
    for ((notify_to, expected), id) in cases.iter().zip(&ids) {
        let status = failing(&server, id, 10).await;
        let error = status["last_error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(expected),
            "{notify_to}: last_error {error:?}, expected {expected:?}"
        );
        let warnings: Vec<String> = process
            .log()
            .into_iter()
            .filter(|line| line.contains("WARN") && line.contains(id.as_str()))
            .collect();
        assert_eq!(
            warnings.len(),
            1,
            "{notify_to}: one warning for {} attempts: {warnings:#?}",
            status["attempts"]
        );
        assert!(
            warnings[0].contains("delivery failed") && warnings[0].contains(expected),
            "{}",
            warnings[0]
        );
    }
}
