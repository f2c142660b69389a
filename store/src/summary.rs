//! Figures about images and the whole store: sizes, chunk counts, bytes
//! unique to an image, dedup ratio. Per-tree results are memoised, so
//! shared subtrees (most of every version) are counted in one visit.

use std::collections::HashMap;

use crate::error::Result;
use crate::id::{IdMap, IdSet, ObjectId, ObjectKind};
use crate::repo::Store;
use crate::tree::{EntryKind, Extent};

/// Figures for one commit.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ImageSummary {
    /// Regular files (hard links not counted again).
    pub files: u64,
    /// Directories, not counting the root.
    pub dirs: u64,
    /// Symlinks, devices, FIFOs, hard links.
    pub others: u64,
    /// Sum of file sizes.
    pub logical_bytes: u64,
    /// Distinct chunks.
    pub chunks: u64,
    /// Stored (compressed) bytes of those chunks and of the trees.
    pub stored_bytes: u64,
    /// Stored bytes of chunks and trees no other image (or version) uses:
    /// what deleting this image and running gc would give back at most.
    pub unique_bytes: u64,
}

/// Figures for the whole store.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StoreStats {
    /// Images (names).
    pub images: u64,
    /// Commits reachable from names.
    pub commits: u64,
    /// Logical bytes of every reachable commit, added up.
    pub logical_bytes: u64,
    /// Bytes of pack and index files on disk.
    pub stored_bytes: u64,
    /// logical / stored.
    pub dedup_ratio: f64,
    /// Object counts by kind.
    pub chunks: u64,
    /// Tree objects.
    pub trees: u64,
    /// Commit objects.
    pub commit_objects: u64,
}

impl Store {
    /// Every object id reachable from `commit`'s tree (trees and chunks).
    pub fn tree_objects(&self, tree: &ObjectId, out: &mut IdSet) -> Result<()> {
        if !out.insert(*tree) {
            return Ok(());
        }
        let t = self.read_tree(tree)?;
        for e in &t.entries {
            match &e.kind {
                EntryKind::Dir { tree } => self.tree_objects(tree, out)?,
                EntryKind::File { extents, .. } => {
                    for x in extents {
                        if let Extent::Data { id, .. } = x {
                            out.insert(*id);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Commits reachable from every name and pin, through all parents.
    pub fn reachable_commits(&self) -> Result<Vec<ObjectId>> {
        let mut seen = IdSet::default();
        let mut order = Vec::new();
        let mut stack: Vec<ObjectId> = self.list_refs()?.into_iter().map(|(_, id)| id).collect();
        stack.extend(self.list_pins()?.into_iter().map(|(_, id)| id));
        while let Some(id) = stack.pop() {
            if seen.insert(id) {
                order.push(id);
                stack.extend(self.read_commit(&id)?.parents);
            }
        }
        Ok(order)
    }

    /// Figures for one commit, including bytes no other commit shares.
    pub fn summarize(&self, commit: &ObjectId) -> Result<ImageSummary> {
        let c = self.read_commit(commit)?;
        let mut s = ImageSummary::default();
        self.walk(&c.tree(), &mut |_, e| {
            match &e.kind {
                EntryKind::File { size, .. } => {
                    s.files += 1;
                    s.logical_bytes += size;
                }
                EntryKind::Dir { .. } => s.dirs += 1,
                _ => s.others += 1,
            }
            Ok(true)
        })?;
        let mut mine = IdSet::default();
        self.tree_objects(&c.tree(), &mut mine)?;
        let mut others = IdSet::default();
        for other in self.reachable_commits()? {
            if other != *commit {
                let t = self.read_commit(&other)?.tree();
                self.tree_objects(&t, &mut others)?;
            }
        }
        let idx = self.read_index();
        for id in &mine {
            let Some(loc) = idx.objects.get(id) else {
                continue;
            };
            let stored = u64::from(loc.entry.stored_len);
            if loc.entry.kind == ObjectKind::Chunk {
                s.chunks += 1;
            }
            s.stored_bytes += stored;
            if !others.contains(id) {
                s.unique_bytes += stored;
            }
        }
        Ok(s)
    }

    /// Figures for the whole store.
    pub fn stats(&self) -> Result<StoreStats> {
        let mut s = StoreStats {
            images: self.list_refs()?.len() as u64,
            ..StoreStats::default()
        };
        let commits = self.reachable_commits()?;
        s.commits = commits.len() as u64;
        let mut memo: IdMap<u64> = HashMap::default();
        for c in &commits {
            let tree = self.read_commit(c)?.tree();
            s.logical_bytes += self.tree_bytes(&tree, &mut memo)?;
        }
        s.stored_bytes = self.disk_usage()?;
        s.dedup_ratio = if s.stored_bytes == 0 {
            0.0
        } else {
            s.logical_bytes as f64 / s.stored_bytes as f64
        };
        for (kind, (n, _)) in self.object_counts() {
            match kind {
                ObjectKind::Chunk => s.chunks = n,
                ObjectKind::Tree => s.trees = n,
                ObjectKind::Commit => s.commit_objects = n,
            }
        }
        Ok(s)
    }

    fn tree_bytes(&self, tree: &ObjectId, memo: &mut IdMap<u64>) -> Result<u64> {
        if let Some(n) = memo.get(tree) {
            return Ok(*n);
        }
        let t = self.read_tree(tree)?;
        let mut n = 0;
        for e in &t.entries {
            match &e.kind {
                EntryKind::File { size, .. } => n += size,
                EntryKind::Dir { tree } => n += self.tree_bytes(tree, memo)?,
                _ => {}
            }
        }
        memo.insert(*tree, n);
        Ok(n)
    }
}
