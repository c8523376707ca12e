//! `wsman:ConnectionRetry` honoured in place of the source's schedule, within its limits:
//! attempts the asked interval apart, given up after the asked number of retries.

use std::time::{Duration, Instant};

use herald::delivery::retry::RetryPolicy;

use crate::delivery::status_json;
use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, tick};
use crate::sink::{Behavior, Sink};
use crate::wsman::{EVENT_LOG, PUSH, manager_of, send, wsman_sources};

#[tokio::test]
async fn connection_retry_replaces_the_sources_schedule_within_its_limits() {
    let server = TestServer::start_with(|config| {
        wsman_sources(config);
        for source in &mut config.sources {
            // Fast and patient: left to itself, the source would retry every 50–100 ms for a
            // minute.
            source.retry = RetryPolicy {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(100),
                give_up_after: Duration::from_secs(60),
                ..RetryPolicy::default()
            };
        }
    })
    .await;
    let sink = Sink::start().await;
    sink.behave("down", Behavior::AlwaysFail);
    let body = format!(
        r#"<e:Subscribe>
      <e:Delivery Mode="{PUSH}">
        <e:NotifyTo><a:Address>{}</a:Address></e:NotifyTo>
        <w:ConnectionRetry Total="3">PT0.3S</w:ConnectionRetry>
      </e:Delivery>
    </e:Subscribe>"#,
        sink.url("down")
    );
    let headers = format!(r#"<w:ResourceURI s:mustUnderstand="true">{EVENT_LOG}</w:ResourceURI>"#);
    let reply = send(&server, &server.url("/wsman"), "Subscribe", &headers, &body).await;
    let (_, parameters) = manager_of(&reply);
    let id = parameters
        .split("uuid:")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .map(|uuid| format!("uuid:{uuid}"))
        .unwrap_or_else(|| panic!("no identifier in {parameters}"));
    publish(&server, "default", TICK_ACTION, &tick(1)).await;

    // One attempt and three retries 0.3 s apart, then DeliveryFailure.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = status_json(&server, &id).await;
        if status["status"] == "ended" || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["end_reason"], "delivery_failure", "{status}");
    let attempts: Vec<Instant> = sink.received("down").iter().map(|r| r.at).collect();
    assert_eq!(attempts.len(), 4, "one attempt and Total=3 retries");
    for pair in attempts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(280),
            "retries 0.3 s apart: {gap:?}"
        );
    }
}
