//! The merged namespace: lower entries from the store, upper entries from
//! disk, and every namespace operation with the errno a Linux file system
//! would give. All of it runs under one mutex; the slow parts of reads and
//! writes (chunk decompression, data I/O) run outside it in `ops`.
//! `load` finds entries, `copyup` brings them into the upper layer,
//! `forget` frees nodes the kernel no longer holds.

mod copyup;
mod forget;
mod load;

use copyup::Up;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::inode::{self, DirInfo, LowerInfo, LowerKind, Node};
use crate::lower::{FileData, Lower};
use crate::sys;
use crate::upper::{self, Layout, REDIRECT};
use fuser::FileAttr;

/// An errno value.
pub type Errno = i32;
/// Result of a file-system operation.
pub type R<T> = std::result::Result<T, Errno>;

/// The root directory's inode number.
pub const ROOT: u64 = 1;
/// Longest name accepted, as on ext4.
pub const NAME_MAX: usize = 255;
/// Kernel cache time for entries that still come from the store (immutable).
pub const LOWER_TTL: Duration = Duration::from_secs(3600);
/// Kernel cache time for upper entries.
pub const UPPER_TTL: Duration = Duration::from_secs(1);

/// The errno of an I/O error (EIO when it has none).
pub fn errno(e: &io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn io_err(e: io::Error) -> Errno {
    errno(&e)
}

/// What a create-like operation makes.
pub enum NewKind<'a> {
    /// A regular file with these permission bits.
    File(u32),
    /// A directory.
    Dir(u32),
    /// A symlink to this target.
    Symlink(&'a [u8]),
    /// A device, FIFO or socket: full mode (type bits included) and FUSE rdev.
    Special(u32, u32),
}

/// Who asks (for the owner of new entries).
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

struct Tables {
    nodes: HashMap<u64, Node>,
    next: u64,
    /// Lower hard-link group (first path) → its node.
    link_keys: HashMap<Vec<u8>, u64>,
    /// Upper (st_dev, st_ino) of multiply-linked files → node.
    upper_links: HashMap<(u64, u64), u64>,
    /// Upper files whose last name was removed while the kernel still held
    /// them (maybe open): kept under `work/` until the node is freed, so
    /// fstat, fchmod and reads through /proc/PID/fd keep working.
    orphans: HashMap<u64, PathBuf>,
}

/// The merged view of one mount.
pub struct Overlay {
    /// The mounted commit.
    pub lower: Arc<Lower>,
    /// Where the upper layer lives.
    pub layout: Layout,
    t: Mutex<Tables>,
}

type T<'a> = MutexGuard<'a, Tables>;

fn store_err(e: impl std::fmt::Display) -> Errno {
    tracing::error!("{e}");
    libc::EIO
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() {
        return b.to_vec();
    }
    let mut v = a.to_vec();
    v.push(b'/');
    v.extend_from_slice(b);
    v
}

fn check_name(name: &[u8]) -> R<()> {
    if name.len() > NAME_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
        return Err(libc::EINVAL);
    }
    Ok(())
}

fn lstat_opt(p: &std::path::Path) -> R<Option<libc::stat>> {
    match sys::lstat(p) {
        Ok(st) => Ok(Some(st)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(e)),
    }
}

impl Overlay {
    /// A view of `lower` with edits in `layout`. Creates the upper root
    /// (with the image root's metadata) on first use; an existing upper
    /// layer is resumed as it is.
    pub fn new(lower: Arc<Lower>, layout: Layout) -> io::Result<Overlay> {
        let up = layout.upper();
        fs::create_dir_all(layout.work())?;
        // What a server that died left in work/: half-made entries and
        // orphans nothing can reach any more.
        for e in fs::read_dir(layout.work())? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                upper::remove_tree(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
        }
        if fs::symlink_metadata(&up).is_err() {
            let tmp = layout.tmp();
            fs::create_dir(&tmp)?;
            sys::set_xattr(&tmp, REDIRECT, b"/", 0)?;
            upper::apply_meta(&tmp, &lower.commit.root.meta, false)?;
            fs::rename(&tmp, &up)?;
        }
        let mut nodes = HashMap::new();
        let mut root = Node::new(ROOT, Vec::new(), libc::S_IFDIR);
        root.dir = Some(DirInfo {
            lower: upper::redirect_of(&up)?,
            ..Default::default()
        });
        // The kernel holds the root from mount to unmount without counting it.
        root.nlookup = 1;
        nodes.insert(ROOT, root);
        Ok(Overlay {
            lower,
            layout,
            t: Mutex::new(Tables {
                nodes,
                next: ROOT + 1,
                link_keys: HashMap::new(),
                upper_links: HashMap::new(),
                orphans: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> T<'_> {
        self.t.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn node(t: &Tables, ino: u64) -> R<&Node> {
        t.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(t: &mut Tables, ino: u64) -> R<&mut Node> {
        t.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn new_node(t: &mut Tables, node: Node) -> u64 {
        let ino = t.next;
        t.next += 1;
        t.nodes.insert(ino, node);
        ino
    }

    /// Upper path of a node's first name (for a node with no name left,
    /// its orphan under `work/`, if it has one).
    fn path_of(&self, t: &Tables, ino: u64) -> R<PathBuf> {
        if Self::node(t, ino)?.unlinked {
            return t.orphans.get(&ino).cloned().ok_or(libc::ENOENT);
        }
        let mut names = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let n = Self::node(t, cur)?;
            names.push(n.name.as_slice());
            cur = n.parent;
            if names.len() > 4096 {
                return Err(libc::ELOOP);
            }
        }
        let mut p = self.layout.upper();
        for n in names.iter().rev() {
            p.push(OsStr::from_bytes(n));
        }
        Ok(p)
    }

    fn child_path(&self, t: &Tables, parent: u64, name: &[u8]) -> R<PathBuf> {
        Ok(self.path_of(t, parent)?.join(OsStr::from_bytes(name)))
    }

    fn attr_of(&self, t: &Tables, ino: u64, fd: Option<&File>) -> R<(FileAttr, Duration)> {
        let n = Self::node(t, ino)?;
        if let Some(l) = &n.lower {
            return Ok((inode::lower_attr(ino, l), LOWER_TTL));
        }
        let st = match fd {
            Some(f) => sys::fstat(std::os::fd::AsRawFd::as_raw_fd(f)).map_err(io_err)?,
            None => sys::lstat(&self.path_of(t, ino)?).map_err(io_err)?,
        };
        let mut attr = inode::upper_attr(ino, &st);
        if n.unlinked {
            // Its orphan link under work/ does not count.
            attr.nlink = 0;
        }
        if let Some(d) = &n.data {
            // The sparse upper file has no blocks; the content has.
            attr.blocks = d.size.div_ceil(512);
        }
        Ok((attr, UPPER_TTL))
    }

    /// Attributes and cache time of a node (`fd`: an open upper file).
    pub fn getattr(&self, ino: u64, fd: Option<&File>) -> R<(FileAttr, Duration)> {
        let t = self.lock();
        self.attr_of(&t, ino, fd)
    }

    /// Looks a name up; the kernel counts the entry it receives.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> R<(FileAttr, Duration)> {
        if name.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        let mut t = self.lock();
        let ino = self.child(&mut t, parent, name)?.ok_or(libc::ENOENT)?;
        let r = self.attr_of(&t, ino, None)?;
        Self::counted(&mut t, ino);
        Ok(r)
    }

    /// The directory's entries: (name, inode, file type bits).
    pub fn list(&self, ino: u64) -> R<Vec<(Vec<u8>, u64, u32)>> {
        let mut t = self.lock();
        self.load(&mut t, ino)?;
        let n = Self::node(&t, ino)?;
        let parent = n.parent;
        let mut out = vec![
            (b".".to_vec(), ino, libc::S_IFDIR),
            (b"..".to_vec(), parent, libc::S_IFDIR),
        ];
        if let Some(d) = n.dir.as_ref() {
            for (name, &child) in &d.children {
                let ft = t.nodes.get(&child).map_or(libc::S_IFREG, |n| n.ftype);
                out.push((name.clone(), child, ft));
            }
        }
        Ok(out)
    }

    /// Entries for readdirplus, looked up by name (a node listed at
    /// opendir may have been freed since). Each entry but `.` and `..` is
    /// counted as a lookup: the caller gives back, with `forget_many`, the
    /// ones it could not send.
    pub fn lookup_listed(&self, dir: u64, names: &[&[u8]]) -> Vec<R<(FileAttr, Duration)>> {
        let mut t = self.lock();
        names
            .iter()
            .map(|&name| {
                let ino = match name {
                    b"." => return self.attr_of(&t, dir, None),
                    b".." => {
                        let p = Self::node(&t, dir)?.parent;
                        return self.attr_of(&t, p, None);
                    }
                    _ => self.child(&mut t, dir, name)?.ok_or(libc::ENOENT)?,
                };
                let r = self.attr_of(&t, ino, None)?;
                Self::counted(&mut t, ino);
                Ok(r)
            })
            .collect()
    }

    /// A symlink's target.
    pub fn readlink(&self, ino: u64) -> R<Vec<u8>> {
        let t = self.lock();
        let n = Self::node(&t, ino)?;
        match &n.lower {
            Some(LowerInfo {
                kind: LowerKind::Symlink(target),
                ..
            }) => Ok(target.clone()),
            Some(_) => Err(libc::EINVAL),
            None => sys::readlink(&self.path_of(&t, ino)?).map_err(io_err),
        }
    }

    fn whiteout_at(&self, path: &std::path::Path) -> R<()> {
        let tmp = self.layout.tmp();
        sys::make_whiteout(&tmp).map_err(io_err)?;
        sys::rename2(&tmp, path, 0).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(e)
        })
    }

    /// Puts `tmp` at `dst`, replacing a whiteout there.
    fn place(&self, tmp: &std::path::Path, dst: &std::path::Path, is_dir: bool) -> R<()> {
        if is_dir && lstat_opt(dst)?.is_some() {
            fs::remove_file(dst).map_err(io_err)?;
        }
        sys::rename2(tmp, dst, 0).map_err(io_err)
    }

    /// Creates a file, directory, symlink or special file. For a file the
    /// new upper file is returned open for reading and writing.
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        kind: NewKind<'_>,
        who: Caller,
    ) -> R<(FileAttr, Duration, Option<File>)> {
        check_name(name)?;
        let mut t = self.lock();
        if self.child(&mut t, parent, name)?.is_some() {
            return Err(libc::EEXIST);
        }
        self.copy_up(&mut t, parent, Up::Meta)?;
        let ppath = self.path_of(&t, parent)?;
        let pst = sys::lstat(&ppath).map_err(io_err)?;
        let sgid = pst.st_mode & libc::S_ISGID != 0;
        let gid = if sgid { pst.st_gid } else { who.gid };
        let dst = ppath.join(OsStr::from_bytes(name));
        let tmp = self.layout.tmp();
        let mut file = None;
        let (ftype, is_dir) = match kind {
            NewKind::File(mode) => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(io_err)?;
                std::os::unix::fs::fchown(&f, Some(who.uid), Some(gid)).map_err(io_err)?;
                f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(io_err)?;
                file = Some(f);
                (libc::S_IFREG, false)
            }
            NewKind::Dir(mode) => {
                fs::create_dir(&tmp).map_err(io_err)?;
                sys::lchown(&tmp, who.uid, gid).map_err(io_err)?;
                let m = (mode & 0o7777) | if sgid { libc::S_ISGID } else { 0 };
                sys::chmod(&tmp, m).map_err(io_err)?;
                (libc::S_IFDIR, true)
            }
            NewKind::Symlink(target) => {
                sys::symlink(target, &tmp).map_err(io_err)?;
                sys::lchown(&tmp, who.uid, gid).map_err(io_err)?;
                (libc::S_IFLNK, false)
            }
            NewKind::Special(mode, rdev) => {
                let ft = mode & libc::S_IFMT;
                let (ma, mi) = sys::decode_dev(rdev);
                if ft == libc::S_IFCHR && ma == 0 && mi == 0 {
                    // 0:0 is how the upper layer records a deletion.
                    return Err(libc::EPERM);
                }
                let dev = if ft == libc::S_IFCHR || ft == libc::S_IFBLK {
                    sys::make_dev(ma, mi)
                } else {
                    0
                };
                sys::mknod(&tmp, ft | 0o600, dev).map_err(io_err)?;
                sys::lchown(&tmp, who.uid, gid).map_err(io_err)?;
                sys::chmod(&tmp, mode & 0o7777).map_err(io_err)?;
                (ft, false)
            }
        };
        if let Err(e) = self.place(&tmp, &dst, is_dir) {
            let _ = fs::remove_file(&tmp).or_else(|_| fs::remove_dir(&tmp));
            return Err(e);
        }
        let mut node = Node::new(parent, name.to_vec(), ftype);
        node.dir = is_dir.then(|| DirInfo {
            lower: None,
            children: BTreeMap::new(),
            complete: true,
        });
        // The kernel counts the entry it is given.
        node.nlookup = 1;
        let ino = Self::new_node(&mut t, node);
        Self::children_mut(&mut t, parent)?.insert(name.to_vec(), ino);
        let (attr, ttl) = self.attr_of(&t, ino, file.as_ref())?;
        Ok((attr, ttl, file))
    }

    /// Makes `newname` in `newparent` another name of `ino`.
    pub fn link(&self, ino: u64, newparent: u64, newname: &[u8]) -> R<(FileAttr, Duration)> {
        check_name(newname)?;
        let mut t = self.lock();
        if Self::node(&t, ino)?.is_dir() {
            return Err(libc::EPERM);
        }
        if self.child(&mut t, newparent, newname)?.is_some() {
            return Err(libc::EEXIST);
        }
        self.copy_up(&mut t, ino, Up::Meta)?;
        self.copy_up(&mut t, newparent, Up::Meta)?;
        let src = self.path_of(&t, ino)?;
        let dst = self.child_path(&t, newparent, newname)?;
        if lstat_opt(&dst)?.is_some() {
            let tmp = self.layout.tmp();
            fs::hard_link(&src, &tmp).map_err(io_err)?;
            self.place(&tmp, &dst, false)?;
        } else {
            fs::hard_link(&src, &dst).map_err(io_err)?;
        }
        let st = sys::lstat(&dst).map_err(io_err)?;
        t.upper_links.insert((st.st_dev, st.st_ino), ino);
        let n = Self::node_mut(&mut t, ino)?;
        n.more_names.push((newparent, newname.to_vec()));
        n.upper_linked = true;
        Self::children_mut(&mut t, newparent)?.insert(newname.to_vec(), ino);
        let r = self.attr_of(&t, ino, None)?;
        Self::counted(&mut t, ino);
        Ok(r)
    }

    /// Before a name of `ino` at upper `path` is removed: whether the upper
    /// inode keeps other names, and if not while the kernel still holds
    /// the node (maybe open), a second link under `work/` that keeps the
    /// inode reachable.
    fn removing(&self, t: &Tables, ino: u64, path: &std::path::Path) -> R<Removal> {
        let n = Self::node(t, ino)?;
        if !n.is_upper() || n.is_dir() {
            return Ok(Removal::default());
        }
        let Some(st) = lstat_opt(path)?.filter(|st| !sys::is_whiteout(st)) else {
            return Ok(Removal::default());
        };
        if st.st_nlink > 1 {
            return Ok(Removal {
                others: true,
                orphan: None,
            });
        }
        if n.nlookup == 0 {
            return Ok(Removal::default());
        }
        let orphan = self.layout.work().join(format!("orphan-{ino}"));
        fs::hard_link(path, &orphan).map_err(|e| {
            tracing::error!("keeping {} as {}: {e}", path.display(), orphan.display());
            io_err(e)
        })?;
        Ok(Removal {
            others: false,
            orphan: Some(orphan),
        })
    }

    /// Forgets one name of a node (after it was unlinked or replaced); a
    /// node left with no name and no kernel reference is freed.
    fn drop_name(t: &mut Tables, ino: u64, parent: u64, name: &[u8], gone: Removal) {
        if let Some(n) = t.nodes.get_mut(&ino) {
            if n.parent == parent && n.name == name {
                if n.more_names.is_empty() {
                    n.unlinked = true;
                } else {
                    let (p, m) = n.more_names.remove(0);
                    n.parent = p;
                    n.name = m;
                }
            } else {
                n.more_names.retain(|(p, m)| !(*p == parent && m == name));
            }
            if let Some(l) = n.lower.as_mut() {
                l.nlink = l.nlink.saturating_sub(1).max(1);
            }
            let (unlinked, nlookup) = (n.unlinked, n.nlookup);
            if let Some(o) = gone.orphan {
                if unlinked {
                    t.orphans.insert(ino, o);
                } else {
                    let _ = fs::remove_file(o);
                }
            }
            if unlinked && !gone.others {
                // The upper inode is gone (or only an orphan): its number
                // may be reused by a new file, which must not find this node.
                t.upper_links.retain(|_, v| *v != ino);
            }
            if unlinked && nlookup == 0 {
                // Only the node: its directory is in use by this very
                // operation.
                Self::free_tree(t, ino);
            }
        }
    }

    fn rename_name(t: &mut Tables, ino: u64, from: (u64, &[u8]), to: (u64, &[u8])) {
        if let Some(n) = t.nodes.get_mut(&ino) {
            if n.parent == from.0 && n.name == from.1 {
                n.parent = to.0;
                n.name = to.1.to_vec();
            } else if let Some(slot) = n
                .more_names
                .iter_mut()
                .find(|(p, m)| *p == from.0 && m == from.1)
            {
                *slot = (to.0, to.1.to_vec());
            }
        }
    }

    /// Removes a non-directory name.
    pub fn unlink(&self, parent: u64, name: &[u8]) -> R<()> {
        let mut t = self.lock();
        let ino = self.child(&mut t, parent, name)?.ok_or(libc::ENOENT)?;
        let n = Self::node(&t, ino)?;
        if n.is_dir() {
            return Err(libc::EISDIR);
        }
        if n.link_key.is_some() && n.lower.is_some() {
            // Keep the group's other names one inode with the right count.
            self.copy_up(&mut t, ino, Up::Meta)?;
        }
        let upper = Self::node(&t, ino)?.is_upper();
        let in_lower = self.lower_has(&t, parent, name)?;
        self.copy_up(&mut t, parent, Up::Meta)?;
        let path = self.child_path(&t, parent, name)?;
        let gone = self.removing(&t, ino, &path)?;
        if in_lower {
            self.whiteout_at(&path)?;
        } else if upper {
            fs::remove_file(&path).map_err(io_err)?;
        }
        Self::children_mut(&mut t, parent)?.remove(name);
        Self::drop_name(&mut t, ino, parent, name, gone);
        Ok(())
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, parent: u64, name: &[u8]) -> R<()> {
        let mut t = self.lock();
        let ino = self.child(&mut t, parent, name)?.ok_or(libc::ENOENT)?;
        if !Self::node(&t, ino)?.is_dir() {
            return Err(libc::ENOTDIR);
        }
        if !self.is_empty_dir(&mut t, ino)? {
            return Err(libc::ENOTEMPTY);
        }
        let in_lower = self.lower_has(&t, parent, name)?;
        self.copy_up(&mut t, parent, Up::Meta)?;
        let path = self.child_path(&t, parent, name)?;
        let mut trash = None;
        if Self::node(&t, ino)?.is_upper() {
            let tr = self.layout.tmp();
            sys::rename2(&path, &tr, 0).map_err(io_err)?;
            trash = Some(tr);
        }
        if in_lower {
            self.whiteout_at(&path)?;
        }
        if let Some(tr) = trash {
            let _ = upper::remove_tree(&tr);
        }
        Self::children_mut(&mut t, parent)?.remove(name);
        Self::drop_name(&mut t, ino, parent, name, Removal::default());
        Ok(())
    }

    /// `renameat2` with `RENAME_NOREPLACE` / `RENAME_EXCHANGE`.
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> R<()> {
        check_name(newname)?;
        let mut t = self.lock();
        let src = self.child(&mut t, parent, name)?.ok_or(libc::ENOENT)?;
        let dst = self.child(&mut t, newparent, newname)?;
        let src_dir = Self::node(&t, src)?.is_dir();
        if flags & libc::RENAME_EXCHANGE != 0 {
            let dst = dst.ok_or(libc::ENOENT)?;
            if dst == src {
                return Ok(());
            }
            for ino in [src, dst] {
                if Self::node(&t, ino)?.is_dir() {
                    self.copy_up_links_under(&mut t, ino)?;
                }
                self.copy_up(&mut t, ino, Up::Meta)?;
            }
            let a = self.child_path(&t, parent, name)?;
            let b = self.child_path(&t, newparent, newname)?;
            sys::rename2(&a, &b, libc::RENAME_EXCHANGE).map_err(io_err)?;
            Self::children_mut(&mut t, parent)?.insert(name.to_vec(), dst);
            Self::children_mut(&mut t, newparent)?.insert(newname.to_vec(), src);
            // Swap via a placeholder so equal names in one directory work.
            Self::rename_name(&mut t, src, (parent, name), (u64::MAX, b""));
            Self::rename_name(&mut t, dst, (newparent, newname), (parent, name));
            Self::rename_name(&mut t, src, (u64::MAX, b""), (newparent, newname));
            return Ok(());
        }
        if let Some(d) = dst {
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(libc::EEXIST);
            }
            if d == src {
                return Ok(());
            }
            let d_dir = Self::node(&t, d)?.is_dir();
            match (src_dir, d_dir) {
                (true, false) => return Err(libc::ENOTDIR),
                (false, true) => return Err(libc::EISDIR),
                (true, true) if !self.is_empty_dir(&mut t, d)? => return Err(libc::ENOTEMPTY),
                _ => {}
            }
            let dn = Self::node(&t, d)?;
            if dn.link_key.is_some() && dn.lower.is_some() {
                self.copy_up(&mut t, d, Up::Meta)?;
            }
        }
        if src_dir {
            self.copy_up_links_under(&mut t, src)?;
        }
        self.copy_up(&mut t, src, Up::Meta)?;
        self.copy_up(&mut t, newparent, Up::Meta)?;
        let from = self.child_path(&t, parent, name)?;
        let to = self.child_path(&t, newparent, newname)?;
        let gone = match dst {
            Some(d) => self.removing(&t, d, &to)?,
            None => Removal::default(),
        };
        let mut trash = None;
        if let Some(st) = lstat_opt(&to)?
            && (src_dir || st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        {
            let tr = self.layout.tmp();
            sys::rename2(&to, &tr, 0).map_err(io_err)?;
            trash = Some(tr);
        }
        sys::rename2(&from, &to, 0).map_err(io_err)?;
        if self.lower_has(&t, parent, name)? {
            sys::make_whiteout(&from).map_err(io_err)?;
        }
        if let Some(tr) = trash {
            let _ = upper::remove_tree(&tr);
        }
        Self::children_mut(&mut t, parent)?.remove(name);
        if let Some(d) = dst {
            Self::drop_name(&mut t, d, newparent, newname, gone);
        }
        Self::children_mut(&mut t, newparent)?.insert(newname.to_vec(), src);
        Self::rename_name(&mut t, src, (parent, name), (newparent, newname));
        Ok(())
    }

    /// Changes mode, owner, size or times: a metadata-only copy-up, or a
    /// full one when the size changes.
    #[allow(clippy::too_many_arguments)]
    pub fn setattr(
        &self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: sys::TimeSpec,
        mtime: sys::TimeSpec,
        fd: Option<&File>,
    ) -> R<(FileAttr, Duration)> {
        let mut t = self.lock();
        let up = match size {
            Some(s) => Up::Data(Some(s)),
            None => Up::Meta,
        };
        self.copy_up(&mut t, ino, up)?;
        let n = Self::node(&t, ino)?;
        let symlink = n.ftype == libc::S_IFLNK;
        // An unlinked file without an orphan is reached through its
        // descriptor.
        let target = match (self.path_of(&t, ino), fd) {
            (Ok(p), _) => p,
            (Err(_), Some(f)) => PathBuf::from(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(f)
            )),
            (Err(e), None) => return Err(e),
        };
        if uid.is_some() || gid.is_some() {
            sys::lchown(&target, uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX))
                .map_err(io_err)?;
        }
        if let Some(m) = mode
            && !symlink
        {
            sys::chmod(&target, m & 0o7777).map_err(io_err)?;
        }
        if let Some(s) = size {
            match fd {
                Some(f) => f.set_len(s).map_err(io_err)?,
                None => OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .and_then(|f| f.set_len(s))
                    .map_err(io_err)?,
            }
        }
        if atime.is_some() || mtime.is_some() {
            sys::utimens(&target, atime, mtime).map_err(io_err)?;
        }
        self.attr_of(&t, ino, fd)
    }

    /// What an open should read from: the lower content, or an upper file
    /// (copied up first when opened for writing or truncation).
    pub fn open(&self, ino: u64, flags: i32) -> R<Opened> {
        let mut t = self.lock();
        let acc = flags & libc::O_ACCMODE;
        let write = acc != libc::O_RDONLY;
        let trunc = flags & libc::O_TRUNC != 0;
        if trunc {
            self.copy_up(&mut t, ino, Up::Data(Some(0)))?;
        } else if write {
            // Opening for writing is not writing (touch, editors that
            // only save on change): the content stays in the store until
            // the first write through the handle.
            self.copy_up(&mut t, ino, Up::Meta)?;
        }
        let n = Self::node(&t, ino)?;
        if let Some(LowerInfo {
            kind: LowerKind::File(data),
            ..
        }) = &n.lower
        {
            return Ok(Opened::Lower(data.clone()));
        }
        if let Some(data) = &n.data {
            return Ok(if write {
                Opened::Pending(data.clone())
            } else {
                Opened::Lower(data.clone())
            });
        }
        let path = self.path_of(&t, ino)?;
        Ok(Opened::Upper(open_upper(&path, flags)?))
    }

    /// The upper file of a handle opened `Pending`, its content filled in
    /// (called on the handle's first write).
    pub fn materialize(&self, ino: u64, flags: i32) -> R<File> {
        let mut t = self.lock();
        self.copy_up(&mut t, ino, Up::Data(None))?;
        let path = self.path_of(&t, ino)?;
        open_upper(&path, flags & !libc::O_TRUNC)
    }

    /// True once a node's content lives in the upper layer (a `Pending`
    /// handle then reads the upper file, which another handle may have
    /// written).
    pub fn filled(&self, ino: u64) -> bool {
        let t = self.lock();
        t.nodes
            .get(&ino)
            .is_some_and(|n| n.lower.is_none() && n.data.is_none())
    }

    /// An extended attribute.
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> R<Vec<u8>> {
        if upper::is_private(name) {
            return Err(libc::ENODATA);
        }
        let t = self.lock();
        let n = Self::node(&t, ino)?;
        if let Some(l) = &n.lower {
            return l
                .meta
                .xattrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or(libc::ENODATA);
        }
        let Ok(path) = self.path_of(&t, ino) else {
            return Err(libc::ENODATA);
        };
        sys::get_xattr(&path, name)
            .map_err(io_err)?
            .ok_or(libc::ENODATA)
    }

    /// Extended attribute names.
    pub fn listxattr(&self, ino: u64) -> R<Vec<Vec<u8>>> {
        let t = self.lock();
        let n = Self::node(&t, ino)?;
        if let Some(l) = &n.lower {
            return Ok(l.meta.xattrs.iter().map(|(k, _)| k.clone()).collect());
        }
        let Ok(path) = self.path_of(&t, ino) else {
            return Ok(Vec::new());
        };
        let mut v = sys::list_xattrs(&path).map_err(io_err)?;
        v.retain(|k| !upper::is_private(k));
        Ok(v)
    }

    /// Sets an extended attribute (XATTR_CREATE / XATTR_REPLACE honoured).
    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> R<()> {
        if upper::is_private(name) {
            return Err(libc::EPERM);
        }
        let mut t = self.lock();
        if let Some(l) = &Self::node(&t, ino)?.lower {
            let has = l.meta.xattrs.iter().any(|(k, _)| k == name);
            if flags & libc::XATTR_CREATE != 0 && has {
                return Err(libc::EEXIST);
            }
            if flags & libc::XATTR_REPLACE != 0 && !has {
                return Err(libc::ENODATA);
            }
        }
        self.copy_up(&mut t, ino, Up::Meta)?;
        sys::set_xattr(&self.path_of(&t, ino)?, name, value, flags).map_err(io_err)
    }

    /// Removes an extended attribute.
    pub fn removexattr(&self, ino: u64, name: &[u8]) -> R<()> {
        if upper::is_private(name) {
            return Err(libc::ENODATA);
        }
        let mut t = self.lock();
        if let Some(l) = &Self::node(&t, ino)?.lower
            && !l.meta.xattrs.iter().any(|(k, _)| k == name)
        {
            return Err(libc::ENODATA);
        }
        self.copy_up(&mut t, ino, Up::Meta)?;
        sys::remove_xattr(&self.path_of(&t, ino)?, name).map_err(io_err)
    }
}

/// What removing one name leaves of a node's upper inode.
#[derive(Default)]
struct Removal {
    /// The upper inode has other names on disk.
    others: bool,
    /// Where it is kept after losing its last name (it may be open).
    orphan: Option<PathBuf>,
}

/// What `open` hands to the file handle.
pub enum Opened {
    /// Content from the store.
    Lower(Arc<FileData>),
    /// Opened for writing, content still in the store: `materialize` on
    /// the first write.
    Pending(Arc<FileData>),
    /// An upper file.
    Upper(File),
}

/// Opens an upper file for a FUSE open with `flags`.
fn open_upper(path: &std::path::Path, flags: i32) -> R<File> {
    let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
    let trunc = flags & libc::O_TRUNC != 0;
    let mut o = OpenOptions::new();
    o.read(true).write(write || trunc).truncate(trunc);
    o.custom_flags(flags & (libc::O_SYNC | libc::O_DSYNC) | libc::O_NOFOLLOW);
    o.open(path).map_err(io_err)
}
