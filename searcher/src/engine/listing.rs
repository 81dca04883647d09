//! Step 1 of the read path: list an hour's prefix. A query's time range
//! picks whole hours, and listing one is the only way to learn which
//! blocks, packs and sliced blooms it holds. Listings of closed hours are
//! cached for `listing_cache_secs`, as a cold query over many hours is
//! mostly listing round trips. Closed hours of a day are listed several
//! to a paged LIST where they are small (`runs.rs`); either way an hour's
//! listing is built here, from its own objects ([`Engine::listing_of`]).
//!
//! A query whose selector names its apps (`{__app__="checkout"}`, or a
//! regex that is a list of names) lists only those apps' folders, plus the
//! hour's own level for its manifest, packs and sliced blooms.
//!
//! Where the hour has a compaction manifest, the newest listed one decides
//! which blocks the listing yields: the compacted blocks it names (at the
//! size it names), and every small block but their sources. Compacted
//! blocks it does not name (a lost race, a crashed compactor) are ignored.
//! So each record is read once, before, during and after compaction.
//!
//! A query with tokens reads the manifest only for an hour its sliced
//! blooms leave a block in: until then the listing holds every listed
//! block the manifest could keep ([`HourListing::manifest`]), and an hour
//! whose blocks are all ruled out needs none of them. A settled hour of a
//! needle over a day costs its LIST, not its LIST and its manifest.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use skidder_common::claims;
use skidder_common::format::fence::Fence;
use skidder_common::format::label_summary::LabelSummary;
use skidder_common::format::layout::{
    app_prefix, hour_prefix, now_ns, parse_manifest_key, parse_slices_key, parse_tail_pack_key,
    PackName, INDEX_SUFFIX, NS_PER_HOUR,
};
use skidder_common::format::manifest::{Live, Manifest};
use skidder_common::storage::{list_all, list_level, ListOptions, ObjectMeta, StorageErrorKind};

use super::{Engine, SearchError};

/// Epoch claims kept in memory at most; beyond, the cache starts again.
const MAX_CACHED_CLAIMS: usize = 100_000;

/// What listing an hour found: its index keys with their listed sizes,
/// and its index packs.
pub(super) struct HourListing {
    pub(super) prefix: String,
    /// The blocks to read, by index key and listed size: small blocks no
    /// live compacted block replaces, and the live compacted blocks.
    pub(super) indexes: Vec<(String, u64)>,
    /// The hour's index packs; where it has none yet, the indexer's tail
    /// packs of it.
    pub(super) packs: Vec<String>,
    /// Listed bytes of the packs.
    pub(super) pack_bytes: u64,
    /// The hour's sliced blooms, if listed, and their listed size.
    pub(super) slices: Option<(String, u64)>,
    /// The label summaries the manifest gives compacted blocks, by index
    /// key: a selector they rule out needs no index read.
    pub(super) labels: HashMap<String, LabelSummary>,
    /// Only some apps' folders were listed: the packs hold every app's
    /// indexes, so they are worth a GET only for many indexes.
    pub(super) scoped: bool,
    /// The hour's newest manifest, not read yet: until it is
    /// ([`Engine::with_manifest`]), `indexes` holds every listed compacted
    /// block and every small block the fence keeps, a superset of those
    /// the manifest leaves, and `labels` is empty.
    pub(super) manifest: Option<PendingManifest>,
}

/// A manifest a listing has not applied yet.
#[derive(Clone)]
pub(super) struct PendingManifest {
    key: String,
    /// Where the listing is cached, and when it was read: the listing
    /// with its manifest applied replaces it there. `None` for a listing
    /// that is not cached as it is (not closed, or cut by retention).
    cached: Option<(String, std::time::Instant)>,
}

impl PendingManifest {
    /// The same manifest, for a listing that is not the cached one.
    pub(super) fn uncached(&self) -> PendingManifest {
        PendingManifest {
            key: self.key.clone(),
            cached: None,
        }
    }
}

/// About what a summary takes in memory, for the listing cache's budget.
fn label_bytes(l: &LabelSummary) -> usize {
    l.names
        .iter()
        .map(|n| {
            32 + n.name.len()
                + n.values
                    .as_ref()
                    .map_or(0, |vs| vs.iter().map(|v| v.len() + 24).sum())
        })
        .sum()
}

/// A cached listing, and when it was read.
pub(super) struct Listing {
    pub(super) read_at: std::time::Instant,
    pub(super) hour: Arc<HourListing>,
}

impl HourListing {
    /// What listing a day's own sliced blooms found, cached beside the
    /// hours' listings: the slices and nothing else.
    pub(super) fn day(prefix: &str, slices: Option<(String, u64)>) -> HourListing {
        HourListing {
            prefix: prefix.to_owned(),
            indexes: Vec::new(),
            packs: Vec::new(),
            pack_bytes: 0,
            slices,
            labels: HashMap::new(),
            scoped: false,
            manifest: None,
        }
    }

    /// This listing of every app, cut down to `apps`' folders, as listing
    /// only those would have found it. Its manifest, if not read yet, is
    /// read for it alone, and the applied listing is cached under the
    /// apps' own key (as a listing of only those folders would be), so the
    /// same query again reads it no more.
    pub(super) fn scoped_to(&self, apps: &[String]) -> HourListing {
        let folders: Vec<String> = apps.iter().map(|a| app_prefix(&self.prefix, a)).collect();
        let inside = |k: &str| folders.iter().any(|f| k.starts_with(f.as_str()));
        HourListing {
            prefix: self.prefix.clone(),
            indexes: self
                .indexes
                .iter()
                .filter(|(k, _)| inside(k))
                .cloned()
                .collect(),
            packs: self.packs.clone(),
            pack_bytes: self.pack_bytes,
            slices: self.slices.clone(),
            labels: self
                .labels
                .iter()
                .filter(|(k, _)| inside(k))
                .map(|(k, l)| (k.clone(), l.clone()))
                .collect(),
            scoped: true,
            manifest: self.manifest.as_ref().map(|m| PendingManifest {
                key: m.key.clone(),
                cached: m
                    .cached
                    .as_ref()
                    .map(|(_, read_at)| (cache_key(&self.prefix, Some(apps)), *read_at)),
            }),
        }
    }

    /// About what the listing takes in memory, for the cache's budget.
    fn bytes(&self, cache_key: &str) -> usize {
        self.indexes
            .iter()
            .map(|(k, _)| k.len() + 32)
            .sum::<usize>()
            + self
                .labels
                .iter()
                .map(|(k, l)| k.len() + label_bytes(l))
                .sum::<usize>()
            + self.packs.iter().map(|k| k.len() + 24).sum::<usize>()
            + self.slices.as_ref().map_or(0, |(k, _)| k.len() + 32)
            + self.manifest.as_ref().map_or(0, |m| m.key.len() + 24)
            + 2 * cache_key.len()
    }
}

/// Where an hour's listing is cached: under its prefix when it lists
/// every app, with the apps after it when it lists only those.
fn cache_key(prefix: &str, apps: Option<&[String]>) -> String {
    match apps {
        None => prefix.to_owned(),
        Some(apps) => format!("{prefix}\n{}", apps.join("\n")),
    }
}

/// What a manifest does to a listing's indexes.
enum ManifestRead {
    Decoded(Manifest),
    /// Unreadable: the listing keeps its small blocks and drops every
    /// compacted one, as before the manifest was written.
    Unreadable,
}

/// The folder directly under `prefix` that holds `key`, in full
/// (`<hour prefix>app=a/`); `None` for a key at the prefix's own level.
fn folder_of<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(prefix)?;
    Some(&key[..prefix.len() + rest.find('/')? + 1])
}

/// The blocks a listing yields under `manifest` (see [`Live`]):
/// `indexes` are (key, size) under `prefix`.
fn live_indexes(
    prefix: &str,
    mut indexes: Vec<(String, u64)>,
    manifest: Option<&Manifest>,
    fence: &Fence,
) -> Vec<(String, u64)> {
    let live = Live::new(
        manifest,
        indexes
            .iter()
            .map(|(k, s)| (k.strip_prefix(prefix).unwrap_or(k), *s)),
        fence,
    );
    indexes.retain(|(k, _)| live.reads(k.strip_prefix(prefix).unwrap_or(k)));
    indexes
}

impl Engine {
    /// `listing` with its manifest applied, if it has one not read yet;
    /// the cache then holds the applied one, so a query that comes back
    /// reads the manifest no more.
    pub(super) async fn with_manifest(
        &self,
        listing: Arc<HourListing>,
    ) -> Result<Arc<HourListing>, SearchError> {
        let Some(pending) = &listing.manifest else {
            return Ok(listing);
        };
        // The fence was applied when the hour was listed.
        let no_fence = Fence::default();
        let listed = listing.indexes.clone();
        let (indexes, labels) = match self.read_manifest(&pending.key).await? {
            ManifestRead::Decoded(m) => {
                let indexes = live_indexes(&listing.prefix, listed, Some(&m), &no_fence);
                let labels = m
                    .entries
                    .into_iter()
                    .filter_map(|e| Some((format!("{}{}", listing.prefix, e.name), e.labels?)))
                    .collect();
                (indexes, labels)
            }
            ManifestRead::Unreadable => (
                live_indexes(&listing.prefix, listed, None, &no_fence),
                HashMap::new(),
            ),
        };
        let applied = Arc::new(HourListing {
            prefix: listing.prefix.clone(),
            indexes,
            packs: listing.packs.clone(),
            pack_bytes: listing.pack_bytes,
            slices: listing.slices.clone(),
            labels,
            scoped: listing.scoped,
            manifest: None,
        });
        if let Some((cache_key, read_at)) = &pending.cached {
            let bytes = applied.bytes(cache_key);
            let entry = Listing {
                read_at: *read_at,
                hour: applied.clone(),
            };
            let read_at = *read_at;
            self.listings
                .put_unless(cache_key.clone(), Arc::new(entry), bytes, |old| {
                    old.read_at > read_at
                });
        }
        Ok(applied)
    }

    /// The blocks, packs and sliced blooms of one hour, of every app or of
    /// `apps` only, its manifest not read yet (see
    /// [`HourListing::manifest`]), listed from the store (the caller has
    /// asked the cache: [`Engine::cached_listing`]); cached, once the hour
    /// is closed, for `listing_cache_secs`.
    pub(super) async fn hour_listing(
        &self,
        tenant: &str,
        hour: i64,
        apps: Option<&[String]>,
    ) -> Result<Arc<HourListing>, SearchError> {
        let prefix = hour_prefix(tenant, hour);
        self.metrics.hour_listings.inc();
        let read_at = std::time::Instant::now();
        let objects = self
            .list_hour(&prefix, apps)
            .await
            .map_err(|e| self.store_fault("list", e))?;
        self.listing_of(hour, prefix, objects, apps, read_at).await
    }

    /// The hour's cached listing, if it is fresh: for `apps`, the listing
    /// of those apps or, cut down to them, the hour's whole listing.
    pub(super) fn cached_listing(
        &self,
        prefix: &str,
        apps: Option<&[String]>,
    ) -> Option<Arc<HourListing>> {
        let ttl = std::time::Duration::from_secs(self.cfg.listing_cache_secs);
        let fresh = |key: String| {
            self.listings
                .get(&key)
                .filter(|v| v.read_at.elapsed() < ttl)
                .map(|v| v.hour.clone())
        };
        let hit = match apps {
            None => fresh(prefix.to_owned()),
            Some(apps) => fresh(cache_key(prefix, Some(apps)))
                .or_else(|| fresh(prefix.to_owned()).map(|all| Arc::new(all.scoped_to(apps)))),
        };
        let outcome = if hit.is_some() { "hit" } else { "miss" };
        self.metrics
            .cache
            .with_label_values(&["listing", outcome])
            .inc();
        hit
    }

    /// The listing of the hour at `prefix` from its listed `objects` (of
    /// every app, or of `apps` only), cached if the hour is closed.
    /// `read_at` is when the LIST began.
    pub(super) async fn listing_of(
        &self,
        hour: i64,
        prefix: String,
        objects: Vec<ObjectMeta>,
        apps: Option<&[String]>,
        read_at: std::time::Instant,
    ) -> Result<Arc<HourListing>, SearchError> {
        let cache_key = cache_key(&prefix, apps);
        let ttl = std::time::Duration::from_secs(self.cfg.listing_cache_secs);
        let (mut indexes, mut packs, mut pack_bytes) = (Vec::new(), Vec::new(), 0u64);
        let (mut tail_packs, mut tail_bytes) = (Vec::new(), 0u64);
        let (mut slices, mut manifest_key) = (None, None::<(u64, String)>);
        for m in objects {
            if !m.key.starts_with(&prefix) {
                continue;
            }
            if m.key.ends_with(INDEX_SUFFIX) {
                indexes.push((m.key, m.size));
            } else if PackName::parse(&prefix, &m.key).is_some() {
                pack_bytes = pack_bytes.saturating_add(m.size);
                packs.push(m.key);
            } else if parse_tail_pack_key(&prefix, &m.key).is_some() {
                tail_bytes = tail_bytes.saturating_add(m.size);
                tail_packs.push(m.key);
            } else if parse_slices_key(&prefix, &m.key).is_some() {
                slices = Some((m.key, m.size));
            } else if let Some(g) = parse_manifest_key(&prefix, &m.key) {
                if manifest_key.as_ref().is_none_or(|(newest, _)| g > *newest) {
                    manifest_key = Some((g, m.key));
                }
            }
        }
        // The packs cover the hour whole when it settled; tail packs left
        // beside them (until the packer deletes them) would repeat them.
        if packs.is_empty() {
            (packs, pack_bytes) = (tail_packs, tail_bytes);
        }
        let fence = self.fence_for(&indexes).await?;
        let cached = self.closed(hour) && !ttl.is_zero();
        let (indexes, manifest) = match manifest_key {
            // Every block the manifest could keep: the fence's small ones
            // and every compacted one listed.
            Some((_, key)) => {
                let mut indexes = indexes;
                indexes
                    .retain(|(k, _)| Live::may_read(k.strip_prefix(&prefix).unwrap_or(k), &fence));
                let cached = cached.then(|| (cache_key.clone(), read_at));
                (indexes, Some(PendingManifest { key, cached }))
            }
            None => (live_indexes(&prefix, indexes, None, &fence), None),
        };
        let hour_listing = Arc::new(HourListing {
            prefix,
            indexes,
            packs,
            pack_bytes,
            slices,
            labels: HashMap::new(),
            scoped: apps.is_some(),
            manifest,
        });
        let bytes = hour_listing.bytes(&cache_key);
        if cached {
            let listing = Listing {
                read_at,
                hour: hour_listing.clone(),
            };
            // Listings run concurrently and finish in any order: one that
            // began before the cached one would take back blocks a query
            // has already counted.
            let newer = |old: &Listing| old.read_at > read_at;
            self.listings
                .put_unless(cache_key, Arc::new(listing), bytes, newer);
        }
        Ok(hour_listing)
    }

    /// Whether `hour` is closed: ended more than `closed_after_secs` ago,
    /// so that its listing may be cached.
    pub(super) fn closed(&self, hour: i64) -> bool {
        (hour + 1) * NS_PER_HOUR + self.cfg.closed_after_secs * 1_000_000_000 < now_ns()
    }

    /// Every object under the hour, or its own level plus the folders of
    /// `apps`, listed `index_fetch_concurrency` folders at once.
    ///
    /// A whole hour is listed page by page, each page waiting for the last
    /// one's token. Past `sequential_list_pages` (1,000 keys each), the
    /// rest is listed by app folder, concurrently: the newest hour at
    /// 1 TB a day is 577 pages, 17 s in sequence at 30 ms a request, and
    /// about 0.3 s as 300 folders of 2 pages at 64 at once, for the same
    /// number of requests. Keys list in order, so the folders the pages
    /// have wholly covered are kept and only the rest are listed again.
    async fn list_hour(
        &self,
        prefix: &str,
        apps: Option<&[String]>,
    ) -> skidder_common::storage::StorageResult<Vec<ObjectMeta>> {
        let store = &*self.stores.listing;
        let (mut objects, folders): (Vec<ObjectMeta>, Vec<String>) = match apps {
            Some(apps) => {
                let (level, _) = list_level(store, prefix).await?;
                (level, apps.iter().map(|a| app_prefix(prefix, a)).collect())
            }
            None => {
                let mut paged = Vec::new();
                let mut token = None;
                for _ in 0..self.cfg.sequential_list_pages.max(1) {
                    let page = store
                        .list(
                            prefix,
                            ListOptions {
                                page_token: token,
                                ..Default::default()
                            },
                        )
                        .await?;
                    paged.extend(page.objects);
                    match page.next_token {
                        Some(t) => token = Some(t),
                        None => return Ok(paged),
                    }
                }
                let (level, folders) = list_level(store, prefix).await?;
                // The folder the pages stopped in, listed again whole.
                let stopped_in = paged
                    .last()
                    .and_then(|m| folder_of(prefix, &m.key))
                    .map(str::to_owned);
                let done = |folder: &str| stopped_in.as_deref().is_some_and(|s| folder < s);
                let mut objects = level;
                objects.extend(
                    paged
                        .into_iter()
                        .filter(|m| folder_of(prefix, &m.key).is_some_and(done)),
                );
                let rest = folders.into_iter().filter(|f| !done(f)).collect();
                (objects, rest)
            }
        };
        let per_folder: Vec<Vec<ObjectMeta>> = stream::iter(folders)
            .map(|folder: String| async move { list_all(store, &folder).await })
            .buffer_unordered(self.cfg.index_fetch_concurrency.max(1))
            .try_collect()
            .await?;
        objects.extend(per_folder.into_iter().flatten());
        Ok(objects)
    }

    /// The epoch claims that decide which of `indexes` a newer epoch
    /// superseded (`format::fence`), from the cache or the store.
    async fn fence_for(&self, indexes: &[(String, u64)]) -> Result<Fence, SearchError> {
        let needed = Fence::claims_needed(indexes.iter().map(|(k, _)| k.as_str()));
        if needed.is_empty() {
            return Ok(Fence::default());
        }
        let mut fence = Fence::default();
        {
            let cached = self.lock_claims();
            for id in &needed {
                if let Some(start) = cached.start(id) {
                    fence.insert(id.clone(), start);
                }
            }
        }
        claims::load_into(&*self.stores.claims, &mut fence, needed)
            .await
            .map_err(|e| self.store_fault("get_claim", e))?;
        let mut cached = self.lock_claims();
        // A cap on what a store with very many claims can hold here.
        if cached.len() > MAX_CACHED_CLAIMS {
            *cached = Fence::default();
        }
        cached.extend(&fence);
        Ok(fence)
    }

    fn lock_claims(&self) -> std::sync::MutexGuard<'_, Fence> {
        self.claims.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The hour's newest manifest. Gone (deleted since the listing) or
    /// corrupt, the query reads the hour as if it had none, with a warning
    /// in the log and the metric: small blocks are deleted only long after
    /// a manifest replaced them, so they are still there.
    async fn read_manifest(&self, key: &str) -> Result<ManifestRead, SearchError> {
        let bytes = match self.stores.manifests.get(key).await {
            Ok(b) => b,
            Err(e) if e.kind == StorageErrorKind::NotFound => {
                self.unreadable(&self.metrics.manifests_read, key, &e, "a manifest");
                return Ok(ManifestRead::Unreadable);
            }
            Err(e) => return Err(self.store_fault("get_manifest", e)),
        };
        self.metrics.bytes_fetched.inc_by(bytes.len() as u64);
        match Manifest::decode(&bytes) {
            Ok(m) => {
                self.metrics.manifests_read.with_label_values(&["ok"]).inc();
                Ok(ManifestRead::Decoded(m))
            }
            Err(e) => {
                self.unreadable(&self.metrics.manifests_read, key, &e, "a manifest");
                Ok(ManifestRead::Unreadable)
            }
        }
    }

    /// An hour's listed indexes that are not cached, as (key, name
    /// relative to the hour prefix, listed size): what sliced blooms and
    /// packs may save GETs for.
    pub(super) fn uncached<'a>(
        &'a self,
        hour: &'a HourListing,
    ) -> impl Iterator<Item = (&'a str, &'a str, u64)> + 'a {
        hour.indexes
            .iter()
            .filter(|(k, _)| !self.indexes.contains(k))
            .map(|(k, size)| (k.as_str(), k.strip_prefix(&hour.prefix).unwrap_or(k), *size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skidder_common::format::manifest::Entry;

    fn entry(name: &str, size: u64, sources: &[&str]) -> Entry {
        Entry {
            name: name.into(),
            index_size: size,
            data_size: 1,
            app: "a".into(),
            min_time_ns: 0,
            max_time_ns: 0,
            records: 1,
            raw_bytes: 1,
            created_ns: 0,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            labels: None,
        }
    }

    #[test]
    fn an_hour_cut_down_to_some_apps_keeps_their_blocks_and_its_own_cache_key() {
        let p = "t/dt=d/hour=01/";
        let read_at = std::time::Instant::now();
        let key = |a: &str| format!("{p}app={a}/x.0.00000000000000000000.idx");
        let whole = HourListing {
            prefix: p.into(),
            indexes: ["api", "web", "web-2"].map(|a| (key(a), 1)).into(),
            packs: vec![format!("{p}_pack.0.1")],
            pack_bytes: 9,
            slices: None,
            labels: HashMap::new(),
            scoped: false,
            manifest: Some(PendingManifest {
                key: format!("{p}_manifest.1.mf"),
                cached: Some((p.into(), read_at)),
            }),
        };
        let cut = whole.scoped_to(&["web".to_owned()]);
        assert_eq!(cut.indexes, vec![(key("web"), 1)]);
        assert!(cut.scoped && cut.packs == whole.packs);
        let m = cut.manifest.unwrap();
        assert_eq!(m.key, format!("{p}_manifest.1.mf"));
        // Applied, it is cached as a listing of that app would be, never
        // under the whole hour's key.
        assert_eq!(m.cached, Some((format!("{p}\nweb"), read_at)));
        let uncached = HourListing {
            manifest: Some(PendingManifest {
                key: "k".into(),
                cached: None,
            }),
            ..whole
        };
        assert_eq!(uncached.scoped_to(&[]).manifest.unwrap().cached, None);
    }

    #[test]
    fn a_key_is_in_the_folder_under_the_prefix_that_holds_it() {
        assert_eq!(folder_of("h/", "h/app=a/x.idx"), Some("h/app=a/"));
        assert_eq!(folder_of("h/", "h/app=a/b/x.idx"), Some("h/app=a/"));
        assert_eq!(folder_of("h/", "h/_tail.1.pack"), None);
        assert_eq!(folder_of("h/", "g/app=a/x.idx"), None);
    }

    #[test]
    fn a_manifest_swaps_sources_for_the_compacted_blocks_it_vouches_for() {
        let p = "h/";
        let c1 = "app=a/compacted.0000000001.00000000000000aa.0.idx";
        let orphan = "app=a/compacted.0000000001.00000000000000bb.0.idx";
        let listed: Vec<(String, u64)> = [
            ("app=a/t.0.00000000000000000000.idx", 5),
            ("app=a/t.0.00000000000000000010.idx", 5),
            ("app=a/t.1.00000000000000000000.idx", 5),
            (c1, 100),
            (orphan, 100),
        ]
        .iter()
        .map(|(n, s)| (format!("{p}{n}"), *s))
        .collect();
        let names = |v: Vec<(String, u64)>| -> Vec<String> {
            v.into_iter()
                .map(|(k, _)| k[p.len()..].to_owned())
                .collect()
        };
        // No manifest: small blocks only, every compacted one ignored.
        assert_eq!(
            names(live_indexes(p, listed.clone(), None, &Fence::default())),
            vec![
                "app=a/t.0.00000000000000000000.idx",
                "app=a/t.0.00000000000000000010.idx",
                "app=a/t.1.00000000000000000000.idx"
            ]
        );
        let m = Manifest {
            entries: vec![entry(
                c1,
                100,
                &[
                    "app=a/t.0.00000000000000000000.idx",
                    "app=a/t.1.00000000000000000000.idx",
                ],
            )],
            ..Default::default()
        };
        assert_eq!(
            names(live_indexes(p, listed.clone(), Some(&m), &Fence::default())),
            vec!["app=a/t.0.00000000000000000010.idx", c1]
        );
        // Before its manifest is read, an hour holds every block one could
        // keep: all of them here (no fence), the orphan included.
        assert!(listed
            .iter()
            .all(|(k, _)| Live::may_read(&k[p.len()..], &Fence::default())));
        // Listed at another size, the compacted block is not the one the
        // manifest names: its sources are read instead.
        let mut other = listed.clone();
        other[3].1 = 99;
        assert_eq!(
            names(live_indexes(p, other, Some(&m), &Fence::default())),
            vec![
                "app=a/t.0.00000000000000000000.idx",
                "app=a/t.0.00000000000000000010.idx",
                "app=a/t.1.00000000000000000000.idx"
            ]
        );
    }
}
