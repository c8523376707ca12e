//! The `herald` command: `serve` runs the broker; the other verbs are its command-line client
//! (see `herald::cli`).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald::app::{Application, shutdown_signal};
use herald::cli::{self, manage, publish, sink};
use herald::config::{Config, LogFormat, ServeArgs};

#[global_allocator]
static ALLOCATOR: herald::allocator::Allocator = herald::allocator::Allocator;

/// herald: a durable callback and event-subscription broker for web services.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker. Settings come from built-in defaults, then --config FILE, then HERALD_*
    /// environment variables, then these flags (a later one wins).
    Serve(ServeArgs),
    /// Subscribe an endpoint to a source: over WS-Eventing (--notify-to, any version) or as a
    /// JSON webhook (--webhook). Prints the reference the other verbs take.
    Subscribe(manage::SubscribeArgs),
    /// Renew a subscription (SOAP Renew to its manager, or the webhook's new expiry).
    Renew(manage::RenewArgs),
    /// Show a subscription: status, expiry, delivery progress, last error.
    Status(manage::ReferenceArgs),
    /// End a subscription (SOAP Unsubscribe to its manager, or DELETE for a webhook).
    Unsubscribe(manage::ReferenceArgs),
    /// Publish one event to a source; the body from a file or standard input.
    Publish(publish::PublishArgs),
    /// Run a local HTTP receiver that prints what arrives and answers 200 (503 with --fail).
    Sink(sink::SinkArgs),
}

fn main() -> ExitCode {
    // Before the runtime's threads and buffers are allocated (see `herald::memory`).
    herald::memory::without_huge_pages();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(err) => {
            eprintln!("Error: cannot start the runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => match serve(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("Error: {err:?}");
                ExitCode::FAILURE
            }
        },
        Command::Subscribe(args) => {
            cli::finish(args.connection.json, manage::subscribe(&args).await)
        }
        Command::Renew(args) => cli::finish(args.connection.json, manage::renew(&args).await),
        Command::Status(args) => cli::finish(args.connection.json, manage::status(&args).await),
        Command::Unsubscribe(args) => {
            cli::finish(args.connection.json, manage::unsubscribe(&args).await)
        }
        Command::Publish(args) => cli::finish(args.connection.json, publish::publish(&args).await),
        Command::Sink(args) => match sink::run(&args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("herald: {err}");
                ExitCode::from(err.exit_code())
            }
        },
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    let level: tracing::Level = config.log_level.parse().context("invalid log level")?;
    let logs = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // Fields at the top level beside timestamp, level, target and message: what a log
        // collector indexes.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let application = Application::build(config.clone())
        .await
        .context("herald could not start")?;
    let address = application.local_addr()?;
    let sources: Vec<String> = config.sources.iter().map(|s| s.name.to_string()).collect();
    tracing::info!(%address, data_dir = %config.data_dir.display(), ?sources, "herald is ready");
    // One line on stdout that scripts (and the tests) can wait for.
    println!("herald listening on http://{address}");
    application.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("herald stopped");
    Ok(())
}
