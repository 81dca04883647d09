//! An LRU cache bounded by bytes, for hour listings and index objects.
//! An index object does not change once written (a packed copy the block
//! proves stale is replaced, see `Engine::fetch`); an hour's listing can still
//! grow after the hour closed (late blocks), so the engine re-reads a
//! cached listing after `listing_cache_secs`, and never lets an older
//! listing replace a newer one (`put_unless`).

use std::hash::Hash;
use std::sync::{Arc, Mutex};

use lru::LruCache;

pub struct ByteLru<K: Hash + Eq, V> {
    inner: Mutex<Inner<K, V>>,
    budget: usize,
}

struct Inner<K: Hash + Eq, V> {
    /// Values with their size in bytes.
    lru: LruCache<K, (Arc<V>, usize)>,
    bytes: usize,
}

impl<K: Hash + Eq, V> ByteLru<K, V> {
    pub fn new(budget: usize) -> Self {
        ByteLru {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            budget,
        }
    }

    pub fn get(&self, k: &K) -> Option<Arc<V>> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.lru.get(k).map(|(v, _)| v.clone())
    }

    /// Whether `k` is cached, without making it recent.
    pub fn contains(&self, k: &K) -> bool {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.lru.contains(k)
    }

    pub fn put(&self, k: K, v: Arc<V>, bytes: usize) {
        self.put_unless(k, v, bytes, |_| false);
    }

    /// Puts `v` unless `k` holds a value that `keep` says to keep: so a
    /// slow reader cannot put back an older value over a newer one.
    pub fn put_unless(&self, k: K, v: Arc<V>, bytes: usize, keep: impl FnOnce(&V) -> bool) {
        if bytes > self.budget {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.lru.peek(&k).is_some_and(|(old, _)| keep(old)) {
            return;
        }
        if let Some((_, old)) = g.lru.put(k, (v, bytes)) {
            g.bytes -= old;
        }
        g.bytes += bytes;
        while g.bytes > self.budget {
            match g.lru.pop_lru() {
                Some((_, (_, b))) => g.bytes -= b,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let c = ByteLru::new(100);
        c.put(1, Arc::new("a"), 60);
        c.put(2, Arc::new("b"), 30);
        assert!(c.get(&1).is_some());
        c.put(3, Arc::new("c"), 30);
        assert!(c.get(&2).is_none(), "2 was least recently used");
        assert!(c.get(&1).is_some() && c.get(&3).is_some());
        c.put(4, Arc::new("d"), 1000);
        assert!(c.get(&4).is_none(), "larger than the whole budget");
    }

    #[test]
    fn put_unless_keeps_what_it_is_told_to() {
        let c = ByteLru::new(100);
        c.put_unless(1, Arc::new(5), 10, |_| unreachable!("nothing to keep yet"));
        c.put_unless(1, Arc::new(3), 10, |old| *old > 3);
        assert_eq!(c.get(&1).as_deref(), Some(&5), "the newer value stays");
        c.put_unless(1, Arc::new(7), 20, |old| *old > 7);
        assert_eq!(c.get(&1).as_deref(), Some(&7));
        c.put(2, Arc::new(0), 80);
        assert!(c.get(&1).is_some(), "the replaced entry's bytes were freed");
    }
}
