//! What an export writes, and in which order: the closure of the head
//! commit in walk order, laid out as single records and solid blocks.
//!
//! The closure is the commit, its ancestors through all parents, and every
//! tree and chunk their root trees reach: the store's history, gc and fsck
//! expect every commit's parents and trees to be present. A delta leaves out
//! the closure of its base (Merkle: an excluded tree's whole subtree is
//! skipped unread).
//!
//! Walk order (commits depth first from the head, first parent first; each
//! commit's tree pre-order, entries by name, a file's chunks in extent
//! order) is what makes solid blocks compress: neighbouring small files in
//! one directory resemble each other, as in a tar stream. It is also the
//! order ingest wrote the chunks, so large chunks are read from the packs
//! nearly sequentially.

use std::collections::HashSet;

use vnfs_store::tree::{EntryKind, Extent};
use vnfs_store::{ObjectId as StoreId, Store, StoreError};

use super::{from_store, kind_to_store};
use crate::id::{ObjectId, ObjectKind};

/// How an export lays objects out. The defaults balance capsule size
/// against export and import speed (see SPEC.md, "Solid blocks").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// Chunks smaller than this (uncompressed) are recompressed together in
    /// solid blocks; larger ones are copied as the store keeps them. Trees
    /// and commits always go into blocks. 0 keeps every chunk single.
    pub solid_below: u32,
    /// A block is closed once its members' raw bytes reach this size.
    pub block_size: u32,
    /// zstd level of the blocks. The default, 1, makes blocks under 1 %
    /// larger than level 3 at two thirds of the export time (the blocks'
    /// compression is most of an export's CPU; see SPEC.md §12).
    pub level: i32,
    /// Check the chunks copied as stored before the capsule is finished,
    /// so a damaged store stops the export instead of travelling, perhaps
    /// signed: a pack the export copies at least half of is hashed whole
    /// against its name; the chunks of other packs are decompressed and
    /// checked against their ids. `false` copies those chunks unread, for
    /// callers that trust the store (one just checked by fsck); the output
    /// is the same bytes either way. (A pack hash does not catch an object
    /// stored wrong before its pack was sealed; the importing site's check
    /// of every id does.) Objects in solid blocks are decoded to
    /// be recompressed and are always checked: that costs little beside
    /// the recompression.
    pub verify: bool,
}

impl Default for ExportOptions {
    fn default() -> ExportOptions {
        ExportOptions {
            solid_below: DEFAULT_SOLID_BELOW,
            block_size: 4 << 20,
            level: 1,
            verify: true,
        }
    }
}

/// Default [`ExportOptions::solid_below`]: FastCDC's minimum chunk size, so
/// whole small files and the tails of large ones go into blocks, while the
/// chunks of large files (the bulk of the bytes, already compressed in the
/// store) are copied.
pub const DEFAULT_SOLID_BELOW: u32 = 16 << 10;

/// Most members a writer puts in one block (readers accept up to
/// `Limits::max_block_members`).
const MAX_MEMBERS: usize = 16 << 10;

/// One record to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// An object copied as stored.
    Single(ObjectKind, ObjectId),
    /// Objects recompressed together.
    Block(Vec<(ObjectKind, ObjectId)>),
}

/// The closure of `head` in walk order, leaving out `exclude`.
pub(crate) fn walk(
    store: &Store,
    head: StoreId,
    exclude: Option<&HashSet<StoreId>>,
) -> Result<Vec<(ObjectKind, StoreId)>, StoreError> {
    let mut w = Walker {
        store,
        exclude,
        seen: HashSet::new(),
        out: Vec::new(),
    };
    let mut stack = vec![head];
    while let Some(c) = stack.pop() {
        if !w.first(c) {
            continue;
        }
        let commit = store.read_commit(&c)?;
        w.out.push((ObjectKind::Commit, c));
        w.tree(commit.tree())?;
        // Reversed, so the first parent is walked first.
        stack.extend(commit.parents.iter().rev().copied());
    }
    Ok(w.out)
}

struct Walker<'a> {
    store: &'a Store,
    exclude: Option<&'a HashSet<StoreId>>,
    seen: HashSet<StoreId>,
    out: Vec<(ObjectKind, StoreId)>,
}

impl Walker<'_> {
    /// True the first time an object not excluded is met.
    fn first(&mut self, id: StoreId) -> bool {
        !self.exclude.is_some_and(|x| x.contains(&id)) && self.seen.insert(id)
    }

    fn tree(&mut self, tree: StoreId) -> Result<(), StoreError> {
        if !self.first(tree) {
            return Ok(());
        }
        self.out.push((ObjectKind::Tree, tree));
        for e in self.store.read_tree(&tree)?.entries {
            match e.kind {
                EntryKind::Dir { tree } => self.tree(tree)?,
                EntryKind::File { extents, .. } => {
                    for x in extents {
                        if let Extent::Data { id, .. } = x
                            && self.first(id)
                        {
                            self.out.push((ObjectKind::Chunk, id));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Lays objects (in walk order) out as records: large chunks single, the
/// rest in blocks, one stream of blocks for file content and one for trees
/// and commits (they compress best among their own kind). A block takes
/// its place where it closes; the last, partial blocks go at the end.
pub(crate) fn layout(
    store: &Store,
    objects: &[(ObjectKind, StoreId)],
    opts: &ExportOptions,
) -> Result<Vec<Unit>, StoreError> {
    #[derive(Default)]
    struct Open {
        members: Vec<(ObjectKind, ObjectId)>,
        raw: u64,
    }
    let mut units = Vec::new();
    let (mut data, mut meta) = (Open::default(), Open::default());
    for &(kind, id) in objects {
        let e = store.entry(&id).ok_or(StoreError::Missing {
            id,
            kind: kind_to_store(kind),
        })?;
        let stream = match kind {
            ObjectKind::Chunk if e.raw_len < opts.solid_below => Some(&mut data),
            ObjectKind::Tree | ObjectKind::Commit if e.raw_len <= opts.block_size => {
                Some(&mut meta)
            }
            _ => None,
        };
        let Some(open) = stream else {
            units.push(Unit::Single(kind, from_store(&id)));
            continue;
        };
        open.members.push((kind, from_store(&id)));
        open.raw += u64::from(e.raw_len);
        if open.raw >= u64::from(opts.block_size) || open.members.len() >= MAX_MEMBERS {
            units.push(Unit::Block(std::mem::take(&mut open.members)));
            open.raw = 0;
        }
    }
    for open in [data, meta] {
        if !open.members.is_empty() {
            units.push(Unit::Block(open.members));
        }
    }
    Ok(units)
}

/// Where the image uses object `id`: `name@commit:/path` of its first place
/// in walk order (a chunk's file, a tree's directory), or `name@commit` for
/// a commit. Called only once an export has found the object damaged, so a
/// second walk costs nothing in the exports that succeed, which therefore
/// need not keep a path per object. Trees that cannot be read are skipped.
pub(crate) fn find_place(
    store: &Store,
    name: &str,
    head: StoreId,
    kind: ObjectKind,
    id: StoreId,
) -> Option<String> {
    let mut seen_commits = HashSet::new();
    let mut seen_trees = HashSet::new();
    let mut stack = vec![head];
    while let Some(c) = stack.pop() {
        if !seen_commits.insert(c) {
            continue;
        }
        if kind == ObjectKind::Commit && c == id {
            return Some(format!("{name}@{}", c.short()));
        }
        let Ok(commit) = store.read_commit(&c) else {
            continue;
        };
        if let Some(path) = path_under(store, commit.tree(), kind, &id, &mut seen_trees) {
            let path = String::from_utf8_lossy(&path);
            return Some(format!("{name}@{}:/{path}", c.short()));
        }
        stack.extend(commit.parents.iter().rev().copied());
    }
    None
}

/// The path, relative to `tree`, of the first entry that is (a tree) or
/// holds (a chunk) object `id`; empty for `tree` itself. Subtrees in
/// `seen` were searched before and are not searched again.
fn path_under(
    store: &Store,
    tree: StoreId,
    kind: ObjectKind,
    id: &StoreId,
    seen: &mut HashSet<StoreId>,
) -> Option<Vec<u8>> {
    if kind == ObjectKind::Tree && tree == *id {
        return Some(Vec::new());
    }
    if !seen.insert(tree) {
        return None;
    }
    for e in store.read_tree(&tree).ok()?.entries {
        let below = match &e.kind {
            EntryKind::Dir { tree } => path_under(store, *tree, kind, id, seen),
            EntryKind::File { extents, .. } if kind == ObjectKind::Chunk => extents
                .iter()
                .any(|x| matches!(x, Extent::Data { id: c, .. } if c == id))
                .then(Vec::new),
            _ => None,
        };
        if let Some(rest) = below {
            let mut path = e.name;
            if !rest.is_empty() {
                path.push(b'/');
                path.extend_from_slice(&rest);
            }
            return Some(path);
        }
    }
    None
}
