//! Copy-up: bringing a store entry into the upper layer before it changes.
//! Directories, symlinks and special files carry only metadata anyway; a
//! regular file is copied metadata-only (content left in the store) unless
//! its data is about to change.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use super::{Overlay, R, ROOT, Tables, io_err, join, lstat_opt};
use crate::inode::LowerKind;
use crate::lower::FileData;
use crate::sys;
use crate::upper::{self, METACOPY, REDIRECT};

/// How much of an entry a copy-up brings into the upper layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Up {
    /// Metadata only: a regular file's content stays in the store.
    Meta,
    /// Content too, the first `keep` bytes when given (a truncation needs
    /// no more).
    Data(Option<u64>),
}

/// The access and modification times of an upper directory, taken before
/// a copy-up adds an entry to it.
struct ParentTimes {
    dir: std::path::PathBuf,
    atime: (i64, u32),
    mtime: (i64, u32),
}

impl ParentTimes {
    /// The times of the directory that holds `entry`.
    fn of(entry: &std::path::Path) -> R<ParentTimes> {
        let dir = entry.parent().ok_or(libc::EINVAL)?.to_path_buf();
        let st = sys::lstat(&dir).map_err(io_err)?;
        let ns = |n: i64| n.clamp(0, 999_999_999) as u32;
        Ok(ParentTimes {
            atime: (st.st_atime, ns(st.st_atime_nsec)),
            mtime: (st.st_mtime, ns(st.st_mtime_nsec)),
            dir,
        })
    }

    /// Puts the times back. A failure is logged, not returned: the entry
    /// is in place by then, and the times only decide whether a commit
    /// lists the directory as changed.
    fn restore(&self) {
        if let Err(e) = sys::utimens(&self.dir, Some(Some(self.atime)), Some(Some(self.mtime))) {
            tracing::warn!("restoring the times of {}: {e}", self.dir.display());
        }
    }
}

impl Overlay {
    /// Writes the first `len` bytes of `data` into `f` (holes stay holes).
    fn write_content(&self, f: &File, data: &FileData, len: u64) -> io::Result<()> {
        let mut at = 0u64;
        for x in data.extents() {
            if at >= len {
                break;
            }
            let take = x.len().min(len - at);
            if let vnfs_store::Extent::Data { .. } = x {
                let bytes = self
                    .lower
                    .read(data, at, take as usize)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                f.write_all_at(&bytes, at)?;
            }
            at += take;
        }
        f.set_len(len)
    }

    /// The lower path that holds a lower file node's content.
    fn lower_source(t: &Tables, parent: u64, name: &[u8], key: Option<&[u8]>) -> Option<Vec<u8>> {
        if let Some(k) = key {
            return Some(k.to_vec());
        }
        // A lower node never moves (rename copies it up first), so its
        // source is its parent's lower directory plus its name.
        let dir = t.nodes.get(&parent)?.dir.as_ref()?.lower.as_ref()?;
        Some(join(dir, name))
    }

    /// Copies a node (and its parents) into the upper layer, or fills in
    /// the content of a metadata-only copy when `up` asks for data.
    pub(super) fn copy_up(&self, t: &mut Tables, ino: u64, up: Up) -> R<()> {
        let n = Self::node(t, ino)?;
        let Some(info) = n.lower.clone() else {
            return match up {
                Up::Data(keep) if n.data.is_some() => self.fill(t, ino, keep),
                _ => Ok(()),
            };
        };
        if n.unlinked {
            return Err(libc::ENOENT);
        }
        let (parent, name, key) = (n.parent, n.name.clone(), n.link_key.clone());
        let redirect = n.dir.as_ref().and_then(|d| d.lower.clone());
        // Metadata-only for a non-empty file whose data is not changing.
        let meta_only = match (&info.kind, up) {
            (LowerKind::File(d), Up::Meta) if d.size > 0 => {
                Self::lower_source(t, parent, &name, key.as_deref())
            }
            _ => None,
        };
        // The other names of a lower hard link, found before anything
        // changes, so they are linked to the copy and stay one inode.
        let mut others = Vec::new();
        if let Some(k) = &key
            && let Some(group) = self.lower.group(k)
        {
            for p in group.iter() {
                let (dir, base) = match p.iter().rposition(|&b| b == b'/') {
                    Some(i) => (&p[..i], &p[i + 1..]),
                    None => (&p[..0], &p[..]),
                };
                let dino = if dir.is_empty() {
                    Some(ROOT)
                } else {
                    self.resolve(t, dir)?
                };
                if let Some(d) = dino
                    && (d, base) != (parent, name.as_slice())
                    && self.child(t, d, base)? == Some(ino)
                {
                    others.push((d, base.to_vec()));
                }
            }
        }
        self.copy_up(t, parent, Up::Meta)?;
        let dst = self.child_path(t, parent, &name)?;
        // Bringing an entry up is not a change of its directory: as
        // overlayfs does, the directory's times are put back afterwards,
        // so a commit does not record edits nobody made.
        let times = ParentTimes::of(&dst)?;
        let tmp = self.layout.tmp();
        let made = (|| -> io::Result<()> {
            match &info.kind {
                LowerKind::Dir => {
                    fs::create_dir(&tmp)?;
                    if let Some(r) = &redirect {
                        sys::set_xattr(&tmp, REDIRECT, &upper::encode_redirect(r), 0)?;
                    }
                }
                LowerKind::File(data) => {
                    let f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&tmp)?;
                    match &meta_only {
                        Some(src) => {
                            // Sparse: the right size, no blocks.
                            f.set_len(data.size)?;
                            sys::set_xattr(&tmp, METACOPY, &upper::encode_redirect(src), 0)?;
                        }
                        None => {
                            let len = match up {
                                Up::Data(Some(k)) => k.min(data.size),
                                _ => data.size,
                            };
                            self.write_content(&f, data, len)?;
                        }
                    }
                }
                LowerKind::Symlink(target) => sys::symlink(target, &tmp)?,
                LowerKind::Char(ma, mi) => {
                    sys::mknod(&tmp, libc::S_IFCHR | 0o600, sys::make_dev(*ma, *mi))?
                }
                LowerKind::Block(ma, mi) => {
                    sys::mknod(&tmp, libc::S_IFBLK | 0o600, sys::make_dev(*ma, *mi))?
                }
                LowerKind::Fifo => sys::mknod(&tmp, libc::S_IFIFO | 0o600, 0)?,
            }
            let symlink = matches!(info.kind, LowerKind::Symlink(_));
            upper::apply_meta(&tmp, &info.meta, symlink)?;
            sys::rename2(&tmp, &dst, libc::RENAME_NOREPLACE)
        })();
        if let Err(e) = made {
            tracing::error!("copy-up of {}: {e}", dst.display());
            let _ = fs::remove_file(&tmp).or_else(|_| fs::remove_dir(&tmp));
            return Err(io_err(e));
        }
        times.restore();
        let mut linked = Vec::new();
        for (d, base) in others {
            self.copy_up(t, d, Up::Meta)?;
            let p = self.child_path(t, d, &base)?;
            let times = ParentTimes::of(&p)?;
            fs::hard_link(&dst, &p).map_err(|e| {
                tracing::error!("linking {} to {}: {e}", p.display(), dst.display());
                io_err(e)
            })?;
            times.restore();
            linked.push((d, base));
        }
        let multi = !linked.is_empty();
        if multi && let Some(st) = lstat_opt(&dst)? {
            t.upper_links.insert((st.st_dev, st.st_ino), ino);
        }
        let n = Self::node_mut(t, ino)?;
        n.lower = None;
        n.upper_linked |= multi;
        if meta_only.is_some()
            && let LowerKind::File(data) = info.kind
        {
            n.data = Some(data);
        }
        if key.is_some() {
            n.more_names = linked;
        }
        Ok(())
    }

    /// Fills in the content of a metadata-only copy, in place (its other
    /// hard-linked names see it too). The attribute naming the store
    /// content goes last, so a crash before it leaves a valid metadata-only
    /// copy.
    fn fill(&self, t: &mut Tables, ino: u64, keep: Option<u64>) -> R<()> {
        let n = Self::node(t, ino)?;
        let Some(data) = n.data.clone() else {
            return Ok(());
        };
        // An unlinked node is filled through its orphan.
        let path = self.path_of(t, ino)?;
        let done = (|| -> io::Result<()> {
            let st = sys::lstat(&path)?;
            // Writing drops setuid bits and capabilities: put them back.
            let meta = upper::read_meta(&path, &st)?;
            let f = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)?;
            let len = keep.unwrap_or(data.size).min(data.size);
            self.write_content(&f, &data, len)?;
            drop(f);
            upper::apply_meta(&path, &meta, false)?;
            sys::remove_xattr(&path, METACOPY)
        })();
        if let Err(e) = done {
            tracing::error!("filling in {}: {e}", path.display());
            return Err(io_err(e));
        }
        Self::node_mut(t, ino)?.data = None;
        Ok(())
    }

    /// Copies up the lower hard-link groups with a name under `lower_dir`,
    /// before that directory moves (their link targets are paths).
    pub(super) fn copy_up_links_under(&self, t: &mut Tables, ino: u64) -> R<()> {
        let Some(lp) = Self::node(t, ino)?
            .dir
            .as_ref()
            .and_then(|d| d.lower.clone())
        else {
            return Ok(());
        };
        for target in self.lower.groups_touching(&lp) {
            let node = match t.link_keys.get(&target) {
                Some(&n) => Some(n),
                None => self.resolve(t, &target)?,
            };
            if let Some(n) = node
                && Self::node(t, n)?.link_key.as_deref() == Some(target.as_slice())
            {
                self.copy_up(t, n, Up::Meta)?;
            }
        }
        Ok(())
    }
}
