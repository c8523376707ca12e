//! Scenario 12: WS-Management Events mode beside Push mode and the raw baseline, in one run.
//!
//! One herald with two sources: `default` for N subscribers in Push mode, `events` for N in
//! Events mode (`wsman:MaxElements`, `wsman:MaxTime`), each a 2004/08 SOAP 1.2 Subscribe as a
//! WS-Management client sends one, to the same sinks. Events are published to one source at a
//! time, so only one kind of subscriber receives: first M events to the Push subscribers (one
//! request per subscriber and event), then M to the Events subscribers (one request per batch,
//! acknowledged by the sink with a `wsman:Ack`). Before them, the raw baseline at the
//! concurrency herald uses (one request per subscriber, at most `delivery.max_concurrency`).

use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::Context;
use crate::baseline;
use crate::delivery::{Setup, setup};
use crate::load::{self, Latency, wsman_subscribe_message};
use crate::process::cpu_time;
use crate::report::{Row, per_second, percent, rate, thousands};

/// WS-Management's Push mode: WS-Eventing 2004/08's, one event per one-way message.
const PUSH: &str = "http://schemas.xmlsoap.org/ws/2004/08/eventing/DeliveryModes/Push";
/// WS-Management's Events mode: batches, each acknowledged.
const EVENTS: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Events";
/// Events per publish request: with the default `--wsman-max-elements` (100) every batch is
/// full, so `MaxTime` does not come into play.
const PUBLISH_BATCH: u64 = 100;

/// The sources: the bench's default (as every scenario has it) and one for Events mode.
const CONFIG: &str = "[sources.default]\nmax_subscriptions = 100000000\nmax_event_bytes = 1048576\n\
                      [sources.events]\nmax_subscriptions = 100000000\nmax_event_bytes = 1048576\n";

/// One mode's subscribers.
struct Mode {
    /// "Push" or "Events".
    name: &'static str,
    source: &'static str,
    uri: &'static str,
    /// Children of `wse:Delivery` besides NotifyTo.
    delivery_extra: String,
}

/// What one mode's run measured.
struct Measured {
    elapsed: Duration,
    /// From the first publish request to herald's 202 to the last.
    published_in: Duration,
    requests: u64,
    duplicates: u64,
    stray: u64,
    latency: Option<Latency>,
    /// CPU time herald and this process (sinks, publisher) used during the run.
    herald_cpu: Duration,
    bench_cpu: Duration,
}

/// Scenario 12 (on PostgreSQL with `database`).
pub async fn wsman(context: &Context, database: Option<&str>) -> anyhow::Result<Vec<Row>> {
    let sizes = &context.sizes;
    let (subscribers, events) = (sizes.wsman_subscribers, sizes.wsman_events);
    let store = if database.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let mut setup = setup(context, "wsman", Some(CONFIG.to_owned()), database).await?;
    let max_time_ms = sizes.wsman_max_time_ms;
    let modes = [
        Mode {
            name: "Push",
            source: "default",
            uri: PUSH,
            delivery_extra: String::new(),
        },
        Mode {
            name: "Events",
            source: "events",
            uri: EVENTS,
            delivery_extra: format!(
                "<w:MaxElements>{}</w:MaxElements><w:MaxTime>PT{}.{:03}S</w:MaxTime>",
                sizes.wsman_max_elements,
                max_time_ms / 1000,
                max_time_ms % 1000
            ),
        },
    ];
    for mode in &modes {
        subscribe(&setup, context, mode, subscribers).await?;
    }
    let concurrency = subscribers.min(sizes.baseline_concurrency as u64);
    let (baseline_row, base) = baseline::at(context, concurrency, false).await?;
    let mut rows = vec![baseline_row];
    for (index, mode) in modes.iter().enumerate() {
        eprintln!("-- {} mode: N = {}", mode.name, thousands(subscribers));
        let phase = index as u64 + 1;
        let measured = run(&mut setup, mode, phase, subscribers, events).await?;
        let size = if mode.uri == EVENTS {
            format!(
                "{store}, N = {} × M = {} events = {} deliveries; Events, MaxElements {}, MaxTime {} ms",
                thousands(subscribers),
                thousands(events),
                thousands(subscribers * events),
                sizes.wsman_max_elements,
                max_time_ms
            )
        } else {
            format!(
                "{store}, N = {} × M = {} events = {} deliveries; Push, one event per request",
                thousands(subscribers),
                thousands(events),
                thousands(subscribers * events)
            )
        };
        let row = row(
            mode,
            size,
            subscribers * events,
            &measured,
            base,
            concurrency,
        );
        eprintln!("   {} ({})", row.result, row.latency);
        rows.push(row);
    }
    setup.herald.check_alive()?;
    Ok(rows)
}

/// Subscribes subscribers `0..count` to their sinks in `mode`.
async fn subscribe(
    setup: &Setup,
    context: &Context,
    mode: &Mode,
    count: u64,
) -> anyhow::Result<()> {
    let urls: Vec<String> = (0..count).map(|i| setup.sinks.url(i)).collect();
    let (uri, extra) = (mode.uri, mode.delivery_extra.clone());
    let done = load::requests(
        &setup.client,
        &setup.herald.url(&format!("/eventing/{}", mode.source)),
        0..count,
        context.sizes.subscribe_concurrency,
        "SubscribeResponse",
        "subscribed",
        move |i| wsman_subscribe_message(&urls[i as usize], uri, &extra),
    )
    .await
    .with_context(|| format!("subscribing in {} mode", mode.name))?;
    eprintln!(
        "   {} {} subscriptions in {:.1} s",
        thousands(done.count),
        mode.name,
        done.elapsed.as_secs_f64()
    );
    Ok(())
}

/// Publishes M events to `mode`'s source and waits until every subscriber has every one.
async fn run(
    setup: &mut Setup,
    mode: &Mode,
    phase: u64,
    subscribers: u64,
    events: u64,
) -> anyhow::Result<Measured> {
    let herald_pid = setup.herald.pid().to_string();
    setup.sinks.begin_phase(phase, subscribers, events);
    let cpu_before = (cpu_time(&herald_pid)?, cpu_time("self")?);
    let started = Instant::now();
    setup
        .publish_to(mode.source, phase, events, PUBLISH_BATCH, |_| 0)
        .await?;
    let published_in = started.elapsed();
    setup.delivered("delivered", subscribers * events).await?;
    let cpu_after = (cpu_time(&herald_pid)?, cpu_time("self")?);
    let elapsed = setup
        .sinks
        .last_received()
        .map_or(started.elapsed(), |at| at.duration_since(started));
    let tally = setup.sinks.tally();
    Ok(Measured {
        elapsed,
        published_in,
        requests: tally.requests,
        duplicates: tally.duplicates,
        stray: tally.stray,
        latency: Latency::of(setup.sinks.take_latencies()),
        herald_cpu: cpu_after.0.saturating_sub(cpu_before.0),
        bench_cpu: cpu_after.1.saturating_sub(cpu_before.1),
    })
}

/// "87%": a rate as a share of the baseline's, rounded down.
fn share(value: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{}%", percent(value / base))
    } else {
        "–".to_owned()
    }
}

fn row(
    mode: &Mode,
    size: String,
    deliveries: u64,
    measured: &Measured,
    base: f64,
    concurrency: u64,
) -> Row {
    let events_per_second = rate(deliveries, measured.elapsed);
    let requests_per_second = rate(measured.requests, measured.elapsed);
    let unit = if mode.uri == EVENTS {
        "batches"
    } else {
        "requests"
    };
    let per_request = deliveries as f64 / measured.requests.max(1) as f64;
    let result = format!(
        "{} = {} of (1) at {concurrency} in flight; {} = {} of (1)'s requests ({per_request:.1} events each); \
         0 lost, {} duplicates; published in {:.2} s, delivered in {:.2} s; CPU herald {:.1} s, sinks and publisher {:.1} s",
        per_second(events_per_second, "events delivered"),
        share(events_per_second, base),
        per_second(requests_per_second, unit),
        share(requests_per_second, base),
        thousands(measured.duplicates),
        measured.published_in.as_secs_f64(),
        measured.elapsed.as_secs_f64(),
        measured.herald_cpu.as_secs_f64(),
        measured.bench_cpu.as_secs_f64(),
    );
    let mut row = Row::new(&format!("12 WS-Man {}", mode.name), size, result)
        .latency(Latency::cell(measured.latency));
    if measured.stray > 0 {
        row = row.broken();
        row.result
            .push_str(&format!("; {} unexpected messages", measured.stray));
    }
    row
}
