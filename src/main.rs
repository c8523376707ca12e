//! The `herald` command.

use std::io::IsTerminal;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald::app::{Application, shutdown_signal};
use herald::config::{Config, ServeArgs};

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    let level: tracing::Level = config.log_level.parse().context("invalid log level")?;
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
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
