//! Scenario 9: callback contexts. Instances are opened through the gateway with a
//! CallbackContext naming a sink each; then callbacks are queued through the JSON API with
//! many clients, and the run lasts until every callback has reached its instance's sink. Each
//! run is preceded by the raw baseline at the concurrency herald may use for it (1 in flight for
//! one instance, whose callbacks go in order).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::Context;
use crate::baseline;
use crate::load::{self, Latency, event, wait_for};
use crate::process::{Herald, Launch};
use crate::report::{Row, per_second, percent, rate, thousands};
use crate::sink::{Sinks, now_nanos};

const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
const WSA: &str = "http://www.w3.org/2005/08/addressing";
const CALLBACK_NS: &str = "http://schemas.microsoft.com/ws/2008/02/context";
const CONTEXT_NS: &str = "http://schemas.microsoft.com/ws/2006/05/context";
/// Clients queueing callbacks at once.
const CLIENTS: u64 = 64;
const STALL: Duration = Duration::from_secs(60);
const LIMIT: Duration = Duration::from_secs(3600);

/// A request that opens an instance whose callbacks go to `callback`.
fn open_message(callback: &str) -> String {
    format!(
        "<s:Envelope xmlns:s=\"{SOAP12}\" xmlns:a=\"{WSA}\"><s:Header><a:Action>urn:bench:Open</a:Action><a:MessageID>urn:uuid:{}</a:MessageID><CallbackContext xmlns=\"{CALLBACK_NS}\"><CallbackEndpointReference><a:Address>{callback}</a:Address><a:ReferenceParameters><Context xmlns=\"{CONTEXT_NS}\"><Property name=\"instanceId\">bench</Property></Context></a:ReferenceParameters></CallbackEndpointReference></CallbackContext></s:Header><s:Body><b:open xmlns:b=\"urn:bench\"/></s:Body></s:Envelope>",
        uuid::Uuid::new_v4()
    )
}

/// Opens instances `0..count`, instance `i` calling back sink subscriber `i`; their ids.
async fn open(
    client: &reqwest::Client,
    herald: &Herald,
    sinks: &Sinks,
    count: u64,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(count as usize);
    for i in 0..count {
        let response = client
            .post(herald.url("/contexts/bench"))
            .header("Content-Type", "application/soap+xml; charset=utf-8")
            .body(open_message(&sinks.url(i)))
            .send()
            .await
            .context("opening an instance")?;
        let status = response.status();
        let id = response
            .headers()
            .get("herald-instance-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match id {
            Some(id) if status.is_success() => ids.push(id),
            _ => bail!(
                "opening instance {i}: {status}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }
    Ok(ids)
}

/// Queues `per_instance` callbacks to each instance (callback `n` of instance `i` is event
/// `n`, for sink subscriber `i`) with [`CLIENTS`] clients; returns the time it took and each
/// request's latency.
async fn queue(
    client: &reqwest::Client,
    herald: &Herald,
    ids: &[String],
    phase: u64,
    per_instance: u64,
) -> anyhow::Result<(Duration, Vec<u64>)> {
    let total = ids.len() as u64 * per_instance;
    let next = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(ids.to_vec());
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, next, ids) = (client.clone(), next.clone(), ids.clone());
            let base = herald.base.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::AcqRel);
                    if k >= total {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    // Round-robin over the instances, so that each instance's callbacks are
                    // queued in order by number.
                    let (instance, n) = (k % ids.len() as u64, k / ids.len() as u64);
                    let body = serde_json::json!({
                        "action": "urn:bench:Callback",
                        "body": event(phase, n, now_nanos(), 0),
                    });
                    let sent = Instant::now();
                    let response = client
                        .post(format!(
                            "{base}/api/v1/contexts/bench/instances/{}/callbacks",
                            ids[instance as usize]
                        ))
                        .header("Content-Type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await?;
                    if response.status().as_u16() != 202 {
                        bail!(
                            "queueing a callback: {}: {}",
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

/// Scenario 9: callbacks to one instance and across many.
pub async fn contexts(context: &Context) -> anyhow::Result<Vec<Row>> {
    let dir = context.scratch("contexts")?;
    let sinks = Sinks::start(context.sizes.sinks).await?;
    // The backend only answers the requests that open instances: a sink path does (202).
    let backend = format!("{}/sink/{}", sinks.bases()[0], u32::MAX);
    let launch = Launch {
        config: Some(format!(
            "[contexts.bench]\nbackend = \"{backend}\"\nidle_ttl = \"PT6H\"\n"
        )),
        database: None,
        ready_timeout: None,
        node_id: None,
    };
    let mut herald = Herald::start(&context.herald, dir.path(), &launch).await?;
    let client = load::client()?;
    let mut rows = Vec::new();
    let mut opened: Vec<String> = Vec::new();
    for (index, &(instances, per_instance)) in context.sizes.context_runs.iter().enumerate() {
        eprintln!("-- 9 callbacks: {} instances", thousands(instances));
        if instances as usize > opened.len() {
            let more = open(&client, &herald, &sinks, instances)
                .await?
                .into_iter()
                .skip(opened.len());
            opened.extend(more);
        }
        let ids = &opened[..instances as usize];
        let concurrency = instances.min(context.sizes.baseline_concurrency as u64);
        let (baseline_row, base) = baseline::at(context, concurrency, false).await?;
        rows.push(baseline_row);
        let phase = index as u64 + 1;
        let target = instances * per_instance;
        sinks.begin_phase(phase, instances, per_instance);
        let started = Instant::now();
        let (queued_in, latencies) = queue(&client, &herald, ids, phase, per_instance).await?;
        if let Err(stalled) = wait_for("delivered", target, STALL, LIMIT, || sinks.distinct()).await
        {
            herald.check_alive()?;
            bail!(
                "{stalled}; instances short of callbacks: {:?}; herald's log ends:\n{}",
                sinks.incomplete(5),
                herald.log_tail()
            );
        }
        let elapsed = sinks
            .last_received()
            .map_or(started.elapsed(), |at| at.duration_since(started));
        let delivered = rate(target, elapsed);
        let share = if base > 0.0 {
            format!(
                " = {}% of (1) at {concurrency} in flight",
                percent(delivered / base)
            )
        } else {
            String::new()
        };
        let tally = sinks.tally();
        let row = Row::new(
            "9 callbacks",
            format!(
                "{} instance(s) × {} callbacks, queued by {CLIENTS} clients (SQLite)",
                thousands(instances),
                thousands(per_instance)
            ),
            format!(
                "{}{share}; queued at {} (202 durable){}",
                per_second(delivered, "callbacks delivered"),
                per_second(rate(target, queued_in), "callbacks"),
                if tally.duplicates > 0 {
                    format!(", {} duplicates", thousands(tally.duplicates))
                } else {
                    String::new()
                }
            ),
        )
        .latency(Latency::cell(Latency::of(latencies)))
        .target("–".to_owned());
        eprintln!("   {}", row.result);
        rows.push(row);
    }
    herald.check_alive()?;
    Ok(rows)
}
