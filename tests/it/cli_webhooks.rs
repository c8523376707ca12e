//! The command-line client with webhooks: `herald subscribe --webhook` against the JSON API,
//! `herald sink` printing the Standard Webhooks headers and the JSON body exactly, and status,
//! renew and unsubscribe of the webhook by its reference.

use crate::cli::{SinkProcess, fast_retrying_herald, herald};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_subscribed_published_to_and_managed_from_the_command_line() {
    let (_store, process) = fast_retrying_herald(&[]);
    let url = process.base.as_str();
    let sink = SinkProcess::start(&[]);
    let made = herald(
        &[
            "subscribe",
            "default",
            "--webhook",
            &sink.url("hook"),
            "--url",
            url,
            "--json",
        ],
        &[],
        None,
    )
    .await
    .json();
    assert_eq!(made["kind"], "webhook", "{made}");
    let reference = made["reference"].as_str().unwrap().to_owned();
    let secret = made["subscription"]["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{made}");

    let published = herald(
        &[
            "publish",
            "default",
            "-a",
            "urn:shop:created",
            "--content-type",
            "application/json",
            "--url",
            url,
        ],
        &[],
        Some(r#"{"order": 42}"#),
    )
    .await;
    published.ok();
    let lines = sink
        .wait_for("the webhook delivery", |lines| {
            lines.iter().any(|line| line.trim() == r#"{"order": 42}"#)
        })
        .await;
    assert!(
        lines.iter().any(|l| l.starts_with("#1 POST /hook -> 200")),
        "{lines:#?}"
    );
    for header in [
        "webhook-id: msg_",
        "webhook-signature: v1,",
        "webhook-timestamp: ",
        "herald-event-type: urn:shop:created",
        "content-type: application/json",
    ] {
        assert!(
            lines.iter().any(|l| l.trim().starts_with(header)),
            "{header}: {lines:#?}"
        );
    }

    let status = herald(&["status", &reference, "--url", url, "--json"], &[], None)
        .await
        .json();
    assert_eq!(status["subscription"]["status"], "active", "{status}");
    assert_eq!(status["subscription"]["cursor"], 1, "{status}");
    let before = status["subscription"]["expires_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let renewed = herald(
        &["renew", &reference, "--expires", "PT2H", "--url", url],
        &[],
        None,
    )
    .await;
    renewed.ok();
    let status = herald(&["status", &reference, "--url", url, "--json"], &[], None)
        .await
        .json();
    assert_ne!(
        status["subscription"]["expires_at"].as_str().unwrap(),
        before,
        "{status}"
    );
    herald(&["unsubscribe", &reference, "--url", url], &[], None)
        .await
        .ok();
    let status = herald(&["status", &reference, "--url", url, "--json"], &[], None)
        .await
        .json();
    assert_eq!(
        (
            &status["subscription"]["status"],
            &status["subscription"]["end_reason"]
        ),
        (&"ended".into(), &"unsubscribed".into())
    );
}
