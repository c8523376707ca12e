//! The sizes of a run: the full defaults or `--quick`'s, then each flag given.

use crate::Args;

/// The sizes of a run, from `--quick` or the full defaults, then the flags.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub sinks: usize,
    pub baseline_concurrency: usize,
    pub baseline_requests: u64,
    pub fanout_subscribers: Vec<u64>,
    pub fanout_deliveries: u64,
    pub fanout_min_events: u64,
    pub fanout_max_events: u64,
    /// Slices each fan-out run is cut into, each between two runs of the raw baseline.
    pub fanout_slices: u64,
    /// Shares of the raw ceiling (percent) the paced runs publish at, one run each.
    pub paced_shares: Vec<u64>,
    pub paced_subscribers: u64,
    pub paced_seconds: f64,
    pub subscribe_concurrency: usize,
    pub subscribe_seconds: f64,
    pub filtered_subscribers: u64,
    pub filtered_events: u64,
    pub footprint_subscriptions: Vec<u64>,
    pub backlog_events: u64,
    /// Scenario 8 at four sizes, five tries each (else two sizes, two tries).
    pub hostile_full: bool,
    /// Scenario 9's runs: (instances, callbacks to each).
    pub context_runs: Vec<(u64, u64)>,
    /// Scenario 10's raises.
    pub invocations: u64,
    /// Scenario 11: (channels, notifications to each).
    pub channel_run: (u64, u64),
    /// Scenario 12: subscribers per mode, events per mode, and the Events mode's
    /// MaxElements and MaxTime (ms).
    pub wsman_subscribers: u64,
    pub wsman_events: u64,
    pub wsman_max_elements: u64,
    pub wsman_max_time_ms: u64,
}

impl Sizes {
    pub fn from_args(args: &Args) -> Sizes {
        let defaults = if args.quick {
            Sizes {
                sinks: 4,
                baseline_concurrency: 256,
                baseline_requests: 10_000,
                fanout_subscribers: vec![1, 10, 100],
                fanout_deliveries: 2_000,
                fanout_min_events: 20,
                fanout_max_events: 200,
                fanout_slices: 2,
                paced_shares: vec![50],
                paced_subscribers: 20,
                paced_seconds: 1.0,
                subscribe_concurrency: 16,
                subscribe_seconds: 1.0,
                filtered_subscribers: 100,
                filtered_events: 50,
                footprint_subscriptions: vec![1_000, 2_000],
                backlog_events: 2_000,
                hostile_full: false,
                context_runs: vec![(1, 50), (20, 5)],
                invocations: 500,
                channel_run: (50, 5),
                wsman_subscribers: 50,
                wsman_events: 200,
                wsman_max_elements: 100,
                wsman_max_time_ms: 100,
            }
        } else {
            Sizes {
                sinks: 4,
                baseline_concurrency: 256,
                baseline_requests: 200_000,
                fanout_subscribers: vec![1, 100, 1_000, 10_000],
                fanout_deliveries: 200_000,
                fanout_min_events: 20,
                fanout_max_events: 10_000,
                fanout_slices: 5,
                paced_shares: vec![25, 50, 75],
                paced_subscribers: 100,
                paced_seconds: 10.0,
                subscribe_concurrency: 64,
                subscribe_seconds: 10.0,
                filtered_subscribers: 1_000,
                filtered_events: 1_000,
                footprint_subscriptions: vec![100_000, 1_000_000],
                backlog_events: 100_000,
                hostile_full: true,
                context_runs: vec![(1, 2_000), (1_000, 10)],
                invocations: 20_000,
                channel_run: (1_000, 20),
                wsman_subscribers: 1_000,
                wsman_events: 1_000,
                wsman_max_elements: 100,
                wsman_max_time_ms: 100,
            }
        };
        let mut footprint = args
            .footprint_subscriptions
            .clone()
            .unwrap_or(defaults.footprint_subscriptions);
        footprint.sort_unstable();
        footprint.dedup();
        footprint.retain(|&n| n > 0);
        Sizes {
            sinks: args.sinks.unwrap_or(defaults.sinks).max(1),
            baseline_concurrency: args
                .baseline_concurrency
                .unwrap_or(defaults.baseline_concurrency)
                .max(1),
            baseline_requests: args
                .baseline_requests
                .unwrap_or(defaults.baseline_requests)
                .max(1),
            fanout_subscribers: args
                .fanout_subscribers
                .clone()
                .unwrap_or(defaults.fanout_subscribers)
                .into_iter()
                .filter(|&n| n > 0)
                .collect(),
            fanout_deliveries: args
                .fanout_deliveries
                .unwrap_or(defaults.fanout_deliveries)
                .max(1),
            fanout_min_events: args
                .fanout_min_events
                .unwrap_or(defaults.fanout_min_events)
                .max(1),
            fanout_max_events: args
                .fanout_max_events
                .unwrap_or(defaults.fanout_max_events)
                .max(1),
            fanout_slices: args.fanout_slices.unwrap_or(defaults.fanout_slices).max(1),
            paced_shares: args
                .paced_shares
                .clone()
                .unwrap_or(defaults.paced_shares)
                .into_iter()
                .filter(|&n| n > 0)
                .collect(),
            paced_subscribers: args
                .paced_subscribers
                .unwrap_or(defaults.paced_subscribers)
                .max(1),
            paced_seconds: args
                .paced_seconds
                .unwrap_or(defaults.paced_seconds)
                .clamp(0.1, 3600.0),
            subscribe_concurrency: args
                .subscribe_concurrency
                .unwrap_or(defaults.subscribe_concurrency)
                .max(1),
            subscribe_seconds: args
                .subscribe_seconds
                .unwrap_or(defaults.subscribe_seconds)
                .clamp(0.1, 3600.0),
            filtered_subscribers: args
                .filtered_subscribers
                .unwrap_or(defaults.filtered_subscribers)
                .max(10),
            filtered_events: args
                .filtered_events
                .unwrap_or(defaults.filtered_events)
                .max(1),
            footprint_subscriptions: footprint,
            backlog_events: args
                .backlog_events
                .unwrap_or(defaults.backlog_events)
                .max(1),
            hostile_full: !args.quick,
            context_runs: defaults.context_runs,
            invocations: defaults.invocations,
            channel_run: defaults.channel_run,
            wsman_subscribers: args
                .wsman_subscribers
                .unwrap_or(defaults.wsman_subscribers)
                .max(1),
            wsman_events: args.wsman_events.unwrap_or(defaults.wsman_events).max(1),
            wsman_max_elements: args
                .wsman_max_elements
                .unwrap_or(defaults.wsman_max_elements)
                .clamp(1, 4096),
            wsman_max_time_ms: args
                .wsman_max_time_ms
                .unwrap_or(defaults.wsman_max_time_ms)
                .max(1),
        }
    }

    /// Events of a fan-out run with `subscribers` subscribers.
    pub fn fanout_events(&self, subscribers: u64) -> u64 {
        (self.fanout_deliveries / subscribers.max(1)).clamp(
            self.fanout_min_events,
            self.fanout_max_events.max(self.fanout_min_events),
        )
    }

    /// Events of each slice of a fan-out run with `subscribers` subscribers: the run's events
    /// shared among its slices, rounded up, but at least `--fanout-min-events`, as a whole run
    /// has, and enough for a twentieth of `--fanout-deliveries` (10,000 in the full run).
    /// (herald saves each subscriber's cursor at least once in a slice, coalescing its moves
    /// within an interval: with a few events each, a slice would weigh those saves more than a
    /// whole run does. With one subscriber, slices of 2,000 took a sixth of a second or less, and
    /// baselines that short swung from 9,761 to 25,432 notifications/s within one run.)
    pub fn fanout_slice_events(&self, subscribers: u64) -> u64 {
        let subscribers = subscribers.max(1);
        self.fanout_events(subscribers)
            .div_ceil(self.fanout_slices.max(1))
            .max(self.fanout_min_events)
            .max((self.fanout_deliveries / 20).div_ceil(subscribers))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn sizes(args: &[&str]) -> Sizes {
        Sizes::from_args(&Args::parse_from(
            std::iter::once("herald-bench").chain(args.iter().copied()),
        ))
    }

    #[test]
    fn a_slice_shares_the_run_but_keeps_its_floors() {
        let full = sizes(&[]);
        // One subscriber: 10,000 events a run, five slices, but a twentieth of the 200,000
        // deliveries at least.
        assert_eq!(full.fanout_slice_events(1), 10_000);
        assert_eq!(full.fanout_slice_events(100), 400);
        assert_eq!(full.fanout_slice_events(1_000), 40);
        // 20 events a run at 10,000 subscribers, and at least 20 a slice.
        assert_eq!(full.fanout_slice_events(10_000), 20);
        let quick = sizes(&["--quick"]);
        assert_eq!(quick.fanout_slice_events(1), 100);
        assert_eq!(quick.fanout_slice_events(100), 20);
    }

    #[test]
    fn a_minimum_above_the_maximum_does_not_panic() {
        let sizes = sizes(&["--fanout-min-events", "50", "--fanout-max-events", "10"]);
        assert_eq!(sizes.fanout_events(1_000_000), 50);
    }
}
