//! Fencing: which small blocks an epoch claim supersedes.
//!
//! Each time Kafka gives an indexer a partition, the indexer claims the
//! next epoch with a conditional put (`format::ledger::EpochClaim`),
//! confirms the claim once a Kafka commit proves it is in the group's
//! current generation, and names everything it writes with the epoch. A
//! block of epoch `e` whose first offset is at or past the start of the
//! first confirmed claim above `e` is superseded: that claimer started
//! there and writes those records again, so readers skip the old copy.
//! This is what keeps an indexer that was frozen past its session (a
//! zombie) from adding records twice when it wakes and uploads what it
//! held; an unconfirmed claim (a stale claimer's) supersedes nothing.
//! Starts never go down from one claim to the next, so that one claim
//! decides for epoch `e`. See `docs/DESIGN.md`, "Zombies and epochs".

use std::collections::{BTreeSet, HashMap};

use super::layout::BlockSource;

/// (topic, partition, epoch): one claim.
pub type ClaimId = (String, i32, u64);

/// The starts of the claims that decide a set of blocks.
#[derive(Debug, Default, Clone)]
pub struct Fence {
    starts: HashMap<ClaimId, i64>,
}

impl Fence {
    /// The claims that decide the blocks `names`: the id `(topic,
    /// partition, e + 1)` for every epoch `e` listed, newest included,
    /// under which `claims::load_into` records the start of the first
    /// confirmed claim above `e`. The newest listed epoch needs it too: the
    /// new owner's copies may sit in another hour, or in a compacted block.
    pub fn claims_needed<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<ClaimId> {
        Self::epochs(names)
            .into_iter()
            .flat_map(|((topic, partition), epochs)| {
                epochs
                    .into_iter()
                    .map(move |e| (topic.clone(), partition, e + 1))
            })
            .collect()
    }

    fn epochs<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> HashMap<(String, i32), BTreeSet<u64>> {
        let mut by_partition: HashMap<(String, i32), BTreeSet<u64>> = HashMap::new();
        for s in names.into_iter().filter_map(BlockSource::parse) {
            by_partition
                .entry((s.topic, s.partition))
                .or_default()
                .insert(s.epoch);
        }
        by_partition
    }

    /// How many claims it knows.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Adds what `other` knows.
    pub fn extend(&mut self, other: &Fence) {
        self.starts
            .extend(other.starts.iter().map(|(k, v)| (k.clone(), *v)));
    }

    /// Records that claim `id` starts at `start`.
    pub fn insert(&mut self, id: ClaimId, start: i64) {
        self.starts.insert(id, start);
    }

    /// The start of claim `id`, if known.
    pub fn start(&self, id: &ClaimId) -> Option<i64> {
        self.starts.get(id).copied()
    }

    /// Whether a newer claim supersedes the block of `source`.
    pub fn supersedes(&self, source: &BlockSource) -> bool {
        let next = (source.topic.clone(), source.partition, source.epoch + 1);
        self.start(&next)
            .is_some_and(|start| source.first_offset >= start)
    }

    /// Whether a newer claim supersedes the block named `name` (a key or a
    /// name relative to its hour); never a compacted block.
    pub fn superseded(&self, name: &str) -> bool {
        !self.starts.is_empty() && BlockSource::parse(name).is_some_and(|s| self.supersedes(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(partition: i32, first: i64, epoch: u64) -> String {
        let e = if epoch == 0 {
            String::new()
        } else {
            format!(".e{epoch:010}")
        };
        format!("app=a/logs.{partition}.{first:020}{e}.idx")
    }

    #[test]
    fn a_claim_supersedes_older_epochs_from_its_start() {
        let names = [
            name(0, 5, 0),
            name(0, 50, 1),
            name(0, 90, 1),
            name(0, 60, 2),
            name(1, 7, 1),
        ];
        let mut needed = Fence::claims_needed(names.iter().map(String::as_str));
        needed.sort();
        let id = |p: i32, e: u64| ("logs".to_owned(), p, e);
        assert_eq!(needed, vec![id(0, 1), id(0, 2), id(0, 3), id(1, 2)]);
        let mut fence = Fence::default();
        assert!(!fence.superseded(&names[2]), "no claims known: keep");
        fence.insert(("logs".into(), 0, 1), 0);
        fence.insert(("logs".into(), 0, 2), 60);
        let kept: Vec<&String> = names.iter().filter(|n| !fence.superseded(n)).collect();
        // Epoch 0 started before claim 1 (at 0): superseded from 0 on.
        // Epoch 1's block at 90 is past claim 2's start: the zombie's copy.
        assert_eq!(kept, vec![&names[1], &names[3], &names[4]]);
        assert!(!fence.superseded("app=a/compacted.0000000001.00000000000000ab.0.idx"));
    }
}
