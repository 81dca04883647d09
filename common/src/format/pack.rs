//! The index pack: one object that holds copies of an hour's index objects,
//! so a cold searcher reads an hour's indexes in one GET instead of one per
//! block (1,321 GETs for a 5 GB day-part on S3 take seconds).
//!
//! A pack is only ever a shortcut. The hour's listing stays the source of
//! truth: a reader uses a packed index only for a key the listing returns,
//! with the listed size, and fetches every other listed index as before.
//! Each member is the index object's exact bytes, so it carries its own
//! magic, length and CRC, and decodes with [`BlockIndex`](super::index::BlockIndex)'s
//! decoder. Byte layout: `docs/FORMAT.md`.

use super::vint::{check_crc32c_at, push_crc32c, write_bytes_u32, Cursor};
use super::FormatError;

pub const MAGIC: &[u8; 4] = b"SKPK";
pub const VERSION: u16 = 1;
const HEADER_LEN: usize = 12;
/// A member takes at least its two length fields.
const MIN_MEMBER_LEN: usize = 8;

/// One packed index: its key relative to the hour prefix
/// (`app=<app>/<topic>.<partition>.<offset>.idx`) and its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    pub name: &'a str,
    pub index: &'a [u8],
}

/// The bytes a member takes in a pack.
pub fn member_len(name: &str, index: &[u8]) -> usize {
    MIN_MEMBER_LEN + name.len() + index.len()
}

/// Splits `items`, in order, into runs whose sizes add up to at most
/// `max` (an item larger than that gets a run of its own): how a packer
/// fills packs, and how a reader batches them.
pub fn runs_by_size<T>(items: &[T], max: u64, size: impl Fn(&T) -> u64) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut total) = (0, 0u64);
    for (i, item) in items.iter().enumerate() {
        let len = size(item);
        if i > start && total.saturating_add(len) > max {
            out.push(&items[start..i]);
            (start, total) = (i, 0);
        }
        total = total.saturating_add(len);
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// Encodes members, which must be sorted by name with no name twice (the
/// decoder refuses anything else, so a pack has one reading).
pub fn encode(members: &[Member<'_>]) -> Vec<u8> {
    debug_assert!(members.windows(2).all(|w| w[0].name < w[1].name));
    let body: usize = members.iter().map(|m| member_len(m.name, m.index)).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + body + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(members.len() as u32).to_le_bytes());
    for m in members {
        write_bytes_u32(&mut out, m.name.as_bytes());
        write_bytes_u32(&mut out, m.index);
    }
    push_crc32c(&mut out);
    out
}

/// Decodes a pack into borrowed members, after checking the magic, the
/// version, the CRC, the member count and the order of the names. The
/// members' own bytes are checked when they are decoded as indexes.
pub fn decode(bytes: &[u8]) -> Result<Vec<Member<'_>>, FormatError> {
    let mut c = Cursor::new(bytes);
    c.object_start(MAGIC, VERSION)?;
    let count = c.u32_le()? as usize;
    // The CRC needs 4 bytes after the header.
    let Some(crc_at) = bytes.len().checked_sub(4).filter(|&at| at >= HEADER_LEN) else {
        return Err(FormatError::Truncated {
            offset: HEADER_LEN,
            needed: 4,
            available: bytes.len().saturating_sub(HEADER_LEN),
        });
    };
    check_crc32c_at(bytes, crc_at)?;
    let mut c = Cursor::new(&bytes[HEADER_LEN..crc_at]);
    if count > c.remaining() / MIN_MEMBER_LEN {
        return Err(FormatError::corrupt(
            8,
            format!("member count {count} is impossible"),
        ));
    }
    let mut members: Vec<Member<'_>> = Vec::with_capacity(count);
    for _ in 0..count {
        let at = HEADER_LEN + c.position();
        let name = c.str_u32()?;
        let index = c.bytes_u32()?;
        if members.last().is_some_and(|prev| prev.name >= name) {
            return Err(FormatError::corrupt(
                at,
                format!("member {name:?} is out of order or repeated"),
            ));
        }
        members.push(Member { name, index });
    }
    if !c.is_empty() {
        return Err(FormatError::corrupt(
            HEADER_LEN + c.position(),
            "trailing bytes after the last member",
        ));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        encode(&[
            Member {
                name: "app=api/logs.0.00000000000000000000.idx",
                index: b"first index bytes",
            },
            Member {
                name: "app=web/logs.1.00000000000000000042.idx",
                index: b"second",
            },
        ])
    }

    #[test]
    fn round_trips() {
        let bytes = sample();
        let members = decode(&bytes).unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].name, "app=api/logs.0.00000000000000000000.idx");
        assert_eq!(members[0].index, b"first index bytes");
        assert_eq!(members[1].index, b"second");
        assert!(decode(&encode(&[])).unwrap().is_empty());
    }

    #[test]
    fn runs_split_at_the_size_cap_and_keep_order() {
        let sizes = [40u64, 40, 100, 1, 300, 0];
        let runs: Vec<&[u64]> = runs_by_size(&sizes, 100, |s| *s);
        assert_eq!(runs, vec![&[40, 40][..], &[100], &[1], &[300], &[0]]);
        assert!(runs_by_size(&[] as &[u64], 100, |s| *s).is_empty());
        assert_eq!(runs_by_size(&[0u64; 5], 0, |s| *s).len(), 1);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = sample();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode(&b).is_err(), "flip at byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn unsorted_or_repeated_names_are_refused() {
        // `encode` only checks the order in debug builds; build by hand.
        for names in [["b", "a"], ["a", "a"]] {
            let mut out = Vec::new();
            out.extend_from_slice(MAGIC);
            out.extend_from_slice(&VERSION.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&2u32.to_le_bytes());
            for n in names {
                write_bytes_u32(&mut out, n.as_bytes());
                write_bytes_u32(&mut out, b"x");
            }
            push_crc32c(&mut out);
            assert!(
                matches!(decode(&out), Err(FormatError::Corrupt { .. })),
                "{names:?}"
            );
        }
    }

    /// Found by the `pack_decode` fuzz target: flags were ignored, so two
    /// packs differing only there decoded alike.
    #[test]
    fn reserved_flags_must_be_zero() {
        let bad = [83, 75, 80, 75, 1, 0, 80, 1, 0, 0, 0, 0, 0, 0, 22, 0];
        assert!(matches!(
            decode(&bad),
            Err(FormatError::Corrupt { offset: 6, .. })
        ));
    }

    #[test]
    fn other_versions_are_refused() {
        let mut b = sample();
        b[4] = 2;
        assert!(matches!(
            decode(&b),
            Err(FormatError::UnsupportedVersion { found: 2, .. })
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn truncations_are_errors(cut in 0usize..120) {
            let bytes = sample();
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(decode(&bytes[..cut]).is_err());
        }
    }
}
