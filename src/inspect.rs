//! `skidder inspect`: prints an index's or a block's metadata, verifies
//! checksums and structure, and can dump the records.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use serde_json::json;
use skidder_common::format::index::BlockIndex;
use skidder_common::format::layout::{PackName, INDEX_SUFFIX};
use skidder_common::format::pack;
use skidder_common::format::seqfile::{RecordBlock, SeqFileReader};
use skidder_common::storage::{list_all, LocalStore, ObjectMeta, ObjectStore};

use crate::flags::{runtime, StoreFlags};

#[derive(Args)]
pub struct InspectFlags {
    /// A local file path, or a key in `--store`. With `--all`, a key prefix
    /// (empty for the whole store).
    pub target: Option<String>,
    #[command(flatten)]
    pub store: StoreFlags,
    /// Verify every index (and its data block) under the prefix, and every
    /// index pack against the indexes it copies.
    #[arg(long)]
    pub all: bool,
    /// Print each record as a JSON line: time, labels, line.
    #[arg(long)]
    pub dump: bool,
}

/// Reads `target` from the store, or else as a local path whose siblings
/// are reachable through a store rooted at its directory.
fn fetch(
    store: &Option<Arc<dyn ObjectStore>>,
    rt: &tokio::runtime::Runtime,
    target: &str,
) -> anyhow::Result<(Bytes, Arc<dyn ObjectStore>, String)> {
    if let Some(s) = store {
        let b = rt
            .block_on(s.get(target))
            .with_context(|| format!("reading {target}"))?;
        return Ok((b, s.clone(), target.to_owned()));
    }
    let path = std::path::Path::new(target);
    let bytes = std::fs::read(path).with_context(|| format!("reading {target}"))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    Ok((Bytes::from(bytes), Arc::new(LocalStore::new(dir)?), name))
}

/// Decodes and verifies one index and its block. Returns the report.
fn check_index(
    bytes: &[u8],
    key: &str,
    data: Option<&[u8]>,
    dump: bool,
) -> anyhow::Result<serde_json::Value> {
    let idx = BlockIndex::decode(bytes).with_context(|| format!("{key}: invalid index"))?;
    let mut report = json!({
        "kind": "index",
        "key": key,
        "tenant": idx.tenant, "app": idx.app, "hour": idx.hour,
        "topic": idx.topic, "partition": idx.partition,
        "first_offset": idx.first_offset, "last_offset": idx.last_offset,
        "min_time_ns": idx.min_time_ns.to_string(), "max_time_ns": idx.max_time_ns.to_string(),
        "records": idx.record_count, "raw_bytes": idx.raw_bytes,
        "data_key": idx.data_key, "data_size": idx.data_size,
        "data_crc32c": format!("{:08x}", idx.data_crc32c),
        "index_bytes": bytes.len(), "bloom_bytes": idx.bloom.len(),
        "streams": idx.streams.iter().map(|s| json!({
            "labels": s.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "records": s.record_count,
        })).collect::<Vec<_>>(),
    });
    if let Some(data) = data {
        idx.verify_data(data)
            .with_context(|| format!("{}: does not match its index {key}", idx.data_key))?;
        let mut reader =
            SeqFileReader::new(data).with_context(|| format!("{}: invalid block", idx.data_key))?;
        let mut block = RecordBlock::default();
        let mut n: u64 = 0;
        let mut stream = 0usize;
        while reader
            .next_block(&mut block)
            .with_context(|| format!("{}: invalid block", idx.data_key))?
        {
            for (t, line) in block.records() {
                while stream + 1 < idx.streams.len()
                    && n >= (idx.streams[stream].first_record + idx.streams[stream].record_count)
                        as u64
                {
                    stream += 1;
                }
                if t < idx.min_time_ns || t > idx.max_time_ns {
                    bail!(
                        "{}: record {n} has time {t} outside the index's range",
                        idx.data_key
                    );
                }
                if dump {
                    let labels: std::collections::BTreeMap<_, _> = idx
                        .streams
                        .get(stream)
                        .map(|s| s.labels.iter().cloned().collect())
                        .unwrap_or_default();
                    println!(
                        "{}",
                        json!({"time_ns": t.to_string(), "tenant": idx.tenant, "app": idx.app,
                               "labels": labels, "line": String::from_utf8_lossy(line)})
                    );
                }
                n += 1;
            }
        }
        if n != idx.record_count {
            bail!(
                "{}: holds {n} records, its index says {}",
                idx.data_key,
                idx.record_count
            );
        }
        report["verified"] = json!(true);
    }
    Ok(report)
}

/// Reads every index pack among `keys` and compares each member with the
/// index object it copies. A pack that does not decode fails; a member
/// whose index is gone or differs is only out of date (searchers check
/// each member against the listing and the block), and is reported. Returns
/// (packs read, members out of date, packs failed).
fn check_packs(
    store: &Arc<dyn ObjectStore>,
    rt: &tokio::runtime::Runtime,
    keys: &[ObjectMeta],
) -> (u64, u64, u64) {
    let (mut read, mut stale, mut bad) = (0, 0, 0);
    for k in keys {
        // A pack's members are named relative to its own folder.
        let Some(slash) = k.key.rfind('/') else {
            continue;
        };
        let prefix = &k.key[..=slash];
        if PackName::parse(prefix, &k.key).is_none() {
            continue;
        }
        let result = (|| {
            let bytes = rt.block_on(store.get(&k.key))?;
            let members =
                pack::decode(&bytes).with_context(|| format!("{}: invalid index pack", k.key))?;
            for m in members {
                let key = format!("{prefix}{}", m.name);
                match rt.block_on(store.get(&key)) {
                    Ok(index) if index.as_ref() == m.index => {}
                    _ => {
                        stale += 1;
                        eprintln!("STALE {}: its copy of {key} is not the index object", k.key);
                    }
                }
            }
            anyhow::Ok(())
        })();
        match result {
            Ok(()) => read += 1,
            Err(e) => {
                bad += 1;
                eprintln!("FAIL {e:#}");
            }
        }
    }
    (read, stale, bad)
}

pub fn run(flags: InspectFlags) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let store = flags.store.open(&rt)?;
    if flags.all {
        let Some(s) = &store else {
            bail!("--all needs --store")
        };
        let prefix = flags.target.clone().unwrap_or_default();
        let keys = rt.block_on(list_all(&**s, &prefix))?;
        let (mut ok, mut bad) = (0u64, 0u64);
        for k in keys.iter().filter(|k| k.key.ends_with(INDEX_SUFFIX)) {
            let result = (|| {
                let idx_bytes = rt.block_on(s.get(&k.key))?;
                let idx = BlockIndex::decode(&idx_bytes)
                    .with_context(|| format!("{}: invalid index", k.key))?;
                let data = rt
                    .block_on(s.get(&idx.data_key))
                    .with_context(|| format!("{}: data block missing", k.key))?;
                check_index(&idx_bytes, &k.key, Some(&data), flags.dump)
            })();
            match result {
                Ok(_) => ok += 1,
                Err(e) => {
                    bad += 1;
                    eprintln!("FAIL {e:#}");
                }
            }
        }
        let (packs, stale, bad_packs) = check_packs(s, &rt, &keys);
        bad += bad_packs;
        eprintln!(
            "{ok} blocks verified, {bad} failed; {packs} index packs read, {stale} packed indexes out of date"
        );
        return Ok(if bad == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    let Some(target) = &flags.target else {
        bail!("name an index or block to inspect")
    };
    let (bytes, dir_store, key) = fetch(&store, &rt, target)?;
    let report = if bytes.starts_with(skidder_common::format::index::MAGIC) {
        let idx = BlockIndex::decode(&bytes).with_context(|| format!("{key}: invalid index"))?;
        // The data key is relative to the store root; for a local path, try its sibling.
        let data_name = if store.is_some() {
            idx.data_key.clone()
        } else {
            idx.data_key
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        let data = rt
            .block_on(dir_store.get(&data_name))
            .with_context(|| format!("{key}: reading its data block"))?;
        check_index(&bytes, &key, Some(&data), flags.dump)?
    } else if bytes.starts_with(skidder_common::format::seqfile::MAGIC) {
        let idx_name = key
            .strip_suffix(".seq")
            .map(|s| format!("{s}{INDEX_SUFFIX}"));
        match idx_name.map(|n| rt.block_on(dir_store.get(&n))) {
            Some(Ok(idx)) => check_index(&idx, &key, Some(&bytes), flags.dump)?,
            _ => {
                let (header, records) = SeqFileReader::read_all(&bytes)
                    .with_context(|| format!("{key}: invalid block"))?;
                if flags.dump {
                    for (t, line) in &records {
                        println!("{}", json!({"time_ns": t.to_string(), "line": line}));
                    }
                }
                json!({"kind": "block", "key": key, "records": records.len(),
                       "metadata": header.metadata, "verified": false,
                       "note": "no index next to it: structure checked, checksum not"})
            }
        }
    } else {
        bail!("{key}: neither a Skidder index (SKIX) nor a SequenceFile (SEQ)");
    };
    if flags.dump {
        eprintln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}
