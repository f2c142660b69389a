//! Hybridization: the node's view of an image. Paths the image's hybridize
//! patterns cover are not materialised on the node; each top-most covered
//! path becomes a symlink to `EXPORT_ROOT/COMMIT/PATH`, where the master's
//! export (its state directory, mounted on the node at the same path, as
//! Perceus did) holds that version's files.
//!
//! The view is built as real tree objects in the node's object cache, so
//! the store's own checkout assembles it with exact metadata, and livesync
//! diffs two views with the store's Merkle diff. With no patterns the view
//! is the image's own commit.

use std::collections::BTreeMap;

use vnfs_store::{
    Commit, Entry, EntryKind, Extent, Meta, ObjectId, ObjectKind, Store, StoreError, Tree, Writer,
};

use crate::glob::{PathGlob, any_covers};

/// Commit metadata key of a node view naming the image commit it shows.
pub const VIEW_OF_KEY: &str = "vnfs.node.image";

/// What a node keeps in memory and what it reaches through the export.
#[derive(Clone, Debug)]
pub struct NodeView {
    /// The view's commit: the image commit itself when nothing is
    /// hybridized, else a commit written into the writer's store.
    pub commit: ObjectId,
    /// Chunks the node must hold, with their lengths (deduplicated).
    pub chunks: BTreeMap<ObjectId, u64>,
    /// Bytes of regular files kept on the node.
    pub local_bytes: u64,
    /// Bytes of regular files left on the master's export.
    pub remote_bytes: u64,
    /// Files kept on the node.
    pub local_files: u64,
    /// Files left on the export.
    pub remote_files: u64,
    /// The top-most hybridized paths (each one symlink on the node).
    pub hybridized: Vec<String>,
}

/// The symlink target for a hybridized `path` (absolute, from the image
/// root) of `commit`.
pub fn export_target(export_root: &str, commit: &ObjectId, path: &str) -> String {
    format!(
        "{}/{}{}",
        export_root.trim_end_matches('/'),
        commit.to_hex(),
        path
    )
}

/// Builds the node's view of `commit`. With `writer`, new tree and commit
/// objects go into its store (the agent's cache); without, only the
/// accounting is done (the master's `vnfs hybridize` report).
pub fn node_view(
    store: &Store,
    writer: Option<&Writer<'_>>,
    commit: &ObjectId,
    globs: &[PathGlob],
    export_root: &str,
) -> Result<NodeView, StoreError> {
    let c = store.read_commit(commit)?;
    let mut b = Builder {
        store,
        writer,
        globs,
        export_root,
        commit: *commit,
        view: NodeView {
            commit: *commit,
            chunks: BTreeMap::new(),
            local_bytes: 0,
            remote_bytes: 0,
            local_files: 0,
            remote_files: 0,
            hybridized: Vec::new(),
        },
    };
    let mut path = Vec::new();
    let tree = b.rewrite(&c.tree(), &mut path)?;
    let mut view = b.view;
    view.commit = if tree == c.tree() {
        *commit
    } else if let Some(w) = writer {
        let mut metadata = BTreeMap::new();
        metadata.insert(VIEW_OF_KEY.to_string(), commit.to_hex());
        let vc = Commit {
            root: Entry {
                name: Vec::new(),
                kind: EntryKind::Dir { tree },
                meta: c.root.meta.clone(),
            },
            parents: vec![*commit],
            timestamp: c.timestamp,
            message: format!("node view of {commit} with the export at {export_root}"),
            metadata,
        };
        w.put(ObjectKind::Commit, &vc.encode())?
    } else {
        *commit
    };
    Ok(view)
}

struct Builder<'a> {
    store: &'a Store,
    writer: Option<&'a Writer<'a>>,
    globs: &'a [PathGlob],
    export_root: &'a str,
    commit: ObjectId,
    view: NodeView,
}

fn as_path(rel: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(rel))
}

impl Builder<'_> {
    fn rewrite(&mut self, id: &ObjectId, path: &mut Vec<u8>) -> Result<ObjectId, StoreError> {
        let t = self.store.read_tree(id)?;
        let mut out = Vec::with_capacity(t.entries.len());
        let mut changed = false;
        for e in t.entries {
            let len = path.len();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&e.name);
            let p = as_path(path);
            let hybrid = !self.globs.is_empty() && self.globs.iter().any(|g| g.matches_exact(&p));
            let new = if hybrid {
                self.remote(&e)?;
                self.view.hybridized.push(p.clone());
                changed = true;
                link_entry(e, export_target(self.export_root, &self.commit, &p))
            } else {
                match &e.kind {
                    EntryKind::Dir { tree } => {
                        let nt = self.rewrite(tree, path)?;
                        if nt != *tree {
                            changed = true;
                        }
                        Entry {
                            kind: EntryKind::Dir { tree: nt },
                            ..e
                        }
                    }
                    EntryKind::HardLink { target }
                        if !self.globs.is_empty() && any_covers(self.globs, &as_path(target)) =>
                    {
                        // The inode lives on the export; link to it there.
                        changed = true;
                        let to = export_target(self.export_root, &self.commit, &as_path(target));
                        link_entry(e, to)
                    }
                    EntryKind::File { size, extents } => {
                        self.view.local_files += 1;
                        self.view.local_bytes += size;
                        for x in extents {
                            if let Extent::Data { id, len } = x {
                                self.view.chunks.insert(*id, *len);
                            }
                        }
                        e
                    }
                    _ => e,
                }
            };
            out.push(new);
            path.truncate(len);
        }
        if !changed {
            return Ok(*id);
        }
        let tree = Tree { entries: out };
        match self.writer {
            Some(w) => w.put(ObjectKind::Tree, &tree.encode()),
            None => Ok(ObjectId::of(ObjectKind::Tree, &tree.encode())),
        }
    }

    /// Counts what a hybridized entry leaves on the export.
    fn remote(&mut self, e: &Entry) -> Result<(), StoreError> {
        match &e.kind {
            EntryKind::File { size, .. } => {
                self.view.remote_files += 1;
                self.view.remote_bytes += size;
            }
            EntryKind::Dir { tree } => {
                let t = self.store.read_tree(tree)?;
                for c in &t.entries {
                    self.remote(c)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A symlink to `target` in place of `e`, keeping its owner and time.
fn link_entry(e: Entry, target: String) -> Entry {
    Entry {
        name: e.name,
        kind: EntryKind::Symlink {
            target: target.into_bytes(),
        },
        meta: Meta {
            mode: 0o777,
            uid: e.meta.uid,
            gid: e.meta.gid,
            mtime: e.meta.mtime,
            mtime_nsec: e.meta.mtime_nsec,
            xattrs: Vec::new(),
        },
    }
}
