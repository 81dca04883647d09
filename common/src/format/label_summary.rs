//! A compacted block's label sets in brief, kept in the manifest so a
//! selector on a label other than the app (`{namespace="payments"}`) can
//! rule the block out before its index is fetched.
//!
//! Per label name it keeps the values the block's streams give it (up to a
//! budget; past it, "any value") and whether some stream lacks the label
//! (a matcher then sees `""`, as Prometheus and Loki define it). Matchers
//! are tested name by name, so the summary admits a superset of what the
//! streams admit: it may keep a block no stream of which matches, never
//! drop one that a stream matches. Byte layout: `docs/FORMAT.md`,
//! "Manifest".

use std::collections::{BTreeMap, BTreeSet};

use super::index::StreamEntry;
use super::vint::{write_bytes_u32, Cursor};
use super::FormatError;

/// More label names than this and a block gets no summary.
pub const MAX_NAMES: usize = 32;
/// Values listed per name; past it, the name admits any value.
pub const MAX_VALUES: usize = 64;
/// The bytes of values a summary lists in all; the names with the most
/// value bytes fall back to "any value" until it fits.
pub const MAX_VALUE_BYTES: usize = 2048;

/// What one label name takes across a block's streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameValues {
    pub name: String,
    /// Some stream lacks the label.
    pub missing: bool,
    /// The values, sorted and distinct; `None`: too many to list.
    pub values: Option<Vec<String>>,
}

/// Sorted by name, no name twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSummary {
    pub names: Vec<NameValues>,
}

impl LabelSummary {
    /// The summary of `streams`, or `None` if they use more than
    /// [`MAX_NAMES`] label names. A stream that repeats a name counts with
    /// the least of its values, the one a query's matcher sees.
    pub fn of_streams(streams: &[StreamEntry]) -> Option<LabelSummary> {
        let mut seen: BTreeMap<&str, (usize, BTreeSet<&str>)> = BTreeMap::new();
        for s in streams {
            let mut own: BTreeMap<&str, &str> = BTreeMap::new();
            for (k, v) in &s.labels {
                own.entry(k.as_str())
                    .and_modify(|m| *m = (*m).min(v.as_str()))
                    .or_insert(v.as_str());
            }
            for (k, v) in own {
                let e = seen.entry(k).or_default();
                e.0 += 1;
                e.1.insert(v);
            }
            if seen.len() > MAX_NAMES {
                return None;
            }
        }
        let mut names: Vec<NameValues> = seen
            .into_iter()
            .map(|(name, (count, values))| NameValues {
                name: name.to_owned(),
                missing: count < streams.len(),
                values: (values.len() <= MAX_VALUES)
                    .then(|| values.into_iter().map(str::to_owned).collect()),
            })
            .collect();
        let bytes = |n: &NameValues| -> usize {
            n.values
                .as_ref()
                .map_or(0, |vs| vs.iter().map(String::len).sum())
        };
        while names.iter().map(bytes).sum::<usize>() > MAX_VALUE_BYTES {
            let Some(biggest) = names.iter_mut().max_by_key(|n| bytes(n)) else {
                break;
            };
            biggest.values = None;
        }
        Some(LabelSummary { names })
    }

    /// Whether some stream of the block may give label `name` a value that
    /// `matches` accepts.
    pub fn may_match(&self, name: &str, matches: impl Fn(&str) -> bool) -> bool {
        match self.names.binary_search_by(|n| n.name.as_str().cmp(name)) {
            Err(_) => matches(""),
            Ok(i) => {
                let n = &self.names[i];
                (n.missing && matches(""))
                    || n.values
                        .as_ref()
                        .is_none_or(|vs| vs.iter().any(|v| matches(v)))
            }
        }
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.names.len() as u32).to_le_bytes());
        for n in &self.names {
            write_bytes_u32(out, n.name.as_bytes());
            let flags = u8::from(n.missing) | (u8::from(n.values.is_some()) << 1);
            out.push(flags);
            if let Some(vs) = &n.values {
                out.extend_from_slice(&(vs.len() as u32).to_le_bytes());
                for v in vs {
                    write_bytes_u32(out, v.as_bytes());
                }
            }
        }
    }

    /// Decodes a summary; `base` is the cursor's offset in the object, for
    /// errors.
    pub(super) fn decode(c: &mut Cursor<'_>, base: usize) -> Result<LabelSummary, FormatError> {
        let count = c.u32_le()? as usize;
        // Each name takes at least its length and its flags.
        if count > c.remaining() / 5 {
            return Err(FormatError::corrupt(
                base + c.position(),
                format!("label name count {count} is impossible"),
            ));
        }
        let mut names: Vec<NameValues> = Vec::with_capacity(count);
        for _ in 0..count {
            let at = base + c.position();
            let name = c.str_u32()?;
            if names.last().is_some_and(|p| p.name.as_str() >= name) {
                return Err(FormatError::corrupt(
                    at,
                    format!("label name {name:?} is out of order or repeated"),
                ));
            }
            let flags = c.u8()?;
            if flags & !0b11 != 0 {
                return Err(FormatError::corrupt(
                    at,
                    format!("unknown label summary flags {flags:#04x}"),
                ));
            }
            let values = if flags & 0b10 != 0 {
                let n = c.u32_le()? as usize;
                if n > c.remaining() / 4 {
                    return Err(FormatError::corrupt(
                        base + c.position(),
                        format!("label value count {n} is impossible"),
                    ));
                }
                let mut vs: Vec<String> = Vec::with_capacity(n);
                for _ in 0..n {
                    let v = c.str_u32()?;
                    if vs.last().is_some_and(|p| p.as_str() >= v) {
                        return Err(FormatError::corrupt(
                            base + c.position(),
                            format!("label {name:?}: value {v:?} is out of order or repeated"),
                        ));
                    }
                    vs.push(v.to_owned());
                }
                Some(vs)
            } else {
                None
            };
            names.push(NameValues {
                name: name.to_owned(),
                missing: flags & 1 != 0,
                values,
            });
        }
        Ok(LabelSummary { names })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(labels: &[(&str, &str)]) -> StreamEntry {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        labels.sort();
        StreamEntry {
            labels,
            first_record: 0,
            record_count: 1,
            min_time_ns: 0,
            max_time_ns: 0,
        }
    }

    /// What a matcher on one stream sees: the least value of the name, or "".
    fn value<'a>(s: &'a StreamEntry, name: &str) -> &'a str {
        s.labels
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .min()
            .unwrap_or("")
    }

    #[test]
    fn it_admits_every_value_a_stream_gives_and_rules_out_the_rest() {
        let streams = [
            stream(&[("namespace", "payments"), ("pod", "a")]),
            stream(&[("namespace", "search"), ("pod", "b")]),
            stream(&[("pod", "c")]),
        ];
        let s = LabelSummary::of_streams(&streams).unwrap();
        assert!(s.may_match("namespace", |v| v == "payments"));
        assert!(!s.may_match("namespace", |v| v == "billing"));
        // The third stream has no namespace: `namespace=""` matches it.
        assert!(s.may_match("namespace", str::is_empty));
        assert!(!s.may_match("pod", str::is_empty), "every stream has a pod");
        // A name no stream has is "" everywhere.
        assert!(s.may_match("zone", str::is_empty));
        assert!(!s.may_match("zone", |v| v == "eu"));
        assert!(s.may_match("zone", |v| v != "eu"));
    }

    #[test]
    fn too_many_values_admit_anything_and_too_many_names_give_no_summary() {
        let many: Vec<StreamEntry> = (0..=MAX_VALUES)
            .map(|i| stream(&[("pod", &format!("pod-{i}")), ("app", "web")]))
            .collect();
        let s = LabelSummary::of_streams(&many).unwrap();
        assert!(s.may_match("pod", |v| v == "never-seen"));
        assert!(!s.may_match("app", |v| v == "api"), "still listed");
        let names: Vec<String> = (0..=MAX_NAMES).map(|i| format!("l{i}")).collect();
        let wide = stream(&names.iter().map(|n| (n.as_str(), "x")).collect::<Vec<_>>());
        assert_eq!(LabelSummary::of_streams(&[wide]), None);
    }

    #[test]
    fn long_values_fall_back_to_any_value_within_the_byte_budget() {
        let long = "x".repeat(100);
        let streams: Vec<StreamEntry> = (0..40)
            .map(|i| stream(&[("trace", &format!("{long}{i}")), ("level", "info")]))
            .collect();
        let s = LabelSummary::of_streams(&streams).unwrap();
        let listed: usize = s
            .names
            .iter()
            .filter_map(|n| n.values.as_ref())
            .flatten()
            .map(String::len)
            .sum();
        assert!(listed <= MAX_VALUE_BYTES);
        assert!(s.may_match("trace", |v| v == "anything"));
        assert!(!s.may_match("level", |v| v == "error"));
    }

    /// Over random streams and matchers: whenever some stream matches,
    /// the summary admits the block.
    #[test]
    fn it_never_rules_out_a_block_a_stream_matches() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let names = ["a", "b", "c"];
        let values = ["", "x", "y", "z"];
        for _ in 0..2000 {
            let streams: Vec<StreamEntry> = (0..1 + next(4))
                .map(|_| {
                    let labels: Vec<(&str, &str)> = (0..next(4))
                        .map(|_| (names[next(3) as usize], values[1 + next(3) as usize]))
                        .collect();
                    stream(&labels)
                })
                .collect();
            let s = LabelSummary::of_streams(&streams).unwrap();
            let (name, want, eq) = (
                names[next(3) as usize],
                values[next(4) as usize],
                next(2) == 0,
            );
            let m = |v: &str| (v == want) == eq;
            if streams.iter().any(|st| m(value(st, name))) {
                assert!(s.may_match(name, m), "{streams:?} {name} {want} {eq}");
            }
        }
    }

    #[test]
    fn it_round_trips_and_refuses_disorder() {
        let s = LabelSummary::of_streams(&[
            stream(&[("namespace", "payments"), ("pod", "a")]),
            stream(&[("namespace", "search")]),
        ])
        .unwrap();
        let mut out = Vec::new();
        s.encode(&mut out);
        let mut c = Cursor::new(&out);
        assert_eq!(LabelSummary::decode(&mut c, 0).unwrap(), s);
        assert!(c.is_empty());
        let mut bad = s.clone();
        bad.names.swap(0, 1);
        let mut out = Vec::new();
        bad.encode(&mut out);
        assert!(LabelSummary::decode(&mut Cursor::new(&out), 0).is_err());
    }
}
