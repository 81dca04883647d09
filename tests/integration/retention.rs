//! Retention, archive and restore, as an operator runs them: real log
//! lines spread over ten days, two tenants and three apps go through
//! Apache Kafka and the real indexer into moto; `skidder compact` packs
//! them. Then:
//!
//! 1. the AWS CLI archives a tenant (`aws s3 sync`) to a second bucket;
//! 2. `skidder retention --dry-run` lists what would go and changes
//!    nothing;
//! 3. a retention run is aborted half way through its deletions: a running
//!    searcher already hides every expired hour whole;
//! 4. the next run finishes: exactly the objects the policy expires are
//!    gone (by age per app, and by quota for the other tenant), searches
//!    before the cut-off return nothing and after it are unchanged;
//! 5. the AWS CLI copies the archive back and a longer policy lowers the
//!    cut-offs: the searcher that ran all along answers exactly as before;
//! 6. the archive copied to a directory answers the same through
//!    `skidder search --store file://…`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use skidder_common::storage::{list_all, S3Store};
use skidder_common::testing::{free_port, KafkaBroker, MotoServer};

use crate::support::{
    aws, http_get, metric, sigterm, stop_clean, wait_checkpointed, wait_stored, Guard,
    TestProducer, BIN,
};

const NS_PER_HOUR: i64 = 3_600_000_000_000;
const DAY_NS: i64 = 24 * NS_PER_HOUR;
const TENANTS: [&str; 2] = ["acme", "globex"];
const APPS: [&str; 3] = ["web", "api", "audit"];
/// Days back of the records; none within half a day of an age in the
/// policy (4 and 7 days), so the wall clock moving during the test
/// cannot change what expires.
const DAYS_BACK: [i64; 8] = [0, 1, 2, 3, 5, 6, 8, 9];
/// Records per (tenant, app, day, slot); three slots 5 hours apart.
const PER_SLOT: usize = 12;

/// Runs the AWS CLI against moto; fails the test if it fails.
fn aws_cli(moto: &MotoServer, args: &[&str]) {
    let out = Command::new(aws())
        .args(args)
        .args(["--endpoint-url", &moto.endpoint()])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_skidder(args: &[&str], moto: &MotoServer, env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--s3-endpoint", &moto.endpoint()])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("SKIDDER_LOG", "info")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A key's tenant, hour (since the epoch) and app folder, parsed here
/// from the layout the README documents.
/// The day folder (`tenant=<t>/dt=<date>/`) of a day's own object.
fn day_object(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("tenant=")?;
    let (_, rest) = rest.split_once('/')?;
    let (_, name) = rest.strip_prefix("dt=")?.split_once('/')?;
    (!name.is_empty() && !name.contains('/')).then(|| &key[..key.len() - name.len()])
}

fn place(key: &str) -> Option<(String, i64, Option<String>)> {
    let rest = key.strip_prefix("tenant=")?;
    let (tenant, rest) = rest.split_once('/')?;
    let (date, rest) = rest.strip_prefix("dt=")?.split_once('/')?;
    let (hh, rest) = rest.strip_prefix("hour=")?.split_once('/')?;
    let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let start = day
        .and_hms_opt(hh.parse().ok()?, 0, 0)?
        .and_utc()
        .timestamp();
    let app = rest
        .strip_prefix("app=")
        .and_then(|r| r.split_once('/'))
        .map(|(a, _)| a.to_owned());
    Some((tenant.to_owned(), start / 3600, app))
}

/// Every (time, line) a query returns, from Loki's JSON.
fn entries(body: &str) -> BTreeSet<(i64, String)> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{body}");
    let mut out = BTreeSet::new();
    for stream in v["data"]["result"].as_array().unwrap() {
        for pair in stream["values"].as_array().unwrap() {
            let t: i64 = pair[0].as_str().unwrap().parse().unwrap();
            out.insert((t, pair[1].as_str().unwrap().to_owned()));
        }
    }
    out
}

struct Searcher {
    child: Guard,
    port: u16,
    _config: tempfile::NamedTempFile,
}

impl Searcher {
    fn start(moto: &MotoServer) -> Searcher {
        let config = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            config.path(),
            "multi_tenant = true\nmax_limit = 1000000\nlisting_cache_secs = 1\n",
        )
        .unwrap();
        let port = free_port();
        let child = Guard(
            Command::new(BIN)
                .args(["searcher", "--config", config.path().to_str().unwrap()])
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--store", "s3://live/skidder", "--s3-endpoint"])
                .arg(moto.endpoint())
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env("SKIDDER_LOG", "warn")
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(port, "/ready").is_err() {
            assert!(Instant::now() < deadline, "searcher never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        Searcher {
            child,
            port,
            _config: config,
        }
    }

    /// Every line of `app` in `tenant` over the test's whole range.
    fn lines(&self, tenant: &str, app: &str, range: (i64, i64)) -> BTreeSet<(i64, String)> {
        let mut resp = ureq::get(format!(
            "http://127.0.0.1:{}/loki/api/v1/query_range",
            self.port
        ))
        .query("query", format!(r#"{{__app__="{app}"}}"#))
        .query("start", range.0.to_string())
        .query("end", range.1.to_string())
        .query("limit", "1000000")
        .header("X-Scope-OrgID", tenant)
        .call()
        .unwrap();
        entries(&resp.body_mut().read_to_string().unwrap())
    }

    /// Every tenant's and app's lines.
    fn everything(&self, range: (i64, i64)) -> Answers {
        let mut out = BTreeMap::new();
        for t in TENANTS {
            for a in APPS {
                out.insert((t.to_owned(), a.to_owned()), self.lines(t, a, range));
            }
        }
        out
    }
}

type Answers = BTreeMap<(String, String), BTreeSet<(i64, String)>>;

/// Fails with how many lines each tenant and app has too few or too many.
#[track_caller]
fn assert_answers(got: &Answers, want: &Answers, what: &str) {
    let diffs: Vec<String> = want
        .iter()
        .filter_map(|(k, w)| {
            let g = got.get(k)?;
            let (missing, extra) = (w.difference(g).count(), g.difference(w).count());
            (missing + extra > 0).then(|| format!("{k:?}: {missing} missing, {extra} extra"))
        })
        .collect();
    assert!(
        diffs.is_empty() && got.len() == want.len(),
        "{what}: {diffs:?}"
    );
}

/// `answers` without the hours `gone` says are deleted.
fn kept(answers: &Answers, gone: &dyn Fn(&str, &str, i64) -> bool) -> Answers {
    answers
        .iter()
        .map(|((t, a), lines)| {
            let lines = lines
                .iter()
                .filter(|(ns, _)| !gone(t, a, ns.div_euclid(NS_PER_HOUR)))
                .cloned()
                .collect();
            ((t.clone(), a.clone()), lines)
        })
        .collect()
}

/// Real log lines, for the records' messages.
fn real_lines() -> Vec<String> {
    let data = skidder_common::testing::shared_data_dir();
    let text = std::fs::read_to_string(data.join("loghub/Apache_2k.log")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The body of a `/metrics` page.
fn metrics_page(port: u16) -> String {
    let response = http_get(port, "/metrics").unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn retention_deletes_exactly_what_the_policy_says_and_archives_restore_with_the_aws_cli() {
    let dir = tempfile::tempdir().unwrap();
    let moto = MotoServer::start();
    let kafka = KafkaBroker::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let live = rt.block_on(S3Store::new("live", "skidder/", &moto.s3_config()));
    rt.block_on(live.create_bucket()).unwrap();
    aws_cli(&moto, &["s3", "mb", "s3://archive"]);

    // Produce: each tenant is a topic; the app a field.
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let lines = real_lines();
    let mut producer = TestProducer::new(&kafka.bootstrap());
    let mut sent = 0usize;
    for tenant in TENANTS {
        kafka.create_topic(tenant, 2);
        for app in APPS {
            for d in DAYS_BACK {
                for slot in 0..3i64 {
                    for i in 0..PER_SLOT {
                        let t =
                            now - d * DAY_NS - slot * 5 * NS_PER_HOUR - i as i64 * 1_000_000_007;
                        let ts = chrono::DateTime::from_timestamp_nanos(t)
                            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                        let msg = &lines[sent % lines.len()];
                        let rec = serde_json::json!({"ts": ts, "app": app, "msg": msg, "n": sent});
                        producer.send(tenant, app, rec.to_string().as_bytes(), now / 1_000_000);
                        sent += 1;
                    }
                }
            }
        }
    }
    producer.finish();
    let config = write(
        dir.path(),
        "indexer.toml",
        r#"
[parse]
timestamp_fields = ["ts"]
app = { template = "{app}" }
tenant = "topic"
[blocks]
flush_interval_secs = 2
[upload]
checkpoint_interval_secs = 1
"#,
    );
    let metrics_port = free_port();
    let mut indexer = Guard(
        Command::new(BIN)
            .args(["indexer", "--config", &config])
            .args([
                "--kafka-brokers",
                &kafka.bootstrap(),
                "--topics",
                "acme,globex",
            ])
            .args(["--group-id", "retention", "--store", "s3://live/skidder"])
            .args(["--s3-endpoint", &moto.endpoint()])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("SKIDDER_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_stored(metrics_port, sent as u64, Duration::from_secs(300));
    // The compactor below takes only blocks a checkpoint has passed.
    wait_checkpointed(&rt, &live, &TENANTS, 2, sent as i64);
    let indexer_page = metrics_page(metrics_port);
    stop_clean(&mut indexer);
    // Compact and pack every hour, so archives carry manifests and packs.
    for _ in 0..2 {
        let out = run_skidder(
            &[
                "compact",
                "--store",
                "s3://live/skidder",
                "--since",
                "300h",
                "--settle",
                "0s",
                "--grace",
                "0s",
                "--min-blocks",
                "1",
            ],
            &moto,
            &[],
        );
        ok(&out, "compact");
    }
    let store_now = |rt: &tokio::runtime::Runtime| {
        rt.block_on(list_all(&live, ""))
            .unwrap()
            .into_iter()
            .map(|m| (m.key, m.size))
            .collect::<BTreeMap<String, u64>>()
    };
    let before = store_now(&rt);
    assert!(
        before.keys().any(|k| k.contains("/_manifest.")),
        "compaction wrote no manifest"
    );

    let searcher = Searcher::start(&moto);
    let range = (now - 11 * DAY_NS, now + 60_000_000_000);
    let baseline = searcher.everything(range);
    let total: usize = baseline.values().map(BTreeSet::len).sum();
    assert_eq!(total, sent, "the searcher must find every record first");

    // 1. Archive tenant acme (and the ledger's epoch claims, which decide
    //    which blocks of a crashed indexer count) with the AWS CLI.
    aws_cli(
        &moto,
        &[
            "s3",
            "sync",
            "s3://live/skidder/tenant=acme/",
            "s3://archive/skidder/tenant=acme/",
            "--exclude",
            "_retention.json",
        ],
    );
    aws_cli(
        &moto,
        &[
            "s3",
            "sync",
            "s3://live/skidder/_ledger/",
            "s3://archive/skidder/_ledger/",
            "--exclude",
            "*",
            "--include",
            "*/epoch.*.json",
        ],
    );

    // The policy: 4 days, audit 7; globex also capped at the bytes of its
    // hours from two days back on, so its quota is what binds.
    let quota_hour = (now - 2 * DAY_NS).div_euclid(NS_PER_HOUR);
    let globex_quota: u64 = before
        .iter()
        .filter(|(k, _)| place(k).is_some_and(|(t, h, _)| t == "globex" && h >= quota_hour))
        .map(|(_, s)| s)
        .sum();
    let policy = write(
        dir.path(),
        "retention.toml",
        &format!(
            "[retention]\ndefault = \"4d\"\n[retention.apps]\naudit = \"7d\"\n\
             [retention.tenants.globex]\nmax_bytes = {globex_quota}\n"
        ),
    );
    let age_gone = |app: &str, hour: i64, now: i64| {
        let days = if app == "audit" { 7 } else { 4 };
        (hour + 1) * NS_PER_HOUR <= now - days * DAY_NS
    };
    let gone = |t: &str, a: &str, hour: i64| match t {
        "globex" => hour < quota_hour,
        _ => age_gone(a, hour, now),
    };
    let retention = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["retention", "--store", "s3://live/skidder", "--retention"];
        args.push(&policy);
        args.extend(["--retention-grace", "2s"]);
        args.extend(extra);
        run_skidder(&args, &moto, env)
    };

    // 2. A dry run names what would go and changes nothing.
    let plan = ok(&retention(&["--dry-run"], &[]), "retention --dry-run");
    assert!(
        plan.contains("tenant acme:") && plan.contains("tenant globex:"),
        "{plan}"
    );
    assert!(plan.contains("delete tenant=acme/dt="), "{plan}");
    assert_eq!(store_now(&rt), before, "a dry run deleted or wrote");

    // 3. A run aborted half way through deleting: the searcher already
    //    hides every expired hour whole, and keeps the rest.
    if cfg!(feature = "failpoints") {
        let out = retention(&[], &[("FAILPOINTS", "retention::mid_delete=return")]);
        assert!(!out.status.success(), "the crash point did not fire");
        let half = store_now(&rt);
        assert!(
            half.len() < before.len()
                && half.keys().any(|k| place(k)
                    .is_some_and(|(t, h, a)| { a.as_deref().is_some_and(|a| gone(&t, a, h)) })),
            "the abort did not leave half an expired set"
        );
        std::thread::sleep(Duration::from_millis(1500));
        assert_answers(
            &searcher.everything(range),
            &kept(&baseline, &gone),
            "a half-deleted store must read as fully deleted",
        );
    }

    // 4. The next run finishes: exactly the expired objects are gone.
    ok(&retention(&[], &[]), "retention");
    let after = store_now(&rt);
    let apps_in_hour = |t: &str, h: i64| -> BTreeSet<String> {
        before
            .keys()
            .filter_map(|k| place(k).filter(|(kt, kh, _)| kt == t && *kh == h)?.2)
            .collect()
    };
    let expired = |key: &str| -> Option<bool> {
        let (t, h, app) = place(key)?;
        Some(match &app {
            Some(a) => gone(&t, a, h),
            None => apps_in_hour(&t, h).iter().all(|a| gone(&t, a, h)),
        })
    };
    for key in before.keys() {
        if let Some(day) = day_object(key) {
            // A day's sliced blooms go once nothing of the day stays.
            let all_gone = before
                .keys()
                .filter(|k| k.starts_with(day) && place(k).is_some())
                .all(|k| expired(k) == Some(true));
            assert_eq!(after.contains_key(key), !all_gone, "{key}");
            continue;
        }
        let Some(expired) = expired(key) else {
            assert!(
                after.contains_key(key),
                "{key} is outside retention's reach"
            );
            continue;
        };
        assert_eq!(after.contains_key(key), !expired, "{key}");
    }
    let new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert_eq!(
        new,
        [
            "tenant=acme/_retention.json",
            "tenant=globex/_retention.json"
        ],
        "retention writes only its markers"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let trimmed = kept(&baseline, &gone);
    assert_ne!(trimmed, baseline, "the policy must expire something");
    assert_answers(&searcher.everything(range), &trimmed, "after retention");
    for t in TENANTS {
        for a in APPS {
            assert!(
                !trimmed[&(t.to_owned(), a.to_owned())].is_empty(),
                "{t}/{a} lost everything"
            );
        }
    }

    // 5. Restore acme from the archive, and lower its cut-offs with a
    //    longer policy; the searcher that ran all along answers as before
    //    for acme (globex's hours are gone: they were not archived).
    aws_cli(
        &moto,
        &[
            "s3",
            "sync",
            "s3://archive/skidder/tenant=acme/",
            "s3://live/skidder/tenant=acme/",
        ],
    );
    let longer = write(
        dir.path(),
        "longer.toml",
        "[retention]\ndefault = \"30d\"\n",
    );
    let out = run_skidder(
        &[
            "retention",
            "--store",
            "s3://live/skidder",
            "--retention",
            &longer,
        ],
        &moto,
        &[],
    );
    ok(&out, "retention with the longer policy");
    std::thread::sleep(Duration::from_millis(1500));
    let restored = kept(&baseline, &|t, a, h| t == "globex" && gone(t, a, h));
    assert_answers(&searcher.everything(range), &restored, "after the restore");

    // 6. The archive, copied to a laptop's directory, answers the same.
    let laptop = dir.path().join("laptop");
    aws_cli(
        &moto,
        &[
            "s3",
            "cp",
            "--recursive",
            "s3://archive/skidder/",
            laptop.to_str().unwrap(),
        ],
    );
    let (from, to) = (
        chrono::DateTime::from_timestamp_nanos(range.0).to_rfc3339(),
        chrono::DateTime::from_timestamp_nanos(range.1).to_rfc3339(),
    );
    for app in APPS {
        let out = Command::new(BIN)
            .args(["search", "--store"])
            .arg(format!("file://{}", laptop.display()))
            .args(["--tenant", "acme", "--from", &from, "--to", &to])
            .args(["--limit", "1000000", "--output", "json"])
            .arg(format!(r#"{{__app__="{app}"}}"#))
            .output()
            .unwrap();
        let body = ok(&out, "skidder search --store file://");
        assert_eq!(
            entries(&body),
            baseline[&("acme".to_owned(), app.to_owned())],
            "{app} from the laptop's copy"
        );
    }

    // 7. The maintenance process on a timer, with its metrics; then every
    //    page must back the shipped dashboards and alert rules.
    let maintenance_port = free_port();
    let mut maintenance = Guard(
        Command::new(BIN)
            .args(["compact", "--store", "s3://live/skidder", "--since", "300h"])
            .args(["--every", "1h", "--retention", &longer])
            .args(["--metrics-listen", &format!("127.0.0.1:{maintenance_port}")])
            .args(["--s3-endpoint", &moto.endpoint()])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("SKIDDER_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let maintenance_page = loop {
        if let Ok(page) = http_get(maintenance_port, "/metrics") {
            if metric(&page, r#"skidder_retention_passes_total{result="ok"}"#) >= 1 {
                break metrics_page(maintenance_port);
            }
        }
        assert!(Instant::now() < deadline, "no retention pass in 120 s");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        metric(
            &maintenance_page,
            r#"skidder_compactor_passes_total{result="ok"}"#
        ),
        1
    );
    let stored = metric(
        &maintenance_page,
        r#"skidder_tenant_stored_objects{tenant="acme"}"#,
    );
    let acme_objects = store_now(&rt)
        .keys()
        .filter(|k| k.starts_with("tenant=acme/"))
        .count() as u64;
    assert_eq!(stored, acme_objects, "acme's stored objects, as listed");
    stop_clean(&mut maintenance);
    let searcher_page = metrics_page(searcher.port);
    crate::observability::check_against_scrapes(&[
        ("indexer", indexer_page),
        ("searcher", searcher_page),
        ("maintenance", maintenance_page),
    ]);
    sigterm(searcher.child.id());
}
