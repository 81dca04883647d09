//! What a store holds after indexing: data and index bytes, and how often
//! the bloom filters say "maybe" for tokens that are not there.

use std::path::Path;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use skidder_common::format::index::BlockIndex;
use skidder_common::format::tokens::token_hash;
use skidder_common::storage::ObjectStore;

#[derive(Debug, Default, Clone)]
pub struct StoreReport {
    pub blocks: u64,
    pub records: u64,
    pub data_bytes: u64,
    pub index_bytes: u64,
    /// Ledger entries and checkpoints.
    pub other_bytes: u64,
    pub bloom_bytes: u64,
    /// Absent tokens the filters let through, over absent tokens tried.
    pub false_positives: u64,
    pub probes: u64,
}

impl StoreReport {
    pub fn fp_rate(&self) -> f64 {
        self.false_positives as f64 / self.probes.max(1) as f64
    }
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Sizes everything under a local store's root and probes each block's
/// bloom filter with `probes_per_block` random tokens that no record holds
/// (the corpus has no 24-letter words starting with `zq`).
pub fn report(root: &Path, probes_per_block: u64) -> Result<StoreReport, String> {
    let mut files = Vec::new();
    walk(root, &mut files);
    let mut r = StoreReport::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut token = Vec::new();
    for f in files {
        let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        let name = f.to_string_lossy();
        if name.ends_with(".seq") {
            r.data_bytes += len;
        } else if name.ends_with(".idx") {
            r.index_bytes += len;
            let bytes = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            let idx = BlockIndex::decode(&bytes).map_err(|e| format!("{}: {e}", f.display()))?;
            r.blocks += 1;
            r.records += idx.record_count;
            r.bloom_bytes += idx.bloom.len() as u64;
            let bloom = idx.bloom_filter().map_err(|e| e.to_string())?;
            for _ in 0..probes_per_block {
                token.clear();
                token.extend_from_slice(b"zq");
                token.extend((0..22).map(|_| b'a' + rng.random_range(0..26u8)));
                r.probes += 1;
                if bloom.may_contain(token_hash(&token)) {
                    r.false_positives += 1;
                }
            }
        } else {
            r.other_bytes += len;
        }
    }
    Ok(r)
}

/// Copies every object of one store to another, 16 at a time; returns how
/// many.
pub async fn copy_store(
    from: &Arc<dyn ObjectStore>,
    to: &Arc<dyn ObjectStore>,
) -> skidder_common::storage::StorageResult<usize> {
    use futures::StreamExt;
    let objs = skidder_common::storage::list_all(&**from, "").await?;
    let n = objs.len();
    let results: Vec<_> = futures::stream::iter(objs)
        .map(|m| async move {
            let body = from.get(&m.key).await?;
            to.put(&m.key, body).await
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(n)
}
