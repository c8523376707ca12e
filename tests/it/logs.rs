//! `herald serve --log-format json`: one JSON object a line, in which every request about a
//! subscription and every delivery attempt carries the subscription's id (and an attempt its
//! event's id, seq and outcome), so both can be traced.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{SinkProcess, herald};
use crate::harness::*;

/// The log lines parsed as JSON (all of them must be JSON), once `wanted` finds one.
async fn json_line(process: &Process, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = process.log();
        for line in &lines {
            let parsed: Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("a log line that is not JSON ({err}): {line}"));
            if wanted(&parsed) {
                return parsed;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no log line {what}:\n{}",
            lines.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_trace_requests_and_delivery_attempts_by_subscription_and_event() {
    let store = TestStore::embedded();
    let config = store.data_dir().join("fast-retry.toml");
    std::fs::write(
        &config,
        "[sources.default]\nretry_initial = \"PT0.05S\"\nretry_max = \"PT0.1S\"\n",
    )
    .unwrap();
    let mut command = Process::command();
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--allowed-networks",
            "127.0.0.0/8",
        ])
        .args(["--log-format", "json", "--log-level", "debug", "--config"])
        .arg(&config)
        .args(store.args());
    let process = Process::spawn(command);
    let url = process.base.as_str();
    let sink = SinkProcess::start(&["--fail", "1"]);
    let run = herald(
        &[
            "subscribe",
            "default",
            "--notify-to",
            &sink.url("logs"),
            "--url",
            url,
            "--json",
        ],
        &[],
        None,
    )
    .await;
    let subscription = run.json()["reference"].as_str().unwrap().to_owned();
    let run = herald(
        &[
            "publish",
            "default",
            "-a",
            "urn:example:logged",
            "--url",
            url,
            "--json",
        ],
        &[],
        Some(r#"<e:logged xmlns:e="urn:example"/>"#),
    )
    .await;
    let event = run.json()["events"][0]["id"].as_str().unwrap().to_owned();
    sink.wait_for("the delivery", |lines| {
        lines.iter().any(|line| line.contains("-> 200"))
    })
    .await;

    let is = |line: &Value, name: &str, value: &str| line[name].as_str() == Some(value);
    // The Subscribe request, with the subscription it made.
    let request = json_line(&process, "for the Subscribe", |line| {
        is(line, "message", "WS-Eventing request") && is(line, "operation", "subscribe")
    })
    .await;
    assert_eq!(request["subscription"], subscription.as_str(), "{request}");
    assert_eq!(request["level"], "DEBUG");
    assert!(request["timestamp"].is_string(), "{request}");
    // The failed attempt and the delivery, each with both ids.
    for outcome in ["failed", "delivered"] {
        let attempt = json_line(&process, &format!("for the {outcome} attempt"), |line| {
            is(line, "message", "delivery attempt") && is(line, "outcome", outcome)
        })
        .await;
        assert_eq!(attempt["subscription"], subscription.as_str(), "{attempt}");
        assert_eq!(attempt["event"], event.as_str(), "{attempt}");
        assert_eq!(attempt["seq"], 1, "{attempt}");
    }
    // The publish, with its event.
    let published = json_line(&process, "for the publish", |line| {
        is(line, "message", "event published")
    })
    .await;
    assert_eq!(published["event"], event.as_str(), "{published}");
}
