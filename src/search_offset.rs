//! `skidder search --offset topic:partition:offset`: the records one Kafka
//! message became, from a searcher (`/skidder/api/v1/offset`) or from the
//! store itself; with `--store`, dead letters are always shown, as the
//! reader has the whole store anyway.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::{json, Value};
use skidder_searcher::api::offset_json;
use skidder_searcher::engine::{KafkaOffset, TimeRange};

use crate::search::{Output, Source};

pub fn run(
    source: &Source,
    spelled: &str,
    range: (i64, i64),
    output: Output,
) -> anyhow::Result<ExitCode> {
    let m: KafkaOffset = spelled
        .parse()
        .map_err(anyhow::Error::msg)
        .context("invalid --offset")?;
    let body = match source {
        Source::Url { agent, url, tenant } => Source::get(
            agent,
            url,
            tenant,
            "/skidder/api/v1/offset",
            &[
                ("topic", m.topic.clone()),
                ("partition", m.partition.to_string()),
                ("offset", m.offset.to_string()),
                ("start", range.0.to_string()),
                ("end", range.1.to_string()),
            ],
        )?,
        Source::Store { rt, engine, tenant } => {
            let found = rt.block_on(engine.by_offset(
                tenant,
                TimeRange {
                    start: range.0,
                    end: range.1,
                },
                &m,
            ))?;
            let mut body = json!({"status": "success", "data": offset_json(&m, &found, true)});
            if !found.stats.warnings.is_empty() {
                body["warnings"] = json!(found.stats.warnings);
            }
            body
        }
    };
    match output {
        Output::Json => println!("{body}"),
        Output::Raw => print_raw(&body),
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per record (time, labels, line), then what may hold more.
fn print_raw(body: &Value) {
    let data = &body["data"];
    for r in data["records"].as_array().into_iter().flatten() {
        println!(
            "{} {} {}",
            r["time"].as_str().unwrap_or_default(),
            r["labels"],
            r["line"].as_str().unwrap_or_default()
        );
    }
    for b in data["unresolved_blocks"].as_array().into_iter().flatten() {
        println!(
            "# may hold more: {} (offsets {}..={}; its index predates per-record offsets)",
            b["block"].as_str().unwrap_or_default(),
            b["first_offset"],
            b["last_offset"]
        );
    }
    for d in data["dead_letters"].as_array().into_iter().flatten() {
        println!(
            "# dead letter: {} (line {}, {}, {} bytes)",
            d["key"].as_str().unwrap_or_default(),
            d["line"],
            d["reason"].as_str().unwrap_or_default(),
            d["bytes"]
        );
    }
    for w in body["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or_default());
    }
}
