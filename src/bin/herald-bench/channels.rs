//! Scenario 11: push channels. Opens N channels, each with a device reading over a real SSE
//! stream (this process holds the N connections), measures herald's resident memory before and
//! after the streams open (the cost of an idle open stream), then sends notifications to every
//! channel with many senders and lasts until every stream has received every one. Preceded by
//! the raw baseline at the senders' concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::Context;
use crate::baseline;
use crate::load::{self, Latency, wait_for};
use crate::process::{Herald, Launch};
use crate::report::{Row, per_second, percent, rate, thousands};

/// Senders at once.
const SENDERS: u64 = 64;
/// The bearer token the senders present: authenticated senders, as services are.
const TOKEN: &str = "bench";
const STALL: Duration = Duration::from_secs(60);
const LIMIT: Duration = Duration::from_secs(3600);

/// Opens a channel; its URI.
async fn open(client: &reqwest::Client, herald: &Herald) -> anyhow::Result<String> {
    let response = client
        .post(herald.url("/api/v1/channels"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .context("opening a channel")?;
    if response.status().as_u16() != 201 {
        bail!("opening a channel: {}", response.status());
    }
    let body: serde_json::Value = serde_json::from_str(&response.text().await?)?;
    Ok(body["channel_uri"].as_str().unwrap_or_default().to_owned())
}

/// Reads one channel's stream, counting the notifications that arrive, until it ends.
async fn read_stream(
    client: reqwest::Client,
    uri: String,
    received: Arc<AtomicU64>,
    opened: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut response = client
        .get(format!("{uri}/stream"))
        .header("Accept", "text/event-stream")
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("stream: {}", response.status());
    }
    opened.fetch_add(1, Ordering::AcqRel);
    let mut tail = String::new();
    while let Some(chunk) = response.chunk().await? {
        tail.push_str(&String::from_utf8_lossy(&chunk));
        // Count complete lines only; a line cut in two waits for its end.
        if let Some(end) = tail.rfind('\n') {
            let complete: String = tail.drain(..=end).collect();
            let events = complete
                .lines()
                .filter(|line| line.starts_with("id:"))
                .count();
            received.fetch_add(events as u64, Ordering::AcqRel);
        }
    }
    Ok(())
}

/// Sends `per_channel` notifications to each channel with [`SENDERS`] senders; the time it
/// took and each send's latency.
async fn send(
    client: &reqwest::Client,
    channels: &[String],
    per_channel: u64,
) -> anyhow::Result<(Duration, Vec<u64>)> {
    let total = channels.len() as u64 * per_channel;
    let next = Arc::new(AtomicU64::new(0));
    let channels = Arc::new(channels.to_vec());
    let started = Instant::now();
    let workers: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (client, next, channels) = (client.clone(), next.clone(), channels.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::AcqRel);
                    if k >= total {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    let channel = &channels[(k % channels.len() as u64) as usize];
                    let sent = Instant::now();
                    let response = client
                        .post(channel)
                        .bearer_auth(TOKEN)
                        .header("Content-Type", "text/xml")
                        .body(format!("<toast n=\"{k}\">bench</toast>"))
                        .send()
                        .await?;
                    let status = response
                        .headers()
                        .get("X-NotificationStatus")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    if response.status().as_u16() != 200 || status != "Received" {
                        bail!("sending: {} {status}", response.status());
                    }
                    latencies.push(load::nanos(sent.elapsed()));
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    Ok((started.elapsed(), latencies))
}

/// Scenario 11.
pub async fn channels(context: &Context) -> anyhow::Result<Vec<Row>> {
    let (count, per_channel) = context.sizes.channel_run;
    let dir = context.scratch("channels")?;
    let launch = Launch {
        config: Some(format!(
            "api_token = \"{TOKEN}\"\nmax_connections = {}\n[channels]\nqueue_cap = 1000000\n",
            count * 2 + 512
        )),
        database: None,
        ready_timeout: None,
        node_id: None,
    };
    eprintln!("-- 11 channels: {} with a stream each", thousands(count));
    let (baseline_row, base) = baseline::at(context, SENDERS, false).await?;
    let mut herald = Herald::start(&context.herald, dir.path(), &launch).await?;
    let client = load::client()?;
    let mut channels = Vec::with_capacity(count as usize);
    for _ in 0..count {
        channels.push(open(&client, &herald).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = herald.rss_bytes()?;
    let received = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicU64::new(0));
    let streams: Vec<_> = channels
        .iter()
        .map(|uri| {
            tokio::spawn(read_stream(
                client.clone(),
                uri.clone(),
                received.clone(),
                opened.clone(),
            ))
        })
        .collect();
    if let Err(stalled) = wait_for("streams open", count, STALL, LIMIT, || {
        opened.load(Ordering::Acquire)
    })
    .await
    {
        bail!("{stalled}; herald's log ends:\n{}", herald.log_tail());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = herald.rss_bytes()?;
    let per_stream = after.saturating_sub(before) / count.max(1);
    let target = count * per_channel;
    let started = Instant::now();
    let (sent_in, latencies) = send(&client, &channels, per_channel).await?;
    if let Err(stalled) = wait_for("notifications streamed", target, STALL, LIMIT, || {
        received.load(Ordering::Acquire)
    })
    .await
    {
        herald.check_alive()?;
        bail!("{stalled}; herald's log ends:\n{}", herald.log_tail());
    }
    let elapsed = started.elapsed();
    for stream in streams {
        stream.abort();
    }
    let delivered = rate(target, elapsed);
    let share = if base > 0.0 {
        format!(
            " = {}% of (1) at {SENDERS} in flight",
            percent(delivered / base)
        )
    } else {
        String::new()
    };
    let row = Row::new(
        "11 channels",
        format!(
            "{} channels × {} notifications, a streaming reader each, {SENDERS} authenticated senders (SQLite)",
            thousands(count),
            thousands(per_channel)
        ),
        format!(
            "{}{share}; sent at {} (200 Received, durable); {} B resident per idle open stream ({} → {} B)",
            per_second(delivered, "notifications streamed"),
            per_second(rate(target, sent_in), "notifications"),
            thousands(per_stream),
            thousands(before),
            thousands(after)
        ),
    )
    .latency(Latency::cell(Latency::of(latencies)))
    .target("–".to_owned());
    eprintln!("   {}", row.result);
    herald.check_alive()?;
    Ok(vec![baseline_row, row])
}
