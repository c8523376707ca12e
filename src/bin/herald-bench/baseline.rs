//! Scenario 1, the raw baseline: herald's own delivery client (same connection pool, timeouts,
//! endpoint policy and response check) posting notifications like herald's straight to the
//! sinks, with as many requests in flight as herald has in each fan-out run: one per
//! subscriber (each subscription has one notification in flight), at most
//! `delivery.max_concurrency` (256). On two cores the ceiling depends on that number: more
//! connections in flight cost more per request, so each fan-out run is compared with the
//! baseline at its own concurrency, run before each of its slices and after the last (the
//! machine's speed drifts within seconds; see [`crate::fanout`]).
//!
//! The client runs in a child process (`herald-bench post-client`), as herald does: the sinks
//! then share the machine with one other process in the baseline exactly as in the fan-out,
//! and the operating system divides the two cores the same way in both.

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use herald::delivery::client::{Attempt, ClientSettings, DeliveryClient, Outgoing};
use herald::delivery::policy::EndpointPolicy;

use crate::load::{Latency, event, notification, notification_content_type, wait_for};
use crate::machine::Meters;
use crate::process::spawn_until_ready;
use crate::report::{Row, per_second, rate, thousands};
use crate::sink::{Sinks, now_nanos, sink_url};
use crate::{Context, PostClient};

/// How long the baseline may make no progress before it counts as broken.
const STALL: Duration = Duration::from_secs(60);

/// Scenario 1 on its own: the baseline at every concurrency the fan-out runs have, and at the
/// maximum. (The fan-out runs its own baselines between its slices.)
pub async fn baseline(context: &Context) -> anyhow::Result<Vec<Row>> {
    let max = context.sizes.baseline_concurrency as u64;
    let mut levels: Vec<u64> = context
        .sizes
        .fanout_subscribers
        .iter()
        .map(|&n| n.min(max))
        .chain([max])
        .collect();
    levels.sort_unstable();
    levels.dedup();
    let mut rows = Vec::new();
    for concurrency in levels {
        rows.push(at(context, concurrency, false).await?.0);
    }
    Ok(rows)
}

/// The baseline with `concurrency` requests in flight, posting as many notifications as a
/// fan-out run of that many subscribers would deliver unsliced (at most `--baseline-requests`),
/// for the scenarios that set their rate beside it (1, the paced run, 9–12); its row and
/// deliveries per second. With `postgres`, the row shows the PostgreSQL server's CPU over the
/// run too: work it does in the background at the time (a checkpoint, say) shows there.
pub async fn at(context: &Context, concurrency: u64, postgres: bool) -> anyhow::Result<(Row, f64)> {
    let sizes = &context.sizes;
    let requests = if concurrency >= sizes.baseline_concurrency as u64 {
        sizes.baseline_requests
    } else {
        sizes
            .baseline_requests
            .min(concurrency * sizes.fanout_events(concurrency))
    };
    let posted = posting(context, concurrency, requests, postgres).await?;
    Ok((posted.row, posted.rate))
}

/// One run of the baseline: its row, its rate and what its client spent.
pub struct Posted {
    /// The run's row, as scenario 1 prints it.
    pub row: Row,
    /// Notifications posted: at least one per worker, as many as each other worker.
    pub count: u64,
    /// Notifications per second.
    pub rate: f64,
    /// The client's CPU per notification, in microseconds, where `/proc` could be read.
    pub client_micros: Option<f64>,
}

/// The baseline with `concurrency` requests in flight, posting `requests` notifications (at
/// least one per worker).
pub async fn posting(
    context: &Context,
    concurrency: u64,
    requests: u64,
    postgres: bool,
) -> anyhow::Result<Posted> {
    let dir = context.scratch("baseline")?;
    let sinks = Sinks::start(context.sizes.sinks).await?;
    let per_worker = requests.div_ceil(concurrency).max(1);
    let total = per_worker * concurrency;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("post-client")
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .arg("--per-worker")
        .arg(per_worker.to_string())
        .args(sinks.bases().iter().flat_map(|b| ["--sink", b.as_str()]))
        .stdin(Stdio::piped());
    let (mut child, _, _) = spawn_until_ready(command, "warm", &dir.path().join("client.log"))?
        .wait(Duration::from_secs(60))
        .await
        .context("the baseline client")?;
    // The warm-up round is counted apart (as stray); the timed phase starts clean.
    sinks.begin_phase(1, concurrency, per_worker);
    let mut go = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("the client's stdin is not piped"))?;
    let meters = Meters::start(child.id(), postgres)?;
    let started = Instant::now();
    go.write_all(b"go\n").context("starting the client")?;
    go.flush()?;
    let waited = wait_for("posted", total, STALL, Duration::from_secs(3600), || {
        sinks.distinct()
    })
    .await;
    // Read before the client is reaped: until then its times are still in /proc.
    let reading = meters.read(total);
    let machine = reading.as_ref().map(|r| r.describe("; the client "));
    let status = loop {
        match child.try_wait()? {
            Some(status) => break status,
            None if started.elapsed() > Duration::from_secs(3600) => {
                let _ = child.kill();
                bail!("the baseline client did not exit");
            }
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    if let Err(stalled) = waited {
        bail!("the baseline {stalled}");
    }
    anyhow::ensure!(status.success(), "the baseline client failed: {status}");
    let elapsed = sinks
        .last_received()
        .map_or(started.elapsed(), |at| at.duration_since(started));
    let tally = sinks.tally();
    anyhow::ensure!(
        tally.distinct == total && tally.stray == 0,
        "the sinks counted {} of {total} notifications ({} stray)",
        tally.distinct,
        tally.stray
    );
    let deliveries = rate(total, elapsed);
    let row = Row::new(
        "1 raw baseline",
        format!(
            "{} notifications, herald's delivery client → sinks, {concurrency} in flight{}",
            thousands(total),
            machine.unwrap_or_default()
        ),
        per_second(deliveries, "deliveries"),
    )
    .latency(Latency::cell(Latency::of(sinks.take_latencies())));
    eprintln!("   {concurrency} in flight: {}", row.result);
    Ok(Posted {
        row,
        count: total,
        rate: deliveries,
        client_micros: reading.ok().map(|r| r.process),
    })
}

/// `herald-bench post-client`: one untimed round (phase 0) to open every connection, then
/// `warm` on stdout; on a line on stdin, each of `concurrency` workers posts events
/// `0..per_worker` of phase 1 to its subscriber's sink, one at a time.
pub fn run_post_client(args: &PostClient) -> anyhow::Result<()> {
    anyhow::ensure!(!args.sink.is_empty(), "no --sink given");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        crate::load::install_crypto();
        let policy = Arc::new(EndpointPolicy::new(vec![
            "127.0.0.0/8"
                .parse()
                .map_err(|e: String| anyhow::anyhow!(e))?,
        ]));
        let client = DeliveryClient::new(policy, ClientSettings::default())?;
        let bases = Arc::new(args.sink.clone());
        post(&client, &bases, args.concurrency, 0, 1).await?;
        println!("warm");
        std::io::stdout().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        post(&client, &bases, args.concurrency, 1, args.per_worker).await
    })
}

async fn post(
    client: &DeliveryClient,
    bases: &Arc<Vec<String>>,
    workers: u64,
    phase: u64,
    count: u64,
) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (client, bases) = (client.clone(), bases.clone());
            tokio::spawn(async move {
                let url = sink_url(&bases, worker);
                for n in 0..count {
                    let message = Outgoing {
                        url: url.clone(),
                        content_type: notification_content_type(),
                        soap_action: None,
                        body: notification(&url, &event(phase, n, now_nanos(), 0)),
                        headers: Vec::new(),
                        expect_reply: None,
                    };
                    if let Attempt::Failed { error, .. } = client.send(&message).await {
                        bail!("posting to {url}: {error}");
                    }
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}
