//! The subscription scenarios: 3 (durable Subscribe, then Renew and Unsubscribe, against a SOAP
//! echo server; see [`crate::manage`]) and 5
//! (resident memory per subscription, and time to ready after a restart).

use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::Context;
use crate::echo::{EchoOptions, EchoServer};
use crate::load::{self, Latency, subscribe_message};
use crate::machine::Meters;
use crate::manage::Measured;
use crate::process::{FreshDatabase, Herald, Launch};
use crate::report::{Row, mebibytes, per_second, percent, rate, thousands, verdict};

/// The target: resident bytes per idle subscription, running and after a restart.
const BYTES_PER_SUBSCRIPTION_TARGET: u64 = 1024;
/// The target: ready this soon after a restart with the largest store.
const RESTART_TARGET: Duration = Duration::from_secs(5);

/// NotifyTo of subscriptions that never receive anything (no events are published): the
/// discard port, a distinct path each, as distinct subscribers would have.
fn idle_notify_to(i: u64) -> String {
    format!("http://127.0.0.1:9/sink/{i}")
}

/// Scenario 3 (and 7 with a database): the same client, with the same concurrency, for the
/// same time, sends W3C 2011 SOAP 1.2 Subscribe requests first to the echo server (parse the
/// envelope, answer a fixed SubscribeResponse, no store), then to herald (durable), and then
/// again to the echo. The machine's speed drifts within minutes, so each of herald's rates is
/// set beside the mean of the two echo runs around it; scenario 7 has echo runs of its own.
pub async fn subscribe(context: &Context, database: Option<&str>) -> anyhow::Result<Vec<Row>> {
    let sizes = &context.sizes;
    let postgres = database.is_some();
    let dir = context.scratch("subscribe")?;
    let client = load::client()?;
    let concurrency = sizes.subscribe_concurrency;
    let length = Duration::from_secs_f64(sizes.subscribe_seconds);
    let size = format!(
        "{concurrency} clients for {:.0} s, W3C 2011 SOAP 1.2",
        sizes.subscribe_seconds
    );
    let echo = Echo {
        client: &client,
        dir: dir.path(),
        run: (concurrency, length),
        size: &size,
        postgres,
    };
    let (before_row, before) = echo.run().await?;

    let server = database;
    let database = database.map(FreshDatabase::create).transpose()?;
    let launch = Launch {
        database: database.as_ref().map(|d| d.url.clone()),
        ..Launch::default()
    };
    let mut herald = Herald::start(&context.herald, dir.path(), &launch).await?;
    let url = herald.url("/eventing/default");
    let (run, herald_cpu) = subscribes(
        &client,
        &url,
        (concurrency, length),
        (herald.pid(), "herald "),
        postgres,
    )
    .await
    .context("Subscribe to herald")?;
    herald.check_alive()?;
    let mut phases = vec![Measured {
        scenario: if postgres {
            "7 PostgreSQL subscribe"
        } else {
            "3 subscribe"
        }
        .to_owned(),
        size: format!("{size}; durable; {herald_cpu}"),
        what: "subscribes",
        run,
    }];
    phases.extend(
        crate::manage::renew_and_unsubscribe(
            &client,
            &mut herald,
            (concurrency, length),
            (&size, postgres),
        )
        .await?,
    );
    drop(herald);
    drop(database);
    // The echo with a store behind it: what the store costs without the rest of herald.
    let mut behind = vec![echo.durable(server, false).await?];
    if server.is_some() {
        behind.push(echo.durable(server, true).await?);
    }

    let (mut after_row, after) = echo.run().await?;
    after_row.size.push_str("; taken again after the runs");
    let echo_rate = (before + after) / 2.0;
    let subscribe_rate = rate(phases[0].run.count, phases[0].run.elapsed);
    let mut rows = vec![before_row];
    rows.extend(phases.into_iter().map(|phase| phase.row(echo_rate)));
    rows.extend(
        behind
            .into_iter()
            .map(|run| behind_row(run, echo_rate, subscribe_rate)),
    );
    rows.push(after_row);
    Ok(rows)
}

/// The row of a run of the echo with a store behind it: its rate as a share of the echo, and
/// herald's Subscribe as a share of it.
fn behind_row(floor: Measured, echo_rate: f64, subscribe_rate: f64) -> Row {
    let (row, achieved, _) = floor.rated(echo_rate);
    let row = row.target(format!(
        "herald's Subscribe = {}% of this",
        percent(subscribe_rate / achieved.max(f64::MIN_POSITIVE))
    ));
    eprintln!("   echo with a store: {} ({})", row.result, row.latency);
    row
}

/// Warms up, then Subscribes to `url` with `concurrency` clients for `length`: the run, and the
/// CPU that process `pid`, called `name`, (and with `postgres` the PostgreSQL server) spent on
/// it, as `herald 38 µs CPU each, …`.
async fn subscribes(
    client: &reqwest::Client,
    url: &str,
    (concurrency, length): (usize, Duration),
    (pid, name): (u32, &str),
    postgres: bool,
) -> anyhow::Result<(load::Requests, String)> {
    warm_up(client, url).await?;
    let meters = Meters::start(pid, postgres)?;
    let run = load::requests_for(client, url, length, concurrency, "SubscribeResponse", |i| {
        subscribe_message(&idle_notify_to(i), None)
    })
    .await?;
    let cpu = meters.describe(name, run.count)?;
    Ok((run, cpu))
}

/// The SOAP echo baseline of scenarios 3 and 7.
struct Echo<'a> {
    client: &'a reqwest::Client,
    dir: &'a std::path::Path,
    /// Concurrency and length, as herald's runs have.
    run: (usize, Duration),
    size: &'a str,
    postgres: bool,
}

impl Echo<'_> {
    /// One run of Subscribes to a fresh echo server: its row and requests per second.
    async fn run(&self) -> anyhow::Result<(Row, f64)> {
        let echo = EchoServer::start(self.dir).await?;
        let url = format!("{}/eventing/default", echo.base);
        let (run, echo_cpu) = subscribes(self.client, &url, self.run, (echo.pid(), ""), false)
            .await
            .context("the echo baseline")?;
        let echo_rate = rate(run.count, run.elapsed);
        let row = Row::new(
            if self.postgres {
                "7 SOAP echo baseline"
            } else {
                "3 SOAP echo baseline"
            },
            format!(
                "{}; roxmltree parse, fixed answer, no store; {echo_cpu}",
                self.size
            ),
            per_second(echo_rate, "requests"),
        )
        .latency(Latency::cell(Latency::of(run.latencies)));
        eprintln!("   echo: {} ({})", row.result, row.latency);
        Ok((row, echo_rate))
    }

    /// One run of Subscribes to an echo server that stores each request before answering: in
    /// the store's floor with `minimal` (PostgreSQL only), else in herald's own store; on the
    /// PostgreSQL server at `server` (a fresh database), else in a fresh SQLite data directory.
    /// See [`crate::floor`].
    async fn durable(&self, server: Option<&str>, minimal: bool) -> anyhow::Result<Measured> {
        let database = server.map(FreshDatabase::create).transpose()?;
        let target = match &database {
            Some(database) => database.url.clone(),
            None => self.dir.join("echo-store").display().to_string(),
        };
        let options = if minimal {
            EchoOptions {
                floor: Some(target),
                ..EchoOptions::default()
            }
        } else {
            EchoOptions {
                herald_store: Some(target),
                ..EchoOptions::default()
            }
        };
        let echo = EchoServer::start_with(self.dir, &options).await?;
        let url = format!("{}/eventing/default", echo.base);
        let postgres = server.is_some();
        let (run, cpu) = subscribes(
            self.client,
            &url,
            self.run,
            (echo.pid(), "the echo "),
            postgres,
        )
        .await
        .context("the echo with a store")?;
        let (scenario, what) = match (postgres, minimal) {
            (true, true) => (
                "7 store's floor: the echo + a durable row",
                "each request's id, NotifyTo and time group-committed to PostgreSQL \
                 (a table of three columns, its primary key its only index)",
            ),
            (true, false) => (
                "7 the echo + herald's store",
                "each request stored as a subscription by herald's PostgreSQL store \
                 (its group commit, statement and schema)",
            ),
            (false, _) => (
                "3 the echo + herald's store",
                "each request stored as a subscription by herald's SQLite store \
                 (its group commit, statement and schema)",
            ),
        };
        Ok(Measured {
            scenario: scenario.to_owned(),
            size: format!("{}; {what} before the answer; {cpu}", self.size),
            what: "subscribes",
            run,
        })
    }
}

/// A few requests first, so connections are open and code is paged in.
async fn warm_up(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    load::requests(
        client,
        url,
        0..200,
        16,
        "SubscribeResponse",
        "warm-up",
        |i| subscribe_message(&idle_notify_to(i), None),
    )
    .await
    .map(|_| ())
    .context("warming up")
}

/// Resident memory once it has settled after a burst of work.
async fn settled_rss(herald: &Herald) -> anyhow::Result<u64> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    herald.rss_bytes()
}

/// Scenario 5: RSS with no subscriptions, then with each count of idle subscriptions (bytes
/// per subscription over the empty herald); then SIGTERM and a restart on the same data
/// directory, timed from spawning the process to its ready line.
pub async fn footprint(context: &Context, database: Option<&str>) -> anyhow::Result<Vec<Row>> {
    let sizes = &context.sizes;
    let dir = context.scratch("footprint")?;
    let client = load::client()?;
    let database = database.map(FreshDatabase::create).transpose()?;
    let (footprint_label, restart_label) = match database {
        Some(_) => ("5 footprint (PostgreSQL)", "5 restart (PostgreSQL)"),
        None => ("5 footprint", "5 restart"),
    };
    // One name for the first start and its restart: on PostgreSQL a restart under a new name
    // is a takeover, measured on its own.
    let launch = Launch {
        ready_timeout: Some(Duration::from_secs(1800)),
        database: database.as_ref().map(|d| d.url.clone()),
        node_id: Some("bench".into()),
        ..Launch::default()
    };
    let mut herald = Herald::start(&context.herald, dir.path(), &launch).await?;
    let empty = settled_rss(&herald).await?;
    let mut rows = vec![Row::new(
        footprint_label,
        "0 subscriptions",
        format!("RSS {}", mebibytes(empty)),
    )];
    eprintln!("   empty: RSS {}", mebibytes(empty));
    let url = herald.url("/eventing/default");
    let mut subscribed = 0;
    for &count in &sizes.footprint_subscriptions {
        let run = load::requests(
            &client,
            &url,
            subscribed..count,
            sizes.subscribe_concurrency,
            "SubscribeResponse",
            "subscribed",
            |i| subscribe_message(&idle_notify_to(i), None),
        )
        .await
        .context("subscribing")?;
        herald.check_alive()?;
        subscribed = count;
        let rss = settled_rss(&herald).await?;
        let per = rss.saturating_sub(empty) / count;
        let row = Row::new(
            footprint_label,
            format!(
                "{} idle subscriptions (the last {} subscribed at {})",
                thousands(count),
                thousands(run.count),
                per_second(rate(run.count, run.elapsed), "")
            ),
            format!(
                "RSS {} = {} B per subscription",
                mebibytes(rss),
                thousands(per)
            ),
        )
        .target(format!(
            "≤ 1 KB per subscription: {}",
            verdict(per <= BYTES_PER_SUBSCRIPTION_TARGET)
        ));
        eprintln!("   {}: {}", row.size, row.result);
        rows.push(row);
    }
    if subscribed > 0 {
        let stopped_in = stop(herald).await?;
        let restarted = Restarted {
            label: restart_label,
            size: format!(
                "{} subscriptions in the store; SIGTERM took {:.1} s",
                thousands(subscribed),
                stopped_in.as_secs_f64()
            ),
            subscribed,
            empty,
        };
        let (row, herald) = restart(context, dir.path(), &launch, &client, &restarted).await?;
        rows.push(row);
        // On PostgreSQL a start under another name takes the stopped node's subscriptions over
        // (its lease was given up at SIGTERM): each row's owner is rewritten.
        if database.is_some() {
            let stopped_in = stop(herald).await?;
            let takeover = Launch {
                node_id: Some("bench-takeover".into()),
                ..launch.clone()
            };
            let restarted = Restarted {
                label: "5 takeover (PostgreSQL)",
                size: format!(
                    "{} subscriptions of a stopped node (SIGTERM took {:.1} s), started under another --node-id",
                    thousands(subscribed + 1),
                    stopped_in.as_secs_f64()
                ),
                subscribed: subscribed + 1,
                empty,
            };
            rows.push(
                restart(context, dir.path(), &takeover, &client, &restarted)
                    .await?
                    .0,
            );
        }
    }
    if database.is_none() {
        rows.push(largest_filters(context, &client).await?);
    }
    drop(database);
    Ok(rows)
}

/// SIGTERM to `herald`; how long it took to stop.
async fn stop(herald: Herald) -> anyhow::Result<Duration> {
    let stopping = Instant::now();
    herald
        .terminate(Duration::from_secs(300))
        .await
        .context("stopping herald")?;
    Ok(stopping.elapsed())
}

/// What a restart measures against: the row's label and size, the subscriptions stored
/// before it, and the empty herald's RSS.
struct Restarted {
    label: &'static str,
    size: String,
    subscribed: u64,
    empty: u64,
}

/// Starts herald on the stopped one's store and times it: ready, a Subscribe answered at once,
/// every stored subscription loaded; then its RSS per subscription. Returns the row and the
/// running herald (holding one more subscription than the store did).
async fn restart(
    context: &Context,
    dir: &std::path::Path,
    launch: &Launch,
    client: &reqwest::Client,
    restarted: &Restarted,
) -> anyhow::Result<(Row, Herald)> {
    let Restarted {
        label,
        size,
        subscribed,
        empty,
    } = restarted;
    let (subscribed, empty) = (*subscribed, *empty);
    let herald = Herald::start(&context.herald, dir, launch)
        .await
        .context("restarting herald")?;
    let ready = herald.ready_after;
    let spawned = Instant::now() - ready;
    // A Subscribe right away: answered while the stored subscriptions still load.
    let url = herald.url("/eventing/default");
    load::requests(
        client,
        &url,
        subscribed..subscribed + 1,
        1,
        "SubscribeResponse",
        "subscribed after the restart",
        |i| subscribe_message(&idle_notify_to(i), None),
    )
    .await
    .context("subscribing after the restart")?;
    let answered = spawned.elapsed();
    let loaded = loaded_after(client, &herald.base, subscribed + 1, spawned).await?;
    let active = load::active_subscriptions(client, &herald.base).await? - 1;
    let rss = herald.rss_bytes()?;
    let per = rss.saturating_sub(empty) / subscribed;
    let mut row = Row::new(
        label,
        size.clone(),
        format!(
            "ready {:.2} s after start, a Subscribe answered at {:.2} s, all {} loaded at {:.2} s, RSS {} = {} B per subscription",
            ready.as_secs_f64(),
            answered.as_secs_f64(),
            thousands(active),
            loaded.as_secs_f64(),
            mebibytes(rss),
            thousands(per)
        ),
    )
    .target(format!(
        "≤ {} s: {}; all loaded ≤ {} s: {}; ≤ 1 KB per subscription: {}",
        RESTART_TARGET.as_secs(),
        verdict(ready.max(answered) <= RESTART_TARGET),
        RESTART_TARGET.as_secs(),
        verdict(loaded <= RESTART_TARGET),
        verdict(per <= BYTES_PER_SUBSCRIPTION_TARGET)
    ));
    if active != subscribed {
        row.result.push_str(&format!(
            "; expected {} active: subscriptions lost",
            thousands(subscribed)
        ));
        row = row.broken();
    }
    eprintln!("   {label}: {}", row.result);
    Ok((row, herald))
}

/// How long after `spawned` herald counted `count` active subscriptions and was done loading
/// (its `herald_loading` gauge back at 0).
async fn loaded_after(
    client: &reqwest::Client,
    base: &str,
    count: u64,
    spawned: Instant,
) -> anyhow::Result<Duration> {
    loop {
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let loading = metrics.lines().any(|line| line == "herald_loading 1");
        if !loading && load::active_subscriptions(client, base).await? >= count {
            return Ok(spawned.elapsed());
        }
        anyhow::ensure!(
            spawned.elapsed() < Duration::from_secs(1800),
            "the stored subscriptions did not load within 30 minutes"
        );
        // Not more often: each scrape walks every reader for the backlog gauges.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The largest XPath filter herald accepts: a comparison chain of 40 terms (256 syntax
/// units), 1 KB of text.
fn largest_filter() -> String {
    let terms: Vec<String> = (0..40).map(|i| format!("@a{i}='v{i}'")).collect();
    format!("/b:tick[{}]", terms.join(" or "))
}

/// Resident memory per subscription carrying the largest filter herald accepts, up to the
/// default `max_subscriptions` of a source, on a herald of its own (beside the idle
/// subscriptions' figure above).
async fn largest_filters(context: &Context, client: &reqwest::Client) -> anyhow::Result<Row> {
    let count: u64 = if context.sizes.hostile_full {
        10_000
    } else {
        500
    };
    let dir = context.scratch("largest-filter")?;
    let herald = Herald::start(&context.herald, dir.path(), &Launch::default()).await?;
    let empty = settled_rss(&herald).await?;
    let filter = largest_filter();
    let length = filter.len();
    let url = herald.url("/eventing/default");
    load::requests(
        client,
        &url,
        0..count,
        context.sizes.subscribe_concurrency,
        "SubscribeResponse",
        "subscribed with the largest filter",
        move |i| subscribe_message(&idle_notify_to(i), Some(&filter)),
    )
    .await
    .context("subscribing with the largest filter")?;
    let rss = settled_rss(&herald).await?;
    let per = rss.saturating_sub(empty) / count;
    let row = Row::new(
        "5 footprint",
        format!(
            "{} subscriptions with the largest accepted XPath filter ({} bytes, 256 syntax units)",
            thousands(count),
            length
        ),
        format!(
            "RSS {} = {} B per subscription",
            mebibytes(rss),
            thousands(per)
        ),
    )
    .target("bounded: filter limits × max_subscriptions");
    eprintln!("   {}: {}", row.size, row.result);
    herald.terminate(Duration::from_secs(60)).await?;
    Ok(row)
}
