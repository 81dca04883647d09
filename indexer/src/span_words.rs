//! The word hashes of long nested JSON values that repeat from record to
//! record, remembered so they are not tokenized again.
//!
//! Log shippers add the same metadata to every line of a pod (Fluent Bit's
//! `kubernetes` object: labels, annotations, image digests), and in such
//! logs it is most of the bytes, so tokenizing it was most of the parser's
//! work. A repeat now costs one xxh3 of the span, a lookup and a compare.
//!
//! Exact by construction: a line is only cut where it holds a byte that
//! cannot be part of a word, so no word crosses a cut and the words of the
//! line are the words of its pieces. A hit compares the bytes, not only
//! their hash. Only the multiset of hashes matters downstream: the block
//! maker dedupes them into the bloom filter.

use std::ops::Range;

use rustc_hash::FxHashMap;
use skidder_common::format::tokens::{for_each_word_hash, is_word_byte};
use xxhash_rust::xxh3::xxh3_64;

use crate::models::RepeatedWords;

/// Shorter spans are tokenized in place: below this, the lookup saves
/// little.
pub const MIN_SPAN: usize = 256;

/// Memory the remembered spans may hold before the cache starts over.
const MAX_BYTES: usize = 16 << 20;

/// Spans, seen or remembered, before the cache starts over.
const MAX_ENTRIES: usize = 1 << 16;

/// Spans by the xxh3 of their bytes. A span is remembered on its second
/// sighting, so values that never repeat cost a hash, not a copy.
#[derive(Default)]
pub struct SpanWords {
    spans: FxHashMap<u64, Option<Remembered>>,
    bytes: usize,
    /// Never reused, even after the cache starts over.
    next_id: u64,
    pub hits: u64,
}

struct Remembered {
    id: u64,
    bytes: Box<[u8]>,
    words: Box<[u64]>,
}

impl SpanWords {
    /// Pushes the word hashes of `line` onto `out`, taking those of each
    /// span in `cuts` from the cache when it has seen the same bytes, and
    /// notes each remembered span's run of words in `repeats`.
    /// `cuts` must be in order and not overlap; a cut whose edges could be
    /// inside a word, or out of bounds, is ignored, so any `cuts` give
    /// exactly the words of `line`.
    pub fn push_words(
        &mut self,
        line: &[u8],
        cuts: &[Range<usize>],
        out: &mut Vec<u64>,
        repeats: &mut Vec<RepeatedWords>,
    ) {
        let mut done = 0;
        for cut in cuts {
            if !safe_cut(line, done, cut) {
                continue;
            }
            for_each_word_hash(&line[done..cut.start], |h| out.push(h));
            let start = out.len();
            if let Some(id) = self.push_span(&line[cut.clone()], out) {
                repeats.push(RepeatedWords {
                    id,
                    start: start as u32,
                    len: (out.len() - start) as u32,
                });
            }
            done = cut.end;
        }
        for_each_word_hash(&line[done..], |h| out.push(h));
    }

    /// Pushes the words of `span`, and returns its id if it is remembered.
    fn push_span(&mut self, span: &[u8], out: &mut Vec<u64>) -> Option<u64> {
        let key = xxh3_64(span);
        match self.spans.get(&key) {
            Some(Some(r)) if *r.bytes == *span => {
                self.hits += 1;
                out.extend_from_slice(&r.words);
                return Some(r.id);
            }
            // A hash collision: tokenized, and the first one stays.
            Some(Some(_)) => {
                for_each_word_hash(span, |h| out.push(h));
                return None;
            }
            _ => {}
        }
        let start = out.len();
        for_each_word_hash(span, |h| out.push(h));
        if self.spans.len() >= MAX_ENTRIES || self.bytes >= MAX_BYTES {
            self.spans.clear();
            self.bytes = 0;
        }
        let seen_before = self.spans.insert(key, None).is_some();
        if !seen_before {
            return None;
        }
        let words: Box<[u64]> = out[start..].into();
        let id = self.next_id;
        self.next_id += 1;
        self.bytes += span.len() + words.len() * 8;
        self.spans.insert(
            key,
            Some(Remembered {
                id,
                bytes: span.into(),
                words,
            }),
        );
        Some(id)
    }
}

/// Whether `cut` lies in `line` after `done`, starts on a non-word byte,
/// and ends at the line's end or before a non-word byte.
fn safe_cut(line: &[u8], done: usize, cut: &Range<usize>) -> bool {
    cut.start >= done
        && cut.start < cut.end
        && cut.end <= line.len()
        && !is_word_byte(line[cut.start])
        && line.get(cut.end).is_none_or(|&b| !is_word_byte(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &[u8]) -> Vec<u64> {
        let mut v = Vec::new();
        for_each_word_hash(line, |h| v.push(h));
        v.sort_unstable();
        v
    }

    fn cached(cache: &mut SpanWords, line: &[u8], cuts: &[Range<usize>]) -> Vec<u64> {
        let (mut v, mut repeats) = (Vec::new(), Vec::new());
        cache.push_words(line, cuts, &mut v, &mut repeats);
        for r in &repeats {
            let run = &v[r.start as usize..][..r.len as usize];
            let want: Vec<u64> = cuts
                .iter()
                .filter(|c| c.start < line.len())
                .find_map(|c| {
                    let mut w = Vec::new();
                    for_each_word_hash(&line[c.clone()], |h| w.push(h));
                    (w == run).then_some(w)
                })
                .expect("a repeat's run is the words of one of the cuts");
            assert_eq!(run, want);
        }
        v.sort_unstable();
        v
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn any_cuts_give_exactly_the_words_of_the_line() {
        let line =
            br#"{"msg":"Disk FULL","kubernetes":{"pod":"p-1","labels":{"app":"api"}},"n":1}"#;
        let mut cache = SpanWords::default();
        let want = words(line);
        // Every pair of cut points, and pairs of cuts, including ones inside
        // words, past the end and overlapping.
        for a in 0..=line.len() + 1 {
            for b in a..=line.len() + 1 {
                for _ in 0..3 {
                    assert_eq!(cached(&mut cache, line, &[a..b]), want, "cut {a}..{b}");
                    assert_eq!(
                        cached(&mut cache, line, &[a..b, b.saturating_sub(1)..line.len()]),
                        want,
                        "cuts {a}..{b} and on"
                    );
                }
            }
        }
        assert!(cache.hits > 0, "repeated spans come from the cache");
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn a_span_is_remembered_on_its_second_sighting() {
        let meta = format!(r#""kubernetes":{{"pod":"{}"}}"#, "p".repeat(300));
        let mut cache = SpanWords::default();
        for (i, hits) in [(1, 0), (2, 0), (3, 1), (4, 2)] {
            let line = format!(r#"{{"msg":"line {i}",{meta}}}"#);
            let start = line.find(r#""kubernetes""#).unwrap();
            let got = cached(&mut cache, line.as_bytes(), &[start..line.len()]);
            assert_eq!(got, words(line.as_bytes()));
            assert_eq!(cache.hits, hits);
        }
    }
}
