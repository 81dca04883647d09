//! Step 1, for settled hours: list a run of a day's hours with one paged
//! LIST of the day, from the first hour's folder to the last one's end,
//! instead of a LIST (or, for a query on some apps, two) per hour.
//!
//! A settled, compacted hour of a 1 TB/day tenant is about 640 objects,
//! less than a page. Hour by hour, a needle over its day costs 24 LISTs,
//! and 48 on one app (its folder and the hour's own level). In runs of
//! `hours_per_listing` (6) it costs about 16 pages, four runs at once, for
//! every app and for one alike.
//!
//! An uncompacted hour at that volume is hundreds of pages. A run gives up
//! once it has spent two pages an hour on average, and leaves the hours it
//! has not listed whole to [`Engine::hour_listing`], which lists big hours
//! by folder, concurrently. A run never lists an hour that is not closed:
//! the newest hours change under it, and are listed as before.
//!
//! Pages are no weaker than the pages of a big hour's listing: each hour
//! of a run is built from its own objects exactly as if it had been listed
//! alone (`listing.rs`), so its manifest decides what it yields as before.

use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use skidder_common::format::layout::{day_prefix_of, hour_prefix};
use skidder_common::storage::{ListOptions, ObjectMeta, StorageResult};

use super::listing::HourListing;
use super::{Engine, SearchError};

/// Consecutive closed hours of one day, at most `max` of them, for one
/// LIST each; every other hour alone. `hours` ascend. A stretch longer
/// than `max` is cut into runs of even length (13 hours into 5, 4 and 4,
/// not 6, 6 and 1), so that no hour is left to a LIST of its own.
fn runs_of(hours: &[i64], max: usize, closed: impl Fn(i64) -> bool) -> Vec<Vec<i64>> {
    let mut stretches: Vec<Vec<i64>> = Vec::new();
    for &h in hours {
        let joins = stretches.last().is_some_and(|run| {
            let prev = run[run.len() - 1];
            prev + 1 == h && h.rem_euclid(24) != 0 && closed(prev) && closed(h)
        });
        match stretches.last_mut() {
            Some(run) if joins => run.push(h),
            _ => stretches.push(vec![h]),
        }
    }
    let max = max.max(1);
    let mut runs = Vec::new();
    for stretch in stretches {
        let n = stretch.len().div_ceil(max);
        let (base, extra) = (stretch.len() / n, stretch.len() % n);
        let mut rest = stretch.as_slice();
        for i in 0..n {
            let (run, after) = rest.split_at(base + usize::from(i < extra));
            runs.push(run.to_vec());
            rest = after;
        }
    }
    runs
}

/// Where `key` falls among a run's hour prefixes (ascending): `Ok(i)`
/// under hour `i`, `Err(i)` under none, past the first `i` of them. Either
/// way, the hours before `i` hold only keys less than `key`.
fn place(prefixes: &[String], key: &str) -> Result<usize, usize> {
    let past = prefixes.partition_point(|p| p.as_str() <= key);
    match past.checked_sub(1) {
        Some(i) if key.starts_with(prefixes[i].as_str()) => Ok(i),
        _ => Err(past),
    }
}

/// How many of a run's hours (from its first) the pages have listed
/// whole, when the last key listed is `last`: every hour that `last` is
/// past.
fn hours_done(prefixes: &[String], last: &str) -> usize {
    place(prefixes, last).unwrap_or_else(|past| past)
}

impl Engine {
    /// The listings of `hours` (ascending), by hour: cached ones, closed
    /// ones of a day in runs, the rest hour by hour.
    pub(super) async fn hour_listings(
        &self,
        tenant: &str,
        hours: &[i64],
        apps: Option<&[String]>,
    ) -> Result<Vec<(i64, Arc<HourListing>)>, SearchError> {
        let mut out = Vec::new();
        let mut cold = Vec::new();
        for &h in hours {
            match self.cached_listing(&hour_prefix(tenant, h), apps) {
                Some(l) => out.push((h, l)),
                None => cold.push(h),
            }
        }
        let runs = runs_of(&cold, self.cfg.hours_per_listing, |h| self.closed(h));
        let listed: Vec<Vec<(i64, Arc<HourListing>)>> = stream::iter(runs)
            .map(|run| async move {
                match run.as_slice() {
                    [h] => Ok(vec![(*h, self.hour_listing(tenant, *h, apps).await?)]),
                    _ => self.run_listings(tenant, &run, apps).await,
                }
            })
            .buffered(self.cfg.index_fetch_concurrency.max(1))
            .try_collect()
            .await?;
        out.extend(listed.into_iter().flatten());
        out.sort_by_key(|(h, _)| *h);
        Ok(out)
    }

    /// The listings of a run's hours: those its LIST covered whole, built
    /// for every app (and cached so), then cut down to `apps`; the rest
    /// listed hour by hour, one after another.
    async fn run_listings(
        &self,
        tenant: &str,
        run: &[i64],
        apps: Option<&[String]>,
    ) -> Result<Vec<(i64, Arc<HourListing>)>, SearchError> {
        let prefixes: Vec<String> = run.iter().map(|&h| hour_prefix(tenant, h)).collect();
        let read_at = std::time::Instant::now();
        let listed = self
            .list_run(&prefixes)
            .await
            .map_err(|e| self.store_fault("list", e))?;
        let mut out = Vec::new();
        for ((&hour, prefix), objects) in run.iter().zip(&prefixes).zip(listed) {
            self.metrics.hour_listings.inc();
            let all = self
                .listing_of(hour, prefix.clone(), objects, None, read_at)
                .await?;
            let listing = match apps {
                Some(apps) => Arc::new(all.scoped_to(apps)),
                None => all,
            };
            out.push((hour, listing));
        }
        // One at a time: runs are listed side by side already, and a big
        // hour lists its folders side by side too.
        for &h in &run[out.len()..] {
            out.push((h, self.hour_listing(tenant, h, apps).await?));
        }
        Ok(out)
    }

    /// The objects of each hour of a run that its pages listed whole, in
    /// order: a prefix of the run, all of it unless the pages ran past two
    /// an hour first.
    async fn list_run(&self, prefixes: &[String]) -> StorageResult<Vec<Vec<ObjectMeta>>> {
        let store = &*self.stores.runs;
        let Some(first) = prefixes.first() else {
            return Ok(Vec::new());
        };
        // Not an hour's prefix: no hour is listed here, all are left to
        // the hour listing.
        let Some(day) = day_prefix_of(first) else {
            return Ok(Vec::new());
        };
        let mut by_hour: Vec<Vec<ObjectMeta>> = vec![Vec::new(); prefixes.len()];
        let (mut token, mut pages) = (None, 0usize);
        loop {
            let page = store
                .list(
                    day,
                    ListOptions {
                        page_token: token,
                        start_after: Some(first),
                        ..Default::default()
                    },
                )
                .await?;
            pages += 1;
            let done = match (&page.next_token, page.objects.last()) {
                (None, _) => prefixes.len(),
                (Some(_), Some(last)) => hours_done(prefixes, &last.key),
                (Some(_), None) => 0,
            };
            for m in page.objects {
                if let Ok(i) = place(prefixes, &m.key) {
                    by_hour[i].push(m);
                }
            }
            if done == prefixes.len() {
                return Ok(by_hour);
            }
            if pages >= 2 * (done + 1) {
                by_hour.truncate(done);
                return Ok(by_hour);
            }
            token = page.next_token;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use crate::metrics::Metrics;
    use bytes::Bytes;
    use skidder_common::format::layout::app_prefix;
    use skidder_common::storage::{LocalStore, ObjectStore};

    /// Index keys of `n` blocks of app `a` in the hour at `prefix`.
    fn blocks(prefix: &str, a: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{}logs.0.{i:020}.idx", app_prefix(prefix, a)))
            .collect()
    }

    #[tokio::test]
    async fn a_run_lists_each_hour_as_alone_and_leaves_big_hours_to_the_hour_listing() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let first = 24 * 19_700;
        // Hours 1 and 2 are big, 3,500 blocks each: more than two pages
        // an hour of the run can pay for. The others hold a few, of two
        // apps.
        let mut written: Vec<Vec<String>> = Vec::new();
        for h in 0..7 {
            let prefix = hour_prefix("t", first + h);
            let mut keys = blocks(&prefix, "web", if h == 1 || h == 2 { 3_500 } else { 3 });
            keys.extend(blocks(&prefix, "api", 2));
            for k in &keys {
                store.put(k, Bytes::from_static(b"x")).await.unwrap();
            }
            written.push(keys);
        }
        let metrics = Arc::new(Metrics::new());
        let engine = Engine::new(store, EngineConfig::default(), metrics.clone());
        let hours: Vec<i64> = (first..first + 7).collect();
        let listed = engine.hour_listings("t", &hours, None).await.unwrap();
        assert_eq!(listed.iter().map(|(h, _)| *h).collect::<Vec<_>>(), hours);
        for ((_, l), want) in listed.iter().zip(&written) {
            let mut got: Vec<&str> = l.indexes.iter().map(|(k, _)| k.as_str()).collect();
            got.sort();
            let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
            want.sort();
            assert_eq!(got, want, "{}", l.prefix);
        }
        let lists = |caller| metrics.store_requests.requests("list", caller);
        // Seven hours make runs 0-3 and 4-6. Run 0-3 (keys ending at 5,
        // 3,507, 7,009, ...) has done hours 0 and 1 after 6 pages, its two
        // an hour, and gives up in hour 2. Hours 2 and 3 are listed alone,
        // hour 2 page by page (4 pages). Run 4-6 is one page.
        assert_eq!(lists("listing_runs"), 6 + 1);
        assert_eq!(lists("listing"), 4 + 1);

        // For one app, hours come from the cached listings of every app.
        let apps = ["api".to_owned()];
        let scoped = engine
            .hour_listings("t", &hours, Some(&apps))
            .await
            .unwrap();
        for (_, l) in &scoped {
            assert_eq!(l.indexes.len(), 2, "{}", l.prefix);
            assert!(l.scoped);
        }
        assert_eq!(lists("listing_runs") + lists("listing"), 7 + 5);

        // Small hours: one LIST for a run of them.
        let cold = Arc::new(Metrics::new());
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let engine = Engine::new(store, EngineConfig::default(), cold.clone());
        let small = [first + 3, first + 4, first + 5];
        let listed = engine
            .hour_listings("t", &small, Some(&apps))
            .await
            .unwrap();
        assert!(listed.iter().all(|(_, l)| l.indexes.len() == 2));
        assert_eq!(cold.store_requests.requests("list", "listing_runs"), 1);
        assert_eq!(cold.store_requests.requests("list", "listing"), 0);
    }

    #[test]
    fn runs_join_closed_hours_of_a_day_up_to_the_most() {
        let day = 24 * 20_000;
        let hours: Vec<i64> = (day - 2..day + 9).chain([day + 11, day + 12]).collect();
        // Hour day + 8 is the first one not closed.
        let runs = runs_of(&hours, 4, |h| h < day + 8);
        assert_eq!(
            runs,
            vec![
                vec![day - 2, day - 1],
                vec![day, day + 1, day + 2, day + 3],
                vec![day + 4, day + 5, day + 6, day + 7],
                vec![day + 8],
                vec![day + 11],
                vec![day + 12],
            ]
        );
        // A stretch over the most is cut evenly: 13 hours into 5, 4, 4.
        let long: Vec<i64> = (day..day + 13).collect();
        let lens: Vec<usize> = runs_of(&long, 6, |_| true).iter().map(Vec::len).collect();
        assert_eq!(lens, vec![5, 4, 4]);
        assert_eq!(runs_of(&long, 6, |_| true).concat(), long);
        assert_eq!(runs_of(&hours[2..5], 1, |_| true).len(), 3);
        assert!(runs_of(&[], 6, |_| true).is_empty());
    }

    #[test]
    fn an_hour_is_done_once_a_key_past_it_is_listed() {
        let prefixes: Vec<String> = ["t/dt=x/hour=05/", "t/dt=x/hour=06/", "t/dt=x/hour=07/"]
            .map(str::to_owned)
            .into();
        let done = |last: &str| hours_done(&prefixes, last);
        assert_eq!(done("t/dt=x/hour=05/app=a/b.idx"), 0);
        assert_eq!(done("t/dt=x/hour=05/_manifest.1"), 0);
        assert_eq!(done("t/dt=x/hour=06/_blooms.1"), 1);
        assert_eq!(done("t/dt=x/hour=07/app=z/b.seq"), 2);
        assert_eq!(done("t/dt=x/hour=08/app=a/b.seq"), 3);
        assert_eq!(done("t/dt=x/zzz"), 3);
    }
}
