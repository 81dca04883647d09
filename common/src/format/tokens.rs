//! What goes into a block's bloom filter, and how it is hashed.
//!
//! The indexer and the searcher must agree on these rules byte for byte, or
//! pruning would drop blocks that match. Both call this module.
//!
//! - Words: maximal runs of ASCII letters, digits and `_`, plus any byte
//!   >= 0x80 (so UTF-8 text stays whole), lowercased (ASCII only).
//! - Fields, index version 2: the words of each scalar JSON value, as the
//!   searcher's field extraction prints it, for values of at most
//!   `max_token_value_len` bytes. A field filter `| key="v"` prunes on the
//!   words of `v`. (Version 1 stored one `key=value` token per field
//!   instead, with keys flattened Loki's way: [`field_hash`]. It cost two
//!   distinct tokens for each unique id, where version 2 costs one.)
//! - Every token is hashed once and the bloom filter stores the hash:
//!   version 2 uses [`token_hash`], a multiply-rotate hash over 8-byte
//!   words that lowercases as it reads; version 1 used xxh3-64 (seed 0) of
//!   the lowercased bytes ([`token_hash_v1`]). The v2 tokenizer finds word
//!   boundaries 64 bytes at a time from a bitmask and hashes each word
//!   straight from the line, with no copy and no per-byte branch.

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

/// Hash of one token as index version 1 stored it: xxh3-64 of the bytes
/// (the caller lowercases words).
pub fn token_hash_v1(token: &[u8]) -> u64 {
    xxh3_64(token)
}

/// Hash of a `key=value` field token (index version 1).
pub fn field_hash(key: &str, value: &[u8], scratch: &mut Vec<u8>) -> u64 {
    scratch.clear();
    scratch.extend_from_slice(key.as_bytes());
    scratch.push(b'=');
    scratch.extend_from_slice(value);
    token_hash_v1(scratch)
}

const K0: u64 = 0x9E37_79B9_7F4A_7C15;
const K1: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// ASCII-lowercases the eight bytes of `x` at once; other bytes are kept.
#[inline(always)]
fn lower8(x: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low = x & 0x7f7f_7f7f_7f7f_7f7f;
    // Per byte, with no carry between bytes: the high bit says low >= 'A'
    // (0x41) in the first sum and low >= '[' (0x5b) in the second.
    let ge_a = low.wrapping_add(0x3f3f_3f3f_3f3f_3f3f);
    let gt_z = low.wrapping_add(0x2525_2525_2525_2525);
    let upper = ge_a & !gt_z & !x & HIGH;
    x | (upper >> 2)
}

#[inline(always)]
fn mix(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(K1).rotate_left(31)
}

/// Little-endian u64 of `b[i..i + n]`, `n <= 8`, zero-padded.
#[inline(always)]
fn load(b: &[u8], i: usize, n: usize) -> u64 {
    if let Some(w) = b.get(i..i + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a);
        if n == 8 {
            x
        } else {
            x & (u64::MAX >> (64 - 8 * n))
        }
    } else {
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(&b[i..i + n]);
        u64::from_le_bytes(a)
    }
}

/// The v2 hash of the lowercased bytes `b[start..end]`. For one length,
/// distinct words of up to 8 bytes never collide (each step is a
/// bijection of the word).
#[inline]
fn hash_range(b: &[u8], start: usize, end: usize) -> u64 {
    let mut h = ((end - start) as u64).wrapping_mul(K0);
    let mut i = start;
    while end - i >= 8 {
        h = mix(h, lower8(load(b, i, 8)));
        i += 8;
    }
    if i < end {
        h = mix(h, lower8(load(b, i, end - i)));
    }
    let h = (h ^ (h >> 33)).wrapping_mul(K0);
    h ^ (h >> 29)
}

/// Hash of one token (index version 2), lowercased as it is read: the same
/// value [`for_each_word_hash`] gives a word.
pub fn token_hash(token: &[u8]) -> u64 {
    hash_range(token, 0, token.len())
}

/// Bit i set when `block[i]` is a word byte; `block` holds at most 64.
#[inline]
fn word_mask(block: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if let Ok(b) = <&[u8; 64]>::try_from(block) {
        return word_mask_sse2(b);
    }
    let mut mask = 0u64;
    for (i, &b) in block.iter().enumerate() {
        mask |= (IS_WORD[b as usize] as u64) << i;
    }
    mask
}

/// [`word_mask`] for a full block, 16 bytes per step. SSE2 is part of
/// x86-64 itself, so no CPU check is needed.
#[cfg(target_arch = "x86_64")]
#[inline]
fn word_mask_sse2(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::*;
    let mut mask = 0u64;
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is always present on x86-64, and `chunk` is exactly
        // 16 readable bytes, which the unaligned load reads.
        let m = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            let set = |b: u8| _mm_set1_epi8(b as i8);
            let between = |x: __m128i, lo: u8, hi: u8| {
                _mm_and_si128(
                    _mm_cmpgt_epi8(x, set(lo - 1)),
                    _mm_cmpgt_epi8(set(hi + 1), x),
                )
            };
            // Bytes >= 0x80 are negative as i8: never in an ASCII range,
            // and their sign bit alone marks them as word bytes.
            let folded = _mm_or_si128(v, set(0x20));
            let word = _mm_or_si128(
                _mm_or_si128(between(folded, b'a', b'z'), between(v, b'0', b'9')),
                _mm_or_si128(_mm_cmpeq_epi8(v, set(b'_')), v),
            );
            _mm_movemask_epi8(word) as u32 as u64
        };
        mask |= m << (16 * i);
    }
    mask
}

/// Calls `f` with the hash of each lowercased word of `line` (index
/// version 2).
pub fn for_each_word_hash(line: &[u8], mut f: impl FnMut(u64)) {
    const NONE: usize = usize::MAX;
    let n = line.len();
    let mut open = NONE;
    let mut base = 0;
    while base < n {
        let block = &line[base..(base + 64).min(n)];
        let width = block.len();
        let mask = word_mask(block);
        let mut p = 0;
        while p < width {
            if open == NONE {
                let x = mask >> p;
                if x == 0 {
                    break;
                }
                p += x.trailing_zeros() as usize;
                open = base + p;
            } else {
                // Bits past the end of a short last block read as non-word.
                let x = !mask >> p;
                if x == 0 {
                    break;
                }
                p += x.trailing_zeros() as usize;
                if p >= width {
                    break;
                }
                f(hash_range(line, open, base + p));
                open = NONE;
            }
        }
        base += width;
    }
    if open != NONE {
        f(hash_range(line, open, n));
    }
}

/// Calls `f` with the v1 hash of each lowercased word of `line`.
/// `scratch` is reused for lowercasing so no allocation happens per word.
pub fn for_each_word_hash_v1(line: &[u8], scratch: &mut Vec<u8>, mut f: impl FnMut(u64)) {
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
                f(token_hash_v1(scratch));
            } else {
                f(token_hash_v1(word));
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
        for_each_word_hash(line.as_bytes(), |h| v.push(h));
        v
    }

    /// The obvious tokenizer: split, lowercase, hash each word alone.
    fn reference(line: &[u8]) -> Vec<u64> {
        line.split(|b| !is_word_byte(*b))
            .filter(|w| !w.is_empty())
            .map(|w| token_hash(&w.to_ascii_lowercase()))
            .collect()
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
        // v1 keeps its own hash.
        let mut v1 = Vec::new();
        for_each_word_hash_v1(b"GET x", &mut Vec::new(), |h| v1.push(h));
        assert_eq!(v1, vec![token_hash_v1(b"get"), token_hash_v1(b"x")]);
    }

    #[test]
    fn the_simd_word_mask_agrees_with_the_table() {
        let block: Vec<u8> = (0..=255u8).collect();
        for chunk in block.chunks(64) {
            let mut want = 0u64;
            for (i, &b) in chunk.iter().enumerate() {
                want |= (is_word_byte(b) as u64) << i;
            }
            assert_eq!(word_mask(chunk), want);
        }
    }

    #[test]
    fn lowercasing_eight_bytes_at_once_matches_the_standard_library() {
        for b in 0..=255u8 {
            let x = u64::from_le_bytes([b, b'A', b'Z', b'a', b'@', b'[', 0xC3, b'z']);
            let want: Vec<u8> = x.to_le_bytes().iter().map(u8::to_ascii_lowercase).collect();
            assert_eq!(lower8(x).to_le_bytes().to_vec(), want, "byte {b:#x}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_block_tokenizer_matches_the_obvious_one(
            line in proptest::collection::vec(proptest::prop_oneof![
                proptest::prelude::Just(b' '),
                proptest::prelude::Just(b'A'),
                proptest::prelude::Just(b'z'),
                proptest::prelude::Just(b'_'),
                proptest::prelude::Just(0xC3u8),
                proptest::prelude::any::<u8>(),
            ], 0..300)
        ) {
            proptest::prop_assert_eq!(words_bytes(&line), reference(&line));
        }
    }

    fn words_bytes(line: &[u8]) -> Vec<u64> {
        let mut v = Vec::new();
        for_each_word_hash(line, |h| v.push(h));
        v
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
