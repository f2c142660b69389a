//! The lower layer: the mounted commit, read lazily from the store.
//!
//! Trees are decoded once and kept (a whole image's trees are a few MB);
//! file content is read chunk by chunk through the bounded chunk cache.
//! Hard links are found by one walk of the trees at mount time, because a
//! file entry does not say that other names point at it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use vnfs_store::{Commit, Entry, EntryKind, Extent, ObjectId, ObjectKind, Store, Tree};

use crate::cache::ChunkCache;
use crate::error::Result;

/// A regular file's content as the store holds it.
#[derive(Debug)]
pub struct FileData {
    /// Logical size.
    pub size: u64,
    extents: Vec<Extent>,
    starts: Vec<u64>,
}

impl FileData {
    /// Indexes a file's extents for reads at any offset.
    pub fn new(size: u64, extents: Vec<Extent>) -> FileData {
        let mut starts = Vec::with_capacity(extents.len());
        let mut at = 0;
        for x in &extents {
            starts.push(at);
            at += x.len();
        }
        FileData {
            size,
            extents,
            starts,
        }
    }

    /// The extents, in order.
    pub fn extents(&self) -> &[Extent] {
        &self.extents
    }
}

/// The commit being mounted and everything read from it.
pub struct Lower {
    store: Arc<Store>,
    /// The commit id.
    pub commit_id: ObjectId,
    /// The commit (its root entry carries the root's metadata).
    pub commit: Commit,
    trees: Mutex<HashMap<ObjectId, Arc<Tree>>>,
    chunks: ChunkCache,
    /// Hard-link groups: first path → every path of the inode (first included).
    groups: HashMap<Vec<u8>, Arc<Vec<Vec<u8>>>>,
}

impl Lower {
    /// Opens a commit and indexes its hard links.
    pub fn open(store: Arc<Store>, commit_id: ObjectId, cache_bytes: usize) -> Result<Lower> {
        let commit = store.read_commit(&commit_id)?;
        let mut lower = Lower {
            store,
            commit_id,
            commit,
            trees: Mutex::new(HashMap::new()),
            chunks: ChunkCache::new(cache_bytes),
            groups: HashMap::new(),
        };
        let mut links: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
        lower.find_links(lower.commit.tree(), &mut Vec::new(), &mut links)?;
        lower.groups = links
            .into_iter()
            .map(|(target, mut members)| {
                members.insert(0, target.clone());
                (target, Arc::new(members))
            })
            .collect();
        Ok(lower)
    }

    fn find_links(
        &self,
        tree: ObjectId,
        path: &mut Vec<u8>,
        out: &mut HashMap<Vec<u8>, Vec<Vec<u8>>>,
    ) -> Result<()> {
        let t = self.tree(&tree)?;
        for e in &t.entries {
            let len = path.len();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&e.name);
            match &e.kind {
                EntryKind::Dir { tree } => self.find_links(*tree, path, out)?,
                EntryKind::HardLink { target } => {
                    out.entry(target.clone()).or_default().push(path.clone())
                }
                _ => {}
            }
            path.truncate(len);
        }
        Ok(())
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A decoded tree, cached.
    pub fn tree(&self, id: &ObjectId) -> Result<Arc<Tree>> {
        if let Some(t) = lock(&self.trees).get(id) {
            return Ok(t.clone());
        }
        let t = Arc::new(self.store.read_tree(id)?);
        lock(&self.trees).insert(*id, t.clone());
        Ok(t)
    }

    /// The entry at a root-relative path (`b""` is the root), or `None`.
    pub fn resolve(&self, path: &[u8]) -> Result<Option<Entry>> {
        let mut cur = self.commit.root.clone();
        if path.is_empty() {
            return Ok(Some(cur));
        }
        for comp in path.split(|&b| b == b'/') {
            let EntryKind::Dir { tree } = cur.kind else {
                return Ok(None);
            };
            let t = self.tree(&tree)?;
            match find(&t, comp) {
                Some(e) => cur = e.clone(),
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// Every path of the hard-linked inode whose first path is `target`.
    pub fn group(&self, target: &[u8]) -> Option<Arc<Vec<Vec<u8>>>> {
        self.groups.get(target).cloned()
    }

    /// Reads up to `len` bytes at `offset`. A chunk that fails its check
    /// is an error naming the object (the caller logs it and answers EIO).
    pub fn read(&self, data: &FileData, offset: u64, len: usize) -> Result<Vec<u8>> {
        if offset >= data.size {
            return Ok(Vec::new());
        }
        let end = data.size.min(offset + len as u64);
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut i = data
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let mut pos = offset;
        while pos < end && i < data.extents.len() {
            let start = data.starts[i];
            let x = &data.extents[i];
            let within = (pos - start) as usize;
            let take = ((start + x.len()).min(end) - pos) as usize;
            match x {
                Extent::Hole { .. } => out.resize(out.len() + take, 0),
                Extent::Data { id, .. } => {
                    let chunk = self.chunk(id)?;
                    let Some(bytes) = chunk.get(within..within + take) else {
                        return Err(vnfs_store::StoreError::Invalid(format!(
                            "chunk {id} is shorter than its extent"
                        ))
                        .into());
                    };
                    out.extend_from_slice(bytes);
                }
            }
            pos += take as u64;
            i += 1;
        }
        Ok(out)
    }

    fn chunk(&self, id: &ObjectId) -> Result<Arc<Vec<u8>>> {
        if let Some(c) = self.chunks.get(id) {
            return Ok(c);
        }
        let c = Arc::new(self.store.read_raw(id, ObjectKind::Chunk)?);
        self.chunks.insert(*id, c.clone());
        Ok(c)
    }
}

/// Binary search of a sorted tree by name.
pub fn find<'t>(tree: &'t Tree, name: &[u8]) -> Option<&'t Entry> {
    tree.entries
        .binary_search_by(|e| e.name.as_slice().cmp(name))
        .ok()
        .map(|i| &tree.entries[i])
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Lower {
    /// First paths of the hard-link groups with a name at or below `dir`.
    pub fn groups_touching(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let under =
            |p: &[u8]| dir.is_empty() || (p.starts_with(dir) && p.get(dir.len()) == Some(&b'/'));
        let mut v: Vec<Vec<u8>> = self
            .groups
            .iter()
            .filter(|(_, members)| members.iter().any(|m| under(m)))
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }
}
