//! Fetching an image into the node's object cache: the commit, then its
//! trees level by level (one batch request per level), then the chunks the
//! node lacks over parallel keep-alive connections. Every object is
//! verified against its id before it is written to the cache; the cache is
//! a vnfs store, so a later boot or a livesync finds what it already has.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use vnfs_store::id::{IdMap, IdSet};
use vnfs_store::{Commit, EntryKind, ObjectId, ObjectKind, Store, Tree, Writer};

use crate::client::Master;
use crate::error::{AgentError, Result};

/// Chunks per batch request: large enough that request overhead vanishes,
/// small enough that a broken connection loses little.
pub const CHUNKS_PER_BATCH: usize = 128;

/// What a fetch found in the cache and what it transferred.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FetchStats {
    /// Trees fetched from the master.
    pub trees_fetched: u64,
    /// Chunks the view needs.
    pub chunks_needed: u64,
    /// Of those, chunks already in the cache.
    pub chunks_cached: u64,
    /// Chunks fetched from the master.
    pub chunks_fetched: u64,
    /// Uncompressed bytes of the fetched chunks.
    pub chunk_bytes: u64,
}

/// Makes sure the commit is in the cache; returns it.
pub fn commit(master: &Master, cache: &Store, id: &ObjectId) -> Result<Commit> {
    if cache.contains(id) {
        return Ok(cache.read_commit(id)?);
    }
    let (obj, raw) = master.object(ObjectKind::Commit, id)?;
    let c = Commit::decode(&raw).map_err(|e| AgentError::Protocol {
        url: format!("{}/v1/object/commit/{id}", master.base()),
        reason: e.to_string(),
    })?;
    let w = cache.writer()?;
    w.put_stored(&obj)?;
    w.flush()?;
    Ok(c)
}

/// Makes sure every tree under `root` is in the cache. Trees already
/// cached are read locally (a cache interrupted mid-fetch can hold a tree
/// without all of its children, so cached trees are descended too).
pub fn trees(
    master: &Master,
    cache: &Store,
    root: &ObjectId,
    stats: &mut FetchStats,
) -> Result<()> {
    let w = cache.writer()?;
    let mut seen = IdSet::default();
    let mut level = vec![*root];
    seen.insert(*root);
    while !level.is_empty() {
        let mut got: IdMap<Tree> = IdMap::default();
        let missing: Vec<ObjectId> = level
            .iter()
            .filter(|id| !cache.contains(id))
            .copied()
            .collect();
        for part in missing.chunks(crate::proto::MAX_BATCH) {
            master.batch(ObjectKind::Tree, part, &mut |obj, raw| {
                let t = Tree::decode(&raw).map_err(|e| AgentError::Protocol {
                    url: format!("{}/v1/objects/tree", master.base()),
                    reason: format!("tree {}: {e}", obj.id),
                })?;
                w.put_stored(&obj)?;
                got.insert(obj.id, t);
                Ok(())
            })?;
            stats.trees_fetched += part.len() as u64;
        }
        let mut next = Vec::new();
        for id in &level {
            let t = match got.remove(id) {
                Some(t) => t,
                None => cache.read_tree(id)?,
            };
            for e in &t.entries {
                if let EntryKind::Dir { tree } = &e.kind
                    && seen.insert(*tree)
                {
                    next.push(*tree);
                }
            }
        }
        level = next;
    }
    w.flush()?;
    Ok(())
}

/// Fetches the chunks of `needed` that the cache lacks, `threads` batch
/// requests at a time, each over its own keep-alive connection.
pub fn chunks(
    master: &Master,
    cache: &Store,
    needed: &BTreeMap<ObjectId, u64>,
    threads: usize,
    stats: &mut FetchStats,
) -> Result<()> {
    let missing: Vec<ObjectId> = needed
        .keys()
        .filter(|id| !cache.contains(id))
        .copied()
        .collect();
    stats.chunks_needed = needed.len() as u64;
    stats.chunks_cached = (needed.len() - missing.len()) as u64;
    if missing.is_empty() {
        return Ok(());
    }
    let w = cache.writer()?;
    let queue: Mutex<VecDeque<&[ObjectId]>> =
        Mutex::new(missing.chunks(CHUNKS_PER_BATCH).collect());
    let bytes = AtomicU64::new(0);
    let fetched = AtomicU64::new(0);
    let first_error: Mutex<Option<AgentError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    if lock(&first_error).is_some() {
                        return;
                    }
                    let Some(part) = lock(&queue).pop_front() else {
                        return;
                    };
                    let r = master.batch(ObjectKind::Chunk, part, &mut |obj, raw| {
                        bytes.fetch_add(raw.len() as u64, Ordering::Relaxed);
                        fetched.fetch_add(1, Ordering::Relaxed);
                        write(&w, &obj)
                    });
                    if let Err(e) = r {
                        lock(&first_error).get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = lock(&first_error).take() {
        // What was verified so far stays in the cache for the next try.
        let _ = w.flush();
        return Err(e);
    }
    w.flush()?;
    stats.chunks_fetched += fetched.into_inner();
    stats.chunk_bytes += bytes.into_inner();
    Ok(())
}

fn write(w: &Writer<'_>, obj: &vnfs_store::StoredObject) -> Result<()> {
    w.put_stored(obj)?;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
