//! Scenario 10: invocation callbacks end to end. herald invokes the SOAP echo server (its own
//! process) for each raised invoker event, and pull listeners receive the callback events from
//! the agent and acknowledge them; the run lasts until every raise's callback has been acked.
//! It is preceded by the raw baseline at the invoker's concurrency.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::Context;
use crate::baseline;
use crate::echo::EchoServer;
use crate::load::{self, Latency, wait_for};
use crate::process::{FreshDatabase, Herald, Launch};
use crate::report::{Row, per_second, percent, rate, thousands};

/// Clients raising at once.
const RAISERS: u64 = 64;
/// Pull listeners at once.
const LISTENERS: usize = 4;
/// Calls in flight per invoker.
const CONCURRENCY: u64 = 64;
const STALL: Duration = Duration::from_secs(60);
const LIMIT: Duration = Duration::from_secs(3600);

/// Raises `count` invoker events (keys `k0`…) with [`RAISERS`] clients; the time it took and
/// each raise's latency.
async fn raise(
    client: &reqwest::Client,
    herald: &Herald,
    count: u64,
) -> anyhow::Result<(Duration, Vec<u64>)> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..RAISERS)
        .map(|_| {
            let (client, next) = (client.clone(), next.clone());
            let url = herald.url("/api/v1/invokers/bench/events");
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::AcqRel);
                    if n >= count {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    let body = serde_json::json!({
                        "key": format!("k{n}"),
                        "payload": format!("<b:order xmlns:b=\"urn:bench\" n=\"{n}\"/>"),
                    });
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await?;
                    if response.status().as_u16() != 202 {
                        bail!(
                            "raising: {}: {}",
                            response.status(),
                            response.text().await.unwrap_or_default()
                        );
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

/// What the listeners saw: distinct keys acked, messages received twice, and when the last
/// ack came back.
#[derive(Default)]
struct Acked {
    keys: HashSet<String>,
    duplicates: u64,
    last: Option<Instant>,
}

/// A pull listener: receives up to 100 at a time (long-polling 1 s) and acks each batch,
/// until `stop`.
async fn listen(
    client: reqwest::Client,
    base: String,
    acked: Arc<Mutex<Acked>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    while !stop.load(Ordering::Acquire) {
        let response = client
            .post(format!("{base}/api/v1/agents/inbound/receive"))
            .header("Content-Type", "application/json")
            .body(r#"{"max": 100, "wait": 1}"#)
            .send()
            .await?;
        let value: serde_json::Value = serde_json::from_str(&response.text().await?)?;
        let messages = value["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        let receipts: Vec<&str> = messages
            .iter()
            .filter_map(|m| m["receipt"].as_str())
            .collect();
        let settled = client
            .post(format!("{base}/api/v1/agents/inbound/ack"))
            .header("Content-Type", "application/json")
            .body(serde_json::json!({ "receipts": receipts }).to_string())
            .send()
            .await?;
        if !settled.status().is_success() {
            bail!("ack: {}", settled.status());
        }
        let mut acked = acked.lock().unwrap_or_else(|e| e.into_inner());
        for message in &messages {
            let key = message["key"].as_str().unwrap_or_default().to_owned();
            if !acked.keys.insert(key) {
                acked.duplicates += 1;
            }
        }
        acked.last = Some(Instant::now());
    }
    Ok(())
}

/// Scenario 10: raise → call → callback on the agent → received and acked (on PostgreSQL with
/// `database`).
pub async fn invocations(context: &Context, database: Option<&str>) -> anyhow::Result<Vec<Row>> {
    let dir = context.scratch("invocations")?;
    let echo = EchoServer::start(dir.path()).await?;
    let fresh = database.map(FreshDatabase::create).transpose()?;
    let store = if database.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let launch = Launch {
        config: Some(format!(
            "[invokers.bench]\nurl = \"{}/eventing/default\"\nsoap = \"1.2\"\naction = \"urn:bench:Order\"\nconcurrency = {CONCURRENCY}\n[invokers.bench.parameters]\ncallback_event = \"bench.done\"\n",
            echo.base
        )),
        database: fresh.as_ref().map(|d| d.url.clone()),
        ready_timeout: None,
        node_id: None,
    };
    let count = context.sizes.invocations;
    eprintln!("-- 10 invocations ({store}): {}", thousands(count));
    let (baseline_row, base) = baseline::at(context, CONCURRENCY, false).await?;
    let mut herald = Herald::start(&context.herald, dir.path(), &launch).await?;
    let client = load::client()?;
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listeners: Vec<_> = (0..LISTENERS)
        .map(|_| {
            tokio::spawn(listen(
                client.clone(),
                herald.base.clone(),
                acked.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let started = Instant::now();
    let (raised_in, latencies) = raise(&client, &herald, count)
        .await
        .context("raising invoker events")?;
    let waited = wait_for("acked", count, STALL, LIMIT, || {
        acked.lock().map_or(0, |a| a.keys.len() as u64)
    })
    .await;
    stop.store(true, Ordering::Release);
    for listener in listeners {
        listener.await??;
    }
    if let Err(stalled) = waited {
        herald.check_alive()?;
        bail!("{stalled}; herald's log ends:\n{}", herald.log_tail());
    }
    let (last, duplicates) = {
        let acked = acked.lock().unwrap_or_else(|e| e.into_inner());
        (acked.last, acked.duplicates)
    };
    let elapsed = last.map_or(started.elapsed(), |at| at.duration_since(started));
    let done = rate(count, elapsed);
    let share = if base > 0.0 {
        format!(
            " = {}% of (1) at {CONCURRENCY} in flight",
            percent(done / base)
        )
    } else {
        String::new()
    };
    let row = Row::new(
        "10 invocations",
        format!(
            "{} raises by {RAISERS} clients, SOAP 1.2 echo service, {CONCURRENCY} calls in flight, {LISTENERS} listeners ({store})",
            thousands(count)
        ),
        format!(
            "{}{share}; raised at {} (202 durable){}",
            per_second(done, "invocations acked end to end"),
            per_second(rate(count, raised_in), "raises"),
            if duplicates > 0 {
                format!(", {} received twice", thousands(duplicates))
            } else {
                String::new()
            }
        ),
    )
    .latency(Latency::cell(Latency::of(latencies)))
    .target("–".to_owned());
    eprintln!("   {}", row.result);
    herald.check_alive()?;
    Ok(vec![baseline_row, row])
}
