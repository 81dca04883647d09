//! Tail packs: the indexer's own index packs of the hours it is writing.
//!
//! `skidder pack` packs an hour only once it has settled, so a query over
//! the newest hour would GET every block's index on its own: at 1 TB a
//! day that is 288,000 GETs an hour. The uploader therefore keeps a copy
//! of each index it stores and, every `upload.tail_pack_secs` or every
//! `upload.tail_pack_max_blocks` indexes, writes them as one pack per hour
//! (`format::pack`, keyed by [`tail_pack_key`]). A reader then GETs a few
//! packs and only the indexes stored since the last one.
//!
//! A tail pack is a shortcut like any pack: readers use a member only for
//! an index the listing returns at the same size, so a lost, late or
//! failed tail pack costs GETs, never a record. Hence its PUT is retried
//! a few times and then given up, and nothing waits on it. `skidder pack`
//! deletes an hour's tail packs once it has packed the hour whole.
//! See `docs/DESIGN.md`, "The unsettled tail".

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use skidder_common::format::layout::{pack_digest, split_block_key, tail_pack_key};
use skidder_common::format::pack::{self, Member};

/// The indexes stored in one hour since its last tail pack.
#[derive(Default)]
struct Pending {
    /// (name under the hour prefix, index bytes), in the order stored.
    members: Vec<(String, Bytes)>,
}

impl Pending {
    fn bytes(&self) -> usize {
        self.members.iter().map(|(n, i)| n.len() + i.len()).sum()
    }
}

/// One tail pack to write: its key and body.
#[derive(Debug)]
pub struct TailPack {
    pub key: String,
    pub body: Bytes,
    pub members: usize,
}

/// The indexes waiting for a tail pack, by hour prefix, and their bytes.
#[derive(Default)]
struct Held {
    hours: HashMap<String, Pending>,
    bytes: usize,
}

/// The indexes waiting for a tail pack.
pub struct TailPacks {
    max_members: usize,
    pending: Mutex<Held>,
}

impl TailPacks {
    /// Buffers at most `max_members` indexes per hour between packs.
    pub fn new(max_members: usize) -> Self {
        TailPacks {
            max_members: max_members.max(1),
            pending: Mutex::new(Held::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes an index just stored at `index_key`; returns its hour's pack
    /// when the hour has reached `max_members`. A key outside the block
    /// layout is not packed.
    pub fn add(&self, index_key: &str, index: Bytes) -> Option<TailPack> {
        let (prefix, name) = split_block_key(index_key)?;
        let mut held = self.lock();
        held.bytes += name.len() + index.len();
        let hour = held.hours.entry(prefix.to_owned()).or_default();
        hour.members.push((name.to_owned(), index));
        if hour.members.len() < self.max_members {
            return None;
        }
        let full = held.hours.remove(prefix)?;
        held.bytes -= full.bytes();
        drop(held);
        Some(encode(prefix, full.members))
    }

    /// Every hour's pending pack, emptying the buffer.
    pub fn take_all(&self) -> Vec<TailPack> {
        let held = std::mem::take(&mut *self.lock());
        held.hours
            .into_iter()
            .filter(|(_, p)| !p.members.is_empty())
            .map(|(prefix, p)| encode(&prefix, p.members))
            .collect()
    }

    /// Bytes of index copies held, for the memory gauge.
    pub fn held_bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// The tail pack of `members` stored under `prefix`, named by their
/// digest in name order.
fn encode(prefix: &str, mut members: Vec<(String, Bytes)>) -> TailPack {
    members.sort_by(|a, b| a.0.cmp(&b.0));
    members.dedup_by(|a, b| a.0 == b.0);
    let digest = pack_digest(members.iter().map(|(n, i)| (n.as_str(), i.len() as u64)));
    let ms: Vec<Member<'_>> = members
        .iter()
        .map(|(name, index)| Member { name, index })
        .collect();
    TailPack {
        key: tail_pack_key(prefix, digest),
        body: Bytes::from(pack::encode(&ms)),
        members: members.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skidder_common::format::layout::{hour_prefix, parse_tail_pack_key};

    fn key(hour: i64, app: &str, offset: u64) -> String {
        format!(
            "{}app={app}/logs.0.{offset:020}.idx",
            hour_prefix("t", hour)
        )
    }

    #[test]
    fn an_hour_is_packed_when_full_and_the_rest_on_demand() {
        let tail = TailPacks::new(3);
        assert!(tail
            .add(&key(1, "a", 0), Bytes::from_static(b"i0"))
            .is_none());
        assert!(tail
            .add(&key(2, "a", 1), Bytes::from_static(b"i1"))
            .is_none());
        assert!(tail
            .add(&key(1, "b", 2), Bytes::from_static(b"i2"))
            .is_none());
        assert!(tail
            .add("elsewhere.idx", Bytes::from_static(b"x"))
            .is_none());
        let full = tail
            .add(&key(1, "a", 3), Bytes::from_static(b"i3"))
            .unwrap();
        let h1 = hour_prefix("t", 1);
        assert!(
            parse_tail_pack_key(&h1, &full.key).is_some(),
            "{}",
            full.key
        );
        assert_eq!(full.members, 3);
        let members = pack::decode(&full.body).unwrap();
        let names: Vec<(&str, &[u8])> = members.iter().map(|m| (m.name, m.index)).collect();
        assert_eq!(
            names,
            vec![
                ("app=a/logs.0.00000000000000000000.idx", &b"i0"[..]),
                ("app=a/logs.0.00000000000000000003.idx", b"i3"),
                ("app=b/logs.0.00000000000000000002.idx", b"i2"),
            ]
        );
        assert_eq!(
            tail.held_bytes(),
            "app=a/logs.0.00000000000000000001.idx".len() + 2
        );
        let rest = tail.take_all();
        assert_eq!(rest.len(), 1);
        assert!(rest[0].key.starts_with(&hour_prefix("t", 2)));
        assert!(tail.take_all().is_empty(), "nothing is packed twice");
        assert_eq!(tail.held_bytes(), 0);
    }

    #[test]
    fn the_same_members_get_the_same_key_and_others_another() {
        let a = TailPacks::new(10);
        let b = TailPacks::new(10);
        a.add(&key(1, "a", 0), Bytes::from_static(b"i0"));
        a.add(&key(1, "a", 1), Bytes::from_static(b"i1"));
        b.add(&key(1, "a", 1), Bytes::from_static(b"i1"));
        b.add(&key(1, "a", 0), Bytes::from_static(b"i0"));
        let (ka, kb) = (a.take_all().remove(0).key, b.take_all().remove(0).key);
        assert_eq!(ka, kb);
        b.add(&key(1, "a", 0), Bytes::from_static(b"i0-longer"));
        assert_ne!(b.take_all().remove(0).key, ka);
    }
}
