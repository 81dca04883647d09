//! Slicing a whole day's bloom filters at the 1 TB/day shape: a day of
//! compacted hours (about 300 blocks an hour, one per app, each filter
//! about 700 KiB: 5 GB a day) is more than any process should hold, so
//! `skidder pack` spills the filters and streams the object to the store
//! in parts. This row builds such a day in a local store, packs its
//! hours, then times the day's slicing and its peak memory against a
//! baseline measured in the same run: reading the day's packs, which the
//! slicing must do anyway.

use skidder_common::format::index::{build_bloom_with_bytes, StreamEntry};
use skidder_common::format::layout::{day_prefix_of, hour_prefix};
use skidder_common::format::slices;
use skidder_common::storage::list_all;
use skidder_indexer::packer::PackReport;

use super::*;

#[derive(clap::Args, Clone)]
pub(crate) struct DaySlicesOpts {
    /// Blocks in each hour (a compacted hour at 1 TB a day has about 300,
    /// one per app).
    #[arg(long, default_value_t = 300)]
    blocks_per_hour: usize,
    /// Each block's filter, in KiB (about 700 at 1 TB a day).
    #[arg(long, default_value_t = 700)]
    filter_kib: usize,
    #[arg(long, default_value_t = 24)]
    hours: i64,
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-work"))]
    work: PathBuf,
}

const TENANT: &str = "bench";
/// 2026-12-01T00:00Z, in hours since the epoch.
const FIRST_HOUR: i64 = 492_840;

/// Peak resident memory since the last reset, and the current, in bytes.
fn memory() -> (u64, u64) {
    let pid = std::process::id();
    (measure::peak_rss(pid), measure::rss(pid))
}

pub(crate) fn day_slices(o: &DaySlicesOpts) -> Result<()> {
    let dir = o.work.join("day-slices");
    let _ = std::fs::remove_dir_all(&dir);
    let store_dir = dir.join("store");
    let spill = dir.join("spill");
    std::fs::create_dir_all(&spill)?;
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&store_dir)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (first, last) = (FIRST_HOUR, FIRST_HOUR + o.hours - 1);

    let started = Instant::now();
    rt.block_on(write_indexes(&*store, o))?;
    let filters = ((o.hours as u64) * (o.blocks_per_hour as u64) * (o.filter_kib as u64)) << 10;
    println!(
        "wrote {} indexes, {:.2} GB of filters, in {:.0} s",
        o.hours as usize * o.blocks_per_hour,
        filters as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
    // The hours' packs (and their own sliced blooms), the day left out.
    let pack = |opts: &PackOptions| -> Result<PackReport> {
        Ok(rt.block_on(pack_hours(
            &*store,
            &[TENANT.to_owned()],
            (first, last),
            opts,
            &|| false,
        ))?)
    };
    let started = Instant::now();
    let report = pack(&PackOptions {
        max_day_slices_bytes: 0,
        ..Default::default()
    })?;
    if report.hours_packed != o.hours as usize || report.days_sliced != 0 {
        bail!("packing the hours: {report:?}");
    }
    println!(
        "packed {} hours in {:.0} s",
        o.hours,
        started.elapsed().as_secs_f64()
    );
    // The hours' own sliced blooms play no part: free their disk (the
    // indexes must stay, for the listing vouches for the packs).
    for m in rt.block_on(list_all(&*store, "tenant="))? {
        if m.key.ends_with(".slices") {
            store_dir
                .join(&m.key)
                .exists()
                .then_some(())
                .context("a listed object")?;
            std::fs::remove_file(store_dir.join(&m.key))?;
        }
    }

    // Baseline: read every pack of the day, as slicing does first.
    let packs: Vec<String> = rt
        .block_on(list_all(&*store, "tenant="))?
        .into_iter()
        .filter(|m| m.key.ends_with(".pack"))
        .map(|m| m.key)
        .collect();
    let (cpu, started) = (measure::self_cpu(), Instant::now());
    let mut read = 0;
    for key in &packs {
        read += rt.block_on(store.get(key))?.len();
    }
    let read_secs = started.elapsed().as_secs_f64();
    let read_cpu = (measure::self_cpu() - cpu).as_secs_f64();

    // The day, sliced whole.
    reset_peak_rss();
    let (_, rss_before) = memory();
    let (cpu, started) = (measure::self_cpu(), Instant::now());
    let report = pack(&PackOptions {
        spill_dir: Some(spill.clone()),
        ..Default::default()
    })?;
    let slice_secs = started.elapsed().as_secs_f64();
    let slice_cpu = (measure::self_cpu() - cpu).as_secs_f64();
    let (peak, _) = memory();
    if report.days_sliced != 1 {
        bail!("the day was not sliced whole: {report:?}");
    }
    let day = day_prefix_of(&hour_prefix(TENANT, first))
        .context("a day prefix")?
        .to_owned();
    let objects = rt.block_on(list_all(&*store, &format!("{day}_blooms.")))?;
    let [object] = objects.as_slice() else {
        bail!("one day object: {objects:?}");
    };
    let prelude = rt.block_on(store.get_range(&object.key, 0..slices::PRELUDE_LEN as u64))?;
    let head_len = slices::head_len(&prelude)?;
    let head =
        slices::Head::decode(&rt.block_on(store.get_range(&object.key, 0..head_len as u64))?)?;
    if head.total_len != object.size || head.blocks.len() != o.hours as usize * o.blocks_per_hour {
        bail!(
            "the day object holds {} blocks in {} bytes",
            head.blocks.len(),
            object.size
        );
    }
    let left = std::fs::read_dir(&spill)?.count();
    println!();
    println!("| day of {} hours x {} blocks, filters of {} KiB | wall s | CPU s | MB/s of filters (wall) | peak memory over the start |", o.hours, o.blocks_per_hour, o.filter_kib);
    println!("|---|---|---|---|---|");
    println!(
        "| baseline: read the day's {} packs ({:.2} GB) | {read_secs:.1} | {read_cpu:.1} | {:.0} | |",
        packs.len(),
        read as f64 / 1e9,
        filters as f64 / 1e6 / read_secs
    );
    println!(
        "| slice the day whole: a {:.2} GB object of {} blocks in {} groups | {slice_secs:.1} | {slice_cpu:.1} | {:.0} | {} MiB |",
        object.size as f64 / 1e9,
        head.blocks.len(),
        head.groups.len(),
        filters as f64 / 1e6 / slice_secs,
        peak.saturating_sub(rss_before) >> 20
    );
    println!(
        "ratio, slicing over reading: {:.2}x wall; files left in the spill directory: {left}",
        slice_secs / read_secs
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Resets the kernel's peak-RSS mark (`VmHWM`) to the current RSS.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Writes the day's index objects: each a filter of the same shape whose
/// bits are random, half set, as a full filter's are.
async fn write_indexes(store: &dyn ObjectStore, o: &DaySlicesOpts) -> Result<()> {
    let bytes = o.filter_kib << 10;
    // About 14 bits a token: a filter at 0.1%.
    let template = build_bloom_with_bytes((0..(bytes * 8 / 14) as u32).map(u64::from), bytes);
    let header = template.len() - bytes;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for hour in FIRST_HOUR..FIRST_HOUR + o.hours {
        let prefix = hour_prefix(TENANT, hour);
        for b in 0..o.blocks_per_hour {
            let mut bloom = template.clone();
            for chunk in bloom[header..].chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            let app = format!("app{b:03}");
            let stem = format!("{prefix}app={app}/logs.0.{:020}.e0000000001", b * 1000);
            let time = hour * 3_600_000_000_000;
            let index = skidder_common::format::index::BlockIndex {
                version: 3,
                min_time_ns: time,
                max_time_ns: time + 1,
                record_count: 1,
                raw_bytes: 1,
                tenant: TENANT.to_owned(),
                app: app.clone(),
                hour,
                topic: "logs".to_owned(),
                partition: 0,
                first_offset: b as i64 * 1000,
                last_offset: b as i64 * 1000,
                data_key: format!("{stem}.seq"),
                data_size: 1,
                data_crc32c: 0,
                streams: vec![StreamEntry {
                    labels: vec![("app".to_owned(), app)],
                    first_record: 0,
                    record_count: 1,
                    min_time_ns: time,
                    max_time_ns: time + 1,
                }],
                bloom,
                offsets: None,
            };
            store
                .put(&format!("{stem}.idx"), index.encode().into())
                .await?;
        }
    }
    Ok(())
}
