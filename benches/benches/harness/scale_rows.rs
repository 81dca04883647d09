//! The scale rows: store requests and time of cold queries on stores
//! shaped like 1 TB a day (`skidder_benches::scale`), measured at two
//! shapes through an S3 server with a fixed latency per request, and
//! extrapolated to the issue's tenant: 300 apps, 32 partitions, 24 hours.

use skidder_benches::scale::{self, Cost, Shape, FIRST_HOUR};
use skidder_common::format::layout::hour_prefix;
use skidder_common::storage::list_all;
use skidder_common::storage::S3Store;
use skidder_common::testing::fault_proxy::FaultProxy;
use skidder_common::testing::MotoServer;
use skidder_indexer::compactor::{compact_hours, CompactOptions};
use skidder_searcher::engine::EngineConfig;

use super::*;

#[derive(clap::Args, Clone)]
pub(crate) struct ScaleOpts {
    /// Store shapes as APPSxPARTITIONS, comma-separated; two or more, so
    /// that each figure can be fitted against the blocks per hour.
    #[arg(long, default_value = "10x4,30x8", value_delimiter = ',')]
    shapes: Vec<String>,
    /// Hours in each store; the newest is left unpacked.
    #[arg(long, default_value_t = 3)]
    hours: u32,
    /// Records per block.
    #[arg(long, default_value_t = 4)]
    records: u32,
    /// The fixed latency the proxy adds to every request.
    #[arg(long, default_value_t = 30)]
    latency_ms: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-work"))]
    work: PathBuf,
}

/// The 1 TB/day tenant of the scale issue.
const TB_APPS: u64 = 300;
const TB_PARTITIONS: u64 = 32;
const TB_BLOCKS_PER_HOUR: f64 = (TB_APPS * TB_PARTITIONS * scale::FLUSHES_PER_HOUR as u64) as f64;

fn parse_shape(s: &str, o: &ScaleOpts) -> Result<Shape> {
    let (a, p) = s
        .split_once('x')
        .with_context(|| format!("shape {s:?}: APPSxPARTITIONS"))?;
    Ok(Shape {
        apps: a.trim().parse()?,
        partitions: p.trim().parse()?,
        hours: o.hours,
        records: o.records,
    })
}

/// The scale report: notes, then a table of measured rows and one of
/// extrapolated rows, as markdown for `docs/BENCHMARKS.md`.
#[derive(Default)]
struct Report {
    notes: Vec<String>,
    measured: Vec<[String; 10]>,
    extrapolated: Vec<[String; 6]>,
}

impl Report {
    fn note(&mut self, n: String) {
        eprintln!("# {n}");
        self.notes.push(n);
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        for n in &self.notes {
            out.push_str(&format!("- {n}\n"));
        }
        out.push_str("\n| store: query | LIST | GET | GET range | requests | of them sliced blooms (a day's) | of them LISTs of runs of hours | MB fetched | ms | result |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for r in &self.measured {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        out.push_str("\n| at 1 TB/day (extrapolated) | requests/hour (compacted: but the day's sliced blooms and runs) | requests/day (newest: the hour) | s/day | requests/7 days | s/7 days |\n|---|---|---|---|---|---|\n");
        for r in &self.extrapolated {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        out
    }
}

/// One query of the scale rows: its name, LogQL, range and step.
struct Case {
    name: &'static str,
    logql: String,
    /// Whether it spans the packed (settled) hours or only the newest.
    newest: bool,
    step: Option<i64>,
    /// A needle by field: it is in one block of one hour, so reading that
    /// block is a cost per query, not per hour. Its twin, the same query
    /// for a trace id no record holds, measures what an hour costs.
    twin: bool,
}

impl Case {
    /// The query for a trace id no record holds, for a case with a twin.
    fn absent(&self, b: &scale::Built) -> Option<String> {
        self.twin
            .then(|| self.logql.replace(&b.needle, scale::ABSENT))
    }
}

/// What one case cost on one store: the query, its absent twin if it has
/// one, and the hours it spanned.
struct CaseCost {
    cost: Cost,
    absent: Option<Cost>,
    hours: i64,
}

fn cases(b: &scale::Built) -> Vec<Case> {
    let n = &b.needle;
    vec![
        Case {
            name: "needle by field, all apps",
            logql: format!(r#"{{__app__=~".+"}} | trace_id="{n}""#),
            newest: false,
            step: None,
            twin: true,
        },
        Case {
            name: "needle by field, one app",
            logql: format!(r#"{{__app__="{}"}} | trace_id="{n}""#, b.needle_app),
            newest: false,
            step: None,
            twin: true,
        },
        Case {
            name: "needle by line filter",
            logql: format!(r#"{{__app__=~".+"}} |= "{n}""#),
            newest: false,
            step: None,
            twin: false,
        },
        Case {
            name: "sum by (level) (count_over_time [5m])",
            logql: r#"sum by (level) (count_over_time({__app__=~".+"}[5m]))"#.into(),
            newest: false,
            step: Some(300_000_000_000),
            twin: false,
        },
        Case {
            name: "newest hour (unpacked): needle by field",
            logql: format!(r#"{{__app__=~".+"}} | trace_id="{n}""#),
            newest: true,
            step: None,
            twin: false,
        },
    ]
}

/// A shape's measured costs, per case, and the hours each case spanned:
/// as the indexer leaves the store (packed), and after `skidder compact`.
struct Measured {
    shape: Shape,
    costs: Vec<CaseCost>,
    compacted: Vec<CaseCost>,
    built: scale::Built,
    objects: usize,
    /// Objects of the settled hours once compacted and their sources
    /// deleted.
    compacted_objects: usize,
}

pub(crate) fn scale_rows(o: &ScaleOpts) -> Result<()> {
    if o.hours < 2 {
        bail!("--hours must be at least 2: packed hours and the newest");
    }
    let shapes = o
        .shapes
        .iter()
        .map(|s| parse_shape(s, o))
        .collect::<Result<Vec<_>>>()?;
    let mut t = Report::default();
    t.note(format!(
        "every request delayed {} ms by the fault proxy in front of moto; {} hours per store, the newest unpacked; {} records per block; 30 flushes per hour",
        o.latency_ms, o.hours, o.records
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut measured = Vec::new();
    for shape in shapes {
        measured.push(measure_shape(o, shape, &rt, &mut t)?);
    }
    extrapolate(&measured, o, &mut t);
    let out = t.markdown();
    println!("{out}");
    std::fs::create_dir_all(&o.work)?;
    std::fs::write(o.work.join("scale.md"), &out)?;
    Ok(())
}

fn measure_shape(
    o: &ScaleOpts,
    shape: Shape,
    rt: &tokio::runtime::Runtime,
    t: &mut Report,
) -> Result<Measured> {
    let dir = o.work.join(format!(
        "scale-{}x{}x{}h-{}r",
        shape.apps, shape.partitions, shape.hours, shape.records
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let t0 = Instant::now();
    let built = scale::build(&dir, shape, o.seed).map_err(anyhow::Error::msg)?;
    let local: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&dir)?);
    let settled = (FIRST_HOUR, FIRST_HOUR + i64::from(shape.hours) - 2);
    rt.block_on(pack_hours(
        &*local,
        &[scale::TENANT.to_owned()],
        settled,
        &PackOptions::default(),
        &|| false,
    ))?;
    let moto = MotoServer::start();
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", moto.process.port), o.seed);
    proxy.fixed_latency(Duration::from_millis(o.latency_ms));
    let objects = upload(rt, &moto, &local, "scale")?;
    t.note(format!(
        "{}x{}: {} blocks/hour, {} records, {objects} objects; built, packed and uploaded in {:.0} s; the indexer made {:.2} PUTs per block",
        shape.apps,
        shape.partitions,
        shape.blocks_per_hour(),
        built.records,
        t0.elapsed().as_secs_f64(),
        built.puts as f64 / built.blocks.max(1) as f64
    ));
    let label = format!("{}x{}", shape.apps, shape.partitions);
    let costs = run_cases(rt, &moto, &proxy, "scale", &built, shape, &label, t)?;

    // The same store after `skidder compact`: a pass that compacts, one
    // that deletes the sources (grace 0), then packing.
    let t0 = Instant::now();
    let copts = CompactOptions {
        grace_ns: 0,
        // Built without Kafka: no checkpoint says the blocks are final.
        require_checkpoint: false,
        ..Default::default()
    };
    let tenants = [scale::TENANT.to_owned()];
    for _ in 0..2 {
        rt.block_on(compact_hours(&*local, &tenants, settled, &copts, &|| false))?;
    }
    rt.block_on(pack_hours(
        &*local,
        &tenants,
        settled,
        &PackOptions::default(),
        &|| false,
    ))?;
    let all = upload(rt, &moto, &local, "scale-compacted")?;
    let settled_objects = rt.block_on(async {
        let mut n = 0;
        for h in settled.0..=settled.1 {
            n += list_all(&*local, &hour_prefix(scale::TENANT, h))
                .await?
                .len();
        }
        anyhow::Ok(n)
    })?;
    t.note(format!(
        "{label} compacted: {all} objects ({settled_objects} in the {} settled hours); compacted, deleted, packed and uploaded in {:.0} s",
        settled.1 - settled.0 + 1,
        t0.elapsed().as_secs_f64()
    ));
    let compacted = run_cases(
        rt,
        &moto,
        &proxy,
        "scale-compacted",
        &built,
        shape,
        &format!("{label} compacted"),
        t,
    )?;
    Ok(Measured {
        shape,
        costs,
        compacted,
        built,
        objects,
        compacted_objects: settled_objects,
    })
}

/// Copies `local` into a new bucket on `moto`; returns the objects copied.
fn upload(
    rt: &tokio::runtime::Runtime,
    moto: &MotoServer,
    local: &Arc<dyn ObjectStore>,
    bucket: &str,
) -> Result<usize> {
    let s3: Arc<dyn ObjectStore> = Arc::new(rt.block_on(async {
        let s3 = S3Store::new(bucket, "", &moto.s3_config()).await;
        s3.create_bucket().await.map(|_| s3)
    })?);
    Ok(rt.block_on(storage::copy_store(local, &s3))?)
}

/// Runs every case cold against `bucket` through the proxy, adding a
/// measured row each, labelled `label`.
#[allow(clippy::too_many_arguments)]
fn run_cases(
    rt: &tokio::runtime::Runtime,
    moto: &MotoServer,
    proxy: &FaultProxy,
    bucket: &str,
    built: &scale::Built,
    shape: Shape,
    label: &str,
    t: &mut Report,
) -> Result<Vec<CaseCost>> {
    let through_proxy: Arc<dyn ObjectStore> = Arc::new(rt.block_on(S3Store::new(
        bucket,
        "",
        &skidder_common::storage::S3Config {
            endpoint: Some(proxy.endpoint()),
            ..moto.s3_config()
        },
    )));
    let mut costs = Vec::new();
    for case in cases(built) {
        let (first, n) = if case.newest {
            (FIRST_HOUR + i64::from(shape.hours) - 1, 1)
        } else {
            (FIRST_HOUR, i64::from(shape.hours) - 1)
        };
        let (mut start, mut end) = scale::hours(first, n);
        if let Some(step) = case.step {
            // Windows (t - 5m, t] for t in [start + step, end - step]: all
            // inside the hours, so no neighbouring hour is listed.
            (start, end) = (start + step, end - step);
        }
        let run = |logql: &str, name: String, t: &mut Report| -> Result<Cost> {
            let cost = rt
                .block_on(scale::cold(&through_proxy, logql, start, end, case.step))
                .map_err(anyhow::Error::msg)?;
            t.measured.push([
                format!("{label}: {name}"),
                cost.of("list").to_string(),
                cost.of("get").to_string(),
                cost.of("get_range").to_string(),
                cost.total().to_string(),
                format!("{} ({})", cost.slices, cost.day_slices),
                cost.runs.to_string(),
                format!("{:.1}", cost.bytes_fetched as f64 / 1e6),
                format!("{:.0}", cost.ms),
                cost.result.clone(),
            ]);
            Ok(cost)
        };
        let cost = run(&case.logql, case.name.to_owned(), t)?;
        let absent = match case.absent(built) {
            Some(q) => {
                let c = run(&q, format!("{}, absent needle", case.name), t)?;
                if c.result != "0 lines" {
                    bail!("{q}: the absent needle found {}", c.result);
                }
                Some(c)
            }
            None => None,
        };
        costs.push(CaseCost {
            cost,
            absent,
            hours: n,
        });
    }
    Ok(costs)
}

/// Each figure per hour as a line in the blocks per hour, through the
/// smallest and the largest shape, then read at 288,000 blocks an hour.
fn extrapolate(m: &[Measured], o: &ScaleOpts, t: &mut Report) {
    let (Some(lo), Some(hi)) = (
        m.iter().min_by_key(|x| x.shape.blocks_per_hour()),
        m.iter().max_by_key(|x| x.shape.blocks_per_hour()),
    ) else {
        return;
    };
    // Uncompacted, the costs grow with the blocks per hour; compacted,
    // with the apps (one compacted block per app-hour at these sizes).
    fn small(s: &Shape) -> f64 {
        s.blocks_per_hour() as f64
    }
    fn apps(s: &Shape) -> f64 {
        f64::from(s.apps)
    }
    // A compacted day lists in runs of hours, one paged LIST each: its
    // pages follow the objects of the run's hours at 1 TB/day, which the
    // harness's small stores cannot show (their runs are one page).
    let settled_hours = f64::from(hi.shape.hours - 1);
    let per_app_hour = hi.compacted_objects as f64 / (apps(&hi.shape) * settled_hours);
    let run_hours = EngineConfig::default().hours_per_listing.max(1) as f64;
    let run_pages = (run_hours * per_app_hour * TB_APPS as f64 / 1000.0).ceil();
    let runs_a_day = (24.0 / run_hours).ceil();
    let run_pages_a_day = runs_a_day * run_pages;
    t.note(format!(
        "1 TB/day (extrapolated), compacted: a day lists in {runs_a_day:.0} runs of {run_hours:.0} hours, {run_pages:.0} pages each ({:.0} objects an hour)",
        per_app_hour * TB_APPS as f64
    ));
    type Variant = (
        &'static str,
        fn(&Shape) -> f64,
        f64,
        fn(&Measured) -> &[CaseCost],
    );
    let variants: [Variant; 2] = [
        ("", small, TB_BLOCKS_PER_HOUR, |m| &m.costs),
        ("compacted: ", apps, TB_APPS as f64, |m| &m.compacted),
    ];
    for (prefix, x, at, costs_of) in variants {
        let compacted = !prefix.is_empty();
        for (i, case) in cases(&hi.built).iter().enumerate() {
            // The newest hour is never compacted: its row is the one above.
            if case.newest && compacted {
                continue;
            }
            // Compacted, a day's sliced blooms are read once for all its
            // hours (the measured hours are of one day), and its runs are
            // paged by its objects: costs per day, the rest per hour.
            // Uncompacted, a day at 1 TB is over what one object slices
            // (2^20 blocks) and its hours are too big for runs, so every
            // request is per hour.
            let per_day = |c: &Cost| {
                if compacted {
                    (c.day_slices + c.runs) as f64
                } else {
                    0.0
                }
            };
            // What every hour costs: the absent twin's where there is one,
            // but what its answer costs once (retention cut-offs, the LIST
            // that explains an empty answer).
            let per_hour = |ms: &Measured| {
                let cc = &costs_of(ms)[i];
                let c = cc.absent.as_ref().unwrap_or(&cc.cost);
                let hourly = (c.total() - c.once) as f64 - per_day(c);
                (hourly / cc.hours as f64, c.ms / c.total().max(1) as f64)
            };
            // What finding the needle adds, once per query.
            let found = |ms: &Measured| {
                let cc = &costs_of(ms)[i];
                cc.absent.as_ref().map_or(cc.cost.once as f64, |a| {
                    (cc.cost.total() as f64 - per_day(&cc.cost))
                        - ((a.total() - a.once) as f64 - per_day(a))
                })
            };
            let day_slices = |ms: &Measured| costs_of(ms)[i].cost.day_slices as f64;
            let fixed = if compacted {
                day_slices(lo).max(day_slices(hi)) + run_pages_a_day
            } else {
                0.0
            };
            let once = found(lo).max(found(hi)).max(0.0);
            let (lo_r, _) = per_hour(lo);
            let (hi_r, hi_ms_per_request) = per_hour(hi);
            let Some((a, b)) = scale::line_through((x(&lo.shape), lo_r), (x(&hi.shape), hi_r))
            else {
                continue;
            };
            // A cost that does not grow with size (one app, compacted) is
            // taken at the largest shape, never fitted below it.
            let hour = (a + b * at).max(hi_r);
            // Time scales with requests at the largest shape's pace: the
            // same concurrency, the same latency per request.
            let secs = |requests: f64| format!("{:.1}", requests * hi_ms_per_request / 1e3);
            let name = format!("{prefix}{}", case.name);
            let row = if case.newest {
                [
                    name,
                    format!("{hour:.0}"),
                    format!("{:.0}", hour + once),
                    secs(hour + once),
                    "-".into(),
                    "-".into(),
                ]
            } else {
                let day = hour * 24.0 + fixed + once;
                let week = (hour * 24.0 + fixed) * 7.0 + once;
                [
                    name,
                    format!("{hour:.1}"),
                    format!("{day:.0}"),
                    secs(day),
                    format!("{week:.0}"),
                    secs(week),
                ]
            };
            t.extrapolated.push(row);
        }
    }
    // Ingest: PUTs per block measured, blocks and checkpoints per day.
    let puts_per_block = hi.built.puts as f64 / hi.built.blocks.max(1) as f64;
    let blocks_day = TB_BLOCKS_PER_HOUR * 24.0;
    let checkpoints_day = TB_PARTITIONS as f64 * 86_400.0
        / IndexerConfig::default()
            .upload
            .checkpoint_interval_secs
            .max(1) as f64;
    let puts_day = puts_per_block * blocks_day + checkpoints_day;
    t.note(format!(
        "1 TB/day (extrapolated) ingest: {puts_day:.0} PUTs/day ({puts_per_block:.2} per block, {checkpoints_day:.0} of them checkpoints), {:.0} USD/month at $0.005 per 1,000",
        puts_day * 30.0 * 0.005 / 1000.0
    ));
    let objects_per_block =
        hi.objects as f64 / (hi.shape.blocks_per_hour() as f64 * f64::from(hi.shape.hours));
    t.note(format!(
        "1 TB/day (extrapolated): a settled day holds {:.0} objects ({objects_per_block:.2} per block)",
        objects_per_block * blocks_day
    ));
    t.note(format!(
        "1 TB/day (extrapolated), compacted: a settled day holds {:.0} objects ({per_app_hour:.2} per app-hour, 300 apps; an app-hour of 1 TB/day is about 139 MB raw, one compacted block at --target-mib 128 or more)",
        per_app_hour * TB_APPS as f64 * 24.0
    ));
    t.note(format!(
        "targets at 1 TB/day: cold needle over 1 day <= 100 requests and <= 2 s at {} ms per request, 7 days <= 700 and <= 10 s, one app over 1 day <= 30, newest hour <= 2 s, <= 500k PUTs/day, <= 100k objects per settled day; peers on one term query (their published benchmark): Quickwit 206 GETs over 212 GB, Loki 14,821",
        o.latency_ms
    ));
}
