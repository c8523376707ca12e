//! Driving load: the messages, the client, concurrent request loops, statistics and progress.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::task::JoinHandle;

use crate::report::{duration, per_second, rate, thousands};

pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const WSA: &str = "http://www.w3.org/2005/08/addressing";
pub const WSE11: &str = "http://www.w3.org/2011/03/ws-evt";
/// The 2011 XPath filter dialect.
pub const XPATH10: &str = "http://www.w3.org/2011/03/ws-evt/Dialects/XPath10";
/// The action of the bench's events.
pub const ACTION: &str = "urn:bench:tick";

/// rustls needs its crypto provider chosen once per process (reqwest is built without one).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The bench's own client (subscribing, publishing): keep-alive, no proxy, no Nagle.
pub fn client() -> anyhow::Result<reqwest::Client> {
    install_crypto();
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")
}

/// One of the bench's events: phase, number, publish time (ns since the bench's epoch) and a
/// key filters select on.
pub fn event(phase: u64, n: u64, t: u64, k: u64) -> String {
    format!(r#"<b:tick xmlns:b="urn:bench" p="{phase}" n="{n}" t="{t}" k="{k}"/>"#)
}

/// A W3C 2011 SOAP 1.2 Subscribe, durable, with an optional 2011 XPath filter on the bench's
/// events (prefix `b` bound to `urn:bench`).
pub fn subscribe_message(notify_to: &str, filter: Option<&str>) -> String {
    let filter = filter.map_or(String::new(), |xpath| {
        format!(r#"<wse:Filter Dialect="{XPATH10}" xmlns:b="urn:bench">{xpath}</wse:Filter>"#)
    });
    format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:wsa="{WSA}" xmlns:wse="{WSE11}"><s:Header><wsa:Action>http://www.w3.org/2011/03/ws-evt/Subscribe</wsa:Action><wsa:MessageID>urn:uuid:{}</wsa:MessageID></s:Header><s:Body><wse:Subscribe><wse:Delivery><wse:NotifyTo><wsa:Address>{notify_to}</wsa:Address></wse:NotifyTo></wse:Delivery><wse:Expires>PT6H</wse:Expires>{filter}</wse:Subscribe></s:Body></s:Envelope>"#,
        uuid::Uuid::new_v4()
    )
}

/// WS-Addressing 2004/08 and WS-Eventing 2004/08: what WS-Management clients speak.
pub const WSA2004: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
pub const WSE08: &str = "http://schemas.xmlsoap.org/ws/2004/08/eventing";
pub const WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";

/// A 2004/08 SOAP 1.2 Subscribe as a WS-Management client sends one (no `wsman:ResourceURI`:
/// it goes to `/eventing/{source}`), delivering in `mode` with `delivery_extra` in
/// `wse:Delivery` (e.g. `<w:MaxElements>`, prefix `w` bound to WS-Management's namespace).
pub fn wsman_subscribe_message(notify_to: &str, mode: &str, delivery_extra: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:s="{SOAP12}" xmlns:wsa="{WSA2004}" xmlns:wse="{WSE08}" xmlns:w="{WSMAN}"><s:Header><wsa:Action>{WSE08}/Subscribe</wsa:Action><wsa:MessageID>uuid:{}</wsa:MessageID><wsa:ReplyTo><wsa:Address>{WSA2004}/role/anonymous</wsa:Address></wsa:ReplyTo></s:Header><s:Body><wse:Subscribe><wse:Delivery Mode="{mode}"><wse:NotifyTo><wsa:Address>{notify_to}</wsa:Address></wse:NotifyTo>{delivery_extra}</wse:Delivery><wse:Expires>PT6H</wse:Expires></wse:Subscribe></s:Body></s:Envelope>"#,
        uuid::Uuid::new_v4()
    )
}

/// A notification as herald writes one for a W3C 2011 SOAP 1.2 subscriber (unwrapped): what
/// the raw baseline posts.
pub fn notification(to: &str, event: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<s:Envelope xmlns:s=\"{SOAP12}\" xmlns:wsa=\"{WSA}\"><s:Header><wsa:Action>{ACTION}</wsa:Action><wsa:MessageID>urn:uuid:{}</wsa:MessageID><wsa:To>{to}</wsa:To></s:Header><s:Body>{event}</s:Body></s:Envelope>",
        uuid::Uuid::new_v4()
    )
}

/// The `Content-Type` of a SOAP 1.2 notification.
pub fn notification_content_type() -> String {
    format!("application/soap+xml; charset=utf-8; action=\"{ACTION}\"")
}

/// Publishes events to the default source in one batch request; fails unless herald answers
/// 202.
pub async fn publish_batch(
    client: &reqwest::Client,
    base: &str,
    events: &[String],
) -> anyhow::Result<()> {
    publish_batch_to(client, base, "default", events).await
}

/// Publishes events to `source` in one batch request; fails unless herald answers 202.
pub async fn publish_batch_to(
    client: &reqwest::Client,
    base: &str,
    source: &str,
    events: &[String],
) -> anyhow::Result<()> {
    let mut body = String::from(r#"<Events xmlns="urn:herald:publish">"#);
    for event in events {
        body.push_str(&format!(r#"<Event action="{ACTION}">{event}</Event>"#));
    }
    body.push_str("</Events>");
    let response = client
        .post(format!("{base}/api/v1/sources/{source}/events/batch"))
        .header("Content-Type", "application/xml")
        .body(body)
        .send()
        .await
        .context("publishing a batch")?;
    expect_status(response, 202).await
}

/// Publishes one event; fails unless herald answers 202.
pub async fn publish_one(
    client: &reqwest::Client,
    base: &str,
    event: String,
) -> anyhow::Result<()> {
    let response = client
        .post(format!("{base}/api/v1/sources/default/events"))
        .header("Content-Type", "application/xml")
        .header("Herald-Action", ACTION)
        .body(event)
        .send()
        .await
        .context("publishing an event")?;
    expect_status(response, 202).await
}

async fn expect_status(response: reqwest::Response, status: u16) -> anyhow::Result<()> {
    let got = response.status().as_u16();
    if got != status {
        let text = response.text().await.unwrap_or_default();
        bail!("HTTP {got} (expected {status}): {}", text.trim());
    }
    let _ = response.bytes().await;
    Ok(())
}

/// The `herald_active_subscriptions` gauge of the default source.
pub async fn active_subscriptions(client: &reqwest::Client, base: &str) -> anyhow::Result<u64> {
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("herald_active_subscriptions{source=\"default\"} "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .ok_or_else(|| anyhow::anyhow!("no herald_active_subscriptions gauge in /metrics"))
}

/// Sends one SOAP request and checks that the answer is a SOAP response of the expected kind.
async fn soap_call(
    client: &reqwest::Client,
    url: &str,
    body: String,
    expect: &str,
) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .header("Content-Type", "application/soap+xml; charset=utf-8")
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    if status != 200 || !text.contains(expect) {
        bail!("HTTP {status}, not a {expect}: {}", text.trim());
    }
    Ok(())
}

/// What a run of requests gave.
#[derive(Debug, Default)]
pub struct Requests {
    pub count: u64,
    pub elapsed: Duration,
    /// Per request, nanoseconds.
    pub latencies: Vec<u64>,
}

/// Sends the requests `range` (each built by `make(i)`) with `concurrency` clients, stopping
/// at the first failure; shows progress under `label`.
pub async fn requests<F>(
    client: &reqwest::Client,
    url: &str,
    range: std::ops::Range<u64>,
    concurrency: usize,
    expect: &'static str,
    label: &str,
    make: F,
) -> anyhow::Result<Requests>
where
    F: Fn(u64) -> String + Send + Sync + 'static,
{
    let total = range.end.saturating_sub(range.start);
    let next = Arc::new(AtomicU64::new(range.start));
    let progress = Progress::start(label, total);
    let make = Arc::new(make);
    let failed = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<JoinHandle<anyhow::Result<Vec<u64>>>> = (0..concurrency.max(1))
        .map(|_| {
            let (client, url, next, make, failed, done) = (
                client.clone(),
                url.to_owned(),
                next.clone(),
                make.clone(),
                failed.clone(),
                progress.counter(),
            );
            let end = range.end;
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::AcqRel);
                    if i >= end || failed.load(Ordering::Acquire) {
                        return Ok(latencies);
                    }
                    let sent = Instant::now();
                    if let Err(err) = soap_call(&client, &url, make(i), expect).await {
                        failed.store(true, Ordering::Release);
                        return Err(err.context(format!("request {i}")));
                    }
                    latencies.push(nanos(sent.elapsed()));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut out = Requests::default();
    for worker in workers {
        out.latencies.extend(worker.await??);
    }
    out.elapsed = started.elapsed();
    out.count = out.latencies.len() as u64;
    Ok(out)
}

/// Sends requests built by `make(i)` with `concurrency` clients for `length`, stopping at the
/// first failure.
pub async fn requests_for<F>(
    client: &reqwest::Client,
    url: &str,
    length: Duration,
    concurrency: usize,
    expect: &'static str,
    make: F,
) -> anyhow::Result<Requests>
where
    F: Fn(u64) -> String + Send + Sync + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let make = Arc::new(make);
    let failed = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + length;
    let workers: Vec<JoinHandle<anyhow::Result<Vec<u64>>>> = (0..concurrency.max(1))
        .map(|_| {
            let (client, url, next, make, failed) = (
                client.clone(),
                url.to_owned(),
                next.clone(),
                make.clone(),
                failed.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline && !failed.load(Ordering::Acquire) {
                    let i = next.fetch_add(1, Ordering::AcqRel);
                    let sent = Instant::now();
                    if let Err(err) = soap_call(&client, &url, make(i), expect).await {
                        failed.store(true, Ordering::Release);
                        return Err(err.context(format!("request {i}")));
                    }
                    latencies.push(nanos(sent.elapsed()));
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut out = Requests::default();
    for worker in workers {
        out.latencies.extend(worker.await??);
    }
    out.elapsed = started.elapsed();
    out.count = out.latencies.len() as u64;
    Ok(out)
}

pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// p50, p99 and max of a set of latencies.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    pub fn of(mut samples: Vec<u64>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |p: f64| {
            let index = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
            Duration::from_nanos(samples[index])
        };
        Some(Latency {
            p50: at(0.50),
            p99: at(0.99),
            max: Duration::from_nanos(samples[samples.len() - 1]),
        })
    }

    /// "p50 / p99 / max" for the table.
    pub fn cell(latency: Option<Latency>) -> String {
        latency.map_or(String::new(), |l| {
            format!(
                "{} / {} / {}",
                duration(l.p50),
                duration(l.p99),
                duration(l.max)
            )
        })
    }
}

/// A line on stderr every few seconds while a long step runs; stops when dropped.
pub struct Progress {
    done: Arc<AtomicU64>,
    ticker: JoinHandle<()>,
}

impl Progress {
    pub fn start(label: &str, total: u64) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let label = label.to_owned();
        let counter = done.clone();
        let ticker = tokio::spawn(async move {
            let started = Instant::now();
            let mut interval = tokio::time::interval(Duration::from_secs(5));
            interval.tick().await;
            loop {
                interval.tick().await;
                let done = counter.load(Ordering::Relaxed);
                eprintln!(
                    "   {label}: {} of {} after {:.0} s ({})",
                    thousands(done),
                    thousands(total),
                    started.elapsed().as_secs_f64(),
                    per_second(rate(done, started.elapsed()), "")
                );
            }
        });
        Progress { done, ticker }
    }

    /// The counter the workers add to.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }

    pub fn set(&self, value: u64) {
        self.done.store(value, Ordering::Relaxed);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

/// Why waiting ended early.
#[derive(Debug)]
pub struct Stalled {
    pub done: u64,
    pub target: u64,
    pub after: Duration,
}

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stalled at {} of {} after {:.1} s",
            thousands(self.done),
            thousands(self.target),
            self.after.as_secs_f64()
        )
    }
}

/// Waits until `count()` reaches `target`, showing progress; gives up when it has not moved
/// for `stall` or after `limit` in all.
pub async fn wait_for(
    label: &str,
    target: u64,
    stall: Duration,
    limit: Duration,
    count: impl Fn() -> u64,
) -> Result<Duration, Stalled> {
    let progress = Progress::start(label, target);
    let started = Instant::now();
    let mut last = (count(), Instant::now());
    loop {
        let done = count();
        progress.set(done);
        if done >= target {
            return Ok(started.elapsed());
        }
        if done != last.0 {
            last = (done, Instant::now());
        }
        if last.1.elapsed() > stall || started.elapsed() > limit {
            return Err(Stalled {
                done,
                target,
                after: started.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        let latency = Latency::of(samples).unwrap();
        assert_eq!(latency.p50, Duration::from_nanos(50));
        assert_eq!(latency.p99, Duration::from_nanos(99));
        assert_eq!(latency.max, Duration::from_nanos(100));
        assert!(Latency::of(Vec::new()).is_none());
    }

    #[test]
    fn subscribe_messages_are_well_formed() {
        let message = subscribe_message("http://127.0.0.1:1/sink/3", Some("/b:tick[@k = 3]"));
        let document = roxmltree::Document::parse(&message).unwrap();
        assert!(
            document
                .descendants()
                .any(|n| n.has_tag_name((WSE11, "Filter")))
        );
        let message = wsman_subscribe_message(
            "http://127.0.0.1:1/sink/3",
            "http://schemas.dmtf.org/wbem/wsman/1/wsman/Events",
            "<w:MaxElements>100</w:MaxElements>",
        );
        let document = roxmltree::Document::parse(&message).unwrap();
        assert!(
            document
                .descendants()
                .any(|n| n.has_tag_name((WSMAN, "MaxElements")))
        );
        let event = event(1, 2, 3, 4);
        assert!(roxmltree::Document::parse(&notification("http://x/", &event)).is_ok());
    }
}
