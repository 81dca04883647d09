//! `skidder search --export URL`: a log query's whole result, with no
//! `limit`, written to an object-store prefix as NDJSON parts and a
//! manifest written last (`skidder_searcher::export`). It reads the store
//! itself (`--store`), with a progress bar of blocks scanned and lines
//! written on stderr.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use skidder_common::storage::{open_store, S3Config};
use skidder_searcher::engine::TimeRange;
use skidder_searcher::export::{export, ExportRequest, Progress};

use crate::search::{SearchFlags, Source};

pub fn run(
    f: &SearchFlags,
    source: &Source,
    dest: &str,
    (start, end): (i64, i64),
) -> anyhow::Result<ExitCode> {
    let Source::Store { rt, engine, tenant } = source else {
        bail!("--export reads the store itself: give --store, not --url (a searcher runs exports as jobs: POST /skidder/api/v1/exports)")
    };
    let url = dest.parse().map_err(anyhow::Error::msg)?;
    let s3 = S3Config {
        endpoint: f.store.s3_endpoint.clone(),
        ..Default::default()
    };
    let out = rt
        .block_on(open_store(&url, &s3))
        .with_context(|| format!("opening {dest}"))?;
    let req = ExportRequest {
        tenant: tenant.clone(),
        query: f.query.clone(),
        range: TimeRange { start, end },
        part_bytes: f.export_part_mib.max(1) << 20,
    };
    let progress = Progress::default();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {wide_bar} {pos}/{len} blocks, {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let show = |bar: &ProgressBar| {
        bar.set_length(progress.blocks_total.load(Ordering::Relaxed));
        bar.set_position(progress.blocks_scanned.load(Ordering::Relaxed));
        bar.set_message(format!(
            "{} lines written",
            progress.lines_written.load(Ordering::Relaxed)
        ));
    };
    let result = rt.block_on(async {
        let job = export(engine, engine.metrics(), &*out, &req, &progress);
        tokio::pin!(job);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                r = &mut job => break r,
                _ = tick.tick() => show(&bar),
            }
        }
    });
    show(&bar);
    bar.finish_and_clear();
    let manifest = result.with_context(|| format!("exporting to {dest}"))?;
    for w in &manifest.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "exported {} lines in {} parts ({} bytes, {} blocks scanned) to {dest}",
        manifest.lines,
        manifest.parts.len(),
        manifest.bytes,
        manifest.blocks_scanned
    );
    Ok(ExitCode::SUCCESS)
}
