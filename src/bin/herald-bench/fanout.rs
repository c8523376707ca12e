//! Scenario 2 (and 7 with a database): fan-out through herald, in slices alternated with the
//! raw baseline.
//!
//! The machine's speed drifts by up to half within seconds (the same client doing the same
//! work has spent 18 to 32 µs of CPU per notification a minute apart), so one long run set
//! beside one baseline measures the drift as much as herald. Each run is cut into slices
//! instead: the baseline runs before the first and after each (B H B H … H B), each slice is
//! set beside the mean of the two baselines around it, and the target is judged on the median
//! slice. The ratio of all of herald's slices to all the baselines is printed too. Before each
//! baseline herald is left to finish what a slice left behind ([`settle`]).

use std::time::Instant;

use crate::Context;
use crate::baseline::{self, Posted};
use crate::delivery::{Setup, duplicates, setup};
use crate::load::Latency;
use crate::machine::{Meters, Reading, settle};
use crate::report::{Row, per_second, percent, rate, thousands, verdict};
use crate::sink::Tally;

/// The target for fan-out: this share of the raw baseline.
const TARGET: f64 = 0.80;

/// One slice of a fan-out run through herald.
struct Slice {
    /// Deliveries per second.
    rate: f64,
    reading: Reading,
    tally: Tally,
    latencies: Vec<u64>,
}

/// Subscribers are added between runs (1, then 99 more, ...) on one herald; each slice counts
/// only its own events, and herald idles while the baseline runs.
pub async fn fanout(context: &Context, database: Option<&str>) -> anyhow::Result<Vec<Row>> {
    let scenario = if database.is_some() {
        "7 PostgreSQL fan-out"
    } else {
        "2 fan-out"
    };
    let postgres = database.is_some();
    let mut setup = setup(context, "fanout", None, database).await?;
    let mut counts = context.sizes.fanout_subscribers.clone();
    counts.sort_unstable();
    counts.dedup();
    let slices = context.sizes.fanout_slices.max(1);
    let mut rows = Vec::new();
    let mut subscribed = 0;
    for (index, &subscribers) in counts.iter().enumerate() {
        eprintln!("-- {scenario}: N = {}", thousands(subscribers));
        if subscribers > subscribed {
            setup
                .subscribe(context, subscribed..subscribers, None)
                .await?;
            subscribed = subscribers;
        }
        let concurrency = subscribers.min(context.sizes.baseline_concurrency as u64);
        let events = context.sizes.fanout_slice_events(subscribers);
        let deliveries = subscribers * events;
        // The subscribes just made leave work behind too (their pages written back).
        setup.settle(postgres).await?;
        let mut baselines =
            vec![baseline::posting(context, concurrency, deliveries, postgres).await?];
        let mut measured = Vec::new();
        for slice in 0..slices {
            let phase = index as u64 * slices + slice + 1;
            measured.push(setup.slice(phase, subscribers, events, postgres).await?);
            baselines.push(baseline::posting(context, concurrency, deliveries, postgres).await?);
        }
        setup.herald.check_alive()?;
        let run = FanoutRun {
            scenario,
            subscribers,
            events,
            concurrency,
        };
        rows.push(run.baseline_row(&baselines));
        rows.push(run.herald_row(&measured, &baselines));
    }
    Ok(rows)
}

impl Setup {
    /// One slice: `events` events of `phase` published to `subscribers` subscribers, timed
    /// from the first publish to the last delivery. herald is then left to go quiet: its CPU
    /// counts what the slice left behind (cursors saved after the last delivery), and the
    /// slice's tally what arrived meanwhile (a duplicate, a stray).
    async fn slice(
        &mut self,
        phase: u64,
        subscribers: u64,
        events: u64,
        postgres: bool,
    ) -> anyhow::Result<Slice> {
        let target = subscribers * events;
        self.sinks.begin_phase(phase, subscribers, events);
        let meters = Meters::start(self.herald.pid(), postgres)?;
        let started = Instant::now();
        self.publish(phase, events, 100, |_| 0).await?;
        self.delivered("delivered", target).await?;
        let delivered = meters.read(target)?;
        let elapsed = self
            .sinks
            .last_received()
            .map_or(started.elapsed(), |at| at.duration_since(started));
        self.settle(postgres).await?;
        let reading = delivered.with_cpu_of(meters.read(target)?);
        let slice = Slice {
            rate: rate(target, elapsed),
            reading,
            tally: self.sinks.tally(),
            latencies: self.sinks.take_latencies(),
        };
        eprintln!(
            "   slice of {}: {}; {}",
            thousands(target),
            per_second(slice.rate, "deliveries"),
            reading.describe("herald ")
        );
        Ok(slice)
    }

    /// Waits for herald (and the PostgreSQL server) to go quiet, and says how long it took.
    async fn settle(&mut self, postgres: bool) -> anyhow::Result<()> {
        match settle(self.herald.pid(), postgres).await {
            Ok((waited, true)) => eprintln!("   herald quiet after {} ms", waited.as_millis()),
            Ok((waited, false)) => eprintln!(
                "   herald not quiet after {} ms; going on",
                waited.as_millis()
            ),
            Err(err) => {
                self.herald.check_alive()?;
                return Err(err);
            }
        }
        Ok(())
    }
}

/// One fan-out run: its size, and the baseline's concurrency.
struct FanoutRun<'a> {
    scenario: &'a str,
    subscribers: u64,
    events: u64,
    concurrency: u64,
}

impl FanoutRun<'_> {
    /// The baselines of the run as one row: each one's rate and its client's CPU.
    fn baseline_row(&self, baselines: &[Posted]) -> Row {
        let client: Vec<String> = baselines
            .iter()
            .map(|b| b.client_micros.map_or("–".into(), |m| format!("{m:.0}")))
            .collect();
        let rates: Vec<f64> = baselines.iter().map(|b| b.rate).collect();
        Row::new(
            "1 raw baseline",
            format!(
                "{} runs of {} notifications, {} in flight, before the first slice of {} and after each; the client {} µs CPU each",
                baselines.len(),
                thousands(baselines.first().map_or(0, |b| b.count)),
                self.concurrency,
                self.scenario,
                client.join(" / ")
            ),
            format!(
                "{} deliveries/s; over all {}",
                joined(&rates, |r| thousands(r.round() as u64)),
                per_second(overall(&rates), "deliveries")
            ),
        )
    }

    /// herald's slices as one row: each one's share of the baselines around it, the median
    /// share judged against the target.
    fn herald_row(&self, slices: &[Slice], baselines: &[Posted]) -> Row {
        let shares: Vec<f64> = slices
            .iter()
            .zip(baselines.windows(2))
            .map(|(slice, around)| share(slice.rate, (around[0].rate + around[1].rate) / 2.0))
            .collect();
        let median = median(&shares);
        let rates: Vec<f64> = slices.iter().map(|s| s.rate).collect();
        let base: Vec<f64> = baselines.iter().map(|b| b.rate).collect();
        let overall_share = share(overall(&rates), overall(&base));
        let readings: Vec<&Reading> = slices.iter().map(|s| &s.reading).collect();
        let server = match readings
            .iter()
            .map(|r| r.server)
            .collect::<Option<Vec<f64>>>()
        {
            Some(server) => format!(
                "; the PostgreSQL server {} µs",
                joined(&server, |m| format!("{m:.0}"))
            ),
            None => String::new(),
        };
        let herald: Vec<f64> = readings.iter().map(|r| r.process).collect();
        let idle: Vec<f64> = readings.iter().map(|r| r.idle_percent()).collect();
        let (duplicates_seen, stray) = slices.iter().fold((0, 0), |(d, s), slice| {
            (d + slice.tally.duplicates, s + slice.tally.stray)
        });
        let latencies = slices.iter().flat_map(|s| s.latencies.iter().copied());
        let mut row = Row::new(
            self.scenario,
            format!(
                "N = {} × M = {} events in {} slices of {} = {} deliveries; slice by slice, herald {} µs CPU each{server}; cores {}% idle",
                thousands(self.subscribers),
                thousands(self.events * slices.len() as u64),
                slices.len(),
                thousands(self.events),
                thousands(self.subscribers * self.events * slices.len() as u64),
                joined(&herald, |m| format!("{m:.0}")),
                joined(&idle, |p| format!("{p:.0}")),
            ),
            format!(
                "{} deliveries/s; each slice {}% of the mean of the baselines around it (at {} in flight), median {}%; over all {}% of (1){}",
                joined(&rates, |r| thousands(r.round() as u64)),
                joined(&shares, |s| percent(*s)),
                self.concurrency,
                percent(median),
                percent(overall_share),
                duplicates(duplicates_seen)
            ),
        )
        .latency(Latency::cell(Latency::of(latencies.collect())))
        .target(format!(
            "≥ {:.0}% of (1), the median slice: {}",
            TARGET * 100.0,
            verdict(median >= TARGET)
        ));
        if stray > 0 {
            row = row.broken();
            row.result
                .push_str(&format!("; {} unexpected notifications", thousands(stray)));
        }
        eprintln!("   {}", row.result);
        row
    }
}

/// `achieved` as a share of `base` (0 where there is no base).
fn share(achieved: f64, base: f64) -> f64 {
    if base > 0.0 { achieved / base } else { 0.0 }
}

/// The rate over all runs of equal size: the harmonic mean of their rates.
fn overall(rates: &[f64]) -> f64 {
    if rates.is_empty() || rates.iter().any(|&r| r <= 0.0) {
        return 0.0;
    }
    rates.len() as f64 / rates.iter().map(|r| 1.0 / r).sum::<f64>()
}

/// The middle value (the mean of the middle two for an even count); 0 for none.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn joined(values: &[f64], show: impl Fn(&f64) -> String) -> String {
    values.iter().map(show).collect::<Vec<_>>().join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&[0.9, 0.7, 0.8]), 0.8);
        assert_eq!(median(&[0.5, 0.25, 1.0, 0.75]), 0.625);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn the_overall_rate_of_equal_runs_is_their_harmonic_mean() {
        // 100 notifications at 100/s (1 s) and 100 at 50/s (2 s): 200 in 3 s.
        assert!((overall(&[100.0, 50.0]) - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(overall(&[100.0, 0.0]), 0.0);
        assert_eq!(overall(&[]), 0.0);
    }

    #[test]
    fn a_share_of_nothing_is_nothing() {
        assert_eq!(share(80.0, 100.0), 0.8);
        assert_eq!(share(80.0, 0.0), 0.0);
    }
}
