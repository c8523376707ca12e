//! herald-bench: herald's numbers beside this machine's limits, measured in one run (issue 4).
//!
//! It starts the release build of herald as a child process on loopback, starts its own sink
//! servers, drives the load, shows progress on stderr, and prints one markdown table on stdout.
//! Each herald number stands next to a baseline taken in the same run on the same stack:
//! herald's own delivery client posting straight to the sinks, and a SOAP echo server.
//!
//! `cargo build --release --bins && target/release/herald-bench [--quick] [--scenario NAME]`
//!
//! It asserts nothing about speed: it exits non-zero only when something broke (herald did not
//! start, an event was lost, a request failed).
//!
//! - [`process`]: herald as a child process (start, wait for ready, RSS, SIGTERM, restart),
//!   scratch directories and fresh PostgreSQL databases.
//! - [`sink`]: the sink servers (counting distinct events per subscriber, latency).
//! - [`echo`]: the SOAP echo server (the Subscribe baseline, the invoked service).
//! - [`load`]: SOAP messages, the HTTP client, concurrent request loops, statistics, progress.
//! - [`baseline`]: scenario 1, herald's delivery client in a child process posting to the sinks.
//! - [`fanout`]: scenario 2's fan-out (and 7's), in slices between runs of the baseline.
//! - [`delivery`]: scenario 2's paced run, 4 and 6 (filtered, backlog), and the herald they
//!   and the fan-out run against.
//! - [`subscriptions`]: scenarios 3 and 5 (Subscribe against echo, footprint and restart);
//!   [`manage`]: scenario 3's Renew and Unsubscribe.
//! - [`hostile`]: scenario 8 (XML bombs refused in linear time, beside benign events).
//! - [`contexts`]: scenario 9 (callbacks to context instances).
//! - [`invocations`]: scenario 10 (invocation callbacks end to end, acked by pull listeners).
//! - [`channels`]: scenario 11 (push channels: notifications streamed, memory per open stream).
//! - [`wsman`]: scenario 12 (WS-Management Events mode beside Push mode and the raw baseline).
//! - [`sizes`]: the sizes of a run (`--quick` or full, then the flags).
//! - [`report`]: the table.

// The same allocator as herald's: the raw baseline's client, the echo and the sinks then
// allocate as herald does, so a ratio compares herald's work, not two allocators.
#[global_allocator]
static ALLOCATOR: herald::allocator::Allocator = herald::allocator::Allocator;

mod baseline;
mod channels;
mod contexts;
mod delivery;
mod echo;
mod fanout;
mod floor;
mod hostile;
mod invocations;
mod load;
mod machine;
mod manage;
mod process;
mod report;
mod sink;
mod sizes;
mod subscriptions;
mod wsman;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use report::{Report, Row};
pub use sizes::Sizes;

/// Measures herald against this machine's limits and prints one markdown table.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Small sizes everywhere: the whole run takes seconds (what CI runs).
    #[arg(long)]
    quick: bool,
    /// Run only these scenarios (repeat or comma-separate); default all.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<Scenario>,
    /// The herald binary [default: `herald` next to this executable].
    #[arg(long, value_name = "PATH")]
    herald: Option<PathBuf>,
    /// PostgreSQL server URL for scenario 7, and the second runs of scenarios 5, 10 and 12 (e.g.
    /// postgres://postgres@127.0.0.1:5432/postgres).
    /// Each herald start gets a fresh database `herald_bench_*` created on that server with
    /// psql, passed as `herald serve --database URL`, and dropped afterwards.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Where scratch data directories go [default: the system's temporary directory].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the scratch directories (herald's data and logs) instead of removing them, e.g. to
    /// profile a restart on a large store.
    #[arg(long)]
    keep_data: bool,
    /// Sink servers (listening ports) the subscribers are spread over.
    #[arg(long, value_name = "N")]
    sinks: Option<usize>,
    /// Most requests in flight in the raw baseline [default: 256, herald's
    /// delivery.max_concurrency]; it also runs at each fan-out's concurrency (one per
    /// subscriber, up to this).
    #[arg(long, value_name = "N")]
    baseline_concurrency: Option<usize>,
    /// Notifications the raw baseline posts (at most) at each concurrency.
    #[arg(long, value_name = "N")]
    baseline_requests: Option<u64>,
    /// Subscriber counts of the fan-out runs, comma-separated.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    fanout_subscribers: Option<Vec<u64>>,
    /// Deliveries per fan-out run: events = deliveries / subscribers, clamped to
    /// [--fanout-min-events, --fanout-max-events], then shared among the run's slices (each at
    /// least --fanout-min-events, so a run may deliver more).
    #[arg(long, value_name = "N")]
    fanout_deliveries: Option<u64>,
    /// Fewest events per fan-out run, and per slice of one.
    #[arg(long, value_name = "N")]
    fanout_min_events: Option<u64>,
    /// Most events per fan-out run.
    #[arg(long, value_name = "N")]
    fanout_max_events: Option<u64>,
    /// Slices each fan-out run is cut into: the raw baseline runs before the first slice and
    /// after each, and each slice is set beside the two baselines around it.
    #[arg(long, value_name = "N")]
    fanout_slices: Option<u64>,
    /// Shares of the raw ceiling, in percent, the paced runs publish at (one run each): the
    /// raw baseline at the paced subscribers' concurrency is measured just before, and each
    /// run publishes share × ceiling / subscribers events per second.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    paced_shares: Option<Vec<u64>>,
    /// Subscribers of the paced run.
    #[arg(long, value_name = "N")]
    paced_subscribers: Option<u64>,
    /// Seconds the paced run publishes for.
    #[arg(long, value_name = "S")]
    paced_seconds: Option<f64>,
    /// Concurrent clients of the Subscribe and echo runs.
    #[arg(long, value_name = "N")]
    subscribe_concurrency: Option<usize>,
    /// Seconds each of the Subscribe and echo runs lasts.
    #[arg(long, value_name = "S")]
    subscribe_seconds: Option<f64>,
    /// Subscribers with XPath filters in the filtered fan-out (10% match each event).
    #[arg(long, value_name = "N")]
    filtered_subscribers: Option<u64>,
    /// Events of the filtered fan-out.
    #[arg(long, value_name = "N")]
    filtered_events: Option<u64>,
    /// Subscription counts at which the footprint is read (the largest is also restarted).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    footprint_subscriptions: Option<Vec<u64>>,
    /// Events queued for the stopped sink in the backlog run.
    #[arg(long, value_name = "N")]
    backlog_events: Option<u64>,
    /// Subscribers in each mode of the WS-Management run (scenario 12).
    #[arg(long, value_name = "N")]
    wsman_subscribers: Option<u64>,
    /// Events published to each mode of the WS-Management run.
    #[arg(long, value_name = "N")]
    wsman_events: Option<u64>,
    /// `wsman:MaxElements` of the Events-mode subscribers.
    #[arg(long, value_name = "N")]
    wsman_max_elements: Option<u64>,
    /// `wsman:MaxTime` of the Events-mode subscribers, in milliseconds.
    #[arg(long, value_name = "MS")]
    wsman_max_time_ms: Option<u64>,
}

#[derive(Subcommand, Debug, Clone)]
enum Command {
    /// Internal: the SOAP echo server the Subscribe baseline runs against, in its own process
    /// as herald is. Prints `echo listening on http://ADDR` when ready.
    #[command(hide = true)]
    EchoServer(echo::EchoOptions),
    /// Internal: the raw baseline's client, in its own process as herald is.
    #[command(hide = true)]
    PostClient(PostClient),
}

/// Options of the raw baseline's client process.
#[derive(clap::Args, Debug, Clone)]
pub struct PostClient {
    /// Base URL of a sink listener (repeat).
    #[arg(long)]
    sink: Vec<String>,
    /// Workers, each with one request in flight.
    #[arg(long)]
    concurrency: u64,
    /// Notifications each worker posts.
    #[arg(long)]
    per_worker: u64,
}

/// The scenarios of issue 4.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// 1: herald's delivery client posting straight to the sinks.
    Baseline,
    /// 2: N subscribers, M events, as fast as herald goes (in slices between runs of the baseline).
    Fanout,
    /// 2: a paced publisher at shares of the raw ceiling measured just before, latency.
    Paced,
    /// 3: durable Subscribe, then Renew and Unsubscribe, against a SOAP echo server.
    Subscribe,
    /// 4: XPath-filtered fan-out, 10% matching.
    Filtered,
    /// 5: resident memory per subscription, and time to ready after a restart (also on
    /// PostgreSQL with --database).
    Footprint,
    /// 6: a sink down while events queue, then up: drain time and losses.
    Backlog,
    /// 7: scenarios 2 and 3 on PostgreSQL (needs --database).
    Postgres,
    /// 8: XML bombs refused in linear time, beside a benign event of the same size.
    Hostile,
    /// 9: callback contexts: callbacks to one instance and across many, beside the baseline.
    Contexts,
    /// 10: invocation callbacks: raise → call → callback → acked by pull listeners (also on
    /// PostgreSQL with --database).
    Invocations,
    /// 11: push channels: notifications into N channels with a streaming reader each.
    Channels,
    /// 12: WS-Management Events mode (batches, acked) beside Push mode and the raw baseline,
    /// N subscribers each (also on PostgreSQL with --database).
    Wsman,
}

/// What every scenario needs: where herald is, where scratch data goes, the sizes.
#[derive(Debug, Clone)]
pub struct Context {
    pub herald: PathBuf,
    pub work_dir: PathBuf,
    pub database: Option<String>,
    pub keep_data: bool,
    pub sizes: Sizes,
}

impl Context {
    /// A scratch directory for one scenario.
    pub fn scratch(&self, label: &str) -> anyhow::Result<process::ScratchDir> {
        process::ScratchDir::new(&self.work_dir, label, self.keep_data)
    }
}

fn herald_binary(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.herald {
        anyhow::ensure!(path.is_file(), "--herald {}: no such file", path.display());
        return Ok(path.clone());
    }
    let me = std::env::current_exe()?;
    let dir = me
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no directory", me.display()))?;
    let path = dir.join(format!("herald{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        path.is_file(),
        "no herald binary next to {} (build it: cargo build --release --bins), or pass --herald PATH",
        me.display()
    );
    if !dir.ends_with("release") {
        eprintln!(
            "warning: {} is not a release build; numbers will be far below herald's",
            path.display()
        );
    }
    Ok(path)
}

fn main() -> ExitCode {
    // As herald does, so that both sides of each ratio take memory alike.
    herald::memory::without_huge_pages();
    let args = Args::parse();
    let helper = match &args.command {
        Some(Command::EchoServer(options)) => Some(("echo server", echo::run_echo_server(options))),
        Some(Command::PostClient(options)) => {
            Some(("post client", baseline::run_post_client(options)))
        }
        None => None,
    };
    if let Some((name, result)) = helper {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("{name}: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("herald-bench: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let herald = match herald_binary(&args) {
        Ok(path) => path,
        Err(err) => {
            eprintln!("herald-bench: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let context = Context {
        herald,
        work_dir: args.work_dir.clone().unwrap_or_else(std::env::temp_dir),
        database: args.database.clone(),
        keep_data: args.keep_data,
        sizes: Sizes::from_args(&args),
    };
    let wanted = |scenario: Scenario| args.scenario.is_empty() || args.scenario.contains(&scenario);
    let started = Instant::now();
    let mut report = Report::default();
    load::install_crypto();

    // The fan-out runs the baseline itself, between its slices.
    if wanted(Scenario::Baseline)
        && !wanted(Scenario::Fanout)
        && let Some(rows) = report
            .run("1 raw baseline", baseline::baseline(&context))
            .await
    {
        report.extend(rows);
    }
    if wanted(Scenario::Fanout)
        && let Some(rows) = report
            .run("2 fan-out", fanout::fanout(&context, None))
            .await
    {
        report.extend(rows);
    }
    if wanted(Scenario::Paced)
        && let Some(rows) = report.run("2 paced", delivery::paced(&context)).await
    {
        report.extend(rows);
    }
    if wanted(Scenario::Subscribe)
        && let Some(rows) = report
            .run("3 subscribe", subscriptions::subscribe(&context, None))
            .await
    {
        report.extend(rows);
    }
    if wanted(Scenario::Filtered)
        && let Some(rows) = report.run("4 filtered", delivery::filtered(&context)).await
    {
        report.extend(rows);
    }
    if wanted(Scenario::Footprint) {
        if let Some(rows) = report
            .run("5 footprint", subscriptions::footprint(&context, None))
            .await
        {
            report.extend(rows);
        }
        if let Some(url) = &context.database
            && let Some(rows) = report
                .run(
                    "5 footprint (PostgreSQL)",
                    subscriptions::footprint(&context, Some(url)),
                )
                .await
        {
            report.extend(rows);
        }
    }
    if wanted(Scenario::Backlog)
        && let Some(rows) = report.run("6 backlog", delivery::backlog(&context)).await
    {
        report.extend(rows);
    }
    if wanted(Scenario::Postgres) {
        match &context.database {
            None => report.push(Row::skipped("7 PostgreSQL", "skipped (no --database)")),
            Some(url) => {
                if let Some(rows) = report
                    .run("7 PostgreSQL fan-out", fanout::fanout(&context, Some(url)))
                    .await
                {
                    report.extend(rows);
                }
                if let Some(rows) = report
                    .run(
                        "7 PostgreSQL subscribe",
                        subscriptions::subscribe(&context, Some(url)),
                    )
                    .await
                {
                    report.extend(rows);
                }
            }
        }
    }

    if wanted(Scenario::Hostile)
        && let Some(rows) = report
            .run("8 hostile XML", hostile::hostile(&context))
            .await
    {
        report.extend(rows);
    }

    if wanted(Scenario::Contexts)
        && let Some(rows) = report
            .run("9 callbacks", contexts::contexts(&context))
            .await
    {
        report.extend(rows);
    }

    if wanted(Scenario::Invocations) {
        if let Some(rows) = report
            .run("10 invocations", invocations::invocations(&context, None))
            .await
        {
            report.extend(rows);
        }
        if let Some(url) = &context.database
            && let Some(rows) = report
                .run(
                    "10 invocations (PostgreSQL)",
                    invocations::invocations(&context, Some(url)),
                )
                .await
        {
            report.extend(rows);
        }
    }

    if wanted(Scenario::Channels)
        && let Some(rows) = report
            .run("11 channels", channels::channels(&context))
            .await
    {
        report.extend(rows);
    }

    if wanted(Scenario::Wsman) {
        if let Some(rows) = report
            .run("12 WS-Management", wsman::wsman(&context, None))
            .await
        {
            report.extend(rows);
        }
        if let Some(url) = &context.database
            && let Some(rows) = report
                .run(
                    "12 WS-Management (PostgreSQL)",
                    wsman::wsman(&context, Some(url)),
                )
                .await
        {
            report.extend(rows);
        }
    }

    eprintln!(
        "herald-bench: finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("{}", report.markdown());
    if report.failed() {
        eprintln!("herald-bench: something broke (see FAILED rows above)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
