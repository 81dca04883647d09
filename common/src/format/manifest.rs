//! The compaction manifest: one object per (tenant, hour) and generation
//! that says which compacted blocks are live and which small blocks each
//! one replaces.
//!
//! Compaction rewrites an app-hour's small blocks into large ones. A reader
//! must never see a record twice (in a small block and in the compacted one
//! that replaces it) nor miss it. The manifest is the one switch between
//! the two: until it is published a reader reads the small blocks and
//! ignores every compacted one; once it is published (listed), a reader
//! reads the compacted blocks it names and skips their sources. It is
//! written with a conditional put under a generation number one above the
//! newest listed, so of two compactors at most one publishes a generation,
//! and a crash leaves at most objects no manifest names. Each generation
//! holds every entry of the one before, so a reader needs only the newest.
//! Since version 2 an entry may carry a [`LabelSummary`] of its block's
//! streams, so a selector can rule the block out before its index is read.
//! Byte layout: `docs/FORMAT.md`.

use super::fence::Fence;
use super::label_summary::LabelSummary;
use super::vint::{check_crc32c_at, push_crc32c, write_bytes_u32, Cursor};
use super::FormatError;
use std::collections::HashSet;

pub const MAGIC: &[u8; 4] = b"SKMF";
/// The newest version. A manifest with no label summary is written as
/// version 1, which readers before version 2 still read.
pub const VERSION: u16 = 2;
const MIN_VERSION: u16 = 1;
const HEADER_LEN: usize = 8;
/// The fixed fields of an entry, past its strings.
const ENTRY_FIXED: usize = 8 * 7 + 4 * 3;

/// One compacted block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its index key relative to the hour prefix
    /// (`app=<app>/compacted.<generation>.<digest>.<n>.idx`).
    pub name: String,
    /// The index object's size: a listed index of another size is not
    /// this one.
    pub index_size: u64,
    pub data_size: u64,
    pub app: String,
    pub min_time_ns: i64,
    pub max_time_ns: i64,
    pub records: u64,
    pub raw_bytes: u64,
    /// When the generation that added it was made (the compactor's clock):
    /// its sources may be deleted once a grace period has passed since.
    pub created_ns: i64,
    /// The small blocks it replaces: index keys relative to the hour
    /// prefix, sorted. A source is named by one entry at most.
    pub sources: Vec<String>,
    /// Its streams' labels in brief (version 2); `None`: not known, so
    /// no selector rules it out.
    pub labels: Option<LabelSummary>,
}

/// A manifest: every compacted block of an hour that is live.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    pub generation: u64,
    /// When it was made (the compactor's clock).
    pub created_ns: i64,
    /// Sorted by name, no name twice.
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// Encodes the manifest; entries must be sorted by name and each
    /// entry's sources sorted (the decoder refuses anything else, so a
    /// manifest has one reading).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.entries.len() * 256);
        let version = if self.entries.iter().any(|e| e.labels.is_some()) {
            VERSION
        } else {
            MIN_VERSION
        };
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.created_ns.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            write_bytes_u32(&mut out, e.name.as_bytes());
            write_bytes_u32(&mut out, e.app.as_bytes());
            for v in [e.index_size, e.data_size, e.records, e.raw_bytes] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for v in [e.min_time_ns, e.max_time_ns, e.created_ns] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&(e.sources.len() as u32).to_le_bytes());
            for s in &e.sources {
                write_bytes_u32(&mut out, s.as_bytes());
            }
            if version >= 2 {
                match &e.labels {
                    Some(l) => {
                        out.push(1);
                        l.encode(&mut out);
                    }
                    None => out.push(0),
                }
            }
        }
        push_crc32c(&mut out);
        out
    }

    /// Decodes a manifest after checking its magic, version, CRC, the
    /// order of its names and that no source is named twice.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, FormatError> {
        let mut c = Cursor::new(bytes);
        c.magic(MAGIC)?;
        let version = c.u16_le()?;
        FormatError::check_version(version as u32, MIN_VERSION as u32, VERSION as u32)?;
        if c.u16_le()? != 0 {
            return Err(FormatError::corrupt(6, "unknown flags"));
        }
        let Some(crc_at) = bytes
            .len()
            .checked_sub(4)
            .filter(|&at| at >= HEADER_LEN + 20)
        else {
            return Err(FormatError::Truncated {
                offset: HEADER_LEN,
                needed: 24,
                available: bytes.len().saturating_sub(HEADER_LEN),
            });
        };
        check_crc32c_at(bytes, crc_at)?;
        let mut c = Cursor::new(&bytes[HEADER_LEN..crc_at]);
        let at = |c: &Cursor<'_>| HEADER_LEN + c.position();
        let generation = c.u64_le()?;
        let created_ns = c.i64_le()?;
        let count = c.u32_le()? as usize;
        if count > c.remaining() / ENTRY_FIXED {
            return Err(FormatError::corrupt(
                at(&c),
                format!("entry count {count} is impossible"),
            ));
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(count);
        let mut seen: HashSet<&str> = HashSet::new();
        for _ in 0..count {
            let start = at(&c);
            let name = c.str_u32()?;
            let app = c.str_u32()?;
            let (index_size, data_size, records, raw_bytes) =
                (c.u64_le()?, c.u64_le()?, c.u64_le()?, c.u64_le()?);
            let (min_time_ns, max_time_ns, created) = (c.i64_le()?, c.i64_le()?, c.i64_le()?);
            let n = c.u32_le()? as usize;
            if n > c.remaining() / 4 {
                return Err(FormatError::corrupt(
                    at(&c),
                    format!("source count {n} is impossible"),
                ));
            }
            let mut sources: Vec<String> = Vec::with_capacity(n);
            for _ in 0..n {
                let s = c.str_u32()?;
                if sources.last().is_some_and(|prev| prev.as_str() >= s) || !seen.insert(s) {
                    return Err(FormatError::corrupt(
                        at(&c),
                        format!("source {s:?} is out of order or named twice"),
                    ));
                }
                sources.push(s.to_owned());
            }
            let labels = match version {
                1 => None,
                _ => match c.u8()? {
                    0 => None,
                    1 => Some(LabelSummary::decode(&mut c, HEADER_LEN)?),
                    b => {
                        return Err(FormatError::corrupt(
                            at(&c) - 1,
                            format!("label summary marker {b}"),
                        ))
                    }
                },
            };
            if entries
                .last()
                .is_some_and(|prev| prev.name.as_str() >= name)
            {
                return Err(FormatError::corrupt(
                    start,
                    format!("entry {name:?} is out of order or repeated"),
                ));
            }
            if min_time_ns > max_time_ns {
                return Err(FormatError::corrupt(
                    start,
                    format!("entry {name:?}: min time is after max time"),
                ));
            }
            entries.push(Entry {
                name: name.to_owned(),
                index_size,
                data_size,
                app: app.to_owned(),
                min_time_ns,
                max_time_ns,
                records,
                raw_bytes,
                created_ns: created,
                sources,
                labels,
            });
        }
        if !c.is_empty() {
            return Err(FormatError::corrupt(
                at(&c),
                "trailing bytes after the last entry",
            ));
        }
        Ok(Manifest {
            generation,
            created_ns,
            entries,
        })
    }

    /// Every source of every entry.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .flat_map(|e| e.sources.iter().map(String::as_str))
    }
}

/// Which of an hour's listed indexes a reader reads under its newest
/// manifest (none: `None`): the compacted blocks the manifest names and
/// that are listed at the size it names, and every small block but their
/// sources. A compacted block the manifest does not name is a lost race or
/// a crash's leftover, and is never read. Names are relative to the hour
/// prefix.
///
/// A small block a newer epoch claim supersedes (`fence`) is never read
/// either: its records are written again by the claim's indexer.
pub struct Live<'m> {
    compacted: HashSet<&'m str>,
    replaced: HashSet<&'m str>,
    fence: &'m Fence,
}

impl<'m> Live<'m> {
    pub fn new<'a>(
        manifest: Option<&'m Manifest>,
        listed: impl IntoIterator<Item = (&'a str, u64)>,
        fence: &'m Fence,
    ) -> Live<'m> {
        let listed: std::collections::HashMap<&str, u64> = listed.into_iter().collect();
        let live: Vec<&Entry> = manifest
            .iter()
            .flat_map(|m| &m.entries)
            .filter(|e| listed.get(e.name.as_str()) == Some(&e.index_size))
            .collect();
        Live {
            compacted: live.iter().map(|e| e.name.as_str()).collect(),
            replaced: live
                .iter()
                .flat_map(|e| e.sources.iter().map(String::as_str))
                .collect(),
            fence,
        }
    }

    /// Whether the listed index `name` could be read under some manifest:
    /// every compacted block (one may name it), and every small block
    /// `fence` does not supersede. What [`reads`](Self::reads) keeps is
    /// always among these, so a reader may rule out blocks of this set
    /// before it reads the manifest.
    pub fn may_read(name: &str, fence: &Fence) -> bool {
        super::layout::is_compacted(name) || !fence.superseded(name)
    }

    /// Whether the listed index `name` is read.
    pub fn reads(&self, name: &str) -> bool {
        if super::layout::is_compacted(name) {
            self.compacted.contains(name)
        } else {
            !self.replaced.contains(name) && !self.fence.superseded(name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            generation: 2,
            created_ns: 1_795_266_000_000_000_000,
            entries: vec![
                Entry {
                    name: "app=checkout/compacted.0000000001.00000000000000ab.0.idx".into(),
                    index_size: 4096,
                    data_size: 1 << 20,
                    app: "checkout".into(),
                    min_time_ns: 10,
                    max_time_ns: 20,
                    records: 1000,
                    raw_bytes: 300_000,
                    created_ns: 5,
                    sources: vec![
                        "app=checkout/logs.0.00000000000000000000.idx".into(),
                        "app=checkout/logs.1.00000000000000000007.idx".into(),
                    ],
                    labels: None,
                },
                Entry {
                    name: "app=web/compacted.0000000002.00000000000000cd.0.idx".into(),
                    index_size: 100,
                    data_size: 200,
                    app: "web".into(),
                    min_time_ns: 30,
                    max_time_ns: 30,
                    records: 1,
                    raw_bytes: 50,
                    created_ns: 6,
                    sources: vec!["app=web/logs.2.00000000000000000003.idx".into()],
                    labels: None,
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        assert_eq!(m.sources().count(), 3);
        let empty = Manifest::default();
        assert_eq!(Manifest::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn label_summaries_make_version_2_and_round_trip() {
        use crate::format::index::StreamEntry;
        let mut m = sample();
        assert_eq!(m.encode()[4..6], 1u16.to_le_bytes(), "no summary: v1");
        m.entries[1].labels = LabelSummary::of_streams(&[StreamEntry {
            labels: vec![("namespace".into(), "payments".into())],
            first_record: 0,
            record_count: 1,
            min_time_ns: 30,
            max_time_ns: 30,
        }]);
        let bytes = m.encode();
        assert_eq!(bytes[4..6], 2u16.to_le_bytes());
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        // A summary marker other than 0 or 1 is refused.
        let at = bytes.len()
            - 4
            - m.entries[1].labels.as_ref().map_or(0, |l| {
                let mut b = Vec::new();
                l.encode(&mut b);
                b.len()
            })
            - 1;
        let mut bad = bytes.clone();
        bad[at] = 7;
        assert!(Manifest::decode(&resign(bad)).is_err());
    }

    /// Re-signs `bytes` after a change, so the check under test is not the CRC.
    fn resign(mut bytes: Vec<u8>) -> Vec<u8> {
        bytes.truncate(bytes.len() - 4);
        push_crc32c(&mut bytes);
        bytes
    }

    #[test]
    fn a_source_named_twice_is_refused() {
        let mut m = sample();
        m.entries[1].sources = vec![m.entries[0].sources[0].clone()];
        let err = Manifest::decode(&m.encode()).unwrap_err();
        assert!(err.to_string().contains("named twice"), "{err}");
    }

    #[test]
    fn out_of_order_entries_and_bad_times_are_refused() {
        let mut m = sample();
        m.entries.swap(0, 1);
        assert!(Manifest::decode(&m.encode()).is_err());
        let mut m = sample();
        m.entries[0].min_time_ns = 99;
        assert!(Manifest::decode(&m.encode()).is_err());
    }

    #[test]
    fn flipped_bytes_and_truncations_are_errors() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..i]).is_err(), "prefix {i}");
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(Manifest::decode(&b).is_err(), "flip at {i}");
        }
        // A huge entry count with a valid CRC is refused before allocating.
        let mut b = bytes.clone();
        b[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Manifest::decode(&resign(b)).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Manifest::decode(&bytes);
            let _ = Manifest::decode(&resign([&bytes[..], &[0; 4]].concat()));
        }
    }
}
