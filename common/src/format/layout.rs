//! Object keys: where each object lives in the store.
//!
//! Hive-style partition folders put tenant, date and hour first, so listing
//! a time range is a prefix listing, archiving a date range is a recursive
//! copy, and retention deletes whole prefixes:
//!
//! `tenant=<t>/dt=<YYYY-MM-DD>/hour=<HH>/app=<a>/<topic>.<partition>.<first offset>.{seq,idx}`
//!
//! Beside the tenants, `_ledger/` holds the indexer's exactly-once
//! bookkeeping and `_deadletter/` the records a limit refused.
//!
//! Tenant and app are percent-encoded ([`encode_component`]), so a value can
//! neither escape its folder nor collide with another value.

use chrono::{DateTime, Datelike, Timelike};

pub const DATA_SUFFIX: &str = ".seq";
pub const INDEX_SUFFIX: &str = ".idx";
/// Index packs: `<hour prefix>_index.<digest>.<n>of<count>.pack` (see
/// [`PackName`]).
pub const PACK_SUFFIX: &str = ".pack";
const PACK_STEM: &str = "_index.";
/// Sliced blooms: `<hour prefix>_blooms.<digest>.<content>.slices` (see
/// [`slices_key`]).
const SLICES_STEM: &str = "_blooms.";
const SLICES_SUFFIX: &str = ".slices";
/// Tail packs: `<hour prefix>_tail.<digest>.pack` (see [`tail_pack_key`]).
const TAIL_PACK_STEM: &str = "_tail.";
/// Compaction manifests: `<hour prefix>_manifest.<generation>.mf` (see
/// [`manifest_key`]).
const MANIFEST_STEM: &str = "_manifest.";
const MANIFEST_SUFFIX: &str = ".mf";
/// Compacted blocks: `app=<a>/compacted.<generation>.<digest>.<n>.{seq,idx}` (see
/// [`compacted_stem`]); no small block's name takes that shape.
const COMPACTED_STEM: &str = "compacted.";
pub const LEDGER_ROOT: &str = "_ledger/";
pub const DEAD_LETTER_ROOT: &str = "_deadletter/";
/// Nanoseconds in an hour: blocks are cut, named and listed by the hour.
pub const NS_PER_HOUR: i64 = 3_600_000_000_000;

/// The wall clock in nanoseconds since the Unix epoch, saturating at
/// `i64::MAX` (the year 2262), so "now" is never before a real time.
/// The one clock reading every crate uses for "now".
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// The last event time the searcher accepts: 2116, far enough from
/// `i64`'s end that range arithmetic cannot overflow.
pub const MAX_TIME_NS: i64 = 1 << 62;

/// Whether an event time can be queried: 1970 to 2116. The indexer gives a
/// record whose own time lies outside its Kafka timestamp instead, so no
/// record is stored where no query can reach it.
pub fn searchable_time(t: i64) -> bool {
    (0..=MAX_TIME_NS).contains(&t)
}

/// The longest tenant id Loki accepts.
pub const MAX_TENANT_LEN: usize = 150;
/// The longest app name; with the tenant and topic it keeps a key well
/// under S3's 1,024 bytes even when every byte is percent-encoded.
pub const MAX_APP_LEN: usize = 128;

/// Loki's tenant charset, minus the `|` that joins tenants for federated
/// queries (a query reads one tenant), and never `.` or `..`. The indexer
/// refuses records of other tenants, the searcher requests for them.
pub fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TENANT_LEN
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!-_.*'()".contains(&b))
}

/// Where a refused record is kept, whole:
/// `_deadletter/topic=<t>/partition=<p>/<offset>-<line>.<reason>`, with the
/// offset zero-padded so keys list in offset order. `line` counts the
/// lines of a multi-line message from 0. The name depends only on where
/// the record sits in Kafka, so a replay overwrites rather than copies.
pub fn dead_letter_key(
    topic: &str,
    partition: i32,
    offset: i64,
    line: u32,
    reason: &str,
) -> String {
    format!(
        "{DEAD_LETTER_ROOT}topic={}/partition={partition}/{offset:020}-{line}.{}",
        encode_component(topic),
        encode_component(reason)
    )
}

/// Percent-encodes every byte outside `[A-Za-z0-9_.-]`, and encodes the
/// whole of `.`/`..` and the empty string, so the result is a safe,
/// injective path segment.
pub fn encode_component(value: &str) -> String {
    match value {
        "" => return "%".to_owned(),
        "." => return "%2E".to_owned(),
        ".." => return "%2E%2E".to_owned(),
        _ => {}
    }
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Inverse of [`encode_component`]; `None` for a malformed segment.
pub fn decode_component(segment: &str) -> Option<String> {
    match segment {
        "%" => return Some(String::new()),
        "%2E" => return Some(".".to_owned()),
        "%2E%2E" => return Some("..".to_owned()),
        _ => {}
    }
    let b = segment.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The hour a timestamp falls in, as hours since the Unix epoch.
pub fn hour_of(time_ns: i64) -> i64 {
    time_ns.div_euclid(NS_PER_HOUR)
}

/// `tenant=<t>/`
pub fn tenant_prefix(tenant: &str) -> String {
    format!("tenant={}/", encode_component(tenant))
}

/// `tenant=<t>/dt=<date>/hour=<HH>/` for an hour since the epoch.
pub fn hour_prefix(tenant: &str, hour: i64) -> String {
    let t = DateTime::from_timestamp(hour.saturating_mul(3600), 0).unwrap_or_default();
    format!(
        "{}dt={:04}-{:02}-{:02}/hour={:02}/",
        tenant_prefix(tenant),
        t.year(),
        t.month(),
        t.day(),
        t.hour()
    )
}

/// The name of one of an hour's index packs: pack `n` of `count`, packed
/// from a listing whose (name, size) pairs hash to `digest`
/// ([`pack_digest`]). The name alone tells a packer whether the hour
/// changed since, with no GET; it sits beside the `app=` folders, so
/// listing the hour returns it, and deleting or copying the hour takes it
/// along: `<hour prefix>_index.<digest, 16 hex>.<n>of<count>.pack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackName {
    pub digest: u64,
    pub n: usize,
    pub count: usize,
}

impl PackName {
    pub fn key(&self, hour_prefix: &str) -> String {
        format!(
            "{hour_prefix}{PACK_STEM}{:016x}.{}of{}{PACK_SUFFIX}",
            self.digest, self.n, self.count
        )
    }

    /// The pack a key listed under `hour_prefix` names, if it is one.
    pub fn parse(hour_prefix: &str, key: &str) -> Option<PackName> {
        let rest = key
            .strip_prefix(hour_prefix)?
            .strip_prefix(PACK_STEM)?
            .strip_suffix(PACK_SUFFIX)?;
        let (digest, part) = rest.split_once('.')?;
        let (n, count) = part.split_once("of")?;
        let number = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let name = PackName {
            digest: (digest.len() == 16)
                .then(|| u64::from_str_radix(digest, 16).ok())
                .flatten()?,
            n: number(n)?,
            count: number(count)?,
        };
        (name.n < name.count && name.key(hour_prefix) == key).then_some(name)
    }
}

/// The key of an hour's sliced blooms (`format::slices`), made beside its
/// packs from the listing whose digest is `digest` ([`pack_digest`]), with
/// `content` the xxh3-64 of the object's bytes:
/// `<hour prefix>_blooms.<digest, 16 hex>.<content, 16 hex>.slices`.
///
/// Other bytes get another key, never the same one: a reader caches the
/// head and the rows by key, and pairing a cached head with rows of a
/// rewrite (an index rebuilt at the same size, or a packer that groups
/// differently) could rule out a block that holds a match.
pub fn slices_key(hour_prefix: &str, digest: u64, content: u64) -> String {
    format!("{hour_prefix}{SLICES_STEM}{digest:016x}.{content:016x}{SLICES_SUFFIX}")
}

/// The day folder an hour prefix is in: `tenant=<t>/dt=<date>/` of
/// `tenant=<t>/dt=<date>/hour=<HH>/`. A day's sliced blooms
/// ([`day_slices_prefix`]) sit there, beside its hour folders.
pub fn day_prefix_of(hour_prefix: &str) -> Option<&str> {
    let at = hour_prefix.rfind("hour=")?;
    hour_prefix[..at].ends_with('/').then(|| &hour_prefix[..at])
}

/// What a LIST of a day's sliced blooms asks for: `<day prefix>_blooms.`.
/// Their keys are [`slices_key`]s under the day prefix, and the names in
/// them are relative to it (`hour=<HH>/app=<a>/...idx`).
pub fn day_slices_prefix(day_prefix: &str) -> String {
    format!("{day_prefix}{SLICES_STEM}")
}

/// The last hour (hours since the epoch) of the day whose own object `key`
/// is (one directly under `tenant=<t>/dt=<date>/`, such as its sliced
/// blooms): such an object goes with the day's last hour.
pub fn day_object_last_hour(tenant_prefix: &str, key: &str) -> Option<i64> {
    let rest = key.strip_prefix(tenant_prefix)?.strip_prefix("dt=")?;
    let (date, name) = rest.split_once('/')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let start = date.and_hms_opt(23, 0, 0)?.and_utc().timestamp();
    Some(start.div_euclid(3600))
}

/// The (digest, content hash) of a sliced-blooms key listed under
/// `hour_prefix`, if it is one.
pub fn parse_slices_key(hour_prefix: &str, key: &str) -> Option<(u64, u64)> {
    let rest = key
        .strip_prefix(hour_prefix)?
        .strip_prefix(SLICES_STEM)?
        .strip_suffix(SLICES_SUFFIX)?;
    let (digest, content) = rest.split_once('.')?;
    let hex = |s: &str| {
        (s.len() == 16)
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    let (digest, content) = (hex(digest)?, hex(content)?);
    (slices_key(hour_prefix, digest, content) == key).then_some((digest, content))
}

/// The key of a tail pack: an index pack the indexer writes as it uploads
/// (`docs/DESIGN.md`, "The unsettled tail"), holding the indexes it stored
/// in the hour since its last tail pack, whose (name, size) pairs hash to
/// `digest` ([`pack_digest`]): `<hour prefix>_tail.<digest, 16 hex>.pack`.
/// Equal keys hold equal members, so two writers never disagree on one.
/// Like the hour's other own objects it starts with `_`, which Hadoop
/// skips as hidden.
pub fn tail_pack_key(hour_prefix: &str, digest: u64) -> String {
    format!("{hour_prefix}{TAIL_PACK_STEM}{digest:016x}{PACK_SUFFIX}")
}

/// The digest of a tail pack's key listed under `hour_prefix`, if it is
/// one.
pub fn parse_tail_pack_key(hour_prefix: &str, key: &str) -> Option<u64> {
    let hex = key
        .strip_prefix(hour_prefix)?
        .strip_prefix(TAIL_PACK_STEM)?
        .strip_suffix(PACK_SUFFIX)?;
    let digest = (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()?;
    (tail_pack_key(hour_prefix, digest) == key).then_some(digest)
}

/// The hour prefix of a block's key and its name under it: `tenant=<t>/
/// dt=<d>/hour=<HH>/` and `app=<a>/<file>`. Tenants and apps are
/// percent-encoded, so `/app=` starts the app folder and nothing else.
pub fn split_block_key(key: &str) -> Option<(&str, &str)> {
    let at = key.find("/app=")? + 1;
    Some(key.split_at(at))
}

/// The key of an hour's compaction manifest of generation `generation`
/// (`format::manifest`): `<hour prefix>_manifest.<generation, 10 digits>.mf`,
/// so keys list in generation order.
pub fn manifest_key(hour_prefix: &str, generation: u64) -> String {
    format!("{hour_prefix}{MANIFEST_STEM}{generation:010}{MANIFEST_SUFFIX}")
}

/// The generation of a manifest key listed under `hour_prefix`, if it is
/// one.
pub fn parse_manifest_key(hour_prefix: &str, key: &str) -> Option<u64> {
    let n = key
        .strip_prefix(hour_prefix)?
        .strip_prefix(MANIFEST_STEM)?
        .strip_suffix(MANIFEST_SUFFIX)?;
    let generation = (n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()?;
    Some(generation)
}

/// The stem, relative to the hour prefix, of compacted block `n` of `app`
/// made for manifest generation `generation` from sources whose names hash
/// to `digest`: `app=<a>/compacted.<generation, 10 digits>.<digest, 16 hex>.<n>`.
/// Two compactors racing for a generation with different sources write
/// different keys, so the loser never overwrites the winner's bytes.
pub fn compacted_stem(app: &str, generation: u64, digest: u64, n: usize) -> String {
    format!(
        "app={}/{COMPACTED_STEM}{generation:010}.{digest:016x}.{n}",
        encode_component(app)
    )
}

/// Whether a key (or a name relative to the hour prefix) is a compacted
/// block's (see [`compacted_generation`]).
pub fn is_compacted(key: &str) -> bool {
    compacted_generation(key).is_some()
}

/// The generation a compacted block's key was made for, if it is one: its
/// file name is exactly `compacted.<10 digits>.<16 hex>.<n>` with an optional
/// `.seq` or `.idx`. A small block's name cannot take that shape, even of
/// a topic named `compacted` (its offset has 20 digits). It starts with
/// no `_`, which Hadoop input formats skip as hidden: a Spark glob reads it.
pub fn compacted_generation(key: &str) -> Option<u64> {
    let file = key.rsplit('/').next()?.strip_prefix(COMPACTED_STEM)?;
    let file = file
        .strip_suffix(INDEX_SUFFIX)
        .or_else(|| file.strip_suffix(DATA_SUFFIX))
        .unwrap_or(file);
    let mut parts = file.split('.');
    let (g, digest, n) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let hex = |s: &str| s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (parts.next().is_none() && g.len() == 10 && digits(g) && hex(digest) && digits(n))
        .then(|| g.parse().ok())
        .flatten()
}

/// Where a key under `tenant=<t>/` sits: its hour (hours since the
/// epoch), and its app when it is inside an app folder. `None` for a key
/// outside any hour folder, or a folder name this layout does not write.
pub fn hour_and_app(tenant_prefix: &str, key: &str) -> Option<(i64, Option<String>)> {
    let rest = key.strip_prefix(tenant_prefix)?.strip_prefix("dt=")?;
    let (date, rest) = rest.split_once('/')?;
    let (hh, rest) = rest.strip_prefix("hour=")?.split_once('/')?;
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    if hh.len() != 2 || !hh.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hh: u32 = hh.parse().ok()?;
    let start = date.and_hms_opt(hh, 0, 0)?.and_utc().timestamp();
    let hour = start.div_euclid(3600);
    let app = match rest.strip_prefix("app=") {
        Some(r) => Some(decode_component(r.split_once('/')?.0)?),
        None => None,
    };
    Some((hour, app))
}

/// The app folder of a key listed under `hour_prefix`, decoded:
/// `app=<a>/...` gives `a`.
pub fn app_of(hour_prefix: &str, key: &str) -> Option<String> {
    let rest = key.strip_prefix(hour_prefix)?.strip_prefix("app=")?;
    decode_component(rest.split_once('/')?.0)
}

/// `<hour prefix>app=<a>/`: one app's folder in an hour.
pub fn app_prefix(hour_prefix: &str, app: &str) -> String {
    format!("{hour_prefix}app={}/", encode_component(app))
}

/// The digest of an hour's listed indexes, as (name relative to the hour
/// prefix, size) pairs in name order.
pub fn pack_digest<'a>(indexes: impl IntoIterator<Item = (&'a str, u64)>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (name, size) in indexes {
        h.update(name.as_bytes());
        h.update(b"\n");
        h.update(&size.to_le_bytes());
    }
    h.digest()
}

/// Everything that names one block; equal names mean the same records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockName {
    pub tenant: String,
    pub app: String,
    pub hour: i64,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    /// The partition epoch its indexer claimed (`format::fence`); 0 for
    /// blocks written before epochs, whose names lack the `.e<epoch>`.
    pub epoch: u64,
}

impl BlockName {
    fn stem(&self) -> String {
        let epoch = match self.epoch {
            0 => String::new(),
            e => format!(".e{e:010}"),
        };
        format!(
            "{}app={}/{}.{}.{:020}{epoch}",
            hour_prefix(&self.tenant, self.hour),
            encode_component(&self.app),
            encode_component(&self.topic),
            self.partition,
            self.first_offset
        )
    }

    pub fn data_key(&self) -> String {
        self.stem() + DATA_SUFFIX
    }

    pub fn index_key(&self) -> String {
        self.stem() + INDEX_SUFFIX
    }
}

/// Where a small block's records come from, read back from its key:
/// `<topic>.<partition>.<first offset, 20 digits>[.e<epoch, 10 digits>]`
/// before `.idx` or `.seq`. `None` for a compacted block or a key of
/// another shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockSource {
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub epoch: u64,
}

impl BlockSource {
    pub fn parse(key: &str) -> Option<BlockSource> {
        let file = key.rsplit('/').next()?;
        let stem = file
            .strip_suffix(INDEX_SUFFIX)
            .or_else(|| file.strip_suffix(DATA_SUFFIX))?;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let (rest, epoch) = match stem.rsplit_once('.') {
            Some((rest, e)) if e.starts_with('e') && digits(&e[1..], 10) => {
                (rest, e[1..].parse().ok()?)
            }
            _ => (stem, 0),
        };
        let (rest, first) = rest.rsplit_once('.')?;
        let (topic, partition) = rest.rsplit_once('.')?;
        if !digits(first, 20) || partition.is_empty() || is_compacted(key) {
            return None;
        }
        let partition: i32 = partition.parse().ok().filter(|p: &i32| *p >= 0)?;
        Some(BlockSource {
            topic: decode_component(topic)?,
            partition,
            first_offset: first.parse().ok()?,
            epoch,
        })
    }
}

/// The data block beside an index key: the same stem, [`DATA_SUFFIX`] for
/// [`INDEX_SUFFIX`] (appended if the key lacks it). A reader takes a
/// block's key from the index key it listed, never from the `data_key`
/// written inside the index, so it reads only under prefixes it listed.
pub fn data_key_of(index_key: &str) -> String {
    let stem = index_key.strip_suffix(INDEX_SUFFIX).unwrap_or(index_key);
    format!("{stem}{DATA_SUFFIX}")
}

/// The index beside a data block key: the inverse of [`data_key_of`].
pub fn index_key_of(data_key: &str) -> String {
    let stem = data_key.strip_suffix(DATA_SUFFIX).unwrap_or(data_key);
    format!("{stem}{INDEX_SUFFIX}")
}

/// `_ledger/topic=<t>/partition=<p>/`: the per-partition record of blocks
/// in flight (see `docs/DESIGN.md`).
pub fn ledger_prefix(topic: &str, partition: i32) -> String {
    format!(
        "{LEDGER_ROOT}topic={}/partition={partition}/",
        encode_component(topic)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_give_back_their_hour_and_app() {
        let hour = 498_685;
        let prefix = hour_prefix("acme", hour);
        let t = tenant_prefix("acme");
        let app = app_prefix(&prefix, "a/b");
        assert_eq!(
            hour_and_app(&t, &format!("{app}x.0.1.seq")),
            Some((hour, Some("a/b".to_owned())))
        );
        assert_eq!(
            hour_and_app(&t, &manifest_key(&prefix, 3)),
            Some((hour, None))
        );
        for not in [
            format!("{t}_retention.json"),
            format!("{t}dt=2026-13-01/hour=01/x"),
            format!("{t}dt=2026-11-21/hour=24/x"),
            format!("{t}dt=2026-11-21/hour=1/x"),
            format!("{t}dt=2026-11-21/hour=01"),
            format!("{prefix}app=%zz/x"),
            "tenant=other/dt=2026-11-21/hour=13/x".to_owned(),
        ] {
            assert_eq!(hour_and_app(&t, &not), None, "{not}");
        }
    }

    #[test]
    fn a_days_own_objects_sit_beside_its_hours_and_go_with_its_last() {
        let hour = 498_685; // 2026-11-21 13:00 UTC
        let prefix = hour_prefix("acme", hour);
        let day = day_prefix_of(&prefix).unwrap();
        assert_eq!(day, "tenant=acme/dt=2026-11-21/");
        let key = slices_key(day, 1, 2);
        assert!(key.starts_with(&day_slices_prefix(day)));
        assert_eq!(parse_slices_key(day, &key), Some((1, 2)));
        assert_eq!(parse_slices_key(&prefix, &key), None);
        let t = tenant_prefix("acme");
        assert_eq!(day_object_last_hour(&t, &key), Some(hour - 13 + 23));
        assert_eq!(hour_and_app(&t, &key), None, "not an hour's object");
        for not in [
            format!("{prefix}x"),
            format!("{t}dt=2026-11-21/"),
            format!("{t}dt=2026-13-01/x"),
            format!("{t}_retention.json"),
        ] {
            assert_eq!(day_object_last_hour(&t, &not), None, "{not}");
        }
        assert_eq!(day_prefix_of("tenant=acme/"), None);
    }

    #[test]
    fn pack_keys_sit_beside_the_app_folders() {
        let hour = hour_prefix("acme", 498_685);
        let name = PackName {
            digest: 0xfeed_0000_0000_beef,
            n: 1,
            count: 3,
        };
        let key = name.key(&hour);
        assert_eq!(
            key,
            "tenant=acme/dt=2026-11-21/hour=13/_index.feed00000000beef.1of3.pack"
        );
        assert_eq!(PackName::parse(&hour, &key), Some(name));
        for not in [
            format!("{hour}app=_index.feed00000000beef.1of3.pack/x.idx"),
            format!("{hour}_index.feed00000000beef.3of3.pack"),
            format!("{hour}_index.feed00000000beef.1of.pack"),
            format!("{hour}_index.feed00000000bee.1of3.pack"),
            format!("{hour}_index.FEED00000000BEEF.1of3.pack"),
            format!("{hour}_index.feed00000000beef.+1of3.pack"),
            format!("{hour}_index.feed00000000beef.01of3.pack"),
            format!("{hour}app=a/_index.feed00000000beef.1of3.pack"),
            "tenant=other/dt=2026-11-21/hour=13/_index.feed00000000beef.1of3.pack".to_owned(),
        ] {
            assert_eq!(PackName::parse(&hour, &not), None, "{not}");
        }
    }

    #[test]
    fn slices_keys_round_trip_and_refuse_look_alikes() {
        let hour = hour_prefix("acme", 498_685);
        let key = slices_key(&hour, 0xab, 0xcd);
        assert_eq!(
            key,
            format!("{hour}_blooms.00000000000000ab.00000000000000cd.slices")
        );
        assert_eq!(parse_slices_key(&hour, &key), Some((0xab, 0xcd)));
        for not in [
            format!("{hour}_blooms.00000000000000ab.slices"),
            format!("{hour}_blooms.AB.00000000000000cd.slices"),
            format!("{hour}_blooms.00000000000000AB.00000000000000cd.slices"),
            format!("{hour}_blooms.00000000000000ab.00000000000000cd.pack"),
            format!("{hour}app=x/_blooms.00000000000000ab.00000000000000cd.slices"),
            format!("{hour}_index.00000000000000ab.0of1.pack"),
        ] {
            assert_eq!(parse_slices_key(&hour, &not), None, "{not}");
        }
    }

    #[test]
    fn manifest_and_compacted_keys_round_trip_and_refuse_look_alikes() {
        let hour = hour_prefix("acme", 498_685);
        let key = manifest_key(&hour, 42);
        assert_eq!(key, format!("{hour}_manifest.0000000042.mf"));
        assert_eq!(parse_manifest_key(&hour, &key), Some(42));
        assert!(manifest_key(&hour, 9) < manifest_key(&hour, 10));
        for not in [
            format!("{hour}_manifest.42.mf"),
            format!("{hour}_manifest.000000004x.mf"),
            format!("{hour}app=a/_manifest.0000000042.mf"),
            format!("{hour}_manifest.0000000042.pack"),
        ] {
            assert_eq!(parse_manifest_key(&hour, &not), None, "{not}");
        }
        let stem = compacted_stem("shop/checkout", 3, 0xab, 1);
        assert_eq!(
            stem,
            "app=shop%2Fcheckout/compacted.0000000003.00000000000000ab.1"
        );
        let idx = format!("{hour}{stem}{INDEX_SUFFIX}");
        assert!(is_compacted(&idx) && is_compacted(&stem));
        assert_eq!(compacted_generation(&idx), Some(3));
        assert_eq!(app_of(&hour, &idx).as_deref(), Some("shop/checkout"));
        assert_eq!(
            app_prefix(&hour, "shop/checkout"),
            format!("{hour}app=shop%2Fcheckout/")
        );
        for small in [
            format!("{hour}app=compacted.x/logs.0.00000000000000000001.idx"),
            format!("{hour}app=a/compacted.1000000000.00000000000000000001.idx"),
            format!("{hour}app=a/compacted.0000000003.00000000000000ab.1.x.idx"),
        ] {
            assert!(!is_compacted(&small), "{small}");
        }
    }

    #[test]
    fn tail_pack_keys_round_trip_and_nothing_else_parses_as_one() {
        let h = hour_prefix("t", 498_672);
        let k = tail_pack_key(&h, 0xab);
        assert_eq!(k, format!("{h}_tail.00000000000000ab.pack"));
        assert_eq!(parse_tail_pack_key(&h, &k), Some(0xab));
        for other in [
            format!("{h}_tail.ab.pack"),
            format!("{h}_tail.00000000000000AB.pack"),
            format!("{h}_tail.00000000000000ab.slices"),
            format!("{h}app=_tail.00000000000000ab.pack"),
            PackName {
                digest: 0xab,
                n: 0,
                count: 1,
            }
            .key(&h),
            tail_pack_key(&hour_prefix("u", 498_672), 0xab),
        ] {
            assert_eq!(parse_tail_pack_key(&h, &other), None, "{other}");
        }
        assert_eq!(PackName::parse(&h, &k), None, "not a full pack");
    }

    #[test]
    fn a_block_key_splits_at_its_app_folder() {
        let h = hour_prefix("a/app=b", 498_672);
        let key = format!("{h}app=x%2Fy/logs.0.00000000000000000000.idx");
        assert_eq!(
            split_block_key(&key),
            Some((h.as_str(), "app=x%2Fy/logs.0.00000000000000000000.idx"))
        );
        assert_eq!(split_block_key("tenant=t/dt=x/hour=01/_index.pack"), None);
    }

    #[test]
    fn pack_digests_change_with_any_name_or_size() {
        let d = |v: &[(&str, u64)]| pack_digest(v.iter().copied());
        let base = d(&[("app=a/x.idx", 10), ("app=b/y.idx", 20)]);
        assert_ne!(base, d(&[("app=a/x.idx", 10), ("app=b/y.idx", 21)]));
        assert_ne!(base, d(&[("app=a/x.idx", 10)]));
        assert_ne!(base, d(&[("app=a/x.idx", 10), ("app=b/z.idx", 20)]));
        assert_eq!(base, d(&[("app=a/x.idx", 10), ("app=b/y.idx", 20)]));
    }

    #[test]
    fn components_cannot_escape_or_collide() {
        for v in ["", ".", "..", "a/b", "../x", "a=b", "ü", "%", "%25", "a b"] {
            let e = encode_component(v);
            assert!(
                !e.contains('/') && !e.contains('=') && e != "." && e != "..",
                "{v:?} -> {e}"
            );
            assert_eq!(decode_component(&e).as_deref(), Some(v));
        }
        assert_ne!(encode_component("%"), encode_component(""));
        assert_ne!(encode_component("%25"), encode_component("%"));
    }

    #[test]
    fn block_keys_follow_the_layout() {
        let n = BlockName {
            tenant: "acme".into(),
            app: "shop/checkout".into(),
            hour: hour_of(1_763_730_000 * 1_000_000_000),
            topic: "logs".into(),
            partition: 3,
            first_offset: 42,
            epoch: 0,
        };
        assert_eq!(
            n.data_key(),
            "tenant=acme/dt=2025-11-21/hour=13/app=shop%2Fcheckout/logs.3.00000000000000000042.seq"
        );
        assert!(n.index_key().ends_with(".idx"));
        let source = |n: &BlockName| BlockSource {
            topic: n.topic.clone(),
            partition: n.partition,
            first_offset: n.first_offset,
            epoch: n.epoch,
        };
        assert_eq!(BlockSource::parse(&n.index_key()), Some(source(&n)));
        let n = BlockName {
            topic: "a.e0000000001.b".into(),
            epoch: 7,
            ..n
        };
        assert_eq!(
            n.index_key(),
            "tenant=acme/dt=2025-11-21/hour=13/app=shop%2Fcheckout/a.e0000000001.b.3.00000000000000000042.e0000000007.idx"
        );
        assert_eq!(BlockSource::parse(&n.index_key()), Some(source(&n)));
        assert_eq!(BlockSource::parse(&n.data_key()), Some(source(&n)));
        for not in [
            "app=a/logs.3.0042.idx",
            "app=a/logs.-3.00000000000000000042.idx",
            "app=a/logs.3.00000000000000000042.e7.idx",
            "app=a/logs.3.00000000000000000042.x",
            "app=a/compacted.0000000003.00000000000000ab.1.idx",
            "app=a/.00000000000000000042.idx",
        ] {
            assert_eq!(BlockSource::parse(not), None, "{not}");
        }
    }

    #[test]
    fn a_blocks_data_and_index_keys_are_siblings() {
        let n = BlockName {
            tenant: "acme".into(),
            app: "a".into(),
            hour: 0,
            topic: "logs".into(),
            partition: 0,
            first_offset: 7,
            epoch: 0,
        };
        assert_eq!(data_key_of(&n.index_key()), n.data_key());
        assert_eq!(index_key_of(&n.data_key()), n.index_key());
        assert_eq!(
            data_key_of("tenant=t/dt=1970-01-01/hour=00/app=a/x.idx"),
            "tenant=t/dt=1970-01-01/hour=00/app=a/x.seq"
        );
        // Only the suffix changes, even where the stem holds the other one.
        assert_eq!(data_key_of("app=a.idx/x.idx"), "app=a.idx/x.seq");
        assert_eq!(index_key_of("a.seq.seq"), "a.seq.idx");
        // A key without the suffix gets it appended.
        assert_eq!(data_key_of("x"), "x.seq");
        assert_eq!(index_key_of("x"), "x.idx");
    }

    #[test]
    fn dead_letter_keys_sort_by_offset_and_stay_in_their_folder() {
        assert_eq!(
            dead_letter_key("logs", 2, 42, 1, "line_too_long"),
            "_deadletter/topic=logs/partition=2/00000000000000000042-1.line_too_long"
        );
        assert_eq!(
            dead_letter_key("../x", 0, 7, 0, "r"),
            "_deadletter/topic=..%2Fx/partition=0/00000000000000000007-0.r"
        );
        assert!(dead_letter_key("t", 0, 9, 0, "r") < dead_letter_key("t", 0, 10, 0, "r"));
    }

    #[test]
    fn tenants_follow_lokis_rules() {
        for ok in ["acme", "team-a_1", "a.b", "x*'()!"] {
            assert!(valid_tenant(ok), "{ok}");
        }
        let long = "a".repeat(MAX_TENANT_LEN + 1);
        for bad in ["", ".", "..", "a/b", "a|b", "tenänt", "a b", long.as_str()] {
            assert!(!valid_tenant(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_reachable_times_are_searchable() {
        assert!(searchable_time(0) && searchable_time(MAX_TIME_NS));
        assert!(!searchable_time(-1) && !searchable_time(MAX_TIME_NS + 1));
    }
}
