//! The merged namespace: lower entries from the store, upper entries from
//! disk, and every namespace operation with the errno a Linux file system
//! would give. All of it runs under one mutex; the slow parts of reads and
//! writes (chunk decompression, data I/O) run outside it in `ops`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fuser::FileAttr;
use vnfs_store::{Entry, EntryKind};

use crate::inode::{self, DirInfo, LowerInfo, LowerKind, Node};
use crate::lower::{FileData, Lower, find};
use crate::sys;
use crate::upper::{self, Layout, REDIRECT};

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
        if fs::symlink_metadata(&up).is_err() {
            let tmp = layout.tmp();
            fs::create_dir(&tmp)?;
            sys::set_xattr(&tmp, REDIRECT, b"/", 0)?;
            upper::apply_meta(&tmp, &lower.commit.root.meta, false)?;
            fs::rename(&tmp, &up)?;
        }
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                parent: ROOT,
                name: Vec::new(),
                more_names: Vec::new(),
                ftype: libc::S_IFDIR,
                lower: None,
                link_key: None,
                dir: Some(DirInfo {
                    lower: upper::redirect_of(&up)?,
                    children: None,
                }),
                unlinked: false,
            },
        );
        Ok(Overlay {
            lower,
            layout,
            t: Mutex::new(Tables {
                nodes,
                next: ROOT + 1,
                link_keys: HashMap::new(),
                upper_links: HashMap::new(),
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

    /// Upper path of a node's first name.
    fn path_of(&self, t: &Tables, ino: u64) -> R<PathBuf> {
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

    /// True if the directory's lower content has `name` (so deleting it
    /// needs a whiteout).
    fn lower_has(&self, t: &Tables, dir: u64, name: &[u8]) -> R<bool> {
        let Some(lp) = Self::node(t, dir)?
            .dir
            .as_ref()
            .and_then(|d| d.lower.clone())
        else {
            return Ok(false);
        };
        let Some(Entry {
            kind: EntryKind::Dir { tree },
            ..
        }) = self.lower.resolve(&lp).map_err(store_err)?
        else {
            return Ok(false);
        };
        let tree = self.lower.tree(&tree).map_err(store_err)?;
        Ok(find(&tree, name).is_some())
    }

    fn lower_node(&self, t: &mut Tables, parent: u64, e: &Entry, path: Vec<u8>) -> R<u64> {
        let plain = |kind: LowerKind, ftype: u32, nlink: u32, dir: Option<DirInfo>| Node {
            parent,
            name: e.name.clone(),
            more_names: Vec::new(),
            ftype,
            lower: Some(LowerInfo {
                kind,
                meta: e.meta.clone(),
                nlink,
            }),
            link_key: None,
            dir,
            unlinked: false,
        };
        let node = match &e.kind {
            EntryKind::Dir { .. } => plain(
                LowerKind::Dir,
                libc::S_IFDIR,
                1,
                Some(DirInfo {
                    lower: Some(path),
                    children: None,
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
                    1,
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
                plain(LowerKind::Symlink(target.clone()), libc::S_IFLNK, 1, None)
            }
            EntryKind::CharDev { major, minor } => {
                plain(LowerKind::Char(*major, *minor), libc::S_IFCHR, 1, None)
            }
            EntryKind::BlockDev { major, minor } => {
                plain(LowerKind::Block(*major, *minor), libc::S_IFBLK, 1, None)
            }
            EntryKind::Fifo => plain(LowerKind::Fifo, libc::S_IFIFO, 1, None),
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
        let ino = Self::new_node(
            t,
            Node {
                parent,
                name: name.to_vec(),
                more_names: Vec::new(),
                ftype: libc::S_IFREG,
                lower: Some(LowerInfo {
                    kind: LowerKind::File(data),
                    meta,
                    nlink: nlink as u32,
                }),
                link_key: Some(key.clone()),
                dir: None,
                unlinked: false,
            },
        );
        t.link_keys.entry(key).or_insert(ino);
        Ok(ino)
    }

    /// Lists a directory into its node once; later edits keep it current.
    fn load(&self, t: &mut Tables, ino: u64) -> R<()> {
        let node = Self::node(t, ino)?;
        let Some(dir) = &node.dir else {
            return Err(libc::ENOTDIR);
        };
        if dir.children.is_some() {
            return Ok(());
        }
        let lower_path = dir.lower.clone();
        let is_upper = node.is_upper();
        let mut map = BTreeMap::new();
        let mut shadowed = HashSet::new();
        if is_upper {
            let path = self.path_of(t, ino)?;
            let rd = fs::read_dir(&path).map_err(|e| {
                tracing::error!("{}: {e}", path.display());
                io_err(e)
            })?;
            for de in rd {
                let de = de.map_err(io_err)?;
                let name = de.file_name().as_bytes().to_vec();
                let cp = path.join(de.file_name());
                let Some(st) = lstat_opt(&cp)? else { continue };
                shadowed.insert(name.clone());
                if sys::is_whiteout(&st) {
                    continue;
                }
                let ftype = st.st_mode & libc::S_IFMT;
                let key = (st.st_dev, st.st_ino);
                if ftype == libc::S_IFREG
                    && st.st_nlink > 1
                    && let Some(&other) = t.upper_links.get(&key)
                {
                    let n = Self::node_mut(t, other)?;
                    if !(n.parent == ino && n.name == name) {
                        n.more_names.push((ino, name.clone()));
                    }
                    map.insert(name, other);
                    continue;
                }
                let dir = if ftype == libc::S_IFDIR {
                    Some(DirInfo {
                        lower: upper::redirect_of(&cp).map_err(io_err)?,
                        children: None,
                    })
                } else {
                    None
                };
                let child = Self::new_node(
                    t,
                    Node {
                        parent: ino,
                        name: name.clone(),
                        more_names: Vec::new(),
                        ftype,
                        lower: None,
                        link_key: None,
                        dir,
                        unlinked: false,
                    },
                );
                if ftype == libc::S_IFREG && st.st_nlink > 1 {
                    t.upper_links.insert(key, child);
                }
                map.insert(name, child);
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
                if shadowed.contains(&e.name) {
                    continue;
                }
                let child = self.lower_node(t, ino, e, join(&lp, &e.name))?;
                map.insert(e.name.clone(), child);
            }
        }
        if let Some(d) = Self::node_mut(t, ino)?.dir.as_mut() {
            d.children = Some(map);
        }
        Ok(())
    }

    fn child(&self, t: &mut Tables, parent: u64, name: &[u8]) -> R<Option<u64>> {
        self.load(t, parent)?;
        Ok(Self::node(t, parent)?
            .dir
            .as_ref()
            .and_then(|d| d.children.as_ref())
            .and_then(|c| c.get(name).copied()))
    }

    fn children_mut(t: &mut Tables, dir: u64) -> R<&mut BTreeMap<Vec<u8>, u64>> {
        Self::node_mut(t, dir)?
            .dir
            .as_mut()
            .and_then(|d| d.children.as_mut())
            .ok_or(libc::EIO)
    }

    fn is_empty_dir(&self, t: &mut Tables, ino: u64) -> R<bool> {
        self.load(t, ino)?;
        Ok(Self::node(t, ino)?
            .dir
            .as_ref()
            .and_then(|d| d.children.as_ref())
            .is_none_or(|c| c.is_empty()))
    }

    /// Resolves a root-relative path in the merged view.
    fn resolve(&self, t: &mut Tables, path: &[u8]) -> R<Option<u64>> {
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

    fn attr_of(&self, t: &Tables, ino: u64, fd: Option<&File>) -> R<(FileAttr, Duration)> {
        let n = Self::node(t, ino)?;
        if let Some(l) = &n.lower {
            return Ok((inode::lower_attr(ino, l), LOWER_TTL));
        }
        let st = match fd {
            Some(f) => sys::fstat(std::os::fd::AsRawFd::as_raw_fd(f)).map_err(io_err)?,
            None if n.unlinked => return Err(libc::ENOENT),
            None => sys::lstat(&self.path_of(t, ino)?).map_err(io_err)?,
        };
        Ok((inode::upper_attr(ino, &st), UPPER_TTL))
    }

    /// Attributes and cache time of a node (`fd`: an open upper file).
    pub fn getattr(&self, ino: u64, fd: Option<&File>) -> R<(FileAttr, Duration)> {
        let t = self.lock();
        self.attr_of(&t, ino, fd)
    }

    /// Looks a name up.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> R<(FileAttr, Duration)> {
        if name.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        let mut t = self.lock();
        let ino = self.child(&mut t, parent, name)?.ok_or(libc::ENOENT)?;
        self.attr_of(&t, ino, None)
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
        if let Some(c) = n.dir.as_ref().and_then(|d| d.children.as_ref()) {
            for (name, &child) in c {
                let ft = t.nodes.get(&child).map_or(libc::S_IFREG, |n| n.ftype);
                out.push((name.clone(), child, ft));
            }
        }
        Ok(out)
    }

    /// Attributes for readdirplus entries (`.`/`..` included).
    pub fn attrs(&self, inos: &[u64]) -> Vec<R<(FileAttr, Duration)>> {
        let t = self.lock();
        inos.iter().map(|&i| self.attr_of(&t, i, None)).collect()
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

    /// Copies a node (and its parents) into the upper layer. `keep` limits
    /// the content copied (a truncate or O_TRUNC needs none of the rest).
    fn copy_up(&self, t: &mut Tables, ino: u64, keep: Option<u64>) -> R<()> {
        let n = Self::node(t, ino)?;
        let Some(info) = n.lower.clone() else {
            return Ok(());
        };
        if n.unlinked {
            return Err(libc::ENOENT);
        }
        let (parent, name, key) = (n.parent, n.name.clone(), n.link_key.clone());
        let redirect = n.dir.as_ref().and_then(|d| d.lower.clone());
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
        self.copy_up(t, parent, None)?;
        let dst = self.child_path(t, parent, &name)?;
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
                    let len = keep.unwrap_or(data.size).min(data.size);
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
                    f.set_len(len)?;
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
        let mut linked = Vec::new();
        for (d, base) in others {
            self.copy_up(t, d, None)?;
            let p = self.child_path(t, d, &base)?;
            fs::hard_link(&dst, &p).map_err(|e| {
                tracing::error!("linking {} to {}: {e}", p.display(), dst.display());
                io_err(e)
            })?;
            linked.push((d, base));
        }
        if !linked.is_empty()
            && let Some(st) = lstat_opt(&dst)?
        {
            t.upper_links.insert((st.st_dev, st.st_ino), ino);
        }
        let n = Self::node_mut(t, ino)?;
        n.lower = None;
        if key.is_some() {
            n.more_names = linked;
        }
        Ok(())
    }

    /// Copies up the lower hard-link groups with a name under `lower_dir`,
    /// before that directory moves (their link targets are paths).
    fn copy_up_links_under(&self, t: &mut Tables, ino: u64) -> R<()> {
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
                self.copy_up(t, n, None)?;
            }
        }
        Ok(())
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
        self.copy_up(&mut t, parent, None)?;
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
        let ino = Self::new_node(
            &mut t,
            Node {
                parent,
                name: name.to_vec(),
                more_names: Vec::new(),
                ftype,
                lower: None,
                link_key: None,
                dir: is_dir.then(|| DirInfo {
                    lower: None,
                    children: Some(BTreeMap::new()),
                }),
                unlinked: false,
            },
        );
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
        self.copy_up(&mut t, ino, None)?;
        self.copy_up(&mut t, newparent, None)?;
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
        Self::node_mut(&mut t, ino)?
            .more_names
            .push((newparent, newname.to_vec()));
        Self::children_mut(&mut t, newparent)?.insert(newname.to_vec(), ino);
        self.attr_of(&t, ino, None)
    }

    /// Forgets one name of a node (after it was unlinked or replaced).
    fn drop_name(t: &mut Tables, ino: u64, parent: u64, name: &[u8]) {
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
            self.copy_up(&mut t, ino, None)?;
        }
        let upper = Self::node(&t, ino)?.is_upper();
        let in_lower = self.lower_has(&t, parent, name)?;
        self.copy_up(&mut t, parent, None)?;
        let path = self.child_path(&t, parent, name)?;
        if in_lower {
            self.whiteout_at(&path)?;
        } else if upper {
            fs::remove_file(&path).map_err(io_err)?;
        }
        Self::children_mut(&mut t, parent)?.remove(name);
        Self::drop_name(&mut t, ino, parent, name);
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
        self.copy_up(&mut t, parent, None)?;
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
        Self::drop_name(&mut t, ino, parent, name);
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
                self.copy_up(&mut t, ino, None)?;
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
                self.copy_up(&mut t, d, None)?;
            }
        }
        if src_dir {
            self.copy_up_links_under(&mut t, src)?;
        }
        self.copy_up(&mut t, src, None)?;
        self.copy_up(&mut t, newparent, None)?;
        let from = self.child_path(&t, parent, name)?;
        let to = self.child_path(&t, newparent, newname)?;
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
            Self::drop_name(&mut t, d, newparent, newname);
        }
        Self::children_mut(&mut t, newparent)?.insert(newname.to_vec(), src);
        Self::rename_name(&mut t, src, (parent, name), (newparent, newname));
        Ok(())
    }

    /// Changes mode, owner, size or times, copying up first.
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
        self.copy_up(&mut t, ino, size)?;
        let n = Self::node(&t, ino)?;
        let symlink = n.ftype == libc::S_IFLNK;
        let path = if n.unlinked {
            None
        } else {
            Some(self.path_of(&t, ino)?)
        };
        // An open-but-unlinked file is reached through its descriptor.
        let target = match (&path, fd) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => PathBuf::from(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(f)
            )),
            (None, None) => return Err(libc::ENOENT),
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
        if write || trunc {
            self.copy_up(&mut t, ino, trunc.then_some(0))?;
        }
        let n = Self::node(&t, ino)?;
        if let Some(LowerInfo {
            kind: LowerKind::File(data),
            ..
        }) = &n.lower
        {
            return Ok(Opened::Lower(data.clone()));
        }
        if n.unlinked {
            return Err(libc::ENOENT);
        }
        let path = self.path_of(&t, ino)?;
        let mut o = OpenOptions::new();
        o.read(true).write(write || trunc).truncate(trunc);
        o.custom_flags(flags & (libc::O_SYNC | libc::O_DSYNC) | libc::O_NOFOLLOW);
        Ok(Opened::Upper(o.open(&path).map_err(io_err)?))
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
        if n.unlinked {
            return Err(libc::ENODATA);
        }
        sys::get_xattr(&self.path_of(&t, ino)?, name)
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
        if n.unlinked {
            return Ok(Vec::new());
        }
        let mut v = sys::list_xattrs(&self.path_of(&t, ino)?).map_err(io_err)?;
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
        self.copy_up(&mut t, ino, None)?;
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
        self.copy_up(&mut t, ino, None)?;
        sys::remove_xattr(&self.path_of(&t, ino)?, name).map_err(io_err)
    }
}

/// What `open` hands to the file handle.
pub enum Opened {
    /// Content from the store.
    Lower(Arc<FileData>),
    /// An upper file.
    Upper(File),
}
