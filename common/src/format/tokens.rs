//! What goes into a block's bloom filter, and how it is hashed.
//!
//! The indexer and the searcher must agree on these rules byte for byte, or
//! pruning would drop blocks that match. Both call this module.
//!
//! - Words: maximal runs of ASCII letters, digits and `_`, plus any byte
//!   >= 0x80 (so UTF-8 text stays whole), lowercased (ASCII only).
//! - Fields: `key=value` for each scalar JSON field, with nested keys
//!   flattened and sanitised the way Loki's `| json` stage does
//!   (`http.req.path` -> `http_req_path`). Case is kept.
//! - Every token is hashed once with xxh3-64 (seed 0); the bloom filter
//!   stores the hash.

use xxhash_rust::xxh3::xxh3_64;

/// JSON nested deeper than this gets no field tokens, and the searcher
/// extracts no fields from it either, so the two always agree.
pub const MAX_FIELD_DEPTH: usize = 64;

/// Field values longer than this get no `key=value` token by default; the
/// searcher must not prune on longer values.
pub const DEFAULT_MAX_TOKEN_VALUE_LEN: usize = 128;

/// Bytes that belong to a word.
const fn word_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
        i += 1;
    }
    t
}
static IS_WORD: [bool; 256] = word_table();

pub fn is_word_byte(b: u8) -> bool {
    IS_WORD[b as usize]
}

/// Hash of one token, as stored in the bloom filter.
pub fn token_hash(token: &[u8]) -> u64 {
    xxh3_64(token)
}

/// Hash of a `key=value` field token.
pub fn field_hash(key: &str, value: &[u8], scratch: &mut Vec<u8>) -> u64 {
    scratch.clear();
    scratch.extend_from_slice(key.as_bytes());
    scratch.push(b'=');
    scratch.extend_from_slice(value);
    token_hash(scratch)
}

/// Calls `f` with the hash of each lowercased word of `line`.
/// `scratch` is reused for lowercasing so no allocation happens per word.
pub fn for_each_word_hash(line: &[u8], scratch: &mut Vec<u8>, mut f: impl FnMut(u64)) {
    let mut i = 0;
    let n = line.len();
    while i < n {
        while i < n && !IS_WORD[line[i] as usize] {
            i += 1;
        }
        let start = i;
        while i < n && IS_WORD[line[i] as usize] {
            i += 1;
        }
        if i > start {
            let word = &line[start..i];
            if word.iter().any(u8::is_ascii_uppercase) {
                scratch.clear();
                scratch.extend(word.iter().map(u8::to_ascii_lowercase));
                f(token_hash(scratch));
            } else {
                f(token_hash(word));
            }
        }
    }
}

/// The words of a search needle that can prune: those bounded by non-word
/// bytes on both sides *inside* the needle. A word touching either edge of
/// the needle may be part of a longer word in a line, so it is left out.
pub fn inner_words(needle: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let n = needle.len();
    let mut i = 0;
    while i < n {
        while i < n && !IS_WORD[needle[i] as usize] {
            i += 1;
        }
        let start = i;
        while i < n && IS_WORD[needle[i] as usize] {
            i += 1;
        }
        if i > start && start > 0 && i < n {
            out.push(needle[start..i].to_ascii_lowercase());
        }
    }
    out
}

/// Appends the Loki-sanitised form of a JSON key segment to `out`: bytes
/// other than ASCII letters, digits and `_` become `_`.
pub fn push_sanitized_key(out: &mut String, segment: &str) {
    for ch in segment.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            out.push(ch);
        } else {
            out.push('_');
        }
    }
}

/// Flattens a path of JSON keys Loki's way: segments sanitised and joined by
/// `_`; a leading digit gets a `_` prefix.
pub fn flatten_key<'a>(path: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, seg) in path.into_iter().enumerate() {
        if i > 0 {
            out.push('_');
        }
        push_sanitized_key(&mut out, seg);
    }
    if out.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<u64> {
        let mut v = Vec::new();
        for_each_word_hash(line.as_bytes(), &mut Vec::new(), |h| v.push(h));
        v
    }

    #[test]
    fn words_are_lowercased_runs() {
        assert_eq!(
            words("GET /api/v1?id=AbC_9 héllo"),
            ["get", "api", "v1", "id", "abc_9", "héllo"]
                .iter()
                .map(|w| token_hash(w.as_bytes()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn inner_words_skip_the_edges() {
        let w = |s: &str| inner_words(s.as_bytes());
        assert_eq!(w("rror: disk full"), vec![b"disk".to_vec()]);
        assert_eq!(w(" Disk "), vec![b"disk".to_vec()]);
        assert!(w("abc").is_empty());
        assert!(w("a b").is_empty());
        assert_eq!(w("x trace-ABC y"), vec![b"trace".to_vec(), b"abc".to_vec()]);
    }

    #[test]
    fn keys_flatten_like_loki() {
        assert_eq!(flatten_key(["http", "req.path"]), "http_req_path");
        assert_eq!(
            flatten_key(["kubernetes", "pod-name"]),
            "kubernetes_pod_name"
        );
        assert_eq!(flatten_key(["1st"]), "_1st");
    }
}
