//! Retention: deletes a tenant's hours once they are older than its
//! policy, or once the tenant holds more than its quota, oldest first.
//!
//! A pass never deletes part of an hour where a reader could see it. It
//! first publishes each tenant's cut-offs (`format::retention`), which
//! searchers read before listing; it waits `grace` for every searcher to
//! have read them (longer than their listing cache and any query); only
//! then does it delete. A crash anywhere leaves hours the published
//! cut-off already hides, and the next pass deletes what is left.
//!
//! The unit is the hour of one app (its `app=` folder), or the whole hour
//! prefix (packs, manifest, sliced blooms) once every app in it is gone.
//! Dead letters go by their age in the store. The ledger is left to the
//! indexer (see `docs/DESIGN.md`, "Retention").

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use skidder_common::format::layout::{
    day_object_last_hour, hour_and_app, tenant_prefix, DEAD_LETTER_ROOT, NS_PER_HOUR,
};
use skidder_common::format::retention::{marker_key, Cutoffs, RETENTION_VERSION};
use skidder_common::storage::{list_all, ObjectMeta, ObjectStore, StorageError, StorageErrorKind};
use thiserror::Error;

use crate::failpoints::crash_point;

/// The crash points of a retention pass, for the fault tests.
pub const POINTS: &[&str] = &["retention::after_marker", "retention::mid_delete"];

/// DELETEs in flight.
const DELETE_CONCURRENCY: usize = 32;

/// The `[retention]` table of a policy file.
///
/// Precedence for an app of a tenant: the tenant's `apps`, the top-level
/// `apps`, the tenant's `default`, the top-level `default`. With none of
/// them, the app is kept for ever (or until the quota).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Keep hours this long after they end, e.g. `"30d"`.
    #[serde(default, deserialize_with = "duration::option")]
    pub default: Option<Duration>,
    /// Per-app ages, e.g. `audit = "365d"`.
    #[serde(default, deserialize_with = "duration::map")]
    pub apps: BTreeMap<String, Duration>,
    /// Most bytes each tenant keeps, e.g. `"10 TiB"`: beyond it, its
    /// oldest whole hours go first.
    #[serde(default)]
    pub max_bytes: Option<bytesize::ByteSize>,
    /// Dead letters (`_deadletter/`) older than this are deleted.
    #[serde(default, deserialize_with = "duration::option")]
    pub dead_letters: Option<Duration>,
    /// Rules of single tenants, over the top-level ones.
    #[serde(default)]
    pub tenants: BTreeMap<String, Rules>,
}

/// Ages and a quota of one tenant, over the top-level ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default, deserialize_with = "duration::option")]
    pub default: Option<Duration>,
    #[serde(default, deserialize_with = "duration::map")]
    pub apps: BTreeMap<String, Duration>,
    #[serde(default)]
    pub max_bytes: Option<bytesize::ByteSize>,
}

/// A policy file: `[retention]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub retention: Policy,
}

mod duration {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    fn parse<E: serde::de::Error>(s: &str) -> Result<Duration, E> {
        humantime::parse_duration(s).map_err(|e| E::custom(format!("{s:?}: {e}")))
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| parse(&s))
            .transpose()
    }

    pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Duration>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| Ok((k, parse(&v)?)))
            .collect()
    }
}

impl Policy {
    /// The age after which `app` of `tenant` goes, if any.
    pub fn age(&self, tenant: &str, app: &str) -> Option<Duration> {
        let t = self.tenants.get(tenant);
        t.and_then(|t| t.apps.get(app))
            .or_else(|| self.apps.get(app))
            .or_else(|| t.and_then(|t| t.default.as_ref()))
            .or(self.default.as_ref())
            .copied()
    }

    /// The age of apps no rule names.
    fn default_age(&self, tenant: &str) -> Option<Duration> {
        self.tenants
            .get(tenant)
            .and_then(|t| t.default)
            .or(self.default)
    }

    /// The tenant's quota in bytes, if any.
    pub fn max_bytes(&self, tenant: &str) -> Option<u64> {
        self.tenants
            .get(tenant)
            .and_then(|t| t.max_bytes)
            .or(self.max_bytes)
            .map(|b| b.as_u64())
    }

    /// Every app some rule names for `tenant`.
    fn named_apps(&self, tenant: &str) -> BTreeSet<String> {
        let mut apps: BTreeSet<String> = self.apps.keys().cloned().collect();
        if let Some(t) = self.tenants.get(tenant) {
            apps.extend(t.apps.keys().cloned());
        }
        apps
    }
}

#[derive(Debug, Error)]
pub enum RetentionError {
    #[error("store failed on {op} of {key}")]
    Store {
        op: &'static str,
        key: String,
        #[source]
        source: StorageError,
    },
}

fn store_err<'a>(
    op: &'static str,
    key: &'a str,
) -> impl FnOnce(StorageError) -> RetentionError + 'a {
    move |source| RetentionError::Store {
        op,
        key: key.to_owned(),
        source,
    }
}

/// What a pass did, or would do (`dry_run`), to one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantReport {
    pub tenant: String,
    /// Bytes and objects under the tenant before the pass.
    pub stored_bytes: u64,
    pub stored_objects: u64,
    /// The cut-offs, and since when searchers may have read them
    /// (`written_ns`): deleting waits until `grace` after that.
    pub cutoffs: Cutoffs,
    /// The hour prefixes and app folders deleted, with their bytes.
    pub deleted: Vec<(String, u64)>,
    pub deleted_bytes: u64,
    pub deleted_objects: u64,
    /// The oldest hour kept, in hours since the epoch.
    pub oldest_hour_kept: Option<i64>,
}

/// Options of a pass.
#[derive(Debug, Clone)]
pub struct RetentionOptions {
    /// How long searchers need to learn new cut-offs: their listing cache
    /// plus the longest query.
    pub grace: Duration,
    /// Compute and report only: publish and delete nothing.
    pub dry_run: bool,
    /// "Now", in ns since the epoch.
    pub now_ns: i64,
}

/// What a pass is doing, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// Listed this many objects of a tenant so far.
    Listed(u64),
    /// Deleted `done` of `total` objects.
    Deleted { done: u64, total: u64 },
}

/// One object of a tenant, placed.
struct Placed {
    meta: ObjectMeta,
    hour: i64,
    app: Option<String>,
}

/// The cut-offs `policy` gives `tenant` now, given its objects.
fn cutoffs_for(policy: &Policy, tenant: &str, objects: &[Placed], now_ns: i64) -> Cutoffs {
    let cut = |age: Option<Duration>| match age {
        Some(a) => now_ns.saturating_sub(i64::try_from(a.as_nanos()).unwrap_or(i64::MAX)),
        None => i64::MIN,
    };
    let mut apps: BTreeSet<String> = policy.named_apps(tenant);
    apps.extend(objects.iter().filter_map(|o| o.app.clone()));
    let mut c = Cutoffs {
        version: RETENTION_VERSION,
        written_ns: now_ns,
        before_ns: cut(policy.default_age(tenant)),
        apps: apps
            .into_iter()
            .map(|a| {
                let before = cut(policy.age(tenant, &a));
                (a, before)
            })
            .collect(),
    };
    if let Some(max) = policy.max_bytes(tenant) {
        // Bytes each hour keeps after the ages, oldest hour first.
        let mut by_hour: BTreeMap<i64, u64> = BTreeMap::new();
        for o in objects {
            let kept = match &o.app {
                Some(a) => !c.hides(o.hour, a),
                None => !c.hides_hour(o.hour),
            };
            if kept {
                *by_hour.entry(o.hour).or_default() += o.meta.size;
            }
        }
        let mut total: u64 = by_hour.values().sum();
        let mut quota_cut = i64::MIN;
        for (hour, bytes) in by_hour {
            if total <= max {
                break;
            }
            total -= bytes;
            quota_cut = hour.saturating_add(1).saturating_mul(NS_PER_HOUR);
        }
        c.before_ns = c.before_ns.max(quota_cut);
        for v in c.apps.values_mut() {
            *v = (*v).max(quota_cut);
        }
    }
    let before = c.before_ns;
    c.apps.retain(|_, v| *v != before);
    c
}

/// Whether `o` goes under `c`: an app folder's objects when that app's
/// hour is hidden, an hour's own objects when every app in it is.
fn goes(c: &Cutoffs, o: &Placed, apps_in_hour: &BTreeMap<i64, BTreeSet<&str>>) -> bool {
    match &o.app {
        Some(a) => c.hides(o.hour, a),
        None => {
            c.hides_default(o.hour)
                && apps_in_hour
                    .get(&o.hour)
                    .is_none_or(|apps| apps.iter().all(|a| c.hides(o.hour, a)))
        }
    }
}

/// The published cut-offs of `tenant`, if any; an unreadable marker counts
/// as none (the pass writes a good one over it).
pub async fn read_cutoffs(
    store: &dyn ObjectStore,
    tenant: &str,
) -> Result<Option<Cutoffs>, StorageError> {
    match store.get(&marker_key(tenant)).await {
        Ok(bytes) => Ok(Cutoffs::from_json(&bytes).ok()),
        Err(e) if e.kind == StorageErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Lists `tenant`, works out its cut-offs and what they free, publishes
/// them (unless `dry_run`), and returns the plan; [`delete_planned`]
/// deletes it once searchers have had `grace` to read the cut-offs.
pub async fn plan_tenant(
    store: &dyn ObjectStore,
    policy: &Policy,
    tenant: &str,
    opts: &RetentionOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(TenantReport, Vec<String>), RetentionError> {
    let prefix = tenant_prefix(tenant);
    let listed = list_all(store, &prefix)
        .await
        .map_err(store_err("list", &prefix))?;
    progress(Progress::Listed(listed.len() as u64));
    let stored_bytes = listed.iter().map(|m| m.size).sum();
    let stored_objects = listed.len() as u64;
    let mut day_objects: Vec<Placed> = Vec::new();
    let objects: Vec<Placed> = listed
        .into_iter()
        .filter_map(|meta| {
            if let Some((hour, app)) = hour_and_app(&prefix, &meta.key) {
                return Some(Placed { meta, hour, app });
            }
            if let Some(hour) = day_object_last_hour(&prefix, &meta.key) {
                day_objects.push(Placed {
                    meta,
                    hour,
                    app: None,
                });
            }
            None
        })
        .collect();
    let cutoffs = cutoffs_for(policy, tenant, &objects, opts.now_ns);
    let mut apps_in_hour: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
    for o in &objects {
        if let Some(a) = &o.app {
            apps_in_hour.entry(o.hour).or_default().insert(a);
        }
    }
    let mut doomed = Vec::new();
    let mut folders: BTreeMap<String, u64> = BTreeMap::new();
    let mut oldest_hour_kept = None::<i64>;
    for o in &objects {
        if goes(&cutoffs, o, &apps_in_hour) {
            *folders.entry(unit_of(&prefix, o)).or_default() += o.meta.size;
            doomed.push(o);
        } else {
            oldest_hour_kept = Some(oldest_hour_kept.map_or(o.hour, |h| h.min(o.hour)));
        }
    }
    // A day's own objects (its sliced blooms) go once nothing of its hours
    // stays: a reader uses them only for blocks still listed.
    let days_kept: BTreeSet<i64> = objects
        .iter()
        .filter(|o| !goes(&cutoffs, o, &apps_in_hour))
        .map(|o| o.hour.div_euclid(24))
        .collect();
    for o in &day_objects {
        if !days_kept.contains(&o.hour.div_euclid(24)) {
            *folders.entry(unit_of(&prefix, o)).or_default() += o.meta.size;
            doomed.push(o);
        }
    }
    let mut report = TenantReport {
        tenant: tenant.to_owned(),
        stored_bytes,
        stored_objects,
        deleted_bytes: doomed.iter().map(|o| o.meta.size).sum(),
        deleted_objects: doomed.len() as u64,
        deleted: folders.into_iter().collect(),
        oldest_hour_kept,
        cutoffs: cutoffs.clone(),
    };
    let keys = doomed.iter().map(|o| o.meta.key.clone()).collect();
    if !opts.dry_run {
        let published = read_cutoffs(store, tenant)
            .await
            .map_err(store_err("get", &marker_key(tenant)))?;
        let same = published
            .as_ref()
            .filter(|p| p.before_ns == cutoffs.before_ns && p.apps == cutoffs.apps);
        if let Some(p) = same {
            // Searchers have known these cut-offs since then.
            report.cutoffs.written_ns = p.written_ns;
        } else {
            let key = marker_key(tenant);
            store
                .put(&key, Bytes::from(cutoffs.to_json()))
                .await
                .map_err(store_err("put", &key))?;
        }
        crash_point("retention::after_marker");
    }
    Ok((report, keys))
}

/// The unit a deleted object belongs to, for the report: its app folder,
/// its hour, or for a day's own object its day.
fn unit_of(tenant_prefix: &str, o: &Placed) -> String {
    let rest = &o.meta.key[tenant_prefix.len()..];
    // `dt=…/hour=…/` and, inside an app folder, `app=…/`.
    let depth = if o.app.is_some() { 3 } else { 2 };
    let end = rest
        .match_indices('/')
        .nth(depth - 1)
        .or_else(|| rest.match_indices('/').next())
        .map_or(rest.len(), |(i, _)| i + 1);
    format!("{tenant_prefix}{}", &rest[..end])
}

/// Deletes `keys`, `DELETE_CONCURRENCY` at once; an object already gone
/// counts as deleted.
pub async fn delete_planned(
    store: &dyn ObjectStore,
    keys: &[String],
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(), RetentionError> {
    let total = keys.len() as u64;
    let mut done = 0u64;
    let mut results = stream::iter(keys)
        .map(|key| async move {
            match store.delete(key).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind == StorageErrorKind::NotFound => Ok(()),
                Err(e) => Err(store_err("delete", key)(e)),
            }
        })
        .buffer_unordered(DELETE_CONCURRENCY);
    while let Some(r) = results.next().await {
        r?;
        done += 1;
        progress(Progress::Deleted { done, total });
        if done == total / 2 {
            crash_point("retention::mid_delete");
        }
    }
    Ok(())
}

/// Dead letters whose object is older than `age`: their keys and bytes.
pub async fn expired_dead_letters(
    store: &dyn ObjectStore,
    age: Duration,
    now_ns: i64,
) -> Result<Vec<ObjectMeta>, RetentionError> {
    let before = now_ns.saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX));
    Ok(list_all(store, DEAD_LETTER_ROOT)
        .await
        .map_err(store_err("list", DEAD_LETTER_ROOT))?
        .into_iter()
        .filter(|m| m.modified_ns.is_some_and(|t| t <= before))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = NS_PER_HOUR;
    const DAY: i64 = 24 * H;

    fn policy(text: &str) -> Policy {
        toml::from_str::<PolicyFile>(text).unwrap().retention
    }

    fn placed(hour: i64, app: Option<&str>, size: u64) -> Placed {
        Placed {
            meta: ObjectMeta {
                key: format!("{hour}/{app:?}"),
                size,
                modified_ns: None,
            },
            hour,
            app: app.map(str::to_owned),
        }
    }

    #[test]
    fn the_most_specific_rule_decides_an_apps_age() {
        let p = policy(
            r#"
            [retention]
            default = "30d"
            dead_letters = "7d"
            max_bytes = "1 GiB"
            [retention.apps]
            audit = "365d"
            [retention.tenants.team-a]
            default = "7d"
            max_bytes = "10 MiB"
            [retention.tenants.team-a.apps]
            web = "1d"
            "#,
        );
        let d = |days: u64| Some(Duration::from_secs(days * 86_400));
        assert_eq!(p.age("other", "web"), d(30));
        assert_eq!(p.age("other", "audit"), d(365));
        assert_eq!(p.age("team-a", "web"), d(1));
        assert_eq!(
            p.age("team-a", "audit"),
            d(365),
            "an app rule beats a tenant default"
        );
        assert_eq!(p.age("team-a", "api"), d(7));
        assert_eq!(p.max_bytes("team-a"), Some(10 << 20));
        assert_eq!(p.max_bytes("other"), Some(1 << 30));
        assert_eq!(p.dead_letters, d(7));
        assert!(toml::from_str::<PolicyFile>("[retention]\ndefault = \"soon\"").is_err());
        assert!(toml::from_str::<PolicyFile>("[retention]\nkeep = \"1d\"").is_err());
        let none = policy("[retention]");
        assert_eq!(none.age("t", "a"), None);
    }

    #[test]
    fn ages_cut_whole_hours_per_app() {
        let p = policy("[retention]\ndefault = \"2d\"\n[retention.apps]\naudit = \"10d\"");
        let now = 100 * DAY + 30 * 60 * 1_000_000_000;
        let objects = vec![placed(0, Some("web"), 1), placed(0, Some("audit"), 1)];
        let c = cutoffs_for(&p, "t", &objects, now);
        assert_eq!(c.before_ns, now - 2 * DAY);
        assert_eq!(c.apps.get("audit"), Some(&(now - 10 * DAY)));
        assert!(!c.apps.contains_key("web"), "web follows the default");
        let hour = (now - 2 * DAY) / H;
        assert!(c.hides(hour - 1, "web"), "ended before the cut");
        assert!(
            !c.hides(hour, "web"),
            "the hour the cut falls in stays whole"
        );
    }

    #[test]
    fn a_quota_takes_the_oldest_whole_hours() {
        let p = policy("[retention]\nmax_bytes = 250");
        let objects = vec![
            placed(5, Some("a"), 100),
            placed(5, None, 10),
            placed(6, Some("b"), 100),
            placed(7, Some("a"), 100),
        ];
        let c = cutoffs_for(&p, "t", &objects, 1_000 * H);
        assert_eq!(c.before_ns, 6 * H, "hour 5 goes: 200 bytes remain");
        assert!(c.apps.is_empty());
        let p = policy("[retention]\nmax_bytes = 1000");
        assert_eq!(
            cutoffs_for(&p, "t", &objects, 1_000 * H).before_ns,
            i64::MIN
        );
    }

    #[test]
    fn an_hours_own_objects_go_only_with_its_last_app() {
        let p = policy("[retention]\ndefault = \"1h\"\n[retention.apps]\naudit = \"100d\"");
        let objects = vec![
            placed(1, Some("web"), 1),
            placed(1, None, 1),
            placed(2, Some("web"), 1),
            placed(2, Some("audit"), 1),
            placed(2, None, 1),
        ];
        let c = cutoffs_for(&p, "t", &objects, 10 * H);
        let mut in_hour: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
        for o in &objects {
            if let Some(a) = &o.app {
                in_hour.entry(o.hour).or_default().insert(a);
            }
        }
        let gone: Vec<bool> = objects.iter().map(|o| goes(&c, o, &in_hour)).collect();
        assert_eq!(gone, [true, true, true, false, false]);
    }
}
