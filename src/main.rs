//! The `skidder` binary: parses flags, builds a service, waits for a
//! signal, prints the error chain and exits with a meaningful code.

mod demo;
mod export;
mod flags;
mod indexer;
mod inspect;
mod live_kafka;
mod pack;
mod retention;
mod search;
mod search_context;
mod search_offset;
mod search_tail;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "skidder",
    version,
    about = "Log management on object storage: Kafka in, LogQL out."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Index JSON logs from Kafka into object storage.
    Indexer(indexer::IndexerFlags),
    /// Print and verify an index or data block; optionally dump its records.
    Inspect(inspect::InspectFlags),
    /// Serve LogQL over Loki's HTTP API, from object storage.
    Searcher(search::SearcherFlags),
    /// Run a LogQL query against a searcher or straight against a store.
    Search(search::SearchFlags),
    /// Pack each settled hour's indexes into one object, and slice its bloom
    /// filters, for cold searches.
    Pack(pack::PackFlags),
    /// Compact each settled hour's small blocks into large ones under a
    /// manifest, delete what they replaced after a grace period, and pack.
    /// Safe to run several at once.
    Compact(pack::CompactFlags),
    /// Delete what a retention policy has expired: whole hours per tenant
    /// and app, by age or by quota, and old dead letters.
    Retention(retention::RetentionFlags),
    /// Run the whole system on an embedded Kafka with generated logs.
    Demo(demo::DemoFlags),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIDDER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Indexer(f) => indexer::run(f),
        Command::Inspect(f) => inspect::run(f),
        Command::Demo(f) => demo::run(f),
        Command::Searcher(f) => search::run_searcher(f),
        Command::Search(f) => search::run_search(f),
        Command::Pack(f) => pack::run(f),
        Command::Compact(f) => pack::run_compact(f),
        Command::Retention(f) => retention::run(f),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
