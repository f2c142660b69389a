//! A bounded cache of decompressed, verified chunks, least recently used
//! first out. Reads of the same chunk by several threads may decompress it
//! twice; that is cheaper than holding a lock across decompression.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use vnfs_store::ObjectId;

struct Inner {
    map: HashMap<ObjectId, (Arc<Vec<u8>>, u64)>,
    order: BTreeMap<u64, ObjectId>,
    tick: u64,
    bytes: usize,
}

/// Chunk cache bounded by the total bytes it holds.
pub struct ChunkCache {
    limit: usize,
    inner: Mutex<Inner>,
}

impl ChunkCache {
    /// A cache holding at most `limit` bytes of chunk data.
    pub fn new(limit: usize) -> ChunkCache {
        ChunkCache {
            limit,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
                bytes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The chunk if cached (and marks it recently used).
    pub fn get(&self, id: &ObjectId) -> Option<Arc<Vec<u8>>> {
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        let (data, old) = {
            let slot = g.map.get_mut(id)?;
            let old = slot.1;
            slot.1 = tick;
            (slot.0.clone(), old)
        };
        g.order.remove(&old);
        g.order.insert(tick, *id);
        Some(data)
    }

    /// Adds a chunk, evicting the least recently used ones over the limit.
    pub fn insert(&self, id: ObjectId, data: Arc<Vec<u8>>) {
        let mut g = self.lock();
        if g.map.contains_key(&id) {
            return;
        }
        g.tick += 1;
        let tick = g.tick;
        g.bytes += data.len();
        g.map.insert(id, (data, tick));
        g.order.insert(tick, id);
        while g.bytes > self.limit {
            let Some((_, victim)) = g.order.pop_first() else {
                break;
            };
            if let Some((d, _)) = g.map.remove(&victim) {
                g.bytes -= d.len();
            }
        }
    }

    /// Bytes currently held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_past_the_limit() {
        let c = ChunkCache::new(250);
        let id = |n: u8| ObjectId([n; 32]);
        c.insert(id(1), Arc::new(vec![0; 100]));
        c.insert(id(2), Arc::new(vec![0; 100]));
        assert!(c.get(&id(1)).is_some()); // 1 is now newer than 2
        c.insert(id(3), Arc::new(vec![0; 100]));
        assert!(c.get(&id(2)).is_none());
        assert!(c.get(&id(1)).is_some());
        assert!(c.get(&id(3)).is_some());
        assert_eq!(c.bytes(), 200);
    }
}
