//! Fetching a livesync's new chunks by delta transfer (`crate::delta`):
//! each changed file's new chunks are asked for with the chunks of the
//! file's old version as reference, so a rebuilt binary costs its
//! difference, not its size. The old version is the file at the same path
//! in the view the node runs, else (a package whose directory carries a
//! version, like `/lib/modules/6.1.0-25-amd64`) the old file whose path is
//! the same once runs of digits are ignored. Files without an old version
//! are grouped and compressed together without a reference. Everything
//! received is verified against its id before it enters the cache; what
//! the master cannot send this way is fetched by the plain batch path.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use vnfs_store::id::IdSet;
use vnfs_store::{Entry, EntryKind, Extent, ObjectId, ObjectKind, Store, Writer};

use crate::client::{DeltaReply, Master};
use crate::delta::{self, Group};
use crate::error::{AgentError, Result};
use crate::fetch::{self, FetchStats};

/// Raw bytes of new chunks per group: large enough for zstd to find
/// matches across small files, small enough to keep many groups in flight.
const GROUP_TARGET: u64 = 4 << 20;
/// How far around a piece of a large file its reference reaches.
const REACH: u64 = 8 << 20;
/// Raw bytes of new chunks per request.
const REQUEST_TARGET: u64 = 16 << 20;

/// A file's data chunks with their offsets.
type Chunks = Vec<(u64, ObjectId, u64)>;

fn data_chunks(e: &Entry) -> Option<Chunks> {
    let EntryKind::File { extents, .. } = &e.kind else {
        return None;
    };
    let mut at = 0u64;
    let mut out = Vec::new();
    for x in extents {
        match x {
            Extent::Data { id, len } => {
                out.push((at, *id, *len));
                at += len;
            }
            Extent::Hole { len } => at += len,
        }
    }
    Some(out)
}

/// A path with every run of ASCII digits replaced by one `#`.
pub fn versionless(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    for &b in p {
        if b.is_ascii_digit() {
            if out.last() != Some(&b'#') {
                out.push(b'#');
            }
        } else {
            out.push(b);
        }
    }
    out
}

/// The files of a view by path, and by versionless path.
struct OldFiles {
    by_path: HashMap<Vec<u8>, Chunks>,
    by_versionless: HashMap<Vec<u8>, Vec<u8>>,
}

impl OldFiles {
    fn load(cache: &Store, view: &ObjectId) -> Result<OldFiles> {
        let c = cache.read_commit(view)?;
        let mut by_path = HashMap::new();
        let mut by_versionless = HashMap::new();
        cache.walk(&c.tree(), &mut |rel, e| {
            if let Some(ch) = data_chunks(e) {
                by_versionless
                    .entry(versionless(rel))
                    .or_insert_with(|| rel.to_vec());
                by_path.insert(rel.to_vec(), ch);
            }
            Ok(true)
        })?;
        Ok(OldFiles {
            by_path,
            by_versionless,
        })
    }

    fn base_of(&self, path: &[u8]) -> Option<&Chunks> {
        self.by_path.get(path).or_else(|| {
            self.by_versionless
                .get(&versionless(path))
                .and_then(|p| self.by_path.get(p))
        })
    }
}

/// A piece of work: new chunks of one file and the old chunks they are
/// compressed against.
struct Job {
    bases: Vec<(ObjectId, u64)>,
    targets: Vec<(ObjectId, u64)>,
}

/// Splits one file's missing chunks into jobs, each with the part of the
/// old version around it as reference.
fn jobs_for(cache: &Store, new: &Chunks, old: Option<&Chunks>, seen: &mut IdSet) -> Vec<Job> {
    let mut missing: Vec<(u64, ObjectId, u64)> = Vec::new();
    for &(at, id, len) in new {
        if !cache.contains(&id) && seen.insert(id) {
            missing.push((at, id, len));
        }
    }
    let mut jobs = Vec::new();
    let mut i = 0;
    while i < missing.len() {
        let start = missing[i].0;
        let mut bytes = 0u64;
        let mut targets = Vec::new();
        while i < missing.len() && (targets.is_empty() || bytes + missing[i].2 <= GROUP_TARGET) {
            targets.push((missing[i].1, missing[i].2));
            bytes += missing[i].2;
            i += 1;
        }
        let end = missing[i - 1].0 + missing[i - 1].2;
        let lo = start.saturating_sub(REACH);
        let hi = end + REACH;
        let bases: Vec<(ObjectId, u64)> = old
            .map(|o| {
                o.iter()
                    .filter(|(at, id, len)| at + len > lo && *at < hi && cache.contains(id))
                    .map(|&(_, id, len)| (id, len))
                    .collect()
            })
            .unwrap_or_default();
        jobs.push(Job { bases, targets });
    }
    jobs
}

/// Packs jobs into groups of at most [`GROUP_TARGET`] new bytes and
/// [`delta::MAX_BASE`] reference bytes.
fn groups_of(jobs: Vec<Job>) -> Vec<(Group, u64)> {
    let mut out: Vec<(Group, u64)> = Vec::new();
    let mut cur = Group::default();
    let mut cur_t = 0u64;
    let mut cur_b = 0u64;
    let mut cur_bases = IdSet::default();
    for j in jobs {
        let jt: u64 = j.targets.iter().map(|t| t.1).sum();
        let jb: u64 = j.bases.iter().map(|b| b.1).sum();
        if !cur.targets.is_empty()
            && (cur_t + jt > GROUP_TARGET
                || cur_b + jb > delta::MAX_BASE
                || cur.targets.len() + j.targets.len() + cur.bases.len() + j.bases.len()
                    > delta::MAX_IDS / 2)
        {
            out.push((std::mem::take(&mut cur), cur_t));
            cur_t = 0;
            cur_b = 0;
            cur_bases.clear();
        }
        for (id, len) in j.bases {
            if cur_bases.insert(id) {
                cur.bases.push(id);
                cur_b += len;
            }
        }
        cur.targets.extend(j.targets.iter().map(|t| t.0));
        cur_t += jt;
    }
    if !cur.targets.is_empty() {
        out.push((cur, cur_t));
    }
    out
}

/// Fetches the chunks of `files` (path and new entry) the cache lacks,
/// by delta against the view `old_view` the node runs.
pub fn chunks(
    master: &Master,
    cache: &Store,
    old_view: &ObjectId,
    files: &[(Vec<u8>, Entry)],
    threads: usize,
    stats: &mut FetchStats,
) -> Result<()> {
    let old = OldFiles::load(cache, old_view)?;
    let mut seen = IdSet::default();
    let mut needed: BTreeMap<ObjectId, u64> = BTreeMap::new();
    let mut jobs = Vec::new();
    for (path, e) in files {
        let Some(new) = data_chunks(e) else { continue };
        for &(_, id, len) in &new {
            needed.insert(id, len);
        }
        jobs.extend(jobs_for(cache, &new, old.base_of(path), &mut seen));
    }
    stats.chunks_needed = needed.len() as u64;
    stats.chunks_cached = needed.keys().filter(|id| cache.contains(id)).count() as u64;
    // With references first, then the rest: groups stay homogeneous.
    let (mut with, without): (Vec<Job>, Vec<Job>) =
        jobs.into_iter().partition(|j| !j.bases.is_empty());
    with.extend(without);
    let groups = groups_of(with);
    if groups.is_empty() {
        return Ok(());
    }
    // Requests of whole groups, up to REQUEST_TARGET new bytes each.
    let mut requests: VecDeque<Vec<Group>> = VecDeque::new();
    let mut cur: Vec<Group> = Vec::new();
    let (mut cur_t, mut cur_ids) = (0u64, 0usize);
    for (g, t) in groups {
        if !cur.is_empty()
            && (cur_t + t > REQUEST_TARGET || cur_ids + delta::ids_in(&g) > delta::MAX_IDS)
        {
            requests.push_back(std::mem::take(&mut cur));
            cur_t = 0;
            cur_ids = 0;
        }
        cur_t += t;
        cur_ids += delta::ids_in(&g);
        cur.push(g);
    }
    requests.push_back(cur);

    let w = cache.writer()?;
    let queue = Mutex::new(requests);
    let fallback: Mutex<Vec<ObjectId>> = Mutex::new(Vec::new());
    let unsupported = Mutex::new(false);
    let first_error: Mutex<Option<AgentError>> = Mutex::new(None);
    let fetched = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    if lock(&first_error).is_some() || *lock(&unsupported) {
                        return;
                    }
                    let Some(req) = lock(&queue).pop_front() else {
                        return;
                    };
                    let r = master.delta(ObjectKind::Chunk, &req, &mut |i, reply| {
                        let g = &req[i];
                        match reply {
                            DeltaReply::Missing(_) => {
                                lock(&fallback).extend(g.targets.iter().copied());
                                Ok(())
                            }
                            DeltaReply::Frame {
                                with_prefix,
                                lengths,
                                data,
                            } => {
                                let n =
                                    receive(master, cache, &w, g, with_prefix, &lengths, &data)?;
                                fetched.fetch_add(g.targets.len() as u64, Ordering::Relaxed);
                                bytes.fetch_add(n, Ordering::Relaxed);
                                Ok(())
                            }
                        }
                    });
                    match r {
                        Ok(true) => {}
                        Ok(false) => {
                            // An older master: everything by batch below.
                            *lock(&unsupported) = true;
                            lock(&fallback)
                                .extend(req.iter().flat_map(|g| g.targets.iter().copied()));
                        }
                        Err(e) => {
                            lock(&first_error).get_or_insert(e);
                            return;
                        }
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
    drop(w);
    stats.chunks_fetched += fetched.into_inner();
    stats.chunk_bytes += bytes.into_inner();
    let rest: BTreeMap<ObjectId, u64> = if *lock(&unsupported) {
        needed
    } else {
        lock(&fallback)
            .iter()
            .filter_map(|id| needed.get(id).map(|l| (*id, *l)))
            .collect()
    };
    if !rest.is_empty() {
        let mut more = FetchStats::default();
        fetch::chunks(master, cache, &rest, threads, &mut more)?;
        stats.chunks_fetched += more.chunks_fetched;
        stats.chunk_bytes += more.chunk_bytes;
    }
    Ok(())
}

/// Decompresses one group's frame against the cache's copies of its
/// bases, verifies every target and stores it. Returns the raw bytes.
fn receive(
    master: &Master,
    cache: &Store,
    w: &Writer<'_>,
    g: &Group,
    with_prefix: bool,
    lengths: &[u32],
    data: &[u8],
) -> Result<u64> {
    let url = format!("{}/v1/delta/chunk", master.base());
    let mut prefix = Vec::new();
    if with_prefix {
        for id in &g.bases {
            // read_raw verifies the cached copy against its id.
            prefix.extend_from_slice(&cache.read_raw(id, ObjectKind::Chunk)?);
        }
    }
    let total: usize = lengths.iter().map(|&l| l as usize).sum();
    let corrupt = |id: ObjectId, why: String| AgentError::Corrupt {
        kind: ObjectKind::Chunk,
        id,
        url: url.clone(),
        why,
    };
    let first = g.targets.first().copied().unwrap_or(ObjectId([0; 32]));
    let raw = delta::decompress(&prefix, data, total)
        .map_err(|e| corrupt(first, format!("delta frame: {e}")))?;
    let pieces = delta::split_and_verify(ObjectKind::Chunk, &g.targets, lengths, &raw)
        .map_err(|id| corrupt(id, "delta frame does not reproduce it".into()))?;
    for p in pieces {
        w.put(ObjectKind::Chunk, p)?;
    }
    master
        .counters
        .objects
        .fetch_add(g.targets.len() as u64, Ordering::Relaxed);
    Ok(total as u64)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versionless_paths_match_across_version_bumps() {
        assert_eq!(
            versionless(b"lib/modules/6.1.0-25-amd64/kernel/fs/ext4.ko"),
            versionless(b"lib/modules/6.1.0-26-amd64/kernel/fs/ext4.ko")
        );
        assert_eq!(
            versionless(b"usr/lib/python3.11/os.py"),
            b"usr/lib/python#.#/os.py"
        );
        assert_ne!(versionless(b"usr/bin/a"), versionless(b"usr/bin/b"));
    }
}
