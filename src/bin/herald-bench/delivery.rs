//! The delivery scenarios through herald: 2's paced run, 4 (filtered fan-out) and 6 (backlog);
//! the herald they run against, shared with 2's fan-out ([`crate::fanout`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::sync::Semaphore;

use crate::Context;
use crate::baseline;
use crate::load::{
    self, Latency, Progress, event, publish_batch, publish_batch_to, publish_one,
    subscribe_message, wait_for,
};
use crate::process::{FreshDatabase, Herald, Launch, ScratchDir};
use crate::report::{Row, per_second, rate, thousands, verdict};
use crate::sink::{Sinks, now_nanos};

/// How long delivery may make no progress before the run counts as broken.
const STALL: Duration = Duration::from_secs(60);
/// The longest any single wait may last.
const LIMIT: Duration = Duration::from_secs(3600);
/// The target for the paced run's p99.
const PACED_P99_TARGET: Duration = Duration::from_millis(10);
/// The share of the raw ceiling (percent) at which the paced p99 target applies.
const PACED_TARGET_SHARE: u64 = 50;

/// A herald for a delivery scenario, with its scratch directory and database.
pub struct Setup {
    pub herald: Herald,
    pub client: reqwest::Client,
    pub sinks: Sinks,
    // Dropped after herald (declaration order): the directory and database outlive it.
    _database: Option<FreshDatabase>,
    _dir: ScratchDir,
}

pub async fn setup(
    context: &Context,
    label: &str,
    config: Option<String>,
    database: Option<&str>,
) -> anyhow::Result<Setup> {
    let dir = context.scratch(label)?;
    let database = database.map(FreshDatabase::create).transpose()?;
    let launch = Launch {
        config,
        database: database.as_ref().map(|d| d.url.clone()),
        ready_timeout: None,
        node_id: None,
    };
    let herald = Herald::start(&context.herald, dir.path(), &launch).await?;
    Ok(Setup {
        herald,
        client: load::client()?,
        sinks: Sinks::start(context.sizes.sinks).await?,
        _database: database,
        _dir: dir,
    })
}

impl Setup {
    /// Subscribes subscribers `range` to their sinks, each with the filter `filter(i)`.
    pub async fn subscribe(
        &self,
        context: &Context,
        range: std::ops::Range<u64>,
        filter: Option<fn(u64) -> String>,
    ) -> anyhow::Result<()> {
        let urls: Vec<String> = range.clone().map(|i| self.sinks.url(i)).collect();
        let first = range.start;
        let done = load::requests(
            &self.client,
            &self.herald.url("/eventing/default"),
            range,
            context.sizes.subscribe_concurrency,
            "SubscribeResponse",
            "subscribed",
            move |i| {
                let xpath = filter.map(|f| f(i));
                subscribe_message(&urls[(i - first) as usize], xpath.as_deref())
            },
        )
        .await
        .context("subscribing")?;
        eprintln!(
            "   {} subscriptions in {:.1} s ({})",
            thousands(done.count),
            done.elapsed.as_secs_f64(),
            per_second(rate(done.count, done.elapsed), "subscribes")
        );
        Ok(())
    }

    /// Publishes events `0..count` of `phase` to the default source in batches, with
    /// `k = key(n)`.
    pub async fn publish(
        &self,
        phase: u64,
        count: u64,
        batch: u64,
        key: impl Fn(u64) -> u64,
    ) -> anyhow::Result<()> {
        self.publish_to("default", phase, count, batch, key).await
    }

    /// Publishes events `0..count` of `phase` to `source` in batches, with `k = key(n)`.
    pub async fn publish_to(
        &self,
        source: &str,
        phase: u64,
        count: u64,
        batch: u64,
        key: impl Fn(u64) -> u64,
    ) -> anyhow::Result<()> {
        let mut n = 0;
        while n < count {
            let end = (n + batch).min(count);
            let t = now_nanos();
            let events: Vec<String> = (n..end).map(|i| event(phase, i, t, key(i))).collect();
            publish_batch_to(&self.client, &self.herald.base, source, &events).await?;
            n = end;
        }
        Ok(())
    }

    /// Waits for `target` distinct deliveries; on a stall, says what is missing.
    pub async fn delivered(&mut self, label: &str, target: u64) -> anyhow::Result<()> {
        let sinks = &self.sinks;
        if let Err(stalled) = wait_for(label, target, STALL, LIMIT, || sinks.distinct()).await {
            self.herald.check_alive()?;
            let missing = self.sinks.incomplete(5);
            bail!(
                "{stalled}; subscribers short of events (subscriber, received): {missing:?}; herald's log ends:\n{}",
                self.herald.log_tail()
            );
        }
        Ok(())
    }
}

/// ` (12 duplicates)`, or nothing when there were none.
pub fn duplicates(count: u64) -> String {
    if count == 0 {
        String::new()
    } else {
        format!(" ({} duplicates)", thousands(count))
    }
}

/// Scenario 2, paced: single-event publishes at a fixed rate to a set of subscribers, and the
/// publish-to-delivery latency (from the moment the publish request is built to the sink
/// receiving the notification, durability included). The rates are shares of the raw ceiling:
/// the raw baseline at the subscribers' concurrency, measured just before the paced runs.
pub async fn paced(context: &Context) -> anyhow::Result<Vec<Row>> {
    let sizes = &context.sizes;
    let mut setup = setup(context, "paced", None, None).await?;
    let subscribers = sizes.paced_subscribers;
    setup.subscribe(context, 0..subscribers, None).await?;
    let concurrency = subscribers.min(sizes.baseline_concurrency as u64);
    let (baseline_row, ceiling) = baseline::at(context, concurrency, false).await?;
    let mut rows = vec![baseline_row];
    for (index, &share) in sizes.paced_shares.iter().enumerate() {
        let events_per_second = ((ceiling * share as f64 / 100.0) / subscribers as f64)
            .round()
            .max(1.0) as u64;
        eprintln!(
            "-- {share}% of the raw ceiling: {} events/s",
            thousands(events_per_second)
        );
        let phase = index as u64 + 1;
        let pace = Pace {
            share,
            ceiling,
            events_per_second,
        };
        rows.push(paced_run(&mut setup, sizes, phase, pace).await?);
    }
    Ok(rows)
}

/// One paced run's rate: `share` percent of the raw `ceiling` (notifications per second).
struct Pace {
    share: u64,
    ceiling: f64,
    events_per_second: u64,
}

async fn paced_run(
    setup: &mut Setup,
    sizes: &crate::Sizes,
    phase: u64,
    pace: Pace,
) -> anyhow::Result<Row> {
    let events_per_second = pace.events_per_second;
    let subscribers = sizes.paced_subscribers;
    let events = ((events_per_second as f64) * sizes.paced_seconds)
        .round()
        .max(1.0) as u64;
    let target = events * subscribers;
    setup.sinks.begin_phase(phase, subscribers, events);
    let interval = Duration::from_secs_f64(1.0 / events_per_second as f64);
    // Publishes overlap (each waits for its commit); bounded so a stuck herald cannot pile up.
    let in_flight = Arc::new(Semaphore::new(256));
    let started = Instant::now();
    let progress = Progress::start("published", events);
    let mut publishes = Vec::with_capacity(events as usize);
    for n in 0..events {
        let due = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let permit = in_flight.clone().acquire_owned().await?;
        let (client, base) = (setup.client.clone(), setup.herald.base.clone());
        publishes.push(tokio::spawn(async move {
            let result = publish_one(&client, &base, event(phase, n, now_nanos(), 0)).await;
            drop(permit);
            result
        }));
        progress.set(n + 1);
    }
    let published_in = started.elapsed();
    drop(progress);
    for publish in publishes {
        publish.await??;
    }
    setup.delivered("delivered", target).await?;
    let elapsed = setup
        .sinks
        .last_received()
        .map_or(started.elapsed(), |at| at.duration_since(started));
    let tally = setup.sinks.tally();
    let latency = Latency::of(setup.sinks.take_latencies());
    let target_cell = if pace.share == PACED_TARGET_SHARE {
        let met = latency.is_some_and(|l| l.p99 <= PACED_P99_TARGET);
        format!(
            "p99 ≤ {} ms: {}",
            PACED_P99_TARGET.as_millis(),
            verdict(met)
        )
    } else {
        format!("– (the target is at {PACED_TARGET_SHARE}% of the ceiling)")
    };
    let mut row = Row::new(
        "2 paced fan-out",
        format!(
            "{}% of the raw ceiling ({}): {} events/s × {} subscribers for {:.0} s = {} deliveries",
            pace.share,
            per_second(pace.ceiling, "notifications"),
            thousands(events_per_second),
            thousands(subscribers),
            sizes.paced_seconds,
            thousands(target)
        ),
        format!(
            "published {}, delivered {}{}",
            per_second(rate(events, published_in), "events"),
            per_second(rate(target, elapsed), "notifications"),
            duplicates(tally.duplicates)
        ),
    )
    .latency(Latency::cell(latency))
    .target(target_cell);
    if tally.stray > 0 {
        row = row.broken();
    }
    eprintln!("   {} ({})", row.result, row.latency);
    Ok(row)
}

/// Scenario 4: subscribers with 2011 XPath filters `/b:tick[@k = i mod 10]`; event `n` has
/// `k = n mod 10`, so each event matches 10% of them. The sinks check that each subscriber
/// receives only its own key.
pub async fn filtered(context: &Context) -> anyhow::Result<Vec<Row>> {
    let sizes = &context.sizes;
    let mut setup = setup(context, "filtered", None, None).await?;
    let subscribers = sizes.filtered_subscribers;
    setup
        .subscribe(
            context,
            0..subscribers,
            Some(|i| format!("/b:tick[@k = {}]", i % 10)),
        )
        .await?;
    let events = sizes.filtered_events;
    let target: u64 = (0..events)
        .map(|n| (0..subscribers).filter(|i| i % 10 == n % 10).count() as u64)
        .sum();
    setup.sinks.begin_phase(1, subscribers, events);
    setup.sinks.expect_key_modulus(10);
    let started = Instant::now();
    setup.publish(1, events, 100, |n| n % 10).await?;
    setup.delivered("delivered", target).await?;
    let elapsed = setup
        .sinks
        .last_received()
        .map_or(started.elapsed(), |at| at.duration_since(started));
    let tally = setup.sinks.tally();
    let mut row = Row::new(
        "4 filtered fan-out",
        format!(
            "{} subscribers with XPath filters, 10% match; {} events = {} deliveries",
            thousands(subscribers),
            thousands(events),
            thousands(target)
        ),
        format!(
            "{} ({}, {}){}",
            per_second(rate(events, elapsed), "events"),
            per_second(rate(target, elapsed), "deliveries"),
            per_second(rate(events * subscribers, elapsed), "filter evaluations"),
            duplicates(tally.duplicates)
        ),
    )
    .latency(Latency::cell(Latency::of(setup.sinks.take_latencies())));
    if tally.stray > 0 {
        row = row.broken();
        row.result.push_str(&format!(
            "; {} notifications that the filter should have stopped",
            tally.stray
        ));
    }
    eprintln!("   {}", row.result);
    Ok(vec![row])
}

/// Scenario 6: the only subscriber's sink answers 503 while the events are published, then
/// recovers; herald retries with a short back-off (written into a config file, as an operator
/// would) and must deliver every event, in order.
pub async fn backlog(context: &Context) -> anyhow::Result<Vec<Row>> {
    let events = context.sizes.backlog_events;
    let config = "[sources.default]\nretry_initial = \"PT0.1S\"\nretry_max = \"PT0.5S\"\n";
    let mut setup = setup(context, "backlog", Some(config.to_owned()), None).await?;
    setup.subscribe(context, 0..1, None).await?;
    setup.sinks.begin_phase(1, 1, events);
    setup.sinks.set_up(false);
    let queued = Instant::now();
    {
        let progress = Progress::start("queued", events);
        let mut n = 0;
        while n < events {
            let end = (n + 1000).min(events);
            let t = now_nanos();
            let batch: Vec<String> = (n..end).map(|i| event(1, i, t, 0)).collect();
            publish_batch(&setup.client, &setup.herald.base, &batch).await?;
            n = end;
            progress.set(n);
        }
    }
    // Down for real: herald has tried and been refused.
    let sinks = &setup.sinks;
    wait_for("refused", 1, Duration::from_secs(30), LIMIT, || {
        sinks.refused()
    })
    .await
    .map_err(|stalled| anyhow::anyhow!("herald never tried the sink: {stalled}"))?;
    let queued_in = queued.elapsed();
    setup.sinks.set_up(true);
    let up = Instant::now();
    let result = {
        let sinks = &setup.sinks;
        wait_for("drained", events, STALL, LIMIT, || sinks.distinct()).await
    };
    let tally = setup.sinks.tally();
    let lost = events.saturating_sub(tally.distinct);
    let drain = setup
        .sinks
        .last_received()
        .map_or(up.elapsed(), |at| at.duration_since(up));
    let mut row = Row::new(
        "6 backlog",
        format!(
            "{} events queued in {:.1} s while the sink answered 503, then up",
            thousands(events),
            queued_in.as_secs_f64()
        ),
        format!(
            "drained in {:.1} s ({}); {} lost, {} duplicates; {} attempts refused while down",
            drain.as_secs_f64(),
            per_second(rate(tally.distinct, drain), "events"),
            thousands(lost),
            thousands(tally.duplicates),
            thousands(tally.refused)
        ),
    )
    .target(format!("0 lost: {}", verdict(lost == 0)));
    if let Err(stalled) = result {
        setup.herald.check_alive()?;
        row.result.push_str(&format!(" ({stalled})"));
        row = row.broken();
    }
    if lost > 0 || tally.stray > 0 {
        row = row.broken();
    }
    eprintln!("   {}", row.result);
    Ok(vec![row])
}
