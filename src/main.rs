//! The `skidder` binary: parses flags, builds a service, waits for a
//! signal, prints the error chain and exits with a meaningful code.

mod demo;
mod flags;
mod inspect;
mod pack;
mod search;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIDDER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = flags::Cli::parse();
    let result = match cli.command {
        flags::Command::Indexer(f) => flags::run_indexer(f),
        flags::Command::Inspect(f) => inspect::run(f),
        flags::Command::Demo(f) => demo::run(f),
        flags::Command::Searcher(f) => search::run_searcher(f),
        flags::Command::Search(f) => search::run_search(f),
        flags::Command::Pack(f) => pack::run(f),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
