//! An LRU cache bounded by bytes, for hour listings and index objects.
//! Both are immutable once an hour is closed, so entries never go stale.

use std::hash::Hash;
use std::sync::{Arc, Mutex};

use lru::LruCache;

pub struct ByteLru<K: Hash + Eq, V> {
    inner: Mutex<(LruCache<K, (Arc<V>, usize)>, usize)>,
    budget: usize,
}

impl<K: Hash + Eq, V> ByteLru<K, V> {
    pub fn new(budget: usize) -> Self {
        ByteLru {
            inner: Mutex::new((LruCache::unbounded(), 0)),
            budget,
        }
    }

    pub fn get(&self, k: &K) -> Option<Arc<V>> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.get(k).map(|(v, _)| v.clone())
    }

    pub fn put(&self, k: K, v: Arc<V>, bytes: usize) {
        if bytes > self.budget {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, old)) = g.0.put(k, (v, bytes)) {
            g.1 -= old;
        }
        g.1 += bytes;
        while g.1 > self.budget {
            match g.0.pop_lru() {
                Some((_, (_, b))) => g.1 -= b,
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
}
