//! Finding a directory's entries: one name at a time for lookups, the
//! whole listing for readdir. Upper names (and whiteouts) shadow lower
//! ones. A child map may be partial (children freed after the kernel
//! forgot them), so both paths skip names that already have a node: a
//! node in the map is always the current truth for its name.

use std::collections::HashSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use vnfs_store::{Entry, EntryKind};

use super::{Overlay, R, ROOT, Tables, io_err, join, lstat_opt, store_err};
use crate::inode::{DirInfo, LowerInfo, LowerKind, Node};
use crate::lower::{FileData, find};
use crate::sys;
use crate::upper;

impl Overlay {
    /// True if the directory's lower content has `name` (so deleting it
    /// needs a whiteout).
    pub(super) fn lower_has(&self, t: &Tables, dir: u64, name: &[u8]) -> R<bool> {
        let Some(lp) = Self::node(t, dir)?
            .dir
            .as_ref()
            .and_then(|d| d.lower.clone())
        else {
            return Ok(false);
        };
        Ok(self.lower_entry(&lp, name)?.is_some())
    }

    /// The entry `name` of the lower directory at `dir`, if any.
    fn lower_entry(&self, dir: &[u8], name: &[u8]) -> R<Option<Entry>> {
        let Some(Entry {
            kind: EntryKind::Dir { tree },
            ..
        }) = self.lower.resolve(dir).map_err(store_err)?
        else {
            return Ok(None);
        };
        let tree = self.lower.tree(&tree).map_err(store_err)?;
        Ok(find(&tree, name).cloned())
    }

    /// The content of a regular file in the store, by lower path (a hard
    /// link is followed to its first name).
    pub(super) fn lower_file(&self, path: &[u8]) -> R<Arc<FileData>> {
        let bad = |what: &str| {
            store_err(format!(
                "{} in the mounted commit {what}",
                String::from_utf8_lossy(path)
            ))
        };
        let e = self.lower.resolve(path).map_err(store_err)?;
        let e = match e {
            Some(Entry {
                kind: EntryKind::HardLink { target },
                ..
            }) => self.lower.resolve(&target).map_err(store_err)?,
            e => e,
        };
        match e {
            Some(Entry {
                kind: EntryKind::File { size, extents },
                ..
            }) => Ok(Arc::new(FileData::new(size, extents))),
            Some(_) => Err(bad("is not a regular file")),
            None => Err(bad("does not exist")),
        }
    }

    fn lower_node(&self, t: &mut Tables, parent: u64, e: &Entry, path: Vec<u8>) -> R<u64> {
        let plain = |kind: LowerKind, ftype: u32, dir: Option<DirInfo>| {
            let mut n = Node::new(parent, e.name.clone(), ftype);
            n.lower = Some(LowerInfo {
                kind,
                meta: e.meta.clone(),
                nlink: 1,
            });
            n.dir = dir;
            n
        };
        let node = match &e.kind {
            EntryKind::Dir { .. } => plain(
                LowerKind::Dir,
                libc::S_IFDIR,
                Some(DirInfo {
                    lower: Some(path),
                    ..Default::default()
                }),
            ),
            EntryKind::File { size, extents } => {
                if let Some(group) = self.lower.group(&path) {
                    let data = Arc::new(FileData::new(*size, extents.clone()));
                    return self.keyed(t, parent, &e.name, path, group.len(), || {
                        Ok((data, e.meta.clone()))
                    });
                }
                plain(
                    LowerKind::File(Arc::new(FileData::new(*size, extents.clone()))),
                    libc::S_IFREG,
                    None,
                )
            }
            EntryKind::HardLink { target } => {
                let n = self.lower.group(target).map_or(1, |g| g.len());
                return self.keyed(t, parent, &e.name, target.clone(), n, || {
                    match self.lower.resolve(target).map_err(store_err)? {
                        Some(Entry {
                            kind: EntryKind::File { size, extents },
                            meta,
                            ..
                        }) => Ok((Arc::new(FileData::new(size, extents)), meta)),
                        _ => Err(store_err(format!(
                            "hard link {} points at {}, which is not a file",
                            String::from_utf8_lossy(&path),
                            String::from_utf8_lossy(target)
                        ))),
                    }
                });
            }
            EntryKind::Symlink { target } => {
                plain(LowerKind::Symlink(target.clone()), libc::S_IFLNK, None)
            }
            EntryKind::CharDev { major, minor } => {
                plain(LowerKind::Char(*major, *minor), libc::S_IFCHR, None)
            }
            EntryKind::BlockDev { major, minor } => {
                plain(LowerKind::Block(*major, *minor), libc::S_IFBLK, None)
            }
            EntryKind::Fifo => plain(LowerKind::Fifo, libc::S_IFIFO, None),
        };
        Ok(Self::new_node(t, node))
    }

    /// The one node of a lower hard-link group, made on first sight.
    fn keyed(
        &self,
        t: &mut Tables,
        parent: u64,
        name: &[u8],
        key: Vec<u8>,
        nlink: usize,
        data: impl FnOnce() -> R<(Arc<FileData>, vnfs_store::Meta)>,
    ) -> R<u64> {
        if let Some(&ino) = t.link_keys.get(&key) {
            let n = Self::node_mut(t, ino)?;
            // Once copied up, the group's names were linked in the upper
            // layer; a name met here was not reachable then (moved by a
            // directory rename) and gets its own inode.
            if n.lower.is_some() {
                let known = (n.parent == parent && n.name == name)
                    || n.more_names.iter().any(|(p, m)| *p == parent && m == name);
                if !known {
                    n.more_names.push((parent, name.to_vec()));
                }
                return Ok(ino);
            }
        }
        let (data, meta) = data()?;
        let mut n = Node::new(parent, name.to_vec(), libc::S_IFREG);
        n.lower = Some(LowerInfo {
            kind: LowerKind::File(data),
            meta,
            nlink: nlink as u32,
        });
        n.link_key = Some(key.clone());
        let ino = Self::new_node(t, n);
        t.link_keys.entry(key).or_insert(ino);
        Ok(ino)
    }

    /// The node of an upper entry at `path` (`st` its lstat): an existing
    /// node for another name of a hard-linked file, else a new one.
    fn upper_node(
        &self,
        t: &mut Tables,
        parent: u64,
        name: &[u8],
        path: &Path,
        st: &libc::stat,
    ) -> R<u64> {
        let ftype = st.st_mode & libc::S_IFMT;
        let key = (st.st_dev, st.st_ino);
        let linked = ftype == libc::S_IFREG && st.st_nlink > 1;
        if linked && let Some(&other) = t.upper_links.get(&key) {
            let n = Self::node_mut(t, other)?;
            if n.unlinked {
                // The names it was known by are gone, this one is not.
                n.unlinked = false;
                n.parent = parent;
                n.name = name.to_vec();
                if let Some(o) = t.orphans.remove(&other) {
                    let _ = fs::remove_file(o);
                }
                return Ok(other);
            }
            let known = (n.parent == parent && n.name == name)
                || n.more_names.iter().any(|(p, m)| *p == parent && m == name);
            if !known {
                n.more_names.push((parent, name.to_vec()));
            }
            return Ok(other);
        }
        let mut n = Node::new(parent, name.to_vec(), ftype);
        if ftype == libc::S_IFDIR {
            n.dir = Some(DirInfo {
                lower: upper::redirect_of(path).map_err(io_err)?,
                ..Default::default()
            });
        } else if ftype == libc::S_IFREG
            && let Some(src) = upper::metacopy_of(path).map_err(io_err)?
        {
            n.data = Some(self.lower_file(&src)?);
        }
        n.upper_linked = linked;
        let ino = Self::new_node(t, n);
        if linked {
            t.upper_links.insert(key, ino);
        }
        Ok(ino)
    }

    /// Finds one name of a directory whose listing is not complete.
    fn find_one(&self, t: &mut Tables, dir: u64, name: &[u8]) -> R<Option<u64>> {
        let n = Self::node(t, dir)?;
        let lower_dir = n.dir.as_ref().and_then(|d| d.lower.clone());
        if n.is_upper() {
            let path = self.child_path(t, dir, name)?;
            if let Some(st) = lstat_opt(&path)? {
                if sys::is_whiteout(&st) {
                    return Ok(None);
                }
                return self.upper_node(t, dir, name, &path, &st).map(Some);
            }
        }
        let Some(lp) = lower_dir else {
            return Ok(None);
        };
        match self.lower_entry(&lp, name)? {
            Some(e) => self.lower_node(t, dir, &e, join(&lp, name)).map(Some),
            None => Ok(None),
        }
    }

    /// Makes a directory's child map complete: every entry gets a node.
    pub(super) fn load(&self, t: &mut Tables, ino: u64) -> R<()> {
        let node = Self::node(t, ino)?;
        let Some(dir) = &node.dir else {
            return Err(libc::ENOTDIR);
        };
        if dir.complete {
            return Ok(());
        }
        let lower_path = dir.lower.clone();
        let mut shadowed = HashSet::new();
        if node.is_upper() {
            let path = self.path_of(t, ino)?;
            let rd = fs::read_dir(&path).map_err(|e| {
                tracing::error!("{}: {e}", path.display());
                io_err(e)
            })?;
            for de in rd {
                let de = de.map_err(io_err)?;
                let name = de.file_name().as_bytes().to_vec();
                shadowed.insert(name.clone());
                if Self::children(t, ino)?.contains_key(&name) {
                    continue;
                }
                let cp = path.join(de.file_name());
                let Some(st) = lstat_opt(&cp)? else { continue };
                if sys::is_whiteout(&st) {
                    continue;
                }
                let child = self.upper_node(t, ino, &name, &cp, &st)?;
                Self::children_mut(t, ino)?.insert(name, child);
            }
        }
        if let Some(lp) = lower_path
            && let Some(Entry {
                kind: EntryKind::Dir { tree },
                ..
            }) = self.lower.resolve(&lp).map_err(store_err)?
        {
            let tree = self.lower.tree(&tree).map_err(store_err)?;
            for e in &tree.entries {
                if shadowed.contains(&e.name) || Self::children(t, ino)?.contains_key(&e.name) {
                    continue;
                }
                let child = self.lower_node(t, ino, e, join(&lp, &e.name))?;
                Self::children_mut(t, ino)?.insert(e.name.clone(), child);
            }
        }
        if let Some(d) = Self::node_mut(t, ino)?.dir.as_mut() {
            d.complete = true;
        }
        Ok(())
    }

    /// The node of `name` in directory `parent`, found (and made) on demand.
    pub(super) fn child(&self, t: &mut Tables, parent: u64, name: &[u8]) -> R<Option<u64>> {
        let dir = Self::node(t, parent)?.dir.as_ref().ok_or(libc::ENOTDIR)?;
        if let Some(&c) = dir.children.get(name) {
            return Ok(Some(c));
        }
        if dir.complete {
            return Ok(None);
        }
        let found = self.find_one(t, parent, name)?;
        if let Some(c) = found {
            Self::children_mut(t, parent)?.insert(name.to_vec(), c);
        }
        Ok(found)
    }

    pub(super) fn children(t: &Tables, dir: u64) -> R<&std::collections::BTreeMap<Vec<u8>, u64>> {
        Self::node(t, dir)?
            .dir
            .as_ref()
            .map(|d| &d.children)
            .ok_or(libc::ENOTDIR)
    }

    pub(super) fn children_mut(
        t: &mut Tables,
        dir: u64,
    ) -> R<&mut std::collections::BTreeMap<Vec<u8>, u64>> {
        Self::node_mut(t, dir)?
            .dir
            .as_mut()
            .map(|d| &mut d.children)
            .ok_or(libc::ENOTDIR)
    }

    pub(super) fn is_empty_dir(&self, t: &mut Tables, ino: u64) -> R<bool> {
        self.load(t, ino)?;
        Ok(Self::children(t, ino)?.is_empty())
    }

    /// Resolves a root-relative path in the merged view.
    pub(super) fn resolve(&self, t: &mut Tables, path: &[u8]) -> R<Option<u64>> {
        let mut cur = ROOT;
        for comp in path.split(|&b| b == b'/') {
            if Self::node(t, cur)?.dir.is_none() {
                return Ok(None);
            }
            match self.child(t, cur, comp)? {
                Some(c) => cur = c,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }
}
