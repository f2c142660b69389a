//! Differences between two commits, by Merkle comparison: subtrees with
//! equal ids are skipped, so the cost follows the size of the change.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::id::{IdSet, ObjectId};
use crate::repo::Store;
use crate::tree::{Entry, EntryKind, Extent, Tree};

/// How a path differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Only in B.
    Added,
    /// Only in A.
    Removed,
    /// Content (or type, or link target) differs.
    Modified,
    /// Only owner, mode, mtime or xattrs differ.
    Metadata,
}

impl Change {
    /// One-letter code for listings (`A`, `D`, `M`, `m`).
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Removed => 'D',
            Change::Modified => 'M',
            Change::Metadata => 'm',
        }
    }
}

/// One changed path.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DiffEntry {
    /// Root-relative path (lossy UTF-8 in JSON; see `path_bytes`).
    pub path: String,
    /// Exact path bytes.
    #[serde(skip)]
    pub path_bytes: Vec<u8>,
    /// What changed.
    pub change: Change,
    /// Entry type in B (or in A when removed).
    pub kind: &'static str,
    /// For files: size in B (or in A when removed).
    pub size: u64,
}

/// The differences from A to B.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Diff {
    /// Changed paths in canonical order.
    pub entries: Vec<DiffEntry>,
    /// Chunks referenced by B's added or modified files that A's removed or
    /// modified files do not have.
    pub new_chunks: u64,
    /// Their uncompressed bytes: what a holder of A must fetch for B.
    pub new_bytes: u64,
}

struct Ctx<'a> {
    store: &'a Store,
    out: Vec<DiffEntry>,
    b_chunks: BTreeMap<ObjectId, u64>,
    a_chunks: IdSet,
}

impl Store {
    /// Compares two commits (A = old, B = new).
    pub fn diff(&self, a: &ObjectId, b: &ObjectId) -> Result<Diff> {
        let ca = self.read_commit(a)?;
        let cb = self.read_commit(b)?;
        let mut ctx = Ctx {
            store: self,
            out: Vec::new(),
            b_chunks: BTreeMap::new(),
            a_chunks: IdSet::default(),
        };
        if ca.root.meta != cb.root.meta {
            ctx.push(b"/", Change::Metadata, &cb.root);
        }
        ctx.trees(&ca.tree(), &cb.tree(), &mut Vec::new())?;
        let mut diff = Diff {
            entries: ctx.out,
            ..Diff::default()
        };
        for (id, len) in ctx.b_chunks {
            if !ctx.a_chunks.contains(&id) {
                diff.new_chunks += 1;
                diff.new_bytes += len;
            }
        }
        Ok(diff)
    }
}

fn size_of(e: &Entry) -> u64 {
    match &e.kind {
        EntryKind::File { size, .. } => *size,
        _ => 0,
    }
}

fn chunks(e: &Entry) -> impl Iterator<Item = (ObjectId, u64)> + '_ {
    let extents: &[Extent] = match &e.kind {
        EntryKind::File { extents, .. } => extents,
        _ => &[],
    };
    extents.iter().filter_map(|x| match x {
        Extent::Data { id, len } => Some((*id, *len)),
        Extent::Hole { .. } => None,
    })
}

/// Same type and same content (ignoring metadata).
fn same_content(a: &Entry, b: &Entry) -> bool {
    match (&a.kind, &b.kind) {
        (EntryKind::Dir { .. }, EntryKind::Dir { .. }) => true,
        (x, y) => x == y,
    }
}

impl Ctx<'_> {
    fn push(&mut self, path: &[u8], change: Change, e: &Entry) {
        self.out.push(DiffEntry {
            path: String::from_utf8_lossy(path).into_owned(),
            path_bytes: path.to_vec(),
            change,
            kind: e.kind.name(),
            size: size_of(e),
        });
    }

    fn trees(&mut self, a: &ObjectId, b: &ObjectId, path: &mut Vec<u8>) -> Result<()> {
        if a == b {
            return Ok(());
        }
        let ta = self.store.read_tree(a)?;
        let tb = self.store.read_tree(b)?;
        let (mut i, mut j) = (0, 0);
        while i < ta.entries.len() || j < tb.entries.len() {
            let ea = ta.entries.get(i);
            let eb = tb.entries.get(j);
            let order = match (ea, eb) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            let len = path.len();
            let name = match order {
                std::cmp::Ordering::Less => &ta.entries[i].name,
                _ => &tb.entries[j].name,
            };
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name);
            match order {
                std::cmp::Ordering::Less => {
                    self.whole(&ta.entries[i], path, Change::Removed)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    self.whole(&tb.entries[j], path, Change::Added)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    self.both(&ta.entries[i], &tb.entries[j], path)?;
                    i += 1;
                    j += 1;
                }
            }
            path.truncate(len);
        }
        Ok(())
    }

    fn both(&mut self, a: &Entry, b: &Entry, path: &mut Vec<u8>) -> Result<()> {
        if let (EntryKind::Dir { tree: x }, EntryKind::Dir { tree: y }) = (&a.kind, &b.kind) {
            if a.meta != b.meta {
                self.push(path, Change::Metadata, b);
            }
            return self.trees(x, y, path);
        }
        let a_dir = matches!(a.kind, EntryKind::Dir { .. });
        let b_dir = matches!(b.kind, EntryKind::Dir { .. });
        if a_dir || b_dir {
            // A type change involving a directory: removal plus addition.
            self.whole(a, path, Change::Removed)?;
            return self.whole(b, path, Change::Added);
        }
        if !same_content(a, b) {
            self.push(path, Change::Modified, b);
            self.a_chunks.extend(chunks(a).map(|(id, _)| id));
            self.b_chunks.extend(chunks(b));
        } else if a.meta != b.meta {
            self.push(path, Change::Metadata, b);
        }
        Ok(())
    }

    /// An entry (and everything under it) only on one side.
    fn whole(&mut self, e: &Entry, path: &mut Vec<u8>, change: Change) -> Result<()> {
        self.push(path, change, e);
        match change {
            Change::Added => self.b_chunks.extend(chunks(e)),
            _ => self.a_chunks.extend(chunks(e).map(|(id, _)| id)),
        }
        if let EntryKind::Dir { tree } = &e.kind {
            let t: Tree = self.store.read_tree(tree)?;
            for child in &t.entries {
                let len = path.len();
                path.push(b'/');
                path.extend_from_slice(&child.name);
                self.whole(child, path, change)?;
                path.truncate(len);
            }
        }
        Ok(())
    }
}
