//! `skidder inspect`: prints an index's or a block's metadata, verifies
//! checksums and structure, and can dump the records.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use serde_json::json;
use skidder_common::claims;
use skidder_common::format::index::BlockIndex;
use skidder_common::format::layout::{
    data_key_of, is_compacted, parse_manifest_key, parse_slices_key, parse_tail_pack_key, PackName,
    INDEX_SUFFIX,
};
use skidder_common::format::manifest::{Live, Manifest};
use skidder_common::format::pack;
use skidder_common::format::seqfile::{RecordBlock, SeqFileReader};
use skidder_common::format::slices;
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
    /// index pack and sliced-blooms object against the indexes it copies.
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

/// What checking the packer's objects found: objects read, copies out of
/// date, objects that failed.
type Checked = (u64, u64, u64);

/// Reads every object among `keys` that `is_kind` picks (given its
/// folder's prefix) and runs `check` on it, which returns how many of its
/// copies are out of date. An object `check` fails on counts as failed.
fn check_each(
    store: &Arc<dyn ObjectStore>,
    rt: &tokio::runtime::Runtime,
    keys: &[ObjectMeta],
    is_kind: impl Fn(&str, &str) -> bool,
    check: impl Fn(&str, &str, &[u8]) -> anyhow::Result<u64>,
) -> Checked {
    let (mut read, mut stale, mut bad) = (0, 0, 0);
    for k in keys {
        // Members are named relative to the object's own folder.
        let Some(slash) = k.key.rfind('/') else {
            continue;
        };
        let prefix = &k.key[..=slash];
        if !is_kind(prefix, &k.key) {
            continue;
        }
        let result = rt
            .block_on(store.get(&k.key))
            .map_err(anyhow::Error::from)
            .and_then(|bytes| check(prefix, &k.key, &bytes));
        match result {
            Ok(n) => {
                read += 1;
                stale += n;
            }
            Err(e) => {
                bad += 1;
                eprintln!("FAIL {e:#}");
            }
        }
    }
    (read, stale, bad)
}

/// Reads every index pack among `keys` and compares each member with the
/// index object it copies. A pack that does not decode fails; a member
/// whose index is gone or differs is only out of date (searchers check
/// each member against the listing and the block), and is reported.
fn check_packs(
    store: &Arc<dyn ObjectStore>,
    rt: &tokio::runtime::Runtime,
    keys: &[ObjectMeta],
) -> Checked {
    // The packer's packs and the indexer's tail packs.
    let is_pack = |prefix: &str, key: &str| {
        PackName::parse(prefix, key).is_some() || parse_tail_pack_key(prefix, key).is_some()
    };
    check_each(store, rt, keys, is_pack, |prefix, key, bytes| {
        let members = pack::decode(bytes).with_context(|| format!("{key}: invalid index pack"))?;
        let mut stale = 0;
        for m in members {
            let index_key = format!("{prefix}{}", m.name);
            match rt.block_on(store.get(&index_key)) {
                Ok(index) if index.as_ref() == m.index => {}
                _ => {
                    stale += 1;
                    eprintln!("STALE {key}: its copy of {index_key} is not the index object");
                }
            }
        }
        Ok(stale)
    })
}

/// Reads every sliced-blooms object among `keys` whole, checks each chunk,
/// and compares each sliced filter, bit by bit, with the bloom filter of
/// the index object it was sliced from: out of date if that index is gone,
/// has another size or another filter.
fn check_slices(
    store: &Arc<dyn ObjectStore>,
    rt: &tokio::runtime::Runtime,
    keys: &[ObjectMeta],
) -> Checked {
    let is_slices = |prefix: &str, key: &str| parse_slices_key(prefix, key).is_some();
    check_each(store, rt, keys, is_slices, |prefix, key, bytes| {
        let invalid = || format!("{key}: invalid sliced blooms");
        let head = slices::Head::decode(bytes).with_context(invalid)?;
        if head.total_len != bytes.len() as u64 {
            bail!(
                "{key}: {} bytes, its head says {}",
                bytes.len(),
                head.total_len
            );
        }
        // Every group's rows, chunk by chunk.
        let mut rows: Vec<Vec<u8>> = Vec::new();
        for g in &head.groups {
            let mut all = Vec::new();
            for row in (0..g.bits).step_by(g.chunk_rows as usize) {
                let (_, r) = g.chunk_of(row);
                let chunk = &bytes[r.start as usize..r.end as usize];
                all.extend(slices::chunk_rows(chunk, &r).with_context(invalid)?);
            }
            rows.push(all);
        }
        let mut stale = 0;
        for b in &head.blocks {
            let group = head.shapes[b.shape as usize].group as usize;
            let g = &head.groups[group];
            let index_key = format!("{prefix}{}", b.name);
            let same = rt
                .block_on(store.get(&index_key))
                .ok()
                .is_some_and(|index| {
                    let Ok((idx, bloom)) = BlockIndex::decode_with_bloom(&index) else {
                        return false;
                    };
                    // The version says which tokens a lookup probes for.
                    if index.len() as u64 != b.index_size
                        || idx.version != b.index_version
                        || bloom.bits() != g.bits
                    {
                        return false;
                    }
                    let mut column = vec![0u8; bloom.bitmap().len()];
                    let (byte, bit) = ((b.column / 8) as usize, 1u8 << (b.column % 8));
                    for (row, at) in
                        (0..g.bits as usize).zip((byte..).step_by(g.row_bytes() as usize))
                    {
                        if rows[group][at] & bit != 0 {
                            column[row / 8] |= 1 << (row % 8);
                        }
                    }
                    bloom.header() == head.shapes[b.shape as usize].header
                        && bloom.bitmap() == column
                });
            if !same {
                stale += 1;
                eprintln!("STALE {key}: its filter of {index_key} is not that index's");
            }
        }
        Ok(stale)
    })
}

/// The hour prefix (`tenant=…/dt=…/hour=HH/`) a key lies under.
fn hour_of_key(key: &str) -> Option<&str> {
    let at = key.find("/hour=")? + "/hour=".len();
    let end = at + key[at..].find('/')? + 1;
    Some(&key[..end])
}

/// Reads the newest manifest of each hour among `keys`, by hour prefix;
/// also returns how many failed to read or decode.
fn read_manifests<'k>(
    store: &Arc<dyn ObjectStore>,
    rt: &tokio::runtime::Runtime,
    keys: &'k [ObjectMeta],
) -> (HashMap<&'k str, Manifest>, u64) {
    let mut newest: HashMap<&str, (u64, &str)> = HashMap::new();
    for k in keys {
        let Some(hour) = hour_of_key(&k.key) else {
            continue;
        };
        if let Some(g) = parse_manifest_key(hour, &k.key) {
            let e = newest.entry(hour).or_insert((g, &k.key));
            if g > e.0 {
                *e = (g, &k.key);
            }
        }
    }
    let (mut out, mut bad) = (HashMap::new(), 0);
    for (hour, (_, key)) in newest {
        let read = rt
            .block_on(store.get(key))
            .map_err(anyhow::Error::from)
            .and_then(|b| Manifest::decode(&b).map_err(anyhow::Error::from));
        match read {
            Ok(m) => {
                out.insert(hour, m);
            }
            Err(e) => {
                bad += 1;
                eprintln!("FAIL {key}: invalid manifest: {e:#}");
            }
        }
    }
    (out, bad)
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
        let (manifests, bad_manifests) = read_manifests(s, &rt, &keys);
        bad += bad_manifests;
        let fence = rt.block_on(claims::fence_for(
            &**s,
            keys.iter()
                .map(|k| k.key.as_str())
                .filter(|k| k.ends_with(INDEX_SUFFIX)),
        ))?;
        let lives: HashMap<&str, Live<'_>> = manifests
            .iter()
            .map(|(hour, m)| {
                let listed = keys
                    .iter()
                    .filter_map(|o| Some((o.key.strip_prefix(*hour)?, o.size)));
                (*hour, Live::new(Some(m), listed, &fence))
            })
            .collect();
        let mut hidden = 0u64;
        for k in keys.iter().filter(|k| k.key.ends_with(INDEX_SUFFIX)) {
            // Every block is verified; only those a reader reads are
            // dumped, so a dump holds each record once during compaction.
            let read = match hour_of_key(&k.key).and_then(|h| lives.get(h).map(|l| (h, l))) {
                Some((hour, live)) => live.reads(&k.key[hour.len()..]),
                None => !is_compacted(&k.key) && !fence.superseded(&k.key),
            };
            hidden += u64::from(!read);
            let result = (|| {
                let idx_bytes = rt.block_on(s.get(&k.key))?;
                BlockIndex::decode(&idx_bytes)
                    .with_context(|| format!("{}: invalid index", k.key))?;
                let data = rt
                    .block_on(s.get(&data_key_of(&k.key)))
                    .with_context(|| format!("{}: data block missing", k.key))?;
                check_index(&idx_bytes, &k.key, Some(&data), flags.dump && read)
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
        let (sliced, stale_filters, bad_slices) = check_slices(s, &rt, &keys);
        bad += bad_packs + bad_slices;
        eprintln!(
            "{ok} blocks verified, {bad} failed; {packs} index packs read, {stale} packed indexes out of date; {sliced} sliced blooms read, {stale_filters} sliced filters out of date; {} manifests read, {hidden} blocks replaced by compaction or unnamed",
            manifests.len()
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
