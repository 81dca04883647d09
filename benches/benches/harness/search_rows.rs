//! The search rows: needles, filters and metric queries over the generated
//! store, cold and warm, against ripgrep over the same bytes.

use super::*;
use crate::index_rows::inproc;

pub(crate) fn search_rows(o: &Opts, c: &corpus::Corpus, t: &mut Table) -> Result<()> {
    let store = store_dir(o);
    if !store.join("tenant=bench").exists() {
        let cfg = write_config(&o.work, "bench-inproc.toml", &bench_config(&store, ""))?;
        inproc(&cfg, &store, &c.files, None)?;
    }
    let sel = r#"{level=~".+"}"#;
    let hour = 3_600_000_000_000i64;
    let start = c.start_ns;
    let end = start + (c.end_ns - start + hour - 1) / hour * hour;
    let needle = &c.needle;
    let s = |x: &str| x.to_string();
    let regex = "Failed password for (invalid user )?[a-z0-9]+ from";
    let cases = [
        QueryCase {
            name: "needle by field",
            logql: format!(r#"{sel} | trace_id="{needle}""#),
            rg: Some(vec![s("-F"), s("-c"), format!(r#""trace_id":"{needle}""#)]),
        },
        QueryCase {
            name: "needle by line filter",
            logql: format!(r#"{sel} |= "{needle}""#),
            rg: Some(vec![s("-F"), s("-c"), needle.clone()]),
        },
        QueryCase {
            name: "rare word",
            logql: format!(r#"{sel} |= "{}""#, corpus::RARE_WORD),
            rg: Some(vec![s("-F"), s("-c"), s(corpus::RARE_WORD)]),
        },
        QueryCase {
            name: "common word, full scan (counted)",
            logql: format!(r#"sum(count_over_time({sel} |= "info" [1h]))"#),
            rg: Some(vec![s("-F"), s("-c"), s("info")]),
        },
        QueryCase {
            name: "regex (counted)",
            logql: format!(r#"sum(count_over_time({sel} |~ "{regex}" [1h]))"#),
            rg: Some(vec![s("-c"), s(regex)]),
        },
        QueryCase {
            name: "count_over_time by level",
            logql: format!(r#"sum by (level) (count_over_time({sel} [1h]))"#),
            rg: Some(vec![s("-F"), s("-c"), s(r#""level":""#)]),
        },
        // The same count with every line parsed, the baseline of the next
        // row: an unwrap must parse to read its value.
        QueryCase {
            name: "count_over_time by level, json parsed",
            logql: format!(r#"sum by (level) (count_over_time({sel} | json [1h]))"#),
            rg: None,
        },
        QueryCase {
            name: "unwrap: sum_over_time by level",
            logql: format!(
                r#"sum by (level) (sum_over_time({sel} | json | unwrap net_dst_port | __error__="" [1h]))"#
            ),
            rg: None,
        },
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let local: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&store)?);
    // Index packs, as `skidder pack` writes them once the hours settle.
    let t0 = Instant::now();
    let packed = rt.block_on(pack_hours(
        &*local,
        &["bench".to_owned()],
        (hour_of(start), hour_of(end - 1)),
        &PackOptions::default(),
        &|| false,
    ))?;
    let listed = rt.block_on(skidder_common::storage::list_all(&*local, "tenant=bench/"))?;
    let bytes_of = |suffix: &str| -> u64 {
        listed
            .iter()
            .filter(|m| m.key.ends_with(suffix))
            .map(|m| m.size)
            .sum()
    };
    let (pack_bytes, slices_bytes) = (bytes_of(".pack"), bytes_of(".slices"));
    t.note(format!(
        "index packs: {} bytes ({:.2}% of raw); sliced blooms: {} bytes ({:.2}% of raw) in {} objects; for {} hours; this run packed {} hours in {:.1} s",
        pack_bytes,
        100.0 * pack_bytes as f64 / c.bytes as f64,
        slices_bytes,
        100.0 * slices_bytes as f64 / c.bytes as f64,
        listed.iter().filter(|m| m.key.ends_with(".slices")).count(),
        packed.hours_packed + packed.hours_current,
        packed.hours_packed,
        t0.elapsed().as_secs_f64()
    ));
    let mut stores: Vec<(&str, Arc<dyn ObjectStore>)> = vec![("local", local.clone())];
    let _moto;
    if !o.no_s3 {
        let moto = skidder_common::testing::MotoServer::start();
        let s3 = rt.block_on(async {
            let s3 = skidder_common::storage::S3Store::new("bench", "", &moto.s3_config()).await;
            s3.create_bucket().await.map(|_| s3)
        })?;
        let s3: Arc<dyn ObjectStore> = Arc::new(s3);
        let t0 = Instant::now();
        let n = rt.block_on(storage::copy_store(&local, &s3))?;
        t.note(format!(
            "S3 store: moto, {n} objects uploaded in {:.0} s",
            t0.elapsed().as_secs_f64()
        ));
        stores.push(("S3 (moto)", s3));
        _moto = moto;
    }
    // What listing alone costs on each store: no cold query can be faster.
    let mut floors = std::collections::HashMap::new();
    for (sname, st) in &stores {
        let ms = rt
            .block_on(search::listing_floor(st, "bench", start, end, o.runs))
            .map_err(anyhow::Error::msg)?;
        t.note(format!(
            "{sname}: listing the {} hours in range, side by side, takes {ms:.1} ms (median of {}): the floor of every cold query",
            hour_of(end - 1) - hour_of(start) + 1,
            o.runs
        ));
        floors.insert(*sname, ms);
    }
    let wanted = |q: &&QueryCase| o.only.as_ref().is_none_or(|w| q.name.contains(w.as_str()));
    for q in cases.iter().filter(wanted) {
        let rg = match &q.rg {
            Some(args) => Some(baselines::rg_ms(args, &c.files, o.runs)?),
            None => None,
        };
        // With fewer of the packer's objects too, for the needle: the cold
        // cost each removes.
        let packs_only = Reads {
            packs: true,
            slices: false,
        };
        let neither = Reads {
            packs: false,
            slices: false,
        };
        let variants: &[Reads] = if q.name == "needle by field" {
            &[Reads::ALL, packs_only, neither]
        } else {
            &[Reads::ALL]
        };
        let runs = stores
            .iter()
            .flat_map(|(n, st)| variants.iter().map(move |&p| (*n, st, p)));
        for (sname, st, reads) in runs {
            let floor = floors.get(sname).copied().unwrap_or(0.0);
            let sname = match (reads.packs, reads.slices) {
                (true, true) => sname.to_owned(),
                (true, false) => format!("{sname}, packs but no sliced blooms"),
                _ => format!("{sname}, neither packs nor sliced blooms"),
            };
            let step = q.logql.starts_with("sum").then_some(hour);
            let r = rt
                .block_on(search::run(
                    st.clone(),
                    reads,
                    "bench",
                    q,
                    start,
                    end,
                    step,
                    o.runs,
                ))
                .map_err(anyhow::Error::msg)?;
            let target = match q.name {
                "needle by field" => ">= 20x rg, < 1% of blocks fetched",
                "common word, full scan (counted)" => ">= 1 GB/s of raw log per core",
                _ => "",
            };
            let base = match rg {
                Some(ms) => format!(
                    "rg {ms:.0} ms: skidder {:.1}x faster cold, {:.1}x warm; listing alone {floor:.0} ms, so cold can reach {:.1}x at best",
                    ms / r.median_ms,
                    ms / r.warm_median_ms,
                    ms / floor.max(f64::MIN_POSITIVE)
                ),
                None => String::new(),
            };
            let scan_rate = mb(r.bytes_scanned) / (r.warm_median_ms / 1e3) / 2.0;
            t.row(
                &format!("search, {sname}"),
                q.name,
                format!(
                    "cold {:.1} ms, {:.2} MB fetched; warm {:.1} ms, {:.2} MB fetched; {} of {} blocks scanned ({:.2}% pruned); {:.0} MB/s/core scanned (warm); {}{}",
                    r.median_ms,
                    mb(r.bytes_fetched),
                    r.warm_median_ms,
                    mb(r.warm_bytes_fetched),
                    r.blocks_scanned,
                    r.blocks_listed,
                    100.0 * r.pruned(),
                    scan_rate,
                    r.result,
                    if r.warnings > 0 { format!("; {} warnings", r.warnings) } else { String::new() }
                ),
                base,
                target,
            );
        }
    }
    Ok(())
}
