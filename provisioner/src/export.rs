//! The master's export tree for hybridization: `HOME/export/COMMIT/PATH`
//! holds, for each image version, the paths its hybridize patterns take
//! out of node memory. Nodes mount `HOME/export` at the same path (the
//! state directory, as Perceus did) and their hybridized paths are
//! symlinks into it.
//!
//! Files are shared by content across images and versions: each distinct
//! file (content, owner, mode, times, xattrs: a hard link shares all of
//! them) is written once under `HOME/export/.content/` and every version
//! that has it hard-links to it. A version's directory appears by rename
//! once complete, so nodes never see half an export.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use vnfs_node::glob::PathGlob;
use vnfs_node::hybrid::{self, NodeView};
use vnfs_store::{Entry, EntryKind, Extent, ObjectId, ObjectKind, Store};

use crate::error::{Error, Result, io};

/// Directory under the export root holding the shared file contents.
pub const CONTENT_DIR: &str = ".content";

/// The export tree of an installation.
#[derive(Clone, Debug)]
pub struct Export {
    root: PathBuf,
}

/// What building one version's export did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ExportStats {
    /// Whether the version's export existed already.
    pub existed: bool,
    /// Files linked into the version.
    pub files: u64,
    /// Of those, files whose content was already in the export (shared).
    pub shared: u64,
    /// Bytes newly written.
    pub written_bytes: u64,
    /// Device nodes and FIFOs left out (they make no sense on an export).
    pub skipped: u64,
}

/// Disk use of the whole export.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ExportUsage {
    /// Distinct files stored.
    pub contents: u64,
    /// Their bytes (each counted once, however many versions link it).
    pub bytes: u64,
    /// Links from versions to them.
    pub links: u64,
}

impl Export {
    /// The export under a vnfs home.
    pub fn new(home: &Path) -> Export {
        let home = fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
        Export {
            root: home.join("export"),
        }
    }

    /// The export root (what nodes mount, at the same path).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding one version's hybridized paths.
    pub fn version_dir(&self, commit: &ObjectId) -> PathBuf {
        self.root.join(commit.to_hex())
    }

    /// Makes sure `commit`'s export exists; builds it if not.
    pub fn ensure(
        &self,
        store: &Store,
        commit: &ObjectId,
        globs: &[PathGlob],
    ) -> Result<ExportStats> {
        let dir = self.version_dir(commit);
        if dir.is_dir() || globs.is_empty() {
            return Ok(ExportStats {
                existed: dir.is_dir(),
                ..ExportStats::default()
            });
        }
        let view = hybrid::node_view(store, None, commit, globs, &self.root.to_string_lossy())
            .map_err(store_err)?;
        let content = self.root.join(CONTENT_DIR);
        fs::create_dir_all(&content).map_err(io(&content))?;
        let tmp = self
            .root
            .join(format!(".tmp-{}-{}", commit.to_hex(), std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let c = store.read_commit(commit).map_err(store_err)?;
        let mut b = Builder {
            store,
            content: &content,
            root_tree: c.tree(),
            stats: ExportStats::default(),
            dir_meta: Vec::new(),
        };
        for p in &view.hybridized {
            let rel = p.trim_start_matches('/');
            let e = lookup(store, &c.tree(), rel.as_bytes())?.ok_or_else(|| {
                Error::Config(format!("image {commit}: hybridized path {p} vanished"))
            })?;
            let dest = tmp.join(rel);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(io(parent))?;
            }
            b.put(&e, &dest)?;
        }
        for (p, meta) in b.dir_meta.iter().rev() {
            vnfs_store::checkout::set_metadata(p, meta, false).map_err(store_err)?;
        }
        if let Err(e) = fs::rename(&tmp, &dir) {
            // Another process (the daemon, `vnfs hybridize`) finished the
            // same version first: its copy is as good as ours.
            let _ = fs::remove_dir_all(&tmp);
            if !dir.is_dir() {
                return Err(io(&dir)(e));
            }
        }
        Ok(b.stats)
    }

    /// Counts the shared contents and the links to them.
    pub fn usage(&self) -> Result<ExportUsage> {
        let mut u = ExportUsage::default();
        let content = self.root.join(CONTENT_DIR);
        let rd = match fs::read_dir(&content) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(u),
            Err(e) => return Err(io(&content)(e)),
        };
        for sub in rd {
            let sub = sub.map_err(io(&content))?;
            for f in fs::read_dir(sub.path()).map_err(io(sub.path()))? {
                let f = f.map_err(io(sub.path()))?;
                let m = f.metadata().map_err(io(f.path()))?;
                u.contents += 1;
                u.bytes += m.len();
                u.links += m.nlink().saturating_sub(1);
            }
        }
        Ok(u)
    }
}

/// The accounting `vnfs hybridize` prints, without writing anything.
pub fn plan(
    store: &Store,
    commit: &ObjectId,
    globs: &[PathGlob],
    export_root: &str,
) -> Result<NodeView> {
    hybrid::node_view(store, None, commit, globs, export_root).map_err(store_err)
}

fn store_err(e: vnfs_store::StoreError) -> Error {
    Error::Config(format!("store: {e}"))
}

/// Finds the entry at `rel` (components separated by `/`) under `tree`.
pub fn lookup(store: &Store, tree: &ObjectId, rel: &[u8]) -> Result<Option<Entry>> {
    let mut cur = *tree;
    let parts: Vec<&[u8]> = rel
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    for (i, name) in parts.iter().enumerate() {
        let t = store.read_tree(&cur).map_err(store_err)?;
        let Some(e) = t.get(name) else {
            return Ok(None);
        };
        if i + 1 == parts.len() {
            return Ok(Some(e.clone()));
        }
        match &e.kind {
            EntryKind::Dir { tree } => cur = *tree,
            _ => return Ok(None),
        }
    }
    Ok(None)
}

struct Builder<'a> {
    store: &'a Store,
    content: &'a Path,
    root_tree: ObjectId,
    stats: ExportStats,
    dir_meta: Vec<(PathBuf, vnfs_store::Meta)>,
}

impl Builder<'_> {
    fn put(&mut self, e: &Entry, dest: &Path) -> Result<()> {
        match &e.kind {
            EntryKind::Dir { tree } => {
                fs::create_dir(dest).map_err(io(dest))?;
                self.dir_meta.push((dest.to_path_buf(), e.meta.clone()));
                let t = self.store.read_tree(tree).map_err(store_err)?;
                for c in &t.entries {
                    self.put(c, &dest.join(OsStr::from_bytes(&c.name)))?;
                }
            }
            EntryKind::File { .. } => {
                let src = self.content_of(e)?;
                fs::hard_link(&src, dest).map_err(io(dest))?;
                self.stats.files += 1;
            }
            EntryKind::HardLink { target } => {
                // Same inode as its target: link to the target's content.
                if let Some(t) = lookup(self.store, &self.root_tree, target)? {
                    let src = self.content_of(&t)?;
                    fs::hard_link(&src, dest).map_err(io(dest))?;
                    self.stats.files += 1;
                }
            }
            EntryKind::Symlink { target } => {
                std::os::unix::fs::symlink(OsStr::from_bytes(target), dest).map_err(io(dest))?;
                vnfs_store::checkout::set_metadata(dest, &e.meta, true).map_err(store_err)?;
            }
            EntryKind::CharDev { .. } | EntryKind::BlockDev { .. } | EntryKind::Fifo => {
                self.stats.skipped += 1;
            }
        }
        Ok(())
    }

    /// The shared content file for a file entry, written if new.
    fn content_of(&mut self, e: &Entry) -> Result<PathBuf> {
        let EntryKind::File { size, extents } = &e.kind else {
            return Err(Error::Config("not a regular file".into()));
        };
        let key = content_key(e);
        let dir = self.content.join(&key[..2]);
        let path = dir.join(&key);
        if path.exists() {
            self.stats.shared += 1;
            return Ok(path);
        }
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tmp = dir.join(format!(".{key}.{}", std::process::id()));
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io(&tmp))?;
        let mut pos = 0u64;
        for x in extents {
            if let Extent::Data { id, .. } = x {
                let data = self
                    .store
                    .read_raw(id, ObjectKind::Chunk)
                    .map_err(store_err)?;
                f.write_all_at(&data, pos).map_err(io(&tmp))?;
            }
            pos += x.len();
        }
        f.set_len(*size).map_err(io(&tmp))?;
        drop(f);
        vnfs_store::checkout::set_metadata(&tmp, &e.meta, false).map_err(store_err)?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        self.stats.written_bytes += size;
        Ok(path)
    }
}

/// The key of a file's content plus the metadata a hard link shares.
fn content_key(e: &Entry) -> String {
    let mut h = blake3::Hasher::new_derive_key("vnfs 2026 export content v1");
    if let EntryKind::File { size, extents } = &e.kind {
        h.update(&size.to_le_bytes());
        for x in extents {
            match x {
                Extent::Data { id, len } => {
                    h.update(&[1]);
                    h.update(&id.0);
                    h.update(&len.to_le_bytes());
                }
                Extent::Hole { len } => {
                    h.update(&[2]);
                    h.update(&len.to_le_bytes());
                }
            }
        }
    }
    let m = &e.meta;
    h.update(&m.mode.to_le_bytes());
    h.update(&m.uid.to_le_bytes());
    h.update(&m.gid.to_le_bytes());
    h.update(&m.mtime.to_le_bytes());
    h.update(&m.mtime_nsec.to_le_bytes());
    let mut xs: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
    for (k, v) in &m.xattrs {
        xs.insert(k, v);
    }
    for (k, v) in xs {
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k);
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v);
    }
    h.finalize().to_hex().to_string()
}
